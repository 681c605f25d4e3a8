/* Conv2d, MaxPool2d, AvgPool2d and BatchNorm modules: PyTorch's default
 * init, module buffers (names in a Sequential, save / load with the
 * weights, errors), running statistics over training steps and eval-mode
 * output; and live parity with PyTorch (tests/parity/conv_reference.py):
 * every conv / pool / batch-norm op configuration, forward and backward,
 * and the default CNN of `zgrad train` trained for a few Adam steps; the
 * fused conv + max pool + relu of Sequential against the modules run one
 * by one. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */


static bool same_values(const zg_tensor *a, const zg_tensor *b) {
    if (!a || !b || zg_tensor_numel(a) != zg_tensor_numel(b)) return false;
    for (int64_t i = 0; i < zg_tensor_numel(a); i++)
        if (zg_tensor_get(a, i) != zg_tensor_get(b, i)) return false;
    return true;
}


/* Conv - BN2d - ReLU - Flatten - Linear - BN1d: buffers at "1." and "5.". */
static zg_module *bn_net(void) {
    zg_module *l[6] = {zg_nn_conv2d(2, 3, 3, 1, 1, 1, 1, false), zg_nn_batch_norm2d(3, 1e-5f, 0.1f), zg_nn_relu(),
                       zg_nn_flatten(), zg_nn_linear(3 * 4 * 4, 5, true), zg_nn_batch_norm1d(5, 1e-3f, 0.3f)};
    return zg_nn_sequential(l, 6);
}

/* ------------------------------------------------------------------ */
/* Init                                                                */
/* ------------------------------------------------------------------ */

TEST(conv_module_init_bounds) {
    /* fan_in = in/groups * k * k: 8/2 * 3 * 3 = 36, bound 1/6. */
    zg_module *m = zg_nn_conv2d(8, 6, 3, 1, 1, 1, 2, true);
    CHECK_PTR(m);
    if (!m) return;
    CHECK(strcmp(zg_module_type(m), "Conv2d") == 0);
    CHECK(zg_module_num_params(m) == 2);
    CHECK(zg_module_num_buffers(m) == 0);
    zg_tensor *w = zg_module_param_by_name(m, "weight"), *b = zg_module_param_by_name(m, "bias");
    CHECK(w && zg_tensor_ndim(w) == 4 && zg_tensor_size(w, 0) == 6 && zg_tensor_size(w, 1) == 4 &&
          zg_tensor_size(w, 2) == 3 && zg_tensor_size(w, 3) == 3);
    CHECK(b && zg_tensor_ndim(b) == 1 && zg_tensor_size(b, 0) == 6);
    const double bound = 1.0 / 6.0;
    double wmax = 0, bmax = 0;
    for (int64_t i = 0; i < zg_tensor_numel(w); i++) wmax = fmax(wmax, fabs(zg_tensor_get(w, i)));
    for (int64_t i = 0; i < zg_tensor_numel(b); i++) bmax = fmax(bmax, fabs(zg_tensor_get(b, i)));
    CHECK(wmax <= bound && bmax <= bound);
    /* 216 uniform draws: the largest is near the bound, not far inside. */
    CHECK(wmax > 0.9 * bound);
    /* Mean near 0 and variance near bound^2/3 (uniform). */
    double s = 0, q = 0;
    for (int64_t i = 0; i < zg_tensor_numel(w); i++) {
        s += zg_tensor_get(w, i);
        q += zg_tensor_get(w, i) * zg_tensor_get(w, i);
    }
    double n = (double)zg_tensor_numel(w);
    CHECK_NEAR(s / n, 0.0, 0.25 * bound);
    CHECK_NEAR(q / n, bound * bound / 3, 0.3 * bound * bound / 3);
    zg_module_free(m);

    /* Same seed, same weights; without bias one parameter. */
    zg_manual_seed(7);
    zg_module *a = zg_nn_conv2d(3, 4, 5, 1, 0, 1, 1, false);
    zg_manual_seed(7);
    zg_module *c = zg_nn_conv2d(3, 4, 5, 1, 0, 1, 1, false);
    CHECK(a && c && zg_module_num_params(a) == 1);
    if (a && c) CHECK(same_values(zg_module_param(a, 0), zg_module_param(c, 0)));
    if (a) {
        double m2 = 0, bd = 1.0 / sqrt(75.0);
        for (int64_t i = 0; i < zg_tensor_numel(zg_module_param(a, 0)); i++)
            m2 = fmax(m2, fabs(zg_tensor_get(zg_module_param(a, 0), i)));
        CHECK(m2 <= bd && m2 > 0.9 * bd);
    }
    zg_module_free(a);
    zg_module_free(c);
}

TEST(batch_norm_module_init_and_buffers) {
    zg_module *m = zg_nn_batch_norm2d(4, 1e-5f, 0.1f);
    CHECK_PTR(m);
    if (!m) return;
    CHECK(strcmp(zg_module_type(m), "BatchNorm2d") == 0);
    CHECK(zg_module_num_params(m) == 2 && zg_module_num_buffers(m) == 3);
    const float ones[4] = {1, 1, 1, 1}, zeros[4] = {0, 0, 0, 0};
    CHECK_VALUES(zg_module_param_by_name(m, "weight"), ones, 4, 0);
    CHECK_VALUES(zg_module_param_by_name(m, "bias"), zeros, 4, 0);
    const char *names[3] = {"running_mean", "running_var", "num_batches_tracked"};
    for (int i = 0; i < 3; i++) CHECK(strcmp(zg_module_buffer_name(m, i), names[i]) == 0);
    CHECK_VALUES(zg_module_buffer(m, 0), zeros, 4, 0);
    CHECK_VALUES(zg_module_buffer(m, 1), ones, 4, 0);
    zg_tensor *nbt = zg_module_buffer(m, 2);
    CHECK(zg_tensor_dtype(nbt) == ZG_INT64 && zg_tensor_ndim(nbt) == 0 && zg_tensor_data_i64(nbt)[0] == 0);
    for (int i = 0; i < 3; i++) CHECK(!zg_tensor_requires_grad(zg_module_buffer(m, i)));
    CHECK_NULL_ERR(zg_module_buffer(m, 3), "index 3 out of range (BatchNorm2d has 3 buffers)");
    CHECK_NULL_ERR(zg_module_buffer(m, -1), "out of range");
    CHECK_NULL_ERR(zg_module_buffer(NULL, 0), "module is NULL");
    CHECK_ERR(zg_module_num_buffers(NULL), "module is NULL");
    CHECK(zg_module_buffer_name(m, 5) == NULL);
    zg_module_free(m);

    zg_module *m1 = zg_nn_batch_norm1d(3, 1e-5f, 0.1f);
    CHECK(m1 && strcmp(zg_module_type(m1), "BatchNorm1d") == 0 && zg_module_num_buffers(m1) == 3);
    zg_module_free(m1);
}

TEST(buffers_in_sequential_named_as_state_dict) {
    zg_module *net = bn_net();
    CHECK_PTR(net);
    if (!net) return;
    /* PyTorch's named_buffers() of the same Sequential. */
    const char *bufs[6] = {"1.running_mean", "1.running_var", "1.num_batches_tracked",
                           "5.running_mean", "5.running_var", "5.num_batches_tracked"};
    CHECK(zg_module_num_buffers(net) == 6);
    for (int i = 0; i < 6; i++) {
        CHECK(strcmp(zg_module_buffer_name(net, i), bufs[i]) == 0);
        CHECK(strcmp(zg_tensor_name(zg_module_buffer(net, i)), bufs[i]) == 0);
    }
    /* Seen from a child, names are relative to it. */
    zg_module *bn = zg_module_child(net, 5);
    CHECK(zg_module_num_buffers(bn) == 3 && strcmp(zg_module_buffer_name(bn, 1), "running_var") == 0);
    CHECK(zg_module_buffer(bn, 1) == zg_module_buffer(net, 4));
    /* Buffers are not parameters. */
    const char *params[7] = {"0.weight", "1.weight", "1.bias", "4.weight", "4.bias", "5.weight", "5.bias"};
    CHECK(zg_module_num_params(net) == 7);
    for (int i = 0; i < 7 && i < zg_module_num_params(net); i++)
        CHECK(strcmp(zg_module_param_name(net, i), params[i]) == 0);
    CHECK_NULL_ERR(zg_module_param_by_name(net, "1.running_mean"), "no parameter");

    /* A Sequential nested in a Sequential: both prefixes. */
    zg_module *outer = zg_nn_sequential((zg_module *[]){zg_nn_relu(), net}, 2);
    CHECK(outer && strcmp(zg_module_buffer_name(outer, 5), "1.5.num_batches_tracked") == 0);
    CHECK(strcmp(zg_module_buffer_name(zg_module_child(outer, 1), 5), "5.num_batches_tracked") == 0);
    zg_module_free(outer);
}

TEST(state_dict_file_names_and_order) {
    zg_module *net = bn_net();
    char *dir = zgt_temp_dir();
    CHECK(net && dir);
    if (!net || !dir) return;
    char path[256];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    CHECK_OK(zg_module_save(net, path));
    zg_safetensors *st = zg_safetensors_read(path);
    CHECK_PTR(st);
    if (st) {
        /* state_dict() keys of the same model in PyTorch. */
        const char *keys[13] = {"0.weight",      "1.weight",       "1.bias",
                                "1.running_mean", "1.running_var",  "1.num_batches_tracked",
                                "4.weight",      "4.bias",         "5.weight",
                                "5.bias",        "5.running_mean", "5.running_var",
                                "5.num_batches_tracked"};
        CHECK(zg_safetensors_count(st) == 13);
        for (int i = 0; i < 13; i++) CHECK_PTR(zg_safetensors_get(st, keys[i]));
        zg_tensor *nbt = zg_safetensors_get(st, "5.num_batches_tracked");
        CHECK(nbt && zg_tensor_dtype(nbt) == ZG_INT64 && zg_tensor_ndim(nbt) == 0);
        zg_safetensors_free(st);
    }
    zg_module_free(net);
    zgt_remove_dir(dir);
}

/* ------------------------------------------------------------------ */
/* Running statistics, train / eval                                    */
/* ------------------------------------------------------------------ */

TEST(batch_norm_running_stats_over_training_steps) {
    const int64_t C = 3, N = 4, HW = 5;
    const float momentum = 0.25f, eps = 1e-5f;
    zg_module *bn = zg_nn_batch_norm2d(C, eps, momentum);
    CHECK_PTR(bn);
    if (!bn) return;
    double rm[3] = {0, 0, 0}, rv[3] = {1, 1, 1};
    for (int step = 0; step < 3; step++) {
        int64_t shape[4] = {N, C, 1, HW};
        zg_tensor *x = zg_normal(shape, 4, (float)step, 1.0f + (float)step);
        zg_tensor *y = zg_module_forward(bn, x);
        CHECK_PTR(y);
        /* The same statistics by hand, in double. */
        for (int64_t c = 0; c < C; c++) {
            double s = 0, q = 0;
            const int64_t M = N * HW;
            for (int64_t n = 0; n < N; n++)
                for (int64_t j = 0; j < HW; j++) s += zg_tensor_get(x, (n * C + c) * HW + j);
            double mu = s / M;
            for (int64_t n = 0; n < N; n++)
                for (int64_t j = 0; j < HW; j++) {
                    double d = zg_tensor_get(x, (n * C + c) * HW + j) - mu;
                    q += d * d;
                }
            rm[c] = (1 - momentum) * rm[c] + momentum * mu;
            rv[c] = (1 - momentum) * rv[c] + momentum * q / (M - 1);
            /* Training output: normalised by the batch's biased variance. */
            double is = 1 / sqrt(q / M + eps);
            if (y) CHECK_NEAR(zg_tensor_get(y, c * HW + 2), (zg_tensor_get(x, c * HW + 2) - mu) * is, 1e-5);
        }
        zg_tensor_free(x);
        zg_arena_reset();
    }
    for (int64_t c = 0; c < C; c++) {
        CHECK_NEAR(zg_tensor_get(zg_module_buffer(bn, 0), c), rm[c], 1e-5);
        CHECK_NEAR(zg_tensor_get(zg_module_buffer(bn, 1), c), rv[c], 1e-5);
    }
    CHECK(zg_tensor_data_i64(zg_module_buffer(bn, 2))[0] == 3);

    /* Eval: running statistics, no update, no count. */
    zg_module_train(bn, false);
    CHECK(!zg_module_is_training(bn));
    int64_t shape[4] = {2, C, 2, 2};
    zg_tensor *x = zg_normal(shape, 4, 1.0f, 2.0f);
    uint64_t v_rm = zg_tensor_version(zg_module_buffer(bn, 0));
    zg_tensor *y = zg_module_forward(bn, x);
    CHECK_PTR(y);
    for (int64_t i = 0; y && i < zg_tensor_numel(x); i++) {
        int64_t c = (i / 4) % C;
        CHECK_NEAR(zg_tensor_get(y, i), (zg_tensor_get(x, i) - rm[c]) / sqrt(rv[c] + eps), 1e-5);
    }
    CHECK(zg_tensor_version(zg_module_buffer(bn, 0)) == v_rm);
    CHECK(zg_tensor_data_i64(zg_module_buffer(bn, 2))[0] == 3);
    for (int64_t c = 0; c < C; c++) CHECK_NEAR(zg_tensor_get(zg_module_buffer(bn, 0), c), rm[c], 1e-5);
    /* Eval with one sample is fine; training with one value per channel is not. */
    int64_t one[2] = {1, C};
    zg_tensor *x1 = zg_ones(one, 2);
    zg_module *bn1 = zg_nn_batch_norm1d(C, 1e-5f, 0.1f);
    zg_module_train(bn1, false);
    CHECK_PTR(zg_module_forward(bn1, x1));
    zg_module_train(bn1, true);
    CHECK_NULL_ERR(zg_module_forward(bn1, x1), "Expected more than 1 value per channel when training");
    CHECK(zg_tensor_data_i64(zg_module_buffer(bn1, 2))[0] == 0);
    zg_tensor_free(x1);
    zg_module_free(bn1);
    zg_tensor_free(x);
    zg_module_free(bn);
}

TEST(batch_norm_module_momentum_none) {
    /* BatchNorm2d(C, momentum=None): after k training batches the running
     * statistics are the mean of the k batches' means and unbiased
     * variances; the counter is saved, and a module loaded from the file
     * carries on with the same average. */
    const int64_t C = 2, N = 3, HW = 4;
    zg_module *bn = zg_nn_batch_norm2d(C, 1e-5f, ZG_BN_MOMENTUM_NONE), *b2 = NULL;
    char *dir = zgt_temp_dir();
    CHECK(bn && dir);
    if (!bn || !dir) return;
    CHECK_NULL_ERR(zg_module_forward(bn, NULL), "BatchNorm2d(2, eps=1e-05, momentum=None): input is NULL");
    double sum_m[2] = {0, 0}, sum_v[2] = {0, 0};
    char path[256];
    snprintf(path, sizeof path, "%s/bn.safetensors", dir);
    for (int step = 0; step < 4; step++) {
        int64_t shape[4] = {N, C, 2, 2};
        zg_tensor *x = zg_normal(shape, 4, (float)step, 1.0f + (float)step);
        CHECK_PTR(zg_module_forward(bn, x));
        if (b2) CHECK_PTR(zg_module_forward(b2, x));
        for (int64_t c = 0; c < C; c++) {
            double s = 0, q = 0;
            for (int64_t n = 0; n < N; n++)
                for (int64_t j = 0; j < HW; j++) s += zg_tensor_get(x, (n * C + c) * HW + j);
            const double mu = s / (N * HW);
            for (int64_t n = 0; n < N; n++)
                for (int64_t j = 0; j < HW; j++) q += pow(zg_tensor_get(x, (n * C + c) * HW + j) - mu, 2);
            sum_m[c] += mu;
            sum_v[c] += q / (N * HW - 1);
            CHECK_NEAR(zg_tensor_get(zg_module_buffer(bn, 0), c), sum_m[c] / (step + 1), 1e-5);
            CHECK_NEAR(zg_tensor_get(zg_module_buffer(bn, 1), c), sum_v[c] / (step + 1), 1e-4);
        }
        CHECK(zg_tensor_data_i64(zg_module_buffer(bn, 2))[0] == step + 1);
        if (step == 1) {
            CHECK_OK(zg_module_save(bn, path));
            b2 = zg_nn_batch_norm2d(C, 1e-5f, ZG_BN_MOMENTUM_NONE);
            CHECK(b2 && zg_module_load(b2, path) == 0 && zg_tensor_data_i64(zg_module_buffer(b2, 2))[0] == 2);
        }
        zg_tensor_free(x);
        zg_arena_reset();
    }
    for (int i = 0; b2 && i < 2; i++) CHECK(same_values(zg_module_buffer(bn, i), zg_module_buffer(b2, i)));
    CHECK(b2 && zg_tensor_data_i64(zg_module_buffer(b2, 2))[0] == 4);
    CHECK_NULL_ERR(zg_nn_batch_norm1d(3, 1e-5f, -0.5f), "zg_nn_batch_norm1d: momentum -0.5 must lie in [0, 1] (or be "
                                                       "ZG_BN_MOMENTUM_NONE)");
    zg_module *b1 = zg_nn_batch_norm1d(3, 1e-3f, ZG_BN_MOMENTUM_NONE);
    CHECK_NULL_ERR(zg_module_forward(b1, NULL), "BatchNorm1d(3, eps=0.001, momentum=None)");
    zg_module_free(b1);
    zgt_remove_dir(dir);
    zg_module_free(bn);
    zg_module_free(b2);
}

TEST(batch_norm_in_a_trained_network) {
    /* A few SGD steps through Conv - BN2d - ReLU - Linear - BN1d: the
     * loss falls, the counters count, the affine parameters move. */
    zg_module *net = bn_net();
    CHECK_PTR(net);
    if (!net) return;
    zg_tensor *params[16];
    int np = zg_module_params(net, params, 16);
    zg_optim_config cfg = zg_optim_defaults(ZG_SGD);
    cfg.lr = 0.1;
    zg_optim *opt = zg_optim_new(ZG_SGD, params, np, &cfg);
    CHECK_PTR(opt);
    int64_t xs[4] = {8, 2, 4, 4}, ts[2] = {8, 5};
    zg_tensor *x = zg_randn(xs, 4), *t = zg_randn(ts, 2);
    double first = 0, last = 0;
    for (int step = 0; step < 6 && opt; step++) {
        zg_optim_zero_grad(opt, true);
        zg_tensor *loss = zg_mse_loss(zg_module_forward(net, x), t, ZG_REDUCTION_MEAN);
        CHECK_PTR(loss);
        if (!loss) break;
        if (step == 0) first = zg_tensor_item(loss);
        last = zg_tensor_item(loss);
        CHECK_OK(zg_backward(loss, NULL));
        CHECK_OK(zg_optim_step(opt));
        zg_arena_reset();
    }
    CHECK(last < first);
    CHECK(zg_tensor_data_i64(zg_module_buffer(net, 2))[0] == 6);
    CHECK(zg_tensor_data_i64(zg_module_buffer(net, 5))[0] == 6);
    zg_tensor *g = zg_tensor_grad(zg_module_param_by_name(net, "1.weight"));
    CHECK(g && fabs(zg_tensor_get(g, 0)) > 0);
    /* Eval output differs from training output (running vs batch stats)
     * and is deterministic. */
    zg_module_train(net, false);
    zg_tensor *e1 = zg_tensor_clone(zg_module_forward(net, x));
    zg_tensor *e2 = zg_module_forward(net, x);
    CHECK(same_values(e1, e2));
    zg_module_train(net, true);
    zg_no_grad_enter();
    zg_tensor *tr = zg_module_forward(net, x);
    zg_no_grad_exit();
    CHECK(!same_values(e1, tr));
    zg_tensor_free(e1);
    zg_tensor_free(x);
    zg_tensor_free(t);
    zg_optim_free(opt);
    zg_module_free(net);
}

/* ------------------------------------------------------------------ */
/* Save / load                                                         */
/* ------------------------------------------------------------------ */

TEST(save_load_round_trip_with_buffers) {
    zg_module *a = bn_net();
    char *dir = zgt_temp_dir();
    CHECK(a && dir);
    if (!a || !dir) return;
    /* Move the running statistics and counters away from their init. */
    int64_t xs[4] = {6, 2, 4, 4};
    zg_tensor *x = zg_randn(xs, 4);
    for (int i = 0; i < 3; i++) {
        CHECK_PTR(zg_module_forward(a, x));
        zg_arena_reset();
    }
    char path[256];
    snprintf(path, sizeof path, "%s/a.safetensors", dir);
    CHECK_OK(zg_module_save(a, path));

    zg_manual_seed(99);
    zg_module *b = bn_net();
    CHECK_PTR(b);
    uint64_t v = zg_tensor_version(zg_module_buffer(b, 0));
    CHECK_OK(zg_module_load(b, path));
    CHECK(zg_tensor_version(zg_module_buffer(b, 0)) > v);
    for (int i = 0; i < zg_module_num_params(a); i++) CHECK(same_values(zg_module_param(a, i), zg_module_param(b, i)));
    for (int i = 0; i < 6; i++) {
        zg_tensor *ba = zg_module_buffer(a, i), *bb = zg_module_buffer(b, i);
        if (zg_tensor_dtype(ba) == ZG_INT64)
            CHECK(zg_tensor_data_i64(bb)[0] == 3 && zg_tensor_data_i64(ba)[0] == 3);
        else
            CHECK(same_values(ba, bb));
    }
    /* Same eval outputs. */
    zg_module_train(a, false);
    zg_module_train(b, false);
    CHECK(same_values(zg_module_forward(a, x), zg_module_forward(b, x)));

    /* A file whose buffer has the wrong shape: refused, nothing written. */
    zg_tensor *ts[13];
    const char *names[13];
    int n = 0;
    for (int i = 0; i < zg_module_num_params(a); i++) {
        ts[n] = zg_module_param(a, i);
        names[n++] = zg_module_param_name(a, i);
    }
    for (int i = 0; i < 6; i++) {
        ts[n] = zg_module_buffer(a, i);
        names[n++] = zg_module_buffer_name(a, i);
    }
    int64_t four = 4;
    zg_tensor *wrong = zg_zeros(&four, 1);
    ts[7] = wrong; /* "1.running_mean" has 3 channels */
    CHECK(strcmp(names[7], "1.running_mean") == 0);
    char bad[256];
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    CHECK_OK(zg_safetensors_write(bad, ts, names, n, NULL, NULL, 0));
    zg_module *c = bn_net();
    zg_tensor *before = zg_tensor_clone(zg_module_param(c, 0));
    CHECK_ERR(zg_module_load(c, bad), "'1.running_mean' has shape [4] in the file, the buffer has [3]");
    CHECK(same_values(zg_module_param(c, 0), before));
    /* A float counter where int64 belongs. */
    ts[7] = zg_module_buffer(a, 0);
    zg_tensor *fcount = zg_scalar(3.0f);
    ts[12] = fcount;
    CHECK(strcmp(names[12], "5.num_batches_tracked") == 0);
    CHECK_OK(zg_safetensors_write(bad, ts, names, n, NULL, NULL, 0));
    CHECK_ERR(zg_module_load(c, bad), "'5.num_batches_tracked' is float32 in the file, the buffer is int64");
    /* A file without buffers (weights only). */
    snprintf(bad, sizeof bad, "%s/nobuf.safetensors", dir);
    CHECK_OK(zg_safetensors_write(bad, ts, names, 7, NULL, NULL, 0));
    CHECK_ERR(zg_module_load(c, bad), "missing buffer '1.running_mean'");
    CHECK(same_values(zg_module_param(c, 0), before));
    /* A plain MLP file into a network with buffers, and the reverse. */
    zg_module *plain = zg_nn_sequential((zg_module *[]){zg_nn_linear(3, 2, true)}, 1);
    snprintf(bad, sizeof bad, "%s/plain.safetensors", dir);
    CHECK_OK(zg_module_save(plain, bad));
    CHECK_ERR(zg_module_load(c, bad), "'0.weight' has shape [2,3] in the file, the parameter has [3,2,3,3]; "
                                      "missing parameter '1.weight'; missing parameter '1.bias'; missing buffer "
                                      "'1.running_mean'");
    CHECK_ERR(zg_module_load(c, bad), "unexpected tensor '0.bias'");
    CHECK_ERR(zg_module_load(plain, path), "unexpected tensor '1.running_mean'");

    zg_tensor_free(before);
    zg_tensor_free(wrong);
    zg_tensor_free(fcount);
    zg_tensor_free(x);
    zg_module_free(plain);
    zg_module_free(a);
    zg_module_free(b);
    zg_module_free(c);
    zgt_remove_dir(dir);
}

/* ------------------------------------------------------------------ */
/* Modules: forward equals the op, errors                              */
/* ------------------------------------------------------------------ */

TEST(pool_modules_forward_and_stride_default) {
    int64_t xs[4] = {2, 3, 7, 6};
    zg_tensor *x = zg_randn(xs, 4);
    zg_module *mp = zg_nn_max_pool2d(3, 0, 1), *ap = zg_nn_avg_pool2d(2, 1, 1);
    CHECK(mp && ap);
    if (!mp || !ap) return;
    CHECK(strcmp(zg_module_type(mp), "MaxPool2d") == 0 && strcmp(zg_module_type(ap), "AvgPool2d") == 0);
    CHECK(zg_module_num_params(mp) == 0 && zg_module_num_buffers(mp) == 0);
    zg_tensor *y = zg_module_forward(mp, x);
    /* Stride 0 means the kernel: (7 + 2 - 3)/3 + 1 = 3, (6 + 2 - 3)/3 + 1 = 2. */
    CHECK(y && zg_tensor_size(y, 2) == 3 && zg_tensor_size(y, 3) == 2);
    CHECK(same_values(y, zg_max_pool2d(x, (int[]){3, 3}, (int[]){3, 3}, (int[]){1, 1})));
    zg_tensor *z = zg_module_forward(ap, x);
    CHECK(z && zg_tensor_size(z, 2) == 8 && zg_tensor_size(z, 3) == 7);
    CHECK(same_values(z, zg_avg_pool2d(x, (int[]){2, 2}, (int[]){1, 1}, (int[]){1, 1})));
    CHECK_NULL_ERR(zg_nn_max_pool2d(0, 0, 0), "zg_nn_max_pool2d: kernel 0");
    CHECK_NULL_ERR(zg_nn_max_pool2d(2, -1, 0), "stride -1");
    CHECK_NULL_ERR(zg_nn_avg_pool2d(2, 1, 2), "zg_nn_avg_pool2d: padding 2 must lie in [0, kernel/2]");
    zg_module_free(mp);
    zg_module_free(ap);
    zg_tensor_free(x);
}

TEST(conv_module_forward_and_errors) {
    zg_module *m = zg_nn_conv2d(4, 6, 3, 2, 1, 1, 2, true);
    CHECK_PTR(m);
    if (!m) return;
    int64_t xs[4] = {2, 4, 9, 9};
    zg_tensor *x = zg_randn(xs, 4);
    zg_tensor *y = zg_module_forward(m, x);
    CHECK(y && zg_tensor_size(y, 1) == 6 && zg_tensor_size(y, 2) == 5 && zg_tensor_size(y, 3) == 5);
    CHECK(same_values(y, zg_conv2d(x, zg_module_param(m, 0), zg_module_param(m, 1), (int[]){2, 2}, (int[]){1, 1},
                                   (int[]){1, 1}, 2)));
    /* Wrong input channels: named with the module and its place. */
    zg_module *seq = zg_nn_sequential((zg_module *[]){zg_nn_relu(), m}, 2);
    int64_t bs[4] = {2, 3, 9, 9};
    zg_tensor *bad = zg_randn(bs, 4);
    CHECK_NULL_ERR(zg_module_forward(seq, bad),
                   "Conv2d(4, 6, kernel_size=3, stride=2, padding=1, dilation=1, groups=2, bias=true) at '1': "
                   "zg_conv2d: weight of shape [6,2,3,3] with groups 2 expects 4 input channels, x of shape "
                   "[2,3,9,9] has 3");
    CHECK_NULL_ERR(zg_nn_conv2d(0, 2, 3, 1, 0, 1, 1, true), "zg_nn_conv2d: channels must be positive");
    CHECK_NULL_ERR(zg_nn_conv2d(3, 4, 3, 1, 0, 1, 2, true), "divisible by groups 2");
    CHECK_NULL_ERR(zg_nn_conv2d(2, 4, 3, 0, 0, 1, 1, true), "stride 0");
    CHECK_NULL_ERR(zg_nn_conv2d(2, 4, 3, 1, -1, 1, 1, true), "padding -1");
    CHECK_NULL_ERR(zg_nn_conv2d(2, 4, 0, 1, 0, 1, 1, true), "kernel 0");
    CHECK_NULL_ERR(zg_nn_batch_norm2d(0, 1e-5f, 0.1f), "zg_nn_batch_norm2d: num_features 0");
    CHECK_NULL_ERR(zg_nn_batch_norm1d(3, -1.0f, 0.1f), "eps");
    CHECK_NULL_ERR(zg_nn_batch_norm1d(3, 1e-5f, 1.5f), "momentum 1.5");
    /* BatchNorm2d wants 4-D, BatchNorm1d 2-D or 3-D. */
    zg_module *bn2 = zg_nn_batch_norm2d(3, 1e-5f, 0.1f), *bn1 = zg_nn_batch_norm1d(3, 1e-5f, 0.1f);
    int64_t s3[3] = {2, 3, 4};
    zg_tensor *x3 = zg_randn(s3, 3);
    CHECK_NULL_ERR(zg_module_forward(bn2, x3), "BatchNorm2d(3, eps=1e-05, momentum=0.1): expected 4-D input, got x of "
                                               "shape [2,3,4]");
    CHECK_PTR(zg_module_forward(bn1, x3));
    CHECK_NULL_ERR(zg_module_forward(bn1, bad), "expected 2-D or 3-D input");
    zg_module_free(bn1);
    zg_module_free(bn2);
    zg_tensor_free(x3);
    zg_tensor_free(bad);
    zg_tensor_free(x);
    zg_module_free(seq);
}

/* ------------------------------------------------------------------ */
/* PyTorch parity                                                      */
/* ------------------------------------------------------------------ */

#define SCRIPT "tests/parity/conv_reference.py"
#define WRITER "tests/parity/torch_reference.py"
#define TOL 1e-5

static const char *const ref_files[] = {"conv_ops", "conv_cnn"};
static const char *const ref_sources[] = {SCRIPT, WRITER};
/* Made when missing or older than the script or the writer it imports. */
static zgt_refset refs = {ref_sources, 2, ref_files, 2, NULL, 0};

/* Makes sure the reference files exist and are newer than the script and
 * the writer it imports (running it once per process if not); fails the
 * running case with what to do otherwise, never a silent pass. */
static double worst_err;

/* |ours - ref| / |ref| <= TOL, shapes equal. */
static void compare(const char *what, const zg_tensor *ours, const zg_tensor *ref) {
    CHECK_REF(what, ours, ref, TOL, &worst_err);
}

/* A persistent copy of a reference tensor, requiring grad if asked. */
static zg_tensor *leaf(const zg_tensor *ref, bool grad) {
    if (!ref) return NULL;
    zg_tensor *t = zg_tensor_clone(ref);
    if (t && grad) zg_tensor_set_requires_grad(t, true);
    return t;
}

static void run_op_case(const zg_safetensors *st, const char *c) {
    const char *spec = zg_safetensors_metadata(st, c);
    if (!spec) {
        zgt_fail(__FILE__, __LINE__, "%s: no spec in the metadata", c);
        return;
    }
    char op[32] = "";
    sscanf(spec, "%31s", op);
    zg_tensor *x = leaf(zgt_ref_find(st, "%s.x", c), true);
    zg_tensor *w = leaf(zgt_ref_find(st, "%s.w", c), true);
    zg_tensor *b = leaf(zgt_ref_find(st, "%s.b", c), true);
    zg_tensor *rm = leaf(zgt_ref_find(st, "%s.rm", c), false), *rv = leaf(zgt_ref_find(st, "%s.rv", c), false);
    zg_tensor *y = NULL;
    int a[8];
    float mom, eps;
    if (!strcmp(op, "conv2d") &&
        sscanf(spec, "%*s %d %d %d %d %d %d %d %d", &a[0], &a[1], &a[2], &a[3], &a[4], &a[5], &a[6], &a[7]) == 8) {
        CHECK(a[7] == (b != NULL));
        y = zg_conv2d(x, w, b, a, a + 2, a + 4, a[6]);
    } else if ((!strcmp(op, "max_pool2d") || !strcmp(op, "avg_pool2d")) &&
               sscanf(spec, "%*s %d %d %d %d %d %d", &a[0], &a[1], &a[2], &a[3], &a[4], &a[5]) == 6) {
        y = op[0] == 'm' ? zg_max_pool2d(x, a, a + 2, a + 4) : zg_avg_pool2d(x, a, a + 2, a + 4);
    } else if (!strcmp(op, "batch_norm") && sscanf(spec, "%*s %d %f %f %d", &a[0], &mom, &eps, &a[1]) == 4) {
        CHECK(a[1] == (w != NULL));
        y = zg_batch_norm(x, rm, rv, w, b, a[0] != 0, mom, eps);
    } else {
        zgt_fail(__FILE__, __LINE__, "%s: cannot parse spec \"%s\"", c, spec);
    }
    char what[128];
    snprintf(what, sizeof what, "%s y", c);
    compare(what, y, zgt_ref_find(st, "%s.y", c));
    if (y) {
        CHECK_OK(zg_backward(y, &(zg_backward_opts){.grad = zgt_ref_find(st, "%s.gy", c)}));
        snprintf(what, sizeof what, "%s gx", c);
        compare(what, zg_tensor_grad(x), zgt_ref_find(st, "%s.gx", c));
        if (w) {
            snprintf(what, sizeof what, "%s gw", c);
            compare(what, zg_tensor_grad(w), zgt_ref_find(st, "%s.gw", c));
        }
        if (b) {
            snprintf(what, sizeof what, "%s gb", c);
            compare(what, zg_tensor_grad(b), zgt_ref_find(st, "%s.gb", c));
        }
        if (rm) {
            snprintf(what, sizeof what, "%s running_mean", c);
            compare(what, rm, zgt_ref_find(st, "%s.rm_after", c));
            snprintf(what, sizeof what, "%s running_var", c);
            compare(what, rv, zgt_ref_find(st, "%s.rv_after", c));
        }
    }
    zg_tensor_free(x);
    zg_tensor_free(w);
    zg_tensor_free(b);
    zg_tensor_free(rm);
    zg_tensor_free(rv);
    zg_arena_reset();
}

/* ------------------------------------------------------------------ */
/* Fused Conv2d + MaxPool2d(2) (+ ReLU) in a Sequential                */
/* ------------------------------------------------------------------ */

static bool same_bits_tensor(const zg_tensor *a, const zg_tensor *b) {
    if (!a || !b || zg_tensor_numel(a) != zg_tensor_numel(b) || zg_tensor_ndim(a) != zg_tensor_ndim(b)) return false;
    for (int d = 0; d < zg_tensor_ndim(a); d++)
        if (zg_tensor_size(a, d) != zg_tensor_size(b, d)) return false;
    return memcmp(zg_tensor_data((zg_tensor *)a), zg_tensor_data((zg_tensor *)b),
                  (size_t)zg_tensor_numel(a) * sizeof(float)) == 0;
}

/* Runs the children of seq one by one (no fusion) on x. */
static zg_tensor *forward_unfused(zg_module *seq, zg_tensor *x) {
    for (int i = 0; i < zg_module_num_children(seq) && x; i++) x = zg_module_forward(zg_module_child(seq, i), x);
    return x;
}

/* seq's output through Sequential (fused) and module by module: the same
 * bits in the output, every parameter's grad and x's grad. */
static void check_fused_same(const char *what, zg_module *seq, const int64_t *xshape, bool x_grad,
                             const char *fused_name) {
    zg_manual_seed(11);
    zg_tensor *x = zg_randn(xshape, 4);
    /* Ties and negative windows (relu's zeros) on purpose. */
    for (int64_t i = 0; i < zg_tensor_numel(x); i += 7) zg_tensor_data(x)[i] = 0.5f;
    zg_tensor_set_requires_grad(x, x_grad);
    const int np = zg_module_num_params(seq);
    zg_tensor *grads[2][8] = {{0}}, *xg[2] = {0}, *out[2] = {0};
    for (int pass = 0; pass < 2; pass++) {
        zg_module_zero_grad(seq, true);
        zg_tensor_zero_grad(x, true);
        zg_tensor *y = pass == 0 ? zg_module_forward(seq, x) : forward_unfused(seq, x);
        CHECK_PTR(y);
        if (!y) break;
        if (pass == 0 && fused_name && (!zg_tensor_grad_fn_name(y) || strcmp(zg_tensor_grad_fn_name(y), fused_name)))
            zgt_fail(__FILE__, __LINE__, "%s: output made by %s, expected %s", what,
                     zg_tensor_grad_fn_name(y) ? zg_tensor_grad_fn_name(y) : "(none)", fused_name);
        out[pass] = zg_tensor_clone(y);
        zg_manual_seed(12);
        zg_tensor *w = zg_randn(zg_tensor_shape(y), zg_tensor_ndim(y));
        CHECK_OK(zg_backward(zg_sum(zg_mul(y, w)), NULL));
        zg_tensor_free(w);
        for (int i = 0; i < np && i < 8; i++) grads[pass][i] = zg_tensor_clone(zg_tensor_grad(zg_module_param(seq, i)));
        if (x_grad) xg[pass] = zg_tensor_clone(zg_tensor_grad(x));
        zg_arena_reset();
    }
    if (!same_bits_tensor(out[0], out[1])) zgt_fail(__FILE__, __LINE__, "%s: outputs differ", what);
    for (int i = 0; i < np && i < 8; i++)
        if (!same_bits_tensor(grads[0][i], grads[1][i]))
            zgt_fail(__FILE__, __LINE__, "%s: grad of %s differs", what, zg_module_param_name(seq, i));
    if (x_grad && !same_bits_tensor(xg[0], xg[1])) zgt_fail(__FILE__, __LINE__, "%s: grad of x differs", what);
    for (int p = 0; p < 2; p++) {
        zg_tensor_free(out[p]);
        zg_tensor_free(xg[p]);
        for (int i = 0; i < 8; i++) zg_tensor_free(grads[p][i]);
    }
    zg_tensor_free(x);
}

TEST(sequential_fuses_conv_pool_relu_with_the_same_bits) {
    const struct {
        const char *what;
        int cin, cout, k, stride, pad, groups;
        bool bias, relu, x_grad;
        int64_t x[4];
        const char *fused; /* the output's grad_fn; NULL: not fused */
    } cases[] = {
        {"default CNN's first layer, batch 3 (serial)", 1, 32, 3, 1, 1, 1, true, true, false, {3, 1, 28, 28},
         "conv2d_max_pool2d_relu"},
        {"second layer, batch 16 (threads), x's grad", 32, 64, 3, 1, 1, 1, true, true, true, {16, 32, 14, 14},
         "conv2d_max_pool2d_relu"},
        {"odd conv output 9x7 (last row and column unpooled)", 3, 4, 3, 1, 0, 1, true, true, true, {5, 3, 11, 9},
         "conv2d_max_pool2d_relu"},
        {"stride 2, groups 2, no bias", 4, 6, 3, 2, 1, 2, false, true, true, {6, 4, 13, 12},
         "conv2d_max_pool2d_relu"},
        {"no relu after the pool", 2, 5, 3, 1, 1, 1, true, false, true, {4, 2, 10, 10}, "conv2d_max_pool2d"},
        {"conv output 1x1: not fused", 2, 3, 3, 1, 0, 1, true, true, true, {2, 2, 3, 3}, NULL},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        zg_manual_seed(3);
        zg_module *l[4] = {zg_nn_conv2d(cases[c].cin, cases[c].cout, cases[c].k, cases[c].stride, cases[c].pad, 1,
                                        cases[c].groups, cases[c].bias),
                           zg_nn_max_pool2d(2, 0, 0), cases[c].relu ? zg_nn_relu() : zg_nn_flatten(), zg_nn_tanh()};
        zg_module *seq = zg_nn_sequential(l, 4);
        CHECK_PTR(seq);
        if (!seq) continue;
        if (cases[c].fused) {
            check_fused_same(cases[c].what, seq, cases[c].x, cases[c].x_grad, NULL);
            /* The fused op's own output, before the tanh. */
            zg_module *head[3] = {zg_nn_conv2d(cases[c].cin, cases[c].cout, cases[c].k, cases[c].stride,
                                               cases[c].pad, 1, cases[c].groups, cases[c].bias),
                                  zg_nn_max_pool2d(2, 0, 0), cases[c].relu ? zg_nn_relu() : NULL};
            zg_module *hs = zg_nn_sequential(head, cases[c].relu ? 3 : 2);
            CHECK_PTR(hs);
            if (hs) check_fused_same(cases[c].what, hs, cases[c].x, cases[c].x_grad, cases[c].fused);
            zg_module_free(hs);
        } else {
            /* The 1x1 conv output is too small for the pool: the error
             * names the pooling module, as without fusion. */
            zg_tensor *x = zg_randn(cases[c].x, 4);
            CHECK_NULL_ERR(zg_module_forward(seq, x), "MaxPool2d");
            zg_tensor_free(x);
        }
        zg_module_free(seq);
    }
    /* Under no_grad and under autocast the results are the unfused ones too. */
    zg_module *l[3] = {zg_nn_conv2d(2, 4, 3, 1, 1, 1, 1, true), zg_nn_max_pool2d(2, 0, 0), zg_nn_relu()};
    zg_module *seq = zg_nn_sequential(l, 3);
    int64_t xs[4] = {3, 2, 8, 8};
    zg_tensor *x = zg_randn(xs, 4);
    zg_no_grad_enter();
    zg_tensor *a = zg_tensor_clone(zg_module_forward(seq, x)), *b = zg_tensor_clone(forward_unfused(seq, x));
    zg_no_grad_exit();
    CHECK(same_bits_tensor(a, b));
    zg_tensor_free(a);
    zg_tensor_free(b);
    zg_tensor_free(x);
    zg_module_free(seq);
    zg_arena_reset();
}

/* Under bf16 autocast the fused op rounds the conv output to bf16 before
 * pooling it, as the unfused conv2d does: the same bits, forward and
 * backward, here and at the default CNN's second conv (whose products the
 * convolution packs itself on AVX512-BF16 CPUs). */
TEST(sequential_fuses_conv_pool_relu_under_bf16_autocast) {
    const int64_t small[4] = {3, 2, 8, 8}, cnn[4] = {2, 32, 14, 14};
    for (int c = 0; c < 2; c++) {
        zg_manual_seed(3);
        zg_module *l[3] = {c ? zg_nn_conv2d(32, 64, 3, 1, 1, 1, 1, true) : zg_nn_conv2d(2, 4, 3, 1, 1, 1, 1, true),
                           zg_nn_max_pool2d(2, 0, 0), zg_nn_relu()};
        zg_module *seq = zg_nn_sequential(l, 3);
        CHECK_PTR(seq);
        CHECK_OK(zg_autocast_enter(ZG_AUTOCAST_BF16));
        if (seq) check_fused_same(c ? "bf16, CNN conv2" : "bf16", seq, c ? cnn : small, true,
                                  "conv2d_max_pool2d_relu_bf16");
        zg_autocast_exit();
        zg_module_free(seq);
    }
}

TEST(parity_conv_pool_batch_norm_ops) {
    zg_safetensors *st = zgt_refs_open(&refs, "conv_ops");
    if (!st) return;
    worst_err = 0;
    int n = zgt_ref_cases(st, run_op_case);
    /* Every family and option the script covers. */
    CHECK(n >= 18);
    printf("parity conv ops: %d cases, worst relative error %.3g\n", n, worst_err);
    zg_safetensors_free(st);
}

/* BatchNorm with momentum None (tests/parity/options_reference.py): the
 * module over several training steps, then eval; the same steps through
 * zg_batch_norm_tracked with tensors of its own. */
static const char *const bn_ref_files[] = {"options_bn"};
static const char *const bn_ref_sources[] = {"tests/parity/options_reference.py", WRITER};
static zgt_refset bn_refs = {bn_ref_sources, 2, bn_ref_files, 1, NULL, 0};

/* One step of case c: x, gy from the reference; y, the gradients and the
 * buffers compared. */
static void bn_parity_step(const zg_safetensors *st, const char *c, int s, zg_module *m, zg_tensor *const op[5],
                           float mom, float eps) {
    zg_tensor *x = leaf(zgt_ref_get(st, "%s.x.%d", c, s), true), *xo = leaf(zgt_ref_get(st, "%s.x.%d", c, s), true);
    zg_module_zero_grad(m, true);
    zg_tensor_zero_grad(op[3], true);
    zg_tensor_zero_grad(op[4], true);
    zg_tensor *y = zg_module_forward(m, x);
    zg_tensor *yo = zg_batch_norm_tracked(xo, op[0], op[1], op[2], op[3], op[4], true, mom, eps);
    const zg_tensor *gy = zgt_ref_get(st, "%s.gy.%d", c, s);
    if (y && yo) {
        CHECK_OK(zg_backward(y, &(zg_backward_opts){.grad = gy}));
        CHECK_OK(zg_backward(yo, &(zg_backward_opts){.grad = gy}));
    }
    const char *names[] = {"y", "gx", "gw", "gb", "rm", "rv"};
    const zg_tensor *ours[2][6] = {
        {y, zg_tensor_grad(x), zg_tensor_grad(zg_module_param(m, 0)), zg_tensor_grad(zg_module_param(m, 1)),
         zg_module_buffer(m, 0), zg_module_buffer(m, 1)},
        {yo, zg_tensor_grad(xo), zg_tensor_grad(op[3]), zg_tensor_grad(op[4]), op[0], op[1]}};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 6; i++) {
            char what[128];
            snprintf(what, sizeof what, "%s step %d %s (%s)", c, s, names[i], k ? "op" : "module");
            compare(what, ours[k][i], zgt_ref_get(st, "%s.%s.%d", c, names[i], s));
        }
    const zg_tensor *nbt = zgt_ref_get(st, "%s.nbt.%d", c, s);
    CHECK(nbt && zg_tensor_data_i64((zg_tensor *)nbt)[0] == zg_tensor_data_i64(zg_module_buffer(m, 2))[0]);
    CHECK(nbt && zg_tensor_data_i64((zg_tensor *)nbt)[0] == zg_tensor_data_i64(op[2])[0]);
    zg_tensor_free(x);
    zg_tensor_free(xo);
    zg_arena_reset();
}

static void run_bn_case(const zg_safetensors *st, const char *c) {
    const char *spec = zg_safetensors_metadata(st, c);
    int variant = 0, steps = 0;
    long long nbt0 = 0;
    char mom_s[32] = "";
    float eps = 0;
    if (!spec || sscanf(spec, "bn %d %31s %f %d %lld", &variant, mom_s, &eps, &steps, &nbt0) != 5) {
        zgt_fail(__FILE__, __LINE__, "%s: cannot parse spec \"%s\"", c, spec ? spec : "");
        return;
    }
    const float mom = strcmp(mom_s, "None") ? strtof(mom_s, NULL) : ZG_BN_MOMENTUM_NONE;
    const zg_tensor *w = zgt_ref_get(st, "%s.w", c);
    const int64_t C = w ? zg_tensor_size(w, 0) : 1;
    zg_module *m = variant == 2 ? zg_nn_batch_norm2d(C, eps, mom) : zg_nn_batch_norm1d(C, eps, mom);
    zg_tensor *op[5] = {leaf(zgt_ref_get(st, "%s.rm0", c), false), leaf(zgt_ref_get(st, "%s.rv0", c), false),
                        zg_tensor_new(ZG_INT64, NULL, 0), leaf(w, true), leaf(zgt_ref_get(st, "%s.b", c), true)};
    CHECK(m && op[0] && op[1] && op[2] && op[3] && op[4]);
    if (m && op[0] && op[1] && op[2] && op[3] && op[4]) {
        zg_no_grad_enter();
        CHECK_OK(zg_tensor_copy_(zg_module_param(m, 0), op[3]));
        CHECK_OK(zg_tensor_copy_(zg_module_param(m, 1), op[4]));
        CHECK_OK(zg_tensor_copy_(zg_module_buffer(m, 0), op[0]));
        CHECK_OK(zg_tensor_copy_(zg_module_buffer(m, 1), op[1]));
        zg_no_grad_exit();
        zg_tensor_data_i64(zg_module_buffer(m, 2))[0] = nbt0;
        zg_tensor_data_i64(op[2])[0] = nbt0;
        for (int s = 0; s < steps; s++) bn_parity_step(st, c, s, m, op, mom, eps);
        zg_module_train(m, false);
        char what[128];
        snprintf(what, sizeof what, "%s eval y", c);
        compare(what, zg_module_forward(m, zgt_ref_get(st, "%s.xe", c)), zgt_ref_get(st, "%s.ye", c));
    }
    for (int i = 0; i < 5; i++) zg_tensor_free(op[i]);
    zg_module_free(m);
    zg_arena_reset();
}

TEST(parity_batch_norm_momentum_none) {
    zg_safetensors *st = zgt_refs_open(&bn_refs, "options_bn");
    if (!st) return;
    worst_err = 0;
    int n = zgt_ref_cases(st, run_bn_case);
    CHECK(n >= 5);
    printf("parity batch norm momentum None (torch %s): %d cases, worst relative error %.3g\n",
           zg_safetensors_metadata(st, "torch"), n, worst_err);
    zg_safetensors_free(st);
}

TEST(parity_default_cnn_adam_training) {
    zg_safetensors *st = zgt_refs_open(&refs, "conv_cnn");
    if (!st) return;
    const char *loop = zg_safetensors_metadata(st, "loop"), *steps_s = zg_safetensors_metadata(st, "steps");
    CHECK(loop && !strcmp(loop, "zero_grad(set_to_none) forward cross_entropy backward step"));
    CHECK(steps_s && !strcmp(zg_safetensors_metadata(st, "optim"), "adam lr=1e-3"));
    const int steps = steps_s ? atoi(steps_s) : 0;
    /* `zgrad train`'s model: its ReLUs come after the pooling (PyTorch's
     * reference has them before: the same values and gradients), so its
     * Sequential runs conv, pool and relu as one fused op. */
    zg_module *model = zg_model_default_cnn();
    CHECK_PTR(model);
    if (!model || steps <= 0) {
        zg_module_free(model);
        zg_safetensors_free(st);
        return;
    }
    /* Identical initial weights. */
    const int np = zg_module_num_params(model);
    CHECK(np == 8);
    zg_no_grad_enter();
    for (int i = 0; i < np; i++)
        CHECK_OK(zg_tensor_copy_(zg_module_param(model, i), zgt_ref_find(st, "init.%s", zg_module_param_name(model, i))));
    zg_no_grad_exit();
    zg_tensor *params[8];
    zg_module_params(model, params, 8);
    zg_optim_config cfg = zg_optim_defaults(ZG_ADAM);
    cfg.lr = 1e-3;
    zg_optim *opt = zg_optim_new(ZG_ADAM, params, np, &cfg);
    CHECK_PTR(opt);
    float losses[64];
    worst_err = 0;
    for (int s = 0; s < steps && s < 64 && opt; s++) {
        zg_optim_zero_grad(opt, true);
        zg_tensor *out = zg_module_forward(model, zgt_ref_find(st, "data.x.%d", s));
        zg_tensor *loss = zg_cross_entropy(out, zgt_ref_find(st, "data.y.%d", s), NULL);
        CHECK_PTR(loss);
        if (!loss) break;
        losses[s] = zg_tensor_item(loss);
        CHECK_OK(zg_backward(loss, NULL));
        for (int i = 0; i < np; i++) {
            char what[96];
            snprintf(what, sizeof what, "step %d grad %s", s, zg_module_param_name(model, i));
            compare(what, zg_tensor_grad(params[i]), zgt_ref_find(st, "grad.%d.%s", s, zg_module_param_name(model, i)));
        }
        CHECK_OK(zg_optim_step(opt));
        zg_arena_reset();
    }
    int64_t ns = steps;
    zg_tensor *lt = zg_tensor_from_data(ZG_FLOAT32, losses, &ns, 1);
    compare("losses", lt, zg_safetensors_get(st, "loss"));
    for (int i = 0; i < np; i++) {
        char what[96];
        snprintf(what, sizeof what, "final %s", zg_module_param_name(model, i));
        compare(what, params[i], zgt_ref_find(st, "final.%s", zg_module_param_name(model, i)));
    }
    printf("parity default CNN: %d Adam steps, worst relative error %.3g\n", steps, worst_err);
    zg_tensor_free(lt);
    zg_optim_free(opt);
    zg_module_free(model);
    zg_safetensors_free(st);
}
