/* An optimizer's state_dict as a safetensors file (zg_optim_save,
 * zg_optim_load). Loading checks the whole file against the optimizer
 * (format, kind, groups, every entry) before it changes anything. */
#include "optim_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>

/* File layout. Tensors: "state.<i>.step" (int64, 0-dim) and
 * "state.<i>.<buffer>" (float32, the parameter's shape) for every parameter
 * i that has state. Metadata: "format", "kind", "num_groups", and per group
 * g "param_groups.<g>.params" (comma-separated global indices) and
 * "param_groups.<g>.<hyperparameter>" for each hyperparameter of the kind
 * (printed with 17 significant digits, so values round-trip exactly), and
 * "param_groups.<g>.initial_lr" once a scheduler has set it (PyTorch's
 * param_group key; a file without it loads, leaving the group's as it
 * is). A parameter a group lists twice has its state under its first
 * listing's index. */
#define OPTIM_FORMAT "zgrad.optim.v1"

static char *str_dup(const char *s) {
    size_t n = strlen(s) + 1;
    char *c = zg__malloc(n);
    if (c) memcpy(c, s, n);
    return c;
}

static char *str_printf(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static char *str_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = zg__malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* "first,first+1,...,first+n-1" */
static char *index_list(int first, int n) {
    size_t cap = (size_t)n * 12 + 1;
    char *s = zg__malloc(cap);
    if (!s) return NULL;
    size_t used = 0;
    s[0] = '\0';
    for (int i = 0; i < n; i++) used += (size_t)snprintf(s + used, cap - used, i ? ",%d" : "%d", first + i);
    return s;
}

/* The state_dict's tensors: each active parameter's step (made here,
 * owned[t]) and its buffers (borrowed), with their names. */
static int save_tensors(const zg_optim *opt, zg_tensor **tensors, char **names, bool *owned, int *count) {
    int t = 0;
    for (int i = 0; i < opt->n_params; i++) {
        const zg__param_state *st = &opt->state[i];
        if (!st->active) continue;
        zg_tensor *step = zg_tensor_new(ZG_INT64, NULL, 0);
        if (!step) return ZG_ERR_NOMEM;
        zg__i64(step)[0] = st->step;
        tensors[t] = step;
        owned[t] = true;
        if (!(names[t++] = str_printf("state.%d.step", i))) return ZG_ERR_NOMEM;
        for (int b = 0; b < ZG__BUF_COUNT; b++) {
            if (!st->buf[b]) continue;
            tensors[t] = st->buf[b];
            if (!(names[t++] = str_printf("state.%d.%s", i, zg__buf_names[b]))) return ZG_ERR_NOMEM;
        }
    }
    *count = t;
    return ZG_OK;
}

/* The metadata: format, kind, group count, each group's parameters and
 * hyperparameters. */
static int save_meta(const zg_optim *opt, const zg__optim_kind_info *ki, char **keys, char **vals, int *count) {
    int m = 0;
    keys[m] = str_dup("format");
    vals[m++] = str_dup(OPTIM_FORMAT);
    keys[m] = str_dup("kind");
    vals[m++] = str_dup(ki->key);
    keys[m] = str_dup("num_groups");
    vals[m++] = str_printf("%d", opt->n_groups);
    for (int g = 0; g < opt->n_groups; g++) {
        keys[m] = str_printf("param_groups.%d.params", g);
        vals[m++] = index_list(opt->groups[g].first, opt->groups[g].n);
        for (int k = 0; k < ZG_HP_COUNT; k++) {
            if (!zg__hp_valid_for(ki, k)) continue;
            keys[m] = str_printf("param_groups.%d.%s", g, zg__hp_names[k]);
            vals[m++] = str_printf("%.17g", opt->groups[g].hp[k]);
        }
        if (opt->groups[g].sched.has_initial) {
            keys[m] = str_printf("param_groups.%d.initial_lr", g);
            vals[m++] = str_printf("%.17g", opt->groups[g].sched.initial_lr);
        }
    }
    *count = m;
    for (int i = 0; i < m; i++)
        if (!keys[i] || !vals[i]) return ZG_ERR_NOMEM;
    return ZG_OK;
}

int zg_optim_save(const zg_optim *opt, const char *path) {
    const char *fn = "zg_optim_save";
    if (!opt || !path) return zg__fail(ZG_ERR_ARG, "%s: NULL argument", fn);
    const zg__optim_kind_info *ki = zg__optim_kind_of(opt->kind);
    int n_t = 0, n_hp = 0;
    for (int i = 0; i < opt->n_params; i++) {
        if (!opt->state[i].active) continue;
        n_t++;
        for (int b = 0; b < ZG__BUF_COUNT; b++) n_t += opt->state[i].buf[b] != NULL;
    }
    for (int k = 0; k < ZG_HP_COUNT; k++) n_hp += zg__hp_valid_for(ki, k);
    const int n_m = 3 + opt->n_groups * (2 + n_hp);
    zg_tensor **tensors = zg__calloc((size_t)n_t + 1, sizeof *tensors);
    char **names = zg__calloc((size_t)n_t + 1, sizeof *names);
    bool *owned = zg__calloc((size_t)n_t + 1, sizeof *owned);
    char **keys = zg__calloc((size_t)n_m, sizeof *keys);
    char **vals = zg__calloc((size_t)n_m, sizeof *vals);
    int t = 0, m = 0;
    int rc = tensors && names && owned && keys && vals ? ZG_OK : ZG_ERR_NOMEM;
    if (!rc) rc = save_tensors(opt, tensors, names, owned, &t);
    if (!rc) rc = save_meta(opt, ki, keys, vals, &m);
    if (rc) {
        rc = zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    } else if ((rc = zg_safetensors_write(path, tensors, (const char *const *)names, t, (const char *const *)keys,
                                          (const char *const *)vals, m))) {
        char inner[768];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        rc = zg__fail(rc, "%s: %s", fn, inner);
    }
    for (int i = 0; tensors && names && owned && i <= n_t; i++) {
        if (owned[i]) zg_tensor_free(tensors[i]);
        free(names[i]);
    }
    for (int i = 0; keys && vals && i < n_m; i++) {
        free(keys[i]);
        free(vals[i]);
    }
    free(tensors);
    free(names);
    free(owned);
    free(keys);
    free(vals);
    return rc;
}

/* Parses a whole string as a non-negative int in its one spelling: digits
 * only, no leading zero ("00" and "0" would both be 0: a file holding
 * both would load whichever comes last). */
static bool parse_index(const char *s, size_t len, int *out) {
    if (len == 0 || len > 9 || (len > 1 && s[0] == '0')) return false;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i])) return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static bool parse_double(const char *s, double *out) {
    if (!s || !*s || isspace((unsigned char)*s)) return false;
    char *end;
    double v = strtod(s, &end);
    if (*end != '\0') return false;
    *out = v;
    return true;
}

/* What load found in the file for one parameter (tensors owned by the
 * file), before it changes the optimizer. */
typedef struct {
    const zg_tensor *step;
    const zg_tensor *buf[ZG__BUF_COUNT];
} loaded_state;

/* What zg_optim_load reads before it changes anything: the file, and per
 * parameter (pos: the optimizer's index of the file's parameter id) its
 * state and per group its hyperparameters. */
typedef struct {
    const char *path;
    zg_safetensors *st;
    const zg__optim_kind_info *ki;
    int *pos;
    double *hps;
    double *initial; /* per group, NAN when the file has none */
    loaded_state *ls;
} load_ctx;

static int load_fail(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static int load_fail(int code, const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return zg__fail(code, "zg_optim_load: %s", msg);
}

/* The format, the kind and the number of groups must be this optimizer's. */
static int load_header(const zg_optim *opt, const load_ctx *c) {
    const char *path = c->path, *format = zg_safetensors_metadata(c->st, "format");
    if (!format || strcmp(format, OPTIM_FORMAT) != 0)
        return load_fail(ZG_ERR_FORMAT, "'%s' is not an optimizer state file (metadata 'format' is %s%s%s, expected '%s')",
                         path, format ? "'" : "", format ? format : "missing", format ? "'" : "", OPTIM_FORMAT);
    const char *kind = zg_safetensors_metadata(c->st, "kind");
    if (!kind || strcmp(kind, c->ki->key) != 0)
        return load_fail(ZG_ERR_FORMAT, "'%s' holds the state of a '%s' optimizer, this one is '%s'", path,
                         kind ? kind : "(missing)", c->ki->key);
    const char *ng = zg_safetensors_metadata(c->st, "num_groups");
    int n_groups;
    if (!ng || !parse_index(ng, strlen(ng), &n_groups))
        return load_fail(ZG_ERR_FORMAT, "'%s': metadata 'num_groups' is missing or invalid", path);
    if (n_groups != opt->n_groups)
        return load_fail(ZG_ERR_FORMAT,
                         "'%s' has %d parameter groups, the optimizer has %d (loaded state dict has a different "
                         "number of parameter groups)",
                         path, n_groups, opt->n_groups);
    return ZG_OK;
}

/* Group g's parameter list ("0,1,2"): each id's place in the optimizer. */
static int load_group_params(const zg_optim *opt, const load_ctx *c, int g) {
    const zg__group *grp = &opt->groups[g];
    char key[96];
    snprintf(key, sizeof key, "param_groups.%d.params", g);
    const char *list = zg_safetensors_metadata(c->st, key), *path = c->path;
    if (!list) return load_fail(ZG_ERR_FORMAT, "'%s': metadata '%s' is missing", path, key);
    int count = 0, n = opt->n_params;
    for (const char *s = list; *s;) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        int id;
        if (!parse_index(s, len, &id) || (e && !e[1]))
            return load_fail(ZG_ERR_FORMAT, "'%s': metadata '%s' is not a list of indices", path, key);
        if (id >= n || c->pos[id] >= 0)
            return load_fail(ZG_ERR_FORMAT,
                             "'%s': metadata '%s': parameter index %d is out of range or repeated (%d parameters)",
                             path, key, id, n);
        if (count < grp->n) c->pos[id] = grp->first + count;
        count++;
        s = e ? e + 1 : s + len;
    }
    if (count != grp->n)
        return load_fail(ZG_ERR_FORMAT,
                         "'%s': group %d has %d parameters in the file, %d in the optimizer (loaded state dict "
                         "contains a parameter group that doesn't match the size of optimizer's group)",
                         path, g, count, grp->n);
    return ZG_OK;
}

/* Group g's hyperparameters, each present, a number, and valid. */
static int load_group_hparams(const zg_optim *opt, const load_ctx *c, int g) {
    double *hp = c->hps + (size_t)g * ZG_HP_COUNT;
    memcpy(hp, opt->groups[g].hp, ZG_HP_COUNT * sizeof *hp);
    char key[96], msg[256];
    for (int k = 0; k < ZG_HP_COUNT; k++) {
        if (!zg__hp_valid_for(c->ki, k)) continue;
        snprintf(key, sizeof key, "param_groups.%d.%s", g, zg__hp_names[k]);
        if (!parse_double(zg_safetensors_metadata(c->st, key), &hp[k]))
            return load_fail(ZG_ERR_FORMAT, "'%s': metadata '%s' is missing or not a number", c->path, key);
    }
    if (!zg__optim_check_hparams(c->ki, hp, msg, sizeof msg))
        return load_fail(ZG_ERR_FORMAT, "'%s': group %d: %s", c->path, g, msg);
    snprintf(key, sizeof key, "param_groups.%d.initial_lr", g);
    const char *v = zg_safetensors_metadata(c->st, key);
    c->initial[g] = NAN;
    if (v && (!parse_double(v, &c->initial[g]) || !(c->initial[g] >= 0 && isfinite(c->initial[g]))))
        return load_fail(ZG_ERR_FORMAT, "'%s': metadata '%s' is not a finite number >= 0", c->path, key);
    return ZG_OK;
}

/* One tensor entry "state.<id>.<step|buffer>": a known name, of a
 * parameter in a group, of the right type and shape. */
static int load_entry(const zg_optim *opt, const load_ctx *c, int t) {
    const char *name = zg_safetensors_name(c->st, t), *path = c->path;
    const zg_tensor *x = zg_safetensors_get(c->st, name);
    const char *s = name + 6;
    const char *dot = strncmp(name, "state.", 6) == 0 ? strchr(s, '.') : NULL;
    int id;
    if (!dot || !parse_index(s, (size_t)(dot - s), &id))
        return load_fail(ZG_ERR_FORMAT,
                         "'%s': unexpected entry '%s' (expected state.<index>.<name>, the index without leading zeros)",
                         path, name);
    if (id >= opt->n_params || c->pos[id] < 0)
        return load_fail(ZG_ERR_FORMAT, "'%s': entry '%s' names parameter %d, which is in no group", path, name, id);
    const char *what = dot + 1;
    const int at = c->pos[id];
    if (opt->canon[at] != at)
        return load_fail(ZG_ERR_FORMAT,
                         "'%s': entry '%s' is state of parameter %d, which its group lists again there; a parameter "
                         "listed twice keeps its state at its first listing (%d)",
                         path, name, at, opt->canon[at]);
    loaded_state *l = &c->ls[at];
    if (strcmp(what, "step") == 0) {
        /* The count goes on from here: bounded, so that it cannot overflow. */
        if (x->dtype != ZG_INT64 || x->numel != 1 || zg__i64(x)[0] < 0 || zg__i64(x)[0] > ZG__MAX_COUNT)
            return load_fail(ZG_ERR_FORMAT, "'%s': entry '%s' must be one non-negative int64 step count, at most 2^53",
                             path, name);
        if (l->step) return load_fail(ZG_ERR_FORMAT, "'%s': entry '%s' appears twice", path, name);
        l->step = x;
        return ZG_OK;
    }
    int b = zg__optim_buf_id(what);
    if (b < 0 || !(c->ki->buf_mask & BUF_BIT(b)))
        return load_fail(ZG_ERR_FORMAT, "'%s': unexpected entry '%s' (%s has no state '%s')", path, name, c->ki->name,
                         what);
    if (l->buf[b]) return load_fail(ZG_ERR_FORMAT, "'%s': entry '%s' appears twice", path, name);
    const zg_tensor *p = opt->params[c->pos[id]];
    if (x->dtype != ZG_FLOAT32 || !zg__same_shape(x, p)) {
        char a[ZG_SHAPE_BUF], d[ZG_SHAPE_BUF];
        return load_fail(ZG_ERR_SHAPE, "'%s': entry '%s' is %s %s, parameter %d is float32 %s", path, name,
                         x->dtype == ZG_FLOAT32 ? "float32" : "int64", zg__shape_str(x, a, sizeof a), c->pos[id],
                         zg__shape_str(p, d, sizeof d));
    }
    l->buf[b] = x;
    return ZG_OK;
}

/* Whether name is a hyperparameter of the kind. */
static bool hp_key(const zg__optim_kind_info *ki, const char *name) {
    for (int k = 0; k < ZG_HP_COUNT; k++)
        if (zg__hp_valid_for(ki, k) && strcmp(name, zg__hp_names[k]) == 0) return true;
    return false;
}

/* Every metadata key is one that load reads: a misspelt or non-canonical
 * key ("param_groups.00.lr" beside "param_groups.0.lr") would otherwise
 * be ignored without a word. */
static int load_check_keys(const zg_optim *opt, const load_ctx *c) {
    for (int i = 0; i < zg__safetensors_meta_count(c->st); i++) {
        const char *k = zg__safetensors_meta_key(c->st, i);
        if (!strcmp(k, "format") || !strcmp(k, "kind") || !strcmp(k, "num_groups")) continue;
        const char *g = strncmp(k, "param_groups.", 13) == 0 ? k + 13 : NULL;
        const char *dot = g ? strchr(g, '.') : NULL;
        int id;
        if (dot && parse_index(g, (size_t)(dot - g), &id) && id < opt->n_groups &&
            (!strcmp(dot + 1, "params") || !strcmp(dot + 1, "initial_lr") || hp_key(c->ki, dot + 1)))
            continue;
        return load_fail(ZG_ERR_FORMAT,
                         "'%s': unexpected metadata '%s' (expected format, kind, num_groups and "
                         "param_groups.<group>.<params, initial_lr or a hyperparameter of %s>, groups 0..%d without "
                         "leading zeros)",
                         c->path, k, c->ki->name, opt->n_groups - 1);
    }
    return ZG_OK;
}

/* A parameter with any state has its step and every required buffer. */
static int load_check_complete(const zg_optim *opt, const load_ctx *c) {
    for (int i = 0; i < opt->n_params; i++) {
        const loaded_state *l = &c->ls[i];
        bool any = l->step != NULL;
        for (int b = 0; b < ZG__BUF_COUNT; b++) any |= l->buf[b] != NULL;
        if (!any) continue;
        int id = 0;
        while (c->pos[id] != i) id++;
        if (!l->step) return load_fail(ZG_ERR_FORMAT, "'%s': entry 'state.%d.step' is missing", c->path, id);
        for (int b = 0; b < ZG__BUF_COUNT; b++)
            if ((c->ki->buf_required & BUF_BIT(b)) && !l->buf[b])
                return load_fail(ZG_ERR_FORMAT, "'%s': entry 'state.%d.%s' is missing", c->path, id, zg__buf_names[b]);
    }
    return ZG_OK;
}

/* Everything checked: builds the new state, then swaps it in with the
 * groups' hyperparameters. */
static int load_apply(zg_optim *opt, const load_ctx *c) {
    const int n = opt->n_params;
    zg__param_state *ns = zg__calloc((size_t)n + 1, sizeof *ns);
    if (!ns) return load_fail(ZG_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        if (!c->ls[i].step) continue;
        ns[i].active = true;
        ns[i].step = zg__i64(c->ls[i].step)[0];
        for (int b = 0; b < ZG__BUF_COUNT; b++) {
            if (!c->ls[i].buf[b]) continue;
            if (!(ns[i].buf[b] = zg_tensor_clone(c->ls[i].buf[b]))) {
                for (int j = 0; j <= i; j++) zg__optim_state_clear(&ns[j]);
                free(ns);
                return load_fail(ZG_ERR_NOMEM, "out of memory");
            }
        }
    }
    for (int i = 0; i < n; i++) zg__optim_state_clear(&opt->state[i]);
    free(opt->state);
    opt->state = ns;
    opt->cap_params = n; /* the state array's size; reserve() regrows both arrays */
    for (int g = 0; g < opt->n_groups; g++) {
        memcpy(opt->groups[g].hp, c->hps + (size_t)g * ZG_HP_COUNT, sizeof opt->groups[g].hp);
        if (isnan(c->initial[g])) continue;
        opt->groups[g].sched.has_initial = true;
        opt->groups[g].sched.initial_lr = c->initial[g];
    }
    return ZG_OK;
}

int zg_optim_load(zg_optim *opt, const char *path) {
    if (!opt || !path) return zg__fail(ZG_ERR_ARG, "zg_optim_load: NULL argument");
    load_ctx c = {.path = path, .ki = zg__optim_kind_of(opt->kind)};
    int rc = zg__safetensors_open(path, &c.st);
    if (rc) {
        char inner[768];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        return zg__fail(rc, "zg_optim_load: %s", inner);
    }
    const int n = opt->n_params;
    rc = load_header(opt, &c);
    if (!rc) rc = load_check_keys(opt, &c);
    if (!rc) {
        c.pos = zg__malloc(((size_t)n + 1) * sizeof *c.pos);
        c.hps = zg__malloc(((size_t)opt->n_groups + 1) * ZG_HP_COUNT * sizeof *c.hps);
        c.initial = zg__malloc(((size_t)opt->n_groups + 1) * sizeof *c.initial);
        c.ls = zg__calloc((size_t)n + 1, sizeof *c.ls);
        if (!c.pos || !c.hps || !c.initial || !c.ls) rc = load_fail(ZG_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; !rc && i < n; i++) c.pos[i] = -1;
    for (int g = 0; !rc && g < opt->n_groups; g++) {
        rc = load_group_params(opt, &c, g);
        if (!rc) rc = load_group_hparams(opt, &c, g);
    }
    for (int t = 0; !rc && t < zg_safetensors_count(c.st); t++) rc = load_entry(opt, &c, t);
    if (!rc) rc = load_check_complete(opt, &c);
    if (!rc) rc = load_apply(opt, &c);
    zg_safetensors_free(c.st);
    free(c.pos);
    free(c.hps);
    free(c.initial);
    free(c.ls);
    return rc;
}
