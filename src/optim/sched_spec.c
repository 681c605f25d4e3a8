/* zg_sched_from_spec: the scheduler a `--schedule` spec names
 * ("cosine:1000,eta_min=0", "onecycle:0.1,...", "plateau:5,factor=0.5",
 * "chained:constant:4,factor=0.5|exponential:0.9"). */
#include "sched_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>

#define MAX_KEYS 12
#define MAX_MILESTONES 64

/* ---- the spec's values ------------------------------------------------------- */

typedef struct {
    const char *key;
    char value[256];
    bool set;
} spec_arg;

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

static bool parse_int(const char *s, const char *stop, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    *out = v;
    return end != s && end == stop && errno == 0;
}

static bool spec_int(const spec_arg *a, int64_t def, int64_t *out) {
    if (!a->set) {
        *out = def;
        return true;
    }
    return parse_int(a->value, a->value + strlen(a->value), out);
}

static bool spec_bool(const spec_arg *a, bool def, bool *out) {
    if (!a->set) *out = def;
    else if (!strcmp(a->value, "1") || !strcmp(a->value, "true")) *out = true;
    else if (!strcmp(a->value, "0") || !strcmp(a->value, "false")) *out = false;
    else return false;
    return true;
}

/* One of two words (def when not given); *second says which. */
static bool spec_choice(const spec_arg *a, const char *first, const char *second, bool *is_second) {
    *is_second = a->set && !strcmp(a->value, second);
    return !a->set || *is_second || !strcmp(a->value, first);
}

/* ---- the kinds ------------------------------------------------------------- */

/* Builds the scheduler from the parsed arguments; *bad names an invalid
 * one (then NULL, no error set); otherwise NULL means the constructor's
 * error. */
typedef zg_sched *(*spec_build)(zg_optim *opt, const spec_arg *a, int64_t total, const spec_arg **bad);

static zg_sched *build_step(zg_optim *opt, const spec_arg *a, int64_t total, const spec_arg **bad) {
    (void)total;
    int64_t size;
    double gamma;
    if (!spec_int(&a[0], 0, &size)) *bad = &a[0];
    else if (!spec_double(&a[1], 0.1, &gamma)) *bad = &a[1];
    return *bad ? NULL : zg_sched_step_lr(opt, size, gamma);
}

static zg_sched *build_cosine(zg_optim *opt, const spec_arg *a, int64_t total, const spec_arg **bad) {
    int64_t t_max;
    double eta;
    if (!spec_int(&a[0], total, &t_max)) *bad = &a[0];
    else if (!spec_double(&a[1], 0, &eta)) *bad = &a[1];
    return *bad ? NULL : zg_sched_cosine(opt, t_max, eta);
}

static zg_sched *build_linear(zg_optim *opt, const spec_arg *a, int64_t total, const spec_arg **bad) {
    (void)total;
    int64_t iters;
    double sf, ef;
    if (!spec_int(&a[0], 5, &iters)) *bad = &a[0];
    else if (!spec_double(&a[1], 1.0 / 3, &sf)) *bad = &a[1];
    else if (!spec_double(&a[2], 1.0, &ef)) *bad = &a[2];
    return *bad ? NULL : zg_sched_linear(opt, sf, ef, iters);
}

static zg_sched *build_onecycle(zg_optim *opt, const spec_arg *a, int64_t total, const spec_arg **bad) {
    zg_onecycle_opts o = zg_onecycle_defaults(total);
    double max_lr;
    if (!spec_double(&a[0], 0, &max_lr)) *bad = &a[0];
    else if (!spec_double(&a[1], o.pct_start, &o.pct_start)) *bad = &a[1];
    else if (!spec_choice(&a[2], "cos", "linear", &o.anneal_linear)) *bad = &a[2];
    else if (!spec_double(&a[3], o.div_factor, &o.div_factor)) *bad = &a[3];
    else if (!spec_double(&a[4], o.final_div_factor, &o.final_div_factor)) *bad = &a[4];
    else if (!spec_bool(&a[5], o.three_phase, &o.three_phase)) *bad = &a[5];
    else if (!spec_bool(&a[6], o.cycle_momentum, &o.cycle_momentum)) *bad = &a[6];
    else if (!spec_double(&a[7], o.base_momentum, &o.base_momentum)) *bad = &a[7];
    else if (!spec_double(&a[8], o.max_momentum, &o.max_momentum)) *bad = &a[8];
    else if (!spec_int(&a[9], total, &o.total_steps)) *bad = &a[9];
    return *bad ? NULL : zg_sched_onecycle(opt, max_lr, &o);
}

static zg_sched *build_warmup_cosine(zg_optim *opt, const spec_arg *a, int64_t total, const spec_arg **bad) {
    int64_t warmup;
    double sf, eta;
    if (!spec_int(&a[0], 0, &warmup)) *bad = &a[0];
    else if (!spec_double(&a[1], 1.0 / 3, &sf)) *bad = &a[1];
    else if (!spec_double(&a[2], 0, &eta)) *bad = &a[2];
    return *bad ? NULL : zg_sched_warmup_cosine(opt, warmup, sf, total, eta);
}

static zg_sched *build_exponential(zg_optim *opt, const spec_arg *a, int64_t total, const spec_arg **bad) {
    (void)total;
    double gamma;
    if (!spec_double(&a[0], 0, &gamma)) *bad = &a[0];
    return *bad ? NULL : zg_sched_exponential(opt, gamma);
}

/* The milestones: "30,60,90" (collected from the positional items). */
static zg_sched *build_multistep(zg_optim *opt, const spec_arg *a, int64_t total, const spec_arg **bad) {
    (void)total;
    int64_t ms[MAX_MILESTONES];
    int n = 0;
    double gamma = 0;
    for (const char *p = a[0].value; !*bad && *p; n++) {
        const char *e = strchr(p, ',');
        if (!e) e = p + strlen(p);
        if (n == MAX_MILESTONES || !parse_int(p, e, &ms[n])) *bad = &a[0];
        p = *e ? e + 1 : e;
    }
    if (!*bad && !spec_double(&a[1], 0.1, &gamma)) *bad = &a[1];
    return *bad ? NULL : zg_sched_multistep(opt, ms, n, gamma);
}

static zg_sched *build_constant(zg_optim *opt, const spec_arg *a, int64_t total, const spec_arg **bad) {
    (void)total;
    int64_t iters;
    double factor;
    if (!spec_int(&a[0], 5, &iters)) *bad = &a[0];
    else if (!spec_double(&a[1], 1.0 / 3, &factor)) *bad = &a[1];
    return *bad ? NULL : zg_sched_constant(opt, factor, iters);
}

static zg_sched *build_polynomial(zg_optim *opt, const spec_arg *a, int64_t total, const spec_arg **bad) {
    int64_t iters;
    double power;
    if (!spec_int(&a[0], total, &iters)) *bad = &a[0];
    else if (!spec_double(&a[1], 1.0, &power)) *bad = &a[1];
    return *bad ? NULL : zg_sched_polynomial(opt, iters, power);
}

static zg_sched *build_restarts(zg_optim *opt, const spec_arg *a, int64_t total, const spec_arg **bad) {
    (void)total;
    int64_t t_0, t_mult;
    double eta;
    if (!spec_int(&a[0], 0, &t_0)) *bad = &a[0];
    else if (!spec_int(&a[1], 1, &t_mult)) *bad = &a[1];
    else if (!spec_double(&a[2], 0, &eta)) *bad = &a[2];
    return *bad ? NULL : zg_sched_cosine_warm_restarts(opt, t_0, t_mult, eta);
}

static zg_sched *build_plateau(zg_optim *opt, const spec_arg *a, int64_t total, const spec_arg **bad) {
    (void)total;
    zg_plateau_opts o = zg_plateau_defaults();
    if (!spec_int(&a[0], o.patience, &o.patience)) *bad = &a[0];
    else if (!spec_choice(&a[1], "min", "max", &o.mode_max)) *bad = &a[1];
    else if (!spec_double(&a[2], o.factor, &o.factor)) *bad = &a[2];
    else if (!spec_double(&a[3], o.threshold, &o.threshold)) *bad = &a[3];
    else if (!spec_choice(&a[4], "rel", "abs", &o.threshold_abs)) *bad = &a[4];
    else if (!spec_int(&a[5], o.cooldown, &o.cooldown)) *bad = &a[5];
    else if (!spec_double(&a[6], o.min_lr, &o.min_lr)) *bad = &a[6];
    else if (!spec_double(&a[7], o.eps, &o.eps)) *bad = &a[7];
    return *bad ? NULL : zg_sched_plateau(opt, &o);
}

/* Each kind: its name, its keys (the first is the positional one), whether
 * that one is required, and whether it is a list (every leading item
 * without a key). */
typedef struct {
    const char *name;
    const char *keys[MAX_KEYS];
    bool required, list;
    spec_build build;
    const char *usage;
} spec_kind;

static const spec_kind kinds[] = {
    {"step", {"step_size", "gamma"}, true, false, build_step, "step needs a step size (step:SIZE)"},
    {"cosine", {"t_max", "eta_min"}, false, false, build_cosine, NULL},
    {"linear", {"total_iters", "start_factor", "end_factor"}, false, false, build_linear, NULL},
    {"onecycle",
     {"max_lr", "pct_start", "anneal", "div_factor", "final_div_factor", "three_phase", "cycle_momentum",
      "base_momentum", "max_momentum", "total_steps"},
     true,
     false,
     build_onecycle,
     "onecycle needs max_lr (onecycle:MAX_LR)"},
    {"warmup-cosine",
     {"warmup", "start_factor", "eta_min"},
     true,
     false,
     build_warmup_cosine,
     "warmup-cosine needs the warm-up steps (warmup-cosine:W)"},
    {"exponential", {"gamma"}, true, false, build_exponential, "exponential needs gamma (exponential:GAMMA)"},
    {"multistep", {"milestones", "gamma"}, true, true, build_multistep, "multistep needs milestones (multistep:M1,M2)"},
    {"constant", {"total_iters", "factor"}, false, false, build_constant, NULL},
    {"polynomial", {"total_iters", "power"}, false, false, build_polynomial, NULL},
    {"cosine-restarts",
     {"t_0", "t_mult", "eta_min"},
     true,
     false,
     build_restarts,
     "cosine-restarts needs the first cycle's length (cosine-restarts:T_0)"},
    {"plateau",
     {"patience", "mode", "factor", "threshold", "threshold_mode", "cooldown", "min_lr", "eps"},
     false,
     false,
     build_plateau,
     NULL},
};

#define N_KINDS ((int)(sizeof kinds / sizeof kinds[0]))
#define KIND_LIST                                                                                                      \
    "step, cosine, linear, onecycle, warmup-cosine, exponential, multistep, constant, polynomial, cosine-restarts, "   \
    "plateau or chained"

/* ---- the parser ------------------------------------------------------------- */

static spec_arg *spec_find(spec_arg *a, int n, const char *key, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(a[i].key) == len && strncmp(a[i].key, key, len) == 0) return &a[i];
    return NULL;
}

/* Stores one item's value in a (a list's items are joined by commas). */
static bool spec_store(const char *fn, const char *spec, spec_arg *a, const char *v, size_t len, bool append) {
    size_t at = append ? strlen(a->value) + 1 : 0;
    if (a->set && !append) {
        zg__fail(ZG_ERR_ARG, "%s: '%s': '%s' is given twice", fn, spec, a->key);
        return false;
    }
    if (len == 0 || at + len >= sizeof a->value) {
        zg__fail(ZG_ERR_ARG, "%s: '%s': invalid value for '%s'", fn, spec, a->key);
        return false;
    }
    if (append) a->value[at - 1] = ',';
    memcpy(a->value + at, v, len);
    a->value[at + len] = '\0';
    a->set = true;
    return true;
}

/* The items after the colon, "v" or "key=v" separated by commas, into
 * args. */
static bool spec_items(const char *fn, const char *spec, const spec_kind *k, const char *p, spec_arg *args, int na) {
    bool positional = true;
    for (int item = 0; p; item++) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        spec_arg *a = NULL;
        bool append = false;
        if (eq) {
            size_t kl = (size_t)(eq - p);
            if (!(a = spec_find(args, na, p, kl))) {
                zg__fail(ZG_ERR_ARG, "%s: '%s': unknown key '%.*s'", fn, spec, (int)kl, p);
                return false;
            }
            len -= kl + 1;
            p = eq + 1;
            positional = false;
        } else if (item == 0 || (k->list && positional)) {
            a = &args[0];
            append = item > 0;
        } else {
            zg__fail(ZG_ERR_ARG, "%s: '%s': '%.*s' needs a key (key=value)", fn, spec, (int)len, p);
            return false;
        }
        if (!spec_store(fn, spec, a, p, len, append)) return false;
        p = e ? e + 1 : NULL;
    }
    return true;
}

static zg_sched *from_chained(zg_optim *opt, const char *spec, const char *list, int64_t total_steps);

static zg_sched *from_spec(zg_optim *opt, const char *spec, int64_t total_steps) {
    const char *fn = "zg_sched_from_spec";
    if (!strncmp(spec, "chained:", 8)) return from_chained(opt, spec, spec + 8, total_steps);
    const char *colon = strchr(spec, ':');
    size_t nlen = colon ? (size_t)(colon - spec) : strlen(spec);
    const spec_kind *k = NULL;
    for (int i = 0; i < N_KINDS && !k; i++)
        if (strlen(kinds[i].name) == nlen && strncmp(spec, kinds[i].name, nlen) == 0) k = &kinds[i];
    if (!k) return zg__fail_null("%s: '%s': unknown schedule (" KIND_LIST ")", fn, spec);
    spec_arg args[MAX_KEYS];
    int na = 0;
    for (; na < MAX_KEYS && k->keys[na]; na++) args[na] = (spec_arg){.key = k->keys[na]};
    if (!spec_items(fn, spec, k, colon ? colon + 1 : NULL, args, na)) return NULL;
    if (k->required && !args[0].set) return zg__fail_null("%s: '%s': %s", fn, spec, k->usage);
    const spec_arg *bad = NULL;
    zg_sched *s = k->build(opt, args, total_steps, &bad);
    if (bad) return zg__fail_null("%s: '%s': invalid value '%s' for '%s'", fn, spec, bad->value, bad->key);
    if (!s) {
        char inner[768];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        return zg__fail_null("%s: '%s': %s", fn, spec, inner);
    }
    return s;
}

/* A spec that fails leaves the groups as they were, also when it failed
 * after building a part (a composite's first schedulers, which write lrs
 * and initial_lr). */
zg_sched *zg_sched_from_spec(zg_optim *opt, const char *spec, int64_t total_steps) {
    if (!opt || !spec) return zg__fail_null("zg_sched_from_spec: NULL argument");
    zg__group *saved = zg__malloc(((size_t)opt->n_groups + 1) * sizeof *saved);
    if (!saved) return zg__fail_null("zg_sched_from_spec: out of memory");
    memcpy(saved, opt->groups, (size_t)opt->n_groups * sizeof *saved);
    zg_sched *s = from_spec(opt, spec, total_steps);
    if (!s) memcpy(opt->groups, saved, (size_t)opt->n_groups * sizeof *saved);
    free(saved);
    return s;
}

/* "chained:SPEC|SPEC|...": each spec's scheduler, chained. */
static zg_sched *from_chained(zg_optim *opt, const char *spec, const char *list, int64_t total_steps) {
    const char *fn = "zg_sched_from_spec";
    zg_sched *parts[8];
    int n = 0;
    char one[256], inner[768];
    for (const char *p = list; p; n++) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        zg_sched *c = NULL;
        if (n == 8 || len == 0 || len >= sizeof one) {
            zg__fail(ZG_ERR_ARG, "chained takes 1 to 8 schedules, each SPEC|SPEC|... (got '%.*s')", (int)len, p);
        } else {
            memcpy(one, p, len);
            one[len] = '\0';
            c = from_spec(opt, one, total_steps);
        }
        if (!c) {
            snprintf(inner, sizeof inner, "%s", zg_last_error());
            for (int i = 0; i < n; i++) zg_sched_free(parts[i]);
            return zg__fail_null("%s: '%s': %s", fn, spec, inner);
        }
        parts[n] = c;
        p = e ? e + 1 : NULL;
    }
    zg_sched *s = zg_sched_chained(opt, parts, n);
    if (!s) {
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        return zg__fail_null("%s: '%s': %s", fn, spec, inner);
    }
    return s;
}
