/* softmax and log_softmax along one dim, numerically stable: with
 * m = max_j x_j, softmax_i = exp(x_i - m) / sum_j exp(x_j - m) and
 * log_softmax_i = x_i - m - log(sum_j exp(x_j - m)).
 * Backward (y the output, g its gradient):
 *   softmax:     dx_i = y_i (g_i - sum_j g_j y_j)
 *   log_softmax: dx_i = g_i - exp(y_i) sum_j g_j
 * The tensor is seen as [outer, size, inner] around the dim; the elements of
 * one softmax are `inner` apart. */
#include "ops_internal.h"
#include "softmax_kernel.h"

#include <math.h>


typedef struct {
    int64_t outer, size, inner;
} dim_split;

static dim_split split_at(const zg_tensor *t, int d) {
    dim_split s = {1, 1, 1};
    for (int i = 0; i < t->ndim; i++) {
        if (i < d) s.outer *= t->shape[i];
        else if (i == d) s.size = t->shape[i];
        else s.inner *= t->shape[i];
    }
    return s;
}

void zg__softmax_kernel(const float *x, float *y, int64_t outer, int64_t size, int64_t inner, bool log_out) {
    dim_split s = {outer, size, inner};
    for (int64_t o = 0; o < s.outer; o++)
        for (int64_t in = 0; in < s.inner; in++) {
            const float *xr = x + o * s.size * s.inner + in;
            float *yr = y + o * s.size * s.inner + in;
            float m = -INFINITY;
            for (int64_t j = 0; j < s.size; j++) m = fmaxf(m, xr[j * s.inner]);
            double sum = 0;
            for (int64_t j = 0; j < s.size; j++) sum += expf(xr[j * s.inner] - m);
            if (log_out) {
                float lse = (float)log(sum);
                for (int64_t j = 0; j < s.size; j++) yr[j * s.inner] = xr[j * s.inner] - m - lse;
            } else {
                float inv = (float)(1.0 / sum);
                for (int64_t j = 0; j < s.size; j++) yr[j * s.inner] = expf(xr[j * s.inner] - m) * inv;
            }
        }
}

typedef struct {
    int dim; /* wrapped */
} softmax_args;

/* saved[0]: the output. */
static int softmax_backward_common(zg__node *n, zg_tensor *gout, zg_tensor **gin, bool log_out) {
    if (!zg__node_needs(n, 0)) return ZG_OK;
    const zg_tensor *yt = n->saved[0];
    dim_split s = split_at(yt, ZG_NODE_ARGS(n, softmax_args)->dim);
    zg_tensor *gx = zg__empty_like(n->in[0]);
    if (!gx) return ZG_ERR_NOMEM;
    const float *y = zg__f32(yt), *g = zg__f32(gout);
    float *dx = zg__f32(gx);
    for (int64_t o = 0; o < s.outer; o++)
        for (int64_t in = 0; in < s.inner; in++) {
            int64_t base = o * s.size * s.inner + in;
            double acc = 0;
            for (int64_t j = 0; j < s.size; j++) {
                int64_t k = base + j * s.inner;
                acc += log_out ? (double)g[k] : (double)g[k] * y[k];
            }
            float a = (float)acc;
            for (int64_t j = 0; j < s.size; j++) {
                int64_t k = base + j * s.inner;
                dx[k] = log_out ? g[k] - expf(y[k]) * a : y[k] * (g[k] - a);
            }
        }
    gin[0] = gx;
    return ZG_OK;
}

static int softmax_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    return softmax_backward_common(n, gout, gin, false);
}

static int log_softmax_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    return softmax_backward_common(n, gout, gin, true);
}

/* The same with ops, through y (whose graph carries the second derivative):
 * softmax y (g - sum(g y)), log_softmax g - exp(y) sum(g), sums over dim. */
static int softmax_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    zg_tensor *y = n->saved[0];
    const int d = ZG_NODE_ARGS(n, softmax_args)->dim;
    return (gin[0] = zg_mul(y, zg_sub(g, zg_sum_dim(zg_mul(g, y), d, true)))) ? ZG_OK : ZG_ERR_NOMEM;
}

static int log_softmax_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    zg_tensor *y = n->saved[0];
    const int d = ZG_NODE_ARGS(n, softmax_args)->dim;
    return (gin[0] = zg_sub(g, zg_mul(zg_exp(y), zg_sum_dim(g, d, true)))) ? ZG_OK : ZG_ERR_NOMEM;
}

static zg_tensor *softmax_op(const char *fn, zg_tensor *a, int dim, bool log_out) {
    if (zg__check_f32(fn, a, "input")) return NULL;
    int d = zg__wrap_dim(fn, dim, a->ndim);
    if (d < 0) return NULL;
    zg_tensor *y = zg__empty_like(a);
    if (!y) return NULL;
    dim_split s = split_at(a, d);
    zg__softmax_kernel(zg__f32(a), zg__f32(y), s.outer, s.size, s.inner, log_out);
    zg__node *n = ZG_RECORD(softmax_args, log_out ? "log_softmax" : "softmax",
                            log_out ? log_softmax_backward : softmax_backward, y, &a, 1);
    zg__node_set_double_backward(n, log_out ? log_softmax_backward_diff : softmax_backward_diff);
    if (n) {
        zg__save(n, y);
        ZG_NODE_ARGS(n, softmax_args)->dim = d;
    }
    return y;
}

zg_tensor *zg_softmax(zg_tensor *a, int dim) { return softmax_op("zg_softmax", a, dim, false); }

zg_tensor *zg_log_softmax(zg_tensor *a, int dim) { return softmax_op("zg_log_softmax", a, dim, true); }
