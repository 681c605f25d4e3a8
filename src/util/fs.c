/* Durable file writes and directory helpers (util_internal.h), for the
 * training driver and the safetensors writer alike.
 *
 * A write is made crash-safe by the usual POSIX sequence: write a temporary
 * file next to the target, fsync it, rename it over the target (atomic on
 * one file system), then fsync the directory so the rename itself is on
 * disk. A reader therefore sees either the old or the new content, never a
 * mix, whatever moment the process is killed at. */
#include "util_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

double zg__now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

bool zg__path_join(char *out, size_t n, const char *dir, const char *name) {
    int k = snprintf(out, n, "%s/%s", dir, name);
    return k >= 0 && (size_t)k < n;
}

bool zg__is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool zg__path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int zg__fsync_dir(const char *fn, const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return zg__fail(ZG_ERR_IO, "%s: cannot open directory '%s': %s", fn, dir, strerror(errno));
    /* Some file systems cannot fsync a directory (EINVAL): nothing more can
     * be done there. */
    int rc = fsync(fd) == 0 || errno == EINVAL ? ZG_OK : ZG_ERR_IO;
    int err = errno;
    close(fd);
    if (rc) return zg__fail(ZG_ERR_IO, "%s: fsync of '%s' failed: %s", fn, dir, strerror(err));
    return ZG_OK;
}

/* The directory part of path ("." when there is none). */
static void dir_of(const char *path, char *out, size_t n) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(out, n, ".");
    } else if (slash == path) {
        snprintf(out, n, "/");
    } else {
        snprintf(out, n, "%.*s", (int)(slash - path), path);
    }
}

int zg__atomic_open(zg__atomic_file *af, const char *fn, const char *path) {
    *af = (zg__atomic_file){.fn = fn, .path = path};
    if (snprintf(af->tmp, sizeof af->tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof af->tmp)
        return zg__fail(ZG_ERR_ARG, "%s: path too long: '%s'", fn, path);
    /* A fresh file of our own: a leftover of that name (a crashed process
     * with our pid) goes first, and a symlink planted there is unlinked,
     * never followed; O_EXCL refuses anything that appears in between. */
    unlink(af->tmp);
    int fd = open(af->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    af->f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!af->f && fd >= 0) close(fd);
    if (!af->f) {
        return zg__fail(ZG_ERR_IO, "%s: cannot create '%s': %s", fn, af->tmp, strerror(errno));
    }
    return ZG_OK;
}

int zg__atomic_commit(zg__atomic_file *af, bool ok) {
    int err = errno;
    ok = ok && fflush(af->f) == 0 && fsync(fileno(af->f)) == 0;
    if (!ok) err = errno;
    if (fclose(af->f) != 0 && ok) {
        ok = false;
        err = errno;
    }
    int rc = ZG_OK;
    if (!ok) {
        rc = zg__fail(ZG_ERR_IO, "%s: writing '%s' failed: %s", af->fn, af->tmp, strerror(err));
    } else if (rename(af->tmp, af->path) != 0) {
        ok = false;
        rc = zg__fail(ZG_ERR_IO, "%s: cannot rename '%s' to '%s': %s", af->fn, af->tmp, af->path, strerror(errno));
    }
    if (!ok) unlink(af->tmp);
    af->f = NULL;
    if (rc) return rc;
    char dir[4096];
    dir_of(af->path, dir, sizeof dir);
    return zg__fsync_dir(af->fn, dir);
}

int zg__write_atomic(const char *fn, const char *path, const void *data, size_t len) {
    zg__atomic_file af;
    int rc = zg__atomic_open(&af, fn, path);
    if (rc) return rc;
    return zg__atomic_commit(&af, len == 0 || fwrite(data, 1, len, af.f) == len);
}

int zg__mkdirs(const char *fn, const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return zg__fail(ZG_ERR_ARG, "%s: path too long: '%s'", fn, path);
    for (char *s = buf + 1;; s++) {
        if (*s != '/' && *s != '\0') continue;
        char c = *s;
        *s = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return zg__fail(ZG_ERR_IO, "%s: cannot create directory '%s': %s", fn, buf, strerror(errno));
        if (!zg__is_dir(buf)) return zg__fail(ZG_ERR_IO, "%s: '%s' is not a directory", fn, buf);
        *s = c;
        if (c == '\0') break;
    }
    return ZG_OK;
}

int zg__remove_dir_at(const char *fn, int parent_fd, const char *name, int dfd, const char *shown, const char *last) {
    DIR *d = fdopendir(dfd);
    if (!d) {
        int err = errno;
        close(dfd);
        return zg__fail(ZG_ERR_IO, "%s: cannot read directory '%s': %s", fn, shown, strerror(err));
    }
    struct dirent *e;
    int rc = ZG_OK;
    bool has_last = false;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (last && !strcmp(e->d_name, last)) {
            has_last = true;
            continue;
        }
        /* flags 0: a symlink goes itself, a subdirectory is refused
         * (EISDIR), so nothing outside the directory is reached. */
        if (unlinkat(dfd, e->d_name, 0) != 0 && rc == ZG_OK)
            rc = zg__fail(ZG_ERR_IO, "%s: cannot remove '%s/%s': %s", fn, shown, e->d_name, strerror(errno));
    }
    if (!rc && has_last && unlinkat(dfd, last, 0) != 0)
        rc = zg__fail(ZG_ERR_IO, "%s: cannot remove '%s/%s': %s", fn, shown, last, strerror(errno));
    closedir(d);
    if (rc) return rc;
    if (unlinkat(parent_fd, name, AT_REMOVEDIR) != 0)
        return zg__fail(ZG_ERR_IO, "%s: cannot remove '%s': %s", fn, shown, strerror(errno));
    return ZG_OK;
}

static const char *file_kind(mode_t m) {
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket" : "a device";
}

int zg__read_small(const char *fn, int at_fd, const char *name, const char *shown, char *buf, size_t cap,
                   size_t *len) {
    int fd = openat(at_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) return 0;
    if (fd < 0 && errno == ELOOP)
        return zg__fail(ZG_ERR_FORMAT, "%s: '%s' is a symbolic link (zgrad reads only the regular file it writes there)",
                        fn, shown);
    if (fd < 0) return zg__fail(ZG_ERR_IO, "%s: cannot open '%s': %s", fn, shown, strerror(errno));
    struct stat st;
    int rc = ZG_OK;
    size_t n = 0;
    if (fstat(fd, &st) != 0) {
        rc = zg__fail(ZG_ERR_IO, "%s: cannot stat '%s': %s", fn, shown, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        rc = zg__fail(ZG_ERR_FORMAT, "%s: '%s' is %s, not a regular file", fn, shown, file_kind(st.st_mode));
    } else {
        while (n < cap) {
            ssize_t k = read(fd, buf + n, cap - n);
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) {
                if (k < 0) rc = zg__fail(ZG_ERR_IO, "%s: cannot read '%s': %s", fn, shown, strerror(errno));
                break;
            }
            n += (size_t)k;
        }
        if (!rc && n >= cap)
            rc = zg__fail(ZG_ERR_FORMAT, "%s: '%s' is larger than %zu bytes, not a file zgrad wrote", fn, shown,
                          cap - 1);
    }
    close(fd);
    if (rc) return rc;
    buf[n] = '\0';
    *len = n;
    return 1;
}

int zg__file_crc(const char *fn, const char *path, uint32_t *crc, int64_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return zg__fail(ZG_ERR_IO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
    unsigned char buf[1 << 16];
    uLong c = crc32(0L, Z_NULL, 0);
    int64_t total = 0;
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) {
        c = crc32(c, buf, (uInt)k);
        total += (int64_t)k;
    }
    bool err = ferror(f) != 0;
    fclose(f);
    if (err) return zg__fail(ZG_ERR_IO, "%s: cannot read '%s'", fn, path);
    *crc = (uint32_t)c;
    *size = total;
    return ZG_OK;
}
