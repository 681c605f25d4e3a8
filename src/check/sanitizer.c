/* The gradient-lifecycle sanitizer's rules (zgrad.h). It follows each
 * parameter's grads, not a count of backward passes:
 * - every backward pass gets a number; a parameter's record holds the
 *   passes that fed its grads since they were last cleared or used;
 * - a step uses (consumes) its parameters' grads and marks the passes
 *   behind them as used (a ring of recent pass numbers);
 * - stale: a step meets grads a step already used: used and not fed since
 *   (step twice), fed on top of used grads (zero_grad missing), or grads
 *   whose first pass fed another optimizer's step and later passes joined
 *   them (a generator's backward leaking into the discriminator's step);
 * - erased: zero_grad clears grads that no step used and nobody read,
 *   clipped or discarded, that are finite and come from a pass no step
 *   used. Judged per optimizer at its step: reported when the step then
 *   finds no fresh grads, or when ERASE_STREAK of its windows in a row
 *   erased (zero_grad inside an accumulation window, between two losses,
 *   between a GAN's real and fake batches). An erasure now and then is a
 *   discarded batch (a loss spike, an out-of-memory batch), and those come
 *   in clusters: two in a row are not enough.
 * Any number of passes may feed one step unless a window is declared. */
#include "check_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int g_mode = -1; /* -1: ZG_SANITIZE not read yet */
static const zg__grad_events listener;

static uint64_t g_pass;      /* number of the latest backward pass */
static uint64_t g_read_pass; /* latest pass whose grads the user read or clipped */
/* Passes some step used, by number mod 256: the pass, and the latest pass
 * at the time of that step (later passes joined its grads after the use). */
static struct {
    uint64_t pass, at;
} g_used_ring[256];
static int64_t g_steps;      /* optimizer steps so far (taken, skipped or refused) */
static int g_optims_live, g_optims_seen;

static int g_expect;          /* declared passes for a multi-loss step */
static bool g_expect_consume; /* a step used g_expect: the next backward drops it */

/* Losses multiplied by a scaler, awaiting their backward. */
#define ROOTS 8
static struct {
    const zg_tensor *root;
    float scale;
} g_roots[ROOTS];
static bool g_pass_scaled;
static float g_pass_scale;

static const char *g_zero_call; /* the zero_grad call running, for the reports */
#define ERASE_STREAK 3

static char g_pending[1280]; /* a report from a call returning nothing: the next step fails (error mode) */
static bool g_has_pending;

static zg_module **g_watched;
static int g_n_watched, g_cap_watched;
static const zg_tensor **g_orphans; /* module parameters that got grads while in no optimizer */
static int g_n_orphans, g_cap_orphans;

/* Events are heard while the sanitizer is on, and while it holds records
 * or watches modules even when off: frees must still reach it, or a record
 * would outlive its object. Every callback but the frees returns at once
 * when the mode is off. */
static void relisten(void) {
    bool need = g_mode > ZG_SANITIZE_OFF || g_n_watched > 0 || zg__san_nonempty();
    zg__grad_events_listen(need ? &listener : NULL);
}

static int ensure_mode(void) {
    if (g_mode < 0) {
        const char *v = getenv("ZG_SANITIZE");
        if (!v || !v[0] || strcmp(v, "off") == 0 || strcmp(v, "0") == 0) g_mode = ZG_SANITIZE_OFF;
        else if (strcmp(v, "warn") == 0) g_mode = ZG_SANITIZE_WARN;
        else if (strcmp(v, "error") == 0) g_mode = ZG_SANITIZE_ERROR;
        else if (strcmp(v, "trace") == 0) g_mode = ZG_SANITIZE_TRACE;
        else {
            /* A typo must not switch the checks off silently. */
            fprintf(stderr, "zgrad: ZG_SANITIZE=%s is not a mode: use off, warn, error or trace\n", v);
            exit(2);
        }
        relisten();
    }
    return g_mode;
}

static bool on(void) { return ensure_mode() > ZG_SANITIZE_OFF; }

static void trace(const char *word, int opt_number) {
    if (g_mode == ZG_SANITIZE_TRACE) zg__san_trace(word, g_optims_live > 1 ? opt_number : 0);
}

/* ZG_SANITIZE is read when the library is loaded, so that a program that
 * never calls the sanitizer's API is still checked (the build links the
 * library as one object, so this file is always part of a program). */
__attribute__((constructor)) static void read_env(void) {
    if (ensure_mode() == ZG_SANITIZE_TRACE) atexit(zg__san_trace_flush);
}

/* ---- records ------------------------------------------------------------ */

/* The record of a tensor, which then tells its free (watched). */
static zg__san_entry *track(const zg_tensor *t) {
    zg__san_entry *e = zg__san_get(t, SAN_TENSOR);
    if (e) ((zg_tensor *)t)->watched = true;
    return e;
}

static zg__san_entry *optim_record(const zg_optim *opt) {
    zg__san_entry *e = zg__san_find(opt);
    if (e) return e;
    e = zg__san_get(opt, SAN_OPTIM);
    if (e) {
        e->number = ++g_optims_seen;
        g_optims_live++;
    }
    return e;
}

/* Clears the record of t's grads; the erasure marks stay until a step. */
static void reset_grads(zg__san_entry *e) {
    e->passes = 0;
    e->first_pass = e->last_pass = 0;
    e->consumed = e->leftover = e->scaled = e->unscaled_pass = e->handset = false;
}

static void mark_used(uint64_t pass) {
    if (pass) {
        g_used_ring[pass & 255].pass = pass;
        g_used_ring[pass & 255].at = g_pass;
    }
}

static bool was_used(uint64_t pass) { return pass && g_used_ring[pass & 255].pass == pass; }

/* A step used `pass`, and `later` came after that step. */
static bool used_before(uint64_t pass, uint64_t later) {
    return was_used(pass) && g_used_ring[pass & 255].at < later;
}

/* The tensor is in optimizer number `number` (one made while the sanitizer
 * was off is learned at its first zero_grad or step). Optimizers are passed
 * by number, not by record: tracking a tensor may grow the map and move
 * the records. */
static void learn_holder(zg__san_entry *e, int number) {
    if (e->holders == 0) e->holders = 1;
    if (number) e->owner = number;
}

static const float *grad_data(const zg_tensor *t, int64_t *n) {
    *n = t->grad ? t->grad->numel : 0;
    return t->grad ? zg__f32(t->grad) : NULL;
}

static bool grad_all_zero(const zg_tensor *t) {
    int64_t n;
    const float *g = grad_data(t, &n);
    for (int64_t i = 0; i < n; i++)
        if (g[i] != 0.0f) return false;
    return true;
}

static bool grad_all_finite(const zg_tensor *t) {
    int64_t n;
    const float *g = grad_data(t, &n);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(g[i])) return false;
    return true;
}

/* ---- backward ----------------------------------------------------------- */

static void on_backward(const zg_tensor *root) {
    if (!on()) return;
    if (g_expect_consume) {
        g_expect = 0;
        g_expect_consume = false;
    }
    g_pass++;
    g_pass_scaled = false;
    for (int i = 0; root && i < ROOTS; i++)
        if (g_roots[i].root == root) {
            g_pass_scaled = true;
            g_pass_scale = g_roots[i].scale;
            g_roots[i].root = NULL;
            break;
        }
    trace("backward", 0);
}

static void add_orphan(zg__san_entry *e, const zg_tensor *t) {
    if (g_n_orphans == g_cap_orphans) {
        int c = g_cap_orphans ? 2 * g_cap_orphans : 8;
        const zg_tensor **o = zg__realloc(g_orphans, (size_t)c * sizeof *o);
        if (!o) return;
        g_orphans = o;
        g_cap_orphans = c;
    }
    g_orphans[g_n_orphans++] = t;
    e->orphan_listed = true;
}

static void on_accumulate(const zg_tensor *t) {
    if (!on() || t->grad_fn) return;
    zg__san_entry *e = track(t);
    if (!e) return;
    if (!t->grad_defined) {
        reset_grads(e);
    } else if (e->consumed) {
        /* Used grads zeroed by hand (p.grad.zero_()) hold nothing stale. */
        if (grad_all_zero(t)) reset_grads(e);
        else e->leftover = true;
    }
    e->consumed = false;
    if (e->passes == 0) e->first_pass = g_pass;
    e->passes++;
    e->last_pass = g_pass;
    if (g_pass_scaled) {
        e->scaled = true;
        e->scale = g_pass_scale;
    } else {
        e->unscaled_pass = true;
    }
    if (e->is_param && e->holders == 0 && !e->orphan_listed) add_orphan(e, t);
}

/* ---- zero_grad ---------------------------------------------------------- */

/* Whether clearing t's grads loses nothing a step needed: none fresh, used
 * or mixed with used ones, set by hand, read or clipped by the user, fed
 * by a pass a step used (a by-product of another model's loss), or
 * non-finite (a skipped NaN batch). */
static bool erasable(const zg_tensor *t, const zg__san_entry *e) {
    return e->passes == 0 || e->consumed || e->handset || e->last_pass <= g_read_pass ||
           was_used(e->last_pass) || !grad_all_finite(t);
}

static void on_zero(const zg_tensor *t, const char *call) {
    if (!on()) return;
    zg__san_entry *e = zg__san_find(t);
    if (!e) return;
    if (e->passes > 0 && !e->consumed) {
        if (!erasable(t, e)) e->erased = true;
        else e->zeroed_fresh = true;
        if (!grad_all_finite(t)) e->zeroed_nonfinite = true;
        if (!e->erase_call) e->erase_call = g_zero_call ? g_zero_call : call;
    }
    reset_grads(e);
}

static void on_set_grad(const zg_tensor *t) {
    if (!on() || !t->grad_defined) return;
    zg__san_entry *e = track(t);
    if (!e) return;
    reset_grads(e);
    e->passes = 1; /* given by hand: fresh for a step, free to erase */
    e->handset = true;
}

static void on_zero_begin(const char *call, const zg_optim *opt, zg_tensor *const *params, int n) {
    if (!on()) return;
    g_zero_call = call;
    zg__san_entry *oe = opt ? optim_record(opt) : NULL;
    int number = oe ? oe->number : 0;
    for (int i = 0; opt && i < n; i++) {
        zg__san_entry *e = track(params[i]);
        if (e) learn_holder(e, number);
    }
    trace("zero_grad", number);
}

static void on_zero_end(void) { g_zero_call = NULL; }

static void on_discard(zg_tensor *const *params, int n) {
    if (!on()) return;
    for (int i = 0; i < n; i++) {
        zg__san_entry *e = zg__san_find(params[i]);
        if (e) reset_grads(e);
    }
}

/* ---- step --------------------------------------------------------------- */

/* What a step finds in one parameter's grads. */
enum {
    F_STALE_USED = 1,  /* used by a step and not fed since, or fed on top */
    F_STALE_MIXED = 2, /* a pass another step used, joined by later passes */
    F_FRESH = 4,
    F_SCALED = 8,
    F_FROZEN = 16,
    F_OVER = 32,       /* more passes than the declared window */
};

static int findings(const zg_tensor *p, const zg__san_entry *e, int allowed) {
    if (!e || !p->grad_defined) return 0;
    int f = 0;
    if (e->leftover || (e->consumed && e->passes == 0)) f |= F_STALE_USED;
    else if (e->passes >= 2 && used_before(e->first_pass, e->last_pass)) f |= F_STALE_MIXED;
    if (e->passes > 0) f |= F_FRESH;
    if (e->scaled) f |= F_SCALED;
    if (!p->requires_grad) f |= F_FROZEN;
    if (allowed > 0 && e->passes > (uint32_t)allowed) f |= F_OVER;
    return f;
}

static void names_with(zg__san_names *l, zg_tensor *const *params, int n, int flag, int allowed) {
    for (int i = 0; i < n; i++)
        if (findings(params[i], zg__san_find(params[i]), allowed) & flag) zg__san_names_add(l, params[i], g_optims_live);
}

static void all_names(zg__san_names *l, zg_tensor *const *params, int n) {
    for (int i = 0; i < n; i++) zg__san_names_add(l, params[i], g_optims_live);
}

/* Parameters with fresh grads that no optimizer holds: those of watched
 * modules and those registered by a module while the sanitizer was on. */
static int check_unstepped(int64_t step, const char *call) {
    zg__san_names l = {0};
    for (int m = 0; m < g_n_watched; m++) {
        int n = zg_module_num_params(g_watched[m]);
        for (int i = 0; i < n; i++) {
            const zg_tensor *p = zg_module_param(g_watched[m], i);
            zg__san_entry *e = p ? zg__san_find(p) : NULL;
            if (e && !e->orphan_listed && p->grad_defined && e->holders == 0 && e->passes > 0)
                zg__san_names_add(&l, p, g_optims_live);
        }
    }
    int k = 0;
    for (int i = 0; i < g_n_orphans; i++) {
        const zg_tensor *p = g_orphans[i];
        zg__san_entry *e = zg__san_find(p);
        if (!e || e->holders > 0) {
            if (e) e->orphan_listed = false;
            continue; /* now held by an optimizer */
        }
        g_orphans[k++] = p;
        if (p->grad_defined && e->passes > 0) zg__san_names_add(&l, p, g_optims_live);
    }
    g_n_orphans = k;
    if (!l.n && !l.dropped) return 0;
    return zg__san_report(g_mode, ZG_SAN_UNSTEPPED, step, "parameters have gradients but are in no optimizer", &l,
                          call, "add them to an optimizer, or set requires_grad false to freeze them");
}

/* The report of one finding: the parameters showing `flag`. */
static int report_flag(zg_sanitize_kind kind, int flag, const char *what, const char *fix, zg_tensor *const *params,
                       int n, int allowed) {
    zg__san_names l = {0};
    names_with(&l, params, n, flag, allowed);
    return zg__san_report(g_mode, kind, g_steps + 1, what, &l, "zg_optim_step", fix);
}

/* The parameters whose grads a zero_grad erased since their last step (and,
 * with `excused`, those erased freely), and the first erasing call; their
 * number. */
static int erased_names(zg_tensor *const *params, int n, bool excused, zg__san_names *l, const char **call) {
    int k = 0;
    for (int i = 0; i < n; i++) {
        const zg__san_entry *e = zg__san_find(params[i]);
        if (!e || !(e->erased || (excused && e->zeroed_fresh))) continue;
        zg__san_names_add(l, params[i], g_optims_live);
        if (!*call) *call = e->erase_call;
        k++;
    }
    return k;
}

/* Whether a zero_grad since the last step cleared non-finite grads of
 * these parameters. */
static bool nonfinite_skipped(zg_tensor *const *params, int n) {
    for (int i = 0; i < n; i++) {
        const zg__san_entry *e = zg__san_find(params[i]);
        if (e && e->zeroed_nonfinite) return true;
    }
    return false;
}

/* Each report of the step; in error mode the first one fails it.
 * streak: the optimizer's windows in a row before this one that erased. */
static int step_reports(zg_tensor *const *params, int n, int all, int allowed, int streak) {
    int64_t step = g_steps + 1;
    int rc = 0;
    if (all & F_STALE_USED) {
        rc = report_flag(ZG_SAN_STALE, F_STALE_USED, "the step uses gradients that a step already used",
                         "call zg_optim_zero_grad before each backward whose step comes next (or after each step)",
                         params, n, allowed);
        if (rc) return rc;
    }
    if (all & F_STALE_MIXED) {
        rc = report_flag(ZG_SAN_STALE, F_STALE_MIXED,
                         "the step uses gradients of a backward that fed another optimizer's step",
                         "zero this optimizer's gradients right before its own backward, or detach the other "
                         "model's output",
                         params, n, allowed);
        if (rc) return rc;
    }
    zg__san_names erased = {0};
    const char *erase_call = NULL;
    if (!(all & (F_FRESH | F_STALE_USED)) && nonfinite_skipped(params, n)) {
        /* `if not isfinite(loss): zero_grad()` then step() anyway: a step
         * over grads set to None moves nothing, the batch is skipped. */
    } else if (!(all & (F_FRESH | F_STALE_USED))) {
        /* Nothing fresh: grads a zero_grad cleared in this window, even
         * excused ones (a by-product of another step's pass), were this
         * step's. */
        if (erased_names(params, n, true, &erased, &erase_call)) {
            rc = zg__san_report(g_mode, ZG_SAN_ERASED, step,
                                "zero_grad erased the gradients of the backward before this step used them", &erased,
                                erase_call,
                                "move zg_optim_zero_grad before the backward (it runs between backward and step)");
        } else {
            all_names(&erased, params, n);
            rc = zg__san_report(g_mode, ZG_SAN_NO_GRAD, step, "step with no fresh gradient", &erased, "zg_optim_step",
                                "call zg_backward on the loss before zg_optim_step");
        }
    } else if (streak + 1 >= ERASE_STREAK && erased_names(params, n, false, &erased, &erase_call)) {
        rc = zg__san_report(g_mode, ZG_SAN_ERASED, step,
                            "zero_grad erased gradients no step used, window after window (a backward lost)",
                            &erased, erase_call,
                            "zero_grad once per step, before the first backward the step uses (accumulating N "
                            "backwards: only when i % N == 0)");
    }
    if (rc) return rc;
    if (all & F_SCALED) {
        rc = report_flag(ZG_SAN_SCALED_STEP, F_SCALED, "zg_optim_step on gradients still multiplied by the loss scale",
                         "step through zg_grad_scaler_step(scaler, opt), which unscales and skips inf steps", params,
                         n, allowed);
        if (rc) return rc;
    }
    if (all & F_FROZEN) {
        rc = report_flag(ZG_SAN_FROZEN_STEP, F_FROZEN, "the step moves parameters whose requires_grad is false",
                         "set their grad to None when freezing them (zg_tensor_set_grad(p, NULL)), or leave the "
                         "optimizer",
                         params, n, allowed);
        if (rc) return rc;
    }
    if (all & F_OVER) {
        char what[160];
        snprintf(what, sizeof what, "the step uses more backward passes than the %d declared", allowed);
        rc = report_flag(ZG_SAN_WINDOW, F_OVER, what, "zero_grad after each window's step, or declare the window you use",
                         params, n, allowed);
        if (rc) return rc;
    }
    return check_unstepped(step, "zg_optim_step");
}

/* The step used (or refused) the optimizer's grads: its window closes. */
static void consume(const zg_optim *opt, zg_tensor *const *params, int n, int number) {
    bool erased = false;
    for (int i = 0; i < n; i++) {
        const zg_tensor *p = params[i];
        zg__san_entry *e = track(p);
        if (!e) continue;
        learn_holder(e, number);
        erased |= e->erased;
        e->erased = e->zeroed_fresh = e->zeroed_nonfinite = false;
        e->erase_call = NULL;
        if (!p->grad_defined) continue;
        mark_used(e->first_pass);
        mark_used(e->last_pass);
        reset_grads(e);
        e->consumed = true;
    }
    g_steps++;
    g_expect_consume = true;
    zg__san_entry *oe = zg__san_find(opt); /* after tracking: records may have moved */
    if (oe) oe->erase_streak = erased ? oe->erase_streak + 1 : 0;
}

static int on_step(const zg_optim *opt, zg_tensor *const *params, int n) {
    if (!on()) return 0;
    if (g_has_pending) {
        g_has_pending = false;
        if (g_mode == ZG_SANITIZE_ERROR) return zg__fail(ZG_ERR_STATE, "%s", g_pending);
    }
    zg__san_entry *oe = optim_record(opt);
    int number = oe ? oe->number : 0;
    int streak = oe ? oe->erase_streak : 0;
    int allowed = oe && oe->accum > 1 ? oe->accum : 0;
    if (g_expect > allowed) allowed = g_expect;
    int all = 0;
    for (int i = 0; i < n; i++) {
        zg__san_entry *e = track(params[i]);
        if (e) learn_holder(e, number);
        all |= findings(params[i], e, allowed);
    }
    trace("step", number);
    int rc = step_reports(params, n, all, allowed, streak);
    oe = zg__san_find(opt); /* tracking the parameters may have moved the records */
    if (oe && !rc) oe->steps++;
    consume(opt, params, n, number);
    return rc;
}

static void on_scaler_skip(const zg_optim *opt, zg_tensor *const *params, int n) {
    if (!on()) return;
    zg__san_entry *oe = optim_record(opt);
    int number = oe ? oe->number : 0;
    if (oe) oe->steps++;
    trace("skip", number);
    consume(opt, params, n, number);
}

static void on_optim_params(const zg_optim *opt, zg_tensor *const *params, int n) {
    if (!on()) return;
    zg__san_entry *oe = optim_record(opt);
    int number = oe ? oe->number : 0;
    for (int i = 0; i < n; i++) {
        zg__san_entry *e = params[i] ? track(params[i]) : NULL;
        if (!e) continue;
        e->holders++;
        e->owner = number;
    }
}

static void on_optim_free(const zg_optim *opt, zg_tensor *const *params, int n) {
    zg__san_entry *oe = zg__san_find(opt);
    if (oe) {
        g_optims_live--;
        zg__san_erase(opt);
    }
    for (int i = 0; i < n; i++) {
        zg__san_entry *e = zg__san_find(params[i]);
        if (e && e->holders > 0) e->holders--;
    }
}

/* ---- clip, scaler, scheduler -------------------------------------------- */

static int on_clip(zg_tensor *const *params, int n, const char *call) {
    if (!on()) return 0;
    trace("clip", 0);
    zg__san_names scaled = {0}, used = {0};
    for (int i = 0; i < n; i++) {
        const zg_tensor *p = params[i];
        if (!p || !p->grad_defined) continue;
        zg__san_entry *e = zg__san_find(p);
        if (!e) continue;
        if (e->scaled) zg__san_names_add(&scaled, p, g_optims_live);
        if (e->consumed && e->passes == 0) zg__san_names_add(&used, p, g_optims_live);
        if (e->last_pass > g_read_pass) g_read_pass = e->last_pass; /* clipped: the user used them */
    }
    int64_t step = g_steps + 1;
    if (scaled.n || scaled.dropped)
        return zg__san_report(g_mode, ZG_SAN_SCALED_CLIP, step, "clipping gradients still multiplied by the loss scale",
                              &scaled, call, "call zg_grad_scaler_unscale_(scaler, opt) before clipping");
    if (used.n || used.dropped)
        return zg__san_report(g_mode, ZG_SAN_CONSUMED_CLIP, g_steps, "clipping gradients that a step already used",
                              &used, call, "clip between zg_backward and zg_optim_step");
    return 0;
}

static void on_scale(const zg_tensor *scaled_loss, float scale) {
    if (!on()) return;
    int slot = 0;
    for (int i = 0; i < ROOTS; i++)
        if (!g_roots[i].root) {
            slot = i;
            break;
        }
    g_roots[slot].root = scaled_loss;
    g_roots[slot].scale = scale;
}

/* A report from a call that returns nothing: in error mode the next step
 * fails with it. */
static void report_deferred(zg_sanitize_kind kind, const char *what, const zg__san_names *l, const char *call,
                            const char *fix) {
    if (zg__san_report(g_mode, kind, g_steps + 1, what, l, call, fix) && !g_has_pending) {
        snprintf(g_pending, sizeof g_pending, "%s", zg_sanitize_last_report());
        g_has_pending = true;
    }
}

/* A user's hook saw the running pass: its grads may be cleared freely. */
static void on_hook_ran(void) {
    if (on()) g_read_pass = g_pass;
}

/* Library code reads grads with zg__grad_unchecked, so this sees only the
 * user's reads: a read marks the pass as used (an adversarial input's
 * grad, a two-pass optimizer), and a read of grads still multiplied by the
 * loss scale (logging, a hand-made clip) is reported once per step. */
static void on_read_grad(const zg_tensor *t) {
    if (!on()) return;
    zg__san_entry *e = zg__san_find(t);
    if (!e) {
        /* A retained grad of a non-leaf (an activation for Grad-CAM): it
         * came from the latest pass that reached it, taken as the latest. */
        if (t->grad_fn) g_read_pass = g_pass;
        return;
    }
    if (e->last_pass > g_read_pass) g_read_pass = e->last_pass;
    if (!e->scaled || e->read_step == g_steps + 1) return;
    e->read_step = g_steps + 1;
    zg__san_names l = {0};
    zg__san_names_add(&l, t, g_optims_live);
    char what[160];
    snprintf(what, sizeof what, "reading gradients still multiplied by the loss scale %g", (double)e->scale);
    report_deferred(ZG_SAN_SCALED_READ, what, &l, "zg_tensor_grad", "call zg_grad_scaler_unscale_ before reading them");
}

static int on_unscale(const zg_optim *opt, zg_tensor *const *params, int n, float scale) {
    if (!on()) return 0;
    zg__san_entry *oe = optim_record(opt);
    trace("unscale", oe ? oe->number : 0);
    zg__san_names never = {0}, other = {0};
    for (int i = 0; i < n; i++) {
        const zg_tensor *p = params[i];
        zg__san_entry *e = zg__san_find(p);
        if (!e || !p->grad_defined || e->passes == 0 || e->handset) continue;
        if (!e->scaled || e->unscaled_pass) zg__san_names_add(&never, p, g_optims_live);
        else if (e->scale != scale) zg__san_names_add(&other, p, g_optims_live);
    }
    for (int i = 0; i < n; i++) {
        zg__san_entry *e = zg__san_find(params[i]);
        if (e) e->scaled = false;
    }
    int64_t step = g_steps + 1;
    const char *call = "zg_grad_scaler_unscale_";
    if (never.n || never.dropped)
        return zg__san_report(g_mode, ZG_SAN_UNSCALED, step,
                              "unscaling gradients of a backward whose loss the scaler did not scale", &never, call,
                              "backward zg_grad_scaler_scale(scaler, loss), not the loss itself");
    if (other.n || other.dropped) {
        char what[160];
        snprintf(what, sizeof what, "unscaling by %g gradients multiplied by another scale", (double)scale);
        return zg__san_report(g_mode, ZG_SAN_UNSCALED, step, what, &other, call,
                              "call zg_grad_scaler_update after zg_grad_scaler_step, not between backward and step");
    }
    return 0;
}

static int on_sched_step(const void *sched, const zg_optim *opt, zg_tensor *const *params, int n) {
    if (!on() || !opt) return 0;
    zg__san_entry *oe = zg__san_find(opt);
    int64_t steps = oe ? oe->steps : 0;
    trace("sched", 0);
    zg__san_entry *se = zg__san_get(sched, SAN_SCHED);
    bool again = se && se->has_stepped && se->at_steps == steps;
    if (se) {
        se->has_stepped = true;
        se->at_steps = steps;
    }
    zg__san_names l = {0};
    if (steps == 0) {
        all_names(&l, params, n);
        return zg__san_report(g_mode, ZG_SAN_SCHED_ORDER, g_steps + 1,
                              "scheduler stepped before its optimizer's first step (the first lr value is skipped)",
                              &l, "zg_sched_step", "call zg_optim_step before zg_sched_step");
    }
    if (again) {
        all_names(&l, params, n);
        return zg__san_report(g_mode, ZG_SAN_SCHED_REPEAT, g_steps,
                              "scheduler stepped again with no step of its optimizer between", &l, "zg_sched_step",
                              "step the scheduler once per optimizer step (after it, outside the micro-batch loop)");
    }
    return 0;
}

/* ---- objects coming and going ------------------------------------------- */

static void on_sched_free(const void *sched) { zg__san_erase(sched); }

static void drop_orphan(const zg_tensor *t) {
    for (int i = 0; i < g_n_orphans; i++)
        if (g_orphans[i] == t) {
            g_orphans[i] = g_orphans[--g_n_orphans];
            return;
        }
}

static void on_tensor_free(const zg_tensor *t) {
    zg__san_entry *e = zg__san_find(t);
    if (e && e->orphan_listed) drop_orphan(t);
    zg__san_erase(t);
}

static void on_param_new(const zg_tensor *t) {
    if (!on()) return;
    zg__san_entry *e = track(t);
    if (e) e->is_param = true;
}

static void on_forward(const zg_module *m) {
    (void)m;
    if (on() && zg_grad_enabled()) trace("forward", 0); /* evaluation forwards are not the loop's */
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
    .hook_ran = on_hook_ran,
    .unscale = on_unscale,
    .scaler_skip = on_scaler_skip,
    .sched_step = on_sched_step,
    .sched_free = on_sched_free,
    .optim_params = on_optim_params,
    .module_free = on_module_free,
    .param_new = on_param_new,
    .forward = on_forward,
    .discard = on_discard,
    .tensor_free = on_tensor_free,
};

/* ---- public API --------------------------------------------------------- */

void zg_sanitize_set_mode(zg_sanitize_mode mode) {
    ensure_mode();
    if (g_mode == ZG_SANITIZE_TRACE) zg__san_trace_flush();
    g_mode = mode >= ZG_SANITIZE_WARN && mode <= ZG_SANITIZE_TRACE ? (int)mode : ZG_SANITIZE_OFF;
    relisten();
    g_has_pending = false;
}

zg_sanitize_mode zg_sanitize_get_mode(void) { return (zg_sanitize_mode)ensure_mode(); }

/* Declared windows belong to live optimizers (a zg_accum declares its
 * own), so a reset keeps them, numbered afresh. */
static bool keep_declared(zg__san_entry *e) {
    if (e->type != SAN_OPTIM || e->accum <= 1) return false;
    *e = (zg__san_entry){.key = e->key, .type = SAN_OPTIM, .accum = e->accum, .number = ++g_optims_seen};
    g_optims_live++;
    return true;
}

void zg_sanitize_reset(void) {
    ensure_mode();
    if (g_mode == ZG_SANITIZE_TRACE) zg__san_trace_flush();
    zg__san_trace_reset();
    g_optims_live = g_optims_seen = 0;
    zg__san_clear(keep_declared);
    free(g_watched);
    g_watched = NULL;
    g_n_watched = g_cap_watched = 0;
    free(g_orphans);
    g_orphans = NULL;
    g_n_orphans = g_cap_orphans = 0;
    zg__san_reports_reset();
    g_has_pending = false;
    g_expect = 0;
    g_expect_consume = false;
    memset(g_roots, 0, sizeof g_roots);
    g_pass_scaled = false;
    g_zero_call = NULL;
    memset(g_used_ring, 0, sizeof g_used_ring);
    g_pass = g_read_pass = 0;
    g_steps = 0;
    relisten();
}

int zg_sanitize_expect_accumulation(zg_optim *opt, int n) {
    if (!opt) return zg__fail(ZG_ERR_ARG, "zg_sanitize_expect_accumulation: optimizer is NULL");
    zg__san_entry *e = optim_record(opt);
    if (!e) return zg__fail(ZG_ERR_NOMEM, "zg_sanitize_expect_accumulation: out of memory");
    e->accum = n > 1 ? n : 0;
    relisten();
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
        zg_module **w = zg__realloc(g_watched, (size_t)cap * sizeof *w);
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
