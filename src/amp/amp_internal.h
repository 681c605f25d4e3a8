/* Private interface of the mixed-precision layer: the autocast versions of
 * matmul and linear that src/ops/matmul.c dispatches to inside an autocast
 * region (after it has validated the arguments). */
#ifndef ZG_AMP_INTERNAL_H
#define ZG_AMP_INTERNAL_H

#include "../internal.h"

/* a [B?,rows,k] @ b [B?,k,m] (ndim 2 or 3, B = 1 for 2-D), in the type of
 * the current autocast region. */
zg_tensor *zg__autocast_matmul(zg_tensor *a, zg_tensor *b, int64_t B, int64_t rows, int64_t k, int64_t m);
/* x [..., in] (N rows) @ w [out,in]^T + b [out] (b may be NULL). */
zg_tensor *zg__autocast_linear(zg_tensor *x, zg_tensor *w, zg_tensor *b, int64_t N, int64_t in, int64_t out);

#endif
