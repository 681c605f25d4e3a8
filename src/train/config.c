/* The training options: defaults, validation, and how they become the
 * optimizer's settings. */
#include "train_internal.h"

#include <math.h>

/* nanoGPT's CPU recipe, vocab_size 0: the text's. */
static zg_gpt_config gpt_vocab_from_text(void) {
    zg_gpt_config g = zg_gpt_config_default();
    g.vocab_size = 0;
    return g;
}

zg_train_config zg_train_config_defaults(void) {
    return (zg_train_config){
        .model = ZG_MODEL_CNN,
        .optimizer = ZG_ADAM,
        .lr = -1,
        .momentum = -1,
        .weight_decay = -1,
        .epochs = 3,
        .batch_size = 64,
        .seed = 0,
        .threads = 0,
        .data_dir = ZG_TRAIN_DEFAULT_DATA,
        .out_dir = NULL,
        .resume_dir = NULL,
        .limit_train = 0,
        .limit_test = 0,
        .checkpoint_every_steps = 0,
        .eval_batch_size = 1000,
        .mean = 0.2860f,
        .std = 0.3530f,
        .progress = ZG_PROGRESS_AUTO,
        .progress_interval = 5.0,
        .log = stdout,
        .accum = 1,
        .clip_norm = -1,
        .schedule = "",
        .amp = ZG_AUTOCAST_OFF,
        .max_bad_steps = 5,
        .ddp_timeout = 600,
        .handle_signals = false,
        .inject_nan_count = 1,
        .beta1 = -1,
        .beta2 = -1,
        .corpus = "shakespeare",
        .text_vocab = ZG_TEXT_CHAR,
        .val_fraction = 0.1,
        .gpt = gpt_vocab_from_text(),
        .iters = 2000,
        .eval_interval = 250,
        .eval_iters = 20,
    };
}

/* nanoGPT's warm-up: lr (it + 1) / 101 for it < 100, i.e. LinearLR from
 * 1/101; then cosine down to min_lr 1e-4 at the last step. */
#define GPT_SCHEDULE "warmup-cosine:100,start_factor=0.0099009900990099011,eta_min=1e-4"

zg_train_config zg_train_config_for_model(zg_model_kind model) {
    zg_train_config c = zg_train_config_defaults();
    c.model = model;
    if (model != ZG_MODEL_GPT) return c;
    c.optimizer = ZG_ADAMW;
    c.lr = 1e-3;
    c.weight_decay = 0.1;
    c.beta2 = 0.99;
    c.batch_size = 12;
    c.clip_norm = 1.0;
    snprintf(c.schedule, sizeof c.schedule, "%s", GPT_SCHEDULE);
    return c;
}

int64_t zg__train_gpt_epochs(const zg_train_config *c) {
    return c->eval_interval > 0 ? (c->iters + c->eval_interval - 1) / c->eval_interval : 0;
}

/* The options of --model gpt alone, and those it does not take. */
static int validate_gpt(const char *fn, const zg_train_config *c) {
    const bool gpt = c->model == ZG_MODEL_GPT;
    if (!memchr(c->text_path, '\0', sizeof c->text_path) || !memchr(c->corpus, '\0', sizeof c->corpus))
        return zg__fail(ZG_ERR_ARG, "%s: text_path or corpus is not terminated", fn);
    if (!gpt) {
        if (c->text_path[0]) return zg__fail(ZG_ERR_ARG, "%s: a text applies to --model gpt only", fn);
        return ZG_OK;
    }
    if (c->limit_train || c->limit_test)
        return zg__fail(ZG_ERR_ARG, "%s: sample limits apply to cnn and mlp, not gpt (the text is used whole)", fn);
    if (!c->text_path[0] && !c->corpus[0]) return zg__fail(ZG_ERR_ARG, "%s: gpt needs a text or a corpus name", fn);
    for (const char *p = c->corpus; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            return zg__fail(ZG_ERR_ARG, "%s: corpus name '%s': letters a-z, digits, '-' and '_' only", fn, c->corpus);
    if (c->text_vocab != ZG_TEXT_CHAR && c->text_vocab != ZG_TEXT_BYTE)
        return zg__fail(ZG_ERR_ARG, "%s: unknown text vocabulary %d", fn, (int)c->text_vocab);
    if (!(c->val_fraction > 0 && c->val_fraction < 1))
        return zg__fail(ZG_ERR_ARG, "%s: val_fraction must lie in (0, 1) (got %g)", fn, c->val_fraction);
    const zg_gpt_config *g = &c->gpt;
    if (g->vocab_size < 0 || g->vocab_size > INT32_MAX)
        return zg__fail(ZG_ERR_ARG, "%s: gpt vocab_size must be 0 (the text's) or the text's size", fn);
    if (g->n_layer < 1 || g->n_layer > 1000 || g->n_head < 1 || g->n_embd < 1 || g->n_embd > 65536 ||
        g->block_size < 1 || g->block_size > 65536)
        return zg__fail(ZG_ERR_ARG, "%s: gpt sizes out of range (n_layer in [1, 1000], n_head >= 1, n_embd and "
                        "block_size in [1, 65536])", fn);
    if (g->n_embd % g->n_head)
        return zg__fail(ZG_ERR_ARG, "%s: n_embd %lld is not a multiple of n_head %lld", fn, (long long)g->n_embd,
                        (long long)g->n_head);
    if (!(g->dropout >= 0 && g->dropout < 1))
        return zg__fail(ZG_ERR_ARG, "%s: dropout must lie in [0, 1) (got %g)", fn, (double)g->dropout);
    if (c->iters < 1 || c->iters > ZG__MAX_COUNT || c->eval_interval < 1 || c->eval_interval > ZG__MAX_COUNT)
        return zg__fail(ZG_ERR_ARG, "%s: iters and eval_interval must be in [1, 2^53]", fn);
    if (zg__train_gpt_epochs(c) > ZG_TRAIN_MAX_EPOCHS)
        return zg__fail(ZG_ERR_ARG, "%s: iters / eval_interval gives more than %d evaluations", fn,
                        ZG_TRAIN_MAX_EPOCHS);
    if (c->eval_iters < 1 || c->eval_iters > 1000000)
        return zg__fail(ZG_ERR_ARG, "%s: eval_iters must be in [1, 1000000] (got %lld)", fn, (long long)c->eval_iters);
    if (c->batch_size > ZG_TRAIN_MAX_BATCH / g->block_size)
        return zg__fail(ZG_ERR_ARG, "%s: batch_size x block_size must be at most %d tokens", fn, ZG_TRAIN_MAX_BATCH);
    return ZG_OK;
}

bool zg__train_has_momentum(zg_optim_kind kind) { return kind == ZG_SGD || kind == ZG_RMSPROP; }

int zg_train_config_validate(const zg_train_config *c) {
    const char *fn = "zg_train_config";
    if (!c) return zg__fail(ZG_ERR_ARG, "%s: NULL config", fn);
    if (!zg_train_model_name(c->model)) return zg__fail(ZG_ERR_ARG, "%s: unknown model %d", fn, (int)c->model);
    if (!zg_train_optim_name(c->optimizer))
        return zg__fail(ZG_ERR_ARG, "%s: unknown optimizer %d", fn, (int)c->optimizer);
    /* Negative means "the optimizer's default"; NaN and inf are errors. */
    if (!isfinite(c->lr) || !isfinite(c->momentum) || !isfinite(c->weight_decay))
        return zg__fail(ZG_ERR_ARG, "%s: lr, momentum and weight_decay must be finite", fn);
    if (c->momentum >= 0 && !zg__train_has_momentum(c->optimizer))
        return zg__fail(ZG_ERR_ARG, "%s: momentum applies to sgd and rmsprop, not %s", fn,
                        zg_train_optim_name(c->optimizer));
    if (c->epochs < 1 || c->epochs > ZG_TRAIN_MAX_EPOCHS)
        return zg__fail(ZG_ERR_ARG, "%s: epochs must be in [1, %d] (got %d)", fn, ZG_TRAIN_MAX_EPOCHS, c->epochs);
    if (c->batch_size < 1 || c->batch_size > ZG_TRAIN_MAX_BATCH)
        return zg__fail(ZG_ERR_ARG, "%s: batch_size must be in [1, %d] (got %lld)", fn, ZG_TRAIN_MAX_BATCH,
                        (long long)c->batch_size);
    if (c->eval_batch_size < 1 || c->eval_batch_size > ZG_TRAIN_MAX_BATCH)
        return zg__fail(ZG_ERR_ARG, "%s: eval_batch_size must be in [1, %d] (got %lld)", fn, ZG_TRAIN_MAX_BATCH,
                        (long long)c->eval_batch_size);
    if (c->threads < 0) return zg__fail(ZG_ERR_ARG, "%s: threads must be >= 0 (got %d)", fn, c->threads);
    if (c->limit_train < 0 || c->limit_test < 0)
        return zg__fail(ZG_ERR_ARG, "%s: limits must be >= 0 (0: every sample)", fn);
    if (c->checkpoint_every_steps < 0) return zg__fail(ZG_ERR_ARG, "%s: checkpoint_every_steps must be >= 0", fn);
    if (!(c->std > 0) || !isfinite(c->std) || !isfinite(c->mean))
        return zg__fail(ZG_ERR_ARG, "%s: normalisation needs a finite mean and std > 0", fn);
    if ((int)c->progress < ZG_PROGRESS_AUTO || (int)c->progress > ZG_PROGRESS_OFF)
        return zg__fail(ZG_ERR_ARG, "%s: unknown progress mode %d", fn, (int)c->progress);
    if (!(c->progress_interval >= 0) || !isfinite(c->progress_interval))
        return zg__fail(ZG_ERR_ARG, "%s: progress_interval must be >= 0 seconds", fn);
    if (!c->data_dir || !*c->data_dir) return zg__fail(ZG_ERR_ARG, "%s: no data directory", fn);
    if (c->out_dir && !*c->out_dir) return zg__fail(ZG_ERR_ARG, "%s: empty output directory", fn);
    if (c->resume_dir && !*c->resume_dir) return zg__fail(ZG_ERR_ARG, "%s: empty resume directory", fn);
    if (c->accum < 1 || c->accum > 1000000)
        return zg__fail(ZG_ERR_ARG, "%s: accum must be in [1, 1000000] (got %d)", fn, c->accum);
    if (isnan(c->clip_norm) || isinf(c->clip_norm) || c->clip_norm == 0)
        return zg__fail(ZG_ERR_ARG, "%s: clip_norm must be > 0 and finite (or < 0: off)", fn);
    if (!memchr(c->schedule, '\0', sizeof c->schedule))
        return zg__fail(ZG_ERR_ARG, "%s: schedule spec longer than %d characters", fn, (int)sizeof c->schedule - 1);
    if (c->amp != ZG_AUTOCAST_OFF && c->amp != ZG_AUTOCAST_BF16 && c->amp != ZG_AUTOCAST_FP16)
        return zg__fail(ZG_ERR_ARG, "%s: unknown amp type %d", fn, c->amp);
    if (c->max_bad_steps < 1) return zg__fail(ZG_ERR_ARG, "%s: max_bad_steps must be >= 1 (got %d)", fn, c->max_bad_steps);
    /* Batch numbers are counters: bounded, so that N + COUNT cannot overflow. */
    if (c->inject_bad_batch < 0 || c->inject_bad_backward < 0 || c->inject_nan_loss < 0 || c->inject_nan_count < 1 ||
        c->inject_bad_batch > ZG__MAX_COUNT || c->inject_bad_backward > ZG__MAX_COUNT ||
        c->inject_nan_loss > ZG__MAX_COUNT || c->inject_nan_count > ZG__MAX_COUNT)
        return zg__fail(ZG_ERR_ARG, "%s: injection steps must be in [0, 2^53] (count in [1, 2^53])", fn);
    if (!(c->ddp_timeout >= 0 && c->ddp_timeout <= 1e9))
        return zg__fail(ZG_ERR_ARG, "%s: ddp_timeout must be in [0, 1e9] seconds (got %g)", fn, c->ddp_timeout);
    if (c->inject_rank < 0 || c->inject_rank > (1 << 20) || (c->inject_rank && c->inject_bad_backward))
        return zg__fail(ZG_ERR_ARG, "%s: inject_rank must be in [0, 2^20] and goes with inject_bad_batch and "
                        "inject_nan_loss only", fn);
    int rc = validate_gpt(fn, c);
    if (rc) return rc;
    if (!memchr(c->model_file, '\0', sizeof c->model_file))
        return zg__fail(ZG_ERR_ARG, "%s: model_file is not terminated", fn);
    if ((rc = zg__data_validate(fn, c))) return rc;
    if (c->model == ZG_MODEL_FILE && !c->model_file[0] && !c->resume_dir && !zg__data_custom(c))
        return zg__fail(ZG_ERR_ARG, "%s: model 'file' needs a model file (--model-file)", fn);
    if (c->model != ZG_MODEL_FILE && c->model_file[0])
        return zg__fail(ZG_ERR_ARG, "%s: a model file goes with model 'file' (--model-file sets both)", fn);
    if (!isfinite(c->beta1) || !isfinite(c->beta2) || c->beta1 >= 1 || c->beta2 >= 1)
        return zg__fail(ZG_ERR_ARG, "%s: betas must be in [0, 1) (or < 0: the optimizer's)", fn);
    if ((c->beta1 >= 0 || c->beta2 >= 0) && c->optimizer != ZG_ADAM && c->optimizer != ZG_ADAMW)
        return zg__fail(ZG_ERR_ARG, "%s: betas apply to adam and adamw, not %s", fn, zg_train_optim_name(c->optimizer));
    if (c->schedule[0]) {
        /* The spec is checked by building it on a throwaway optimizer of
         * the configured kind (the run's length is not known yet). */
        int64_t shape[1] = {1};
        zg_tensor *p = zg_tensor_new(ZG_FLOAT32, shape, 1);
        if (!p) return ZG_ERR_NOMEM;
        zg_tensor_set_requires_grad(p, true);
        zg_optim_config oc = zg__train_optim_config(c);
        zg_optim *o = zg_optim_new(c->optimizer, &p, 1, &oc);
        zg_sched *sc = o ? zg_sched_from_spec(o, c->schedule, 1000000) : NULL;
        char inner[1024];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        zg_sched_free(sc);
        zg_optim_free(o);
        zg_tensor_free(p);
        if (!sc) return zg__fail(ZG_ERR_ARG, "%s: schedule '%s': %s", fn, c->schedule, inner);
    }
    const char *paths[] = {c->data_dir, c->out_dir, c->resume_dir, c->text_path};
    for (int i = 0; i < 4; i++)
        if (paths[i] && strlen(paths[i]) > ZG_TRAIN_MAX_DIR)
            return zg__fail(ZG_ERR_ARG, "%s: path longer than %d characters", fn, ZG_TRAIN_MAX_DIR);
    return ZG_OK;
}

zg_optim_config zg__train_optim_config(const zg_train_config *c) {
    zg_optim_config o = zg_optim_defaults(c->optimizer);
    if (c->lr >= 0) o.lr = c->lr;
    if (c->weight_decay >= 0) o.weight_decay = c->weight_decay;
    if (c->momentum >= 0 && zg__train_has_momentum(c->optimizer)) o.momentum = c->momentum;
    if (c->beta1 >= 0) o.beta1 = c->beta1;
    if (c->beta2 >= 0) o.beta2 = c->beta2;
    return o;
}
