/* bf16 GEMM on the AMX tile unit (TDPBF16PS): zg__gemm's kernel (operands
 * packed per call) and the product over operands a convolution packed
 * itself. The tile loops are in bf16_amx_tiles.h, here mapped to the
 * intrinsics. The unit sums the products of a row in its own (fused)
 * order, so results can differ from the other kernels in the last float32
 * bits; inputs and results that are subnormal are flushed to zero.
 * Compiled for AMX through target attributes only; the dispatcher calls it
 * where the CPU and OS allow. */
#include "kernels_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <omp.h>

#define ZG_AMX __attribute__((target("amx-tile,amx-bf16,avx512f")))
#define TILE_LOADCONFIG(cfg) _tile_loadconfig(cfg)
#define TILE_ZERO(t) _tile_zero(t)
#define TILE_LOADD(t, base, stride) _tile_loadd(t, base, stride)
#define TILE_STORED(t, base, stride) _tile_stored(t, base, stride)
#define TILE_DPBF16PS(c, a, b) _tile_dpbf16ps(c, a, b)
#define TILE_RELEASE() _tile_release()
#include "bf16_amx_tiles.h"

#define BLK ZG_AMX_BLK

void zg__bf16_amx_sizes(int64_t M, int64_t N, int64_t K, int64_t *a_words, int64_t *b_words) {
    /* Padded to whole blocks: K to 32 (16 pairs), M and N to 32. */
    const int64_t Kp2 = (K + BLK - 1) / BLK * (BLK / 2);
    *a_words = (M + BLK - 1) / BLK * BLK * Kp2;
    *b_words = Kp2 * ((N + BLK - 1) / BLK * BLK);
}

int zg__bf16_gemm_amx(unsigned flags, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A,
                      const float *B, const float *bias, float *C, void *scratch) {
    const int64_t Kp2 = (K + BLK - 1) / BLK * (BLK / 2), Mpad = (M + BLK - 1) / BLK * BLK,
                  Npad = (N + BLK - 1) / BLK * BLK;
    const bool serial = flags & ZG__LP_SERIAL, round = !(flags & ZG__LP_NO_ROUND);
    uint32_t *Ap = serial ? scratch : zg__arena_alloc((size_t)(Mpad * Kp2) * sizeof *Ap);
    uint32_t *Bp = serial ? Ap + Mpad * Kp2 : zg__arena_alloc((size_t)(Kp2 * Npad) * sizeof *Bp);
    if (!Ap || !Bp) return zg__fail(ZG_ERR_NOMEM, "zg_autocast: out of memory for a %lldx%lldx%lld GEMM",
                                    (long long)M, (long long)N, (long long)K);
    zg__bf16_pack_a(serial, ta, M, K, A, Mpad, Kp2, Ap);
    zg__bf16_pack_b(serial, tb, K, N, B, Kp2, Npad, Bp);
    const int64_t nb = Npad / BLK, total = Mpad / BLK * nb;
    if (serial || M * N * K < ZG__LP_PAR_MIN_WORK || total < 2) {
        zg__amx_blocks(Ap, Bp, M, N, Kp2, Npad, nb, 0, total, bias, round, C);
        return ZG_OK;
    }
    /* Each thread configures its own tiles and takes a contiguous share. */
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t b0 = total * t / nt, b1 = total * (t + 1) / nt;
        if (b1 > b0) zg__amx_blocks(Ap, Bp, M, N, Kp2, Npad, nb, b0, b1, bias, round, C);
    }
    return ZG_OK;
}

void zg__bf16_gemm_packed_amx(int64_t M, int64_t N, int64_t Kp2, const uint32_t *Ap, const uint32_t *Bp, int64_t Npad,
                              bool acc, float *C, int64_t ldc) {
    zg__amx_packed(M, N, Kp2, Ap, Bp, Npad, acc, C, ldc);
}

#else

/* Not an x86-64 GCC/Clang build: the dispatcher never selects this kernel
 * (zg__cpu_has_amx_bf16() is false). */
void zg__bf16_amx_sizes(int64_t M, int64_t N, int64_t K, int64_t *a_words, int64_t *b_words) {
    (void)M, (void)N, (void)K;
    *a_words = *b_words = 0;
}

int zg__bf16_gemm_amx(unsigned flags, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A,
                      const float *B, const float *bias, float *C, void *scratch) {
    (void)flags, (void)scratch, (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)A, (void)B, (void)bias, (void)C;
    return zg__fail(ZG_ERR_STATE, "zg_autocast: the AMX kernel is not built on this platform");
}

void zg__bf16_gemm_packed_amx(int64_t M, int64_t N, int64_t Kp2, const uint32_t *Ap, const uint32_t *Bp, int64_t Npad,
                              bool acc, float *C, int64_t ldc) {
    (void)M, (void)N, (void)Kp2, (void)Ap, (void)Bp, (void)Npad, (void)acc, (void)C, (void)ldc;
}

#endif
