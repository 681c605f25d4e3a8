/* Autocast regions: the per-thread region type, and what the ops that
 * honour it share. It lives beside grad mode: both are per-thread modes
 * that the ops read when they run and record.
 *
 * The region type is per thread and nests on a small stack, like grad mode.
 * Inside a bf16 / fp16 region zg_matmul, zg_linear (src/ops/matmul.c) and
 * zg_conv2d (src/ops/conv.c) compute their products in that type through
 * zg__gemm, as PyTorch's CPU autocast does: inputs rounded to the type,
 * float32 accumulation, one rounding of the result; their nodes keep the
 * type for the backward. Everything else stays float32. */
#include "autograd_internal.h"

#include <stdio.h>

/* ---- region stack ------------------------------------------------------ */

#define ZG_AUTOCAST_STACK 64

static _Thread_local zg_autocast_type current;
static _Thread_local zg_autocast_type saved[ZG_AUTOCAST_STACK];
static _Thread_local int depth;

int zg_autocast_enter(zg_autocast_type type) {
    if (type != ZG_AUTOCAST_OFF && type != ZG_AUTOCAST_BF16 && type != ZG_AUTOCAST_FP16)
        return zg__fail(ZG_ERR_ARG, "zg_autocast_enter: unknown type %d (ZG_AUTOCAST_OFF, _BF16 or _FP16)",
                        (int)type);
    if (depth == ZG_AUTOCAST_STACK)
        return zg__fail(ZG_ERR_STATE, "zg_autocast_enter: regions nested deeper than %d", ZG_AUTOCAST_STACK);
    saved[depth++] = current;
    current = type;
    return ZG_OK;
}

void zg_autocast_exit(void) {
    if (depth == 0) return;
    current = saved[--depth];
}

zg_autocast_type zg_autocast_get(void) { return current; }

/* ---- shared by the ops ---------------------------------------------- */

const char *zg__autocast_node_name(const char *base, zg_autocast_type t) {
    if (t == ZG_AUTOCAST_OFF) return base;
    size_t n = strlen(base) + 6;
    char *s = zg__arena_alloc(n);
    if (!s) return base;
    snprintf(s, n, "%s_%s", base, t == ZG_AUTOCAST_BF16 ? "bf16" : "fp16");
    return s;
}
