/* Runs the zgrad binary of the test's own build directory (BUILD/zgrad
 * next to BUILD/tests/) in a child process, with stdout and stderr sent to
 * files and read back. Shared by the CLI tests; linked into every test
 * binary, so it finds the binary only when asked (at run time). */
#ifndef ZGT_CLI_RUNNER_H
#define ZGT_CLI_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct {
    int status; /* exit code, 128 + signal, or -1 when it could not run */
    char out[16384];
    char err[16384];
} zgt_cli_result;

/* Locates BUILD/zgrad and remembers io_dir, the folder for the captured
 * stdout.txt / stderr.txt of zgt_cli_run; true when the binary is
 * executable. */
bool zgt_cli_setup(const char *io_dir);
/* The binary's path ("" before zgt_cli_setup). */
const char *zgt_cli_bin(void);
/* The captured-output files of zgt_cli_run (valid after zgt_cli_setup). */
const char *zgt_cli_out_file(void);
const char *zgt_cli_err_file(void);

/* Starts zgrad with args (NULL-terminated, without argv[0]) in the
 * background; stdout and stderr go to the given files (NULL: /dev/null). */
pid_t zgt_cli_spawn(const char *const *args, const char *out_file, const char *err_file);
/* The same with stdout the write end of a new pipe, whose read end is
 * returned in *read_fd (the caller closes it). */
pid_t zgt_cli_spawn_pipe(const char *const *args, int *read_fd, const char *err_file);
/* Waits (up to 20 s) until the file at path contains text. */
void zgt_wait_for_text(const char *path, const char *text);
/* Waits for pid: its exit code, 128 + signal, or -1. */
int zgt_cli_wait(pid_t pid);
/* Runs zgrad to completion and captures its output. */
void zgt_cli_run(zgt_cli_result *r, const char *const *args);
/* The start of a file as a string ("" when it cannot be read). */
void zgt_read_text(const char *path, char *buf, size_t n);

/* The environment assignments (shell words) that a command under mpirun
 * needs in a sanitizer build: ASAN_OPTIONS with fast_unwind_on_malloc=0
 * and, unless LSAN_OPTIONS is set, tests/lsan.supp's suppressions. */
void zgt_mpi_env(char *buf, size_t n);

#endif
