/* Model files (src/nn/model_file.c): JSON that reads like nn.Sequential.
 * PyTorch builds the same files (tests/parity/model_file_reference.py):
 * the state_dict names and shapes agree exactly and the eval outputs to
 * 1e-5; the shape walk names the layer and the shapes of a mismatch; the
 * built-in models are models/cnn.json, models/mlp.json and models/gpt.json;
 * the summary's counts (a GPT's: PyTorch's parameter count and nanoGPT's
 * get_num_params()); `zgrad train --model-file`, its resume and `zgrad
 * summary`; a GPT model file trains as --model gpt, bit for bit. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_runner.h"
#include "harness.h"

static const char *const ref_files[] = {"model_file"};
static const char *const ref_sources[] = {"tests/parity/model_file_reference.py", "tests/parity/torch_reference.py",
                                          "tests/parity/gpt_reference.py", "models/cnn.json", "models/mlp.json"};
static zgt_refset refs = {ref_sources, 5, ref_files, 1, NULL, 0};

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
    /* The GPT's counts as PyTorch's parameters() and nanoGPT's
     * get_num_params() give them. */
    snprintf(key, sizeof key, "params.%s", c);
    const char *params = zg_safetensors_metadata(st, key);
    snprintf(key, sizeof key, "num_params.%s", c);
    const char *num_params = zg_safetensors_metadata(st, key);
    char *table = params && num_params ? zg_model_spec_summary(spec) : NULL;
    if (params && num_params) {
        char want[2][96];
        snprintf(want[0], sizeof want[0], "Total params: %s ", params);
        snprintf(want[1], sizeof want[1], "get_num_params(): %s ", num_params);
        CHECK(table && strstr(table, want[0]) && strstr(table, want[1]));
        long long n = 0;
        for (int i = 0; i < zg_module_num_params(m); i++) n += zg_tensor_numel(zg_module_param(m, i));
        CHECK(atoll(params) == n);
    }
    free(table);
    zg_module_free(m);
    zg_model_spec_free(spec);
    zg_arena_reset();
}

TEST(parity_model_files_build_as_pytorch) {
    zg_safetensors *st = zgt_refs_open(&refs, "model_file");
    if (!st) return;
    CHECK(zgt_ref_cases(st, run_case) == 4);
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
    /* A GPT: nanoGPT's sizes checked, its input tokens, a model alone. */
    CHECK_NULL_ERR(parse("{\"layers\": [{\"type\": \"GPT\", \"n_embd\": 16, \"n_head\": 3}]}"),
                   "layer 0 (GPT): n_embd 16 is not a multiple of n_head 3");
    CHECK_NULL_ERR(parse("{\"input\": [20], \"layers\": [{\"type\": \"GPT\", \"block_size\": 16}]}"),
                   "layer 0 (GPT): expects [T] token ids per sample with T <= block_size 16, gets [20]");
    CHECK_NULL_ERR(parse("{\"layers\": [{\"type\": \"GPT\", \"vocab_size\": 0}]}"),
                   "layer 0 (GPT): vocab_size must be positive");
    CHECK_NULL_ERR(parse("{\"layers\": [{\"type\": \"GPT\", \"dropout\": 1}]}"), "layer 0 (GPT): dropout must lie in [0, 1)");
    CHECK_NULL_ERR(parse("{\"input\": [8], \"layers\": [{\"type\": \"ReLU\"}, {\"type\": \"GPT\"}]}"),
                   "layer 1 (GPT): a GPT must be the only layer");
    CHECK_NULL_ERR(parse("{\"layers\": [{\"type\": \"GPT\", \"n_heads\": 4}]}"),
                   "unknown argument 'n_heads' (GPT takes: block_size, vocab_size, n_layer, n_head, n_embd, dropout, bias)");
}

/* A GPT layer is the GPT itself: nanoGPT's GPTConfig defaults (as
 * positional "args" in GPTConfig's order too), input [block_size] by
 * default, output [T, vocab_size], and no other model's query answers. */
TEST(model_file_gpt_layer) {
    zg_model_spec *a = parse("{\"layers\": [{\"type\": \"GPT\"}]}");
    zg_model_spec *b = parse("{\"input\": [1024], \"layers\": [{\"type\": \"GPT\", \"args\": [1024, 50304, 12, 12, "
                             "768, 0.0, true]}]}");
    zg_model_spec *c = parse("{\"input\": [5], \"layers\": [{\"type\": \"GPT\", \"vocab_size\": 7, \"block_size\": 8, "
                             "\"n_layer\": 1, \"n_head\": 2, \"n_embd\": 4, \"bias\": false}]}");
    CHECK(a && b && c && !strcmp(zg_model_spec_json(a), zg_model_spec_json(b)));
    zg_gpt_config g = {0};
    CHECK(a && zg_model_spec_gpt(a, &g) && g.block_size == 1024 && g.vocab_size == 50304 && g.n_layer == 12 &&
          g.n_head == 12 && g.n_embd == 768 && g.dropout == 0 && g.bias);
    int64_t shape[4];
    CHECK(c && zg_model_spec_shape(c, false, shape, 4) == 1 && shape[0] == 5);
    CHECK(c && zg_model_spec_shape(c, true, shape, 4) == 2 && shape[0] == 5 && shape[1] == 7);
    zg_module *m = c ? zg_model_spec_build(c) : NULL;
    CHECK(m && !strcmp(zg_module_param_name(m, 0), "transformer.wte.weight"));
    /* 7*4 + 8*4 + (12*16 + 2*4) + ln_f 4 = 264 parameters (no biases). */
    char *t = c ? zg_model_spec_summary(c) : NULL;
    CHECK(t && strstr(t, "Total params: 264 ") && strstr(t, "get_num_params(): 232 ") &&
          strstr(t, "transformer.h.0 (Block)") && strstr(t, "lm_head (Linear, tied to wte)"));
    free(t);
    zg_module_free(m);
    zg_model_spec *d = zg_model_spec_load("models/mlp.json");
    CHECK(d && !zg_model_spec_gpt(d, &g));
    zg_model_spec_free(a);
    zg_model_spec_free(b);
    zg_model_spec_free(c);
    zg_model_spec_free(d);
}

/* The built-in cnn and mlp are the files in models/: the same canonical
 * spec, and the builders give the weights the files give from one seed;
 * the built-in gpt's sizes are models/gpt.json's. */
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
    /* models/gpt.json is zg_gpt_config_default(), the built-in gpt. */
    zg_model_spec *s = zg_model_spec_load("models/gpt.json"), *b = zg_train_builtin_spec(ZG_MODEL_GPT);
    zg_gpt_config g = {0};
    const zg_gpt_config d = zg_gpt_config_default();
    CHECK(s && b && !strcmp(zg_model_spec_json(s), zg_model_spec_json(b)));
    CHECK(s && zg_model_spec_gpt(s, &g) && g.vocab_size == d.vocab_size && g.block_size == d.block_size &&
          g.n_layer == d.n_layer && g.n_head == d.n_head && g.n_embd == d.n_embd && g.dropout == d.dropout &&
          g.bias == d.bias);
    zg_model_spec_free(s);
    zg_model_spec_free(b);
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

/* A temporary directory with the CLI's io folder set up; NULL (the test
 * failed or skipped) without. */
static char *cli_root(void) {
    char *root = zgt_temp_dir(), io[600];
    if (!root) return NULL;
    snprintf(io, sizeof io, "%s/io", root);
    mkdir(io, 0755);
    if (zgt_cli_setup(io)) return root;
    zgt_fail(__FILE__, __LINE__, "no zgrad binary next to the test (%s)", zgt_cli_bin());
    zgt_remove_dir(root);
    return NULL;
}

TEST(model_file_cli_train_resume_summary) {
    char *root = cli_root();
    if (!root) return;
    char run[600], net[600], other[600];
    snprintf(run, sizeof run, "%s/run", root);
    snprintf(net, sizeof net, "%s/net.json", root);
    snprintf(other, sizeof other, "%s/other.json", root);
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

static bool same_file(const char *a, const char *b) {
    FILE *f = fopen(a, "rb"), *g = fopen(b, "rb");
    bool same = f && g;
    for (int x = 0, y = 0; same && (x != EOF || y != EOF);) {
        x = fgetc(f);
        y = fgetc(g);
        same = x == y;
    }
    if (f) fclose(f);
    if (g) fclose(g);
    return same;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* A GPT model file trains as --model gpt with its sizes: the same weights
 * bit for bit from one seed; its vocab_size must be the text's; the size
 * options are the file's; the run's summary is the GPT's. */
TEST(model_file_cli_gpt_is_model_gpt) {
    char *root = cli_root();
    if (!root) return;
    char text[600], net[600], bad[600], a[600], b[600], pa[700], pb[700];
    snprintf(text, sizeof text, "%s/text.txt", root);
    snprintf(net, sizeof net, "%s/gpt.json", root);
    snprintf(bad, sizeof bad, "%s/gpt9.json", root);
    snprintf(a, sizeof a, "%s/a", root);
    snprintf(b, sizeof b, "%s/b", root);
    char body[3001];
    uint32_t x = 12345;
    for (int i = 0; i < 3000; i++) {
        x = x * 1664525u + 1013904223u;
        body[i] = "abcdef \n"[x >> 29]; /* 8 characters */
    }
    body[3000] = '\0';
    write_text(text, body);
    write_text(net, "{\"layers\": [{\"type\": \"GPT\", \"vocab_size\": 8, \"block_size\": 8, \"n_layer\": 1, "
                    "\"n_head\": 2, \"n_embd\": 8, \"dropout\": 0.0, \"bias\": true}]}");
    write_text(bad, "{\"layers\": [{\"type\": \"GPT\", \"vocab_size\": 9, \"block_size\": 8, \"n_layer\": 1, "
                    "\"n_head\": 2, \"n_embd\": 8}]}");
    zgt_cli_result r;
    zgt_cli_run(&r, (const char *[]){"train", "--model-file", net, "--text", text, "--iters", "4", "--eval-interval",
                                     "2", "--eval-iters", "1", "--seed", "5", "--out", a, "--progress", "off", NULL});
    CHECK(r.status == 0 && strstr(r.out, "final: val loss"));
    zgt_cli_run(&r, (const char *[]){"train", "--model", "gpt", "--n-layer", "1", "--n-head", "2", "--n-embd", "8",
                                     "--block-size", "8", "--bias", "--text", text, "--iters", "4", "--eval-interval",
                                     "2", "--eval-iters", "1", "--seed", "5", "--out", b, "--progress", "off", NULL});
    CHECK(r.status == 0);
    snprintf(pa, sizeof pa, "%s/model.safetensors", a);
    snprintf(pb, sizeof pb, "%s/model.safetensors", b);
    CHECK(same_file(pa, pb));
    zgt_cli_run(&r, (const char *[]){"summary", a, NULL});
    CHECK(r.status == 0 && strstr(r.out, "transformer.h.0 (Block)") && strstr(r.out, "[8, 8]"));
    snprintf(pb, sizeof pb, "%s/c", root);
    zgt_cli_run(&r, (const char *[]){"train", "--model-file", bad, "--text", text, "--iters", "2", "--out", pb, NULL});
    CHECK(r.status == 1 && strstr(r.err, "the GPT's vocab_size is 9 but the text") && strstr(r.err, "set vocab_size to 8"));
    zgt_cli_run(&r, (const char *[]){"train", "--model-file", net, "--n-layer", "2", "--text", text, NULL});
    CHECK(r.status == 2 && strstr(r.err, "sets the GPT's sizes"));
    zgt_remove_dir(root);
}
