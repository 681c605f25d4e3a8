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

/* What libzgrad.so exports: the library is built with -fvisibility=hidden,
 * so the functions declared here, each marked ZG_API, are all a program
 * can link to (scripts/check-exports compares the two). */
#if defined(__GNUC__)
#define ZG_API __attribute__((visibility("default")))
#else
#define ZG_API
#endif
#define ZG_MAX_DIMS 8

typedef enum {
    ZG_OK = 0,
    ZG_ERR_ARG = -1,     /* NULL or out-of-range argument */
    ZG_ERR_SHAPE = -2,   /* shapes or dtypes do not fit */
    ZG_ERR_STATE = -3,   /* wrong call order / graph state */
    ZG_ERR_IO = -4,      /* file could not be read or written */
    ZG_ERR_FORMAT = -5,  /* file content is invalid */
    ZG_ERR_NOMEM = -6,
    ZG_ERR_NONFINITE = -7, /* a result is NaN or infinite (the training diverged) */
    ZG_ERR_UNAVAILABLE = -8, /* left out of this build (zg_dist_* / zg_ddp_* without MPI) */
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
ZG_API const char *zg_last_error(void);
ZG_API void zg_clear_error(void);

/* ------------------------------------------------------------------ */
/* Step arena                                                          */
/* ------------------------------------------------------------------ */

/* Frees every op result and graph node made on this thread since the last
 * reset. Blocks are kept for reuse, so a steady loop never mallocs. */
ZG_API void zg_arena_reset(void);
/* A mark and a release back to it (e.g. inside an evaluation loop). */
ZG_API size_t zg_arena_mark(void);
ZG_API void zg_arena_release(size_t mark);
ZG_API size_t zg_arena_bytes_used(void);
/* Bytes the arena holds from the system (used or not). */
ZG_API size_t zg_arena_bytes_reserved(void);
/* Returns all arena blocks of this thread to the system. */
ZG_API void zg_arena_free_all(void);

/* ------------------------------------------------------------------ */
/* Random numbers                                                      */
/* ------------------------------------------------------------------ */

ZG_API void zg_manual_seed(uint64_t seed);
/* The generator's state, to save in checkpoints. */
ZG_API void zg_rng_get_state(uint64_t state[4]);
ZG_API void zg_rng_set_state(const uint64_t state[4]);

/* ------------------------------------------------------------------ */
/* Tensors                                                             */
/* ------------------------------------------------------------------ */

/* Persistent tensors (free with zg_tensor_free). */
ZG_API zg_tensor *zg_tensor_new(zg_dtype dtype, const int64_t *shape, int ndim);
/* Copies `data` (float for ZG_FLOAT32, int64_t for ZG_INT64). */
ZG_API zg_tensor *zg_tensor_from_data(zg_dtype dtype, const void *data, const int64_t *shape, int ndim);
ZG_API zg_tensor *zg_zeros(const int64_t *shape, int ndim);
ZG_API zg_tensor *zg_ones(const int64_t *shape, int ndim);
ZG_API zg_tensor *zg_full(const int64_t *shape, int ndim, float value);
ZG_API zg_tensor *zg_scalar(float value); /* 0-dim */
/* uniform [0,1), standard normal, uniform [lo,hi), normal(mean, std). */
ZG_API zg_tensor *zg_rand(const int64_t *shape, int ndim);
ZG_API zg_tensor *zg_randn(const int64_t *shape, int ndim);
ZG_API zg_tensor *zg_uniform(const int64_t *shape, int ndim, float lo, float hi);
ZG_API zg_tensor *zg_normal(const int64_t *shape, int ndim, float mean, float std);
/* A persistent copy with no graph (what keeps a value past the step). */
ZG_API zg_tensor *zg_tensor_clone(const zg_tensor *t);
/* Frees a persistent tensor, its .grad and hooks; no-op for NULL and for
 * arena tensors (they die with the arena). */
ZG_API void zg_tensor_free(zg_tensor *t);

ZG_API zg_dtype zg_tensor_dtype(const zg_tensor *t);
ZG_API int zg_tensor_ndim(const zg_tensor *t);
/* Size of dimension `dim` (negative counts from the end); -1 on error. */
ZG_API int64_t zg_tensor_size(const zg_tensor *t, int dim);
ZG_API const int64_t *zg_tensor_shape(const zg_tensor *t);
ZG_API int64_t zg_tensor_numel(const zg_tensor *t);
/* Raw contiguous data. Writing through it does NOT bump the version
 * counter; use the in-place calls below for tracked writes. */
ZG_API float *zg_tensor_data(zg_tensor *t);
ZG_API int64_t *zg_tensor_data_i64(zg_tensor *t);
/* Value of a one-element float tensor (NAN and an error otherwise). */
ZG_API float zg_tensor_item(const zg_tensor *t);
/* Element at a flat index (float tensors). */
ZG_API float zg_tensor_get(const zg_tensor *t, int64_t flat_index);
ZG_API bool zg_tensor_is_persistent(const zg_tensor *t);
/* Debug print: shape, dtype, grad state and (a few) values. */
ZG_API void zg_tensor_print(const zg_tensor *t, FILE *f);
/* A name used in error messages (parameters get theirs from modules). */
ZG_API int zg_tensor_set_name(zg_tensor *t, const char *name);
ZG_API const char *zg_tensor_name(const zg_tensor *t);

/* In-place writes (tracked: they bump the version counter so that a
 * backward through a node that saved the tensor fails instead of computing
 * a wrong gradient). They are not differentiable: on a tensor that requires
 * grad they need no-grad mode. */
ZG_API int zg_tensor_fill_(zg_tensor *t, float value);
ZG_API int zg_tensor_copy_(zg_tensor *dst, const zg_tensor *src); /* same numel */
ZG_API int zg_tensor_add_(zg_tensor *t, const zg_tensor *other, float alpha); /* t += alpha*other */
ZG_API int zg_tensor_mul_scalar_(zg_tensor *t, float s);
/* Version counter of the storage. */
ZG_API uint64_t zg_tensor_version(const zg_tensor *t);

/* ------------------------------------------------------------------ */
/* Autograd                                                            */
/* ------------------------------------------------------------------ */

/* Only on leaves (a non-leaf's flag follows its inputs). */
ZG_API int zg_tensor_set_requires_grad(zg_tensor *t, bool requires_grad);
ZG_API bool zg_tensor_requires_grad(const zg_tensor *t);
ZG_API bool zg_tensor_is_leaf(const zg_tensor *t);
/* .grad: NULL while None. The same object is returned across backwards. */
ZG_API zg_tensor *zg_tensor_grad(const zg_tensor *t);
/* Sets .grad to None (set_to_none) or zero-fills it in place. */
ZG_API void zg_tensor_zero_grad(zg_tensor *t, bool set_to_none);
/* Writes `g` into .grad (copy; same shape), or sets None for g == NULL. */
ZG_API int zg_tensor_set_grad(zg_tensor *t, const zg_tensor *g);
/* Keep the gradient of a non-leaf in its .grad during backward. */
ZG_API int zg_tensor_retain_grad(zg_tensor *t);
/* Name of the backward node that made t ("mul"), NULL for leaves. */
ZG_API const char *zg_tensor_grad_fn_name(const zg_tensor *t);
/* Same data (shared), no graph, requires_grad false, a leaf (arena). */
ZG_API zg_tensor *zg_detach(zg_tensor *t);

/* no_grad scopes nest. */
ZG_API void zg_no_grad_enter(void);
ZG_API void zg_no_grad_exit(void);
ZG_API bool zg_grad_enabled(void);
/* Sets grad mode and returns the previous one. */
ZG_API bool zg_set_grad_enabled(bool enabled);

typedef struct {
    /* Gradient of the root (vector-Jacobian product); NULL means 1 and
     * needs a one-element root. */
    const zg_tensor *grad;
    bool retain_graph;
    /* If n_inputs > 0, accumulate only into these tensors. */
    zg_tensor *const *inputs;
    int n_inputs;
    /* Not supported by zg_backward (ZG_ERR_ARG): PyTorch would store a
     * .grad that carries a graph, but zgrad's .grad buffers are persistent
     * and the graph dies at zg_arena_reset. Take gradients to
     * differentiate from zg_autograd_grad_opts with create_graph. */
    bool create_graph;
} zg_backward_opts;

/* Backward from root; opts may be NULL. Adds into each leaf's .grad. */
ZG_API int zg_backward(zg_tensor *root, const zg_backward_opts *opts);
/* Gradients of sum(outputs[i] * grad_outputs[i]) with respect to inputs,
 * written to grads[i] (arena tensors; NULL where an input is unreachable
 * and allow_unused). Never touches .grad. grad_outputs may be NULL
 * (one-element outputs). */
ZG_API int zg_autograd_grad(zg_tensor *const *outputs, const zg_tensor *const *grad_outputs, int n_outputs,
                            zg_tensor *const *inputs, int n_inputs, zg_tensor **grads, bool retain_graph,
                            bool allow_unused);

/* torch.autograd.grad's options ({0}: the defaults). */
typedef struct {
    /* One per output, of its numel; NULL: 1 for one-element outputs. */
    const zg_tensor *const *grad_outputs;
    /* Keep the graph's saved tensors for another backward. */
    bool retain_graph;
    /* Higher-order gradients: the pass runs in grad mode through each
     * op's differentiable backward, so grads[i] carries a graph (a
     * grad_fn) back to the inputs, the graph's parameters and the
     * grad_outputs that require grad, and can be differentiated again
     * (zg_backward of a loss made from it, as a WGAN-GP gradient penalty
     * does). grads[i] is the gradient tensor itself, not a copy; a given
     * grad_output is used as it is. The graph is kept (retain_graph is
     * implied, PyTorch's default with create_graph). Supported: linear,
     * matmul and conv2d (float32; a node recorded under autocast refuses),
     * the element-wise ops but zg_pow, the activations relu, leaky_relu,
     * gelu, tanh, sigmoid, softmax, log_softmax, sum / mean (all or one
     * dim), max_dim, reshape, flatten, transpose, permute, slice, narrow
     * (split, chunk), cat, tril, triu, masked_fill, layer_norm, batch_norm
     * (training and eval), max_pool2d, avg_pool2d, adaptive_avg_pool1d/2d,
     * dropout, embedding, and the losses cross_entropy (weights,
     * ignore_index, label_smoothing, [N,C,d1,...]), nll_loss, mse_loss,
     * bce_with_logits. A graph through any other op (zg_pow with a tensor
     * exponent, attention) fails before the pass runs anything, naming the
     * op. */
    bool create_graph;
    /* NULL in grads[i] for an input the outputs do not depend on, instead
     * of an error. */
    bool allow_unused;
} zg_grad_opts;
/* zg_autograd_grad with options; opts may be NULL (the defaults). */
ZG_API int zg_autograd_grad_opts(zg_tensor *const *outputs, int n_outputs, zg_tensor *const *inputs, int n_inputs,
                                 zg_tensor **grads, const zg_grad_opts *opts);

/* A tensor hook sees the incoming gradient before it is accumulated (or,
 * for a non-leaf, before it flows on). It returns NULL to keep the
 * gradient, or a replacement of the same shape. On an error it sets one
 * with zg_set_error and returns ZG_HOOK_FAIL. Hooks run in registration
 * order. As in PyTorch 2.x, a tensor's hooks run before anything else
 * sees its gradient: a non-leaf's retained .grad (zg_tensor_retain_grad)
 * is the hooked gradient whichever was asked for first, and
 * zg_autograd_grad returns the hooked gradient of each input, leaf or
 * not. (PyTorch 1.13 differs: retain_grad() was itself a hook, so hooks
 * registered after it did not reach .grad, and autograd.grad returned
 * inputs' gradients before their hooks.) */
typedef zg_tensor *(*zg_tensor_hook_fn)(zg_tensor *grad, void *user);
#define ZG_HOOK_FAIL ((zg_tensor *)(uintptr_t)1)
ZG_API int zg_tensor_register_hook(zg_tensor *t, zg_tensor_hook_fn fn, void *user);
/* Runs on a leaf after its .grad was updated. Returns a zg_status. */
typedef int (*zg_post_accumulate_hook_fn)(zg_tensor *leaf, void *user);
ZG_API int zg_tensor_register_post_accumulate_hook(zg_tensor *t, zg_post_accumulate_hook_fn fn, void *user);
/* Removes the first post-accumulate hook registered with this fn and user
 * (PyTorch's handle.remove()); ZG_ERR_ARG if there is none. */
ZG_API int zg_tensor_remove_post_accumulate_hook(zg_tensor *t, zg_post_accumulate_hook_fn fn, void *user);
ZG_API void zg_tensor_clear_hooks(zg_tensor *t);
/* Queues fn(user) to run once when the backward pass now running ends:
 * after every gradient was delivered and every hook ran, before
 * zg_backward / zg_autograd_grad returns (PyTorch's
 * Variable._execution_engine.queue_callback). Only from inside a pass (a
 * hook); ZG_ERR_STATE elsewhere. Callbacks run in the order queued; one
 * that returns < 0 fails the pass with its error and the rest do not run. A
 * pass that fails before its end drops its callbacks. */
typedef int (*zg_backward_callback_fn)(void *user);
ZG_API int zg_autograd_queue_callback(zg_backward_callback_fn fn, void *user);

/* For hooks and extensions: set this thread's error text. */
ZG_API void zg_set_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* ------------------------------------------------------------------ */
/* Ops: each returns a new arena tensor (or NULL and an error).        */
/* Binary float ops broadcast as NumPy/PyTorch do.                     */
/* ------------------------------------------------------------------ */

ZG_API zg_tensor *zg_add(zg_tensor *a, zg_tensor *b);
ZG_API zg_tensor *zg_sub(zg_tensor *a, zg_tensor *b);
ZG_API zg_tensor *zg_mul(zg_tensor *a, zg_tensor *b);
ZG_API zg_tensor *zg_div(zg_tensor *a, zg_tensor *b);
ZG_API zg_tensor *zg_neg(zg_tensor *a);
ZG_API zg_tensor *zg_add_scalar(zg_tensor *a, float s);
ZG_API zg_tensor *zg_sub_scalar(zg_tensor *a, float s);   /* a - s */
ZG_API zg_tensor *zg_rsub_scalar(zg_tensor *a, float s);  /* s - a */
ZG_API zg_tensor *zg_mul_scalar(zg_tensor *a, float s);
ZG_API zg_tensor *zg_div_scalar(zg_tensor *a, float s);   /* a / s */
ZG_API zg_tensor *zg_pow_scalar(zg_tensor *a, float p);   /* a ^ p */
ZG_API zg_tensor *zg_pow(zg_tensor *a, zg_tensor *b);     /* a ^ b, a > 0 for grad wrt b */
ZG_API zg_tensor *zg_exp(zg_tensor *a);
ZG_API zg_tensor *zg_log(zg_tensor *a);
ZG_API zg_tensor *zg_sqrt(zg_tensor *a);

/* Reductions; dim may be negative. */
ZG_API zg_tensor *zg_sum(zg_tensor *a);  /* all elements, 0-dim result */
ZG_API zg_tensor *zg_mean(zg_tensor *a);
ZG_API zg_tensor *zg_sum_dim(zg_tensor *a, int dim, bool keepdim);
ZG_API zg_tensor *zg_mean_dim(zg_tensor *a, int dim, bool keepdim);
/* Max along dim; indices (int64, optional) as torch.max(a, dim). The
 * gradient goes to the first maximal element. */
ZG_API zg_tensor *zg_max_dim(zg_tensor *a, int dim, bool keepdim, zg_tensor **indices);

/* a [n,k] @ b [k,m] (2-D) or batched [B,n,k] @ [B,k,m] (3-D). */
ZG_API zg_tensor *zg_matmul(zg_tensor *a, zg_tensor *b);
/* x [..., in] @ w[out, in]^T + b[out] (b may be NULL). */
ZG_API zg_tensor *zg_linear(zg_tensor *x, zg_tensor *w, zg_tensor *b);

ZG_API zg_tensor *zg_relu(zg_tensor *a);
ZG_API zg_tensor *zg_leaky_relu(zg_tensor *a, float negative_slope);
/* approximate_tanh false: x * Phi(x) (erf); true: the tanh formula. */
ZG_API zg_tensor *zg_gelu(zg_tensor *a, bool approximate_tanh);
ZG_API zg_tensor *zg_tanh(zg_tensor *a);
ZG_API zg_tensor *zg_sigmoid(zg_tensor *a);
ZG_API zg_tensor *zg_softmax(zg_tensor *a, int dim);
ZG_API zg_tensor *zg_log_softmax(zg_tensor *a, int dim);
/* Train: zero with probability p, scale the rest by 1/(1-p). Eval: a. */
ZG_API zg_tensor *zg_dropout(zg_tensor *a, float p, bool train);

/* Shape. reshape and slice are views (shared data); the rest copy. */
ZG_API zg_tensor *zg_reshape(zg_tensor *a, const int64_t *shape, int ndim); /* one -1 allowed */
ZG_API zg_tensor *zg_flatten(zg_tensor *a, int start_dim);  /* [N, rest] from start_dim */
ZG_API zg_tensor *zg_slice(zg_tensor *a, int64_t start, int64_t end);  /* rows [start,end) of dim 0 */
ZG_API zg_tensor *zg_cat(zg_tensor *const *ts, int n, int dim);
ZG_API zg_tensor *zg_transpose(zg_tensor *a, int dim0, int dim1);
ZG_API zg_tensor *zg_permute(zg_tensor *a, const int *dims, int ndim);
/* a with the elements above (tril) or below (triu) diagonal k of its last
 * two dims zeroed: tril keeps j <= i + k, triu j >= i + k. */
ZG_API zg_tensor *zg_tril(zg_tensor *a, int64_t diagonal);
ZG_API zg_tensor *zg_triu(zg_tensor *a, int64_t diagonal);
/* value where mask (float or int64, nonzero = true, the shape of a's last
 * dims, repeated over the others) is set, a elsewhere. */
ZG_API zg_tensor *zg_masked_fill(zg_tensor *a, const zg_tensor *mask, float value);
/* int64 [n] = 0, 1, ..., n - 1 (persistent). */
ZG_API zg_tensor *zg_arange(int64_t n);
/* Elements [start, start + length) of dim (start may be negative), copied. */
ZG_API zg_tensor *zg_narrow(zg_tensor *a, int dim, int64_t start, int64_t length);
/* Pieces of split_size along dim (the last may be shorter) into out
 * (torch.split with an int): the number of pieces, or an error if they
 * are more than max_out. */
ZG_API int zg_split(zg_tensor *a, int64_t split_size, int dim, zg_tensor **out, int max_out);
/* torch.chunk: pieces of ceil(size / chunks) along dim (so possibly fewer
 * than chunks); the number of pieces, as zg_split. */
ZG_API int zg_chunk(zg_tensor *a, int64_t chunks, int dim, zg_tensor **out, int max_out);

/* Transformer ops. */
/* weight [V, D], indices int64 [*] -> [*, D]: rows of weight. padding_idx
 * (in [-V, V), negative counts from the end) names a row that gets no
 * gradient; ZG_NO_PADDING_IDX for none. An index outside [0, V) is an
 * error. The gradient of a row sums its uses in index order. */
#define ZG_NO_PADDING_IDX INT64_MIN
ZG_API zg_tensor *zg_embedding(zg_tensor *weight, const zg_tensor *indices, int64_t padding_idx);
/* Normalises x over its last k dims, which must equal normalized_shape[0..k);
 * weight and bias have normalized_shape or are NULL (no affine / no bias). */
ZG_API zg_tensor *zg_layer_norm(zg_tensor *x, const int64_t *normalized_shape, int k, zg_tensor *weight,
                                zg_tensor *bias, float eps);

/* q [*, T, E], k [*, S, E], v [*, S, Ev] -> [*, T, Ev]: softmax(scale q k^T
 * + mask) v per head (the * dims equal in all three), as PyTorch's
 * F.scaled_dot_product_attention with dropout_p 0. is_causal masks key j >
 * query i; attn_mask (NULL, or float [T, S] or [*, T, S], added to the
 * scores, -inf to drop a key) may not be combined with it. scale 0 means
 * 1/sqrt(E). Fused: blocked with an online softmax; backward keeps q, k, v,
 * the output and one log-sum-exp per query, never the T x S scores. */
ZG_API zg_tensor *zg_scaled_dot_product_attention(zg_tensor *q, zg_tensor *k, zg_tensor *v, const zg_tensor *attn_mask,
                                                  bool is_causal, float scale);

/* Losses. */
typedef struct {
    zg_reduction reduction;   /* default mean */
    int64_t ignore_index;     /* default -100 */
    float label_smoothing;    /* default 0 */
    const zg_tensor *weight;  /* class weights [C] or NULL */
} zg_loss_opts;
/* ZG_LOSS_DEFAULTS: mean, ignore_index -100, no smoothing, no weights. */
#define ZG_LOSS_DEFAULTS ((zg_loss_opts){ZG_REDUCTION_MEAN, -100, 0.0f, NULL})
/* logits [N,C] (or [C]), target int64 [N] of class indices; or logits
 * [N,C,d1,...] with target [N,d1,...] (per-pixel classes along dim 1;
 * reduction none gives [N,d1,...]); opts may be NULL. */
ZG_API zg_tensor *zg_cross_entropy(zg_tensor *logits, const zg_tensor *target, const zg_loss_opts *opts);
/* log-probabilities [N,C] (or [C], or [N,C,d1,...]), target int64 [N] (0-dim,
 * [N,d1,...]). label_smoothing is ignored. */
ZG_API zg_tensor *zg_nll_loss(zg_tensor *logp, const zg_tensor *target, const zg_loss_opts *opts);
ZG_API zg_tensor *zg_mse_loss(zg_tensor *input, zg_tensor *target, zg_reduction reduction);
/* Stable for any logit; pos_weight [C] or NULL. */
ZG_API zg_tensor *zg_bce_with_logits(zg_tensor *logits, zg_tensor *target, zg_reduction reduction,
                                     const zg_tensor *pos_weight);

/* Convolution, pooling, normalisation (NCHW). */
/* x [N,Cin,H,W], w [Cout,Cin/groups,kH,kW], b [Cout] or NULL. stride,
 * padding and dilation are {h, w} pairs. */
ZG_API zg_tensor *zg_conv2d(zg_tensor *x, zg_tensor *w, zg_tensor *b, const int stride[2], const int padding[2],
                            const int dilation[2], int groups);
/* Max over kernel windows (padding counts as -inf); avg includes the
 * padding in the divisor (PyTorch's count_include_pad=True). NULL stride
 * is the kernel; padding at most half the kernel. */
ZG_API zg_tensor *zg_max_pool2d(zg_tensor *x, const int kernel[2], const int stride[2], const int padding[2]);
ZG_API zg_tensor *zg_avg_pool2d(zg_tensor *x, const int kernel[2], const int stride[2], const int padding[2]);
/* Pooling options; zeroed (or a NULL pointer) they are PyTorch's defaults. */
typedef struct {
    /* Round the output size up instead of down; a last window that would
     * start past the input and its left padding is dropped. Windows that
     * hang past the right padding count only their part inside it. */
    bool ceil_mode;
    /* avg only: divide by the input elements of the window, padding left
     * out (PyTorch's count_include_pad=False). */
    bool exclude_pad;
    /* avg only: non-zero divides every window by this instead. */
    int divisor_override;
} zg_pool_opts;
ZG_API zg_tensor *zg_max_pool2d_ex(zg_tensor *x, const int kernel[2], const int stride[2], const int padding[2],
                                   const zg_pool_opts *opts);
ZG_API zg_tensor *zg_avg_pool2d_ex(zg_tensor *x, const int kernel[2], const int stride[2], const int padding[2],
                                   const zg_pool_opts *opts);
/* x [N,C,H,W] (or [C,H,W]) -> [N,C,OH,OW]: output (i, j) is the mean of
 * rows floor(i H / OH) .. ceil((i + 1) H / OH) - 1 and the same columns
 * for W, OW (PyTorch's adaptive_avg_pool2d); output_size {OH, OW} >= 1. */
ZG_API zg_tensor *zg_adaptive_avg_pool2d(zg_tensor *x, const int64_t output_size[2]);
/* x [N,C,L] (or [C,L]) -> [N,C,OL], the same rule along L. */
ZG_API zg_tensor *zg_adaptive_avg_pool1d(zg_tensor *x, int64_t output_size);
/* x [N,C] or [N,C,L] (1d) or [N,C,H,W] (2d). Training: normalise with the
 * batch statistics and update running_mean/running_var in place
 * (running = (1-momentum)*running + momentum*batch, unbiased variance);
 * eval: use the running statistics. weight/bias [C] may be NULL. */
ZG_API zg_tensor *zg_batch_norm(zg_tensor *x, zg_tensor *running_mean, zg_tensor *running_var, zg_tensor *weight,
                                zg_tensor *bias, bool training, float momentum, float eps);
/* PyTorch's momentum=None: the running statistics become the cumulative
 * average of the batch statistics (momentum 1/num_batches_tracked). */
#define ZG_BN_MOMENTUM_NONE (-1.0f)
/* zg_batch_norm as nn.BatchNorm runs it: a training call with running
 * statistics first adds 1 to num_batches_tracked (int64 0-dim; NULL: not
 * counted), then updates them with momentum, or with ZG_BN_MOMENTUM_NONE
 * with 1/num_batches_tracked (which then must be given). */
ZG_API zg_tensor *zg_batch_norm_tracked(zg_tensor *x, zg_tensor *running_mean, zg_tensor *running_var,
                                        zg_tensor *num_batches_tracked, zg_tensor *weight, zg_tensor *bias,
                                        bool training, float momentum, float eps);

/* ------------------------------------------------------------------ */
/* nn: modules                                                          */
/* ------------------------------------------------------------------ */

/* Linear(in, out): weight [out,in], bias [out], PyTorch's default init
 * (uniform +-1/sqrt(in)) from the default generator. */
ZG_API zg_module *zg_nn_linear(int64_t in_features, int64_t out_features, bool bias);
ZG_API zg_module *zg_nn_relu(void);
ZG_API zg_module *zg_nn_leaky_relu(float negative_slope);
ZG_API zg_module *zg_nn_gelu(bool approximate_tanh);
ZG_API zg_module *zg_nn_tanh(void);
ZG_API zg_module *zg_nn_sigmoid(void);
ZG_API zg_module *zg_nn_dropout(float p);
ZG_API zg_module *zg_nn_flatten(void);
/* Conv2d(in, out, kernel) with square kernel/stride/padding/dilation;
 * weight and bias init as PyTorch's (fan_in = in/groups * k * k). */
ZG_API zg_module *zg_nn_conv2d(int64_t in_channels, int64_t out_channels, int kernel, int stride, int padding,
                               int dilation, int groups, bool bias);
/* MaxPool2d / AvgPool2d with square kernel, stride (0: the kernel) and
 * padding; the _ex forms take zg_pool_opts (NULL: the defaults). */
ZG_API zg_module *zg_nn_max_pool2d(int kernel, int stride, int padding);
ZG_API zg_module *zg_nn_avg_pool2d(int kernel, int stride, int padding);
ZG_API zg_module *zg_nn_max_pool2d_ex(int kernel, int stride, int padding, const zg_pool_opts *opts);
ZG_API zg_module *zg_nn_avg_pool2d_ex(int kernel, int stride, int padding, const zg_pool_opts *opts);
/* AdaptiveAvgPool2d((out_h, out_w)) and AdaptiveAvgPool1d(out_len). */
ZG_API zg_module *zg_nn_adaptive_avg_pool2d(int64_t out_h, int64_t out_w);
ZG_API zg_module *zg_nn_adaptive_avg_pool1d(int64_t out_len);
/* BatchNorm with affine weight (ones) and bias (zeros) and the buffers
 * running_mean (zeros), running_var (ones), num_batches_tracked (counts
 * training batches). momentum in [0, 1], or ZG_BN_MOMENTUM_NONE for the
 * cumulative average. */
ZG_API zg_module *zg_nn_batch_norm1d(int64_t num_features, float eps, float momentum);
ZG_API zg_module *zg_nn_batch_norm2d(int64_t num_features, float eps, float momentum);
/* Embedding(V, D, padding_idx): weight [V, D] from N(0, 1), the padding
 * row zeroed (ZG_NO_PADDING_IDX for none); input int64 indices. */
ZG_API zg_module *zg_nn_embedding(int64_t num_embeddings, int64_t embedding_dim, int64_t padding_idx);
/* LayerNorm over the last dim: weight (ones) and bias (zeros) when
 * elementwise_affine (bias false leaves it out, as PyTorch's bias=False). */
ZG_API zg_module *zg_nn_layer_norm(int64_t normalized_dim, float eps, bool elementwise_affine, bool bias);
/* A GPT in nanoGPT's layout and init (src/nn/gpt.c): input int64 token
 * indices [B, T] (T <= block_size), output logits [B, T, vocab_size];
 * parameters named as nanoGPT's state_dict (transformer.wte.weight, ...,
 * the head tied to transformer.wte.weight); attention fused and causal
 * (with dropout > 0 in training, the plain path with dropout on the
 * attention probabilities, as nanoGPT without flash attention). */
typedef struct {
    int64_t vocab_size, block_size, n_layer, n_head, n_embd;
    float dropout;
    bool bias; /* biases in the Linear and LayerNorm layers */
} zg_gpt_config;
/* The GPT's parts, for transformers of one's own; x [B, T, C] -> [B, T, C]
 * with C = n_embd (a multiple of n_head), dropout in [0, 1), bias in the
 * Linear (and LayerNorm) layers; PyTorch's default init (zg_nn_gpt
 * re-initialises them as nanoGPT):
 *   CausalSelfAttention: c_attn C -> 3C, causal attention over n_head heads
 *     (fused; with dropout in training the plain path, dropout on the
 *     probabilities), c_proj C -> C, resid_dropout;
 *   MLP: c_fc C -> 4C, exact GELU, c_proj 4C -> C, dropout;
 *   Block: x + attn(ln_1(x)), then x + mlp(ln_2(x)) (pre-norm). */
ZG_API zg_module *zg_nn_causal_self_attention(int64_t n_embd, int64_t n_head, float dropout, bool bias);
ZG_API zg_module *zg_nn_transformer_mlp(int64_t n_embd, float dropout, bool bias);
ZG_API zg_module *zg_nn_transformer_block(int64_t n_embd, int64_t n_head, float dropout, bool bias);
/* nanoGPT's CPU recipe: vocab 65, block 64, 4 layers, 4 heads, 128 embd,
 * dropout 0, no bias. */
ZG_API zg_gpt_config zg_gpt_config_default(void);
ZG_API zg_module *zg_nn_gpt(const zg_gpt_config *config);
/* Continues prompt[0..n_prompt) by n_new tokens into out (n_prompt + n_new
 * ids): each step runs the model on the last block_size tokens (no KV
 * cache: recomputed, as nanoGPT's generate), in eval mode under no_grad,
 * and draws from softmax(logits / temperature) restricted to the top_k
 * largest (top_k <= 0: all); temperature 0 takes the argmax. The draws
 * depend on seed alone. */
ZG_API int zg_gpt_generate(zg_module *gpt, const int64_t *prompt, int64_t n_prompt, int64_t n_new,
                               float temperature, int64_t top_k, uint64_t seed, int64_t *out);
/* Takes ownership of the modules (also on failure); children are named
 * "0", "1", ... so parameters read "0.weight". */
ZG_API zg_module *zg_nn_sequential(zg_module *const *modules, int n);

/* A model file: JSON that reads like PyTorch's nn.Sequential (src/nn/model_file.c):
 *   {"input": [1, 28, 28],
 *    "layers": [{"type": "Conv2d", "in_channels": 1, "out_channels": 32,
 *                "kernel_size": 3, "padding": 1}, {"type": "ReLU"}, ...,
 *               {"type": "Linear", "args": [128, 10]}]}
 * "input" is one sample's shape (no batch dimension). Layers: Linear,
 * Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, BatchNorm1d,
 * BatchNorm2d, ReLU, LeakyReLU, GELU, Tanh, Sigmoid, Dropout, Flatten, with
 * PyTorch's argument names, order ("args") and defaults (null for None). Parsing follows the shapes through every
 * layer: a mismatch is an error naming the layer and the shapes. The model
 * is a Sequential, its parameters named as PyTorch's state_dict
 * ("0.weight", ...). A layer {"type": "GPT", "vocab_size": 65,
 * "block_size": 64, "n_layer": 4, "n_head": 4, "n_embd": 128, "dropout":
 * 0.0, "bias": true} (nanoGPT's GPTConfig: names, "args" order block_size,
 * vocab_size, n_layer, n_head, n_embd, dropout, bias, and defaults) is
 * zg_nn_gpt's GPT: the only layer, the model itself (parameters named as
 * nanoGPT's), "input" [T] token ids (T <= block_size; default
 * [block_size]), output [T, vocab_size]. */
typedef struct zg_model_spec zg_model_spec;
ZG_API zg_model_spec *zg_model_spec_load(const char *path);
/* name: shown in messages (NULL: "(text)"). */
ZG_API zg_model_spec *zg_model_spec_parse(const char *json, size_t len, const char *name);
ZG_API void zg_model_spec_free(zg_model_spec *s);
/* The model, PyTorch's default init from the default generator. */
ZG_API zg_module *zg_model_spec_build(const zg_model_spec *s);
/* One sample's input (output false) or output shape into shape[0..max);
 * returns its number of dimensions. */
ZG_API int zg_model_spec_shape(const zg_model_spec *s, bool output, int64_t *shape, int max);
/* The spec as canonical JSON (every argument written out); owned by s. */
ZG_API const char *zg_model_spec_json(const zg_model_spec *s);
/* Whether s is a GPT; if so (and config is not NULL) its configuration. */
ZG_API bool zg_model_spec_gpt(const zg_model_spec *s, zg_gpt_config *config);
/* A table as torchinfo prints: per layer its output shape, parameters and
 * forward FLOPs per sample (a multiply-add counts 2), then the totals;
 * malloc'd (free() it). */
ZG_API char *zg_model_spec_summary(const zg_model_spec *s);

ZG_API zg_tensor *zg_module_forward(zg_module *m, zg_tensor *x);
/* Parameters in registration order, depth first, with dotted names. */
ZG_API int zg_module_num_params(const zg_module *m);
ZG_API zg_tensor *zg_module_param(const zg_module *m, int index);
ZG_API const char *zg_module_param_name(const zg_module *m, int index);
ZG_API zg_tensor *zg_module_param_by_name(const zg_module *m, const char *name);
/* Fills `out` (capacity max) with the parameters; returns their count. */
ZG_API int zg_module_params(const zg_module *m, zg_tensor **out, int max);
ZG_API int64_t zg_module_num_elements(const zg_module *m);
/* A direct child by index (Sequential), NULL if none. */
ZG_API zg_module *zg_module_child(const zg_module *m, int index);
ZG_API int zg_module_num_children(const zg_module *m);
ZG_API const char *zg_module_type(const zg_module *m);
ZG_API void zg_module_train(zg_module *m, bool train); /* also for children */
ZG_API bool zg_module_is_training(const zg_module *m);
/* Buffers (state that is not a parameter, e.g. running statistics), with
 * dotted names ("1.running_mean"); saved and loaded with the weights. */
ZG_API int zg_module_num_buffers(const zg_module *m);
ZG_API zg_tensor *zg_module_buffer(const zg_module *m, int index);
ZG_API const char *zg_module_buffer_name(const zg_module *m, int index);
/* All the module's parameters (also those no optimizer manages). */
ZG_API void zg_module_zero_grad(zg_module *m, bool set_to_none);
ZG_API void zg_module_free(zg_module *m);
/* Weights by parameter name, as safetensors. Loading checks every name and
 * shape before it writes anything. */
ZG_API int zg_module_save(const zg_module *m, const char *path);
ZG_API int zg_module_load(zg_module *m, const char *path);
/* Writes m as it computes in eval mode as an ONNX model (opset 17) to
 * path: Sequential, Linear, Conv2d, MaxPool2d, AvgPool2d, BatchNorm1d/2d
 * (running statistics), LayerNorm, ReLU, LeakyReLU, GELU, Tanh, Sigmoid,
 * Flatten, Dropout (nothing) and zg_nn_gpt's GPT; the weights are
 * initializers under their parameter names. Input "input" float [N,
 * sample_shape...] (ndim dims, checked by one forward of zgrad's), output
 * "output"; a GPT takes "idx" int64 [N, T] (T <= block_size; sample_shape
 * is ignored) and gives "logits" [N, T, vocab]. ZG_ERR_ARG names a module
 * it cannot write. */
ZG_API int zg_onnx_export(zg_module *m, const int64_t *sample_shape, int ndim, const char *path);

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
ZG_API zg_optim_config zg_optim_defaults(zg_optim_kind kind);

/* One group: parameters plus overrides of the defaults. */
typedef struct {
    zg_tensor *const *params;
    int n_params;
    const zg_hp *overrides;
    int n_overrides;
} zg_param_group;

/* config may be NULL (PyTorch's defaults). Parameters are persistent
 * float32 leaves; as in PyTorch they need not require grad: a frozen one
 * has no grad, so steps skip it, and once unfrozen (requires_grad true, a
 * backward) it trains, its state starting at that step. A group may list
 * a parameter twice, as PyTorch 2.x allows with a warning (zgrad writes
 * it to stderr): every listing is updated at each step in order, sharing
 * the parameter's one state (Adam's step count advances twice; SGD's
 * momentum starts from each listing's gradient on the first step), and
 * anything that walks the optimizer's parameters (the GradScaler's
 * unscale_, zg_optim_clip_grad_*) sees it twice, as PyTorch's walk over
 * param_groups does. Errors: no parameters, a parameter in two groups,
 * invalid hyperparameters (negative lr, nesterov without momentum or with
 * dampening, betas outside [0,1), ...). */
ZG_API zg_optim *zg_optim_new(zg_optim_kind kind, zg_tensor *const *params, int n_params,
                              const zg_optim_config *config);
ZG_API zg_optim *zg_optim_new_groups(zg_optim_kind kind, const zg_param_group *groups, int n_groups,
                                     const zg_optim_config *config);
ZG_API int zg_optim_add_param_group(zg_optim *opt, const zg_param_group *group);
/* nanoGPT's configure_optimizers for module m: group 0 the tensors of
 * dim >= 2 (weights, embeddings) with weight_decay, group 1 the rest
 * (biases, norm weights) with none (a group is left out when empty). */
ZG_API zg_optim *zg_optim_new_decay_split(zg_optim_kind kind, const zg_module *m, double weight_decay,
                                          const zg_optim_config *config);
ZG_API void zg_optim_free(zg_optim *opt);

/* Clears the grads of this optimizer's parameters only. */
ZG_API void zg_optim_zero_grad(zg_optim *opt, bool set_to_none);
/* One update; parameters whose .grad is None are skipped entirely.
 * Hyperparameters are re-read from the groups on every call. */
ZG_API int zg_optim_step(zg_optim *opt);

ZG_API zg_optim_kind zg_optim_get_kind(const zg_optim *opt);
ZG_API int zg_optim_num_groups(const zg_optim *opt);
ZG_API int zg_optim_group_size(const zg_optim *opt, int group);
ZG_API zg_tensor *zg_optim_group_param(const zg_optim *opt, int group, int index);
/* Read / write one hyperparameter of a group (schedulers use these). */
ZG_API double zg_optim_get_hparam(const zg_optim *opt, int group, zg_hparam key);
ZG_API int zg_optim_set_hparam(zg_optim *opt, int group, zg_hparam key, double value);
/* Per-parameter state, by the parameter's global index (counted across
 * groups in order): the step count and named buffers ("momentum_buffer",
 * "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "square_avg", "grad_avg",
 * "sum"). NULL / -1 when the parameter has no state yet. */
ZG_API int64_t zg_optim_state_step(const zg_optim *opt, int param_index);
ZG_API zg_tensor *zg_optim_state_buffer(const zg_optim *opt, int param_index, const char *name);

/* state_dict as a safetensors file: buffers "state.<i>.<name>", and in
 * the metadata the kind, the groups' hyperparameters, initial_lr (once a
 * scheduler set it; a file without it loads, leaving the groups' own) and
 * index lists.
 * Loading checks the kind, the group count and sizes and every buffer's
 * shape before anything changes. */
ZG_API int zg_optim_save(const zg_optim *opt, const char *path);
ZG_API int zg_optim_load(zg_optim *opt, const char *path);

/* ------------------------------------------------------------------ */
/* safetensors                                                          */
/* ------------------------------------------------------------------ */

typedef struct zg_safetensors zg_safetensors;
/* Reads and validates a whole file (header, dtypes F32/I64, shapes,
 * offsets: in range, not overlapping, covering the data). */
ZG_API zg_safetensors *zg_safetensors_read(const char *path);
ZG_API int zg_safetensors_count(const zg_safetensors *st);
ZG_API const char *zg_safetensors_name(const zg_safetensors *st, int index);
/* The tensor (owned by st, valid until zg_safetensors_free). */
ZG_API zg_tensor *zg_safetensors_get(const zg_safetensors *st, const char *name);
/* Metadata value for key, or NULL. */
ZG_API const char *zg_safetensors_metadata(const zg_safetensors *st, const char *key);
ZG_API void zg_safetensors_free(zg_safetensors *st);

/* Writes tensors (float32 or int64) with names, and optional metadata
 * key/value pairs, to path atomically (temporary file, fsync, rename). */
ZG_API int zg_safetensors_write(const char *path, zg_tensor *const *tensors, const char *const *names, int n,
                                const char *const *meta_keys, const char *const *meta_values, int n_meta);

/* ------------------------------------------------------------------ */
/* Data: data sets and a loader                                         */
/* ------------------------------------------------------------------ */

/* An in-memory labelled data set: samples (uint8 images kept as bytes and
 * normalised per batch, or float features) and int64 labels. */
typedef struct zg_dataset zg_dataset;
/* MNIST-format IDX files, gzipped or not (chosen by the content).
 * labels_path NULL: images without labels (every label 0), to predict. */
ZG_API zg_dataset *zg_dataset_load_idx(const char *images_path, const char *labels_path);
/* Fashion-MNIST (or MNIST) from a directory holding
 * {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]. */
ZG_API zg_dataset *zg_dataset_load_mnist_dir(const char *dir, bool train);
/* Numeric CSV: one row per sample, label_column holds the class index
 * (negative counts from the end); header: skip the first line. */
ZG_API zg_dataset *zg_dataset_load_csv(const char *path, int label_column, bool header);

/* What a data set's targets are: class indices (y int64 [B] from the
 * loader) or regression values (y float32 [B, 1]). AUTO (loading only):
 * classify when every target is an integer, else regress. */
typedef enum { ZG_TASK_AUTO = 0, ZG_TASK_CLASSIFY = 1, ZG_TASK_REGRESS = 2 } zg_task;
typedef struct {
    /* The target column: a name of the header, else a 0-based index
     * written in digits ("4"); NULL: no target (inputs to predict on,
     * every label 0). */
    const char *target;
    zg_task task;
    /* NULL: every column but the target is a feature, in file order, and
     * must be numeric; else exactly these named columns, in this order
     * (other columns are not read). */
    const char *const *features;
    int64_t n_features;
} zg_csv_opts;
/* A CSV file with a header row (the tabular data of `zgrad train --csv`):
 * numeric features (samples of shape [F]) and the target column, parsed as
 * zg_dataset_load_csv parses (quotes, \r\n, blank lines, gzip). Every
 * error names the file, the line and the column. */
ZG_API zg_dataset *zg_dataset_load_table(const char *path, const zg_csv_opts *opts);

/* Image folders in torchvision's ImageFolder layout: one sub-folder per
 * class, classes sorted by name (byte order, as Python sorts them); the
 * PNG and JPEG files under each (sub-folders too, in os.walk's sorted
 * order; other files are skipped, as ImageFolder skips them) are its
 * samples, [C, H, W] as PyTorch lays them out. Every file is decoded once
 * here (libpng, libjpeg-turbo; several threads): a bad file is an error
 * naming it, and each image's pixel sums are kept for
 * zg_dataset_compute_stats. The loader decodes them again batch by batch
 * (in its prefetch thread), so memory holds the file names, not the
 * pixels. Values are v / 255, normalised per channel with
 * zg_dataset_set_normalization as torchvision's ToTensor then Normalize. */
typedef struct {
    int64_t height, width; /* 0: the first image's size, which every image must have; else
                            * every image of another size is resized to it (bilinear, as
                            * torchvision's Resize([height, width], antialias=False) on
                            * the uint8 image: F.interpolate with align_corners=False,
                            * rounded half to even) */
    int channels;          /* 0: 3 when any image has colour (grey repeated), else 1;
                            * 1: colour becomes grey as PIL's convert("L"); 3 */
    /* NULL: the folder's sub-folders are the classes; else the classes
     * of a trained run, by name (a sub-folder not among them is an error;
     * one may be missing). */
    const char *const *classes;
    int64_t n_classes;
    /* true: every PNG and JPEG file under the path, or the path itself
     * when it is a file, without labels (inputs to predict on). */
    bool unlabelled;
} zg_image_opts;
ZG_API zg_dataset *zg_dataset_load_image_folder(const char *path, const zg_image_opts *opts);

/* The task of a data set: CLASSIFY or REGRESS. */
ZG_API zg_task zg_dataset_task(const zg_dataset *ds);
/* Names: a table's feature i and its target column, an image folder's
 * class k, image i's path; NULL when there is none. */
ZG_API const char *zg_dataset_feature_name(const zg_dataset *ds, int64_t i);
ZG_API const char *zg_dataset_target_name(const zg_dataset *ds);
ZG_API const char *zg_dataset_class_name(const zg_dataset *ds, int64_t k);
ZG_API const char *zg_dataset_sample_name(const zg_dataset *ds, int64_t i);
/* Mean and standard deviation (population: divided by n) of each of the
 * sample's shape[0] features (a table) or channels (images, of v / 255)
 * over the data set, in double; a constant one gets std 1, so that it
 * normalises to 0. */
ZG_API int zg_dataset_compute_stats(const zg_dataset *ds, float *mean, float *std);
/* The loader then delivers (x - mean[k]) / std[k] in float32 for feature
 * or channel k (images: x = v / 255); NULL, NULL: none. Copied. */
ZG_API int zg_dataset_set_normalization(zg_dataset *ds, const float *mean, const float *std);
/* Rows (or images) drawn by a permutation from seed alone: the last
 * round(val_fraction * n) of it validate, the rest train, each part in
 * the data set's order. Both parts are new data sets (0 < val_fraction
 * < 1, each part non-empty). */
ZG_API int zg_dataset_split(const zg_dataset *ds, double val_fraction, uint64_t seed, zg_dataset **train,
                            zg_dataset **val);
ZG_API int64_t zg_dataset_size(const zg_dataset *ds);
/* Shape of one sample (e.g. {1, 28, 28}); returns ndim. */
ZG_API int zg_dataset_sample_shape(const zg_dataset *ds, int64_t shape[ZG_MAX_DIMS]);
/* 1 + the largest label. */
ZG_API int64_t zg_dataset_num_classes(const zg_dataset *ds);
/* The first n samples (1 <= n <= size): a view that shares the memory
 * (reference counted) and keeps the parent's class count. The view and
 * its parent may be freed in either order; the memory goes with the last. */
ZG_API zg_dataset *zg_dataset_head(const zg_dataset *ds, int64_t n);
ZG_API void zg_dataset_free(zg_dataset *ds);

/* A text corpus for language models (src/data/text.c): token ids over a
 * vocabulary of characters (the distinct Unicode code points of the
 * corpus, sorted, as nanoGPT's char-level preparation; the text must be
 * UTF-8) or of the 256 byte values; the first (1 - val_fraction) of the
 * tokens train, the rest validate. */
typedef enum { ZG_TEXT_CHAR = 0, ZG_TEXT_BYTE = 1 } zg_text_vocab;
typedef struct zg_text zg_text;
ZG_API zg_text *zg_text_load(const char *path, zg_text_vocab vocab, double val_fraction);
ZG_API zg_text *zg_text_from_memory(const char *data, int64_t n, zg_text_vocab vocab, double val_fraction);
ZG_API void zg_text_free(zg_text *t);
ZG_API int64_t zg_text_vocab_size(const zg_text *t);
ZG_API int64_t zg_text_num_tokens(const zg_text *t, bool val);
/* Ids of the UTF-8 string s (bytes for the byte vocabulary) into out
 * (up to max); returns their number (which may exceed max), or an error
 * for a character outside the vocabulary. */
ZG_API int64_t zg_text_encode(const zg_text *t, const char *s, int64_t *out, int64_t max);
/* The text of ids[0..n) into out (cap bytes, always terminated when
 * cap > 0); returns its full length in bytes, or an error for an id
 * outside the vocabulary. */
ZG_API int64_t zg_text_decode(const zg_text *t, const int64_t *ids, int64_t n, char *out, int64_t cap);
/* Persistent int64 x, y [batch, block]: windows at offsets drawn uniformly
 * from the split, y shifted by one token; the offsets depend on (seed,
 * split, step) only, so a resumed run draws the same batches. */
ZG_API int zg_text_batch(const zg_text *t, bool val, int64_t batch, int64_t block, uint64_t seed, int64_t step,
                         zg_tensor **x, zg_tensor **y);

typedef struct {
    int64_t batch_size;
    bool shuffle;   /* a new order each epoch, from (seed, epoch) only */
    bool drop_last;
    uint64_t seed;
    /* uint8 samples become (v/255 - mean) / std; float samples as is (or
     * with the data set's own normalization; image folders: theirs). */
    float mean, std;
    bool prefetch;  /* prepare the next batch on a background thread */
} zg_loader_opts;
typedef struct zg_loader zg_loader;
/* The loader does not own ds (it must outlive the loader). */
ZG_API zg_loader *zg_loader_new(const zg_dataset *ds, const zg_loader_opts *opts);
/* Starts epoch `epoch` (its order) at batch `start_batch` (resume). */
ZG_API int zg_loader_start_epoch(zg_loader *ld, int64_t epoch, int64_t start_batch);
ZG_API int64_t zg_loader_num_batches(const zg_loader *ld);
/* Next batch: x float32 [B, sample shape...], y int64 [B] (regression:
 * float32 [B, 1]), owned by the loader and valid until the next call.
 * Returns 1 with a batch, 0 at the end of the epoch (and again until
 * zg_loader_start_epoch), negative on error (an image that fails to
 * decode: the message names it; the next call goes on with the next
 * batch). A new loader stands at epoch 0, batch 0. */
ZG_API int zg_loader_next(zg_loader *ld, zg_tensor **x, zg_tensor **y);
/* Index of the next batch in the current epoch. */
ZG_API int64_t zg_loader_position(const zg_loader *ld);
/* Seconds zg_loader_next has blocked for batches not prepared yet, in
 * all since the loader was made: with prefetch, the part of the data
 * preparation that the caller's work between calls did not hide; without,
 * all of it. Negative (an error code) for NULL. */
ZG_API double zg_loader_wait_seconds(const zg_loader *ld);
ZG_API void zg_loader_free(zg_loader *ld);

/* A distributed sampler, as torch.utils.data.DistributedSampler (no MPI
 * needed: each rank computes its own shard). Of n samples, each of world
 * ranks gets zg_dist_sampler_num_samples: ceil(n / world), or with
 * drop_last floor(n / world). The indices are padded by repeating them
 * from the start to num_samples * world (or cut to it with drop_last), and
 * rank r takes positions r, r + world, r + 2 world, ...: the shards are
 * disjoint but for the padding. */
ZG_API int64_t zg_dist_sampler_num_samples(int64_t n, int world, bool drop_last);
/* Rank's shard of the given order perm[0..n) into out[num_samples]. */
ZG_API int zg_dist_sampler_shard(const int64_t *perm, int64_t n, int rank, int world, bool drop_last, int64_t *out);
/* Rank's shard of epoch `epoch`: with shuffle, of a permutation of 0..n-1
 * drawn from seed + epoch (zgrad's generator: the same on every rank, a
 * new one each epoch, but not torch.randperm's numbers); else of 0..n-1. */
ZG_API int zg_dist_sampler_indices(int64_t n, int rank, int world, uint64_t seed, int64_t epoch, bool shuffle,
                                   bool drop_last, int64_t *out);

/* ------------------------------------------------------------------ */
/* Training driver: the loop behind `zgrad train`                       */
/* ------------------------------------------------------------------ */

/* The default CNN for 1x28x28 inputs: Conv 32 3x3 pad 1 - ReLU - MaxPool 2
 * - Conv 64 3x3 pad 1 - ReLU - MaxPool 2 - Flatten - Linear 3136-128 - ReLU
 * - Linear 128-10 (parameters "0.weight", "0.bias", "3.weight", ...). Each
 * ReLU runs after its pooling, which gives the same values and gradients
 * with a quarter of the work. */
ZG_API zg_module *zg_model_default_cnn(void);
/* Flatten, then Linear sizes[0]-sizes[1]-...-sizes[n-1] with ReLU between
 * (n >= 2); {784, 256, 128, 10} is `zgrad train --model mlp`. */
ZG_API zg_module *zg_model_mlp(const int64_t *sizes, int n);

/* cnn and mlp (models/cnn.json and models/mlp.json, built in) and a model
 * file (file: zg_train_config.model_file) train on an MNIST-format data
 * set; gpt is a character-level (or byte-level) GPT trained on a text
 * (zg_nn_gpt, zg_text). */
typedef enum { ZG_MODEL_CNN = 0, ZG_MODEL_MLP = 1, ZG_MODEL_GPT = 2, ZG_MODEL_FILE = 3 } zg_model_kind;
/* "cnn" / "mlp" / "gpt" / "file" -> kind, and "sgd", "adam", "adamw", "rmsprop", "adagrad"
 * -> zg_optim_kind; -1 for an unknown name. The reverse gives the name. */
ZG_API int zg_train_model_kind(const char *name);
ZG_API const char *zg_train_model_name(zg_model_kind kind);
ZG_API int zg_train_optim_kind(const char *name);
ZG_API const char *zg_train_optim_name(zg_optim_kind kind);

typedef enum {
    ZG_PROGRESS_AUTO = 0, /* a live bar when stderr is a terminal, else lines */
    ZG_PROGRESS_BAR,      /* one bar per epoch on stderr, redrawn in place */
    ZG_PROGRESS_LINES,    /* a plain line on stderr every progress_interval s */
    ZG_PROGRESS_OFF,
} zg_progress_mode;

/* Every option of `zgrad train`; start from zg_train_config_defaults(). */
typedef struct {
    zg_model_kind model;            /* ZG_MODEL_CNN */
    zg_optim_kind optimizer;        /* ZG_ADAM */
    /* Negative: the optimizer's own default (Adam: lr 1e-3, wd 0). momentum
     * applies to sgd and rmsprop only. */
    double lr, momentum, weight_decay;
    int epochs;                     /* 3; the total, also when resuming */
    int64_t batch_size;             /* 64 */
    uint64_t seed;                  /* 0: weight init and data order */
    int threads;                    /* 0: leave OpenMP / OpenBLAS as they are */
    const char *data_dir;           /* "/usr/share/datasets/fashion-mnist" */
    const char *out_dir;            /* NULL: runs/<timestamp>, or resume_dir */
    bool force;                     /* false: a new run refuses an out_dir that is
                                     * neither empty nor a run; true: writes into it
                                     * (a run is refused either way) */
    const char *resume_dir;         /* NULL: a new run; else the run to continue */
    char model_file[4096];          /* model file: its path (zg_model_spec); on a
                                     * resume "" takes the checkpoint's copy */
    int64_t limit_train, limit_test; /* 0: every sample; N: the first N */
    int64_t checkpoint_every_steps; /* 0: a checkpoint after each epoch only */
    int64_t eval_batch_size;        /* 1000 */
    float mean, std;                /* normalisation: 0.2860, 0.3530 */
    zg_progress_mode progress;      /* AUTO */
    double progress_interval;       /* 5 s between plain progress lines */
    FILE *log;                      /* per-epoch summaries (stdout); NULL: none */
    /* Training recipe (saved in checkpoints; a resume must match). */
    int accum;                      /* 1: micro-batches per optimizer step (zg_accum) */
    double clip_norm;               /* < 0: off; else the max total L2 grad norm */
    char schedule[256];             /* "": constant lr; else a zg_sched_from_spec spec,
                                     * total_steps = the run's optimizer steps */
    int amp;                        /* a zg_autocast_type: OFF (0); BF16 autocast around
                                     * the forward; FP16 autocast + a GradScaler; the
                                     * per-epoch evaluation runs under the same type
                                     * (zg_eval_checkpoint stays float32) */
    /* Fault tolerance: a batch that fails to load or a non-finite loss is
     * skipped (its gradient dropped); after max_bad_steps (5) skipped batches
     * in a row the run stops. With handle_signals (the CLI), SIGINT, SIGTERM,
     * SIGHUP and SIGPIPE (a write to a closed pipe, which then fails with
     * EPIPE) finish the current step (window), write a checkpoint and
     * return ZG_ERR_STATE with result->signal set. A non-finite test loss
     * stops the run with ZG_ERR_NONFINITE; that epoch is not saved. */
    int max_bad_steps;
    bool handle_signals;            /* false */
    /* Testing only: 1-based batch number of the run (epoch * batches +
     * batch + 1; 0: off) that fails to load (inject_bad_batch), fails after
     * its backward wrote gradients (inject_bad_backward), or gives a NaN
     * loss (inject_nan_loss, inject_nan_count batches in a row). */
    int64_t inject_bad_batch, inject_bad_backward, inject_nan_loss, inject_nan_count;
    /* Adam and AdamW: < 0 keeps the optimizer's (0.9, 0.999). */
    double beta1, beta2;
    /* --model gpt: a language model on a text (the data and image options
     * above do not apply; limits must be 0). Its "epochs" are evaluation
     * intervals: epochs = ceil(iters / eval_interval) (derived, the field is
     * ignored), each ending with the validation loss over eval_iters
     * batches, metrics and a checkpoint. test_loss / test_acc are then the
     * validation split's loss and next-token accuracy. */
    char text_path[4096];           /* "": the corpus named below */
    char corpus[64];                /* "shakespeare": NAME.txt in $ZGRAD_CORPUS_DIR, else
                                     * ${XDG_CACHE_HOME:-~/.cache}/zgrad/corpus
                                     * (scripts/setup-corpus installs it) */
    zg_text_vocab text_vocab;       /* CHAR */
    double val_fraction;            /* 0.1: the last 10% of the tokens validate */
    zg_gpt_config gpt;              /* zg_gpt_config_default() but vocab_size 0: the
                                     * text's; another value must be the text's */
    int64_t iters;                  /* 2000 optimizer steps */
    int64_t eval_interval;          /* 250 steps between evaluations */
    int64_t eval_iters;             /* 20 validation batches per evaluation */
    /* Your data (src/train/data_source.c), instead of data_dir: a CSV file
     * with a header row or an image folder in ImageFolder's layout, with
     * a validation set: val_path, else the seeded val_split. The features
     * (each standardised) or the channels (ToTensor, then normalised) use
     * the mean and std of the training part, which the run keeps. Without
     * a model file (model FILE, model_file "") the model is an MLP sized
     * from the data: inputs -> 64 -> 64 -> classes (or 1 value). A
     * regression target trains with MSE; test_loss is then the
     * validation MSE and test_acc its R^2 (metrics.jsonl: "test_r2"). */
    char csv_path[4096];            /* "": none */
    char target[256];               /* the CSV's target column: a header name, or a 0-based index */
    zg_task task;                   /* AUTO: classify when every target is an integer, else regress */
    char images_dir[4096];          /* "": none */
    int64_t image_size[2];          /* 0, 0: the first training image's height, width (no resizing) */
    int image_channels;             /* 0: 3 when any training image has colour, else 1 */
    char val_path[4096];            /* the validation CSV file or image folder; "": val_split */
    double val_split;               /* 0: 0.2 without val_path; the fraction drawn by seed that validates */
    /* Data parallel over MPI (docs/distributed.md): every rank of the
     * world (zg_dist_init first) calls zg_train_run with the same config;
     * batch_size is per rank, each global batch of world * batch_size
     * samples (drawn as one process with that batch draws it) is cut into
     * the ranks' shares, and the gradients are averaged by a zg_ddp, so
     * the run trains as one process with batch world * batch_size. Only
     * rank 0 writes the run directory and logs. A rank whose call fails
     * leaves the others waiting: end the world with zg_dist_abort. */
    bool ddp;                       /* false */
    double ddp_timeout;             /* 600: the seconds a rank waits for the others
                                     * before ending every rank (zg_dist_set_timeout;
                                     * 0: for ever) */
    /* Testing, with ddp: inject_bad_batch and inject_nan_loss act on rank
     * inject_rank - 1 only (0: on every rank; inject_bad_backward always
     * acts on every rank). */
    int inject_rank;
} zg_train_config;

/* The defaults of `zgrad train` (the CNN's). */
ZG_API zg_train_config zg_train_config_defaults(void);
/* The defaults for a model: cnn and mlp as above; gpt: nanoGPT's CPU recipe
 * for shakespeare_char: 4 layers, 4 heads, 128 embd, block 64, dropout 0,
 * batch 12, AdamW lr 1e-3 betas (0.9, 0.99) weight decay 0.1 on tensors of
 * dim >= 2 (zg_optim_new_decay_split), 100 warm-up steps then cosine to
 * 1e-4 at the last step, clip norm 1.0, 2000 steps. */
ZG_API zg_train_config zg_train_config_for_model(zg_model_kind model);
/* Threads for OpenMP loops and OpenBLAS (n >= 1). */
ZG_API int zg_set_num_threads(int n);
/* Checks ranges and combinations (e.g. momentum with adam); ZG_ERR_ARG and
 * a message naming the option otherwise. */
ZG_API int zg_train_config_validate(const zg_train_config *cfg);

typedef struct {
    int epochs_done;                /* epochs completed in the run directory */
    double train_loss, test_loss, test_acc; /* last epoch; test_acc in [0,1] */
    double seconds;                 /* wall time of this call */
    char out_dir[4096];
    int signal;                     /* the signal that stopped the run (0: none) */
    int64_t bad_batches, bad_losses; /* batches skipped (load failures, NaN/inf loss) */
    bool r2;                        /* a regression: test_loss is the MSE, test_acc the R^2 */
} zg_train_result;

/* Trains as configured and writes into the run directory: metrics.jsonl,
 * curves.svg, model.safetensors and a checkpoint after every epoch (and
 * every checkpoint_every_steps steps). Checkpoints are atomic: a kill at
 * any moment leaves the previous one loadable. With resume_dir the run
 * continues bit for bit as if it had never stopped; the checkpoint must
 * match the configuration (model, optimizer, hyperparameters, batch size,
 * seed, limits, accum, clip_norm, schedule (and with one, epochs), amp),
 * else ZG_ERR_FORMAT. The scheduler's and GradScaler's states are part of
 * the checkpoint. result may be NULL (its signal and bad-batch counts are
 * also set when the run fails). */
ZG_API int zg_train_run(const zg_train_config *cfg, zg_train_result *result);
/* Reads the training options saved in a checkpoint (a run directory or
 * one checkpoint directory) into cfg, with its checkpoint interval; paths
 * and display options are left as they are. A base for --resume with some
 * options overridden. */
ZG_API int zg_train_checkpoint_config(const char *path, zg_train_config *cfg);
/* The model file of a run (a run or checkpoint directory: its --model-file
 * as the checkpoint keeps it, the built-in cnn's or mlp's, or for a GPT
 * run a GPT layer of its configuration, vocab_size its text's), and of a
 * built-in model (gpt: models/gpt.json, nanoGPT's Shakespeare recipe with
 * vocab_size 65). */
ZG_API zg_model_spec *zg_train_model_spec(const char *path);
ZG_API zg_model_spec *zg_train_builtin_spec(zg_model_kind kind);
/* Text from the GPT a `zgrad train --model gpt` run saved (path: a run or
 * checkpoint directory; its vocabulary is in the checkpoint, the text is
 * not needed): prompt ("": one newline, as nanoGPT's sample.py) continued
 * by n_tokens tokens with zg_gpt_generate (no KV cache: each token runs the
 * model over the last block_size tokens). *out: the prompt and the new
 * text, malloc'd, NUL-terminated (free() it). */
ZG_API int zg_train_sample(const char *path, const char *prompt, int64_t n_tokens, float temperature, int64_t top_k,
                           uint64_t seed, char **out);
/* The model of a `zgrad train` run (a run or checkpoint directory) as an
 * ONNX file (zg_onnx_export): cnn and mlp take "input" [N, 1, 28, 28], the
 * pixels / 255, and normalise them with the run's mean and std first; a
 * GPT takes token indices of the run's vocabulary. */
ZG_API int zg_train_export_onnx(const char *run, const char *path);

typedef struct {
    int64_t n;              /* samples evaluated */
    double loss;            /* mean cross-entropy */
    double accuracy;        /* in [0, 1] */
    int num_classes;
    /* num_classes x num_classes, row = true class, column = prediction
     * (malloc'd; zg_eval_result_free). */
    int64_t *confusion;
} zg_eval_result;

/* Runs the loader's epoch 0 through the model under no_grad in eval mode
 * (then restores the module's mode), with cross-entropy. */
ZG_API int zg_evaluate(zg_module *model, zg_loader *loader, int num_classes, zg_eval_result *out);
/* `zgrad eval`: path is a run directory, a checkpoint directory, or a
 * model.safetensors written by zgrad train (the architecture is recognised
 * from the shapes); data_dir NULL means the default; limit 0: all. A run
 * on a CSV file or an image folder is evaluated on its own validation
 * data (its split, standardised with its training part's statistics,
 * which must be the saved ones; data_dir must be NULL); a regression
 * gives its MSE as loss, R^2 as accuracy and num_classes 0.
 * ZG_ERR_NONFINITE when a weight or the test loss is NaN or infinite. */
ZG_API int zg_eval_checkpoint(const char *path, const char *data_dir, int64_t limit, zg_eval_result *out);
ZG_API void zg_eval_result_free(zg_eval_result *r);

/* `zgrad predict`: the model of a run (path: a run or checkpoint
 * directory) on new data with the run's preprocessing: a CSV file for a
 * --csv run (its feature columns by name, standardised as in training;
 * other columns are not read), an image file or a folder of them (every
 * PNG and JPEG under it) for an --images run, an IDX images file for a
 * run on MNIST-format data. Writes CSV with a header to output (NULL:
 * stdout; a file is replaced atomically): per sample its row (0-based),
 * file or index, the predicted class (an image run's class name) and the
 * softmax probability of each class, or the predicted value. */
ZG_API int zg_predict(const char *path, const char *input, const char *output);

/* ------------------------------------------------------------------ */
/* Mixed precision: autocast regions and a gradient scaler              */
/* ------------------------------------------------------------------ */

/* Autocast (per thread; regions nest like no_grad). Inside a bf16 or fp16
 * region zg_matmul, zg_linear and zg_conv2d compute in that 16-bit type: their inputs
 * are rounded to it (round to nearest even, as PyTorch converts), the
 * products are accumulated in float32 and the result (bias included) is
 * rounded to the 16-bit type once. zgrad has no 16-bit dtype: the results
 * are float32 tensors holding values exactly representable in bf16 / fp16,
 * so that the float32 ops downstream (relu, softmax, log_softmax, losses,
 * reductions, norms) see exactly what PyTorch's bf16 tensors hold.
 * Parameters and their .grad stay float32 (master weights). The backward of
 * an autocast matmul / linear rounds the incoming gradient to the 16-bit
 * type, computes its GEMMs in it with float32 accumulation and rounds the
 * input gradients, as PyTorch's autograd through a bf16 linear does (conv2d
 * rounds dW, db and dX once, after summing over the samples and the
 * overlapping patches, as PyTorch's CPU convolution does); .grad
 * accumulates them in float32. One difference from PyTorch: elementwise
 * ops on autocast results (add, mul, ...) are float32 ops here, where
 * PyTorch would round their bf16 results again. */
typedef enum { ZG_AUTOCAST_OFF = 0, ZG_AUTOCAST_BF16 = 1, ZG_AUTOCAST_FP16 = 2 } zg_autocast_type;
/* Enters a region of `type`; ZG_AUTOCAST_OFF opens a region where autocast
 * is disabled inside an enabled one (autocast(enabled=False)). ZG_ERR_ARG
 * for an unknown type. Every successful enter needs one exit. */
ZG_API int zg_autocast_enter(zg_autocast_type type);
ZG_API void zg_autocast_exit(void);
/* The type in force on this thread (ZG_AUTOCAST_OFF outside regions). */
ZG_API zg_autocast_type zg_autocast_get(void);

/* Scalar conversions, round to nearest even. NaN stays a (quiet) NaN,
 * values beyond the type's range become +-inf, subnormals are kept. */
ZG_API uint16_t zg_float_to_bf16(float x);
ZG_API float zg_bf16_to_float(uint16_t h);
ZG_API uint16_t zg_float_to_fp16(float x);
ZG_API float zg_fp16_to_float(uint16_t h);
/* x rounded to the type and back to float. */
ZG_API float zg_round_bf16(float x);
ZG_API float zg_round_fp16(float x);

/* The kernel behind bf16 GEMMs (process-wide). PORTABLE rounds the
 * operands to bf16 values held in float32 and multiplies them with BLAS
 * sgemm (bf16 products are exact in float32); AVX512 uses the AVX512-BF16
 * dot-product instruction; AMX the AMX-BF16 tile unit. By default the
 * fastest the CPU and OS offer (AMX, then AVX512, then PORTABLE); the
 * environment variable ZG_NO_BF16_ISA=1 forces PORTABLE. The kernels sum
 * the float32 products in different orders (and the instructions flush
 * subnormal products and sums to zero), so results agree to float32
 * accumulation error before the final rounding, not bit for bit: at most
 * one bf16 step apart in an output, usually equal. Without the
 * instructions bf16 autocast costs more than float32 (the rounding passes
 * come on top of sgemm). */
typedef enum { ZG_BF16_KERNEL_PORTABLE = 0, ZG_BF16_KERNEL_AVX512 = 1, ZG_BF16_KERNEL_AMX = 2 } zg_bf16_kernel;
ZG_API zg_bf16_kernel zg_bf16_kernel_get(void);
ZG_API bool zg_bf16_kernel_available(zg_bf16_kernel kernel);
/* ZG_ERR_ARG for an unknown or unavailable kernel. */
ZG_API int zg_bf16_kernel_set(zg_bf16_kernel kernel);

/* Gradient scaler (PyTorch's GradScaler). The recipe:
 *   zg_backward(zg_grad_scaler_scale(s, loss), NULL);
 *   zg_grad_scaler_unscale_(s, opt);   (optional: before clipping)
 *   zg_grad_scaler_step(s, opt, &stepped);
 *   zg_grad_scaler_update(s);
 * One scaler may serve several optimizers (each unscaled / stepped once
 * per update). */
typedef struct zg_grad_scaler zg_grad_scaler;
typedef struct {
    float init_scale;        /* 65536 */
    double growth_factor;    /* 2.0 */
    double backoff_factor;   /* 0.5 */
    int64_t growth_interval; /* 2000 */
    bool enabled;            /* true; false: every call passes through */
} zg_grad_scaler_opts;
#define ZG_GRAD_SCALER_DEFAULTS ((zg_grad_scaler_opts){65536.0f, 2.0, 0.5, 2000, true})
/* opts may be NULL (the defaults). Errors: init_scale <= 0 or not finite,
 * growth_factor <= 1, backoff_factor outside (0,1), growth_interval <= 0. */
ZG_API zg_grad_scaler *zg_grad_scaler_new(const zg_grad_scaler_opts *opts);
ZG_API void zg_grad_scaler_free(zg_grad_scaler *s);
ZG_API bool zg_grad_scaler_is_enabled(const zg_grad_scaler *s);
/* loss * scale (a differentiable op, float32); loss itself when disabled. */
ZG_API zg_tensor *zg_grad_scaler_scale(zg_grad_scaler *s, zg_tensor *loss);
/* Multiplies the optimizer's grads (those not None) in place by the
 * float32 reciprocal of the scale and records whether any was inf/NaN.
 * ZG_ERR_STATE when called twice for the optimizer before update(), or
 * after step(), or before the scale was ever used (scale() or set_state;
 * this holds for step() and update() too, as in PyTorch). */
ZG_API int zg_grad_scaler_unscale_(zg_grad_scaler *s, zg_optim *opt);
/* Unscales (if not done yet) and steps the optimizer unless an inf/NaN was
 * found; then parameters and optimizer state are untouched. *stepped
 * (may be NULL) tells which. ZG_ERR_STATE when no gradient was recorded
 * ("No inf checks were recorded for this optimizer") or step() was already
 * called for it since the last update(). */
ZG_API int zg_grad_scaler_step(zg_grad_scaler *s, zg_optim *opt, bool *stepped);
/* New scale: scale * backoff_factor if any optimizer found inf/NaN (the
 * growth tracker resets), else after growth_interval consecutive clean
 * updates scale * growth_factor (unless that is inf: then the scale stays
 * and the tracker still resets). Forgets the per-optimizer records.
 * ZG_ERR_STATE when nothing was recorded. */
ZG_API int zg_grad_scaler_update(zg_grad_scaler *s);
/* Current scale (1 when disabled) and clean-update count. */
ZG_API float zg_grad_scaler_get_scale(const zg_grad_scaler *s);
ZG_API int64_t zg_grad_scaler_get_growth_tracker(const zg_grad_scaler *s);

/* Checkpoint state (PyTorch's state_dict keys: scale, growth_factor,
 * backoff_factor, growth_interval, _growth_tracker). */
typedef struct {
    float scale;
    double growth_factor, backoff_factor;
    int64_t growth_interval;
    int64_t growth_tracker;
} zg_grad_scaler_state;
ZG_API int zg_grad_scaler_get_state(const zg_grad_scaler *s, zg_grad_scaler_state *state);
/* Validates like zg_grad_scaler_new (and 0 <= growth_tracker <
 * growth_interval); ZG_ERR_STATE while optimizers have unscaled / stepped
 * since the last update(). */
ZG_API int zg_grad_scaler_set_state(zg_grad_scaler *s, const zg_grad_scaler_state *state);

/* ------------------------------------------------------------------ */
/* Gradient clipping and learning-rate schedulers                       */
/* ------------------------------------------------------------------ */

/* Clips the gradients of params together, as
 * torch.nn.utils.clip_grad_norm_: total = the norm_type-norm of all their
 * grads viewed as one vector (norm_type 2, 1, INFINITY = max |g|, or any
 * p > 0), computed in double; NULL entries and parameters whose grad is
 * None are skipped (no grads at all: total 0). coef = max_norm /
 * (total + 1e-6); when coef < 1 every grad is multiplied by it in place
 * (a tracked write). *total_norm (may be NULL) gets the total before
 * clipping. A non-finite total: with error_if_nonfinite, ZG_ERR_STATE
 * naming the norm and a parameter, grads untouched; without, the grads
 * are scaled anyway (NaN total: all NaN; inf total: by 0), as PyTorch.
 * Errors: max_norm < 0 or NaN, norm_type <= 0 or NaN. */
ZG_API int zg_clip_grad_norm(zg_tensor *const *params, int n, double max_norm, double norm_type,
                             bool error_if_nonfinite, double *total_norm);
/* Clamps every grad element to [-clip_value, clip_value] in place (NaN
 * stays NaN); clip_value >= 0. */
ZG_API int zg_clip_grad_value(zg_tensor *const *params, int n, double clip_value);
/* The same over all of an optimizer's (or a module's) parameters. */
ZG_API int zg_optim_clip_grad_norm(zg_optim *opt, double max_norm, double norm_type, bool error_if_nonfinite,
                                   double *total_norm);
ZG_API int zg_optim_clip_grad_value(zg_optim *opt, double clip_value);
ZG_API int zg_module_clip_grad_norm(zg_module *m, double max_norm, double norm_type, bool error_if_nonfinite,
                                    double *total_norm);
ZG_API int zg_module_clip_grad_value(zg_module *m, double clip_value);

/* Learning-rate schedulers, as torch.optim.lr_scheduler (2.x), same
 * formulas (the recursive "chainable" forms where PyTorch uses them), so
 * the sequences agree to rounding. A scheduler writes each group's lr
 * (OneCycleLR also momentum, or beta1 for Adam/AdamW) into the optimizer.
 * Construction performs PyTorch's initial step (last_epoch 0): the base
 * lrs are the groups' initial_lr, which the first scheduler made on the
 * optimizer sets to the groups' lr then (OneCycleLR to max_lr /
 * div_factor); as PyTorch's param_group['initial_lr'] it stays with the
 * group for the optimizer's lifetime, also after that scheduler is freed,
 * and is saved with the optimizer's state (zg_optim_save), so a scheduler
 * made later, or after a resume from the optimizer's state alone, starts
 * from it (e.g. StepLR for 4 steps, then a new CosineAnnealingLR anneals
 * from the initial lr). LinearLR multiplies the lr by start_factor right
 * away. Call zg_sched_step() once after each zg_optim_step() (except
 * ReduceLROnPlateau: zg_sched_step_metric once per evaluation). A
 * scheduler must not be used after its optimizer is freed. */
typedef struct zg_sched zg_sched;

/* lr *= gamma every step_size steps. step_size > 0, gamma >= 0. */
ZG_API zg_sched *zg_sched_step_lr(zg_optim *opt, int64_t step_size, double gamma);
/* lr *= gamma at each milestone (any order; one listed k times multiplies
 * by gamma^k; a milestone 0 applies at construction). Milestones >= 0,
 * gamma >= 0; n may be 0. */
ZG_API zg_sched *zg_sched_multistep(zg_optim *opt, const int64_t *milestones, int n, double gamma);
/* lr *= gamma every step. gamma >= 0. */
ZG_API zg_sched *zg_sched_exponential(zg_optim *opt, double gamma);
/* lr * factor for the first total_iters steps, then lr. 0 < factor <= 1,
 * total_iters > 0. */
ZG_API zg_sched *zg_sched_constant(zg_optim *opt, double factor, int64_t total_iters);
/* base * (1 - t / total_iters)^power up to total_iters, then unchanged
 * (recursive form). total_iters > 0, power >= 0. */
ZG_API zg_sched *zg_sched_polynomial(zg_optim *opt, int64_t total_iters, double power);
/* eta_min + (base - eta_min) * (1 + cos(pi * t / t_max)) / 2 (recursive
 * form). t_max > 0, eta_min >= 0. */
ZG_API zg_sched *zg_sched_cosine(zg_optim *opt, int64_t t_max, double eta_min);
/* The cosine over cycles: T_i = t_0 steps, then t_mult times longer each
 * restart; t_cur counts from 0 in each. t_0 > 0, t_mult >= 1,
 * eta_min >= 0. */
ZG_API zg_sched *zg_sched_cosine_warm_restarts(zg_optim *opt, int64_t t_0, int64_t t_mult, double eta_min);
/* Factor going linearly from start_factor to end_factor over total_iters
 * steps (warm-up). 0 < start_factor <= 1, 0 <= end_factor <= 1,
 * total_iters > 0. */
ZG_API zg_sched *zg_sched_linear(zg_optim *opt, double start_factor, double end_factor, int64_t total_iters);

/* LambdaLR / MultiplicativeLR's function of the epoch (PyTorch's
 * lr_lambda; group says which group's, for a per-group list). A NaN or a
 * negative lr it leads to fails the step. */
typedef double (*zg_lr_lambda)(int64_t epoch, int group, void *user);
/* LambdaLR: lr = base * fn(epoch). */
ZG_API zg_sched *zg_sched_lambda(zg_optim *opt, zg_lr_lambda fn, void *user);
/* MultiplicativeLR: lr *= fn(epoch) at each step (not at construction). */
ZG_API zg_sched *zg_sched_multiplicative(zg_optim *opt, zg_lr_lambda fn, void *user);

typedef struct {
    int64_t total_steps;     /* > 0; stepping past it is an error */
    double pct_start;        /* 0.3, in [0, 1] */
    bool anneal_linear;      /* false: cos */
    double div_factor;       /* 25: initial lr = max_lr / div_factor */
    double final_div_factor; /* 1e4: min lr = initial lr / final_div_factor */
    bool three_phase;        /* false */
    bool cycle_momentum;     /* true: needs momentum (SGD, RMSprop) or beta1 (Adam, AdamW) */
    double base_momentum;    /* 0.85 */
    double max_momentum;     /* 0.95 */
    const double *max_lrs;   /* per group (n_groups values), or NULL: max_lr for all */
} zg_onecycle_opts;
/* PyTorch's defaults for total_steps steps. */
ZG_API zg_onecycle_opts zg_onecycle_defaults(int64_t total_steps);
ZG_API zg_sched *zg_sched_onecycle(zg_optim *opt, double max_lr, const zg_onecycle_opts *opts);

/* SequentialLR: scheds[0] until milestones[0], then scheds[1] (started
 * at epoch 0 as PyTorch 2.x's _update_lr(0): its closed form where it has
 * one), ... The lrs first go back to the groups' initial_lr.
 * n_milestones == n - 1, milestones increasing and > 0, all on opt, none
 * a SequentialLR, ChainedScheduler or ReduceLROnPlateau. Takes ownership
 * of scheds (also on failure); do not step or free them yourself. */
ZG_API zg_sched *zg_sched_sequential(zg_optim *opt, zg_sched *const *scheds, int n, const int64_t *milestones,
                                     int n_milestones);
/* ChainedScheduler: each step steps every one of scheds in order, each
 * from the lrs the one before wrote (e.g. ConstantLR warm-up times
 * ExponentialLR decay). No step at construction. The same rules of
 * ownership and kinds as zg_sched_sequential. */
ZG_API zg_sched *zg_sched_chained(zg_optim *opt, zg_sched *const *scheds, int n);
/* Sequential(LinearLR(start_factor, 1, warmup), CosineAnnealingLR(
 * total_steps - warmup, eta_min)) with milestone warmup; 0 < warmup <
 * total_steps. */
ZG_API zg_sched *zg_sched_warmup_cosine(zg_optim *opt, int64_t warmup, double start_factor, int64_t total_steps,
                                        double eta_min);

/* ReduceLROnPlateau (PyTorch's defaults from zg_plateau_defaults()). */
typedef struct {
    bool mode_max;        /* false: "min" (a loss); true: "max" (an accuracy) */
    double factor;        /* 0.1, in [0, 1): lr = max(lr * factor, min_lr) */
    int64_t patience;     /* 10: epochs without improvement tolerated */
    double threshold;     /* 1e-4, >= 0: the least improvement that counts */
    bool threshold_abs;   /* false: "rel" (best * (1 -+ threshold)); true: "abs" (best -+ threshold) */
    int64_t cooldown;     /* 0: epochs after a reduction before bad epochs count again */
    double min_lr;        /* 0: for every group (also groups added later) */
    const double *min_lrs; /* per group (n_groups values), or NULL: min_lr */
    double eps;           /* 1e-8: a reduction smaller than this is skipped */
} zg_plateau_opts;
ZG_API zg_plateau_opts zg_plateau_defaults(void);
/* Makes no step and leaves the lrs. Fed with zg_sched_step_metric. */
ZG_API zg_sched *zg_sched_plateau(zg_optim *opt, const zg_plateau_opts *opts);
/* One ReduceLROnPlateau step on the metric (e.g. the epoch's validation
 * loss; NaN never counts as an improvement). Errors: s is not a
 * ReduceLROnPlateau; the optimizer gained groups and min_lrs was a list. */
ZG_API int zg_sched_step_metric(zg_sched *s, double metric);
/* Whether s steps on a metric (ReduceLROnPlateau) instead of zg_sched_step. */
ZG_API bool zg_sched_needs_metric(const zg_sched *s);

/* A schedule from a CLI-style spec, counted in optimizer steps
 * (total_steps: the run's length, the default for t_max / total_steps):
 *   step:SIZE[,gamma=G]            StepLR (gamma 0.1)
 *   cosine[:T_MAX][,eta_min=E]     CosineAnnealingLR (t_max total_steps)
 *   linear[:ITERS][,start_factor=S,end_factor=E]   LinearLR (5, 1/3, 1)
 *   onecycle:MAX_LR[,pct_start=P,anneal=cos|linear,div_factor=D,
 *     final_div_factor=F,three_phase=0|1,cycle_momentum=0|1,
 *     base_momentum=B,max_momentum=M,total_steps=N]   OneCycleLR
 *   warmup-cosine:W[,start_factor=S,eta_min=E]   zg_sched_warmup_cosine
 *                                  (start_factor 1/3, eta_min 0)
 *   exponential:GAMMA              ExponentialLR
 *   multistep:M1[,M2,...][,gamma=G]   MultiStepLR (gamma 0.1)
 *   constant[:ITERS][,factor=F]    ConstantLR (5, 1/3)
 *   polynomial[:ITERS][,power=P]   PolynomialLR (total_steps, 1)
 *   cosine-restarts:T_0[,t_mult=M,eta_min=E]   CosineAnnealingWarmRestarts
 *                                  (1, 0)
 *   plateau[:PATIENCE][,mode=min|max,factor=F,threshold=T,
 *     threshold_mode=rel|abs,cooldown=C,min_lr=M,eps=E]
 *                                  ReduceLROnPlateau (10, min, 0.1, 1e-4,
 *                                  rel, 0, 0, 1e-8): fed a metric
 *   chained:SPEC|SPEC|...          ChainedScheduler of those schedules
 * Each positional value may also be given by name (step_size=, t_max=,
 * total_iters=, max_lr=, warmup=, gamma=, milestones= (one), t_0=,
 * patience=). (zgrad train's --schedule constant means no schedule;
 * constant:ITERS is ConstantLR.) A spec that fails leaves the groups as
 * they were. */
ZG_API zg_sched *zg_sched_from_spec(zg_optim *opt, const char *spec, int64_t total_steps);

/* One step (after the optimizer's): last_epoch += 1 and new lrs. Errors
 * (nothing changes): OneCycleLR stepped more than total_steps times; a
 * computed lr < 0 or NaN, which PyTorch would write (OneCycleLR's linear
 * anneal one step past total_steps) and zgrad's optimizers refuse; the
 * optimizer gained groups since the scheduler was made; a child of a
 * SequentialLR or ChainedScheduler; a ReduceLROnPlateau. */
ZG_API int zg_sched_step(zg_sched *s);
/* The lr the scheduler last wrote into `group` (NAN and an error if out of
 * range). */
ZG_API double zg_sched_get_last_lr(const zg_sched *s, int group);
ZG_API int64_t zg_sched_last_epoch(const zg_sched *s);
/* PyTorch's class name: "StepLR", "CosineAnnealingLR", "LinearLR",
 * "OneCycleLR", "SequentialLR", "ExponentialLR", "MultiStepLR",
 * "ConstantLR", "PolynomialLR", "LambdaLR", "MultiplicativeLR",
 * "CosineAnnealingWarmRestarts", "ChainedScheduler", "ReduceLROnPlateau". */
ZG_API const char *zg_sched_name(const zg_sched *s);
ZG_API zg_optim *zg_sched_optimizer(const zg_sched *s);
/* Frees s (and a composite's schedulers); NULL is a no-op. */
ZG_API void zg_sched_free(zg_sched *s);

/* The scheduler's state_dict as JSON text (malloc'd; free()): the kind,
 * its hyperparameters, last_epoch, step count, base and last lrs (a
 * composite's schedulers; ReduceLROnPlateau's best, bad epochs and
 * cooldown). LambdaLR's and MultiplicativeLR's function is not part of
 * it: the scheduler loading it has its own. Loading checks the kind and
 * group count (and every value) before it changes anything, then adopts
 * the saved state and hyperparameters as PyTorch does; with the
 * optimizer's state loaded too (its lrs), stepping continues the same
 * sequence. */
ZG_API char *zg_sched_state_json(const zg_sched *s);
ZG_API int zg_sched_load_state_json(zg_sched *s, const char *json);
/* The same as a safetensors file (metadata only), written atomically. */
ZG_API int zg_sched_save(const zg_sched *s, const char *path);
ZG_API int zg_sched_load(zg_sched *s, const char *path);

/* ------------------------------------------------------------------ */
/* Gradient accumulation windows                                       */
/* ------------------------------------------------------------------ */

/* N micro-batches per optimizer step, without hand-written `if (i % N)`:
 *
 *   zg_accum *acc = zg_accum_new(opt, scaler, N);    (scaler may be NULL)
 *   for each micro-batch:
 *       loss = forward(...);
 *       zg_accum_backward(acc, loss);   backward of loss / N (times the
 *                                       scale with a scaler)
 *       zg_accum_step(acc, &stepped);   steps only when the window is full
 *   at the end of the epoch: zg_accum_flush(acc, &stepped);
 *
 * The step closing a window is, with a scaler: unscale_, the optional
 * clip, step, update; without: the optional clip, step; then zero_grad
 * (set to None). The scaler's scale stays fixed inside a window (update
 * runs only at its end). A short last window (k < N micro-batches, e.g.
 * the end of an epoch) is stepped by zg_accum_flush with the gradients as
 * they are: each micro-batch's loss was divided by N, not by k, exactly as
 * PyTorch users' usual loop (`(loss / N).backward()` ... step at the end)
 * does, so that window's update is k/N of a full window's mean. */
typedef struct zg_accum zg_accum;
/* n >= 1; scaler may be NULL. The grads are cleared (set to None) so the
 * first window starts clean, and the window is declared to the
 * gradient-lifecycle sanitizer. Free the accumulator before its optimizer
 * (freeing it withdraws the declaration). */
ZG_API zg_accum *zg_accum_new(zg_optim *opt, zg_grad_scaler *scaler, int n);
ZG_API void zg_accum_free(zg_accum *a);
/* Clip the total norm (zg_optim_clip_grad_norm, after unscale_) before
 * each step; max_norm < 0 turns clipping off (the default). */
ZG_API int zg_accum_set_clip(zg_accum *a, double max_norm, double norm_type);
/* Backward of loss / N (scaled). Returns 1 when this micro-batch fills the
 * window (the next zg_accum_step steps), 0 when it does not, or an error
 * (< 0; the micro-batch is not counted). */
ZG_API int zg_accum_backward(zg_accum *a, zg_tensor *loss);
/* Steps and clears the grads if the window is full; otherwise nothing.
 * *stepped (may be NULL): whether the parameters were updated (false also
 * when the scaler skipped the step for inf/NaN grads). */
ZG_API int zg_accum_step(zg_accum *a, bool *stepped);
/* Steps a partial window (see above); nothing when it is empty. */
ZG_API int zg_accum_flush(zg_accum *a, bool *stepped);
/* Drops the window's gradients (zero_grad, set to None) and restarts it:
 * after a failure that may have left a partial backward behind. */
ZG_API void zg_accum_discard(zg_accum *a);
/* Data parallel (zg_ddp): when the optimizer's parameters belong to a
 * zg_ddp, the accumulator drives its no_sync by itself: it turns sync off
 * for the forwards of a window's first N-1 micro-batches and on for the
 * last, so a window costs one all-reduce per bucket; zg_accum_flush of a
 * short window averages its gradients with zg_ddp_sync_gradients. Make
 * the zg_ddp before the accumulator. */
/* Micro-batches in the current window so far; the window size N. */
ZG_API int zg_accum_pending(const zg_accum *a);
ZG_API int zg_accum_size(const zg_accum *a);
/* Total grad norm measured by the last clipped step (NAN before any). */
ZG_API double zg_accum_last_norm(const zg_accum *a);

/* ------------------------------------------------------------------ */
/* Data parallel over MPI (src/dist; docs/distributed.md)              */
/* ------------------------------------------------------------------ */

/* Communication over MPI_COMM_WORLD. A build without MPI (make ZG_MPI=0,
 * or no Open MPI found) keeps these functions: they fail with
 * ZG_ERR_UNAVAILABLE (rank/world size answer 0 and 1). */
/* Whether this build has MPI. */
ZG_API bool zg_dist_available(void);
/* MPI_Init_thread (MPI_THREAD_FUNNELED: only the calling thread talks MPI)
 * unless MPI is already initialised; a second call does nothing. argc and
 * argv may be NULL. A program not started by mpirun is a world of one. */
ZG_API int zg_dist_init(int *argc, char ***argv);
/* MPI_Finalize when zg_dist_init initialised MPI; nothing otherwise. Free
 * every zg_ddp first. */
ZG_API int zg_dist_finalize(void);
/* Between zg_dist_init and zg_dist_finalize. */
ZG_API bool zg_dist_is_initialized(void);
/* This process's rank and the number of ranks (0 and 1 when not
 * initialised). */
ZG_API int zg_dist_rank(void);
ZG_API int zg_dist_world_size(void);
ZG_API int zg_dist_barrier(void);
/* values[0..n) summed element-wise over all ranks, in place (every rank
 * gets the sums; for metrics). */
ZG_API int zg_dist_allreduce_sum_f64(double *values, int n);
/* nbytes of data from rank `root` into every rank's data. */
ZG_API int zg_dist_broadcast(void *data, size_t nbytes, int root);
/* Prints "zgrad: rank R: message" to stderr and ends every rank with exit
 * status code (MPI_Abort); without MPI, or before zg_dist_init, exits this
 * process. Does not return. */
ZG_API void zg_dist_abort(int code, const char *message);
/* A bound on every wait of the dist layer (its collectives and DDP's
 * bucket all-reduces): a wait that has not completed after `seconds`
 * (another rank hung or was stopped) ends every rank with zg_dist_abort,
 * naming the call. 0 (the default): wait for ever. seconds in [0, 1e9].
 * With a bound the waits poll (MPI_Test), which costs nothing more than
 * Open MPI's own spinning MPI_Wait. */
ZG_API int zg_dist_set_timeout(double seconds);

/* DistributedDataParallel: a module whose parameters' gradients are
 * averaged over all ranks during zg_backward, as PyTorch's DDP does:
 *
 *   zg_dist_init(&argc, &argv);
 *   zg_ddp *ddp = zg_ddp_new(model, NULL);  params and buffers from rank 0
 *   for each batch (this rank's shard):
 *       y = zg_ddp_forward(ddp, x);         or zg_ddp_before_forward(ddp)
 *                                           and any forward of the model
 *       loss = ...; zg_backward(loss, NULL); every .grad is now the mean
 *                                           over the ranks
 *       zg_optim_step(opt); zg_optim_zero_grad(opt, true);
 *
 * Gradients are copied, times 1/world_size, into buckets (reverse order of
 * registration, the first 1 MiB, then bucket_cap_mb), and each bucket's
 * MPI_Iallreduce (SUM) starts as soon as the last of its gradients is
 * accumulated (post-accumulate hooks), while backward goes on; the
 * reductions are awaited and copied back into .grad when backward ends
 * (zg_autograd_queue_callback). After the first iteration the buckets are
 * rebuilt in the order the gradients became ready (rank 0's order). Every
 * rank must make the same calls (collective), in the same order. */
typedef struct zg_ddp zg_ddp;
typedef struct {
    double bucket_cap_mb;       /* 25: bucket capacity, MiB (1 MiB = 1048576 bytes) */
    double first_bucket_cap_mb; /* 1: the first bucket's capacity (the first gradients ready) */
    /* false: every parameter must get a gradient in every backward; one
     * that does not makes the next zg_ddp_before_forward fail, naming it.
     * true: the ranks agree on which parameters were used: unused on every
     * rank -> .grad left as it is (None stays None); unused on some ->
     * those ranks contribute zeros. */
    bool find_unused_parameters;
    bool broadcast_buffers;       /* true: buffers from rank 0 at each forward */
    /* false: each .grad is copied into its bucket times 1/world_size, and
     * the averages are copied back. true: each .grad is a view of its
     * bucket (backward accumulates into it), divided in place by
     * world_size; nothing is copied. The two forms agree bit for bit only
     * for power-of-two world sizes (docs/distributed.md). */
    bool gradient_as_bucket_view;
} zg_ddp_options;
/* PyTorch's defaults: 25, 1, false, true, false. */
ZG_API zg_ddp_options zg_ddp_default_options(void);
/* Wraps m (not owned; free the zg_ddp before m): checks that every rank
 * has the same parameter and buffer shapes (an error names the first that
 * differs), copies rank 0's parameters and buffers to all ranks, builds the
 * buckets and registers a post-accumulate hook on each parameter. opts may
 * be NULL (zg_ddp_default_options). Needs zg_dist_init. Collective. */
ZG_API zg_ddp *zg_ddp_new(zg_module *m, const zg_ddp_options *opts);
/* Waits for reductions still in flight, removes the hooks. */
ZG_API void zg_ddp_free(zg_ddp *d);
ZG_API zg_module *zg_ddp_module(const zg_ddp *d);
/* Call before each forward of the module (zg_ddp_forward does): fails if
 * the previous backward left a reduction unfinished (a parameter got no
 * gradient, without find_unused_parameters), rebuilds the buckets after the
 * first iteration, broadcasts buffers from rank 0 (broadcast_buffers), and,
 * in grad mode with sync required, arms the reduction of the next
 * backward. Collective. */
ZG_API int zg_ddp_before_forward(zg_ddp *d);
/* zg_ddp_before_forward, then zg_module_forward(module, x). */
ZG_API zg_tensor *zg_ddp_forward(zg_ddp *d, zg_tensor *x);
/* PyTorch's no_sync: false makes the backwards of the following forwards
 * reduce nothing, so gradients accumulate locally; the first backward
 * after a forward made with sync true again reduces the accumulated sum.
 * Set it before the forward (it takes effect at zg_ddp_before_forward). */
ZG_API int zg_ddp_set_require_sync(zg_ddp *d, bool require_sync);
ZG_API bool zg_ddp_require_sync(const zg_ddp *d);
/* Averages the gradients as they are now over all ranks (blocking): for a
 * window whose last backward ran without sync (zg_accum_flush of a short
 * window calls it). A parameter whose .grad is None on some ranks counts
 * as zeros there; None on every rank stays None. Collective; between
 * iterations only. */
ZG_API int zg_ddp_sync_gradients(zg_ddp *d);
/* Whether p is one of the wrapped module's parameters. */
ZG_API bool zg_ddp_has_param(const zg_ddp *d, const zg_tensor *p);
/* Uneven inputs (PyTorch's Join context manager with DDP): every rank
 * calls zg_ddp_join_begin before its loop over its own batches and
 * zg_ddp_join_end after it, however many batches it had. A rank that is
 * done waits in zg_ddp_join_end and shadows the others' iterations (their
 * gradient all-reduces with zeros, their buffer broadcasts) instead of
 * hanging; the divisor stays the initial world size
 * (divide_by_initial_world_size true). When all have arrived, every rank
 * takes the parameters and buffers of the last rank to join. Collective. */
ZG_API int zg_ddp_join_begin(zg_ddp *d);
ZG_API int zg_ddp_join_end(zg_ddp *d);
/* Counters since zg_ddp_new (zg_ddp_reset_stats zeroes them). */
typedef struct {
    int64_t allreduces;           /* gradient all-reduces started (one per bucket per reducing backward) */
    int64_t allreduce_bytes;      /* bytes those reduced (per rank) */
    int64_t allreduces_overlapped; /* of those, started while some gradient was still being computed */
    int64_t reductions;           /* backwards whose gradients were averaged */
    int64_t join_shadows;         /* all-reduces a joined rank matched with zeros */
    double wait_seconds;          /* time spent waiting for gradient all-reduces (after backward's compute) */
    /* Per reducing backward, from the first bucket's all-reduce start to
     * the end of the wait for the last (PyTorch DDP's backward_comm_time),
     * and the part of it before backward's compute ended (its
     * compute_comm_overlap_time); comm = overlap + wait. */
    double comm_seconds;
    double overlap_seconds;
    int num_buckets;              /* buckets now */
} zg_ddp_stats;
ZG_API int zg_ddp_get_stats(const zg_ddp *d, zg_ddp_stats *out);
ZG_API void zg_ddp_reset_stats(zg_ddp *d);
/* Bucket b's parameters, by index in zg_module_param order, in bucket order
 * (at most max into idx); returns their count, or < 0 for a bad b. */
ZG_API int zg_ddp_bucket_params(const zg_ddp *d, int b, int *idx, int max);

/* ===== Gradient-lifecycle sanitizer =====================================
 * Watches backward / zero_grad / step / clip / scaler / scheduler calls and
 * reports the mistakes of a training loop that PyTorch lets pass silently,
 * naming the kind, the step, the parameters, the call and one fix:
 * "zgrad sanitizer: <kind> at step <n>: <what> (<params>) at <call>; fix:
 * <fix>". The rule follows the gradients, not a count of backward passes:
 * any number of backward passes may feed one step (accumulation by hand,
 * several losses, a GAN); a bug is a step that uses gradients a step
 * already used (stale), or gradients erased before any step used them,
 * judged at the optimizer's step: when it then finds none, or when three
 * of its windows in a row erased some (one or two are skipped batches).
 * Gradients read by the user (zg_tensor_grad, a hook), clipped,
 * non-finite or dropped by zg_accum_discard may be erased freely
 * (adversarial examples, Grad-CAM, sharpness-aware minimisation, skipping
 * a NaN batch).
 * Off: no checks. Warn: each report goes to stderr (or the report
 * function) and the call proceeds. Error: the same, and the triggering call
 * fails with ZG_ERR_STATE and the report in zg_last_error() (for calls that
 * return nothing, the next step fails). Trace: warn, and the first steps'
 * lifecycle events printed one line per step, with the loop pattern
 * recognised. The mode starts from ZG_SANITIZE=off|warn|error|trace, read
 * when the library loads (any other value stops the program with a
 * message). Not thread-safe: it follows one training loop. */
typedef enum {
    ZG_SANITIZE_OFF = 0,
    ZG_SANITIZE_WARN = 1,
    ZG_SANITIZE_ERROR = 2,
    ZG_SANITIZE_TRACE = 3
} zg_sanitize_mode;
typedef enum {
    ZG_SAN_STALE = 0,     /* a step uses grads that a step already used (zero_grad missing, or a
                             backward that fed another optimizer's step leaked in) */
    ZG_SAN_ERASED,        /* zero_grad erased the grads of a backward before any step used them */
    ZG_SAN_NO_GRAD,       /* a step with no fresh gradient at all (no backward since the last step) */
    ZG_SAN_UNSTEPPED,     /* module parameters with gradients that no optimizer holds */
    ZG_SAN_SCALED_CLIP,   /* clipping grads still multiplied by the loss scale */
    ZG_SAN_SCHED_ORDER,   /* scheduler stepped before its optimizer's first step */
    ZG_SAN_SCALED_READ,   /* zg_tensor_grad read grads still multiplied by the loss scale */
    ZG_SAN_SCALED_STEP,   /* zg_optim_step on grads still multiplied by the loss scale */
    ZG_SAN_UNSCALED,      /* unscale_ of grads that the scaler's current scale did not multiply */
    ZG_SAN_FROZEN_STEP,   /* a step moves a parameter with requires_grad false that holds a grad */
    ZG_SAN_CONSUMED_CLIP, /* clipping grads that a step already used (clip after step) */
    ZG_SAN_SCHED_REPEAT,  /* a scheduler stepped again with no step of its optimizer between */
    ZG_SAN_WINDOW,        /* a step used more backward passes than declared */
    ZG_SAN_KIND_COUNT
} zg_sanitize_kind;
/* Receives each report instead of stderr (NULL: stderr again). */
typedef void (*zg_sanitize_report_fn)(zg_sanitize_kind kind, const char *report, void *user);
ZG_API void zg_sanitize_set_report_fn(zg_sanitize_report_fn fn, void *user);
/* "stale", "erased", ... (the word reports start with). */
ZG_API const char *zg_sanitize_kind_name(zg_sanitize_kind kind);
ZG_API void zg_sanitize_set_mode(zg_sanitize_mode mode);
ZG_API zg_sanitize_mode zg_sanitize_get_mode(void);
/* Reports made so far (all kinds, or one kind); the last report's text ("" if none). */
ZG_API int64_t zg_sanitize_report_count(void);
ZG_API int64_t zg_sanitize_kind_count(zg_sanitize_kind kind);
ZG_API const char *zg_sanitize_last_report(void);
/* Forgets all tracked state, watched modules and counters; keeps the mode,
 * the report function and the declared accumulation windows. */
ZG_API void zg_sanitize_reset(void);
/* Declares that each step of opt uses at most n backward passes (the
 * gradient accumulation window; zg_accum declares its own); a step using
 * more is reported (ZG_SAN_WINDOW). n <= 1 removes the declaration.
 * Undeclared, any number is accepted. */
ZG_API int zg_sanitize_expect_accumulation(zg_optim *opt, int n);
/* Declares a multi-loss step: the next step(s), until a backward follows
 * a step, use at most n backward passes (ZG_SAN_WINDOW beyond). */
ZG_API void zg_sanitize_expect_backwards(int n);
/* Parameters of m with grads that no optimizer holds are reported at the
 * next zg_optim_step. Modules made while the sanitizer is on are known
 * without this call; it covers modules made before it was turned on.
 * zg_module_free unwatches. */
ZG_API int zg_sanitize_watch_module(zg_module *m);
ZG_API void zg_sanitize_unwatch_module(zg_module *m);

#ifdef __cplusplus
}
#endif
#endif
