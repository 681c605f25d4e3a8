/* Training-loop semantics where zero_grad matters (semantics.md section 6,
 * the recipes of section 7): several backwards per step, two optimizers
 * (GAN), freezing with requires_grad, accumulation and the scaler's skipped
 * step. The examples multi_loss, gan, amp_clip and accumulation show the
 * same claims at full size. */
#include <stdlib.h>

#include "harness.h"

#define MAXP 8

typedef struct {
    zg_module *net;
    zg_tensor *p[MAXP];
    int n;
} net_t;

/* in -> 8 -> tanh -> out */
static net_t mlp(int64_t in, int64_t out) {
    net_t m;
    zg_module *l[] = {zg_nn_linear(in, 8, true), zg_nn_tanh(), zg_nn_linear(8, out, true)};
    m.net = zg_nn_sequential(l, 3);
    m.n = zg_module_params(m.net, m.p, MAXP);
    return m;
}

/* Persistent copies of the grads (NULL where None). */
static void save_grads(const net_t *m, zg_tensor **out) {
    for (int i = 0; i < m->n; i++) {
        zg_tensor *g = zg_tensor_grad(m->p[i]);
        out[i] = g ? zg_tensor_clone(g) : NULL;
    }
}
static void free_all(zg_tensor **t, int n) {
    for (int i = 0; i < n; i++) zg_tensor_free(t[i]);
}
static bool exactly_equal(const zg_tensor *a, const zg_tensor *b) {
    if (!a || !b || zg_tensor_numel(a) != zg_tensor_numel(b)) return false;
    for (int64_t k = 0; k < zg_tensor_numel(a); k++)
        if (zg_tensor_get(a, k) != zg_tensor_get(b, k)) return false;
    return true;
}

/* Two losses over a shared net: l1 = mse(out, t1), l2 = 0.3 * mean(out^2). */
static void two_losses(net_t *m, zg_tensor *x, zg_tensor *t1, zg_tensor **l1, zg_tensor **l2) {
    zg_tensor *out = zg_module_forward(m->net, x);
    *l1 = zg_mse_loss(out, t1, ZG_REDUCTION_MEAN);
    *l2 = zg_mul_scalar(zg_mean(zg_mul(out, out)), 0.3f);
}

TEST(multi_loss_zero_grad_at_top_sums_and_between_loses_first) {
    zg_manual_seed(1);
    net_t m = mlp(3, 2);
    int64_t xs[2] = {5, 3}, ts[2] = {5, 2};
    zg_tensor *x = zg_randn(xs, 2), *t1 = zg_randn(ts, 2);
    zg_tensor *g1[MAXP], *g2[MAXP], *top[MAXP], *between[MAXP], *l1, *l2;
    zg_backward_opts keep = {.retain_graph = true};

    zg_module_zero_grad(m.net, true);
    two_losses(&m, x, t1, &l1, &l2);
    CHECK_OK(zg_backward(l1, NULL));
    save_grads(&m, g1);
    zg_module_zero_grad(m.net, true);
    two_losses(&m, x, t1, &l1, &l2);
    CHECK_OK(zg_backward(l2, NULL));
    save_grads(&m, g2);

    zg_module_zero_grad(m.net, true); /* pattern B */
    two_losses(&m, x, t1, &l1, &l2);
    CHECK_OK(zg_backward(l1, &keep));
    CHECK_OK(zg_backward(l2, NULL));
    save_grads(&m, top);

    zg_module_zero_grad(m.net, true);
    two_losses(&m, x, t1, &l1, &l2);
    CHECK_OK(zg_backward(l1, &keep));
    zg_module_zero_grad(m.net, true); /* the mistake */
    CHECK_OK(zg_backward(l2, NULL));
    save_grads(&m, between);

    for (int i = 0; i < m.n; i++) {
        CHECK(g1[i] && g2[i] && top[i] && between[i]);
        if (!g1[i] || !g2[i] || !top[i] || !between[i]) continue;
        zg_tensor *sum = zg_add(g1[i], g2[i]);
        CHECK_TENSOR_NEAR(top[i], sum, 1e-7, 1e-6);
        CHECK(exactly_equal(between[i], g2[i]));
        CHECK(zgt_rel_err(between[i], sum) > 1e-2); /* g1 really was lost */
    }
    free_all(g1, m.n);
    free_all(g2, m.n);
    free_all(top, m.n);
    free_all(between, m.n);
    zg_tensor_free(x);
    zg_tensor_free(t1);
    zg_module_free(m.net);
}

/* One GAN iteration's pieces for the tests below. */
typedef struct {
    net_t g, d;
    zg_optim *og, *od;
    zg_tensor *z, *real, *one, *zero;
} gan_t;

static gan_t gan_new(void) {
    gan_t s;
    zg_manual_seed(2);
    s.g = mlp(2, 2);
    s.d = mlp(2, 1);
    s.og = zg_optim_new(ZG_ADAM, s.g.p, s.g.n, NULL);
    s.od = zg_optim_new(ZG_ADAM, s.d.p, s.d.n, NULL);
    int64_t zs[2] = {6, 2}, ls[2] = {6, 1};
    s.z = zg_randn(zs, 2);
    s.real = zg_randn(zs, 2);
    s.one = zg_ones(ls, 2);
    s.zero = zg_zeros(ls, 2);
    return s;
}
static void gan_free(gan_t *s) {
    zg_optim_free(s->og);
    zg_optim_free(s->od);
    zg_module_free(s->g.net);
    zg_module_free(s->d.net);
    zg_tensor_free(s->z);
    zg_tensor_free(s->real);
    zg_tensor_free(s->one);
    zg_tensor_free(s->zero);
}
static zg_tensor *gan_g_loss(gan_t *s) {
    zg_tensor *fake = zg_module_forward(s->g.net, s->z);
    return zg_bce_with_logits(zg_module_forward(s->d.net, fake), s->one, ZG_REDUCTION_MEAN, NULL);
}
static zg_tensor *gan_d_loss(gan_t *s) {
    zg_tensor *fake = zg_detach(zg_module_forward(s->g.net, s->z));
    return zg_add(zg_bce_with_logits(zg_module_forward(s->d.net, s->real), s->one, ZG_REDUCTION_MEAN, NULL),
                  zg_bce_with_logits(zg_module_forward(s->d.net, fake), s->zero, ZG_REDUCTION_MEAN, NULL));
}

TEST(gan_generator_backward_reaches_discriminator_and_d_zero_grad_clears_it) {
    gan_t s = gan_new();
    zg_optim_zero_grad(s.og, true);
    CHECK_OK(zg_backward(gan_g_loss(&s), NULL));
    CHECK_OK(zg_optim_step(s.og));
    for (int i = 0; i < s.d.n; i++) CHECK(zg_tensor_grad(s.d.p[i]) != NULL); /* the leftover */

    /* D's step: its own zero_grad at the top clears the leftover and
     * leaves G's grads alone. */
    zg_optim_zero_grad(s.od, true);
    for (int i = 0; i < s.d.n; i++) CHECK(zg_tensor_grad(s.d.p[i]) == NULL);
    for (int i = 0; i < s.g.n; i++) CHECK(zg_tensor_grad(s.g.p[i]) != NULL);

    zg_tensor *g_before[MAXP];
    save_grads(&s.g, g_before);
    zg_tensor *ld = gan_d_loss(&s), *clean[MAXP];
    CHECK_OK(zg_autograd_grad(&ld, NULL, 1, s.d.p, s.d.n, clean, true, false));
    CHECK_OK(zg_backward(ld, NULL));
    for (int i = 0; i < s.d.n; i++) CHECK(exactly_equal(zg_tensor_grad(s.d.p[i]), clean[i]));
    /* G got nothing from D's loss (its input was detached): its grads are
     * still the ones its own step used. */
    for (int i = 0; i < s.g.n; i++) CHECK(exactly_equal(zg_tensor_grad(s.g.p[i]), g_before[i]));
    free_all(g_before, s.g.n);
    gan_free(&s);
}

TEST(gan_without_d_zero_grad_the_leftover_is_added) {
    gan_t s = gan_new();
    zg_optim_zero_grad(s.og, true);
    CHECK_OK(zg_backward(gan_g_loss(&s), NULL));
    zg_tensor *left[MAXP];
    save_grads(&s.d, left);
    zg_tensor *ld = gan_d_loss(&s), *clean[MAXP];
    CHECK_OK(zg_autograd_grad(&ld, NULL, 1, s.d.p, s.d.n, clean, true, false));
    CHECK_OK(zg_backward(ld, NULL)); /* no zero_grad: the bug */
    for (int i = 0; i < s.d.n; i++) {
        zg_tensor *expect = zg_add(left[i], clean[i]);
        CHECK_TENSOR_NEAR(zg_tensor_grad(s.d.p[i]), expect, 1e-7, 1e-6);
        CHECK(!exactly_equal(zg_tensor_grad(s.d.p[i]), clean[i]));
    }
    free_all(left, s.d.n);
    gan_free(&s);
}

TEST(freezing_discriminator_gives_same_generator_grads_and_leaves_d_none) {
    gan_t s = gan_new();
    zg_tensor *plain[MAXP];
    CHECK_OK(zg_backward(gan_g_loss(&s), NULL));
    save_grads(&s.g, plain);
    zg_optim_zero_grad(s.og, true);
    zg_optim_zero_grad(s.od, true);

    for (int i = 0; i < s.d.n; i++) CHECK_OK(zg_tensor_set_requires_grad(s.d.p[i], false));
    CHECK(!zg_tensor_requires_grad(s.d.p[0]));
    CHECK_OK(zg_backward(gan_g_loss(&s), NULL));
    for (int i = 0; i < s.d.n; i++) CHECK(zg_tensor_grad(s.d.p[i]) == NULL);
    for (int i = 0; i < s.g.n; i++) CHECK(exactly_equal(zg_tensor_grad(s.g.p[i]), plain[i]));

    /* D's step now has nothing to do: its params stay as they are. */
    zg_tensor *before = zg_tensor_clone(s.d.p[0]);
    CHECK_OK(zg_optim_step(s.od));
    CHECK(exactly_equal(s.d.p[0], before));
    zg_tensor_free(before);

    /* Unfrozen again, G's backward reaches D once more. */
    for (int i = 0; i < s.d.n; i++) CHECK_OK(zg_tensor_set_requires_grad(s.d.p[i], true));
    CHECK_OK(zg_backward(gan_g_loss(&s), NULL));
    for (int i = 0; i < s.d.n; i++) CHECK(zg_tensor_grad(s.d.p[i]) != NULL);
    free_all(plain, s.g.n);
    gan_free(&s);
}

TEST(requires_grad_only_toggles_leaves) {
    int64_t sh[1] = {3};
    zg_tensor *a = zg_ones(sh, 1);
    CHECK_OK(zg_tensor_set_requires_grad(a, true));
    zg_tensor *b = zg_mul_scalar(a, 2.0f);
    CHECK(zg_tensor_requires_grad(b));
    zg_clear_error();
    CHECK(zg_tensor_set_requires_grad(b, false) < 0);
    CHECK(zg_last_error()[0] != '\0');
    zg_tensor_free(a);
}

TEST(accumulation_by_hand_equals_large_batch) {
    zg_manual_seed(3);
    net_t a = mlp(4, 3), c = mlp(4, 3);
    zg_no_grad_enter();
    for (int i = 0; i < a.n; i++) zg_tensor_copy_(c.p[i], a.p[i]);
    zg_no_grad_exit();
    zg_optim_config cfg = zg_optim_defaults(ZG_SGD);
    cfg.lr = 0.1;
    cfg.momentum = 0.9;
    zg_optim *oa = zg_optim_new(ZG_SGD, a.p, a.n, &cfg), *oc = zg_optim_new(ZG_SGD, c.p, c.n, &cfg);
    int64_t xs[2] = {32, 4}, ys[1] = {32};
    zg_tensor *x = zg_randn(xs, 2), *y = zg_tensor_new(ZG_INT64, ys, 1);
    for (int i = 0; i < 32; i++) zg_tensor_data_i64(y)[i] = i % 3;
    for (int step = 0; step < 5; step++) {
        for (int j = 0; j < 4; j++) {
            int64_t bs[1] = {8};
            zg_tensor *yb = zg_tensor_from_data(ZG_INT64, zg_tensor_data_i64(y) + 8 * j, bs, 1);
            zg_tensor *l = zg_cross_entropy(zg_module_forward(a.net, zg_slice(x, 8 * j, 8 * j + 8)), yb, NULL);
            CHECK_OK(zg_backward(zg_div_scalar(l, 4.0f), NULL));
            zg_tensor_free(yb);
        }
        CHECK_OK(zg_optim_step(oa));
        zg_optim_zero_grad(oa, true);
        zg_optim_zero_grad(oc, true);
        CHECK_OK(zg_backward(zg_cross_entropy(zg_module_forward(c.net, x), y, NULL), NULL));
        CHECK_OK(zg_optim_step(oc));
        zg_arena_reset();
    }
    for (int i = 0; i < a.n; i++) CHECK_TENSOR_NEAR(a.p[i], c.p[i], 1e-7, 1e-5);
    zg_optim_free(oa);
    zg_optim_free(oc);
    zg_tensor_free(x);
    zg_tensor_free(y);
    zg_module_free(a.net);
    zg_module_free(c.net);
}

TEST(scaler_skips_step_on_injected_inf_and_halves_scale) {
    zg_manual_seed(4);
    net_t m = mlp(3, 1);
    zg_optim *opt = zg_optim_new(ZG_ADAM, m.p, m.n, NULL);
    zg_grad_scaler *sc = zg_grad_scaler_new(NULL);
    int64_t xs[2] = {4, 3};
    zg_tensor *x = zg_randn(xs, 2);
    /* One clean step first so Adam has state to protect. */
    for (int it = 0; it < 2; it++) {
        zg_optim_zero_grad(opt, true);
        CHECK_OK(zg_backward(zg_grad_scaler_scale(sc, zg_mean(zg_module_forward(m.net, x))), NULL));
        zg_tensor *before = zg_tensor_clone(m.p[0]);
        zg_tensor *avg = zg_optim_state_buffer(opt, 0, "exp_avg");
        zg_tensor *avg_before = avg ? zg_tensor_clone(avg) : NULL;
        if (it == 1) zg_tensor_data(zg_tensor_grad(m.p[1]))[0] = INFINITY;
        CHECK_OK(zg_grad_scaler_unscale_(sc, opt));
        double norm = 0;
        CHECK_OK(zg_optim_clip_grad_norm(opt, 1.0, 2.0, false, &norm));
        bool stepped = false;
        CHECK_OK(zg_grad_scaler_step(sc, opt, &stepped));
        CHECK_OK(zg_grad_scaler_update(sc));
        if (it == 0) {
            CHECK(stepped && !exactly_equal(m.p[0], before));
            CHECK(zg_grad_scaler_get_scale(sc) == 65536.0f);
        } else {
            CHECK(!stepped);
            CHECK(exactly_equal(m.p[0], before));
            CHECK(exactly_equal(zg_optim_state_buffer(opt, 0, "exp_avg"), avg_before));
            CHECK(zg_optim_state_step(opt, 0) == 1);
            CHECK(zg_grad_scaler_get_scale(sc) == 32768.0f);
        }
        zg_tensor_free(before);
        zg_tensor_free(avg_before);
        zg_arena_reset();
    }
    zg_grad_scaler_free(sc);
    zg_optim_free(opt);
    zg_tensor_free(x);
    zg_module_free(m.net);
}
