/* Model files (src/nn/model_file.c): JSON that reads like nn.Sequential.
 * PyTorch builds the same files (tests/parity/model_file_reference.py):
 * the state_dict names and shapes agree exactly and the eval outputs to
 * 1e-5; the shape walk names the layer and the shapes of a mismatch; the
 * built-in models are models/cnn.json and models/mlp.json; the summary's
 * counts; `zgrad train --model-file`, its resume and `zgrad summary`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_runner.h"
#include "harness.h"

static const char *const ref_files[] = {"model_file"};
static const char *const ref_sources[] = {"tests/parity/model_file_reference.py", "tests/parity/torch_reference.py",
                                          "models/cnn.json", "models/mlp.json"};
static zgt_refset refs = {ref_sources, 4, ref_files, 1, NULL, 0};

static zg_model_spec *parse(const char *text) { return zg_model_spec_parse(text, strlen(text), "test"); }

/* The file of case c built here and given PyTorch's state_dict: the same
 * names (parameters and buffers, nothing left over) and shapes, and the
 * same eval-mode output. */
static void run_case(const zg_safetensors *st, const char *c) {
    char key[64];
    snprintf(key, sizeof key, "spec.%s", c);
    const char *text = zg_safetensors_metadata(st, key);
    zg_model_spec *spec = text ? parse(text) : NULL;
    CHECK_PTR(spec);
    zg_module *m = spec ? zg_model_spec_build(spec) : NULL;
    CHECK_PTR(m);
    if (!m) {
        zg_model_spec_free(spec);
        return;
    }
    char prefix[64];
    int n_ref = 0, n_ours = zg_module_num_params(m) + zg_module_num_buffers(m);
    snprintf(prefix, sizeof prefix, "%s.sd.", c);
    for (int i = 0; i < zg_safetensors_count(st); i++) n_ref += !strncmp(zg_safetensors_name(st, i), prefix, strlen(prefix));
    if (n_ref != n_ours) zgt_fail(__FILE__, __LINE__, "%s: PyTorch's state_dict has %d entries, ours %d", c, n_ref, n_ours);
    for (int i = 0; i < n_ours; i++) {
        const bool param = i < zg_module_num_params(m);
        const int k = param ? i : i - zg_module_num_params(m);
        zg_tensor *t = param ? zg_module_param(m, k) : zg_module_buffer(m, k);
        const char *name = param ? zg_module_param_name(m, k) : zg_module_buffer_name(m, k);
        zg_tensor *r = zgt_ref_get(st, "%s.sd.%s", c, name);
        if (!r) continue;
        CHECK(zg_tensor_dtype(r) == zg_tensor_dtype(t) && zg_tensor_numel(r) == zg_tensor_numel(t) &&
              zg_tensor_ndim(r) == zg_tensor_ndim(t));
        if (zg_tensor_numel(r) != zg_tensor_numel(t) || zg_tensor_dtype(r) != zg_tensor_dtype(t)) continue;
        if (zg_tensor_dtype(t) == ZG_INT64)
            memcpy(zg_tensor_data_i64(t), zg_tensor_data_i64(r), (size_t)zg_tensor_numel(t) * sizeof(int64_t));
        else
            memcpy(zg_tensor_data(t), zg_tensor_data(r), (size_t)zg_tensor_numel(t) * sizeof(float));
    }
    zg_module_train(m, false);
    zg_tensor *x = zgt_ref_get(st, "%s.x", c), *y = zgt_ref_get(st, "%s.y", c);
    zg_no_grad_enter();
    zg_tensor *out = x ? zg_module_forward(m, x) : NULL;
    zg_no_grad_exit();
    char what[64];
    snprintf(what, sizeof what, "%s eval output", c);
    CHECK_REF(what, out, y, 1e-5, NULL);
    zg_module_free(m);
    zg_model_spec_free(spec);
    zg_arena_reset();
}

TEST(parity_model_files_build_as_pytorch) {
    zg_safetensors *st = zgt_refs_open(&refs, "model_file");
    if (!st) return;
    CHECK(zgt_ref_cases(st, run_case) == 3);
    zg_safetensors_free(st);
}

/* The shape walk: every error names the layer, its type and the shapes. */
TEST(model_file_errors_name_the_layer) {
    CHECK_NULL_ERR(parse("{\"input\": [1, 28, 28], \"layers\": [{\"type\": \"Linear\", \"args\": [784, 10]}]}"),
                   "layer 0 (Linear): in_features is 784 but its input is [1, 28, 28] per sample (a Flatten before it?)");
    CHECK_NULL_ERR(parse("{\"input\": [784], \"layers\": [{\"type\": \"Conv2d\", \"args\": [1, 8, 3]}]}"),
                   "layer 0 (Conv2d): expects [1, H, W] per sample, gets [784]");
    CHECK_NULL_ERR(parse("{\"input\": [1, 4, 4], \"layers\": [{\"type\": \"Flatten\"}, {\"type\": \"Linear\", "
                         "\"in_features\": 16, \"out_features\": 2}, {\"type\": \"BatchNorm1d\", \"args\": [3]}]}"),
                   "layer 2 (BatchNorm1d): expects [3] or [num_features, L] per sample, gets [2]");
    CHECK_NULL_ERR(parse("{\"input\": [1, 4, 4], \"layers\": [{\"type\": \"MaxPool2d\", \"kernel_size\": 5}]}"),
                   "layer 0 (MaxPool2d): the window does not fit in the input [1, 4, 4]");
    CHECK_NULL_ERR(parse("{\"input\": [4], \"layers\": [{\"type\": \"Linear\", \"in_features\": 4}]}"),
                   "layer 0 (Linear): 'out_features' is required");
    CHECK_NULL_ERR(parse("{\"input\": [4], \"layers\": [{\"type\": \"Linear\", \"in_feature\": 4}]}"),
                   "unknown argument 'in_feature' (Linear takes: in_features, out_features, bias)");
    CHECK_NULL_ERR(parse("{\"input\": [4], \"layers\": [{\"type\": \"Softmax\"}]}"), "layer 0: unknown type 'Softmax'");
    CHECK_NULL_ERR(parse("{\"input\": [4], \"layers\": [{\"type\": \"ReLU\", \"type\": \"Tanh\"}]}"),
                   "layer 0: the key 'type' appears twice");
    CHECK_NULL_ERR(parse("{\"input\": [4], \"layers\": [{\"type\": \"Linear\", \"args\": [4, 2.5]}]}"),
                   "argument 2 (out_features) must be an integer");
    CHECK_NULL_ERR(parse("{\"input\": [4], \"layers\": [{\"type\": \"GELU\", \"approximate\": \"fast\"}]}"),
                   "'approximate' must be \"none\" or \"tanh\"");
    CHECK_NULL_ERR(parse("{\"layers\": [{\"type\": \"ReLU\"}]}"), "\"input\" must be the shape of one sample");
    CHECK_NULL_ERR(parse("{\"input\": [4], \"layers\": []}"), "\"layers\" must be an array of 1 to 256 layers");
    CHECK_NULL_ERR(parse("{\"input\": [4], \"layers\": [{\"type\": \"ReLU\"}], \"name\": 1}"), "unknown key 'name'");
    CHECK_NULL_ERR(parse("{\"input\": [4], \"layers\": [{\"type\": \"ReLU\"}"), "not valid JSON");
    CHECK_NULL_ERR(zg_model_spec_load("/nonexistent/net.json"), "cannot open '/nonexistent/net.json'");
}

/* The built-in cnn and mlp are the files in models/: the same canonical
 * spec, and the builders give the weights the files give from one seed. */
TEST(model_file_builtins_are_the_files) {
    const char *files[2] = {"models/cnn.json", "models/mlp.json"};
    for (int i = 0; i < 2; i++) {
        zg_model_spec *s = zg_model_spec_load(files[i]);
        CHECK_PTR(s);
        if (!s) continue;
        zg_manual_seed(3);
        zg_module *a = zg_model_spec_build(s);
        zg_manual_seed(3);
        zg_module *b = i == 0 ? zg_model_default_cnn() : zg_model_mlp((const int64_t[]){784, 256, 128, 10}, 4);
        CHECK(a && b && zg_module_num_params(a) == zg_module_num_params(b));
        for (int k = 0; a && b && k < zg_module_num_params(a); k++) {
            CHECK(!strcmp(zg_module_param_name(a, k), zg_module_param_name(b, k)));
            CHECK(zg_tensor_numel(zg_module_param(a, k)) == zg_tensor_numel(zg_module_param(b, k)) &&
                  !memcmp(zg_tensor_data(zg_module_param(a, k)), zg_tensor_data(zg_module_param(b, k)),
                          (size_t)zg_tensor_numel(zg_module_param(a, k)) * 4));
        }
        zg_module_free(a);
        zg_module_free(b);
        zg_model_spec_free(s);
    }
}

/* The CNN's table: PyTorch's parameter counts, and FLOPs by hand. */
TEST(model_file_summary_counts) {
    zg_model_spec *s = zg_model_spec_load("models/cnn.json");
    CHECK_PTR(s);
    if (!s) return;
    char *t = zg_model_spec_summary(s);
    CHECK_PTR(t);
    /* conv1: 32*1*9 + 32 = 320 params, 2*32*28*28*9 = 451584 FLOPs;
     * conv2: 64*32*9 + 64 = 18496, 2*64*14*14*32*9 = 7225344;
     * fc1: 3136*128 + 128 = 401536; fc2: 1290; total 421642. */
    CHECK(t && strstr(t, "0 Conv2d") && strstr(t, "[32, 28, 28]") && strstr(t, "320") && strstr(t, "451584"));
    CHECK(t && strstr(t, "18496") && strstr(t, "7225344") && strstr(t, "401536") && strstr(t, "[10]"));
    CHECK(t && strstr(t, "Total params: 421642"));
    int64_t out[4];
    CHECK(zg_model_spec_shape(s, true, out, 4) == 1 && out[0] == 10);
    CHECK(zg_model_spec_shape(s, false, out, 4) == 3 && out[0] == 1 && out[1] == 28 && out[2] == 28);
    free(t);
    zg_model_spec_free(s);
    /* Positional and named arguments give one canonical text. */
    zg_model_spec *a = parse("{\"input\": [4], \"layers\": [{\"type\": \"Linear\", \"args\": [4, 2, false]}]}");
    zg_model_spec *b = parse("{\"input\": [4], \"layers\": [{\"type\": \"Linear\", \"out_features\": 2, "
                             "\"bias\": false, \"in_features\": 4}]}");
    CHECK(a && b && !strcmp(zg_model_spec_json(a), zg_model_spec_json(b)));
    zg_model_spec_free(a);
    zg_model_spec_free(b);
}

/* ---- the command line ----------------------------------------------------------- */

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 20);
    if (buf && fread(buf, 1, (1 << 20) - 1, f) == 0) buf[0] = 0;
    fclose(f);
    return buf;
}

TEST(model_file_cli_train_resume_summary) {
    char *root = zgt_temp_dir();
    if (!root) return;
    char io[600], run[600], net[600], other[600];
    snprintf(io, sizeof io, "%s/io", root);
    snprintf(run, sizeof run, "%s/run", root);
    snprintf(net, sizeof net, "%s/net.json", root);
    snprintf(other, sizeof other, "%s/other.json", root);
    mkdir(io, 0755);
    if (!zgt_cli_setup(io)) {
        zgt_fail(__FILE__, __LINE__, "no zgrad binary next to the test (%s)", zgt_cli_bin());
        zgt_remove_dir(root);
        return;
    }
    FILE *f = fopen(net, "w");
    if (f) {
        fputs("{\"input\": [1, 28, 28], \"layers\": [{\"type\": \"Flatten\"}, {\"type\": \"Linear\", \"args\": [784, 32]},"
              " {\"type\": \"ReLU\"}, {\"type\": \"Linear\", \"args\": [32, 10]}]}", f);
        fclose(f);
    }
    f = fopen(other, "w");
    if (f) {
        fputs("{\"input\": [1, 28, 28], \"layers\": [{\"type\": \"Flatten\"}, {\"type\": \"Linear\", \"args\": [784, 10]}]}",
              f);
        fclose(f);
    }
    zgt_cli_result r;
    zgt_cli_run(&r, (const char *[]){"train", "--model-file", net, "--epochs", "1", "--limit-train", "256",
                                     "--limit-test", "128", "--out", run, "--progress", "off", NULL});
    CHECK(r.status == 0 && strstr(r.out, "net.json (25450 parameters)"));
    char p[700];
    snprintf(p, sizeof p, "%s/model.safetensors", run);
    zg_safetensors *st = zg_safetensors_read(p);
    CHECK(st && zg_safetensors_get(st, "1.weight") && zg_safetensors_get(st, "3.bias"));
    zg_safetensors_free(st);
    /* The run keeps its model: resume and eval need no file. */
    zgt_cli_run(&r, (const char *[]){"train", "--resume", run, "--epochs", "2", "--progress", "off", NULL});
    CHECK(r.status == 0);
    zgt_cli_run(&r, (const char *[]){"eval", "--checkpoint", run, "--limit-test", "128", NULL});
    CHECK(r.status == 0 && strstr(r.out, "accuracy"));
    zgt_cli_run(&r, (const char *[]){"train", "--resume", run, "--epochs", "3", "--model-file", other, NULL});
    CHECK(r.status == 1 && strstr(r.err, "describes another model than the checkpoint's"));
    zgt_cli_run(&r, (const char *[]){"summary", "--model-file", net, NULL});
    CHECK(r.status == 0 && strstr(r.out, "1 Linear") && strstr(r.out, "25120") && strstr(r.out, "Total params: 25450"));
    zgt_cli_run(&r, (const char *[]){"summary", run, NULL});
    CHECK(r.status == 0 && strstr(r.out, "Total params: 25450"));
    zgt_cli_run(&r, (const char *[]){"summary", "--model", "cnn", NULL});
    CHECK(r.status == 0 && strstr(r.out, "Total params: 421642"));
    /* A model whose input is not the data's. */
    f = fopen(other, "w");
    if (f) {
        fputs("{\"input\": [784], \"layers\": [{\"type\": \"Linear\", \"args\": [784, 10]}]}", f);
        fclose(f);
    }
    snprintf(p, sizeof p, "%s/run2", root);
    zgt_cli_run(&r, (const char *[]){"train", "--model-file", other, "--out", p, NULL});
    CHECK(r.status == 1 && strstr(r.err, "the model file's input is [784] per sample, the data's samples are [1, 28, 28]"));
    zgt_cli_run(&r, (const char *[]){"train", "--model-file", other, "--model", "cnn", NULL});
    CHECK(r.status == 2 && strstr(r.err, "one model at a time"));
    char *metrics = NULL;
    snprintf(p, sizeof p, "%s/metrics.jsonl", run);
    metrics = slurp(p);
    CHECK(metrics && strstr(metrics, "\"epoch\": 2"));
    free(metrics);
    zgt_remove_dir(root);
}
