/* float32 GEMM on operands addressed through offset tables, with an AVX-512
 * micro-kernel: the convolutions' products straight from their padded
 * input planes (each im2col row is one contiguous slice of a plane, so the
 * table replaces the copy, see src/ops/conv.c).
 *
 *     C[m][n] (+)= sum over k = 0 .. K-1, in that order, of A(m,k) * B(k,n)
 *     A(m,k) = A[aoff[m] + k]   (aoff given), or the packed layout below
 *     B(k,n) = B[boff[k] + n]
 *
 * Each element of C is ONE fused multiply-add chain over k in order,
 * starting from 0, then stored (or added to C: acc + C). That is also how
 * OpenBLAS's sgemm kernels sum while K fits one of its blocks (K <= 320 on
 * this library's shapes), so both give the same bits there; the tests
 * compare the two.
 *
 * The micro-kernel holds a 6 x 64 block of C in 24 registers: per k it
 * loads 4 vectors of B's row k and multiplies them with 6 broadcast
 * elements of A. A block of fewer columns masks its last vector (17 or 18
 * columns of a packed A: one vector and paired lanes, tile1p); fewer rows
 * compute duplicates of the last row and store only the real ones. Only
 * this file is compiled for the instruction set (target attributes); the
 * callers use it only where zg__sgemm_offsets_available() says so. */
#include "kernels_internal.h"

#define MR 6
#define NR 64

int64_t zg__sgemm_packed_floats(int64_t M, int64_t K) { return (M + MR - 1) / MR * MR * K; }

void zg__sgemm_pack_a(int64_t M, int64_t K, const float *src, int64_t rs, int64_t ks, float *dst) {
    const int64_t Mp = (M + MR - 1) / MR * MR;
    for (int64_t m0 = 0; m0 < Mp; m0 += MR)
        for (int64_t k = 0; k < K; k++)
            for (int64_t r = 0; r < MR; r++) {
                const int64_t m = m0 + r < M ? m0 + r : M - 1;
                dst[m0 * K + k * MR + r] = src[m * rs + k * ks];
            }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define ZG_AVX512F __attribute__((target("avx512f")))

bool zg__sgemm_offsets_available(void) {
    static int have = -1;
    if (have < 0) have = __builtin_cpu_supports("avx512f") ? 1 : 0;
    return have == 1;
}

/* One block: rows a[0..5] (stride as along k) times the columns n0 .. n0 +
 * 16*NV - 1, vector v of them masked by m[v]; `rows` rows stored. The 6*NV
 * accumulators, NV vectors of B and one broadcast stay in the 32 registers
 * (named variables: an array of them would live on the stack). */
#define ZG_FMA_ROW(r, NV)                                                                                          \
    x = _mm512_set1_ps(a##r[o]);                                                                                \
    c##r##0 = _mm512_fmadd_ps(x, b0, c##r##0);                                                                  \
    c##r##1 = _mm512_fmadd_ps(x, b1, c##r##1);                                                                  \
    if (NV == 4) {                                                                                              \
        c##r##2 = _mm512_fmadd_ps(x, b2, c##r##2);                                                              \
        c##r##3 = _mm512_fmadd_ps(x, b3, c##r##3);                                                              \
    }
#define ZG_TILE(NV)                                                                                             \
    ZG_AVX512F static void tile##NV(int64_t K, const float *const a[MR], int64_t as, const int32_t *kidx,     \
                                    const float *B,                                                             \
                                    const int32_t *boff, int64_t n0, const __mmask16 m[4], bool acc_c,          \
                                    float *C, int64_t ldc, int rows) {                                          \
        __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00,    \
               c13 = c00, c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00,          \
               c33 = c00, c40 = c00, c41 = c00, c42 = c00, c43 = c00, c50 = c00, c51 = c00, c52 = c00,          \
               c53 = c00;                                                                                       \
        const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];                     \
        const __mmask16 m0 = m[0], m1 = m[1], m2 = m[2], m3 = m[3];                                             \
        for (int64_t k = 0; k < K; k++) {                                                                       \
            const float *b = B + boff[k] + n0;                                                                  \
            const __m512 b0 = _mm512_maskz_loadu_ps(m0, b), b1 = _mm512_maskz_loadu_ps(m1, b + 16);             \
            const __m512 b2 = NV == 4 ? _mm512_maskz_loadu_ps(m2, b + 32) : b0;                                 \
            const __m512 b3 = NV == 4 ? _mm512_maskz_loadu_ps(m3, b + 48) : b0;                                 \
            const int64_t o = kidx ? kidx[k] : k * as;                                                          \
            __m512 x;                                                                                           \
            ZG_FMA_ROW(0, NV) ZG_FMA_ROW(1, NV) ZG_FMA_ROW(2, NV) ZG_FMA_ROW(3, NV) ZG_FMA_ROW(4, NV) ZG_FMA_ROW(5, NV)               \
        }                                                                                                       \
        const __m512 acc[MR][4] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23},            \
                                   {c30, c31, c32, c33}, {c40, c41, c42, c43}, {c50, c51, c52, c53}};           \
        for (int r = 0; r < rows; r++)                                                                          \
            for (int v = 0; v < NV; v++) {                                                                      \
                float *d = C + r * ldc + n0 + 16 * v;                                                           \
                __m512 y = acc[r][v];                                                                           \
                if (acc_c) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(m[v], d));                                \
                _mm512_mask_storeu_ps(d, m[v], y);                                                              \
            }                                                                                                   \
    }
ZG_TILE(2)
ZG_TILE(4)
#undef ZG_TILE
#undef ZG_FMA_ROW

/* The columns n0 .. n0+15 as tile2's first vector, and the npair (1 or 2)
 * columns after them for the 6 rows in lanes 2r + c of one more register,
 * instead of a second vector with 1 or 2 of its 16 lanes used: 7 FMAs per
 * k instead of 12. Packed A only (the 6 values of each k are contiguous);
 * the same chains, so the same bits. */
ZG_AVX512F static void tile1p(int64_t K, const float *ap, const float *B, const int32_t *boff, int64_t n0, int npair,
                              bool acc_c, float *C, int64_t ldc, int rows) {
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, cp = c0;
    const __m512i dup = _mm512_set_epi32(5, 5, 5, 5, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    for (int64_t k = 0; k < K; k++) {
        const float *b = B + boff[k] + n0, *a = ap + k * MR;
        const __m512 b0 = _mm512_loadu_ps(b);
        __m512 bp = _mm512_set1_ps(b[16]);
        if (npair == 2) {
            double pair;
            memcpy(&pair, b + 16, sizeof pair);
            bp = _mm512_castpd_ps(_mm512_set1_pd(pair));
        }
        c0 = _mm512_fmadd_ps(_mm512_set1_ps(a[0]), b0, c0);
        c1 = _mm512_fmadd_ps(_mm512_set1_ps(a[1]), b0, c1);
        c2 = _mm512_fmadd_ps(_mm512_set1_ps(a[2]), b0, c2);
        c3 = _mm512_fmadd_ps(_mm512_set1_ps(a[3]), b0, c3);
        c4 = _mm512_fmadd_ps(_mm512_set1_ps(a[4]), b0, c4);
        c5 = _mm512_fmadd_ps(_mm512_set1_ps(a[5]), b0, c5);
        cp = _mm512_fmadd_ps(_mm512_permutexvar_ps(dup, _mm512_maskz_loadu_ps(0x3f, a)), bp, cp);
    }
    const __m512 acc[MR] = {c0, c1, c2, c3, c4, c5};
    float lanes[16];
    _mm512_storeu_ps(lanes, cp);
    for (int r = 0; r < rows; r++) {
        float *d = C + r * ldc + n0;
        _mm512_storeu_ps(d, acc_c ? _mm512_add_ps(acc[r], _mm512_loadu_ps(d)) : acc[r]);
        for (int c = 0; c < npair; c++) d[16 + c] = acc_c ? lanes[2 * r + c] + d[16 + c] : lanes[2 * r + c];
    }
}

void zg__sgemm_offsets(int64_t M, int64_t N, int64_t K, const float *A, const int32_t *aoff, const int32_t *kidx,
                       const float *B, const int32_t *boff, bool acc_c, float *C, int64_t ldc) {
    for (int64_t m0 = 0; m0 < M; m0 += MR) {
        const int rows = M - m0 < MR ? (int)(M - m0) : MR;
        const float *a[MR];
        int64_t as = 1;
        if (aoff) {
            for (int r = 0; r < MR; r++) a[r] = A + aoff[m0 + (r < rows ? r : rows - 1)];
        } else {
            for (int r = 0; r < MR; r++) a[r] = A + m0 * K + r;
            as = MR;
        }
        float *c = C + m0 * ldc;
        for (int64_t n0 = 0; n0 < N; n0 += NR) {
            const int64_t cols = N - n0 < NR ? N - n0 : NR;
            __mmask16 m[4];
            for (int v = 0; v < 4; v++) {
                const int64_t left = cols - 16 * v;
                m[v] = left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1u);
            }
            if (!aoff && cols > 16 && cols <= 18)
                tile1p(K, a[0], B, boff, n0, (int)(cols - 16), acc_c, c, ldc, rows);
            else if (cols > 32)
                tile4(K, a, as, aoff ? kidx : NULL, B, boff, n0, m, acc_c, c, ldc, rows);
            else
                tile2(K, a, as, aoff ? kidx : NULL, B, boff, n0, m, acc_c, c, ldc, rows);
        }
    }
}

/* dst[j][i] = src[i][j] for 16 x 16 floats: 32-bit then 64-bit interleaves
 * within the 128-bit lanes (a 4 x 4 transpose in each lane of each group of
 * four rows), then two rounds of 128-bit lane shuffles across the groups. */
ZG_AVX512F static void transpose16(const float *src, int64_t lds, float *dst, int64_t ldd) {
    __m512 r[16], a[16], b[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + i * lds);
    for (int i = 0; i < 16; i += 2) {
        a[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        a[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        const __m512d a0 = _mm512_castps_pd(a[i]), a1 = _mm512_castps_pd(a[i + 1]);
        const __m512d a2 = _mm512_castps_pd(a[i + 2]), a3 = _mm512_castps_pd(a[i + 3]);
        b[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
        b[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
        b[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
        b[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
    }
    /* b[4g + j], lane L: column 4L + j of rows 4g .. 4g+3. */
    for (int j = 0; j < 4; j++) {
        const __m512 h0 = _mm512_shuffle_f32x4(b[j], b[4 + j], 0x44), h1 = _mm512_shuffle_f32x4(b[j], b[4 + j], 0xee);
        const __m512 h2 = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0x44);
        const __m512 h3 = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0xee);
        _mm512_storeu_ps(dst + j * ldd, _mm512_shuffle_f32x4(h0, h2, 0x88));
        _mm512_storeu_ps(dst + (4 + j) * ldd, _mm512_shuffle_f32x4(h0, h2, 0xdd));
        _mm512_storeu_ps(dst + (8 + j) * ldd, _mm512_shuffle_f32x4(h1, h3, 0x88));
        _mm512_storeu_ps(dst + (12 + j) * ldd, _mm512_shuffle_f32x4(h1, h3, 0xdd));
    }
}

void zg__transpose_f32(int64_t rows, int64_t cols, const float *src, int64_t lds, float *dst, int64_t ldd) {
    const int64_t R = rows / 16 * 16, Cc = cols / 16 * 16;
    for (int64_t i = 0; i < R; i += 16)
        for (int64_t j = 0; j < Cc; j += 16) transpose16(src + i * lds + j, lds, dst + j * ldd + i, ldd);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = i < R ? Cc : 0; j < cols; j++) dst[j * ldd + i] = src[i * lds + j];
}

#else

/* Without AVX-512 the callers use sgemm; this portable form (the same sums
 * in the same order) keeps the function defined everywhere. */
#include <math.h>

bool zg__sgemm_offsets_available(void) { return false; }

void zg__sgemm_offsets(int64_t M, int64_t N, int64_t K, const float *A, const int32_t *aoff, const int32_t *kidx,
                       const float *B, const int32_t *boff, bool acc_c, float *C, int64_t ldc) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++) {
                const float a = aoff ? A[aoff[m] + (kidx ? kidx[k] : k)] : A[m / MR * MR * K + k * MR + m % MR];
                s = fmaf(a, B[boff[k] + n], s);
            }
            C[m * ldc + n] = acc_c ? s + C[m * ldc + n] : s;
        }
}

void zg__transpose_f32(int64_t rows, int64_t cols, const float *src, int64_t lds, float *dst, int64_t ldd) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) dst[j * ldd + i] = src[i * lds + j];
}

#endif
