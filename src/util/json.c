/* Strict recursive-descent JSON reader (see json.h). Every error names the
 * byte offset where parsing stopped, so a corrupt file header can be found
 * with a hex dump. The same functions build a tree (a node to fill), only
 * check the syntax (no node: nothing is allocated) and serve the cursor. */
#include "json.h"
#include "util_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef zg__json_cursor parser;

static int fail(parser *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static int fail(parser *p, const char *fmt, ...) {
    int k = snprintf(p->err, p->err_len, "byte %zu: ", p->pos);
    if (k >= 0 && (size_t)k < p->err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err + k, p->err_len - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* The character at pos, for messages: printable ASCII as is, else hex. */
static const char *char_desc(const parser *p, char *buf, size_t n) {
    if (p->pos >= p->n) return "end of input";
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c >= 0x20 && c < 0x7f)
        snprintf(buf, n, "'%c'", c);
    else
        snprintf(buf, n, "byte 0x%02x", c);
    return buf;
}

static int unexpected(parser *p, const char *what) {
    char b[16];
    return fail(p, "expected %s, found %s", what, char_desc(p, b, sizeof b));
}

static void skip_ws(parser *p) {
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int hex4(parser *p, size_t at, unsigned *out) {
    if (p->n - at < 4) return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[at + (size_t)i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* The escape \e's character, or -1 for \u and invalid escapes. */
static int simple_escape(char e) {
    switch (e) {
    case '"': return '"';
    case '\\': return '\\';
    case '/': return '/';
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    default: return -1;
    }
}

/* A \u escape (with its low surrogate) at pos: the code point in *cp. */
static int unicode_escape(parser *p, size_t end, unsigned *cp) {
    if (hex4(p, p->pos + 2, cp)) return fail(p, "invalid \\u escape (needs 4 hex digits)");
    if (*cp >= 0xdc00 && *cp <= 0xdfff) return fail(p, "unpaired low surrogate \\u%04x", *cp);
    if (*cp >= 0xd800 && *cp <= 0xdbff) {
        unsigned lo;
        if (p->pos + 12 > end || p->s[p->pos + 6] != '\\' || p->s[p->pos + 7] != 'u' ||
            hex4(p, p->pos + 8, &lo) || lo < 0xdc00 || lo > 0xdfff)
            return fail(p, "high surrogate \\u%04x not followed by a low surrogate", *cp);
        *cp = 0x10000 + ((*cp - 0xd800) << 10) + (lo - 0xdc00);
        p->pos += 6;
    }
    p->pos += 4;
    return 0;
}

/* A string starting at the opening quote; the decoded text is malloc'd
 * into *out, or only checked (nothing allocated) when out is NULL. */
static int parse_string(parser *p, char **out, size_t *out_len) {
    size_t start = ++p->pos; /* after the quote */
    size_t end = start;
    while (end < p->n && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->n) return fail(p, "unterminated string");
    if (!zg__utf8_valid(p->s + start, end - start)) return fail(p, "string is not valid UTF-8");
    /* Decoding never makes the text longer: an escape of k bytes gives at
     * most k bytes of UTF-8. */
    char *o = NULL, u[4];
    if (out && !(o = zg__malloc(end - start + 1))) return fail(p, "out of memory");
    size_t k = 0;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c < 0x20) {
            free(o);
            return fail(p, "control character 0x%02x in a string (must be escaped)", c);
        }
        if (c != '\\') {
            if (o) o[k] = (char)c;
            k++;
            p->pos++;
            continue;
        }
        int e = simple_escape(p->s[p->pos + 1]);
        unsigned cp = 0;
        if (e >= 0) {
            if (o) o[k] = (char)e;
            k++;
            p->pos += 2;
        } else if (p->s[p->pos + 1] == 'u') {
            if (unicode_escape(p, end, &cp)) {
                free(o);
                return -1;
            }
            k += zg__utf8_put(o ? o + k : u, cp);
            p->pos += 2;
        } else {
            free(o);
            p->pos++;
            char b[16];
            return fail(p, "invalid escape \\%s", char_desc(p, b, sizeof b));
        }
    }
    p->pos = end + 1;
    if (o) {
        o[k] = '\0';
        *out = o;
        *out_len = k;
    }
    return 0;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static int parse_number(parser *p, zg__json *v) {
    size_t start = p->pos;
    bool neg = false;
    if (p->s[p->pos] == '-') {
        neg = true;
        p->pos++;
    }
    if (p->pos >= p->n || !is_digit(p->s[p->pos])) return unexpected(p, "a digit");
    /* Magnitude in uint64 while it fits. */
    uint64_t mag = 0;
    bool overflow = false;
    if (p->s[p->pos] == '0') {
        p->pos++;
        if (p->pos < p->n && is_digit(p->s[p->pos])) return fail(p, "leading zeros are not allowed");
    } else {
        while (p->pos < p->n && is_digit(p->s[p->pos])) {
            unsigned d = (unsigned)(p->s[p->pos] - '0');
            if (mag > (UINT64_MAX - d) / 10) overflow = true;
            else mag = mag * 10 + d;
            p->pos++;
        }
    }
    bool integer = true;
    if (p->pos < p->n && p->s[p->pos] == '.') {
        integer = false;
        p->pos++;
        if (p->pos >= p->n || !is_digit(p->s[p->pos])) return unexpected(p, "a digit after '.'");
        while (p->pos < p->n && is_digit(p->s[p->pos])) p->pos++;
    }
    if (p->pos < p->n && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        integer = false;
        p->pos++;
        if (p->pos < p->n && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
        if (p->pos >= p->n || !is_digit(p->s[p->pos])) return unexpected(p, "a digit in the exponent");
        while (p->pos < p->n && is_digit(p->s[p->pos])) p->pos++;
    }
    v->type = ZG_JSON_NUMBER;
    v->num_text = p->s + start;
    v->num_len = p->pos - start;
    v->is_integer = integer;
    if (integer && !overflow) {
        if (!neg && mag <= (uint64_t)INT64_MAX) {
            v->fits_int64 = true;
            v->integer = (int64_t)mag;
        } else if (neg && mag <= (uint64_t)INT64_MAX + 1) {
            v->fits_int64 = true;
            v->integer = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
        }
    }
    return 0;
}

static int parse_literal(parser *p, const char *word, zg__json *v, zg__json_type t, bool b) {
    size_t n = strlen(word);
    if (p->n - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) return unexpected(p, "a JSON value");
    p->pos += n;
    if (v) {
        v->type = t;
        v->boolean = b;
    }
    return 0;
}

static int parse_value(parser *p, zg__json *v, int depth);

/* Appends a zeroed item to an array/object, growing it geometrically;
 * NULL when out of memory or over the budget of nodes (*over). */
static zg__json *push_item(parser *p, zg__json *v, int *cap, bool *over) {
    *over = p->nodes_left == 0;
    if (*over) return NULL;
    p->nodes_left--;
    if (v->n == *cap) {
        int nc = *cap ? *cap * 2 : 4;
        zg__json *items = zg__realloc(v->items, (size_t)nc * sizeof *items);
        if (!items) return NULL;
        v->items = items;
        if (v->type == ZG_JSON_OBJECT) {
            char **keys = zg__realloc(v->keys, (size_t)nc * sizeof *keys);
            if (keys) v->keys = keys;
            size_t *lens = keys ? zg__realloc(v->key_lens, (size_t)nc * sizeof *lens) : NULL;
            if (lens) v->key_lens = lens;
            if (!keys || !lens) return NULL;
        }
        *cap = nc;
    }
    zg__json *it = &v->items[v->n];
    memset(it, 0, sizeof *it);
    if (v->type == ZG_JSON_OBJECT) {
        v->keys[v->n] = NULL;
        v->key_lens[v->n] = 0;
    }
    v->n++;
    return it;
}

/* The next item of a container: a new node of v, or (checking only, v
 * NULL) none. -1 when it cannot be had. */
static int next_item(parser *p, zg__json *v, int *cap, zg__json **it) {
    *it = NULL;
    if (!v) return 0;
    bool over;
    *it = push_item(p, v, cap, &over);
    if (over) return fail(p, "more than %zu JSON values (the limit for this text)", p->max_nodes);
    return *it ? 0 : fail(p, "out of memory");
}

/* An array (into v, or only checked when v is NULL). */
static int parse_array(parser *p, zg__json *v, int depth) {
    if (v) v->type = ZG_JSON_ARRAY;
    int cap = 0;
    p->pos++; /* '[' */
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == ']') {
        p->pos++;
        return 0;
    }
    for (;;) {
        zg__json *it;
        if (next_item(p, v, &cap, &it) || parse_value(p, it, depth + 1)) return -1;
        skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->n && p->s[p->pos] == ']') {
            p->pos++;
            return 0;
        }
        return unexpected(p, "',' or ']' in an array");
    }
}

/* An object (into v, or only checked when v is NULL). */
static int parse_object(parser *p, zg__json *v, int depth) {
    if (v) v->type = ZG_JSON_OBJECT;
    int cap = 0;
    p->pos++; /* '{' */
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == '}') {
        p->pos++;
        return 0;
    }
    for (;;) {
        skip_ws(p);
        if (p->pos >= p->n || p->s[p->pos] != '"') return unexpected(p, "a string key in an object");
        zg__json *it;
        if (next_item(p, v, &cap, &it)) return -1;
        if (parse_string(p, v ? &v->keys[v->n - 1] : NULL, v ? &v->key_lens[v->n - 1] : NULL)) return -1;
        skip_ws(p);
        if (p->pos >= p->n || p->s[p->pos] != ':') return unexpected(p, "':' after an object key");
        p->pos++;
        if (parse_value(p, it, depth + 1)) return -1;
        skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->n && p->s[p->pos] == '}') {
            p->pos++;
            return 0;
        }
        return unexpected(p, "',' or '}' in an object");
    }
}

/* A value into v, or only checked (nothing allocated) when v is NULL. */
static int parse_value(parser *p, zg__json *v, int depth) {
    if (depth > ZG_JSON_MAX_DEPTH) return fail(p, "nesting deeper than %d levels", ZG_JSON_MAX_DEPTH);
    skip_ws(p);
    if (p->pos >= p->n) return fail(p, "unexpected end of input");
    char c = p->s[p->pos];
    switch (c) {
    case '{': return parse_object(p, v, depth);
    case '[': return parse_array(p, v, depth);
    case '"':
        if (!v) return parse_string(p, NULL, NULL);
        v->type = ZG_JSON_STRING;
        return parse_string(p, &v->str, &v->len);
    case 't': return parse_literal(p, "true", v, ZG_JSON_BOOL, true);
    case 'f': return parse_literal(p, "false", v, ZG_JSON_BOOL, false);
    case 'n': return parse_literal(p, "null", v, ZG_JSON_NULL, false);
    default:
        if (c == '-' || is_digit(c)) {
            zg__json num;
            return parse_number(p, v ? v : &num);
        }
        return unexpected(p, "a JSON value");
    }
}

static void free_contents(zg__json *v) {
    if (v->type == ZG_JSON_STRING) free(v->str);
    if (v->type == ZG_JSON_ARRAY || v->type == ZG_JSON_OBJECT) {
        for (int i = 0; i < v->n; i++) {
            free_contents(&v->items[i]);
            if (v->keys) free(v->keys[i]);
        }
        free(v->items);
        free(v->keys);
        free(v->key_lens);
    }
}

void zg__json_free(zg__json *v) {
    if (!v) return;
    free_contents(v);
    free(v);
}

/* Only whitespace may follow the document. */
static int parse_end(parser *p) {
    skip_ws(p);
    return p->pos < p->n ? unexpected(p, "the end of the JSON text") : 0;
}

int zg__json_parse(const char *text, size_t len, size_t max_nodes, zg__json **out, char *err, size_t err_len) {
    *out = NULL;
    parser p = {.s = text, .n = len, .err = err, .err_len = err_len, .max_nodes = max_nodes, .nodes_left = max_nodes};
    zg__json *v = zg__calloc(1, sizeof *v);
    if (!v) return fail(&p, "out of memory");
    if (parse_value(&p, v, 0) || parse_end(&p)) {
        zg__json_free(v);
        return -1;
    }
    *out = v;
    return 0;
}

int zg__json_validate(const char *text, size_t len, char *err, size_t err_len) {
    parser p = {.s = text, .n = len, .err = err, .err_len = err_len};
    return parse_value(&p, NULL, 0) || parse_end(&p) ? -1 : 0;
}

/* ---- the cursor ------------------------------------------------------------ */

void zg__jc_init(zg__json_cursor *c, const char *text, size_t len, char *err, size_t err_len) {
    *c = (zg__json_cursor){.s = text, .n = len, .err = err, .err_len = err_len};
}

zg__json_type zg__jc_peek(zg__json_cursor *c) {
    skip_ws(c);
    switch (c->pos < c->n ? c->s[c->pos] : '\0') {
    case '{': return ZG_JSON_OBJECT;
    case '[': return ZG_JSON_ARRAY;
    case '"': return ZG_JSON_STRING;
    case 't':
    case 'f': return ZG_JSON_BOOL;
    case 'n': return ZG_JSON_NULL;
    default: return ZG_JSON_NUMBER;
    }
}

int zg__jc_enter(zg__json_cursor *c) {
    skip_ws(c);
    if (c->pos >= c->n || (c->s[c->pos] != '{' && c->s[c->pos] != '[')) return unexpected(c, "'{' or '['");
    c->pos++;
    c->first = true;
    return 0;
}

int zg__jc_more(zg__json_cursor *c, bool *more) {
    skip_ws(c);
    char ch = c->pos < c->n ? c->s[c->pos] : '\0';
    bool first = c->first;
    c->first = false;
    *more = false;
    if (ch == '}' || ch == ']') {
        c->pos++;
        return 0;
    }
    if (first) {
        *more = true;
        return 0;
    }
    if (ch != ',') return unexpected(c, "',' or the end of the object or array");
    c->pos++;
    *more = true;
    return 0;
}

int zg__jc_key(zg__json_cursor *c, char **key, size_t *len) {
    *key = NULL;
    skip_ws(c);
    if (c->pos >= c->n || c->s[c->pos] != '"') return unexpected(c, "a string key in an object");
    if (parse_string(c, key, len)) return -1;
    skip_ws(c);
    if (c->pos >= c->n || c->s[c->pos] != ':') {
        free(*key);
        *key = NULL;
        return unexpected(c, "':' after an object key");
    }
    c->pos++;
    return 0;
}

int zg__jc_string(zg__json_cursor *c, char **s, size_t *len) {
    *s = NULL;
    skip_ws(c);
    if (c->pos >= c->n || c->s[c->pos] != '"') return unexpected(c, "a string");
    return parse_string(c, s, len);
}

int zg__jc_number(zg__json_cursor *c, zg__json *num) {
    memset(num, 0, sizeof *num);
    skip_ws(c);
    return parse_number(c, num);
}

int zg__jc_skip(zg__json_cursor *c) { return parse_value(c, NULL, 0); }

/* ---- duplicate keys -------------------------------------------------------- */

/* Keys compared as byte strings of their decoded lengths (a key may hold
 * a NUL). */
typedef struct {
    const char *s;
    size_t n;
} key_ref;

static int cmp_key(const void *a, const void *b) {
    const key_ref *x = a, *y = b;
    int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
    return c ? c : (x->n > y->n) - (x->n < y->n);
}

int zg__json_duplicate_key(const zg__json *obj, const char **dup) {
    *dup = NULL;
    if (obj->type != ZG_JSON_OBJECT || obj->n < 2) return 0;
    key_ref *k = zg__malloc((size_t)obj->n * sizeof *k);
    if (!k) return -1;
    for (int i = 0; i < obj->n; i++) k[i] = (key_ref){obj->keys[i], obj->key_lens[i]};
    qsort(k, (size_t)obj->n, sizeof *k, cmp_key);
    for (int i = 1; i < obj->n && !*dup; i++)
        if (cmp_key(&k[i - 1], &k[i]) == 0) *dup = k[i].s;
    free(k);
    return 0;
}

const char *zg__json_type_name(zg__json_type t) {
    switch (t) {
    case ZG_JSON_NULL: return "null";
    case ZG_JSON_BOOL: return "a boolean";
    case ZG_JSON_NUMBER: return "a number";
    case ZG_JSON_STRING: return "a string";
    case ZG_JSON_ARRAY: return "an array";
    case ZG_JSON_OBJECT: return "an object";
    }
    return "?";
}
