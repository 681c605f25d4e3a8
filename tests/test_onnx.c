/* ONNX export: models written by zg_onnx_export and `zgrad export --onnx`
 * pass onnx.checker and run in onnxruntime with zgrad's outputs within
 * 1e-5 relative (tests/export/onnx_check.py, in the environment of
 * scripts/setup-pytools): the built-in cnn and mlp, every layer the
 * exporter knows in one Sequential (batch norm on non-trivial running
 * statistics), small GPTs with and without biases at full and shorter
 * context, and trained runs of each kind through the CLI; a module it
 * cannot write is refused by name. */
#include "harness.h"
#include "cli_runner.h"
#include "image_writer.h"

#include <stdlib.h>
#include <sys/stat.h>

#define ONNX_CHECK "tests/export/onnx_check.py"
#define DATA_DIR "/usr/share/datasets/fashion-mnist"

static char *root;

__attribute__((destructor)) static void remove_root(void) {
    if (root) zgt_remove_dir(root);
}

static const char *dir(void) {
    if (!root) root = zgt_temp_dir();
    return root ? root : "/nonexistent";
}

static const char *in_dir(const char *name) {
    static char p[8][600];
    static int k;
    char *s = p[k++ % 8];
    snprintf(s, sizeof p[0], "%s/%s", dir(), name);
    return s;
}

/* t as a NumPy .npy file (format 1.0: magic, header length, a Python
 * dict literal padded to a multiple of 64 bytes, then the data). */
static bool write_npy(const char *path, zg_tensor *t) {
    char shape[256] = "";
    size_t n = 0;
    for (int i = 0; i < zg_tensor_ndim(t); i++)
        n += (size_t)snprintf(shape + n, sizeof shape - n, "%lld, ", (long long)zg_tensor_size(t, i));
    char head[512];
    int len = snprintf(head, sizeof head, "{'descr': '<%s', 'fortran_order': False, 'shape': (%s), }",
                       zg_tensor_dtype(t) == ZG_INT64 ? "i8" : "f4", shape);
    while ((10 + len + 1) % 64) head[len++] = ' ';
    head[len++] = '\n';
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    const unsigned char magic[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(len & 0xff),
                                     (unsigned char)(len >> 8)};
    size_t bytes = (size_t)zg_tensor_numel(t) * (zg_tensor_dtype(t) == ZG_INT64 ? 8 : 4);
    const void *data = zg_tensor_dtype(t) == ZG_INT64 ? (const void *)zg_tensor_data_i64(t) : zg_tensor_data(t);
    bool ok = fwrite(magic, 1, 10, f) == 10 && fwrite(head, 1, (size_t)len, f) == (size_t)len &&
              fwrite(data, 1, bytes, f) == bytes;
    return fclose(f) == 0 && ok;
}

/* m's output for x in eval mode (a persistent copy). */
static zg_tensor *forward(zg_module *m, zg_tensor *x) {
    zg_module_train(m, false);
    zg_no_grad_enter();
    zg_tensor *y = zg_module_forward(m, x), *copy = y ? zg_tensor_clone(y) : NULL;
    zg_no_grad_exit();
    zg_arena_reset();
    return copy;
}

/* Saves x and zgrad's output for case `name` beside name.onnx. */
static bool save_case(const char *name, zg_module *m, zg_tensor *x) {
    char in[600], out[600];
    snprintf(in, sizeof in, "%s/%s.in.npy", dir(), name);
    snprintf(out, sizeof out, "%s/%s.out.npy", dir(), name);
    zg_tensor *y = forward(m, x);
    CHECK_PTR(y);
    bool ok = y && write_npy(in, x) && write_npy(out, y);
    CHECK(ok);
    zg_tensor_free(y);
    return ok;
}

/* onnx_check.py on the cases; fails the test with its output. */
static void check_cases(const char *const *cases) {
    const char *args[8] = {dir()};
    int n = 1;
    for (; cases[n - 1] && n < 7; n++) args[n] = cases[n - 1];
    args[n] = NULL;
    char out[8192];
    int rc = zgt_pytools_run(ONNX_CHECK, args, out, sizeof out);
    if (rc != 0) zgt_fail(__FILE__, __LINE__, "%s: exit %d:\n%s", ONNX_CHECK, rc, out);
    else fputs(out, stdout); /* the differences measured */
    for (int i = 0; cases[i]; i++) {
        char want[128];
        snprintf(want, sizeof want, "ok %s:", cases[i]);
        if (rc == 0 && !strstr(out, want)) zgt_fail(__FILE__, __LINE__, "no '%s' in:\n%s", want, out);
    }
}

static zg_tensor *uniform(const int64_t *shape, int ndim, float lo, float hi) { return zg_uniform(shape, ndim, lo, hi); }

static void export_case(const char *name, zg_module *m, zg_tensor *x, const int64_t *sample, int ndim) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s.onnx", dir(), name);
    CHECK_OK(zg_onnx_export(m, sample, ndim, path));
    save_case(name, m, x);
}

TEST(onnx_builtin_cnn_and_mlp_match_onnxruntime) {
    if (!zgt_pytools_python()) return;
    zg_manual_seed(1);
    const int64_t sample[3] = {1, 28, 28}, shape[4] = {3, 1, 28, 28};
    static const int64_t sizes[4] = {784, 256, 128, 10};
    zg_module *cnn = zg_model_default_cnn(), *mlp = zg_model_mlp(sizes, 4);
    zg_tensor *x = zg_randn(shape, 4);
    CHECK_PTR(cnn);
    CHECK_PTR(mlp);
    if (!cnn || !mlp || !x) return;
    export_case("cnn", cnn, x, sample, 3);
    export_case("mlp", mlp, x, sample, 3);
    check_cases((const char *const[]){"cnn", "mlp", NULL});
    zg_module_free(cnn);
    zg_module_free(mlp);
    zg_tensor_free(x);
}

/* Random values for the batch norms' weights and running statistics
 * (variance in [0.5, 2]), which start as ones and zeros. */
static void randomise_norms(zg_module *m) {
    for (int i = 0; i < zg_module_num_buffers(m); i++) {
        zg_tensor *b = zg_module_buffer(m, i);
        const char *name = zg_module_buffer_name(m, i);
        if (zg_tensor_dtype(b) != ZG_FLOAT32) continue;
        bool var = strstr(name, "running_var") != NULL;
        zg_tensor *r = uniform((const int64_t[]){zg_tensor_numel(b)}, 1, var ? 0.5f : -1.0f, var ? 2.0f : 1.0f);
        if (r) memcpy(zg_tensor_data(b), zg_tensor_data(r), (size_t)zg_tensor_numel(b) * sizeof(float));
        zg_tensor_free(r);
    }
    for (int i = 0; i < zg_module_num_params(m); i++) {
        zg_tensor *p = zg_module_param(m, i);
        if (zg_tensor_ndim(p) != 1) continue;
        float *d = zg_tensor_data(p);
        for (int64_t j = 0; j < zg_tensor_numel(p); j++) d[j] += 0.25f * (float)((j % 5) - 2);
    }
}

/* Every layer of the exporter's table, with padding, strides, dilation
 * and groups: [3, 3, 12, 12] -> [3, 5]. */
TEST(onnx_every_layer_matches_onnxruntime) {
    if (!zgt_pytools_python()) return;
    zg_manual_seed(2);
    zg_module *layers[] = {
        zg_nn_conv2d(3, 8, 3, 1, 2, 2, 1, true), /* dilated: 12 x 12 */
        zg_nn_batch_norm2d(8, 1e-5f, 0.1f),
        zg_nn_gelu(false),
        zg_nn_avg_pool2d(2, 2, 1),               /* 7 x 7, the padding counted */
        zg_nn_conv2d(8, 8, 3, 2, 1, 1, 2, false), /* grouped, reading every edge: 4 x 4 */
        zg_nn_tanh(),
        zg_nn_max_pool2d(3, 1, 1),
        zg_nn_flatten(),                         /* 128 */
        zg_nn_linear(128, 16, true),
        zg_nn_batch_norm1d(16, 1e-3f, 0.1f),
        zg_nn_sigmoid(),
        zg_nn_dropout(0.5f),
        zg_nn_leaky_relu(0.1f),
        zg_nn_gelu(true),
        zg_nn_layer_norm(16, 1e-5f, false, false),
        zg_nn_relu(),
        zg_nn_layer_norm(16, 1e-5f, true, false),
        zg_nn_linear(16, 5, false),
    };
    zg_module *m = zg_nn_sequential(layers, (int)(sizeof layers / sizeof layers[0]));
    CHECK_PTR(m);
    if (!m) return;
    randomise_norms(m);
    zg_tensor *x = zg_randn((const int64_t[]){3, 3, 12, 12}, 4);
    export_case("zoo", m, x, (const int64_t[]){3, 12, 12}, 3);
    check_cases((const char *const[]){"zoo", NULL});
    zg_module_free(m);
    zg_tensor_free(x);
}

static zg_module *small_gpt(bool bias) {
    zg_gpt_config c = zg_gpt_config_default();
    c.vocab_size = 11;
    c.block_size = 8;
    c.n_layer = 2;
    c.n_head = 2;
    c.n_embd = 16;
    c.bias = bias;
    return zg_nn_gpt(&c);
}

static zg_tensor *tokens(int64_t B, int64_t T, int64_t vocab) {
    zg_tensor *t = zg_tensor_new(ZG_INT64, (const int64_t[]){B, T}, 2);
    for (int64_t i = 0; t && i < B * T; i++) zg_tensor_data_i64(t)[i] = (i * 7 + 3) % vocab;
    return t;
}

/* name.sd.txt: m's parameters, "NAME D0 D1 ..." a line, which onnx_check.py
 * finds among the initializers. */
static void save_names(const char *name, const zg_module *m) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s.sd.txt", dir(), name);
    FILE *f = fopen(path, "w");
    CHECK_PTR(f);
    for (int i = 0; f && i < zg_module_num_params(m); i++) {
        zg_tensor *p = zg_module_param(m, i);
        fprintf(f, "%s", zg_module_param_name(m, i));
        for (int k = 0; k < zg_tensor_ndim(p); k++) fprintf(f, " %lld", (long long)zg_tensor_size(p, k));
        fputc('\n', f);
    }
    if (f) CHECK(fclose(f) == 0);
}

/* The GPT at its full context and at a shorter one (the mask and the
 * position embeddings are sliced to the input's T); its weights are
 * initializers under nanoGPT's state_dict names (zgrad's parameter names,
 * which tests/test_gpt.c and tests/test_model_file.c match to PyTorch's),
 * the tied head once as transformer.wte.weight. */
TEST(onnx_gpt_matches_onnxruntime) {
    if (!zgt_pytools_python()) return;
    zg_manual_seed(3);
    zg_module *with = small_gpt(true), *without = small_gpt(false);
    CHECK_PTR(with);
    CHECK_PTR(without);
    if (!with || !without) return;
    randomise_norms(with);
    zg_tensor *full = tokens(2, 8, 11), *part = tokens(3, 5, 11);
    export_case("gpt_bias", with, full, NULL, 0);
    export_case("gpt", without, part, NULL, 0);
    save_names("gpt_bias", with);
    save_names("gpt", without);
    check_cases((const char *const[]){"gpt_bias", "gpt", NULL});
    zg_module_free(with);
    zg_module_free(without);
    zg_tensor_free(full);
    zg_tensor_free(part);
}

TEST(onnx_export_refuses_what_it_cannot_write) {
    zg_module *layers[2] = {zg_nn_flatten(), zg_nn_embedding(4, 3, ZG_NO_PADDING_IDX)};
    zg_module *m = zg_nn_sequential(layers, 2);
    CHECK_PTR(m);
    const char *path = in_dir("refused.onnx");
    CHECK_ERR(zg_onnx_export(m, (const int64_t[]){4}, 1, path), "module '1' (Embedding) has no ONNX export");
    zg_module_free(m);
    zg_module *cnn = zg_model_default_cnn();
    CHECK_ERR(zg_onnx_export(cnn, (const int64_t[]){784}, 1, path), "does not take an input of one sample's shape");
    CHECK_ERR(zg_onnx_export(cnn, NULL, 0, path), "need the shape of one input sample");
    zg_module_free(cnn);
    struct stat st;
    CHECK(stat(path, &st) != 0);
}

/* ---- trained runs through the CLI --------------------------------------------- */

static bool cli_ready(void) {
    struct stat st;
    if (!zgt_cli_setup(dir())) {
        zgt_fail(__FILE__, __LINE__, "the zgrad binary is missing (make)");
        return false;
    }
    if (stat(DATA_DIR "/train-images-idx3-ubyte.gz", &st) != 0 && stat(DATA_DIR "/train-images-idx3-ubyte", &st) != 0) {
        zgt_fail(__FILE__, __LINE__, "Fashion-MNIST is not installed in %s: run scripts/setup", DATA_DIR);
        return false;
    }
    return true;
}

static void run_cli(const char *const *args) {
    static zgt_cli_result r;
    zgt_cli_run(&r, args);
    if (r.status != 0) zgt_fail(__FILE__, __LINE__, "zgrad %s: exit %d: %s", args[0], r.status, r.err);
}

/* A trained image run exported by `zgrad export`: its input is the pixels
 * / 255, normalised inside the graph with the run's mean and std. */
static void image_run_case(const char *name, const char *opt, const char *model, zg_module *m) {
    const char *run = in_dir(name);
    char onnx[600], weights[600];
    snprintf(onnx, sizeof onnx, "%s/%s.onnx", dir(), name);
    snprintf(weights, sizeof weights, "%s/model.safetensors", run);
    run_cli((const char *const[]){"train", opt, model, "--epochs", "1", "--limit-train", "128", "--limit-test",
                                  "32", "--progress", "off", "--out", run, NULL});
    run_cli((const char *const[]){"export", "--onnx", onnx, run, NULL});
    CHECK_OK(zg_module_load(m, weights));
    zg_tensor *pixels = uniform((const int64_t[]){4, 1, 28, 28}, 4, 0.0f, 1.0f);
    zg_tensor *x = zg_tensor_clone(pixels);
    const zg_train_config c = zg_train_config_defaults();
    float *d = zg_tensor_data(x);
    for (int64_t i = 0; i < zg_tensor_numel(x); i++) d[i] = (d[i] - c.mean) / c.std;
    zg_tensor *y = forward(m, x);
    char in[600], out[600];
    snprintf(in, sizeof in, "%s/%s.in.npy", dir(), name);
    snprintf(out, sizeof out, "%s/%s.out.npy", dir(), name);
    CHECK(y && write_npy(in, pixels) && write_npy(out, y));
    zg_tensor_free(pixels);
    zg_tensor_free(x);
    zg_tensor_free(y);
}

TEST(zgrad_export_cnn_and_mlp_runs) {
    if (!zgt_pytools_python() || !cli_ready()) return;
    static const int64_t sizes[4] = {784, 256, 128, 10};
    zg_module *cnn = zg_model_default_cnn(), *mlp = zg_model_mlp(sizes, 4);
    image_run_case("cnn_run", "--model", "cnn", cnn);
    image_run_case("mlp_run", "--model", "mlp", mlp);
    check_cases((const char *const[]){"cnn_run", "mlp_run", NULL});
    zg_module_free(cnn);
    zg_module_free(mlp);
}

/* A run of a model file: its layers, and its input shape, from the run. */
TEST(zgrad_export_model_file_run) {
    if (!zgt_pytools_python() || !cli_ready()) return;
    static const char spec[] =
        "{\"input\": [1, 28, 28], \"layers\": [{\"type\": \"Conv2d\", \"args\": [1, 4, 3], \"padding\": 1},"
        " {\"type\": \"BatchNorm2d\", \"args\": [4]}, {\"type\": \"ReLU\"},"
        " {\"type\": \"AvgPool2d\", \"kernel_size\": 3, \"stride\": 2, \"padding\": 1, \"count_include_pad\": false},"
        " {\"type\": \"MaxPool2d\", \"kernel_size\": 3, \"stride\": 2, \"ceil_mode\": true},"
        " {\"type\": \"Flatten\"}, {\"type\": \"Linear\", \"args\": [196, 10]}]}";
    const char *path = in_dir("net.json");
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(spec, f);
        fclose(f);
    }
    zg_model_spec *s = zg_model_spec_parse(spec, strlen(spec), "net.json");
    zg_module *m = s ? zg_model_spec_build(s) : NULL;
    CHECK_PTR(m);
    if (m) {
        zg_module_train(m, false);
        image_run_case("file_run", "--model-file", path, m);
        check_cases((const char *const[]){"file_run", NULL});
    }
    zg_module_free(m);
    zg_model_spec_free(s);
}

/* x normalised per entry of its first sample dimension: (x - mean[k]) /
 * std[k], as the run's loader does (a copy). */
static zg_tensor *normalised(zg_tensor *x, const float *mean, const float *std) {
    zg_tensor *c = zg_tensor_clone(x);
    const int64_t n = zg_tensor_size(x, 0), k = zg_tensor_size(x, 1), block = zg_tensor_numel(x) / (n * k);
    float *d = zg_tensor_data(c);
    for (int64_t i = 0; i < zg_tensor_numel(c); i++) d[i] = (d[i] - mean[i / block % k]) / std[i / block % k];
    return c;
}

/* A --csv or --images run exported by `zgrad export`: the graph takes the
 * raw features (or the pixels / 255) and standardises each feature (each
 * channel) with the training data's own mean and std, which the test
 * computes from the data itself. */
static void data_run_case(const char *name, const char *opt, const char *data, zg_dataset *train, zg_tensor *raw) {
    const char *run = in_dir(name);
    char onnx[600], weights[600], in[600], out[600];
    snprintf(onnx, sizeof onnx, "%s/%s.onnx", dir(), name);
    snprintf(weights, sizeof weights, "%s/model.safetensors", run);
    const bool csv = !strcmp(opt, "--csv");
    run_cli(csv ? (const char *const[]){"train", opt, data, "--target", "y", "--epochs", "1", "--progress", "off",
                                        "--out", run, NULL}
                : (const char *const[]){"train", opt, data, "--epochs", "1", "--progress", "off", "--out", run, NULL});
    run_cli((const char *const[]){"export", "--onnx", onnx, run, NULL});
    zg_model_spec *spec = zg_train_model_spec(run);
    zg_module *m = spec ? zg_model_spec_build(spec) : NULL;
    float mean[3], std[3];
    CHECK(m && zg_module_load(m, weights) == 0 && zg_dataset_compute_stats(train, mean, std) == 0);
    zg_tensor *x = normalised(raw, mean, std), *y = m ? forward(m, x) : NULL;
    snprintf(in, sizeof in, "%s/%s.in.npy", dir(), name);
    snprintf(out, sizeof out, "%s/%s.out.npy", dir(), name);
    CHECK(y && write_npy(in, raw) && write_npy(out, y));
    zg_tensor_free(x);
    zg_tensor_free(y);
    zg_module_free(m);
    zg_model_spec_free(spec);
}

TEST(zgrad_export_csv_and_image_runs) {
    if (!zgt_pytools_python() || !zgt_cli_setup(dir())) return;
    const char *csv = in_dir("t.csv");
    FILE *f = fopen(csv, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("a,b,c,y\n", f);
    for (int i = 0; i < 40; i++) fprintf(f, "%d,%g,%g,%d\n", i % 7, 100 + i * 0.5, -3.0 + (i * 13 % 11), i % 3);
    fclose(f);
    char imgs[600];
    snprintf(imgs, sizeof imgs, "%s", in_dir("imgs"));
    mkdir(imgs, 0755);
    for (int k = 0; k < 2; k++) {
        char p[700];
        snprintf(p, sizeof p, "%s/c%d", imgs, k);
        mkdir(p, 0755);
        for (int i = 0; i < 5; i++) {
            uint8_t px[6 * 6 * 3];
            zgt_pattern(px, 6, 6, 3, 10 * k + i);
            snprintf(p, sizeof p, "%s/c%d/%d.png", imgs, k, i);
            zgt_write_png(p, px, 6, 6, 3, false, false);
        }
    }
    zg_dataset *table = zg_dataset_load_table(csv, &(zg_csv_opts){.target = "y"}), *tr = NULL, *va = NULL;
    zg_dataset *folder = zg_dataset_load_image_folder(imgs, &(zg_image_opts){0}), *itr = NULL, *iva = NULL;
    /* The runs' training parts: the default seeded split (0.2, seed 0). */
    CHECK(table && zg_dataset_split(table, 0.2, 0, &tr, &va) == 0);
    CHECK(folder && zg_dataset_split(folder, 0.2, 0, &itr, &iva) == 0);
    zg_tensor *features = uniform((const int64_t[]){5, 3}, 2, -2.0f, 120.0f);
    zg_tensor *pixels = uniform((const int64_t[]){3, 3, 6, 6}, 4, 0.0f, 1.0f);
    if (tr && itr) {
        data_run_case("csv_run", "--csv", csv, tr, features);
        data_run_case("images_run", "--images", imgs, itr, pixels);
        check_cases((const char *const[]){"csv_run", "images_run", NULL});
    }
    zg_tensor_free(features);
    zg_tensor_free(pixels);
    zg_dataset_free(tr), zg_dataset_free(va), zg_dataset_free(table);
    zg_dataset_free(itr), zg_dataset_free(iva), zg_dataset_free(folder);
}

TEST(zgrad_export_gpt_run) {
    if (!zgt_pytools_python() || !cli_ready()) return;
    const char *text = in_dir("play.txt"), *run = in_dir("gpt_run");
    FILE *f = fopen(text, "w");
    CHECK(f != NULL);
    if (!f) return;
    for (int i = 0; i < 300; i++) fprintf(f, "KING:\nlong live the king, %d times\n", i % 9);
    fclose(f);
    run_cli((const char *const[]){"train", "--model", "gpt", "--text", text, "--n-layer", "1", "--n-head", "2",
                                  "--n-embd", "16", "--block-size", "8", "--batch-size", "4", "--iters", "4",
                                  "--eval-interval", "2", "--eval-iters", "2", "--progress", "off", "--out", run,
                                  NULL});
    char onnx[600], weights[600];
    snprintf(onnx, sizeof onnx, "%s/gpt_run.onnx", dir());
    snprintf(weights, sizeof weights, "%s/model.safetensors", run);
    run_cli((const char *const[]){"export", "--onnx", onnx, run, NULL});
    zg_text *t = zg_text_load(text, ZG_TEXT_CHAR, 0.1);
    CHECK_PTR(t);
    if (!t) return;
    zg_gpt_config c = zg_gpt_config_default();
    c.vocab_size = zg_text_vocab_size(t);
    c.block_size = 8;
    c.n_layer = 1;
    c.n_head = 2;
    c.n_embd = 16;
    zg_module *m = zg_nn_gpt(&c);
    CHECK_OK(zg_module_load(m, weights));
    zg_tensor *x = tokens(2, 6, c.vocab_size);
    CHECK(save_case("gpt_run", m, x));
    check_cases((const char *const[]){"gpt_run", NULL});
    zg_text_free(t);
    zg_module_free(m);
    zg_tensor_free(x);
}

TEST(zgrad_export_usage_and_errors) {
    if (!cli_ready()) return;
    static zgt_cli_result r;
    zgt_cli_run(&r, (const char *const[]){"export", in_dir("nothing"), NULL});
    CHECK(r.status == 2 && strstr(r.err, "--onnx FILE is required"));
    zgt_cli_run(&r, (const char *const[]){"export", "--onnx", in_dir("x.onnx"), NULL});
    CHECK(r.status == 2 && strstr(r.err, "RUN (a run directory) is required"));
    zgt_cli_run(&r, (const char *const[]){"export", "--onnx", in_dir("x.onnx"), in_dir("no-such-run"), NULL});
    CHECK(r.status == 1 && strstr(r.err, "zgrad: zg_train_export_onnx:") && strstr(r.err, "no-such-run"));
    zgt_cli_run(&r, (const char *const[]){"export", "--help", NULL});
    CHECK(r.status == 0 && strstr(r.out, "usage: zgrad export --onnx FILE RUN"));
}
