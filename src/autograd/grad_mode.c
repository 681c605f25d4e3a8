/* Grad mode: per thread, as in PyTorch. no_grad scopes nest by saving the
 * previous mode on a small stack. */
#include "autograd_internal.h"

#define ZG_GRAD_MODE_STACK 64

static _Thread_local bool disabled;
static _Thread_local bool stack[ZG_GRAD_MODE_STACK];
static _Thread_local int depth;

bool zg_grad_enabled(void) { return !disabled; }

bool zg_set_grad_enabled(bool enabled) {
    bool prev = !disabled;
    disabled = !enabled;
    return prev;
}

void zg_no_grad_enter(void) {
    if (depth < ZG_GRAD_MODE_STACK) stack[depth] = !disabled;
    depth++;
    disabled = true;
}

void zg_no_grad_exit(void) {
    if (depth == 0) return;
    depth--;
    disabled = depth < ZG_GRAD_MODE_STACK ? !stack[depth] : true;
}
