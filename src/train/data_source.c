/* Your data, the driver's side: `zgrad train --csv` and `--images`. The
 * training and validation data (a file or folder of their own, or a split
 * drawn from the seed), normalised with the training part's statistics
 * (per feature: standardisation; per channel: torchvision's Normalize);
 * the default model, an MLP sized from the data; cross-entropy or MSE and
 * the matching metrics; and what the run keeps of the data, as JSON in
 * the checkpoint ("data"): the columns, classes, shapes and statistics
 * that a resume must find again and that zgrad predict applies to new
 * inputs. */
#include "train_internal.h"

#include "../data/data_internal.h"
#include "../util/json.h"

#include <math.h>

/* Without a validation set of its own, this fraction of the data validates. */
#define DEFAULT_VAL_SPLIT 0.2
/* The widths of the default MLP's two hidden layers. */
#define HIDDEN 64
/* The most classes a run may have (zg_evaluate's limit). */
#define MAX_CLASSES 100000

bool zg__data_custom(const zg_train_config *c) { return c->csv_path[0] || c->images_dir[0]; }

int zg__data_validate(const char *fn, const zg_train_config *c) {
    const char *arrays[] = {c->csv_path, c->images_dir, c->val_path};
    for (int i = 0; i < 3; i++)
        if (!memchr(arrays[i], '\0', 4096) || strlen(arrays[i]) > ZG_TRAIN_MAX_DIR)
            return zg__fail(ZG_ERR_ARG, "%s: a data path is longer than %d characters", fn, ZG_TRAIN_MAX_DIR);
    if (!memchr(c->target, '\0', sizeof c->target)) return zg__fail(ZG_ERR_ARG, "%s: target is not terminated", fn);
    if (c->csv_path[0] && c->images_dir[0]) return zg__fail(ZG_ERR_ARG, "%s: a CSV file or an image folder, not both", fn);
    if (!zg__data_custom(c)) {
        if (c->target[0] || c->val_path[0] || c->val_split != 0 || c->task || c->image_size[0] || c->image_channels)
            return zg__fail(ZG_ERR_ARG, "%s: the target, task, validation and image options go with a CSV file or "
                            "an image folder (--csv, --images)", fn);
        return ZG_OK;
    }
    if (c->model == ZG_MODEL_GPT) return zg__fail(ZG_ERR_ARG, "%s: gpt trains on a text, not on --csv / --images", fn);
    if (c->csv_path[0] && !c->target[0])
        return zg__fail(ZG_ERR_ARG, "%s: a CSV file needs its target column (--target NAME or a 0-based index)", fn);
    if (c->images_dir[0] && (c->target[0] || c->task == ZG_TASK_REGRESS))
        return zg__fail(ZG_ERR_ARG, "%s: an image folder's classes are its sub-folders (no target or regression)", fn);
    if ((int)c->task < ZG_TASK_AUTO || (int)c->task > ZG_TASK_REGRESS)
        return zg__fail(ZG_ERR_ARG, "%s: unknown task %d", fn, (int)c->task);
    if (c->csv_path[0] && (c->image_size[0] || c->image_channels))
        return zg__fail(ZG_ERR_ARG, "%s: the image size and channels go with an image folder", fn);
    if (c->image_size[0] < 0 || c->image_size[1] < 0 || (c->image_size[0] > 0) != (c->image_size[1] > 0) ||
        (c->image_channels != 0 && c->image_channels != 1 && c->image_channels != 3))
        return zg__fail(ZG_ERR_ARG, "%s: the image size is H,W (both >= 1) and the channels 1 or 3", fn);
    if (c->val_path[0] && c->val_split != 0)
        return zg__fail(ZG_ERR_ARG, "%s: a validation file or folder, or a validation split, not both", fn);
    if (!(c->val_split >= 0 && c->val_split < 1))
        return zg__fail(ZG_ERR_ARG, "%s: the validation split must lie in (0, 1) (got %g)", fn, c->val_split);
    return ZG_OK;
}

void zg__data_desc_free(zg__data_desc *d) {
    zg__free_strings(d->features, d->features ? d->n_stats : 0);
    zg__free_strings(d->classes, d->classes ? d->num_classes : 0);
    free(d->target);
    free(d->mean);
    free(d->std);
    free(d->path);
    free(d->val_path);
    memset(d, 0, sizeof *d);
}

void zg__data_source_free(zg__data_source *src) {
    zg__data_desc_free(&src->d);
    free(src->json);
    src->json = NULL;
}

/* ---- loading ---------------------------------------------------------------- */

/* The validation part: its own file or folder (read as the training part
 * was: the same columns by name, classes by name, image size), else a
 * split of the training data. */
static int load_val(const zg_train_config *c, zg_dataset **tr, zg_dataset **va) {
    if (!c->val_path[0]) {
        zg_dataset *full = *tr;
        int rc = zg_dataset_split(full, c->val_split > 0 ? c->val_split : DEFAULT_VAL_SPLIT, c->seed, tr, va);
        zg_dataset_free(full);
        if (rc) *tr = NULL;
        return rc;
    }
    const zg_dataset *t = *tr;
    int64_t shape[ZG_MAX_DIMS];
    zg_dataset_sample_shape(t, shape);
    if (c->csv_path[0]) {
        const char **names = zg__malloc((size_t)shape[0] * sizeof *names);
        if (!names) return zg__fail(ZG_ERR_NOMEM, "zg_train_run: out of memory");
        for (int64_t j = 0; j < shape[0]; j++) names[j] = zg_dataset_feature_name(t, j);
        zg_csv_opts o = {zg_dataset_target_name(t), zg_dataset_task(t), names, shape[0]};
        *va = zg_dataset_load_table(c->val_path, &o);
        free(names);
    } else {
        const int64_t k = zg_dataset_num_classes(t);
        const char **names = zg__malloc((size_t)k * sizeof *names);
        if (!names) return zg__fail(ZG_ERR_NOMEM, "zg_train_run: out of memory");
        for (int64_t j = 0; j < k; j++) names[j] = zg_dataset_class_name(t, j);
        zg_image_opts o = {shape[1], shape[2], (int)shape[0], names, k, false};
        *va = zg_dataset_load_image_folder(c->val_path, &o);
        free(names);
    }
    return *va ? ZG_OK : ZG_ERR_FORMAT;
}

/* The statistics of the training part, which both parts are normalised
 * with, into the description. */
static int normalise(zg_dataset *tr, zg_dataset *va, zg__data_desc *d) {
    d->mean = zg__malloc((size_t)d->n_stats * sizeof *d->mean);
    d->std = zg__malloc((size_t)d->n_stats * sizeof *d->std);
    if (!d->mean || !d->std) return zg__fail(ZG_ERR_NOMEM, "zg_train_run: out of memory");
    int rc = zg_dataset_compute_stats(tr, d->mean, d->std);
    if (!rc) rc = zg_dataset_set_normalization(tr, d->mean, d->std);
    if (!rc) rc = zg_dataset_set_normalization(va, d->mean, d->std);
    return rc;
}

/* Names of n items of a data set (feature or class names), copied. */
static char **names_of(const zg_dataset *ds, int64_t n, const char *(*get)(const zg_dataset *, int64_t)) {
    const char **v = zg__malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v) return NULL;
    for (int64_t i = 0; i < n; i++) v[i] = get(ds, i);
    char **c = zg__copy_strings(v, n);
    free(v);
    return c;
}

static int describe(const zg_train_config *c, const zg_dataset *tr, const zg_dataset *va, zg__data_desc *d) {
    d->kind = c->csv_path[0] ? ZG__DATA_CSV : ZG__DATA_IMAGES;
    d->task = zg_dataset_task(tr);
    d->ndim = zg_dataset_sample_shape(tr, d->shape);
    d->n_stats = d->shape[0];
    d->n_train = zg_dataset_size(tr);
    d->n_val = zg_dataset_size(va);
    d->val_split = c->val_path[0] ? 0 : c->val_split > 0 ? c->val_split : DEFAULT_VAL_SPLIT;
    const int64_t k_tr = zg_dataset_num_classes(tr), k_va = zg_dataset_num_classes(va);
    d->num_classes = d->task == ZG_TASK_REGRESS ? 0 : k_tr > k_va ? k_tr : k_va;
    if (d->num_classes > MAX_CLASSES)
        return zg__fail(ZG_ERR_FORMAT, "zg_train_run: '%s': %lld classes (the largest label + 1; at most %d; a "
                        "regression target? --task regress)", c->csv_path, (long long)d->num_classes, MAX_CLASSES);
    bool ok = (d->path = zg__strdup(d->kind == ZG__DATA_CSV ? c->csv_path : c->images_dir)) &&
              (d->val_path = zg__strdup(c->val_path));
    if (ok && d->kind == ZG__DATA_CSV)
        ok = (d->features = names_of(tr, d->n_stats, zg_dataset_feature_name)) &&
             (d->target = zg__strdup(zg_dataset_target_name(tr)));
    if (ok && d->kind == ZG__DATA_IMAGES) ok = (d->classes = names_of(tr, d->num_classes, zg_dataset_class_name));
    return ok ? ZG_OK : zg__fail(ZG_ERR_NOMEM, "zg_train_run: out of memory");
}

static char *desc_json(const zg__data_desc *d);

int zg__data_open(const zg_train_config *c, zg__data_source *src, zg_dataset **train, zg_dataset **val) {
    memset(src, 0, sizeof *src);
    *train = *val = NULL;
    zg_dataset *tr = NULL, *va = NULL;
    if (c->csv_path[0]) {
        zg_csv_opts o = {.target = c->target, .task = c->task};
        tr = zg_dataset_load_table(c->csv_path, &o);
    } else {
        zg_image_opts o = {.height = c->image_size[0], .width = c->image_size[1], .channels = c->image_channels};
        tr = zg_dataset_load_image_folder(c->images_dir, &o);
    }
    int rc = tr ? load_val(c, &tr, &va) : ZG_ERR_FORMAT;
    if (!rc) rc = describe(c, tr, va, &src->d);
    if (!rc) rc = normalise(tr, va, &src->d);
    if (!rc && !(src->json = desc_json(&src->d))) rc = zg__fail(ZG_ERR_NOMEM, "zg_train_run: out of memory");
    if (rc) {
        zg_dataset_free(tr);
        zg_dataset_free(va);
        zg__data_source_free(src);
        return rc;
    }
    *train = tr;
    *val = va;
    return ZG_OK;
}

/* ---- the model, the loss, the metrics ----------------------------------------- */

int64_t zg__data_outputs(const zg__data_source *src) {
    if (src->d.kind == ZG__DATA_MNIST) return 10;
    return src->d.task == ZG_TASK_REGRESS ? 1 : src->d.num_classes;
}

char *zg__data_default_spec(const zg__data_source *src) {
    const zg__data_desc *d = &src->d;
    int64_t in = 1;
    for (int i = 0; i < d->ndim; i++) in *= d->shape[i];
    zg__strbuf b = {0};
    zg__sb_printf(&b, "{\"input\": [");
    for (int i = 0; i < d->ndim; i++) zg__sb_printf(&b, "%s%lld", i ? ", " : "", (long long)d->shape[i]);
    zg__sb_printf(&b, "], \"layers\": [%s", d->ndim > 1 ? "{\"type\": \"Flatten\"}, " : "");
    zg__sb_printf(&b, "{\"type\": \"Linear\", \"in_features\": %lld, \"out_features\": %d}, {\"type\": \"ReLU\"}, ",
                  (long long)in, HIDDEN);
    zg__sb_printf(&b, "{\"type\": \"Linear\", \"in_features\": %d, \"out_features\": %d}, {\"type\": \"ReLU\"}, ",
                  HIDDEN, HIDDEN);
    zg__sb_printf(&b, "{\"type\": \"Linear\", \"in_features\": %d, \"out_features\": %lld}]}", HIDDEN,
                  (long long)zg__data_outputs(src));
    if (!b.failed) return b.s;
    zg__sb_free(&b);
    return NULL;
}

zg_tensor *zg__data_loss(const zg__data_source *src, zg_tensor *out, zg_tensor *y) {
    if (!out) return NULL;
    return src->d.task == ZG_TASK_REGRESS ? zg_mse_loss(out, y, ZG_REDUCTION_MEAN) : zg_cross_entropy(out, y, NULL);
}

/* MSE over the loader (its sum in double, as zg_evaluate sums
 * cross-entropy) and R^2 = 1 - SSE / SST (NaN for constant targets). */
static int evaluate_regression(zg_module *m, zg_loader *ld, double *mse, double *r2) {
    const bool was_training = zg_module_is_training(m);
    zg_module_train(m, false);
    zg_no_grad_enter();
    const size_t mark = zg_arena_mark();
    double sse = 0, sy = 0, syy = 0;
    int64_t n = 0;
    int rc = zg_loader_start_epoch(ld, 0, 0), got;
    zg_tensor *x, *y;
    while (!rc && (got = zg_loader_next(ld, &x, &y)) != 0) {
        zg_tensor *out = got > 0 ? zg_module_forward(m, x) : NULL;
        zg_tensor *l = out ? zg_mse_loss(out, y, ZG_REDUCTION_SUM) : NULL;
        if (!l) {
            rc = got < 0 ? got : ZG_ERR_STATE;
            break;
        }
        sse += zg_tensor_item(l);
        for (int64_t i = 0; i < zg_tensor_numel(y); i++) {
            const double v = zg_tensor_data(y)[i];
            sy += v;
            syy += v * v;
        }
        n += zg_tensor_numel(y);
        zg_arena_release(mark);
    }
    zg_arena_release(mark);
    zg_no_grad_exit();
    zg_module_train(m, was_training);
    if (rc) return rc;
    const double sst = syy - sy * sy / (double)n;
    *mse = sse / (double)n;
    *r2 = sst > 0 ? 1 - sse / sst : NAN;
    return ZG_OK;
}

int zg__data_eval_result(const zg__data_source *src, zg_module *m, zg_loader *ld, zg_eval_result *out) {
    if (src->d.task != ZG_TASK_REGRESS) return zg_evaluate(m, ld, (int)zg__data_outputs(src), out);
    memset(out, 0, sizeof *out);
    return evaluate_regression(m, ld, &out->loss, &out->accuracy);
}

int zg__data_evaluate(const zg__data_source *src, zg_module *m, zg_loader *ld, double *loss, double *acc) {
    zg_eval_result ev;
    int rc = zg__data_eval_result(src, m, ld, &ev);
    if (rc) return rc;
    *loss = ev.loss;
    *acc = ev.accuracy;
    zg_eval_result_free(&ev);
    return ZG_OK;
}

void zg__data_describe(const zg__data_source *src, char *out, size_t n) {
    const zg__data_desc *d = &src->d;
    const bool csv = d->kind == ZG__DATA_CSV;
    char what[64], shape[64] = "";
    if (d->task == ZG_TASK_REGRESS) snprintf(what, sizeof what, "regression of '%.30s' (MSE)", d->target);
    else snprintf(what, sizeof what, "%lld classes", (long long)d->num_classes);
    if (!csv) snprintf(shape, sizeof shape, " of %lldx%lldx%lld", (long long)d->shape[0], (long long)d->shape[1],
                       (long long)d->shape[2]);
    snprintf(out, n, "%s: %lld train / %lld validation %s%s (%s%s), %s", d->path, (long long)d->n_train,
             (long long)d->n_val, csv ? "rows" : "images", shape, d->val_path[0] ? "validation: " : "a seeded split",
             d->val_path[0] ? d->val_path : "", what);
    if (csv) {
        size_t k = strlen(out);
        snprintf(out + k, n - k, ", %lld features", (long long)d->n_stats);
    }
}

/* ---- what the run keeps --------------------------------------------------------- */

static void json_strings(zg__strbuf *b, const char *key, char *const *s, int64_t n) {
    zg__sb_printf(b, ", \"%s\": [", key);
    for (int64_t i = 0; i < n; i++) {
        if (i) zg__sb_printf(b, ", ");
        zg__sb_json_str(b, s[i]);
    }
    zg__sb_printf(b, "]");
}

static void json_floats(zg__strbuf *b, const char *key, const float *v, int64_t n) {
    zg__sb_printf(b, ", \"%s\": [", key);
    for (int64_t i = 0; i < n; i++) zg__sb_printf(b, "%s%.9g", i ? ", " : "", (double)v[i]);
    zg__sb_printf(b, "]");
}

/* The paths come last, under "files": a resume compares what precedes. */
#define FILES_KEY ", \"files\": {"

static char *desc_json(const zg__data_desc *d) {
    zg__strbuf b = {0};
    zg__sb_printf(&b, "{\"kind\": \"%s\", \"task\": \"%s\", \"num_classes\": %lld",
                  d->kind == ZG__DATA_CSV ? "csv" : "images", d->task == ZG_TASK_REGRESS ? "regress" : "classify",
                  (long long)d->num_classes);
    if (d->target) {
        zg__sb_printf(&b, ", \"target\": ");
        zg__sb_json_str(&b, d->target);
    }
    if (d->features) json_strings(&b, "features", d->features, d->n_stats);
    if (d->classes) json_strings(&b, "classes", d->classes, d->num_classes);
    zg__sb_printf(&b, ", \"shape\": [");
    for (int i = 0; i < d->ndim; i++) zg__sb_printf(&b, "%s%lld", i ? ", " : "", (long long)d->shape[i]);
    zg__sb_printf(&b, "]");
    json_floats(&b, "mean", d->mean, d->n_stats);
    json_floats(&b, "std", d->std, d->n_stats);
    zg__sb_printf(&b, ", \"n_train\": %lld, \"n_val\": %lld, \"val_split\": %.17g" FILES_KEY "\"path\": ",
                  (long long)d->n_train, (long long)d->n_val, d->val_split);
    zg__sb_json_str(&b, d->path);
    zg__sb_printf(&b, ", \"val_path\": ");
    zg__sb_json_str(&b, d->val_path);
    zg__sb_printf(&b, "}}");
    if (!b.failed) return b.s;
    zg__sb_free(&b);
    return NULL;
}

int zg__data_check_resume(const zg__data_source *src, const char *saved, const char *ckpt) {
    const char *fn = "zg_train_run";
    if (!src->json && !saved) return ZG_OK;
    if (!src->json || !saved)
        return zg__fail(ZG_ERR_FORMAT, "%s: checkpoint '%s' was trained on %s, this run on %s", fn, ckpt,
                        saved ? "a CSV file or an image folder" : "MNIST-format data",
                        saved ? "MNIST-format data" : "a CSV file or an image folder");
    const char *a = strstr(src->json, FILES_KEY), *b = strstr(saved, FILES_KEY);
    if (a && b && a - src->json == b - saved && !memcmp(src->json, saved, (size_t)(a - src->json))) return ZG_OK;
    return zg__fail(ZG_ERR_FORMAT, "%s: checkpoint '%s' was trained on other data: its columns, classes, sizes or "
                    "statistics differ from those of '%s' (the files changed?)", fn, ckpt, src->d.path);
}

/* ---- reading it back ---------------------------------------------------------------- */

static const zg__json *member(const zg__json *o, const char *key) {
    for (int i = 0; o && o->type == ZG_JSON_OBJECT && i < o->n; i++)
        if (!strcmp(o->keys[i], key)) return &o->items[i];
    return NULL;
}

static bool get_int(const zg__json *o, const char *key, int64_t lo, int64_t hi, int64_t *v) {
    const zg__json *x = member(o, key);
    if (!x || x->type != ZG_JSON_NUMBER || !x->fits_int64 || x->integer < lo || x->integer > hi) return false;
    *v = x->integer;
    return true;
}

static bool get_str(const zg__json *o, const char *key, char **out) {
    const zg__json *x = member(o, key);
    if (!x || x->type != ZG_JSON_STRING || strlen(x->str) != x->len) return false;
    return (*out = zg__strdup(x->str)) != NULL;
}

static bool get_num(const zg__json *x, double *v) {
    if (!x || x->type != ZG_JSON_NUMBER || x->num_len >= 64) return false;
    char buf[64];
    memcpy(buf, x->num_text, x->num_len);
    buf[x->num_len] = '\0';
    *v = strtod(buf, NULL);
    return isfinite(*v);
}

static bool get_strings(const zg__json *o, const char *key, int64_t n, char ***out) {
    const zg__json *a = member(o, key);
    if (!a || a->type != ZG_JSON_ARRAY || a->n != n) return false;
    char **s = zg__calloc((size_t)n + 1, sizeof *s);
    for (int64_t i = 0; s && i < n; i++)
        if (a->items[i].type != ZG_JSON_STRING || !(s[i] = zg__strdup(a->items[i].str))) {
            zg__free_strings(s, i + 1);
            return false;
        }
    *out = s;
    return s != NULL;
}

/* n floats; the stds must be > 0, as the normalization requires. */
static bool get_floats(const zg__json *o, const char *key, int64_t n, bool positive, float **out) {
    const zg__json *a = member(o, key);
    if (!a || a->type != ZG_JSON_ARRAY || a->n != n) return false;
    float *v = zg__malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; v && i < n; i++) {
        double x;
        if (!get_num(&a->items[i], &x) || (positive && !((float)x > 0))) {
            free(v);
            return false;
        }
        v[i] = (float)x;
    }
    *out = v;
    return v != NULL;
}

static bool parse_shape(const zg__json *o, zg__data_desc *d) {
    const zg__json *a = member(o, "shape");
    if (!a || a->type != ZG_JSON_ARRAY || a->n != (d->kind == ZG__DATA_CSV ? 1 : 3)) return false;
    d->ndim = a->n;
    for (int i = 0; i < a->n; i++)
        if (a->items[i].type != ZG_JSON_NUMBER || !a->items[i].fits_int64 || a->items[i].integer < 1 ||
            a->items[i].integer > ZG__IMAGE_MAX_PIXELS)
            return false;
        else
            d->shape[i] = a->items[i].integer;
    d->n_stats = d->shape[0];
    return d->kind == ZG__DATA_CSV || (d->n_stats == 1 || d->n_stats == 3);
}

static bool parse_desc(const zg__json *o, zg__data_desc *d) {
    char *kind = NULL, *task = NULL;
    bool ok = get_str(o, "kind", &kind) && get_str(o, "task", &task);
    d->kind = ok && !strcmp(kind, "csv") ? ZG__DATA_CSV : ok && !strcmp(kind, "images") ? ZG__DATA_IMAGES : -1;
    d->task = ok && !strcmp(task, "regress") ? ZG_TASK_REGRESS : ZG_TASK_CLASSIFY;
    ok = ok && d->kind > 0 && (!strcmp(task, "regress") || !strcmp(task, "classify"));
    free(kind);
    free(task);
    const zg__json *files = member(o, "files");
    double vs = 0;
    ok = ok && get_int(o, "num_classes", d->task == ZG_TASK_REGRESS ? 0 : 1, MAX_CLASSES, &d->num_classes) &&
         parse_shape(o, d) && get_floats(o, "mean", d->n_stats, false, &d->mean) &&
         get_floats(o, "std", d->n_stats, true, &d->std) && get_int(o, "n_train", 1, ZG__MAX_COUNT, &d->n_train) &&
         get_int(o, "n_val", 1, ZG__MAX_COUNT, &d->n_val) && get_num(member(o, "val_split"), &vs) && vs >= 0 &&
         vs < 1 && get_str(files, "path", &d->path) && get_str(files, "val_path", &d->val_path);
    d->val_split = vs;
    if (ok && d->kind == ZG__DATA_CSV)
        ok = get_strings(o, "features", d->n_stats, &d->features) && get_str(o, "target", &d->target);
    if (ok && d->kind == ZG__DATA_IMAGES)
        ok = d->task == ZG_TASK_CLASSIFY && get_strings(o, "classes", d->num_classes, &d->classes);
    return ok;
}

int zg__data_desc_parse(const char *fn, const char *json, zg__data_desc *d) {
    memset(d, 0, sizeof *d);
    zg__json *root = NULL;
    char err[160];
    const size_t len = strlen(json);
    if (zg__json_parse(json, len, len, &root, err, sizeof err) != 0)
        return zg__fail(ZG_ERR_FORMAT, "%s: the checkpoint's data description is not valid JSON (%s)", fn, err);
    const bool ok = parse_desc(root, d);
    zg__json_free(root);
    if (ok) return ZG_OK;
    zg__data_desc_free(d);
    return zg__fail(ZG_ERR_FORMAT, "%s: the checkpoint's data description is damaged", fn);
}

int zg__data_restore_config(const char *fn, const char *json, zg_train_config *cfg) {
    if (!json) return ZG_OK;
    zg__data_desc d;
    int rc = zg__data_desc_parse(fn, json, &d);
    if (rc) return rc;
    const size_t cap = sizeof cfg->csv_path;
    if (strlen(d.path) >= cap || strlen(d.val_path) >= cap || (d.target && strlen(d.target) >= sizeof cfg->target)) {
        zg__data_desc_free(&d);
        return zg__fail(ZG_ERR_FORMAT, "%s: the checkpoint's data paths are too long", fn);
    }
    memcpy(d.kind == ZG__DATA_CSV ? cfg->csv_path : cfg->images_dir, d.path, strlen(d.path) + 1);
    memcpy(cfg->val_path, d.val_path, strlen(d.val_path) + 1);
    cfg->val_split = d.val_path[0] ? 0 : d.val_split;
    if (d.target) memcpy(cfg->target, d.target, strlen(d.target) + 1);
    cfg->task = d.task;
    if (d.kind == ZG__DATA_IMAGES) {
        cfg->image_channels = (int)d.shape[0];
        cfg->image_size[0] = d.shape[1];
        cfg->image_size[1] = d.shape[2];
    }
    zg__data_desc_free(&d);
    return ZG_OK;
}
