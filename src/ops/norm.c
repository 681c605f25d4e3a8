/* Batch normalisation over x [N, C, *] (statistics per channel c over the
 * M = N * prod(*) values of that channel).
 *
 * Training: mean and biased variance of the batch,
 *     xhat = (x - mean) / sqrt(var + eps),   y = weight * xhat + bias,
 * and the running statistics move towards the batch's in place:
 *     running_mean = (1 - momentum) running_mean + momentum mean
 *     running_var  = (1 - momentum) running_var  + momentum var * M / (M - 1)
 * (the unbiased variance). With momentum None (ZG_BN_MOMENTUM_NONE) the
 * factor is 1 / num_batches_tracked after the batch is counted, so the
 * running statistics are the plain average of all batches' statistics
 * (PyTorch's cumulative moving average); num_batches_tracked counts every
 * training batch, whatever the momentum. Backward through the batch statistics, with
 * g = dy * weight:
 *     dx = invstd * (g - mean(g) - xhat * mean(g * xhat))
 *     dweight = sum(dy * xhat),  dbias = sum(dy).
 * Eval: the running statistics are constants, so y is an affine map of x
 * and dx = dy * weight * invstd.
 * Sums run in double, channels in parallel. */
#include "ops_internal.h"

#include <math.h>

#define PAR_MIN_ELEMS 32768

typedef struct {
    int64_t N, C, S; /* x viewed as [N, C, S] */
    bool training;
    float eps;
    double *mean, *invstd; /* [C]: the statistics the forward normalised with */
} bn_state;

static int64_t par_min(int64_t units, int64_t work) { return units * work >= PAR_MIN_ELEMS ? 2 : INT64_MAX; }

/* The gradients of channel c. */
static void bn_backward_channel(const bn_state *st, const float *X, const float *G, const float *Wd, float *dX,
                                float *dW, float *dB, double M, int64_t c) {
    const int64_t N = st->N, C = st->C, S = st->S;
    const double mu = st->mean[c], is = st->invstd[c];
    /* sum(dy) and sum(dy * xhat) = invstd * sum(dy * (x - mean)). */
    double sg = 0.0, sgx = 0.0;
    for (int64_t i = 0; i < N; i++) {
        const float *xs = X + (i * C + c) * S, *gs = G + (i * C + c) * S;
        for (int64_t j = 0; j < S; j++) {
            sg += gs[j];
            sgx += gs[j] * ((double)xs[j] - mu);
        }
    }
    sgx *= is;
    if (dW) dW[c] = (float)sgx;
    if (dB) dB[c] = (float)sg;
    if (!dX) return;
    const double wc = Wd ? Wd[c] : 1.0;
    const float a = (float)(wc * is);
    /* Training: dx = a * (dy - sg/M - xhat * sgx/M), xhat = (x - mean) * invstd;
     * eval: dx = a * dy. */
    const float mg = st->training ? (float)(sg / M) : 0.0f;
    const float k = st->training ? (float)(sgx / M * is) : 0.0f;
    const float fmu = (float)mu;
    for (int64_t i = 0; i < N; i++) {
        const float *restrict xs = X + (i * C + c) * S, *restrict gs = G + (i * C + c) * S;
        float *restrict d = dX + (i * C + c) * S;
#pragma omp simd
        for (int64_t j = 0; j < S; j++) d[j] = a * (gs[j] - mg - (xs[j] - fmu) * k);
    }
}

/* The forward's shapes and batch statistics (in the arena). */
typedef struct {
    const bn_state *st;
} bn_args;

static int bn_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    const bn_state *st = ZG_NODE_ARGS(n, bn_args)->st;
    const zg_tensor *x = n->saved[0];
    const zg_tensor *w = n->in[1] ? n->saved[1] : NULL;
    const int64_t N = st->N, C = st->C, S = st->S;
    const double M = (double)(N * S);
    zg_tensor *gx = NULL, *gw = NULL, *gb = NULL;
    if (zg__node_needs(n, 0) && !(gx = zg__empty_like(n->in[0]))) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 1) && !(gw = zg__empty_like(n->in[1]))) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 2) && !(gb = zg__empty_like(n->in[2]))) return ZG_ERR_NOMEM;
    const float *X = zg__f32(x), *G = zg__f32(gout), *Wd = w ? zg__f32(w) : NULL;
    float *dX = gx ? zg__f32(gx) : NULL, *dW = gw ? zg__f32(gw) : NULL, *dB = gb ? zg__f32(gb) : NULL;
    ZG_PARALLEL_FOR(c, C, par_min(C, N * S), { bn_backward_channel(st, X, G, Wd, dX, dW, dB, M, c); });
    gin[0] = gx;
    gin[1] = gw;
    gin[2] = gb;
    return ZG_OK;
}

/* ---- higher-order gradients ---------------------------------------------- */

/* Sum over dims 0 and 2 of t [N, C, S], as [C] (the per-channel sums). */
static zg_tensor *channel_sum(zg_tensor *t, int64_t C) {
    return zg_reshape(zg_sum_dim(zg_sum_dim(t, 2, false), 0, false), &C, 1);
}

/* xhat and invstd of x3 [N, C, S] as tensors: in training recorded ops of
 * x (zg__norm_xhat over dims 0 and 2), in eval the running statistics the
 * forward used, constants. */
static int bn_xhat(const bn_state *st, zg_tensor *x3, zg_tensor **xhat, zg_tensor **invstd) {
    if (st->training) return zg__norm_xhat(x3, (int[]){0, 2}, 2, st->eps, xhat, invstd);
    const int64_t s[3] = {1, st->C, 1};
    zg_tensor *is = zg__empty(ZG_FLOAT32, s, 3), *mu = zg__empty(ZG_FLOAT32, s, 3);
    if (!is || !mu) return ZG_ERR_NOMEM;
    for (int64_t c = 0; c < st->C; c++) {
        zg__f32(is)[c] = (float)st->invstd[c];
        zg__f32(mu)[c] = (float)st->mean[c];
    }
    *invstd = is;
    *xhat = zg_mul(zg_sub(x3, mu), is);
    return *xhat ? ZG_OK : ZG_ERR_NOMEM;
}

/* batch_norm's gradients with ops on x as [N, C, S] (the formulas of the
 * file's header; in eval dx = dy weight invstd), so that they can be
 * differentiated again. */
static int bn_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    const bn_state *st = ZG_NODE_ARGS(n, bn_args)->st;
    zg_tensor *x = n->saved[0], *w = n->in[1] ? n->saved[1] : NULL, *xhat, *invstd;
    const int64_t s3[3] = {st->N, st->C, st->S}, c3[3] = {1, st->C, 1};
    zg_tensor *g3 = zg_reshape(g, s3, 3);
    if (!g3 || bn_xhat(st, zg_reshape(x, s3, 3), &xhat, &invstd)) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 0)) {
        zg_tensor *h = w ? zg_mul(g3, zg_reshape(w, c3, 3)) : g3;
        zg_tensor *dx = st->training ? zg__norm_dx(h, xhat, invstd, (int[]){0, 2}, 2) : zg_mul(h, invstd);
        if (!(gin[0] = dx ? zg_reshape(dx, x->shape, x->ndim) : NULL)) return ZG_ERR_NOMEM;
    }
    if (zg__node_needs(n, 1) && !(gin[1] = channel_sum(zg_mul(g3, xhat), st->C))) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 2) && !(gin[2] = channel_sum(g3, st->C))) return ZG_ERR_NOMEM;
    return ZG_OK;
}

/* Statistics, running-statistics update and output of channel c. */
static void bn_forward_channel(bn_state *st, const float *X, const float *Wd, const float *Bd, float *RM, float *RV,
                               double momentum, float eps, float *Y, int64_t c) {
    const int64_t N = st->N, C = st->C, S = st->S, M = N * S;
    double mu, var;
    if (st->training) {
        double s = 0.0;
        for (int64_t i = 0; i < N; i++) {
            const float *xs = X + (i * C + c) * S;
            for (int64_t j = 0; j < S; j++) s += xs[j];
        }
        mu = s / (double)M;
        double q = 0.0;
        for (int64_t i = 0; i < N; i++) {
            const float *xs = X + (i * C + c) * S;
            for (int64_t j = 0; j < S; j++) {
                const double dv = xs[j] - mu;
                q += dv * dv;
            }
        }
        var = q / (double)M;
        if (RM) {
            RM[c] = (float)((1.0 - momentum) * RM[c] + momentum * mu);
            RV[c] = (float)((1.0 - momentum) * RV[c] + momentum * (q / (double)(M - 1)));
        }
    } else {
        mu = RM[c];
        var = RV[c];
    }
    const double is = 1.0 / sqrt(var + (double)eps);
    st->mean[c] = mu;
    st->invstd[c] = is;
    /* y = x * alpha + beta per channel. */
    const double wc = Wd ? Wd[c] : 1.0, bc = Bd ? Bd[c] : 0.0;
    const float alpha = (float)(wc * is), beta = (float)(bc - mu * is * wc);
    for (int64_t i = 0; i < N; i++) {
        const float *restrict xs = X + (i * C + c) * S;
        float *restrict ys = Y + (i * C + c) * S;
#pragma omp simd
        for (int64_t j = 0; j < S; j++) ys[j] = xs[j] * alpha + beta;
    }
}

/* A [C] float32 tensor or NULL; `what` names it in the error. */
static int check_vec(const char *fn, const zg_tensor *t, const char *what, int64_t C, const char *sx) {
    if (!t) return ZG_OK;
    if (zg__check_f32(fn, t, what)) return ZG_ERR_ARG;
    if (t->ndim != 1 || t->shape[0] != C) {
        char b[ZG_SHAPE_BUF];
        return zg__fail(ZG_ERR_SHAPE, "%s: %s of shape %s must be [%lld] (the channels of x of shape %s)", fn, what,
                        zg__shape_str(t, b, sizeof b), (long long)C, sx);
    }
    return ZG_OK;
}

/* The counter: an int64 0-dim tensor or NULL. With momentum None, training
 * with running statistics needs it. */
static int check_counter(const char *fn, const zg_tensor *nbt, bool needed) {
    if (!nbt) {
        if (needed)
            return zg__fail(ZG_ERR_ARG, "%s: momentum None (ZG_BN_MOMENTUM_NONE) averages over the batches counted in "
                            "num_batches_tracked: pass it (zg_batch_norm_tracked)", fn);
        return ZG_OK;
    }
    if (nbt->dtype != ZG_INT64 || nbt->ndim != 0) {
        char b[ZG_SHAPE_BUF];
        return zg__fail(ZG_ERR_SHAPE, "%s: num_batches_tracked must be an int64 0-dim tensor, got %s of shape %s", fn,
                        nbt->dtype == ZG_INT64 ? "int64" : "float32", zg__shape_str(nbt, b, sizeof b));
    }
    if (zg__i64(nbt)[0] < 0 || zg__i64(nbt)[0] == INT64_MAX)
        return zg__fail(ZG_ERR_ARG, "%s: num_batches_tracked %lld cannot count another batch", fn,
                        (long long)zg__i64(nbt)[0]);
    return ZG_OK;
}

/* Every argument but x (checked by the caller, its shape in sx). */
static int check_bn_args(const char *fn, const zg_tensor *x, const char *sx, const zg_tensor *running_mean,
                         const zg_tensor *running_var, const zg_tensor *nbt, const zg_tensor *weight,
                         const zg_tensor *bias, bool training, float momentum, float eps) {
    const int64_t C = x->shape[1];
    if (check_vec(fn, running_mean, "running_mean", C, sx) || check_vec(fn, running_var, "running_var", C, sx) ||
        check_vec(fn, weight, "weight", C, sx) || check_vec(fn, bias, "bias", C, sx))
        return ZG_ERR_SHAPE;
    if (!running_mean != !running_var)
        return zg__fail(ZG_ERR_ARG, "%s: pass both running_mean and running_var, or neither", fn);
    if (!training && !running_mean) return zg__fail(ZG_ERR_ARG, "%s: eval mode needs running_mean and running_var", fn);
    if ((running_mean && running_mean->requires_grad) || (running_var && running_var->requires_grad))
        return zg__fail(ZG_ERR_ARG, "%s: running_mean and running_var must not require grad", fn);
    if (!(eps >= 0.0f) || !isfinite(eps)) return zg__fail(ZG_ERR_ARG, "%s: eps %g must be a finite value >= 0", fn, eps);
    const bool none = momentum == ZG_BN_MOMENTUM_NONE;
    if (!none && !(momentum >= 0.0f && momentum <= 1.0f))
        return zg__fail(ZG_ERR_ARG, "%s: momentum %g must lie in [0, 1] (or be ZG_BN_MOMENTUM_NONE)", fn, momentum);
    return check_counter(fn, nbt, none && training && running_mean);
}

static zg_tensor *batch_norm(const char *fn, zg_tensor *x, zg_tensor *running_mean, zg_tensor *running_var,
                             zg_tensor *num_batches_tracked, zg_tensor *weight, zg_tensor *bias, bool training,
                             float momentum, float eps) {
    if (zg__check_f32(fn, x, "x")) return NULL;
    char sx[ZG_SHAPE_BUF];
    zg__shape_str(x, sx, sizeof sx);
    if (x->ndim < 2) return zg__fail_null("%s: x of shape %s must have at least 2 dims [N,C,...]", fn, sx);
    if (check_bn_args(fn, x, sx, running_mean, running_var, num_batches_tracked, weight, bias, training, momentum,
                      eps))
        return NULL;
    const int64_t N = x->shape[0], C = x->shape[1], S = N > 0 && C > 0 ? x->numel / (N * C) : 0;
    const int64_t M = N * S;
    if (training && M <= 1)
        return zg__fail_null("%s: Expected more than 1 value per channel when training, got input size %s", fn, sx);

    zg_tensor *y = zg__empty_like(x);
    bn_state *st = zg__arena_alloc(sizeof *st);
    double *stats = zg__arena_alloc((size_t)(2 * (C ? C : 1)) * sizeof(double));
    if (!y || !st || !stats) return NULL;
    *st = (bn_state){.N = N, .C = C, .S = S, .training = training, .eps = eps, .mean = stats, .invstd = stats + C};
    const float *X = zg__f32(x), *Wd = weight ? zg__f32(weight) : NULL, *Bd = bias ? zg__f32(bias) : NULL;
    float *Y = zg__f32(y);
    float *RM = running_mean ? zg__f32(running_mean) : NULL, *RV = running_var ? zg__f32(running_var) : NULL;
    /* This batch is counted before its factor is taken, as in PyTorch. */
    const bool count = training && running_mean && num_batches_tracked;
    const int64_t batches = count ? zg__i64(num_batches_tracked)[0] + 1 : 0;
    const double factor =
        momentum != ZG_BN_MOMENTUM_NONE ? (double)momentum : batches > 0 ? 1.0 / (double)batches : 0.0;
    ZG_PARALLEL_FOR(c, C, par_min(C, M), { bn_forward_channel(st, X, Wd, Bd, RM, RV, factor, eps, Y, c); });
    if (training && running_mean) {
        zg__bump_version(running_mean);
        zg__bump_version(running_var);
    }
    if (count) {
        zg__i64(num_batches_tracked)[0] = batches;
        zg__bump_version(num_batches_tracked);
    }

    zg__node *n = ZG_RECORD(bn_args, "batch_norm", bn_backward, y, (zg_tensor *[]){x, weight, bias}, 3);
    zg__node_set_double_backward(n, bn_backward_diff);
    if (n) {
        zg__save(n, x);
        zg__save(n, weight);
        ZG_NODE_ARGS(n, bn_args)->st = st;
    }
    return y;
}

zg_tensor *zg_batch_norm(zg_tensor *x, zg_tensor *running_mean, zg_tensor *running_var, zg_tensor *weight,
                         zg_tensor *bias, bool training, float momentum, float eps) {
    return batch_norm("zg_batch_norm", x, running_mean, running_var, NULL, weight, bias, training, momentum, eps);
}

zg_tensor *zg_batch_norm_tracked(zg_tensor *x, zg_tensor *running_mean, zg_tensor *running_var,
                                 zg_tensor *num_batches_tracked, zg_tensor *weight, zg_tensor *bias, bool training,
                                 float momentum, float eps) {
    return batch_norm("zg_batch_norm_tracked", x, running_mean, running_var, num_batches_tracked, weight, bias,
                      training, momentum, eps);
}
