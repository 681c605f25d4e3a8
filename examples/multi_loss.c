/* Several losses in one step (semantics.md section 6).
 *
 * An MLP with a shared trunk and two heads: a classifier (cross-entropy) and
 * an auxiliary regression head (0.3 * MSE). Each backward ADDS into the same
 * .grad, so the correct step is pattern B:
 *
 *     zero_grad; forward; backward(loss1); backward(loss2); step
 *
 * Moving zero_grad between the two backwards silently erases loss1's
 * gradient. The program computes four gradients from the same parameters
 * and batch -- loss1 alone, loss2 alone, both with zero_grad at the top, both
 * with zero_grad between -- and checks
 *
 *     grad(both, top)     == grad1 + grad2
 *     grad(both, between) == grad2            (grad1 was lost)
 *
 * then trains a while with pattern B and checks both losses went down. It
 * exits non-zero if any claim fails. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "zgrad.h"

#define N 128
#define IN 4
#define HID 32
#define CLASSES 3
#define AUX_WEIGHT 0.3f
#define MAXP 16

static int failures = 0;
static void claim(int ok, const char *what) {
    printf("%s: %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) failures++;
}
static void die(const char *what) {
    fprintf(stderr, "multi_loss: %s: %s\n", what, zg_last_error());
    exit(1);
}

typedef struct {
    zg_module *trunk, *head_cls, *head_aux;
    zg_tensor *params[MAXP];
    int n_params;
    int64_t numel; /* all parameters together */
} model;

static void model_init(model *m) {
    zg_module *t[] = {zg_nn_linear(IN, HID, true), zg_nn_tanh()};
    m->trunk = zg_nn_sequential(t, 2);
    m->head_cls = zg_nn_linear(HID, CLASSES, true);
    m->head_aux = zg_nn_linear(HID, 1, true);
    if (!m->trunk || !m->head_cls || !m->head_aux) die("building the model");
    m->n_params = zg_module_params(m->trunk, m->params, MAXP);
    m->n_params += zg_module_params(m->head_cls, m->params + m->n_params, MAXP - m->n_params);
    m->n_params += zg_module_params(m->head_aux, m->params + m->n_params, MAXP - m->n_params);
    m->numel = 0;
    for (int i = 0; i < m->n_params; i++) m->numel += zg_tensor_numel(m->params[i]);
}

/* The two losses of one forward (sharing the trunk's graph). */
static void forward(model *m, zg_tensor *x, zg_tensor *y, zg_tensor *r, zg_tensor **l1, zg_tensor **l2) {
    zg_tensor *h = zg_module_forward(m->trunk, x);
    *l1 = zg_cross_entropy(zg_module_forward(m->head_cls, h), y, NULL);
    *l2 = zg_mul_scalar(zg_mse_loss(zg_module_forward(m->head_aux, h), r, ZG_REDUCTION_MEAN), AUX_WEIGHT);
    if (!*l1 || !*l2) die("forward");
}

/* Copies every parameter's .grad (zeros where None) into out. */
static void gather_grads(const model *m, float *out) {
    for (int i = 0; i < m->n_params; i++) {
        zg_tensor *g = zg_tensor_grad(m->params[i]);
        int64_t n = zg_tensor_numel(m->params[i]);
        for (int64_t k = 0; k < n; k++) out[k] = g ? zg_tensor_get(g, k) : 0.0f;
        out += n;
    }
}

static void zero_grad(model *m) {
    for (int i = 0; i < m->n_params; i++) zg_tensor_zero_grad(m->params[i], true);
}

static double norm2(const float *v, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)v[i] * v[i];
    return sqrt(s);
}
/* max |a - b| / (max |b| + tiny) */
static double rel_diff(const float *a, const float *b, int64_t n) {
    double d = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        mb = fmax(mb, fabs((double)b[i]));
    }
    return d / (mb + 1e-30);
}

int main(void) {
    zg_manual_seed(7);
    /* Data: class = which of three sectors x[0..1] points into; the
     * auxiliary target is the radius |x[0..1]|. */
    int64_t xs[2] = {N, IN}, ys[1] = {N}, rs[2] = {N, 1};
    zg_tensor *x = zg_randn(xs, 2);
    zg_tensor *y = zg_tensor_new(ZG_INT64, ys, 1), *r = zg_tensor_new(ZG_FLOAT32, rs, 2);
    for (int i = 0; i < N; i++) {
        float a = zg_tensor_get(x, i * IN), b = zg_tensor_get(x, i * IN + 1);
        float th = atan2f(b, a) + 3.14159265f;
        zg_tensor_data_i64(y)[i] = (int64_t)(th / (2.0f * 3.14159265f / CLASSES)) % CLASSES;
        zg_tensor_data(r)[i] = sqrtf(a * a + b * b);
    }

    model m;
    model_init(&m);
    float *g1 = malloc(sizeof(float) * m.numel), *g2 = malloc(sizeof(float) * m.numel);
    float *g_top = malloc(sizeof(float) * m.numel), *g_between = malloc(sizeof(float) * m.numel);
    float *sum = malloc(sizeof(float) * m.numel);
    zg_backward_opts keep = {.retain_graph = true};
    zg_tensor *l1, *l2;

    /* These experiments erase gradients on purpose: keep the gradient-
     * lifecycle sanitizer (ZG_SANITIZE) quiet while they run. */
    zg_sanitize_mode san = zg_sanitize_get_mode();
    zg_sanitize_set_mode(ZG_SANITIZE_OFF);

    /* loss1 alone, loss2 alone. */
    zero_grad(&m);
    forward(&m, x, y, r, &l1, &l2);
    if (zg_backward(l1, NULL)) die("backward loss1");
    gather_grads(&m, g1);
    zero_grad(&m);
    forward(&m, x, y, r, &l1, &l2);
    if (zg_backward(l2, NULL)) die("backward loss2");
    gather_grads(&m, g2);

    /* Pattern B: zero_grad at the top, both backwards (the first keeps the
     * shared trunk's graph for the second). */
    zero_grad(&m);
    forward(&m, x, y, r, &l1, &l2);
    if (zg_backward(l1, &keep) || zg_backward(l2, NULL)) die("backward both");
    gather_grads(&m, g_top);

    /* The mistake: zero_grad between the backwards. */
    zero_grad(&m);
    forward(&m, x, y, r, &l1, &l2);
    if (zg_backward(l1, &keep)) die("backward loss1");
    zero_grad(&m);
    if (zg_backward(l2, NULL)) die("backward loss2");
    gather_grads(&m, g_between);
    zg_arena_reset();
    zero_grad(&m);
    zg_sanitize_set_mode(san);

    for (int64_t i = 0; i < m.numel; i++) sum[i] = g1[i] + g2[i];
    printf("|grad1| = %.6f  |grad2| = %.6f  |grad1 + grad2| = %.6f\n", norm2(g1, m.numel), norm2(g2, m.numel),
           norm2(sum, m.numel));
    printf("|grad(both, zero_grad at top)|     = %.6f\n", norm2(g_top, m.numel));
    printf("|grad(both, zero_grad in between)| = %.6f\n", norm2(g_between, m.numel));
    printf("first weight element: grad1 %.7f grad2 %.7f top %.7f between %.7f\n", g1[0], g2[0], g_top[0],
           g_between[0]);
    /* .grad accumulates g1 then adds g2: the same float additions as
     * g1 + g2, so the sums agree to rounding (1e-6 allows for an engine
     * that orders the adds differently). */
    double d_top = rel_diff(g_top, sum, m.numel), d_between = rel_diff(g_between, g2, m.numel);
    double d_lost = rel_diff(g_between, sum, m.numel);
    printf("max rel diff: top vs grad1+grad2 %.3g, between vs grad2 %.3g, between vs grad1+grad2 %.3g\n", d_top,
           d_between, d_lost);
    claim(d_top <= 1e-6, "pattern B (zero_grad at the top) gives grad1 + grad2");
    claim(d_between <= 1e-6, "zero_grad between the backwards leaves only grad2");
    claim(d_lost > 1e-2, "so the first loss's gradient is lost");

    /* Training with pattern B. */
    zg_optim_config cfg = zg_optim_defaults(ZG_ADAM);
    cfg.lr = 1e-2;
    zg_optim *opt = zg_optim_new(ZG_ADAM, m.params, m.n_params, &cfg);
    if (!opt) die("optimizer");
    float first1 = 0, first2 = 0, last1 = 0, last2 = 0;
    for (int step = 0; step < 300; step++) {
        zg_optim_zero_grad(opt, true);              /* zero_grad at the top */
        zg_sanitize_expect_backwards(2);            /* tells the sanitizer: two losses */
        forward(&m, x, y, r, &l1, &l2);             /* forward, two losses */
        if (zg_backward(l1, &keep)) die("backward"); /* backward 1 */
        if (zg_backward(l2, NULL)) die("backward");  /* backward 2 adds in */
        if (zg_optim_step(opt)) die("step");         /* step */
        last1 = zg_tensor_item(l1);
        last2 = zg_tensor_item(l2);
        if (step == 0) first1 = last1, first2 = last2;
        if (step % 100 == 0 || step == 299) printf("step %3d  ce %.4f  0.3*mse %.4f\n", step, last1, last2);
        zg_arena_reset();
    }
    claim(last1 < 0.5f * first1, "cross-entropy at least halved");
    claim(last2 < 0.5f * first2, "auxiliary loss at least halved");

    zg_optim_free(opt);
    zg_module_free(m.trunk);
    zg_module_free(m.head_cls);
    zg_module_free(m.head_aux);
    zg_tensor_free(x);
    zg_tensor_free(y);
    zg_tensor_free(r);
    free(g1);
    free(g2);
    free(g_top);
    free(g_between);
    free(sum);
    zg_arena_free_all();
    printf("%s\n", failures ? "multi_loss: FAILED" : "multi_loss: all claims hold");
    return failures ? 1 : 0;
}
