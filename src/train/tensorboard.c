/* TensorBoard's view of a run: one event file in the run directory,
 * events.out.tfevents.<unix time>.<host>.zgrad (TensorBoard reads every
 * file whose name holds "tfevents"; the suffix marks the file as the
 * run's own), holding metrics.jsonl's numbers as scalars, one point per
 * epoch (per evaluation interval for a GPT) at the run's optimizer step
 * count: train_loss, test_loss, test_acc, lr, grad_norm (with
 * --clip-norm) and throughput (the epoch's samples, for a GPT tokens, per
 * second of the epoch). Non-finite values are left out.
 *
 * TensorBoard reads all event files of a directory as one run, so a second
 * file with the same points would show each of them twice. The rule: a
 * run has one file, and it holds exactly the checkpoint's history, as
 * metrics.jsonl does. It is written whenever metrics.jsonl is, under the
 * name it got when first written (found again by listing the directory,
 * so a resumed run keeps it). Its content derives from the history alone:
 * each point's wall_time is the file's time plus the training seconds up
 * to that point (TensorBoard's "relative" axis reads training time,
 * without the pause between a stop and its resume). So a file that holds
 * the start of what is to be written (the usual case: one epoch more) only
 * gets the new records appended, which a TensorBoard reading the file
 * live picks up; anything else (a record torn by a crash, a changed
 * history) is replaced atomically. */
#include "train_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PREFIX "events.out.tfevents."
#define SUFFIX ".zgrad"
#define NAME_CAP 256

static const char *const FN = "zg_train_run: TensorBoard event file";

static bool host_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.';
}

bool zg__tfevents_name(const char *name, size_t len) {
    const size_t p = strlen(PREFIX), s = strlen(SUFFIX);
    if (len <= p + s || len >= NAME_CAP || strncmp(name, PREFIX, p) || strncmp(name + len - s, SUFFIX, s))
        return false;
    size_t i = p;
    while (i < len && name[i] >= '0' && name[i] <= '9') i++;
    if (i == p || i > p + 18 || name[i] != '.' || i + 1 >= len - s) return false;
    for (size_t k = i + 1; k < len - s; k++)
        if (!host_char(name[k])) return false;
    return true;
}

/* The run's file in dir (the first by name, should there be several), or
 * a new name from the time and the host: 1 found, 0 new. */
static int file_name(const char *dir, char *name) {
    int found = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    struct stat st;
    while (d && (e = readdir(d)) != NULL) {
        if (!zg__tfevents_name(e->d_name, strlen(e->d_name)) || (found && strcmp(e->d_name, name) >= 0)) continue;
        char path[4400];
        if (zg__path_join(path, sizeof path, dir, e->d_name) && lstat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            snprintf(name, NAME_CAP, "%s", e->d_name);
            found = 1;
        }
    }
    if (d) closedir(d);
    if (found) return 1;
    char host[64] = "";
    if (gethostname(host, sizeof host) != 0) host[0] = '\0';
    host[sizeof host - 1] = '\0';
    for (char *c = host; *c; c++)
        if (!host_char(*c)) *c = '_';
    snprintf(name, NAME_CAP, PREFIX "%lld.%s" SUFFIX, (long long)time(NULL), host[0] ? host : "localhost");
    return 0;
}

static void scalar(zg__strbuf *b, double wall, int64_t step, const char *tag, double v) {
    if (isfinite(v)) zg__tfevent_scalar(b, wall, step, tag, (float)v);
}

/* The whole file for the history m[0..n), started at t0. */
static void encode(zg__strbuf *b, int64_t t0, const zg__epoch_metrics *m, int n) {
    double wall = (double)t0;
    int64_t step = 0;
    zg__tfevent_version(b, wall);
    for (int i = 0; i < n; i++) {
        if (isfinite(m[i].seconds) && m[i].seconds > 0) wall += m[i].seconds;
        step += m[i].steps;
        scalar(b, wall, step, "train_loss", m[i].train_loss);
        scalar(b, wall, step, "test_loss", m[i].test_loss);
        scalar(b, wall, step, m[i].r2 ? "test_r2" : "test_acc", m[i].test_acc); /* a regression: R^2 */
        scalar(b, wall, step, "lr", m[i].lr);
        scalar(b, wall, step, "grad_norm", m[i].grad_norm);
        if (m[i].samples >= 0 && m[i].seconds > 0) scalar(b, wall, step, "throughput", (double)m[i].samples / m[i].seconds);
    }
}

/* When the regular file at path holds want's first bytes, appends the
 * rest (*done; nothing when it holds all); else leaves it to be replaced. */
static int try_append(const char *path, const zg__strbuf *want, bool *done) {
    *done = false;
    int fd = open(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0) return ZG_OK;
    bool same = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size <= want->n;
    char buf[65536];
    for (size_t at = 0; same && at < (size_t)st.st_size;) {
        size_t k = (size_t)st.st_size - at < sizeof buf ? (size_t)st.st_size - at : sizeof buf;
        ssize_t got = pread(fd, buf, k, (off_t)at);
        same = got == (ssize_t)k && memcmp(buf, want->s + at, k) == 0;
        at += k;
    }
    int rc = ZG_OK;
    for (size_t at = (size_t)st.st_size; same && at < want->n && !rc;) {
        ssize_t put = pwrite(fd, want->s + at, want->n - at, (off_t)at);
        if (put <= 0) rc = zg__fail(ZG_ERR_IO, "%s: writing '%s' failed: %s", FN, path, strerror(errno));
        else at += (size_t)put;
    }
    if (same && !rc && fsync(fd) != 0)
        rc = zg__fail(ZG_ERR_IO, "%s: fsync of '%s' failed: %s", FN, path, strerror(errno));
    close(fd);
    *done = same && !rc;
    return rc;
}

int zg__write_tfevents(const char *dir, const zg__epoch_metrics *m, int n) {
    char name[NAME_CAP], path[4400];
    bool found = file_name(dir, name) == 1;
    const long long t0 = strtoll(name + strlen(PREFIX), NULL, 10);
    if (!zg__path_join(path, sizeof path, dir, name)) return zg__fail(ZG_ERR_ARG, "%s: path too long: '%s'", FN, dir);
    zg__strbuf b = {0};
    encode(&b, t0, m, n);
    if (b.failed) {
        zg__sb_free(&b);
        return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", FN);
    }
    bool done = false;
    int rc = found ? try_append(path, &b, &done) : ZG_OK;
    if (!rc && !done) rc = zg__write_atomic(FN, path, b.s, b.n);
    zg__sb_free(&b);
    return rc;
}
