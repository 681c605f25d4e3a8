/* The gradient-lifecycle sanitizer and a learning-rate schedule.
 *
 * Part 1 runs a correct loop (zero_grad -> forward -> loss -> backward ->
 * step -> scheduler step) with warm-up then cosine annealing and the
 * sanitizer in error mode: it must report nothing, and the lr must follow
 * the warm-up/cosine curve. Part 2 makes the classic mistakes of a
 * PyTorch loop on purpose, in warn mode, and checks that each is reported:
 * zero_grad forgotten (stale gradients), zero_grad between backward and
 * step (fresh gradients erased), a step with no backward, a scheduler
 * stepped before its optimizer, and grads read or clipped while a loss
 * scaler still multiplies them. */
#include <math.h>
#include <stdio.h>

#include "zgrad.h"

static int failures;
static void expect(bool ok, const char *what) {
    printf("%-58s %s\n", what, ok ? "ok" : "FAILED");
    if (!ok) failures++;
}

typedef struct {
    zg_module *model;
    zg_optim *opt;
    zg_tensor *x, *y;
} setup;

static void make(setup *s) {
    zg_manual_seed(1);
    zg_module *layers[] = {zg_nn_linear(8, 16, true), zg_nn_relu(), zg_nn_linear(16, 3, true)};
    s->model = zg_nn_sequential(layers, 3);
    zg_tensor *p[4];
    int n = zg_module_params(s->model, p, 4);
    zg_optim_config cfg = zg_optim_defaults(ZG_SGD);
    cfg.lr = 0.1;
    cfg.momentum = 0.9;
    s->opt = zg_optim_new(ZG_SGD, p, n, &cfg);
    int64_t xs[2] = {32, 8}, ys[1] = {32};
    s->x = zg_randn(xs, 2);
    s->y = zg_tensor_new(ZG_INT64, ys, 1);
    /* Class = how many of the first two features are positive. */
    for (int i = 0; i < 32; i++)
        zg_tensor_data_i64(s->y)[i] = (zg_tensor_get(s->x, 8 * i) > 0) + (zg_tensor_get(s->x, 8 * i + 1) > 0);
}

static void drop(setup *s) {
    zg_optim_free(s->opt);
    zg_module_free(s->model);
    zg_tensor_free(s->x);
    zg_tensor_free(s->y);
}

static int backward(setup *s) {
    zg_tensor *loss = zg_cross_entropy(zg_module_forward(s->model, s->x), s->y, NULL);
    return loss ? zg_backward(loss, NULL) : -1;
}

int main(void) {
    /* Part 1: the correct loop with a schedule, sanitizer in error mode. */
    setup s;
    make(&s);
    zg_sanitize_set_mode(ZG_SANITIZE_ERROR);
    const int steps = 40, warmup = 5;
    zg_sched *sched = zg_sched_warmup_cosine(s.opt, warmup, 0.1, steps, 0.0);
    bool ok = sched != NULL, lr_ok = true;
    double first = 0, last = 0;
    for (int t = 0; t < steps && ok; t++) {
        /* lr of step t: linear warm-up from 0.1 * base, then cosine to 0. */
        double want = t < warmup ? 0.1 * (0.1 + 0.9 * t / warmup)
                                 : 0.05 * (1 + cos(M_PI * (t - warmup) / (steps - warmup)));
        lr_ok &= fabs(zg_optim_get_hparam(s.opt, 0, ZG_HP_LR) - want) <= 1e-9;
        zg_optim_zero_grad(s.opt, true);
        zg_tensor *loss = zg_cross_entropy(zg_module_forward(s.model, s.x), s.y, NULL);
        ok = loss && zg_backward(loss, NULL) == ZG_OK && zg_optim_step(s.opt) == ZG_OK &&
             zg_sched_step(sched) == ZG_OK;
        if (ok && t == 0) first = zg_tensor_item(loss);
        if (ok) last = zg_tensor_item(loss);
        zg_arena_reset();
    }
    if (!ok) printf("error: %s\n", zg_last_error());
    printf("loss %.4f -> %.4f over %d steps\n", first, last, steps);
    expect(ok && zg_sanitize_report_count() == 0, "correct loop: no report in error mode");
    expect(lr_ok, "lr follows warm-up then cosine annealing");
    expect(last < first, "loss decreases");
    zg_sched_free(sched);
    drop(&s);

    /* Part 2: the mistakes, in warn mode (one line each on stderr). */
    zg_sanitize_set_mode(ZG_SANITIZE_WARN);
    zg_sanitize_reset();
    make(&s);
    backward(&s);
    zg_optim_step(s.opt);
    backward(&s); /* zero_grad forgotten: adds to the previous grads */
    zg_optim_step(s.opt);
    expect(zg_sanitize_kind_count(ZG_SAN_STALE) == 1, "zero_grad forgotten -> stale gradients");
    zg_optim_zero_grad(s.opt, true);
    backward(&s);
    zg_optim_zero_grad(s.opt, true); /* between backward and step */
    zg_optim_step(s.opt);             /* nothing left to step with */
    expect(zg_sanitize_kind_count(ZG_SAN_ERASED) == 1, "zero_grad before step -> fresh gradients erased");
    zg_optim_step(s.opt); /* no backward since the last step */
    expect(zg_sanitize_kind_count(ZG_SAN_NO_GRAD) == 1, "step without backward -> no gradient");
    drop(&s);
    zg_arena_reset();

    zg_sanitize_reset();
    make(&s);
    zg_sched *early = zg_sched_step_lr(s.opt, 10, 0.5);
    zg_sched_step(early); /* before the optimizer ever stepped */
    expect(zg_sanitize_kind_count(ZG_SAN_SCHED_ORDER) == 1, "scheduler before optimizer -> reported");
    zg_sched_free(early);
    drop(&s);
    zg_arena_reset();

    /* With a loss scaler: grads read or clipped before unscale_ are still
     * multiplied by the scale (65536 at first). After unscale_ both are
     * right, and reported no more. */
    zg_sanitize_reset();
    make(&s);
    zg_grad_scaler *scaler = zg_grad_scaler_new(NULL);
    zg_optim_zero_grad(s.opt, true);
    zg_tensor *loss = zg_cross_entropy(zg_module_forward(s.model, s.x), s.y, NULL);
    zg_backward(zg_grad_scaler_scale(scaler, loss), NULL);
    zg_tensor_grad(zg_optim_group_param(s.opt, 0, 0)); /* e.g. to log its norm */
    expect(zg_sanitize_kind_count(ZG_SAN_SCALED_READ) == 1, "reading scaled grads -> reported");
    zg_optim_clip_grad_norm(s.opt, 1.0, 2.0, false, NULL);
    expect(zg_sanitize_kind_count(ZG_SAN_SCALED_CLIP) == 1, "clipping scaled grads -> reported");
    zg_grad_scaler_unscale_(scaler, s.opt);
    zg_tensor_grad(zg_optim_group_param(s.opt, 0, 0));
    zg_optim_clip_grad_norm(s.opt, 1.0, 2.0, false, NULL);
    zg_grad_scaler_step(scaler, s.opt, NULL);
    zg_grad_scaler_update(scaler);
    expect(zg_sanitize_report_count() == 2, "after unscale_: reading and clipping are fine");
    zg_grad_scaler_free(scaler);
    drop(&s);
    zg_arena_free_all();
    return failures ? 1 : 0;
}
