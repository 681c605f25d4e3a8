/* Recording the graph: each op that has an input requiring grad (in grad
 * mode) gets a node that points to its inputs and holds what its backward
 * reads. Nodes live in the step arena. */
#include "autograd_internal.h"

#include <assert.h>

zg__node *zg__record_args(const char *name, zg__backward_fn backward, zg_tensor *out, zg_tensor *const *in, int n_in,
                          size_t args_size) {
    if (!zg_grad_enabled() || !out) return NULL;
    bool any = false;
    for (int i = 0; i < n_in; i++) any |= in[i] && in[i]->requires_grad;
    if (!any) return NULL;
    /* One arena block: the node, then its arguments 16-byte aligned. */
    const size_t head = (sizeof(zg__node) + 15) / 16 * 16;
    zg__node *n = zg__arena_calloc(head + args_size);
    if (!n) return NULL;
    n->args = args_size ? (char *)n + head : NULL;
    n->name = name;
    n->backward = backward;
    n->n_in = n_in;
    for (int i = 0; i < n_in; i++) n->in[i] = in[i];
    n->out = out;
    out->grad_fn = n;
    out->requires_grad = true;
    return n;
}

zg__node *zg__record(const char *name, zg__backward_fn backward, zg_tensor *out, zg_tensor *const *in, int n_in) {
    return zg__record_args(name, backward, out, in, n_in, 0);
}

void zg__node_set_double_backward(zg__node *n, zg__backward_fn backward_diff) {
    if (n) n->backward_diff = backward_diff;
}

void zg__save(zg__node *n, zg_tensor *t) {
    if (!n || !t) return;
    assert(n->n_saved < ZG_NODE_MAX_SAVED);
    n->saved[n->n_saved] = t;
    n->saved_version[n->n_saved] = t->storage->version;
    n->n_saved++;
}
