/* The models `zgrad train` knows, and the names of models and optimizers
 * on the command line and in checkpoints. */
#include "train_internal.h"

zg_module *zg_model_default_cnn(void) {
    /* 28x28 -> conv pad 1 keeps 28 -> pool 14 -> conv 14 -> pool 7:
     * 64 * 7 * 7 = 3136 features. Each ReLU runs after its pooling:
     * max and ReLU commute, values and gradients alike (the window's
     * maximum is the maximum after ReLU, and both orders send a window's
     * gradient to its first maximum or nowhere), and the ReLU then touches
     * a quarter of the elements. The parameter names are PyTorch's for
     * Conv-ReLU-MaxPool. */
    zg_module *layers[] = {
        zg_nn_conv2d(1, 32, 3, 1, 1, 1, 1, true),
        zg_nn_max_pool2d(2, 2, 0),
        zg_nn_relu(),
        zg_nn_conv2d(32, 64, 3, 1, 1, 1, 1, true),
        zg_nn_max_pool2d(2, 2, 0),
        zg_nn_relu(),
        zg_nn_flatten(),
        zg_nn_linear(3136, 128, true),
        zg_nn_relu(),
        zg_nn_linear(128, 10, true),
    };
    int n = (int)(sizeof layers / sizeof layers[0]);
    for (int i = 0; i < n; i++) {
        if (!layers[i]) {
            char inner[512];
            snprintf(inner, sizeof inner, "%s", zg_last_error());
            for (int j = 0; j < n; j++) zg_module_free(layers[j]);
            return zg__fail_null("zg_model_default_cnn: layer %d: %s", i, inner);
        }
    }
    return zg_nn_sequential(layers, n);
}

zg_module *zg_model_mlp(const int64_t *sizes, int n) {
    if (!sizes || n < 2 || n > 64) return zg__fail_null("zg_model_mlp: need 2 to 64 layer sizes (got %d)", sizes ? n : 0);
    for (int i = 0; i < n; i++)
        if (sizes[i] < 1) return zg__fail_null("zg_model_mlp: size %d is %lld, must be >= 1", i, (long long)sizes[i]);
    /* Flatten, then Linear (ReLU Linear)*: 1 + 2(n-1) - 1 modules. */
    zg_module *layers[128];
    int k = 0;
    layers[k++] = zg_nn_flatten();
    for (int i = 0; i + 1 < n; i++) {
        if (i > 0) layers[k++] = zg_nn_relu();
        layers[k++] = zg_nn_linear(sizes[i], sizes[i + 1], true);
    }
    for (int i = 0; i < k; i++) {
        if (!layers[i]) {
            char inner[512];
            snprintf(inner, sizeof inner, "%s", zg_last_error());
            for (int j = 0; j < k; j++) zg_module_free(layers[j]);
            return zg__fail_null("zg_model_mlp: layer %d: %s", i, inner);
        }
    }
    return zg_nn_sequential(layers, k);
}

zg_module *zg__train_build_model(zg_model_kind kind) {
    static const int64_t mlp[] = {784, 256, 128, 10};
    switch (kind) {
    case ZG_MODEL_CNN:
        return zg_model_default_cnn();
    case ZG_MODEL_MLP:
        return zg_model_mlp(mlp, 4);
    case ZG_MODEL_GPT:
        break; /* its size comes from the run's config and text: zg__lm_build */
    }
    return zg__fail_null("zg_train_run: unknown model kind %d", (int)kind);
}

static const char *const model_names[] = {[ZG_MODEL_CNN] = "cnn", [ZG_MODEL_MLP] = "mlp", [ZG_MODEL_GPT] = "gpt"};
static const char *const optim_names[] = {
    [ZG_SGD] = "sgd", [ZG_ADAM] = "adam", [ZG_ADAMW] = "adamw", [ZG_RMSPROP] = "rmsprop", [ZG_ADAGRAD] = "adagrad",
};

int zg_train_model_kind(const char *name) {
    for (int i = 0; name && i < (int)(sizeof model_names / sizeof model_names[0]); i++)
        if (!strcmp(name, model_names[i])) return i;
    return -1;
}

const char *zg_train_model_name(zg_model_kind kind) {
    return (int)kind >= 0 && (int)kind < (int)(sizeof model_names / sizeof model_names[0]) ? model_names[kind] : NULL;
}

int zg_train_optim_kind(const char *name) {
    for (int i = 0; name && i < (int)(sizeof optim_names / sizeof optim_names[0]); i++)
        if (!strcmp(name, optim_names[i])) return i;
    return -1;
}

const char *zg_train_optim_name(zg_optim_kind kind) {
    return (int)kind >= 0 && (int)kind < (int)(sizeof optim_names / sizeof optim_names[0]) ? optim_names[kind] : NULL;
}
