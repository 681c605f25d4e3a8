/* Sequential: runs its children in order, each on the previous output.
 * Children are named "0", "1", ..., so their parameters read "0.weight".
 * With no children it returns its input, as PyTorch's empty Sequential.
 * Conv2d, MaxPool2d(2) and ReLU in a row run as one fused op with the
 * same results (zg__nn_conv2d_pool_forward): nothing outside can see the
 * outputs between children. */
#include "nn_internal.h"

#include <stdio.h>

static zg_tensor *sequential_forward(zg_module *m, zg_tensor *x) {
    for (int i = 0; i < m->n_children && x;) {
        const int k = zg__nn_conv2d_pool_forward(m->children + i, m->n_children - i, &x);
        if (k) {
            i += k;
        } else {
            x = zg__module_call(m->children[i], x);
            i++;
        }
    }
    return x;
}

static void sequential_describe(const zg_module *m, char *buf, size_t n) {
    snprintf(buf, n, "Sequential(%d modules)", m->n_children);
}

/* Frees the modules the caller handed over, each once, except those that
 * belong to another container (not ours to free). */
static void free_given(zg_module *const *modules, int n) {
    for (int i = 0; i < n; i++) {
        /* Compare pointers before reading the module: an earlier copy of
         * the same pointer has been freed already. */
        bool seen = false;
        for (int j = 0; j < i && !seen; j++) seen = modules[j] == modules[i];
        if (modules[i] && !seen && !modules[i]->parent) zg_module_free(modules[i]);
    }
}

zg_module *zg_nn_sequential(zg_module *const *modules, int n) {
    if (n < 0) return zg__fail_null("zg_nn_sequential: negative count %d", n);
    if (n > 0 && !modules) return zg__fail_null("zg_nn_sequential: modules is NULL");
    const char *problem = NULL;
    int bad = -1, other = -1;
    for (int i = 0; i < n && !problem; i++) {
        if (!modules[i]) {
            problem = "is NULL", bad = i;
        } else if (modules[i]->parent) {
            problem = "already belongs to another container", bad = i;
        } else {
            for (int j = 0; j < i && !problem; j++)
                if (modules[j] == modules[i]) problem = "is the same module as", bad = i, other = j;
        }
    }
    if (problem) {
        char msg[128];
        if (other >= 0)
            snprintf(msg, sizeof msg, "module %d %s module %d", bad, problem, other);
        else
            snprintf(msg, sizeof msg, "module %d %s", bad, problem);
        free_given(modules, n);
        return zg__fail_null("zg_nn_sequential: %s", msg);
    }
    zg_module *m = zg__module_new("Sequential", sequential_forward, sequential_describe);
    if (!m) {
        free_given(modules, n);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "%d", i);
        if (zg__module_add_child(m, name, modules[i])) {
            /* The ones not yet added are still the caller's roots. */
            free_given(modules + i + 1, n - i - 1);
            zg_module_free(m);
            return NULL;
        }
    }
    return m;
}
