/* A catalogue of realistic training loops for the gradient-lifecycle
 * sanitizer: each loop is a small PyTorch idiom (tutorials, the docs, the
 * forums, real projects) written with zgrad's C API, either BUGGY (the
 * report kind it must get) or CORRECT (it must get no report at all). The
 * verdicts follow the sanitizer's rule (include/zgrad.h): any number of
 * backward passes may feed one step; a bug is a step that uses gradients a
 * step already used (stale), gradients erased before any step used them
 * (erased; read, clipped, non-finite or zg_accum_discard-ed gradients may be
 * erased freely), a step with no backward since the last step / zero, and
 * the scaler, clipping, scheduler, freezing and window mistakes.
 *
 * Each loop builds tiny models (Linear(4,3) and the like, batch 4), runs 3-6
 * iterations, checks every return code and stops at the first failure,
 * returning it, and frees everything. The first test runs them all in warn
 * mode and prints recall per bug class and the false positives; the second
 * runs the buggy ones in error mode, where each caught one must make a call
 * fail with ZG_ERR_STATE. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define CORRECT (-1)
#define MAXP 16

/* ---- what one loop owns, freed in one place ----------------------------- */

typedef struct {
    zg_module *m[4];
    zg_optim *o[4];
    zg_grad_scaler *s;
    zg_sched *sd[2];
    zg_accum *acc;
    zg_tensor *t[8]; /* persistent data: t[0] x [4,4], t[1] y [4,2], the rest per loop */
} kit;

static void kit_free(kit *k) {
    zg_accum_free(k->acc);
    for (int i = 0; i < 2; i++) zg_sched_free(k->sd[i]);
    for (int i = 0; i < 4; i++)
        if (k->o[i]) {
            /* Declared windows outlive zg_sanitize_reset: withdraw them before
             * the address can be reused by the next loop's optimizer. */
            zg_sanitize_expect_accumulation(k->o[i], 1);
            zg_optim_free(k->o[i]);
        }
    zg_grad_scaler_free(k->s);
    for (int i = 0; i < 4; i++) zg_module_free(k->m[i]);
    zg_arena_reset();
    for (int i = 0; i < 8; i++) zg_tensor_free(k->t[i]);
}

/* The first failure of a loop: its status and zg_last_error() at the time. */
static char g_err[1024];

static int failed(int rc) {
    snprintf(g_err, sizeof g_err, "%s", zg_last_error());
    return rc;
}

/* TRY: a call returning a zg_status (a positive value is not a failure:
 * zg_accum_backward returns 1 for a full window). NEED: a pointer. */
#define TRY(call)                                                                                          \
    do {                                                                                                   \
        int rc_ = (call);                                                                                  \
        if (rc_ < 0) {                                                                                     \
            rc = failed(rc_);                                                                              \
            goto out;                                                                                      \
        }                                                                                                  \
    } while (0)
#define NEED(ptr)                                                                                          \
    do {                                                                                                   \
        if (!(ptr)) {                                                                                      \
            rc = failed(ZG_ERR_ARG);                                                                       \
            goto out;                                                                                      \
        }                                                                                                  \
    } while (0)
/* The same inside helpers that return a status. */
#define RNEED(ptr)                                                                                         \
    do {                                                                                                   \
        if (!(ptr)) return failed(ZG_ERR_ARG);                                                             \
    } while (0)

/* ---- models, data, losses ----------------------------------------------- */

/* Sequential(Linear(in,hid), ReLU, Linear(hid,out)): parameters 0.weight,
 * 0.bias (the "backbone") and 2.weight, 2.bias (the "head"). */
static zg_module *mlp(int64_t in, int64_t hid, int64_t out) {
    zg_module *mods[3] = {zg_nn_linear(in, hid, true), zg_nn_relu(), zg_nn_linear(hid, out, true)};
    return zg_nn_sequential(mods, 3);
}

static int params(const zg_module *m, zg_tensor **p) { return zg_module_params(m, p, MAXP); }

static zg_optim *optim_on(zg_optim_kind kind, zg_tensor *const *p, int n) {
    zg_optim_config c = zg_optim_defaults(kind);
    c.lr = kind == ZG_SGD ? 0.05 : 1e-3;
    return n > 0 ? zg_optim_new(kind, p, n, &c) : NULL;
}

static zg_optim *optim_of(zg_optim_kind kind, zg_module *m) {
    zg_tensor *p[MAXP];
    return optim_on(kind, p, params(m, p));
}

/* One optimizer over the parameters of several modules. */
static zg_optim *optim_of2(zg_optim_kind kind, zg_module *a, zg_module *b) {
    zg_tensor *p[2 * MAXP];
    int n = params(a, p);
    n += params(b, p + n);
    return optim_on(kind, p, n);
}

static zg_tensor *randn2(int64_t r, int64_t c) {
    int64_t s[2] = {r, c};
    return zg_randn(s, 2);
}

static zg_tensor *full2(int64_t r, int64_t c, float v) {
    int64_t s[2] = {r, c};
    return zg_full(s, 2, v);
}

/* x [4,4] and y [4,2]. */
static int data(kit *k) {
    RNEED(k->t[0] = randn2(4, 4));
    RNEED(k->t[1] = randn2(4, 2));
    return 0;
}

/* The usual fixture: m[0] = mlp(4,3,2), o[0] over all of it, the data. */
static int setup(kit *k, zg_optim_kind kind) {
    RNEED(k->m[0] = mlp(4, 3, 2));
    RNEED(k->o[0] = optim_of(kind, k->m[0]));
    return data(k);
}

/* Micro-batch i of the "loader". */
static zg_tensor *batch(kit *k, int i) { return zg_add_scalar(k->t[0], 0.1f * (float)i); }

static zg_tensor *mse_of(zg_tensor *out, zg_tensor *y) { return zg_mse_loss(out, y, ZG_REDUCTION_MEAN); }

/* criterion(model(x_i), y) */
static zg_tensor *loss_on(zg_module *m, kit *k, int i) { return mse_of(zg_module_forward(m, batch(k, i)), k->t[1]); }

static zg_tensor *loss_at(kit *k, int i) { return loss_on(k->m[0], k, i); }

static int backward(zg_tensor *loss) { return zg_backward(loss, NULL); }

static int backward_retain(zg_tensor *loss) {
    zg_backward_opts o = {0};
    o.retain_graph = true;
    return zg_backward(loss, &o);
}

/* loss / n, the accumulation idiom */
static zg_tensor *over(zg_tensor *loss, int n) { return zg_div_scalar(loss, (float)n); }

/* p.requires_grad_(on) for every parameter of m */
static int set_trainable(zg_module *m, bool on) {
    zg_tensor *p[MAXP];
    int n = params(m, p);
    for (int i = 0; i < n; i++) {
        int rc = zg_tensor_set_requires_grad(p[i], on);
        if (rc) return failed(rc);
    }
    return 0;
}

/* Sum of squares of the grads of p[0..n) read through zg_tensor_grad (the
 * user's p.grad). */
static double grad_sq(zg_tensor *const *p, int n) {
    double sq = 0;
    for (int i = 0; i < n; i++) {
        const zg_tensor *g = zg_tensor_grad(p[i]);
        for (int64_t j = 0; g && j < zg_tensor_numel(g); j++) sq += (double)zg_tensor_get(g, j) * zg_tensor_get(g, j);
    }
    return sq;
}

/* ---- GAN fixture (DCGAN tutorial shapes, tiny) -------------------------- */
/* m[0] = G: z [4,2] -> fake [4,4]; m[1] = D: [4,4] -> logit [4,1];
 * o[0] = optimizerG, o[1] = optimizerD (Adam); t[0] real batch, t[2] noise,
 * t[3] real labels (1), t[4] fake labels (0). */
static int gan_setup(kit *k) {
    RNEED(k->m[0] = mlp(2, 3, 4));
    RNEED(k->m[1] = mlp(4, 3, 1));
    RNEED(k->o[0] = optim_of(ZG_ADAM, k->m[0]));
    RNEED(k->o[1] = optim_of(ZG_ADAM, k->m[1]));
    int rc = data(k);
    if (rc) return rc;
    RNEED(k->t[2] = randn2(4, 2));
    RNEED(k->t[3] = full2(4, 1, 1.0f));
    RNEED(k->t[4] = full2(4, 1, 0.0f));
    return 0;
}

static zg_tensor *gen(kit *k) { return zg_module_forward(k->m[0], k->t[2]); }

/* criterion(netD(input), label) with BCEWithLogits */
static zg_tensor *d_loss(kit *k, zg_tensor *input, zg_tensor *label) {
    return zg_bce_with_logits(zg_module_forward(k->m[1], input), label, ZG_REDUCTION_MEAN, NULL);
}

static zg_tensor *err_d_real(kit *k) { return d_loss(k, k->t[0], k->t[3]); }
static zg_tensor *err_d_fake(kit *k, zg_tensor *fake) { return d_loss(k, zg_detach(fake), k->t[4]); }
static zg_tensor *err_g(kit *k, zg_tensor *fake) { return d_loss(k, fake, k->t[3]); }

/* ---- AMP helpers --------------------------------------------------------- */

static zg_tensor *scaled(kit *k, zg_tensor *loss) { return zg_grad_scaler_scale(k->s, loss); }

/* scaler.step(opt); scaler.update() */
static int scaler_step_update(kit *k, zg_optim *o) {
    int rc = zg_grad_scaler_step(k->s, o, NULL);
    if (!rc) rc = zg_grad_scaler_update(k->s);
    return rc ? failed(rc) : 0;
}

/* ---- FGSM helpers: t[5] = x as a leaf that requires grad, t[6] = x_adv --- */

static int fgsm_setup(kit *k) {
    RNEED(k->t[5] = zg_tensor_clone(k->t[0]));
    int rc = zg_tensor_set_requires_grad(k->t[5], true);
    if (rc) return failed(rc);
    RNEED(k->t[6] = zg_tensor_clone(k->t[0]));
    return 0;
}

/* x_adv = x + eps * sign(g) (written in place into t[6]) */
static int fgsm_perturb(kit *k, const zg_tensor *g) {
    RNEED(g);
    float *xa = zg_tensor_data(k->t[6]);
    const float *x = zg_tensor_data(k->t[0]);
    for (int64_t j = 0; j < zg_tensor_numel(g); j++) {
        float v = zg_tensor_get(g, j);
        xa[j] = x[j] + 0.05f * (float)((v > 0) - (v < 0));
    }
    return 0;
}

/* ---- hooks ----------------------------------------------------------------- */

/* post-accumulate hook: logs the norm of each parameter's fresh grad */
static int log_grad_norm_hook(zg_tensor *leaf, void *user) {
    double *sum = user;
    *sum += grad_sq(&leaf, 1);
    return 0;
}

/* p.register_hook(lambda g: g * 0.5) */
static zg_tensor *halve_hook(zg_tensor *grad, void *user) {
    (void)user;
    return zg_mul_scalar(grad, 0.5f);
}

/* The gradient reversal layer of DANN: identity forward, -grad backward. */
static zg_tensor *reverse_hook(zg_tensor *grad, void *user) {
    (void)user;
    return zg_neg(grad);
}

/* PyTorch's "optimizer step in backward" tutorial: one optimizer per
 * parameter, stepped and zeroed as soon as the parameter's grad is ready. */
static int step_in_backward_hook(zg_tensor *leaf, void *user) {
    (void)leaf;
    zg_optim *o = user;
    int rc = zg_optim_step(o);
    zg_optim_zero_grad(o, true);
    return rc;
}

/* ========================================================================
 * BUGGY loops
 * ======================================================================== */

/* ---- stale: a step uses grads that a step already used ------------------- */

/* zero_grad forgotten: every step after the first applies the sum of all past gradients. */
static int stale_no_zero_grad(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 4; i++) {
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* optimizer.step() in train_step() and again in the loop: the second step reapplies the same grads. */
static int stale_step_twice(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_ADAM));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Accumulation with step() outside the `if`: each micro-batch step reuses the earlier micro-batches' grads. */
static int stale_step_every_micro_zero_every_n(void) {
    kit k = {0};
    int rc = 0;
    const int n = 2;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 6; i++) {
        TRY(backward(over(loss_at(&k, i), n)));
        TRY(zg_optim_step(k.o[0]));
        if ((i + 1) % n == 0) zg_optim_zero_grad(k.o[0], true);
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* `if i % N == 0: zero_grad()` but step() every micro-batch: later steps of the window reuse used grads. */
static int stale_zero_at_window_start_step_every_micro(void) {
    kit k = {0};
    int rc = 0;
    const int n = 3;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 6; i++) {
        if (i % n == 0) zg_optim_zero_grad(k.o[0], true);
        TRY(backward(over(loss_at(&k, i), n)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* optimizer.zero_grad() once before the epoch instead of per batch: grads pile up across steps. */
static int stale_zero_before_loop(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    zg_optim_zero_grad(k.o[0], true);
    for (int i = 0; i < 4; i++) {
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* AMP recipe (scale/backward/scaler.step/update) without zero_grad: the scaler steps summed old grads. */
static int stale_amp_no_zero(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.s = zg_grad_scaler_new(NULL));
    for (int i = 0; i < 4; i++) {
        TRY(backward(scaled(&k, loss_at(&k, i))));
        TRY(scaler_step_update(&k, k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* backward, clip_grad_norm_, step with zero_grad missing: the clip bounds a sum of stale grads. */
static int stale_clip_no_zero(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 4; i++) {
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_clip_grad_norm(k.o[0], 1.0, 2.0, false, NULL));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* An extra optimizer.step() after the epoch loop ("flush"): it reapplies the last batch's grads. */
static int stale_extra_step_after_loop(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
    TRY(zg_optim_step(k.o[0]));
out:
    kit_free(&k);
    return rc;
}

/* Multi-task: zero once, then `for task: backward(); step()`: task 2's step reuses task 1's grads. */
static int stale_multitask_step_per_task(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        for (int task = 0; task < 3; task++) {
            TRY(backward(loss_at(&k, 3 * i + task)));
            TRY(zg_optim_step(k.o[0]));
        }
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* DCGAN with netD.zero_grad() missing: D's next step reuses its last grads plus G's backward through D. */
static int stale_gan_d_not_zeroed(void) {
    kit k = {0};
    int rc = 0;
    TRY(gan_setup(&k));
    for (int i = 0; i < 3; i++) {
        TRY(backward(err_d_real(&k)));
        zg_tensor *fake = gen(&k);
        TRY(backward(err_d_fake(&k, fake)));
        TRY(zg_optim_step(k.o[1]));
        zg_module_zero_grad(k.m[0], true);
        TRY(backward(err_g(&k, fake)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* D zeroed right after its own step, then G's backward leaks into D's grads, which D's next step uses. */
static int stale_gan_leak_into_d(void) {
    kit k = {0};
    int rc = 0;
    TRY(gan_setup(&k));
    zg_optim_zero_grad(k.o[1], true);
    for (int i = 0; i < 3; i++) {
        zg_tensor *fake = gen(&k);
        TRY(backward(zg_add(err_d_real(&k), err_d_fake(&k, fake))));
        TRY(zg_optim_step(k.o[1]));
        zg_optim_zero_grad(k.o[1], true);
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(err_g(&k, fake)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* DCGAN with netG.zero_grad() missing: G's steps apply the running sum of its gradients. */
static int stale_gan_g_not_zeroed(void) {
    kit k = {0};
    int rc = 0;
    TRY(gan_setup(&k));
    for (int i = 0; i < 3; i++) {
        zg_module_zero_grad(k.m[1], true);
        TRY(backward(err_d_real(&k)));
        zg_tensor *fake = gen(&k);
        TRY(backward(err_d_fake(&k, fake)));
        TRY(zg_optim_step(k.o[1]));
        TRY(backward(err_g(&k, fake)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Autoencoder with enc/dec optimizers, only enc_opt.zero_grad() called: the decoder's grads accumulate. */
static int stale_autoencoder_zero_one_optimizer(void) {
    kit k = {0};
    int rc = 0;
    NEED(k.m[0] = zg_nn_linear(4, 3, true));
    NEED(k.m[1] = zg_nn_linear(3, 4, true));
    NEED(k.o[0] = optim_of(ZG_ADAM, k.m[0]));
    NEED(k.o[1] = optim_of(ZG_ADAM, k.m[1]));
    TRY(data(&k));
    for (int i = 0; i < 3; i++) {
        zg_tensor *x = batch(&k, i);
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(mse_of(zg_module_forward(k.m[1], zg_relu(zg_module_forward(k.m[0], x))), x)));
        TRY(zg_optim_step(k.o[0]));
        TRY(zg_optim_step(k.o[1]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* model.encoder.zero_grad() instead of model.zero_grad(): the head's grads are never cleared. */
static int stale_zero_submodule_only(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 3; i++) {
        zg_module_zero_grad(zg_module_child(k.m[0], 0), true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* ema_model.zero_grad() typed for model.zero_grad(): the trained model's grads pile up. */
static int stale_zero_ema_model(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.m[1] = mlp(4, 3, 2));
    TRY(set_trainable(k.m[1], false));
    for (int i = 0; i < 3; i++) {
        zg_module_zero_grad(k.m[1], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* zg_accum drives the window, but an old optimizer.step() per batch was left in: it reuses the window's grads. */
static int stale_accum_plus_manual_step(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.acc = zg_accum_new(k.o[0], NULL, 2));
    for (int i = 0; i < 4; i++) {
        TRY(zg_accum_backward(k.acc, loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        TRY(zg_accum_step(k.acc, NULL));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* FGSM adversarial training without zero_grad: clean+adversarial grads of every batch add up across steps. */
static int stale_fgsm_no_zero(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    TRY(fgsm_setup(&k));
    for (int i = 0; i < 3; i++) {
        zg_tensor_zero_grad(k.t[5], true);
        TRY(backward(mse_of(zg_module_forward(k.m[0], k.t[5]), k.t[1])));
        TRY(fgsm_perturb(&k, zg_tensor_grad(k.t[5])));
        TRY(backward(mse_of(zg_module_forward(k.m[0], k.t[6]), k.t[1])));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Fine-tuning the head over a frozen backbone, zero_grad forgotten: the head's grads accumulate. */
static int stale_finetune_no_zero(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *p[MAXP];
    NEED(k.m[0] = mlp(4, 3, 2));
    TRY(set_trainable(zg_module_child(k.m[0], 0), false));
    TRY(params(zg_module_child(k.m[0], 2), p) == 2 ? 0 : ZG_ERR_STATE);
    NEED(k.o[0] = optim_on(ZG_ADAM, p, 2));
    TRY(data(&k));
    for (int i = 0; i < 3; i++) {
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Backbone (SGD) and head (Adam) optimizers, backbone_opt.zero_grad() forgotten: the backbone steps stale sums. */
static int stale_two_optimizers_one_zeroed(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *p[MAXP];
    NEED(k.m[0] = mlp(4, 3, 2));
    TRY(params(k.m[0], p) == 4 ? 0 : ZG_ERR_STATE);
    NEED(k.o[0] = optim_on(ZG_SGD, p, 2));
    NEED(k.o[1] = optim_on(ZG_ADAM, p + 2, 2));
    TRY(data(&k));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[1], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        TRY(zg_optim_step(k.o[1]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* ---- erased: zero_grad erased grads no step used ------------------------- */

/* zero_grad() between backward() and step(): the step sees no gradient, the model never learns. */
static int erased_zero_between_backward_and_step(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 3; i++) {
        TRY(backward(loss_at(&k, i)));
        zg_optim_zero_grad(k.o[0], true);
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* model.zero_grad(set_to_none=False) after backward: zero-filled grads, the step moves nothing useful. */
static int erased_module_zero_after_backward(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 3; i++) {
        TRY(backward(loss_at(&k, i)));
        zg_module_zero_grad(k.m[0], false);
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Accumulation with zero_grad() every micro-batch: each window's step sees only its last micro-batch. */
static int erased_zero_every_micro_step_every_n(void) {
    kit k = {0};
    int rc = 0;
    const int n = 2;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 6; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(over(loss_at(&k, i), n)));
        if ((i + 1) % n == 0) TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* The Python indentation bug: zero_grad() dedented out of `if (i+1) % N == 0`, so it runs every micro-batch. */
static int erased_zero_outside_if(void) {
    kit k = {0};
    int rc = 0;
    const int n = 3;
    TRY(setup(&k, ZG_ADAM));
    for (int i = 0; i < 4 * n; i++) {
        TRY(backward(over(loss_at(&k, i), n)));
        if ((i + 1) % n == 0) TRY(zg_optim_step(k.o[0]));
        zg_optim_zero_grad(k.o[0], true);
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Accumulation with the step and zero conditions swapped: the odd micro-batches' grads are thrown away. */
static int erased_swapped_conditions(void) {
    kit k = {0};
    int rc = 0;
    const int n = 2;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 4 * n; i++) {
        TRY(backward(over(loss_at(&k, i), n)));
        if (i % n == 0) TRY(zg_optim_step(k.o[0]));
        if ((i + 1) % n == 0) zg_optim_zero_grad(k.o[0], true);
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* DCGAN with netD.zero_grad() between errD_real.backward() and errD_fake.backward(): D never learns from real data. */
static int erased_gan_d_zero_between_real_and_fake(void) {
    kit k = {0};
    int rc = 0;
    TRY(gan_setup(&k));
    for (int i = 0; i < 3; i++) {
        TRY(backward(err_d_real(&k)));
        zg_module_zero_grad(k.m[1], true);
        zg_tensor *fake = gen(&k);
        TRY(backward(err_d_fake(&k, fake)));
        TRY(zg_optim_step(k.o[1]));
        zg_module_zero_grad(k.m[0], true);
        TRY(backward(err_g(&k, fake)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* netG.zero_grad() after errG.backward(): optimizerG.step() sees no gradient, G never trains. */
static int erased_gan_g_zero_after_backward(void) {
    kit k = {0};
    int rc = 0;
    TRY(gan_setup(&k));
    for (int i = 0; i < 3; i++) {
        zg_module_zero_grad(k.m[1], true);
        TRY(backward(err_d_real(&k)));
        zg_tensor *fake = gen(&k);
        TRY(backward(err_d_fake(&k, fake)));
        TRY(zg_optim_step(k.o[1]));
        TRY(backward(err_g(&k, fake)));
        zg_module_zero_grad(k.m[0], true);
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Two losses with zero_grad() between their backwards: the first loss never reaches the step. */
static int erased_two_losses_zero_between(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 3; i++) {
        TRY(backward(loss_at(&k, 2 * i)));
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(zg_mean(zg_mul(zg_module_forward(k.m[0], batch(&k, 2 * i + 1)),
                                    zg_module_forward(k.m[0], batch(&k, 2 * i + 1))))));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* AMP: scaler.scale(loss).backward(); optimizer.zero_grad(set_to_none=False); scaler.step(): zero updates. */
static int erased_amp_zero_after_backward(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.s = zg_grad_scaler_new(NULL));
    for (int i = 0; i < 3; i++) {
        TRY(backward(scaled(&k, loss_at(&k, i))));
        zg_optim_zero_grad(k.o[0], false);
        TRY(scaler_step_update(&k, k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* `for p in model.parameters(): p.grad = None` placed after backward: the step finds nothing. */
static int erased_param_grad_none_loop(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *p[MAXP];
    TRY(setup(&k, ZG_SGD));
    int n = params(k.m[0], p);
    for (int i = 0; i < 3; i++) {
        TRY(backward(loss_at(&k, i)));
        for (int j = 0; j < n; j++) zg_tensor_zero_grad(p[j], true);
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* zg_accum with a habitual optimizer.zero_grad() per batch: each window keeps only its last micro-batch. */
static int erased_accum_with_zero_each_micro(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.acc = zg_accum_new(k.o[0], NULL, 2));
    for (int i = 0; i < 6; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(zg_accum_backward(k.acc, loss_at(&k, i)));
        TRY(zg_accum_step(k.acc, NULL));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* enc_opt.step(); model.zero_grad() over both parts; dec_opt.step(): the decoder never trains. */
static int erased_autoencoder_zero_all_before_dec_step(void) {
    kit k = {0};
    int rc = 0;
    NEED(k.m[0] = zg_nn_linear(4, 3, true));
    NEED(k.m[1] = zg_nn_linear(3, 4, true));
    NEED(k.o[0] = optim_of(ZG_SGD, k.m[0]));
    NEED(k.o[1] = optim_of(ZG_SGD, k.m[1]));
    TRY(data(&k));
    for (int i = 0; i < 3; i++) {
        zg_tensor *x = batch(&k, i);
        TRY(backward(mse_of(zg_module_forward(k.m[1], zg_relu(zg_module_forward(k.m[0], x))), x)));
        TRY(zg_optim_step(k.o[0]));
        zg_module_zero_grad(k.m[0], true);
        zg_module_zero_grad(k.m[1], true);
        TRY(zg_optim_step(k.o[1]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* clip_grad_norm_, then zero_grad() by mistake, then step(): the clipped grads are gone before the step. */
static int erased_zero_after_clip(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 3; i++) {
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_clip_grad_norm(k.o[0], 1.0, 2.0, false, NULL));
        zg_optim_zero_grad(k.o[0], true);
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* ---- no-grad: a step with no backward since the last step / zero --------- */

/* loss computed (and logged) but loss.backward() forgotten: every step is a no-op. */
static int no_grad_forgot_backward(void) {
    kit k = {0};
    int rc = 0;
    double logged = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        logged += zg_tensor_item(loss_at(&k, i));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
    (void)logged;
out:
    kit_free(&k);
    return rc;
}

/* zero_grad(); step(); backward(): the step runs before its gradients exist. */
static int no_grad_step_before_backward(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(zg_optim_step(k.o[0]));
        TRY(backward(loss_at(&k, i)));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* A validation loop copied from the training loop keeps optimizer.step(): it steps with no gradient. */
static int no_grad_step_in_validation(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 2; i++) {
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_optim_zero_grad(k.o[0], true);
        zg_arena_reset();
    }
    zg_no_grad_enter();
    for (int i = 0; i < 2; i++) {
        float v = zg_tensor_item(loss_at(&k, 10 + i));
        (void)v;
        rc = zg_optim_step(k.o[0]);
        zg_arena_reset();
        if (rc) break;
    }
    zg_no_grad_exit();
    if (rc) rc = failed(rc);
out:
    kit_free(&k);
    return rc;
}

/* Accumulation followed by an unconditional "flush the last window" step: no micro-batch was left. */
static int no_grad_unconditional_flush(void) {
    kit k = {0};
    int rc = 0;
    const int n = 2;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 4; i++) {
        TRY(backward(over(loss_at(&k, i), n)));
        if ((i + 1) % n == 0) {
            TRY(zg_optim_step(k.o[0]));
            zg_optim_zero_grad(k.o[0], true);
        }
        zg_arena_reset();
    }
    TRY(zg_optim_step(k.o[0]));
out:
    kit_free(&k);
    return rc;
}

/* DCGAN with errG computed but errG.backward() forgotten: optimizerG.step() has nothing to apply. */
static int no_grad_gan_err_g_not_backwarded(void) {
    kit k = {0};
    int rc = 0;
    double logged = 0;
    TRY(gan_setup(&k));
    for (int i = 0; i < 3; i++) {
        zg_module_zero_grad(k.m[1], true);
        TRY(backward(err_d_real(&k)));
        zg_tensor *fake = gen(&k);
        TRY(backward(err_d_fake(&k, fake)));
        TRY(zg_optim_step(k.o[1]));
        zg_module_zero_grad(k.m[0], true);
        logged += zg_tensor_item(err_g(&k, fake));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
    (void)logged;
out:
    kit_free(&k);
    return rc;
}

/* ---- unstepped: parameters with grads in no optimizer -------------------- */

/* A classifier head added after the optimizer was built: it gets grads but never trains. */
static int unstepped_head_added_after_optimizer(void) {
    kit k = {0};
    int rc = 0;
    NEED(k.m[0] = zg_nn_linear(4, 3, true));
    NEED(k.o[0] = optim_of(ZG_SGD, k.m[0]));
    NEED(k.m[1] = zg_nn_linear(3, 2, true));
    TRY(data(&k));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(mse_of(zg_module_forward(k.m[1], zg_relu(zg_module_forward(k.m[0], batch(&k, i)))), k.t[1])));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* optim.SGD(model.fc.parameters()) without freezing the rest: the first layer computes grads and stays put. */
static int unstepped_optimizer_over_last_layer(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *p[MAXP];
    NEED(k.m[0] = mlp(4, 3, 2));
    TRY(params(k.m[0], p) == 4 ? 0 : ZG_ERR_STATE);
    NEED(k.o[0] = optim_on(ZG_SGD, p + 2, 2));
    TRY(data(&k));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* The model was built before the sanitizer was turned on and is watched; the optimizer covers the head only. */
static int unstepped_watched_module(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *p[MAXP];
    zg_sanitize_mode mode = zg_sanitize_get_mode();
    zg_sanitize_set_mode(ZG_SANITIZE_OFF);
    k.m[0] = mlp(4, 3, 2);
    zg_sanitize_set_mode(mode);
    NEED(k.m[0]);
    TRY(zg_sanitize_watch_module(k.m[0]));
    TRY(params(k.m[0], p) == 4 ? 0 : ZG_ERR_STATE);
    NEED(k.o[0] = optim_on(ZG_ADAM, p + 2, 2));
    TRY(data(&k));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* An auxiliary head's loss is added, but the optimizer holds backbone + main head: the aux head never trains. */
static int unstepped_aux_head_not_in_optimizer(void) {
    kit k = {0};
    int rc = 0;
    NEED(k.m[0] = zg_nn_linear(4, 3, true));
    NEED(k.m[1] = zg_nn_linear(3, 2, true));
    NEED(k.m[2] = zg_nn_linear(3, 2, true));
    NEED(k.o[0] = optim_of2(ZG_ADAM, k.m[0], k.m[1]));
    TRY(data(&k));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        zg_tensor *h = zg_relu(zg_module_forward(k.m[0], batch(&k, i)));
        zg_tensor *main_loss = mse_of(zg_module_forward(k.m[1], h), k.t[1]);
        zg_tensor *aux_loss = mse_of(zg_module_forward(k.m[2], h), k.t[1]);
        TRY(backward(zg_add(main_loss, zg_mul_scalar(aux_loss, 0.3f))));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Weight-decay groups built from names: the decay group only, the no-decay (bias) group forgotten. */
static int unstepped_bias_missing_from_groups(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *decay[MAXP];
    int nd = 0;
    NEED(k.m[0] = mlp(4, 3, 2));
    for (int j = 0; j < zg_module_num_params(k.m[0]); j++)
        if (strstr(zg_module_param_name(k.m[0], j), "weight")) decay[nd++] = zg_module_param(k.m[0], j);
    zg_hp wd = {ZG_HP_WEIGHT_DECAY, 0.01};
    zg_param_group g = {decay, nd, &wd, 1};
    NEED(k.o[0] = zg_optim_new_groups(ZG_ADAMW, &g, 1, NULL));
    TRY(data(&k));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* ---- AMP: scaled grads clipped / read / stepped, unscaled grads unscaled - */

/* clip_grad_norm_ before scaler.unscale_(): the threshold applies to grads 65536x too large. */
static int scaled_clip_norm_before_unscale(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.s = zg_grad_scaler_new(NULL));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(scaled(&k, loss_at(&k, i))));
        TRY(zg_optim_clip_grad_norm(k.o[0], 1.0, 2.0, false, NULL));
        TRY(scaler_step_update(&k, k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* clip_grad_value_ on scaled grads: every element is clipped, the update is almost zero. */
static int scaled_clip_value_before_unscale(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_ADAM));
    NEED(k.s = zg_grad_scaler_new(NULL));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(scaled(&k, loss_at(&k, i))));
        TRY(zg_module_clip_grad_value(k.m[0], 1.0));
        TRY(scaler_step_update(&k, k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* AMP + accumulation: clip at the window's end, then scaler.step() with no unscale_() before the clip. */
static int scaled_clip_accum_window_end(void) {
    kit k = {0};
    int rc = 0;
    const int n = 2;
    TRY(setup(&k, ZG_SGD));
    NEED(k.s = zg_grad_scaler_new(NULL));
    for (int i = 0; i < 4; i++) {
        if (i % n == 0) zg_optim_zero_grad(k.o[0], true);
        TRY(backward(scaled(&k, over(loss_at(&k, i), n))));
        if ((i + 1) % n == 0) {
            TRY(zg_module_clip_grad_norm(k.m[0], 1.0, 2.0, false, NULL));
            TRY(scaler_step_update(&k, k.o[0]));
        }
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Logging the grad norm from p.grad before unscale_(): the logged norms are 65536x too large. */
static int scaled_read_log_grad_norm(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *p[MAXP];
    double log_sum = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.s = zg_grad_scaler_new(NULL));
    int n = params(k.m[0], p);
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(scaled(&k, loss_at(&k, i))));
        log_sum += sqrt(grad_sq(p, n));
        TRY(scaler_step_update(&k, k.o[0]));
        zg_arena_reset();
    }
    (void)log_sum;
out:
    kit_free(&k);
    return rc;
}

/* A hand-written clip (scale each p.grad by max_norm / norm) on scaled grads: it clips by the wrong norm. */
static int scaled_read_hand_clip(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *p[MAXP];
    TRY(setup(&k, ZG_SGD));
    NEED(k.s = zg_grad_scaler_new(NULL));
    int n = params(k.m[0], p);
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(scaled(&k, loss_at(&k, i))));
        double norm = sqrt(grad_sq(p, n));
        if (norm > 1.0)
            for (int j = 0; j < n; j++) TRY(zg_tensor_mul_scalar_(zg_tensor_grad(p[j]), (float)(1.0 / norm)));
        TRY(scaler_step_update(&k, k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* A "skip bad batches" check reading p.grad for inf/NaN before unscale_(): it inspects scaled values. */
static int scaled_read_nan_check(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *p[MAXP];
    TRY(setup(&k, ZG_SGD));
    NEED(k.s = zg_grad_scaler_new(NULL));
    int n = params(k.m[0], p);
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(scaled(&k, loss_at(&k, i))));
        if (!isfinite(grad_sq(p, n))) continue;
        TRY(scaler_step_update(&k, k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Converted to AMP but kept optimizer.step(): the update is 65536x too large and inf checks are skipped. */
static int scaled_step_optimizer_step(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.s = zg_grad_scaler_new(NULL));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(scaled(&k, loss_at(&k, i))));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* AMP GAN: scaler.step(optimizerD) but optimizerG.step() directly: G is updated with scaled grads. */
static int scaled_step_gan_generator(void) {
    kit k = {0};
    int rc = 0;
    TRY(gan_setup(&k));
    NEED(k.s = zg_grad_scaler_new(NULL));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[1], true);
        zg_tensor *fake = gen(&k);
        TRY(backward(scaled(&k, zg_add(err_d_real(&k), err_d_fake(&k, fake)))));
        TRY(zg_grad_scaler_step(k.s, k.o[1], NULL));
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(scaled(&k, err_g(&k, fake))));
        TRY(zg_optim_step(k.o[0]));
        TRY(zg_grad_scaler_update(k.s));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* AMP + accumulation closing each window with optimizer.step(): scaled grads applied as they are. */
static int scaled_step_accum(void) {
    kit k = {0};
    int rc = 0;
    const int n = 2;
    TRY(setup(&k, ZG_SGD));
    NEED(k.s = zg_grad_scaler_new(NULL));
    for (int i = 0; i < 4; i++) {
        if (i % n == 0) zg_optim_zero_grad(k.o[0], true);
        TRY(backward(scaled(&k, over(loss_at(&k, i), n))));
        if ((i + 1) % n == 0) TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* `scaled = scaler.scale(loss)` computed but `loss.backward()` called: scaler.step() divides true grads by 65536. */
static int unscaled_backward_of_plain_loss(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.s = zg_grad_scaler_new(NULL));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        zg_tensor *loss = loss_at(&k, i);
        zg_tensor *scaled_loss = scaled(&k, loss);
        NEED(scaled_loss);
        TRY(backward(loss));
        TRY(scaler_step_update(&k, k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* scaler.scale(task_loss).backward(); reg_loss.backward() unscaled: unscale_ shrinks the regulariser's grads 65536x. */
static int unscaled_mixed_losses(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.s = zg_grad_scaler_new(NULL));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(scaled(&k, loss_at(&k, 2 * i))));
        TRY(backward(zg_mul_scalar(loss_at(&k, 2 * i + 1), 0.1f)));
        TRY(scaler_step_update(&k, k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Pipelined step/backward/update(): grads made with the old scale are unscaled by the new one. */
static int unscaled_update_between_backward_and_step(void) {
    kit k = {0};
    int rc = 0;
    zg_grad_scaler_opts so = ZG_GRAD_SCALER_DEFAULTS;
    so.growth_interval = 1;
    TRY(setup(&k, ZG_SGD));
    NEED(k.s = zg_grad_scaler_new(&so));
    zg_optim_zero_grad(k.o[0], true);
    TRY(backward(scaled(&k, loss_at(&k, 0))));
    for (int i = 1; i < 4; i++) {
        TRY(zg_grad_scaler_step(k.s, k.o[0], NULL));
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(scaled(&k, loss_at(&k, i))));
        TRY(zg_grad_scaler_update(k.s));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* ---- frozen-step: a frozen parameter with a zero-filled grad still moves - */

/* Backbone frozen after 2 epochs, but zero_grad(set_to_none=False) keeps a zero grad and SGD momentum moves it. */
static int frozen_momentum_after_freeze(void) {
    kit k = {0};
    int rc = 0;
    zg_optim_config c = zg_optim_defaults(ZG_SGD);
    zg_tensor *p[MAXP];
    c.lr = 0.05;
    c.momentum = 0.9;
    NEED(k.m[0] = mlp(4, 3, 2));
    int n = params(k.m[0], p);
    NEED(k.o[0] = zg_optim_new(ZG_SGD, p, n, &c));
    TRY(data(&k));
    for (int i = 0; i < 4; i++) {
        if (i == 2) TRY(set_trainable(zg_module_child(k.m[0], 0), false));
        zg_optim_zero_grad(k.o[0], false);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* AdamW with model.zero_grad(set_to_none=False): a layer frozen mid-training keeps decaying and moving. */
static int frozen_adamw_zero_filled(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_ADAMW));
    for (int i = 0; i < 4; i++) {
        zg_module_zero_grad(k.m[0], false);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        if (i == 1) TRY(set_trainable(zg_module_child(k.m[0], 2), false));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* A freezing callback run between backward and step: the just-frozen layer is still updated with its grad. */
static int frozen_between_backward_and_step(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 4; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        if (i == 2) TRY(set_trainable(zg_module_child(k.m[0], 0), false));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* ---- consumed-clip: clipping after the step that used the grads ---------- */

/* optimizer.step(); clip_grad_norm_(): the clip comes too late to affect the update. */
static int consumed_clip_after_step(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        TRY(zg_optim_clip_grad_norm(k.o[0], 1.0, 2.0, false, NULL));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* AMP: scaler.step(); clip_grad_norm_(); scaler.update(): the clip runs after the update was applied. */
static int consumed_clip_after_scaler_step(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.s = zg_grad_scaler_new(NULL));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(scaled(&k, loss_at(&k, i))));
        TRY(zg_grad_scaler_step(k.s, k.o[0], NULL));
        TRY(zg_optim_clip_grad_norm(k.o[0], 1.0, 2.0, false, NULL));
        TRY(zg_grad_scaler_update(k.s));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Accumulation: step(), clip_grad_value_(), zero_grad() at the window's end: the clip changes nothing. */
static int consumed_clip_accum(void) {
    kit k = {0};
    int rc = 0;
    const int n = 2;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 4; i++) {
        TRY(backward(over(loss_at(&k, i), n)));
        if ((i + 1) % n == 0) {
            TRY(zg_optim_step(k.o[0]));
            TRY(zg_optim_clip_grad_value(k.o[0], 0.5));
            zg_optim_zero_grad(k.o[0], true);
        }
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* ---- schedulers ---------------------------------------------------------- */

/* scheduler.step() at the start of each epoch (pre-1.1 order): the first lr value is skipped. */
static int sched_order_epoch_start(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.sd[0] = zg_sched_step_lr(k.o[0], 1, 0.5));
    for (int epoch = 0; epoch < 2; epoch++) {
        TRY(zg_sched_step(k.sd[0]));
        for (int i = 0; i < 2; i++) {
            zg_optim_zero_grad(k.o[0], true);
            TRY(backward(loss_at(&k, 2 * epoch + i)));
            TRY(zg_optim_step(k.o[0]));
            zg_arena_reset();
        }
    }
out:
    kit_free(&k);
    return rc;
}

/* Warm-up LinearLR stepped at the top of each iteration: the warm-up is one step short. */
static int sched_order_warmup_top_of_iteration(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_ADAM));
    NEED(k.sd[0] = zg_sched_linear(k.o[0], 0.25, 1.0, 4));
    for (int i = 0; i < 3; i++) {
        TRY(zg_sched_step(k.sd[0]));
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* OneCycleLR stepped before the optimizer in each iteration: the cycle is shifted and runs out a step early. */
static int sched_order_onecycle(void) {
    kit k = {0};
    int rc = 0;
    zg_onecycle_opts oc = zg_onecycle_defaults(10);
    oc.cycle_momentum = false;
    TRY(setup(&k, ZG_SGD));
    NEED(k.sd[0] = zg_sched_onecycle(k.o[0], 0.1, &oc));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_sched_step(k.sd[0]));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Accumulation with scheduler.step() per micro-batch: the schedule runs N times too fast. */
static int sched_repeat_per_micro_batch(void) {
    kit k = {0};
    int rc = 0;
    const int n = 2;
    TRY(setup(&k, ZG_SGD));
    NEED(k.sd[0] = zg_sched_cosine(k.o[0], 20, 0.0));
    for (int i = 0; i < 6; i++) {
        if (i % n == 0) zg_optim_zero_grad(k.o[0], true);
        TRY(backward(over(loss_at(&k, i), n)));
        if ((i + 1) % n == 0) TRY(zg_optim_step(k.o[0]));
        TRY(zg_sched_step(k.sd[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* scheduler.step() per batch and again at the epoch's end (two tutorials merged): one step too many per epoch. */
static int sched_repeat_batch_and_epoch(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.sd[0] = zg_sched_step_lr(k.o[0], 2, 0.5));
    for (int epoch = 0; epoch < 2; epoch++) {
        for (int i = 0; i < 2; i++) {
            zg_optim_zero_grad(k.o[0], true);
            TRY(backward(loss_at(&k, 2 * epoch + i)));
            TRY(zg_optim_step(k.o[0]));
            TRY(zg_sched_step(k.sd[0]));
            zg_arena_reset();
        }
        TRY(zg_sched_step(k.sd[0]));
    }
out:
    kit_free(&k);
    return rc;
}

/* zg_accum windows with scheduler.step() after every micro-batch rather than after each real step. */
static int sched_repeat_with_accum(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.acc = zg_accum_new(k.o[0], NULL, 2));
    NEED(k.sd[0] = zg_sched_step_lr(k.o[0], 1, 0.9));
    for (int i = 0; i < 6; i++) {
        TRY(zg_accum_backward(k.acc, loss_at(&k, i)));
        TRY(zg_accum_step(k.acc, NULL));
        TRY(zg_sched_step(k.sd[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* ---- window: more backward passes than declared -------------------------- */

/* The window was declared as 2 (config) but the loop uses accumulation_steps = 3: 3 passes per step. */
static int window_config_mismatch(void) {
    kit k = {0};
    int rc = 0;
    const int n = 3;
    TRY(setup(&k, ZG_SGD));
    TRY(zg_sanitize_expect_accumulation(k.o[0], 2));
    for (int i = 0; i < 6; i++) {
        if (i % n == 0) zg_optim_zero_grad(k.o[0], true);
        TRY(backward(over(loss_at(&k, i), n)));
        if ((i + 1) % n == 0) TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* zg_accum(N=2) plus an auxiliary loss backwarded by hand each micro-batch: 4 passes per declared window of 2. */
static int window_accum_plus_manual_backward(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.acc = zg_accum_new(k.o[0], NULL, 2));
    for (int i = 0; i < 4; i++) {
        TRY(zg_accum_backward(k.acc, loss_at(&k, i)));
        TRY(backward(zg_mul_scalar(loss_at(&k, i + 10), 0.1f)));
        TRY(zg_accum_step(k.acc, NULL));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Off by one: `if i % N == 0 and i > 0: step()` after backward, with N declared: the first window has N+1 passes. */
static int window_off_by_one(void) {
    kit k = {0};
    int rc = 0;
    const int n = 2;
    TRY(setup(&k, ZG_SGD));
    TRY(zg_sanitize_expect_accumulation(k.o[0], n));
    zg_optim_zero_grad(k.o[0], true);
    for (int i = 0; i < 5; i++) {
        TRY(backward(over(loss_at(&k, i), n)));
        if (i % n == 0 && i > 0) {
            TRY(zg_optim_step(k.o[0]));
            zg_optim_zero_grad(k.o[0], true);
        }
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* ========================================================================
 * CORRECT loops
 * ======================================================================== */

/* ---- the basic orders ---------------------------------------------------- */

/* optimizer.zero_grad(); loss.backward(); optimizer.step(): the canonical loop. */
static int ok_zero_backward_step(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 4; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* loss.backward(); optimizer.step(); optimizer.zero_grad(): zeroing after the step is equivalent. */
static int ok_backward_step_zero(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_ADAM));
    for (int i = 0; i < 4; i++) {
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_optim_zero_grad(k.o[0], true);
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* optimizer.zero_grad(set_to_none=False) (PyTorch < 2.0 default): zero-filled grads, then backward and step. */
static int ok_zero_set_to_none_false(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 4; i++) {
        zg_optim_zero_grad(k.o[0], false);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* model.zero_grad() instead of optimizer.zero_grad(): the same parameters are cleared. */
static int ok_model_zero_grad(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_RMSPROP));
    for (int i = 0; i < 4; i++) {
        zg_module_zero_grad(k.m[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Zeroing after the forward, before backward (the pattern of many repos): equivalent. */
static int ok_zero_after_forward(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_ADAGRAD));
    for (int i = 0; i < 4; i++) {
        zg_tensor *loss = loss_at(&k, i);
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* zero_grad both before backward and after step (belt and braces): the second one clears used grads only. */
static int ok_zero_twice(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 4; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_module_zero_grad(k.m[0], true);
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* An evaluation pass under torch.no_grad() between epochs: no gradients, no steps. */
static int ok_eval_between_epochs(void) {
    kit k = {0};
    int rc = 0;
    double val = 0;
    TRY(setup(&k, ZG_SGD));
    for (int epoch = 0; epoch < 2; epoch++) {
        zg_module_train(k.m[0], true);
        for (int i = 0; i < 2; i++) {
            zg_optim_zero_grad(k.o[0], true);
            TRY(backward(loss_at(&k, 2 * epoch + i)));
            TRY(zg_optim_step(k.o[0]));
            zg_arena_reset();
        }
        zg_module_train(k.m[0], false);
        zg_no_grad_enter();
        val += zg_tensor_item(loss_at(&k, 20));
        zg_no_grad_exit();
        zg_arena_reset();
    }
    (void)val;
out:
    kit_free(&k);
    return rc;
}

/* ---- gradient accumulation ----------------------------------------------- */

/* `if i % N == 0: zero_grad()` ... `(loss / N).backward()` ... `if (i+1) % N == 0: step()`. */
static int ok_accum_by_hand(void) {
    kit k = {0};
    int rc = 0;
    const int n = 3;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 6; i++) {
        if (i % n == 0) zg_optim_zero_grad(k.o[0], true);
        TRY(backward(over(loss_at(&k, i), n)));
        if ((i + 1) % n == 0) TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* The HF-style accumulation: backward every batch, `if (i+1) % N == 0: step(); zero_grad()`. */
static int ok_accum_step_then_zero(void) {
    kit k = {0};
    int rc = 0;
    const int n = 2;
    TRY(setup(&k, ZG_ADAMW));
    for (int i = 0; i < 6; i++) {
        TRY(backward(over(loss_at(&k, i), n)));
        if ((i + 1) % n == 0) {
            TRY(zg_optim_step(k.o[0]));
            zg_optim_zero_grad(k.o[0], true);
        }
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Accumulation whose last short window is stepped too (`or i == len(loader) - 1`). */
static int ok_accum_partial_last_window(void) {
    kit k = {0};
    int rc = 0;
    const int n = 2, len = 5;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < len; i++) {
        TRY(backward(over(loss_at(&k, i), n)));
        if ((i + 1) % n == 0 || i == len - 1) {
            TRY(zg_optim_step(k.o[0]));
            zg_optim_zero_grad(k.o[0], true);
        }
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Accumulation by hand with the window declared to the sanitizer (zg_sanitize_expect_accumulation). */
static int ok_accum_declared(void) {
    kit k = {0};
    int rc = 0;
    const int n = 4;
    TRY(setup(&k, ZG_SGD));
    TRY(zg_sanitize_expect_accumulation(k.o[0], n));
    for (int i = 0; i < 8; i++) {
        if (i % n == 0) zg_module_zero_grad(k.m[0], false);
        TRY(backward(over(loss_at(&k, i), n)));
        if ((i + 1) % n == 0) TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* The epoch's leftover micro-batch is dropped once by a final zero_grad() (a single discard, like drop_last). */
static int ok_accum_drop_last_once(void) {
    kit k = {0};
    int rc = 0;
    const int n = 2;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 5; i++) {
        if (i % n == 0) zg_optim_zero_grad(k.o[0], true);
        TRY(backward(over(loss_at(&k, i), n)));
        if ((i + 1) % n == 0) TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
    zg_optim_zero_grad(k.o[0], true);
out:
    kit_free(&k);
    return rc;
}

/* zg_accum: backward of loss / N per micro-batch, a step per full window. */
static int ok_zg_accum(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.acc = zg_accum_new(k.o[0], NULL, 3));
    for (int i = 0; i < 6; i++) {
        TRY(zg_accum_backward(k.acc, loss_at(&k, i)));
        TRY(zg_accum_step(k.acc, NULL));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* zg_accum with a short last window stepped by zg_accum_flush at the epoch's end. */
static int ok_zg_accum_flush(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_ADAM));
    NEED(k.acc = zg_accum_new(k.o[0], NULL, 2));
    for (int i = 0; i < 5; i++) {
        TRY(zg_accum_backward(k.acc, loss_at(&k, i)));
        TRY(zg_accum_step(k.acc, NULL));
        zg_arena_reset();
    }
    TRY(zg_accum_flush(k.acc, NULL));
out:
    kit_free(&k);
    return rc;
}

/* zg_accum with a GradScaler and clipping: the full AMP accumulation recipe in one object. */
static int ok_zg_accum_scaler_clip(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.s = zg_grad_scaler_new(NULL));
    NEED(k.acc = zg_accum_new(k.o[0], k.s, 2));
    TRY(zg_accum_set_clip(k.acc, 1.0, 2.0));
    for (int i = 0; i < 6; i++) {
        TRY(zg_accum_backward(k.acc, loss_at(&k, i)));
        TRY(zg_accum_step(k.acc, NULL));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* zg_accum with a non-finite micro-batch: the window is dropped with zg_accum_discard and training goes on. */
static int ok_zg_accum_discard_nan(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.acc = zg_accum_new(k.o[0], NULL, 2));
    for (int i = 0; i < 7; i++) {
        zg_tensor *x = (i == 1 || i == 4) ? zg_mul_scalar(k.t[0], NAN) : batch(&k, i);
        zg_tensor *loss = mse_of(zg_module_forward(k.m[0], x), k.t[1]);
        TRY(zg_accum_backward(k.acc, loss));
        if (!isfinite(zg_tensor_item(loss))) zg_accum_discard(k.acc);
        else TRY(zg_accum_step(k.acc, NULL));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* zg_accum with a scheduler stepped once per real optimizer step (`if stepped: scheduler.step()`). */
static int ok_zg_accum_sched(void) {
    kit k = {0};
    int rc = 0;
    bool stepped = false;
    TRY(setup(&k, ZG_SGD));
    NEED(k.acc = zg_accum_new(k.o[0], NULL, 2));
    NEED(k.sd[0] = zg_sched_cosine(k.o[0], 10, 0.0));
    for (int i = 0; i < 6; i++) {
        TRY(zg_accum_backward(k.acc, loss_at(&k, i)));
        TRY(zg_accum_step(k.acc, &stepped));
        if (stepped) TRY(zg_sched_step(k.sd[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* ---- several losses per step -------------------------------------------- */

/* (loss1 + loss2).backward(): one backward of the summed losses. */
static int ok_multi_loss_sum(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        zg_tensor *out = zg_module_forward(k.m[0], batch(&k, i));
        TRY(backward(zg_add(mse_of(out, k.t[1]), zg_mul_scalar(zg_mean(zg_mul(out, out)), 0.01f))));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* loss1.backward(retain_graph=True); loss2.backward(); step(): two losses sharing a forward feed one step. */
static int ok_multi_loss_retain_graph(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_ADAM));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        zg_tensor *out = zg_module_forward(k.m[0], batch(&k, i));
        TRY(backward_retain(mse_of(out, k.t[1])));
        TRY(backward(zg_mul_scalar(zg_mean(zg_mul(out, out)), 0.01f)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Multi-loss step declared with zg_sanitize_expect_backwards(2). */
static int ok_multi_loss_declared(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        zg_sanitize_expect_backwards(2);
        TRY(backward(loss_at(&k, 2 * i)));
        TRY(backward(loss_at(&k, 2 * i + 1)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Multi-task: one forward and backward per task, then a single optimizer.step(). */
static int ok_multitask_one_step(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        for (int task = 0; task < 3; task++) TRY(backward(loss_at(&k, 3 * i + task)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Shared trunk, two heads with their own losses, two backwards (retain_graph), one optimizer. */
static int ok_two_heads_retain_graph(void) {
    kit k = {0};
    int rc = 0;
    NEED(k.m[0] = zg_nn_linear(4, 3, true));
    NEED(k.m[1] = zg_nn_linear(3, 2, true));
    NEED(k.m[2] = zg_nn_linear(3, 2, true));
    {
        zg_tensor *p[3 * MAXP];
        int n = params(k.m[0], p);
        n += params(k.m[1], p + n);
        n += params(k.m[2], p + n);
        NEED(k.o[0] = optim_on(ZG_SGD, p, n));
    }
    TRY(data(&k));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        zg_tensor *h = zg_relu(zg_module_forward(k.m[0], batch(&k, i)));
        TRY(backward_retain(mse_of(zg_module_forward(k.m[1], h), k.t[1])));
        TRY(backward(mse_of(zg_module_forward(k.m[2], h), k.t[1])));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* ---- GANs ------------------------------------------------------------------ */

/* The DCGAN tutorial: errG.backward() also fills D's grads, which the next netD.zero_grad() clears unused. */
static int ok_dcgan_tutorial(void) {
    kit k = {0};
    int rc = 0;
    TRY(gan_setup(&k));
    for (int i = 0; i < 4; i++) {
        zg_module_zero_grad(k.m[1], true);
        TRY(backward(err_d_real(&k)));
        zg_tensor *fake = gen(&k);
        TRY(backward(err_d_fake(&k, fake)));
        TRY(zg_optim_step(k.o[1]));
        zg_module_zero_grad(k.m[0], true);
        TRY(backward(err_g(&k, fake)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* A GAN with optimizer.zero_grad() and one summed D loss (the PyTorch-Lightning style manual optimization). */
static int ok_gan_optimizer_zero(void) {
    kit k = {0};
    int rc = 0;
    TRY(gan_setup(&k));
    for (int i = 0; i < 4; i++) {
        zg_tensor *fake = gen(&k);
        zg_optim_zero_grad(k.o[1], true);
        TRY(backward(zg_mul_scalar(zg_add(err_d_real(&k), err_d_fake(&k, fake)), 0.5f)));
        TRY(zg_optim_step(k.o[1]));
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(err_g(&k, fake)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* pix2pix / CycleGAN: set_requires_grad(netD, False) for the G update, True again for D's. */
static int ok_gan_requires_grad_toggle(void) {
    kit k = {0};
    int rc = 0;
    TRY(gan_setup(&k));
    for (int i = 0; i < 4; i++) {
        zg_tensor *fake = gen(&k);
        TRY(set_trainable(k.m[1], false));
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(err_g(&k, fake)));
        TRY(zg_optim_step(k.o[0]));
        TRY(set_trainable(k.m[1], true));
        zg_optim_zero_grad(k.o[1], true);
        TRY(backward(zg_add(err_d_real(&k), err_d_fake(&k, fake))));
        TRY(zg_optim_step(k.o[1]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* WGAN: n_critic = 2 critic updates per generator update, each zeroed first. */
static int ok_wgan_n_critic(void) {
    kit k = {0};
    int rc = 0;
    TRY(gan_setup(&k));
    for (int i = 0; i < 3; i++) {
        for (int c = 0; c < 2; c++) {
            zg_optim_zero_grad(k.o[1], true);
            zg_tensor *fake = zg_detach(gen(&k));
            TRY(backward(zg_sub(zg_mean(zg_module_forward(k.m[1], fake)),
                                zg_mean(zg_module_forward(k.m[1], k.t[0])))));
            TRY(zg_optim_step(k.o[1]));
        }
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(zg_neg(zg_mean(zg_module_forward(k.m[1], gen(&k))))));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* LAMBDA mean((|grad_x D(x_hat)|_2 - 1)^2) at x_hat = 0.3 real + 0.7 fake
 * (fake detached), the gradient from a create_graph pass (WGAN-GP). */
static zg_tensor *gradient_penalty(kit *k, zg_tensor *fake) {
    zg_tensor *x_hat = zg_add(zg_mul_scalar(k->t[0], 0.3f), zg_mul_scalar(zg_detach(fake), 0.7f)), *g = NULL;
    if (!x_hat || zg_tensor_set_requires_grad(x_hat, true)) return NULL;
    zg_tensor *d = zg_module_forward(k->m[1], x_hat);
    const zg_tensor *ones = k->t[3];
    const zg_grad_opts o = {.grad_outputs = &ones, .create_graph = true};
    if (!d || zg_autograd_grad_opts(&d, 1, &x_hat, 1, &g, &o)) return NULL;
    zg_tensor *norm = zg_sqrt(zg_sum_dim(zg_mul(g, g), 1, false));
    return zg_mul_scalar(zg_mean(zg_pow_scalar(zg_sub_scalar(norm, 1.0f), 2.0f)), 10.0f);
}

/* WGAN-GP: each critic step zeroes D, adds the gradient penalty (a
 * gradient of a gradient) to the critic's loss, one backward, a step. */
static int ok_wgan_gp(void) {
    kit k = {0};
    int rc = 0;
    TRY(gan_setup(&k));
    for (int i = 0; i < 3; i++) {
        for (int c = 0; c < 2; c++) {
            zg_optim_zero_grad(k.o[1], true);
            zg_tensor *fake = zg_detach(gen(&k)), *gp = gradient_penalty(&k, fake);
            NEED(gp);
            TRY(backward(zg_add(zg_sub(zg_mean(zg_module_forward(k.m[1], fake)),
                                       zg_mean(zg_module_forward(k.m[1], k.t[0]))),
                                gp)));
            TRY(zg_optim_step(k.o[1]));
        }
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(zg_neg(zg_mean(zg_module_forward(k.m[1], gen(&k))))));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* WGAN-GP as the paper's code ported to PyTorch: netD.zero_grad(), then
 * D_real.backward(mone), D_fake.backward(one), gradient_penalty.backward()
 * into one step; D frozen (requires_grad False) for G's update. */
static int ok_wgan_gp_three_backwards(void) {
    kit k = {0};
    int rc = 0;
    TRY(gan_setup(&k));
    for (int i = 0; i < 3; i++) {
        TRY(set_trainable(k.m[1], true));
        for (int c = 0; c < 2; c++) {
            zg_module_zero_grad(k.m[1], true);
            TRY(backward(zg_neg(zg_mean(zg_module_forward(k.m[1], k.t[0])))));
            zg_tensor *fake = zg_detach(gen(&k));
            TRY(backward(zg_mean(zg_module_forward(k.m[1], fake))));
            zg_tensor *gp = gradient_penalty(&k, fake);
            NEED(gp);
            TRY(backward(gp));
            TRY(zg_optim_step(k.o[1]));
        }
        TRY(set_trainable(k.m[1], false));
        zg_module_zero_grad(k.m[0], true);
        TRY(backward(zg_neg(zg_mean(zg_module_forward(k.m[1], gen(&k))))));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* DCGAN with AMP, one GradScaler for both optimizers and one update() per iteration (the AMP docs). */
static int ok_dcgan_amp_one_scaler(void) {
    kit k = {0};
    int rc = 0;
    TRY(gan_setup(&k));
    NEED(k.s = zg_grad_scaler_new(NULL));
    for (int i = 0; i < 3; i++) {
        zg_tensor *fake = gen(&k);
        zg_optim_zero_grad(k.o[1], true);
        TRY(backward(scaled(&k, zg_add(err_d_real(&k), err_d_fake(&k, fake)))));
        TRY(zg_grad_scaler_step(k.s, k.o[1], NULL));
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(scaled(&k, err_g(&k, fake))));
        TRY(zg_grad_scaler_step(k.s, k.o[0], NULL));
        TRY(zg_grad_scaler_update(k.s));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* ---- AMP -------------------------------------------------------------------- */

/* scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update(). */
static int ok_amp_basic(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_ADAM));
    NEED(k.s = zg_grad_scaler_new(NULL));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(scaled(&k, loss_at(&k, i))));
        TRY(scaler_step_update(&k, k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* scaler.unscale_(optimizer); clip_grad_norm_(); scaler.step(); scaler.update() (the AMP docs' clipping recipe). */
static int ok_amp_unscale_clip(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.s = zg_grad_scaler_new(NULL));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(scaled(&k, loss_at(&k, i))));
        TRY(zg_grad_scaler_unscale_(k.s, k.o[0]));
        TRY(zg_optim_clip_grad_norm(k.o[0], 1.0, 2.0, false, NULL));
        TRY(scaler_step_update(&k, k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Logging the grad norm from p.grad after scaler.unscale_(): the true norm. */
static int ok_amp_log_norm_after_unscale(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *p[MAXP];
    double log_sum = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.s = zg_grad_scaler_new(NULL));
    int n = params(k.m[0], p);
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(scaled(&k, loss_at(&k, i))));
        TRY(zg_grad_scaler_unscale_(k.s, k.o[0]));
        log_sum += sqrt(grad_sq(p, n));
        TRY(scaler_step_update(&k, k.o[0]));
        zg_arena_reset();
    }
    (void)log_sum;
out:
    kit_free(&k);
    return rc;
}

/* AMP with accumulation by hand: scaled (loss / N) per micro-batch; unscale_, clip, step, update per window. */
static int ok_amp_accum_by_hand(void) {
    kit k = {0};
    int rc = 0;
    const int n = 2;
    TRY(setup(&k, ZG_SGD));
    NEED(k.s = zg_grad_scaler_new(NULL));
    for (int i = 0; i < 6; i++) {
        TRY(backward(scaled(&k, over(loss_at(&k, i), n))));
        if ((i + 1) % n == 0) {
            TRY(zg_grad_scaler_unscale_(k.s, k.o[0]));
            TRY(zg_optim_clip_grad_norm(k.o[0], 1.0, 2.0, false, NULL));
            TRY(scaler_step_update(&k, k.o[0]));
            zg_optim_zero_grad(k.o[0], true);
        }
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* AMP docs, "multiple models, losses and optimizers": two scaled losses, two scaler.step(), one update(). */
static int ok_amp_two_models_two_losses(void) {
    kit k = {0};
    int rc = 0;
    NEED(k.m[0] = zg_nn_linear(4, 2, true));
    NEED(k.m[1] = zg_nn_linear(4, 2, true));
    NEED(k.o[0] = optim_of(ZG_SGD, k.m[0]));
    NEED(k.o[1] = optim_of(ZG_SGD, k.m[1]));
    NEED(k.s = zg_grad_scaler_new(NULL));
    TRY(data(&k));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        zg_optim_zero_grad(k.o[1], true);
        zg_tensor *x = batch(&k, i);
        zg_tensor *o0 = zg_module_forward(k.m[0], x), *o1 = zg_module_forward(k.m[1], x);
        zg_tensor *l0 = mse_of(zg_add(zg_mul_scalar(o0, 2.0f), zg_mul_scalar(o1, 3.0f)), k.t[1]);
        zg_tensor *l1 = mse_of(zg_sub(zg_mul_scalar(o0, 3.0f), zg_mul_scalar(o1, 5.0f)), k.t[1]);
        TRY(backward_retain(scaled(&k, l0)));
        TRY(backward(scaled(&k, l1)));
        TRY(zg_grad_scaler_unscale_(k.s, k.o[0]));
        TRY(zg_optim_clip_grad_norm(k.o[0], 1.0, 2.0, false, NULL));
        TRY(zg_grad_scaler_step(k.s, k.o[0], NULL));
        TRY(zg_grad_scaler_step(k.s, k.o[1], NULL));
        TRY(zg_grad_scaler_update(k.s));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* AMP with a per-iteration scheduler after scaler.step()/update(). */
static int ok_amp_sched(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.s = zg_grad_scaler_new(NULL));
    NEED(k.sd[0] = zg_sched_step_lr(k.o[0], 1, 0.9));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(scaled(&k, loss_at(&k, i))));
        TRY(scaler_step_update(&k, k.o[0]));
        TRY(zg_sched_step(k.sd[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* AMP whose first steps overflow (huge init_scale): scaler.step skips them, update() backs off. */
static int ok_amp_skipped_steps(void) {
    kit k = {0};
    int rc = 0;
    zg_grad_scaler_opts so = ZG_GRAD_SCALER_DEFAULTS;
    so.init_scale = 3e38f;
    TRY(setup(&k, ZG_SGD));
    NEED(k.s = zg_grad_scaler_new(&so));
    for (int i = 0; i < 4; i++) {
        zg_optim_zero_grad(k.o[0], true);
        zg_tensor *l = loss_at(&k, i);
        TRY(backward(scaled(&k, zg_add_scalar(zg_mul(l, l), 10.0f))));
        TRY(scaler_step_update(&k, k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* GradScaler(enabled=False) (AMP switched off by a flag): scale() returns the loss, step() just steps. */
static int ok_amp_disabled_scaler(void) {
    kit k = {0};
    int rc = 0;
    zg_grad_scaler_opts so = ZG_GRAD_SCALER_DEFAULTS;
    so.enabled = false;
    TRY(setup(&k, ZG_SGD));
    NEED(k.s = zg_grad_scaler_new(&so));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(scaled(&k, loss_at(&k, i))));
        TRY(zg_grad_scaler_unscale_(k.s, k.o[0]));
        TRY(zg_optim_clip_grad_norm(k.o[0], 1.0, 2.0, false, NULL));
        TRY(scaler_step_update(&k, k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* torch.autocast(dtype=bfloat16) around the forward, no scaler (bf16 needs none). */
static int ok_autocast_bf16(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_ADAMW));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(zg_autocast_enter(ZG_AUTOCAST_BF16));
        zg_tensor *loss = loss_at(&k, i);
        zg_autocast_exit();
        TRY(backward(loss));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* torch.autocast(dtype=float16) plus GradScaler: the full fp16 recipe. */
static int ok_autocast_fp16_scaler(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.s = zg_grad_scaler_new(NULL));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(zg_autocast_enter(ZG_AUTOCAST_FP16));
        zg_tensor *loss = loss_at(&k, i);
        zg_autocast_exit();
        TRY(backward(scaled(&k, loss)));
        TRY(scaler_step_update(&k, k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* ---- clipping, logging, schedulers -------------------------------------- */

/* backward(); clip_grad_norm_(model.parameters(), 1.0); step(). */
static int ok_clip_norm(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_module_clip_grad_norm(k.m[0], 1.0, 2.0, false, NULL));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* backward(); clip_grad_value_(); step(). */
static int ok_clip_value(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_ADAM));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_clip_grad_value(k.o[0], 0.5));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Logging the grad norm (read from p.grad) between backward and step. */
static int ok_log_grad_norm(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *p[MAXP];
    double log_sum = 0;
    TRY(setup(&k, ZG_SGD));
    int n = params(k.m[0], p);
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        log_sum += sqrt(grad_sq(p, n));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
    (void)log_sum;
out:
    kit_free(&k);
    return rc;
}

/* StepLR stepped once per epoch after the epoch's optimizer steps. */
static int ok_sched_per_epoch(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.sd[0] = zg_sched_step_lr(k.o[0], 1, 0.5));
    for (int epoch = 0; epoch < 2; epoch++) {
        for (int i = 0; i < 2; i++) {
            zg_optim_zero_grad(k.o[0], true);
            TRY(backward(loss_at(&k, 2 * epoch + i)));
            TRY(zg_optim_step(k.o[0]));
            zg_arena_reset();
        }
        TRY(zg_sched_step(k.sd[0]));
    }
out:
    kit_free(&k);
    return rc;
}

/* OneCycleLR stepped after every optimizer.step(). */
static int ok_sched_onecycle_per_iteration(void) {
    kit k = {0};
    int rc = 0;
    zg_onecycle_opts oc = zg_onecycle_defaults(10);
    oc.cycle_momentum = false;
    TRY(setup(&k, ZG_SGD));
    NEED(k.sd[0] = zg_sched_onecycle(k.o[0], 0.1, &oc));
    for (int i = 0; i < 4; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        TRY(zg_sched_step(k.sd[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Warm-up + cosine stepped inside the `if (i+1) % N == 0` branch of an accumulation loop. */
static int ok_sched_in_accum_branch(void) {
    kit k = {0};
    int rc = 0;
    const int n = 2;
    TRY(setup(&k, ZG_ADAMW));
    NEED(k.sd[0] = zg_sched_warmup_cosine(k.o[0], 1, 0.5, 10, 0.0));
    for (int i = 0; i < 6; i++) {
        TRY(backward(over(loss_at(&k, i), n)));
        if ((i + 1) % n == 0) {
            TRY(zg_module_clip_grad_norm(k.m[0], 1.0, 2.0, false, NULL));
            TRY(zg_optim_step(k.o[0]));
            TRY(zg_sched_step(k.sd[0]));
            zg_optim_zero_grad(k.o[0], true);
        }
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* ---- fine-tuning and freezing ------------------------------------------- */

/* Transfer learning: backbone frozen (requires_grad False) before building an optimizer over the head. */
static int ok_finetune_frozen_backbone(void) {
    kit k = {0};
    int rc = 0;
    NEED(k.m[0] = mlp(4, 3, 2));
    TRY(set_trainable(zg_module_child(k.m[0], 0), false));
    NEED(k.o[0] = optim_of(ZG_SGD, zg_module_child(k.m[0], 2)));
    TRY(data(&k));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Freezing the backbone mid-training with zero_grad(set_to_none=True): its grads become None, the step skips it. */
static int ok_freeze_midway_set_to_none(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_ADAMW));
    for (int i = 0; i < 4; i++) {
        if (i == 2) TRY(set_trainable(zg_module_child(k.m[0], 0), false));
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Gradual unfreezing: head first, then the backbone unfrozen and added with add_param_group (lower lr). */
static int ok_unfreeze_add_param_group(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *bb[MAXP];
    NEED(k.m[0] = mlp(4, 3, 2));
    TRY(set_trainable(zg_module_child(k.m[0], 0), false));
    NEED(k.o[0] = optim_of(ZG_ADAM, zg_module_child(k.m[0], 2)));
    TRY(data(&k));
    for (int i = 0; i < 4; i++) {
        if (i == 2) {
            zg_hp lr = {ZG_HP_LR, 1e-4};
            zg_param_group g = {bb, params(zg_module_child(k.m[0], 0), bb), &lr, 1};
            TRY(set_trainable(zg_module_child(k.m[0], 0), true));
            TRY(zg_optim_add_param_group(k.o[0], &g));
        }
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Discriminative learning rates: backbone and head in two param groups of one optimizer. */
static int ok_param_groups_two_lrs(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *p[MAXP];
    NEED(k.m[0] = mlp(4, 3, 2));
    TRY(params(k.m[0], p) == 4 ? 0 : ZG_ERR_STATE);
    {
        zg_hp slow = {ZG_HP_LR, 1e-3}, fast = {ZG_HP_LR, 1e-2};
        zg_param_group g[2] = {{p, 2, &slow, 1}, {p + 2, 2, &fast, 1}};
        NEED(k.o[0] = zg_optim_new_groups(ZG_SGD, g, 2, NULL));
    }
    TRY(data(&k));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* AdamW with decay / no-decay groups (biases without weight decay), every parameter in one of them. */
static int ok_adamw_no_decay_groups(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *decay[MAXP], *no_decay[MAXP];
    int nd = 0, nn = 0;
    NEED(k.m[0] = mlp(4, 3, 2));
    for (int j = 0; j < zg_module_num_params(k.m[0]); j++) {
        if (strstr(zg_module_param_name(k.m[0], j), "bias")) no_decay[nn++] = zg_module_param(k.m[0], j);
        else decay[nd++] = zg_module_param(k.m[0], j);
    }
    {
        zg_hp wd = {ZG_HP_WEIGHT_DECAY, 0.01}, none = {ZG_HP_WEIGHT_DECAY, 0.0};
        zg_param_group g[2] = {{decay, nd, &wd, 1}, {no_decay, nn, &none, 1}};
        NEED(k.o[0] = zg_optim_new_groups(ZG_ADAMW, g, 2, NULL));
    }
    TRY(data(&k));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Freezing the backbone by rebuilding the optimizer over the head (grads of the frozen part set to None). */
static int ok_freeze_rebuild_optimizer(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 4; i++) {
        if (i == 2) {
            zg_module_zero_grad(k.m[0], true);
            TRY(set_trainable(zg_module_child(k.m[0], 0), false));
            zg_optim_free(k.o[0]);
            k.o[0] = NULL;
            NEED(k.o[0] = optim_of(ZG_SGD, zg_module_child(k.m[0], 2)));
        }
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* ---- adversarial examples, SAM, NaN batches ------------------------------ */

/* FGSM training: the pass that made x.grad (read) is dropped by zero_grad(), the adversarial pass steps. */
static int ok_fgsm_read_input_grad(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    TRY(fgsm_setup(&k));
    for (int i = 0; i < 4; i++) {
        zg_tensor_zero_grad(k.t[5], true);
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(mse_of(zg_module_forward(k.m[0], k.t[5]), k.t[1])));
        TRY(fgsm_perturb(&k, zg_tensor_grad(k.t[5])));
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(mse_of(zg_module_forward(k.m[0], k.t[6]), k.t[1])));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* FGSM with torch.autograd.grad(loss, x): the input gradient never touches .grad. */
static int ok_fgsm_autograd_grad(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    TRY(fgsm_setup(&k));
    for (int i = 0; i < 4; i++) {
        zg_tensor *loss = mse_of(zg_module_forward(k.m[0], k.t[5]), k.t[1]);
        zg_tensor *gx = NULL;
        TRY(zg_autograd_grad(&loss, NULL, 1, &k.t[5], 1, &gx, false, false));
        TRY(fgsm_perturb(&k, gx));
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(mse_of(zg_module_forward(k.m[0], k.t[6]), k.t[1])));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* FGSM with loss.backward(inputs=[x]): only x gets a gradient. */
static int ok_fgsm_backward_inputs(void) {
    kit k = {0};
    int rc = 0;
    zg_backward_opts bo = {0};
    TRY(setup(&k, ZG_SGD));
    TRY(fgsm_setup(&k));
    bo.inputs = &k.t[5];
    bo.n_inputs = 1;
    for (int i = 0; i < 4; i++) {
        zg_tensor_zero_grad(k.t[5], true);
        TRY(zg_backward(mse_of(zg_module_forward(k.m[0], k.t[5]), k.t[1]), &bo));
        TRY(fgsm_perturb(&k, zg_tensor_grad(k.t[5])));
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(mse_of(zg_module_forward(k.m[0], k.t[6]), k.t[1])));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Goodfellow's mixed objective: clean backward (its x.grad makes x_adv), adversarial backward, one step on both. */
static int ok_fgsm_clean_plus_adversarial(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    TRY(fgsm_setup(&k));
    for (int i = 0; i < 4; i++) {
        zg_tensor_zero_grad(k.t[5], true);
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(zg_mul_scalar(mse_of(zg_module_forward(k.m[0], k.t[5]), k.t[1]), 0.5f)));
        TRY(fgsm_perturb(&k, zg_tensor_grad(k.t[5])));
        TRY(backward(zg_mul_scalar(mse_of(zg_module_forward(k.m[0], k.t[6]), k.t[1]), 0.5f)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Saliency maps (x.grad, read) every other step: that backward's parameter grads are dropped unused. */
static int ok_saliency_logging(void) {
    kit k = {0};
    int rc = 0;
    double sal = 0;
    TRY(setup(&k, ZG_SGD));
    TRY(fgsm_setup(&k));
    for (int i = 0; i < 4; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        if (i % 2 == 1) {
            zg_optim_zero_grad(k.o[0], true);
            zg_tensor_zero_grad(k.t[5], true);
            TRY(backward(zg_sum(zg_module_forward(k.m[0], k.t[5]))));
            sal += grad_sq(&k.t[5], 1);
        }
        zg_arena_reset();
    }
    (void)sal;
out:
    kit_free(&k);
    return rc;
}

/* feats = relu(features(x)); head(feats): the Grad-CAM pair of modules, one
 * optimizer over both (m[0] features, m[1] head). */
static int cam_setup(kit *k) {
    RNEED(k->m[0] = zg_nn_linear(4, 3, true));
    RNEED(k->m[1] = zg_nn_linear(3, 2, true));
    RNEED(k->o[0] = optim_of2(ZG_SGD, k->m[0], k->m[1]));
    return data(k);
}

static zg_tensor *cam_feats(kit *k, int i) { return zg_relu(zg_module_forward(k->m[0], batch(k, i))); }

/* Grad-CAM logged before each step: feats.retain_grad(); score.backward();
 * cam from feats.grad; zero_grad(); then the training loss. The score's
 * backward adds onto the grads the last step used; zero_grad drops them. */
static int ok_gradcam_retain_grad_each_step(void) {
    kit k = {0};
    int rc = 0;
    double cam = 0;
    TRY(cam_setup(&k));
    for (int i = 0; i < 4; i++) {
        zg_tensor *feats = cam_feats(&k, i);
        TRY(zg_tensor_retain_grad(feats));
        TRY(backward(zg_sum(zg_module_forward(k.m[1], feats))));
        const zg_tensor *g = zg_tensor_grad(feats);
        for (int64_t j = 0; g && j < zg_tensor_numel(g); j++) cam += zg_tensor_get(g, j);
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(mse_of(zg_module_forward(k.m[1], cam_feats(&k, i)), k.t[1])));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
    (void)cam;
out:
    kit_free(&k);
    return rc;
}

/* feats.register_hook(lambda g: saved.append(g)) */
static zg_tensor *keep_grad_hook(zg_tensor *grad, void *user) {
    double *cam = user;
    for (int64_t j = 0; j < zg_tensor_numel(grad); j++) *cam += zg_tensor_get(grad, j);
    return NULL;
}

/* The same Grad-CAM with a hook on the features instead of retain_grad. */
static int ok_gradcam_hook_each_step(void) {
    kit k = {0};
    int rc = 0;
    double cam = 0;
    TRY(cam_setup(&k));
    for (int i = 0; i < 4; i++) {
        zg_tensor *feats = cam_feats(&k, i);
        TRY(zg_tensor_register_hook(feats, keep_grad_hook, &cam));
        TRY(backward(zg_sum(zg_module_forward(k.m[1], feats))));
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(mse_of(zg_module_forward(k.m[1], cam_feats(&k, i)), k.t[1])));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
    (void)cam;
out:
    kit_free(&k);
    return rc;
}

/* Loss spikes (finite) skipped after backward with zero_grad(); continue,
 * two in consecutive windows, as spikes cluster. */
static int ok_skip_loss_spikes_in_a_row(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 8; i++) {
        bool spike = i == 2 || i == 4;
        zg_tensor *x = spike ? zg_mul_scalar(k.t[0], 100.0f) : batch(&k, i);
        zg_tensor *loss = mse_of(zg_module_forward(k.m[0], x), k.t[1]);
        TRY(backward(loss));
        if (spike) { /* loss.item() > threshold */
            zg_optim_zero_grad(k.o[0], true);
            zg_arena_reset();
            continue;
        }
        TRY(zg_optim_step(k.o[0]));
        zg_optim_zero_grad(k.o[0], true);
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* SAM: the first pass's grads are read for e(w) and dropped; the second pass at w + e(w) steps. */
static int ok_sam_two_passes(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *p[MAXP];
    TRY(setup(&k, ZG_SGD));
    int n = params(k.m[0], p);
    for (int j = 0; j < n; j++) NEED(k.t[2 + j] = zg_tensor_clone(p[j]));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        double norm = sqrt(grad_sq(p, n)) + 1e-12;
        zg_no_grad_enter();
        for (int j = 0; j < n && !rc; j++) {
            rc = zg_tensor_copy_(k.t[2 + j], p[j]);
            if (!rc) rc = zg_tensor_add_(p[j], zg_tensor_grad(p[j]), (float)(0.05 / norm));
        }
        zg_no_grad_exit();
        if (rc) TRY(rc);
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        zg_no_grad_enter();
        for (int j = 0; j < n && !rc; j++) rc = zg_tensor_copy_(p[j], k.t[2 + j]);
        zg_no_grad_exit();
        if (rc) TRY(rc);
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* SAM with the first pass's norm from clip_grad_norm_(max_norm=inf-like) and a shared perturb/restore. */
static int ok_sam_norm_from_clip(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *p[MAXP];
    double norm = 0;
    TRY(setup(&k, ZG_SGD));
    int n = params(k.m[0], p);
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_clip_grad_norm(k.o[0], 1e30, 2.0, false, &norm));
        float r = (float)(0.05 / (norm + 1e-12));
        zg_no_grad_enter();
        for (int j = 0; j < n && !rc; j++) {
            zg_tensor *g = zg_tensor_grad(p[j]);
            if (!(k.t[2 + j] = zg_tensor_clone(g))) rc = ZG_ERR_NOMEM;
            if (!rc) rc = zg_tensor_add_(p[j], g, r);
        }
        zg_no_grad_exit();
        if (rc) TRY(rc);
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        zg_no_grad_enter();
        for (int j = 0; j < n && !rc; j++) rc = zg_tensor_add_(p[j], k.t[2 + j], -r);
        zg_no_grad_exit();
        for (int j = 0; j < n; j++) {
            zg_tensor_free(k.t[2 + j]);
            k.t[2 + j] = NULL;
        }
        if (rc) TRY(rc);
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* `if not torch.isfinite(loss): continue` before backward: bad batches never produce gradients. */
static int ok_nan_skip_before_backward(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 5; i++) {
        zg_tensor *x = (i == 1 || i == 3) ? zg_mul_scalar(k.t[0], NAN) : batch(&k, i);
        zg_optim_zero_grad(k.o[0], true);
        zg_tensor *loss = mse_of(zg_module_forward(k.m[0], x), k.t[1]);
        if (isfinite(zg_tensor_item(loss))) {
            TRY(backward(loss));
            TRY(zg_optim_step(k.o[0]));
        }
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* The grad norm from clip_grad_norm_ is checked: a non-finite one skips the step, the next zero_grad drops it. */
static int ok_nan_skip_by_grad_norm(void) {
    kit k = {0};
    int rc = 0;
    double norm = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 5; i++) {
        zg_tensor *x = (i == 1 || i == 3) ? zg_mul_scalar(k.t[0], NAN) : batch(&k, i);
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(mse_of(zg_module_forward(k.m[0], x), k.t[1])));
        TRY(zg_optim_clip_grad_norm(k.o[0], 1.0, 2.0, false, &norm));
        if (isfinite(norm)) TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* `if not isfinite(loss): optimizer.zero_grad()` and then step() unconditionally: grads set to None, the step moves
 * nothing for that batch. */
static int ok_nan_zero_then_step_anyway(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_ADAM));
    for (int i = 0; i < 5; i++) {
        zg_optim_zero_grad(k.o[0], true);
        zg_tensor *x = i == 2 ? zg_mul_scalar(k.t[0], NAN) : batch(&k, i);
        zg_tensor *loss = mse_of(zg_module_forward(k.m[0], x), k.t[1]);
        TRY(backward(loss));
        if (!isfinite(zg_tensor_item(loss))) zg_optim_zero_grad(k.o[0], true);
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Loss checked after backward: a non-finite batch's grads are dropped with zero_grad() and the step skipped. */
static int ok_nan_skip_after_backward(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    for (int i = 0; i < 5; i++) {
        zg_tensor *x = (i == 1 || i == 3) ? zg_mul_scalar(k.t[0], NAN) : batch(&k, i);
        zg_tensor *loss = mse_of(zg_module_forward(k.m[0], x), k.t[1]);
        TRY(backward(loss));
        if (!isfinite(zg_tensor_item(loss))) {
            zg_optim_zero_grad(k.o[0], true);
            zg_arena_reset();
            continue;
        }
        TRY(zg_optim_step(k.o[0]));
        zg_optim_zero_grad(k.o[0], true);
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* ---- hooks, hand-set grads, several models ------------------------------ */

/* register_post_accumulate_grad_hook logging each parameter's grad norm. */
static int ok_hook_log_norms(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *p[MAXP];
    double sum = 0;
    TRY(setup(&k, ZG_SGD));
    int n = params(k.m[0], p);
    for (int j = 0; j < n; j++) TRY(zg_tensor_register_post_accumulate_hook(p[j], log_grad_norm_hook, &sum));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* p.register_hook(lambda g: g * 0.5) on every parameter (gradient scaling by hooks). */
static int ok_hook_scale_grads(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *p[MAXP];
    TRY(setup(&k, ZG_SGD));
    int n = params(k.m[0], p);
    for (int j = 0; j < n; j++) TRY(zg_tensor_register_hook(p[j], halve_hook, NULL));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* DANN: a gradient reversal hook on the domain branch, label + domain loss, one optimizer over all parts. */
static int ok_gradient_reversal(void) {
    kit k = {0};
    int rc = 0;
    NEED(k.m[0] = zg_nn_linear(4, 3, true));
    NEED(k.m[1] = zg_nn_linear(3, 2, true));
    NEED(k.m[2] = zg_nn_linear(3, 1, true));
    {
        zg_tensor *p[3 * MAXP];
        int n = params(k.m[0], p);
        n += params(k.m[1], p + n);
        n += params(k.m[2], p + n);
        NEED(k.o[0] = optim_on(ZG_SGD, p, n));
    }
    TRY(data(&k));
    NEED(k.t[2] = full2(4, 1, 1.0f));
    for (int i = 0; i < 3; i++) {
        zg_optim_zero_grad(k.o[0], true);
        zg_tensor *feat = zg_relu(zg_module_forward(k.m[0], batch(&k, i)));
        zg_tensor *rev = zg_mul_scalar(feat, 1.0f);
        TRY(zg_tensor_register_hook(rev, reverse_hook, NULL));
        zg_tensor *label_loss = mse_of(zg_module_forward(k.m[1], feat), k.t[1]);
        zg_tensor *domain_loss =
            zg_bce_with_logits(zg_module_forward(k.m[2], rev), k.t[2], ZG_REDUCTION_MEAN, NULL);
        TRY(backward(zg_add(label_loss, domain_loss)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* The "optimizer step in backward" tutorial: a per-parameter optimizer stepped and zeroed in a hook. */
static int ok_optimizer_step_in_backward(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *p[MAXP];
    NEED(k.m[0] = mlp(4, 3, 2));
    TRY(data(&k));
    int n = params(k.m[0], p);
    TRY(n == 4 ? 0 : ZG_ERR_STATE);
    for (int j = 0; j < n; j++) {
        NEED(k.o[j] = optim_on(ZG_ADAM, &p[j], 1));
        TRY(zg_tensor_register_post_accumulate_hook(p[j], step_in_backward_hook, k.o[j]));
    }
    for (int i = 0; i < 3; i++) {
        TRY(backward(loss_at(&k, i)));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Gradients computed with torch.autograd.grad and assigned to p.grad (meta-learning style), then step(). */
static int ok_set_grad_by_hand(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *p[MAXP], *g[MAXP];
    TRY(setup(&k, ZG_SGD));
    int n = params(k.m[0], p);
    for (int i = 0; i < 3; i++) {
        zg_tensor *loss = loss_at(&k, i);
        TRY(zg_autograd_grad(&loss, NULL, 1, p, n, g, false, false));
        for (int j = 0; j < n; j++) TRY(zg_tensor_set_grad(p[j], g[j]));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* An old-style custom zero_grad: `for p in params: if p.grad is not None: p.grad.zero_()`. */
static int ok_manual_grad_zero_fill(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *p[MAXP];
    TRY(setup(&k, ZG_SGD));
    int n = params(k.m[0], p);
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < n; j++) {
            zg_tensor *g = zg_tensor_grad(p[j]);
            if (g) TRY(zg_tensor_fill_(g, 0.0f));
        }
        TRY(backward(loss_at(&k, i)));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Encoder and decoder with their own optimizers, both zeroed, one backward, both stepped. */
static int ok_two_models_two_optimizers(void) {
    kit k = {0};
    int rc = 0;
    NEED(k.m[0] = zg_nn_linear(4, 3, true));
    NEED(k.m[1] = zg_nn_linear(3, 4, true));
    NEED(k.o[0] = optim_of(ZG_SGD, k.m[0]));
    NEED(k.o[1] = optim_of(ZG_ADAM, k.m[1]));
    TRY(data(&k));
    for (int i = 0; i < 3; i++) {
        zg_tensor *x = batch(&k, i);
        zg_optim_zero_grad(k.o[0], true);
        zg_optim_zero_grad(k.o[1], true);
        TRY(backward(mse_of(zg_module_forward(k.m[1], zg_relu(zg_module_forward(k.m[0], x))), x)));
        TRY(zg_optim_step(k.o[0]));
        TRY(zg_optim_step(k.o[1]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Backbone and head optimizers, model.zero_grad() after the forward (one call clears both). */
static int ok_two_optimizers_model_zero(void) {
    kit k = {0};
    int rc = 0;
    zg_tensor *p[MAXP];
    NEED(k.m[0] = mlp(4, 3, 2));
    TRY(params(k.m[0], p) == 4 ? 0 : ZG_ERR_STATE);
    NEED(k.o[0] = optim_on(ZG_SGD, p, 2));
    NEED(k.o[1] = optim_on(ZG_ADAM, p + 2, 2));
    TRY(data(&k));
    for (int i = 0; i < 3; i++) {
        zg_tensor *loss = loss_at(&k, i);
        zg_module_zero_grad(k.m[0], true);
        TRY(backward(loss));
        TRY(zg_optim_step(k.o[0]));
        TRY(zg_optim_step(k.o[1]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* Teacher-student distillation: the teacher is frozen (no grads), the student trains on both losses. */
static int ok_distillation_frozen_teacher(void) {
    kit k = {0};
    int rc = 0;
    TRY(setup(&k, ZG_SGD));
    NEED(k.m[1] = mlp(4, 3, 2));
    TRY(set_trainable(k.m[1], false));
    for (int i = 0; i < 3; i++) {
        zg_tensor *x = batch(&k, i);
        zg_no_grad_enter();
        zg_tensor *soft = zg_module_forward(k.m[1], x);
        zg_no_grad_exit();
        zg_tensor *out = zg_module_forward(k.m[0], x);
        zg_optim_zero_grad(k.o[0], true);
        TRY(backward(zg_add(mse_of(out, k.t[1]), zg_mul_scalar(mse_of(out, soft), 0.5f))));
        TRY(zg_optim_step(k.o[0]));
        zg_arena_reset();
    }
out:
    kit_free(&k);
    return rc;
}

/* ========================================================================
 * The table and the runs
 * ======================================================================== */

typedef int (*loop_fn)(void);
typedef struct {
    const char *name;
    int kind; /* a zg_sanitize_kind, or CORRECT */
    const char *idiom;
    loop_fn fn;
} loop_entry;

#define LOOP(fn, kind, idiom) {#fn, kind, idiom, fn}

static const loop_entry catalogue[] = {
    /* stale */
    LOOP(stale_no_zero_grad, ZG_SAN_STALE, "loss.backward(); optimizer.step() with zero_grad() forgotten"),
    LOOP(stale_step_twice, ZG_SAN_STALE, "optimizer.step() called in train_step() and again in the loop"),
    LOOP(stale_step_every_micro_zero_every_n, ZG_SAN_STALE, "accumulation: step() every batch, zero_grad() every N"),
    LOOP(stale_zero_at_window_start_step_every_micro, ZG_SAN_STALE, "`if i % N == 0: zero_grad()`, step() every batch"),
    LOOP(stale_zero_before_loop, ZG_SAN_STALE, "optimizer.zero_grad() once before the epoch loop"),
    LOOP(stale_amp_no_zero, ZG_SAN_STALE, "AMP scale/backward/scaler.step/update, no zero_grad()"),
    LOOP(stale_clip_no_zero, ZG_SAN_STALE, "backward(); clip_grad_norm_(); step(), no zero_grad()"),
    LOOP(stale_extra_step_after_loop, ZG_SAN_STALE, "an extra optimizer.step() after the epoch loop"),
    LOOP(stale_multitask_step_per_task, ZG_SAN_STALE, "zero once, `for task: loss.backward(); step()`"),
    LOOP(stale_gan_d_not_zeroed, ZG_SAN_STALE, "DCGAN without netD.zero_grad()"),
    LOOP(stale_gan_leak_into_d, ZG_SAN_STALE, "GAN: D zeroed only after its step, G's backward leaks into D"),
    LOOP(stale_gan_g_not_zeroed, ZG_SAN_STALE, "DCGAN without netG.zero_grad()"),
    LOOP(stale_autoencoder_zero_one_optimizer, ZG_SAN_STALE, "enc/dec optimizers, only enc_opt.zero_grad()"),
    LOOP(stale_zero_submodule_only, ZG_SAN_STALE, "model.encoder.zero_grad() instead of model.zero_grad()"),
    LOOP(stale_zero_ema_model, ZG_SAN_STALE, "ema_model.zero_grad() instead of model.zero_grad()"),
    LOOP(stale_accum_plus_manual_step, ZG_SAN_STALE, "zg_accum plus a leftover optimizer.step() per batch"),
    LOOP(stale_fgsm_no_zero, ZG_SAN_STALE, "FGSM adversarial training without zero_grad()"),
    LOOP(stale_finetune_no_zero, ZG_SAN_STALE, "head fine-tuning over a frozen backbone, no zero_grad()"),
    LOOP(stale_two_optimizers_one_zeroed, ZG_SAN_STALE, "backbone/head optimizers, backbone_opt.zero_grad() forgotten"),
    /* erased */
    LOOP(erased_zero_between_backward_and_step, ZG_SAN_ERASED, "backward(); zero_grad(); step()"),
    LOOP(erased_module_zero_after_backward, ZG_SAN_ERASED, "backward(); model.zero_grad(set_to_none=False); step()"),
    LOOP(erased_zero_every_micro_step_every_n, ZG_SAN_ERASED, "accumulation with zero_grad() every micro-batch"),
    LOOP(erased_zero_outside_if, ZG_SAN_ERASED, "zero_grad() dedented out of `if (i+1) % N == 0`"),
    LOOP(erased_swapped_conditions, ZG_SAN_ERASED, "accumulation with step/zero conditions swapped"),
    LOOP(erased_gan_d_zero_between_real_and_fake, ZG_SAN_ERASED, "DCGAN: netD.zero_grad() after errD_real.backward()"),
    LOOP(erased_gan_g_zero_after_backward, ZG_SAN_ERASED, "DCGAN: netG.zero_grad() after errG.backward()"),
    LOOP(erased_two_losses_zero_between, ZG_SAN_ERASED, "loss1.backward(); zero_grad(); loss2.backward(); step()"),
    LOOP(erased_amp_zero_after_backward, ZG_SAN_ERASED, "AMP: scaled backward; zero_grad(False); scaler.step()"),
    LOOP(erased_param_grad_none_loop, ZG_SAN_ERASED, "`for p in params: p.grad = None` after backward"),
    LOOP(erased_accum_with_zero_each_micro, ZG_SAN_ERASED, "zg_accum with optimizer.zero_grad() per batch"),
    LOOP(erased_zero_after_clip, ZG_SAN_ERASED, "backward(); clip_grad_norm_(); zero_grad(); step()"),
    LOOP(erased_autoencoder_zero_all_before_dec_step, ZG_SAN_ERASED, "enc_opt.step(); zero_grad(); dec_opt.step()"),
    /* no-grad */
    LOOP(no_grad_forgot_backward, ZG_SAN_NO_GRAD, "loss logged, loss.backward() forgotten"),
    LOOP(no_grad_step_before_backward, ZG_SAN_NO_GRAD, "zero_grad(); step(); backward()"),
    LOOP(no_grad_step_in_validation, ZG_SAN_NO_GRAD, "validation loop copied with optimizer.step()"),
    LOOP(no_grad_unconditional_flush, ZG_SAN_NO_GRAD, "accumulation + unconditional final step()"),
    LOOP(no_grad_gan_err_g_not_backwarded, ZG_SAN_NO_GRAD, "DCGAN: errG.backward() forgotten"),
    /* unstepped */
    LOOP(unstepped_head_added_after_optimizer, ZG_SAN_UNSTEPPED, "model.fc = nn.Linear() after building the optimizer"),
    LOOP(unstepped_optimizer_over_last_layer, ZG_SAN_UNSTEPPED, "optim.SGD(model.fc.parameters()) without freezing"),
    LOOP(unstepped_watched_module, ZG_SAN_UNSTEPPED, "model made before the sanitizer, watched; optimizer on the head"),
    LOOP(unstepped_aux_head_not_in_optimizer, ZG_SAN_UNSTEPPED, "aux head's loss added, head not in the optimizer"),
    LOOP(unstepped_bias_missing_from_groups, ZG_SAN_UNSTEPPED, "decay group only, no-decay (bias) group forgotten"),
    /* AMP */
    LOOP(scaled_clip_norm_before_unscale, ZG_SAN_SCALED_CLIP, "clip_grad_norm_ before scaler.unscale_()"),
    LOOP(scaled_clip_value_before_unscale, ZG_SAN_SCALED_CLIP, "clip_grad_value_ before scaler.unscale_()"),
    LOOP(scaled_clip_accum_window_end, ZG_SAN_SCALED_CLIP, "AMP accumulation, clip at the window end, no unscale_()"),
    LOOP(scaled_read_log_grad_norm, ZG_SAN_SCALED_READ, "grad norm logged from p.grad before unscale_()"),
    LOOP(scaled_read_hand_clip, ZG_SAN_SCALED_READ, "hand-written clip of p.grad before unscale_()"),
    LOOP(scaled_read_nan_check, ZG_SAN_SCALED_READ, "inf/NaN check of p.grad before unscale_()"),
    LOOP(scaled_step_optimizer_step, ZG_SAN_SCALED_STEP, "scaler.scale(loss).backward(); optimizer.step()"),
    LOOP(scaled_step_gan_generator, ZG_SAN_SCALED_STEP, "AMP GAN: scaler.step(optD) but optG.step()"),
    LOOP(scaled_step_accum, ZG_SAN_SCALED_STEP, "AMP accumulation closed with optimizer.step()"),
    LOOP(unscaled_backward_of_plain_loss, ZG_SAN_UNSCALED, "scaler.scale(loss) made, loss.backward() called"),
    LOOP(unscaled_mixed_losses, ZG_SAN_UNSCALED, "scaler.scale(l1).backward(); l2.backward(); scaler.step()"),
    LOOP(unscaled_update_between_backward_and_step, ZG_SAN_UNSCALED, "scaler.update() between backward and step"),
    /* frozen */
    LOOP(frozen_momentum_after_freeze, ZG_SAN_FROZEN_STEP, "freeze + zero_grad(set_to_none=False), SGD momentum"),
    LOOP(frozen_adamw_zero_filled, ZG_SAN_FROZEN_STEP, "AdamW, model.zero_grad(set_to_none=False), layer frozen"),
    LOOP(frozen_between_backward_and_step, ZG_SAN_FROZEN_STEP, "layer frozen between backward() and step()"),
    /* consumed clip */
    LOOP(consumed_clip_after_step, ZG_SAN_CONSUMED_CLIP, "optimizer.step(); clip_grad_norm_()"),
    LOOP(consumed_clip_after_scaler_step, ZG_SAN_CONSUMED_CLIP, "scaler.step(); clip_grad_norm_(); scaler.update()"),
    LOOP(consumed_clip_accum, ZG_SAN_CONSUMED_CLIP, "accumulation: step(); clip_grad_value_(); zero_grad()"),
    /* schedulers */
    LOOP(sched_order_epoch_start, ZG_SAN_SCHED_ORDER, "scheduler.step() at the start of the epoch"),
    LOOP(sched_order_warmup_top_of_iteration, ZG_SAN_SCHED_ORDER, "warm-up LinearLR stepped before optimizer.step()"),
    LOOP(sched_order_onecycle, ZG_SAN_SCHED_ORDER, "OneCycleLR.step() before optimizer.step()"),
    LOOP(sched_repeat_per_micro_batch, ZG_SAN_SCHED_REPEAT, "accumulation with scheduler.step() per micro-batch"),
    LOOP(sched_repeat_batch_and_epoch, ZG_SAN_SCHED_REPEAT, "scheduler.step() per batch and per epoch"),
    LOOP(sched_repeat_with_accum, ZG_SAN_SCHED_REPEAT, "zg_accum with scheduler.step() per micro-batch"),
    /* window */
    LOOP(window_config_mismatch, ZG_SAN_WINDOW, "window declared 2, accumulation_steps = 3"),
    LOOP(window_accum_plus_manual_backward, ZG_SAN_WINDOW, "zg_accum(2) + an aux loss backwarded by hand"),
    LOOP(window_off_by_one, ZG_SAN_WINDOW, "`if i % N == 0 and i > 0: step()` after backward"),

    /* correct */
    LOOP(ok_zero_backward_step, CORRECT, "zero_grad(); backward(); step()"),
    LOOP(ok_backward_step_zero, CORRECT, "backward(); step(); zero_grad()"),
    LOOP(ok_zero_set_to_none_false, CORRECT, "zero_grad(set_to_none=False); backward(); step()"),
    LOOP(ok_model_zero_grad, CORRECT, "model.zero_grad(); backward(); step() (RMSprop)"),
    LOOP(ok_zero_after_forward, CORRECT, "forward; zero_grad(); backward(); step() (Adagrad)"),
    LOOP(ok_zero_twice, CORRECT, "zero_grad() before backward and model.zero_grad() after step"),
    LOOP(ok_eval_between_epochs, CORRECT, "evaluation under torch.no_grad() between epochs"),
    LOOP(ok_accum_by_hand, CORRECT, "`if i % N == 0: zero_grad()` ... `if (i+1) % N == 0: step()`"),
    LOOP(ok_accum_step_then_zero, CORRECT, "backward every batch; `if (i+1) % N == 0: step(); zero_grad()`"),
    LOOP(ok_accum_partial_last_window, CORRECT, "accumulation stepping the short last window"),
    LOOP(ok_accum_declared, CORRECT, "accumulation by hand declared with expect_accumulation"),
    LOOP(ok_accum_drop_last_once, CORRECT, "the leftover micro-batch dropped once by a final zero_grad()"),
    LOOP(ok_zg_accum, CORRECT, "zg_accum_backward / zg_accum_step"),
    LOOP(ok_zg_accum_flush, CORRECT, "zg_accum with zg_accum_flush at the epoch's end"),
    LOOP(ok_zg_accum_scaler_clip, CORRECT, "zg_accum with a GradScaler and clipping"),
    LOOP(ok_zg_accum_discard_nan, CORRECT, "zg_accum_discard of windows with a NaN loss"),
    LOOP(ok_zg_accum_sched, CORRECT, "zg_accum, scheduler.step() when stepped"),
    LOOP(ok_multi_loss_sum, CORRECT, "(loss1 + loss2).backward()"),
    LOOP(ok_multi_loss_retain_graph, CORRECT, "loss1.backward(retain_graph=True); loss2.backward(); step()"),
    LOOP(ok_multi_loss_declared, CORRECT, "two backwards declared with expect_backwards(2)"),
    LOOP(ok_multitask_one_step, CORRECT, "one backward per task, one step()"),
    LOOP(ok_two_heads_retain_graph, CORRECT, "shared trunk, two heads, retain_graph, one step()"),
    LOOP(ok_dcgan_tutorial, CORRECT, "the DCGAN tutorial's loop"),
    LOOP(ok_gan_optimizer_zero, CORRECT, "GAN with optimizer.zero_grad() and a summed D loss"),
    LOOP(ok_gan_requires_grad_toggle, CORRECT, "pix2pix set_requires_grad(netD, False) for the G step"),
    LOOP(ok_wgan_n_critic, CORRECT, "WGAN with n_critic = 2"),
    LOOP(ok_wgan_gp, CORRECT, "WGAN-GP: the gradient penalty (create_graph) in the critic's loss"),
    LOOP(ok_wgan_gp_three_backwards, CORRECT, "WGAN-GP: D_real, D_fake and the penalty backwarded in turn, D frozen for G"),
    LOOP(ok_dcgan_amp_one_scaler, CORRECT, "DCGAN with AMP, one scaler, one update()"),
    LOOP(ok_amp_basic, CORRECT, "scaler.scale(loss).backward(); scaler.step(); scaler.update()"),
    LOOP(ok_amp_unscale_clip, CORRECT, "scaler.unscale_(); clip_grad_norm_(); scaler.step(); update()"),
    LOOP(ok_amp_log_norm_after_unscale, CORRECT, "grad norm read from p.grad after unscale_()"),
    LOOP(ok_amp_accum_by_hand, CORRECT, "AMP accumulation by hand with unscale_/clip per window"),
    LOOP(ok_amp_two_models_two_losses, CORRECT, "AMP docs: two models, two losses, two optimizers"),
    LOOP(ok_amp_sched, CORRECT, "AMP with scheduler.step() after update()"),
    LOOP(ok_amp_skipped_steps, CORRECT, "AMP whose first steps overflow and are skipped"),
    LOOP(ok_amp_disabled_scaler, CORRECT, "GradScaler(enabled=False)"),
    LOOP(ok_autocast_bf16, CORRECT, "torch.autocast(bfloat16), no scaler"),
    LOOP(ok_autocast_fp16_scaler, CORRECT, "torch.autocast(float16) + GradScaler"),
    LOOP(ok_clip_norm, CORRECT, "backward(); clip_grad_norm_(); step()"),
    LOOP(ok_clip_value, CORRECT, "backward(); clip_grad_value_(); step()"),
    LOOP(ok_log_grad_norm, CORRECT, "grad norm logged from p.grad before step()"),
    LOOP(ok_sched_per_epoch, CORRECT, "StepLR.step() after each epoch"),
    LOOP(ok_sched_onecycle_per_iteration, CORRECT, "OneCycleLR.step() after each optimizer.step()"),
    LOOP(ok_sched_in_accum_branch, CORRECT, "scheduler.step() inside the accumulation step branch"),
    LOOP(ok_finetune_frozen_backbone, CORRECT, "frozen backbone, optimizer over the head"),
    LOOP(ok_freeze_midway_set_to_none, CORRECT, "backbone frozen mid-training, zero_grad(set_to_none=True)"),
    LOOP(ok_unfreeze_add_param_group, CORRECT, "gradual unfreezing with add_param_group"),
    LOOP(ok_param_groups_two_lrs, CORRECT, "discriminative learning rates (two param groups)"),
    LOOP(ok_adamw_no_decay_groups, CORRECT, "AdamW decay / no-decay groups"),
    LOOP(ok_freeze_rebuild_optimizer, CORRECT, "freezing by rebuilding the optimizer over the head"),
    LOOP(ok_fgsm_read_input_grad, CORRECT, "FGSM training reading x.grad, zero_grad() before the adversarial pass"),
    LOOP(ok_fgsm_autograd_grad, CORRECT, "FGSM with torch.autograd.grad(loss, x)"),
    LOOP(ok_fgsm_backward_inputs, CORRECT, "FGSM with loss.backward(inputs=[x])"),
    LOOP(ok_fgsm_clean_plus_adversarial, CORRECT, "clean + adversarial losses feeding one step"),
    LOOP(ok_saliency_logging, CORRECT, "saliency maps (x.grad) logged every other step"),
    LOOP(ok_gradcam_retain_grad_each_step, CORRECT, "Grad-CAM (feats.retain_grad) backward, zero_grad, train"),
    LOOP(ok_gradcam_hook_each_step, CORRECT, "Grad-CAM (hook on feats) backward, zero_grad, train"),
    LOOP(ok_sam_two_passes, CORRECT, "SAM: two forward/backward passes per step"),
    LOOP(ok_sam_norm_from_clip, CORRECT, "SAM with the norm from clip_grad_norm_"),
    LOOP(ok_nan_skip_before_backward, CORRECT, "`if not isfinite(loss): continue` before backward"),
    LOOP(ok_nan_skip_by_grad_norm, CORRECT, "non-finite grad norm (clip_grad_norm_) skips the step"),
    LOOP(ok_nan_skip_after_backward, CORRECT, "non-finite loss after backward: zero_grad(); continue"),
    LOOP(ok_nan_zero_then_step_anyway, CORRECT, "non-finite loss: zero_grad(), then step() anyway"),
    LOOP(ok_skip_loss_spikes_in_a_row, CORRECT, "loss spikes after backward: zero_grad(); continue, twice"),
    LOOP(ok_hook_log_norms, CORRECT, "post-accumulate hooks logging grad norms"),
    LOOP(ok_hook_scale_grads, CORRECT, "p.register_hook(lambda g: g * 0.5)"),
    LOOP(ok_gradient_reversal, CORRECT, "DANN gradient reversal hook"),
    LOOP(ok_optimizer_step_in_backward, CORRECT, "optimizer step in backward (post-accumulate hooks)"),
    LOOP(ok_set_grad_by_hand, CORRECT, "p.grad = autograd.grad(...) then step()"),
    LOOP(ok_manual_grad_zero_fill, CORRECT, "custom zero_grad with p.grad.zero_()"),
    LOOP(ok_two_models_two_optimizers, CORRECT, "encoder/decoder optimizers, both zeroed and stepped"),
    LOOP(ok_two_optimizers_model_zero, CORRECT, "two optimizers, model.zero_grad() after the forward"),
    LOOP(ok_distillation_frozen_teacher, CORRECT, "distillation from a frozen teacher"),
};

#define N_LOOPS ((int)(sizeof catalogue / sizeof catalogue[0]))

/* ---- running one loop ----------------------------------------------------- */

static int64_t g_counts[ZG_SAN_KIND_COUNT];

/* Counts each report by kind and keeps stderr quiet. */
static void count_report(zg_sanitize_kind kind, const char *report, void *user) {
    (void)report;
    (void)user;
    if ((int)kind >= 0 && kind < ZG_SAN_KIND_COUNT) g_counts[kind]++;
}

typedef struct {
    int rc;
    int64_t kinds[ZG_SAN_KIND_COUNT];
    int64_t total;
    char last[1024];
    char err[1024];
} outcome;

static void run_loop(const loop_entry *e, zg_sanitize_mode mode, outcome *o) {
    zg_sanitize_set_mode(ZG_SANITIZE_OFF);
    zg_sanitize_reset();
    memset(g_counts, 0, sizeof g_counts);
    g_err[0] = 0;
    zg_sanitize_set_report_fn(count_report, NULL);
    zg_manual_seed(11);
    zg_clear_error();
    zg_sanitize_set_mode(mode);
    o->rc = e->fn();
    o->total = 0;
    for (int k = 0; k < ZG_SAN_KIND_COUNT; k++) {
        o->kinds[k] = g_counts[k];
        o->total += g_counts[k];
    }
    snprintf(o->last, sizeof o->last, "%s", zg_sanitize_last_report());
    snprintf(o->err, sizeof o->err, "%s", g_err);
    zg_sanitize_set_mode(ZG_SANITIZE_OFF);
    zg_sanitize_reset();
    zg_sanitize_set_report_fn(NULL, NULL);
    zg_arena_reset();
}

/* "stale=2 erased=1" (or "none") */
static void kinds_text(const outcome *o, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = 0;
    for (int k = 0; k < ZG_SAN_KIND_COUNT && len < n; k++)
        if (o->kinds[k])
            len += (size_t)snprintf(buf + len, n - len, "%s%s=%lld", len ? " " : "",
                                    zg_sanitize_kind_name((zg_sanitize_kind)k), (long long)o->kinds[k]);
    if (!len) snprintf(buf, n, "none");
}

static bool caught(const loop_entry *e, const outcome *o) { return e->kind >= 0 && o->kinds[e->kind] > 0; }

/* ---- the tests --------------------------------------------------------------- */

TEST(sanitizer_catalogue_recall_and_false_positives) {
    int loops[ZG_SAN_KIND_COUNT] = {0}, hits[ZG_SAN_KIND_COUNT] = {0};
    int n_buggy = 0, n_caught = 0, n_correct = 0, n_fp = 0;
    char kinds[256];
    printf("  sanitizer catalogue: %d loops\n", N_LOOPS);
    for (int i = 0; i < N_LOOPS; i++) {
        const loop_entry *e = &catalogue[i];
        outcome o;
        run_loop(e, ZG_SANITIZE_WARN, &o);
        kinds_text(&o, kinds, sizeof kinds);
        if (o.rc != 0)
            zgt_fail(__FILE__, __LINE__, "%s: the loop itself failed in warn mode (%d: %s)", e->name, o.rc, o.err);
        if (e->kind == CORRECT) {
            n_correct++;
            if (o.total) {
                n_fp++;
                printf("  FALSE POSITIVE %-44s got %s\n    idiom: %s\n    last: %s\n", e->name, kinds, e->idiom,
                       o.last);
            }
            continue;
        }
        n_buggy++;
        loops[e->kind]++;
        if (caught(e, &o)) {
            n_caught++;
            hits[e->kind]++;
            if (o.total > o.kinds[e->kind])
                printf("  caught %-52s expected %s, got %s\n", e->name,
                       zg_sanitize_kind_name((zg_sanitize_kind)e->kind), kinds);
        } else {
            printf("  MISSED %-52s expected %s, got %s\n    idiom: %s\n    last: %s\n", e->name,
                   zg_sanitize_kind_name((zg_sanitize_kind)e->kind), kinds, e->idiom, o.last[0] ? o.last : "(none)");
        }
    }
    printf("  %-14s %6s %9s %7s\n", "bug class", "loops", "reported", "recall");
    for (int k = 0; k < ZG_SAN_KIND_COUNT; k++)
        if (loops[k])
            printf("  %-14s %6d %9d %6.0f%%\n", zg_sanitize_kind_name((zg_sanitize_kind)k), loops[k], hits[k],
                   100.0 * hits[k] / loops[k]);
    printf("  %-14s %6d %9d %6.0f%%\n", "all buggy", n_buggy, n_caught, n_buggy ? 100.0 * n_caught / n_buggy : 0.0);
    printf("  correct loops: %d, false positives: %d\n", n_correct, n_fp);
    double precision = n_caught + n_fp ? (double)n_caught / (n_caught + n_fp) : 1.0;
    double recall = n_buggy ? (double)n_caught / n_buggy : 1.0;
    printf("  precision %.1f%%, recall %.1f%%\n", 100.0 * precision, 100.0 * recall);
    fflush(stdout);
    CHECK(n_buggy >= 55);
    CHECK(n_correct >= 55);
    CHECK(n_fp == 0);
    CHECK(recall >= 0.90);
}

/* Error mode: each buggy loop caught in warn mode must make a call fail with
 * ZG_ERR_STATE and the sanitizer's report; each correct loop still runs
 * through (return 0). */
TEST(sanitizer_catalogue_error_mode_fails_the_call) {
    int n_checked = 0, n_failed = 0;
    for (int i = 0; i < N_LOOPS; i++) {
        const loop_entry *e = &catalogue[i];
        outcome warn, err;
        run_loop(e, ZG_SANITIZE_WARN, &warn);
        run_loop(e, ZG_SANITIZE_ERROR, &err);
        if (e->kind == CORRECT) {
            if (err.rc != 0) {
                n_failed++;
                printf("  correct loop %s failed in error mode (%d): %s\n", e->name, err.rc, err.err);
            }
            continue;
        }
        if (!caught(e, &warn)) continue;
        n_checked++;
        if (err.rc != ZG_ERR_STATE || !strstr(err.err, "zgrad sanitizer")) {
            n_failed++;
            printf("  %s: caught in warn mode but error mode returned %d (%s)\n", e->name, err.rc,
                   err.err[0] ? err.err : "no error");
        }
    }
    printf("  error mode: %d caught buggy loops checked, %d loops wrong\n", n_checked, n_failed);
    fflush(stdout);
    CHECK(n_failed == 0);
}
