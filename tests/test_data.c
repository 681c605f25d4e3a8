/* Data: IDX files (plain and gzipped) and every kind of bad one, the
 * Fashion-MNIST directory (the real data set when installed), CSV files
 * good and bad, head views, and the loader: order from the seed, one
 * visit per sample per epoch, drop_last, normalisation, prefetch giving
 * the same bytes, and resuming mid-epoch. */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

/* ---- files -------------------------------------------------------------- */

typedef struct {
    char dir[64];
} tmpdir;

static void tmp_make(tmpdir *t) {
    snprintf(t->dir, sizeof t->dir, "/tmp/zg_data_XXXXXX");
    if (!mkdtemp(t->dir)) zgt_fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
}

static void tmp_remove(tmpdir *t) {
    DIR *d = opendir(t->dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", t->dir, e->d_name);
        if (remove(p) != 0) rmdir(p);
    }
    closedir(d);
    rmdir(t->dir);
}

/* dir/name in a rotating static buffer (several paths live at once). */
static const char *path_in(const tmpdir *t, const char *name) {
    static char bufs[8][256];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, 256, "%s/%s", t->dir, name);
    return b;
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) zgt_fail(__FILE__, __LINE__, "cannot write %s", path);
    if (f) fclose(f);
}

static void write_text(const char *path, const char *s) { write_bytes(path, s, strlen(s)); }

static void write_gz(const char *path, const void *p, size_t n) {
    gzFile f = gzopen(path, "wb");
    if (!f || (n && gzwrite(f, p, (unsigned)n) != (int)n)) zgt_fail(__FILE__, __LINE__, "cannot write %s", path);
    if (f) gzclose(f);
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* An IDX file image: magic 00 00 type ndim, the dims (big-endian), then
 * data_len bytes of `data`. Returns the length; *out is malloc'd. */
static size_t make_idx(unsigned char **out, int type, int ndim, const uint32_t *dims, const unsigned char *data,
                       size_t data_len) {
    size_t n = 4 + 4 * (size_t)ndim + data_len;
    unsigned char *b = malloc(n);
    b[0] = 0;
    b[1] = 0;
    b[2] = (unsigned char)type;
    b[3] = (unsigned char)ndim;
    for (int i = 0; i < ndim; i++)
        for (int k = 0; k < 4; k++) b[4 + 4 * i + k] = (unsigned char)(dims[i] >> (24 - 8 * k));
    if (data_len) memcpy(b + 4 + 4 * ndim, data, data_len);
    *out = b;
    return n;
}

/* A valid pair: n images of rows x cols with pixel (i, p) = (7 i + p) mod
 * 256, labels[i] given. */
static void write_idx_pair(const char *img_path, const char *lab_path, bool gz, uint32_t n, uint32_t rows,
                           uint32_t cols, const unsigned char *labels) {
    size_t np = (size_t)n * rows * cols;
    unsigned char *pix = malloc(np), *b;
    for (size_t i = 0; i < n; i++)
        for (size_t p = 0; p < (size_t)rows * cols; p++) pix[i * rows * cols + p] = (unsigned char)((7 * i + p) % 256);
    uint32_t d3[3] = {n, rows, cols}, d1[1] = {n};
    size_t len = make_idx(&b, 8, 3, d3, pix, np);
    (gz ? write_gz : write_bytes)(img_path, b, len);
    free(b);
    len = make_idx(&b, 8, 1, d1, labels, n);
    (gz ? write_gz : write_bytes)(lab_path, b, len);
    free(b);
    free(pix);
}

static zg_loader_opts plain_opts(int64_t batch) {
    zg_loader_opts o = {.batch_size = batch, .shuffle = false, .drop_last = false, .seed = 0,
                        .mean = 0.0f, .std = 1.0f, .prefetch = false};
    return o;
}

/* ---- IDX ------------------------------------------------------------------ */

static void check_small_idx(zg_dataset *ds, const unsigned char *labels) {
    CHECK_PTR(ds);
    if (!ds) return;
    CHECK(zg_dataset_size(ds) == 5);
    int64_t shape[ZG_MAX_DIMS];
    CHECK(zg_dataset_sample_shape(ds, shape) == 3);
    CHECK(shape[0] == 1 && shape[1] == 2 && shape[2] == 3);
    CHECK(zg_dataset_num_classes(ds) == 8);
    zg_loader_opts o = plain_opts(5);
    zg_loader *ld = zg_loader_new(ds, &o);
    CHECK_PTR(ld);
    zg_tensor *x, *y;
    CHECK(zg_loader_next(ld, &x, &y) == 1);
    CHECK(zg_tensor_ndim(x) == 4 && zg_tensor_size(x, 0) == 5 && zg_tensor_size(x, 1) == 1 &&
          zg_tensor_size(x, 2) == 2 && zg_tensor_size(x, 3) == 3);
    CHECK(zg_tensor_dtype(y) == ZG_INT64 && zg_tensor_numel(y) == 5);
    for (int i = 0; i < 5; i++) {
        CHECK(zg_tensor_data_i64(y)[i] == labels[i]);
        for (int p = 0; p < 6; p++) CHECK(zg_tensor_data(x)[i * 6 + p] == (float)((7 * i + p) % 256) / 255.0f);
    }
    CHECK(zg_loader_next(ld, &x, &y) == 0);
    zg_loader_free(ld);
}

TEST(idx_plain_and_gzip) {
    tmpdir t;
    tmp_make(&t);
    const unsigned char labels[5] = {3, 0, 7, 1, 2};
    write_idx_pair(path_in(&t, "img"), path_in(&t, "lab"), false, 5, 2, 3, labels);
    write_idx_pair(path_in(&t, "img.gz"), path_in(&t, "lab.gz"), true, 5, 2, 3, labels);
    /* The gzipped files really are gzipped. */
    size_t len;
    unsigned char *b = read_file(path_in(&t, "img.gz"), &len);
    CHECK(b && len > 2 && b[0] == 0x1f && b[1] == 0x8b);
    free(b);
    zg_dataset *ds = zg_dataset_load_idx(path_in(&t, "img"), path_in(&t, "lab"));
    check_small_idx(ds, labels);
    zg_dataset_free(ds);
    ds = zg_dataset_load_idx(path_in(&t, "img.gz"), path_in(&t, "lab.gz"));
    check_small_idx(ds, labels);
    zg_dataset_free(ds);
    ds = zg_dataset_load_idx(path_in(&t, "img.gz"), path_in(&t, "lab"));
    check_small_idx(ds, labels);
    zg_dataset_free(ds);
    tmp_remove(&t);
}

/* Writes `len` bytes of b to dir/name and expects zg_dataset_load_idx to
 * refuse it (as images when as_images, else as labels, the other file
 * being valid) with an error containing `msg` and the file's path. */
static void expect_idx_error(const tmpdir *t, const char *name, const void *b, size_t len, bool gz, bool as_images,
                             const char *msg, int line) {
    const char *p = path_in(t, name);
    (gz ? write_gz : write_bytes)(p, b, len);
    const char *img = as_images ? p : path_in(t, "good_img");
    const char *lab = as_images ? path_in(t, "good_lab") : p;
    zg_clear_error();
    zg_dataset *ds = zg_dataset_load_idx(img, lab);
    if (ds) {
        zgt_fail(__FILE__, line, "%s loaded, expected an error with \"%s\"", name, msg);
        zg_dataset_free(ds);
        return;
    }
    const char *e = zg_last_error();
    if (!strstr(e, msg)) zgt_fail(__FILE__, line, "%s: error \"%s\" does not mention \"%s\"", name, e, msg);
    if (!strstr(e, p)) zgt_fail(__FILE__, line, "%s: error \"%s\" does not name the file", name, e);
    if (strncmp(e, "zg_dataset_load_idx: ", 21) != 0)
        zgt_fail(__FILE__, line, "%s: error \"%s\" does not start with the function", name, e);
    if (strchr(e, '\n')) zgt_fail(__FILE__, line, "%s: error \"%s\" is not one line", name, e);
}
#define EXPECT_IDX_ERROR(name, b, len, gz, as_images, msg) expect_idx_error(&t, name, b, len, gz, as_images, msg, __LINE__)

TEST(idx_rejects_bad_files) {
    tmpdir t;
    tmp_make(&t);
    const unsigned char labels[5] = {1, 0, 1, 0, 1};
    write_idx_pair(path_in(&t, "good_img"), path_in(&t, "good_lab"), false, 5, 2, 3, labels);
    unsigned char pix[40] = {0};
    unsigned char *b;
    size_t n;
    uint32_t d3[3] = {5, 2, 3}, d1[1] = {5};

    EXPECT_IDX_ERROR("empty", "", 0, false, true, "empty file");
    EXPECT_IDX_ERROR("short", "\0\0\x08", 3, false, true, "truncated: 3 bytes, too short for an IDX header");
    n = make_idx(&b, 8, 3, d3, pix, 30);
    b[0] = 0x1f;
    EXPECT_IDX_ERROR("magic", b, n, false, true, "not an IDX file: magic bytes 1f 00 08 03 (expected 00 00 08 03)");
    b[0] = 0;
    b[2] = 0x0D;
    EXPECT_IDX_ERROR("float", b, n, false, true, "IDX element type 0x0D (float) is not supported");
    free(b);
    n = make_idx(&b, 8, 1, d1, labels, 5);
    EXPECT_IDX_ERROR("labels_as_images", b, n, false, true, "1 dimensions, expected 3 for images (is this a labels file?)");
    free(b);
    n = make_idx(&b, 8, 3, d3, pix, 30);
    EXPECT_IDX_ERROR("images_as_labels", b, n, false, false, "3 dimensions, expected 1 for labels (is this an images file?)");
    EXPECT_IDX_ERROR("cut_header", b, 12, false, true, "truncated: header ends after 12 of its 16 bytes");
    EXPECT_IDX_ERROR("cut_data", b, n - 10, false, true, "truncated: expected 30 bytes of data (5 x 2 x 3), got 20");
    EXPECT_IDX_ERROR("header_only", b, 16, false, true, "truncated: expected 30 bytes of data (5 x 2 x 3), got 0");
    free(b);
    n = make_idx(&b, 8, 3, d3, pix, 33);
    EXPECT_IDX_ERROR("trailing", b, n, false, true, "3 trailing bytes after the 30 bytes of data (5 x 2 x 3)");
    EXPECT_IDX_ERROR("trailing.gz", b, n, true, true, "3 trailing bytes after the 30 bytes of data");
    free(b);
    uint32_t dz[3] = {5, 0, 3};
    n = make_idx(&b, 8, 3, dz, pix, 0);
    EXPECT_IDX_ERROR("zero_dim", b, n, false, true, "dimension 1 is 0");
    free(b);
    uint32_t dbig[3] = {0x80000000u, 1, 1};
    n = make_idx(&b, 8, 3, dbig, pix, 0);
    EXPECT_IDX_ERROR("huge_dim", b, n, false, true, "dimension 0 is 2147483648 (over the limit 2147483647)");
    free(b);
    uint32_t dsample[3] = {1, 65536, 65536};
    n = make_idx(&b, 8, 3, dsample, pix, 0);
    EXPECT_IDX_ERROR("huge_sample", b, n, false, true, "dimensions 1 x 65536 x 65536: a sample of 4294967296 bytes");
    free(b);
    /* A header announcing 2^31-1 x 512 x 512 bytes over a 40-byte file:
     * refused for its size, and nothing of that size is allocated. */
    uint32_t dtotal[3] = {0x7fffffffu, 512, 512};
    n = make_idx(&b, 8, 3, dtotal, pix, 40);
    EXPECT_IDX_ERROR("huge_total", b, n, false, true, "bytes of data (over the limit 1099511627776)");
    free(b);
    uint32_t dmany[3] = {1000000, 28, 28};
    n = make_idx(&b, 8, 3, dmany, pix, 40);
    EXPECT_IDX_ERROR("many.gz", b, n, true, true, "truncated: expected 784000000 bytes of data (1000000 x 28 x 28), got 40");
    free(b);
    /* Labels: count mismatch with the images. */
    uint32_t d4[1] = {4};
    n = make_idx(&b, 8, 1, d4, labels, 4);
    EXPECT_IDX_ERROR("four_labels", b, n, false, false, "holds 5 images but");
    CHECK(strstr(zg_last_error(), "holds 4 labels") != NULL);
    free(b);

    /* gzip damage: a cut stream, a wrong CRC, scrambled deflate data. */
    n = make_idx(&b, 8, 3, d3, pix, 30);
    write_gz(path_in(&t, "ok.gz"), b, n);
    free(b);
    size_t glen;
    unsigned char *g = read_file(path_in(&t, "ok.gz"), &glen);
    CHECK(g && glen > 30);
    EXPECT_IDX_ERROR("cut.gz", g, glen - 12, false, true, "gzip stream is truncated (unexpected end of file)");
    unsigned char *crc = malloc(glen);
    memcpy(crc, g, glen);
    crc[glen - 8] ^= 0xff; /* the CRC-32 of the trailer */
    EXPECT_IDX_ERROR("crc.gz", crc, glen, false, true, "gzip data is corrupt (incorrect data check)");
    memcpy(crc, g, glen);
    crc[10] = 0xff; /* the first deflate block header: type 3 is invalid */
    EXPECT_IDX_ERROR("block.gz", crc, glen, false, true, "gzip data is corrupt (invalid block type)");
    free(crc);
    free(g);

    /* Files that cannot be read at all. */
    CHECK_NULL_ERR(zg_dataset_load_idx(path_in(&t, "missing"), path_in(&t, "good_lab")), "cannot open: No such file");
    CHECK_NULL_ERR(zg_dataset_load_idx(path_in(&t, "good_img"), path_in(&t, "missing")), "missing': cannot open");
    mkdir(path_in(&t, "adir"), 0700);
    CHECK_NULL_ERR(zg_dataset_load_idx(path_in(&t, "adir"), path_in(&t, "good_lab")), "adir': read error");
    CHECK_NULL_ERR(zg_dataset_load_idx(NULL, "x"), "zg_dataset_load_idx: images path is NULL");
    CHECK_NULL_ERR(zg_dataset_load_idx("x", NULL), "zg_dataset_load_idx: 'x': cannot open"); /* images alone */
    tmp_remove(&t);
}

/* The gzip image of n bytes of b (malloc'd, *len bytes). */
static unsigned char *gz_bytes(const tmpdir *t, const void *b, size_t n, size_t *len) {
    write_gz(path_in(t, "gz.tmp"), b, n);
    return read_file(path_in(t, "gz.tmp"), len);
}

/* a then b (malloc'd). */
static unsigned char *joined(const void *a, size_t na, const void *b, size_t nb) {
    unsigned char *r = malloc(na + nb);
    if (r) {
        memcpy(r, a, na);
        memcpy(r + na, b, nb);
    }
    return r;
}

/* After a gzip member only another member may follow: as gzip(1) reads
 * them, members are concatenated, but bytes that start no member (which
 * zlib's gzread ignored, and gzip(1) warns about) are refused, in IDX and
 * CSV files alike. */
TEST(gzip_members_and_trailing_garbage) {
    tmpdir t;
    tmp_make(&t);
    const unsigned char labels[5] = {3, 0, 7, 1, 2};
    write_idx_pair(path_in(&t, "good_img"), path_in(&t, "good_lab"), false, 5, 2, 3, labels);
    uint32_t d1[1] = {5};
    unsigned char *idx;
    size_t n = make_idx(&idx, 8, 1, d1, labels, 5), la, lb, lg;
    /* Two members, the header in one and the labels in the other. */
    unsigned char *a = gz_bytes(&t, idx, 8, &la), *b = gz_bytes(&t, idx + 8, n - 8, &lb);
    unsigned char *g = gz_bytes(&t, idx, n, &lg);
    unsigned char *two = joined(a, la, b, lb);
    write_bytes(path_in(&t, "two.gz"), two, la + lb);
    zg_dataset *ds = zg_dataset_load_idx(path_in(&t, "good_img"), path_in(&t, "two.gz"));
    check_small_idx(ds, labels);
    zg_dataset_free(ds);
    /* A second member with more data: trailing bytes of the IDX file. */
    unsigned char *twice = joined(g, lg, g, lg);
    EXPECT_IDX_ERROR("twice.gz", twice, 2 * lg, false, false, "13 trailing bytes after the 5 bytes of data");
    /* Bytes that start no member. */
    static const struct {
        const char *tail;
        size_t len;
        const char *msg;
    } junk[] = {
        {"\0\0\0\0\0\0\0\0", 8, "trailing garbage after the gzip data (byte 0x00 at offset "},
        {"\x1f", 1, "trailing garbage after the gzip data (byte 0x1f at offset "},
        {"\x1f\x8b\x08\0", 4, "gzip stream is truncated"},
        {"\x1f\x8bxxxxxxxxxxxx", 14, "gzip data is corrupt"},
    };
    for (size_t i = 0; i < sizeof junk / sizeof *junk; i++) {
        unsigned char *bad = joined(g, lg, junk[i].tail, junk[i].len);
        char name[32];
        snprintf(name, sizeof name, "junk%zu.gz", i);
        expect_idx_error(&t, name, bad, lg + junk[i].len, false, false, junk[i].msg, __LINE__);
        free(bad);
    }
    char off[64];
    snprintf(off, sizeof off, "byte 0x6a at offset %zu of the file", lg);
    unsigned char *bad = joined(g, lg, "junk", 4);
    EXPECT_IDX_ERROR("junk.gz", bad, lg + 4, false, false, off);
    free(bad);
    /* CSV files are read the same way. */
    const char *csv = "0,1\n1,2\n";
    unsigned char *c = gz_bytes(&t, csv, strlen(csv), &la);
    unsigned char *cj = joined(c, la, "junk", 4);
    write_bytes(path_in(&t, "d.csv.gz"), c, la);
    ds = zg_dataset_load_csv(path_in(&t, "d.csv.gz"), 0, false);
    CHECK(ds && zg_dataset_size(ds) == 2);
    zg_dataset_free(ds);
    write_bytes(path_in(&t, "j.csv.gz"), cj, la + 4);
    CHECK_NULL_ERR(zg_dataset_load_csv(path_in(&t, "j.csv.gz"), 0, false), "trailing garbage after the gzip data");
    free(c);
    free(cj);
    free(twice);
    free(two);
    free(a);
    free(b);
    free(g);
    free(idx);
    tmp_remove(&t);
}

/* ---- the MNIST directory ---------------------------------------------------- */

TEST(mnist_dir_finds_files) {
    tmpdir t;
    tmp_make(&t);
    const unsigned char tr[5] = {9, 8, 7, 6, 5}, te[5] = {0, 1, 0, 1, 0};
    write_idx_pair(path_in(&t, "train-images-idx3-ubyte.gz"), path_in(&t, "train-labels-idx1-ubyte.gz"), true, 5, 2,
                   3, tr);
    write_idx_pair(path_in(&t, "t10k-images-idx3-ubyte"), path_in(&t, "t10k-labels-idx1-ubyte"), false, 5, 2, 3, te);
    zg_dataset *a = zg_dataset_load_mnist_dir(t.dir, true);
    zg_dataset *b = zg_dataset_load_mnist_dir(t.dir, false);
    CHECK_PTR(a);
    CHECK_PTR(b);
    CHECK(zg_dataset_num_classes(a) == 10 && zg_dataset_num_classes(b) == 2);
    zg_dataset_free(a);
    zg_dataset_free(b);
    tmp_remove(&t);
}

TEST(mnist_dir_missing_says_how_to_get_it) {
    tmpdir t;
    tmp_make(&t);
    const char *how = "install them with `sudo apt-get install dataset-fashion-mnist` (scripts/setup does this) "
                      "or pass --data DIR";
    const char *nodir = path_in(&t, "nowhere");
    CHECK_NULL_ERR(zg_dataset_load_mnist_dir(nodir, true), how);
    CHECK(strstr(zg_last_error(), "zg_dataset_load_mnist_dir: no Fashion-MNIST files in '") != NULL);
    CHECK(strstr(zg_last_error(), "No such file or directory") != NULL);
    CHECK(strstr(zg_last_error(), "train-images-idx3-ubyte[.gz]") != NULL);
    CHECK_NULL_ERR(zg_dataset_load_mnist_dir(t.dir, false), how);
    CHECK(strstr(zg_last_error(), "no Fashion-MNIST files in") != NULL);
    CHECK(strstr(zg_last_error(), "t10k-labels-idx1-ubyte[.gz]") != NULL);
    const unsigned char te[5] = {0, 1, 0, 1, 0};
    write_idx_pair(path_in(&t, "t10k-images-idx3-ubyte"), path_in(&t, "other"), false, 5, 2, 3, te);
    CHECK_NULL_ERR(zg_dataset_load_mnist_dir(t.dir, false), "has t10k-images-idx3-ubyte[.gz] but not t10k-labels-idx1-ubyte[.gz]");
    CHECK(strstr(zg_last_error(), how) != NULL);
    write_text(path_in(&t, "plain_file"), "x");
    CHECK_NULL_ERR(zg_dataset_load_mnist_dir(path_in(&t, "plain_file"), true), "(not a directory;");
    CHECK_NULL_ERR(zg_dataset_load_mnist_dir(NULL, true), "dir is NULL");
    tmp_remove(&t);
}

/* The installed data set, against values Python's gzip module reads from
 * the same files. */
TEST(real_fashion_mnist) {
    const char *dir = "/usr/share/datasets/fashion-mnist";
    struct stat st;
    if (stat(dir, &st) != 0) {
        printf("  note: %s is not installed (scripts/setup installs it); real_fashion_mnist skipped\n", dir);
        return;
    }
    zg_dataset *tr = zg_dataset_load_mnist_dir(dir, true);
    zg_dataset *te = zg_dataset_load_mnist_dir(dir, false);
    CHECK_PTR(tr);
    CHECK_PTR(te);
    if (!tr || !te) {
        zg_dataset_free(tr);
        zg_dataset_free(te);
        return;
    }
    CHECK(zg_dataset_size(tr) == 60000 && zg_dataset_size(te) == 10000);
    CHECK(zg_dataset_num_classes(tr) == 10 && zg_dataset_num_classes(te) == 10);
    int64_t shape[ZG_MAX_DIMS];
    CHECK(zg_dataset_sample_shape(tr, shape) == 3 && shape[0] == 1 && shape[1] == 28 && shape[2] == 28);

    const int train_first[10] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5}, test_first[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
    const int train_row14[28] = {0,   0,   1,   4,   6,   7,   2,   0,   0,   0,   0,   0,   237, 226,
                                 217, 223, 222, 219, 222, 221, 216, 223, 229, 215, 218, 255, 77,  0};
    const int test_row14[28] = {0,   0,   0,   0,   0,   0,   2,   4,   1,   0,   0,   0,   98,  136,
                                110, 109, 110, 162, 135, 144, 149, 159, 167, 144, 158, 169, 119, 0};
    const long long pixel_sum[2] = {3431114169LL, 573469082LL};
    for (int s = 0; s < 2; s++) {
        zg_dataset *ds = s == 0 ? tr : te;
        const int *first = s == 0 ? train_first : test_first, *row14 = s == 0 ? train_row14 : test_row14;
        zg_loader_opts o = plain_opts(1000);
        zg_loader *ld = zg_loader_new(ds, &o);
        zg_tensor *x, *y;
        long long sum = 0, counts[10] = {0};
        int64_t last_label = -1;
        bool exact = true;
        for (int b = 0; zg_loader_next(ld, &x, &y) == 1; b++) {
            const float *xv = zg_tensor_data(x);
            const int64_t *yv = zg_tensor_data_i64(y);
            if (b == 0) {
                for (int i = 0; i < 10; i++) CHECK(yv[i] == first[i]);
                for (int i = 0; i < 28; i++) CHECK(xv[14 * 28 + i] == (float)row14[i] / 255.0f);
            }
            for (int64_t i = 0; i < zg_tensor_numel(x); i++) {
                float v = xv[i] * 255.0f;
                long long p = (long long)(v + 0.5f);
                exact &= (float)p / 255.0f == xv[i];
                sum += p;
            }
            for (int i = 0; i < zg_tensor_numel(y); i++) counts[yv[i]]++;
            last_label = yv[zg_tensor_numel(y) - 1];
        }
        CHECK(exact);
        CHECK(sum == pixel_sum[s]);
        for (int c = 0; c < 10; c++) CHECK(counts[c] == (s == 0 ? 6000 : 1000));
        CHECK(last_label == 5);
        zg_loader_free(ld);
    }
    zg_dataset_free(tr);
    zg_dataset_free(te);
}

/* ---- CSV --------------------------------------------------------------------- */

TEST(csv_reads_good_files) {
    tmpdir t;
    tmp_make(&t);
    /* A BOM, a header, \r\n endings, spaces, a quoted number, blank lines,
     * the label in the middle, no newline at the end. */
    write_text(path_in(&t, "a.csv"), "\xEF\xBB\xBF"
                                     "x1,label,x2\r\n"
                                     "1.5, 2 ,-3\r\n"
                                     "\r\n"
                                     "  \"4e-1\" ,0,   7\n"
                                     "0x10,1.0,-0\n"
                                     "\n"
                                     "5,3,6");
    zg_dataset *ds = zg_dataset_load_csv(path_in(&t, "a.csv"), 1, true);
    CHECK_PTR(ds);
    zg_dataset *neg = zg_dataset_load_csv(path_in(&t, "a.csv"), -2, true);
    CHECK_PTR(neg);
    if (ds && neg) {
        CHECK(zg_dataset_size(ds) == 4);
        int64_t shape[ZG_MAX_DIMS];
        CHECK(zg_dataset_sample_shape(ds, shape) == 1 && shape[0] == 2);
        CHECK(zg_dataset_num_classes(ds) == 4);
        /* Float samples are copied as they are: mean and std are ignored. */
        zg_loader_opts o = plain_opts(4);
        o.mean = 100.0f;
        o.std = 0.0f;
        for (int k = 0; k < 2; k++) {
            zg_loader *ld = zg_loader_new(k ? neg : ds, &o);
            CHECK_PTR(ld);
            zg_tensor *x, *y;
            CHECK(zg_loader_next(ld, &x, &y) == 1);
            const float xs[8] = {1.5f, -3.0f, 0.4f, 7.0f, 16.0f, -0.0f, 5.0f, 6.0f};
            CHECK_VALUES(x, xs, 8, 0);
            CHECK(zg_tensor_ndim(x) == 2 && zg_tensor_size(x, 1) == 2);
            const int64_t ys[4] = {2, 0, 1, 3};
            for (int i = 0; i < 4; i++) CHECK(zg_tensor_data_i64(y)[i] == ys[i]);
            zg_loader_free(ld);
        }
    }
    zg_dataset_free(ds);
    zg_dataset_free(neg);
    /* No header, label last (-1), one line, no newline. */
    write_text(path_in(&t, "b.csv"), "0.25,-1e3,7");
    ds = zg_dataset_load_csv(path_in(&t, "b.csv"), -1, false);
    CHECK_PTR(ds);
    if (ds) {
        CHECK(zg_dataset_size(ds) == 1 && zg_dataset_num_classes(ds) == 8);
        zg_loader_opts o = plain_opts(1);
        zg_loader *ld = zg_loader_new(ds, &o);
        zg_tensor *x, *y;
        CHECK(zg_loader_next(ld, &x, &y) == 1);
        const float xs[2] = {0.25f, -1000.0f};
        CHECK_VALUES(x, xs, 2, 0);
        CHECK(zg_tensor_data_i64(y)[0] == 7);
        zg_loader_free(ld);
    }
    zg_dataset_free(ds);
    /* Gzipped CSV. */
    const char *gz = "1,2,0\n3,4,1\n";
    write_gz(path_in(&t, "c.csv.gz"), gz, strlen(gz));
    ds = zg_dataset_load_csv(path_in(&t, "c.csv.gz"), 2, false);
    CHECK_PTR(ds);
    CHECK(ds && zg_dataset_size(ds) == 2);
    zg_dataset_free(ds);
    tmp_remove(&t);
}

static void expect_csv_error(const tmpdir *t, const char *text, int label_column, bool header, const char *msg,
                             int line) {
    const char *p = path_in(t, "bad.csv");
    write_text(p, text);
    zg_clear_error();
    zg_dataset *ds = zg_dataset_load_csv(p, label_column, header);
    if (ds) {
        zgt_fail(__FILE__, line, "\"%s\" loaded, expected an error with \"%s\"", text, msg);
        zg_dataset_free(ds);
        return;
    }
    const char *e = zg_last_error();
    if (!strstr(e, msg)) zgt_fail(__FILE__, line, "error \"%s\" does not mention \"%s\"", e, msg);
    if (!strstr(e, p) || strncmp(e, "zg_dataset_load_csv: ", 21) != 0)
        zgt_fail(__FILE__, line, "error \"%s\" does not start with the function and name the file", e);
}
#define EXPECT_CSV_ERROR(text, col, header, msg) expect_csv_error(&t, text, col, header, msg, __LINE__)

TEST(csv_rejects_bad_files) {
    tmpdir t;
    tmp_make(&t);
    EXPECT_CSV_ERROR("", 0, false, "empty file");
    EXPECT_CSV_ERROR("\n \r\n\n", 0, false, "empty file");
    EXPECT_CSV_ERROR("a,b,label\n", 2, true, "no data rows after the header line");
    EXPECT_CSV_ERROR("1,2,3\n4,5\n", 2, false, "line 2 has 2 columns, expected 3 (as on line 1)");
    EXPECT_CSV_ERROR("a,b,c\n1,2,3\n\n4,5,6,7\n", 2, true, "line 4 has 4 columns, expected 3 (as the header on line 1)");
    EXPECT_CSV_ERROR("\n\na,b\n1,2,3\n", 2, true, "line 4 has 3 columns, expected 2 (as the header on line 3)");
    EXPECT_CSV_ERROR("1,2,0\n1,abc,0\n", 2, false, "line 2, column 2: 'abc' is not a number");
    EXPECT_CSV_ERROR("1,2,0\n1,2x,0\n", 2, false, "line 2, column 2: '2x' is not a number");
    EXPECT_CSV_ERROR("1,,0\n", 2, false, "line 1, column 2: empty field, expected a number");
    EXPECT_CSV_ERROR("nan,1,0\n", 2, false, "line 1, column 1: 'nan': NaN or infinite values are not allowed");
    EXPECT_CSV_ERROR("1,-inf,0\n", 2, false, "line 1, column 2: '-inf': NaN or infinite values are not allowed");
    EXPECT_CSV_ERROR("1,1e39,0\n", 2, false, "line 1, column 2: '1e39' is out of the float32 range");
    EXPECT_CSV_ERROR("1,2,1.5\n", 2, false, "line 1, column 3: label '1.5' is not an integer class index");
    EXPECT_CSV_ERROR("1,2,0\n1,2,-1\n", -1, false, "line 2, column 3: label '-1' is negative");
    EXPECT_CSV_ERROR("1,2,cat\n", 2, false, "line 1, column 3: label 'cat' is not a number");
    EXPECT_CSV_ERROR("1,2,inf\n", 2, false, "label 'inf' is not an integer class index");
    EXPECT_CSV_ERROR("1,2,3e9\n", 2, false, "label '3e9' is too large");
    EXPECT_CSV_ERROR("1,2,\n", 2, false, "column 3: empty label field");
    EXPECT_CSV_ERROR("1,2,0\n", 3, false, "label column 3 out of range for 3 columns");
    EXPECT_CSV_ERROR("1,2,0\n", -4, false, "label column -4 out of range for 3 columns");
    EXPECT_CSV_ERROR("1\n2\n", 0, false, "1 column: need the label column and at least one feature column");
    EXPECT_CSV_ERROR("1,\"2,0\n", 2, false, "line 1, column 2: quote without a closing quote");
    EXPECT_CSV_ERROR("1,\"2\"x,0\n", 2, false, "line 1, column 2: text after a closing quote");
    CHECK_NULL_ERR(zg_dataset_load_csv(path_in(&t, "missing.csv"), 0, false), "missing.csv': cannot open: No such file");
    CHECK_NULL_ERR(zg_dataset_load_csv(NULL, 0, false), "zg_dataset_load_csv: path is NULL");
    /* A cut gzip stream. */
    char big[4000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = "0123456789,\n"[(i * 7) % 12];
    write_gz(path_in(&t, "cut.csv.gz"), big, sizeof big);
    size_t len;
    unsigned char *g = read_file(path_in(&t, "cut.csv.gz"), &len);
    write_bytes(path_in(&t, "cut.csv.gz"), g, len / 2);
    free(g);
    CHECK_NULL_ERR(zg_dataset_load_csv(path_in(&t, "cut.csv.gz"), 0, false), "gzip stream is truncated");
    tmp_remove(&t);
}

/* ---- head views ------------------------------------------------------------- */

/* A CSV data set of n rows "i, i/2, label i % classes" (label last). */
static zg_dataset *index_dataset(int n, int classes) {
    tmpdir t;
    tmp_make(&t);
    size_t cap = (size_t)n * 40 + 1, len = 0;
    char *s = malloc(cap);
    for (int i = 0; i < n; i++) len += (size_t)snprintf(s + len, cap - len, "%d,%g,%d\n", i, i / 2.0, i % classes);
    write_text(path_in(&t, "i.csv"), s);
    free(s);
    zg_dataset *ds = zg_dataset_load_csv(path_in(&t, "i.csv"), -1, false);
    CHECK_PTR(ds);
    tmp_remove(&t);
    return ds;
}

/* A uint8 data set of n random 3x4 images with labels i % 10. */
static zg_dataset *byte_dataset(uint32_t n, uint64_t seed) {
    tmpdir t;
    tmp_make(&t);
    unsigned char *pix = malloc((size_t)n * 12), *lab = malloc(n), *b;
    uint64_t x = seed;
    for (size_t i = 0; i < (size_t)n * 12; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        pix[i] = (unsigned char)(x >> 56);
    }
    for (uint32_t i = 0; i < n; i++) lab[i] = (unsigned char)(i % 10);
    uint32_t d3[3] = {n, 3, 4}, d1[1] = {n};
    size_t len = make_idx(&b, 8, 3, d3, pix, (size_t)n * 12);
    write_bytes(path_in(&t, "i"), b, len);
    free(b);
    len = make_idx(&b, 8, 1, d1, lab, n);
    write_bytes(path_in(&t, "l"), b, len);
    free(b);
    free(pix);
    free(lab);
    zg_dataset *ds = zg_dataset_load_idx(path_in(&t, "i"), path_in(&t, "l"));
    CHECK_PTR(ds);
    tmp_remove(&t);
    return ds;
}

/* Feature 0 of every sample of one epoch (the sample's index). */
static int epoch_indices(zg_loader *ld, int *out, int cap) {
    zg_tensor *x, *y;
    int k = 0;
    while (zg_loader_next(ld, &x, &y) == 1)
        for (int64_t i = 0; i < zg_tensor_size(x, 0) && k < cap; i++) out[k++] = (int)zg_tensor_data(x)[i * 2];
    return k;
}

TEST(head_view_shares_memory) {
    for (int parent_first = 0; parent_first < 2; parent_first++) {
        zg_dataset *ds = index_dataset(50, 7);
        if (!ds) return;
        zg_dataset *h = zg_dataset_head(ds, 10);
        CHECK_PTR(h);
        CHECK(zg_dataset_size(h) == 10 && zg_dataset_size(ds) == 50);
        /* Labels 0..6 in the view, and also in the parent: the class count
         * is the parent's either way (see a 3-sample view below). */
        zg_dataset *h3 = zg_dataset_head(h, 3);
        CHECK(zg_dataset_num_classes(h3) == 7);
        int64_t shape[ZG_MAX_DIMS];
        CHECK(zg_dataset_sample_shape(h3, shape) == 1 && shape[0] == 2);
        if (parent_first) {
            zg_dataset_free(ds);
            zg_dataset_free(h);
        }
        zg_loader_opts o = plain_opts(2);
        zg_loader *ld = zg_loader_new(h3, &o);
        int idx[8];
        CHECK(epoch_indices(ld, idx, 8) == 3);
        CHECK(idx[0] == 0 && idx[1] == 1 && idx[2] == 2);
        zg_loader_free(ld);
        zg_dataset_free(h3);
        if (!parent_first) {
            zg_dataset_free(h);
            zg_dataset_free(ds);
        }
    }
    zg_dataset *ds = index_dataset(5, 5);
    CHECK_NULL_ERR(zg_dataset_head(ds, 0), "zg_dataset_head: n = 0 out of range 1..5");
    CHECK_NULL_ERR(zg_dataset_head(ds, 6), "n = 6 out of range 1..5");
    CHECK_NULL_ERR(zg_dataset_head(NULL, 1), "data set is NULL");
    zg_dataset *whole = zg_dataset_head(ds, 5);
    CHECK(whole && zg_dataset_size(whole) == 5);
    zg_dataset_free(whole);
    zg_dataset_free(ds);
    zg_dataset_free(NULL);
    CHECK_ERR(zg_dataset_size(NULL), "zg_dataset_size: data set is NULL");
    CHECK_ERR(zg_dataset_num_classes(NULL), "zg_dataset_num_classes: data set is NULL");
    int64_t shape[ZG_MAX_DIMS];
    CHECK_ERR(zg_dataset_sample_shape(NULL, shape), "zg_dataset_sample_shape: data set is NULL");
}

/* ---- loader ------------------------------------------------------------------ */

static bool same_order(const int *a, const int *b, int n) { return memcmp(a, b, (size_t)n * sizeof *a) == 0; }

TEST(loader_order_from_seed) {
    enum { N = 103 };
    zg_dataset *ds = index_dataset(N, 10);
    if (!ds) return;
    zg_loader_opts o = plain_opts(10);
    o.shuffle = true;
    o.seed = 42;
    zg_loader *a = zg_loader_new(ds, &o);
    int ord[4][N], again[N], seen[N];
    uint64_t before[4], after[4];
    zg_rng_get_state(before);
    for (int e = 0; e < 4; e++) {
        CHECK_OK(zg_loader_start_epoch(a, e, 0));
        CHECK(epoch_indices(a, ord[e], N) == N);
        /* Each sample exactly once per epoch. */
        memset(seen, 0, sizeof seen);
        for (int i = 0; i < N; i++) seen[ord[e][i]]++;
        for (int i = 0; i < N; i++) CHECK(seen[i] == 1);
    }
    zg_rng_get_state(after);
    CHECK(memcmp(before, after, sizeof before) == 0); /* the global generator is untouched */
    /* A new order each epoch, and a shuffled one. */
    for (int e = 0; e < 4; e++)
        for (int f = e + 1; f < 4; f++) CHECK(!same_order(ord[e], ord[f], N));
    int identity = 0;
    for (int i = 0; i < N; i++) identity += ord[0][i] == i;
    CHECK(identity < 10);
    /* The same seed gives the same orders whatever the global generator
     * did in between, and in any epoch sequence. */
    zg_manual_seed(999);
    zg_tensor *noise = zg_randn((int64_t[]){100}, 1);
    zg_loader *b = zg_loader_new(ds, &o);
    CHECK_OK(zg_loader_start_epoch(b, 2, 0));
    CHECK(epoch_indices(b, again, N) == N && same_order(again, ord[2], N));
    CHECK_OK(zg_loader_start_epoch(b, 0, 0));
    CHECK(epoch_indices(b, again, N) == N && same_order(again, ord[0], N));
    zg_tensor_free(noise);
    /* Another seed, another order. */
    o.seed = 43;
    zg_loader *c = zg_loader_new(ds, &o);
    CHECK(epoch_indices(c, again, N) == N && !same_order(again, ord[0], N));
    /* Without shuffle: 0..N-1 every epoch. */
    o.shuffle = false;
    zg_loader *d = zg_loader_new(ds, &o);
    for (int e = 0; e < 2; e++) {
        CHECK_OK(zg_loader_start_epoch(d, e, 0));
        CHECK(epoch_indices(d, again, N) == N);
        for (int i = 0; i < N; i++) CHECK(again[i] == i);
    }
    zg_loader_free(a);
    zg_loader_free(b);
    zg_loader_free(c);
    zg_loader_free(d);
    zg_dataset_free(ds);
}

/* Fisher-Yates with unbiased draws: over 4000 epochs of 4 samples each
 * sample comes first about 1000 times (sd 27; the bound is 5.5 sd). */
TEST(loader_shuffle_is_uniform) {
    zg_dataset *ds = index_dataset(4, 4);
    if (!ds) return;
    zg_loader_opts o = plain_opts(4);
    o.shuffle = true;
    o.seed = 7;
    zg_loader *ld = zg_loader_new(ds, &o);
    int first[4] = {0}, pos_of_3[4] = {0};
    for (int e = 0; e < 4000; e++) {
        int idx[4];
        zg_loader_start_epoch(ld, e, 0);
        epoch_indices(ld, idx, 4);
        first[idx[0]]++;
        for (int i = 0; i < 4; i++)
            if (idx[i] == 3) pos_of_3[i]++;
    }
    for (int i = 0; i < 4; i++) {
        CHECK_NEAR(first[i], 1000, 150);
        CHECK_NEAR(pos_of_3[i], 1000, 150);
    }
    zg_loader_free(ld);
    zg_dataset_free(ds);
}

TEST(loader_drop_last_and_batch_shapes) {
    zg_dataset *ds = index_dataset(103, 10);
    if (!ds) return;
    for (int drop = 0; drop < 2; drop++) {
        zg_loader_opts o = plain_opts(10);
        o.drop_last = drop;
        o.shuffle = true;
        zg_loader *ld = zg_loader_new(ds, &o);
        CHECK(zg_loader_num_batches(ld) == (drop ? 10 : 11));
        zg_tensor *x, *y, *full_x = NULL, *short_x = NULL;
        for (int e = 0; e < 3; e++) {
            CHECK_OK(zg_loader_start_epoch(ld, e, 0));
            int nb = 0, total = 0, seen[103] = {0};
            CHECK(zg_loader_position(ld) == 0);
            while (zg_loader_next(ld, &x, &y) == 1) {
                int64_t b = zg_tensor_size(x, 0);
                CHECK(zg_tensor_ndim(x) == 2 && zg_tensor_size(x, 1) == 2);
                CHECK(zg_tensor_ndim(y) == 1 && zg_tensor_size(y, 0) == b);
                CHECK(b == (nb < 10 ? 10 : 3));
                for (int64_t i = 0; i < b; i++) {
                    int idx = (int)zg_tensor_data(x)[i * 2];
                    seen[idx]++;
                    CHECK(zg_tensor_data(x)[i * 2 + 1] == idx / 2.0f);
                    CHECK(zg_tensor_data_i64(y)[i] == idx % 10);
                }
                /* The same persistent tensors come back: no allocation per batch. */
                if (b == 10 && nb % 2 == 0) {
                    if (!full_x) full_x = x;
                    CHECK(x == full_x);
                }
                if (b == 3) {
                    if (!short_x) short_x = x;
                    CHECK(x == short_x && x != full_x);
                }
                nb++;
                total += (int)b;
                CHECK(zg_loader_position(ld) == nb);
            }
            CHECK(nb == (drop ? 10 : 11) && total == (drop ? 100 : 103));
            for (int i = 0; i < 103; i++) CHECK(seen[i] <= 1);
            /* After the end: 0 again until the next epoch starts, and NULLs. */
            CHECK(zg_loader_next(ld, &x, &y) == 0 && x == NULL && y == NULL);
        }
        zg_loader_free(ld);
    }
    /* A batch larger than the data set: one short batch (and no
     * allocation for the announced size), or none with drop_last. */
    zg_loader_opts o = plain_opts((int64_t)1 << 40);
    zg_loader *ld = zg_loader_new(ds, &o);
    CHECK_PTR(ld);
    CHECK(zg_loader_num_batches(ld) == 1);
    zg_tensor *x, *y;
    CHECK(zg_loader_next(ld, &x, &y) == 1 && zg_tensor_size(x, 0) == 103);
    zg_loader_free(ld);
    o.drop_last = true;
    ld = zg_loader_new(ds, &o);
    CHECK(zg_loader_num_batches(ld) == 0);
    CHECK(zg_loader_next(ld, &x, &y) == 0);
    zg_loader_free(ld);
    zg_dataset_free(ds);
}

TEST(loader_normalises_bytes) {
    tmpdir t;
    tmp_make(&t);
    const unsigned char pix[6] = {0, 1, 77, 128, 254, 255}, lab[1] = {4};
    uint32_t d3[3] = {1, 2, 3}, d1[1] = {1};
    unsigned char *b;
    size_t n = make_idx(&b, 8, 3, d3, pix, 6);
    write_bytes(path_in(&t, "i"), b, n);
    free(b);
    n = make_idx(&b, 8, 1, d1, lab, 1);
    write_bytes(path_in(&t, "l"), b, n);
    free(b);
    zg_dataset *ds = zg_dataset_load_idx(path_in(&t, "i"), path_in(&t, "l"));
    CHECK_PTR(ds);
    /* torch: v.float().div(255), then (x - 0.2860) / 0.3530 in float32. */
    const float fm[6] = {-0x1.9ed252p-1f, -0x1.992236p-1f, 0x1.726610p-5f,
                         0x1.393c26p-1f,  0x1.017a98p+1f,  0x1.02e69ep+1f};
    const float half[6] = {-2.0f, -1.984313726425171f, -0.7921568155288696f, 0.007843255996704102f,
                           1.984313726425171f, 2.0f};
    for (int k = 0; k < 2; k++) {
        zg_loader_opts o = plain_opts(1);
        o.mean = k ? 0.5f : 0.2860f;
        o.std = k ? 0.25f : 0.3530f;
        zg_loader *ld = zg_loader_new(ds, &o);
        zg_tensor *x, *y;
        CHECK(zg_loader_next(ld, &x, &y) == 1);
        CHECK_VALUES(x, k ? half : fm, 6, 0);
        CHECK(zg_tensor_data_i64(y)[0] == 4);
        zg_loader_free(ld);
    }
    zg_loader_opts o = plain_opts(1);
    o.std = 0;
    CHECK_NULL_ERR(zg_loader_new(ds, &o), "zg_loader_new: mean 0, std 0: uint8 samples become (v/255 - mean)/std");
    o.std = -1;
    CHECK_NULL_ERR(zg_loader_new(ds, &o), "std > 0");
    o.std = 1;
    o.mean = NAN;
    CHECK_NULL_ERR(zg_loader_new(ds, &o), "finite mean");
    zg_dataset_free(ds);
    tmp_remove(&t);
}

/* Copies of every batch of `epochs` epochs (x bytes then y bytes). */
typedef struct {
    unsigned char *buf;
    size_t len, cap;
    int batches;
} trace;

static void trace_add(trace *tr, zg_tensor *x, zg_tensor *y) {
    size_t nx = (size_t)zg_tensor_numel(x) * 4, ny = (size_t)zg_tensor_numel(y) * 8;
    if (tr->len + nx + ny + 16 > tr->cap) {
        tr->cap = (tr->len + nx + ny + 16) * 2;
        tr->buf = realloc(tr->buf, tr->cap);
    }
    int64_t hdr[2] = {zg_tensor_size(x, 0), zg_tensor_ndim(x)};
    memcpy(tr->buf + tr->len, hdr, 16);
    memcpy(tr->buf + tr->len + 16, zg_tensor_data(x), nx);
    memcpy(tr->buf + tr->len + 16 + nx, zg_tensor_data_i64(y), ny);
    tr->len += nx + ny + 16;
    tr->batches++;
}

/* Epoch e from batch `from` (to the end) into tr. */
static void run_epoch(zg_loader *ld, int64_t e, int64_t from, trace *tr) {
    CHECK_OK(zg_loader_start_epoch(ld, e, from));
    zg_tensor *x, *y;
    while (zg_loader_next(ld, &x, &y) == 1) trace_add(tr, x, y);
}

static bool same_trace(const trace *a, const trace *b) {
    return a->batches == b->batches && a->len == b->len && (a->len == 0 || memcmp(a->buf, b->buf, a->len) == 0);
}

static zg_loader_opts shuffled(int64_t batch, bool prefetch, bool drop_last) {
    zg_loader_opts o = {.batch_size = batch, .shuffle = true, .drop_last = drop_last, .seed = 1234,
                        .mean = 0.2860f, .std = 0.3530f, .prefetch = prefetch};
    return o;
}

TEST(loader_prefetch_is_bit_identical) {
    zg_dataset *ds = byte_dataset(257, 3);
    if (!ds) return;
    for (int drop = 0; drop < 2; drop++) {
        trace a = {0}, b = {0};
        zg_loader_opts o0 = shuffled(16, false, drop), o1 = shuffled(16, true, drop);
        zg_loader *l0 = zg_loader_new(ds, &o0), *l1 = zg_loader_new(ds, &o1);
        for (int e = 0; e < 3; e++) {
            run_epoch(l0, e, 0, &a);
            run_epoch(l1, e, 0, &b);
        }
        CHECK(a.batches == 3 * (drop ? 16 : 17));
        CHECK(same_trace(&a, &b));
        zg_loader_free(l0);
        zg_loader_free(l1);
        free(a.buf);
        free(b.buf);
    }
    zg_dataset_free(ds);
}

/* Resuming at (epoch, k) gives the batches k.. of the uninterrupted epoch,
 * with and without prefetch, also after an epoch abandoned half-way. */
TEST(loader_resume_mid_epoch) {
    zg_dataset *ds = byte_dataset(200, 11);
    if (!ds) return;
    zg_loader_opts ref_o = shuffled(32, false, false);
    zg_loader *ref = zg_loader_new(ds, &ref_o);
    CHECK(zg_loader_num_batches(ref) == 7);
    trace whole = {0};
    run_epoch(ref, 5, 0, &whole);
    for (int pf = 0; pf < 2; pf++) {
        for (int64_t k = 0; k <= 7; k++) {
            /* The reference's batches k.. */
            trace tail = {0}, got = {0};
            zg_tensor *x, *y;
            CHECK_OK(zg_loader_start_epoch(ref, 5, 0));
            for (int64_t i = 0; zg_loader_next(ref, &x, &y) == 1; i++)
                if (i >= k) trace_add(&tail, x, y);
            zg_loader_opts o = shuffled(32, pf, false);
            zg_loader *ld = zg_loader_new(ds, &o);
            /* Some batches of another epoch first, left unfinished. */
            CHECK_OK(zg_loader_start_epoch(ld, 1, 2));
            CHECK(zg_loader_next(ld, &x, &y) == 1);
            CHECK_OK(zg_loader_start_epoch(ld, 5, k));
            CHECK(zg_loader_position(ld) == k);
            while (zg_loader_next(ld, &x, &y) == 1) trace_add(&got, x, y);
            CHECK(got.batches == 7 - k);
            CHECK(same_trace(&tail, &got));
            zg_loader_free(ld);
            free(tail.buf);
            free(got.buf);
        }
    }
    zg_loader_free(ref);
    free(whole.buf);
    zg_dataset_free(ds);
}

/* Restarts at every point of an epoch with the worker running (including
 * right after creation and while it prepares a batch), compared with the
 * synchronous loader; then freed with a batch in preparation. */
TEST(loader_prefetch_restarts) {
    zg_dataset *ds = byte_dataset(300, 5);
    if (!ds) return;
    zg_loader_opts o0 = shuffled(8, false, false), o1 = shuffled(8, true, false);
    zg_loader *l0 = zg_loader_new(ds, &o0), *l1 = zg_loader_new(ds, &o1);
    zg_tensor *x0, *y0, *x1, *y1;
    int mismatches = 0;
    for (int round = 0; round < 60; round++) {
        int64_t e = round % 4, k = (round * 7) % 38, steps = round % 5;
        CHECK_OK(zg_loader_start_epoch(l0, e, k));
        CHECK_OK(zg_loader_start_epoch(l1, e, k));
        for (int s = 0; s < steps; s++) {
            int r0 = zg_loader_next(l0, &x0, &y0), r1 = zg_loader_next(l1, &x1, &y1);
            CHECK(r0 == r1);
            if (r0 != 1 || r1 != 1) break;
            if (zg_tensor_numel(x0) != zg_tensor_numel(x1) ||
                memcmp(zg_tensor_data(x0), zg_tensor_data(x1), (size_t)zg_tensor_numel(x0) * 4) != 0 ||
                memcmp(zg_tensor_data_i64(y0), zg_tensor_data_i64(y1), (size_t)zg_tensor_numel(y0) * 8) != 0)
                mismatches++;
        }
    }
    CHECK(mismatches == 0);
    zg_loader_free(l0);
    zg_loader_free(l1);
    for (int i = 0; i < 20; i++) { /* free at once, or with a batch in flight */
        zg_loader *l = zg_loader_new(ds, &o1);
        for (int s = 0; s < i % 3; s++) zg_loader_next(l, &x1, &y1);
        zg_loader_free(l);
    }
    zg_dataset_free(ds);
}

/* zg_loader_wait_seconds: the seconds zg_loader_next blocked for a batch
 * not prepared yet, summed since the loader was made: never decreasing,
 * kept across epochs, within the calls' own time; without prefetch every
 * batch is prepared in the call, so it is not 0. (No bound on how much
 * the worker hides: that depends on the machine's load.) */
TEST(loader_wait_counts_the_unhidden_preparation) {
    zg_dataset *ds = byte_dataset(256, 7);
    if (!ds) return;
    for (int pf = 0; pf < 2; pf++) {
        zg_loader_opts o = shuffled(16, pf, false);
        zg_loader *ld = zg_loader_new(ds, &o);
        if (!ld) break;
        CHECK(zg_loader_wait_seconds(ld) == 0);
        zg_tensor *x, *y;
        double prev = 0, in_calls = 0;
        for (int e = 0; e < 2; e++) {
            CHECK_OK(zg_loader_start_epoch(ld, e, 0));
            CHECK(zg_loader_wait_seconds(ld) == prev); /* a new epoch keeps the sum */
            for (;;) {
                struct timespec a, b;
                clock_gettime(CLOCK_MONOTONIC, &a);
                int got = zg_loader_next(ld, &x, &y);
                clock_gettime(CLOCK_MONOTONIC, &b);
                in_calls += (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
                if (got != 1) break;
                double w = zg_loader_wait_seconds(ld);
                if (w < prev)
                    zgt_fail(__FILE__, __LINE__, "prefetch %d, epoch %d: the wait went %g -> %g", pf, e, prev, w);
                prev = w;
            }
        }
        CHECK(prev <= in_calls);
        if (!pf) CHECK(prev > 0); /* 32 preparations took some time */
        zg_loader_free(ld);
    }
    CHECK(zg_loader_wait_seconds(NULL) < 0 && strstr(zg_last_error(), "loader is NULL"));
    zg_dataset_free(ds);
}

TEST(loader_batches_bump_versions) {
    zg_dataset *ds = index_dataset(20, 3);
    if (!ds) return;
    zg_loader_opts o = plain_opts(5);
    zg_loader *ld = zg_loader_new(ds, &o);
    zg_tensor *x, *y;
    CHECK(zg_loader_next(ld, &x, &y) == 1);
    zg_tensor *first = x;
    uint64_t v = zg_tensor_version(x);
    CHECK(zg_loader_next(ld, &x, &y) == 1);
    CHECK(zg_loader_next(ld, &x, &y) == 1);
    CHECK(x == first && zg_tensor_version(x) > v);
    CHECK(!zg_tensor_requires_grad(x));
    zg_loader_free(ld);
    zg_dataset_free(ds);
}

TEST(loader_rejects_bad_arguments) {
    zg_dataset *ds = index_dataset(10, 2);
    if (!ds) return;
    zg_loader_opts o = plain_opts(0);
    CHECK_NULL_ERR(zg_loader_new(ds, &o), "zg_loader_new: batch_size 0 must be >= 1");
    CHECK_NULL_ERR(zg_loader_new(NULL, &o), "zg_loader_new: data set is NULL");
    CHECK_NULL_ERR(zg_loader_new(ds, NULL), "zg_loader_new: opts is NULL");
    o.batch_size = 3;
    zg_loader *ld = zg_loader_new(ds, &o);
    CHECK(zg_loader_num_batches(ld) == 4);
    CHECK_ERR(zg_loader_start_epoch(ld, -1, 0), "zg_loader_start_epoch: epoch -1 < 0");
    CHECK_ERR(zg_loader_start_epoch(ld, 0, 5), "start_batch 5 out of range 0..4");
    CHECK_ERR(zg_loader_start_epoch(ld, 0, -1), "start_batch -1 out of range");
    CHECK_ERR(zg_loader_start_epoch(NULL, 0, 0), "loader is NULL");
    zg_tensor *x, *y;
    CHECK_ERR(zg_loader_next(ld, NULL, &y), "zg_loader_next: x is NULL");
    CHECK_ERR(zg_loader_next(ld, &x, NULL), "zg_loader_next: y is NULL");
    CHECK_ERR(zg_loader_next(NULL, &x, &y), "zg_loader_next: loader is NULL");
    CHECK_ERR(zg_loader_num_batches(NULL), "loader is NULL");
    CHECK_ERR(zg_loader_position(NULL), "loader is NULL");
    CHECK_OK(zg_loader_start_epoch(ld, 0, 4)); /* the end: nothing left */
    CHECK(zg_loader_next(ld, &x, &y) == 0);
    zg_loader_free(ld);
    zg_loader_free(NULL);
    zg_dataset_free(ds);
}
