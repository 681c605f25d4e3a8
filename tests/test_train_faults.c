/* The accumulation API (zg_accum) and the training driver's recipe and
 * fault tolerance: --accum N x B equals one batch of N*B, the clip /
 * schedule / amp flags are recorded and checked on resume, bad values exit
 * 2, skipped batches (load failure, failure after backward, NaN loss) leave
 * no gradient behind, K bad batches in a row stop the run, and SIGTERM
 * writes a checkpoint from which --resume finishes exactly as an
 * uninterrupted run. CLI cases run BUILD/zgrad from the repository root. */
#include "harness.h"
#include "cli_runner.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DATA_DIR "/usr/share/datasets/fashion-mnist"

/* ---- the accumulation API -------------------------------------------------- */

/* y = x w^T with w [1, 2]; loss = mean((x w^T - t)^2). */
static zg_tensor *make_w(const float *v) {
    int64_t shape[2] = {1, 2};
    zg_tensor *w = zg_tensor_from_data(ZG_FLOAT32, v, shape, 2);
    zg_tensor_set_requires_grad(w, true);
    return w;
}

/* The inputs must outlive the graphs that saved them: kept here and freed
 * by free_inputs() at the end of a test. */
static zg_tensor *inputs[64];
static int n_inputs;

static void free_inputs(void) {
    zg_arena_reset();
    for (int i = 0; i < n_inputs; i++) zg_tensor_free(inputs[i]);
    n_inputs = 0;
}

static zg_tensor *batch_loss(zg_tensor *w, const float *x, const float *t, int64_t n) {
    int64_t xs[2] = {n, 2}, ts[2] = {n, 1};
    if (n_inputs + 2 > 64) return NULL;
    zg_tensor *xt = inputs[n_inputs++] = zg_tensor_from_data(ZG_FLOAT32, x, xs, 2);
    zg_tensor *tt = inputs[n_inputs++] = zg_tensor_from_data(ZG_FLOAT32, t, ts, 2);
    return zg_mse_loss(zg_linear(xt, w, NULL), tt, ZG_REDUCTION_MEAN);
}

static const float X[8] = {1, 2, -1, 0.5f, 3, -2, 0.25f, 1};
static const float T[4] = {1, -1, 2, 0.5f};

/* Two micro-batches of 2 with accum 2 == one batch of 4 (SGD, 3 steps). */
TEST(accum_window_equals_big_batch) {
    const float w0[2] = {0.3f, -0.2f};
    zg_tensor *wa = make_w(w0), *wb = make_w(w0);
    zg_optim_config oc = zg_optim_defaults(ZG_SGD);
    oc.lr = 0.05;
    zg_optim *oa = zg_optim_new(ZG_SGD, &wa, 1, &oc), *ob = zg_optim_new(ZG_SGD, &wb, 1, &oc);
    zg_accum *acc = zg_accum_new(oa, NULL, 2);
    CHECK_PTR(acc);
    CHECK(zg_accum_size(acc) == 2);
    for (int s = 0; s < 3; s++) {
        bool stepped = true;
        CHECK(zg_accum_backward(acc, batch_loss(wa, X, T, 2)) == 0);
        CHECK(zg_accum_pending(acc) == 1);
        CHECK_OK(zg_accum_step(acc, &stepped)); /* window not full: nothing */
        CHECK(!stepped);
        CHECK(zg_tensor_grad(wa) != NULL);
        CHECK(zg_accum_backward(acc, batch_loss(wa, X + 4, T + 2, 2)) == 1);
        CHECK_OK(zg_accum_step(acc, &stepped));
        CHECK(stepped);
        CHECK(zg_accum_pending(acc) == 0);
        CHECK(zg_tensor_grad(wa) == NULL); /* zero_grad(set_to_none) after the step */
        zg_optim_zero_grad(ob, true);
        CHECK_OK(zg_backward(batch_loss(wb, X, T, 4), NULL));
        CHECK_OK(zg_optim_step(ob));
        zg_arena_reset();
    }
    for (int i = 0; i < 2; i++) CHECK_NEAR(zg_tensor_data(wa)[i], zg_tensor_data(wb)[i], 1e-6);
    CHECK(fabsf(zg_tensor_data(wa)[0] - w0[0]) > 1e-3f); /* it trained */
    zg_accum_free(acc);
    zg_optim_free(oa);
    zg_optim_free(ob);
    zg_tensor_free(wa);
    zg_tensor_free(wb);
    free_inputs();
}

/* The short window: flush steps with loss / N (not / k); discard drops a
 * partial backward; errors. */
TEST(accum_flush_discard_errors) {
    const float w0[2] = {0.3f, -0.2f};
    zg_tensor *w = make_w(w0);
    zg_optim_config oc = zg_optim_defaults(ZG_SGD);
    oc.lr = 0.1;
    zg_optim *o = zg_optim_new(ZG_SGD, &w, 1, &oc);
    zg_accum *acc = zg_accum_new(o, NULL, 4);
    /* The plain gradient of one batch of 2, for comparison. */
    CHECK_OK(zg_backward(batch_loss(w, X, T, 2), NULL));
    float g[2] = {zg_tensor_data(zg_tensor_grad(w))[0], zg_tensor_data(zg_tensor_grad(w))[1]};
    zg_accum_discard(acc);
    CHECK(zg_tensor_grad(w) == NULL);
    CHECK(zg_accum_backward(acc, batch_loss(w, X, T, 2)) == 0);
    bool stepped = true;
    CHECK_OK(zg_accum_flush(acc, &stepped));
    CHECK(stepped);
    /* w -= lr * g / 4: one micro-batch of a window of 4 counts a quarter. */
    for (int i = 0; i < 2; i++) CHECK_NEAR(zg_tensor_data(w)[i], w0[i] - 0.1f * g[i] / 4, 1e-7);
    CHECK_OK(zg_accum_flush(acc, &stepped)); /* empty window: nothing */
    CHECK(!stepped);
    CHECK_NULL_ERR(zg_accum_new(o, NULL, 0), "window size");
    CHECK_NULL_ERR(zg_accum_new(NULL, NULL, 2), "NULL optimizer");
    CHECK_ERR(zg_accum_set_clip(acc, 1.0, 0), "norm_type");
    zg_accum *one = zg_accum_new(o, NULL, 1);
    CHECK(zg_accum_backward(one, batch_loss(w, X, T, 2)) == 1);
    CHECK_ERR(zg_accum_backward(one, batch_loss(w, X, T, 2)), "full");
    CHECK(zg_accum_pending(one) == 1);
    zg_accum_discard(one);
    zg_accum_free(one);
    zg_accum_free(acc);
    zg_optim_free(o);
    zg_tensor_free(w);
    free_inputs();
}

/* With a scaler: the scale is the same for every micro-batch of a window;
 * clipping sees unscaled grads; an inf in one micro-batch skips the
 * window's step and halves the scale once. */
TEST(accum_scaler_clip) {
    const float w0[2] = {0.3f, -0.2f};
    zg_tensor *wa = make_w(w0), *wb = make_w(w0);
    zg_optim_config oc = zg_optim_defaults(ZG_SGD);
    oc.lr = 0.05;
    zg_optim *oa = zg_optim_new(ZG_SGD, &wa, 1, &oc), *ob = zg_optim_new(ZG_SGD, &wb, 1, &oc);
    zg_grad_scaler *sc = zg_grad_scaler_new(NULL);
    zg_accum *acc = zg_accum_new(oa, sc, 2);
    zg_accum *plain = zg_accum_new(ob, NULL, 2);
    CHECK_OK(zg_accum_set_clip(acc, 0.5, 2));
    CHECK_OK(zg_accum_set_clip(plain, 0.5, 2));
    CHECK(isnan(zg_accum_last_norm(acc)));
    bool sa, sb;
    CHECK(zg_accum_backward(acc, batch_loss(wa, X, T, 2)) == 0);
    CHECK(zg_grad_scaler_get_scale(sc) == 65536.0f);
    CHECK(zg_accum_backward(acc, batch_loss(wa, X + 4, T + 2, 2)) == 1);
    CHECK_OK(zg_accum_step(acc, &sa));
    CHECK(zg_accum_backward(plain, batch_loss(wb, X, T, 2)) == 0);
    CHECK(zg_accum_backward(plain, batch_loss(wb, X + 4, T + 2, 2)) == 1);
    CHECK_OK(zg_accum_step(plain, &sb));
    CHECK(sa && sb);
    CHECK_NEAR(zg_accum_last_norm(acc), zg_accum_last_norm(plain), 1e-5 * zg_accum_last_norm(plain));
    CHECK(zg_accum_last_norm(plain) > 0.5); /* the clip was active */
    for (int i = 0; i < 2; i++) CHECK_NEAR(zg_tensor_data(wa)[i], zg_tensor_data(wb)[i], 1e-6);
    CHECK(zg_grad_scaler_get_growth_tracker(sc) == 1);
    /* An inf loss in the window's first micro-batch: skipped step. */
    float before[2] = {zg_tensor_data(wa)[0], zg_tensor_data(wa)[1]};
    const float xi[4] = {INFINITY, 1, 1, 1};
    CHECK(zg_accum_backward(acc, batch_loss(wa, xi, T, 2)) == 0);
    CHECK(zg_grad_scaler_get_scale(sc) == 65536.0f);
    CHECK(zg_accum_backward(acc, batch_loss(wa, X, T, 2)) == 1);
    CHECK_OK(zg_accum_step(acc, &sa));
    CHECK(!sa);
    CHECK(zg_tensor_data(wa)[0] == before[0] && zg_tensor_data(wa)[1] == before[1]);
    CHECK(zg_grad_scaler_get_scale(sc) == 32768.0f);
    CHECK(zg_tensor_grad(wa) == NULL);
    zg_accum_free(acc);
    zg_accum_free(plain);
    zg_grad_scaler_free(sc);
    zg_optim_free(oa);
    zg_optim_free(ob);
    zg_tensor_free(wa);
    zg_tensor_free(wb);
    free_inputs();
}

/* ---- the driver through the library ------------------------------------------ */

static char tmp_root[64];

static bool make_tmp(void) {
    if (tmp_root[0]) return true;
    snprintf(tmp_root, sizeof tmp_root, "/tmp/zgrad-faults-XXXXXX");
    return mkdtemp(tmp_root) != NULL;
}

__attribute__((destructor)) static void remove_tmp(void) {
    if (!tmp_root[0] || strncmp(tmp_root, "/tmp/zgrad-faults-", 18) != 0) return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0) fprintf(stderr, "test_train_faults: could not remove %s\n", tmp_root);
}

static bool have_data(void) {
    struct stat st;
    return stat(DATA_DIR "/train-images-idx3-ubyte.gz", &st) == 0 || stat(DATA_DIR "/train-images-idx3-ubyte", &st) == 0;
}

#define REQUIRE_DATA()                                                                                 \
    do {                                                                                               \
        if (!make_tmp() || !have_data()) {                                                             \
            zgt_fail(__FILE__, __LINE__, "no temporary directory or no Fashion-MNIST in %s", DATA_DIR); \
            return;                                                                                    \
        }                                                                                              \
    } while (0)

static zg_train_config small_config(const char *name) {
    static char dirs[16][128];
    static int k;
    zg_train_config c = zg_train_config_defaults();
    c.model = ZG_MODEL_MLP;
    c.optimizer = ZG_SGD;
    c.lr = 0.05;
    c.momentum = 0.9;
    c.epochs = 1;
    c.limit_train = 1280;
    c.limit_test = 100;
    c.progress = ZG_PROGRESS_OFF;
    c.log = NULL;
    char *d = dirs[k++ % 16];
    snprintf(d, 128, "%s/%s", tmp_root, name);
    c.out_dir = d;
    return c;
}

/* Largest relative difference between the two runs' weights (inf if they
 * cannot be compared). */
static double weights_rdiff(const char *dir_a, const char *dir_b) {
    char pa[256], pb[256];
    snprintf(pa, sizeof pa, "%s/model.safetensors", dir_a);
    snprintf(pb, sizeof pb, "%s/model.safetensors", dir_b);
    zg_safetensors *a = zg_safetensors_read(pa), *b = zg_safetensors_read(pb);
    double worst = INFINITY;
    if (a && b && zg_safetensors_count(a) == zg_safetensors_count(b) && zg_safetensors_count(a) > 0) {
        worst = 0;
        for (int i = 0; i < zg_safetensors_count(a); i++) {
            const char *name = zg_safetensors_name(a, i);
            zg_tensor *x = (zg_tensor *)zg_safetensors_get(a, name), *y = (zg_tensor *)zg_safetensors_get(b, name);
            if (!y || zg_tensor_numel(x) != zg_tensor_numel(y)) {
                worst = INFINITY;
                break;
            }
            const float *u = zg_tensor_data(x), *v = zg_tensor_data(y);
            for (int64_t j = 0; j < zg_tensor_numel(x); j++) {
                /* allclose's form: |u - v| <= atol + rtol |v|, with atol
                 * 1e-7 for weights that are about zero. */
                double d = fabs((double)u[j] - v[j]) / (fabs((double)v[j]) + 1e-2);
                if (!(d <= worst)) worst = d;
            }
        }
    }
    zg_safetensors_free(a);
    zg_safetensors_free(b);
    return worst;
}

/* --accum 4 with batch 16 == batch 64: 20 optimizer steps, the same
 * losses and weights to rtol 1e-5. */
TEST(driver_accum_equals_big_batch) {
    REQUIRE_DATA();
    zg_train_config a = small_config("accum4"), b = small_config("batch64");
    a.batch_size = 16;
    a.accum = 4;
    b.batch_size = 64;
    zg_train_result ra, rb;
    CHECK_OK(zg_train_run(&a, &ra));
    CHECK_OK(zg_train_run(&b, &rb));
    CHECK_NEAR(ra.train_loss, rb.train_loss, 1e-5 * rb.train_loss);
    CHECK_NEAR(ra.test_loss, rb.test_loss, 1e-5 * rb.test_loss);
    double d = weights_rdiff(a.out_dir, b.out_dir);
    if (!(d <= 1e-5)) zgt_fail(__FILE__, __LINE__, "weights differ by rtol %g", d);
    /* Without the division by N it would be another run altogether. */
    zg_train_config c = small_config("batch16");
    c.batch_size = 16;
    zg_train_result rc;
    CHECK_OK(zg_train_run(&c, &rc));
    CHECK(weights_rdiff(c.out_dir, b.out_dir) > 1e-3);
}

/* A batch that fails to load, one that fails after its backward, and one
 * with a NaN loss are all skipped without a trace: the three runs end with
 * identical weights (so the next update equals a clean step's), unlike a
 * run that used the batch. */
TEST(driver_skipped_batches_leave_no_gradient) {
    REQUIRE_DATA();
    zg_train_config a = small_config("badload"), b = small_config("badbackward"), n = small_config("nanloss"),
                    clean = small_config("clean");
    a.inject_bad_batch = 5;
    b.inject_bad_backward = 5;
    n.inject_nan_loss = 5;
    zg_train_result ra, rb, rn, rc;
    CHECK_OK(zg_train_run(&a, &ra));
    CHECK_OK(zg_train_run(&b, &rb));
    CHECK_OK(zg_train_run(&n, &rn));
    CHECK_OK(zg_train_run(&clean, &rc));
    CHECK(ra.bad_batches == 1 && ra.bad_losses == 0);
    CHECK(rb.bad_batches == 1 && rb.bad_losses == 0);
    CHECK(rn.bad_batches == 0 && rn.bad_losses == 1);
    CHECK(rc.bad_batches == 0 && rc.bad_losses == 0);
    CHECK(weights_rdiff(a.out_dir, b.out_dir) == 0);
    CHECK(weights_rdiff(a.out_dir, n.out_dir) == 0);
    CHECK(weights_rdiff(a.out_dir, clean.out_dir) > 1e-4);
}

/* K non-finite losses in a row stop the run with a clear message; fewer
 * than K do not. */
TEST(driver_stops_after_k_bad_steps) {
    REQUIRE_DATA();
    zg_train_config c = small_config("nan-stop");
    c.inject_nan_loss = 3;
    c.inject_nan_count = 10;
    c.max_bad_steps = 4;
    zg_train_result r;
    CHECK_ERR(zg_train_run(&c, &r), "4 batches in a row were skipped");
    CHECK(r.bad_losses == 4);
    zg_train_config d = small_config("nan-ok");
    d.inject_nan_loss = 3;
    d.inject_nan_count = 3;
    d.max_bad_steps = 4;
    CHECK_OK(zg_train_run(&d, &r));
    CHECK(r.bad_losses == 3 && r.epochs_done == 1);
}

/* The number after "key": in the last line of a metrics.jsonl (NAN if none). */
static double last_metric(const char *dir, const char *key) {
    char path[256], line[1024], last[1024] = "";
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f) return NAN;
    while (fgets(line, sizeof line, f)) memcpy(last, line, sizeof last);
    fclose(f);
    char k[64];
    snprintf(k, sizeof k, "\"%s\"", key);
    const char *p = strstr(last, k);
    p = p ? strchr(p + strlen(k), ':') : NULL;
    return p ? strtod(p + 1, NULL) : NAN;
}

/* --amp bf16: the per-epoch evaluation runs under bf16 autocast. Its loss
 * is that of an autocast zg_evaluate of the saved model, not the float32
 * one of zg_eval_checkpoint (`zgrad eval`), whose accuracy it matches
 * within 2 points. */
TEST(train_amp_bf16_evaluates_under_autocast) {
    REQUIRE_DATA();
    zg_train_config c = small_config("amp_eval");
    c.amp = ZG_AUTOCAST_BF16;
    c.limit_test = 500;
    zg_train_result r;
    CHECK_OK(zg_train_run(&c, &r));
    CHECK_NEAR(last_metric(c.out_dir, "test_acc"), r.test_acc, 1e-6);
    CHECK(r.test_acc > 0.5); /* it learned something */
    zg_eval_result fp32;
    CHECK_OK(zg_eval_checkpoint(c.out_dir, DATA_DIR, 500, &fp32));
    CHECK(fp32.n == 500);
    CHECK(fabs(r.test_acc - fp32.accuracy) <= 0.02);
    CHECK(r.test_loss != fp32.loss);
    zg_eval_result_free(&fp32);

    /* The same evaluation by hand, under autocast and without. */
    const int64_t sizes[4] = {784, 256, 128, 10};
    zg_module *m = zg_model_mlp(sizes, 4);
    char weights[256];
    snprintf(weights, sizeof weights, "%s/model.safetensors", c.out_dir);
    CHECK_OK(zg_module_load(m, weights));
    zg_dataset *full = zg_dataset_load_mnist_dir(DATA_DIR, false);
    CHECK_PTR(full);
    zg_dataset *ds = full ? zg_dataset_head(full, 500) : NULL;
    zg_loader_opts lo = {.batch_size = c.eval_batch_size, .shuffle = false, .mean = c.mean, .std = c.std};
    zg_loader *ld = ds ? zg_loader_new(ds, &lo) : NULL;
    CHECK_PTR(ld);
    if (ld) {
        zg_eval_result plain, amp;
        CHECK_OK(zg_evaluate(m, ld, 10, &plain));
        CHECK_OK(zg_autocast_enter(ZG_AUTOCAST_BF16));
        CHECK_OK(zg_evaluate(m, ld, 10, &amp));
        zg_autocast_exit();
        CHECK(zg_autocast_get() == ZG_AUTOCAST_OFF);
        CHECK(amp.loss == r.test_loss && amp.accuracy == r.test_acc);
        CHECK(plain.loss != r.test_loss);
        CHECK_NEAR(plain.loss, r.test_loss, 0.02 * plain.loss); /* bf16 rounding, not another model */
        zg_eval_result_free(&plain);
        zg_eval_result_free(&amp);
    }
    zg_loader_free(ld);
    zg_dataset_free(ds);
    zg_dataset_free(full);
    zg_module_free(m);
}

/* ---- the CLI ------------------------------------------------------------------ */

typedef zgt_cli_result result;

static void run(result *r, const char *const *args) { zgt_cli_run(r, args); }

#define REQUIRE_CLI()                                                                       \
    do {                                                                                    \
        REQUIRE_DATA();                                                                     \
        if (!zgt_cli_setup(tmp_root)) {                                                                  \
            zgt_fail(__FILE__, __LINE__, "no zgrad binary next to the test (%s)", zgt_cli_bin()); \
            return;                                                                         \
        }                                                                                   \
    } while (0)

TEST(cli_recipe_flags_bad_values) {
    REQUIRE_CLI();
    static const char *const bad[][3] = {
        {"--accum", "0", "--accum"},          {"--accum", "x", "--accum"},
        {"--clip-norm", "0", "--clip-norm"},  {"--clip-norm", "-1", "--clip-norm"},
        {"--clip-norm", "nan", "--clip-norm"}, {"--schedule", "bogus", "schedule"},
        {"--schedule", "cosine:0", "schedule"}, {"--amp", "fp8", "--amp"},
        {"--max-bad-steps", "0", "--max-bad-steps"}, {"--inject-nan-loss", "3:0", "--inject-nan-loss"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        result r;
        run(&r, (const char *[]){"train", bad[i][0], bad[i][1], "--progress", "off", NULL});
        if (r.status != 2 || !strstr(r.err, bad[i][2]) || !strstr(r.err, "usage:"))
            zgt_fail(__FILE__, __LINE__, "%s %s: exit %d, stderr \"%s\"", bad[i][0], bad[i][1], r.status, r.err);
    }
    result r;
    run(&r, (const char *[]){"train", "--help", NULL});
    CHECK(r.status == 0);
    CHECK(strstr(r.out, "--accum N") && strstr(r.out, "--clip-norm X") && strstr(r.out, "--schedule SPEC") &&
          strstr(r.out, "--amp") && strstr(r.out, "--inject-nan-loss") && strstr(r.out, "(testing)"));
}

/* The flags run, are printed and recorded; a resume inherits them and
 * refuses a different value. */
TEST(cli_recipe_flags_recorded) {
    REQUIRE_CLI();
    char out[128];
    snprintf(out, sizeof out, "%s/recipe", tmp_root);
    result r;
    run(&r, (const char *[]){"train", "--model", "mlp", "--limit-train", "256", "--limit-test", "100", "--epochs", "1",
                             "--batch-size", "32", "--accum", "2", "--clip-norm", "0.5", "--schedule",
                             "warmup-cosine:2", "--amp", "bf16", "--out", out, "--progress", "off", NULL});
    if (r.status != 0) zgt_fail(__FILE__, __LINE__, "exit %d: %s", r.status, r.err);
    CHECK(strstr(r.out, "accum 2, clip norm 0.5, schedule warmup-cosine:2, amp bf16") != NULL);
    zg_train_config c = zg_train_config_defaults();
    CHECK_OK(zg_train_checkpoint_config(out, &c));
    CHECK(c.accum == 2 && c.clip_norm == 0.5 && !strcmp(c.schedule, "warmup-cosine:2") && c.amp == ZG_AUTOCAST_BF16);
    run(&r, (const char *[]){"train", "--resume", out, "--epochs", "2", "--accum", "3", "--progress", "off", NULL});
    CHECK(r.status == 1);
    CHECK(strstr(r.err, "accum is 2 in the checkpoint, 3 here") != NULL);
    run(&r, (const char *[]){"train", "--resume", out, "--epochs", "2", "--amp", "fp16", "--progress", "off", NULL});
    CHECK(r.status == 1);
    CHECK(strstr(r.err, "amp is bf16 in the checkpoint, fp16 here") != NULL);
    /* The schedule was laid out over 1 epoch: more would change it. */
    run(&r, (const char *[]){"train", "--resume", out, "--epochs", "2", "--progress", "off", NULL});
    CHECK(r.status == 1);
    CHECK(strstr(r.err, "the schedule spans 1 epochs in the checkpoint, 2 here") != NULL);
    run(&r, (const char *[]){"train", "--resume", out, "--progress", "off", NULL});
    if (r.status != 0) zgt_fail(__FILE__, __LINE__, "resume: exit %d: %s", r.status, r.err);
    CHECK(strstr(r.out, "amp bf16") != NULL);
}

/* SIGTERM in the middle of an fp16 + schedule + accumulation run: the
 * current window finishes, a checkpoint is written, exit 143; --resume
 * ends with the same weights and metrics as a run never stopped (so the
 * scheduler's and the GradScaler's states continued exactly). */
TEST(cli_sigterm_checkpoint_resume_exact) {
    REQUIRE_CLI();
    char a[128], b[128];
    snprintf(a, sizeof a, "%s/straight", tmp_root);
    snprintf(b, sizeof b, "%s/stopped", tmp_root);
    const char *args[] = {"train", "--model", "mlp", "--limit-train", "6400", "--limit-test", "100", "--epochs", "2",
                          "--batch-size", "16", "--accum", "2", "--clip-norm", "1", "--schedule", "cosine",
                          "--amp", "fp16", "--threads", "2", "--progress", "off", "--out", NULL, NULL};
    int n_args = (int)(sizeof args / sizeof args[0]);
    args[n_args - 2] = a;
    result r;
    run(&r, args);
    if (r.status != 0) {
        zgt_fail(__FILE__, __LINE__, "straight run: exit %d: %s", r.status, r.err);
        return;
    }
    args[n_args - 2] = b;
    const char *o = zgt_cli_out_file(), *e = zgt_cli_err_file();
    pid_t pid = zgt_cli_spawn(args, o, e);
    CHECK(pid > 0);
    /* Wait for the header line (training has begun), then a little more. */
    for (int i = 0; i < 2000; i++) {
        zgt_read_text(o, r.out, sizeof r.out);
        if (strstr(r.out, "parameters")) break;
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    }
    nanosleep(&(struct timespec){0, 200000000}, NULL);
    kill(pid, SIGTERM);
    int st = zgt_cli_wait(pid);
    zgt_read_text(e, r.err, sizeof r.err);
    if (st != 143) {
        zgt_fail(__FILE__, __LINE__, "stopped run: exit %d (expected 143): %s", st, r.err);
        return;
    }
    CHECK(strstr(r.err, "stopped by SIGTERM") && strstr(r.err, "--resume"));
    run(&r, (const char *[]){"train", "--resume", b, "--progress", "off", NULL});
    if (r.status != 0) zgt_fail(__FILE__, __LINE__, "resume: exit %d: %s", r.status, r.err);
    CHECK(strstr(r.out, "resuming") != NULL);
    CHECK(weights_rdiff(a, b) == 0);
    char ma[256], mb[256];
    snprintf(ma, sizeof ma, "%s/metrics.jsonl", a);
    snprintf(mb, sizeof mb, "%s/metrics.jsonl", b);
    /* Losses and accuracies agree exactly (the seconds differ). */
    FILE *fa = fopen(ma, "r"), *fb = fopen(mb, "r");
    CHECK(fa && fb);
    if (fa && fb) {
        char la[1024], lb[1024];
        int lines = 0;
        while (fgets(la, sizeof la, fa)) {
            CHECK(fgets(lb, sizeof lb, fb) != NULL);
            char *ka = strstr(la, "\"train_loss\""), *kb = strstr(lb, "\"train_loss\"");
            char *sa = strstr(la, "\"seconds\""), *sb = strstr(lb, "\"seconds\"");
            CHECK(ka && kb && sa && sb && sa - ka == sb - kb && !strncmp(ka, kb, (size_t)(sa - ka)));
            lines++;
        }
        CHECK(lines == 2);
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
}

/* SIGINT: the same stop, exit 130, and the checkpoint it names resumes. */
TEST(cli_sigint_exit_130) {
    REQUIRE_CLI();
    char out[128];
    const char *o = zgt_cli_out_file(), *e = zgt_cli_err_file();
    snprintf(out, sizeof out, "%s/interrupted", tmp_root);
    pid_t pid = zgt_cli_spawn((const char *[]){"train", "--model", "mlp", "--limit-train", "6400", "--limit-test", "100",
                                       "--epochs", "3", "--batch-size", "16", "--threads", "2", "--progress", "off",
                                       "--out", out, NULL},
                      o, e);
    CHECK(pid > 0);
    result r;
    for (int i = 0; i < 2000; i++) {
        zgt_read_text(o, r.out, sizeof r.out);
        if (strstr(r.out, "parameters")) break;
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    }
    nanosleep(&(struct timespec){0, 100000000}, NULL);
    kill(pid, SIGINT);
    int st = zgt_cli_wait(pid);
    zgt_read_text(e, r.err, sizeof r.err);
    if (st != 130) {
        zgt_fail(__FILE__, __LINE__, "exit %d (expected 130): %s", st, r.err);
        return;
    }
    CHECK(strstr(r.err, "stopped by SIGINT") != NULL);
    zg_train_config c = zg_train_config_defaults();
    CHECK_OK(zg_train_checkpoint_config(out, &c));
    CHECK(c.model == ZG_MODEL_MLP && c.batch_size == 16);
}
