/* Element-wise ops: forward values against PyTorch (numbers computed with
 * torch 1.13 for the inputs below), broadcasting patterns, finite-
 * difference gradient checks of every op on every pattern, what each op
 * saves for backward, and the errors of each entry point. */
#include "harness.h"
#include "ops/ops_internal.h"

#include <stdlib.h>

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* A persistent tensor that requires grad. */
static bool shape_is(const zg_tensor *t, const int64_t *shape, int nd) {
    if (!t || zg_tensor_ndim(t) != nd) return false;
    for (int i = 0; i < nd; i++)
        if (zg_tensor_shape(t)[i] != shape[i]) return false;
    return true;
}

/* ---- forward values ------------------------------------------------------- */

TEST(binary_same_shape_and_row_broadcast_match_torch) {
    int64_t s23[2] = {2, 3}, s3[1] = {3};
    zg_tensor *a = zgt_from((float[]){0.5f, -1.25f, 2.0f, 3.5f, 0.75f, -2.5f}, s23, 2);
    zg_tensor *b = zgt_from((float[]){1.5f, -0.5f, 4.0f}, s3, 1);
    zg_tensor *y = zg_add(a, b);
    CHECK(shape_is(y, s23, 2));
    CHECK_VALUES(y, ((float[]){2, -1.75f, 6, 5, 0.25f, 1.5f}), 6, 0);
    CHECK_VALUES(zg_sub(a, b), ((float[]){-1, -0.75f, -2, 2, 1.25f, -6.5f}), 6, 0);
    CHECK_VALUES(zg_mul(a, b), ((float[]){0.75f, 0.625f, 8, 5.25f, -0.375f, -10}), 6, 0);
    CHECK_VALUES(zg_div(a, b), ((float[]){0.333333343f, 2.5f, 0.5f, 2.33333325f, -1.5f, -0.625f}), 6, 0);
    /* The row vector on the left broadcasts the same way. */
    CHECK_VALUES(zg_sub(b, a), ((float[]){1, 0.75f, 2, -2, -1.25f, 6.5f}), 6, 0);
    /* Same shapes. */
    CHECK_VALUES(zg_mul(a, a), ((float[]){0.25f, 1.5625f, 4, 12.25f, 0.5625f, 6.25f}), 6, 0);
    zg_tensor_free(a);
    zg_tensor_free(b);
}

TEST(outer_broadcast_2x1_times_1x3) {
    int64_t s21[2] = {2, 1}, s13[2] = {1, 3}, s23[2] = {2, 3};
    zg_tensor *a = zgt_from((float[]){2, -3}, s21, 2);
    zg_tensor *b = zgt_from((float[]){1, 0.5f, -4}, s13, 2);
    zg_tensor *y = zg_mul(a, b);
    CHECK(shape_is(y, s23, 2));
    CHECK_VALUES(y, ((float[]){2, 1, -8, -3, -1.5f, 12}), 6, 0);
    CHECK_VALUES(zg_div(a, b), ((float[]){2, 4, -0.5f, -3, -6, 0.75f}), 6, 0);
    CHECK_VALUES(zg_sub(a, b), ((float[]){1, 1.5f, 6, -4, -3.5f, 1}), 6, 0);
    zg_tensor_free(a);
    zg_tensor_free(b);
}

TEST(broadcast_4x1x3_with_2x3) {
    int64_t s413[3] = {4, 1, 3}, s23[2] = {2, 3}, s423[3] = {4, 2, 3};
    float av[12];
    for (int i = 0; i < 12; i++) av[i] = 0.5f * (float)i - 2.0f;
    zg_tensor *a = zgt_from(av, s413, 3);
    zg_tensor *b = zgt_from((float[]){1, -2, 0.25f, 3, 0.5f, -1}, s23, 2);
    zg_tensor *y = zg_sub(a, b);
    CHECK(shape_is(y, s423, 3));
    const float sub[24] = {-3, 0.5f, -1.25f, -5, -2, 0,    -1.5f, 2, 0.25f, -3.5f, -0.5f, 1.5f,
                           0,  3.5f, 1.75f,  -2, 1,  3,    1.5f,  5, 3.25f, -0.5f, 2.5f,  4.5f};
    CHECK_VALUES(y, sub, 24, 0);
    const float mul[24] = {-2,   3,  -0.25f, -6,  -0.75f, 1,  -0.5f, 0,  0.125f, -1.5f, 0,    -0.5f,
                           1,    -3, 0.5f,   3,   0.75f,  -2, 2.5f,  -6, 0.875f, 7.5f,  1.5f, -3.5f};
    CHECK_VALUES(zg_mul(b, a), mul, 24, 0);
    zg_tensor_free(a);
    zg_tensor_free(b);
}

TEST(zero_dim_broadcasts_with_anything) {
    int64_t s22[2] = {2, 2};
    zg_tensor *s = zg_scalar(2.5f);
    zg_tensor *m = zgt_from((float[]){1, -2, 0.5f, 4}, s22, 2);
    zg_tensor *y = zg_add(s, m);
    CHECK(shape_is(y, s22, 2));
    CHECK_VALUES(y, ((float[]){3.5f, 0.5f, 3, 6.5f}), 4, 0);
    CHECK_VALUES(zg_div(m, s), ((float[]){0.400000006f, -0.800000012f, 0.200000003f, 1.60000002f}), 4, 0);
    CHECK_VALUES(zg_div(s, m), ((float[]){2.5f, -1.25f, 5, 0.625f}), 4, 0);
    zg_tensor *ss = zg_mul(s, s);
    CHECK(zg_tensor_ndim(ss) == 0 && zg_tensor_item(ss) == 6.25f);
    zg_tensor_free(s);
    zg_tensor_free(m);
}

TEST(pow_tensor_exponent_values_and_grads_match_torch) {
    int64_t s23[2] = {2, 3}, s3[1] = {3};
    zg_tensor *a = zgt_param_from((float[]){0.5f, 1.5f, 2, 3, 0.25f, 1}, s23, 2);
    zg_tensor *b = zgt_param_from((float[]){2, -0.5f, 1.7f}, s3, 1);
    zg_tensor *y = zg_pow(a, b);
    CHECK_VALUES(y, ((float[]){0.25f, 0.816496611f, 3.24900961f, 9, 2, 1}), 6, 2e-7);
    CHECK_OK(zg_backward(zg_sum(y), NULL));
    CHECK_VALUES(zg_tensor_grad(a), ((float[]){1, -0.272165537f, 2.76165819f, 6, -4, 1.70000005f}), 6, 2e-6);
    CHECK_VALUES(zg_tensor_grad(b), ((float[]){9.71422386f, -2.44152784f, 2.25204182f}), 3, 2e-6);
    /* At a == 0 the exponent's gradient is 0 (the limit), and b == 0 gives
     * 0 for a: as PyTorch. */
    int64_t s[1] = {3};
    zg_tensor *z = zgt_param_from((float[]){0, 0, 2}, s, 1);
    zg_tensor *e = zgt_param_from((float[]){0, 2, 0}, s, 1);
    zg_tensor *p = zg_pow(z, e);
    CHECK_VALUES(p, ((float[]){1, 0, 1}), 3, 0);
    CHECK_OK(zg_backward(zg_sum(p), NULL));
    CHECK_VALUES(zg_tensor_grad(z), ((float[]){0, 0, 0}), 3, 0);
    CHECK_VALUES(zg_tensor_grad(e), ((float[]){0, 0, 0.693147182f}), 3, 1e-7);
    zg_tensor *fr[] = {a, b, z, e};
    for (int i = 0; i < N_OF(fr); i++) zg_tensor_free(fr[i]);
}

TEST(div_broadcast_grads_match_torch) {
    int64_t s23[2] = {2, 3}, s21[2] = {2, 1};
    zg_tensor *a = zgt_param_from((float[]){0.5f, -1.25f, 2, 3.5f, 0.75f, -2.5f}, s23, 2);
    zg_tensor *b = zgt_param_from((float[]){1.5f, -0.5f}, s21, 2);
    CHECK_OK(zg_backward(zg_sum(zg_div(a, b)), NULL));
    CHECK_VALUES(zg_tensor_grad(a), ((float[]){0.666666687f, 0.666666687f, 0.666666687f, -2, -2, -2}), 6, 1e-7);
    CHECK_VALUES(zg_tensor_grad(b), ((float[]){-0.555555582f, -7}), 2, 1e-6);
    zg_tensor_free(a);
    zg_tensor_free(b);
}

TEST(bias_style_broadcast_grad_is_column_sum) {
    /* y = x + b with x [N,C], b [C]: db = sum over rows of dy. */
    int64_t s[2] = {3, 2}, sb[1] = {2};
    zg_tensor *x = zgt_param_from((float[]){1, 2, 3, 4, 5, 6}, s, 2);
    zg_tensor *b = zgt_param_from((float[]){0.5f, -0.5f}, sb, 1);
    zg_tensor *w = zgt_from((float[]){1, 10, 100, 1000, 2, 20}, s, 2);
    CHECK_OK(zg_backward(zg_add(x, b), &(zg_backward_opts){.grad = w}));
    CHECK_VALUES(zg_tensor_grad(b), ((float[]){103, 1030}), 2, 0);
    CHECK_VALUES(zg_tensor_grad(x), ((float[]){1, 10, 100, 1000, 2, 20}), 6, 0);
    zg_tensor_free(x);
    zg_tensor_free(b);
    zg_tensor_free(w);
}

TEST(scalar_ops_match_torch) {
    int64_t s[1] = {4};
    zg_tensor *x = zgt_from((float[]){0.5f, 1.5f, -2, 3}, s, 1);
    zg_tensor *xp = zgt_from((float[]){0.5f, 1.5f, 2, 3}, s, 1);
    CHECK_VALUES(zg_neg(x), ((float[]){-0.5f, -1.5f, 2, -3}), 4, 0);
    CHECK_VALUES(zg_add_scalar(x, 0.3f), ((float[]){0.800000012f, 1.79999995f, -1.70000005f, 3.29999995f}), 4, 0);
    CHECK_VALUES(zg_sub_scalar(x, 0.3f), ((float[]){0.199999988f, 1.20000005f, -2.29999995f, 2.70000005f}), 4, 0);
    CHECK_VALUES(zg_rsub_scalar(x, 0.3f), ((float[]){-0.199999988f, -1.20000005f, 2.29999995f, -2.70000005f}), 4, 0);
    CHECK_VALUES(zg_mul_scalar(x, -1.7f), ((float[]){-0.850000024f, -2.55000019f, 3.4000001f, -5.10000038f}), 4, 0);
    CHECK_VALUES(zg_div_scalar(x, 3.0f), ((float[]){0.166666672f, 0.5f, -0.666666687f, 1}), 4, 0);
    CHECK_VALUES(zg_pow_scalar(xp, 1.7f), ((float[]){0.307786107f, 1.99230182f, 3.24900961f, 6.47300768f}), 4, 1e-6);
    CHECK_VALUES(zg_pow_scalar(xp, 2.0f), ((float[]){0.25f, 2.25f, 4, 9}), 4, 0);
    CHECK_VALUES(zg_pow_scalar(xp, 3.0f), ((float[]){0.125f, 3.375f, 8, 27}), 4, 0);
    CHECK_VALUES(zg_pow_scalar(xp, 0.5f), ((float[]){0.707106769f, 1.22474492f, 1.41421354f, 1.73205078f}), 4, 0);
    CHECK_VALUES(zg_pow_scalar(xp, -0.5f), ((float[]){1.41421354f, 0.816496551f, 0.707106769f, 0.577350259f}), 4, 0);
    CHECK_VALUES(zg_pow_scalar(xp, 0.0f), ((float[]){1, 1, 1, 1}), 4, 0);
    CHECK_VALUES(zg_exp(x), ((float[]){1.64872122f, 4.48168898f, 0.135335281f, 20.085537f}), 4, 2e-6);
    CHECK_VALUES(zg_log(xp), ((float[]){-0.693147182f, 0.405465096f, 0.693147182f, 1.09861231f}), 4, 1e-7);
    CHECK_VALUES(zg_sqrt(xp), ((float[]){0.707106769f, 1.22474492f, 1.41421354f, 1.73205078f}), 4, 0);
    zg_tensor_free(x);
    zg_tensor_free(xp);
}

TEST(pow_scalar_grad_matches_torch) {
    int64_t s[1] = {4};
    zg_tensor *x = zgt_param_from((float[]){0.5f, 1.5f, 2, 3}, s, 1);
    CHECK_OK(zg_backward(zg_sum(zg_pow_scalar(x, 1.7f)), NULL));
    CHECK_VALUES(zg_tensor_grad(x), ((float[]){1.04647279f, 2.2579422f, 2.76165819f, 3.66803789f}), 4, 1e-6);
    zg_tensor_zero_grad(x, true);
    /* x^0 is constant: gradient 0 (also at x == 0). */
    CHECK_OK(zg_backward(zg_sum(zg_pow_scalar(x, 0.0f)), NULL));
    CHECK_VALUES(zg_tensor_grad(x), ((float[]){0, 0, 0, 0}), 4, 0);
    zg_tensor_free(x);
}

/* A naive broadcast (index arithmetic per element) to compare the planned
 * loops against on shapes that need the general path. */
static void naive_binary(const float *a, const int64_t *as, int an, const float *b, const int64_t *bs, int bn,
                         const int64_t *os, int on, int op, float *out) {
    int64_t numel = 1;
    for (int d = 0; d < on; d++) numel *= os[d];
    for (int64_t f = 0; f < numel; f++) {
        int64_t rem = f, ia = 0, ib = 0, sa = 1, sb = 1;
        for (int d = on - 1; d >= 0; d--) {
            int64_t i = rem % os[d];
            rem /= os[d];
            int ka = d - (on - an), kb = d - (on - bn);
            if (ka >= 0) {
                ia += (as[ka] == 1 ? 0 : i) * sa;
                sa *= as[ka];
            }
            if (kb >= 0) {
                ib += (bs[kb] == 1 ? 0 : i) * sb;
                sb *= bs[kb];
            }
        }
        out[f] = op == 0 ? a[ia] + b[ib] : op == 1 ? a[ia] * b[ib] : a[ia] / b[ib];
    }
}

TEST(general_broadcast_matches_naive_reference) {
    struct {
        int an, bn, on;
        int64_t as[4], bs[4], os[4];
    } cases[] = {
        {4, 3, 4, {3, 1, 4, 2}, {5, 1, 2}, {3, 5, 4, 2}},
        {3, 3, 3, {1, 4, 1}, {3, 1, 5}, {3, 4, 5}},
        {2, 4, 4, {3, 1}, {2, 1, 3, 7}, {2, 1, 3, 7}},
        {3, 1, 3, {2, 3, 4}, {1}, {2, 3, 4}},
        {3, 3, 3, {2, 3, 1}, {2, 3, 6}, {2, 3, 6}},
        {2, 2, 2, {0, 3}, {1, 3}, {0, 3}},
    };
    for (int c = 0; c < N_OF(cases); c++) {
        zg_tensor *a = zg_uniform(cases[c].as, cases[c].an, 0.5f, 2.0f);
        zg_tensor *b = zg_uniform(cases[c].bs, cases[c].bn, 0.5f, 2.0f);
        zg_tensor *(*ops[3])(zg_tensor *, zg_tensor *) = {zg_add, zg_mul, zg_div};
        for (int op = 0; op < 3; op++) {
            zg_tensor *y = ops[op](a, b);
            CHECK(shape_is(y, cases[c].os, cases[c].on));
            if (!y) continue;
            float *ref = malloc((size_t)(zg_tensor_numel(y) + 1) * sizeof(float));
            naive_binary(zg_tensor_data(a), cases[c].as, cases[c].an, zg_tensor_data(b), cases[c].bs, cases[c].bn,
                         cases[c].os, cases[c].on, op, ref);
            CHECK_VALUES(y, ref, (int)zg_tensor_numel(y), 0);
            /* Operands swapped: the same values for + and *. */
            if (op < 2) CHECK_VALUES(ops[op](b, a), ref, (int)zg_tensor_numel(y), 0);
            free(ref);
        }
        zg_tensor_free(a);
        zg_tensor_free(b);
    }
}

TEST(sum_to_shape_reduces_broadcast_dims) {
    int64_t s[3] = {2, 3, 4};
    float v[24];
    for (int i = 0; i < 24; i++) v[i] = (float)i;
    zg_tensor *g = zgt_from(v, s, 3);
    /* [2,3,4] -> [4]: sum over dims 0, 1 */
    zg_tensor *r = zg__sum_to_shape(g, (int64_t[]){4}, 1);
    CHECK_VALUES(r, ((float[]){60, 66, 72, 78}), 4, 0);
    /* -> [3,1]: sum over dims 0 and 2 */
    r = zg__sum_to_shape(g, (int64_t[]){3, 1}, 2);
    CHECK(shape_is(r, (int64_t[]){3, 1}, 2));
    CHECK_VALUES(r, ((float[]){60, 92, 124}), 3, 0);
    /* -> [2,1,4]: sum over dim 1 */
    r = zg__sum_to_shape(g, (int64_t[]){2, 1, 4}, 3);
    CHECK_VALUES(r, ((float[]){12, 15, 18, 21, 48, 51, 54, 57}), 8, 0);
    /* -> [] and [1,1]: everything */
    r = zg__sum_to_shape(g, NULL, 0);
    CHECK(r && zg_tensor_ndim(r) == 0 && zg_tensor_item(r) == 276);
    r = zg__sum_to_shape(g, (int64_t[]){1, 1}, 2);
    CHECK(shape_is(r, (int64_t[]){1, 1}, 2) && zg_tensor_item(r) == 276);
    /* Same shape: a copy, not g itself. */
    r = zg__sum_to_shape(g, s, 3);
    CHECK(r && r != g && zg_tensor_data(r) != zg_tensor_data(g));
    CHECK_VALUES(r, v, 24, 0);
    CHECK_NULL_ERR(zg__sum_to_shape(g, (int64_t[]){2, 4}, 2), "zg__sum_to_shape");
    CHECK_NULL_ERR(zg__sum_to_shape(g, (int64_t[]){1, 2, 3, 4}, 4), "zg__sum_to_shape");
    CHECK_NULL_ERR(zg__sum_to_shape(NULL, s, 3), "zg__sum_to_shape");
    zg_tensor_free(g);
}

TEST(sum_to_shape_keeps_precision_over_many_rows) {
    /* 2^20 rows of 0.1f summed into one column: float accumulation would
     * drift by far more than the tolerance. */
    int64_t rows = (int64_t)1 << 20;
    int64_t s[2] = {rows, 2};
    zg_tensor *g = zg_full(s, 2, 0.1f);
    zg_tensor *r = zg__sum_to_shape(g, (int64_t[]){2}, 1);
    double expect = (double)rows * (double)0.1f;
    CHECK_PTR(r);
    if (r) CHECK_NEAR(zg_tensor_get(r, 0), expect, expect * 1e-7);
    if (r) CHECK_NEAR(zg_tensor_get(r, 1), expect, expect * 1e-7);
    zg_tensor_free(g);
}

/* ---- gradient checks --------------------------------------------------------- */

typedef zg_tensor *(*binop)(zg_tensor *, zg_tensor *);

/* ctx points to the op (a function pointer variable). */
static zg_tensor *call_binary(zg_tensor *const *in, void *ctx) { return (*(binop *)ctx)(in[0], in[1]); }

TEST(gradcheck_binary_ops_on_every_broadcast_pattern) {
    struct {
        const char *name;
        int an, bn;
        int64_t as[3], bs[3];
    } pats[] = {
        {"same [2,3]", 2, 2, {2, 3}, {2, 3}},
        {"row [2,3]+[3]", 2, 1, {2, 3}, {3}},
        {"row [3]+[2,3]", 1, 2, {3}, {2, 3}},
        {"column [2,3]+[2,1]", 2, 2, {2, 3}, {2, 1}},
        {"outer [2,1]x[1,3]", 2, 2, {2, 1}, {1, 3}},
        {"[4,1,3] with [2,3]", 3, 2, {4, 1, 3}, {2, 3}},
        {"0-dim with [2,2]", 0, 2, {0}, {2, 2}},
        {"[2,2] with 0-dim", 2, 0, {2, 2}, {0}},
        {"0-dim with 0-dim", 0, 0, {0}, {0}},
    };
    struct {
        const char *name;
        binop f;
        float alo, ahi, blo, bhi; /* input ranges: positive where needed */
    } ops[] = {
        {"add", zg_add, -2, 2, -2, 2},
        {"sub", zg_sub, -2, 2, -2, 2},
        {"mul", zg_mul, -2, 2, -2, 2},
        {"div", zg_div, -2, 2, 0.5f, 2},
        {"pow", zg_pow, 0.5f, 2, -1.5f, 1.5f},
    };
    for (int o = 0; o < N_OF(ops); o++)
        for (int p = 0; p < N_OF(pats); p++) {
            zg_tensor *in[2] = {zgt_param(zg_uniform(pats[p].as, pats[p].an, ops[o].alo, ops[o].ahi)),
                                zgt_param(zg_uniform(pats[p].bs, pats[p].bn, ops[o].blo, ops[o].bhi))};
            char name[96];
            snprintf(name, sizeof name, "%s %s", ops[o].name, pats[p].name);
            GRADCHECK(name, call_binary, in, 2, &ops[o].f, NULL);
            zg_tensor_free(in[0]);
            zg_tensor_free(in[1]);
        }
}

TEST(gradcheck_binary_op_with_one_constant_operand) {
    int64_t s23[2] = {2, 3}, s3[1] = {3};
    binop fs[] = {zg_add, zg_sub, zg_mul, zg_div, zg_pow};
    for (int o = 0; o < N_OF(fs); o++)
        for (int which = 0; which < 2; which++) {
            zg_tensor *in[2] = {zg_uniform(s23, 2, 0.5f, 2), zg_uniform(s3, 1, 0.5f, 2)};
            zg_tensor_set_requires_grad(in[which], true);
            GRADCHECK(which ? "constant a" : "constant b", call_binary, in, 2, &fs[o], NULL);
            zg_tensor_free(in[0]);
            zg_tensor_free(in[1]);
        }
}

typedef struct {
    zg_tensor *(*f)(zg_tensor *, float);
    float s;
} scalar_ctx;

static zg_tensor *call_scalar(zg_tensor *const *in, void *ctx) {
    scalar_ctx *c = ctx;
    return c->f(in[0], c->s);
}

typedef zg_tensor *(*unop)(zg_tensor *);

static zg_tensor *call_unary(zg_tensor *const *in, void *ctx) { return (*(unop *)ctx)(in[0]); }

TEST(gradcheck_unary_and_scalar_ops) {
    int64_t s[2] = {3, 4};
    scalar_ctx sc[] = {
        {zg_add_scalar, 0.7f}, {zg_sub_scalar, 0.7f},  {zg_rsub_scalar, 0.7f}, {zg_mul_scalar, -1.3f},
        {zg_div_scalar, 2.5f}, {zg_pow_scalar, 1.7f},  {zg_pow_scalar, 2.0f},  {zg_pow_scalar, 3.0f},
        {zg_pow_scalar, 0.5f}, {zg_pow_scalar, -0.5f}, {zg_pow_scalar, -1.0f}, {zg_pow_scalar, -2.0f},
        {zg_pow_scalar, 1.0f}, {zg_pow_scalar, 0.0f},
    };
    for (int i = 0; i < N_OF(sc); i++) {
        zg_tensor *x = zgt_param(zg_uniform(s, 2, 0.5f, 2.0f)); /* positive: pow with any exponent */
        char name[64];
        snprintf(name, sizeof name, "scalar op %d (s = %g)", i, (double)sc[i].s);
        GRADCHECK(name, call_scalar, &x, 1, &sc[i], NULL);
        zg_tensor_free(x);
    }
    unop un[] = {zg_neg, zg_exp, zg_log, zg_sqrt};
    const char *names[] = {"neg", "exp", "log", "sqrt"};
    for (int i = 0; i < N_OF(un); i++) {
        zg_tensor *x = zgt_param(zg_uniform(s, 2, 0.5f, 2.0f));
        GRADCHECK(names[i], call_unary, &x, 1, &un[i], NULL);
        zg_tensor_free(x);
    }
    /* 0-dim inputs */
    zg_tensor *x0 = zg_scalar(1.3f);
    zg_tensor_set_requires_grad(x0, true);
    GRADCHECK("exp 0-dim", call_unary, &x0, 1, &un[1], NULL);
    GRADCHECK("pow_scalar 0-dim", call_scalar, &x0, 1, &sc[5], NULL);
    zg_tensor_free(x0);
}

/* ---- saved tensors and repeated backward ------------------------------------------ */

TEST(add_saves_nothing_and_backwards_twice) {
    int64_t s[1] = {2};
    zg_tensor *x = zgt_param_from((float[]){1, 2}, s, 1);
    zg_tensor *one = zg_ones(s, 1);
    zg_tensor *y = zg_sum(zg_add(x, one));
    CHECK_OK(zg_backward(y, NULL));
    CHECK_OK(zg_backward(y, NULL));
    CHECK_VALUES(zg_tensor_grad(x), ((float[]){2, 2}), 2, 0);
    /* The scalar forms save nothing either. */
    zg_tensor_zero_grad(x, true);
    zg_tensor *z = zg_sum(zg_rsub_scalar(zg_div_scalar(zg_mul_scalar(zg_add_scalar(x, 1.0f), 3.0f), 2.0f), 1.0f));
    CHECK_OK(zg_backward(z, NULL));
    CHECK_OK(zg_backward(z, NULL));
    CHECK_VALUES(zg_tensor_grad(x), ((float[]){-3, -3}), 2, 0);
    zg_tensor_free(x);
    zg_tensor_free(one);
}

TEST(mul_backwarded_twice_needs_retain_graph) {
    int64_t s[1] = {2};
    zg_tensor *x = zgt_param_from((float[]){1, 2}, s, 1);
    zg_tensor *y = zg_sum(zg_mul(x, x));
    CHECK_OK(zg_backward(y, NULL));
    CHECK_ERR(zg_backward(y, NULL), "second time");
    CHECK_VALUES(zg_tensor_grad(x), ((float[]){2, 4}), 2, 0);
    zg_tensor_free(x);
}

TEST(x_squared_plus_5x_has_gradient_11_at_3) {
    zg_tensor *x = zg_scalar(3.0f);
    zg_tensor_set_requires_grad(x, true);
    zg_tensor *y = zg_add(zg_mul(x, x), zg_mul_scalar(x, 5.0f));
    CHECK_NEAR(zg_tensor_item(y), 24.0, 0);
    CHECK_OK(zg_backward(y, NULL));
    CHECK_NEAR(zg_tensor_item(zg_tensor_grad(x)), 11.0, 0);
    zg_tensor_free(x);
}

TEST(mul_saves_only_the_operand_the_other_gradient_needs) {
    /* y = x * w with w constant: the backward reads w, not x, so writing
     * into x after the forward is harmless (as in PyTorch) while writing
     * into w is caught. */
    int64_t s[1] = {2};
    zg_tensor *x = zgt_param_from((float[]){1, 2}, s, 1);
    zg_tensor *w = zgt_from((float[]){3, 4}, s, 1);
    zg_tensor *y = zg_sum(zg_mul(x, w));
    zg_no_grad_enter();
    CHECK_OK(zg_tensor_fill_(x, 7.0f));
    zg_no_grad_exit();
    CHECK_OK(zg_backward(y, NULL));
    CHECK_VALUES(zg_tensor_grad(x), ((float[]){3, 4}), 2, 0);
    zg_tensor *y2 = zg_sum(zg_div(x, w));
    CHECK_OK(zg_tensor_fill_(w, 1.0f));
    CHECK_ERR(zg_backward(y2, NULL), "modified in place");
    zg_tensor_free(x);
    zg_tensor_free(w);
}

TEST(grad_fn_names_and_no_grad_mode) {
    int64_t s[1] = {2};
    zg_tensor *x = zgt_param_from((float[]){1, 2}, s, 1);
    CHECK(!strcmp(zg_tensor_grad_fn_name(zg_add(x, x)), "add"));
    CHECK(!strcmp(zg_tensor_grad_fn_name(zg_div(x, x)), "div"));
    CHECK(!strcmp(zg_tensor_grad_fn_name(zg_exp(x)), "exp"));
    zg_no_grad_enter();
    zg_tensor *y = zg_pow(x, x);
    CHECK(y && !zg_tensor_requires_grad(y) && !zg_tensor_grad_fn_name(y));
    zg_no_grad_exit();
    zg_tensor_free(x);
}

/* ---- errors -------------------------------------------------------------------------- */

TEST(binary_ops_reject_bad_input) {
    int64_t s23[2] = {2, 3}, s4[1] = {4}, s2[1] = {2};
    zg_tensor *a = zg_zeros(s23, 2);
    zg_tensor *b = zg_zeros(s4, 1);
    zg_tensor *l = zg_tensor_from_data(ZG_INT64, (int64_t[]){1, 2}, s2, 1);
    struct {
        const char *name;
        binop f;
    } ops[] = {{"zg_add", zg_add}, {"zg_sub", zg_sub}, {"zg_mul", zg_mul}, {"zg_div", zg_div}, {"zg_pow", zg_pow}};
    for (int i = 0; i < N_OF(ops); i++) {
        CHECK_NULL_ERR(ops[i].f(NULL, a), ops[i].name);
        CHECK_NULL_ERR(ops[i].f(a, NULL), ops[i].name);
        CHECK_NULL_ERR(ops[i].f(l, a), "float32");
        CHECK_NULL_ERR(ops[i].f(a, l), ops[i].name);
        CHECK_NULL_ERR(ops[i].f(a, b), ops[i].name);
        CHECK(strstr(zg_last_error(), "[2,3]") && strstr(zg_last_error(), "[4]"));
    }
    /* [4,1,3] vs [2,4]: trailing dims 3 and 4 */
    zg_tensor *c = zg_zeros((int64_t[]){4, 1, 3}, 3);
    zg_tensor *d = zg_zeros((int64_t[]){2, 4}, 2);
    CHECK_NULL_ERR(zg_add(c, d), "zg_add: shapes [4,1,3] and [2,4] cannot be broadcast");
    zg_tensor_free(a);
    zg_tensor_free(b);
    zg_tensor_free(c);
    zg_tensor_free(d);
    zg_tensor_free(l);
}

TEST(unary_ops_reject_bad_input) {
    int64_t s2[1] = {2};
    zg_tensor *l = zg_tensor_from_data(ZG_INT64, (int64_t[]){1, 2}, s2, 1);
    struct {
        const char *name;
        zg_tensor *(*f)(zg_tensor *, float);
    } sops[] = {{"zg_add_scalar", zg_add_scalar}, {"zg_sub_scalar", zg_sub_scalar},
                {"zg_rsub_scalar", zg_rsub_scalar}, {"zg_mul_scalar", zg_mul_scalar},
                {"zg_div_scalar", zg_div_scalar}, {"zg_pow_scalar", zg_pow_scalar}};
    for (int i = 0; i < N_OF(sops); i++) {
        CHECK_NULL_ERR(sops[i].f(NULL, 1.0f), sops[i].name);
        CHECK_NULL_ERR(sops[i].f(l, 1.0f), sops[i].name);
        CHECK(strstr(zg_last_error(), "float32"));
    }
    struct {
        const char *name;
        zg_tensor *(*f)(zg_tensor *);
    } uops[] = {{"zg_neg", zg_neg}, {"zg_exp", zg_exp}, {"zg_log", zg_log}, {"zg_sqrt", zg_sqrt}};
    for (int i = 0; i < N_OF(uops); i++) {
        CHECK_NULL_ERR(uops[i].f(NULL), uops[i].name);
        CHECK_NULL_ERR(uops[i].f(l), uops[i].name);
    }
    zg_tensor_free(l);
}

TEST(empty_tensors_broadcast_and_backward) {
    int64_t s03[2] = {0, 3}, s3[1] = {3};
    zg_tensor *a = zg_zeros(s03, 2);
    zg_tensor *b = zg_ones(s3, 1);
    zg_tensor_set_requires_grad(a, true);
    zg_tensor_set_requires_grad(b, true);
    zg_tensor *y = zg_mul(a, b);
    CHECK(shape_is(y, s03, 2));
    CHECK_OK(zg_backward(zg_sum(y), NULL));
    /* b was used zero times: its gradient is zeros of its shape. */
    CHECK_VALUES(zg_tensor_grad(b), ((float[]){0, 0, 0}), 3, 0);
    CHECK(zg_tensor_numel(zg_tensor_grad(a)) == 0);
    zg_tensor_free(a);
    zg_tensor_free(b);
}
