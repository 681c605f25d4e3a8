/* Adam and AdamW (with amsgrad and maximize), as torch.optim.Adam / AdamW
 * (single-tensor path). With g the gradient (negated when maximize) and t
 * the step count after this update:
 *
 *   Adam:  g += wd * p                     (L2 penalty through the gradient)
 *   AdamW: p *= 1 - lr * wd                (decoupled decay, g untouched)
 *   m     = b1 * m + (1 - b1) * g
 *   v     = b2 * v + (1 - b2) * g^2
 *   vhat  = amsgrad ? (vmax = max(vmax, v)) : v
 *   denom = sqrt(vhat) / sqrt(1 - b2^t) + eps
 *   p    -= (lr / (1 - b1^t)) * m / denom
 *
 * The bias corrections are computed in double as Python does, then the
 * element loop runs in float32 in the order of PyTorch's kernels. */
#include "optim_internal.h"

#include <math.h>

/* torch.maximum: NaN wins. */
static inline float max_nan(float a, float b) { return (a != a || b != b) ? a + b : (a > b ? a : b); }

typedef struct {
    float b1, b2, one_minus_b1, one_minus_b2, decay, wdf, bc2_sqrt, eps, neg_step_size;
    bool maximize, decoupled, l2;
} adam_consts;

/* The element loop; the flags are selects so that it vectorises. */
ZG_SIMD_CLONES static void adam_kernel(int64_t lo, int64_t hi, float *restrict pd, const float *restrict gd,
                                       float *restrict m, float *restrict v, float *restrict vmax,
                                       const adam_consts *c) {
    const float b1 = c->b1, b2 = c->b2, one_minus_b1 = c->one_minus_b1, one_minus_b2 = c->one_minus_b2;
    const float decay = c->decay, wdf = c->wdf, bc2_sqrt = c->bc2_sqrt, eps = c->eps;
    const float neg_step_size = c->neg_step_size;
    const bool maximize = c->maximize, decoupled = c->decoupled, l2 = c->l2;
    if (vmax) {
        /* amsgrad: a store to vmax in the vectorised loop below, even under
         * an invariant test, keeps GCC from vectorising it; this rare case
         * stays scalar. */
        for (int64_t i = lo; i < hi; i++) {
            float gi = maximize ? -gd[i] : gd[i];
            float pi = pd[i];
            if (decoupled) pi = pi * decay;
            if (l2) gi = gi + wdf * pi;
            float mi = m[i] * b1 + one_minus_b1 * gi;
            float vi = v[i] * b2 + one_minus_b2 * gi * gi;
            m[i] = mi;
            v[i] = vi;
            vi = vmax[i] = max_nan(vmax[i], vi);
            float denom = sqrtf(vi) / bc2_sqrt + eps;
            pd[i] = pi + neg_step_size * mi / denom;
        }
        return;
    }
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
        const float g0 = gd[i], p0 = pd[i], m0 = m[i], v0 = v[i];
        float gi = maximize ? -g0 : g0;
        const float pi = decoupled ? p0 * decay : p0;
        gi = l2 ? gi + wdf * pi : gi;
        float mi = m0 * b1 + one_minus_b1 * gi;
        float vi = v0 * b2 + one_minus_b2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        pd[i] = pi + neg_step_size * mi / denom;
    }
}

static int adam_update(zg_tensor *p, const zg_tensor *g, zg__param_state *st, const double *hp, bool decoupled) {
    const double lr = hp[ZG_HP_LR], beta1 = hp[ZG_HP_BETA1], beta2 = hp[ZG_HP_BETA2];
    const double wd = hp[ZG_HP_WEIGHT_DECAY];
    const bool amsgrad = hp[ZG_HP_AMSGRAD] != 0;
    const bool maximize = hp[ZG_HP_MAXIMIZE] != 0;
    const bool l2 = !decoupled && wd != 0;

    zg_tensor *mt = zg__optim_buffer(st, ZG__BUF_EXP_AVG, p, 0.0f, NULL);
    zg_tensor *vt = zg__optim_buffer(st, ZG__BUF_EXP_AVG_SQ, p, 0.0f, NULL);
    zg_tensor *vmt = amsgrad ? zg__optim_buffer(st, ZG__BUF_MAX_EXP_AVG_SQ, p, 0.0f, NULL) : NULL;
    if (!mt || !vt || (amsgrad && !vmt)) return ZG_ERR_NOMEM;
    if (!g) return ZG_OK; /* the reservation pass */

    const double t = (double)st->step;
    const double bias_correction1 = 1.0 - pow(beta1, t);
    const double bias_correction2 = 1.0 - pow(beta2, t);
    const adam_consts c = {
        .b1 = (float)beta1,
        .b2 = (float)beta2,
        .one_minus_b1 = (float)(1.0 - beta1),
        .one_minus_b2 = (float)(1.0 - beta2),
        .decay = (float)(1.0 - lr * wd),
        .wdf = (float)wd,
        .bc2_sqrt = (float)sqrt(bias_correction2),
        .eps = (float)hp[ZG_HP_EPS],
        .neg_step_size = (float)-(lr / bias_correction1),
        .maximize = maximize,
        .decoupled = decoupled,
        .l2 = l2,
    };

    float *pd = zg__f32(p), *m = zg__f32(mt), *v = zg__f32(vt), *vmax = vmt ? zg__f32(vmt) : NULL;
    const float *gd = zg__f32(g);
    const int64_t n = p->numel;
    ZG_PARALLEL_CHUNKS(lo, hi, n, ZG__OPTIM_PAR_MIN, { adam_kernel(lo, hi, pd, gd, m, v, vmax, &c); });
    zg__bump_version(mt);
    zg__bump_version(vt);
    if (vmt) zg__bump_version(vmt);
    zg__bump_version(p);
    return ZG_OK;
}

int zg__adam_update(zg_tensor *p, const zg_tensor *g, zg__param_state *st, const double *hp) {
    return adam_update(p, g, st, hp, false);
}

int zg__adamw_update(zg_tensor *p, const zg_tensor *g, zg__param_state *st, const double *hp) {
    return adam_update(p, g, st, hp, true);
}
