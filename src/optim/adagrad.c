/* Adagrad (lr decay, initial accumulator value, weight decay, maximize),
 * as torch.optim.Adagrad (single-tensor path, dense gradients). With g the
 * gradient (negated when maximize) and t the step count after this
 * update:
 *
 *   g   += wd * p                   if wd != 0
 *   clr  = lr / (1 + (t - 1) * lr_decay)
 *   sum += g^2                      (sum starts at initial_accumulator_value)
 *   p   -= clr * g / (sqrt(sum) + eps)
 *
 * PyTorch fills sum when the optimizer is built; here it is filled on the
 * parameter's first step, from the group's initial_accumulator_value at
 * that time (the same value unless it was changed in between). */
#include "optim_internal.h"

#include <math.h>

/* The element loop; the flags are selects so that it vectorises. */
ZG_SIMD_CLONES static void adagrad_kernel(int64_t lo, int64_t hi, float *restrict pd, const float *restrict gd,
                                          float *restrict sum, float neg_clr, float eps, float wd, bool maximize,
                                          bool decay) {
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
        const float p0 = pd[i], g0 = gd[i], s0 = sum[i];
        float gi = maximize ? -g0 : g0;
        gi = decay ? gi + wd * p0 : gi;
        const float s = s0 + gi * gi;
        sum[i] = s;
        const float std = sqrtf(s) + eps;
        pd[i] = p0 + neg_clr * gi / std;
    }
}

int zg__adagrad_update(zg_tensor *p, const zg_tensor *g, zg__param_state *st, const double *hp) {
    zg_tensor *sumt = zg__optim_buffer(st, ZG__BUF_SUM, p, (float)hp[ZG_HP_INITIAL_ACCUMULATOR_VALUE], NULL);
    if (!sumt) return ZG_ERR_NOMEM;
    if (!g) return ZG_OK; /* the reservation pass */

    const double t = (double)st->step;
    const float neg_clr = (float)-(hp[ZG_HP_LR] / (1.0 + (t - 1.0) * hp[ZG_HP_LR_DECAY]));
    const float eps = (float)hp[ZG_HP_EPS];
    const float wd = (float)hp[ZG_HP_WEIGHT_DECAY];
    const bool decay = hp[ZG_HP_WEIGHT_DECAY] != 0;
    const bool maximize = hp[ZG_HP_MAXIMIZE] != 0;

    float *pd = zg__f32(p), *sum = zg__f32(sumt);
    const float *gd = zg__f32(g);
    const int64_t n = p->numel;
    ZG_PARALLEL_CHUNKS(lo, hi, n, ZG__OPTIM_PAR_MIN,
                       { adagrad_kernel(lo, hi, pd, gd, sum, neg_clr, eps, wd, maximize, decay); });
    zg__bump_version(sumt);
    zg__bump_version(p);
    return ZG_OK;
}
