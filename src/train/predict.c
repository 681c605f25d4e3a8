/* `zgrad predict`: a trained run on new inputs, preprocessed as its
 * training data was (the checkpoint's "data": the feature columns and
 * their statistics, the image size, channels and per-channel statistics,
 * the class names; for MNIST-format data the run's mean and std), in eval
 * mode under no_grad, written as CSV: one row per sample with its name,
 * the predicted class and each class's softmax probability, or the
 * regressed value. */
#include "train_internal.h"

#include <math.h>

#define BATCH 256

/* The run's model with its weights (the caller's generator is left as it
 * was: building a model draws initial weights). */
static zg_module *load_model(const char *fn, const char *path, const char *ckpt, zg_model_spec **spec) {
    uint64_t rng[4];
    zg_rng_get_state(rng);
    *spec = zg_train_model_spec(path);
    zg_module *m = *spec ? zg_model_spec_build(*spec) : NULL;
    zg_rng_set_state(rng);
    if (m && zg__ckpt_load(fn, ckpt, m, NULL)) {
        zg_module_free(m);
        m = NULL;
    }
    return m;
}

/* The inputs, read and normalised as the run's training data was. */
static zg_dataset *load_inputs(const char *input, const zg__data_desc *d) {
    zg_dataset *ds = NULL;
    if (d->kind == ZG__DATA_CSV) {
        zg_csv_opts o = {.features = (const char *const *)d->features, .n_features = d->n_stats};
        ds = zg_dataset_load_table(input, &o);
    } else if (d->kind == ZG__DATA_IMAGES) {
        zg_image_opts o = {.height = d->shape[1], .width = d->shape[2], .channels = (int)d->shape[0],
                           .unlabelled = true};
        ds = zg_dataset_load_image_folder(input, &o);
    } else {
        ds = zg_dataset_load_idx(input, NULL);
    }
    if (ds && d->kind != ZG__DATA_MNIST && zg_dataset_set_normalization(ds, d->mean, d->std)) {
        zg_dataset_free(ds);
        ds = NULL;
    }
    return ds;
}

/* A CSV field, quoted when it holds a comma, a quote, a line break or
 * spaces at an end (RFC 4180). */
static void csv_field(zg__strbuf *b, const char *s) {
    const size_t n = strlen(s);
    if (!strpbrk(s, ",\"\r\n") && !(n && (s[0] == ' ' || s[n - 1] == ' '))) {
        zg__sb_puts(b, s);
        return;
    }
    zg__sb_puts(b, "\"");
    for (const char *p = s; *p; p++) {
        if (*p == '"') zg__sb_puts(b, "\""); /* a quote is doubled */
        zg__sb_put(b, p, 1);
    }
    zg__sb_puts(b, "\"");
}

static void header(zg__strbuf *b, const zg__data_desc *d, int64_t k) {
    zg__sb_puts(b, d->kind == ZG__DATA_IMAGES ? "file" : d->kind == ZG__DATA_CSV ? "row" : "index");
    zg__sb_puts(b, ",predicted");
    for (int64_t c = 0; d->task != ZG_TASK_REGRESS && c < k; c++) {
        char name[64];
        zg__sb_puts(b, ",");
        if (d->classes) {
            zg__strbuf col = {0};
            zg__sb_printf(&col, "prob_%s", d->classes[c]);
            csv_field(b, col.s ? col.s : "");
            zg__sb_free(&col);
        } else {
            snprintf(name, sizeof name, "prob_%lld", (long long)c);
            zg__sb_puts(b, name);
        }
    }
    zg__sb_puts(b, "\n");
}

/* One batch's rows: x's logits (or values) from the model. */
static int batch_rows(zg__strbuf *b, zg_module *m, zg_tensor *x, const zg_dataset *ds, const zg__data_desc *d,
                      int64_t first) {
    zg_tensor *out = zg_module_forward(m, x);
    zg_tensor *p = out && d->task != ZG_TASK_REGRESS ? zg_softmax(out, 1) : out;
    if (!p) return ZG_ERR_STATE;
    const int64_t n = zg_tensor_size(out, 0), k = zg_tensor_numel(out) / n;
    const float *lo = zg_tensor_data(out), *pr = zg_tensor_data(p);
    for (int64_t i = 0; i < n; i++) {
        if (d->kind == ZG__DATA_IMAGES) csv_field(b, zg_dataset_sample_name(ds, first + i));
        else zg__sb_printf(b, "%lld", (long long)(first + i));
        if (d->task == ZG_TASK_REGRESS) {
            zg__sb_printf(b, ",%.9g\n", (double)lo[i]);
            continue;
        }
        int64_t best = 0; /* the first largest logit, as torch.argmax */
        for (int64_t c = 1; c < k; c++)
            if (lo[i * k + c] > lo[i * k + best]) best = c;
        zg__sb_puts(b, ",");
        if (d->classes) csv_field(b, d->classes[best]);
        else zg__sb_printf(b, "%lld", (long long)best);
        for (int64_t c = 0; c < k; c++) zg__sb_printf(b, ",%.9g", (double)pr[i * k + c]);
        zg__sb_puts(b, "\n");
    }
    return ZG_OK;
}

/* Every input through the model, in order, into b. */
static int predict_all(zg__strbuf *b, zg_module *m, const zg_dataset *ds, const zg__data_desc *d,
                       const zg__ckpt_state *s) {
    zg_loader_opts lo = {.batch_size = BATCH, .shuffle = false, .mean = s->mean, .std = s->std, .prefetch = true};
    zg_loader *ld = zg_loader_new(ds, &lo);
    if (!ld) return ZG_ERR_ARG;
    zg_module_train(m, false);
    zg_no_grad_enter();
    zg_tensor *x, *y;
    int rc = ZG_OK, got;
    for (int64_t first = 0; !rc && (got = zg_loader_next(ld, &x, &y)) != 0; first += BATCH) {
        rc = got < 0 ? got : batch_rows(b, m, x, ds, d, first);
        zg_arena_reset();
    }
    zg_no_grad_exit();
    zg_loader_free(ld);
    return rc;
}

/* The model's input shape against the inputs' samples. */
static int check_shape(const char *fn, const zg_model_spec *spec, const zg_dataset *ds, const char *input) {
    int64_t want[ZG_MAX_DIMS], have[ZG_MAX_DIMS];
    const int nw = zg_model_spec_shape(spec, false, want, ZG_MAX_DIMS), nh = zg_dataset_sample_shape(ds, have);
    if (nw == nh && !memcmp(want, have, (size_t)nh * sizeof *want)) return ZG_OK;
    char a[96] = "", b[96] = "";
    for (int i = 0; i < nw; i++) snprintf(a + strlen(a), sizeof a - strlen(a), "%s%lld", i ? ", " : "", (long long)want[i]);
    for (int i = 0; i < nh; i++) snprintf(b + strlen(b), sizeof b - strlen(b), "%s%lld", i ? ", " : "", (long long)have[i]);
    return zg__fail(ZG_ERR_FORMAT, "%s: '%s': the samples are [%s], the model takes [%s]", fn, input, b, a);
}

static int write_out(const char *fn, const char *output, zg__strbuf *b) {
    if (b->failed) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    if (output) return zg__write_atomic(fn, output, b->s ? b->s : "", b->n);
    if (b->n && fwrite(b->s, 1, b->n, stdout) != b->n)
        return zg__fail(ZG_ERR_IO, "%s: writing the predictions to stdout failed", fn);
    return fflush(stdout) == 0 ? ZG_OK : zg__fail(ZG_ERR_IO, "%s: writing the predictions to stdout failed", fn);
}

int zg_predict(const char *path, const char *input, const char *output) {
    const char *fn = "zg_predict";
    if (!path || !input) return zg__fail(ZG_ERR_ARG, "%s: %s is NULL", fn, path ? "input" : "path");
    char ckpt[4200], run[4200];
    zg__ckpt_state s;
    zg__data_desc d = {0};
    int rc = zg__ckpt_locate(fn, path, ckpt, sizeof ckpt, run, sizeof run);
    if (!rc) rc = zg__ckpt_read_state(fn, ckpt, &s);
    if (rc) return rc;
    if (s.model == ZG_MODEL_GPT)
        rc = zg__fail(ZG_ERR_ARG, "%s: '%s' is a GPT run: `zgrad sample` generates text from it", fn, path);
    if (!rc && s.data_json) rc = zg__data_desc_parse(fn, s.data_json, &d);
    zg_model_spec *spec = NULL;
    zg_module *m = rc ? NULL : load_model(fn, path, ckpt, &spec);
    zg_dataset *ds = m ? load_inputs(input, &d) : NULL;
    if (!rc && (!m || !ds)) rc = ZG_ERR_FORMAT;
    if (!rc) rc = check_shape(fn, spec, ds, input);
    zg__strbuf b = {0};
    if (!rc) {
        int64_t out[ZG_MAX_DIMS];
        zg_model_spec_shape(spec, true, out, ZG_MAX_DIMS);
        header(&b, &d, out[0]);
        rc = predict_all(&b, m, ds, &d, &s);
    }
    if (!rc) rc = write_out(fn, output, &b);
    zg__sb_free(&b);
    zg_dataset_free(ds);
    zg_module_free(m);
    zg_model_spec_free(spec);
    zg__data_desc_free(&d);
    zg__ckpt_state_free(&s);
    return rc;
}
