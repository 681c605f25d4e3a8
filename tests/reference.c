/* Live PyTorch references for the parity tests (see harness.h). */
#include "harness.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define PYTHON "/usr/bin/python3"

const char *zgt_reference_dir(void) {
    const char *d = getenv("ZG_PARITY_DIR");
    return d && *d ? d : "build/parity-ref";
}

static bool newer(const struct stat *a, const struct stat *b) {
    if (a->st_mtim.tv_sec != b->st_mtim.tv_sec) return a->st_mtim.tv_sec > b->st_mtim.tv_sec;
    return a->st_mtim.tv_nsec >= b->st_mtim.tv_nsec;
}

bool zgt_reference_ready(const char *const *sources, int n_sources, const char *const *files, int n_files,
                         const char *suffix) {
    const char *script = sources[0];
    const char *dir = zgt_reference_dir();
    bool stale = false;
    for (int s = 0; s < n_sources; s++) {
        struct stat src;
        if (stat(sources[s], &src) != 0) {
            zgt_fail(__FILE__, __LINE__, "%s not found: run the tests from the repository root", sources[s]);
            return false;
        }
        for (int i = 0; i < n_files && !stale; i++) {
            char path[512];
            struct stat f;
            snprintf(path, sizeof path, "%s/%s%s", dir, files[i], suffix);
            stale = stat(path, &f) != 0 || !newer(&f, &src);
        }
    }
    if (!stale) return true;
    if (strchr(dir, '\'')) {
        zgt_fail(__FILE__, __LINE__, "ZG_PARITY_DIR must not contain a quote: %s", dir);
        return false;
    }
    if (access(PYTHON, X_OK) != 0 || system(PYTHON " -c 'import torch, numpy' >/dev/null 2>&1") != 0) {
        zgt_fail(__FILE__, __LINE__,
                 "the parity tests need Python 3 with PyTorch and NumPy (%s, python3-torch, python3-numpy): "
                 "run scripts/setup",
                 PYTHON);
        return false;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s '%s'", PYTHON, script, dir);
    printf("parity: making the PyTorch reference: %s\n", cmd);
    fflush(stdout);
    if (system(cmd) != 0) {
        zgt_fail(__FILE__, __LINE__, "`%s` failed (is PyTorch installed? run scripts/setup)", cmd);
        return false;
    }
    for (int i = 0; i < n_files; i++) {
        char path[512];
        struct stat f;
        snprintf(path, sizeof path, "%s/%s%s", dir, files[i], suffix);
        if (stat(path, &f) != 0) {
            zgt_fail(__FILE__, __LINE__, "%s did not write %s", script, path);
            return false;
        }
    }
    return true;
}
