/* The default CNN's per-sample convolution GEMMs on one thread: OpenBLAS's
 * cblas_sgemm on im2col'd operands against zgrad's offset-table kernel
 * (src/kernels/sgemm_offsets.c) reading the padded planes directly, in
 * GFLOP/s (median of REPS rounds of 64 samples), and whether the two give
 * the same bits.
 *
 *     conv_gemm [REPS]
 *
 * Shapes (second conv, 32 -> 64 channels, 3x3, 14x14 in padded rows of 15:
 * Pc = 210 columns, K = 288): forward C[64,210] = W[64,288] cols[288,210];
 * dX dcols[288,210] = W^T[288,64] dY[64,210]; dW^T[288,64] = cols dY^T,
 * accumulated over the samples. One JSON line per shape. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels_internal.h"
#include "bench_timing.h"
#include "zgrad.h"

enum { C_IN = 32, C_OUT = 64, H = 14, WP = 15, KT = 9 * C_IN, PC = H * WP, PL = (H + 2) * WP + 2, NS = 64 };

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / 16777216.0f - 0.5f;
}

typedef struct {
    float *xp, *cols, *w, *wp, *wtp, *dy, *dyt, *c1, *c2;
    int32_t *xoff, *yoff, *toff;
} bufs;

/* One round (64 samples) of shape s by side k (0 OpenBLAS, 1 ours) into out. */
static void round_of(const bufs *b, int s, int k, float *out) {
    for (int n = 0; n < NS; n++) {
        if (s == 0 && k == 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C_OUT, PC, KT, 1.0f, b->w, KT, b->cols, PC, 0.0f,
                        out, PC);
        if (s == 0 && k == 1) zg__sgemm_offsets(C_OUT, PC, KT, b->wp, NULL, NULL, b->xp, b->xoff, false, out, PC);
        if (s == 1 && k == 0)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, KT, PC, C_OUT, 1.0f, b->w, KT, b->dy, PC, 0.0f, out,
                        PC);
        if (s == 1 && k == 1) zg__sgemm_offsets(KT, PC, C_OUT, b->wtp, NULL, NULL, b->dy, b->yoff, false, out, PC);
        if (s == 2 && k == 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, KT, C_OUT, PC, 1.0f, b->cols, PC, b->dy, PC,
                        n ? 1.0f : 0.0f, out, C_OUT);
        if (s == 2 && k == 1) zg__sgemm_offsets(KT, C_OUT, PC, b->xp, b->xoff, NULL, b->dyt, b->toff, n > 0, out, C_OUT);
    }
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 20;
    if (reps < 1 || !zg__sgemm_offsets_available()) {
        fprintf(stderr, "usage: conv_gemm [REPS] (needs AVX-512F)\n");
        return 2;
    }
    zg_set_num_threads(1);
    bufs b;
    b.xp = calloc(C_IN * PL, sizeof(float));
    b.cols = malloc(sizeof(float) * KT * PC);
    b.w = malloc(sizeof(float) * C_OUT * KT);
    b.wp = malloc(sizeof(float) * (size_t)zg__sgemm_packed_floats(C_OUT, KT));
    b.wtp = malloc(sizeof(float) * (size_t)zg__sgemm_packed_floats(KT, C_OUT));
    b.dy = malloc(sizeof(float) * C_OUT * PC);
    b.dyt = malloc(sizeof(float) * C_OUT * PC);
    b.c1 = malloc(sizeof(float) * KT * PC);
    b.c2 = malloc(sizeof(float) * KT * PC);
    b.xoff = malloc(sizeof(int32_t) * KT);
    b.yoff = malloc(sizeof(int32_t) * C_OUT);
    b.toff = malloc(sizeof(int32_t) * PC);
    double *gf = malloc(sizeof(double) * (size_t)reps);
    unsigned seed = 1;
    for (int c = 0; c < C_IN; c++)
        for (int h = 0; h < H; h++)
            for (int w = 0; w < H; w++) b.xp[c * PL + (h + 1) * WP + 1 + w] = frand(&seed);
    for (int i = 0; i < C_OUT * KT; i++) b.w[i] = frand(&seed);
    for (int i = 0; i < C_OUT * PC; i++) b.dy[i] = frand(&seed);
    for (int co = 0; co < C_OUT; co++)
        for (int p = 0; p < PC; p++) b.dyt[p * C_OUT + co] = b.dy[co * PC + p];
    for (int c = 0; c < C_IN; c++)
        for (int t = 0; t < 9; t++) {
            b.xoff[c * 9 + t] = c * PL + t / 3 * WP + t % 3;
            memcpy(b.cols + (c * 9 + t) * PC, b.xp + b.xoff[c * 9 + t], sizeof(float) * PC);
        }
    for (int co = 0; co < C_OUT; co++) b.yoff[co] = co * PC;
    for (int p = 0; p < PC; p++) b.toff[p] = p * C_OUT;
    zg__sgemm_pack_a(C_OUT, KT, b.w, KT, 1, b.wp);
    zg__sgemm_pack_a(KT, C_OUT, b.w, 1, KT, b.wtp);
    const char *names[3] = {"forward M=64 N=210 K=288", "dX M=288 N=210 K=64", "dW^T M=288 N=64 K=210"};
    const double flops = 2.0 * C_OUT * PC * KT * NS;
    for (int s = 0; s < 3; s++) {
        double med[2];
        for (int k = 0; k < 2; k++) {
            float *out = k ? b.c2 : b.c1;
            round_of(&b, s, k, out);
            for (int r = 0; r < reps; r++) {
                double t0 = now_s();
                round_of(&b, s, k, out);
                gf[r] = flops / (now_s() - t0) / 1e9;
            }
            qsort(gf, (size_t)reps, sizeof *gf, cmp_double);
            med[k] = gf[reps / 2];
        }
        const size_t n = (size_t)(s == 2 ? KT * C_OUT : (s == 0 ? C_OUT : KT) * PC);
        printf("{\"shape\": \"%s\", \"openblas_gflops\": %.1f, \"zgrad_gflops\": %.1f, \"same_bits\": %s}\n", names[s],
               med[0], med[1], memcmp(b.c1, b.c2, n * sizeof(float)) ? "false" : "true");
    }
    return 0;
}
