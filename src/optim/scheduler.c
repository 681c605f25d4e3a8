/* Learning-rate schedulers as torch.optim.lr_scheduler: the object, the
 * validation of its hyperparameters, and a step (planned from the groups'
 * current lrs, written into the groups, then adopted), with PyTorch's
 * formulas in its order of floating-point operations (sched_formula.c),
 * so that the lr sequences agree to the last bits.
 *
 * PyTorch keeps some scheduler values in the optimizer's param_groups:
 * 'initial_lr' (set by the first scheduler made on the optimizer,
 * overwritten by OneCycleLR; the base lr of every later scheduler and the
 * lr SequentialLR resets to) and OneCycleLR's 'max_lr', 'min_lr',
 * 'max_momentum', 'base_momentum'. zgrad keeps them in its groups too
 * (zg__group.sched), for the groups' lifetime, whichever schedulers come
 * and go; the optimizer's state file holds initial_lr. */
#include "sched_internal.h"

#include <math.h>
#include <stdio.h>

const char *const zg__sched_kind_names[] = {
    [K_STEP] = "StepLR",
    [K_COSINE] = "CosineAnnealingLR",
    [K_LINEAR] = "LinearLR",
    [K_ONECYCLE] = "OneCycleLR",
    [K_SEQUENTIAL] = "SequentialLR",
    [K_EXPONENTIAL] = "ExponentialLR",
    [K_MULTISTEP] = "MultiStepLR",
    [K_CONSTANT] = "ConstantLR",
    [K_POLYNOMIAL] = "PolynomialLR",
    [K_LAMBDA] = "LambdaLR",
    [K_MULTIPLICATIVE] = "MultiplicativeLR",
    [K_WARM_RESTARTS] = "CosineAnnealingWarmRestarts",
    [K_CHAINED] = "ChainedScheduler",
    [K_PLATEAU] = "ReduceLROnPlateau",
};

/* ---- the object ------------------------------------------------------------ */

zg_sched *zg__sched_alloc(zg__sched_kind kind, zg_optim *opt, int n_groups) {
    zg_sched *s = zg__calloc(1, sizeof *s);
    if (!s) return NULL;
    s->kind = kind;
    s->opt = opt;
    s->n_groups = n_groups;
    s->last_epoch = -1;
    s->base_lrs = zg__calloc((size_t)n_groups + 1, sizeof *s->base_lrs);
    s->last_lrs = zg__calloc((size_t)n_groups + 1, sizeof *s->last_lrs);
    if (!s->base_lrs || !s->last_lrs) {
        free(s->base_lrs);
        free(s->last_lrs);
        free(s);
        return NULL;
    }
    return s;
}

void zg_sched_free(zg_sched *s) {
    if (!s) return;
    zg__emit_sched_free(s); /* event: a listener forgets it (its address may be reused) */
    for (int i = 0; i < s->n_children; i++) zg_sched_free(s->children[i]);
    free(s->children);
    free(s->milestones);
    free(s->plat.min_lrs);
    free(s->base_lrs);
    free(s->last_lrs);
    free(s->loaded_extra);
    free(s);
}

zg_sched *zg__sched_begin(const char *fn, zg__sched_kind kind, zg_optim *opt) {
    if (!opt) return zg__fail_null("%s: optimizer is NULL", fn);
    zg_sched *s = zg__sched_alloc(kind, opt, zg_optim_num_groups(opt));
    return s ? s : zg__fail_null("%s: out of memory", fn);
}

zg__sched_extra *zg__sched_extra_of(const zg_sched *s, int g) { return &s->opt->groups[g].sched; }

double zg__sched_group_lr(const zg_sched *s, int g) { return zg_optim_get_hparam(s->opt, g, ZG_HP_LR); }

/* ---- validation ---------------------------------------------------------- */

static bool finite_nonneg(double v) { return isfinite(v) && v >= 0; }

/* A length in steps: > 0, and a counter (at most 2^53: the formulas add
 * and double it, and compute with it as a double). */
static bool check_steps(const char *what, int64_t v, char *msg, size_t n) {
    if (v > 0 && v <= ZG__MAX_COUNT) return true;
    snprintf(msg, n, "%s must be > 0 and at most 2^53 (got %lld)", what, (long long)v);
    return false;
}

static bool check_nonneg(const char *what, double v, char *msg, size_t n) {
    if (finite_nonneg(v)) return true;
    snprintf(msg, n, "%s must be finite and >= 0 (got %g)", what, v);
    return false;
}

static bool check_count(const char *what, int64_t v, char *msg, size_t n) {
    if (v >= 0 && v <= ZG__MAX_COUNT) return true;
    snprintf(msg, n, "%s must be >= 0 and at most 2^53 (got %lld)", what, (long long)v);
    return false;
}

static bool check_linear(const zg_sched *s, char *msg, size_t n) {
    /* PyTorch 1.13 accepts start_factor 0 and then divides by zero at the
     * first step; later versions require > 0. */
    if (!(s->start_factor > 0 && s->start_factor <= 1)) {
        snprintf(msg, n, "start_factor must be in (0, 1] (got %g)", s->start_factor);
        return false;
    }
    if (!(s->end_factor >= 0 && s->end_factor <= 1)) {
        snprintf(msg, n, "end_factor must be in [0, 1] (got %g)", s->end_factor);
        return false;
    }
    return check_steps("total_iters", s->total_iters, msg, n);
}

static bool check_onecycle(const zg_sched *s, char *msg, size_t n) {
    if (!check_steps("total_steps", s->total_steps, msg, n)) return false;
    if (!(s->pct_start >= 0 && s->pct_start <= 1)) {
        snprintf(msg, n, "pct_start must be in [0, 1] (got %g)", s->pct_start);
        return false;
    }
    if (!(isfinite(s->div_factor) && s->div_factor > 0) || !(isfinite(s->final_div_factor) && s->final_div_factor > 0)) {
        snprintf(msg, n, "div_factor and final_div_factor must be finite and > 0 (got %g, %g)", s->div_factor,
                 s->final_div_factor);
        return false;
    }
    return true;
}

/* MultiStepLR's milestones: counters, in order (repeats count twice). */
static bool check_milestones(const zg_sched *s, char *msg, size_t n) {
    for (int i = 0; i < s->n_milestones; i++) {
        if (!check_count("a milestone", s->milestones[i], msg, n)) return false;
        if (i > 0 && s->milestones[i] < s->milestones[i - 1]) {
            snprintf(msg, n, "milestones must be in increasing order");
            return false;
        }
    }
    return check_nonneg("gamma", s->gamma, msg, n);
}

static bool check_warm_restarts(const zg_sched *s, char *msg, size_t n) {
    if (!check_steps("T_0", s->t_0, msg, n) || !check_steps("T_mult", s->t_mult, msg, n) ||
        !check_nonneg("eta_min", s->eta_min, msg, n) || !check_steps("T_i", s->t_i, msg, n))
        return false;
    if (s->t_cur < 0 || s->t_cur >= s->t_i) {
        snprintf(msg, n, "T_cur must be in [0, T_i) (got %lld, T_i %lld)", (long long)s->t_cur, (long long)s->t_i);
        return false;
    }
    return true;
}

static bool check_plateau(const zg_sched *s, char *msg, size_t n) {
    const zg__plateau *p = &s->plat;
    if (!(s->factor >= 0 && s->factor < 1)) {
        snprintf(msg, n, "factor must be in [0, 1) (got %g)", s->factor);
        return false;
    }
    if (!check_count("patience", p->patience, msg, n) || !check_count("cooldown", p->cooldown, msg, n) ||
        !check_nonneg("threshold", p->threshold, msg, n) || !check_nonneg("eps", p->eps, msg, n) ||
        !check_count("num_bad_epochs", p->num_bad_epochs, msg, n) ||
        !check_count("cooldown_counter", p->cooldown_counter, msg, n) ||
        (p->has_default_min_lr && !check_nonneg("min_lr", p->default_min_lr, msg, n)))
        return false;
    for (int g = 0; g < s->n_groups; g++)
        if (!check_nonneg("min_lr", p->min_lrs[g], msg, n)) return false;
    if (isnan(p->best)) {
        snprintf(msg, n, "best must be a number");
        return false;
    }
    return true;
}

/* Checks the hyperparameters of s (for construction and loading); writes
 * the problem to msg. */
bool zg__sched_check_hyper(const zg_sched *s, char *msg, size_t n) {
    switch (s->kind) {
    case K_STEP:
        return check_steps("step_size", s->step_size, msg, n) && check_nonneg("gamma", s->gamma, msg, n);
    case K_COSINE:
        return check_steps("T_max", s->t_max, msg, n) && check_nonneg("eta_min", s->eta_min, msg, n);
    case K_LINEAR:
        return check_linear(s, msg, n);
    case K_ONECYCLE:
        return check_onecycle(s, msg, n);
    case K_EXPONENTIAL:
        return check_nonneg("gamma", s->gamma, msg, n);
    case K_MULTISTEP:
        return check_milestones(s, msg, n);
    case K_CONSTANT:
        if (!(s->factor > 0 && s->factor <= 1)) {
            snprintf(msg, n, "factor must be in (0, 1] (got %g)", s->factor);
            return false;
        }
        return check_steps("total_iters", s->total_iters, msg, n);
    case K_POLYNOMIAL:
        return check_steps("total_iters", s->total_iters, msg, n) && check_nonneg("power", s->power, msg, n);
    case K_WARM_RESTARTS:
        return check_warm_restarts(s, msg, n);
    case K_PLATEAU:
        return check_plateau(s, msg, n);
    case K_SEQUENTIAL:
    case K_CHAINED:
    case K_LAMBDA:
    case K_MULTIPLICATIVE:
        return true;
    }
    return true;
}

/* A group's OneCycleLR bounds. */
bool zg__sched_check_extra(const zg_sched *s, const zg__sched_extra *e, int g, char *msg, size_t n) {
    if (!finite_nonneg(e->initial_lr) || !finite_nonneg(e->max_lr) || !finite_nonneg(e->min_lr)) {
        snprintf(msg, n, "group %d: the lrs must be finite and >= 0 (initial %g, max %g, min %g)", g, e->initial_lr,
                 e->max_lr, e->min_lr);
        return false;
    }
    if (s->cycle_momentum) {
        double hi = s->use_beta1 ? 1 : INFINITY;
        if (!(e->base_momentum >= 0 && e->base_momentum < hi) || !(e->max_momentum >= 0 && e->max_momentum < hi)) {
            snprintf(msg, n, "group %d: base_momentum %g and max_momentum %g must be in [0, %s)", g, e->base_momentum,
                     e->max_momentum, s->use_beta1 ? "1) (they are beta1" : "inf");
            return false;
        }
    }
    return true;
}

/* ---- a step ------------------------------------------------------------------- */

/* The counters stay below 2^53, so that the next step cannot overflow
 * them (they start at most there: loading refuses more). */
int zg__sched_check_step(const zg_sched *s) {
    int n = zg_optim_num_groups(s->opt);
    if (n != s->n_groups)
        return zg__fail(ZG_ERR_STATE, "zg_sched_step: the optimizer has %d parameter groups, the %s was made for %d",
                        n, zg__sched_kind_names[s->kind], s->n_groups);
    if (s->last_epoch < ZG__MAX_COUNT && s->step_count < ZG__MAX_COUNT) return ZG_OK;
    return zg__fail(ZG_ERR_STATE, "zg_sched_step: %s has stepped 2^53 times; it counts no further",
                    zg__sched_kind_names[s->kind]);
}

int zg__sched_apply(zg_optim *opt, int n, const double *lrs, const double *moms, zg_hparam mk, const char *who,
                    double *old_lr, double *old_m) {
    int rc = ZG_OK, g = 0;
    for (; g < n && !rc; g++) {
        old_lr[g] = zg_optim_get_hparam(opt, g, ZG_HP_LR);
        if (moms) {
            old_m[g] = zg_optim_get_hparam(opt, g, mk);
            rc = zg_optim_set_hparam(opt, g, mk, moms[g]);
        }
        if (!rc) rc = zg_optim_set_hparam(opt, g, ZG_HP_LR, lrs[g]);
    }
    if (rc) {
        char inner[768];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        for (int h = 0; h < g; h++) {
            if (moms) zg_optim_set_hparam(opt, h, mk, old_m[h]);
            zg_optim_set_hparam(opt, h, ZG_HP_LR, old_lr[h]);
        }
        return zg__fail(rc, "zg_sched_step: %s: %s", who, inner);
    }
    return ZG_OK;
}

void zg__sched_commit(zg_sched *s, const zg__sched_pos *pos) {
    s->last_epoch = pos->last_epoch;
    s->step_count = pos->step_count;
    s->t_cur = pos->t_cur;
    s->t_i = pos->t_i;
    for (int g = 0; g < s->n_groups; g++) s->last_lrs[g] = zg__sched_group_lr(s, g);
}

int zg__sched_base_step(zg_sched *s, zg__sched_mode mode, int64_t epoch) {
    int rc = zg__sched_check_step(s);
    if (rc) return rc;
    const int n = s->n_groups;
    double stack[5 * 8];
    double *buf = stack;
    if (n > 8 && !(buf = zg__malloc(5 * (size_t)n * sizeof *buf)))
        return zg__fail(ZG_ERR_NOMEM, "zg_sched_step: out of memory");
    double *cur = buf, *lrs = buf + n, *moms = buf + 2 * n, *old_lr = buf + 3 * n, *old_m = buf + 4 * n;
    for (int g = 0; g < n; g++) cur[g] = zg__sched_group_lr(s, g);
    zg__sched_pos pos;
    rc = zg__sched_plan(s, mode, epoch, cur, lrs, moms, &pos);
    bool mom = s->kind == K_ONECYCLE && s->cycle_momentum;
    zg_hparam mk = s->use_beta1 ? ZG_HP_BETA1 : ZG_HP_MOMENTUM;
    if (!rc) rc = zg__sched_apply(s->opt, n, lrs, mom ? moms : NULL, mk, zg__sched_kind_names[s->kind], old_lr, old_m);
    if (!rc) zg__sched_commit(s, &pos);
    if (buf != stack) free(buf);
    return rc;
}

int zg_sched_step(zg_sched *s) {
    if (!s) return zg__fail(ZG_ERR_ARG, "zg_sched_step: scheduler is NULL");
    if (s->owner)
        return zg__fail(ZG_ERR_STATE, "zg_sched_step: this %s belongs to a %s; step that one",
                        zg__sched_kind_names[s->kind], zg__sched_kind_names[s->owner->kind]);
    if (s->kind == K_PLATEAU)
        return zg__fail(ZG_ERR_STATE,
                        "zg_sched_step: ReduceLROnPlateau steps on a metric: call zg_sched_step_metric(s, metric) "
                        "(e.g. with the validation loss)");
    if (s->opt && zg__emit_sched_step(s, s->opt, s->opt->params, s->opt->n_params))
        return ZG_ERR_STATE; /* a listener refuses (before the optimizer's first step) */
    if (s->kind == K_SEQUENTIAL) return zg__sched_sequential_step(s);
    if (s->kind == K_CHAINED) return zg__sched_chained_step(s);
    return zg__sched_base_step(s, ZG__SCHED_NEXT, 0);
}

int zg_sched_step_metric(zg_sched *s, double metric) {
    if (!s) return zg__fail(ZG_ERR_ARG, "zg_sched_step_metric: scheduler is NULL");
    if (s->kind != K_PLATEAU)
        return zg__fail(ZG_ERR_ARG, "zg_sched_step_metric: a %s does not step on a metric; call zg_sched_step",
                        zg__sched_kind_names[s->kind]);
    return zg__sched_plateau_step(s, metric);
}

bool zg_sched_needs_metric(const zg_sched *s) { return s && s->kind == K_PLATEAU; }

/* ---- queries ---------------------------------------------------------------- */

double zg_sched_get_last_lr(const zg_sched *s, int group) {
    if (!s) {
        zg__fail(ZG_ERR_ARG, "zg_sched_get_last_lr: scheduler is NULL");
        return NAN;
    }
    if (group < 0 || group >= s->n_groups) {
        zg__fail(ZG_ERR_ARG, "zg_sched_get_last_lr: group %d out of range (%d groups)", group, s->n_groups);
        return NAN;
    }
    return s->last_lrs[group];
}

int64_t zg_sched_last_epoch(const zg_sched *s) {
    if (!s) return zg__fail(ZG_ERR_ARG, "zg_sched_last_epoch: scheduler is NULL");
    return s->last_epoch;
}

const char *zg_sched_name(const zg_sched *s) {
    if (!s) return zg__fail_null("zg_sched_name: scheduler is NULL");
    return zg__sched_kind_names[s->kind];
}

zg_optim *zg_sched_optimizer(const zg_sched *s) {
    if (!s) return zg__fail_null("zg_sched_optimizer: scheduler is NULL");
    return s->opt;
}
