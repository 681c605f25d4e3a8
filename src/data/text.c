/* A text corpus for language models: tokens, a vocabulary, a train/val
 * split and random windows.
 *
 * Vocabularies: characters (the corpus's distinct Unicode code points,
 * sorted, as nanoGPT's shakespeare_char prepare step builds it; the file
 * must be valid UTF-8) or bytes (all 256 values). The first
 * (1 - val_fraction) of the tokens train, the rest validate.
 *
 * Batches: B windows of T + 1 tokens at offsets drawn uniformly from
 * [0, n - T - 1], x = tokens[i, i + T), y = tokens[i + 1, i + T + 1). The
 * offsets come from a counter-based generator keyed by (seed, split, step,
 * row), not from the library's generator: batch k of a run is the same
 * whatever ran before it, so a resumed run draws exactly what the
 * uninterrupted one did. */
#include "data_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The largest corpus read: 2 GiB (tokens are counted in int64 but the file
 * is read whole). */
#define TEXT_MAX_BYTES (INT64_C(1) << 31)

struct zg_text {
    zg_text_vocab kind;
    int32_t *tokens; /* n token ids */
    int64_t n, n_train;
    uint32_t *chars; /* ZG_TEXT_CHAR: code point of each id, sorted */
    int64_t vocab;
};

static int cmp_u32(const void *a, const void *b) {
    const uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The id of code point cp in the sorted chars, or -1. */
static int64_t char_id(const zg_text *t, uint32_t cp) {
    const uint32_t *hit = bsearch(&cp, t->chars, (size_t)t->vocab, sizeof *t->chars, cmp_u32);
    return hit ? hit - t->chars : -1;
}

/* Tokens of the code points of s: the vocabulary from them, then ids. */
static int tokenize_chars(const char *fn, zg_text *t, const unsigned char *s, int64_t n) {
    uint32_t *cps = zg__malloc((size_t)(n ? n : 1) * sizeof *cps);
    t->tokens = zg__malloc((size_t)(n ? n : 1) * sizeof *t->tokens);
    if (!cps || !t->tokens) {
        free(cps);
        return zg__fail(ZG_ERR_NOMEM, "%s: out of memory for %lld bytes of text", fn, (long long)n);
    }
    int64_t count = 0;
    for (size_t i = 0; i < (size_t)n;) {
        const size_t at = i;
        const int64_t cp = zg__utf8_next(s, (size_t)n, &i);
        if (cp < 0) {
            free(cps);
            return zg__fail(ZG_ERR_FORMAT, "%s: invalid UTF-8 at byte %lld (use the byte vocabulary for binary data)",
                            fn, (long long)at);
        }
        cps[count++] = (uint32_t)cp;
    }
    t->n = count;
    /* The vocabulary, the sorted distinct code points, from a table of the
     * ids of code points 0..max (O(n), where sorting n code points took
     * a second for a 5 MB corpus). */
    uint32_t max = 0;
    for (int64_t i = 0; i < count; i++) max = cps[i] > max ? cps[i] : max;
    int32_t *id = zg__calloc((size_t)max + 1, sizeof *id);
    if (!id) {
        free(cps);
        return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    }
    for (int64_t i = 0; i < count; i++) id[cps[i]] = 1;
    int64_t v = 0;
    for (uint32_t c = 0; c <= max; c++) v += id[c];
    t->chars = zg__malloc((size_t)(v ? v : 1) * sizeof *t->chars);
    if (!t->chars) {
        free(id);
        free(cps);
        return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    }
    t->vocab = 0;
    for (uint32_t c = 0; c <= max; c++)
        if (id[c]) {
            id[c] = (int32_t)t->vocab;
            t->chars[t->vocab++] = c;
        }
    for (int64_t i = 0; i < count; i++) t->tokens[i] = id[cps[i]];
    free(id);
    free(cps);
    return ZG_OK;
}

/* ---- construction ------------------------------------------------------ */

zg_text *zg_text_from_memory(const char *data, int64_t n, zg_text_vocab kind, double val_fraction) {
    const char *fn = "zg_text";
    if (!data && n) return zg__fail_null("%s: data is NULL", fn);
    if (n < 0 || n > TEXT_MAX_BYTES)
        return zg__fail_null("%s: %lld bytes of text: at most %lld", fn, (long long)n, (long long)TEXT_MAX_BYTES);
    if (kind != ZG_TEXT_CHAR && kind != ZG_TEXT_BYTE) return zg__fail_null("%s: unknown vocabulary %d", fn, kind);
    if (!(val_fraction >= 0.0 && val_fraction < 1.0))
        return zg__fail_null("%s: val_fraction %g must lie in [0, 1)", fn, val_fraction);
    zg_text *t = zg__calloc(1, sizeof *t);
    if (!t) return zg__fail_null("%s: out of memory", fn);
    t->kind = kind;
    const unsigned char *s = (const unsigned char *)data;
    int rc = ZG_OK;
    if (kind == ZG_TEXT_CHAR) {
        rc = tokenize_chars(fn, t, s, n);
    } else {
        t->vocab = 256;
        t->n = n;
        if (!(t->tokens = zg__malloc((size_t)(n ? n : 1) * sizeof *t->tokens)))
            rc = zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
        for (int64_t i = 0; !rc && i < n; i++) t->tokens[i] = s[i];
    }
    if (rc) {
        zg_text_free(t);
        return NULL;
    }
    t->n_train = t->n - (int64_t)((double)t->n * val_fraction);
    return t;
}

zg_text *zg_text_load(const char *path, zg_text_vocab kind, double val_fraction) {
    const char *fn = "zg_text_load";
    if (!path) return zg__fail_null("%s: path is NULL", fn);
    FILE *f = fopen(path, "rb");
    if (!f) return zg__fail_null("%s: cannot open '%s': %s", fn, path, strerror(errno));
    char *buf = NULL;
    int64_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            if (cap >= TEXT_MAX_BYTES) {
                fclose(f);
                free(buf);
                return zg__fail_null("%s: '%s' holds more than %lld bytes", fn, path, (long long)TEXT_MAX_BYTES);
            }
            cap = cap ? 2 * cap : 1 << 16;
            char *nb = zg__realloc(buf, (size_t)cap);
            if (!nb) {
                fclose(f);
                free(buf);
                return zg__fail_null("%s: out of memory reading '%s'", fn, path);
            }
            buf = nb;
        }
        const size_t got = fread(buf + n, 1, (size_t)(cap - n), f);
        n += (int64_t)got;
        if (got == 0) break;
    }
    const bool err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return zg__fail_null("%s: error reading '%s'", fn, path);
    }
    zg_text *t = zg_text_from_memory(buf, n, kind, val_fraction);
    free(buf);
    if (!t) {
        char inner[900];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        return zg__fail_null("%s: '%s': %s", fn, path, inner);
    }
    return t;
}

void zg_text_free(zg_text *t) {
    if (!t) return;
    free(t->tokens);
    free(t->chars);
    free(t);
}

int64_t zg_text_vocab_size(const zg_text *t) { return t ? t->vocab : 0; }

int64_t zg_text_num_tokens(const zg_text *t, bool val) {
    if (!t) return 0;
    return val ? t->n - t->n_train : t->n_train;
}

/* ---- encoding ------------------------------------------------------------ */

int64_t zg_text_encode(const zg_text *t, const char *s, int64_t *out, int64_t max) {
    const char *fn = "zg_text_encode";
    if (!t || !s) return zg__fail(ZG_ERR_ARG, "%s: text or string is NULL", fn);
    const unsigned char *u = (const unsigned char *)s;
    const int64_t n = (int64_t)strlen(s);
    int64_t k = 0;
    for (size_t i = 0; i < (size_t)n; k++) {
        int64_t id;
        if (t->kind == ZG_TEXT_BYTE) {
            id = u[i++];
        } else {
            const size_t at = i;
            const int64_t cp = zg__utf8_next(u, (size_t)n, &i);
            if (cp < 0) return zg__fail(ZG_ERR_FORMAT, "%s: invalid UTF-8 at byte %lld", fn, (long long)at);
            if ((id = char_id(t, (uint32_t)cp)) < 0)
                return zg__fail(ZG_ERR_ARG, "%s: character U+%04llX at byte %lld is not in the vocabulary", fn,
                                (long long)cp, (long long)at);
        }
        if (k < max && out) out[k] = id;
    }
    return k;
}

int64_t zg_text_decode(const zg_text *t, const int64_t *ids, int64_t n, char *out, int64_t cap) {
    const char *fn = "zg_text_decode";
    if (!t || (!ids && n)) return zg__fail(ZG_ERR_ARG, "%s: text or ids is NULL", fn);
    int64_t len = 0;
    char tmp[4];
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab)
            return zg__fail(ZG_ERR_ARG, "%s: id %lld at %lld is outside the vocabulary of %lld", fn,
                            (long long)ids[i], (long long)i, (long long)t->vocab);
        const size_t w = t->kind == ZG_TEXT_BYTE ? (tmp[0] = (char)ids[i], 1) : zg__utf8_put(tmp, t->chars[ids[i]]);
        for (size_t k = 0; k < w; k++, len++)
            if (out && len < cap - 1) out[len] = tmp[k];
    }
    if (out && cap > 0) out[len < cap - 1 ? len : cap - 1] = 0;
    return len;
}

/* ---- batches ------------------------------------------------------------- */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A uniform offset in [0, range) for (seed, split, step, row). */
static int64_t window_at(uint64_t seed, bool val, int64_t step, int64_t row, int64_t range) {
    uint64_t h = mix64(seed + 0x9E3779B97F4A7C15ull);
    h = mix64(h ^ (val ? 0xD1B54A32D192ED03ull : 0x8CB92BA72F3D8DD7ull));
    h = mix64(h ^ (uint64_t)step);
    h = mix64(h ^ ((uint64_t)row * 0x9E3779B97F4A7C15ull));
    /* multiply-shift: uniform enough for ranges far below 2^64 */
    return (int64_t)(((unsigned __int128)h * (uint64_t)range) >> 64);
}

int zg__text_fill_batch(const zg_text *t, bool val, uint64_t seed, int64_t step, zg_tensor *x, zg_tensor *y) {
    const char *fn = "zg_text_batch";
    if (!t || !x || !y) return zg__fail(ZG_ERR_ARG, "%s: text, x or y is NULL", fn);
    if (zg_tensor_dtype(x) != ZG_INT64 || zg_tensor_dtype(y) != ZG_INT64 || zg_tensor_ndim(x) != 2 ||
        zg_tensor_ndim(y) != 2 || zg_tensor_size(x, 0) != zg_tensor_size(y, 0) ||
        zg_tensor_size(x, 1) != zg_tensor_size(y, 1))
        return zg__fail(ZG_ERR_ARG, "%s: x and y must be int64 [batch, block] alike", fn);
    const int64_t batch = zg_tensor_size(x, 0), block = zg_tensor_size(x, 1);
    if (step < 0) return zg__fail(ZG_ERR_ARG, "%s: step %lld must be >= 0", fn, (long long)step);
    const int32_t *tok = t->tokens + (val ? t->n_train : 0);
    const int64_t n = val ? t->n - t->n_train : t->n_train;
    if (n < block + 1)
        return zg__fail(ZG_ERR_ARG, "%s: the %s split has %lld tokens; a window of block %lld needs %lld", fn,
                        val ? "validation" : "training", (long long)n, (long long)block, (long long)block + 1);
    int64_t *X = zg__i64(x), *Y = zg__i64(y);
    for (int64_t r = 0; r < batch; r++) {
        const int64_t at = window_at(seed, val, step, r, n - block);
        for (int64_t j = 0; j < block; j++) {
            X[r * block + j] = tok[at + j];
            Y[r * block + j] = tok[at + j + 1];
        }
    }
    return ZG_OK;
}

int zg_text_batch(const zg_text *t, bool val, int64_t batch, int64_t block, uint64_t seed, int64_t step,
                  zg_tensor **x, zg_tensor **y) {
    const char *fn = "zg_text_batch";
    if (!t || !x || !y) return zg__fail(ZG_ERR_ARG, "%s: text, x or y is NULL", fn);
    *x = *y = NULL;
    if (batch < 1 || block < 1 || step < 0)
        return zg__fail(ZG_ERR_ARG, "%s: batch %lld and block %lld must be positive, step %lld >= 0", fn,
                        (long long)batch, (long long)block, (long long)step);
    if (batch > INT64_MAX / block) return zg__fail(ZG_ERR_ARG, "%s: batch x block overflows", fn);
    const int64_t shape[2] = {batch, block};
    *x = zg_tensor_new(ZG_INT64, shape, 2);
    *y = zg_tensor_new(ZG_INT64, shape, 2);
    int rc = *x && *y ? zg__text_fill_batch(t, val, seed, step, *x, *y)
                      : zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    if (rc) {
        zg_tensor_free(*x);
        zg_tensor_free(*y);
        *x = *y = NULL;
    }
    return rc;
}
