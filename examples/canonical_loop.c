/* The canonical training loop, in C:
 *
 *     for each batch:  zero_grad -> forward -> loss -> backward -> step
 *
 * An MLP learns to tell apart three interleaved spirals (a classic toy data
 * set that a linear model cannot solve). Everything a step creates lives in
 * the step arena, which the loop resets at the end of each step. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "zgrad.h"

#define N_CLASSES 3
#define PER_CLASS 200
#define N_SAMPLES (N_CLASSES * PER_CLASS)
#define BATCH 60
#define EPOCHS 150

static int fail(const char *what) {
    fprintf(stderr, "canonical_loop: %s: %s\n", what, zg_last_error());
    return 1;
}

/* Three spirals with a little noise: x [N,2] float, y [N] int64. */
static void make_spirals(zg_tensor **x, zg_tensor **y) {
    int64_t xs[2] = {N_SAMPLES, 2}, ys[1] = {N_SAMPLES};
    *x = zg_tensor_new(ZG_FLOAT32, xs, 2);
    *y = zg_tensor_new(ZG_INT64, ys, 1);
    zg_tensor *noise = zg_normal(xs, 2, 0.0f, 0.1f);
    float *xd = zg_tensor_data(*x), *nd = zg_tensor_data(noise);
    int64_t *yd = zg_tensor_data_i64(*y);
    for (int c = 0; c < N_CLASSES; c++)
        for (int i = 0; i < PER_CLASS; i++) {
            int k = c * PER_CLASS + i;
            float r = (float)i / PER_CLASS;
            float th = 4.0f * r + c * 2.0f * 3.14159265f / N_CLASSES;
            xd[2 * k] = r * sinf(th) + nd[2 * k] * r;
            xd[2 * k + 1] = r * cosf(th) + nd[2 * k + 1] * r;
            yd[k] = c;
        }
    zg_tensor_free(noise);
}

int main(void) {
    zg_manual_seed(0);
    zg_tensor *x, *y;
    make_spirals(&x, &y);

    zg_module *layers[] = {zg_nn_linear(2, 64, true), zg_nn_relu(), zg_nn_linear(64, 64, true), zg_nn_relu(),
                           zg_nn_linear(64, N_CLASSES, true)};
    zg_module *model = zg_nn_sequential(layers, 5);
    if (!model) return fail("building the model");

    zg_tensor *params[16];
    int n_params = zg_module_params(model, params, 16);
    zg_optim_config cfg = zg_optim_defaults(ZG_ADAM);
    cfg.lr = 1e-2;
    zg_optim *opt = zg_optim_new(ZG_ADAM, params, n_params, &cfg);
    if (!opt) return fail("building the optimizer");

    /* A fixed shuffled order of the samples, new each epoch. */
    int64_t order[N_SAMPLES];
    int64_t bxs[2] = {BATCH, 2}, bys[1] = {BATCH};
    zg_tensor *bx = zg_tensor_new(ZG_FLOAT32, bxs, 2), *by = zg_tensor_new(ZG_INT64, bys, 1);
    srand(0);
    float first_loss = 0, last_loss = 0;
    for (int epoch = 0; epoch < EPOCHS; epoch++) {
        for (int i = 0; i < N_SAMPLES; i++) order[i] = i;
        for (int i = N_SAMPLES - 1; i > 0; i--) {
            int j = rand() % (i + 1);
            int64_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        double epoch_loss = 0;
        for (int b = 0; b < N_SAMPLES / BATCH; b++) {
            for (int i = 0; i < BATCH; i++) {
                int64_t k = order[b * BATCH + i];
                zg_tensor_data(bx)[2 * i] = zg_tensor_data(x)[2 * k];
                zg_tensor_data(bx)[2 * i + 1] = zg_tensor_data(x)[2 * k + 1];
                zg_tensor_data_i64(by)[i] = zg_tensor_data_i64(y)[k];
            }
            zg_optim_zero_grad(opt, true);                     /* zero_grad */
            zg_tensor *logits = zg_module_forward(model, bx);  /* forward */
            zg_tensor *loss = zg_cross_entropy(logits, by, NULL); /* loss */
            if (!loss) return fail("forward");
            if (zg_backward(loss, NULL)) return fail("backward"); /* backward */
            if (zg_optim_step(opt)) return fail("step");          /* step */
            epoch_loss += zg_tensor_item(loss);
            zg_arena_reset(); /* frees this step's activations and graph */
        }
        epoch_loss /= N_SAMPLES / BATCH;
        if (epoch == 0) first_loss = (float)epoch_loss;
        last_loss = (float)epoch_loss;
        if (epoch % 25 == 0 || epoch == EPOCHS - 1) printf("epoch %3d  loss %.4f\n", epoch, epoch_loss);
    }

    /* Evaluation: no graph needed. */
    zg_module_train(model, false);
    zg_no_grad_enter();
    zg_tensor *pred_idx = NULL;
    zg_max_dim(zg_module_forward(model, x), 1, false, &pred_idx);
    int correct = 0;
    for (int i = 0; i < N_SAMPLES; i++) correct += zg_tensor_data_i64(pred_idx)[i] == zg_tensor_data_i64(y)[i];
    zg_no_grad_exit();
    zg_arena_reset();
    printf("train accuracy %.1f%% (loss %.4f -> %.4f)\n", 100.0 * correct / N_SAMPLES, first_loss, last_loss);

    zg_optim_free(opt);
    zg_module_free(model);
    zg_tensor_free(x);
    zg_tensor_free(y);
    zg_tensor_free(bx);
    zg_tensor_free(by);
    zg_arena_free_all();
    return correct > N_SAMPLES * 9 / 10 ? 0 : 1;
}
