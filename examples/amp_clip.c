/* Mixed precision with a gradient scaler, clipping and accumulation
 * (semantics.md sections 5-7).
 *
 * An MLP trains inside a bf16 autocast region (its linears compute in bf16,
 * the loss in float32, parameters and grads stay float32). The scaler
 * multiplies the loss by 65536 so that small gradients survive the 16-bit
 * backward; the grads must be unscaled before anything looks at their size.
 *
 * Recipe 1, clipping:
 *     zero_grad; backward(scale(loss)); unscale_; clip_grad_norm; step; update
 * Recipe 2, accumulation over N micro-batches:
 *     each micro-step: backward(scale(loss / N))
 *     last micro-step: unscale_; clip_grad_norm; step; update; zero_grad
 *
 * Checked (exit non-zero otherwise):
 *   - both recipes bring the loss down;
 *   - the norm clip_grad_norm reports after unscale_ is the true norm: it
 *     matches the norm of an fp32 run without autocast or scaler on the same
 *     parameters and data to 2e-2 relative (bf16 keeps 8 significant bits,
 *     a relative rounding error of at most 2^-9 = 0.2% per element and per
 *     rounding; the forward and backward round a few times per layer, and
 *     the norm averages those errors, so we expect a few 1e-3 and allow
 *     2e-2), while the grads before unscale_ are 65536x larger. The
 *     comparison covers the steps while the loss is above 0.1: near zero
 *     loss the gradient softmax - onehot is a small difference of numbers
 *     near 1 computed from bf16 logits (absolute error ~2^-9 |logit|), so
 *     its relative error grows without telling anything about the scaler;
 *   - the accumulated, unscaled gradient of N micro-batches has the norm of
 *     the fp32 full-batch gradient (same tolerance);
 *   - an injected inf gradient makes step() skip (parameters and Adam state
 *     untouched, bit for bit) and update() halve the scale 65536 -> 32768. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "zgrad.h"

#define N 256
#define IN 8
#define HID 64
#define CLASSES 4
#define STEPS 150
#define INJECT_AT 60
#define ACCUM 4
#define MICRO (N / ACCUM)
#define MAX_NORM 0.25
#define NORM_RTOL 2e-2
#define MAXP 16

static int failures = 0;
static void claim(int ok, const char *what) {
    printf("%s: %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) failures++;
}
static void die(const char *what) {
    fprintf(stderr, "amp_clip: %s: %s\n", what, zg_last_error());
    exit(1);
}

typedef struct {
    zg_module *net;
    zg_tensor *p[MAXP];
    int n;
    zg_optim *opt;
} model;

static void model_init(model *m) {
    zg_module *l[] = {zg_nn_linear(IN, HID, true), zg_nn_relu(), zg_nn_linear(HID, HID, true), zg_nn_relu(),
                      zg_nn_linear(HID, CLASSES, true)};
    m->net = zg_nn_sequential(l, 5);
    if (!m->net) die("model");
    m->n = zg_module_params(m->net, m->p, MAXP);
    zg_optim_config cfg = zg_optim_defaults(ZG_ADAM);
    cfg.lr = 5e-3;
    m->opt = zg_optim_new(ZG_ADAM, m->p, m->n, &cfg);
    if (!m->opt) die("optimizer");
}
static void model_free(model *m) {
    zg_optim_free(m->opt);
    zg_module_free(m->net);
}

/* Cross-entropy of the model on x, y; the linears in bf16 when amp. */
static zg_tensor *loss_of(model *m, zg_tensor *x, zg_tensor *y, bool amp) {
    if (amp && zg_autocast_enter(ZG_AUTOCAST_BF16)) die("autocast");
    zg_tensor *logits = zg_module_forward(m->net, x);
    if (amp) zg_autocast_exit();
    zg_tensor *loss = zg_cross_entropy(logits, y, NULL); /* float32 */
    if (!loss) die("forward");
    return loss;
}

/* L2 norm of all current grads, read directly (no clipping call). The
 * example reads still-scaled grads on purpose, to show the scale in them,
 * so the sanitizer's report of such reads is held off here. */
static double grad_norm(model *m) {
    zg_sanitize_mode san = zg_sanitize_get_mode();
    zg_sanitize_set_mode(ZG_SANITIZE_OFF);
    double s = 0;
    for (int i = 0; i < m->n; i++) {
        zg_tensor *g = zg_tensor_grad(m->p[i]);
        for (int64_t k = 0; g && k < zg_tensor_numel(g); k++) s += (double)zg_tensor_get(g, k) * zg_tensor_get(g, k);
    }
    zg_sanitize_set_mode(san);
    return sqrt(s);
}

/* The fp32 reference: the true gradient norm of loss(x, y) at the current
 * parameters, without autocast or scaler. Leaves the grads cleared. */
static double fp32_norm(model *m, zg_tensor *x, zg_tensor *y) {
    /* A side computation whose grads no step uses: keep the gradient-
     * lifecycle sanitizer (ZG_SANITIZE) quiet. */
    zg_sanitize_mode san = zg_sanitize_get_mode();
    zg_sanitize_set_mode(ZG_SANITIZE_OFF);
    zg_optim_zero_grad(m->opt, true);
    if (zg_backward(loss_of(m, x, y, false), NULL)) die("fp32 backward");
    double n = grad_norm(m);
    zg_optim_zero_grad(m->opt, true);
    zg_sanitize_set_mode(san);
    return n;
}

int main(void) {
    zg_manual_seed(11);
    /* A random teacher labels Gaussian inputs: y = argmax(x @ T). */
    int64_t xs[2] = {N, IN}, ts[2] = {IN, CLASSES}, ys[1] = {N};
    zg_tensor *x = zg_randn(xs, 2), *teacher = zg_randn(ts, 2), *y = zg_tensor_new(ZG_INT64, ys, 1);
    zg_tensor *scores = zg_matmul(x, teacher);
    for (int i = 0; i < N; i++) {
        int best = 0;
        for (int c = 1; c < CLASSES; c++)
            if (zg_tensor_get(scores, i * CLASSES + c) > zg_tensor_get(scores, i * CLASSES + best)) best = c;
        zg_tensor_data_i64(y)[i] = best;
    }
    zg_arena_reset();

    /* ---------------- Recipe 1: clipping ---------------- */
    printf("-- recipe 1: scale(loss).backward; unscale_; clip_grad_norm(%.2f); step; update\n", MAX_NORM);
    model m;
    model_init(&m);
    zg_grad_scaler *scaler = zg_grad_scaler_new(NULL);
    if (!scaler) die("scaler");
    float first = 0, last = 0;
    double worst_rel = 0;
    int clipped_steps = 0, clip_ok = 1;
    for (int step = 0; step < STEPS; step++) {
        double ref = fp32_norm(&m, x, y); /* same parameters, fp32, unscaled */
        zg_optim_zero_grad(m.opt, true);
        zg_tensor *loss = loss_of(&m, x, y, true);
        if (zg_backward(zg_grad_scaler_scale(scaler, loss), NULL)) die("backward");
        double scaled = grad_norm(&m);
        float scale = zg_grad_scaler_get_scale(scaler);

        zg_tensor *before[MAXP];
        int64_t adam_steps = zg_optim_state_step(m.opt, 0);
        if (step == INJECT_AT) {
            /* An overflow in the backward, as fp16 would produce. */
            zg_sanitize_mode san = zg_sanitize_get_mode();
            zg_sanitize_set_mode(ZG_SANITIZE_OFF);
            zg_tensor_data(zg_tensor_grad(m.p[2]))[5] = INFINITY;
            zg_sanitize_set_mode(san);
            for (int i = 0; i < m.n; i++) before[i] = zg_tensor_clone(m.p[i]);
        }
        if (zg_grad_scaler_unscale_(scaler, m.opt)) die("unscale_");
        double total = 0;
        if (zg_optim_clip_grad_norm(m.opt, MAX_NORM, 2.0, false, &total)) die("clip");
        /* Above max_norm the grads now have norm max_norm (up to the 1e-6
         * in max_norm / (total + 1e-6) and float32 rounding). */
        if (isfinite(total) && total > MAX_NORM) {
            clipped_steps++;
            clip_ok &= fabs(grad_norm(&m) - MAX_NORM) <= 1e-5;
        }
        bool stepped = false;
        if (zg_grad_scaler_step(scaler, m.opt, &stepped)) die("scaler step");
        if (zg_grad_scaler_update(scaler)) die("update");

        if (step == INJECT_AT) {
            int same = 1;
            for (int i = 0; i < m.n; i++) {
                for (int64_t k = 0; k < zg_tensor_numel(m.p[i]); k++)
                    same &= zg_tensor_get(m.p[i], k) == zg_tensor_get(before[i], k);
                zg_tensor_free(before[i]);
            }
            printf("step %3d: injected inf: total norm %g, stepped %s, scale %.0f -> %.0f, Adam steps %lld -> %lld\n",
                   step, total, stepped ? "yes" : "no", scale, zg_grad_scaler_get_scale(scaler),
                   (long long)adam_steps, (long long)zg_optim_state_step(m.opt, 0));
            claim(!stepped, "an inf gradient skips the step");
            claim(same, "parameters are unchanged by the skipped step (bit for bit)");
            claim(zg_optim_state_step(m.opt, 0) == adam_steps, "Adam's state is untouched");
            claim(scale == 65536.0f && zg_grad_scaler_get_scale(scaler) == 32768.0f,
                  "update() halves the scale: 65536 -> 32768");
        } else {
            double rel = fabs(total - ref) / ref;
            if (zg_tensor_item(loss) > 0.1f && rel > worst_rel) worst_rel = rel;
            if (step % 10 == 0 || step == STEPS - 1)
                printf("step %3d: loss %.4f  scaled-grad norm %.1f  norm after unscale_ %.6f  fp32 norm %.6f  "
                       "(rel diff %.2e, scale %.0f)\n",
                       step, zg_tensor_item(loss), scaled, total, ref, rel, scale);
            if (step == 0) claim(fabs(scaled / total / scale - 1.0) < 1e-3, "before unscale_ the grads are scale x larger");
            if (!stepped) claim(0, "a clean step was skipped");
        }
        last = zg_tensor_item(loss);
        if (step == 0) first = last;
        zg_arena_reset();
    }
    printf("worst relative difference between the unscaled norm and the fp32 norm (loss > 0.1): %.2e\n", worst_rel);
    claim(worst_rel <= NORM_RTOL, "clip_grad_norm after unscale_ sees the true (fp32, unscaled) norm");
    printf("%d steps were clipped to norm %.2f\n", clipped_steps, MAX_NORM);
    claim(clipped_steps > 0 && clip_ok, "clipped steps have grad norm max_norm");
    printf("loss %.4f -> %.4f\n", first, last);
    claim(last < 0.3f * first, "recipe 1 brings the loss down (below 30%)");
    model_free(&m);
    zg_grad_scaler_free(scaler);

    /* ---------------- Recipe 2: accumulation ---------------- */
    printf("-- recipe 2: %d micro-batches of %d: scale(loss/%d).backward each; on the last: unscale_, clip, "
           "step, update, zero_grad\n",
           ACCUM, MICRO, ACCUM);
    zg_manual_seed(12);
    model_init(&m);
    scaler = zg_grad_scaler_new(NULL);
    if (!scaler) die("scaler");
    first = last = 0;
    worst_rel = 0;
    int scale_fixed = 1;
    zg_sanitize_expect_accumulation(m.opt, ACCUM); /* a declared window */
    zg_optim_zero_grad(m.opt, true);
    for (int window = 0; window < STEPS; window++) {
        double ref = fp32_norm(&m, x, y); /* the full batch's true gradient norm */
        float scale = zg_grad_scaler_get_scale(scaler);
        double window_loss = 0;
        for (int j = 0; j < ACCUM; j++) {
            zg_tensor *xb = zg_slice(x, j * MICRO, (j + 1) * MICRO);
            int64_t bs[1] = {MICRO};
            zg_tensor *yb = zg_tensor_from_data(ZG_INT64, zg_tensor_data_i64(y) + j * MICRO, bs, 1);
            zg_tensor *loss = zg_div_scalar(loss_of(&m, xb, yb, true), ACCUM);
            if (zg_backward(zg_grad_scaler_scale(scaler, loss), NULL)) die("backward");
            zg_tensor_free(yb);
            window_loss += zg_tensor_item(loss);
            scale_fixed &= zg_grad_scaler_get_scale(scaler) == scale; /* no update inside a window */
            if (j == ACCUM - 1) {
                if (zg_grad_scaler_unscale_(scaler, m.opt)) die("unscale_");
                double total = 0;
                if (zg_optim_clip_grad_norm(m.opt, MAX_NORM, 2.0, false, &total)) die("clip");
                double rel = fabs(total - ref) / ref;
                if (window_loss > 0.1 && rel > worst_rel) worst_rel = rel;
                if (window == 0 || window % 50 == 0 || window == STEPS - 1)
                    printf("window %3d: loss %.4f  accumulated norm %.6f  fp32 full-batch norm %.6f (rel diff %.2e)\n",
                           window, window_loss, total, ref, rel);
                if (zg_grad_scaler_step(scaler, m.opt, NULL)) die("scaler step");
                if (zg_grad_scaler_update(scaler)) die("update");
                zg_optim_zero_grad(m.opt, true);
            }
        }
        last = (float)window_loss;
        if (window == 0) first = last;
        zg_arena_reset();
    }
    claim(scale_fixed, "the scale stays fixed inside each window");
    printf("worst relative difference, accumulated vs fp32 full-batch norm (loss > 0.1): %.2e\n", worst_rel);
    claim(worst_rel <= NORM_RTOL, "the unscaled accumulated gradient has the full batch's norm");
    printf("loss %.4f -> %.4f\n", first, last);
    claim(last < 0.3f * first, "recipe 2 brings the loss down (below 30%)");
    model_free(&m);
    zg_grad_scaler_free(scaler);

    zg_tensor_free(x);
    zg_tensor_free(teacher);
    zg_tensor_free(y);
    zg_arena_free_all();
    printf("%s\n", failures ? "amp_clip: FAILED" : "amp_clip: all claims hold");
    return failures ? 1 : 0;
}
