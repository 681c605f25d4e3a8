/* The in-memory data set: samples (bytes or floats) and int64 labels in
 * one reference-counted buffer, so that head views share it and any of
 * them may be freed first. */
#include "data_internal.h"

zg_dataset *zg__dataset_new(const char *fn, bool u8, void *samples, int64_t *labels, int64_t n,
                            const int64_t *shape, int ndim) {
    zg__data_buf *buf = zg__malloc(sizeof *buf);
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
    for (int64_t i = 0; i < n; i++)
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

zg_dataset *zg_dataset_head(const zg_dataset *ds, int64_t n) {
    if (!ds) return zg__fail_null("zg_dataset_head: data set is NULL");
    if (n < 1 || n > ds->n)
        return zg__fail_null("zg_dataset_head: n = %lld out of range 1..%lld", (long long)n, (long long)ds->n);
    zg_dataset *v = zg__malloc(sizeof *v);
    if (!v) return zg__fail_null("zg_dataset_head: out of memory");
    *v = *ds;
    v->n = n;
    atomic_fetch_add(&ds->buf->refs, 1);
    return v;
}

void zg_dataset_free(zg_dataset *ds) {
    if (!ds) return;
    if (atomic_fetch_sub(&ds->buf->refs, 1) == 1) {
        free(ds->buf->samples);
        free(ds->buf->labels);
        free(ds->buf);
    }
    free(ds);
}
