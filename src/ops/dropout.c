/* Inverted dropout. Training: each element is kept with probability 1-p
 * and scaled by 1/(1-p), so the expectation is unchanged and evaluation
 * needs no rescaling: y = x * m with m_i in {0, 1/(1-p)}. Backward:
 * dx = dy * m, so the mask is saved (an arena tensor holding m). */
#include "ops_internal.h"

#include <math.h>

static int dropout_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    if (!zg__node_needs(n, 0)) return ZG_OK;
    zg_tensor *g = zg__empty_like(n->in[0]);
    if (!g) return ZG_ERR_NOMEM;
    const float *m = zg__f32(n->saved[0]), *dy = zg__f32(gout);
    float *dx = zg__f32(g);
    for (int64_t i = 0; i < g->numel; i++) dx[i] = dy[i] * m[i];
    gin[0] = g;
    return ZG_OK;
}

/* The same product recorded, so that it can be differentiated again (the
 * mask a constant). */
static int dropout_backward_diff(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    if (!zg__node_needs(n, 0)) return ZG_OK;
    return (gin[0] = zg_mul(gout, n->saved[0])) ? ZG_OK : ZG_ERR_NOMEM;
}

zg_tensor *zg_dropout(zg_tensor *a, float p, bool train) {
    const char *fn = "zg_dropout";
    if (zg__check_f32(fn, a, "input")) return NULL;
    if (!(p >= 0.0f && p <= 1.0f)) return zg__fail_null("%s: p must be in [0, 1], got %g", fn, (double)p);
    if (!train || p == 0.0f) return a;

    zg_tensor *mask = zg__empty_like(a);
    zg_tensor *y = zg__empty_like(a);
    if (!mask || !y) return NULL;
    float *m = zg__f32(mask), *out = zg__f32(y);
    const float *x = zg__f32(a);
    if (p == 1.0f) {
        /* Everything dropped: no draws, zeros out and zero gradient. */
        memset(m, 0, (size_t)a->numel * sizeof(float));
    } else {
        float scale = (float)(1.0 / (1.0 - (double)p));
        for (int64_t i = 0; i < a->numel; i++) m[i] = zg__rng_uniform() < p ? 0.0f : scale;
    }
    for (int64_t i = 0; i < a->numel; i++) out[i] = x[i] * m[i];
    zg__node *n = zg__record("dropout", dropout_backward, y, &a, 1);
    zg__node_set_double_backward(n, dropout_backward_diff);
    if (n) zg__save(n, mask);
    return y;
}
