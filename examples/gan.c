/* A GAN with two optimizers (semantics.md section 6).
 *
 * The generator G maps noise to 2-D points; the discriminator D tells them
 * from samples of a mixture of 8 Gaussians on a circle. One Adam per
 * network, and each clears only its own parameters (zg_optim_zero_grad):
 *
 *   D step: zero_grad(D); loss_D = bce(D(real), 1) + bce(D(G(z).detach), 0);
 *           backward; step(D)
 *   G step: zero_grad(G); loss_G = bce(D(G(z)), 1); backward; step(G)
 *
 * G's backward runs through D, so it also adds into D's .grad. That leftover
 * is harmless only because D's step clears its own grads at the top. The
 * program checks, exactly:
 *   - after a G step D holds a non-zero leftover gradient;
 *   - D's zero_grad at the top of its next step removes it (None), and the
 *     .grad D's step then uses equals the gradient of loss_D alone,
 *     computed with zg_autograd_grad (which never touches .grad);
 *   - freezing D during G's step (zg_tensor_set_requires_grad false on D's
 *     parameters) leaves D's grads None and gives G exactly the same
 *     gradient and the same Adam update (checked by stepping twice from one
 *     saved optimizer state);
 * and that training moves the samples onto the modes (mean distance to the
 * nearest mode falls by at least 3x). Exits non-zero if a claim fails. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "zgrad.h"

#define MODES 8
#define RADIUS 2.0f
#define MODE_STD 0.05f
#define BATCH 128
#define NOISE 4
#define HID 64
#define STEPS 1500
#define CHECK_AT 200 /* the iteration where the gradient claims are checked */
#define MAXP 16

static int failures = 0;
static void claim(int ok, const char *what) {
    printf("%s: %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) failures++;
}
static void die(const char *what) {
    fprintf(stderr, "gan: %s: %s\n", what, zg_last_error());
    exit(1);
}

typedef struct {
    zg_module *net;
    zg_tensor *p[MAXP];
    int n;
    zg_optim *opt;
} network;

static void network_init(network *w, int64_t in, int64_t out, double lr) {
    zg_module *l[] = {zg_nn_linear(in, HID, true), zg_nn_leaky_relu(0.2f), zg_nn_linear(HID, HID, true),
                      zg_nn_leaky_relu(0.2f), zg_nn_linear(HID, out, true)};
    w->net = zg_nn_sequential(l, 5);
    if (!w->net) die("building a network");
    w->n = zg_module_params(w->net, w->p, MAXP);
    zg_optim_config cfg = zg_optim_defaults(ZG_ADAM);
    cfg.lr = lr;
    cfg.beta1 = 0.5;
    w->opt = zg_optim_new(ZG_ADAM, w->p, w->n, &cfg);
    if (!w->opt) die("building an optimizer");
}
static void network_free(network *w) {
    zg_optim_free(w->opt);
    zg_module_free(w->net);
}

/* Real samples: a random mode plus Gaussian noise (persistent: the
 * caller frees it). */
static zg_tensor *sample_real(void) {
    int64_t s[2] = {BATCH, 2};
    zg_tensor *pick = zg_rand(s, 2), *x = zg_normal(s, 2, 0.0f, MODE_STD);
    for (int i = 0; i < BATCH; i++) {
        int k = (int)(zg_tensor_get(pick, 2 * i) * MODES) % MODES;
        float th = 2.0f * 3.14159265f * k / MODES;
        zg_tensor_data(x)[2 * i] += RADIUS * cosf(th);
        zg_tensor_data(x)[2 * i + 1] += RADIUS * sinf(th);
    }
    zg_tensor_free(pick);
    return x;
}

/* Mean distance of G's samples to the nearest mode, over a fixed noise. */
static double mode_distance(network *g, zg_tensor *z) {
    zg_no_grad_enter();
    zg_tensor *x = zg_module_forward(g->net, z);
    double s = 0;
    int64_t n = zg_tensor_size(x, 0);
    for (int64_t i = 0; i < n; i++) {
        double best = INFINITY;
        for (int k = 0; k < MODES; k++) {
            double th = 2.0 * 3.14159265358979 * k / MODES;
            double dx = zg_tensor_get(x, 2 * i) - RADIUS * cos(th), dy = zg_tensor_get(x, 2 * i + 1) - RADIUS * sin(th);
            best = fmin(best, sqrt(dx * dx + dy * dy));
        }
        s += best;
    }
    zg_no_grad_exit();
    return s / (double)n;
}

/* Exact equality of two float arrays of n elements. */
static int same(const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

int main(void) {
    zg_manual_seed(3);
    network G, D;
    network_init(&G, NOISE, 2, 1e-3);
    network_init(&D, 2, 1, 1e-3);
    int64_t zs[2] = {BATCH, NOISE}, ls[2] = {BATCH, 1}, es[2] = {1000, NOISE};
    zg_tensor *real_label = zg_ones(ls, 2), *fake_label = zg_zeros(ls, 2);
    zg_tensor *z_eval = zg_randn(es, 2);

    double d0 = mode_distance(&G, z_eval);
    printf("before training: mean distance to the nearest mode %.4f\n", d0);

    for (int it = 0; it < STEPS; it++) {
        /* ---- D step ---- */
        zg_tensor *leftover = NULL; /* D's weight grad left by the last G step */
        if (it == CHECK_AT) {
            zg_tensor *g = zg_tensor_grad(D.p[0]);
            double s = 0;
            for (int64_t k = 0; g && k < zg_tensor_numel(g); k++) s += fabs(zg_tensor_get(g, k));
            printf("iteration %d: |leftover grad of D's first weight from G's step|_1 = %.6f\n", it, s);
            claim(g != NULL && s > 0, "G's backward left a gradient in D's parameters");
            leftover = g ? zg_tensor_clone(g) : NULL;
        }
        zg_optim_zero_grad(D.opt, true); /* clears D's grads only */
        if (it == CHECK_AT) {
            int none = 1;
            for (int i = 0; i < D.n; i++) none &= zg_tensor_grad(D.p[i]) == NULL;
            claim(none, "D's zero_grad at the top of its step clears G's leftover");
        }
        zg_tensor *zd = zg_randn(zs, 2);
        zg_tensor *fake = zg_detach(zg_module_forward(G.net, zd)); /* no graph into G */
        zg_tensor *real = sample_real();
        zg_tensor *loss_d = zg_add(zg_bce_with_logits(zg_module_forward(D.net, real), real_label,
                                                      ZG_REDUCTION_MEAN, NULL),
                                   zg_bce_with_logits(zg_module_forward(D.net, fake), fake_label,
                                                      ZG_REDUCTION_MEAN, NULL));
        if (!loss_d) die("D forward");
        zg_tensor *clean[MAXP];
        if (it == CHECK_AT) {
            /* loss_D's gradient from a clean state: autograd_grad returns
             * it without touching any .grad. */
            zg_tensor *root = loss_d;
            if (zg_autograd_grad(&root, NULL, 1, D.p, D.n, clean, true, false)) die("autograd_grad");
        }
        if (zg_backward(loss_d, NULL)) die("D backward");
        if (it == CHECK_AT) {
            int eq = 1, differs_from_sum = 0;
            for (int i = 0; i < D.n; i++) {
                zg_tensor *g = zg_tensor_grad(D.p[i]);
                eq &= g && same(zg_tensor_data(g), zg_tensor_data(clean[i]), zg_tensor_numel(g));
            }
            /* What D would have stepped with had it not cleared: leftover +
             * clean, which is a different vector. */
            for (int64_t k = 0; leftover && k < zg_tensor_numel(leftover); k++)
                differs_from_sum |= zg_tensor_get(leftover, k) != 0.0f;
            printf("iteration %d: D's .grad after its backward == grad of loss_D alone: %s\n", it,
                   eq ? "exactly" : "NO");
            claim(eq && differs_from_sum, "D's step uses only loss_D's gradient, not G's leftover");
            zg_tensor_free(leftover);
        }
        if (zg_optim_step(D.opt)) die("D step");

        /* ---- G step ---- */
        zg_optim_zero_grad(G.opt, true);
        zg_tensor *zg_noise = zg_randn(zs, 2);
        zg_tensor *loss_g = zg_bce_with_logits(zg_module_forward(D.net, zg_module_forward(G.net, zg_noise)),
                                               real_label, ZG_REDUCTION_MEAN, NULL);
        if (!loss_g) die("G forward");
        zg_sanitize_mode san = zg_sanitize_get_mode();
        if (it == CHECK_AT) {
            /* The comparison below clears and redoes G's backward on
             * purpose: keep the sanitizer (ZG_SANITIZE) quiet meanwhile. */
            zg_sanitize_set_mode(ZG_SANITIZE_OFF);
            /* First the frozen variant: D's parameters stop requiring grad,
             * so G's backward does not reach them. */
            zg_optim_zero_grad(D.opt, true);
            for (int i = 0; i < D.n; i++) zg_tensor_set_requires_grad(D.p[i], false);
            zg_tensor *lf = zg_bce_with_logits(zg_module_forward(D.net, zg_module_forward(G.net, zg_noise)),
                                               real_label, ZG_REDUCTION_MEAN, NULL);
            if (!lf || zg_backward(lf, NULL)) die("frozen G backward");
            int none = 1;
            for (int i = 0; i < D.n; i++) none &= zg_tensor_grad(D.p[i]) == NULL;
            claim(none, "with D frozen, G's backward leaves D's grads None");
            zg_tensor *frozen[MAXP];
            for (int i = 0; i < G.n; i++) frozen[i] = zg_tensor_clone(zg_tensor_grad(G.p[i]));
            for (int i = 0; i < D.n; i++) zg_tensor_set_requires_grad(D.p[i], true);
            zg_optim_zero_grad(G.opt, true);
            /* Then the plain one (the graph of loss_g was built while D
             * required grad). */
            if (zg_backward(loss_g, NULL)) die("G backward");
            int eq = 1;
            for (int i = 0; i < G.n; i++)
                eq &= same(zg_tensor_data(zg_tensor_grad(G.p[i])), zg_tensor_data(frozen[i]),
                           zg_tensor_numel(frozen[i]));
            claim(eq, "freezing D gives G exactly the same gradient");
            /* And the same Adam update: step with the plain grads, then
             * rewind parameters and Adam state (a saved state_dict) and
             * step with the frozen run's grads. */
            char path[] = "/tmp/zgrad_gan_adam_XXXXXX";
            int fd = mkstemp(path);
            if (fd < 0) die("mkstemp");
            close(fd);
            zg_tensor *p0[MAXP], *plain_update[MAXP];
            for (int i = 0; i < G.n; i++) p0[i] = zg_tensor_clone(G.p[i]);
            if (zg_optim_save(G.opt, path)) die("saving Adam's state");
            if (zg_optim_step(G.opt)) die("G step");
            for (int i = 0; i < G.n; i++) plain_update[i] = zg_tensor_clone(G.p[i]);
            zg_no_grad_enter();
            for (int i = 0; i < G.n; i++) zg_tensor_copy_(G.p[i], p0[i]);
            zg_no_grad_exit();
            if (zg_optim_load(G.opt, path)) die("loading Adam's state");
            remove(path);
            for (int i = 0; i < G.n; i++) zg_tensor_set_grad(G.p[i], frozen[i]);
            /* The rewind really went back (the update moved the weights). */
            int rewound = !same(zg_tensor_data(G.p[0]), zg_tensor_data(plain_update[0]), zg_tensor_numel(G.p[0]));
            if (zg_optim_step(G.opt)) die("G step");
            for (int i = 0; i < G.n; i++)
                eq &= same(zg_tensor_data(G.p[i]), zg_tensor_data(plain_update[i]), zg_tensor_numel(G.p[i]));
            claim(rewound && eq, "... and so exactly the same Adam update of G");
            for (int i = 0; i < G.n; i++) {
                zg_tensor_free(frozen[i]);
                zg_tensor_free(p0[i]);
                zg_tensor_free(plain_update[i]);
            }
            zg_sanitize_set_mode(san);
        } else if (zg_backward(loss_g, NULL)) {
            die("G backward");
        }
        if (it != CHECK_AT && zg_optim_step(G.opt)) die("G step"); /* CHECK_AT stepped above */

        if (it % 300 == 0 || it == STEPS - 1)
            printf("it %3d  loss_D %.4f  loss_G %.4f  mode distance %.4f\n", it, zg_tensor_item(loss_d),
                   zg_tensor_item(loss_g), mode_distance(&G, z_eval));
        /* The batches are persistent tensors (zg_randn): free them with
         * the step's graph. */
        zg_tensor_free(zd);
        zg_tensor_free(real);
        zg_tensor_free(zg_noise);
        zg_arena_reset();
    }

    double d1 = mode_distance(&G, z_eval);
    printf("after %d steps: mean distance to the nearest mode %.4f (was %.4f, %.1fx closer)\n", STEPS, d1, d0,
           d0 / d1);
    claim(d1 * 3.0 < d0, "generated samples moved toward the modes (distance down at least 3x)");

    zg_arena_reset();
    network_free(&G);
    network_free(&D);
    zg_tensor_free(real_label);
    zg_tensor_free(fake_label);
    zg_tensor_free(z_eval);
    zg_arena_free_all();
    printf("%s\n", failures ? "gan: FAILED" : "gan: all claims hold");
    return failures ? 1 : 0;
}
