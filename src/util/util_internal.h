/* The bottom layer: what every other layer may use and none rewrites.
 * Errors, the parallel-loop macros and the thread count, a growable string
 * buffer, and file helpers (atomic writes, directories). JSON is in
 * json.h. Nothing here knows about tensors. Not installed. */
#ifndef ZG_UTIL_INTERNAL_H
#define ZG_UTIL_INTERNAL_H

#include "zgrad.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
#define ZG__PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#define ZG__PRINTF(fmt_index, first_arg)
#endif

/* The largest step, epoch or sample counter zgrad accepts from a file or
 * a caller: 2^53, exact in a double (the schedules compute with counters
 * as doubles) and so far below INT64_MAX that counting on from it, or
 * adding two of them, cannot overflow. */
#define ZG__MAX_COUNT ((int64_t)1 << 53)

/* ---- errors (error.c) ------------------------------------------------- */

/* Sets the error text and returns `code` (for `return zg__fail(...)`). */
int zg__fail(int code, const char *fmt, ...) ZG__PRINTF(2, 3);
/* Same, for functions that return a pointer: returns NULL. */
void *zg__fail_null(const char *fmt, ...) ZG__PRINTF(1, 2);

/* ---- heap allocations (alloc.c) --------------------------------------- */

/* Every malloc/calloc/realloc/aligned_alloc/strdup of the library goes
 * through these (memory from them is released with free), so tests can
 * make any one of them fail. */
void *zg__malloc(size_t n);
void *zg__calloc(size_t n, size_t size);
void *zg__realloc(void *p, size_t n);
void *zg__aligned_alloc(size_t align, size_t n);
char *zg__strdup(const char *s);
/* Testing: from now on, the n-th allocation (n >= 1) returns NULL, and with
 * persistent every later one too; n < 0 only counts, n = 0 disarms. Resets
 * both counters. */
void zg__alloc_fail_after(int64_t n, bool persistent);
/* Allocations attempted, and failures injected, since the last
 * zg__alloc_fail_after (counted only while armed). */
int64_t zg__alloc_count(void);
int64_t zg__alloc_failed(void);

/* ---- parallel loops (threads.c) --------------------------------------- */

/* for (int64_t i = 0; i < n; i++) body, split across the OpenMP threads
 * when n >= min. Below min the loop never enters the OpenMP runtime: even
 * a region that an if() clause serialises costs LLVM's runtime a few
 * mallocs, which small tensors would pay on every step. */
#define ZG_PARALLEL_FOR(i, n, min, ...)                                                                     \
    do {                                                                                                   \
        const int64_t zg_pf_n = (n);                                                                       \
        if (zg_pf_n >= (min)) {                                                                            \
            _Pragma("omp parallel for schedule(static)") for (int64_t i = 0; i < zg_pf_n; i++) __VA_ARGS__ \
        } else {                                                                                           \
            for (int64_t i = 0; i < zg_pf_n; i++) __VA_ARGS__                                             \
        }                                                                                                  \
    } while (0)

/* Hot element loops are compiled for AVX-512, AVX2 and baseline x86-64, and
 * the loader picks the best the CPU has. The build turns FMA contraction off
 * (-ffp-contract=off), so every version rounds exactly as the scalar code
 * does and results do not depend on the CPU. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(ZG_NO_CLONES)
#define ZG_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ZG_SIMD_CLONES
#endif

/* Runs `body` (which sees int64_t lo, hi) over [0, n) split into one
 * contiguous chunk per OpenMP thread, or as one chunk below `min`, so a
 * vectorised kernel gets long runs. */
#define ZG_PARALLEL_CHUNKS(lo, hi, n, min, ...)                                                 \
    do {                                                                                     \
        const int64_t zg_pc_n = (n);                                                         \
        const int64_t zg_pc_k = zg_pc_n >= (min) ? (int64_t)zg__max_threads() : 1;             \
        ZG_PARALLEL_FOR(zg_pc_c, zg_pc_k, 2, {                                               \
            const int64_t lo = zg_pc_n * zg_pc_c / zg_pc_k, hi = zg_pc_n * (zg_pc_c + 1) / zg_pc_k; \
            __VA_ARGS__                                                                      \
        });                                                                                  \
    } while (0)
/* omp_get_max_threads(), without making every file include omp.h. */
int zg__max_threads(void);

/* ---- UTF-8 (utf8.c) ------------------------------------------------------ */

/* The code point at s[*i] (s holds n bytes), advancing *i past it; -1 for
 * an invalid sequence (overlong forms, surrogates, above U+10FFFF). */
int64_t zg__utf8_next(const unsigned char *s, size_t n, size_t *i);
/* Whether s[0..n) is valid UTF-8. */
bool zg__utf8_valid(const char *s, size_t n);
/* Writes cp (<= U+10FFFF) as UTF-8 to o (room for 4); the bytes written. */
size_t zg__utf8_put(char *o, uint32_t cp);

/* ---- growable string buffer (strbuf.c) -------------------------------- */

/* Text (or bytes) built up piece by piece. A failed append (out of memory)
 * marks the buffer and makes later appends no-ops, so a writer checks
 * `failed` once at the end. s is NUL-terminated whenever n > 0. */
typedef struct {
    char *s;
    size_t n, cap;
    bool failed;
} zg__strbuf;
void zg__sb_put(zg__strbuf *b, const void *data, size_t n);
void zg__sb_puts(zg__strbuf *b, const char *s);
void zg__sb_printf(zg__strbuf *b, const char *fmt, ...) ZG__PRINTF(2, 3);
/* A JSON string literal: quotes, backslashes and control characters are
 * escaped; other bytes (UTF-8) pass through. */
void zg__sb_json_str(zg__strbuf *b, const char *s);
void zg__sb_free(zg__strbuf *b);

/* ---- files (fs.c) ------------------------------------------------------ */

/* Crash-safe replacement of a file: the content goes to a temporary file
 * next to the target, which is fsync'ed, renamed over the target (atomic
 * on one file system) and the directory fsync'ed, so a reader sees the old
 * or the new content, never a mix, whenever the process dies. fn names the
 * public caller in error messages. */
typedef struct {
    FILE *f;         /* write the content here */
    char tmp[4200];  /* the temporary file's path: no allocation, so a save
                      * that failed for memory can still restore files */
    const char *fn, *path;
} zg__atomic_file;
/* Creates the temporary file. */
int zg__atomic_open(zg__atomic_file *af, const char *fn, const char *path);
/* ok: every write to af->f succeeded. Then flushes, fsyncs, renames and
 * syncs the directory; otherwise (or on any failure) removes the temporary
 * file. Frees af's resources either way. */
int zg__atomic_commit(zg__atomic_file *af, bool ok);
/* The whole of data[0..len) as one atomic replacement of path. */
int zg__write_atomic(const char *fn, const char *path, const void *data, size_t len);
/* fsync of a directory (so that renames and new entries in it survive a
 * crash). */
int zg__fsync_dir(const char *fn, const char *dir);
/* mkdir -p. */
int zg__mkdirs(const char *fn, const char *path);
/* Removes the directory `name` of parent_fd, open as dfd (which this
 * call closes; open it with O_NOFOLLOW): each entry with unlinkat, which
 * removes a symlink itself, never what it points to, and refuses a
 * subdirectory (then the call fails); then the directory (rmdir: only when
 * empty). shown: its path in messages. last (or NULL): the entry removed
 * after all others, so that a kill part-way leaves it in place. */
int zg__remove_dir_at(const char *fn, int parent_fd, const char *name, int dfd, const char *shown, const char *last);
/* Reads the file `name` of at_fd (AT_FDCWD: a path) into buf (at most
 * cap - 1 bytes, NUL-terminated; *len excludes the NUL) without following
 * a symlink or blocking on a FIFO: 1 read, 0 absent, < 0 an error naming
 * `shown` (a symlink, not a regular file, cap bytes or more: ZG_ERR_FORMAT). */
int zg__read_small(const char *fn, int at_fd, const char *name, const char *shown, char *buf, size_t cap,
                   size_t *len);
bool zg__is_dir(const char *path);
bool zg__path_exists(const char *path);
/* dir/name into out; false if it does not fit. */
bool zg__path_join(char *out, size_t n, const char *dir, const char *name);
/* CRC-32 (zlib) and size of a file's content. */
int zg__file_crc(const char *fn, const char *path, uint32_t *crc, int64_t *size);
double zg__now(void); /* monotonic seconds */

#endif
