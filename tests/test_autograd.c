/* Autograd semantics (semantics.md section 2) and zero_grad on tensors
 * (section 3): one case per behaviour. */
#include "harness.h"

TEST(leaf_and_non_leaf) {
    zg_tensor *x = zgt_param_vec((float[]){1, 2}, 2);
    int64_t s[1] = {2};
    zg_tensor *c = zg_ones(s, 1); /* a constant input */
    zg_tensor *y = zg_mul(x, c);
    CHECK(zg_tensor_is_leaf(x) && !zg_tensor_is_leaf(y));
    CHECK(zg_tensor_requires_grad(y));
    CHECK(zg_tensor_grad_fn_name(y) && !strcmp(zg_tensor_grad_fn_name(y), "mul"));
    CHECK(zg_tensor_grad_fn_name(x) == NULL);
    /* Only constants in: nothing to record. */
    zg_tensor *z = zg_mul(c, c);
    CHECK(!zg_tensor_requires_grad(z) && zg_tensor_is_leaf(z));
    /* requires_grad can be changed on leaves only. */
    CHECK_ERR(zg_tensor_set_requires_grad(y, false), "not a leaf");
    zg_tensor *l = zg_tensor_from_data(ZG_INT64, (int64_t[]){1, 2}, s, 1);
    CHECK_ERR(zg_tensor_set_requires_grad(l, true), "only float32");
    zg_tensor_free(x);
    zg_tensor_free(c);
    zg_tensor_free(l);
}

TEST(grad_is_none_until_first_backward_then_added_in_place) {
    zg_tensor *x = zgt_param_vec((float[]){1, 2, 3}, 3);
    CHECK(zg_tensor_grad(x) == NULL);
    CHECK_OK(zg_backward(zg_sum(zg_mul_scalar(x, 2.0f)), NULL));
    zg_tensor *g1 = zg_tensor_grad(x);
    CHECK_PTR(g1);
    float e1[3] = {2, 2, 2};
    CHECK_VALUES(g1, e1, 3, 0);
    float *mem = zg_tensor_data(g1);
    CHECK_OK(zg_backward(zg_sum(zg_mul(x, x)), NULL));
    zg_tensor *g2 = zg_tensor_grad(x);
    CHECK(g2 == g1 && zg_tensor_data(g2) == mem); /* same object, same memory */
    float e2[3] = {4, 6, 8};                      /* 2 + 2x */
    CHECK_VALUES(g2, e2, 3, 1e-6);
    zg_tensor_free(x);
}

TEST(tensor_used_twice_gets_the_sum) {
    /* y = x^2 + 5x at x = 3: dy/dx = 2x + 5 = 11 */
    zg_tensor *x = zgt_param_vec((float[]){3}, 1);
    zg_tensor *y = zg_add(zg_mul(x, x), zg_mul_scalar(x, 5.0f));
    CHECK_OK(zg_backward(y, NULL));
    CHECK_NEAR(zg_tensor_get(zg_tensor_grad(x), 0), 11.0, 0);
    zg_tensor_free(x);
}

TEST(double_backward_with_retain_graph_accumulates) {
    /* x*x backwarded twice: 2x + 2x = [4, 8] at x = [1, 2] */
    zg_tensor *x = zgt_param_vec((float[]){1, 2}, 2);
    zg_tensor *y = zg_sum(zg_mul(x, x));
    CHECK_OK(zg_backward(y, &(zg_backward_opts){.retain_graph = true}));
    CHECK_OK(zg_backward(y, NULL));
    float e[2] = {4, 8};
    CHECK_VALUES(zg_tensor_grad(x), e, 2, 0);
    zg_tensor_free(x);
}

TEST(second_backward_without_retain_graph_fails) {
    zg_tensor *x = zgt_param_vec((float[]){1, 2}, 2);
    zg_tensor *y = zg_sum(zg_mul(x, x));
    CHECK_OK(zg_backward(y, NULL));
    CHECK_ERR(zg_backward(y, NULL), "backward through the graph a second time");
    CHECK(strstr(zg_last_error(), "retain_graph") && strstr(zg_last_error(), "detach"));
    /* The failed pass did not change .grad. */
    float e[2] = {2, 4};
    CHECK_VALUES(zg_tensor_grad(x), e, 2, 0);
    zg_tensor_free(x);
}

TEST(node_that_saved_nothing_can_be_backwarded_twice) {
    zg_tensor *x = zgt_param_vec((float[]){1, 2}, 2);
    zg_tensor *y = zg_sum(zg_add_scalar(x, 1.0f));
    CHECK_OK(zg_backward(y, NULL));
    CHECK_OK(zg_backward(y, NULL));
    float e[2] = {2, 2};
    CHECK_VALUES(zg_tensor_grad(x), e, 2, 0);
    zg_tensor_free(x);
}

TEST(non_scalar_backward_needs_a_gradient) {
    zg_tensor *x = zgt_param_vec((float[]){1, 2, 3}, 3);
    zg_tensor *y = zg_mul(x, x);
    CHECK_ERR(zg_backward(y, NULL), "grad can be implicitly created only for scalar outputs");
    int64_t s[1] = {3};
    zg_tensor *v = zg_tensor_from_data(ZG_FLOAT32, (float[]){1, 0.5f, -1}, s, 1);
    CHECK_OK(zg_backward(y, &(zg_backward_opts){.grad = v}));
    float e[3] = {2, 2, -6}; /* v * 2x */
    CHECK_VALUES(zg_tensor_grad(x), e, 3, 0);
    int64_t s2[1] = {2};
    zg_tensor *bad = zg_zeros(s2, 1);
    zg_tensor *y2 = zg_mul(x, x);
    CHECK_ERR(zg_backward(y2, &(zg_backward_opts){.grad = bad}), "gradient of shape [2]");
    zg_tensor_free(x);
    zg_tensor_free(v);
    zg_tensor_free(bad);
}

TEST(root_that_does_not_require_grad_fails) {
    int64_t s[1] = {2};
    zg_tensor *c = zg_ones(s, 1);
    CHECK_ERR(zg_backward(zg_sum(c), NULL), "does not require grad");
    CHECK_ERR(zg_backward(NULL, NULL), "root is NULL");
    zg_tensor_free(c);
}

TEST(detach_shares_data_without_graph) {
    zg_tensor *x = zgt_param_vec((float[]){1, 2}, 2);
    zg_tensor *y = zg_mul_scalar(x, 3.0f);
    zg_tensor *d = zg_detach(y);
    CHECK(!zg_tensor_requires_grad(d) && zg_tensor_is_leaf(d) && !zg_tensor_grad_fn_name(d));
    CHECK(zg_tensor_data(d) == zg_tensor_data(y));
    /* Gradient flows through y only, not through the detached branch. */
    zg_tensor *z = zg_sum(zg_add(zg_mul(d, x), y));
    CHECK_OK(zg_backward(z, NULL));
    float e[2] = {6, 9}; /* d + 3 */
    CHECK_VALUES(zg_tensor_grad(x), e, 2, 0);
    zg_tensor_free(x);
}

TEST(no_grad_records_nothing_and_nests) {
    zg_tensor *x = zgt_param_vec((float[]){1, 2}, 2);
    CHECK(zg_grad_enabled());
    zg_no_grad_enter();
    zg_no_grad_enter();
    zg_tensor *y = zg_mul(x, x);
    CHECK(!zg_tensor_requires_grad(y) && !zg_tensor_grad_fn_name(y));
    zg_no_grad_exit();
    CHECK(!zg_grad_enabled()); /* still inside the outer scope */
    zg_no_grad_exit();
    CHECK(zg_grad_enabled());
    CHECK(zg_tensor_requires_grad(zg_mul(x, x)));
    bool prev = zg_set_grad_enabled(false);
    CHECK(prev && !zg_tensor_requires_grad(zg_mul(x, x)));
    zg_set_grad_enabled(prev);
    zg_tensor_free(x);
}

TEST(backward_restricted_to_inputs) {
    zg_tensor *a = zgt_param_vec((float[]){2}, 1);
    zg_tensor *b = zgt_param_vec((float[]){5}, 1);
    zg_tensor *y = zg_mul(a, b);
    zg_tensor *only_a[1] = {a};
    CHECK_OK(zg_backward(y, &(zg_backward_opts){.inputs = only_a, .n_inputs = 1}));
    CHECK_NEAR(zg_tensor_get(zg_tensor_grad(a), 0), 5.0, 0);
    CHECK(zg_tensor_grad(b) == NULL);
    zg_tensor_free(a);
    zg_tensor_free(b);
}

TEST(autograd_grad_leaves_dot_grad_alone) {
    zg_tensor *a = zgt_param_vec((float[]){2}, 1);
    zg_tensor *b = zgt_param_vec((float[]){5}, 1);
    zg_tensor *u = zgt_param_vec((float[]){1}, 1); /* not used */
    zg_tensor *y = zg_mul(zg_mul(a, a), b); /* dy/da = 2ab = 20, dy/db = a^2 = 4 */
    zg_tensor *in[3] = {a, b, u};
    zg_tensor *g[3];
    CHECK_ERR(zg_autograd_grad(&y, NULL, 1, in, 3, g, true, false), "input 2 was not used");
    CHECK_OK(zg_autograd_grad(&y, NULL, 1, in, 3, g, false, true));
    CHECK_NEAR(zg_tensor_get(g[0], 0), 20.0, 0);
    CHECK_NEAR(zg_tensor_get(g[1], 0), 4.0, 0);
    CHECK(g[2] == NULL);
    CHECK(zg_tensor_grad(a) == NULL && zg_tensor_grad(b) == NULL);
    zg_tensor_free(a);
    zg_tensor_free(b);
    zg_tensor_free(u);
}

TEST(retain_grad_keeps_a_non_leaf_grad) {
    zg_tensor *x = zgt_param_vec((float[]){1, 2}, 2);
    zg_tensor *h = zg_mul_scalar(x, 3.0f);
    zg_tensor *k = zg_mul_scalar(x, 4.0f);
    CHECK_OK(zg_tensor_retain_grad(h));
    CHECK_OK(zg_backward(zg_sum(zg_add(zg_mul(h, h), k)), NULL));
    float eh[2] = {6, 12}; /* 2h */
    CHECK_VALUES(zg_tensor_grad(h), eh, 2, 1e-6);
    CHECK(zg_tensor_grad(k) == NULL); /* not retained */
    float ex[2] = {22, 40}; /* 3*2h + 4 */
    CHECK_VALUES(zg_tensor_grad(x), ex, 2, 1e-5);
    zg_tensor_free(x);
}

static zg_tensor *scale_hook(zg_tensor *g, void *user) { return zg_mul_scalar(g, *(float *)user); }
static zg_tensor *add_one_hook(zg_tensor *g, void *user) {
    (void)user;
    return zg_add_scalar(g, 1.0f);
}
static zg_tensor *observe_hook(zg_tensor *g, void *user) {
    *(float *)user = zg_tensor_get(g, 0);
    return NULL; /* keep the gradient */
}
static zg_tensor *bad_shape_hook(zg_tensor *g, void *user) {
    (void)g;
    return zg_detach((zg_tensor *)user);
}

TEST(hooks_run_in_order_before_accumulation) {
    zg_tensor *x = zgt_param_vec((float[]){1, 2}, 2);
    float two = 2.0f, seen = 0;
    CHECK_OK(zg_tensor_register_hook(x, scale_hook, &two));
    CHECK_OK(zg_tensor_register_hook(x, add_one_hook, NULL));
    CHECK_OK(zg_tensor_register_hook(x, observe_hook, &seen));
    CHECK_OK(zg_backward(zg_sum(zg_mul_scalar(x, 3.0f)), NULL));
    /* (3 * 2) + 1: scale first, then add (registration order). */
    float e[2] = {7, 7};
    CHECK_VALUES(zg_tensor_grad(x), e, 2, 0);
    CHECK(seen == 7.0f);
    /* The hook sees the incoming gradient, not the accumulated .grad. */
    CHECK_OK(zg_backward(zg_sum(zg_mul_scalar(x, 3.0f)), NULL));
    float e2[2] = {14, 14};
    CHECK_VALUES(zg_tensor_grad(x), e2, 2, 0);
    CHECK(seen == 7.0f);
    zg_tensor_free(x);
}

TEST(hook_on_non_leaf_changes_what_flows_on) {
    zg_tensor *x = zgt_param_vec((float[]){1, 2}, 2);
    zg_tensor *h = zg_mul_scalar(x, 3.0f);
    float half = 0.5f;
    CHECK_OK(zg_tensor_register_hook(h, scale_hook, &half));
    CHECK_OK(zg_backward(zg_sum(h), NULL));
    float e[2] = {1.5f, 1.5f};
    CHECK_VALUES(zg_tensor_grad(x), e, 2, 0);
    zg_tensor_free(x);
}

TEST(hook_changing_the_shape_is_an_error) {
    zg_tensor *x = zgt_param_vec((float[]){1, 2}, 2);
    int64_t s[1] = {3};
    zg_tensor *other = zg_zeros(s, 1);
    CHECK_OK(zg_tensor_register_hook(x, bad_shape_hook, other));
    CHECK_ERR(zg_backward(zg_sum(zg_mul_scalar(x, 3.0f)), NULL), "hook on tensor");
    CHECK(strstr(zg_last_error(), "shape [3], expected [2]"));
    CHECK(zg_tensor_grad(x) == NULL);
    int64_t s2[1] = {1};
    zg_tensor *c = zg_zeros(s2, 1);
    CHECK_ERR(zg_tensor_register_hook(c, observe_hook, NULL), "does not require grad");
    zg_tensor_free(x);
    zg_tensor_free(other);
    zg_tensor_free(c);
}

/* Once a tensor's node has run, the engine gives the gradient it consumed
 * back to the arena for the gradients of later nodes (so that a backward
 * does not hold every intermediate gradient at once). What a hook sees or
 * returns is the user's: it may keep it until the step ends. A chain of
 * same-sized tanh nodes after the hooks takes every buffer given back,
 * most recent first: a kept gradient given back would be overwritten at
 * once. */
#define KEEP_N 64
typedef struct {
    zg_tensor *kept;
    float copy[KEEP_N];
    bool replace;
} keep_state;

static zg_tensor *keep_hook(zg_tensor *g, void *user) {
    keep_state *k = user;
    zg_tensor *r = k->replace ? zg_mul_scalar(g, 0.5f) : g;
    k->kept = r;
    for (int i = 0; i < KEEP_N; i++) k->copy[i] = zg_tensor_get(r, i);
    return k->replace ? r : NULL;
}

static void check_kept(const keep_state *k, int line) {
    for (int i = 0; k->kept && i < KEEP_N; i++)
        if (zg_tensor_get(k->kept, i) != k->copy[i]) {
            zgt_fail(__FILE__, line, "a gradient a hook kept changed at [%d]: %g, was %g", i,
                     (double)zg_tensor_get(k->kept, i), (double)k->copy[i]);
            return;
        }
    if (!k->kept) zgt_fail(__FILE__, line, "the hook did not run");
}

TEST(gradients_a_hook_keeps_stay_valid_until_the_step_ends) {
    float v[KEEP_N];
    for (int i = 0; i < KEEP_N; i++) v[i] = 0.02f * (float)(i - KEEP_N / 2);
    zg_tensor *x = zgt_param_vec(v, KEEP_N);
    keep_state seen = {.replace = false}, returned = {.replace = true};
    zg_tensor *h = x;
    for (int i = 0; i < 16; i++) {
        h = zg_tanh(h);
        if (i == 10) CHECK_OK(zg_tensor_register_hook(h, keep_hook, &seen));
        if (i == 12) CHECK_OK(zg_tensor_register_hook(h, keep_hook, &returned));
    }
    CHECK_OK(zg_backward(zg_sum(h), NULL));
    check_kept(&seen, __LINE__);
    check_kept(&returned, __LINE__);
    /* Another pass in the same step allocates again. */
    h = x;
    for (int i = 0; i < 16; i++) h = zg_tanh(h);
    CHECK_OK(zg_backward(zg_sum(h), NULL));
    check_kept(&seen, __LINE__);
    check_kept(&returned, __LINE__);
    zg_arena_reset();
    zg_tensor_free(x);
}

/* A leaf of the step (an arena tensor made a leaf, here a Linear's
 * weight) gets a .grad of the arena; a second pass adds into it; after
 * set_to_none the next pass has the Linear write straight into the kept
 * buffer; passes after it allocate gradients of its size: the .grad is
 * never one of the buffers given back. */
TEST(an_arena_leafs_grad_survives_the_passes_after_it) {
    const int64_t s8[2] = {8, 8};
    zg_tensor *p = zg_full(s8, 2, 0.5f), *a = zg_ones(s8, 2);
    const bool prev = zg_set_grad_enabled(false);
    zg_tensor *w = zg_mul_scalar(p, 1.0f);
    zg_set_grad_enabled(prev);
    CHECK_OK(zg_tensor_set_requires_grad(w, true));
    float want[KEEP_N];
    for (int pass = 0; pass < 3; pass++) {
        zg_tensor *h = zg_linear(a, w, NULL);
        for (int i = 0; i < 12; i++) h = zg_add_scalar(h, 1.0f);
        if (pass == 2) CHECK_OK(zg_tensor_set_grad(w, NULL));
        CHECK_OK(zg_backward(zg_sum(h), NULL));
        /* dL/dW = ones^T a: 8 per pass summed in. */
        for (int i = 0; i < KEEP_N; i++) want[i] = pass == 1 ? 16.0f : 8.0f;
        CHECK_VALUES(zg_tensor_grad(w), want, KEEP_N, 0);
    }
    /* Passes over other graphs of the same sizes after it. */
    for (int pass = 0; pass < 2; pass++) {
        zg_tensor *q = zgt_param_vec(want, KEEP_N);
        zg_tensor *h = zg_mul_scalar(q, 3.0f);
        for (int i = 0; i < 12; i++) h = zg_add_scalar(h, 1.0f);
        CHECK_OK(zg_backward(zg_sum(h), NULL));
        zg_tensor_free(q);
    }
    CHECK_VALUES(zg_tensor_grad(w), want, KEEP_N, 0);
    zg_arena_reset();
    zg_tensor_free(p);
    zg_tensor_free(a);
}

static int post_hook(zg_tensor *leaf, void *user) {
    float *seen = user;
    *seen = zg_tensor_get(zg_tensor_grad(leaf), 0);
    return ZG_OK;
}

TEST(post_accumulate_hook_sees_the_updated_grad) {
    zg_tensor *x = zgt_param_vec((float[]){1}, 1);
    float seen = 0;
    CHECK_OK(zg_tensor_register_post_accumulate_hook(x, post_hook, &seen));
    CHECK_OK(zg_backward(zg_sum(zg_mul_scalar(x, 2.0f)), NULL));
    CHECK(seen == 2.0f);
    CHECK_OK(zg_backward(zg_sum(zg_mul_scalar(x, 3.0f)), NULL));
    CHECK(seen == 5.0f); /* after accumulation */
    zg_tensor *y = zg_mul_scalar(x, 2.0f);
    CHECK_ERR(zg_tensor_register_post_accumulate_hook(y, post_hook, &seen), "only leaves");
    zg_tensor_clear_hooks(x);
    CHECK_OK(zg_backward(zg_sum(zg_mul_scalar(x, 1.0f)), NULL));
    CHECK(seen == 5.0f);
    zg_tensor_free(x);
}

TEST(post_accumulate_hook_can_be_removed) {
    zg_tensor *x = zgt_param_vec((float[]){1}, 1);
    float seen = 0, other = 0;
    CHECK_OK(zg_tensor_register_post_accumulate_hook(x, post_hook, &seen));
    CHECK_OK(zg_tensor_register_post_accumulate_hook(x, post_hook, &other));
    CHECK_OK(zg_tensor_remove_post_accumulate_hook(x, post_hook, &seen));
    CHECK_ERR(zg_tensor_remove_post_accumulate_hook(x, post_hook, &seen), "no such hook");
    CHECK_OK(zg_backward(zg_sum(zg_mul_scalar(x, 2.0f)), NULL));
    CHECK(seen == 0.0f && other == 2.0f);
    zg_tensor_free(x);
}

/* The end-of-backward callback: queued from a hook, it runs once, after
 * every leaf got its gradient, before zg_backward returns. */
typedef struct {
    zg_tensor *a, *b;
    int queued, ran;
    float a_grad_at_end, b_grad_at_end;
    bool fail;
} end_probe;

static int end_cb(void *user) {
    end_probe *p = user;
    p->ran++;
    p->a_grad_at_end = zg_tensor_get(zg_tensor_grad(p->a), 0);
    p->b_grad_at_end = zg_tensor_get(zg_tensor_grad(p->b), 0);
    if (p->fail) {
        zg_set_error("end_cb: refused");
        return ZG_ERR_STATE;
    }
    return ZG_OK;
}

static int queue_once(zg_tensor *leaf, void *user) {
    (void)leaf;
    end_probe *p = user;
    if (p->queued++) return ZG_OK;
    return zg_autograd_queue_callback(end_cb, p);
}

TEST(queued_callback_runs_once_when_backward_ends) {
    end_probe p = {zgt_param_vec((float[]){1}, 1), zgt_param_vec((float[]){1}, 1), 0, 0, 0, 0, false};
    CHECK_OK(zg_tensor_register_post_accumulate_hook(p.a, queue_once, &p));
    CHECK_OK(zg_tensor_register_post_accumulate_hook(p.b, queue_once, &p));
    CHECK_OK(zg_backward(zg_sum(zg_add(zg_mul_scalar(p.a, 2.0f), zg_mul_scalar(p.b, 3.0f))), NULL));
    CHECK(p.queued == 2 && p.ran == 1);
    CHECK(p.a_grad_at_end == 2.0f && p.b_grad_at_end == 3.0f);
    CHECK_ERR(zg_autograd_queue_callback(end_cb, &p), "no backward pass is running");
    p.queued = 0;
    p.fail = true;
    CHECK_ERR(zg_backward(zg_sum(zg_mul_scalar(p.a, 2.0f)), NULL), "end_cb: refused");
    CHECK(p.ran == 2);
    zg_tensor_free(p.a);
    zg_tensor_free(p.b);
}

TEST(inplace_change_of_a_saved_tensor_is_detected) {
    zg_tensor *x = zgt_param_vec((float[]){1, 2}, 2);
    int64_t s[1] = {2};
    zg_tensor *w = zg_tensor_from_data(ZG_FLOAT32, (float[]){3, 4}, s, 1);
    zg_tensor *y = zg_sum(zg_mul(x, w)); /* mul saves w for dx */
    CHECK_OK(zg_tensor_fill_(w, 0.0f));
    CHECK_ERR(zg_backward(y, NULL), "modified in place");
    CHECK(zg_tensor_grad(x) == NULL);
    zg_tensor_free(x);
    zg_tensor_free(w);
}

TEST(zero_grad_set_to_none_vs_zero_fill) {
    zg_tensor *x = zgt_param_vec((float[]){1, 2}, 2);
    CHECK_OK(zg_backward(zg_sum(zg_mul_scalar(x, 2.0f)), NULL));
    zg_tensor *g = zg_tensor_grad(x);
    zg_tensor_zero_grad(x, false);
    CHECK(zg_tensor_grad(x) == g); /* same object, zero-filled */
    float z[2] = {0, 0};
    CHECK_VALUES(g, z, 2, 0);
    zg_tensor_zero_grad(x, true);
    CHECK(zg_tensor_grad(x) == NULL); /* None */
    /* The next backward starts from the new gradient, not the stale one. */
    CHECK_OK(zg_backward(zg_sum(zg_mul_scalar(x, 5.0f)), NULL));
    float e[2] = {5, 5};
    CHECK_VALUES(zg_tensor_grad(x), e, 2, 0);
    /* zero_grad(set_to_none=false) on a None grad leaves it None. */
    zg_tensor_zero_grad(x, true);
    zg_tensor_zero_grad(x, false);
    CHECK(zg_tensor_grad(x) == NULL);
    zg_tensor_free(x);
}

TEST(set_grad_writes_or_clears) {
    zg_tensor *x = zgt_param_vec((float[]){1, 2}, 2);
    int64_t s[1] = {2}, s3[1] = {3};
    zg_tensor *g = zg_tensor_from_data(ZG_FLOAT32, (float[]){0.5f, -1}, s, 1);
    zg_tensor *bad = zg_zeros(s3, 1);
    CHECK_OK(zg_tensor_set_grad(x, g));
    float e[2] = {0.5f, -1};
    CHECK_VALUES(zg_tensor_grad(x), e, 2, 0);
    CHECK_ERR(zg_tensor_set_grad(x, bad), "gradient of shape [3] for a tensor of shape [2]");
    CHECK_OK(zg_tensor_set_grad(x, NULL));
    CHECK(zg_tensor_grad(x) == NULL);
    zg_tensor_free(x);
    zg_tensor_free(g);
    zg_tensor_free(bad);
}

TEST(deep_graph_does_not_overflow_the_stack) {
    zg_tensor *x = zgt_param_vec((float[]){1}, 1);
    zg_tensor *y = x;
    for (int i = 0; i < 200000; i++) y = zg_add_scalar(y, 0.0f);
    CHECK_OK(zg_backward(y, NULL));
    CHECK_NEAR(zg_tensor_get(zg_tensor_grad(x), 0), 1.0, 0);
    zg_tensor_free(x);
}

TEST(non_leaf_grad_is_not_kept) {
    zg_tensor *x = zgt_param_vec((float[]){1, 2}, 2);
    zg_tensor *h = zg_mul_scalar(x, 2.0f);
    CHECK_OK(zg_backward(zg_sum(h), NULL));
    CHECK(zg_tensor_grad(h) == NULL);
    CHECK_ERR(zg_tensor_retain_grad(NULL), "NULL");
    zg_tensor_free(x);
}

/* A linear backward writes a leaf's weight / bias gradient straight into
 * its .grad buffer when .grad is None (set_to_none keeps the buffer): the
 * results must equal the copying path bit for bit, also when the weight
 * feeds two linears (the second contribution is summed), when only some
 * inputs are asked for, and when a hook is registered. */
static zg_tensor *hook_double(zg_tensor *g, void *user) {
    (void)user;
    return zg_mul_scalar(g, 2.0f);
}

static void twice_linear_grads(bool set_to_none, bool hook, bool only_bias, float *out) {
    zg_manual_seed(3);
    int64_t xs[2] = {5, 4}, ws[2] = {4, 4}, bs[1] = {4};
    zg_tensor *x = zg_randn(xs, 2), *w = zg_randn(ws, 2), *b = zg_randn(bs, 1);
    zg_tensor_set_requires_grad(w, true);
    zg_tensor_set_requires_grad(b, true);
    if (hook) CHECK_OK(zg_tensor_register_hook(w, hook_double, NULL));
    for (int step = 0; step < 2; step++) { /* step 2 finds the cached buffers */
        zg_tensor_zero_grad(w, set_to_none);
        zg_tensor_zero_grad(b, set_to_none);
        zg_tensor *y = zg_linear(zg_relu(zg_linear(x, w, b)), w, b);
        zg_tensor *loss = zg_sum(zg_mul(y, y));
        zg_backward_opts o = {.inputs = &b, .n_inputs = 1};
        CHECK_OK(zg_backward(loss, only_bias ? &o : NULL));
    }
    for (int i = 0; i < 16; i++) out[i] = zg_tensor_grad(w) ? zg_tensor_data(zg_tensor_grad(w))[i] : -1.0f;
    for (int i = 0; i < 4; i++) out[16 + i] = zg_tensor_data(zg_tensor_grad(b))[i];
    zg_arena_reset();
    zg_tensor_free(x);
    zg_tensor_free(w);
    zg_tensor_free(b);
}

TEST(linear_writes_none_grads_in_place_with_the_same_results) {
    for (int hook = 0; hook < 2; hook++)
        for (int only_bias = 0; only_bias < 2; only_bias++) {
            float copied[20], direct[20];
            twice_linear_grads(false, hook, only_bias, copied); /* zeros: the copying path */
            twice_linear_grads(true, hook, only_bias, direct);
            CHECK(memcmp(copied, direct, sizeof copied) == 0);
            if (only_bias) CHECK(direct[0] == -1.0f); /* the weight got no grad */
        }
}
