/* Adaptive average pooling (PyTorch's adaptive_avg_pool2d / 1d): each
 * input plane [H, W] gives an [OH, OW] plane whose element (i, j) is the
 * mean of the window of rows
 *     floor(i H / OH) <= h < ceil((i + 1) H / OH)
 * and of the columns the same rule gives for W, OW (windows overlap when
 * OH does not divide H, and repeat elements when OH > H). The backward
 * adds each output's gradient over its window's size to every element of
 * the window. 1d is the same with H = OH = 1. Planes run in parallel. */
#include "ops_internal.h"

#define PAR_MIN_ELEMS 32768

/* planes P of [H, W] in, [OH, OW] out. */
typedef struct {
    int64_t P, H, W, OH, OW;
} adaptive_args;

static inline int64_t win_start(int64_t i, int64_t in, int64_t out) { return i * in / out; }
static inline int64_t win_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

static int64_t par_min(const adaptive_args *a) { return a->P * a->H * a->W >= PAR_MIN_ELEMS ? 2 : INT64_MAX; }

static void adaptive_plane(const adaptive_args *a, const float *restrict x, float *restrict y) {
    for (int64_t oh = 0; oh < a->OH; oh++) {
        const int64_t h0 = win_start(oh, a->H, a->OH), h1 = win_end(oh, a->H, a->OH);
        for (int64_t ow = 0; ow < a->OW; ow++) {
            const int64_t w0 = win_start(ow, a->W, a->OW), w1 = win_end(ow, a->W, a->OW);
            float sum = 0.0f;
            for (int64_t h = h0; h < h1; h++)
                for (int64_t w = w0; w < w1; w++) sum += x[h * a->W + w];
            y[oh * a->OW + ow] = sum / (float)(h1 - h0) / (float)(w1 - w0);
        }
    }
}

static void adaptive_plane_backward(const adaptive_args *a, const float *restrict s, float *restrict d) {
    memset(d, 0, (size_t)(a->H * a->W) * sizeof(float));
    for (int64_t oh = 0; oh < a->OH; oh++) {
        const int64_t h0 = win_start(oh, a->H, a->OH), h1 = win_end(oh, a->H, a->OH);
        for (int64_t ow = 0; ow < a->OW; ow++) {
            const int64_t w0 = win_start(ow, a->W, a->OW), w1 = win_end(ow, a->W, a->OW);
            const float v = s[oh * a->OW + ow] / (float)(h1 - h0) / (float)(w1 - w0);
            for (int64_t h = h0; h < h1; h++)
                for (int64_t w = w0; w < w1; w++) d[h * a->W + w] += v;
        }
    }
}

/* All planes: the forward, and its transpose (the backward). */
static void adaptive_apply(const void *ctx, const float *X, float *Y) {
    const adaptive_args *a = ctx;
    const int64_t HW = a->H * a->W, OHW = a->OH * a->OW;
    ZG_PARALLEL_FOR(u, a->P, par_min(a), { adaptive_plane(a, X + u * HW, Y + u * OHW); });
}

static void adaptive_apply_t(const void *ctx, const float *G, float *dX) {
    const adaptive_args *a = ctx;
    const int64_t HW = a->H * a->W, OHW = a->OH * a->OW;
    ZG_PARALLEL_FOR(u, a->P, par_min(a), { adaptive_plane_backward(a, G + u * OHW, dX + u * HW); });
}

static int adaptive_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    zg_tensor *gx = zg__empty_like(n->in[0]);
    if (!gx) return ZG_ERR_NOMEM;
    adaptive_apply_t(ZG_NODE_ARGS(n, adaptive_args), zg__f32(gout), zg__f32(gx));
    gin[0] = gx;
    return ZG_OK;
}

/* The node's arguments live as long as the node (its arena block), as do
 * the recorded gradient's nodes that read them. */
static int adaptive_backward_diff(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    const bool two = !strcmp(n->name, "adaptive_avg_pool2d");
    const zg__linmap spec = {.name = n->name, .name_t = two ? "adaptive_avg_pool2d_backward" : "adaptive_avg_pool1d_backward",
                             .apply = adaptive_apply, .apply_t = adaptive_apply_t, .ctx = ZG_NODE_ARGS(n, adaptive_args)};
    return zg__linmap_backward(n, gout, gin, &spec);
}

/* x's last k (1 or 2) dims pooled to out[0..k); x has k + 1 or k + 2 dims. */
static zg_tensor *adaptive_avg_pool(const char *fn, zg_tensor *x, int k, const int64_t *out) {
    if (zg__check_f32(fn, x, "x")) return NULL;
    char sx[ZG_SHAPE_BUF];
    zg__shape_str(x, sx, sizeof sx);
    if (x->ndim != k + 1 && x->ndim != k + 2)
        return zg__fail_null("%s: x of shape %s must be %dD or %dD (%s)", fn, sx, k + 1, k + 2,
                             k == 2 ? "[N,C,H,W] or [C,H,W]" : "[N,C,L] or [C,L]");
    for (int i = 0; i < k; i++) {
        if (out[i] <= 0)
            return zg__fail_null("%s: output size %lld must be positive", fn, (long long)out[i]);
        if (x->shape[x->ndim - k + i] <= 0)
            return zg__fail_null("%s: x of shape %s must have non-zero size in its pooled dims", fn, sx);
    }
    adaptive_args a = {.H = k == 2 ? x->shape[x->ndim - 2] : 1, .W = x->shape[x->ndim - 1],
                       .OH = k == 2 ? out[0] : 1, .OW = out[k - 1]};
    a.P = x->numel / (a.H * a.W);
    int64_t shape[4];
    for (int i = 0; i < x->ndim; i++) shape[i] = i < x->ndim - k ? x->shape[i] : out[i - (x->ndim - k)];
    zg_tensor *y = zg__empty(ZG_FLOAT32, shape, x->ndim);
    if (!y) return NULL;
    adaptive_apply(&a, zg__f32(x), zg__f32(y));
    zg__node *n = ZG_RECORD(adaptive_args, k == 2 ? "adaptive_avg_pool2d" : "adaptive_avg_pool1d", adaptive_backward,
                            y, (zg_tensor *[]){x}, 1);
    zg__node_set_double_backward(n, adaptive_backward_diff);
    if (n) *ZG_NODE_ARGS(n, adaptive_args) = a;
    return y;
}

zg_tensor *zg_adaptive_avg_pool2d(zg_tensor *x, const int64_t output_size[2]) {
    if (!output_size) return zg__fail_null("zg_adaptive_avg_pool2d: output_size is NULL");
    return adaptive_avg_pool("zg_adaptive_avg_pool2d", x, 2, output_size);
}

zg_tensor *zg_adaptive_avg_pool1d(zg_tensor *x, int64_t output_size) {
    return adaptive_avg_pool("zg_adaptive_avg_pool1d", x, 1, &output_size);
}
