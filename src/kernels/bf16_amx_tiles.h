/* The AMX kernels' tile loops, written against TILE_* macros so that the
 * same loops run on the tile unit (bf16_amx.c maps the macros to the
 * intrinsics) and on tests/test_amx_tiles.c's C model of the unit, which
 * checks every tile's shape and every byte a tile reads or writes on any
 * CPU. The includer defines ZG_AMX (the functions' target attribute) and
 * TILE_LOADCONFIG(cfg), TILE_ZERO(t), TILE_LOADD(t, base, stride),
 * TILE_STORED(t, base, stride), TILE_DPBF16PS(c, a, b), TILE_RELEASE().
 *
 * A tile holds up to 16 rows of 64 bytes. One TDPBF16PS multiplies a
 * 16 x 32 bf16 tile of A (16 rows of 16 pair words: the Ap layout of
 * kernels_internal.h) with a 32 x 16 tile of B (16 pair-rows of 16 words:
 * the Bp layout) and adds the 16 x 16 float32 products into an accumulator
 * tile. A block of 32 x 32 outputs uses four accumulators (tiles 0-3), two
 * A tiles (4, 5) and two B tiles (6, 7), so every loaded tile feeds two
 * products. Both kernels below run their blocks through zg__amx_block:
 * every output starts from a zeroed tile and takes the pair-rows in chunks
 * of 16 in order, so the two give the same bits for the same packed
 * operands. */
#ifndef ZG_KERNELS_BF16_AMX_TILES_H
#define ZG_KERNELS_BF16_AMX_TILES_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define ZG_AMX_BLK 32 /* outputs per block side; also the k step (32 bf16 per tile row) */

typedef struct {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((aligned(64))) zg__amx_config;

/* All eight tiles 16 rows x 64 bytes (palette 1). */
static inline void zg__amx_config_full(zg__amx_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg->colsb[t] = 64;
        cfg->rows[t] = 16;
    }
}

/* The rows x cols corner of a 16 x 16 tile stored in buf into C at c (row
 * stride ldc): c = (acc ? c : 0) + buf. */
ZG_AMX static inline void zg__amx_put(const float *buf, int64_t rows, int64_t cols, bool acc, float *c, int64_t ldc) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) c[r * ldc + j] = acc ? c[r * ldc + j] + buf[r * 16 + j] : buf[r * 16 + j];
}

/* Accumulator tile T holds the 16 x 16 outputs at (i, j): straight into C
 * when whole and !acc, else through buf (an edge, or acc: C + the
 * product, the sum taken after the product as the other kernels take it). */
#define ZG_AMX_PUT(T, i, j)                                                                                      \
    do {                                                                                                         \
        const int64_t rows_ = M - (i) < 16 ? M - (i) : 16, cols_ = N - (j) < 16 ? N - (j) : 16;                   \
        if (!acc && rows_ == 16 && cols_ == 16) {                                                                \
            TILE_STORED(T, C + (i) * ldc + (j), (size_t)ldc * 4);                                                \
        } else {                                                                                                 \
            TILE_STORED(T, buf, 64);                                                                             \
            zg__amx_put(buf, rows_, cols_, acc, C + (i) * ldc + (j), ldc);                                       \
        }                                                                                                        \
    } while (0)

/* The 32 x 32 block at (i, j) of C [M, N] (row stride ldc) = (acc ? C : 0)
 * + Ap Bp, tiles configured full (zg__amx_config_full). Ap needs M rounded
 * up to 16 rows at least, Bp Npad (a multiple of 32) columns; where the
 * block's last 16 rows or columns hold no output, their tiles are neither
 * loaded nor computed. */
ZG_AMX static inline void zg__amx_block(int64_t i, int64_t j, int64_t M, int64_t N, int64_t Kp2, const uint32_t *Ap,
                                        const uint32_t *Bp, int64_t Npad, bool acc, float *C, int64_t ldc) {
    float buf[16 * 16] __attribute__((aligned(64)));
    const size_t sa = (size_t)Kp2 * 4, sb = (size_t)Npad * 4;
    const bool two_rows = i + 16 < M, two_cols = j + 16 < N;
    const uint32_t *a = Ap + i * Kp2, *b = Bp + j;
    TILE_ZERO(0);
    TILE_ZERO(1);
    TILE_ZERO(2);
    TILE_ZERO(3);
    for (int64_t p = 0; p < Kp2; p += 16) { /* 16 pairs = 32 values of k */
        TILE_LOADD(4, a + p, sa);
        TILE_LOADD(6, b + p * Npad, sb);
        TILE_DPBF16PS(0, 4, 6);
        if (two_cols) {
            TILE_LOADD(7, b + p * Npad + 16, sb);
            TILE_DPBF16PS(1, 4, 7);
        }
        if (two_rows) {
            TILE_LOADD(5, a + 16 * Kp2 + p, sa);
            TILE_DPBF16PS(2, 5, 6);
            if (two_cols) TILE_DPBF16PS(3, 5, 7);
        }
    }
    ZG_AMX_PUT(0, i, j);
    if (two_cols) ZG_AMX_PUT(1, i, j + 16);
    if (two_rows) ZG_AMX_PUT(2, i + 16, j);
    if (two_rows && two_cols) ZG_AMX_PUT(3, i + 16, j + 16);
}

/* zg__gemm's AMX product: blocks [b0, b1) of the grid (row-major over
 * Mpad/32 x Npad/32 blocks) of C [M, N] = epilogue(Ap Bp), Ap [Mpad][Kp2]
 * and Bp [Kp2][Npad] padded to whole blocks. */
ZG_AMX static void zg__amx_blocks(const uint32_t *Ap, const uint32_t *Bp, int64_t M, int64_t N, int64_t Kp2,
                                  int64_t Npad, int64_t nb, int64_t b0, int64_t b1, const float *bias, bool round,
                                  float *C) {
    zg__amx_config cfg;
    zg__amx_config_full(&cfg);
    TILE_LOADCONFIG(&cfg);
    for (int64_t blk = b0; blk < b1; blk++) {
        const int64_t i = blk / nb * ZG_AMX_BLK, j = blk % nb * ZG_AMX_BLK;
        zg__amx_block(i, j, M, N, Kp2, Ap, Bp, Npad, false, C, N);
        const int64_t rows = M - i < ZG_AMX_BLK ? M - i : ZG_AMX_BLK, cols = N - j < ZG_AMX_BLK ? N - j : ZG_AMX_BLK;
        zg__bf16_epilogue(C + i * N + j, N, rows, cols, bias ? bias + j : NULL, round);
    }
    TILE_RELEASE();
}

/* zg__bf16_gemm_packed on the tile unit: C [M, N] (row stride ldc) =
 * (acc ? C : 0) + Ap Bp, the float32 sums, over operands packed for the
 * AVX512-BF16 kernel (zg__bf16_avx512_dims: Ap has M rounded up to 16
 * rows at least, Npad is a multiple of 32, Kp2 of 16), in 32 x 32 blocks.
 * Serial, no allocation. */
ZG_AMX static void zg__amx_packed(int64_t M, int64_t N, int64_t Kp2, const uint32_t *Ap, const uint32_t *Bp,
                                  int64_t Npad, bool acc, float *C, int64_t ldc) {
    zg__amx_config cfg;
    zg__amx_config_full(&cfg);
    TILE_LOADCONFIG(&cfg);
    for (int64_t i = 0; i < M; i += ZG_AMX_BLK)
        for (int64_t j = 0; j < N; j += ZG_AMX_BLK) zg__amx_block(i, j, M, N, Kp2, Ap, Bp, Npad, acc, C, ldc);
    TILE_RELEASE();
}

#undef ZG_AMX_PUT

#endif
