/* Private helpers of the element-wise, reduction and activation ops
 * (elementwise.c, reduce.c, activation.c). Not part of ops_internal.h: only
 * these files use them. */
#ifndef ZG_OPS_POINTWISE_H
#define ZG_OPS_POINTWISE_H

#include "ops_internal.h"

/* Validates a float32 input of a unary op and allocates its result (arena,
 * same shape). NULL and an error naming `fn` on bad input. */
static inline zg_tensor *zg__unary_out(const char *fn, const zg_tensor *a) {
    if (zg__check_f32(fn, a, "input")) return NULL;
    return zg__empty_like(a);
}

/* Sum of n floats, accumulated in double with four independent partial
 * sums (accurate for any length, and not bound by one add's latency). */
static inline double zg__fsum(const float *x, int64_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += x[i];
        s1 += x[i + 1];
        s2 += x[i + 2];
        s3 += x[i + 3];
    }
    for (; i < n; i++) s0 += x[i];
    return (s0 + s1) + (s2 + s3);
}

/* Loops whose body is plain arithmetic are marked `omp simd`: GCC's -O2
 * cost model would otherwise leave them scalar (branchy for relu and
 * friends). Loops that call libm (expf, tanhf, ...) stay unmarked, since no
 * vector variant exists without -ffast-math and clang warns when it cannot
 * honour the mark. */
#ifdef _OPENMP
#define ZG_SIMD _Pragma("omp simd")
#else
#define ZG_SIMD
#endif

/* Element loops are memory-bound: above this many elements each thread
 * takes one contiguous chunk, so the cores' bandwidth adds up. */
#define ZG_MAP_PAR_MIN 32768

/* out[i] = EXPR for every element, with `x` bound to in[i]. */
#define ZG_MAP1_(PRAGMA, out, in, EXPR)                                                                        \
    do {                                                                                                       \
        const float *restrict zg_src_ = zg__f32(in);                                                           \
        float *restrict zg_dst_ = zg__f32(out);                                                                \
        ZG_PARALLEL_CHUNKS(zg_lo_, zg_hi_, (in)->numel, ZG_MAP_PAR_MIN, {                                       \
            PRAGMA for (int64_t zg_i_ = zg_lo_; zg_i_ < zg_hi_; zg_i_++) {                                      \
                const float x = zg_src_[zg_i_];                                                                \
                zg_dst_[zg_i_] = (EXPR);                                                                       \
            }                                                                                                  \
        });                                                                                                    \
    } while (0)

/* out[i] = EXPR with `g` bound to gin[i] and `x` to other[i] (a backward
 * that combines the incoming gradient with one saved tensor). Both are
 * loaded unconditionally, so selects between them vectorise. */
#define ZG_MAP2_(PRAGMA, out, gin, other, EXPR)                                                                \
    do {                                                                                                       \
        const float *restrict zg_g_ = zg__f32(gin);                                                            \
        const float *restrict zg_x_ = zg__f32(other);                                                          \
        float *restrict zg_dst_ = zg__f32(out);                                                                \
        ZG_PARALLEL_CHUNKS(zg_lo_, zg_hi_, (gin)->numel, ZG_MAP_PAR_MIN, {                                      \
            PRAGMA for (int64_t zg_i_ = zg_lo_; zg_i_ < zg_hi_; zg_i_++) {                                      \
                const float g = zg_g_[zg_i_], x = zg_x_[zg_i_];                                                \
                zg_dst_[zg_i_] = (EXPR);                                                                       \
            }                                                                                                  \
        });                                                                                                    \
    } while (0)

/* Arithmetic bodies (vectorised) and bodies that call libm (scalar). */
#define ZG_MAP1(out, in, EXPR) ZG_MAP1_(ZG_SIMD, out, in, EXPR)
#define ZG_MAP2(out, gin, other, EXPR) ZG_MAP2_(ZG_SIMD, out, gin, other, EXPR)
#define ZG_MAP1_LIBM(out, in, EXPR) ZG_MAP1_(, out, in, EXPR)
#define ZG_MAP2_LIBM(out, gin, other, EXPR) ZG_MAP2_(, out, gin, other, EXPR)

#endif
