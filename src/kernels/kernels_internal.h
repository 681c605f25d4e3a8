/* The kernels layer: the GEMM dispatcher every matrix product of the ops
 * goes through (zg__gemm, gemm.c), and the low-precision (bf16 / fp16)
 * conversions and GEMM kernels behind it. Not installed.
 *
 * zgrad stores 16-bit values as float32 that hold exactly a bf16 / fp16
 * value; these helpers round to them. The GEMM takes float32 operands,
 * rounds them to the 16-bit type, multiplies with float32 accumulation and
 * rounds the result once (the bias is added before that rounding), which is
 * how PyTorch's CPU bf16 linear (oneDNN) computes. */
#ifndef ZG_KERNELS_INTERNAL_H
#define ZG_KERNELS_INTERNAL_H

#include "../tensor/tensor_internal.h"

#include <string.h>

static inline uint32_t zg__f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}
static inline float zg__bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Round to nearest even on the upper 16 bits; every NaN becomes 0x7fc0 (as
 * c10::BFloat16's scalar conversion). Carries overflow into +-inf. */
static inline uint16_t zg__bf16_from_f32(float x) {
    uint32_t u = zg__f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static inline float zg__f32_from_bf16(uint16_t h) { return zg__bits_f32((uint32_t)h << 16); }
static inline float zg__round_bf16(float x) { return zg__f32_from_bf16(zg__bf16_from_f32(x)); }

uint16_t zg__fp16_from_f32(float x);
float zg__f32_from_fp16(uint16_t h);
/* x rounded to fp16 and back, branch-free so that loops vectorise: the
 * normal range rounds the float32 bit pattern to 10 mantissa bits; below
 * 2^-14, (|x| + 0.5) - 0.5 rounds |x| to a multiple of 2^-24 (the spacing
 * of floats in [0.5, 1)), i.e. to the fp16 subnormal grid, to nearest even.
 * Same results as zg__f32_from_fp16(zg__fp16_from_f32(x)). */
static inline float zg__round_fp16(float x) {
    uint32_t u = zg__f32_bits(x), a = u & 0x7fffffffu, sign = u & 0x80000000u;
    uint32_t normal = (a + 0xfffu + ((a >> 13) & 1u)) & 0xffffe000u;
    uint32_t sub = zg__f32_bits((zg__bits_f32(a) + 0.5f) - 0.5f);
    /* Selections by masks, not branches: the vectoriser keeps the float
     * add unconditional only in this form. */
    uint32_t is_normal = 0u - (uint32_t)(a >= 0x38800000u), is_inf = 0u - (uint32_t)(a >= 0x477ff000u);
    uint32_t is_nan = 0u - (uint32_t)(a > 0x7f800000u);
    uint32_t r = (normal & is_normal) | (sub & ~is_normal);
    r = (0x7f800000u & is_inf) | (r & ~is_inf);
    r = (0x7fc00000u & is_nan) | (r & ~is_nan);
    return zg__bits_f32(r | sign);
}

/* Rounds n floats in place to the type (t != ZG_AUTOCAST_OFF). */
void zg__round_lp_array(zg_autocast_type t, float *x, int64_t n);
/* dst[i] = round_t(src[i]). */
void zg__round_lp_copy(zg_autocast_type t, float *dst, const float *src, int64_t n);

/* C[M,N] = round_t(op(A) op(B) + bias), every operand rounded to t first:
 * op(A) = A^T when ta (A stored [K,M]), op(B) = B^T when tb (B stored
 * [N,K]); row-major, contiguous; bias [N] added to every row, or NULL.
 * Scratch comes from the calling thread's arena. ZG_OK, or ZG_ERR_NOMEM
 * with the error set. */
int zg__lp_gemm(zg_autocast_type t, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A,
                const float *B, const float *bias, float *C);

/* Flags of zg__lp_gemm_ex. NO_ROUND: C keeps the float32 sums (+ the
 * rounded bias), for callers that add several products before the one
 * rounding (a convolution's dW and dX). SERIAL: no OpenMP threads and no
 * arena allocation, the scratch comes from the caller (for calls inside
 * the caller's own parallel loop, whose worker threads have no arena). */
#define ZG__LP_NO_ROUND 1u
#define ZG__LP_SERIAL 2u
/* For zg__sgemm (and so float32 zg__gemm, and the portable kernel): one
 * sgemm for all of C, never split into blocks. */
#define ZG__GEMM_WHOLE 4u
/* Bytes of scratch zg__lp_gemm_ex needs for these sizes (any kernel). */
size_t zg__lp_gemm_scratch(int64_t M, int64_t N, int64_t K);
/* zg__lp_gemm with flags; scratch (64-byte aligned, zg__lp_gemm_scratch
 * bytes) is required with ZG__LP_SERIAL, else NULL (arena). */
int zg__lp_gemm_ex(zg_autocast_type t, unsigned flags, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                   const float *A, const float *B, const float *bias, float *C, void *scratch);

/* out[j] = round_t(sum over r of round_t(G[r][j])), G [rows, cols], the sum
 * taken in double (the bias gradient of an autocast linear). ZG_OK or
 * ZG_ERR_NOMEM. */
int zg__lp_column_sums(zg_autocast_type t, const float *G, int64_t rows, int64_t cols, float *out);

/* C[M,N] = op(A) op(B), row-major with leading dimensions lda, ldb, ldc;
 * op(A) = A^T when ta (A stored [K,M]), op(B) = B^T when tb (B stored
 * [N,K]). t is the autocast type the product runs in: the forward of an op
 * passes zg_autocast_get(), its node keeps that type, and the backward
 * passes the kept type, so a backward outside the region still computes
 * as its forward did.
 * t == ZG_AUTOCAST_OFF: zg__sgemm with flags, C = op(A) op(B) + beta C; a
 *   bias [N] is first copied into every row of C and beta taken as 1.
 *   scratch is unused.
 * bf16 / fp16: zg__lp_gemm_ex with flags and scratch: operands rounded to
 *   t, float32 accumulation, + round_t(bias), one rounding of C (unless
 *   ZG__LP_NO_ROUND). Needs beta == 0 and contiguous operands (lda, ldb,
 *   ldc the natural ones).
 * ZG_OK, or an error code with the error set. */
int zg__gemm(zg_autocast_type t, unsigned flags, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A,
             int64_t lda, const float *B, int64_t ldb, const float *bias, float beta, float *C, int64_t ldc,
             void *scratch);
/* Its float32 product, C = op(A) op(B) + beta C (M, N, K > 0), in blocks
 * fixed by the shape so the bits do not depend on the thread count. flags:
 * ZG__LP_SERIAL starts no OpenMP threads (for calls inside the caller's own
 * parallel loop); ZG__GEMM_WHOLE makes one single-threaded sgemm of all of
 * C (for callers that give each product a thread of its own, whatever the
 * thread count). */
int zg__sgemm(unsigned flags, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
              const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* out[r] = the sum of x[r*ld + i] over i < n for r < rows (bf16: of their
 * bf16 roundings), each in the order of a 4-lane SIMD reduction: the sums
 * of lanes j = i % 4 over the whole blocks of 4, the n % 4 last elements
 * added to lane 0, then 0 + l0 + l1 + l2 + l3 (row_sums.c). */
void zg__row_sums4(bool bf16, const float *x, int64_t ld, int64_t n, int64_t rows, float *out);

/* ---- float32 GEMM on offset-addressed operands (sgemm_offsets.c) ------- */

/* C[m][n] = (acc_c ? C[m][n] : 0) + sum over k in order of A(m,k) B(k,n),
 * each element one fused multiply-add chain from 0 (OpenBLAS's sums where K
 * fits its block: the same bits). B(k,n) = B[boff[k] + n]; A(m,k) =
 * A[aoff[m] + kidx[k]] (kidx NULL: + k), or with aoff NULL A packed by
 * zg__sgemm_pack_a. C row stride ldc. Single-threaded, no allocation; call
 * only where zg__sgemm_offsets_available() (AVX-512F, checked at run time). */
bool zg__sgemm_offsets_available(void);
void zg__sgemm_offsets(int64_t M, int64_t N, int64_t K, const float *A, const int32_t *aoff, const int32_t *kidx,
                       const float *B, const int32_t *boff, bool acc_c, float *C, int64_t ldc);
/* Packs A(m,k) = src[m*rs + k*ks] (M x K) for zg__sgemm_offsets into dst
 * of zg__sgemm_packed_floats(M, K) floats. */
int64_t zg__sgemm_packed_floats(int64_t M, int64_t K);
/* dst[j*ldd + i] = src[i*lds + j] for a rows x cols block (16 x 16 blocks
 * in AVX-512 registers; the same guard as zg__sgemm_offsets). */
void zg__transpose_f32(int64_t rows, int64_t cols, const float *src, int64_t lds, float *dst, int64_t ldd);
void zg__sgemm_pack_a(int64_t M, int64_t K, const float *src, int64_t rs, int64_t ks, float *dst);

/* ---- bf16 kernels (bf16_gemm.c dispatches between them) ---------------- */

/* C = round_bf16(op(A) op(B) + bias) with bf16-rounded operands, as
 * zg__lp_gemm_ex (flags and scratch as there; the scratch holds the packed
 * operands); bias [N] must already hold bf16 values (or be NULL). */
int zg__bf16_gemm_avx512(unsigned flags, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A,
                         const float *B, const float *bias, float *C, void *scratch);
int zg__bf16_gemm_amx(unsigned flags, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A,
                      const float *B, const float *bias, float *C, void *scratch);
/* Packed-operand sizes (32-bit words) of the two kernels. */
void zg__bf16_amx_sizes(int64_t M, int64_t N, int64_t K, int64_t *a_words, int64_t *b_words);
void zg__bf16_avx512_sizes(int64_t M, int64_t N, int64_t K, int64_t *a_words, int64_t *b_words);
/* Whether the CPU (and, for AMX, the OS) supports the kernel; AMX asks the
 * kernel for the tile-data permission on the first call. */
bool zg__cpu_has_avx512bf16(void);
bool zg__cpu_has_amx_bf16(void);

/* Packed bf16 operands of the instruction kernels, as 32-bit words holding
 * a pair of bf16 values consecutive in k (the even k in the low half, as
 * the dot-product instructions pair them):
 *  Ap [Mpad][Kp2]: word p of row m = (opA(m,2p), opA(m,2p+1));
 *  Bp [Kp2][Npad]: word n of pair-row p = (opB(2p,n), opB(2p+1,n)).
 * Kp2 and Npad are multiples of 16 (Kp2 >= K/2, Npad >= N), Mpad >= M
 * rounded up to 16. Entries beyond M, N or K are zero (they add exact
 * zeros). AVX-512 F/BW/DQ code: call only where the CPU has it. serial:
 * no OpenMP threads. */
void zg__bf16_pack_a(bool serial, bool ta, int64_t M, int64_t K, const float *A, int64_t Mpad, int64_t Kp2,
                     uint32_t *Ap);
void zg__bf16_pack_b(bool serial, bool tb, int64_t K, int64_t N, const float *B, int64_t Kp2, int64_t Npad,
                     uint32_t *Bp);
/* The same layouts with rows addressed through offset tables (serial):
 * Ap row m = the K floats at A + aoff[m] (m < M); Bp pair-row p = the N
 * floats at B + boff[2p] and B + boff[2p+1] (k < K). A convolution packs
 * its cols this way straight from the padded input planes. */
void zg__bf16_pack_a_offsets(int64_t M, int64_t K, const float *A, const int32_t *aoff, int64_t Mpad, int64_t Kp2,
                             uint32_t *Ap);
void zg__bf16_pack_b_offsets(int64_t K, int64_t N, const float *B, const int32_t *boff, int64_t Kp2, int64_t Npad,
                             uint32_t *Bp);
/* The AVX512-BF16 kernel's padded sizes for an M x N x K product (Kp2 and
 * Npad as above, Mpad a multiple of 6 and of 16 rows at least M). */
void zg__bf16_avx512_dims(int64_t M, int64_t N, int64_t K, int64_t *Kp2, int64_t *Mpad, int64_t *Npad);
/* C[M,N] (row stride ldc) = (acc ? C : 0) + Ap Bp over operands already
 * packed for an M x N x K product (Kp2 the packed stride, the sizes of
 * zg__bf16_avx512_dims): the float32 sums, no bias, no rounding; serial,
 * no allocation. Runs the chosen instruction kernel (AMX where
 * zg_bf16_kernel_get() says so, else AVX512-BF16), so call only where that
 * is not the portable one. */
void zg__bf16_gemm_packed(int64_t M, int64_t N, int64_t K, int64_t Kp2, const uint32_t *Ap, const uint32_t *Bp,
                          int64_t Npad, bool acc, float *C, int64_t ldc);
/* Its two kernels: AVX512-BF16 (sums only the pair-rows holding a k < K)
 * and AMX (all Kp2 pair-rows, in tiles of 16; Npad a multiple of 32). */
void zg__bf16_gemm_packed_avx512(int64_t M, int64_t N, int64_t K, int64_t Kp2, const uint32_t *Ap, const uint32_t *Bp,
                                 int64_t Npad, bool acc, float *C, int64_t ldc);
void zg__bf16_gemm_packed_amx(int64_t M, int64_t N, int64_t Kp2, const uint32_t *Ap, const uint32_t *Bp, int64_t Npad,
                              bool acc, float *C, int64_t ldc);
/* The kernels' epilogue on a block of C (rows x cols, row stride ldc):
 * + bias[0..cols) (bf16 values, may be NULL), then rounding to bf16 unless
 * !round. */
void zg__bf16_epilogue(float *C, int64_t ldc, int64_t rows, int64_t cols, const float *bias, bool round);
/* zg__lp_column_sums for bf16 with AVX-512 (the same sums, in the same
 * order per column). */
void zg__bf16_column_sums_avx512(const float *G, int64_t rows, int64_t cols, float *out);

/* Work (M*N*K multiply-adds) above which the kernels split across OpenMP
 * threads. */
#define ZG__LP_PAR_MIN_WORK ((int64_t)1 << 20)

#endif
