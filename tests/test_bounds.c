/* Bounds and overflow in what zgrad reads from files and the command line:
 * a weights file's shapes are checked before a model is built from them,
 * the safetensors header is read in memory linear in its tensors (and at
 * most 32 MiB of it), sizes and counters from the command line and from
 * checkpoints stay where nothing can overflow, and numbered keys have one
 * spelling. What a file merely claims must not be allocated: those
 * readers run in a child process with a cap on new memory
 * (zgt_run_bounded). */
#include "harness.h"
#include "cli_runner.h"
#include "io/io_internal.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define DATA_DIR "/usr/share/datasets/fashion-mnist"

/* ---- helpers ------------------------------------------------------------------ */

static char *tmp_file(const char *dir, const char *name) {
    static char p[8][512];
    static int k;
    char *s = p[k++ % 8];
    snprintf(s, sizeof p[0], "%s/%s", dir, name);
    return s;
}

/* Writes zero-filled float tensors of the given 2-D shapes. */
static void write_weights(const char *path, const char *const *names, const int64_t (*shapes)[2], int n) {
    zg_tensor *t[8];
    for (int i = 0; i < n; i++) t[i] = zg_zeros(shapes[i], 2);
    CHECK_OK(zg_safetensors_write(path, t, names, n, NULL, NULL, 0));
    for (int i = 0; i < n; i++) zg_tensor_free(t[i]);
}

/* A safetensors file rewritten with one change: a metadata value set (or
 * added), a tensor set (or added, t owned by the caller), or a tensor
 * renamed. */
typedef struct {
    const char *key, *value;      /* metadata */
    const char *tensor;           /* with t */
    zg_tensor *t;
    const char *from, *to;        /* a rename */
} st_change;

static bool st_rewrite(const char *path, const st_change *c) {
    zg_safetensors *st = zg_safetensors_read(path);
    if (!st) return false;
    int n = zg_safetensors_count(st), m = zg__safetensors_meta_count(st);
    zg_tensor *t[64];
    const char *names[64], *keys[64], *vals[64];
    if (n + 1 > 64 || m + 1 > 64) {
        zg_safetensors_free(st);
        return false;
    }
    bool set_t = false, set_m = false;
    for (int i = 0; i < n; i++) {
        names[i] = zg_safetensors_name(st, i);
        t[i] = zg_safetensors_get(st, names[i]);
        if (c->tensor && !strcmp(names[i], c->tensor)) t[i] = c->t, set_t = true;
        if (c->from && !strcmp(names[i], c->from)) names[i] = c->to;
    }
    if (c->tensor && !set_t) t[n] = c->t, names[n++] = c->tensor;
    for (int i = 0; i < m; i++) {
        keys[i] = zg__safetensors_meta_key(st, i);
        vals[i] = zg_safetensors_metadata(st, keys[i]);
        if (c->key && !strcmp(keys[i], c->key)) vals[i] = c->value, set_m = true;
    }
    if (c->key && !set_m) keys[m] = c->key, vals[m++] = c->value;
    bool ok = zg_safetensors_write(path, t, names, n, keys, vals, m) == ZG_OK;
    zg_safetensors_free(st);
    return ok;
}

static bool copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    char buf[1 << 16];
    size_t n;
    bool ok = a && b;
    while (ok && (n = fread(buf, 1, sizeof buf, a)) > 0) ok = fwrite(buf, 1, n, b) == n;
    if (a) fclose(a);
    if (b && fclose(b) != 0) ok = false;
    return ok;
}

/* ---- a weights file's shapes (zgrad eval) -------------------------------------- */

static int eval_file(void *path) {
    zg_eval_result r;
    int rc = zg_eval_checkpoint(path, "/nonexistent/data", 0, &r);
    if (rc == ZG_OK) zg_eval_result_free(&r);
    return rc;
}

/* `zgrad eval` builds an MLP from a bare weights file's shapes: they are
 * checked first (784 inputs, each Linear's input the previous output, 10
 * outputs, widths in [1, 65536]), the error names the tensor and its
 * shape, and nothing is allocated for what they claim (the reader runs
 * under a 256 MiB cap; a 3 KB file of [1, 784] and [2^31, 0] once built
 * Linear(1, 2^31): 16 GiB). */
TEST(eval_checks_weight_shapes_first) {
    char *dir = zgt_temp_dir();
    if (!dir) return;
    static const char *const names[] = {"1.weight", "3.weight"};
    static const struct {
        int64_t shapes[2][2];
        const char *msg;
    } cases[] = {
        {{{1, 784}, {(int64_t)1 << 31, 0}}, "'3.weight' has shape [2147483648,0]: its input size must be 1"},
        {{{1, 784}, {268435456, 0}}, "'3.weight' has shape [268435456,0]: its input size must be 1"},
        {{{0, 784}, {10, 0}}, "'1.weight' has shape [0,784]: a layer's output size must be in [1, 65536]"},
        {{{1, 784}, {65537, 1}}, "'3.weight' has shape [65537,1]: a layer's output size must be in [1, 65536]"},
        {{{4, 28}, {10, 4}}, "'1.weight' has shape [4,28]: its input size must be 784 (the pixels of an image)"},
        {{{5, 784}, {7, 5}}, "the last Linear weight '3.weight' has shape [7,5]: it must have 10 outputs"},
    };
    char *path = tmp_file(dir, "model.safetensors"), msg[1100];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_weights(path, names, cases[i].shapes, 2);
        int rc = zgt_run_bounded(eval_file, path, 256, msg, sizeof msg);
        if (rc >= 0 || !strstr(msg, "zg_eval_checkpoint") || !strstr(msg, cases[i].msg))
            zgt_fail(__FILE__, __LINE__, "case %zu: status %d, error \"%s\" (expected \"%s\")", i, rc, msg,
                     cases[i].msg);
    }
    /* The model zgrad train writes passes the check (and fails on the
     * missing data set instead). */
    zg_module *mlp = zg_model_mlp((const int64_t[]){784, 256, 128, 10}, 4);
    CHECK_OK(zg_module_save(mlp, path));
    zg_module_free(mlp);
    CHECK(zgt_run_bounded(eval_file, path, 256, msg, sizeof msg) < 0);
    if (!strstr(msg, "/nonexistent/data")) zgt_fail(__FILE__, __LINE__, "error \"%s\"", msg);
    zgt_remove_dir(dir);
}

/* ---- the safetensors header ------------------------------------------------------ */

static int read_st(void *path) {
    zg_safetensors *st = zg_safetensors_read(path);
    zg_safetensors_free(st);
    return st ? ZG_OK : ZG_ERR_FORMAT;
}

/* A file of the 8-byte header length hlen, then n bytes of text. */
static void write_raw(const char *path, uint64_t hlen, const char *text, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)(hlen >> (8 * i));
    CHECK(fwrite(lenb, 1, 8, f) == 8 && fwrite(text, 1, n, f) == n);
    fclose(f);
}

/* A shape of 8 million dimensions in a 16 MiB header: as a JSON tree
 * (~100 bytes a value) that was 800 MB before the rank was checked; read
 * entry by entry it is refused at its 9th dimension, in a 64 MiB cap that
 * holds the header text and little else. A header of 20 MiB of metadata,
 * which is legal, reads in the same cap. */
TEST(st_header_memory_linear_in_tensors) {
    char *dir = zgt_temp_dir();
    if (!dir) return;
    char *path = tmp_file(dir, "big.safetensors"), msg[1100];
    const size_t dims = (size_t)8 << 20;
    const char *head = "{\"a\":{\"dtype\":\"F32\",\"shape\":[", *tail = "],\"data_offsets\":[0,0]}}";
    const char *mh = "{\"__metadata__\":{\"k\":\"";
    size_t hl = strlen(head), len = hl + 2 * dims - 1 + strlen(tail);
    size_t ml = strlen(mh), vlen = (size_t)20 << 20;
    char *h = malloc(ml + vlen + 3);
    CHECK(h != NULL);
    if (!h) return;
    memcpy(h, head, hl);
    for (size_t i = 0; i < dims; i++) memcpy(h + hl + 2 * i, "0,", 2);
    memcpy(h + hl + 2 * dims - 1, tail, strlen(tail)); /* over the last ',' */
    write_raw(path, len, h, len);
    int rc = zgt_run_bounded(read_st, path, 64, msg, sizeof msg);
    if (rc >= 0 || !strstr(msg, "tensor 'a': shape has at least 9 dimensions (at most 8 supported)"))
        zgt_fail(__FILE__, __LINE__, "status %d, error \"%s\"", rc, msg);

    memcpy(h, mh, ml);
    memset(h + ml, 'x', vlen);
    memcpy(h + ml + vlen, "\"}}", 3);
    write_raw(path, ml + vlen + 3, h, ml + vlen + 3);
    CHECK(zgt_run_bounded(read_st, path, 96, msg, sizeof msg) == ZG_OK);
    free(h);
    zgt_remove_dir(dir);
}

/* Headers above 32 MiB are refused by their length, before any is read
 * (the format's own limit, 100 MB, let a corrupt length cost 100 MB). */
TEST(st_header_size_bounded) {
    char *dir = zgt_temp_dir();
    if (!dir) return;
    char *path = tmp_file(dir, "huge.safetensors");
    const uint64_t hlen = (uint64_t)40 << 20;
    write_raw(path, hlen, "{", 1);
    CHECK(truncate(path, (off_t)(8 + hlen)) == 0);
    CHECK_NULL_ERR(zg_safetensors_read(path), "header length 41943040 is absurd: zgrad reads headers of at most "
                                              "33554432 bytes (32 MiB)");
    /* The writer keeps to the same bound. */
    const char *key = "k";
    char *big = malloc(((size_t)32 << 20) + 1);
    CHECK(big != NULL);
    if (big) {
        memset(big, 'x', (size_t)32 << 20);
        big[(size_t)32 << 20] = '\0';
        const char *val = big;
        CHECK_ERR(zg_safetensors_write(path, NULL, NULL, 0, &key, &val, 1), "exceeds the 33554432-byte limit");
        free(big);
    }
    zgt_remove_dir(dir);
}

/* ---- sizes and counters --------------------------------------------------------- */

/* A batch larger than the data set is one batch: ceil(n / B) without the
 * n + B - 1 that overflowed for B near INT64_MAX (0 batches, an epoch of
 * nothing and a NaN loss, or a UBSan report). */
TEST(loader_counts_batches_of_any_size) {
    char *dir = zgt_temp_dir();
    if (!dir) return;
    char *csv = tmp_file(dir, "d.csv");
    FILE *f = fopen(csv, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("0,1\n1,2\n0,3\n1,4\n0,5\n", f);
    fclose(f);
    zg_dataset *ds = zg_dataset_load_csv(csv, 0, false);
    CHECK_PTR(ds);
    static const int64_t sizes[] = {INT64_MAX, INT64_MAX - 3, (int64_t)1 << 62, 6, 5, 2};
    static const int64_t want[] = {1, 1, 1, 1, 1, 3}, want_drop[] = {0, 0, 0, 0, 1, 2};
    for (int i = 0; ds && i < 6; i++) {
        for (int drop = 0; drop < 2; drop++) {
            zg_loader_opts o = {.batch_size = sizes[i], .drop_last = drop, .mean = 0, .std = 1};
            zg_loader *ld = zg_loader_new(ds, &o);
            CHECK_PTR(ld);
            if (!ld) continue;
            int64_t nb = zg_loader_num_batches(ld);
            if (nb != (drop ? want_drop[i] : want[i]))
                zgt_fail(__FILE__, __LINE__, "batch %lld, drop_last %d: %lld batches", (long long)sizes[i], drop,
                         (long long)nb);
            zg_tensor *x, *y;
            int64_t seen = 0;
            while (zg_loader_next(ld, &x, &y) == 1) seen += zg_tensor_size(y, 0);
            CHECK(seen == (drop ? want_drop[i] * sizes[i] : 5));
            zg_loader_free(ld);
        }
    }
    zg_dataset_free(ds);
    zgt_remove_dir(dir);
}

/* The library's ranges: at most 100000 epochs (each one's metrics live in
 * the checkpoint's header), batches of at most a million, and batch
 * numbers below 2^53 (N + COUNT of --inject-nan-loss overflowed). */
TEST(train_config_ranges) {
    zg_train_config c = zg_train_config_defaults();
    c.epochs = 100000;
    c.batch_size = 1000000;
    c.eval_batch_size = 1000000;
    CHECK_OK(zg_train_config_validate(&c));
    c.epochs = 100001;
    CHECK_ERR(zg_train_config_validate(&c), "epochs must be in [1, 100000] (got 100001)");
    c = zg_train_config_defaults();
    c.batch_size = INT64_MAX;
    CHECK_ERR(zg_train_config_validate(&c), "batch_size must be in [1, 1000000] (got 9223372036854775807)");
    c = zg_train_config_defaults();
    c.eval_batch_size = 1000001;
    CHECK_ERR(zg_train_config_validate(&c), "eval_batch_size must be in [1, 1000000]");
    c = zg_train_config_defaults();
    c.inject_nan_loss = INT64_MAX;
    c.inject_nan_count = 2;
    CHECK_ERR(zg_train_config_validate(&c), "injection steps must be in [0, 2^53]");
    c = zg_train_config_defaults();
    c.inject_nan_loss = 3;
    c.inject_nan_count = INT64_MAX;
    CHECK_ERR(zg_train_config_validate(&c), "count in [1, 2^53]");
}

/* The CLI's captured output and the run below live here, removed at exit. */
static char scratch[64];

__attribute__((destructor)) static void remove_scratch(void) {
    if (strncmp(scratch, "/tmp/zgt_", 9) != 0) return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    if (system(cmd) != 0) fprintf(stderr, "test_bounds: could not remove %s\n", scratch);
}

static bool cli_ready(void) {
    if (!scratch[0]) {
        char *d = zgt_temp_dir();
        if (!d) return false;
        snprintf(scratch, sizeof scratch, "%s", d);
    }
    if (!zgt_cli_setup(scratch)) {
        zgt_fail(__FILE__, __LINE__, "no zgrad binary next to the test (%s)", zgt_cli_bin());
        return false;
    }
    return true;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* Every numeric option has the library's range: a value outside it is a
 * usage error naming the option and the bound (exit 2), before any data
 * is read. */
TEST(cli_numeric_option_ranges) {
    if (!cli_ready()) return;
    static const struct {
        const char *opt, *value, *mention;
    } cases[] = {
        {"--batch-size", "9223372036854775807", "--batch-size: at most 1000000"},
        {"--batch-size", "1000001", "--batch-size: at most 1000000"},
        {"--epochs", "100001", "--epochs: at most 100000"},
        {"--inject-nan-loss", "9223372036854775807:2", "--inject-nan-loss: at most 9007199254740992"},
        {"--inject-nan-loss", "5:9223372036854775807", "--inject-nan-loss: at most 9007199254740992"},
        {"--inject-bad-batch", "9223372036854775807", "--inject-bad-batch: at most 9007199254740992"},
        {"--inject-bad-backward", "9007199254740993", "--inject-bad-backward: at most 9007199254740992"},
        {"--checkpoint-every-steps", "9223372036854775807", "--checkpoint-every-steps: at most 9007199254740992"},
        {"--accum", "1000001", "--accum: at most 1000000"},
        {"--threads", "1025", "--threads: at most 1024"},
        {"--max-bad-steps", "2147483648", "--max-bad-steps: at most 1000000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        zgt_cli_result r;
        zgt_cli_run(&r, (const char *[]){"train", cases[i].opt, cases[i].value, "--data", "/nonexistent", "--out",
                                         "/nonexistent/run", NULL});
        if (r.status != 2 || count_lines(r.err) != 2 || !strstr(r.err, cases[i].mention))
            zgt_fail(__FILE__, __LINE__, "%s %s: exit %d, stderr \"%s\"", cases[i].opt, cases[i].value, r.status,
                     r.err);
    }
}

/* A finished one-epoch run of the MLP on 64 samples, made once. */
static const char *small_run(void) {
    static char run[300];
    static int state;
    if (state) return state > 0 ? run : NULL;
    state = -1;
    if (!cli_ready()) return NULL;
    struct stat sb;
    if (stat(DATA_DIR, &sb) != 0) {
        zgt_fail(__FILE__, __LINE__, "Fashion-MNIST is missing in %s (run scripts/setup)", DATA_DIR);
        return NULL;
    }
    snprintf(run, sizeof run, "%s/run", scratch);
    zgt_cli_result r;
    zgt_cli_run(&r, (const char *[]){"train", "--model", "mlp", "--limit-train", "64", "--limit-test", "64", "--epochs",
                                     "1", "--batch-size", "32", "--out", run, "--progress", "off", NULL});
    if (r.status != 0) {
        zgt_fail(__FILE__, __LINE__, "zgrad train: exit %d: %s", r.status, r.err);
        return NULL;
    }
    state = 1;
    return run;
}

/* The checkpoint's trainer.safetensors of the run. */
static void trainer_file(const char *run, char *out, size_t n) {
    char p[512];
    snprintf(p, sizeof p, "%s/checkpoint", run);
    char name[128] = "";
    FILE *f = fopen(p, "r");
    if (f) {
        if (!fgets(name, sizeof name, f)) name[0] = '\0';
        fclose(f);
    }
    name[strcspn(name, "\n")] = '\0';
    snprintf(out, n, "%s/%s/trainer.safetensors", run, name);
}

/* A checkpoint's sizes and counters are read in the ranges where counting
 * on cannot overflow: a global_step of INT64_MAX was resumed and
 * incremented. The resume is refused naming the key; the eval of one
 * whose evaluation batch is absurd too. */
TEST(checkpoint_counters_bounded) {
    const char *run = small_run();
    if (!run) return;
    char trainer[600], saved[620];
    trainer_file(run, trainer, sizeof trainer);
    snprintf(saved, sizeof saved, "%s.orig", trainer);
    CHECK(copy_file(trainer, saved));
    static const struct {
        const char *key, *value;
    } cases[] = {
        {"global_step", "9223372036854775807"}, {"next_batch", "9223372036854775807"},
        {"epoch_steps", "9223372036854775807"}, {"epoch_samples", "9007199254740993"},
        {"bad_in_row", "9223372036854775807"},  {"bad_batches", "9223372036854775807"},
        {"batch_size", "9223372036854775807"},  {"eval_batch_size", "1000001"},
        {"epochs", "2147483647"},               {"epoch", "2147483647"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CHECK(copy_file(saved, trainer));
        CHECK(st_rewrite(trainer, &(st_change){.key = cases[i].key, .value = cases[i].value}));
        char want[128];
        snprintf(want, sizeof want, "'%s' is invalid ('%s')", cases[i].key, cases[i].value);
        zgt_cli_result r;
        zgt_cli_run(&r, (const char *[]){"train", "--resume", run, "--epochs", "2", "--progress", "off", NULL});
        if (r.status != 1 || !strstr(r.err, want))
            zgt_fail(__FILE__, __LINE__, "resume with %s = %s: exit %d, stderr \"%s\"", cases[i].key, cases[i].value,
                     r.status, r.err);
        zgt_cli_run(&r, (const char *[]){"eval", "--checkpoint", run, "--limit-test", "64", NULL});
        if (r.status != 1 || !strstr(r.err, want))
            zgt_fail(__FILE__, __LINE__, "eval with %s = %s: exit %d, stderr \"%s\"", cases[i].key, cases[i].value,
                     r.status, r.err);
    }
    /* The metrics history: each key once. */
    CHECK(copy_file(saved, trainer));
    zg_safetensors *st = zg_safetensors_read(trainer);
    const char *hist = st ? zg_safetensors_metadata(st, "metrics") : NULL;
    CHECK(hist && hist[0] == '[' && strstr(hist, "\"steps\": "));
    if (hist) {
        char twice[2048];
        const char *at = strstr(hist, "\"steps\": ");
        snprintf(twice, sizeof twice, "%.*s\"steps\": 0, %s", (int)(at - hist), hist, at);
        CHECK(st_rewrite(trainer, &(st_change){.key = "metrics", .value = twice}));
        zgt_cli_result r;
        zgt_cli_run(&r, (const char *[]){"train", "--resume", run, "--epochs", "2", "--progress", "off", NULL});
        if (r.status != 1 || !strstr(r.err, "metrics history entry 1 is malformed"))
            zgt_fail(__FILE__, __LINE__, "resume with %s: exit %d, stderr \"%s\"", twice, r.status, r.err);
        /* --ddp's all-reduce counters come as a set of four. */
        snprintf(twice, sizeof twice, "%.*s\"ddp_allreduces\": 3, %s", (int)(at - hist), hist, at);
        CHECK(st_rewrite(trainer, &(st_change){.key = "metrics", .value = twice}));
        zgt_cli_run(&r, (const char *[]){"train", "--resume", run, "--epochs", "2", "--progress", "off", NULL});
        if (r.status != 1 || !strstr(r.err, "metrics history entry 1 is malformed"))
            zgt_fail(__FILE__, __LINE__, "resume with %s: exit %d, stderr \"%s\"", twice, r.status, r.err);
    }
    zg_safetensors_free(st);
    CHECK(copy_file(saved, trainer));
    unlink(saved);
}

/* ---- optimizer and scheduler state ---------------------------------------------- */

/* An Adam optimizer over one parameter, stepped once, saved to path. */
static zg_optim *adam_saved(zg_tensor **p, const char *path) {
    *p = zgt_param_vec((const float[]){1, 2}, 2);
    zg_tensor *g = zgt_from((const float[]){0.5f, -0.5f}, (const int64_t[]){2}, 1);
    zg_optim_config c = zg_optim_defaults(ZG_ADAM);
    zg_optim *o = zg_optim_new(ZG_ADAM, p, 1, &c);
    CHECK_PTR(o);
    if (o) {
        CHECK_OK(zg_tensor_set_grad(*p, g));
        CHECK_OK(zg_optim_step(o));
        CHECK_OK(zg_optim_save(o, path));
    }
    zg_tensor_free(g);
    return o;
}

/* Indices have one spelling: "state.00.step" beside "state.0.step" was
 * read as parameter 0 too (the later won), and a "param_groups.00.lr" or
 * any other key load does not read was ignored. Step counts stay below
 * 2^53 (the next step adds one). */
TEST(optim_state_keys_canonical) {
    char *dir = zgt_temp_dir();
    if (!dir) return;
    char *path = tmp_file(dir, "optim.safetensors"), *saved = tmp_file(dir, "saved.safetensors");
    zg_tensor *p;
    zg_optim *o = adam_saved(&p, saved);
    if (!o) return;
    CHECK(copy_file(saved, path));
    CHECK_OK(zg_optim_load(o, path));
    zg_tensor *seven = zg_tensor_new(ZG_INT64, NULL, 0), *huge = zg_tensor_new(ZG_INT64, NULL, 0);
    zg_tensor_data_i64(seven)[0] = 7;
    zg_tensor_data_i64(huge)[0] = INT64_MAX;
    const struct {
        st_change c;
        const char *msg;
    } cases[] = {
        {{.tensor = "state.00.step", .t = seven}, "unexpected entry 'state.00.step' (expected state.<index>.<name>"},
        {{.from = "state.0.exp_avg", .to = "state.00.exp_avg"}, "unexpected entry 'state.00.exp_avg'"},
        {{.tensor = "state.0.step", .t = huge},
         "entry 'state.0.step' must be one non-negative int64 step count, at most 2^53"},
        {{.key = "param_groups.00.lr", .value = "0.5"}, "unexpected metadata 'param_groups.00.lr'"},
        {{.key = "param_groups.1.lr", .value = "0.5"}, "unexpected metadata 'param_groups.1.lr'"},
        {{.key = "param_groups.0.momentum", .value = "0.5"}, "unexpected metadata 'param_groups.0.momentum'"},
        {{.key = "param_groups.0.params", .value = "00"}, "metadata 'param_groups.0.params' is not a list of indices"},
        {{.key = "num_groups", .value = "01"}, "metadata 'num_groups' is missing or invalid"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CHECK(copy_file(saved, path));
        CHECK(st_rewrite(path, &cases[i].c));
        zg_clear_error();
        int rc = zg_optim_load(o, path);
        if (rc >= 0 || !strstr(zg_last_error(), cases[i].msg))
            zgt_fail(__FILE__, __LINE__, "case %zu: status %d, error \"%s\" (expected \"%s\")", i, rc,
                     zg_last_error(), cases[i].msg);
    }
    zg_tensor_free(seven);
    zg_tensor_free(huge);
    zg_optim_free(o);
    zg_tensor_free(p);
    zgt_remove_dir(dir);
}

/* Replaces the first `from` in s (malloc'd) with `to`. */
static char *replaced(const char *s, const char *from, const char *to) {
    const char *at = strstr(s, from);
    if (!at) return NULL;
    size_t n = strlen(s) - strlen(from) + strlen(to) + 1;
    char *r = malloc(n);
    if (r) snprintf(r, n, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    return r;
}

/* A scheduler's counters and lengths stay below 2^53 (last_epoch + 1 and
 * 2 * T_max overflowed), and each key of its state appears once. */
TEST(sched_counters_bounded) {
    zg_tensor *p = zgt_param_vec((const float[]){1}, 1);
    zg_optim_config c = zg_optim_defaults(ZG_SGD);
    zg_optim *o = zg_optim_new(ZG_SGD, &p, 1, &c);
    CHECK_PTR(o);
    if (!o) return;
    CHECK_NULL_ERR(zg_sched_cosine(o, INT64_MAX, 0), "T_max must be > 0 and at most 2^53 (got 9223372036854775807)");
    CHECK_NULL_ERR(zg_sched_step_lr(o, (int64_t)1 << 60, 0.1), "step_size must be > 0 and at most 2^53");
    CHECK_NULL_ERR(zg_sched_linear(o, 0.5, 1, INT64_MAX), "total_iters must be > 0 and at most 2^53");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "step:9223372036854775807", 10), "step_size must be > 0 and at most 2^53");
    zg_sched *s = zg_sched_step_lr(o, 3, 0.5);
    CHECK_PTR(s);
    char *json = s ? zg_sched_state_json(s) : NULL;
    CHECK(json && strstr(json, "\"last_epoch\":0") && strstr(json, "\"step_count\":1"));
    if (json) {
        CHECK_OK(zg_sched_load_state_json(s, json));
        const char *bad[][3] = {
            {"\"last_epoch\":0", "\"last_epoch\":9223372036854775807", "'last_epoch' is missing or invalid"},
            {"\"last_epoch\":0", "\"last_epoch\":9007199254740993", "'last_epoch' is missing or invalid"},
            {"\"step_count\":1", "\"step_count\":9223372036854775807", "'step_count' is missing or invalid"},
            {"\"step_size\":3", "\"step_size\":9223372036854775807", "step_size must be > 0 and at most 2^53"},
            {"\"last_epoch\":0", "\"last_epoch\":0,\"last_epoch\":5", "key 'last_epoch' appears twice"},
        };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            char *j = replaced(json, bad[i][0], bad[i][1]);
            CHECK(j != NULL);
            if (j) CHECK_ERR(zg_sched_load_state_json(s, j), bad[i][2]);
            free(j);
        }
        CHECK(zg_sched_last_epoch(s) == 0);
    }
    free(json);
    zg_sched_free(s);
    zg_optim_free(o);
    zg_tensor_free(p);
}
