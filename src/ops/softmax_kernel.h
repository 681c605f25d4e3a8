/* The softmax kernel, shared by softmax.c and the losses (cross entropy
 * computes log_softmax rows with it). Private to src/ops. */
#ifndef ZG_OPS_SOFTMAX_KERNEL_H
#define ZG_OPS_SOFTMAX_KERNEL_H

#include <stdbool.h>
#include <stdint.h>

/* x and y seen as [outer, size, inner]: (log_)softmax over the middle dim,
 * stable (the max is subtracted first). */
void zg__softmax_kernel(const float *x, float *y, int64_t outer, int64_t size, int64_t inner, bool log_out);

#endif
