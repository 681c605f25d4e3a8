/* Matrix products: zg_matmul and zg_linear, whose GEMMs go through
 * zg__gemm (src/kernels/gemm.c).
 *
 * matmul: C = A B. dA = dC B^T, dB = A^T dC (per batch for 3-D).
 * linear: y = x W^T + b with x flattened to [N, in]. dx = dy W,
 * dW = dy^T x, db = column sums of dy.
 * The transposes are GEMM flags, never copies.
 *
 * Each node keeps the autocast type its forward ran under (its args' t)
 * and the backward runs its GEMMs in that type.
 * float32: row-major sgemm. bf16 / fp16 (PyTorch's CPU autocast): the
 * forward is round_t(round_t(x) round_t(w)^T + round_t(b)) with float32
 * accumulation; the backward is autograd through a t-typed op: the
 * incoming gradient is rounded to t (it is the gradient of a t-typed
 * tensor) and each input gradient is one low-precision GEMM rounded to t:
 *   matmul: dA = round_t(g B^T), dB = round_t(A^T g);
 *   linear: dx = round_t(g W), dW = round_t(g^T x),
 *           db = round_t(column sums of round_t(g)).
 * The forward's inputs are saved as the float32 tensors they are (the
 * kernels round them again when packing), which keeps the in-place checks
 * on the real tensors and saves no copies. */
#include "ops_internal.h"

#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <string.h>

/* A linear layer's dx and dW GEMMs run side by side from this many flops
 * each. */
#define CONCURRENT_MIN_FLOPS (256 << 10)

/* Contiguous C[M,N] = op(A) op(B) (+ bias) in type t. */
static int gemm_flags(zg_autocast_type t, unsigned flags, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                      const float *A, const float *B, const float *bias, float *C) {
    return zg__gemm(t, flags, ta, tb, M, N, K, A, ta ? M : K, B, tb ? K : N, bias, 0.0f, C, N, NULL);
}
static int gemm(zg_autocast_type t, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A, const float *B,
                const float *bias, float *C) {
    return gemm_flags(t, 0, ta, tb, M, N, K, A, B, bias, C);
}

static bool blas_fits(const int64_t *dims, int n) {
    for (int i = 0; i < n; i++)
        if (dims[i] > INT_MAX) return false;
    return true;
}

/* ---- matmul ------------------------------------------------------------ */

/* a [*A, rows, k] @ b [*B, k, m] -> [*, rows, m], * the broadcast of *A
 * and *B (as torch.matmul); batch i of the output multiplies matrix
 * a_at(i) of a by b_at(i) of b. When b is 2-D, a's batch folds into its
 * rows (one GEMM, as torch.matmul does). In autocast type t. */
typedef struct {
    int64_t batch, rows, k, m;
    int nb;                            /* broadcast batch dims */
    int64_t bshape[ZG_MAX_DIMS];       /* their sizes */
    int64_t sa[ZG_MAX_DIMS], sb[ZG_MAX_DIMS]; /* matrix strides of a and b per batch dim (0: broadcast) */
    int64_t na, nbm;                   /* matrices in a and in b */
    zg_autocast_type t;
} matmul_args;

/* The matrices of a and b that output batch i multiplies. */
static void batch_at(const matmul_args *p, int64_t i, int64_t *ia, int64_t *ib) {
    *ia = *ib = 0;
    for (int d = p->nb - 1; d >= 0; d--) {
        const int64_t x = i % p->bshape[d];
        i /= p->bshape[d];
        *ia += x * p->sa[d];
        *ib += x * p->sb[d];
    }
}

/* dX for one operand: per output batch, gemm into its matrix, summed over
 * the batches that share it (broadcast) in batch order. */
static int matmul_grad(const matmul_args *p, bool for_a, const float *G, const float *other, float *dX) {
    const int64_t rows = p->rows, k = p->k, m = p->m, count = for_a ? p->na : p->nbm;
    const int64_t xsize = for_a ? rows * k : k * m;
    const bool shared = count < p->batch;
    float *tmp = shared ? zg__arena_alloc((size_t)xsize * sizeof(float)) : NULL;
    if (shared && !tmp) return ZG_ERR_NOMEM;
    if (shared) memset(dX, 0, (size_t)(count * xsize) * sizeof(float));
    for (int64_t i = 0; i < p->batch; i++) {
        int64_t ia, ib;
        batch_at(p, i, &ia, &ib);
        float *dst = shared ? tmp : dX + (for_a ? ia : ib) * xsize;
        int rc = for_a ? gemm(p->t, false, true, rows, k, m, G + i * rows * m, other + ib * k * m, NULL, dst)
                       : gemm(p->t, true, false, k, m, rows, other + ia * rows * k, G + i * rows * m, NULL, dst);
        if (rc) return rc;
        if (shared) {
            float *acc = dX + (for_a ? ia : ib) * xsize;
            for (int64_t j = 0; j < xsize; j++) acc[j] += tmp[j];
        }
    }
    return ZG_OK;
}

static int matmul_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    const zg_tensor *a = n->saved[0], *b = n->saved[1];
    const matmul_args *p = ZG_NODE_ARGS(n, matmul_args);
    const float *A = zg__f32(a), *Bm = zg__f32(b), *G = zg__f32(gout);
    if (zg__node_needs(n, 0)) { /* dA = dC B^T */
        if (!(gin[0] = zg__empty_like(n->in[0]))) return ZG_ERR_NOMEM;
        int rc = matmul_grad(p, true, G, Bm, zg__f32(gin[0]));
        if (rc) return rc;
    }
    if (zg__node_needs(n, 1)) { /* dB = A^T dC */
        if (!(gin[1] = zg__empty_like(n->in[1]))) return ZG_ERR_NOMEM;
        int rc = matmul_grad(p, false, G, A, zg__f32(gin[1]));
        if (rc) return rc;
    }
    return ZG_OK;
}

/* A create_graph pass through a product recorded under autocast: refused
 * (its gradient would need the low-precision GEMMs as ops). */
static int refuse_autocast(const zg__node *n, zg_autocast_type t) {
    if (t == ZG_AUTOCAST_OFF) return ZG_OK;
    return zg__fail(ZG_ERR_STATE,
                    "zg_autograd_grad_opts: create_graph through '%s' is not supported: a product recorded under "
                    "autocast has no differentiable backward; compute the part to differentiate twice outside "
                    "the autocast region",
                    n->name);
}

/* The same with ops: dA = g B^T summed over the batches A was repeated
 * in; dB = A^T g likewise (for a 2-D B, A's batch folds into its rows). */
static int matmul_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    zg_tensor *a = n->saved[0], *b = n->saved[1];
    const matmul_args *p = ZG_NODE_ARGS(n, matmul_args);
    int rc = refuse_autocast(n, p->t);
    if (rc) return rc;
    if (zg__node_needs(n, 0) &&
        !(gin[0] = zg__sum_to(zg_matmul(g, zg_transpose(b, -1, -2)), a->shape, a->ndim)))
        return ZG_ERR_NOMEM;
    if (!zg__node_needs(n, 1)) return ZG_OK;
    if (b->ndim == 2) {
        zg_tensor *a2 = zg_reshape(a, (int64_t[]){-1, p->k}, 2), *g2 = zg_reshape(g, (int64_t[]){-1, p->m}, 2);
        gin[1] = a2 && g2 ? zg_matmul(zg_transpose(a2, 0, 1), g2) : NULL;
    } else {
        gin[1] = zg__sum_to(zg_matmul(zg_transpose(a, -1, -2), g), b->shape, b->ndim);
    }
    return gin[1] ? ZG_OK : ZG_ERR_NOMEM;
}

/* The broadcast batch of a [*A, rows, k] and b [*B, k, m] into p, with the
 * output's shape; false when *A and *B do not broadcast. */
static bool matmul_batch(const zg_tensor *a, const zg_tensor *b, matmul_args *p, int64_t *shape) {
    const int da = a->ndim - 2, db = b->ndim - 2, nb = da > db ? da : db;
    p->nb = nb;
    p->batch = p->na = p->nbm = 1;
    int64_t st_a = 1, st_b = 1;
    for (int d = nb - 1; d >= 0; d--) {
        const int ia = d - (nb - da), ib = d - (nb - db);
        const int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1) return false;
        p->bshape[d] = sa == 1 ? sb : sa;
        p->sa[d] = sa == 1 ? 0 : st_a;
        p->sb[d] = sb == 1 ? 0 : st_b;
        st_a *= sa;
        st_b *= sb;
        p->batch *= p->bshape[d];
        shape[d] = p->bshape[d];
    }
    p->na = st_a;
    p->nbm = st_b;
    return true;
}

zg_tensor *zg_matmul(zg_tensor *a, zg_tensor *b) {
    const char *fn = "zg_matmul";
    if (zg__check_f32(fn, a, "a") || zg__check_f32(fn, b, "b")) return NULL;
    char sa[ZG_SHAPE_BUF], sb[ZG_SHAPE_BUF];
    zg__shape_str(a, sa, sizeof sa);
    zg__shape_str(b, sb, sizeof sb);
    if (a->ndim < 2 || b->ndim < 2)
        return zg__fail_null("%s: shapes %s and %s: both need at least 2 dims [..., n, k] @ [..., k, m]", fn, sa, sb);
    matmul_args p = {.rows = a->shape[a->ndim - 2], .k = a->shape[a->ndim - 1], .m = b->shape[b->ndim - 1]};
    int64_t shape[ZG_MAX_DIMS];
    if (b->shape[b->ndim - 2] != p.k || !matmul_batch(a, b, &p, shape))
        return zg__fail_null("%s: shapes %s and %s do not match", fn, sa, sb);
    shape[p.nb] = p.rows;
    shape[p.nb + 1] = p.m;
    /* b 2-D: a's matrices stacked are one [batch * rows, k] matrix */
    if (b->ndim == 2 && p.batch > 1) {
        p.rows *= p.batch;
        p.batch = p.na = 1;
        p.nb = 0;
    }
    if (!blas_fits((int64_t[]){p.rows, p.k, p.m}, 3))
        return zg__fail_null("%s: shapes %s and %s are too large for BLAS", fn, sa, sb);
    p.t = zg_autocast_get();

    zg_tensor *out = zg__empty(ZG_FLOAT32, shape, (b->ndim == 2 ? a->ndim : (int)(p.nb + 2)));
    if (!out) return NULL;
    for (int64_t i = 0; i < p.batch; i++) {
        int64_t ia, ib;
        batch_at(&p, i, &ia, &ib);
        if (gemm(p.t, false, false, p.rows, p.m, p.k, zg__f32(a) + ia * p.rows * p.k, zg__f32(b) + ib * p.k * p.m,
                 NULL, zg__f32(out) + i * p.rows * p.m))
            return NULL;
    }

    zg__node *n = ZG_RECORD(matmul_args, zg__autocast_node_name("matmul", p.t), matmul_backward, out,
                            (zg_tensor *[]){a, b}, 2);
    zg__node_set_double_backward(n, matmul_backward_diff);
    if (n) {
        zg__save(n, a);
        zg__save(n, b);
        *ZG_NODE_ARGS(n, matmul_args) = p;
    }
    return out;
}

/* ---- linear ------------------------------------------------------------ */

/* db[j] = sum over the N rows of G[r, j], summed in double in row order;
 * the columns split across the threads (the same sums for any count) from
 * 32K elements and 32 columns. */
static void column_sums_f32(const float *G, int64_t N, int64_t out, float *db) {
    ZG_PARALLEL_CHUNKS(lo, hi, out, N * out >= 32768 ? 32 : INT64_MAX, {
        for (int64_t j = lo; j < hi; j++) db[j] = 0.0f;
        double acc[256];
        for (int64_t j0 = lo; j0 < hi; j0 += 256) {
            const int64_t w = hi - j0 < 256 ? hi - j0 : 256;
            for (int64_t j = 0; j < w; j++) acc[j] = 0.0;
            for (int64_t r = 0; r < N; r++) {
                const float *g = G + r * out + j0;
                for (int64_t j = 0; j < w; j++) acc[j] += g[j];
            }
            for (int64_t j = 0; j < w; j++) db[j0 + j] = (float)acc[j];
        }
    });
}

/* x [N, in] (flattened rows) W^T [in, out] + b -> y [N, out], in autocast
 * type t. */
typedef struct {
    int64_t N, in, out;
    zg_autocast_type t;
} linear_args;

static int linear_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    const zg_tensor *x = n->saved[0], *w = n->saved[1];
    const linear_args *p = ZG_NODE_ARGS(n, linear_args);
    int64_t N = p->N, in = p->in, out = p->out;
    zg_autocast_type t = p->t;
    const float *G = zg__f32(gout);
    zg_tensor *gx = NULL, *gw = NULL, *gb = NULL;
    /* Weight and bias are usually leaves: their .grad buffer if free. */
    if (zg__node_needs(n, 0) && !(gx = zg__empty_like(n->in[0]))) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 1) && !(gw = zg__grad_for_input(n, 1))) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 2) && !(gb = zg__grad_for_input(n, 2))) return ZG_ERR_NOMEM;
    /* dx = dy W and dW = dy^T x take the same flops: in float32 with two
     * threads or more each runs whole on its own thread, which beats
     * splitting each over the threads in turn (one parallel region, the
     * full-size GEMMs); either way every element is the same sum. */
    int rc = ZG_OK, rx = ZG_OK, rw = ZG_OK;
    /* With both wanted each is one whole sgemm, also with one thread, so
     * the bits do not depend on the thread count (see zg__sgemm). */
    const unsigned f = gx && gw ? ZG__GEMM_WHOLE : 0u;
    if (f && t == ZG_AUTOCAST_OFF && zg__max_threads() > 1 && !omp_in_parallel() && openblas_get_parallel() == 2 &&
        2 * N * in * out >= CONCURRENT_MIN_FLOPS) {
#pragma omp parallel num_threads(2)
        {
            if (omp_get_thread_num() == 0)
                rx = gemm_flags(t, f, false, false, N, in, out, G, zg__f32(w), NULL, zg__f32(gx));
            else
                rw = gemm_flags(t, f, true, false, out, in, N, G, zg__f32(x), NULL, zg__f32(gw));
        }
    } else {
        if (gx) rx = gemm_flags(t, f, false, false, N, in, out, G, zg__f32(w), NULL, zg__f32(gx)); /* dx = dy W */
        if (gw && !rx) rw = gemm_flags(t, f, true, false, out, in, N, G, zg__f32(x), NULL, zg__f32(gw)); /* dW = dy^T x */
    }
    if ((rc = rx ? rx : rw)) return rc;
    if (gb) {
        float *db = zg__f32(gb);
        if (t != ZG_AUTOCAST_OFF) {
            /* Summed in double, then rounded to t once: at least as exact
             * as PyTorch's float32 accumulation of the t-typed sum. */
            if ((rc = zg__lp_column_sums(t, G, N, out, db))) return rc;
        } else {
            column_sums_f32(G, N, out, db);
        }
    }
    gin[0] = gx;
    gin[1] = gw;
    gin[2] = gb;
    return ZG_OK;
}

/* The same with ops, on g seen as [N, out]: dx = g W (seen with x's
 * shape), dW = g^T x, db = the column sums of g. */
static int linear_backward_diff(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    zg_tensor *x = n->saved[0], *w = n->saved[1];
    const linear_args *p = ZG_NODE_ARGS(n, linear_args);
    int rc = refuse_autocast(n, p->t);
    if (rc) return rc;
    zg_tensor *g2 = zg_reshape(g, (int64_t[]){p->N, p->out}, 2);
    if (!g2) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 0) && !(gin[0] = zg_reshape(zg_matmul(g2, w), x->shape, x->ndim))) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 1) &&
        !(gin[1] = zg_matmul(zg_transpose(g2, 0, 1), zg_reshape(x, (int64_t[]){p->N, p->in}, 2))))
        return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 2) && !(gin[2] = zg_sum_dim(g2, 0, false))) return ZG_ERR_NOMEM;
    return ZG_OK;
}

zg_tensor *zg_linear(zg_tensor *x, zg_tensor *w, zg_tensor *b) {
    const char *fn = "zg_linear";
    if (zg__check_f32(fn, x, "x") || zg__check_f32(fn, w, "weight")) return NULL;
    if (b && zg__check_f32(fn, b, "bias")) return NULL;
    char sx[ZG_SHAPE_BUF], sw[ZG_SHAPE_BUF], sbias[ZG_SHAPE_BUF];
    zg__shape_str(x, sx, sizeof sx);
    zg__shape_str(w, sw, sizeof sw);
    if (w->ndim != 2) return zg__fail_null("%s: weight of shape %s must be 2-D [out,in]", fn, sw);
    int64_t out = w->shape[0], in = w->shape[1];
    if (x->ndim < 1) return zg__fail_null("%s: x of shape %s must have at least 1 dim [..., in]", fn, sx);
    if (x->shape[x->ndim - 1] != in)
        return zg__fail_null("%s: x of shape %s does not match weight of shape %s (in_features %lld)", fn, sx, sw,
                             (long long)in);
    if (b && (b->ndim != 1 || b->shape[0] != out))
        return zg__fail_null("%s: bias of shape %s does not match weight of shape %s (out_features %lld)", fn,
                             zg__shape_str(b, sbias, sizeof sbias), sw, (long long)out);
    int64_t N = 1;
    for (int i = 0; i < x->ndim - 1; i++) N *= x->shape[i];
    if (!blas_fits((int64_t[]){N, in, out}, 3))
        return zg__fail_null("%s: shapes %s and %s are too large for BLAS", fn, sx, sw);
    const zg_autocast_type t = zg_autocast_get();

    int64_t shape[ZG_MAX_DIMS];
    memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
    shape[x->ndim - 1] = out;
    zg_tensor *y = zg__empty(ZG_FLOAT32, shape, x->ndim);
    if (!y) return NULL;
    if (gemm(t, false, true, N, out, in, zg__f32(x), zg__f32(w), b ? zg__f32(b) : NULL, zg__f32(y))) return NULL;

    zg__node *n = ZG_RECORD(linear_args, zg__autocast_node_name("linear", t), linear_backward, y,
                            (zg_tensor *[]){x, w, b}, 3);
    zg__node_set_double_backward(n, linear_backward_diff);
    if (n) {
        zg__save(n, x);
        zg__save(n, w);
        *ZG_NODE_ARGS(n, linear_args) = (linear_args){N, in, out, t};
    }
    return y;
}
