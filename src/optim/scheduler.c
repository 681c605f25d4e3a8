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
#include "optim_internal.h"

#include "../util/json.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#define SCHED_FORMAT "zgrad.sched.v1"

/* ---- the per-optimizer record ------------------------------------------- */

typedef struct {
    bool has_initial;
    double initial_lr;
    double max_lr, min_lr;             /* OneCycleLR */
    double max_momentum, base_momentum; /* OneCycleLR with cycle_momentum */
} group_extra;

typedef struct opt_record {
    struct opt_record *next;
    const zg_optim *opt;
    int refs;
    int n;
    group_extra *g;
} opt_record;

static opt_record *records;
static pthread_mutex_t records_lock = PTHREAD_MUTEX_INITIALIZER;

/* The optimizer's record with room for n groups (one more reference). */
static opt_record *record_acquire(const zg_optim *opt, int n) {
    pthread_mutex_lock(&records_lock);
    opt_record *r = records;
    while (r && r->opt != opt) r = r->next;
    bool fresh = r == NULL;
    if (fresh) {
        r = calloc(1, sizeof *r);
        if (!r) goto fail;
        r->opt = opt;
    }
    if (r->n < n) {
        group_extra *g = realloc(r->g, (size_t)n * sizeof *g);
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

static void record_release(opt_record *r) {
    if (!r) return;
    pthread_mutex_lock(&records_lock);
    if (--r->refs == 0) {
        opt_record **p = &records;
        while (*p != r) p = &(*p)->next;
        *p = r->next;
        free(r->g);
        free(r);
    }
    pthread_mutex_unlock(&records_lock);
}

/* ---- the scheduler ------------------------------------------------------ */

typedef enum { K_STEP, K_COSINE, K_LINEAR, K_ONECYCLE, K_SEQUENTIAL } sched_kind;

static const char *const kind_names[] = {
    [K_STEP] = "StepLR",
    [K_COSINE] = "CosineAnnealingLR",
    [K_LINEAR] = "LinearLR",
    [K_ONECYCLE] = "OneCycleLR",
    [K_SEQUENTIAL] = "SequentialLR",
};

struct zg_sched {
    sched_kind kind;
    zg_optim *opt;
    opt_record *rec; /* NULL for SequentialLR and for parsed states */
    int n_groups;
    int64_t last_epoch;
    int64_t step_count; /* PyTorch's _step_count */
    double *base_lrs;   /* n_groups */
    double *last_lrs;   /* n_groups */
    bool owned;         /* a SequentialLR's child */

    /* StepLR */
    int64_t step_size;
    double gamma;
    /* CosineAnnealingLR */
    int64_t t_max;
    double eta_min;
    /* LinearLR */
    double start_factor, end_factor;
    int64_t total_iters;
    /* OneCycleLR (its per-group bounds are in rec) */
    int64_t total_steps;
    double pct_start, div_factor, final_div_factor;
    bool anneal_linear, three_phase, cycle_momentum, use_beta1;
    /* SequentialLR */
    zg_sched **children;
    int n_children;
    int64_t *milestones;

    /* A parsed state only: OneCycleLR's per-group bounds to write into rec. */
    group_extra *loaded_extra;
};

static zg_sched *sched_alloc(sched_kind kind, zg_optim *opt, int n_groups) {
    zg_sched *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->kind = kind;
    s->opt = opt;
    s->n_groups = n_groups;
    s->last_epoch = -1;
    s->base_lrs = calloc((size_t)n_groups + 1, sizeof *s->base_lrs);
    s->last_lrs = calloc((size_t)n_groups + 1, sizeof *s->last_lrs);
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

/* Checks the hyperparameters of s (for construction and loading); writes
 * the problem to msg. */
static bool check_hyper(const zg_sched *s, char *msg, size_t n) {
    switch (s->kind) {
    case K_STEP:
        if (s->step_size <= 0) {
            snprintf(msg, n, "step_size must be > 0 (got %lld)", (long long)s->step_size);
            return false;
        }
        if (!finite_nonneg(s->gamma)) {
            snprintf(msg, n, "gamma must be finite and >= 0 (got %g)", s->gamma);
            return false;
        }
        return true;
    case K_COSINE:
        if (s->t_max <= 0) {
            snprintf(msg, n, "T_max must be > 0 (got %lld)", (long long)s->t_max);
            return false;
        }
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
        if (s->total_iters <= 0) {
            snprintf(msg, n, "total_iters must be > 0 (got %lld)", (long long)s->total_iters);
            return false;
        }
        return true;
    case K_ONECYCLE:
        if (s->total_steps <= 0) {
            snprintf(msg, n, "total_steps must be > 0 (got %lld)", (long long)s->total_steps);
            return false;
        }
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
static bool check_extra(const zg_sched *s, const group_extra *e, int g, char *msg, size_t n) {
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

static double group_lr(const zg_sched *s, int g) { return zg_optim_get_hparam(s->opt, g, ZG_HP_LR); }

static double anneal(bool linear, double start, double end, double pct) {
    if (linear) return (end - start) * pct + start;
    double cos_out = cos(M_PI * pct) + 1;
    return end + (start - end) / 2.0 * cos_out;
}

/* OneCycleLR's lr (and momentum) for group g at step_num. */
static int onecycle_value(const zg_sched *s, int g, int64_t step_num, double *lr, double *mom) {
    const group_extra *e = &s->rec->g[g];
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
        double lr = group_lr(s, g), base = s->base_lrs[g];
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
                            kind_names[s->kind], lrs[g], g, (long long)le, lr);
    }
    return ZG_OK;
}

static int check_groups(const zg_sched *s) {
    int n = zg_optim_num_groups(s->opt);
    if (n != s->n_groups)
        return zg__fail(ZG_ERR_STATE, "zg_sched_step: the optimizer has %d parameter groups, the %s was made for %d",
                        n, kind_names[s->kind], s->n_groups);
    return ZG_OK;
}

/* Writes the lrs (and momenta) into the groups; on a failure restores what
 * it changed. */
static int apply(zg_sched *s, const double *lrs, const double *moms, double *old_lr, double *old_m) {
    bool mom = s->kind == K_ONECYCLE && s->cycle_momentum;
    zg_hparam mk = s->use_beta1 ? ZG_HP_BETA1 : ZG_HP_MOMENTUM;
    int rc = ZG_OK, g = 0;
    for (; g < s->n_groups && !rc; g++) {
        old_lr[g] = group_lr(s, g);
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
        return zg__fail(rc, "zg_sched_step: %s: %s", kind_names[s->kind], inner);
    }
    return ZG_OK;
}

/* PyTorch's step() (has_epoch false) or step(epoch): new lrs written into
 * the groups; nothing changes on an error. */
static int base_step(zg_sched *s, bool has_epoch, int64_t epoch) {
    int rc = check_groups(s);
    if (rc) return rc;
    int64_t le = has_epoch ? epoch : s->last_epoch + 1;
    int64_t sc = s->step_count + 1;
    double stack[4 * 8];
    double *buf = stack;
    if (s->n_groups > 8 && !(buf = malloc(4 * (size_t)s->n_groups * sizeof *buf)))
        return zg__fail(ZG_ERR_NOMEM, "zg_sched_step: out of memory");
    int n = s->n_groups;
    double *lrs = buf, *moms = buf + n, *old_lr = buf + 2 * n, *old_m = buf + 3 * n;
    rc = compute(s, le, sc, has_epoch && s->kind != K_ONECYCLE, lrs, moms);
    if (!rc) rc = apply(s, lrs, moms, old_lr, old_m);
    if (!rc) {
        s->last_epoch = le;
        s->step_count = sc;
        for (int g = 0; g < n; g++) s->last_lrs[g] = group_lr(s, g);
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
                        kind_names[s->kind]);
    if (s->opt && zg__emit_sched_step(s->opt, s->opt->params, s->opt->n_params))
        return ZG_ERR_STATE; /* a listener refuses (before the optimizer's first step) */
    if (s->kind != K_SEQUENTIAL) return base_step(s, false, 0);
    int rc = check_groups(s);
    if (rc) return rc;
    int64_t le = s->last_epoch + 1;
    int nm = s->n_children - 1;
    int idx = bisect_right(s->milestones, nm, le);
    zg_sched *c = s->children[idx];
    rc = (idx > 0 && s->milestones[idx - 1] == le) ? base_step(c, true, 0) : base_step(c, false, 0);
    if (rc) return rc;
    s->last_epoch = le;
    memcpy(s->last_lrs, c->last_lrs, (size_t)s->n_groups * sizeof *s->last_lrs);
    return ZG_OK;
}

/* ---- construction ---------------------------------------------------------- */

/* The optimizer check and the scheduler object with its record. */
static zg_sched *sched_begin(const char *fn, sched_kind kind, zg_optim *opt) {
    if (!opt) return zg__fail_null("%s: optimizer is NULL", fn);
    int n = zg_optim_num_groups(opt);
    zg_sched *s = sched_alloc(kind, opt, n);
    if (!s || !(s->rec = record_acquire(opt, n))) {
        zg_sched_free(s);
        return zg__fail_null("%s: out of memory", fn);
    }
    return s;
}

/* _LRScheduler.__init__ with last_epoch -1: initial_lr defaults to the
 * group's lr, the base lrs are the initial lrs, then the initial step. */
static int sched_start(zg_sched *s) {
    for (int g = 0; g < s->n_groups; g++) {
        group_extra *e = &s->rec->g[g];
        if (!e->has_initial) {
            e->initial_lr = group_lr(s, g);
            e->has_initial = true;
        }
        s->base_lrs[g] = e->initial_lr;
    }
    s->step_count = 0;
    return base_step(s, false, 0);
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
    if (!check_hyper(s, msg, sizeof msg)) {
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
    if (!check_hyper(s, msg, sizeof msg)) {
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
    group_extra *ex = calloc((size_t)s->n_groups + 1, sizeof *ex);
    if (!ex) {
        zg_sched_free(s);
        return zg__fail_null("%s: out of memory", fn);
    }
    for (int g = 0; g < s->n_groups; g++) {
        double m = opts->max_lrs ? opts->max_lrs[g] : max_lr;
        ex[g].has_initial = true;
        ex[g].initial_lr = m / s->div_factor;
        ex[g].max_lr = m;
        ex[g].min_lr = ex[g].initial_lr / s->final_div_factor;
        ex[g].max_momentum = opts->max_momentum;
        ex[g].base_momentum = opts->base_momentum;
        if (!check_extra(s, &ex[g], g, msg, sizeof msg)) {
            free(ex);
            zg_sched_free(s);
            return zg__fail_null("%s: %s", fn, msg);
        }
    }
    /* The old record and momenta, restored if anything below fails (PyTorch
     * would leave them changed). */
    group_extra *old = malloc(((size_t)s->n_groups + 1) * sizeof *old);
    double *old_m = malloc(((size_t)s->n_groups + 1) * sizeof *old_m);
    if (!old || !old_m) {
        free(ex);
        free(old);
        free(old_m);
        zg_sched_free(s);
        return zg__fail_null("%s: out of memory", fn);
    }
    memcpy(old, s->rec->g, (size_t)s->n_groups * sizeof *old);
    /* The momenta first (the optimizer may refuse one, e.g. 0 with
     * nesterov), then the record, then the initial step. */
    zg_hparam mk = s->use_beta1 ? ZG_HP_BETA1 : ZG_HP_MOMENTUM;
    int rc = ZG_OK, set = 0;
    for (; s->cycle_momentum && set < s->n_groups && !rc; set++) {
        old_m[set] = zg_optim_get_hparam(opt, set, mk);
        rc = zg_optim_set_hparam(opt, set, mk, opts->max_momentum);
    }
    for (int g = 0; g < s->n_groups && !rc; g++) {
        group_extra *e = &s->rec->g[g];
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
        for (int g = 0; g < set; g++) zg_optim_set_hparam(opt, g, mk, old_m[g]);
    }
    free(ex);
    free(old);
    free(old_m);
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
        s = sched_alloc(K_SEQUENTIAL, opt, zg_optim_num_groups(opt));
        if (s) {
            s->children = calloc((size_t)n, sizeof *s->children);
            s->milestones = calloc((size_t)n, sizeof *s->milestones);
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
    const opt_record *rec = scheds[0]->rec;
    int rc = ZG_OK;
    for (int g = 0; g < s->n_groups && !rc; g++) rc = zg_optim_set_hparam(opt, g, ZG_HP_LR, rec->g[g].initial_lr);
    for (int i = 0; i < n; i++) s->children[i]->last_epoch -= 1;
    if (!rc) {
        s->children[0]->step_count = 0;
        rc = base_step(s->children[0], false, 0);
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
    return kind_names[s->kind];
}

zg_optim *zg_sched_optimizer(const zg_sched *s) {
    if (!s) return zg__fail_null("zg_sched_optimizer: scheduler is NULL");
    return s->opt;
}

/* ---- the spec parser ---------------------------------------------------------- */

typedef struct {
    const char *key;
    char value[64];
    bool set;
} spec_arg;

static spec_arg *spec_find(spec_arg *a, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (strcmp(a[i].key, key) == 0) return &a[i];
    return NULL;
}

static bool spec_double(const spec_arg *a, double def, double *out) {
    if (!a->set) {
        *out = def;
        return true;
    }
    char *end;
    errno = 0;
    *out = strtod(a->value, &end);
    return *a->value && !*end && errno == 0 && isfinite(*out);
}

static bool spec_int(const spec_arg *a, int64_t def, int64_t *out) {
    if (!a->set) {
        *out = def;
        return true;
    }
    char *end;
    errno = 0;
    long long v = strtoll(a->value, &end, 10);
    *out = v;
    return *a->value && !*end && errno == 0;
}

static bool spec_bool(const spec_arg *a, bool def, bool *out) {
    if (!a->set) *out = def;
    else if (!strcmp(a->value, "1") || !strcmp(a->value, "true")) *out = true;
    else if (!strcmp(a->value, "0") || !strcmp(a->value, "false")) *out = false;
    else return false;
    return true;
}

zg_sched *zg_sched_from_spec(zg_optim *opt, const char *spec, int64_t total_steps) {
    const char *fn = "zg_sched_from_spec";
    if (!opt || !spec) return zg__fail_null("%s: NULL argument", fn);
    static const char *const kinds[] = {"step", "cosine", "linear", "onecycle", "warmup-cosine"};
    /* Keys per kind; the first is the positional one. */
    static const char *const keys[][12] = {
        {"step_size", "gamma"},
        {"t_max", "eta_min"},
        {"total_iters", "start_factor", "end_factor"},
        {"max_lr", "pct_start", "anneal", "div_factor", "final_div_factor", "three_phase", "cycle_momentum",
         "base_momentum", "max_momentum", "total_steps"},
        {"warmup", "start_factor", "eta_min"},
    };
    const char *colon = strchr(spec, ':');
    size_t nlen = colon ? (size_t)(colon - spec) : strlen(spec);
    int kind = -1;
    for (int k = 0; k < 5; k++)
        if (strlen(kinds[k]) == nlen && strncmp(spec, kinds[k], nlen) == 0) kind = k;
    if (kind < 0)
        return zg__fail_null("%s: '%s': unknown schedule (step, cosine, linear, onecycle or warmup-cosine)", fn, spec);
    spec_arg args[12];
    int na = 0;
    while (na < 12 && keys[kind][na]) {
        args[na].key = keys[kind][na];
        args[na].set = false;
        na++;
    }
    const char *p = colon ? colon + 1 : NULL;
    for (int item = 0; p; item++) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        spec_arg *a = NULL;
        if (eq) {
            char key[32];
            size_t kl = (size_t)(eq - p);
            if (kl < sizeof key) {
                memcpy(key, p, kl);
                key[kl] = '\0';
                a = spec_find(args, na, key);
            }
            if (!a) return zg__fail_null("%s: '%s': unknown key '%.*s'", fn, spec, (int)kl, p);
            len -= kl + 1;
            p = eq + 1;
        } else if (item == 0) {
            a = &args[0];
        } else {
            return zg__fail_null("%s: '%s': '%.*s' needs a key (key=value)", fn, spec, (int)len, p);
        }
        if (a->set) return zg__fail_null("%s: '%s': '%s' is given twice", fn, spec, a->key);
        if (len == 0 || len >= sizeof a->value)
            return zg__fail_null("%s: '%s': invalid value for '%s'", fn, spec, a->key);
        memcpy(a->value, p, len);
        a->value[len] = '\0';
        a->set = true;
        p = e ? e + 1 : NULL;
    }
    const spec_arg *bad = NULL;
    zg_sched *s = NULL;
    switch (kind) {
    case 0: {
        int64_t size;
        double gamma;
        if (!args[0].set) return zg__fail_null("%s: '%s': step needs a step size (step:SIZE)", fn, spec);
        if (!spec_int(&args[0], 0, &size)) bad = &args[0];
        else if (!spec_double(&args[1], 0.1, &gamma)) bad = &args[1];
        else s = zg_sched_step_lr(opt, size, gamma);
        break;
    }
    case 1: {
        int64_t t_max;
        double eta;
        if (!spec_int(&args[0], total_steps, &t_max)) bad = &args[0];
        else if (!spec_double(&args[1], 0, &eta)) bad = &args[1];
        else s = zg_sched_cosine(opt, t_max, eta);
        break;
    }
    case 2: {
        int64_t iters;
        double sf, ef;
        if (!spec_int(&args[0], 5, &iters)) bad = &args[0];
        else if (!spec_double(&args[1], 1.0 / 3, &sf)) bad = &args[1];
        else if (!spec_double(&args[2], 1.0, &ef)) bad = &args[2];
        else s = zg_sched_linear(opt, sf, ef, iters);
        break;
    }
    case 3: {
        zg_onecycle_opts o = zg_onecycle_defaults(total_steps);
        double max_lr;
        if (!args[0].set) return zg__fail_null("%s: '%s': onecycle needs max_lr (onecycle:MAX_LR)", fn, spec);
        if (!spec_double(&args[0], 0, &max_lr)) bad = &args[0];
        else if (!spec_double(&args[1], o.pct_start, &o.pct_start)) bad = &args[1];
        else if (args[2].set && strcmp(args[2].value, "cos") && strcmp(args[2].value, "linear")) bad = &args[2];
        else if (!spec_double(&args[3], o.div_factor, &o.div_factor)) bad = &args[3];
        else if (!spec_double(&args[4], o.final_div_factor, &o.final_div_factor)) bad = &args[4];
        else if (!spec_bool(&args[5], o.three_phase, &o.three_phase)) bad = &args[5];
        else if (!spec_bool(&args[6], o.cycle_momentum, &o.cycle_momentum)) bad = &args[6];
        else if (!spec_double(&args[7], o.base_momentum, &o.base_momentum)) bad = &args[7];
        else if (!spec_double(&args[8], o.max_momentum, &o.max_momentum)) bad = &args[8];
        else if (!spec_int(&args[9], total_steps, &o.total_steps)) bad = &args[9];
        else {
            o.anneal_linear = args[2].set && !strcmp(args[2].value, "linear");
            s = zg_sched_onecycle(opt, max_lr, &o);
        }
        break;
    }
    default: {
        int64_t warmup;
        double sf, eta;
        if (!args[0].set) return zg__fail_null("%s: '%s': warmup-cosine needs the warm-up steps (warmup-cosine:W)", fn, spec);
        if (!spec_int(&args[0], 0, &warmup)) bad = &args[0];
        else if (!spec_double(&args[1], 1.0 / 3, &sf)) bad = &args[1];
        else if (!spec_double(&args[2], 0, &eta)) bad = &args[2];
        else s = zg_sched_warmup_cosine(opt, warmup, sf, total_steps, eta);
        break;
    }
    }
    if (bad) return zg__fail_null("%s: '%s': invalid value '%s' for '%s'", fn, spec, bad->value, bad->key);
    if (!s) {
        char inner[768];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        return zg__fail_null("%s: '%s': %s", fn, spec, inner);
    }
    return s;
}

/* ---- state as JSON ------------------------------------------------------------- */

static void sb_array(zg__strbuf *b, const char *key, const double *v, int n, size_t stride) {
    zg__sb_printf(b, ",\"%s\":[", key);
    for (int i = 0; i < n; i++) zg__sb_printf(b, i ? ",%.17g" : "%.17g", *(const double *)((const char *)v + i * stride));
    zg__sb_printf(b, "]");
}

static void dump(zg__strbuf *b, const zg_sched *s, bool top) {
    zg__sb_printf(b, "{");
    if (top) zg__sb_printf(b, "\"format\":\"%s\",", SCHED_FORMAT);
    zg__sb_printf(b, "\"kind\":\"%s\",\"groups\":%d,\"last_epoch\":%lld", kind_names[s->kind], s->n_groups,
              (long long)s->last_epoch);
    if (s->kind != K_SEQUENTIAL) {
        zg__sb_printf(b, ",\"step_count\":%lld", (long long)s->step_count);
        sb_array(b, "base_lrs", s->base_lrs, s->n_groups, sizeof(double));
    }
    sb_array(b, "last_lrs", s->last_lrs, s->n_groups, sizeof(double));
    switch (s->kind) {
    case K_STEP:
        zg__sb_printf(b, ",\"step_size\":%lld,\"gamma\":%.17g", (long long)s->step_size, s->gamma);
        break;
    case K_COSINE:
        zg__sb_printf(b, ",\"T_max\":%lld,\"eta_min\":%.17g", (long long)s->t_max, s->eta_min);
        break;
    case K_LINEAR:
        zg__sb_printf(b, ",\"start_factor\":%.17g,\"end_factor\":%.17g,\"total_iters\":%lld", s->start_factor,
                  s->end_factor, (long long)s->total_iters);
        break;
    case K_ONECYCLE: {
        zg__sb_printf(b,
                  ",\"total_steps\":%lld,\"pct_start\":%.17g,\"anneal_strategy\":\"%s\",\"div_factor\":%.17g,"
                  "\"final_div_factor\":%.17g,\"three_phase\":%s,\"cycle_momentum\":%s,\"use_beta1\":%s",
                  (long long)s->total_steps, s->pct_start, s->anneal_linear ? "linear" : "cos", s->div_factor,
                  s->final_div_factor, s->three_phase ? "true" : "false", s->cycle_momentum ? "true" : "false",
                  s->use_beta1 ? "true" : "false");
        const group_extra *e = s->rec ? s->rec->g : s->loaded_extra;
        sb_array(b, "initial_lr", &e->initial_lr, s->n_groups, sizeof *e);
        sb_array(b, "max_lr", &e->max_lr, s->n_groups, sizeof *e);
        sb_array(b, "min_lr", &e->min_lr, s->n_groups, sizeof *e);
        sb_array(b, "max_momentum", &e->max_momentum, s->n_groups, sizeof *e);
        sb_array(b, "base_momentum", &e->base_momentum, s->n_groups, sizeof *e);
        break;
    }
    case K_SEQUENTIAL:
        zg__sb_printf(b, ",\"milestones\":[");
        for (int i = 0; i + 1 < s->n_children; i++) zg__sb_printf(b, i ? ",%lld" : "%lld", (long long)s->milestones[i]);
        zg__sb_printf(b, "],\"schedulers\":[");
        for (int i = 0; i < s->n_children; i++) {
            if (i) zg__sb_printf(b, ",");
            dump(b, s->children[i], false);
        }
        zg__sb_printf(b, "]");
        break;
    }
    zg__sb_printf(b, "}");
}

char *zg_sched_state_json(const zg_sched *s) {
    if (!s) return zg__fail_null("zg_sched_state_json: scheduler is NULL");
    zg__strbuf b = {0};
    dump(&b, s, true);
    if (b.failed) {
        zg__sb_free(&b);
        return zg__fail_null("zg_sched_state_json: out of memory");
    }
    return b.s;
}

/* Reading: a parsed state is a detached zg_sched (no record) that is
 * swapped into the live one once all of it checked out. */

static const zg_json *jget(const zg_json *o, const char *key) {
    if (!o || o->type != ZG_JSON_OBJECT) return NULL;
    for (int i = 0; i < o->n; i++)
        if (strcmp(o->keys[i], key) == 0) return &o->items[i];
    return NULL;
}

static bool jdouble(const zg_json *v, double *out) {
    if (!v || v->type != ZG_JSON_NUMBER || v->num_len >= 64) return false;
    char t[64];
    memcpy(t, v->num_text, v->num_len);
    t[v->num_len] = '\0';
    char *end;
    *out = strtod(t, &end);
    return !*end && isfinite(*out);
}

static bool jint(const zg_json *v, int64_t *out) {
    if (!v || v->type != ZG_JSON_NUMBER || !v->is_integer || !v->fits_int64) return false;
    *out = v->integer;
    return true;
}

static bool jbool(const zg_json *v, bool *out) {
    if (!v || v->type != ZG_JSON_BOOL) return false;
    *out = v->boolean;
    return true;
}

/* n doubles (finite, >= 0) at a stride. */
static bool jarray(const zg_json *v, int n, double *out, size_t stride) {
    if (!v || v->type != ZG_JSON_ARRAY || v->n != n) return false;
    for (int i = 0; i < n; i++) {
        double *d = (double *)((char *)out + i * stride);
        if (!jdouble(&v->items[i], d) || *d < 0) return false;
    }
    return true;
}

static void freeparsed(zg_sched *t) { zg_sched_free(t); }

/* Parses j against the live scheduler `like` (same kind, groups and, for a
 * sequential, children). NULL with msg on a problem. */
static zg_sched *parse_state(const zg_json *j, const zg_sched *like, const char *where, char *msg, size_t n) {
    const zg_json *kv = jget(j, "kind");
    if (!kv || kv->type != ZG_JSON_STRING) {
        snprintf(msg, n, "%s: 'kind' is missing", where);
        return NULL;
    }
    if (strcmp(kv->str, kind_names[like->kind]) != 0) {
        snprintf(msg, n, "%s: the state is of a %s, this scheduler is a %s", where, kv->str, kind_names[like->kind]);
        return NULL;
    }
    int64_t groups;
    if (!jint(jget(j, "groups"), &groups) || groups != like->n_groups) {
        snprintf(msg, n, "%s: the state is for %lld parameter groups, this scheduler has %d", where,
                 jint(jget(j, "groups"), &groups) ? (long long)groups : -1LL, like->n_groups);
        return NULL;
    }
    zg_sched *t = sched_alloc(like->kind, like->opt, like->n_groups);
    if (!t) {
        snprintf(msg, n, "out of memory");
        return NULL;
    }
    const char *badkey = NULL;
    if (!jint(jget(j, "last_epoch"), &t->last_epoch) || t->last_epoch < -1) badkey = "last_epoch";
    else if (!jarray(jget(j, "last_lrs"), t->n_groups, t->last_lrs, sizeof(double))) badkey = "last_lrs";
    else if (t->kind != K_SEQUENTIAL && (!jint(jget(j, "step_count"), &t->step_count) || t->step_count < 0))
        badkey = "step_count";
    else if (t->kind != K_SEQUENTIAL && !jarray(jget(j, "base_lrs"), t->n_groups, t->base_lrs, sizeof(double)))
        badkey = "base_lrs";
    if (!badkey) switch (t->kind) {
        case K_STEP:
            if (!jint(jget(j, "step_size"), &t->step_size)) badkey = "step_size";
            else if (!jdouble(jget(j, "gamma"), &t->gamma)) badkey = "gamma";
            break;
        case K_COSINE:
            if (!jint(jget(j, "T_max"), &t->t_max)) badkey = "T_max";
            else if (!jdouble(jget(j, "eta_min"), &t->eta_min)) badkey = "eta_min";
            break;
        case K_LINEAR:
            if (!jdouble(jget(j, "start_factor"), &t->start_factor)) badkey = "start_factor";
            else if (!jdouble(jget(j, "end_factor"), &t->end_factor)) badkey = "end_factor";
            else if (!jint(jget(j, "total_iters"), &t->total_iters)) badkey = "total_iters";
            break;
        case K_ONECYCLE: {
            const zg_json *an = jget(j, "anneal_strategy");
            t->loaded_extra = calloc((size_t)t->n_groups + 1, sizeof *t->loaded_extra);
            group_extra *e = t->loaded_extra;
            if (!e) badkey = "(out of memory)";
            else if (!jint(jget(j, "total_steps"), &t->total_steps)) badkey = "total_steps";
            else if (!jdouble(jget(j, "pct_start"), &t->pct_start)) badkey = "pct_start";
            else if (!an || an->type != ZG_JSON_STRING || (strcmp(an->str, "cos") && strcmp(an->str, "linear")))
                badkey = "anneal_strategy";
            else if (!jdouble(jget(j, "div_factor"), &t->div_factor)) badkey = "div_factor";
            else if (!jdouble(jget(j, "final_div_factor"), &t->final_div_factor)) badkey = "final_div_factor";
            else if (!jbool(jget(j, "three_phase"), &t->three_phase)) badkey = "three_phase";
            else if (!jbool(jget(j, "cycle_momentum"), &t->cycle_momentum)) badkey = "cycle_momentum";
            else if (!jbool(jget(j, "use_beta1"), &t->use_beta1)) badkey = "use_beta1";
            else if (!jarray(jget(j, "initial_lr"), t->n_groups, &e->initial_lr, sizeof *e)) badkey = "initial_lr";
            else if (!jarray(jget(j, "max_lr"), t->n_groups, &e->max_lr, sizeof *e)) badkey = "max_lr";
            else if (!jarray(jget(j, "min_lr"), t->n_groups, &e->min_lr, sizeof *e)) badkey = "min_lr";
            else if (!jarray(jget(j, "max_momentum"), t->n_groups, &e->max_momentum, sizeof *e)) badkey = "max_momentum";
            else if (!jarray(jget(j, "base_momentum"), t->n_groups, &e->base_momentum, sizeof *e))
                badkey = "base_momentum";
            if (!badkey) {
                t->anneal_linear = strcmp(an->str, "linear") == 0;
                for (int g = 0; g < t->n_groups; g++) e[g].has_initial = true;
                /* Cycling must fit the optimizer (momentum or beta1). */
                zg_optim_kind k = zg_optim_get_kind(like->opt);
                bool beta1 = k == ZG_ADAM || k == ZG_ADAMW;
                if (t->cycle_momentum && (t->use_beta1 != beta1 || (!beta1 && k != ZG_SGD && k != ZG_RMSPROP)))
                    badkey = "use_beta1";
            }
            break;
        }
        case K_SEQUENTIAL: {
            const zg_json *ms = jget(j, "milestones"), *cs = jget(j, "schedulers");
            t->n_children = like->n_children;
            t->children = calloc((size_t)like->n_children, sizeof *t->children);
            t->milestones = calloc((size_t)like->n_children, sizeof *t->milestones);
            if (!t->children || !t->milestones) {
                badkey = "(out of memory)";
                break;
            }
            if (!ms || ms->type != ZG_JSON_ARRAY || ms->n != like->n_children - 1) {
                badkey = "milestones";
                break;
            }
            for (int i = 0; i < ms->n && !badkey; i++)
                if (!jint(&ms->items[i], &t->milestones[i]) || t->milestones[i] <= 0 ||
                    (i > 0 && t->milestones[i] <= t->milestones[i - 1]))
                    badkey = "milestones";
            if (badkey) break;
            if (!cs || cs->type != ZG_JSON_ARRAY || cs->n != like->n_children) {
                snprintf(msg, n, "%s: the state has %d schedulers, this SequentialLR has %d", where,
                         cs && cs->type == ZG_JSON_ARRAY ? cs->n : -1, like->n_children);
                freeparsed(t);
                return NULL;
            }
            for (int i = 0; i < like->n_children; i++) {
                char w[64];
                snprintf(w, sizeof w, "%s.schedulers[%d]", where, i);
                if (!(t->children[i] = parse_state(&cs->items[i], like->children[i], w, msg, n))) {
                    freeparsed(t);
                    return NULL;
                }
            }
            break;
        }
        }
    if (badkey) {
        snprintf(msg, n, "%s: '%s' is missing or invalid", where, badkey);
        freeparsed(t);
        return NULL;
    }
    char hm[256];
    bool ok = check_hyper(t, hm, sizeof hm);
    for (int g = 0; ok && t->kind == K_ONECYCLE && g < t->n_groups; g++) ok = check_extra(t, &t->loaded_extra[g], g, hm, sizeof hm);
    if (!ok) {
        snprintf(msg, n, "%s: %s", where, hm);
        freeparsed(t);
        return NULL;
    }
    return t;
}

static void swap_arrays(double **a, double **b) {
    double *t = *a;
    *a = *b;
    *b = t;
}

/* Moves the parsed state t into s (t keeps s's old arrays, to be freed). */
static void commit(zg_sched *s, zg_sched *t) {
    s->last_epoch = t->last_epoch;
    s->step_count = t->step_count;
    swap_arrays(&s->base_lrs, &t->base_lrs);
    swap_arrays(&s->last_lrs, &t->last_lrs);
    s->step_size = t->step_size;
    s->gamma = t->gamma;
    s->t_max = t->t_max;
    s->eta_min = t->eta_min;
    s->start_factor = t->start_factor;
    s->end_factor = t->end_factor;
    s->total_iters = t->total_iters;
    s->total_steps = t->total_steps;
    s->pct_start = t->pct_start;
    s->div_factor = t->div_factor;
    s->final_div_factor = t->final_div_factor;
    s->anneal_linear = t->anneal_linear;
    s->three_phase = t->three_phase;
    s->cycle_momentum = t->cycle_momentum;
    s->use_beta1 = t->use_beta1;
    if (s->kind == K_ONECYCLE)
        for (int g = 0; g < s->n_groups; g++) s->rec->g[g] = t->loaded_extra[g];
    if (s->kind == K_SEQUENTIAL) {
        memcpy(s->milestones, t->milestones, (size_t)s->n_children * sizeof *s->milestones);
        for (int i = 0; i < s->n_children; i++) commit(s->children[i], t->children[i]);
    }
}

int zg_sched_load_state_json(zg_sched *s, const char *json) {
    const char *fn = "zg_sched_load_state_json";
    if (!s || !json) return zg__fail(ZG_ERR_ARG, "%s: NULL argument", fn);
    zg_json *root;
    char err[256];
    if (zg__json_parse(json, strlen(json), &root, err, sizeof err) != 0)
        return zg__fail(ZG_ERR_FORMAT, "%s: not valid JSON: %s", fn, err);
    const zg_json *f = jget(root, "format");
    if (!f || f->type != ZG_JSON_STRING || strcmp(f->str, SCHED_FORMAT) != 0) {
        zg__json_free(root);
        return zg__fail(ZG_ERR_FORMAT, "%s: not a scheduler state ('format' is not '%s')", fn, SCHED_FORMAT);
    }
    char msg[512];
    zg_sched *t = parse_state(root, s, "state", msg, sizeof msg);
    zg__json_free(root);
    if (!t) return zg__fail(ZG_ERR_FORMAT, "%s: %s", fn, msg);
    commit(s, t);
    freeparsed(t);
    return ZG_OK;
}

int zg_sched_save(const zg_sched *s, const char *path) {
    const char *fn = "zg_sched_save";
    if (!s || !path) return zg__fail(ZG_ERR_ARG, "%s: NULL argument", fn);
    char *json = zg_sched_state_json(s);
    if (!json) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    const char *keys[] = {"format", "state"};
    const char *vals[] = {SCHED_FORMAT, json};
    int rc = zg_safetensors_write(path, NULL, NULL, 0, keys, vals, 2);
    free(json);
    if (rc) {
        char inner[768];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        return zg__fail(rc, "%s: %s", fn, inner);
    }
    return ZG_OK;
}

int zg_sched_load(zg_sched *s, const char *path) {
    const char *fn = "zg_sched_load";
    if (!s || !path) return zg__fail(ZG_ERR_ARG, "%s: NULL argument", fn);
    zg_safetensors *st;
    int read_rc = zg__safetensors_open(path, &st);
    if (read_rc) {
        char inner[768];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        return zg__fail(read_rc, "%s: %s", fn, inner);
    }
    const char *format = zg_safetensors_metadata(st, "format");
    const char *state = zg_safetensors_metadata(st, "state");
    int rc;
    if (!format || strcmp(format, SCHED_FORMAT) != 0 || !state) {
        rc = zg__fail(ZG_ERR_FORMAT, "%s: '%s' is not a scheduler state file (metadata 'format' is not '%s')", fn, path,
                      SCHED_FORMAT);
    } else {
        rc = zg_sched_load_state_json(s, state);
        if (rc) {
            char inner[768];
            snprintf(inner, sizeof inner, "%s", zg_last_error());
            rc = zg__fail(rc, "%s: '%s': %s", fn, path, inner);
        }
    }
    zg_safetensors_free(st);
    return rc;
}
