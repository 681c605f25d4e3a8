/* Linear(in, out): y = x W^T + b with W [out, in] and b [out]. PyTorch's
 * default init draws W by kaiming_uniform_(a = sqrt(5)), whose bound
 * gain * sqrt(3 / fan_in) with gain = sqrt(2 / (1 + a^2)) = sqrt(1/3) is
 * 1/sqrt(fan_in), and then b from the same bound: weight first, then bias,
 * from the default generator. */
#include "nn_internal.h"

#include <math.h>
#include <stdio.h>

static zg_tensor *linear_forward(zg_module *m, zg_tensor *x) {
    return zg_linear(x, m->params[0], m->flag ? m->params[1] : NULL);
}

static void linear_describe(const zg_module *m, char *buf, size_t n) {
    snprintf(buf, n, "Linear(in_features=%lld, out_features=%lld, bias=%s)", (long long)m->iv[0],
             (long long)m->iv[1], m->flag ? "true" : "false");
}

zg_module *zg_nn_linear(int64_t in_features, int64_t out_features, bool bias) {
    if (in_features <= 0 || out_features <= 0)
        return zg__fail_null("zg_nn_linear: sizes must be positive (in_features %lld, out_features %lld)",
                             (long long)in_features, (long long)out_features);
    zg_module *m = zg__module_new("Linear", linear_forward, linear_describe);
    if (!m) return NULL;
    m->iv[0] = in_features;
    m->iv[1] = out_features;
    m->flag = bias;
    float bound = (float)(1.0 / sqrt((double)in_features));
    int64_t wshape[2] = {out_features, in_features};
    if (zg__module_add_param(m, "weight", zg_uniform(wshape, 2, -bound, bound)) ||
        (bias && zg__module_add_param(m, "bias", zg_uniform(&out_features, 1, -bound, bound)))) {
        char inner[1024];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        zg_module_free(m);
        return zg__fail_null("zg_nn_linear: %s", inner);
    }
    return m;
}
