/* Internal structures and helpers shared by the layers. Not installed. */
#ifndef ZG_INTERNAL_H
#define ZG_INTERNAL_H

#include "zgrad.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ---------------------------------------------------------- */

/* Sets the error text and returns `code` (for `return zg__fail(...)`). */
int zg__fail(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Same, for functions that return a pointer: returns NULL. */
void *zg__fail_null(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* "[2,3,4]" into buf (for messages). */
const char *zg__shape_str(const zg_tensor *t, char *buf, size_t n);
#define ZG_SHAPE_BUF 96

/* ---- arena ------------------------------------------------------------ */

/* 64-byte aligned bump allocation from this thread's step arena; never
 * NULL unless the system is out of memory. Memory is NOT zeroed. */
void *zg__arena_alloc(size_t nbytes);
void *zg__arena_calloc(size_t nbytes);

/* ---- tensors ---------------------------------------------------------- */

typedef struct zg_storage {
    void *data;
    size_t nbytes;
    uint64_t version; /* bumped by every tracked in-place write */
} zg_storage;

typedef struct zg_hook {
    struct zg_hook *next;
    zg_tensor_hook_fn fn;
    zg_post_accumulate_hook_fn post_fn;
    void *user;
} zg_hook;

struct zg_node;

struct zg_tensor {
    zg_storage *storage;
    int64_t offset; /* in elements */
    int ndim;
    int64_t shape[ZG_MAX_DIMS];
    int64_t numel;
    zg_dtype dtype;
    bool persistent;   /* header (and own_storage) malloc'd */
    bool requires_grad;
    bool retains_grad;
    bool grad_defined; /* .grad is not None */
    struct zg_node *grad_fn; /* NULL for leaves */
    /* .grad buffer; kept (as a cache) while grad_defined is false so that
     * set_to_none does not cost a malloc per step. Persistent for
     * persistent tensors, arena otherwise. */
    zg_tensor *grad;
    zg_hook *hooks;      /* pre-accumulate, in registration order */
    zg_hook *post_hooks; /* post-accumulate (leaves) */
    char *name;          /* malloc'd for persistent tensors */
    zg_storage own_storage; /* used by persistent tensors */

    /* Scratch of the backward pass running on this tensor's graph. */
    uint64_t bw_pass;
    zg_tensor *bw_grad;   /* sum of incoming gradients so far */
    int bw_state;         /* 0 unvisited, 1 visiting, 2 done */
    bool bw_needed;       /* a target lies below this tensor */
    bool bw_target;       /* an explicit input / accumulation target */
    bool bw_owned;        /* bw_grad was allocated by the pass (may be added into) */
    int bw_target_index;  /* for zg_autograd_grad */
};

static inline float *zg__f32(const zg_tensor *t) {
    return (float *)t->storage->data + t->offset;
}
static inline int64_t *zg__i64(const zg_tensor *t) {
    return (int64_t *)t->storage->data + t->offset;
}
static inline size_t zg__dtype_size(zg_dtype d) { return d == ZG_INT64 ? 8 : 4; }

/* New arena tensor (uninitialised / zeroed data). */
zg_tensor *zg__empty(zg_dtype dtype, const int64_t *shape, int ndim);
zg_tensor *zg__zeros(zg_dtype dtype, const int64_t *shape, int ndim);
zg_tensor *zg__empty_like(const zg_tensor *t);
zg_tensor *zg__zeros_like(const zg_tensor *t);
/* Arena view header sharing t's storage. */
zg_tensor *zg__view(const zg_tensor *t, int64_t offset, const int64_t *shape, int ndim);
bool zg__same_shape(const zg_tensor *a, const zg_tensor *b);
/* Validates a shape (0 < ndim? dims >= 0, ndim <= ZG_MAX_DIMS); returns numel or -1. */
int64_t zg__check_shape(const char *fn, const int64_t *shape, int ndim);
/* Wraps a negative dim; -1 and an error if out of range. */
int zg__wrap_dim(const char *fn, int dim, int ndim);
/* NULL / dtype check for op inputs. */
int zg__check_f32(const char *fn, const zg_tensor *t, const char *what);

/* ---- random ----------------------------------------------------------- */

uint64_t zg__rng_next(void);
float zg__rng_uniform(void);  /* [0,1) */
float zg__rng_normal(void);

/* ---- autograd recording ----------------------------------------------- */

#define ZG_NODE_MAX_IN 4
#define ZG_NODE_MAX_SAVED 4

typedef struct zg_node zg_node;
/* Computes the gradients of the node's inputs from gout (the gradient of
 * its output). gin[i] is set only where zg__node_needs(n, i); the results
 * are arena tensors of the input's shape. Runs in no-grad mode. */
typedef int (*zg_backward_fn)(zg_node *n, zg_tensor *gout, zg_tensor **gin);

struct zg_node {
    const char *name;
    zg_backward_fn backward;
    int n_in;
    zg_tensor *in[ZG_NODE_MAX_IN];
    zg_tensor *out;
    int n_saved;
    zg_tensor *saved[ZG_NODE_MAX_SAVED];
    uint64_t saved_version[ZG_NODE_MAX_SAVED];
    bool freed; /* saved tensors released by a backward without retain_graph */
    /* Op arguments. */
    double sc[4];
    int64_t iv[ZG_MAX_DIMS];
    void *extra;
};

/* If grad mode is on and some input requires grad, records a node for
 * `out` (sets out->grad_fn and out->requires_grad) and returns it, else
 * returns NULL (nothing to record). NULL inputs are allowed (skipped). */
zg_node *zg__record(const char *name, zg_backward_fn backward, zg_tensor *out, zg_tensor *const *in,
                    int n_in);
/* Saves a tensor the backward will read (checked against in-place writes). */
void zg__save(zg_node *n, zg_tensor *t);
/* Whether input i needs a gradient in the running backward pass. */
bool zg__node_needs(const zg_node *n, int i);
/* A tensor for the gradient node n gives input i (where zg__node_needs),
 * which the backward must fill completely: a leaf's own .grad buffer when
 * this backward will store into a .grad that is None (so no copy follows),
 * else a new arena tensor of the input's shape. */
zg_tensor *zg__grad_for_input(zg_node *n, int i);

/* Bumps the version counter after an in-place write. */
static inline void zg__bump_version(zg_tensor *t) { t->storage->version++; }

/* ---- shared kernels --------------------------------------------------- */

/* for (int64_t i = 0; i < n; i++) body, split across the OpenMP threads
 * when n >= min. Below min the loop never enters the OpenMP runtime: even
 * a region that an if() clause serialises costs LLVM's runtime a few
 * mallocs, which small tensors would pay on every step. */
#define ZG_PARALLEL_FOR(i, n, min, ...)                                                                     \
    do {                                                                                                   \
        const int64_t zg_pf_n = (n);                                                                       \
        if (zg_pf_n >= (min)) {                                                                            \
            _Pragma("omp parallel for schedule(static)") for (int64_t i = 0; i < zg_pf_n; i++) __VA_ARGS__ \
        } else {                                                                                           \
            for (int64_t i = 0; i < zg_pf_n; i++) __VA_ARGS__                                             \
        }                                                                                                  \
    } while (0)

/* Hot element loops are compiled for AVX-512, AVX2 and baseline x86-64, and
 * the loader picks the best the CPU has. The build turns FMA contraction off
 * (-ffp-contract=off), so every version rounds exactly as the scalar code
 * does and results do not depend on the CPU. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(ZG_NO_CLONES)
#define ZG_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ZG_SIMD_CLONES
#endif

/* Runs `body` (which sees int64_t lo, hi) over [0, n) split into one
 * contiguous chunk per OpenMP thread, or as one chunk below `min`, so a
 * vectorised kernel gets long runs. */
#define ZG_PARALLEL_CHUNKS(lo, hi, n, min, ...)                                                 \
    do {                                                                                     \
        const int64_t zg_pc_n = (n);                                                         \
        const int64_t zg_pc_k = zg_pc_n >= (min) ? (int64_t)zg__max_threads() : 1;             \
        ZG_PARALLEL_FOR(zg_pc_c, zg_pc_k, 2, {                                               \
            const int64_t lo = zg_pc_n * zg_pc_c / zg_pc_k, hi = zg_pc_n * (zg_pc_c + 1) / zg_pc_k; \
            __VA_ARGS__                                                                      \
        });                                                                                  \
    } while (0)
/* omp_get_max_threads(), without making every file include omp.h. */
int zg__max_threads(void);

/* relu(max_pool2d(zg_conv2d(x, w, b, ...), 2)) (without relu when relu is
 * false) as one op, with the same values and gradients as the ops in turn.
 * NULL where it does not apply (invalid arguments, autocast on, a conv
 * output smaller than 2x2) or fails: the caller then runs the ops one by
 * one, which report any error. */
zg_tensor *zg__conv2d_pool2(zg_tensor *x, zg_tensor *w, zg_tensor *b, const int stride[2], const int padding[2],
                            const int dilation[2], int groups, bool relu);

/* Sums g (an arena tensor with the broadcast shape) down to `shape`. */
zg_tensor *zg__sum_to_shape(const zg_tensor *g, const int64_t *shape, int ndim);

#endif
