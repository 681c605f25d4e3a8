/* The optimizer core: parameter groups with per-group hyperparameters,
 * validation, zero_grad, the step loop (dispatching to the update rule of
 * the optimizer's kind), per-parameter state and accessors. The state_dict
 * as a safetensors file is optim_state.c; the update rules live in sgd.c,
 * adam.c, rmsprop.c and adagrad.c. */
#include "optim_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- tables ----------------------------------------------------------- */

const char *const zg__hp_names[ZG_HP_COUNT] = {
    [ZG_HP_LR] = "lr",
    [ZG_HP_WEIGHT_DECAY] = "weight_decay",
    [ZG_HP_MOMENTUM] = "momentum",
    [ZG_HP_DAMPENING] = "dampening",
    [ZG_HP_NESTEROV] = "nesterov",
    [ZG_HP_MAXIMIZE] = "maximize",
    [ZG_HP_BETA1] = "beta1",
    [ZG_HP_BETA2] = "beta2",
    [ZG_HP_EPS] = "eps",
    [ZG_HP_AMSGRAD] = "amsgrad",
    [ZG_HP_ALPHA] = "alpha",
    [ZG_HP_CENTERED] = "centered",
    [ZG_HP_LR_DECAY] = "lr_decay",
    [ZG_HP_INITIAL_ACCUMULATOR_VALUE] = "initial_accumulator_value",
};

const char *const zg__buf_names[ZG__BUF_COUNT] = {
    [ZG__BUF_MOMENTUM] = "momentum_buffer",
    [ZG__BUF_EXP_AVG] = "exp_avg",
    [ZG__BUF_EXP_AVG_SQ] = "exp_avg_sq",
    [ZG__BUF_MAX_EXP_AVG_SQ] = "max_exp_avg_sq",
    [ZG__BUF_SQUARE_AVG] = "square_avg",
    [ZG__BUF_GRAD_AVG] = "grad_avg",
    [ZG__BUF_SUM] = "sum",
};

static bool hp_is_bool(int k) {
    return k == ZG_HP_NESTEROV || k == ZG_HP_MAXIMIZE || k == ZG_HP_AMSGRAD || k == ZG_HP_CENTERED;
}

static const zg__optim_kind_info kinds[] = {
    [ZG_SGD] = {"SGD", "sgd",
                HP_BIT(ZG_HP_LR) | HP_BIT(ZG_HP_WEIGHT_DECAY) | HP_BIT(ZG_HP_MOMENTUM) | HP_BIT(ZG_HP_DAMPENING) |
                    HP_BIT(ZG_HP_NESTEROV) | HP_BIT(ZG_HP_MAXIMIZE),
                BUF_BIT(ZG__BUF_MOMENTUM), 0, zg__sgd_update},
    [ZG_ADAM] = {"Adam", "adam",
                 HP_BIT(ZG_HP_LR) | HP_BIT(ZG_HP_WEIGHT_DECAY) | HP_BIT(ZG_HP_BETA1) | HP_BIT(ZG_HP_BETA2) |
                     HP_BIT(ZG_HP_EPS) | HP_BIT(ZG_HP_AMSGRAD) | HP_BIT(ZG_HP_MAXIMIZE),
                 BUF_BIT(ZG__BUF_EXP_AVG) | BUF_BIT(ZG__BUF_EXP_AVG_SQ) | BUF_BIT(ZG__BUF_MAX_EXP_AVG_SQ),
                 BUF_BIT(ZG__BUF_EXP_AVG) | BUF_BIT(ZG__BUF_EXP_AVG_SQ), zg__adam_update},
    [ZG_ADAMW] = {"AdamW", "adamw",
                  HP_BIT(ZG_HP_LR) | HP_BIT(ZG_HP_WEIGHT_DECAY) | HP_BIT(ZG_HP_BETA1) | HP_BIT(ZG_HP_BETA2) |
                      HP_BIT(ZG_HP_EPS) | HP_BIT(ZG_HP_AMSGRAD) | HP_BIT(ZG_HP_MAXIMIZE),
                  BUF_BIT(ZG__BUF_EXP_AVG) | BUF_BIT(ZG__BUF_EXP_AVG_SQ) | BUF_BIT(ZG__BUF_MAX_EXP_AVG_SQ),
                  BUF_BIT(ZG__BUF_EXP_AVG) | BUF_BIT(ZG__BUF_EXP_AVG_SQ), zg__adamw_update},
    [ZG_RMSPROP] = {"RMSprop", "rmsprop",
                    HP_BIT(ZG_HP_LR) | HP_BIT(ZG_HP_WEIGHT_DECAY) | HP_BIT(ZG_HP_MOMENTUM) | HP_BIT(ZG_HP_ALPHA) |
                        HP_BIT(ZG_HP_EPS) | HP_BIT(ZG_HP_CENTERED) | HP_BIT(ZG_HP_MAXIMIZE),
                    BUF_BIT(ZG__BUF_SQUARE_AVG) | BUF_BIT(ZG__BUF_MOMENTUM) | BUF_BIT(ZG__BUF_GRAD_AVG),
                    BUF_BIT(ZG__BUF_SQUARE_AVG), zg__rmsprop_update},
    [ZG_ADAGRAD] = {"Adagrad", "adagrad",
                    HP_BIT(ZG_HP_LR) | HP_BIT(ZG_HP_WEIGHT_DECAY) | HP_BIT(ZG_HP_LR_DECAY) |
                        HP_BIT(ZG_HP_INITIAL_ACCUMULATOR_VALUE) | HP_BIT(ZG_HP_EPS) | HP_BIT(ZG_HP_MAXIMIZE),
                    BUF_BIT(ZG__BUF_SUM), BUF_BIT(ZG__BUF_SUM), zg__adagrad_update},
};

const zg__optim_kind_info *zg__optim_kind_of(zg_optim_kind kind) {
    return (int)kind >= 0 && (int)kind < (int)(sizeof kinds / sizeof kinds[0]) ? &kinds[kind] : NULL;
}

bool zg__hp_valid_for(const zg__optim_kind_info *ki, int key) {
    return key >= 0 && key < ZG_HP_COUNT && (ki->hp_mask & HP_BIT(key));
}

/* ---- defaults and validation ------------------------------------------ */

zg_optim_config zg_optim_defaults(zg_optim_kind kind) {
    /* Fields a kind does not use keep these neutral values. */
    zg_optim_config c = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .alpha = 0.99};
    switch (kind) {
    case ZG_SGD:
    case ZG_ADAM:
        break;
    case ZG_ADAMW:
        c.weight_decay = 1e-2;
        break;
    case ZG_RMSPROP:
        c.lr = 1e-2;
        break;
    case ZG_ADAGRAD:
        c.lr = 1e-2;
        c.eps = 1e-10;
        break;
    default:
        zg__fail(ZG_ERR_ARG, "zg_optim_defaults: unknown optimizer kind %d", (int)kind);
        break;
    }
    return c;
}

static void config_to_hp(const zg_optim_config *c, double *hp) {
    hp[ZG_HP_LR] = c->lr;
    hp[ZG_HP_WEIGHT_DECAY] = c->weight_decay;
    hp[ZG_HP_MOMENTUM] = c->momentum;
    hp[ZG_HP_DAMPENING] = c->dampening;
    hp[ZG_HP_NESTEROV] = c->nesterov ? 1 : 0;
    hp[ZG_HP_MAXIMIZE] = c->maximize ? 1 : 0;
    hp[ZG_HP_BETA1] = c->beta1;
    hp[ZG_HP_BETA2] = c->beta2;
    hp[ZG_HP_EPS] = c->eps;
    hp[ZG_HP_AMSGRAD] = c->amsgrad ? 1 : 0;
    hp[ZG_HP_ALPHA] = c->alpha;
    hp[ZG_HP_CENTERED] = c->centered ? 1 : 0;
    hp[ZG_HP_LR_DECAY] = c->lr_decay;
    hp[ZG_HP_INITIAL_ACCUMULATOR_VALUE] = c->initial_accumulator_value;
}

bool zg__optim_check_hparams(const zg__optim_kind_info *ki, const double *hp, char *msg, size_t n) {
    for (int k = 0; k < ZG_HP_COUNT; k++) {
        if (!zg__hp_valid_for(ki, k)) continue;
        double v = hp[k];
        if (hp_is_bool(k)) {
            if (v != 0 && v != 1) {
                snprintf(msg, n, "invalid %s %g (must be 0 or 1)", zg__hp_names[k], v);
                return false;
            }
        } else if (k == ZG_HP_BETA1 || k == ZG_HP_BETA2) {
            if (!(v >= 0 && v < 1)) {
                snprintf(msg, n, "invalid %s %g (must be in [0, 1))", zg__hp_names[k], v);
                return false;
            }
        } else if (k == ZG_HP_DAMPENING) {
            if (!isfinite(v)) {
                snprintf(msg, n, "invalid %s %g (must be finite)", zg__hp_names[k], v);
                return false;
            }
        } else if (!(v >= 0 && isfinite(v))) {
            snprintf(msg, n, "invalid %s %g (must be finite and >= 0)", zg__hp_names[k], v);
            return false;
        }
    }
    if (ki->update == zg__sgd_update && hp[ZG_HP_NESTEROV] != 0 &&
        (hp[ZG_HP_MOMENTUM] <= 0 || hp[ZG_HP_DAMPENING] != 0)) {
        snprintf(msg, n, "nesterov momentum requires a momentum > 0 and zero dampening (momentum %g, dampening %g)",
                 hp[ZG_HP_MOMENTUM], hp[ZG_HP_DAMPENING]);
        return false;
    }
    return true;
}

/* A parameter must outlive the optimizer's steps (persistent) and be a
 * leaf (its data is what the update writes). It need not require grad, as
 * in PyTorch: a frozen parameter has no grad, so steps skip it until it is
 * unfrozen and a backward gives it one. */
static int check_param(const char *fn, const zg_tensor *p, int group, int index) {
    if (!p) return zg__fail(ZG_ERR_ARG, "%s: group %d: parameter %d is NULL", fn, group, index);
    if (p->grad_fn)
        return zg__fail(ZG_ERR_ARG, "%s: group %d: parameter %d ('%s', made by '%s'): can't optimize a non-leaf tensor",
                        fn, group, index, zg_tensor_name(p), p->grad_fn->name);
    if (!p->persistent)
        return zg__fail(ZG_ERR_ARG,
                        "%s: group %d: parameter %d ('%s') is an arena tensor; parameters must be persistent "
                        "(zg_tensor_new, zg_zeros, ...)",
                        fn, group, index, zg_tensor_name(p));
    if (p->dtype != ZG_FLOAT32)
        return zg__fail(ZG_ERR_ARG, "%s: group %d: parameter %d ('%s') is not float32", fn, group, index,
                        zg_tensor_name(p));
    return ZG_OK;
}

/* Fills hp from defaults and the group's overrides and validates the
 * group (parameters and hyperparameters). */
static int prepare_group(const char *fn, const zg__optim_kind_info *ki, const double *defaults, const zg_param_group *g,
                         int gi, double *hp) {
    if (!g) return zg__fail(ZG_ERR_ARG, "%s: group %d is NULL", fn, gi);
    if (g->n_params < 0 || (g->n_params > 0 && !g->params))
        return zg__fail(ZG_ERR_ARG, "%s: group %d: bad parameter list (%d parameters, list %s)", fn, gi, g->n_params,
                        g->params ? "given" : "NULL");
    if (g->n_overrides < 0 || (g->n_overrides > 0 && !g->overrides))
        return zg__fail(ZG_ERR_ARG, "%s: group %d: bad override list", fn, gi);
    for (int i = 0; i < g->n_params; i++) {
        int rc = check_param(fn, g->params[i], gi, i);
        if (rc) return rc;
    }
    memcpy(hp, defaults, ZG_HP_COUNT * sizeof *hp);
    unsigned seen = 0;
    for (int i = 0; i < g->n_overrides; i++) {
        int k = (int)g->overrides[i].key;
        if (k < 0 || k >= ZG_HP_COUNT)
            return zg__fail(ZG_ERR_ARG, "%s: group %d: unknown hyperparameter key %d", fn, gi, k);
        if (!zg__hp_valid_for(ki, k))
            return zg__fail(ZG_ERR_ARG, "%s: group %d: '%s' is not a hyperparameter of %s", fn, gi, zg__hp_names[k],
                            ki->name);
        if (seen & HP_BIT(k))
            return zg__fail(ZG_ERR_ARG, "%s: group %d: '%s' is set twice", fn, gi, zg__hp_names[k]);
        seen |= HP_BIT(k);
        hp[k] = g->overrides[i].value;
    }
    char msg[256];
    if (!zg__optim_check_hparams(ki, hp, msg, sizeof msg)) return zg__fail(ZG_ERR_ARG, "%s: group %d: %s", fn, gi, msg);
    return ZG_OK;
}

typedef struct {
    const zg_tensor *p;
    int group, index, global;
} param_ref;

static int cmp_ref(const void *a, const void *b) {
    const param_ref *x = a, *y = b;
    uintptr_t px = (uintptr_t)x->p, py = (uintptr_t)y->p;
    if (px != py) return px < py ? -1 : 1;
    return x->global < y->global ? -1 : x->global > y->global;
}

/* PyTorch 2.x's words when a group lists a parameter twice. */
static void warn_repeated(const char *fn, const param_ref *first, const param_ref *again) {
    fprintf(stderr,
            "zgrad: warning: %s: group %d lists parameter '%s' more than once (index %d and %d); every listing is "
            "updated at each step, sharing one state, as in PyTorch, which warns that this will be an error in "
            "future (github.com/pytorch/pytorch/issues/40967)\n",
            fn, again->group, zg_tensor_name(again->p), first->index, again->index);
}

/* Fails if a parameter of the new groups is also in another group (of
 * opt, which may be NULL, or a new one), and gives each new listing the
 * global index of its parameter's first listing (canon[k] for the k-th
 * new listing; its own index unless its group lists it earlier). A group
 * may list a parameter twice, as PyTorch 2.x allows with a warning. Sorting
 * keeps this O(n log n) for models with many parameter tensors. */
static int index_params(const char *fn, const zg_optim *opt, const zg_param_group *groups, int n_groups,
                        int first_group, int *canon) {
    const int base = opt ? opt->n_params : 0;
    size_t n = (size_t)base;
    for (int g = 0; g < n_groups; g++) n += (size_t)groups[g].n_params;
    param_ref *refs = zg__malloc((n + 1) * sizeof *refs);
    if (!refs) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    size_t k = 0;
    if (opt)
        for (int g = 0; g < opt->n_groups; g++)
            for (int i = 0; i < opt->groups[g].n; i++)
                refs[k] = (param_ref){opt->params[opt->groups[g].first + i], g, i, (int)k}, k++;
    for (int g = 0; g < n_groups; g++)
        for (int i = 0; i < groups[g].n_params; i++)
            refs[k] = (param_ref){groups[g].params[i], first_group + g, i, (int)k}, k++;
    qsort(refs, n, sizeof *refs, cmp_ref);
    int rc = ZG_OK;
    const param_ref *repeated = NULL, *first = refs;
    for (size_t i = 0; i < n && !rc; i++) {
        if (refs[i].p != first->p) first = &refs[i];
        if (first->group != refs[i].group)
            rc = zg__fail(ZG_ERR_ARG,
                          "%s: parameter '%s' appears in more than one group (group %d index %d and group %d index "
                          "%d); a parameter may belong to one group only",
                          fn, zg_tensor_name(refs[i].p), first->group, first->index, refs[i].group, refs[i].index);
        else if (first != &refs[i] && !repeated)
            repeated = &refs[i];
        if (refs[i].global >= base) canon[refs[i].global - base] = first->global;
    }
    if (!rc && repeated) warn_repeated(fn, repeated - 1, repeated);
    free(refs);
    return rc;
}

/* ---- construction ------------------------------------------------------ */

/* Grows the arrays for more groups and parameters (nothing else changes,
 * so a failure leaves the optimizer as it was). */
static int reserve(zg_optim *opt, int add_groups, int add_params) {
    if (opt->n_groups + add_groups > opt->cap_groups) {
        int cap = opt->n_groups + add_groups + 4;
        zg__group *g = zg__realloc(opt->groups, (size_t)cap * sizeof *g);
        if (!g) return ZG_ERR_NOMEM;
        opt->groups = g;
        opt->cap_groups = cap;
    }
    if (opt->n_params + add_params > opt->cap_params) {
        int cap = opt->n_params + add_params + 8;
        zg_tensor **p = zg__realloc(opt->params, (size_t)cap * sizeof *p);
        if (!p) return ZG_ERR_NOMEM;
        opt->params = p;
        zg__param_state *s = zg__realloc(opt->state, (size_t)cap * sizeof *s);
        if (!s) return ZG_ERR_NOMEM;
        opt->state = s;
        int *c = zg__realloc(opt->canon, (size_t)cap * sizeof *c);
        if (!c) return ZG_ERR_NOMEM;
        opt->canon = c;
        opt->cap_params = cap;
    }
    return ZG_OK;
}

/* Appends group g (its listings' first listings already in opt->canon,
 * see index_params). */
static void append_group(zg_optim *opt, const zg_param_group *g, const double *hp) {
    zg__group *ng = &opt->groups[opt->n_groups++];
    ng->first = opt->n_params;
    ng->n = g->n_params;
    memcpy(ng->hp, hp, sizeof ng->hp);
    memset(&ng->sched, 0, sizeof ng->sched);
    for (int i = 0; i < g->n_params; i++) {
        opt->params[opt->n_params] = g->params[i];
        memset(&opt->state[opt->n_params], 0, sizeof opt->state[0]);
        opt->n_params++;
    }
    zg__emit_optim_params(opt, g->params, g->n_params); /* event: known from construction */
}

static zg_optim *create(const char *fn, zg_optim_kind kind, const zg_param_group *groups, int n_groups,
                        const zg_optim_config *config) {
    const zg__optim_kind_info *ki = zg__optim_kind_of(kind);
    if (!ki) return zg__fail_null("%s: unknown optimizer kind %d", fn, (int)kind);
    if (n_groups < 0 || (n_groups > 0 && !groups)) return zg__fail_null("%s: bad group list", fn);
    long total = 0;
    for (int g = 0; g < n_groups; g++) total += groups[g].n_params > 0 ? groups[g].n_params : 0;
    if (total == 0) return zg__fail_null("%s: optimizer got an empty parameter list", fn);

    zg_optim_config cfg = config ? *config : zg_optim_defaults(kind);
    double defaults[ZG_HP_COUNT];
    config_to_hp(&cfg, defaults);
    char msg[256];
    if (!zg__optim_check_hparams(ki, defaults, msg, sizeof msg)) return zg__fail_null("%s: default %s", fn, msg);

    double *hps = zg__malloc((size_t)n_groups * ZG_HP_COUNT * sizeof *hps);
    if (!hps) return zg__fail_null("%s: out of memory", fn);
    for (int g = 0; g < n_groups; g++) {
        if (prepare_group(fn, ki, defaults, &groups[g], g, hps + (size_t)g * ZG_HP_COUNT)) {
            free(hps);
            return NULL;
        }
    }
    zg_optim *opt = zg__calloc(1, sizeof *opt);
    if (!opt || reserve(opt, n_groups, (int)total)) {
        free(hps);
        zg_optim_free(opt);
        return zg__fail_null("%s: out of memory", fn);
    }
    if (index_params(fn, NULL, groups, n_groups, 0, opt->canon)) {
        free(hps);
        zg_optim_free(opt);
        return NULL;
    }
    opt->kind = kind;
    memcpy(opt->defaults, defaults, sizeof defaults);
    for (int g = 0; g < n_groups; g++) append_group(opt, &groups[g], hps + (size_t)g * ZG_HP_COUNT);
    free(hps);
    return opt;
}

zg_optim *zg_optim_new(zg_optim_kind kind, zg_tensor *const *params, int n_params, const zg_optim_config *config) {
    if (n_params < 0 || (n_params > 0 && !params))
        return zg__fail_null("zg_optim_new: bad parameter list (%d parameters)", n_params);
    zg_param_group g = {params, n_params, NULL, 0};
    return create("zg_optim_new", kind, &g, 1, config);
}

zg_optim *zg_optim_new_groups(zg_optim_kind kind, const zg_param_group *groups, int n_groups,
                              const zg_optim_config *config) {
    return create("zg_optim_new_groups", kind, groups, n_groups, config);
}

/* nanoGPT's configure_optimizers: weight decay only on the matrices
 * (tensors of dim >= 2: Linear weights, embeddings), none on biases and
 * norm weights. Group 0 holds the decayed tensors, group 1 the rest, each
 * in the module's parameter order. */
zg_optim *zg_optim_new_decay_split(zg_optim_kind kind, const zg_module *m, double weight_decay,
                                   const zg_optim_config *config) {
    const char *fn = "zg_optim_new_decay_split";
    if (!m) return zg__fail_null("%s: module is NULL", fn);
    const int n = zg_module_num_params(m);
    zg_tensor **all = zg__calloc((size_t)(2 * n + 2), sizeof *all);
    if (!all) return zg__fail_null("%s: out of memory", fn);
    zg_tensor **decay = all, **rest = all + n + 1;
    int nd = 0, nr = 0;
    for (int i = 0; i < n; i++) {
        zg_tensor *p = zg_module_param(m, i);
        if (p->ndim >= 2) decay[nd++] = p;
        else rest[nr++] = p;
    }
    const zg_hp wd[1] = {{ZG_HP_WEIGHT_DECAY, weight_decay}}, no_wd[1] = {{ZG_HP_WEIGHT_DECAY, 0.0}};
    const zg_param_group g[2] = {{decay, nd, wd, 1}, {rest, nr, no_wd, 1}};
    /* a module with no matrices (or nothing else) gets the one group it has */
    zg_optim *opt = create(fn, kind, nd ? g : g + 1, (nd > 0) + (nr > 0), config);
    free(all);
    return opt;
}

int zg_optim_add_param_group(zg_optim *opt, const zg_param_group *group) {
    const char *fn = "zg_optim_add_param_group";
    if (!opt) return zg__fail(ZG_ERR_ARG, "%s: optimizer is NULL", fn);
    double hp[ZG_HP_COUNT];
    int rc = prepare_group(fn, zg__optim_kind_of(opt->kind), opt->defaults, group, opt->n_groups, hp);
    if (rc) return rc;
    /* Growing the arrays changes nothing the caller sees, also when the
     * group is refused next. */
    if (reserve(opt, 1, group->n_params)) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    rc = index_params(fn, opt, group, 1, opt->n_groups, opt->canon + opt->n_params);
    if (rc) return rc;
    append_group(opt, group, hp);
    return ZG_OK;
}

void zg__optim_state_clear(zg__param_state *st) {
    for (int b = 0; b < ZG__BUF_COUNT; b++) zg_tensor_free(st->buf[b]);
    memset(st, 0, sizeof *st);
}

void zg_optim_free(zg_optim *opt) {
    if (!opt) return;
    zg__emit_optim_free(opt, opt->params, opt->n_params); /* event: a listener forgets it */
    for (int i = 0; i < opt->n_params; i++) zg__optim_state_clear(&opt->state[i]);
    free(opt->state);
    free(opt->canon);
    free(opt->params);
    free(opt->groups);
    free(opt);
}

/* ---- zero_grad and step ------------------------------------------------ */

void zg_optim_zero_grad(zg_optim *opt, bool set_to_none) {
    if (!opt) return;
    zg__emit_zero_begin("zg_optim_zero_grad", opt, opt->params, opt->n_params); /* event: the erased grads as one report */
    for (int i = 0; i < opt->n_params; i++) zg_tensor_zero_grad(opt->params[i], set_to_none);
    zg__emit_zero_end();
}

zg_tensor *zg__optim_buffer(zg__param_state *st, zg__buf_id id, const zg_tensor *p, float init, bool *fresh) {
    if (fresh) *fresh = (st->fresh & BUF_BIT(id)) != 0;
    if (st->buf[id]) return st->buf[id];
    zg_tensor *b = zg_tensor_new(ZG_FLOAT32, p->shape, p->ndim);
    if (!b) return zg__fail_null("zg_optim_step: out of memory for the state buffer '%s'", zg__buf_names[id]);
    if (init != 0.0f) {
        float *d = zg__f32(b);
        for (int64_t i = 0; i < b->numel; i++) d[i] = init;
    }
    st->buf[id] = b;
    st->fresh |= BUF_BIT(id);
    if (fresh) *fresh = true;
    return b;
}

/* The state every listing of parameter i shares: its first listing's. */
static zg__param_state *state_of(const zg_optim *opt, int i) { return &opt->state[opt->canon[i]]; }

/* The step's buffers count as made for it until the step ends, so that a
 * parameter listed twice starts its momentum from each listing's gradient
 * on its first step, as PyTorch's SGD does. */
static void end_fresh(zg_optim *opt) {
    for (int i = 0; i < opt->n_params; i++) opt->state[i].fresh = 0;
}

/* The reservation pass of a step: every state buffer the step needs, made
 * before any parameter moves. When one cannot be made, those made here are
 * freed again, so a failed step leaves the state as it was. */
static int reserve_state(zg_optim *opt, zg__update_fn update) {
    int rc = ZG_OK;
    for (int g = 0; g < opt->n_groups && !rc; g++) {
        const zg__group *grp = &opt->groups[g];
        for (int i = grp->first; i < grp->first + grp->n && !rc; i++)
            if (opt->params[i]->grad_defined) rc = update(opt->params[i], NULL, state_of(opt, i), grp->hp);
    }
    for (int i = 0; rc && i < opt->n_params; i++) {
        zg__param_state *st = &opt->state[i];
        for (int b = 0; b < ZG__BUF_COUNT; b++)
            if (st->fresh & BUF_BIT(b)) {
                zg_tensor_free(st->buf[b]);
                st->buf[b] = NULL;
            }
    }
    if (rc) end_fresh(opt);
    return rc;
}

/* Every listing in order; a parameter listed twice is updated twice, its
 * step count advancing at each (PyTorch's loop over the group's list). */
int zg_optim_step(zg_optim *opt) {
    if (!opt) return zg__fail(ZG_ERR_ARG, "zg_optim_step: optimizer is NULL");
    if (zg__emit_step(opt, opt->params, opt->n_params)) return ZG_ERR_STATE; /* a listener refuses (stale grads) */
    zg__update_fn update = zg__optim_kind_of(opt->kind)->update;
    int rc = reserve_state(opt, update);
    for (int g = 0; g < opt->n_groups && !rc; g++) {
        const zg__group *grp = &opt->groups[g];
        for (int i = grp->first; i < grp->first + grp->n && !rc; i++) {
            zg_tensor *p = opt->params[i];
            /* None: no update, no decay, no state created or advanced. */
            if (!p->grad_defined) continue;
            zg__param_state *st = state_of(opt, i);
            zg__param_state before = *st;
            st->active = true;
            st->step++;
            rc = update(p, p->grad, st, grp->hp);
            if (rc) {
                st->active = before.active;
                st->step = before.step;
            }
        }
    }
    end_fresh(opt);
    return rc;
}

/* ---- accessors ---------------------------------------------------------- */

zg_optim_kind zg_optim_get_kind(const zg_optim *opt) {
    if (!opt) {
        zg__fail(ZG_ERR_ARG, "zg_optim_get_kind: optimizer is NULL");
        return ZG_SGD;
    }
    return opt->kind;
}

int zg_optim_num_groups(const zg_optim *opt) {
    if (!opt) return zg__fail(ZG_ERR_ARG, "zg_optim_num_groups: optimizer is NULL");
    return opt->n_groups;
}

static int check_group(const char *fn, const zg_optim *opt, int group) {
    if (!opt) return zg__fail(ZG_ERR_ARG, "%s: optimizer is NULL", fn);
    if (group < 0 || group >= opt->n_groups)
        return zg__fail(ZG_ERR_ARG, "%s: group %d out of range (%d groups)", fn, group, opt->n_groups);
    return ZG_OK;
}

int zg_optim_group_size(const zg_optim *opt, int group) {
    int rc = check_group("zg_optim_group_size", opt, group);
    return rc ? rc : opt->groups[group].n;
}

zg_tensor *zg_optim_group_param(const zg_optim *opt, int group, int index) {
    if (check_group("zg_optim_group_param", opt, group)) return NULL;
    if (index < 0 || index >= opt->groups[group].n)
        return zg__fail_null("zg_optim_group_param: index %d out of range (group %d has %d parameters)", index, group,
                             opt->groups[group].n);
    return opt->params[opt->groups[group].first + index];
}

double zg_optim_get_hparam(const zg_optim *opt, int group, zg_hparam key) {
    if (check_group("zg_optim_get_hparam", opt, group)) return NAN;
    const zg__optim_kind_info *ki = zg__optim_kind_of(opt->kind);
    if (!zg__hp_valid_for(ki, (int)key)) {
        if ((int)key < 0 || (int)key >= ZG_HP_COUNT)
            zg__fail(ZG_ERR_ARG, "zg_optim_get_hparam: unknown hyperparameter key %d", (int)key);
        else
            zg__fail(ZG_ERR_ARG, "zg_optim_get_hparam: '%s' is not a hyperparameter of %s", zg__hp_names[key], ki->name);
        return NAN;
    }
    return opt->groups[group].hp[key];
}

int zg_optim_set_hparam(zg_optim *opt, int group, zg_hparam key, double value) {
    const char *fn = "zg_optim_set_hparam";
    int rc = check_group(fn, opt, group);
    if (rc) return rc;
    const zg__optim_kind_info *ki = zg__optim_kind_of(opt->kind);
    if ((int)key < 0 || (int)key >= ZG_HP_COUNT)
        return zg__fail(ZG_ERR_ARG, "%s: unknown hyperparameter key %d", fn, (int)key);
    if (!zg__hp_valid_for(ki, (int)key))
        return zg__fail(ZG_ERR_ARG, "%s: '%s' is not a hyperparameter of %s", fn, zg__hp_names[key], ki->name);
    double hp[ZG_HP_COUNT];
    memcpy(hp, opt->groups[group].hp, sizeof hp);
    hp[key] = value;
    char msg[256];
    if (!zg__optim_check_hparams(ki, hp, msg, sizeof msg)) return zg__fail(ZG_ERR_ARG, "%s: group %d: %s", fn, group, msg);
    opt->groups[group].hp[key] = value;
    return ZG_OK;
}

int64_t zg_optim_state_step(const zg_optim *opt, int param_index) {
    if (!opt) return zg__fail(ZG_ERR_ARG, "zg_optim_state_step: optimizer is NULL");
    if (param_index < 0 || param_index >= opt->n_params)
        return zg__fail(ZG_ERR_ARG, "zg_optim_state_step: parameter index %d out of range (%d parameters)",
                        param_index, opt->n_params);
    const zg__param_state *st = state_of(opt, param_index);
    return st->active ? st->step : -1;
}

int zg__optim_buf_id(const char *name) {
    for (int b = 0; b < ZG__BUF_COUNT; b++)
        if (strcmp(name, zg__buf_names[b]) == 0) return b;
    return -1;
}

zg_tensor *zg_optim_state_buffer(const zg_optim *opt, int param_index, const char *name) {
    const char *fn = "zg_optim_state_buffer";
    if (!opt || !name) return zg__fail_null("%s: NULL argument", fn);
    if (param_index < 0 || param_index >= opt->n_params)
        return zg__fail_null("%s: parameter index %d out of range (%d parameters)", fn, param_index, opt->n_params);
    int b = zg__optim_buf_id(name);
    const zg__optim_kind_info *ki = zg__optim_kind_of(opt->kind);
    if (b < 0 || !(ki->buf_mask & BUF_BIT(b)))
        return zg__fail_null("%s: %s has no state buffer '%s'", fn, ki->name, name);
    const zg__param_state *st = state_of(opt, param_index);
    return st->active ? st->buf[b] : NULL;
}
