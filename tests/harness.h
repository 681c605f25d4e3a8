/* A minimal test harness. A test file defines cases with TEST(name) { ... }
 * and checks with CHECK / CHECK_NEAR / CHECK_OK / CHECK_ERR; harness.c
 * supplies main(), which runs every case (resetting the step arena after
 * each) and prints "RESULT <binary> passed=N failed=M" for scripts/run-tests. */
#ifndef ZG_TEST_HARNESS_H
#define ZG_TEST_HARNESS_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "zgrad.h"

typedef void (*zgt_fn)(void);
void zgt_register(const char *name, zgt_fn fn);
/* Records a failed check in the running case. */
void zgt_fail(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Number of failed checks in the running case so far. */
int zgt_case_failures(void);

#define TEST(name)                                                                                         \
    static void name(void);                                                                                \
    __attribute__((constructor)) static void zgt_reg_##name(void) { zgt_register(#name, name); }           \
    static void name(void)

#define CHECK(cond)                                                                                        \
    do {                                                                                                   \
        if (!(cond)) zgt_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                                     \
    } while (0)

/* |a - b| <= tol */
#define CHECK_NEAR(a, b, tol)                                                                              \
    do {                                                                                                   \
        double zgt_a = (double)(a), zgt_b = (double)(b), zgt_t = (double)(tol);                            \
        if (!(fabs(zgt_a - zgt_b) <= zgt_t))                                                               \
            zgt_fail(__FILE__, __LINE__, "%s = %.9g, expected %s = %.9g (tol %g)", #a, zgt_a, #b, zgt_b,   \
                     zgt_t);                                                                               \
    } while (0)

/* A call that must succeed (status == ZG_OK, or a non-NULL pointer). */
#define CHECK_OK(status)                                                                                   \
    do {                                                                                                   \
        int zgt_s = (status);                                                                              \
        if (zgt_s != 0) zgt_fail(__FILE__, __LINE__, "%s returned %d: %s", #status, zgt_s, zg_last_error()); \
    } while (0)
#define CHECK_PTR(ptr)                                                                                     \
    do {                                                                                                   \
        if (!(ptr)) zgt_fail(__FILE__, __LINE__, "%s is NULL: %s", #ptr, zg_last_error());                \
    } while (0)

/* A call that must fail: the status is negative (or the pointer NULL) and
 * zg_last_error() contains `substr`. */
#define CHECK_ERR(status, substr)                                                                          \
    do {                                                                                                   \
        zg_clear_error();                                                                                  \
        int zgt_s = (status);                                                                              \
        if (zgt_s >= 0) zgt_fail(__FILE__, __LINE__, "%s succeeded (%d), expected an error", #status, zgt_s); \
        else if (!strstr(zg_last_error(), (substr)))                                                       \
            zgt_fail(__FILE__, __LINE__, "%s: error \"%s\" does not mention \"%s\"", #status, zg_last_error(), \
                     (substr));                                                                            \
    } while (0)
#define CHECK_NULL_ERR(ptr_expr, substr)                                                                   \
    do {                                                                                                   \
        zg_clear_error();                                                                                  \
        const void *zgt_p = (const void *)(ptr_expr);                                                      \
        if (zgt_p) zgt_fail(__FILE__, __LINE__, "%s returned a value, expected NULL and an error", #ptr_expr); \
        else if (!strstr(zg_last_error(), (substr)))                                                       \
            zgt_fail(__FILE__, __LINE__, "%s: error \"%s\" does not mention \"%s\"", #ptr_expr,              \
                     zg_last_error(), (substr));                                                           \
    } while (0)

/* Element-wise |a - b| <= atol + rtol*|b| over float tensors of equal
 * numel; reports the first mismatch. */
#define CHECK_TENSOR_NEAR(a, b, atol, rtol) zgt_check_tensor_near(__FILE__, __LINE__, #a, a, b, atol, rtol)
void zgt_check_tensor_near(const char *file, int line, const char *what, const zg_tensor *a, const zg_tensor *b,
                           double atol, double rtol);
/* Compare with plain values. */
#define CHECK_VALUES(t, vals, n, tol) zgt_check_values(__FILE__, __LINE__, #t, t, vals, n, tol)
void zgt_check_values(const char *file, int line, const char *what, const zg_tensor *t, const float *vals, int n,
                      double tol);

/* Tensor helpers for tests. */
zg_tensor *zgt_from(const float *vals, const int64_t *shape, int ndim); /* persistent */
/* t made a leaf that requires grad (NULL passes through, to fail later). */
zg_tensor *zgt_param(zg_tensor *t);
/* zgt_from(vals, shape, ndim) as a leaf that requires grad. */
zg_tensor *zgt_param_from(const float *vals, const int64_t *shape, int ndim);
/* The same for a vector of n values. */
zg_tensor *zgt_param_vec(const float *vals, int64_t n);

/* The path of the running test binary (to run one of its tests in a
 * child process, under another environment); NULL if unknown. */
const char *zgt_self_exe(void);
/* Norm-wise relative error |a - b| / |b| (|a - b| if b is zero). */
double zgt_rel_err(const zg_tensor *a, const zg_tensor *b);

/* Finite-difference gradient check. f maps the inputs to one output (any
 * shape). The check projects the output onto fixed random weights w,
 * L(x) = sum_i w_i f(x)_i, evaluated in double from the float32 output,
 * and compares the analytic gradient dL/dx (backward with grad = w) with
 * the central difference (L(x + eps e_j) - L(x - eps e_j)) / (2 eps) for
 * every element j of every input that requires grad. Pass rule:
 * |analytic - numeric| <= atol + rtol*|numeric|. Returns true when all
 * elements pass; failures are reported as check failures.
 *
 * Why these tolerances (the library is float32 only): each output carries
 * a rounding error of about 6e-8 |f|, so the difference quotient carries
 * about 6e-8 |f| sqrt(n_out) / eps, i.e. ~1e-4 for eps = 1e-3 and outputs
 * of order one; the truncation error of the central difference is
 * eps^2 |f'''| / 6, ~1e-7. atol 1e-3 and rtol 1e-2 sit an order of
 * magnitude above both, and far below the error of a wrong formula (a
 * missing factor or term moves the gradient by O(1)). */
typedef zg_tensor *(*zgt_op_fn)(zg_tensor *const *inputs, void *ctx);
typedef struct {
    double eps;  /* default 1e-3 */
    double atol; /* default 1e-3 */
    double rtol; /* default 1e-2 */
    /* An input that gets no gradient (the output does not depend on it
     * through the graph: the first derivative of a linear op, with respect
     * to its operands) is checked as a zero gradient instead of failing. */
    bool allow_unused;
    /* When set, receives the largest |analytic - numeric| /
     * (atol + rtol |numeric|) seen: the share of the tolerance used. */
    double *worst;
} zgt_gradcheck_opts;
bool zgt_gradcheck_impl(const char *file, int line, const char *name, zgt_op_fn f, zg_tensor *const *inputs,
                        int n_inputs, void *ctx, const zgt_gradcheck_opts *opts);
#define GRADCHECK(name, f, inputs, n, ctx, opts) zgt_gradcheck_impl(__FILE__, __LINE__, name, f, inputs, n, ctx, opts)

/* Second-order gradient check (PyTorch's gradgradcheck; tests/gradgrad.c):
 * the first-order gradients of op with respect to inputs[0..n) that
 * require grad, computed by zg_autograd_grad_opts with create_graph for a
 * random grad_output v that requires grad, must equal those of the plain
 * backward (to float32 rounding: 1e-6) and pass GRADCHECK as a function
 * of the inputs and v (the same derived tolerances: the first derivative
 * is a float32 function like any op's output). Prints the share of the
 * tolerance used. */
#define GRADGRADCHECK(name, op, inputs, n, ctx) zgt_gradgradcheck_impl(__FILE__, __LINE__, name, op, inputs, n, ctx)
void zgt_gradgradcheck_impl(const char *file, int line, const char *name, zgt_op_fn op, zg_tensor *const *inputs, int n,
                            void *ctx);
/* A parameter (requires grad) of uniform values in [lo, hi]; with random
 * signs too (values away from zero: off relu's kink); zgt_free_all frees n. */
zg_tensor *zgt_param_uniform(const int64_t *shape, int nd, float lo, float hi);
zg_tensor *zgt_param_away_from_zero(const int64_t *shape, int nd, float lo, float hi);
void zgt_free_all(zg_tensor **t, int n);

/* The python of scripts/setup-pytools' environment (TensorBoard, ONNX,
 * onnxruntime), or NULL after failing the running case with what to run
 * (tests/pytools.c). zgt_pytools_run runs `python script args...` (args
 * NULL-terminated) from the repository root with its stdout and stderr
 * in out: the exit status, or -1 when it could not run. */
const char *zgt_pytools_python(void);
int zgt_pytools_run(const char *script, const char *const *args, char *out, size_t n);

/* Live PyTorch references (tests/reference.c). The directory is
 * $ZG_PARITY_DIR or build/parity-ref. zgt_reference_ready makes sure every
 * file in `files` (relative to it, each followed by `suffix`) exists and is newer than each of
 * `sources` (sources[0] is the script, the rest what it imports); if not it
 * runs `/usr/bin/python3 sources[0] DIR` once. On failure it fails the
 * running case with what to do (run scripts/setup): never a silent pass. */
/* A new empty directory under /tmp (one of 16 rotating names; the test
 * fails and NULL comes back when it cannot be made), and the removal of a
 * directory with everything under it; symlinks are removed, never followed
 * (tests/tmpdir.c). */
char *zgt_temp_dir(void);
void zgt_remove_dir(const char *dir);
/* A whole file, malloc'd and NUL-terminated, its length in *len (may be
 * NULL); NULL when it cannot be read. */
char *zgt_slurp(const char *path, size_t *len);

const char *zgt_reference_dir(void);
bool zgt_reference_ready(const char *const *sources, int n_sources, const char *const *files, int n_files,
                         const char *suffix);

/* A set of reference files one script makes, checked once per process:
 * the first zgt_refs_ready runs zgt_reference_ready; later calls report
 * the same outcome (a failure fails each case that needs the files, never
 * a silent pass). Declare it static with the fields below, state 0. */
typedef struct {
    const char *const *sources; /* the script, then what it imports */
    int n_sources;
    const char *const *files; /* in zgt_reference_dir(), each + suffix */
    int n_files;
    const char *suffix; /* NULL: ".safetensors" */
    int state; /* 0: unchecked, 1: ready, -1: failed */
} zgt_refset;
bool zgt_refs_ready(zgt_refset *r);
/* The file `name`.safetensors of a ready set, read; NULL (and a failed
 * case) if not. */
zg_safetensors *zgt_refs_open(zgt_refset *r, const char *name);
/* The tensor named by the format in st: NULL when missing (find), or NULL
 * and a failed case (get). */
zg_tensor *zgt_ref_find(const zg_safetensors *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
zg_tensor *zgt_ref_get(const zg_safetensors *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ours against a reference tensor: both present, the same shape, and
 * relative error (zgt_rel_err) <= tol; a failed case names `what`. The
 * error raises *worst (when not NULL). */
#define CHECK_REF(what, ours, ref, tol, worst) zgt_check_ref(__FILE__, __LINE__, what, ours, ref, tol, worst)
void zgt_check_ref(const char *file, int line, const char *what, const zg_tensor *ours, const zg_tensor *ref,
                   double tol, double *worst);
/* Runs run(st, case) for each case named in st's metadata "cases" (comma
 * separated); returns how many. */
int zgt_ref_cases(const zg_safetensors *st, void (*run)(const zg_safetensors *st, const char *c));

/* Running under ASan/UBSan (ZG_SANITIZED=1): long loops may shorten. */
bool zgt_sanitized(void);

/* ZGT_ASAN: this binary is built with AddressSanitizer. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ZGT_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define ZGT_ASAN 1
#endif

/* Runs fn(ctx) in a child process whose address space may grow by at most
 * extra_mib MiB (RLIMIT_AS over what the child starts with) and for at
 * most a minute: a reader that allocates for the sizes a file merely
 * claims fails there, or is stopped, instead of taking the machine's
 * memory. Returns fn's result, with the child's zg_last_error() in msg,
 * or INT_MIN when the child died (msg says how). Under AddressSanitizer,
 * which reserves terabytes of address space, fn runs in this process
 * without a limit. fn must not enter OpenMP (the child has no pool). */
int zgt_run_bounded(int (*fn)(void *), void *ctx, size_t extra_mib, char *msg, size_t n);

#endif
