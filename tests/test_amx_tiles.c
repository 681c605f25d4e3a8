/* The AMX kernels' tile loops (src/kernels/bf16_amx_tiles.h) on a C model
 * of the tile unit, so that they are tested on any CPU with AVX-512 (the
 * packers'), AMX or not: every TILE_LOADD / TILE_STORED copies exactly the
 * configured rows x bytes through the given stride (AddressSanitizer sees
 * a tile that reads or writes outside its operand), every TDPBF16PS checks
 * the shapes the unit would reject, and the products are those of the
 * instruction's definition: per output, the pairs in k order, the even
 * element's product added before the odd one's, each in float32. The real
 * unit's own (fused) summation order is not modelled, so these tests bound
 * the values with a derived tolerance and compare bits only between the
 * two kernels on the model; on an AMX machine, test_amp and test_ops_conv
 * run the same loops on the unit itself. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kernels/kernels_internal.h"

/* ---- the model ----------------------------------------------------------- */

typedef struct {
    uint8_t bytes[16][64];
    int rows, colsb;
} model_tile;

static model_tile tiles[8];
static bool configured;
static int faults; /* operations the unit would reject (#UD) */

static void model_fault(const char *what) {
    faults++;
    fprintf(stderr, "  tile model: %s\n", what);
}

/* The 64-byte configuration as the ISA lays it out: palette at byte 0, the
 * tiles' bytes per row as 16-bit words from byte 16, their rows from 48. */
static void model_loadconfig(const void *cfg) {
    const uint8_t *c = cfg;
    if (c[0] != 1) model_fault("palette is not 1");
    for (int t = 0; t < 8; t++) {
        uint16_t colsb;
        memcpy(&colsb, c + 16 + 2 * t, 2);
        tiles[t].colsb = colsb;
        tiles[t].rows = c[48 + t];
        if (colsb > 64 || tiles[t].rows > 16) model_fault("tile larger than 16 x 64 bytes");
    }
    configured = true;
}

static bool model_ready(int t) {
    if (!configured) model_fault("tile used before the configuration was loaded");
    if (t < 0 || t > 7) model_fault("tile number out of range");
    return configured && t >= 0 && t <= 7;
}

static void model_zero(int t) {
    if (model_ready(t)) memset(tiles[t].bytes, 0, sizeof tiles[t].bytes);
}

static void model_loadd(int t, const void *base, size_t stride) {
    if (!model_ready(t)) return;
    memset(tiles[t].bytes, 0, sizeof tiles[t].bytes);
    for (int r = 0; r < tiles[t].rows; r++)
        memcpy(tiles[t].bytes[r], (const char *)base + r * stride, (size_t)tiles[t].colsb);
}

static void model_stored(int t, void *base, size_t stride) {
    if (!model_ready(t)) return;
    for (int r = 0; r < tiles[t].rows; r++)
        memcpy((char *)base + r * stride, tiles[t].bytes[r], (size_t)tiles[t].colsb);
}

static uint32_t word(int t, int r, int i) {
    uint32_t w;
    memcpy(&w, tiles[t].bytes[r] + 4 * i, 4);
    return w;
}

static float bf16_lo(uint32_t w) { return zg__f32_from_bf16((uint16_t)(w & 0xffffu)); }
static float bf16_hi(uint32_t w) { return zg__f32_from_bf16((uint16_t)(w >> 16)); }

/* c[m][n] += sum over k of a[m].bf16[2k] b[k].bf16[2n] + a[m].bf16[2k+1] b[k].bf16[2n+1]. */
static void model_dpbf16ps(int c, int a, int b) {
    if (!model_ready(c) || !model_ready(a) || !model_ready(b)) return;
    if (c == a || c == b || a == b) model_fault("TDPBF16PS with repeated tiles");
    if (tiles[c].rows != tiles[a].rows) model_fault("TDPBF16PS: rows of C and A differ");
    if (tiles[c].colsb != tiles[b].colsb) model_fault("TDPBF16PS: bytes per row of C and B differ");
    if (tiles[b].rows != tiles[a].colsb / 4) model_fault("TDPBF16PS: rows of B are not A's pairs");
    if (tiles[a].colsb % 4 || tiles[c].colsb % 4) model_fault("TDPBF16PS: rows not whole 32-bit words");
    for (int m = 0; m < tiles[c].rows; m++)
        for (int k = 0; k < tiles[a].colsb / 4 && k < tiles[b].rows; k++)
            for (int n = 0; n < tiles[c].colsb / 4; n++) {
                const uint32_t aw = word(a, m, k), bw = word(b, k, n);
                float s;
                memcpy(&s, tiles[c].bytes[m] + 4 * n, 4);
                s += bf16_lo(aw) * bf16_lo(bw);
                s += bf16_hi(aw) * bf16_hi(bw);
                memcpy(tiles[c].bytes[m] + 4 * n, &s, 4);
            }
}

static void model_release(void) { configured = false; }

#define ZG_AMX
#define TILE_LOADCONFIG(cfg) model_loadconfig(cfg)
#define TILE_ZERO(t) model_zero(t)
#define TILE_LOADD(t, base, stride) model_loadd(t, base, stride)
#define TILE_STORED(t, base, stride) model_stored(t, base, stride)
#define TILE_DPBF16PS(c, a, b) model_dpbf16ps(c, a, b)
#define TILE_RELEASE() model_release()
#include "kernels/bf16_amx_tiles.h"

_Static_assert(sizeof(zg__amx_config) == 64 && offsetof(zg__amx_config, colsb) == 16 &&
                   offsetof(zg__amx_config, rows) == 48,
               "the tile configuration's layout is the ISA's");

/* ---- operands ------------------------------------------------------------ */

static uint64_t rng = 0x9e3779b97f4a7c15u;
static float uniform(void) { /* in [-1, 1) */
    rng = rng * 6364136223846793005u + 1442695040888963407u;
    return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

static float *random_floats(int64_t n) {
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = uniform();
    return x;
}

/* A [M,K] and B [K,N] packed as the convolution packs them (the
 * AVX512-BF16 kernel's sizes, which the AMX packed kernel reads). */
typedef struct {
    int64_t M, N, K, Kp2, Mpad, Npad;
    float *A, *B;
    uint32_t *Ap, *Bp;
} operands;

static operands make_operands(int64_t M, int64_t N, int64_t K) {
    operands o = {.M = M, .N = N, .K = K};
    zg__bf16_avx512_dims(M, N, K, &o.Kp2, &o.Mpad, &o.Npad);
    o.A = random_floats(M * K);
    o.B = random_floats(K * N);
    o.Ap = malloc((size_t)(o.Mpad * o.Kp2) * sizeof *o.Ap);
    o.Bp = malloc((size_t)(o.Kp2 * o.Npad) * sizeof *o.Bp);
    zg__bf16_pack_a(true, false, M, K, o.A, o.Mpad, o.Kp2, o.Ap);
    zg__bf16_pack_b(true, false, K, N, o.B, o.Kp2, o.Npad, o.Bp);
    return o;
}

static void free_operands(operands *o) {
    free(o->A), free(o->B), free(o->Ap), free(o->Bp);
}

/* The sum of bf16(A) bf16(B) for (i, j) in double, and the sum of the
 * products' magnitudes. */
static double exact(const operands *o, int64_t i, int64_t j, double *mag) {
    double s = 0, a = 0;
    for (int64_t k = 0; k < o->K; k++) {
        const double p = (double)zg__round_bf16(o->A[i * o->K + k]) * zg__round_bf16(o->B[k * o->N + j]);
        s += p;
        a += fabs(p);
    }
    *mag = a;
    return s;
}

/* The shapes of the default CNN's convolution products (forward, dX, dW of
 * the second conv; forward and dW of the first) and edge cases: a single
 * output, whole tiles, one row or column past a tile or a block. */
static const int64_t shapes[][3] = {{64, 210, 288}, {288, 210, 64}, {288, 64, 210}, {32, 840, 9}, {9, 32, 840},
                                    {1, 1, 1},      {16, 16, 32},   {17, 33, 47},   {33, 17, 100}, {48, 48, 64},
                                    {5, 200, 3}};
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

static bool packers_available(void) {
    if (zg__cpu_has_avx512bf16()) return true;
    printf("  skipped: the bf16 packers need AVX-512 (BW, DQ), which this CPU lacks\n");
    return false;
}

/* ---- tests --------------------------------------------------------------- */

/* Each output within the float32 summation bound of the exact sum: 2K
 * additions, each rounding by at most 2^-24 of the partial sum's magnitude,
 * so |C - exact| <= 2K 2^-24 sum |a b| (the products are exact); with
 * acc, one more rounding of |C0 + product|. Columns from N to ldc and
 * everything outside C untouched (the buffers are exactly M x ldc). */
TEST(packed_kernel_on_the_model_within_the_summation_bound) {
    if (!packers_available()) return;
    faults = 0;
    for (int s = 0; s < NSHAPES; s++)
        for (int variant = 0; variant < 2; variant++) {
            const int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            const bool acc = variant == 1;
            const int64_t ldc = N + (variant ? 3 : 0);
            operands o = make_operands(M, N, K);
            float *C = malloc((size_t)(M * ldc) * sizeof *C), *C0 = malloc((size_t)(M * ldc) * sizeof *C0);
            for (int64_t i = 0; i < M * ldc; i++) C0[i] = C[i] = acc ? uniform() : 1234.5f;
            zg__amx_packed(M, N, o.Kp2, o.Ap, o.Bp, o.Npad, acc, C, ldc);
            double worst = 0;
            int untouched = 1;
            for (int64_t i = 0; i < M; i++) {
                for (int64_t j = 0; j < N; j++) {
                    double mag, ref = exact(&o, i, j, &mag);
                    if (acc) ref += C0[i * ldc + j];
                    const double tol = 2.0 * (double)K * 0x1p-24 * mag + (acc ? 0x1p-24 * fabs(ref) : 0) + 1e-30;
                    const double e = fabs(C[i * ldc + j] - ref) / tol;
                    if (!(e <= worst)) worst = e;
                }
                for (int64_t j = N; j < ldc; j++) untouched &= C[i * ldc + j] == C0[i * ldc + j];
            }
            if (!(worst <= 1.0) || !untouched)
                zgt_fail(__FILE__, __LINE__, "%lldx%lldx%lld acc=%d: worst error %.3g of its bound, padding %s",
                         (long long)M, (long long)N, (long long)K, (int)acc, worst, untouched ? "kept" : "written");
            free(C), free(C0);
            free_operands(&o);
        }
    CHECK(faults == 0);
    CHECK(!configured); /* every kernel releases the tiles */
}

/* acc adds the fresh product to C after computing it (C + product), as the
 * AVX512-BF16 kernel and zg__gemm's path do, so it equals the plain product
 * added afterwards, bit for bit. */
TEST(packed_kernel_accumulates_after_the_product) {
    if (!packers_available()) return;
    faults = 0;
    const int64_t M = 288, N = 64, K = 210;
    operands o = make_operands(M, N, K);
    float *P = malloc((size_t)(M * N) * sizeof *P), *C = malloc((size_t)(M * N) * sizeof *C);
    float *C0 = malloc((size_t)(M * N) * sizeof *C0);
    for (int64_t i = 0; i < M * N; i++) C0[i] = C[i] = 100.0f * uniform();
    zg__amx_packed(M, N, o.Kp2, o.Ap, o.Bp, o.Npad, false, P, N);
    zg__amx_packed(M, N, o.Kp2, o.Ap, o.Bp, o.Npad, true, C, N);
    int64_t differ = 0;
    for (int64_t i = 0; i < M * N; i++) differ += C[i] != C0[i] + P[i];
    CHECK(differ == 0);
    CHECK(faults == 0);
    free(P), free(C), free(C0);
    free_operands(&o);
}

/* The convolution's packed product and zg__gemm's AMX kernel (its own
 * packing to whole 32 x 32 blocks) take the same chunks of pairs from a
 * zeroed tile: the same bits, which is what lets the convolution's AMX
 * path keep zg__gemm's results (test_ops_conv checks it on the unit). The
 * epilogue of zg__gemm's kernel (+ bias, rounding to bf16) is then exactly
 * zg__bf16_epilogue's on those sums, edge blocks included. */
TEST(packed_kernel_same_bits_as_the_gemm_kernel_on_the_model) {
    if (!packers_available()) return;
    faults = 0;
    for (int s = 0; s < NSHAPES; s++) {
        const int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        operands o = make_operands(M, N, K);
        int64_t aw, bw;
        zg__bf16_amx_sizes(M, N, K, &aw, &bw);
        const int64_t Kp2 = (K + 31) / 32 * 16, Mpad = aw / Kp2, Npad = bw / Kp2;
        uint32_t *Ap = malloc((size_t)aw * sizeof *Ap), *Bp = malloc((size_t)bw * sizeof *Bp);
        zg__bf16_pack_a(true, false, M, K, o.A, Mpad, Kp2, Ap);
        zg__bf16_pack_b(true, false, K, N, o.B, Kp2, Npad, Bp);
        float *G = malloc((size_t)(M * N) * sizeof *G), *P = malloc((size_t)(M * N) * sizeof *P);
        float *R = malloc((size_t)(M * N) * sizeof *R), *bias = malloc((size_t)N * sizeof *bias);
        for (int64_t j = 0; j < N; j++) bias[j] = zg__round_bf16(uniform());
        const int64_t nb = Npad / 32, total = Mpad / 32 * nb;
        zg__amx_blocks(Ap, Bp, M, N, Kp2, Npad, nb, 0, total, NULL, false, G);
        zg__amx_packed(M, N, o.Kp2, o.Ap, o.Bp, o.Npad, false, P, N);
        zg__amx_blocks(Ap, Bp, M, N, Kp2, Npad, nb, 0, total, bias, true, R);
        int64_t differ = 0, epilogue = 0;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                differ += G[i * N + j] != P[i * N + j];
                epilogue += R[i * N + j] != zg__round_bf16(G[i * N + j] + bias[j]);
            }
        if (differ || epilogue)
            zgt_fail(__FILE__, __LINE__, "%lldx%lldx%lld: %lld outputs differ from zg__gemm's kernel, %lld epilogues",
                     (long long)M, (long long)N, (long long)K, (long long)differ, (long long)epilogue);
        free(Ap), free(Bp), free(G), free(P), free(R), free(bias);
        free_operands(&o);
    }
    CHECK(faults == 0);
}

/* The model's checks can fail: a product whose A tile has fewer rows than
 * its accumulator, and a tile used without a configuration, are reported. */
TEST(tile_model_rejects_mismatched_shapes) {
    zg__amx_config cfg;
    zg__amx_config_full(&cfg);
    cfg.rows[4] = 8;
    faults = 0;
    model_loadconfig(&cfg);
    model_dpbf16ps(0, 4, 6);
    CHECK(faults == 1);
    model_release();
    model_zero(0);
    CHECK(faults == 2);
    faults = 0;
}
