/* Test runner and shared checks (see harness.h). */
#include "harness.h"

#include <unistd.h>

#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>

#define ZGT_MAX_CASES 1024

static struct {
    const char *name;
    zgt_fn fn;
} cases[ZGT_MAX_CASES];
static int n_cases;
static int case_failures;
static const char *case_name;

void zgt_register(const char *name, zgt_fn fn) {
    if (n_cases == ZGT_MAX_CASES) {
        fprintf(stderr, "harness: too many test cases\n");
        exit(2);
    }
    cases[n_cases].name = name;
    cases[n_cases].fn = fn;
    n_cases++;
}

void zgt_fail(const char *file, int line, const char *fmt, ...) {
    case_failures++;
    if (case_failures > 20) return; /* one broken loop should not flood the log */
    fprintf(stderr, "  FAIL %s (%s:%d): ", case_name, file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int zgt_case_failures(void) { return case_failures; }

bool zgt_sanitized(void) {
    const char *s = getenv("ZG_SANITIZED");
    return s && *s && strcmp(s, "0") != 0;
}

void zgt_check_tensor_near(const char *file, int line, const char *what, const zg_tensor *a, const zg_tensor *b,
                           double atol, double rtol) {
    if (!a || !b) {
        zgt_fail(file, line, "%s: NULL tensor (%s)", what, zg_last_error());
        return;
    }
    if (zg_tensor_numel(a) != zg_tensor_numel(b)) {
        zgt_fail(file, line, "%s: %lld elements, expected %lld", what, (long long)zg_tensor_numel(a),
                 (long long)zg_tensor_numel(b));
        return;
    }
    for (int64_t i = 0; i < zg_tensor_numel(a); i++) {
        double x = zg_tensor_get(a, i), y = zg_tensor_get(b, i);
        if (!(fabs(x - y) <= atol + rtol * fabs(y)) && !(isinf(x) && x == y)) {
            zgt_fail(file, line, "%s[%lld] = %.9g, expected %.9g", what, (long long)i, x, y);
            return;
        }
    }
}

void zgt_check_values(const char *file, int line, const char *what, const zg_tensor *t, const float *vals, int n,
                      double tol) {
    if (!t) {
        zgt_fail(file, line, "%s is NULL (%s)", what, zg_last_error());
        return;
    }
    if (zg_tensor_numel(t) != n) {
        zgt_fail(file, line, "%s: %lld elements, expected %d", what, (long long)zg_tensor_numel(t), n);
        return;
    }
    for (int i = 0; i < n; i++) {
        double x = zg_tensor_get(t, i);
        if (!(fabs(x - vals[i]) <= tol) && !(isinf(x) && x == vals[i])) {
            zgt_fail(file, line, "%s[%d] = %.9g, expected %.9g", what, i, x, (double)vals[i]);
            return;
        }
    }
}

zg_tensor *zgt_from(const float *vals, const int64_t *shape, int ndim) {
    return zg_tensor_from_data(ZG_FLOAT32, vals, shape, ndim);
}

zg_tensor *zgt_param(zg_tensor *t) {
    if (t) zg_tensor_set_requires_grad(t, true);
    return t;
}

zg_tensor *zgt_param_from(const float *vals, const int64_t *shape, int ndim) {
    return zgt_param(zgt_from(vals, shape, ndim));
}

zg_tensor *zgt_param_vec(const float *vals, int64_t n) { return zgt_param_from(vals, (int64_t[]){n}, 1); }

double zgt_rel_err(const zg_tensor *a, const zg_tensor *b) {
    if (!a || !b || zg_tensor_numel(a) != zg_tensor_numel(b)) return INFINITY;
    double num = 0, den = 0;
    for (int64_t i = 0; i < zg_tensor_numel(a); i++) {
        double x = zg_tensor_get(a, i), y = zg_tensor_get(b, i);
        num += (x - y) * (x - y);
        den += y * y;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* L(x) = sum_i w_i f(x)_i in double, or NAN if f failed. */
static double project(zgt_op_fn f, zg_tensor *const *inputs, void *ctx, const double *w, int64_t n_out) {
    size_t mark = zg_arena_mark();
    zg_tensor *y = f(inputs, ctx);
    double L = NAN;
    if (y && zg_tensor_numel(y) == n_out) {
        L = 0;
        for (int64_t i = 0; i < n_out; i++) L += w[i] * zg_tensor_get(y, i);
    }
    zg_arena_release(mark);
    return L;
}

bool zgt_gradcheck_impl(const char *file, int line, const char *name, zgt_op_fn f, zg_tensor *const *inputs,
                        int n_inputs, void *ctx, const zgt_gradcheck_opts *opts) {
    double eps = opts && opts->eps > 0 ? opts->eps : 1e-3;
    double atol = opts && opts->atol > 0 ? opts->atol : 1e-3;
    double rtol = opts && opts->rtol > 0 ? opts->rtol : 1e-2;
    int before = case_failures;

    for (int i = 0; i < n_inputs; i++) zg_tensor_zero_grad(inputs[i], true);
    zg_tensor *y = f(inputs, ctx);
    if (!y) {
        zgt_fail(file, line, "gradcheck %s: forward failed: %s", name, zg_last_error());
        return false;
    }
    int64_t n_out = zg_tensor_numel(y);
    /* Fixed pseudo-random weights in [-1, 1] (a tiny LCG: independent of
     * the library's generator, so the check does not disturb it). */
    double *w = malloc((size_t)(n_out ? n_out : 1) * sizeof *w);
    float *wf = malloc((size_t)(n_out ? n_out : 1) * sizeof *wf);
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int64_t i = 0; i < n_out; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        wf[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
        w[i] = wf[i];
    }
    zg_tensor *wt = zg_tensor_from_data(ZG_FLOAT32, wf, zg_tensor_shape(y), zg_tensor_ndim(y));
    int rc = zg_backward(y, &(zg_backward_opts){.grad = wt});
    if (rc) zgt_fail(file, line, "gradcheck %s: backward failed: %s", name, zg_last_error());

    for (int i = 0; i < n_inputs && !rc; i++) {
        zg_tensor *x = inputs[i];
        if (!zg_tensor_requires_grad(x)) continue;
        zg_tensor *g = zg_tensor_grad(x);
        if (!g && !(opts && opts->allow_unused)) {
            zgt_fail(file, line, "gradcheck %s: input %d got no gradient", name, i);
            continue;
        }
        float *xd = zg_tensor_data(x);
        bool prev = zg_set_grad_enabled(false);
        for (int64_t j = 0; j < zg_tensor_numel(x); j++) {
            float orig = xd[j];
            xd[j] = orig + (float)eps;
            double hi_x = xd[j];
            double Lp = project(f, inputs, ctx, w, n_out);
            xd[j] = orig - (float)eps;
            double lo_x = xd[j];
            double Lm = project(f, inputs, ctx, w, n_out);
            xd[j] = orig;
            /* Divide by the step actually taken in float32. */
            double numeric = (Lp - Lm) / (hi_x - lo_x);
            double analytic = g ? zg_tensor_get(g, j) : 0.0;
            const double share = fabs(analytic - numeric) / (atol + rtol * fabs(numeric));
            if (opts && opts->worst && !(share <= *opts->worst)) *opts->worst = share;
            if (!(fabs(analytic - numeric) <= atol + rtol * fabs(numeric))) {
                zgt_fail(file, line, "gradcheck %s: input %d element %lld: analytic %.7g, numeric %.7g", name, i,
                         (long long)j, analytic, numeric);
                break;
            }
        }
        zg_set_grad_enabled(prev);
    }
    zg_tensor_free(wt);
    free(w);
    free(wf);
    return case_failures == before;
}

int main(int argc, char **argv) {
    const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    const char *only = argc > 1 ? argv[1] : NULL;
    int passed = 0, failed = 0;
    for (int i = 0; i < n_cases; i++) {
        if (only && !strstr(cases[i].name, only)) continue;
        case_name = cases[i].name;
        case_failures = 0;
        zg_clear_error();
        zg_manual_seed(0);
        cases[i].fn();
        zg_set_grad_enabled(true);
        zg_arena_reset();
        if (case_failures) {
            failed++;
            fprintf(stderr, "not ok %s\n", case_name);
        } else {
            passed++;
            printf("ok %s\n", case_name);
        }
    }
    zg_arena_free_all();
    printf("RESULT %s passed=%d failed=%d\n", prog, passed, failed);
    return failed ? 1 : 0;
}

const char *zgt_self_exe(void) {
    static char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = 0;
    return exe;
}

#ifndef ZGT_ASAN
/* The process's address space in bytes (VmSize), 0 if unknown. */
static size_t vm_size(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %zu kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib * 1024;
}

/* The child's side: fn under the limit, its result and error text written
 * to fd. */
static void bounded_child(int fd, int (*fn)(void *), void *ctx, size_t extra_mib) {
    alarm(60);
    size_t now = vm_size();
    struct rlimit lim = {.rlim_cur = now + (extra_mib << 20), .rlim_max = now + (extra_mib << 20)};
    int rc = INT_MIN;
    if (now && setrlimit(RLIMIT_AS, &lim) == 0) rc = fn(ctx);
    else zg_clear_error();
    char buf[1100];
    int k = snprintf(buf, sizeof buf, "%d %s", rc, now ? zg_last_error() : "cannot read VmSize");
    if (write(fd, buf, k > 0 && (size_t)k < sizeof buf ? (size_t)k : sizeof buf - 1) < 0) _exit(2);
    _exit(0);
}
#endif

int zgt_run_bounded(int (*fn)(void *), void *ctx, size_t extra_mib, char *msg, size_t n) {
#ifdef ZGT_ASAN
    (void)extra_mib;
    int r = fn(ctx);
    snprintf(msg, n, "%s", zg_last_error());
    return r;
#else
    int fds[2];
    snprintf(msg, n, "cannot start the child");
    if (pipe(fds) != 0) return INT_MIN;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        bounded_child(fds[1], fn, ctx, extra_mib);
    }
    close(fds[1]);
    char buf[1100];
    size_t got = 0;
    ssize_t r;
    while (pid > 0 && got < sizeof buf - 1 && (r = read(fds[0], buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)r;
    close(fds[0]);
    buf[got] = '\0';
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return INT_MIN;
    int rc, used = 0;
    if (!WIFEXITED(status) || sscanf(buf, "%d %n", &rc, &used) != 1) {
        snprintf(msg, n, "the child %s %d", WIFSIGNALED(status) ? "was killed by signal" : "exited with",
                 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        return INT_MIN;
    }
    snprintf(msg, n, "%s", buf + used);
    return rc;
#endif
}
