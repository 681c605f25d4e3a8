/* The run directory belongs to its user as much as to zgrad: a run holds
 * a lock on it while it writes there, and removes only what it can prove
 * it wrote, never following a symlink.
 *
 *   .zgrad.lock    flock'ed (exclusive) by the process training in the
 *                  directory, which writes its pid there; the kernel
 *                  releases the lock however the process ends (the file
 *                  stays, unlocked)
 *   .zgrad-ckpts   the checkpoint directories this run made that may still
 *                  exist (the current one and the one being written), one
 *                  name a line, replaced atomically before each new one is
 *                  made
 *   ckpt-.../.zgrad-checkpoint   "zgrad checkpoint <its own name>", the
 *                  first file written in a checkpoint directory
 *
 * A checkpoint directory is removed only when its name is exactly one
 * zg__ckpt_name writes, the run's list names it, and it is a directory
 * (opened with O_NOFOLLOW) holding the marker that names it, or nothing
 * but the marker's temporary file (a kill between mkdir and the marker's
 * rename). Removal unlinks the marker last, so a kill part-way leaves a
 * directory still marked, or an empty one. A copy such as `cp -r
 * ckpt-e0003-s0000002811 ckpt-best` fails the name and the list, although
 * it holds the marker. Temporary files: only "<file>.tmp.<pid>" regular
 * files, for the files zgrad replaces atomically in the run directory. */
#include "train_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAME_CAP (ZG_CKPT_NAME_MAX + 1)
#define RECORD_MAX 8
/* The marker while it is written (write_marker). */
#define MARKER_TMP ZG_CKPT_MARKER ".tmp"

void zg__ckpt_name(char *out, int64_t epoch, int64_t step) {
    snprintf(out, NAME_CAP, "ckpt-e%04" PRId64 "-s%010" PRId64, epoch, step);
}

/* Digits only, at least one, and a value that fits. */
static bool parse_digits(const char *s, size_t n, int64_t *out) {
    if (n == 0) return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (INT64_MAX - (s[i] - '0')) / 10) return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

bool zg__ckpt_name_exact(const char *name) {
    const char *dash = strncmp(name, "ckpt-e", 6) ? NULL : strstr(name + 6, "-s");
    int64_t e, s;
    if (!dash || !parse_digits(name + 6, (size_t)(dash - name - 6), &e) ||
        !parse_digits(dash + 2, strlen(dash + 2), &s))
        return false;
    /* The same name written back: no other zero padding, nothing added. */
    char again[NAME_CAP];
    zg__ckpt_name(again, e, s);
    return !strcmp(again, name);
}

/* ---- the run's list of its checkpoint directories --------------------------- */

typedef struct {
    char names[RECORD_MAX][NAME_CAP];
    int n;
} record;

static bool recorded(const record *r, const char *name) {
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->names[i], name)) return true;
    return false;
}

static void record_add(record *r, const char *name) {
    if (r->n < RECORD_MAX && !recorded(r, name)) snprintf(r->names[r->n++], NAME_CAP, "%s", name);
}

/* The list as the run left it; unreadable or absent: empty (then nothing
 * is removed). Lines that are not exact checkpoint names are ignored. */
static void read_record(int run_fd, const char *run_dir, record *r) {
    r->n = 0;
    char buf[RECORD_MAX * NAME_CAP], shown[4200];
    size_t len;
    zg__path_join(shown, sizeof shown, run_dir, ZG_CKPT_RECORD);
    if (zg__read_small("zg_train_run", run_fd, ZG_CKPT_RECORD, shown, buf, sizeof buf, &len) != 1) {
        zg_clear_error();
        return;
    }
    char *save = NULL;
    for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
        if (zg__ckpt_name_exact(l)) record_add(r, l);
}

static int write_record(const char *fn, const char *run_dir, const record *r) {
    char text[RECORD_MAX * NAME_CAP + 1] = "", path[4200];
    size_t n = 0;
    for (int i = 0; i < r->n; i++) n += (size_t)snprintf(text + n, sizeof text - n, "%s\n", r->names[i]);
    zg__path_join(path, sizeof path, run_dir, ZG_CKPT_RECORD);
    return zg__write_atomic(fn, path, text, n);
}

/* ---- removing only what is ours --------------------------------------------- */

/* Removes run_dir/name when the run can prove it wrote it: 0 removed (or
 * not there), 1 left because it is not provably the run's, < 0 failed. */
static int remove_ours(const char *fn, int run_fd, const char *run_dir, const char *name, const record *r) {
    int dfd = openat(run_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) return errno == ENOENT ? 0 : 1; /* a symlink, a file: never the run's */
    char shown[4200], marker[NAME_CAP + 32], want[NAME_CAP + 32];
    zg__path_join(shown, sizeof shown, run_dir, name);
    size_t len = 0;
    int m = zg__ckpt_name_exact(name) && recorded(r, name)
                ? zg__read_small(fn, dfd, ZG_CKPT_MARKER, shown, marker, sizeof marker, &len)
                : -1;
    snprintf(want, sizeof want, "zgrad checkpoint %s\n", name);
    /* The marker goes last: a kill part-way through leaves a directory
     * still marked (removed by the next resume), or an empty one. */
    if (m == 1 && !strcmp(marker, want)) return zg__remove_dir_at(fn, run_fd, name, dfd, shown, ZG_CKPT_MARKER);
    close(dfd);
    /* Made but not yet marked: it holds nothing, or only the marker's
     * temporary file (a kill while the marker was written); rmdir removes
     * it only once that is gone and it is empty. */
    if (m == 0) {
        dfd = openat(run_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (dfd >= 0 && fstatat(dfd, MARKER_TMP, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            unlinkat(dfd, MARKER_TMP, 0);
        if (dfd >= 0) close(dfd);
        if (unlinkat(run_fd, name, AT_REMOVEDIR) == 0) return 0;
    }
    zg_clear_error();
    return 1;
}

static int write_marker(const char *fn, int run_fd, const char *run_dir, const char *name) {
    char shown[4200], text[NAME_CAP + 32];
    zg__path_join(shown, sizeof shown, run_dir, name);
    int len = snprintf(text, sizeof text, "zgrad checkpoint %s\n", name);
    int dfd = openat(run_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int fd = dfd < 0 ? -1 : openat(dfd, MARKER_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    /* Written whole under a temporary name, then renamed: a kill leaves
     * either the whole marker or none (a half-written one would make the
     * directory unprovable, hence never removed). Durable before anything
     * else lands in the directory. */
    bool ok = fd >= 0 && write(fd, text, (size_t)len) == len && fsync(fd) == 0 &&
              renameat(dfd, MARKER_TMP, dfd, ZG_CKPT_MARKER) == 0 && fsync(dfd) == 0;
    int err = errno;
    if (fd >= 0) close(fd);
    if (dfd >= 0) close(dfd);
    if (!ok) return zg__fail(ZG_ERR_IO, "%s: cannot write '%s/%s': %s", fn, shown, ZG_CKPT_MARKER, strerror(err));
    return ZG_OK;
}

static int open_run(const char *fn, const char *run_dir) {
    int fd = open(run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) zg__fail(ZG_ERR_IO, "%s: cannot open directory '%s': %s", fn, run_dir, strerror(errno));
    return fd;
}

int zg__ckpt_begin(const char *fn, const char *run_dir, const char *old, const char *name) {
    int run_fd = open_run(fn, run_dir);
    if (run_fd < 0) return ZG_ERR_IO;
    record prev, next = {.n = 0};
    read_record(run_fd, run_dir, &prev);
    int rc = remove_ours(fn, run_fd, run_dir, name, &prev);
    if (rc > 0)
        rc = zg__fail(ZG_ERR_STATE, "%s: '%s/%s' exists and was not written by this run; move it away, then resume",
                      fn, run_dir, name);
    /* The list names the new directory before it exists, and keeps the
     * current one only if this run made it. */
    if (old && recorded(&prev, old)) record_add(&next, old);
    record_add(&next, name);
    if (!rc) rc = write_record(fn, run_dir, &next);
    if (!rc && mkdirat(run_fd, name, 0755) != 0)
        rc = zg__fail(ZG_ERR_IO, "%s: cannot create '%s/%s': %s", fn, run_dir, name, strerror(errno));
    if (!rc) rc = write_marker(fn, run_fd, run_dir, name);
    close(run_fd);
    return rc;
}

void zg__ckpt_remove(const char *fn, const char *run_dir, const char *name, bool forget) {
    int run_fd = open_run(fn, run_dir);
    if (run_fd < 0) return;
    record r, rest = {.n = 0};
    read_record(run_fd, run_dir, &r);
    /* forget (a failed save): the list no longer names it either, as
     * before the save began. */
    if (remove_ours(fn, run_fd, run_dir, name, &r) == 0 && forget && recorded(&r, name)) {
        for (int i = 0; i < r.n; i++)
            if (strcmp(r.names[i], name)) record_add(&rest, r.names[i]);
        if (write_record(fn, run_dir, &rest)) zg_clear_error();
    }
    close(run_fd);
}

/* "<file>.tmp.<pid>" (zg__atomic_open's name) for a file zgrad replaces
 * atomically in the run directory (the TensorBoard event file too). */
static bool our_temp(const char *name) {
    static const char *const files[] = {ZG_CKPT_POINTER, ZG_CKPT_RECORD, ZG_CKPT_MODEL, "metrics.jsonl", "curves.svg"};
    const char *tmp = NULL;
    for (const char *p = strstr(name, ".tmp."); p; p = strstr(p + 1, ".tmp.")) tmp = p;
    int64_t pid;
    if (!tmp || tmp[5] == '0' || !parse_digits(tmp + 5, strlen(tmp + 5), &pid)) return false;
    const size_t k = (size_t)(tmp - name);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (strlen(files[i]) == k && !strncmp(name, files[i], k)) return true;
    return zg__tfevents_name(name, k);
}

void zg__ckpt_cleanup(const char *run_dir, const char *current) {
    const char *fn = "zg_train_run: cleanup";
    int run_fd = open_run(fn, run_dir);
    if (run_fd < 0) {
        zg_clear_error();
        return;
    }
    record r;
    read_record(run_fd, run_dir, &r);
    for (int i = 0; i < r.n; i++)
        if (strcmp(r.names[i], current) != 0) remove_ours(fn, run_fd, run_dir, r.names[i], &r);
    int list_fd = dup(run_fd);
    DIR *d = list_fd < 0 ? NULL : fdopendir(list_fd);
    struct dirent *e;
    struct stat st;
    while (d && (e = readdir(d)) != NULL)
        if (our_temp(e->d_name) && fstatat(run_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            unlinkat(run_fd, e->d_name, 0);
    if (d) closedir(d);
    else if (list_fd >= 0) close(list_fd);
    close(run_fd);
    zg_clear_error();
}

/* ---- the lock and a fresh directory ------------------------------------------- */

/* The holder's pid as it wrote it in the lock file ("unknown" before it
 * has). */
static void holder_pid(int fd, char *pid, size_t n) {
    ssize_t k = pread(fd, pid, n - 1, 0);
    pid[k > 0 ? k : 0] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
    int64_t v;
    if (!parse_digits(pid, strlen(pid), &v)) snprintf(pid, n, "unknown");
}

int zg__run_lock(const char *fn, const char *run_dir, int *out) {
    char path[4200], pid[32];
    zg__path_join(path, sizeof path, run_dir, ZG_RUN_LOCK);
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
    if (fd < 0) return zg__fail(ZG_ERR_IO, "%s: cannot open the lock file '%s': %s", fn, path, strerror(errno));
    struct stat st;
    int rc = ZG_OK, err = fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ? -1
                        : flock(fd, LOCK_EX | LOCK_NB) != 0       ? errno
                                                                  : 0;
    if (err < 0) {
        rc = zg__fail(ZG_ERR_IO, "%s: the lock file '%s' is not a regular file", fn, path);
    } else if (err == EWOULDBLOCK) {
        holder_pid(fd, pid, sizeof pid);
        rc = zg__fail(ZG_ERR_STATE,
                      "%s: '%s' is in use by another zgrad process (pid %s holds %s); wait for it to end or choose "
                      "another directory",
                      fn, run_dir, pid, ZG_RUN_LOCK);
    } else if (err) {
        rc = zg__fail(ZG_ERR_IO, "%s: cannot lock '%s': %s", fn, path, strerror(err));
    } else {
        int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
        if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len)
            rc = zg__fail(ZG_ERR_IO, "%s: cannot write the lock file '%s': %s", fn, path, strerror(errno));
    }
    if (rc) {
        close(fd);
        return rc;
    }
    *out = fd;
    return ZG_OK;
}

void zg__run_unlock(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

/* Whether an entry of a directory is something a run that wrote no
 * checkpoint yet leaves there. */
static bool run_leftover(const char *name, const record *r) {
    return !strcmp(name, ".") || !strcmp(name, "..") || !strcmp(name, ZG_RUN_LOCK) || !strcmp(name, ZG_CKPT_RECORD) ||
           our_temp(name) || recorded(r, name);
}

int zg__run_check_fresh(const char *fn, const char *dir, bool force) {
    char name[NAME_CAP];
    if (zg__ckpt_read_pointer(fn, dir, name) == 1)
        return zg__fail(ZG_ERR_STATE,
                        "%s: '%s' already holds a run (its checkpoint %s); continue it with --resume %s or choose "
                        "another --out",
                        fn, dir, name, dir);
    zg_clear_error();
    if (force) return ZG_OK;
    int fd = open_run(fn, dir);
    if (fd < 0) return ZG_ERR_IO;
    record r;
    read_record(fd, dir, &r);
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return zg__fail(ZG_ERR_IO, "%s: cannot read directory '%s': %s", fn, dir, strerror(errno));
    }
    struct dirent *e;
    int rc = ZG_OK;
    while (!rc && (e = readdir(d)) != NULL)
        if (!run_leftover(e->d_name, &r))
            rc = zg__fail(ZG_ERR_STATE,
                          "%s: '%s' is not empty and holds no zgrad run ('%s' is there); choose a new or empty "
                          "directory, or add --force to write into it (files of the same names are replaced)",
                          fn, dir, e->d_name);
    closedir(d);
    return rc;
}
