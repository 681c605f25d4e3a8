/* zgrad side of `make bench`: one workload, timed step by step.
 *
 *     zgrad_bench WORKLOAD THREADS STEPS WARMUP [DATA_DIR]
 *
 * Loads the first (WARMUP + STEPS) * batch Fashion-MNIST training images
 * in order (no shuffle, the training normalisation), builds the model with
 * a fixed seed and runs the canonical loop (zero_grad, forward, loss,
 * backward, step, arena reset). Prints one JSON line: every timed step's
 * milliseconds, their median, the peak resident memory (ru_maxrss) and the
 * malloc/calloc/realloc calls per timed step, and a hash of the trained
 * weights (FNV-1a over every parameter's bytes, in module order: a change
 * meant to keep float32 results bit-identical keeps this hash).
 * bench/torch_bench.py prints the same line for PyTorch.
 *
 * The GPT workloads read a text corpus instead (DATA_DIR is then the
 * corpus file; default: scripts/setup-corpus's shakespeare): random
 * windows of block_size + 1 characters, nanoGPT's loop (AdamW with weight
 * decay on tensors of dim >= 2, clip_grad_norm 1.0). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "zgrad.h"

/* Allocation counter: glibc's allocator interposed in this binary (as
 * tests/test_memory.c does); OpenMP and OpenBLAS threads allocate too,
 * hence the atomic increment. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
static long n_allocs;
static void count_alloc(void) { __atomic_fetch_add(&n_allocs, 1, __ATOMIC_RELAXED); }
void *malloc(size_t n) {
    count_alloc();
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    count_alloc();
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    count_alloc();
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t al, size_t n) {
    count_alloc();
    return __libc_memalign(al, n);
}
int posix_memalign(void **p, size_t al, size_t n) {
    count_alloc();
    *p = __libc_memalign(al, n);
    return *p ? 0 : 12;
}
static long alloc_count(void) { return __atomic_load_n(&n_allocs, __ATOMIC_RELAXED); }

typedef struct {
    const char *name;
    int model;          /* 0: MLP 784-32-10, 1: MLP 784-256-128-10, 2: the default CNN,
                           3: MLP of 40 Linear layers (80 parameter tensors, 784-64x39-10),
                           4: GPT 4 layers, 4 heads, 128 embd, block 64 (nanoGPT's CPU recipe),
                           5: GPT 6 layers, 6 heads, 384 embd, block 256 */
    int64_t batch;
    zg_optim_kind optim;
    double lr;
    bool bf16;          /* the forward under bf16 autocast */
} workload;

static const workload WORKLOADS[] = {
    {"mlp32", 0, 32, ZG_SGD, 0.01, false},
    {"mlp_adam64", 1, 64, ZG_ADAM, 1e-3, false},
    {"mlp_sgd256", 1, 256, ZG_SGD, 0.01, false},
    {"cnn64", 2, 64, ZG_ADAM, 1e-3, false},
    {"mlp_bf16_256", 1, 256, ZG_SGD, 0.01, true},
    {"cnn_bf16_64", 2, 64, ZG_ADAM, 1e-3, true},
    {"mlp80", 3, 32, ZG_SGD, 0.01, false}, /* the sanitizer's cost: run with ZG_SANITIZE=off and warn */
    {"gpt_small", 4, 12, ZG_ADAMW, 1e-3, false},
    {"gpt_small_bf16", 4, 12, ZG_ADAMW, 1e-3, true},
    {"gpt_large", 5, 8, ZG_ADAMW, 1e-3, false},
};

/* ---- the GPT workloads ------------------------------------------------------ */

static zg_module *build_gpt(int kind, int64_t vocab) {
    zg_gpt_config c = zg_gpt_config_default();
    c.vocab_size = vocab;
    if (kind == 5) {
        c.n_layer = c.n_head = 6;
        c.n_embd = 384;
        c.block_size = 256;
    }
    return zg_nn_gpt(&c);
}

/* nanoGPT's AdamW: weight decay 0.1 on tensors of dim >= 2, betas (0.9, 0.99). */
static zg_optim *gpt_optim(const zg_module *m, double lr) {
    zg_optim_config c = zg_optim_defaults(ZG_ADAMW);
    c.lr = lr;
    c.beta2 = 0.99;
    return zg_optim_new_decay_split(ZG_ADAMW, m, 0.1, &c);
}

static void die(const char *what) {
    fprintf(stderr, "zgrad_bench: %s: %s\n", what, zg_last_error());
    exit(1);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static zg_module *build_model(int kind) {
    if (kind == 2) return zg_model_default_cnn();
    static const int64_t small[] = {784, 32, 10}, wide[] = {784, 256, 128, 10};
    if (kind == 3) {
        int64_t deep[41];
        deep[0] = 784;
        for (int i = 1; i < 40; i++) deep[i] = 64;
        deep[40] = 10;
        return zg_model_mlp(deep, 41);
    }
    return kind == 0 ? zg_model_mlp(small, 3) : zg_model_mlp(wide, 4);
}

static uint64_t weights_hash(zg_tensor *const *params, int n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < n; i++) {
        const unsigned char *b = (const unsigned char *)zg_tensor_data(params[i]);
        size_t len = (size_t)zg_tensor_numel(params[i]) * sizeof(float);
        for (size_t j = 0; j < len; j++) h = (h ^ b[j]) * 0x100000001b3ull;
    }
    return h;
}

/* Times steps past the warm-up: milliseconds and allocations. */
typedef struct {
    double *ms; /* [steps] */
    long allocs;
    int warmup;
    double t0;
    long a0;
} step_timer;

static void timer_start(step_timer *t) {
    t->a0 = alloc_count();
    t->t0 = now_ms();
}

static void timer_stop(step_timer *t, int i) {
    const double t1 = now_ms();
    const long a1 = alloc_count();
    if (i < t->warmup) return;
    t->ms[i - t->warmup] = t1 - t->t0;
    t->allocs += a1 - t->a0;
}

/* The JSON line of a run: the timed steps, their median, peak RSS,
 * allocations per step, the last loss and the weights' hash. */
static void print_result(const workload *w, int threads, const double *ms, int steps, long allocs, double last_loss,
                         zg_tensor *const *params, int n_params) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double *sorted = malloc(sizeof(double) * (size_t)steps);
    if (!sorted) return;
    memcpy(sorted, ms, sizeof(double) * (size_t)steps);
    qsort(sorted, (size_t)steps, sizeof(double), cmp_double);
    double median = steps % 2 ? sorted[steps / 2] : 0.5 * (sorted[steps / 2 - 1] + sorted[steps / 2]);
    printf("{\"side\": \"zgrad\", \"workload\": \"%s\", \"threads\": %d, \"batch\": %lld, \"median_ms\": %.6f, "
           "\"rss_mb\": %.1f, \"mallocs_per_step\": %.3f, \"last_loss\": %.6f, \"weights_hash\": \"%016llx\", "
           "\"steps_ms\": [",
           w->name, threads, (long long)w->batch, median, ru.ru_maxrss / 1024.0, (double)allocs / steps, last_loss,
           (unsigned long long)weights_hash(params, n_params));
    for (int i = 0; i < steps; i++) printf("%s%.6f", i ? ", " : "", ms[i]);
    printf("]}\n");
    free(sorted);
}

/* A GPT workload: windows of the corpus at `path`, nanoGPT's step. */
static int gpt_run(const workload *w, int threads, int steps, int warmup, const char *path) {
    zg_text *text = zg_text_load(path, ZG_TEXT_CHAR, 0.1);
    if (!text) die("loading the corpus (scripts/setup-corpus installs it)");
    zg_manual_seed(0);
    zg_module *model = build_gpt(w->model, zg_text_vocab_size(text));
    if (!model) die("model");
    zg_tensor *params[96];
    const int n_params = zg_module_params(model, params, 96);
    zg_optim *opt = gpt_optim(model, w->lr);
    if (!opt) die("optimizer");
    const int64_t block = zg_module_param_by_name(model, "transformer.wpe.weight")
                              ? zg_tensor_size(zg_module_param_by_name(model, "transformer.wpe.weight"), 0)
                              : 0;
    step_timer tm = {.ms = malloc(sizeof(double) * (size_t)steps), .warmup = warmup};
    if (!tm.ms) die("memory");
    double last_loss = 0;
    for (int i = 0; i < warmup + steps; i++) {
        zg_tensor *x, *y;
        if (zg_text_batch(text, false, w->batch, block, 0, i, &x, &y)) die("batch");
        timer_start(&tm);
        zg_optim_zero_grad(opt, true);
        if (w->bf16 && zg_autocast_enter(ZG_AUTOCAST_BF16)) die("autocast");
        zg_tensor *logits = zg_module_forward(model, x);
        if (w->bf16) zg_autocast_exit();
        zg_tensor *loss = logits ? zg_cross_entropy(zg_reshape(logits, (int64_t[]){-1, zg_text_vocab_size(text)}, 2),
                                                    zg_reshape(y, (int64_t[]){-1}, 1), NULL)
                                 : NULL;
        if (!loss) die("forward");
        if (zg_backward(loss, NULL)) die("backward");
        if (zg_module_clip_grad_norm(model, 1.0, 2.0, false, NULL)) die("clip");
        if (zg_optim_step(opt)) die("step");
        last_loss = zg_tensor_item(loss);
        zg_arena_reset();
        timer_stop(&tm, i);
        zg_tensor_free(x);
        zg_tensor_free(y);
    }
    print_result(w, threads, tm.ms, steps, tm.allocs, last_loss, params, n_params);
    free(tm.ms);
    zg_optim_free(opt);
    zg_module_free(model);
    zg_text_free(text);
    zg_arena_free_all();
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: zgrad_bench WORKLOAD THREADS STEPS WARMUP [DATA_DIR]\n");
        return 2;
    }
    const workload *w = NULL;
    for (size_t i = 0; i < sizeof WORKLOADS / sizeof WORKLOADS[0]; i++)
        if (!strcmp(argv[1], WORKLOADS[i].name)) w = &WORKLOADS[i];
    if (!w) {
        fprintf(stderr, "zgrad_bench: unknown workload '%s'\n", argv[1]);
        return 2;
    }
    int threads = atoi(argv[2]), steps = atoi(argv[3]), warmup = atoi(argv[4]);
    const char *dir = argc > 5 ? argv[5] : "/usr/share/datasets/fashion-mnist";
    if (threads < 1 || steps < 1 || warmup < 0) {
        fprintf(stderr, "zgrad_bench: THREADS and STEPS must be >= 1, WARMUP >= 0\n");
        return 2;
    }
    if (zg_set_num_threads(threads)) die("threads");
    if (w->model >= 4) {
        char corpus[1024];
        const char *home = getenv("HOME"), *cache = getenv("XDG_CACHE_HOME");
        if (cache) snprintf(corpus, sizeof corpus, "%s/zgrad/corpus/shakespeare.txt", cache);
        else snprintf(corpus, sizeof corpus, "%s/.cache/zgrad/corpus/shakespeare.txt", home ? home : ".");
        return gpt_run(w, threads, steps, warmup, argc > 5 ? argv[5] : corpus);
    }

    zg_dataset *full = zg_dataset_load_mnist_dir(dir, true);
    if (!full) die("loading the data");
    int64_t want = (int64_t)(steps + warmup) * w->batch, size = zg_dataset_size(full);
    zg_dataset *ds = zg_dataset_head(full, want < size ? want : size);
    if (!ds) die("taking the first samples");
    zg_loader_opts lo = {.batch_size = w->batch, .shuffle = false, .drop_last = true, .seed = 0,
                         .mean = 0.2860f, .std = 0.3530f, .prefetch = false};
    zg_loader *ld = zg_loader_new(ds, &lo);
    if (!ld) die("loader");

    zg_manual_seed(0);
    zg_module *model = build_model(w->model);
    if (!model) die("model");
    zg_tensor *params[96];
    int n_params = zg_module_params(model, params, 96);
    zg_optim_config cfg = zg_optim_defaults(w->optim);
    cfg.lr = w->lr;
    zg_optim *opt = zg_optim_new(w->optim, params, n_params, &cfg);
    if (!opt) die("optimizer");
    zg_module_train(model, true);

    step_timer tm = {.ms = malloc(sizeof(double) * (size_t)steps), .warmup = warmup};
    if (!tm.ms) die("memory");
    int64_t epoch = 0;
    double last_loss = 0;
    for (int i = 0; i < warmup + steps; i++) {
        zg_tensor *x, *y;
        int got = zg_loader_next(ld, &x, &y);
        if (got == 0) {
            if (zg_loader_start_epoch(ld, ++epoch, 0)) die("next epoch");
            got = zg_loader_next(ld, &x, &y);
        }
        if (got != 1) die("batch");
        timer_start(&tm);
        zg_optim_zero_grad(opt, true);
        if (w->bf16 && zg_autocast_enter(ZG_AUTOCAST_BF16)) die("autocast");
        zg_tensor *logits = zg_module_forward(model, x);
        if (w->bf16) zg_autocast_exit();
        zg_tensor *loss = logits ? zg_cross_entropy(logits, y, NULL) : NULL;
        if (!loss) die("forward");
        if (zg_backward(loss, NULL)) die("backward");
        if (zg_optim_step(opt)) die("step");
        last_loss = zg_tensor_item(loss); /* as PyTorch's loss.item() */
        zg_arena_reset();
        timer_stop(&tm, i);
    }

    print_result(w, threads, tm.ms, steps, tm.allocs, last_loss, params, n_params);
    free(tm.ms);
    zg_optim_free(opt);
    zg_module_free(model);
    zg_loader_free(ld);
    zg_dataset_free(ds);
    zg_dataset_free(full);
    zg_arena_free_all();
    return 0;
}
