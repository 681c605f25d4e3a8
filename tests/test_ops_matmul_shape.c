/* matmul, linear, softmax / log_softmax, the shape ops and dropout: forward
 * values against PyTorch (torch 1.13, printed with 9 digits), a gradient
 * check of every op and option, and the errors of each entry point. */
#include "harness.h"

#include <omp.h>
#include <stdlib.h>

#define SHAPE(...) ((int64_t[]){__VA_ARGS__}), (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t))

static void free_all(zg_tensor **ts, int n) {
    for (int i = 0; i < n; i++) zg_tensor_free(ts[i]);
}

static bool same_shape(const zg_tensor *t, const int64_t *shape, int ndim) {
    if (!t || zg_tensor_ndim(t) != ndim) return false;
    for (int i = 0; i < ndim; i++)
        if (zg_tensor_shape(t)[i] != shape[i]) return false;
    return true;
}

static bool has_grad_fn(const zg_tensor *t, const char *name) {
    const char *g = zg_tensor_grad_fn_name(t);
    return g && !strcmp(g, name);
}

/* ---- matmul ------------------------------------------------------------ */

static const float MA[6] = {0.5f, -1.25f, 2, 3.5f, 0.75f, -2};
static const float MB[6] = {1.5f, -0.5f, 2.25f, 1, -1, 0.25f};

TEST(matmul_2d_matches_pytorch) {
    zg_tensor *a = zgt_param_from(MA, SHAPE(2, 3)), *b = zg_tensor_from_data(ZG_FLOAT32, MB, SHAPE(3, 2));
    zg_tensor *c = zg_matmul(a, b);
    CHECK(same_shape(c, SHAPE(2, 2)));
    CHECK_VALUES(c, ((float[]){-4.0625f, -1, 8.9375f, -1.5f}), 4, 1e-6);
    CHECK(has_grad_fn(c, "matmul"));
    CHECK(!zg_tensor_is_persistent(c));
    /* Only a requires grad: dA = dC B^T with dC = 1 is the row sums of B. */
    int64_t s[2] = {2, 2};
    zg_tensor *ones = zg_ones(s, 2);
    CHECK_OK(zg_backward(c, &(zg_backward_opts){.grad = ones}));
    CHECK_VALUES(zg_tensor_grad(a), ((float[]){1, 3.25f, -0.75f, 1, 3.25f, -0.75f}), 6, 1e-6);
    CHECK(zg_tensor_grad(b) == NULL);
    /* Operands that are views with an offset (rows 1..2 of a [3,3]). */
    zg_tensor *big = zg_tensor_from_data(ZG_FLOAT32, (float[]){9, 9, 9, 0.5f, -1.25f, 2, 3.5f, 0.75f, -2}, SHAPE(3, 3));
    CHECK_VALUES(zg_matmul(zg_slice(big, 1, 3), b), ((float[]){-4.0625f, -1, 8.9375f, -1.5f}), 4, 1e-6);
    zg_tensor_free(big);
    zg_tensor_free(ones);
    zg_tensor_free(a);
    zg_tensor_free(b);
}

TEST(matmul_3d_matches_pytorch) {
    float a3[12], b3[12];
    for (int i = 0; i < 12; i++) {
        a3[i] = i * 0.25f - 1;
        b3[i] = i * -0.5f + 2;
    }
    zg_tensor *a = zg_tensor_from_data(ZG_FLOAT32, a3, SHAPE(2, 2, 3));
    zg_tensor *b = zg_tensor_from_data(ZG_FLOAT32, b3, SHAPE(2, 3, 2));
    zg_tensor *c = zg_matmul(a, b);
    CHECK(same_shape(c, SHAPE(2, 2, 2)));
    CHECK_VALUES(c, ((float[]){-2.75f, -1.625f, -0.5f, -0.5f, -5, -6.125f, -9.5f, -11.75f}), 8, 1e-6);
    /* Nothing requires grad: no node. */
    CHECK(zg_tensor_grad_fn_name(c) == NULL && !zg_tensor_requires_grad(c));
    zg_tensor_free(a);
    zg_tensor_free(b);
}

static zg_tensor *op_matmul(zg_tensor *const *in, void *ctx) {
    (void)ctx;
    return zg_matmul(in[0], in[1]);
}

TEST(matmul_gradcheck_2d_and_3d) {
    zg_tensor *a = zgt_param(zg_randn(SHAPE(3, 4))), *b = zgt_param(zg_randn(SHAPE(4, 5)));
    GRADCHECK("matmul 2d", op_matmul, ((zg_tensor *[]){a, b}), 2, NULL, NULL);
    zg_tensor *a3 = zgt_param(zg_randn(SHAPE(2, 3, 4))), *b3 = zgt_param(zg_randn(SHAPE(2, 4, 2)));
    GRADCHECK("matmul 3d", op_matmul, ((zg_tensor *[]){a3, b3}), 2, NULL, NULL);
    /* Only the second operand requires grad. */
    zg_tensor_set_requires_grad(a, false);
    GRADCHECK("matmul 2d, b only", op_matmul, ((zg_tensor *[]){a, b}), 2, NULL, NULL);
    free_all((zg_tensor *[]){a, b, a3, b3}, 4);
}

TEST(matmul_empty_inner_dim_gives_zeros) {
    zg_tensor *a = zg_zeros(SHAPE(2, 0)), *b = zg_zeros(SHAPE(0, 3));
    zg_tensor *c = zg_matmul(a, b);
    CHECK(same_shape(c, SHAPE(2, 3)));
    CHECK_VALUES(c, ((float[]){0, 0, 0, 0, 0, 0}), 6, 0);
    zg_tensor *e = zg_zeros(SHAPE(0, 4)), *f = zg_zeros(SHAPE(4, 2));
    CHECK(same_shape(zg_matmul(e, f), SHAPE(0, 2)));
    free_all((zg_tensor *[]){a, b, e, f}, 4);
}

TEST(matmul_errors) {
    zg_tensor *x = zg_zeros(SHAPE(64, 784)), *w = zg_zeros(SHAPE(128, 10));
    CHECK_NULL_ERR(zg_matmul(x, w), "zg_matmul: shapes [64,784] and [128,10] do not match");
    CHECK_NULL_ERR(zg_matmul(NULL, w), "zg_matmul: a is NULL");
    CHECK_NULL_ERR(zg_matmul(x, NULL), "zg_matmul: b is NULL");
    zg_tensor *l = zg_tensor_from_data(ZG_INT64, (int64_t[]){1, 2}, SHAPE(1, 2));
    CHECK_NULL_ERR(zg_matmul(l, w), "zg_matmul: a must be float32");
    zg_tensor *v = zg_zeros(SHAPE(10));
    CHECK_NULL_ERR(zg_matmul(w, v), "zg_matmul: shapes [128,10] and [10]");
    zg_tensor *a3 = zg_zeros(SHAPE(2, 3, 4)), *b3 = zg_zeros(SHAPE(3, 4, 5));
    CHECK_NULL_ERR(zg_matmul(a3, b3), "zg_matmul: shapes [2,3,4] and [3,4,5] do not match");
    CHECK_NULL_ERR(zg_matmul(a3, w), "zg_matmul: shapes [2,3,4] and [128,10]");
    free_all((zg_tensor *[]){x, w, l, v, a3, b3}, 6);
}

/* ---- linear ------------------------------------------------------------ */

static const float LX[12] = {0.1f, -0.2f, 0.3f, 0.4f, 1.0f, 0.5f, -0.5f, 2.0f, -1.5f, 0.25f, 0.75f, -0.125f};
static const float LW[8] = {0.2f, -0.1f, 0.05f, 0.3f, -0.4f, 0.6f, 0.1f, -0.2f};
static const float LB[2] = {0.01f, -0.02f};

TEST(linear_matches_pytorch) {
    zg_tensor *x = zg_tensor_from_data(ZG_FLOAT32, LX, SHAPE(3, 4));
    zg_tensor *w = zgt_param_from(LW, SHAPE(2, 4)), *b = zgt_param_from(LB, SHAPE(2));
    zg_tensor *y = zg_linear(x, w, b);
    CHECK(same_shape(y, SHAPE(3, 2)));
    CHECK(has_grad_fn(y, "linear"));
    CHECK_VALUES(y, ((float[]){0.185000017f, -0.230000004f, 0.735000014f, -0.569999993f, -0.315000027f, 0.829999983f}),
                 6, 1e-6);
    CHECK_VALUES(zg_linear(x, w, NULL),
                 ((float[]){0.175000012f, -0.210000008f, 0.725000024f, -0.550000012f, -0.325000018f, 0.849999964f}), 6,
                 1e-6);
    /* Leading dims are flattened: [3,1,4] -> [3,1,2]. */
    zg_tensor *x3 = zg_tensor_from_data(ZG_FLOAT32, LX, SHAPE(3, 1, 4));
    zg_tensor *y3 = zg_linear(x3, w, b);
    CHECK(same_shape(y3, SHAPE(3, 1, 2)));
    CHECK_TENSOR_NEAR(y3, y, 0, 0);
    /* 1-D x: one sample, [in] -> [out]. */
    zg_tensor *x1 = zg_tensor_from_data(ZG_FLOAT32, LX + 4, SHAPE(4));
    zg_tensor *y1 = zg_linear(x1, w, b);
    CHECK(same_shape(y1, SHAPE(2)));
    CHECK_VALUES(y1, ((float[]){0.735000014f, -0.569999993f}), 2, 1e-6);
    /* db = column sums of dy, dW = dy^T x (dy = 1: column sums of x). */
    int64_t s[2] = {3, 2};
    zg_tensor *ones = zg_ones(s, 2);
    CHECK_OK(zg_backward(y, &(zg_backward_opts){.grad = ones}));
    CHECK_VALUES(zg_tensor_grad(b), ((float[]){3, 3}), 2, 0);
    CHECK_VALUES(zg_tensor_grad(w), ((float[]){-0.4f, 0.55f, 0.55f, 2.275f, -0.4f, 0.55f, 0.55f, 2.275f}), 8, 1e-6);
    free_all((zg_tensor *[]){x, w, b, x3, x1, ones}, 6);
}

static zg_tensor *op_linear(zg_tensor *const *in, void *ctx) {
    (void)ctx;
    return zg_linear(in[0], in[1], in[2]);
}

TEST(linear_gradcheck) {
    zg_tensor *x = zgt_param(zg_randn(SHAPE(5, 4))), *w = zgt_param(zg_randn(SHAPE(3, 4))), *b = zgt_param(zg_randn(SHAPE(3)));
    GRADCHECK("linear", op_linear, ((zg_tensor *[]){x, w, b}), 3, NULL, NULL);
    GRADCHECK("linear, no bias", op_linear, ((zg_tensor *[]){x, w, NULL}), 3, NULL, NULL);
    zg_tensor *x3 = zgt_param(zg_randn(SHAPE(2, 3, 4)));
    GRADCHECK("linear, 3-D x", op_linear, ((zg_tensor *[]){x3, w, b}), 3, NULL, NULL);
    zg_tensor *x4 = zgt_param(zg_randn(SHAPE(2, 1, 2, 4)));
    GRADCHECK("linear, 4-D x", op_linear, ((zg_tensor *[]){x4, w, b}), 3, NULL, NULL);
    zg_tensor *x1 = zgt_param(zg_randn(SHAPE(4)));
    GRADCHECK("linear, 1-D x", op_linear, ((zg_tensor *[]){x1, w, b}), 3, NULL, NULL);
    /* Frozen weight: only x and b get gradients. */
    zg_tensor_set_requires_grad(w, false);
    GRADCHECK("linear, frozen weight", op_linear, ((zg_tensor *[]){x, w, b}), 3, NULL, NULL);
    free_all((zg_tensor *[]){x, w, b, x3, x4, x1}, 6);
}

TEST(linear_errors) {
    zg_tensor *x = zg_zeros(SHAPE(64, 784)), *w = zg_zeros(SHAPE(10, 128)), *b = zg_zeros(SHAPE(10));
    CHECK_NULL_ERR(zg_linear(x, w, b), "zg_linear: x of shape [64,784] does not match weight of shape [10,128]");
    CHECK_NULL_ERR(zg_linear(NULL, w, b), "zg_linear: x is NULL");
    CHECK_NULL_ERR(zg_linear(x, NULL, b), "zg_linear: weight is NULL");
    zg_tensor *w2 = zg_zeros(SHAPE(12, 784)), *w1 = zg_zeros(SHAPE(784));
    CHECK_NULL_ERR(zg_linear(x, w2, b), "zg_linear: bias of shape [10] does not match weight of shape [12,784]");
    CHECK_NULL_ERR(zg_linear(x, w1, NULL), "zg_linear: weight of shape [784] must be 2-D");
    zg_tensor *s = zg_scalar(1);
    CHECK_NULL_ERR(zg_linear(s, w2, NULL), "zg_linear: x of shape []");
    zg_tensor *l = zg_tensor_from_data(ZG_INT64, (int64_t[]){1}, SHAPE(1));
    CHECK_NULL_ERR(zg_linear(x, w2, l), "zg_linear: bias must be float32");
    free_all((zg_tensor *[]){x, w, b, w2, w1, s, l}, 7);
}

/* ---- softmax ----------------------------------------------------------- */

static const float SM[6] = {1, 2, 3, -1, 0.5f, 4};

TEST(softmax_matches_pytorch) {
    zg_tensor *s = zg_tensor_from_data(ZG_FLOAT32, SM, SHAPE(2, 3));
    const float sm1[6] = {0.0900305733f, 0.244728476f, 0.665240943f, 0.00649794331f, 0.0291217621f, 0.964380324f};
    const float sm0[6] = {0.880797029f, 0.817574441f, 0.268941432f, 0.119202919f, 0.182425514f, 0.731058598f};
    const float ls1[6] = {-2.40760589f, -1.40760589f, -0.407605946f, -5.03626966f, -3.53626966f, -0.0362695642f};
    const float ls0[6] = {-0.126928046f, -0.201413333f, -1.31326163f, -2.12692809f, -1.70141339f, -0.313261658f};
    CHECK_VALUES(zg_softmax(s, 1), sm1, 6, 1e-7);
    CHECK_VALUES(zg_softmax(s, -1), sm1, 6, 1e-7);
    CHECK_VALUES(zg_softmax(s, 0), sm0, 6, 1e-7);
    CHECK_VALUES(zg_softmax(s, -2), sm0, 6, 1e-7);
    CHECK_VALUES(zg_log_softmax(s, 1), ls1, 6, 1e-6);
    CHECK_VALUES(zg_log_softmax(s, -1), ls1, 6, 1e-6);
    CHECK_VALUES(zg_log_softmax(s, 0), ls0, 6, 1e-6);
    /* Large logits: the max is subtracted, so nothing overflows. */
    zg_tensor *big = zg_tensor_from_data(ZG_FLOAT32, (float[]){1000, 1001, -1000}, SHAPE(3));
    CHECK_VALUES(zg_softmax(big, 0), ((float[]){0.268941432f, 0.731058598f, 0}), 3, 1e-7);
    CHECK_VALUES(zg_log_softmax(big, 0), ((float[]){-1.31326163f, -0.313261658f, -2001.31323f}), 3, 1e-4);
    zg_tensor_free(s);
    zg_tensor_free(big);
}

static zg_tensor *op_softmax(zg_tensor *const *in, void *ctx) { return zg_softmax(in[0], *(int *)ctx); }
static zg_tensor *op_log_softmax(zg_tensor *const *in, void *ctx) { return zg_log_softmax(in[0], *(int *)ctx); }

TEST(softmax_gradcheck_every_dim) {
    zg_tensor *x = zgt_param(zg_randn(SHAPE(3, 4, 5)));
    int dims[] = {0, 1, 2, -1, -2};
    for (int i = 0; i < 5; i++) {
        char name[64];
        snprintf(name, sizeof name, "softmax dim %d", dims[i]);
        GRADCHECK(name, op_softmax, &x, 1, &dims[i], NULL);
        snprintf(name, sizeof name, "log_softmax dim %d", dims[i]);
        GRADCHECK(name, op_log_softmax, &x, 1, &dims[i], NULL);
    }
    zg_tensor *x2 = zgt_param(zg_randn(SHAPE(4, 6)));
    int d0 = 0, d1 = 1;
    GRADCHECK("softmax 2-D dim 0", op_softmax, &x2, 1, &d0, NULL);
    GRADCHECK("log_softmax 2-D dim 1", op_log_softmax, &x2, 1, &d1, NULL);
    CHECK(has_grad_fn(zg_softmax(x2, 0), "softmax"));
    CHECK(has_grad_fn(zg_log_softmax(x2, 0), "log_softmax"));
    zg_tensor_free(x);
    zg_tensor_free(x2);
}

TEST(softmax_masked_and_0dim) {
    /* -inf entries (masking) get probability 0 and log-probability -inf. */
    zg_tensor *x = zg_tensor_from_data(ZG_FLOAT32, (float[]){-INFINITY, 0, 1}, SHAPE(3));
    zg_tensor_set_requires_grad(x, true);
    CHECK_VALUES(zg_softmax(x, 0), ((float[]){0, 0.268941432f, 0.731058598f}), 3, 1e-7);
    zg_tensor *l = zg_log_softmax(x, 0);
    CHECK(isinf(zg_tensor_get(l, 0)) && zg_tensor_get(l, 0) < 0);
    CHECK_NEAR(zg_tensor_get(l, 2), -0.313261658f, 1e-6);
    zg_tensor *g = zg_tensor_from_data(ZG_FLOAT32, (float[]){0, 0, 1}, SHAPE(3));
    CHECK_OK(zg_backward(zg_softmax(x, 0), &(zg_backward_opts){.grad = g}));
    /* d p2 / dx = p2 (e2 - p): [0, -p1 p2, p2 (1 - p2)]. */
    CHECK_VALUES(zg_tensor_grad(x), ((float[]){0, -0.196611933f, 0.196611933f}), 3, 1e-7);
    zg_tensor *s = zg_scalar(3.0f);
    CHECK_NEAR(zg_tensor_item(zg_softmax(s, 0)), 1.0, 0);
    CHECK_NEAR(zg_tensor_item(zg_log_softmax(s, -1)), 0.0, 0);
    CHECK_NEAR(zg_tensor_item(zg_transpose(s, 0, -1)), 3.0, 0);
    CHECK_NULL_ERR(zg_softmax(s, 1), "zg_softmax: dim 1 out of range for a 0-dim tensor");
    zg_tensor_free(x);
    zg_tensor_free(g);
    zg_tensor_free(s);
}

TEST(softmax_rows_sum_to_one) {
    zg_tensor *x = zg_randn(SHAPE(7, 13));
    zg_tensor *y = zg_softmax(x, 1);
    for (int r = 0; r < 7; r++) {
        double sum = 0;
        for (int c = 0; c < 13; c++) sum += zg_tensor_get(y, r * 13 + c);
        CHECK_NEAR(sum, 1.0, 1e-6);
    }
    zg_tensor_free(x);
}

TEST(softmax_errors) {
    zg_tensor *x = zg_zeros(SHAPE(2, 3));
    CHECK_NULL_ERR(zg_softmax(x, 2), "zg_softmax: dim 2 out of range");
    CHECK_NULL_ERR(zg_softmax(x, -3), "zg_softmax: dim -3 out of range");
    CHECK_NULL_ERR(zg_log_softmax(x, 5), "zg_log_softmax: dim 5 out of range");
    CHECK_NULL_ERR(zg_softmax(NULL, 0), "zg_softmax: input is NULL");
    CHECK_NULL_ERR(zg_log_softmax(NULL, 0), "zg_log_softmax: input is NULL");
    zg_tensor *l = zg_tensor_from_data(ZG_INT64, (int64_t[]){1, 2}, SHAPE(2));
    CHECK_NULL_ERR(zg_softmax(l, 0), "zg_softmax: input must be float32");
    CHECK_NULL_ERR(zg_log_softmax(l, 0), "zg_log_softmax: input must be float32");
    zg_tensor_free(x);
    zg_tensor_free(l);
}

/* ---- reshape / flatten / slice ----------------------------------------- */

TEST(reshape_is_a_view) {
    float v[12];
    for (int i = 0; i < 12; i++) v[i] = (float)i;
    zg_tensor *a = zg_tensor_from_data(ZG_FLOAT32, v, SHAPE(3, 4));
    zg_tensor *r = zg_reshape(a, SHAPE(2, -1, 2));
    CHECK(same_shape(r, SHAPE(2, 3, 2)));
    CHECK(zg_tensor_data(r) == zg_tensor_data(a));
    /* A tracked write through the view is seen by (and versions) the base. */
    uint64_t v0 = zg_tensor_version(a);
    CHECK_OK(zg_tensor_fill_(r, 5.0f));
    CHECK(zg_tensor_get(a, 11) == 5.0f);
    CHECK(zg_tensor_version(a) == v0 + 1);
    CHECK(same_shape(zg_reshape(a, SHAPE(12)), SHAPE(12)));
    CHECK(same_shape(zg_reshape(a, SHAPE(-1)), SHAPE(12)));
    zg_tensor *one = zg_scalar(3.0f);
    zg_tensor *r1 = zg_reshape(one, SHAPE(1, 1));
    CHECK(same_shape(r1, SHAPE(1, 1)) && zg_tensor_get(r1, 0) == 3.0f);
    CHECK(zg_tensor_ndim(zg_reshape(r1, NULL, 0)) == 0);
    /* int64 tensors reshape too (no graph). */
    zg_tensor *l = zg_tensor_from_data(ZG_INT64, (int64_t[]){1, 2, 3, 4}, SHAPE(4));
    zg_tensor *lr = zg_reshape(l, SHAPE(2, 2));
    CHECK(same_shape(lr, SHAPE(2, 2)) && zg_tensor_data_i64(lr)[3] == 4);
    free_all((zg_tensor *[]){a, one, l}, 3);
}

static zg_tensor *op_reshape(zg_tensor *const *in, void *ctx) {
    (void)ctx;
    return zg_reshape(in[0], SHAPE(4, -1));
}
static zg_tensor *op_flatten(zg_tensor *const *in, void *ctx) { return zg_flatten(in[0], *(int *)ctx); }
/* A view followed by an op that saves it: gradients flow through both. */
static zg_tensor *op_reshape_softmax(zg_tensor *const *in, void *ctx) {
    (void)ctx;
    return zg_softmax(zg_reshape(in[0], SHAPE(3, 8)), 1);
}

TEST(reshape_and_flatten_gradcheck) {
    zg_tensor *x = zgt_param(zg_randn(SHAPE(2, 3, 4)));
    GRADCHECK("reshape", op_reshape, &x, 1, NULL, NULL);
    GRADCHECK("reshape then softmax", op_reshape_softmax, &x, 1, NULL, NULL);
    int d1 = 1, d0 = 0, dm = -2;
    GRADCHECK("flatten 1", op_flatten, &x, 1, &d1, NULL);
    GRADCHECK("flatten 0", op_flatten, &x, 1, &d0, NULL);
    GRADCHECK("flatten -2", op_flatten, &x, 1, &dm, NULL);
    CHECK(has_grad_fn(zg_reshape(x, SHAPE(24)), "reshape"));
    CHECK(has_grad_fn(zg_flatten(x, 1), "flatten"));
    zg_tensor_free(x);
}

TEST(flatten_shapes) {
    zg_tensor *x = zg_zeros(SHAPE(2, 3, 4, 5));
    CHECK(same_shape(zg_flatten(x, 1), SHAPE(2, 60)));
    CHECK(same_shape(zg_flatten(x, 0), SHAPE(120)));
    CHECK(same_shape(zg_flatten(x, 2), SHAPE(2, 3, 20)));
    CHECK(same_shape(zg_flatten(x, -1), SHAPE(2, 3, 4, 5)));
    CHECK(zg_tensor_data(zg_flatten(x, 1)) == zg_tensor_data(x));
    zg_tensor *s = zg_scalar(2.0f);
    CHECK(same_shape(zg_flatten(s, 0), SHAPE(1)));
    CHECK(same_shape(zg_flatten(s, -1), SHAPE(1)));
    CHECK_NULL_ERR(zg_flatten(s, 1), "zg_flatten: dim 1 out of range for a 0-dim tensor");
    zg_tensor_free(x);
    zg_tensor_free(s);
}

TEST(reshape_flatten_errors) {
    zg_tensor *x = zg_zeros(SHAPE(3, 5));
    CHECK_NULL_ERR(zg_reshape(x, SHAPE(4, 4)), "zg_reshape: shape [4,4] is invalid for input of shape [3,5]");
    CHECK_NULL_ERR(zg_reshape(x, SHAPE(2, -1)), "zg_reshape: shape [2,-1] is invalid for input of shape [3,5]");
    CHECK_NULL_ERR(zg_reshape(x, SHAPE(-1, -1)), "zg_reshape: shape [-1,-1] has more than one -1");
    CHECK_NULL_ERR(zg_reshape(x, SHAPE(-3, -5)), "zg_reshape: shape [-3,-5] has a negative size");
    CHECK_NULL_ERR(zg_reshape(x, NULL, 2), "zg_reshape: shape is NULL");
    CHECK_NULL_ERR(zg_reshape(NULL, SHAPE(15)), "zg_reshape: input is NULL");
    CHECK_NULL_ERR(zg_reshape(x, SHAPE(1, 1, 1, 1, 1, 1, 1, 3, 5)), "zg_reshape: 9 dimensions");
    CHECK_NULL_ERR(zg_flatten(x, 2), "zg_flatten: dim 2 out of range");
    CHECK_NULL_ERR(zg_flatten(NULL, 0), "zg_flatten: input is NULL");
    zg_tensor_free(x);
}

TEST(slice_rows_is_a_view) {
    float v[12];
    for (int i = 0; i < 12; i++) v[i] = (float)i;
    zg_tensor *a = zg_tensor_from_data(ZG_FLOAT32, v, SHAPE(4, 3));
    zg_tensor *s = zg_slice(a, 1, 3);
    CHECK(same_shape(s, SHAPE(2, 3)));
    CHECK_VALUES(s, ((float[]){3, 4, 5, 6, 7, 8}), 6, 0);
    CHECK(zg_tensor_data(s) == zg_tensor_data(a) + 3);
    /* Negative indices count from the end; an empty slice is allowed. */
    CHECK_VALUES(zg_slice(a, -1, 4), ((float[]){9, 10, 11}), 3, 0);
    CHECK_VALUES(zg_slice(a, 0, -3), ((float[]){0, 1, 2}), 3, 0);
    CHECK(same_shape(zg_slice(a, 2, 2), SHAPE(0, 3)));
    /* A slice of a slice keeps the offset. */
    CHECK_VALUES(zg_slice(zg_slice(a, 1, 4), 1, 2), ((float[]){6, 7, 8}), 3, 0);
    zg_tensor_free(a);
}

static zg_tensor *op_slice(zg_tensor *const *in, void *ctx) {
    const int64_t *r = ctx;
    return zg_slice(in[0], r[0], r[1]);
}
/* Two slices of one tensor: the two scattered gradients add up. */
static zg_tensor *op_two_slices(zg_tensor *const *in, void *ctx) {
    (void)ctx;
    zg_tensor *parts[2] = {zg_slice(in[0], 0, 2), zg_slice(in[0], 1, 3)};
    return zg_cat(parts, 2, 1);
}

TEST(slice_gradcheck) {
    zg_tensor *x = zgt_param(zg_randn(SHAPE(5, 2, 3)));
    int64_t r1[2] = {1, 4}, r2[2] = {0, 5}, r3[2] = {-2, 5};
    GRADCHECK("slice 1:4", op_slice, &x, 1, r1, NULL);
    GRADCHECK("slice all", op_slice, &x, 1, r2, NULL);
    GRADCHECK("slice -2:", op_slice, &x, 1, r3, NULL);
    GRADCHECK("two overlapping slices", op_two_slices, &x, 1, NULL, NULL);
    CHECK(has_grad_fn(zg_slice(x, 0, 1), "slice"));
    zg_tensor_free(x);
}

TEST(slice_errors) {
    zg_tensor *x = zg_zeros(SHAPE(4, 3));
    CHECK_NULL_ERR(zg_slice(x, 2, 5), "zg_slice: rows [2,5) out of range for dim 0 of input of shape [4,3]");
    CHECK_NULL_ERR(zg_slice(x, 3, 2), "zg_slice: rows [3,2) out of range");
    CHECK_NULL_ERR(zg_slice(x, -5, 2), "zg_slice: rows [-5,2) out of range");
    CHECK_NULL_ERR(zg_slice(NULL, 0, 1), "zg_slice: input is NULL");
    zg_tensor *s = zg_scalar(1);
    CHECK_NULL_ERR(zg_slice(s, 0, 1), "zg_slice: cannot slice a 0-dim tensor");
    zg_tensor_free(x);
    zg_tensor_free(s);
}

/* ---- cat ---------------------------------------------------------------- */

TEST(cat_matches_pytorch) {
    float v1[6] = {0, 1, 2, 3, 4, 5}, v2[4] = {100, 101, 102, 103}, v3[6] = {10, 11, 12, 13, 14, 15};
    zg_tensor *c1 = zg_tensor_from_data(ZG_FLOAT32, v1, SHAPE(2, 3));
    zg_tensor *c2 = zg_tensor_from_data(ZG_FLOAT32, v2, SHAPE(2, 2));
    zg_tensor *c3 = zg_tensor_from_data(ZG_FLOAT32, v3, SHAPE(2, 3));
    zg_tensor *r = zg_cat((zg_tensor *[]){c1, c2}, 2, 1);
    CHECK(same_shape(r, SHAPE(2, 5)));
    CHECK_VALUES(r, ((float[]){0, 1, 2, 100, 101, 3, 4, 5, 102, 103}), 10, 0);
    CHECK_VALUES(zg_cat((zg_tensor *[]){c1, c2}, 2, -1), ((float[]){0, 1, 2, 100, 101, 3, 4, 5, 102, 103}), 10, 0);
    zg_tensor *r0 = zg_cat((zg_tensor *[]){c1, c3}, 2, 0);
    CHECK(same_shape(r0, SHAPE(4, 3)));
    CHECK_VALUES(r0, ((float[]){0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15}), 12, 0);
    /* A copy, not a view. */
    zg_tensor *one = zg_cat(&c1, 1, 0);
    CHECK(zg_tensor_data(one) != zg_tensor_data(c1));
    CHECK_VALUES(one, v1, 6, 0);
    free_all((zg_tensor *[]){c1, c2, c3}, 3);
}

static zg_tensor *op_cat(zg_tensor *const *in, void *ctx) {
    const int *p = ctx; /* n, dim */
    return zg_cat(in, p[0], p[1]);
}

TEST(cat_gradcheck) {
    zg_tensor *a = zgt_param(zg_randn(SHAPE(2, 3, 2))), *b = zgt_param(zg_randn(SHAPE(2, 1, 2))), *c = zgt_param(zg_randn(SHAPE(2, 4, 2)));
    int p1[2] = {3, 1};
    GRADCHECK("cat dim 1", op_cat, ((zg_tensor *[]){a, b, c}), 3, p1, NULL);
    zg_tensor *d = zgt_param(zg_randn(SHAPE(3, 3, 2)));
    int p0[2] = {2, 0};
    GRADCHECK("cat dim 0", op_cat, ((zg_tensor *[]){a, d}), 2, p0, NULL);
    zg_tensor *e = zgt_param(zg_randn(SHAPE(2, 3, 5)));
    int pl[2] = {2, -1};
    GRADCHECK("cat dim -1", op_cat, ((zg_tensor *[]){a, e}), 2, pl, NULL);
    /* One input is a constant: it gets no gradient, the others do. */
    zg_tensor_set_requires_grad(b, false);
    GRADCHECK("cat, constant input", op_cat, ((zg_tensor *[]){a, b, c}), 3, p1, NULL);
    CHECK(zg_tensor_grad(b) == NULL);
    free_all((zg_tensor *[]){a, b, c, d, e}, 5);
}

TEST(cat_more_inputs_than_a_node_holds) {
    /* 9 inputs (a node holds 4): values and every input's gradient. */
    zg_tensor *ts[9];
    for (int i = 0; i < 9; i++) {
        float v[2] = {(float)i, (float)(10 * i)};
        ts[i] = zgt_param_from(v, SHAPE(1, 2));
    }
    zg_tensor *r = zg_cat(ts, 9, 0);
    CHECK(same_shape(r, SHAPE(9, 2)));
    for (int i = 0; i < 9; i++) {
        CHECK(zg_tensor_get(r, 2 * i) == (float)i);
        CHECK(zg_tensor_get(r, 2 * i + 1) == (float)(10 * i));
    }
    int p[2] = {9, 1};
    GRADCHECK("cat of 9", op_cat, ts, 9, p, NULL);
    int p0[2] = {6, 0};
    GRADCHECK("cat of 6", op_cat, ts, 6, p0, NULL);
    /* Without grad the same values come from one copy. */
    zg_no_grad_enter();
    zg_tensor *r2 = zg_cat(ts, 9, 0);
    zg_no_grad_exit();
    CHECK(zg_tensor_grad_fn_name(r2) == NULL);
    CHECK_TENSOR_NEAR(r2, r, 0, 0);
    free_all(ts, 9);
}

TEST(cat_errors) {
    zg_tensor *a = zg_zeros(SHAPE(2, 3)), *b = zg_zeros(SHAPE(3, 2)), *c = zg_zeros(SHAPE(2, 3, 1));
    CHECK_NULL_ERR(zg_cat((zg_tensor *[]){a, b}, 2, 1),
                   "zg_cat: tensor 1 of shape [3,2] does not match tensor 0 of shape [2,3] except in dim 1");
    CHECK_NULL_ERR(zg_cat((zg_tensor *[]){a, c}, 2, 0), "zg_cat: tensor 1 of shape [2,3,1]");
    CHECK_NULL_ERR(zg_cat((zg_tensor *[]){a, a}, 2, 2), "zg_cat: dim 2 out of range");
    CHECK_NULL_ERR(zg_cat((zg_tensor *[]){a, NULL}, 2, 0), "zg_cat: tensor 1 is NULL");
    CHECK_NULL_ERR(zg_cat(NULL, 2, 0), "zg_cat: tensor list is NULL");
    CHECK_NULL_ERR(zg_cat(&a, 0, 0), "zg_cat: no tensors");
    zg_tensor *s = zg_scalar(1);
    CHECK_NULL_ERR(zg_cat((zg_tensor *[]){s, s}, 2, 0), "zg_cat: 0-dim tensors cannot be concatenated");
    zg_tensor *l = zg_tensor_from_data(ZG_INT64, (int64_t[]){1, 2, 3, 4, 5, 6}, SHAPE(2, 3));
    CHECK_NULL_ERR(zg_cat((zg_tensor *[]){a, l}, 2, 0), "zg_cat: tensor 1 must be float32");
    free_all((zg_tensor *[]){a, b, c, s, l}, 5);
}

/* ---- transpose / permute ------------------------------------------------ */

TEST(transpose_permute_match_pytorch) {
    float v[24];
    for (int i = 0; i < 24; i++) v[i] = (float)i;
    zg_tensor *t = zg_tensor_from_data(ZG_FLOAT32, v, SHAPE(2, 3, 4));
    zg_tensor *p = zg_permute(t, (int[]){2, 0, 1}, 3);
    CHECK(same_shape(p, SHAPE(4, 2, 3)));
    CHECK_VALUES(p, ((float[]){0, 4, 8, 12, 16, 20, 1, 5, 9, 13, 17, 21, 2, 6, 10, 14, 18, 22, 3, 7, 11, 15, 19, 23}),
                 24, 0);
    CHECK(zg_tensor_data(p) != zg_tensor_data(t));
    zg_tensor *t02 = zg_transpose(t, 0, 2);
    CHECK(same_shape(t02, SHAPE(4, 3, 2)));
    CHECK_VALUES(t02,
                 ((float[]){0, 12, 4, 16, 8, 20, 1, 13, 5, 17, 9, 21, 2, 14, 6, 18, 10, 22, 3, 15, 7, 19, 11, 23}), 24,
                 0);
    zg_tensor *tl = zg_transpose(t, -1, -2);
    CHECK(same_shape(tl, SHAPE(2, 4, 3)));
    CHECK_VALUES(tl, ((float[]){0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11, 12, 16, 20, 13, 17, 21, 14, 18, 22, 15, 19, 23}),
                 24, 0);
    /* Negative dims in a permutation; the identity copies. */
    CHECK_TENSOR_NEAR(zg_permute(t, (int[]){-1, 0, -2}, 3), p, 0, 0);
    CHECK_TENSOR_NEAR(zg_transpose(t, 1, 1), t, 0, 0);
    /* transpose twice is the identity. */
    CHECK_TENSOR_NEAR(zg_transpose(zg_transpose(t, 0, 1), 0, 1), t, 0, 0);
    zg_tensor_free(t);
}

static zg_tensor *op_permute(zg_tensor *const *in, void *ctx) {
    const int *d = ctx;
    return zg_permute(in[0], d, zg_tensor_ndim(in[0]));
}
static zg_tensor *op_transpose(zg_tensor *const *in, void *ctx) {
    const int *d = ctx;
    return zg_transpose(in[0], d[0], d[1]);
}

TEST(transpose_permute_gradcheck) {
    zg_tensor *x = zgt_param(zg_randn(SHAPE(2, 3, 4)));
    int p1[3] = {2, 0, 1}, p2[3] = {1, 2, 0}, p3[3] = {0, 2, 1};
    GRADCHECK("permute 2,0,1", op_permute, &x, 1, p1, NULL);
    GRADCHECK("permute 1,2,0", op_permute, &x, 1, p2, NULL);
    GRADCHECK("permute 0,2,1", op_permute, &x, 1, p3, NULL);
    int t1[2] = {0, 2}, t2[2] = {-1, 1};
    GRADCHECK("transpose 0,2", op_transpose, &x, 1, t1, NULL);
    GRADCHECK("transpose -1,1", op_transpose, &x, 1, t2, NULL);
    zg_tensor *x4 = zgt_param(zg_randn(SHAPE(2, 1, 3, 2)));
    int p4[4] = {3, 1, 0, 2};
    GRADCHECK("permute 4-D", op_permute, &x4, 1, p4, NULL);
    CHECK(has_grad_fn(zg_transpose(x, 0, 1), "transpose"));
    CHECK(has_grad_fn(zg_permute(x, p1, 3), "permute"));
    zg_tensor_free(x);
    zg_tensor_free(x4);
}

TEST(transpose_permute_errors) {
    zg_tensor *x = zg_zeros(SHAPE(2, 3));
    CHECK_NULL_ERR(zg_transpose(x, 0, 2), "zg_transpose: dim 2 out of range");
    CHECK_NULL_ERR(zg_transpose(x, -3, 0), "zg_transpose: dim -3 out of range");
    CHECK_NULL_ERR(zg_transpose(NULL, 0, 1), "zg_transpose: input is NULL");
    CHECK_NULL_ERR(zg_permute(x, (int[]){0}, 1), "zg_permute: 1 dims given for input of shape [2,3]");
    CHECK_NULL_ERR(zg_permute(x, (int[]){1, 1}, 2), "zg_permute: dim 1 repeated");
    CHECK_NULL_ERR(zg_permute(x, (int[]){0, -3}, 2), "zg_permute: dim -3 out of range");
    CHECK_NULL_ERR(zg_permute(x, NULL, 2), "zg_permute: dims is NULL");
    CHECK_NULL_ERR(zg_permute(NULL, (int[]){0, 1}, 2), "zg_permute: input is NULL");
    zg_tensor *l = zg_tensor_from_data(ZG_INT64, (int64_t[]){1, 2}, SHAPE(1, 2));
    CHECK_NULL_ERR(zg_transpose(l, 0, 1), "zg_transpose: input must be float32");
    zg_tensor_free(x);
    zg_tensor_free(l);
}

/* ---- dropout ------------------------------------------------------------ */

TEST(dropout_statistics) {
    const int64_t n = 200000;
    zg_tensor *x = zg_ones(SHAPE(n));
    const float ps[3] = {0.1f, 0.5f, 0.8f};
    for (int k = 0; k < 3; k++) {
        float p = ps[k];
        zg_tensor *y = zg_dropout(x, p, true);
        CHECK_PTR(y);
        if (!y) continue;
        int64_t kept = 0, bad = 0;
        const float scale = 1.0f / (1.0f - p);
        for (int64_t i = 0; i < n; i++) {
            float v = zg_tensor_get(y, i);
            if (v != 0.0f) {
                kept++;
                if (fabsf(v - scale) > 1e-6f * scale) bad++;
            }
        }
        CHECK(bad == 0);
        /* Binomial: 5 standard deviations of the kept fraction. */
        double frac = (double)kept / n, sd = sqrt(p * (1.0 - p) / n);
        CHECK_NEAR(frac, 1.0 - p, 5 * sd);
        /* Mean stays about 1 (inverted dropout). */
        CHECK_NEAR(frac * scale, 1.0, 5 * sd * scale);
    }
    zg_tensor_free(x);
}

TEST(dropout_eval_and_p0_are_identity) {
    zg_tensor *x = zgt_param(zg_randn(SHAPE(4, 5)));
    CHECK(zg_dropout(x, 0.5f, false) == x);
    CHECK(zg_dropout(x, 0.0f, true) == x);
    CHECK(zg_dropout(x, 1.0f, false) == x);
    CHECK(zg_tensor_is_leaf(x));
    /* Eval mode draws nothing from the generator. */
    uint64_t s0[4], s1[4];
    zg_rng_get_state(s0);
    zg_dropout(x, 0.5f, false);
    zg_rng_get_state(s1);
    CHECK(!memcmp(s0, s1, sizeof s0));
    zg_tensor_free(x);
}

TEST(dropout_p1_gives_zeros_and_zero_grad) {
    zg_tensor *x = zgt_param(zg_randn(SHAPE(3, 4)));
    zg_tensor *y = zg_dropout(x, 1.0f, true);
    CHECK(has_grad_fn(y, "dropout"));
    for (int i = 0; i < 12; i++) CHECK(zg_tensor_get(y, i) == 0.0f);
    zg_tensor *g = zg_ones(SHAPE(3, 4));
    CHECK_OK(zg_backward(y, &(zg_backward_opts){.grad = g}));
    for (int i = 0; i < 12; i++) CHECK(zg_tensor_get(zg_tensor_grad(x), i) == 0.0f);
    zg_tensor_free(x);
    zg_tensor_free(g);
}

TEST(dropout_backward_uses_the_forward_mask) {
    zg_tensor *x = zgt_param(zg_randn(SHAPE(50)));
    zg_tensor *y = zg_dropout(x, 0.4f, true);
    zg_tensor *g = zg_ones(SHAPE(50));
    CHECK_OK(zg_backward(y, &(zg_backward_opts){.grad = g}));
    zg_tensor *gx = zg_tensor_grad(x);
    int dropped = 0;
    for (int i = 0; i < 50; i++) {
        float xi = zg_tensor_get(x, i), yi = zg_tensor_get(y, i), gi = zg_tensor_get(gx, i);
        if (yi == 0.0f) {
            dropped++;
            CHECK(gi == 0.0f);
        } else {
            CHECK_NEAR(gi, 1.0f / 0.6f, 1e-6);
            CHECK_NEAR(yi, xi / 0.6f, 1e-6);
        }
    }
    CHECK(dropped > 0 && dropped < 50);
    /* Same seed, same mask. */
    zg_manual_seed(7);
    zg_tensor *y1 = zg_dropout(x, 0.4f, true);
    zg_manual_seed(7);
    zg_tensor *y2 = zg_dropout(x, 0.4f, true);
    CHECK_TENSOR_NEAR(y1, y2, 0, 0);
    zg_tensor_free(x);
    zg_tensor_free(g);
}

static zg_tensor *op_dropout(zg_tensor *const *in, void *ctx) {
    /* The same mask in every evaluation of the check. */
    zg_manual_seed(1234);
    return zg_dropout(in[0], *(float *)ctx, true);
}

TEST(dropout_gradcheck) {
    zg_tensor *x = zgt_param(zg_randn(SHAPE(4, 6)));
    float p = 0.3f, p2 = 0.75f;
    GRADCHECK("dropout 0.3", op_dropout, &x, 1, &p, NULL);
    GRADCHECK("dropout 0.75", op_dropout, &x, 1, &p2, NULL);
    zg_tensor_free(x);
}

TEST(dropout_errors) {
    zg_tensor *x = zg_zeros(SHAPE(3));
    CHECK_NULL_ERR(zg_dropout(x, 1.5f, true), "zg_dropout: p must be in [0, 1], got 1.5");
    CHECK_NULL_ERR(zg_dropout(x, -0.1f, false), "zg_dropout: p must be in [0, 1]");
    CHECK_NULL_ERR(zg_dropout(x, NAN, true), "zg_dropout: p must be in [0, 1]");
    CHECK_NULL_ERR(zg_dropout(NULL, 0.5f, true), "zg_dropout: input is NULL");
    zg_tensor *l = zg_tensor_from_data(ZG_INT64, (int64_t[]){1}, SHAPE(1));
    CHECK_NULL_ERR(zg_dropout(l, 0.5f, true), "zg_dropout: input must be float32");
    zg_tensor_free(x);
    zg_tensor_free(l);
}

/* Large float32 GEMMs are split across threads by rows or columns of the
 * result, which leaves each element's sum in the same order, and the
 * backward's dx and dW GEMMs run side by side, each whole: a linear
 * layer's output and gradients are the same bits with 1, 2 and 3 threads
 * (shapes that split by columns, by rows, and one whose bias gradient
 * splits its columns across the threads too). */
static void linear_bits(int threads, const int64_t *xs, const int64_t *ws, float *out, size_t n_out) {
    zg_set_num_threads(threads);
    zg_manual_seed(5);
    zg_tensor *x = zg_randn(xs, 2), *w = zg_randn(ws, 2);
    int64_t bs[1] = {ws[0]};
    zg_tensor *b = zg_randn(bs, 1);
    zg_tensor_set_requires_grad(x, true);
    zg_tensor_set_requires_grad(w, true);
    zg_tensor_set_requires_grad(b, true);
    zg_tensor *y = zg_linear(x, w, b);
    zg_tensor *s = zg_sum(zg_mul(y, y));
    CHECK_OK(zg_backward(s, NULL));
    size_t k = 0;
    zg_tensor *parts[4] = {y, zg_tensor_grad(x), zg_tensor_grad(w), zg_tensor_grad(b)};
    for (int i = 0; i < 4; i++)
        for (int64_t j = 0; j < zg_tensor_numel(parts[i]) && k < n_out; j++) out[k++] = zg_tensor_data(parts[i])[j];
    CHECK(k == n_out);
    zg_arena_reset();
    zg_tensor_free(x);
    zg_tensor_free(w);
    zg_tensor_free(b);
}

TEST(linear_results_do_not_depend_on_thread_count) {
    const int saved_threads = omp_get_max_threads();
    const int64_t shapes[3][2][2] = {{{64, 784}, {256, 784}}, {{512, 300}, {40, 300}}, {{256, 200}, {256, 200}}};
    for (int c = 0; c < 3; c++) {
        const int64_t *xs = shapes[c][0], *ws = shapes[c][1];
        const size_t n = (size_t)(xs[0] * ws[0] + xs[0] * xs[1] + ws[0] * ws[1] + ws[0]);
        CHECK(2 * xs[0] * ws[0] * xs[1] >= (4 << 20)); /* above the split threshold */
        float *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got);
        linear_bits(1, xs, ws, ref, n);
        for (int t = 2; t <= 3; t++) {
            linear_bits(t, xs, ws, got, n);
            CHECK(memcmp(ref, got, n * sizeof *ref) == 0);
        }
        free(ref);
        free(got);
    }
    zg_set_num_threads(saved_threads);
}
