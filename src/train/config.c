/* The training options: defaults, validation, and how they become the
 * optimizer's settings; the thread count. */
#include "train_internal.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>

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
    };
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
    if (c->epochs < 1) return zg__fail(ZG_ERR_ARG, "%s: epochs must be >= 1 (got %d)", fn, c->epochs);
    if (c->batch_size < 1)
        return zg__fail(ZG_ERR_ARG, "%s: batch_size must be >= 1 (got %lld)", fn, (long long)c->batch_size);
    if (c->eval_batch_size < 1)
        return zg__fail(ZG_ERR_ARG, "%s: eval_batch_size must be >= 1 (got %lld)", fn, (long long)c->eval_batch_size);
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
    const char *paths[] = {c->data_dir, c->out_dir, c->resume_dir};
    for (int i = 0; i < 3; i++)
        if (paths[i] && strlen(paths[i]) > ZG_TRAIN_MAX_DIR)
            return zg__fail(ZG_ERR_ARG, "%s: path longer than %d characters", fn, ZG_TRAIN_MAX_DIR);
    return ZG_OK;
}

zg_optim_config zg__train_optim_config(const zg_train_config *c) {
    zg_optim_config o = zg_optim_defaults(c->optimizer);
    if (c->lr >= 0) o.lr = c->lr;
    if (c->weight_decay >= 0) o.weight_decay = c->weight_decay;
    if (c->momentum >= 0 && zg__train_has_momentum(c->optimizer)) o.momentum = c->momentum;
    return o;
}

int zg_set_num_threads(int n) {
    if (n < 1) return zg__fail(ZG_ERR_ARG, "zg_set_num_threads: need n >= 1 (got %d)", n);
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
    return ZG_OK;
}
