/* How `zgrad` ends when its surroundings go away or its model diverges:
 * a closed output pipe (zgrad train | head -1) and SIGHUP (the terminal
 * closed) stop the run as SIGTERM does, with a checkpoint and exit 128 + N;
 * a NaN test loss stops training, and a model with NaN weights stops
 * evaluation, with one line and exit 3. Runs BUILD/zgrad on a subset of
 * Fashion-MNIST. */
#include "harness.h"
#include "cli_runner.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define DATA_DIR "/usr/share/datasets/fashion-mnist"

static char tmp_root[64];

static bool setup(void) {
    static bool done, ok;
    if (done) return ok;
    done = true;
    snprintf(tmp_root, sizeof tmp_root, "/tmp/zgrad-exit-XXXXXX");
    char p[128];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", DATA_DIR);
    ok = mkdtemp(tmp_root) && zgt_cli_setup(tmp_root) && access(p, R_OK) == 0;
    return ok;
}

__attribute__((destructor)) static void remove_tmp(void) {
    if (!strncmp(tmp_root, "/tmp/zgrad-exit-", 16)) zgt_remove_dir(tmp_root);
}

#define REQUIRE_SETUP()                                                                                  \
    do {                                                                                                 \
        if (!setup()) {                                                                                  \
            zgt_fail(__FILE__, __LINE__, "no zgrad binary (%s) or no Fashion-MNIST in %s", zgt_cli_bin(), \
                     DATA_DIR);                                                                          \
            return;                                                                                      \
        }                                                                                                \
    } while (0)

/* The exit status, or -1 when the process was killed by a signal (what
 * these stops must no longer do): 128 + N from the shell would hide that. */
static int exit_code(pid_t pid) {
    int st;
    if (waitpid(pid, &st, 0) != pid) return -2;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* pid stopped as SIGTERM would stop it: exit `code` (not killed), the
 * signal named on stderr with --resume, a checkpoint of the run in out. */
static bool stopped_with_checkpoint(pid_t pid, int code, const char *signame, const char *out) {
    char err[16384];
    int got = exit_code(pid);
    zgt_read_text(zgt_cli_err_file(), err, sizeof err);
    if (got != code) {
        zgt_fail(__FILE__, __LINE__, "exit %d (expected %d; -1: killed by a signal): %s", got, code, err);
        return false;
    }
    char said[64];
    snprintf(said, sizeof said, "stopped by %s", signame);
    CHECK(strstr(err, said) && strstr(err, "--resume"));
    zg_train_config c = zg_train_config_defaults();
    CHECK_OK(zg_train_checkpoint_config(out, &c));
    CHECK(c.model == ZG_MODEL_MLP && c.batch_size == 16);
    return true;
}

/* ---- the output pipe closes ---------------------------------------------------- */

/* zgrad train | head -1: the reader takes the first line and goes. The
 * next write fails with EPIPE; the run writes a checkpoint, says so on
 * stderr and exits 141, and --resume finishes the run. */
TEST(cli_closed_stdout_pipe_stops_with_checkpoint) {
    REQUIRE_SETUP();
    char out[128];
    snprintf(out, sizeof out, "%s/piped", tmp_root);
    const char *args[] = {"train", "--model", "mlp", "--limit-train", "6400", "--limit-test", "100", "--epochs", "3",
                          "--batch-size", "16", "--threads", "2", "--progress", "off", "--out", out, NULL};
    int fd = -1;
    pid_t pid = zgt_cli_spawn_pipe(args, &fd, zgt_cli_err_file());
    CHECK(pid > 0);
    FILE *r = fd >= 0 ? fdopen(fd, "r") : NULL;
    char line[512] = "";
    CHECK(r && fgets(line, sizeof line, r));
    CHECK(strstr(line, "zgrad train: mlp") != NULL);
    if (r) fclose(r); /* the reader is gone */
    if (!stopped_with_checkpoint(pid, 141, "SIGPIPE (the output was closed)", out)) return;
    zgt_cli_result res;
    zgt_cli_run(&res, (const char *[]){"train", "--resume", out, "--progress", "off", NULL});
    if (res.status != 0) zgt_fail(__FILE__, __LINE__, "resume: exit %d: %s", res.status, res.err);
    CHECK(strstr(res.out, "final: test accuracy") != NULL);
}

/* ---- SIGHUP ------------------------------------------------------------------------ */

TEST(cli_sighup_stops_with_checkpoint_129) {
    REQUIRE_SETUP();
    char out[128];
    snprintf(out, sizeof out, "%s/hangup", tmp_root);
    const char *o = zgt_cli_out_file(), *e = zgt_cli_err_file();
    unlink(o); /* an earlier run's header must not count as this one's */
    pid_t pid = zgt_cli_spawn((const char *[]){"train", "--model", "mlp", "--limit-train", "6400", "--limit-test", "100",
                                               "--epochs", "3", "--batch-size", "16", "--threads", "2", "--progress",
                                               "off", "--out", out, NULL},
                              o, e);
    CHECK(pid > 0);
    zgt_wait_for_text(o, "parameters");
    kill(pid, SIGHUP);
    stopped_with_checkpoint(pid, 129, "SIGHUP (the terminal closed)", out);
}

/* ---- divergence --------------------------------------------------------------------- */

/* SGD with lr 1e5: epoch 1 ends with a huge but finite test loss, epoch 2
 * with NaN. The run stops there (exit 3, one line); epoch 2 is not saved,
 * so the run directory keeps epoch 1's checkpoint and metrics. */
TEST(cli_nan_test_loss_exit_3) {
    REQUIRE_SETUP();
    char out[128];
    snprintf(out, sizeof out, "%s/diverged", tmp_root);
    zgt_cli_result r;
    zgt_cli_run(&r, (const char *[]){"train", "--model", "mlp", "--optimizer", "sgd", "--lr", "1e5", "--limit-train",
                                     "64", "--limit-test", "100", "--batch-size", "64", "--epochs", "3", "--progress",
                                     "off", "--out", out, NULL});
    if (r.status != 3) {
        zgt_fail(__FILE__, __LINE__, "exit %d (expected 3): %s", r.status, r.err);
        return;
    }
    CHECK(strstr(r.err, "zgrad: zg_train_run: the test loss is nan after epoch 2: the training diverged") != NULL);
    CHECK(strchr(r.err, '\n') == r.err + strlen(r.err) - 1); /* one line */
    CHECK(strstr(r.out, "epoch 1/3") && !strstr(r.out, "epoch 2/3") && !strstr(r.out, "final:"));
    zg_train_config c = zg_train_config_defaults();
    CHECK_OK(zg_train_checkpoint_config(out, &c));
    char p[256];
    snprintf(p, sizeof p, "%s/checkpoint", out);
    zgt_read_text(p, r.out, sizeof r.out);
    CHECK(strncmp(r.out, "ckpt-e0001-", 11) == 0);
    /* What the run directory keeps evaluates (finite weights). */
    zgt_cli_run(&r, (const char *[]){"eval", "--checkpoint", out, "--limit-test", "100", NULL});
    CHECK(r.status == 0);
}

/* An MLP of zgrad train's shape with one weight set to `bad`, saved. */
static void write_model(const char *path, float bad, bool all) {
    const int64_t sizes[4] = {784, 256, 128, 10};
    zg_module *m = zg_model_mlp(sizes, 4);
    CHECK_PTR(m);
    if (!m) return;
    zg_tensor *w = zg_module_param_by_name(m, "3.weight");
    float *d = zg_tensor_data(w);
    for (int64_t i = 0; i < (all ? zg_tensor_numel(w) : 1); i++) d[i] = bad;
    if (all) {
        zg_tensor *w1 = zg_module_param_by_name(m, "1.weight");
        for (int64_t i = 0; i < zg_tensor_numel(w1); i++) zg_tensor_data(w1)[i] = fabsf(bad);
    }
    CHECK_OK(zg_module_save(m, path));
    zg_module_free(m);
}

TEST(cli_eval_nan_weights_exit_3) {
    REQUIRE_SETUP();
    char path[128];
    snprintf(path, sizeof path, "%s/nan.safetensors", tmp_root);
    write_model(path, NAN, false);
    zgt_cli_result r;
    zgt_cli_run(&r, (const char *[]){"eval", "--checkpoint", path, "--limit-test", "100", NULL});
    CHECK(r.status == 3);
    CHECK(strstr(r.err, "has 1 NaN or infinite weights (the first in '3.weight'): the training that wrote it diverged"));
    CHECK(strchr(r.err, '\n') == r.err + strlen(r.err) - 1);
    CHECK(r.out[0] == '\0');
    /* Finite weights whose outputs overflow: the loss says it. */
    write_model(path, 1e30f, true);
    zgt_cli_run(&r, (const char *[]){"eval", "--checkpoint", path, "--limit-test", "100", NULL});
    CHECK(r.status == 3);
    CHECK(strstr(r.err, "the test loss of the model in") && strstr(r.err, "(its outputs overflow)"));
}

/* The codes are documented where users look. */
TEST(cli_exit_codes_in_help) {
    REQUIRE_SETUP();
    zgt_cli_result r;
    zgt_cli_run(&r, (const char *[]){"--help", NULL});
    CHECK(strstr(r.out, "3 the model diverged") && strstr(r.out, "129 / 130 / 141 / 143"));
    zgt_cli_run(&r, (const char *[]){"train", "--help", NULL});
    CHECK(strstr(r.out, "SIGHUP") && strstr(r.out, "SIGPIPE") && strstr(r.out, "exit 3"));
}
