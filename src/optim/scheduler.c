/* Learning-rate schedulers as torch.optim.lr_scheduler in PyTorch 1.13:
 * StepLR, CosineAnnealingLR, LinearLR, OneCycleLR and SequentialLR, with
 * PyTorch's formulas in its order of floating-point operations (its
 * recursive get_lr where it has one, the closed form where SequentialLR
 * calls step(0)), so that the lr sequences agree to the last bits.
 *
 * PyTorch keeps some scheduler values in the optimizer's param_groups:
 * 'initial_lr' (set by the first scheduler made on the optimizer,
 * overwritten by OneCycleLR; the base lr of every later scheduler and the
 * lr SequentialLR resets to) and OneCycleLR's 'max_lr', 'min_lr',
 * 'max_momentum', 'base_momentum'. zgrad's groups hold only the
 * optimizer's hyperparameters, so these live in a record per optimizer,
 * shared by all of its live schedulers (a registry keyed by the optimizer,
 * freed with its last scheduler). */
#include "sched_internal.h"

#include "../util/json.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif


/* ---- the per-optimizer record ------------------------------------------- */



static zg__sched_record *records;
static pthread_mutex_t records_lock = PTHREAD_MUTEX_INITIALIZER;

/* The optimizer's record with room for n groups (one more reference). */
zg__sched_record *zg__sched_record_acquire(const zg_optim *opt, int n) {
    pthread_mutex_lock(&records_lock);
    zg__sched_record *r = records;
    while (r && r->opt != opt) r = r->next;
    bool fresh = r == NULL;
    if (fresh) {
        r = zg__calloc(1, sizeof *r);
        if (!r) goto fail;
        r->opt = opt;
    }
    if (r->n < n) {
        zg__sched_extra *g = zg__realloc(r->g, (size_t)n * sizeof *g);
        if (!g) {
            if (fresh) free(r);
            goto fail;
        }
        memset(g + r->n, 0, (size_t)(n - r->n) * sizeof *g);
        r->g = g;
        r->n = n;
    }
    if (fresh) {
        r->next = records;
        records = r;
    }
    r->refs++;
    pthread_mutex_unlock(&records_lock);
    return r;
fail:
    pthread_mutex_unlock(&records_lock);
    return NULL;
}

static void record_release(zg__sched_record *r) {
    if (!r) return;
    pthread_mutex_lock(&records_lock);
    if (--r->refs == 0) {
        zg__sched_record **p = &records;
        while (*p != r) p = &(*p)->next;
        *p = r->next;
        free(r->g);
        free(r);
    }
    pthread_mutex_unlock(&records_lock);
}

/* ---- the scheduler ------------------------------------------------------ */

const char *const zg__sched_kind_names[] = {
    [K_STEP] = "StepLR",
    [K_COSINE] = "CosineAnnealingLR",
    [K_LINEAR] = "LinearLR",
    [K_ONECYCLE] = "OneCycleLR",
    [K_SEQUENTIAL] = "SequentialLR",
};





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
    record_release(s->rec);
    free(s->base_lrs);
    free(s->last_lrs);
    free(s->loaded_extra);
    free(s);
}

/* ---- validation ---------------------------------------------------------- */

static bool finite_nonneg(double v) { return isfinite(v) && v >= 0; }

/* A length in steps: > 0, and a counter (at most 2^53: the formulas add
 * and double it, and compute with it as a double). */
static bool check_steps(const char *what, int64_t v, char *msg, size_t n) {
    if (v > 0 && v <= ZG__MAX_COUNT) return true;
    snprintf(msg, n, "%s must be > 0 and at most 2^53 (got %lld)", what, (long long)v);
    return false;
}

/* Checks the hyperparameters of s (for construction and loading); writes
 * the problem to msg. */
bool zg__sched_check_hyper(const zg_sched *s, char *msg, size_t n) {
    switch (s->kind) {
    case K_STEP:
        if (!check_steps("step_size", s->step_size, msg, n)) return false;
        if (!finite_nonneg(s->gamma)) {
            snprintf(msg, n, "gamma must be finite and >= 0 (got %g)", s->gamma);
            return false;
        }
        return true;
    case K_COSINE:
        if (!check_steps("T_max", s->t_max, msg, n)) return false;
        if (!finite_nonneg(s->eta_min)) {
            snprintf(msg, n, "eta_min must be finite and >= 0 (got %g)", s->eta_min);
            return false;
        }
        return true;
    case K_LINEAR:
        /* PyTorch 1.13 accepts start_factor 0 and then divides by zero at
         * the first step; later versions require > 0. */
        if (!(s->start_factor > 0 && s->start_factor <= 1)) {
            snprintf(msg, n, "start_factor must be in (0, 1] (got %g)", s->start_factor);
            return false;
        }
        if (!(s->end_factor >= 0 && s->end_factor <= 1)) {
            snprintf(msg, n, "end_factor must be in [0, 1] (got %g)", s->end_factor);
            return false;
        }
        if (!check_steps("total_iters", s->total_iters, msg, n)) return false;
        return true;
    case K_ONECYCLE:
        if (!check_steps("total_steps", s->total_steps, msg, n)) return false;
        if (!(s->pct_start >= 0 && s->pct_start <= 1)) {
            snprintf(msg, n, "pct_start must be in [0, 1] (got %g)", s->pct_start);
            return false;
        }
        if (!(isfinite(s->div_factor) && s->div_factor > 0) ||
            !(isfinite(s->final_div_factor) && s->final_div_factor > 0)) {
            snprintf(msg, n, "div_factor and final_div_factor must be finite and > 0 (got %g, %g)", s->div_factor,
                     s->final_div_factor);
            return false;
        }
        return true;
    case K_SEQUENTIAL:
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

/* ---- the formulas ---------------------------------------------------------- */

double zg__sched_group_lr(const zg_sched *s, int g) { return zg_optim_get_hparam(s->opt, g, ZG_HP_LR); }

static double anneal(bool linear, double start, double end, double pct) {
    if (linear) return (end - start) * pct + start;
    double cos_out = cos(M_PI * pct) + 1;
    return end + (start - end) / 2.0 * cos_out;
}

/* OneCycleLR's lr (and momentum) for group g at step_num. */
static int onecycle_value(const zg_sched *s, int g, int64_t step_num, double *lr, double *mom) {
    const zg__sched_extra *e = &s->rec->g[g];
    double pct_total = s->pct_start * (double)s->total_steps;
    double ends[3];
    double lr_a[3], lr_b[3], m_a[3], m_b[3];
    int n;
    if (s->three_phase) {
        n = 3;
        ends[0] = pct_total - 1;
        ends[1] = 2 * s->pct_start * (double)s->total_steps - 2;
        ends[2] = (double)(s->total_steps - 1);
        lr_a[0] = e->initial_lr, lr_b[0] = e->max_lr, m_a[0] = e->max_momentum, m_b[0] = e->base_momentum;
        lr_a[1] = e->max_lr, lr_b[1] = e->initial_lr, m_a[1] = e->base_momentum, m_b[1] = e->max_momentum;
        lr_a[2] = e->initial_lr, lr_b[2] = e->min_lr, m_a[2] = e->max_momentum, m_b[2] = e->max_momentum;
    } else {
        n = 2;
        ends[0] = pct_total - 1;
        ends[1] = (double)(s->total_steps - 1);
        lr_a[0] = e->initial_lr, lr_b[0] = e->max_lr, m_a[0] = e->max_momentum, m_b[0] = e->base_momentum;
        lr_a[1] = e->max_lr, lr_b[1] = e->min_lr, m_a[1] = e->base_momentum, m_b[1] = e->max_momentum;
    }
    double start = 0, x = (double)step_num;
    for (int i = 0; i < n; i++) {
        if (x <= ends[i] || i == n - 1) {
            /* PyTorch raises ZeroDivisionError here (e.g. pct_start *
             * total_steps == 1). */
            if (ends[i] - start == 0)
                return zg__fail(ZG_ERR_ARG,
                                "zg_sched_step: OneCycleLR: phase %d has zero length at step %lld (pct_start %g, "
                                "total_steps %lld)",
                                i + 1, (long long)step_num, s->pct_start, (long long)s->total_steps);
            double pct = (x - start) / (ends[i] - start);
            *lr = anneal(s->anneal_linear, lr_a[i], lr_b[i], pct);
            *mom = anneal(s->anneal_linear, m_a[i], m_b[i], pct);
            return ZG_OK;
        }
        start = ends[i];
    }
    return ZG_OK;
}

/* The lrs (and OneCycleLR's momenta) at epoch le; closed: the closed form
 * (PyTorch's step(epoch)), which OneCycleLR does not have. step_count is
 * the count after this step, as PyTorch increments it before get_lr. */
static int compute(const zg_sched *s, int64_t le, int64_t step_count, bool closed, double *lrs, double *moms) {
    for (int g = 0; g < s->n_groups; g++) {
        double lr = zg__sched_group_lr(s, g), base = s->base_lrs[g];
        switch (s->kind) {
        case K_STEP:
            if (closed) lrs[g] = base * pow(s->gamma, (double)(le / s->step_size));
            else lrs[g] = (le == 0 || le % s->step_size != 0) ? lr : lr * s->gamma;
            break;
        case K_COSINE: {
            double T = (double)s->t_max, eta = s->eta_min;
            if (closed)
                lrs[g] = eta + (base - eta) * (1 + cos(M_PI * (double)le / T)) / 2;
            else if (le == 0)
                lrs[g] = lr;
            else if (step_count == 1 && le > 0)
                lrs[g] = eta + (base - eta) * (1 + cos((double)le * M_PI / T)) / 2;
            else if ((le - 1 - s->t_max) % (2 * s->t_max) == 0)
                lrs[g] = lr + (base - eta) * (1 - cos(M_PI / T)) / 2;
            else
                lrs[g] = (1 + cos(M_PI * (double)le / T)) / (1 + cos(M_PI * (double)(le - 1) / T)) * (lr - eta) + eta;
            break;
        }
        case K_LINEAR: {
            double sf = s->start_factor, ef = s->end_factor;
            int64_t ti = s->total_iters;
            if (closed)
                lrs[g] = base * (sf + (ef - sf) * (double)(ti < le ? ti : le) / (double)ti);
            else if (le == 0)
                lrs[g] = lr * sf;
            else if (le > ti)
                lrs[g] = lr;
            else
                lrs[g] = lr * (1. + (ef - sf) / ((double)ti * sf + (double)(le - 1) * (ef - sf)));
            break;
        }
        case K_ONECYCLE: {
            if (le > s->total_steps)
                return zg__fail(ZG_ERR_STATE,
                                "zg_sched_step: OneCycleLR: tried to step %lld times; the specified number of total "
                                "steps is %lld",
                                (long long)le + 1, (long long)s->total_steps);
            int rc = onecycle_value(s, g, le, &lrs[g], &moms[g]);
            if (rc) return rc;
            break;
        }
        case K_SEQUENTIAL:
            break;
        }
        /* PyTorch would write a negative lr (e.g. OneCycleLR's linear
         * anneal one step past total_steps); zgrad's optimizers refuse it. */
        if (!finite_nonneg(lrs[g]))
            return zg__fail(ZG_ERR_STATE,
                            "zg_sched_step: %s computed an invalid lr %g for group %d at epoch %lld (the group's lr "
                            "was %g)",
                            zg__sched_kind_names[s->kind], lrs[g], g, (long long)le, lr);
    }
    return ZG_OK;
}

/* The counters stay below 2^53, so that the next step cannot overflow
 * them (they start at most there: loading refuses more). */
static int check_count(const zg_sched *s) {
    if (s->last_epoch < ZG__MAX_COUNT && s->step_count < ZG__MAX_COUNT) return ZG_OK;
    return zg__fail(ZG_ERR_STATE, "zg_sched_step: %s has stepped 2^53 times; it counts no further",
                    zg__sched_kind_names[s->kind]);
}

static int check_groups(const zg_sched *s) {
    int n = zg_optim_num_groups(s->opt);
    if (n != s->n_groups)
        return zg__fail(ZG_ERR_STATE, "zg_sched_step: the optimizer has %d parameter groups, the %s was made for %d",
                        n, zg__sched_kind_names[s->kind], s->n_groups);
    return ZG_OK;
}

/* Writes the lrs (and momenta) into the groups; on a failure restores what
 * it changed. */
static int apply(zg_sched *s, const double *lrs, const double *moms, double *old_lr, double *old_m) {
    bool mom = s->kind == K_ONECYCLE && s->cycle_momentum;
    zg_hparam mk = s->use_beta1 ? ZG_HP_BETA1 : ZG_HP_MOMENTUM;
    int rc = ZG_OK, g = 0;
    for (; g < s->n_groups && !rc; g++) {
        old_lr[g] = zg__sched_group_lr(s, g);
        if (mom) {
            old_m[g] = zg_optim_get_hparam(s->opt, g, mk);
            rc = zg_optim_set_hparam(s->opt, g, mk, moms[g]);
        }
        if (!rc) rc = zg_optim_set_hparam(s->opt, g, ZG_HP_LR, lrs[g]);
    }
    if (rc) {
        char inner[768];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        for (int h = 0; h < g; h++) {
            if (mom) zg_optim_set_hparam(s->opt, h, mk, old_m[h]);
            zg_optim_set_hparam(s->opt, h, ZG_HP_LR, old_lr[h]);
        }
        return zg__fail(rc, "zg_sched_step: %s: %s", zg__sched_kind_names[s->kind], inner);
    }
    return ZG_OK;
}

/* PyTorch's step() (has_epoch false) or step(epoch): new lrs written into
 * the groups; nothing changes on an error. */
int zg__sched_base_step(zg_sched *s, bool has_epoch, int64_t epoch) {
    int rc = check_groups(s);
    if (!rc) rc = check_count(s);
    if (rc) return rc;
    int64_t le = has_epoch ? epoch : s->last_epoch + 1;
    int64_t sc = s->step_count + 1;
    double stack[4 * 8];
    double *buf = stack;
    if (s->n_groups > 8 && !(buf = zg__malloc(4 * (size_t)s->n_groups * sizeof *buf)))
        return zg__fail(ZG_ERR_NOMEM, "zg_sched_step: out of memory");
    int n = s->n_groups;
    double *lrs = buf, *moms = buf + n, *old_lr = buf + 2 * n, *old_m = buf + 3 * n;
    rc = compute(s, le, sc, has_epoch && s->kind != K_ONECYCLE, lrs, moms);
    if (!rc) rc = apply(s, lrs, moms, old_lr, old_m);
    if (!rc) {
        s->last_epoch = le;
        s->step_count = sc;
        for (int g = 0; g < n; g++) s->last_lrs[g] = zg__sched_group_lr(s, g);
    }
    if (buf != stack) free(buf);
    return rc;
}

/* bisect_right(milestones, x): how many milestones are <= x. */
static int bisect_right(const int64_t *m, int n, int64_t x) {
    int i = 0;
    while (i < n && m[i] <= x) i++;
    return i;
}

int zg_sched_step(zg_sched *s) {
    if (!s) return zg__fail(ZG_ERR_ARG, "zg_sched_step: scheduler is NULL");
    if (s->owned)
        return zg__fail(ZG_ERR_STATE, "zg_sched_step: this %s belongs to a SequentialLR; step that one",
                        zg__sched_kind_names[s->kind]);
    if (s->opt && zg__emit_sched_step(s, s->opt, s->opt->params, s->opt->n_params))
        return ZG_ERR_STATE; /* a listener refuses (before the optimizer's first step) */
    if (s->kind != K_SEQUENTIAL) return zg__sched_base_step(s, false, 0);
    int rc = check_groups(s);
    if (!rc) rc = check_count(s);
    if (rc) return rc;
    int64_t le = s->last_epoch + 1;
    int nm = s->n_children - 1;
    int idx = bisect_right(s->milestones, nm, le);
    zg_sched *c = s->children[idx];
    rc = (idx > 0 && s->milestones[idx - 1] == le) ? zg__sched_base_step(c, true, 0) : zg__sched_base_step(c, false, 0);
    if (rc) return rc;
    s->last_epoch = le;
    memcpy(s->last_lrs, c->last_lrs, (size_t)s->n_groups * sizeof *s->last_lrs);
    return ZG_OK;
}

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
