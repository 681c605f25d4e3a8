/* float32 <-> bf16 / fp16, round to nearest even.
 *
 * fp16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Normal fp16 covers
 * [2^-14, 65504]; below that the subnormals step by 2^-24; from 65520 (the
 * midpoint between 65504 and 2^16) a value rounds to inf. */
#include "kernels_internal.h"

uint16_t zg__fp16_from_f32(float x) {
    uint32_t u = zg__f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u; /* NaN: quiet, payload dropped (as c10::Half) */
    if (a >= 0x477ff000u) return sign | 0x7c00u; /* >= 65520: inf */
    if (a >= 0x38800000u) {                       /* normal: 23 -> 10 mantissa bits */
        uint32_t r = a + 0xfffu + ((a >> 13) & 1u);
        /* Exponent re-bias 127 -> 15; a carry out of the mantissa moves
         * into the exponent, which is the correct result. */
        return sign | (uint16_t)((r >> 13) - (112u << 10));
    }
    if (a < 0x33000000u) return sign; /* below 2^-25: rounds to zero */
    /* Subnormal result: the value in units of 2^-24 is m * 2^(e - 126). */
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e; /* 14 .. 24 */
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return sign | (uint16_t)q; /* q == 0x400 is the smallest normal: still the right encoding */
}

float zg__f32_from_fp16(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) return zg__bits_f32(sign | 0x7f800000u | (m << 13)); /* inf / NaN */
    if (e == 0) {
        /* Zero or subnormal: m * 2^-24 is exact in float32. */
        float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    return zg__bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

/* Integer operations on the bit patterns (and fp16's exact float steps):
 * every clone gives the same values. Static: clang makes only functions
 * local to their file multiversioned. */
ZG_SIMD_CLONES
static void round_copy(zg_autocast_type t, float *dst, const float *src, int64_t n) {
    if (t == ZG_AUTOCAST_BF16) {
        /* The bf16 rounding on the bit pattern, branch-free so it
         * vectorises; NaNs are canonicalised afterwards. */
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            uint32_t u = zg__f32_bits(src[i]);
            uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
            dst[i] = zg__bits_f32((u & 0x7fffffffu) > 0x7f800000u ? 0x7fc00000u : r);
        }
    } else {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) dst[i] = zg__round_fp16(src[i]);
    }
}

void zg__round_lp_copy(zg_autocast_type t, float *dst, const float *src, int64_t n) { round_copy(t, dst, src, n); }

void zg__round_lp_array(zg_autocast_type t, float *x, int64_t n) { round_copy(t, x, x, n); }

/* ---- public ------------------------------------------------------------ */

uint16_t zg_float_to_bf16(float x) { return zg__bf16_from_f32(x); }
float zg_bf16_to_float(uint16_t h) { return zg__f32_from_bf16(h); }
uint16_t zg_float_to_fp16(float x) { return zg__fp16_from_f32(x); }
float zg_fp16_to_float(uint16_t h) { return zg__f32_from_fp16(h); }
float zg_round_bf16(float x) { return zg__round_bf16(x); }
float zg_round_fp16(float x) { return zg__round_fp16(x); }
