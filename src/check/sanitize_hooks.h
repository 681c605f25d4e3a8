/* Hook calls of the gradient-lifecycle sanitizer, placed (one line each) in
 * the engine, leaf, optimizer, module, clip, scheduler and scaler code.
 * Each wrapper is one branch on zg__san_active when the sanitizer is off;
 * the value is -1 until ZG_SANITIZE has been read, which sends the first
 * call to the slow path that reads it. Hooks returning int give nonzero
 * (ZG_ERR_STATE, message set) when error mode rejects the call. */
#ifndef ZG_SANITIZE_HOOKS_H
#define ZG_SANITIZE_HOOKS_H

#include "../internal.h"

extern int zg__san_active;

void zg__san_backward(const zg_tensor *root);
void zg__san_accumulate(const zg_tensor *t);
void zg__san_zero(const zg_tensor *t);
void zg__san_set_grad(const zg_tensor *t);
void zg__san_zero_begin(const char *call, const zg_optim *opt);
void zg__san_zero_end(void);
int zg__san_step(const zg_optim *opt);
void zg__san_optim_free(const zg_optim *opt);
int zg__san_clip(zg_tensor *const *params, int n, const char *call);
void zg__san_scale(const zg_tensor *scaled_loss, float scale);
void zg__san_read_grad(const zg_tensor *t);
void zg__san_unscale(const zg_optim *opt);
void zg__san_scaler_skip(const zg_optim *opt);
int zg__san_sched_step(const zg_optim *opt);

/* zg_backward(root) starts (before the pass). */
static inline void zg__sanitize_on_backward(const zg_tensor *root) {
    if (zg__san_active) zg__san_backward(root);
}
/* A backward is about to accumulate into t->grad (only leaves count). */
static inline void zg__sanitize_on_accumulate(const zg_tensor *t) {
    if (zg__san_active) zg__san_accumulate(t);
}
/* zg_tensor_zero_grad is about to clear t's (defined) grad. */
static inline void zg__sanitize_on_zero(const zg_tensor *t) {
    if (zg__san_active) zg__san_zero(t);
}
/* zg_tensor_set_grad replaced or cleared t's grad. */
static inline void zg__sanitize_on_set_grad(const zg_tensor *t) {
    if (zg__san_active) zg__san_set_grad(t);
}
/* An optimizer / module zero_grad starts (opt NULL for a module) and ends:
 * the erased parameters are gathered into one report. */
static inline void zg__sanitize_zero_begin(const char *call, const zg_optim *opt) {
    if (zg__san_active) zg__san_zero_begin(call, opt);
}
static inline void zg__sanitize_zero_end(void) {
    if (zg__san_active) zg__san_zero_end();
}
static inline int zg__sanitize_on_step(const zg_optim *opt) { return zg__san_active ? zg__san_step(opt) : 0; }
static inline void zg__sanitize_on_optim_free(const zg_optim *opt) {
    if (zg__san_active) zg__san_optim_free(opt);
}
static inline int zg__sanitize_on_clip(zg_tensor *const *params, int n, const char *call) {
    return zg__san_active ? zg__san_clip(params, n, call) : 0;
}
/* scaled_loss = loss * scale: a backward of it leaves scaled grads. */
static inline void zg__sanitize_on_scale(const zg_tensor *scaled_loss, float scale) {
    if (zg__san_active) zg__san_scale(scaled_loss, scale);
}
/* The user read t's (defined) grad through zg_tensor_grad. */
static inline void zg__sanitize_on_read_grad(const zg_tensor *t) {
    if (zg__san_active) zg__san_read_grad(t);
}
static inline void zg__sanitize_on_unscale(const zg_optim *opt) {
    if (zg__san_active) zg__san_unscale(opt);
}
static inline void zg__sanitize_on_scaler_skip(const zg_optim *opt) {
    if (zg__san_active) zg__san_scaler_skip(opt);
}
static inline int zg__sanitize_on_sched_step(const zg_optim *opt) {
    return zg__san_active ? zg__san_sched_step(opt) : 0;
}

/* t's grad (NULL when None) for library code: the public zg_tensor_grad
 * is the user's read, which the sanitizer checks for scaled grads. */
static inline zg_tensor *zg__grad_unchecked(const zg_tensor *t) { return t && t->grad_defined ? t->grad : NULL; }

#endif
