/*
 * zgrad: tensors, define-by-run reverse-mode autograd and optimizers with
 * PyTorch's training semantics, in C.
 *
 * Conventions
 *  - Every call that can fail returns NULL or a negative zg_status; then
 *    zg_last_error() names the function and the problem.
 *  - Tensors made by zg_tensor_new / zg_zeros / zg_randn / ... are
 *    persistent: they live until zg_tensor_free. Tensors made by ops
 *    (zg_add, zg_matmul, ...) and graph nodes live in the calling thread's
 *    step arena and die at the next zg_arena_reset(): the training loop
 *    resets it once per step, so the steady state allocates nothing.
 *    To keep an op's result past the step, copy it (zg_tensor_clone).
 *  - Grad mode (zg_no_grad_enter/exit), the arena and the error text are
 *    per thread; the default random generator is global (zg_manual_seed).
 */
#ifndef ZGRAD_H
#define ZGRAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZG_VERSION "0.1.0"
#define ZG_MAX_DIMS 8

typedef enum {
    ZG_OK = 0,
    ZG_ERR_ARG = -1,     /* NULL or out-of-range argument */
    ZG_ERR_SHAPE = -2,   /* shapes or dtypes do not fit */
    ZG_ERR_STATE = -3,   /* wrong call order / graph state */
    ZG_ERR_IO = -4,      /* file could not be read or written */
    ZG_ERR_FORMAT = -5,  /* file content is invalid */
    ZG_ERR_NOMEM = -6,
} zg_status;

typedef enum { ZG_FLOAT32 = 0, ZG_INT64 = 1 } zg_dtype;

typedef enum {
    ZG_REDUCTION_MEAN = 0,
    ZG_REDUCTION_SUM = 1,
    ZG_REDUCTION_NONE = 2,
} zg_reduction;

typedef struct zg_tensor zg_tensor;
typedef struct zg_module zg_module;
typedef struct zg_optim zg_optim;

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

/* Text of the last error on this thread ("" if none). */
const char *zg_last_error(void);
void zg_clear_error(void);

/* ------------------------------------------------------------------ */
/* Step arena                                                          */
/* ------------------------------------------------------------------ */

/* Frees every op result and graph node made on this thread since the last
 * reset. Blocks are kept for reuse, so a steady loop never mallocs. */
void zg_arena_reset(void);
/* A mark and a release back to it (e.g. inside an evaluation loop). */
size_t zg_arena_mark(void);
void zg_arena_release(size_t mark);
size_t zg_arena_bytes_used(void);
/* Bytes the arena holds from the system (used or not). */
size_t zg_arena_bytes_reserved(void);
/* Returns all arena blocks of this thread to the system. */
void zg_arena_free_all(void);

/* ------------------------------------------------------------------ */
/* Random numbers                                                      */
/* ------------------------------------------------------------------ */

void zg_manual_seed(uint64_t seed);
/* The generator's state, to save in checkpoints. */
void zg_rng_get_state(uint64_t state[4]);
void zg_rng_set_state(const uint64_t state[4]);

/* ------------------------------------------------------------------ */
/* Tensors                                                             */
/* ------------------------------------------------------------------ */

/* Persistent tensors (free with zg_tensor_free). */
zg_tensor *zg_tensor_new(zg_dtype dtype, const int64_t *shape, int ndim);
/* Copies `data` (float for ZG_FLOAT32, int64_t for ZG_INT64). */
zg_tensor *zg_tensor_from_data(zg_dtype dtype, const void *data, const int64_t *shape, int ndim);
zg_tensor *zg_zeros(const int64_t *shape, int ndim);
zg_tensor *zg_ones(const int64_t *shape, int ndim);
zg_tensor *zg_full(const int64_t *shape, int ndim, float value);
zg_tensor *zg_scalar(float value); /* 0-dim */
/* uniform [0,1), standard normal, uniform [lo,hi), normal(mean, std). */
zg_tensor *zg_rand(const int64_t *shape, int ndim);
zg_tensor *zg_randn(const int64_t *shape, int ndim);
zg_tensor *zg_uniform(const int64_t *shape, int ndim, float lo, float hi);
zg_tensor *zg_normal(const int64_t *shape, int ndim, float mean, float std);
/* A persistent copy with no graph (what keeps a value past the step). */
zg_tensor *zg_tensor_clone(const zg_tensor *t);
/* Frees a persistent tensor, its .grad and hooks; no-op for NULL and for
 * arena tensors (they die with the arena). */
void zg_tensor_free(zg_tensor *t);

zg_dtype zg_tensor_dtype(const zg_tensor *t);
int zg_tensor_ndim(const zg_tensor *t);
/* Size of dimension `dim` (negative counts from the end); -1 on error. */
int64_t zg_tensor_size(const zg_tensor *t, int dim);
const int64_t *zg_tensor_shape(const zg_tensor *t);
int64_t zg_tensor_numel(const zg_tensor *t);
/* Raw contiguous data. Writing through it does NOT bump the version
 * counter; use the in-place calls below for tracked writes. */
float *zg_tensor_data(zg_tensor *t);
int64_t *zg_tensor_data_i64(zg_tensor *t);
/* Value of a one-element float tensor (NAN and an error otherwise). */
float zg_tensor_item(const zg_tensor *t);
/* Element at a flat index (float tensors). */
float zg_tensor_get(const zg_tensor *t, int64_t flat_index);
bool zg_tensor_is_persistent(const zg_tensor *t);
/* Debug print: shape, dtype, grad state and (a few) values. */
void zg_tensor_print(const zg_tensor *t, FILE *f);
/* A name used in error messages (parameters get theirs from modules). */
int zg_tensor_set_name(zg_tensor *t, const char *name);
const char *zg_tensor_name(const zg_tensor *t);

/* In-place writes (tracked: they bump the version counter so that a
 * backward through a node that saved the tensor fails instead of computing
 * a wrong gradient). They are not differentiable: on a tensor that requires
 * grad they need no-grad mode. */
int zg_tensor_fill_(zg_tensor *t, float value);
int zg_tensor_copy_(zg_tensor *dst, const zg_tensor *src); /* same numel */
int zg_tensor_add_(zg_tensor *t, const zg_tensor *other, float alpha); /* t += alpha*other */
int zg_tensor_mul_scalar_(zg_tensor *t, float s);
/* Version counter of the storage. */
uint64_t zg_tensor_version(const zg_tensor *t);

/* ------------------------------------------------------------------ */
/* Autograd                                                            */
/* ------------------------------------------------------------------ */

/* Only on leaves (a non-leaf's flag follows its inputs). */
int zg_tensor_set_requires_grad(zg_tensor *t, bool requires_grad);
bool zg_tensor_requires_grad(const zg_tensor *t);
bool zg_tensor_is_leaf(const zg_tensor *t);
/* .grad: NULL while None. The same object is returned across backwards. */
zg_tensor *zg_tensor_grad(const zg_tensor *t);
/* Sets .grad to None (set_to_none) or zero-fills it in place. */
void zg_tensor_zero_grad(zg_tensor *t, bool set_to_none);
/* Writes `g` into .grad (copy; same shape), or sets None for g == NULL. */
int zg_tensor_set_grad(zg_tensor *t, const zg_tensor *g);
/* Keep the gradient of a non-leaf in its .grad during backward. */
int zg_tensor_retain_grad(zg_tensor *t);
/* Name of the backward node that made t ("mul"), NULL for leaves. */
const char *zg_tensor_grad_fn_name(const zg_tensor *t);
/* Same data (shared), no graph, requires_grad false, a leaf (arena). */
zg_tensor *zg_detach(zg_tensor *t);

/* no_grad scopes nest. */
void zg_no_grad_enter(void);
void zg_no_grad_exit(void);
bool zg_grad_enabled(void);
/* Sets grad mode and returns the previous one. */
bool zg_set_grad_enabled(bool enabled);

typedef struct {
    /* Gradient of the root (vector-Jacobian product); NULL means 1 and
     * needs a one-element root. */
    const zg_tensor *grad;
    bool retain_graph;
    /* If n_inputs > 0, accumulate only into these tensors. */
    zg_tensor *const *inputs;
    int n_inputs;
} zg_backward_opts;

/* Backward from root; opts may be NULL. Adds into each leaf's .grad. */
int zg_backward(zg_tensor *root, const zg_backward_opts *opts);
/* Gradients of sum(outputs[i] * grad_outputs[i]) with respect to inputs,
 * written to grads[i] (arena tensors; NULL where an input is unreachable
 * and allow_unused). Never touches .grad. grad_outputs may be NULL
 * (one-element outputs). */
int zg_autograd_grad(zg_tensor *const *outputs, const zg_tensor *const *grad_outputs, int n_outputs,
                     zg_tensor *const *inputs, int n_inputs, zg_tensor **grads, bool retain_graph,
                     bool allow_unused);

/* A tensor hook sees the incoming gradient before it is accumulated (or,
 * for a non-leaf, before it flows on). It returns NULL to keep the
 * gradient, or a replacement of the same shape. On an error it sets one
 * with zg_set_error and returns ZG_HOOK_FAIL. Hooks run in registration
 * order. */
typedef zg_tensor *(*zg_tensor_hook_fn)(zg_tensor *grad, void *user);
#define ZG_HOOK_FAIL ((zg_tensor *)(uintptr_t)1)
int zg_tensor_register_hook(zg_tensor *t, zg_tensor_hook_fn fn, void *user);
/* Runs on a leaf after its .grad was updated. Returns a zg_status. */
typedef int (*zg_post_accumulate_hook_fn)(zg_tensor *leaf, void *user);
int zg_tensor_register_post_accumulate_hook(zg_tensor *t, zg_post_accumulate_hook_fn fn, void *user);
void zg_tensor_clear_hooks(zg_tensor *t);

/* For hooks and extensions: set this thread's error text. */
void zg_set_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* ------------------------------------------------------------------ */
/* Ops: each returns a new arena tensor (or NULL and an error).        */
/* Binary float ops broadcast as NumPy/PyTorch do.                     */
/* ------------------------------------------------------------------ */

zg_tensor *zg_add(zg_tensor *a, zg_tensor *b);
zg_tensor *zg_sub(zg_tensor *a, zg_tensor *b);
zg_tensor *zg_mul(zg_tensor *a, zg_tensor *b);
zg_tensor *zg_div(zg_tensor *a, zg_tensor *b);
zg_tensor *zg_neg(zg_tensor *a);
zg_tensor *zg_add_scalar(zg_tensor *a, float s);
zg_tensor *zg_sub_scalar(zg_tensor *a, float s);   /* a - s */
zg_tensor *zg_rsub_scalar(zg_tensor *a, float s);  /* s - a */
zg_tensor *zg_mul_scalar(zg_tensor *a, float s);
zg_tensor *zg_div_scalar(zg_tensor *a, float s);   /* a / s */
zg_tensor *zg_pow_scalar(zg_tensor *a, float p);   /* a ^ p */
zg_tensor *zg_pow(zg_tensor *a, zg_tensor *b);     /* a ^ b, a > 0 for grad wrt b */
zg_tensor *zg_exp(zg_tensor *a);
zg_tensor *zg_log(zg_tensor *a);
zg_tensor *zg_sqrt(zg_tensor *a);

/* Reductions; dim may be negative. */
zg_tensor *zg_sum(zg_tensor *a);  /* all elements, 0-dim result */
zg_tensor *zg_mean(zg_tensor *a);
zg_tensor *zg_sum_dim(zg_tensor *a, int dim, bool keepdim);
zg_tensor *zg_mean_dim(zg_tensor *a, int dim, bool keepdim);
/* Max along dim; indices (int64, optional) as torch.max(a, dim). The
 * gradient goes to the first maximal element. */
zg_tensor *zg_max_dim(zg_tensor *a, int dim, bool keepdim, zg_tensor **indices);

/* a [n,k] @ b [k,m] (2-D) or batched [B,n,k] @ [B,k,m] (3-D). */
zg_tensor *zg_matmul(zg_tensor *a, zg_tensor *b);
/* x [..., in] @ w[out, in]^T + b[out] (b may be NULL). */
zg_tensor *zg_linear(zg_tensor *x, zg_tensor *w, zg_tensor *b);

zg_tensor *zg_relu(zg_tensor *a);
zg_tensor *zg_leaky_relu(zg_tensor *a, float negative_slope);
/* approximate_tanh false: x * Phi(x) (erf); true: the tanh formula. */
zg_tensor *zg_gelu(zg_tensor *a, bool approximate_tanh);
zg_tensor *zg_tanh(zg_tensor *a);
zg_tensor *zg_sigmoid(zg_tensor *a);
zg_tensor *zg_softmax(zg_tensor *a, int dim);
zg_tensor *zg_log_softmax(zg_tensor *a, int dim);
/* Train: zero with probability p, scale the rest by 1/(1-p). Eval: a. */
zg_tensor *zg_dropout(zg_tensor *a, float p, bool train);

/* Shape. reshape and slice are views (shared data); the rest copy. */
zg_tensor *zg_reshape(zg_tensor *a, const int64_t *shape, int ndim); /* one -1 allowed */
zg_tensor *zg_flatten(zg_tensor *a, int start_dim);  /* [N, rest] from start_dim */
zg_tensor *zg_slice(zg_tensor *a, int64_t start, int64_t end);  /* rows [start,end) of dim 0 */
zg_tensor *zg_cat(zg_tensor *const *ts, int n, int dim);
zg_tensor *zg_transpose(zg_tensor *a, int dim0, int dim1);
zg_tensor *zg_permute(zg_tensor *a, const int *dims, int ndim);

/* Losses. */
typedef struct {
    zg_reduction reduction;   /* default mean */
    int64_t ignore_index;     /* default -100 */
    float label_smoothing;    /* default 0 */
    const zg_tensor *weight;  /* class weights [C] or NULL */
} zg_loss_opts;
/* ZG_LOSS_DEFAULTS: mean, ignore_index -100, no smoothing, no weights. */
#define ZG_LOSS_DEFAULTS ((zg_loss_opts){ZG_REDUCTION_MEAN, -100, 0.0f, NULL})
/* logits [N,C] (or [C]), target int64 [N] of class indices; opts may be NULL. */
zg_tensor *zg_cross_entropy(zg_tensor *logits, const zg_tensor *target, const zg_loss_opts *opts);
/* log-probabilities [N,C], target int64 [N]. label_smoothing is ignored. */
zg_tensor *zg_nll_loss(zg_tensor *logp, const zg_tensor *target, const zg_loss_opts *opts);
zg_tensor *zg_mse_loss(zg_tensor *input, zg_tensor *target, zg_reduction reduction);
/* Stable for any logit; pos_weight [C] or NULL. */
zg_tensor *zg_bce_with_logits(zg_tensor *logits, zg_tensor *target, zg_reduction reduction,
                              const zg_tensor *pos_weight);

/* Convolution, pooling, normalisation (NCHW). */
/* x [N,Cin,H,W], w [Cout,Cin/groups,kH,kW], b [Cout] or NULL. stride,
 * padding and dilation are {h, w} pairs. */
zg_tensor *zg_conv2d(zg_tensor *x, zg_tensor *w, zg_tensor *b, const int stride[2], const int padding[2],
                     const int dilation[2], int groups);
/* Max over kernel windows (padding counts as -inf); avg includes the
 * padding in the divisor (PyTorch's count_include_pad=True). */
zg_tensor *zg_max_pool2d(zg_tensor *x, const int kernel[2], const int stride[2], const int padding[2]);
zg_tensor *zg_avg_pool2d(zg_tensor *x, const int kernel[2], const int stride[2], const int padding[2]);
/* x [N,C] or [N,C,L] (1d) or [N,C,H,W] (2d). Training: normalise with the
 * batch statistics and update running_mean/running_var in place
 * (running = (1-momentum)*running + momentum*batch, unbiased variance);
 * eval: use the running statistics. weight/bias [C] may be NULL. */
zg_tensor *zg_batch_norm(zg_tensor *x, zg_tensor *running_mean, zg_tensor *running_var, zg_tensor *weight,
                         zg_tensor *bias, bool training, float momentum, float eps);

/* ------------------------------------------------------------------ */
/* nn: modules                                                          */
/* ------------------------------------------------------------------ */

/* Linear(in, out): weight [out,in], bias [out], PyTorch's default init
 * (uniform +-1/sqrt(in)) from the default generator. */
zg_module *zg_nn_linear(int64_t in_features, int64_t out_features, bool bias);
zg_module *zg_nn_relu(void);
zg_module *zg_nn_leaky_relu(float negative_slope);
zg_module *zg_nn_gelu(bool approximate_tanh);
zg_module *zg_nn_tanh(void);
zg_module *zg_nn_sigmoid(void);
zg_module *zg_nn_dropout(float p);
zg_module *zg_nn_flatten(void);
/* Conv2d(in, out, kernel) with square kernel/stride/padding/dilation;
 * weight and bias init as PyTorch's (fan_in = in/groups * k * k). */
zg_module *zg_nn_conv2d(int64_t in_channels, int64_t out_channels, int kernel, int stride, int padding, int dilation,
                        int groups, bool bias);
zg_module *zg_nn_max_pool2d(int kernel, int stride, int padding);
zg_module *zg_nn_avg_pool2d(int kernel, int stride, int padding);
/* BatchNorm with affine weight (ones) and bias (zeros) and the buffers
 * running_mean (zeros), running_var (ones), num_batches_tracked. */
zg_module *zg_nn_batch_norm1d(int64_t num_features, float eps, float momentum);
zg_module *zg_nn_batch_norm2d(int64_t num_features, float eps, float momentum);
/* Takes ownership of the modules (also on failure); children are named
 * "0", "1", ... so parameters read "0.weight". */
zg_module *zg_nn_sequential(zg_module *const *modules, int n);

zg_tensor *zg_module_forward(zg_module *m, zg_tensor *x);
/* Parameters in registration order, depth first, with dotted names. */
int zg_module_num_params(const zg_module *m);
zg_tensor *zg_module_param(const zg_module *m, int index);
const char *zg_module_param_name(const zg_module *m, int index);
zg_tensor *zg_module_param_by_name(const zg_module *m, const char *name);
/* Fills `out` (capacity max) with the parameters; returns their count. */
int zg_module_params(const zg_module *m, zg_tensor **out, int max);
int64_t zg_module_num_elements(const zg_module *m);
/* A direct child by index (Sequential), NULL if none. */
zg_module *zg_module_child(const zg_module *m, int index);
int zg_module_num_children(const zg_module *m);
const char *zg_module_type(const zg_module *m);
void zg_module_train(zg_module *m, bool train); /* also for children */
bool zg_module_is_training(const zg_module *m);
/* Buffers (state that is not a parameter, e.g. running statistics), with
 * dotted names ("1.running_mean"); saved and loaded with the weights. */
int zg_module_num_buffers(const zg_module *m);
zg_tensor *zg_module_buffer(const zg_module *m, int index);
const char *zg_module_buffer_name(const zg_module *m, int index);
/* All the module's parameters (also those no optimizer manages). */
void zg_module_zero_grad(zg_module *m, bool set_to_none);
void zg_module_free(zg_module *m);
/* Weights by parameter name, as safetensors. Loading checks every name and
 * shape before it writes anything. */
int zg_module_save(const zg_module *m, const char *path);
int zg_module_load(zg_module *m, const char *path);

/* ------------------------------------------------------------------ */
/* Optimizers                                                           */
/* ------------------------------------------------------------------ */

typedef enum { ZG_SGD, ZG_ADAM, ZG_ADAMW, ZG_RMSPROP, ZG_ADAGRAD } zg_optim_kind;

/* Hyperparameter keys for parameter groups. */
typedef enum {
    ZG_HP_LR = 0,
    ZG_HP_WEIGHT_DECAY,
    ZG_HP_MOMENTUM,
    ZG_HP_DAMPENING,
    ZG_HP_NESTEROV,  /* 0 / 1 */
    ZG_HP_MAXIMIZE,  /* 0 / 1 */
    ZG_HP_BETA1,
    ZG_HP_BETA2,
    ZG_HP_EPS,
    ZG_HP_AMSGRAD,   /* 0 / 1 */
    ZG_HP_ALPHA,
    ZG_HP_CENTERED,  /* 0 / 1 */
    ZG_HP_LR_DECAY,
    ZG_HP_INITIAL_ACCUMULATOR_VALUE,
    ZG_HP_COUNT
} zg_hparam;

/* One override of a group: {ZG_HP_LR, 0.01}. */
typedef struct {
    zg_hparam key;
    double value;
} zg_hp;

/* The optimizer's defaults. Get PyTorch's with zg_optim_defaults(kind),
 * then change fields. */
typedef struct {
    double lr, weight_decay, momentum, dampening;
    bool nesterov, maximize;
    double beta1, beta2, eps;
    bool amsgrad;
    double alpha;
    bool centered;
    double lr_decay, initial_accumulator_value;
} zg_optim_config;

/* PyTorch's defaults for `kind` (SGD lr 1e-3 as in 2.x). */
zg_optim_config zg_optim_defaults(zg_optim_kind kind);

/* One group: parameters plus overrides of the defaults. */
typedef struct {
    zg_tensor *const *params;
    int n_params;
    const zg_hp *overrides;
    int n_overrides;
} zg_param_group;

/* config may be NULL (PyTorch's defaults). Errors: no parameters, a
 * parameter listed twice, invalid hyperparameters (negative lr, nesterov
 * without momentum or with dampening, betas outside [0,1), ...). */
zg_optim *zg_optim_new(zg_optim_kind kind, zg_tensor *const *params, int n_params,
                       const zg_optim_config *config);
zg_optim *zg_optim_new_groups(zg_optim_kind kind, const zg_param_group *groups, int n_groups,
                              const zg_optim_config *config);
int zg_optim_add_param_group(zg_optim *opt, const zg_param_group *group);
void zg_optim_free(zg_optim *opt);

/* Clears the grads of this optimizer's parameters only. */
void zg_optim_zero_grad(zg_optim *opt, bool set_to_none);
/* One update; parameters whose .grad is None are skipped entirely.
 * Hyperparameters are re-read from the groups on every call. */
int zg_optim_step(zg_optim *opt);

zg_optim_kind zg_optim_get_kind(const zg_optim *opt);
int zg_optim_num_groups(const zg_optim *opt);
int zg_optim_group_size(const zg_optim *opt, int group);
zg_tensor *zg_optim_group_param(const zg_optim *opt, int group, int index);
/* Read / write one hyperparameter of a group (schedulers use these). */
double zg_optim_get_hparam(const zg_optim *opt, int group, zg_hparam key);
int zg_optim_set_hparam(zg_optim *opt, int group, zg_hparam key, double value);
/* Per-parameter state, by the parameter's global index (counted across
 * groups in order): the step count and named buffers ("momentum_buffer",
 * "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "square_avg", "grad_avg",
 * "sum"). NULL / -1 when the parameter has no state yet. */
int64_t zg_optim_state_step(const zg_optim *opt, int param_index);
zg_tensor *zg_optim_state_buffer(const zg_optim *opt, int param_index, const char *name);

/* state_dict as a safetensors file: buffers "state.<i>.<name>", and in
 * the metadata the kind, the groups' hyperparameters and index lists.
 * Loading checks the kind, the group count and sizes and every buffer's
 * shape before anything changes. */
int zg_optim_save(const zg_optim *opt, const char *path);
int zg_optim_load(zg_optim *opt, const char *path);

/* ------------------------------------------------------------------ */
/* safetensors                                                          */
/* ------------------------------------------------------------------ */

typedef struct zg_safetensors zg_safetensors;
/* Reads and validates a whole file (header, dtypes F32/I64, shapes,
 * offsets: in range, not overlapping, covering the data). */
zg_safetensors *zg_safetensors_read(const char *path);
int zg_safetensors_count(const zg_safetensors *st);
const char *zg_safetensors_name(const zg_safetensors *st, int index);
/* The tensor (owned by st, valid until zg_safetensors_free). */
zg_tensor *zg_safetensors_get(const zg_safetensors *st, const char *name);
/* Metadata value for key, or NULL. */
const char *zg_safetensors_metadata(const zg_safetensors *st, const char *key);
void zg_safetensors_free(zg_safetensors *st);

/* Writes tensors (float32 or int64) with names, and optional metadata
 * key/value pairs, to path atomically (temporary file, fsync, rename). */
int zg_safetensors_write(const char *path, zg_tensor *const *tensors, const char *const *names, int n,
                         const char *const *meta_keys, const char *const *meta_values, int n_meta);

/* ------------------------------------------------------------------ */
/* Data: data sets and a loader                                         */
/* ------------------------------------------------------------------ */

/* An in-memory labelled data set: samples (uint8 images kept as bytes and
 * normalised per batch, or float features) and int64 labels. */
typedef struct zg_dataset zg_dataset;
/* MNIST-format IDX files, gzipped or not (chosen by the content). */
zg_dataset *zg_dataset_load_idx(const char *images_path, const char *labels_path);
/* Fashion-MNIST (or MNIST) from a directory holding
 * {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]. */
zg_dataset *zg_dataset_load_mnist_dir(const char *dir, bool train);
/* Numeric CSV: one row per sample, label_column holds the class index
 * (negative counts from the end); header: skip the first line. */
zg_dataset *zg_dataset_load_csv(const char *path, int label_column, bool header);
int64_t zg_dataset_size(const zg_dataset *ds);
/* Shape of one sample (e.g. {1, 28, 28}); returns ndim. */
int zg_dataset_sample_shape(const zg_dataset *ds, int64_t shape[ZG_MAX_DIMS]);
/* 1 + the largest label. */
int64_t zg_dataset_num_classes(const zg_dataset *ds);
/* The first n samples (a view that shares the memory; free it alone). */
zg_dataset *zg_dataset_head(const zg_dataset *ds, int64_t n);
void zg_dataset_free(zg_dataset *ds);

typedef struct {
    int64_t batch_size;
    bool shuffle;   /* a new order each epoch, from (seed, epoch) only */
    bool drop_last;
    uint64_t seed;
    /* uint8 samples become (v/255 - mean) / std; float samples as is. */
    float mean, std;
    bool prefetch;  /* prepare the next batch on a background thread */
} zg_loader_opts;
typedef struct zg_loader zg_loader;
/* The loader does not own ds (it must outlive the loader). */
zg_loader *zg_loader_new(const zg_dataset *ds, const zg_loader_opts *opts);
/* Starts epoch `epoch` (its order) at batch `start_batch` (resume). */
int zg_loader_start_epoch(zg_loader *ld, int64_t epoch, int64_t start_batch);
int64_t zg_loader_num_batches(const zg_loader *ld);
/* Next batch: x float32 [B, sample shape...], y int64 [B], owned by the
 * loader and valid until the next call. Returns 1 with a batch, 0 at the
 * end of the epoch, negative on error. */
int zg_loader_next(zg_loader *ld, zg_tensor **x, zg_tensor **y);
/* Index of the next batch in the current epoch. */
int64_t zg_loader_position(const zg_loader *ld);
void zg_loader_free(zg_loader *ld);

#ifdef __cplusplus
}
#endif
#endif
