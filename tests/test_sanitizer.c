/* The gradient-lifecycle sanitizer: each pitfall it covers triggers its
 * report (warn: counted, text names the parameter and the call; error: the
 * call fails), and the correct training loops trigger none. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

typedef struct {
    zg_module *m;       /* Sequential(Linear(3,2), Linear(2,1)) */
    zg_tensor *p[4];    /* 0.weight 0.bias 1.weight 1.bias */
    zg_optim *opt;      /* SGD over all four */
    zg_tensor *x;       /* input [4,3] */
} fx;

static fx *g_fx; /* the fixture loss_of reads its input from */

static void fx_make(fx *f, zg_sanitize_mode mode) {
    zg_sanitize_reset();
    zg_sanitize_set_mode(mode);
    zg_manual_seed(7);
    zg_module *mods[2] = {zg_nn_linear(3, 2, true), zg_nn_linear(2, 1, true)};
    f->m = zg_nn_sequential(mods, 2);
    CHECK_PTR(f->m);
    CHECK(zg_module_params(f->m, f->p, 4) == 4);
    f->opt = zg_optim_new(ZG_SGD, f->p, 4, NULL);
    CHECK_PTR(f->opt);
    int64_t shape[2] = {4, 3};
    f->x = zg_randn(shape, 2);
    CHECK_PTR(f->x);
    g_fx = f;
}

static void fx_free(fx *f) {
    zg_sanitize_set_mode(ZG_SANITIZE_OFF);
    zg_sanitize_reset();
    zg_optim_free(f->opt);
    zg_module_free(f->m);
    zg_arena_reset();
    zg_tensor_free(f->x);
    g_fx = NULL;
}

static zg_tensor *loss_of(zg_module *m) { return zg_sum(zg_module_forward(m, g_fx->x)); }

static int backward_of(zg_module *m) { return zg_backward(loss_of(m), NULL); }

static bool last_has(const char *s) { return strstr(zg_sanitize_last_report(), s) != NULL; }

/* A second model, Linear(in, out), and an SGD optimizer over it (the
 * fixture's is the first). */
static zg_optim *second_model(int64_t in, int64_t out, zg_module **m) {
    *m = zg_nn_linear(in, out, true);
    CHECK_PTR(*m);
    zg_tensor *p[2];
    CHECK(*m && zg_module_params(*m, p, 2) == 2);
    zg_optim *opt = *m ? zg_optim_new(ZG_SGD, p, 2, NULL) : NULL;
    CHECK_PTR(opt);
    return opt;
}

/* ---- pitfalls, warn mode ------------------------------------------------- */

/* Several backward passes may feed one step (accumulation by hand, several
 * losses); only a declared window bounds them. */
TEST(sanitize_several_backwards_feed_one_step_unless_a_window_is_declared) {
    fx f;
    fx_make(&f, ZG_SANITIZE_WARN);
    zg_optim_zero_grad(f.opt, true);
    CHECK_OK(backward_of(f.m));
    CHECK_OK(backward_of(f.m));
    CHECK_OK(zg_optim_step(f.opt));
    CHECK(zg_sanitize_report_count() == 0);
    CHECK_OK(zg_sanitize_expect_accumulation(f.opt, 2));
    zg_optim_zero_grad(f.opt, true);
    for (int k = 0; k < 3; k++) CHECK_OK(backward_of(f.m));
    CHECK_OK(zg_optim_step(f.opt));
    CHECK(zg_sanitize_kind_count(ZG_SAN_WINDOW) == 1);
    CHECK(zg_sanitize_report_count() == 1);
    CHECK(last_has("zgrad sanitizer: window at step 2: the step uses more backward passes than the 2 declared"));
    CHECK(last_has("(0.weight, 0.bias, 1.weight, 1.bias) at zg_optim_step; fix: "));
    fx_free(&f);
}

TEST(sanitize_zero_grad_missing_reports_leftover_grads) {
    fx f;
    fx_make(&f, ZG_SANITIZE_WARN);
    for (int it = 0; it < 3; it++) {
        CHECK_OK(backward_of(f.m));
        CHECK_OK(zg_optim_step(f.opt));
        zg_arena_reset();
    }
    /* the first step is clean; the next two add onto grads a step used */
    CHECK(zg_sanitize_kind_count(ZG_SAN_STALE) == 2);
    CHECK(zg_sanitize_report_count() == 2);
    CHECK(last_has("stale at step 3: the step uses gradients that a step already used"));
    CHECK(last_has("1.bias"));
    CHECK(last_has("fix: call zg_optim_zero_grad before each backward"));
    fx_free(&f);
}

TEST(sanitize_second_step_without_backward_is_stale) {
    fx f;
    fx_make(&f, ZG_SANITIZE_WARN);
    CHECK_OK(backward_of(f.m));
    CHECK_OK(zg_optim_step(f.opt));
    CHECK(zg_sanitize_report_count() == 0);
    CHECK_OK(zg_optim_step(f.opt));
    CHECK(zg_sanitize_kind_count(ZG_SAN_STALE) == 1);
    CHECK(last_has("a step already used"));
    fx_free(&f);
}

/* An erasure is judged at the step: one that then finds no fresh gradient
 * lost the backward's work. */
TEST(sanitize_zero_grad_between_backward_and_step_erases) {
    fx f;
    fx_make(&f, ZG_SANITIZE_WARN);
    CHECK_OK(backward_of(f.m));
    zg_optim_zero_grad(f.opt, true);
    CHECK(zg_sanitize_report_count() == 0);
    CHECK_OK(zg_optim_step(f.opt));
    CHECK(zg_sanitize_kind_count(ZG_SAN_ERASED) == 1);
    CHECK(last_has("erased at step 1: zero_grad erased the gradients of the backward before this step used them"));
    CHECK(last_has("(0.weight, 0.bias, 1.weight, 1.bias) at zg_optim_zero_grad; fix: move zg_optim_zero_grad"));

    zg_arena_reset();
    CHECK_OK(backward_of(f.m));
    zg_module_zero_grad(f.m, false);
    /* zeroed (not None) grads with no backward since: nothing fresh */
    CHECK_OK(zg_optim_step(f.opt));
    CHECK(zg_sanitize_kind_count(ZG_SAN_ERASED) == 2);
    CHECK(last_has("at zg_module_zero_grad"));

    zg_arena_reset();
    CHECK_OK(backward_of(f.m));
    zg_tensor_zero_grad(f.p[2], true);
    zg_tensor_zero_grad(f.p[3], true);
    zg_tensor_zero_grad(f.p[0], true);
    CHECK_OK(zg_tensor_set_grad(f.p[1], NULL));
    CHECK_OK(zg_optim_step(f.opt));
    CHECK(zg_sanitize_kind_count(ZG_SAN_ERASED) == 3);
    CHECK(last_has("(0.weight, 0.bias, 1.weight, 1.bias) at zg_tensor_zero_grad"));
    CHECK(zg_sanitize_report_count() == 3);

    zg_arena_reset();
    CHECK_OK(backward_of(f.m));
    for (int i = 0; i < 4; i++) CHECK_OK(zg_tensor_set_grad(f.p[i], NULL)); /* p.grad = None */
    CHECK_OK(zg_optim_step(f.opt));
    CHECK(zg_sanitize_kind_count(ZG_SAN_ERASED) == 4);
    CHECK(last_has("(0.weight, 0.bias, 1.weight, 1.bias) at zg_tensor_set_grad"));
    fx_free(&f);
}

/* zero_grad inside an accumulation window (every micro-batch, stepping
 * every 3): each window loses two backwards; reported from the third such
 * window in a row (discarded batches come in clusters of one or two). */
TEST(sanitize_zero_grad_inside_the_window_erases_window_after_window) {
    fx f;
    fx_make(&f, ZG_SANITIZE_WARN);
    for (int i = 0; i < 12; i++) {
        zg_optim_zero_grad(f.opt, true);
        CHECK_OK(backward_of(f.m));
        if ((i + 1) % 3 == 0) CHECK_OK(zg_optim_step(f.opt));
        if (i == 5) CHECK(zg_sanitize_report_count() == 0);
        zg_arena_reset();
    }
    CHECK(zg_sanitize_kind_count(ZG_SAN_ERASED) == 2);
    CHECK(zg_sanitize_report_count() == 2);
    CHECK(last_has("window after window"));
    fx_free(&f);
}

/* loss1.backward(); zero_grad(); loss2.backward(); step(): the first loss
 * never reaches a step. One or two such windows are discarded batches;
 * three in a row are a bug. (From the second window on, the first backward adds onto
 * grads the previous step used, and zero_grad clears them: still erased.) */
TEST(sanitize_zero_grad_between_two_losses_erases_window_after_window) {
    fx f;
    fx_make(&f, ZG_SANITIZE_WARN);
    for (int i = 0; i < 4; i++) {
        CHECK_OK(backward_of(f.m));
        zg_optim_zero_grad(f.opt, true);
        CHECK_OK(backward_of(f.m));
        CHECK_OK(zg_optim_step(f.opt));
        if (i == 1) CHECK(zg_sanitize_report_count() == 0);
        zg_arena_reset();
    }
    CHECK(zg_sanitize_kind_count(ZG_SAN_ERASED) == 2);
    CHECK(zg_sanitize_report_count() == 2);
    CHECK(last_has("erased at step 4: zero_grad erased gradients no step used, window after window"));
    CHECK(last_has("(0.weight, 0.bias, 1.weight, 1.bias) at zg_optim_zero_grad; fix: zero_grad once per step"));
    fx_free(&f);
}

/* DCGAN with netD.zero_grad() between errD_real.backward() and
 * errD_fake.backward(): D never learns from real data. Windows are judged
 * per optimizer: G's steps between D's do not break the repetition. */
TEST(sanitize_gan_zero_between_real_and_fake_is_judged_per_optimizer) {
    fx f; /* D: f.m (3 -> 1), f.opt */
    fx_make(&f, ZG_SANITIZE_WARN);
    zg_module *g;
    zg_optim *og = second_model(3, 3, &g);
    for (int it = 0; it < 4; it++) {
        CHECK_OK(zg_backward(zg_sum(zg_module_forward(f.m, f.x)), NULL)); /* errD_real */
        zg_module_zero_grad(f.m, true);
        zg_tensor *fake = zg_module_forward(g, f.x);
        CHECK_OK(zg_backward(zg_neg(zg_sum(zg_module_forward(f.m, zg_detach(fake)))), NULL)); /* errD_fake */
        CHECK_OK(zg_optim_step(f.opt));
        zg_optim_zero_grad(og, true);
        CHECK_OK(zg_backward(zg_sum(zg_module_forward(f.m, fake)), NULL)); /* errG */
        CHECK_OK(zg_optim_step(og));
        zg_arena_reset();
    }
    CHECK(zg_sanitize_kind_count(ZG_SAN_ERASED) == 2);
    CHECK(zg_sanitize_report_count() == 2);
    CHECK(last_has("erased at step 7:"));
    CHECK(last_has("(0.weight [optimizer 1], 0.bias [optimizer 1], 1.weight [optimizer 1], 1.bias [optimizer 1]) "
                   "at zg_module_zero_grad"));
    zg_optim_free(og);
    zg_module_free(g);
    fx_free(&f);
}

/* enc_opt.step(); model.zero_grad(); dec_opt.step(): the decoder's grads
 * came from the pass the encoder's step used, so clearing them is no
 * erasure by itself; the decoder's step then finds none: erased, not
 * "no backward". */
TEST(sanitize_step_after_its_grads_were_cleared_reports_erased) {
    fx f; /* encoder: f.m (3 -> 1) */
    fx_make(&f, ZG_SANITIZE_WARN);
    zg_module *dec;
    zg_optim *od = second_model(1, 3, &dec);
    for (int it = 0; it < 2; it++) {
        CHECK_OK(zg_backward(zg_sum(zg_module_forward(dec, zg_module_forward(f.m, f.x))), NULL));
        CHECK_OK(zg_optim_step(f.opt));
        zg_module_zero_grad(f.m, true);
        zg_module_zero_grad(dec, true);
        CHECK_OK(zg_optim_step(od));
        zg_arena_reset();
    }
    CHECK(zg_sanitize_kind_count(ZG_SAN_ERASED) == 2);
    CHECK(zg_sanitize_kind_count(ZG_SAN_NO_GRAD) == 0);
    CHECK(last_has("erased at step 4: zero_grad erased the gradients of the backward before this step used them"));
    CHECK(last_has("(weight [optimizer 2], bias [optimizer 2]) at zg_module_zero_grad"));
    zg_optim_free(od);
    zg_module_free(dec);
    fx_free(&f);
}

TEST(sanitize_step_without_backward_reports_no_grad) {
    fx f;
    fx_make(&f, ZG_SANITIZE_WARN);
    zg_optim_zero_grad(f.opt, true);
    CHECK_OK(zg_optim_step(f.opt));
    CHECK(zg_sanitize_kind_count(ZG_SAN_NO_GRAD) == 1);
    CHECK(zg_sanitize_report_count() == 1);
    CHECK(last_has("step with no fresh gradient"));
    CHECK(last_has("fix: call zg_backward on the loss before zg_optim_step"));
    CHECK(last_has("0.weight"));
    fx_free(&f);
}

TEST(sanitize_params_outside_every_optimizer) {
    fx f;
    fx_make(&f, ZG_SANITIZE_WARN);
    zg_optim_free(f.opt); /* the fixture's optimizer held all four */
    f.opt = NULL;
    zg_optim *head = zg_optim_new(ZG_SGD, f.p + 2, 2, NULL); /* forgets layer 0 */
    CHECK_PTR(head);
    CHECK_OK(zg_sanitize_watch_module(f.m));
    zg_optim_zero_grad(head, true);
    CHECK_OK(backward_of(f.m));
    CHECK_OK(zg_optim_step(head));
    CHECK(zg_sanitize_kind_count(ZG_SAN_UNSTEPPED) == 1);
    CHECK(zg_sanitize_report_count() == 1);
    CHECK(last_has("in no optimizer (0.bias, 0.weight) at zg_optim_step"));
    zg_sanitize_unwatch_module(f.m);
    zg_optim_free(head);
    fx_free(&f);
}

/* Optimizers are known from their construction: with two optimizers over
 * the two layers and the grads cleared through the model after the forward
 * (pattern A), the first step must not call the second optimizer's
 * parameters "in no optimizer" (it used to, until that optimizer had
 * zeroed or stepped them). */
TEST(sanitize_two_optimizers_known_from_construction) {
    fx f;
    fx_make(&f, ZG_SANITIZE_ERROR);
    zg_optim_free(f.opt);
    f.opt = NULL;
    zg_optim *first = zg_optim_new(ZG_SGD, f.p, 2, NULL), *second = zg_optim_new(ZG_ADAM, f.p + 2, 2, NULL);
    CHECK_PTR(first);
    CHECK_PTR(second);
    CHECK_OK(zg_sanitize_watch_module(f.m));
    for (int it = 0; it < 3; it++) {
        zg_tensor *loss = loss_of(f.m);
        zg_module_zero_grad(f.m, true);
        CHECK_OK(zg_backward(loss, NULL));
        CHECK_OK(zg_optim_step(first));
        CHECK_OK(zg_optim_step(second));
        zg_arena_reset();
    }
    CHECK(zg_sanitize_report_count() == 0);
    /* A freed optimizer holds nothing any more. */
    zg_optim_free(second);
    zg_module_zero_grad(f.m, true);
    CHECK_OK(backward_of(f.m));
    CHECK_ERR(zg_optim_step(first), "in no optimizer (1.bias, 1.weight)");
    zg_sanitize_unwatch_module(f.m);
    zg_optim_free(first);
    fx_free(&f);
}

/* A watched module that is freed stops being watched (the next step used
 * to read the freed module: AddressSanitizer's build catches that), also
 * when the sanitizer is off at the time. */
TEST(sanitize_freed_module_is_no_longer_watched) {
    fx f;
    fx_make(&f, ZG_SANITIZE_WARN);
    zg_module *other = zg_nn_linear(2, 2, true);
    CHECK_PTR(other);
    CHECK_OK(zg_sanitize_watch_module(other));
    zg_sanitize_set_mode(ZG_SANITIZE_OFF);
    zg_module_free(other);
    zg_sanitize_set_mode(ZG_SANITIZE_WARN);
    zg_optim_zero_grad(f.opt, true);
    CHECK_OK(backward_of(f.m));
    CHECK_OK(zg_optim_step(f.opt));
    CHECK(zg_sanitize_report_count() == 0);
    fx_free(&f);
}

TEST(sanitize_clipping_scaled_grads) {
    fx f;
    fx_make(&f, ZG_SANITIZE_WARN);
    zg_grad_scaler *s = zg_grad_scaler_new(NULL);
    CHECK_PTR(s);
    zg_optim_zero_grad(f.opt, true);
    CHECK_OK(zg_backward(zg_grad_scaler_scale(s, loss_of(f.m)), NULL));
    double norm = 0;
    CHECK_OK(zg_optim_clip_grad_norm(f.opt, 1.0, 2.0, false, &norm));
    CHECK(zg_sanitize_kind_count(ZG_SAN_SCALED_CLIP) == 1);
    CHECK(last_has("still multiplied by the loss scale"));
    CHECK(last_has("0.weight"));
    CHECK(last_has("at zg_clip_grad_norm"));
    CHECK_OK(zg_module_clip_grad_value(f.m, 1.0));
    CHECK(zg_sanitize_kind_count(ZG_SAN_SCALED_CLIP) == 2);
    CHECK(last_has("at zg_clip_grad_value"));
    /* unscale_ twice stays the scaler's own error */
    CHECK_OK(zg_grad_scaler_unscale_(s, f.opt));
    CHECK_ERR(zg_grad_scaler_unscale_(s, f.opt), "already been called");
    CHECK_OK(zg_optim_clip_grad_norm(f.opt, 1.0, 2.0, false, &norm));
    CHECK(zg_sanitize_kind_count(ZG_SAN_SCALED_CLIP) == 2);
    zg_grad_scaler_free(s);
    fx_free(&f);
}

/* A user's read of grads a scaled loss produced, before unscale_: once per
 * parameter per step, naming it and the scale; not after unscale_ / step /
 * update, nor for grads of an unscaled loss. */
TEST(sanitize_reading_scaled_grads) {
    fx f;
    fx_make(&f, ZG_SANITIZE_WARN);
    zg_grad_scaler *s = zg_grad_scaler_new(NULL);
    CHECK_PTR(s);
    for (int it = 0; it < 2; it++) {
        zg_optim_zero_grad(f.opt, true);
        CHECK_OK(zg_backward(zg_grad_scaler_scale(s, loss_of(f.m)), NULL));
        CHECK_PTR(zg_tensor_grad(f.p[0]));
        CHECK(zg_sanitize_report_count() == 2 * it + 1);
        CHECK(zg_sanitize_kind_count(ZG_SAN_SCALED_READ) == 2 * it + 1);
        CHECK(zg_sanitize_kind_count(ZG_SAN_SCALED_CLIP) == 0);
        CHECK(last_has("reading gradients still multiplied by the loss scale 65536"));
        CHECK(last_has("fix: call zg_grad_scaler_unscale_ before reading them"));
        CHECK(last_has("(0.weight) at zg_tensor_grad"));
        CHECK_PTR(zg_tensor_grad(f.p[0])); /* once per parameter per step */
        CHECK(zg_sanitize_report_count() == 2 * it + 1);
        CHECK_PTR(zg_tensor_grad(f.p[3]));
        CHECK(zg_sanitize_report_count() == 2 * it + 2);
        CHECK(last_has("(1.bias)"));
        CHECK_OK(zg_grad_scaler_unscale_(s, f.opt));
        for (int i = 0; i < 4; i++) CHECK_PTR(zg_tensor_grad(f.p[i]));
        CHECK_OK(zg_grad_scaler_step(s, f.opt, NULL));
        CHECK_OK(zg_grad_scaler_update(s));
        for (int i = 0; i < 4; i++) CHECK_PTR(zg_tensor_grad(f.p[i]));
        CHECK(zg_sanitize_report_count() == 2 * it + 2);
        zg_arena_reset();
    }
    /* The scale after growth is what the message names. */
    zg_grad_scaler_state st;
    CHECK_OK(zg_grad_scaler_get_state(s, &st));
    st.scale = 1024;
    CHECK_OK(zg_grad_scaler_set_state(s, &st));
    zg_optim_zero_grad(f.opt, true);
    CHECK_OK(zg_backward(zg_grad_scaler_scale(s, loss_of(f.m)), NULL));
    CHECK_PTR(zg_tensor_grad(f.p[1]));
    CHECK(zg_sanitize_report_count() == 5);
    CHECK(last_has("loss scale 1024 ") && last_has("(0.bias)"));
    CHECK_OK(zg_grad_scaler_step(s, f.opt, NULL));
    CHECK_OK(zg_grad_scaler_update(s));
    /* Grads of a plain backward are not scaled. */
    zg_optim_zero_grad(f.opt, true);
    CHECK_OK(backward_of(f.m));
    for (int i = 0; i < 4; i++) CHECK_PTR(zg_tensor_grad(f.p[i]));
    CHECK_OK(zg_optim_step(f.opt));
    CHECK(zg_sanitize_report_count() == 5);
    /* Without the sanitizer nothing is reported. */
    zg_sanitize_set_mode(ZG_SANITIZE_OFF);
    zg_optim_zero_grad(f.opt, true);
    CHECK_OK(zg_backward(zg_grad_scaler_scale(s, loss_of(f.m)), NULL));
    CHECK_PTR(zg_tensor_grad(f.p[0]));
    CHECK(zg_sanitize_report_count() == 5);
    zg_grad_scaler_free(s);
    fx_free(&f);
}

/* Error mode: the read itself cannot fail (it returns the buffer), so the
 * next step fails, naming the read, as for erasures. */
TEST(sanitize_error_mode_reading_scaled_grads_fails_the_step) {
    fx f;
    fx_make(&f, ZG_SANITIZE_ERROR);
    zg_grad_scaler *s = zg_grad_scaler_new(NULL);
    CHECK_PTR(s);
    zg_optim_zero_grad(f.opt, true);
    CHECK_OK(zg_backward(zg_grad_scaler_scale(s, loss_of(f.m)), NULL));
    const zg_tensor *g = zg_tensor_grad(f.p[2]);
    CHECK_PTR(g);
    CHECK(zg_sanitize_kind_count(ZG_SAN_SCALED_READ) == 1);
    CHECK(strstr(zg_last_error(), "reading gradients still multiplied by the loss scale") != NULL);
    CHECK_OK(zg_grad_scaler_unscale_(s, f.opt));
    CHECK_ERR(zg_grad_scaler_step(s, f.opt, NULL), "(1.weight) at zg_tensor_grad");
    zg_grad_scaler_free(s);
    fx_free(&f);
}

TEST(sanitize_scheduler_before_optimizer) {
    fx f;
    fx_make(&f, ZG_SANITIZE_WARN);
    zg_sched *sc = zg_sched_step_lr(f.opt, 1, 0.5);
    CHECK_PTR(sc);
    CHECK(zg_sanitize_report_count() == 0); /* the constructor's own initial step is not a user step */
    CHECK_OK(zg_sched_step(sc));
    CHECK(zg_sanitize_kind_count(ZG_SAN_SCHED_ORDER) == 1);
    CHECK(last_has("scheduler stepped before its optimizer's first step"));
    CHECK(last_has("0.weight"));
    CHECK(last_has("at zg_sched_step"));
    zg_sched_free(sc);
    fx_free(&f);
}

TEST(sanitize_scheduler_after_a_skipped_scaler_step_is_fine) {
    fx f;
    fx_make(&f, ZG_SANITIZE_ERROR);
    zg_grad_scaler_opts o = ZG_GRAD_SCALER_DEFAULTS;
    o.init_scale = 3e38f; /* the scaled loss overflows: the step is skipped */
    zg_grad_scaler *s = zg_grad_scaler_new(&o);
    zg_sched *sc = zg_sched_step_lr(f.opt, 1, 0.5);
    CHECK_PTR(s);
    CHECK_PTR(sc);
    float w0 = zg_tensor_get(f.p[0], 0);
    zg_optim_zero_grad(f.opt, true);
    zg_tensor *l = loss_of(f.m);
    CHECK_OK(zg_backward(zg_grad_scaler_scale(s, zg_add_scalar(zg_mul(l, l), 10.0f)), NULL));
    bool stepped = true;
    CHECK_OK(zg_grad_scaler_step(s, f.opt, &stepped));
    CHECK(!stepped);
    CHECK(zg_tensor_get(f.p[0], 0) == w0);
    CHECK_OK(zg_grad_scaler_update(s));
    CHECK_OK(zg_sched_step(sc));
    /* pattern A's zero_grad after the skipped step erases nothing fresh */
    zg_optim_zero_grad(f.opt, true);
    CHECK(zg_sanitize_report_count() == 0);
    zg_sched_free(sc);
    zg_grad_scaler_free(s);
    fx_free(&f);
}

TEST(sanitize_backward_through_freed_graph_points_at_detach) {
    fx f;
    fx_make(&f, ZG_SANITIZE_WARN);
    zg_tensor *l = loss_of(f.m);
    CHECK_OK(zg_backward(l, NULL));
    CHECK_ERR(zg_backward(l, NULL), "backward through the graph a second time");
    CHECK(strstr(zg_last_error(), "retain_graph") != NULL);
    CHECK(strstr(zg_last_error(), "detach") != NULL);
    fx_free(&f);
}

/* ---- error mode: the triggering call fails ------------------------------ */

TEST(sanitize_error_mode_fails_the_step) {
    fx f;
    fx_make(&f, ZG_SANITIZE_ERROR);
    CHECK_OK(backward_of(f.m));
    CHECK_OK(zg_optim_step(f.opt));
    zg_arena_reset();
    float w0 = zg_tensor_get(f.p[0], 0);
    CHECK_OK(backward_of(f.m));
    CHECK_ERR(zg_optim_step(f.opt), "zgrad sanitizer: stale at step 2");
    CHECK(strstr(zg_last_error(), "0.weight") != NULL);
    CHECK(zg_tensor_get(f.p[0], 0) == w0); /* rejected: nothing moved */
    CHECK(zg_sanitize_report_count() == 1);
    /* the refused step closed the window: dropping its grads erases nothing */
    zg_optim_zero_grad(f.opt, true);
    CHECK_ERR(zg_optim_step(f.opt), "no fresh gradient");
    CHECK(zg_sanitize_report_count() == 2);
    fx_free(&f);
}

TEST(sanitize_error_mode_erasure_fails_the_step) {
    fx f;
    fx_make(&f, ZG_SANITIZE_ERROR);
    CHECK_OK(backward_of(f.m));
    zg_optim_zero_grad(f.opt, false);
    CHECK(zg_sanitize_kind_count(ZG_SAN_ERASED) == 0);
    CHECK_ERR(zg_optim_step(f.opt), "zero_grad erased the gradients");
    CHECK(strstr(zg_last_error(), "at zg_optim_zero_grad") != NULL);
    CHECK(zg_sanitize_kind_count(ZG_SAN_ERASED) == 1);
    fx_free(&f);
}

TEST(sanitize_error_mode_fails_clip_and_scheduler) {
    fx f;
    fx_make(&f, ZG_SANITIZE_ERROR);
    zg_grad_scaler *s = zg_grad_scaler_new(NULL);
    zg_sched *sc = zg_sched_step_lr(f.opt, 1, 0.5);
    CHECK_PTR(s);
    CHECK_PTR(sc);
    CHECK_ERR(zg_sched_step(sc), "scheduler stepped before");
    CHECK_OK(zg_backward(zg_grad_scaler_scale(s, loss_of(f.m)), NULL));
    float g0 = zg_tensor_get(zg_tensor_grad(f.p[0]), 0); /* a scaled read: reported too */
    CHECK(zg_sanitize_kind_count(ZG_SAN_SCALED_READ) == 1);
    CHECK_ERR(zg_optim_clip_grad_norm(f.opt, 1e-3, 2.0, false, NULL), "loss scale");
    CHECK(zg_sanitize_kind_count(ZG_SAN_SCALED_CLIP) == 1);
    CHECK(zg_tensor_get(zg_tensor_grad(f.p[0]), 0) == g0); /* not clipped */
    zg_sched_free(sc);
    zg_grad_scaler_free(s);
    fx_free(&f);
}

TEST(sanitize_off_reports_nothing) {
    fx f;
    fx_make(&f, ZG_SANITIZE_OFF);
    CHECK(zg_sanitize_get_mode() == ZG_SANITIZE_OFF);
    CHECK_OK(backward_of(f.m));
    CHECK_OK(backward_of(f.m));
    CHECK_OK(zg_optim_step(f.opt));
    CHECK_OK(backward_of(f.m));
    zg_optim_zero_grad(f.opt, true);
    CHECK_OK(zg_optim_step(f.opt));
    CHECK(zg_sanitize_report_count() == 0);
    CHECK(zg_sanitize_last_report()[0] == 0);
    fx_free(&f);
}

/* ---- correct loops: no report (error mode, so any report fails a call) -- */

TEST(sanitize_pattern_a_and_b_are_clean) {
    fx f;
    fx_make(&f, ZG_SANITIZE_ERROR);
    for (int it = 0; it < 3; it++) { /* A: backward, step, zero_grad */
        CHECK_OK(backward_of(f.m));
        CHECK_OK(zg_optim_step(f.opt));
        zg_optim_zero_grad(f.opt, true);
        zg_arena_reset();
    }
    for (int it = 0; it < 3; it++) { /* B: zero_grad (to zeros), backward, step */
        zg_module_zero_grad(f.m, false);
        CHECK_OK(backward_of(f.m));
        CHECK_OK(zg_optim_step(f.opt));
        zg_arena_reset();
    }
    CHECK(zg_sanitize_report_count() == 0);
    fx_free(&f);
}

TEST(sanitize_declared_accumulation_and_multi_loss_are_clean) {
    fx f;
    fx_make(&f, ZG_SANITIZE_ERROR);
    CHECK_OK(zg_sanitize_expect_accumulation(f.opt, 4));
    for (int w = 0; w < 2; w++) {
        for (int k = 0; k < 4; k++) CHECK_OK(backward_of(f.m));
        CHECK_OK(zg_optim_step(f.opt));
        zg_optim_zero_grad(f.opt, true);
        zg_arena_reset();
    }
    CHECK_OK(zg_sanitize_expect_accumulation(f.opt, 1));
    for (int it = 0; it < 2; it++) { /* two losses, two backwards, one step */
        zg_optim_zero_grad(f.opt, true);
        zg_sanitize_expect_backwards(2);
        CHECK_OK(backward_of(f.m));
        CHECK_OK(backward_of(f.m));
        CHECK_OK(zg_optim_step(f.opt));
        zg_arena_reset();
    }
    CHECK(zg_sanitize_report_count() == 0);
    /* a declaration lasts until a backward follows its step */
    zg_optim_zero_grad(f.opt, true);
    zg_sanitize_expect_backwards(2);
    for (int k = 0; k < 3; k++) CHECK_OK(backward_of(f.m));
    CHECK_ERR(zg_optim_step(f.opt), "more backward passes than the 2 declared");
    fx_free(&f);
}

TEST(sanitize_gan_done_right_is_clean) {
    zg_sanitize_reset();
    zg_sanitize_set_mode(ZG_SANITIZE_ERROR);
    zg_manual_seed(3);
    zg_module *g = zg_nn_linear(2, 3, true), *d = zg_nn_linear(3, 1, true);
    CHECK_PTR(g);
    CHECK_PTR(d);
    zg_tensor *gp[2], *dp[2];
    CHECK(zg_module_params(g, gp, 2) == 2);
    CHECK(zg_module_params(d, dp, 2) == 2);
    zg_optim *og = zg_optim_new(ZG_ADAM, gp, 2, NULL), *od = zg_optim_new(ZG_ADAM, dp, 2, NULL);
    CHECK_PTR(og);
    CHECK_PTR(od);
    CHECK_OK(zg_sanitize_watch_module(g));
    CHECK_OK(zg_sanitize_watch_module(d));
    int64_t zs[2] = {4, 2}, rs[2] = {4, 3};
    zg_tensor *z = zg_randn(zs, 2), *real = zg_randn(rs, 2);
    for (int it = 0; it < 3; it++) {
        /* discriminator: real and detached fake, one loss */
        zg_optim_zero_grad(od, true);
        zg_tensor *fake = zg_module_forward(g, z);
        zg_tensor *ld = zg_sub(zg_sum(zg_module_forward(d, zg_detach(fake))),
                               zg_sum(zg_module_forward(d, real)));
        CHECK_OK(zg_backward(ld, NULL));
        CHECK_OK(zg_optim_step(od));
        /* generator: through d, which also gets grads its zero_grad clears */
        zg_optim_zero_grad(og, true);
        zg_tensor *lg = zg_neg(zg_sum(zg_module_forward(d, fake)));
        CHECK_OK(zg_backward(lg, NULL));
        CHECK_OK(zg_optim_step(og));
        zg_arena_reset();
    }
    CHECK(zg_sanitize_report_count() == 0);
    zg_sanitize_set_mode(ZG_SANITIZE_OFF);
    zg_sanitize_reset();
    zg_optim_free(og);
    zg_optim_free(od);
    zg_module_free(g);
    zg_module_free(d);
    zg_arena_reset();
    zg_tensor_free(z);
    zg_tensor_free(real);
}

TEST(sanitize_amp_recipe_with_clip_and_scheduler_is_clean) {
    fx f;
    fx_make(&f, ZG_SANITIZE_ERROR);
    CHECK_OK(zg_sanitize_watch_module(f.m));
    zg_grad_scaler *s = zg_grad_scaler_new(NULL);
    zg_sched *sc = zg_sched_step_lr(f.opt, 1, 0.9);
    CHECK_PTR(s);
    CHECK_PTR(sc);
    for (int it = 0; it < 3; it++) {
        zg_optim_zero_grad(f.opt, true);
        CHECK_OK(zg_backward(zg_grad_scaler_scale(s, loss_of(f.m)), NULL));
        CHECK_OK(zg_grad_scaler_unscale_(s, f.opt));
        CHECK_OK(zg_optim_clip_grad_norm(f.opt, 1.0, 2.0, false, NULL));
        /* Reading the unscaled grads (logging, a hand-made clip) is fine. */
        double sq = 0;
        for (int i = 0; i < 4; i++) {
            const zg_tensor *g = zg_tensor_grad(f.p[i]);
            for (int64_t k = 0; g && k < zg_tensor_numel(g); k++) sq += zg_tensor_get(g, k) * zg_tensor_get(g, k);
        }
        CHECK(sq > 0 && sq <= 1.0 + 1e-5); /* clipped to norm 1, unscaled */
        bool stepped = false;
        CHECK_OK(zg_grad_scaler_step(s, f.opt, &stepped));
        CHECK(stepped);
        CHECK_OK(zg_grad_scaler_update(s));
        CHECK_OK(zg_sched_step(sc));
        for (int i = 0; i < 4; i++) CHECK_PTR(zg_tensor_grad(f.p[i])); /* after update */
        zg_arena_reset();
    }
    CHECK(zg_sanitize_report_count() == 0);
    zg_sanitize_unwatch_module(f.m);
    zg_sched_free(sc);
    zg_grad_scaler_free(s);
    fx_free(&f);
}

/* ---- intentional discards: no report (error mode) ----------------------- */

/* FGSM training: a backward for the input's gradient, read, then the
 * parameters' grads of that pass dropped; sharpness-aware minimisation:
 * the first pass's grads read (their norm), then dropped; a batch whose
 * loss is NaN skipped by zeroing its grads, several windows running; used
 * grads zeroed by hand (p.grad.zero_()) instead of zero_grad. */
TEST(sanitize_intentional_discards_are_clean) {
    fx f;
    fx_make(&f, ZG_SANITIZE_ERROR);
    int64_t shape[2] = {4, 3};
    zg_tensor *x = zg_randn(shape, 2);
    CHECK_PTR(x);
    CHECK_OK(zg_tensor_set_requires_grad(x, true));
    for (int it = 0; it < 3; it++) { /* adversarial examples */
        zg_optim_zero_grad(f.opt, true);
        zg_tensor_zero_grad(x, true);
        CHECK_OK(zg_backward(zg_sum(zg_module_forward(f.m, x)), NULL));
        zg_tensor *gx = zg_tensor_grad(x);
        CHECK_PTR(gx);
        zg_tensor *adv = zg_add(zg_detach(x), zg_mul_scalar(gx, 0.01f));
        zg_optim_zero_grad(f.opt, true);
        CHECK_OK(zg_backward(zg_sum(zg_module_forward(f.m, adv)), NULL));
        CHECK_OK(zg_optim_step(f.opt));
        zg_arena_reset();
    }
    for (int it = 0; it < 3; it++) { /* sharpness-aware minimisation */
        zg_optim_zero_grad(f.opt, true);
        CHECK_OK(backward_of(f.m));
        for (int i = 0; i < 4; i++) CHECK_PTR(zg_tensor_grad(f.p[i])); /* e_w = rho * g / ||g|| */
        zg_optim_zero_grad(f.opt, true);
        CHECK_OK(backward_of(f.m));
        CHECK_OK(zg_optim_step(f.opt));
        zg_arena_reset();
    }
    for (int it = 0; it < 4; it++) { /* skip non-finite batches */
        zg_optim_zero_grad(f.opt, true);
        zg_tensor *loss = loss_of(f.m);
        if (it < 2) loss = zg_mul_scalar(loss, NAN);
        CHECK_OK(zg_backward(loss, NULL));
        if (it < 2) continue;
        CHECK_OK(zg_optim_step(f.opt));
        zg_arena_reset();
    }
    for (int it = 0; it < 3; it++) { /* for p in params: p.grad.zero_() */
        for (int i = 0; i < 4; i++) {
            zg_tensor *g = zg_tensor_grad(f.p[i]);
            if (g) CHECK_OK(zg_tensor_fill_(g, 0.0f));
        }
        CHECK_OK(backward_of(f.m));
        CHECK_OK(zg_optim_step(f.opt));
        zg_arena_reset();
    }
    CHECK(zg_sanitize_report_count() == 0);
    zg_tensor_free(x);
    fx_free(&f);
}

/* A loop that zeroes after each step (pattern C): D zeroed after its step
 * keeps what G's backward leaves in it, and D's next step uses it. */
TEST(sanitize_generator_backward_leaking_into_the_discriminator_is_stale) {
    fx f;
    fx_make(&f, ZG_SANITIZE_WARN);
    zg_module *g;
    zg_optim *og = second_model(3, 3, &g);
    for (int it = 0; it < 3; it++) {
        zg_tensor *fake = zg_module_forward(g, f.x);
        CHECK_OK(zg_backward(zg_sum(zg_module_forward(f.m, zg_detach(fake))), NULL));
        CHECK_OK(zg_optim_step(f.opt));
        zg_optim_zero_grad(f.opt, true);
        CHECK_OK(zg_backward(zg_neg(zg_sum(zg_module_forward(f.m, fake))), NULL));
        CHECK_OK(zg_optim_step(og));
        zg_optim_zero_grad(og, true);
        zg_arena_reset();
    }
    CHECK(zg_sanitize_kind_count(ZG_SAN_STALE) == 2);
    CHECK(zg_sanitize_report_count() == 2);
    CHECK(last_has("a backward that fed another optimizer's step"));
    CHECK(last_has("0.weight [optimizer 1]"));
    zg_optim_free(og);
    zg_module_free(g);
    fx_free(&f);
}

TEST(sanitize_scaler_misuse) {
    fx f;
    fx_make(&f, ZG_SANITIZE_WARN);
    zg_grad_scaler *s = zg_grad_scaler_new(NULL);
    CHECK_PTR(s);
    /* the optimizer stepped directly: weights move by scale x lr */
    zg_optim_zero_grad(f.opt, true);
    CHECK_OK(zg_backward(zg_grad_scaler_scale(s, loss_of(f.m)), NULL));
    CHECK_OK(zg_optim_step(f.opt));
    CHECK(zg_sanitize_kind_count(ZG_SAN_SCALED_STEP) == 1);
    CHECK(last_has("fix: step through zg_grad_scaler_step"));
    /* the unscaled loss's backward, unscaled by the scaler: grads / scale */
    zg_optim_zero_grad(f.opt, true);
    CHECK_OK(backward_of(f.m));
    CHECK_OK(zg_grad_scaler_step(s, f.opt, NULL));
    CHECK_OK(zg_grad_scaler_update(s));
    CHECK(zg_sanitize_kind_count(ZG_SAN_UNSCALED) == 1);
    CHECK(last_has("whose loss the scaler did not scale"));
    /* grads of one scale, unscaled by another (update between backward and step) */
    zg_optim_zero_grad(f.opt, true);
    CHECK_OK(zg_backward(zg_grad_scaler_scale(s, loss_of(f.m)), NULL));
    zg_grad_scaler_state st;
    CHECK_OK(zg_grad_scaler_get_state(s, &st));
    st.scale *= 2;
    CHECK_OK(zg_grad_scaler_set_state(s, &st));
    CHECK_OK(zg_grad_scaler_step(s, f.opt, NULL));
    CHECK(zg_sanitize_kind_count(ZG_SAN_UNSCALED) == 2);
    CHECK(last_has("multiplied by another scale"));
    CHECK(zg_sanitize_report_count() == 3);
    zg_grad_scaler_free(s);
    fx_free(&f);
}

/* requires_grad set false on a parameter whose grad is zeros, not None:
 * PyTorch's optimizers still step it (momentum, weight decay). */
TEST(sanitize_frozen_parameter_still_stepped) {
    fx f;
    fx_make(&f, ZG_SANITIZE_WARN);
    zg_optim_zero_grad(f.opt, false);
    CHECK_OK(backward_of(f.m));
    CHECK_OK(zg_optim_step(f.opt));
    zg_optim_zero_grad(f.opt, false);
    CHECK_OK(zg_tensor_set_requires_grad(f.p[0], false));
    CHECK_OK(backward_of(f.m));
    CHECK_OK(zg_optim_step(f.opt));
    CHECK(zg_sanitize_kind_count(ZG_SAN_FROZEN_STEP) == 1);
    CHECK(zg_sanitize_report_count() == 1);
    CHECK(last_has("requires_grad is false (0.weight)"));
    /* frozen the PyTorch way: grad set to None too */
    zg_optim_zero_grad(f.opt, true);
    CHECK_OK(backward_of(f.m));
    CHECK_OK(zg_optim_step(f.opt));
    CHECK(zg_sanitize_report_count() == 1);
    fx_free(&f);
}

TEST(sanitize_clip_after_step_and_scheduler_twice_per_step) {
    fx f;
    fx_make(&f, ZG_SANITIZE_WARN);
    zg_sched *sc = zg_sched_step_lr(f.opt, 10, 0.5);
    CHECK_PTR(sc);
    for (int it = 0; it < 2; it++) {
        zg_optim_zero_grad(f.opt, true);
        CHECK_OK(backward_of(f.m));
        CHECK_OK(zg_optim_step(f.opt));
        CHECK_OK(zg_optim_clip_grad_norm(f.opt, 1.0, 2.0, false, NULL));
        CHECK_OK(zg_sched_step(sc));
        CHECK_OK(zg_sched_step(sc)); /* per micro-batch: every window */
        zg_arena_reset();
    }
    CHECK(zg_sanitize_kind_count(ZG_SAN_CONSUMED_CLIP) == 2);
    CHECK(zg_sanitize_kind_count(ZG_SAN_SCHED_REPEAT) == 2);
    CHECK(zg_sanitize_report_count() == 4);
    CHECK(last_has("scheduler stepped again with no step of its optimizer between"));
    zg_sched_free(sc);
    fx_free(&f);
}

/* Modules made while the sanitizer is on are known: no watch call needed. */
TEST(sanitize_parameters_in_no_optimizer_without_watching) {
    fx f;
    fx_make(&f, ZG_SANITIZE_WARN);
    zg_optim_free(f.opt);
    f.opt = zg_optim_new(ZG_SGD, f.p + 2, 2, NULL);
    CHECK_PTR(f.opt);
    zg_optim_zero_grad(f.opt, true);
    CHECK_OK(backward_of(f.m));
    CHECK_OK(zg_optim_step(f.opt));
    CHECK(zg_sanitize_kind_count(ZG_SAN_UNSTEPPED) == 1);
    CHECK(last_has("in no optimizer (0.bias, 0.weight)"));
    /* added to an optimizer: no longer reported */
    zg_param_group pg = {.params = f.p, .n_params = 2};
    CHECK_OK(zg_optim_add_param_group(f.opt, &pg));
    zg_optim_zero_grad(f.opt, true);
    zg_arena_reset();
    CHECK_OK(backward_of(f.m));
    CHECK_OK(zg_optim_step(f.opt));
    CHECK(zg_sanitize_report_count() == 1);
    fx_free(&f);
}

/* zg_sanitize_reset keeps declared windows (a live zg_accum's included). */
TEST(sanitize_reset_keeps_declared_windows) {
    fx f;
    fx_make(&f, ZG_SANITIZE_WARN);
    CHECK_OK(zg_sanitize_expect_accumulation(f.opt, 2));
    zg_sanitize_reset();
    zg_optim_zero_grad(f.opt, true);
    for (int k = 0; k < 3; k++) CHECK_OK(backward_of(f.m));
    CHECK_OK(zg_optim_step(f.opt));
    CHECK(zg_sanitize_kind_count(ZG_SAN_WINDOW) == 1);
    fx_free(&f);
}

/* Parameters first met at an optimizer's zero_grad or step (made, with the
 * optimizer, while the sanitizer was off) grow its records map in the
 * middle of that call; the optimizer's record must not be read after it
 * moved (AddressSanitizer's build), and what was learned must stay. */
TEST(sanitize_many_parameters_first_seen_at_a_step) {
    zg_sanitize_reset();
    zg_sanitize_set_mode(ZG_SANITIZE_OFF);
    enum { N = 300 };
    zg_tensor *p[N];
    int64_t shape[1] = {2};
    for (int i = 0; i < N; i++) {
        p[i] = zg_tensor_new(ZG_FLOAT32, shape, 1);
        CHECK_PTR(p[i]);
        CHECK_OK(zg_tensor_fill_(p[i], 1.0f));
        CHECK_OK(zg_tensor_set_requires_grad(p[i], true));
    }
    zg_optim *opt = zg_optim_new(ZG_SGD, p, N, NULL);
    CHECK_PTR(opt);
    zg_sanitize_set_mode(ZG_SANITIZE_WARN);
    for (int it = 0; it < 2; it++) {
        if (it == 0) zg_optim_zero_grad(opt, true);
        zg_tensor *loss = zg_sum(zg_mul(p[0], p[0]));
        for (int i = 1; i < N; i++) loss = zg_add(loss, zg_sum(zg_mul(p[i], p[i])));
        CHECK_OK(zg_backward(loss, NULL));
        CHECK_OK(zg_optim_step(opt));
        zg_arena_reset();
    }
    /* the second backward added onto used grads: every parameter stale */
    CHECK(zg_sanitize_kind_count(ZG_SAN_STALE) == 1);
    CHECK(zg_sanitize_report_count() == 1);
    zg_sanitize_set_mode(ZG_SANITIZE_OFF);
    zg_sanitize_reset();
    zg_optim_free(opt);
    for (int i = 0; i < N; i++) zg_tensor_free(p[i]);
}

/* An optimizer kept across a reset (its declared window) still counts as
 * live: with a second one, names say which optimizer holds them. */
TEST(sanitize_reset_keeps_declared_optimizers_counted) {
    fx f;
    fx_make(&f, ZG_SANITIZE_WARN);
    CHECK_OK(zg_sanitize_expect_accumulation(f.opt, 2));
    zg_sanitize_reset();
    zg_module *other;
    zg_optim *second = second_model(2, 2, &other);
    CHECK_OK(zg_optim_step(f.opt)); /* no backward: reported, names qualified */
    CHECK(zg_sanitize_kind_count(ZG_SAN_NO_GRAD) == 1);
    CHECK(last_has("0.weight [optimizer 1]"));
    zg_optim_free(second);
    zg_module_free(other);
    fx_free(&f);
}

/* Runs only in the child below: a pattern B loop, then accumulation. */
TEST(sanitize_trace_child) {
    if (!getenv("ZG_SAN_TRACE_CHILD")) return;
    fx f;
    fx_make(&f, ZG_SANITIZE_TRACE);
    for (int it = 0; it < 2; it++) {
        zg_optim_zero_grad(f.opt, true);
        CHECK_OK(backward_of(f.m));
        CHECK_OK(zg_optim_step(f.opt));
        zg_arena_reset();
    }
    for (int it = 0; it < 2; it++) {
        zg_optim_zero_grad(f.opt, true);
        for (int k = 0; k < 3; k++) CHECK_OK(zg_backward(zg_sum(zg_module_forward(f.m, f.x)), NULL));
        CHECK_OK(zg_optim_step(f.opt));
        zg_arena_reset();
    }
    CHECK_OK(backward_of(f.m)); /* loss1.backward(); zero_grad(); loss2.backward(); step() */
    zg_optim_zero_grad(f.opt, true);
    CHECK_OK(backward_of(f.m));
    CHECK_OK(zg_optim_step(f.opt));
    fx_free(&f);
}

TEST(sanitize_trace_names_the_pattern) {
    const char *exe = zgt_self_exe();
    CHECK_PTR(exe);
    if (!exe) return;
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "ZG_SAN_TRACE_CHILD=1 '%s' sanitize_trace_child 2>&1 >/dev/null", exe);
    FILE *p = popen(cmd, "r");
    CHECK_PTR(p);
    char out[4096] = {0};
    if (p) {
        size_t n = fread(out, 1, sizeof out - 1, p);
        out[n] = 0;
        pclose(p);
    }
    const char *b = "zero_grad, forward, backward, step -> pattern B/C: zero_grad between the last step and the "
                    "forward\n";
    const char *acc = "zero_grad, forward, backward, forward, backward, forward, backward, step -> accumulation "
                      "every 3\n";
    const char *between = "forward, backward, zero_grad, forward, backward, step -> zero_grad between backwards: the "
                          "step sees only the backwards after it\n";
    char want[512];
    for (int k = 1; k <= 5; k++) {
        snprintf(want, sizeof want, "zgrad trace: step %d: %s", k, k <= 2 ? b : k <= 4 ? acc : between);
        if (!strstr(out, want)) zgt_fail(__FILE__, __LINE__, "trace lacks \"%s\" in:\n%s", want, out);
    }
}

/* ---- ZG_SANITIZE: read once, on first use (checked in a fresh process) - */

/* Runs only in the child started below (ZG_SAN_CHILD_EXPECT set): the
 * first sanitizer use reads ZG_SANITIZE; setting it later changes nothing. */
TEST(sanitize_env_child) {
    const char *want = getenv("ZG_SAN_CHILD_EXPECT");
    if (!want) return;
    CHECK(zg_sanitize_get_mode() == (zg_sanitize_mode)atoi(want));
    setenv("ZG_SANITIZE", "error", 1);
    CHECK(zg_sanitize_get_mode() == (zg_sanitize_mode)atoi(want));
}

TEST(sanitize_env_variable_sets_the_mode) {
    const char *exe = zgt_self_exe();
    CHECK_PTR(exe);
    if (!exe) return;
    const char *vals[4] = {"warn", "error", "off", "trace"};
    const int modes[4] = {ZG_SANITIZE_WARN, ZG_SANITIZE_ERROR, ZG_SANITIZE_OFF, ZG_SANITIZE_TRACE};
    for (int i = 0; i < 4; i++) {
        char cmd[4300];
        snprintf(cmd, sizeof cmd, "ZG_SANITIZE=%s ZG_SAN_CHILD_EXPECT=%d '%s' sanitize_env_child >/dev/null", vals[i],
                 modes[i], exe);
        int rc = system(cmd);
        if (rc != 0) zgt_fail(__FILE__, __LINE__, "ZG_SANITIZE=%s: child exited with %d", vals[i], rc);
    }
    /* A value that is no mode stops the program with a message, rather
     * than leaving the checks off. */
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "ZG_SANITIZE=bogus ZG_SAN_CHILD_EXPECT=0 '%s' sanitize_env_child 2>&1 | grep -q "
             "'ZG_SANITIZE=bogus is not a mode: use off, warn, error or trace'", exe);
    CHECK(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "ZG_SANITIZE=bogus '%s' sanitize_env_child >/dev/null 2>&1", exe);
    int rc = system(cmd);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
}
