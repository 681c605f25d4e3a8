/* Convolution, pooling and batch-norm ops: forward values (checked against
 * PyTorch 1.13, numbers in the comments' calls), finite-difference
 * gradient checks for every option, adjoint checks at sizes too big for
 * finite differences (batches split across threads), the same bits for
 * any thread count, NaN / tie rules of max pooling, the running
 * statistics of batch norm, and the errors. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kernels/kernels_internal.h"
#include "ops/conv_internal.h"

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

static zg_tensor *ramp(const int64_t *shape, int ndim, float start, float step) {
    zg_tensor *t = zg_zeros(shape, ndim);
    for (int64_t i = 0; t && i < zg_tensor_numel(t); i++) zg_tensor_data(t)[i] = start + step * (float)i;
    return t;
}

/* Distinct values 0.01 * (a permutation of 0..n-1), shifted to mean ~0:
 * the max of a window never has a rival within a finite-difference step. */
static zg_tensor *distinct(const int64_t *shape, int ndim, uint64_t seed) {
    zg_tensor *t = zg_zeros(shape, ndim);
    if (!t) return NULL;
    int64_t n = zg_tensor_numel(t);
    float *d = zg_tensor_data(t);
    for (int64_t i = 0; i < n; i++) d[i] = (float)i;
    uint64_t s = seed * 2654435761u + 1;
    for (int64_t i = n - 1; i > 0; i--) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int64_t j = (int64_t)((s >> 33) % (uint64_t)(i + 1));
        float tmp = d[i];
        d[i] = d[j];
        d[j] = tmp;
    }
    for (int64_t i = 0; i < n; i++) d[i] = 0.01f * (d[i] - (float)n / 2);
    return t;
}

static double dot(const zg_tensor *a, const zg_tensor *b) {
    double s = 0;
    for (int64_t i = 0; i < zg_tensor_numel(a); i++) s += (double)zg_tensor_get(a, i) * zg_tensor_get(b, i);
    return s;
}

typedef struct {
    int stride[2], padding[2], dilation[2], groups;
} conv_args;

static zg_tensor *conv_fn(zg_tensor *const *in, void *ctx) {
    const conv_args *a = ctx;
    return zg_conv2d(in[0], in[1], in[2], a->stride, a->padding, a->dilation, a->groups);
}

/* Gradient check of conv2d with x [xs], weight [ws] and (if bias) a bias.
 * conv2d is linear in each input while the others are fixed, so a central
 * difference has no truncation error at any step: a step of 0.1 instead of
 * 1e-3 divides the rounding noise of the quotient (about 6e-8 |f|
 * sqrt(n_out) / eps, tests/harness.h) by 100. With 16 x 32 x 32 outputs
 * that noise is ~8e-3 |f| at 1e-3, above the tolerance; at 0.1 it is
 * ~8e-5 |f|, far below it, while a wrong formula still moves the gradient
 * by O(1). */
static void conv_gradcheck(const char *name, const int64_t xs[4], const int64_t ws[4], bool bias, conv_args a) {
    zg_tensor *x = zgt_param(zg_randn(xs, 4));
    zg_tensor *w = zgt_param(zg_normal(ws, 4, 0.0f, 0.5f));
    zg_tensor *b = bias ? zgt_param(zg_randn(ws, 1)) : NULL;
    zg_tensor *in[3] = {x, w, b};
    const zgt_gradcheck_opts linear_in_each = {.eps = 0.1, .atol = 1e-3, .rtol = 1e-2};
    CHECK(GRADCHECK(name, conv_fn, in, bias ? 3 : 2, &a, &linear_in_each));
    zg_tensor_free(x);
    zg_tensor_free(w);
    zg_tensor_free(b);
}

/* ------------------------------------------------------------------ */
/* conv2d                                                              */
/* ------------------------------------------------------------------ */

TEST(conv2d_forward_values) {
    /* F.conv2d(arange(1,33).reshape(1,2,4,4), (arange(16)-8).reshape(2,2,2,2)/8,
     * [0.5,-1], stride=2, padding=1) */
    int64_t xs[4] = {1, 2, 4, 4}, ws[4] = {2, 2, 2, 2}, bs = 2;
    zg_tensor *x = ramp(xs, 4, 1, 1), *w = ramp(ws, 4, -1, 0.125f);
    zg_tensor *b = zg_tensor_from_data(ZG_FLOAT32, (float[]){0.5f, -1}, &bs, 1);
    zg_tensor *y = zg_conv2d(x, w, b, (int[]){2, 2}, (int[]){1, 1}, (int[]){1, 1}, 1);
    const float e1[18] = {-2.25, -9.75, -7.5, -20.5, -55.5, -35.5, -21.75, -53.25, -31.5,
                          14.25, 30.75, 15.0, 38.0, 75.0,  35.0,  18.75,  35.25,  15.0};
    CHECK(y && zg_tensor_ndim(y) == 4 && zg_tensor_size(y, 1) == 2 && zg_tensor_size(y, 2) == 3);
    CHECK_VALUES(y, e1, 18, 1e-5);
    CHECK(zg_tensor_grad_fn_name(y) == NULL); /* nothing requires grad */

    /* Dilation 2: F.conv2d(arange(1,26).reshape(1,1,5,5), [[1,-1],[2,.5]], dilation=2) */
    int64_t x2s[4] = {1, 1, 5, 5}, w2s[4] = {1, 1, 2, 2};
    zg_tensor *x2 = ramp(x2s, 4, 1, 1), *w2 = zg_tensor_from_data(ZG_FLOAT32, (float[]){1, -1, 2, 0.5f}, w2s, 4);
    const float e2[9] = {26.5, 29, 31.5, 39, 41.5, 44, 51.5, 54, 56.5};
    CHECK_VALUES(zg_conv2d(x2, w2, NULL, NULL, NULL, (int[]){2, 2}, 1), e2, 9, 1e-5);

    /* Groups 2, a 1x2 kernel: F.conv2d(arange(1,19).reshape(1,2,3,3),
     * [1,2,-1,.5].reshape(2,1,1,2), groups=2) */
    int64_t x3s[4] = {1, 2, 3, 3}, w3s[4] = {2, 1, 1, 2};
    zg_tensor *x3 = ramp(x3s, 4, 1, 1), *w3 = zg_tensor_from_data(ZG_FLOAT32, (float[]){1, 2, -1, 0.5f}, w3s, 4);
    const float e3[12] = {5, 8, 14, 17, 23, 26, -4.5, -5, -6, -6.5, -7.5, -8};
    zg_tensor *y3 = zg_conv2d(x3, w3, NULL, NULL, NULL, NULL, 2);
    CHECK(y3 && zg_tensor_size(y3, 2) == 3 && zg_tensor_size(y3, 3) == 2);
    CHECK_VALUES(y3, e3, 12, 1e-5);

    zg_tensor *tensors[] = {x, w, b, x2, w2, x3, w3};
    for (size_t i = 0; i < sizeof tensors / sizeof *tensors; i++) zg_tensor_free(tensors[i]);
}

TEST(conv2d_gradcheck_options) {
    /* Each option alone, then together. */
    conv_gradcheck("conv basic", (int64_t[]){2, 3, 5, 5}, (int64_t[]){4, 3, 3, 3}, true,
                   (conv_args){{1, 1}, {0, 0}, {1, 1}, 1});
    conv_gradcheck("conv stride 2", (int64_t[]){2, 2, 7, 6}, (int64_t[]){3, 2, 3, 3}, true,
                   (conv_args){{2, 2}, {0, 0}, {1, 1}, 1});
    conv_gradcheck("conv padding", (int64_t[]){2, 2, 5, 4}, (int64_t[]){3, 2, 3, 3}, true,
                   (conv_args){{1, 1}, {1, 2}, {1, 1}, 1});
    conv_gradcheck("conv dilation 2", (int64_t[]){1, 2, 7, 7}, (int64_t[]){3, 2, 3, 3}, true,
                   (conv_args){{1, 1}, {1, 1}, {2, 2}, 1});
    conv_gradcheck("conv groups 2", (int64_t[]){2, 4, 5, 5}, (int64_t[]){6, 2, 3, 3}, true,
                   (conv_args){{1, 1}, {1, 1}, {1, 1}, 2});
    conv_gradcheck("conv no bias", (int64_t[]){2, 3, 5, 5}, (int64_t[]){2, 3, 2, 2}, false,
                   (conv_args){{1, 1}, {0, 0}, {1, 1}, 1});
    conv_gradcheck("conv all options", (int64_t[]){3, 4, 9, 8}, (int64_t[]){4, 2, 3, 2}, false,
                   (conv_args){{2, 1}, {1, 2}, {2, 1}, 2});
    /* Depthwise (groups = channels), one input channel. */
    conv_gradcheck("conv depthwise", (int64_t[]){2, 3, 5, 5}, (int64_t[]){3, 1, 3, 3}, true,
                   (conv_args){{1, 1}, {1, 1}, {1, 1}, 3});
    conv_gradcheck("conv cin 1", (int64_t[]){3, 1, 6, 6}, (int64_t[]){4, 1, 3, 3}, true,
                   (conv_args){{1, 1}, {1, 1}, {1, 1}, 1});
}

TEST(conv2d_gradcheck_large_gemm) {
    /* One sample whose GEMM (16 x 1024 x 25) OpenBLAS runs on its own
     * threads, with few elements to perturb. */
    conv_gradcheck("conv large gemm", (int64_t[]){1, 1, 32, 32}, (int64_t[]){16, 1, 5, 5}, true,
                   (conv_args){{1, 1}, {2, 2}, {1, 1}, 1});
}

/* y = conv(x, w) + b is linear in x and in w: the gradients of sum(v * y)
 * satisfy <v, y(b = 0)> = <x, dx> = <w, dw>, and db = per-channel sums of v.
 * A one-pass check of the backward at sizes too big for finite differences. */
static void conv_adjoint(const char *name, const int64_t xs[4], const int64_t ws[4], conv_args a) {
    zg_tensor *x = zgt_param(zg_randn(xs, 4)), *w = zgt_param(zg_randn(ws, 4)), *b = zgt_param(zg_zeros(ws, 1));
    zg_tensor *y = zg_conv2d(x, w, b, a.stride, a.padding, a.dilation, a.groups);
    CHECK_PTR(y);
    if (y) {
        zg_tensor *v = zg_randn(zg_tensor_shape(y), 4);
        CHECK_OK(zg_backward(y, &(zg_backward_opts){.grad = v}));
        double vy = dot(v, y), xdx = dot(x, zg_tensor_grad(x)), wdw = dot(w, zg_tensor_grad(w));
        double scale = sqrt(dot(v, v) * dot(y, y));
        if (fabs(vy - xdx) > 1e-5 * scale || fabs(vy - wdw) > 1e-5 * scale)
            zgt_fail(__FILE__, __LINE__, "%s: <v,y> %.9g, <x,dx> %.9g, <w,dw> %.9g", name, vy, xdx, wdw);
        int64_t C = ws[0], P = zg_tensor_numel(y) / (xs[0] * C);
        for (int64_t c = 0; c < C; c++) {
            double s = 0;
            for (int64_t n = 0; n < xs[0]; n++)
                for (int64_t p = 0; p < P; p++) s += zg_tensor_get(v, (n * C + c) * P + p);
            CHECK_NEAR(zg_tensor_get(zg_tensor_grad(b), c), s, 1e-4 * (1 + fabs(s)));
        }
        zg_tensor_free(v);
    }
    zg_tensor_free(x);
    zg_tensor_free(w);
    zg_tensor_free(b);
}

TEST(conv2d_adjoint_large) {
    /* Batches big enough to be split across threads (serial GEMMs). */
    conv_adjoint("default CNN conv2", (int64_t[]){4, 32, 14, 14}, (int64_t[]){64, 32, 3, 3},
                 (conv_args){{1, 1}, {1, 1}, {1, 1}, 1});
    conv_adjoint("stride 2, groups 2", (int64_t[]){3, 32, 28, 28}, (int64_t[]){64, 16, 3, 3},
                 (conv_args){{2, 2}, {1, 1}, {1, 1}, 2});
    conv_adjoint("dilation 2, padding 2, asymmetric stride", (int64_t[]){2, 8, 40, 40}, (int64_t[]){48, 8, 3, 3},
                 (conv_args){{1, 2}, {2, 2}, {2, 2}, 1});
    conv_adjoint("default CNN conv1", (int64_t[]){9, 1, 28, 28}, (int64_t[]){32, 1, 3, 3},
                 (conv_args){{1, 1}, {1, 1}, {1, 1}, 1});
    /* One big sample: OpenBLAS threads the GEMMs. */
    conv_adjoint("one sample", (int64_t[]){1, 16, 30, 30}, (int64_t[]){32, 16, 3, 3},
                 (conv_args){{1, 1}, {1, 1}, {1, 1}, 1});
}

TEST(conv2d_same_bits_for_any_thread_count) {
    /* The batch split and the chunked weight-gradient sums give the same
     * bits on one thread (OpenBLAS threading instead) as on several. */
    int64_t xs[4] = {10, 16, 12, 12}, ws[4] = {32, 16, 3, 3};
    zg_tensor *x = zgt_param(zg_randn(xs, 4)), *w = zgt_param(zg_randn(ws, 4)), *b = zgt_param(zg_randn(ws, 1));
    zg_tensor *ref[4] = {NULL, NULL, NULL, NULL};
    const int threads[2] = {omp_get_max_threads(), 1};
    for (int r = 0; r < 2; r++) {
        omp_set_num_threads(threads[r]);
        zg_tensor_zero_grad(x, true);
        zg_tensor_zero_grad(w, true);
        zg_tensor_zero_grad(b, true);
        zg_tensor *y = zg_conv2d(x, w, b, NULL, (int[]){1, 1}, NULL, 1);
        zg_manual_seed(123); /* the same v on both runs */
        zg_tensor *v = zg_randn(zg_tensor_shape(y), 4);
        CHECK_OK(zg_backward(y, &(zg_backward_opts){.grad = v}));
        zg_tensor *got[4] = {y, zg_tensor_grad(x), zg_tensor_grad(w), zg_tensor_grad(b)};
        for (int k = 0; k < 4; k++) {
            if (r == 0) {
                ref[k] = zg_tensor_clone(got[k]);
            } else if (got[k] && ref[k]) {
                bool same = true;
                for (int64_t i = 0; same && i < zg_tensor_numel(got[k]); i++)
                    same = zg_tensor_get(got[k], i) == zg_tensor_get(ref[k], i);
                if (!same) zgt_fail(__FILE__, __LINE__, "result %d differs between %d and 1 threads", k, threads[0]);
            }
        }
        zg_tensor_free(v);
    }
    omp_set_num_threads(threads[0]);
    for (int k = 0; k < 4; k++) zg_tensor_free(ref[k]);
    zg_tensor_free(x);
    zg_tensor_free(w);
    zg_tensor_free(b);
}

TEST(conv2d_graph_and_saved_weight) {
    int64_t xs[4] = {2, 2, 5, 5}, ws[4] = {3, 2, 3, 3};
    zg_tensor *x = zgt_param(zg_randn(xs, 4)), *w = zgt_param(zg_randn(ws, 4));
    zg_tensor *y = zg_conv2d(x, w, NULL, NULL, NULL, NULL, 1);
    CHECK(y && zg_tensor_grad_fn_name(y) && strcmp(zg_tensor_grad_fn_name(y), "conv2d") == 0);
    /* The backward reads the weight: an in-place change is refused. */
    zg_no_grad_enter();
    CHECK_OK(zg_tensor_mul_scalar_(w, 2.0f));
    zg_tensor *y2 = zg_conv2d(x, w, NULL, NULL, NULL, NULL, 1);
    zg_no_grad_exit();
    CHECK(y2 && zg_tensor_grad_fn_name(y2) == NULL);
    CHECK_ERR(zg_backward(zg_sum(y), NULL), "modified in place");
    /* Only x requires grad: w gets none. */
    zg_tensor_set_requires_grad(w, false);
    zg_tensor_zero_grad(x, true);
    y = zg_conv2d(x, w, NULL, NULL, NULL, NULL, 1);
    CHECK_OK(zg_backward(zg_sum(y), NULL));
    CHECK(zg_tensor_grad(x) && zg_tensor_grad(w) == NULL);
    zg_tensor_free(x);
    zg_tensor_free(w);
}

TEST(conv2d_empty_batch) {
    /* PyTorch accepts N = 0: an empty output, zero weight gradients. */
    int64_t xs[4] = {0, 2, 5, 5}, ws[4] = {3, 2, 3, 3}, big_xs[4] = {0, 16, 32, 32}, big_ws[4] = {32, 16, 3, 3};
    for (int k = 0; k < 2; k++) {
        zg_tensor *x = zgt_param(zg_zeros(k ? big_xs : xs, 4)), *w = zgt_param(zg_randn(k ? big_ws : ws, 4));
        zg_tensor *b = zgt_param(zg_randn(k ? big_ws : ws, 1));
        zg_tensor *y = zg_conv2d(x, w, b, NULL, (int[]){1, 1}, NULL, 1);
        CHECK(y && zg_tensor_numel(y) == 0 && zg_tensor_size(y, 1) == (k ? 32 : 3));
        if (y) {
            CHECK_OK(zg_backward(zg_sum(y), NULL));
            zg_tensor *gw = zg_tensor_grad(w), *gb = zg_tensor_grad(b);
            CHECK(gw && gb && dot(gw, gw) == 0 && dot(gb, gb) == 0);
        }
        zg_tensor_free(x);
        zg_tensor_free(w);
        zg_tensor_free(b);
    }
}

TEST(conv2d_errors) {
    int64_t xs[4] = {2, 4, 6, 6}, ws[4] = {6, 2, 3, 3}, bs = 5, s3[3] = {4, 6, 6};
    zg_tensor *x = zg_randn(xs, 4), *w = zg_randn(ws, 4), *b5 = zg_randn(&bs, 1), *x3 = zg_randn(s3, 3);
    zg_tensor *xi = zg_tensor_new(ZG_INT64, xs, 4);
    const int one[2] = {1, 1};
    CHECK_NULL_ERR(zg_conv2d(NULL, w, NULL, one, NULL, one, 2), "zg_conv2d: x is NULL");
    CHECK_NULL_ERR(zg_conv2d(x, NULL, NULL, one, NULL, one, 2), "zg_conv2d: weight is NULL");
    CHECK_NULL_ERR(zg_conv2d(xi, w, NULL, one, NULL, one, 2), "zg_conv2d");
    CHECK_NULL_ERR(zg_conv2d(x3, w, NULL, one, NULL, one, 2), "zg_conv2d: x of shape [4,6,6] must be 4-D [N,C,H,W]");
    CHECK_NULL_ERR(zg_conv2d(x, x3, NULL, one, NULL, one, 2), "weight of shape [4,6,6] must be 4-D");
    CHECK_NULL_ERR(zg_conv2d(x, w, NULL, (int[]){0, 1}, NULL, one, 2), "zg_conv2d: stride {0,1} must be positive");
    CHECK_NULL_ERR(zg_conv2d(x, w, NULL, one, (int[]){-1, 0}, one, 2), "padding {-1,0} must be non-negative");
    CHECK_NULL_ERR(zg_conv2d(x, w, NULL, one, NULL, (int[]){1, 0}, 2), "dilation {1,0} must be positive");
    CHECK_NULL_ERR(zg_conv2d(x, w, NULL, one, NULL, one, 0), "groups 0 must be positive");
    CHECK_NULL_ERR(zg_conv2d(x, w, NULL, one, NULL, one, 1),
                   "zg_conv2d: weight of shape [6,2,3,3] with groups 1 expects 2 input channels, x of shape "
                   "[2,4,6,6] has 4");
    /* Input channels not divisible by groups: no weight fits. */
    CHECK_NULL_ERR(zg_conv2d(x, w, NULL, one, NULL, one, 3), "with groups 3 expects 6 input channels");
    int64_t w4s[4] = {5, 1, 3, 3};
    zg_tensor *w4 = zg_randn(w4s, 4);
    CHECK_NULL_ERR(zg_conv2d(x, w4, NULL, one, NULL, one, 4),
                   "zg_conv2d: output channels 5 (weight of shape [5,1,3,3]) are not divisible by groups 4");
    CHECK_NULL_ERR(zg_conv2d(x, w, b5, one, NULL, one, 2), "bias of shape [5] must be [6]");
    CHECK_NULL_ERR(zg_conv2d(x, w, NULL, one, NULL, (int[]){3, 3}, 2),
                   "zg_conv2d: x of shape [2,4,6,6] with padding {0,0} is smaller than the dilated kernel 7x7");
    int64_t wes[4] = {6, 2, 0, 3};
    zg_tensor *we = zg_zeros(wes, 4);
    CHECK_NULL_ERR(zg_conv2d(x, we, NULL, one, NULL, one, 2), "weight of shape [6,2,0,3] must not be empty");
    /* A valid call after all that. */
    CHECK_PTR(zg_conv2d(x, w, NULL, one, NULL, one, 2));
    zg_tensor *ts[] = {x, w, b5, x3, xi, w4, we};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) zg_tensor_free(ts[i]);
}

/* ---- the padded-width layout (stride 1, dilation 1) ------------------ */

typedef struct {
    int64_t n, c, h, w, cout, kh, kw;
    int ph, pw, groups;
    bool bias;
} wide_case;

/* Stride 1, dilation 1 cases: odd and even sizes, padding 0 / 1 / 2 / 3
 * (more than the kernel's half, and asymmetric), rectangular kernels,
 * groups, batches of 1 to 9 (the larger ones split across threads). With
 * Cout <= C the conv takes the padded-width layout (copying C*H + Cout*OH
 * short rows instead of C*kh*kw*OH, at most a quarter garbage columns);
 * with Cout = 8*C*kh*kw it takes the general im2col one. */
static const wide_case wide_cases[] = {
    {3, 4, 9, 11, 4, 3, 3, 1, 1, 1, true},  {1, 3, 10, 8, 2, 3, 3, 0, 0, 1, true},
    {5, 2, 7, 7, 2, 3, 3, 2, 2, 1, false},  {2, 4, 6, 9, 4, 3, 3, 3, 3, 2, true},
    {9, 8, 14, 14, 8, 3, 3, 1, 1, 1, true}, {4, 3, 8, 13, 3, 5, 5, 2, 2, 1, true},
    {3, 2, 9, 12, 2, 2, 4, 0, 1, 1, true},  {2, 6, 11, 9, 6, 3, 5, 1, 2, 3, false},
    {7, 4, 5, 16, 2, 1, 3, 0, 1, 2, true},
};

/* conv2d in double, straight from the definition: y and, for the upstream
 * gradient v, dx, dw, db. */
static void direct_conv(const wide_case *q, const float *x, const float *w, const float *b, const float *v,
                        double *y, double *dx, double *dw, double *db) {
    const int64_t OH = q->h + 2 * q->ph - q->kh + 1, OW = q->w + 2 * q->pw - q->kw + 1;
    const int64_t cg = q->c / q->groups, og = q->cout / q->groups;
    memset(dx, 0, (size_t)(q->n * q->c * q->h * q->w) * sizeof *dx);
    memset(dw, 0, (size_t)(q->cout * cg * q->kh * q->kw) * sizeof *dw);
    memset(db, 0, (size_t)q->cout * sizeof *db);
    for (int64_t n = 0; n < q->n; n++)
        for (int64_t co = 0; co < q->cout; co++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    const int64_t o = ((n * q->cout + co) * OH + oh) * OW + ow;
                    double s = b ? b[co] : 0.0;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t i = 0; i < q->kh; i++)
                            for (int64_t j = 0; j < q->kw; j++) {
                                const int64_t ih = oh + i - q->ph, iw = ow + j - q->pw;
                                if (ih < 0 || ih >= q->h || iw < 0 || iw >= q->w) continue;
                                const int64_t c = co / og * cg + ci;
                                const int64_t xi = ((n * q->c + c) * q->h + ih) * q->w + iw;
                                const int64_t wi = ((co * cg + ci) * q->kh + i) * q->kw + j;
                                s += (double)x[xi] * w[wi];
                                dx[xi] += (double)v[o] * w[wi];
                                dw[wi] += (double)v[o] * x[xi];
                            }
                    y[o] = s;
                    db[co] += v[o];
                }
}

static void check_near_double(const char *what, int ci, const zg_tensor *got, const double *want, double tol) {
    if (!got) {
        zgt_fail(__FILE__, __LINE__, "case %d: %s missing", ci, what);
        return;
    }
    for (int64_t i = 0; i < zg_tensor_numel(got); i++) {
        const double g = zg_tensor_get(got, i);
        if (fabs(g - want[i]) > tol * (1 + fabs(want[i]))) {
            zgt_fail(__FILE__, __LINE__, "case %d: %s[%lld] = %.9g, expected %.9g", ci, what, (long long)i, g,
                     want[i]);
            return;
        }
    }
}

TEST(conv2d_stride1_matches_direct_definition) {
    for (size_t ci = 0; ci < sizeof wide_cases / sizeof *wide_cases; ci++) {
        const wide_case *q = &wide_cases[ci];
        const int64_t xs[4] = {q->n, q->c, q->h, q->w}, ws[4] = {q->cout, q->c / q->groups, q->kh, q->kw};
        zg_tensor *x = zgt_param(zg_randn(xs, 4)), *w = zgt_param(zg_randn(ws, 4));
        zg_tensor *b = q->bias ? zgt_param(zg_randn(ws, 1)) : NULL;
        zg_tensor *y = zg_conv2d(x, w, b, NULL, (int[]){q->ph, q->pw}, NULL, q->groups);
        CHECK_PTR(y);
        if (y) {
            const int64_t ny = zg_tensor_numel(y), nx = zg_tensor_numel(x), nw = zg_tensor_numel(w);
            zg_tensor *v = zg_randn(zg_tensor_shape(y), 4);
            double *ref = malloc((size_t)(ny + nx + nw + q->cout) * sizeof *ref);
            direct_conv(q, zg_tensor_data(x), zg_tensor_data(w), b ? zg_tensor_data(b) : NULL, zg_tensor_data(v),
                        ref, ref + ny, ref + ny + nx, ref + ny + nx + nw);
            CHECK_OK(zg_backward(y, &(zg_backward_opts){.grad = v}));
            check_near_double("y", (int)ci, y, ref, 1e-5);
            check_near_double("dx", (int)ci, zg_tensor_grad(x), ref + ny, 1e-5);
            check_near_double("dw", (int)ci, zg_tensor_grad(w), ref + ny + nx, 1e-5);
            if (b) check_near_double("db", (int)ci, zg_tensor_grad(b), ref + ny + nx + nw, 1e-5);
            free(ref);
            zg_tensor_free(v);
        }
        zg_tensor_free(x);
        zg_tensor_free(w);
        zg_tensor_free(b);
        zg_arena_reset();
    }
}

/* One conv2d of case q with its backward for upstream gradient v, under
 * autocast type t, in the padded-width layout or (general) the im2col one:
 * y, dx, dw, db as copies (db NULL without bias). */
static void run_layout(const wide_case *q, zg_autocast_type t, bool general, zg_tensor *x, zg_tensor *w,
                       zg_tensor *b, zg_tensor **out) {
    zg__conv_general_only = general;
    zg_tensor_zero_grad(x, true);
    zg_tensor_zero_grad(w, true);
    if (b) zg_tensor_zero_grad(b, true);
    if (t) CHECK_OK(zg_autocast_enter(t));
    zg_tensor *y = zg_conv2d(x, w, b, NULL, (int[]){q->ph, q->pw}, NULL, q->groups);
    if (t) zg_autocast_exit();
    zg__conv_general_only = false;
    CHECK_PTR(y);
    out[0] = out[1] = out[2] = out[3] = NULL;
    if (!y) return;
    zg_manual_seed(99); /* the same upstream gradient for both layouts */
    zg_tensor *v = zg_randn(zg_tensor_shape(y), 4);
    CHECK_OK(zg_backward(y, &(zg_backward_opts){.grad = v}));
    out[0] = zg_tensor_clone(y);
    out[1] = zg_tensor_clone(zg_tensor_grad(x));
    out[2] = zg_tensor_clone(zg_tensor_grad(w));
    out[3] = b ? zg_tensor_clone(zg_tensor_grad(b)) : NULL;
    zg_tensor_free(v);
    zg_arena_reset();
}

/* Whether got and want (results of autocast type t) agree to rounding:
 * float32 within 2^-20 of want's largest magnitude; low precision within
 * one step of the type per element (2^-7 / 2^-10 relative, plus the
 * float32 bound for results near zero) on at most 2% of the elements.
 * Counts the elements whose bits differ into *ndiff. */
static bool agree(zg_autocast_type t, const zg_tensor *got, const zg_tensor *want, int64_t *ndiff) {
    const int64_t n = zg_tensor_numel(want);
    double mx = 0;
    for (int64_t i = 0; i < n; i++) mx = fmax(mx, fabs(zg_tensor_get(want, i)));
    const double abs_tol = ldexp(mx, -20), rel = t == ZG_AUTOCAST_OFF ? 0 : t == ZG_AUTOCAST_BF16 ? 0x1p-7 : 0x1p-10;
    int64_t off = 0;
    for (int64_t i = 0; i < n; i++) {
        const double a = zg_tensor_get(got, i), b = zg_tensor_get(want, i);
        if (a == b) continue;
        off++;
        if (fabs(a - b) > abs_tol + rel * fabs(b)) return false;
    }
    *ndiff += off;
    return t == ZG_AUTOCAST_OFF || off <= n / 50 + 1;
}

/* The padded-width layout sums the same products as the general one, its
 * garbage columns adding exact zeros, and in the same order where OpenBLAS
 * runs its regular kernels (on the default CNN's shapes both layouts give
 * the same bits: printed below). Its small-matrix kernels accumulate in an
 * order that depends on the matrix sizes, so at small shapes the two agree
 * to float32 rounding; under bf16 / fp16 autocast, a float32 difference can
 * move a result to the neighbouring value of the type. */
TEST(conv2d_padded_width_layout_matches_general_layout) {
    const zg_autocast_type types[3] = {ZG_AUTOCAST_OFF, ZG_AUTOCAST_BF16, ZG_AUTOCAST_FP16};
    const char *names[4] = {"y", "dx", "dw", "db"};
    const wide_case cnn = {4, 32, 14, 14, 64, 3, 3, 1, 1, 1, true};
    const size_t ncases = sizeof wide_cases / sizeof *wide_cases;
    for (size_t ci = 0; ci <= ncases; ci++) {
        const wide_case *q = ci < ncases ? &wide_cases[ci] : &cnn;
        const int64_t xs[4] = {q->n, q->c, q->h, q->w}, ws[4] = {q->cout, q->c / q->groups, q->kh, q->kw};
        zg_tensor *x = zgt_param(zg_randn(xs, 4)), *w = zgt_param(zg_randn(ws, 4));
        zg_tensor *b = q->bias ? zgt_param(zg_randn(ws, 1)) : NULL;
        for (int ti = 0; ti < 3; ti++) {
            zg_tensor *wide[4], *gen[4];
            int64_t ndiff = 0;
            run_layout(q, types[ti], false, x, w, b, wide);
            run_layout(q, types[ti], true, x, w, b, gen);
            for (int k = 0; k < 4; k++) {
                if (k < 3 || b) {
                    CHECK(wide[k] && gen[k]);
                    if (wide[k] && gen[k] && !agree(types[ti], wide[k], gen[k], &ndiff))
                        zgt_fail(__FILE__, __LINE__, "case %zu, autocast %d: %s differs between the layouts", ci,
                                 (int)types[ti], names[k]);
                }
                zg_tensor_free(wide[k]);
                zg_tensor_free(gen[k]);
            }
            if (q == &cnn)
                printf("  default CNN conv2, autocast %d: %lld results differ in bits between the layouts\n",
                       (int)types[ti], (long long)ndiff);
        }
        zg_tensor_free(x);
        zg_tensor_free(w);
        zg_tensor_free(b);
    }
}

/* zg__sgemm_offsets against a double reference, at sizes that leave
 * partial blocks of rows (6) and of columns (16, 32, 64; 17 and 18, the
 * paired-lane block), with A through
 * offsets (along k in order or through an index table) and packed, storing
 * and adding to C. */
TEST(sgemm_offsets_matches_double_reference) {
    if (!zg__sgemm_offsets_available()) {
        printf("  no AVX-512F: the kernel is not used on this CPU\n");
        return;
    }
    const int64_t sizes[][3] = {{1, 1, 1}, {5, 17, 3}, {6, 64, 9}, {7, 33, 20}, {7, 81, 20}, {13, 130, 31}, {64, 210, 288}};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        const int64_t M = sizes[si][0], N = sizes[si][1], K = sizes[si][2], ldc = N + 3;
        float *A = malloc(sizeof(float) * (size_t)(M * K)), *B = malloc(sizeof(float) * (size_t)(K * (N + 5)));
        float *Ap = malloc(sizeof(float) * (size_t)zg__sgemm_packed_floats(M, K));
        float *C = malloc(sizeof(float) * (size_t)(M * ldc)), *C0 = malloc(sizeof(float) * (size_t)(M * ldc));
        int32_t *aoff = malloc(sizeof(int32_t) * (size_t)M), *boff = malloc(sizeof(int32_t) * (size_t)K);
        int32_t *kidx = malloc(sizeof(int32_t) * (size_t)K);
        for (int64_t k = 0; k < K; k++) kidx[k] = (int32_t)(K - 1 - k);
        for (int64_t i = 0; i < M * K; i++) A[i] = (float)((i * 37 % 101) - 50) / 16.0f;
        for (int64_t i = 0; i < K * (N + 5); i++) B[i] = (float)((i * 53 % 97) - 48) / 32.0f;
        for (int64_t i = 0; i < M * ldc; i++) C0[i] = (float)(i % 7) - 3.0f;
        /* Rows of A in reverse order, rows of B shifted: any offsets. */
        for (int64_t m = 0; m < M; m++) aoff[m] = (int32_t)((M - 1 - m) * K);
        for (int64_t k = 0; k < K; k++) boff[k] = (int32_t)(k * (N + 5) + k % 5);
        for (int mode = 0; mode < 6; mode++) {
            const bool packed = mode & 1, acc = mode & 2, indexed = mode >= 4;
            if (packed && indexed) continue;
            if (packed) {
                float *Ar = malloc(sizeof(float) * (size_t)(M * K));
                for (int64_t m = 0; m < M; m++) memcpy(Ar + m * K, A + aoff[m], sizeof(float) * (size_t)K);
                zg__sgemm_pack_a(M, K, Ar, K, 1, Ap);
                free(Ar);
            }
            memcpy(C, C0, sizeof(float) * (size_t)(M * ldc));
            zg__sgemm_offsets(M, N, K, packed ? Ap : A, packed ? NULL : aoff, indexed ? kidx : NULL, B, boff, acc, C, ldc);
            int bad = 0;
            for (int64_t m = 0; m < M; m++)
                for (int64_t n = 0; n < ldc; n++) {
                    double r = n < N && acc ? C0[m * ldc + n] : 0.0;
                    for (int64_t k = 0; k < K && n < N; k++)
                        r += (double)A[aoff[m] + (indexed ? kidx[k] : k)] * B[boff[k] + n];
                    if (n >= N) r = C0[m * ldc + n]; /* columns past N untouched */
                    if (fabs(C[m * ldc + n] - r) > 1e-5 * (1.0 + fabs(r))) bad++;
                }
            if (bad)
                zgt_fail(__FILE__, __LINE__, "M=%lld N=%lld K=%lld packed=%d acc=%d: %d elements wrong", (long long)M,
                         (long long)N, (long long)K, packed, acc, bad);
        }
        free(A), free(B), free(Ap), free(C), free(C0), free(aoff), free(boff), free(kidx);
    }
}

/* zg__transpose_f32 (16 x 16 register blocks and scalar edges) moves every
 * element to its transposed place, with row strides wider than the block. */
TEST(transpose_f32_matches_definition) {
    if (!zg__sgemm_offsets_available()) {
        printf("  no AVX-512F: the kernel is not used on this CPU\n");
        return;
    }
    const int64_t sizes[][2] = {{1, 1}, {5, 3}, {16, 16}, {17, 33}, {64, 210}, {37, 50}};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        const int64_t R = sizes[si][0], C = sizes[si][1], lds = C + 2, ldd = R + 3;
        float *src = malloc(sizeof(float) * (size_t)(R * lds)), *dst = malloc(sizeof(float) * (size_t)(C * ldd));
        for (int64_t i = 0; i < R * lds; i++) src[i] = (float)i;
        for (int64_t i = 0; i < C * ldd; i++) dst[i] = -1.0f;
        zg__transpose_f32(R, C, src, lds, dst, ldd);
        int bad = 0;
        for (int64_t j = 0; j < C; j++)
            for (int64_t i = 0; i < ldd; i++)
                bad += dst[j * ldd + i] != (i < R ? src[i * lds + j] : -1.0f);
        if (bad) zgt_fail(__FILE__, __LINE__, "%lld x %lld: %d elements wrong", (long long)R, (long long)C, bad);
        free(src);
        free(dst);
    }
}

/* Case q (random x, w, b) under autocast type t through the convolution's
 * own kernels (own) and with zg__conv_blas_only (blas), in the layout
 * use_wide picks or (general) the im2col one: y, dx, dw, db. */
static void own_and_blas(const wide_case *q, zg_autocast_type t, bool general, zg_tensor *own[4],
                         zg_tensor *blas[4]) {
    const int64_t xs[4] = {q->n, q->c, q->h, q->w}, ws[4] = {q->cout, q->c / q->groups, q->kh, q->kw};
    zg_tensor *x = zgt_param(zg_randn(xs, 4)), *w = zgt_param(zg_randn(ws, 4));
    zg_tensor *b = q->bias ? zgt_param(zg_randn(ws, 1)) : NULL;
    run_layout(q, t, general, x, w, b, own);
    zg__conv_blas_only = true;
    run_layout(q, t, general, x, w, b, blas);
    zg__conv_blas_only = false;
    zg_tensor_free(x);
    zg_tensor_free(w);
    zg_tensor_free(b);
}

/* The own kernel (AVX-512) against the sgemm path, float32: within
 * rounding at small shapes (OpenBLAS's small-matrix kernels sum in another
 * order), the same bits at the default CNN's second conv (one FMA chain
 * per element in both), with partial row and column blocks (13 output
 * channels, 15 x 17 planes). */
TEST(conv2d_own_kernel_matches_sgemm_path) {
    const char *names[4] = {"y", "dx", "dw", "db"};
    const wide_case cnn = {4, 32, 14, 14, 64, 3, 3, 1, 1, 1, true}, odd = {3, 5, 15, 17, 13, 3, 3, 1, 1, 1, true};
    const size_t ncases = sizeof wide_cases / sizeof *wide_cases;
    for (size_t ci = 0; ci < ncases + 2; ci++) {
        const wide_case *q = ci < ncases ? &wide_cases[ci] : ci == ncases ? &odd : &cnn;
        zg_tensor *own[4], *blas[4];
        int64_t ndiff = 0;
        own_and_blas(q, ZG_AUTOCAST_OFF, false, own, blas);
        for (int k = 0; k < 4; k++) {
            if (k < 3 || q->bias) {
                CHECK(own[k] && blas[k]);
                if (own[k] && blas[k] && !agree(ZG_AUTOCAST_OFF, own[k], blas[k], &ndiff))
                    zgt_fail(__FILE__, __LINE__, "case %zu: %s differs between the kernels", ci, names[k]);
            }
            zg_tensor_free(own[k]);
            zg_tensor_free(blas[k]);
        }
        if (q == &cnn && ndiff)
            zgt_fail(__FILE__, __LINE__, "default CNN conv2: %lld results differ in bits", (long long)ndiff);
    }
}

/* Under bf16 autocast with the AVX512-BF16 kernel, the convolution's own
 * packing (weights once per call, cols straight from the padded planes or
 * from im2col's cols, dW transposed) against zg__gemm's packing of the
 * same products: the same bits everywhere, in both layouts, with partial
 * row and column blocks and the default CNN's two convs, 1 and 2
 * threads. */
TEST(conv2d_bf16_packing_matches_gemm_path) {
    if (!zg_bf16_kernel_available(ZG_BF16_KERNEL_AVX512)) {
        printf("  no AVX512-BF16: the packing is not used on this CPU\n");
        return;
    }
    const zg_bf16_kernel kept = zg_bf16_kernel_get();
    const int kept_threads = omp_get_max_threads();
    CHECK_OK(zg_bf16_kernel_set(ZG_BF16_KERNEL_AVX512));
    const char *names[4] = {"y", "dx", "dw", "db"};
    const wide_case cnn = {8, 32, 14, 14, 64, 3, 3, 1, 1, 1, true}, odd = {3, 5, 15, 17, 13, 3, 3, 1, 1, 1, true};
    const wide_case cnn1 = {8, 1, 28, 28, 32, 3, 3, 1, 1, 1, true};
    const size_t ncases = sizeof wide_cases / sizeof *wide_cases;
    for (int run = 0; run < 4; run++) {
        const int threads = 1 + run % 2;
        const bool general = run >= 2;
        CHECK_OK(zg_set_num_threads(threads));
        for (size_t ci = 0; ci < ncases + 3; ci++) {
            const wide_case *q = ci < ncases ? &wide_cases[ci] : ci == ncases ? &odd : ci == ncases + 1 ? &cnn : &cnn1;
            zg_tensor *own[4], *gemm[4];
            own_and_blas(q, ZG_AUTOCAST_BF16, general, own, gemm);
            for (int k = 0; k < 4; k++) {
                if (k < 3 || q->bias) {
                    CHECK(own[k] && gemm[k]);
                    int64_t ndiff = 0;
                    for (int64_t i = 0; own[k] && gemm[k] && i < zg_tensor_numel(own[k]); i++)
                        ndiff += zg_tensor_get(own[k], i) != zg_tensor_get(gemm[k], i);
                    if (ndiff)
                        zgt_fail(__FILE__, __LINE__, "%d threads, %s layout, case %zu: %lld results of %s differ in bits",
                                 threads, general ? "general" : "chosen", ci, (long long)ndiff, names[k]);
                }
                zg_tensor_free(own[k]);
                zg_tensor_free(gemm[k]);
            }
        }
    }
    CHECK_OK(zg_set_num_threads(kept_threads));
    CHECK_OK(zg_bf16_kernel_set(kept));
}

/* zg__row_sums4 (the bias gradients' sums) against the order it states,
 * written out lane by lane: row counts around the 8-row groups, lengths
 * around the blocks of 4, float32 and bf16, with a NaN and values whose
 * sums depend on the order. */
TEST(row_sums4_follows_the_lane_order) {
    const int64_t rows[] = {1, 7, 8, 9, 17}, lens[] = {1, 3, 4, 5, 196, 199};
    float x[17 * 199], out[17];
    unsigned st = 5;
    for (int i = 0; i < 17 * 199; i++) {
        st = st * 1664525u + 1013904223u;
        x[i] = ldexpf((float)(st >> 8) / 16777216.0f - 0.5f, (int)(st % 24) - 12);
    }
    x[3 * 199 + 10] = NAN;
    for (int bf = 0; bf < 2; bf++)
        for (size_t ri = 0; ri < sizeof rows / sizeof *rows; ri++)
            for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
                const int64_t R = rows[ri], n = lens[li];
                zg__row_sums4(bf, x, 199, n, R, out);
                for (int64_t r = 0; r < R; r++) {
                    float l[4] = {0, 0, 0, 0};
                    for (int64_t i = 0; i < n; i++) {
                        const float v = bf ? zg_round_bf16(x[r * 199 + i]) : x[r * 199 + i];
                        l[i < n / 4 * 4 ? i % 4 : 0] += v;
                    }
                    const float want = 0.0f + l[0] + l[1] + l[2] + l[3];
                    if (memcmp(&want, &out[r], sizeof want))
                        zgt_fail(__FILE__, __LINE__, "bf16 %d, %lld rows of %lld: row %lld %g, want %g", bf,
                                 (long long)R, (long long)n, (long long)r, out[r], want);
                }
            }
}

/* ------------------------------------------------------------------ */
/* Pooling                                                             */
/* ------------------------------------------------------------------ */

typedef struct {
    int kernel[2], stride[2], padding[2];
    bool max;
} pool_args;

static zg_tensor *pool_fn(zg_tensor *const *in, void *ctx) {
    const pool_args *a = ctx;
    return a->max ? zg_max_pool2d(in[0], a->kernel, a->stride, a->padding)
                  : zg_avg_pool2d(in[0], a->kernel, a->stride, a->padding);
}

static const float pool_x[16] = {1, 5, 2, 0, 3, -1, 4, 7, 0, 2, 9, 1, 6, 6, -3, 2};

TEST(pool_forward_values) {
    int64_t s[4] = {1, 1, 4, 4};
    zg_tensor *x = zg_tensor_from_data(ZG_FLOAT32, pool_x, s, 4);
    /* F.max_pool2d(x, 3, 2, 1), F.avg_pool2d(x, 3, 2, 1), F.avg_pool2d(x, 2, 1) */
    const float mx[4] = {5, 7, 6, 9};
    const float av[4] = {0.8888889f, 1.8888888f, 1.7777778f, 3.0f};
    const float av2[9] = {2.0f, 2.5f, 3.25f, 1.0f, 3.5f, 5.25f, 3.5f, 3.5f, 2.25f};
    CHECK_VALUES(zg_max_pool2d(x, (int[]){3, 3}, (int[]){2, 2}, (int[]){1, 1}), mx, 4, 0);
    CHECK_VALUES(zg_avg_pool2d(x, (int[]){3, 3}, (int[]){2, 2}, (int[]){1, 1}), av, 4, 1e-6);
    CHECK_VALUES(zg_avg_pool2d(x, (int[]){2, 2}, (int[]){1, 1}, NULL), av2, 9, 1e-6);
    /* NULL stride is the kernel (PyTorch's stride=None). */
    const float mx2[4] = {5, 7, 6, 9};
    zg_tensor *y = zg_max_pool2d(x, (int[]){2, 2}, NULL, NULL);
    CHECK(y && zg_tensor_size(y, 2) == 2 && zg_tensor_size(y, 3) == 2);
    CHECK_VALUES(y, mx2, 4, 0);
    zg_tensor_free(x);
}

TEST(max_pool_gradient_goes_to_argmax) {
    int64_t s[4] = {1, 1, 4, 4};
    zg_tensor *x = zgt_param(zg_tensor_from_data(ZG_FLOAT32, pool_x, s, 4));
    /* Overlapping windows (kernel 3, stride 1, padding 1): an element that
     * is the max of several windows collects all their gradients. */
    zg_tensor *y = zg_max_pool2d(x, (int[]){3, 3}, (int[]){1, 1}, (int[]){1, 1});
    CHECK(y && zg_tensor_grad_fn_name(y) && !strcmp(zg_tensor_grad_fn_name(y), "max_pool2d"));
    CHECK_OK(zg_backward(zg_sum(y), NULL));
    /* F.max_pool2d(x, 3, 1, 1).sum().backward(): 5 wins 3 windows, 7 wins
     * 2, 9 wins 9, 6 wins 2 (its twin in scan order loses the tie). */
    const float g[16] = {0, 3, 0, 0, 0, 0, 0, 2, 0, 0, 9, 0, 2, 0, 0, 0};
    CHECK_VALUES(zg_tensor_grad(x), g, 16, 0);
    zg_tensor_free(x);
}

TEST(max_pool_nan_and_infinity) {
    /* NaN propagates and takes the gradient (the last NaN in scan order,
     * as PyTorch's `val > max || isnan(val)`). */
    int64_t s[4] = {1, 1, 2, 2};
    zg_tensor *x = zgt_param(zg_tensor_from_data(ZG_FLOAT32, (float[]){NAN, 1, NAN, 2}, s, 4));
    zg_tensor *y = zg_max_pool2d(x, (int[]){2, 2}, NULL, NULL);
    CHECK(y && isnan(zg_tensor_get(y, 0)));
    CHECK_OK(zg_backward(zg_sum(y), NULL));
    const float g[4] = {0, 0, 1, 0};
    CHECK_VALUES(zg_tensor_grad(x), g, 4, 0);
    zg_tensor_free(x);
    /* All -inf with padding: the padding never wins; the gradient goes to
     * the window's first real element. */
    zg_tensor *xi = zgt_param(zg_full(s, 4, -INFINITY));
    y = zg_max_pool2d(xi, (int[]){2, 2}, (int[]){2, 2}, (int[]){1, 1});
    CHECK(y && zg_tensor_numel(y) == 4 && isinf(zg_tensor_get(y, 3)) && zg_tensor_get(y, 3) < 0);
    CHECK_OK(zg_backward(zg_sum(y), NULL));
    const float gi[4] = {1, 1, 1, 1};
    CHECK_VALUES(zg_tensor_grad(xi), gi, 4, 0);
    zg_tensor_free(xi);
}

/* The 2x2 stride-2 kernels against the scan rule written out: values from
 * a small set (ties everywhere, NaN, both zeros, infinities), rows of 1 to
 * 21 outputs (all the block widths and overlaps), odd heights and widths,
 * planes too big for one block of rows. Forward values and the argmax the
 * gradient goes to, bit for bit. */
static bool same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

TEST(max_pool_2x2_follows_the_scan_rule) {
    const float vals[8] = {1.0f, 2.0f, 0.0f, -0.0f, NAN, INFINITY, -INFINITY, 2.0f};
    const int64_t sizes[][2] = {{2, 2}, {3, 5}, {4, 8}, {5, 9}, {6, 14}, {7, 15}, {2, 16}, {9, 17},
                                {4, 28}, {3, 29}, {8, 42}, {2, 43}, {70, 60}, {3, 1100}};
    uint64_t s = 12345;
    for (size_t c = 0; c < sizeof sizes / sizeof *sizes; c++) {
        const int64_t H = sizes[c][0], W = sizes[c][1], OH = H / 2, OW = W / 2;
        int64_t shape[4] = {2, 3, H, W};
        zg_tensor *x = zgt_param(zg_zeros(shape, 4));
        float *xd = zg_tensor_data(x);
        for (int64_t i = 0; i < zg_tensor_numel(x); i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            xd[i] = vals[(s >> 33) % 8];
        }
        zg_tensor *y = zg_max_pool2d(x, (int[]){2, 2}, NULL, NULL);
        CHECK_PTR(y);
        /* Distinct gradients, so that each lands where its window's argmax is. */
        int64_t oshape[4] = {2, 3, OH, OW};
        zg_tensor *g = ramp(oshape, 4, 1.0f, 1.0f);
        CHECK_OK(zg_backward(y, &(zg_backward_opts){.grad = g}));
        const float *gx = zg_tensor_data(zg_tensor_grad(x));
        int bad = 0;
        for (int64_t u = 0; u < 6 && !bad; u++)
            for (int64_t oh = 0; oh < OH && !bad; oh++)
                for (int64_t ow = 0; ow < OW && !bad; ow++) {
                    const float *p = xd + u * H * W;
                    int64_t at = 2 * oh * W + 2 * ow;
                    float m = p[at];
                    const int64_t off[3] = {1, W, W + 1};
                    for (int k = 0; k < 3; k++) {
                        const float v = p[2 * oh * W + 2 * ow + off[k]];
                        if (v > m || isnan(v)) m = v, at = 2 * oh * W + 2 * ow + off[k];
                    }
                    const int64_t o = (u * OH + oh) * OW + ow;
                    const float got = zg_tensor_get(y, o), want_g = (float)(o + 1);
                    if (!same_bits(got, m) && !(isnan(got) && isnan(m))) bad = 1;
                    for (int k = 0; k < 4 && !bad; k++) {
                        const int64_t e = 2 * oh * W + 2 * ow + (k & 1) + (k >> 1) * W;
                        if (!same_bits(gx[u * H * W + e], e == at ? want_g : 0.0f)) bad = 2;
                    }
                    if (bad)
                        zgt_fail(__FILE__, __LINE__, "%lldx%lld plane %lld output (%lld,%lld): %s differs", (long long)H,
                                 (long long)W, (long long)u, (long long)oh, (long long)ow,
                                 bad == 1 ? "the value" : "the gradient");
                }
        /* Elements in no window (odd sizes) get +0. */
        for (int64_t u = 0; u < 6 && !bad; u++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t w = 0; w < W; w++)
                    if ((h >= 2 * OH || w >= 2 * OW) && !same_bits(gx[(u * H + h) * W + w], 0.0f) && !bad) {
                        bad = 3;
                        zgt_fail(__FILE__, __LINE__, "%lldx%lld: uncovered element (%lld,%lld) has a gradient",
                                 (long long)H, (long long)W, (long long)h, (long long)w);
                    }
        zg_tensor_free(g);
        zg_tensor_free(x);
    }
}

TEST(pool_gradchecks) {
    const struct {
        const char *name;
        int64_t shape[4];
        pool_args a;
    } cases[] = {
        {"max k2", {2, 2, 6, 6}, {{2, 2}, {2, 2}, {0, 0}, true}},
        {"max k2, odd sizes", {1, 2, 5, 7}, {{2, 2}, {2, 2}, {0, 0}, true}},
        {"max k3 s3, odd sizes", {1, 2, 7, 8}, {{3, 3}, {3, 3}, {0, 0}, true}},
        {"max k3 s2 p1", {2, 2, 7, 6}, {{3, 3}, {2, 2}, {1, 1}, true}},
        {"max k3 s1 p1 (overlap)", {1, 2, 5, 5}, {{3, 3}, {1, 1}, {1, 1}, true}},
        {"max k3x2 s(1,2) p(1,0)", {2, 1, 6, 7}, {{3, 2}, {1, 2}, {1, 0}, true}},
        {"avg k2", {2, 2, 6, 6}, {{2, 2}, {2, 2}, {0, 0}, false}},
        {"avg k3 s2 p1", {2, 2, 7, 6}, {{3, 3}, {2, 2}, {1, 1}, false}},
        {"avg k3 s1 p1 (overlap)", {1, 2, 5, 5}, {{3, 3}, {1, 1}, {1, 1}, false}},
        {"avg k2x3 s(2,1) p(1,1)", {2, 1, 5, 6}, {{2, 3}, {2, 1}, {1, 1}, false}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        zg_tensor *x = zgt_param(distinct(cases[i].shape, 4, i + 1));
        pool_args a = cases[i].a;
        CHECK(GRADCHECK(cases[i].name, pool_fn, &x, 1, &a, NULL));
        zg_tensor_free(x);
    }
    /* Large enough for the parallel loops. */
    int64_t big[4] = {4, 8, 32, 32};
    zg_tensor *x = zgt_param(distinct(big, 4, 99));
    for (int m = 0; m < 2; m++) {
        pool_args a = {{2, 2}, {2, 2}, {0, 0}, m == 0};
        zg_tensor_zero_grad(x, true);
        zg_tensor *y = pool_fn(&x, &a);
        CHECK_OK(zg_backward(zg_sum(y), NULL));
        /* Each output's gradient 1 lands on one element (max) or spreads
         * as 1/4 over its window (avg): the sum of dx is the output count. */
        double s = 0;
        for (int64_t j = 0; j < zg_tensor_numel(x); j++) s += zg_tensor_get(zg_tensor_grad(x), j);
        CHECK_NEAR(s, 4 * 8 * 16 * 16, 1e-3);
        for (int64_t j = 0; m == 0 && j < zg_tensor_numel(x); j++) {
            float gj = zg_tensor_get(zg_tensor_grad(x), j);
            if (gj != 0 && gj != 1) {
                zgt_fail(__FILE__, __LINE__, "max pool dx[%lld] = %g", (long long)j, gj);
                break;
            }
        }
    }
    zg_tensor_free(x);
}

TEST(pool_errors) {
    int64_t s[4] = {1, 2, 4, 4}, s3[3] = {2, 4, 4};
    zg_tensor *x = zg_randn(s, 4), *x3 = zg_randn(s3, 3);
    const int k2[2] = {2, 2};
    CHECK_NULL_ERR(zg_max_pool2d(NULL, k2, NULL, NULL), "zg_max_pool2d: x is NULL");
    CHECK_NULL_ERR(zg_max_pool2d(x, NULL, NULL, NULL), "zg_max_pool2d: kernel is NULL");
    CHECK_NULL_ERR(zg_max_pool2d(x3, k2, NULL, NULL), "zg_max_pool2d: x of shape [2,4,4] must be 4-D [N,C,H,W]");
    CHECK_NULL_ERR(zg_avg_pool2d(x, (int[]){0, 2}, NULL, NULL), "zg_avg_pool2d: kernel {0,2} must be positive");
    CHECK_NULL_ERR(zg_avg_pool2d(x, k2, (int[]){1, 0}, NULL), "stride {1,0} must be positive");
    CHECK_NULL_ERR(zg_max_pool2d(x, k2, NULL, (int[]){-1, 0}), "padding {-1,0} must be non-negative");
    CHECK_NULL_ERR(zg_max_pool2d(x, k2, NULL, (int[]){2, 0}),
                   "zg_max_pool2d: padding {2,0} should be at most half of kernel size {2,2}");
    CHECK_NULL_ERR(zg_avg_pool2d(x, (int[]){5, 2}, NULL, NULL),
                   "zg_avg_pool2d: x of shape [1,2,4,4] with kernel {5,2} and padding {0,0}: output size 0x2 is too "
                   "small");
    zg_tensor_free(x);
    zg_tensor_free(x3);
}

/* ------------------------------------------------------------------ */
/* Batch norm                                                          */
/* ------------------------------------------------------------------ */

typedef struct {
    zg_tensor *rm, *rv;
    bool training, affine;
    zg_tensor *nbt; /* num_batches_tracked (momentum None) */
} bn_args;

static zg_tensor *bn_fn(zg_tensor *const *in, void *ctx) {
    const bn_args *a = ctx;
    return zg_batch_norm(in[0], a->rm, a->rv, a->affine ? in[1] : NULL, a->affine ? in[2] : NULL, a->training, 0.1f,
                         1e-5f);
}

TEST(batch_norm_forward_values_and_running_stats) {
    /* F.batch_norm([[1,2],[3,6],[5,1]], rm, rv, [2,1], [0,1], True, 0.1, 1e-5):
     * channel 0 has mean 3 and biased variance 8/3, channel 1 mean 3 and
     * variance 14/3. */
    int64_t s[2] = {3, 2}, c = 2;
    zg_tensor *x = zg_tensor_from_data(ZG_FLOAT32, (float[]){1, 2, 3, 6, 5, 1}, s, 2);
    zg_tensor *w = zg_tensor_from_data(ZG_FLOAT32, (float[]){2, 1}, &c, 1);
    zg_tensor *b = zg_tensor_from_data(ZG_FLOAT32, (float[]){0, 1}, &c, 1);
    zg_tensor *rm = zg_zeros(&c, 1), *rv = zg_ones(&c, 1);
    uint64_t v0 = zg_tensor_version(rm);
    zg_tensor *y = zg_batch_norm(x, rm, rv, w, b, true, 0.1f, 1e-5f);
    const float e[6] = {-2.4494853f, 0.5370904f, 0.0f, 2.3887286f, 2.4494848f, 0.0741809f};
    CHECK_VALUES(y, e, 6, 2e-6);
    /* Running statistics: 0.9 * old + 0.1 * batch, unbiased variance (4, 7). */
    const float erm[2] = {0.3f, 0.3f}, erv[2] = {0.9f + 0.4f, 0.9f + 0.7f};
    CHECK_VALUES(rm, erm, 2, 1e-6);
    CHECK_VALUES(rv, erv, 2, 1e-6);
    CHECK(zg_tensor_version(rm) > v0); /* a tracked in-place write */
    /* Without running statistics in training: same output, nothing to update. */
    CHECK_VALUES(zg_batch_norm(x, NULL, NULL, w, b, true, 0.1f, 1e-5f), e, 6, 2e-6);
    /* Eval: (x - rm) / sqrt(rv + eps) * w + b, statistics untouched. */
    zg_tensor *ye = zg_batch_norm(x, rm, rv, w, b, false, 0.1f, 1e-5f);
    CHECK_NEAR(zg_tensor_get(ye, 3), (6 - 0.3) / sqrt(1.6 + 1e-5) * 1 + 1, 1e-5);
    CHECK_NEAR(zg_tensor_get(ye, 0), (1 - 0.3) / sqrt(1.3 + 1e-5) * 2, 1e-5);
    CHECK_VALUES(rm, erm, 2, 1e-6);
    /* Momentum 1 replaces the statistics, 0 keeps them. */
    CHECK_PTR(zg_batch_norm(x, rm, rv, NULL, NULL, true, 0.0f, 1e-5f));
    CHECK_VALUES(rm, erm, 2, 1e-6);
    CHECK_PTR(zg_batch_norm(x, rm, rv, NULL, NULL, true, 1.0f, 1e-5f));
    const float m3[2] = {3, 3}, v3[2] = {4, 7};
    CHECK_VALUES(rm, m3, 2, 1e-6);
    CHECK_VALUES(rv, v3, 2, 1e-5);
    zg_tensor *ts[] = {x, w, b, rm, rv};
    for (size_t i = 0; i < 5; i++) zg_tensor_free(ts[i]);
}

TEST(batch_norm_gradchecks) {
    const struct {
        const char *name;
        int64_t shape[4];
        int ndim;
        bool training, affine;
    } cases[] = {
        {"bn2d train affine", {3, 2, 3, 3}, 4, true, true},   {"bn2d train", {3, 2, 2, 3}, 4, true, false},
        {"bn2d eval affine", {2, 3, 2, 2}, 4, false, true},   {"bn2d eval", {2, 3, 2, 2}, 4, false, false},
        {"bn1d train affine", {6, 3}, 2, true, true},         {"bn1d [N,C,L] train", {3, 2, 4}, 3, true, false},
        {"bn1d eval affine", {4, 3}, 2, false, true},         {"bn1d [N,C,L] eval", {2, 2, 3}, 3, false, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int64_t C = cases[i].shape[1];
        zg_tensor *x = zgt_param(zg_normal(cases[i].shape, cases[i].ndim, 0.5f, 2.0f));
        zg_tensor *w = zgt_param(zg_uniform(&C, 1, 0.5f, 1.5f)), *b = zgt_param(zg_randn(&C, 1));
        zg_tensor *rm = zg_randn(&C, 1), *rv = zg_uniform(&C, 1, 0.5f, 2.0f);
        bn_args a = {rm, rv, cases[i].training, cases[i].affine, NULL};
        zg_tensor *in[3] = {x, w, b};
        CHECK(GRADCHECK(cases[i].name, bn_fn, in, cases[i].affine ? 3 : 1, &a, NULL));
        zg_tensor *ts[] = {x, w, b, rm, rv};
        for (size_t k = 0; k < 5; k++) zg_tensor_free(ts[k]);
    }
}

TEST(batch_norm_training_gradient_properties) {
    /* Through the batch statistics, dx sums to zero per channel and is
     * orthogonal to xhat; a large batch runs the channel loop in parallel. */
    int64_t s[4] = {16, 4, 12, 12}, C = 4;
    zg_tensor *x = zgt_param(zg_normal(s, 4, 1.0f, 3.0f)), *w = zgt_param(zg_uniform(&C, 1, 0.5f, 1.5f));
    zg_tensor *b = zgt_param(zg_randn(&C, 1));
    zg_tensor *y = zg_batch_norm(x, NULL, NULL, w, b, true, 0.1f, 1e-5f);
    zg_tensor *v = zg_randn(s, 4);
    CHECK_OK(zg_backward(y, &(zg_backward_opts){.grad = v}));
    zg_tensor *gx = zg_tensor_grad(x);
    const int64_t HW = 144;
    for (int64_t c = 0; gx && c < C; c++) {
        double sdx = 0, sxdx = 0, norm = 0, svh = 0;
        for (int64_t n = 0; n < 16; n++)
            for (int64_t j = 0; j < HW; j++) {
                int64_t i = (n * C + c) * HW + j;
                double xh = (zg_tensor_get(y, i) - zg_tensor_get(b, c)) / zg_tensor_get(w, c);
                sdx += zg_tensor_get(gx, i);
                sxdx += xh * zg_tensor_get(gx, i);
                norm += fabs(zg_tensor_get(gx, i));
                svh += zg_tensor_get(v, i) * xh;
            }
        CHECK_NEAR(sdx, 0, 1e-5 * norm);
        CHECK_NEAR(sxdx, 0, 1e-4 * norm);
        /* dweight = sum(dy * xhat). */
        CHECK_NEAR(zg_tensor_get(zg_tensor_grad(w), c), svh, 1e-3 * (1 + fabs(svh)));
    }
    zg_tensor *ts[] = {x, w, b, v};
    for (size_t k = 0; k < 4; k++) zg_tensor_free(ts[k]);
}

/* momentum None: the running statistics are the plain average of the
 * batches' statistics, each counted in num_batches_tracked first. */
TEST(batch_norm_momentum_none_cumulative_average) {
    /* One channel. Batches {1, 3} (mean 2, unbiased variance 2), {0, 4, 8}
     * (4, 16), {-1, 1} (0, 2): the averages are 2, 3, 2 and 2, 9, 20/3;
     * PyTorch's factors 1, 1/2, 1/3 from running_mean 0, running_var 1. */
    int64_t c = 1, s2[2] = {2, 1}, s3[2] = {3, 1};
    zg_tensor *xs[3] = {zg_tensor_from_data(ZG_FLOAT32, (float[]){1, 3}, s2, 2),
                        zg_tensor_from_data(ZG_FLOAT32, (float[]){0, 4, 8}, s3, 2),
                        zg_tensor_from_data(ZG_FLOAT32, (float[]){-1, 1}, s2, 2)};
    zg_tensor *rm = zg_zeros(&c, 1), *rv = zg_ones(&c, 1), *nbt = zg_tensor_new(ZG_INT64, NULL, 0);
    const double want_m[3] = {2, 3, 2}, want_v[3] = {2, 9, 20.0 / 3};
    for (int b = 0; b < 3; b++) {
        uint64_t v = zg_tensor_version(nbt);
        CHECK_PTR(zg_batch_norm_tracked(xs[b], rm, rv, nbt, NULL, NULL, true, ZG_BN_MOMENTUM_NONE, 1e-5f));
        CHECK(zg_tensor_data_i64(nbt)[0] == b + 1 && zg_tensor_version(nbt) > v);
        CHECK_NEAR(zg_tensor_get(rm, 0), want_m[b], 1e-6);
        CHECK_NEAR(zg_tensor_get(rv, 0), want_v[b], 1e-6);
    }
    /* Eval neither counts nor moves the statistics. */
    CHECK_PTR(zg_batch_norm_tracked(xs[1], rm, rv, nbt, NULL, NULL, false, ZG_BN_MOMENTUM_NONE, 1e-5f));
    CHECK(zg_tensor_data_i64(nbt)[0] == 3);
    CHECK_NEAR(zg_tensor_get(rm, 0), 2, 1e-6);
    /* A counter after a resume: the 11th batch weighs 1/11. */
    zg_tensor_data_i64(nbt)[0] = 10;
    CHECK_PTR(zg_batch_norm_tracked(xs[1], rm, rv, nbt, NULL, NULL, true, ZG_BN_MOMENTUM_NONE, 1e-5f));
    CHECK_NEAR(zg_tensor_get(rm, 0), 2 + (4 - 2) / 11.0, 1e-6);
    CHECK_NEAR(zg_tensor_get(rv, 0), 20.0 / 3 + (16 - 20.0 / 3) / 11.0, 1e-5);
    /* A numeric momentum counts the batch too and moves by momentum. */
    CHECK_PTR(zg_batch_norm_tracked(xs[0], rm, rv, nbt, NULL, NULL, true, 0.5f, 1e-5f));
    CHECK(zg_tensor_data_i64(nbt)[0] == 12);
    CHECK_NEAR(zg_tensor_get(rm, 0), 0.5 * (2 + 2 / 11.0) + 0.5 * 2, 1e-6);
    /* Without running statistics there is nothing to count. */
    CHECK_PTR(zg_batch_norm_tracked(xs[0], NULL, NULL, nbt, NULL, NULL, true, ZG_BN_MOMENTUM_NONE, 1e-5f));
    CHECK(zg_tensor_data_i64(nbt)[0] == 12);
    zg_tensor *ts[] = {xs[0], xs[1], xs[2], rm, rv, nbt};
    for (size_t k = 0; k < 6; k++) zg_tensor_free(ts[k]);
}

static zg_tensor *bn_none_fn(zg_tensor *const *in, void *ctx) {
    bn_args *a = ctx;
    return zg_batch_norm_tracked(in[0], a->rm, a->rv, a->nbt, in[1], in[2], a->training, ZG_BN_MOMENTUM_NONE, 1e-5f);
}

TEST(batch_norm_momentum_none_gradchecks) {
    /* Each evaluation counts a batch and moves the running statistics;
     * the training output reads neither, eval reads them unchanged. */
    for (int t = 0; t < 2; t++) {
        int64_t s[4] = {3, 2, 2, 3}, C = 2;
        zg_tensor *x = zgt_param(zg_normal(s, 4, 0.5f, 2.0f));
        zg_tensor *w = zgt_param(zg_uniform(&C, 1, 0.5f, 1.5f)), *b = zgt_param(zg_randn(&C, 1));
        zg_tensor *rm = zg_randn(&C, 1), *rv = zg_uniform(&C, 1, 0.5f, 2.0f), *nbt = zg_tensor_new(ZG_INT64, NULL, 0);
        bn_args a = {rm, rv, t == 0, true, nbt};
        zg_tensor *in[3] = {x, w, b};
        CHECK(GRADCHECK(t == 0 ? "bn2d momentum None train" : "bn2d momentum None eval", bn_none_fn, in, 3, &a, NULL));
        CHECK(t == 1 ? zg_tensor_data_i64(nbt)[0] == 0 : zg_tensor_data_i64(nbt)[0] > 2);
        zg_tensor *ts[] = {x, w, b, rm, rv, nbt};
        for (size_t k = 0; k < 6; k++) zg_tensor_free(ts[k]);
    }
}

TEST(batch_norm_tracked_errors) {
    int64_t s[4] = {2, 3, 2, 2}, c3 = 3, one[1] = {1}, xo4[4] = {1, 3, 1, 1};
    zg_tensor *x = zg_randn(s, 4), *rm = zg_zeros(&c3, 1), *rv = zg_ones(&c3, 1);
    zg_tensor *nbt = zg_tensor_new(ZG_INT64, NULL, 0), *nbt1 = zg_tensor_new(ZG_INT64, one, 1);
    zg_tensor *nbtf = zg_zeros(NULL, 0), *xo = zg_randn(xo4, 4);
    const float none = ZG_BN_MOMENTUM_NONE;
    CHECK_NULL_ERR(zg_batch_norm(x, rm, rv, NULL, NULL, true, none, 1e-5f),
                   "zg_batch_norm: momentum None (ZG_BN_MOMENTUM_NONE) averages over the batches counted in "
                   "num_batches_tracked: pass it (zg_batch_norm_tracked)");
    CHECK_NULL_ERR(zg_batch_norm_tracked(x, rm, rv, NULL, NULL, NULL, true, none, 1e-5f),
                   "zg_batch_norm_tracked: momentum None");
    CHECK_NULL_ERR(zg_batch_norm_tracked(x, rm, rv, nbt1, NULL, NULL, true, none, 1e-5f),
                   "zg_batch_norm_tracked: num_batches_tracked must be an int64 0-dim tensor, got int64 of shape [1]");
    CHECK_NULL_ERR(zg_batch_norm_tracked(x, rm, rv, nbtf, NULL, NULL, true, 0.1f, 1e-5f),
                   "num_batches_tracked must be an int64 0-dim tensor, got float32 of shape []");
    CHECK_NULL_ERR(zg_batch_norm_tracked(x, rm, rv, nbt, NULL, NULL, true, -0.5f, 1e-5f),
                   "momentum -0.5 must lie in [0, 1] (or be ZG_BN_MOMENTUM_NONE)");
    zg_tensor_data_i64(nbt)[0] = -1;
    CHECK_NULL_ERR(zg_batch_norm_tracked(x, rm, rv, nbt, NULL, NULL, true, none, 1e-5f),
                   "zg_batch_norm_tracked: num_batches_tracked -1 cannot count another batch");
    zg_tensor_data_i64(nbt)[0] = 4;
    /* A failed training call counts nothing and moves nothing. */
    CHECK_NULL_ERR(zg_batch_norm_tracked(xo, rm, rv, nbt, NULL, NULL, true, none, 1e-5f),
                   "Expected more than 1 value per channel when training");
    CHECK(zg_tensor_data_i64(nbt)[0] == 4 && zg_tensor_version(nbt) == 0 && zg_tensor_version(rm) == 0);
    /* Without running statistics, or in eval, momentum None needs no counter. */
    CHECK_PTR(zg_batch_norm(x, NULL, NULL, NULL, NULL, true, none, 1e-5f));
    CHECK_PTR(zg_batch_norm(x, rm, rv, NULL, NULL, false, none, 1e-5f));
    zg_tensor *ts[] = {x, rm, rv, nbt, nbt1, nbtf, xo};
    for (size_t k = 0; k < 7; k++) zg_tensor_free(ts[k]);
}

TEST(batch_norm_errors) {
    int64_t s[4] = {2, 3, 2, 2}, c3 = 3, c4 = 4, s1 = 5, one[2] = {1, 3}, one4[4] = {1, 3, 1, 1};
    zg_tensor *x = zg_randn(s, 4), *rm = zg_zeros(&c3, 1), *rv = zg_ones(&c3, 1), *w4 = zg_ones(&c4, 1);
    zg_tensor *x1 = zg_randn(&s1, 1), *xo = zg_randn(one, 2), *xo4 = zg_randn(one4, 4);
    CHECK_NULL_ERR(zg_batch_norm(NULL, rm, rv, NULL, NULL, true, 0.1f, 1e-5f), "zg_batch_norm: x is NULL");
    CHECK_NULL_ERR(zg_batch_norm(x1, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f),
                   "zg_batch_norm: x of shape [5] must have at least 2 dims [N,C,...]");
    CHECK_NULL_ERR(zg_batch_norm(x, w4, rv, NULL, NULL, true, 0.1f, 1e-5f),
                   "zg_batch_norm: running_mean of shape [4] must be [3] (the channels of x of shape [2,3,2,2])");
    CHECK_NULL_ERR(zg_batch_norm(x, rm, rv, w4, NULL, true, 0.1f, 1e-5f), "weight of shape [4] must be [3]");
    CHECK_NULL_ERR(zg_batch_norm(x, rm, rv, NULL, w4, true, 0.1f, 1e-5f), "bias of shape [4] must be [3]");
    CHECK_NULL_ERR(zg_batch_norm(x, rm, NULL, NULL, NULL, true, 0.1f, 1e-5f), "both running_mean and running_var");
    CHECK_NULL_ERR(zg_batch_norm(x, NULL, NULL, NULL, NULL, false, 0.1f, 1e-5f), "eval mode needs running_mean");
    CHECK_NULL_ERR(zg_batch_norm(x, rm, rv, NULL, NULL, true, 1.5f, 1e-5f), "momentum 1.5 must lie in [0, 1]");
    CHECK_NULL_ERR(zg_batch_norm(x, rm, rv, NULL, NULL, true, 0.1f, -1.0f), "eps -1 must be a finite value >= 0");
    CHECK_NULL_ERR(zg_batch_norm(xo, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f),
                   "zg_batch_norm: Expected more than 1 value per channel when training, got input size [1,3]");
    CHECK_NULL_ERR(zg_batch_norm(xo4, rm, rv, NULL, NULL, true, 0.1f, 1e-5f),
                   "Expected more than 1 value per channel when training, got input size [1,3,1,1]");
    /* The failed training call left the statistics alone; eval is fine. */
    CHECK(zg_tensor_get(rm, 0) == 0 && zg_tensor_version(rm) == 0);
    CHECK_PTR(zg_batch_norm(xo4, rm, rv, NULL, NULL, false, 0.1f, 1e-5f));
    zg_tensor_set_requires_grad(rm, true);
    CHECK_NULL_ERR(zg_batch_norm(x, rm, rv, NULL, NULL, true, 0.1f, 1e-5f), "must not require grad");
    zg_tensor *ts[] = {x, rm, rv, w4, x1, xo, xo4};
    for (size_t k = 0; k < 7; k++) zg_tensor_free(ts[k]);
}
