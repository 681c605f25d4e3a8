/* zgrad train --ddp end to end: runs the zgrad binary of this build under
 * `mpirun --allow-run-as-root --oversubscribe` (OMP_NUM_THREADS=1 per
 * rank) and checks that N ranks with batch B train as one process with
 * batch N B (MLP and GPT), that the full MLP epoch reaches the
 * single-process accuracy, that a resume continues bit for bit (and one on
 * another world size is refused), that a rank that fails or is killed ends
 * the others within a bound with the last checkpoint intact, the
 * sanitizer per rank, and --ddp without mpirun (a world of one) or
 * without MPI (an error). */
#include "harness.h"
#include "cli_runner.h"

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DATA_DIR "/usr/share/datasets/fashion-mnist"
/* A killed or failed rank ends the world within this many seconds
 * (docs/distributed.md). */
#define FAULT_BOUND_S 10.0

static char tmp_root[64];

static bool setup(void) {
    static bool done, ok;
    if (done) return ok;
    done = true;
    snprintf(tmp_root, sizeof tmp_root, "/tmp/zgrad-ddp-XXXXXX");
    if (!mkdtemp(tmp_root)) return false;
    char io[128];
    snprintf(io, sizeof io, "%s/io", tmp_root);
    ok = mkdir(io, 0755) == 0 && zgt_cli_setup(io);
    return ok;
}

__attribute__((destructor)) static void remove_tmp(void) {
    if (!tmp_root[0] || strncmp(tmp_root, "/tmp/zgrad-ddp-", 15) != 0) return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0) fprintf(stderr, "test_cli_ddp: could not remove %s\n", tmp_root);
}

static void tmp_path(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", tmp_root, name); }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* `zgrad ARGS` on np ranks (np 0: a plain process, no mpirun), with a
 * 120 s timeout; its exit status, its stdout and stderr in out, and its
 * wall time in *secs. */
static int zgrad(int np, const char *args, char *out, size_t n, double *secs) {
    char cmd[8192], env[1400];
    zgt_mpi_env(env, sizeof env);
    if (np > 0)
        snprintf(cmd, sizeof cmd,
                 "%s OMP_NUM_THREADS=1 timeout 120 mpirun --allow-run-as-root --oversubscribe --mca btl self,vader "
                 "-np %d '%s' %s 2>&1",
                 env, np, zgt_cli_bin(), args);
    else
        snprintf(cmd, sizeof cmd, "%s OMP_NUM_THREADS=1 timeout 120 '%s' %s 2>&1", env, zgt_cli_bin(), args);
    const double t0 = now_s();
    FILE *p = popen(cmd, "r");
    size_t k = 0;
    out[0] = '\0';
    if (p) {
        size_t got;
        while (k + 1 < n && (got = fread(out + k, 1, n - 1 - k, p)) > 0) k += got;
        char sink[4096];
        while (fread(sink, 1, sizeof sink, p) > 0) {}
        out[k] = '\0';
    }
    const int st = p ? pclose(p) : -1;
    if (secs) *secs = now_s() - t0;
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs and checks the exit status, showing the output when it differs. */
static void zgrad_ok(int np, const char *args, char *out, size_t n) {
    const int st = zgrad(np, args, out, n, NULL);
    CHECK(st == 0);
    if (st != 0) fprintf(stderr, "    zgrad %s on %d ranks: status %d\n%s\n", args, np, st, out);
}

/* The largest |a - b| over the tensors of two model.safetensors, relative
 * to the largest |b|; *same: bit for bit. */
static double weights_diff(const char *run_a, const char *run_b, bool *same) {
    char pa[256], pb[256];
    snprintf(pa, sizeof pa, "%s/model.safetensors", run_a);
    snprintf(pb, sizeof pb, "%s/model.safetensors", run_b);
    zg_safetensors *a = zg_safetensors_read(pa), *b = zg_safetensors_read(pb);
    CHECK(a && b);
    double diff = a && b ? 0 : INFINITY, scale = 0;
    *same = a && b && zg_safetensors_count(a) == zg_safetensors_count(b);
    for (int i = 0; *same && i < zg_safetensors_count(a); i++) {
        const char *name = zg_safetensors_name(a, i);
        zg_tensor *x = zg_safetensors_get(a, name), *y = zg_safetensors_get(b, name);
        if (!x || !y || zg_tensor_numel(x) != zg_tensor_numel(y)) {
            *same = false;
            diff = INFINITY;
        } else {
            const float *xd = zg_tensor_data(x), *yd = zg_tensor_data(y);
            for (int64_t j = 0; j < zg_tensor_numel(x); j++) {
                *same &= xd[j] == yd[j];
                diff = fmax(diff, fabs((double)xd[j] - yd[j]));
                scale = fmax(scale, fabs((double)yd[j]));
            }
        }
    }
    zg_safetensors_free(a);
    zg_safetensors_free(b);
    return scale > 0 ? diff / scale : diff;
}

static bool skip_without_mpi(void) {
    if (zg_dist_available()) return false;
    fprintf(stderr, "    (skipped: this build has no MPI)\n");
    return true;
}

/* The MLP on 640 samples, SGD with momentum: 20 steps of a global batch
 * of 32. */
#define MLP_ARGS "train --model mlp --epochs 1 --limit-train 640 --limit-test 500 --optimizer sgd --lr 0.05 " \
                 "--momentum 0.9 --progress off --data " DATA_DIR

/* 2 ranks x 16 against 1 process x 32: the same samples in each step
 * (the global batch is cut into the ranks' shares), the gradient averaged
 * over the ranks as the mean over the batch. Not bit for bit: each rank's
 * weight-gradient GEMM sums its 16 rows, and the two halves are added
 * after scaling by 1/2, where one process sums 32 rows in one pass; the
 * per-step differences are float rounding (~1e-7 relative), and 20 steps
 * of momentum SGD grow them to ~1e-6 (docs/distributed.md measures 6.6e-7
 * for the library loop); the bound is 1e-5 of the largest weight. */
TEST(ddp_two_ranks_train_as_one_process_with_double_batch) {
    if (skip_without_mpi() || !setup()) return;
    char one[256], two[256], args[1024], out[16384];
    tmp_path(one, sizeof one, "eq1");
    tmp_path(two, sizeof two, "eq2");
    snprintf(args, sizeof args, MLP_ARGS " --batch-size 32 --out %s", one);
    zgrad_ok(0, args, out, sizeof out);
    snprintf(args, sizeof args, MLP_ARGS " --ddp --batch-size 16 --out %s", two);
    zgrad_ok(2, args, out, sizeof out);
    CHECK(strstr(out, "ddp on 2 ranks, batch 16 per rank (global batch 32)") != NULL);
    /* Only rank 0 speaks: one summary line. */
    const char *first = strstr(out, "final:");
    CHECK(first && !strstr(first + 1, "final:"));
    /* Each rank trained on its share: the epoch counts the 640 samples
     * once, and its loss is the global batches' (the ranks' all-reduced). */
    char path[300], m1[2048], m2[2048];
    snprintf(path, sizeof path, "%s/metrics.jsonl", two);
    zgt_read_text(path, m2, sizeof m2);
    snprintf(path, sizeof path, "%s/metrics.jsonl", one);
    zgt_read_text(path, m1, sizeof m1);
    CHECK(strstr(m2, "\"steps\": 20,") && strstr(m2, "\"samples\": 640,"));
    /* The all-reduce counters (rank 0's): the MLP's 235146 floats fit the
     * 1 MiB first bucket, so one all-reduce per step; its comm window is
     * overlap + exposed wait. One process has none. */
    const char *ar = strstr(m2, "\"ddp_allreduces\": "), *cs = strstr(m2, "\"ddp_comm_seconds\": ");
    const char *os = strstr(m2, "\"ddp_overlap_seconds\": "), *ws = strstr(m2, "\"ddp_wait_seconds\": ");
    CHECK(ar && cs && os && ws && !strstr(m1, "ddp_"));
    if (ar && cs && os && ws) {
        const double comm = atof(cs + 20), overlap = atof(os + 23), wait = atof(ws + 20);
        CHECK(atoi(ar + 18) == 20);
        CHECK(comm > 0 && overlap >= 0 && wait >= 0);
        CHECK_NEAR(comm, overlap + wait, 1e-9 + 1e-9 * comm);
    }
    const char *l1 = strstr(m1, "\"train_loss\": "), *l2 = strstr(m2, "\"train_loss\": ");
    CHECK(l1 && l2);
    if (l1 && l2) CHECK_NEAR(atof(l2 + 14), atof(l1 + 14), 1e-5);
    bool same;
    const double rel = weights_diff(two, one, &same);
    fprintf(stderr, "    # MLP, 20 steps: 2 ranks x 16 vs 1 x 32: max relative weight difference %.3g\n", rel);
    CHECK(rel <= 1e-5);
}

/* The GPT: every rank draws the global batch's windows (from the seed and
 * the step, as one process with batch 2B does) and takes its rows. */
TEST(ddp_gpt_two_ranks_train_as_one_process_with_double_batch) {
    if (skip_without_mpi() || !setup()) return;
    char text[256], one[256], two[256], args[1024], out[16384];
    tmp_path(text, sizeof text, "text.txt");
    FILE *f = fopen(text, "w");
    CHECK(f != NULL);
    if (!f) return;
    for (int i = 0; i < 400; i++) fprintf(f, "ROMEO:\nWhat light through yonder window breaks %d?\n\n", i % 7);
    fclose(f);
    tmp_path(one, sizeof one, "gpt1");
    tmp_path(two, sizeof two, "gpt2");
    const char *gpt = "train --model gpt --n-layer 1 --n-head 2 --n-embd 32 --block-size 16 --iters 10 "
                      "--eval-interval 10 --eval-iters 2 --progress off";
    snprintf(args, sizeof args, "%s --text %s --batch-size 8 --out %s", gpt, text, one);
    zgrad_ok(0, args, out, sizeof out);
    snprintf(args, sizeof args, "%s --text %s --ddp --batch-size 4 --out %s", gpt, text, two);
    zgrad_ok(2, args, out, sizeof out);
    bool same;
    const double rel = weights_diff(two, one, &same);
    fprintf(stderr, "    # GPT, 10 AdamW steps: 2 ranks x 4 vs 1 x 8: max relative weight difference %.3g\n", rel);
    /* AdamW divides by sqrt(v): a weight whose gradient is tiny moves by
     * ~lr whatever its rounding, so the bound is looser than SGD's. */
    CHECK(rel <= 1e-4);
}

/* The "done when": one epoch of the MLP on the whole of
 * Fashion-MNIST on 2 ranks x 64 reaches the accuracy of one process x 128
 * (same samples per step; they differ by float rounding only, so well
 * within half a percent). */
TEST(ddp_mlp_epoch_reaches_the_single_process_accuracy) {
    if (skip_without_mpi() || !setup()) return;
    char one[256], two[256], args[1024], out1[16384], out2[16384];
    tmp_path(one, sizeof one, "acc1");
    tmp_path(two, sizeof two, "acc2");
    snprintf(args, sizeof args, "train --model mlp --epochs 1 --batch-size 128 --progress off --data %s --out %s",
             DATA_DIR, one);
    zgrad_ok(0, args, out1, sizeof out1);
    snprintf(args, sizeof args,
             "train --ddp --model mlp --epochs 1 --batch-size 64 --progress off --data %s --out %s", DATA_DIR, two);
    zgrad_ok(2, args, out2, sizeof out2);
    const char *a = strstr(out1, "final: test accuracy "), *b = strstr(out2, "final: test accuracy ");
    CHECK(a && b);
    if (!a || !b) return;
    const double acc1 = atof(a + 21), acc2 = atof(b + 21);
    fprintf(stderr, "    # MLP, 1 epoch: test accuracy %.2f%% (1 x 128) vs %.2f%% (2 x 64)\n", acc1, acc2);
    CHECK(acc2 > 80);
    CHECK_NEAR(acc2, acc1, 0.5);
}

/* A rank that fails on bad data (rank 1 on the batch --inject-bad-batch
 * names, with --max-bad-steps 1; the other ranks skip it with it) ends the world with a non-zero status
 * and a one-line message within the bound; the step-5 checkpoint rank 0
 * wrote before is intact, and the run resumed from it on 2 ranks ends
 * with the uninterrupted run's weights bit for bit. On 1 rank the resume
 * is refused, naming the world size. */
TEST(ddp_failure_ends_all_ranks_and_resume_continues_bit_for_bit) {
    if (skip_without_mpi() || !setup()) return;
    char full[256], cut[256], args[1024], out[16384];
    tmp_path(full, sizeof full, "full");
    tmp_path(cut, sizeof cut, "cut");
    snprintf(args, sizeof args, MLP_ARGS " --ddp --batch-size 16 --checkpoint-every-steps 5 --out %s", full);
    zgrad_ok(2, args, out, sizeof out);
    snprintf(args, sizeof args,
             MLP_ARGS " --ddp --batch-size 16 --checkpoint-every-steps 5 --max-bad-steps 1 --inject-bad-batch 8 --inject-rank 1 "
                      "--out %s",
             cut);
    double secs;
    int st = zgrad(2, args, out, sizeof out, &secs);
    CHECK(st != 0 && st != 124);
    CHECK(strstr(out, "1 batches in a row were skipped") != NULL);
    CHECK(secs < FAULT_BOUND_S);
    char ckpt[300];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt-e0000-s0000000005", cut);
    struct stat sb;
    CHECK(stat(ckpt, &sb) == 0);
    /* Another world size: refused in one line. */
    snprintf(args, sizeof args, MLP_ARGS " --ddp --batch-size 16 --checkpoint-every-steps 5 --resume %s", cut);
    st = zgrad(0, args, out, sizeof out, NULL);
    CHECK(st != 0);
    CHECK(strstr(out, "it was trained on 2 ranks (--ddp), this run has 1") != NULL);
    zgrad_ok(2, args, out, sizeof out);
    bool same;
    weights_diff(cut, full, &same);
    CHECK(same);
}

/* A NaN loss in rank 1's share only: every rank skips the batch (an
 * all-reduce of the flags), so the run goes on in step and ends with the
 * weights of one process that skipped the same global batch. */
TEST(ddp_rank_local_nan_loss_is_skipped_by_all_ranks) {
    if (skip_without_mpi() || !setup()) return;
    char one[256], two[256], args[1024], out[16384];
    tmp_path(one, sizeof one, "nan1");
    tmp_path(two, sizeof two, "nan2");
    snprintf(args, sizeof args, MLP_ARGS " --batch-size 32 --inject-nan-loss 3 --out %s", one);
    zgrad_ok(0, args, out, sizeof out);
    snprintf(args, sizeof args, MLP_ARGS " --ddp --batch-size 16 --inject-nan-loss 3 --inject-rank 1 --out %s", two);
    zgrad_ok(2, args, out, sizeof out);
    CHECK(strstr(out, "batch 3: the loss is nan; batch skipped") != NULL);
    bool same;
    const double rel = weights_diff(two, one, &same);
    CHECK(rel <= 1e-5);
}

/* The pid of the rank `rank` among mpirun's children (0: none yet). */
static pid_t rank_pid(pid_t mpirun, int rank) {
    char cmd[160], line[64];
    snprintf(cmd, sizeof cmd, "ps -o pid= --ppid %d", (int)mpirun);
    FILE *p = popen(cmd, "r");
    pid_t found = 0;
    while (p && fgets(line, sizeof line, p)) {
        char env_path[64], env[65536];
        const int pid = atoi(line);
        snprintf(env_path, sizeof env_path, "/proc/%d/environ", pid);
        FILE *e = fopen(env_path, "rb");
        if (!e) continue;
        const size_t k = fread(env, 1, sizeof env - 1, e);
        fclose(e);
        env[k] = '\0';
        char want[64];
        const int wl = snprintf(want, sizeof want, "OMPI_COMM_WORLD_RANK=%d", rank);
        for (size_t i = 0; i < k; i += strlen(env + i) + 1)
            if (!strncmp(env + i, want, (size_t)wl) && env[i + (size_t)wl] == '\0') found = pid;
    }
    if (p) pclose(p);
    return found;
}

#define FAULT_RUN "train --ddp --model mlp --epochs 3 --batch-size 16 --checkpoint-every-steps 20 --progress off"

/* Starts a 3-epoch MLP run on 2 ranks into `run` in the background (its
 * output in io/NAME.txt) and waits for its first checkpoint: the pid of
 * the shell running it (timeout, then mpirun) in *sh and rank 1's pid
 * returned (0: not found; the run is then stopped). */
static pid_t start_run(const char *name, const char *run, const char *extra, pid_t *sh) {
    char cmd[2048], env[1400];
    zgt_mpi_env(env, sizeof env);
    snprintf(cmd, sizeof cmd,
             "%s OMP_NUM_THREADS=1 exec timeout 120 mpirun --allow-run-as-root --oversubscribe --mca btl self,vader "
             "-np 2 '%s' " FAULT_RUN " --data %s --out %s %s > %s/io/%s.txt 2>&1",
             env, zgt_cli_bin(), DATA_DIR, run, extra, tmp_root, name);
    *sh = fork();
    if (*sh == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    CHECK(*sh > 0);
    if (*sh <= 0) return 0;
    /* timeout is sh (exec); mpirun is its child. */
    char ptr[300];
    snprintf(ptr, sizeof ptr, "%s/checkpoint", run);
    pid_t victim = 0;
    for (int i = 0; i < 400 && !victim; i++) {
        struct stat sb;
        if (stat(ptr, &sb) == 0) {
            char line[32], ps[96];
            snprintf(ps, sizeof ps, "ps -o pid= --ppid %d", (int)*sh);
            FILE *p = popen(ps, "r");
            pid_t mpirun = p && fgets(line, sizeof line, p) ? atoi(line) : 0;
            if (p) pclose(p);
            if (mpirun) victim = rank_pid(mpirun, 1);
        }
        if (!victim) usleep(50000);
    }
    CHECK(victim > 0);
    if (victim <= 0) {
        kill(*sh, SIGTERM);
        waitpid(*sh, NULL, 0);
    }
    return victim;
}

/* Sends sig to rank 1 of a run started by start_run (name, extra) and
 * waits for mpirun: its status (-1: the run did not start) and the
 * seconds from the signal to its exit; the run's output in out. The
 * run's checkpoint must then be whole: zgrad eval reads it. */
static int signal_rank1(const char *name, const char *extra, int sig, double *secs, char *out, size_t n) {
    char run[256], log[300], args[512];
    tmp_path(run, sizeof run, name);
    pid_t sh;
    const pid_t victim = start_run(name, run, extra, &sh);
    if (victim <= 0) return -1;
    const double t0 = now_s();
    kill(victim, sig);
    const int st = zgt_cli_wait(sh);
    *secs = now_s() - t0;
    fprintf(stderr, "    # %s to rank 1 %s: mpirun exited with %d after %.2f s\n", sig == SIGKILL ? "SIGKILL" : "SIGSTOP",
            extra, st, *secs);
    snprintf(args, sizeof args, "eval --checkpoint %s --data %s --limit-test 200", run, DATA_DIR);
    zgrad_ok(0, args, out, n);
    snprintf(log, sizeof log, "%s/io/%s.txt", tmp_root, name);
    zgt_read_text(log, out, n);
    return st;
}

/* kill -9 of rank 1 in the middle of training: mpirun ends rank 0 and
 * exits non-zero within the bound; the checkpoint is whole. */
TEST(ddp_killed_rank_ends_the_world_within_the_bound) {
    if (skip_without_mpi() || !setup()) return;
    char out[16384];
    double secs = 0;
    const int st = signal_rank1("killed", "", SIGKILL, &secs, out, sizeof out);
    CHECK(st > 0 && st != 124);
    CHECK(secs < FAULT_BOUND_S);
    CHECK(strstr(out, "signal 9") != NULL || strstr(out, "Killed") != NULL);
}

/* A rank that stops answering without dying (SIGSTOP): rank 0's next
 * wait passes --ddp-timeout (2 s) and it ends every rank, naming the
 * call; the checkpoint is whole. */
TEST(ddp_stopped_rank_ends_the_world_after_the_timeout) {
    if (skip_without_mpi() || !setup()) return;
    char out[16384];
    double secs = 0;
    const int st = signal_rank1("stopped", "--ddp-timeout 2", SIGSTOP, &secs, out, sizeof out);
    CHECK(st > 0 && st != 124);
    /* Rank 0 may have been waiting a little already when rank 1 stopped. */
    CHECK(secs >= 1.5 && secs < 2 + FAULT_BOUND_S);
    CHECK(strstr(out, "zgrad: rank 0: ") && strstr(out, "no answer from the other ranks for 2 s"));
}

/* SIGTERM to rank 1 alone (mpirun forwards one to every rank, each at its
 * own moment; this is the extreme case): the ranks agree on the step to
 * stop at, rank 0 writes the checkpoint and says so once, and the resumed
 * run ends with the uninterrupted run's weights bit for bit. */
TEST(ddp_sigterm_stops_all_ranks_at_one_step_and_resumes) {
    if (skip_without_mpi() || !setup()) return;
    char run[256], full[256], log[300], args[1024], out[16384];
    tmp_path(run, sizeof run, "term");
    tmp_path(full, sizeof full, "term_full");
    const char *small = "--limit-train 9600 --limit-test 500";
    pid_t sh;
    const pid_t rank1 = start_run("term", run, small, &sh);
    if (rank1 <= 0) return;
    kill(rank1, SIGTERM); /* to rank 1 alone: rank 0 stops with it */
    const int st = zgt_cli_wait(sh);
    snprintf(log, sizeof log, "%s/io/term.txt", tmp_root);
    zgt_read_text(log, out, sizeof out);
    CHECK(st != 0);
    const char *stop = strstr(out, "stopped by SIGTERM after ");
    CHECK(stop && !strstr(stop + 1, "stopped by SIGTERM"));
    snprintf(args, sizeof args, FAULT_RUN " %s --data %s --resume %s", small, DATA_DIR, run);
    zgrad_ok(2, args, out, sizeof out);
    snprintf(args, sizeof args, FAULT_RUN " %s --data %s --out %s", small, DATA_DIR, full);
    zgrad_ok(2, args, out, sizeof out);
    bool same;
    weights_diff(run, full, &same);
    CHECK(same);
}

/* ZG_SANITIZE=error on every rank: the DDP loop (hooks writing .grad,
 * the buckets' copies) raises no false alarm. */
TEST(ddp_sanitizer_per_rank_is_quiet) {
    if (skip_without_mpi() || !setup()) return;
    char run[256], args[1024], out[16384];
    tmp_path(run, sizeof run, "san");
    snprintf(args, sizeof args, MLP_ARGS " --ddp --batch-size 16 --out %s", run);
    setenv("ZG_SANITIZE", "error", 1);
    zgrad_ok(2, args, out, sizeof out);
    unsetenv("ZG_SANITIZE");
    CHECK(strstr(out, "sanitizer") == NULL);
}

/* Without mpirun --ddp is a world of one: the plain run's weights, bit
 * for bit. A build without MPI refuses --ddp in one line. */
TEST(ddp_without_mpirun_or_without_mpi) {
    if (!setup()) return;
    char one[256], ddp1[256], args[1024], out[16384];
    tmp_path(one, sizeof one, "plain");
    tmp_path(ddp1, sizeof ddp1, "world1");
    snprintf(args, sizeof args, MLP_ARGS " --batch-size 32 --out %s", one);
    zgrad_ok(0, args, out, sizeof out);
    CHECK(zgrad(0, "train --ddp --ddp-timeout -1", out, sizeof out, NULL) == 2);
    CHECK(strstr(out, "--ddp-timeout: expected a number >= 0, got '-1'") != NULL);
    /* --inject-rank goes with the injections that can differ per rank. */
    CHECK(zgrad(0, "train --ddp --inject-rank 1 --inject-bad-backward 3", out, sizeof out, NULL) == 2);
    CHECK(strstr(out, "inject_rank must be in [0, 2^20] and goes with inject_bad_batch") != NULL);
    snprintf(args, sizeof args, MLP_ARGS " --ddp --batch-size 32 --out %s", ddp1);
    if (!zg_dist_available()) {
        CHECK(zgrad(0, args, out, sizeof out, NULL) == 2);
        CHECK(strstr(out, "--ddp needs zgrad built with MPI") != NULL);
        return;
    }
    zgrad_ok(0, args, out, sizeof out);
    bool same;
    weights_diff(ddp1, one, &same);
    CHECK(same);
}

/* zg_dist_set_timeout: a bound in [0, 1e9] seconds (no MPI init needed);
 * without MPI, unavailable. */
TEST(dist_set_timeout_checks_its_argument) {
    if (!zg_dist_available()) {
        CHECK_ERR(zg_dist_set_timeout(1), "zg_dist_set_timeout: zgrad was built without MPI");
        return;
    }
    CHECK_ERR(zg_dist_set_timeout(-1), "seconds must be in [0, 1e9] (got -1)");
    CHECK_ERR(zg_dist_set_timeout(NAN), "seconds must be in [0, 1e9]");
    CHECK_ERR(zg_dist_set_timeout(2e9), "seconds must be in [0, 1e9]");
    CHECK_OK(zg_dist_set_timeout(5));
    CHECK_OK(zg_dist_set_timeout(0));
}
