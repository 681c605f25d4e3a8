/* Packing float32 operands into bf16 pairs for the instruction kernels
 * (layouts in kernels_internal.h), with AVX-512 F/BW/DQ: the two instruction kernels run
 * only on CPUs that have it. The rounding is zg__bf16_from_f32's, 16 lanes
 * at a time. Operands read along the pair direction (op(A) rows when A is
 * not transposed, pairs of B rows) convert straight into place; the two
 * transposed cases convert 16 x 16 blocks of words and transpose them in
 * registers. The kernels' epilogue (bias, rounding of C) and the bf16
 * column sums of a bias gradient are here too. */
#include "kernels_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "bf16_round.h"

#define ZG_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq")))

/* Words (lo[i], hi[i]) for 16 lanes: the pair of two rows. */
ZG_AVX512 static inline __m512i pair_rows(__m512 lo, __m512 hi) {
    return _mm512_mask_blend_epi16(0xaaaaaaaau, _mm512_srli_epi32(zg__bf16_round_hi(lo), 16), zg__bf16_round_hi(hi));
}

/* Words (x[2i], x[2i+1]) for the 32 consecutive floats x0 = x[0..15],
 * x1 = x[16..31]: the upper halves of the rounded lanes, in order. */
ZG_AVX512 static inline __m512i pair_run(__m512 x0, __m512 x1) {
    const __m512i idx = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27,
                                         25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    return _mm512_permutex2var_epi16(zg__bf16_round_hi(x0), idx, zg__bf16_round_hi(x1));
}

/* 32 floats from x[0..n) (n may be <= 0 or > 32), zeros beyond. */
ZG_AVX512 static inline __m512i pair_run_masked(const float *x, int64_t n) {
    if (n >= 32) return pair_run(_mm512_loadu_ps(x), _mm512_loadu_ps(x + 16));
    __mmask16 m0 = n <= 0 ? 0 : n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1u);
    __mmask16 m1 = n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1u);
    return pair_run(_mm512_maskz_loadu_ps(m0, x), _mm512_maskz_loadu_ps(m1, x + 16));
}

static inline __mmask16 mask_n(int64_t n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1u); }

/* In-register transpose of 16 x 16 32-bit words. */
ZG_AVX512 static void transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < 4; i++) {
            t[8 * h + i] = _mm512_shuffle_i32x4(r[8 * h + i], r[8 * h + i + 4], 0x88);
            t[8 * h + i + 4] = _mm512_shuffle_i32x4(r[8 * h + i], r[8 * h + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
    }
}

/* Row k of a [K, ld] matrix at columns c..c+15 (masked), or zeros when
 * k >= K. */
ZG_AVX512 static inline __m512 row16(const float *X, int64_t K, int64_t ld, int64_t k, int64_t c, __mmask16 m) {
    return k < K ? _mm512_maskz_loadu_ps(m, X + k * ld + c) : _mm512_setzero_ps();
}

/* One row of Ap (Kp2 words at o) from the K contiguous floats at row (NULL:
 * zeros): 32 floats give 16 words. */
ZG_AVX512 static void pack_a_from(const float *row, int64_t K, int64_t Kp2, uint32_t *o) {
    for (int64_t p = 0; p < Kp2; p += 16) {
        __m512i w = row ? pair_run_masked(row + 2 * p, K - 2 * p) : _mm512_setzero_si512();
        _mm512_storeu_si512(o + p, w);
    }
}

/* Row m of Ap from A [M,K] (rows contiguous in k). */
ZG_AVX512 static void pack_a_row(int64_t m, int64_t M, int64_t K, const float *A, int64_t Kp2, uint32_t *Ap) {
    pack_a_from(m < M ? A + m * K : NULL, K, Kp2, Ap + m * Kp2);
}

/* Rows m0..m0+15 of Ap from A stored [K,M]: blocks of 16 pair-rows x 16
 * columns, as words per pair-row, transposed into 16 rows of Ap. */
ZG_AVX512 static void pack_at_rows(int64_t m0, int64_t M, int64_t K, const float *A, int64_t Kp2, uint32_t *Ap) {
    __mmask16 mm = mask_n(M - m0);
    for (int64_t p0 = 0; p0 < Kp2; p0 += 16) {
        __m512i r[16];
        for (int i = 0; i < 16; i++) {
            int64_t k = 2 * (p0 + i);
            r[i] = pair_rows(row16(A, K, M, k, m0, mm), row16(A, K, M, k + 1, m0, mm));
        }
        transpose16(r);
        for (int j = 0; j < 16; j++) _mm512_storeu_si512(Ap + (m0 + j) * Kp2 + p0, r[j]);
    }
}

/* One pair-row of Bp (Npad words at o): the N floats at r0 and at r1
 * interleaved (NULL: zeros). */
ZG_AVX512 static void pack_b_from(const float *r0, const float *r1, int64_t N, int64_t Npad, uint32_t *o) {
    for (int64_t n = 0; n < Npad; n += 16) {
        __mmask16 mn = mask_n(N - n);
        __m512 lo = r0 ? _mm512_maskz_loadu_ps(mn, r0 + n) : _mm512_setzero_ps();
        __m512 hi = r1 ? _mm512_maskz_loadu_ps(mn, r1 + n) : _mm512_setzero_ps();
        _mm512_storeu_si512(o + n, pair_rows(lo, hi));
    }
}

/* Pair-row p of Bp from B stored [K,N]: rows 2p and 2p+1 interleaved. */
ZG_AVX512 static void pack_b_row(int64_t p, int64_t K, int64_t N, const float *B, int64_t Npad, uint32_t *Bp) {
    pack_b_from(2 * p < K ? B + 2 * p * N : NULL, 2 * p + 1 < K ? B + (2 * p + 1) * N : NULL, N, Npad,
                Bp + p * Npad);
}

/* Columns n0..n0+15 of Bp from B stored [N,K] (row n of B is column n of
 * op(B), contiguous in k): 16 rows x 16 words, transposed into 16
 * pair-rows. */
ZG_AVX512 static void pack_bt_cols(int64_t n0, int64_t K, int64_t N, const float *B, int64_t Kp2, int64_t Npad,
                                   uint32_t *Bp) {
    for (int64_t p0 = 0; p0 < Kp2; p0 += 16) {
        __m512i r[16];
        for (int j = 0; j < 16; j++)
            r[j] = n0 + j < N ? pair_run_masked(B + (n0 + j) * K + 2 * p0, K - 2 * p0) : _mm512_setzero_si512();
        transpose16(r);
        for (int i = 0; i < 16; i++) _mm512_storeu_si512(Bp + (p0 + i) * Npad + n0, r[i]);
    }
}

/* The parallel loops call the AVX-512 helpers from plain functions: the
 * bodies OpenMP outlines do not inherit a target attribute. */
void zg__bf16_pack_a(bool serial, bool ta, int64_t M, int64_t K, const float *A, int64_t Mpad, int64_t Kp2,
                     uint32_t *Ap) {
    const int64_t M16 = (M + 15) / 16 * 16, min_par = M * K >= 65536 && !serial ? 1 : INT64_MAX;
    if (!ta) ZG_PARALLEL_FOR(m, M16, min_par, { pack_a_row(m, M, K, A, Kp2, Ap); });
    else ZG_PARALLEL_FOR(mb, M16 / 16, min_par, { pack_at_rows(mb * 16, M, K, A, Kp2, Ap); });
    for (int64_t m = M16; m < Mpad; m++) memset(Ap + m * Kp2, 0, (size_t)Kp2 * sizeof *Ap);
}

void zg__bf16_pack_b(bool serial, bool tb, int64_t K, int64_t N, const float *B, int64_t Kp2, int64_t Npad,
                     uint32_t *Bp) {
    const int64_t min_par = K * N >= 65536 && !serial ? 1 : INT64_MAX;
    if (!tb) ZG_PARALLEL_FOR(p, Kp2, min_par, { pack_b_row(p, K, N, B, Npad, Bp); });
    else ZG_PARALLEL_FOR(nb, Npad / 16, min_par, { pack_bt_cols(nb * 16, K, N, B, Kp2, Npad, Bp); });
}

ZG_AVX512 void zg__bf16_pack_a_offsets(int64_t M, int64_t K, const float *A, const int32_t *aoff, int64_t Mpad,
                                       int64_t Kp2, uint32_t *Ap) {
    for (int64_t m = 0; m < Mpad; m++) pack_a_from(m < M ? A + aoff[m] : NULL, K, Kp2, Ap + m * Kp2);
}

ZG_AVX512 void zg__bf16_pack_b_offsets(int64_t K, int64_t N, const float *B, const int32_t *boff, int64_t Kp2,
                                       int64_t Npad, uint32_t *Bp) {
    for (int64_t p = 0; p < Kp2; p++)
        pack_b_from(2 * p < K ? B + boff[2 * p] : NULL, 2 * p + 1 < K ? B + boff[2 * p + 1] : NULL, N, Npad,
                    Bp + p * Npad);
}

ZG_AVX512 void zg__bf16_epilogue(float *C, int64_t ldc, int64_t rows, int64_t cols, const float *bias, bool round) {
    if (!round && !bias) return;
    for (int64_t r = 0; r < rows; r++) {
        float *c = C + r * ldc;
        for (int64_t j = 0; j < cols; j += 16) {
            __mmask16 m = mask_n(cols - j);
            __m512 v = _mm512_maskz_loadu_ps(m, c + j);
            if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + j));
            if (round) v = zg__bf16_round_ps(v);
            _mm512_mask_storeu_ps(c + j, m, v);
        }
    }
}

/* 16 columns from j0: two accumulators of 8 doubles, rows in order. */
ZG_AVX512 static void column_sums16(const float *G, int64_t rows, int64_t cols, int64_t j0, float *out) {
    __mmask16 m = mask_n(cols - j0);
    __m512d lo8 = _mm512_setzero_pd(), hi8 = _mm512_setzero_pd();
    for (int64_t r = 0; r < rows; r++) {
        __m512 g = zg__bf16_round_ps(_mm512_maskz_loadu_ps(m, G + r * cols + j0));
        lo8 = _mm512_add_pd(lo8, _mm512_cvtps_pd(_mm512_castps512_ps256(g)));
        hi8 = _mm512_add_pd(hi8, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(g), 1))));
    }
    __m512 s = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo8)), _mm512_cvtpd_ps(hi8), 1);
    _mm512_mask_storeu_ps(out + j0, m, zg__bf16_round_ps(s));
}

void zg__bf16_column_sums_avx512(const float *G, int64_t rows, int64_t cols, float *out) {
    const int64_t min_par = rows * cols >= 65536 ? 1 : INT64_MAX;
    ZG_PARALLEL_FOR(b, (cols + 15) / 16, min_par, { column_sums16(G, rows, cols, b * 16, out); });
}

#endif
