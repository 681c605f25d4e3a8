/* The tensor layer: storage, the tensor header, the step arena, the
 * generator. Everything above builds on these; nothing here knows about
 * graphs, ops or files. Not installed. */
#ifndef ZG_TENSOR_INTERNAL_H
#define ZG_TENSOR_INTERNAL_H

#include "../util/util_internal.h"
#include "grad_events.h"

/* ---- arena ------------------------------------------------------------ */

/* 64-byte aligned bump allocation from this thread's step arena; never
 * NULL unless the system is out of memory. Memory is NOT zeroed. */
void *zg__arena_alloc(size_t nbytes);
void *zg__arena_calloc(size_t nbytes);

/* ---- recycling the gradients of a backward pass (recycle.c) ------------- */

/* While on (this thread), the data of new arena tensors comes first from
 * the buffers given back by zg__recycle_put, and is marked recyclable.
 * Returns the previous setting. */
bool zg__recycle_enable(bool on);
bool zg__recycle_on(void);
/* A free buffer of exactly align64(nbytes) bytes (*pos: the arena mark
 * where it began), or NULL. */
void *zg__recycle_take(size_t nbytes, size_t *pos);
struct zg__storage;
/* Gives s's data back for reuse within the step: only once nothing of the
 * pass can read it (s->recyclable, no pending gradient refers to it). */
void zg__recycle_put(struct zg__storage *s);
/* Forgets the free buffers at or above an arena mark (the arena's release
 * and reset hand that memory out again). */
void zg__recycle_forget_from(size_t mark);

/* ---- tensors ---------------------------------------------------------- */

typedef struct zg__storage {
    void *data;
    size_t nbytes;
    uint64_t version; /* bumped by every tracked in-place write */
    /* Gradient buffers of a backward pass (recycle.c): data allocated
     * while recycling was on, where in the arena (a mark) it began, and
     * how many pending gradients of the pass refer to it. */
    bool recyclable;
    bool recycled;
    int32_t bw_refs;
    size_t arena_pos;
} zg__storage;

typedef struct zg__hook {
    struct zg__hook *next;
    zg_tensor_hook_fn fn;
    zg_post_accumulate_hook_fn post_fn;
    void *user;
} zg__hook;

/* Frees a hook list (of a persistent tensor). */
void zg__hooks_free(zg__hook *h);

struct zg__node;

struct zg_tensor {
    zg__storage *storage;
    int64_t offset; /* in elements */
    int ndim;
    int64_t shape[ZG_MAX_DIMS];
    int64_t numel;
    zg_dtype dtype;
    bool persistent;   /* header (and own_storage) malloc'd */
    bool requires_grad;
    bool retains_grad;
    bool grad_defined; /* .grad is not None */
    bool watched;      /* a grad-event listener keeps state keyed by this tensor: its free is told */
    struct zg__node *grad_fn; /* NULL for leaves */
    /* .grad buffer; kept (as a cache) while grad_defined is false so that
     * set_to_none does not cost a malloc per step. Persistent for
     * persistent tensors, arena otherwise. */
    zg_tensor *grad;
    zg__hook *hooks;      /* pre-accumulate, in registration order */
    zg__hook *post_hooks; /* post-accumulate (leaves) */
    char *name;          /* malloc'd for persistent tensors */
    zg__storage own_storage; /* used by persistent tensors */

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

/* Bumps the version counter after an in-place write. */
static inline void zg__bump_version(zg_tensor *t) { t->storage->version++; }

/* "[2,3,4]" into buf (for messages). */
const char *zg__shape_str(const zg_tensor *t, char *buf, size_t n);
#define ZG_SHAPE_BUF 96

/* ---- random ----------------------------------------------------------- */

uint64_t zg__rng_next(void);
float zg__rng_uniform(void);  /* [0,1) */
float zg__rng_normal(void);

#endif
