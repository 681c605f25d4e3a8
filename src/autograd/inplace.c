/* Tracked in-place writes: each bumps the storage's version counter, which
 * a node checks its saved tensors against, and refuses a tensor that
 * requires grad while grad mode is on (as PyTorch refuses an in-place write
 * to a leaf that requires grad). They live in autograd because both rules
 * are autograd's. */
#include "autograd_internal.h"

static int check_inplace(const char *fn, zg_tensor *t) {
    if (zg__check_f32(fn, t, "tensor")) return ZG_ERR_ARG;
    if (t->requires_grad && zg_grad_enabled())
        return zg__fail(ZG_ERR_STATE,
                        "%s: in-place write to a tensor that requires grad; wrap it in "
                        "zg_no_grad_enter/exit or use the out-of-place op",
                        fn);
    return ZG_OK;
}

int zg_tensor_fill_(zg_tensor *t, float v) {
    int rc = check_inplace("zg_tensor_fill_", t);
    if (rc) return rc;
    float *d = zg__f32(t);
    for (int64_t i = 0; i < t->numel; i++) d[i] = v;
    zg__bump_version(t);
    return ZG_OK;
}

int zg_tensor_copy_(zg_tensor *dst, const zg_tensor *src) {
    int rc = check_inplace("zg_tensor_copy_", dst);
    if (rc) return rc;
    if (zg__check_f32("zg_tensor_copy_", src, "src")) return ZG_ERR_ARG;
    if (src->numel != dst->numel)
        return zg__fail(ZG_ERR_SHAPE, "zg_tensor_copy_: %lld elements into %lld", (long long)src->numel,
                        (long long)dst->numel);
    memmove(zg__f32(dst), zg__f32(src), (size_t)dst->numel * sizeof(float));
    zg__bump_version(dst);
    return ZG_OK;
}

int zg_tensor_add_(zg_tensor *t, const zg_tensor *o, float alpha) {
    int rc = check_inplace("zg_tensor_add_", t);
    if (rc) return rc;
    if (zg__check_f32("zg_tensor_add_", o, "other")) return ZG_ERR_ARG;
    if (!zg__same_shape(t, o)) {
        char a[ZG_SHAPE_BUF], b[ZG_SHAPE_BUF];
        return zg__fail(ZG_ERR_SHAPE, "zg_tensor_add_: shapes %s and %s differ", zg__shape_str(t, a, sizeof a),
                        zg__shape_str(o, b, sizeof b));
    }
    float *d = zg__f32(t);
    const float *s = zg__f32(o);
    for (int64_t i = 0; i < t->numel; i++) d[i] += alpha * s[i];
    zg__bump_version(t);
    return ZG_OK;
}

int zg_tensor_mul_scalar_(zg_tensor *t, float s) {
    int rc = check_inplace("zg_tensor_mul_scalar_", t);
    if (rc) return rc;
    float *d = zg__f32(t);
    for (int64_t i = 0; i < t->numel; i++) d[i] *= s;
    zg__bump_version(t);
    return ZG_OK;
}
