/* A scheduler's state as JSON (zg_sched_state_json, zg_sched_load_state_json)
 * and in a safetensors file beside the optimizer's (zg_sched_save / _load):
 * parsed and checked whole against the scheduler before any of it is
 * applied. */
#include "sched_internal.h"

#include "../util/json.h"

#include <math.h>
#include <stdio.h>

/* ---- state as JSON ------------------------------------------------------------- */

static void sb_array(zg__strbuf *b, const char *key, const double *v, int n, size_t stride) {
    zg__sb_printf(b, ",\"%s\":[", key);
    for (int i = 0; i < n; i++) zg__sb_printf(b, i ? ",%.17g" : "%.17g", *(const double *)((const char *)v + i * stride));
    zg__sb_printf(b, "]");
}

static const char *jbool_text(bool v) { return v ? "true" : "false"; }

/* A number, or the string "inf" / "-inf" (JSON has no infinities). */
static void sb_extended(zg__strbuf *b, const char *key, double v) {
    if (isinf(v)) zg__sb_printf(b, ",\"%s\":\"%s\"", key, v > 0 ? "inf" : "-inf");
    else zg__sb_printf(b, ",\"%s\":%.17g", key, v);
}

static void dump_onecycle(zg__strbuf *b, const zg_sched *s) {
    zg__sb_printf(b,
                  ",\"total_steps\":%lld,\"pct_start\":%.17g,\"anneal_strategy\":\"%s\",\"div_factor\":%.17g,"
                  "\"final_div_factor\":%.17g,\"three_phase\":%s,\"cycle_momentum\":%s,\"use_beta1\":%s",
                  (long long)s->total_steps, s->pct_start, s->anneal_linear ? "linear" : "cos", s->div_factor,
                  s->final_div_factor, jbool_text(s->three_phase), jbool_text(s->cycle_momentum),
                  jbool_text(s->use_beta1));
    const zg__group *g = s->opt->groups;
    sb_array(b, "initial_lr", &g->sched.initial_lr, s->n_groups, sizeof *g);
    sb_array(b, "max_lr", &g->sched.max_lr, s->n_groups, sizeof *g);
    sb_array(b, "min_lr", &g->sched.min_lr, s->n_groups, sizeof *g);
    sb_array(b, "max_momentum", &g->sched.max_momentum, s->n_groups, sizeof *g);
    sb_array(b, "base_momentum", &g->sched.base_momentum, s->n_groups, sizeof *g);
}

static void dump_plateau(zg__strbuf *b, const zg_sched *s) {
    const zg__plateau *p = &s->plat;
    zg__sb_printf(b,
                  ",\"mode\":\"%s\",\"factor\":%.17g,\"patience\":%lld,\"threshold\":%.17g,\"threshold_mode\":\"%s\","
                  "\"cooldown\":%lld,\"eps\":%.17g,\"num_bad_epochs\":%lld,\"cooldown_counter\":%lld",
                  p->mode_max ? "max" : "min", s->factor, (long long)p->patience, p->threshold,
                  p->threshold_abs ? "abs" : "rel", (long long)p->cooldown, p->eps, (long long)p->num_bad_epochs,
                  (long long)p->cooldown_counter);
    sb_extended(b, "best", p->best);
    sb_array(b, "min_lrs", p->min_lrs, s->n_groups, sizeof(double));
    if (p->has_default_min_lr) zg__sb_printf(b, ",\"default_min_lr\":%.17g", p->default_min_lr);
}

static void dump(zg__strbuf *b, const zg_sched *s, bool top);

/* A composite's milestones (SequentialLR) and schedulers. */
static void dump_children(zg__strbuf *b, const zg_sched *s) {
    if (s->kind == K_SEQUENTIAL) {
        zg__sb_printf(b, ",\"milestones\":[");
        for (int i = 0; i + 1 < s->n_children; i++) zg__sb_printf(b, i ? ",%lld" : "%lld", (long long)s->milestones[i]);
        zg__sb_printf(b, "]");
    }
    zg__sb_printf(b, ",\"schedulers\":[");
    for (int i = 0; i < s->n_children; i++) {
        if (i) zg__sb_printf(b, ",");
        dump(b, s->children[i], false);
    }
    zg__sb_printf(b, "]");
}

/* Each kind's hyperparameters (and ReduceLROnPlateau's record). */
static void dump_kind(zg__strbuf *b, const zg_sched *s) {
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
    case K_ONECYCLE:
        dump_onecycle(b, s);
        break;
    case K_EXPONENTIAL:
        zg__sb_printf(b, ",\"gamma\":%.17g", s->gamma);
        break;
    case K_MULTISTEP:
        zg__sb_printf(b, ",\"gamma\":%.17g,\"milestones\":[", s->gamma);
        for (int i = 0; i < s->n_milestones; i++) zg__sb_printf(b, i ? ",%lld" : "%lld", (long long)s->milestones[i]);
        zg__sb_printf(b, "]");
        break;
    case K_CONSTANT:
        zg__sb_printf(b, ",\"factor\":%.17g,\"total_iters\":%lld", s->factor, (long long)s->total_iters);
        break;
    case K_POLYNOMIAL:
        zg__sb_printf(b, ",\"total_iters\":%lld,\"power\":%.17g", (long long)s->total_iters, s->power);
        break;
    case K_WARM_RESTARTS:
        zg__sb_printf(b, ",\"T_0\":%lld,\"T_mult\":%lld,\"eta_min\":%.17g,\"T_i\":%lld,\"T_cur\":%lld",
                      (long long)s->t_0, (long long)s->t_mult, s->eta_min, (long long)s->t_i, (long long)s->t_cur);
        break;
    case K_PLATEAU:
        dump_plateau(b, s);
        break;
    case K_SEQUENTIAL:
    case K_CHAINED:
        dump_children(b, s);
        break;
    case K_LAMBDA:
    case K_MULTIPLICATIVE:
        break;
    }
}

/* Whether the kind has PyTorch's base_lrs and _step_count. */
static bool has_base(zg__sched_kind k) { return k != K_SEQUENTIAL && k != K_CHAINED && k != K_PLATEAU; }

static void dump(zg__strbuf *b, const zg_sched *s, bool top) {
    zg__sb_printf(b, "{");
    if (top) zg__sb_printf(b, "\"format\":\"%s\",", SCHED_FORMAT);
    zg__sb_printf(b, "\"kind\":\"%s\",\"groups\":%d,\"last_epoch\":%lld", zg__sched_kind_names[s->kind], s->n_groups,
                  (long long)s->last_epoch);
    if (has_base(s->kind)) {
        zg__sb_printf(b, ",\"step_count\":%lld", (long long)s->step_count);
        sb_array(b, "base_lrs", s->base_lrs, s->n_groups, sizeof(double));
    }
    sb_array(b, "last_lrs", s->last_lrs, s->n_groups, sizeof(double));
    dump_kind(b, s);
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

static const zg__json *jget(const zg__json *o, const char *key) {
    if (!o || o->type != ZG_JSON_OBJECT) return NULL;
    for (int i = 0; i < o->n; i++)
        if (strcmp(o->keys[i], key) == 0) return &o->items[i];
    return NULL;
}

static bool jdouble(const zg__json *v, double *out) {
    if (!v || v->type != ZG_JSON_NUMBER || v->num_len >= 64) return false;
    char t[64];
    memcpy(t, v->num_text, v->num_len);
    t[v->num_len] = '\0';
    char *end;
    *out = strtod(t, &end);
    return !*end && isfinite(*out);
}

static bool jint(const zg__json *v, int64_t *out) {
    if (!v || v->type != ZG_JSON_NUMBER || !v->is_integer || !v->fits_int64) return false;
    *out = v->integer;
    return true;
}

static bool jbool(const zg__json *v, bool *out) {
    if (!v || v->type != ZG_JSON_BOOL) return false;
    *out = v->boolean;
    return true;
}

/* n doubles (finite, >= 0) at a stride. */
static bool jarray(const zg__json *v, int n, double *out, size_t stride) {
    if (!v || v->type != ZG_JSON_ARRAY || v->n != n) return false;
    for (int i = 0; i < n; i++) {
        double *d = (double *)((char *)out + i * stride);
        if (!jdouble(&v->items[i], d) || *d < 0) return false;
    }
    return true;
}

/* What a parser returns instead of a bad key when memory ran out. */
static const char OUT_OF_MEMORY[] = "(out of memory)";

/* n non-negative integer counters at most 2^53, in order (repeats
 * allowed); NULL when out of memory or invalid (*bad set). */
static int64_t *jcounts(const zg__json *v, int *n, bool *bad) {
    *bad = !v || v->type != ZG_JSON_ARRAY;
    if (*bad) return NULL;
    int64_t *out = zg__malloc(((size_t)v->n + 1) * sizeof *out);
    for (int i = 0; out && i < v->n && !*bad; i++)
        *bad = !jint(&v->items[i], &out[i]) || out[i] < 0 || out[i] > ZG__MAX_COUNT || (i > 0 && out[i] < out[i - 1]);
    *n = v->n;
    if (*bad || !out) {
        free(out);
        return NULL;
    }
    return out;
}

/* ReduceLROnPlateau's best: a number, or "inf" / "-inf". */
static bool jextended(const zg__json *v, double *out) {
    if (v && v->type == ZG_JSON_STRING && (!strcmp(v->str, "inf") || !strcmp(v->str, "-inf"))) {
        *out = v->str[0] == '-' ? -INFINITY : INFINITY;
        return true;
    }
    return jdouble(v, out);
}

static bool jchoice(const zg__json *v, const char *a, const char *b, bool *is_b) {
    if (!v || v->type != ZG_JSON_STRING || (strcmp(v->str, a) && strcmp(v->str, b))) return false;
    *is_b = strcmp(v->str, b) == 0;
    return true;
}

static const char *parse_onecycle(const zg__json *j, zg_sched *t, const zg_sched *like) {
    t->loaded_extra = zg__calloc((size_t)t->n_groups + 1, sizeof *t->loaded_extra);
    zg__sched_extra *e = t->loaded_extra;
    if (!e) return OUT_OF_MEMORY;
    if (!jint(jget(j, "total_steps"), &t->total_steps)) return "total_steps";
    if (!jdouble(jget(j, "pct_start"), &t->pct_start)) return "pct_start";
    if (!jchoice(jget(j, "anneal_strategy"), "cos", "linear", &t->anneal_linear)) return "anneal_strategy";
    if (!jdouble(jget(j, "div_factor"), &t->div_factor)) return "div_factor";
    if (!jdouble(jget(j, "final_div_factor"), &t->final_div_factor)) return "final_div_factor";
    if (!jbool(jget(j, "three_phase"), &t->three_phase)) return "three_phase";
    if (!jbool(jget(j, "cycle_momentum"), &t->cycle_momentum)) return "cycle_momentum";
    if (!jbool(jget(j, "use_beta1"), &t->use_beta1)) return "use_beta1";
    if (!jarray(jget(j, "initial_lr"), t->n_groups, &e->initial_lr, sizeof *e)) return "initial_lr";
    if (!jarray(jget(j, "max_lr"), t->n_groups, &e->max_lr, sizeof *e)) return "max_lr";
    if (!jarray(jget(j, "min_lr"), t->n_groups, &e->min_lr, sizeof *e)) return "min_lr";
    if (!jarray(jget(j, "max_momentum"), t->n_groups, &e->max_momentum, sizeof *e)) return "max_momentum";
    if (!jarray(jget(j, "base_momentum"), t->n_groups, &e->base_momentum, sizeof *e)) return "base_momentum";
    for (int g = 0; g < t->n_groups; g++) e[g].has_initial = true;
    /* Cycling must fit the optimizer (momentum or beta1). */
    zg_optim_kind k = zg_optim_get_kind(like->opt);
    bool beta1 = k == ZG_ADAM || k == ZG_ADAMW;
    if (t->cycle_momentum && (t->use_beta1 != beta1 || (!beta1 && k != ZG_SGD && k != ZG_RMSPROP))) return "use_beta1";
    return NULL;
}

static const char *parse_plateau(const zg__json *j, zg_sched *t) {
    zg__plateau *p = &t->plat;
    if (!(p->min_lrs = zg__calloc((size_t)t->n_groups + 1, sizeof *p->min_lrs))) return OUT_OF_MEMORY;
    const zg__json *d = jget(j, "default_min_lr");
    p->has_default_min_lr = d != NULL;
    if (!jchoice(jget(j, "mode"), "min", "max", &p->mode_max)) return "mode";
    if (!jdouble(jget(j, "factor"), &t->factor)) return "factor";
    if (!jint(jget(j, "patience"), &p->patience)) return "patience";
    if (!jdouble(jget(j, "threshold"), &p->threshold)) return "threshold";
    if (!jchoice(jget(j, "threshold_mode"), "rel", "abs", &p->threshold_abs)) return "threshold_mode";
    if (!jint(jget(j, "cooldown"), &p->cooldown)) return "cooldown";
    if (!jdouble(jget(j, "eps"), &p->eps)) return "eps";
    if (!jint(jget(j, "num_bad_epochs"), &p->num_bad_epochs)) return "num_bad_epochs";
    if (!jint(jget(j, "cooldown_counter"), &p->cooldown_counter)) return "cooldown_counter";
    if (!jextended(jget(j, "best"), &p->best)) return "best";
    if (!jarray(jget(j, "min_lrs"), t->n_groups, p->min_lrs, sizeof(double))) return "min_lrs";
    if (d && !jdouble(d, &p->default_min_lr)) return "default_min_lr";
    return NULL;
}

static zg_sched *parse_state(const zg__json *j, const zg_sched *like, const char *where, char *msg, size_t n);

/* A composite's milestones (SequentialLR) and schedulers, each parsed
 * against the live one's; NULL, or the bad key ("" when msg says why). */
static const char *parse_children(const zg__json *j, zg_sched *t, const zg_sched *like, const char *where, char *msg,
                                  size_t n) {
    const zg__json *ms = jget(j, "milestones"), *cs = jget(j, "schedulers");
    t->children = zg__calloc((size_t)like->n_children, sizeof *t->children);
    t->milestones = zg__calloc((size_t)like->n_children, sizeof *t->milestones);
    if (!t->children || !t->milestones) return OUT_OF_MEMORY;
    t->n_children = like->n_children;
    if (t->kind == K_SEQUENTIAL) {
        if (!ms || ms->type != ZG_JSON_ARRAY || ms->n != like->n_children - 1) return "milestones";
        for (int i = 0; i < ms->n; i++)
            if (!jint(&ms->items[i], &t->milestones[i]) || t->milestones[i] <= 0 ||
                (i > 0 && t->milestones[i] <= t->milestones[i - 1]))
                return "milestones";
    }
    if (!cs || cs->type != ZG_JSON_ARRAY || cs->n != like->n_children) {
        snprintf(msg, n, "%s: the state has %d schedulers, this %s has %d", where,
                 cs && cs->type == ZG_JSON_ARRAY ? cs->n : -1, zg__sched_kind_names[like->kind], like->n_children);
        return "";
    }
    for (int i = 0; i < like->n_children; i++) {
        char w[64];
        snprintf(w, sizeof w, "%s.schedulers[%d]", where, i);
        if (!(t->children[i] = parse_state(&cs->items[i], like->children[i], w, msg, n))) return "";
    }
    return NULL;
}

/* The kind's own keys; NULL, or the bad key ("" when msg says why). */
static const char *parse_kind(const zg__json *j, zg_sched *t, const zg_sched *like, const char *where, char *msg,
                              size_t n) {
    bool bad;
    switch (t->kind) {
    case K_STEP:
        if (!jint(jget(j, "step_size"), &t->step_size)) return "step_size";
        return jdouble(jget(j, "gamma"), &t->gamma) ? NULL : "gamma";
    case K_COSINE:
        if (!jint(jget(j, "T_max"), &t->t_max)) return "T_max";
        return jdouble(jget(j, "eta_min"), &t->eta_min) ? NULL : "eta_min";
    case K_LINEAR:
        if (!jdouble(jget(j, "start_factor"), &t->start_factor)) return "start_factor";
        if (!jdouble(jget(j, "end_factor"), &t->end_factor)) return "end_factor";
        return jint(jget(j, "total_iters"), &t->total_iters) ? NULL : "total_iters";
    case K_ONECYCLE:
        return parse_onecycle(j, t, like);
    case K_EXPONENTIAL:
        return jdouble(jget(j, "gamma"), &t->gamma) ? NULL : "gamma";
    case K_MULTISTEP:
        if (!jdouble(jget(j, "gamma"), &t->gamma)) return "gamma";
        t->milestones = jcounts(jget(j, "milestones"), &t->n_milestones, &bad);
        return bad ? "milestones" : t->milestones ? NULL : OUT_OF_MEMORY;
    case K_CONSTANT:
        if (!jdouble(jget(j, "factor"), &t->factor)) return "factor";
        return jint(jget(j, "total_iters"), &t->total_iters) ? NULL : "total_iters";
    case K_POLYNOMIAL:
        if (!jint(jget(j, "total_iters"), &t->total_iters)) return "total_iters";
        return jdouble(jget(j, "power"), &t->power) ? NULL : "power";
    case K_WARM_RESTARTS:
        if (!jint(jget(j, "T_0"), &t->t_0)) return "T_0";
        if (!jint(jget(j, "T_mult"), &t->t_mult)) return "T_mult";
        if (!jdouble(jget(j, "eta_min"), &t->eta_min)) return "eta_min";
        if (!jint(jget(j, "T_i"), &t->t_i)) return "T_i";
        return jint(jget(j, "T_cur"), &t->t_cur) ? NULL : "T_cur";
    case K_PLATEAU:
        return parse_plateau(j, t);
    case K_SEQUENTIAL:
    case K_CHAINED:
        return parse_children(j, t, like, where, msg, n);
    case K_LAMBDA:
    case K_MULTIPLICATIVE:
        return NULL;
    }
    return NULL;
}

/* The counters and lrs every kind has. */
static const char *parse_common(const zg__json *j, zg_sched *t) {
    /* The counters stay below 2^53 (zg_sched_step counts on from them). */
    if (!jint(jget(j, "last_epoch"), &t->last_epoch) || t->last_epoch < -1 || t->last_epoch > ZG__MAX_COUNT)
        return "last_epoch";
    if (!jarray(jget(j, "last_lrs"), t->n_groups, t->last_lrs, sizeof(double))) return "last_lrs";
    if (!has_base(t->kind)) return NULL;
    if (!jint(jget(j, "step_count"), &t->step_count) || t->step_count < 0 || t->step_count > ZG__MAX_COUNT)
        return "step_count";
    return jarray(jget(j, "base_lrs"), t->n_groups, t->base_lrs, sizeof(double)) ? NULL : "base_lrs";
}

/* The kind and the group count must be like's. */
static bool parse_header(const zg__json *j, const zg_sched *like, const char *where, char *msg, size_t n) {
    const char *dup = NULL;
    if (j->type == ZG_JSON_OBJECT && zg__json_duplicate_key(j, &dup) != 0) {
        snprintf(msg, n, "out of memory");
        return false;
    }
    if (dup) {
        snprintf(msg, n, "%s: key '%s' appears twice", where, dup);
        return false;
    }
    const zg__json *kv = jget(j, "kind");
    if (!kv || kv->type != ZG_JSON_STRING) {
        snprintf(msg, n, "%s: 'kind' is missing", where);
        return false;
    }
    if (strcmp(kv->str, zg__sched_kind_names[like->kind]) != 0) {
        snprintf(msg, n, "%s: the state is of a %s, this scheduler is a %s", where, kv->str,
                 zg__sched_kind_names[like->kind]);
        return false;
    }
    int64_t groups;
    if (!jint(jget(j, "groups"), &groups) || groups != like->n_groups) {
        snprintf(msg, n, "%s: the state is for %lld parameter groups, this scheduler has %d", where,
                 jint(jget(j, "groups"), &groups) ? (long long)groups : -1LL, like->n_groups);
        return false;
    }
    return true;
}

/* Parses j against the live scheduler `like` (same kind, groups and, for a
 * composite, children) into a detached scheduler. NULL with msg on a
 * problem. */
static zg_sched *parse_state(const zg__json *j, const zg_sched *like, const char *where, char *msg, size_t n) {
    if (!parse_header(j, like, where, msg, n)) return NULL;
    zg_sched *t = zg__sched_alloc(like->kind, like->opt, like->n_groups);
    if (!t) {
        snprintf(msg, n, "out of memory");
        return NULL;
    }
    const char *badkey = parse_common(j, t);
    if (!badkey) badkey = parse_kind(j, t, like, where, msg, n);
    if (badkey == OUT_OF_MEMORY) snprintf(msg, n, "out of memory");
    else if (badkey && *badkey) snprintf(msg, n, "%s: '%s' is missing or invalid", where, badkey);
    if (badkey) {
        zg_sched_free(t);
        return NULL;
    }
    char hm[256];
    bool ok = zg__sched_check_hyper(t, hm, sizeof hm);
    for (int g = 0; ok && t->kind == K_ONECYCLE && g < t->n_groups; g++)
        ok = zg__sched_check_extra(t, &t->loaded_extra[g], g, hm, sizeof hm);
    if (!ok) {
        snprintf(msg, n, "%s: %s", where, hm);
        zg_sched_free(t);
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
    s->t_0 = t->t_0, s->t_mult = t->t_mult, s->t_i = t->t_i, s->t_cur = t->t_cur;
    s->start_factor = t->start_factor;
    s->end_factor = t->end_factor;
    s->factor = t->factor;
    s->power = t->power;
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
        for (int g = 0; g < s->n_groups; g++) *zg__sched_extra_of(s, g) = t->loaded_extra[g];
    if (s->kind == K_MULTISTEP) {
        int64_t *m = s->milestones;
        s->milestones = t->milestones, t->milestones = m;
        s->n_milestones = t->n_milestones;
    }
    if (s->kind == K_PLATEAU) {
        zg__plateau p = s->plat;
        s->plat = t->plat, t->plat = p;
    }
    if (s->kind == K_SEQUENTIAL) memcpy(s->milestones, t->milestones, (size_t)s->n_children * sizeof *s->milestones);
    for (int i = 0; i < s->n_children; i++) commit(s->children[i], t->children[i]);
}

/* The JSON values a state of s may hold: the keys and numbers of each
 * scheduler (fewer than 40), its per-group arrays (8 at most), its
 * milestones (with room for a state that has more), and its children's.
 * Parsing builds no larger tree than that. */
static size_t state_nodes(const zg_sched *s) {
    size_t n = 40 + 8 * ((size_t)s->n_groups + 1) + (size_t)s->n_children + 2 * (size_t)s->n_milestones + 64;
    for (int i = 0; i < s->n_children; i++) n += state_nodes(s->children[i]);
    return n;
}

int zg_sched_load_state_json(zg_sched *s, const char *json) {
    const char *fn = "zg_sched_load_state_json";
    if (!s || !json) return zg__fail(ZG_ERR_ARG, "%s: NULL argument", fn);
    zg__json *root;
    char err[256];
    if (zg__json_parse(json, strlen(json), state_nodes(s), &root, err, sizeof err) != 0)
        return zg__fail(ZG_ERR_FORMAT, "%s: not valid JSON: %s", fn, err);
    const zg__json *f = jget(root, "format");
    if (!f || f->type != ZG_JSON_STRING || strcmp(f->str, SCHED_FORMAT) != 0) {
        zg__json_free(root);
        return zg__fail(ZG_ERR_FORMAT, "%s: not a scheduler state ('format' is not '%s')", fn, SCHED_FORMAT);
    }
    char msg[512];
    zg_sched *t = parse_state(root, s, "state", msg, sizeof msg);
    zg__json_free(root);
    if (!t) return zg__fail(ZG_ERR_FORMAT, "%s: %s", fn, msg);
    commit(s, t);
    zg_sched_free(t);
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
