/* Losses, each with a fused backward.
 *
 * cross_entropy (PyTorch's formula), for row i with target t and class
 * weights w (all 1 without weights), logp = log_softmax(x), eps the label
 * smoothing and C the number of classes:
 *   nll_i    = -w_t logp_t
 *   smooth_i = -sum_c w_c logp_c
 *   loss_i   = (1 - eps) nll_i + (eps / C) smooth_i      (0 for ignored rows)
 * mean divides the sum by the total weight of the non-ignored targets
 * (their count without weights). Inputs [N, C, d1, ...] with targets
 * [N, d1, ...] (segmentation) take the classes along dim 1: each position
 * (n, d1, ...) is one row, with the same formulas and reductions. With p = softmax(x), the gradient is
 *   dloss_i/dx_c = (1 - eps) w_t (p_c - [c == t]) + (eps / C) (W p_c - w_c)
 * where W = sum_c w_c.
 *
 * nll_loss: loss_i = -w_t x_{i,t}, same reductions; gradient -w_t at t.
 * mse_loss: (x - y)^2; d/dx = 2 (x - y), d/dy = -2 (x - y).
 * bce_with_logits with pos_weight q (1 without), l = (q - 1) y + 1:
 *   loss = (1 - y) x + l (log1p(exp(-|x|)) + max(-x, 0))
 * (softplus(-x) written so that it never overflows), which for q = 1 is
 * max(x, 0) - x y + log1p(exp(-|x|)).
 *   d/dx = (1 - y) - l sigmoid(-x),  d/dy = -x + (q - 1) softplus(-x).
 *
 * Each backward has a second form written with ops (the *_backward_diff
 * functions), which create_graph runs so that the gradient can be
 * differentiated again: the same formulas, with the targets, weights and
 * the mean's denominator as constants. */
#include "ops_internal.h"
#include "softmax_kernel.h"

#include <math.h>

static const zg_loss_opts default_opts = {ZG_REDUCTION_MEAN, -100, 0.0f, NULL};

static int check_reduction(const char *fn, zg_reduction r) {
    if (r != ZG_REDUCTION_MEAN && r != ZG_REDUCTION_SUM && r != ZG_REDUCTION_NONE)
        return zg__fail(ZG_ERR_ARG, "%s: unknown reduction %d", fn, (int)r);
    return ZG_OK;
}

/* The loss tensor: per-element values (none) or their sum / denominator. */
static zg_tensor *reduce_loss(const double *vals, const zg_tensor *shape_of, zg_reduction r, double denom) {
    if (r == ZG_REDUCTION_NONE) {
        zg_tensor *out = zg__empty(ZG_FLOAT32, shape_of->shape, shape_of->ndim);
        if (out)
            for (int64_t i = 0; i < out->numel; i++) zg__f32(out)[i] = (float)vals[i];
        return out;
    }
    double sum = 0;
    for (int64_t i = 0; i < shape_of->numel; i++) sum += vals[i];
    zg_tensor *out = zg__empty(ZG_FLOAT32, NULL, 0);
    if (out) zg__f32(out)[0] = (float)(r == ZG_REDUCTION_MEAN ? sum / denom : sum);
    return out;
}

/* The gradient each element's loss receives: gout itself (none), or its
 * one value (divided by the mean's denominator). */
static inline double elem_scale(const float *g, int64_t i, zg_reduction r, double denom) {
    if (r == ZG_REDUCTION_NONE) return g[i];
    return r == ZG_REDUCTION_MEAN ? g[0] / denom : g[0];
}

/* elem_scale as a tensor, for the differentiable backwards: gout itself
 * (none), or its one value divided by the mean's denominator, which
 * broadcasts over the elements. */
static zg_tensor *scale_tensor(zg_tensor *gout, zg_reduction r, double denom) {
    return r == ZG_REDUCTION_MEAN ? zg_mul_scalar(gout, (float)(1.0 / denom)) : gout;
}

/* ---- class-index losses: shared checks --------------------------------- */

/* The input seen as [N, C, S] (S the product of d1, ...; 1 for [N, C] and
 * [C]): row i = n S + s, the target's i-th element, has its class c at
 * offset (n C + c) S + s, i.e. row_base(i) + c S. */
typedef struct {
    int64_t N, C, S;
    int64_t *target;     /* copy of the targets (arena), N S of them */
    float *weight;       /* copy of the class weights, or NULL */
    int64_t ignore;
    float eps;           /* label smoothing */
    zg_reduction red;
    double denom;        /* mean's denominator */
} class_ctx;

static inline int64_t row_base(const class_ctx *c, int64_t i) { return (i / c->S) * c->C * c->S + i % c->S; }

/* Whether target has x's shape without dim 1 ([C]: a 0-dim target). */
static bool target_fits(const zg_tensor *x, const zg_tensor *target) {
    if (target->ndim != (x->ndim == 1 ? 0 : x->ndim - 1)) return false;
    for (int d = 0; d < target->ndim; d++)
        if (target->shape[d] != x->shape[d == 0 ? 0 : d + 1]) return false;
    return true;
}

/* The shape target must have, for the error message. */
static const char *expected_target(const zg_tensor *x, char *buf, size_t n) {
    if (x->ndim == 1) return "a 0-dim target";
    if (x->ndim == 2) return "[N]";
    int k = snprintf(buf, n, "[%lld", (long long)x->shape[0]);
    for (int d = 2; d < x->ndim && k >= 0 && (size_t)k < n; d++)
        k += snprintf(buf + k, n - (size_t)k, ",%lld", (long long)x->shape[d]);
    if (k >= 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, "]");
    return buf;
}

/* Copies the class weights (checked against C) into the arena. */
static int copy_class_weight(const char *fn, const char *what, const zg_tensor *x, const zg_tensor *w,
                             class_ctx *ctx) {
    char sx[ZG_SHAPE_BUF], sw[ZG_SHAPE_BUF];
    if (w->dtype != ZG_FLOAT32) return zg__fail(ZG_ERR_SHAPE, "%s: weight must be float32", fn);
    if (w->ndim != 1 || w->shape[0] != ctx->C)
        return zg__fail(ZG_ERR_SHAPE, "%s: weight of shape %s does not match %lld classes of %s of shape %s", fn,
                        zg__shape_str(w, sw, sizeof sw), (long long)ctx->C, what, zg__shape_str(x, sx, sizeof sx));
    ctx->weight = zg__arena_alloc((size_t)(ctx->C ? ctx->C : 1) * sizeof(float));
    if (!ctx->weight) return ZG_ERR_NOMEM;
    memcpy(ctx->weight, zg__f32(w), (size_t)ctx->C * sizeof(float));
    return ZG_OK;
}

/* Checks the targets' range, copies them into the arena and sums the
 * mean's denominator: the total weight of the counted rows. */
static int copy_targets(const char *fn, const zg_tensor *target, class_ctx *ctx) {
    const int64_t *t = zg__i64(target), rows = ctx->N * ctx->S;
    for (int64_t i = 0; i < rows; i++)
        if (t[i] != ctx->ignore && (t[i] < 0 || t[i] >= ctx->C)) {
            if (target->ndim <= 1)
                return zg__fail(ZG_ERR_ARG, "%s: target %lld out of range [0,%lld) in row %lld", fn, (long long)t[i],
                                (long long)ctx->C, (long long)i);
            return zg__fail(ZG_ERR_ARG, "%s: target %lld out of range [0,%lld) at element %lld of the target", fn,
                            (long long)t[i], (long long)ctx->C, (long long)i);
        }
    ctx->target = zg__arena_alloc((size_t)(rows ? rows : 1) * sizeof(int64_t));
    if (!ctx->target) return ZG_ERR_NOMEM;
    memcpy(ctx->target, t, (size_t)rows * sizeof(int64_t));
    double den = 0;
    for (int64_t i = 0; i < rows; i++)
        if (t[i] != ctx->ignore) den += ctx->weight ? ctx->weight[t[i]] : 1.0;
    ctx->denom = den;
    return ZG_OK;
}

/* Validates input [N,C,d1,...] / [N,C] / [C], target [N,d1,...] / [N] /
 * 0-dim (int64, in range or ignore_index) and opts; fills ctx (arena
 * copies of target and weights). */
static int check_class_loss(const char *fn, const char *what, const zg_tensor *x, const zg_tensor *target,
                            const zg_loss_opts *o, class_ctx *ctx) {
    if (zg__check_f32(fn, x, what)) return ZG_ERR_ARG;
    char sx[ZG_SHAPE_BUF], st[ZG_SHAPE_BUF], se[ZG_SHAPE_BUF];
    zg__shape_str(x, sx, sizeof sx);
    if (x->ndim < 1)
        return zg__fail(ZG_ERR_SHAPE, "%s: %s of shape %s must be [C], [N,C] or [N,C,d1,...]", fn, what, sx);
    if (!target) return zg__fail(ZG_ERR_ARG, "%s: target is NULL", fn);
    if (target->dtype != ZG_INT64)
        return zg__fail(ZG_ERR_SHAPE, "%s: target must be int64 class indices, got float32", fn);
    if (!target_fits(x, target))
        return zg__fail(ZG_ERR_SHAPE, "%s: target of shape %s does not match %s of shape %s (expected %s)", fn,
                        zg__shape_str(target, st, sizeof st), what, sx, expected_target(x, se, sizeof se));
    if (check_reduction(fn, o->reduction)) return ZG_ERR_ARG;
    ctx->N = x->ndim >= 2 ? x->shape[0] : 1;
    ctx->C = x->shape[x->ndim == 1 ? 0 : 1];
    ctx->S = 1;
    for (int d = 2; d < x->ndim; d++) ctx->S *= x->shape[d];
    ctx->ignore = o->ignore_index;
    ctx->red = o->reduction;
    ctx->weight = NULL;
    int rc = o->weight ? copy_class_weight(fn, what, x, o->weight, ctx) : ZG_OK;
    return rc ? rc : copy_targets(fn, target, ctx);
}

/* cross_entropy and nll_loss: the targets, weights and reduction; the
 * version of cross_entropy's logits at the forward (its differentiable
 * backward recomputes softmax from them). */
typedef struct {
    class_ctx c;
    uint64_t x_version;
} class_args;

/* ---- cross_entropy ------------------------------------------------------ */

/* saved[0]: log_softmax of the logits. */
static int cross_entropy_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    if (!zg__node_needs(n, 0)) return ZG_OK;
    const class_ctx *c = &ZG_NODE_ARGS(n, class_args)->c;
    const float *logp = zg__f32(n->saved[0]), *g = zg__f32(gout);
    zg_tensor *gx = zg__empty_like(n->in[0]);
    if (!gx) return ZG_ERR_NOMEM;
    float *dx = zg__f32(gx);
    int64_t C = c->C;
    double W = 0;
    for (int64_t k = 0; k < C; k++) W += c->weight ? c->weight[k] : 1.0;
    double e = c->eps, es = C ? e / (double)C : 0.0;
    const int64_t S = c->S;
    for (int64_t i = 0; i < c->N * S; i++) {
        const float *lp = logp + row_base(c, i);
        float *d = dx + row_base(c, i);
        int64_t t = c->target[i];
        if (t == c->ignore) {
            for (int64_t k = 0; k < C; k++) d[k * S] = 0.0f;
            continue;
        }
        double s = elem_scale(g, i, c->red, c->denom);
        double wt = c->weight ? c->weight[t] : 1.0;
        for (int64_t k = 0; k < C; k++) {
            double p = exp((double)lp[k * S]);
            double wk = c->weight ? c->weight[k] : 1.0;
            double v = (1.0 - e) * wt * (p - (k == t ? 1.0 : 0.0));
            if (e != 0.0) v += es * (W * p - wk);
            d[k * S] = (float)(s * v);
        }
    }
    gin[0] = gx;
    return ZG_OK;
}

/* The gradient each row receives, g [N, 1, S] (reduced: [1, 1, 1], the
 * mean's denominator in the constants), times coef [N, C, S]. */
static zg_tensor *rows_times(const class_ctx *c, zg_tensor *gout, zg_tensor *coef, const zg_tensor *like) {
    const bool none = c->red == ZG_REDUCTION_NONE;
    const int64_t gs[3] = {none ? c->N : 1, 1, none ? c->S : 1};
    zg_tensor *d = zg_mul(coef, zg_reshape(gout, gs, 3));
    return d ? zg_reshape(d, like->shape, like->ndim) : NULL;
}

/* A constant [N, C, S] (or [N, 1, S] with C = 1) in the arena, zeroed. */
static zg_tensor *class_const(const class_ctx *c, int64_t C) {
    return zg__zeros(ZG_FLOAT32, (int64_t[]){c->N, C, c->S}, 3);
}

/* cross_entropy's gradient with ops: with p = softmax(x) over the classes,
 * row i's gradient is s_i (A_i p - B_i), A_i = (1 - eps) w_t + (eps / C) W,
 * B_ic = (1 - eps) w_t [c == t] + (eps / C) w_c (both 0 for an ignored row,
 * divided by the mean's denominator): A and B constants, p recorded. */
static int cross_entropy_backward_diff(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    if (!zg__node_needs(n, 0)) return ZG_OK;
    const class_ctx *c = &ZG_NODE_ARGS(n, class_args)->c;
    zg_tensor *x = n->in[0];
    if (x->storage->version != ZG_NODE_ARGS(n, class_args)->x_version)
        return zg__fail(ZG_ERR_STATE,
                        "zg_autograd_grad_opts: create_graph through 'cross_entropy' needs its logits as they were "
                        "at the forward, but they were modified in place since; compute with an out-of-place op "
                        "or clone them first");
    const int64_t C = c->C, S = c->S;
    zg_tensor *A = class_const(c, 1), *B = class_const(c, C);
    if (!A || !B) return ZG_ERR_NOMEM;
    double W = 0;
    for (int64_t k = 0; k < C; k++) W += c->weight ? c->weight[k] : 1.0;
    const double e = c->eps, es = C ? e / (double)C : 0.0, k0 = c->red == ZG_REDUCTION_MEAN ? 1.0 / c->denom : 1.0;
    for (int64_t i = 0; i < c->N * S; i++) {
        const int64_t t = c->target[i];
        if (t == c->ignore) continue;
        const double wt = c->weight ? c->weight[t] : 1.0;
        float *b = zg__f32(B) + row_base(c, i);
        zg__f32(A)[i] = (float)(k0 * ((1.0 - e) * wt + es * W));
        for (int64_t k = 0; k < C; k++) b[k * S] = (float)(k0 * es * (c->weight ? c->weight[k] : 1.0));
        b[t * S] += (float)(k0 * (1.0 - e) * wt);
    }
    zg_tensor *p = zg_softmax(zg_reshape(x, (int64_t[]){c->N, C, S}, 3), 1);
    return (gin[0] = rows_times(c, gout, zg_sub(zg_mul(p, A), B), x)) ? ZG_OK : ZG_ERR_NOMEM;
}

zg_tensor *zg_cross_entropy(zg_tensor *logits, const zg_tensor *target, const zg_loss_opts *opts) {
    const char *fn = "zg_cross_entropy";
    const zg_loss_opts *o = opts ? opts : &default_opts;
    class_ctx c;
    if (check_class_loss(fn, "logits", logits, target, o, &c)) return NULL;
    if (!(o->label_smoothing >= 0.0f && o->label_smoothing <= 1.0f))
        return zg__fail_null("%s: label_smoothing must be in [0, 1], got %g", fn, (double)o->label_smoothing);
    c.eps = o->label_smoothing;

    const int64_t C = c.C, S = c.S, rows = c.N * S;
    zg_tensor *logp = zg__empty_like(logits);
    double *vals = zg__arena_alloc((size_t)(rows ? rows : 1) * sizeof *vals);
    if (!logp || !vals) return NULL;
    zg__softmax_kernel(zg__f32(logits), zg__f32(logp), c.N, C, S, true);
    const float *lp = zg__f32(logp);
    double e = c.eps, es = C ? e / (double)C : 0.0;
    for (int64_t i = 0; i < rows; i++) {
        int64_t t = c.target[i];
        if (t == c.ignore) {
            vals[i] = 0.0;
            continue;
        }
        const float *row = lp + row_base(&c, i);
        double nll = -(c.weight ? c.weight[t] : 1.0) * row[t * S];
        double smooth = 0;
        if (e != 0.0)
            for (int64_t k = 0; k < C; k++) smooth -= (c.weight ? c.weight[k] : 1.0) * row[k * S];
        vals[i] = (1.0 - e) * nll + es * smooth;
    }
    zg_tensor *out = reduce_loss(vals, target, c.red, c.denom);
    if (!out) return NULL;
    zg__node *n = ZG_RECORD(class_args, "cross_entropy", cross_entropy_backward, out, &logits, 1);
    zg__node_set_double_backward(n, cross_entropy_backward_diff);
    if (n) {
        zg__save(n, logp);
        *ZG_NODE_ARGS(n, class_args) = (class_args){c, logits->storage->version};
    }
    return out;
}

/* ---- nll_loss ----------------------------------------------------------- */

static int nll_loss_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    if (!zg__node_needs(n, 0)) return ZG_OK;
    const class_ctx *c = &ZG_NODE_ARGS(n, class_args)->c;
    zg_tensor *gx = zg__zeros_like(n->in[0]);
    if (!gx) return ZG_ERR_NOMEM;
    const float *g = zg__f32(gout);
    float *dx = zg__f32(gx);
    for (int64_t i = 0; i < c->N * c->S; i++) {
        int64_t t = c->target[i];
        if (t == c->ignore) continue;
        dx[row_base(c, i) + t * c->S] = (float)(-(c->weight ? c->weight[t] : 1.0) * elem_scale(g, i, c->red, c->denom));
    }
    gin[0] = gx;
    return ZG_OK;
}

/* nll_loss's gradient with ops: linear in gout, -w_t at each row's target
 * (divided by the mean's denominator) as a constant. */
static int nll_loss_backward_diff(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    if (!zg__node_needs(n, 0)) return ZG_OK;
    const class_ctx *c = &ZG_NODE_ARGS(n, class_args)->c;
    zg_tensor *coef = class_const(c, c->C);
    if (!coef) return ZG_ERR_NOMEM;
    const double k0 = c->red == ZG_REDUCTION_MEAN ? 1.0 / c->denom : 1.0;
    for (int64_t i = 0; i < c->N * c->S; i++) {
        const int64_t t = c->target[i];
        if (t != c->ignore) zg__f32(coef)[row_base(c, i) + t * c->S] = (float)(-k0 * (c->weight ? c->weight[t] : 1.0));
    }
    return (gin[0] = rows_times(c, gout, coef, n->in[0])) ? ZG_OK : ZG_ERR_NOMEM;
}

zg_tensor *zg_nll_loss(zg_tensor *logp, const zg_tensor *target, const zg_loss_opts *opts) {
    const char *fn = "zg_nll_loss";
    const zg_loss_opts *o = opts ? opts : &default_opts;
    class_ctx c;
    if (check_class_loss(fn, "input", logp, target, o, &c)) return NULL;
    c.eps = 0.0f;
    const int64_t rows = c.N * c.S;
    double *vals = zg__arena_alloc((size_t)(rows ? rows : 1) * sizeof *vals);
    if (!vals) return zg__fail_null("%s: out of memory", fn);
    const float *x = zg__f32(logp);
    for (int64_t i = 0; i < rows; i++) {
        int64_t t = c.target[i];
        vals[i] = t == c.ignore ? 0.0 : -(c.weight ? c.weight[t] : 1.0) * x[row_base(&c, i) + t * c.S];
    }
    zg_tensor *out = reduce_loss(vals, target, c.red, c.denom);
    if (!out) return NULL;
    zg__node *n = ZG_RECORD(class_args, "nll_loss", nll_loss_backward, out, &logp, 1);
    zg__node_set_double_backward(n, nll_loss_backward_diff);
    if (n) {
        /* Saved as PyTorch does: an in-place change to it is reported. */
        zg__save(n, logp);
        ZG_NODE_ARGS(n, class_args)->c = c;
    }
    return out;
}

/* ---- mse_loss ----------------------------------------------------------- */

typedef struct {
    zg_reduction reduction;
} mse_args;

/* saved: input, target. */
static int mse_loss_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    const zg_tensor *x = n->saved[0], *y = n->saved[1];
    zg_reduction r = ZG_NODE_ARGS(n, mse_args)->reduction;
    double den = (double)x->numel;
    const float *xd = zg__f32(x), *yd = zg__f32(y), *g = zg__f32(gout);
    zg_tensor *gx = zg__node_needs(n, 0) ? zg__empty_like(x) : NULL;
    zg_tensor *gy = zg__node_needs(n, 1) ? zg__empty_like(y) : NULL;
    if ((zg__node_needs(n, 0) && !gx) || (zg__node_needs(n, 1) && !gy)) return ZG_ERR_NOMEM;
    for (int64_t i = 0; i < x->numel; i++) {
        double d = 2.0 * ((double)xd[i] - yd[i]) * elem_scale(g, i, r, den);
        if (gx) zg__f32(gx)[i] = (float)d;
        if (gy) zg__f32(gy)[i] = (float)-d;
    }
    gin[0] = gx;
    gin[1] = gy;
    return ZG_OK;
}

/* mse_loss's gradients with ops: 2 (x - y) s and its negation. */
static int mse_loss_backward_diff(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    zg_tensor *x = n->saved[0], *y = n->saved[1];
    zg_tensor *s = scale_tensor(gout, ZG_NODE_ARGS(n, mse_args)->reduction, (double)x->numel);
    zg_tensor *d = zg_mul(zg_mul_scalar(zg_sub(x, y), 2.0f), s);
    if (!d || (zg__node_needs(n, 1) && !(gin[1] = zg_neg(d)))) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 0)) gin[0] = d;
    return ZG_OK;
}

zg_tensor *zg_mse_loss(zg_tensor *input, zg_tensor *target, zg_reduction reduction) {
    const char *fn = "zg_mse_loss";
    if (zg__check_f32(fn, input, "input") || zg__check_f32(fn, target, "target")) return NULL;
    if (!zg__same_shape(input, target)) {
        char a[ZG_SHAPE_BUF], b[ZG_SHAPE_BUF];
        return zg__fail_null("%s: input of shape %s and target of shape %s differ", fn,
                             zg__shape_str(input, a, sizeof a), zg__shape_str(target, b, sizeof b));
    }
    if (check_reduction(fn, reduction)) return NULL;
    double *vals = zg__arena_alloc((size_t)(input->numel ? input->numel : 1) * sizeof *vals);
    if (!vals) return zg__fail_null("%s: out of memory", fn);
    const float *x = zg__f32(input), *y = zg__f32(target);
    for (int64_t i = 0; i < input->numel; i++) {
        float d = x[i] - y[i];
        vals[i] = (double)(d * d);
    }
    zg_tensor *out = reduce_loss(vals, input, reduction, (double)input->numel);
    if (!out) return NULL;
    zg__node *n = ZG_RECORD(mse_args, "mse_loss", mse_loss_backward, out, (zg_tensor *[]){input, target}, 2);
    zg__node_set_double_backward(n, mse_loss_backward_diff);
    if (n) {
        zg__save(n, input);
        zg__save(n, target);
        ZG_NODE_ARGS(n, mse_args)->reduction = reduction;
    }
    return out;
}

/* ---- bce_with_logits ---------------------------------------------------- */

/* softplus(-x) = log(1 + exp(-x)) without overflow. */
static inline double softplus_neg(double x) { return log1p(exp(-fabs(x))) + fmax(-x, 0.0); }

/* sigmoid(-x) without overflow. */
static inline double sigmoid_neg(double x) {
    if (x >= 0) {
        double e = exp(-x);
        return e / (1.0 + e);
    }
    return 1.0 / (1.0 + exp(x));
}

/* pos_weight [P] (a copy in the arena), P 0 without. */
typedef struct {
    zg_reduction reduction;
    int64_t P;
    const float *pos_weight;
} bce_args;

/* saved: logits, target. */
static int bce_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    const zg_tensor *x = n->saved[0], *y = n->saved[1];
    const bce_args *a = ZG_NODE_ARGS(n, bce_args);
    zg_reduction r = a->reduction;
    int64_t P = a->P;
    const float *pw = a->pos_weight;
    const float *xd = zg__f32(x), *yd = zg__f32(y), *g = zg__f32(gout);
    zg_tensor *gx = zg__node_needs(n, 0) ? zg__empty_like(x) : NULL;
    zg_tensor *gy = zg__node_needs(n, 1) ? zg__empty_like(y) : NULL;
    if ((zg__node_needs(n, 0) && !gx) || (zg__node_needs(n, 1) && !gy)) return ZG_ERR_NOMEM;
    for (int64_t i = 0; i < x->numel; i++) {
        double s = elem_scale(g, i, r, (double)x->numel);
        double xi = xd[i], yi = yd[i], q = P ? pw[i % P] : 1.0;
        double l = (q - 1.0) * yi + 1.0;
        if (gx) zg__f32(gx)[i] = (float)(s * ((1.0 - yi) - l * sigmoid_neg(xi)));
        if (gy) zg__f32(gy)[i] = (float)(s * (-xi + (q - 1.0) * softplus_neg(xi)));
    }
    gin[0] = gx;
    gin[1] = gy;
    return ZG_OK;
}

/* softplus(-x) = max(-x, 0) + log(1 + exp(-|x|)) with ops, |x| = relu(x) + relu(-x). */
static zg_tensor *softplus_neg_op(zg_tensor *x) {
    zg_tensor *rn = zg_relu(zg_neg(x)), *ax = zg_add(zg_relu(x), rn);
    return zg_add(rn, zg_log(zg_add_scalar(zg_exp(zg_neg(ax)), 1.0f)));
}

/* bce_with_logits's gradients with ops (the formulas of the file's header),
 * pos_weight a constant broadcast over the last dim. */
static int bce_backward_diff(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    zg_tensor *x = n->saved[0], *y = n->saved[1], *q1 = NULL; /* q - 1 */
    const bce_args *a = ZG_NODE_ARGS(n, bce_args);
    if (a->P) {
        if (!(q1 = zg__empty(ZG_FLOAT32, &a->P, 1))) return ZG_ERR_NOMEM;
        for (int64_t k = 0; k < a->P; k++) zg__f32(q1)[k] = a->pos_weight[k] - 1.0f;
    }
    zg_tensor *s = scale_tensor(gout, a->reduction, (double)x->numel);
    if (zg__node_needs(n, 0)) {
        zg_tensor *l = q1 ? zg_add_scalar(zg_mul(y, q1), 1.0f) : NULL, *sg = zg_sigmoid(zg_neg(x));
        zg_tensor *d = zg_sub(zg_rsub_scalar(y, 1.0f), l ? zg_mul(l, sg) : sg);
        if (!(gin[0] = zg_mul(d, s))) return ZG_ERR_NOMEM;
    }
    if (zg__node_needs(n, 1)) {
        zg_tensor *d = q1 ? zg_sub(zg_mul(q1, softplus_neg_op(x)), x) : zg_neg(x);
        if (!(gin[1] = zg_mul(d, s))) return ZG_ERR_NOMEM;
    }
    return ZG_OK;
}

zg_tensor *zg_bce_with_logits(zg_tensor *logits, zg_tensor *target, zg_reduction reduction,
                              const zg_tensor *pos_weight) {
    const char *fn = "zg_bce_with_logits";
    if (zg__check_f32(fn, logits, "logits") || zg__check_f32(fn, target, "target")) return NULL;
    char a[ZG_SHAPE_BUF], b[ZG_SHAPE_BUF];
    zg__shape_str(logits, a, sizeof a);
    if (!zg__same_shape(logits, target))
        return zg__fail_null("%s: logits of shape %s and target of shape %s differ", fn, a,
                             zg__shape_str(target, b, sizeof b));
    if (check_reduction(fn, reduction)) return NULL;
    int64_t P = 0;
    if (pos_weight) {
        if (zg__check_f32(fn, pos_weight, "pos_weight")) return NULL;
        /* Broadcast over the last dim: [C] with C the last size, or [1]. */
        int64_t last = logits->ndim ? logits->shape[logits->ndim - 1] : 1;
        if (pos_weight->ndim != 1 || (pos_weight->shape[0] != last && pos_weight->shape[0] != 1))
            return zg__fail_null("%s: pos_weight of shape %s does not match the last dim of logits of shape %s", fn,
                                 zg__shape_str(pos_weight, b, sizeof b), a);
        P = pos_weight->shape[0];
    }
    double *vals = zg__arena_alloc((size_t)(logits->numel ? logits->numel : 1) * sizeof *vals);
    float *pw = P ? zg__arena_alloc((size_t)P * sizeof *pw) : NULL;
    if (!vals || (P && !pw)) return zg__fail_null("%s: out of memory", fn);
    if (P) memcpy(pw, zg__f32(pos_weight), (size_t)P * sizeof *pw);
    const float *x = zg__f32(logits), *y = zg__f32(target);
    for (int64_t i = 0; i < logits->numel; i++) {
        double xi = x[i], yi = y[i];
        if (P) {
            double l = ((double)pw[i % P] - 1.0) * yi + 1.0;
            vals[i] = (1.0 - yi) * xi + l * softplus_neg(xi);
        } else {
            vals[i] = fmax(xi, 0.0) - xi * yi + log1p(exp(-fabs(xi)));
        }
    }
    zg_tensor *out = reduce_loss(vals, logits, reduction, (double)logits->numel);
    if (!out) return NULL;
    zg__node *n = ZG_RECORD(bce_args, "bce_with_logits", bce_backward, out, (zg_tensor *[]){logits, target}, 2);
    zg__node_set_double_backward(n, bce_backward_diff);
    if (n) {
        zg__save(n, logits);
        zg__save(n, target);
        *ZG_NODE_ARGS(n, bce_args) = (bce_args){reduction, P, pw};
    }
    return out;
}
