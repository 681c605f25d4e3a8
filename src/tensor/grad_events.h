/* Gradient-lifecycle events: where .grad is created, added to, read,
 * cleared, consumed by a step, scaled and unscaled. The layers that do
 * these things (tensor, autograd, nn, optim, train) emit an event with one
 * call each; a listener above them (the sanitizer, src/check) installs a
 * table of callbacks and receives them. The emitters therefore depend only on this
 * header, never on the listener.
 *
 * With no listener (the default) each event costs one branch. Events
 * returning int give nonzero (ZG_ERR_STATE, error text set) when the
 * listener rejects the call (the sanitizer's error mode); the emitter then
 * fails the call before changing anything. Optimizer events carry the
 * optimizer's parameters, so the listener needs no optimizer internals. */
#ifndef ZG_TENSOR_GRAD_EVENTS_H
#define ZG_TENSOR_GRAD_EVENTS_H

#include "zgrad.h"

typedef struct zg__grad_events {
    /* zg_backward(root) starts (before the pass). */
    void (*backward)(const zg_tensor *root);
    /* A backward is about to accumulate into t's grad (leaves count). */
    void (*accumulate)(const zg_tensor *t);
    /* t's (defined) grad is about to be cleared by `call`:
     * zg_tensor_zero_grad, or zg_tensor_set_grad(t, NULL). */
    void (*zero)(const zg_tensor *t, const char *call);
    /* zg_tensor_set_grad gave t a grad by hand. */
    void (*set_grad)(const zg_tensor *t);
    /* An optimizer's or module's zero_grad starts (opt NULL for a module)
     * and ends: the listener can gather the erased grads into one report. */
    void (*zero_begin)(const char *call, const zg_optim *opt, zg_tensor *const *params, int n);
    void (*zero_end)(void);
    /* An optimizer step is about to consume its parameters' grads. */
    int (*step)(const zg_optim *opt, zg_tensor *const *params, int n);
    /* The optimizer, holding these parameters, is being freed (its address
     * may be reused). */
    void (*optim_free)(const zg_optim *opt, zg_tensor *const *params, int n);
    /* Clipping (call names the public function) is about to read params'
     * grads. */
    int (*clip)(zg_tensor *const *params, int n, const char *call);
    /* scaled_loss = loss * scale: a backward of it leaves scaled grads. */
    void (*scale)(const zg_tensor *scaled_loss, float scale);
    /* The user read t's (defined) grad through zg_tensor_grad (to log it,
     * or to use it: an adversarial input, a two-pass optimizer). */
    void (*read_grad)(const zg_tensor *t);
    /* A user's hook (tensor or post-accumulate) was given a gradient of
     * the running backward: the user saw that pass (Grad-CAM, logging). */
    void (*hook_ran)(void);
    /* The scaler is about to divide the optimizer's grads by `scale`. */
    int (*unscale)(const zg_optim *opt, zg_tensor *const *params, int n, float scale);
    /* The scaler skipped the optimizer's step (inf/NaN grads): the grads
     * count as consumed. */
    void (*scaler_skip)(const zg_optim *opt, zg_tensor *const *params, int n);
    /* A scheduler (sched) of the optimizer steps; sched_free: it is freed. */
    int (*sched_step)(const void *sched, const zg_optim *opt, zg_tensor *const *params, int n);
    void (*sched_free)(const void *sched);
    /* The optimizer now holds these parameters (a new optimizer's groups,
     * an added group): known from construction, not from a first step. */
    void (*optim_params)(const zg_optim *opt, zg_tensor *const *params, int n);
    /* The module is being freed (a listener drops what refers to it). */
    void (*module_free)(const zg_module *m);
    /* A module registered t as a parameter. */
    void (*param_new)(const zg_tensor *t);
    /* The user called a module's forward (not nested calls). */
    void (*forward)(const zg_module *m);
    /* The grads of these parameters are dropped on purpose (a failed
     * micro-batch): the zero_grad that follows erases nothing of value. */
    void (*discard)(zg_tensor *const *params, int n);
    /* A tensor marked `watched` is being freed. */
    void (*tensor_free)(const zg_tensor *t);
} zg__grad_events;

/* The installed listener, NULL when there is none. */
extern const zg__grad_events *zg__grad_listener;
/* Installs a listener (NULL removes it). */
void zg__grad_events_listen(const zg__grad_events *listener);

static inline void zg__emit_backward(const zg_tensor *root) {
    if (zg__grad_listener) zg__grad_listener->backward(root);
}
static inline void zg__emit_accumulate(const zg_tensor *t) {
    if (zg__grad_listener) zg__grad_listener->accumulate(t);
}
static inline void zg__emit_zero(const zg_tensor *t, const char *call) {
    if (zg__grad_listener) zg__grad_listener->zero(t, call);
}
static inline void zg__emit_set_grad(const zg_tensor *t) {
    if (zg__grad_listener) zg__grad_listener->set_grad(t);
}
static inline void zg__emit_zero_begin(const char *call, const zg_optim *opt, zg_tensor *const *params, int n) {
    if (zg__grad_listener) zg__grad_listener->zero_begin(call, opt, params, n);
}
static inline void zg__emit_zero_end(void) {
    if (zg__grad_listener) zg__grad_listener->zero_end();
}
static inline int zg__emit_step(const zg_optim *opt, zg_tensor *const *params, int n) {
    return zg__grad_listener ? zg__grad_listener->step(opt, params, n) : 0;
}
static inline void zg__emit_optim_free(const zg_optim *opt, zg_tensor *const *params, int n) {
    if (zg__grad_listener) zg__grad_listener->optim_free(opt, params, n);
}
static inline int zg__emit_clip(zg_tensor *const *params, int n, const char *call) {
    return zg__grad_listener ? zg__grad_listener->clip(params, n, call) : 0;
}
static inline void zg__emit_scale(const zg_tensor *scaled_loss, float scale) {
    if (zg__grad_listener) zg__grad_listener->scale(scaled_loss, scale);
}
static inline void zg__emit_read_grad(const zg_tensor *t) {
    if (zg__grad_listener) zg__grad_listener->read_grad(t);
}
static inline void zg__emit_hook_ran(void) {
    if (zg__grad_listener) zg__grad_listener->hook_ran();
}
static inline int zg__emit_unscale(const zg_optim *opt, zg_tensor *const *params, int n, float scale) {
    return zg__grad_listener ? zg__grad_listener->unscale(opt, params, n, scale) : 0;
}
static inline void zg__emit_scaler_skip(const zg_optim *opt, zg_tensor *const *params, int n) {
    if (zg__grad_listener) zg__grad_listener->scaler_skip(opt, params, n);
}
static inline int zg__emit_sched_step(const void *sched, const zg_optim *opt, zg_tensor *const *params, int n) {
    return zg__grad_listener ? zg__grad_listener->sched_step(sched, opt, params, n) : 0;
}
static inline void zg__emit_sched_free(const void *sched) {
    if (zg__grad_listener) zg__grad_listener->sched_free(sched);
}
static inline void zg__emit_optim_params(const zg_optim *opt, zg_tensor *const *params, int n) {
    if (zg__grad_listener) zg__grad_listener->optim_params(opt, params, n);
}
static inline void zg__emit_module_free(const zg_module *m) {
    if (zg__grad_listener) zg__grad_listener->module_free(m);
}
static inline void zg__emit_param_new(const zg_tensor *t) {
    if (zg__grad_listener) zg__grad_listener->param_new(t);
}
static inline void zg__emit_forward(const zg_module *m) {
    if (zg__grad_listener) zg__grad_listener->forward(m);
}
static inline void zg__emit_discard(zg_tensor *const *params, int n) {
    if (zg__grad_listener) zg__grad_listener->discard(params, n);
}
static inline void zg__emit_tensor_free(const zg_tensor *t) {
    if (zg__grad_listener) zg__grad_listener->tensor_free(t);
}

#endif
