/* Each scheduler kind's lr formulas, as PyTorch 2.x's get_lr (the
 * recursive "chainable" form, from the group's current lr) and
 * _get_closed_form_lr (from the base lr, where the kind has one), with
 * PyTorch's order of floating-point operations. */
#include "sched_internal.h"

#include <math.h>
#include <stdio.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* What a formula sees: how the step is taken, the epoch and step count
 * it moves to (PyTorch increments both before get_lr), and one group's
 * current and base lr. */
typedef struct {
    zg__sched_mode mode;
    bool closed;
    int64_t le, sc;
    const zg__sched_pos *pos;
    int g;
    double lr, base;
} step_ctx;

static double step_lr(const zg_sched *s, const step_ctx *c) {
    if (c->closed) return c->base * pow(s->gamma, (double)(c->le / s->step_size));
    return (c->le == 0 || c->le % s->step_size != 0) ? c->lr : c->lr * s->gamma;
}

static double cosine_lr(const zg_sched *s, const step_ctx *c) {
    double T = (double)s->t_max, eta = s->eta_min, base = c->base, lr = c->lr;
    int64_t le = c->le;
    if (c->closed) return eta + (base - eta) * (1 + cos(M_PI * (double)le / T)) / 2;
    if (le == 0) return lr;
    if (c->sc == 1 && le > 0) return eta + (base - eta) * (1 + cos((double)le * M_PI / T)) / 2;
    if ((le - 1 - s->t_max) % (2 * s->t_max) == 0) return lr + (base - eta) * (1 - cos(M_PI / T)) / 2;
    return (1 + cos(M_PI * (double)le / T)) / (1 + cos(M_PI * (double)(le - 1) / T)) * (lr - eta) + eta;
}

static double linear_lr(const zg_sched *s, const step_ctx *c) {
    double sf = s->start_factor, ef = s->end_factor;
    int64_t ti = s->total_iters, le = c->le;
    if (c->closed) return c->base * (sf + (ef - sf) * (double)(ti < le ? ti : le) / (double)ti);
    if (le == 0) return c->lr * sf;
    if (le > ti) return c->lr;
    return c->lr * (1. + (ef - sf) / ((double)ti * sf + (double)(le - 1) * (ef - sf)));
}

static double exponential_lr(const zg_sched *s, const step_ctx *c) {
    if (c->closed) return c->base * pow(s->gamma, (double)c->le);
    return c->mode == ZG__SCHED_INITIAL ? c->lr : c->lr * s->gamma;
}

/* bisect_right(milestones, x): how many milestones are <= x. */
static int bisect_right(const int64_t *m, int n, int64_t x) {
    int i = 0;
    while (i < n && m[i] <= x) i++;
    return i;
}

static double multistep_lr(const zg_sched *s, const step_ctx *c) {
    if (c->closed) return c->base * pow(s->gamma, (double)bisect_right(s->milestones, s->n_milestones, c->le));
    int count = 0; /* collections.Counter(milestones)[le] */
    for (int i = 0; i < s->n_milestones; i++) count += s->milestones[i] == c->le;
    return count ? c->lr * pow(s->gamma, (double)count) : c->lr;
}

static double constant_lr(const zg_sched *s, const step_ctx *c) {
    if (c->closed) return c->base * (s->factor + (c->le >= s->total_iters ? 1 - s->factor : 0.0));
    if (c->le == 0) return c->lr * s->factor;
    if (c->le != s->total_iters) return c->lr;
    return c->lr * (1.0 / s->factor);
}

static double polynomial_lr(const zg_sched *s, const step_ctx *c) {
    double ti = (double)s->total_iters;
    int64_t le = c->le;
    if (c->closed) return c->base * pow(1.0 - (double)(le < s->total_iters ? le : s->total_iters) / ti, s->power);
    if (c->mode == ZG__SCHED_INITIAL || le > s->total_iters) return c->lr;
    double decay = pow((1.0 - (double)le / ti) / (1.0 - (double)(le - 1) / ti), s->power);
    return c->lr * decay;
}

static double lambda_lr(const zg_sched *s, const step_ctx *c) { return c->base * s->fn(c->le, c->g, s->user); }

static double multiplicative_lr(const zg_sched *s, const step_ctx *c) {
    return c->mode == ZG__SCHED_INITIAL ? c->lr : c->lr * s->fn(c->le, c->g, s->user);
}

static double warm_restarts_lr(const zg_sched *s, const step_ctx *c) {
    return s->eta_min +
           (c->base - s->eta_min) * (1 + cos(M_PI * (double)c->pos->t_cur / (double)c->pos->t_i)) / 2;
}

typedef double (*lr_formula)(const zg_sched *s, const step_ctx *c);

static const lr_formula formulas[] = {
    [K_STEP] = step_lr,
    [K_COSINE] = cosine_lr,
    [K_LINEAR] = linear_lr,
    [K_EXPONENTIAL] = exponential_lr,
    [K_MULTISTEP] = multistep_lr,
    [K_CONSTANT] = constant_lr,
    [K_POLYNOMIAL] = polynomial_lr,
    [K_LAMBDA] = lambda_lr,
    [K_MULTIPLICATIVE] = multiplicative_lr,
    [K_WARM_RESTARTS] = warm_restarts_lr,
};

static bool has_closed_form(zg__sched_kind k) {
    return k == K_STEP || k == K_COSINE || k == K_LINEAR || k == K_EXPONENTIAL || k == K_MULTISTEP ||
           k == K_CONSTANT || k == K_POLYNOMIAL;
}

static double anneal(bool linear, double start, double end, double pct) {
    if (linear) return (end - start) * pct + start;
    double cos_out = cos(M_PI * pct) + 1;
    return end + (start - end) / 2.0 * cos_out;
}

/* OneCycleLR's lr (and momentum) for group g at step_num. */
static int onecycle_value(const zg_sched *s, int g, int64_t step_num, double *lr, double *mom) {
    const zg__sched_extra *e = zg__sched_extra_of(s, g);
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

static int onecycle_lrs(const zg_sched *s, int64_t le, double *lrs, double *moms) {
    if (le > s->total_steps)
        return zg__fail(ZG_ERR_STATE,
                        "zg_sched_step: OneCycleLR: tried to step %lld times; the specified number of total steps is "
                        "%lld",
                        (long long)le + 1, (long long)s->total_steps);
    for (int g = 0; g < s->n_groups; g++) {
        int rc = onecycle_value(s, g, le, &lrs[g], &moms[g]);
        if (rc) return rc;
    }
    return ZG_OK;
}

/* CosineAnnealingWarmRestarts' own step: the first one (last_epoch < 0)
 * starts the first cycle; the next ones advance T_cur and begin a cycle T_mult
 * times longer at its end. _update_lr(epoch) (a SequentialLR's milestone)
 * leaves them. */
static int restarts_advance(const zg_sched *s, zg__sched_mode mode, zg__sched_pos *pos) {
    if (mode == ZG__SCHED_EPOCH) return ZG_OK;
    if (s->last_epoch < 0) {
        pos->t_i = s->t_0;
        pos->t_cur = 0;
        return ZG_OK;
    }
    pos->t_cur = s->t_cur + 1;
    if (pos->t_cur < s->t_i) return ZG_OK;
    if (s->t_i > ZG__MAX_COUNT / s->t_mult)
        return zg__fail(ZG_ERR_STATE, "zg_sched_step: CosineAnnealingWarmRestarts: the next cycle would pass 2^53 steps");
    pos->t_cur %= s->t_i;
    pos->t_i = s->t_i * s->t_mult;
    return ZG_OK;
}

int zg__sched_plan(const zg_sched *s, zg__sched_mode mode, int64_t epoch, const double *cur, double *lrs,
                   double *moms, zg__sched_pos *pos) {
    *pos = (zg__sched_pos){.last_epoch = mode == ZG__SCHED_EPOCH ? epoch : s->last_epoch + 1,
                           .step_count = s->step_count + 1,
                           .t_cur = s->t_cur,
                           .t_i = s->t_i};
    int rc = s->kind == K_WARM_RESTARTS ? restarts_advance(s, mode, pos) : ZG_OK;
    if (!rc && s->kind == K_ONECYCLE) rc = onecycle_lrs(s, pos->last_epoch, lrs, moms);
    if (rc) return rc;
    step_ctx c = {.mode = mode,
                  .closed = mode == ZG__SCHED_EPOCH && has_closed_form(s->kind),
                  .le = pos->last_epoch,
                  .sc = pos->step_count,
                  .pos = pos};
    for (int g = 0; g < s->n_groups; g++) {
        c.g = g;
        c.lr = cur[g];
        c.base = s->base_lrs[g];
        if (s->kind != K_ONECYCLE) lrs[g] = formulas[s->kind](s, &c);
        /* PyTorch would write a negative lr (e.g. OneCycleLR's linear
         * anneal one step past total_steps); zgrad's optimizers refuse it. */
        if (!(isfinite(lrs[g]) && lrs[g] >= 0))
            return zg__fail(ZG_ERR_STATE,
                            "zg_sched_step: %s computed an invalid lr %g for group %d at epoch %lld (the group's lr "
                            "was %g)",
                            zg__sched_kind_names[s->kind], lrs[g], g, (long long)c.le, cur[g]);
    }
    return ZG_OK;
}
