/* What the sanitizer says: reports (counted, kept, printed or handed to
 * the user's function) and, in trace mode, one line per step of the loop's
 * events with the pattern they make. */
#include "check_internal.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- names -------------------------------------------------------------- */

void zg__san_names_add(zg__san_names *l, const zg_tensor *t, int optimizers_live) {
    const char *nm = zg_tensor_name(t);
    if (!nm || !nm[0]) nm = "<unnamed>";
    char q[32] = "";
    zg__san_entry *e = optimizers_live > 1 ? zg__san_find(t) : NULL;
    if (e && e->owner > 0) snprintf(q, sizeof q, " [optimizer %d]", e->owner);
    size_t need = strlen(nm) + strlen(q) + (l->n ? 2 : 0);
    if (l->len + need + 1 > ZG__SAN_NAMES_MAX) {
        l->dropped++;
        return;
    }
    l->len += (size_t)snprintf(l->buf + l->len, ZG__SAN_NAMES_MAX - l->len, "%s%s%s", l->n ? ", " : "", nm, q);
    l->n++;
}

/* ---- reports ------------------------------------------------------------ */

/* A loop with a bug repeats it every step: the first reports of a kind are
 * printed, the rest only counted (the report function gets them all). */
#define PRINTED_PER_KIND 10

static int64_t total, kinds[ZG_SAN_KIND_COUNT];
static char last[1280];
static zg_sanitize_report_fn report_fn;
static void *report_user;

int zg__san_report(int mode, zg_sanitize_kind kind, int64_t step, const char *what, const zg__san_names *names,
                   const char *call, const char *fix) {
    char more[48] = "";
    if (names->dropped) snprintf(more, sizeof more, ", and %d more", names->dropped);
    snprintf(last, sizeof last, "zgrad sanitizer: %s at step %lld: %s (%s%s) at %s; fix: %s",
             zg_sanitize_kind_name(kind), (long long)step, what, names->n ? names->buf : "no parameters", more, call,
             fix);
    total++;
    kinds[kind]++;
    if (report_fn) {
        report_fn(kind, last, report_user);
    } else if (kinds[kind] <= PRINTED_PER_KIND) {
        fprintf(stderr, "%s\n", last);
        if (kinds[kind] == PRINTED_PER_KIND)
            fprintf(stderr, "zgrad sanitizer: further %s reports are counted, not printed\n",
                    zg_sanitize_kind_name(kind));
    }
    return mode == ZG_SANITIZE_ERROR ? zg__fail(ZG_ERR_STATE, "%s", last) : 0;
}

void zg__san_reports_reset(void) {
    total = 0;
    memset(kinds, 0, sizeof kinds);
    last[0] = 0;
}

int64_t zg_sanitize_report_count(void) { return total; }

int64_t zg_sanitize_kind_count(zg_sanitize_kind kind) {
    return kind >= 0 && kind < ZG_SAN_KIND_COUNT ? kinds[kind] : 0;
}

const char *zg_sanitize_last_report(void) { return last; }

void zg_sanitize_set_report_fn(zg_sanitize_report_fn fn, void *user) {
    report_fn = fn;
    report_user = user;
}

const char *zg_sanitize_kind_name(zg_sanitize_kind kind) {
    static const char *const names[ZG_SAN_KIND_COUNT] = {
        "stale",       "erased",   "no-grad",     "unstepped",     "scaled-clip",  "sched-order", "scaled-read",
        "scaled-step", "unscaled", "frozen-step", "consumed-clip", "sched-repeat", "window",
    };
    return kind >= 0 && kind < ZG_SAN_KIND_COUNT ? names[kind] : "unknown";
}

/* ---- trace -------------------------------------------------------------- */

#define TRACE_STEPS 8

static char line[400];
static size_t line_len;
static int lines, last_opt, line_opt;
/* The line's events, one letter each, to name the pattern: f forward,
 * b backward, z zero_grad, s step (k: skipped by the scaler). */
static char order[64];
static int n_order;

static int count(char c) {
    int n = 0;
    for (int i = 0; i < n_order; i++) n += order[i] == c;
    return n;
}

static int first(char c) {
    for (int i = 0; i < n_order; i++)
        if (order[i] == c) return i;
    return -1;
}

static int last_of(char c) {
    for (int i = n_order - 1; i >= 0; i--)
        if (order[i] == c) return i;
    return -1;
}

/* The zero_grad guides' names for where zero_grad sits. A line ends at its
 * step, so zero_grad right after a step (pattern C) opens the next line
 * just as zero_grad before the forward (pattern B) does: the two are the
 * same sequence of calls. */
static const char *pattern(char *buf, size_t n) {
    int f = count('f'), b = count('b'), z = first('z'), fi = first('f'), bi = first('b');
    if (b == 0) return "no backward";
    if (b > 1 && last_of('z') > bi && last_of('z') < last_of('b'))
        return "zero_grad between backwards: the step sees only the backwards after it";
    if (b > 1) {
        if (f == b) snprintf(buf, n, "accumulation every %d", b);
        else snprintf(buf, n, "%d losses, one step", b);
        return buf;
    }
    if (z < 0) return "no zero_grad since the last step";
    if (z > bi) return "zero_grad between backward and step: the step sees no gradient";
    if (fi >= 0 && z > fi) return "pattern A: zero_grad after forward (equivalent here)";
    return "pattern B/C: zero_grad between the last step and the forward";
}

void zg__san_trace_flush(void) {
    if (!line_len) return;
    if (count('b') == 0 && count('s') == 0 && count('k') == 0) { /* no training in it */
        line_len = 0;
        n_order = 0;
        return;
    }
    char pb[64];
    const char *p = pattern(pb, sizeof pb);
    bool gan = last_opt && line_opt && line_opt != last_opt;
    fprintf(stderr, "zgrad trace: step %d: %s -> %s%s\n", lines + 1, line, p, gan ? "; GAN: two optimizers" : "");
    if (line_opt) last_opt = line_opt;
    lines++;
    if (lines == TRACE_STEPS) fprintf(stderr, "zgrad trace: (traced the first %d steps)\n", TRACE_STEPS);
    line_len = 0;
    line[0] = 0;
    n_order = 0;
    line_opt = 0;
}

void zg__san_trace(const char *word, int opt_number) {
    if (lines >= TRACE_STEPS) return;
    bool is_step = strcmp(word, "step") == 0 || strcmp(word, "skip") == 0;
    char w[48];
    if (opt_number > 0) snprintf(w, sizeof w, "%s(opt %d)", word, opt_number);
    else snprintf(w, sizeof w, "%s", word);
    size_t need = strlen(w) + (line_len ? 2 : 0);
    if (line_len + need + 4 < sizeof line)
        line_len += (size_t)snprintf(line + line_len, sizeof line - line_len, "%s%s", line_len ? ", " : "", w);
    else if (line_len + 4 < sizeof line && line[line_len - 1] != '.')
        line_len += (size_t)snprintf(line + line_len, sizeof line - line_len, "...");
    char c = strcmp(word, "forward") == 0     ? 'f'
             : strcmp(word, "backward") == 0  ? 'b'
             : strcmp(word, "zero_grad") == 0 ? 'z'
             : strcmp(word, "step") == 0      ? 's'
             : strcmp(word, "skip") == 0      ? 'k'
                                              : '.';
    if (n_order < (int)sizeof order) order[n_order++] = c;
    if (is_step) {
        line_opt = opt_number;
        zg__san_trace_flush();
    }
}

void zg__san_trace_reset(void) {
    line_len = 0;
    line[0] = 0;
    lines = last_opt = line_opt = n_order = 0;
}
