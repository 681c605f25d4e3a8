/* Live parity with PyTorch. tests/parity/torch_reference.py trains small
 * MLPs with torch (Debian's 1.13) and writes, per scenario, a safetensors
 * file: the initial weights, the data, and torch's losses, grads after the
 * last backward of every step and parameters after the last step. Each
 * TEST here loads the same weights into a zgrad model, runs the same loop
 * on the same data and compares everything with the norm-wise relative
 * error |zgrad - torch| / |torch| <= 1e-5 per tensor.
 *
 * The model, the loss and every optimizer hyperparameter are read from the
 * file's metadata (the script is their one source); the loop itself is
 * written out here and must equal the one the script ran ("loop" key).
 * The files live in build/parity-ref (or $ZG_PARITY_DIR) and are remade
 * when missing or older than the script. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define SCRIPT "tests/parity/torch_reference.py"
#define TOL 1e-5
#define MAX_PARAMS 32
#define MAX_LAYERS 32
#define NAME_LEN 64

/* The script lists every scenario it wrote in parity_scenarios.txt (the
 * one list of them): each is replayed here with the loop its metadata
 * names, so a scenario added to the script is tested without a line here.
 * The list is written last, so its being newer than the script means
 * every file is. */
#define INDEX "parity_scenarios"
#define MAX_SCENARIOS 128
static const char *const ref_sources[] = {SCRIPT};
static const char *const ref_files[] = {INDEX};
static zgt_refset refs = {ref_sources, 1, ref_files, 1, ".txt", 0};

static double overall_worst;
static int scenarios_run, scenarios_passed, scenarios_listed;

/* Makes sure every reference file exists and is newer than the script
 * (running it once per process if not). Fails the running case with what
 * to do otherwise: never a silent pass. */
/* ------------------------------------------------------------------ */
/* Model, loss and optimizers from the metadata                         */
/* ------------------------------------------------------------------ */

/* "linear 20 32;relu;..." -> Sequential, weights copied from init.<name>. */
static zg_module *build_model(const zg_safetensors *st) {
    const char *arch = zg_safetensors_metadata(st, "arch");
    if (!arch) {
        zgt_fail(__FILE__, __LINE__, "no \"arch\" in the reference metadata");
        return NULL;
    }
    zg_module *layers[MAX_LAYERS];
    int n = 0;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", arch);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
        char kind[32] = "";
        double a = 0, b = 0;
        int got = sscanf(tok, "%31s %lf %lf", kind, &a, &b);
        zg_module *m = NULL;
        if (n == MAX_LAYERS) break;
        if (!strcmp(kind, "linear") && got == 3) m = zg_nn_linear((int64_t)a, (int64_t)b, true);
        else if (!strcmp(kind, "relu")) m = zg_nn_relu();
        else if (!strcmp(kind, "gelu")) m = zg_nn_gelu(false);
        else if (!strcmp(kind, "gelu_tanh")) m = zg_nn_gelu(true);
        else if (!strcmp(kind, "tanh")) m = zg_nn_tanh();
        else if (!strcmp(kind, "sigmoid")) m = zg_nn_sigmoid();
        else if (!strcmp(kind, "leaky_relu") && got == 2) m = zg_nn_leaky_relu((float)a);
        else zgt_fail(__FILE__, __LINE__, "unknown layer \"%s\" in arch", tok);
        if (!m) {
            if (zg_last_error()[0]) zgt_fail(__FILE__, __LINE__, "building \"%s\": %s", tok, zg_last_error());
            for (int i = 0; i < n; i++) zg_module_free(layers[i]);
            return NULL;
        }
        layers[n++] = m;
    }
    zg_module *model = zg_nn_sequential(layers, n);
    if (!model) {
        zgt_fail(__FILE__, __LINE__, "zg_nn_sequential: %s", zg_last_error());
        return NULL;
    }
    /* The same initial weights as torch, by parameter name; every init.*
     * tensor must find its parameter. */
    int n_init = 0;
    for (int i = 0; i < zg_safetensors_count(st); i++)
        if (!strncmp(zg_safetensors_name(st, i), "init.", 5)) n_init++;
    bool ok = n_init == zg_module_num_params(model);
    if (!ok)
        zgt_fail(__FILE__, __LINE__, "the model has %d parameters, the reference %d", zg_module_num_params(model),
                 n_init);
    zg_no_grad_enter();
    for (int i = 0; ok && i < zg_module_num_params(model); i++) {
        const char *name = zg_module_param_name(model, i);
        zg_tensor *p = zg_module_param(model, i), *w = zgt_ref_find(st, "init.%s", name);
        if (!w || zg_tensor_numel(w) != zg_tensor_numel(p) || zg_tensor_ndim(w) != zg_tensor_ndim(p)) {
            zgt_fail(__FILE__, __LINE__, "parameter %s: no init.%s of its shape in the reference", name, name);
            ok = false;
        } else if (zg_tensor_copy_(p, w) != ZG_OK) {
            zgt_fail(__FILE__, __LINE__, "copying init.%s: %s", name, zg_last_error());
            ok = false;
        }
    }
    zg_no_grad_exit();
    if (!ok) {
        zg_module_free(model);
        return NULL;
    }
    return model;
}

typedef struct {
    enum { LOSS_CE, LOSS_MSE, LOSS_BCE } kind;
    zg_loss_opts ce;
    const zg_tensor *pos_weight;
} loss_spec;

/* "cross_entropy label_smoothing=0.1 ignore_index=-1 weight=1", "mse",
 * "bce_with_logits pos_weight=1"; tensors from loss.weight / loss.pos_weight. */
static bool parse_loss(const zg_safetensors *st, loss_spec *ls) {
    const char *spec = zg_safetensors_metadata(st, "loss");
    *ls = (loss_spec){.kind = LOSS_CE, .ce = ZG_LOSS_DEFAULTS};
    if (!spec) {
        zgt_fail(__FILE__, __LINE__, "no \"loss\" in the reference metadata");
        return false;
    }
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spec);
    char *save = NULL;
    char *kind = strtok_r(buf, " ", &save);
    if (kind && !strcmp(kind, "cross_entropy")) ls->kind = LOSS_CE;
    else if (kind && !strcmp(kind, "mse")) ls->kind = LOSS_MSE;
    else if (kind && !strcmp(kind, "bce_with_logits")) ls->kind = LOSS_BCE;
    else {
        zgt_fail(__FILE__, __LINE__, "unknown loss \"%s\"", spec);
        return false;
    }
    for (char *kv = strtok_r(NULL, " ", &save); kv; kv = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) continue;
        *eq = 0;
        const char *v = eq + 1;
        if (!strcmp(kv, "label_smoothing")) ls->ce.label_smoothing = strtof(v, NULL);
        else if (!strcmp(kv, "ignore_index")) ls->ce.ignore_index = strtoll(v, NULL, 10);
        else if (!strcmp(kv, "weight")) ls->ce.weight = zg_safetensors_get(st, "loss.weight");
        else if (!strcmp(kv, "pos_weight")) ls->pos_weight = zg_safetensors_get(st, "loss.pos_weight");
        else {
            zgt_fail(__FILE__, __LINE__, "unknown loss option \"%s\"", kv);
            return false;
        }
    }
    return true;
}

static zg_tensor *compute_loss(const loss_spec *ls, zg_tensor *out, zg_tensor *y) {
    switch (ls->kind) {
    case LOSS_MSE: return zg_mse_loss(out, y, ZG_REDUCTION_MEAN);
    case LOSS_BCE: return zg_bce_with_logits(out, y, ZG_REDUCTION_MEAN, ls->pos_weight);
    default: return zg_cross_entropy(out, y, &ls->ce);
    }
}

static bool hparam_key(const char *k, zg_hparam *key) {
    static const struct {
        const char *name;
        zg_hparam key;
    } keys[] = {
        {"lr", ZG_HP_LR},
        {"weight_decay", ZG_HP_WEIGHT_DECAY},
        {"momentum", ZG_HP_MOMENTUM},
        {"dampening", ZG_HP_DAMPENING},
        {"nesterov", ZG_HP_NESTEROV},
        {"maximize", ZG_HP_MAXIMIZE},
        {"beta1", ZG_HP_BETA1},
        {"beta2", ZG_HP_BETA2},
        {"eps", ZG_HP_EPS},
        {"amsgrad", ZG_HP_AMSGRAD},
        {"alpha", ZG_HP_ALPHA},
        {"centered", ZG_HP_CENTERED},
        {"lr_decay", ZG_HP_LR_DECAY},
        {"initial_accumulator_value", ZG_HP_INITIAL_ACCUMULATOR_VALUE},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strcmp(k, keys[i].name)) {
            *key = keys[i].key;
            return true;
        }
    return false;
}

static void config_set(zg_optim_config *c, zg_hparam key, double v) {
    switch (key) {
    case ZG_HP_LR: c->lr = v; break;
    case ZG_HP_WEIGHT_DECAY: c->weight_decay = v; break;
    case ZG_HP_MOMENTUM: c->momentum = v; break;
    case ZG_HP_DAMPENING: c->dampening = v; break;
    case ZG_HP_NESTEROV: c->nesterov = v != 0; break;
    case ZG_HP_MAXIMIZE: c->maximize = v != 0; break;
    case ZG_HP_BETA1: c->beta1 = v; break;
    case ZG_HP_BETA2: c->beta2 = v; break;
    case ZG_HP_EPS: c->eps = v; break;
    case ZG_HP_AMSGRAD: c->amsgrad = v != 0; break;
    case ZG_HP_ALPHA: c->alpha = v; break;
    case ZG_HP_CENTERED: c->centered = v != 0; break;
    case ZG_HP_LR_DECAY: c->lr_decay = v; break;
    case ZG_HP_INITIAL_ACCUMULATOR_VALUE: c->initial_accumulator_value = v; break;
    default: break;
    }
}

#define MAX_GROUPS 4

/* "KIND | params=a,b k=v ... | params=... k=v ...": one group is built
 * with zg_optim_new and a config, several with zg_optim_new_groups and
 * per-group overrides. */
static zg_optim *build_optim(const zg_safetensors *st, int k, zg_module *model) {
    char key[32];
    snprintf(key, sizeof key, "optim.%d", k);
    const char *spec = zg_safetensors_metadata(st, key);
    if (!spec) {
        zgt_fail(__FILE__, __LINE__, "no \"%s\" in the reference metadata", key);
        return NULL;
    }
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", spec);
    zg_tensor *params[MAX_GROUPS][MAX_PARAMS];
    zg_hp hps[MAX_GROUPS][ZG_HP_COUNT];
    zg_param_group groups[MAX_GROUPS];
    int n_groups = 0;
    zg_optim_kind kind;
    char *save = NULL;
    char *seg = strtok_r(buf, "|", &save);
    char kname[16] = "";
    if (seg) sscanf(seg, "%15s", kname);
    if (!strcmp(kname, "sgd")) kind = ZG_SGD;
    else if (!strcmp(kname, "adam")) kind = ZG_ADAM;
    else if (!strcmp(kname, "adamw")) kind = ZG_ADAMW;
    else if (!strcmp(kname, "rmsprop")) kind = ZG_RMSPROP;
    else if (!strcmp(kname, "adagrad")) kind = ZG_ADAGRAD;
    else {
        zgt_fail(__FILE__, __LINE__, "unknown optimizer in \"%s\"", spec);
        return NULL;
    }
    while ((seg = strtok_r(NULL, "|", &save))) {
        if (n_groups == MAX_GROUPS) {
            zgt_fail(__FILE__, __LINE__, "too many groups in \"%s\"", spec);
            return NULL;
        }
        zg_param_group *g = &groups[n_groups];
        *g = (zg_param_group){.params = params[n_groups], .overrides = hps[n_groups]};
        int n_p = 0, n_hp = 0;
        char *save2 = NULL;
        for (char *kv = strtok_r(seg, " ", &save2); kv; kv = strtok_r(NULL, " ", &save2)) {
            char *eq = strchr(kv, '=');
            if (!eq) continue;
            *eq = 0;
            if (!strcmp(kv, "params")) {
                char *save3 = NULL;
                for (char *pn = strtok_r(eq + 1, ",", &save3); pn; pn = strtok_r(NULL, ",", &save3)) {
                    zg_tensor *p = zg_module_param_by_name(model, pn);
                    if (!p || n_p == MAX_PARAMS) {
                        zgt_fail(__FILE__, __LINE__, "%s: no parameter \"%s\" in the model", key, pn);
                        return NULL;
                    }
                    params[n_groups][n_p++] = p;
                }
            } else {
                zg_hparam h;
                if (!hparam_key(kv, &h)) {
                    zgt_fail(__FILE__, __LINE__, "%s: unknown hyperparameter \"%s\"", key, kv);
                    return NULL;
                }
                hps[n_groups][n_hp++] = (zg_hp){h, strtod(eq + 1, NULL)};
            }
        }
        g->n_params = n_p;
        g->n_overrides = n_hp;
        n_groups++;
    }
    zg_optim *opt;
    if (n_groups == 1) {
        zg_optim_config cfg = zg_optim_defaults(kind);
        for (int i = 0; i < groups[0].n_overrides; i++) config_set(&cfg, hps[0][i].key, hps[0][i].value);
        opt = zg_optim_new(kind, groups[0].params, groups[0].n_params, &cfg);
    } else {
        opt = zg_optim_new_groups(kind, groups, n_groups, NULL);
    }
    if (!opt) zgt_fail(__FILE__, __LINE__, "building %s (%s): %s", key, spec, zg_last_error());
    return opt;
}

/* ------------------------------------------------------------------ */
/* The loop                                                             */
/* ------------------------------------------------------------------ */

typedef struct {
    char pattern;        /* 'B': zero_grad at the top; 'A': after forward */
    bool set_to_none;    /* passed to every zero_grad */
    const char *freeze;  /* requires_grad off after step 0 (NULL: none) */
    int micro;           /* micro-batches per step, backward(loss/micro) */
    bool retain_twice;   /* backward(retain_graph) then backward again */
    bool hooks;          /* 2.weight grad*0.5, first activation grad*2 */
    double aux_mse;      /* + aux_mse * mse(logits, t), its own backward */
    bool split;          /* two optimizers, the "split" schedule */
} loop_opts;

/* The canonical description, as the script's loop_desc() writes it. */
static void loop_str(const loop_opts *o, char *buf, size_t n) {
    snprintf(buf, n, "pattern=%c set_to_none=%d freeze=%s micro=%d retain_twice=%d hooks=%d aux_mse=%g schedule=%s",
             o->pattern, o->set_to_none, o->freeze ? o->freeze : "-", o->micro, o->retain_twice, o->hooks,
             o->aux_mse, o->split ? "split" : "plain");
}

/* The loop a reference names in its "loop" metadata (loop_str's format,
 * checked by printing it back); false if it does not parse. freeze points
 * into `buf`. */
static bool loop_parse(const char *desc, loop_opts *o, char *buf, size_t n) {
    char sched[16];
    int none, twice, hooks;
    static const char *const fmt =
        "pattern=%c set_to_none=%d freeze=%63s micro=%d retain_twice=%d hooks=%d aux_mse=%lf schedule=%15s";
    if (n < 64 || sscanf(desc, fmt, &o->pattern, &none, buf, &o->micro, &twice, &hooks, &o->aux_mse, sched) != 8)
        return false;
    o->set_to_none = none;
    o->retain_twice = twice;
    o->hooks = hooks;
    o->split = !strcmp(sched, "split");
    o->freeze = strcmp(buf, "-") ? buf : NULL;
    char back[512];
    loop_str(o, back, sizeof back);
    return !strcmp(back, desc);
}

typedef struct {
    bool ok;            /* ran to the end, within tolerance */
    double worst;
    int n_params;
    zg_tensor *final[MAX_PARAMS];     /* persistent copies */
    zg_tensor *last_grad[MAX_PARAMS]; /* after the last backward (NULL: None) */
    zg_tensor *snap[MAX_PARAMS];      /* after step 0 */
    zg_tensor *losses;
} result;

static void result_free(result *r) {
    for (int i = 0; i < r->n_params; i++) {
        zg_tensor_free(r->final[i]);
        zg_tensor_free(r->last_grad[i]);
        zg_tensor_free(r->snap[i]);
    }
    zg_tensor_free(r->losses);
    memset(r, 0, sizeof *r);
}

typedef struct {
    const char *scenario;
    double worst;
    int failures;
} cmp_ctx;

/* One tensor against torch's: tracks the worst relative error. */
static void cmp(cmp_ctx *c, const char *what, const zg_tensor *got, const zg_tensor *want) {
    double e = zgt_rel_err(got, want);
    if (e > c->worst || isnan(e)) c->worst = isnan(e) ? INFINITY : e;
    if (!(e <= TOL)) {
        c->failures++;
        zgt_fail(__FILE__, __LINE__, "%s: %s: relative error %.3g > %g", c->scenario, what, e, TOL);
    }
}

static zg_tensor *scale_hook(zg_tensor *grad, void *user) {
    zg_tensor *r = zg_mul_scalar(grad, *(const float *)user);
    return r ? r : ZG_HOOK_FAIL;
}

static const float half = 0.5f, twice = 2.0f;

static zg_tensor *forward(zg_module *model, zg_tensor *x, bool hooks) {
    if (!hooks) return zg_module_forward(model, x);
    /* Child by child, to reach the first activation's output. */
    zg_tensor *h = x;
    for (int i = 0; h && i < zg_module_num_children(model); i++) {
        h = zg_module_forward(zg_module_child(model, i), h);
        if (h && i == 1 && zg_tensor_register_hook(h, scale_hook, (void *)&twice) != ZG_OK) return NULL;
    }
    return h;
}

/* Rows [k*b, (k+1)*b) of a float or int64 batch, as a persistent copy. */
static zg_tensor *rows(zg_tensor *t, int64_t k, int64_t b) {
    int64_t shape[ZG_MAX_DIMS];
    int nd = zg_tensor_ndim(t);
    memcpy(shape, zg_tensor_shape(t), (size_t)nd * sizeof *shape);
    int64_t row = zg_tensor_numel(t) / shape[0];
    shape[0] = b;
    if (zg_tensor_dtype(t) == ZG_INT64)
        return zg_tensor_from_data(ZG_INT64, zg_tensor_data_i64(t) + k * b * row, shape, nd);
    return zg_tensor_from_data(ZG_FLOAT32, zg_tensor_data(t) + k * b * row, shape, nd);
}

#define REQUIRE(cond, ...)                                                                                     \
    do {                                                                                                       \
        if (!(cond)) {                                                                                         \
            zgt_fail(__FILE__, __LINE__, __VA_ARGS__);                                                         \
            goto out;                                                                                          \
        }                                                                                                      \
    } while (0)

static void zero_grad(zg_module *model, zg_optim **opt, int n_opt, const loop_opts *o, int s) {
    if (!o->split) {
        for (int i = 0; i < n_opt; i++) zg_optim_zero_grad(opt[i], o->set_to_none);
    } else if (s % 3 == 0) {
        zg_module_zero_grad(model, o->set_to_none);
    } else if (s % 3 == 1) {
        zg_optim_zero_grad(opt[0], o->set_to_none);
        zg_optim_zero_grad(opt[1], o->set_to_none);
    } else {
        /* the first layer keeps step 1's grads and accumulates step 2's */
        zg_optim_zero_grad(opt[1], o->set_to_none);
    }
}

/* Runs one scenario against its reference; fills r (free with
 * result_free). */
static void run_scenario(const char *scenario, const loop_opts *o, result *r) {
    memset(r, 0, sizeof *r);
    cmp_ctx c = {scenario, 0, 0};
    zg_safetensors *st = zgt_refs_open(&refs, scenario);
    zg_module *model = NULL;
    zg_optim *opt[2] = {NULL, NULL};
    int n_opt = 0;
    float *losses = NULL, *losses2 = NULL;
    zg_tensor *micro_x[8] = {0}, *micro_y[8] = {0};
    if (!st) return;

    char want_loop[512];
    loop_str(o, want_loop, sizeof want_loop);
    const char *loop = zg_safetensors_metadata(st, "loop");
    REQUIRE(loop && !strcmp(loop, want_loop), "%s: the reference ran the loop \"%s\", this test runs \"%s\"", scenario,
            loop ? loop : "(none)", want_loop);
    const char *steps_s = zg_safetensors_metadata(st, "steps"), *batch_s = zg_safetensors_metadata(st, "batch");
    const char *nopt_s = zg_safetensors_metadata(st, "optimizers");
    REQUIRE(steps_s && batch_s && nopt_s, "%s: steps / batch / optimizers missing in the metadata", scenario);
    int steps = atoi(steps_s), batch = atoi(batch_s);
    n_opt = atoi(nopt_s);
    REQUIRE(steps > 0 && batch > 0 && n_opt >= 1 && n_opt <= 2 && o->micro >= 1 && o->micro <= 8,
            "%s: bad steps %d / batch %d / optimizers %d", scenario, steps, batch, n_opt);
    REQUIRE(!o->split || n_opt == 2, "%s: the split schedule needs two optimizers", scenario);

    loss_spec ls;
    if (!parse_loss(st, &ls)) goto out;
    model = build_model(st);
    if (!model) goto out;
    for (int k = 0; k < n_opt; k++) {
        opt[k] = build_optim(st, k, model);
        if (!opt[k]) goto out;
    }
    int np = zg_module_num_params(model);
    REQUIRE(np <= MAX_PARAMS, "%s: %d parameters", scenario, np);
    r->n_params = np;
    if (o->hooks) {
        zg_tensor *w = zg_module_param_by_name(model, "2.weight");
        REQUIRE(w && zg_tensor_register_hook(w, scale_hook, (void *)&half) == ZG_OK, "%s: hook on 2.weight: %s",
                scenario, zg_last_error());
    }
    losses = calloc((size_t)steps, sizeof *losses);
    losses2 = calloc((size_t)steps, sizeof *losses2);
    REQUIRE(losses && losses2, "out of memory");

    for (int s = 0; s < steps; s++) {
        zg_tensor *x = zgt_ref_find(st, "data.x.%d", s), *y = zgt_ref_find(st, "data.y.%d", s);
        zg_tensor *t = o->aux_mse != 0 ? zgt_ref_find(st, "data.t.%d", s) : NULL;
        REQUIRE(x && y && (t || o->aux_mse == 0), "%s: data of step %d missing", scenario, s);
        REQUIRE(zg_tensor_size(x, 0) == (int64_t)batch * o->micro, "%s: step %d has %lld samples, expected %d",
                scenario, s, (long long)zg_tensor_size(x, 0), batch * o->micro);

        if (o->pattern == 'B') zero_grad(model, opt, n_opt, o, s);
        float total = 0;
        for (int k = 0; k < o->micro; k++) {
            zg_tensor *xb = x, *yb = y;
            if (o->micro > 1) {
                xb = micro_x[k] = rows(x, k, batch);
                yb = micro_y[k] = rows(y, k, batch);
                REQUIRE(xb && yb, "%s: micro-batch: %s", scenario, zg_last_error());
            }
            zg_tensor *out = forward(model, xb, o->hooks);
            REQUIRE(out, "%s: step %d: forward: %s", scenario, s, zg_last_error());
            zg_tensor *l = compute_loss(&ls, out, yb);
            if (l && o->micro > 1) l = zg_div_scalar(l, (float)o->micro);
            REQUIRE(l, "%s: step %d: loss: %s", scenario, s, zg_last_error());
            total += zg_tensor_item(l);
            if (o->pattern == 'A') zero_grad(model, opt, n_opt, o, s);
            if (o->aux_mse != 0) {
                zg_tensor *l2 = zg_mse_loss(out, t, ZG_REDUCTION_MEAN);
                if (l2) l2 = zg_mul_scalar(l2, (float)o->aux_mse);
                REQUIRE(l2, "%s: step %d: second loss: %s", scenario, s, zg_last_error());
                losses2[s] = zg_tensor_item(l2);
                REQUIRE(zg_backward(l, &(zg_backward_opts){.retain_graph = true}) == ZG_OK &&
                            zg_backward(l2, NULL) == ZG_OK,
                        "%s: step %d: backward: %s", scenario, s, zg_last_error());
            } else if (o->retain_twice) {
                REQUIRE(zg_backward(l, &(zg_backward_opts){.retain_graph = true}) == ZG_OK &&
                            zg_backward(l, NULL) == ZG_OK,
                        "%s: step %d: backward: %s", scenario, s, zg_last_error());
            } else {
                REQUIRE(zg_backward(l, NULL) == ZG_OK, "%s: step %d: backward: %s", scenario, s, zg_last_error());
            }
        }
        losses[s] = total;

        /* .grad after the last backward: present exactly where torch's is. */
        for (int i = 0; i < np; i++) {
            const char *name = zg_module_param_name(model, i);
            zg_tensor *g = zg_tensor_grad(zg_module_param(model, i)), *want = zgt_ref_find(st, "grad.%d.%s", s, name);
            char what[128];
            snprintf(what, sizeof what, "grad of %s at step %d", name, s);
            if (!want && g) {
                c.failures++;
                zgt_fail(__FILE__, __LINE__, "%s: %s is a tensor, torch has None", scenario, what);
            } else if (want && !g) {
                c.failures++;
                zgt_fail(__FILE__, __LINE__, "%s: %s is None, torch has a tensor", scenario, what);
            } else if (want) {
                cmp(&c, what, g, want);
            }
            if (s == steps - 1 && g) r->last_grad[i] = zg_tensor_clone(g);
        }

        int rc = ZG_OK;
        if (o->split) {
            rc = zg_optim_step(opt[1]);
            if (rc == ZG_OK && s % 3 != 1) rc = zg_optim_step(opt[0]);
        } else {
            for (int k = 0; k < n_opt && rc == ZG_OK; k++) rc = zg_optim_step(opt[k]);
        }
        REQUIRE(rc == ZG_OK, "%s: step %d: zg_optim_step: %s", scenario, s, zg_last_error());

        if (o->freeze && s == 0) {
            zg_tensor *p = zg_module_param_by_name(model, o->freeze);
            REQUIRE(p && zg_tensor_set_requires_grad(p, false) == ZG_OK, "%s: freezing %s: %s", scenario, o->freeze,
                    zg_last_error());
            for (int i = 0; i < np; i++) {
                const char *name = zg_module_param_name(model, i);
                char what[128];
                snprintf(what, sizeof what, "%s after step 0", name);
                cmp(&c, what, zg_module_param(model, i), zgt_ref_find(st, "snap.%s", name));
                r->snap[i] = zg_tensor_clone(zg_module_param(model, i));
            }
        }
        /* The canonical loop: the step's graph and temporaries go here. */
        zg_arena_reset();
        for (int k = 0; k < o->micro; k++) {
            zg_tensor_free(micro_x[k]);
            zg_tensor_free(micro_y[k]);
            micro_x[k] = micro_y[k] = NULL;
        }
        if (zgt_case_failures() > 20) goto out;
    }

    int64_t shape[1] = {steps};
    r->losses = zg_tensor_from_data(ZG_FLOAT32, losses, shape, 1);
    cmp(&c, "loss", r->losses, zgt_ref_find(st, "loss"));
    if (o->aux_mse != 0) {
        zg_tensor *l2 = zg_tensor_from_data(ZG_FLOAT32, losses2, shape, 1);
        cmp(&c, "second loss", l2, zgt_ref_find(st, "loss2"));
        zg_tensor_free(l2);
    }
    for (int i = 0; i < np; i++) {
        const char *name = zg_module_param_name(model, i);
        char what[128];
        snprintf(what, sizeof what, "%s after step %d", name, steps);
        r->final[i] = zg_tensor_clone(zg_module_param(model, i));
        cmp(&c, what, r->final[i], zgt_ref_find(st, "final.%s", name));
    }
    r->ok = c.failures == 0;

out:
    for (int k = 0; k < 8; k++) {
        zg_tensor_free(micro_x[k]);
        zg_tensor_free(micro_y[k]);
    }
    free(losses);
    free(losses2);
    for (int k = 0; k < 2; k++) zg_optim_free(opt[k]);
    zg_module_free(model);
    zg_safetensors_free(st);
    zg_arena_reset();
    r->worst = r->ok ? c.worst : INFINITY;
    scenarios_run++;
    if (r->ok) scenarios_passed++;
    if (c.worst > overall_worst) overall_worst = c.worst;
    printf("parity %-30s %s worst relative error %.3g\n", scenario, r->ok ? "ok  " : "FAIL", c.worst);
}

static const loop_opts plain = {.pattern = 'B', .set_to_none = true, .micro = 1};

static void check_scenario(const char *scenario, const loop_opts *o) {
    result r;
    run_scenario(scenario, o, &r);
    result_free(&r);
}

/* ------------------------------------------------------------------ */
/* Scenarios                                                            */
/* ------------------------------------------------------------------ */

/* Every scenario of the script's list, with the loop its reference
 * names: every optimizer and option, parameter groups, two losses into
 * the same grads, backward twice with retain_graph, hooks, two optimizers
 * on one model, each loss, the activations (the script says which). The
 * cases below also compare scenarios with each other. */
TEST(parity_every_scenario) {
    if (!zgt_refs_ready(&refs)) return;
    char path[512];
    snprintf(path, sizeof path, "%s/%s.txt", zgt_reference_dir(), INDEX);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f) return;
    char name[NAME_LEN];
    int n = 0;
    while (fscanf(f, "%63s", name) == 1 && n < MAX_SCENARIOS) {
        n++;
        zg_safetensors *st = zgt_refs_open(&refs, name);
        const char *desc = st ? zg_safetensors_metadata(st, "loop") : NULL;
        loop_opts o = plain;
        char freeze[NAME_LEN];
        if (st && !(desc && loop_parse(desc, &o, freeze, sizeof freeze)))
            zgt_fail(__FILE__, __LINE__, "%s: unreadable loop \"%s\"", name, desc ? desc : "(none)");
        else if (st)
            check_scenario(name, &o);
        zg_safetensors_free(st);
    }
    fclose(f);
    printf("parity: %d scenarios in %s\n", n, path);
    scenarios_listed = n;
    CHECK(n > 0 && n < MAX_SCENARIOS);
}

/* (a) zero_grad after the forward (A) or at the top of the step (B):
 * forward never writes .grad, so the runs are identical. */
TEST(parity_zero_grad_placement) {
    loop_opts a = plain;
    a.pattern = 'A';
    result ra, rb;
    run_scenario("pattern_a", &a, &ra);
    run_scenario("pattern_b", &plain, &rb);
    if (ra.ok && rb.ok) {
        CHECK(zgt_rel_err(ra.losses, rb.losses) == 0);
        for (int i = 0; i < ra.n_params; i++) {
            CHECK(zgt_rel_err(ra.final[i], rb.final[i]) == 0);
            CHECK(zgt_rel_err(ra.last_grad[i], rb.last_grad[i]) == 0);
        }
    }
    result_free(&ra);
    result_free(&rb);
}


/* (c) 0.weight frozen after step 0 under SGD momentum + weight decay: with
 * set_to_none=false its stale zero grad keeps it moving; with true its
 * grad is None and step() leaves it exactly where step 0 put it. */
TEST(parity_frozen_set_to_none) {
    loop_opts zero = plain, none = plain;
    zero.set_to_none = false;
    zero.freeze = none.freeze = "0.weight";
    result rz, rn;
    run_scenario("frozen_zero", &zero, &rz);
    run_scenario("frozen_none", &none, &rn);
    if (rz.ok && rn.ok) {
        /* 0.weight is the first parameter (registration order). */
        CHECK(zgt_rel_err(rn.final[0], rn.snap[0]) == 0);
        CHECK(zgt_rel_err(rz.final[0], rz.snap[0]) > 1e-3);
        CHECK(zgt_rel_err(rz.final[0], rn.final[0]) > 1e-3);
        /* The frozen weight's grad: a zero-filled tensor vs None. */
        CHECK(rz.last_grad[0] != NULL && rn.last_grad[0] == NULL);
        for (int64_t j = 0; rz.last_grad[0] && j < zg_tensor_numel(rz.last_grad[0]); j++)
            if (zg_tensor_get(rz.last_grad[0], j) != 0) {
                zgt_fail(__FILE__, __LINE__, "frozen_zero: grad of 0.weight[%lld] = %g, expected 0", (long long)j,
                         zg_tensor_get(rz.last_grad[0], j));
                break;
            }
    }
    result_free(&rz);
    result_free(&rn);
}



/* (f) 4 micro-batches of 16 with backward(loss / 4) equal one batch of 64. */
TEST(parity_grad_accumulation) {
    loop_opts micro = plain;
    micro.micro = 4;
    result rm, rf;
    run_scenario("accum_micro", &micro, &rm);
    run_scenario("accum_full", &plain, &rf);
    if (rm.ok && rf.ok) {
        CHECK(zgt_rel_err(rm.losses, rf.losses) <= TOL);
        for (int i = 0; i < rm.n_params; i++) {
            CHECK(zgt_rel_err(rm.final[i], rf.final[i]) <= TOL);
            CHECK(zgt_rel_err(rm.last_grad[i], rf.last_grad[i]) <= TOL);
        }
    }
    result_free(&rm);
    result_free(&rf);
}






/* Last (cases run in definition order): the figures to report. The
 * failures themselves are the scenarios' own. */
TEST(parity_summary) {
    printf("parity: %d of %d scenarios run pass (%d in all), worst relative error %.3g (tolerance %g)\n",
           scenarios_passed, scenarios_run, scenarios_listed, overall_worst, TOL);
    CHECK(scenarios_passed == scenarios_run);
}
