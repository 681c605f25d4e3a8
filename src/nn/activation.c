/* Parameter-free modules that wrap one op each: ReLU, LeakyReLU, GELU,
 * Tanh, Sigmoid, Dropout (active only in training mode) and Flatten
 * (start_dim 1, keeping the batch dimension). */
#include "nn_internal.h"

#include <math.h>
#include <stdio.h>

static zg_tensor *relu_forward(zg_module *m, zg_tensor *x) {
    (void)m;
    return zg_relu(x);
}
zg_module *zg_nn_relu(void) { return zg__module_new("ReLU", relu_forward, NULL); }

static zg_tensor *leaky_relu_forward(zg_module *m, zg_tensor *x) { return zg_leaky_relu(x, m->sc[0]); }
static void leaky_relu_describe(const zg_module *m, char *buf, size_t n) {
    snprintf(buf, n, "LeakyReLU(negative_slope=%g)", (double)m->sc[0]);
}
zg_module *zg_nn_leaky_relu(float negative_slope) {
    if (!isfinite(negative_slope)) return zg__fail_null("zg_nn_leaky_relu: negative_slope %g is not finite", negative_slope);
    zg_module *m = zg__module_new("LeakyReLU", leaky_relu_forward, leaky_relu_describe);
    if (m) m->sc[0] = negative_slope;
    return m;
}

static zg_tensor *gelu_forward(zg_module *m, zg_tensor *x) { return zg_gelu(x, m->flag); }
static void gelu_describe(const zg_module *m, char *buf, size_t n) {
    snprintf(buf, n, "GELU(approximate='%s')", m->flag ? "tanh" : "none");
}
zg_module *zg_nn_gelu(bool approximate_tanh) {
    zg_module *m = zg__module_new("GELU", gelu_forward, gelu_describe);
    if (m) m->flag = approximate_tanh;
    return m;
}

static zg_tensor *tanh_forward(zg_module *m, zg_tensor *x) {
    (void)m;
    return zg_tanh(x);
}
zg_module *zg_nn_tanh(void) { return zg__module_new("Tanh", tanh_forward, NULL); }

static zg_tensor *sigmoid_forward(zg_module *m, zg_tensor *x) {
    (void)m;
    return zg_sigmoid(x);
}
zg_module *zg_nn_sigmoid(void) { return zg__module_new("Sigmoid", sigmoid_forward, NULL); }

static zg_tensor *dropout_forward(zg_module *m, zg_tensor *x) { return zg_dropout(x, m->sc[0], m->training); }
static void dropout_describe(const zg_module *m, char *buf, size_t n) {
    snprintf(buf, n, "Dropout(p=%g)", (double)m->sc[0]);
}
zg_module *zg_nn_dropout(float p) {
    if (!(p >= 0.0f && p <= 1.0f)) return zg__fail_null("zg_nn_dropout: p %g is outside [0, 1]", p);
    zg_module *m = zg__module_new("Dropout", dropout_forward, dropout_describe);
    if (m) m->sc[0] = p;
    return m;
}

static zg_tensor *flatten_forward(zg_module *m, zg_tensor *x) {
    (void)m;
    return zg_flatten(x, 1);
}
zg_module *zg_nn_flatten(void) { return zg__module_new("Flatten", flatten_forward, NULL); }
