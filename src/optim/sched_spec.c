/* zg_sched_from_spec: the scheduler a `--schedule` spec names
 * ("cosine:1000,eta_min=0", "onecycle:0.1,...", "warmup-cosine:..."). */
#include "sched_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>

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
