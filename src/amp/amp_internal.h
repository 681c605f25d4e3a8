/* Private interface of the mixed-precision layer shared by the ops.
 *
 * Inside an autocast region the matrix products of zg_matmul, zg_linear
 * and zg_conv2d run in the region's type; every one of them goes through
 * zg__gemm (src/ops/matmul.c), which takes the type as an argument: the
 * forward passes zg_autocast_get(), the node keeps it, and the backward
 * passes the kept type, so a backward outside the region still computes
 * as its forward did. */
#ifndef ZG_AMP_INTERNAL_H
#define ZG_AMP_INTERNAL_H

#include "../internal.h"
#include "../kernels/lowp.h"

/* C[M,N] = op(A) op(B), row-major with leading dimensions lda, ldb, ldc;
 * op(A) = A^T when ta (A stored [K,M]), op(B) = B^T when tb (B stored
 * [N,K]).
 * t == ZG_AUTOCAST_OFF: cblas_sgemm, C = op(A) op(B) + beta C; a bias
 *   [N] is first copied into every row of C and beta taken as 1. flags and
 *   scratch are unused.
 * bf16 / fp16: zg__lp_gemm_ex with flags and scratch: operands rounded to
 *   t, float32 accumulation, + round_t(bias), one rounding of C (unless
 *   ZG__LP_NO_ROUND). Needs beta == 0 and contiguous operands (lda, ldb,
 *   ldc the natural ones).
 * ZG_OK, or an error code with the error set. */
int zg__gemm(zg_autocast_type t, unsigned flags, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A,
             int64_t lda, const float *B, int64_t ldb, const float *bias, float beta, float *C, int64_t ldc,
             void *scratch);

/* The name of an op's node: base itself for float32, else base with the
 * type appended ("linear_bf16"), in arena memory (base if that fails). */
const char *zg__autocast_node_name(const char *base, zg_autocast_type t);

#endif
