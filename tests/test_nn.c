/* nn modules: parameter registry (names, order, lookup), PyTorch's Linear
 * init, reproducible seeding, train/eval, zero_grad, save/load through
 * safetensors, forward equal to the ops composed by hand, and errors. */
#include "harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Sequential(Linear(in, hidden), ReLU, Linear(hidden, out)). */
static zg_module *mlp(int64_t in, int64_t hidden, int64_t out) {
    zg_module *layers[3] = {zg_nn_linear(in, hidden, true), zg_nn_relu(), zg_nn_linear(hidden, out, true)};
    return zg_nn_sequential(layers, 3);
}

static bool same_values(const zg_tensor *a, const zg_tensor *b) {
    if (!a || !b || zg_tensor_numel(a) != zg_tensor_numel(b)) return false;
    for (int64_t i = 0; i < zg_tensor_numel(a); i++)
        if (zg_tensor_get(a, i) != zg_tensor_get(b, i)) return false;
    return true;
}


TEST(nn_parameter_names_and_order) {
    zg_module *m = mlp(4, 3, 2);
    CHECK_PTR(m);
    if (!m) return;
    CHECK(strcmp(zg_module_type(m), "Sequential") == 0);
    CHECK(zg_module_num_children(m) == 3);
    CHECK(strcmp(zg_module_type(zg_module_child(m, 0)), "Linear") == 0);
    CHECK(strcmp(zg_module_type(zg_module_child(m, 1)), "ReLU") == 0);
    CHECK(strcmp(zg_module_type(zg_module_child(m, 2)), "Linear") == 0);
    CHECK_NULL_ERR(zg_module_child(m, 3), "out of range");
    CHECK(zg_module_num_params(m) == 4);
    const char *names[4] = {"0.weight", "0.bias", "2.weight", "2.bias"};
    const int64_t shapes[4][2] = {{3, 4}, {3, 0}, {2, 3}, {2, 0}};
    for (int i = 0; i < 4; i++) {
        zg_tensor *p = zg_module_param(m, i);
        CHECK(strcmp(zg_module_param_name(m, i), names[i]) == 0);
        CHECK(strcmp(zg_tensor_name(p), names[i]) == 0);
        CHECK(zg_tensor_requires_grad(p) && zg_tensor_is_leaf(p) && zg_tensor_is_persistent(p));
        CHECK(zg_tensor_ndim(p) == (shapes[i][1] ? 2 : 1));
        CHECK(zg_tensor_size(p, 0) == shapes[i][0]);
        if (shapes[i][1]) CHECK(zg_tensor_size(p, 1) == shapes[i][1]);
        CHECK(zg_module_param_by_name(m, names[i]) == p);
    }
    CHECK(zg_module_num_elements(m) == 12 + 3 + 6 + 2);
    CHECK_NULL_ERR(zg_module_param(m, 4), "index 4 out of range");
    CHECK_NULL_ERR(zg_module_param(m, -1), "out of range");
    CHECK_NULL_ERR(zg_module_param_by_name(m, "1.weight"), "no parameter '1.weight'");

    /* zg_module_params fills up to max and returns the total. */
    zg_tensor *out[4] = {NULL, NULL, NULL, NULL};
    CHECK(zg_module_params(m, out, 2) == 4);
    CHECK(out[0] == zg_module_param(m, 0) && out[1] == zg_module_param(m, 1) && out[2] == NULL);
    CHECK(zg_module_params(m, NULL, 0) == 4);

    /* Names relative to a child, as PyTorch's child.named_parameters(). */
    zg_module *l2 = zg_module_child(m, 2);
    CHECK(zg_module_num_params(l2) == 2);
    CHECK(strcmp(zg_module_param_name(l2, 0), "weight") == 0);
    CHECK(zg_module_param_by_name(l2, "bias") == zg_module_param(m, 3));
    CHECK(zg_module_num_params(zg_module_child(m, 1)) == 0);
    /* A child belongs to its container: freeing it alone is refused. */
    zg_clear_error();
    zg_module_free(l2);
    CHECK(strstr(zg_last_error(), "belongs to a Sequential") != NULL);
    CHECK(zg_module_num_params(m) == 4);
    zg_module_free(m);

    /* Nesting: Sequential(Linear, Sequential(Tanh, Linear(no bias))). */
    zg_module *inner_l[2] = {zg_nn_tanh(), zg_nn_linear(3, 2, false)};
    zg_module *outer_l[2] = {zg_nn_linear(5, 3, true), zg_nn_sequential(inner_l, 2)};
    zg_module *n = zg_nn_sequential(outer_l, 2);
    CHECK_PTR(n);
    CHECK(zg_module_num_params(n) == 3);
    CHECK(strcmp(zg_module_param_name(n, 2), "1.1.weight") == 0);
    CHECK(strcmp(zg_tensor_name(zg_module_param(n, 2)), "1.1.weight") == 0);
    zg_module *inner = zg_module_child(n, 1);
    CHECK(strcmp(zg_module_param_name(inner, 0), "1.weight") == 0);
    CHECK(strcmp(zg_module_param_name(zg_module_child(inner, 1), 0), "weight") == 0);
    CHECK(zg_module_num_elements(n) == 15 + 3 + 6);
    zg_module_free(n);
}

TEST(nn_linear_init_bounds) {
    zg_manual_seed(1234);
    zg_module *l = zg_nn_linear(100, 60, true);
    CHECK_PTR(l);
    if (!l) return;
    zg_tensor *w = zg_module_param_by_name(l, "weight"), *b = zg_module_param_by_name(l, "bias");
    CHECK(zg_tensor_size(w, 0) == 60 && zg_tensor_size(w, 1) == 100 && zg_tensor_size(b, 0) == 60);
    const double bound = 0.1; /* 1/sqrt(in) */
    /* Uniform(-bound, bound): inside the bounds, mean 0, variance
     * bound^2/3, each quarter of the range about a quarter of the values. */
    double sum = 0, sq = 0, mx = 0;
    int64_t bins[4] = {0, 0, 0, 0}, n = zg_tensor_numel(w);
    for (int64_t i = 0; i < n; i++) {
        double v = zg_tensor_get(w, i);
        CHECK(v >= -bound && v < bound);
        sum += v;
        sq += v * v;
        mx = fmax(mx, fabs(v));
        int k = (int)floor((v + bound) / (2 * bound) * 4);
        bins[k < 0 ? 0 : k > 3 ? 3 : k]++;
    }
    CHECK_NEAR(sum / n, 0.0, 0.004);
    CHECK_NEAR(sq / n, bound * bound / 3, 0.06 * bound * bound / 3);
    CHECK(mx > 0.099);
    for (int k = 0; k < 4; k++) CHECK_NEAR((double)bins[k] / n, 0.25, 0.03);
    for (int64_t i = 0; i < zg_tensor_numel(b); i++) {
        double v = zg_tensor_get(b, i);
        CHECK(v >= -bound && v < bound);
    }
    zg_module_free(l);

    /* The bias bound follows in_features too (PyTorch: 1/sqrt(fan_in)). */
    zg_module *l2 = zg_nn_linear(4, 2000, true);
    zg_tensor *b2 = zg_module_param(l2, 1);
    double bmax = 0;
    for (int64_t i = 0; i < 2000; i++) bmax = fmax(bmax, fabs(zg_tensor_get(b2, i)));
    CHECK(bmax <= 0.5 && bmax > 0.49);
    zg_module_free(l2);

    zg_module *nb = zg_nn_linear(3, 2, false);
    CHECK(zg_module_num_params(nb) == 1 && strcmp(zg_module_param_name(nb, 0), "weight") == 0);
    zg_module_free(nb);
}

TEST(nn_linear_seed_reproducible) {
    /* The first values after zg_manual_seed are fixed, drawn weight first
     * then bias, exactly as zg_uniform draws them. */
    zg_manual_seed(42);
    zg_module *a = zg_nn_linear(3, 2, true);
    zg_manual_seed(42);
    float bound = (float)(1.0 / sqrt(3.0));
    int64_t ws[2] = {2, 3}, bs[1] = {2};
    zg_tensor *w = zg_uniform(ws, 2, -bound, bound);
    zg_tensor *b = zg_uniform(bs, 1, -bound, bound);
    CHECK(same_values(zg_module_param(a, 0), w));
    CHECK(same_values(zg_module_param(a, 1), b));
    zg_manual_seed(42);
    zg_module *c = zg_nn_linear(3, 2, true);
    CHECK(same_values(zg_module_param(c, 0), zg_module_param(a, 0)));
    zg_manual_seed(43);
    zg_module *d = zg_nn_linear(3, 2, true);
    CHECK(!same_values(zg_module_param(d, 0), zg_module_param(a, 0)));
    /* Whole models: the same seed gives the same model. */
    zg_manual_seed(7);
    zg_module *m1 = mlp(5, 4, 3);
    zg_manual_seed(7);
    zg_module *m2 = mlp(5, 4, 3);
    for (int i = 0; i < 4; i++) CHECK(same_values(zg_module_param(m1, i), zg_module_param(m2, i)));
    zg_tensor_free(w);
    zg_tensor_free(b);
    zg_module_free(a);
    zg_module_free(c);
    zg_module_free(d);
    zg_module_free(m1);
    zg_module_free(m2);
}

TEST(nn_train_eval) {
    zg_module *inner_l[1] = {zg_nn_dropout(0.5f)};
    zg_module *layers[3] = {zg_nn_linear(4, 4, true), zg_nn_dropout(0.5f), zg_nn_sequential(inner_l, 1)};
    zg_module *m = zg_nn_sequential(layers, 3);
    CHECK_PTR(m);
    zg_module *drop = zg_module_child(m, 1), *inner = zg_module_child(m, 2);
    zg_module *inner_drop = zg_module_child(inner, 0);
    CHECK(zg_module_is_training(m) && zg_module_is_training(drop) && zg_module_is_training(inner_drop));
    zg_module_train(m, false);
    CHECK(!zg_module_is_training(m) && !zg_module_is_training(drop) && !zg_module_is_training(inner));
    CHECK(!zg_module_is_training(inner_drop));
    zg_module_train(inner, true);
    CHECK(zg_module_is_training(inner_drop) && !zg_module_is_training(m));
    zg_module_train(m, true);

    /* Dropout follows the flag: identity in eval, zeros and 1/(1-p) in train. */
    zg_module *d = zg_nn_dropout(0.5f);
    int64_t s[1] = {2000};
    zg_tensor *x = zg_full(s, 1, 3.0f);
    zg_module_train(d, false);
    zg_tensor *y = zg_module_forward(d, x);
    CHECK(same_values(y, x));
    zg_module_train(d, true);
    y = zg_module_forward(d, x);
    CHECK_PTR(y);
    int zeros = 0, scaled = 0;
    for (int64_t i = 0; y && i < 2000; i++) {
        float v = zg_tensor_get(y, i);
        zeros += v == 0.0f;
        scaled += v == 6.0f;
    }
    CHECK(zeros + scaled == 2000);
    CHECK(zeros > 850 && zeros < 1150);
    zg_tensor_free(x);
    zg_module_free(d);
    zg_module_free(m);
}

TEST(nn_zero_grad) {
    zg_manual_seed(3);
    zg_module *m = mlp(4, 3, 2);
    int64_t xs[2] = {5, 4};
    zg_tensor *x = zg_randn(xs, 2);
    CHECK_OK(zg_backward(zg_sum(zg_module_forward(m, x)), NULL));
    zg_tensor *g[4];
    for (int i = 0; i < 4; i++) {
        g[i] = zg_tensor_grad(zg_module_param(m, i));
        CHECK(g[i] != NULL);
    }
    /* The bias of the last layer gets N = 5 (d sum / d b = batch size). */
    const float five[2] = {5, 5};
    CHECK_VALUES(g[3], five, 2, 1e-6);

    zg_module_zero_grad(m, false);
    for (int i = 0; i < 4; i++) {
        zg_tensor *gi = zg_tensor_grad(zg_module_param(m, i));
        CHECK(gi == g[i]); /* the same object, zero-filled */
        for (int64_t k = 0; gi && k < zg_tensor_numel(gi); k++) CHECK(zg_tensor_get(gi, k) == 0.0f);
    }
    zg_arena_reset();
    CHECK_OK(zg_backward(zg_sum(zg_module_forward(m, x)), NULL));
    CHECK_VALUES(zg_tensor_grad(zg_module_param(m, 3)), five, 2, 1e-6);
    zg_module_zero_grad(m, true);
    for (int i = 0; i < 4; i++) CHECK(zg_tensor_grad(zg_module_param(m, i)) == NULL);
    /* Zeroing a child touches only its parameters. */
    zg_arena_reset();
    CHECK_OK(zg_backward(zg_sum(zg_module_forward(m, x)), NULL));
    zg_module_zero_grad(zg_module_child(m, 2), true);
    CHECK(zg_tensor_grad(zg_module_param(m, 0)) != NULL && zg_tensor_grad(zg_module_param(m, 2)) == NULL);
    zg_tensor_free(x);
    zg_module_free(m);
}

TEST(nn_forward_matches_ops) {
    zg_manual_seed(11);
    zg_module *m = mlp(6, 5, 3);
    int64_t xs[2] = {7, 6};
    zg_tensor *x = zg_randn(xs, 2);
    zg_tensor *y = zg_module_forward(m, x);
    zg_tensor *h = zg_relu(zg_linear(x, zg_module_param(m, 0), zg_module_param(m, 1)));
    zg_tensor *ref = zg_linear(h, zg_module_param(m, 2), zg_module_param(m, 3));
    CHECK_PTR(y);
    CHECK(zg_tensor_ndim(y) == 2 && zg_tensor_size(y, 0) == 7 && zg_tensor_size(y, 1) == 3);
    CHECK_TENSOR_NEAR(y, ref, 0, 0);
    /* And by hand, one element: y[1][2]. */
    double acc2 = zg_tensor_get(zg_module_param(m, 3), 2);
    for (int j = 0; j < 5; j++) {
        double acc = zg_tensor_get(zg_module_param(m, 1), j);
        for (int k = 0; k < 6; k++) acc += zg_tensor_get(zg_module_param(m, 0), j * 6 + k) * zg_tensor_get(x, 6 + k);
        acc2 += (acc > 0 ? acc : 0) * zg_tensor_get(zg_module_param(m, 2), 2 * 5 + j);
    }
    CHECK_NEAR(zg_tensor_get(y, 1 * 3 + 2), acc2, 1e-5);
    CHECK(zg_tensor_grad_fn_name(y) != NULL);

    /* Each activation module equals its op. */
    int64_t s3[3] = {2, 3, 4};
    zg_tensor *a = zg_randn(s3, 3);
    struct {
        zg_module *mod;
        zg_tensor *want;
        const char *type;
    } cases[] = {
        {zg_nn_relu(), zg_relu(a), "ReLU"},
        {zg_nn_leaky_relu(0.2f), zg_leaky_relu(a, 0.2f), "LeakyReLU"},
        {zg_nn_gelu(false), zg_gelu(a, false), "GELU"},
        {zg_nn_gelu(true), zg_gelu(a, true), "GELU"},
        {zg_nn_tanh(), zg_tanh(a), "Tanh"},
        {zg_nn_sigmoid(), zg_sigmoid(a), "Sigmoid"},
        {zg_nn_flatten(), zg_flatten(a, 1), "Flatten"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        zg_tensor *out = zg_module_forward(cases[i].mod, a);
        CHECK(strcmp(zg_module_type(cases[i].mod), cases[i].type) == 0);
        CHECK(zg_module_num_params(cases[i].mod) == 0);
        CHECK_TENSOR_NEAR(out, cases[i].want, 0, 0);
        zg_module_free(cases[i].mod);
    }
    zg_module *fl = zg_nn_flatten();
    zg_tensor *f = zg_module_forward(fl, a);
    CHECK(f && zg_tensor_ndim(f) == 2 && zg_tensor_size(f, 0) == 2 && zg_tensor_size(f, 1) == 12);
    zg_module_free(fl);
    /* The GELU flag matters (tanh vs erf differ slightly). */
    zg_module *g1 = zg_nn_gelu(false), *g2 = zg_nn_gelu(true);
    CHECK(!same_values(zg_module_forward(g1, a), zg_module_forward(g2, a)));
    zg_module_free(g1);
    zg_module_free(g2);

    /* An empty Sequential is the identity. */
    zg_module *id = zg_nn_sequential(NULL, 0);
    CHECK_PTR(id);
    CHECK(zg_module_forward(id, a) == a);
    CHECK(zg_module_num_params(id) == 0 && zg_module_num_elements(id) == 0);
    zg_module_free(id);
    zg_tensor_free(a);
    zg_tensor_free(x);
    zg_module_free(m);
}

TEST(nn_save_load) {
    char *dir = zgt_temp_dir();
    CHECK(dir != NULL);
    if (!dir) return;
    char path[256], small[256], extra[256], missing[300];
    snprintf(path, sizeof path, "%s/mlp.safetensors", dir);
    snprintf(small, sizeof small, "%s/small.safetensors", dir);
    snprintf(extra, sizeof extra, "%s/extra.safetensors", dir);
    snprintf(missing, sizeof missing, "%s/none.safetensors", dir);

    zg_manual_seed(1);
    zg_module *a = mlp(4, 3, 2);
    CHECK_OK(zg_module_save(a, path));
    /* The file holds the parameters by name. */
    zg_safetensors *st = zg_safetensors_read(path);
    CHECK(st && zg_safetensors_count(st) == 4);
    for (int i = 0; st && i < 4; i++) {
        CHECK(strcmp(zg_safetensors_name(st, i), zg_module_param_name(a, i)) == 0);
        CHECK(same_values(zg_safetensors_get(st, zg_module_param_name(a, i)), zg_module_param(a, i)));
    }
    zg_safetensors_free(st);

    zg_manual_seed(2);
    zg_module *b = mlp(4, 3, 2);
    CHECK(!same_values(zg_module_param(a, 0), zg_module_param(b, 0)));
    uint64_t v0 = zg_tensor_version(zg_module_param(b, 0));
    CHECK_OK(zg_module_load(b, path));
    for (int i = 0; i < 4; i++) CHECK(same_values(zg_module_param(a, i), zg_module_param(b, i)));
    CHECK(zg_tensor_version(zg_module_param(b, 0)) > v0);
    CHECK(zg_tensor_requires_grad(zg_module_param(b, 0)));

    /* Errors leave every weight unchanged. */
    zg_manual_seed(3);
    zg_module *c = mlp(4, 3, 2);
    zg_tensor *before[4];
    for (int i = 0; i < 4; i++) before[i] = zg_tensor_clone(zg_module_param(c, i));
    zg_module *one_l[1] = {zg_nn_linear(4, 3, true)};
    zg_module *one = zg_nn_sequential(one_l, 1); /* only 0.weight, 0.bias */
    CHECK_OK(zg_module_save(one, small));
    CHECK_ERR(zg_module_load(c, small), "missing parameter '2.weight'; missing parameter '2.bias'");
    zg_module *wide = mlp(4, 5, 2); /* 0.weight [5,4]: shapes differ */
    CHECK_ERR(zg_module_load(wide, path), "'0.weight' has shape [3,4] in the file, the parameter has [5,4]");
    CHECK_ERR(zg_module_load(c, missing), "cannot open");
    /* A file with one tensor too many. */
    zg_tensor *ts[5];
    const char *names[5];
    for (int i = 0; i < 4; i++) {
        ts[i] = zg_module_param(a, i);
        names[i] = zg_module_param_name(a, i);
    }
    ts[4] = zg_scalar(1.0f);
    names[4] = "extra.thing";
    CHECK_OK(zg_safetensors_write(extra, ts, names, 5, NULL, NULL, 0));
    CHECK_ERR(zg_module_load(c, extra), "unexpected tensor 'extra.thing'");
    /* Partly fitting (the first layer would fit): still nothing written. */
    zg_module *one_c_l[1] = {zg_nn_linear(4, 3, true)};
    zg_module *one_c = zg_nn_sequential(one_c_l, 1);
    zg_tensor *one_before = zg_tensor_clone(zg_module_param(one_c, 0));
    CHECK_ERR(zg_module_load(one_c, path), "unexpected tensor '2.weight'");
    CHECK(same_values(zg_module_param(one_c, 0), one_before));
    for (int i = 0; i < 4; i++) CHECK(same_values(zg_module_param(c, i), before[i]));
    /* int64 where a float parameter is expected. */
    int64_t lab[2] = {1, 2}, ls[1] = {2};
    zg_tensor *ints = zg_tensor_from_data(ZG_INT64, lab, ls, 1);
    const char *bias_name[2] = {"bias", "weight"};
    zg_tensor *lin_ts[2] = {ints, zg_module_param(zg_module_child(a, 2), 0)};
    CHECK_OK(zg_safetensors_write(extra, lin_ts, bias_name, 2, NULL, NULL, 0));
    zg_module *lin = zg_nn_linear(3, 2, true);
    CHECK_ERR(zg_module_load(lin, extra), "'bias' is int64 in the file");

    /* A child saves with names relative to itself and loads into a
     * standalone module of the same shape. */
    CHECK_OK(zg_module_save(zg_module_child(a, 2), small));
    st = zg_safetensors_read(small);
    CHECK(st && zg_safetensors_get(st, "weight") && zg_safetensors_get(st, "bias"));
    zg_safetensors_free(st);
    CHECK_OK(zg_module_load(lin, small));
    CHECK(same_values(zg_module_param(lin, 0), zg_module_param(a, 2)));
    CHECK(same_values(zg_module_param(lin, 1), zg_module_param(a, 3)));
    CHECK_ERR(zg_module_save(a, "/nonexistent-dir/x.safetensors"), "zg_module_save: zg_safetensors_write");

    for (int i = 0; i < 4; i++) zg_tensor_free(before[i]);
    zg_tensor_free(one_before);
    zg_tensor_free(ts[4]);
    zg_tensor_free(ints);
    zg_module_free(a);
    zg_module_free(b);
    zg_module_free(c);
    zg_module_free(one);
    zg_module_free(one_c);
    zg_module_free(wide);
    zg_module_free(lin);
    zgt_remove_dir(dir);
}

TEST(nn_errors) {
    CHECK_NULL_ERR(zg_nn_linear(0, 3, true), "zg_nn_linear: sizes must be positive (in_features 0");
    CHECK_NULL_ERR(zg_nn_linear(3, -1, true), "out_features -1");
    CHECK_NULL_ERR(zg_nn_dropout(1.5f), "zg_nn_dropout: p 1.5");
    CHECK_NULL_ERR(zg_nn_dropout(-0.1f), "outside [0, 1]");
    CHECK_NULL_ERR(zg_nn_dropout(NAN), "outside [0, 1]");
    CHECK_NULL_ERR(zg_nn_leaky_relu(INFINITY), "not finite");

    zg_module *l = zg_nn_linear(4, 3, true);
    int64_t bad_s[2] = {2, 5};
    zg_tensor *bad = zg_zeros(bad_s, 2);
    CHECK_NULL_ERR(zg_module_forward(NULL, bad), "zg_module_forward: module is NULL");
    CHECK_NULL_ERR(zg_module_forward(l, NULL), "input is NULL");
    /* The op's error, with the module that called it. */
    CHECK_NULL_ERR(zg_module_forward(l, bad), "zg_module_forward: Linear(in_features=4, out_features=3, bias=true)");
    CHECK_NULL_ERR(zg_module_forward(l, bad), "zg_linear");
    zg_module *layers[3] = {l, zg_nn_relu(), zg_nn_linear(3, 2, false)};
    zg_module *m = zg_nn_sequential(layers, 3);
    int64_t ok_s[2] = {2, 4};
    zg_tensor *x = zg_zeros(ok_s, 2);
    CHECK_PTR(zg_module_forward(m, x));
    CHECK_NULL_ERR(zg_module_forward(m, bad), "Linear(in_features=4, out_features=3, bias=true) at '0': zg_linear");

    /* Sequential: a NULL entry frees the others (LeakSanitizer checks);
     * a module listed twice, or one owned elsewhere, is refused. */
    zg_module *with_null[3] = {zg_nn_linear(2, 2, true), NULL, zg_nn_tanh()};
    CHECK_NULL_ERR(zg_nn_sequential(with_null, 3), "zg_nn_sequential: module 1 is NULL");
    zg_module *r = zg_nn_relu();
    zg_module *twice[3] = {r, zg_nn_sigmoid(), r};
    CHECK_NULL_ERR(zg_nn_sequential(twice, 3), "module 2 is the same module as module 0");
    zg_module *owned[2] = {zg_nn_gelu(false), zg_module_child(m, 1)};
    CHECK_NULL_ERR(zg_nn_sequential(owned, 2), "module 1 already belongs to another container");
    CHECK(zg_module_num_children(m) == 3); /* m is intact */
    CHECK_PTR(zg_module_forward(m, x));
    CHECK_NULL_ERR(zg_nn_sequential(NULL, 2), "modules is NULL");
    CHECK_NULL_ERR(zg_nn_sequential(layers, -1), "negative");

    CHECK_ERR(zg_module_num_params(NULL), "module is NULL");
    CHECK_NULL_ERR(zg_module_param_by_name(m, NULL), "NULL");
    CHECK_ERR(zg_module_params(m, NULL, 3), "bad output array");
    CHECK_ERR(zg_module_save(NULL, "x"), "NULL");
    CHECK_ERR(zg_module_load(m, NULL), "NULL");
    zg_module_free(NULL);
    zg_module_train(NULL, true);
    zg_module_zero_grad(NULL, true);
    CHECK(zg_module_type(NULL) == NULL && !zg_module_is_training(NULL));
    zg_tensor_free(bad);
    zg_tensor_free(x);
    zg_module_free(m);
}
