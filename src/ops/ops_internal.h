/* The ops layer: forward and backward of each differentiable operation.
 * Ops compute with the kernels and record their nodes with autograd; what
 * one op family shares with another, or with the modules above, is
 * declared here (the families' own helpers are in pointwise.h,
 * softmax_kernel.h, pool_internal.h and conv_internal.h). Not installed. */
#ifndef ZG_OPS_INTERNAL_H
#define ZG_OPS_INTERNAL_H

#include "../autograd/autograd_internal.h"
#include "../kernels/kernels_internal.h"

/* Sums g (an arena tensor with the broadcast shape) down to `shape`. */
zg_tensor *zg__sum_to_shape(const zg_tensor *g, const int64_t *shape, int ndim);
/* The same, and its reverse (g repeated up to `shape`, as broadcasting
 * does), as ops that record (each is the other's backward): what the
 * differentiable backwards of broadcasting ops and reductions use. g
 * itself when it has the shape already. */
zg_tensor *zg__sum_to(zg_tensor *g, const int64_t *shape, int ndim);
zg_tensor *zg__expand(zg_tensor *g, const int64_t *shape, int ndim);

/* Normalisation written with ops, for the differentiable backwards of
 * layer_norm and batch_norm (src/ops/layer_norm.c). Over the nd dims of
 * x listed in dims (kept as size 1): the mean m, the biased variance v,
 * rstd = (v + eps)^-1/2 and xhat = (x - m) rstd, each recorded. */
int zg__norm_xhat(zg_tensor *x, const int *dims, int nd, float eps, zg_tensor **xhat, zg_tensor **rstd);
/* The input gradient of xhat through those statistics, from h (the
 * gradient of xhat): rstd (h - mean(h) - xhat mean(h xhat)). */
zg_tensor *zg__norm_dx(zg_tensor *h, zg_tensor *xhat, zg_tensor *rstd, const int *dims, int nd);

/* An op that is a linear map y = A x fixed by its saved state (pooling,
 * embedding), for its differentiable backward (src/ops/linear_map.c):
 * apply writes y = A x, apply_t writes dx = A^T g (every element of their
 * outputs), on contiguous float32 data; ctx is theirs. */
typedef struct zg__linmap {
    const char *name, *name_t; /* the nodes of A v and of A^T v */
    void (*apply)(const void *ctx, const float *x, float *y);
    void (*apply_t)(const void *ctx, const float *g, float *dx);
    const void *ctx;
    int64_t in_shape[ZG_MAX_DIMS], out_shape[ZG_MAX_DIMS];
    int in_nd, out_nd;
} zg__linmap;
/* The differentiable backward of such an op, node n with input 0 x and
 * incoming gradient g: gin[0] = A^T g recorded (its backward A v,
 * recorded in turn). spec without the shapes, which come from x and g. */
int zg__linmap_backward(zg__node *n, zg_tensor *g, zg_tensor **gin, const zg__linmap *spec);
/* A^T g so recorded, for a map whose input has shape in_shape (spec's
 * shapes are filled in); NULL when out of memory. */
zg_tensor *zg__linmap_t(const zg__linmap *spec, const int64_t *in_shape, int in_nd, zg_tensor *g);
/* The differentiable backward of taking, from x seen as [outer, size,
 * inner], the rows [start, start + length) of its middle dim (narrow,
 * slice; length from g), in src/ops/narrow.c. */
int zg__narrow_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin, int64_t outer, int64_t size, int64_t inner,
                             int64_t start);

/* relu(max_pool2d(zg_conv2d(x, w, b, ...), 2)) (without relu when relu is
 * false) as one op, with the same values and gradients as the ops in turn.
 * NULL where it does not apply (invalid arguments, autocast on, a conv
 * output smaller than 2x2) or fails: the caller then runs the ops one by
 * one, which report any error. */
zg_tensor *zg__conv2d_pool2(zg_tensor *x, zg_tensor *w, zg_tensor *b, const int stride[2], const int padding[2],
                            const int dilation[2], int groups, bool relu);

/* Causal attention over a packed projection (the GPT's c_attn output):
 * qkv [B, T, 3C] holds q, k, v side by side, each C = n_head x hs columns;
 * returns y [B, T, C] with the heads side by side again, scale 1/sqrt(hs).
 * The same values as splitting, transposing to [B, n_head, T, hs], the
 * fused attention and transposing back, without those copies (and their
 * zero-filled gradients in backward). */
zg_tensor *zg__attention_packed(zg_tensor *qkv, int64_t n_head);

#endif
