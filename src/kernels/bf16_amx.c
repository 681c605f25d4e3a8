/* bf16 GEMM on the AMX tile unit (TDPBF16PS).
 *
 * A tile holds up to 16 rows of 64 bytes. One TDPBF16PS multiplies a
 * 16 x 32 bf16 tile of A with a 32 x 16 tile of B, stored as 16 rows of 16
 * bf16 pairs (the Bp layout of kernels_internal.h), and adds the 16 x 16 float32
 * products into an accumulator tile. Each block of 32 x 32 outputs uses four
 * accumulators (tiles 0-3), two A tiles (4, 5) and two B tiles (6, 7), so
 * every loaded tile feeds two products. The unit sums the products of a
 * row in its own (fused) order, so results can differ from the other
 * kernels in the last float32 bits; inputs and results that are subnormal
 * are flushed to zero. Compiled for AMX through target attributes only;
 * the dispatcher calls it where the CPU and OS allow. */
#include "kernels_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <omp.h>

#define ZG_AMX __attribute__((target("amx-tile,amx-bf16,avx512f")))
#define BLK 32 /* outputs per block side; also the k step (32 bf16 per tile row) */

typedef struct {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((aligned(64))) tile_config;

/* Blocks [b0, b1) of the grid (row-major over Mpad/32 x Npad/32). */
ZG_AMX static void blocks(const uint32_t *Ap, const uint32_t *Bp, int64_t M, int64_t N, int64_t Kp2,
                          int64_t Npad, int64_t nb, int64_t b0, int64_t b1, const float *bias, bool round,
                          float *C) {
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    _tile_loadconfig(&cfg);
    float buf[BLK * BLK] __attribute__((aligned(64)));
    const size_t sa = (size_t)Kp2 * 4, sb = (size_t)Npad * 4;
    for (int64_t blk = b0; blk < b1; blk++) {
        int64_t i = blk / nb * BLK, j = blk % nb * BLK;
        const uint32_t *a = Ap + i * Kp2, *b = Bp + j;
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int64_t p = 0; p < Kp2; p += 16) { /* 16 pairs = 32 values of k */
            _tile_loadd(4, a + p, sa);
            _tile_loadd(5, a + 16 * Kp2 + p, sa);
            _tile_loadd(6, b + p * Npad, sb);
            _tile_loadd(7, b + p * Npad + 16, sb);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        }
        if (i + BLK <= M && j + BLK <= N) {
            float *c = C + i * N + j;
            size_t sc = (size_t)N * 4;
            _tile_stored(0, c, sc);
            _tile_stored(1, c + 16, sc);
            _tile_stored(2, c + 16 * N, sc);
            _tile_stored(3, c + 16 * N + 16, sc);
            zg__bf16_epilogue(c, N, BLK, BLK, bias ? bias + j : NULL, round);
        } else {
            /* An edge block: through a buffer, keeping the part inside C. */
            _tile_stored(0, buf, BLK * 4);
            _tile_stored(1, buf + 16, BLK * 4);
            _tile_stored(2, buf + 16 * BLK, BLK * 4);
            _tile_stored(3, buf + 16 * BLK + 16, BLK * 4);
            int64_t rows = M - i < BLK ? M - i : BLK, cols = N - j < BLK ? N - j : BLK;
            zg__bf16_epilogue(buf, BLK, rows, cols, bias ? bias + j : NULL, round);
            for (int64_t r = 0; r < rows; r++) memcpy(C + (i + r) * N + j, buf + r * BLK, (size_t)cols * 4);
        }
    }
    _tile_release();
}

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
        blocks(Ap, Bp, M, N, Kp2, Npad, nb, 0, total, bias, round, C);
        return ZG_OK;
    }
    /* Each thread configures its own tiles and takes a contiguous share. */
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t b0 = total * t / nt, b1 = total * (t + 1) / nt;
        if (b1 > b0) blocks(Ap, Bp, M, N, Kp2, Npad, nb, b0, b1, bias, round, C);
    }
    return ZG_OK;
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

#endif
