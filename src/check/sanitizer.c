/* The gradient-lifecycle sanitizer. State per leaf tensor and per optimizer
 * lives in an open-addressing hash map keyed by the object's address, so
 * each hook does O(1) work per tensor and allocates only the first time it
 * meets a tensor. Address reuse after a free is harmless for tensors: a
 * tensor whose grad is None (every new one) resets its record when a
 * backward first accumulates into it; optimizers are forgotten when freed.
 *
 * The model: a step "consumes" the grads it sees. Per leaf we count the
 * backward passes accumulated since the last clear or step (`backwards`),
 * whether the grads were consumed by a step and not cleared (`stepped`),
 * whether a backward then added onto consumed grads (`leftover`), and
 * whether a scaled loss contributed and unscale_ has not run (`scaled`,
 * with the scale S of that loss: a user's read of such grads through
 * zg_tensor_grad is reported once per parameter per step).
 * A global epoch advances at every step, so "fresh" grads are those of a
 * backward after the most recent step of any optimizer (a GAN's generator
 * step leaves grads in the discriminator that its zero_grad may erase). */
#include "../autograd/autograd_internal.h"

#include <stdio.h>
#include <stdlib.h>

static int g_mode = -1; /* -1: ZG_SANITIZE not read yet */
static const zg__grad_events listener;

typedef struct {
    const void *key;
    uint64_t bw_epoch;  /* g_epoch at the last accumulation */
    uint64_t read_epoch; /* g_epoch of the last scaled-read report */
    float scale;         /* S of the scaled loss behind `scaled` */
    uint32_t backwards; /* passes accumulated since the last clear / step */
    bool stepped, leftover, scaled;
    /* Live optimizers holding the tensor: counted from their construction
     * to their free; an optimizer made while the sanitizer was off is
     * learned at its first zero_grad or step instead. */
    int holders;
    /* optimizer records */
    int64_t steps;
    int accum;
    bool skipped;
} entry;

static entry *tab;
static size_t tab_cap, tab_used;

static uint64_t g_epoch = 1;
static int g_expect;          /* declared backward passes for a multi-loss step */
static bool g_expect_consume; /* a step used g_expect: the next backward drops it */
static const zg_tensor *g_scaled_root;
static float g_root_scale, g_pass_scale;
static bool g_pass_scaled;

static int64_t g_total, g_kinds[ZG_SAN_KIND_COUNT];
static zg_sanitize_report_fn g_report_fn;
static void *g_report_user;
static char g_last[1024];
static char g_pending[1024];
static bool g_has_pending;

static zg_module **g_watched;
static int g_n_watched, g_cap_watched;

/* Erasures gathered during one optimizer / module zero_grad. */
#define NAMES_MAX 600
typedef struct {
    char buf[NAMES_MAX];
    size_t len;
    int n, dropped;
} namelist;
static namelist g_zero_names;
static const char *g_zero_call;

/* The events are heard while the sanitizer is on, and while it watches a
 * module even when off: the module's free must still remove it from the
 * list, or a later check would read freed memory. Every callback but that
 * one returns at once when the mode is off. */
static void relisten(void) {
    zg__grad_events_listen(g_mode > ZG_SANITIZE_OFF || g_n_watched > 0 ? &listener : NULL);
}

static int ensure_mode(void) {
    if (g_mode < 0) {
        const char *v = getenv("ZG_SANITIZE");
        g_mode = ZG_SANITIZE_OFF;
        if (v && strcmp(v, "warn") == 0) g_mode = ZG_SANITIZE_WARN;
        else if (v && strcmp(v, "error") == 0) g_mode = ZG_SANITIZE_ERROR;
        else if (v && strcmp(v, "trace") == 0) g_mode = ZG_SANITIZE_TRACE;
        relisten();
    }
    return g_mode;
}

/* ZG_SANITIZE is read when the library is loaded, so that a program that
 * never calls the sanitizer's API is still checked (the build links the
 * library as one object, so this file is always part of a program). */
__attribute__((constructor)) static void read_env(void) { ensure_mode(); }

/* ---- hash map ----------------------------------------------------------- */

static size_t slot_of(const void *k, size_t cap) {
    uint64_t h = (uint64_t)(uintptr_t)k * 0x9E3779B97F4A7C15ull;
    return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

static entry *find(const void *k) {
    if (!tab) return NULL;
    for (size_t i = slot_of(k, tab_cap);; i = (i + 1) & (tab_cap - 1)) {
        if (tab[i].key == k) return &tab[i];
        if (!tab[i].key) return NULL;
    }
}

static bool grow(void) {
    size_t cap = tab_cap ? tab_cap * 2 : 256;
    entry *nt = calloc(cap, sizeof *nt);
    if (!nt) return false;
    for (size_t i = 0; i < tab_cap; i++) {
        if (!tab[i].key) continue;
        size_t j = slot_of(tab[i].key, cap);
        while (nt[j].key) j = (j + 1) & (cap - 1);
        nt[j] = tab[i];
    }
    free(tab);
    tab = nt;
    tab_cap = cap;
    return true;
}

/* The record of k, created zeroed if missing; NULL when out of memory (the
 * sanitizer then stays silent about k rather than failing the call). */
static entry *get(const void *k) {
    entry *e = find(k);
    if (e) return e;
    if ((tab_used + 1) * 2 > tab_cap && !grow()) return NULL;
    size_t i = slot_of(k, tab_cap);
    while (tab[i].key) i = (i + 1) & (tab_cap - 1);
    tab[i] = (entry){.key = k};
    tab_used++;
    return &tab[i];
}

/* The tensor is in an optimizer seen stepping or zeroing it (one made
 * while the sanitizer was off, so never counted). */
static void learn_holder(entry *e) {
    if (e->holders == 0) e->holders = 1;
}

static void reset_grad_state(entry *e) {
    e->backwards = 0;
    e->stepped = e->leftover = e->scaled = false;
}

/* ---- reports ------------------------------------------------------------ */

static void names_add(namelist *l, const zg_tensor *t) {
    const char *nm = zg_tensor_name(t);
    if (!nm || !nm[0]) nm = "<unnamed>";
    size_t need = strlen(nm) + (l->n ? 2 : 0);
    if (l->len + need + 1 > NAMES_MAX) {
        l->dropped++;
        return;
    }
    l->len += (size_t)snprintf(l->buf + l->len, NAMES_MAX - l->len, "%s%s", l->n ? ", " : "", nm);
    l->n++;
}

/* Records and prints one report; returns ZG_ERR_STATE (error set) in error
 * mode, else 0. */
static int report(zg_sanitize_kind kind, const char *what, const namelist *l, const char *call) {
    char more[48] = "";
    if (l->dropped) snprintf(more, sizeof more, ", and %d more", l->dropped);
    snprintf(g_last, sizeof g_last, "zgrad sanitizer: %s (%s%s) at %s", what, l->n ? l->buf : "no parameters", more,
             call);
    g_total++;
    g_kinds[kind]++;
    if (g_report_fn) g_report_fn(kind, g_last, g_report_user);
    else fprintf(stderr, "%s\n", g_last);
    if (g_mode == ZG_SANITIZE_ERROR) return zg__fail(ZG_ERR_STATE, "%s", g_last);
    return 0;
}

/* Reports from calls that return nothing fail the next step in error mode. */
static void report_deferred(zg_sanitize_kind kind, const char *what, const namelist *l, const char *call) {
    if (report(kind, what, l, call) && !g_has_pending) {
        snprintf(g_pending, sizeof g_pending, "%s", g_last);
        g_has_pending = true;
    }
}

/* ---- hooks -------------------------------------------------------------- */

static void on_backward(const zg_tensor *root) {
    if (!ensure_mode()) return;
    if (g_expect_consume) {
        g_expect = 0;
        g_expect_consume = false;
    }
    g_pass_scaled = root && root == g_scaled_root;
    if (g_pass_scaled) {
        g_scaled_root = NULL;
        g_pass_scale = g_root_scale;
    }
}

static void on_accumulate(const zg_tensor *t) {
    if (!ensure_mode() || t->grad_fn) return;
    entry *e = get(t);
    if (!e) return;
    if (!t->grad_defined) reset_grad_state(e);
    else if (e->stepped) e->leftover = true;
    e->stepped = false;
    e->backwards++;
    e->bw_epoch = g_epoch;
    if (g_pass_scaled) {
        e->scaled = true;
        e->scale = g_pass_scale;
    }
}

static const char *erase_what = "zero_grad erased gradients of a backward that no step used";

static void on_zero(const zg_tensor *t) {
    if (!ensure_mode()) return;
    entry *e = find(t);
    if (!e) return;
    if (e->backwards > 0 && e->bw_epoch == g_epoch) {
        if (g_zero_call) {
            names_add(&g_zero_names, t);
        } else {
            namelist l = {0};
            names_add(&l, t);
            report_deferred(ZG_SAN_ERASED, erase_what, &l, "zg_tensor_zero_grad");
        }
    }
    reset_grad_state(e);
}

static void on_set_grad(const zg_tensor *t) {
    if (!ensure_mode()) return;
    entry *e = get(t);
    if (!e) return;
    reset_grad_state(e);
    if (t->grad_defined) e->backwards = 1; /* a gradient given by hand counts as fresh, erasable freely */
    e->bw_epoch = 0;
}

static void on_zero_begin(const char *call, const zg_optim *opt, zg_tensor *const *params, int n) {
    if (!ensure_mode()) return;
    g_zero_call = call;
    g_zero_names.len = 0;
    g_zero_names.n = g_zero_names.dropped = 0;
    if (opt)
        for (int i = 0; i < n; i++) {
            entry *e = get(params[i]);
            if (e) learn_holder(e);
        }
}

static void on_zero_end(void) {
    if (!ensure_mode() || !g_zero_call) return;
    const char *call = g_zero_call;
    g_zero_call = NULL;
    if (g_zero_names.n || g_zero_names.dropped) report_deferred(ZG_SAN_ERASED, erase_what, &g_zero_names, call);
}

/* The optimizer's grads were consumed (stepped, or skipped by the scaler). */
static void consume(zg_tensor *const *params, int n) {
    for (int i = 0; i < n; i++) {
        const zg_tensor *p = params[i];
        entry *e = get(p);
        if (!e) continue;
        learn_holder(e);
        if (!p->grad_defined) continue;
        e->stepped = true;
        e->backwards = 0;
        e->leftover = false;
    }
    g_epoch++;
    g_expect_consume = true;
}

static int check_watched(const char *call) {
    namelist l = {0};
    for (int m = 0; m < g_n_watched; m++) {
        int n = zg_module_num_params(g_watched[m]);
        for (int i = 0; i < n; i++) {
            const zg_tensor *p = zg_module_param(g_watched[m], i);
            if (!p || !p->grad_defined) continue;
            entry *e = find(p);
            if (e && e->holders == 0 && e->backwards > 0) names_add(&l, p);
        }
    }
    if (!l.n && !l.dropped) return 0;
    return report(ZG_SAN_UNSTEPPED, "parameters have gradients but are in no optimizer", &l, call);
}

static int on_step(const zg_optim *opt, zg_tensor *const *params, int n) {
    if (!ensure_mode()) return 0;
    const char *call = "zg_optim_step";
    if (g_has_pending) {
        g_has_pending = false;
        if (g_mode == ZG_SANITIZE_ERROR) return zg__fail(ZG_ERR_STATE, "%s", g_pending);
    }
    entry *oe = get(opt);
    int allowed = 1;
    if (oe && oe->accum > allowed) allowed = oe->accum;
    if (g_expect > allowed) allowed = g_expect;
    namelist prev = {0}, many = {0}, all = {0};
    int fresh = 0;
    uint32_t most = 0;
    for (int i = 0; i < n; i++) {
        const zg_tensor *p = params[i];
        entry *e = get(p);
        if (!e) continue;
        learn_holder(e);
        names_add(&all, p);
        if (!p->grad_defined) continue;
        if (e->leftover || (e->stepped && e->backwards == 0)) {
            names_add(&prev, p);
        } else if (e->backwards > (uint32_t)allowed) {
            names_add(&many, p);
            if (e->backwards > most) most = e->backwards;
        }
        fresh += e->backwards > 0 || e->leftover;
    }
    int rc = 0;
    if (!fresh && !prev.n) {
        rc = report(ZG_SAN_NO_GRAD, "step with no fresh gradient: backward missing, or zero_grad after it", &all,
                    call);
    } else if (prev.n || prev.dropped) {
        rc = report(ZG_SAN_STALE,
                    "stale gradients left from the previous step were used (zero_grad missing before backward?)",
                    &prev, call);
    } else if (many.n || many.dropped) {
        char what[256];
        snprintf(what, sizeof what,
                 "stale gradients: %u backward passes accumulated since the last zero_grad/step, %d expected "
                 "(declare accumulation with zg_sanitize_expect_accumulation / zg_sanitize_expect_backwards)",
                 most, allowed);
        rc = report(ZG_SAN_STALE, what, &many, call);
    }
    if (!rc) rc = check_watched(call);
    if (rc) return rc;
    if (oe) oe->steps++;
    consume(params, n);
    return 0;
}

static void on_optim_free(const zg_optim *opt, zg_tensor *const *params, int n) {
    if (!ensure_mode()) return;
    entry *e = find(opt);
    if (e) *e = (entry){.key = opt};
    for (int i = 0; i < n; i++) {
        entry *p = find(params[i]);
        if (p && p->holders > 0) p->holders--;
    }
}

static int on_clip(zg_tensor *const *params, int n, const char *call) {
    if (!ensure_mode()) return 0;
    namelist l = {0};
    for (int i = 0; i < n; i++) {
        const zg_tensor *p = params[i];
        if (!p || !p->grad_defined) continue;
        entry *e = find(p);
        if (e && e->scaled) names_add(&l, p);
    }
    if (!l.n && !l.dropped) return 0;
    return report(ZG_SAN_SCALED_CLIP,
                  "clipping gradients still multiplied by the loss scale (call zg_grad_scaler_unscale_ first)", &l,
                  call);
}

static void on_scale(const zg_tensor *scaled_loss, float scale) {
    if (!ensure_mode()) return;
    g_scaled_root = scaled_loss;
    g_root_scale = scale;
}

/* Library code reads grads with zg__grad_unchecked, so this sees only the
 * user's reads: values S times too large (logging, a hand-made clip) or
 * written before unscale_ multiplies them by 1/S. */
static void on_read_grad(const zg_tensor *t) {
    if (!ensure_mode()) return;
    entry *e = find(t);
    if (!e || !e->scaled || e->read_epoch == g_epoch) return;
    e->read_epoch = g_epoch;
    namelist l = {0};
    names_add(&l, t);
    char what[192];
    snprintf(what, sizeof what,
             "reading gradients still multiplied by the loss scale %g (call zg_grad_scaler_unscale_ first)",
             (double)e->scale);
    report_deferred(ZG_SAN_SCALED_READ, what, &l, "zg_tensor_grad");
}

static void on_unscale(const zg_optim *opt, zg_tensor *const *params, int n) {
    (void)opt;
    if (!ensure_mode()) return;
    for (int i = 0; i < n; i++) {
        entry *e = find(params[i]);
        if (e) e->scaled = false;
    }
}

static void on_scaler_skip(const zg_optim *opt, zg_tensor *const *params, int n) {
    if (!ensure_mode()) return;
    entry *oe = get(opt);
    if (oe) oe->skipped = true;
    consume(params, n);
}

static int on_sched_step(const zg_optim *opt, zg_tensor *const *params, int n) {
    if (!ensure_mode() || !opt) return 0;
    entry *oe = find(opt);
    if (oe && (oe->steps > 0 || oe->skipped)) return 0;
    namelist l = {0};
    for (int i = 0; i < n; i++) names_add(&l, params[i]);
    return report(ZG_SAN_SCHED_ORDER,
                  "scheduler stepped before its optimizer's first step (call zg_optim_step first; the first lr "
                  "value is skipped)",
                  &l, "zg_sched_step");
}

static void on_optim_params(const zg_optim *opt, zg_tensor *const *params, int n) {
    (void)opt;
    if (!ensure_mode()) return;
    for (int i = 0; i < n; i++) {
        entry *e = params[i] ? get(params[i]) : NULL;
        if (e) e->holders++;
    }
}

static void on_module_free(const zg_module *m) { zg_sanitize_unwatch_module((zg_module *)m); }

static const zg__grad_events listener = {
    .backward = on_backward,
    .accumulate = on_accumulate,
    .zero = on_zero,
    .set_grad = on_set_grad,
    .zero_begin = on_zero_begin,
    .zero_end = on_zero_end,
    .step = on_step,
    .optim_free = on_optim_free,
    .clip = on_clip,
    .scale = on_scale,
    .read_grad = on_read_grad,
    .unscale = on_unscale,
    .scaler_skip = on_scaler_skip,
    .sched_step = on_sched_step,
    .optim_params = on_optim_params,
    .module_free = on_module_free,
};

/* ---- public API --------------------------------------------------------- */

void zg_sanitize_set_report_fn(zg_sanitize_report_fn fn, void *user) {
    g_report_fn = fn;
    g_report_user = user;
}

const char *zg_sanitize_kind_name(zg_sanitize_kind kind) {
    static const char *const names[ZG_SAN_KIND_COUNT] = {
        "stale",         "erased",           "no-grad",        "unstepped", "scaled-clip",
        "sched-order",   "scaled-read",      "scaled-step",    "unscaled",  "frozen-step",
        "consumed-clip", "sched-repeat",     "window",
    };
    return kind >= 0 && kind < ZG_SAN_KIND_COUNT ? names[kind] : "unknown";
}

void zg_sanitize_set_mode(zg_sanitize_mode mode) {
    g_mode = mode >= ZG_SANITIZE_WARN && mode <= ZG_SANITIZE_TRACE ? (int)mode : ZG_SANITIZE_OFF;
    relisten();
    g_has_pending = false;
}

zg_sanitize_mode zg_sanitize_get_mode(void) { return (zg_sanitize_mode)ensure_mode(); }

int64_t zg_sanitize_report_count(void) { return g_total; }

int64_t zg_sanitize_kind_count(zg_sanitize_kind kind) {
    return kind >= 0 && kind < ZG_SAN_KIND_COUNT ? g_kinds[kind] : 0;
}

const char *zg_sanitize_last_report(void) { return g_last; }

void zg_sanitize_reset(void) {
    free(tab);
    tab = NULL;
    tab_cap = tab_used = 0;
    free(g_watched);
    g_watched = NULL;
    g_n_watched = g_cap_watched = 0;
    relisten();
    g_total = 0;
    memset(g_kinds, 0, sizeof g_kinds);
    g_last[0] = 0;
    g_has_pending = false;
    g_expect = 0;
    g_expect_consume = false;
    g_scaled_root = NULL;
    g_root_scale = g_pass_scale = 0;
    g_pass_scaled = false;
    g_zero_call = NULL;
    g_epoch = 1;
}

int zg_sanitize_expect_accumulation(zg_optim *opt, int n) {
    if (!opt) return zg__fail(ZG_ERR_ARG, "zg_sanitize_expect_accumulation: optimizer is NULL");
    entry *e = get(opt);
    if (!e) return zg__fail(ZG_ERR_NOMEM, "zg_sanitize_expect_accumulation: out of memory");
    e->accum = n > 1 ? n : 0;
    return ZG_OK;
}

void zg_sanitize_expect_backwards(int n) {
    g_expect = n > 1 ? n : 0;
    g_expect_consume = false;
}

int zg_sanitize_watch_module(zg_module *m) {
    if (!m) return zg__fail(ZG_ERR_ARG, "zg_sanitize_watch_module: module is NULL");
    for (int i = 0; i < g_n_watched; i++)
        if (g_watched[i] == m) return ZG_OK;
    if (g_n_watched == g_cap_watched) {
        int cap = g_cap_watched ? 2 * g_cap_watched : 4;
        zg_module **w = realloc(g_watched, (size_t)cap * sizeof *w);
        if (!w) return zg__fail(ZG_ERR_NOMEM, "zg_sanitize_watch_module: out of memory");
        g_watched = w;
        g_cap_watched = cap;
    }
    g_watched[g_n_watched++] = m;
    relisten();
    return ZG_OK;
}

void zg_sanitize_unwatch_module(zg_module *m) {
    for (int i = 0; i < g_n_watched; i++)
        if (g_watched[i] == m) {
            g_watched[i] = g_watched[--g_n_watched];
            relisten();
            return;
        }
}
