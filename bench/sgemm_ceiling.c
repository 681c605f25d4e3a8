/* The GEMM ceilings of this machine for `make bench`: cblas_sgemm on
 * N x N float32 matrices (the same OpenBLAS zgrad links), or with TYPE
 * bf16 the bf16 GEMM zgrad runs under autocast (zg__lp_gemm: float32
 * operands rounded to bf16 while packed, float32 sums, the kernel
 * zg_bf16_kernel_get() chose: AMX, AVX512-BF16 or the portable one), with
 * THREADS threads; median GFLOP/s over REPS calls after a warm-up call.
 *
 *     sgemm_ceiling THREADS [N] [REPS] [f32|bf16]
 *
 * Prints one JSON line. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels_internal.h"
#include "bench_timing.h"
#include "zgrad.h"

static const char *const KERNELS[] = {"portable", "avx512_bf16", "amx"};

/* One N x N x N product of the chosen type. */
static void product(bool bf16, int n, const float *a, const float *b, float *c) {
    if (!bf16) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        return;
    }
    if (zg__lp_gemm(ZG_AUTOCAST_BF16, false, false, n, n, n, a, b, NULL, c)) {
        fprintf(stderr, "sgemm_ceiling: %s\n", zg_last_error());
        exit(1);
    }
    zg_arena_reset();
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    int n = argc > 2 ? atoi(argv[2]) : 1024;
    int reps = argc > 3 ? atoi(argv[3]) : 30;
    const bool bf16 = argc > 4 && !strcmp(argv[4], "bf16");
    if (threads < 1 || n < 1 || reps < 1 || (argc > 4 && !bf16 && strcmp(argv[4], "f32"))) {
        fprintf(stderr, "usage: sgemm_ceiling THREADS [N] [REPS] [f32|bf16]\n");
        return 2;
    }
    /* The same thread setting zgrad applies (OpenMP and OpenBLAS). */
    zg_set_num_threads(threads);
    size_t nn = (size_t)n * n;
    float *a = malloc(nn * sizeof *a), *b = malloc(nn * sizeof *b), *c = malloc(nn * sizeof *c);
    double *gf = malloc(sizeof *gf * (size_t)reps);
    if (!a || !b || !c || !gf) return 1;
    for (size_t i = 0; i < nn; i++) {
        a[i] = (float)((i * 7) % 13) / 13.0f - 0.5f;
        b[i] = (float)((i * 5) % 11) / 11.0f - 0.5f;
    }
    product(bf16, n, a, b, c);
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        product(bf16, n, a, b, c);
        gf[r] = 2.0 * n * (double)n * n / (now_s() - t0) / 1e9;
    }
    qsort(gf, (size_t)reps, sizeof *gf, cmp_double);
    printf("{\"n\": %d, \"threads\": %d, \"type\": \"%s\", \"kernel\": \"%s\", \"median_gflops\": %.2f, "
           "\"best_gflops\": %.2f, \"check\": %.4f, \"openblas\": \"%s\"}\n",
           n, threads, bf16 ? "bf16" : "f32", bf16 ? KERNELS[zg_bf16_kernel_get()] : "openblas", gf[reps / 2],
           gf[reps - 1], (double)c[nn / 2], openblas_get_config());
    free(a);
    free(b);
    free(c);
    free(gf);
    return 0;
}
