/* The training driver: the canonical loop
 *
 *     for each batch:  zero_grad -> forward -> loss -> backward -> step
 *                      -> zg_arena_reset()
 *
 * over the data loader, an evaluation after each epoch (no_grad, eval
 * mode), progress, metrics and checkpoints. The run's position and history
 * live in one zg__ckpt_state, which is exactly what a checkpoint saves, so
 * resuming restores the loop to the very step it stopped at. */
#include "train_internal.h"
#include "../data/data_internal.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <time.h>

typedef struct {
    zg_train_config cfg;
    zg_optim_config ocfg;
    zg_module *model;
    zg_optim *opt;
    zg_tensor **params;
    int n_params;
    zg_dataset *train_full, *train_ds, *test_full, *test_ds;
    zg_loader *train_ld, *test_ld;
    zg_text *text;          /* --model gpt: the text, */
    zg__text_id text_id;    /* what names it, */
    zg_tensor *xb, *yb;     /* and the one pair of [B, T] batch tensors */
    char *spec_json;        /* --model-file: the model's canonical JSON */
    zg__data_source src;    /* --csv / --images: the data's description */
    char run_dir[4096];
    char ckpt_name[64];
    char resumed_from[4200]; /* the checkpoint directory resumed, or "" */
    int lock_fd;             /* the run directory's lock (-1: not held) */
    zg__ckpt_state st; /* position, running sums and history */
    zg__progress prog;
    zg_grad_scaler *scaler; /* fp16 only */
    zg_sched *sched;        /* with a schedule */
    zg_accum *acc;          /* the window of micro-batches (1 without --accum) */
    int64_t last_ckpt_step;
    double wait0;           /* the train loader's wait when the epoch (re)started */
    int stopped_by;         /* the signal that stopped the run */
    /* --ddp: the wrapper that averages the gradients, this rank, the
     * ranks, and the weight of this rank's loss in the global batch's
     * (1 unless the batch does not split evenly). */
    zg_ddp *ddp;
    int rank, world;
    float loss_weight;
} trainer;

static void trainer_free(trainer *t) {
    zg_loader_free(t->train_ld);
    zg_loader_free(t->test_ld);
    if (t->train_ds != t->train_full) zg_dataset_free(t->train_ds);
    if (t->test_ds != t->test_full) zg_dataset_free(t->test_ds);
    zg_dataset_free(t->train_full);
    zg_dataset_free(t->test_full);
    zg_text_free(t->text);
    free(t->text_id.vocab_hex);
    zg_tensor_free(t->xb);
    zg_tensor_free(t->yb);
    free(t->spec_json);
    zg__data_source_free(&t->src);
    zg_accum_free(t->acc);
    zg_ddp_free(t->ddp);
    zg_sched_free(t->sched);
    zg_grad_scaler_free(t->scaler);
    zg_optim_free(t->opt);
    zg_module_free(t->model);
    free(t->params);
    zg__ckpt_state_free(&t->st);
    zg__run_unlock(&t->lock_fd);
}

/* Error text of a failed call, with a prefix saying what the driver was
 * doing (the inner text already names the failing function). */
static int fail_with(int rc, const char *what) {
    char inner[1024];
    snprintf(inner, sizeof inner, "%s", zg_last_error());
    return zg__fail(rc ? rc : ZG_ERR_STATE, "%s: %s", what, inner);
}

static const char *amp_name(int amp) {
    return amp == ZG_AUTOCAST_BF16 ? "bf16" : amp == ZG_AUTOCAST_FP16 ? "fp16" : "off";
}

/* ---- resuming ---------------------------------------------------------------- */

/* Whether the run's schedule was laid out over its length (a plateau
 * schedule follows the test loss instead, so a resume may add epochs). */
static bool sized_schedule(const zg_train_config *c) {
    return c->schedule[0] && strncmp(c->schedule, "plateau", 7) != 0;
}

/* The options a checkpoint must agree with for the run to continue
 * exactly; every difference is listed. */
static int check_match(const trainer *t, const zg__ckpt_state *s, const char *ckpt) {
    const zg_train_config *c = &t->cfg;
    char msg[1200] = "";
    size_t n = 0;
#define MISMATCH(...)                                                                 \
    do {                                                                              \
        if (n < sizeof msg) n += (size_t)snprintf(msg + n, sizeof msg - n, n ? "; " : ""); \
        if (n < sizeof msg) n += (size_t)snprintf(msg + n, sizeof msg - n, __VA_ARGS__); \
    } while (0)
    if (s->model != c->model)
        MISMATCH("model is %s in the checkpoint, %s here", zg_train_model_name(s->model), zg_train_model_name(c->model));
    if (s->optimizer != c->optimizer)
        MISMATCH("optimizer is %s in the checkpoint, %s here", zg_train_optim_name(s->optimizer),
                 zg_train_optim_name(c->optimizer));
    if (s->optimizer == c->optimizer) {
        if (s->lr != t->ocfg.lr) MISMATCH("lr is %g in the checkpoint, %g here", s->lr, t->ocfg.lr);
        if (s->weight_decay != t->ocfg.weight_decay)
            MISMATCH("weight decay is %g in the checkpoint, %g here", s->weight_decay, t->ocfg.weight_decay);
        if (zg__train_has_momentum(c->optimizer) && s->momentum != t->ocfg.momentum)
            MISMATCH("momentum is %g in the checkpoint, %g here", s->momentum, t->ocfg.momentum);
    }
    if (s->batch_size != c->batch_size)
        MISMATCH("batch size is %lld in the checkpoint, %lld here", (long long)s->batch_size,
                 (long long)c->batch_size);
    if (s->world_size != t->world)
        MISMATCH("it was trained on %d rank%s (--ddp), this run has %d: resume it with mpirun -np %d zgrad train --ddp "
                 "(the global batch would change)", s->world_size, s->world_size == 1 ? "" : "s", t->world,
                 s->world_size);
    if (s->seed != c->seed)
        MISMATCH("seed is %" PRIu64 " in the checkpoint, %" PRIu64 " here", s->seed, c->seed);
    if (s->limit_train != c->limit_train || s->limit_test != c->limit_test)
        MISMATCH("sample limits are %lld/%lld in the checkpoint, %lld/%lld here", (long long)s->limit_train,
                 (long long)s->limit_test, (long long)c->limit_train, (long long)c->limit_test);
    if (s->eval_batch_size != c->eval_batch_size)
        MISMATCH("evaluation batch size is %lld in the checkpoint, %lld here", (long long)s->eval_batch_size,
                 (long long)c->eval_batch_size);
    if (s->mean != c->mean || s->std != c->std)
        MISMATCH("normalisation is (%g, %g) in the checkpoint, (%g, %g) here", (double)s->mean, (double)s->std,
                 (double)c->mean, (double)c->std);
    if (s->accum != c->accum) MISMATCH("accum is %d in the checkpoint, %d here", s->accum, c->accum);
    if (s->clip_norm != c->clip_norm && (s->clip_norm > 0 || c->clip_norm > 0))
        MISMATCH("clip norm is %g in the checkpoint, %g here (negative: off)", s->clip_norm, c->clip_norm);
    if (strcmp(s->schedule, c->schedule) != 0)
        MISMATCH("schedule is '%s' in the checkpoint, '%s' here", s->schedule, c->schedule);
    if (s->amp != c->amp) MISMATCH("amp is %s in the checkpoint, %s here", amp_name(s->amp), amp_name(c->amp));
    if (s->optimizer == c->optimizer && (c->optimizer == ZG_ADAM || c->optimizer == ZG_ADAMW) &&
        (s->beta1 != t->ocfg.beta1 || s->beta2 != t->ocfg.beta2))
        MISMATCH("betas are (%g, %g) in the checkpoint, (%g, %g) here", s->beta1, s->beta2, t->ocfg.beta1,
                 t->ocfg.beta2);
    if (s->model == ZG_MODEL_GPT && c->model == ZG_MODEL_GPT) {
        const zg_gpt_config *a = &s->gpt, *b = &c->gpt;
        if (a->n_layer != b->n_layer || a->n_head != b->n_head || a->n_embd != b->n_embd ||
            a->block_size != b->block_size || a->dropout != b->dropout || a->bias != b->bias)
            MISMATCH("the GPT is %lld layers, %lld heads, %lld embd, block %lld, dropout %g, bias %d in the "
                     "checkpoint, %lld, %lld, %lld, %lld, %g, %d here", (long long)a->n_layer, (long long)a->n_head,
                     (long long)a->n_embd, (long long)a->block_size, (double)a->dropout, a->bias,
                     (long long)b->n_layer, (long long)b->n_head, (long long)b->n_embd, (long long)b->block_size,
                     (double)b->dropout, b->bias);
        if (s->eval_interval != c->eval_interval || s->eval_iters != c->eval_iters)
            MISMATCH("evaluation every %lld steps on %lld batches in the checkpoint, %lld on %lld here",
                     (long long)s->eval_interval, (long long)s->eval_iters, (long long)c->eval_interval,
                     (long long)c->eval_iters);
        if (s->text_vocab != (int)c->text_vocab || s->val_fraction != c->val_fraction)
            MISMATCH("the text's vocabulary or validation fraction differs (%s, %g in the checkpoint)",
                     s->text_vocab == ZG_TEXT_BYTE ? "byte" : "char", s->val_fraction);
        if (sized_schedule(c) && s->iters != c->iters)
            MISMATCH("the schedule spans %lld steps in the checkpoint, %lld here", (long long)s->iters,
                     (long long)c->iters);
    }
    /* The schedule's length was derived from the planned epochs. */
    if (c->model != ZG_MODEL_GPT && sized_schedule(c) && !strcmp(s->schedule, c->schedule) && s->epochs != c->epochs)
        MISMATCH("the schedule spans %d epochs in the checkpoint, %d here", s->epochs, c->epochs);
#undef MISMATCH
    if (n) return zg__fail(ZG_ERR_FORMAT, "zg_train_run: checkpoint '%s' does not match this run: %s", ckpt, msg);
    return ZG_OK;
}

int zg_train_checkpoint_config(const char *path, zg_train_config *cfg) {
    const char *fn = "zg_train_checkpoint_config";
    if (!path || !cfg) return zg__fail(ZG_ERR_ARG, "%s: NULL argument", fn);
    char ckpt[4200], run[4200];
    zg__ckpt_state s;
    int rc = zg__ckpt_locate(fn, path, ckpt, sizeof ckpt, run, sizeof run);
    if (!rc) rc = zg__ckpt_read_state(fn, ckpt, &s);
    if (rc) return rc;
    cfg->model = s.model;
    cfg->optimizer = s.optimizer;
    cfg->lr = s.lr;
    cfg->weight_decay = s.weight_decay;
    cfg->momentum = zg__train_has_momentum(s.optimizer) ? s.momentum : -1;
    cfg->epochs = s.epochs;
    cfg->batch_size = s.batch_size;
    cfg->seed = s.seed;
    cfg->limit_train = s.limit_train;
    cfg->limit_test = s.limit_test;
    cfg->eval_batch_size = s.eval_batch_size;
    cfg->mean = s.mean;
    cfg->std = s.std;
    cfg->checkpoint_every_steps = s.checkpoint_every_steps;
    cfg->accum = s.accum;
    cfg->clip_norm = s.clip_norm;
    memcpy(cfg->schedule, s.schedule, sizeof cfg->schedule);
    cfg->amp = s.amp;
    const bool adam = s.optimizer == ZG_ADAM || s.optimizer == ZG_ADAMW;
    cfg->beta1 = adam ? s.beta1 : -1;
    cfg->beta2 = adam ? s.beta2 : -1;
    if (s.model == ZG_MODEL_GPT) {
        cfg->gpt = s.gpt;
        cfg->iters = s.iters;
        cfg->eval_interval = s.eval_interval;
        cfg->eval_iters = s.eval_iters;
        memcpy(cfg->text_path, s.text_path, sizeof cfg->text_path);
        memcpy(cfg->corpus, s.corpus, sizeof cfg->corpus);
        cfg->text_vocab = (zg_text_vocab)s.text_vocab;
        cfg->val_fraction = s.val_fraction;
    }
    rc = zg__data_restore_config(fn, s.data_json, cfg);
    zg__ckpt_state_free(&s);
    return rc;
}

/* ---- set-up -------------------------------------------------------------------- */

/* The data set of one part (unless --csv / --images loaded it), cut to
 * the part's sample limit. */
static int load_split(const zg_train_config *c, bool train, zg_dataset **full, zg_dataset **ds) {
    if (!*full) *full = zg_dataset_load_mnist_dir(c->data_dir, train);
    if (!*full) return ZG_ERR_IO;
    int64_t limit = train ? c->limit_train : c->limit_test;
    *ds = limit > 0 && limit < zg_dataset_size(*full) ? zg_dataset_head(*full, limit) : *full;
    return *ds ? ZG_OK : ZG_ERR_NOMEM;
}

/* runs/<timestamp>, with a suffix if that exists already. */
static void default_run_dir(char *out, size_t n) {
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    snprintf(out, n, "runs/%s", stamp);
    for (int k = 2; zg__path_exists(out) && k < 1000; k++) snprintf(out, n, "runs/%s-%d", stamp, k);
}

static bool same_dir(const char *a, const char *b) {
    char ra[PATH_MAX], rb[PATH_MAX];
    if (!realpath(a, ra) || !realpath(b, rb)) return !strcmp(a, b);
    return !strcmp(ra, rb);
}

/* ---- outputs ------------------------------------------------------------------- */

static int fill_state_options(trainer *t) {
    zg__ckpt_state *s = &t->st;
    s->model = t->cfg.model;
    s->optimizer = t->cfg.optimizer;
    s->lr = t->ocfg.lr;
    s->momentum = t->ocfg.momentum;
    s->weight_decay = t->ocfg.weight_decay;
    s->batch_size = t->cfg.batch_size;
    s->world_size = t->world;
    s->seed = t->cfg.seed;
    s->limit_train = t->cfg.limit_train;
    s->limit_test = t->cfg.limit_test;
    s->eval_batch_size = t->cfg.eval_batch_size;
    s->mean = t->cfg.mean;
    s->std = t->cfg.std;
    s->epochs = t->cfg.epochs;
    s->checkpoint_every_steps = t->cfg.checkpoint_every_steps;
    s->accum = t->cfg.accum;
    s->clip_norm = t->cfg.clip_norm > 0 ? t->cfg.clip_norm : -1;
    memcpy(s->schedule, t->cfg.schedule, sizeof s->schedule);
    s->amp = t->cfg.amp;
    s->beta1 = t->ocfg.beta1;
    s->beta2 = t->ocfg.beta2;
    free(s->data_json);
    s->data_json = t->src.json ? zg__strdup(t->src.json) : NULL;
    if (t->src.json && !s->data_json) return zg__fail(ZG_ERR_NOMEM, "zg_train_run: out of memory");
    if (t->cfg.model == ZG_MODEL_FILE) {
        free(s->model_spec);
        s->model_spec = zg__strdup(t->spec_json);
        return s->model_spec ? ZG_OK : zg__fail(ZG_ERR_NOMEM, "zg_train_run: out of memory");
    }
    if (t->cfg.model != ZG_MODEL_GPT) return ZG_OK;
    s->gpt = t->cfg.gpt;
    s->gpt.vocab_size = zg_text_vocab_size(t->text);
    s->iters = t->cfg.iters;
    s->eval_interval = t->cfg.eval_interval;
    s->eval_iters = t->cfg.eval_iters;
    memcpy(s->text_path, t->cfg.text_path, sizeof s->text_path);
    memcpy(s->corpus, t->cfg.corpus, sizeof s->corpus);
    s->text_vocab = (int)t->cfg.text_vocab;
    s->val_fraction = t->cfg.val_fraction;
    s->text_bytes = t->text_id.bytes;
    s->text_crc = t->text_id.crc;
    free(s->vocab_hex);
    s->vocab_hex = zg__strdup(t->text_id.vocab_hex);
    return s->vocab_hex ? ZG_OK : zg__fail(ZG_ERR_NOMEM, "zg_train_run: out of memory");
}

/* ---- data parallel (--ddp): the pieces in ddp_share.c ---------------------------- */

static int any_rank(const trainer *t, bool flag) { return zg__train_any_rank(t->ddp != NULL, flag); }

/* This rank's share of the batch (x, y), and its loss weight. */
static int shard_batch(trainer *t, zg_tensor **x, zg_tensor **y) {
    t->loss_weight = 1;
    return t->ddp ? zg__train_shard(t->rank, t->world, x, y, &t->loss_weight) : ZG_OK;
}

/* --ddp: this process's place in the world; the other ranks than 0 log
 * and show nothing. */
static int ddp_world(trainer *t) {
    t->world = 1;
    t->loss_weight = 1;
    if (!t->cfg.ddp) return ZG_OK;
    int rc = zg__train_ddp_world(t->cfg.ddp_timeout, &t->rank, &t->world);
    if (rc) return rc;
    if (t->cfg.inject_rank && t->cfg.inject_rank - 1 != t->rank) t->cfg.inject_bad_batch = t->cfg.inject_nan_loss = 0;
    if (t->rank) {
        t->cfg.log = NULL;
        t->cfg.progress = ZG_PROGRESS_OFF;
    }
    return ZG_OK;
}

static int save_checkpoint(trainer *t) {
    zg_rng_get_state(t->st.rng);
    free(t->st.sched_json);
    t->st.sched_json = NULL;
    if (t->sched && !(t->st.sched_json = zg_sched_state_json(t->sched)))
        return fail_with(ZG_ERR_NOMEM, "zg_train_run: saving the scheduler's state");
    t->st.has_scaler = t->scaler != NULL;
    if (t->scaler && zg_grad_scaler_get_state(t->scaler, &t->st.scaler))
        return fail_with(ZG_ERR_STATE, "zg_train_run: saving the GradScaler's state");
    if (!t->ddp) return zg__ckpt_save(t->run_dir, t->model, t->opt, &t->st, t->ckpt_name);
    /* --ddp: rank 0 writes (the ranks' states are identical), and no rank
     * goes on before it has: the all-reduce of its outcome is a barrier. */
    int rc = t->rank == 0 ? zg__ckpt_save(t->run_dir, t->model, t->opt, &t->st, t->ckpt_name) : ZG_OK;
    if (t->rank) snprintf(t->ckpt_name, sizeof t->ckpt_name, "(rank 0's)");
    int failed = any_rank(t, rc != ZG_OK);
    if (failed < 0) return failed;
    return rc ? rc : failed ? zg__fail(ZG_ERR_STATE, "zg_train_run: rank 0 failed to write the checkpoint") : ZG_OK;
}

/* metrics.jsonl, curves.svg, the TensorBoard event file and
 * model.safetensors: derived from the checkpoint, each replaced
 * atomically. */
static int write_outputs(trainer *t, bool weights) {
    if (t->rank) return ZG_OK;
    int rc = zg__write_metrics_jsonl(t->run_dir, t->st.metrics, t->st.n_metrics);
    if (!rc) rc = zg__write_curves_svg(t->run_dir, t->st.metrics, t->st.n_metrics);
    if (!rc) rc = zg__write_tfevents(t->run_dir, t->st.metrics, t->st.n_metrics);
    if (!rc && weights) {
        char p[4200];
        snprintf(p, sizeof p, "%s/model.safetensors", t->run_dir);
        rc = zg_module_save(t->model, p);
    }
    return rc;
}

static int push_metrics(trainer *t, const zg__epoch_metrics *m) {
    zg__epoch_metrics *nm = zg__realloc(t->st.metrics, ((size_t)t->st.n_metrics + 1) * sizeof *nm);
    if (!nm) return zg__fail(ZG_ERR_NOMEM, "zg_train_run: out of memory");
    t->st.metrics = nm;
    nm[t->st.n_metrics++] = *m;
    return ZG_OK;
}

/* ---- the loop -------------------------------------------------------------------- */

/* The signal that asked the run to stop (0: none); set by the handler,
 * read between steps. */
static volatile sig_atomic_t g_stop_signal;

static void on_stop_signal(int sig) { g_stop_signal = sig; }

/* The signals that stop a run with a checkpoint (handle_signals): ^C, kill,
 * a closed terminal, and a closed output pipe (zgrad train | head -1: the
 * write that finds no reader fails with EPIPE instead of killing us). */
static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};
#define N_STOP_SIGNALS ((int)(sizeof stop_signals / sizeof stop_signals[0]))

static const char *stop_signal_name(int sig) {
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP (the terminal closed)"
         : sig == SIGPIPE ? "SIGPIPE (the output was closed)" : "a signal";
}


static bool is_lm(const trainer *t) { return t->cfg.model == ZG_MODEL_GPT; }

/* Batches in a full epoch: the loader's, or for a language model the
 * eval_interval steps' micro-batches. */
static int64_t full_epoch_batches(const trainer *t) {
    return is_lm(t) ? t->cfg.eval_interval * t->cfg.accum : zg_loader_num_batches(t->train_ld);
}

/* A language model's steps left after the current epoch's start. */
static int64_t lm_steps_left(const trainer *t) { return t->cfg.iters - (t->st.global_step - t->st.epoch_steps); }

/* Batches in the current epoch: a language model's interval is cut short
 * by the end of the run (iters not a multiple of eval_interval, or a run
 * resumed with more --iters after a short last interval). */
static int64_t epoch_batches(const trainer *t) {
    if (!is_lm(t)) return full_epoch_batches(t);
    const int64_t left = lm_steps_left(t);
    return (left < t->cfg.eval_interval ? left : t->cfg.eval_interval) * t->cfg.accum;
}

static bool more_to_train(const trainer *t) {
    return is_lm(t) ? t->st.global_step < t->cfg.iters : t->st.epoch < t->cfg.epochs;
}

/* The batch number the injection options count in: 1-based over the run.
 * A language model's batch k is the text's windows for key k - 1, counted
 * over the run's batches whatever its intervals were, so a resumed run
 * draws exactly the windows the uninterrupted one did. */
static int64_t run_batch(const trainer *t) {
    return (is_lm(t) ? t->st.lm_batches : t->st.epoch * full_epoch_batches(t)) + t->st.next_batch + 1;
}

/* The next batch: 1 with x, y set, 0 at the end of the loader's epoch, or
 * < 0 when it failed to load. */
static int next_batch(trainer *t, zg_tensor **x, zg_tensor **y) {
    int rc;
    if (!is_lm(t)) {
        if ((rc = zg_loader_next(t->train_ld, x, y)) <= 0) return rc;
    } else {
        rc = zg__text_fill_batch(t->text, false, t->cfg.seed, run_batch(t) - 1, t->xb, t->yb);
        *x = t->xb;
        *y = t->yb;
        if (rc) return rc;
    }
    return shard_batch(t, x, y) ? -1 : 1;
}

/* What a batch counts in the running loss and the progress rate: samples,
 * or a language model's tokens. */
static int64_t batch_units(const trainer *t, const zg_tensor *y) {
    if (t->loss_weight == 0) return 0; /* --ddp: a rank without a share */
    return is_lm(t) ? zg_tensor_numel(y) : zg_tensor_size(y, 0);
}

static void warn(trainer *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void warn(trainer *t, const char *fmt, ...) {
    if (t->rank) return; /* --ddp: rank 0 speaks for all */
    zg__progress_clear(&t->prog);
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "zgrad train: warning: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
}

/* A skipped batch: counted, reported, and fatal after max_bad_steps in a
 * row. Its gradient is gone already (never computed, or discarded). */
static int skip_batch(trainer *t, bool nan_loss, const char *why) {
    zg__ckpt_state *s = &t->st;
    if (nan_loss) s->bad_losses++;
    else s->bad_batches++;
    s->bad_in_row++;
    warn(t, "epoch %lld, batch %lld: %s; batch skipped (%lld in a row)", (long long)s->epoch + 1,
         (long long)s->next_batch + 1, why, (long long)s->bad_in_row);
    s->next_batch++;
    if (s->bad_in_row >= t->cfg.max_bad_steps)
        return zg__fail(ZG_ERR_STATE,
                        "zg_train_run: %lld batches in a row were skipped (the last: %s at epoch %lld, batch %lld); "
                        "stopping (the limit is %d in a row, --max-bad-steps)",
                        (long long)s->bad_in_row, why, (long long)s->epoch + 1, (long long)s->next_batch,
                        t->cfg.max_bad_steps);
    return ZG_OK;
}

/* One micro-batch: forward (under autocast with --amp) -> loss -> backward
 * of loss / accum into the window's grads. *outcome: 0 used, 1 skipped
 * for a non-finite loss (no backward ran), 2 skipped because the batch
 * failed after its backward (the window's grads were discarded). Every
 * tensor the step makes dies in the arena reset. */
static int micro_step(trainer *t, zg_tensor *x, zg_tensor *y, int64_t rb, double *loss_out, int64_t *units,
                      int *outcome) {
    *outcome = 0;
    int rc = t->ddp ? zg_ddp_before_forward(t->ddp) : ZG_OK;
    if (!rc && t->cfg.amp) rc = zg_autocast_enter((zg_autocast_type)t->cfg.amp);
    if (rc) return rc;
    zg_tensor *loss;
    if (is_lm(t)) {
        loss = zg__lm_loss(t->model, x, y, NULL); /* forward, loss */
    } else {
        zg_tensor *out = zg_module_forward(t->model, x); /* forward */
        loss = zg__data_loss(&t->src, out, y);          /* loss: cross-entropy, or MSE */
    }
    if (t->cfg.amp) zg_autocast_exit();
    if (!loss) {
        zg_arena_reset();
        return ZG_ERR_STATE;
    }
    double l = zg_tensor_item(loss);
    if (t->cfg.inject_nan_loss > 0 && rb >= t->cfg.inject_nan_loss && rb < t->cfg.inject_nan_loss + t->cfg.inject_nan_count)
        l = NAN;
    if (t->ddp && (rc = zg__train_agree_loss(&l, units))) {
        zg_arena_reset();
        return rc;
    }
    if (!isfinite(l)) {
        /* Checked before the backward, so the window's grads are intact. */
        *outcome = 1;
        *loss_out = l;
        zg_arena_reset();
        return ZG_OK;
    }
    if (t->loss_weight != 1 && !(loss = zg_mul_scalar(loss, t->loss_weight))) {
        zg_arena_reset();
        return ZG_ERR_NOMEM;
    }
    rc = zg_accum_backward(t->acc, loss); /* backward */
    zg_arena_reset();
    if (rc < 0) return rc;
    if (rb == t->cfg.inject_bad_backward) {
        /* The failure came after the backward had written into the grads:
         * the whole window is dropped, so nothing of it reaches a step. */
        zg_accum_discard(t->acc);
        *outcome = 2;
        return ZG_OK;
    }
    *loss_out = l;
    return ZG_OK;
}

/* The step closing a window (full, or the short last one of the epoch):
 * (unscale_, clip,) step (, update), zero_grad, then the schedule. */
static int window_step(trainer *t, bool flush) {
    bool stepped;
    if (!flush && zg_accum_pending(t->acc) < zg_accum_size(t->acc)) return ZG_OK;
    if (zg_accum_pending(t->acc) == 0) return ZG_OK;
    int rc = flush ? zg_accum_flush(t->acc, &stepped) : zg_accum_step(t->acc, &stepped);
    /* The scheduler follows the optimizer's step count, also when the
     * scaler skipped a step for inf/NaN grads (as PyTorch's recipe);
     * ReduceLROnPlateau steps per epoch instead (feed_plateau). */
    if (!rc && t->sched && !zg_sched_needs_metric(t->sched)) rc = zg_sched_step(t->sched);
    if (rc) return rc;
    t->st.epoch_steps++;
    t->st.global_step++;
    return ZG_OK;
}

/* The signal that asks the run to stop (0: none; < 0: the all-reduce
 * failed). With --ddp any rank's, so that all stop at the same step
 * (SIGTERM when it came to another rank). */
static int agreed_signal(const trainer *t) {
    const int sig = g_stop_signal;
    const int any = any_rank(t, sig != 0);
    return any <= 0 ? any : sig ? sig : SIGTERM;
}

static int stop_for_signal(trainer *t, int sig) {
    int rc = save_checkpoint(t);
    if (rc) return rc;
    t->stopped_by = sig;
    zg__progress_clear(&t->prog);
    return zg__fail(ZG_ERR_STATE,
                    "zg_train_run: stopped by %s after %lld optimizer steps; checkpoint %s/%s written; continue with "
                    "--resume %s",
                    stop_signal_name(sig), (long long)t->st.global_step,
                    t->run_dir, t->ckpt_name, t->run_dir);
}

/* A batch that failed to load (or is the one --inject-bad-batch names) is
 * skipped; the loader resumes after it. */
static int skip_unloaded(trainer *t, int got, int64_t rb, int64_t nb) {
    zg__ckpt_state *s = &t->st;
    char why[600];
    snprintf(why, sizeof why, "the batch failed to load (%s)",
             got < 0                           ? zg_last_error()
             : rb == t->cfg.inject_bad_batch ? "injected by --inject-bad-batch"
                                               : "on another rank");
    zg_arena_reset();
    int rc = skip_batch(t, false, why);
    if (!rc && got < 0 && s->next_batch < nb && !is_lm(t)) rc = zg_loader_start_epoch(t->train_ld, s->epoch, s->next_batch);
    return rc;
}

/* One loaded batch of b samples: its micro-step, then the window's step,
 * or the batch skipped when its loss is not finite or its backward failed
 * (injected). */
static int step_batch(trainer *t, zg_tensor *x, zg_tensor *y, int64_t rb, int64_t *units) {
    zg__ckpt_state *s = &t->st;
    double loss = 0;
    int outcome;
    int rc = micro_step(t, x, y, rb, &loss, units, &outcome);
    const int64_t b = *units;
    if (!rc && outcome)
        return skip_batch(t, outcome == 1, outcome == 1 ? (isnan(loss) ? "the loss is nan" : "the loss is inf")
                                                        : "the batch failed after its backward "
                                                          "(injected by --inject-bad-backward)");
    if (!rc) rc = window_step(t, false);
    if (rc) {
        char what[96];
        snprintf(what, sizeof what, "zg_train_run: epoch %lld, step %lld", (long long)s->epoch + 1,
                 (long long)s->next_batch + 1);
        return fail_with(rc, what);
    }
    s->bad_in_row = 0;
    s->epoch_loss_sum += loss * (double)b;
    s->epoch_samples += b;
    s->next_batch++;
    return ZG_OK;
}

/* Between two windows: stop for a signal (with a checkpoint), or write the
 * every-N-steps checkpoint. Checkpoints only between windows: grads are
 * not saved. A step checkpoint at the epoch's last batch would be followed
 * at once by the epoch's own. */
static int between_windows(trainer *t, int64_t nb, double t0, double before) {
    zg__ckpt_state *s = &t->st;
    if (zg_accum_pending(t->acc) != 0 || s->next_batch >= nb) return ZG_OK;
    const int sig = agreed_signal(t);
    if (sig < 0) return sig;
    if (sig) {
        s->epoch_seconds = before + (zg__now() - t0);
        return stop_for_signal(t, sig);
    }
    if (t->cfg.checkpoint_every_steps > 0 && s->global_step > t->last_ckpt_step &&
        s->global_step % t->cfg.checkpoint_every_steps == 0) {
        s->epoch_seconds = before + (zg__now() - t0);
        t->last_ckpt_step = s->global_step;
        int rc = save_checkpoint(t);
        if (rc) zg__progress_clear(&t->prog);
        return rc;
    }
    return ZG_OK;
}

/* A NaN or infinite test loss: the weights diverged. The epoch is not
 * saved, so the run directory keeps the last checkpoint before it. */
static int diverged(const trainer *t, double loss) {
    char kept[200] = "nothing was saved";
    if (t->ckpt_name[0]) snprintf(kept, sizeof kept, "the run directory keeps its last checkpoint, %s", t->ckpt_name);
    return zg__fail(ZG_ERR_NONFINITE,
                    "zg_train_run: the %s loss is %s after epoch %lld: the training diverged (try a lower --lr or "
                    "--clip-norm); this epoch was not saved, %s",
                    is_lm(t) ? "validation" : "test", isnan(loss) ? "nan" : "inf", (long long)t->st.epoch + 1, kept);
}

/* The test set's (or a language model's validation) loss and accuracy.
 * With --amp the evaluation forward runs under the training's autocast
 * type too, as a PyTorch loop evaluating inside its autocast context:
 * faster, and the metrics are those of the model as trained. */
static int evaluate(trainer *t, double *loss, double *acc) {
    int rc = t->cfg.amp ? zg_autocast_enter((zg_autocast_type)t->cfg.amp) : ZG_OK;
    if (rc) return fail_with(rc, "zg_train_run: evaluation");
    if (is_lm(t)) {
        rc = zg__lm_evaluate(t->model, t->text, &t->cfg, t->xb, t->yb, loss, acc);
    } else {
        rc = zg__data_evaluate(&t->src, t->model, t->test_ld, loss, acc);
    }
    if (t->cfg.amp) zg_autocast_exit();
    return rc ? fail_with(rc, "zg_train_run: evaluation") : ZG_OK;
}

static void log_epoch(const trainer *t, const zg__epoch_metrics *m, int64_t units) {
    if (!t->cfg.log) return;
    if (is_lm(t))
        fprintf(t->cfg.log, "step %lld/%lld - train loss %.4f - val loss %.4f - val acc %.2f%% - %.1fs - %.0f tokens/s\n",
                (long long)t->st.global_step, (long long)t->cfg.iters, m->train_loss, m->test_loss, 100 * m->test_acc,
                m->seconds, m->seconds > 0 ? (double)units / m->seconds : 0.0);
    else if (m->r2)
        fprintf(t->cfg.log, "epoch %d/%d - train loss %.4f - val loss %.4f - val r2 %.4f - %.1fs\n", m->epoch,
                t->cfg.epochs, m->train_loss, m->test_loss, m->test_acc, m->seconds);
    else
        fprintf(t->cfg.log, "epoch %d/%d - train loss %.4f - %s loss %.4f - %s acc %.2f%% - %.1fs\n", m->epoch,
                t->cfg.epochs, m->train_loss, t->src.json ? "val" : "test", m->test_loss,
                t->src.json ? "val" : "test", 100 * m->test_acc, m->seconds);
    fflush(t->cfg.log);
}

/* --schedule plateau: ReduceLROnPlateau hears the epoch's test (or
 * validation) loss, as PyTorch's scheduler.step(val_loss) after
 * evaluating; the checkpoint that follows holds its state. */
static int feed_plateau(trainer *t, double test_loss) {
    if (!t->sched || !zg_sched_needs_metric(t->sched)) return ZG_OK;
    int rc = zg_sched_step_metric(t->sched, test_loss);
    return rc ? fail_with(rc, "zg_train_run: the plateau schedule") : ZG_OK;
}

/* After the epoch's batches: evaluation, the epoch's metrics, the
 * checkpoint and the other files, the log line. */
static int finish_epoch(trainer *t, double mean_loss, double t0, double before) {
    zg__ckpt_state *s = &t->st;
    double test_loss = NAN, test_acc = NAN;
    int rc = evaluate(t, &test_loss, &test_acc);
    if (rc) return rc;
    if (!isfinite(test_loss)) return diverged(t, test_loss);
    const int64_t units = s->epoch_samples;
    zg__epoch_metrics m = {
        .epoch = (int)s->epoch + 1,
        .train_loss = mean_loss,
        .test_loss = test_loss,
        .test_acc = test_acc,
        .seconds = before + (zg__now() - t0),
        .steps = s->epoch_steps,
        .lr = zg_optim_get_hparam(t->opt, 0, ZG_HP_LR),
        .samples = units,
        .grad_norm = zg_accum_last_norm(t->acc),
        .r2 = t->src.d.task == ZG_TASK_REGRESS,
        .data_wait = is_lm(t) ? NAN : zg_loader_wait_seconds(t->train_ld) - t->wait0,
    };
    zg_ddp_stats ds;
    if (t->ddp && !zg_ddp_get_stats(t->ddp, &ds)) {
        m.ddp = true;
        m.allreduces = ds.allreduces;
        m.comm_seconds = ds.comm_seconds;
        m.overlap_seconds = ds.overlap_seconds;
        m.wait_seconds = ds.wait_seconds;
        zg_ddp_reset_stats(t->ddp);
    }
    rc = push_metrics(t, &m);
    if (!rc) rc = feed_plateau(t, test_loss);
    if (rc) return rc;
    if (is_lm(t)) s->lm_batches += s->next_batch;
    s->epoch++;
    s->next_batch = 0;
    s->epoch_loss_sum = 0;
    s->epoch_samples = 0;
    s->epoch_steps = 0;
    s->epoch_seconds = 0;
    /* The checkpoint first: it is what a resume trusts; the other files
     * are rewritten from it. */
    rc = save_checkpoint(t);
    if (!rc) rc = write_outputs(t, true);
    if (rc) return rc;
    log_epoch(t, &m, units);
    /* A stop asked for during the epoch's last window: its checkpoint is
     * the one just written. */
    const int sig = agreed_signal(t);
    if (sig > 0 && more_to_train(t)) return stop_for_signal(t, sig);
    return sig < 0 ? sig : ZG_OK;
}

/* Trains from the current position to the end of the epoch. */
static int train_epoch(trainer *t) {
    zg__ckpt_state *s = &t->st;
    int64_t nb = epoch_batches(t);
    if (is_lm(t)) /* the intervals left, for the progress display */
        t->cfg.epochs = (int)(s->epoch + (lm_steps_left(t) + t->cfg.eval_interval - 1) / t->cfg.eval_interval);
    if (s->next_batch > nb)
        return zg__fail(ZG_ERR_FORMAT, "zg_train_run: the checkpoint's position (batch %lld) is past the epoch's %lld batches",
                        (long long)s->next_batch, (long long)nb);
    int rc = is_lm(t) ? ZG_OK : zg_loader_start_epoch(t->train_ld, s->epoch, s->next_batch);
    if (rc) return fail_with(rc, "zg_train_run: starting the epoch");
    t->wait0 = is_lm(t) ? 0 : zg_loader_wait_seconds(t->train_ld);
    double t0 = zg__now(), before = s->epoch_seconds;
    zg__progress_begin(&t->prog, t->cfg.progress, t->cfg.progress_interval, (int)s->epoch + 1, t->cfg.epochs, nb,
                       s->next_batch, is_lm(t) ? "tokens" : "samples");
    zg_module_train(t->model, true);
    zg_tensor *x, *y;
    int got;
    while (s->next_batch < nb && (got = next_batch(t, &x, &y)) != 0) {
        int64_t rb = run_batch(t);
        /* --ddp: a batch that failed on any rank is skipped by all. */
        const int unloaded = any_rank(t, got < 0 || rb == t->cfg.inject_bad_batch);
        int64_t b = unloaded ? 0 : batch_units(t, y);
        rc = unloaded < 0 ? unloaded : unloaded ? skip_unloaded(t, got, rb, nb) : step_batch(t, x, y, rb, &b);
        if (rc) {
            zg__progress_clear(&t->prog);
            return rc;
        }
        if (unloaded) continue;
        zg__progress_update(&t->prog, s->next_batch,
                            s->epoch_samples ? s->epoch_loss_sum / (double)s->epoch_samples : NAN, b);
        if ((rc = between_windows(t, nb, t0, before))) return rc;
    }
    /* The epoch's short last window. */
    rc = window_step(t, true);
    if (rc) {
        zg__progress_clear(&t->prog);
        return fail_with(rc, "zg_train_run: the epoch's last step");
    }
    double mean_loss = s->epoch_samples ? s->epoch_loss_sum / (double)s->epoch_samples : NAN;
    zg__progress_end(&t->prog, s->next_batch, mean_loss);
    return finish_epoch(t, mean_loss, t0, before);
}

/* The run directory's lock, taken once the directory exists; a run that
 * does not continue in place also needs it fresh, which is checked under
 * the lock, so two processes cannot both find it so. */
static int claim_run_dir(trainer *t, bool in_place) {
    if (t->lock_fd >= 0) return ZG_OK;
    int rc = zg__run_lock("zg_train_run", t->run_dir, &t->lock_fd);
    return rc || in_place ? rc : zg__run_check_fresh("zg_train_run", t->run_dir, t->cfg.force);
}

/* The checkpoint to continue: its state, checked against this run. */
static int read_resume(trainer *t, const char *ckpt, zg__ckpt_state *rs) {
    const zg_train_config *c = &t->cfg;
    int rc = zg__ckpt_read_state("zg_train_run", ckpt, rs);
    if (!rc) rc = check_match(t, rs, ckpt);
    if (!rc && c->model == ZG_MODEL_GPT && rs->global_step > c->iters)
        rc = zg__fail(ZG_ERR_ARG, "zg_train_run: the run in '%s' has done %lld steps already; ask for --iters >= %lld",
                      c->resume_dir, (long long)rs->global_step, (long long)rs->global_step);
    else if (!rc && c->model != ZG_MODEL_GPT && rs->epoch > c->epochs)
        rc = zg__fail(ZG_ERR_ARG, "zg_train_run: the run in '%s' has done %lld epochs already; ask for >= %lld",
                      c->resume_dir, (long long)rs->epoch, (long long)rs->epoch);
    if (!rc) snprintf(t->resumed_from, sizeof t->resumed_from, "%s", ckpt);
    return rc;
}

/* Where the run goes and, with --resume, what it continues: everything is
 * checked before anything but the lock is written (rs: the checkpoint's
 * state, ckpt its directory, run its run directory or ""; *in_place: the
 * run continues in its own directory). */
static int prepare_run(trainer *t, char *ckpt, char *run, size_t len, zg__ckpt_state *rs, bool *in_place) {
    const zg_train_config *c = &t->cfg;
    const bool resume = c->resume_dir != NULL;
    if (resume) {
        int rc = zg__ckpt_locate("zg_train_run", c->resume_dir, ckpt, len, run, len);
        if (rc) return rc;
    }
    if (c->out_dir) {
        snprintf(t->run_dir, sizeof t->run_dir, "%s", c->out_dir);
    } else if (resume && run[0]) {
        if (strlen(run) >= sizeof t->run_dir)
            return zg__fail(ZG_ERR_ARG, "zg_train_run: run directory path too long: '%s'", run);
        memcpy(t->run_dir, run, strlen(run) + 1);
    } else { /* a new run, or one continued from a bare checkpoint directory */
        default_run_dir(t->run_dir, sizeof t->run_dir);
    }
    *in_place = resume && run[0] && zg__is_dir(t->run_dir) && same_dir(t->run_dir, run);
    /* --ddp: only rank 0 touches the run directory. */
    int rc = t->rank == 0 && zg__is_dir(t->run_dir) ? claim_run_dir(t, *in_place) : ZG_OK;
    /* Under the lock the pointer names the checkpoint no other process
     * will replace. */
    if (!rc && *in_place) rc = zg__ckpt_locate("zg_train_run", c->resume_dir, ckpt, len, run, len);
    return !rc && resume ? read_resume(t, ckpt, rs) : rc;
}

static void dims_str(char *out, size_t n, const int64_t *d, int nd) {
    size_t k = (size_t)snprintf(out, n, "[");
    for (int i = 0; i < nd && k < n; i++) k += (size_t)snprintf(out + k, n - k, "%s%lld", i ? ", " : "", (long long)d[i]);
    if (k < n) snprintf(out + k, n - k, "]");
}

/* The model given as JSON: --model-file, or on a resume the one the
 * checkpoint keeps (a file given as well must describe the same), or a
 * built-in one, or (--csv / --images without a model) the default MLP;
 * its input must be the data's samples and its output the classes. */
static zg_module *build_file_model(trainer *t, const zg__ckpt_state *rs) {
    const char *fn = "zg_train_run";
    const char *saved = rs ? rs->model_spec : NULL;
    char *text = t->cfg.model != ZG_MODEL_FILE ? zg__strdup(zg__train_builtin_json(t->cfg.model))
                 : !t->cfg.model_file[0] && !saved && t->src.json ? zg__data_default_spec(&t->src)
                                                                  : NULL;
    zg_model_spec *spec = t->cfg.model_file[0] ? zg_model_spec_load(t->cfg.model_file)
                          : saved                ? zg_model_spec_parse(saved, strlen(saved), "the checkpoint's model")
                          : text                 ? zg_model_spec_parse(text, strlen(text), "the default model")
                                                 : NULL;
    free(text);
    if (!spec) {
        if (!t->cfg.model_file[0] && !saved && !t->src.json)
            zg__fail(ZG_ERR_FORMAT, "%s: the checkpoint holds no model file", fn);
        return NULL;
    }
    int64_t in[ZG_MAX_DIMS], out[ZG_MAX_DIMS], data[ZG_MAX_DIMS];
    const int nin = zg_model_spec_shape(spec, false, in, ZG_MAX_DIMS);
    const int nout = zg_model_spec_shape(spec, true, out, ZG_MAX_DIMS);
    const int nd = zg_dataset_sample_shape(t->train_ds, data);
    char a[96], b[96];
    dims_str(a, sizeof a, in, nin);
    dims_str(b, sizeof b, data, nd);
    zg_module *m = NULL;
    if (saved && strcmp(zg_model_spec_json(spec), saved))
        zg__fail(ZG_ERR_FORMAT, "%s: '%s' describes another model than the checkpoint's (leave --model-file out to "
                 "resume the checkpoint's)", fn, t->cfg.model_file);
    else if (nin != nd || memcmp(in, data, (size_t)nd * sizeof *in))
        zg__fail(ZG_ERR_ARG, "%s: the model file's input is %s per sample, the data's samples are %s", fn, a, b);
    else if (nout != 1 || out[0] != zg__data_outputs(&t->src))
        zg__fail(ZG_ERR_ARG, "%s: the model's output must be [%lld] per sample (%s)", fn,
                 (long long)zg__data_outputs(&t->src),
                 t->src.d.task == ZG_TASK_REGRESS ? "the regressed value" : "one logit per class");
    else if (!(t->spec_json = zg__strdup(zg_model_spec_json(spec))))
        zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    else
        m = zg_model_spec_build(spec);
    zg_model_spec_free(spec);
    return m;
}

static zg_module *build_model(trainer *t, const zg__ckpt_state *rs) {
    if (is_lm(t)) return zg__lm_build(&t->cfg, zg_text_vocab_size(t->text));
    if (t->cfg.model == ZG_MODEL_FILE || t->src.json) return build_file_model(t, rs);
    return zg__train_build_model(t->cfg.model);
}

/* The data, the model (weights from the seed), the optimizer, the
 * schedule, the GradScaler and the accumulation window. rs: the
 * checkpoint's state on a resume, else NULL. */
static int build_training(trainer *t, const zg__ckpt_state *rs) {
    const zg_train_config *c = &t->cfg;
    int rc;
    if (is_lm(t)) {
        rc = zg__lm_load_text(c, &t->text_id, &t->text);
    } else {
        rc = zg__data_custom(c) ? zg__data_open(c, &t->src, &t->train_full, &t->test_full) : ZG_OK;
        if (!rc) rc = load_split(c, true, &t->train_full, &t->train_ds);
        if (!rc) rc = load_split(c, false, &t->test_full, &t->test_ds);
    }
    if (rc) return rc;
    zg_manual_seed(c->seed);
    t->model = build_model(t, rs);
    if (!t->model) return fail_with(ZG_ERR_STATE, "zg_train_run: building the model");
    t->n_params = zg_module_num_params(t->model);
    t->params = zg__malloc(((size_t)t->n_params + 1) * sizeof *t->params);
    if (!t->params) return zg__fail(ZG_ERR_NOMEM, "zg_train_run: out of memory");
    zg_module_params(t->model, t->params, t->n_params);
    /* --ddp: before the accumulator, which then drives its no_sync. */
    if (c->ddp && !(t->ddp = zg_ddp_new(t->model, NULL))) return fail_with(ZG_ERR_STATE, "zg_train_run: --ddp");
    /* A language model decays its weights and embeddings only, as nanoGPT's
     * configure_optimizers (biases and LayerNorm weights are not decayed). */
    t->opt = is_lm(t) ? zg_optim_new_decay_split(c->optimizer, t->model, t->ocfg.weight_decay, &t->ocfg)
                      : zg_optim_new(c->optimizer, t->params, t->n_params, &t->ocfg);
    if (!t->opt) return fail_with(ZG_ERR_ARG, "zg_train_run: building the optimizer");
    /* The scheduler is made before the optimizer's state is loaded: its
     * construction writes the first lrs into the groups, which the loaded
     * state then replaces. Its length: the run's optimizer steps. */
    if (c->schedule[0]) {
        int64_t total = c->iters;
        if (!is_lm(t)) {
            const int64_t n = zg_dataset_size(t->train_ds), gb = c->batch_size * t->world;
            const int64_t nb = (n + gb - 1) / gb;
            total = (int64_t)c->epochs * ((nb + c->accum - 1) / c->accum);
        }
        t->sched = zg_sched_from_spec(t->opt, c->schedule, total > 0 ? total : 1);
        if (!t->sched) return fail_with(ZG_ERR_ARG, "zg_train_run: building the schedule");
    }
    if (c->amp == ZG_AUTOCAST_FP16 && !(t->scaler = zg_grad_scaler_new(NULL)))
        return fail_with(ZG_ERR_ARG, "zg_train_run: building the GradScaler");
    t->acc = zg_accum_new(t->opt, t->scaler, c->accum);
    if (!t->acc || (c->clip_norm > 0 && zg_accum_set_clip(t->acc, c->clip_norm, 2.0)))
        return fail_with(ZG_ERR_ARG, "zg_train_run: the accumulation window");
    return ZG_OK;
}

/* The checkpoint's weights, optimizer, scheduler, scaler and generator. */
static int restore(trainer *t, const char *ckpt, const zg__ckpt_state *rs) {
    int rc = zg__ckpt_load("zg_train_run", ckpt, t->model, t->opt);
    if (!rc && t->sched && zg_sched_load_state_json(t->sched, rs->sched_json))
        rc = fail_with(ZG_ERR_FORMAT, "zg_train_run: the checkpoint's scheduler state");
    if (!rc && t->scaler && zg_grad_scaler_set_state(t->scaler, &rs->scaler))
        rc = fail_with(ZG_ERR_FORMAT, "zg_train_run: the checkpoint's GradScaler state");
    if (!rc) zg_rng_set_state(rs->rng);
    return rc;
}

/* The run directory, made and locked, cleaned of what a killed run left,
 * and the files of a resumed run rewritten. */
static int open_run_dir(trainer *t, const char *ckpt, bool in_place) {
    if (t->rank) return ZG_OK; /* --ddp: rank 0's */
    int rc = zg__mkdirs("zg_train_run", t->run_dir);
    if (!rc) rc = claim_run_dir(t, in_place);
    if (rc) return rc;
    if (in_place) {
        const char *slash = strrchr(ckpt, '/');
        const char *name = slash ? slash + 1 : ckpt;
        if (strlen(name) >= sizeof t->ckpt_name)
            return zg__fail(ZG_ERR_FORMAT, "zg_train_run: checkpoint name too long: '%s'", name);
        memcpy(t->ckpt_name, name, strlen(name) + 1);
    }
    /* A new run cleans up after one that wrote no checkpoint ("" keeps none). */
    zg__ckpt_cleanup(t->run_dir, t->ckpt_name);
    return t->cfg.resume_dir ? write_outputs(t, false) : ZG_OK;
}

static int make_loaders(trainer *t) {
    const zg_train_config *c = &t->cfg;
    if (is_lm(t)) {
        /* --ddp: every rank draws the global batch, then takes its share. */
        const int64_t shape[2] = {c->batch_size * t->world, c->gpt.block_size};
        t->xb = zg_tensor_new(ZG_INT64, shape, 2);
        t->yb = zg_tensor_new(ZG_INT64, shape, 2);
        return t->xb && t->yb ? ZG_OK : zg__fail(ZG_ERR_NOMEM, "zg_train_run: out of memory");
    }
    zg_loader_opts lo = {.batch_size = c->batch_size * t->world, .shuffle = true, .drop_last = false, .seed = c->seed,
                         .mean = c->mean, .std = c->std, .prefetch = true};
    t->train_ld = zg_loader_new(t->train_ds, &lo);
    if (!t->train_ld) return fail_with(ZG_ERR_ARG, "zg_train_run: the training loader");
    lo.batch_size = c->eval_batch_size;
    lo.shuffle = false;
    t->test_ld = zg_loader_new(t->test_ds, &lo);
    if (!t->test_ld) return fail_with(ZG_ERR_ARG, "zg_train_run: the test loader");
    return ZG_OK;
}

static int setup(trainer *t) {
    char ckpt[4200] = "", run[4200] = "";
    zg__ckpt_state rs = {0};
    bool in_place = false;
    int rc = prepare_run(t, ckpt, run, sizeof ckpt, &rs, &in_place);
    if (!rc) rc = build_training(t, t->cfg.resume_dir ? &rs : NULL);
    if (!rc && t->cfg.resume_dir && is_lm(t) &&
        (rs.text_bytes != t->text_id.bytes || rs.text_crc != t->text_id.crc))
        rc = zg__fail(ZG_ERR_FORMAT, "zg_train_run: checkpoint '%s' was trained on another text (%lld bytes, CRC-32 "
                      "%08x; this one: %lld bytes, %08x)", ckpt, (long long)rs.text_bytes, (unsigned)rs.text_crc,
                      (long long)t->text_id.bytes, (unsigned)t->text_id.crc);
    if (!rc && t->cfg.resume_dir && !is_lm(t)) rc = zg__data_check_resume(&t->src, rs.data_json, ckpt);
    if (!rc && t->cfg.resume_dir) rc = restore(t, ckpt, &rs);
    if (rc) {
        zg__ckpt_state_free(&rs);
        return rc;
    }
    if (t->cfg.resume_dir) t->st = rs;
    rc = fill_state_options(t);
    if (rc) return rc;
    rc = open_run_dir(t, ckpt, in_place);
    return rc ? rc : make_loaders(t);
}

/* The run's first line: the model, the optimizer and the data. */
static void log_start(const trainer *t, FILE *log) {
    const zg_train_config *c = &t->cfg;
    char lr[32];
    snprintf(lr, sizeof lr, "%g", t->ocfg.lr);
    const long long params = (long long)zg_module_num_elements(t->model);
    if (is_lm(t)) {
        char path[4200];
        if (zg__lm_text_path(c, path, sizeof path)) path[0] = '\0';
        fprintf(log,
                "zgrad train: gpt (%lld parameters; %lld layers, %lld heads, %lld embd, block %lld), %s lr %s, batch "
                "%lld, %lld steps, val loss every %lld on %lld batches; %s: %lld train / %lld val tokens, vocab %lld "
                "-> %s\n",
                params, (long long)c->gpt.n_layer, (long long)c->gpt.n_head, (long long)c->gpt.n_embd,
                (long long)c->gpt.block_size, zg_train_optim_name(c->optimizer), lr, (long long)c->batch_size,
                (long long)c->iters, (long long)c->eval_interval, (long long)c->eval_iters, path,
                (long long)zg_text_num_tokens(t->text, false), (long long)zg_text_num_tokens(t->text, true),
                (long long)zg_text_vocab_size(t->text), t->run_dir);
        return;
    }
    const char *slash = strrchr(c->model_file, '/');
    const char *name = c->model != ZG_MODEL_FILE ? zg_train_model_name(c->model)
                       : c->model_file[0]        ? (slash ? slash + 1 : c->model_file)
                                                 : "the checkpoint's model";
    fprintf(log,
            "zgrad train: %s (%lld parameters), %s lr %s, batch %lld, %d epochs, %lld train / %lld %s samples -> "
            "%s\n",
            t->src.json && !c->model_file[0] && c->model == ZG_MODEL_FILE ? "the default MLP" : name, params,
            zg_train_optim_name(c->optimizer), lr, (long long)c->batch_size, c->epochs,
            (long long)zg_dataset_size(t->train_ds), (long long)zg_dataset_size(t->test_ds),
            t->src.json ? "validation" : "test", t->run_dir);
    if (t->src.json) {
        char what[600];
        zg__data_describe(&t->src, what, sizeof what);
        fprintf(log, "zgrad train: %s\n", what);
    }
}

int zg_train_run(const zg_train_config *cfg, zg_train_result *result) {
    double t_start = zg__now();
    if (result) memset(result, 0, sizeof *result);
    int rc = zg_train_config_validate(cfg);
    if (rc) return rc;
    if (cfg->threads > 0) zg_set_num_threads(cfg->threads);
    trainer t;
    memset(&t, 0, sizeof t);
    t.lock_fd = -1;
    struct sigaction old_sa[N_STOP_SIGNALS];
    g_stop_signal = 0;
    if (cfg->handle_signals) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop_signal;
        sa.sa_flags = SA_RESTART; /* the checkpoint's writes and fsyncs carry on */
        sigemptyset(&sa.sa_mask);
        for (int i = 0; i < N_STOP_SIGNALS; i++) sigaction(stop_signals[i], &sa, &old_sa[i]);
    }
    t.cfg = *cfg;
    if (cfg->model == ZG_MODEL_GPT) t.cfg.epochs = (int)zg__train_gpt_epochs(cfg);
    t.ocfg = zg__train_optim_config(cfg);
    rc = ddp_world(&t);
    if (!rc) rc = setup(&t);
    FILE *log = t.cfg.log;
    if (!rc && log) {
        if (t.resumed_from[0])
            fprintf(log, "zgrad train: resuming from %s (epoch %lld, batch %lld, step %lld)\n", t.resumed_from,
                    (long long)t.st.epoch + 1, (long long)t.st.next_batch, (long long)t.st.global_step);
        log_start(&t, log);
        if (t.ddp) zg__train_log_ddp(log, t.ddp, t.model, t.world, cfg->batch_size);
        if (cfg->accum > 1 || cfg->clip_norm > 0 || cfg->schedule[0] || cfg->amp)
        {
            char clip[32] = "off";
            if (cfg->clip_norm > 0) snprintf(clip, sizeof clip, "%g", cfg->clip_norm);
            fprintf(log, "zgrad train: accum %d, clip norm %s, schedule %s, amp %s\n", cfg->accum, clip,
                    cfg->schedule[0] ? cfg->schedule : "constant", amp_name(cfg->amp));
        }
        fflush(log);
    }
    while (!rc && more_to_train(&t)) rc = train_epoch(&t);
    /* Nothing left to train (a finished run resumed): the outputs are
     * refreshed all the same. */
    if (!rc && zg__train_root_flag(t.ddp != NULL, !t.ckpt_name[0])) rc = save_checkpoint(&t);
    if (!rc) rc = write_outputs(&t, true);
    if (!rc && result) {
        result->epochs_done = t.st.n_metrics;
        if (t.st.n_metrics > 0) {
            const zg__epoch_metrics *m = &t.st.metrics[t.st.n_metrics - 1];
            result->train_loss = m->train_loss;
            result->test_loss = m->test_loss;
            result->test_acc = m->test_acc;
            result->r2 = m->r2;
        }
        snprintf(result->out_dir, sizeof result->out_dir, "%s", t.run_dir);
    }
    if (!rc && log) {
        fprintf(log, "zgrad train: wrote %s/{model.safetensors,metrics.jsonl,curves.svg,%s}\n", t.run_dir,
                ZG_CKPT_POINTER);
        fflush(log);
    }
    if (!rc && log && (t.st.bad_batches || t.st.bad_losses)) {
        fprintf(log, "zgrad train: skipped %lld batches that failed to load and %lld with a non-finite loss\n",
                (long long)t.st.bad_batches, (long long)t.st.bad_losses);
        fflush(log);
    }
    if (cfg->handle_signals)
        for (int i = 0; i < N_STOP_SIGNALS; i++) sigaction(stop_signals[i], &old_sa[i], NULL);
    if (result) {
        result->seconds = zg__now() - t_start;
        result->signal = t.stopped_by;
        result->bad_batches = t.st.bad_batches;
        result->bad_losses = t.st.bad_losses;
        if (rc && !result->out_dir[0]) snprintf(result->out_dir, sizeof result->out_dir, "%s", t.run_dir);
    }
    trainer_free(&t);
    zg_arena_reset();
    return rc;
}
