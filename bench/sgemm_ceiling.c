/* The GEMM ceiling of this machine for `make bench`: cblas_sgemm on
 * N x N float32 matrices with THREADS threads (the same OpenBLAS zgrad
 * links), median GFLOP/s over REPS calls after a warm-up call.
 *
 *     sgemm_ceiling THREADS [N] [REPS]
 *
 * Prints one JSON line. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_timing.h"
#include "zgrad.h"

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    int n = argc > 2 ? atoi(argv[2]) : 1024;
    int reps = argc > 3 ? atoi(argv[3]) : 30;
    if (threads < 1 || n < 1 || reps < 1) {
        fprintf(stderr, "usage: sgemm_ceiling THREADS [N] [REPS]\n");
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
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        gf[r] = 2.0 * n * (double)n * n / (now_s() - t0) / 1e9;
    }
    qsort(gf, (size_t)reps, sizeof *gf, cmp_double);
    printf("{\"n\": %d, \"threads\": %d, \"median_gflops\": %.2f, \"best_gflops\": %.2f, \"check\": %.4f, "
           "\"openblas\": \"%s\"}\n",
           n, threads, gf[reps / 2], gf[reps - 1], (double)c[nn / 2], openblas_get_config());
    free(a);
    free(b);
    free(c);
    free(gf);
    return 0;
}
