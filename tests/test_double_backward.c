/* Higher-order gradients: zg_autograd_grad_opts with create_graph.
 *
 * Per op, a second-order gradient check (PyTorch's gradgradcheck): the
 * first-order gradient of the op, computed with create_graph for a
 * grad_output v that requires grad, is itself the function under
 * GRADCHECK, so its gradient with respect to the op's inputs and to v
 * (a backward through the graph the create_graph pass recorded) is
 * compared with finite differences of the first-order gradient. Then the
 * engine's rules (values of known derivatives, a grad_output used as it
 * is, the graph kept, the refusals and their messages) and a gradient
 * penalty as WGAN-GP computes it. */
#include "harness.h"

#include <stdlib.h>

/* ---- element-wise -------------------------------------------------------- */

typedef struct {
    const char *name;
    zg_tensor *(*f)(zg_tensor *, zg_tensor *);
} binary_op;

static zg_tensor *call_binary(zg_tensor *const *in, void *ctx) { return ((const binary_op *)ctx)->f(in[0], in[1]); }

TEST(gradgradcheck_binary_ops_with_broadcasting) {
    const binary_op ops[] = {{"add", zg_add}, {"sub", zg_sub}, {"mul", zg_mul}, {"div", zg_div}};
    /* same shapes, a trailing row, a column against a row, a 0-dim one */
    const int64_t shapes[][2][3] = {{{2, 3, 0}, {2, 3, 0}}, {{2, 3, 0}, {3, 0, 0}}, {{2, 1, 0}, {1, 3, 0}},
                                    {{2, 3, 0}, {0, 0, 0}}};
    const int nds[][2] = {{2, 2}, {2, 1}, {2, 2}, {2, 0}};
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++)
        for (int s = 0; s < 4; s++) {
            /* divisors in [0.5, 2] with either sign */
            zg_tensor *in[2] = {zgt_param_uniform(shapes[s][0], nds[s][0], -1.5f, 1.5f),
                                zgt_param_away_from_zero(shapes[s][1], nds[s][1], 0.5f, 2.0f)};
            char name[64];
            snprintf(name, sizeof name, "%s pattern %d", ops[o].name, s);
            GRADGRADCHECK(name, call_binary, in, 2, (void *)&ops[o]);
            /* and with the first operand constant (its partner saved or not) */
            zg_tensor_set_requires_grad(in[0], false);
            snprintf(name, sizeof name, "%s pattern %d, a constant", ops[o].name, s);
            GRADGRADCHECK(name, call_binary, in, 2, (void *)&ops[o]);
            zgt_free_all(in, 2);
        }
}

typedef struct {
    const char *name;
    zg_tensor *(*f)(zg_tensor *, float);
    float s;
} scalar_op;

static zg_tensor *call_scalar(zg_tensor *const *in, void *ctx) {
    const scalar_op *o = ctx;
    return o->f(in[0], o->s);
}

typedef struct {
    const char *name;
    zg_tensor *(*f)(zg_tensor *);
    float lo, hi; /* the input's range (positive where the op needs it) */
} unary_op;

static zg_tensor *call_unary(zg_tensor *const *in, void *ctx) { return ((const unary_op *)ctx)->f(in[0]); }

TEST(gradgradcheck_scalar_and_unary_ops) {
    const scalar_op sc[] = {{"add_scalar", zg_add_scalar, 0.7f},   {"sub_scalar", zg_sub_scalar, 0.7f},
                            {"rsub_scalar", zg_rsub_scalar, 0.7f}, {"mul_scalar", zg_mul_scalar, -1.3f},
                            {"div_scalar", zg_div_scalar, 1.7f},   {"pow_scalar 2", zg_pow_scalar, 2.0f},
                            {"pow_scalar 3", zg_pow_scalar, 3.0f}, {"pow_scalar 0.5", zg_pow_scalar, 0.5f},
                            {"pow_scalar -1", zg_pow_scalar, -1.0f}, {"pow_scalar 1.5", zg_pow_scalar, 1.5f},
                            {"pow_scalar 1", zg_pow_scalar, 1.0f}};
    const int64_t shape[2] = {2, 3};
    for (size_t i = 0; i < sizeof sc / sizeof sc[0]; i++) {
        zg_tensor *x = zgt_param_uniform(shape, 2, 0.5f, 2.0f);
        GRADGRADCHECK(sc[i].name, call_scalar, &x, 1, (void *)&sc[i]);
        zg_tensor_free(x);
    }
    const unary_op un[] = {{"neg", zg_neg, -2, 2},     {"exp", zg_exp, -1, 1},         {"log", zg_log, 0.5f, 2},
                           {"sqrt", zg_sqrt, 0.5f, 2}, {"tanh", zg_tanh, -1.5f, 1.5f}, {"sigmoid", zg_sigmoid, -3, 3},
                           {"sum", zg_sum, -2, 2},     {"mean", zg_mean, -2, 2}};
    for (size_t i = 0; i < sizeof un / sizeof un[0]; i++) {
        zg_tensor *x = zgt_param_uniform(shape, 2, un[i].lo, un[i].hi);
        GRADGRADCHECK(un[i].name, call_unary, &x, 1, (void *)&un[i]);
        zg_tensor_free(x);
    }
    zg_tensor *x0 = zgt_param(zg_scalar(0.8f));
    GRADGRADCHECK("exp 0-dim", call_unary, &x0, 1, (void *)&un[1]);
    /* x^0: a zero gradient, a constant (no graph), as PyTorch's */
    zg_tensor *y = zg_pow_scalar(x0, 0.0f), *g;
    CHECK_OK(zg_autograd_grad_opts(&y, 1, &x0, 1, &g, &(zg_grad_opts){.create_graph = true}));
    CHECK(zg_tensor_get(g, 0) == 0.0f && !zg_tensor_requires_grad(g));
    zg_tensor_free(x0);
}

/* ---- activations ------------------------------------------------------------ */

typedef struct {
    int kind; /* 0 relu, 1 leaky_relu, 2 gelu, 3 gelu tanh */
} act_ctx;

static zg_tensor *call_act(zg_tensor *const *in, void *ctx) {
    switch (((const act_ctx *)ctx)->kind) {
    case 0: return zg_relu(in[0]);
    case 1: return zg_leaky_relu(in[0], 0.2f);
    case 2: return zg_gelu(in[0], false);
    default: return zg_gelu(in[0], true);
    }
}

TEST(gradgradcheck_activations) {
    const char *names[] = {"relu", "leaky_relu", "gelu", "gelu tanh"};
    const int64_t shape[2] = {3, 4};
    for (int k = 0; k < 4; k++) {
        /* relu and leaky_relu away from the kink; gelu over its curved part */
        zg_tensor *x = k < 2 ? zgt_param_away_from_zero(shape, 2, 0.1f, 2.0f) : zgt_param_uniform(shape, 2, -3.0f, 3.0f);
        act_ctx c = {k};
        GRADGRADCHECK(names[k], call_act, &x, 1, &c);
        zg_tensor_free(x);
    }
}

/* The second derivative of gelu against the formula's values at a few
 * points, and the mask of relu / leaky_relu: the gradient of g * mask
 * with respect to x is zero (none reaches x), with respect to v the mask. */
TEST(activation_second_derivatives_have_their_values) {
    const float xs[4] = {-2.0f, -0.5f, 0.25f, 1.5f};
    for (int tanh_form = 0; tanh_form < 2; tanh_form++) {
        zg_tensor *x = zgt_param_vec(xs, 4);
        zg_tensor *y = zg_sum(zg_gelu(x, tanh_form));
        zg_tensor *g1, *g2;
        CHECK_OK(zg_autograd_grad_opts(&y, 1, &x, 1, &g1, &(zg_grad_opts){.create_graph = true}));
        zg_tensor *s = zg_sum(g1);
        CHECK_OK(zg_autograd_grad_opts(&s, 1, &x, 1, &g2, NULL));
        for (int i = 0; i < 4; i++) {
            double v = xs[i], e;
            if (!tanh_form) {
                e = exp(-v * v / 2) / sqrt(2 * M_PI) * (2 - v * v);
            } else {
                double k0 = sqrt(2 / M_PI), k1 = 0.044715, t = tanh(k0 * (v + k1 * v * v * v));
                double du = k0 * (1 + 3 * k1 * v * v), d2u = 6 * k0 * k1 * v;
                e = (1 - t * t) * (du + 0.5 * v * (d2u - 2 * t * du * du));
                /* against a central difference of the first derivative, in double */
                double h = 1e-4, fp[2];
                for (int j = 0; j < 2; j++) {
                    double z = v + (j ? -h : h), tz = tanh(k0 * (z + k1 * z * z * z));
                    fp[j] = 0.5 * (1 + tz) + 0.5 * z * (1 - tz * tz) * k0 * (1 + 3 * k1 * z * z);
                }
                CHECK_NEAR(e, (fp[0] - fp[1]) / (2 * h), 1e-7);
            }
            CHECK_NEAR(zg_tensor_get(g2, i), e, 2e-6);
        }
        zg_tensor_free(x);
        zg_arena_reset();
    }
}

/* ---- reductions and shapes ---------------------------------------------------- */

typedef struct {
    int kind; /* 0 sum_dim, 1 mean_dim, 2 reshape, 3 flatten, 4 transpose, 5 permute */
    int dim;
    bool keepdim;
} shape_ctx;

static zg_tensor *call_shape(zg_tensor *const *in, void *ctx) {
    const shape_ctx *c = ctx;
    switch (c->kind) {
    case 0: return zg_sum_dim(in[0], c->dim, c->keepdim);
    case 1: return zg_mean_dim(in[0], c->dim, c->keepdim);
    case 2: return zg_reshape(in[0], (int64_t[]){4, -1}, 2);
    case 3: return zg_flatten(in[0], 1);
    case 4: return zg_transpose(in[0], 0, 2);
    default: return zg_permute(in[0], (int[]){2, 0, 1}, 3);
    }
}

TEST(gradgradcheck_reductions_and_shapes) {
    const int64_t shape[3] = {2, 3, 4};
    zg_tensor *x = zgt_param_uniform(shape, 3, -2.0f, 2.0f);
    for (int kind = 0; kind < 2; kind++)
        for (int dim = -1; dim < 3; dim++)
            for (int keep = 0; keep < 2; keep++) {
                shape_ctx c = {kind, dim, keep};
                char name[64];
                snprintf(name, sizeof name, "%s dim %d keepdim %d", kind ? "mean_dim" : "sum_dim", dim, keep);
                GRADGRADCHECK(name, call_shape, &x, 1, &c);
            }
    const char *names[] = {"reshape", "flatten", "transpose", "permute"};
    for (int kind = 2; kind < 6; kind++) {
        shape_ctx c = {kind, 0, false};
        GRADGRADCHECK(names[kind - 2], call_shape, &x, 1, &c);
    }
    zg_tensor_free(x);
}

/* A reduction or view between two nonlinear ops: the second derivative
 * passes through its recorded backward (sum_dim's expand, a reshape). */
static zg_tensor *call_composed(zg_tensor *const *in, void *ctx) {
    const shape_ctx *c = ctx;
    zg_tensor *sq = zg_mul(in[0], in[0]);
    return zg_tanh(call_shape(&sq, (void *)c));
}

TEST(gradgradcheck_reductions_and_shapes_between_nonlinear_ops) {
    const int64_t shape[3] = {2, 3, 4};
    zg_tensor *x = zgt_param_uniform(shape, 3, -1.0f, 1.0f);
    const char *names[] = {"sum_dim", "mean_dim", "reshape", "flatten", "transpose", "permute"};
    for (int kind = 0; kind < 6; kind++) {
        shape_ctx c = {kind, 1, kind == 1};
        GRADGRADCHECK(names[kind], call_composed, &x, 1, &c);
    }
    zg_tensor_free(x);
}

/* ---- matmul, linear ------------------------------------------------------------ */

static zg_tensor *call_matmul(zg_tensor *const *in, void *ctx) {
    (void)ctx;
    return zg_matmul(in[0], in[1]);
}

TEST(gradgradcheck_matmul_2d_batched_and_broadcast) {
    const int64_t sa[][4] = {{3, 4}, {2, 3, 4}, {2, 3, 4}, {3, 4}, {1, 3, 4}, {2, 1, 3, 4}};
    const int64_t sb[][4] = {{4, 2}, {2, 4, 5}, {4, 5}, {2, 4, 5}, {2, 4, 5}, {3, 4, 2}};
    const int na[] = {2, 3, 3, 2, 3, 4}, nb[] = {2, 3, 2, 3, 3, 3};
    for (int c = 0; c < 6; c++) {
        zg_tensor *in[2] = {zgt_param_uniform(sa[c], na[c], -1, 1), zgt_param_uniform(sb[c], nb[c], -1, 1)};
        char name[32];
        snprintf(name, sizeof name, "matmul case %d", c);
        GRADGRADCHECK(name, call_matmul, in, 2, NULL);
        zgt_free_all(in, 2);
    }
}

static zg_tensor *call_linear(zg_tensor *const *in, void *ctx) {
    return zg_linear(in[0], in[1], *(const bool *)ctx ? in[2] : NULL);
}

TEST(gradgradcheck_linear) {
    const int64_t sx[][3] = {{5, 4}, {2, 3, 4}, {4}};
    const int nx[] = {2, 3, 1};
    for (int c = 0; c < 3; c++)
        for (int bias = 1; bias >= 0; bias--) {
            zg_tensor *in[3] = {zgt_param_uniform(sx[c], nx[c], -1, 1), zgt_param_uniform((int64_t[]){3, 4}, 2, -1, 1),
                                zgt_param_uniform((int64_t[]){3}, 1, -1, 1)};
            bool b = bias;
            char name[48];
            snprintf(name, sizeof name, "linear x %dd%s", nx[c], bias ? "" : " no bias");
            GRADGRADCHECK(name, call_linear, in, bias ? 3 : 2, &b);
            zgt_free_all(in, 3);
        }
}

/* ---- a gradient penalty ------------------------------------------------------------- */

/* D(x) = W2 act(W1 x + b1) + b2 on x [4, 3]; gp = mean((|dD/dx|_2 - 1)^2)
 * over the rows, dD/dx from a create_graph pass: the WGAN-GP penalty as a
 * function of the critic's parameters (and of x). */
static zg_tensor *gradient_penalty(zg_tensor *const *in, void *ctx) {
    const act_ctx *c = ctx;
    bool prev = zg_set_grad_enabled(true);
    zg_tensor *x = in[0], *h = zg_linear(x, in[1], in[2]);
    h = c->kind == 1 ? zg_leaky_relu(h, 0.2f) : c->kind == 2 ? zg_gelu(h, false) : zg_tanh(h);
    zg_tensor *d = zg_linear(h, in[3], in[4]), *g = NULL, *out = NULL;
    zg_tensor *ones = d ? zg_full(zg_tensor_shape(d), zg_tensor_ndim(d), 1.0f) : NULL;
    const zg_tensor *go = ones;
    const zg_grad_opts o = {.grad_outputs = &go, .create_graph = true};
    if (ones && zg_autograd_grad_opts(&d, 1, &x, 1, &g, &o) == ZG_OK) {
        zg_tensor *norm = zg_sqrt(zg_sum_dim(zg_mul(g, g), 1, false));
        out = zg_mean(zg_pow_scalar(zg_sub_scalar(norm, 1.0f), 2.0f));
    }
    zg_tensor_free(ones);
    zg_set_grad_enabled(prev);
    return out;
}

TEST(gradcheck_of_a_gradient_penalty_through_a_critic) {
    const char *names[] = {"", "leaky_relu critic", "gelu critic", "tanh critic"};
    for (int kind = 1; kind <= 3; kind++) {
        zg_tensor *in[5] = {zgt_param_uniform((int64_t[]){4, 3}, 2, -1, 1), zgt_param_uniform((int64_t[]){5, 3}, 2, -1, 1),
                            zgt_param_uniform((int64_t[]){5}, 1, -1, 1), zgt_param_uniform((int64_t[]){1, 5}, 2, -1, 1),
                            zgt_param_uniform((int64_t[]){1}, 1, -1, 1)};
        act_ctx c = {kind};
        /* b2 does not reach the penalty: allowed as unused (a zero) */
        GRADCHECK(names[kind], gradient_penalty, in, 5, &c, &(zgt_gradcheck_opts){.allow_unused = true});
        zgt_free_all(in, 5);
        zg_arena_reset();
    }
}

/* ---- the engine's rules ------------------------------------------------------------- */

TEST(second_and_third_derivatives_of_a_power) {
    /* y = sum(x^4): 4x^3, 12x^2, 24x */
    const float xs[3] = {1.0f, -2.0f, 0.5f};
    zg_tensor *x = zgt_param_vec(xs, 3);
    zg_tensor *y = zg_sum(zg_pow_scalar(x, 4.0f)), *g1, *g2, *g3;
    const zg_grad_opts cg = {.create_graph = true};
    CHECK_OK(zg_autograd_grad_opts(&y, 1, &x, 1, &g1, &cg));
    CHECK(zg_tensor_requires_grad(g1) && zg_tensor_grad_fn_name(g1));
    zg_tensor *s1 = zg_sum(g1);
    CHECK_OK(zg_autograd_grad_opts(&s1, 1, &x, 1, &g2, &cg));
    zg_tensor *s2 = zg_sum(g2);
    CHECK_OK(zg_autograd_grad_opts(&s2, 1, &x, 1, &g3, NULL));
    CHECK(!zg_tensor_requires_grad(g3) && !zg_tensor_grad_fn_name(g3));
    for (int i = 0; i < 3; i++) {
        double v = xs[i];
        CHECK_NEAR(zg_tensor_get(g1, i), 4 * v * v * v, 1e-5);
        CHECK_NEAR(zg_tensor_get(g2, i), 12 * v * v, 1e-5);
        CHECK_NEAR(zg_tensor_get(g3, i), 24 * v, 1e-5);
    }
    zg_tensor_free(x);
}

TEST(without_create_graph_the_gradient_has_no_graph) {
    zg_tensor *x = zgt_param_vec((float[]){1, 2}, 2);
    zg_tensor *y = zg_sum(zg_mul(x, x)), *g;
    CHECK_OK(zg_autograd_grad_opts(&y, 1, &x, 1, &g, &(zg_grad_opts){.retain_graph = true}));
    CHECK(!zg_tensor_requires_grad(g) && !zg_tensor_grad_fn_name(g));
    CHECK_OK(zg_autograd_grad(&y, NULL, 1, &x, 1, &g, false, false));
    CHECK(!zg_tensor_requires_grad(g));
    zg_tensor_free(x);
}

TEST(a_grad_output_that_requires_grad_is_differentiated_too) {
    /* y = x * x, g = 2 x v: d sum(g)/dv = 2x, d sum(g)/dx = 2v */
    zg_tensor *x = zgt_param_vec((float[]){1, -3}, 2), *v = zgt_param_vec((float[]){0.5f, 2}, 2);
    zg_tensor *y = zg_mul(x, x), *g, *gg[2];
    const zg_tensor *go = v;
    CHECK_OK(zg_autograd_grad_opts(&y, 1, &x, 1, &g, &(zg_grad_opts){.grad_outputs = &go, .create_graph = true}));
    zg_tensor *s = zg_sum(g);
    CHECK_OK(zg_autograd_grad_opts(&s, 1, (zg_tensor *[]){x, v}, 2, gg, NULL));
    CHECK_VALUES(gg[0], ((float[]){1, 4}), 2, 0);
    CHECK_VALUES(gg[1], ((float[]){2, -6}), 2, 0);
    zg_tensor_free(x);
    zg_tensor_free(v);
}

TEST(create_graph_keeps_the_graph_for_another_backward) {
    zg_tensor *x = zgt_param_vec((float[]){1, 2}, 2);
    zg_tensor *y = zg_sum(zg_tanh(x)), *g;
    CHECK_OK(zg_autograd_grad_opts(&y, 1, &x, 1, &g, &(zg_grad_opts){.create_graph = true}));
    /* g = 1 - tanh(x)^2 reads tanh's output through tanh's node, which the
     * create_graph pass ran and kept */
    CHECK_OK(zg_backward(zg_sum(g), NULL));
    /* without create_graph (and retain_graph) a second backward through the
     * nodes the pass ran fails */
    zg_tensor *y2 = zg_sum(zg_tanh(x));
    CHECK_OK(zg_autograd_grad_opts(&y2, 1, &x, 1, &g, NULL));
    CHECK_ERR(zg_backward(y2, NULL), "backward through the graph a second time");
    zg_tensor_free(x);
}

TEST(zg_backward_refuses_create_graph) {
    zg_tensor *x = zgt_param_vec((float[]){1, 2}, 2);
    zg_tensor *y = zg_sum(zg_mul(x, x));
    CHECK_ERR(zg_backward(y, &(zg_backward_opts){.create_graph = true}), "zg_autograd_grad_opts");
    CHECK(zg_tensor_grad(x) == NULL);
    CHECK_OK(zg_backward(y, NULL)); /* the graph is untouched */
    zg_tensor_free(x);
}

static int hook_calls;
static zg_tensor *count_hook(zg_tensor *g, void *user) {
    (void)g;
    (void)user;
    hook_calls++;
    return NULL;
}

TEST(an_op_without_a_differentiable_backward_fails_before_the_pass) {
    zg_tensor *x = zgt_param_from((float[]){1, 5, 2, 3, 0, 4}, (int64_t[]){2, 3}, 2), *g;
    zg_tensor *h = zg_mul_scalar(x, 2.0f);
    hook_calls = 0;
    CHECK_OK(zg_tensor_register_hook(h, count_hook, NULL));
    /* pow with a tensor exponent: h^x, x's gradient 0 where h = x = 0 */
    zg_tensor *y = zg_sum(zg_pow(h, x));
    CHECK_ERR(zg_autograd_grad_opts(&y, 1, &x, 1, &g, &(zg_grad_opts){.create_graph = true}),
              "create_graph: the backward of 'pow' is not differentiable in zgrad yet");
    CHECK(hook_calls == 0);
    /* the message lists what is supported, the losses and norms included */
    CHECK(strstr(zg_last_error(), "batch_norm") && strstr(zg_last_error(), "cross_entropy") &&
          strstr(zg_last_error(), "max/avg/adaptive pooling"));
    /* the same gradient without create_graph works */
    CHECK_OK(zg_autograd_grad_opts(&y, 1, &x, 1, &g, NULL));
    CHECK(hook_calls == 1);
    /* a third derivative of gelu: its derivative op has none */
    zg_tensor *z = zg_sum(zg_gelu(x, false)), *g1, *g2;
    const zg_grad_opts cg = {.create_graph = true};
    CHECK_OK(zg_autograd_grad_opts(&z, 1, &x, 1, &g1, &cg));
    zg_tensor *s = zg_sum(g1);
    CHECK_ERR(zg_autograd_grad_opts(&s, 1, &x, 1, &g2, &cg), "'gelu_backward' is not differentiable");
    zg_tensor_free(x);
}

TEST(a_product_recorded_under_autocast_refuses_create_graph) {
    zg_tensor *x = zgt_param(zg_randn((int64_t[]){2, 4}, 2)), *w = zgt_param(zg_randn((int64_t[]){3, 4}, 2)), *g;
    CHECK_OK(zg_autocast_enter(ZG_AUTOCAST_BF16));
    zg_tensor *y = zg_sum(zg_linear(x, w, NULL));
    zg_autocast_exit();
    CHECK_ERR(zg_autograd_grad_opts(&y, 1, &x, 1, &g, &(zg_grad_opts){.create_graph = true}),
              "create_graph through 'linear_bf16' is not supported");
    /* a create_graph pass inside a region runs its own products in float32 */
    zg_tensor *y2 = zg_sum(zg_tanh(zg_matmul(x, zg_transpose(w, 0, 1))));
    CHECK_OK(zg_autocast_enter(ZG_AUTOCAST_BF16));
    CHECK_OK(zg_autograd_grad_opts(&y2, 1, &x, 1, &g, &(zg_grad_opts){.create_graph = true}));
    zg_autocast_exit();
    CHECK(strcmp(zg_tensor_grad_fn_name(g), "matmul") == 0);
    zg_tensor_free(x);
    zg_tensor_free(w);
}

TEST(a_tensor_added_to_itself_gets_twice_the_gradient) {
    /* d sum(x + x)/dx = 2: the add's backward hands the same tensor to both
     * of its inputs, which are one tensor. */
    zg_tensor *x = zgt_param_vec((float[]){1, 2}, 2), *g;
    CHECK_OK(zg_backward(zg_sum(zg_add(x, x)), NULL));
    CHECK_VALUES(zg_tensor_grad(x), ((float[]){2, 2}), 2, 0);
    zg_tensor *y = zg_sum(zg_add(x, x));
    CHECK_OK(zg_autograd_grad(&y, NULL, 1, &x, 1, &g, false, false));
    CHECK_VALUES(g, ((float[]){2, 2}), 2, 0);
    /* with create_graph: d/dx of sum((x + x)^2) = 8x, then 8 */
    zg_tensor *z = zg_sum(zg_pow_scalar(zg_add(x, x), 2.0f)), *g2;
    CHECK_OK(zg_autograd_grad_opts(&z, 1, &x, 1, &g, &(zg_grad_opts){.create_graph = true}));
    CHECK_VALUES(g, ((float[]){8, 16}), 2, 0);
    zg_tensor *s = zg_sum(g);
    CHECK_OK(zg_autograd_grad_opts(&s, 1, &x, 1, &g2, NULL));
    CHECK_VALUES(g2, ((float[]){8, 8}), 2, 0);
    zg_tensor_free(x);
}

TEST(the_gradients_of_a_tensor_used_twice_sum_differentiably) {
    /* y = sum(x^3 + exp(x)): x gets 3x^2 and e^x, summed in the graph;
     * the second derivative is 6x + e^x */
    const float xs[2] = {0.5f, -1.0f};
    zg_tensor *x = zgt_param_vec(xs, 2), *g, *g2;
    zg_tensor *y = zg_sum(zg_add(zg_pow_scalar(x, 3.0f), zg_exp(x)));
    CHECK_OK(zg_autograd_grad_opts(&y, 1, &x, 1, &g, &(zg_grad_opts){.create_graph = true}));
    zg_tensor *s = zg_sum(g);
    CHECK_OK(zg_autograd_grad_opts(&s, 1, &x, 1, &g2, NULL));
    for (int i = 0; i < 2; i++) {
        CHECK_NEAR(zg_tensor_get(g, i), 3 * xs[i] * xs[i] + exp(xs[i]), 1e-6);
        CHECK_NEAR(zg_tensor_get(g2, i), 6 * xs[i] + exp(xs[i]), 1e-6);
    }
    zg_tensor_free(x);
}

TEST(create_graph_with_respect_to_a_non_leaf) {
    /* h = 2x, y = sum(h^3): dy/dh = 3h^2 (create_graph), d sum(3h^2)/dx = 12 h */
    zg_tensor *x = zgt_param_vec((float[]){1, -0.5f}, 2), *g, *gx;
    zg_tensor *h = zg_mul_scalar(x, 2.0f), *y = zg_sum(zg_pow_scalar(h, 3.0f));
    CHECK_OK(zg_autograd_grad_opts(&y, 1, &h, 1, &g, &(zg_grad_opts){.create_graph = true}));
    CHECK_VALUES(g, ((float[]){12, 3}), 2, 0);
    zg_tensor *s = zg_sum(g);
    CHECK_OK(zg_autograd_grad_opts(&s, 1, &x, 1, &gx, NULL));
    CHECK_VALUES(gx, ((float[]){24, -12}), 2, 0);
    zg_tensor_free(x);
}

TEST(autograd_grad_opts_argument_errors) {
    zg_tensor *x = zgt_param_vec((float[]){1, 2}, 2), *g[2];
    zg_tensor *y = zg_mul(x, x);
    CHECK_ERR(zg_autograd_grad_opts(NULL, 1, &x, 1, g, NULL), "zg_autograd_grad_opts: no outputs");
    CHECK_ERR(zg_autograd_grad_opts(&y, 1, &x, 1, NULL, NULL), "zg_autograd_grad_opts: grads is NULL");
    CHECK_ERR(zg_autograd_grad_opts(&y, 1, &x, 1, g, &(zg_grad_opts){.create_graph = true}),
              "grad can be implicitly created only for scalar outputs");
    zg_tensor *u = zgt_param_vec((float[]){1}, 1), *s = zg_sum(y);
    CHECK_ERR(zg_autograd_grad_opts(&s, 1, (zg_tensor *[]){x, u}, 2, g, &(zg_grad_opts){.create_graph = true}),
              "input 1 was not used");
    CHECK_OK(zg_autograd_grad_opts(&s, 1, (zg_tensor *[]){x, u}, 2, g,
                                   &(zg_grad_opts){.create_graph = true, .allow_unused = true}));
    CHECK(g[0] && !g[1]);
    zg_tensor_free(x);
    zg_tensor_free(u);
}
