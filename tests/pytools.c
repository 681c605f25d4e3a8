/* The Python tools that read zgrad's exported files (TensorBoard, ONNX):
 * the environment of scripts/setup-pytools (see harness.h). */
#include "harness.h"

#include <stdlib.h>
#include <sys/wait.h>

/* One lookup per process: the python's path, or "" when it is missing. */
static char python[1024];
static bool looked;

const char *zgt_pytools_python(void) {
    if (!looked) {
        looked = true;
        FILE *p = popen("scripts/setup-pytools --check 2>/dev/null", "r");
        if (p && fgets(python, sizeof python, p)) python[strcspn(python, "\n")] = '\0';
        else python[0] = '\0';
        if (p && pclose(p) != 0) python[0] = '\0';
    }
    if (!python[0]) {
        zgt_fail(__FILE__, __LINE__,
                 "TensorBoard, ONNX and onnxruntime for Python are not installed: run scripts/setup-pytools "
                 "(from the repository root; scripts/setup runs it)");
        return NULL;
    }
    return python;
}

int zgt_pytools_run(const char *script, const char *const *args, char *out, size_t n) {
    const char *py = zgt_pytools_python();
    if (out && n) out[0] = '\0';
    if (!py) return -1;
    char cmd[4096];
    int k = snprintf(cmd, sizeof cmd, "'%s' '%s'", py, script);
    for (int i = 0; args && args[i] && k > 0 && (size_t)k < sizeof cmd; i++) {
        if (strchr(args[i], '\'')) {
            zgt_fail(__FILE__, __LINE__, "an argument holds a quote: %s", args[i]);
            return -1;
        }
        k += snprintf(cmd + k, sizeof cmd - (size_t)k, " '%s'", args[i]);
    }
    if (k <= 0 || (size_t)k + 8 >= sizeof cmd) {
        zgt_fail(__FILE__, __LINE__, "command too long for %s", script);
        return -1;
    }
    snprintf(cmd + k, sizeof cmd - (size_t)k, " 2>&1");
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t len = 0;
    char buf[4096];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, p)) > 0)
        for (size_t i = 0; i < got && out && len + 1 < n; i++) out[len++] = buf[i];
    if (out && n) out[len] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
