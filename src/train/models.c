/* The models `zgrad train` knows, and the names of models and optimizers
 * on the command line and in checkpoints. */
#include "train_internal.h"

#include "builtin_models.h" /* models/cnn.json, mlp.json and gpt.json, by scripts/embed-json */

/* A built-in model from its model file. */
static zg_module *build_builtin(const char *fn, const char *json) {
    zg_model_spec *spec = zg_model_spec_parse(json, strlen(json), fn);
    zg_module *m = spec ? zg_model_spec_build(spec) : NULL;
    zg_model_spec_free(spec);
    return m;
}

zg_model_spec *zg_train_model_spec(const char *path) {
    const char *fn = "zg_train_model_spec";
    if (!path) return zg__fail_null("%s: path is NULL", fn);
    char ckpt[4200], run[4200];
    zg__ckpt_state s;
    if (zg__ckpt_locate(fn, path, ckpt, sizeof ckpt, run, sizeof run) || zg__ckpt_read_state(fn, ckpt, &s)) return NULL;
    /* A GPT run's model file is its configuration's (the vocabulary the
     * text's), written as models/gpt.json is. */
    char gpt[512];
    if (s.model == ZG_MODEL_GPT)
        snprintf(gpt, sizeof gpt, "{\"layers\": [{\"type\": \"GPT\", \"vocab_size\": %lld, \"block_size\": %lld, "
                 "\"n_layer\": %lld, \"n_head\": %lld, \"n_embd\": %lld, \"dropout\": %.9g, \"bias\": %s}]}",
                 (long long)s.gpt.vocab_size, (long long)s.gpt.block_size, (long long)s.gpt.n_layer,
                 (long long)s.gpt.n_head, (long long)s.gpt.n_embd, (double)s.gpt.dropout, s.gpt.bias ? "true" : "false");
    const char *text = s.model == ZG_MODEL_FILE ? s.model_spec
                       : s.model == ZG_MODEL_GPT ? gpt
                                                 : zg__train_builtin_json(s.model);
    zg_model_spec *spec = NULL;
    if (text) spec = zg_model_spec_parse(text, strlen(text), s.model == ZG_MODEL_FILE ? "the run's model" : fn);
    else zg__fail(ZG_ERR_ARG, "%s: '%s' is a %s run, which has no model file", fn, path, zg_train_model_name(s.model));
    zg__ckpt_state_free(&s);
    return spec;
}

zg_module *zg__ckpt_model(const char *fn, const zg__ckpt_state *s, int64_t *shape, int *ndim) {
    uint64_t rng[4];
    zg_rng_get_state(rng);
    zg_model_spec *spec = NULL;
    zg_module *m = NULL;
    *ndim = 0;
    if (s->model == ZG_MODEL_GPT) {
        m = zg_nn_gpt(&s->gpt);
    } else {
        const char *text = s->model == ZG_MODEL_FILE ? s->model_spec : zg__train_builtin_json(s->model);
        spec = text ? zg_model_spec_parse(text, strlen(text), "the checkpoint's model") : NULL;
        if (!text) zg__fail(ZG_ERR_FORMAT, "%s: the checkpoint holds no model", fn);
        if (spec) {
            *ndim = zg_model_spec_shape(spec, false, shape, ZG_MAX_DIMS);
            m = zg_model_spec_build(spec);
        }
    }
    zg_model_spec_free(spec);
    zg_rng_set_state(rng);
    if (!m) {
        char inner[1024];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        zg__fail(ZG_ERR_FORMAT, "%s: the checkpoint's model: %s", fn, inner);
    }
    return m;
}

/* The spec of a built-in model (its name given as text, for the CLI). */
zg_model_spec *zg_train_builtin_spec(zg_model_kind kind) {
    const char *text = zg__train_builtin_json(kind);
    if (!text) return zg__fail_null("zg_train_builtin_spec: '%s' has no model file", zg_train_model_name(kind));
    return zg_model_spec_parse(text, strlen(text), zg_train_model_name(kind));
}

const char *zg__train_builtin_json(zg_model_kind kind) {
    return kind == ZG_MODEL_CNN   ? builtin_cnn_json
           : kind == ZG_MODEL_MLP ? builtin_mlp_json
           : kind == ZG_MODEL_GPT ? builtin_gpt_json /* its vocab_size the recipe's text's: Shakespeare's 65 */
                                  : NULL;
}

zg_module *zg_model_default_cnn(void) {
    /* models/cnn.json. 28x28 -> conv pad 1 keeps 28 -> pool 14 -> conv 14 ->
     * pool 7: 64 * 7 * 7 = 3136 features. Each ReLU runs after its pooling:
     * max and ReLU commute, values and gradients alike (the window's
     * maximum is the maximum after ReLU, and both orders send a window's
     * gradient to its first maximum or nowhere), and the ReLU then touches
     * a quarter of the elements. The parameter names are PyTorch's for
     * Conv-ReLU-MaxPool. */
    return build_builtin("zg_model_default_cnn", builtin_cnn_json);
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
    switch (kind) {
    case ZG_MODEL_CNN:
        return zg_model_default_cnn();
    case ZG_MODEL_MLP:
        return build_builtin("zg_train_run", builtin_mlp_json); /* models/mlp.json */
    case ZG_MODEL_GPT:  /* its size comes from the run's config and text: zg__lm_build */
    case ZG_MODEL_FILE: /* from the run's model file or checkpoint: train.c */
        break;
    }
    return zg__fail_null("zg_train_run: unknown model kind %d", (int)kind);
}

static const char *const model_names[] = {[ZG_MODEL_CNN] = "cnn", [ZG_MODEL_MLP] = "mlp", [ZG_MODEL_GPT] = "gpt",
                                          [ZG_MODEL_FILE] = "file"};
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
