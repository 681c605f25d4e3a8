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
