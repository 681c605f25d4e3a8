/* Private to src/data: the data set layout and the parsers that read from
 * memory or from a stream, so that the file readers and the fuzzers
 * (tests/fuzz) run the same code. */
#ifndef ZG_DATA_INTERNAL_H
#define ZG_DATA_INTERNAL_H

#include "../tensor/tensor_internal.h"

#include <stdatomic.h>
#include <zlib.h>

/* Sample and label memory, shared by a data set and its head views and
 * freed with the last of them. */
typedef struct zg__data_buf {
    atomic_int refs;
    void *samples;   /* uint8_t or float, n * sample_numel */
    int64_t *labels; /* n, each >= 0 */
} zg__data_buf;

struct zg_dataset {
    zg__data_buf *buf;
    int64_t n;
    int ndim; /* of one sample */
    int64_t shape[ZG_MAX_DIMS - 1];
    int64_t sample_numel;
    bool u8; /* samples are bytes (normalised by the loader), else float */
    int64_t num_classes;
};

/* A data set over malloc'd samples and labels, which it takes over (also
 * on failure, when it frees them). Labels must be >= 0. fn names the
 * public caller for messages. */
zg_dataset *zg__dataset_new(const char *fn, bool u8, void *samples, int64_t *labels, int64_t n,
                            const int64_t *shape, int ndim);

/* ---- byte sources (source.c) ------------------------------------------------ */

/* A byte stream: a file (gzip members, inflated, or plain bytes) or a
 * memory buffer. */
typedef struct zg__data_src {
    FILE *f;             /* NULL: read from mem */
    const uint8_t *mem;
    size_t len, pos;
    bool gz;             /* f starts with the gzip magic */
    bool member_done;    /* the current gzip member ended */
    bool eof;            /* nothing more to read from f */
    uint8_t *in;         /* bytes read from f, not yet used */
    uint64_t consumed;   /* bytes read from f so far */
    z_stream z;          /* next_in, avail_in: the unused input */
    char err[160];       /* why the last read failed */
} zg__data_src;

/* Reads the file f (which the caller opens and closes) as a source: -1
 * with s->err when even its first bytes cannot be had. zg__src_close
 * frees the source, also after a failed start. */
int zg__src_file(zg__data_src *s, FILE *f);
void zg__src_close(zg__data_src *s);
void zg__src_mem(zg__data_src *s, const void *data, size_t len);
/* Reads up to n bytes; returns the count, fewer than n only at the end of
 * the data, or -1 with s->err set (I/O error, corrupt or cut gzip data,
 * bytes after the last gzip member that do not start another). */
int64_t zg__src_read(zg__data_src *s, void *buf, size_t n);

/* ---- IDX (idx.c) ------------------------------------------------------------ */

/* One IDX array of unsigned bytes. */
typedef struct {
    uint8_t *data; /* malloc'd */
    int ndim;
    int64_t dims[3];
} zg__idx_array;

/* Reads one complete IDX array with `want_ndim` dimensions (3: images,
 * 1: labels) from s, which must hold exactly the header and the data.
 * On error: "fn: 'name': problem" as the error text, a negative status,
 * and nothing to free. */
int zg__idx_read(zg__data_src *s, const char *fn, const char *name, int want_ndim, zg__idx_array *out);
/* Pairs images [n, rows, cols] with labels [n] into a data set of samples
 * {1, rows, cols}; takes both arrays (freed also on failure). */
zg_dataset *zg__idx_dataset(const char *fn, zg__idx_array *images, const char *images_name,
                            zg__idx_array *labels, const char *labels_name);

/* ---- CSV (csv.c) ------------------------------------------------------------ */

/* Parses CSV text (buf need not end with a NUL) as zg_dataset_load_csv
 * does; name is the file named in messages. */
zg_dataset *zg__csv_parse(const char *fn, const char *name, const char *buf, size_t len, int label_column,
                          bool header);

/* zg_text_batch into existing int64 x, y [batch, block] (no allocation:
 * the training driver reuses one pair for every step). */
int zg__text_fill_batch(const zg_text *t, bool val, uint64_t seed, int64_t step, zg_tensor *x, zg_tensor *y);

#endif
