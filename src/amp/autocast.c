/* Autocast regions and the autocast matmul / linear ops.
 *
 * The region type is per thread and nests on a small stack, like grad mode.
 * Inside a bf16 / fp16 region, zg_matmul and zg_linear come here (a hook in
 * src/ops/matmul.c). Forward: y = round_t(round_t(x) round_t(w)^T +
 * round_t(b)), float32 accumulation (the kernels of src/kernels).
 * Backward, as PyTorch's autograd through a bf16 op: the incoming gradient
 * g is rounded to t (it is the gradient of a t-typed tensor), each input
 * gradient is one low-precision GEMM rounded to t:
 *   matmul: dA = round_t(g B^T), dB = round_t(A^T g);
 *   linear: dx = round_t(g W), dW = round_t(g^T x),
 *           db = round_t(column sums of round_t(g)).
 * The forward's inputs are saved as the float32 tensors they are (the
 * kernels round them again when packing), which keeps the in-place checks
 * on the real tensors and saves no copies. */
#include "amp_internal.h"

#include "../kernels/lowp.h"

/* ---- region stack ------------------------------------------------------ */

#define ZG_AUTOCAST_STACK 64

static _Thread_local zg_autocast_type current;
static _Thread_local zg_autocast_type saved[ZG_AUTOCAST_STACK];
static _Thread_local int depth;

int zg_autocast_enter(zg_autocast_type type) {
    if (type != ZG_AUTOCAST_OFF && type != ZG_AUTOCAST_BF16 && type != ZG_AUTOCAST_FP16)
        return zg__fail(ZG_ERR_ARG, "zg_autocast_enter: unknown type %d (ZG_AUTOCAST_OFF, _BF16 or _FP16)",
                        (int)type);
    if (depth == ZG_AUTOCAST_STACK)
        return zg__fail(ZG_ERR_STATE, "zg_autocast_enter: regions nested deeper than %d", ZG_AUTOCAST_STACK);
    saved[depth++] = current;
    current = type;
    return ZG_OK;
}

void zg_autocast_exit(void) {
    if (depth == 0) return;
    current = saved[--depth];
}

zg_autocast_type zg_autocast_get(void) { return current; }

/* ---- matmul ------------------------------------------------------------ */

/* iv: batch, rows, k, m, type. */
static int matmul_backward(zg_node *n, zg_tensor *gout, zg_tensor **gin) {
    const zg_tensor *a = n->saved[0], *b = n->saved[1];
    int64_t B = n->iv[0], rows = n->iv[1], k = n->iv[2], m = n->iv[3];
    zg_autocast_type t = (zg_autocast_type)n->iv[4];
    const float *A = zg__f32(a), *Bm = zg__f32(b), *G = zg__f32(gout);
    if (zg__node_needs(n, 0)) {
        zg_tensor *ga = zg__empty_like(n->in[0]);
        if (!ga) return ZG_ERR_NOMEM;
        for (int64_t i = 0; i < B; i++) {
            int rc = zg__lp_gemm(t, false, true, rows, k, m, G + i * rows * m, Bm + i * k * m, NULL,
                                 zg__f32(ga) + i * rows * k);
            if (rc) return rc;
        }
        gin[0] = ga;
    }
    if (zg__node_needs(n, 1)) {
        zg_tensor *gb = zg__empty_like(n->in[1]);
        if (!gb) return ZG_ERR_NOMEM;
        for (int64_t i = 0; i < B; i++) {
            int rc = zg__lp_gemm(t, true, false, k, m, rows, A + i * rows * k, G + i * rows * m, NULL,
                                 zg__f32(gb) + i * k * m);
            if (rc) return rc;
        }
        gin[1] = gb;
    }
    return ZG_OK;
}

zg_tensor *zg__autocast_matmul(zg_tensor *a, zg_tensor *b, int64_t B, int64_t rows, int64_t k, int64_t m) {
    zg_autocast_type t = zg_autocast_get();
    int64_t shape[3] = {B, rows, m};
    zg_tensor *out = zg__empty(ZG_FLOAT32, a->ndim == 3 ? shape : shape + 1, a->ndim);
    if (!out) return NULL;
    for (int64_t i = 0; i < B; i++)
        if (zg__lp_gemm(t, false, false, rows, m, k, zg__f32(a) + i * rows * k, zg__f32(b) + i * k * m, NULL,
                        zg__f32(out) + i * rows * m))
            return NULL;
    zg_node *n = zg__record(t == ZG_AUTOCAST_BF16 ? "matmul_bf16" : "matmul_fp16", matmul_backward, out,
                            (zg_tensor *[]){a, b}, 2);
    if (n) {
        zg__save(n, a);
        zg__save(n, b);
        n->iv[0] = B;
        n->iv[1] = rows;
        n->iv[2] = k;
        n->iv[3] = m;
        n->iv[4] = t;
    }
    return out;
}

/* ---- linear ------------------------------------------------------------ */

/* iv: N (flattened rows), in, out, type. */
static int linear_backward(zg_node *n, zg_tensor *gout, zg_tensor **gin) {
    const zg_tensor *x = n->saved[0], *w = n->saved[1];
    int64_t N = n->iv[0], in = n->iv[1], out = n->iv[2];
    zg_autocast_type t = (zg_autocast_type)n->iv[3];
    const float *G = zg__f32(gout);
    if (zg__node_needs(n, 0)) {
        zg_tensor *gx = zg__empty_like(n->in[0]);
        if (!gx) return ZG_ERR_NOMEM;
        int rc = zg__lp_gemm(t, false, false, N, in, out, G, zg__f32(w), NULL, zg__f32(gx));
        if (rc) return rc;
        gin[0] = gx;
    }
    if (zg__node_needs(n, 1)) {
        zg_tensor *gw = zg__empty_like(n->in[1]);
        if (!gw) return ZG_ERR_NOMEM;
        int rc = zg__lp_gemm(t, true, false, out, in, N, G, zg__f32(x), NULL, zg__f32(gw));
        if (rc) return rc;
        gin[1] = gw;
    }
    if (zg__node_needs(n, 2)) {
        zg_tensor *gb = zg__empty_like(n->in[2]);
        if (!gb) return ZG_ERR_NOMEM;
        /* Summed in double, then rounded to t once: at least as exact as
         * PyTorch's float32 accumulation of the bf16 sum. */
        int rc = zg__lp_column_sums(t, G, N, out, zg__f32(gb));
        if (rc) return rc;
        gin[2] = gb;
    }
    return ZG_OK;
}

zg_tensor *zg__autocast_linear(zg_tensor *x, zg_tensor *w, zg_tensor *b, int64_t N, int64_t in, int64_t out) {
    zg_autocast_type t = zg_autocast_get();
    int64_t shape[ZG_MAX_DIMS];
    memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
    shape[x->ndim - 1] = out;
    zg_tensor *y = zg__empty(ZG_FLOAT32, shape, x->ndim);
    if (!y) return NULL;
    if (zg__lp_gemm(t, false, true, N, out, in, zg__f32(x), zg__f32(w), b ? zg__f32(b) : NULL, zg__f32(y)))
        return NULL;
    zg_node *n = zg__record(t == ZG_AUTOCAST_BF16 ? "linear_bf16" : "linear_fp16", linear_backward, y,
                            (zg_tensor *[]){x, w, b}, 3);
    if (n) {
        zg__save(n, x);
        zg__save(n, w);
        n->iv[0] = N;
        n->iv[1] = in;
        n->iv[2] = out;
        n->iv[3] = t;
    }
    return y;
}
