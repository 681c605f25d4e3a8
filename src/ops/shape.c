/* Shape ops. reshape, flatten and slice are views: arena headers over the
 * input's storage (a write through one is seen by the other and bumps the
 * shared version counter). cat, transpose and permute copy into a new
 * contiguous tensor.
 * Backward: a view's gradient is the output gradient seen with the input's
 * shape (reshape, flatten), or scattered into zeros (slice); cat hands each
 * input its part of the gradient; a permutation's gradient is the output
 * gradient permuted back (the inverse permutation). */
#include "ops_internal.h"

#include <stdio.h>


static const char *dims_str(const int64_t *d, int n, char *buf, size_t cap) {
    size_t used = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, i ? ",%lld" : "%lld", (long long)d[i]);
    if (used < cap) snprintf(buf + used, cap - used, "]");
    return buf;
}

/* ---- reshape / flatten ------------------------------------------------- */

/* The gradient is gout with the input's shape: same elements, same order.
 * The header is new but nothing writes through it (the engine copies a
 * gradient it did not allocate before adding into it). */
static int view_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    if (!zg__node_needs(n, 0)) return ZG_OK;
    gin[0] = zg__view(gout, 0, n->in[0]->shape, n->in[0]->ndim);
    return gin[0] ? ZG_OK : ZG_ERR_NOMEM;
}

static int view_backward_diff(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    if (!zg__node_needs(n, 0)) return ZG_OK;
    gin[0] = zg_reshape(gout, n->in[0]->shape, n->in[0]->ndim);
    return gin[0] ? ZG_OK : ZG_ERR_NOMEM;
}

static zg_tensor *make_view(const char *name, zg_tensor *a, const int64_t *shape, int ndim) {
    zg_tensor *v = zg__view(a, 0, shape, ndim);
    if (!v) return NULL;
    zg__node_set_double_backward(zg__record(name, view_backward, v, &a, 1), view_backward_diff);
    return v;
}

zg_tensor *zg_reshape(zg_tensor *a, const int64_t *shape, int ndim) {
    const char *fn = "zg_reshape";
    if (!a) return zg__fail_null("%s: input is NULL", fn);
    if (ndim < 0 || ndim > ZG_MAX_DIMS)
        return zg__fail_null("%s: %d dimensions (0..%d supported)", fn, ndim, ZG_MAX_DIMS);
    if (ndim > 0 && !shape) return zg__fail_null("%s: shape is NULL", fn);
    char sa[ZG_SHAPE_BUF], ss[ZG_SHAPE_BUF];
    zg__shape_str(a, sa, sizeof sa);
    dims_str(shape, ndim, ss, sizeof ss);
    int64_t out[ZG_MAX_DIMS];
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        out[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0) return zg__fail_null("%s: shape %s has more than one -1", fn, ss);
            infer = i;
        } else if (shape[i] < 0) {
            return zg__fail_null("%s: shape %s has a negative size", fn, ss);
        } else {
            known *= shape[i];
        }
    }
    if (infer >= 0) {
        if (known == 0 || a->numel % known != 0)
            return zg__fail_null("%s: shape %s is invalid for input of shape %s (%lld elements)", fn, ss, sa,
                                 (long long)a->numel);
        out[infer] = a->numel / known;
        known *= out[infer];
    }
    if (known != a->numel)
        return zg__fail_null("%s: shape %s is invalid for input of shape %s (%lld elements)", fn, ss, sa,
                             (long long)a->numel);
    return make_view("reshape", a, out, ndim);
}

zg_tensor *zg_flatten(zg_tensor *a, int start_dim) {
    const char *fn = "zg_flatten";
    if (!a) return zg__fail_null("%s: input is NULL", fn);
    int d = zg__wrap_dim(fn, start_dim, a->ndim);
    if (d < 0) return NULL;
    /* Dims before start_dim stay; the rest become one (a 0-dim input gives [1]). */
    int64_t out[ZG_MAX_DIMS];
    int64_t rest = 1;
    for (int i = 0; i < a->ndim; i++) {
        if (i < d) out[i] = a->shape[i];
        else rest *= a->shape[i];
    }
    out[d] = rest;
    return make_view("flatten", a, out, d + 1);
}

/* ---- slice ------------------------------------------------------------- */

typedef struct {
    int64_t start; /* the first row taken */
} slice_args;

static int slice_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    if (!zg__node_needs(n, 0)) return ZG_OK;
    zg_tensor *g = zg__zeros_like(n->in[0]);
    if (!g) return ZG_ERR_NOMEM;
    int64_t row = n->in[0]->shape[0] ? n->in[0]->numel / n->in[0]->shape[0] : 0;
    memcpy(zg__f32(g) + ZG_NODE_ARGS(n, slice_args)->start * row, zg__f32(gout), (size_t)gout->numel * sizeof(float));
    gin[0] = g;
    return ZG_OK;
}

/* Rows [start, start + gout's rows) of dim 0: narrow's maps. */
static int slice_backward_diff(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    const zg_tensor *x = n->in[0];
    const int64_t rows = x->shape[0], row = rows ? x->numel / rows : 0;
    return zg__narrow_backward_diff(n, gout, gin, 1, rows, row, ZG_NODE_ARGS(n, slice_args)->start);
}

zg_tensor *zg_slice(zg_tensor *a, int64_t start, int64_t end) {
    const char *fn = "zg_slice";
    if (!a) return zg__fail_null("%s: input is NULL", fn);
    char sa[ZG_SHAPE_BUF];
    if (a->ndim == 0) return zg__fail_null("%s: cannot slice a 0-dim tensor", fn);
    int64_t rows = a->shape[0];
    /* Negative indices count from the end, as in Python. */
    int64_t s = start < 0 ? start + rows : start, e = end < 0 ? end + rows : end;
    if (s < 0 || e > rows || s > e)
        return zg__fail_null("%s: rows [%lld,%lld) out of range for dim 0 of input of shape %s", fn,
                             (long long)start, (long long)end, zg__shape_str(a, sa, sizeof sa));
    int64_t row = rows ? a->numel / rows : 0;
    int64_t shape[ZG_MAX_DIMS];
    memcpy(shape, a->shape, (size_t)a->ndim * sizeof *shape);
    shape[0] = e - s;
    zg_tensor *v = zg__view(a, s * row, shape, a->ndim);
    if (!v) return NULL;
    zg__node *n = ZG_RECORD(slice_args, "slice", slice_backward, v, &a, 1);
    zg__node_set_double_backward(n, slice_backward_diff);
    if (n) ZG_NODE_ARGS(n, slice_args)->start = s;
    return v;
}

/* ---- cat --------------------------------------------------------------- */

/* outer: product of the dims before `dim`; inner: after it. */
static void outer_inner(const zg_tensor *t, int dim, int64_t *outer, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (i < dim) *outer *= t->shape[i];
        if (i > dim) *inner *= t->shape[i];
    }
}

/* The dim joined along and each input's size along it. */
typedef struct {
    int dim;
    int64_t size[ZG_NODE_MAX_IN];
} cat_args;

static int cat_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    const cat_args *c = ZG_NODE_ARGS(n, cat_args);
    int dim = c->dim;
    int64_t outer, inner;
    outer_inner(gout, dim, &outer, &inner);
    int64_t total = gout->shape[dim], off = 0;
    const float *g = zg__f32(gout);
    for (int j = 0; j < n->n_in; j++) {
        int64_t sz = c->size[j];
        if (zg__node_needs(n, j)) {
            zg_tensor *gj = zg__empty_like(n->in[j]);
            if (!gj) return ZG_ERR_NOMEM;
            float *d = zg__f32(gj);
            for (int64_t o = 0; o < outer; o++)
                memcpy(d + o * sz * inner, g + (o * total + off) * inner, (size_t)(sz * inner) * sizeof(float));
            gin[j] = gj;
        }
        off += sz;
    }
    return ZG_OK;
}

/* Each input's part of gout with narrow, which is differentiable. */
static int cat_backward_diff(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    const cat_args *c = ZG_NODE_ARGS(n, cat_args);
    int64_t off = 0;
    for (int j = 0; j < n->n_in; j++) {
        if (zg__node_needs(n, j) && !(gin[j] = zg_narrow(gout, c->dim, off, c->size[j]))) return ZG_ERR_NOMEM;
        off += c->size[j];
    }
    return ZG_OK;
}

/* Inputs already validated. A node holds at most ZG_NODE_MAX_IN inputs, so
 * when a graph is recorded for more, groups are concatenated first and the
 * group results are concatenated after (each level one more copy). */
static zg_tensor *cat_impl(zg_tensor *const *ts, int n, int dim) {
    bool record = false;
    if (zg_grad_enabled())
        for (int j = 0; j < n; j++) record |= ts[j]->requires_grad;
    if (record && n > ZG_NODE_MAX_IN) {
        zg_tensor *parts[ZG_NODE_MAX_IN];
        int per = (n + ZG_NODE_MAX_IN - 1) / ZG_NODE_MAX_IN, np = 0;
        for (int j = 0; j < n; j += per) {
            int cnt = n - j < per ? n - j : per;
            parts[np] = cnt == 1 ? ts[j] : cat_impl(ts + j, cnt, dim);
            if (!parts[np]) return NULL;
            np++;
        }
        return cat_impl(parts, np, dim);
    }
    int64_t shape[ZG_MAX_DIMS];
    memcpy(shape, ts[0]->shape, (size_t)ts[0]->ndim * sizeof *shape);
    shape[dim] = 0;
    for (int j = 0; j < n; j++) shape[dim] += ts[j]->shape[dim];
    zg_tensor *out = zg__empty(ZG_FLOAT32, shape, ts[0]->ndim);
    if (!out) return NULL;
    int64_t outer, inner;
    outer_inner(out, dim, &outer, &inner);
    int64_t total = shape[dim], off = 0;
    float *d = zg__f32(out);
    for (int j = 0; j < n; j++) {
        int64_t sz = ts[j]->shape[dim];
        const float *s = zg__f32(ts[j]);
        for (int64_t o = 0; o < outer; o++)
            memcpy(d + (o * total + off) * inner, s + o * sz * inner, (size_t)(sz * inner) * sizeof(float));
        off += sz;
    }
    if (record) {
        zg__node *nd = ZG_RECORD(cat_args, "cat", cat_backward, out, ts, n);
        zg__node_set_double_backward(nd, cat_backward_diff);
        if (nd) {
            cat_args *c = ZG_NODE_ARGS(nd, cat_args);
            for (int j = 0; j < n; j++) c->size[j] = ts[j]->shape[dim];
            c->dim = dim;
        }
    }
    return out;
}

zg_tensor *zg_cat(zg_tensor *const *ts, int n, int dim) {
    const char *fn = "zg_cat";
    if (!ts) return zg__fail_null("%s: tensor list is NULL", fn);
    if (n <= 0) return zg__fail_null("%s: no tensors (n = %d)", fn, n);
    for (int j = 0; j < n; j++) {
        char what[32];
        snprintf(what, sizeof what, "tensor %d", j);
        if (zg__check_f32(fn, ts[j], what)) return NULL;
    }
    if (ts[0]->ndim == 0) return zg__fail_null("%s: 0-dim tensors cannot be concatenated", fn);
    int d = zg__wrap_dim(fn, dim, ts[0]->ndim);
    if (d < 0) return NULL;
    for (int j = 1; j < n; j++) {
        bool ok = ts[j]->ndim == ts[0]->ndim;
        for (int i = 0; ok && i < ts[0]->ndim; i++) ok = i == d || ts[j]->shape[i] == ts[0]->shape[i];
        if (!ok) {
            char s0[ZG_SHAPE_BUF], sj[ZG_SHAPE_BUF];
            return zg__fail_null("%s: tensor %d of shape %s does not match tensor 0 of shape %s except in dim %d",
                                 fn, j, zg__shape_str(ts[j], sj, sizeof sj), zg__shape_str(ts[0], s0, sizeof s0), d);
        }
    }
    return cat_impl(ts, n, d);
}

/* ---- transpose / permute ----------------------------------------------- */

/* dst[i_0..i_{n-1}] = src[...] where dst dim k is src dim perm[k]. Walks dst
 * in order with an odometer over its index; the last dim is the inner loop. */
static void permute_copy(const float *src, const int64_t *src_shape, int ndim, const int64_t *perm, float *dst) {
    int64_t sstride[ZG_MAX_DIMS] = {0}, dshape[ZG_MAX_DIMS] = {0}, step[ZG_MAX_DIMS] = {0}, idx[ZG_MAX_DIMS] = {0};
    int64_t numel = 1, acc = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        sstride[i] = acc;
        acc *= src_shape[i];
    }
    for (int k = 0; k < ndim; k++) {
        dshape[k] = src_shape[perm[k]];
        step[k] = sstride[perm[k]];
        numel *= dshape[k];
    }
    if (numel == 0) return;
    if (ndim == 0) {
        dst[0] = src[0];
        return;
    }
    int64_t inner = dshape[ndim - 1], istep = step[ndim - 1], soff = 0;
    for (int64_t done = 0; done < numel; done += inner) {
        const float *s = src + soff;
        for (int64_t j = 0; j < inner; j++) dst[done + j] = s[j * istep];
        /* Advance the odometer over dims 0..ndim-2. */
        for (int k = ndim - 2; k >= 0; k--) {
            soff += step[k];
            if (++idx[k] < dshape[k]) break;
            soff -= step[k] * dshape[k];
            idx[k] = 0;
        }
    }
}

typedef struct {
    int64_t perm[ZG_MAX_DIMS]; /* the forward permutation */
} permute_args;

static int permute_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    if (!zg__node_needs(n, 0)) return ZG_OK;
    int nd = gout->ndim;
    int64_t inv[ZG_MAX_DIMS];
    for (int k = 0; k < nd; k++) inv[ZG_NODE_ARGS(n, permute_args)->perm[k]] = k;
    zg_tensor *g = zg__empty_like(n->in[0]);
    if (!g) return ZG_ERR_NOMEM;
    permute_copy(zg__f32(gout), gout->shape, nd, inv, zg__f32(g));
    gin[0] = g;
    return ZG_OK;
}

/* The same with ops: the inverse permutation. */
static int permute_backward_diff(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    if (!zg__node_needs(n, 0)) return ZG_OK;
    int inv[ZG_MAX_DIMS];
    for (int k = 0; k < gout->ndim; k++) inv[ZG_NODE_ARGS(n, permute_args)->perm[k]] = k;
    return (gin[0] = zg_permute(gout, inv, gout->ndim)) ? ZG_OK : ZG_ERR_NOMEM;
}

static zg_tensor *permute_impl(const char *name, zg_tensor *a, const int64_t *perm) {
    int64_t shape[ZG_MAX_DIMS];
    for (int k = 0; k < a->ndim; k++) shape[k] = a->shape[perm[k]];
    zg_tensor *out = zg__empty(ZG_FLOAT32, shape, a->ndim);
    if (!out) return NULL;
    permute_copy(zg__f32(a), a->shape, a->ndim, perm, zg__f32(out));
    zg__node *n = ZG_RECORD(permute_args, name, permute_backward, out, &a, 1);
    zg__node_set_double_backward(n, permute_backward_diff);
    if (n)
        for (int k = 0; k < a->ndim; k++) ZG_NODE_ARGS(n, permute_args)->perm[k] = perm[k];
    return out;
}

zg_tensor *zg_transpose(zg_tensor *a, int dim0, int dim1) {
    const char *fn = "zg_transpose";
    if (zg__check_f32(fn, a, "input")) return NULL;
    int d0 = zg__wrap_dim(fn, dim0, a->ndim);
    if (d0 < 0) return NULL;
    int d1 = zg__wrap_dim(fn, dim1, a->ndim);
    if (d1 < 0) return NULL;
    int64_t perm[ZG_MAX_DIMS];
    for (int k = 0; k < a->ndim; k++) perm[k] = k;
    if (a->ndim > 0) {
        perm[d0] = d1;
        perm[d1] = d0;
    }
    return permute_impl("transpose", a, perm);
}

zg_tensor *zg_permute(zg_tensor *a, const int *dims, int ndim) {
    const char *fn = "zg_permute";
    if (zg__check_f32(fn, a, "input")) return NULL;
    if (ndim > 0 && !dims) return zg__fail_null("%s: dims is NULL", fn);
    char sa[ZG_SHAPE_BUF];
    if (ndim != a->ndim)
        return zg__fail_null("%s: %d dims given for input of shape %s", fn, ndim, zg__shape_str(a, sa, sizeof sa));
    int64_t perm[ZG_MAX_DIMS];
    bool seen[ZG_MAX_DIMS] = {false};
    for (int k = 0; k < ndim; k++) {
        int d = zg__wrap_dim(fn, dims[k], ndim);
        if (d < 0) return NULL;
        if (seen[d]) return zg__fail_null("%s: dim %d repeated in the permutation", fn, dims[k]);
        seen[d] = true;
        perm[k] = d;
    }
    return permute_impl("permute", a, perm);
}
