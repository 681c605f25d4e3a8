/* MaxPool2d and AvgPool2d with square kernel, stride and padding. A stride
 * of 0 means the kernel size (PyTorch's stride=None). AvgPool2d counts the
 * padding in the divisor (count_include_pad=True); both floor the output
 * size (ceil_mode=False). */
#include "nn_internal.h"

#include <stdio.h>

/* iv: kernel, stride, padding. */
static zg_tensor *max_pool2d_forward(zg_module *m, zg_tensor *x) {
    const int k = (int)m->iv[0], s = (int)m->iv[1], p = (int)m->iv[2];
    return zg_max_pool2d(x, (int[]){k, k}, (int[]){s, s}, (int[]){p, p});
}

static zg_tensor *avg_pool2d_forward(zg_module *m, zg_tensor *x) {
    const int k = (int)m->iv[0], s = (int)m->iv[1], p = (int)m->iv[2];
    return zg_avg_pool2d(x, (int[]){k, k}, (int[]){s, s}, (int[]){p, p});
}

static void pool_describe(const zg_module *m, char *buf, size_t n) {
    snprintf(buf, n, "%s(kernel_size=%lld, stride=%lld, padding=%lld)", m->type, (long long)m->iv[0],
             (long long)m->iv[1], (long long)m->iv[2]);
}

static zg_module *pool_new(const char *fn, const char *type, zg__module_forward_fn forward, int kernel, int stride,
                           int padding) {
    if (kernel <= 0) return zg__fail_null("%s: kernel %d must be positive", fn, kernel);
    if (stride < 0) return zg__fail_null("%s: stride %d must be positive (or 0: the kernel size)", fn, stride);
    if (padding < 0 || padding > kernel / 2)
        return zg__fail_null("%s: padding %d must lie in [0, kernel/2] (kernel %d)", fn, padding, kernel);
    zg_module *m = zg__module_new(type, forward, pool_describe);
    if (!m) return NULL;
    m->iv[0] = kernel;
    m->iv[1] = stride ? stride : kernel;
    m->iv[2] = padding;
    return m;
}

zg_module *zg_nn_max_pool2d(int kernel, int stride, int padding) {
    return pool_new("zg_nn_max_pool2d", "MaxPool2d", max_pool2d_forward, kernel, stride, padding);
}

zg_module *zg_nn_avg_pool2d(int kernel, int stride, int padding) {
    return pool_new("zg_nn_avg_pool2d", "AvgPool2d", avg_pool2d_forward, kernel, stride, padding);
}
