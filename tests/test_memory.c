/* The memory model: a training loop that resets the step arena each step
 * reaches a steady state after its first step: no malloc per step, flat
 * resident memory over 10,000 steps, nothing leaked at the end (the
 * sanitizer run checks leaks). */
#include "harness.h"

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

#ifndef ZGT_ASAN
/* Count allocations by interposing glibc's allocator in this binary. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
static volatile long n_allocs;
void *malloc(size_t n) {
    n_allocs++;
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    n_allocs++;
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    n_allocs++;
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t al, size_t n) {
    n_allocs++;
    return __libc_memalign(al, n);
}
int posix_memalign(void **p, size_t al, size_t n) {
    n_allocs++;
    *p = __libc_memalign(al, n);
    return *p ? 0 : 12;
}
#define ALLOC_COUNT() (n_allocs)

/* Count OpenMP parallel regions the same way: libgomp's entry point for
 * `#pragma omp parallel` (ours and OpenBLAS's), forwarded to libgomp. */
#include <dlfcn.h>
static volatile long n_regions;
void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags) {
    static void (*real)(void (*)(void *), void *, unsigned, unsigned);
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "GOMP_parallel");
    n_regions++;
    real(fn, data, num_threads, flags);
}
#define REGION_COUNT() (n_regions)
#else
#define ALLOC_COUNT() (0L)
#define REGION_COUNT() (0L)
#endif

/* Anonymous resident memory (heap, arena, stacks) in KiB. File-backed pages
 * are left out: code pages of libm and friends are mapped in lazily when a
 * rarely taken branch first runs, which says nothing about our memory. */
static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "RssAnon: %ld kB", &kib) == 1) break;
    fclose(f);
    return kib;
}

typedef struct {
    zg_module *model;
    zg_optim *opt;
    zg_tensor *x, *y;
} mlp_run;

static void mlp_setup(mlp_run *r, zg_optim_kind kind) {
    zg_manual_seed(0);
    zg_module *layers[] = {zg_nn_linear(32, 64, true), zg_nn_relu(), zg_nn_linear(64, 64, true), zg_nn_tanh(),
                           zg_nn_linear(64, 10, true)};
    r->model = zg_nn_sequential(layers, 5);
    zg_tensor *params[8];
    int n = zg_module_params(r->model, params, 8);
    r->opt = zg_optim_new(kind, params, n, NULL);
    int64_t xs[2] = {32, 32}, ys[1] = {32};
    r->x = zg_randn(xs, 2);
    r->y = zg_tensor_new(ZG_INT64, ys, 1);
    for (int i = 0; i < 32; i++) zg_tensor_data_i64(r->y)[i] = i % 10;
}

static bool mlp_step(mlp_run *r) {
    zg_optim_zero_grad(r->opt, true);
    zg_tensor *loss = zg_cross_entropy(zg_module_forward(r->model, r->x), r->y, NULL);
    bool ok = loss && zg_backward(loss, NULL) == ZG_OK && zg_optim_step(r->opt) == ZG_OK;
    zg_arena_reset();
    return ok;
}

static void mlp_free(mlp_run *r) {
    zg_optim_free(r->opt);
    zg_module_free(r->model);
    zg_tensor_free(r->x);
    zg_tensor_free(r->y);
}

TEST(no_malloc_in_steady_state_steps) {
    zg_optim_kind kinds[] = {ZG_SGD, ZG_ADAM, ZG_ADAMW, ZG_RMSPROP, ZG_ADAGRAD};
    for (int k = 0; k < 5; k++) {
        mlp_run r;
        mlp_setup(&r, kinds[k]);
        CHECK(r.model && r.opt);
        if (!r.model || !r.opt) return;
        for (int i = 0; i < 3; i++) CHECK(mlp_step(&r));
        long before = ALLOC_COUNT();
        for (int i = 0; i < 100; i++) CHECK(mlp_step(&r));
        long after = ALLOC_COUNT();
        if (after != before) zgt_fail(__FILE__, __LINE__, "optimizer %d: %ld mallocs in 100 steady steps", k,
                                      after - before);
        mlp_free(&r);
    }
}

/* A backward holds few gradients at once: once a tensor's node has run,
 * the gradient it consumed is given back and the next gradients of its
 * size take it (autograd/engine.c). A chain of L Linear-tanh layers of
 * width W at batch B, plain and with a residual around each layer (whose
 * gradient passes through to two tensors), keeps 2L activations of B x W
 * floats for its backward (3L with the residual sums). The gradients
 * alive at any moment are the residual stream's and the branch's: a few
 * buffers of that size. The backward may grow the arena by 8 of them (and
 * the headers of its tensors); with every gradient kept it grew by 52 to
 * 174 (the weights' gradients of steps 2 and 3, added into .grad, too).
 * The gradients are the same either way (the parity tests). */
TEST(backward_reuses_the_gradients_it_consumed) {
    enum { L = 24, W = 128, B = 32 };
    const size_t buf = (size_t)B * W * sizeof(float);
    zg_manual_seed(0);
    zg_module *layers[L];
    for (int i = 0; i < L; i++) layers[i] = zg_nn_linear(W, W, true);
    int64_t xs[2] = {B, W};
    zg_tensor *x = zg_randn(xs, 2);
    for (int residual = 0; residual < 2; residual++)
        for (int step = 0; step < 3; step++) {
            zg_tensor *h = x;
            for (int i = 0; i < L; i++) {
                zg_tensor *f = zg_tanh(zg_module_forward(layers[i], h));
                h = residual ? zg_add(h, f) : f;
            }
            zg_tensor *loss = zg_mean(zg_mul(h, h));
            const size_t forward = zg_arena_bytes_used();
            CHECK(loss && zg_backward(loss, NULL) == ZG_OK);
            const size_t grown = zg_arena_bytes_used() - forward;
            CHECK(forward >= (size_t)(2 * L) * buf);
            if (grown > 8 * buf + (size_t)L * 4096)
                zgt_fail(__FILE__, __LINE__, "%s chain, step %d: the backward grew the arena by %zu KiB (%.1f buffers "
                         "of %zu KiB; the forward used %zu KiB)", residual ? "residual" : "plain", step,
                         grown / 1024, (double)grown / (double)buf, buf / 1024, forward / 1024);
            zg_arena_reset();
        }
    for (int i = 0; i < L; i++) zg_module_free(layers[i]);
    zg_tensor_free(x);
}

/* A step of the MLP 784-32-10 at batch 32 on 2 threads: its GEMMs (up to
 * 784 x 32 x 32) are too small to split across our threads and large
 * enough that OpenBLAS would thread them; they run serially without the
 * fork and join of a parallel region (which cost the step 0.04 -> 0.11 ms
 * with passive OpenMP waits), and nothing else in the step opens one. */
TEST(small_mlp_step_opens_no_parallel_region) {
    const int threads = omp_get_max_threads();
    CHECK_OK(zg_set_num_threads(2));
    zg_manual_seed(0);
    zg_module *layers[] = {zg_nn_flatten(), zg_nn_linear(784, 32, true), zg_nn_relu(), zg_nn_linear(32, 10, true)};
    mlp_run r = {.model = zg_nn_sequential(layers, 4)};
    zg_tensor *params[8];
    int n = zg_module_params(r.model, params, 8);
    r.opt = zg_optim_new(ZG_SGD, params, n, NULL);
    int64_t xs[4] = {32, 1, 28, 28}, ys[1] = {32};
    r.x = zg_randn(xs, 4);
    r.y = zg_tensor_new(ZG_INT64, ys, 1);
    for (int i = 0; i < 32; i++) zg_tensor_data_i64(r.y)[i] = i % 10;
    CHECK(r.model && r.opt && r.x && r.y);
    if (r.model && r.opt && r.x && r.y) {
        CHECK(mlp_step(&r));
        const long before = REGION_COUNT();
        for (int i = 0; i < 10; i++) CHECK(mlp_step(&r));
        if (REGION_COUNT() != before)
            zgt_fail(__FILE__, __LINE__, "%ld parallel regions in 10 steps", REGION_COUNT() - before);
        /* The calling thread's OpenMP setting is left as it was. */
        CHECK(omp_get_max_threads() == 2);
    }
    mlp_free(&r);
    CHECK_OK(zg_set_num_threads(threads));
}

TEST(resident_memory_is_flat_over_10000_steps) {
    mlp_run r;
    mlp_setup(&r, ZG_ADAM);
    CHECK(r.model && r.opt);
    if (!r.model || !r.opt) return;
    /* Under the sanitizers the allocator's quarantine makes RSS drift, so
     * there the loop is shorter and the check is on the arena alone. */
    int steps = zgt_sanitized() ? 1000 : 10000;
    long rss100 = 0;
    size_t arena100 = 0;
    bool all_ok = true;
    for (int i = 1; i <= steps; i++) {
        all_ok &= mlp_step(&r);
        if (i == 100) {
            rss100 = rss_kib();
            arena100 = zg_arena_bytes_reserved();
        }
    }
    long rss_end = rss_kib();
    CHECK(all_ok);
    CHECK(zg_arena_bytes_reserved() == arena100);
    printf("memory: anonymous RSS after step 100 = %ld KiB, after step %d = %ld KiB; arena %zu bytes reserved\n", rss100,
           steps, rss_end, arena100);
    /* Flat, not byte-exact: a thread's stack or the allocator may touch one
     * more page once (seen on AMD Zen 3: +4 KiB in about half the runs),
     * which is no growth. Anything that grows per step is far larger: the
     * smallest leak, one 16-byte malloc chunk per step, adds 155 KiB over
     * these 9900 steps, so two pages still catch it 19 times over. */
    if (!zgt_sanitized() && !(rss_end - rss100 <= 8))
        zgt_fail(__FILE__, __LINE__, "anonymous RSS grew by %ld KiB from step 100 to step %d", rss_end - rss100,
                 steps);
    mlp_free(&r);
}

TEST(persistent_objects_are_freed) {
    /* Built and torn down repeatedly: LeakSanitizer (sanitized run) and the
     * allocation balance of the model, optimizer and tensors. */
    for (int i = 0; i < 20; i++) {
        mlp_run r;
        mlp_setup(&r, ZG_SGD);
        CHECK(mlp_step(&r));
        mlp_free(&r);
    }
    long rss_a = rss_kib();
    for (int i = 0; i < 200; i++) {
        mlp_run r;
        mlp_setup(&r, ZG_ADAM);
        CHECK(mlp_step(&r));
        mlp_free(&r);
    }
    long rss_b = rss_kib();
    /* 200 leaked models would be > 200 * 30 KiB. */
    if (!zgt_sanitized()) CHECK(rss_b - rss_a < 1024);
}
