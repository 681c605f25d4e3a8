/* Masks: tril / triu of the last two dims, masked_fill, and arange.
 *
 * tril(a, k) keeps a[..., i, j] with j <= i + k (triu: j >= i + k) and
 * zeroes the rest; masked_fill(a, mask, v) puts v where mask != 0. Both
 * are y = a on the kept elements and a constant elsewhere, so
 * dy/da = 1 there and 0 elsewhere: the backward is the same selection
 * applied to the gradient. */
#include "ops_internal.h"

#include <string.h>

typedef struct {
    int64_t k;
    bool upper;
} tri_args;

/* y = a (or g) with the elements off the kept triangle zeroed. */
static void tri_apply(const float *x, float *y, const int64_t *shape, int ndim, int64_t k, bool upper) {
    const int64_t R = shape[ndim - 2], C = shape[ndim - 1];
    int64_t mats = 1;
    for (int i = 0; i < ndim - 2; i++) mats *= shape[i];
    for (int64_t m = 0; m < mats; m++)
        for (int64_t i = 0; i < R; i++) {
            const float *xr = x + (m * R + i) * C;
            float *yr = y + (m * R + i) * C;
            for (int64_t j = 0; j < C; j++) yr[j] = (upper ? j >= i + k : j <= i + k) ? xr[j] : 0.0f;
        }
}

static int tri_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    if (!zg__node_needs(n, 0)) return ZG_OK;
    const tri_args *a = ZG_NODE_ARGS(n, tri_args);
    if (!(gin[0] = zg__empty_like(gout))) return ZG_ERR_NOMEM;
    tri_apply(zg__f32(gout), zg__f32(gin[0]), gout->shape, gout->ndim, a->k, a->upper);
    return ZG_OK;
}

/* ---- higher-order gradients: both ops' gradients are the same selection
 * applied to g, a linear map equal to its transpose (src/ops/linear_map.c). */

typedef struct {
    tri_args a;
    int64_t shape[ZG_MAX_DIMS];
    int ndim;
} tri_map;

static void tri_map_apply(const void *ctx, const float *x, float *y) {
    const tri_map *m = ctx;
    tri_apply(x, y, m->shape, m->ndim, m->a.k, m->a.upper);
}

static int tri_backward_diff(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    tri_map *m = zg__arena_alloc(sizeof *m);
    if (!m) return ZG_ERR_NOMEM;
    m->a = *ZG_NODE_ARGS(n, tri_args);
    m->ndim = gout->ndim;
    memcpy(m->shape, gout->shape, (size_t)gout->ndim * sizeof(int64_t));
    const zg__linmap spec = {.name = n->name, .name_t = m->a.upper ? "triu_backward" : "tril_backward",
                             .apply = tri_map_apply, .apply_t = tri_map_apply, .ctx = m};
    return zg__linmap_backward(n, gout, gin, &spec);
}

static zg_tensor *tri(const char *fn, zg_tensor *a, int64_t k, bool upper) {
    if (zg__check_f32(fn, a, "input")) return NULL;
    if (a->ndim < 2) return zg__fail_null("%s: input must have at least 2 dims", fn);
    zg_tensor *out = zg__empty_like(a);
    if (!out) return NULL;
    tri_apply(zg__f32(a), zg__f32(out), a->shape, a->ndim, k, upper);
    zg__node *n = ZG_RECORD(tri_args, upper ? "triu" : "tril", tri_backward, out, &a, 1);
    zg__node_set_double_backward(n, tri_backward_diff);
    if (n) *ZG_NODE_ARGS(n, tri_args) = (tri_args){.k = k, .upper = upper};
    return out;
}

zg_tensor *zg_tril(zg_tensor *a, int64_t diagonal) { return tri("zg_tril", a, diagonal, false); }
zg_tensor *zg_triu(zg_tensor *a, int64_t diagonal) { return tri("zg_triu", a, diagonal, true); }

/* ---- masked_fill ------------------------------------------------------ */

typedef struct {
    const uint8_t *hit; /* [mask numel]: 1 where filled, in the arena */
    int64_t period;     /* the mask's numel: it repeats over a's leading dims */
} fill_args;

typedef struct {
    fill_args a;
    int64_t numel;
} fill_map;

/* d = g with the filled places zeroed. */
static void fill_select(const void *ctx, const float *g, float *d) {
    const fill_map *m = ctx;
    for (int64_t i = 0; i < m->numel; i++) d[i] = m->a.hit[i % m->a.period] ? 0.0f : g[i];
}

static int fill_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    if (!zg__node_needs(n, 0)) return ZG_OK;
    if (!(gin[0] = zg__empty_like(gout))) return ZG_ERR_NOMEM;
    fill_select(&(fill_map){*ZG_NODE_ARGS(n, fill_args), gout->numel}, zg__f32(gout), zg__f32(gin[0]));
    return ZG_OK;
}

static int fill_backward_diff(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    fill_map *m = zg__arena_alloc(sizeof *m);
    if (!m) return ZG_ERR_NOMEM;
    *m = (fill_map){*ZG_NODE_ARGS(n, fill_args), gout->numel};
    const zg__linmap spec = {.name = "masked_fill", .name_t = "masked_fill_backward", .apply = fill_select,
                             .apply_t = fill_select, .ctx = m};
    return zg__linmap_backward(n, gout, gin, &spec);
}

zg_tensor *zg_masked_fill(zg_tensor *a, const zg_tensor *mask, float value) {
    const char *fn = "zg_masked_fill";
    if (zg__check_f32(fn, a, "input")) return NULL;
    if (!mask) return zg__fail_null("%s: mask is NULL", fn);
    bool ok = mask->ndim <= a->ndim;
    for (int i = 0; ok && i < mask->ndim; i++) ok = mask->shape[i] == a->shape[a->ndim - mask->ndim + i];
    if (!ok) {
        char sa[ZG_SHAPE_BUF], sm[ZG_SHAPE_BUF];
        return zg__fail_null("%s: mask %s must match the last dims of input %s", fn, zg__shape_str(mask, sm, sizeof sm),
                             zg__shape_str(a, sa, sizeof sa));
    }
    const int64_t P = mask->numel;
    zg_tensor *out = zg__empty_like(a);
    uint8_t *hit = zg__arena_alloc((size_t)(P ? P : 1));
    if (!out || !hit) return NULL;
    for (int64_t i = 0; i < P; i++)
        hit[i] = mask->dtype == ZG_INT64 ? zg__i64(mask)[i] != 0 : zg__f32(mask)[i] != 0.0f;
    const float *x = zg__f32(a);
    float *y = zg__f32(out);
    for (int64_t i = 0; i < a->numel; i++) y[i] = hit[i % P] ? value : x[i];
    zg__node *n = ZG_RECORD(fill_args, "masked_fill", fill_backward, out, &a, 1);
    zg__node_set_double_backward(n, fill_backward_diff);
    if (n) *ZG_NODE_ARGS(n, fill_args) = (fill_args){.hit = hit, .period = P};
    return out;
}

/* ---- arange ----------------------------------------------------------- */

zg_tensor *zg_arange(int64_t n) {
    if (n < 0) return zg__fail_null("zg_arange: n %lld must be >= 0", (long long)n);
    zg_tensor *t = zg_tensor_new(ZG_INT64, &n, 1);
    if (!t) return NULL;
    for (int64_t i = 0; i < n; i++) zg__i64(t)[i] = i;
    return t;
}
