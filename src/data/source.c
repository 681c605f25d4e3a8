/* Byte sources for the readers: a gzFile (zlib reads gzipped and plain
 * files alike) or a memory buffer (used by the fuzzers), with gzip errors
 * turned into one readable phrase. */
#include "data_internal.h"

#include <errno.h>
#include <stdio.h>

void zg__src_gz(zg__data_src *s, gzFile f) {
    memset(s, 0, sizeof *s);
    s->gz = f;
}

void zg__src_mem(zg__data_src *s, const void *data, size_t len) {
    memset(s, 0, sizeof *s);
    s->mem = data;
    s->len = len;
}

/* zlib prefixes its messages with the path ("path: msg"); the caller names
 * the file itself, so keep only the message. */
static const char *gz_message(const char *msg) {
    const char *m = msg, *p;
    while ((p = strstr(m, ": "))) m = p + 2;
    return m;
}

static void gz_failure(zg__data_src *s) {
    int errnum = Z_OK;
    const char *msg = gzerror(s->gz, &errnum);
    if (errnum == Z_ERRNO)
        snprintf(s->err, sizeof s->err, "read error: %s", strerror(errno));
    else if (errnum == Z_BUF_ERROR)
        snprintf(s->err, sizeof s->err, "gzip stream is truncated (unexpected end of file)");
    else if (errnum == Z_MEM_ERROR)
        snprintf(s->err, sizeof s->err, "out of memory while decompressing");
    else
        snprintf(s->err, sizeof s->err, "gzip data is corrupt (%s)", gz_message(msg));
}

/* Reads up to n bytes; returns the count, fewer than n only at the end of
 * the data, or -1 with s->err set. */
int64_t zg__src_read(zg__data_src *s, void *buf, size_t n) {
    if (!s->gz) {
        size_t k = s->len - s->pos;
        if (k > n) k = n;
        if (k) memcpy(buf, s->mem + s->pos, k);
        s->pos += k;
        return (int64_t)k;
    }
    size_t done = 0;
    while (done < n) {
        unsigned chunk = n - done > ((size_t)1 << 30) ? 1u << 30 : (unsigned)(n - done);
        int r = gzread(s->gz, (char *)buf + done, chunk);
        if (r < 0) {
            gz_failure(s);
            return -1;
        }
        done += (size_t)r;
        if ((unsigned)r < chunk) {
            /* A short read is the end of the data, unless the gzip stream
             * itself ended early (zlib then reports Z_BUF_ERROR). */
            int errnum = Z_OK;
            gzerror(s->gz, &errnum);
            if (errnum != Z_OK) {
                gz_failure(s);
                return -1;
            }
            break;
        }
    }
    return (int64_t)done;
}
