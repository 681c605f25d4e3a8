/* The low-precision GEMM: kernel choice (CPU features, ZG_NO_BF16_ISA),
 * the portable kernel with its epilogue (bias, output rounding; the
 * instruction kernels have their own), and the column sums of a bias
 * gradient.
 *
 * Portable kernel: the operands are rounded to bf16 / fp16 values held in
 * float32 and multiplied with BLAS sgemm. A product of two bf16 (8-bit
 * significands) or two fp16 (11-bit) values is exact in float32 (24 bits),
 * so this is exactly "16-bit inputs, float32 accumulation"; only the
 * summation order is BLAS's. fp16 always takes this kernel. */
#include "kernels_internal.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#define ZG_X86 1
#endif

/* ---- CPU features ------------------------------------------------------ */

#ifdef ZG_X86
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* AVX-512 F + BW + DQ + BF16 and an OS that saves the zmm state (XCR0
 * bits 1, 2 and 5-7). */
static bool detect_avx512bf16(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false; /* OSXSAVE */
    if ((xgetbv0() & 0xe6) != 0xe6) return false;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (!(b & (1u << 16)) || !(b & (1u << 17)) || !(b & (1u << 30))) return false; /* f, dq, bw */
    if (a < 1 || !__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
    return (a & (1u << 5)) != 0; /* avx512_bf16 */
}

/* AMX-TILE + AMX-BF16 (the kernel packs with AVX-512 too), the tile state
 * enabled in XCR0 (bits 17, 18) and, on Linux, the per-process permission
 * to use the 8 KiB tile data (arch_prctl ARCH_REQ_XCOMP_PERM). */
static bool detect_amx(void) {
    unsigned a, b, c, d;
    if (!detect_avx512bf16()) return false;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (!(d & (1u << 22)) || !(d & (1u << 24))) return false;
    if ((xgetbv0() & (3u << 17)) != (3u << 17)) return false;
#if defined(__linux__)
    const long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
    if (syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) != 0) return false;
#endif
    return true;
}
#endif

static pthread_once_t features_once = PTHREAD_ONCE_INIT;
static bool has_avx512bf16, has_amx;
static atomic_int kernel_choice;

static void detect_features(void) {
#ifdef ZG_X86
    has_avx512bf16 = detect_avx512bf16();
    has_amx = has_avx512bf16 && detect_amx();
#endif
    const char *env = getenv("ZG_NO_BF16_ISA");
    bool forbid = env && env[0] && strcmp(env, "0") != 0;
    int k = ZG_BF16_KERNEL_PORTABLE;
    if (!forbid) k = has_amx ? ZG_BF16_KERNEL_AMX : has_avx512bf16 ? ZG_BF16_KERNEL_AVX512 : k;
    atomic_store(&kernel_choice, k);
}

bool zg__cpu_has_avx512bf16(void) {
    pthread_once(&features_once, detect_features);
    return has_avx512bf16;
}

bool zg__cpu_has_amx_bf16(void) {
    pthread_once(&features_once, detect_features);
    return has_amx;
}

zg_bf16_kernel zg_bf16_kernel_get(void) {
    pthread_once(&features_once, detect_features);
    return (zg_bf16_kernel)atomic_load(&kernel_choice);
}

bool zg_bf16_kernel_available(zg_bf16_kernel kernel) {
    switch (kernel) {
    case ZG_BF16_KERNEL_PORTABLE: return true;
    case ZG_BF16_KERNEL_AVX512: return zg__cpu_has_avx512bf16();
    case ZG_BF16_KERNEL_AMX: return zg__cpu_has_amx_bf16();
    }
    return false;
}

int zg_bf16_kernel_set(zg_bf16_kernel kernel) {
    if (kernel != ZG_BF16_KERNEL_PORTABLE && kernel != ZG_BF16_KERNEL_AVX512 && kernel != ZG_BF16_KERNEL_AMX)
        return zg__fail(ZG_ERR_ARG, "zg_bf16_kernel_set: unknown kernel %d", (int)kernel);
    /* Detect first, so that the default choice never overrides this one. */
    pthread_once(&features_once, detect_features);
    if (!zg_bf16_kernel_available(kernel))
        return zg__fail(ZG_ERR_ARG, "zg_bf16_kernel_set: the %s kernel is not available on this CPU / OS",
                        kernel == ZG_BF16_KERNEL_AMX ? "AMX" : "AVX512-BF16");
    atomic_store(&kernel_choice, (int)kernel);
    return ZG_OK;
}

/* ---- kernels ------------------------------------------------------------ */

void zg__bf16_gemm_packed(int64_t M, int64_t N, int64_t K, int64_t Kp2, const uint32_t *Ap, const uint32_t *Bp,
                          int64_t Npad, bool acc, float *C, int64_t ldc) {
    if (zg_bf16_kernel_get() == ZG_BF16_KERNEL_AMX) zg__bf16_gemm_packed_amx(M, N, Kp2, Ap, Bp, Npad, acc, C, ldc);
    else zg__bf16_gemm_packed_avx512(M, N, K, Kp2, Ap, Bp, Npad, acc, C, ldc);
}

/* Ar, Br: room for the rounded operands (M*K and K*N floats). */
/* The rounded operands' float32 product goes through zg__sgemm, whose
 * blocks do not depend on the threads, so a serial call from inside a
 * parallel loop gives the bits of a threaded one. */
static void portable_gemm(zg_autocast_type t, unsigned flags, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                          const float *A, const float *B, float *C, float *Ar, float *Br) {
    zg__round_lp_copy(t, Ar, A, M * K);
    zg__round_lp_copy(t, Br, B, K * N);
    zg__sgemm(flags, ta, tb, M, N, K, Ar, ta ? M : K, Br, tb ? K : N, 0.0f, C, N);
}

static void add_row(double *acc, const float *row, int64_t n) {
#pragma omp simd
    for (int64_t j = 0; j < n; j++) acc[j] += row[j];
}

int zg__lp_column_sums(zg_autocast_type t, const float *G, int64_t rows, int64_t cols, float *out) {
    /* The instruction kernels imply AVX-512; the portable choice (forced
     * by ZG_NO_BF16_ISA) keeps to portable code here too. */
    if (t == ZG_AUTOCAST_BF16 && zg_bf16_kernel_get() != ZG_BF16_KERNEL_PORTABLE) {
        zg__bf16_column_sums_avx512(G, rows, cols, out);
        return ZG_OK;
    }
    double *acc = zg__arena_calloc((size_t)(cols ? cols : 1) * sizeof *acc);
    float *row = zg__arena_alloc((size_t)(cols ? cols : 1) * sizeof *row);
    if (!acc || !row) return zg__fail(ZG_ERR_NOMEM, "zg_autocast: out of memory");
    for (int64_t r = 0; r < rows; r++) {
        zg__round_lp_copy(t, row, G + r * cols, cols);
        add_row(acc, row, cols);
    }
    for (int64_t j = 0; j < cols; j++) out[j] = (float)acc[j];
    zg__round_lp_array(t, out, cols);
    return ZG_OK;
}

static void add_round_row(zg_autocast_type t, bool round, float *row, const float *bias, int64_t n) {
    if (bias) {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) row[j] += bias[j];
    }
    if (round) zg__round_lp_array(t, row, n);
}

static int64_t align16(int64_t floats) { return (floats + 15) / 16 * 16; }

size_t zg__lp_gemm_scratch(int64_t M, int64_t N, int64_t K) {
    /* The largest of the three kernels' needs, each region 64-byte aligned:
     * the rounded bias, then the packed (or rounded) operands. */
    int64_t a1, b1, a2, b2;
    zg__bf16_amx_sizes(M, N, K, &a1, &b1);
    zg__bf16_avx512_sizes(M, N, K, &a2, &b2);
    int64_t ops = align16(M * K) + align16(K * N);
    if (a1 + b1 > ops) ops = a1 + b1;
    if (a2 + b2 > ops) ops = a2 + b2;
    return (size_t)(align16(N) + align16(ops)) * sizeof(float);
}

/* The product; its scratch is `scratch` when serial, else the arena's. */
static int lp_gemm(zg_autocast_type t, unsigned flags, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                   const float *A, const float *B, const float *bias, float *C, void *scratch) {
    const bool serial = flags & ZG__LP_SERIAL, round = !(flags & ZG__LP_NO_ROUND);
    float *ops = serial ? (float *)scratch + align16(N) : NULL;
    float *br = NULL;
    if (bias) {
        br = serial ? scratch : zg__arena_alloc((size_t)N * sizeof(float));
        if (!br) return zg__fail(ZG_ERR_NOMEM, "zg_autocast: out of memory");
        zg__round_lp_copy(t, br, bias, N);
    }
    zg_bf16_kernel k = t == ZG_AUTOCAST_BF16 && K > 0 ? zg_bf16_kernel_get() : ZG_BF16_KERNEL_PORTABLE;
    /* The instruction kernels add the bias and round in their epilogue. */
    if (k == ZG_BF16_KERNEL_AMX) return zg__bf16_gemm_amx(flags, ta, tb, M, N, K, A, B, br, C, ops);
    if (k == ZG_BF16_KERNEL_AVX512) return zg__bf16_gemm_avx512(flags, ta, tb, M, N, K, A, B, br, C, ops);
    if (K == 0) {
        memset(C, 0, (size_t)(M * N) * sizeof(float));
    } else {
        float *Ar = serial ? ops : zg__arena_alloc((size_t)(M * K) * sizeof(float));
        float *Br = serial ? ops + align16(M * K) : zg__arena_alloc((size_t)(K * N) * sizeof(float));
        if (!Ar || !Br)
            return zg__fail(ZG_ERR_NOMEM, "zg_autocast: out of memory for a %lldx%lldx%lld GEMM", (long long)M,
                            (long long)N, (long long)K);
        portable_gemm(t, flags, ta, tb, M, N, K, A, B, C, Ar, Br);
    }
    /* Epilogue: + round_t(bias), then one rounding of the float32 sum. */
    if (!br && !round) return ZG_OK;
    const int64_t rows_min = M * N >= 65536 && !serial ? 1 : INT64_MAX;
    ZG_PARALLEL_FOR(i, M, rows_min, { add_round_row(t, round, C + i * N, br, N); });
    return ZG_OK;
}

int zg__lp_gemm_ex(zg_autocast_type t, unsigned flags, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                   const float *A, const float *B, const float *bias, float *C, void *scratch) {
    if (M == 0 || N == 0) return ZG_OK;
    if (flags & ZG__LP_SERIAL) return lp_gemm(t, flags, ta, tb, M, N, K, A, B, bias, C, scratch);
    /* The packed (or rounded) operands and the rounded bias are the call's
     * own: their arena memory is handed out again after it. */
    const size_t mark = zg_arena_mark();
    int rc = lp_gemm(t, flags, ta, tb, M, N, K, A, B, bias, C, NULL);
    zg_arena_release(mark);
    return rc;
}

int zg__lp_gemm(zg_autocast_type t, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A,
                const float *B, const float *bias, float *C) {
    return zg__lp_gemm_ex(t, 0, ta, tb, M, N, K, A, B, bias, C, NULL);
}
