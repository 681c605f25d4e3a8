/* The second-order gradient check (PyTorch's gradgradcheck) and the
 * inputs the higher-order gradient tests draw (see harness.h). */
#include "harness.h"

#include <stdlib.h>

typedef struct {
    zgt_op_fn op;
    void *ctx;
    int n; /* the op's inputs; v follows them */
} gg_ctx;

/* The first-order gradients of op(x...) with grad_output v = in[n], with
 * respect to the inputs that require grad, flattened and concatenated
 * (unused inputs contribute nothing): with create_graph, a differentiable
 * function of the inputs and of v. Grad mode on, as GRADCHECK's probes
 * run without it. */
static zg_tensor *grads_of(zg_tensor *const *in, const gg_ctx *c, bool create_graph) {
    bool prev = zg_set_grad_enabled(true);
    zg_tensor *y = c->op(in, c->ctx), *xs[8], *grads[8], *flat[8], *out = NULL;
    int nx = 0, k = 0;
    for (int i = 0; i < c->n; i++)
        if (zg_tensor_requires_grad(in[i])) xs[nx++] = in[i];
    const zg_tensor *v = in[c->n];
    const zg_grad_opts o = {.grad_outputs = &v, .create_graph = create_graph, .allow_unused = true};
    if (y && zg_autograd_grad_opts(&y, 1, xs, nx, grads, &o) == ZG_OK) {
        for (int i = 0; i < nx; i++)
            if (grads[i]) flat[k++] = zg_reshape(grads[i], (int64_t[]){-1}, 1);
        out = k ? zg_cat(flat, k, 0) : NULL;
    }
    zg_set_grad_enabled(prev);
    return out;
}

static zg_tensor *first_grads(zg_tensor *const *in, void *p) { return grads_of(in, p, true); }

/* gradgradcheck of op over inputs[0..n) (those that require grad), with a
 * random grad_output v of the op's output shape. The check compares the
 * second derivative with differences of the first as create_graph
 * computes it, so first that first derivative must be the one of the
 * op's plain backward (which the op's gradcheck checks): to float32
 * rounding (products in another order where the differentiable form
 * transposes an operand). */
void zgt_gradgradcheck_impl(const char *file, int line, const char *name, zgt_op_fn op, zg_tensor *const *inputs, int n,
                            void *ctx) {
    zg_tensor *y = op(inputs, ctx);
    if (!y) {
        zgt_fail(file, line, "%s: forward failed: %s", name, zg_last_error());
        return;
    }
    zg_tensor *in[9];
    for (int i = 0; i < n; i++) in[i] = inputs[i];
    in[n] = zgt_param(zg_uniform(zg_tensor_shape(y), zg_tensor_ndim(y), -1.0f, 1.0f));
    gg_ctx c = {op, ctx, n};
    zg_tensor *with = grads_of(in, &c, true), *plain = grads_of(in, &c, false);
    if (!with || !plain)
        zgt_fail(file, line, "%s: first-order gradients failed: %s", name, zg_last_error());
    else
        zgt_check_tensor_near(file, line, name, with, plain, 1e-6, 1e-6);
    double worst = 0;
    if (zgt_gradcheck_impl(file, line, name, first_grads, in, n + 1, &c,
                           &(zgt_gradcheck_opts){.allow_unused = true, .worst = &worst}))
        printf("  gradgradcheck %s: worst %.2g of the tolerance\n", name, worst);
    zg_tensor_free(in[n]);
    zg_arena_reset();
}

zg_tensor *zgt_param_uniform(const int64_t *shape, int nd, float lo, float hi) {
    return zgt_param(zg_uniform(shape, nd, lo, hi));
}

/* Values in [lo, hi] with random signs: away from relu's kink at 0. */
zg_tensor *zgt_param_away_from_zero(const int64_t *shape, int nd, float lo, float hi) {
    zg_tensor *t = zg_uniform(shape, nd, lo, hi), *s = zg_rand(shape, nd);
    for (int64_t i = 0; i < zg_tensor_numel(t); i++)
        if (zg_tensor_get(s, i) < 0.5f) zg_tensor_data(t)[i] *= -1.0f;
    zg_tensor_free(s);
    return zgt_param(t);
}

void zgt_free_all(zg_tensor **t, int n) {
    for (int i = 0; i < n; i++) zg_tensor_free(t[i]);
}

