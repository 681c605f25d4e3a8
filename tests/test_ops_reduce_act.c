/* Reductions (sum, mean, sum_dim, mean_dim, max_dim) and activations
 * (relu, leaky_relu, gelu, tanh, sigmoid): forward values and gradients
 * against numbers computed with torch 1.13, finite-difference gradient
 * checks, and the errors of each entry point. */
#include "harness.h"

#include <stdlib.h>

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* x = 2 sin(0.37 i - 3.1), i = 0..23, as a [2,3,4] tensor (the torch
 * reference used the same formula in float32). */
static const float X[24] = {-0.083161518f, -0.80013895f, -1.4088217f,   -1.82682681f, -1.99757946f, -1.89796913f,
                            -1.54147756f,  -0.976354063f, -0.279085964f, 0.455955088f, 1.12928522f,  1.64977169f,
                            1.94696915f,   1.98065364f,   1.74626553f,   1.27552891f,  0.632155597f, -0.0967769995f,
                            -0.812611282f, -1.41846323f,  -1.83233202f,  -1.9982034f,  -1.89362729f, -1.53275764f};
static const int64_t XS[3] = {2, 3, 4};

static bool shape_is(const zg_tensor *t, const int64_t *shape, int nd) {
    if (!t || zg_tensor_ndim(t) != nd) return false;
    for (int i = 0; i < nd; i++)
        if (zg_tensor_shape(t)[i] != shape[i]) return false;
    return true;
}

/* ---- reductions: values ------------------------------------------------------ */

TEST(sum_and_mean_match_torch) {
    zg_tensor *x = zgt_from(X, XS, 3);
    zg_tensor *s = zg_sum(x), *m = zg_mean(x);
    CHECK(s && zg_tensor_ndim(s) == 0 && m && zg_tensor_ndim(m) == 0);
    CHECK_NEAR(zg_tensor_item(s), -9.57960129, 2e-6);
    CHECK_NEAR(zg_tensor_item(m), -0.399150044, 1e-7);
    zg_tensor *z = zg_scalar(4.5f);
    CHECK_NEAR(zg_tensor_item(zg_sum(z)), 4.5, 0);
    CHECK_NEAR(zg_tensor_item(zg_mean(z)), 4.5, 0);
    zg_tensor_free(x);
    zg_tensor_free(z);
}

TEST(sum_of_many_elements_stays_accurate) {
    /* 4M times 0.1f: a float running sum would be off by percents. */
    int64_t n = (int64_t)1 << 22;
    zg_tensor *x = zg_full(&n, 1, 0.1f);
    double expect = (double)n * (double)0.1f;
    CHECK_NEAR(zg_tensor_item(zg_sum(x)), expect, expect * 1e-7);
    CHECK_NEAR(zg_tensor_item(zg_mean(x)), (double)0.1f, 1e-8);
    /* The same along a dim, both with contiguous rows and strided columns. */
    int64_t s[2] = {n / 2, 2};
    zg_tensor *y = zg_full(s, 2, 0.1f);
    zg_tensor *c = zg_sum_dim(y, 0, false);
    CHECK_NEAR(zg_tensor_get(c, 0), expect / 2, expect * 1e-7);
    int64_t s2[2] = {2, n / 2};
    zg_tensor *t = zg_full(s2, 2, 0.1f);
    zg_tensor *r = zg_sum_dim(t, 1, false);
    CHECK_NEAR(zg_tensor_get(r, 1), expect / 2, expect * 1e-7);
    zg_tensor_free(t);
    zg_tensor_free(x);
    zg_tensor_free(y);
}

TEST(sum_dim_and_mean_dim_match_torch) {
    zg_tensor *x = zgt_from(X, XS, 3);
    const float sum0[12] = {1.86380768f,  1.18051469f,  0.337443829f, -0.551297903f, -1.36542392f, -1.99474609f,
                            -2.35408878f, -2.39481735f, -2.11141801f, -1.54224825f,  -0.76434207f, 0.11701405f};
    const float mean0[12] = {0.931903839f, 0.590257347f, 0.168721914f, -0.275648952f, -0.682711959f, -0.997373044f,
                             -1.17704439f, -1.19740868f, -1.055709f,   -0.771124125f, -0.382171035f, 0.0585070252f};
    const float sum1[8] = {-2.3598268f,  -2.24215317f,  -1.82101405f,  -1.15340924f,
                           0.746792674f, -0.114326715f, -0.959973037f, -1.67569196f};
    const float mean1[8] = {-0.786608934f, -0.747384369f,  -0.607004702f, -0.384469748f,
                            0.248930886f,  -0.0381089039f, -0.319991022f, -0.558564007f};
    const float sum2[6] = {-4.11894894f, -6.41338015f, 2.95592594f, 6.94941711f, -1.69569588f, -7.25692034f};
    const float mean2[6] = {-1.02973723f, -1.60334504f, 0.738981485f, 1.73735428f, -0.423923969f, -1.81423008f};

    zg_tensor *y = zg_sum_dim(x, 0, false);
    CHECK(shape_is(y, (int64_t[]){3, 4}, 2));
    CHECK_VALUES(y, sum0, 12, 1e-6);
    y = zg_sum_dim(x, 0, true);
    CHECK(shape_is(y, (int64_t[]){1, 3, 4}, 3));
    CHECK_VALUES(y, sum0, 12, 1e-6);
    CHECK_VALUES(zg_mean_dim(x, -3, false), mean0, 12, 1e-6);

    y = zg_sum_dim(x, 1, true);
    CHECK(shape_is(y, (int64_t[]){2, 1, 4}, 3));
    CHECK_VALUES(y, sum1, 8, 1e-6);
    y = zg_mean_dim(x, -2, false);
    CHECK(shape_is(y, (int64_t[]){2, 4}, 2));
    CHECK_VALUES(y, mean1, 8, 1e-6);

    y = zg_sum_dim(x, -1, false);
    CHECK(shape_is(y, (int64_t[]){2, 3}, 2));
    CHECK_VALUES(y, sum2, 6, 1e-6);
    y = zg_mean_dim(x, 2, true);
    CHECK(shape_is(y, (int64_t[]){2, 3, 1}, 3));
    CHECK_VALUES(y, mean2, 6, 1e-6);

    /* A 0-dim tensor reduces to itself over dim 0 or -1. */
    zg_tensor *z = zg_scalar(2.0f);
    y = zg_mean_dim(z, -1, true);
    CHECK(y && zg_tensor_ndim(y) == 0 && zg_tensor_item(y) == 2.0f);
    CHECK_PTR(zg_sum_dim(z, 0, false));
    CHECK_NULL_ERR(zg_sum_dim(z, 1, false), "zg_sum_dim: dim 1 out of range for a 0-dim tensor");
    zg_tensor_free(x);
    zg_tensor_free(z);
}

TEST(max_dim_matches_torch_values_and_indices) {
    zg_tensor *x = zgt_from(X, XS, 3);
    zg_tensor *idx = NULL;
    zg_tensor *v = zg_max_dim(x, 0, false, &idx);
    CHECK(shape_is(v, (int64_t[]){3, 4}, 2) && shape_is(idx, (int64_t[]){3, 4}, 2));
    CHECK_VALUES(v,
                 ((float[]){1.94696915f, 1.98065364f, 1.74626553f, 1.27552891f, 0.632155597f, -0.0967769995f,
                            -0.812611282f, -0.976354063f, -0.279085964f, 0.455955088f, 1.12928522f, 1.64977169f}),
                 12, 0);
    CHECK(idx && zg_tensor_dtype(idx) == ZG_INT64);
    CHECK_VALUES(idx, ((float[]){1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0}), 12, 0);
    v = zg_max_dim(x, 1, true, &idx);
    CHECK(shape_is(v, (int64_t[]){2, 1, 4}, 3) && shape_is(idx, (int64_t[]){2, 1, 4}, 3));
    CHECK_VALUES(v,
                 ((float[]){-0.083161518f, 0.455955088f, 1.12928522f, 1.64977169f, 1.94696915f, 1.98065364f,
                            1.74626553f, 1.27552891f}),
                 8, 0);
    CHECK_VALUES(idx, ((float[]){0, 2, 2, 2, 0, 0, 0, 0}), 8, 0);
    v = zg_max_dim(x, -1, false, &idx);
    CHECK_VALUES(v,
                 ((float[]){-0.083161518f, -0.976354063f, 1.64977169f, 1.98065364f, 0.632155597f, -1.53275764f}),
                 6, 0);
    CHECK_VALUES(idx, ((float[]){0, 3, 3, 1, 0, 3}), 6, 0);
    /* indices are optional */
    CHECK_PTR(zg_max_dim(x, 2, false, NULL));
    zg_tensor_free(x);
}

TEST(max_dim_ties_take_the_first_index_and_its_gradient) {
    int64_t s24[2] = {2, 4}, s32[2] = {3, 2};
    zg_tensor *t = zgt_param_from((float[]){1, 3, 3, 2, 5, 5, -1, 5}, s24, 2);
    zg_tensor *idx = NULL;
    zg_tensor *v = zg_max_dim(t, 1, false, &idx);
    CHECK_VALUES(v, ((float[]){3, 5}), 2, 0);
    CHECK_VALUES(idx, ((float[]){1, 0}), 2, 0);
    CHECK_OK(zg_backward(zg_sum(v), NULL));
    CHECK_VALUES(zg_tensor_grad(t), ((float[]){0, 1, 0, 0, 1, 0, 0, 0}), 8, 0);
    zg_tensor *t2 = zgt_param_from((float[]){1, 3, 3, 2, 3, 7}, s32, 2);
    v = zg_max_dim(t2, 0, false, &idx);
    CHECK_VALUES(v, ((float[]){3, 7}), 2, 0);
    CHECK_VALUES(idx, ((float[]){1, 2}), 2, 0);
    CHECK_OK(zg_backward(zg_sum(v), NULL));
    CHECK_VALUES(zg_tensor_grad(t2), ((float[]){0, 0, 1, 0, 0, 1}), 6, 0);
    /* NaN wins, as torch.max propagates it. */
    zg_tensor *n = zgt_from((float[]){1, NAN, 9, 2}, (int64_t[]){4}, 1);
    v = zg_max_dim(n, 0, false, &idx);
    CHECK(v && isnan(zg_tensor_item(v)) && zg_tensor_data_i64(idx)[0] == 1);
    zg_tensor_free(t);
    zg_tensor_free(t2);
    zg_tensor_free(n);
}

TEST(reduction_gradients_have_the_input_shape) {
    zg_tensor *x = zgt_param_from(X, XS, 3);
    int64_t s34[2] = {3, 4};
    float w[12];
    for (int i = 0; i < 12; i++) w[i] = (float)(i + 1);
    zg_tensor *wt = zgt_from(w, s34, 2);
    /* d/dx of sum over dim 0 with upstream w: every slice gets w. */
    CHECK_OK(zg_backward(zg_sum_dim(x, 0, false), &(zg_backward_opts){.grad = wt}));
    zg_tensor *g = zg_tensor_grad(x);
    CHECK(shape_is(g, XS, 3));
    for (int i = 0; i < 24; i++) CHECK_NEAR(zg_tensor_get(g, i), w[i % 12], 0);
    zg_tensor_zero_grad(x, true);
    CHECK_OK(zg_backward(zg_mean(x), NULL));
    for (int i = 0; i < 24; i++) CHECK_NEAR(zg_tensor_get(zg_tensor_grad(x), i), 1.0f / 24.0f, 0);
    zg_tensor_zero_grad(x, true);
    /* mean over dim 2 (size 4), keepdim: each element gets g / 4 */
    zg_tensor *gm = zg_full((int64_t[]){2, 3, 1}, 3, 2.0f);
    CHECK_OK(zg_backward(zg_mean_dim(x, 2, true), &(zg_backward_opts){.grad = gm}));
    for (int i = 0; i < 24; i++) CHECK_NEAR(zg_tensor_get(zg_tensor_grad(x), i), 0.5, 0);
    zg_tensor_free(x);
    zg_tensor_free(wt);
    zg_tensor_free(gm);
}

TEST(sum_and_reduce_dims_save_nothing) {
    zg_tensor *x = zgt_param_from(X, XS, 3);
    zg_tensor *y = zg_sum(zg_mean_dim(zg_sum_dim(x, 1, true), 0, false));
    CHECK_OK(zg_backward(y, NULL));
    CHECK_OK(zg_backward(y, NULL));
    for (int i = 0; i < 24; i++) CHECK_NEAR(zg_tensor_get(zg_tensor_grad(x), i), 1.0, 0); /* 2 * 1/2 */
    /* max_dim saves its indices: a second backward needs retain_graph */
    zg_tensor *m = zg_sum(zg_max_dim(x, 0, false, NULL));
    CHECK_OK(zg_backward(m, NULL));
    CHECK_ERR(zg_backward(m, NULL), "second time");
    zg_tensor_free(x);
}

/* ---- reductions: gradient checks -------------------------------------------------- */

typedef struct {
    int which; /* 0 sum, 1 mean, 2 sum_dim, 3 mean_dim, 4 max_dim */
    int dim;
    bool keepdim;
} red_ctx;

static zg_tensor *call_red(zg_tensor *const *in, void *ctx) {
    red_ctx *c = ctx;
    switch (c->which) {
    case 0: return zg_sum(in[0]);
    case 1: return zg_mean(in[0]);
    case 2: return zg_sum_dim(in[0], c->dim, c->keepdim);
    case 3: return zg_mean_dim(in[0], c->dim, c->keepdim);
    default: return zg_max_dim(in[0], c->dim, c->keepdim, NULL);
    }
}

TEST(gradcheck_reductions) {
    /* Distinct values at least 0.05 apart, so that max_dim's argmax does
     * not move under the finite-difference step. */
    zg_tensor *x = zgt_param_from(X, XS, 3);
    for (int which = 0; which < 5; which++)
        for (int dim = -3; dim < 3; dim++)
            for (int kd = 0; kd < 2; kd++) {
                if (which < 2 && (dim != 0 || kd)) continue;
                red_ctx c = {which, dim, kd};
                char name[64];
                snprintf(name, sizeof name, "reduction %d dim %d keepdim %d", which, dim, kd);
                GRADCHECK(name, call_red, &x, 1, &c, NULL);
            }
    zg_tensor *z = zg_scalar(0.7f);
    zg_tensor_set_requires_grad(z, true);
    for (int which = 0; which < 5; which++) {
        red_ctx c = {which, -1, false};
        GRADCHECK("0-dim reduction", call_red, &z, 1, &c, NULL);
    }
    zg_tensor_free(x);
    zg_tensor_free(z);
}

TEST(reductions_reject_bad_input) {
    int64_t s2[1] = {2};
    zg_tensor *l = zg_tensor_from_data(ZG_INT64, (int64_t[]){1, 2}, s2, 1);
    zg_tensor *x = zgt_from(X, XS, 3);
    CHECK_NULL_ERR(zg_sum(NULL), "zg_sum");
    CHECK_NULL_ERR(zg_sum(l), "zg_sum: input must be float32");
    CHECK_NULL_ERR(zg_mean(NULL), "zg_mean");
    CHECK_NULL_ERR(zg_mean(l), "zg_mean");
    CHECK_NULL_ERR(zg_sum_dim(NULL, 0, false), "zg_sum_dim");
    CHECK_NULL_ERR(zg_sum_dim(l, 0, false), "zg_sum_dim");
    CHECK_NULL_ERR(zg_sum_dim(x, 3, false), "zg_sum_dim: dim 3 out of range");
    CHECK_NULL_ERR(zg_sum_dim(x, -4, true), "zg_sum_dim");
    CHECK_NULL_ERR(zg_mean_dim(NULL, 0, false), "zg_mean_dim");
    CHECK_NULL_ERR(zg_mean_dim(l, 0, false), "zg_mean_dim");
    CHECK_NULL_ERR(zg_mean_dim(x, 5, false), "zg_mean_dim");
    zg_tensor *idx = x; /* must be reset to NULL on failure */
    CHECK_NULL_ERR(zg_max_dim(NULL, 0, false, &idx), "zg_max_dim");
    CHECK(idx == NULL);
    CHECK_NULL_ERR(zg_max_dim(l, 0, false, NULL), "zg_max_dim");
    CHECK_NULL_ERR(zg_max_dim(x, -4, false, NULL), "zg_max_dim");
    zg_tensor *e = zg_zeros((int64_t[]){2, 0}, 2);
    CHECK_NULL_ERR(zg_max_dim(e, 1, false, NULL), "zg_max_dim: cannot take the max over dim 1 of size 0");
    /* Sum over an empty dim is 0, as in torch; mean is NaN. */
    CHECK_VALUES(zg_sum_dim(e, 1, false), ((float[]){0, 0}), 2, 0);
    CHECK(isnan(zg_tensor_get(zg_mean_dim(e, 1, false), 0)));
    zg_tensor_free(l);
    zg_tensor_free(x);
    zg_tensor_free(e);
}

/* ---- activations --------------------------------------------------------------------- */

static const float A[8] = {-3, -1.5f, -0.25f, 0, 0.3f, 1.2f, 2.5f, 4};

TEST(activations_match_torch) {
    zg_tensor *a = zgt_from(A, (int64_t[]){8}, 1);
    CHECK_VALUES(zg_relu(a), ((float[]){0, 0, 0, 0, 0.300000012f, 1.20000005f, 2.5f, 4}), 8, 0);
    CHECK_VALUES(zg_leaky_relu(a, 0.1f),
                 ((float[]){-0.300000012f, -0.150000006f, -0.0250000004f, 0, 0.300000012f, 1.20000005f, 2.5f, 4}), 8,
                 0);
    CHECK_VALUES(zg_gelu(a, false),
                 ((float[]){-0.00404986739f, -0.10021086f, -0.100323431f, 0, 0.185373425f, 1.06191635f, 2.48447585f,
                            3.99987316f}),
                 8, 3e-7);
    CHECK_VALUES(zg_gelu(a, true),
                 ((float[]){-0.00363743305f, -0.100428432f, -0.100324646f, 0, 0.185370937f, 1.06170273f, 2.48491573f,
                            3.9999299f}),
                 8, 3e-7);
    CHECK_VALUES(zg_tanh(a),
                 ((float[]){-0.995054781f, -0.905148268f, -0.244918659f, 0, 0.291312635f, 0.833654642f, 0.986614287f,
                            0.999329329f}),
                 8, 1e-7);
    CHECK_VALUES(zg_sigmoid(a),
                 ((float[]){0.0474258736f, 0.182425529f, 0.437823504f, 0.5f, 0.574442506f, 0.768524826f, 0.924141824f,
                            0.982013762f}),
                 8, 1e-7);
    zg_tensor_free(a);
}

TEST(activation_gradients_match_torch) {
    zg_tensor *a = zgt_param_from(A, (int64_t[]){8}, 1);
    struct {
        const char *name;
        int op;
        float expect[8];
        double tol;
    } cases[] = {
        {"relu", 0, {0, 0, 0, 0, 1, 1, 1, 1}, 0},
        {"leaky", 1, {0.1f, 0.1f, 0.1f, 0.1f, 1, 1, 1, 1}, 0},
        {"gelu",
         2,
         {-0.0119456053f, -0.127469152f, 0.304626703f, 0.5f, 0.732327759f, 1.11795354f, 1.03761101f, 1.00050366f},
         5e-7},
        {"gelu_tanh",
         3,
         {-0.0115842968f, -0.127710819f, 0.304645896f, 0.5f, 0.732295513f, 1.11772609f, 1.03795171f, 1.00033498f},
         5e-7},
        {"tanh",
         4,
         {0.00986598153f, 0.18070662f, 0.940014839f, 1, 0.915136933f, 0.305019945f, 0.0265922491f, 0.0013408931f},
         2e-7},
        {"sigmoid",
         5,
         {0.0451766588f, 0.149146467f, 0.246134073f, 0.25f, 0.244458318f, 0.177894413f, 0.0701037124f, 0.0176627338f},
         2e-7},
    };
    for (int c = 0; c < N_OF(cases); c++) {
        zg_tensor_zero_grad(a, true);
        zg_tensor *y = NULL;
        switch (cases[c].op) {
        case 0: y = zg_relu(a); break;
        case 1: y = zg_leaky_relu(a, 0.1f); break;
        case 2: y = zg_gelu(a, false); break;
        case 3: y = zg_gelu(a, true); break;
        case 4: y = zg_tanh(a); break;
        default: y = zg_sigmoid(a); break;
        }
        CHECK_OK(zg_backward(zg_sum(y), NULL));
        CHECK_VALUES(zg_tensor_grad(a), cases[c].expect, 8, cases[c].tol);
        if (zgt_case_failures()) fprintf(stderr, "    (in case %s)\n", cases[c].name);
    }
    zg_tensor_free(a);
}

TEST(sigmoid_and_tanh_are_stable_at_extremes) {
    zg_tensor *a = zgt_param_from((float[]){-100, -30, 30, 100, -88.5f, 88.5f, -1e30f, 1e30f}, (int64_t[]){8}, 1);
    zg_tensor *s = zg_sigmoid(a);
    CHECK_VALUES(s, ((float[]){0, 9.35762359e-14f, 1, 1, 3.67230161e-39f, 1, 0, 1}), 8, 1e-20);
    zg_tensor *t = zg_tanh(a);
    CHECK_VALUES(t, ((float[]){-1, -1, 1, 1, -1, 1, -1, 1}), 8, 0);
    CHECK_OK(zg_backward(zg_sum(zg_add(s, t)), NULL));
    for (int i = 0; i < 8; i++) {
        float g = zg_tensor_get(zg_tensor_grad(a), i);
        CHECK(isfinite(g) && g >= 0 && g < 1e-12f);
    }
    zg_tensor_free(a);
}

TEST(relu_gradient_is_zero_at_zero) {
    zg_tensor *a = zgt_param_from((float[]){0, -0.0f, 1e-30f, -1e-30f}, (int64_t[]){4}, 1);
    CHECK_OK(zg_backward(zg_sum(zg_relu(a)), NULL));
    CHECK_VALUES(zg_tensor_grad(a), ((float[]){0, 0, 1, 0}), 4, 0);
    zg_tensor_free(a);
}

typedef struct {
    int op;
    float slope;
} act_ctx;

static zg_tensor *call_act(zg_tensor *const *in, void *ctx) {
    act_ctx *c = ctx;
    switch (c->op) {
    case 0: return zg_relu(in[0]);
    case 1: return zg_leaky_relu(in[0], c->slope);
    case 2: return zg_gelu(in[0], false);
    case 3: return zg_gelu(in[0], true);
    case 4: return zg_tanh(in[0]);
    default: return zg_sigmoid(in[0]);
    }
}

TEST(gradcheck_activations) {
    /* Values away from 0 (relu / leaky_relu kinks), both signs. */
    float v[12] = {-2.5f, -1.7f, -0.9f, -0.4f, -0.1f, 0.1f, 0.35f, 0.8f, 1.3f, 1.9f, 2.6f, 3.1f};
    zg_tensor *x = zgt_param_from(v, (int64_t[]){3, 4}, 2);
    act_ctx cs[] = {{0, 0}, {1, 0.01f}, {1, 0.2f}, {1, -0.5f}, {2, 0}, {3, 0}, {4, 0}, {5, 0}};
    for (int i = 0; i < N_OF(cs); i++) {
        char name[48];
        snprintf(name, sizeof name, "activation %d slope %g", cs[i].op, (double)cs[i].slope);
        GRADCHECK(name, call_act, &x, 1, &cs[i], NULL);
    }
    zg_tensor_free(x);
}

TEST(activations_reject_bad_input) {
    zg_tensor *l = zg_tensor_from_data(ZG_INT64, (int64_t[]){1, 2}, (int64_t[]){2}, 1);
    CHECK_NULL_ERR(zg_relu(NULL), "zg_relu");
    CHECK_NULL_ERR(zg_relu(l), "zg_relu: input must be float32");
    CHECK_NULL_ERR(zg_leaky_relu(NULL, 0.1f), "zg_leaky_relu");
    CHECK_NULL_ERR(zg_leaky_relu(l, 0.1f), "zg_leaky_relu");
    CHECK_NULL_ERR(zg_gelu(NULL, false), "zg_gelu");
    CHECK_NULL_ERR(zg_gelu(l, true), "zg_gelu");
    CHECK_NULL_ERR(zg_tanh(NULL), "zg_tanh");
    CHECK_NULL_ERR(zg_tanh(l), "zg_tanh");
    CHECK_NULL_ERR(zg_sigmoid(NULL), "zg_sigmoid");
    CHECK_NULL_ERR(zg_sigmoid(l), "zg_sigmoid");
    zg_tensor_free(l);
}

TEST(activation_saved_tensors_and_names) {
    zg_tensor *x = zgt_param_from((float[]){-1, 2}, (int64_t[]){2}, 1);
    CHECK(!strcmp(zg_tensor_grad_fn_name(zg_relu(x)), "relu"));
    CHECK(!strcmp(zg_tensor_grad_fn_name(zg_gelu(x, true)), "gelu"));
    /* leaky_relu reads its input in backward: changing it is caught. */
    zg_tensor *y = zg_sum(zg_leaky_relu(x, 0.1f));
    zg_no_grad_enter();
    CHECK_OK(zg_tensor_fill_(x, 1.0f));
    zg_no_grad_exit();
    CHECK_ERR(zg_backward(y, NULL), "modified in place");
    zg_tensor_free(x);
}
