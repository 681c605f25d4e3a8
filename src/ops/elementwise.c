/* Element-wise arithmetic with NumPy/PyTorch broadcasting, forward and
 * backward side by side.
 *
 * Broadcasting: shapes are aligned at their trailing dims; a dim of size 1
 * (or a missing leading dim) repeats to the other operand's size. A plan
 * gives every operand a stride per output dim (0 where it repeats), drops
 * output dims of size 1 and merges neighbouring dims that every operand
 * walks contiguously. What is left is a loop over rows of the last dim, in
 * which each operand's stride is 1 (it varies) or 0 (it repeats): same
 * shapes become one contiguous row, [N,C] + [C] becomes N rows in which
 * both operands are contiguous, [N,C] * [N,1] N rows with a repeated
 * scalar. Only the step from one row to the next does index arithmetic.
 *
 * The gradient of a broadcast operand is the output gradient summed over
 * the dims it was repeated along (zg__sum_to_shape). */
#include "pointwise.h"

#include <math.h>

#define PLAN_MAX_IN 3

typedef struct {
    int nd; /* >= 1 after planning */
    int n_in;
    int64_t numel;
    int64_t shape[ZG_MAX_DIMS];
    int64_t st[PLAN_MAX_IN][ZG_MAX_DIMS]; /* element strides, 0 where broadcast */
} plan;

/* Plans a walk over the contiguous output shape `osh` (ond dims) for inputs
 * of shapes ish[i] (ind[i] dims) that broadcast to it. */
static void plan_init(plan *p, const int64_t *osh, int ond, const int64_t *const *ish, const int *ind, int n_in) {
    p->n_in = n_in;
    p->nd = 0;
    p->numel = 1;
    for (int d = 0; d < ond; d++) p->numel *= osh[d];
    for (int d = 0; d < ond; d++) {
        if (osh[d] == 1) continue; /* contributes nothing to any offset */
        int64_t st[PLAN_MAX_IN];
        for (int i = 0; i < n_in; i++) {
            int k = d - (ond - ind[i]);
            st[i] = 0;
            if (k >= 0 && ish[i][k] == osh[d]) {
                st[i] = 1;
                for (int j = k + 1; j < ind[i]; j++) st[i] *= ish[i][j];
            }
        }
        /* Merge into the previous dim when each operand steps over this
         * whole dim exactly as far as one step of the previous dim. */
        bool merge = p->nd > 0;
        for (int i = 0; i < n_in && merge; i++) merge = p->st[i][p->nd - 1] == st[i] * osh[d];
        if (merge) {
            p->shape[p->nd - 1] *= osh[d];
            for (int i = 0; i < n_in; i++) p->st[i][p->nd - 1] = st[i];
        } else {
            p->shape[p->nd] = osh[d];
            for (int i = 0; i < n_in; i++) p->st[i][p->nd] = st[i];
            p->nd++;
        }
    }
    if (p->nd == 0) { /* one element */
        p->nd = 1;
        p->shape[0] = 1;
        for (int i = 0; i < n_in; i++) p->st[i][0] = 0;
    }
}

/* Advances the multi-index over all dims but the last by one row and
 * updates each operand's offset. */
static inline void plan_next_row(const plan *p, int64_t *idx, int64_t *off) {
    for (int d = p->nd - 2; d >= 0; d--) {
        for (int i = 0; i < p->n_in; i++) off[i] += p->st[i][d];
        if (++idx[d] < p->shape[d]) return;
        for (int i = 0; i < p->n_in; i++) off[i] -= p->st[i][d] * p->shape[d];
        idx[d] = 0;
    }
}

/* A row kernel: o[0..n) from inputs x[i] with strides s[i] (0 or 1). */
typedef void (*row_fn)(int64_t n, const float *const *x, const int64_t *s, float *restrict o);

static void plan_run(const plan *p, const float *const *base, float *out, row_fn f) {
    if (p->numel == 0) return;
    int64_t row = p->shape[p->nd - 1], rows = p->numel / row;
    int64_t idx[ZG_MAX_DIMS] = {0}, off[PLAN_MAX_IN] = {0}, s[PLAN_MAX_IN];
    const float *x[PLAN_MAX_IN];
    for (int i = 0; i < p->n_in; i++) s[i] = p->st[i][p->nd - 1];
    for (int64_t r = 0; r < rows; r++) {
        for (int i = 0; i < p->n_in; i++) x[i] = base[i] + off[i];
        f(row, x, s, out + r * row);
        plan_next_row(p, idx, off);
    }
}

/* Two-input row kernel for y = EXPR(a, b): specialised loops for both
 * contiguous and for either operand repeated. PRAGMA is ZG_SIMD for
 * arithmetic bodies, empty for bodies that call libm. */
#define ROW2(NAME, PRAGMA, EXPR)                                                                               \
    static void NAME(int64_t n, const float *const *x, const int64_t *s, float *restrict o) {                  \
        const float *restrict pa = x[0], *restrict pb = x[1];                                                  \
        if (s[0] == 1 && s[1] == 1) {                                                                          \
            PRAGMA for (int64_t i = 0; i < n; i++) {                                                           \
                const float a = pa[i], b = pb[i];                                                              \
                o[i] = (EXPR);                                                                                 \
            }                                                                                                  \
        } else if (s[0] == 1) {                                                                                \
            const float b = pb[0];                                                                             \
            PRAGMA for (int64_t i = 0; i < n; i++) {                                                           \
                const float a = pa[i];                                                                         \
                o[i] = (EXPR);                                                                                 \
            }                                                                                                  \
        } else if (s[1] == 1) {                                                                                \
            const float a = pa[0];                                                                             \
            PRAGMA for (int64_t i = 0; i < n; i++) {                                                           \
                const float b = pb[i];                                                                         \
                o[i] = (EXPR);                                                                                 \
            }                                                                                                  \
        } else {                                                                                               \
            PRAGMA for (int64_t i = 0; i < n; i++) {                                                           \
                const float a = pa[i * s[0]], b = pb[i * s[1]];                                                \
                o[i] = (EXPR);                                                                                 \
            }                                                                                                  \
        }                                                                                                      \
    }

/* Three-input row kernel (a backward): g is the output gradient, always
 * contiguous; a and b are the broadcast inputs. */
#define ROW3(NAME, PRAGMA, EXPR)                                                                               \
    static void NAME(int64_t n, const float *const *x, const int64_t *s, float *restrict o) {                  \
        const float *restrict pg = x[0], *restrict pa = x[1], *restrict pb = x[2];                             \
        if (s[0] == 1 && s[1] == 1 && s[2] == 1) {                                                             \
            PRAGMA for (int64_t i = 0; i < n; i++) {                                                           \
                const float g = pg[i], a = pa[i], b = pb[i];                                                   \
                o[i] = (EXPR);                                                                                 \
            }                                                                                                  \
        } else {                                                                                               \
            PRAGMA for (int64_t i = 0; i < n; i++) {                                                           \
                const float g = pg[i * s[0]], a = pa[i * s[1]], b = pb[i * s[2]];                              \
                o[i] = (EXPR);                                                                                 \
            }                                                                                                  \
        }                                                                                                      \
    }

ROW2(row_add, ZG_SIMD, a + b)
ROW2(row_sub, ZG_SIMD, a - b)
ROW2(row_mul, ZG_SIMD, a * b)
ROW2(row_div, ZG_SIMD, a / b)
ROW2(row_pow, , powf(a, b))
/* d(a/b)/db = -a/b^2, written as PyTorch does: -g * ((a / b) / b). */
ROW3(row_div_db, ZG_SIMD, -g * ((a / b) / b))
/* d(a^b)/da = b a^(b-1), 0 where b == 0 (also at a == 0). */
ROW3(row_pow_da, , b == 0.0f ? 0.0f : g * (b * powf(a, b - 1.0f)))
/* d(a^b)/db = a^b log a, 0 where a == 0 and b >= 0 (the limit). */
ROW3(row_pow_db, , (a == 0.0f && b >= 0.0f) ? 0.0f : g * (powf(a, b) * logf(a)))

/* Runs f over inputs broadcast to the contiguous output shape osh. */
static zg_tensor *bcast_apply(const int64_t *osh, int ond, zg_tensor *const *in, int n_in, row_fn f) {
    zg_tensor *out = zg__empty(ZG_FLOAT32, osh, ond);
    if (!out) return NULL;
    const int64_t *ish[PLAN_MAX_IN];
    int ind[PLAN_MAX_IN];
    const float *base[PLAN_MAX_IN];
    for (int i = 0; i < n_in; i++) {
        ish[i] = in[i]->shape;
        ind[i] = in[i]->ndim;
        base[i] = zg__f32(in[i]);
    }
    plan p;
    plan_init(&p, osh, ond, ish, ind, n_in);
    plan_run(&p, base, zg__f32(out), f);
    return out;
}

/* The broadcast shape of a and b, or an error naming both shapes. */
static int broadcast_shape(const char *fn, const zg_tensor *a, const zg_tensor *b, int64_t *out, int *ond) {
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int d = 0; d < nd; d++) {
        int ka = d - (nd - a->ndim), kb = d - (nd - b->ndim);
        int64_t sa = ka >= 0 ? a->shape[ka] : 1, sb = kb >= 0 ? b->shape[kb] : 1;
        if (sa == sb || sb == 1)
            out[d] = sa;
        else if (sa == 1)
            out[d] = sb;
        else {
            char b1[ZG_SHAPE_BUF], b2[ZG_SHAPE_BUF];
            return zg__fail(ZG_ERR_SHAPE,
                            "%s: shapes %s and %s cannot be broadcast together (dim %d: %lld vs %lld)", fn,
                            zg__shape_str(a, b1, sizeof b1), zg__shape_str(b, b2, sizeof b2), d - nd,
                            (long long)sa, (long long)sb);
        }
    }
    *ond = nd;
    return ZG_OK;
}

static zg_tensor *binary_forward(const char *fn, zg_tensor *a, zg_tensor *b, row_fn f) {
    if (zg__check_f32(fn, a, "a") || zg__check_f32(fn, b, "b")) return NULL;
    int64_t osh[ZG_MAX_DIMS];
    int ond = 0;
    if (broadcast_shape(fn, a, b, osh, &ond)) return NULL;
    zg_tensor *ins[2] = {a, b};
    return bcast_apply(osh, ond, ins, 2, f);
}

/* ---- sum back to an input's shape ----------------------------------------- */

zg_tensor *zg__sum_to_shape(const zg_tensor *g, const int64_t *shape, int ndim) {
    char b1[ZG_SHAPE_BUF];
    if (!g || g->dtype != ZG_FLOAT32) return zg__fail_null("zg__sum_to_shape: gradient is NULL or not float32");
    if (ndim < 0 || ndim > g->ndim || (ndim > 0 && !shape))
        return zg__fail_null("zg__sum_to_shape: cannot sum a gradient of shape %s to %d dims",
                             zg__shape_str(g, b1, sizeof b1), ndim);
    for (int k = 0; k < ndim; k++) {
        int64_t gd = g->shape[k + g->ndim - ndim];
        if (shape[k] != gd && shape[k] != 1)
            return zg__fail_null("zg__sum_to_shape: cannot sum a gradient of shape %s to size %lld in dim %d",
                                 zg__shape_str(g, b1, sizeof b1), (long long)shape[k], k);
    }
    zg_tensor *out = zg__empty(ZG_FLOAT32, shape, ndim);
    if (!out) return NULL;
    float *o = zg__f32(out);
    const float *src = zg__f32(g);
    if (out->numel == g->numel) { /* only size-1 dims differ: nothing to add */
        memcpy(o, src, (size_t)g->numel * sizeof(float));
        return out;
    }
    double *acc = zg__arena_calloc((size_t)(out->numel ? out->numel : 1) * sizeof *acc);
    if (!acc) return zg__fail_null("zg__sum_to_shape: out of memory");
    /* Walk g's rows; the target's stride in a row is 1 (kept dim: add
     * element-wise) or 0 (summed dim: add the row's sum). */
    const int64_t *ish[1] = {shape};
    int ind[1] = {ndim};
    plan p;
    plan_init(&p, g->shape, g->ndim, ish, ind, 1);
    if (p.numel > 0) {
        int64_t row = p.shape[p.nd - 1], rows = p.numel / row, s = p.st[0][p.nd - 1];
        int64_t idx[ZG_MAX_DIMS] = {0}, off[1] = {0};
        for (int64_t r = 0; r < rows; r++) {
            const float *x = src + r * row;
            double *a = acc + off[0];
            if (s) {
                ZG_SIMD for (int64_t i = 0; i < row; i++) a[i] += x[i];
            } else {
                a[0] += zg__fsum(x, row);
            }
            plan_next_row(&p, idx, off);
        }
    }
    for (int64_t i = 0; i < out->numel; i++) o[i] = (float)acc[i];
    return out;
}

/* The gradient of input `in` from a gradient `full` of the output's shape:
 * full itself when the shapes agree, else its sum over broadcast dims. */
static zg_tensor *reduce_like(zg_tensor *full, const zg_tensor *in) {
    if (!full) return NULL;
    return zg__same_shape(full, in) ? full : zg__sum_to_shape(full, in->shape, in->ndim);
}

/* ---- differentiable broadcast and its reverse ------------------------------- */

/* The graph-recording pair a create_graph pass needs: g summed down to a
 * shape, and g repeated up to one. Each is the other's backward. */
static void row_copy(int64_t n, const float *const *x, const int64_t *s, float *restrict o) {
    const float *restrict p = x[0];
    if (s[0] == 1)
        memcpy(o, p, (size_t)n * sizeof(float));
    else
        for (int64_t i = 0; i < n; i++) o[i] = p[0];
}

static int sum_to_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    const zg_tensor *in = n->in[0];
    return (gin[0] = bcast_apply(in->shape, in->ndim, &g, 1, row_copy)) ? ZG_OK : ZG_ERR_NOMEM;
}
static int sum_to_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    return (gin[0] = zg__expand(g, n->in[0]->shape, n->in[0]->ndim)) ? ZG_OK : ZG_ERR_NOMEM;
}
static int expand_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    return (gin[0] = zg__sum_to_shape(g, n->in[0]->shape, n->in[0]->ndim)) ? ZG_OK : ZG_ERR_NOMEM;
}
static int expand_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    return (gin[0] = zg__sum_to(g, n->in[0]->shape, n->in[0]->ndim)) ? ZG_OK : ZG_ERR_NOMEM;
}

zg_tensor *zg__sum_to(zg_tensor *g, const int64_t *shape, int ndim) {
    if (g && g->ndim == ndim && !memcmp(g->shape, shape, (size_t)ndim * sizeof *shape)) return g;
    zg_tensor *out = zg__sum_to_shape(g, shape, ndim);
    if (out)
        zg__node_set_double_backward(zg__record("sum_to_size", sum_to_backward, out, &g, 1), sum_to_backward_diff);
    return out;
}

zg_tensor *zg__expand(zg_tensor *g, const int64_t *shape, int ndim) {
    if (!g) return NULL;
    if (g->ndim == ndim && !memcmp(g->shape, shape, (size_t)ndim * sizeof *shape)) return g;
    zg_tensor *out = bcast_apply(shape, ndim, &g, 1, row_copy);
    if (out) zg__node_set_double_backward(zg__record("expand", expand_backward, out, &g, 1), expand_backward_diff);
    return out;
}

/* reduce_like for a create_graph pass: recorded. */
static zg_tensor *reduce_like_diff(zg_tensor *full, const zg_tensor *in) {
    return full ? zg__sum_to(full, in->shape, in->ndim) : NULL;
}

static zg_tensor *negate(zg_tensor *t, bool in_place) {
    zg_tensor *o = in_place ? t : zg__empty_like(t);
    if (!o) return NULL;
    float *d = zg__f32(o);
    const float *s = zg__f32(t);
    ZG_SIMD for (int64_t i = 0; i < t->numel; i++) d[i] = -s[i];
    return o;
}

/* ---- add, sub --------------------------------------------------------------- */

static int add_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    for (int i = 0; i < 2; i++)
        if (zg__node_needs(n, i) && !(gin[i] = reduce_like(g, n->in[i]))) return ZG_ERR_NOMEM;
    return ZG_OK;
}

static int add_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    for (int i = 0; i < 2; i++)
        if (zg__node_needs(n, i) && !(gin[i] = reduce_like_diff(g, n->in[i]))) return ZG_ERR_NOMEM;
    return ZG_OK;
}

zg_tensor *zg_add(zg_tensor *a, zg_tensor *b) {
    zg_tensor *out = binary_forward("zg_add", a, b, row_add);
    if (out)
        zg__node_set_double_backward(zg__record("add", add_backward, out, (zg_tensor *[]){a, b}, 2), add_backward_diff);
    return out;
}

static int sub_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    if (zg__node_needs(n, 0) && !(gin[0] = reduce_like(g, n->in[0]))) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 1)) {
        zg_tensor *r = reduce_like(g, n->in[1]);
        /* A reduced gradient is fresh and can be negated in place. */
        if (!r || !(gin[1] = negate(r, r != g))) return ZG_ERR_NOMEM;
    }
    return ZG_OK;
}

static int sub_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    if (zg__node_needs(n, 0) && !(gin[0] = reduce_like_diff(g, n->in[0]))) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 1) && !(gin[1] = zg_neg(reduce_like_diff(g, n->in[1])))) return ZG_ERR_NOMEM;
    return ZG_OK;
}

zg_tensor *zg_sub(zg_tensor *a, zg_tensor *b) {
    zg_tensor *out = binary_forward("zg_sub", a, b, row_sub);
    if (out)
        zg__node_set_double_backward(zg__record("sub", sub_backward, out, (zg_tensor *[]){a, b}, 2), sub_backward_diff);
    return out;
}

/* ---- mul, div ----------------------------------------------------------------- */

/* mul and div: the slots of a and b in n->saved, -1 where an operand was
 * not needed. */
typedef struct {
    int a_slot, b_slot;
} operands_args;

static void save_operands(zg__node *n, zg_tensor *a, bool save_a, zg_tensor *b, bool save_b) {
    operands_args *o = ZG_NODE_ARGS(n, operands_args);
    o->a_slot = o->b_slot = -1;
    if (save_a) {
        o->a_slot = n->n_saved;
        zg__save(n, a);
    }
    if (save_b) {
        o->b_slot = n->n_saved;
        zg__save(n, b);
    }
}

static zg_tensor *grad_of(zg__node *n, zg_tensor *g, int i, row_fn f, zg_tensor *x) {
    zg_tensor *ins[2] = {g, x};
    return reduce_like(bcast_apply(g->shape, g->ndim, ins, 2, f), n->in[i]);
}

/* d(ab) = b da + a db */
static int mul_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    /* An input that did not require grad at the forward has no saved
     * partner (and, as in PyTorch, gets no gradient from this node). */
    const operands_args *o = ZG_NODE_ARGS(n, operands_args);
    if (zg__node_needs(n, 0) && o->b_slot >= 0 && !(gin[0] = grad_of(n, g, 0, row_mul, n->saved[o->b_slot])))
        return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 1) && o->a_slot >= 0 && !(gin[1] = grad_of(n, g, 1, row_mul, n->saved[o->a_slot])))
        return ZG_ERR_NOMEM;
    return ZG_OK;
}

static int mul_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    const operands_args *o = ZG_NODE_ARGS(n, operands_args);
    for (int i = 0; i < 2; i++) {
        const int partner = i ? o->a_slot : o->b_slot;
        if (zg__node_needs(n, i) && partner >= 0 &&
            !(gin[i] = reduce_like_diff(zg_mul(g, n->saved[partner]), n->in[i])))
            return ZG_ERR_NOMEM;
    }
    return ZG_OK;
}

zg_tensor *zg_mul(zg_tensor *a, zg_tensor *b) {
    zg_tensor *out = binary_forward("zg_mul", a, b, row_mul);
    if (!out) return NULL;
    zg__node *n = ZG_RECORD(operands_args, "mul", mul_backward, out, (zg_tensor *[]){a, b}, 2);
    zg__node_set_double_backward(n, mul_backward_diff);
    /* Each operand is needed only for the other's gradient. */
    if (n) save_operands(n, a, b->requires_grad, b, a->requires_grad);
    return out;
}

/* d(a/b) = da / b - a/b^2 db */
static int div_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    const operands_args *o = ZG_NODE_ARGS(n, operands_args);
    zg_tensor *b = n->saved[o->b_slot];
    if (zg__node_needs(n, 0) && !(gin[0] = grad_of(n, g, 0, row_div, b))) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 1) && o->a_slot >= 0) {
        zg_tensor *ins[3] = {g, n->saved[o->a_slot], b};
        if (!(gin[1] = reduce_like(bcast_apply(g->shape, g->ndim, ins, 3, row_div_db), b))) return ZG_ERR_NOMEM;
    }
    return ZG_OK;
}

/* The same with ops: da = g / b, db = -(g (a / b) / b). */
static int div_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    const operands_args *o = ZG_NODE_ARGS(n, operands_args);
    zg_tensor *b = n->saved[o->b_slot];
    if (zg__node_needs(n, 0) && !(gin[0] = reduce_like_diff(zg_div(g, b), n->in[0]))) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 1) && o->a_slot >= 0 &&
        !(gin[1] = reduce_like_diff(zg_neg(zg_mul(g, zg_div(zg_div(n->saved[o->a_slot], b), b))), b)))
        return ZG_ERR_NOMEM;
    return ZG_OK;
}

zg_tensor *zg_div(zg_tensor *a, zg_tensor *b) {
    zg_tensor *out = binary_forward("zg_div", a, b, row_div);
    if (!out) return NULL;
    zg__node *n = ZG_RECORD(operands_args, "div", div_backward, out, (zg_tensor *[]){a, b}, 2);
    zg__node_set_double_backward(n, div_backward_diff);
    if (n) save_operands(n, a, b->requires_grad, b, true);
    return out;
}

/* ---- pow (tensor exponent) ------------------------------------------------------ */

static int pow_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    zg_tensor *ins[3] = {g, n->saved[0], n->saved[1]};
    if (zg__node_needs(n, 0) && !(gin[0] = reduce_like(bcast_apply(g->shape, g->ndim, ins, 3, row_pow_da), ins[1])))
        return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 1) && !(gin[1] = reduce_like(bcast_apply(g->shape, g->ndim, ins, 3, row_pow_db), ins[2])))
        return ZG_ERR_NOMEM;
    return ZG_OK;
}

zg_tensor *zg_pow(zg_tensor *a, zg_tensor *b) {
    zg_tensor *out = binary_forward("zg_pow", a, b, row_pow);
    if (!out) return NULL;
    zg__node *n = zg__record("pow", pow_backward, out, (zg_tensor *[]){a, b}, 2);
    if (n) {
        zg__save(n, a);
        zg__save(n, b);
    }
    return out;
}

/* ---- tensor-scalar ops ------------------------------------------------------------ */

/* The constant of a tensor-scalar op's backward: the factor of g (neg,
 * add / sub / mul by a scalar), the divisor (div_scalar), the exponent
 * (pow_scalar). */
typedef struct {
    float s;
} scalar_args;

/* Backward of ops whose gradient is g times a constant. */
static int scale_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    const float s = ZG_NODE_ARGS(n, scalar_args)->s;
    if (s == 1.0f) {
        gin[0] = g;
        return ZG_OK;
    }
    if (!(gin[0] = zg__empty_like(g))) return ZG_ERR_NOMEM;
    ZG_MAP1(gin[0], g, x * s);
    return ZG_OK;
}

static int scale_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    const float s = ZG_NODE_ARGS(n, scalar_args)->s;
    return (gin[0] = s == 1.0f ? g : zg_mul_scalar(g, s)) ? ZG_OK : ZG_ERR_NOMEM;
}

/* Records a node whose backward is g * factor (saves nothing). */
static zg_tensor *record_scale(const char *name, zg_tensor *a, zg_tensor *out, double factor) {
    zg__node *n = ZG_RECORD(scalar_args, name, scale_backward, out, &a, 1);
    zg__node_set_double_backward(n, scale_backward_diff);
    if (n) ZG_NODE_ARGS(n, scalar_args)->s = (float)factor;
    return out;
}

zg_tensor *zg_neg(zg_tensor *a) {
    zg_tensor *out = zg__unary_out("zg_neg", a);
    if (!out) return NULL;
    ZG_MAP1(out, a, -x);
    return record_scale("neg", a, out, -1.0);
}

zg_tensor *zg_add_scalar(zg_tensor *a, float s) {
    zg_tensor *out = zg__unary_out("zg_add_scalar", a);
    if (!out) return NULL;
    ZG_MAP1(out, a, x + s);
    return record_scale("add_scalar", a, out, 1.0);
}

zg_tensor *zg_sub_scalar(zg_tensor *a, float s) {
    zg_tensor *out = zg__unary_out("zg_sub_scalar", a);
    if (!out) return NULL;
    ZG_MAP1(out, a, x - s);
    return record_scale("sub_scalar", a, out, 1.0);
}

zg_tensor *zg_rsub_scalar(zg_tensor *a, float s) {
    zg_tensor *out = zg__unary_out("zg_rsub_scalar", a);
    if (!out) return NULL;
    ZG_MAP1(out, a, s - x);
    return record_scale("rsub_scalar", a, out, -1.0);
}

zg_tensor *zg_mul_scalar(zg_tensor *a, float s) {
    zg_tensor *out = zg__unary_out("zg_mul_scalar", a);
    if (!out) return NULL;
    ZG_MAP1(out, a, x * s);
    return record_scale("mul_scalar", a, out, s);
}

/* Backward of a / s: g / s (a true division, as the forward). */
static int div_scalar_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    const float s = ZG_NODE_ARGS(n, scalar_args)->s;
    if (!(gin[0] = zg__empty_like(g))) return ZG_ERR_NOMEM;
    ZG_MAP1(gin[0], g, x / s);
    return ZG_OK;
}

static int div_scalar_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    return (gin[0] = zg_div_scalar(g, ZG_NODE_ARGS(n, scalar_args)->s)) ? ZG_OK : ZG_ERR_NOMEM;
}

zg_tensor *zg_div_scalar(zg_tensor *a, float s) {
    zg_tensor *out = zg__unary_out("zg_div_scalar", a);
    if (!out) return NULL;
    ZG_MAP1(out, a, x / s);
    zg__node *n = ZG_RECORD(scalar_args, "div_scalar", div_scalar_backward, out, &a, 1);
    zg__node_set_double_backward(n, div_scalar_backward_diff);
    if (n) ZG_NODE_ARGS(n, scalar_args)->s = s;
    return out;
}

/* out = in^p, with the exact forms PyTorch uses for the common exponents
 * (x*x for 2, sqrt for 0.5, ...); each is its own plain loop. */
static void pow_const(zg_tensor *out, const zg_tensor *in, float p) {
    if (p == 2.0f)
        ZG_MAP1(out, in, x * x);
    else if (p == 1.0f)
        ZG_MAP1(out, in, x);
    else if (p == 0.0f)
        ZG_MAP1(out, in, ((void)x, 1.0f));
    else if (p == 3.0f)
        ZG_MAP1(out, in, x * x * x);
    else if (p == 0.5f)
        ZG_MAP1_LIBM(out, in, sqrtf(x));
    else if (p == -0.5f)
        ZG_MAP1_LIBM(out, in, 1.0f / sqrtf(x));
    else if (p == -1.0f)
        ZG_MAP1(out, in, 1.0f / x);
    else if (p == -2.0f)
        ZG_MAP1(out, in, 1.0f / (x * x));
    else
        ZG_MAP1_LIBM(out, in, powf(x, p));
}

/* d(x^p) = p x^(p-1) dx; zero for p == 0. */
static int pow_scalar_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    const float p = ZG_NODE_ARGS(n, scalar_args)->s;
    if (p == 0.0f) return (gin[0] = zg__zeros_like(g)) ? ZG_OK : ZG_ERR_NOMEM;
    zg_tensor *t = zg__empty_like(g);
    if (!t) return ZG_ERR_NOMEM;
    pow_const(t, n->saved[0], p - 1.0f);
    float *d = zg__f32(t);
    const float *gd = zg__f32(g);
    ZG_SIMD for (int64_t i = 0; i < t->numel; i++) d[i] = gd[i] * (p * d[i]);
    gin[0] = t;
    return ZG_OK;
}

/* g (p x^(p-1)) with ops. */
static int pow_scalar_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    const float p = ZG_NODE_ARGS(n, scalar_args)->s;
    if (p == 0.0f) return (gin[0] = zg__zeros_like(g)) ? ZG_OK : ZG_ERR_NOMEM;
    return (gin[0] = zg_mul(g, zg_mul_scalar(zg_pow_scalar(n->saved[0], p - 1.0f), p))) ? ZG_OK : ZG_ERR_NOMEM;
}

zg_tensor *zg_pow_scalar(zg_tensor *a, float p) {
    zg_tensor *out = zg__unary_out("zg_pow_scalar", a);
    if (!out) return NULL;
    pow_const(out, a, p);
    zg__node *n = ZG_RECORD(scalar_args, "pow_scalar", pow_scalar_backward, out, &a, 1);
    zg__node_set_double_backward(n, pow_scalar_backward_diff);
    if (n) {
        ZG_NODE_ARGS(n, scalar_args)->s = p;
        zg__save(n, a);
    }
    return out;
}

/* ---- exp, log, sqrt ------------------------------------------------------------------ */

/* d(e^x) = e^x dx: uses the saved output. */
static int exp_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    if (!(gin[0] = zg__empty_like(g))) return ZG_ERR_NOMEM;
    ZG_MAP2(gin[0], g, n->saved[0], g * x);
    return ZG_OK;
}

static int exp_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    return (gin[0] = zg_mul(g, n->saved[0])) ? ZG_OK : ZG_ERR_NOMEM;
}

zg_tensor *zg_exp(zg_tensor *a) {
    zg_tensor *out = zg__unary_out("zg_exp", a);
    if (!out) return NULL;
    ZG_MAP1_LIBM(out, a, expf(x));
    zg__node *n = zg__record("exp", exp_backward, out, &a, 1);
    zg__node_set_double_backward(n, exp_backward_diff);
    if (n) zg__save(n, out);
    return out;
}

/* d(log x) = dx / x */
static int log_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    if (!(gin[0] = zg__empty_like(g))) return ZG_ERR_NOMEM;
    ZG_MAP2(gin[0], g, n->saved[0], g / x);
    return ZG_OK;
}

static int log_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    return (gin[0] = zg_div(g, n->saved[0])) ? ZG_OK : ZG_ERR_NOMEM;
}

zg_tensor *zg_log(zg_tensor *a) {
    zg_tensor *out = zg__unary_out("zg_log", a);
    if (!out) return NULL;
    ZG_MAP1_LIBM(out, a, logf(x));
    zg__node *n = zg__record("log", log_backward, out, &a, 1);
    zg__node_set_double_backward(n, log_backward_diff);
    if (n) zg__save(n, a);
    return out;
}

/* d(sqrt x) = dx / (2 sqrt x): uses the saved output. */
static int sqrt_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    if (!(gin[0] = zg__empty_like(g))) return ZG_ERR_NOMEM;
    ZG_MAP2(gin[0], g, n->saved[0], g / (2.0f * x));
    return ZG_OK;
}

static int sqrt_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    return (gin[0] = zg_div(g, zg_mul_scalar(n->saved[0], 2.0f))) ? ZG_OK : ZG_ERR_NOMEM;
}

zg_tensor *zg_sqrt(zg_tensor *a) {
    zg_tensor *out = zg__unary_out("zg_sqrt", a);
    if (!out) return NULL;
    ZG_MAP1_LIBM(out, a, sqrtf(x));
    zg__node *n = zg__record("sqrt", sqrt_backward, out, &a, 1);
    zg__node_set_double_backward(n, sqrt_backward_diff);
    if (n) zg__save(n, out);
    return out;
}
