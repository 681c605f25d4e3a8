/* Tensor creation, shape queries, views, names, and the shape text of
 * messages. Persistent tensors own their header and storage (malloc); arena
 * tensors come from the step arena and are never freed one by one. */
#include "tensor_internal.h"

#include <math.h>
#include <stdio.h>

int64_t zg__check_shape(const char *fn, const int64_t *shape, int ndim) {
    if (ndim < 0 || ndim > ZG_MAX_DIMS)
        return zg__fail(ZG_ERR_SHAPE, "%s: %d dimensions (0..%d supported)", fn, ndim, ZG_MAX_DIMS);
    if (ndim > 0 && !shape) return zg__fail(ZG_ERR_ARG, "%s: shape is NULL", fn);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return zg__fail(ZG_ERR_SHAPE, "%s: negative size %lld in dim %d", fn, (long long)shape[i], i);
        if (shape[i] > 0 && n > INT64_MAX / 8 / shape[i])
            return zg__fail(ZG_ERR_SHAPE, "%s: shape too large", fn);
        n *= shape[i];
    }
    return n;
}

int zg__wrap_dim(const char *fn, int dim, int ndim) {
    /* A 0-dim tensor accepts dims 0 and -1, as in PyTorch. */
    int n = ndim ? ndim : 1;
    int d = dim < 0 ? dim + n : dim;
    if (d < 0 || d >= n)
        return zg__fail(ZG_ERR_ARG, "%s: dim %d out of range for a %d-dim tensor", fn, dim, ndim);
    return d;
}

int zg__check_f32(const char *fn, const zg_tensor *t, const char *what) {
    if (!t) return zg__fail(ZG_ERR_ARG, "%s: %s is NULL", fn, what);
    if (t->dtype != ZG_FLOAT32) return zg__fail(ZG_ERR_SHAPE, "%s: %s must be float32", fn, what);
    return ZG_OK;
}

static void set_shape(zg_tensor *t, const int64_t *shape, int ndim, int64_t numel) {
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = numel;
}

static int64_t shape_numel(const int64_t *shape, int ndim) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

static zg_tensor *arena_tensor(zg_dtype dtype, const int64_t *shape, int ndim, bool zero) {
    int64_t n = shape_numel(shape, ndim);
    size_t bytes = (size_t)n * zg__dtype_size(dtype);
    zg_tensor *t = zg__arena_calloc(sizeof *t);
    zg__storage *s = zg__arena_calloc(sizeof *s);
    /* In a backward pass, a dead gradient's buffer of this size first. */
    const bool recycle = zg__recycle_on();
    size_t pos = 0;
    void *data = recycle ? zg__recycle_take(bytes, &pos) : NULL;
    if (data && zero) memset(data, 0, bytes);
    if (!data) {
        pos = zg_arena_mark();
        data = zero ? zg__arena_calloc(bytes) : zg__arena_alloc(bytes);
    }
    if (!t || !s || !data) return zg__fail_null("zgrad: out of memory (arena, %zu bytes)", bytes);
    s->data = data;
    s->nbytes = bytes;
    s->recyclable = recycle;
    s->arena_pos = pos;
    t->storage = s;
    t->dtype = dtype;
    set_shape(t, shape, ndim, n);
    return t;
}

zg_tensor *zg__empty(zg_dtype dtype, const int64_t *shape, int ndim) {
    return arena_tensor(dtype, shape, ndim, false);
}
zg_tensor *zg__zeros(zg_dtype dtype, const int64_t *shape, int ndim) {
    return arena_tensor(dtype, shape, ndim, true);
}
zg_tensor *zg__empty_like(const zg_tensor *t) { return zg__empty(t->dtype, t->shape, t->ndim); }
zg_tensor *zg__zeros_like(const zg_tensor *t) { return zg__zeros(t->dtype, t->shape, t->ndim); }

zg_tensor *zg__view(const zg_tensor *t, int64_t offset, const int64_t *shape, int ndim) {
    zg_tensor *v = zg__arena_calloc(sizeof *v);
    if (!v) return zg__fail_null("zgrad: out of memory (arena)");
    v->storage = t->storage;
    v->offset = t->offset + offset;
    v->dtype = t->dtype;
    set_shape(v, shape, ndim, shape_numel(shape, ndim));
    return v;
}

bool zg__same_shape(const zg_tensor *a, const zg_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

/* ---- persistent tensors ---------------------------------------------- */

static zg_tensor *persistent(const char *fn, zg_dtype dtype, const int64_t *shape, int ndim) {
    if (dtype != ZG_FLOAT32 && dtype != ZG_INT64) return zg__fail_null("%s: unknown dtype %d", fn, (int)dtype);
    int64_t n = zg__check_shape(fn, shape, ndim);
    if (n < 0) return NULL;
    zg_tensor *t = zg__calloc(1, sizeof *t);
    size_t bytes = (size_t)n * zg__dtype_size(dtype);
    void *data = zg__calloc(bytes ? bytes : 1, 1);
    if (!t || !data) {
        free(t);
        free(data);
        return zg__fail_null("%s: out of memory (%zu bytes)", fn, bytes);
    }
    t->own_storage.data = data;
    t->own_storage.nbytes = bytes;
    t->storage = &t->own_storage;
    t->dtype = dtype;
    t->persistent = true;
    set_shape(t, shape, ndim, n);
    return t;
}

zg_tensor *zg_tensor_new(zg_dtype dtype, const int64_t *shape, int ndim) {
    return persistent("zg_tensor_new", dtype, shape, ndim);
}

zg_tensor *zg_tensor_from_data(zg_dtype dtype, const void *data, const int64_t *shape, int ndim) {
    if (!data) return zg__fail_null("zg_tensor_from_data: data is NULL");
    zg_tensor *t = persistent("zg_tensor_from_data", dtype, shape, ndim);
    if (t) memcpy(t->storage->data, data, t->storage->nbytes);
    return t;
}

zg_tensor *zg_zeros(const int64_t *shape, int ndim) { return persistent("zg_zeros", ZG_FLOAT32, shape, ndim); }

zg_tensor *zg_full(const int64_t *shape, int ndim, float value) {
    zg_tensor *t = persistent("zg_full", ZG_FLOAT32, shape, ndim);
    if (t)
        for (int64_t i = 0; i < t->numel; i++) zg__f32(t)[i] = value;
    return t;
}

zg_tensor *zg_ones(const int64_t *shape, int ndim) { return zg_full(shape, ndim, 1.0f); }

zg_tensor *zg_scalar(float value) { return zg_full(NULL, 0, value); }

zg_tensor *zg_uniform(const int64_t *shape, int ndim, float lo, float hi) {
    if (!(lo <= hi)) return zg__fail_null("zg_uniform: lo %g > hi %g", lo, hi);
    zg_tensor *t = persistent("zg_uniform", ZG_FLOAT32, shape, ndim);
    if (t)
        for (int64_t i = 0; i < t->numel; i++) zg__f32(t)[i] = lo + (hi - lo) * zg__rng_uniform();
    return t;
}

zg_tensor *zg_rand(const int64_t *shape, int ndim) { return zg_uniform(shape, ndim, 0.0f, 1.0f); }

zg_tensor *zg_normal(const int64_t *shape, int ndim, float mean, float std) {
    if (!(std >= 0)) return zg__fail_null("zg_normal: std %g < 0", std);
    zg_tensor *t = persistent("zg_normal", ZG_FLOAT32, shape, ndim);
    if (t)
        for (int64_t i = 0; i < t->numel; i++) zg__f32(t)[i] = mean + std * zg__rng_normal();
    return t;
}

zg_tensor *zg_randn(const int64_t *shape, int ndim) { return zg_normal(shape, ndim, 0.0f, 1.0f); }

zg_tensor *zg_tensor_clone(const zg_tensor *src) {
    if (!src) return zg__fail_null("zg_tensor_clone: tensor is NULL");
    zg_tensor *t = persistent("zg_tensor_clone", src->dtype, src->shape, src->ndim);
    if (t) memcpy(t->storage->data, (char *)src->storage->data + src->offset * zg__dtype_size(src->dtype),
                  t->storage->nbytes);
    return t;
}

void zg_tensor_free(zg_tensor *t) {
    if (!t || !t->persistent) return;
    if (t->watched) zg__emit_tensor_free(t); /* event: state keyed by t dies with it */
    if (t->grad) zg_tensor_free(t->grad);
    zg__hooks_free(t->hooks);
    zg__hooks_free(t->post_hooks);
    free(t->name);
    free(t->own_storage.data);
    free(t);
}

/* ---- queries ------------------------------------------------------------ */

zg_dtype zg_tensor_dtype(const zg_tensor *t) { return t ? t->dtype : ZG_FLOAT32; }
int zg_tensor_ndim(const zg_tensor *t) { return t ? t->ndim : zg__fail(ZG_ERR_ARG, "zg_tensor_ndim: tensor is NULL"); }
const int64_t *zg_tensor_shape(const zg_tensor *t) {
    return t ? t->shape : zg__fail_null("zg_tensor_shape: tensor is NULL");
}
int64_t zg_tensor_numel(const zg_tensor *t) {
    return t ? t->numel : zg__fail(ZG_ERR_ARG, "zg_tensor_numel: tensor is NULL");
}
bool zg_tensor_is_persistent(const zg_tensor *t) { return t && t->persistent; }
uint64_t zg_tensor_version(const zg_tensor *t) { return t ? t->storage->version : 0; }

int64_t zg_tensor_size(const zg_tensor *t, int dim) {
    if (!t) return zg__fail(ZG_ERR_ARG, "zg_tensor_size: tensor is NULL");
    int d = zg__wrap_dim("zg_tensor_size", dim, t->ndim);
    if (d < 0 || t->ndim == 0) return t->ndim == 0 ? zg__fail(ZG_ERR_ARG, "zg_tensor_size: 0-dim tensor") : -1;
    return t->shape[d];
}

float *zg_tensor_data(zg_tensor *t) {
    if (!t) return zg__fail_null("zg_tensor_data: tensor is NULL");
    if (t->dtype != ZG_FLOAT32) return zg__fail_null("zg_tensor_data: tensor is int64 (use zg_tensor_data_i64)");
    return zg__f32(t);
}

int64_t *zg_tensor_data_i64(zg_tensor *t) {
    if (!t) return zg__fail_null("zg_tensor_data_i64: tensor is NULL");
    if (t->dtype != ZG_INT64) return zg__fail_null("zg_tensor_data_i64: tensor is float32 (use zg_tensor_data)");
    return zg__i64(t);
}

float zg_tensor_item(const zg_tensor *t) {
    if (!t) return zg__fail(ZG_ERR_ARG, "zg_tensor_item: tensor is NULL"), NAN;
    if (t->numel != 1) {
        char b[ZG_SHAPE_BUF];
        zg__fail(ZG_ERR_SHAPE, "zg_tensor_item: tensor of shape %s has %lld elements, not 1",
                 zg__shape_str(t, b, sizeof b), (long long)t->numel);
        return NAN;
    }
    return t->dtype == ZG_FLOAT32 ? zg__f32(t)[0] : (float)zg__i64(t)[0];
}

float zg_tensor_get(const zg_tensor *t, int64_t i) {
    if (!t || i < 0 || i >= t->numel) {
        zg__fail(ZG_ERR_ARG, "zg_tensor_get: index %lld out of range", (long long)i);
        return NAN;
    }
    return t->dtype == ZG_FLOAT32 ? zg__f32(t)[i] : (float)zg__i64(t)[i];
}

int zg_tensor_set_name(zg_tensor *t, const char *name) {
    if (!t || !name) return zg__fail(ZG_ERR_ARG, "zg_tensor_set_name: NULL argument");
    size_t n = strlen(name) + 1;
    char *c = t->persistent ? zg__malloc(n) : zg__arena_alloc(n);
    if (!c) return zg__fail(ZG_ERR_NOMEM, "zg_tensor_set_name: out of memory");
    memcpy(c, name, n);
    if (t->persistent) free(t->name);
    t->name = c;
    return ZG_OK;
}

const char *zg_tensor_name(const zg_tensor *t) { return t && t->name ? t->name : ""; }

const char *zg__shape_str(const zg_tensor *t, char *buf, size_t n) {
    if (!t) {
        snprintf(buf, n, "(null)");
        return buf;
    }
    size_t used = 0;
    used += (size_t)snprintf(buf + used, n - used, "[");
    for (int i = 0; i < t->ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}

void zg__hooks_free(zg__hook *h) {
    while (h) {
        zg__hook *n = h->next;
        free(h);
        h = n;
    }
}
