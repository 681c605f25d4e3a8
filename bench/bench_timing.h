/* Timing helpers shared by the GEMM micro-benchmarks (header-only: each
 * bench/ program is one file). */
#ifndef ZG_BENCH_TIMING_H
#define ZG_BENCH_TIMING_H

#include <time.h>

/* Monotonic seconds. */
static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* qsort comparator for doubles, ascending. */
static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
