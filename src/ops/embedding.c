/* Embedding: a lookup of weight rows by index.
 *
 * Shapes: weight [V, D], indices int64 [*] -> out [*, D], out[p] = weight[idx[p]].
 * Backward: dweight [V, D] = sum over positions p with idx[p] = v of dout[p]
 * (a row used twice gets both), and nothing for padding_idx's row (as
 * torch.nn.functional.embedding: that row is a constant).
 * The sums run position by position in index order; threads split the
 * columns, never the positions, so the bits do not depend on the thread
 * count. The indices get no gradient. */
#include "ops_internal.h"

#include <string.h>

/* Columns per thread below which one thread sums every column. */
#define PAR_MIN_ELEMS 65536

typedef struct {
    const int64_t *idx; /* a copy of the indices (the caller may change theirs) */
    int64_t n, pad;     /* positions; the padding row or -1 */
    int64_t D;
} embedding_args;

/* dweight[:, c0:c1) from the positions in order. */
static void embedding_backward_cols(const embedding_args *a, const float *G, float *dW, int64_t D, int64_t c0,
                                    int64_t c1) {
    for (int64_t p = 0; p < a->n; p++) {
        const int64_t v = a->idx[p];
        if (v == a->pad) continue;
        float *restrict d = dW + v * D;
        const float *restrict g = G + p * D;
#pragma omp simd
        for (int64_t c = c0; c < c1; c++) d[c] += g[c];
    }
}

/* dW [V, D] = the rows of G summed into their indices' rows (dW zeroed
 * first: rows no index names stay 0). */
static void embedding_scatter(const void *ctx, const float *G, float *dW, int64_t V) {
    const embedding_args *a = ctx;
    const int64_t D = a->D;
    memset(dW, 0, (size_t)(V * D) * sizeof(float));
    /* Two column halves when the work is large enough to share. */
    const int64_t halves = a->n * D >= PAR_MIN_ELEMS && D >= 32 ? 2 : 1;
    ZG_PARALLEL_FOR(h, halves, 2, {
        const int64_t c0 = D * h / halves, c1 = D * (h + 1) / halves;
        embedding_backward_cols(a, G, dW, D, c0, c1);
    });
}

static int embedding_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    const zg_tensor *w = n->in[0];
    zg_tensor *gw = zg__empty_like(w);
    if (!gw) return ZG_ERR_NOMEM;
    embedding_scatter(ZG_NODE_ARGS(n, embedding_args), zg__f32(gout), zg__f32(gw), w->shape[0]);
    gin[0] = gw;
    return ZG_OK;
}

/* ---- higher-order gradients: the lookup as a linear map of the weight,
 * y = A W, whose padding positions read nothing (their rows are constants,
 * so A has zero rows there); the backward is A^T. */

typedef struct {
    embedding_args a;
    int64_t V;
} embedding_map;

static void embedding_map_t(const void *ctx, const float *G, float *dW) {
    const embedding_map *m = ctx;
    embedding_scatter(&m->a, G, dW, m->V);
}

static void embedding_map_apply(const void *ctx, const float *W, float *Y) {
    const embedding_args *a = &((const embedding_map *)ctx)->a;
    for (int64_t p = 0; p < a->n; p++) {
        if (a->idx[p] == a->pad)
            memset(Y + p * a->D, 0, (size_t)a->D * sizeof(float));
        else
            memcpy(Y + p * a->D, W + a->idx[p] * a->D, (size_t)a->D * sizeof(float));
    }
}

static int embedding_backward_diff(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    embedding_map *m = zg__arena_alloc(sizeof *m);
    if (!m) return ZG_ERR_NOMEM;
    *m = (embedding_map){*ZG_NODE_ARGS(n, embedding_args), n->in[0]->shape[0]};
    const zg__linmap spec = {.name = "embedding", .name_t = "embedding_backward", .apply = embedding_map_apply,
                             .apply_t = embedding_map_t, .ctx = m};
    return zg__linmap_backward(n, gout, gin, &spec);
}

zg_tensor *zg_embedding(zg_tensor *weight, const zg_tensor *indices, int64_t padding_idx) {
    const char *fn = "zg_embedding";
    if (zg__check_f32(fn, weight, "weight")) return NULL;
    if (!indices) return zg__fail_null("%s: indices is NULL", fn);
    char sw[ZG_SHAPE_BUF];
    zg__shape_str(weight, sw, sizeof sw);
    if (weight->ndim != 2) return zg__fail_null("%s: weight of shape %s must be 2-D [num_embeddings, dim]", fn, sw);
    if (indices->dtype != ZG_INT64) return zg__fail_null("%s: indices must be int64 (ZG_INT64)", fn);
    if (indices->ndim + 1 > ZG_MAX_DIMS)
        return zg__fail_null("%s: indices have %d dims; the output would have more than %d", fn, indices->ndim,
                             ZG_MAX_DIMS);
    const int64_t V = weight->shape[0], D = weight->shape[1], N = indices->numel;
    int64_t pad = -1;
    if (padding_idx != ZG_NO_PADDING_IDX) {
        if (padding_idx < -V || padding_idx >= V)
            return zg__fail_null("%s: padding_idx %lld must lie in [-%lld, %lld) (weight %s)", fn,
                                 (long long)padding_idx, (long long)V, (long long)V, sw);
        pad = padding_idx < 0 ? padding_idx + V : padding_idx; /* -1 is the last row, as in PyTorch */
    }
    const int64_t *idx = zg__i64(indices);
    for (int64_t p = 0; p < N; p++)
        if (idx[p] < 0 || idx[p] >= V)
            return zg__fail_null("%s: index %lld at position %lld is out of range for weight %s (rows 0..%lld)", fn,
                                 (long long)idx[p], (long long)p, sw, (long long)V - 1);

    int64_t shape[ZG_MAX_DIMS];
    memcpy(shape, indices->shape, (size_t)indices->ndim * sizeof(int64_t));
    shape[indices->ndim] = D;
    zg_tensor *out = zg__empty(ZG_FLOAT32, shape, indices->ndim + 1);
    if (!out) return NULL;
    const float *W = zg__f32(weight);
    float *Y = zg__f32(out);
    for (int64_t p = 0; p < N; p++) memcpy(Y + p * D, W + idx[p] * D, (size_t)D * sizeof(float));

    zg__node *n = ZG_RECORD(embedding_args, "embedding", embedding_backward, out, &weight, 1);
    zg__node_set_double_backward(n, embedding_backward_diff);
    if (n) {
        int64_t *copy = zg__arena_alloc((size_t)(N ? N : 1) * sizeof(int64_t));
        if (!copy) return NULL;
        memcpy(copy, idx, (size_t)N * sizeof(int64_t));
        *ZG_NODE_ARGS(n, embedding_args) = (embedding_args){.idx = copy, .n = N, .pad = pad, .D = D};
    }
    return out;
}
