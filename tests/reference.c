/* Live PyTorch references for the parity tests (see harness.h). */
#include "harness.h"

#include <stdarg.h>

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define PYTHON "/usr/bin/python3"
#define TORCH2_SUFFIX "_torch2.py"

/* The python a script runs under: PyTorch 2.x's (scripts/setup-torch2)
 * for the scripts named *_torch2.py, which check what 2.x does
 * differently from Debian's 1.13; "" when it is missing. */
static const char *python_for(const char *script) {
    static char torch2[1024];
    static bool looked;
    size_t n = strlen(script), k = strlen(TORCH2_SUFFIX);
    if (n < k || strcmp(script + n - k, TORCH2_SUFFIX) != 0) return PYTHON;
    if (!looked) {
        looked = true;
        FILE *p = popen("scripts/setup-torch2 --check 2>/dev/null", "r");
        if (p && fgets(torch2, sizeof torch2, p)) torch2[strcspn(torch2, "\n")] = '\0';
        if (p && pclose(p) != 0) torch2[0] = '\0';
    }
    return torch2;
}

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
    const char *python = python_for(script);
    if (!*python) {
        zgt_fail(__FILE__, __LINE__, "%s needs PyTorch 2.x: run scripts/setup-torch2 (scripts/setup runs it)", script);
        return false;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import torch, numpy' >/dev/null 2>&1", python);
    if (access(python, X_OK) != 0 || strchr(python, '\'') || system(cmd) != 0) {
        zgt_fail(__FILE__, __LINE__,
                 "the parity tests need Python 3 with PyTorch and NumPy (%s, python3-torch, python3-numpy): "
                 "run scripts/setup",
                 python);
        return false;
    }
    snprintf(cmd, sizeof cmd, "'%s' %s '%s'", python, script, dir);
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

bool zgt_refs_ready(zgt_refset *r) {
    if (!r->state) {
        const char *suffix = r->suffix ? r->suffix : ".safetensors";
        r->state = zgt_reference_ready(r->sources, r->n_sources, r->files, r->n_files, suffix) ? 1 : -1;
    } else if (r->state < 0) {
        zgt_fail(__FILE__, __LINE__, "the PyTorch reference files of %s are not available (see above)",
                 r->sources[0]);
    }
    return r->state > 0;
}

zg_safetensors *zgt_refs_open(zgt_refset *r, const char *name) {
    if (!zgt_refs_ready(r)) return NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/%s.safetensors", zgt_reference_dir(), name);
    zg_safetensors *st = zg_safetensors_read(path);
    if (!st) zgt_fail(__FILE__, __LINE__, "reading %s: %s", path, zg_last_error());
    return st;
}

static zg_tensor *ref_vget(const zg_safetensors *st, bool need, const char *fmt, va_list ap) {
    char name[256];
    vsnprintf(name, sizeof name, fmt, ap);
    zg_tensor *t = zg_safetensors_get(st, name);
    if (!t && need) zgt_fail(__FILE__, __LINE__, "reference tensor %s missing", name);
    return t;
}

zg_tensor *zgt_ref_find(const zg_safetensors *st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    zg_tensor *t = ref_vget(st, false, fmt, ap);
    va_end(ap);
    return t;
}

zg_tensor *zgt_ref_get(const zg_safetensors *st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    zg_tensor *t = ref_vget(st, true, fmt, ap);
    va_end(ap);
    return t;
}

void zgt_check_ref(const char *file, int line, const char *what, const zg_tensor *ours, const zg_tensor *ref,
                   double tol, double *worst) {
    if (!ours || !ref) {
        zgt_fail(file, line, "%s: %s is missing (%s)", what, ours ? "the reference" : "our tensor", zg_last_error());
        return;
    }
    bool shape_ok = zg_tensor_ndim(ours) == zg_tensor_ndim(ref);
    for (int d = 0; shape_ok && d < zg_tensor_ndim(ours); d++)
        shape_ok = zg_tensor_size(ours, d) == zg_tensor_size(ref, d);
    if (!shape_ok) {
        zgt_fail(file, line, "%s: shapes differ", what);
        return;
    }
    double e = zgt_rel_err(ours, ref);
    if (worst && e > *worst) *worst = e;
    if (!(e <= tol)) zgt_fail(file, line, "%s: relative error %.3g > %g", what, e, tol);
}

int zgt_ref_cases(const zg_safetensors *st, void (*run)(const zg_safetensors *st, const char *c)) {
    const char *list = zg_safetensors_metadata(st, "cases");
    if (!list) {
        zgt_fail(__FILE__, __LINE__, "the reference file lists no cases");
        return 0;
    }
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", list);
    int n = 0;
    char *save = NULL;
    for (char *c = strtok_r(buf, ",", &save); c; c = strtok_r(NULL, ",", &save), n++) run(st, c);
    return n;
}
