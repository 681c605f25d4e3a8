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
    size_t n = strlen(path) + 32;
    af->tmp = zg__malloc(n);
    if (!af->tmp) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    snprintf(af->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp, "wb");
    if (!af->f) {
        int rc = zg__fail(ZG_ERR_IO, "%s: cannot create '%s': %s", fn, af->tmp, strerror(errno));
        free(af->tmp);
        af->tmp = NULL;
        return rc;
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
    free(af->tmp);
    af->tmp = NULL;
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

int zg__remove_dir(const char *fn, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return zg__fail(ZG_ERR_IO, "%s: cannot open directory '%s': %s", fn, dir, strerror(errno));
    struct dirent *e;
    char p[4400];
    int rc = ZG_OK;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        zg__path_join(p, sizeof p, dir, e->d_name);
        if (unlink(p) != 0 && rc == ZG_OK)
            rc = zg__fail(ZG_ERR_IO, "%s: cannot remove '%s': %s", fn, p, strerror(errno));
    }
    closedir(d);
    if (rc) return rc;
    if (rmdir(dir) != 0) return zg__fail(ZG_ERR_IO, "%s: cannot remove '%s': %s", fn, dir, strerror(errno));
    return ZG_OK;
}

char *zg__read_file(const char *fn, const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return zg__fail_null("%s: cannot open '%s': %s", fn, path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = zg__malloc(cap);
    bool oom = !buf;
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = zg__realloc(buf, cap * 2);
            if ((oom = !nb)) break;
            buf = nb;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n - 1, f);
        n += k;
        if (k == 0) break;
    }
    bool err = ferror(f) != 0;
    fclose(f);
    if (oom || err) {
        free(buf);
        return zg__fail_null("%s: cannot read '%s'%s", fn, path, oom ? ": out of memory" : "");
    }
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
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
