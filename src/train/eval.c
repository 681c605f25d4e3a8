/* Evaluation: test loss, accuracy and the confusion matrix of a model over
 * a loader, and `zgrad eval` on a saved run. */
#include "train_internal.h"

#include <math.h>

void zg_eval_result_free(zg_eval_result *r) {
    if (!r) return;
    free(r->confusion);
    r->confusion = NULL;
}

int zg_evaluate(zg_module *model, zg_loader *loader, int num_classes, zg_eval_result *out) {
    const char *fn = "zg_evaluate";
    if (!model || !loader || !out) return zg__fail(ZG_ERR_ARG, "%s: NULL argument", fn);
    memset(out, 0, sizeof *out);
    if (num_classes < 1 || num_classes > 100000)
        return zg__fail(ZG_ERR_ARG, "%s: num_classes must be in [1, 100000] (got %d)", fn, num_classes);
    out->confusion = zg__calloc((size_t)num_classes * (size_t)num_classes, sizeof *out->confusion);
    if (!out->confusion) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    out->num_classes = num_classes;

    /* Eval mode (dropout off, batch norm on running statistics) and no
     * graph; both are put back as they were. */
    bool was_training = zg_module_is_training(model);
    zg_module_train(model, false);
    zg_no_grad_enter();
    size_t mark = zg_arena_mark();
    zg_loss_opts lo = ZG_LOSS_DEFAULTS;
    lo.reduction = ZG_REDUCTION_SUM;
    double loss_sum = 0;
    int64_t correct = 0, n = 0;
    int rc = zg_loader_start_epoch(loader, 0, 0);
    zg_tensor *x, *y;
    while (rc == ZG_OK) {
        int got = zg_loader_next(loader, &x, &y);
        if (got <= 0) {
            rc = got;
            break;
        }
        zg_tensor *logits = zg_module_forward(model, x), *pred = NULL;
        zg_tensor *loss = logits ? zg_cross_entropy(logits, y, &lo) : NULL;
        if (!loss || !zg_max_dim(logits, 1, false, &pred)) {
            rc = ZG_ERR_STATE;
            break;
        }
        int64_t b = zg_tensor_size(y, 0);
        if (zg_tensor_ndim(logits) != 2 || zg_tensor_size(logits, 1) != num_classes) {
            char s[ZG_SHAPE_BUF];
            rc = zg__fail(ZG_ERR_SHAPE, "%s: the model's output has shape %s, expected [%lld,%d]", fn,
                          zg__shape_str(logits, s, sizeof s), (long long)b, num_classes);
            break;
        }
        const int64_t *yt = zg_tensor_data_i64(y), *pt = zg_tensor_data_i64(pred);
        for (int64_t i = 0; i < b; i++) {
            if (yt[i] < 0 || yt[i] >= num_classes) {
                rc = zg__fail(ZG_ERR_FORMAT, "%s: label %lld is outside the model's %d classes", fn,
                              (long long)yt[i], num_classes);
                break;
            }
            out->confusion[yt[i] * num_classes + pt[i]]++;
            correct += yt[i] == pt[i];
        }
        loss_sum += zg_tensor_item(loss);
        n += b;
        zg_arena_release(mark);
    }
    zg_arena_release(mark);
    zg_no_grad_exit();
    zg_module_train(model, was_training);
    if (rc == ZG_OK && n == 0) rc = zg__fail(ZG_ERR_ARG, "%s: the loader yielded no samples", fn);
    if (rc) {
        zg_eval_result_free(out);
        return rc;
    }
    out->n = n;
    out->loss = loss_sum / (double)n;
    out->accuracy = (double)correct / (double)n;
    return ZG_OK;
}

/* What `zgrad train` trains on: 28x28 images of 10 classes. */
#define IMAGE_PIXELS 784
#define NUM_CLASSES 10
/* The widest Linear layer a bare weights file may describe (the built-in
 * models' widest has 256 outputs). */
#define MAX_WIDTH 65536

/* The widths of the MLP whose Linear weights "1.weight", "3.weight", ...
 * (after its Flatten) a weights file holds, checked before the model is
 * built from them: 784 inputs, each layer's input the previous layer's
 * output, 10 outputs at the end, every width in [1, MAX_WIDTH]. The model
 * then allocates no weight larger than a tensor of the file (a Linear of
 * [268435456, 0] in the file would otherwise become one of 268435456
 * floats per input). */
static int mlp_widths(const char *fn, const char *path, const zg_safetensors *st, int64_t *sizes, int *n) {
    char key[32], shp[ZG_SHAPE_BUF], need[96];
    *n = 0;
    sizes[(*n)++] = IMAGE_PIXELS;
    const zg_tensor *w = NULL;
    int last = 1;
    for (int i = 1; *n < 64; i += 2) {
        snprintf(key, sizeof key, "%d.weight", i);
        const zg_tensor *next = zg_safetensors_get(st, key);
        if (!next) break;
        w = next;
        last = i;
        int64_t in = sizes[*n - 1];
        need[0] = '\0';
        if (zg_tensor_ndim(w) != 2)
            snprintf(need, sizeof need, "a Linear weight is [out, in], here [out, %lld]", (long long)in);
        else if (zg_tensor_size(w, 1) != in)
            snprintf(need, sizeof need, "its input size must be %lld (%s)", (long long)in,
                     i == 1 ? "the pixels of an image" : "the previous layer's output");
        else if (zg_tensor_size(w, 0) < 1 || zg_tensor_size(w, 0) > MAX_WIDTH)
            snprintf(need, sizeof need, "a layer's output size must be in [1, %d]", MAX_WIDTH);
        if (need[0])
            return zg__fail(ZG_ERR_FORMAT, "%s: '%s': '%s' has shape %s: %s", fn, path, key,
                            zg__shape_str(w, shp, sizeof shp), need);
        sizes[(*n)++] = zg_tensor_size(w, 0);
    }
    snprintf(key, sizeof key, "%d.weight", last);
    if (sizes[*n - 1] != NUM_CLASSES)
        return zg__fail(ZG_ERR_FORMAT,
                        "%s: '%s': the last Linear weight '%s' has shape %s: it must have %d outputs (the classes)", fn,
                        path, key, zg__shape_str(w, shp, sizeof shp), NUM_CLASSES);
    return ZG_OK;
}

/* The architecture of a bare model.safetensors, from its names and shapes:
 * the default CNN starts with a 4-D "0.weight"; an MLP has Linear weights
 * "1.weight", "3.weight", ... (after its Flatten). */
static zg_module *model_from_weights(const char *path, int *num_classes) {
    const char *fn = "zg_eval_checkpoint";
    zg_safetensors *st = zg_safetensors_read(path);
    if (!st) {
        char inner[1024];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        return zg__fail_null("%s: %s", fn, inner);
    }
    zg_module *m = NULL;
    zg_tensor *w0 = zg_safetensors_get(st, "0.weight"), *w1 = zg_safetensors_get(st, "1.weight");
    *num_classes = NUM_CLASSES;
    if (w0 && zg_tensor_ndim(w0) == 4) {
        m = zg_model_default_cnn();
    } else if (w1 && zg_tensor_ndim(w1) == 2) {
        int64_t sizes[64];
        int n;
        if (!mlp_widths(fn, path, st, sizes, &n)) m = zg_model_mlp(sizes, n);
    } else {
        zg__fail(ZG_ERR_FORMAT, "%s: '%s' is not a model written by zgrad train (no conv '0.weight' or linear '1.weight')",
                 fn, path);
    }
    zg_safetensors_free(st);
    return m;
}

/* A model with NaN or infinite weights (its training diverged) is refused:
 * its loss and predictions would mean nothing. */
static int check_finite(const char *fn, const zg_module *m, const char *path) {
    int64_t bad = 0;
    const char *first = NULL;
    for (int i = 0; i < zg_module_num_params(m); i++) {
        zg_tensor *p = zg_module_param(m, i);
        const float *d = zg_tensor_data(p);
        int64_t k = 0;
        for (int64_t j = 0; j < zg_tensor_numel(p); j++) k += !isfinite(d[j]);
        if (k && !first) first = zg_module_param_name(m, i);
        bad += k;
    }
    if (!bad) return ZG_OK;
    return zg__fail(ZG_ERR_NONFINITE,
                    "%s: the model in '%s' has %lld NaN or infinite weights (the first in '%s'): the training that "
                    "wrote it diverged",
                    fn, path, (long long)bad, first);
}

/* A --csv or --images run on its validation data: the run's split (its
 * seed) of the files it trained on, standardised with its training part's
 * statistics, which must be those the checkpoint saved (the files
 * unchanged); a regression's result is its MSE and R^2. */
static int eval_custom(const char *fn, const char *path, const char *ckpt, const zg__ckpt_state *s,
                       const char *data_dir, int64_t limit, zg_eval_result *out) {
    if (data_dir)
        return zg__fail(ZG_ERR_ARG, "%s: '%s' trained on a CSV file or an image folder: it is evaluated on its own "
                        "validation data (give no data directory)", fn, path);
    zg_train_config cfg = zg_train_config_defaults();
    zg__data_source src;
    memset(&src, 0, sizeof src);
    zg_dataset *tr = NULL, *va = NULL, *ds = NULL;
    zg_module *model = NULL;
    zg_loader *ld = NULL;
    int64_t shape[ZG_MAX_DIMS];
    int nd = 0;
    int rc = zg_train_checkpoint_config(path, &cfg);
    if (!rc) rc = zg__data_open(&cfg, &src, &tr, &va);
    if (!rc) rc = zg__data_check_resume(&src, s->data_json, ckpt);
    if (!rc && !(model = zg__ckpt_model(fn, s, shape, &nd))) rc = ZG_ERR_FORMAT;
    if (!rc) rc = zg__ckpt_load(fn, ckpt, model, NULL);
    if (!rc) rc = check_finite(fn, model, path);
    if (!rc && !(ds = limit > 0 && limit < zg_dataset_size(va) ? zg_dataset_head(va, limit) : va)) rc = ZG_ERR_NOMEM;
    if (!rc) {
        zg_loader_opts lo = {.batch_size = s->eval_batch_size, .shuffle = false, .mean = s->mean, .std = s->std,
                             .prefetch = true};
        if (!(ld = zg_loader_new(ds, &lo))) rc = ZG_ERR_ARG;
    }
    if (!rc) rc = zg__data_eval_result(&src, model, ld, out);
    if (!rc) out->n = zg_dataset_size(ds);
    if (!rc && !isfinite(out->loss)) {
        rc = zg__fail(ZG_ERR_NONFINITE, "%s: the validation loss of the model in '%s' is %s (its outputs overflow)",
                      fn, path, isnan(out->loss) ? "nan" : "inf");
        zg_eval_result_free(out);
    }
    zg_loader_free(ld);
    if (ds != va) zg_dataset_free(ds);
    zg_dataset_free(tr);
    zg_dataset_free(va);
    zg__data_source_free(&src);
    zg_module_free(model);
    return rc;
}

int zg_eval_checkpoint(const char *path, const char *data_dir, int64_t limit, zg_eval_result *out) {
    const char *fn = "zg_eval_checkpoint";
    if (!path || !out) return zg__fail(ZG_ERR_ARG, "%s: NULL argument", fn);
    memset(out, 0, sizeof *out);
    if (limit < 0) return zg__fail(ZG_ERR_ARG, "%s: limit must be >= 0 (0: every sample)", fn);
    const char *given_dir = data_dir;
    if (!data_dir) data_dir = ZG_TRAIN_DEFAULT_DATA;

    /* Building a model draws its initial weights; the caller's generator
     * state is put back afterwards. */
    uint64_t rng[4];
    zg_rng_get_state(rng);
    char ckpt[4200], run[4200], weights[4300];
    float mean = 0.2860f, std = 0.3530f;
    int64_t batch = 1000;
    int num_classes = 10;
    zg_module *model = NULL;
    int rc = ZG_OK;
    bool is_dir = zg__is_dir(path);
    zg__path_join(weights, sizeof weights, path, ZG_CKPT_MODEL);
    zg__path_join(ckpt, sizeof ckpt, path, ZG_CKPT_POINTER);
    char trainer[4300];
    zg__path_join(trainer, sizeof trainer, path, ZG_CKPT_TRAINER);
    if (is_dir && (zg__path_exists(ckpt) || zg__path_exists(trainer))) {
        zg__ckpt_state s;
        rc = zg__ckpt_locate(fn, path, ckpt, sizeof ckpt, run, sizeof run);
        if (!rc) rc = zg__ckpt_read_state(fn, ckpt, &s);
        if (!rc && s.model == ZG_MODEL_GPT) {
            rc = zg__fail(ZG_ERR_ARG, "%s: '%s' is a GPT run: its validation losses are in metrics.jsonl; "
                          "`zgrad sample` generates text from it", fn, path);
            zg__ckpt_state_free(&s);
        } else if (!rc && s.data_json) {
            rc = eval_custom(fn, path, ckpt, &s, given_dir, limit, out);
            zg__ckpt_state_free(&s);
            zg_rng_set_state(rng);
            return rc;
        }
        if (!rc) {
            mean = s.mean;
            std = s.std;
            batch = s.eval_batch_size;
            int64_t shape[ZG_MAX_DIMS];
            int nd = 0;
            model = zg__ckpt_model(fn, &s, shape, &nd);
            zg__ckpt_state_free(&s);
            if (!model) rc = ZG_ERR_FORMAT;
        }
        if (!rc) rc = zg__ckpt_load(fn, ckpt, model, NULL);
    } else {
        const char *file = is_dir ? weights : path;
        if (is_dir && !zg__path_exists(weights))
            rc = zg__fail(ZG_ERR_IO, "%s: '%s' holds no checkpoint and no %s", fn, path, ZG_CKPT_MODEL);
        if (!rc) model = model_from_weights(file, &num_classes);
        if (!rc && !model) rc = ZG_ERR_FORMAT;
        if (!rc && zg_module_load(model, file)) {
            char inner[1024];
            snprintf(inner, sizeof inner, "%s", zg_last_error());
            rc = zg__fail(ZG_ERR_FORMAT, "%s: %s", fn, inner);
        }
    }
    zg_rng_set_state(rng);
    if (!rc) rc = check_finite(fn, model, path);

    zg_dataset *full = NULL, *ds = NULL;
    zg_loader *ld = NULL;
    if (!rc) {
        full = zg_dataset_load_mnist_dir(data_dir, false);
        if (!full) rc = ZG_ERR_IO;
    }
    if (!rc) {
        ds = limit > 0 && limit < zg_dataset_size(full) ? zg_dataset_head(full, limit) : full;
        if (!ds) rc = ZG_ERR_NOMEM;
    }
    if (!rc) {
        zg_loader_opts lo = {.batch_size = batch, .shuffle = false, .drop_last = false, .seed = 0,
                             .mean = mean, .std = std, .prefetch = true};
        ld = zg_loader_new(ds, &lo);
        if (!ld) rc = ZG_ERR_ARG;
    }
    if (!rc) rc = zg_evaluate(model, ld, num_classes, out);
    if (!rc && !isfinite(out->loss)) {
        rc = zg__fail(ZG_ERR_NONFINITE, "%s: the test loss of the model in '%s' is %s (its outputs overflow)", fn, path,
                      isnan(out->loss) ? "nan" : "inf");
        zg_eval_result_free(out);
    }
    zg_loader_free(ld);
    if (ds != full) zg_dataset_free(ds);
    zg_dataset_free(full);
    zg_module_free(model);
    return rc;
}
