/* Rounding float32 lanes to bf16 (round to nearest even, NaN to the quiet
 * 0x7fc0), kept as 32-bit floats with the bf16 in the upper half: the one
 * rounding of zg__bf16_from_f32, 16 lanes at a time, shared by the packer,
 * the kernels' epilogues and the bias sums. Only for files compiled with
 * AVX-512 target attributes on x86-64. */
#ifndef ZG_KERNELS_BF16_ROUND_H
#define ZG_KERNELS_BF16_ROUND_H

#include <immintrin.h>

__attribute__((target("avx512f"))) static inline __m512i zg__bf16_round_hi(__m512 x) {
    __m512i u = _mm512_castps_si512(x);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    return _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), _mm512_set1_epi32(0x7fc00000));
}

/* The lanes rounded to bf16 and widened back: the upper halves kept. */
__attribute__((target("avx512f"))) static inline __m512 zg__bf16_round_ps(__m512 x) {
    return _mm512_castsi512_ps(_mm512_and_si512(zg__bf16_round_hi(x), _mm512_set1_epi32((int)0xffff0000u)));
}

#endif
