/* ReduceLROnPlateau as PyTorch 2.x: fed a metric (e.g. the validation
 * loss) once per epoch, it multiplies each group's lr by factor (not below
 * the group's min_lr) once the metric has not improved for more than
 * patience epochs, then waits cooldown epochs. It has no initial step and
 * no base lrs, and sets no initial_lr. */
#include "sched_internal.h"

#include <math.h>
#include <stdio.h>

zg_plateau_opts zg_plateau_defaults(void) {
    return (zg_plateau_opts){
        .mode_max = false,
        .factor = 0.1,
        .patience = 10,
        .threshold = 1e-4,
        .threshold_abs = false,
        .cooldown = 0,
        .min_lr = 0,
        .min_lrs = NULL,
        .eps = 1e-8,
    };
}

zg_sched *zg_sched_plateau(zg_optim *opt, const zg_plateau_opts *opts) {
    const char *fn = "zg_sched_plateau";
    if (!opts) return zg__fail_null("%s: opts is NULL (start from zg_plateau_defaults())", fn);
    zg_sched *s = zg__sched_begin(fn, K_PLATEAU, opt);
    if (!s) return NULL;
    zg__plateau *p = &s->plat;
    if (!(p->min_lrs = zg__malloc(((size_t)s->n_groups + 1) * sizeof *p->min_lrs))) {
        zg_sched_free(s);
        return zg__fail_null("%s: out of memory", fn);
    }
    for (int g = 0; g < s->n_groups; g++) p->min_lrs[g] = opts->min_lrs ? opts->min_lrs[g] : opts->min_lr;
    p->has_default_min_lr = !opts->min_lrs;
    p->default_min_lr = opts->min_lrs ? 0 : opts->min_lr;
    p->mode_max = opts->mode_max;
    p->threshold_abs = opts->threshold_abs;
    p->patience = opts->patience;
    p->cooldown = opts->cooldown;
    p->threshold = opts->threshold;
    p->eps = opts->eps;
    p->best = opts->mode_max ? -INFINITY : INFINITY;
    s->factor = opts->factor;
    s->last_epoch = 0;
    char msg[256];
    if (!zg__sched_check_hyper(s, msg, sizeof msg)) {
        zg_sched_free(s);
        return zg__fail_null("%s: %s", fn, msg);
    }
    for (int g = 0; g < s->n_groups; g++) s->last_lrs[g] = zg__sched_group_lr(s, g);
    return s;
}

/* _is_better: an improvement by more than threshold (relative or
 * absolute); NaN never is. */
static bool is_better(const zg__plateau *p, double a) {
    if (!p->mode_max) return p->threshold_abs ? a < p->best - p->threshold : a < p->best * (1.0 - p->threshold);
    return p->threshold_abs ? a > p->best + p->threshold : a > p->best * (p->threshold + 1.0);
}

/* Groups added to the optimizer since: with one min_lr for all, they get
 * it (PyTorch 2.x); with a list, the step fails (PyTorch fails once it
 * reduces). Grows the arrays; nothing else changes. */
static int follow_groups(zg_sched *s) {
    const int n = zg_optim_num_groups(s->opt);
    if (n == s->n_groups) return ZG_OK;
    if (!s->plat.has_default_min_lr)
        return zg__fail(ZG_ERR_STATE,
                        "zg_sched_step_metric: the number of param groups in the optimizer (%d) differs from when "
                        "ReduceLROnPlateau was initialized (%d); give it one min_lr for all groups, or make a new one",
                        n, s->n_groups);
    double *m = zg__realloc(s->plat.min_lrs, ((size_t)n + 1) * sizeof *m);
    if (m) s->plat.min_lrs = m;
    double *l = m ? zg__realloc(s->last_lrs, ((size_t)n + 1) * sizeof *l) : NULL;
    if (l) s->last_lrs = l;
    if (!l) return zg__fail(ZG_ERR_NOMEM, "zg_sched_step_metric: out of memory");
    for (int g = s->n_groups; g < n; g++) m[g] = s->plat.default_min_lr;
    s->n_groups = n;
    return ZG_OK;
}

/* _reduce_lr: lr = max(lr * factor, min_lr) where that lowers it by more
 * than eps. */
static int reduce(zg_sched *s) {
    const int n = s->n_groups;
    double stack[3 * 8];
    double *buf = n <= 8 ? stack : zg__malloc(3 * (size_t)n * sizeof *buf);
    if (!buf) return zg__fail(ZG_ERR_NOMEM, "zg_sched_step_metric: out of memory");
    for (int g = 0; g < n; g++) {
        double old = zg__sched_group_lr(s, g), lr = fmax(old * s->factor, s->plat.min_lrs[g]);
        buf[g] = old - lr > s->plat.eps ? lr : old;
    }
    int rc = zg__sched_apply(s->opt, n, buf, NULL, ZG_HP_LR, "ReduceLROnPlateau", buf + n, buf + 2 * n);
    if (buf != stack) free(buf);
    return rc;
}

int zg__sched_plateau_step(zg_sched *s, double metric) {
    zg__plateau *p = &s->plat;
    if (s->last_epoch >= ZG__MAX_COUNT)
        return zg__fail(ZG_ERR_STATE, "zg_sched_step_metric: ReduceLROnPlateau has stepped 2^53 times");
    bool better = is_better(p, metric);
    int64_t bad = better ? 0 : p->num_bad_epochs + 1, cooldown = p->cooldown_counter;
    if (cooldown > 0) {
        cooldown--;
        bad = 0;
    }
    bool reducing = bad > p->patience;
    int rc = follow_groups(s);
    if (!rc && reducing) rc = reduce(s);
    if (rc) return rc;
    if (better) p->best = metric;
    p->num_bad_epochs = reducing ? 0 : bad;
    p->cooldown_counter = reducing ? p->cooldown : cooldown;
    s->last_epoch++;
    for (int g = 0; g < s->n_groups; g++) s->last_lrs[g] = zg__sched_group_lr(s, g);
    return ZG_OK;
}
