/* The growable string buffer of util_internal.h: one implementation for
 * every writer (JSON headers, scheduler state, metrics, plots). */
#include "util_internal.h"

/* Room for `more` bytes and a terminating NUL; false (and the buffer
 * marked failed) when memory runs out. */
static bool reserve(zg__strbuf *b, size_t more) {
    if (b->failed) return false;
    if (b->s && b->n + more < b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap <= b->n + more) cap *= 2;
    char *ns = zg__realloc(b->s, cap);
    if (!ns) {
        b->failed = true;
        return false;
    }
    b->s = ns;
    b->cap = cap;
    return true;
}

void zg__sb_put(zg__strbuf *b, const void *data, size_t n) {
    if (!reserve(b, n)) return;
    memcpy(b->s + b->n, data, n);
    b->n += n;
    b->s[b->n] = '\0';
}

void zg__sb_puts(zg__strbuf *b, const char *s) { zg__sb_put(b, s, strlen(s)); }

void zg__sb_printf(zg__strbuf *b, const char *fmt, ...) {
    for (;;) {
        if (b->failed) return;
        size_t room = b->s ? b->cap - b->n : 0;
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, room, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->failed = true;
            return;
        }
        if ((size_t)k < room) {
            b->n += (size_t)k;
            return;
        }
        if (!reserve(b, (size_t)k)) return;
    }
}

void zg__sb_json_str(zg__strbuf *b, const char *s) {
    zg__sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            zg__sb_put(b, e, 2);
        } else if (c < 0x20) {
            zg__sb_printf(b, "\\u%04x", c);
        } else {
            zg__sb_put(b, &c, 1);
        }
    }
    zg__sb_put(b, "\"", 1);
}

void zg__sb_free(zg__strbuf *b) {
    free(b->s);
    b->s = NULL;
    b->n = b->cap = 0;
    b->failed = false;
}
