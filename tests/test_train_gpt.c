/* The training driver with --model gpt (src/train/lm.c and the language
 * model's path through src/train/train.c), and `zgrad sample`: the driver
 * runs the same loop as a hand-written one, bit for bit; resumes are exact
 * (mid-interval, and with more steps after a short last interval); a resume
 * on another text is refused; sampling reads everything from the run; the
 * options of one kind of model are refused with another. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_runner.h"
#include "harness.h"

static char *root; /* this process's temporary directory */

__attribute__((destructor)) static void remove_root(void) {
    if (root) zgt_remove_dir(root);
}

static const char *tmp(const char *name) {
    static char paths[64][512]; /* a ring: each test uses fewer */
    static int k;
    if (!root) root = zgt_temp_dir();
    char *p = paths[k++ % 64];
    snprintf(p, sizeof paths[0], "%s/%s", root ? root : "/nonexistent", name);
    return p;
}

/* A text of ~24 KB with the structure of a play (names, lines, words from a
 * small lexicon), drawn from a fixed linear congruential sequence. */
static const char *make_text(const char *name, unsigned salt) {
    static const char *const words[] = {"the", "king", "is", "dead", "long", "live", "my", "lord", "and", "her",
                                        "grace", "shall", "we", "go", "to", "war", "peace", "o", "night", "day"};
    static const char *const names[] = {"ROMEO", "JULIET", "KING", "NURSE"};
    const char *path = tmp(name);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    unsigned x = 12345u + salt;
    for (int line = 0; line < 700; line++) {
        x = x * 1103515245u + 12345u;
        fprintf(f, "%s:\n", names[(x >> 16) % 4]);
        int n = 3 + (int)((x >> 8) % 6);
        for (int w = 0; w < n; w++) {
            x = x * 1103515245u + 12345u;
            fprintf(f, "%s%s", w ? " " : "", words[(x >> 16) % 20]);
        }
        fputs(".\n\n", f);
    }
    fclose(f);
    return path;
}

#define SCHEDULE "warmup-cosine:3,start_factor=0.25,eta_min=1e-4"

/* A GPT small enough for a test: the recipe's optimizer, clipping and
 * schedule, 12 steps in intervals of 6. */
static zg_train_config small_config(const char *text, const char *out) {
    zg_train_config c = zg_train_config_for_model(ZG_MODEL_GPT);
    snprintf(c.text_path, sizeof c.text_path, "%s", text);
    c.gpt.n_layer = 1;
    c.gpt.n_head = 2;
    c.gpt.n_embd = 16;
    c.gpt.block_size = 16;
    c.batch_size = 4;
    c.iters = 12;
    c.eval_interval = 6;
    c.eval_iters = 3;
    c.seed = 5;
    snprintf(c.schedule, sizeof c.schedule, "%s", SCHEDULE);
    c.out_dir = out;
    c.progress = ZG_PROGRESS_OFF;
    c.log = NULL;
    return c;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (buf) buf[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

static bool same_file(const char *a, const char *b) {
    size_t la = 0, lb = 0;
    char *x = slurp(a, &la), *y = slurp(b, &lb);
    bool same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

/* A metrics file with its "seconds" fields taken out. */
static char *without_seconds(const char *path) {
    char *s = slurp(path, NULL);
    for (char *p = s ? strstr(s, "\"seconds\": ") : NULL; p; p = strstr(p, "\"seconds\": ")) {
        char *end = strchr(p, ',');
        if (!end) break;
        memmove(p, end + 1, strlen(end + 1) + 1);
    }
    return s;
}

static const char *in(const char *dir, const char *file) {
    static char p[2][600];
    static int k;
    char *s = p[k++ % 2];
    snprintf(s, sizeof p[0], "%s/%s", dir, file);
    return s;
}

/* The same run written by hand: seed, GPT, nanoGPT's decay split, the
 * schedule, and per step zero_grad -> forward -> loss -> backward ->
 * clip -> step -> schedule on the text's windows keyed by the step. The
 * driver's weights and validation loss must be these bits exactly. */
TEST(gpt_driver_is_the_canonical_loop) {
    const char *text = make_text("play.txt", 0), *out = tmp("canon");
    CHECK_PTR(text);
    zg_train_config c = small_config(text, out);
    zg_train_result r;
    CHECK_OK(zg_train_run(&c, &r));
    CHECK(r.epochs_done == 2);

    zg_text *t = zg_text_load(text, ZG_TEXT_CHAR, 0.1);
    CHECK_PTR(t);
    if (!t) return;
    zg_gpt_config g = c.gpt;
    g.vocab_size = zg_text_vocab_size(t);
    zg_manual_seed(c.seed);
    zg_module *m = zg_nn_gpt(&g);
    zg_optim_config oc = zg_optim_defaults(ZG_ADAMW);
    oc.lr = 1e-3;
    oc.beta2 = 0.99;
    zg_optim *o = zg_optim_new_decay_split(ZG_ADAMW, m, 0.1, &oc);
    zg_sched *s = zg_sched_from_spec(o, SCHEDULE, c.iters);
    CHECK(m && o && s);
    for (int64_t it = 0; it < c.iters && m && o && s; it++) {
        zg_tensor *x, *y;
        CHECK_OK(zg_text_batch(t, false, c.batch_size, g.block_size, c.seed, it, &x, &y));
        zg_optim_zero_grad(o, true);
        zg_tensor *logits = zg_module_forward(m, x);
        zg_tensor *loss = zg_cross_entropy(zg_reshape(logits, (int64_t[]){-1, g.vocab_size}, 2),
                                           zg_reshape(y, (int64_t[]){-1}, 1), NULL);
        CHECK_OK(zg_backward(loss, NULL));
        CHECK_OK(zg_module_clip_grad_norm(m, 1.0, 2.0, false, NULL));
        CHECK_OK(zg_optim_step(o));
        CHECK_OK(zg_sched_step(s));
        zg_arena_reset();
        zg_tensor_free(x);
        zg_tensor_free(y);
    }
    CHECK_OK(zg_module_save(m, tmp("canon.safetensors")));
    CHECK(same_file(tmp("canon.safetensors"), in(out, "model.safetensors")));
    /* Validation: windows 0..eval_iters-1 of the validation split. */
    double sum = 0;
    zg_module_train(m, false);
    zg_no_grad_enter();
    for (int64_t k = 0; k < c.eval_iters; k++) {
        zg_tensor *x, *y;
        CHECK_OK(zg_text_batch(t, true, c.batch_size, g.block_size, c.seed, k, &x, &y));
        zg_tensor *logits = zg_module_forward(m, x);
        sum += zg_tensor_item(zg_cross_entropy(zg_reshape(logits, (int64_t[]){-1, g.vocab_size}, 2),
                                               zg_reshape(y, (int64_t[]){-1}, 1), NULL));
        zg_arena_reset();
        zg_tensor_free(x);
        zg_tensor_free(y);
    }
    zg_no_grad_exit();
    CHECK(r.test_loss == sum / (double)c.eval_iters);
    CHECK(r.test_acc > 0 && r.test_acc < 1);
    zg_sched_free(s);
    zg_optim_free(o);
    zg_module_free(m);
    zg_text_free(t);
}

/* Stopped inside an interval (after a step checkpoint, by bad batches),
 * then resumed: the same bits as the run that never stopped. */
TEST(gpt_resume_mid_interval_is_exact) {
    const char *text = make_text("play.txt", 0);
    zg_train_config a = small_config(text, tmp("whole"));
    a.checkpoint_every_steps = 4;
    CHECK_OK(zg_train_run(&a, NULL));
    zg_train_config b = small_config(text, tmp("stopped"));
    b.checkpoint_every_steps = 4;
    b.inject_nan_loss = 9; /* batches 9, 10, 11 give NaN: 3 in a row stop it */
    b.inject_nan_count = 3;
    b.max_bad_steps = 3;
    CHECK(zg_train_run(&b, NULL) == ZG_ERR_STATE);
    char *ptr = slurp(in(tmp("stopped"), "checkpoint"), NULL);
    CHECK(ptr && strstr(ptr, "e0001-s0000000008")); /* the step-8 checkpoint, inside interval 2 */
    free(ptr);
    zg_train_config c = small_config(text, NULL);
    c.resume_dir = tmp("stopped");
    c.checkpoint_every_steps = 4;
    zg_train_result r;
    CHECK_OK(zg_train_run(&c, &r));
    CHECK(r.bad_losses == 0);
    CHECK(same_file(in(tmp("whole"), "model.safetensors"), in(tmp("stopped"), "model.safetensors")));
    /* The metrics agree but for the wall times. */
    char *ma = without_seconds(in(tmp("whole"), "metrics.jsonl")), *mb = without_seconds(in(tmp("stopped"), "metrics.jsonl"));
    CHECK(ma && mb && strstr(ma, "test_loss") && !strcmp(ma, mb));
    free(ma);
    free(mb);
    zg_train_config back;
    CHECK_OK(zg_train_checkpoint_config(tmp("stopped"), &back));
    CHECK(back.model == ZG_MODEL_GPT && back.iters == 12 && back.gpt.n_embd == 16 && back.eval_iters == 3);
    CHECK(back.beta2 == 0.99 && !strcmp(back.text_path, text));
}

/* A run of 9 steps (intervals 6 and 3) continued to 12 without a
 * schedule: the windows are keyed by the run's batches, so the result is
 * that of 12 steps in one go. */
TEST(gpt_more_iters_after_a_short_interval) {
    const char *text = make_text("play.txt", 0);
    zg_train_config a = small_config(text, tmp("twelve"));
    a.schedule[0] = '\0';
    CHECK_OK(zg_train_run(&a, NULL));
    zg_train_config b = small_config(text, tmp("nine"));
    b.schedule[0] = '\0';
    b.iters = 9;
    zg_train_result r;
    CHECK_OK(zg_train_run(&b, &r));
    CHECK(r.epochs_done == 2);
    b.iters = 12;
    b.out_dir = NULL;
    b.resume_dir = tmp("nine");
    CHECK_OK(zg_train_run(&b, &r));
    CHECK(r.epochs_done == 3); /* evaluated at steps 6, 9 and 12 */
    CHECK(same_file(in(tmp("twelve"), "model.safetensors"), in(tmp("nine"), "model.safetensors")));
    /* With a schedule, its length is part of the run. */
    zg_train_config d = small_config(text, tmp("sched"));
    d.iters = 9;
    CHECK_OK(zg_train_run(&d, NULL));
    d.iters = 12;
    d.out_dir = NULL;
    d.resume_dir = tmp("sched");
    CHECK_ERR(zg_train_run(&d, NULL), "the schedule spans 9 steps in the checkpoint, 12 here");
}

TEST(gpt_resume_on_other_text_is_refused) {
    const char *text = make_text("mutable.txt", 0);
    zg_train_config c = small_config(text, tmp("text-run"));
    c.iters = 6;
    CHECK_OK(zg_train_run(&c, NULL));
    char *before = slurp(in(tmp("text-run"), "checkpoint"), NULL);
    make_text("mutable.txt", 1); /* other lines, the same characters */
    c.out_dir = NULL;
    c.resume_dir = tmp("text-run");
    CHECK_ERR(zg_train_run(&c, NULL), "was trained on another text");
    char *after = slurp(in(tmp("text-run"), "checkpoint"), NULL);
    CHECK(before && after && !strcmp(before, after));
    free(before);
    free(after);
}

/* Sampling needs only the run: the vocabulary is in its checkpoint. */
TEST(gpt_sample_from_a_run) {
    const char *text = make_text("sample.txt", 0);
    zg_train_config c = small_config(text, tmp("sample-run"));
    CHECK_OK(zg_train_run(&c, NULL));
    char *a = NULL, *b = NULL, *d = NULL, *greedy = NULL;
    CHECK_OK(zg_train_sample(tmp("sample-run"), "KING:", 40, 0.8f, 0, 7, &a));
    CHECK_OK(zg_train_sample(tmp("sample-run"), "KING:", 40, 0.8f, 0, 7, &b));
    CHECK_OK(zg_train_sample(tmp("sample-run"), "KING:", 40, 0.8f, 0, 8, &d));
    CHECK(a && b && d && !strcmp(a, b) && strcmp(a, d));
    CHECK(a && !strncmp(a, "KING:", 5) && strlen(a) == 45); /* ASCII: one byte per token */
    /* Temperature 0 is zg_gpt_generate's argmax on the saved weights. */
    CHECK_OK(zg_train_sample(tmp("sample-run"), "KING:", 12, 0.0f, 0, 1, &greedy));
    zg_text *t = zg_text_load(text, ZG_TEXT_CHAR, 0.1);
    zg_gpt_config g = c.gpt;
    g.vocab_size = t ? zg_text_vocab_size(t) : 1;
    zg_module *m = zg_nn_gpt(&g);
    CHECK(t && m && zg_module_load(m, in(tmp("sample-run"), "model.safetensors")) == ZG_OK);
    int64_t ids[17];
    char want[64] = "";
    if (t && m && zg_text_encode(t, "KING:", ids, 5) == 5 && zg_gpt_generate(m, ids, 5, 12, 0.0f, 0, 1, ids) == 0)
        zg_text_decode(t, ids, 17, want, sizeof want);
    CHECK(greedy && !strcmp(greedy, want));
    /* An empty prompt starts from a newline. */
    char *nl = NULL;
    CHECK_OK(zg_train_sample(tmp("sample-run"), "", 5, 0.8f, 10, 3, &nl));
    CHECK(nl && nl[0] == '\n' && strlen(nl) == 6);
    char *bad = NULL;
    CHECK_ERR(zg_train_sample(tmp("sample-run"), "KING\xe2\x82\xac", 5, 0.8f, 0, 1, &bad), "not in the vocabulary");
    CHECK_ERR(zg_train_sample(tmp("sample-run"), "K", 5, -1.0f, 0, 1, &bad), "temperature");
    CHECK_ERR(zg_train_sample(tmp("nowhere"), "K", 5, 1.0f, 0, 1, &bad), "not a directory");
    CHECK(bad == NULL);
    free(a);
    free(b);
    free(d);
    free(greedy);
    free(nl);
    zg_module_free(m);
    zg_text_free(t);
}

/* The byte vocabulary: 256 tokens whatever the text holds. */
TEST(gpt_byte_vocabulary) {
    const char *text = make_text("bytes.txt", 0);
    zg_train_config c = small_config(text, tmp("byte-run"));
    c.text_vocab = ZG_TEXT_BYTE;
    c.iters = 6;
    CHECK_OK(zg_train_run(&c, NULL));
    zg_train_config back;
    CHECK_OK(zg_train_checkpoint_config(tmp("byte-run"), &back));
    CHECK(back.text_vocab == ZG_TEXT_BYTE);
    char *s = NULL;
    CHECK_OK(zg_train_sample(tmp("byte-run"), "\xe2\x82\xac", 4, 1.0f, 0, 2, &s));
    CHECK(s && !strncmp(s, "\xe2\x82\xac", 3));
    free(s);
}

TEST(gpt_config_validation) {
    zg_train_config c = zg_train_config_for_model(ZG_MODEL_GPT);
    CHECK_OK(zg_train_config_validate(&c));
    CHECK(c.optimizer == ZG_ADAMW && c.lr == 1e-3 && c.weight_decay == 0.1 && c.beta2 == 0.99 && c.clip_norm == 1.0);
    CHECK(c.batch_size == 12 && c.iters == 2000 && c.gpt.n_layer == 4 && c.gpt.block_size == 64 && c.schedule[0]);
    c.gpt.n_embd = 30;
    CHECK_ERR(zg_train_config_validate(&c), "not a multiple of n_head");
    c = zg_train_config_for_model(ZG_MODEL_GPT);
    c.limit_train = 10;
    CHECK_ERR(zg_train_config_validate(&c), "sample limits apply to cnn and mlp");
    c = zg_train_config_for_model(ZG_MODEL_GPT);
    snprintf(c.corpus, sizeof c.corpus, "../etc");
    CHECK_ERR(zg_train_config_validate(&c), "corpus name");
    c = zg_train_config_for_model(ZG_MODEL_GPT);
    c.iters = 0;
    CHECK_ERR(zg_train_config_validate(&c), "iters");
    c = zg_train_config_for_model(ZG_MODEL_GPT);
    c.optimizer = ZG_SGD;
    c.weight_decay = c.lr = -1;
    CHECK_ERR(zg_train_config_validate(&c), "betas apply to adam and adamw");
    c = zg_train_config_for_model(ZG_MODEL_CNN);
    snprintf(c.text_path, sizeof c.text_path, "x.txt");
    CHECK_ERR(zg_train_config_validate(&c), "--model gpt only");
    /* A text too short for one window of each split. */
    const char *path = tmp("short.txt");
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("to be or not to be", f);
        fclose(f);
    }
    zg_train_config s = small_config(path, tmp("short-run"));
    CHECK_ERR(zg_train_run(&s, NULL), "is too short");
    /* A corpus that is not installed names the script that installs it. */
    zg_train_config k = small_config("", tmp("corpus-run"));
    setenv("ZGRAD_CORPUS_DIR", tmp("no-corpora"), 1);
    CHECK_ERR(zg_train_run(&k, NULL), "scripts/setup-corpus");
    unsetenv("ZGRAD_CORPUS_DIR");
}

/* ---- the command line ------------------------------------------------------------- */

TEST(gpt_cli_train_sample_eval) {
    char io[600];
    snprintf(io, sizeof io, "%s", tmp("io"));
    mkdir(io, 0755);
    if (!zgt_cli_setup(io)) {
        zgt_fail(__FILE__, __LINE__, "no zgrad binary next to the test (%s)", zgt_cli_bin());
        return;
    }
    const char *text = make_text("cli.txt", 0), *run = tmp("cli-run");
    zgt_cli_result r;
    zgt_cli_run(&r, (const char *[]){"train", "--model", "gpt", "--text", text, "--iters", "4", "--eval-interval", "2",
                                     "--eval-iters", "2", "--n-layer", "1", "--n-embd", "16", "--n-head", "2",
                                     "--block-size", "8", "--batch-size", "3", "--out", run, "--progress", "lines",
                                     NULL});
    CHECK(r.status == 0);
    CHECK(strstr(r.out, "step 2/4 - train loss") && strstr(r.out, "val loss") && strstr(r.out, "tokens/s"));
    CHECK(strstr(r.out, "final: val loss"));
    CHECK(strstr(r.err, "tokens/s"));
    /* 4 steps: warm-up for a tenth of them, at least one. */
    CHECK(strstr(r.out, "schedule warmup-cosine:1,"));
    zgt_cli_run(&r, (const char *[]){"sample", "--checkpoint", run, "--prompt", "NURSE:", "--tokens", "30", NULL});
    CHECK(r.status == 0 && !strncmp(r.out, "NURSE:", 6) && strlen(r.out) == 6 + 30 + 1);
    zgt_cli_run(&r, (const char *[]){"eval", "--checkpoint", run, NULL});
    CHECK(r.status == 1 && strstr(r.err, "zgrad sample"));
    zgt_cli_run(&r, (const char *[]){"train", "--model", "gpt", "--epochs", "2", NULL});
    CHECK(r.status == 2 && strstr(r.err, "apply to cnn and mlp"));
    zgt_cli_run(&r, (const char *[]){"train", "--n-layer", "2", NULL});
    CHECK(r.status == 2 && strstr(r.err, "apply to --model gpt"));
    zgt_cli_run(&r, (const char *[]){"train", "--model", "gpt", "--betas", "0.9", NULL});
    CHECK(r.status == 2 && strstr(r.err, "expected B1,B2"));
    zgt_cli_run(&r, (const char *[]){"sample", "--prompt", "x", NULL});
    CHECK(r.status == 2 && strstr(r.err, "--checkpoint RUN is required"));
    zgt_cli_run(&r, (const char *[]){"sample", "--help", NULL});
    CHECK(r.status == 0 && strstr(r.out, "No KV cache"));
}
