/* MaxPool2d and AvgPool2d with square kernel, stride and padding, and the
 * options of zg_pool_opts (ceil_mode; for AvgPool2d count_include_pad and
 * divisor_override); AdaptiveAvgPool2d and AdaptiveAvgPool1d. A stride of
 * 0 means the kernel size (PyTorch's stride=None). */
#include "nn_internal.h"

#include <stdio.h>

/* iv: kernel, stride, padding, ceil_mode, exclude_pad, divisor_override. */
static zg_pool_opts pool_opts_of(const zg_module *m) {
    return (zg_pool_opts){.ceil_mode = m->iv[3] != 0, .exclude_pad = m->iv[4] != 0, .divisor_override = (int)m->iv[5]};
}

static zg_tensor *max_pool2d_forward(zg_module *m, zg_tensor *x) {
    const int k = (int)m->iv[0], s = (int)m->iv[1], p = (int)m->iv[2];
    const zg_pool_opts o = pool_opts_of(m);
    return zg_max_pool2d_ex(x, (int[]){k, k}, (int[]){s, s}, (int[]){p, p}, &o);
}

static zg_tensor *avg_pool2d_forward(zg_module *m, zg_tensor *x) {
    const int k = (int)m->iv[0], s = (int)m->iv[1], p = (int)m->iv[2];
    const zg_pool_opts o = pool_opts_of(m);
    return zg_avg_pool2d_ex(x, (int[]){k, k}, (int[]){s, s}, (int[]){p, p}, &o);
}

/* PyTorch's repr, the options shown only where they are not the defaults. */
static void pool_describe(const zg_module *m, char *buf, size_t n) {
    char opt[96] = "";
    size_t k = 0;
    if (m->iv[3]) k += (size_t)snprintf(opt + k, sizeof opt - k, ", ceil_mode=true");
    if (m->iv[4]) k += (size_t)snprintf(opt + k, sizeof opt - k, ", count_include_pad=false");
    if (m->iv[5]) snprintf(opt + k, sizeof opt - k, ", divisor_override=%lld", (long long)m->iv[5]);
    snprintf(buf, n, "%s(kernel_size=%lld, stride=%lld, padding=%lld%s)", m->type, (long long)m->iv[0],
             (long long)m->iv[1], (long long)m->iv[2], opt);
}

static zg_module *pool_new(const char *fn, const char *type, zg__module_forward_fn forward, int kernel, int stride,
                           int padding, const zg_pool_opts *opts) {
    const zg_pool_opts o = opts ? *opts : (zg_pool_opts){0};
    if (kernel <= 0) return zg__fail_null("%s: kernel %d must be positive", fn, kernel);
    if (stride < 0) return zg__fail_null("%s: stride %d must be positive (or 0: the kernel size)", fn, stride);
    if (padding < 0 || padding > kernel / 2)
        return zg__fail_null("%s: padding %d must lie in [0, kernel/2] (kernel %d)", fn, padding, kernel);
    if (forward == max_pool2d_forward && (o.exclude_pad || o.divisor_override))
        return zg__fail_null("%s: exclude_pad and divisor_override apply to average pooling only", fn);
    zg_module *m = zg__module_new(type, forward, pool_describe);
    if (!m) return NULL;
    m->iv[0] = kernel;
    m->iv[1] = stride ? stride : kernel;
    m->iv[2] = padding;
    m->iv[3] = o.ceil_mode;
    m->iv[4] = o.exclude_pad;
    m->iv[5] = o.divisor_override;
    return m;
}

zg_module *zg_nn_max_pool2d(int kernel, int stride, int padding) {
    return pool_new("zg_nn_max_pool2d", "MaxPool2d", max_pool2d_forward, kernel, stride, padding, NULL);
}

zg_module *zg_nn_avg_pool2d(int kernel, int stride, int padding) {
    return pool_new("zg_nn_avg_pool2d", "AvgPool2d", avg_pool2d_forward, kernel, stride, padding, NULL);
}

zg_module *zg_nn_max_pool2d_ex(int kernel, int stride, int padding, const zg_pool_opts *opts) {
    return pool_new("zg_nn_max_pool2d_ex", "MaxPool2d", max_pool2d_forward, kernel, stride, padding, opts);
}

zg_module *zg_nn_avg_pool2d_ex(int kernel, int stride, int padding, const zg_pool_opts *opts) {
    return pool_new("zg_nn_avg_pool2d_ex", "AvgPool2d", avg_pool2d_forward, kernel, stride, padding, opts);
}

/* Adaptive pooling: iv[0], iv[1] the output size (1d: iv[1] alone). */
static zg_tensor *adaptive2d_forward(zg_module *m, zg_tensor *x) { return zg_adaptive_avg_pool2d(x, m->iv); }

static zg_tensor *adaptive1d_forward(zg_module *m, zg_tensor *x) { return zg_adaptive_avg_pool1d(x, m->iv[1]); }

static void adaptive_describe(const zg_module *m, char *buf, size_t n) {
    if (m->forward == adaptive2d_forward)
        snprintf(buf, n, "AdaptiveAvgPool2d(output_size=(%lld, %lld))", (long long)m->iv[0], (long long)m->iv[1]);
    else
        snprintf(buf, n, "AdaptiveAvgPool1d(output_size=%lld)", (long long)m->iv[1]);
}

static zg_module *adaptive_new(const char *fn, const char *type, zg__module_forward_fn forward, int64_t oh,
                               int64_t ow) {
    if (oh <= 0 || ow <= 0)
        return zg__fail_null("%s: output size %lld must be positive", fn, (long long)(oh <= 0 ? oh : ow));
    zg_module *m = zg__module_new(type, forward, adaptive_describe);
    if (!m) return NULL;
    m->iv[0] = oh;
    m->iv[1] = ow;
    return m;
}

zg_module *zg_nn_adaptive_avg_pool2d(int64_t out_h, int64_t out_w) {
    return adaptive_new("zg_nn_adaptive_avg_pool2d", "AdaptiveAvgPool2d", adaptive2d_forward, out_h, out_w);
}

zg_module *zg_nn_adaptive_avg_pool1d(int64_t out_len) {
    return adaptive_new("zg_nn_adaptive_avg_pool1d", "AdaptiveAvgPool1d", adaptive1d_forward, 1, out_len);
}
