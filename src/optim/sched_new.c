/* The constructors of the schedulers that compute lrs themselves (StepLR,
 * MultiStepLR, ExponentialLR, ConstantLR, LinearLR, PolynomialLR,
 * CosineAnnealingLR, CosineAnnealingWarmRestarts, LambdaLR,
 * MultiplicativeLR, OneCycleLR), each validated before it touches the
 * optimizer, then started as PyTorch's __init__ does (one step). */
#include "sched_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- construction ---------------------------------------------------------- */

/* LRScheduler.__init__ with last_epoch -1: the group's initial_lr, set
 * to its lr unless an earlier scheduler set it, is the base lr; then the
 * initial step. */
static int sched_start(zg_sched *s) {
    for (int g = 0; g < s->n_groups; g++) {
        zg__sched_extra *e = zg__sched_extra_of(s, g);
        if (!e->has_initial) {
            e->initial_lr = zg__sched_group_lr(s, g);
            e->has_initial = true;
        }
        s->base_lrs[g] = e->initial_lr;
    }
    s->step_count = 0;
    return zg__sched_base_step(s, ZG__SCHED_INITIAL, 0);
}

/* Frees s and fails with fn's name before the current error. */
static zg_sched *sched_fail(const char *fn, zg_sched *s, int rc) {
    char inner[768];
    snprintf(inner, sizeof inner, "%s", zg_last_error());
    zg_sched_free(s);
    zg__fail(rc, "%s: %s", fn, inner);
    return NULL;
}

static zg_sched *sched_finish(const char *fn, zg_sched *s) {
    char msg[256];
    if (!zg__sched_check_hyper(s, msg, sizeof msg)) {
        zg_sched_free(s);
        return zg__fail_null("%s: %s", fn, msg);
    }
    int rc = sched_start(s);
    return rc ? sched_fail(fn, s, rc) : s;
}

zg_sched *zg_sched_step_lr(zg_optim *opt, int64_t step_size, double gamma) {
    zg_sched *s = zg__sched_begin("zg_sched_step_lr", K_STEP, opt);
    if (!s) return NULL;
    s->step_size = step_size;
    s->gamma = gamma;
    return sched_finish("zg_sched_step_lr", s);
}

zg_sched *zg_sched_cosine(zg_optim *opt, int64_t t_max, double eta_min) {
    zg_sched *s = zg__sched_begin("zg_sched_cosine", K_COSINE, opt);
    if (!s) return NULL;
    s->t_max = t_max;
    s->eta_min = eta_min;
    return sched_finish("zg_sched_cosine", s);
}

zg_sched *zg_sched_linear(zg_optim *opt, double start_factor, double end_factor, int64_t total_iters) {
    zg_sched *s = zg__sched_begin("zg_sched_linear", K_LINEAR, opt);
    if (!s) return NULL;
    s->start_factor = start_factor;
    s->end_factor = end_factor;
    s->total_iters = total_iters;
    return sched_finish("zg_sched_linear", s);
}

zg_sched *zg_sched_exponential(zg_optim *opt, double gamma) {
    zg_sched *s = zg__sched_begin("zg_sched_exponential", K_EXPONENTIAL, opt);
    if (!s) return NULL;
    s->gamma = gamma;
    return sched_finish("zg_sched_exponential", s);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

zg_sched *zg_sched_multistep(zg_optim *opt, const int64_t *milestones, int n, double gamma) {
    const char *fn = "zg_sched_multistep";
    if (n < 0 || (n > 0 && !milestones)) return zg__fail_null("%s: milestones is NULL or n (%d) is negative", fn, n);
    zg_sched *s = zg__sched_begin(fn, K_MULTISTEP, opt);
    if (!s) return NULL;
    if (!(s->milestones = zg__malloc(((size_t)n + 1) * sizeof *s->milestones))) {
        zg_sched_free(s);
        return zg__fail_null("%s: out of memory", fn);
    }
    /* PyTorch counts them (collections.Counter): any order, a repeat
     * multiplies by gamma once more. */
    if (n > 0) memcpy(s->milestones, milestones, (size_t)n * sizeof *milestones);
    qsort(s->milestones, (size_t)n, sizeof *s->milestones, cmp_i64);
    s->n_milestones = n;
    s->gamma = gamma;
    return sched_finish(fn, s);
}

zg_sched *zg_sched_constant(zg_optim *opt, double factor, int64_t total_iters) {
    zg_sched *s = zg__sched_begin("zg_sched_constant", K_CONSTANT, opt);
    if (!s) return NULL;
    s->factor = factor;
    s->total_iters = total_iters;
    return sched_finish("zg_sched_constant", s);
}

zg_sched *zg_sched_polynomial(zg_optim *opt, int64_t total_iters, double power) {
    zg_sched *s = zg__sched_begin("zg_sched_polynomial", K_POLYNOMIAL, opt);
    if (!s) return NULL;
    s->total_iters = total_iters;
    s->power = power;
    return sched_finish("zg_sched_polynomial", s);
}

zg_sched *zg_sched_cosine_warm_restarts(zg_optim *opt, int64_t t_0, int64_t t_mult, double eta_min) {
    zg_sched *s = zg__sched_begin("zg_sched_cosine_warm_restarts", K_WARM_RESTARTS, opt);
    if (!s) return NULL;
    s->t_0 = s->t_i = t_0;
    s->t_mult = t_mult;
    s->eta_min = eta_min;
    return sched_finish("zg_sched_cosine_warm_restarts", s);
}

static zg_sched *with_lambda(const char *fn, zg__sched_kind kind, zg_optim *opt, zg_lr_lambda f, void *user) {
    if (!f) return zg__fail_null("%s: the lr function is NULL", fn);
    zg_sched *s = zg__sched_begin(fn, kind, opt);
    if (!s) return NULL;
    s->fn = f;
    s->user = user;
    return sched_finish(fn, s);
}

zg_sched *zg_sched_lambda(zg_optim *opt, zg_lr_lambda fn, void *user) {
    return with_lambda("zg_sched_lambda", K_LAMBDA, opt, fn, user);
}

zg_sched *zg_sched_multiplicative(zg_optim *opt, zg_lr_lambda fn, void *user) {
    return with_lambda("zg_sched_multiplicative", K_MULTIPLICATIVE, opt, fn, user);
}

zg_onecycle_opts zg_onecycle_defaults(int64_t total_steps) {
    return (zg_onecycle_opts){
        .total_steps = total_steps,
        .pct_start = 0.3,
        .anneal_linear = false,
        .div_factor = 25.0,
        .final_div_factor = 1e4,
        .three_phase = false,
        .cycle_momentum = true,
        .base_momentum = 0.85,
        .max_momentum = 0.95,
        .max_lrs = NULL,
    };
}

/* OneCycleLR's bounds for each group, each checked (NULL and the error
 * set if one is invalid or memory runs out). */
static zg__sched_extra *onecycle_bounds(const char *fn, const zg_sched *s, double max_lr, const zg_onecycle_opts *opts) {
    zg__sched_extra *ex = zg__calloc((size_t)s->n_groups + 1, sizeof *ex);
    if (!ex) return zg__fail_null("%s: out of memory", fn);
    for (int g = 0; g < s->n_groups; g++) {
        char msg[256];
        double m = opts->max_lrs ? opts->max_lrs[g] : max_lr;
        ex[g].has_initial = true;
        ex[g].initial_lr = m / s->div_factor;
        ex[g].max_lr = m;
        ex[g].min_lr = ex[g].initial_lr / s->final_div_factor;
        ex[g].max_momentum = opts->max_momentum;
        ex[g].base_momentum = opts->base_momentum;
        if (!zg__sched_check_extra(s, &ex[g], g, msg, sizeof msg)) {
            free(ex);
            return zg__fail_null("%s: %s", fn, msg);
        }
    }
    return ex;
}

/* Writes the momenta (the optimizer may refuse one, e.g. 0 with nesterov),
 * then the record, then takes the initial step; if anything fails, the
 * old record and momenta come back (PyTorch would leave them changed). */
static int onecycle_apply(zg_sched *s, const zg__sched_extra *ex, const zg_onecycle_opts *opts) {
    zg__sched_extra *old = zg__malloc(((size_t)s->n_groups + 1) * sizeof *old);
    double *old_m = zg__malloc(((size_t)s->n_groups + 1) * sizeof *old_m);
    if (!old || !old_m) {
        free(old);
        free(old_m);
        return zg__fail(ZG_ERR_NOMEM, "out of memory"); /* sched_fail names fn */
    }
    for (int g = 0; g < s->n_groups; g++) old[g] = *zg__sched_extra_of(s, g);
    zg_hparam mk = s->use_beta1 ? ZG_HP_BETA1 : ZG_HP_MOMENTUM;
    int rc = ZG_OK, set = 0;
    for (; s->cycle_momentum && set < s->n_groups && !rc; set++) {
        old_m[set] = zg_optim_get_hparam(s->opt, set, mk);
        rc = zg_optim_set_hparam(s->opt, set, mk, opts->max_momentum);
    }
    for (int g = 0; g < s->n_groups && !rc; g++) {
        zg__sched_extra *e = zg__sched_extra_of(s, g);
        e->has_initial = true;
        e->initial_lr = ex[g].initial_lr;
        e->max_lr = ex[g].max_lr;
        e->min_lr = ex[g].min_lr;
        if (s->cycle_momentum) {
            e->max_momentum = opts->max_momentum;
            e->base_momentum = opts->base_momentum;
        }
    }
    if (!rc) rc = sched_start(s);
    if (rc) {
        for (int g = 0; g < s->n_groups; g++) *zg__sched_extra_of(s, g) = old[g];
        for (int g = 0; g < set; g++) zg_optim_set_hparam(s->opt, g, mk, old_m[g]);
    }
    free(old);
    free(old_m);
    return rc;
}

zg_sched *zg_sched_onecycle(zg_optim *opt, double max_lr, const zg_onecycle_opts *opts) {
    const char *fn = "zg_sched_onecycle";
    if (!opts) return zg__fail_null("%s: opts is NULL (start from zg_onecycle_defaults(total_steps))", fn);
    zg_sched *s = zg__sched_begin(fn, K_ONECYCLE, opt);
    if (!s) return NULL;
    s->total_steps = opts->total_steps;
    s->pct_start = opts->pct_start;
    s->anneal_linear = opts->anneal_linear;
    s->div_factor = opts->div_factor;
    s->final_div_factor = opts->final_div_factor;
    s->three_phase = opts->three_phase;
    s->cycle_momentum = opts->cycle_momentum;
    char msg[256];
    if (!zg__sched_check_hyper(s, msg, sizeof msg)) {
        zg_sched_free(s);
        return zg__fail_null("%s: %s", fn, msg);
    }
    if (s->cycle_momentum) {
        zg_optim_kind k = zg_optim_get_kind(opt);
        s->use_beta1 = k == ZG_ADAM || k == ZG_ADAMW;
        if (!s->use_beta1 && k != ZG_SGD && k != ZG_RMSPROP) {
            zg_sched_free(s);
            return zg__fail_null("%s: optimizer must support momentum (SGD, RMSprop) or beta1 (Adam, AdamW) with "
                                 "cycle_momentum enabled",
                                 fn);
        }
    }
    /* Check everything before the groups change. */
    zg__sched_extra *ex = onecycle_bounds(fn, s, max_lr, opts);
    if (!ex) {
        zg_sched_free(s);
        return NULL;
    }
    int rc = onecycle_apply(s, ex, opts);
    free(ex);
    return rc ? sched_fail(fn, s, rc) : s;
}

