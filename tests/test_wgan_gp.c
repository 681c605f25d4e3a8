/* A WGAN-GP training loop against live PyTorch, with MLPs
 * (tests/parity/wgan_gp_reference.py, PyTorch 1.13) and with a DCGAN-style
 * convolutional critic on 8x8 images (wgan_gp_conv_reference_torch2.py,
 * PyTorch 2.x): the gradient penalty's input
 * gradient from zg_autograd_grad_opts with create_graph, the critic's
 * loss backwarded through it, Adam(lr 1e-4, betas (0, 0.9)) for critic
 * and generator, each clearing its own parameters at the top of its own
 * step. From the same initial weights and batches, every critic step's
 * penalty, loss and gradients, every generator step's loss, gradients and
 * the leftover it writes into the critic's gradients, and the final
 * parameters must agree with torch's.
 *
 * Tolerances: 1e-5 relative (norm-wise per tensor) for losses and
 * gradients, as the other parity tests; the two sides compute the same
 * float32 operations, in other orders (GEMM blocking, the norm as
 * sqrt(sum(g^2)) here and torch's norm kernel there). Parameters after 8
 * Adam steps with beta1 = 0: each update is lr g / sqrt(v), so a gradient
 * that is off by rounding moves a weight by lr times that relative error;
 * 1e-5 relative to the weights holds with a wide margin. The conv loop's
 * longest sums have K = 128 terms (the second convolution's 8 channels x
 * 4 x 4 taps, and each weight gradient's 8 samples x 4 x 4 positions):
 * rounding in another order moves such a sum by about sqrt(K) u = 7e-7
 * relative (u = 2^-24), and a critic gradient passes through about ten of
 * them (forward, the penalty's backward, its second-order backward), so
 * 1e-5 holds there too (measured: below 1e-6). */
#include "harness.h"

#include <stdlib.h>

#define MAXP 8

static const char *const sources[] = {"tests/parity/wgan_gp_reference.py", "tests/parity/torch_reference.py"};
static const char *const files[] = {"wgan_gp"};
static zgt_refset refs = {sources, 2, files, 1, NULL, 0};
static const char *const conv_sources[] = {"tests/parity/wgan_gp_conv_reference_torch2.py",
                                           "tests/parity/wgan_gp_reference.py", "tests/parity/torch_reference.py"};
static const char *const conv_files[] = {"wgan_gp_conv"};
static zgt_refset conv_refs = {conv_sources, 3, conv_files, 1, NULL, 0};

typedef struct {
    zg_module *net;
    zg_tensor *p[MAXP];
    int n;
    zg_optim *opt;
} network;

/* Builds the network, copies the reference's initial parameters into it,
 * and gives it Adam(lr 1e-4, betas (0, 0.9)). */
static bool network_init(network *w, zg_module *const *layers, int n_layers, const zg_safetensors *st,
                         const char *which) {
    w->net = zg_nn_sequential(layers, n_layers);
    if (!w->net) return false;
    w->n = zg_module_params(w->net, w->p, MAXP);
    for (int j = 0; j < w->n; j++) {
        zg_tensor *init = zgt_ref_get(st, "init.%s.%d", which, j);
        if (!init || zg_tensor_numel(init) != zg_tensor_numel(w->p[j])) return false;
        zg_no_grad_enter();
        int rc = zg_tensor_copy_(w->p[j], init);
        zg_no_grad_exit();
        if (rc) return false;
    }
    zg_optim_config cfg = zg_optim_defaults(ZG_ADAM);
    cfg.lr = 1e-4;
    cfg.beta1 = 0.0;
    cfg.beta2 = 0.9;
    w->opt = zg_optim_new(ZG_ADAM, w->p, w->n, &cfg);
    return w->opt != NULL;
}

static void network_free(network *w) {
    zg_optim_free(w->opt);
    zg_module_free(w->net);
}

static void check_grads(const network *w, const zg_safetensors *st, const char *fmt, int step, double *worst) {
    for (int j = 0; j < w->n; j++) {
        char name[64], what[96];
        snprintf(name, sizeof name, fmt, step, j);
        snprintf(what, sizeof what, "%s (grad)", name);
        CHECK_REF(what, zg_tensor_grad(w->p[j]), zgt_ref_get(st, "%s", name), 1e-5, worst);
    }
}

static void check_scalar(const char *what, const zg_tensor *ours, const zg_safetensors *st, const char *name,
                         double *worst) {
    CHECK_REF(what, ours, zgt_ref_get(st, "%s", name), 1e-5, worst);
}

/* mean((|g_i|_2 - 1)^2) over the samples g_i of g (each flattened): the
 * penalty on the critic's input gradient. */
static zg_tensor *penalty(zg_tensor *g) {
    zg_tensor *flat = zg_reshape(g, (int64_t[]){zg_tensor_shape(g)[0], -1}, 2);
    zg_tensor *norm = zg_sqrt(zg_sum_dim(zg_mul(flat, flat), 1, false));
    return zg_mean(zg_pow_scalar(zg_sub_scalar(norm, 1.0f), 2.0f));
}

typedef struct {
    double loss, grad;
} worst_errs;

/* G(z) seen with the shape of a real batch (the conv loop's generator ends
 * with a Linear, as torch's Unflatten does there). */
static zg_tensor *generate(network *G, zg_tensor *z, const zg_tensor *real) {
    return zg_reshape(zg_module_forward(G->net, z), zg_tensor_shape(real), zg_tensor_ndim(real));
}

static void critic_step(network *D, network *G, const zg_safetensors *st, int s, float lambda, worst_errs *we) {
    zg_tensor *real = zgt_ref_get(st, "critic.%d.real", s), *z = zgt_ref_get(st, "critic.%d.z", s);
    zg_tensor *alpha = zgt_ref_get(st, "critic.%d.alpha", s);
    if (!real || !z || !alpha) return;
    zg_optim_zero_grad(D->opt, true);
    zg_tensor *fake = zg_detach(generate(G, z, real));
    zg_tensor *x_hat = zg_add(zg_mul(alpha, real), zg_mul(zg_rsub_scalar(alpha, 1.0f), fake));
    CHECK_OK(zg_tensor_set_requires_grad(x_hat, true));
    zg_tensor *d_hat = zg_module_forward(D->net, x_hat), *g = NULL;
    zg_tensor *ones = zg_full(zg_tensor_shape(d_hat), zg_tensor_ndim(d_hat), 1.0f);
    const zg_tensor *go = ones;
    const zg_grad_opts o = {.grad_outputs = &go, .create_graph = true};
    CHECK_OK(zg_autograd_grad_opts(&d_hat, 1, &x_hat, 1, &g, &o));
    zg_tensor_free(ones);
    zg_tensor *gp = penalty(g);
    zg_tensor *loss = zg_add(zg_sub(zg_mean(zg_module_forward(D->net, fake)), zg_mean(zg_module_forward(D->net, real))),
                             zg_mul_scalar(gp, lambda));
    CHECK_OK(zg_backward(loss, NULL));
    char name[64];
    snprintf(name, sizeof name, "critic.%d.gp", s);
    check_scalar(name, gp, st, name, &we->loss);
    snprintf(name, sizeof name, "critic.%d.loss", s);
    check_scalar(name, loss, st, name, &we->loss);
    check_grads(D, st, "critic.%d.grad.%d", s, &we->grad);
    CHECK_OK(zg_optim_step(D->opt));
    zg_arena_reset();
}

static void generator_step(network *D, network *G, const zg_safetensors *st, int r, worst_errs *we) {
    zg_tensor *z = zgt_ref_get(st, "gen.%d.z", r), *real = zgt_ref_get(st, "critic.0.real");
    if (!z || !real) return;
    zg_optim_zero_grad(G->opt, true);
    zg_tensor *loss = zg_neg(zg_mean(zg_module_forward(D->net, generate(G, z, real))));
    CHECK_OK(zg_backward(loss, NULL));
    char name[64];
    snprintf(name, sizeof name, "gen.%d.loss", r);
    check_scalar(name, loss, st, name, &we->loss);
    check_grads(G, st, "gen.%d.grad.%d", r, &we->grad);
    /* the leftover in the critic, which its next zero_grad clears */
    check_grads(D, st, "gen.%d.dgrad.%d", r, &we->grad);
    CHECK_OK(zg_optim_step(G->opt));
    zg_arena_reset();
}

static int meta_int(const zg_safetensors *st, const char *key) {
    const char *v = zg_safetensors_metadata(st, key);
    return v ? atoi(v) : -1;
}

/* The reference's rounds of critic steps and a generator step from the
 * reference's initial parameters, then the final parameters checked. */
static void run_loop(const zg_safetensors *st, zg_module *const *dl, int nd, zg_module *const *gl, int ng,
                     const char *what) {
    const int rounds = meta_int(st, "rounds"), n_critic = meta_int(st, "n_critic");
    const char *lam = zg_safetensors_metadata(st, "lambda");
    CHECK(rounds > 0 && n_critic > 0 && lam);
    network D = {0}, G = {0};
    if (!lam || !network_init(&D, dl, nd, st, "D") || !network_init(&G, gl, ng, st, "G")) {
        zgt_fail(__FILE__, __LINE__, "building the networks: %s", zg_last_error());
    } else {
        worst_errs we = {0, 0};
        for (int r = 0; r < rounds; r++) {
            for (int k = 0; k < n_critic; k++) critic_step(&D, &G, st, r * n_critic + k, (float)atof(lam), &we);
            generator_step(&D, &G, st, r, &we);
        }
        double wp = 0;
        for (int j = 0; j < D.n; j++) {
            char name[32];
            snprintf(name, sizeof name, "final.D.%d", j);
            CHECK_REF(name, D.p[j], zgt_ref_get(st, "final.D.%d", j), 1e-5, &wp);
        }
        for (int j = 0; j < G.n; j++) {
            char name[32];
            snprintf(name, sizeof name, "final.G.%d", j);
            CHECK_REF(name, G.p[j], zgt_ref_get(st, "final.G.%d", j), 1e-5, &wp);
        }
        printf("  WGAN-GP (%s) vs torch %s, %d rounds of %d critic steps: worst relative error losses %.2g, grads "
               "%.2g, final parameters %.2g\n",
               what, zg_safetensors_metadata(st, "torch"), rounds, n_critic, we.loss, we.grad, wp);
    }
    network_free(&D);
    network_free(&G);
}

TEST(wgan_gp_loop_matches_pytorch) {
    zg_safetensors *st = zgt_refs_open(&refs, "wgan_gp");
    if (!st) return;
    const int data = meta_int(st, "data"), noise = meta_int(st, "noise"), hid = meta_int(st, "hidden");
    CHECK(data > 0 && noise > 0 && hid > 0);
    zg_module *dl[] = {zg_nn_linear(data, hid, true), zg_nn_leaky_relu(0.2f), zg_nn_linear(hid, hid, true),
                       zg_nn_leaky_relu(0.2f), zg_nn_linear(hid, 1, true)};
    zg_module *gl[] = {zg_nn_linear(noise, hid, true), zg_nn_relu(), zg_nn_linear(hid, data, true)};
    run_loop(st, dl, 5, gl, 3, "MLP critic");
    zg_safetensors_free(st);
}

/* The critic of DCGAN-style WGAN-GP (two strided convolutions with
 * LeakyReLU, then a Linear): the penalty's create_graph runs through
 * conv2d's input gradient, and the critic's backward through the
 * convolutions' second-order terms. */
TEST(wgan_gp_conv_critic_matches_pytorch_2) {
    zg_safetensors *st = zgt_refs_open(&conv_refs, "wgan_gp_conv");
    if (!st) return;
    const int side = meta_int(st, "side"), noise = meta_int(st, "noise"), hid = meta_int(st, "hidden");
    CHECK(side >= 4 && side % 4 == 0 && noise > 0 && hid > 0);
    const int64_t q = side / 4;
    zg_module *dl[] = {zg_nn_conv2d(1, 8, 4, 2, 1, 1, 1, true), zg_nn_leaky_relu(0.2f),
                       zg_nn_conv2d(8, 16, 4, 2, 1, 1, 1, true), zg_nn_leaky_relu(0.2f), zg_nn_flatten(),
                       zg_nn_linear(16 * q * q, 1, true)};
    zg_module *gl[] = {zg_nn_linear(noise, hid, true), zg_nn_relu(), zg_nn_linear(hid, side * side, true),
                       zg_nn_tanh()};
    run_loop(st, dl, 6, gl, 4, "conv critic");
    zg_safetensors_free(st);
}
