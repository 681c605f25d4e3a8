/* IDX files (the MNIST format), gzipped or plain (source.c tells them
 * apart by the gzip magic).
 *
 * Layout: bytes 0-1 zero, byte 2 the element type (0x08: unsigned byte,
 * the only type MNIST-style data sets use), byte 3 the number of
 * dimensions, then each dimension as a big-endian uint32, then the
 * elements in row-major order, and nothing after them. */
#include "data_internal.h"

#include <errno.h>
#include <stdio.h>

/* Sanity limits: a sample of at most 256 MiB, a file of at most 1 TiB. */
#define IDX_MAX_ITEM_BYTES ((uint64_t)1 << 28)
#define IDX_MAX_BYTES ((uint64_t)1 << 40)
/* The data buffer starts at this size and doubles as data arrives, so a
 * header announcing more than the file holds costs no more memory than the
 * file itself. */
#define IDX_FIRST_CHUNK ((size_t)1 << 20)

static const char *type_name(int t) {
    switch (t) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "short";
    case 0x0C: return "int";
    case 0x0D: return "float";
    case 0x0E: return "double";
    default: return "unknown";
    }
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

int zg__idx_read(zg__data_src *s, const char *fn, const char *name, int want_ndim, zg__idx_array *out) {
    memset(out, 0, sizeof *out);
    const char *what = want_ndim == 1 ? "labels" : "images";
    uint8_t h[4 + 4 * 3];
    int64_t r = zg__src_read(s, h, 4);
    if (r < 0) return zg__fail(ZG_ERR_FORMAT, "%s: '%s': %s", fn, name, s->err);
    if (r == 0) return zg__fail(ZG_ERR_FORMAT, "%s: '%s': empty file", fn, name);
    if (r < 4)
        return zg__fail(ZG_ERR_FORMAT, "%s: '%s': truncated: %lld bytes, too short for an IDX header", fn, name,
                        (long long)r);
    if (h[0] != 0 || h[1] != 0)
        return zg__fail(ZG_ERR_FORMAT,
                        "%s: '%s': not an IDX file: magic bytes %02x %02x %02x %02x (expected 00 00 08 %02x)", fn,
                        name, h[0], h[1], h[2], h[3], want_ndim);
    if (h[2] != 0x08)
        return zg__fail(ZG_ERR_FORMAT,
                        "%s: '%s': IDX element type 0x%02X (%s) is not supported: only 0x08 (unsigned byte)", fn,
                        name, h[2], type_name(h[2]));
    if (h[3] != want_ndim)
        return zg__fail(ZG_ERR_FORMAT, "%s: '%s': %d dimensions, expected %d for %s%s", fn, name, h[3], want_ndim,
                        what,
                        want_ndim == 3 && h[3] == 1   ? " (is this a labels file?)"
                        : want_ndim == 1 && h[3] == 3 ? " (is this an images file?)"
                                                      : "");
    size_t dim_bytes = 4 * (size_t)want_ndim;
    r = zg__src_read(s, h + 4, dim_bytes);
    if (r < 0) return zg__fail(ZG_ERR_FORMAT, "%s: '%s': %s", fn, name, s->err);
    if ((size_t)r < dim_bytes)
        return zg__fail(ZG_ERR_FORMAT, "%s: '%s': truncated: header ends after %lld of its %zu bytes", fn, name,
                        (long long)(4 + r), 4 + dim_bytes);
    uint64_t item = 1, total;
    char dims_str[64];
    size_t used = 0;
    for (int i = 0; i < want_ndim; i++) {
        uint32_t d = be32(h + 4 + 4 * i);
        out->dims[i] = d;
        used += (size_t)snprintf(dims_str + used, sizeof dims_str - used, i ? " x %u" : "%u", d);
        if (d == 0) return zg__fail(ZG_ERR_FORMAT, "%s: '%s': dimension %d is 0", fn, name, i);
        if (d > INT32_MAX)
            return zg__fail(ZG_ERR_FORMAT, "%s: '%s': dimension %d is %u (over the limit %d)", fn, name, i, d,
                            INT32_MAX);
        if (i > 0) item *= d; /* < 2^62: two factors below 2^31 */
    }
    if (item > IDX_MAX_ITEM_BYTES)
        return zg__fail(ZG_ERR_FORMAT, "%s: '%s': dimensions %s: a sample of %llu bytes (over the limit %llu)", fn,
                        name, dims_str, (unsigned long long)item, (unsigned long long)IDX_MAX_ITEM_BYTES);
    total = (uint64_t)out->dims[0] * item; /* < 2^31 * 2^28 */
    if (total > IDX_MAX_BYTES)
        return zg__fail(ZG_ERR_FORMAT, "%s: '%s': dimensions %s: %llu bytes of data (over the limit %llu)", fn,
                        name, dims_str, (unsigned long long)total, (unsigned long long)IDX_MAX_BYTES);
    if (total > SIZE_MAX) return zg__fail(ZG_ERR_NOMEM, "%s: '%s': %llu bytes do not fit in memory", fn, name,
                                          (unsigned long long)total);

    size_t cap = total < IDX_FIRST_CHUNK ? (size_t)total : IDX_FIRST_CHUNK, got = 0;
    if (!s->gz && s->len - s->pos < cap) cap = s->len - s->pos > 0 ? s->len - s->pos : 1;
    uint8_t *data = zg__malloc(cap);
    if (!data) return zg__fail(ZG_ERR_NOMEM, "%s: '%s': out of memory", fn, name);
    while (got < total) {
        if (got == cap) {
            size_t ncap = cap > (size_t)total / 2 ? (size_t)total : cap * 2;
            uint8_t *nd = zg__realloc(data, ncap);
            if (!nd) {
                free(data);
                return zg__fail(ZG_ERR_NOMEM, "%s: '%s': out of memory (%zu bytes)", fn, name, ncap);
            }
            data = nd;
            cap = ncap;
        }
        r = zg__src_read(s, data + got, cap - got);
        if (r < 0) {
            free(data);
            return zg__fail(ZG_ERR_FORMAT, "%s: '%s': %s", fn, name, s->err);
        }
        got += (size_t)r;
        if (got < cap) break; /* the end of the data */
    }
    if (got < total) {
        free(data);
        return zg__fail(ZG_ERR_FORMAT, "%s: '%s': truncated: expected %llu bytes of data (%s), got %zu", fn, name,
                        (unsigned long long)total, dims_str, got);
    }
    /* Nothing may follow the data; reading on also makes zlib check the
     * gzip trailer (CRC and length). */
    uint8_t tail[4096];
    uint64_t extra = 0;
    do {
        r = zg__src_read(s, tail, sizeof tail);
        if (r < 0) {
            free(data);
            return zg__fail(ZG_ERR_FORMAT, "%s: '%s': %s", fn, name, s->err);
        }
        extra += (uint64_t)r;
    } while (r == (int64_t)sizeof tail);
    if (extra) {
        free(data);
        return zg__fail(ZG_ERR_FORMAT, "%s: '%s': %llu trailing bytes after the %llu bytes of data (%s)", fn, name,
                        (unsigned long long)extra, (unsigned long long)total, dims_str);
    }
    out->data = data;
    out->ndim = want_ndim;
    return ZG_OK;
}

zg_dataset *zg__idx_dataset(const char *fn, zg__idx_array *images, const char *images_name,
                            zg__idx_array *labels, const char *labels_name) {
    int64_t n = images->dims[0];
    uint8_t *img = images->data, *lab = labels->data;
    images->data = labels->data = NULL;
    if (labels->dims[0] != n) {
        free(img);
        free(lab);
        return zg__fail_null("%s: '%s' holds %lld images but '%s' holds %lld labels", fn, images_name,
                             (long long)n, labels_name, (long long)labels->dims[0]);
    }
    int64_t *y = zg__malloc((size_t)n * sizeof *y);
    if (!y) {
        free(img);
        free(lab);
        return zg__fail_null("%s: out of memory", fn);
    }
    /* Bytes are 0..255, so every label is a valid class index >= 0. */
    for (int64_t i = 0; i < n; i++) y[i] = lab[i];
    free(lab);
    int64_t shape[3] = {1, images->dims[1], images->dims[2]};
    return zg__dataset_new(fn, true, img, y, n, shape, 3);
}

static int read_idx_file(const char *fn, const char *path, int want_ndim, zg__idx_array *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return zg__fail(ZG_ERR_IO, "%s: '%s': cannot open: %s", fn, path, strerror(errno));
    zg__data_src s;
    int rc = zg__src_file(&s, f) ? zg__fail(ZG_ERR_FORMAT, "%s: '%s': %s", fn, path, s.err)
                                 : zg__idx_read(&s, fn, path, want_ndim, out);
    zg__src_close(&s);
    fclose(f);
    return rc;
}

zg_dataset *zg_dataset_load_idx(const char *images_path, const char *labels_path) {
    const char *fn = "zg_dataset_load_idx";
    if (!images_path) return zg__fail_null("%s: images path is NULL", fn);
    zg__idx_array img, lab;
    if (read_idx_file(fn, images_path, 3, &img) < 0) return NULL;
    if (!labels_path) { /* images to predict on */
        int64_t shape[3] = {1, img.dims[1], img.dims[2]};
        return zg__dataset_new(fn, true, img.data, NULL, img.dims[0], shape, 3);
    }
    if (read_idx_file(fn, labels_path, 1, &lab) < 0) {
        free(img.data);
        return NULL;
    }
    return zg__idx_dataset(fn, &img, images_path, &lab, labels_path);
}
