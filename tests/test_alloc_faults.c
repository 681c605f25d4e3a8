/* Out of memory, everywhere (SQLite's habit): each operation below runs
 * again and again with its 1st, 2nd, 3rd, ... heap allocation failing
 * (zg__alloc_fail_after), once with that allocation alone failing and once
 * with every later one failing too, until it completes without reaching
 * the failure. Every failed run must return an error with a message and
 * leave the previous state as it was: weights bit for bit, files byte for
 * byte; retried without the fault, the operation must give the result of
 * a run that never failed. Under the sanitizer build a crash or a leak on
 * any of these paths fails the binary (LeakSanitizer reports at exit).
 * ZGT_ALLOC_VERBOSE=1 prints the number of failure points per operation;
 * the whole training run, with a thousand of them, tests every 8th unless
 * ZGT_ALLOC_FULL=1. */
#include "harness.h"
#include "image_writer.h"

#include "train/train_internal.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ZGT_LSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define ZGT_LSAN 1
#endif
#ifdef ZGT_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* ---- the sweep ------------------------------------------------------------- */

typedef struct {
    const char *name;
    void (*setup)(void *ctx);   /* the state the operation starts from (no faults) */
    int (*op)(void *ctx);       /* the operation: 0, or a negative status */
    void (*intact)(void *ctx);  /* after a failed op: the state is as before, a retry works */
    void (*teardown)(void *ctx);
    int stride; /* test every stride-th allocation (0: each; ZGT_ALLOC_FULL=1 forces each) */
} fault_case;

static bool env_on(const char *name) {
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

/* Runs c with allocation n failing, n = 1, 2, ..., until it no longer
 * reaches the failure; returns the number of failure points (-1 once a
 * check failed: later points would repeat the report). */
static int sweep_mode(const fault_case *c, void *ctx, bool persistent) {
    const int failures_before = zgt_case_failures();
    const int stride = c->stride > 1 && !env_on("ZGT_ALLOC_FULL") ? c->stride : 1;
    for (int64_t n = 1; n <= 100000; n += stride) {
        c->setup(ctx);
        zg_clear_error();
        zg__alloc_fail_after(n, persistent);
        int rc = c->op(ctx);
        const int64_t injected = zg__alloc_failed();
        zg__alloc_fail_after(0, false);
        char err[1024];
        snprintf(err, sizeof err, "%s", zg_last_error());
        if (injected == 0) {
            if (rc != 0) zgt_fail(__FILE__, __LINE__, "%s: failed with no fault injected: %s", c->name, zg_last_error());
            c->teardown(ctx);
            return zgt_case_failures() > failures_before ? -1 : (int)(n - 1);
        }
        if (rc >= 0)
            zgt_fail(__FILE__, __LINE__, "%s: allocation %lld failed (%s), yet it returned %d", c->name, (long long)n,
                     persistent ? "and all later" : "alone", rc);
        else if (!err[0])
            zgt_fail(__FILE__, __LINE__, "%s: allocation %lld failed, and the error message is empty", c->name,
                     (long long)n);
        else
            c->intact(ctx);
        c->teardown(ctx);
        if (zgt_case_failures() > failures_before) {
            fprintf(stderr, "  (%s: at allocation %lld failing %s: %s)\n", c->name, (long long)n,
                    persistent ? "with all later ones" : "alone", err);
            return -1;
        }
    }
    zgt_fail(__FILE__, __LINE__, "%s: still reaching allocation failures after 100000 of them", c->name);
    return -1;
}

static void sweep(const fault_case *c, void *ctx) {
    int alone = sweep_mode(c, ctx, false);
    int persistent = alone < 0 ? -1 : sweep_mode(c, ctx, true);
    CHECK(alone > 0);
    CHECK(persistent == alone);
    if (env_on("ZGT_ALLOC_VERBOSE")) printf("  %-28s %d failure points\n", c->name, alone);
}

/* ---- parameters, bit for bit ----------------------------------------------- */

#define MAX_VALUES 4096

typedef struct {
    float v[MAX_VALUES];
    int64_t n;
} snapshot;

static void snap_params(const zg_module *m, snapshot *s) {
    s->n = 0;
    for (int i = 0; i < zg_module_num_params(m); i++) {
        zg_tensor *p = zg_module_param(m, i);
        int64_t k = zg_tensor_numel(p);
        if (s->n + k > MAX_VALUES) {
            zgt_fail(__FILE__, __LINE__, "snapshot: more than %d values", MAX_VALUES);
            return;
        }
        memcpy(s->v + s->n, zg_tensor_data(p), (size_t)k * sizeof(float));
        s->n += k;
    }
}

static bool same_snap(const snapshot *a, const snapshot *b) {
    return a->n == b->n && memcmp(a->v, b->v, (size_t)a->n * sizeof(float)) == 0;
}

/* ---- a training step --------------------------------------------------------- */

typedef struct {
    bool cnn, penalty, bf16; /* bf16: the forward under bf16 autocast */
    zg_optim_kind kind;
    zg_module *model;
    zg_optim *opt;
    zg_tensor *x, *y;
    snapshot before, after2, now;
} step_ctx;

#define PENALTY_ROWS 16384

static zg_module *small_model(bool cnn) {
    if (!cnn) {
        zg_module *l[] = {zg_nn_linear(6, 8, true), zg_nn_relu(), zg_nn_linear(8, 3, true)};
        return zg_nn_sequential(l, 3);
    }
    zg_module *l[] = {zg_nn_conv2d(1, 2, 3, 1, 1, 1, 1, true), zg_nn_relu(), zg_nn_max_pool2d(2, 2, 0),
                      zg_nn_flatten(), zg_nn_linear(18, 3, true)};
    return zg_nn_sequential(l, 5);
}

static void step_setup(void *p) {
    step_ctx *c = p;
    zg_manual_seed(7);
    c->model = small_model(c->cnn);
    zg_tensor *params[16];
    int n = zg_module_params(c->model, params, 16);
    zg_optim_config oc = zg_optim_defaults(c->kind);
    oc.lr = 0.1;
    if (c->kind == ZG_SGD) {
        oc.momentum = 0.9;
        oc.dampening = 0.5; /* the first step copies the grad into the buffer: a fresh buffer must be known */
    }
    c->opt = zg_optim_new(c->kind, params, n, &oc);
    /* The penalty's batch is large enough that the create_graph pass needs
     * arena blocks of its own (allocations that can fail inside it). */
    const int64_t rows = c->penalty ? (c->cnn ? PENALTY_ROWS / 16 : PENALTY_ROWS) : 4;
    int64_t xs_mlp[2] = {rows, 6}, xs_cnn[4] = {rows, 1, 6, 6}, ys[1] = {rows};
    c->x = c->cnn ? zg_randn(xs_cnn, 4) : zg_randn(xs_mlp, 2);
    int64_t labels[PENALTY_ROWS];
    for (int64_t i = 0; i < rows; i++) labels[i] = (int64_t[]){0, 2, 1, 2}[i % 4];
    c->y = zg_tensor_from_data(ZG_INT64, labels, ys, 1);
    CHECK(c->model && c->opt && c->x && c->y);
    snap_params(c->model, &c->before);
    /* The step then also allocates the arena's first block. */
    zg_arena_free_all();
}

/* mean((|ds/dx|_2 - 1)^2) per sample of x, the gradient from a
 * create_graph pass (a WGAN-GP penalty), s = sum(logits) (the MLP's) or the
 * loss (the CNN's: its pass runs through cross_entropy's and max
 * pooling's differentiable backwards too); NULL on failure. */
static zg_tensor *input_gradient_penalty(step_ctx *c) {
    zg_tensor *x = zg_mul_scalar(c->x, 1.0f), *g = NULL; /* an arena leaf that requires grad */
    if (!x || zg_tensor_set_requires_grad(x, true)) return NULL;
    zg_tensor *logits = zg_module_forward(c->model, x);
    zg_tensor *s = c->cnn ? (logits ? zg_cross_entropy(logits, c->y, NULL) : NULL) : zg_sum(logits);
    if (!s || zg_autograd_grad_opts(&s, 1, &x, 1, &g, &(zg_grad_opts){.create_graph = true})) return NULL;
    zg_tensor *flat = zg_reshape(g, (int64_t[]){zg_tensor_shape(g)[0], -1}, 2);
    zg_tensor *norm = zg_sqrt(zg_sum_dim(zg_mul(flat, flat), 1, false));
    return zg_mean(zg_pow_scalar(zg_sub_scalar(norm, 1.0f), 2.0f));
}

/* zero_grad, forward, loss (+ the penalty), backward, step. */
static int step_op(void *p) {
    step_ctx *c = p;
    zg_optim_zero_grad(c->opt, true);
    if (c->bf16) CHECK_OK(zg_autocast_enter(ZG_AUTOCAST_BF16));
    zg_tensor *logits = zg_module_forward(c->model, c->x);
    if (c->bf16) zg_autocast_exit();
    zg_tensor *loss = logits ? zg_cross_entropy(logits, c->y, NULL) : NULL;
    if (loss && c->penalty) {
        zg_tensor *gp = input_gradient_penalty(c);
        loss = gp ? zg_add(loss, gp) : NULL;
    }
    int rc = loss ? zg_backward(loss, NULL) : ZG_ERR_NOMEM;
    if (!rc) rc = zg_optim_step(c->opt);
    zg_arena_reset();
    return rc;
}

static void step_intact(void *p) {
    step_ctx *c = p;
    snap_params(c->model, &c->now);
    CHECK(same_snap(&c->now, &c->before));
    /* The optimizer's state is as before too: two steps from here are the
     * two steps of a run that never failed. */
    CHECK_OK(step_op(c));
    CHECK_OK(step_op(c));
    snap_params(c->model, &c->now);
    CHECK(same_snap(&c->now, &c->after2));
}

static void step_teardown(void *p) {
    step_ctx *c = p;
    zg_optim_free(c->opt);
    zg_module_free(c->model);
    zg_tensor_free(c->x);
    zg_tensor_free(c->y);
    zg_arena_reset();
}

static void sweep_step_ex(bool cnn, bool penalty, bool bf16, zg_optim_kind kind, const char *name) {
    step_ctx c = {.cnn = cnn, .penalty = penalty, .bf16 = bf16, .kind = kind};
    step_setup(&c);
    CHECK_OK(step_op(&c));
    CHECK_OK(step_op(&c));
    snap_params(c.model, &c.after2);
    CHECK(!same_snap(&c.after2, &c.before));
    step_teardown(&c);
    const fault_case fc = {name, step_setup, step_op, step_intact, step_teardown, 0};
    sweep(&fc, &c);
}

static void sweep_step(bool cnn, bool penalty, zg_optim_kind kind, const char *name) {
    sweep_step_ex(cnn, penalty, false, kind, name);
}

TEST(alloc_faults_training_step_mlp_adam) { sweep_step(false, false, ZG_ADAM, "step mlp adam"); }
TEST(alloc_faults_training_step_mlp_sgd_momentum) { sweep_step(false, false, ZG_SGD, "step mlp sgd momentum"); }
TEST(alloc_faults_training_step_cnn_adam) { sweep_step(true, false, ZG_ADAM, "step cnn adam"); }
/* bf16 autocast: the convolution's packed weights (AVX512-BF16 CPUs) or
 * the GEMMs' scratch. */
TEST(alloc_faults_training_step_cnn_bf16) { sweep_step_ex(true, false, true, ZG_ADAM, "step cnn bf16"); }
/* The penalty's create_graph pass records while it runs: its failures. */
TEST(alloc_faults_training_step_gradient_penalty) { sweep_step(false, true, ZG_ADAM, "step gradient penalty"); }
TEST(alloc_faults_training_step_cnn_gradient_penalty) {
    sweep_step(true, true, ZG_ADAM, "step cnn gradient penalty");
}

/* ---- a backward with hooks ----------------------------------------------------- */

typedef struct {
    zg_tensor *w, *x;
    int post_calls;
    float grad[3], ref[3];
} hook_ctx;

static zg_tensor *halve(zg_tensor *g, void *user) {
    (void)user;
    return zg_mul_scalar(g, 0.5f);
}

static zg_tensor *twice(zg_tensor *g, void *user) {
    (void)user;
    return zg_mul_scalar(g, 2.0f);
}

static int after_accumulate(zg_tensor *leaf, void *user) {
    hook_ctx *c = user;
    c->post_calls++;
    memcpy(c->grad, zg_tensor_data(zg_tensor_grad(leaf)), sizeof c->grad);
    return ZG_OK;
}

static void hook_setup(void *p) {
    hook_ctx *c = p;
    const float w[3] = {0.5f, -1.0f, 2.0f}, x[3] = {1.5f, 0.25f, -0.75f};
    int64_t s[1] = {3};
    c->w = zgt_param(zg_tensor_from_data(ZG_FLOAT32, w, s, 1));
    c->x = zg_tensor_from_data(ZG_FLOAT32, x, s, 1);
    c->post_calls = 0;
    CHECK(c->w && c->x);
    zg_arena_free_all();
}

/* Hooks on the leaf (before and after accumulation) and on a non-leaf,
 * then loss = sum((w*x)^2) and its backward. */
static int hook_op(void *p) {
    hook_ctx *c = p;
    int rc = zg_tensor_register_hook(c->w, halve, NULL);
    if (!rc) rc = zg_tensor_register_post_accumulate_hook(c->w, after_accumulate, c);
    zg_tensor *h = rc ? NULL : zg_mul(c->w, c->x);
    if (h) rc = zg_tensor_register_hook(h, twice, NULL);
    zg_tensor *loss = h && !rc ? zg_sum(zg_mul(h, h)) : NULL;
    if (!rc) rc = loss ? zg_backward(loss, NULL) : ZG_ERR_NOMEM;
    zg_arena_reset();
    return rc;
}

static void hook_intact(void *p) {
    hook_ctx *c = p;
    zg_tensor_clear_hooks(c->w);
    zg_tensor_zero_grad(c->w, true);
    c->post_calls = 0;
    CHECK_OK(hook_op(c));
    CHECK(c->post_calls == 1);
    CHECK(memcmp(c->grad, c->ref, sizeof c->grad) == 0);
}

static void hook_teardown(void *p) {
    hook_ctx *c = p;
    zg_tensor_free(c->w);
    zg_tensor_free(c->x);
    zg_arena_reset();
}

TEST(alloc_faults_backward_with_hooks) {
    hook_ctx c;
    hook_setup(&c);
    CHECK_OK(hook_op(&c));
    CHECK(c.post_calls == 1);
    /* d/dw sum((w x)^2) = 2 w x^2, doubled at h, halved at w. */
    const float w[3] = {0.5f, -1.0f, 2.0f}, x[3] = {1.5f, 0.25f, -0.75f};
    for (int i = 0; i < 3; i++) CHECK_NEAR(c.grad[i], 2 * w[i] * x[i] * x[i], 1e-6);
    memcpy(c.ref, c.grad, sizeof c.ref);
    hook_teardown(&c);
    const fault_case fc = {"backward with hooks", hook_setup, hook_op, hook_intact, hook_teardown, 0};
    sweep(&fc, &c);
}

/* ---- files ------------------------------------------------------------------------ */

/* A scratch directory on a memory file system where there is one (the
 * checkpoint sweeps fsync thousands of times). */
static void scratch_dir(char *out, size_t n) {
    snprintf(out, n, "%s/zgt_alloc_XXXXXX", zg__is_dir("/dev/shm") ? "/dev/shm" : "/tmp");
    if (!mkdtemp(out)) zgt_fail(__FILE__, __LINE__, "mkdtemp %s failed", out);
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    size_t k;
    while (b && (k = fread(b + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) b = realloc(b, cap *= 2);
    }
    fclose(f);
    *len = n;
    return b;
}

/* Every file under dir (one level of subdirectories), with its bytes. */
typedef struct {
    char names[32][512];
    char *bytes[32];
    size_t lens[32];
    int n;
} tree;

static void tree_read(const char *dir, const char *prefix, tree *t) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024], rel[512];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        snprintf(rel, sizeof rel, "%s%s", prefix, e->d_name);
        if (zg__is_dir(p)) {
            strcat(rel, "/");
            tree_read(p, rel, t);
        } else if (t->n < 32) {
            snprintf(t->names[t->n], sizeof t->names[0], "%s", rel);
            t->bytes[t->n] = slurp(p, &t->lens[t->n]);
            t->n++;
        }
    }
    closedir(d);
}

static void tree_free(tree *t) {
    for (int i = 0; i < t->n; i++) free(t->bytes[i]);
    t->n = 0;
}

/* Each file of `old` is in `now` with the same bytes. */
static void check_files_kept(const tree *old, const tree *now) {
    for (int i = 0; i < old->n; i++) {
        int j = 0;
        while (j < now->n && strcmp(old->names[i], now->names[j])) j++;
        if (j == now->n)
            zgt_fail(__FILE__, __LINE__, "%s is gone after a failed save", old->names[i]);
        else if (old->lens[i] != now->lens[j] || memcmp(old->bytes[i], now->bytes[j], old->lens[i]))
            zgt_fail(__FILE__, __LINE__, "%s changed in a failed save", old->names[i]);
    }
}

/* ---- reading a whole file: a text corpus ------------------------------------------ */

/* Longer than the reader's first 64 KiB buffer, so it must grow it; the
 * character vocabulary adds its own allocations. */
#define LONG_FILE 200000

typedef struct {
    char dir[256];
    zg_text *text;
} read_ctx;

static void read_setup(void *p) {
    read_ctx *c = p;
    scratch_dir(c->dir, sizeof c->dir);
    char path[512];
    char *body = malloc(LONG_FILE);
    CHECK_PTR(body);
    if (!body) return;
    for (int i = 0; i < LONG_FILE; i++) body[i] = (char)('a' + i % 26);
    snprintf(path, sizeof path, "%s/long.txt", c->dir);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(body, 1, LONG_FILE, f) == LONG_FILE);
    if (f) fclose(f);
    free(body);
    c->text = NULL;
}

static int read_op(void *p) {
    read_ctx *c = p;
    char path[512];
    snprintf(path, sizeof path, "%s/long.txt", c->dir);
    c->text = zg_text_load(path, ZG_TEXT_CHAR, 0.1);
    return c->text ? ZG_OK : ZG_ERR_NOMEM;
}

/* A read that succeeds has the whole file (a failed one returns NULL). */
static void read_teardown(void *p) {
    read_ctx *c = p;
    if (c->text)
        CHECK(zg_text_num_tokens(c->text, false) + zg_text_num_tokens(c->text, true) == LONG_FILE &&
              zg_text_vocab_size(c->text) == 26);
    zg_text_free(c->text);
    zgt_remove_dir(c->dir);
}

static void nothing_kept(void *p) { (void)p; }

TEST(alloc_faults_read_file) {
    read_ctx c;
    const fault_case fc = {"whole-file read (text corpus)", read_setup, read_op, nothing_kept, read_teardown, 0};
    sweep(&fc, &c);
}

/* ---- saving: the weights, the optimizer, a training checkpoint ------------------- */

typedef struct {
    char dir[256];
    zg_module *model;
    zg_optim *opt;
    zg__ckpt_state st;
    snapshot saved;
    tree before;
} save_ctx;

static void trained(save_ctx *c) {
    zg_manual_seed(3);
    c->model = small_model(false);
    zg_tensor *params[8];
    int n = zg_module_params(c->model, params, 8);
    c->opt = zg_optim_new(ZG_ADAM, params, n, NULL);
    int64_t xs[2] = {4, 6}, ys[1] = {4};
    const int64_t labels[4] = {1, 0, 2, 2};
    zg_tensor *x = zg_randn(xs, 2), *y = zg_tensor_from_data(ZG_INT64, labels, ys, 1);
    CHECK_OK(zg_backward(zg_cross_entropy(zg_module_forward(c->model, x), y, NULL), NULL));
    CHECK_OK(zg_optim_step(c->opt));
    zg_tensor_free(x);
    zg_tensor_free(y);
    zg_arena_reset();
}

static void nudge(save_ctx *c) {
    zg_no_grad_enter();
    for (int i = 0; i < zg_module_num_params(c->model); i++) zg_tensor_mul_scalar_(zg_module_param(c->model, i), 1.5f);
    zg_no_grad_exit();
}

static void ckpt_state(zg__ckpt_state *s, int64_t step) {
    memset(s, 0, sizeof *s);
    s->model = ZG_MODEL_MLP;
    s->optimizer = ZG_ADAM;
    s->lr = 1e-3;
    s->batch_size = 4;
    s->eval_batch_size = 4;
    s->std = 1;
    s->epochs = 1;
    s->accum = 1;
    s->clip_norm = -1;
    s->global_step = step;
    s->next_batch = step;
    zg_rng_get_state(s->rng);
}

/* A run directory holding a checkpoint (and the weights and optimizer
 * files beside it); then the weights move on, for the save under test. */
static void save_setup(void *p) {
    save_ctx *c = p;
    scratch_dir(c->dir, sizeof c->dir);
    trained(c);
    char name[64], path[512];
    ckpt_state(&c->st, 1);
    CHECK_OK(zg__ckpt_save(c->dir, c->model, c->opt, &c->st, name));
    snprintf(path, sizeof path, "%s/weights.safetensors", c->dir);
    CHECK_OK(zg_module_save(c->model, path));
    snprintf(path, sizeof path, "%s/optim.safetensors", c->dir);
    CHECK_OK(zg_optim_save(c->opt, path));
    snap_params(c->model, &c->saved);
    c->before.n = 0;
    tree_read(c->dir, "", &c->before);
    nudge(c);
    c->st.global_step = c->st.next_batch = 2;
}

static int save_weights_op(void *p) {
    save_ctx *c = p;
    char path[512];
    snprintf(path, sizeof path, "%s/weights.safetensors", c->dir);
    return zg_module_save(c->model, path);
}

static int save_optim_op(void *p) {
    save_ctx *c = p;
    char path[512];
    snprintf(path, sizeof path, "%s/optim.safetensors", c->dir);
    return zg_optim_save(c->opt, path);
}

static int save_ckpt_op(void *p) {
    save_ctx *c = p;
    char name[64];
    return zg__ckpt_save(c->dir, c->model, c->opt, &c->st, name);
}

/* The old files are there, byte for byte, and the checkpoint they make
 * loads the weights it saved. */
static void save_intact(void *p) {
    save_ctx *c = p;
    tree now = {.n = 0};
    tree_read(c->dir, "", &now);
    check_files_kept(&c->before, &now);
    tree_free(&now);
    char ckpt[512], run[512];
    zg__ckpt_state s;
    CHECK_OK(zg__ckpt_locate("test", c->dir, ckpt, sizeof ckpt, run, sizeof run));
    CHECK_OK(zg__ckpt_read_state("test", ckpt, &s));
    CHECK(s.global_step == 1);
    zg__ckpt_state_free(&s);
    CHECK_OK(zg__ckpt_load("test", ckpt, c->model, c->opt));
    snapshot now_w;
    snap_params(c->model, &now_w);
    CHECK(same_snap(&now_w, &c->saved));
}

static void save_teardown(void *p) {
    save_ctx *c = p;
    zg_optim_free(c->opt);
    zg_module_free(c->model);
    tree_free(&c->before);
    zgt_remove_dir(c->dir);
    zg_arena_reset();
}

TEST(alloc_faults_module_save) {
    save_ctx c;
    const fault_case fc = {"zg_module_save", save_setup, save_weights_op, save_intact, save_teardown, 0};
    sweep(&fc, &c);
}

TEST(alloc_faults_optim_save) {
    save_ctx c;
    const fault_case fc = {"zg_optim_save", save_setup, save_optim_op, save_intact, save_teardown, 0};
    sweep(&fc, &c);
}

TEST(alloc_faults_checkpoint_save) {
    save_ctx c;
    const fault_case fc = {"checkpoint save", save_setup, save_ckpt_op, save_intact, save_teardown, 0};
    sweep(&fc, &c);
}

/* ---- an ONNX export ---------------------------------------------------------------- */

/* A model exported once (its file is what a failed export must keep),
 * then moved on: a small CNN on [1, 6, 6], or a GPT. */
typedef struct {
    save_ctx s;
    bool gpt;
} export_ctx;

static int export_op(void *p) {
    export_ctx *c = p;
    char path[512];
    snprintf(path, sizeof path, "%s/model.onnx", c->s.dir);
    return zg_onnx_export(c->s.model, (const int64_t[]){1, 6, 6}, 3, path);
}

static void export_setup(void *p) {
    export_ctx *c = p;
    scratch_dir(c->s.dir, sizeof c->s.dir);
    zg_manual_seed(5);
    zg_gpt_config g = zg_gpt_config_default();
    g.vocab_size = 7;
    g.block_size = 4;
    g.n_layer = 1;
    g.n_head = 2;
    g.n_embd = 8;
    c->s.model = c->gpt ? zg_nn_gpt(&g) : small_model(true);
    c->s.opt = NULL;
    CHECK_OK(export_op(c));
    nudge(&c->s);
    snap_params(c->s.model, &c->s.saved);
    c->s.before.n = 0;
    tree_read(c->s.dir, "", &c->s.before);
}

/* The earlier file byte for byte, the weights untouched. */
static void export_intact(void *p) {
    export_ctx *c = p;
    tree now = {.n = 0};
    tree_read(c->s.dir, "", &now);
    check_files_kept(&c->s.before, &now);
    tree_free(&now);
    snapshot w;
    snap_params(c->s.model, &w);
    CHECK(same_snap(&w, &c->s.saved));
}

TEST(alloc_faults_onnx_export) {
    export_ctx c = {.gpt = false};
    const fault_case fc = {"zg_onnx_export (cnn)", export_setup, export_op, export_intact, save_teardown, 0};
    sweep(&fc, &c);
    c.gpt = true;
    const fault_case fg = {"zg_onnx_export (gpt)", export_setup, export_op, export_intact, save_teardown, 0};
    sweep(&fg, &c);
}

/* ---- loading ------------------------------------------------------------------------ */

/* The files of save_setup, loaded into a fresh model and optimizer whose
 * own weights must survive a failed load. */
typedef struct {
    save_ctx s;
    zg_module *model;
    zg_optim *opt;
    snapshot fresh;
} load_ctx;

static void load_setup(void *p) {
    load_ctx *c = p;
    save_setup(&c->s);
    zg_manual_seed(11);
    c->model = small_model(false);
    zg_tensor *params[8];
    int n = zg_module_params(c->model, params, 8);
    c->opt = zg_optim_new(ZG_ADAM, params, n, NULL);
    snap_params(c->model, &c->fresh);
}

static int load_weights_op(void *p) {
    load_ctx *c = p;
    char path[512];
    snprintf(path, sizeof path, "%s/weights.safetensors", c->s.dir);
    return zg_module_load(c->model, path);
}

static int load_optim_op(void *p) {
    load_ctx *c = p;
    char path[512];
    snprintf(path, sizeof path, "%s/optim.safetensors", c->s.dir);
    return zg_optim_load(c->opt, path);
}

/* As zg_train_run resumes: find the checkpoint, read its state, load. */
static int load_ckpt_op(void *p) {
    load_ctx *c = p;
    char ckpt[512], run[512];
    zg__ckpt_state s;
    int rc = zg__ckpt_locate("test", c->s.dir, ckpt, sizeof ckpt, run, sizeof run);
    if (!rc) rc = zg__ckpt_read_state("test", ckpt, &s);
    if (rc) return rc;
    zg__ckpt_state_free(&s);
    return zg__ckpt_load("test", ckpt, c->model, c->opt);
}

/* The optimizer has no state yet, so a failed optimizer load must leave
 * none; a retried load gives the saved weights and state. */
static void load_intact(void *p) {
    load_ctx *c = p;
    snapshot now;
    snap_params(c->model, &now);
    CHECK(same_snap(&now, &c->fresh) || same_snap(&now, &c->s.saved));
    CHECK(zg_optim_state_step(c->opt, 0) == -1);
    CHECK_OK(load_ckpt_op(c));
    snap_params(c->model, &now);
    CHECK(same_snap(&now, &c->s.saved));
    CHECK(zg_optim_state_step(c->opt, 0) == 1);
}

static void load_weights_intact(void *p) {
    load_ctx *c = p;
    snapshot now;
    snap_params(c->model, &now);
    CHECK(same_snap(&now, &c->fresh));
    load_intact(p);
}

static void load_teardown(void *p) {
    load_ctx *c = p;
    zg_optim_free(c->opt);
    zg_module_free(c->model);
    save_teardown(&c->s);
}

TEST(alloc_faults_module_load) {
    load_ctx c;
    const fault_case fc = {"zg_module_load", load_setup, load_weights_op, load_weights_intact, load_teardown, 0};
    sweep(&fc, &c);
}

TEST(alloc_faults_optim_load) {
    load_ctx c;
    const fault_case fc = {"zg_optim_load", load_setup, load_optim_op, load_intact, load_teardown, 0};
    sweep(&fc, &c);
}

TEST(alloc_faults_checkpoint_load) {
    load_ctx c;
    const fault_case fc = {"checkpoint load", load_setup, load_ckpt_op, load_intact, load_teardown, 0};
    sweep(&fc, &c);
}

/* ---- data ------------------------------------------------------------------------ */

/* IDX files, a CSV file, a CSV table (split, statistics, normalised), an
 * image folder (the same). */
enum { D_IDX, D_CSV, D_TABLE, D_IMAGES, D_RESIZED };

typedef struct {
    char dir[256];
    bool gz;
    int kind;
    zg_dataset *ds, *train, *val;
    zg_loader *ld;
    float first[64], ref[64]; /* the first batch: this run's, a clean run's */
} data_ctx;

#define N_SAMPLES 5

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void write_file(const char *path, const void *b, size_t n, bool gz) {
    if (gz) {
        gzFile f = gzopen(path, "wb");
        CHECK(f && gzwrite(f, b, (unsigned)n) == (int)n);
        if (f) gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        CHECK(f && fwrite(b, 1, n, f) == n);
        if (f) fclose(f);
    }
}

/* n rows x cols images of pseudo-random bytes at img, their labels
 * (i % classes) at lab, as IDX files. */
static void write_idx(const char *img_path, const char *lab_path, int n, int rows, int cols, int classes, bool gz) {
    size_t isz = 16 + (size_t)n * (size_t)(rows * cols), lsz = 8 + (size_t)n;
    unsigned char *img = calloc(isz, 1), *lab = calloc(lsz, 1);
    const unsigned char magic_img[4] = {0, 0, 8, 3}, magic_lab[4] = {0, 0, 8, 1};
    memcpy(img, magic_img, 4);
    put_be32(img + 4, (uint32_t)n);
    put_be32(img + 8, (uint32_t)rows);
    put_be32(img + 12, (uint32_t)cols);
    memcpy(lab, magic_lab, 4);
    put_be32(lab + 4, (uint32_t)n);
    for (size_t i = 16; i < isz; i++) img[i] = (unsigned char)(i * 2654435761u >> 24);
    for (int i = 0; i < n; i++) lab[8 + i] = (unsigned char)(i % classes);
    write_file(img_path, img, isz, gz);
    write_file(lab_path, lab, lsz, gz);
    free(img);
    free(lab);
}

/* Five 3x4 images and their labels, as IDX files and as one CSV. */
static void data_setup(void *p) {
    data_ctx *c = p;
    scratch_dir(c->dir, sizeof c->dir);
    char path[512], lab[512];
    snprintf(path, sizeof path, "%s/img", c->dir);
    snprintf(lab, sizeof lab, "%s/lab", c->dir);
    write_idx(path, lab, N_SAMPLES, 3, 4, 3, c->gz);
    char csv[1024];
    int k = snprintf(csv, sizeof csv, "a,b,c,label\n");
    for (int i = 0; i < N_SAMPLES; i++)
        k += snprintf(csv + k, sizeof csv - (size_t)k, "%d.5,%d,-%d,%d\n", i, 2 * i, i, i % 3);
    snprintf(path, sizeof path, "%s/data.csv", c->dir);
    write_file(path, csv, (size_t)k, false);
    /* imgs/<k>/<i>.png: six 3x2 colour images of two classes. */
    for (int i = 0; i < 6; i++) {
        uint8_t px[3 * 2 * 3];
        zgt_pattern(px, 3, 2, 3, i);
        snprintf(path, sizeof path, "%s/imgs", c->dir);
        mkdir(path, 0755);
        snprintf(path, sizeof path, "%s/imgs/%d", c->dir, i % 2);
        mkdir(path, 0755);
        snprintf(path, sizeof path, "%s/imgs/%d/%d.png", c->dir, i % 2, i);
        zgt_write_png(path, px, 3, 2, 3, false, false);
    }
    c->ds = c->train = c->val = NULL;
    c->ld = NULL;
}

/* A table or image folder: split, the training part's statistics, both
 * normalised; the loader reads the training part. */
static int data_split(data_ctx *c) {
    float m[3], s[3];
    int rc = zg_dataset_split(c->ds, 0.4, 3, &c->train, &c->val);
    if (!rc) rc = zg_dataset_compute_stats(c->train, m, s);
    if (!rc) rc = zg_dataset_set_normalization(c->train, m, s);
    return rc ? rc : zg_dataset_set_normalization(c->val, m, s);
}

/* Load the data set, make a loader, take the first batch. */
static int data_op(void *p) {
    data_ctx *c = p;
    char img[512], lab[512];
    snprintf(img, sizeof img, "%s/%s", c->dir, c->kind == D_IDX ? "img" : c->kind >= D_IMAGES ? "imgs" : "data.csv");
    snprintf(lab, sizeof lab, "%s/lab", c->dir);
    c->ds = c->kind == D_CSV      ? zg_dataset_load_csv(img, -1, true)
            : c->kind == D_TABLE  ? zg_dataset_load_table(img, &(zg_csv_opts){.target = "label"})
            : c->kind == D_IMAGES ? zg_dataset_load_image_folder(img, &(zg_image_opts){0})
            : c->kind == D_RESIZED ? zg_dataset_load_image_folder(img, &(zg_image_opts){.height = 3, .width = 3})
                                  : zg_dataset_load_idx(img, lab);
    if (!c->ds) return ZG_ERR_NOMEM;
    int split = c->kind >= D_TABLE ? data_split(c) : ZG_OK;
    if (split) return split;
    zg_loader_opts o = {.batch_size = 2, .shuffle = true, .seed = 5, .mean = 0.5f, .std = 0.25f};
    c->ld = zg_loader_new(c->train ? c->train : c->ds, &o);
    if (!c->ld) return ZG_ERR_NOMEM;
    zg_tensor *x, *y;
    int rc = zg_loader_start_epoch(c->ld, 1, 0);
    if (!rc && (rc = zg_loader_next(c->ld, &x, &y)) == 1) {
        memcpy(c->first, zg_tensor_data(x), (size_t)zg_tensor_numel(x) * sizeof(float));
        rc = 0;
    }
    return rc < 0 ? rc : rc == 0 ? 0 : ZG_ERR_STATE;
}

static void data_free(data_ctx *c) {
    zg_loader_free(c->ld);
    zg_dataset_free(c->ds);
    zg_dataset_free(c->train);
    zg_dataset_free(c->val);
    c->ld = NULL;
    c->ds = c->train = c->val = NULL;
}

static void data_teardown(void *p) {
    data_ctx *c = p;
    data_free(c);
    zgt_remove_dir(c->dir);
    zg_arena_reset();
}

/* Nothing to keep (the files are only read): a retry gives a clean run's batch. */
static void data_intact(void *p) {
    data_ctx *c = p;
    data_free(c);
    memset(c->first, 0, sizeof c->first);
    CHECK_OK(data_op(c));
    CHECK(memcmp(c->first, c->ref, sizeof c->ref) == 0);
}

static void sweep_data(bool gz, int kind, const char *name) {
    data_ctx c = {.gz = gz, .kind = kind};
    data_setup(&c);
    CHECK_OK(data_op(&c));
    memcpy(c.ref, c.first, sizeof c.ref);
    data_teardown(&c);
    const fault_case fc = {name, data_setup, data_op, data_intact, data_teardown, 0};
    sweep(&fc, &c);
}

TEST(alloc_faults_idx_load) { sweep_data(false, D_IDX, "IDX load + loader"); }
TEST(alloc_faults_idx_gz_load) { sweep_data(true, D_IDX, "IDX.gz load + loader"); }
TEST(alloc_faults_csv_load) { sweep_data(false, D_CSV, "CSV load + loader"); }
TEST(alloc_faults_table_load) { sweep_data(false, D_TABLE, "CSV table + split + loader"); }
TEST(alloc_faults_image_folder_load) { sweep_data(false, D_IMAGES, "image folder + split + loader"); }
TEST(alloc_faults_image_folder_resized) { sweep_data(false, D_RESIZED, "image folder resized + loader"); }

/* ---- a whole training run: zgrad train --resume ------------------------------------ */

/* A tiny MNIST-format data set (28x28, 10 classes), a run stopped after
 * epoch 1 of 2 (mlp, accum 2, clipping, a schedule, fp16 with a
 * GradScaler), and that run resumed without faults: the sweep
 * resumes a fresh copy each time, and a failed resume must leave a
 * checkpoint that resumes to the same weights. */
typedef struct {
    char root[256], data[300], tmpl[300], run[300];
    char *ref_model;
    size_t ref_len;
    bool gpt; /* --model gpt on a text (data: the text file) */
    bool csv; /* --csv (data: the CSV file), the default MLP */
    bool ddp; /* --ddp in a world of one (zg_dist_init first) */
} run_ctx;

static void write_mnist_split(const char *dir, const char *split, int n) {
    char img[512], lab[512];
    snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte", dir, split);
    snprintf(lab, sizeof lab, "%s/%s-labels-idx1-ubyte", dir, split);
    write_idx(img, lab, n, 28, 28, 10, false);
}

static zg_train_config run_config(const run_ctx *c, const char *out, const char *resume, int epochs) {
    zg_train_config cfg = zg_train_config_defaults();
    if (c->gpt) {
        /* A GPT of one block on a text: 4 steps in intervals of 2, the
         * recipe's AdamW, clipping and a schedule, bf16 autocast. */
        cfg = zg_train_config_for_model(ZG_MODEL_GPT);
        snprintf(cfg.text_path, sizeof cfg.text_path, "%s", c->data);
        cfg.gpt.n_layer = 1;
        cfg.gpt.n_head = 2;
        cfg.gpt.n_embd = 8;
        cfg.gpt.block_size = 8;
        cfg.batch_size = 2;
        cfg.iters = 4;
        cfg.eval_interval = 2;
        cfg.eval_iters = 1;
        snprintf(cfg.schedule, sizeof cfg.schedule, "cosine");
        cfg.amp = ZG_AUTOCAST_BF16;
        cfg.out_dir = out;
        cfg.resume_dir = resume;
        cfg.progress = ZG_PROGRESS_OFF;
        cfg.log = NULL;
        (void)epochs;
        return cfg;
    }
    cfg.model = ZG_MODEL_MLP;
    cfg.ddp = c->ddp;
    if (c->csv) { /* a seeded validation split, standardised features */
        cfg.model = ZG_MODEL_FILE;
        snprintf(cfg.csv_path, sizeof cfg.csv_path, "%s", c->data);
        snprintf(cfg.target, sizeof cfg.target, "label");
    }
    cfg.epochs = epochs;
    cfg.batch_size = 16;
    cfg.eval_batch_size = 16;
    cfg.accum = 2;
    cfg.clip_norm = 1.0;
    snprintf(cfg.schedule, sizeof cfg.schedule, "cosine");
    cfg.amp = ZG_AUTOCAST_FP16;
    cfg.data_dir = c->data;
    cfg.out_dir = out;
    cfg.resume_dir = resume;
    cfg.progress = ZG_PROGRESS_OFF;
    cfg.log = NULL;
    return cfg;
}

static void copy_tree(const char *from, const char *to) {
    mkdir(to, 0755);
    DIR *d = opendir(from);
    if (!d) return;
    struct dirent *e;
    char a[1024], b[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(a, sizeof a, "%s/%s", from, e->d_name);
        snprintf(b, sizeof b, "%s/%s", to, e->d_name);
        if (zg__is_dir(a)) {
            copy_tree(a, b);
        } else {
            size_t n = 0;
            char *bytes = slurp(a, &n);
            write_file(b, bytes, n, false);
            free(bytes);
        }
    }
    closedir(d);
}

static void run_setup(void *p) {
    run_ctx *c = p;
    zgt_remove_dir(c->run);
    copy_tree(c->tmpl, c->run);
}

static int run_op(void *p) {
    run_ctx *c = p;
    zg_train_config cfg = run_config(c, NULL, c->run, 2);
    return zg_train_run(&cfg, NULL);
}

static void check_model_is_ref(const run_ctx *c) {
    char path[512];
    size_t n = 0;
    snprintf(path, sizeof path, "%s/model.safetensors", c->run);
    char *bytes = slurp(path, &n);
    CHECK(bytes && n == c->ref_len && memcmp(bytes, c->ref_model, n) == 0);
    free(bytes);
}

static void run_intact(void *p) {
    run_ctx *c = p;
    zg_train_config cfg = zg_train_config_defaults();
    CHECK_OK(zg_train_checkpoint_config(c->run, &cfg));
    CHECK_OK(run_op(c));
    check_model_is_ref(c);
}

static void run_teardown(void *p) {
    run_ctx *c = p;
    zgt_remove_dir(c->run);
    zg_arena_reset();
}

/* The run's data at c->data: a text for a GPT, a CSV table, or MNIST-format
 * files. */
static void write_run_data(const run_ctx *c) {
    if (c->gpt) {
        static const char text[] = "to be, or not to be, that is the question:\n";
        char *buf = malloc(sizeof text * 20);
        for (int i = 0; buf && i < 20; i++) memcpy(buf + i * (sizeof text - 1), text, sizeof text - 1);
        if (buf) write_file(c->data, buf, 20 * (sizeof text - 1), false);
        free(buf);
    } else if (c->csv) {
        char rows[4096];
        int k = snprintf(rows, sizeof rows, "x,\"y z\",label\n");
        for (int i = 0; i < 80; i++) k += snprintf(rows + k, sizeof rows - (size_t)k, "%d,%g,%d\n", i % 9, i * 0.25, i % 3);
        write_file(c->data, rows, (size_t)k, false);
    } else {
        mkdir(c->data, 0755);
        write_mnist_split(c->data, "train", 64);
        write_mnist_split(c->data, "t10k", 32);
    }
}

/* A finished run of c's kind at c->run (its data at c->data). */
static void finished_run(run_ctx *c) {
    scratch_dir(c->root, sizeof c->root);
    snprintf(c->data, sizeof c->data, "%s/data", c->root);
    snprintf(c->run, sizeof c->run, "%s/run", c->root);
    write_run_data(c);
    zg_train_config cfg = run_config(c, c->run, NULL, 2);
    CHECK_OK(zg_train_run(&cfg, NULL));
}

static void sweep_run(bool gpt, bool csv, bool ddp) {
    run_ctx c = {.gpt = gpt, .csv = csv, .ddp = ddp};
    scratch_dir(c.root, sizeof c.root);
    snprintf(c.data, sizeof c.data, "%s/data", c.root);
    snprintf(c.tmpl, sizeof c.tmpl, "%s/template", c.root);
    snprintf(c.run, sizeof c.run, "%s/run", c.root);
    write_run_data(&c);
    /* The template stops in epoch 2 (its first batch fails to load, and
     * one bad batch is the limit), so that the schedule spans the 2
     * epochs the resume trains. */
    zg_train_config cfg = run_config(&c, c.tmpl, NULL, 2);
    cfg.inject_bad_batch = gpt ? 3 : 5;
    cfg.max_bad_steps = 1;
    CHECK(zg_train_run(&cfg, NULL) == ZG_ERR_STATE);
    run_setup(&c);
    CHECK_OK(run_op(&c));
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", c.run);
    c.ref_model = slurp(path, &c.ref_len);
    CHECK(c.ref_model != NULL);
    run_teardown(&c);
    const fault_case fc = {gpt   ? "gpt training run (resume)"
                           : csv ? "CSV training run (resume)"
                           : ddp ? "--ddp training run (resume)"
                                 : "training run (resume)",
                           run_setup, run_op, run_intact, run_teardown, 8};
    sweep(&fc, &c);
    free(c.ref_model);
    zgt_remove_dir(c.root);
}

/* zgrad sample: reads the run, builds the GPT, generates; a failure frees
 * everything and a retry gives the same text. */
typedef struct {
    const char *run;
    char ref[64];
} sample_ctx;

static void sample_nothing(void *p) { (void)p; }

static int sample_op(void *p) {
    sample_ctx *c = p;
    char *out = NULL;
    int rc = zg_train_sample(c->run, "to", 12, 0.8f, 5, 3, &out);
    if (!rc && !c->ref[0]) snprintf(c->ref, sizeof c->ref, "%s", out);
    if (!rc) CHECK(!strcmp(out, c->ref));
    CHECK(rc == 0 || out == NULL);
    free(out);
    return rc;
}

static void sample_intact(void *p) { CHECK_OK(sample_op(p)); }

TEST(alloc_faults_gpt_sample) {
    run_ctx c = {.gpt = true};
    finished_run(&c);
    sample_ctx s = {.run = c.run};
    CHECK_OK(sample_op(&s));
    const fault_case fc = {"gpt sample", sample_nothing, sample_op, sample_intact, sample_nothing, 0};
    sweep(&fc, &s);
    zgt_remove_dir(c.root);
}

/* zgrad eval on a --csv run: reads the run and its data, splits and
 * standardises it, evaluates; a failure frees everything and a retry
 * gives the same metrics. */
typedef struct {
    const char *run;
    double loss, acc;
    bool have;
} eval_ctx;

static int eval_op(void *p) {
    eval_ctx *c = p;
    zg_eval_result r;
    int rc = zg_eval_checkpoint(c->run, NULL, 0, &r);
    if (rc) return rc;
    if (c->have) CHECK(r.loss == c->loss && r.accuracy == c->acc);
    c->loss = r.loss;
    c->acc = r.accuracy;
    c->have = true;
    zg_eval_result_free(&r);
    return 0;
}

static void eval_intact(void *p) { CHECK_OK(eval_op(p)); }

TEST(alloc_faults_csv_eval) {
    run_ctx c = {.csv = true};
    finished_run(&c);
    eval_ctx e = {.run = c.run};
    CHECK_OK(eval_op(&e));
    const fault_case fc = {"csv eval", sample_nothing, eval_op, eval_intact, sample_nothing, 0};
    sweep(&fc, &e);
    zgt_remove_dir(c.root);
}

TEST(alloc_faults_training_run_resume) { sweep_run(false, false, false); }
TEST(alloc_faults_gpt_training_run_resume) { sweep_run(true, false, false); }
TEST(alloc_faults_csv_training_run_resume) { sweep_run(false, true, false); }
/* --ddp (a world of one): the zg_ddp, the shares' slices. MPI is
 * initialised for this case and finalised after it. */
/* Open MPI keeps what MPI_Init allocates until the process ends, partly
 * in components unloaded at MPI_Finalize, whose frames LeakSanitizer
 * cannot name for tests/lsan.supp in a singleton (the mpirun tests unwind
 * fully instead); so init and finalize run outside the leak check, and
 * every allocation of the sweep stays inside it. */
static void mpi_outside_leak_check(bool init) {
#ifdef ZGT_LSAN
    __lsan_disable();
#endif
    CHECK_OK(init ? zg_dist_init(NULL, NULL) : zg_dist_finalize());
#ifdef ZGT_LSAN
    __lsan_enable();
#endif
}

TEST(alloc_faults_ddp_training_run_resume) {
    if (!zg_dist_available()) return;
    mpi_outside_leak_check(true);
    sweep_run(false, false, true);
    mpi_outside_leak_check(false);
}

/* ---- schedulers ------------------------------------------------------------------ */

/* A scheduler built from a spec, stepped (with more than 8 groups its
 * buffers are on the heap; a ReduceLROnPlateau grows with a new group), or
 * loading a state: a failure leaves the groups' lrs and momenta (and the
 * scheduler's state) as they were; a retry gives the lrs of a run that
 * never failed. */
typedef enum { SCHED_BUILD, SCHED_STEP, SCHED_LOAD } sched_op_kind;

#define SCHED_GROUPS 10

typedef struct {
    const char *spec;
    sched_op_kind kind;
    int n_groups;
    bool add_group; /* one more group after the scheduler is made */
    zg_tensor *p[SCHED_GROUPS + 1];
    zg_optim *opt;
    zg_sched *s;
    char *before; /* the scheduler's state before the op */
    double lr_before[SCHED_GROUPS + 1], mom_before[SCHED_GROUPS + 1], lr_done[SCHED_GROUPS + 1];
} sched_ctx;

static int sched_advance(zg_sched *s) { return zg_sched_needs_metric(s) ? zg_sched_step_metric(s, 1.0) : zg_sched_step(s); }

static void sched_lrs(const sched_ctx *c, double *lr, double *mom) {
    for (int g = 0; g < zg_optim_num_groups(c->opt); g++) {
        lr[g] = zg_optim_get_hparam(c->opt, g, ZG_HP_LR);
        if (mom) mom[g] = zg_optim_get_hparam(c->opt, g, ZG_HP_MOMENTUM);
    }
}

static void sched_setup(void *p) {
    sched_ctx *c = p;
    zg_param_group groups[SCHED_GROUPS + 1];
    zg_hp hp[SCHED_GROUPS + 1];
    for (int g = 0; g <= c->n_groups; g++) {
        c->p[g] = zg_zeros((const int64_t[]){2}, 1);
        zg_tensor_set_requires_grad(c->p[g], true);
        hp[g] = (zg_hp){ZG_HP_LR, 0.01 * (g + 1)};
        if (g < c->n_groups) groups[g] = (zg_param_group){&c->p[g], 1, &hp[g], 1};
    }
    zg_optim_config oc = zg_optim_defaults(ZG_SGD);
    oc.momentum = 0.9;
    c->opt = zg_optim_new_groups(ZG_SGD, groups, c->n_groups, &oc);
    c->s = NULL;
    c->before = NULL;
    if (c->kind != SCHED_BUILD) {
        c->s = zg_sched_from_spec(c->opt, c->spec, 50);
        CHECK_OK(sched_advance(c->s));
        CHECK_OK(sched_advance(c->s));
        zg_param_group more = {&c->p[c->n_groups], 1, &hp[c->n_groups], 1};
        if (c->add_group) CHECK_OK(zg_optim_add_param_group(c->opt, &more));
        c->before = zg_sched_state_json(c->s);
        CHECK(c->before != NULL);
    }
    sched_lrs(c, c->lr_before, c->mom_before);
}

static int sched_op(void *p) {
    sched_ctx *c = p;
    if (c->kind == SCHED_BUILD) {
        c->s = zg_sched_from_spec(c->opt, c->spec, 50);
        return c->s ? ZG_OK : ZG_ERR_NOMEM;
    }
    return c->kind == SCHED_STEP ? sched_advance(c->s) : zg_sched_load_state_json(c->s, c->before);
}

static void sched_intact(void *p) {
    sched_ctx *c = p;
    double lr[SCHED_GROUPS + 1], mom[SCHED_GROUPS + 1];
    sched_lrs(c, lr, mom);
    const int n = zg_optim_num_groups(c->opt);
    CHECK(!memcmp(lr, c->lr_before, (size_t)n * sizeof *lr) && !memcmp(mom, c->mom_before, (size_t)n * sizeof *mom));
    if (c->before) {
        char *now = zg_sched_state_json(c->s);
        CHECK(now && !strcmp(now, c->before));
        free(now);
    }
    CHECK_OK(sched_op(c));
    sched_lrs(c, lr, NULL);
    CHECK(!memcmp(lr, c->lr_done, (size_t)n * sizeof *lr));
}

static void sched_teardown(void *p) {
    sched_ctx *c = p;
    zg_sched_free(c->s);
    zg_optim_free(c->opt);
    for (int g = 0; g <= c->n_groups; g++) zg_tensor_free(c->p[g]);
    free(c->before);
}

static void sweep_sched(const char *spec, sched_op_kind kind, int n_groups, bool add_group) {
    sched_ctx c = {.spec = spec, .kind = kind, .n_groups = n_groups, .add_group = add_group};
    sched_setup(&c);
    CHECK_OK(sched_op(&c));
    sched_lrs(&c, c.lr_done, NULL);
    sched_teardown(&c);
    char name[160];
    snprintf(name, sizeof name, "%s %s", kind == SCHED_BUILD ? "build" : kind == SCHED_STEP ? "step" : "load", spec);
    const fault_case fc = {name, sched_setup, sched_op, sched_intact, sched_teardown, 0};
    sweep(&fc, &c);
}

TEST(alloc_faults_scheduler_build) {
    sweep_sched("chained:constant:2,factor=0.5|exponential:0.9|onecycle:0.5", SCHED_BUILD, 3, false);
    sweep_sched("warmup-cosine:3", SCHED_BUILD, 2, false);
    sweep_sched("multistep:3,5,gamma=0.5", SCHED_BUILD, 1, false);
    sweep_sched("cosine-restarts:3,t_mult=2", SCHED_BUILD, 1, false);
    sweep_sched("plateau:2,mode=max", SCHED_BUILD, 2, false);
}

TEST(alloc_faults_scheduler_step_and_load) {
    sweep_sched("chained:linear:4|cosine-restarts:3|onecycle:0.5", SCHED_STEP, SCHED_GROUPS, false);
    sweep_sched("plateau:0,factor=0.5", SCHED_STEP, 3, true);
    sweep_sched("chained:linear:4|cosine-restarts:3|onecycle:0.5", SCHED_LOAD, 3, false);
    sweep_sched("plateau:0,factor=0.5", SCHED_LOAD, 3, false);
    sweep_sched("multistep:1,3,3", SCHED_LOAD, 1, false);
}
