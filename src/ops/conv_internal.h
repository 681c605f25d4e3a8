/* Private to src/ops/conv.c and its tests. */
#ifndef ZG_OPS_CONV_INTERNAL_H
#define ZG_OPS_CONV_INTERNAL_H

#include <stdbool.h>

/* When true, zg_conv2d always takes the general im2col layout, never the
 * padded-width one (the tests compare the two; false by default). Read at
 * each zg_conv2d call on the calling thread; set it only between calls. */
extern bool zg__conv_general_only;
/* When true, zg_conv2d runs its float32 products through sgemm only, never
 * through its own kernel (zg__sgemm_offsets; the tests compare the two;
 * false by default). Set it only between calls, as above. */
extern bool zg__conv_blas_only;

#endif
