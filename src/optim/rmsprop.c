/* RMSprop (centered, momentum, weight decay, maximize), as
 * torch.optim.RMSprop (single-tensor path). With g the gradient (negated
 * when maximize) and alpha the smoothing constant:
 *
 *   g   += wd * p                                   if wd != 0
 *   sq   = alpha * sq + (1 - alpha) * g^2
 *   avg  = sqrt(sq) + eps                           plain
 *   ga   = alpha * ga + (1 - alpha) * g,
 *   avg  = sqrt(sq - ga^2) + eps                    centered
 *   buf  = mu * buf + g / avg, p -= lr * buf        if momentum mu > 0
 *   p   -= lr * g / avg                             otherwise
 *
 * Buffers start at zero (the momentum buffer too, unlike SGD's). */
#include "optim_internal.h"

#include <math.h>

typedef struct {
    float a, one_minus_a, eps, wd, mu, neg_lr;
    bool centered, use_momentum, maximize, decay;
} rmsprop_consts;

/* The element loop. */
ZG_SIMD_CLONES static void rmsprop_kernel(int64_t lo, int64_t hi, float *restrict pd, const float *restrict gd,
                                          float *restrict sq, float *restrict ga, float *restrict buf,
                                          const rmsprop_consts *c) {
    const float a = c->a, one_minus_a = c->one_minus_a, eps = c->eps, wd = c->wd, mu = c->mu, neg_lr = c->neg_lr;
    const bool centered = c->centered, use_momentum = c->use_momentum, maximize = c->maximize, decay = c->decay;
    if (!centered && !use_momentum) {
        /* The default: no conditional stores, so it vectorises on any ISA. */
#pragma omp simd
        for (int64_t i = lo; i < hi; i++) {
            const float p0 = pd[i], g0 = gd[i], s0 = sq[i];
            float gi = maximize ? -g0 : g0;
            gi = decay ? gi + wd * p0 : gi;
            const float s = s0 * a + one_minus_a * gi * gi;
            sq[i] = s;
            pd[i] = p0 + neg_lr * gi / (sqrtf(s) + eps);
        }
        return;
    }
    for (int64_t i = lo; i < hi; i++) {
        float gi = maximize ? -gd[i] : gd[i];
        if (decay) gi = gi + wd * pd[i];
        float s = sq[i] * a + one_minus_a * gi * gi;
        sq[i] = s;
        float avg;
        if (centered) {
            float m = ga[i] * a + one_minus_a * gi;
            ga[i] = m;
            avg = sqrtf(s + -m * m);
        } else {
            avg = sqrtf(s);
        }
        avg = avg + eps;
        if (use_momentum) {
            float b = buf[i] * mu + gi / avg;
            buf[i] = b;
            pd[i] = pd[i] + neg_lr * b;
        } else {
            pd[i] = pd[i] + neg_lr * gi / avg;
        }
    }
}

int zg__rmsprop_update(zg_tensor *p, const zg_tensor *g, zg__param_state *st, const double *hp) {
    const double alpha = hp[ZG_HP_ALPHA];
    const bool centered = hp[ZG_HP_CENTERED] != 0;
    const bool use_momentum = hp[ZG_HP_MOMENTUM] > 0;
    const bool maximize = hp[ZG_HP_MAXIMIZE] != 0;
    const bool decay = hp[ZG_HP_WEIGHT_DECAY] != 0;

    zg_tensor *sqt = zg__optim_buffer(st, ZG__BUF_SQUARE_AVG, p, 0.0f, NULL);
    zg_tensor *gat = centered ? zg__optim_buffer(st, ZG__BUF_GRAD_AVG, p, 0.0f, NULL) : NULL;
    zg_tensor *bt = use_momentum ? zg__optim_buffer(st, ZG__BUF_MOMENTUM, p, 0.0f, NULL) : NULL;
    if (!sqt || (centered && !gat) || (use_momentum && !bt)) return ZG_ERR_NOMEM;
    if (!g) return ZG_OK; /* the reservation pass */

    const rmsprop_consts c = {
        .a = (float)alpha,
        .one_minus_a = (float)(1.0 - alpha),
        .eps = (float)hp[ZG_HP_EPS],
        .wd = (float)hp[ZG_HP_WEIGHT_DECAY],
        .mu = (float)hp[ZG_HP_MOMENTUM],
        .neg_lr = (float)-hp[ZG_HP_LR],
        .centered = centered,
        .use_momentum = use_momentum,
        .maximize = maximize,
        .decay = decay,
    };

    float *pd = zg__f32(p), *sq = zg__f32(sqt);
    float *ga = gat ? zg__f32(gat) : NULL, *buf = bt ? zg__f32(bt) : NULL;
    const float *gd = zg__f32(g);
    const int64_t n = p->numel;
    ZG_PARALLEL_CHUNKS(lo, hi, n, ZG__OPTIM_PAR_MIN, { rmsprop_kernel(lo, hi, pd, gd, sq, ga, buf, &c); });
    zg__bump_version(sqt);
    if (gat) zg__bump_version(gat);
    if (bt) zg__bump_version(bt);
    zg__bump_version(p);
    return ZG_OK;
}
