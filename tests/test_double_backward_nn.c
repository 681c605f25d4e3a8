/* Higher-order gradients through the network ops (convolution,
 * normalisation, softmax, losses, pooling, dropout, embedding): a
 * second-order gradient check per op and option (GRADGRADCHECK, see
 * harness.h), as tests/test_double_backward.c does for the element-wise
 * ops, products, activations and reductions. */
#include "harness.h"

#include <stdlib.h>

/* ---- conv2d ------------------------------------------------------------------ */

typedef struct {
    int stride[2], padding[2], dilation[2], groups;
    bool bias;
} conv_case;

static zg_tensor *call_conv(zg_tensor *const *in, void *ctx) {
    const conv_case *c = ctx;
    return zg_conv2d(in[0], in[1], c->bias ? in[2] : NULL, c->stride, c->padding, c->dilation, c->groups);
}

TEST(gradgradcheck_conv2d) {
    /* plain; stride 2 with padding (an input row the windows skip); dilation;
     * groups; no bias; a width that takes the padded-width layout */
    const conv_case cases[] = {{{1, 1}, {0, 0}, {1, 1}, 1, true}, {{2, 2}, {1, 1}, {1, 1}, 1, true},
                               {{1, 2}, {1, 0}, {2, 1}, 1, true}, {{1, 1}, {1, 1}, {1, 1}, 2, true},
                               {{2, 1}, {0, 1}, {1, 1}, 1, false}};
    const int64_t xs[][4] = {{2, 2, 5, 4}, {2, 2, 6, 5}, {1, 2, 6, 5}, {2, 4, 4, 4}, {2, 3, 5, 11}};
    const int64_t ws[][4] = {{3, 2, 3, 2}, {3, 2, 3, 3}, {2, 2, 2, 3}, {4, 2, 3, 3}, {2, 3, 3, 3}};
    for (int k = 0; k < 5; k++) {
        zg_tensor *in[3] = {zgt_param_uniform(xs[k], 4, -1, 1), zgt_param_uniform(ws[k], 4, -1, 1),
                            zgt_param_uniform((int64_t[]){ws[k][0]}, 1, -1, 1)};
        char name[32];
        snprintf(name, sizeof name, "conv2d case %d", k);
        GRADGRADCHECK(name, call_conv, in, cases[k].bias ? 3 : 2, (void *)&cases[k]);
        /* the input alone, as a gradient penalty takes it */
        zg_tensor_set_requires_grad(in[1], false);
        zg_tensor_set_requires_grad(in[2], false);
        snprintf(name, sizeof name, "conv2d case %d, constant weight", k);
        GRADGRADCHECK(name, call_conv, in, cases[k].bias ? 3 : 2, (void *)&cases[k]);
        zgt_free_all(in, 3);
    }
}

/* A nonlinearity after the convolution, so that the second derivative
 * runs through conv2d's gradient ops themselves (their gradients are
 * convolutions again), and a third-order gradient through them. */
static zg_tensor *call_conv_tanh(zg_tensor *const *in, void *ctx) { return zg_tanh(call_conv(in, ctx)); }

TEST(gradgradcheck_conv2d_between_nonlinear_ops) {
    const conv_case c = {{2, 1}, {1, 1}, {1, 1}, 1, true};
    zg_tensor *in[3] = {zgt_param_uniform((int64_t[]){2, 2, 5, 4}, 4, -1, 1),
                        zgt_param_uniform((int64_t[]){3, 2, 3, 3}, 4, -0.5f, 0.5f),
                        zgt_param_uniform((int64_t[]){3}, 1, -1, 1)};
    GRADGRADCHECK("conv2d then tanh", call_conv_tanh, in, 3, (void *)&c);
    zgt_free_all(in, 3);
}

/* ---- softmax, log_softmax ------------------------------------------------------- */

typedef struct {
    bool log;
    int dim;
} softmax_case;

static zg_tensor *call_softmax(zg_tensor *const *in, void *ctx) {
    const softmax_case *c = ctx;
    return c->log ? zg_log_softmax(in[0], c->dim) : zg_softmax(in[0], c->dim);
}

TEST(gradgradcheck_softmax_and_log_softmax) {
    zg_tensor *x = zgt_param_uniform((int64_t[]){2, 3, 4}, 3, -2, 2);
    for (int log = 0; log < 2; log++)
        for (int dim = -1; dim < 3; dim++) {
            softmax_case c = {log, dim};
            char name[48];
            snprintf(name, sizeof name, "%s dim %d", log ? "log_softmax" : "softmax", dim);
            GRADGRADCHECK(name, call_softmax, &x, 1, &c);
        }
    zg_tensor_free(x);
}

/* ---- layer_norm ------------------------------------------------------------------ */

typedef struct {
    int k;
    bool weight, bias;
} ln_case;

static zg_tensor *call_layer_norm(zg_tensor *const *in, void *ctx) {
    const ln_case *c = ctx;
    const int64_t *s = zg_tensor_shape(in[0]);
    const int nd = zg_tensor_ndim(in[0]);
    return zg_layer_norm(in[0], s + nd - c->k, c->k, c->weight ? in[1] : NULL, c->bias ? in[2] : NULL, 1e-5f);
}

TEST(gradgradcheck_layer_norm) {
    /* over the last dim and the last two; affine, weight only, none */
    const ln_case cases[] = {{1, true, true}, {2, true, true}, {1, true, false}, {1, false, false}};
    for (int k = 0; k < 4; k++) {
        const int64_t xs[3] = {2, 3, 4};
        zg_tensor *in[3] = {zgt_param_uniform(xs, 3, -2, 2), zgt_param_uniform(xs + 3 - cases[k].k, cases[k].k, 0.5f, 1.5f),
                            zgt_param_uniform(xs + 3 - cases[k].k, cases[k].k, -1, 1)};
        const int n = cases[k].bias ? 3 : cases[k].weight ? 2 : 1;
        char name[48];
        snprintf(name, sizeof name, "layer_norm case %d", k);
        GRADGRADCHECK(name, call_layer_norm, in, n, (void *)&cases[k]);
        zgt_free_all(in, 3);
    }
}

/* ---- batch_norm ------------------------------------------------------------------ */

typedef struct {
    bool training, affine;
} bn_case;

/* Fresh running statistics per call: the forward moves them in training. */
static zg_tensor *call_batch_norm(zg_tensor *const *in, void *ctx) {
    const bn_case *c = ctx;
    const int64_t C = zg_tensor_shape(in[0])[1];
    zg_tensor *rm = zg_full(&C, 1, 0.1f), *rv = zg_full(&C, 1, 1.3f);
    zg_tensor *y = zg_batch_norm(in[0], rm, rv, c->affine ? in[1] : NULL, c->affine ? in[2] : NULL, c->training,
                                 0.1f, 1e-5f);
    zg_tensor_free(rm);
    zg_tensor_free(rv);
    return y;
}

TEST(gradgradcheck_batch_norm) {
    /* [N, C] (1d) and [N, C, H, W] (2d); training with and without affine; eval */
    const bn_case cases[] = {{true, true}, {true, false}, {false, true}};
    const int64_t shapes[][4] = {{5, 3}, {2, 3, 2, 3}};
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < 3; k++) {
            const int64_t C = 3;
            zg_tensor *in[3] = {zgt_param_uniform(shapes[s], s ? 4 : 2, -2, 2), zgt_param_uniform(&C, 1, 0.5f, 1.5f),
                                zgt_param_uniform(&C, 1, -1, 1)};
            char name[48];
            snprintf(name, sizeof name, "batch_norm %dd case %d", s + 1, k);
            GRADGRADCHECK(name, call_batch_norm, in, cases[k].affine ? 3 : 1, (void *)&cases[k]);
            zgt_free_all(in, 3);
        }
}

/* ---- losses ---------------------------------------------------------------------- */

typedef struct {
    const zg_tensor *target;
    zg_loss_opts o;
    bool nll;
} class_case;

static zg_tensor *call_class_loss(zg_tensor *const *in, void *ctx) {
    const class_case *c = ctx;
    return c->nll ? zg_nll_loss(in[0], c->target, &c->o) : zg_cross_entropy(in[0], c->target, &c->o);
}

TEST(gradgradcheck_cross_entropy_and_nll_loss) {
    /* [N, C]: plain mean, sum; class weights with an ignored row (mean over the
     * weights); label smoothing with weights; none. [N, C, d1, d2] with
     * targets [N, d1, d2]; [C] with a 0-dim target. */
    const int64_t t2[4] = {1, 4, 0, 2}, t4[2 * 2 * 3] = {0, 2, 1, 1, -100, 2, 2, 0, 1, 0, 1, 2}, t0 = 3;
    zg_tensor *tg2 = zg_tensor_from_data(ZG_INT64, t2, (int64_t[]){4}, 1);
    zg_tensor *tg4 = zg_tensor_from_data(ZG_INT64, t4, (int64_t[]){2, 2, 3}, 3);
    zg_tensor *tg0 = zg_tensor_from_data(ZG_INT64, &t0, NULL, 0);
    zg_tensor *w5 = zg_tensor_from_data(ZG_FLOAT32, (float[]){0.5f, 1.5f, 1.0f, 2.0f, 0.25f}, (int64_t[]){5}, 1);
    zg_tensor *w3 = zg_tensor_from_data(ZG_FLOAT32, (float[]){0.7f, 1.2f, 2.0f}, (int64_t[]){3}, 1);
    const zg_loss_opts mean = ZG_LOSS_DEFAULTS;
    const zg_loss_opts sum = {ZG_REDUCTION_SUM, -100, 0.0f, NULL}, none = {ZG_REDUCTION_NONE, -100, 0.0f, NULL};
    const zg_loss_opts wig = {ZG_REDUCTION_MEAN, 4, 0.0f, w5}, smooth = {ZG_REDUCTION_MEAN, -100, 0.2f, w5};
    const zg_loss_opts seg = {ZG_REDUCTION_MEAN, -100, 0.1f, w3};
    const struct {
        class_case c;
        int64_t shape[4];
        int nd;
    } cases[] = {{{tg2, mean, false}, {4, 5}, 2},  {{tg2, sum, false}, {4, 5}, 2},    {{tg2, wig, false}, {4, 5}, 2},
                 {{tg2, smooth, false}, {4, 5}, 2}, {{tg2, none, false}, {4, 5}, 2},  {{tg4, seg, false}, {2, 3, 2, 3}, 4},
                 {{tg4, none, false}, {2, 3, 2, 3}, 4}, {{tg0, mean, false}, {5}, 1}, {{tg2, wig, true}, {4, 5}, 2},
                 {{tg4, none, true}, {2, 3, 2, 3}, 4},  {{tg0, sum, true}, {5}, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        zg_tensor *x = zgt_param_uniform(cases[k].shape, cases[k].nd, -2, 2);
        char name[48];
        snprintf(name, sizeof name, "%s case %zu", cases[k].c.nll ? "nll_loss" : "cross_entropy", k);
        GRADGRADCHECK(name, call_class_loss, &x, 1, (void *)&cases[k].c);
        zg_tensor_free(x);
    }
    zg_tensor *all[] = {tg2, tg4, tg0, w5, w3};
    zgt_free_all(all, 5);
}

typedef struct {
    zg_reduction r;
    const zg_tensor *pos_weight;
    bool bce;
} elem_loss_case;

static zg_tensor *call_elem_loss(zg_tensor *const *in, void *ctx) {
    const elem_loss_case *c = ctx;
    return c->bce ? zg_bce_with_logits(in[0], in[1], c->r, c->pos_weight) : zg_mse_loss(in[0], in[1], c->r);
}

TEST(gradgradcheck_mse_loss_and_bce_with_logits) {
    /* each reduction; bce with and without pos_weight ([C] and [1]); both
     * inputs differentiated (bce's target in [0, 1] as soft labels) */
    zg_tensor *pw3 = zg_tensor_from_data(ZG_FLOAT32, (float[]){0.5f, 2.0f, 3.0f}, (int64_t[]){3}, 1);
    zg_tensor *pw1 = zg_tensor_from_data(ZG_FLOAT32, (float[]){1.7f}, (int64_t[]){1}, 1);
    const elem_loss_case cases[] = {{ZG_REDUCTION_MEAN, NULL, false}, {ZG_REDUCTION_SUM, NULL, false},
                                    {ZG_REDUCTION_NONE, NULL, false}, {ZG_REDUCTION_MEAN, NULL, true},
                                    {ZG_REDUCTION_SUM, pw3, true},     {ZG_REDUCTION_NONE, pw3, true},
                                    {ZG_REDUCTION_MEAN, pw1, true}};
    const int64_t s[2] = {4, 3};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        zg_tensor *in[2] = {zgt_param_uniform(s, 2, -3, 3), zgt_param_uniform(s, 2, 0, 1)};
        char name[48];
        snprintf(name, sizeof name, "%s case %zu", cases[k].bce ? "bce_with_logits" : "mse_loss", k);
        GRADGRADCHECK(name, call_elem_loss, in, 2, (void *)&cases[k]);
        zgt_free_all(in, 2);
    }
    zg_tensor_free(pw3);
    zg_tensor_free(pw1);
}

/* ---- dropout ----------------------------------------------------------------------- */

/* The same mask at each call: the generator reseeded before the draw. */
static zg_tensor *call_dropout(zg_tensor *const *in, void *ctx) {
    (void)ctx;
    zg_manual_seed(7);
    return zg_dropout(in[0], 0.4f, true);
}

TEST(gradgradcheck_dropout) {
    zg_tensor *x = zgt_param_uniform((int64_t[]){3, 5}, 2, -1, 1);
    GRADGRADCHECK("dropout", call_dropout, &x, 1, NULL);
    zg_tensor_free(x);
}

/* ---- pooling and embedding --------------------------------------------------------- */

typedef struct {
    int kernel[2], stride[2], padding[2];
    zg_pool_opts o;
    bool max;
} pool_case;

static zg_tensor *call_pool(zg_tensor *const *in, void *ctx) {
    const pool_case *c = ctx;
    return c->max ? zg_max_pool2d_ex(in[0], c->kernel, c->stride, c->padding, &c->o)
                  : zg_avg_pool2d_ex(in[0], c->kernel, c->stride, c->padding, &c->o);
}

/* Distinct values 0.05 apart in a scrambled order (n not a multiple of
 * 37): no two in a window within the checks' steps of each other, so
 * every argmax stays put. */
static zg_tensor *spread_param(const int64_t *shape, int nd) {
    zg_tensor *t = zg_zeros(shape, nd);
    const int64_t n = zg_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) zg_tensor_data(t)[i] = 0.05f * (float)((i * 37) % n) - 1.0f;
    return zgt_param(t);
}

TEST(gradgradcheck_max_and_avg_pool2d) {
    /* max: 2x2 stride 2 (the winner-place kernel), 3x3 stride 3 (tiled),
     * 3x3 stride 2 padding 1, ceil_mode; avg: with and without the padding
     * in the divisor, divisor_override, ceil_mode */
    const zg_pool_opts none = {0}, ceil = {.ceil_mode = true}, excl = {.exclude_pad = true};
    const zg_pool_opts div = {.divisor_override = 3};
    const pool_case cases[] = {{{2, 2}, {2, 2}, {0, 0}, none, true}, {{3, 3}, {3, 3}, {0, 0}, none, true},
                               {{3, 3}, {2, 2}, {1, 1}, none, true}, {{2, 3}, {2, 2}, {1, 0}, ceil, true},
                               {{3, 3}, {2, 2}, {1, 1}, none, false}, {{3, 3}, {2, 2}, {1, 1}, excl, false},
                               {{2, 2}, {1, 2}, {0, 1}, div, false},  {{2, 3}, {2, 2}, {1, 0}, ceil, false}};
    const int64_t xs[4] = {2, 2, 6, 7};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        zg_tensor *x = spread_param(xs, 4);
        char name[48];
        snprintf(name, sizeof name, "%s_pool2d case %zu", cases[k].max ? "max" : "avg", k);
        GRADGRADCHECK(name, call_pool, &x, 1, (void *)&cases[k]);
        zg_tensor_free(x);
    }
}

static zg_tensor *call_adaptive(zg_tensor *const *in, void *ctx) {
    const int64_t *out = ctx;
    return out[1] ? zg_adaptive_avg_pool2d(in[0], out) : zg_adaptive_avg_pool1d(in[0], out[0]);
}

TEST(gradgradcheck_adaptive_avg_pool) {
    /* overlapping windows (5 -> 3), more outputs than inputs (4 -> 6); 1d */
    int64_t out2[2] = {3, 6}, out1[2] = {3, 0};
    zg_tensor *x = zgt_param_uniform((int64_t[]){2, 2, 5, 4}, 4, -1, 1);
    GRADGRADCHECK("adaptive_avg_pool2d", call_adaptive, &x, 1, out2);
    zg_tensor_free(x);
    x = zgt_param_uniform((int64_t[]){2, 3, 7}, 3, -1, 1);
    GRADGRADCHECK("adaptive_avg_pool1d", call_adaptive, &x, 1, out1);
    zg_tensor_free(x);
}

typedef struct {
    const zg_tensor *idx;
    int64_t pad;
} emb_case;

/* The lookup squared: the second derivative of the weight then has a
 * part of its own besides the one through v. */
static zg_tensor *call_embedding(zg_tensor *const *in, void *ctx) {
    const emb_case *c = ctx;
    zg_tensor *y = zg_embedding(in[0], c->idx, c->pad);
    return zg_mul(y, y);
}

TEST(gradgradcheck_embedding) {
    /* a row used twice, a padding row (its positions get nothing), none */
    const int64_t ids[2 * 3] = {1, 4, 1, 0, 2, 4};
    zg_tensor *idx = zg_tensor_from_data(ZG_INT64, ids, (int64_t[]){2, 3}, 2);
    const emb_case cases[] = {{idx, 4}, {idx, ZG_NO_PADDING_IDX}};
    for (int k = 0; k < 2; k++) {
        zg_tensor *w = zgt_param_uniform((int64_t[]){5, 3}, 2, -1, 1);
        char name[32];
        snprintf(name, sizeof name, "embedding case %d", k);
        GRADGRADCHECK(name, call_embedding, &w, 1, (void *)&cases[k]);
        zg_tensor_free(w);
    }
    zg_tensor_free(idx);
}

/* ---- Conv2d, MaxPool2d(2) (and ReLU) in a Sequential: one fused op --------------- */

/* The module's own parameters are in[1] and in[2], so the checks'
 * changes to them reach it. */
static zg_tensor *call_conv_pool(zg_tensor *const *in, void *ctx) { return zg_module_forward(ctx, in[0]); }

TEST(gradgradcheck_sequential_conv_max_pool_fused) {
    for (int relu = 0; relu < 2; relu++) {
        zg_manual_seed(3);
        zg_module *l[] = {zg_nn_conv2d(2, 3, 3, 1, 1, 1, 1, true), zg_nn_max_pool2d(2, 2, 0), zg_nn_relu()};
        zg_module *net = zg_nn_sequential(l, relu ? 3 : 2);
        if (!relu) zg_module_free(l[2]);
        zg_tensor *in[3] = {spread_param((int64_t[]){2, 2, 5, 6}, 4)};
        CHECK(zg_module_params(net, in + 1, 2) == 2);
        zg_tensor *y = zg_module_forward(net, in[0]);
        CHECK(y && !strcmp(zg_tensor_grad_fn_name(y), relu ? "conv2d_max_pool2d_relu" : "conv2d_max_pool2d"));
        GRADGRADCHECK(relu ? "conv2d_max_pool2d_relu" : "conv2d_max_pool2d", call_conv_pool, in, 3, net);
        zg_tensor_free(in[0]);
        zg_module_free(net);
        zg_arena_reset();
    }
}

TEST(cross_entropy_logits_changed_in_place_refuse_create_graph) {
    zg_tensor *x = zgt_param_uniform((int64_t[]){2, 3}, 2, -1, 1), *g;
    zg_tensor *t = zg_tensor_from_data(ZG_INT64, (int64_t[]){0, 2}, (int64_t[]){2}, 1);
    zg_tensor *logits = zg_mul_scalar(x, 2.0f), *loss = zg_cross_entropy(logits, t, NULL);
    zg_no_grad_enter();
    CHECK_OK(zg_tensor_mul_scalar_(logits, 3.0f));
    zg_no_grad_exit();
    CHECK_ERR(zg_autograd_grad_opts(&loss, 1, &x, 1, &g, &(zg_grad_opts){.create_graph = true, .retain_graph = true}),
              "needs its logits as they were at the forward");
    /* the plain backward reads the saved log-probabilities only, as torch's */
    CHECK_OK(zg_autograd_grad_opts(&loss, 1, &x, 1, &g, NULL));
    zg_tensor_free(t);
    zg_tensor_free(x);
}

/* ---- selections: tril / triu, masked_fill, narrow, slice, max_dim, cat ----------- */

typedef enum { SEL_TRIL, SEL_TRIU, SEL_FILL, SEL_NARROW, SEL_SLICE, SEL_MAX_DIM, SEL_CAT, SEL_COUNT } sel_kind;

/* The selection squared, so that x has a second derivative of its own. */
static zg_tensor *call_selection(zg_tensor *const *in, void *ctx) {
    static const int64_t mask[4] = {0, 1, 1, 0};
    zg_tensor *m = zg_tensor_from_data(ZG_INT64, mask, (int64_t[]){4}, 1), *y = NULL;
    switch (*(const sel_kind *)ctx) {
    case SEL_TRIL: y = zg_tril(in[0], 0); break;
    case SEL_TRIU: y = zg_triu(in[0], 1); break;
    case SEL_FILL: y = zg_masked_fill(in[0], m, 2.0f); break;
    case SEL_NARROW: y = zg_narrow(in[0], 1, 1, 2); break;
    case SEL_SLICE: y = zg_slice(in[0], 1, 3); break;
    case SEL_MAX_DIM: y = zg_max_dim(in[0], 1, false, NULL); break;
    default: y = zg_cat((zg_tensor *[]){zg_exp(in[0]), in[0], zg_mul_scalar(in[0], 2.0f)}, 3, 1); break;
    }
    zg_tensor_free(m);
    return zg_mul(y, y);
}

TEST(gradgradcheck_selections) {
    static const char *const names[SEL_COUNT] = {"tril", "triu", "masked_fill", "narrow", "slice", "max_dim", "cat"};
    for (sel_kind k = 0; k < SEL_COUNT; k++) {
        zg_tensor *x = spread_param((int64_t[]){3, 3, 4}, 3);
        GRADGRADCHECK(names[k], call_selection, &x, 1, &k);
        zg_tensor_free(x);
    }
}
