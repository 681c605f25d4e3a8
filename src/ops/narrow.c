/* narrow and split: a range of one dim, copied.
 *
 * Shapes: a [outer, size, inner] (dim in the middle) -> out [outer, length,
 * inner], out[o, i, j] = a[o, start + i, j]. Backward: the gradient goes
 * back into the range, zeros elsewhere. split calls narrow once per piece,
 * so the pieces' gradients add up in a (as torch.split's views do). */
#include "ops_internal.h"

#include <string.h>

typedef struct {
    int64_t outer, size, inner, start, length;
} narrow_args;

/* Rows of `length * inner` floats from src (row stride src_row) to dst
 * (stride dst_row). */
static void copy_rows(const float *src, int64_t src_row, float *dst, int64_t dst_row, int64_t rows, int64_t len) {
    for (int64_t o = 0; o < rows; o++) memcpy(dst + o * dst_row, src + o * src_row, (size_t)len * sizeof(float));
}

/* The range taken from x (the forward), and g put back into it with zeros
 * elsewhere (the backward, its transpose). */
static void narrow_take(const void *ctx, const float *x, float *y) {
    const narrow_args *a = ctx;
    copy_rows(x + a->start * a->inner, a->size * a->inner, y, a->length * a->inner, a->outer, a->length * a->inner);
}

static void narrow_put(const void *ctx, const float *g, float *d) {
    const narrow_args *a = ctx;
    memset(d, 0, (size_t)(a->outer * a->size * a->inner) * sizeof(float));
    copy_rows(g, a->length * a->inner, d + a->start * a->inner, a->size * a->inner, a->outer, a->length * a->inner);
}

static int narrow_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    if (!zg__node_needs(n, 0)) return ZG_OK;
    zg_tensor *g = zg__empty_like(n->in[0]);
    if (!g) return ZG_ERR_NOMEM;
    narrow_put(ZG_NODE_ARGS(n, narrow_args), zg__f32(gout), zg__f32(g));
    gin[0] = g;
    return ZG_OK;
}

int zg__narrow_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin, int64_t outer, int64_t size, int64_t inner,
                             int64_t start) {
    narrow_args *a = zg__arena_alloc(sizeof *a);
    if (!a) return ZG_ERR_NOMEM;
    *a = (narrow_args){.outer = outer, .size = size, .inner = inner, .start = start,
                       .length = outer > 0 && inner > 0 ? g->numel / (outer * inner) : 0};
    const zg__linmap spec = {.name = "narrow", .name_t = "narrow_backward", .apply = narrow_take,
                             .apply_t = narrow_put, .ctx = a};
    return zg__linmap_backward(n, g, gin, &spec);
}

static int narrow_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    const narrow_args *a = ZG_NODE_ARGS(n, narrow_args);
    return zg__narrow_backward_diff(n, g, gin, a->outer, a->size, a->inner, a->start);
}

zg_tensor *zg_narrow(zg_tensor *a, int dim, int64_t start, int64_t length) {
    const char *fn = "zg_narrow";
    if (zg__check_f32(fn, a, "input")) return NULL;
    int d = zg__wrap_dim(fn, dim, a->ndim);
    if (d < 0) return NULL;
    const int64_t size = a->shape[d];
    const int64_t s = start < 0 ? start + size : start; /* negative counts from the end, as torch.narrow */
    if (s < 0 || length < 0 || s > size || length > size - s) {
        char sa[ZG_SHAPE_BUF];
        return zg__fail_null("%s: start %lld, length %lld out of range for dim %d of size %lld (input %s)", fn,
                             (long long)start, (long long)length, d, (long long)size, zg__shape_str(a, sa, sizeof sa));
    }
    narrow_args args = {.outer = 1, .inner = 1, .size = size, .start = s, .length = length};
    for (int i = 0; i < a->ndim; i++) {
        if (i < d) args.outer *= a->shape[i];
        if (i > d) args.inner *= a->shape[i];
    }
    int64_t shape[ZG_MAX_DIMS];
    memcpy(shape, a->shape, (size_t)a->ndim * sizeof(int64_t));
    shape[d] = length;
    zg_tensor *out = zg__empty(ZG_FLOAT32, shape, a->ndim);
    if (!out) return NULL;
    narrow_take(&args, zg__f32(a), zg__f32(out));
    zg__node *n = ZG_RECORD(narrow_args, "narrow", narrow_backward, out, &a, 1);
    zg__node_set_double_backward(n, narrow_backward_diff);
    if (n) *ZG_NODE_ARGS(n, narrow_args) = args;
    return out;
}

int zg_split(zg_tensor *a, int64_t split_size, int dim, zg_tensor **out, int max_out) {
    const char *fn = "zg_split";
    if (zg__check_f32(fn, a, "input")) return ZG_ERR_ARG;
    int d = zg__wrap_dim(fn, dim, a->ndim);
    if (d < 0) return ZG_ERR_ARG;
    if (split_size <= 0) return zg__fail(ZG_ERR_ARG, "%s: split_size %lld must be positive", fn, (long long)split_size);
    const int64_t size = a->shape[d];
    const int64_t pieces = size ? (size + split_size - 1) / split_size : 1;
    if (!out || pieces > max_out)
        return zg__fail(ZG_ERR_ARG, "%s: %lld pieces of dim %d (size %lld) do not fit in %d outputs", fn,
                        (long long)pieces, d, (long long)size, max_out);
    for (int64_t i = 0; i < pieces; i++) {
        const int64_t s = i * split_size, len = size - s < split_size ? size - s : split_size;
        if (!(out[i] = zg_narrow(a, d, s, len))) return ZG_ERR_NOMEM; /* the arguments were checked above */
    }
    return (int)pieces;
}

int zg_chunk(zg_tensor *a, int64_t chunks, int dim, zg_tensor **out, int max_out) {
    const char *fn = "zg_chunk";
    if (zg__check_f32(fn, a, "input")) return ZG_ERR_ARG;
    int d = zg__wrap_dim(fn, dim, a->ndim);
    if (d < 0) return ZG_ERR_ARG;
    if (chunks <= 0) return zg__fail(ZG_ERR_ARG, "%s: chunks %lld must be positive", fn, (long long)chunks);
    /* torch.chunk: pieces of ceil(size / chunks), so there may be fewer */
    const int64_t size = a->shape[d], piece = size ? (size + chunks - 1) / chunks : 1;
    return zg_split(a, piece, d, out, max_out);
}
