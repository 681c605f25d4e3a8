/* SGD with momentum, dampening, Nesterov momentum, weight decay and
 * maximize, as torch.optim.SGD (single-tensor path). With g the gradient
 * (negated when maximize), mu the momentum and tau the dampening:
 *
 *   g   += wd * p                        if wd != 0
 *   buf  = g                             on the first step with momentum
 *   buf  = mu * buf + (1 - tau) * g      afterwards
 *   g    = nesterov ? g + mu * buf : buf if mu != 0
 *   p   -= lr * g
 *
 * Arithmetic is float32 with the hyperparameters rounded to float, in the
 * order of PyTorch's elementwise kernels, so results agree to rounding. */
#include "optim_internal.h"

/* The element loops: every load first, then the flags as selects between
 * values, so that they vectorise. */
ZG_SIMD_CLONES static void sgd_plain(int64_t lo, int64_t hi, float *restrict pd, const float *restrict gd, float neg_lr,
                                     float wd, bool maximize, bool decay) {
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
        const float pi = pd[i], gi = gd[i];
        float d = maximize ? -gi : gi;
        d = decay ? d + wd * pi : d;
        pd[i] = pi + neg_lr * d;
    }
}

ZG_SIMD_CLONES static void sgd_momentum(int64_t lo, int64_t hi, float *restrict pd, const float *restrict gd,
                                        float *restrict buf, float neg_lr, float wd, float mu, float one_minus_tau,
                                        bool maximize, bool decay, bool first, bool nesterov) {
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
        const float pi = pd[i], gi = gd[i], bi = buf[i];
        float d = maximize ? -gi : gi;
        d = decay ? d + wd * pi : d;
        const float b = first ? d : bi * mu + one_minus_tau * d;
        buf[i] = b;
        d = nesterov ? d + mu * b : b;
        pd[i] = pi + neg_lr * d;
    }
}

int zg__sgd_update(zg_tensor *p, const zg_tensor *g, zg__param_state *st, const double *hp) {
    const float wd = (float)hp[ZG_HP_WEIGHT_DECAY];
    const double momentum = hp[ZG_HP_MOMENTUM];
    const float mu = (float)momentum;
    const float one_minus_tau = (float)(1.0 - hp[ZG_HP_DAMPENING]);
    const float neg_lr = (float)-hp[ZG_HP_LR];
    const bool nesterov = hp[ZG_HP_NESTEROV] != 0;
    const bool maximize = hp[ZG_HP_MAXIMIZE] != 0;
    const bool decay = hp[ZG_HP_WEIGHT_DECAY] != 0;
    if (!g) /* the reservation pass */
        return momentum == 0 || zg__optim_buffer(st, ZG__BUF_MOMENTUM, p, 0.0f, NULL) ? ZG_OK : ZG_ERR_NOMEM;

    float *pd = zg__f32(p);
    const float *gd = zg__f32(g);
    const int64_t n = p->numel;

    if (momentum == 0) {
        ZG_PARALLEL_CHUNKS(lo, hi, n, ZG__OPTIM_PAR_MIN, { sgd_plain(lo, hi, pd, gd, neg_lr, wd, maximize, decay); });
        zg__bump_version(p);
        return ZG_OK;
    }

    bool first;
    zg_tensor *bt = zg__optim_buffer(st, ZG__BUF_MOMENTUM, p, 0.0f, &first);
    if (!bt) return ZG_ERR_NOMEM;
    float *buf = zg__f32(bt);
    ZG_PARALLEL_CHUNKS(lo, hi, n, ZG__OPTIM_PAR_MIN, {
        sgd_momentum(lo, hi, pd, gd, buf, neg_lr, wd, mu, one_minus_tau, maximize, decay, first, nesterov);
    });
    zg__bump_version(bt);
    zg__bump_version(p);
    return ZG_OK;
}
