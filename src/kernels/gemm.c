/* zg__gemm: the one GEMM dispatcher behind every matrix product of the ops
 * (matmul, linear, conv2d): cblas_sgemm for float32, split across our
 * OpenMP threads where that pays, and the low-precision kernels (bf16 /
 * fp16, lowp_convert.c and bf16_*.c) inside autocast regions. */
#include "kernels_internal.h"

#include <cblas.h>
#include <limits.h>
#include <omp.h>

static void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float beta, float *C, int64_t ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (blasint)M,
                (blasint)N, (blasint)K, 1.0f, A, (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
}

/* float32 GEMMs from at least this many flops are computed as
 * ZG__GEMM_PARTS blocks of whole rows (or columns) of C, multiples of 16
 * wide, each one single-threaded sgemm; our OpenMP threads take a block
 * each where they can (OpenBLAS's OpenMP build runs serially inside a
 * parallel region), and OpenBLAS's own threaded driver, which mallocs a job
 * table on every call, is never entered. The blocks depend on the shape
 * only, never on the thread count or on whether the call runs inside a
 * parallel region: OpenBLAS's kernels may round an element at a block's
 * edge differently from one inside a block (its Haswell / Zen sgemm does,
 * by 1 ulp), so only a fixed partition gives the same bits for any thread
 * count. Two parts is the split that two threads take whole; with more
 * threads these GEMMs use two of them. A caller that runs its products
 * whole on one thread each (a convolution's per-sample GEMMs, a linear
 * layer's dx beside its dW) passes ZG__GEMM_WHOLE, also with one thread. */
#define SPLIT_MIN_FLOPS (4 << 20)
#define ZG__GEMM_PARTS 2
/* OpenBLAS threads a GEMM from M*N*K = 65536 * 4 on (its interface/gemm.c). */
#define OPENBLAS_THREAD_MIN (65536 * 4)

int zg__sgemm(unsigned flags, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
              const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    const int64_t T = zg__max_threads();
    /* Our threads take over only from the calling thread (inside a parallel
     * region OpenBLAS is serial already) and with OpenBLAS's OpenMP build
     * (the pthread build keeps its own pool and threads by itself). */
    const bool ours = !(flags & ZG__LP_SERIAL) && T > 1 && !omp_in_parallel() && openblas_get_parallel() == 2;
    if (!(flags & ZG__GEMM_WHOLE) && 2 * M * N * K >= SPLIT_MIN_FLOPS) {
        const bool by_cols = N >= M;
        const int64_t span = by_cols ? N : M;
        const int64_t per = ((span + ZG__GEMM_PARTS - 1) / ZG__GEMM_PARTS + 15) / 16 * 16;
        const int64_t parts = (span + per - 1) / per;
        ZG_PARALLEL_FOR(part, parts, ours ? 2 : INT64_MAX, {
            const int64_t lo = part * per, hi = lo + per < span ? lo + per : span;
            if (by_cols)
                sgemm(ta, tb, M, hi - lo, K, A, lda, tb ? B + lo * ldb : B + lo, ldb, beta, C + lo, ldc);
            else
                sgemm(ta, tb, hi - lo, N, K, ta ? A + lo : A + lo * lda, lda, B, ldb, beta, C + lo * ldc, ldc);
        });
        return ZG_OK;
    }
    if (ours && M * N * K >= OPENBLAS_THREAD_MIN) {
        /* OpenBLAS would thread it (and malloc, and split C its own way).
         * Its OpenMP build takes its thread count from the calling thread's
         * omp_get_max_threads() on every call: one thread here runs it
         * serially, without the fork and join of a parallel region. */
        omp_set_num_threads(1);
        sgemm(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
        omp_set_num_threads((int)T);
        return ZG_OK;
    }
    sgemm(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
    return ZG_OK;
}

int zg__gemm(zg_autocast_type t, unsigned flags, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A,
             int64_t lda, const float *B, int64_t ldb, const float *bias, float beta, float *C, int64_t ldc,
             void *scratch) {
    if (t != ZG_AUTOCAST_OFF) {
        if (beta != 0.0f || lda != (ta ? M : K) || ldb != (tb ? K : N) || ldc != N)
            return zg__fail(ZG_ERR_STATE, "zg__gemm: the %s GEMM takes contiguous operands and beta 0",
                            t == ZG_AUTOCAST_BF16 ? "bf16" : "fp16");
        return zg__lp_gemm_ex(t, flags, ta, tb, M, N, K, A, B, bias, C, scratch);
    }
    if (M == 0 || N == 0) return ZG_OK;
    /* The bias is pre-filled so that the product adds to it (beta = 1). */
    if (bias) {
        for (int64_t r = 0; r < M; r++) memcpy(C + r * ldc, bias, (size_t)N * sizeof(float));
        beta = 1.0f;
    }
    /* Empty sums here: BLAS rejects a leading dimension of 0. */
    if (K == 0) {
        if (beta == 0.0f)
            for (int64_t r = 0; r < M; r++) memset(C + r * ldc, 0, (size_t)N * sizeof(float));
        return ZG_OK;
    }
    return zg__sgemm(flags, ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

