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

static void dump(zg__strbuf *b, const zg_sched *s, bool top) {
    zg__sb_printf(b, "{");
    if (top) zg__sb_printf(b, "\"format\":\"%s\",", SCHED_FORMAT);
    zg__sb_printf(b, "\"kind\":\"%s\",\"groups\":%d,\"last_epoch\":%lld", zg__sched_kind_names[s->kind], s->n_groups,
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
        const zg__sched_extra *e = s->rec ? s->rec->g : s->loaded_extra;
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

static void freeparsed(zg_sched *t) { zg_sched_free(t); }

/* Parses j against the live scheduler `like` (same kind, groups and, for a
 * sequential, children). NULL with msg on a problem. */
static zg_sched *parse_state(const zg__json *j, const zg_sched *like, const char *where, char *msg, size_t n) {
    const char *dup = NULL;
    if (j->type == ZG_JSON_OBJECT && zg__json_duplicate_key(j, &dup) != 0) {
        snprintf(msg, n, "out of memory");
        return NULL;
    }
    if (dup) {
        snprintf(msg, n, "%s: key '%s' appears twice", where, dup);
        return NULL;
    }
    const zg__json *kv = jget(j, "kind");
    if (!kv || kv->type != ZG_JSON_STRING) {
        snprintf(msg, n, "%s: 'kind' is missing", where);
        return NULL;
    }
    if (strcmp(kv->str, zg__sched_kind_names[like->kind]) != 0) {
        snprintf(msg, n, "%s: the state is of a %s, this scheduler is a %s", where, kv->str, zg__sched_kind_names[like->kind]);
        return NULL;
    }
    int64_t groups;
    if (!jint(jget(j, "groups"), &groups) || groups != like->n_groups) {
        snprintf(msg, n, "%s: the state is for %lld parameter groups, this scheduler has %d", where,
                 jint(jget(j, "groups"), &groups) ? (long long)groups : -1LL, like->n_groups);
        return NULL;
    }
    zg_sched *t = zg__sched_alloc(like->kind, like->opt, like->n_groups);
    if (!t) {
        snprintf(msg, n, "out of memory");
        return NULL;
    }
    const char *badkey = NULL;
    /* The counters stay below 2^53 (zg_sched_step counts on from them). */
    if (!jint(jget(j, "last_epoch"), &t->last_epoch) || t->last_epoch < -1 || t->last_epoch > ZG__MAX_COUNT)
        badkey = "last_epoch";
    else if (!jarray(jget(j, "last_lrs"), t->n_groups, t->last_lrs, sizeof(double))) badkey = "last_lrs";
    else if (t->kind != K_SEQUENTIAL && (!jint(jget(j, "step_count"), &t->step_count) || t->step_count < 0 ||
                                         t->step_count > ZG__MAX_COUNT))
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
            const zg__json *an = jget(j, "anneal_strategy");
            t->loaded_extra = zg__calloc((size_t)t->n_groups + 1, sizeof *t->loaded_extra);
            zg__sched_extra *e = t->loaded_extra;
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
            const zg__json *ms = jget(j, "milestones"), *cs = jget(j, "schedulers");
            t->n_children = like->n_children;
            t->children = zg__calloc((size_t)like->n_children, sizeof *t->children);
            t->milestones = zg__calloc((size_t)like->n_children, sizeof *t->milestones);
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
    bool ok = zg__sched_check_hyper(t, hm, sizeof hm);
    for (int g = 0; ok && t->kind == K_ONECYCLE && g < t->n_groups; g++) ok = zg__sched_check_extra(t, &t->loaded_extra[g], g, hm, sizeof hm);
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

/* The JSON values a state of s may hold: the keys and numbers of each
 * scheduler (fewer than 32), its per-group arrays (7 at most), and its
 * children's. Parsing builds no larger tree than that. */
static size_t state_nodes(const zg_sched *s) {
    size_t n = 32 + 7 * ((size_t)s->n_groups + 1) + (size_t)s->n_children;
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
