/* The run directory is shared with its user: a resume removes only what
 * the run wrote (a copy such as ckpt-best/, a user's files named like
 * checkpoints or temporary files survive), no removal follows a symlink,
 * one process at a time holds the directory (a second one is refused
 * naming the holder's pid; the lock goes with the process, on every exit
 * path), a new run refuses a non-empty directory that is not a run unless
 * --force, and the checkpoint pointer must be a small regular file (a
 * FIFO, a symlink, a huge file are refused at once). CLI cases run
 * BUILD/zgrad. */
#include "harness.h"
#include "cli_runner.h"

#include "train/train_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DATA_DIR "/usr/share/datasets/fashion-mnist"

static char *root;

__attribute__((destructor)) static void remove_root(void) {
    if (root) zgt_remove_dir(root);
}

static bool ready(void) {
    struct stat st;
    if (!root && !(root = zgt_temp_dir())) return false;
    return zgt_cli_setup(root) && (stat(DATA_DIR "/train-images-idx3-ubyte.gz", &st) == 0 ||
                                   stat(DATA_DIR "/train-images-idx3-ubyte", &st) == 0);
}

#define REQUIRE()                                                                                          \
    do {                                                                                                   \
        if (!ready()) {                                                                                    \
            zgt_fail(__FILE__, __LINE__, "no zgrad binary (%s) or no Fashion-MNIST in %s", zgt_cli_bin(), \
                     DATA_DIR);                                                                            \
            return;                                                                                        \
        }                                                                                                  \
    } while (0)

static void path_of(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", root, name); }

static bool sh(const char *fmt, const char *a, const char *b) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    return system(cmd) == 0;
}

static bool write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    bool ok = f && fputs(text, f) >= 0;
    if (f) ok = fclose(f) == 0 && ok;
    return ok;
}

/* The file holds exactly `text`. */
static bool holds(const char *path, const char *text) {
    char buf[256];
    zgt_read_text(path, buf, sizeof buf);
    return !strcmp(buf, text);
}

static int lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* zgrad train: the MLP on 256 samples (4 steps an epoch) into dir, or
 * --resume dir with `epochs` in total. */
static void train(zgt_cli_result *r, const char *dir, const char *epochs, bool resume, const char *extra) {
    const char *args[20] = {"train", "--model", "mlp", "--limit-train", "256", "--limit-test", "128", "--threads", "1",
                            "--progress", "off", "--epochs", epochs, resume ? "--resume" : "--out", dir, extra, NULL};
    zgt_cli_run(r, args);
}

/* A run of one epoch: its checkpoint is ckpt-e0001-s0000000004. */
static bool one_epoch(const char *dir) {
    zgt_cli_result r;
    train(&r, dir, "1", false, NULL);
    if (r.status != 0) zgt_fail(__FILE__, __LINE__, "train --out %s: exit %d: %s", dir, r.status, r.err);
    return r.status == 0;
}

static bool is_symlink(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
}

/* ---- 1. only what the run wrote is removed ------------------------------------ */

TEST(rundir_resume_removes_only_its_own) {
    REQUIRE();
    char d[256], p[512];
    path_of(d, sizeof d, "own");
    if (!one_epoch(d)) return;
    /* The user's: a copy of the checkpoint, a copy under a name the writer
     * could have written, files with ".tmp." in their names. */
    CHECK(sh("cp -r '%s/ckpt-e0001-s0000000004' '%s/ckpt-best'", d, d));
    CHECK(sh("cp -r '%s/ckpt-e0001-s0000000004' '%s/ckpt-e0000-s0000000002'", d, d));
    const char *user_files[] = {"notes.tmp.txt", "model.safetensors.tmp.old", "metrics.jsonl.tmp.0123"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", d, user_files[i]);
        CHECK(write_text(p, "mine\n"));
    }
    /* What a killed run of zgrad leaves: a temporary file of its own. */
    snprintf(p, sizeof p, "%s/metrics.jsonl.tmp.4242", d);
    CHECK(write_text(p, "{}\n"));
    zgt_cli_result r;
    train(&r, d, "2", true, NULL);
    if (r.status != 0) zgt_fail(__FILE__, __LINE__, "resume: exit %d: %s", r.status, r.err);
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", d, user_files[i]);
        if (!holds(p, "mine\n")) zgt_fail(__FILE__, __LINE__, "%s was removed or changed", p);
    }
    const char *copies[] = {"ckpt-best", "ckpt-e0000-s0000000002"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s/trainer.safetensors", d, copies[i]);
        if (access(p, R_OK) != 0) zgt_fail(__FILE__, __LINE__, "%s was removed", p);
    }
    snprintf(p, sizeof p, "%s/metrics.jsonl.tmp.4242", d);
    CHECK(access(p, F_OK) != 0);
    /* The run's own previous checkpoint went, its new one is there. */
    snprintf(p, sizeof p, "%s/ckpt-e0001-s0000000004", d);
    CHECK(access(p, F_OK) != 0);
    snprintf(p, sizeof p, "%s/checkpoint", d);
    CHECK(holds(p, "ckpt-e0002-s0000000008\n"));
}

/* A directory of the very name the next checkpoint takes, made by the
 * user: the save stops rather than remove it, and the run's checkpoint
 * stays the previous one. */
TEST(rundir_save_refuses_a_foreign_directory_of_its_name) {
    REQUIRE();
    char d[256], p[512];
    path_of(d, sizeof d, "foreign");
    if (!one_epoch(d)) return;
    snprintf(p, sizeof p, "%s/ckpt-e0002-s0000000008", d);
    CHECK(mkdir(p, 0755) == 0);
    snprintf(p, sizeof p, "%s/ckpt-e0002-s0000000008/keep.txt", d);
    CHECK(write_text(p, "mine\n"));
    zgt_cli_result r;
    train(&r, d, "2", true, NULL);
    if (r.status != 1 || lines(r.err) != 1 || !strstr(r.err, "not written by this run"))
        zgt_fail(__FILE__, __LINE__, "resume: exit %d: %s", r.status, r.err);
    CHECK(holds(p, "mine\n"));
    snprintf(p, sizeof p, "%s/checkpoint", d);
    CHECK(holds(p, "ckpt-e0001-s0000000004\n"));
}

/* A kill while the next checkpoint's marker was being written leaves its
 * directory holding only the marker's temporary file, half written: the
 * resume proves the directory its own (named in the run's list, nothing
 * else in it), removes it and saves that checkpoint again. */
TEST(rundir_resume_after_a_kill_during_the_marker) {
    REQUIRE();
    char d[256], p[512];
    path_of(d, sizeof d, "marker-kill");
    if (!one_epoch(d)) return;
    snprintf(p, sizeof p, "%s/.zgrad-ckpts", d);
    CHECK(write_text(p, "ckpt-e0001-s0000000004\nckpt-e0002-s0000000008\n"));
    snprintf(p, sizeof p, "%s/ckpt-e0002-s0000000008", d);
    CHECK(mkdir(p, 0755) == 0);
    snprintf(p, sizeof p, "%s/ckpt-e0002-s0000000008/.zgrad-checkpoint.tmp", d);
    CHECK(write_text(p, "zgrad check"));
    zgt_cli_result r;
    train(&r, d, "2", true, NULL);
    if (r.status != 0) zgt_fail(__FILE__, __LINE__, "resume: exit %d: %s", r.status, r.err);
    snprintf(p, sizeof p, "%s/ckpt-e0002-s0000000008/.zgrad-checkpoint", d);
    CHECK(holds(p, "zgrad checkpoint ckpt-e0002-s0000000008\n"));
    snprintf(p, sizeof p, "%s/ckpt-e0002-s0000000008/.zgrad-checkpoint.tmp", d);
    CHECK(access(p, F_OK) != 0);
    snprintf(p, sizeof p, "%s/checkpoint", d);
    CHECK(holds(p, "ckpt-e0002-s0000000008\n"));
}

/* Removing a checkpoint directory unlinks its files one by one: a kill
 * part-way must leave a directory the next resume can still prove its own.
 * The removal is watched (inotify reports each unlink in order); the
 * marker must go last. Then every state a kill during that removal can
 * leave (the first k files gone, k = 0 .. all) is made by hand and the
 * cleanup of a resume must remove it. With the marker gone first, the
 * files left would be unprovable and stay in the run forever. */
TEST(rundir_a_kill_during_removal_leaves_it_removable) {
    REQUIRE();
    char d[256], p[512], q[512];
    path_of(d, sizeof d, "removal-kill");
    if (!one_epoch(d)) return;
    const char *cur = "ckpt-e0001-s0000000004", *old = "ckpt-e0000-s0000000002";
    snprintf(p, sizeof p, "%s/%s", d, old);
    char list[128];
    snprintf(list, sizeof list, "%s\n%s\n", old, cur);
    snprintf(q, sizeof q, "%s/" ZG_CKPT_RECORD, d);
    /* A directory the run wrote: a copy of the current one, its marker
     * naming it, listed in the run's record. */
    char marker[64];
    snprintf(marker, sizeof marker, "zgrad checkpoint %s\n", old);
    char mpath[600];
    snprintf(mpath, sizeof mpath, "%s/" ZG_CKPT_MARKER, p);
    CHECK(sh("cp -r '%s/ckpt-e0001-s0000000004' '%s'", d, p));
    CHECK(write_text(mpath, marker) && write_text(q, list));

    int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    CHECK(in >= 0 && inotify_add_watch(in, p, IN_DELETE) >= 0);
    if (in < 0) return;
    zg__ckpt_cleanup(d, cur);
    CHECK(access(p, F_OK) != 0);
    char order[8][64];
    int n = 0;
    _Alignas(struct inotify_event) char buf[4096];
    ssize_t len = read(in, buf, sizeof buf);
    for (ssize_t at = 0; len > 0 && at < len;) {
        const struct inotify_event *ev = (const struct inotify_event *)(buf + at);
        if ((ev->mask & IN_DELETE) && ev->len && n < 8) snprintf(order[n++], sizeof order[0], "%s", ev->name);
        at += (ssize_t)sizeof *ev + ev->len;
    }
    close(in);
    CHECK(n == 4);
    if (n != 4) return;
    if (strcmp(order[n - 1], ZG_CKPT_MARKER) != 0)
        zgt_fail(__FILE__, __LINE__, "the marker was removed %s, before '%s'",
                 !strcmp(order[0], ZG_CKPT_MARKER) ? "first" : "early", order[n - 1]);

    for (int k = 0; k <= n; k++) {
        CHECK(sh("cp -r '%s/ckpt-e0001-s0000000004' '%s'", d, p));
        CHECK(write_text(mpath, marker) && write_text(q, list));
        for (int i = 0; i < k; i++) {
            char f[1100];
            snprintf(f, sizeof f, "%s/%s", p, order[i]);
            CHECK(unlink(f) == 0);
        }
        zg__ckpt_cleanup(d, cur);
        if (access(p, F_OK) == 0) {
            zgt_fail(__FILE__, __LINE__, "a kill after %d of %d removals: the directory stays", k, n);
            CHECK(sh("rm -rf '%s/%s'", d, old));
        }
    }
    snprintf(p, sizeof p, "%s/%s/trainer.safetensors", d, cur);
    CHECK(access(p, R_OK) == 0);
}

/* ---- 2. no removal follows a symlink ------------------------------------------- */

TEST(rundir_removal_never_follows_symlinks) {
    REQUIRE();
    char d[256], elsewhere[256], moved[256], p[512], q[512];
    path_of(d, sizeof d, "links");
    path_of(elsewhere, sizeof elsewhere, "elsewhere");
    path_of(moved, sizeof moved, "other-storage");
    if (!one_epoch(d)) return;
    CHECK(mkdir(elsewhere, 0755) == 0);
    snprintf(p, sizeof p, "%s/precious.txt", elsewhere);
    CHECK(write_text(p, "mine\n"));
    /* A symlink named like a checkpoint, to a directory outside the run. */
    snprintf(q, sizeof q, "%s/ckpt-e0000-s0000000001", d);
    CHECK(symlink(elsewhere, q) == 0);
    /* The current checkpoint moved to other storage, a symlink left in its
     * place: the resume reads through it; the save after it must not
     * empty it. */
    snprintf(q, sizeof q, "%s/ckpt-e0001-s0000000004", d);
    CHECK(rename(q, moved) == 0);
    CHECK(symlink(moved, q) == 0);
    zgt_cli_result r;
    train(&r, d, "2", true, NULL);
    if (r.status != 0) zgt_fail(__FILE__, __LINE__, "resume: exit %d: %s", r.status, r.err);
    CHECK(holds(p, "mine\n"));
    const char *files[] = {"model.safetensors", "optim.safetensors", "trainer.safetensors"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", moved, files[i]);
        if (access(p, R_OK) != 0) zgt_fail(__FILE__, __LINE__, "%s was removed", p);
    }
    CHECK(is_symlink(q));
    snprintf(q, sizeof q, "%s/ckpt-e0000-s0000000001", d);
    CHECK(is_symlink(q));
}

/* ---- 3. one process at a time ----------------------------------------------------- */

/* A child process that holds dir's lock as zgrad takes it (flock, its pid
 * inside) until *release is closed; its pid, or -1. */
static pid_t hold_lock(const char *dir, int *release) {
    char p[512];
    snprintf(p, sizeof p, "%s/.zgrad.lock", dir);
    int ready_pipe[2], hold_pipe[2];
    if (pipe(ready_pipe) != 0 || pipe(hold_pipe) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(ready_pipe[0]);
        close(hold_pipe[1]);
        int fd = open(p, O_RDWR | O_CREAT, 0644);
        char line[32];
        int n = snprintf(line, sizeof line, "%ld\n", (long)getpid());
        char ok = fd >= 0 && flock(fd, LOCK_EX) == 0 && ftruncate(fd, 0) == 0 && write(fd, line, (size_t)n) == n;
        if (write(ready_pipe[1], &ok, 1) != 1) _exit(1);
        char c;
        while (read(hold_pipe[0], &c, 1) > 0) {
        }
        _exit(0);
    }
    close(ready_pipe[1]);
    close(hold_pipe[0]);
    char ok = 0;
    if (pid < 0 || read(ready_pipe[0], &ok, 1) != 1 || !ok) {
        if (pid > 0) kill(pid, SIGKILL);
        close(hold_pipe[1]);
        pid = -1;
    }
    close(ready_pipe[0]);
    *release = hold_pipe[1];
    return pid;
}

static void check_in_use(const zgt_cli_result *r, pid_t holder, const char *what) {
    char pid[64];
    snprintf(pid, sizeof pid, "pid %ld", (long)holder);
    if (r->status != 1 || lines(r->err) != 1 || !strstr(r->err, "in use by another zgrad process") ||
        !strstr(r->err, pid))
        zgt_fail(__FILE__, __LINE__, "%s while %s holds the lock: exit %d: %s", what, pid, r->status, r->err);
}

TEST(rundir_lock_refuses_a_second_process) {
    REQUIRE();
    char fresh[256], run[256], p[512];
    path_of(fresh, sizeof fresh, "locked-new");
    path_of(run, sizeof run, "locked-run");
    CHECK(mkdir(fresh, 0755) == 0);
    if (!one_epoch(run)) return;
    int release;
    pid_t holder = hold_lock(fresh, &release);
    CHECK(holder > 0);
    if (holder <= 0) return;
    zgt_cli_result r;
    train(&r, fresh, "1", false, NULL);
    check_in_use(&r, holder, "train --out");
    close(release);
    zgt_cli_wait(holder);
    snprintf(p, sizeof p, "%s/checkpoint", fresh);
    CHECK(access(p, F_OK) != 0);

    /* A resume is refused the same way and changes nothing; eval only
     * reads and is not held up. A holder killed with SIGKILL leaves the
     * directory usable (the kernel drops its lock). */
    holder = hold_lock(run, &release);
    CHECK(holder > 0);
    if (holder <= 0) return;
    train(&r, run, "2", true, NULL);
    check_in_use(&r, holder, "train --resume");
    snprintf(p, sizeof p, "%s/checkpoint", run);
    CHECK(holds(p, "ckpt-e0001-s0000000004\n"));
    zgt_cli_run(&r, (const char *[]){"eval", "--checkpoint", run, "--limit-test", "64", NULL});
    CHECK(r.status == 0);
    kill(holder, SIGKILL);
    zgt_cli_wait(holder);
    close(release);
    train(&r, run, "2", true, NULL);
    if (r.status != 0) zgt_fail(__FILE__, __LINE__, "resume after the holder died: exit %d: %s", r.status, r.err);
    CHECK(holds(p, "ckpt-e0002-s0000000008\n"));
}

/* Two runs started together into one new directory: exactly one trains,
 * the other is refused (the directory is in use, or by then a run). */
TEST(rundir_two_runs_started_together) {
    REQUIRE();
    char d[256], p[512], err[2][512];
    path_of(d, sizeof d, "together");
    const char *args[] = {"train", "--model", "mlp", "--limit-train", "256", "--limit-test", "128", "--epochs", "1",
                          "--threads", "1", "--progress", "off", "--out", d, NULL};
    pid_t pid[2];
    for (int i = 0; i < 2; i++) {
        snprintf(err[i], sizeof err[i], "%s/together-%d.err", root, i);
        pid[i] = zgt_cli_spawn(args, NULL, err[i]);
    }
    int ok = 0, refused = 0;
    for (int i = 0; i < 2; i++) {
        int st = pid[i] > 0 ? zgt_cli_wait(pid[i]) : -1;
        char text[2048];
        zgt_read_text(err[i], text, sizeof text);
        ok += st == 0;
        refused += st == 1 && lines(text) == 1 &&
                   (strstr(text, "in use by another zgrad process") || strstr(text, "already holds a run"));
        if (st != 0 && st != 1) zgt_fail(__FILE__, __LINE__, "run %d: exit %d: %s", i, st, text);
    }
    CHECK(ok == 1 && refused == 1);
    snprintf(p, sizeof p, "%s/checkpoint", d);
    CHECK(holds(p, "ckpt-e0001-s0000000004\n"));
}

/* Whether another open file description can take dir's lock now. */
static bool lock_free(const char *dir) {
    char p[512];
    snprintf(p, sizeof p, "%s/.zgrad.lock", dir);
    int fd = open(p, O_RDWR);
    bool free_now = fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0;
    if (fd >= 0) close(fd);
    return free_now;
}

/* SIGTERM from another thread once the run holds its directory (none if
 * it never does within a minute). */
static void *stop_when_locked(void *arg) {
    char p[512], text[64], want[64];
    snprintf(p, sizeof p, "%s/.zgrad.lock", (const char *)arg);
    snprintf(want, sizeof want, "%ld\n", (long)getpid());
    for (int i = 0; i < 60000; i++) {
        zgt_read_text(p, text, sizeof text);
        if (!strcmp(text, want)) {
            kill(getpid(), SIGTERM);
            break;
        }
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    return NULL;
}

static void ignore_signal(int sig) { (void)sig; }

/* In one process (the library): the lock is released when zg_train_run
 * returns, after a failure and after a stop by SIGTERM alike. */
/* One epoch of the MLP on n samples, quietly, into dir. */
static zg_train_config lib_config(const char *dir, int64_t n, int64_t batch) {
    zg_train_config c = zg_train_config_defaults();
    c.model = ZG_MODEL_MLP;
    c.limit_train = n;
    c.limit_test = 100;
    c.batch_size = batch;
    c.epochs = 1;
    c.progress = ZG_PROGRESS_OFF;
    c.log = NULL;
    c.out_dir = dir;
    return c;
}

TEST(rundir_lock_released_on_every_exit) {
    REQUIRE();
    char d[256], s[256];
    path_of(d, sizeof d, "lib-failed");
    path_of(s, sizeof s, "lib-stopped");
    zg_train_config c = lib_config(d, 256, 64);
    c.inject_bad_batch = 1;
    c.max_bad_steps = 1;
    CHECK_ERR(zg_train_run(&c, NULL), "batches in a row were skipped");
    CHECK(lock_free(d));

    c = lib_config(s, 6400, 16);
    c.handle_signals = true;
    /* The test's own handler is what zg_train_run puts back: a signal
     * arriving after the run cannot end the test. */
    struct sigaction sa = {.sa_handler = ignore_signal}, old;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, &old);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, stop_when_locked, s) == 0);
    zg_train_result res;
    CHECK_ERR(zg_train_run(&c, &res), "stopped by SIGTERM");
    pthread_join(th, NULL);
    sigaction(SIGTERM, &old, NULL);
    CHECK(res.signal == SIGTERM);
    CHECK(lock_free(s));
}

/* ---- 4. a directory that is not a run ----------------------------------------------- */

TEST(rundir_out_refuses_other_files_without_force) {
    REQUIRE();
    char d[256], p[512];
    path_of(d, sizeof d, "not-a-run");
    CHECK(mkdir(d, 0755) == 0);
    const char *names[] = {"model.safetensors", "curves.svg"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", d, names[i]);
        CHECK(write_text(p, "mine\n"));
    }
    zgt_cli_result r;
    train(&r, d, "1", false, NULL);
    if (r.status != 1 || lines(r.err) != 1 || !strstr(r.err, "not empty") || !strstr(r.err, "--force"))
        zgt_fail(__FILE__, __LINE__, "train --out (not empty): exit %d: %s", r.status, r.err);
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", d, names[i]);
        if (!holds(p, "mine\n")) zgt_fail(__FILE__, __LINE__, "%s was changed", p);
    }
    train(&r, d, "1", false, "--force");
    if (r.status != 0) zgt_fail(__FILE__, __LINE__, "train --out --force: exit %d: %s", r.status, r.err);
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    zg_safetensors *st = zg_safetensors_read(p);
    CHECK(st != NULL);
    zg_safetensors_free(st);
    /* A run is never replaced, --force or not. */
    train(&r, d, "1", false, "--force");
    CHECK(r.status == 1 && strstr(r.err, "already holds a run"));
    /* An empty directory is a fine place for a new run. */
    path_of(d, sizeof d, "empty-out");
    CHECK(mkdir(d, 0755) == 0);
    train(&r, d, "1", false, NULL);
    if (r.status != 0) zgt_fail(__FILE__, __LINE__, "train --out (empty): exit %d: %s", r.status, r.err);
    zgt_cli_run(&r, (const char *[]){"train", "--help", NULL});
    CHECK(r.status == 0 && strstr(r.out, "--force"));
    zgt_cli_run(&r, (const char *[]){"train", "--force=yes", NULL});
    CHECK(r.status == 2);
}

/* ---- 5. the checkpoint pointer ----------------------------------------------------- */

/* zgrad with args, stopped with SIGKILL if it has not ended within a
 * minute (a read that blocks forever): its exit status, -2 if it hung. */
static int run_bounded(const char *const *args, char *err, size_t n) {
    char errf[512];
    snprintf(errf, sizeof errf, "%s/bounded.err", root);
    pid_t pid = zgt_cli_spawn(args, NULL, errf);
    if (pid <= 0) return -1;
    int raw;
    for (int i = 0; i < 6000; i++) {
        if (waitpid(pid, &raw, WNOHANG) == pid) {
            zgt_read_text(errf, err, n);
            return WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
        }
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    kill(pid, SIGKILL);
    zgt_cli_wait(pid);
    return -2;
}

/* eval and resume both refuse the run at once, naming `why`. */
static void check_pointer_refused(const char *dir, const char *why) {
    char err[2048];
    const char *eval[] = {"eval", "--checkpoint", dir, "--limit-test", "64", NULL};
    const char *resume[] = {"train", "--resume", dir, "--epochs", "2", "--progress", "off", NULL};
    const char *const *cmds[] = {eval, resume};
    for (int i = 0; i < 2; i++) {
        int st = run_bounded(cmds[i], err, sizeof err);
        if (st != 1 || lines(err) != 1 || !strstr(err, why))
            zgt_fail(__FILE__, __LINE__, "%s %s: exit %d (-2: hung): %s", cmds[i][0], why, st, err);
    }
}

TEST(rundir_pointer_is_a_small_regular_file) {
    REQUIRE();
    char d[256], p[512], target[512];
    path_of(d, sizeof d, "pointer");
    if (!one_epoch(d)) return;
    snprintf(p, sizeof p, "%s/checkpoint", d);
    snprintf(target, sizeof target, "%s/pointer-elsewhere", root);
    CHECK(write_text(target, "ckpt-e0001-s0000000004\n"));
    CHECK(unlink(p) == 0 && symlink(target, p) == 0);
    check_pointer_refused(d, "symbolic link");
    /* Refused without reading, so it may point at an endless file. */
    if (!zgt_case_failures()) {
        CHECK(unlink(p) == 0 && symlink("/dev/zero", p) == 0);
        check_pointer_refused(d, "symbolic link");
    }
    CHECK(unlink(p) == 0 && mkfifo(p, 0644) == 0);
    check_pointer_refused(d, "not a regular file");
    /* A regular file too long to be a pointer (the name, then 1 MB). */
    CHECK(unlink(p) == 0 && write_text(p, "ckpt-e0001-s0000000004\n"));
    CHECK(truncate(p, 1 << 20) == 0);
    check_pointer_refused(d, "larger than");
    CHECK(write_text(p, "ckpt-e0001-s0000000004\n"));
    zgt_cli_result r;
    zgt_cli_run(&r, (const char *[]){"eval", "--checkpoint", d, "--limit-test", "64", NULL});
    CHECK(r.status == 0);
}

/* The atomic writer's temporary file: a symlink planted at its name (the
 * path plus ".tmp.<pid>") is replaced, never written through. */
TEST(atomic_write_never_follows_a_planted_symlink) {
    char *dir = zgt_temp_dir();
    if (!dir) return;
    char victim[512], path[512], tmp[600];
    snprintf(victim, sizeof victim, "%s/victim.txt", dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(victim, "w");
    CHECK_PTR(f);
    if (f) {
        fputs("keep me", f);
        fclose(f);
    }
    CHECK(symlink(victim, tmp) == 0);
    zg_module *m = zg_nn_linear(2, 2, true);
    CHECK_OK(zg_module_save(m, path));
    char buf[32] = {0};
    f = fopen(victim, "r");
    CHECK(f && fread(buf, 1, sizeof buf - 1, f) == 7 && !strcmp(buf, "keep me"));
    if (f) fclose(f);
    struct stat st;
    CHECK(lstat(tmp, &st) != 0 && errno == ENOENT); /* the link went with the rename */
    CHECK_OK(zg_module_load(m, path));
    zg_module_free(m);
    zgt_remove_dir(dir);
}
