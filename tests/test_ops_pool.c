/* Pooling options and adaptive average pooling: ceil_mode (PyTorch's
 * output-size rule, the dropped last window), count_include_pad=False and
 * divisor_override of average pooling, adaptive_avg_pool2d / 1d; values
 * against PyTorch 1.13 (the calls in the comments), finite-difference
 * checks, errors, the modules, and live parity with PyTorch
 * (tests/parity/options_reference.py). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* x [1,1,5,5] = 0.5 i - 3 (i = 0..24), with x[1][3] = 9:
 *   -3   -2.5 -2   -1.5 -1
 *   -0.5  0    0.5  9    1.5
 *    2    2.5  3    3.5  4
 *    4.5  5    5.5  6    6.5
 *    7    7.5  8    8.5  9    */
static zg_tensor *grid5(void) {
    int64_t s[4] = {1, 1, 5, 5};
    zg_tensor *x = zg_zeros(s, 4);
    for (int i = 0; x && i < 25; i++) zg_tensor_data(x)[i] = 0.5f * (float)i - 3.0f;
    if (x) zg_tensor_data(x)[8] = 9.0f;
    return x;
}

/* Distinct values 0.01 (i p mod n), centred, with p a prime that does not
 * divide n: a scrambled ramp, so that no window's maximum has a rival
 * within a finite-difference step. */
static zg_tensor *distinct(const int64_t *shape, int ndim, int64_t p) {
    zg_tensor *t = zg_zeros(shape, ndim);
    const int64_t n = t ? zg_tensor_numel(t) : 0;
    for (int64_t i = 0; i < n; i++) zg_tensor_data(t)[i] = 0.01f * (float)((i * p) % n) - 0.005f * (float)n;
    return t;
}

static bool has_shape(const zg_tensor *t, int ndim, const int64_t *s) {
    if (!t || zg_tensor_ndim(t) != ndim) return false;
    for (int d = 0; d < ndim; d++)
        if (zg_tensor_size(t, d) != s[d]) return false;
    return true;
}

/* ------------------------------------------------------------------ */
/* ceil_mode, count_include_pad, divisor_override                       */
/* ------------------------------------------------------------------ */

TEST(pool_ceil_mode_output_size_rule) {
    /* F.max_pool2d(zeros(1,1,in,3), (k,1), (s,1), (p,0), ceil_mode=True).shape[2]
     * against ceil_mode=False. (4, k2, s3, p1): ceil gives 3 windows, the
     * last starting at 6 - 1 = 5, past the input and its left padding:
     * dropped, 2. (2, k3, s2): the window is larger than the input, one
     * output in ceil mode, none without. */
    const struct {
        int in, k, s, p, ceil_out, floor_out;
    } cases[] = {{5, 2, 2, 0, 3, 2}, {4, 2, 3, 1, 2, 2}, {7, 2, 3, 1, 3, 3}, {6, 3, 2, 1, 4, 3}, {7, 3, 2, 1, 4, 4},
                 {2, 3, 2, 0, 1, 0}, {1, 2, 2, 1, 1, 1}, {10, 3, 3, 0, 4, 3}, {5, 1, 2, 0, 3, 3}, {4, 1, 2, 0, 2, 2}};
    const zg_pool_opts ceil = {.ceil_mode = true};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int64_t s[4] = {1, 1, cases[i].in, 3};
        zg_tensor *x = zg_zeros(s, 4);
        const int k[2] = {cases[i].k, 1}, st[2] = {cases[i].s, 1}, p[2] = {cases[i].p, 0};
        zg_tensor *ym = zg_max_pool2d_ex(x, k, st, p, &ceil), *ya = zg_avg_pool2d_ex(x, k, st, p, &ceil);
        const int64_t want[4] = {1, 1, cases[i].ceil_out, 3};
        if (!has_shape(ym, 4, want) || !has_shape(ya, 4, want))
            zgt_fail(__FILE__, __LINE__, "in %d k %d s %d p %d: ceil_mode output size is not %d (%s)", cases[i].in,
                     cases[i].k, cases[i].s, cases[i].p, cases[i].ceil_out, ym ? "wrong" : zg_last_error());
        zg_tensor *yf = zg_max_pool2d_ex(x, k, st, p, NULL);
        const int64_t wf[4] = {1, 1, cases[i].floor_out, 3};
        if (cases[i].floor_out ? !has_shape(yf, 4, wf) : yf != NULL)
            zgt_fail(__FILE__, __LINE__, "in %d k %d s %d p %d: floor output size is not %d", cases[i].in,
                     cases[i].k, cases[i].s, cases[i].p, cases[i].floor_out);
        zg_tensor_free(x);
    }
}

TEST(pool_ceil_mode_values) {
    zg_tensor *x = grid5();
    const zg_pool_opts ceil = {.ceil_mode = true};
    const int k2[2] = {2, 2}, k3[2] = {3, 3}, s2[2] = {2, 2}, p1[2] = {1, 1};
    /* F.max_pool2d(x, 2, 2, 0, ceil_mode=True): the last row and column
     * are windows of 2 and 1 elements. */
    const float mx[9] = {0, 9, 1.5f, 5, 6, 6.5f, 7.5f, 8.5f, 9};
    CHECK_VALUES(zg_max_pool2d_ex(x, k2, s2, NULL, &ceil), mx, 9, 0);
    /* F.avg_pool2d(x, 2, 2, 0, ceil_mode=True): a window past the input
     * (there is no padding) divides by its part inside, e.g. 1.5 = (-1 +
     * 1.5) / 2... (0.25) and 9 / 1. */
    const float av[9] = {-1.5f, 1.5f, 0.25f, 3.5f, 4.5f, 5.25f, 7.25f, 8.25f, 9.0f};
    CHECK_VALUES(zg_avg_pool2d_ex(x, k2, s2, NULL, &ceil), av, 9, 1e-6);
    /* F.avg_pool2d(x, 3, 2, 1, ceil_mode=True): the padding counts, the
     * overhang past it does not. */
    const float av3[9] = {-0.6666666865f, 0.3888888955f, 0.8888888955f, 1.5f, 3.8888888359f,
                          3.3888888359f, 2.6666667461f, 4.5f,          3.3333332539f};
    CHECK_VALUES(zg_avg_pool2d_ex(x, k3, s2, p1, &ceil), av3, 9, 1e-6);
    /* A window larger than the input: F.max_pool2d / avg_pool2d of
     * [[1, 4], [2, 3]] with kernel 3, stride 2, ceil_mode=True. */
    int64_t s22[4] = {1, 1, 2, 2};
    zg_tensor *small = zg_tensor_from_data(ZG_FLOAT32, (float[]){1, 4, 2, 3}, s22, 4);
    CHECK_VALUES(zg_max_pool2d_ex(small, k3, s2, NULL, &ceil), (float[]){4}, 1, 0);
    CHECK_VALUES(zg_avg_pool2d_ex(small, k3, s2, NULL, &ceil), (float[]){2.5f}, 1, 1e-6);
    const float sp[4] = {1.1111111f, 1.1666666f, 0.8333333f, 0.75f};
    CHECK_VALUES(zg_avg_pool2d_ex(small, k3, s2, p1, &ceil), sp, 4, 1e-6);
    /* The defaults are the old ops. */
    const zg_pool_opts none = {0};
    zg_tensor *a = zg_avg_pool2d_ex(x, k3, s2, p1, &none), *b = zg_avg_pool2d(x, k3, s2, p1);
    CHECK(a && b && memcmp(zg_tensor_data(a), zg_tensor_data(b), 4 * sizeof(float)) == 0);
    zg_tensor_free(small);
    zg_tensor_free(x);
}

TEST(avg_pool_exclude_pad_and_divisor_override_values) {
    zg_tensor *x = grid5();
    const int k2[2] = {2, 2}, k3[2] = {3, 3}, s2[2] = {2, 2}, p1[2] = {1, 1};
    /* F.avg_pool2d(x, 3, 2, 1, count_include_pad=False): corner windows
     * divide by 4, edge ones by 6. */
    const float ex[9] = {-1.5f, 0.5833333134f, 2.0f, 2.25f, 3.8888888359f, 5.0833334923f, 6.0f, 6.75f, 7.5f};
    CHECK_VALUES(zg_avg_pool2d_ex(x, k3, s2, p1, &(zg_pool_opts){.exclude_pad = true}), ex, 9, 1e-6);
    /* The same with ceil_mode=True (5 = 2*2 + 1: ceil adds nothing here). */
    CHECK_VALUES(zg_avg_pool2d_ex(x, k3, s2, p1, &(zg_pool_opts){.ceil_mode = true, .exclude_pad = true}), ex, 9,
                 1e-6);
    /* F.avg_pool2d(x, 2, 2, 0, ceil_mode=True, divisor_override=3), and
     * -2 (PyTorch takes any non-zero divisor). */
    const float d3[9] = {-2.0f, 2.0f, 0.1666666716f, 4.6666665077f, 6.0f, 3.5f, 4.8333334923f, 5.5f, 3.0f};
    CHECK_VALUES(zg_avg_pool2d_ex(x, k2, s2, NULL, &(zg_pool_opts){.ceil_mode = true, .divisor_override = 3}), d3, 9,
                 1e-6);
    const float dm2[9] = {3.0f, -3.0f, -0.25f, -7.0f, -9.0f, -5.25f, -7.25f, -8.25f, -4.5f};
    CHECK_VALUES(zg_avg_pool2d_ex(x, k2, s2, NULL,
                                  &(zg_pool_opts){.ceil_mode = true, .exclude_pad = true, .divisor_override = -2}),
                 dm2, 9, 1e-6);
    zg_tensor_free(x);
}

typedef struct {
    int kernel[2], stride[2], padding[2];
    bool max;
    zg_pool_opts o;
} pool_case;

static zg_tensor *pool_fn(zg_tensor *const *in, void *ctx) {
    const pool_case *a = ctx;
    return a->max ? zg_max_pool2d_ex(in[0], a->kernel, a->stride, a->padding, &a->o)
                  : zg_avg_pool2d_ex(in[0], a->kernel, a->stride, a->padding, &a->o);
}

TEST(pool_options_gradchecks) {
    const struct {
        const char *name;
        int64_t shape[4];
        pool_case a;
    } cases[] = {
        {"max k2 ceil, odd sizes", {2, 2, 5, 7}, {{2, 2}, {2, 2}, {0, 0}, true, {.ceil_mode = true}}},
        {"max k3 s3 ceil", {1, 2, 7, 8}, {{3, 3}, {3, 3}, {0, 0}, true, {.ceil_mode = true}}},
        {"max k3 s2 p1 ceil", {2, 1, 6, 7}, {{3, 3}, {2, 2}, {1, 1}, true, {.ceil_mode = true}}},
        {"max k2 s3 p1 ceil (dropped window)", {1, 2, 4, 7}, {{2, 2}, {3, 3}, {1, 1}, true, {.ceil_mode = true}}},
        {"avg k2 ceil, odd sizes", {2, 2, 5, 7}, {{2, 2}, {2, 2}, {0, 0}, false, {.ceil_mode = true}}},
        {"avg k3 s2 p1 ceil", {2, 1, 6, 7}, {{3, 3}, {2, 2}, {1, 1}, false, {.ceil_mode = true}}},
        {"avg k3 s2 p1 exclude_pad", {2, 1, 7, 6}, {{3, 3}, {2, 2}, {1, 1}, false, {.exclude_pad = true}}},
        {"avg k3 s2 p1 ceil exclude_pad",
         {2, 1, 6, 7},
         {{3, 3}, {2, 2}, {1, 1}, false, {.ceil_mode = true, .exclude_pad = true}}},
        {"avg k3x2 s1x2 p1x0 exclude_pad", {1, 2, 5, 7}, {{3, 2}, {1, 2}, {1, 0}, false, {.exclude_pad = true}}},
        {"avg k3 s2 p1 divisor 5", {1, 2, 7, 6}, {{3, 3}, {2, 2}, {1, 1}, false, {.divisor_override = 5}}},
        {"avg k2 s3 p1 ceil divisor 3",
         {1, 2, 4, 7},
         {{2, 2}, {3, 3}, {1, 1}, false, {.ceil_mode = true, .exclude_pad = true, .divisor_override = 3}}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        zg_tensor *x = zgt_param(distinct(cases[i].shape, 4, 7919));
        pool_case a = cases[i].a;
        CHECK(GRADCHECK(cases[i].name, pool_fn, &x, 1, &a, NULL));
        zg_tensor_free(x);
    }
}

TEST(pool_ceil_mode_large_planes_in_parallel) {
    /* Big enough for the parallel loops; odd sizes, so the 2x2 kernel must
     * leave these to the general one. Each output's gradient 1 lands on
     * one element (max) or sums to 1 over its window (avg, divisor the
     * window's input elements): dx sums to the number of outputs. */
    int64_t shape[4] = {4, 8, 33, 31};
    zg_tensor *x = zgt_param(distinct(shape, 4, 7907));
    const zg_pool_opts o = {.ceil_mode = true, .exclude_pad = true};
    for (int m = 0; m < 2; m++) {
        pool_case a = {{2, 2}, {2, 2}, {0, 0}, m == 0, {.ceil_mode = true}};
        if (m == 1) a.o = o;
        zg_tensor_zero_grad(x, true);
        zg_tensor *y = pool_fn(&x, &a);
        const int64_t want[4] = {4, 8, 17, 16};
        CHECK(has_shape(y, 4, want));
        if (!y) continue;
        CHECK_OK(zg_backward(zg_sum(y), NULL));
        double s = 0;
        for (int64_t j = 0; j < zg_tensor_numel(x); j++) s += zg_tensor_get(zg_tensor_grad(x), j);
        CHECK_NEAR(s, 4 * 8 * 17 * 16, 1e-2);
    }
    zg_tensor_free(x);
}

TEST(pool_options_errors) {
    int64_t s[4] = {1, 2, 4, 4};
    zg_tensor *x = zg_randn(s, 4);
    const int k2[2] = {2, 2};
    CHECK_NULL_ERR(zg_max_pool2d_ex(x, k2, NULL, NULL, &(zg_pool_opts){.exclude_pad = true}),
                   "zg_max_pool2d_ex: exclude_pad and divisor_override apply to average pooling only");
    CHECK_NULL_ERR(zg_max_pool2d_ex(x, k2, NULL, NULL, &(zg_pool_opts){.divisor_override = 2}),
                   "apply to average pooling only");
    CHECK_NULL_ERR(zg_avg_pool2d_ex(NULL, k2, NULL, NULL, NULL), "zg_avg_pool2d_ex: x is NULL");
    /* In ceil mode a kernel larger than the input still fits with a
     * stride that reaches past it (one window), not with stride 1. */
    CHECK_PTR(zg_avg_pool2d_ex(x, (int[]){6, 2}, NULL, NULL, &(zg_pool_opts){.ceil_mode = true}));
    CHECK_NULL_ERR(zg_avg_pool2d_ex(x, (int[]){6, 2}, (int[]){1, 1}, NULL, &(zg_pool_opts){.ceil_mode = true}),
                   "zg_avg_pool2d_ex: x of shape [1,2,4,4] with kernel {6,2} and padding {0,0}: output size 0x3 is "
                   "too small");
    CHECK_NULL_ERR(zg_max_pool2d_ex(x, k2, NULL, (int[]){2, 0}, &(zg_pool_opts){.ceil_mode = true}),
                   "padding {2,0} should be at most half of kernel size {2,2}");
    zg_tensor_free(x);
}

/* ------------------------------------------------------------------ */
/* Adaptive average pooling                                             */
/* ------------------------------------------------------------------ */

TEST(adaptive_avg_pool_values) {
    zg_tensor *x = grid5();
    /* F.adaptive_avg_pool2d(x, (2, 3)): rows 0..2 and 2..4 (the middle
     * row in both), columns 0..1, 1..3, 3..4. */
    const float a23[6] = {-0.25f, 1.3888888359f, 2.5833332539f, 4.75f, 5.5f, 6.25f};
    zg_tensor *y = zg_adaptive_avg_pool2d(x, (int64_t[]){2, 3});
    CHECK(has_shape(y, 4, (int64_t[]){1, 1, 2, 3}));
    CHECK_VALUES(y, a23, 6, 1e-6);
    /* (1, 1) is the mean of the plane; the input's own size copies it. */
    double mean = 0;
    for (int i = 0; i < 25; i++) mean += zg_tensor_get(x, i) / 25.0;
    CHECK_NEAR(zg_tensor_get(zg_adaptive_avg_pool2d(x, (int64_t[]){1, 1}), 0), mean, 1e-6);
    CHECK_VALUES(zg_adaptive_avg_pool2d(x, (int64_t[]){5, 5}), zg_tensor_data(x), 25, 0);
    /* 1d: F.adaptive_avg_pool1d([[[1..7]]], 3), and [[[1, 2, 4]]] to 5
     * (more outputs than inputs: windows of 1 or 2 that overlap). */
    int64_t s7[3] = {1, 1, 7}, s3[3] = {1, 1, 3};
    zg_tensor *x7 = zg_tensor_from_data(ZG_FLOAT32, (float[]){1, 2, 3, 4, 5, 6, 7}, s7, 3);
    zg_tensor *x3 = zg_tensor_from_data(ZG_FLOAT32, (float[]){1, 2, 4}, s3, 3);
    CHECK_VALUES(zg_adaptive_avg_pool1d(x7, 3), ((float[]){2, 4, 6}), 3, 1e-6);
    zg_tensor *u = zg_adaptive_avg_pool1d(x3, 5);
    CHECK(has_shape(u, 3, (int64_t[]){1, 1, 5}));
    CHECK_VALUES(u, ((float[]){1, 1.5f, 2, 3, 4}), 5, 1e-6);
    /* Unbatched inputs: [C,H,W] and [C,L]. */
    int64_t s3d[3] = {1, 5, 5}, s2d[2] = {1, 7};
    zg_tensor *xc = zg_reshape(x, s3d, 3), *x7c = zg_reshape(x7, s2d, 2);
    zg_tensor *yc = zg_adaptive_avg_pool2d(xc, (int64_t[]){2, 3});
    CHECK(has_shape(yc, 3, (int64_t[]){1, 2, 3}));
    CHECK_VALUES(yc, a23, 6, 1e-6);
    zg_tensor *y7c = zg_adaptive_avg_pool1d(x7c, 3);
    CHECK(has_shape(y7c, 2, (int64_t[]){1, 3}));
    zg_tensor_free(x3);
    zg_tensor_free(x7);
    zg_tensor_free(x);
}

typedef struct {
    int64_t out[2];
    bool one_d;
} adaptive_case;

static zg_tensor *adaptive_fn(zg_tensor *const *in, void *ctx) {
    const adaptive_case *a = ctx;
    return a->one_d ? zg_adaptive_avg_pool1d(in[0], a->out[0]) : zg_adaptive_avg_pool2d(in[0], a->out);
}

TEST(adaptive_avg_pool_gradchecks) {
    const struct {
        const char *name;
        int64_t shape[4];
        int ndim;
        adaptive_case a;
    } cases[] = {
        {"2d 7x9 -> 3x4 (overlapping windows)", {2, 2, 7, 9}, 4, {{3, 4}, false}},
        {"2d 5x6 -> 1x1", {2, 3, 5, 6}, 4, {{1, 1}, false}},
        {"2d 4x3 -> 6x5 (upsampling)", {1, 2, 4, 3}, 4, {{6, 5}, false}},
        {"2d [C,H,W] 6x6 -> 4x4", {3, 6, 6}, 3, {{4, 4}, false}},
        {"1d 10 -> 4", {2, 3, 10}, 3, {{4, 0}, true}},
        {"1d [C,L] 7 -> 3", {3, 7}, 2, {{3, 0}, true}},
        {"1d 3 -> 5", {2, 2, 3}, 3, {{5, 0}, true}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        zg_tensor *x = zgt_param(distinct(cases[i].shape, cases[i].ndim, 7901));
        adaptive_case a = cases[i].a;
        CHECK(GRADCHECK(cases[i].name, adaptive_fn, &x, 1, &a, NULL));
        zg_tensor_free(x);
    }
    /* Large enough for the parallel loop: every output's gradient 1 sums
     * to 1 over its window, so dx sums to the number of outputs. */
    int64_t big[4] = {4, 16, 30, 29};
    zg_tensor *x = zgt_param(distinct(big, 4, 7919));
    zg_tensor *y = zg_adaptive_avg_pool2d(x, (int64_t[]){7, 5});
    CHECK(y && zg_tensor_grad_fn_name(y) && !strcmp(zg_tensor_grad_fn_name(y), "adaptive_avg_pool2d"));
    CHECK_OK(zg_backward(zg_sum(y), NULL));
    double s = 0;
    for (int64_t j = 0; j < zg_tensor_numel(x); j++) s += zg_tensor_get(zg_tensor_grad(x), j);
    CHECK_NEAR(s, 4 * 16 * 7 * 5, 1e-2);
    zg_tensor_free(x);
}

TEST(adaptive_avg_pool_errors) {
    int64_t s4[4] = {1, 2, 4, 4}, s2[2] = {2, 4}, s5[5] = {1, 1, 1, 2, 2}, e[4] = {1, 2, 0, 4};
    zg_tensor *x = zg_randn(s4, 4), *x2 = zg_randn(s2, 2), *x5 = zg_zeros(s5, 5), *xe = zg_zeros(e, 4);
    CHECK_NULL_ERR(zg_adaptive_avg_pool2d(NULL, (int64_t[]){2, 2}), "zg_adaptive_avg_pool2d: x is NULL");
    CHECK_NULL_ERR(zg_adaptive_avg_pool2d(x, NULL), "zg_adaptive_avg_pool2d: output_size is NULL");
    CHECK_NULL_ERR(zg_adaptive_avg_pool2d(x, (int64_t[]){2, 0}), "zg_adaptive_avg_pool2d: output size 0 must be positive");
    CHECK_NULL_ERR(zg_adaptive_avg_pool2d(x2, (int64_t[]){2, 2}),
                   "zg_adaptive_avg_pool2d: x of shape [2,4] must be 3D or 4D ([N,C,H,W] or [C,H,W])");
    CHECK_NULL_ERR(zg_adaptive_avg_pool2d(x5, (int64_t[]){2, 2}), "x of shape [1,1,1,2,2] must be 3D or 4D");
    CHECK_NULL_ERR(zg_adaptive_avg_pool2d(xe, (int64_t[]){2, 2}),
                   "zg_adaptive_avg_pool2d: x of shape [1,2,0,4] must have non-zero size in its pooled dims");
    CHECK_NULL_ERR(zg_adaptive_avg_pool1d(x, 2), "zg_adaptive_avg_pool1d: x of shape [1,2,4,4] must be 2D or 3D");
    CHECK_NULL_ERR(zg_adaptive_avg_pool1d(x2, -1), "zg_adaptive_avg_pool1d: output size -1 must be positive");
    zg_tensor *ts[] = {x, x2, x5, xe};
    for (int i = 0; i < 4; i++) zg_tensor_free(ts[i]);
}

/* ------------------------------------------------------------------ */
/* Modules                                                              */
/* ------------------------------------------------------------------ */

static bool same_values(const zg_tensor *a, const zg_tensor *b) {
    if (!a || !b || zg_tensor_numel(a) != zg_tensor_numel(b)) return false;
    return memcmp(zg_tensor_data((zg_tensor *)a), zg_tensor_data((zg_tensor *)b),
                  (size_t)zg_tensor_numel(a) * sizeof(float)) == 0;
}

TEST(pool_modules_with_options) {
    int64_t xs[4] = {2, 3, 7, 9};
    zg_tensor *x = zg_randn(xs, 4);
    const zg_pool_opts o = {.ceil_mode = true, .exclude_pad = true, .divisor_override = 4};
    zg_module *mp = zg_nn_max_pool2d_ex(2, 0, 0, &(zg_pool_opts){.ceil_mode = true});
    zg_module *ap = zg_nn_avg_pool2d_ex(3, 2, 1, &o), *dp = zg_nn_max_pool2d_ex(2, 2, 0, NULL);
    CHECK(mp && ap && dp);
    if (!mp || !ap || !dp) return;
    zg_tensor *y = zg_module_forward(mp, x);
    CHECK(has_shape(y, 4, (int64_t[]){2, 3, 4, 5}));
    CHECK(same_values(y, zg_max_pool2d_ex(x, (int[]){2, 2}, NULL, NULL, &(zg_pool_opts){.ceil_mode = true})));
    CHECK(same_values(zg_module_forward(ap, x), zg_avg_pool2d_ex(x, (int[]){3, 3}, (int[]){2, 2}, (int[]){1, 1}, &o)));
    CHECK(same_values(zg_module_forward(dp, x), zg_max_pool2d(x, (int[]){2, 2}, NULL, NULL)));
    /* The description (in errors) shows the options that are not defaults. */
    CHECK_NULL_ERR(zg_module_forward(mp, NULL), "MaxPool2d(kernel_size=2, stride=2, padding=0, ceil_mode=true)");
    CHECK_NULL_ERR(zg_module_forward(ap, NULL), "AvgPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=true, "
                                                "count_include_pad=false, divisor_override=4)");
    CHECK_NULL_ERR(zg_module_forward(dp, NULL), "MaxPool2d(kernel_size=2, stride=2, padding=0): input is NULL");
    CHECK_NULL_ERR(zg_nn_max_pool2d_ex(2, 0, 0, &(zg_pool_opts){.divisor_override = 2}),
                   "zg_nn_max_pool2d_ex: exclude_pad and divisor_override apply to average pooling only");
    CHECK_NULL_ERR(zg_nn_avg_pool2d_ex(2, 0, 2, &o), "zg_nn_avg_pool2d_ex: padding 2 must lie in [0, kernel/2]");
    zg_module_free(mp);
    zg_module_free(ap);
    zg_module_free(dp);
    zg_tensor_free(x);
}

TEST(sequential_does_not_fuse_a_ceil_mode_max_pool) {
    /* Conv2d then MaxPool2d(2) runs as one fused op with floor sizes; with
     * ceil_mode on an odd conv output it must not (7x9 -> 4x5, not 3x4). */
    zg_manual_seed(3);
    zg_module *mods[3] = {zg_nn_conv2d(2, 3, 3, 1, 1, 1, 1, true),
                          zg_nn_max_pool2d_ex(2, 0, 0, &(zg_pool_opts){.ceil_mode = true}), zg_nn_relu()};
    zg_module *seq = zg_nn_sequential(mods, 3);
    CHECK_PTR(seq);
    if (!seq) return;
    int64_t xs[4] = {2, 2, 7, 9};
    zg_tensor *x = zg_randn(xs, 4);
    zg_tensor *y = zg_module_forward(seq, x);
    CHECK(has_shape(y, 4, (int64_t[]){2, 3, 4, 5}));
    zg_tensor *c = zg_module_forward(zg_module_child(seq, 0), x);
    zg_tensor *p = zg_module_forward(zg_module_child(seq, 1), c);
    CHECK(same_values(y, zg_relu(p)));
    zg_tensor_free(x);
    zg_module_free(seq);
}

TEST(adaptive_pool_modules) {
    zg_module *a2 = zg_nn_adaptive_avg_pool2d(2, 3), *a1 = zg_nn_adaptive_avg_pool1d(4);
    CHECK(a2 && a1);
    if (!a2 || !a1) return;
    CHECK(!strcmp(zg_module_type(a2), "AdaptiveAvgPool2d") && !strcmp(zg_module_type(a1), "AdaptiveAvgPool1d"));
    CHECK(zg_module_num_params(a2) == 0 && zg_module_num_buffers(a2) == 0);
    int64_t s4[4] = {2, 3, 7, 5}, s3[3] = {2, 3, 9};
    zg_tensor *x = zg_randn(s4, 4), *x1 = zg_randn(s3, 3);
    CHECK(same_values(zg_module_forward(a2, x), zg_adaptive_avg_pool2d(x, (int64_t[]){2, 3})));
    CHECK(same_values(zg_module_forward(a1, x1), zg_adaptive_avg_pool1d(x1, 4)));
    CHECK_NULL_ERR(zg_module_forward(a2, NULL), "AdaptiveAvgPool2d(output_size=(2, 3)): input is NULL");
    CHECK_NULL_ERR(zg_module_forward(a1, NULL), "AdaptiveAvgPool1d(output_size=4): input is NULL");
    CHECK_NULL_ERR(zg_module_forward(a1, x), "AdaptiveAvgPool1d(output_size=4): zg_adaptive_avg_pool1d: x of shape");
    CHECK_NULL_ERR(zg_nn_adaptive_avg_pool2d(2, 0), "zg_nn_adaptive_avg_pool2d: output size 0 must be positive");
    CHECK_NULL_ERR(zg_nn_adaptive_avg_pool1d(-3), "zg_nn_adaptive_avg_pool1d: output size -3 must be positive");
    zg_tensor_free(x);
    zg_tensor_free(x1);
    zg_module_free(a2);
    zg_module_free(a1);
}

/* ------------------------------------------------------------------ */
/* PyTorch parity                                                       */
/* ------------------------------------------------------------------ */

static const char *const ref_files[] = {"options_pool"};
static const char *const ref_sources[] = {"tests/parity/options_reference.py", "tests/parity/torch_reference.py"};
static zgt_refset refs = {ref_sources, 2, ref_files, 1, NULL, 0};
static double worst_y, worst_gx;

static zg_tensor *run_spec(const char *c, const char *spec, zg_tensor *x) {
    char op[32] = "";
    int a[9];
    sscanf(spec, "%31s", op);
    if (!strcmp(op, "max_pool2d") &&
        sscanf(spec, "%*s %d %d %d %d %d %d %d", &a[0], &a[1], &a[2], &a[3], &a[4], &a[5], &a[6]) == 7)
        return zg_max_pool2d_ex(x, a, a + 2, a + 4, &(zg_pool_opts){.ceil_mode = a[6] != 0});
    if (!strcmp(op, "avg_pool2d") && sscanf(spec, "%*s %d %d %d %d %d %d %d %d %d", &a[0], &a[1], &a[2], &a[3], &a[4],
                                            &a[5], &a[6], &a[7], &a[8]) == 9) {
        const zg_pool_opts o = {.ceil_mode = a[6] != 0, .exclude_pad = a[7] == 0, .divisor_override = a[8]};
        return zg_avg_pool2d_ex(x, a, a + 2, a + 4, &o);
    }
    int64_t o[2];
    if (!strcmp(op, "adaptive_avg_pool2d") && sscanf(spec, "%*s %" SCNd64 " %" SCNd64, &o[0], &o[1]) == 2)
        return zg_adaptive_avg_pool2d(x, o);
    if (!strcmp(op, "adaptive_avg_pool1d") && sscanf(spec, "%*s %" SCNd64, &o[0]) == 1)
        return zg_adaptive_avg_pool1d(x, o[0]);
    zgt_fail(__FILE__, __LINE__, "%s: cannot parse spec \"%s\"", c, spec);
    return NULL;
}

static void run_pool_case(const zg_safetensors *st, const char *c) {
    const char *spec = zg_safetensors_metadata(st, c);
    zg_tensor *x = zg_tensor_clone(zgt_ref_get(st, "%s.x", c));
    if (!spec || !x) {
        zgt_fail(__FILE__, __LINE__, "%s: no spec or input", c);
        zg_tensor_free(x);
        return;
    }
    zg_tensor_set_requires_grad(x, true);
    zg_tensor *y = run_spec(c, spec, x);
    char what[128];
    snprintf(what, sizeof what, "%s y", c);
    CHECK_REF(what, y, zgt_ref_get(st, "%s.y", c), 1e-6, &worst_y);
    if (y) {
        CHECK_OK(zg_backward(y, &(zg_backward_opts){.grad = zgt_ref_get(st, "%s.gy", c)}));
        snprintf(what, sizeof what, "%s gx", c);
        CHECK_REF(what, zg_tensor_grad(x), zgt_ref_get(st, "%s.gx", c), 1e-6, &worst_gx);
    }
    zg_tensor_free(x);
    zg_arena_reset();
}

TEST(parity_pool_options_and_adaptive_pooling) {
    zg_safetensors *st = zgt_refs_open(&refs, "options_pool");
    if (!st) return;
    worst_y = worst_gx = 0;
    int n = zgt_ref_cases(st, run_pool_case);
    CHECK(n >= 25);
    printf("parity pool options (torch %s): %d cases, worst relative error y %.3g, dx %.3g\n",
           zg_safetensors_metadata(st, "torch"), n, worst_y, worst_gx);
    zg_safetensors_free(st);
}
