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

/* The largest header read or written: 32 MiB. The format allows 100 MB,
 * but zgrad's own headers are far smaller (a model's: ~100 bytes per
 * tensor; a training checkpoint's metrics history: ~250 bytes per epoch,
 * 25 MB at the 100000 epochs a run may have), and the largest published
 * checkpoints need a few MB. The header text is read into memory; what
 * parsing keeps besides it is linear in the number of tensors. */
#define ZG_ST_MAX_HEADER ((uint64_t)32 << 20)

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

/* One tensor of the header. */
typedef struct {
    char *name; /* decoded, malloc'd */
    zg_dtype dtype;
    int ndim;
    int64_t shape[ZG_MAX_DIMS];
    uint64_t begin, end;
} entry;

/* What the header holds, read value by value (never as a tree): the
 * entries in header order and the metadata. Its memory is the entries and
 * the strings, linear in the number of tensors. */
typedef struct {
    entry *e;
    int n, cap;
    char **meta_keys, **meta_values;
    int n_meta, cap_keys, cap_values;
} header;

static void header_free(header *h) {
    for (int i = 0; i < h->n; i++) free(h->e[i].name);
    for (int i = 0; i < h->n_meta; i++) {
        free(h->meta_keys[i]);
        free(h->meta_values[i]);
    }
    free(h->e);
    free(h->meta_keys);
    free(h->meta_values);
}

/* Room for element n of a malloc'd array of *cap elements (doubling). */
static bool reserve(void **a, size_t elem, int n, int *cap) {
    if (n < *cap) return true;
    int nc = *cap ? 2 * *cap : 16;
    void *g = zg__realloc(*a, (size_t)nc * elem);
    if (!g) return false;
    *a = g;
    *cap = nc;
    return true;
}

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

/* A cursor call failed on text the validation accepted: memory ran out. */
static void *cursor_fail(const char *path, const zg__json_cursor *c) {
    if (strstr(c->err, "out of memory")) return RFAIL_MEM("out of memory reading the header");
    return RFAIL("header JSON error at %s", c->err);
}

/* Item i of a tensor's shape or data_offsets: a non-negative integer. */
static void *read_uint(const char *path, const char *name, const char *what, int i, zg__json_cursor *c,
                       uint64_t *out) {
    char b[64];
    zg__json v = {.type = zg__jc_peek(c)};
    if (v.type == ZG_JSON_NUMBER && zg__jc_number(c, &v)) return cursor_fail(path, c);
    if (!json_uint(&v, out))
        return RFAIL("tensor '%s': %s entry %d is %s, not a non-negative integer", name, what, i,
                     json_desc(&v, b, sizeof b));
    return out;
}

static void *read_dtype(const char *path, zg__json_cursor *c, entry *e) {
    zg__json_type t = zg__jc_peek(c);
    if (t != ZG_JSON_STRING) return RFAIL("tensor '%s': dtype is %s, not a string", e->name, zg__json_type_name(t));
    char *s;
    size_t len;
    if (zg__jc_string(c, &s, &len)) return cursor_fail(path, c);
    void *ok = e;
    if (strcmp(s, "F32") == 0)
        e->dtype = ZG_FLOAT32;
    else if (strcmp(s, "I64") == 0)
        e->dtype = ZG_INT64;
    else if (known_dtype(s))
        ok = RFAIL("tensor '%s': dtype %s is not supported (zgrad reads F32 and I64)", e->name, s);
    else
        ok = RFAIL("tensor '%s': unknown dtype '%s' (zgrad reads F32 and I64)", e->name, s);
    free(s);
    return ok;
}

/* The shape, refused at its first dimension too many: reading a shape
 * costs its ZG_MAX_DIMS numbers at most, however long the array. */
static void *read_shape(const char *path, zg__json_cursor *c, entry *e) {
    zg__json_type t = zg__jc_peek(c);
    if (t != ZG_JSON_ARRAY) return RFAIL("tensor '%s': shape is %s, not an array", e->name, zg__json_type_name(t));
    if (zg__jc_enter(c)) return cursor_fail(path, c);
    for (e->ndim = 0;; e->ndim++) {
        bool more;
        if (zg__jc_more(c, &more)) return cursor_fail(path, c);
        if (!more) return e;
        if (e->ndim == ZG_MAX_DIMS)
            return RFAIL("tensor '%s': shape has at least %d dimensions (at most %d supported)", e->name,
                         ZG_MAX_DIMS + 1, ZG_MAX_DIMS);
        uint64_t d;
        if (!read_uint(path, e->name, "shape", e->ndim, c, &d)) return NULL;
        e->shape[e->ndim] = (int64_t)d;
    }
}

static void *read_offsets(const char *path, zg__json_cursor *c, entry *e) {
    const char *two = "data_offsets must be an array of two integers [begin, end]";
    if (zg__jc_peek(c) != ZG_JSON_ARRAY) return RFAIL("tensor '%s': %s", e->name, two);
    if (zg__jc_enter(c)) return cursor_fail(path, c);
    uint64_t v[2];
    for (int i = 0;; i++) {
        bool more;
        if (zg__jc_more(c, &more)) return cursor_fail(path, c);
        if (!more && i == 2) break;
        if (!more || i == 2) return RFAIL("tensor '%s': %s", e->name, two);
        if (!read_uint(path, e->name, "data_offsets", i, c, &v[i])) return NULL;
    }
    e->begin = v[0];
    e->end = v[1];
    return e;
}

/* The data_offsets hold exactly the bytes of the dtype and shape, inside
 * the data section. */
static void *check_extent(const char *path, const entry *e, uint64_t data_len) {
    uint64_t numel = 1;
    bool huge = false;
    for (int i = 0; i < e->ndim; i++) {
        uint64_t d = (uint64_t)e->shape[i];
        /* Saturate instead of overflowing: the byte-length check below
         * rejects any product larger than the file. */
        if (d && numel > UINT64_MAX / 8 / d) huge = true;
        else numel *= d;
    }
    if (e->end < e->begin)
        return RFAIL("tensor '%s': data_offsets [%llu, %llu] are not ascending", e->name,
                     (unsigned long long)e->begin, (unsigned long long)e->end);
    uint64_t want = huge ? UINT64_MAX : numel * zg__dtype_size(e->dtype);
    if (e->end - e->begin != want) {
        char s[ZG_SHAPE_BUF];
        zg_tensor tmp = {.ndim = e->ndim};
        memcpy(tmp.shape, e->shape, sizeof e->shape);
        return RFAIL("tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but %s %s needs %s%llu", e->name,
                     (unsigned long long)e->begin, (unsigned long long)e->end,
                     (unsigned long long)(e->end - e->begin), e->dtype == ZG_FLOAT32 ? "F32" : "I64",
                     zg__shape_str(&tmp, s, sizeof s), huge ? "more than " : "",
                     (unsigned long long)(huge ? data_len : want));
    }
    if (e->end > data_len)
        return RFAIL("tensor '%s': data_offsets [%llu, %llu] lie outside the %llu-byte data section", e->name,
                     (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)data_len);
    return (void *)e;
}

/* A tensor's entry: an object of exactly dtype, shape and data_offsets. */
static void *read_entry(const char *path, zg__json_cursor *c, entry *e, uint64_t data_len) {
    static const char *const fields[3] = {"dtype", "shape", "data_offsets"};
    zg__json_type t = zg__jc_peek(c);
    if (t != ZG_JSON_OBJECT) return RFAIL("tensor '%s': entry is %s, not an object", e->name, zg__json_type_name(t));
    if (zg__jc_enter(c)) return cursor_fail(path, c);
    bool seen[3] = {false, false, false};
    for (;;) {
        bool more;
        char *k;
        size_t klen;
        if (zg__jc_more(c, &more)) return cursor_fail(path, c);
        if (!more) break;
        if (zg__jc_key(c, &k, &klen)) return cursor_fail(path, c);
        int f = 0;
        while (f < 3 && !(strlen(fields[f]) == klen && strcmp(k, fields[f]) == 0)) f++;
        if (f == 3 || seen[f]) {
            if (f == 3) RFAIL("tensor '%s': unexpected field '%s' (expected dtype, shape, data_offsets)", e->name, k);
            else RFAIL("tensor '%s': field '%s' appears twice", e->name, k);
            free(k);
            return NULL;
        }
        free(k);
        seen[f] = true;
        void *ok = f == 0 ? read_dtype(path, c, e) : f == 1 ? read_shape(path, c, e) : read_offsets(path, c, e);
        if (!ok) return NULL;
    }
    for (int f = 0; f < 3; f++)
        if (!seen[f]) return RFAIL("tensor '%s': missing field '%s'", e->name, fields[f]);
    return check_extent(path, e, data_len);
}

/* "__metadata__": an object of strings, each key once. */
static void *read_metadata(const char *path, zg__json_cursor *c, header *h) {
    zg__json_type t = zg__jc_peek(c);
    if (t != ZG_JSON_OBJECT) return RFAIL("__metadata__ is %s, not an object of strings", zg__json_type_name(t));
    if (zg__jc_enter(c)) return cursor_fail(path, c);
    for (;;) {
        bool more;
        if (zg__jc_more(c, &more)) return cursor_fail(path, c);
        if (!more) break;
        if (!reserve((void **)&h->meta_keys, sizeof *h->meta_keys, h->n_meta, &h->cap_keys) ||
            !reserve((void **)&h->meta_values, sizeof *h->meta_values, h->n_meta, &h->cap_values))
            return RFAIL_MEM("out of memory reading the header");
        char **k = &h->meta_keys[h->n_meta], **v = &h->meta_values[h->n_meta];
        size_t klen, vlen;
        *v = NULL;
        if (zg__jc_key(c, k, &klen)) return cursor_fail(path, c);
        h->n_meta++;
        t = zg__jc_peek(c);
        if (t != ZG_JSON_STRING)
            return RFAIL("__metadata__ value of '%s' is %s, not a string", *k, zg__json_type_name(t));
        if (zg__jc_string(c, v, &vlen)) return cursor_fail(path, c);
        if (strlen(*k) != klen || strlen(*v) != vlen)
            return RFAIL("__metadata__ entry '%s' contains a NUL character", *k);
    }
    bool oom;
    const char *dup = find_duplicate((const char *const *)h->meta_keys, h->n_meta, &oom);
    if (oom) return RFAIL_MEM("out of memory reading the header");
    if (dup) return RFAIL("__metadata__ key '%s' appears twice", dup);
    return h;
}

/* The header text: checked as JSON first (so that a syntax error is
 * reported as such, wherever it is), then read entry by entry. */
static void *read_header(const char *path, const char *text, size_t len, uint64_t data_len, header *h) {
    char jerr[256];
    if (zg__json_validate(text, len, jerr, sizeof jerr)) return RFAIL("header JSON error at %s", jerr);
    zg__json_cursor c;
    zg__jc_init(&c, text, len, jerr, sizeof jerr);
    bool have_meta = false;
    if (zg__jc_enter(&c)) return cursor_fail(path, &c);
    for (;;) {
        bool more;
        char *key;
        size_t klen;
        if (zg__jc_more(&c, &more)) return cursor_fail(path, &c);
        if (!more) return h;
        if (zg__jc_key(&c, &key, &klen)) return cursor_fail(path, &c);
        void *ok = h;
        if (strlen(key) != klen) {
            ok = RFAIL("tensor name '%s...' contains a NUL character", key);
        } else if (strcmp(key, "__metadata__") == 0) {
            ok = have_meta ? RFAIL("__metadata__ appears twice") : read_metadata(path, &c, h);
            have_meta = true;
        } else if (!reserve((void **)&h->e, sizeof *h->e, h->n, &h->cap)) {
            ok = RFAIL_MEM("out of memory reading the header");
        } else {
            entry *e = &h->e[h->n++];
            memset(e, 0, sizeof *e);
            e->name = key;
            key = NULL;
            ok = read_entry(path, &c, e, data_len);
        }
        free(key);
        if (!ok) return NULL;
    }
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

/* Each name once: the lookup order (st->by_name) from the names sorted
 * through pointers into an array of them, so that each sorted pointer
 * also gives the name's index. */
static void *index_names(const char *path, const header *h, zg_safetensors *st) {
    int n = h->n;
    const char **nm = zg__malloc(((size_t)n + 1) * sizeof *nm);
    const char ***ptrs = zg__malloc(((size_t)n + 1) * sizeof *ptrs);
    void *ok = nm && ptrs ? st : RFAIL_MEM("out of memory");
    for (int i = 0; ok && i < n; i++) {
        nm[i] = h->e[i].name;
        ptrs[i] = &nm[i];
    }
    if (ok) qsort(ptrs, (size_t)n, sizeof *ptrs, cmp_str_ptr);
    for (int i = 1; ok && i < n; i++)
        if (strcmp(*ptrs[i - 1], *ptrs[i]) == 0) ok = RFAIL("tensor '%s' appears twice", *ptrs[i]);
    for (int i = 0; ok && i < n; i++) st->by_name[i] = (int)(ptrs[i] - nm);
    free(nm);
    free(ptrs);
    return ok;
}

/* The 8-byte length and the header text (malloc'd, *hlen bytes). */
static char *read_framing(const char *path, FILE *f, uint64_t *hlen, uint64_t *data_len) {
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) return RFAIL_IO("cannot stat: %s", strerror(errno));
    if (!S_ISREG(sb.st_mode)) return RFAIL_IO("not a regular file");
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 8)
        return RFAIL("file is %llu bytes, too short for the 8-byte header length", (unsigned long long)size);
    unsigned char lenb[8];
    if (fread(lenb, 1, 8, f) != 8) return RFAIL_IO("cannot read the header length: %s", strerror(errno));
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | lenb[i];
    if (n > ZG_ST_MAX_HEADER)
        return RFAIL("header length %llu is absurd: zgrad reads headers of at most %llu bytes (32 MiB)",
                     (unsigned long long)n, (unsigned long long)ZG_ST_MAX_HEADER);
    if (n > size - 8)
        return RFAIL("header length %llu exceeds the %llu bytes that follow it", (unsigned long long)n,
                     (unsigned long long)(size - 8));
    char *text = zg__malloc(n ? n : 1);
    if (!text) return RFAIL_MEM("out of memory (%llu-byte header)", (unsigned long long)n);
    if (fread(text, 1, n, f) != n) {
        free(text);
        return RFAIL_IO("cannot read the %llu-byte header: %s", (unsigned long long)n, strerror(errno));
    }
    if (n == 0 || text[0] != '{') {
        free(text);
        return RFAIL("header does not start with '{' (not a JSON object)");
    }
    *hlen = n;
    *data_len = size - 8 - n;
    return text;
}

/* Everything checked: the handle takes the names and metadata, then the
 * tensors are allocated and their bytes read, in file order. */
static void *fill(const char *path, FILE *f, uint64_t hlen, header *h, entry **sorted, zg_safetensors *st) {
    int n = h->n;
    st->names = zg__calloc((size_t)n + 1, sizeof *st->names);
    st->tensors = zg__calloc((size_t)n + 1, sizeof *st->tensors);
    if (!st->names || !st->tensors) return RFAIL_MEM("out of memory");
    for (int i = 0; i < n; i++) st->names[i] = h->e[i].name;
    st->n = n;
    st->meta_keys = h->meta_keys;
    st->meta_values = h->meta_values;
    st->n_meta = h->n_meta;
    *h = (header){.e = h->e, .n = 0};
    for (int i = 0; i < n; i++) {
        const entry *e = sorted[i];
        int k = (int)(e - h->e);
        if (!(st->tensors[k] = zg_tensor_new(e->dtype, e->shape, e->ndim)) ||
            zg_tensor_set_name(st->tensors[k], st->names[k]))
            return RFAIL_MEM("out of memory for tensor '%s'", e->name);
        size_t nb = (size_t)(e->end - e->begin);
        if (nb && (fseeko(f, (off_t)(8 + hlen + e->begin), SEEK_SET) != 0 ||
                   fread(st->tensors[k]->storage->data, 1, nb, f) != nb))
            return RFAIL_IO("cannot read the data of tensor '%s' (file changed while reading?)", e->name);
    }
    return st;
}

static zg_safetensors *read_file(const char *path, FILE *f) {
    uint64_t hlen = 0, data_len = 0;
    char *text = read_framing(path, f, &hlen, &data_len);
    if (!text) return NULL;
    header h = {0};
    void *ok = read_header(path, text, hlen, data_len, &h);
    free(text);
    zg_safetensors *st = ok ? zg__calloc(1, sizeof *st) : NULL;
    entry **sorted = ok ? zg__malloc(((size_t)h.n + 1) * sizeof *sorted) : NULL;
    if (ok && st) {
        st->path = dup_str(path);
        st->by_name = zg__malloc(((size_t)h.n + 1) * sizeof *st->by_name);
    }
    if (ok && (!st || !sorted || !st->path || !st->by_name)) ok = RFAIL_MEM("out of memory");
    for (int i = 0; ok && i < h.n; i++) sorted[i] = &h.e[i];
    if (ok) ok = index_names(path, &h, st);
    if (ok) ok = check_layout(path, sorted, h.n, data_len);
    if (ok) ok = fill(path, f, hlen, &h, sorted, st);
    free(sorted);
    header_free(&h);
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

int zg__safetensors_meta_count(const zg_safetensors *st) { return st->n_meta; }

const char *zg__safetensors_meta_key(const zg_safetensors *st, int i) {
    return i >= 0 && i < st->n_meta ? st->meta_keys[i] : NULL;
}

void zg_safetensors_free(zg_safetensors *st) { st_free_partial(st); }

/* ---- writing ---------------------------------------------------------- */

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
