/* Your data: CSV tables with a header (columns by name or index, class or
 * regression targets, the task chosen from the targets), image folders
 * in ImageFolder's layout (PNG and JPEG, grey and colour, class order,
 * walk order, [C, H, W] values), the seeded split, per-feature and
 * per-channel statistics and the normalization the loader applies, the
 * decoding in the prefetch thread, images of several sizes resized as
 * torchvision's Resize(antialias=False) resizes uint8 tensors (PyTorch
 * live: tests/parity/resize_reference.py), and a one-line error naming the
 * file (and line) for every kind of bad input. */
#include "harness.h"
#include "image_writer.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* dir/name in a rotating static buffer. */
static const char *at(const char *dir, const char *name) {
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

static void write_text(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(s, 1, strlen(s), f) != strlen(s)) zgt_fail(__FILE__, __LINE__, "cannot write %s", path);
    if (f) fclose(f);
}

static zg_loader_opts plain(int64_t batch) {
    return (zg_loader_opts){.batch_size = batch, .shuffle = false, .seed = 0, .mean = 0, .std = 1, .prefetch = false};
}

/* The whole data set as one batch (copied into x, y when given). */
static void one_batch(zg_dataset *ds, float *x, void *y, bool prefetch) {
    zg_loader_opts o = plain(zg_dataset_size(ds));
    o.prefetch = prefetch;
    zg_loader *ld = zg_loader_new(ds, &o);
    CHECK_PTR(ld);
    zg_tensor *bx, *by;
    if (ld && zg_loader_next(ld, &bx, &by) == 1) {
        if (x) memcpy(x, zg_tensor_data(bx), (size_t)zg_tensor_numel(bx) * sizeof(float));
        if (y) memcpy(y, zg_tensor_dtype(by) == ZG_FLOAT32 ? (void *)zg_tensor_data(by) : (void *)zg_tensor_data_i64(by),
                      (size_t)zg_tensor_numel(by) * 8 / (zg_tensor_dtype(by) == ZG_FLOAT32 ? 2 : 1));
    } else {
        zgt_fail(__FILE__, __LINE__, "no batch: %s", zg_last_error());
    }
    zg_loader_free(ld);
}

/* ---- tables ------------------------------------------------------------------ */

TEST(table_reads_names_and_class_targets) {
    char *d = zgt_temp_dir();
    if (!d) return;
    write_text(at(d, "iris.csv"), "sepal,\"pe\"\"tal\",species,w\n1.5,2,1,-1\n3,4,0,2\n5,6,2,0.5\n");
    zg_csv_opts o = {.target = "species"};
    zg_dataset *ds = zg_dataset_load_table(at(d, "iris.csv"), &o);
    CHECK_PTR(ds);
    if (ds) {
        int64_t shape[ZG_MAX_DIMS];
        CHECK(zg_dataset_sample_shape(ds, shape) == 1 && shape[0] == 3);
        CHECK(zg_dataset_size(ds) == 3 && zg_dataset_num_classes(ds) == 3);
        CHECK(zg_dataset_task(ds) == ZG_TASK_CLASSIFY);
        CHECK(!strcmp(zg_dataset_feature_name(ds, 0), "sepal") && !strcmp(zg_dataset_feature_name(ds, 1), "pe\"tal") &&
              !strcmp(zg_dataset_feature_name(ds, 2), "w") && zg_dataset_feature_name(ds, 3) == NULL);
        CHECK(!strcmp(zg_dataset_target_name(ds), "species"));
        float x[9];
        int64_t y[3];
        one_batch(ds, x, y, false);
        const float xs[9] = {1.5f, 2, -1, 3, 4, 2, 5, 6, 0.5f};
        for (int i = 0; i < 9; i++) CHECK(x[i] == xs[i]);
        CHECK(y[0] == 1 && y[1] == 0 && y[2] == 2);
    }
    zg_dataset_free(ds);
    /* The same column by its 0-based index. */
    o.target = "2";
    ds = zg_dataset_load_table(at(d, "iris.csv"), &o);
    CHECK(ds && zg_dataset_task(ds) == ZG_TASK_CLASSIFY && !strcmp(zg_dataset_target_name(ds), "species"));
    zg_dataset_free(ds);
    zgt_remove_dir(d);
}

TEST(table_regression_targets_and_the_task) {
    char *d = zgt_temp_dir();
    if (!d) return;
    write_text(at(d, "r.csv"), "a,b,y\n1,2,0.5\n3,4,-2\n5,6,7\n");
    zg_csv_opts o = {.target = "y"};
    /* AUTO: one target is not an integer, so the task is regression. */
    zg_dataset *ds = zg_dataset_load_table(at(d, "r.csv"), &o);
    CHECK(ds && zg_dataset_task(ds) == ZG_TASK_REGRESS && zg_dataset_num_classes(ds) == 0);
    if (ds) {
        zg_loader_opts lo = plain(2);
        zg_loader *ld = zg_loader_new(ds, &lo);
        zg_tensor *x, *y;
        CHECK(ld && zg_loader_next(ld, &x, &y) == 1);
        if (ld) {
            CHECK(zg_tensor_dtype(y) == ZG_FLOAT32 && zg_tensor_ndim(y) == 2 && zg_tensor_size(y, 0) == 2 &&
                  zg_tensor_size(y, 1) == 1);
            CHECK(zg_tensor_data(y)[0] == 0.5f && zg_tensor_data(y)[1] == -2.0f);
            CHECK(zg_loader_next(ld, &x, &y) == 1 && zg_tensor_size(y, 0) == 1 && zg_tensor_data(y)[0] == 7.0f);
        }
        zg_loader_free(ld);
    }
    zg_dataset_free(ds);
    /* Integer targets: AUTO classifies, REGRESS is asked for explicitly. */
    write_text(at(d, "i.csv"), "a,y\n1,2\n3,0\n");
    ds = zg_dataset_load_table(at(d, "i.csv"), &(zg_csv_opts){.target = "y"});
    CHECK(ds && zg_dataset_task(ds) == ZG_TASK_CLASSIFY && zg_dataset_num_classes(ds) == 3);
    zg_dataset_free(ds);
    ds = zg_dataset_load_table(at(d, "i.csv"), &(zg_csv_opts){.target = "y", .task = ZG_TASK_REGRESS});
    CHECK(ds && zg_dataset_task(ds) == ZG_TASK_REGRESS);
    zg_dataset_free(ds);
    zgt_remove_dir(d);
}

TEST(table_picks_features_by_name) {
    char *d = zgt_temp_dir();
    if (!d) return;
    /* The prediction side: the model's features in its order; the target
     * and the other columns (text here) are not read. */
    write_text(at(d, "p.csv"), "id,b,label,a\nx17,2,?,1\ny,4,,3\n");
    const char *const feats[2] = {"a", "b"};
    zg_dataset *ds = zg_dataset_load_table(at(d, "p.csv"), &(zg_csv_opts){.features = feats, .n_features = 2});
    CHECK_PTR(ds);
    if (ds) {
        float x[4];
        int64_t y[2];
        one_batch(ds, x, y, false);
        CHECK(x[0] == 1 && x[1] == 2 && x[2] == 3 && x[3] == 4);
        CHECK(y[0] == 0 && y[1] == 0); /* no target: every label 0 */
        CHECK(zg_dataset_target_name(ds) == NULL && !strcmp(zg_dataset_feature_name(ds, 0), "a"));
    }
    zg_dataset_free(ds);
    zgt_remove_dir(d);
}

/* A load that must fail: one line of error text with msg, naming file. */
static void check_load_failed(zg_dataset *ds, const char *msg, const char *file, int line) {
    if (ds) {
        zgt_fail(__FILE__, line, "the data loaded, expected an error with \"%s\"", msg);
        zg_dataset_free(ds);
        return;
    }
    const char *e = zg_last_error();
    if (!strstr(e, msg)) zgt_fail(__FILE__, line, "error \"%s\" does not mention \"%s\"", e, msg);
    if (!strstr(e, file) || strchr(e, '\n')) zgt_fail(__FILE__, line, "error \"%s\" is not one line naming %s", e, file);
}

static void expect_table_error(const char *dir, const char *text, zg_csv_opts o, const char *msg, int line) {
    const char *p = at(dir, "bad.csv");
    write_text(p, text);
    zg_clear_error();
    check_load_failed(zg_dataset_load_table(p, &o), msg, p, line);
}
#define EXPECT_TABLE_ERROR(text, target, task, msg) \
    expect_table_error(d, text, (zg_csv_opts){target, task, NULL, 0}, msg, __LINE__)

TEST(table_rejects_bad_input) {
    char *d = zgt_temp_dir();
    if (!d) return;
    EXPECT_TABLE_ERROR("a,b,y\n1,2,0\n", "z", 0, "no column 'z' in the header (it has 'a', 'b', 'y')");
    EXPECT_TABLE_ERROR("a,b,y\n1,2,0\n", "3", 0, "target column 3 out of range for 3 columns");
    EXPECT_TABLE_ERROR("a,a,y\n1,2,0\n", "y", 0, "columns 1 and 2 are both called 'a'");
    EXPECT_TABLE_ERROR("y,a,y\n1,2,0\n", "y", 0, "columns 1 and 3 are both called 'y'");
    EXPECT_TABLE_ERROR("a,y\n1,0\n2,x\n", "y", 0, "line 3, column 2: label 'x' is not a number");
    EXPECT_TABLE_ERROR("a,y\n1,0.5\nq,1\n", "y", 0, "line 3, column 1: 'q' is not a number");
    EXPECT_TABLE_ERROR("a,y\n1,0\n2,1.5\n", "y", ZG_TASK_CLASSIFY, "line 3, column 2: label '1.5' is not an integer");
    EXPECT_TABLE_ERROR("a,y\n1,0\n2,-1\n", "y", 0, "line 3, column 2: label '-1' is negative");
    EXPECT_TABLE_ERROR("a,y\n1,1e39\n", "y", ZG_TASK_REGRESS, "line 2, column 2: '1e39' is out of the float32 range");
    EXPECT_TABLE_ERROR("a,y\n1,nan\n", "y", ZG_TASK_REGRESS, "line 2, column 2: 'nan': NaN or infinite");
    EXPECT_TABLE_ERROR("a,y\n1,2\n3\n", "y", 0, "line 3 has 1 columns, expected 2 (as the header on line 1)");
    EXPECT_TABLE_ERROR("y\n1\n", "y", 0, "no feature columns");
    EXPECT_TABLE_ERROR("a,y\n", "y", 0, "no data rows after the header line");
    const char *const feats[1] = {"b"};
    expect_table_error(d, "a,y\n1,2\n", (zg_csv_opts){NULL, 0, feats, 1},
                       "no column 'b' (a feature the model takes) in the header", __LINE__);
    CHECK_NULL_ERR(zg_dataset_load_table(at(d, "none.csv"), &(zg_csv_opts){.target = "y"}), "cannot open");
    CHECK_NULL_ERR(zg_dataset_load_table(NULL, &(zg_csv_opts){0}), "zg_dataset_load_table: path is NULL");
    zgt_remove_dir(d);
}

/* ---- the split, statistics, normalization --------------------------------------- */

/* Rows "i, 2i, i % 3". */
static zg_dataset *rows_dataset(const char *d, int n) {
    char *s = malloc((size_t)n * 32 + 16), *p = s;
    p += sprintf(p, "a,b,y\n");
    for (int i = 0; i < n; i++) p += sprintf(p, "%d,%d,%d\n", i, 2 * i, i % 3);
    write_text(at(d, "rows.csv"), s);
    free(s);
    zg_dataset *ds = zg_dataset_load_table(at(d, "rows.csv"), &(zg_csv_opts){.target = "y"});
    CHECK_PTR(ds);
    return ds;
}

/* Feature a of each sample, in order. */
static void feature_a(zg_dataset *ds, int *out) {
    int64_t n = zg_dataset_size(ds);
    float *x = malloc((size_t)n * 2 * sizeof *x);
    one_batch(ds, x, NULL, false);
    for (int64_t i = 0; i < n; i++) out[i] = (int)x[2 * i];
    free(x);
}

TEST(split_is_seeded_disjoint_and_ordered) {
    char *d = zgt_temp_dir();
    zg_dataset *ds = d ? rows_dataset(d, 50) : NULL;
    if (!ds) return;
    zg_dataset *tr, *va, *tr2, *va2, *tr3, *va3;
    CHECK_OK(zg_dataset_split(ds, 0.2, 7, &tr, &va));
    CHECK_OK(zg_dataset_split(ds, 0.2, 7, &tr2, &va2));
    CHECK_OK(zg_dataset_split(ds, 0.2, 8, &tr3, &va3));
    if (tr && va && tr2 && va2 && tr3 && va3) {
        CHECK(zg_dataset_size(tr) == 40 && zg_dataset_size(va) == 10);
        CHECK(zg_dataset_num_classes(va) == 3);
        int a[40], b[10], a2[40], b2[10], b3[10], seen[50] = {0};
        feature_a(tr, a);
        feature_a(va, b);
        feature_a(tr2, a2);
        feature_a(va2, b2);
        feature_a(va3, b3);
        CHECK(!memcmp(a, a2, sizeof a) && !memcmp(b, b2, sizeof b)); /* from the seed alone */
        CHECK(memcmp(b, b3, sizeof b) != 0);                         /* another seed, other rows */
        for (int i = 0; i < 40; i++) seen[a[i]]++;
        for (int i = 0; i < 10; i++) seen[b[i]]++;
        for (int i = 0; i < 50; i++) CHECK(seen[i] == 1);
        for (int i = 1; i < 40; i++) CHECK(a[i] > a[i - 1]);
        for (int i = 1; i < 10; i++) CHECK(b[i] > b[i - 1]);
        bool last_rows = b[0] == 40; /* not simply the file's last rows */
        CHECK(!last_rows);
    }
    zg_dataset *x = NULL, *y = NULL;
    CHECK_ERR(zg_dataset_split(ds, 1.0, 0, &x, &y), "must lie in (0, 1)");
    CHECK_ERR(zg_dataset_split(ds, 0.001, 0, &x, &y), "leaves the validation part empty");
    zg_dataset_free(tr), zg_dataset_free(va), zg_dataset_free(tr2), zg_dataset_free(va2);
    zg_dataset_free(tr3), zg_dataset_free(va3), zg_dataset_free(ds);
    zgt_remove_dir(d);
}

TEST(table_statistics_and_normalization) {
    char *d = zgt_temp_dir();
    if (!d) return;
    write_text(at(d, "s.csv"), "a,c,y\n1,5,0\n2,5,1\n4,5,0\n");
    zg_dataset *ds = zg_dataset_load_table(at(d, "s.csv"), &(zg_csv_opts){.target = "y"});
    CHECK_PTR(ds);
    if (!ds) return;
    float m[2], s[2];
    CHECK_OK(zg_dataset_compute_stats(ds, m, s));
    /* a: mean 7/3, population std sqrt(14/9); c is constant: std 1. */
    CHECK(m[0] == (float)(7.0 / 3.0) && s[0] == (float)sqrt(14.0 / 9.0));
    CHECK(m[1] == 5.0f && s[1] == 1.0f);
    CHECK_OK(zg_dataset_set_normalization(ds, m, s));
    zg_dataset *h = zg_dataset_head(ds, 2); /* a view keeps it */
    float x[6], xh[4];
    one_batch(ds, x, NULL, false);
    one_batch(h, xh, NULL, true);
    const float raw[6] = {1, 5, 2, 5, 4, 5};
    for (int i = 0; i < 6; i++) CHECK(x[i] == (raw[i] - m[i % 2]) / s[i % 2]);
    CHECK(!memcmp(x, xh, sizeof xh));
    CHECK_ERR(zg_dataset_set_normalization(ds, m, NULL), "give both mean and std");
    s[1] = 0;
    CHECK_ERR(zg_dataset_set_normalization(ds, m, s), "entry 1: mean 5, std 0");
    CHECK_OK(zg_dataset_set_normalization(ds, NULL, NULL));
    one_batch(ds, x, NULL, false);
    CHECK(!memcmp(x, raw, sizeof raw));
    zg_dataset_free(h);
    zg_dataset_free(ds);
    zgt_remove_dir(d);
}

/* ---- image folders --------------------------------------------------------------- */

#define W 5
#define H 4

static void mk(const char *p) {
    if (mkdir(p, 0755) != 0) zgt_fail(__FILE__, __LINE__, "mkdir %s", p);
}

/* root/<class>/... with PNG files of pattern seeds; returns root. */
static void grey_png(const char *path, int seed) {
    uint8_t px[W * H];
    zgt_pattern(px, W, H, 1, seed);
    zgt_write_png(path, px, W, H, 1, false, false);
}

TEST(image_folder_order_values_and_layout) {
    char *d = zgt_temp_dir();
    if (!d) return;
    /* Classes sorted by bytes ("B" before "a"); in a class the sorted
     * (folder, name) pairs of os.walk: "a/x.png" before "a/y/..." before
     * "a/y z/...", since ' ' < '/'; notes.txt is skipped. */
    mk(at(d, "a")), mk(at(d, "B")), mk(at(d, "a/y")), mk(at(d, "a/y z"));
    grey_png(at(d, "B/1.PNG"), 1);
    grey_png(at(d, "a/x.png"), 2);
    grey_png(at(d, "a/y/0.png"), 3);
    grey_png(at(d, "a/y z/0.png"), 4);
    write_text(at(d, "a/notes.txt"), "not an image");
    write_text(at(d, "readme"), "beside the classes");
    zg_dataset *ds = zg_dataset_load_image_folder(d, &(zg_image_opts){0});
    CHECK_PTR(ds);
    if (ds) {
        int64_t shape[ZG_MAX_DIMS];
        CHECK(zg_dataset_sample_shape(ds, shape) == 3 && shape[0] == 1 && shape[1] == H && shape[2] == W);
        CHECK(zg_dataset_size(ds) == 4 && zg_dataset_num_classes(ds) == 2);
        CHECK(!strcmp(zg_dataset_class_name(ds, 0), "B") && !strcmp(zg_dataset_class_name(ds, 1), "a"));
        CHECK(strstr(zg_dataset_sample_name(ds, 0), "B/1.PNG") && strstr(zg_dataset_sample_name(ds, 1), "a/x.png") &&
              strstr(zg_dataset_sample_name(ds, 2), "a/y/0.png") && strstr(zg_dataset_sample_name(ds, 3), "a/y z/0.png"));
        float x[4 * W * H], xp[4 * W * H];
        int64_t y[4];
        one_batch(ds, x, y, false);
        one_batch(ds, xp, NULL, true); /* decoded in the prefetch thread: the same */
        CHECK(!memcmp(x, xp, sizeof x));
        CHECK(y[0] == 0 && y[1] == 1 && y[2] == 1 && y[3] == 1);
        const int seeds[4] = {1, 2, 3, 4};
        for (int i = 0; i < 4; i++) {
            uint8_t px[W * H];
            zgt_pattern(px, W, H, 1, seeds[i]);
            for (int p = 0; p < W * H; p++) CHECK(x[i * W * H + p] == (float)px[p] / 255.0f);
        }
    }
    zg_dataset_free(ds);
    zgt_remove_dir(d);
}

TEST(image_folder_colour_grey_alpha_and_jpeg) {
    char *d = zgt_temp_dir();
    if (!d) return;
    mk(at(d, "c"));
    uint8_t rgb[W * H * 3], rgba[W * H * 4], grey[W * H], ga[W * H * 2];
    zgt_pattern(rgb, W, H, 3, 5);
    zgt_pattern(rgba, W, H, 4, 6);
    zgt_pattern(grey, W, H, 1, 7);
    zgt_pattern(ga, W, H, 2, 8);
    zgt_write_png(at(d, "c/0.png"), rgb, W, H, 3, false, false);
    zgt_write_png(at(d, "c/1.png"), rgba, W, H, 4, true, true); /* 16-bit, interlaced, alpha dropped */
    zgt_write_png(at(d, "c/2.png"), grey, W, H, 1, false, false);
    zgt_write_png(at(d, "c/3.png"), ga, W, H, 2, false, false);
    zgt_write_jpeg(at(d, "c/4.jpg"), rgb, W, H, 3, 100);
    zg_dataset *ds = zg_dataset_load_image_folder(d, &(zg_image_opts){0});
    CHECK_PTR(ds);
    if (ds) {
        int64_t shape[ZG_MAX_DIMS];
        CHECK(zg_dataset_sample_shape(ds, shape) == 3 && shape[0] == 3); /* one colour image makes C 3 */
        float x[5 * 3 * W * H];
        one_batch(ds, x, NULL, true);
        const int hw = W * H;
        for (int p = 0; p < hw; p++)
            for (int c = 0; c < 3; c++) {
                CHECK(x[0 * 3 * hw + c * hw + p] == rgb[p * 3 + c] / 255.0f);
                CHECK(x[1 * 3 * hw + c * hw + p] == rgba[p * 4 + c] / 255.0f);
                CHECK(x[2 * 3 * hw + c * hw + p] == grey[p] / 255.0f); /* grey repeated */
                CHECK(x[3 * 3 * hw + c * hw + p] == ga[p * 2] / 255.0f);
                CHECK(fabsf(x[4 * 3 * hw + c * hw + p] - rgb[p * 3 + c] / 255.0f) <= 24 / 255.0f); /* lossy */
            }
    }
    zg_dataset_free(ds);
    /* channels 1: colour becomes PIL's L = (19595 R + 38470 G + 7471 B + 2^15) >> 16. */
    ds = zg_dataset_load_image_folder(d, &(zg_image_opts){.channels = 1});
    CHECK_PTR(ds);
    if (ds) {
        float x[5 * W * H];
        one_batch(ds, x, NULL, false);
        for (int p = 0; p < W * H; p++) {
            uint32_t l = (19595u * rgb[3 * p] + 38470u * rgb[3 * p + 1] + 7471u * rgb[3 * p + 2] + 0x8000u) >> 16;
            CHECK(x[p] == (float)l / 255.0f);
            CHECK(x[2 * W * H + p] == grey[p] / 255.0f);
        }
    }
    zg_dataset_free(ds);
    zgt_remove_dir(d);
}

TEST(image_statistics_and_normalization) {
    char *d = zgt_temp_dir();
    if (!d) return;
    mk(at(d, "k0")), mk(at(d, "k1"));
    uint8_t a[W * H * 3], b[W * H];
    zgt_pattern(a, W, H, 3, 1);
    zgt_pattern(b, W, H, 1, 2);
    zgt_write_png(at(d, "k0/a.png"), a, W, H, 3, false, false);
    zgt_write_png(at(d, "k1/b.png"), b, W, H, 1, false, false);
    zg_dataset *ds = zg_dataset_load_image_folder(d, &(zg_image_opts){0});
    CHECK_PTR(ds);
    if (!ds) return;
    float m[3], s[3];
    CHECK_OK(zg_dataset_compute_stats(ds, m, s));
    const int hw = W * H;
    for (int c = 0; c < 3; c++) { /* over both images' pixels of channel c, of v / 255 */
        double sum = 0, ss = 0;
        for (int p = 0; p < hw; p++) sum += a[3 * p + c] / 255.0 + b[p] / 255.0;
        const double mean = sum / (2 * hw);
        for (int p = 0; p < hw; p++)
            ss += pow(a[3 * p + c] / 255.0 - mean, 2) + pow(b[p] / 255.0 - mean, 2);
        CHECK_NEAR(m[c], mean, 1e-7);
        CHECK_NEAR(s[c], sqrt(ss / (2 * hw)), 1e-7);
    }
    /* The loader: torchvision's ToTensor then Normalize, in float32. */
    CHECK_OK(zg_dataset_set_normalization(ds, m, s));
    float x[2 * 3 * W * H];
    one_batch(ds, x, NULL, true);
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < hw; p++) CHECK(x[c * hw + p] == ((float)a[3 * p + c] / 255.0f - m[c]) / s[c]);
    /* A subset's statistics are its own images'. */
    zg_dataset *tr, *va;
    CHECK_OK(zg_dataset_split(ds, 0.5, 3, &tr, &va));
    if (tr && va) {
        zg_dataset *grey_part = zg_dataset_sample_name(tr, 0)[strlen(zg_dataset_sample_name(tr, 0)) - 5] == 'b' ? tr : va;
        CHECK_OK(zg_dataset_compute_stats(grey_part, m, s));
        CHECK(m[0] == m[1] && m[1] == m[2]);
    }
    zg_dataset_free(tr), zg_dataset_free(va), zg_dataset_free(ds);
    zgt_remove_dir(d);
}

static void expect_image_error(const char *root, const zg_image_opts *o, const char *msg, const char *file, int line) {
    zg_clear_error();
    check_load_failed(zg_dataset_load_image_folder(root, o), msg, file, line);
}

/* A fresh folder with class k holding one good image, then `bad` written
 * by the caller. */
static char *fresh(void) {
    char *d = zgt_temp_dir();
    if (d) {
        mk(at(d, "k"));
        grey_png(at(d, "k/a.png"), 1);
    }
    return d;
}

static const char *const resize_files[] = {"resize"};
static const char *const resize_sources[] = {"tests/parity/resize_reference.py", "tests/parity/torch_reference.py"};
static zgt_refset resize_refs = {resize_sources, 2, resize_files, 1, NULL, 0};

/* A folder of images of several sizes, resized to one: every byte is
 * PyTorch's (a tie of the interpolation at .5, where float rounding may
 * fall either way, may differ by 1); without a size it is an error that
 * names the option. */
TEST(image_folder_resizes_as_torchvision) {
    zg_safetensors *st = zgt_refs_open(&resize_refs, "resize");
    if (!st) return;
    char *d = zgt_temp_dir();
    const char *cases = zg_safetensors_metadata(st, "cases");
    CHECK(d && cases);
    if (!d || !cases) {
        zg_safetensors_free(st);
        return;
    }
    mk(at(d, "a"));
    int n = 0, h, w, k, seed, used;
    for (const char *c = cases; sscanf(c, "%d,%d,%d,%d%n", &h, &w, &k, &seed, &used) == 4; n++) {
        uint8_t *px = malloc((size_t)(h * w * k));
        char name[32];
        snprintf(name, sizeof name, "a/%d.png", n);
        if (px) zgt_pattern(px, w, h, k, seed);
        CHECK(px && zgt_write_png(at(d, name), px, w, h, k, false, false));
        free(px);
        c += used + (c[used] == ';');
    }
    CHECK_NULL_ERR(zg_dataset_load_image_folder(d, &(zg_image_opts){0}), "--image-size H,W resizes every image");
    zg_dataset *ds = zg_dataset_load_image_folder(d, &(zg_image_opts){.height = 6, .width = 7});
    CHECK_PTR(ds);
    float *x = malloc((size_t)n * 3 * 6 * 7 * sizeof *x);
    if (ds && x) {
        one_batch(ds, x, NULL, true);
        for (int i = 0; i < n; i++) {
            zg_tensor *raw = zgt_ref_get(st, "raw.%d", i), *out = zgt_ref_get(st, "out.%d", i);
            if (!raw || !out) continue;
            int bad = 0;
            for (int p = 0; p < 3 * 6 * 7; p++) {
                const float got = roundf(x[i * 3 * 6 * 7 + p] * 255), want = zg_tensor_data(out)[p];
                const float r = zg_tensor_data(raw)[p];
                const bool tie = fabsf(r - floorf(r) - 0.5f) < 1e-3f;
                bad += got != want && !(tie && fabsf(got - want) == 1);
            }
            if (bad) zgt_fail(__FILE__, __LINE__, "image %d: %d of %d bytes differ from PyTorch's", i, bad, 3 * 6 * 7);
        }
    }
    free(x);
    zg_dataset_free(ds);
    zg_safetensors_free(st);
    zgt_remove_dir(d);
}

TEST(image_folder_rejects_bad_files) {
    const zg_image_opts o = {0};
    char *d = fresh();
    if (!d) return;
    /* Cut short, damaged, not an image, empty. */
    FILE *f = fopen(at(d, "k/a.png"), "rb");
    uint8_t buf[4096];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    f = fopen(at(d, "k/b.png"), "wb");
    if (f) fwrite(buf, 1, n - 20, f), fclose(f);
    expect_image_error(d, &o, "PNG: ", "k/b.png", __LINE__);
    buf[n / 2] ^= 0x55; /* a CRC or zlib error */
    f = fopen(at(d, "k/b.png"), "wb");
    if (f) fwrite(buf, 1, n, f), fclose(f);
    expect_image_error(d, &o, "PNG: ", "k/b.png", __LINE__);
    write_text(at(d, "k/b.png"), "hello");
    expect_image_error(d, &o, "not a PNG or JPEG file", "k/b.png", __LINE__);
    write_text(at(d, "k/b.png"), "");
    expect_image_error(d, &o, "empty file", "k/b.png", __LINE__);
    unlink(at(d, "k/b.png"));
    /* A JPEG cut in the middle of its data. */
    uint8_t rgb[W * H * 3 * 16];
    zgt_pattern(rgb, 4 * W, 4 * H, 3, 9);
    zgt_write_jpeg(at(d, "k/c.jpg"), rgb, 4 * W, 4 * H, 3, 90);
    f = fopen(at(d, "k/c.jpg"), "rb");
    n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    f = fopen(at(d, "k/c.jpg"), "wb");
    if (f) fwrite(buf, 1, n * 2 / 3, f), fclose(f);
    /* Resized or not, the cut JPEG is refused. */
    expect_image_error(d, &(zg_image_opts){.height = 4 * H, .width = 4 * W}, "JPEG: ", "k/c.jpg", __LINE__);
    unlink(at(d, "k/a.png"));
    expect_image_error(d, &o, "JPEG: ", "k/c.jpg", __LINE__);
    uint8_t cmyk[W * H * 4];
    zgt_pattern(cmyk, W, H, 4, 2);
    zgt_write_jpeg(at(d, "k/c.jpg"), cmyk, W, H, 4, 90);
    expect_image_error(d, &o, "JPEG with 4 colour components (CMYK?)", "k/c.jpg", __LINE__);
    zgt_remove_dir(d);
    /* Another size, an unsupported format, an empty class, no classes. */
    d = fresh();
    uint8_t px[(W + 1) * H];
    zgt_pattern(px, W + 1, H, 1, 3);
    zgt_write_png(at(d, "k/z.png"), px, W + 1, H, 1, false, false);
    expect_image_error(d, &o, "the image is 4x6 (height x width), the data set's images are 4x5", "k/z.png", __LINE__);
    unlink(at(d, "k/z.png"));
    write_text(at(d, "k/pic.bmp"), "BM");
    expect_image_error(d, &o, "only PNG and JPEG images are read", "k/pic.bmp", __LINE__);
    unlink(at(d, "k/pic.bmp"));
    mk(at(d, "empty"));
    expect_image_error(d, &o, "the class folder holds no PNG or JPEG file", "empty", __LINE__);
    const char *const known[1] = {"k"};
    expect_image_error(d, &(zg_image_opts){.classes = known, .n_classes = 1}, "class 'empty' is not one of the 1 classes",
                       "empty", __LINE__);
    zgt_remove_dir(d);
    d = zgt_temp_dir();
    if (!d) return;
    grey_png(at(d, "flat.png"), 1);
    expect_image_error(d, &o, "has no class folders", d, __LINE__);
    expect_image_error(at(d, "nope"), &o, "cannot open", "nope", __LINE__);
    zgt_remove_dir(d);
}

/* A file that breaks after the folder was opened fails its batch in the
 * prefetch thread with the file's name; the loader goes on with the next. */
TEST(loader_reports_an_image_that_fails_in_the_prefetch_thread) {
    char *d = fresh();
    if (!d) return;
    grey_png(at(d, "k/b.png"), 2);
    grey_png(at(d, "k/c.png"), 3);
    zg_dataset *ds = zg_dataset_load_image_folder(d, &(zg_image_opts){0});
    CHECK_PTR(ds);
    if (!ds) return;
    write_text(at(d, "k/b.png"), "gone bad");
    for (int prefetch = 0; prefetch < 2; prefetch++) {
        zg_loader_opts o = plain(1);
        o.prefetch = prefetch;
        zg_loader *ld = zg_loader_new(ds, &o);
        zg_tensor *x, *y;
        CHECK(ld && zg_loader_next(ld, &x, &y) == 1);
        CHECK_ERR(zg_loader_next(ld, &x, &y), "k/b.png': not a PNG or JPEG file");
        CHECK(zg_loader_next(ld, &x, &y) == 1 && x && zg_tensor_data(x)[0] > 0);
        CHECK(zg_loader_next(ld, &x, &y) == 0);
        zg_loader_free(ld);
    }
    zg_dataset_free(ds);
    zgt_remove_dir(d);
}

TEST(unlabelled_images_and_idx_for_prediction) {
    char *d = zgt_temp_dir();
    if (!d) return;
    mk(at(d, "s")), mk(at(d, "s/t"));
    grey_png(at(d, "s/t/b.png"), 1);
    grey_png(at(d, "s/a.png"), 2);
    zg_dataset *ds = zg_dataset_load_image_folder(at(d, "s"), &(zg_image_opts){.unlabelled = true});
    CHECK(ds && zg_dataset_size(ds) == 2 && strstr(zg_dataset_sample_name(ds, 0), "s/a.png"));
    zg_dataset_free(ds);
    ds = zg_dataset_load_image_folder(at(d, "s/a.png"), &(zg_image_opts){.unlabelled = true, .channels = 3});
    int64_t shape[ZG_MAX_DIMS];
    CHECK(ds && zg_dataset_size(ds) == 1 && zg_dataset_sample_shape(ds, shape) == 3 && shape[0] == 3);
    zg_dataset_free(ds);
    zgt_remove_dir(d);
}
