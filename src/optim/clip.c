/* Gradient clipping, as torch.nn.utils.clip_grad_norm_ / clip_grad_value_:
 * the norm of all grads taken together, in double, and an in-place scale
 * (or clamp) of every grad. */
#include "optim_internal.h"

#include <math.h>
#include <stdio.h>

/* Grad sums over big tensors are split into fixed blocks whose partial
 * sums are added in block order, so the total does not depend on the
 * number of threads. */
#define CLIP_BLOCK 65536

typedef enum { NORM_ONE, NORM_TWO, NORM_INF, NORM_P } norm_kind;

/* One block's reduction: max |g| for NORM_INF (NaN if any element is NaN),
 * else sum |g|^p (for the general p of |g| / scale, which keeps the powers
 * in range). */
static double block_reduce(const float *g, int64_t n, norm_kind k, double p, double scale) {
    double s = 0;
    switch (k) {
    case NORM_INF: {
        bool nan = false;
        for (int64_t i = 0; i < n; i++) {
            double a = fabs((double)g[i]);
            nan |= a != a;
            if (a > s) s = a;
        }
        return nan ? NAN : s;
    }
    case NORM_ONE:
        for (int64_t i = 0; i < n; i++) s += fabs((double)g[i]);
        return s;
    case NORM_TWO:
        for (int64_t i = 0; i < n; i++) s += (double)g[i] * (double)g[i];
        return s;
    case NORM_P:
        for (int64_t i = 0; i < n; i++) s += pow(fabs((double)g[i]) / scale, p);
        return s;
    }
    return s;
}

/* max with NaN propagated. */
static double nan_max(double a, double b) { return a != a || b != b ? NAN : a > b ? a : b; }

static double grad_reduce(const float *g, int64_t n, norm_kind k, double p, double scale) {
    if (n <= CLIP_BLOCK) return block_reduce(g, n, k, p, scale);
    int64_t nb = (n + CLIP_BLOCK - 1) / CLIP_BLOCK;
    size_t mark = zg_arena_mark();
    double *part = zg__arena_alloc((size_t)nb * sizeof *part);
    ZG_PARALLEL_FOR(b, nb, 2, {
        int64_t lo = b * CLIP_BLOCK, len = n - lo < CLIP_BLOCK ? n - lo : CLIP_BLOCK;
        part[b] = block_reduce(g + lo, len, k, p, scale);
    });
    double s = 0;
    for (int64_t b = 0; b < nb; b++) s = k == NORM_INF ? nan_max(s, part[b]) : s + part[b];
    zg_arena_release(mark);
    return s;
}

static const char *norm_str(double norm_type, char *buf, size_t n) {
    if (isinf(norm_type)) snprintf(buf, n, "inf");
    else snprintf(buf, n, "%g", norm_type);
    return buf;
}

int zg_clip_grad_norm(zg_tensor *const *params, int n, double max_norm, double norm_type, bool error_if_nonfinite,
                      double *total_norm) {
    const char *fn = "zg_clip_grad_norm";
    if (total_norm) *total_norm = NAN;
    if (n < 0 || (n > 0 && !params)) return zg__fail(ZG_ERR_ARG, "%s: params is NULL or n (%d) is negative", fn, n);
    if (!(max_norm >= 0)) return zg__fail(ZG_ERR_ARG, "%s: max_norm %g must be >= 0", fn, max_norm);
    if (!(norm_type > 0))
        return zg__fail(ZG_ERR_ARG, "%s: norm_type %g is not supported (2, 1, INFINITY or any p > 0)", fn, norm_type);
    for (int i = 0; i < n; i++) {
        const zg_tensor *g = params[i] ? zg__grad_unchecked(params[i]) : NULL;
        if (g && g->dtype != ZG_FLOAT32)
            return zg__fail(ZG_ERR_ARG, "%s: parameter %d ('%s') has a non-float32 grad", fn, i,
                            zg_tensor_name(params[i]));
    }
    if (zg__emit_clip(params, n, fn)) return ZG_ERR_STATE; /* a listener refuses (scaled grads) */
    norm_kind k = norm_type == 1 ? NORM_ONE : norm_type == 2 ? NORM_TWO : isinf(norm_type) ? NORM_INF : NORM_P;

    /* Sums propagate inf and NaN by themselves; the general p first needs
     * max |g| (its scale, and the inf / NaN check). */
    double total = 0;
    if (k == NORM_INF || k == NORM_P) {
        for (int i = 0; i < n; i++) {
            const zg_tensor *g = params[i] ? zg__grad_unchecked(params[i]) : NULL;
            if (g) total = nan_max(total, grad_reduce(zg__f32(g), g->numel, NORM_INF, 1, 1));
        }
    }
    if (k != NORM_INF && isfinite(total) && !(k == NORM_P && total == 0)) {
        double scale = k == NORM_P ? total : 1;
        double s = 0;
        for (int i = 0; i < n; i++) {
            const zg_tensor *g = params[i] ? zg__grad_unchecked(params[i]) : NULL;
            if (g) s += grad_reduce(zg__f32(g), g->numel, k, norm_type, scale);
        }
        total = k == NORM_ONE ? s : k == NORM_TWO ? sqrt(s) : scale * pow(s, 1 / norm_type);
    }
    if (total_norm) *total_norm = total;

    if (!isfinite(total) && error_if_nonfinite) {
        /* Name the first parameter whose grad is not finite. */
        int bad = -1;
        for (int i = 0; i < n && bad < 0; i++) {
            const zg_tensor *g = params[i] ? zg__grad_unchecked(params[i]) : NULL;
            if (g && !isfinite(grad_reduce(zg__f32(g), g->numel, NORM_INF, 1, 1))) bad = i;
        }
        char nb[32];
        return zg__fail(ZG_ERR_STATE,
                        "%s: the total norm of order %s for gradients is non-finite (%g; first non-finite grad: "
                        "parameter %d '%s'), so it cannot be clipped; to scale the gradients by the non-finite "
                        "norm anyway, pass error_if_nonfinite = false",
                        fn, norm_str(norm_type, nb, sizeof nb), total, bad, bad >= 0 ? zg_tensor_name(params[bad]) : "");
    }
    /* PyTorch multiplies by min(coef, 1) always; a factor of 1 changes
     * nothing, so only coef < 1 (or NaN, from a NaN total) writes. */
    double coef = max_norm / (total + 1e-6);
    if (coef >= 1) return ZG_OK;
    for (int i = 0; i < n; i++) {
        zg_tensor *g = params[i] ? zg__grad_unchecked(params[i]) : NULL;
        if (!g) continue;
        float *d = zg__f32(g);
        ZG_PARALLEL_FOR(e, g->numel, ZG__OPTIM_PAR_MIN, { d[e] = (float)((double)d[e] * coef); });
        zg__bump_version(g);
    }
    return ZG_OK;
}

int zg_clip_grad_value(zg_tensor *const *params, int n, double clip_value) {
    const char *fn = "zg_clip_grad_value";
    if (n < 0 || (n > 0 && !params)) return zg__fail(ZG_ERR_ARG, "%s: params is NULL or n (%d) is negative", fn, n);
    if (!(clip_value >= 0)) return zg__fail(ZG_ERR_ARG, "%s: clip_value %g must be >= 0", fn, clip_value);
    for (int i = 0; i < n; i++) {
        const zg_tensor *g = params[i] ? zg__grad_unchecked(params[i]) : NULL;
        if (g && g->dtype != ZG_FLOAT32)
            return zg__fail(ZG_ERR_ARG, "%s: parameter %d ('%s') has a non-float32 grad", fn, i,
                            zg_tensor_name(params[i]));
    }
    if (zg__emit_clip(params, n, fn)) return ZG_ERR_STATE; /* a listener refuses (scaled grads) */
    /* The bound as a float: clamping to the float nearest c is what
     * PyTorch's clamp_ on a float32 tensor does. */
    const float hi = (float)clip_value, lo = -hi;
    for (int i = 0; i < n; i++) {
        zg_tensor *g = params[i] ? zg__grad_unchecked(params[i]) : NULL;
        if (!g) continue;
        float *d = zg__f32(g);
        /* Comparisons leave NaN as it is, as clamp does. */
        ZG_PARALLEL_FOR(e, g->numel, ZG__OPTIM_PAR_MIN, {
            float v = d[e];
            d[e] = v < lo ? lo : v > hi ? hi : v;
        });
        zg__bump_version(g);
    }
    return ZG_OK;
}

/* The optimizer's (module's) parameters as one arena array. */
static zg_tensor **optim_params(zg_optim *opt, int *n) {
    int total = 0, groups = zg_optim_num_groups(opt);
    for (int g = 0; g < groups; g++) total += zg_optim_group_size(opt, g);
    zg_tensor **ps = zg__arena_alloc(((size_t)total + 1) * sizeof *ps);
    int k = 0;
    for (int g = 0; g < groups; g++)
        for (int i = 0, m = zg_optim_group_size(opt, g); i < m; i++) ps[k++] = zg_optim_group_param(opt, g, i);
    *n = k;
    return ps;
}

static zg_tensor **module_params(zg_module *m, int *n) {
    int total = zg_module_num_params(m);
    if (total < 0) total = 0;
    zg_tensor **ps = zg__arena_alloc(((size_t)total + 1) * sizeof *ps);
    *n = zg_module_params(m, ps, total);
    return ps;
}

/* Makes an error of the inner call name the convenience function. */
static int rename_error(int rc, const char *from, const char *to) {
    if (rc >= 0) return rc;
    const char *e = zg_last_error();
    size_t n = strlen(from);
    if (strncmp(e, from, n) != 0) return rc;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", e + n);
    return zg__fail(rc, "%s%s", to, msg);
}

int zg_optim_clip_grad_norm(zg_optim *opt, double max_norm, double norm_type, bool error_if_nonfinite,
                            double *total_norm) {
    if (!opt) {
        if (total_norm) *total_norm = NAN;
        return zg__fail(ZG_ERR_ARG, "zg_optim_clip_grad_norm: optimizer is NULL");
    }
    size_t mark = zg_arena_mark();
    int n;
    zg_tensor **ps = optim_params(opt, &n);
    int rc = zg_clip_grad_norm(ps, n, max_norm, norm_type, error_if_nonfinite, total_norm);
    zg_arena_release(mark);
    return rename_error(rc, "zg_clip_grad_norm", "zg_optim_clip_grad_norm");
}

int zg_optim_clip_grad_value(zg_optim *opt, double clip_value) {
    if (!opt) return zg__fail(ZG_ERR_ARG, "zg_optim_clip_grad_value: optimizer is NULL");
    size_t mark = zg_arena_mark();
    int n;
    zg_tensor **ps = optim_params(opt, &n);
    int rc = zg_clip_grad_value(ps, n, clip_value);
    zg_arena_release(mark);
    return rename_error(rc, "zg_clip_grad_value", "zg_optim_clip_grad_value");
}

int zg_module_clip_grad_norm(zg_module *m, double max_norm, double norm_type, bool error_if_nonfinite,
                             double *total_norm) {
    if (!m) {
        if (total_norm) *total_norm = NAN;
        return zg__fail(ZG_ERR_ARG, "zg_module_clip_grad_norm: module is NULL");
    }
    size_t mark = zg_arena_mark();
    int n;
    zg_tensor **ps = module_params(m, &n);
    int rc = zg_clip_grad_norm(ps, n, max_norm, norm_type, error_if_nonfinite, total_norm);
    zg_arena_release(mark);
    return rename_error(rc, "zg_clip_grad_norm", "zg_module_clip_grad_norm");
}

int zg_module_clip_grad_value(zg_module *m, double clip_value) {
    if (!m) return zg__fail(ZG_ERR_ARG, "zg_module_clip_grad_value: module is NULL");
    size_t mark = zg_arena_mark();
    int n;
    zg_tensor **ps = module_params(m, &n);
    int rc = zg_clip_grad_value(ps, n, clip_value);
    zg_arena_release(mark);
    return rename_error(rc, "zg_clip_grad_value", "zg_module_clip_grad_value");
}
