/* Schedulers made of schedulers: SequentialLR (one child at a time, each
 * from its milestone on), ChainedScheduler (every child at every step,
 * each from the lrs the one before wrote), and the warm-up + cosine
 * helper. A composite owns its children from its construction on, also
 * when that fails. */
#include "sched_internal.h"

#include <stdio.h>

/* ---- construction ---------------------------------------------------------- */

/* Why scheds cannot be children of a `kind` on opt ("" when they can). */
static void check_children(zg__sched_kind kind, zg_optim *opt, zg_sched *const *scheds, int n, char *msg,
                           size_t len) {
    const char *name = zg__sched_kind_names[kind];
    if (!opt) snprintf(msg, len, "optimizer is NULL");
    else if (n == 0) snprintf(msg, len, "no schedulers");
    for (int i = 0; i < n && !*msg; i++) {
        const zg_sched *c = scheds[i];
        if (!c) snprintf(msg, len, "scheduler %d is NULL", i);
        else if (c->owner)
            snprintf(msg, len, "scheduler %d already belongs to a %s", i, zg__sched_kind_names[c->owner->kind]);
        else if (c->kind == K_SEQUENTIAL || c->kind == K_CHAINED)
            snprintf(msg, len, "scheduler %d is a %s (no nesting)", i, zg__sched_kind_names[c->kind]);
        else if (c->kind == K_PLATEAU)
            snprintf(msg, len,
                     "%s does not support ReduceLROnPlateau (scheduler %d), which steps on a metric", name, i);
        else if (c->opt != opt)
            snprintf(msg, len,
                     "expects all schedulers to belong to the same optimizer, but scheduler %d has a different one", i);
        else if (c->n_groups != zg_optim_num_groups(opt))
            snprintf(msg, len, "scheduler %d was made for %d parameter groups, the optimizer has %d", i, c->n_groups,
                     zg_optim_num_groups(opt));
        for (int j = 0; j < i && !*msg; j++)
            if (scheds[j] == c) snprintf(msg, len, "scheduler %d is listed twice", i);
    }
}

/* Frees what a failed construction was given (each scheduler once; not
 * one that belongs to another composite) and fails with msg. */
static zg_sched *give_up(const char *fn, zg_sched *s, zg_sched *const *scheds, int n, const char *msg) {
    if (s) {
        free(s->children);
        s->children = NULL;
        s->n_children = 0;
        zg_sched_free(s);
    }
    for (int i = 0; i < n && scheds; i++) {
        zg_sched *c = scheds[i];
        bool dup = false;
        for (int j = 0; j < i && !dup; j++) dup = scheds[j] == c;
        if (c && !dup && !c->owner) zg_sched_free(c);
    }
    return zg__fail_null("%s: %s", fn, msg);
}

/* The composite over scheds (checked), owning them; NULL after give_up. */
static zg_sched *adopt(const char *fn, zg__sched_kind kind, zg_optim *opt, zg_sched *const *scheds, int n,
                       const char *msg) {
    zg_sched *s = NULL;
    if (!*msg) {
        s = zg__sched_alloc(kind, opt, zg_optim_num_groups(opt));
        if (s) {
            s->children = zg__calloc((size_t)n, sizeof *s->children);
            s->milestones = zg__calloc((size_t)n, sizeof *s->milestones);
        }
        if (!s || !s->children || !s->milestones) msg = "out of memory";
    }
    if (*msg) return give_up(fn, s, scheds, n, msg);
    for (int i = 0; i < n; i++) {
        s->children[i] = scheds[i];
        scheds[i]->owner = s;
    }
    s->n_children = n;
    return s;
}

zg_sched *zg_sched_sequential(zg_optim *opt, zg_sched *const *scheds, int n, const int64_t *milestones,
                              int n_milestones) {
    const char *fn = "zg_sched_sequential";
    char msg[512] = "";
    if (n < 0 || (n > 0 && !scheds)) return zg__fail_null("%s: schedulers is NULL or n (%d) is negative", fn, n);
    check_children(K_SEQUENTIAL, opt, scheds, n, msg, sizeof msg);
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
    zg_sched *s = adopt(fn, K_SEQUENTIAL, opt, scheds, n, msg);
    if (!s) return NULL;
    if (n_milestones > 0) memcpy(s->milestones, milestones, (size_t)n_milestones * sizeof *milestones);

    /* Reset the lrs to the groups' initial ones, undo the children's
     * initial steps and redo only the first one's. */
    int rc = ZG_OK;
    for (int g = 0; g < s->n_groups && !rc; g++)
        rc = zg_optim_set_hparam(opt, g, ZG_HP_LR, zg__sched_extra_of(s, g)->initial_lr);
    for (int i = 0; i < n; i++) s->children[i]->last_epoch -= 1;
    if (!rc) {
        s->children[0]->step_count = 0;
        rc = zg__sched_base_step(s->children[0], ZG__SCHED_INITIAL, 0);
    }
    if (rc) {
        char inner[768];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        zg_sched_free(s);
        return zg__fail_null("%s: %s", fn, inner);
    }
    s->last_epoch = 0;
    memcpy(s->last_lrs, s->children[0]->last_lrs, (size_t)s->n_groups * sizeof *s->last_lrs);
    return s;
}

zg_sched *zg_sched_chained(zg_optim *opt, zg_sched *const *scheds, int n) {
    const char *fn = "zg_sched_chained";
    char msg[512] = "";
    if (n < 0 || (n > 0 && !scheds)) return zg__fail_null("%s: schedulers is NULL or n (%d) is negative", fn, n);
    check_children(K_CHAINED, opt, scheds, n, msg, sizeof msg);
    zg_sched *s = adopt(fn, K_CHAINED, opt, scheds, n, msg);
    if (!s) return NULL;
    /* No step of its own: the children made theirs. */
    s->last_epoch = 0;
    for (int g = 0; g < s->n_groups; g++) s->last_lrs[g] = zg__sched_group_lr(s, g);
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

/* ---- steps --------------------------------------------------------------------- */

/* bisect_right(milestones, x): how many milestones are <= x. */
static int bisect_right(const int64_t *m, int n, int64_t x) {
    int i = 0;
    while (i < n && m[i] <= x) i++;
    return i;
}

/* The child whose stretch the next epoch is in; at its milestone PyTorch
 * 2.x's _update_lr(0) (the closed form at epoch 0 where the kind has
 * one). */
int zg__sched_sequential_step(zg_sched *s) {
    int rc = zg__sched_check_step(s);
    if (rc) return rc;
    int64_t le = s->last_epoch + 1;
    int idx = bisect_right(s->milestones, s->n_children - 1, le);
    zg_sched *c = s->children[idx];
    bool at_milestone = idx > 0 && s->milestones[idx - 1] == le;
    rc = zg__sched_base_step(c, at_milestone ? ZG__SCHED_EPOCH : ZG__SCHED_NEXT, 0);
    if (rc) return rc;
    s->last_epoch = le;
    memcpy(s->last_lrs, c->last_lrs, (size_t)s->n_groups * sizeof *s->last_lrs);
    return ZG_OK;
}

/* Every child planned in turn, each from the lrs the previous one would
 * write, then the last lrs (and the momenta of the last child that cycles
 * them) written at once: nothing changes when a child fails. */
static int chained_plan(zg_sched *s, double *lrs, double *moms, zg__sched_pos *pos, const double **mom,
                        zg_hparam *mk) {
    const int n = s->n_groups;
    for (int g = 0; g < n; g++) lrs[g] = zg__sched_group_lr(s, g);
    int rc = ZG_OK;
    for (int i = 0; i < s->n_children && !rc; i++) {
        const zg_sched *c = s->children[i];
        double *out = lrs + (size_t)(i + 1) * n, *m = moms + (size_t)i * n;
        rc = zg__sched_check_step(c);
        if (!rc) rc = zg__sched_plan(c, ZG__SCHED_NEXT, 0, out - n, out, m, &pos[i]);
        if (c->kind == K_ONECYCLE && c->cycle_momentum) {
            *mom = m;
            *mk = c->use_beta1 ? ZG_HP_BETA1 : ZG_HP_MOMENTUM;
        }
    }
    return rc;
}

int zg__sched_chained_step(zg_sched *s) {
    int rc = zg__sched_check_step(s);
    if (rc) return rc;
    const int n = s->n_groups, k = s->n_children;
    /* lrs: the groups' now, then each child's; moms: each child's. */
    const size_t nd = (size_t)n * (2 * (size_t)k + 3);
    double stack[64];
    zg__sched_pos pstack[8];
    double *buf = nd <= 64 ? stack : zg__malloc(nd * sizeof *buf);
    zg__sched_pos *pos = k <= 8 ? pstack : zg__malloc((size_t)k * sizeof *pos);
    if (!buf || !pos) {
        if (buf != stack) free(buf);
        if (pos != pstack) free(pos);
        return zg__fail(ZG_ERR_NOMEM, "zg_sched_step: out of memory");
    }
    double *lrs = buf, *moms = buf + (size_t)n * (k + 1), *old = moms + (size_t)n * k;
    const double *mom = NULL;
    zg_hparam mk = ZG_HP_MOMENTUM;
    rc = chained_plan(s, lrs, moms, pos, &mom, &mk);
    if (!rc) rc = zg__sched_apply(s->opt, n, lrs + (size_t)n * k, mom, mk, "ChainedScheduler", old, old + n);
    for (int i = 0; i < k && !rc; i++) {
        zg_sched *c = s->children[i];
        zg__sched_commit(c, &pos[i]);
        memcpy(c->last_lrs, lrs + (size_t)(i + 1) * n, (size_t)n * sizeof *lrs);
    }
    if (!rc) {
        s->last_epoch++;
        for (int g = 0; g < n; g++) s->last_lrs[g] = zg__sched_group_lr(s, g);
    }
    if (buf != stack) free(buf);
    if (pos != pstack) free(pos);
    return rc;
}
