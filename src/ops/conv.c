/* 2-D convolution over NCHW tensors through im2col + sgemm.
 *
 * With K = Cin/groups * kH * kW rows per group and P = OH * OW output
 * positions, im2col lays out one sample's input patches as cols
 * [Cin*kH*kW, P]; then per sample and group g
 *     Y_g  = W_g cols_g  (+ bias)                    [Cout/groups, P]
 *     dW_g += dY_g cols_g^T                          [Cout/groups, K]
 *     dcols_g = W_g^T dY_g,  dX = col2im(dcols)      (adds overlapping patches)
 *     db  += sums of dY over the positions.
 * float32 computes dW_g^T = cols_g dY_g^T instead (the same sums; OpenBLAS
 * packs cols faster that way) and transposes the total once.
 * Stride 1, dilation 1 convs with many more cols rows than output channels
 * (the default CNN's second layer) use a padded-width layout instead of
 * im2col's short rows: see "padded-width layout" below.
 *
 * Schedule: OpenMP across the samples, each thread running im2col into its
 * own scratch (which stays in cache: 225 KiB for the default CNN's second
 * layer) and single-threaded GEMMs on it. The backward recomputes the
 * cols instead of keeping them from the forward: cheaper than writing and
 * re-reading them through memory, and the step keeps no N*K*P buffer.
 * Measured at the default CNN's shapes on one core, per-sample GEMMs run
 * as fast as one GEMM over the whole batch (94 against 93 GFLOP/s), so
 * splitting the batch across threads loses nothing and saves the
 * [Cout, N*P] <-> [N, Cout, P] permutes a batched GEMM needs.
 * BLAS threads: OpenBLAS's pthreads build would thread each GEMM on its own
 * pool also inside our parallel loop, so the loop makes it serial for its
 * duration; its OpenMP build runs serially inside a parallel region by
 * itself. A single sample (or a loop too small to split) runs serially
 * here and leaves OpenBLAS its threads.
 * The weight and bias gradients are summed per fixed chunk of samples and
 * the chunk partials added in chunk order, so results do not depend on the
 * number of threads.
 *
 * Autocast (bf16 / fp16 regions, as PyTorch's CPU autocast runs conv2d in
 * the low type through oneDNN): the same products through zg__gemm in the
 * region's type t, which the node keeps for the backward. Every result is
 * the float32-accumulated sum of t-rounded operands, rounded to t once, at
 * the end, as torch 1.13 computes it (checked against its output bit for
 * bit on small shapes):
 *     y  = round_t(W_t cols_t + round_t(b))
 *     dW = round_t(sum over samples of g_t cols_t^T)     (g_t = round_t(g))
 *     db = round_t(sum of g_t)
 *     dX = round_t(col2im(W_t^T g_t))
 * so the GEMMs run without their own output rounding (ZG__LP_NO_ROUND) and
 * the roundings come after the sums over samples and over the overlapping
 * patches. The kernels round cols when they pack them: no extra copy. */
#include "ops_internal.h"
#include "conv_internal.h"
#include "pool_internal.h"

#include <cblas.h>
#include <limits.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Samples per chunk of the backward (one partial dW / db each). */
#define CHUNK 4
/* Below this many output elements the batch loop stays on one thread. */
#define PAR_MIN_ELEMS 32768

/* Packed sizes of one product for the instruction kernels
 * (zg__bf16_avx512_dims; AMX reads the same layout). */
typedef struct {
    int64_t kp2, mpad, npad;
} lp_dims;

typedef struct {
    int64_t N, C, H, W;      /* input */
    int64_t Cout, kh, kw, G; /* weight, groups */
    int64_t OH, OW;
    int64_t sh, sw, ph, pw, dh, dw;
    int64_t K;  /* rows of one group's cols: C/G * kh * kw */
    int64_t Ct; /* rows of all cols: C * kh * kw */
    int64_t Cg; /* output channels per group */
    int64_t P;  /* OH * OW */
    /* Padded-width layout (see below): whether it is used, the padded row
     * width Wp, the GEMMs' columns Pc (OH * Wp with it, else P) and the
     * length of one padded plane. */
    bool wide;
    int64_t Wp, Pc, PL;
    /* Own kernel (see "own kernel" below): whether it runs the products,
     * and the offsets of the cols rows in the padded planes (Ct of them). */
    bool own;
    int32_t *xoff;
    /* bf16 own packing (see "bf16 packing" below): whether it runs the
     * products, and the packed sizes of its three products. */
    bool own_lp;
    lp_dims lp_fw, lp_dw, lp_dx;
    /* ... and, over the P real positions p = oh*Wp + ow, p itself (kpos)
     * and the offset of row p of dY^T (toff = p*Cout). */
    int32_t *kpos, *toff;
    /* Fused 2x2 max pooling (and relu) of the output, see "pooled
     * output" below: FUSE_NONE, FUSE_POOL or FUSE_POOL_RELU; the pooled
     * size; the winners' places (NULL when no gradient is wanted). */
    int fuse;
    int64_t PH, PW;
    uint8_t *win;
} conv_geom;

enum { FUSE_NONE, FUSE_POOL, FUSE_POOL_RELU };

/* Per-call settings of the products: the type, the low-precision flags and
 * this thread's scratch for them (see zg__gemm). */
typedef struct {
    zg_autocast_type t;
    unsigned flags;
    void *scratch;
    /* Own kernel: the weight packed as A of the forward ([Cout, Ct], by
     * zg__sgemm_pack_a), NULL in the backward; bf16 packing: the weight as
     * the forward's A, or W^T as dX's A, in bf16 pairs. */
    const void *wpack;
} gemm_ctx;

/* C[M,N] = op(A) op(B) + beta C with explicit leading dimensions (row-major). */
static int gemm(const gemm_ctx *c, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    return zg__gemm(c->t, c->flags, ta, tb, M, N, K, A, lda, B, ldb, NULL, beta, C, ldc, c->scratch);
}

/* Range [lo, hi) of output columns whose input column ow*sw + off lies
 * inside [0, W). */
static void valid_cols(const conv_geom *g, int64_t off, int64_t *lo, int64_t *hi) {
    int64_t a = off >= 0 ? 0 : (-off + g->sw - 1) / g->sw;
    int64_t b = g->W - off <= 0 ? 0 : (g->W - off + g->sw - 1) / g->sw;
    if (b > g->OW) b = g->OW;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

/* ---- short rows ----------------------------------------------------------
 * The rows copied here are often shorter than 32 floats (14 in the default
 * CNN): a plain loop becomes a memcpy / memset call or a scalar loop per
 * row. These run in unaligned blocks of 8 floats (one AVX register, two
 * SSE ones), the last block overlapping the one before (which rewrites the
 * same values); shorter rows as two overlapping blocks of 4, or (1 to 3
 * floats) as the three elements 0, n/2 and n - 1: no call, no loop to turn
 * into one. The callers are compiled per instruction set (ZG_SIMD_CLONES)
 * with these inlined. */
typedef float v8f __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));

static inline void copy_row(float *restrict d, const float *restrict s, int64_t n) {
    if (n >= 8) {
        for (int64_t k = 0;; k += 8) {
            if (k > n - 8) k = n - 8;
            v8f a;
            memcpy(&a, s + k, sizeof a);
            memcpy(d + k, &a, sizeof a);
            if (k == n - 8) break;
        }
    } else if (n >= 4) {
        v4f a, b;
        memcpy(&a, s, sizeof a);
        memcpy(&b, s + n - 4, sizeof b);
        memcpy(d, &a, sizeof a);
        memcpy(d + n - 4, &b, sizeof b);
    } else if (n > 0) {
        d[0] = s[0];
        d[n / 2] = s[n / 2];
        d[n - 1] = s[n - 1];
    }
}

static inline void zero_row(float *d, int64_t n) {
    if (n >= 8) {
        const v8f z = {0};
        for (int64_t k = 0;; k += 8) {
            if (k > n - 8) k = n - 8;
            memcpy(d + k, &z, sizeof z);
            if (k == n - 8) break;
        }
    } else if (n >= 4) {
        const v4f z = {0};
        memcpy(d, &z, sizeof z);
        memcpy(d + n - 4, &z, sizeof z);
    } else if (n > 0) {
        d[0] = d[n / 2] = d[n - 1] = 0.0f;
    }
}

/* d = s + v: the same value however often an element is written. */
static inline void add_row(float *restrict d, const float *restrict s, float v, int64_t n) {
    if (n >= 8) {
        for (int64_t k = 0;; k += 8) {
            if (k > n - 8) k = n - 8;
            v8f a;
            memcpy(&a, s + k, sizeof a);
            a += v;
            memcpy(d + k, &a, sizeof a);
            if (k == n - 8) break;
        }
    } else if (n >= 4) {
        v4f a, b;
        memcpy(&a, s, sizeof a);
        memcpy(&b, s + n - 4, sizeof b);
        a += v;
        b += v;
        memcpy(d, &a, sizeof a);
        memcpy(d + n - 4, &b, sizeof b);
    } else if (n > 0) {
        d[0] = s[0] + v;
        d[n / 2] = s[n / 2] + v;
        d[n - 1] = s[n - 1] + v;
    }
}

/* ---- padded-width layout (stride 1, dilation 1) ---------------------------
 * With each input plane copied once into a zero-padded plane xp of Hp =
 * H + 2*ph rows of Wp floats, x[h][w] at xp[(h + ph)*Wp + pw + w], the
 * output position (oh, ow) of kernel tap (i, j) reads xp[(oh + i)*Wp + ow +
 * j]: over positions p = oh*Wp + ow, the cols row of (c, i, j) is the ONE
 * contiguous slice xp + i*Wp + j of Pc = OH*Wp floats. A row's right
 * padding can be the next row's left padding: reads past a row's end wrap
 * into the next row's first pw zeros, which holds while ow + j < Wp + pw
 * (max ow + j = W + 2*pw - 1, so Wp = W + q with q >= pw), and Wp >= OW
 * needs q >= 2*pw - kw + 1: Wp = W + q with q the larger of the two (W + pw
 * for pw <= kw - 1). The last row reads kw - 1 floats past the plane.
 * The GEMMs then run over Pc columns, of which ow in [OW, Wp) (kw - 1 -
 * pw per row for "same" padding) are garbage: dropped from y, and zero in
 * the expanded dY, so that
 * they add exact zeros to dW (0 * finite) and to the padded dX (W^T 0).
 * Per element the sums keep their order (over K in the forward and dX, over
 * the positions in dW, with zeros between), so the results are the general
 * path's bits. It trades (kw - 1)/Wp more GEMM work for C*H + Cout*OH short
 * rows instead of C*kh*kw*OH (or 2x that in the backward); it pays only
 * where the latter is clearly more (see use_wide). Only the interior of xp
 * is ever written and only the real columns of the expanded dY, so their
 * zeros are written once per scratch slot. */

/* Whether the padded-width layout pays (measured on the default CNN: its
 * second conv, 32 -> 64 channels at 14x14, gains; its first, 1 -> 32
 * channels at 28x28, would copy more short rows than im2col does). */
static int64_t wide_width(const conv_geom *g) {
    const int64_t q = 2 * g->pw - g->kw + 1 > g->pw ? 2 * g->pw - g->kw + 1 : g->pw;
    return g->W + q;
}

bool zg__conv_general_only = false;

static bool use_wide(const conv_geom *g) {
    if (zg__conv_general_only || g->sh != 1 || g->sw != 1 || g->dh != 1 || g->dw != 1) return false;
    const int64_t Wp = wide_width(g);
    /* At most 1/4 of the columns garbage, and at most half the short rows. */
    if (4 * (Wp - g->OW) > Wp) return false;
    return 2 * (g->C * g->H + g->Cout * g->OH) <= g->Ct * g->OH;
}

/* ---- own kernel (float32, padded-width layout, one group) ----------------
 * With AVX-512F (checked at run time) the forward and the dW product run
 * through zg__sgemm_offsets (src/kernels/sgemm_offsets.c) instead of sgemm
 * on copied cols: cols row (c, i, j) is read in place at xp + xoff[(c, i,
 * j)], xoff = c*PL + i*Wp + j, so neither copies cols; the dW product
 * multiplies by dY^T [Pc, Cout], one transposed copy of dY per sample, and
 * sums over the P real positions only (kpos): the garbage columns' terms
 * are x * 0, which add nothing to a sum that starts from +0 (it never
 * becomes -0), so skipping them keeps the bits (for finite x). dX
 * (W^T dY, no cols to save) stays with sgemm, which was faster at its
 * shape (bench/conv_gemm; docs/performance.md). Each element is one fused
 * multiply-add chain over k in order from 0, as OpenBLAS's kernels sum at
 * these sizes (K <= 320): the same bits as the sgemm path
 * (tests/test_ops_conv compares them). */
bool zg__conv_blas_only = false;

static bool use_own(const conv_geom *g, zg_autocast_type t) {
    return !zg__conv_blas_only && t == ZG_AUTOCAST_OFF && g->wide && g->G == 1 && g->K <= 320 &&
           g->C * g->PL <= INT32_MAX && g->Pc * g->Cout <= INT32_MAX && zg__sgemm_offsets_available();
}

/* g->xoff, kpos and toff in the arena; false when out of memory. In the
 * general layout (bf16 packing only) xoff addresses the rows of cols. */
static bool own_offsets(conv_geom *g) {
    g->xoff = zg__arena_alloc((size_t)(g->Ct + 2 * g->P) * sizeof(int32_t));
    if (!g->xoff) return false;
    g->kpos = g->xoff + g->Ct;
    g->toff = g->kpos + g->P;
    if (!g->wide) {
        for (int64_t k = 0; k < g->Ct; k++) g->xoff[k] = (int32_t)(k * g->Pc);
        return true;
    }
    for (int64_t c = 0; c < g->C; c++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++)
                g->xoff[(c * g->kh + i) * g->kw + j] = (int32_t)(c * g->PL + i * g->Wp + j);
    for (int64_t oh = 0; oh < g->OH; oh++)
        for (int64_t ow = 0; ow < g->OW; ow++) {
            const int64_t p = oh * g->Wp + ow;
            g->kpos[oh * g->OW + ow] = (int32_t)p;
            g->toff[oh * g->OW + ow] = (int32_t)(p * g->Cout);
        }
    return true;
}

/* The weight [Cout, Ct] packed as A of the forward, in the arena; NULL
 * when out of memory. */
static float *own_pack(const conv_geom *g, const float *Wt) {
    float *dst = zg__arena_alloc((size_t)zg__sgemm_packed_floats(g->Cout, g->Ct) * sizeof(float));
    if (dst) zg__sgemm_pack_a(g->Cout, g->Ct, Wt, g->Ct, 1, dst);
    return dst;
}

/* ---- bf16 packing (bf16 autocast, one group) -----------------------------
 * Where an instruction kernel (AVX512-BF16 or AMX) is the one chosen
 * (zg_bf16_kernel_get), the three products take their operands packed by the
 * convolution instead of by zg__gemm: the weight (forward) and W^T (dX) once
 * per call instead of once per sample; in the padded-width layout the cols
 * rows straight from the padded planes through xoff, rounded to bf16 while
 * packed (no im2col copy, no float32 cols; the general layout packs its
 * im2col'd cols); dW computed transposed, dW^T = cols dY^T, so that cols is
 * packed along its rows (as A) and only dY [Cout, Pc] is transposed, the sum
 * of each sample's product added in the kernel (at the first conv of the
 * default CNN, 9 cols rows against 32 channels, this also makes the padded
 * product 3x smaller: M = 9 rows in blocks of 6 instead of N = 9 columns in
 * a block of 32). The packed words, the instruction's pairs and the order of
 * the sums are the ones zg__gemm's kernel uses (each product of two bf16
 * values is exact in float32, so swapping the operands of dW changes
 * nothing): the same bits as that path (tests/test_ops_conv). The packed
 * words are also the layout of AMX's tiles (16 rows of 16 pair words): with
 * AMX, zg__bf16_gemm_packed runs the tile kernel on them, which takes the
 * pairs in zg__gemm's AMX kernel's chunks, so the same-bits argument holds
 * there too (the tile loops are tested on a model of the unit,
 * tests/test_amx_tiles). */
static bool use_own_lp(const conv_geom *g, zg_autocast_type t) {
    return !zg__conv_blas_only && t == ZG_AUTOCAST_BF16 && g->G == 1 &&
           zg_bf16_kernel_get() != ZG_BF16_KERNEL_PORTABLE && g->C * g->PL <= INT32_MAX && g->Ct * g->Pc <= INT32_MAX;
}

static lp_dims lp_dims_of(int64_t M, int64_t N, int64_t K) {
    lp_dims d;
    zg__bf16_avx512_dims(M, N, K, &d.kp2, &d.mpad, &d.npad);
    return d;
}

/* The forward's weight [Cout, Ct] (or with transposed W^T [Ct, Cout], dX's
 * A) packed in the arena; NULL when out of memory. */
static uint32_t *lp_pack_w(const conv_geom *g, const float *Wt, bool transposed) {
    const lp_dims d = transposed ? g->lp_dx : g->lp_fw;
    uint32_t *dst = zg__arena_alloc((size_t)(d.mpad * d.kp2) * sizeof *dst);
    if (dst)
        zg__bf16_pack_a(false, transposed, transposed ? g->Ct : g->Cout, transposed ? g->Cout : g->Ct, Wt, d.mpad,
                        d.kp2, dst);
    return dst;
}

/* Bytes of one thread's bf16 packing scratch: the forward's B, or the
 * backward's dW A and B (dX's B fits in the same place). */
static size_t lp_pack_bytes(const conv_geom *g, bool backward) {
    const size_t w = sizeof(uint32_t);
    if (!backward) return (size_t)(g->lp_fw.kp2 * g->lp_fw.npad) * w;
    const size_t dw = (size_t)(g->lp_dw.mpad * g->lp_dw.kp2 + g->lp_dw.kp2 * g->lp_dw.npad) * w;
    const size_t dx = (size_t)(g->lp_dx.kp2 * g->lp_dx.npad) * w;
    return dw > dx ? dw : dx;
}

/* Plane x [H, W] into the interior of the padded plane xp. */
ZG_SIMD_CLONES
static void pad_plane(const conv_geom *g, const float *restrict x, float *restrict xp) {
    float *d = xp + g->ph * g->Wp + g->pw;
    for (int64_t h = 0; h < g->H; h++) copy_row(d + h * g->Wp, x + h * g->W, g->W);
}

/* The kh*kw cols rows of channel c (ld Pc) from its padded plane. */
static void im2col_wide(const conv_geom *g, const float *restrict xp, int64_t c, float *restrict dst) {
    for (int64_t i = 0; i < g->kh; i++)
        for (int64_t j = 0; j < g->kw; j++)
            memcpy(dst + ((c * g->kh + i) * g->kw + j) * g->Pc, xp + i * g->Wp + j, (size_t)g->Pc * sizeof(float));
}

/* The adjoint: channel c's dX plane [H, W] from its kh*kw rows of dcols
 * (ld Pc), summed in a padded plane dxp (PL floats) and cropped. The first
 * row is stored plus 0.0f: the general path's 0 + value, -0 included. */
ZG_SIMD_CLONES
static void col2im_wide(const conv_geom *g, const float *restrict src, int64_t c, float *restrict dxp,
                        float *restrict dx) {
    const int64_t Pc = g->Pc;
    const float *r0 = src + c * g->kh * g->kw * Pc;
    for (int64_t k = 0; k < Pc; k++) dxp[k] = r0[k] + 0.0f;
    for (int64_t k = Pc; k < g->PL; k++) dxp[k] = 0.0f;
    for (int64_t i = 0; i < g->kh; i++)
        for (int64_t j = i ? 0 : 1; j < g->kw; j++) {
            const float *r = r0 + (i * g->kw + j) * Pc;
            float *d = dxp + i * g->Wp + j;
            for (int64_t k = 0; k < Pc; k++) d[k] += r[k];
        }
    const float *s = dxp + g->ph * g->Wp + g->pw;
    for (int64_t h = 0; h < g->H; h++) copy_row(dx + h * g->W, s + h * g->Wp, g->W);
}

/* y [Cout, OH, OW] of one sample from the wide output [Cout, Pc], dropping
 * the garbage columns and adding the bias b (if not NULL). */
ZG_SIMD_CLONES
static void crop_wide(const conv_geom *g, const float *restrict wide, const float *restrict b, float *restrict y) {
    for (int64_t co = 0; co < g->Cout; co++) {
        const float *s = wide + co * g->Pc;
        float *d = y + co * g->P;
        if (b)
            for (int64_t oh = 0; oh < g->OH; oh++) add_row(d + oh * g->OW, s + oh * g->Wp, b[co], g->OW);
        else
            for (int64_t oh = 0; oh < g->OH; oh++) copy_row(d + oh * g->OW, s + oh * g->Wp, g->OW);
    }
}

/* The adjoint's input: dY [Cout, OH, OW] of one sample into the real
 * columns of the wide [Cout, Pc] (whose garbage columns stay zero). */
ZG_SIMD_CLONES
static void expand_wide(const conv_geom *g, const float *restrict gy, float *restrict wide) {
    for (int64_t co = 0; co < g->Cout; co++)
        for (int64_t oh = 0; oh < g->OH; oh++)
            copy_row(wide + co * g->Pc + oh * g->Wp, gy + co * g->P + oh * g->OW, g->OW);
}

/* Patches of one input plane x [H, W] (channel c) into the kh*kw rows of
 * channel c: row (c, i, j) starts at dst + ((c*kh + i)*kw + j) * ld. */
ZG_SIMD_CLONES
static void im2col_plane(const conv_geom *g, const float *restrict x, int64_t c, float *restrict dst, int64_t ld) {
    const int64_t OW = g->OW;
    for (int64_t i = 0; i < g->kh; i++) {
        for (int64_t j = 0; j < g->kw; j++) {
            float *row = dst + ((c * g->kh + i) * g->kw + j) * ld;
            const int64_t off = j * g->dw - g->pw;
            int64_t lo, hi;
            valid_cols(g, off, &lo, &hi);
            for (int64_t oh = 0; oh < g->OH; oh++) {
                float *d = row + oh * OW;
                const int64_t ih = oh * g->sh - g->ph + i * g->dh;
                if (ih < 0 || ih >= g->H) {
                    zero_row(d, OW);
                    continue;
                }
                const float *s = x + ih * g->W;
                zero_row(d, lo);
                if (g->sw == 1) {
                    copy_row(d + lo, s + lo + off, hi - lo);
                } else {
                    for (int64_t ow = lo; ow < hi; ow++) d[ow] = s[ow * g->sw + off];
                }
                zero_row(d + hi, OW - hi);
            }
        }
    }
}

/* The adjoint of im2col_plane: adds the kh*kw rows of channel c into the
 * plane dx [H, W] (which the caller zeroed). */
static void col2im_plane(const conv_geom *g, const float *restrict src, int64_t ld, int64_t c, float *restrict dx) {
    const int64_t OW = g->OW;
    for (int64_t i = 0; i < g->kh; i++) {
        for (int64_t j = 0; j < g->kw; j++) {
            const float *row = src + ((c * g->kh + i) * g->kw + j) * ld;
            const int64_t off = j * g->dw - g->pw;
            int64_t lo, hi;
            valid_cols(g, off, &lo, &hi);
            for (int64_t oh = 0; oh < g->OH; oh++) {
                const int64_t ih = oh * g->sh - g->ph + i * g->dh;
                if (ih < 0 || ih >= g->H) continue;
                const float *s = row + oh * OW;
                float *d = dx + ih * g->W;
                if (g->sw == 1) {
#pragma omp simd
                    for (int64_t ow = lo; ow < hi; ow++) d[ow + off] += s[ow];
                } else {
                    for (int64_t ow = lo; ow < hi; ow++) d[ow * g->sw + off] += s[ow];
                }
            }
        }
    }
}

/* ---- threads ------------------------------------------------------------ */

/* This thread's scratch slot (0 when the loop runs serially). */
static int slot(int n_slots) {
#ifdef _OPENMP
    int t = omp_get_thread_num();
    return t < n_slots ? t : 0;
#else
    (void)n_slots;
    return 0;
#endif
}

/* Makes OpenBLAS serial while our threads split the batch (its pthreads
 * build only; see the top). Returns what blas_serial_end restores. The
 * setting is process-wide: another thread's GEMMs meanwhile run serially
 * too, which changes their speed, not their results. */
static int blas_serial_begin(bool parallel) {
    if (!parallel || openblas_get_parallel() != 1) return 0;
    int n = openblas_get_num_threads();
    if (n > 1) openblas_set_num_threads(1);
    return n;
}

static void blas_serial_end(int n) {
    if (n > 1) openblas_set_num_threads(n);
}

/* Whether the loop over the batch is worth splitting across threads. */
static bool split_batch(const conv_geom *g) {
    return g->N >= 2 && zg__max_threads() > 1 && g->N * (g->Cout + g->Ct) * g->P >= PAR_MIN_ELEMS;
}

/* ---- scratch ------------------------------------------------------------ */

/* One thread's scratch: cols (and dcols in the backward), for the padded
 * layout the padded planes xp / dxp and the wide Y or expanded dY, then the
 * low-precision GEMMs' scratch and tmpw ([Cg, K], one sample's
 * low-precision dW). ready: whether the zeros of xp and the expanded dY
 * are already written. */
typedef struct {
    float *cols, *dcols, *wide, *xp, *dxp, *tmpw;
    void *lp;
    /* Fused pooling: one sample's conv output (or its gradient) and, with
     * relu, its pooled gradient masked by the relu. */
    float *ys, *gp;
    int *ready;
} conv_scratch;

static size_t up64(size_t b) { return (b + 63) / 64 * 64; }

/* Bytes of low-precision GEMM scratch per thread (0 for float32). */
static size_t lp_scratch_bytes(const conv_geom *g, zg_autocast_type t, bool backward) {
    if (t == ZG_AUTOCAST_OFF) return 0;
    if (g->own_lp) return up64(lp_pack_bytes(g, backward));
    size_t s = zg__lp_gemm_scratch(g->Cg, g->Pc, g->K);
    if (backward) {
        size_t w = zg__lp_gemm_scratch(g->Cg, g->K, g->Pc), x = zg__lp_gemm_scratch(g->K, g->Pc, g->Cg);
        s = w > x ? w : x;
        s += (size_t)(g->Cg * g->K) * sizeof(float); /* tmpw */
    }
    return up64(s);
}

/* Bytes of the parts of one slot (cols, dcols, wide, xp, dxp, lp, ys, gp),
 * each a 64-byte multiple; returns their sum. */
#define SLOT_PARTS 8
static size_t slot_parts(const conv_geom *g, zg_autocast_type t, bool backward, size_t part[SLOT_PARTS]) {
    const size_t f = sizeof(float);
    /* The own kernel reads no cols; its backward's part 0 holds dY^T. The
     * bf16 packing reads no cols in the padded-width layout either. */
    part[0] = g->own                  ? (backward ? up64((size_t)(g->Cout * g->Pc) * f) : 0)
              : g->own_lp && g->wide ? 0
                                     : up64((size_t)(g->Ct * g->Pc) * f);
    part[1] = backward ? up64((size_t)(g->Ct * g->Pc) * f) : 0;
    part[2] = g->wide ? up64((size_t)(g->Cout * g->Pc) * f) : 0;
    part[3] = g->wide ? up64((size_t)(g->C * g->PL) * f) : 0;
    part[4] = g->wide && backward ? up64((size_t)g->PL * f) : 0;
    part[5] = lp_scratch_bytes(g, t, backward);
    part[6] = g->fuse ? up64((size_t)(g->Cout * g->P) * f) : 0;
    part[7] = g->fuse == FUSE_POOL_RELU && backward ? up64((size_t)(g->Cout * g->PH * g->PW) * f) : 0;
    size_t total = 0;
    for (int i = 0; i < SLOT_PARTS; i++) total += part[i];
    return total;
}

/* Slot k of `mem` (slots of slot_parts' total bytes). */
static conv_scratch scratch_slot(const conv_geom *g, zg_autocast_type t, bool backward, char *mem, int k,
                                 int *ready) {
    size_t part[SLOT_PARTS];
    const size_t total = slot_parts(g, t, backward, part);
    float *p[SLOT_PARTS];
    char *m = mem + (size_t)k * total;
    for (int i = 0; i < SLOT_PARTS; i++) {
        p[i] = part[i] ? (float *)m : NULL;
        m += part[i];
    }
    /* tmpw: the end of the low-precision part (not with bf16 packing). */
    float *tmpw = p[5] && backward && !g->own_lp ? (float *)((char *)p[5] + part[5] - (size_t)(g->Cg * g->K) * sizeof(float)) : NULL;
    return (conv_scratch){.cols = p[0], .dcols = p[1], .wide = p[2], .xp = p[3], .dxp = p[4],
                          .lp = p[5], .tmpw = tmpw, .ys = p[6], .gp = p[7], .ready = ready + k};
}

/* The cols of sample n (ld Pc) into sc->cols, by either layout. */
static void im2col_sample(const conv_geom *g, const float *X, int64_t n, const conv_scratch *sc) {
    const int64_t C = g->C, HW = g->H * g->W;
    if (!g->wide) {
        for (int64_t c = 0; c < C; c++) im2col_plane(g, X + (n * C + c) * HW, c, sc->cols, g->P);
        return;
    }
    for (int64_t c = 0; c < C; c++) {
        float *xp = sc->xp + c * g->PL;
        pad_plane(g, X + (n * C + c) * HW, xp);
        if (!g->own && !g->own_lp) im2col_wide(g, xp, c, sc->cols);
    }
}

/* Zeros the padding of the padded planes and the garbage columns of the
 * expanded dY, the first time this slot is used in this call. */
static void scratch_ready(const conv_geom *g, const conv_scratch *sc, bool backward) {
    if (!g->wide || *sc->ready) return;
    memset(sc->xp, 0, (size_t)(g->C * g->PL) * sizeof(float));
    if (backward) memset(sc->wide, 0, (size_t)(g->Cout * g->Pc) * sizeof(float));
    *sc->ready = 1;
}

/* ---- pooled output --------------------------------------------------------
 * relu(max_pool2d(conv2d(x), 2)) as one op (zg__conv2d_pool2, which nn's
 * Sequential runs for Conv2d, MaxPool2d(2) and ReLU in a row): each
 * sample's conv output goes from the thread's scratch straight into the
 * pooling while it is in cache, and the backward rebuilds each sample's
 * dY there from the pooled gradient. The same kernels as the three ops in
 * turn, so the same values and gradients; what goes is the full-size conv
 * output and its gradient (6.4 MB each in the default CNN's first layer)
 * passing through memory, and two ops' passes. */

/* relu in place, as zg_relu (NaN and -0 kept). */
ZG_SIMD_CLONES
static void relu_in_place(float *restrict y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = y[i] < 0.0f ? 0.0f : y[i];
}

/* d = g where the relu's output y is > 0, else 0, as relu's backward. */
ZG_SIMD_CLONES
static void relu_mask(const float *restrict y, const float *restrict g, float *restrict d, int64_t n) {
    for (int64_t i = 0; i < n; i++) d[i] = y[i] <= 0.0f ? 0.0f : g[i];
}

/* Sample n's conv output ys [Cout, OH, OW] into Y [N, Cout, PH, PW]:
 * pooled (places into g->win), then relu'd as zg_relu does. */
static void pool_sample(const conv_geom *g, const float *ys, float *Y, int64_t n) {
    const int64_t PQ = g->PH * g->PW, m = g->Cout * PQ;
    float *yn = Y + n * m;
    for (int64_t co = 0; co < g->Cout; co++)
        zg__max_pool_2x2_plane(ys + co * g->P, g->OH, g->OW, yn + co * PQ, g->win ? g->win + n * m + co * PQ : NULL);
    if (g->fuse == FUSE_POOL_RELU) relu_in_place(yn, m);
}

/* Sample n's dY [Cout, OH, OW] into sc->ys from the pooled gradient G and
 * the op's output Out (relu: no gradient where the output is <= 0, as
 * relu's backward). */
static const float *unpool_sample(const conv_geom *g, const float *G, const float *Out, int64_t n,
                                  const conv_scratch *sc) {
    const int64_t PQ = g->PH * g->PW, m = g->Cout * PQ;
    const float *gn = G + n * m;
    if (g->fuse == FUSE_POOL_RELU) {
        relu_mask(Out + n * m, gn, sc->gp, m);
        gn = sc->gp;
    }
    for (int64_t co = 0; co < g->Cout; co++)
        zg__max_pool_2x2_plane_backward(gn + co * PQ, g->win + n * m + co * PQ, g->OH, g->OW, sc->ys + co * g->P);
    return sc->ys;
}

/* ---- forward ------------------------------------------------------------ */

static int forward_sample(const conv_geom *g, const gemm_ctx *gc, const float *X, const float *Wt, const float *b,
                          float *Y, const conv_scratch *sc, int64_t n) {
    const int64_t P = g->P, Pc = g->Pc;
    scratch_ready(g, sc, false);
    im2col_sample(g, X, n, sc);
    float *yn = g->fuse ? sc->ys : Y + n * g->Cout * P;
    const bool lp = gc->t != ZG_AUTOCAST_OFF;
    /* The general layout sums float32 into y prefilled with the bias; the
     * padded one adds the bias when it drops the garbage columns. */
    const bool fill = b && !lp && !g->wide;
    if (fill)
        for (int64_t co = 0; co < g->Cout; co++) {
            const float bv = b[co];
            float *yc = yn + co * P;
#pragma omp simd
            for (int64_t p = 0; p < P; p++) yc[p] = bv;
        }
    float *out = g->wide ? sc->wide : yn;
    if (g->own) zg__sgemm_offsets(g->Cout, Pc, g->Ct, gc->wpack, NULL, NULL, sc->xp, g->xoff, false, out, Pc);
    if (g->own_lp) {
        zg__bf16_pack_b_offsets(g->Ct, Pc, g->wide ? sc->xp : sc->cols, g->xoff, g->lp_fw.kp2, g->lp_fw.npad, sc->lp);
        zg__bf16_gemm_packed(g->Cout, Pc, g->Ct, g->lp_fw.kp2, gc->wpack, sc->lp, g->lp_fw.npad, false, out, Pc);
    }
    for (int64_t gi = 0; gi < g->G && !g->own && !g->own_lp; gi++) {
        int rc = gemm(gc, false, false, g->Cg, Pc, g->K, Wt + gi * g->Cg * g->K, g->K, sc->cols + gi * g->K * Pc, Pc,
                      fill ? 1.0f : 0.0f, out + gi * g->Cg * Pc, Pc);
        if (rc) return rc;
    }
    if (g->wide) crop_wide(g, sc->wide, lp ? NULL : b, yn);
    if (lp)
        /* The float32 sums + round_t(b), rounded once. */
        for (int64_t co = 0; co < g->Cout; co++) {
            float *yc = yn + co * P;
            if (b) {
                const float bv = gc->t == ZG_AUTOCAST_BF16 ? zg__round_bf16(b[co]) : zg__round_fp16(b[co]);
#pragma omp simd
                for (int64_t p = 0; p < P; p++) yc[p] += bv;
            }
            zg__round_lp_array(gc->t, yc, P);
        }
    if (g->fuse) pool_sample(g, sc->ys, Y, n);
    return ZG_OK;
}

/* ---- backward ----------------------------------------------------------- */

/* fp16: the sum of round_fp16(x[i]), in float32 as PyTorch's sum of an
 * fp16 gradient accumulates. */
static float sum_fp16(const float *restrict x, int64_t n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) s += zg__round_fp16(x[i]);
    return s;
}

/* pb[co] (+)= the sum of sample gradient g [Cout, P] over the positions of
 * channel co, of its type-t values under autocast (added when add). */
static void bias_grad_sample(zg_autocast_type t, const float *g, int64_t Cout, int64_t P, bool add, float *pb) {
    for (int64_t co = 0; co < Cout; co += 8) {
        const int R = Cout - co < 8 ? (int)(Cout - co) : 8;
        float s[8];
        if (t == ZG_AUTOCAST_FP16)
            for (int r = 0; r < R; r++) s[r] = sum_fp16(g + (co + r) * P, P);
        else
            zg__row_sums4(t == ZG_AUTOCAST_BF16, g + co * P, P, P, R, s);
        for (int r = 0; r < R; r++) pb[co + r] = add ? pb[co + r] + s[r] : s[r];
    }
}

/* bf16 packing: pw (dW^T [Ct, Cout]) = (acc ? pw : 0) + cols dY^T for the
 * sample whose padded planes (or cols) are in sc, gw its dY [Cout, Pc]. */
static void lp_dw_sample(const conv_geom *g, const conv_scratch *sc, const float *gw, bool acc, float *pw) {
    uint32_t *ap = sc->lp, *bp = ap + g->lp_dw.mpad * g->lp_dw.kp2;
    zg__bf16_pack_a_offsets(g->Ct, g->Pc, g->wide ? sc->xp : sc->cols, g->xoff, g->lp_dw.mpad, g->lp_dw.kp2, ap);
    zg__bf16_pack_b(true, true, g->Pc, g->Cout, gw, g->lp_dw.kp2, g->lp_dw.npad, bp);
    zg__bf16_gemm_packed(g->Ct, g->Cout, g->Pc, g->lp_dw.kp2, ap, bp, g->lp_dw.npad, acc, pw, g->Cout);
}

/* Samples [n0, n1): their partial dW and db (pw, pb; NULL when not
 * wanted) and their dX, with this thread's scratch. The partial dW holds
 * per group dW_g^T [K, Cg] in float32, dW_g [Cg, K] in low precision. */
static int backward_chunk(const conv_geom *g, const gemm_ctx *gc, const float *X, const float *G, const float *Out,
                          const float *Wt, float *dX, float *pw, float *pb, const conv_scratch *sc, int64_t n0,
                          int64_t n1) {
    const int64_t C = g->C, P = g->P, Pc = g->Pc, Cout = g->Cout, HW = g->H * g->W, wg = g->Cg * g->K;
    const bool lp = gc->t != ZG_AUTOCAST_OFF;
    int rc;
    scratch_ready(g, sc, true);
    for (int64_t n = n0; n < n1; n++) {
        const float *gn = g->fuse ? unpool_sample(g, G, Out, n, sc) : G + n * Cout * P;
        /* dY with ld Pc: as it is, or expanded to the padded width. */
        const float *gw = gn;
        if (g->wide) {
            expand_wide(g, gn, sc->wide);
            gw = sc->wide;
        }
        if (pw) {
            im2col_sample(g, X, n, sc);
            if (g->own) {
                zg__transpose_f32(Cout, Pc, sc->wide, Pc, sc->cols, Cout);
                zg__sgemm_offsets(g->Ct, Cout, P, sc->xp, g->xoff, g->kpos, sc->cols, g->toff, n > n0, pw, Cout);
            }
            if (g->own_lp) lp_dw_sample(g, sc, gw, n > n0, pw);
            for (int64_t gi = 0; gi < g->G && !g->own && !g->own_lp; gi++) {
                float *pwg = pw + gi * wg;
                /* float32 accumulates in place (beta), as dW^T = cols dY^T
                 * [K, Cg]: the same sums (of the same products, in position
                 * order), but OpenBLAS packs the big cols without the
                 * transposing copy dY cols^T needs (12% faster at the
                 * default CNN's shapes). The low-precision GEMM writes this
                 * sample's dW_g [Cg, K], added here. */
                if (!lp) {
                    rc = gemm(gc, false, true, g->K, g->Cg, Pc, sc->cols + gi * g->K * Pc, Pc, gw + gi * g->Cg * Pc, Pc,
                              n > n0 ? 1.0f : 0.0f, pwg, g->Cg);
                    if (rc) return rc;
                    continue;
                }
                float *dst = n > n0 ? sc->tmpw : pwg;
                rc = gemm(gc, false, true, g->Cg, g->K, Pc, gw + gi * g->Cg * Pc, Pc, sc->cols + gi * g->K * Pc, Pc,
                          0.0f, dst, g->K);
                if (rc) return rc;
                if (dst != pwg)
#pragma omp simd
                    for (int64_t i = 0; i < wg; i++) pwg[i] += sc->tmpw[i];
            }
        }
        if (pb) bias_grad_sample(gc->t, gn, Cout, P, n > n0, pb);
        if (dX) {
            if (g->own_lp) {
                uint32_t *bp = sc->lp;
                zg__bf16_pack_b(true, false, Cout, Pc, gw, g->lp_dx.kp2, g->lp_dx.npad, bp);
                zg__bf16_gemm_packed(g->Ct, Pc, Cout, g->lp_dx.kp2, gc->wpack, bp, g->lp_dx.npad, false, sc->dcols, Pc);
            }
            for (int64_t gi = 0; gi < g->G && !g->own_lp; gi++) {
                rc = gemm(gc, true, false, g->K, Pc, g->Cg, Wt + gi * g->Cg * g->K, g->K, gw + gi * g->Cg * Pc, Pc,
                          0.0f, sc->dcols + gi * g->K * Pc, Pc);
                if (rc) return rc;
            }
            float *dxn = dX + n * C * HW;
            if (g->wide) {
                for (int64_t c = 0; c < C; c++) col2im_wide(g, sc->dcols, c, sc->dxp, dxn + c * HW);
            } else {
                memset(dxn, 0, (size_t)(C * HW) * sizeof(float));
                for (int64_t c = 0; c < C; c++) col2im_plane(g, sc->dcols, P, c, dxn + c * HW);
            }
            if (lp) zg__round_lp_array(gc->t, dxn, C * HW);
        }
    }
    return ZG_OK;
}

/* The convolution's geometry (in the arena) and the autocast type its
 * forward ran in. */
typedef struct {
    const conv_geom *geom;
    zg_autocast_type t;
} conv_args;

/* dX, dW and db (each NULL when not wanted) of the convolution g from its
 * output's gradient G, its input X (read only for dW), its weight Wt (read
 * only for dX) and, with relu fused, its output. */
static int conv_grads(const conv_geom *g, zg_autocast_type t, const float *X, const float *G, const float *Out,
                      const float *Wt, float *dX, float *dW, float *db) {
    const int64_t nch = (g->N + CHUNK - 1) / CHUNK, wsz = g->Cout * g->K, psz = wsz + g->Cout;
    const int T = zg__max_threads();
    const bool par = split_batch(g) && nch >= 2;
    /* Scratch per thread; partial sums per chunk; a status per chunk. */
    const size_t slot_bytes = slot_parts(g, t, true, (size_t[SLOT_PARTS]){0});
    char *scratch = zg__arena_alloc((size_t)T * slot_bytes);
    int *ready = zg__arena_calloc((size_t)T * sizeof(int));
    float *partial = zg__arena_alloc((size_t)((nch ? nch : 1) * psz) * sizeof(float));
    int *status = zg__arena_calloc((size_t)(nch ? nch : 1) * sizeof(int));
    /* float32 and the bf16 packing sum dW^T, transposed at the end. */
    const bool transposed = t == ZG_AUTOCAST_OFF || g->own_lp;
    float *sumw = dW && transposed ? zg__arena_alloc((size_t)wsz * sizeof(float)) : dW;
    const uint32_t *wtpack = g->own_lp && dX ? lp_pack_w(g, Wt, true) : NULL;
    if (!scratch || !ready || !partial || !status || (dW && !sumw) || (g->own_lp && dX && !wtpack))
        return ZG_ERR_NOMEM;
    const int saved = blas_serial_begin(par);
    ZG_PARALLEL_FOR(ch, nch, par ? 0 : INT64_MAX, {
        const conv_scratch sc = scratch_slot(g, t, true, scratch, slot(T), ready);
        /* Serial GEMMs inside our threads; on the calling thread alone
         * they may thread and use the arena themselves. */
        const gemm_ctx gc = {t, ZG__GEMM_WHOLE | ZG__LP_NO_ROUND | (par ? ZG__LP_SERIAL : 0u), sc.lp, wtpack};
        float *pw = partial + ch * psz;
        const int64_t n0 = ch * CHUNK, n1 = n0 + CHUNK < g->N ? n0 + CHUNK : g->N;
        status[ch] = backward_chunk(g, &gc, X, G, Out, Wt, dX, dW ? pw : NULL, db ? pw + wsz : NULL, &sc, n0, n1);
    });
    blas_serial_end(saved);
    for (int64_t ch = 0; ch < nch; ch++)
        if (status[ch]) return status[ch];
    /* The chunk partials in chunk order (zero for an empty batch); float32
     * sums them transposed, then transposes per group. */
    if (dW) {
        float *acc = transposed ? sumw : dW;
        memset(acc, 0, (size_t)wsz * sizeof(float));
        for (int64_t ch = 0; ch < nch; ch++) {
            const float *pw = partial + ch * psz;
#pragma omp simd
            for (int64_t i = 0; i < wsz; i++) acc[i] += pw[i];
        }
        if (acc != dW)
            for (int64_t gi = 0; gi < g->G; gi++)
                for (int64_t k = 0; k < g->K; k++)
                    for (int64_t co = 0; co < g->Cg; co++)
                        dW[(gi * g->Cg + co) * g->K + k] = acc[(gi * g->K + k) * g->Cg + co];
    }
    if (db) {
        memset(db, 0, (size_t)g->Cout * sizeof(float));
        for (int64_t ch = 0; ch < nch; ch++) {
            const float *pb = partial + ch * psz + wsz;
#pragma omp simd
            for (int64_t co = 0; co < g->Cout; co++) db[co] += pb[co];
        }
    }
    if (t != ZG_AUTOCAST_OFF) {
        if (dW) zg__round_lp_array(t, dW, wsz);
        if (db) zg__round_lp_array(t, db, g->Cout);
    }
    return ZG_OK;
}

/* saved: x, weight (and with relu fused, the output). */
static int conv2d_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    const conv_geom *g = ZG_NODE_ARGS(n, conv_args)->geom;
    const zg_autocast_type t = ZG_NODE_ARGS(n, conv_args)->t;
    const zg_tensor *x = n->saved[0], *w = n->saved[1];
    zg_tensor *gx = NULL, *gw = NULL, *gb = NULL;
    if (zg__node_needs(n, 0) && !(gx = zg__empty_like(n->in[0]))) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 1) && !(gw = zg__empty_like(n->in[1]))) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 2) && !(gb = zg__empty_like(n->in[2]))) return ZG_ERR_NOMEM;
    const float *Out = g->fuse == FUSE_POOL_RELU ? zg__f32(n->saved[2]) : NULL;
    int rc = conv_grads(g, t, zg__f32(x), zg__f32(gout), Out, zg__f32(w), gx ? zg__f32(gx) : NULL,
                        gw ? zg__f32(gw) : NULL, gb ? zg__f32(gb) : NULL);
    if (rc) return rc;
    gin[0] = gx;
    gin[1] = gw;
    gin[2] = gb;
    return ZG_OK;
}

/* ---- higher-order gradients ----------------------------------------------- */

/* The convolution's gradients are bilinear: dX = A(G, W) (the transposed
 * convolution of G by W) and dW = B(X, G) (the correlation of X with G),
 * each linear in both operands. So each is an op of its own whose
 * gradients are again convolutions of the same geometry:
 *   A(G, W) with upstream U (X's shape): dG = conv(U, W), dW = B(U, G);
 *   B(X, G) with upstream U (W's shape): dX = A(G, U),    dG = conv(X, U);
 * and db = sum of G over N, OH, OW. Written with these ops (conv2d and the
 * two below) the gradients of any order stay in the graph. */
static zg_tensor *conv2d(zg_tensor *x, zg_tensor *w, zg_tensor *b, const int stride[2], const int padding[2],
                         const int dilation[2], int groups, int fuse);
static zg_tensor *conv_input_grad(zg_tensor *gy, zg_tensor *w, const conv_geom *g);
static zg_tensor *conv_weight_grad(zg_tensor *x, zg_tensor *gy, const conv_geom *g);

/* conv2d with g's stride, padding, dilation and groups, no bias. */
static zg_tensor *conv_like(zg_tensor *x, zg_tensor *w, const conv_geom *g) {
    return conv2d(x, w, NULL, (int[]){(int)g->sh, (int)g->sw}, (int[]){(int)g->ph, (int)g->pw},
                  (int[]){(int)g->dh, (int)g->dw}, (int)g->G, FUSE_NONE);
}

static int conv_input_grad_backward(zg__node *n, zg_tensor *u, zg_tensor **gin) {
    const conv_geom *g = *ZG_NODE_ARGS(n, const conv_geom *);
    if (zg__node_needs(n, 0) && !(gin[0] = conv_like(u, n->saved[1], g))) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 1) && !(gin[1] = conv_weight_grad(u, n->saved[0], g))) return ZG_ERR_NOMEM;
    return ZG_OK;
}

static int conv_weight_grad_backward(zg__node *n, zg_tensor *u, zg_tensor **gin) {
    const conv_geom *g = *ZG_NODE_ARGS(n, const conv_geom *);
    if (zg__node_needs(n, 0) && !(gin[0] = conv_input_grad(n->saved[1], u, g))) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 1) && !(gin[1] = conv_like(n->saved[0], u, g))) return ZG_ERR_NOMEM;
    return ZG_OK;
}

/* Records one of the two gradient ops over (a, b); both are linear in each
 * operand, so their backward is written with ops and serves both passes. */
static zg_tensor *record_grad_op(const char *name, zg__backward_fn bw, zg_tensor *out, zg_tensor *a, zg_tensor *b,
                                 const conv_geom *g) {
    zg__node *n = ZG_RECORD(const conv_geom *, name, bw, out, (zg_tensor *[]){a, b}, 2);
    zg__node_set_double_backward(n, bw);
    if (n) {
        zg__save(n, a);
        zg__save(n, b);
        *ZG_NODE_ARGS(n, const conv_geom *) = g;
    }
    return out;
}

/* dX [N, C, H, W] of the convolution g from gy [N, Cout, OH, OW], w. */
static zg_tensor *conv_input_grad(zg_tensor *gy, zg_tensor *w, const conv_geom *g) {
    zg_tensor *dx = gy && w ? zg__empty(ZG_FLOAT32, (int64_t[]){g->N, g->C, g->H, g->W}, 4) : NULL;
    if (!dx || conv_grads(g, ZG_AUTOCAST_OFF, NULL, zg__f32(gy), NULL, zg__f32(w), zg__f32(dx), NULL, NULL))
        return NULL;
    return record_grad_op("conv2d_input_backward", conv_input_grad_backward, dx, gy, w, g);
}

/* dW [Cout, C/G, kh, kw] of the convolution g from x and gy. */
static zg_tensor *conv_weight_grad(zg_tensor *x, zg_tensor *gy, const conv_geom *g) {
    zg_tensor *dw = x && gy ? zg__empty(ZG_FLOAT32, (int64_t[]){g->Cout, g->C / g->G, g->kh, g->kw}, 4) : NULL;
    if (!dw || conv_grads(g, ZG_AUTOCAST_OFF, zg__f32(x), zg__f32(gy), NULL, NULL, NULL, zg__f32(dw), NULL))
        return NULL;
    return record_grad_op("conv2d_weight_backward", conv_weight_grad_backward, dw, x, gy, g);
}

/* conv2d's gradients with the ops above, for the convolution g (unfused)
 * of node n from its output's gradient gy. */
static int conv_backward_ops(zg__node *n, const conv_geom *g, zg_tensor *gy, zg_tensor **gin) {
    const conv_args *a = ZG_NODE_ARGS(n, conv_args);
    if (a->t != ZG_AUTOCAST_OFF)
        return zg__fail(ZG_ERR_STATE,
                        "zg_autograd_grad_opts: create_graph through '%s' is not supported: a convolution recorded "
                        "under autocast has no differentiable backward; compute the part to differentiate twice "
                        "outside the autocast region",
                        n->name);
    if (zg__node_needs(n, 0) && !(gin[0] = conv_input_grad(gy, n->saved[1], g))) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 1) && !(gin[1] = conv_weight_grad(n->saved[0], gy, g))) return ZG_ERR_NOMEM;
    if (zg__node_needs(n, 2) && !(gin[2] = zg_sum_dim(zg_sum_dim(zg_sum_dim(gy, 3, false), 2, false), 0, false)))
        return ZG_ERR_NOMEM;
    return ZG_OK;
}

static int conv2d_backward_diff(zg__node *n, zg_tensor *gy, zg_tensor **gin) {
    return conv_backward_ops(n, ZG_NODE_ARGS(n, conv_args)->geom, gy, gin);
}

/* The fused pooling as a linear map of the conv output with its winners
 * fixed, over the N * Cout planes: A gathers each window's winner, A^T
 * puts each pooled gradient back at its winner. */
static void unpool_t(const void *ctx, const float *G, float *dY) {
    const conv_geom *g = ctx;
    const int64_t PQ = g->PH * g->PW;
    for (int64_t u = 0; u < g->N * g->Cout; u++)
        zg__max_pool_2x2_plane_backward(G + u * PQ, g->win + u * PQ, g->OH, g->OW, dY + u * g->P);
}

static void unpool_gather(const void *ctx, const float *Y, float *Pooled) {
    const conv_geom *g = ctx;
    const int64_t PQ = g->PH * g->PW;
    for (int64_t u = 0; u < g->N * g->Cout; u++)
        for (int64_t o = 0; o < PQ; o++) {
            const int64_t w = g->win[u * PQ + o], ph = o / g->PW, pw = o % g->PW; /* places 0 1 / 2 3 */
            Pooled[u * PQ + o] = Y[u * g->P + (2 * ph + w / 2) * g->OW + 2 * pw + w % 2];
        }
}

/* The fused op's gradients with ops: relu's mask (the saved output > 0, a
 * constant), the unpooling (a linear map), then conv2d's. */
static int conv_pool_backward_diff(zg__node *n, zg_tensor *gp, zg_tensor **gin) {
    const conv_geom *g = ZG_NODE_ARGS(n, conv_args)->geom;
    conv_geom *u = zg__arena_alloc(sizeof *u);
    if (!u) return ZG_ERR_NOMEM;
    *u = *g;
    u->fuse = FUSE_NONE;
    u->win = NULL;
    if (g->fuse == FUSE_POOL_RELU) {
        zg_tensor *out = n->saved[2], *mask = zg__empty_like(out);
        if (!mask) return ZG_ERR_NOMEM;
        for (int64_t i = 0; i < out->numel; i++) zg__f32(mask)[i] = zg__f32(out)[i] > 0.0f ? 1.0f : 0.0f;
        if (!(gp = zg_mul(gp, mask))) return ZG_ERR_NOMEM;
    }
    const zg__linmap spec = {.name = "max_pool2d", .name_t = "max_pool2d_backward", .apply = unpool_gather,
                             .apply_t = unpool_t, .ctx = g};
    zg_tensor *gy = zg__linmap_t(&spec, (int64_t[]){g->N, g->Cout, g->OH, g->OW}, 4, gp);
    return gy ? conv_backward_ops(n, u, gy, gin) : ZG_ERR_NOMEM;
}

/* ---- entry point -------------------------------------------------------- */

/* zg_conv2d, or with fuse != FUSE_NONE zg__conv2d_pool2. */
static zg_tensor *conv2d(zg_tensor *x, zg_tensor *w, zg_tensor *b, const int stride[2], const int padding[2],
                         const int dilation[2], int groups, int fuse) {
    const char *fn = "zg_conv2d";
    if (zg__check_f32(fn, x, "x") || zg__check_f32(fn, w, "weight")) return NULL;
    if (b && zg__check_f32(fn, b, "bias")) return NULL;
    /* NULL pairs take PyTorch's defaults: stride 1, padding 0, dilation 1. */
    const int s[2] = {stride ? stride[0] : 1, stride ? stride[1] : 1};
    const int p[2] = {padding ? padding[0] : 0, padding ? padding[1] : 0};
    const int d[2] = {dilation ? dilation[0] : 1, dilation ? dilation[1] : 1};
    char sx[ZG_SHAPE_BUF], sw[ZG_SHAPE_BUF], sb[ZG_SHAPE_BUF];
    zg__shape_str(x, sx, sizeof sx);
    zg__shape_str(w, sw, sizeof sw);
    if (x->ndim != 4) return zg__fail_null("%s: x of shape %s must be 4-D [N,C,H,W]", fn, sx);
    if (w->ndim != 4) return zg__fail_null("%s: weight of shape %s must be 4-D [Cout,Cin/groups,kH,kW]", fn, sw);
    if (s[0] <= 0 || s[1] <= 0) return zg__fail_null("%s: stride {%d,%d} must be positive", fn, s[0], s[1]);
    if (p[0] < 0 || p[1] < 0) return zg__fail_null("%s: padding {%d,%d} must be non-negative", fn, p[0], p[1]);
    if (d[0] <= 0 || d[1] <= 0) return zg__fail_null("%s: dilation {%d,%d} must be positive", fn, d[0], d[1]);
    if (groups <= 0) return zg__fail_null("%s: groups %d must be positive", fn, groups);
    const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t Cout = w->shape[0], kh = w->shape[2], kw = w->shape[3];
    if (Cout == 0 || w->shape[1] == 0 || kh == 0 || kw == 0)
        return zg__fail_null("%s: weight of shape %s must not be empty", fn, sw);
    /* (Equal channels imply input channels divisible by groups.) */
    if (w->shape[1] * groups != C)
        return zg__fail_null("%s: weight of shape %s with groups %d expects %lld input channels, "
                             "x of shape %s has %lld",
                             fn, sw, groups, (long long)(w->shape[1] * groups), sx, (long long)C);
    if (Cout % groups)
        return zg__fail_null("%s: output channels %lld (weight of shape %s) are not divisible by groups %d", fn,
                             (long long)Cout, sw, groups);
    if (b && (b->ndim != 1 || b->shape[0] != Cout))
        return zg__fail_null("%s: bias of shape %s must be [%lld] (output channels of weight %s)", fn,
                             zg__shape_str(b, sb, sizeof sb), (long long)Cout, sw);
    const int64_t ekh = (int64_t)d[0] * (kh - 1) + 1, ekw = (int64_t)d[1] * (kw - 1) + 1;
    const int64_t OH = H + 2 * (int64_t)p[0] >= ekh ? (H + 2 * (int64_t)p[0] - ekh) / s[0] + 1 : 0;
    const int64_t OW = W + 2 * (int64_t)p[1] >= ekw ? (W + 2 * (int64_t)p[1] - ekw) / s[1] + 1 : 0;
    if (OH <= 0 || OW <= 0)
        return zg__fail_null("%s: x of shape %s with padding {%d,%d} is smaller than the dilated kernel %lldx%lld "
                             "(output size %lldx%lld)",
                             fn, sx, p[0], p[1], (long long)ekh, (long long)ekw, (long long)OH, (long long)OW);

    conv_geom *g = zg__arena_calloc(sizeof *g);
    if (!g) return NULL;
    *g = (conv_geom){.N = N, .C = C, .H = H, .W = W, .Cout = Cout, .kh = kh, .kw = kw, .G = groups,
                     .OH = OH, .OW = OW, .sh = s[0], .sw = s[1], .ph = p[0], .pw = p[1], .dh = d[0], .dw = d[1]};
    g->K = C / groups * kh * kw;
    g->Ct = C * kh * kw;
    g->Cg = Cout / groups;
    g->P = OH * OW;
    g->wide = use_wide(g);
    g->Wp = g->wide ? wide_width(g) : OW;
    g->Pc = g->wide ? OH * g->Wp : g->P;
    /* The last cols row reads kw - 1 floats past the padded plane. */
    g->PL = g->wide ? (H + 2 * (int64_t)p[0]) * g->Wp + kw - 1 : 0;
    if (g->Ct > INT_MAX || g->Pc > INT_MAX || Cout > INT_MAX)
        return zg__fail_null("%s: x of shape %s and weight of shape %s are too large for BLAS", fn, sx, sw);
    const zg_autocast_type t = zg_autocast_get();
    g->own = use_own(g, t);
    g->own_lp = use_own_lp(g, t);
    if (g->own_lp) {
        g->lp_fw = lp_dims_of(Cout, g->Pc, g->Ct);
        g->lp_dw = lp_dims_of(g->Ct, Cout, g->Pc);
        g->lp_dx = lp_dims_of(g->Ct, g->Pc, Cout);
    }
    if ((g->own || g->own_lp) && !own_offsets(g)) return NULL;
    if (fuse) {
        /* Under autocast the conv output is rounded to the type before it
         * is pooled (forward_sample), as the unfused ops see it. */
        if (OH < 2 || OW < 2 || !zg__max_pool_2x2_fits(OW)) return NULL;
        g->fuse = fuse;
        g->PH = OH / 2;
        g->PW = OW / 2;
        if (zg_grad_enabled() && (x->requires_grad || w->requires_grad || (b && b->requires_grad)) &&
            !(g->win = zg__arena_alloc((size_t)(N * Cout * g->PH * g->PW) + 1)))
            return NULL;
    }
    int64_t oshape[4] = {N, Cout, fuse ? g->PH : OH, fuse ? g->PW : OW};
    zg_tensor *y = zg__empty(ZG_FLOAT32, oshape, 4);
    const int T = zg__max_threads();
    const bool par = split_batch(g);
    const size_t slot_bytes = slot_parts(g, t, false, (size_t[SLOT_PARTS]){0});
    char *scratch = zg__arena_alloc((size_t)T * slot_bytes);
    int *ready = zg__arena_calloc((size_t)T * sizeof(int));
    int *status = zg__arena_calloc((size_t)(N ? N : 1) * sizeof(int));
    if (!y || !scratch || !ready || !status) return NULL;
    const float *X = zg__f32(x), *Wt = zg__f32(w), *bd = b ? zg__f32(b) : NULL;
    const void *wpack = g->own ? (const void *)own_pack(g, Wt) : g->own_lp ? (const void *)lp_pack_w(g, Wt, false) : NULL;
    if ((g->own || g->own_lp) && !wpack) return NULL;
    float *Y = zg__f32(y);
    const int saved = blas_serial_begin(par);
    ZG_PARALLEL_FOR(i, N, par ? 0 : INT64_MAX, {
        const conv_scratch sc = scratch_slot(g, t, false, scratch, slot(T), ready);
        const gemm_ctx gc = {t, ZG__GEMM_WHOLE | ZG__LP_NO_ROUND | (par ? ZG__LP_SERIAL : 0u), sc.lp, wpack};
        status[i] = forward_sample(g, &gc, X, Wt, bd, Y, &sc, i);
    });
    blas_serial_end(saved);
    for (int64_t i = 0; i < N; i++)
        if (status[i]) return NULL;

    const char *name = zg__autocast_node_name(fuse == FUSE_POOL_RELU ? "conv2d_max_pool2d_relu"
                                              : fuse == FUSE_POOL    ? "conv2d_max_pool2d"
                                                                     : "conv2d",
                                              t);
    zg__node *n = ZG_RECORD(conv_args, name, conv2d_backward, y, (zg_tensor *[]){x, w, b}, 3);
    zg__node_set_double_backward(n, fuse ? conv_pool_backward_diff : conv2d_backward_diff);
    if (n) {
        /* The backward recomputes the cols from x and multiplies by w. */
        zg__save(n, x);
        zg__save(n, w);
        if (fuse == FUSE_POOL_RELU) zg__save(n, y);
        *ZG_NODE_ARGS(n, conv_args) = (conv_args){g, t};
    }
    return y;
}

zg_tensor *zg_conv2d(zg_tensor *x, zg_tensor *w, zg_tensor *b, const int stride[2], const int padding[2],
                     const int dilation[2], int groups) {
    return conv2d(x, w, b, stride, padding, dilation, groups, FUSE_NONE);
}

zg_tensor *zg__conv2d_pool2(zg_tensor *x, zg_tensor *w, zg_tensor *b, const int stride[2], const int padding[2],
                            const int dilation[2], int groups, bool relu) {
    return conv2d(x, w, b, stride, padding, dilation, groups, relu ? FUSE_POOL_RELU : FUSE_POOL);
}
