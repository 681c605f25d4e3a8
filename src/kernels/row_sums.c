/* Sums along rows in the order of a 4-lane SIMD reduction: the bias
 * gradients of the convolutions (the order `omp simd reduction(+)` compiles
 * to for SSE, which those sums had: kept so that results do not move).
 *
 *     out[r] = 0 + l0 + l1 + l2 + l3, in that order, where lane j holds the
 *     sum of x[r*ld + 4k + j] over the whole blocks of 4 (k in order) and
 *     lane 0 then adds the n % 4 last elements in turn.
 *
 * With bf16, of the elements rounded to bf16 (zg__round_bf16). One row's
 * lanes form one chain of dependent additions, so rows are summed side by
 * side: with AVX-512F (checked at run time) four rows in the four 128-bit
 * lanes of a register, two registers at a time; elsewhere in 4-float
 * vectors, eight rows at a time. */
#include "kernels_internal.h"

typedef float v4f __attribute__((vector_size(16)));
typedef uint32_t v4u __attribute__((vector_size(16)));

/* zg__round_bf16 on 4 lanes (NaN becomes 0x7fc0). */
static inline v4f round_bf16_v4(v4f x) {
    v4u u;
    memcpy(&u, &x, sizeof u);
    const v4u nan = (u & 0x7fffffffu) > 0x7f800000u;
    v4u r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    r = (r & ~nan) | (0x7fc00000u & nan);
    memcpy(&x, &r, sizeof x);
    return x;
}

/* The lanes' tail and total of row x (n elements), lanes l[0..3]. */
static float finish(bool bf16, const float *x, int64_t n, float *l) {
    for (int64_t i = n / 4 * 4; i < n; i++) l[0] += bf16 ? zg__round_bf16(x[i]) : x[i];
    return 0.0f + l[0] + l[1] + l[2] + l[3];
}

/* Rows r < R <= 8 in 4-float vectors. */
static void sums8(bool bf16, const float *x, int64_t ld, int64_t n, int R, float *out) {
    v4f acc[8] = {{0}};
    for (int64_t i = 0; i + 4 <= n; i += 4)
        for (int r = 0; r < R; r++) {
            v4f v;
            memcpy(&v, x + r * ld + i, sizeof v);
            acc[r] += bf16 ? round_bf16_v4(v) : v;
        }
    for (int r = 0; r < R; r++) {
        float l[4];
        memcpy(l, &acc[r], sizeof l);
        out[r] = finish(bf16, x + r * ld, n, l);
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "bf16_round.h"

#define ZG_AVX512F __attribute__((target("avx512f")))

/* 4 floats of each of 4 rows (row stride ld) in the 128-bit lanes. */
ZG_AVX512F static inline __m512 rows4(const float *x, int64_t ld) {
    __m512 v = _mm512_castps128_ps512(_mm_loadu_ps(x));
    v = _mm512_insertf32x4(v, _mm_loadu_ps(x + ld), 1);
    v = _mm512_insertf32x4(v, _mm_loadu_ps(x + 2 * ld), 2);
    return _mm512_insertf32x4(v, _mm_loadu_ps(x + 3 * ld), 3);
}

/* Rows 0..7 (R == 8). */
ZG_AVX512F static void sums8_avx512(bool bf16, const float *x, int64_t ld, int64_t n, float *out) {
    __m512 a = _mm512_setzero_ps(), b = a;
    for (int64_t i = 0; i + 4 <= n; i += 4) {
        __m512 va = rows4(x + i, ld), vb = rows4(x + 4 * ld + i, ld);
        if (bf16) {
            va = zg__bf16_round_ps(va);
            vb = zg__bf16_round_ps(vb);
        }
        a = _mm512_add_ps(a, va);
        b = _mm512_add_ps(b, vb);
    }
    float l[32];
    _mm512_storeu_ps(l, a);
    _mm512_storeu_ps(l + 16, b);
    for (int r = 0; r < 8; r++) out[r] = finish(bf16, x + r * ld, n, l + 4 * r);
}

static bool have_avx512f(void) {
    static int have = -1;
    if (have < 0) have = __builtin_cpu_supports("avx512f") ? 1 : 0;
    return have == 1;
}
#endif

void zg__row_sums4(bool bf16, const float *x, int64_t ld, int64_t n, int64_t rows, float *out) {
    for (int64_t r0 = 0; r0 < rows; r0 += 8) {
        const int R = rows - r0 < 8 ? (int)(rows - r0) : 8;
#if defined(__x86_64__) && defined(__GNUC__)
        if (R == 8 && have_avx512f()) {
            sums8_avx512(bf16, x + r0 * ld, ld, n, out + r0);
            continue;
        }
#endif
        sums8(bf16, x + r0 * ld, ld, n, R, out + r0);
    }
}
