/* The train layer, at the top: the training driver. It is split by
 * concern so that later features plug in without rewriting the loop:
 *   models.c      the model builders, names of models and optimizers
 *   config.c      defaults, validation, resolving the optimizer's settings
 *   metrics.c     metrics.jsonl and curves.svg
 *   tensorboard.c the same metrics as a TensorBoard event file
 *   progress.c    the live bar / plain progress lines
 *   checkpoint.c  checkpoint directories behind an atomically replaced
 *                 pointer file, and reading them back
 *   rundir.c      the run directory's lock, and removing only what the run
 *                 wrote
 *   eval.c        evaluation and `zgrad eval`
 *   lm.c          --model gpt: the text, its loss and validation, sampling
 *   data_source.c --csv and --images: the data, its statistics, the default
 *                 model, the loss and metrics, what the run keeps of it
 *   predict.c     zgrad predict
 *   train.c       the loop itself (zg_train_run)
 */
#ifndef ZG_TRAIN_INTERNAL_H
#define ZG_TRAIN_INTERNAL_H

#include "../tensor/tensor_internal.h"
#include "../io/io_internal.h"

#include <stdio.h>

#define ZG_TRAIN_DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

/* The most epochs a run may have: its checkpoint keeps every epoch's
 * metrics (~250 bytes each) in a safetensors header of at most 32 MiB. */
#define ZG_TRAIN_MAX_EPOCHS 100000
/* The largest batch (training and evaluation): far above the 60000
 * samples of Fashion-MNIST's training set, and far from where sums and
 * products with a batch size could overflow. */
#define ZG_TRAIN_MAX_BATCH 1000000

/* Longest directory path the driver accepts (room for the file names). */
#define ZG_TRAIN_MAX_DIR 3500

/* ---- configuration ------------------------------------------------------ */

/* Whether the optimizer kind has a momentum hyperparameter. */
bool zg__train_has_momentum(zg_optim_kind kind);
/* The optimizer's settings: its defaults with the config's overrides. */
zg_optim_config zg__train_optim_config(const zg_train_config *cfg);
/* Builds the configured model (weights drawn from the default generator). */
zg_module *zg__train_build_model(zg_model_kind kind);
/* The model file (JSON) of a built-in model (cnn, mlp), else NULL. */
const char *zg__train_builtin_json(zg_model_kind kind);
/* --model gpt: evaluation intervals in the run, ceil(iters / eval_interval). */
int64_t zg__train_gpt_epochs(const zg_train_config *c);

/* ---- metrics ------------------------------------------------------------- */

typedef struct {
    int epoch;          /* 1-based */
    double train_loss;  /* mean over the epoch's samples */
    double test_loss, test_acc;
    double seconds;     /* wall time of the epoch (training + evaluation) */
    int64_t steps;      /* optimizer steps in the epoch */
    double lr;          /* learning rate of the first group at the end */
    int64_t samples;    /* trained on in the epoch (gpt: tokens); -1 unknown */
    double grad_norm;   /* total grad norm of the last step (before
                         * clipping); NaN without --clip-norm */
    bool r2;            /* a regression: test_acc holds R^2 ("test_r2") */
    double data_wait;   /* seconds the loop waited for batches the loader
                         * had not prepared (this process's part of the
                         * epoch); NaN unknown (a text's windows) */
    /* --ddp: rank 0's gradient all-reduces in the epoch (in this process:
     * from the resume on), and zg_ddp_stats' comm window split into
     * overlap with backward and exposed wait. */
    bool ddp;
    int64_t allreduces;
    double comm_seconds, overlap_seconds, wait_seconds;
} zg__epoch_metrics;

/* One JSON object, no newline, every number round-trips exactly. */
void zg__metrics_json(zg__strbuf *b, const zg__epoch_metrics *m);
/* Parses a JSON array of such objects (as zg__metrics_json writes them
 * between "[" "," "]"); malloc'd array in *out. */
int zg__metrics_parse(const char *fn, const char *text, int max_entries, zg__epoch_metrics **out, int *n);
int zg__write_metrics_jsonl(const char *dir, const zg__epoch_metrics *m, int n);
int zg__write_curves_svg(const char *dir, const zg__epoch_metrics *m, int n);

/* ---- TensorBoard (tensorboard.c) --------------------------------------------- */

/* The run's event file, rewritten from the history as metrics.jsonl is. */
int zg__write_tfevents(const char *dir, const zg__epoch_metrics *m, int n);
/* Whether name is an event file name zg__write_tfevents gives. */
bool zg__tfevents_name(const char *name, size_t len);

/* ---- progress ------------------------------------------------------------ */

typedef struct {
    zg_progress_mode mode; /* BAR, LINES or OFF once begun */
    double interval;
    int epoch, epochs;     /* 1-based epoch */
    int64_t total;         /* steps in the epoch */
    int64_t first_step;    /* the step the epoch (re)started at */
    double t_begin, t_last;
    int64_t samples;       /* seen since t_begin */
    const char *unit;      /* what the rate counts: "samples", "tokens" */
    int drawn_width;
} zg__progress;

void zg__progress_begin(zg__progress *p, zg_progress_mode mode, double interval, int epoch, int epochs,
                        int64_t total, int64_t first_step, const char *unit);
/* After a step: step = steps done in the epoch, loss = running mean. */
void zg__progress_update(zg__progress *p, int64_t step, double loss, int64_t batch_samples);
/* Final draw of the epoch's bar (or its last line). */
void zg__progress_end(zg__progress *p, int64_t step, double loss);
/* Clears a partly drawn bar (before other output). */
void zg__progress_clear(zg__progress *p);

/* ---- checkpoints ------------------------------------------------------- */

#define ZG_CKPT_POINTER "checkpoint"
#define ZG_CKPT_MODEL "model.safetensors"
#define ZG_CKPT_OPTIM "optim.safetensors"
#define ZG_CKPT_TRAINER "trainer.safetensors"

/* Everything a checkpoint holds besides the weights and optimizer state. */
typedef struct {
    /* The options that decide the result; a resume must match them. */
    zg_model_kind model;
    zg_optim_kind optimizer;
    double lr, momentum, weight_decay; /* resolved (the optimizer's values) */
    int64_t batch_size;
    uint64_t seed;
    int64_t limit_train, limit_test, eval_batch_size;
    float mean, std;
    int epochs; /* planned total (informative) */
    int64_t checkpoint_every_steps; /* kept by a resume unless overridden */
    /* Position: the next step is batch next_batch of epoch `epoch`
     * (0-based); the loader's order depends only on (seed, epoch). */
    int64_t epoch, next_batch, global_step;
    /* The unfinished epoch's running sums (exact doubles). */
    double epoch_loss_sum, epoch_seconds;
    int64_t epoch_samples, epoch_steps;
    uint64_t rng[4];
    zg__epoch_metrics *metrics; /* malloc'd, one per finished epoch */
    int n_metrics;
    /* The training recipe (part of what a resume must match). */
    int accum, amp;
    double clip_norm;
    char schedule[256];
    /* Fault counters: skipped batches (load failures and non-finite
     * losses), and the current run of consecutive ones. */
    int64_t bad_batches, bad_losses, bad_in_row;
    /* --ddp: the ranks the run trains on (1 without); a resume must match. */
    int world_size;
    /* The scheduler's state (malloc'd JSON, NULL without one) and the
     * GradScaler's (has_scaler: fp16). */
    char *sched_json;
    bool has_scaler;
    zg_grad_scaler_state scaler;
    double beta1, beta2; /* resolved (the optimizer's values) */
    /* --model gpt: the architecture (vocab_size included), the run's
     * length, the text (as given, and its size and CRC-32, which a resume
     * must match) and its vocabulary (malloc'd; lm.c). */
    zg_gpt_config gpt;
    int64_t iters, eval_interval, eval_iters;
    int64_t lm_batches; /* micro-batches drawn in the finished intervals */
    char text_path[4096], corpus[64];
    int text_vocab;
    double val_fraction;
    int64_t text_bytes;
    uint32_t text_crc;
    char *vocab_hex;
    /* --model-file: the spec as canonical JSON (malloc'd), so that a
     * resume, zgrad eval and zgrad summary need only the run. */
    char *model_spec;
    /* --csv / --images: what the data was (zg__data_source.json, malloc'd;
     * NULL for MNIST-format data). */
    char *data_json;
} zg__ckpt_state;

void zg__ckpt_state_free(zg__ckpt_state *s);
/* The untrained model a checkpoint's state describes (built-in, model
 * file or GPT; the caller's generator state is kept) and one sample's
 * input shape (*ndim 0 for a GPT), or NULL and an error. */
zg_module *zg__ckpt_model(const char *fn, const zg__ckpt_state *s, int64_t *shape, int *ndim);
/* Writes a new checkpoint directory in run_dir, then points run_dir's
 * pointer file at it and removes the previous one if this run made it
 * (zg__ckpt_remove). name_out (>= 64 bytes)
 * receives the new directory's name. */
int zg__ckpt_save(const char *run_dir, zg_module *model, zg_optim *opt, const zg__ckpt_state *s, char *name_out);
/* path: a run directory (holding the pointer file) or a checkpoint
 * directory. Fills ckpt_dir (the checkpoint directory) and, for a run
 * directory, run_dir (else ""). */
int zg__ckpt_locate(const char *fn, const char *path, char *ckpt_dir, size_t ckpt_len, char *run_dir,
                    size_t run_len);
/* Reads trainer.safetensors and checks the other files' sizes and CRCs. */
int zg__ckpt_read_state(const char *fn, const char *ckpt_dir, zg__ckpt_state *s);
/* Loads the weights and the optimizer state (each checked before it is
 * written). */
int zg__ckpt_load(const char *fn, const char *ckpt_dir, zg_module *model, zg_optim *opt);
/* Reads run_dir's pointer file (a regular file of one line, never followed
 * through a symlink) into name (>= 64 bytes): 1, 0 when there is none, or
 * < 0 when it is damaged or not a regular file. */
int zg__ckpt_read_pointer(const char *fn, const char *run_dir, char *name);

/* ---- language models (lm.c) ------------------------------------------------ */

/* The text's path: text_path, or the installed corpus of that name. */
int zg__lm_text_path(const zg_train_config *c, char *out, size_t n);
/* What names a run's text: its size and CRC-32 (a resume must find the
 * same), and its vocabulary as hex of the characters' UTF-8 (malloc'd). */
typedef struct {
    int64_t bytes;
    uint32_t crc;
    char *vocab_hex;
} zg__text_id;
/* Loads the run's text and fills *id. */
int zg__lm_load_text(const zg_train_config *c, zg__text_id *id, zg_text **out);
/* The configured GPT for a vocabulary of `vocab` tokens. */
zg_module *zg__lm_build(const zg_train_config *c, int64_t vocab);
/* Cross-entropy of m(x) [B, T, V] against y [B, T], over all B*T
 * positions; *logits_out (may be NULL) receives the logits. */
zg_tensor *zg__lm_loss(zg_module *m, zg_tensor *x, zg_tensor *y, zg_tensor **logits_out);
/* Mean loss and next-token accuracy over c->eval_iters validation batches
 * drawn into x, y (no_grad, eval mode; under the caller's autocast). */
int zg__lm_evaluate(zg_module *m, const zg_text *text, const zg_train_config *c, zg_tensor *x, zg_tensor *y,
                    double *loss, double *acc);

/* ---- your data (data_source.c) --------------------------------------------- */

enum { ZG__DATA_MNIST = 0, ZG__DATA_CSV = 1, ZG__DATA_IMAGES = 2 };

/* What a run's data is, as the checkpoint keeps it: enough to check a
 * resume's data and to preprocess new inputs the same way. */
typedef struct {
    int kind;                    /* ZG__DATA_* */
    zg_task task;                /* CLASSIFY or REGRESS */
    int64_t num_classes;         /* the model's outputs when classifying */
    char **features;             /* a table's feature columns (n_stats) */
    char *target;                /* and its target column */
    char **classes;              /* an image folder's class names (num_classes) */
    float *mean, *std;           /* per feature or channel (n_stats) */
    int64_t n_stats;
    int64_t shape[ZG_MAX_DIMS];  /* one sample's (ndim of them) */
    int ndim;
    int64_t n_train, n_val;
    char *path, *val_path;       /* as given */
    double val_split;
} zg__data_desc;

typedef struct {
    zg__data_desc d;             /* kind MNIST: nothing else is set */
    char *json;                  /* d as JSON (the checkpoint's "data") */
} zg__data_source;

/* Whether the config trains on a CSV file or an image folder. */
bool zg__data_custom(const zg_train_config *c);
/* The config's --csv / --images options (called by the validation). */
int zg__data_validate(const char *fn, const zg_train_config *c);
/* Loads the training and validation data of the config (normalised with
 * the training part's statistics) and describes them in *src. */
int zg__data_open(const zg_train_config *c, zg__data_source *src, zg_dataset **train, zg_dataset **val);
void zg__data_source_free(zg__data_source *src);
/* The model when the config names none: an MLP sized from the data, as a
 * model file's JSON (malloc'd). */
char *zg__data_default_spec(const zg__data_source *src);
/* The model's outputs per sample: the classes (10 for MNIST), or 1. */
int64_t zg__data_outputs(const zg__data_source *src);
/* Cross-entropy, or MSE for a regression, of the model's output. */
zg_tensor *zg__data_loss(const zg__data_source *src, zg_tensor *out, zg_tensor *y);
/* The validation loss and accuracy (a regression: MSE and R^2). */
int zg__data_evaluate(const zg__data_source *src, zg_module *m, zg_loader *ld, double *loss, double *acc);
/* The same as an eval result: a classifier's with its confusion matrix;
 * a regression's MSE as loss, R^2 as accuracy, num_classes 0. */
int zg__data_eval_result(const zg__data_source *src, zg_module *m, zg_loader *ld, zg_eval_result *out);
/* A resume: the data must be what the checkpoint's was (paths aside). */
int zg__data_check_resume(const zg__data_source *src, const char *saved, const char *ckpt);
/* The checkpoint's data options back into cfg (nothing for NULL). */
int zg__data_restore_config(const char *fn, const char *json, zg_train_config *cfg);
/* "iris.csv: 120 train / 30 validation rows, 4 features, 3 classes" */
void zg__data_describe(const zg__data_source *src, char *out, size_t n);
/* Parses a checkpoint's "data" into *d (zg__data_desc_free). */
int zg__data_desc_parse(const char *fn, const char *json, zg__data_desc *d);
void zg__data_desc_free(zg__data_desc *d);

/* ---- the run directory (rundir.c) ------------------------------------------ */

#define ZG_CKPT_NAME_MAX 63 /* longest checkpoint directory name */
#define ZG_RUN_LOCK ".zgrad.lock"
#define ZG_CKPT_RECORD ".zgrad-ckpts"
#define ZG_CKPT_MARKER ".zgrad-checkpoint"

/* The name of the checkpoint at (epoch, global step) into out (>= 64 bytes). */
void zg__ckpt_name(char *out, int64_t epoch, int64_t step);
/* Whether name is exactly a name zg__ckpt_name writes. */
bool zg__ckpt_name_exact(const char *name);
/* Before a checkpoint `name` is written in run_dir (old: the current one,
 * or NULL): records it in the run's list, then creates its directory with
 * the marker inside. A directory of that name already there is removed
 * when this run left it, else the save is refused. */
int zg__ckpt_begin(const char *fn, const char *run_dir, const char *old, const char *name);
/* Removes checkpoint `name` of run_dir if the run can prove it wrote it
 * (see rundir.c); anything else is left as it is. forget (a save that
 * failed): the run's list drops the name too, as it was before the save. */
void zg__ckpt_remove(const char *fn, const char *run_dir, const char *name, bool forget);
/* Removes what a killed run left in run_dir: its checkpoint directories
 * other than `current` and its temporary files (only those it can prove
 * it wrote). */
void zg__ckpt_cleanup(const char *run_dir, const char *current);
/* Takes the exclusive lock of run_dir for this process (*fd, released by
 * zg__run_unlock or when the process ends); ZG_ERR_STATE naming the
 * holder's pid when another process has it. */
int zg__run_lock(const char *fn, const char *run_dir, int *fd);
void zg__run_unlock(int *fd);
/* A new run may start in dir when it is empty (but for what a run that
 * never wrote a checkpoint left), or holds anything but a run with
 * `force`; a run is refused either way. */
int zg__run_check_fresh(const char *fn, const char *dir, bool force);

/* ---- data parallel: zgrad train --ddp's pieces (ddp_share.c) ------------ */

/* Whether flag is set on any rank (1 or 0; < 0: the all-reduce failed).
 * Every rank calls it at the same point, so that all take the same branch.
 * Without ddp: flag. */
int zg__train_any_rank(bool ddp, bool flag);
/* Rank 0's flag on every rank (true when the broadcast fails). */
bool zg__train_root_flag(bool ddp, bool flag);
/* Cuts (x, y) to this rank's share of the global batch and sets *weight,
 * the share's loss weight (1 when the world divides the batch). */
int zg__train_shard(int rank, int world, zg_tensor **x, zg_tensor **y, float *weight);
/* After each share's forward: the global batch's loss and units on every
 * rank, or NaN when any share's loss is not finite. */
int zg__train_agree_loss(double *loss, int64_t *units);
/* The start-up line: the world, the batch, the gradient buckets' sizes. */
void zg__train_log_ddp(FILE *log, const zg_ddp *d, const zg_module *m, int world, int64_t batch);
/* Checks that MPI is there and initialised, sets the wait bound, and
 * gives this process's rank and the world size. */
int zg__train_ddp_world(double timeout, int *rank, int *world);

#endif
