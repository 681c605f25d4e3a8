/* Tensor hooks where PyTorch 2.x and 1.13 differ, against live 2.x
 * (tests/parity/optim_reference_torch2.py): a tensor's hooks run before
 * its retained .grad is stored, whichever was asked for first, and before
 * zg_autograd_grad returns its gradient, for a leaf as for a non-leaf.
 * (1.13's retain_grad was itself a hook, so a hook registered after it
 * did not reach .grad, and autograd.grad skipped the inputs' hooks: this
 * test fails against a 1.13 reference.) */
#include "harness.h"

static const char *const sources[] = {"tests/parity/optim_reference_torch2.py", "tests/parity/torch_reference.py"};
static const char *const files[] = {"optim_torch2"};
static zgt_refset refs = {sources, 2, files, 1, NULL, 0};

static zg_tensor *times_two(zg_tensor *g, void *user) {
    (void)user;
    return zg_mul_scalar(g, 2.0f);
}

static zg_tensor *plus_one(zg_tensor *g, void *user) {
    (void)user;
    return zg_add_scalar(g, 1.0f);
}

/* The leaf x of the reference, requiring grad. */
static zg_tensor *leaf(const zg_safetensors *st) {
    zg_tensor *x = zg_tensor_clone(zgt_ref_get(st, "hooks.x"));
    if (x) zg_tensor_set_requires_grad(x, true);
    return x;
}

static double worst;

/* y = 3 x with hooks and retain_grad in the order `order` (h: x2, r:
 * retain_grad, p: +1), then sum(y * y).backward(): y's and x's .grad. */
static void retained(const zg_safetensors *st, const char *order, const char *name, bool check_x) {
    zg_tensor *x = leaf(st);
    if (!x) return;
    zg_tensor *y = zg_mul_scalar(x, 3.0f);
    for (const char *o = order; *o; o++) {
        if (*o == 'r') CHECK_OK(zg_tensor_retain_grad(y));
        else CHECK_OK(zg_tensor_register_hook(y, *o == 'h' ? times_two : plus_one, NULL));
    }
    CHECK_OK(zg_backward(zg_sum(zg_mul(y, y)), NULL));
    char what[96];
    snprintf(what, sizeof what, "%s: y's retained grad", name);
    CHECK_REF(what, zg_tensor_grad(y), zgt_ref_get(st, "hooks.%s.ygrad", name), 1e-7, &worst);
    if (check_x) {
        snprintf(what, sizeof what, "%s: x's grad", name);
        CHECK_REF(what, zg_tensor_grad(x), zgt_ref_get(st, "hooks.%s.xgrad", name), 1e-7, &worst);
    }
    zg_arena_reset();
    zg_tensor_free(x);
}

TEST(hooks_run_before_the_retained_grad) {
    zg_safetensors *st = zgt_refs_open(&refs, "optim_torch2");
    if (!st) return;
    retained(st, "rh", "retain_then_hook", true);
    retained(st, "hr", "hook_then_retain", true);
    retained(st, "hrp", "between", false);
    zg_safetensors_free(st);
}

TEST(hooks_run_before_autograd_grad_returns) {
    zg_safetensors *st = zgt_refs_open(&refs, "optim_torch2");
    if (!st) return;
    zg_tensor *x = leaf(st);
    if (x) {
        zg_tensor *y = zg_mul_scalar(x, 3.0f), *gy = NULL;
        CHECK_OK(zg_tensor_register_hook(y, times_two, NULL));
        zg_tensor *loss = zg_sum(zg_mul(y, y));
        CHECK_OK(zg_autograd_grad(&loss, NULL, 1, &y, 1, &gy, false, false));
        CHECK_REF("autograd.grad of a hooked non-leaf", gy, zgt_ref_get(st, "hooks.grad_nonleaf"), 1e-7, &worst);
        zg_arena_reset();
        zg_tensor *gx = NULL;
        CHECK_OK(zg_tensor_register_hook(x, times_two, NULL));
        loss = zg_sum(zg_mul(x, x));
        CHECK_OK(zg_autograd_grad(&loss, NULL, 1, &x, 1, &gx, false, false));
        CHECK_REF("autograd.grad of a hooked leaf", gx, zgt_ref_get(st, "hooks.grad_leaf"), 1e-7, &worst);
        CHECK(zg_tensor_grad(x) == NULL);
        zg_arena_reset();
        zg_tensor_free(x);
    }
    printf("hooks vs PyTorch %s: worst relative error %.3g\n", zg_safetensors_metadata(st, "torch"), worst);
    zg_safetensors_free(st);
}
