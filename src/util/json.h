/* A small strict JSON reader (RFC 8259) for file headers: it parses a whole
 * document into a tree and reports the first error with its byte offset.
 * Strings are decoded to UTF-8; numbers keep their text and, when they are
 * integers that fit, their int64 value. Object keys keep their order, and
 * duplicates are kept too (the caller decides whether they are an error). */
#ifndef ZG_IO_JSON_H
#define ZG_IO_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    ZG_JSON_NULL,
    ZG_JSON_BOOL,
    ZG_JSON_NUMBER,
    ZG_JSON_STRING,
    ZG_JSON_ARRAY,
    ZG_JSON_OBJECT,
} zg__json_type;

typedef struct zg__json zg__json;
struct zg__json {
    zg__json_type type;
    bool boolean;
    /* NUMBER: the literal as written (points into the parsed text), whether
     * it has no fraction or exponent, and its value if it fits in int64. */
    const char *num_text;
    size_t num_len;
    bool is_integer;
    bool fits_int64;
    int64_t integer;
    /* STRING: decoded UTF-8, NUL-terminated; len excludes the terminator
     * (a "\u0000" escape makes strlen(str) < len). */
    char *str;
    size_t len;
    /* ARRAY / OBJECT: n items; keys[i] (with key_lens[i]) for objects. */
    int n;
    zg__json *items;
    char **keys;
    size_t *key_lens;
};

/* Nesting deeper than this is refused (bounds the recursion). */
#define ZG_JSON_MAX_DEPTH 64

/* Parses text[0..len) (which need not be NUL-terminated) into *out. On an
 * error returns -1, sets *out to NULL and writes "byte N: problem" to err.
 * The NUMBER nodes point into `text`, which must outlive the tree. */
int zg__json_parse(const char *text, size_t len, zg__json **out, char *err, size_t err_len);
void zg__json_free(zg__json *v);
/* "object", "string", ... for messages. */
const char *zg__json_type_name(zg__json_type t);
/* Whether s[0..n) is valid UTF-8 (no overlongs, surrogates or > U+10FFFF). */
bool zg__utf8_valid(const char *s, size_t n);

#endif
