/* bf16 GEMM with the AVX512-BF16 dot-product instruction (VDPBF16PS).
 *
 * For each of 16 float32 lanes, _mm512_dpbf16_ps(acc, a, b) adds the two
 * products of the lane's bf16 pair (odd element first, then even, each sum
 * rounded to nearest even, subnormals flushed to zero). The micro-kernel
 * holds a 6 x 32 block of C in 12 registers: per pair-row p it broadcasts
 * the word (A[m][2p], A[m][2p+1]) of each of its 6 rows and multiplies it
 * with the 32 words of Bp's row p. Only this file is compiled for the
 * instruction set (target attributes), so the library stays portable; the
 * dispatcher calls it only where the CPU has it. */
#include "kernels_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "bf16_round.h"

#define MR 6
#define NR 32
#define ZG_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/* C[rows, cols] (rows <= 6, cols <= 32, row stride ldc) = round(Ap[0..5] . Bp
 * + bias), or with acc C + Ap[0..5] . Bp (then bias NULL and !round), over
 * the kp pair-rows that hold a k < K (the packer's zero pairs beyond them
 * would add exact zeros to sums that start from +0: skipping them keeps
 * the bits). Kp2: the row stride of Ap. */
ZG_AVX512BF16 static void micro(const uint32_t *Ap, int64_t Kp2, int64_t kp, const uint32_t *Bp, int64_t Npad,
                                const float *bias, bool round, bool acc, float *C, int64_t ldc, int rows, int cols) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
           c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const uint32_t *a0 = Ap, *a1 = a0 + Kp2, *a2 = a1 + Kp2, *a3 = a2 + Kp2, *a4 = a3 + Kp2, *a5 = a4 + Kp2;
    for (int64_t p = 0; p < kp; p++) {
        const uint32_t *b = Bp + p * Npad;
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b), b1 = (__m512bh)_mm512_loadu_si512(b + 16);
        __m512bh a;
#define ZG_ROW(r)                                                                                           \
    a = (__m512bh)_mm512_set1_epi32((int)a##r[p]);                                                          \
    c##r##0 = _mm512_dpbf16_ps(c##r##0, a, b0);                                                             \
    c##r##1 = _mm512_dpbf16_ps(c##r##1, a, b1);
        ZG_ROW(0) ZG_ROW(1) ZG_ROW(2) ZG_ROW(3) ZG_ROW(4) ZG_ROW(5)
#undef ZG_ROW
    }
    __mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1u);
    __mmask16 m1 = cols >= 32 ? 0xffff : cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1u);
    const __m512 sums[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int r = 0; r < rows; r++) {
        float *c = C + r * ldc;
        __m512 y0 = sums[r][0], y1 = sums[r][1];
        if (acc) {
            y0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, c), y0);
            y1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, c + 16), y1);
        }
        /* The epilogue in registers (zg__bf16_epilogue's operations in its
         * order): storing C and reading it back for it stalled on the
         * masked stores. */
        if (bias) {
            y0 = _mm512_add_ps(y0, _mm512_maskz_loadu_ps(m0, bias));
            y1 = _mm512_add_ps(y1, _mm512_maskz_loadu_ps(m1, bias + 16));
        }
        if (round) {
            y0 = zg__bf16_round_ps(y0);
            y1 = zg__bf16_round_ps(y1);
        }
        _mm512_mask_storeu_ps(c, m0, y0);
        _mm512_mask_storeu_ps(c + 16, m1, y1);
    }
}

/* Rows padded for the packer (16) and for the micro-kernel (6). */
void zg__bf16_avx512_dims(int64_t M, int64_t N, int64_t K, int64_t *Kp2, int64_t *Mpad, int64_t *Npad) {
    const int64_t M6 = (M + MR - 1) / MR * MR, M16 = (M + 15) / 16 * 16;
    *Kp2 = (K + 31) / 32 * 16;
    *Mpad = M6 > M16 ? M6 : M16;
    *Npad = (N + NR - 1) / NR * NR;
}

void zg__bf16_avx512_sizes(int64_t M, int64_t N, int64_t K, int64_t *a_words, int64_t *b_words) {
    int64_t Kp2, Mpad, Npad;
    zg__bf16_avx512_dims(M, N, K, &Kp2, &Mpad, &Npad);
    *a_words = Mpad * Kp2;
    *b_words = Kp2 * Npad;
}

int zg__bf16_gemm_avx512(unsigned flags, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A,
                         const float *B, const float *bias, float *C, void *scratch) {
    int64_t Kp2, Mpad, Npad;
    zg__bf16_avx512_dims(M, N, K, &Kp2, &Mpad, &Npad);
    const bool serial = flags & ZG__LP_SERIAL, round = !(flags & ZG__LP_NO_ROUND);
    uint32_t *Ap = serial ? scratch : zg__arena_alloc((size_t)(Mpad * Kp2) * sizeof *Ap);
    uint32_t *Bp = serial ? Ap + Mpad * Kp2 : zg__arena_alloc((size_t)(Kp2 * Npad) * sizeof *Bp);
    if (!Ap || !Bp) return zg__fail(ZG_ERR_NOMEM, "zg_autocast: out of memory for a %lldx%lldx%lld GEMM",
                                    (long long)M, (long long)N, (long long)K);
    zg__bf16_pack_a(serial, ta, M, K, A, Mpad, Kp2, Ap);
    zg__bf16_pack_b(serial, tb, K, N, B, Kp2, Npad, Bp);
    const int64_t mblocks = (M + MR - 1) / MR, nblocks = Npad / NR;
    const int64_t min_blocks = M * N * K >= ZG__LP_PAR_MIN_WORK && !serial ? 1 : INT64_MAX;
    ZG_PARALLEL_FOR(blk, mblocks * nblocks, min_blocks, {
        int64_t i = blk / nblocks * MR, j = blk % nblocks * NR;
        int rows = (int)(M - i < MR ? M - i : MR), cols = (int)(N - j < NR ? N - j : NR);
        micro(Ap + i * Kp2, Kp2, (K + 1) / 2, Bp + j, Npad, bias ? bias + j : NULL, round, false, C + i * N + j, N, rows,
              cols);
    });
    return ZG_OK;
}

void zg__bf16_gemm_packed_avx512(int64_t M, int64_t N, int64_t K, int64_t Kp2, const uint32_t *Ap, const uint32_t *Bp,
                                 int64_t Npad, bool acc, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i += MR)
        for (int64_t j = 0; j < N; j += NR) {
            int rows = (int)(M - i < MR ? M - i : MR), cols = (int)(N - j < NR ? N - j : NR);
            micro(Ap + i * Kp2, Kp2, (K + 1) / 2, Bp + j, Npad, NULL, false, acc, C + i * ldc + j, ldc, rows, cols);
        }
}

#else

/* Not an x86-64 GCC/Clang build: the dispatcher never selects this kernel
 * (zg__cpu_has_avx512bf16() is false). */
void zg__bf16_avx512_sizes(int64_t M, int64_t N, int64_t K, int64_t *a_words, int64_t *b_words) {
    (void)M, (void)N, (void)K;
    *a_words = *b_words = 0;
}

void zg__bf16_avx512_dims(int64_t M, int64_t N, int64_t K, int64_t *Kp2, int64_t *Mpad, int64_t *Npad) {
    (void)M, (void)N, (void)K;
    *Kp2 = *Mpad = *Npad = 0;
}

void zg__bf16_gemm_packed_avx512(int64_t M, int64_t N, int64_t K, int64_t Kp2, const uint32_t *Ap, const uint32_t *Bp,
                                 int64_t Npad, bool acc, float *C, int64_t ldc) {
    (void)M, (void)N, (void)K, (void)Kp2, (void)Ap, (void)Bp, (void)Npad, (void)acc, (void)C, (void)ldc;
}

int zg__bf16_gemm_avx512(unsigned flags, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A,
                         const float *B, const float *bias, float *C, void *scratch) {
    (void)flags, (void)scratch, (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)A, (void)B, (void)bias, (void)C;
    return zg__fail(ZG_ERR_STATE, "zg_autocast: the AVX512-BF16 kernel is not built on this platform");
}

#endif
