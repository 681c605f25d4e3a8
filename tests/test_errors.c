/* Bad input to the public entry points that the per-layer tests do not
 * already cover: NULL handles, out-of-range indices, wrong call order.
 * Each returns an error (NULL / negative status, NAN for float results)
 * and zg_last_error() names the function; void calls are no-ops on NULL. */
#include "harness.h"

#include <stdlib.h>

TEST(tensor_queries_on_null) {
    CHECK_ERR(zg_tensor_ndim(NULL), "zg_tensor_ndim: tensor is NULL");
    CHECK_ERR((int)zg_tensor_numel(NULL), "zg_tensor_numel: tensor is NULL");
    CHECK_ERR((int)zg_tensor_size(NULL, 0), "zg_tensor_size: tensor is NULL");
    CHECK_NULL_ERR(zg_tensor_shape(NULL), "zg_tensor_shape");
    CHECK_NULL_ERR(zg_tensor_data_i64(NULL), "zg_tensor_data_i64");
    zg_clear_error();
    CHECK(isnan(zg_tensor_item(NULL)) && strstr(zg_last_error(), "zg_tensor_item"));
    CHECK(isnan(zg_tensor_get(NULL, 0)) && strstr(zg_last_error(), "zg_tensor_get"));
    CHECK(!zg_tensor_requires_grad(NULL) && !zg_tensor_is_leaf(NULL) && !zg_tensor_is_persistent(NULL));
    CHECK(zg_tensor_grad(NULL) == NULL && zg_tensor_grad_fn_name(NULL) == NULL);
    CHECK(!strcmp(zg_tensor_name(NULL), ""));
    CHECK(zg_tensor_version(NULL) == 0);
    /* No-ops, as free(NULL). */
    zg_tensor_zero_grad(NULL, true);
    zg_tensor_clear_hooks(NULL);
    zg_tensor_free(NULL);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    zg_tensor_print(NULL, f);
    fclose(f);
    CHECK(strstr(buf, "NULL") != NULL);
    free(buf);
}

TEST(autograd_entry_points_on_null) {
    CHECK_ERR(zg_tensor_set_requires_grad(NULL, true), "zg_tensor_set_requires_grad: tensor is NULL");
    CHECK_ERR(zg_tensor_set_grad(NULL, NULL), "zg_tensor_set_grad: tensor is NULL");
    CHECK_ERR(zg_tensor_retain_grad(NULL), "zg_tensor_retain_grad");
    CHECK_ERR(zg_tensor_register_hook(NULL, NULL, NULL), "zg_tensor_register_hook");
    CHECK_ERR(zg_tensor_register_post_accumulate_hook(NULL, NULL, NULL), "zg_tensor_register_post_accumulate_hook");
    CHECK_NULL_ERR(zg_detach(NULL), "zg_detach");
    int64_t s[1] = {2};
    zg_tensor *x = zg_ones(s, 1);
    zg_tensor_set_requires_grad(x, true);
    zg_tensor *y = zg_sum(zg_mul(x, x));
    zg_tensor *g[1];
    CHECK_ERR(zg_autograd_grad(NULL, NULL, 1, &x, 1, g, false, false), "zg_autograd_grad: no outputs");
    CHECK_ERR(zg_autograd_grad(&y, NULL, 1, NULL, 0, g, false, false), "zg_autograd_grad: no inputs");
    CHECK_ERR(zg_autograd_grad(&y, NULL, 1, &x, 1, NULL, false, false), "grads is NULL");
    CHECK_ERR(zg_backward(y, &(zg_backward_opts){.n_inputs = 1}), "zg_backward: inputs is NULL");
    zg_tensor *null_in[1] = {NULL};
    CHECK_ERR(zg_backward(y, &(zg_backward_opts){.inputs = null_in, .n_inputs = 1}), "input 0 is NULL");
    int64_t s1[1] = {1};
    zg_tensor *c = zg_ones(s1, 1);
    zg_tensor *c_in[1] = {c};
    CHECK_ERR(zg_backward(y, &(zg_backward_opts){.inputs = c_in, .n_inputs = 1}), "does not require grad");
    /* Nothing was accumulated by the failed calls. */
    CHECK(zg_tensor_grad(x) == NULL);
    zg_tensor_free(x);
    zg_tensor_free(c);
}

TEST(module_entry_points_on_null) {
    CHECK_NULL_ERR(zg_module_forward(NULL, NULL), "zg_module_forward");
    CHECK_ERR(zg_module_num_params(NULL), "zg_module_num_params: module is NULL");
    CHECK_NULL_ERR(zg_module_param(NULL, 0), "zg_module_param");
    CHECK_NULL_ERR(zg_module_param_name(NULL, 0), "zg_module_param");
    CHECK_NULL_ERR(zg_module_param_by_name(NULL, "w"), "zg_module_param_by_name");
    CHECK_ERR(zg_module_params(NULL, NULL, 0), "zg_module_params");
    CHECK_ERR((int)zg_module_num_elements(NULL), "zg_module_num_elements");
    CHECK_NULL_ERR(zg_module_child(NULL, 0), "zg_module_child");
    CHECK_ERR(zg_module_num_children(NULL), "zg_module_num_children");
    CHECK(zg_module_type(NULL) == NULL && !zg_module_is_training(NULL));
    CHECK_ERR(zg_module_save(NULL, "/tmp/x"), "zg_module_save");
    CHECK_ERR(zg_module_load(NULL, "/tmp/x"), "zg_module_load");
    zg_module_train(NULL, true);
    zg_module_zero_grad(NULL, true);
    zg_module_free(NULL);

    zg_module *m = zg_nn_linear(3, 2, true);
    CHECK_PTR(m);
    CHECK_NULL_ERR(zg_module_forward(m, NULL), "zg_module_forward");
    CHECK_NULL_ERR(zg_module_param(m, 2), "index 2 out of range");
    CHECK_NULL_ERR(zg_module_param_by_name(m, "nope"), "no parameter 'nope'");
    CHECK_NULL_ERR(zg_module_child(m, 0), "out of range");
    CHECK_ERR(zg_module_params(m, NULL, 4), "bad output array");
    CHECK_ERR(zg_module_save(m, NULL), "zg_module_save");
    CHECK_ERR(zg_module_load(m, "/nonexistent/dir/w.safetensors"), "cannot open");
    CHECK_NULL_ERR(zg_nn_linear(0, 2, true), "zg_nn_linear");
    CHECK_NULL_ERR(zg_nn_linear(3, -1, true), "zg_nn_linear");
    CHECK_NULL_ERR(zg_nn_dropout(1.5f), "zg_nn_dropout");
    zg_module *with_null[2] = {zg_nn_relu(), NULL};
    CHECK_NULL_ERR(zg_nn_sequential(with_null, 2), "zg_nn_sequential");
    zg_module_free(m);
}

TEST(optimizer_entry_points_on_null) {
    CHECK_NULL_ERR(zg_optim_new(ZG_SGD, NULL, 0, NULL), "zg_optim_new");
    CHECK_NULL_ERR(zg_optim_new_groups(ZG_SGD, NULL, 0, NULL), "zg_optim_new_groups");
    CHECK_ERR(zg_optim_step(NULL), "zg_optim_step");
    CHECK_ERR(zg_optim_add_param_group(NULL, NULL), "zg_optim_add_param_group");
    CHECK_ERR(zg_optim_num_groups(NULL), "zg_optim_num_groups");
    CHECK_ERR(zg_optim_group_size(NULL, 0), "zg_optim_group_size");
    CHECK_NULL_ERR(zg_optim_group_param(NULL, 0, 0), "zg_optim_group_param");
    zg_clear_error();
    CHECK(isnan(zg_optim_get_hparam(NULL, 0, ZG_HP_LR)) && strstr(zg_last_error(), "zg_optim_get_hparam"));
    CHECK_ERR(zg_optim_set_hparam(NULL, 0, ZG_HP_LR, 0.1), "zg_optim_set_hparam");
    CHECK_ERR((int)zg_optim_state_step(NULL, 0), "zg_optim_state_step");
    CHECK_NULL_ERR(zg_optim_state_buffer(NULL, 0, "exp_avg"), "zg_optim_state_buffer");
    CHECK_ERR(zg_optim_save(NULL, "/tmp/x"), "zg_optim_save");
    CHECK_ERR(zg_optim_load(NULL, "/tmp/x"), "zg_optim_load");
    zg_clear_error();
    zg_optim_get_kind(NULL);
    CHECK(strstr(zg_last_error(), "zg_optim_get_kind") != NULL);
    zg_optim_zero_grad(NULL, true);
    zg_optim_free(NULL);

    int64_t s[1] = {2};
    zg_tensor *p = zg_ones(s, 1);
    zg_tensor_set_requires_grad(p, true);
    zg_optim *opt = zg_optim_new(ZG_ADAM, &p, 1, NULL);
    CHECK_PTR(opt);
    CHECK_ERR(zg_optim_group_size(opt, 1), "group 1 out of range");
    CHECK_NULL_ERR(zg_optim_group_param(opt, 0, 1), "index 1 out of range");
    CHECK_ERR(zg_optim_set_hparam(opt, 0, ZG_HP_LR, -1.0), "zg_optim_set_hparam");
    CHECK_ERR(zg_optim_set_hparam(opt, 0, ZG_HP_MOMENTUM, 0.9), "not a hyperparameter of");
    CHECK_ERR(zg_optim_set_hparam(opt, 0, (zg_hparam)99, 0.9), "unknown hyperparameter");
    CHECK_ERR((int)zg_optim_state_step(opt, 5), "out of range");
    CHECK_NULL_ERR(zg_optim_state_buffer(opt, 0, "momentum_buffer"), "no state buffer");
    CHECK_ERR(zg_optim_save(opt, "/nonexistent/dir/o.safetensors"), "zg_optim_save");
    CHECK_ERR(zg_optim_load(opt, "/nonexistent/dir/o.safetensors"), "cannot open");
    zg_optim_free(opt);
    zg_tensor_free(p);
}

TEST(safetensors_entry_points_on_null) {
    CHECK_NULL_ERR(zg_safetensors_read(NULL), "zg_safetensors_read: path is NULL");
    CHECK_NULL_ERR(zg_safetensors_read("/nonexistent/file.safetensors"), "cannot open");
    CHECK_ERR(zg_safetensors_count(NULL), "zg_safetensors_count");
    CHECK_NULL_ERR(zg_safetensors_name(NULL, 0), "zg_safetensors_name");
    CHECK_NULL_ERR(zg_safetensors_get(NULL, "x"), "zg_safetensors_get");
    CHECK_NULL_ERR(zg_safetensors_metadata(NULL, "k"), "zg_safetensors_metadata");
    CHECK_ERR(zg_safetensors_write(NULL, NULL, NULL, 0, NULL, NULL, 0), "zg_safetensors_write");
    zg_safetensors_free(NULL);
}

TEST(errors_stay_until_cleared_and_are_per_call) {
    CHECK_NULL_ERR(zg_detach(NULL), "zg_detach");
    CHECK(zg_last_error()[0] != '\0');
    zg_clear_error();
    CHECK(!strcmp(zg_last_error(), ""));
    zg_set_error("custom %d", 42);
    CHECK(!strcmp(zg_last_error(), "custom 42"));
}
