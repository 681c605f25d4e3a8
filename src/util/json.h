/* A small strict JSON reader (RFC 8259) for file headers: it parses a whole
 * document into a tree, checks one without building anything, or reads one
 * value at a time through a cursor, and reports the first error with its
 * byte offset. Strings are decoded to UTF-8; numbers keep their text and,
 * when they are integers that fit, their int64 value. Object keys keep
 * their order, and duplicates are kept too (the caller decides whether
 * they are an error). */
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
 * The NUMBER nodes point into `text`, which must outlive the tree. A node
 * costs about 100 bytes while a value can be 2 bytes of text, so the
 * caller bounds the tree: more than max_nodes values (the root not
 * counted) is an error. */
int zg__json_parse(const char *text, size_t len, size_t max_nodes, zg__json **out, char *err, size_t err_len);
/* Checks that text[0..len) is one JSON document, allocating nothing; -1
 * and "byte N: problem" in err if not. */
int zg__json_validate(const char *text, size_t len, char *err, size_t err_len);
/* Finds a key that appears twice in an object (*dup, NULL if none);
 * -1 when out of memory. */
int zg__json_duplicate_key(const zg__json *obj, const char **dup);

/* A cursor reads a document value by value, so that a reader keeps only
 * what it needs. Run it over text that zg__json_validate accepted: every
 * syntax error is then reported first, in document order, and the cursor
 * calls fail (-1, "byte N: problem" in err) only when out of memory or
 * when the caller asks for the wrong type. */
typedef struct {
    const char *s;
    size_t n, pos;
    char *err;
    size_t err_len;
    size_t max_nodes, nodes_left; /* zg__json_parse's budget */
    bool first;                   /* just entered a container */
} zg__json_cursor;

void zg__jc_init(zg__json_cursor *c, const char *text, size_t len, char *err, size_t err_len);
/* The type of the next value. */
zg__json_type zg__jc_peek(zg__json_cursor *c);
/* Enters the object or array that comes next. */
int zg__jc_enter(zg__json_cursor *c);
/* Whether the entered object or array has another item: consumes the ','
 * before it, or the closing bracket after the last one. */
int zg__jc_more(zg__json_cursor *c, bool *more);
/* An object's next key (malloc'd, decoded; *len excludes the NUL) and
 * its ':'. */
int zg__jc_key(zg__json_cursor *c, char **key, size_t *len);
/* The next value, a string (malloc'd, decoded) / a number (as a tree's
 * NUMBER node, pointing into the text). */
int zg__jc_string(zg__json_cursor *c, char **s, size_t *len);
int zg__jc_number(zg__json_cursor *c, zg__json *num);
/* Skips the next value. */
int zg__jc_skip(zg__json_cursor *c);
void zg__json_free(zg__json *v);
/* "object", "string", ... for messages. */
const char *zg__json_type_name(zg__json_type t);

#endif
