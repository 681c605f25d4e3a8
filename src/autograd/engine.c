/* The backward pass. From the roots, a depth-first walk over the nodes'
 * inputs gives a topological order (reverse post-order): every tensor comes
 * after all tensors computed from it, so when it is reached the sum of its
 * incoming gradients is complete. Each tensor is then processed once:
 * hooks on the summed gradient, accumulation into .grad (leaves, retained
 * non-leaves) or capture (autograd_grad), then its node's backward. */
#include "autograd_internal.h"

static _Thread_local uint64_t pass_counter;
static _Thread_local uint64_t cur_pass;
/* The pass stores into .grad (backward, not autograd_grad), into every
 * leaf (no inputs= list). */
static _Thread_local bool cur_accumulate, cur_all_leaves;

/* Callbacks queued by zg_autograd_queue_callback during the running pass
 * (in the arena, which outlives the pass), run when it ends. in_pass tells
 * a call from a hook from one outside any pass. */
typedef struct end_cb {
    struct end_cb *next;
    zg_backward_callback_fn fn;
    void *user;
} end_cb;
static _Thread_local end_cb *cb_head, **cb_tail;
static _Thread_local bool in_pass;

int zg_autograd_queue_callback(zg_backward_callback_fn fn, void *user) {
    if (!fn) return zg__fail(ZG_ERR_ARG, "zg_autograd_queue_callback: fn is NULL");
    if (!in_pass)
        return zg__fail(ZG_ERR_STATE, "zg_autograd_queue_callback: no backward pass is running; queue the callback "
                                      "from a hook during zg_backward");
    end_cb *c = zg__arena_alloc(sizeof *c);
    if (!c) return zg__fail(ZG_ERR_NOMEM, "zg_autograd_queue_callback: out of memory");
    *c = (end_cb){NULL, fn, user};
    *cb_tail = c;
    cb_tail = &c->next;
    return ZG_OK;
}

/* The queued callbacks, in order; a callback may queue another, which runs
 * after it. */
static int run_end_callbacks(const char *fn) {
    for (end_cb *c = cb_head; c; c = c->next) {
        int rc = c->fn(c->user);
        if (rc < 0) {
            if (!zg_last_error()[0]) zg_set_error("%s: a callback queued for the end of backward failed", fn);
            return rc;
        }
    }
    return ZG_OK;
}

static void touch(zg_tensor *t) {
    if (t->bw_pass == cur_pass) return;
    t->bw_pass = cur_pass;
    t->bw_grad = NULL;
    t->bw_state = 0;
    t->bw_needed = false;
    t->bw_target = false;
    t->bw_owned = false;
    t->bw_target_index = -1;
}

bool zg__node_needs(const zg__node *n, int i) {
    const zg_tensor *t = n->in[i];
    return t && t->requires_grad && t->bw_pass == cur_pass && t->bw_needed;
}

/* ---- recycling dead gradients ------------------------------------------ */

/* Without create_graph, once a tensor's node has run, the gradient it
 * consumed is dead unless a pending gradient of another tensor still
 * refers to its storage (a pass-through, a view, the same tensor handed to
 * two inputs): bw_refs counts those. The storages that may have died while
 * one tensor was processed are collected here and given back to the
 * arena's free list afterwards, when no node is between reading and
 * writing them. .grad buffers are never recyclable. */
#define DEAD_MAX (2 * ZG_NODE_MAX_IN + 1)
static _Thread_local zg__storage *dead[DEAD_MAX];
static _Thread_local int n_dead;

static void ref_grad(zg_tensor *g) {
    if (g) g->storage->bw_refs++;
}

/* g may have died: looked at again once the tensor is processed. */
static void maybe_dead(zg_tensor *g) {
    if (g && g->storage->recyclable && n_dead < DEAD_MAX) dead[n_dead++] = g->storage;
}

static void unref_grad(zg_tensor *g) {
    if (g && g->storage->bw_refs > 0) g->storage->bw_refs--;
    maybe_dead(g);
}

/* Once a tensor is processed: its dead storages go back to the free list
 * (when recycling is on) and the list of candidates starts over. */
static void give_back_dead(void) {
    if (zg__recycle_on())
        for (int i = 0; i < n_dead; i++) zg__recycle_put(dead[i]);
    n_dead = 0;
}

static zg_tensor *copy_arena(const zg_tensor *g) {
    zg_tensor *c = zg__empty_like(g);
    if (c) memcpy(zg__f32(c), zg__f32(g), (size_t)g->numel * sizeof(float));
    return c;
}

/* A leaf whose .grad is None, with a cached buffer of its shape, no
 * pre-accumulate hooks and no gradient yet in this pass: the node's
 * backward may write straight into the buffer, which accumulate() then
 * only marks defined. It becomes the pending gradient at once, so a second
 * request (the leaf twice among a node's inputs, or a later node) gets an
 * arena tensor and add_pending() sums as usual. */
zg_tensor *zg__grad_for_input(zg__node *n, int i) {
    zg_tensor *t = n->in[i];
    const bool stores = cur_accumulate && !t->grad_fn && (t->bw_target || cur_all_leaves) && !t->grad_defined &&
                        !t->hooks && !t->bw_grad;
    if (stores && !t->grad && t->persistent) {
        /* The first backward creates the buffer accumulate() would: the
         * arena then sees the same requests in every step. */
        t->grad = zg_tensor_new(ZG_FLOAT32, t->shape, t->ndim);
        if (!t->grad) return NULL;
    }
    if (stores && t->grad && zg__same_shape(t->grad, t)) {
        t->bw_grad = t->grad;
        t->bw_owned = false;
        return t->grad;
    }
    return zg__empty_like(t);
}

/* A sum of two gradients of equal shape recorded in the graph (the sum of
 * a create_graph pass): each addend receives the incoming gradient as it
 * is, which needs no op, so the node is its own differentiable backward. */
static int grad_sum_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    for (int i = 0; i < 2; i++)
        if (zg__node_needs(n, i)) gin[i] = g;
    return ZG_OK;
}

static zg_tensor *graph_sum(zg_tensor *a, zg_tensor *b) {
    zg_tensor *s = zg__empty_like(a);
    if (!s) return NULL;
    float *d = zg__f32(s);
    const float *x = zg__f32(a), *y = zg__f32(b);
    for (int64_t i = 0; i < s->numel; i++) d[i] = x[i] + y[i];
    zg__node_set_double_backward(zg__record("grad_sum", grad_sum_backward, s, (zg_tensor *[]){a, b}, 2),
                                 grad_sum_backward);
    return s;
}

/* t seen with like's shape (same numel), recorded in grad mode: its
 * gradient is the incoming one seen with t's shape, the same function,
 * which records in grad mode too. */
static zg_tensor *graph_view(zg_tensor *t, const zg_tensor *like);
static int graph_view_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    return (gin[0] = graph_view(g, n->in[0])) ? ZG_OK : ZG_ERR_NOMEM;
}

static zg_tensor *graph_view(zg_tensor *t, const zg_tensor *like) {
    if (zg__same_shape(t, like)) return t;
    zg_tensor *v = zg__view(t, 0, like->shape, like->ndim);
    if (v) zg__node_set_double_backward(zg__record("view", graph_view_backward, v, &t, 1), graph_view_backward);
    return v;
}

/* Adds g into t's pending gradient. Without create_graph, in place, but
 * never into a tensor the pass does not own (an op's backward may hand the
 * same tensor to two inputs, as zg_add(x, x) does); with it, out of place
 * and recorded, so that the sum is differentiable. */
static int add_pending(zg_tensor *t, zg_tensor *g, bool create_graph) {
    if (!t->bw_grad) {
        t->bw_grad = g;
        t->bw_owned = false;
        ref_grad(g);
        return ZG_OK;
    }
    if (create_graph) {
        zg_tensor *s = graph_sum(t->bw_grad, g);
        if (!s) return ZG_ERR_NOMEM;
        t->bw_grad = s;
        return ZG_OK;
    }
    if (t->bw_grad == g && g == t->grad) return ZG_OK; /* the leaf's .grad buffer, handed out above */
    if (!t->bw_owned) {
        zg_tensor *c = copy_arena(t->bw_grad);
        if (!c) return ZG_ERR_NOMEM;
        unref_grad(t->bw_grad);
        ref_grad(c);
        t->bw_grad = c;
        t->bw_owned = true;
    }
    float *d = zg__f32(t->bw_grad);
    const float *s = zg__f32(g);
    for (int64_t i = 0; i < g->numel; i++) d[i] += s[i];
    maybe_dead(g); /* summed in: nothing new refers to g */
    return ZG_OK;
}

/* .grad += g, creating it (reusing the cached buffer) when None. */
static int accumulate(zg_tensor *t, const zg_tensor *g) {
    if (!t->grad || !zg__same_shape(t->grad, t)) {
        zg_tensor *old = t->grad;
        zg_tensor *ng = t->persistent ? zg_tensor_new(ZG_FLOAT32, t->shape, t->ndim) : zg__empty_like(t);
        if (!ng) return ZG_ERR_NOMEM;
        if (old) zg_tensor_free(old);
        ng->storage->recyclable = false; /* the user's from now on */
        t->grad = ng;
        t->grad_defined = false;
    }
    float *d = zg__f32(t->grad);
    const float *s = zg__f32(g);
    if (!t->grad_defined) {
        if (d != s) memcpy(d, s, (size_t)g->numel * sizeof(float));
        t->grad_defined = true;
    } else {
        for (int64_t i = 0; i < g->numel; i++) d[i] += s[i];
    }
    zg__bump_version(t->grad);
    return ZG_OK;
}

static int run_hooks(const char *fn, zg_tensor *t, zg_tensor **g) {
    if (t->hooks) zg__emit_hook_ran(); /* event: the user sees this pass's grads */
    for (zg__hook *h = t->hooks; h; h = h->next) {
        /* A hook may keep what it sees or returns until the step ends. */
        (*g)->storage->recyclable = false;
        zg_tensor *r = h->fn(*g, h->user);
        if (r && r != ZG_HOOK_FAIL) r->storage->recyclable = false;
        if (r == ZG_HOOK_FAIL) {
            if (!zg_last_error()[0]) zg_set_error("%s: a hook on tensor '%s' failed", fn, zg_tensor_name(t));
            return ZG_ERR_STATE;
        }
        if (!r) continue;
        if (r->dtype != ZG_FLOAT32 || !zg__same_shape(r, *g)) {
            char a[ZG_SHAPE_BUF], b[ZG_SHAPE_BUF];
            return zg__fail(ZG_ERR_SHAPE, "%s: hook on tensor '%s' returned a gradient of shape %s, expected %s", fn,
                            zg_tensor_name(t), zg__shape_str(r, a, sizeof a), zg__shape_str(*g, b, sizeof b));
        }
        *g = r;
    }
    return ZG_OK;
}

static int check_node(const char *fn, const zg__node *n) {
    if (n->freed && n->n_saved > 0)
        return zg__fail(ZG_ERR_STATE,
                        "%s: trying to backward through the graph a second time: the tensors saved by '%s' were "
                        "freed by an earlier backward. Pass retain_graph=true to the first backward if you need "
                        "both, or detach() state (e.g. an RNN's hidden state) carried over from an earlier step",
                        fn, n->name);
    for (int i = 0; i < n->n_saved; i++)
        if (n->saved[i]->storage->version != n->saved_version[i])
            return zg__fail(ZG_ERR_STATE,
                            "%s: a tensor saved by '%s' for its backward was modified in place (version %llu, saved "
                            "at version %llu); compute with an out-of-place op or clone it first",
                            fn, n->name, (unsigned long long)n->saved[i]->storage->version,
                            (unsigned long long)n->saved_version[i]);
    return ZG_OK;
}

typedef struct {
    zg_tensor **order; /* post-order */
    int n, cap;
} topo;

static int topo_push(topo *tp, zg_tensor *t) {
    if (tp->n == tp->cap) {
        int cap = tp->cap ? tp->cap * 2 : 256;
        zg_tensor **o = zg__arena_alloc((size_t)cap * sizeof *o);
        if (!o) return ZG_ERR_NOMEM;
        if (tp->n) memcpy(o, tp->order, (size_t)tp->n * sizeof *o);
        tp->order = o;
        tp->cap = cap;
    }
    tp->order[tp->n++] = t;
    return ZG_OK;
}

/* Iterative DFS (graphs of long unrolled loops are deep). */
static int visit(zg_tensor *root, topo *tp, bool accumulate_leaves) {
    typedef struct {
        zg_tensor *t;
        int next_in;
    } frame;
    int cap = 256, sp = 0;
    frame *st = zg__arena_alloc((size_t)cap * sizeof *st);
    if (!st) return ZG_ERR_NOMEM;
    touch(root);
    if (root->bw_state) return ZG_OK;
    root->bw_state = 1;
    st[sp++] = (frame){root, 0};
    while (sp) {
        frame *f = &st[sp - 1];
        zg__node *n = f->t->grad_fn;
        if (n && f->next_in < n->n_in) {
            zg_tensor *c = n->in[f->next_in++];
            if (!c || !c->requires_grad) continue;
            touch(c);
            if (c->bw_state) continue; /* done (or on the stack: impossible in a DAG) */
            c->bw_state = 1;
            if (sp == cap) {
                frame *ns = zg__arena_alloc((size_t)cap * 2 * sizeof *ns);
                if (!ns) return ZG_ERR_NOMEM;
                memcpy(ns, st, (size_t)sp * sizeof *st);
                st = ns;
                cap *= 2;
            }
            st[sp++] = (frame){c, 0};
            continue;
        }
        zg_tensor *t = f->t;
        bool needed = t->bw_target || (!n && accumulate_leaves && t->requires_grad);
        if (n)
            for (int i = 0; i < n->n_in; i++) needed |= n->in[i] && n->in[i]->bw_pass == cur_pass && n->in[i]->bw_needed;
        t->bw_needed = needed;
        t->bw_state = 2;
        sp--;
        if (topo_push(tp, t)) return ZG_ERR_NOMEM;
    }
    return ZG_OK;
}

typedef struct {
    const char *fn;
    zg_tensor *const *roots;
    const zg_tensor *const *root_grads;
    int n_roots;
    zg_tensor *const *inputs;
    int n_inputs;
    bool accumulate; /* backward: into .grad; autograd_grad: capture */
    bool retain_graph;
    /* Grad mode on, each node's backward_diff, sums recorded: the
     * gradients carry a graph of their own. */
    bool create_graph;
    zg_tensor **captured;
} pass_args;

/* Validates the roots, their gradients and the inputs before the pass
 * changes anything. */
static int check_pass(const pass_args *a) {
    const char *fn = a->fn;
    for (int r = 0; r < a->n_roots; r++) {
        zg_tensor *root = a->roots[r];
        if (!root) return zg__fail(ZG_ERR_ARG, "%s: output %d is NULL", fn, r);
        if (!root->requires_grad)
            return zg__fail(ZG_ERR_STATE, "%s: output %d does not require grad and has no grad_fn", fn, r);
        const zg_tensor *g = a->root_grads ? a->root_grads[r] : NULL;
        char b1[ZG_SHAPE_BUF], b2[ZG_SHAPE_BUF];
        if (!g && root->numel != 1)
            return zg__fail(ZG_ERR_SHAPE,
                            "%s: grad can be implicitly created only for scalar outputs; output %d has shape %s, "
                            "pass a gradient of that shape",
                            fn, r, zg__shape_str(root, b1, sizeof b1));
        if (g && (g->dtype != ZG_FLOAT32 || g->numel != root->numel))
            return zg__fail(ZG_ERR_SHAPE, "%s: gradient of shape %s given for output %d of shape %s", fn,
                            zg__shape_str(g, b1, sizeof b1), r, zg__shape_str(root, b2, sizeof b2));
    }
    for (int i = 0; i < a->n_inputs; i++) {
        zg_tensor *x = a->inputs[i];
        if (!x) return zg__fail(ZG_ERR_ARG, "%s: input %d is NULL", fn, i);
        if (!x->requires_grad) return zg__fail(ZG_ERR_STATE, "%s: input %d does not require grad", fn, i);
    }
    return ZG_OK;
}

/* Each root's incoming gradient: the given one, or 1 for a scalar. A copy
 * in the arena (the caller may free or change theirs before the graph is
 * used), except for a given one that requires grad in a create_graph pass:
 * that one is used itself, so that the gradients are differentiable with
 * respect to it. */
static int seed_roots(const pass_args *a) {
    for (int r = 0; r < a->n_roots; r++) {
        zg_tensor *root = a->roots[r];
        const zg_tensor *g = a->root_grads ? a->root_grads[r] : NULL;
        const bool as_is = g && a->create_graph && g->requires_grad;
        zg_tensor *seed = as_is ? graph_view((zg_tensor *)g, root) : zg__empty_like(root);
        if (!seed) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", a->fn);
        if (!as_is)
            for (int64_t i = 0; i < seed->numel; i++) zg__f32(seed)[i] = g ? zg__f32(g)[i] : 1.0f;
        if (add_pending(root, seed, a->create_graph)) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", a->fn);
    }
    return ZG_OK;
}

/* t's complete gradient g (after its hooks) goes where the pass sends it:
 * accumulated into .grad (then the post-accumulate hooks of a leaf run),
 * or captured for zg_autograd_grad. */
static int deliver(const pass_args *a, zg_tensor *t, zg_tensor *g) {
    const char *fn = a->fn;
    zg__node *n = t->grad_fn;
    if (!a->accumulate) {
        /* With create_graph, the gradient itself: its graph is the point. */
        if (t->bw_target) a->captured[t->bw_target_index] = a->create_graph ? g : copy_arena(g);
        return ZG_OK;
    }
    bool into_grad = t->bw_target || (!n && a->n_inputs == 0) || (n && t->retains_grad);
    if (!into_grad) return ZG_OK;
    zg__emit_accumulate(t); /* event: the leaf gets fresh grads */
    if (accumulate(t, g)) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    if (n) return ZG_OK;
    if (t->post_hooks) zg__emit_hook_ran(); /* event: the user sees this pass's grads */
    for (zg__hook *h = t->post_hooks; h; h = h->next) {
        int rc = h->post_fn(t, h->user);
        if (rc < 0) {
            if (!zg_last_error()[0]) zg_set_error("%s: a post-accumulate hook on '%s' failed", fn, zg_tensor_name(t));
            return rc;
        }
    }
    return ZG_OK;
}

/* Runs node n's backward on its output's gradient g and hands each input
 * that needs one its gradient. */
static int run_node(const pass_args *a, zg__node *n, zg_tensor *g) {
    const char *fn = a->fn;
    bool any = false;
    for (int i = 0; i < n->n_in; i++) any |= zg__node_needs(n, i);
    if (!any) return ZG_OK;
    int rc = check_node(fn, n);
    if (rc) return rc;
    zg_tensor *gin[ZG_NODE_MAX_IN] = {0};
    rc = (a->create_graph ? n->backward_diff : n->backward)(n, g, gin);
    if (rc) {
        if (!zg_last_error()[0]) zg_set_error("%s: backward of '%s' failed", fn, n->name);
        return rc;
    }
    if (!a->retain_graph) n->freed = true;
    for (int i = 0; i < n->n_in; i++) {
        if (!zg__node_needs(n, i) || !gin[i]) continue;
        if (gin[i]->numel != n->in[i]->numel) {
            char b1[ZG_SHAPE_BUF], b2[ZG_SHAPE_BUF];
            return zg__fail(ZG_ERR_STATE, "%s: internal: '%s' gave a gradient of shape %s for an input of shape %s",
                            fn, n->name, zg__shape_str(gin[i], b1, sizeof b1), zg__shape_str(n->in[i], b2, sizeof b2));
        }
        if (add_pending(n->in[i], gin[i], a->create_graph)) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    }
    return ZG_OK;
}

/* With create_graph, every node that will run needs its backward_diff:
 * checked before the pass runs anything. */
static int check_differentiable(const pass_args *a, const topo *tp) {
    for (int k = 0; k < tp->n; k++) {
        const zg__node *n = tp->order[k]->grad_fn;
        if (!tp->order[k]->bw_needed || !n || n->backward_diff) continue;
        for (int i = 0; i < n->n_in; i++)
            if (zg__node_needs(n, i))
                return zg__fail(ZG_ERR_STATE,
                                "%s: create_graph: the backward of '%s' is not differentiable in zgrad yet, so a "
                                "gradient through it cannot be differentiated again (supported: linear, matmul, "
                                "conv2d, element-wise ops but pow with a tensor exponent, activations, softmax and "
                                "log_softmax, sum and mean, max_dim, reshape, transpose and permute, slice, "
                                "narrow, cat, tril and triu, masked_fill, layer_norm, batch_norm, max/avg/adaptive "
                                "pooling, dropout, embedding, and the losses cross_entropy, nll_loss, mse_loss and "
                                "bce_with_logits); compute this gradient without create_graph",
                                a->fn, n->name);
    }
    return ZG_OK;
}

static int run_pass(const pass_args *a) {
    const char *fn = a->fn;
    cur_pass = ++pass_counter;
    cur_accumulate = a->accumulate;
    cur_all_leaves = a->accumulate && a->n_inputs == 0;

    /* Validate roots and their gradients before touching anything. */
    int rc = check_pass(a);
    if (rc) return rc;
    for (int i = 0; i < a->n_inputs; i++) {
        touch(a->inputs[i]);
        a->inputs[i]->bw_target = true;
        a->inputs[i]->bw_target_index = i;
    }

    topo tp = {0};
    bool acc_leaves = a->accumulate && a->n_inputs == 0;
    for (int r = 0; r < a->n_roots; r++)
        if (visit(a->roots[r], &tp, acc_leaves)) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    if (a->create_graph && (rc = check_differentiable(a, &tp))) return rc;
    if ((rc = seed_roots(a))) return rc;

    /* Reverse topological order: each tensor after all of its consumers,
     * so its gradient is complete when it is visited. */
    for (int k = tp.n - 1; k >= 0; k--) {
        zg_tensor *t = tp.order[k];
        zg_tensor *g = t->bw_grad;
        if (!t->bw_needed || !g) continue;
        if ((rc = run_hooks(fn, t, &g))) return rc;
        if ((rc = deliver(a, t, g))) return rc;
        if (t->grad_fn && (rc = run_node(a, t->grad_fn, g))) return rc;
        unref_grad(t->bw_grad);
        give_back_dead();
    }
    return ZG_OK;
}

/* The pass in its modes: grad mode on only with create_graph (the ops of
 * the backward_diffs then record), autocast off (the products of a
 * create_graph pass run in float32; a low-precision node refuses it). */
static int run_pass_in_modes(const pass_args *a) {
    /* A pass run from a hook of another keeps its own callback queue. */
    end_cb *outer_head = cb_head, **outer_tail = cb_tail;
    const bool outer_in = in_pass;
    cb_head = NULL;
    cb_tail = &cb_head;
    in_pass = true;
    bool prev = zg_set_grad_enabled(a->create_graph);
    int rc = a->create_graph ? zg_autocast_enter(ZG_AUTOCAST_OFF) : ZG_OK;
    if (!rc) {
        /* With create_graph the gradients are part of a graph: kept. */
        const bool outer_recycle = zg__recycle_enable(!a->create_graph);
        n_dead = 0; /* what a failed pass left is not this pass's */
        rc = run_pass(a);
        zg__recycle_enable(outer_recycle);
        if (a->create_graph) zg_autocast_exit();
    }
    zg_set_grad_enabled(prev);
    if (!rc) rc = run_end_callbacks(a->fn);
    cb_head = outer_head;
    cb_tail = outer_tail;
    in_pass = outer_in;
    return rc;
}

int zg_backward(zg_tensor *root, const zg_backward_opts *opts) {
    zg_clear_error();
    if (!root) return zg__fail(ZG_ERR_ARG, "zg_backward: root is NULL");
    if (opts && opts->n_inputs < 0) return zg__fail(ZG_ERR_ARG, "zg_backward: n_inputs < 0");
    if (opts && opts->n_inputs > 0 && !opts->inputs) return zg__fail(ZG_ERR_ARG, "zg_backward: inputs is NULL");
    if (opts && opts->create_graph)
        return zg__fail(ZG_ERR_ARG,
                        "zg_backward: create_graph is not supported: .grad buffers outlive the step's graph, so "
                        "they cannot hold one; take the gradients to differentiate from "
                        "zg_autograd_grad_opts(..., .create_graph = true) and call zg_backward on the loss made "
                        "from them");
    const zg_tensor *g = opts ? opts->grad : NULL;
    pass_args a = {
        .fn = "zg_backward",
        .roots = &root,
        .root_grads = g ? &g : NULL,
        .n_roots = 1,
        .inputs = opts ? opts->inputs : NULL,
        .n_inputs = opts ? opts->n_inputs : 0,
        .accumulate = true,
        .retain_graph = opts && opts->retain_graph,
    };
    zg__emit_backward(root); /* event: a backward starts (of a scaled loss?) */
    return run_pass_in_modes(&a);
}

static int autograd_grad(const char *fn, zg_tensor *const *outputs, int n_outputs, zg_tensor *const *inputs,
                         int n_inputs, zg_tensor **grads, const zg_grad_opts *opts) {
    zg_clear_error();
    if (!outputs || n_outputs <= 0) return zg__fail(ZG_ERR_ARG, "%s: no outputs", fn);
    if (!inputs || n_inputs <= 0) return zg__fail(ZG_ERR_ARG, "%s: no inputs", fn);
    if (!grads) return zg__fail(ZG_ERR_ARG, "%s: grads is NULL", fn);
    for (int i = 0; i < n_inputs; i++) grads[i] = NULL;
    const zg_grad_opts o = opts ? *opts : (zg_grad_opts){0};
    pass_args a = {
        .fn = fn,
        .roots = outputs,
        .root_grads = o.grad_outputs,
        .n_roots = n_outputs,
        .inputs = inputs,
        .n_inputs = n_inputs,
        .accumulate = false,
        /* The graph a create_graph pass differentiated is kept: the new
         * graph reads its saved tensors (PyTorch's default there). */
        .retain_graph = o.retain_graph || o.create_graph,
        .create_graph = o.create_graph,
        .captured = grads,
    };
    int rc = run_pass_in_modes(&a);
    if (rc) return rc;
    for (int i = 0; i < n_inputs; i++) {
        if (grads[i]) continue;
        if (!o.allow_unused)
            return zg__fail(ZG_ERR_STATE,
                            "%s: input %d was not used to compute the outputs (pass allow_unused=true to get NULL)", fn,
                            i);
    }
    return ZG_OK;
}

int zg_autograd_grad(zg_tensor *const *outputs, const zg_tensor *const *grad_outputs, int n_outputs,
                     zg_tensor *const *inputs, int n_inputs, zg_tensor **grads, bool retain_graph, bool allow_unused) {
    const zg_grad_opts o = {.grad_outputs = grad_outputs, .retain_graph = retain_graph, .allow_unused = allow_unused};
    return autograd_grad("zg_autograd_grad", outputs, n_outputs, inputs, n_inputs, grads, &o);
}

int zg_autograd_grad_opts(zg_tensor *const *outputs, int n_outputs, zg_tensor *const *inputs, int n_inputs,
                          zg_tensor **grads, const zg_grad_opts *opts) {
    return autograd_grad("zg_autograd_grad_opts", outputs, n_outputs, inputs, n_inputs, grads, opts);
}
