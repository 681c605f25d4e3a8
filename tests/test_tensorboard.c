/* TensorBoard event files: the protobuf wire writer, CRC-32C and TFRecord
 * framing against published values, and runs whose event file TensorBoard's
 * own reader (EventAccumulator, from scripts/setup-pytools) reads back as
 * metrics.jsonl's numbers (tests/export/tb_check.py), also after resumes
 * (one file, the old bytes kept and appended to; a torn file replaced). */
#include "harness.h"
#include "io/io_internal.h"
#include "train/train_internal.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>

#define DATA_DIR "/usr/share/datasets/fashion-mnist"
#define TB_CHECK "tests/export/tb_check.py"

static char *root;

__attribute__((destructor)) static void remove_root(void) {
    if (root) zgt_remove_dir(root);
}

static const char *tmp(const char *name) {
    static char paths[32][512];
    static int k;
    if (!root) root = zgt_temp_dir();
    char *p = paths[k++ % 32];
    snprintf(p, sizeof paths[0], "%s/%s", root ? root : "/nonexistent", name);
    return p;
}

static bool bytes_are(const zg__strbuf *b, const unsigned char *want, size_t n) {
    return !b->failed && b->n == n && memcmp(b->s, want, n) == 0;
}

TEST(pb_wire_encodes_varints_and_fields) {
    zg__strbuf b = {0};
    zg__pb_varint(&b, 0);
    zg__pb_varint(&b, 127);
    zg__pb_varint(&b, 128);
    zg__pb_varint(&b, 300);
    CHECK(bytes_are(&b, (const unsigned char[]){0x00, 0x7f, 0x80, 0x01, 0xac, 0x02}, 6));
    zg__sb_free(&b);
    /* int64 -1: key (2 << 3 | 0), then ten bytes of two's complement. */
    zg__pb_int64(&b, 2, -1);
    CHECK(bytes_are(&b, (const unsigned char[]){0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
                    11));
    zg__sb_free(&b);
    /* double 1.0 as field 1 (wire type 1), float 1.0 as field 2 (type 5),
     * "ab" as field 1 (type 2). */
    zg__pb_double(&b, 1, 1.0);
    zg__pb_float(&b, 2, 1.0f);
    zg__pb_bytes(&b, 1, "ab", 2);
    CHECK(bytes_are(&b,
                    (const unsigned char[]){0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x15, 0, 0, 0x80, 0x3f, 0x0a, 0x02,
                                            'a', 'b'},
                    18));
    zg__sb_free(&b);
}

/* CRC-32C check values: "123456789" (the catalogue's check value) and
 * RFC 3720's B.4 vectors. */
TEST(crc32c_matches_the_published_vectors) {
    unsigned char zeros[32] = {0}, ones[32], up[32];
    for (int i = 0; i < 32; i++) {
        ones[i] = 0xff;
        up[i] = (unsigned char)i;
    }
    CHECK(zg__crc32c("123456789", 9) == 0xE3069283u);
    CHECK(zg__crc32c(zeros, 32) == 0x8A9136AAu);
    CHECK(zg__crc32c(ones, 32) == 0x62A8AB43u);
    CHECK(zg__crc32c(up, 32) == 0x46DD794Eu);
    /* TFRecord's mask: rotate right by 15, add 0xa282ead8. */
    const uint32_t c = 0xE3069283u;
    CHECK(zg__crc32c_masked("123456789", 9) == ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

TEST(tfrecord_frames_length_and_data_with_masked_crcs) {
    zg__strbuf b = {0};
    zg__tfrecord_put(&b, "123456789", 9);
    CHECK(!b.failed && b.n == 8 + 4 + 9 + 4);
    if (b.failed || b.n != 25) return;
    const unsigned char *p = (const unsigned char *)b.s;
    unsigned char len[8] = {9, 0, 0, 0, 0, 0, 0, 0};
    CHECK(memcmp(p, len, 8) == 0);
    uint32_t lc = zg__crc32c_masked(len, 8), dc = zg__crc32c_masked("123456789", 9);
    CHECK(p[8] == (lc & 0xff) && p[9] == ((lc >> 8) & 0xff) && p[10] == ((lc >> 16) & 0xff) && p[11] == lc >> 24);
    CHECK(memcmp(p + 12, "123456789", 9) == 0);
    CHECK(p[21] == (dc & 0xff) && p[22] == ((dc >> 8) & 0xff) && p[23] == ((dc >> 16) & 0xff) && p[24] == dc >> 24);
    zg__sb_free(&b);
}

TEST(event_file_names_are_recognised_exactly) {
    const char *ours[] = {"events.out.tfevents.1700000000.host.zgrad", "events.out.tfevents.1.a-b_c.d.zgrad"};
    const char *not_ours[] = {"events.out.tfevents.1700000000.host", "events.out.tfevents..host.zgrad",
                              "events.out.tfevents.17.zgrad", "events.out.tfevents.17.h/x.zgrad",
                              "events.out.tfevents.17.host.zgrad.tmp.42", "xevents.out.tfevents.17.host.zgrad"};
    for (int i = 0; i < 2; i++) CHECK(zg__tfevents_name(ours[i], strlen(ours[i])));
    for (int i = 0; i < 6; i++) CHECK(!zg__tfevents_name(not_ours[i], strlen(not_ours[i])));
}

/* ---- runs read back by TensorBoard ------------------------------------------------ */

static bool data_ready(void) {
    struct stat st;
    if (stat(DATA_DIR "/train-images-idx3-ubyte.gz", &st) == 0 || stat(DATA_DIR "/train-images-idx3-ubyte", &st) == 0)
        return true;
    zgt_fail(__FILE__, __LINE__, "Fashion-MNIST is not installed in %s: run scripts/setup", DATA_DIR);
    return false;
}

static zg_train_config mlp_config(const char *out, int epochs) {
    zg_train_config c = zg_train_config_defaults();
    c.model = ZG_MODEL_MLP;
    c.epochs = epochs;
    c.limit_train = 256;
    c.limit_test = 64;
    c.clip_norm = 1.0; /* so that the driver has a grad norm */
    c.progress = ZG_PROGRESS_OFF;
    c.log = NULL;
    c.out_dir = out;
    return c;
}

/* The names of the event files in dir (each "tfevents" name), as one
 * string "a|b|"; their count. */
static int event_files(const char *dir, char *names, size_t n) {
    int k = 0;
    names[0] = '\0';
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (!strstr(e->d_name, "tfevents")) continue;
        k++;
        size_t at = strlen(names);
        snprintf(names + at, n - at, "%s|", e->d_name);
    }
    if (d) closedir(d);
    return k;
}

/* The path of dir's one event file into path. */
static bool the_event_file(const char *dir, char *path, size_t n) {
    char names[1024];
    if (event_files(dir, names, sizeof names) != 1) {
        zgt_fail(__FILE__, __LINE__, "expected one event file in %s, found: %s", dir, names);
        return false;
    }
    names[strcspn(names, "|")] = '\0';
    snprintf(path, n, "%s/%s", dir, names);
    return true;
}

/* TensorBoard's reader agrees with metrics.jsonl (tb_check.py). */
static void check_read_back(const char *dir, const char *expect) {
    char out[4096];
    int rc = zgt_pytools_run(TB_CHECK, (const char *const[]){dir, NULL}, out, sizeof out);
    if (rc != 0) zgt_fail(__FILE__, __LINE__, "%s %s: exit %d: %s", TB_CHECK, dir, rc, out);
    else if (!strstr(out, expect)) zgt_fail(__FILE__, __LINE__, "%s %s: '%s' lacks '%s'", TB_CHECK, dir, out, expect);
}

TEST(run_event_file_holds_the_metrics_for_tensorboard) {
    if (!data_ready() || !zgt_pytools_python()) return;
    const char *out = tmp("mlp");
    zg_train_config c = mlp_config(out, 2);
    CHECK_OK(zg_train_run(&c, NULL));
    char path[1024];
    if (!the_event_file(out, path, sizeof path)) return;
    const char *name = strrchr(path, '/') + 1;
    CHECK(zg__tfevents_name(name, strlen(name)));
    /* 2 epochs x (train_loss, test_loss, test_acc, lr, grad_norm, throughput) */
    check_read_back(out, "ok 12 points in 6 tags");
}

/* A GPT's points sit at its step counts, with the recipe's clipping norm
 * and tokens per second. */
TEST(gpt_run_event_file_holds_the_metrics_for_tensorboard) {
    if (!zgt_pytools_python()) return;
    const char *text = tmp("play.txt"), *out = tmp("gpt");
    FILE *f = fopen(text, "w");
    CHECK(f != NULL);
    if (!f) return;
    for (int i = 0; i < 400; i++) fprintf(f, "ROMEO:\nthe king is dead, long live the king %d\n", i % 7);
    fclose(f);
    zg_train_config c = zg_train_config_for_model(ZG_MODEL_GPT);
    snprintf(c.text_path, sizeof c.text_path, "%s", text);
    c.gpt.n_layer = 1;
    c.gpt.n_head = 2;
    c.gpt.n_embd = 16;
    c.gpt.block_size = 16;
    c.batch_size = 4;
    c.iters = 6;
    c.eval_interval = 3;
    c.eval_iters = 2;
    c.schedule[0] = '\0';
    c.out_dir = out;
    c.progress = ZG_PROGRESS_OFF;
    c.log = NULL;
    CHECK_OK(zg_train_run(&c, NULL));
    char *m = zgt_slurp(tmp("gpt/metrics.jsonl"), NULL);
    CHECK(m && strstr(m, "\"samples\": 192,") && !strstr(m, "\"grad_norm\": null")); /* 3 steps x 4 x 16 tokens */
    free(m);
    check_read_back(out, "ok 12 points in 6 tags");
}

/* A resume keeps the run's one file: its bytes stay and the new epochs'
 * records follow them, so TensorBoard sees each point once. */
TEST(resume_appends_to_the_one_event_file) {
    if (!data_ready() || !zgt_pytools_python()) return;
    const char *out = tmp("resumed");
    zg_train_config c = mlp_config(out, 1);
    CHECK_OK(zg_train_run(&c, NULL));
    char path[1024], again[1024];
    if (!the_event_file(out, path, sizeof path)) return;
    size_t n0 = 0, n1 = 0;
    char *before = zgt_slurp(path, &n0);
    struct stat st0, st1;
    CHECK(stat(path, &st0) == 0);
    c = mlp_config(NULL, 3);
    c.resume_dir = out;
    CHECK_OK(zg_train_run(&c, NULL));
    if (the_event_file(out, again, sizeof again)) CHECK(!strcmp(path, again));
    char *after = zgt_slurp(path, &n1);
    CHECK(before && after && n1 > n0 && memcmp(before, after, n0) == 0);
    /* The same file, written on (a TensorBoard reading it live sees the
     * new records), not a replacement. */
    CHECK(stat(path, &st1) == 0 && st1.st_ino == st0.st_ino);
    free(before);
    free(after);
    check_read_back(out, "ok 18 points in 6 tags");
}

/* A file torn by a crash (half a record at its end) is rewritten whole. */
TEST(resume_replaces_a_torn_event_file) {
    if (!data_ready() || !zgt_pytools_python()) return;
    const char *out = tmp("torn");
    zg_train_config c = mlp_config(out, 1);
    CHECK_OK(zg_train_run(&c, NULL));
    char path[1024];
    if (!the_event_file(out, path, sizeof path)) return;
    FILE *f = fopen(path, "ab");
    CHECK(f && fwrite("\x30\0\0\0\0", 1, 5, f) == 5);
    if (f) fclose(f);
    c = mlp_config(NULL, 2);
    c.resume_dir = out;
    CHECK_OK(zg_train_run(&c, NULL));
    check_read_back(out, "ok 12 points in 6 tags");
}

/* Another program's event files are not the run's: left as they are; a
 * temporary file of the run's event file is cleaned up on resume, one of
 * another name is not. */
TEST(only_the_runs_own_event_files_are_touched) {
    if (!data_ready()) return;
    const char *out = tmp("shared");
    CHECK(mkdir(out, 0755) == 0);
    const char *foreign = tmp("shared/events.out.tfevents.100.other");
    FILE *f = fopen(foreign, "w");
    CHECK(f && fputs("theirs", f) >= 0);
    if (f) fclose(f);
    zg_train_config c = mlp_config(out, 1);
    c.force = true;
    CHECK_OK(zg_train_run(&c, NULL));
    char names[1024];
    CHECK(event_files(out, names, sizeof names) == 2);
    char *theirs = zgt_slurp(foreign, NULL);
    CHECK(theirs && !strcmp(theirs, "theirs"));
    free(theirs);
    const char *ours_tmp = tmp("shared/events.out.tfevents.5.h.zgrad.tmp.4242");
    const char *other_tmp = tmp("shared/events.out.tfevents.5.h.tmp.4242");
    for (int i = 0; i < 2; i++) {
        f = fopen(i ? other_tmp : ours_tmp, "w");
        if (f) fclose(f);
    }
    c = mlp_config(NULL, 2);
    c.resume_dir = out;
    CHECK_OK(zg_train_run(&c, NULL));
    struct stat st;
    CHECK(stat(ours_tmp, &st) != 0);
    CHECK(stat(other_tmp, &st) == 0);
    CHECK(stat(foreign, &st) == 0);
}
