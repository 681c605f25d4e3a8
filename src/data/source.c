/* Byte sources for the readers: a file, gzipped or plain, or a memory
 * buffer (used by the fuzzers), with failures turned into one readable
 * phrase.
 *
 * A file that starts with the gzip magic (1f 8b) is a series of gzip
 * members, inflated one after another; any other file is read as it is.
 * As gzip(1) does, members may follow each other (RFC 1952 defines a gzip
 * file as a series of members; pigz and `cat a.gz b.gz` write such files)
 * and their data is concatenated. Unlike gzip(1), which warns "trailing
 * garbage ignored" and decompresses anyway, bytes after a member that do
 * not start another member are an error: such a file was damaged or
 * appended to, and its data cannot be trusted. */
#include "data_internal.h"

#include <errno.h>
#include <stdio.h>

/* Compressed bytes read from the file at a time. */
#define SRC_CHUNK ((size_t)1 << 17)

void zg__src_mem(zg__data_src *s, const void *data, size_t len) {
    memset(s, 0, sizeof *s);
    s->mem = data;
    s->len = len;
}

/* Moves the unread input to the start of the buffer and reads more of the
 * file after it. false (with s->err) on a read error. */
static bool refill(zg__data_src *s) {
    size_t left = s->z.avail_in;
    if (left && s->z.next_in != s->in) memmove(s->in, s->z.next_in, left);
    size_t got = s->eof ? 0 : fread(s->in + left, 1, SRC_CHUNK - left, s->f);
    if (got < SRC_CHUNK - left) {
        if (ferror(s->f)) {
            snprintf(s->err, sizeof s->err, "read error: %s", strerror(errno ? errno : EIO));
            return false;
        }
        s->eof = true;
    }
    s->z.next_in = s->in;
    s->z.avail_in = (uInt)(left + got);
    s->consumed += got;
    return true;
}

int zg__src_file(zg__data_src *s, FILE *f) {
    memset(s, 0, sizeof *s);
    s->f = f;
    s->in = zg__malloc(SRC_CHUNK);
    if (!s->in) {
        snprintf(s->err, sizeof s->err, "out of memory");
        return -1;
    }
    errno = 0;
    if (!refill(s)) return -1;
    s->gz = s->z.avail_in >= 2 && s->in[0] == 0x1f && s->in[1] == 0x8b;
    /* 16 + 15: a gzip wrapper (header and CRC-32 trailer checked), the
     * largest window. */
    if (s->gz && inflateInit2(&s->z, 16 + 15) != Z_OK) {
        snprintf(s->err, sizeof s->err, "out of memory while decompressing");
        return -1;
    }
    return 0;
}

void zg__src_close(zg__data_src *s) {
    if (s->gz) inflateEnd(&s->z);
    free(s->in);
    s->in = NULL;
    s->gz = false;
}

/* Plain file bytes: first what the start read buffered, then the file. */
static int64_t plain_read(zg__data_src *s, uint8_t *buf, size_t n) {
    size_t done = 0;
    while (done < n) {
        if (s->z.avail_in == 0 && (s->eof || !refill(s) || s->z.avail_in == 0)) break;
        size_t k = s->z.avail_in < n - done ? s->z.avail_in : n - done;
        memcpy(buf + done, s->z.next_in, k);
        s->z.next_in += k;
        s->z.avail_in -= (uInt)k;
        done += k;
    }
    return s->err[0] ? -1 : (int64_t)done;
}

/* After a member's end: 1 when another member follows (inflate reset for
 * it), 0 at the end of the file, -1 (s->err) for anything else. */
static int next_member(zg__data_src *s) {
    if (s->z.avail_in < 2 && !s->eof && !refill(s)) return -1;
    if (s->z.avail_in == 0) return 0;
    if (s->z.avail_in < 2 || s->z.next_in[0] != 0x1f || s->z.next_in[1] != 0x8b) {
        uint64_t at = s->consumed - s->z.avail_in;
        snprintf(s->err, sizeof s->err, "trailing garbage after the gzip data (byte 0x%02x at offset %llu of the file)",
                 s->z.next_in[0], (unsigned long long)at);
        return -1;
    }
    inflateReset(&s->z);
    s->member_done = false;
    return 1;
}

static int64_t gz_read(zg__data_src *s, uint8_t *buf, size_t n) {
    size_t done = 0;
    while (done < n) {
        if (s->member_done) {
            int more = next_member(s);
            if (more <= 0) return more < 0 ? -1 : (int64_t)done;
        }
        if (s->z.avail_in == 0 && !refill(s)) return -1;
        if (s->z.avail_in == 0) {
            snprintf(s->err, sizeof s->err, "gzip stream is truncated (unexpected end of file)");
            return -1;
        }
        size_t want = n - done < UINT32_MAX ? n - done : UINT32_MAX;
        s->z.next_out = buf + done;
        s->z.avail_out = (uInt)want;
        int r = inflate(&s->z, Z_NO_FLUSH);
        done += want - s->z.avail_out;
        if (r == Z_STREAM_END) {
            s->member_done = true;
        } else if (r == Z_MEM_ERROR) {
            snprintf(s->err, sizeof s->err, "out of memory while decompressing");
            return -1;
        } else if (r != Z_OK && r != Z_BUF_ERROR) {
            snprintf(s->err, sizeof s->err, "gzip data is corrupt (%s)", s->z.msg ? s->z.msg : "bad data");
            return -1;
        }
    }
    return (int64_t)done;
}

/* Reads up to n bytes; returns the count, fewer than n only at the end of
 * the data, or -1 with s->err set. */
int64_t zg__src_read(zg__data_src *s, void *buf, size_t n) {
    if (s->f) return s->gz ? gz_read(s, buf, n) : plain_read(s, buf, n);
    size_t k = s->len - s->pos;
    if (k > n) k = n;
    if (k) memcpy(buf, s->mem + s->pos, k);
    s->pos += k;
    return (int64_t)k;
}
