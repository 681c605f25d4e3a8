/* Numeric CSV: one sample per line, comma-separated numbers, one column
 * holding the integer class index (or, in a table with a header row, a
 * regression target, the columns picked by their names). Lines end in \n or \r\n (the last may
 * have no end); blank lines are skipped; fields may be quoted ("1.5") and
 * padded with spaces. The file is read whole (through zlib, so a .csv.gz
 * works too) and parsed twice: the first pass checks the structure and
 * counts rows and columns, the second converts the numbers, so memory is
 * allocated once, for exactly what the file holds. Numbers are read in
 * the C locale whatever the program's locale is. */
#include "data_internal.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    const char *s;
    size_t n;
} span;

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

/* Reads the field starting at *p on the line [*p, e); advances *p past
 * its comma and sets *last when it ended the line. Returns 0, or -1 for a
 * quote without its closing quote, -2 for text after a closing quote. */
static int read_field(const char **p, const char *e, span *f, bool *last) {
    const char *q = *p;
    while (q < e && is_blank(*q)) q++;
    if (q < e && *q == '"') {
        const char *c = q + 1;
        for (;;) {
            if (c >= e) return -1;
            if (*c == '"') {
                if (c + 1 < e && c[1] == '"') { /* "" is an escaped quote */
                    c += 2;
                    continue;
                }
                break;
            }
            c++;
        }
        f->s = q + 1;
        f->n = (size_t)(c - (q + 1));
        c++;
        while (c < e && is_blank(*c)) c++;
        if (c < e && *c != ',') return -2;
        q = c;
    } else {
        const char *c = q;
        while (c < e && *c != ',') c++;
        const char *t = c;
        while (t > q && is_blank(t[-1])) t--;
        f->s = q;
        f->n = (size_t)(t - q);
        q = c;
    }
    *last = q >= e;
    *p = q < e ? q + 1 : q;
    return 0;
}

/* The next line from [*p, end): its text without the \n or \r\n. */
static bool next_line(const char **p, const char *end, const char **ls, const char **le) {
    if (*p >= end) return false;
    const char *s = *p, *nl = memchr(s, '\n', (size_t)(end - s));
    const char *e = nl ? nl : end;
    *p = nl ? nl + 1 : end;
    if (e > s && e[-1] == '\r') e--;
    *ls = s;
    *le = e;
    return true;
}

static bool line_blank(const char *s, const char *e) {
    for (; s < e; s++)
        if (!is_blank(*s)) return false;
    return true;
}

/* A field as text for messages: at most 40 characters, unprintable bytes
 * shown as '?'. */
static const char *show(span f, char *buf, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < f.n && k + 4 < n; i++) {
        if (k >= 40) {
            memcpy(buf + k, "...", 3);
            k += 3;
            break;
        }
        unsigned char c = (unsigned char)f.s[i];
        buf[k++] = c >= 32 && c < 127 ? (char)c : '?';
    }
    buf[k] = '\0';
    return buf;
}

typedef struct {
    const char *fn, *name;
    long long line;
    int col; /* 1-based */
} where;

#define FAIL_AT(w, fmt, ...)                                                                                \
    zg__fail(ZG_ERR_FORMAT, "%s: '%s': line %lld, column %d: " fmt, (w)->fn, (w)->name, (w)->line, (w)->col, \
             __VA_ARGS__)

/* Parses a whole field as a number; false if it is not one. */
static bool parse_number(span f, double *out) {
    char tmp[512];
    while (f.n && is_blank(*f.s)) f.s++, f.n--;
    while (f.n && is_blank(f.s[f.n - 1])) f.n--;
    if (f.n == 0 || f.n >= sizeof tmp) return false;
    memcpy(tmp, f.s, f.n);
    tmp[f.n] = '\0';
    char *end;
    errno = 0;
    double d = strtod(tmp, &end);
    if (end != tmp + f.n) return false; /* also catches an embedded NUL */
    *out = d;
    return true;
}

static int parse_feature(const where *w, span f, float *out) {
    double d;
    char buf[48];
    if (!parse_number(f, &d)) {
        if (f.n == 0) return FAIL_AT(w, "%s", "empty field, expected a number");
        return FAIL_AT(w, "'%s' is not a number", show(f, buf, sizeof buf));
    }
    if (isnan(d) || isinf(d)) return FAIL_AT(w, "'%s': NaN or infinite values are not allowed", show(f, buf, sizeof buf));
    float v = (float)d;
    if (isinf(v)) return FAIL_AT(w, "'%s' is out of the float32 range", show(f, buf, sizeof buf));
    *out = v;
    return ZG_OK;
}

static int parse_label(const where *w, span f, int64_t *out) {
    double d;
    char buf[48];
    if (!parse_number(f, &d)) {
        if (f.n == 0) return FAIL_AT(w, "%s", "empty label field, expected a class index");
        return FAIL_AT(w, "label '%s' is not a number", show(f, buf, sizeof buf));
    }
    if (!(d == floor(d)) || isinf(d))
        return FAIL_AT(w, "label '%s' is not an integer class index", show(f, buf, sizeof buf));
    if (d < 0) return FAIL_AT(w, "label '%s' is negative (class indices start at 0)", show(f, buf, sizeof buf));
    if (d > INT32_MAX) return FAIL_AT(w, "label '%s' is too large (max %d)", show(f, buf, sizeof buf), INT32_MAX);
    *out = (int64_t)d;
    return ZG_OK;
}

/* Pass 1: structure. Sets *rows, *cols and the 1-based line number of
 * the line that fixed the column count. */
static int scan(const char *fn, const char *name, const char *buf, const char *end, bool header, int64_t *rows,
                int64_t *cols, long long *cols_line) {
    const char *p = buf, *ls, *le;
    long long line = 0;
    bool header_done = !header;
    *rows = 0;
    *cols = -1;
    while (next_line(&p, end, &ls, &le)) {
        line++;
        if (line_blank(ls, le)) continue;
        int64_t n = 0;
        bool last = false;
        const char *q = ls;
        while (!last) {
            span f;
            int rc = read_field(&q, le, &f, &last);
            n++;
            if (rc == -1)
                return zg__fail(ZG_ERR_FORMAT, "%s: '%s': line %lld, column %lld: quote without a closing quote",
                                fn, name, line, (long long)n);
            if (rc == -2)
                return zg__fail(ZG_ERR_FORMAT, "%s: '%s': line %lld, column %lld: text after a closing quote", fn,
                                name, line, (long long)n);
        }
        if (*cols < 0) {
            *cols = n;
            *cols_line = line;
        } else if (n != *cols) {
            return zg__fail(ZG_ERR_FORMAT, "%s: '%s': line %lld has %lld columns, expected %lld (as %s line %lld)",
                            fn, name, line, (long long)n, (long long)*cols, header ? "the header on" : "on",
                            *cols_line);
        }
        if (!header_done)
            header_done = true;
        else
            (*rows)++;
    }
    return ZG_OK;
}

/* Which column is what: col_feat[c] is column c's feature index (-1: not
 * a feature), target the target's column (-1: none). */
typedef struct {
    int64_t *col_feat;
    int64_t nf, target;
    zg_task task; /* CLASSIFY or REGRESS once decided */
} plan;

static int parse_target(const where *w, const plan *p, span f, int64_t row, int64_t *y, float *t) {
    if (p->task == ZG_TASK_CLASSIFY) return parse_label(w, f, &y[row]);
    return parse_feature(w, f, &t[row]);
}

static int convert(const char *fn, const char *name, const char *buf, const char *end, bool header, int64_t cols,
                   const plan *p, float *x, int64_t *y, float *t) {
    const char *q, *ls, *le;
    where w = {fn, name, 0, 0};
    bool header_done = !header;
    int64_t row = 0;
    for (const char *at = buf; next_line(&at, end, &ls, &le);) {
        w.line++;
        if (line_blank(ls, le)) continue;
        if (!header_done) {
            header_done = true;
            continue;
        }
        q = ls;
        bool last = false;
        float *xr = x + row * p->nf;
        for (int64_t c = 0; c < cols; c++) {
            span f;
            read_field(&q, le, &f, &last); /* structure checked by scan() */
            w.col = (int)(c + 1);
            int rc = p->col_feat[c] >= 0 ? parse_feature(&w, f, &xr[p->col_feat[c]])
                     : c == p->target   ? parse_target(&w, p, f, row, y, t)
                                        : ZG_OK;
            if (rc < 0) return rc;
        }
        row++;
    }
    return ZG_OK;
}

/* ZG_TASK_AUTO: classify when every target field is an integer (a field
 * that is no number at all is left to convert() to report). */
static zg_task decide_task(const char *buf, const char *end, bool header, int64_t target) {
    const char *ls, *le;
    bool header_done = !header;
    for (const char *at = buf; next_line(&at, end, &ls, &le);) {
        if (line_blank(ls, le)) continue;
        if (!header_done) {
            header_done = true;
            continue;
        }
        const char *q = ls;
        bool last = false;
        span f = {0};
        for (int64_t c = 0; c <= target; c++) read_field(&q, le, &f, &last);
        double d;
        if (parse_number(f, &d) && !(d == floor(d))) return ZG_TASK_REGRESS;
    }
    return ZG_TASK_CLASSIFY;
}

/* The header's fields, unquoted ("" is a quote), into names[0..cols). */
static char **header_names(const char *buf, const char *end, int64_t cols) {
    const char *ls, *le, *at = buf;
    while (next_line(&at, end, &ls, &le) && line_blank(ls, le)) {}
    char **names = zg__calloc((size_t)cols, sizeof *names);
    const char *q = ls;
    bool last = false;
    for (int64_t c = 0; names && c < cols; c++) {
        span f;
        read_field(&q, le, &f, &last);
        char *n = zg__malloc(f.n + 1);
        if (!n) {
            zg__free_strings(names, c);
            return NULL;
        }
        size_t k = 0;
        for (size_t i = 0; i < f.n; i++) {
            n[k++] = f.s[i];
            if (f.s[i] == '"' && i + 1 < f.n && f.s[i + 1] == '"') i++;
        }
        n[k] = '\0';
        names[c] = n;
    }
    return names;
}

/* The column called `name`: its index, -1 when there is none, -2 (an
 * error set) when two are. */
static int64_t find_column(const char *fn, const char *file, char *const *names, int64_t cols, const char *name) {
    int64_t found = -1;
    for (int64_t c = 0; c < cols; c++) {
        if (strcmp(names[c], name)) continue;
        if (found >= 0) {
            zg__fail(ZG_ERR_FORMAT, "%s: '%s': columns %lld and %lld are both called '%s'", fn, file,
                     (long long)found + 1, (long long)c + 1, name);
            return -2;
        }
        found = c;
    }
    return found;
}

/* "a, b, c" (the first few) for messages. */
static void list_names(char *out, size_t n, char *const *names, int64_t cols) {
    size_t k = 0;
    out[0] = '\0';
    for (int64_t c = 0; c < cols && k + 1 < n; c++) {
        if (c == 8) {
            snprintf(out + k, n - k, ", ...");
            break;
        }
        k += (size_t)snprintf(out + k, n - k, "%s'%.40s'", c ? ", " : "", names[c]);
    }
}

/* The target column: a header name, else digits as a 0-based index. */
static int64_t target_column(const char *fn, const char *file, char *const *names, int64_t cols, const char *t) {
    int64_t c = find_column(fn, file, names, cols, t);
    if (c != -1) return c;
    char *e;
    errno = 0;
    long long v = t[0] >= '0' && t[0] <= '9' ? strtoll(t, &e, 10) : -1;
    if (v >= 0 && !*e && !errno && v < cols) return v;
    char list[400];
    list_names(list, sizeof list, names, cols);
    if (v >= 0 && !*e && !errno)
        zg__fail(ZG_ERR_ARG, "%s: '%s': target column %lld out of range for %lld columns (0-based)", fn, file, v,
                 (long long)cols);
    else
        zg__fail(ZG_ERR_ARG, "%s: '%s': no column '%s' in the header (it has %s)", fn, file, t, list);
    return -2;
}

/* The plan from the header and the options (names: the header's, NULL
 * for the legacy reader, whose target is label_col). */
static int make_plan(const char *fn, const char *file, char *const *names, int64_t cols, const zg_csv_opts *o,
                     int64_t label_col, plan *p) {
    p->target = o ? -1 : label_col;
    p->task = o ? o->task : ZG_TASK_CLASSIFY;
    if (o && o->target && (p->target = target_column(fn, file, names, cols, o->target)) < 0) return ZG_ERR_ARG;
    if (!(p->col_feat = zg__malloc((size_t)cols * sizeof *p->col_feat)))
        return zg__fail(ZG_ERR_NOMEM, "%s: '%s': out of memory", fn, file);
    p->nf = 0;
    for (int64_t c = 0; c < cols; c++) p->col_feat[c] = o && o->features ? -1 : c == p->target ? -1 : p->nf++;
    for (int64_t j = 0; o && o->features && j < o->n_features; j++) {
        int64_t c = find_column(fn, file, names, cols, o->features[j]);
        if (c == -2) return ZG_ERR_FORMAT;
        if (c < 0) {
            char list[400];
            list_names(list, sizeof list, names, cols);
            return zg__fail(ZG_ERR_FORMAT, "%s: '%s': no column '%s' (a feature the model takes) in the header (it "
                            "has %s)", fn, file, o->features[j], list);
        }
        if (p->col_feat[c] >= 0)
            return zg__fail(ZG_ERR_ARG, "%s: feature '%s' is asked for twice", fn, o->features[j]);
        p->col_feat[c] = p->nf++;
    }
    if (o && !o->features && names)
        for (int64_t c = 0; c < cols; c++)
            if (c != p->target && find_column(fn, file, names, cols, names[c]) == -2) return ZG_ERR_FORMAT;
    if (p->nf == 0) return zg__fail(ZG_ERR_FORMAT, "%s: '%s': no feature columns", fn, file);
    return ZG_OK;
}

/* The data set of a checked file: features, then labels, targets or
 * neither; names from the header. */
static zg_dataset *build(const char *fn, const char *name, const char *buf, const char *end, bool header,
                         int64_t rows, int64_t cols, plan *p, char **names) {
    /* rows * nf < the number of fields <= 2 * len + rows: no overflow. */
    float *x = zg__malloc((size_t)(rows * p->nf) * sizeof *x), *t = NULL;
    int64_t *y = NULL;
    bool ok = x != NULL;
    if (ok && p->target >= 0 && p->task == ZG_TASK_REGRESS) ok = (t = zg__malloc((size_t)rows * sizeof *t)) != NULL;
    else if (ok && p->target >= 0) ok = (y = zg__malloc((size_t)rows * sizeof *y)) != NULL;
    if (!ok) {
        free(x);
        return zg__fail_null("%s: '%s': out of memory", fn, name);
    }
    /* strtod follows LC_NUMERIC; read in the C locale on this thread. */
    locale_t c_loc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    locale_t old = c_loc ? uselocale(c_loc) : (locale_t)0;
    int rc = convert(fn, name, buf, end, header, cols, p, x, y, t);
    if (c_loc) {
        uselocale(old);
        freelocale(c_loc);
    }
    if (rc < 0) {
        free(x);
        free(y);
        free(t);
        return NULL;
    }
    int64_t shape[1] = {p->nf};
    zg_dataset *ds = zg__dataset_new(fn, false, x, y, rows, shape, 1);
    if (!ds) {
        free(t);
        return NULL;
    }
    ds->buf->targets = t;
    if (!names) return ds;
    ds->buf->feature_names = zg__calloc((size_t)p->nf, sizeof(char *));
    for (int64_t c = 0; ds->buf->feature_names && c < cols; c++)
        if (p->col_feat[c] >= 0) {
            ds->buf->feature_names[p->col_feat[c]] = names[c];
            names[c] = NULL;
        }
    if (p->target >= 0) {
        ds->buf->target_name = names[p->target];
        names[p->target] = NULL;
    }
    if (!ds->buf->feature_names) {
        zg_dataset_free(ds);
        return zg__fail_null("%s: '%s': out of memory", fn, name);
    }
    return ds;
}

/* Both readers: the structure, the plan, the task, the numbers. */
static zg_dataset *parse(const char *fn, const char *name, const char *buf, size_t len, bool header,
                         const zg_csv_opts *o, int label_column) {
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) { /* a UTF-8 byte order mark */
        buf += 3;
        len -= 3;
    }
    const char *end = buf + len;
    int64_t rows, cols;
    long long cols_line = 0;
    if (scan(fn, name, buf, end, header, &rows, &cols, &cols_line) < 0) return NULL;
    if (cols < 0) return zg__fail_null("%s: '%s': empty file", fn, name);
    if (rows == 0) return zg__fail_null("%s: '%s': no data rows after the header line", fn, name);
    if (!o && cols < 2)
        return zg__fail_null("%s: '%s': 1 column: need the label column and at least one feature column", fn,
                             name);
    if (cols > INT32_MAX) return zg__fail_null("%s: '%s': %lld columns (too many)", fn, name, (long long)cols);
    int64_t lc = label_column < 0 ? cols + label_column : label_column;
    if (!o && (lc < 0 || lc >= cols))
        return zg__fail_null("%s: '%s': label column %d out of range for %lld columns", fn, name, label_column,
                             (long long)cols);
    char **names = o ? header_names(buf, end, cols) : NULL;
    if (o && !names) return zg__fail_null("%s: '%s': out of memory", fn, name);
    plan p = {0};
    zg_dataset *ds = NULL;
    if (make_plan(fn, name, names, cols, o, lc, &p) == ZG_OK) {
        if (p.target >= 0 && p.task == ZG_TASK_AUTO) p.task = decide_task(buf, end, header, p.target);
        ds = build(fn, name, buf, end, header, rows, cols, &p, names);
    }
    free(p.col_feat);
    zg__free_strings(names, o ? cols : 0);
    return ds;
}

zg_dataset *zg__csv_parse(const char *fn, const char *name, const char *buf, size_t len, int label_column,
                          bool header) {
    return parse(fn, name, buf, len, header, NULL, label_column);
}

zg_dataset *zg__csv_parse_table(const char *fn, const char *name, const char *buf, size_t len,
                                const zg_csv_opts *opts) {
    if ((int)opts->task < ZG_TASK_AUTO || (int)opts->task > ZG_TASK_REGRESS)
        return zg__fail_null("%s: unknown task %d", fn, (int)opts->task);
    if (opts->features && opts->n_features < 1) return zg__fail_null("%s: n_features must be >= 1", fn);
    for (int64_t j = 0; opts->features && j < opts->n_features; j++)
        if (!opts->features[j]) return zg__fail_null("%s: feature name %lld is NULL", fn, (long long)j);
    return parse(fn, name, buf, len, true, opts, 0);
}

/* The whole file (inflated when gzipped) into *out. */
static int read_file(const char *fn, const char *path, char **out, size_t *out_len) {
    FILE *f = fopen(path, "rb");
    if (!f) return zg__fail(ZG_ERR_IO, "%s: '%s': cannot open: %s", fn, path, strerror(errno));
    zg__data_src s;
    size_t cap = 1 << 16, len = 0;
    char *buf = zg__malloc(cap);
    bool nomem = !buf;
    int64_t r = zg__src_file(&s, f);
    while (buf && r == 0) {
        if (len == cap) {
            char *nb = cap <= SIZE_MAX / 2 ? zg__realloc(buf, cap * 2) : NULL;
            if (!nb) {
                nomem = true;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        r = zg__src_read(&s, buf + len, cap - len);
        if (r < 0) break;
        len += (size_t)r;
        if (len < cap) break; /* the end of the file */
        r = 0;
    }
    zg__src_close(&s);
    fclose(f);
    if (nomem || r < 0) {
        free(buf);
        if (nomem) return zg__fail(ZG_ERR_NOMEM, "%s: '%s': out of memory", fn, path);
        return zg__fail(ZG_ERR_FORMAT, "%s: '%s': %s", fn, path, s.err);
    }
    *out = buf;
    *out_len = len;
    return ZG_OK;
}

zg_dataset *zg_dataset_load_csv(const char *path, int label_column, bool header) {
    const char *fn = "zg_dataset_load_csv";
    if (!path) return zg__fail_null("%s: path is NULL", fn);
    char *buf;
    size_t len;
    if (read_file(fn, path, &buf, &len)) return NULL;
    zg_dataset *ds = zg__csv_parse(fn, path, buf, len, label_column, header);
    free(buf);
    return ds;
}

zg_dataset *zg_dataset_load_table(const char *path, const zg_csv_opts *opts) {
    const char *fn = "zg_dataset_load_table";
    if (!path || !opts) return zg__fail_null("%s: %s is NULL", fn, path ? "opts" : "path");
    char *buf;
    size_t len;
    if (read_file(fn, path, &buf, &len)) return NULL;
    zg_dataset *ds = zg__csv_parse_table(fn, path, buf, len, opts);
    free(buf);
    return ds;
}
