/* The library's heap allocations, with a fault-injection hook for tests
 * (SQLite's habit): every out-of-memory path can be made to run on
 * purpose. Disarmed, each call costs one predictable branch on a relaxed
 * load before the libc call. Only our own allocations come here, never
 * those of OpenBLAS, OpenMP or zlib. */
#include "util_internal.h"

#include <stdatomic.h>

/* Armed: count allocations and fail the fail_at-th (and, persistent, every
 * later one). Atomic because the loader's prefetch thread allocates too. */
static atomic_bool g_armed;
static atomic_llong g_count, g_failed, g_fail_at;
static atomic_bool g_persistent;

void zg__alloc_fail_after(int64_t n, bool persistent) {
    atomic_store(&g_armed, false);
    atomic_store(&g_count, 0);
    atomic_store(&g_failed, 0);
    atomic_store(&g_fail_at, n > 0 ? n : 0);
    atomic_store(&g_persistent, persistent);
    atomic_store(&g_armed, n != 0);
}

int64_t zg__alloc_count(void) { return atomic_load(&g_count); }

int64_t zg__alloc_failed(void) { return atomic_load(&g_failed); }

/* True when this allocation is to fail. */
static bool inject(void) {
    long long k = atomic_fetch_add(&g_count, 1) + 1, at = atomic_load(&g_fail_at);
    if (at <= 0 || k < at || (k > at && !atomic_load(&g_persistent))) return false;
    atomic_fetch_add(&g_failed, 1);
    return true;
}

#define INJECTED() (atomic_load_explicit(&g_armed, memory_order_relaxed) && inject())

void *zg__malloc(size_t n) { return INJECTED() ? NULL : malloc(n); }

void *zg__calloc(size_t n, size_t size) { return INJECTED() ? NULL : calloc(n, size); }

void *zg__realloc(void *p, size_t n) { return INJECTED() ? NULL : realloc(p, n); }

void *zg__aligned_alloc(size_t align, size_t n) { return INJECTED() ? NULL : aligned_alloc(align, n); }

char *zg__strdup(const char *s) { return INJECTED() ? NULL : strdup(s); }
