/* LayerNorm over the last dim, and BatchNorm1d (input [N,C] or [N,C,L])
 * and BatchNorm2d ([N,C,H,W]), as
 * PyTorch's with affine=True and track_running_stats=True: parameters
 * weight (ones) and bias (zeros); buffers running_mean (zeros), running_var
 * (ones) and num_batches_tracked (an int64 0-dim counter). In training mode
 * each forward normalises with the batch statistics, counts the batch and
 * moves the running statistics by `momentum`, or with momentum None
 * (ZG_BN_MOMENTUM_NONE) to the average of all the batches counted; in eval
 * mode it uses the running statistics. */
#include "nn_internal.h"

#include <math.h>
#include <stdio.h>

/* iv: num_features, 1 or 2 (the variant); sc: eps, momentum. */
static zg_tensor *batch_norm_forward(zg_module *m, zg_tensor *x) {
    if (x->ndim < 2 || x->ndim > 4 || (m->iv[1] == 1 && x->ndim == 4) || (m->iv[1] == 2 && x->ndim != 4)) {
        char b[ZG_SHAPE_BUF];
        return zg__fail_null("expected %s input, got x of shape %s", m->iv[1] == 1 ? "2-D or 3-D" : "4-D",
                             zg__shape_str(x, b, sizeof b));
    }
    return zg_batch_norm_tracked(x, m->buffers[0], m->buffers[1], m->buffers[2], m->params[0], m->params[1],
                                 m->training, m->sc[1], m->sc[0]);
}

static void batch_norm_describe(const zg_module *m, char *buf, size_t n) {
    char mom[32] = "None";
    if (m->sc[1] != ZG_BN_MOMENTUM_NONE) snprintf(mom, sizeof mom, "%g", (double)m->sc[1]);
    snprintf(buf, n, "BatchNorm%lldd(%lld, eps=%g, momentum=%s)", (long long)m->iv[1], (long long)m->iv[0],
             (double)m->sc[0], mom);
}

static zg_module *batch_norm_new(const char *fn, const char *type, int variant, int64_t num_features, float eps,
                                 float momentum) {
    if (num_features <= 0) return zg__fail_null("%s: num_features %lld must be positive", fn, (long long)num_features);
    if (!(eps >= 0.0f) || !isfinite(eps)) return zg__fail_null("%s: eps %g must be a finite value >= 0", fn, eps);
    if (momentum != ZG_BN_MOMENTUM_NONE && !(momentum >= 0.0f && momentum <= 1.0f))
        return zg__fail_null("%s: momentum %g must lie in [0, 1] (or be ZG_BN_MOMENTUM_NONE)", fn, momentum);
    zg_module *m = zg__module_new(type, batch_norm_forward, batch_norm_describe);
    if (!m) return NULL;
    m->iv[0] = num_features;
    m->iv[1] = variant;
    m->sc[0] = eps;
    m->sc[1] = momentum;
    if (zg__module_add_param(m, "weight", zg_ones(&num_features, 1)) ||
        zg__module_add_param(m, "bias", zg_zeros(&num_features, 1)) ||
        zg__module_add_buffer(m, "running_mean", zg_zeros(&num_features, 1)) ||
        zg__module_add_buffer(m, "running_var", zg_ones(&num_features, 1)) ||
        zg__module_add_buffer(m, "num_batches_tracked", zg_tensor_new(ZG_INT64, NULL, 0))) {
        char inner[1024];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        zg_module_free(m);
        return zg__fail_null("%s: %s", fn, inner);
    }
    return m;
}

zg_module *zg_nn_batch_norm1d(int64_t num_features, float eps, float momentum) {
    return batch_norm_new("zg_nn_batch_norm1d", "BatchNorm1d", 1, num_features, eps, momentum);
}

zg_module *zg_nn_batch_norm2d(int64_t num_features, float eps, float momentum) {
    return batch_norm_new("zg_nn_batch_norm2d", "BatchNorm2d", 2, num_features, eps, momentum);
}

/* LayerNorm(normalized_dim): iv[0] the dim; sc[0] eps; parameters weight
 * (ones) and bias (zeros) when affine, bias left out when bias is false. */
static zg_tensor *layer_norm_forward(zg_module *m, zg_tensor *x) {
    zg_tensor *w = m->flag ? m->params[0] : NULL, *b = m->flag && m->n_params > 1 ? m->params[1] : NULL;
    return zg_layer_norm(x, &m->iv[0], 1, w, b, m->sc[0]);
}

static void layer_norm_describe(const zg_module *m, char *buf, size_t n) {
    snprintf(buf, n, "LayerNorm((%lld,), eps=%g, elementwise_affine=%s%s)", (long long)m->iv[0], (double)m->sc[0],
             m->flag ? "true" : "false", m->flag && m->n_params == 1 ? ", bias=false" : "");
}

zg_module *zg_nn_layer_norm(int64_t normalized_dim, float eps, bool elementwise_affine, bool bias) {
    const char *fn = "zg_nn_layer_norm";
    if (normalized_dim <= 0)
        return zg__fail_null("%s: normalized_dim %lld must be positive", fn, (long long)normalized_dim);
    if (!(eps >= 0.0f) || !isfinite(eps)) return zg__fail_null("%s: eps %g must be a finite value >= 0", fn, eps);
    zg_module *m = zg__module_new("LayerNorm", layer_norm_forward, layer_norm_describe);
    if (!m) return NULL;
    m->iv[0] = normalized_dim;
    m->sc[0] = eps;
    m->flag = elementwise_affine;
    if (elementwise_affine && (zg__module_add_param(m, "weight", zg_ones(&normalized_dim, 1)) ||
                               (bias && zg__module_add_param(m, "bias", zg_zeros(&normalized_dim, 1))))) {
        char inner[1024];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        zg_module_free(m);
        return zg__fail_null("%s: %s", fn, inner);
    }
    return m;
}
