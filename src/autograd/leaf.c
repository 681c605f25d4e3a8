/* The user-facing side of a tensor's autograd state: requires_grad, .grad
 * (None vs a buffer), retain_grad, hooks, detach, and printing. */
#include "autograd_internal.h"

#include <stdio.h>

int zg_tensor_set_requires_grad(zg_tensor *t, bool rg) {
    if (!t) return zg__fail(ZG_ERR_ARG, "zg_tensor_set_requires_grad: tensor is NULL");
    if (t->grad_fn)
        return zg__fail(ZG_ERR_STATE,
                        "zg_tensor_set_requires_grad: '%s' is not a leaf (made by '%s'); only leaves can change "
                        "requires_grad, use zg_detach",
                        zg_tensor_name(t), t->grad_fn->name);
    if (rg && t->dtype != ZG_FLOAT32)
        return zg__fail(ZG_ERR_ARG, "zg_tensor_set_requires_grad: only float32 tensors can require grad");
    t->requires_grad = rg;
    return ZG_OK;
}

bool zg_tensor_requires_grad(const zg_tensor *t) { return t && t->requires_grad; }
bool zg_tensor_is_leaf(const zg_tensor *t) { return t && !t->grad_fn; }
const char *zg_tensor_grad_fn_name(const zg_tensor *t) { return t && t->grad_fn ? t->grad_fn->name : NULL; }

zg_tensor *zg_tensor_grad(const zg_tensor *t) {
    if (!t || !t->grad_defined) return NULL;
    zg__emit_read_grad(t); /* event: the user reads grads (still scaled?) */
    return t->grad;
}

void zg_tensor_zero_grad(zg_tensor *t, bool set_to_none) {
    if (!t || !t->grad_defined) return;
    zg__emit_zero(t, "zg_tensor_zero_grad"); /* event: grads cleared (fresh ones erased?) */
    if (set_to_none) {
        t->grad_defined = false; /* the buffer stays as a cache */
        return;
    }
    memset(zg__f32(t->grad), 0, (size_t)t->grad->numel * sizeof(float));
    zg__bump_version(t->grad);
}

int zg_tensor_set_grad(zg_tensor *t, const zg_tensor *g) {
    if (!t) return zg__fail(ZG_ERR_ARG, "zg_tensor_set_grad: tensor is NULL");
    if (!g) {
        if (t->grad_defined) zg__emit_zero(t, "zg_tensor_set_grad"); /* event: cleared, as set_to_none does */
        t->grad_defined = false;
        return ZG_OK;
    }
    if (g->dtype != ZG_FLOAT32 || !zg__same_shape(g, t)) {
        char a[ZG_SHAPE_BUF], b[ZG_SHAPE_BUF];
        return zg__fail(ZG_ERR_SHAPE, "zg_tensor_set_grad: gradient of shape %s for a tensor of shape %s",
                        zg__shape_str(g, a, sizeof a), zg__shape_str(t, b, sizeof b));
    }
    if (!t->grad) {
        t->grad = t->persistent ? zg_tensor_new(ZG_FLOAT32, t->shape, t->ndim) : zg__empty_like(t);
        if (!t->grad) return ZG_ERR_NOMEM;
        t->grad->storage->recyclable = false; /* a .grad is never a pass's to reuse */
    }
    memmove(zg__f32(t->grad), zg__f32(g), (size_t)g->numel * sizeof(float));
    zg__bump_version(t->grad);
    t->grad_defined = true;
    zg__emit_set_grad(t); /* event: grads replaced by hand */
    return ZG_OK;
}

int zg_tensor_retain_grad(zg_tensor *t) {
    if (!t) return zg__fail(ZG_ERR_ARG, "zg_tensor_retain_grad: tensor is NULL");
    if (!t->requires_grad)
        return zg__fail(ZG_ERR_STATE, "zg_tensor_retain_grad: tensor does not require grad");
    if (t->grad_fn) t->retains_grad = true; /* a leaf keeps its grad anyway */
    return ZG_OK;
}

zg_tensor *zg_detach(zg_tensor *t) {
    if (!t) return zg__fail_null("zg_detach: tensor is NULL");
    return zg__view(t, 0, t->shape, t->ndim);
}

static int add_hook(zg_tensor *t, zg__hook **list, zg__hook *h) {
    zg__hook *nh = t->persistent ? zg__malloc(sizeof *nh) : zg__arena_alloc(sizeof *nh);
    if (!nh) return zg__fail(ZG_ERR_NOMEM, "zg_tensor_register_hook: out of memory");
    *nh = *h;
    nh->next = NULL;
    while (*list) list = &(*list)->next;
    *list = nh;
    return ZG_OK;
}

int zg_tensor_register_hook(zg_tensor *t, zg_tensor_hook_fn fn, void *user) {
    if (!t || !fn) return zg__fail(ZG_ERR_ARG, "zg_tensor_register_hook: NULL argument");
    if (!t->requires_grad)
        return zg__fail(ZG_ERR_STATE, "zg_tensor_register_hook: cannot register a hook on a tensor that does not "
                                      "require grad");
    return add_hook(t, &t->hooks, &(zg__hook){.fn = fn, .user = user});
}

int zg_tensor_register_post_accumulate_hook(zg_tensor *t, zg_post_accumulate_hook_fn fn, void *user) {
    if (!t || !fn) return zg__fail(ZG_ERR_ARG, "zg_tensor_register_post_accumulate_hook: NULL argument");
    if (t->grad_fn)
        return zg__fail(ZG_ERR_STATE, "zg_tensor_register_post_accumulate_hook: only leaves accumulate gradients; "
                                      "'%s' is made by '%s'",
                        zg_tensor_name(t), t->grad_fn->name);
    if (!t->requires_grad)
        return zg__fail(ZG_ERR_STATE,
                        "zg_tensor_register_post_accumulate_hook: the tensor does not require grad");
    return add_hook(t, &t->post_hooks, &(zg__hook){.post_fn = fn, .user = user});
}

int zg_tensor_remove_post_accumulate_hook(zg_tensor *t, zg_post_accumulate_hook_fn fn, void *user) {
    if (!t || !fn) return zg__fail(ZG_ERR_ARG, "zg_tensor_remove_post_accumulate_hook: NULL argument");
    for (zg__hook **h = &t->post_hooks; *h; h = &(*h)->next) {
        if ((*h)->post_fn != fn || (*h)->user != user) continue;
        zg__hook *dead = *h;
        *h = dead->next;
        if (t->persistent) free(dead);
        return ZG_OK;
    }
    return zg__fail(ZG_ERR_ARG, "zg_tensor_remove_post_accumulate_hook: '%s' has no such hook (removed already?)",
                    zg_tensor_name(t));
}

void zg_tensor_clear_hooks(zg_tensor *t) {
    if (!t) return;
    if (t->persistent) {
        zg__hooks_free(t->hooks);
        zg__hooks_free(t->post_hooks);
    }
    t->hooks = t->post_hooks = NULL;
}

/* Printing shows the autograd state (requires_grad, grad_fn) beside the
 * values, so it lives with that state rather than in the tensor layer. */
void zg_tensor_print(const zg_tensor *t, FILE *f) {
    if (!f) f = stdout;
    if (!t) {
        fprintf(f, "tensor(NULL)\n");
        return;
    }
    char b[ZG_SHAPE_BUF];
    fprintf(f, "tensor(shape=%s, dtype=%s", zg__shape_str(t, b, sizeof b),
            t->dtype == ZG_FLOAT32 ? "float32" : "int64");
    if (t->name) fprintf(f, ", name=%s", t->name);
    if (t->requires_grad) fprintf(f, ", requires_grad");
    if (t->grad_fn) fprintf(f, ", grad_fn=%s", t->grad_fn->name);
    fprintf(f, ")\n  [");
    int64_t show = t->numel <= 20 ? t->numel : 10;
    for (int64_t i = 0; i < show; i++) {
        if (t->dtype == ZG_FLOAT32)
            fprintf(f, i ? ", %.6g" : "%.6g", (double)zg__f32(t)[i]);
        else
            fprintf(f, i ? ", %lld" : "%lld", (long long)zg__i64(t)[i]);
    }
    if (show < t->numel) {
        fprintf(f, ", ...");
        for (int64_t i = t->numel - 3; i < t->numel; i++) {
            if (t->dtype == ZG_FLOAT32)
                fprintf(f, ", %.6g", (double)zg__f32(t)[i]);
            else
                fprintf(f, ", %lld", (long long)zg__i64(t)[i]);
        }
    }
    fprintf(f, "]\n");
}
