/* zgrad modules as ONNX graphs of the default domain, opset 17 (the model
 * file is written by src/io/onnx_graph.c), as they compute in eval mode:
 *
 *   Sequential        its children in turn
 *   Linear            Gemm(x, W, b, transB=1) on [N, in]; on more
 *                     dimensions MatMul(x, Transpose(W)) (+ b)
 *   Conv2d            Conv (kernel_shape, strides, pads, dilations, group)
 *   MaxPool2d         MaxPool; AvgPool2d: AveragePool (ceil_mode and
 *                     count_include_pad as the module's; a divisor_override is refused)
 *                     (PyTorch's default)
 *   BatchNorm1d/2d    BatchNormalization on the running statistics
 *   LayerNorm         LayerNormalization over the last axis
 *   ReLU, LeakyReLU, Tanh, Sigmoid: the ops of those names
 *   GELU              x/2 (1 + Erf(x / sqrt 2)) (opset 17 has no Gelu), or
 *                     the tanh form x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
 *   Flatten           Flatten(axis=1); Dropout: nothing (eval mode)
 *   GPT               token and position embeddings (Gather, Slice), each
 *                     block's LayerNorms, attention as MatMul / Softmax
 *                     with a causal mask added to the scores, the MLP, and
 *                     the head MatMul with the token embedding transposed
 *
 * Parameters and buffers become initializers under their state-dict names
 * ("0.weight", "transformer.h.0.attn.c_attn.weight"). The graph's input is
 * "input" [N, sample...] (float) or, for a GPT, "idx" [N, T] (int64 tokens,
 * T at most block_size); its output "output" [N, ...] or "logits" [N, T,
 * V]; N and T are symbolic. A run's image model (zg_train_export_onnx)
 * starts with the run's normalisation, (input - mean) / std, so that its
 * input is the pixels / 255, as the data loader reads them (a --csv run:
 * the raw features, each standardised with its own mean and std; an
 * --images run: each channel with its own). */
#include "train_internal.h"
#include "../nn/nn_internal.h"

#include <math.h>

#define OPSET 17
#define MAX_NDIM 7

typedef struct {
    zg__onnx *g;
    const char *fn;
    int rc; /* the first error (its message set) */
} exporter;

static int refuse(exporter *e, const zg_module *m, const char *why) {
    if (!e->rc)
        e->rc = zg__fail(ZG_ERR_ARG, "%s: module '%s' (%s) %s", e->fn, m->path[0] ? m->path : "(root)", m->type,
                         why);
    return e->rc;
}

/* ---- values ----------------------------------------------------------------- */

static const char *param(exporter *e, const zg_tensor *t) {
    const char *name = zg_tensor_name(t);
    zg__onnx_initializer(e->g, name, t->dtype, t->shape, t->ndim,
                         t->dtype == ZG_INT64 ? (const void *)zg__i64(t) : (const void *)zg__f32(t));
    return name;
}

static const char *ints(exporter *e, const int64_t *v, int n) {
    const char *name = zg__onnx_name(e->g, "const");
    if (name) zg__onnx_initializer(e->g, name, ZG_INT64, (const int64_t[]){n}, 1, v);
    return name ? name : "";
}

static const char *scalar(exporter *e, float v) {
    const char *name = zg__onnx_name(e->g, "const");
    if (name) zg__onnx_initializer(e->g, name, ZG_FLOAT32, NULL, 0, &v);
    return name ? name : "";
}

/* The run's normalisation of its input: one mean and std for every value
 * (k 1), or one per feature or channel (the sample's first dimension). */
typedef struct {
    const float *mean, *std;
    int64_t k;
} input_norm;

/* k values as [k, 1, ...] (rank ndim), to broadcast over [N, k, ...]. */
static const char *per_entry(exporter *e, const float *v, int64_t k, int ndim) {
    if (k == 1) return scalar(e, v[0]);
    int64_t dims[MAX_NDIM] = {k};
    for (int i = 1; i < ndim; i++) dims[i] = 1;
    const char *name = zg__onnx_name(e->g, "const");
    if (name) zg__onnx_initializer(e->g, name, ZG_FLOAT32, dims, ndim, v);
    return name ? name : "";
}

static const char *op1(exporter *e, const char *op, const char *x) { return zg__onnx_node(e->g, op, &x, 1, NULL, 0); }

static const char *op2(exporter *e, const char *op, const char *a, const char *b) {
    return zg__onnx_node(e->g, op, (const char *const[]){a, b}, 2, NULL, 0);
}

static const char *transpose(exporter *e, const char *x, const int64_t *perm, int n) {
    zg__onnx_attr a = ZG__ONNX_INTS("perm", perm, n);
    return zg__onnx_node(e->g, "Transpose", &x, 1, &a, 1);
}

/* ---- layers ------------------------------------------------------------------- */

static const char *linear(exporter *e, const zg_module *m, const char *x, int rank) {
    const char *w = param(e, m->params[0]), *b = m->flag ? param(e, m->params[1]) : NULL;
    if (rank == 2) {
        zg__onnx_attr a = ZG__ONNX_I("transB", 1);
        return zg__onnx_node(e->g, "Gemm", (const char *const[]){x, w, b}, b ? 3 : 2, &a, 1);
    }
    const char *y = op2(e, "MatMul", x, transpose(e, w, (const int64_t[]){1, 0}, 2));
    return b ? op2(e, "Add", y, b) : y;
}

/* iv: in, out, kernel, stride, padding, dilation, groups; flag: bias. */
static const char *conv2d(exporter *e, const zg_module *m, const char *x) {
    const int64_t k = m->iv[2], s = m->iv[3], p = m->iv[4], d = m->iv[5];
    zg__onnx_attr a[5] = {ZG__ONNX_INTS("kernel_shape", ((const int64_t[]){k, k}), 2),
                          ZG__ONNX_INTS("strides", ((const int64_t[]){s, s}), 2),
                          ZG__ONNX_INTS("pads", ((const int64_t[]){p, p, p, p}), 4),
                          ZG__ONNX_INTS("dilations", ((const int64_t[]){d, d}), 2), ZG__ONNX_I("group", m->iv[6])};
    const char *in[3] = {x, param(e, m->params[0]), m->flag ? param(e, m->params[1]) : NULL};
    return zg__onnx_node(e->g, "Conv", in, m->flag ? 3 : 2, a, 5);
}

/* iv: kernel, stride, padding, ceil_mode, exclude_pad, divisor_override
 * (src/nn/pool.c). ONNX has ceil_mode and count_include_pad, no divisor. */
static const char *pool2d(exporter *e, const zg_module *m, const char *x, bool avg) {
    const int64_t k = m->iv[0], s = m->iv[1], p = m->iv[2];
    if (avg && m->iv[5]) {
        refuse(e, m, "has a divisor_override, which ONNX's AveragePool cannot express");
        return NULL;
    }
    zg__onnx_attr a[5] = {ZG__ONNX_INTS("kernel_shape", ((const int64_t[]){k, k}), 2),
                          ZG__ONNX_INTS("strides", ((const int64_t[]){s, s}), 2),
                          ZG__ONNX_INTS("pads", ((const int64_t[]){p, p, p, p}), 4),
                          ZG__ONNX_I("ceil_mode", m->iv[3] != 0), ZG__ONNX_I("count_include_pad", m->iv[4] == 0)};
    return zg__onnx_node(e->g, avg ? "AveragePool" : "MaxPool", &x, 1, a, avg ? 5 : 4);
}

/* params: weight, bias; buffers: running_mean, running_var; sc[0]: eps. */
static const char *batch_norm(exporter *e, const zg_module *m, const char *x) {
    const char *in[5] = {x, param(e, m->params[0]), param(e, m->params[1]), param(e, m->buffers[0]),
                         param(e, m->buffers[1])};
    zg__onnx_attr a = ZG__ONNX_F("epsilon", m->sc[0]);
    return zg__onnx_node(e->g, "BatchNormalization", in, 5, &a, 1);
}

/* ONNX's LayerNormalization needs a scale: ones when the module has none. */
static const char *layer_norm(exporter *e, const zg_module *m, const char *x) {
    const char *scale;
    if (m->flag) {
        scale = param(e, m->params[0]);
    } else {
        float *ones = zg__malloc((size_t)m->iv[0] * sizeof *ones);
        scale = ones ? zg__onnx_name(e->g, "ones") : NULL;
        for (int64_t i = 0; scale && i < m->iv[0]; i++) ones[i] = 1.0f;
        if (scale) zg__onnx_initializer(e->g, scale, ZG_FLOAT32, &m->iv[0], 1, ones);
        free(ones);
        if (!scale) return NULL;
    }
    const char *in[3] = {x, scale, m->flag && m->n_params > 1 ? param(e, m->params[1]) : NULL};
    zg__onnx_attr a[2] = {ZG__ONNX_I("axis", -1), ZG__ONNX_F("epsilon", m->sc[0])};
    return zg__onnx_node(e->g, "LayerNormalization", in, in[2] ? 3 : 2, a, 2);
}

static const char *gelu(exporter *e, const zg_module *m, const char *x) {
    const char *inner;
    if (m->flag) { /* tanh(sqrt(2/pi) (x + 0.044715 x^3)) */
        const char *x3 = op2(e, "Mul", x, op2(e, "Mul", x, x));
        const char *u = op2(e, "Add", x, op2(e, "Mul", x3, scalar(e, 0.044715f)));
        inner = op1(e, "Tanh", op2(e, "Mul", u, scalar(e, (float)sqrt(2.0 / M_PI))));
    } else {
        inner = op1(e, "Erf", op2(e, "Mul", x, scalar(e, (float)(1.0 / sqrt(2.0)))));
    }
    const char *y = op2(e, "Mul", x, op2(e, "Add", inner, scalar(e, 1.0f)));
    return op2(e, "Mul", y, scalar(e, 0.5f));
}

static const char *module(exporter *e, const zg_module *m, const char *x, int *rank);

static const char *sequence(exporter *e, const zg_module *m, const char *x, int *rank) {
    for (int i = 0; i < m->n_children && x; i++) x = module(e, m->children[i], x, rank);
    return x;
}

/* x (of rank *rank) through m: the output's name, or NULL with e->rc set. */
static const char *module(exporter *e, const zg_module *m, const char *x, int *rank) {
    const char *t = m->type;
    if (!strcmp(t, "Sequential") || !strcmp(t, "MLP")) return sequence(e, m, x, rank);
    if (!strcmp(t, "Linear")) return linear(e, m, x, *rank);
    if (!strcmp(t, "Conv2d")) return conv2d(e, m, x);
    if (!strcmp(t, "MaxPool2d") || !strcmp(t, "AvgPool2d")) return pool2d(e, m, x, t[0] == 'A');
    if (!strcmp(t, "BatchNorm1d") || !strcmp(t, "BatchNorm2d")) return batch_norm(e, m, x);
    if (!strcmp(t, "LayerNorm")) return layer_norm(e, m, x);
    if (!strcmp(t, "ReLU")) return op1(e, "Relu", x);
    if (!strcmp(t, "Tanh")) return op1(e, "Tanh", x);
    if (!strcmp(t, "Sigmoid")) return op1(e, "Sigmoid", x);
    if (!strcmp(t, "GELU")) return gelu(e, m, x);
    if (!strcmp(t, "Dropout")) return x;
    if (!strcmp(t, "LeakyReLU")) {
        zg__onnx_attr a = ZG__ONNX_F("alpha", m->sc[0]);
        return zg__onnx_node(e->g, "LeakyRelu", &x, 1, &a, 1);
    }
    if (!strcmp(t, "Flatten")) {
        zg__onnx_attr a = ZG__ONNX_I("axis", 1);
        *rank = 2;
        return zg__onnx_node(e->g, "Flatten", &x, 1, &a, 1);
    }
    refuse(e, m, "has no ONNX export");
    return NULL;
}

/* ---- the GPT ---------------------------------------------------------------------- */

static const zg_module *child(const zg_module *m, const char *name) {
    for (int i = 0; i < m->n_children; i++) {
        const char *p = m->children[i]->path, *dot = strrchr(p, '.');
        if (!strcmp(dot ? dot + 1 : p, name)) return m->children[i];
    }
    return NULL;
}

/* Causal self-attention on x [N, T, C] (iv[0] heads); mask [T, T] holds 0
 * where a query may see a key and -inf where it may not. */
static const char *attention(exporter *e, const zg_module *m, const char *x, const char *mask) {
    const zg_module *c_attn = child(m, "c_attn"), *c_proj = child(m, "c_proj");
    const int64_t nh = m->iv[0], C = c_attn->iv[0], hs = C / nh;
    const char *qkv = linear(e, c_attn, x, 3), *part[3];
    for (int i = 0; i < 3; i++) part[i] = zg__onnx_name(e->g, "split");
    zg__onnx_attr axis = ZG__ONNX_I("axis", 2);
    zg__onnx_node_outs(e->g, "Split", (const char *const[]){qkv, ints(e, (const int64_t[]){C, C, C}, 3)}, 2, &axis,
                       1, part, 3);
    const char *heads = ints(e, (const int64_t[]){0, 0, nh, hs}, 4);
    const int64_t bhtd[4] = {0, 2, 1, 3}, bhdt[4] = {0, 2, 3, 1};
    const char *q = transpose(e, op2(e, "Reshape", part[0], heads), bhtd, 4);
    const char *k = transpose(e, op2(e, "Reshape", part[1], heads), bhdt, 4);
    const char *v = transpose(e, op2(e, "Reshape", part[2], heads), bhtd, 4);
    const char *s = op2(e, "Mul", op2(e, "MatMul", q, k), scalar(e, (float)(1.0 / sqrt((double)hs))));
    zg__onnx_attr last = ZG__ONNX_I("axis", -1);
    const char *masked = op2(e, "Add", s, mask);
    const char *p = zg__onnx_node(e->g, "Softmax", &masked, 1, &last, 1);
    const char *y = transpose(e, op2(e, "MatMul", p, v), bhtd, 4);
    y = op2(e, "Reshape", y, ints(e, (const int64_t[]){0, 0, C}, 3));
    return linear(e, c_proj, y, 3);
}

/* x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)) */
static const char *block(exporter *e, const zg_module *b, const char *x, const char *mask) {
    int rank = 3;
    const char *a = attention(e, child(b, "attn"), layer_norm(e, child(b, "ln_1"), x), mask);
    x = op2(e, "Add", x, a);
    const char *f = module(e, child(b, "mlp"), layer_norm(e, child(b, "ln_2"), x), &rank);
    return f ? op2(e, "Add", x, f) : NULL;
}

/* The [block, block] causal mask, sliced to [T, T] by the input's T. */
static const char *causal_mask(exporter *e, int64_t block, const char *T1) {
    float *mask = zg__malloc((size_t)(block * block) * sizeof *mask);
    const char *name = mask ? zg__onnx_name(e->g, "causal_mask") : NULL;
    for (int64_t i = 0; name && i < block; i++)
        for (int64_t j = 0; j < block; j++) mask[i * block + j] = j > i ? -INFINITY : 0.0f;
    if (name) zg__onnx_initializer(e->g, name, ZG_FLOAT32, (const int64_t[]){block, block}, 2, mask);
    free(mask);
    if (!name) return NULL;
    const char *ends = zg__onnx_node(e->g, "Concat", (const char *const[]){T1, T1}, 2, &ZG__ONNX_I("axis", 0), 1);
    const char *zeros = ints(e, (const int64_t[]){0, 0}, 2);
    return zg__onnx_node(e->g, "Slice", (const char *const[]){name, zeros, ends, ints(e, (const int64_t[]){0, 1}, 2)},
                         4, NULL, 0);
}

/* idx [N, T] -> logits [N, T, V] (iv: vocab_size, block_size). */
static const char *gpt(exporter *e, const zg_module *m, const char *idx) {
    const zg_module *tf = child(m, "transformer");
    const zg_module *h = child(tf, "h");
    const char *wte = param(e, child(tf, "wte")->params[0]), *wpe = param(e, child(tf, "wpe")->params[0]);
    zg__onnx_attr tdim[2] = {ZG__ONNX_I("start", 1), ZG__ONNX_I("end", 2)};
    const char *T1 = zg__onnx_node(e->g, "Shape", &idx, 1, tdim, 2); /* [T] */
    const char *zero = ints(e, (const int64_t[]){0}, 1);
    const char *pos = zg__onnx_node(e->g, "Slice", (const char *const[]){wpe, zero, T1, zero}, 4, NULL, 0);
    const char *x = op2(e, "Add", op2(e, "Gather", wte, idx), pos);
    const char *mask = causal_mask(e, m->iv[1], T1);
    for (int i = 0; i < h->n_children && x && mask; i++) x = block(e, h->children[i], x, mask);
    if (!x || !mask) return NULL;
    x = layer_norm(e, child(tf, "ln_f"), x);
    return op2(e, "MatMul", x, transpose(e, wte, (const int64_t[]){1, 0}, 2));
}

/* ---- the model ------------------------------------------------------------------ */

/* The shape of m's output for one sample of `sample` (zgrad's own forward,
 * eval mode, no graph): this also checks that the model takes it. */
static int output_shape(const char *fn, zg_module *m, const int64_t *sample, int ndim, int64_t *out, int *out_ndim) {
    int64_t shape[MAX_NDIM + 1] = {1};
    memcpy(shape + 1, sample, (size_t)ndim * sizeof *shape);
    const bool was_training = zg_module_is_training(m);
    zg_module_train(m, false);
    zg_no_grad_enter();
    const size_t mark = zg_arena_mark();
    zg_tensor *x = zg__empty(ZG_FLOAT32, shape, ndim + 1), *y = NULL;
    if (x) {
        memset(zg__f32(x), 0, (size_t)x->numel * sizeof(float));
        y = zg_module_forward(m, x);
    }
    if (y && y->ndim <= MAX_NDIM) {
        *out_ndim = y->ndim;
        memcpy(out, y->shape, (size_t)y->ndim * sizeof *out);
    }
    zg_arena_release(mark);
    zg_no_grad_exit();
    zg_module_train(m, was_training);
    if (!y) {
        char inner[1024];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        return zg__fail(ZG_ERR_SHAPE, "%s: the model does not take an input of one sample's shape: %s", fn, inner);
    }
    return *out_ndim == y->ndim ? ZG_OK : zg__fail(ZG_ERR_SHAPE, "%s: the output has more than %d dims", fn, MAX_NDIM);
}

/* The graph of a Sequential (or any module of the table above) on
 * float input [N, sample...], normalised first as (x - mean) / std when
 * norm is given. */
static const char *image_graph(exporter *e, zg_module *m, const int64_t *sample, int ndim, const input_norm *norm) {
    const char *N[MAX_NDIM + 1] = {"N"};
    int64_t in[MAX_NDIM + 1] = {0}, out[MAX_NDIM];
    memcpy(in + 1, sample, (size_t)ndim * sizeof *in);
    zg__onnx_value(e->g, false, "input", ZG_FLOAT32, in, N, ndim + 1);
    int rank = ndim + 1, out_ndim = 0;
    const char *x = norm ? op2(e, "Div", op2(e, "Sub", "input", per_entry(e, norm->mean, norm->k, ndim)),
                               per_entry(e, norm->std, norm->k, ndim))
                         : "input";
    const char *y = module(e, m, x, &rank);
    if (y && (e->rc = output_shape(e->fn, m, sample, ndim, out, &out_ndim))) return NULL;
    if (y) zg__onnx_node_outs(e->g, "Identity", &y, 1, NULL, 0, (const char *const[]){"output"}, 1);
    if (y) zg__onnx_value(e->g, true, "output", ZG_FLOAT32, out, N, out_ndim);
    return y;
}

static const char *gpt_graph(exporter *e, const zg_module *m) {
    const char *NT[3] = {"N", "T"};
    zg__onnx_value(e->g, false, "idx", ZG_INT64, (const int64_t[]){0, 0}, NT, 2);
    zg__onnx_value(e->g, true, "logits", ZG_FLOAT32, (const int64_t[]){0, 0, m->iv[0]}, NT, 3);
    const char *y = gpt(e, m, "idx");
    if (y) zg__onnx_node_outs(e->g, "Identity", &y, 1, NULL, 0, (const char *const[]){"logits"}, 1);
    return y;
}

static int export_model(const char *fn, zg_module *m, const int64_t *sample_shape, int ndim, const input_norm *norm,
                        const char *path) {
    if (!m || !path) return zg__fail(ZG_ERR_ARG, "%s: NULL argument", fn);
    const bool is_gpt = !strcmp(m->type, "GPT");
    if (!is_gpt && (!sample_shape || ndim < 1 || ndim >= MAX_NDIM))
        return zg__fail(ZG_ERR_ARG, "%s: need the shape of one input sample (1 to %d dims, got %d)", fn, MAX_NDIM - 1,
                        ndim);
    for (int i = 0; !is_gpt && i < ndim; i++)
        if (sample_shape[i] < 1)
            return zg__fail(ZG_ERR_ARG, "%s: sample dim %d is %lld, must be >= 1", fn, i, (long long)sample_shape[i]);
    char doc[160];
    snprintf(doc, sizeof doc, "exported by zgrad %s (eval mode)", ZG_VERSION);
    exporter e = {.g = zg__onnx_new(OPSET, is_gpt ? "zgrad_gpt" : "zgrad_model", doc), .fn = fn};
    if (!e.g) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    const char *y = is_gpt ? gpt_graph(&e, m) : image_graph(&e, m, sample_shape, ndim, norm);
    int rc = e.rc ? e.rc : !y ? zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn) : zg__onnx_save(e.g, fn, path);
    zg__onnx_free(e.g);
    return rc;
}

int zg_onnx_export(zg_module *m, const int64_t *sample_shape, int ndim, const char *path) {
    return export_model("zg_onnx_export", m, sample_shape, ndim, NULL, path);
}

/* ---- a run's model ------------------------------------------------------------------ */

int zg_train_export_onnx(const char *run, const char *path) {
    const char *fn = "zg_train_export_onnx";
    if (!run || !path) return zg__fail(ZG_ERR_ARG, "%s: NULL argument", fn);
    char ckpt[4200], dir[4200];
    zg__ckpt_state s;
    int rc = zg__ckpt_locate(fn, run, ckpt, sizeof ckpt, dir, sizeof dir);
    if (!rc) rc = zg__ckpt_read_state(fn, ckpt, &s);
    if (rc) return rc;
    int64_t shape[ZG_MAX_DIMS];
    int nd = 0;
    zg_module *m = zg__ckpt_model(fn, &s, shape, &nd);
    const float mean = s.mean, std = s.std;
    const bool is_gpt = s.model == ZG_MODEL_GPT;
    zg__data_desc d = {0}; /* --csv / --images: per feature or channel */
    rc = s.data_json ? zg__data_desc_parse(fn, s.data_json, &d) : ZG_OK;
    zg__ckpt_state_free(&s);
    input_norm norm = {d.mean ? d.mean : &mean, d.std ? d.std : &std, d.mean ? d.n_stats : 1};
    if (!rc && !m) rc = ZG_ERR_FORMAT;
    if (!rc) rc = zg__ckpt_load(fn, ckpt, m, NULL);
    if (!rc) rc = export_model(fn, m, shape, nd, is_gpt ? NULL : &norm, path);
    zg_module_free(m);
    zg__data_desc_free(&d);
    return rc;
}
