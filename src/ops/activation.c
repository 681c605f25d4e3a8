/* Activations, forward and backward side by side. Each saves the one tensor
 * its derivative is written in (PyTorch saves the same ones): relu, tanh,
 * sigmoid the output; leaky_relu, gelu the input. */
#include "pointwise.h"
#include "vmath.h"

#include <math.h>

/* ---- relu, leaky_relu: their gradients as an op ------------------------------ */

/* g masked by the sign of a saved tensor s: relu's g where s > 0, else 0
 * (s = y: y <= 0 -> 0, as PyTorch); leaky_relu's g where s > 0, else
 * slope g (s = x). */
typedef struct {
    float slope;
    bool relu;
} mask_args;

static zg_tensor *mask_apply(zg_tensor *g, const zg_tensor *s, const mask_args *m) {
    zg_tensor *r = zg__empty_like(g);
    if (!r) return NULL;
    const float slope = m->slope;
    if (m->relu)
        ZG_MAP2(r, g, s, x <= 0.0f ? 0.0f : g);
    else
        ZG_MAP2(r, g, s, (x > 0.0f ? g : 0.0f) + slope * (x > 0.0f ? 0.0f : g));
    return r;
}

/* The mask is a constant of s (a step function: its derivative is zero
 * almost everywhere), so the op is linear in g: its gradient is the same
 * mask applied to the incoming gradient, recorded again in grad mode. */
static zg_tensor *mask_op(zg_tensor *g, zg_tensor *s, const mask_args *m);
static int mask_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    return (gin[0] = mask_apply(g, n->saved[0], ZG_NODE_ARGS(n, mask_args))) ? ZG_OK : ZG_ERR_NOMEM;
}
static int mask_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    return (gin[0] = mask_op(g, n->saved[0], ZG_NODE_ARGS(n, mask_args))) ? ZG_OK : ZG_ERR_NOMEM;
}

static zg_tensor *mask_op(zg_tensor *g, zg_tensor *s, const mask_args *m) {
    zg_tensor *out = mask_apply(g, s, m);
    if (!out) return NULL;
    zg__node *n = ZG_RECORD(mask_args, m->relu ? "threshold_backward" : "leaky_relu_backward", mask_backward, out,
                            &g, 1);
    zg__node_set_double_backward(n, mask_backward_diff);
    if (n) {
        *ZG_NODE_ARGS(n, mask_args) = *m;
        zg__save(n, s);
    }
    return out;
}

/* ---- relu -------------------------------------------------------------------- */

/* d relu = dx where y > 0; 0 at x == 0 (as PyTorch: y <= 0 -> 0). */
static int relu_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    return (gin[0] = mask_apply(g, n->saved[0], &(mask_args){0.0f, true})) ? ZG_OK : ZG_ERR_NOMEM;
}
static int relu_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    return (gin[0] = mask_op(g, n->saved[0], &(mask_args){0.0f, true})) ? ZG_OK : ZG_ERR_NOMEM;
}

zg_tensor *zg_relu(zg_tensor *a) {
    zg_tensor *out = zg__unary_out("zg_relu", a);
    if (!out) return NULL;
    /* max(x, 0) that keeps NaN (and -0), as torch.relu */
    ZG_MAP1(out, a, x < 0.0f ? 0.0f : x);
    zg__node *n = zg__record("relu", relu_backward, out, &a, 1);
    zg__node_set_double_backward(n, relu_backward_diff);
    if (n) zg__save(n, out);
    return out;
}

/* ---- leaky_relu ------------------------------------------------------------------ */

/* y = x for x > 0, slope * x otherwise; dy = dx or slope * dx. Written
 * as max(x, 0) + slope * min(x, 0) (the same values, NaN included): GCC
 * vectorises selects against a zero, not the plain two-way select. */
typedef struct {
    float slope;
} leaky_relu_args;

static int leaky_relu_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    const mask_args m = {ZG_NODE_ARGS(n, leaky_relu_args)->slope, false};
    return (gin[0] = mask_apply(g, n->saved[0], &m)) ? ZG_OK : ZG_ERR_NOMEM;
}
static int leaky_relu_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    const mask_args m = {ZG_NODE_ARGS(n, leaky_relu_args)->slope, false};
    return (gin[0] = mask_op(g, n->saved[0], &m)) ? ZG_OK : ZG_ERR_NOMEM;
}

zg_tensor *zg_leaky_relu(zg_tensor *a, float negative_slope) {
    zg_tensor *out = zg__unary_out("zg_leaky_relu", a);
    if (!out) return NULL;
    ZG_MAP1(out, a, (x < 0.0f ? 0.0f : x) + negative_slope * (x > 0.0f ? 0.0f : x));
    zg__node *n = ZG_RECORD(leaky_relu_args, "leaky_relu", leaky_relu_backward, out, &a, 1);
    zg__node_set_double_backward(n, leaky_relu_backward_diff);
    if (n) {
        ZG_NODE_ARGS(n, leaky_relu_args)->slope = negative_slope;
        zg__save(n, a);
    }
    return out;
}

/* ---- gelu -------------------------------------------------------------------------- */

/* Exact: y = x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2, and
 * dy/dx = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
 * Tanh form: y = x (1 + tanh(u)) / 2, u = sqrt(2/pi) (x + 0.044715 x^3),
 * dy/dx = (1 + t) / 2 + x (1 - t^2) / 2 * sqrt(2/pi) (1 + 3 * 0.044715 x^2),
 * t = tanh(u). */
#define GELU_INV_SQRT_2PI 0.39894228040143267794f /* 1 / sqrt(2 pi) */
#define GELU_SQRT_2_PI 0.79788456080286535588f    /* sqrt(2 / pi) */
#define GELU_KAPPA 0.044715f

/* Phi from erfc (vmath.h): vectorised, and exact in the negative tail
 * where 1 + erf(x / sqrt 2) would cancel to 0 (PyTorch gives 0 there). */
static inline float gelu_erf(float x) { return x * zg__vnormal_cdf(x); }

static inline float gelu_tanh(float x) {
    float u = GELU_SQRT_2_PI * (x + GELU_KAPPA * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

static inline float gelu_erf_grad(float x) {
    const float e = zg__vexp_neg_sq(fabsf(x), 0.5f); /* e^(-x^2/2) */
    return zg__vnormal_cdf_e(x, e) + x * (e * GELU_INV_SQRT_2PI);
}

static inline float gelu_tanh_grad(float x) {
    float x2 = x * x;
    float t = tanhf(GELU_SQRT_2_PI * (x + GELU_KAPPA * x2 * x));
    float du = GELU_SQRT_2_PI * (1.0f + 3.0f * GELU_KAPPA * x2);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}

/* The exact form's loops, compiled per instruction set: vmath.h's exp and
 * erfc are long straight-line bodies that gain most from wide vectors. */
ZG_SIMD_CLONES static void gelu_erf_rows(int64_t lo, int64_t hi, const float *restrict x, float *restrict y) {
    ZG_SIMD for (int64_t i = lo; i < hi; i++) y[i] = gelu_erf(x[i]);
}

ZG_SIMD_CLONES static void gelu_erf_grad_rows(int64_t lo, int64_t hi, const float *restrict g, const float *restrict x,
                                              float *restrict d) {
    ZG_SIMD for (int64_t i = lo; i < hi; i++) d[i] = g[i] * gelu_erf_grad(x[i]);
}

/* The second derivatives. Exact: d/dx [Phi + x phi] = phi + phi + x phi'
 * = phi (2 - x^2), as phi' = -x phi. Tanh form, with t = tanh(u),
 * s = 1 - t^2, u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2), u'' = 6 sqrt(2/pi)
 * 0.044715 x: d/dx [(1 + t) / 2 + x s u' / 2] = s [u' + x (u'' - 2 t u'^2) / 2]. */
static inline float gelu_erf_grad2(float x) {
    return zg__vexp_neg_sq(fabsf(x), 0.5f) * GELU_INV_SQRT_2PI * (2.0f - x * x);
}

static inline float gelu_tanh_grad2(float x) {
    float x2 = x * x;
    float t = tanhf(GELU_SQRT_2_PI * (x + GELU_KAPPA * x2 * x));
    float du = GELU_SQRT_2_PI * (1.0f + 3.0f * GELU_KAPPA * x2), d2u = 6.0f * GELU_SQRT_2_PI * GELU_KAPPA * x;
    return (1.0f - t * t) * (du + 0.5f * x * (d2u - 2.0f * t * du * du));
}

ZG_SIMD_CLONES static void gelu_erf_coef_rows(int64_t lo, int64_t hi, const float *restrict x, float *restrict c) {
    ZG_SIMD for (int64_t i = lo; i < hi; i++) c[i] = gelu_erf_grad(x[i]);
}

typedef struct {
    bool approximate_tanh;
} gelu_args;

/* Records out = f(a) of the form approximate_tanh (gelu, or its
 * derivative), saving a. */
static zg_tensor *record_gelu(const char *name, zg__backward_fn backward, zg__backward_fn backward_diff, zg_tensor *out,
                              zg_tensor *a, bool approximate_tanh) {
    zg__node *n = ZG_RECORD(gelu_args, name, backward, out, &a, 1);
    zg__node_set_double_backward(n, backward_diff);
    if (n) {
        ZG_NODE_ARGS(n, gelu_args)->approximate_tanh = approximate_tanh;
        zg__save(n, a);
    }
    return out;
}

/* The derivative gelu'(x) as an op of x (what a create_graph pass
 * multiplies g by), whose own backward is g gelu''(x). It has no
 * differentiable backward: a third derivative fails, naming it. */
static int gelu_coef_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    if (!(gin[0] = zg__empty_like(g))) return ZG_ERR_NOMEM;
    if (ZG_NODE_ARGS(n, gelu_args)->approximate_tanh)
        ZG_MAP2_LIBM(gin[0], g, n->saved[0], g * gelu_tanh_grad2(x));
    else
        ZG_MAP2(gin[0], g, n->saved[0], g * gelu_erf_grad2(x));
    return ZG_OK;
}

static zg_tensor *gelu_coef(zg_tensor *a, bool approximate_tanh) {
    zg_tensor *c = zg__empty_like(a);
    if (!c) return NULL;
    if (approximate_tanh)
        ZG_MAP1_LIBM(c, a, gelu_tanh_grad(x));
    else
        ZG_PARALLEL_CHUNKS(lo, hi, a->numel, ZG_MAP_PAR_MIN, { gelu_erf_coef_rows(lo, hi, zg__f32(a), zg__f32(c)); });
    return record_gelu("gelu_backward", gelu_coef_backward, NULL, c, a, approximate_tanh);
}

/* g gelu'(x) with ops. */
static int gelu_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    zg_tensor *c = gelu_coef(n->saved[0], ZG_NODE_ARGS(n, gelu_args)->approximate_tanh);
    return (gin[0] = c ? zg_mul(g, c) : NULL) ? ZG_OK : ZG_ERR_NOMEM;
}

static int gelu_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    if (!(gin[0] = zg__empty_like(g))) return ZG_ERR_NOMEM;
    if (ZG_NODE_ARGS(n, gelu_args)->approximate_tanh)
        ZG_MAP2_LIBM(gin[0], g, n->saved[0], g * gelu_tanh_grad(x));
    else
        ZG_PARALLEL_CHUNKS(lo, hi, g->numel, ZG_MAP_PAR_MIN,
                           { gelu_erf_grad_rows(lo, hi, zg__f32(g), zg__f32(n->saved[0]), zg__f32(gin[0])); });
    return ZG_OK;
}

zg_tensor *zg_gelu(zg_tensor *a, bool approximate_tanh) {
    zg_tensor *out = zg__unary_out("zg_gelu", a);
    if (!out) return NULL;
    if (approximate_tanh)
        ZG_MAP1_LIBM(out, a, gelu_tanh(x));
    else
        ZG_PARALLEL_CHUNKS(lo, hi, a->numel, ZG_MAP_PAR_MIN, { gelu_erf_rows(lo, hi, zg__f32(a), zg__f32(out)); });
    return record_gelu("gelu", gelu_backward, gelu_backward_diff, out, a, approximate_tanh);
}

/* ---- tanh, sigmoid ------------------------------------------------------------------- */

/* d tanh = (1 - y^2) dx */
static int tanh_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    if (!(gin[0] = zg__empty_like(g))) return ZG_ERR_NOMEM;
    ZG_MAP2(gin[0], g, n->saved[0], g * (1.0f - x * x));
    return ZG_OK;
}

/* The same with ops, through y (its graph carries the second derivative
 * -2 y (1 - y^2)). */
static int tanh_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    zg_tensor *y = n->saved[0];
    return (gin[0] = zg_mul(g, zg_rsub_scalar(zg_mul(y, y), 1.0f))) ? ZG_OK : ZG_ERR_NOMEM;
}

zg_tensor *zg_tanh(zg_tensor *a) {
    zg_tensor *out = zg__unary_out("zg_tanh", a);
    if (!out) return NULL;
    ZG_MAP1_LIBM(out, a, tanhf(x));
    zg__node *n = zg__record("tanh", tanh_backward, out, &a, 1);
    zg__node_set_double_backward(n, tanh_backward_diff);
    if (n) zg__save(n, out);
    return out;
}

/* 1 / (1 + e^-x), evaluated through e = e^-|x| <= 1 so that it never
 * overflows and keeps tiny results for very negative x: 1 / (1 + e) for
 * x >= 0, e / (1 + e) below (a select, no branch). */
static inline float sigmoid1(float x) {
    float e = expf(-fabsf(x));
    return (x >= 0.0f ? 1.0f : e) / (1.0f + e);
}

/* d sigmoid = y (1 - y) dx */
static int sigmoid_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    if (!(gin[0] = zg__empty_like(g))) return ZG_ERR_NOMEM;
    ZG_MAP2(gin[0], g, n->saved[0], g * (1.0f - x) * x);
    return ZG_OK;
}

/* The same with ops, through y: (g (1 - y)) y. */
static int sigmoid_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    zg_tensor *y = n->saved[0];
    return (gin[0] = zg_mul(zg_mul(g, zg_rsub_scalar(y, 1.0f)), y)) ? ZG_OK : ZG_ERR_NOMEM;
}

zg_tensor *zg_sigmoid(zg_tensor *a) {
    zg_tensor *out = zg__unary_out("zg_sigmoid", a);
    if (!out) return NULL;
    ZG_MAP1_LIBM(out, a, sigmoid1(x));
    zg__node *n = zg__record("sigmoid", sigmoid_backward, out, &a, 1);
    zg__node_set_double_backward(n, sigmoid_backward_diff);
    if (n) zg__save(n, out);
    return out;
}
