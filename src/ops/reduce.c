/* Reductions: sum / mean over everything or over one dim, and max over one
 * dim; forward and backward side by side. Sums accumulate in double so
 * that long reductions keep float32 precision.
 *
 * A reduction over dim d views the contiguous input as [outer, n, inner]
 * (n = size of d); the output (keepdim or not) is [outer, inner] in
 * memory, whichever shape it carries. */
#include "pointwise.h"

#include <math.h>

typedef struct {
    int dim; /* wrapped */
    int64_t outer, n, inner;
    int64_t shape[ZG_MAX_DIMS]; /* output shape */
    int ndim;
} dim_split;

/* Validates (a, dim) for `fn` and fills the split; ZG_OK or an error. */
static int split_dim(const char *fn, const zg_tensor *a, int dim, bool keepdim, dim_split *s) {
    if (zg__check_f32(fn, a, "input")) return ZG_ERR_ARG;
    int d = zg__wrap_dim(fn, dim, a->ndim); /* a 0-dim tensor takes 0 or -1 */
    if (d < 0) return ZG_ERR_ARG;
    s->dim = d;
    s->outer = s->inner = s->n = 1;
    s->ndim = 0;
    if (a->ndim == 0) return ZG_OK; /* a 0-dim tensor reduces to itself */
    for (int i = 0; i < d; i++) s->outer *= a->shape[i];
    s->n = a->shape[d];
    for (int i = d + 1; i < a->ndim; i++) s->inner *= a->shape[i];
    for (int i = 0; i < a->ndim; i++) {
        if (i == d && !keepdim) continue;
        s->shape[s->ndim++] = i == d ? 1 : a->shape[i];
    }
    return ZG_OK;
}

/* out[o, j] = sum_k x[o, k, j] / div */
static void sum_rows(const float *x, float *out, int64_t outer, int64_t n, int64_t inner, double div, double *acc) {
    if (inner == 1) {
        for (int64_t o = 0; o < outer; o++) out[o] = (float)(zg__fsum(x + o * n, n) / div);
        return;
    }
    for (int64_t o = 0; o < outer; o++) {
        const float *base = x + o * n * inner;
        ZG_SIMD for (int64_t j = 0; j < inner; j++) acc[j] = 0;
        for (int64_t k = 0; k < n; k++) {
            const float *row = base + k * inner;
            ZG_SIMD for (int64_t j = 0; j < inner; j++) acc[j] += row[j];
        }
        ZG_SIMD for (int64_t j = 0; j < inner; j++) out[o * inner + j] = (float)(acc[j] / div);
    }
}

/* gin[o, k, j] = g[o, j] / div: the gradient of a sum (div 1) or of a
 * mean (div n; a division, as PyTorch's mean backward). */
static zg_tensor *expand_grad(const zg_tensor *g, const zg_tensor *like, int64_t outer, int64_t n, int64_t inner,
                              float div) {
    zg_tensor *r = zg__empty_like(like);
    if (!r) return NULL;
    float *d = zg__f32(r);
    const float *gs = zg__f32(g);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < n; k++) {
            float *row = d + (o * n + k) * inner;
            const float *grow = gs + o * inner;
            if (div == 1.0f) {
                ZG_SIMD for (int64_t j = 0; j < inner; j++) row[j] = grow[j];
            } else {
                ZG_SIMD for (int64_t j = 0; j < inner; j++) row[j] = grow[j] / div;
            }
        }
    return r;
}

/* ---- sum, mean over all elements -------------------------------------------- */

typedef struct {
    bool mean;
} sum_all_args;

/* Gradient of sum or mean: every element gets the output gradient
 * (divided by N for the mean). Reads only the input's shape, so nothing is
 * saved. */
static int sum_all_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    const zg_tensor *x = n->in[0];
    float v = zg__f32(g)[0];
    if (ZG_NODE_ARGS(n, sum_all_args)->mean) v /= (float)x->numel;
    if (!(gin[0] = zg__empty_like(x))) return ZG_ERR_NOMEM;
    float *d = zg__f32(gin[0]);
    ZG_SIMD for (int64_t i = 0; i < x->numel; i++) d[i] = v;
    return ZG_OK;
}

/* The same with ops: g repeated to the input's shape (then / N). */
static int sum_all_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    const zg_tensor *x = n->in[0];
    zg_tensor *e = zg__expand(g, x->shape, x->ndim);
    if (e && ZG_NODE_ARGS(n, sum_all_args)->mean) e = zg_div_scalar(e, (float)x->numel);
    return (gin[0] = e) ? ZG_OK : ZG_ERR_NOMEM;
}

static zg_tensor *reduce_all(const char *fn, const char *name, zg_tensor *a, bool mean) {
    if (zg__check_f32(fn, a, "input")) return NULL;
    zg_tensor *out = zg__empty(ZG_FLOAT32, NULL, 0);
    if (!out) return NULL;
    double s = zg__fsum(zg__f32(a), a->numel);
    zg__f32(out)[0] = (float)(mean ? s / (double)a->numel : s);
    zg__node *n = ZG_RECORD(sum_all_args, name, sum_all_backward, out, &a, 1);
    zg__node_set_double_backward(n, sum_all_backward_diff);
    if (n) ZG_NODE_ARGS(n, sum_all_args)->mean = mean;
    return out;
}

zg_tensor *zg_sum(zg_tensor *a) { return reduce_all("zg_sum", "sum", a, false); }
zg_tensor *zg_mean(zg_tensor *a) { return reduce_all("zg_mean", "mean", a, true); }

/* ---- sum, mean over one dim ----------------------------------------------------- */

/* The input seen as [outer, n, inner], reduced over n. */
typedef struct {
    int64_t outer, n, inner;
    bool mean;
} dim_args;

static int sum_dim_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    const dim_args *d = ZG_NODE_ARGS(n, dim_args);
    float div = d->mean ? (float)d->n : 1.0f;
    return (gin[0] = expand_grad(g, n->in[0], d->outer, d->n, d->inner, div)) ? ZG_OK : ZG_ERR_NOMEM;
}

/* The same with ops: g seen as [outer, 1, inner], repeated to [outer, n,
 * inner] (then / n), seen with the input's shape. */
static int sum_dim_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    const dim_args *d = ZG_NODE_ARGS(n, dim_args);
    zg_tensor *e = zg__expand(zg_reshape(g, (int64_t[]){d->outer, 1, d->inner}, 3),
                              (int64_t[]){d->outer, d->n, d->inner}, 3);
    if (e && d->mean) e = zg_div_scalar(e, (float)d->n);
    return (gin[0] = e ? zg_reshape(e, n->in[0]->shape, n->in[0]->ndim) : NULL) ? ZG_OK : ZG_ERR_NOMEM;
}

static zg_tensor *reduce_dim(const char *fn, const char *name, zg_tensor *a, int dim, bool keepdim, bool mean) {
    dim_split s;
    if (split_dim(fn, a, dim, keepdim, &s)) return NULL;
    zg_tensor *out = zg__empty(ZG_FLOAT32, s.shape, s.ndim);
    double *acc = zg__arena_alloc((size_t)s.inner * sizeof *acc);
    if (!out || !acc) return zg__fail_null("%s: out of memory", fn);
    sum_rows(zg__f32(a), zg__f32(out), s.outer, s.n, s.inner, mean ? (double)s.n : 1.0, acc);
    zg__node *n = ZG_RECORD(dim_args, name, sum_dim_backward, out, &a, 1);
    zg__node_set_double_backward(n, sum_dim_backward_diff);
    if (n) *ZG_NODE_ARGS(n, dim_args) = (dim_args){s.outer, s.n, s.inner, mean};
    return out;
}

zg_tensor *zg_sum_dim(zg_tensor *a, int dim, bool keepdim) {
    return reduce_dim("zg_sum_dim", "sum_dim", a, dim, keepdim, false);
}

zg_tensor *zg_mean_dim(zg_tensor *a, int dim, bool keepdim) {
    return reduce_dim("zg_mean_dim", "mean_dim", a, dim, keepdim, true);
}

/* ---- max over one dim --------------------------------------------------------------- */

/* v beats the best so far: greater, or the first NaN (max propagates NaN,
 * as torch.max does). Ties keep the earlier index. */
static inline bool beats(float v, float best) { return v > best || (isnan(v) && !isnan(best)); }

/* The gradient goes to the element each output took its value from:
 * gin[o, idx[o, j], j] = g[o, j], zero elsewhere. */
typedef struct {
    dim_args a;
    const int64_t *idx; /* [outer, inner]: the place each output took */
} argmax_map;

static void max_dim_scatter(const void *ctx, const float *gs, float *d) {
    const argmax_map *m = ctx;
    const int64_t outer = m->a.outer, cnt = m->a.n, inner = m->a.inner;
    memset(d, 0, (size_t)(outer * cnt * inner) * sizeof(float));
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) d[(o * cnt + m->idx[o * inner + j]) * inner + j] = gs[o * inner + j];
}

/* The transpose: each output's place read back. */
static void max_dim_gather(const void *ctx, const float *x, float *y) {
    const argmax_map *m = ctx;
    const int64_t cnt = m->a.n, inner = m->a.inner;
    for (int64_t o = 0; o < m->a.outer; o++)
        for (int64_t j = 0; j < inner; j++) y[o * inner + j] = x[(o * cnt + m->idx[o * inner + j]) * inner + j];
}

static int max_dim_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    zg_tensor *r = zg__empty_like(n->in[0]);
    if (!r) return ZG_ERR_NOMEM;
    max_dim_scatter(&(argmax_map){*ZG_NODE_ARGS(n, dim_args), zg__i64(n->saved[0])}, zg__f32(g), zg__f32(r));
    gin[0] = r;
    return ZG_OK;
}

/* The indices copied: the caller may change the tensor they were given
 * before the recorded gradient's own backward runs. */
static int max_dim_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    argmax_map *m = zg__arena_alloc(sizeof *m);
    const zg_tensor *ix = n->saved[0];
    int64_t *idx = zg__arena_alloc((size_t)(ix->numel ? ix->numel : 1) * sizeof(int64_t));
    if (!m || !idx) return ZG_ERR_NOMEM;
    memcpy(idx, zg__i64(ix), (size_t)ix->numel * sizeof(int64_t));
    *m = (argmax_map){*ZG_NODE_ARGS(n, dim_args), idx};
    const zg__linmap spec = {.name = "max_dim", .name_t = "max_dim_backward", .apply = max_dim_gather,
                             .apply_t = max_dim_scatter, .ctx = m};
    return zg__linmap_backward(n, g, gin, &spec);
}

zg_tensor *zg_max_dim(zg_tensor *a, int dim, bool keepdim, zg_tensor **indices) {
    const char *fn = "zg_max_dim";
    if (indices) *indices = NULL;
    dim_split s;
    if (split_dim(fn, a, dim, keepdim, &s)) return NULL;
    if (s.n == 0) {
        char b[ZG_SHAPE_BUF];
        return zg__fail_null("%s: cannot take the max over dim %d of size 0 (shape %s)", fn, dim,
                             zg__shape_str(a, b, sizeof b));
    }
    zg_tensor *out = zg__empty(ZG_FLOAT32, s.shape, s.ndim);
    zg_tensor *ix = zg__empty(ZG_INT64, s.shape, s.ndim);
    if (!out || !ix) return NULL;
    const float *x = zg__f32(a);
    float *v = zg__f32(out);
    int64_t *id = zg__i64(ix);
    for (int64_t o = 0; o < s.outer; o++) {
        const float *base = x + o * s.n * s.inner;
        float *vo = v + o * s.inner;
        int64_t *io = id + o * s.inner;
        if (s.inner == 1) {
            float best = base[0];
            int64_t bi = 0;
            for (int64_t k = 1; k < s.n; k++)
                if (beats(base[k], best)) {
                    best = base[k];
                    bi = k;
                }
            vo[0] = best;
            io[0] = bi;
            continue;
        }
        /* Row by row, so that the input is read contiguously. */
        for (int64_t j = 0; j < s.inner; j++) {
            vo[j] = base[j];
            io[j] = 0;
        }
        for (int64_t k = 1; k < s.n; k++) {
            const float *row = base + k * s.inner;
            for (int64_t j = 0; j < s.inner; j++)
                if (beats(row[j], vo[j])) {
                    vo[j] = row[j];
                    io[j] = k;
                }
        }
    }
    zg__node *n = ZG_RECORD(dim_args, "max_dim", max_dim_backward, out, &a, 1);
    zg__node_set_double_backward(n, max_dim_backward_diff);
    if (n) {
        *ZG_NODE_ARGS(n, dim_args) = (dim_args){s.outer, s.n, s.inner, false};
        zg__save(n, ix);
    }
    if (indices) *indices = ix;
    return out;
}
