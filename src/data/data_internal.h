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
    void *samples;   /* uint8_t or float, n * sample_numel; NULL: image files decoded on demand */
    int64_t *labels; /* n class indices >= 0; NULL for regression or unlabelled data */
    float *targets;  /* n regression targets, else NULL */
    char **feature_names; /* a table's (shape[0] of them), else NULL */
    char *target_name;    /* a table's target column, else NULL */
    char **class_names;   /* an image folder's (n_class_names), else NULL */
    int64_t n_class_names;
    char **paths;         /* image files, else NULL */
    int64_t n_paths;
    /* Per image file: the sums of v and v^2 of each channel (2 * C
     * values, C = shape[0]), for zg_dataset_compute_stats. */
    uint64_t *pixel_sums;
    bool image_resize; /* images of another size are resized (zg_image_opts' size given) */
} zg__data_buf;

struct zg_dataset {
    zg__data_buf *buf;
    int64_t n;
    int ndim; /* of one sample */
    int64_t shape[ZG_MAX_DIMS - 1];
    int64_t sample_numel;
    bool u8; /* samples are bytes (normalised by the loader), else float */
    int64_t num_classes;
    /* (x - norm_mean[k]) / norm_std[k] for feature or channel k of the
     * shape[0]; NULL: none. Owned by this data set (a head view copies). */
    float *norm_mean, *norm_std;
};

/* A data set over malloc'd samples and labels, which it takes over (also
 * on failure, when it frees them). Labels must be >= 0; NULL: none
 * (regression targets or unlabelled data, set by the caller afterwards).
 * fn names the public caller for messages. */
zg_dataset *zg__dataset_new(const char *fn, bool u8, void *samples, int64_t *labels, int64_t n,
                            const int64_t *shape, int ndim);
/* A new data set of the samples idx[0..k) of ds (copied; names and files
 * too), with ds's normalization and class count. */
zg_dataset *zg__dataset_subset(const char *fn, const zg_dataset *ds, const int64_t *idx, int64_t k);
/* Frees an array of n malloc'd strings and the array. */
void zg__free_strings(char **s, int64_t n);
/* A copy of an array of n strings; NULL when out of memory (or s NULL). */
char **zg__copy_strings(const char *const *s, int64_t n);

/* The permutation of 0..n-1 that a xoshiro256** generator seeded from
 * (seed, key) alone draws by Fisher-Yates: the loader's epoch orders
 * (key: the epoch) and zg_dataset_split (a key no epoch reaches). */
void zg__permutation(int64_t *order, int64_t n, uint64_t seed, uint64_t key);

/* ---- images (image.c) -------------------------------------------------------- */

/* What a file's header says. */
typedef struct {
    int64_t height, width;
    int channels; /* 1 grey, 3 colour (palette, alpha dropped) */
} zg__image_info;
/* The largest image accepted, in pixels (a header may claim anything). */
#define ZG__IMAGE_MAX_PIXELS ((int64_t)1 << 26)
/* Decodes the PNG or JPEG file content data[0..len) into out as bytes
 * [C, H, W], C = want_c (0: the file's own channels; colour to grey as
 * PIL's convert("L"), grey to colour repeated). want_h, want_w > 0: the
 * size the image must have (checked before its pixels are decoded), or
 * with resize the size it is resized to (bilinear, as torchvision's
 * Resize with antialias=False on uint8: rounded half to even). out:
 * room for C * H * W bytes (3 * want_h * want_w with want_c 0), or NULL
 * to read the header only. *info: the header. -1 with a phrase in err
 * (the caller names the file). */
int zg__image_decode(const uint8_t *data, size_t len, int want_c, int64_t want_h, int64_t want_w, bool resize,
                     uint8_t *out, zg__image_info *info, char *err, size_t err_len);
/* Reads a whole file (at most max bytes) into *data (malloc'd, or the
 * caller's *data of *cap bytes, grown): its size, or -1 with err. */
int64_t zg__read_whole(const char *path, uint8_t **data, size_t *cap, size_t max, char *err, size_t err_len);
/* Decodes image file `path` of a data set (C, H, W from ds) into out:
 * -1 with "'path': problem" in err. buf / cap: a reusable file buffer. */
int zg__image_load(const zg_dataset *ds, int64_t i, uint8_t *out, uint8_t **buf, size_t *cap, char *err,
                   size_t err_len);

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
/* The same as zg_dataset_load_table (a header row). */
zg_dataset *zg__csv_parse_table(const char *fn, const char *name, const char *buf, size_t len,
                                const zg_csv_opts *opts);

/* zg_text_batch into existing int64 x, y [batch, block] (no allocation:
 * the training driver reuses one pair for every step). */
int zg__text_fill_batch(const zg_text *t, bool val, uint64_t seed, int64_t step, zg_tensor *x, zg_tensor *y);

#endif
