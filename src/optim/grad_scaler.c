/* Gradient scaler, as PyTorch's GradScaler (torch.amp.GradScaler).
 *
 * The loss is multiplied by the scale S before backward, so small 16-bit
 * gradients do not flush to zero; unscale_ multiplies the optimizer's
 * grads by the float32 value of 1/S (computed in double, as PyTorch's
 * scale.double().reciprocal().float()) and records whether any grad held an
 * inf/NaN. step skips the optimizer when one did. update then moves S:
 *   inf found:  S = float(S * backoff_factor), growth tracker = 0;
 *   else:       tracker + 1; when it reaches growth_interval,
 *               S = float(S * growth_factor) (kept only if finite), tracker = 0.
 * Each optimizer moves READY -> UNSCALED -> STEPPED between two updates;
 * update() resets every optimizer's record. */
#include "optim_internal.h"

#include <math.h>

typedef enum { STAGE_READY = 0, STAGE_UNSCALED, STAGE_STEPPED } stage;

typedef struct {
    const zg_optim *opt;
    stage st;
    bool recorded;  /* some grad of the optimizer was checked */
    bool found_inf;
} opt_record;

struct zg_grad_scaler {
    bool enabled;
    float init_scale, scale;
    bool scale_used; /* PyTorch creates its scale tensor lazily in scale() */
    double growth_factor, backoff_factor;
    int64_t growth_interval, growth_tracker;
    opt_record *rec;
    int n_rec, cap_rec;
};

static int check_config(const char *fn, float scale, double growth, double backoff, int64_t interval) {
    if (!(scale > 0.0f) || !isfinite(scale))
        return zg__fail(ZG_ERR_ARG, "%s: the scale must be positive and finite, got %g", fn, (double)scale);
    if (!(growth > 1.0) || !isfinite(growth))
        return zg__fail(ZG_ERR_ARG, "%s: the growth factor must be > 1.0, got %g", fn, growth);
    if (!(backoff > 0.0 && backoff < 1.0))
        return zg__fail(ZG_ERR_ARG, "%s: the backoff factor must be in (0, 1), got %g", fn, backoff);
    if (interval <= 0)
        return zg__fail(ZG_ERR_ARG, "%s: growth_interval must be positive, got %lld", fn, (long long)interval);
    return ZG_OK;
}

zg_grad_scaler *zg_grad_scaler_new(const zg_grad_scaler_opts *opts) {
    zg_grad_scaler_opts o = opts ? *opts : ZG_GRAD_SCALER_DEFAULTS;
    if (check_config("zg_grad_scaler_new", o.init_scale, o.growth_factor, o.backoff_factor, o.growth_interval))
        return NULL;
    zg_grad_scaler *s = zg__calloc(1, sizeof *s);
    if (!s) return zg__fail_null("zg_grad_scaler_new: out of memory");
    s->enabled = o.enabled;
    s->init_scale = s->scale = o.init_scale;
    s->growth_factor = o.growth_factor;
    s->backoff_factor = o.backoff_factor;
    s->growth_interval = o.growth_interval;
    return s;
}

void zg_grad_scaler_free(zg_grad_scaler *s) {
    if (!s) return;
    free(s->rec);
    free(s);
}

bool zg_grad_scaler_is_enabled(const zg_grad_scaler *s) { return s && s->enabled; }

float zg_grad_scaler_get_scale(const zg_grad_scaler *s) {
    if (!s) return NAN;
    return s->enabled ? s->scale : 1.0f;
}

int64_t zg_grad_scaler_get_growth_tracker(const zg_grad_scaler *s) {
    if (!s) return -1;
    return s->enabled ? s->growth_tracker : 0;
}

zg_tensor *zg_grad_scaler_scale(zg_grad_scaler *s, zg_tensor *loss) {
    if (!s) return zg__fail_null("zg_grad_scaler_scale: scaler is NULL");
    if (zg__check_f32("zg_grad_scaler_scale", loss, "loss")) return NULL;
    if (!s->enabled) return loss;
    s->scale_used = true;
    zg_tensor *out = zg_mul_scalar(loss, s->scale);
    zg__emit_scale(out, s->scale); /* event: a backward of out leaves scaled grads */
    return out;
}

/* The record of opt, created (READY) if missing; NULL when out of memory. */
static opt_record *record_of(zg_grad_scaler *s, const zg_optim *opt) {
    for (int i = 0; i < s->n_rec; i++)
        if (s->rec[i].opt == opt) return &s->rec[i];
    if (s->n_rec == s->cap_rec) {
        int cap = s->cap_rec ? 2 * s->cap_rec : 4;
        opt_record *r = zg__realloc(s->rec, (size_t)cap * sizeof *r);
        if (!r) return NULL;
        s->rec = r;
        s->cap_rec = cap;
    }
    opt_record *r = &s->rec[s->n_rec++];
    *r = (opt_record){opt, STAGE_READY, false, false};
    return r;
}

static int check_used(const zg_grad_scaler *s, const char *fn, const char *what) {
    if (!s->scale_used)
        return zg__fail(ZG_ERR_STATE,
                        "%s: attempted %s but the scale was never used: call zg_grad_scaler_scale(loss) earlier in "
                        "the iteration",
                        fn, what);
    return ZG_OK;
}

/* Multiplies every grad of opt by inv in place; returns whether any grad
 * exists (recorded) and whether one held an inf/NaN (before scaling). */
static void unscale_grads(zg_optim *opt, float inv, bool *recorded, bool *found_inf) {
    bool any = false, bad = false;
    for (int g = 0; g < zg_optim_num_groups(opt); g++)
        for (int i = 0; i < zg_optim_group_size(opt, g); i++) {
            zg_tensor *grad = zg__grad_unchecked(zg_optim_group_param(opt, g, i));
            if (!grad) continue;
            any = true;
            float *d = zg__f32(grad);
            const int64_t n = grad->numel;
            int nonfinite = 0;
#pragma omp simd reduction(| : nonfinite)
            for (int64_t j = 0; j < n; j++) {
                nonfinite |= !isfinite(d[j]);
                d[j] *= inv;
            }
            zg__bump_version(grad);
            bad |= nonfinite != 0;
        }
    *recorded = any;
    *found_inf = bad;
}

int zg_grad_scaler_unscale_(zg_grad_scaler *s, zg_optim *opt) {
    const char *fn = "zg_grad_scaler_unscale_";
    if (!s || !opt) return zg__fail(ZG_ERR_ARG, "%s: %s is NULL", fn, s ? "optimizer" : "scaler");
    if (!s->enabled) return ZG_OK;
    int rc = check_used(s, fn, "unscale_");
    if (rc) return rc;
    opt_record *r = record_of(s, opt);
    if (!r) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    if (r->st == STAGE_UNSCALED)
        return zg__fail(ZG_ERR_STATE, "%s: unscale_() has already been called on this optimizer since the last "
                                      "update()", fn);
    if (r->st == STAGE_STEPPED) return zg__fail(ZG_ERR_STATE, "%s: unscale_() is being called after step()", fn);
    if (zg__emit_unscale(opt, opt->params, opt->n_params, s->scale))
        return ZG_ERR_STATE; /* a listener refuses (grads this scale did not multiply) */
    const float inv = (float)(1.0 / (double)s->scale);
    unscale_grads(opt, inv, &r->recorded, &r->found_inf);
    r->st = STAGE_UNSCALED;
    return ZG_OK;
}

int zg_grad_scaler_step(zg_grad_scaler *s, zg_optim *opt, bool *stepped) {
    const char *fn = "zg_grad_scaler_step";
    if (stepped) *stepped = false;
    if (!s || !opt) return zg__fail(ZG_ERR_ARG, "%s: %s is NULL", fn, s ? "optimizer" : "scaler");
    if (!s->enabled) {
        int rc = zg_optim_step(opt);
        if (stepped) *stepped = rc == ZG_OK;
        return rc;
    }
    opt_record *r = record_of(s, opt);
    if (!r) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    if (r->st == STAGE_STEPPED)
        return zg__fail(ZG_ERR_STATE, "%s: step() has already been called since the last update()", fn);
    if (r->st == STAGE_READY) {
        int rc = zg_grad_scaler_unscale_(s, opt);
        if (rc) return rc;
        r = record_of(s, opt); /* the array may have moved */
    }
    if (!r->recorded)
        return zg__fail(ZG_ERR_STATE, "%s: No inf checks were recorded for this optimizer (none of its parameters "
                                      "has a gradient)", fn);
    if (!r->found_inf) {
        int rc = zg_optim_step(opt);
        if (rc) return rc;
        if (stepped) *stepped = true;
    } else {
        zg__emit_scaler_skip(opt, opt->params, opt->n_params); /* event: a skipped step consumed the grads */
    }
    r->st = STAGE_STEPPED;
    return ZG_OK;
}

int zg_grad_scaler_update(zg_grad_scaler *s) {
    const char *fn = "zg_grad_scaler_update";
    if (!s) return zg__fail(ZG_ERR_ARG, "%s: scaler is NULL", fn);
    if (!s->enabled) return ZG_OK;
    int rc = check_used(s, fn, "update");
    if (rc) return rc;
    bool any = false, found = false;
    for (int i = 0; i < s->n_rec; i++)
        if (s->rec[i].st != STAGE_READY && s->rec[i].recorded) {
            any = true;
            found |= s->rec[i].found_inf;
        }
    if (!any)
        return zg__fail(ZG_ERR_STATE, "%s: No inf checks were recorded prior to update() (no optimizer was "
                                      "unscaled or stepped with gradients since the last update())", fn);
    if (found) {
        s->scale = (float)((double)s->scale * s->backoff_factor);
        s->growth_tracker = 0;
    } else if (s->growth_tracker + 1 == s->growth_interval) {
        float grown = (float)((double)s->scale * s->growth_factor);
        if (isfinite(grown)) s->scale = grown;
        s->growth_tracker = 0;
    } else {
        s->growth_tracker++;
    }
    s->n_rec = 0;
    return ZG_OK;
}

int zg_grad_scaler_get_state(const zg_grad_scaler *s, zg_grad_scaler_state *state) {
    if (!s || !state)
        return zg__fail(ZG_ERR_ARG, "zg_grad_scaler_get_state: %s is NULL", s ? "state" : "scaler");
    *state = (zg_grad_scaler_state){s->scale, s->growth_factor, s->backoff_factor, s->growth_interval,
                                    s->growth_tracker};
    return ZG_OK;
}

int zg_grad_scaler_set_state(zg_grad_scaler *s, const zg_grad_scaler_state *state) {
    const char *fn = "zg_grad_scaler_set_state";
    if (!s || !state) return zg__fail(ZG_ERR_ARG, "%s: %s is NULL", fn, s ? "state" : "scaler");
    int rc = check_config(fn, state->scale, state->growth_factor, state->backoff_factor, state->growth_interval);
    if (rc) return rc;
    if (state->growth_tracker < 0 || state->growth_tracker >= state->growth_interval)
        return zg__fail(ZG_ERR_ARG, "%s: growth tracker %lld outside [0, growth_interval %lld)", fn,
                        (long long)state->growth_tracker, (long long)state->growth_interval);
    for (int i = 0; i < s->n_rec; i++)
        if (s->rec[i].st != STAGE_READY)
            return zg__fail(ZG_ERR_STATE, "%s: optimizers were unscaled or stepped since the last update(); "
                                          "load the state between iterations", fn);
    s->scale = state->scale;
    s->growth_factor = state->growth_factor;
    s->backoff_factor = state->backoff_factor;
    s->growth_interval = state->growth_interval;
    s->growth_tracker = state->growth_tracker;
    s->scale_used = true; /* as PyTorch's load_state_dict, which creates the scale tensor */
    return ZG_OK;
}
