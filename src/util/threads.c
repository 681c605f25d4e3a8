/* Threads: one count for the OpenMP loops and OpenBLAS, and the count for
 * code that splits work by hand. */
#include "util_internal.h"

#include <cblas.h>
#include <omp.h>

int zg_set_num_threads(int n) {
    if (n < 1) return zg__fail(ZG_ERR_ARG, "zg_set_num_threads: need n >= 1 (got %d)", n);
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
    return ZG_OK;
}

int zg__max_threads(void) { return omp_get_max_threads(); }
