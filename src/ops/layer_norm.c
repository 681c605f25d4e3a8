/* Layer normalisation over the last dims of x.
 *
 * Shapes: x [*, M] viewed as R rows of the M = prod(normalized_shape)
 * values; weight, bias normalized_shape (either may be NULL).
 * Per row: mean, biased variance var, rstd = 1 / sqrt(var + eps),
 *     xhat = (x - mean) rstd,   y = xhat weight + bias.
 * Backward, with h = dy weight (dy where weight is NULL):
 *     dx = rstd (h - mean(h) - xhat mean(h xhat))
 *     dweight = sum over rows of dy xhat,   dbias = sum over rows of dy.
 * Stored for backward: x (the caller's tensor) and two doubles per row
 * (mean, rstd). Row statistics, dx and the column sums run in double;
 * rows are split between threads for the statistics and dx, columns for
 * dweight and dbias (rows summed in order), so no result depends on the
 * thread count. A row's sums take its elements into LANES interleaved
 * accumulators, added in a fixed tree at the end: not one chain of M
 * dependent additions (latency-bound), and the same bits for any vector
 * width the loops compile to. */
#include "ops_internal.h"
#include "pointwise.h"

#include <math.h>
#include <string.h>

#define PAR_MIN_ELEMS 32768

typedef struct {
    int64_t R, M;
    const double *mean, *rstd; /* [R] each, in the arena */
    float eps;
} ln_args;

#define LANES 8

static inline double lanes_total(const double *acc) {
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* h_j = dy_j weight_j (dy_j without weight) as a double. */
static inline double ln_h(const float *g, const float *W, int64_t j) { return W ? (double)g[j] * W[j] : g[j]; }

/* The lane sums of h and h xhat over a row; inlined once with and once
 * without a weight, so that each loop vectorises (a select per element
 * kept it scalar). */
__attribute__((always_inline)) static inline void ln_h_sums(const float *x, const float *g, const float *W,
                                                            int64_t M, double mu, double rs, double *sh,
                                                            double *shx) {
    int64_t j = 0;
    for (; j + LANES <= M; j += LANES)
        ZG_SIMD for (int l = 0; l < LANES; l++) {
            const double h = ln_h(g, W, j + l);
            sh[l] += h;
            shx[l] += h * ((x[j + l] - mu) * rs);
        }
    for (int l = 0; j < M; j++, l++) {
        const double h = ln_h(g, W, j);
        sh[l] += h;
        shx[l] += h * ((x[j] - mu) * rs);
    }
}

/* dx of row r. */
ZG_SIMD_CLONES
static void ln_backward_row(const ln_args *a, const float *X, const float *G, const float *W, float *dX, int64_t r) {
    const int64_t M = a->M;
    const float *x = X + r * M, *g = G + r * M;
    const double mu = a->mean[r], rs = a->rstd[r];
    double sh[LANES] = {0}, shx[LANES] = {0};
    if (W) ln_h_sums(x, g, W, M, mu, rs, sh, shx);
    else ln_h_sums(x, g, NULL, M, mu, rs, sh, shx);
    int64_t j;
    const double mh = lanes_total(sh) / (double)M, mhx = lanes_total(shx) / (double)M;
    float *d = dX + r * M;
    if (W)
        for (j = 0; j < M; j++) d[j] = (float)(rs * (ln_h(g, W, j) - mh - (x[j] - mu) * rs * mhx));
    else
        for (j = 0; j < M; j++) d[j] = (float)(rs * (ln_h(g, NULL, j) - mh - (x[j] - mu) * rs * mhx));
}

/* dweight and dbias of columns [c0, c1), in blocks of COLS columns whose
 * sums over the rows run in double. */
#define COLS 64
static void ln_backward_cols(const ln_args *a, const float *X, const float *G, float *dW, float *dB, int64_t c0,
                             int64_t c1) {
    const int64_t M = a->M;
    for (int64_t b0 = c0; b0 < c1; b0 += COLS) {
        const int64_t nb = c1 - b0 < COLS ? c1 - b0 : COLS;
        double sw[COLS] = {0}, sb[COLS] = {0};
        for (int64_t r = 0; r < a->R; r++) {
            const float *x = X + r * M + b0, *g = G + r * M + b0;
            const double mu = a->mean[r], rs = a->rstd[r];
            for (int64_t c = 0; c < nb; c++) {
                sw[c] += g[c] * ((x[c] - mu) * rs);
                sb[c] += g[c];
            }
        }
        for (int64_t c = 0; c < nb; c++) {
            if (dW) dW[b0 + c] = (float)sw[c];
            if (dB) dB[b0 + c] = (float)sb[c];
        }
    }
}

static int ln_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    const ln_args *a = ZG_NODE_ARGS(n, ln_args);
    const zg_tensor *x = n->saved[0], *w = n->in[1] ? n->saved[1] : NULL;
    zg_tensor *gx = NULL, *gw = NULL, *gb = NULL;
    if (zg__node_needs(n, 0) && !(gx = zg__empty_like(n->in[0]))) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 1) && !(gw = zg__empty_like(n->in[1]))) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 2) && !(gb = zg__empty_like(n->in[2]))) return ZG_ERR_NOMEM;
    const float *X = zg__f32(x), *G = zg__f32(gout), *W = w ? zg__f32(w) : NULL;
    const int64_t work = a->R * a->M;
    if (gx) {
        float *dX = zg__f32(gx);
        ZG_PARALLEL_FOR(r, a->R, work >= PAR_MIN_ELEMS ? 2 : INT64_MAX, { ln_backward_row(a, X, G, W, dX, r); });
    }
    if (gw || gb) {
        float *dW = gw ? zg__f32(gw) : NULL, *dB = gb ? zg__f32(gb) : NULL;
        const int64_t halves = work >= PAR_MIN_ELEMS && a->M >= 32 ? 2 : 1;
        ZG_PARALLEL_FOR(h, halves, 2, {
            ln_backward_cols(a, X, G, dW, dB, a->M * h / halves, a->M * (h + 1) / halves);
        });
    }
    gin[0] = gx;
    gin[1] = gw;
    gin[2] = gb;
    return ZG_OK;
}

/* ---- higher-order gradients ---------------------------------------------- */

static zg_tensor *mean_dims(zg_tensor *t, const int *dims, int nd) {
    for (int i = 0; i < nd && t; i++) t = zg_mean_dim(t, dims[i], true);
    return t;
}

int zg__norm_xhat(zg_tensor *x, const int *dims, int nd, float eps, zg_tensor **xhat, zg_tensor **rstd) {
    zg_tensor *xc = zg_sub(x, mean_dims(x, dims, nd));
    *rstd = zg_pow_scalar(zg_add_scalar(mean_dims(zg_mul(xc, xc), dims, nd), eps), -0.5f);
    *xhat = zg_mul(xc, *rstd);
    return *xhat ? ZG_OK : ZG_ERR_NOMEM;
}

zg_tensor *zg__norm_dx(zg_tensor *h, zg_tensor *xhat, zg_tensor *rstd, const int *dims, int nd) {
    zg_tensor *inner = zg_sub(zg_sub(h, mean_dims(h, dims, nd)), zg_mul(xhat, mean_dims(zg_mul(h, xhat), dims, nd)));
    return zg_mul(rstd, inner);
}

/* layer_norm's gradients with ops, on x as [R, M] rows: the statistics
 * recomputed in the graph (float32 ops: the first derivative agrees with
 * the double-precision backward to rounding). */
static int ln_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    const ln_args *a = ZG_NODE_ARGS(n, ln_args);
    zg_tensor *x = n->saved[0], *w = n->in[1] ? n->saved[1] : NULL, *xhat, *rstd;
    const int64_t rm[2] = {a->R, a->M};
    zg_tensor *g2 = zg_reshape(g, rm, 2);
    if (!g2 || zg__norm_xhat(zg_reshape(x, rm, 2), (int[]){1}, 1, a->eps, &xhat, &rstd)) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 0)) {
        zg_tensor *h = w ? zg_mul(g2, zg_reshape(w, (int64_t[]){a->M}, 1)) : g2;
        zg_tensor *dx = zg__norm_dx(h, xhat, rstd, (int[]){1}, 1);
        if (!(gin[0] = dx ? zg_reshape(dx, x->shape, x->ndim) : NULL)) return ZG_ERR_NOMEM;
    }
    zg_tensor *b = n->in[2];
    if (zg__node_needs(n, 1) && !(gin[1] = zg_reshape(zg_sum_dim(zg_mul(g2, xhat), 0, false), w->shape, w->ndim)))
        return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 2) && !(gin[2] = zg_reshape(zg_sum_dim(g2, 0, false), b->shape, b->ndim)))
        return ZG_ERR_NOMEM;
    return ZG_OK;
}

/* Statistics and output of row r. */
ZG_SIMD_CLONES
static void ln_forward_row(const ln_args *a, double *mean, double *rstd, const float *X, const float *W,
                           const float *B, float eps, float *Y, int64_t r) {
    const int64_t M = a->M;
    const float *x = X + r * M;
    double s[LANES] = {0}, q[LANES] = {0};
    int64_t j = 0;
    for (; j + LANES <= M; j += LANES)
        ZG_SIMD for (int l = 0; l < LANES; l++) s[l] += x[j + l];
    for (int l = 0; j < M; j++, l++) s[l] += x[j];
    const double mu = lanes_total(s) / (double)M;
    for (j = 0; j + LANES <= M; j += LANES)
        ZG_SIMD for (int l = 0; l < LANES; l++) q[l] += (x[j + l] - mu) * (x[j + l] - mu);
    for (int l = 0; j < M; j++, l++) q[l] += (x[j] - mu) * (x[j] - mu);
    const double rs = 1.0 / sqrt(lanes_total(q) / (double)M + (double)eps);
    mean[r] = mu;
    rstd[r] = rs;
    float *y = Y + r * M;
    for (j = 0; j < M; j++) {
        const float xh = (float)((x[j] - mu) * rs);
        y[j] = (W ? xh * W[j] : xh) + (B ? B[j] : 0.0f);
    }
}

/* weight or bias: NULL, or float32 of normalized_shape. */
static int check_affine(const char *fn, const zg_tensor *t, const char *what, const int64_t *ns, int k) {
    if (!t) return ZG_OK;
    if (zg__check_f32(fn, t, what)) return ZG_ERR_ARG;
    bool ok = t->ndim == k;
    for (int i = 0; ok && i < k; i++) ok = t->shape[i] == ns[i];
    if (!ok) {
        char b[ZG_SHAPE_BUF];
        return zg__fail(ZG_ERR_SHAPE, "%s: %s of shape %s must have normalized_shape", fn, what,
                        zg__shape_str(t, b, sizeof b));
    }
    return ZG_OK;
}

zg_tensor *zg_layer_norm(zg_tensor *x, const int64_t *normalized_shape, int k, zg_tensor *weight, zg_tensor *bias,
                         float eps) {
    const char *fn = "zg_layer_norm";
    if (zg__check_f32(fn, x, "x")) return NULL;
    char sx[ZG_SHAPE_BUF];
    zg__shape_str(x, sx, sizeof sx);
    if (!normalized_shape || k < 1 || k > x->ndim)
        return zg__fail_null("%s: normalized_shape must name 1 to %d last dims of x %s", fn, x->ndim, sx);
    int64_t M = 1;
    for (int i = 0; i < k; i++) {
        if (normalized_shape[i] != x->shape[x->ndim - k + i])
            return zg__fail_null("%s: normalized_shape dim %d is %lld; x %s has %lld there", fn, i,
                                 (long long)normalized_shape[i], sx, (long long)x->shape[x->ndim - k + i]);
        M *= normalized_shape[i];
    }
    if (check_affine(fn, weight, "weight", normalized_shape, k) || check_affine(fn, bias, "bias", normalized_shape, k))
        return NULL;
    if (!(eps >= 0.0f) || !isfinite(eps)) return zg__fail_null("%s: eps %g must be a finite value >= 0", fn, eps);
    const int64_t R = M ? x->numel / M : 0;

    zg_tensor *y = zg__empty_like(x);
    double *stats = zg__arena_alloc((size_t)(2 * (R ? R : 1)) * sizeof(double));
    if (!y || !stats) return NULL;
    ln_args a = {.R = R, .M = M, .mean = stats, .rstd = stats + R, .eps = eps};
    const float *X = zg__f32(x), *W = weight ? zg__f32(weight) : NULL, *B = bias ? zg__f32(bias) : NULL;
    float *Y = zg__f32(y);
    ZG_PARALLEL_FOR(r, R, R * M >= PAR_MIN_ELEMS ? 2 : INT64_MAX,
                    { ln_forward_row(&a, stats, stats + R, X, W, B, eps, Y, r); });

    zg__node *n = ZG_RECORD(ln_args, "layer_norm", ln_backward, y, (zg_tensor *[]){x, weight, bias}, 3);
    zg__node_set_double_backward(n, ln_backward_diff);
    if (n) {
        zg__save(n, x);
        zg__save(n, weight);
        *ZG_NODE_ARGS(n, ln_args) = a;
    }
    return y;
}
