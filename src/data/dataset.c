/* The in-memory data set: samples (bytes or floats, or image files decoded
 * on demand), labels or regression targets, and names, in one
 * reference-counted buffer, so that head views share it and any of them
 * may be freed first; subsets, the seeded split, per-feature or
 * per-channel statistics and the normalization the loader applies. */
#include "data_internal.h"

#include <math.h>

/* The split's permutation key: far above any epoch a loader draws. */
#define SPLIT_KEY 0x5D1175EEDull

void zg__free_strings(char **s, int64_t n) {
    if (!s) return;
    for (int64_t i = 0; i < n; i++) free(s[i]);
    free(s);
}

char **zg__copy_strings(const char *const *s, int64_t n) {
    if (!s) return NULL;
    char **c = zg__calloc((size_t)(n > 0 ? n : 1), sizeof *c);
    for (int64_t i = 0; c && i < n; i++) {
        if (!(c[i] = zg__strdup(s[i]))) {
            zg__free_strings(c, i);
            return NULL;
        }
    }
    return c;
}

static void buf_free(zg__data_buf *b, int64_t n, int64_t n_features) {
    free(b->samples);
    free(b->labels);
    free(b->targets);
    zg__free_strings(b->feature_names, n_features);
    free(b->target_name);
    zg__free_strings(b->class_names, b->n_class_names);
    zg__free_strings(b->paths, n);
    free(b->pixel_sums);
    free(b);
}

zg_dataset *zg__dataset_new(const char *fn, bool u8, void *samples, int64_t *labels, int64_t n,
                            const int64_t *shape, int ndim) {
    zg__data_buf *buf = zg__calloc(1, sizeof *buf);
    zg_dataset *ds = zg__calloc(1, sizeof *ds);
    if (!buf || !ds || ndim < 1 || ndim > ZG_MAX_DIMS - 1 || n < 1) {
        free(buf);
        free(ds);
        free(samples);
        free(labels);
        if (n < 1) return zg__fail_null("%s: no samples", fn);
        if (ndim < 1 || ndim > ZG_MAX_DIMS - 1)
            return zg__fail_null("%s: samples with %d dimensions (1..%d supported)", fn, ndim, ZG_MAX_DIMS - 1);
        return zg__fail_null("%s: out of memory", fn);
    }
    atomic_init(&buf->refs, 1);
    buf->samples = samples;
    buf->labels = labels;
    ds->buf = buf;
    ds->n = n;
    ds->ndim = ndim;
    ds->u8 = u8;
    ds->sample_numel = 1;
    for (int i = 0; i < ndim; i++) {
        ds->shape[i] = shape[i];
        ds->sample_numel *= shape[i];
    }
    int64_t max = -1;
    for (int64_t i = 0; labels && i < n; i++)
        if (labels[i] > max) max = labels[i];
    ds->num_classes = max + 1;
    return ds;
}

int64_t zg_dataset_size(const zg_dataset *ds) {
    return ds ? ds->n : zg__fail(ZG_ERR_ARG, "zg_dataset_size: data set is NULL");
}

int zg_dataset_sample_shape(const zg_dataset *ds, int64_t shape[ZG_MAX_DIMS]) {
    if (!ds) return zg__fail(ZG_ERR_ARG, "zg_dataset_sample_shape: data set is NULL");
    if (!shape) return zg__fail(ZG_ERR_ARG, "zg_dataset_sample_shape: shape is NULL");
    for (int i = 0; i < ds->ndim; i++) shape[i] = ds->shape[i];
    return ds->ndim;
}

int64_t zg_dataset_num_classes(const zg_dataset *ds) {
    return ds ? ds->num_classes : zg__fail(ZG_ERR_ARG, "zg_dataset_num_classes: data set is NULL");
}

zg_task zg_dataset_task(const zg_dataset *ds) {
    return ds && ds->buf->targets ? ZG_TASK_REGRESS : ZG_TASK_CLASSIFY;
}

const char *zg_dataset_feature_name(const zg_dataset *ds, int64_t i) {
    if (!ds || !ds->buf->feature_names || i < 0 || i >= ds->shape[0]) return NULL;
    return ds->buf->feature_names[i];
}

const char *zg_dataset_target_name(const zg_dataset *ds) { return ds ? ds->buf->target_name : NULL; }

const char *zg_dataset_class_name(const zg_dataset *ds, int64_t k) {
    if (!ds || !ds->buf->class_names || k < 0 || k >= ds->buf->n_class_names) return NULL;
    return ds->buf->class_names[k];
}

const char *zg_dataset_sample_name(const zg_dataset *ds, int64_t i) {
    if (!ds || !ds->buf->paths || i < 0 || i >= ds->n) return NULL;
    return ds->buf->paths[i];
}

/* A copy of ds's normalization into dst (false when out of memory). */
static bool copy_norm(zg_dataset *dst, const zg_dataset *ds) {
    dst->norm_mean = dst->norm_std = NULL;
    if (!ds->norm_mean) return true;
    size_t k = (size_t)ds->shape[0] * sizeof(float);
    dst->norm_mean = zg__malloc(k);
    dst->norm_std = zg__malloc(k);
    if (!dst->norm_mean || !dst->norm_std) {
        free(dst->norm_mean);
        free(dst->norm_std);
        return false;
    }
    memcpy(dst->norm_mean, ds->norm_mean, k);
    memcpy(dst->norm_std, ds->norm_std, k);
    return true;
}

zg_dataset *zg_dataset_head(const zg_dataset *ds, int64_t n) {
    if (!ds) return zg__fail_null("zg_dataset_head: data set is NULL");
    if (n < 1 || n > ds->n)
        return zg__fail_null("zg_dataset_head: n = %lld out of range 1..%lld", (long long)n, (long long)ds->n);
    zg_dataset *v = zg__malloc(sizeof *v);
    if (!v) return zg__fail_null("zg_dataset_head: out of memory");
    *v = *ds;
    v->n = n;
    if (!copy_norm(v, ds)) {
        free(v);
        return zg__fail_null("zg_dataset_head: out of memory");
    }
    atomic_fetch_add(&ds->buf->refs, 1);
    return v;
}

void zg_dataset_free(zg_dataset *ds) {
    if (!ds) return;
    if (atomic_fetch_sub(&ds->buf->refs, 1) == 1)
        buf_free(ds->buf, ds->buf->n_paths, ds->buf->feature_names ? ds->shape[0] : 0);
    free(ds->norm_mean);
    free(ds->norm_std);
    free(ds);
}

/* ---- subsets and the split ------------------------------------------------ */

/* Copies row idx[i] of each per-sample array of ds into b. */
static bool copy_rows(zg__data_buf *b, const zg_dataset *ds, const int64_t *idx, int64_t k) {
    const zg__data_buf *s = ds->buf;
    const size_t row = (size_t)ds->sample_numel * (ds->u8 ? 1 : sizeof(float));
    const int64_t sums = 2 * ds->shape[0];
    if (s->samples && !(b->samples = zg__malloc((size_t)k * row))) return false;
    if (s->labels && !(b->labels = zg__malloc((size_t)k * sizeof *b->labels))) return false;
    if (s->targets && !(b->targets = zg__malloc((size_t)k * sizeof *b->targets))) return false;
    if (s->pixel_sums && !(b->pixel_sums = zg__malloc((size_t)(k * sums) * sizeof *b->pixel_sums))) return false;
    if (s->paths && !(b->paths = zg__calloc((size_t)k, sizeof *b->paths))) return false;
    b->image_resize = s->image_resize;
    for (int64_t i = 0; i < k; i++) {
        const int64_t j = idx[i];
        if (b->samples) memcpy((char *)b->samples + (size_t)i * row, (const char *)s->samples + (size_t)j * row, row);
        if (b->labels) b->labels[i] = s->labels[j];
        if (b->targets) b->targets[i] = s->targets[j];
        if (b->pixel_sums) memcpy(b->pixel_sums + i * sums, s->pixel_sums + j * sums, (size_t)sums * sizeof(uint64_t));
        if (b->paths && !(b->paths[i] = zg__strdup(s->paths[j]))) return false;
        if (b->paths) b->n_paths = i + 1;
    }
    return true;
}

zg_dataset *zg__dataset_subset(const char *fn, const zg_dataset *ds, const int64_t *idx, int64_t k) {
    const zg__data_buf *s = ds->buf;
    zg__data_buf *b = zg__calloc(1, sizeof *b);
    zg_dataset *d = zg__malloc(sizeof *d);
    bool ok = b && d && k >= 1 && copy_rows(b, ds, idx, k);
    if (ok && s->feature_names)
        ok = (b->feature_names = zg__copy_strings((const char *const *)s->feature_names, ds->shape[0])) != NULL;
    if (ok && s->target_name) ok = (b->target_name = zg__strdup(s->target_name)) != NULL;
    if (ok && s->class_names) {
        ok = (b->class_names = zg__copy_strings((const char *const *)s->class_names, s->n_class_names)) != NULL;
        b->n_class_names = ok ? s->n_class_names : 0;
    }
    if (ok) {
        *d = *ds;
        ok = copy_norm(d, ds);
    }
    if (!ok) {
        if (b) buf_free(b, b->n_paths, b->feature_names ? ds->shape[0] : 0);
        free(d);
        return zg__fail_null("%s: out of memory", fn);
    }
    atomic_init(&b->refs, 1);
    d->buf = b;
    d->n = k;
    return d;
}

int zg_dataset_split(const zg_dataset *ds, double val_fraction, uint64_t seed, zg_dataset **train,
                     zg_dataset **val) {
    const char *fn = "zg_dataset_split";
    if (!ds || !train || !val) return zg__fail(ZG_ERR_ARG, "%s: NULL argument", fn);
    *train = *val = NULL;
    if (!(val_fraction > 0 && val_fraction < 1))
        return zg__fail(ZG_ERR_ARG, "%s: the validation fraction must lie in (0, 1) (got %g)", fn, val_fraction);
    const int64_t n = ds->n, n_val = (int64_t)llround(val_fraction * (double)n);
    if (n_val < 1 || n_val >= n)
        return zg__fail(ZG_ERR_ARG, "%s: a fraction %g of %lld samples leaves %s part empty", fn, val_fraction,
                        (long long)n, n_val < 1 ? "the validation" : "the training");
    int64_t *order = zg__malloc((size_t)n * sizeof *order);
    bool *is_val = zg__calloc((size_t)n, sizeof *is_val);
    int64_t *idx = zg__malloc((size_t)n * sizeof *idx);
    if (!order || !is_val || !idx) {
        free(order);
        free(is_val);
        free(idx);
        return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    }
    zg__permutation(order, n, seed, SPLIT_KEY);
    for (int64_t i = n - n_val; i < n; i++) is_val[order[i]] = true;
    /* Each part keeps the data set's order: train indices first, then val. */
    int64_t nt = 0, nv = n - n_val;
    for (int64_t i = 0; i < n; i++) idx[is_val[i] ? nv++ : nt++] = i;
    *train = zg__dataset_subset(fn, ds, idx, n - n_val);
    *val = *train ? zg__dataset_subset(fn, ds, idx + (n - n_val), n_val) : NULL;
    free(order);
    free(is_val);
    free(idx);
    if (*val) return ZG_OK;
    zg_dataset_free(*train);
    *train = NULL;
    return ZG_ERR_NOMEM;
}

/* ---- statistics and normalization ------------------------------------------ */

/* The mean and population std from n values' sum and sum of squares of
 * deviations; a constant (or empty) one gets std 1. */
static void finish_stats(double mean, double ss, double n, float *m, float *s) {
    const double sd = n > 0 ? sqrt(ss / n) : 0;
    *m = (float)mean;
    *s = sd > 0 && (float)sd > 0 ? (float)sd : 1.0f;
}

/* Image files: from each image's pixel sums, exact integers. */
static void image_stats(const zg_dataset *ds, float *mean, float *std) {
    const int64_t C = ds->shape[0], hw = ds->sample_numel / C;
    for (int64_t c = 0; c < C; c++) {
        uint64_t s1 = 0, s2 = 0;
        for (int64_t i = 0; i < ds->n; i++) {
            s1 += ds->buf->pixel_sums[i * 2 * C + c];
            s2 += ds->buf->pixel_sums[i * 2 * C + C + c];
        }
        const double n = (double)hw * (double)ds->n, m = (double)s1 / n;
        const double var = (double)s2 / n - m * m; /* of v; the statistics are of v / 255 */
        finish_stats(m / 255.0, (var > 0 ? var : 0) * n / (255.0 * 255.0), n, &mean[c], &std[c]);
    }
}

/* Bytes or floats in memory: two passes per feature or channel. */
static void memory_stats(const zg_dataset *ds, float *mean, float *std) {
    const int64_t K = ds->shape[0], block = ds->sample_numel / K;
    for (int64_t k = 0; k < K; k++) {
        double sum = 0, ss = 0;
        for (int pass = 0; pass < 2; pass++) {
            const double m = sum / ((double)ds->n * (double)block);
            for (int64_t i = 0; i < ds->n; i++) {
                const int64_t off = i * ds->sample_numel + k * block;
                for (int64_t j = 0; j < block; j++) {
                    const double v = ds->u8 ? ((const uint8_t *)ds->buf->samples)[off + j] / 255.0
                                            : ((const float *)ds->buf->samples)[off + j];
                    if (pass == 0) sum += v;
                    else ss += (v - m) * (v - m);
                }
            }
        }
        const double n = (double)ds->n * (double)block;
        finish_stats(sum / n, ss, n, &mean[k], &std[k]);
    }
}

int zg_dataset_compute_stats(const zg_dataset *ds, float *mean, float *std) {
    if (!ds || !mean || !std) return zg__fail(ZG_ERR_ARG, "zg_dataset_compute_stats: NULL argument");
    if (ds->buf->samples) memory_stats(ds, mean, std);
    else image_stats(ds, mean, std);
    return ZG_OK;
}

int zg_dataset_set_normalization(zg_dataset *ds, const float *mean, const float *std) {
    const char *fn = "zg_dataset_set_normalization";
    if (!ds) return zg__fail(ZG_ERR_ARG, "%s: data set is NULL", fn);
    if (!mean != !std) return zg__fail(ZG_ERR_ARG, "%s: give both mean and std, or neither", fn);
    const int64_t K = ds->shape[0];
    for (int64_t k = 0; mean && k < K; k++)
        if (!isfinite(mean[k]) || !(std[k] > 0) || !isfinite(std[k]))
            return zg__fail(ZG_ERR_ARG, "%s: entry %lld: mean %g, std %g: need a finite mean and a finite std > 0", fn,
                            (long long)k, (double)mean[k], (double)std[k]);
    float *m = NULL, *s = NULL;
    if (mean) {
        m = zg__malloc((size_t)K * sizeof *m);
        s = zg__malloc((size_t)K * sizeof *s);
        if (!m || !s) {
            free(m);
            free(s);
            return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
        }
        memcpy(m, mean, (size_t)K * sizeof *m);
        memcpy(s, std, (size_t)K * sizeof *s);
    }
    free(ds->norm_mean);
    free(ds->norm_std);
    ds->norm_mean = m;
    ds->norm_std = s;
    return ZG_OK;
}
