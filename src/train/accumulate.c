/* Gradient accumulation windows (see zgrad.h): backward of loss / N into
 * the same grads N times, then one step. The loss is divided before the
 * backward (not the grads after it) so that a scaled loss is
 * scale * loss / N, as in PyTorch's AMP accumulation recipe, and the scale
 * is the same for every micro-batch because update() runs only when the
 * window closes. */
#include "train_internal.h"
#include "../optim/optim_internal.h"
#include "../dist/ddp_internal.h"

#include <math.h>
#include <stdlib.h>

struct zg_accum {
    zg_optim *opt;
    zg_grad_scaler *scaler;
    int n, pending;
    double clip_norm, clip_type, last_norm;
};

/* The zg_ddp that wraps the optimizer's parameters, if any. */
static zg_ddp *ddp_of(const zg_accum *a) { return a->opt->n_params ? zg__ddp_of_param(a->opt->params[0]) : NULL; }

/* PyTorch's no_sync for the next micro-batch's forward: only the last of
 * a window reduces (the accumulated sum of the window). */
static void set_sync(const zg_accum *a) {
    zg_ddp *d = ddp_of(a);
    if (d) zg_ddp_set_require_sync(d, a->pending == a->n - 1);
}

zg_accum *zg_accum_new(zg_optim *opt, zg_grad_scaler *scaler, int n) {
    if (!opt) return zg__fail_null("zg_accum_new: NULL optimizer");
    if (n < 1) return zg__fail_null("zg_accum_new: window size must be >= 1 (got %d)", n);
    zg_accum *a = zg__calloc(1, sizeof *a);
    if (!a) return zg__fail_null("zg_accum_new: out of memory");
    a->opt = opt;
    a->scaler = scaler;
    a->n = n;
    a->clip_norm = -1;
    a->clip_type = 2;
    a->last_norm = NAN;
    /* A declared window: the sanitizer expects n backwards per step. */
    if (zg_sanitize_expect_accumulation(opt, n)) {
        free(a);
        return NULL;
    }
    zg_optim_zero_grad(opt, true);
    set_sync(a);
    return a;
}

void zg_accum_free(zg_accum *a) {
    if (!a) return;
    zg_ddp *d = ddp_of(a);
    if (d) zg_ddp_set_require_sync(d, true);
    zg_sanitize_expect_accumulation(a->opt, 1);
    free(a);
}

int zg_accum_set_clip(zg_accum *a, double max_norm, double norm_type) {
    if (!a) return zg__fail(ZG_ERR_ARG, "zg_accum_set_clip: NULL accumulator");
    if (isnan(max_norm) || !(norm_type > 0))
        return zg__fail(ZG_ERR_ARG, "zg_accum_set_clip: need a max_norm (< 0: off) and norm_type > 0 (got %g, %g)",
                        max_norm, norm_type);
    a->clip_norm = max_norm;
    a->clip_type = norm_type;
    return ZG_OK;
}

int zg_accum_backward(zg_accum *a, zg_tensor *loss) {
    if (!a || !loss) return zg__fail(ZG_ERR_ARG, "zg_accum_backward: NULL argument");
    if (a->pending >= a->n)
        return zg__fail(ZG_ERR_STATE, "zg_accum_backward: the window of %d micro-batches is full; call zg_accum_step "
                                      "first", a->n);
    zg_tensor *l = a->n > 1 ? zg_div_scalar(loss, (float)a->n) : loss;
    if (l && a->scaler) l = zg_grad_scaler_scale(a->scaler, l);
    if (!l) return zg__fail(ZG_ERR_STATE, "zg_accum_backward: %s", zg_last_error());
    int rc = zg_backward(l, NULL);
    if (rc) return rc;
    a->pending++;
    set_sync(a);
    return a->pending == a->n;
}

static int do_step(zg_accum *a, bool *stepped) {
    int rc = ZG_OK;
    bool did = false;
    if (a->scaler) {
        rc = zg_grad_scaler_unscale_(a->scaler, a->opt);
        if (!rc && a->clip_norm >= 0) rc = zg_optim_clip_grad_norm(a->opt, a->clip_norm, a->clip_type, false, &a->last_norm);
        if (!rc) rc = zg_grad_scaler_step(a->scaler, a->opt, &did);
        if (!rc) rc = zg_grad_scaler_update(a->scaler);
    } else {
        if (a->clip_norm >= 0) rc = zg_optim_clip_grad_norm(a->opt, a->clip_norm, a->clip_type, false, &a->last_norm);
        if (!rc) rc = zg_optim_step(a->opt);
        did = rc == ZG_OK;
    }
    /* The window is over whatever happened: its grads must not leak into
     * the next one. */
    zg_optim_zero_grad(a->opt, true);
    a->pending = 0;
    set_sync(a);
    if (stepped) *stepped = did;
    return rc;
}

int zg_accum_step(zg_accum *a, bool *stepped) {
    if (stepped) *stepped = false;
    if (!a) return zg__fail(ZG_ERR_ARG, "zg_accum_step: NULL accumulator");
    return a->pending == a->n ? do_step(a, stepped) : ZG_OK;
}

int zg_accum_flush(zg_accum *a, bool *stepped) {
    if (stepped) *stepped = false;
    if (!a) return zg__fail(ZG_ERR_ARG, "zg_accum_flush: NULL accumulator");
    if (a->pending == 0) return ZG_OK;
    /* A short window's last backward ran without sync. */
    zg_ddp *d = ddp_of(a);
    int rc = d && a->pending < a->n ? zg_ddp_sync_gradients(d) : ZG_OK;
    return rc ? rc : do_step(a, stepped);
}

void zg_accum_discard(zg_accum *a) {
    if (!a) return;
    zg__emit_discard(a->opt->params, a->opt->n_params); /* event: dropped on purpose */
    zg_optim_zero_grad(a->opt, true);
    a->pending = 0;
    set_sync(a);
}

int zg_accum_pending(const zg_accum *a) { return a ? a->pending : 0; }
int zg_accum_size(const zg_accum *a) { return a ? a->n : 0; }
double zg_accum_last_norm(const zg_accum *a) { return a ? a->last_norm : NAN; }
