/* The autograd layer: graph nodes and their recording, the backward pass,
 * a tensor's user-facing grad state, and the per-thread modes that ops
 * consult (grad mode, autocast). The gradient-lifecycle events it and the
 * layers above emit are declared one layer down (tensor/grad_events.h),
 * where a tensor's free emits one too. Not installed. */
#ifndef ZG_AUTOGRAD_INTERNAL_H
#define ZG_AUTOGRAD_INTERNAL_H

#include "../tensor/tensor_internal.h"

/* ---- autograd recording ----------------------------------------------- */

#define ZG_NODE_MAX_IN 4
#define ZG_NODE_MAX_SAVED 4

typedef struct zg__node zg__node;
/* Computes the gradients of the node's inputs from gout (the gradient of
 * its output). gin[i] is set only where zg__node_needs(n, i); the results
 * are arena tensors of the input's shape. Runs in no-grad mode. */
typedef int (*zg__backward_fn)(zg__node *n, zg_tensor *gout, zg_tensor **gin);

struct zg__node {
    const char *name;
    zg__backward_fn backward;
    /* The same gradients computed with the differentiable ops (zg_mul,
     * zg_matmul, ...), so that in grad mode they record a graph of their
     * own: what a create_graph pass runs (zg_autograd_grad_opts). NULL
     * where the op has none yet; such a pass then fails naming the op. */
    zg__backward_fn backward_diff;
    int n_in;
    zg_tensor *in[ZG_NODE_MAX_IN];
    zg_tensor *out;
    int n_saved;
    zg_tensor *saved[ZG_NODE_MAX_SAVED];
    uint64_t saved_version[ZG_NODE_MAX_SAVED];
    bool freed; /* saved tensors released by a backward without retain_graph */
    /* What the backward reads besides tensors: the op's own argument struct
     * (ZG_RECORD / ZG_NODE_ARGS), zeroed, in the arena beside the node;
     * NULL for ops that need none. */
    void *args;
};

/* If grad mode is on and some input requires grad, records a node for
 * `out` (sets out->grad_fn and out->requires_grad) and returns it, else
 * returns NULL (nothing to record). NULL inputs are allowed (skipped). */
zg__node *zg__record(const char *name, zg__backward_fn backward, zg_tensor *out, zg_tensor *const *in,
                     int n_in);
/* The same with room for args_size bytes of arguments (n->args). */
zg__node *zg__record_args(const char *name, zg__backward_fn backward, zg_tensor *out, zg_tensor *const *in, int n_in,
                          size_t args_size);
/* An op declares `typedef struct {...} foo_args;`, records with
 * ZG_RECORD(foo_args, name, backward, out, in, n_in) and reads
 * ZG_NODE_ARGS(n, foo_args) in its backward: named fields, typed, sized by
 * the op. (The type comes first: `in` is often a compound literal whose
 * commas a macro would split.) */
#define ZG_RECORD(type, ...) zg__record_args(__VA_ARGS__, sizeof(type))
#define ZG_NODE_ARGS(n, type) ((type *)(n)->args)
/* Gives n (when not NULL) its differentiable backward (n->backward_diff). */
void zg__node_set_double_backward(zg__node *n, zg__backward_fn backward_diff);
/* Saves a tensor the backward will read (checked against in-place writes). */
void zg__save(zg__node *n, zg_tensor *t);
/* Whether input i needs a gradient in the running backward pass. */
bool zg__node_needs(const zg__node *n, int i);
/* A tensor for the gradient node n gives input i (where zg__node_needs),
 * which the backward must fill completely: a leaf's own .grad buffer when
 * this backward will store into a .grad that is None (so no copy follows),
 * else a new arena tensor of the input's shape. */
zg_tensor *zg__grad_for_input(zg__node *n, int i);

/* The name of an op's node: base itself for float32, else base with the
 * autocast type appended ("linear_bf16"), in arena memory (base if that
 * fails). */
const char *zg__autocast_node_name(const char *base, zg_autocast_type t);

/* t's grad (NULL when None) for library code: the public zg_tensor_grad
 * is the user's read, which emits a read event (the sanitizer checks it for
 * scaled grads). */
static inline zg_tensor *zg__grad_unchecked(const zg_tensor *t) { return t && t->grad_defined ? t->grad : NULL; }

#endif
