/* safetensors files: an 8-byte little-endian header length N, N bytes of
 * JSON mapping each tensor name to {"dtype", "shape", "data_offsets"} (plus
 * an optional "__metadata__" object of strings), then the raw little-endian
 * data; the offsets are relative to the start of the data and the tensors
 * must tile it exactly. The reader validates all of it before it allocates
 * any tensor; the writer replaces its target atomically. */
#include "io_internal.h"
#include "../util/json.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "zgrad's safetensors I/O copies tensor bytes as they are: it needs a little-endian host"
#endif

/* The reference implementation refuses headers above 100 MB; so do we, so
 * that a corrupt length cannot make us allocate gigabytes. */
#define ZG_ST_MAX_HEADER 100000000ull

struct zg_safetensors {
    char *path;
    int n;
    char **names;        /* in header order */
    zg_tensor **tensors; /* persistent, owned */
    int *by_name;        /* indices sorted by name, for lookup */
    int n_meta;
    char **meta_keys, **meta_values;
};

/* ---- reading ---------------------------------------------------------- */

/* The status of this thread's last failed read: what zg__safetensors_open
 * returns, so no caller has to guess whether a failure was the file or its
 * content. */
static _Thread_local int read_status;

/* Every read error reads "zg_safetensors_read: '<path>': <problem>". */
static void *read_fail(int status, const char *path, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void *read_fail(int status, const char *path, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    read_status = status;
    return zg__fail_null("zg_safetensors_read: '%s': %s", path, msg);
}
/* The content is not a valid safetensors file / the file cannot be read /
 * memory ran out. */
#define RFAIL(...) read_fail(ZG_ERR_FORMAT, path, __VA_ARGS__)
#define RFAIL_IO(...) read_fail(ZG_ERR_IO, path, __VA_ARGS__)
#define RFAIL_MEM(...) read_fail(ZG_ERR_NOMEM, path, __VA_ARGS__)

typedef struct {
    const char *name; /* borrowed from the JSON tree */
    zg_dtype dtype;
    int ndim;
    int64_t shape[ZG_MAX_DIMS];
    uint64_t begin, end;
} entry;

/* Sorting helpers: qsort has no context argument, so the arrays being
 * sorted hold pointers to what they compare. */
static int cmp_entry_offsets(const void *a, const void *b) {
    const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}
static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(**(const char *const *const *)a, **(const char *const *const *)b);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *c = zg__malloc(n);
    if (c) memcpy(c, s, n);
    return c;
}

/* Safetensors dtype names zgrad knows of but cannot hold. */
static bool known_dtype(const char *s) {
    static const char *const other[] = {"BOOL", "U8",  "I8",  "I16", "U16",     "F16",     "BF16",
                                        "I32",  "U32", "F64", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0",
                                        "F4",   "F6_E2M3", "F6_E3M2", "C64"};
    for (size_t i = 0; i < sizeof other / sizeof *other; i++)
        if (strcmp(s, other[i]) == 0) return true;
    return false;
}

/* A JSON value that must be a non-negative integer. */
static bool json_uint(const zg__json *v, uint64_t *out) {
    if (v->type != ZG_JSON_NUMBER || !v->is_integer || !v->fits_int64 || v->integer < 0) return false;
    *out = (uint64_t)v->integer;
    return true;
}

/* Describes a JSON value for messages: the number as written, or its type. */
static const char *json_desc(const zg__json *v, char *buf, size_t n) {
    if (v->type == ZG_JSON_NUMBER) {
        snprintf(buf, n, "%.*s", (int)(v->num_len < 40 ? v->num_len : 40), v->num_text);
        return buf;
    }
    return zg__json_type_name(v->type);
}

static void *parse_entry(const char *path, const char *name, const zg__json *v, uint64_t data_len, entry *e) {
    char b[64];
    if (v->type != ZG_JSON_OBJECT)
        return RFAIL("tensor '%s': entry is %s, not an object", name, zg__json_type_name(v->type));
    const zg__json *dtype = NULL, *shape = NULL, *offs = NULL;
    for (int i = 0; i < v->n; i++) {
        const char *k = v->keys[i];
        const zg__json **slot = strcmp(k, "dtype") == 0          ? &dtype
                               : strcmp(k, "shape") == 0        ? &shape
                               : strcmp(k, "data_offsets") == 0 ? &offs
                                                                : NULL;
        if (!slot || strlen(k) != v->key_lens[i])
            return RFAIL("tensor '%s': unexpected field '%s' (expected dtype, shape, data_offsets)", name, k);
        if (*slot) return RFAIL("tensor '%s': field '%s' appears twice", name, k);
        *slot = &v->items[i];
    }
    if (!dtype) return RFAIL("tensor '%s': missing field 'dtype'", name);
    if (!shape) return RFAIL("tensor '%s': missing field 'shape'", name);
    if (!offs) return RFAIL("tensor '%s': missing field 'data_offsets'", name);

    e->name = name;
    if (dtype->type != ZG_JSON_STRING)
        return RFAIL("tensor '%s': dtype is %s, not a string", name, zg__json_type_name(dtype->type));
    if (strcmp(dtype->str, "F32") == 0)
        e->dtype = ZG_FLOAT32;
    else if (strcmp(dtype->str, "I64") == 0)
        e->dtype = ZG_INT64;
    else if (known_dtype(dtype->str))
        return RFAIL("tensor '%s': dtype %s is not supported (zgrad reads F32 and I64)", name, dtype->str);
    else
        return RFAIL("tensor '%s': unknown dtype '%s' (zgrad reads F32 and I64)", name, dtype->str);

    if (shape->type != ZG_JSON_ARRAY)
        return RFAIL("tensor '%s': shape is %s, not an array", name, zg__json_type_name(shape->type));
    if (shape->n > ZG_MAX_DIMS)
        return RFAIL("tensor '%s': shape has %d dimensions (at most %d supported)", name, shape->n, ZG_MAX_DIMS);
    e->ndim = shape->n;
    uint64_t numel = 1;
    bool huge = false;
    for (int i = 0; i < shape->n; i++) {
        uint64_t d;
        if (!json_uint(&shape->items[i], &d))
            return RFAIL("tensor '%s': shape entry %d is %s, not a non-negative integer", name, i,
                         json_desc(&shape->items[i], b, sizeof b));
        e->shape[i] = (int64_t)d;
        /* Saturate instead of overflowing: the byte-length check below
         * rejects any product larger than the file. */
        if (d && numel > UINT64_MAX / 8 / d) huge = true;
        else numel *= d;
    }

    if (offs->type != ZG_JSON_ARRAY || offs->n != 2)
        return RFAIL("tensor '%s': data_offsets must be an array of two integers [begin, end]", name);
    for (int i = 0; i < 2; i++)
        if (!json_uint(&offs->items[i], i ? &e->end : &e->begin))
            return RFAIL("tensor '%s': data_offsets entry %d is %s, not a non-negative integer", name, i,
                         json_desc(&offs->items[i], b, sizeof b));
    if (e->end < e->begin)
        return RFAIL("tensor '%s': data_offsets [%llu, %llu] are not ascending", name,
                     (unsigned long long)e->begin, (unsigned long long)e->end);
    uint64_t want = huge ? UINT64_MAX : numel * zg__dtype_size(e->dtype);
    if (e->end - e->begin != want) {
        char s[ZG_SHAPE_BUF];
        zg_tensor tmp = {.ndim = e->ndim};
        memcpy(tmp.shape, e->shape, sizeof e->shape);
        return RFAIL("tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but %s %s needs %s%llu", name,
                     (unsigned long long)e->begin, (unsigned long long)e->end,
                     (unsigned long long)(e->end - e->begin), dtype->str, zg__shape_str(&tmp, s, sizeof s),
                     huge ? "more than " : "", (unsigned long long)(huge ? data_len : want));
    }
    if (e->end > data_len)
        return RFAIL("tensor '%s': data_offsets [%llu, %llu] lie outside the %llu-byte data section", name,
                     (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)data_len);
    return (void *)e;
}

static void st_free_partial(zg_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) {
        if (st->names) free(st->names[i]);
        if (st->tensors) zg_tensor_free(st->tensors[i]);
    }
    for (int i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->names);
    free(st->tensors);
    free(st->by_name);
    free(st->meta_keys);
    free(st->meta_values);
    free(st->path);
    free(st);
}

static void *parse_metadata(const char *path, const zg__json *m, zg_safetensors *st) {
    if (m->type != ZG_JSON_OBJECT)
        return RFAIL("__metadata__ is %s, not an object of strings", zg__json_type_name(m->type));
    st->meta_keys = zg__calloc((size_t)m->n + 1, sizeof(char *));
    st->meta_values = zg__calloc((size_t)m->n + 1, sizeof(char *));
    if (!st->meta_keys || !st->meta_values) return RFAIL_MEM("out of memory");
    for (int i = 0; i < m->n; i++) {
        const zg__json *v = &m->items[i];
        if (v->type != ZG_JSON_STRING)
            return RFAIL("__metadata__ value of '%s' is %s, not a string", m->keys[i], zg__json_type_name(v->type));
        if (strlen(m->keys[i]) != m->key_lens[i] || strlen(v->str) != v->len)
            return RFAIL("__metadata__ entry '%s' contains a NUL character", m->keys[i]);
        for (int j = 0; j < i; j++)
            if (strcmp(m->keys[j], m->keys[i]) == 0) return RFAIL("__metadata__ key '%s' appears twice", m->keys[i]);
        st->meta_keys[i] = dup_str(m->keys[i]);
        st->meta_values[i] = dup_str(v->str);
        st->n_meta = i + 1;
        if (!st->meta_keys[i] || !st->meta_values[i]) return RFAIL_MEM("out of memory");
    }
    return st;
}

/* Checks that the entries, sorted by offset, tile [0, data_len) exactly. */
static void *check_layout(const char *path, entry **sorted, int n, uint64_t data_len) {
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_entry_offsets);
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        const entry *e = sorted[i];
        if (e->begin < at)
            return RFAIL("tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap", sorted[i - 1]->name,
                         (unsigned long long)sorted[i - 1]->begin, (unsigned long long)sorted[i - 1]->end, e->name,
                         (unsigned long long)e->begin, (unsigned long long)e->end);
        if (e->begin > at)
            return RFAIL("gap in the data section: bytes [%llu, %llu) belong to no tensor (before '%s')",
                         (unsigned long long)at, (unsigned long long)e->begin, e->name);
        at = e->end;
    }
    if (at != data_len)
        return RFAIL("%llu trailing bytes after the last tensor: the tensors cover %llu of the %llu data bytes",
                     (unsigned long long)(data_len - at), (unsigned long long)at, (unsigned long long)data_len);
    return sorted;
}

static zg_safetensors *read_file(const char *path, FILE *f) {
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) return RFAIL_IO("cannot stat: %s", strerror(errno));
    if (!S_ISREG(sb.st_mode)) return RFAIL_IO("not a regular file");
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 8)
        return RFAIL("file is %llu bytes, too short for the 8-byte header length", (unsigned long long)size);
    unsigned char lenb[8];
    if (fread(lenb, 1, 8, f) != 8) return RFAIL_IO("cannot read the header length: %s", strerror(errno));
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | lenb[i];
    if (hlen > ZG_ST_MAX_HEADER)
        return RFAIL("header length %llu is absurd (limit %llu bytes): not a safetensors file?",
                     (unsigned long long)hlen, (unsigned long long)ZG_ST_MAX_HEADER);
    if (hlen > size - 8)
        return RFAIL("header length %llu exceeds the %llu bytes that follow it", (unsigned long long)hlen,
                     (unsigned long long)(size - 8));
    uint64_t data_len = size - 8 - hlen;

    char *text = zg__malloc(hlen ? hlen : 1);
    if (!text) return RFAIL_MEM("out of memory (%llu-byte header)", (unsigned long long)hlen);
    if (fread(text, 1, hlen, f) != hlen) {
        free(text);
        return RFAIL_IO("cannot read the %llu-byte header: %s", (unsigned long long)hlen, strerror(errno));
    }
    if (hlen == 0 || text[0] != '{') {
        free(text);
        return RFAIL("header does not start with '{' (not a JSON object)");
    }
    zg__json *root = NULL;
    char jerr[256];
    if (zg__json_parse(text, hlen, &root, jerr, sizeof jerr)) {
        free(text);
        return RFAIL("header JSON error at %s", jerr);
    }

    zg_safetensors *st = zg__calloc(1, sizeof *st);
    entry *entries = zg__calloc((size_t)root->n + 1, sizeof *entries);
    entry **sorted = zg__calloc((size_t)root->n + 1, sizeof *sorted);
    void *ok = st && entries && sorted ? st : RFAIL_MEM("out of memory");
    int n = 0;
    bool have_meta = false;
    for (int i = 0; ok && i < root->n; i++) {
        const char *key = root->keys[i];
        if (strlen(key) != root->key_lens[i]) {
            ok = RFAIL("tensor name '%s...' contains a NUL character", key);
        } else if (strcmp(key, "__metadata__") == 0) {
            ok = have_meta ? RFAIL("__metadata__ appears twice") : parse_metadata(path, &root->items[i], st);
            have_meta = true;
        } else {
            ok = parse_entry(path, key, &root->items[i], data_len, &entries[n]);
            sorted[n] = &entries[n];
            n++;
        }
    }
    if (ok) {
        st->path = dup_str(path);
        st->names = zg__calloc((size_t)n + 1, sizeof *st->names);
        st->tensors = zg__calloc((size_t)n + 1, sizeof *st->tensors);
        st->by_name = zg__malloc(((size_t)n + 1) * sizeof *st->by_name);
        if (!st->path || !st->names || !st->tensors || !st->by_name) ok = RFAIL_MEM("out of memory");
    }
    if (ok) {
        /* Duplicate names: sort pointers into an array of the names, so
         * that each sorted pointer also gives the name's index. */
        const char **nm = zg__malloc(((size_t)n + 1) * sizeof *nm);
        const char ***ptrs = zg__malloc(((size_t)n + 1) * sizeof *ptrs);
        if (!nm || !ptrs) ok = RFAIL_MEM("out of memory");
        for (int i = 0; ok && i < n; i++) {
            nm[i] = entries[i].name;
            ptrs[i] = &nm[i];
        }
        if (ok) qsort(ptrs, (size_t)n, sizeof *ptrs, cmp_str_ptr);
        for (int i = 1; ok && i < n; i++)
            if (strcmp(*ptrs[i - 1], *ptrs[i]) == 0) ok = RFAIL("tensor '%s' appears twice", *ptrs[i]);
        for (int i = 0; ok && i < n; i++) st->by_name[i] = (int)(ptrs[i] - nm);
        free(nm);
        free(ptrs);
    }
    if (ok) ok = check_layout(path, sorted, n, data_len);
    /* Everything is valid: allocate the tensors and read their bytes. */
    for (int i = 0; ok && i < n; i++) {
        st->names[i] = dup_str(entries[i].name);
        st->tensors[i] = zg_tensor_new(entries[i].dtype, entries[i].shape, entries[i].ndim);
        st->n = i + 1;
        if (!st->names[i] || !st->tensors[i] || zg_tensor_set_name(st->tensors[i], st->names[i])) {
            ok = RFAIL_MEM("out of memory for tensor '%s'", entries[i].name);
            break;
        }
    }
    for (int i = 0; ok && i < n; i++) {
        const entry *e = sorted[i];
        int k = (int)(e - entries);
        size_t nb = (size_t)(e->end - e->begin);
        if (nb == 0) continue;
        if (fseeko(f, (off_t)(8 + hlen + e->begin), SEEK_SET) != 0 ||
            fread(st->tensors[k]->storage->data, 1, nb, f) != nb)
            ok = RFAIL_IO("cannot read the data of tensor '%s' (file changed while reading?)", e->name);
    }
    zg__json_free(root);
    free(text);
    free(entries);
    free(sorted);
    if (!ok) {
        st_free_partial(st);
        return NULL;
    }
    return st;
}

int zg__safetensors_open(const char *path, zg_safetensors **out) {
    *out = NULL;
    if (!path) return zg__fail(ZG_ERR_ARG, "zg_safetensors_read: path is NULL");
    FILE *f = fopen(path, "rb");
    if (!f) return zg__fail(ZG_ERR_IO, "zg_safetensors_read: cannot open '%s': %s", path, strerror(errno));
    read_status = ZG_ERR_FORMAT;
    *out = read_file(path, f);
    fclose(f);
    return *out ? ZG_OK : read_status;
}

zg_safetensors *zg_safetensors_read(const char *path) {
    zg_safetensors *st;
    zg__safetensors_open(path, &st);
    return st;
}

int zg_safetensors_count(const zg_safetensors *st) {
    if (!st) return zg__fail(ZG_ERR_ARG, "zg_safetensors_count: handle is NULL");
    return st->n;
}

const char *zg_safetensors_name(const zg_safetensors *st, int index) {
    if (!st) return zg__fail_null("zg_safetensors_name: handle is NULL");
    if (index < 0 || index >= st->n)
        return zg__fail_null("zg_safetensors_name: index %d out of range (%d tensors)", index, st->n);
    return st->names[index];
}

zg_tensor *zg_safetensors_get(const zg_safetensors *st, const char *name) {
    if (!st || !name) return zg__fail_null("zg_safetensors_get: NULL argument");
    int lo = 0, hi = st->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->names[st->by_name[mid]]);
        if (c == 0) return st->tensors[st->by_name[mid]];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return zg__fail_null("zg_safetensors_get: no tensor '%s' in '%s'", name, st->path);
}

const char *zg_safetensors_metadata(const zg_safetensors *st, const char *key) {
    if (!st || !key) return zg__fail_null("zg_safetensors_metadata: NULL argument");
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}

void zg_safetensors_free(zg_safetensors *st) { st_free_partial(st); }

/* ---- writing ---------------------------------------------------------- */

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Names (or keys) must be unique: sort a copy of the pointers, compare
 * neighbours. Returns the duplicate or NULL; *oom on allocation failure. */
static const char *find_duplicate(const char *const *s, int n, bool *oom) {
    *oom = false;
    if (n < 2) return NULL;
    const char **c = zg__malloc((size_t)n * sizeof *c);
    if (!c) {
        *oom = true;
        return NULL;
    }
    memcpy(c, s, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, cmp_cstr);
    const char *dup = NULL;
    for (int i = 1; i < n && !dup; i++)
        if (strcmp(c[i - 1], c[i]) == 0) dup = c[i];
    free(c);
    return dup;
}

static int validate_write(const char *path, zg_tensor *const *tensors, const char *const *names, int n,
                          const char *const *mk, const char *const *mv, int n_meta) {
    const char *fn = "zg_safetensors_write";
    if (!path || !*path) return zg__fail(ZG_ERR_ARG, "%s: path is NULL or empty", fn);
    if (n < 0 || n_meta < 0) return zg__fail(ZG_ERR_ARG, "%s: '%s': negative count", fn, path);
    if (n > 0 && (!tensors || !names)) return zg__fail(ZG_ERR_ARG, "%s: '%s': tensors or names is NULL", fn, path);
    if (n_meta > 0 && (!mk || !mv))
        return zg__fail(ZG_ERR_ARG, "%s: '%s': metadata keys or values is NULL", fn, path);
    for (int i = 0; i < n; i++) {
        const char *nm = names[i];
        if (!nm || !*nm) return zg__fail(ZG_ERR_ARG, "%s: '%s': name %d is NULL or empty", fn, path, i);
        if (!zg__utf8_valid(nm, strlen(nm)))
            return zg__fail(ZG_ERR_ARG, "%s: '%s': name %d is not valid UTF-8", fn, path, i);
        if (strcmp(nm, "__metadata__") == 0)
            return zg__fail(ZG_ERR_ARG, "%s: '%s': '__metadata__' is reserved, not a tensor name", fn, path);
        const zg_tensor *t = tensors[i];
        if (!t) return zg__fail(ZG_ERR_ARG, "%s: '%s': tensor %d ('%s') is NULL", fn, path, i, nm);
        if (t->dtype != ZG_FLOAT32 && t->dtype != ZG_INT64)
            return zg__fail(ZG_ERR_ARG, "%s: '%s': tensor '%s' has an unsupported dtype", fn, path, nm);
    }
    for (int i = 0; i < n_meta; i++) {
        if (!mk[i] || !mv[i]) return zg__fail(ZG_ERR_ARG, "%s: '%s': metadata entry %d is NULL", fn, path, i);
        if (!zg__utf8_valid(mk[i], strlen(mk[i])) || !zg__utf8_valid(mv[i], strlen(mv[i])))
            return zg__fail(ZG_ERR_ARG, "%s: '%s': metadata entry '%s' is not valid UTF-8", fn, path, mk[i]);
    }
    bool oom;
    const char *dup = find_duplicate(names, n, &oom);
    if (dup) return zg__fail(ZG_ERR_ARG, "%s: '%s': tensor name '%s' appears twice", fn, path, dup);
    if (!oom) dup = find_duplicate(mk, n_meta, &oom);
    if (dup) return zg__fail(ZG_ERR_ARG, "%s: '%s': metadata key '%s' appears twice", fn, path, dup);
    if (oom) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    return ZG_OK;
}

/* The header JSON, padded with spaces so that the data starts at a multiple
 * of 8 bytes from the file start (8 + header length). */
static int build_header(zg__strbuf *h, zg_tensor *const *tensors, const char *const *names, int n,
                        const char *const *mk, const char *const *mv, int n_meta) {
    char num[64];
    zg__sb_puts(h, "{");
    if (n_meta > 0) {
        zg__sb_puts(h, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) zg__sb_puts(h, ",");
            zg__sb_json_str(h, mk[i]);
            zg__sb_puts(h, ":");
            zg__sb_json_str(h, mv[i]);
        }
        zg__sb_puts(h, "}");
    }
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        const zg_tensor *t = tensors[i];
        if (i || n_meta > 0) zg__sb_puts(h, ",");
        zg__sb_json_str(h, names[i]);
        zg__sb_puts(h, t->dtype == ZG_FLOAT32 ? ":{\"dtype\":\"F32\",\"shape\":[" : ":{\"dtype\":\"I64\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, d ? ",%lld" : "%lld", (long long)t->shape[d]);
            zg__sb_puts(h, num);
        }
        uint64_t nb = (uint64_t)t->numel * zg__dtype_size(t->dtype);
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)at,
                 (unsigned long long)(at + nb));
        zg__sb_puts(h, num);
        at += nb;
    }
    zg__sb_puts(h, "}");
    while (!h->failed && h->n % 8) zg__sb_puts(h, " ");
    if (h->failed) return zg__fail(ZG_ERR_NOMEM, "zg_safetensors_write: out of memory building the header");
    if (h->n > ZG_ST_MAX_HEADER)
        return zg__fail(ZG_ERR_ARG, "zg_safetensors_write: header of %zu bytes exceeds the %llu-byte limit", h->n,
                        (unsigned long long)ZG_ST_MAX_HEADER);
    return ZG_OK;
}

int zg_safetensors_write(const char *path, zg_tensor *const *tensors, const char *const *names, int n,
                         const char *const *meta_keys, const char *const *meta_values, int n_meta) {
    int rc = validate_write(path, tensors, names, n, meta_keys, meta_values, n_meta);
    if (rc) return rc;
    zg__strbuf h = {0};
    rc = build_header(&h, tensors, names, n, meta_keys, meta_values, n_meta);
    zg__atomic_file af;
    if (!rc) rc = zg__atomic_open(&af, "zg_safetensors_write", path);
    if (rc) {
        zg__sb_free(&h);
        return rc;
    }
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
    bool ok = fwrite(lenb, 1, 8, af.f) == 8 && fwrite(h.s, 1, h.n, af.f) == h.n;
    for (int i = 0; ok && i < n; i++) {
        const zg_tensor *t = tensors[i];
        size_t nb = (size_t)t->numel * zg__dtype_size(t->dtype);
        const char *data = (const char *)t->storage->data + (size_t)t->offset * zg__dtype_size(t->dtype);
        ok = nb == 0 || fwrite(data, 1, nb, af.f) == nb;
    }
    zg__sb_free(&h);
    return zg__atomic_commit(&af, ok);
}
