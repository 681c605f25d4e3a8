/* The 2x2 stride-2 max-pool plane kernels of src/ops/pool.c, shared with
 * the convolution that pools its own output (src/ops/conv.c). */
#ifndef ZG_OPS_POOL_INTERNAL_H
#define ZG_OPS_POOL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

/* Whether the kernels below take planes W wide (their stage buffers hold
 * two output rows at least). */
bool zg__max_pool_2x2_fits(int64_t W);
/* y [H/2, W/2] = the maxima of the 2x2 windows of x [H, W] (H, W >= 2),
 * with PyTorch's rule (the first maximum in scan order; NaN wins, the last
 * one); win (NULL: not wanted) gets each winner's place 0 1 / 2 3. */
void zg__max_pool_2x2_plane(const float *x, int64_t H, int64_t W, float *y, uint8_t *win);
/* d [H, W]: each gradient of s [H/2, W/2] at its window's winner, +0
 * everywhere else. */
void zg__max_pool_2x2_plane_backward(const float *s, const uint8_t *win, int64_t H, int64_t W, float *d);

#endif
