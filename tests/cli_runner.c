/* The launcher of the zgrad binary for the CLI tests (see cli_runner.h). */
#include "cli_runner.h"
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char bin[4096];
static char out_file[4096], err_file[4096];

bool zgt_cli_setup(const char *io_dir) {
    if (!bin[0]) {
        /* BUILD/tests/test_x -> BUILD/zgrad */
        const char *self = zgt_self_exe();
        char exe[4096];
        if (!self || snprintf(exe, sizeof exe, "%s", self) >= (int)sizeof exe) return false;
        for (int k = 0; k < 2; k++) {
            char *slash = strrchr(exe, '/');
            if (!slash) return false;
            *slash = '\0';
        }
        if (snprintf(bin, sizeof bin, "%s/zgrad", exe) >= (int)sizeof bin) {
            bin[0] = '\0';
            return false;
        }
    }
    if (snprintf(out_file, sizeof out_file, "%s/stdout.txt", io_dir) >= (int)sizeof out_file ||
        snprintf(err_file, sizeof err_file, "%s/stderr.txt", io_dir) >= (int)sizeof err_file)
        return false;
    return access(bin, X_OK) == 0;
}

const char *zgt_cli_bin(void) { return bin; }
const char *zgt_cli_out_file(void) { return out_file; }
const char *zgt_cli_err_file(void) { return err_file; }

void zgt_read_text(const char *path, char *buf, size_t n) {
    buf[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) return;
    size_t k = fread(buf, 1, n - 1, f);
    buf[k] = '\0';
    fclose(f);
}

/* In the child: zgrad with args, never returning. */
static void exec_zgrad(const char *const *args) {
    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    for (int i = 0; args[i] && n < 62; i++) argv[n++] = args[i];
    argv[n] = NULL;
    execv(bin, (char *const *)argv);
    _exit(127);
}

pid_t zgt_cli_spawn(const char *const *args, const char *out, const char *err) {
    /* Unflushed test output would be written twice, once by the child. */
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        int fo = open(out ? out : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = open(err ? err : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo < 0 || fe < 0) _exit(126);
        dup2(fo, 1);
        dup2(fe, 2);
        close(fo);
        close(fe);
        exec_zgrad(args);
    }
    return pid;
}

pid_t zgt_cli_spawn_pipe(const char *const *args, int *read_fd, const char *err) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        int fe = open(err ? err : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fe < 0 || dup2(fds[1], 1) < 0 || dup2(fe, 2) < 0) _exit(126);
        /* Else the child itself would hold a reader of its own output. */
        close(fds[0]);
        close(fds[1]);
        close(fe);
        exec_zgrad(args);
    }
    close(fds[1]);
    if (pid < 0) close(fds[0]);
    *read_fd = pid < 0 ? -1 : fds[0];
    return pid;
}

void zgt_wait_for_text(const char *path, const char *text) {
    char buf[16384];
    for (int i = 0; i < 4000; i++) {
        zgt_read_text(path, buf, sizeof buf);
        if (strstr(buf, text)) return;
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    }
}

int zgt_cli_wait(pid_t pid) {
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void zgt_cli_run(zgt_cli_result *r, const char *const *args) {
    pid_t pid = zgt_cli_spawn(args, out_file, err_file);
    r->status = pid > 0 ? zgt_cli_wait(pid) : -1;
    zgt_read_text(out_file, r->out, sizeof r->out);
    zgt_read_text(err_file, r->err, sizeof r->err);
}

/* Under the sanitizers, LeakSanitizer needs whole stacks to tell Open
 * MPI's allocations (kept from MPI_Init to the end of the process, and
 * partly made by components unloaded at MPI_Finalize) from zgrad's:
 * fast_unwind_on_malloc=0 unwinds through MPI's libraries, which have no
 * frame pointers, so that tests/lsan.supp's library names match. When the
 * binary runs outside scripts/run-tests, the suppressions are found
 * beside the build. */
void zgt_mpi_env(char *buf, size_t n) {
    const char *lsan = getenv("LSAN_OPTIONS");
    char supp[1024] = "";
    if (!lsan) {
        char dir[900];
        snprintf(dir, sizeof dir, "%s", zgt_self_exe());
        for (int up = 0; up < 4; up++) {
            char *slash = strrchr(dir, '/');
            if (!slash) break;
            *slash = 0;
            snprintf(supp, sizeof supp, "%s/tests/lsan.supp", dir);
            if (access(supp, R_OK) == 0) break;
            supp[0] = 0;
        }
    }
    snprintf(buf, n, "ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0\" %s%s%s",
             supp[0] ? "LSAN_OPTIONS=suppressions='" : "", supp, supp[0] ? "'" : "");
}
