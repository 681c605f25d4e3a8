/* The schedulers' constructors: StepLR, CosineAnnealingLR, LinearLR,
 * OneCycleLR and SequentialLR, each validated before it touches the
 * optimizer, then started as PyTorch's __init__ does (one step). */
#include "sched_internal.h"

#include <math.h>
#include <stdio.h>

/* ---- construction ---------------------------------------------------------- */

/* The optimizer check and the scheduler object with its record. */
static zg_sched *sched_begin(const char *fn, zg__sched_kind kind, zg_optim *opt) {
    if (!opt) return zg__fail_null("%s: optimizer is NULL", fn);
    int n = zg_optim_num_groups(opt);
    zg_sched *s = zg__sched_alloc(kind, opt, n);
    if (!s || !(s->rec = zg__sched_record_acquire(opt, n))) {
        zg_sched_free(s);
        return zg__fail_null("%s: out of memory", fn);
    }
    return s;
}

/* _LRScheduler.__init__ with last_epoch -1: initial_lr defaults to the
 * group's lr, the base lrs are the initial lrs, then the initial step. */
static int sched_start(zg_sched *s) {
    for (int g = 0; g < s->n_groups; g++) {
        zg__sched_extra *e = &s->rec->g[g];
        if (!e->has_initial) {
            e->initial_lr = zg__sched_group_lr(s, g);
            e->has_initial = true;
        }
        s->base_lrs[g] = e->initial_lr;
    }
    s->step_count = 0;
    return zg__sched_base_step(s, false, 0);
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
    zg_sched *s = sched_begin("zg_sched_step_lr", K_STEP, opt);
    if (!s) return NULL;
    s->step_size = step_size;
    s->gamma = gamma;
    return sched_finish("zg_sched_step_lr", s);
}

zg_sched *zg_sched_cosine(zg_optim *opt, int64_t t_max, double eta_min) {
    zg_sched *s = sched_begin("zg_sched_cosine", K_COSINE, opt);
    if (!s) return NULL;
    s->t_max = t_max;
    s->eta_min = eta_min;
    return sched_finish("zg_sched_cosine", s);
}

zg_sched *zg_sched_linear(zg_optim *opt, double start_factor, double end_factor, int64_t total_iters) {
    zg_sched *s = sched_begin("zg_sched_linear", K_LINEAR, opt);
    if (!s) return NULL;
    s->start_factor = start_factor;
    s->end_factor = end_factor;
    s->total_iters = total_iters;
    return sched_finish("zg_sched_linear", s);
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
    memcpy(old, s->rec->g, (size_t)s->n_groups * sizeof *old);
    zg_hparam mk = s->use_beta1 ? ZG_HP_BETA1 : ZG_HP_MOMENTUM;
    int rc = ZG_OK, set = 0;
    for (; s->cycle_momentum && set < s->n_groups && !rc; set++) {
        old_m[set] = zg_optim_get_hparam(s->opt, set, mk);
        rc = zg_optim_set_hparam(s->opt, set, mk, opts->max_momentum);
    }
    for (int g = 0; g < s->n_groups && !rc; g++) {
        zg__sched_extra *e = &s->rec->g[g];
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
        memcpy(s->rec->g, old, (size_t)s->n_groups * sizeof *old);
        for (int g = 0; g < set; g++) zg_optim_set_hparam(s->opt, g, mk, old_m[g]);
    }
    free(old);
    free(old_m);
    return rc;
}

zg_sched *zg_sched_onecycle(zg_optim *opt, double max_lr, const zg_onecycle_opts *opts) {
    const char *fn = "zg_sched_onecycle";
    if (!opts) return zg__fail_null("%s: opts is NULL (start from zg_onecycle_defaults(total_steps))", fn);
    zg_sched *s = sched_begin(fn, K_ONECYCLE, opt);
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

zg_sched *zg_sched_sequential(zg_optim *opt, zg_sched *const *scheds, int n, const int64_t *milestones,
                              int n_milestones) {
    const char *fn = "zg_sched_sequential";
    char msg[512] = "";
    if (n < 0 || (n > 0 && !scheds)) {
        snprintf(msg, sizeof msg, "schedulers is NULL or n (%d) is negative", n);
        return zg__fail_null("%s: %s", fn, msg);
    }
    /* Validation; the schedulers are ours from here on, also on failure
     * (except one that already belongs to another SequentialLR). */
    if (!opt) snprintf(msg, sizeof msg, "optimizer is NULL");
    else if (n == 0) snprintf(msg, sizeof msg, "no schedulers");
    for (int i = 0; i < n && !*msg; i++) {
        const zg_sched *c = scheds[i];
        if (!c) snprintf(msg, sizeof msg, "scheduler %d is NULL", i);
        else if (c->owned) snprintf(msg, sizeof msg, "scheduler %d already belongs to a SequentialLR", i);
        else if (c->kind == K_SEQUENTIAL) snprintf(msg, sizeof msg, "scheduler %d is a SequentialLR (no nesting)", i);
        else if (c->opt != opt)
            snprintf(msg, sizeof msg,
                     "expects all schedulers to belong to the same optimizer, but scheduler %d has a different one", i);
        else if (c->n_groups != zg_optim_num_groups(opt))
            snprintf(msg, sizeof msg, "scheduler %d was made for %d parameter groups, the optimizer has %d", i,
                     c->n_groups, zg_optim_num_groups(opt));
        for (int j = 0; j < i && !*msg; j++)
            if (scheds[j] == c) snprintf(msg, sizeof msg, "scheduler %d is listed twice", i);
    }
    if (!*msg && n_milestones != n - 1)
        snprintf(msg, sizeof msg,
                 "expects number of schedulers provided to be one more than the number of milestone points, but got "
                 "number of schedulers %d and the number of milestones to be equal to %d",
                 n, n_milestones);
    if (!*msg && n_milestones > 0 && !milestones) snprintf(msg, sizeof msg, "milestones is NULL");
    for (int i = 0; i < n_milestones && !*msg; i++)
        if (milestones[i] <= 0 || (i > 0 && milestones[i] <= milestones[i - 1]))
            snprintf(msg, sizeof msg, "milestones must be increasing and > 0 (milestone %d is %lld)", i,
                     (long long)milestones[i]);
    zg_sched *s = NULL;
    if (!*msg) {
        s = zg__sched_alloc(K_SEQUENTIAL, opt, zg_optim_num_groups(opt));
        if (s) {
            s->children = zg__calloc((size_t)n, sizeof *s->children);
            s->milestones = zg__calloc((size_t)n, sizeof *s->milestones);
        }
        if (!s || !s->children || !s->milestones) snprintf(msg, sizeof msg, "out of memory");
    }
    if (*msg) {
        if (s) {
            free(s->children);
            s->children = NULL;
            zg_sched_free(s);
        }
        for (int i = 0; i < n && scheds; i++) {
            zg_sched *c = scheds[i];
            bool dup = false;
            for (int j = 0; j < i && !dup; j++) dup = scheds[j] == c;
            if (c && !dup && !c->owned) zg_sched_free(c);
        }
        return zg__fail_null("%s: %s", fn, msg);
    }
    for (int i = 0; i < n; i++) {
        s->children[i] = scheds[i];
        scheds[i]->owned = true;
    }
    s->n_children = n;
    if (n_milestones > 0) memcpy(s->milestones, milestones, (size_t)n_milestones * sizeof *milestones);

    /* Reset the lrs to the initial ones, undo the children's initial steps
     * and redo only the first one's. */
    const zg__sched_record *rec = scheds[0]->rec;
    int rc = ZG_OK;
    for (int g = 0; g < s->n_groups && !rc; g++) rc = zg_optim_set_hparam(opt, g, ZG_HP_LR, rec->g[g].initial_lr);
    for (int i = 0; i < n; i++) s->children[i]->last_epoch -= 1;
    if (!rc) {
        s->children[0]->step_count = 0;
        rc = zg__sched_base_step(s->children[0], false, 0);
    }
    if (rc) {
        char inner[768];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        zg_sched_free(s);
        zg__fail(rc, "%s: %s", fn, inner);
        return NULL;
    }
    s->last_epoch = 0;
    memcpy(s->last_lrs, s->children[0]->last_lrs, (size_t)s->n_groups * sizeof *s->last_lrs);
    return s;
}

zg_sched *zg_sched_warmup_cosine(zg_optim *opt, int64_t warmup, double start_factor, int64_t total_steps,
                                 double eta_min) {
    const char *fn = "zg_sched_warmup_cosine";
    if (!opt) return zg__fail_null("%s: optimizer is NULL", fn);
    if (warmup <= 0 || warmup >= total_steps)
        return zg__fail_null("%s: need 0 < warmup < total_steps (got warmup %lld, total_steps %lld)", fn,
                             (long long)warmup, (long long)total_steps);
    char inner[768];
    zg_sched *w = zg_sched_linear(opt, start_factor, 1.0, warmup);
    if (!w) goto fail;
    zg_sched *c = zg_sched_cosine(opt, total_steps - warmup, eta_min);
    if (!c) {
        zg_sched_free(w);
        goto fail;
    }
    zg_sched *s = zg_sched_sequential(opt, (zg_sched *const[]){w, c}, 2, &warmup, 1);
    if (!s) goto fail;
    return s;
fail:
    snprintf(inner, sizeof inner, "%s", zg_last_error());
    return zg__fail_null("%s: %s", fn, inner);
}
