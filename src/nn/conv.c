/* Conv2d(in, out, kernel): weight [out, in/groups, k, k] and bias [out].
 * PyTorch's reset_parameters draws the weight by kaiming_uniform_(a =
 * sqrt(5)), whose bound gain * sqrt(3 / fan_in) with gain = sqrt(1/3) is
 * 1/sqrt(fan_in), fan_in = in/groups * k * k, and then the bias from the
 * same bound: weight first, then bias, from the default generator. */
#include "nn_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* iv: in, out, kernel, stride, padding, dilation, groups; flag: bias. */
static zg_tensor *conv2d_forward(zg_module *m, zg_tensor *x) {
    const int s = (int)m->iv[3], p = (int)m->iv[4], d = (int)m->iv[5];
    return zg_conv2d(x, m->params[0], m->flag ? m->params[1] : NULL, (int[]){s, s}, (int[]){p, p}, (int[]){d, d},
                     (int)m->iv[6]);
}

/* Conv2d, MaxPool2d(2) (stride 2, no padding) and optionally ReLU in a row
 * run as one op, zg__conv2d_pool2: the same values and gradients, without
 * the conv's full-size output and its gradient going through memory. No
 * hook or other observer can see the intermediate outputs inside a
 * Sequential. Returns how many of mods[0..n) ran (*x then holds their
 * output), or 0 where the pattern or the op does not apply. */
int zg__nn_conv2d_pool_forward(zg_module *const *mods, int n, zg_tensor **x) {
    if (n < 2 || strcmp(mods[0]->type, "Conv2d") || strcmp(mods[1]->type, "MaxPool2d")) return 0;
    const zg_module *c = mods[0], *p = mods[1];
    if (p->iv[0] != 2 || p->iv[1] != 2 || p->iv[2] != 0 || p->iv[3]) return 0; /* iv[3]: ceil_mode */
    const bool relu = n >= 3 && !strcmp(mods[2]->type, "ReLU");
    const int s = (int)c->iv[3], pd = (int)c->iv[4], d = (int)c->iv[5];
    zg_tensor *y = zg__conv2d_pool2(*x, c->params[0], c->flag ? c->params[1] : NULL, (int[]){s, s}, (int[]){pd, pd},
                                    (int[]){d, d}, (int)c->iv[6], relu);
    /* Where it does not apply or fails (out of memory) the modules run one
     * by one, and report an error with the module's place. */
    if (!y) return 0;
    *x = y;
    return relu ? 3 : 2;
}

static void conv2d_describe(const zg_module *m, char *buf, size_t n) {
    snprintf(buf, n,
             "Conv2d(%lld, %lld, kernel_size=%lld, stride=%lld, padding=%lld, dilation=%lld, groups=%lld, bias=%s)",
             (long long)m->iv[0], (long long)m->iv[1], (long long)m->iv[2], (long long)m->iv[3], (long long)m->iv[4],
             (long long)m->iv[5], (long long)m->iv[6], m->flag ? "true" : "false");
}

zg_module *zg_nn_conv2d(int64_t in_channels, int64_t out_channels, int kernel, int stride, int padding, int dilation,
                        int groups, bool bias) {
    const char *fn = "zg_nn_conv2d";
    if (in_channels <= 0 || out_channels <= 0)
        return zg__fail_null("%s: channels must be positive (in_channels %lld, out_channels %lld)", fn,
                             (long long)in_channels, (long long)out_channels);
    if (kernel <= 0 || stride <= 0 || dilation <= 0 || padding < 0 || groups <= 0)
        return zg__fail_null("%s: kernel %d, stride %d, dilation %d and groups %d must be positive and padding %d "
                             "non-negative",
                             fn, kernel, stride, dilation, groups, padding);
    if (in_channels % groups || out_channels % groups)
        return zg__fail_null("%s: in_channels %lld and out_channels %lld must be divisible by groups %d", fn,
                             (long long)in_channels, (long long)out_channels, groups);
    zg_module *m = zg__module_new("Conv2d", conv2d_forward, conv2d_describe);
    if (!m) return NULL;
    const int64_t cin_g = in_channels / groups;
    m->iv[0] = in_channels;
    m->iv[1] = out_channels;
    m->iv[2] = kernel;
    m->iv[3] = stride;
    m->iv[4] = padding;
    m->iv[5] = dilation;
    m->iv[6] = groups;
    m->flag = bias;
    const float bound = (float)(1.0 / sqrt((double)(cin_g * kernel * kernel)));
    int64_t wshape[4] = {out_channels, cin_g, kernel, kernel};
    if (zg__module_add_param(m, "weight", zg_uniform(wshape, 4, -bound, bound)) ||
        (bias && zg__module_add_param(m, "bias", zg_uniform(&out_channels, 1, -bound, bound)))) {
        char inner[1024];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        zg_module_free(m);
        return zg__fail_null("%s: %s", fn, inner);
    }
    return m;
}
