/* The zgrad CLI end to end: usage errors, short training runs on a subset
 * of Fashion-MNIST (outputs, checkpoint, eval), exact resume, refusal of
 * damaged or mismatched checkpoints, and checkpoints that survive kill -9
 * at random moments. Runs the zgrad binary of the same build directory
 * (BUILD/zgrad next to BUILD/tests/) from the repository root. */
#include "harness.h"
#include "cli_runner.h"

#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DATA_DIR "/usr/share/datasets/fashion-mnist"

static char tmp_root[64];

/* A temporary directory for runs (io/ holds the captured output), and the
 * zgrad binary of this build. */
static bool setup_paths(void) {
    static bool done, ok;
    if (done) return ok;
    done = true;
    snprintf(tmp_root, sizeof tmp_root, "/tmp/zgrad-cli-XXXXXX");
    if (!mkdtemp(tmp_root)) return false;
    char sub[128];
    snprintf(sub, sizeof sub, "%s/io", tmp_root);
    if (mkdir(sub, 0755) != 0) return false;
    snprintf(sub, sizeof sub, "%s/empty", tmp_root);
    if (mkdir(sub, 0755) != 0) return false;
    snprintf(sub, sizeof sub, "%s/io", tmp_root);
    ok = zgt_cli_setup(sub);
    return ok;
}

__attribute__((destructor)) static void remove_tmp(void) {
    if (!tmp_root[0] || strncmp(tmp_root, "/tmp/zgrad-cli-", 15) != 0) return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0) fprintf(stderr, "test_cli: could not remove %s\n", tmp_root);
}

static void tmp_path(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", tmp_root, name); }

/* ---- running zgrad ----------------------------------------------------------- */

typedef zgt_cli_result result;

static void run(result *r, const char *const *args) { zgt_cli_run(r, args); }

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* ---- files ---------------------------------------------------------------------- */

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    if (len) *len = (size_t)n;
    return buf;
}

static bool same_bytes(const char *a, const char *b) {
    size_t la, lb;
    char *x = slurp(a, &la), *y = slurp(b, &lb);
    bool same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* A fingerprint of every file under dir (names, sizes, contents): equal
 * fingerprints mean nothing was changed. */
static unsigned long long tree_hash(const char *dir) {
    unsigned long long h = 1469598103934665603ull;
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    char names[64][256];
    int n = 0;
    while ((e = readdir(d)) != NULL && n < 64)
        if (e->d_name[0] != '.') snprintf(names[n++], sizeof names[0], "%s", e->d_name);
    closedir(d);
    /* Order-independent: sum of per-entry hashes. */
    unsigned long long total = 0;
    for (int i = 0; i < n; i++) {
        char p[4096];
        if (snprintf(p, sizeof p, "%s/%s", dir, names[i]) >= (int)sizeof p) continue;
        unsigned long long eh = h;
        for (const char *c = names[i]; *c; c++) eh = (eh ^ (unsigned char)*c) * 1099511628211ull;
        struct stat st;
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            eh ^= tree_hash(p) * 31;
        } else {
            size_t len;
            char *buf = slurp(p, &len);
            for (size_t k = 0; buf && k < len; k++) eh = (eh ^ (unsigned char)buf[k]) * 1099511628211ull;
            eh ^= len;
            free(buf);
        }
        total += eh;
    }
    return total + (unsigned long long)n;
}

/* metrics.jsonl as (epoch, train_loss, test_loss, test_acc, steps) strings:
 * the numbers exactly as written. */
typedef struct {
    int n;
    char line[16][4][40];
    char keys_ok[16];
} metrics;

static bool field(const char *line, const char *key, char *out, size_t n) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(line, pat);
    if (!p) return false;
    p += strlen(pat);
    size_t k = strcspn(p, ",}");
    if (k == 0 || k >= n) return false;
    memcpy(out, p, k);
    out[k] = '\0';
    return true;
}

static metrics read_metrics(const char *dir) {
    metrics m = {0};
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    char *text = slurp(path, NULL);
    if (!text) return m;
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l && m.n < 16; l = strtok_r(NULL, "\n", &save)) {
        char seconds[40];
        bool ok = l[0] == '{' && field(l, "epoch", m.line[m.n][0], 40) && field(l, "train_loss", m.line[m.n][1], 40) &&
                  field(l, "test_loss", m.line[m.n][2], 40) && field(l, "test_acc", m.line[m.n][3], 40) &&
                  field(l, "seconds", seconds, sizeof seconds) && atof(seconds) >= 0;
        m.keys_ok[m.n++] = ok;
    }
    free(text);
    return m;
}

static bool metrics_equal(const metrics *a, const metrics *b) {
    if (a->n != b->n || a->n == 0) return false;
    for (int i = 0; i < a->n; i++)
        for (int k = 0; k < 4; k++)
            if (strcmp(a->line[i][k], b->line[i][k]) != 0) return false;
    return true;
}

static bool have_data(void) {
    char p[256];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", DATA_DIR);
    if (exists(p)) return true;
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", DATA_DIR);
    return exists(p);
}

#define REQUIRE_SETUP()                                                                           \
    do {                                                                                          \
        if (!setup_paths()) {                                                                     \
            zgt_fail(__FILE__, __LINE__, "no zgrad binary next to the test (%s)", zgt_cli_bin());    \
            return;                                                                               \
        }                                                                                         \
    } while (0)
#define REQUIRE_DATA()                                                                            \
    do {                                                                                          \
        REQUIRE_SETUP();                                                                          \
        if (!have_data()) {                                                                       \
            zgt_fail(__FILE__, __LINE__, "Fashion-MNIST is missing in %s (run scripts/setup)", DATA_DIR); \
            return;                                                                               \
        }                                                                                         \
    } while (0)

/* ---- usage --------------------------------------------------------------------------- */

TEST(cli_help_and_version) {
    REQUIRE_SETUP();
    result r;
    run(&r, (const char *[]){"--version", NULL});
    CHECK(r.status == 0);
    CHECK(strstr(r.out, ZG_VERSION) != NULL);
    run(&r, (const char *[]){"--help", NULL});
    CHECK(r.status == 0);
    CHECK(strstr(r.out, "train") && strstr(r.out, "eval"));
    run(&r, (const char *[]){"train", "--help", NULL});
    CHECK(r.status == 0);
    CHECK(strstr(r.out, "--optimizer") && strstr(r.out, "--resume") && strstr(r.out, "--checkpoint-every-steps"));
    run(&r, (const char *[]){"eval", "--help", NULL});
    CHECK(r.status == 0);
    CHECK(strstr(r.out, "--checkpoint") != NULL);
}

/* Every bad invocation: exit 2, nothing on stdout, and on stderr one line
 * naming the problem followed by the one-line usage. */
TEST(cli_usage_errors) {
    REQUIRE_SETUP();
    static const struct {
        const char *args[6];
        const char *mention;
    } cases[] = {
        {{"train", "--bogus", NULL}, "--bogus"},
        {{"train", "--epochs", "abc", NULL}, "--epochs"},
        {{"train", "--epochs", "-1", NULL}, "--epochs"},
        {{"train", "--epochs", "0", NULL}, "--epochs"},
        {{"train", "--epochs", "3x", NULL}, "--epochs"},
        {{"train", "--epochs", NULL}, "--epochs"},
        {{"train", "--batch-size", "0", NULL}, "--batch-size"},
        {{"train", "--optimizer", "lion", NULL}, "lion"},
        {{"train", "--model", "resnet", NULL}, "resnet"},
        {{"train", "--lr", "fast", NULL}, "--lr"},
        {{"train", "--lr", "-0.1", NULL}, "--lr"},
        {{"train", "--lr", "nan", NULL}, "--lr"},
        {{"train", "--momentum", "0.9", NULL}, "--momentum"},
        {{"train", "--weight-decay", "inf", NULL}, "--weight-decay"},
        {{"train", "--seed", "-5", NULL}, "--seed"},
        {{"train", "--threads", "0", NULL}, "--threads"},
        {{"train", "--limit-train", "ten", NULL}, "--limit-train"},
        {{"train", "--progress", "fancy", NULL}, "fancy"},
        {{"train", "stray", NULL}, "stray"},
        {{"train", "--out=", NULL}, "--out"},
        {{"eval", NULL}, "--checkpoint"},
        {{"eval", "--checkpoint", "x", "--nope", NULL}, "--nope"},
        {{"eval", "--checkpoint", "x", "--limit-test", "0", NULL}, "--limit-test"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        result r;
        run(&r, cases[i].args);
        const char *a = cases[i].args[0], *b = cases[i].args[1] ? cases[i].args[1] : "";
        if (r.status != 2 || r.out[0] || count_lines(r.err) != 2 || strncmp(r.err, "zgrad ", 6) != 0 ||
            !strstr(r.err, cases[i].mention) || !strstr(r.err, "\nusage: zgrad "))
            zgt_fail(__FILE__, __LINE__, "zgrad %s %s ...: exit %d, stderr \"%s\"", a, b, r.status, r.err);
    }
    result r;
    run(&r, (const char *[]){"frobnicate", NULL});
    CHECK(r.status == 2);
    CHECK(strstr(r.err, "frobnicate") != NULL);
}

/* A library error (here: no data set) is one line "zgrad: ...", exit 1,
 * and creates no run directory. */
TEST(cli_missing_data) {
    REQUIRE_SETUP();
    char out[256];
    tmp_path(out, sizeof out, "nodata-run");
    result r;
    run(&r, (const char *[]){"train", "--data", "/nonexistent/fmnist", "--out", out, NULL});
    CHECK(r.status == 1);
    CHECK(count_lines(r.err) == 1);
    CHECK(strncmp(r.err, "zgrad: ", 7) == 0);
    CHECK(strstr(r.err, "/nonexistent/fmnist") != NULL);
    CHECK(!exists(out));
    run(&r, (const char *[]){"eval", "--checkpoint", "/nonexistent/run", NULL});
    CHECK(r.status == 1);
    CHECK(count_lines(r.err) == 1 && strncmp(r.err, "zgrad: ", 7) == 0);
}

/* ---- a short run and its outputs ------------------------------------------------------- */

static bool svg_is_xml(const char *path) {
    if (access("/usr/bin/python3", X_OK) != 0) {
        /* Without Python, at least the envelope. */
        char *s = slurp(path, NULL);
        bool ok = s && strstr(s, "<svg") && strstr(s, "</svg>");
        free(s);
        return ok;
    }
    char cmd[4400];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import sys, xml.dom.minidom as m; d = m.parse(sys.argv[1]); "
             "sys.exit(0 if d.documentElement.tagName == \"svg\" else 1)' '%s'",
             path);
    return system(cmd) == 0;
}

/* The run directory's outputs after `epochs` epochs of `model`. */
static void check_outputs(const char *dir, const char *model, int epochs, int64_t steps_per_epoch) {
    char p[4096];
    metrics m = read_metrics(dir);
    CHECK(m.n == epochs);
    for (int i = 0; i < m.n; i++) {
        CHECK(m.keys_ok[i]);
        CHECK(atoi(m.line[i][0]) == i + 1);
        double acc = atof(m.line[i][3]), tl = atof(m.line[i][1]), vl = atof(m.line[i][2]);
        CHECK(acc > 0.1 && acc <= 1.0); /* better than chance on 10 classes */
        CHECK(tl > 0 && tl < 3 && vl > 0 && vl < 3);
    }
    snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
    char *text = slurp(p, NULL);
    char want[64];
    snprintf(want, sizeof want, "\"steps\": %lld", (long long)steps_per_epoch);
    CHECK(text && strstr(text, want));
    /* Each epoch's wait for batches not prepared yet: a number of seconds
     * within the epoch's. */
    int waits = 0;
    for (const char *q = text; q && (q = strstr(q, "\"data_wait_seconds\": ")) != NULL; q++, waits++) {
        const char *sec = q;
        while (sec > text && sec[-1] != '\n') sec--;
        sec = strstr(sec, "\"seconds\": ");
        double w = atof(q + 21), total = sec ? atof(sec + 11) : -1;
        if (!(q[21] >= '0' && q[21] <= '9' && w >= 0 && w <= total))
            zgt_fail(__FILE__, __LINE__, "data_wait_seconds %.32s against seconds %g", q + 21, total);
    }
    CHECK(waits == epochs);
    free(text);

    snprintf(p, sizeof p, "%s/curves.svg", dir);
    CHECK(svg_is_xml(p));
    text = slurp(p, NULL);
    CHECK(text && strstr(text, "train loss") && strstr(text, "test loss") && strstr(text, "test accuracy") &&
          strstr(text, ">epoch<"));
    free(text);

    /* model.safetensors holds every parameter, with its shape. */
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    zg_safetensors *st = zg_safetensors_read(p);
    CHECK_PTR(st);
    static const int64_t mlp_sizes[] = {784, 256, 128, 10};
    zg_module *ref = !strcmp(model, "cnn") ? zg_model_default_cnn() : zg_model_mlp(mlp_sizes, 4);
    CHECK_PTR(ref);
    if (st && ref) {
        CHECK(zg_safetensors_count(st) == zg_module_num_params(ref) + zg_module_num_buffers(ref));
        for (int i = 0; i < zg_module_num_params(ref); i++) {
            zg_tensor *t = zg_safetensors_get(st, zg_module_param_name(ref, i));
            CHECK(t != NULL);
            if (t) CHECK(zg_tensor_numel(t) == zg_tensor_numel(zg_module_param(ref, i)));
        }
        /* And it loads back into the architecture. */
        CHECK_OK(zg_module_load(ref, p));
    }
    zg_safetensors_free(st);
    zg_module_free(ref);

    /* The checkpoint: a pointer file naming a complete directory. */
    snprintf(p, sizeof p, "%s/checkpoint", dir);
    char *name = slurp(p, NULL);
    CHECK(name && strncmp(name, "ckpt-", 5) == 0);
    if (name) {
        name[strcspn(name, "\n")] = '\0';
        const char *files[] = {"model.safetensors", "optim.safetensors", "trainer.safetensors"};
        for (int i = 0; i < 3; i++) {
            snprintf(p, sizeof p, "%s/%s/%s", dir, name, files[i]);
            CHECK(exists(p));
        }
        snprintf(p, sizeof p, "%s/%s/trainer.safetensors", dir, name);
        zg_safetensors *tr = zg_safetensors_read(p);
        CHECK_PTR(tr);
        if (tr) {
            const char *ep = zg_safetensors_metadata(tr, "epoch"), *nb = zg_safetensors_metadata(tr, "next_batch");
            CHECK(ep && atoi(ep) == epochs);
            CHECK(nb && atoi(nb) == 0);
            CHECK(zg_safetensors_get(tr, "rng_state") != NULL);
            CHECK(zg_safetensors_metadata(tr, "optimizer") && zg_safetensors_metadata(tr, "global_step"));
        }
        zg_safetensors_free(tr);
    }
    free(name);
}

/* `zgrad eval` on the run reproduces the last epoch's test accuracy. */
static void check_eval(const char *dir, const char *limit_test) {
    metrics m = read_metrics(dir);
    if (m.n == 0) return;
    char want[64];
    snprintf(want, sizeof want, "accuracy %.2f%%", 100 * atof(m.line[m.n - 1][3]));
    char weights[4096];
    snprintf(weights, sizeof weights, "%s/model.safetensors", dir);
    const char *targets[] = {dir, weights};
    for (int i = 0; i < 2; i++) {
        result r;
        run(&r, (const char *[]){"eval", "--checkpoint", targets[i], "--limit-test", limit_test, NULL});
        CHECK(r.status == 0);
        if (!strstr(r.out, want)) zgt_fail(__FILE__, __LINE__, "eval %s: \"%s\" lacks \"%s\"", targets[i], r.out, want);
        CHECK(strstr(r.out, "confusion matrix") != NULL);
        CHECK(count_lines(r.out) >= 13); /* header, column labels, 10 rows */
    }
}

static void short_run(const char *model) {
    REQUIRE_DATA();
    char out[256];
    snprintf(out, sizeof out, "%s/%s-run", tmp_root, model);
    result r;
    run(&r, (const char *[]){"train", "--model", model, "--limit-train", "512", "--limit-test", "256", "--epochs", "2",
                             "--out", out, "--progress", "lines", "--threads", "1", NULL});
    if (r.status != 0) {
        zgt_fail(__FILE__, __LINE__, "zgrad train --model %s: exit %d: %s", model, r.status, r.err);
        return;
    }
    /* Keras-like: one summary line per epoch. */
    CHECK(strstr(r.out, "epoch 1/2") && strstr(r.out, "epoch 2/2") && strstr(r.out, "test acc"));
    CHECK(strstr(r.err, "step 8/8") != NULL); /* the epoch's final progress line */
    check_outputs(out, model, 2, 8);
    check_eval(out, "256");
}

TEST(cli_short_run_mlp) { short_run("mlp"); }
TEST(cli_short_run_cnn) { short_run("cnn"); }

/* ---- resume ------------------------------------------------------------------------------ */

/* 3 epochs straight == 1 epoch, then --resume to 3: the same losses and
 * accuracies, digit for digit, and byte-identical weights. */
static void resume_equal(const char *model, const char *limit) {
    REQUIRE_DATA();
    char a[256], b[256], pa[300], pb[300];
    snprintf(a, sizeof a, "%s/%s-straight", tmp_root, model);
    snprintf(b, sizeof b, "%s/%s-resumed", tmp_root, model);
    const char *common[] = {"--model", model, "--limit-train", limit, "--limit-test", "128", "--progress", "off"};
    result r;
    const char *args_a[16] = {"train"};
    int n = 1;
    for (int i = 0; i < 8; i++) args_a[n++] = common[i];
    args_a[n++] = "--epochs";
    args_a[n++] = "3";
    args_a[n++] = "--out";
    args_a[n++] = a;
    args_a[n] = NULL;
    run(&r, args_a);
    CHECK(r.status == 0);
    args_a[n - 3] = "1";
    args_a[n - 1] = b;
    run(&r, args_a);
    CHECK(r.status == 0);
    metrics one = read_metrics(b);
    CHECK(one.n == 1);
    run(&r, (const char *[]){"train", "--resume", b, "--epochs", "3", "--progress", "off", NULL});
    if (r.status != 0) zgt_fail(__FILE__, __LINE__, "resume: exit %d: %s", r.status, r.err);
    CHECK(strstr(r.out, "resuming") != NULL);
    metrics ma = read_metrics(a), mb = read_metrics(b);
    CHECK(ma.n == 3);
    CHECK(metrics_equal(&ma, &mb));
    snprintf(pa, sizeof pa, "%s/model.safetensors", a);
    snprintf(pb, sizeof pb, "%s/model.safetensors", b);
    CHECK(same_bytes(pa, pb));
    /* A finished run resumed with the same total has nothing to do. */
    run(&r, (const char *[]){"train", "--resume", b, "--progress", "off", NULL});
    CHECK(r.status == 0);
    mb = read_metrics(b);
    CHECK(metrics_equal(&ma, &mb));
    CHECK(same_bytes(pa, pb));
}

TEST(cli_resume_equal_mlp) { resume_equal("mlp", "640"); }
TEST(cli_resume_equal_cnn) { resume_equal("cnn", "192"); }

/* --schedule plateau: ReduceLROnPlateau fed each epoch's test loss. In
 * mode max with an absolute threshold no loss beats, the first epoch sets
 * the best and every later one is bad: with patience 0 the lr halves after
 * each epoch from the second on (metrics.jsonl's lr: the one the epoch
 * trained with). A resume may add epochs (the schedule has no length) and
 * continues it exactly. */
TEST(cli_schedule_plateau) {
    REQUIRE_DATA();
    const char *spec = "plateau:0,mode=max,threshold=100,threshold_mode=abs,factor=0.5";
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/plateau-straight", tmp_root);
    snprintf(b, sizeof b, "%s/plateau-resumed", tmp_root);
    const char *args[] = {"train", "--model", "mlp", "--limit-train", "256", "--limit-test", "64", "--optimizer",
                          "sgd", "--lr", "0.04", "--schedule", spec, "--progress", "off", "--epochs", "4", "--out",
                          a, NULL};
    const int n_args = (int)(sizeof args / sizeof args[0]);
    result r;
    run(&r, args);
    if (r.status != 0) zgt_fail(__FILE__, __LINE__, "exit %d: %s", r.status, r.err);
    args[n_args - 4] = "2";
    args[n_args - 2] = b;
    run(&r, args);
    CHECK(r.status == 0);
    run(&r, (const char *[]){"train", "--resume", b, "--epochs", "4", "--progress", "off", NULL});
    if (r.status != 0) zgt_fail(__FILE__, __LINE__, "resume: exit %d: %s", r.status, r.err);
    metrics ma = read_metrics(a), mb = read_metrics(b);
    CHECK(ma.n == 4 && metrics_equal(&ma, &mb));
    char path[300];
    snprintf(path, sizeof path, "%s/metrics.jsonl", a);
    char *text = slurp(path, NULL), *save = NULL;
    const double want[4] = {0.04, 0.04, 0.02, 0.01};
    int i = 0;
    for (char *l = text ? strtok_r(text, "\n", &save) : NULL; l && i < 4; l = strtok_r(NULL, "\n", &save), i++) {
        char lr[40];
        CHECK(field(l, "lr", lr, sizeof lr) && atof(lr) == want[i]);
    }
    CHECK(i == 4);
    free(text);
    run(&r, (const char *[]){"train", "--schedule", "plateau:mode=up", "--progress", "off", NULL});
    CHECK(r.status == 2 && strstr(r.err, "invalid value 'up' for 'mode'") != NULL);
}

/* ---- damaged and mismatched checkpoints ----------------------------------------------------- */

/* A copy of a finished run to damage. */
static bool copy_run(const char *from, const char *to) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", to, from, to);
    return system(cmd) == 0;
}

static void current_ckpt(const char *run_dir, const char *file, char *out, size_t n) {
    char p[4096];
    snprintf(p, sizeof p, "%s/checkpoint", run_dir);
    char *name = slurp(p, NULL);
    if (name) name[strcspn(name, "\n")] = '\0';
    snprintf(out, n, "%s/%s/%s", run_dir, name ? name : "?", file);
    free(name);
}

/* The resume is refused with one line mentioning `why`, and the run
 * directory is left exactly as it was. */
static void check_refused(const char *dir, const char *const *extra, const char *why) {
    unsigned long long before = tree_hash(dir);
    const char *args[16] = {"train", "--resume", dir, "--progress", "off"};
    int n = 5;
    for (int i = 0; extra && extra[i]; i++) args[n++] = extra[i];
    args[n] = NULL;
    result r;
    run(&r, args);
    if (r.status != 1 || count_lines(r.err) != 1 || strncmp(r.err, "zgrad: ", 7) != 0 || !strstr(r.err, why))
        zgt_fail(__FILE__, __LINE__, "resume %s: exit %d, stderr \"%s\" (expected \"%s\")", dir, r.status, r.err,
                 why);
    CHECK(tree_hash(dir) == before);
}

TEST(cli_bad_checkpoints_refused) {
    REQUIRE_DATA();
    char good[256], bad[256], p[4096];
    snprintf(good, sizeof good, "%s/ckpt-good", tmp_root);
    result r;
    run(&r, (const char *[]){"train", "--model", "mlp", "--limit-train", "256", "--limit-test", "128", "--epochs", "1",
                             "--out", good, "--progress", "off", NULL});
    CHECK(r.status == 0);
    snprintf(bad, sizeof bad, "%s/ckpt-bad", tmp_root);

    /* Another model or optimizer, or other hyperparameters. */
    CHECK(copy_run(good, bad));
    check_refused(bad, (const char *[]){"--model", "cnn", "--epochs", "2", NULL}, "model is mlp in the checkpoint");
    check_refused(bad, (const char *[]){"--optimizer", "sgd", "--epochs", "2", NULL}, "optimizer is adam");
    check_refused(bad, (const char *[]){"--lr", "0.01", "--epochs", "2", NULL}, "lr is 0.001");
    check_refused(bad, (const char *[]){"--batch-size", "32", "--epochs", "2", NULL}, "batch size");
    check_refused(bad, (const char *[]){"--seed", "7", "--epochs", "2", NULL}, "seed");

    /* A truncated weights file. */
    current_ckpt(bad, "model.safetensors", p, sizeof p);
    struct stat st;
    CHECK(stat(p, &st) == 0 && st.st_size > 100);
    CHECK(truncate(p, st.st_size / 2) == 0);
    check_refused(bad, (const char *[]){"--epochs", "2", NULL}, "damaged");
    result e;
    run(&e, (const char *[]){"eval", "--checkpoint", bad, NULL});
    CHECK(e.status == 1 && count_lines(e.err) == 1);

    /* One flipped byte inside the optimizer state (a valid file that
     * parses, caught by the CRC). */
    CHECK(copy_run(good, bad));
    current_ckpt(bad, "optim.safetensors", p, sizeof p);
    size_t len;
    char *buf = slurp(p, &len);
    CHECK(buf && len > 64);
    if (buf) {
        buf[len - 7] ^= 0x40;
        FILE *f = fopen(p, "wb");
        CHECK(f && fwrite(buf, 1, len, f) == len);
        if (f) fclose(f);
    }
    free(buf);
    check_refused(bad, (const char *[]){"--epochs", "2", NULL}, "damaged");

    /* A garbage pointer file, and one naming a missing directory. */
    CHECK(copy_run(good, bad));
    snprintf(p, sizeof p, "%s/checkpoint", bad);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("../../etc\n", f);
        fclose(f);
    }
    check_refused(bad, (const char *[]){"--epochs", "2", NULL}, "damaged");
    f = fopen(p, "w");
    if (f) {
        fputs("ckpt-e0009-s0000000099\n", f);
        fclose(f);
    }
    check_refused(bad, (const char *[]){"--epochs", "2", NULL}, "does not exist");

    /* Not a run at all. */
    char empty[256];
    tmp_path(empty, sizeof empty, "empty");
    check_refused(empty, (const char *[]){"--epochs", "2", NULL}, "holds no checkpoint");

    /* And a new run will not overwrite an existing one. */
    run(&r, (const char *[]){"train", "--model", "mlp", "--limit-train", "256", "--epochs", "1", "--out", good,
                             "--progress", "off", NULL});
    CHECK(r.status == 1 && strstr(r.err, "already holds a run"));
}

/* ---- kill -9 at random moments ---------------------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* A run that checkpoints after every step is killed with SIGKILL at random
 * moments (most of them inside a save); after each kill the latest
 * checkpoint must load (zgrad eval) and the run must resume; the run
 * finished through all the kills equals the run that was never killed. */
TEST(cli_checkpoint_survives_kill) {
    REQUIRE_DATA();
    const char *kill_epochs = "10";
    const char *common[] = {"--model", "mlp", "--limit-train", "256", "--limit-test", "128", "--batch-size", "32",
                            "--epochs", kill_epochs, "--checkpoint-every-steps", "1", "--progress", "off"};
    char ref[256], dir[256], p1[300], p2[300];
    snprintf(ref, sizeof ref, "%s/kill-ref", tmp_root);
    snprintf(dir, sizeof dir, "%s/kill-run", tmp_root);
    const char *args[24] = {"train"};
    int n = 1;
    for (int i = 0; i < 14; i++) args[n++] = common[i];
    args[n++] = "--out";
    args[n++] = ref;
    args[n] = NULL;
    double t0 = now_s();
    result r;
    run(&r, args);
    double t_ref = now_s() - t0;
    CHECK(r.status == 0);
    args[n - 1] = dir;

    /* The time the reference spent training (without start-up): the
     * kills below are spread over it. */
    double t_train = 0;
    char mpath[300];
    snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", ref);
    char *mtext = slurp(mpath, NULL);
    for (char *q = mtext; q && (q = strstr(q, "\"seconds\": ")) != NULL; q += 11) t_train += atof(q + 11);
    free(mtext);
    CHECK(t_train > 0 && t_train <= t_ref);

    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    int kills = zgt_sanitized() ? 3 : 6, sigkilled = 0;
    char pointer[300];
    snprintf(pointer, sizeof pointer, "%s/checkpoint", dir);
    for (int k = 0; k < kills; k++) {
        char *before = slurp(pointer, NULL);
        pid_t pid = k == 0 ? zgt_cli_spawn(args, NULL, NULL)
                           : zgt_cli_spawn((const char *[]){"train", "--resume", dir, "--progress", "off", NULL}, NULL, NULL);
        CHECK(pid > 0);
        if (pid <= 0) {
            free(before);
            return;
        }
        /* Once the process has saved a new checkpoint (it is training),
         * a random moment within a share of the training time. */
        double w0 = now_s();
        int raw, st = -1;
        bool done = false;
        for (;;) {
            char *cur = slurp(pointer, NULL);
            bool moved = cur && (!before || strcmp(cur, before) != 0);
            free(cur);
            if (waitpid(pid, &raw, WNOHANG) == pid) {
                done = true;
                st = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
            }
            if (moved || done) break;
            if (now_s() - w0 > 60) {
                zgt_fail(__FILE__, __LINE__, "run %d saved no checkpoint within 60 s", k);
                break;
            }
            sleep_s(0.001);
        }
        free(before);
        if (!done) {
            sleep_s(t_train * 0.5 / kills * (double)rand() / RAND_MAX);
            kill(pid, SIGKILL);
            st = zgt_cli_wait(pid);
        }
        /* Killed, or (rarely, on a machine much faster than during the
         * reference run) finished already. */
        if (st != 128 + SIGKILL && st != 0) zgt_fail(__FILE__, __LINE__, "run %d ended with status %d", k, st);
        sigkilled += st == 128 + SIGKILL;
        /* The latest checkpoint loads... */
        result e;
        run(&e, (const char *[]){"eval", "--checkpoint", dir, "--limit-test", "64", NULL});
        if (e.status != 0) zgt_fail(__FILE__, __LINE__, "after kill %d: eval: exit %d: %s", k, e.status, e.err);
    }
    CHECK(sigkilled >= 2);
    /* ...and the run resumes to the very result of the unkilled one. */
    run(&r, (const char *[]){"train", "--resume", dir, "--progress", "off", NULL});
    if (r.status != 0) zgt_fail(__FILE__, __LINE__, "final resume: exit %d: %s", r.status, r.err);
    metrics ma = read_metrics(ref), mb = read_metrics(dir);
    CHECK(ma.n == 10);
    CHECK(metrics_equal(&ma, &mb));
    snprintf(p1, sizeof p1, "%s/model.safetensors", ref);
    snprintf(p2, sizeof p2, "%s/model.safetensors", dir);
    CHECK(same_bytes(p1, p2));
    /* No stale checkpoint directories or temporary files are left. */
    DIR *d = opendir(dir);
    int ckpts = 0, tmps = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        ckpts += strncmp(e->d_name, "ckpt-", 5) == 0;
        tmps += strstr(e->d_name, ".tmp.") != NULL;
    }
    if (d) closedir(d);
    CHECK(ckpts == 1);
    CHECK(tmps == 0);
}

/* ---- the library side of the driver ------------------------------------------------------------- */

TEST(train_config_validation) {
    zg_train_config c = zg_train_config_defaults();
    CHECK_OK(zg_train_config_validate(&c));
    CHECK(c.model == ZG_MODEL_CNN && c.optimizer == ZG_ADAM && c.epochs == 3 && c.batch_size == 64 && c.seed == 0);
    CHECK_NEAR(c.mean, 0.2860, 1e-7);
    CHECK_NEAR(c.std, 0.3530, 1e-7);
    c.momentum = 0.9;
    CHECK_ERR(zg_train_config_validate(&c), "momentum applies to sgd and rmsprop");
    c.optimizer = ZG_SGD;
    CHECK_OK(zg_train_config_validate(&c));
    c.epochs = 0;
    CHECK_ERR(zg_train_config_validate(&c), "epochs");
    c = zg_train_config_defaults();
    c.std = 0;
    CHECK_ERR(zg_train_config_validate(&c), "std");
    c = zg_train_config_defaults();
    c.lr = NAN;
    CHECK_ERR(zg_train_config_validate(&c), "finite");
    c = zg_train_config_defaults();
    c.batch_size = 0;
    CHECK_ERR(zg_train_config_validate(&c), "batch_size");
    CHECK_ERR(zg_train_config_validate(NULL), "NULL");
    CHECK(zg_train_optim_kind("rmsprop") == ZG_RMSPROP && zg_train_optim_kind("Adam") == -1);
    CHECK(zg_train_model_kind("mlp") == ZG_MODEL_MLP && zg_train_model_kind(NULL) == -1);
    CHECK(!strcmp(zg_train_optim_name(ZG_ADAMW), "adamw") && zg_train_model_name((zg_model_kind)7) == NULL);
}

TEST(train_model_builders) {
    zg_manual_seed(0);
    zg_module *cnn = zg_model_default_cnn();
    CHECK_PTR(cnn);
    if (!cnn) return;
    /* PyTorch's nn.Sequential names and sizes: 1*32*9+32, 32*64*9+64,
     * 3136*128+128, 128*10+10 = 421642 parameters. */
    static const char *const names[] = {"0.weight", "0.bias", "3.weight", "3.bias",
                                        "7.weight", "7.bias", "9.weight", "9.bias"};
    CHECK(zg_module_num_params(cnn) == 8);
    for (int i = 0; i < 8 && i < zg_module_num_params(cnn); i++) CHECK(!strcmp(zg_module_param_name(cnn, i), names[i]));
    CHECK(zg_module_num_elements(cnn) == 421642);
    int64_t xs[4] = {2, 1, 28, 28};
    zg_tensor *x = zg_randn(xs, 4);
    zg_tensor *y = zg_module_forward(cnn, x);
    CHECK(y && zg_tensor_ndim(y) == 2 && zg_tensor_size(y, 0) == 2 && zg_tensor_size(y, 1) == 10);
    zg_tensor_free(x);
    zg_module_free(cnn);

    static const int64_t sizes[] = {784, 256, 128, 10};
    zg_module *mlp = zg_model_mlp(sizes, 4);
    CHECK_PTR(mlp);
    if (mlp) {
        CHECK(zg_module_num_params(mlp) == 6);
        CHECK(!strcmp(zg_module_param_name(mlp, 0), "1.weight") && !strcmp(zg_module_param_name(mlp, 4), "5.weight"));
        CHECK(zg_module_num_elements(mlp) == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10);
    }
    zg_module_free(mlp);
    CHECK_NULL_ERR(zg_model_mlp(sizes, 1), "zg_model_mlp");
    static const int64_t bad[] = {4, 0, 2};
    CHECK_NULL_ERR(zg_model_mlp(bad, 3), "size 1");
}

/* zg_evaluate on four hand-made samples through a Linear layer with known
 * weights: predictions, ties (the first maximum wins), the confusion matrix
 * and the mean cross-entropy are all known exactly. */
TEST(train_evaluate_exact) {
    REQUIRE_SETUP();
    char csv[256];
    tmp_path(csv, sizeof csv, "eval.csv");
    FILE *f = fopen(csv, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("2,0,0\n0,3,1\n1,0,2\n0,0,2\n", f);
    fclose(f);
    zg_dataset *ds = zg_dataset_load_csv(csv, -1, false);
    CHECK_PTR(ds);
    if (!ds) return;
    zg_loader_opts lo = {.batch_size = 3, .shuffle = false, .mean = 0, .std = 1, .prefetch = true};
    zg_loader *ld = zg_loader_new(ds, &lo);
    zg_module *lin = zg_nn_linear(2, 3, true);
    CHECK_PTR(ld);
    CHECK_PTR(lin);
    if (!ld || !lin) {
        zg_loader_free(ld);
        zg_module_free(lin);
        zg_dataset_free(ds);
        return;
    }
    /* W = [[1,0],[0,1],[0,0]], b = 0: logits (x0, x1, 0). */
    float *w = zg_tensor_data(zg_module_param(lin, 0)), *b = zg_tensor_data(zg_module_param(lin, 1));
    const float wv[6] = {1, 0, 0, 1, 0, 0};
    memcpy(w, wv, sizeof wv);
    memset(b, 0, 3 * sizeof(float));
    zg_eval_result r;
    CHECK_OK(zg_evaluate(lin, ld, 3, &r));
    CHECK(r.n == 4 && r.num_classes == 3);
    CHECK_NEAR(r.accuracy, 0.5, 1e-12);
    double want = (log(exp(2.0) + 2) - 2 + log(exp(3.0) + 2) - 3 + log(exp(1.0) + 2) + log(3.0)) / 4;
    CHECK_NEAR(r.loss, want, 1e-6);
    static const int64_t conf[9] = {1, 0, 0, 0, 1, 0, 2, 0, 0};
    for (int i = 0; i < 9 && r.confusion; i++) CHECK(r.confusion[i] == conf[i]);
    zg_eval_result_free(&r);
    /* Train mode and grad mode are as they were. */
    CHECK(zg_module_is_training(lin));
    CHECK(zg_grad_enabled());
    /* Too few classes for the labels, and a model of the wrong width. */
    CHECK_ERR(zg_evaluate(lin, ld, 2, &r), "expected");
    CHECK_ERR(zg_evaluate(NULL, ld, 3, &r), "NULL");
    zg_loader_free(ld);
    zg_module_free(lin);
    zg_dataset_free(ds);
}

/* zg_train_run from C: the result struct, no output on a NULL log, and the
 * numbers agree with metrics.jsonl. */
TEST(train_run_library) {
    REQUIRE_DATA();
    char out[256];
    tmp_path(out, sizeof out, "lib-run");
    zg_train_config c = zg_train_config_defaults();
    c.model = ZG_MODEL_MLP;
    c.optimizer = ZG_SGD;
    c.lr = 0.05;
    c.momentum = 0.9;
    c.epochs = 2;
    c.limit_train = 300;
    c.limit_test = 100;
    c.batch_size = 50;
    c.out_dir = out;
    c.progress = ZG_PROGRESS_OFF;
    c.log = NULL;
    zg_train_result r;
    CHECK_OK(zg_train_run(&c, &r));
    CHECK(r.epochs_done == 2);
    CHECK(!strcmp(r.out_dir, out));
    CHECK(r.test_acc > 0.3 && r.test_acc <= 1);
    metrics m = read_metrics(out);
    CHECK(m.n == 2);
    if (m.n == 2) {
        CHECK_NEAR(atof(m.line[1][3]), r.test_acc, 1e-15);
        CHECK_NEAR(atof(m.line[1][1]), r.train_loss, 1e-15);
    }
    char p[512];
    snprintf(p, sizeof p, "%s/metrics.jsonl", out);
    char *text = slurp(p, NULL);
    CHECK(text && strstr(text, "\"steps\": 6") && strstr(text, "\"lr\": 0.05"));
    free(text);
    /* The checkpoint's options come back as a configuration. */
    zg_train_config back = zg_train_config_defaults();
    CHECK_OK(zg_train_checkpoint_config(out, &back));
    CHECK(back.model == ZG_MODEL_MLP && back.optimizer == ZG_SGD && back.epochs == 2 && back.batch_size == 50);
    CHECK(back.lr == 0.05 && back.momentum == 0.9 && back.limit_train == 300 && back.limit_test == 100);
    /* Resuming with a changed momentum is refused before anything runs. */
    back.momentum = 0.5;
    back.epochs = 3;
    back.resume_dir = out;
    back.log = NULL;
    back.progress = ZG_PROGRESS_OFF;
    CHECK_ERR(zg_train_run(&back, &r), "momentum is 0.9 in the checkpoint, 0.5 here");
    CHECK_ERR(zg_train_checkpoint_config("/nonexistent", &back), "not a directory");
}
