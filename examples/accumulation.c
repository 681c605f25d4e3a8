/* Gradient accumulation (semantics.md section 6) with zg_accum.
 *
 * Four micro-batches of 16, each backwarded as loss / 4 into the same
 * grads, then one optimizer step, equal one step on the batch of 64 (mean
 * losses over equal-sized micro-batches). zg_accum does the division, the
 * counting, the step and the zero_grad:
 *
 *     zg_accum *acc = zg_accum_new(opt, NULL, 4);
 *     for each micro-batch: zg_accum_backward(acc, loss); zg_accum_step(acc, NULL);
 *     at the end of the epoch: zg_accum_flush(acc, NULL);
 *
 * The program trains three copies of one MLP from the same initial weights
 * on the same 1312 samples: (A) zg_accum with N = 4 over micro-batches of 16,
 * (B) the hand-written loop (backward(loss / 4), step and zero_grad every 4),
 * (C) plain steps on batches of 64. After 20 full windows it checks that the
 * window losses and the parameters of A, B and C agree (rtol 1e-5). The
 * last 32 samples make a short window of k = 2 micro-batches that
 * zg_accum_flush steps; as the header documents, each of its losses was
 * divided by N = 4, not by k, so the update is k/N of a full window's mean:
 * it must equal C stepping on the 32 samples with its mean loss times 1/2.
 * Exits non-zero if a claim fails. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "zgrad.h"

#define N_ACC 4
#define MICRO 16
#define BIG (N_ACC * MICRO)
#define WINDOWS 20
#define SHORT_K 2
#define SAMPLES (WINDOWS * BIG + SHORT_K * MICRO)
#define IN 10
#define HID 32
#define CLASSES 3
#define RTOL 1e-5
#define ATOL 1e-7
#define MAXP 8

static int failures = 0;
static void claim(int ok, const char *what) {
    printf("%s: %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) failures++;
}
static void die(const char *what) {
    fprintf(stderr, "accumulation: %s: %s\n", what, zg_last_error());
    exit(1);
}

typedef struct {
    zg_module *net;
    zg_tensor *p[MAXP];
    int n;
    zg_optim *opt;
} model;

/* A model whose weights are copied from `like` (if given). */
static void model_init(model *m, const model *like) {
    zg_module *l[] = {zg_nn_linear(IN, HID, true), zg_nn_tanh(), zg_nn_linear(HID, CLASSES, true)};
    m->net = zg_nn_sequential(l, 3);
    if (!m->net) die("model");
    m->n = zg_module_params(m->net, m->p, MAXP);
    if (like) {
        zg_no_grad_enter();
        for (int i = 0; i < m->n; i++) zg_tensor_copy_(m->p[i], like->p[i]);
        zg_no_grad_exit();
    }
    zg_optim_config cfg = zg_optim_defaults(ZG_SGD);
    cfg.lr = 0.1;
    cfg.momentum = 0.9;
    m->opt = zg_optim_new(ZG_SGD, m->p, m->n, &cfg);
    if (!m->opt) die("optimizer");
}
static void model_free(model *m) {
    zg_optim_free(m->opt);
    zg_module_free(m->net);
}

static zg_tensor *x_all, *y_all;

/* Mean cross-entropy on samples [start, start + n). */
static zg_tensor *loss_on(model *m, int64_t start, int64_t n) {
    int64_t ys[1] = {n};
    zg_tensor *xb = zg_slice(x_all, start, start + n);
    zg_tensor *yb = zg_tensor_from_data(ZG_INT64, zg_tensor_data_i64(y_all) + start, ys, 1);
    zg_tensor *loss = zg_cross_entropy(zg_module_forward(m->net, xb), yb, NULL);
    zg_tensor_free(yb);
    if (!loss) die("forward");
    return loss;
}

/* Worst |a - b| / (ATOL + RTOL |b|) over all parameters (<= 1: agree). */
static double param_mismatch(const model *a, const model *b) {
    double worst = 0;
    for (int i = 0; i < a->n; i++)
        for (int64_t k = 0; k < zg_tensor_numel(a->p[i]); k++) {
            double u = zg_tensor_get(a->p[i], k), v = zg_tensor_get(b->p[i], k);
            worst = fmax(worst, fabs(u - v) / (ATOL + RTOL * fabs(v)));
        }
    return worst;
}

int main(void) {
    zg_manual_seed(5);
    int64_t xs[2] = {SAMPLES, IN}, ys[1] = {SAMPLES};
    x_all = zg_randn(xs, 2);
    y_all = zg_tensor_new(ZG_INT64, ys, 1);
    for (int i = 0; i < SAMPLES; i++) {
        float s = zg_tensor_get(x_all, i * IN) + 0.5f * zg_tensor_get(x_all, i * IN + 1);
        zg_tensor_data_i64(y_all)[i] = s < -0.5f ? 0 : s < 0.5f ? 1 : 2;
    }

    model a, b, c;
    model_init(&a, NULL);
    model_init(&b, &a);
    model_init(&c, &a);
    zg_accum *acc = zg_accum_new(a.opt, NULL, N_ACC);
    if (!acc) die("zg_accum_new");
    zg_sanitize_expect_accumulation(b.opt, N_ACC); /* B's window, for the sanitizer */

    double worst_loss = 0;
    int steps_a = 0;
    for (int w = 0; w < WINDOWS; w++) {
        double loss_a = 0, loss_b = 0;
        for (int j = 0; j < N_ACC; j++) {
            int64_t start = (int64_t)w * BIG + j * MICRO;
            /* (A) zg_accum: backward of loss / N, the step when full. */
            zg_tensor *la = loss_on(&a, start, MICRO);
            if (zg_accum_backward(acc, la) < 0) die("zg_accum_backward");
            bool stepped = false;
            if (zg_accum_step(acc, &stepped)) die("zg_accum_step");
            steps_a += stepped;
            loss_a += zg_tensor_item(la) / N_ACC;
            /* (B) by hand. */
            zg_tensor *lb = loss_on(&b, start, MICRO);
            if (zg_backward(zg_div_scalar(lb, N_ACC), NULL)) die("backward");
            loss_b += zg_tensor_item(lb) / N_ACC;
            if (j == N_ACC - 1) {
                if (zg_optim_step(b.opt)) die("step");
                zg_optim_zero_grad(b.opt, true);
            }
            zg_arena_reset();
        }
        /* (C) one batch of 64. */
        zg_optim_zero_grad(c.opt, true);
        zg_tensor *lc = loss_on(&c, (int64_t)w * BIG, BIG);
        if (zg_backward(lc, NULL) || zg_optim_step(c.opt)) die("big step");
        double big = zg_tensor_item(lc);
        worst_loss = fmax(worst_loss, fmax(fabs(loss_a - big), fabs(loss_b - big)) / (ATOL + RTOL * fabs(big)));
        if (w % 5 == 0 || w == WINDOWS - 1)
            printf("window %2d: loss accum %.7f  by hand %.7f  batch of 64 %.7f\n", w, loss_a, loss_b, big);
        zg_arena_reset();
    }
    double mis_ac = param_mismatch(&a, &c), mis_bc = param_mismatch(&b, &c);
    printf("optimizer steps taken by zg_accum: %d (of %d micro-batches)\n", steps_a, WINDOWS * N_ACC);
    printf("worst mismatch / (atol %.0e + rtol %.0e |x|): losses %.3f, params accum vs 64: %.3f, by hand vs 64: %.3f\n",
           ATOL, RTOL, worst_loss, mis_ac, mis_bc);
    claim(steps_a == WINDOWS, "zg_accum stepped once per window of 4");
    claim(worst_loss <= 1.0, "window losses equal the batch-of-64 losses (rtol 1e-5)");
    claim(mis_ac <= 1.0, "params after 20 steps: zg_accum N=4 x 16 == batch of 64 (rtol 1e-5)");
    claim(mis_bc <= 1.0, "params after 20 steps: hand-written loop == batch of 64 (rtol 1e-5)");

    /* The short last window: k = 2 micro-batches, then the epoch ends. */
    int64_t tail = (int64_t)WINDOWS * BIG;
    for (int j = 0; j < SHORT_K; j++) {
        if (zg_accum_backward(acc, loss_on(&a, tail + j * MICRO, MICRO)) < 0) die("zg_accum_backward");
        bool stepped = true;
        if (zg_accum_step(acc, &stepped)) die("zg_accum_step");
        if (stepped) claim(0, "a partial window must not step");
    }
    printf("pending micro-batches at the end of the epoch: %d of %d\n", zg_accum_pending(acc), zg_accum_size(acc));
    claim(zg_accum_pending(acc) == SHORT_K, "the short window holds 2 micro-batches");
    bool flushed = false;
    if (zg_accum_flush(acc, &flushed)) die("zg_accum_flush");
    claim(flushed && zg_accum_pending(acc) == 0, "zg_accum_flush steps the short window");
    zg_optim_zero_grad(c.opt, true);
    zg_tensor *lc = zg_mul_scalar(loss_on(&c, tail, SHORT_K * MICRO), (float)SHORT_K / N_ACC);
    if (zg_backward(lc, NULL) || zg_optim_step(c.opt)) die("short step");
    zg_arena_reset();
    double mis_short = param_mismatch(&a, &c);
    printf("short window: mismatch vs one step on 32 samples with loss x k/N = 1/2: %.3f\n", mis_short);
    claim(mis_short <= 1.0, "the short window's update is k/N of its mean-loss step (rtol 1e-5)");
    int none = 1;
    for (int i = 0; i < a.n; i++) none &= zg_tensor_grad(a.p[i]) == NULL;
    claim(none, "the grads are cleared (None) after the flush");

    zg_accum_free(acc);
    model_free(&a);
    model_free(&b);
    model_free(&c);
    zg_tensor_free(x_all);
    zg_tensor_free(y_all);
    zg_arena_free_all();
    printf("%s\n", failures ? "accumulation: FAILED" : "accumulation: all claims hold");
    return failures ? 1 : 0;
}
