/* Strict recursive-descent JSON reader (see json.h). Every error names the
 * byte offset where parsing stopped, so a corrupt file header can be found
 * with a hex dump. */
#include "json.h"
#include "util_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *s;
    size_t n, pos;
    char *err;
    size_t err_len;
} parser;

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

bool zg__utf8_valid(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int extra;
        unsigned cp, min;
        if ((c & 0xe0) == 0xc0) {
            extra = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            extra = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            extra = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i <= (size_t)extra) return false;
        for (int k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += (size_t)extra + 1;
    }
    return true;
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

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A string starting at the opening quote; the decoded text is malloc'd. */
static int parse_string(parser *p, char **out, size_t *out_len) {
    size_t start = ++p->pos; /* after the quote */
    size_t end = start;
    while (end < p->n && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->n) return fail(p, "unterminated string");
    if (!zg__utf8_valid(p->s + start, end - start)) return fail(p, "string is not valid UTF-8");
    /* Decoding never makes the text longer: an escape of k bytes gives at
     * most k bytes of UTF-8. */
    char *o = zg__malloc(end - start + 1);
    if (!o) return fail(p, "out of memory");
    size_t k = 0;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c < 0x20) {
            free(o);
            return fail(p, "control character 0x%02x in a string (must be escaped)", c);
        }
        if (c != '\\') {
            o[k++] = (char)c;
            p->pos++;
            continue;
        }
        char e = p->s[p->pos + 1];
        unsigned cp;
        switch (e) {
        case '"': o[k++] = '"'; break;
        case '\\': o[k++] = '\\'; break;
        case '/': o[k++] = '/'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'u':
            if (hex4(p, p->pos + 2, &cp)) {
                free(o);
                return fail(p, "invalid \\u escape (needs 4 hex digits)");
            }
            if (cp >= 0xdc00 && cp <= 0xdfff) {
                free(o);
                return fail(p, "unpaired low surrogate \\u%04x", cp);
            }
            if (cp >= 0xd800 && cp <= 0xdbff) {
                unsigned lo;
                if (p->pos + 12 > end || p->s[p->pos + 6] != '\\' || p->s[p->pos + 7] != 'u' ||
                    hex4(p, p->pos + 8, &lo) || lo < 0xdc00 || lo > 0xdfff) {
                    free(o);
                    return fail(p, "high surrogate \\u%04x not followed by a low surrogate", cp);
                }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p->pos += 6;
            }
            k += put_utf8(o + k, cp);
            p->pos += 4;
            break;
        default: {
            free(o);
            p->pos++;
            char b[16];
            return fail(p, "invalid escape \\%s", char_desc(p, b, sizeof b));
        }
        }
        p->pos += 2;
    }
    o[k] = '\0';
    p->pos = end + 1;
    *out = o;
    *out_len = k;
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
    v->type = t;
    v->boolean = b;
    return 0;
}

static int parse_value(parser *p, zg__json *v, int depth);

/* Appends a zeroed item to an array/object, growing it geometrically. */
static zg__json *push_item(zg__json *v, int *cap) {
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

static int parse_array(parser *p, zg__json *v, int depth) {
    v->type = ZG_JSON_ARRAY;
    int cap = 0;
    p->pos++; /* '[' */
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == ']') {
        p->pos++;
        return 0;
    }
    for (;;) {
        zg__json *it = push_item(v, &cap);
        if (!it) return fail(p, "out of memory");
        if (parse_value(p, it, depth + 1)) return -1;
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

static int parse_object(parser *p, zg__json *v, int depth) {
    v->type = ZG_JSON_OBJECT;
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
        zg__json *it = push_item(v, &cap);
        if (!it) return fail(p, "out of memory");
        if (parse_string(p, &v->keys[v->n - 1], &v->key_lens[v->n - 1])) return -1;
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

static int parse_value(parser *p, zg__json *v, int depth) {
    if (depth > ZG_JSON_MAX_DEPTH) return fail(p, "nesting deeper than %d levels", ZG_JSON_MAX_DEPTH);
    skip_ws(p);
    if (p->pos >= p->n) return fail(p, "unexpected end of input");
    char c = p->s[p->pos];
    switch (c) {
    case '{': return parse_object(p, v, depth);
    case '[': return parse_array(p, v, depth);
    case '"':
        v->type = ZG_JSON_STRING;
        return parse_string(p, &v->str, &v->len);
    case 't': return parse_literal(p, "true", v, ZG_JSON_BOOL, true);
    case 'f': return parse_literal(p, "false", v, ZG_JSON_BOOL, false);
    case 'n': return parse_literal(p, "null", v, ZG_JSON_NULL, false);
    default:
        if (c == '-' || is_digit(c)) return parse_number(p, v);
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

int zg__json_parse(const char *text, size_t len, zg__json **out, char *err, size_t err_len) {
    *out = NULL;
    parser p = {text, len, 0, err, err_len};
    zg__json *v = zg__calloc(1, sizeof *v);
    if (!v) return fail(&p, "out of memory");
    if (parse_value(&p, v, 0)) {
        zg__json_free(v);
        return -1;
    }
    skip_ws(&p);
    if (p.pos < p.n) {
        zg__json_free(v);
        return unexpected(&p, "the end of the JSON text");
    }
    *out = v;
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
