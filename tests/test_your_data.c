/* zgrad train on your data and zgrad predict, through the CLI: a CSV file
 * (classes and a regression), an image folder, an MNIST-format run on an
 * IDX file. Predict's output equals the library's forward on the same
 * inputs, preprocessed with statistics the test computes itself from the
 * training data; the run keeps its data's description (resume bit for
 * bit, refused on changed data); each bad option or input is one line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "cli_runner.h"
#include "harness.h"
#include "image_writer.h"

typedef struct {
    char root[64], io[128], run[128];
} cli_env;

static bool env_open(cli_env *e) {
    char *root = zgt_temp_dir();
    if (!root) return false;
    snprintf(e->root, sizeof e->root, "%s", root);
    snprintf(e->io, sizeof e->io, "%s/io", root);
    snprintf(e->run, sizeof e->run, "%s/run", root);
    mkdir(e->io, 0755);
    if (zgt_cli_setup(e->io)) return true;
    zgt_fail(__FILE__, __LINE__, "no zgrad binary next to the test (%s)", zgt_cli_bin());
    zgt_remove_dir(root);
    return false;
}

/* root/name in a rotating static buffer. */
static const char *in(const cli_env *e, const char *name) {
    static char bufs[8][256];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, 256, "%s/%s", e->root, name);
    return b;
}

static void write_text(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(s, 1, strlen(s), f) != strlen(s)) zgt_fail(__FILE__, __LINE__, "cannot write %s", path);
    if (f) fclose(f);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 20);
    if (buf && fread(buf, 1, (1 << 20) - 1, f) == 0) buf[0] = 0;
    fclose(f);
    return buf;
}

/* A predictions file: its header line and, per row, the first field
 * (text) and the numbers after it (the predicted class or value first). */
typedef struct {
    char header[512];
    int rows, cols;
    char name[64][128];
    double v[64][16];
} preds;

/* The next CSV field of *s (quotes undone) into out; false at the end of
 * the line. */
static bool next_field(const char **s, char *out, size_t n) {
    const char *q = *s;
    if (!*q || *q == '\n') return false;
    size_t k = 0;
    bool quoted = *q == '"';
    for (q += quoted; *q && (quoted || (*q != ',' && *q != '\n')); q++) {
        if (quoted && *q == '"') {
            if (q[1] != '"') {
                quoted = false;
                continue;
            }
            q++;
        }
        if (k + 1 < n) out[k++] = *q;
    }
    out[k] = '\0';
    *s = *q == ',' ? q + 1 : q;
    return true;
}

static bool read_preds(const char *path, preds *p) {
    memset(p, 0, sizeof *p);
    char *text = slurp(path);
    if (!text) return false;
    const char *s = strchr(text, '\n');
    snprintf(p->header, sizeof p->header, "%.*s", s ? (int)(s - text) : 0, text);
    char field[128];
    while (s && *++s && p->rows < 64) {
        if (!next_field(&s, p->name[p->rows], sizeof p->name[0])) break;
        int c = 0;
        for (; c < 16 && next_field(&s, field, sizeof field); c++) {
            char *end;
            p->v[p->rows][c] = strtod(field, &end);
            if (end == field || *end) p->v[p->rows][c] = -1; /* a class name */
        }
        p->cols = c;
        p->rows++;
        s = strchr(s, '\n');
    }
    free(text);
    return p->rows > 0;
}

/* The run's model with its saved weights, in eval mode. */
static zg_module *run_model(const char *run) {
    zg_model_spec *s = zg_train_model_spec(run);
    zg_module *m = s ? zg_model_spec_build(s) : NULL;
    zg_model_spec_free(s);
    char p[300];
    snprintf(p, sizeof p, "%s/model.safetensors", run);
    if (m && zg_module_load(m, p)) {
        zg_module_free(m);
        m = NULL;
    }
    CHECK_PTR(m);
    if (m) zg_module_train(m, false);
    return m;
}

/* The model's outputs (softmax unless regress) for all of ds, [n, k]. */
static float *library_outputs(zg_module *m, zg_dataset *ds, bool regress, int64_t *k) {
    zg_loader_opts o = {.batch_size = zg_dataset_size(ds), .mean = 0, .std = 1};
    zg_loader *ld = zg_loader_new(ds, &o);
    zg_tensor *x, *y;
    float *v = NULL;
    zg_no_grad_enter();
    if (ld && zg_loader_next(ld, &x, &y) == 1) {
        zg_tensor *out = zg_module_forward(m, x);
        zg_tensor *p = out && !regress ? zg_softmax(out, 1) : out;
        if (p) {
            *k = zg_tensor_size(p, 1);
            v = malloc((size_t)zg_tensor_numel(p) * sizeof *v);
            memcpy(v, zg_tensor_data(p), (size_t)zg_tensor_numel(p) * sizeof *v);
        }
    }
    zg_no_grad_exit();
    zg_arena_reset();
    zg_loader_free(ld);
    CHECK_PTR(v);
    return v;
}

/* Each row's numbers: the class (argmax) then the probabilities, or the
 * value, as the library computes them (printed to 9 digits). */
static void check_preds(const preds *p, const float *want, int64_t n, int64_t k, bool regress) {
    CHECK(p->rows == n);
    for (int64_t i = 0; i < n && i < p->rows; i++) {
        if (regress) {
            CHECK_NEAR(p->v[i][0], want[i], 1e-6 * (1 + fabs(want[i])));
            continue;
        }
        int64_t best = 0;
        for (int64_t c = 0; c < k; c++) {
            CHECK_NEAR(p->v[i][1 + c], want[i * k + c], 1e-7);
            if (want[i * k + c] > want[i * k + best]) best = c;
        }
        if (p->v[i][0] >= 0) CHECK(p->v[i][0] == (double)best);
    }
}

/* ---- CSV ------------------------------------------------------------------------ */

/* n rows of three features and a class (0..2) or a value. */
static void table(const char *path, int n, int seed, bool regress, bool with_target) {
    char *s = malloc((size_t)n * 96 + 64), *q = s;
    q += sprintf(q, "%s", with_target ? "f0,f1,\"f 2\",label\n" : "note,\"f 2\",f1,f0\n");
    uint64_t x = (uint64_t)seed * 7919 + 1;
    for (int i = 0; i < n; i++) {
        double f[3];
        for (int j = 0; j < 3; j++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            f[j] = (double)(x >> 40) / (1 << 24) * 4 - 2 + (j == 2 ? 100 : 0);
        }
        int c = (f[0] + f[1] > 0) + (f[0] - f[1] > 1);
        if (!with_target) q += sprintf(q, "n%d,%.6f,%.6f,%.6f\n", i, f[2], f[1], f[0]);
        else if (regress) q += sprintf(q, "%.6f,%.6f,%.6f,%.6f\n", f[0], f[1], f[2], 2 * f[0] - f[1] + 0.25);
        else q += sprintf(q, "%.6f,%.6f,%.6f,%d\n", f[0], f[1], f[2], c);
    }
    write_text(path, s);
    free(s);
}

/* The test's own preprocessing: inputs standardised with the training
 * file's statistics. */
static zg_dataset *standardised(const char *train, const char *input, const char *target) {
    zg_dataset *tr = zg_dataset_load_table(train, &(zg_csv_opts){.target = target});
    const char *const feats[3] = {"f0", "f1", "f 2"};
    zg_dataset *ds = zg_dataset_load_table(input, &(zg_csv_opts){.features = feats, .n_features = 3});
    float m[3], s[3];
    CHECK(tr && ds && zg_dataset_compute_stats(tr, m, s) == ZG_OK && zg_dataset_set_normalization(ds, m, s) == 0);
    zg_dataset_free(tr);
    return ds;
}

/* `zgrad eval` on a --csv / --images run prints the metrics its last
 * evaluation (train's final line) printed: the same validation data,
 * standardised alike. */
static void check_eval_matches_final(const char *run, const char *train_out) {
    zgt_cli_result r;
    zgt_cli_run(&r, (const char *[]){"eval", "--checkpoint", run, NULL});
    double acc = -1, loss = -1, acc2 = -2, loss2 = -2, mse = -1, r2 = -1;
    const char *fin = strstr(train_out, "final: ");
    CHECK(r.status == 0 && fin);
    if (!fin) return;
    if (sscanf(fin, "final: validation MSE %lf, R^2 %lf", &mse, &r2) == 2) {
        char want[96];
        snprintf(want, sizeof want, "validation MSE %.4f, R^2 %.4f (", mse, r2);
        CHECK(strstr(r.out, want) != NULL);
        return;
    }
    CHECK(sscanf(fin, "final: validation accuracy %lf%%, validation loss %lf", &acc, &loss) == 2);
    CHECK(sscanf(r.out, "validation loss %lf, accuracy %lf%%", &loss2, &acc2) == 2);
    CHECK(fabs(acc - acc2) < 1e-9 && fabs(loss - loss2) < 1e-9 && strstr(r.out, "confusion matrix"));
}

TEST(csv_train_and_predict_match_the_library) {
    cli_env e;
    if (!env_open(&e)) return;
    table(in(&e, "train.csv"), 120, 1, false, true);
    table(in(&e, "val.csv"), 30, 2, false, true);
    table(in(&e, "new.csv"), 20, 3, false, false); /* other column order, a text column, no target */
    zgt_cli_result r;
    zgt_cli_run(&r, (const char *[]){"train", "--csv", in(&e, "train.csv"), "--target", "label", "--val-csv",
                                     in(&e, "val.csv"), "--epochs", "3", "--out", e.run, "--progress", "off", NULL});
    CHECK(r.status == 0 && strstr(r.out, "the default MLP (4611 parameters)") &&
          strstr(r.out, "120 train / 30 validation rows") && strstr(r.out, "3 classes, 3 features") &&
          strstr(r.out, "val acc") && strstr(r.out, "final: validation accuracy"));
    check_eval_matches_final(e.run, r.out);
    /* The default model: 3 -> 64 -> 64 -> 3, kept by the run. */
    zg_model_spec *spec = zg_train_model_spec(e.run);
    int64_t shp[ZG_MAX_DIMS];
    CHECK(spec && zg_model_spec_shape(spec, false, shp, ZG_MAX_DIMS) == 1 && shp[0] == 3);
    CHECK(spec && zg_model_spec_shape(spec, true, shp, ZG_MAX_DIMS) == 1 && shp[0] == 3);
    zg_model_spec_free(spec);
    zgt_cli_run(&r, (const char *[]){"predict", "--checkpoint", e.run, "--input", in(&e, "new.csv"), "--output",
                                     in(&e, "preds.csv"), NULL});
    CHECK(r.status == 0 && r.out[0] == '\0');
    preds p;
    CHECK(read_preds(in(&e, "preds.csv"), &p));
    CHECK(!strcmp(p.header, "row,predicted,prob_0,prob_1,prob_2"));
    CHECK(!strcmp(p.name[0], "0") && !strcmp(p.name[19], "19"));
    zg_module *m = run_model(e.run);
    zg_dataset *ds = standardised(in(&e, "train.csv"), in(&e, "new.csv"), "label");
    int64_t k = 0;
    float *want = m && ds ? library_outputs(m, ds, false, &k) : NULL;
    if (want) check_preds(&p, want, 20, k, false);
    free(want);
    zg_dataset_free(ds);
    zg_module_free(m);
    /* stdout without --output: the same text. */
    zgt_cli_run(&r, (const char *[]){"predict", "--checkpoint", e.run, "--input", in(&e, "new.csv"), NULL});
    char *file = slurp(in(&e, "preds.csv"));
    CHECK(r.status == 0 && file && !strcmp(r.out, file));
    free(file);
    zgt_remove_dir(e.root);
}

TEST(csv_regression_trains_with_mse_and_predicts_values) {
    cli_env e;
    if (!env_open(&e)) return;
    table(in(&e, "train.csv"), 100, 4, true, true);
    table(in(&e, "new.csv"), 12, 5, false, false);
    zgt_cli_result r;
    zgt_cli_run(&r, (const char *[]){"train", "--csv", in(&e, "train.csv"), "--target", "3", "--val-split", "0.25",
                                     "--epochs", "2", "--lr", "0.01", "--out", e.run, "--progress", "off", NULL});
    CHECK(r.status == 0 && strstr(r.out, "75 train / 25 validation rows") && strstr(r.out, "regression of 'label'") &&
          strstr(r.out, "val r2") && strstr(r.out, "final: validation MSE"));
    check_eval_matches_final(e.run, r.out);
    char *metrics = slurp(in(&e, "run/metrics.jsonl")), *svg = slurp(in(&e, "run/curves.svg"));
    CHECK(metrics && strstr(metrics, "\"test_r2\": ") && !strstr(metrics, "test_acc"));
    CHECK(svg && strstr(svg, "R\xc2\xb2") && strstr(svg, "MSE loss") && strstr(svg, "</svg>"));
    free(metrics);
    free(svg);
    zgt_cli_run(&r, (const char *[]){"predict", "--checkpoint", e.run, "--input", in(&e, "new.csv"), "--output",
                                     in(&e, "preds.csv"), NULL});
    preds p;
    CHECK(r.status == 0 && read_preds(in(&e, "preds.csv"), &p) && !strcmp(p.header, "row,predicted"));
    /* The statistics are the training part's: the 75 rows of the split. */
    zg_dataset *full = zg_dataset_load_table(in(&e, "train.csv"), &(zg_csv_opts){.target = "label"}), *tr = NULL, *va = NULL;
    CHECK(full && zg_dataset_task(full) == ZG_TASK_REGRESS && zg_dataset_split(full, 0.25, 0, &tr, &va) == 0);
    const char *const feats[3] = {"f0", "f1", "f 2"};
    zg_dataset *ds = zg_dataset_load_table(in(&e, "new.csv"), &(zg_csv_opts){.features = feats, .n_features = 3});
    float mean[3], sd[3];
    CHECK(tr && ds && zg_dataset_compute_stats(tr, mean, sd) == 0 && zg_dataset_set_normalization(ds, mean, sd) == 0);
    zg_module *m = run_model(e.run);
    int64_t k = 0;
    float *want = m && ds ? library_outputs(m, ds, true, &k) : NULL;
    if (want) check_preds(&p, want, 12, 1, true);
    free(want);
    zg_module_free(m);
    zg_dataset_free(ds), zg_dataset_free(tr), zg_dataset_free(va), zg_dataset_free(full);
    /* Integer targets regress when asked to. */
    write_text(in(&e, "int.csv"), "a,y\n1,3\n2,5\n3,7\n4,9\n5,11\n");
    zgt_cli_run(&r, (const char *[]){"train", "--csv", in(&e, "int.csv"), "--target", "y", "--task", "regress",
                                     "--epochs", "1", "--out", in(&e, "run2"), "--progress", "off", NULL});
    CHECK(r.status == 0 && strstr(r.out, "regression of 'y'"));
    zgt_remove_dir(e.root);
}

TEST(csv_run_resumes_exactly_and_refuses_changed_data) {
    cli_env e;
    if (!env_open(&e)) return;
    table(in(&e, "train.csv"), 90, 6, false, true);
    zgt_cli_result r;
    char a[256], b[256];
    snprintf(a, sizeof a, "%s", in(&e, "a"));
    snprintf(b, sizeof b, "%s", in(&e, "b"));
    zgt_cli_run(&r, (const char *[]){"train", "--csv", in(&e, "train.csv"), "--target", "label", "--epochs", "3",
                                     "--batch-size", "16", "--out", a, "--progress", "off", NULL});
    CHECK(r.status == 0);
    zgt_cli_run(&r, (const char *[]){"train", "--csv", in(&e, "train.csv"), "--target", "label", "--epochs", "1",
                                     "--batch-size", "16", "--out", b, "--progress", "off", NULL});
    CHECK(r.status == 0);
    /* The run keeps its data options: --resume needs none. */
    zgt_cli_run(&r, (const char *[]){"train", "--resume", b, "--epochs", "3", "--progress", "off", NULL});
    CHECK(r.status == 0);
    char pa[300], pb[300];
    snprintf(pa, sizeof pa, "%s/model.safetensors", a);
    snprintf(pb, sizeof pb, "%s/model.safetensors", b);
    char *wa = slurp(pa), *wb = slurp(pb);
    CHECK(wa && wb && !memcmp(wa, wb, 1 << 19));
    free(wa);
    free(wb);
    /* Other data under the same name: refused, the checkpoint kept. */
    table(in(&e, "train.csv"), 90, 7, false, true);
    zgt_cli_run(&r, (const char *[]){"train", "--resume", b, "--epochs", "4", "--progress", "off", NULL});
    CHECK(r.status == 1 && strstr(r.err, "was trained on other data"));
    char ptr[300];
    snprintf(ptr, sizeof ptr, "%s/checkpoint", b);
    char *name = slurp(ptr);
    CHECK(name && strstr(name, "ckpt-e0003"));
    free(name);
    /* zgrad eval reads the run's own data: changed files are refused, and
     * so is another data directory. */
    zgt_cli_run(&r, (const char *[]){"eval", "--checkpoint", b, NULL});
    CHECK(r.status == 1 && strstr(r.err, "was trained on other data"));
    zgt_cli_run(&r, (const char *[]){"eval", "--checkpoint", b, "--data", in(&e, "x"), NULL});
    CHECK(r.status == 1 && strstr(r.err, "evaluated on its own validation data"));
    zgt_remove_dir(e.root);
}

/* ---- images ------------------------------------------------------------------------- */

/* root/<cls>/<i>.png (or .jpg): 6x6 colour images, class 1 brighter. */
static void image_folder(const cli_env *e, const char *root, int per_class, int seed) {
    char p[300];
    snprintf(p, sizeof p, "%s/%s", e->root, root);
    mkdir(p, 0755);
    const char *classes[2] = {"cat", "dog, big"};
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/%s/%s", e->root, root, classes[k]);
        mkdir(p, 0755);
        for (int i = 0; i < per_class; i++) {
            uint8_t px[6 * 6 * 3];
            zgt_pattern(px, 6, 6, 3, seed + 3 * i + k);
            for (int j = 0; j < 6 * 6 * 3; j++) px[j] = (uint8_t)(px[j] / 2 + 100 * k);
            snprintf(p, sizeof p, "%s/%s/%s/%d.%s", e->root, root, classes[k], i, i % 3 == 2 ? "jpg" : "png");
            if (i % 3 == 2) zgt_write_jpeg(p, px, 6, 6, 3, 95);
            else zgt_write_png(p, px, 6, 6, 3, false, false);
        }
    }
}

TEST(image_folder_train_and_predict_match_the_library) {
    cli_env e;
    if (!env_open(&e)) return;
    image_folder(&e, "train", 12, 1);
    image_folder(&e, "val", 3, 50);
    image_folder(&e, "new", 4, 90);
    zgt_cli_result r;
    zgt_cli_run(&r, (const char *[]){"train", "--images", in(&e, "train"), "--val-images", in(&e, "val"), "--epochs",
                                     "2", "--batch-size", "8", "--out", e.run, "--progress", "off", NULL});
    CHECK(r.status == 0 && strstr(r.out, "24 train / 6 validation images of 3x6x6") && strstr(r.out, "2 classes"));
    check_eval_matches_final(e.run, r.out);
    zgt_cli_run(&r, (const char *[]){"predict", "--checkpoint", e.run, "--input", in(&e, "new"), "--output",
                                     in(&e, "preds.csv"), NULL});
    CHECK(r.status == 0);
    preds p;
    CHECK(read_preds(in(&e, "preds.csv"), &p));
    CHECK(!strcmp(p.header, "file,predicted,prob_cat,\"prob_dog, big\""));
    CHECK(p.rows == 8 && strstr(p.name[0], "new/cat/0.png"));
    /* The library: the training folder's channel statistics, the new
     * images in the same order. */
    zg_dataset *tr = zg_dataset_load_image_folder(in(&e, "train"), &(zg_image_opts){0});
    zg_dataset *ds = zg_dataset_load_image_folder(in(&e, "new"), &(zg_image_opts){.unlabelled = true});
    float m[3], s[3];
    CHECK(tr && ds && zg_dataset_compute_stats(tr, m, s) == 0 && zg_dataset_set_normalization(ds, m, s) == 0);
    zg_module *model = run_model(e.run);
    int64_t k = 0;
    float *want = model && ds ? library_outputs(model, ds, false, &k) : NULL;
    if (want) {
        check_preds(&p, want, 8, k, false);
        /* The predicted class is its folder's name (quoted: it holds a comma). */
        char *text = slurp(in(&e, "preds.csv"));
        int64_t best = want[0 * k + 1] > want[0 * k + 0];
        CHECK(text && strstr(text, best ? ",\"dog, big\"," : ".png,cat,"));
        free(text);
    }
    free(want);
    zg_module_free(model);
    zg_dataset_free(tr);
    zg_dataset_free(ds);
    /* One image file alone; a file of another size is resized to the
     * run's. */
    zgt_cli_run(&r, (const char *[]){"predict", "--checkpoint", e.run, "--input", in(&e, "new/cat/1.png"), NULL});
    CHECK(r.status == 0 && strstr(r.out, "new/cat/1.png,"));
    uint8_t px[7 * 6 * 3] = {0};
    zgt_write_png(in(&e, "odd.png"), px, 7, 6, 3, false, false);
    zgt_cli_run(&r, (const char *[]){"predict", "--checkpoint", e.run, "--input", in(&e, "odd.png"), NULL});
    CHECK(r.status == 0 && strstr(r.out, "odd.png,"));
    zgt_remove_dir(e.root);
}

/* ---- MNIST-format runs ------------------------------------------------------------------ */

TEST(mnist_format_run_predicts_an_idx_file) {
    cli_env e;
    if (!env_open(&e)) return;
    zgt_cli_result r;
    zgt_cli_run(&r, (const char *[]){"train", "--model", "mlp", "--epochs", "1", "--limit-train", "256", "--limit-test",
                                     "64", "--out", e.run, "--progress", "off", NULL});
    CHECK(r.status == 0);
    /* Five 28x28 images, gzipped as the data set's files are. */
    uint8_t idx[16 + 5 * 784] = {0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 28, 0, 0, 0, 28};
    for (int i = 0; i < 5 * 784; i++) idx[16 + i] = (uint8_t)((i * 37) % 251);
    gzFile g = gzopen(in(&e, "x.idx.gz"), "wb");
    CHECK(g && gzwrite(g, idx, sizeof idx) == (int)sizeof idx);
    if (g) gzclose(g);
    zgt_cli_run(&r, (const char *[]){"predict", "--checkpoint", e.run, "--input", in(&e, "x.idx.gz"), "--output",
                                     in(&e, "p.csv"), NULL});
    preds p;
    CHECK(r.status == 0 && read_preds(in(&e, "p.csv"), &p) && !strncmp(p.header, "index,predicted,prob_0,", 23));
    zg_dataset *ds = zg_dataset_load_idx(in(&e, "x.idx.gz"), NULL);
    zg_module *m = run_model(e.run);
    float *want = NULL;
    int64_t k = 0;
    if (ds && m) { /* the run's normalisation: Fashion-MNIST's mean and std */
        zg_loader_opts o = {.batch_size = 5, .mean = 0.2860f, .std = 0.3530f};
        zg_loader *ld = zg_loader_new(ds, &o);
        zg_tensor *x, *y;
        zg_no_grad_enter();
        if (ld && zg_loader_next(ld, &x, &y) == 1) {
            zg_tensor *sm = zg_softmax(zg_module_forward(m, x), 1);
            k = 10;
            want = malloc(50 * sizeof *want);
            memcpy(want, zg_tensor_data(sm), 50 * sizeof *want);
        }
        zg_no_grad_exit();
        zg_arena_reset();
        zg_loader_free(ld);
    }
    CHECK_PTR(want);
    if (want) check_preds(&p, want, 5, k, false);
    free(want);
    zg_module_free(m);
    zg_dataset_free(ds);
    /* Images of another size than the model's input. */
    idx[11] = 20, idx[15] = 20;
    g = gzopen(in(&e, "small.idx.gz"), "wb");
    if (g) gzwrite(g, idx, 16 + 5 * 400), gzclose(g);
    zgt_cli_run(&r, (const char *[]){"predict", "--checkpoint", e.run, "--input", in(&e, "small.idx.gz"), NULL});
    CHECK(r.status == 1 && strstr(r.err, "the samples are [1, 20, 20], the model takes [1, 28, 28]"));
    zgt_remove_dir(e.root);
}

/* ---- errors ----------------------------------------------------------------------------- */

/* Runs zgrad; the status and one line of stderr holding msg. */
static void expect_cli(const char *const *args, int status, const char *msg, int line) {
    zgt_cli_result r;
    zgt_cli_run(&r, args);
    const char *nl = strchr(r.err, '\n');
    if (r.status != status || !strstr(r.err, msg))
        zgt_fail(__FILE__, line, "exit %d, stderr \"%s\"; expected exit %d and \"%s\"", r.status, r.err, status, msg);
    else if (status == 1 && nl && nl[1])
        zgt_fail(__FILE__, line, "the error is more than one line: \"%s\"", r.err);
}
#define EXPECT_CLI(status, msg, ...) expect_cli((const char *[]){__VA_ARGS__, NULL}, status, msg, __LINE__)

TEST(cli_your_data_options_and_bad_inputs) {
    cli_env e;
    if (!env_open(&e)) return;
    char csv[256], bad[256], dir[256];
    snprintf(csv, sizeof csv, "%s", in(&e, "t.csv"));
    snprintf(bad, sizeof bad, "%s", in(&e, "bad.csv"));
    snprintf(dir, sizeof dir, "%s", in(&e, "imgs"));
    table(csv, 20, 1, false, true);
    image_folder(&e, "imgs", 2, 1);
    write_text(bad, "a,b,label\n1,2,0\n3,x,1\n");
    EXPECT_CLI(2, "--target, --task, --val-*, --image-* go with --csv FILE or --images DIR", "train", "--target", "y");
    EXPECT_CLI(2, "one data set at a time", "train", "--csv", csv, "--target", "label", "--images", dir);
    EXPECT_CLI(2, "one data set at a time", "train", "--csv", csv, "--target", "label", "--data", dir);
    EXPECT_CLI(2, "--val-images goes with --csv (--val-csv)", "train", "--csv", csv, "--target", "label",
               "--val-images", dir);
    EXPECT_CLI(2, "--task: expected classify, regress or auto", "train", "--csv", csv, "--task", "guess");
    EXPECT_CLI(2, "--image-size: expected H,W", "train", "--images", dir, "--image-size", "28");
    EXPECT_CLI(2, "--val-split: expected a fraction in (0, 1)", "train", "--csv", csv, "--val-split", "1.5");
    EXPECT_CLI(2, "a CSV file needs its target column", "train", "--csv", csv);
    EXPECT_CLI(2, "an image folder's classes are its sub-folders", "train", "--images", dir, "--task", "regress");
    EXPECT_CLI(2, "a validation file or folder, or a validation split", "train", "--csv", csv, "--target", "label",
               "--val-csv", csv, "--val-split", "0.1");
    EXPECT_CLI(2, "apply to cnn and mlp", "train", "--model", "gpt", "--csv", csv, "--target", "label");
    EXPECT_CLI(1, "bad.csv': line 3, column 2: 'x' is not a number", "train", "--csv", bad, "--target", "label",
               "--out", in(&e, "r1"));
    EXPECT_CLI(1, "no column 'species' in the header (it has 'f0', 'f1', 'f 2', 'label')", "train", "--csv", csv,
               "--target", "species", "--out", in(&e, "r2"));
    EXPECT_CLI(1, "has no class folders", "train", "--images", in(&e, "imgs/cat"), "--out", in(&e, "r3"));
    EXPECT_CLI(1, "input is [1, 28, 28] per sample, the data's samples are [3, 6, 6]", "train", "--images", dir,
               "--model", "mlp", "--out", in(&e, "r4"));
    write_text(in(&e, "net.json"), "{\"input\": [3, 6, 6], \"layers\": [{\"type\": \"Flatten\"}, "
                                   "{\"type\": \"Linear\", \"args\": [108, 10]}]}");
    EXPECT_CLI(1, "the model's output must be [2] per sample (one logit per class)", "train", "--images", dir,
               "--model-file", in(&e, "net.json"), "--out", in(&e, "r5"));
    /* predict: a run, a CSV without one of the model's columns. */
    zgt_cli_result r;
    zgt_cli_run(&r, (const char *[]){"train", "--csv", csv, "--target", "label", "--epochs", "1", "--out", e.run,
                                     "--progress", "off", NULL});
    CHECK(r.status == 0);
    write_text(bad, "f0,f1,label\n1,2,0\n");
    EXPECT_CLI(1, "bad.csv': no column 'f 2' (a feature the model takes) in the header", "predict", "--checkpoint",
               e.run, "--input", bad);
    EXPECT_CLI(1, "cannot open", "predict", "--checkpoint", e.run, "--input", in(&e, "none.csv"));
    EXPECT_CLI(1, "holds no checkpoint", "predict", "--checkpoint", e.root, "--input", csv);
    EXPECT_CLI(2, "--checkpoint RUN and --input FILE|DIR are required", "predict", "--input", csv);
    zgt_cli_run(&r, (const char *[]){"train", "--help", NULL});
    CHECK(r.status == 0 && strstr(r.out, "--csv FILE") && strstr(r.out, "default: classify") &&
          strstr(r.out, "--val-split F") && strstr(r.out, "ImageFolder"));
    zgt_cli_run(&r, (const char *[]){"predict", "--help", NULL});
    CHECK(r.status == 0 && strstr(r.out, "prob_<class>"));
    zgt_remove_dir(e.root);
}
