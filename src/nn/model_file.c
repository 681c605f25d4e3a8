/* Models described in JSON as PyTorch's nn.Sequential:
 *
 *   {"input": [1, 28, 28],
 *    "layers": [{"type": "Conv2d", "in_channels": 1, "out_channels": 32,
 *                "kernel_size": 3, "padding": 1},
 *               {"type": "ReLU"}, ..., {"type": "Linear", "args": [128, 10]}]}
 *
 * Each layer has PyTorch's class name and constructor arguments, by name or
 * in PyTorch's order under "args", with PyTorch's defaults. The shapes are
 * followed from the input (one sample, no batch dimension) through every
 * layer before anything is built, so a mismatch names the layer and both
 * shapes; the same walk gives the summary (output shapes, parameters,
 * FLOPs). The module is a Sequential, so the parameters are named as
 * PyTorch's state_dict names them ("0.weight", "3.bias", ...). */
#include "nn_internal.h"
#include "../util/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 256
#define MAX_DIMS 4
#define MAX_FILE (1 << 20)

/* A_OPT_INT: an integer or null (PyTorch's None, stored as -1); A_OPT_NUM:
 * a number or null (stored as NaN). */
typedef enum { A_INT, A_NUM, A_BOOL, A_GELU, A_OPT_INT, A_OPT_NUM } arg_type;

typedef struct {
    const char *name;
    arg_type type;
    double def; /* NAN: required */
} arg_def;

typedef enum {
    K_LINEAR, K_CONV2D, K_MAXPOOL2D, K_AVGPOOL2D, K_BATCHNORM1D, K_BATCHNORM2D, K_RELU, K_LEAKYRELU, K_GELU,
    K_TANH, K_SIGMOID, K_DROPOUT, K_FLATTEN, K_ADAPTIVEAVGPOOL2D, K_GPT, N_KINDS
} kind;

typedef struct {
    const char *type;
    arg_def args[8];
    int n_args;
} kind_def;

/* PyTorch's names, order and defaults; a pooling stride of -1 is
 * PyTorch's None (the kernel size). */
static const kind_def kinds[N_KINDS] = {
    [K_LINEAR] = {"Linear", {{"in_features", A_INT, NAN}, {"out_features", A_INT, NAN}, {"bias", A_BOOL, 1}}, 3},
    [K_CONV2D] = {"Conv2d",
                  {{"in_channels", A_INT, NAN}, {"out_channels", A_INT, NAN}, {"kernel_size", A_INT, NAN},
                   {"stride", A_INT, 1}, {"padding", A_INT, 0}, {"dilation", A_INT, 1}, {"groups", A_INT, 1},
                   {"bias", A_BOOL, 1}},
                  8},
    [K_MAXPOOL2D] = {"MaxPool2d",
                     {{"kernel_size", A_INT, NAN}, {"stride", A_OPT_INT, -1}, {"padding", A_INT, 0},
                      {"dilation", A_INT, 1}, {"return_indices", A_BOOL, 0}, {"ceil_mode", A_BOOL, 0}},
                     6},
    [K_AVGPOOL2D] = {"AvgPool2d",
                     {{"kernel_size", A_INT, NAN}, {"stride", A_OPT_INT, -1}, {"padding", A_INT, 0},
                      {"ceil_mode", A_BOOL, 0}, {"count_include_pad", A_BOOL, 1}, {"divisor_override", A_OPT_INT, -1}},
                     6},
    [K_BATCHNORM1D] = {"BatchNorm1d",
                       {{"num_features", A_INT, NAN}, {"eps", A_NUM, 1e-5}, {"momentum", A_OPT_NUM, 0.1}}, 3},
    [K_BATCHNORM2D] = {"BatchNorm2d",
                       {{"num_features", A_INT, NAN}, {"eps", A_NUM, 1e-5}, {"momentum", A_OPT_NUM, 0.1}}, 3},
    [K_RELU] = {"ReLU", {{"inplace", A_BOOL, 0}}, 1},
    [K_LEAKYRELU] = {"LeakyReLU", {{"negative_slope", A_NUM, 0.01}, {"inplace", A_BOOL, 0}}, 2},
    [K_GELU] = {"GELU", {{"approximate", A_GELU, 0}}, 1},
    [K_TANH] = {"Tanh", {{0}}, 0},
    [K_SIGMOID] = {"Sigmoid", {{0}}, 0},
    [K_DROPOUT] = {"Dropout", {{"p", A_NUM, 0.5}, {"inplace", A_BOOL, 0}}, 2},
    [K_FLATTEN] = {"Flatten", {{"start_dim", A_INT, 1}, {"end_dim", A_INT, -1}}, 2},
    [K_ADAPTIVEAVGPOOL2D] = {"AdaptiveAvgPool2d", {{"output_size", A_INT, NAN}}, 1},
    /* nanoGPT's GPTConfig: its names, order and defaults. */
    [K_GPT] = {"GPT",
               {{"block_size", A_INT, 1024}, {"vocab_size", A_INT, 50304}, {"n_layer", A_INT, 12}, {"n_head", A_INT, 12},
                {"n_embd", A_INT, 768}, {"dropout", A_NUM, 0.0}, {"bias", A_BOOL, 1}},
               7},
};

typedef struct {
    kind k;
    double v[8]; /* the arguments in kind_def order */
    /* filled by the shape walk */
    int64_t out[MAX_DIMS];
    int out_nd;
    int64_t params, flops;
} layer;

struct zg_model_spec {
    int64_t input[MAX_DIMS];
    int input_nd;
    layer *layers;
    int n;
    char *json; /* the canonical text (zg_model_spec_json) */
};

void zg_model_spec_free(zg_model_spec *s) {
    if (!s) return;
    free(s->layers);
    free(s->json);
    free(s);
}

/* ---- parsing ------------------------------------------------------------------ */

static void shape_str(char *out, size_t n, const int64_t *d, int nd) {
    size_t k = (size_t)snprintf(out, n, "[");
    for (int i = 0; i < nd && k < n; i++) k += (size_t)snprintf(out + k, n - k, "%s%lld", i ? ", " : "", (long long)d[i]);
    if (k < n) snprintf(out + k, n - k, "]");
}

/* A number node as an argument of type t into *v; false if it is not one. */
static bool arg_value(const zg__json *j, arg_type t, double *v) {
    if (t == A_OPT_INT || t == A_OPT_NUM) {
        if (j->type == ZG_JSON_NULL) {
            *v = t == A_OPT_INT ? -1 : NAN;
            return true;
        }
        t = t == A_OPT_INT ? A_INT : A_NUM;
    }
    if (t == A_BOOL) {
        if (j->type != ZG_JSON_BOOL) return false;
        *v = j->boolean;
        return true;
    }
    if (t == A_GELU) {
        if (j->type != ZG_JSON_STRING || (strcmp(j->str, "none") && strcmp(j->str, "tanh"))) return false;
        *v = !strcmp(j->str, "tanh");
        return true;
    }
    /* A square size may be written [k, k], as PyTorch accepts a pair. */
    if (t == A_INT && j->type == ZG_JSON_ARRAY && j->n == 2 && j->items[0].type == ZG_JSON_NUMBER &&
        j->items[1].type == ZG_JSON_NUMBER && j->items[0].fits_int64 && j->items[1].fits_int64 &&
        j->items[0].integer == j->items[1].integer)
        j = &j->items[0];
    if (j->type != ZG_JSON_NUMBER) return false;
    if (t == A_INT) {
        if (!j->is_integer || !j->fits_int64 || j->integer < -(INT64_C(1) << 40) || j->integer > (INT64_C(1) << 40))
            return false;
        *v = (double)j->integer;
        return true;
    }
    char buf[64];
    size_t n = j->num_len < sizeof buf - 1 ? j->num_len : sizeof buf - 1;
    memcpy(buf, j->num_text, n);
    buf[n] = '\0';
    *v = strtod(buf, NULL);
    return isfinite(*v);
}

static const char *type_desc(arg_type t) {
    return t == A_INT       ? "an integer"
           : t == A_NUM     ? "a number"
           : t == A_BOOL    ? "true or false"
           : t == A_OPT_INT ? "an integer or null"
           : t == A_OPT_NUM ? "a number or null"
                            : "\"none\" or \"tanh\"";
}

static int parse_layer(const char *fn, int i, const zg__json *j, layer *l) {
    if (j->type != ZG_JSON_OBJECT) return zg__fail(ZG_ERR_FORMAT, "%s: layer %d is not an object", fn, i);
    const char *type = NULL;
    for (int k = 0; k < j->n; k++)
        if (!strcmp(j->keys[k], "type") && j->items[k].type == ZG_JSON_STRING) type = j->items[k].str;
    if (!type) return zg__fail(ZG_ERR_FORMAT, "%s: layer %d has no \"type\" (a PyTorch class name, e.g. \"Linear\")", fn, i);
    int k = 0;
    while (k < N_KINDS && strcmp(kinds[k].type, type)) k++;
    if (k == N_KINDS)
        return zg__fail(ZG_ERR_FORMAT, "%s: layer %d: unknown type '%s' (known: Linear, Conv2d, MaxPool2d, AvgPool2d, "
                        "AdaptiveAvgPool2d, BatchNorm1d, BatchNorm2d, ReLU, LeakyReLU, GELU, Tanh, Sigmoid, Dropout, "
                        "Flatten, GPT)", fn, i, type);
    const kind_def *d = &kinds[k];
    l->k = (kind)k;
    bool set[8] = {false};
    for (int a = 0; a < j->n; a++) {
        const char *key = j->keys[a];
        const zg__json *v = &j->items[a];
        if (!strcmp(key, "type")) continue;
        if (!strcmp(key, "args")) {
            if (v->type != ZG_JSON_ARRAY || v->n > d->n_args)
                return zg__fail(ZG_ERR_FORMAT, "%s: layer %d (%s): \"args\" must be an array of at most %d values", fn,
                                i, type, d->n_args);
            for (int p = 0; p < v->n; p++) {
                if (set[p] || !arg_value(&v->items[p], d->args[p].type, &l->v[p]))
                    return zg__fail(ZG_ERR_FORMAT, "%s: layer %d (%s): argument %d (%s) must be %s, given once", fn, i,
                                    type, p + 1, d->args[p].name, type_desc(d->args[p].type));
                set[p] = true;
            }
            continue;
        }
        int p = 0;
        while (p < d->n_args && strcmp(d->args[p].name, key)) p++;
        if (p == d->n_args) {
            char known[256] = "";
            for (int q = 0; q < d->n_args; q++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", q ? ", " : "", d->args[q].name);
            return zg__fail(ZG_ERR_FORMAT, "%s: layer %d (%s): unknown argument '%s' (%s takes: %s)", fn, i, type, key,
                            type, d->n_args ? known : "none");
        }
        if (set[p] || !arg_value(v, d->args[p].type, &l->v[p]))
            return zg__fail(ZG_ERR_FORMAT, "%s: layer %d (%s): '%s' must be %s, given once", fn, i, type, key,
                            type_desc(d->args[p].type));
        set[p] = true;
    }
    for (int p = 0; p < d->n_args; p++) {
        if (set[p]) continue;
        if (isnan(d->args[p].def))
            return zg__fail(ZG_ERR_FORMAT, "%s: layer %d (%s): '%s' is required", fn, i, type, d->args[p].name);
        l->v[p] = d->args[p].def;
    }
    return ZG_OK;
}

/* ---- the shape walk ------------------------------------------------------------ */

static int64_t numel(const int64_t *d, int nd) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= d[i];
    return n;
}

/* PyTorch's output size of a window op: floor((n + 2p - dil (k - 1) - 1) / s)
 * + 1, or with ceil_mode rounded up, less a last window that would start
 * past the input and its left padding. */
static int64_t window_out(int64_t n, int64_t k, int64_t s, int64_t p, int64_t dil, bool ceil_mode) {
    const int64_t span = n + 2 * p - dil * (k - 1) - 1;
    if (span < 0) return 0;
    int64_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
    if (ceil_mode && (out - 1) * s >= n + p) out--;
    return out;
}

static zg_gpt_config gpt_config(const layer *l) {
    const double *v = l->v;
    return (zg_gpt_config){.block_size = (int64_t)v[0], .vocab_size = (int64_t)v[1], .n_layer = (int64_t)v[2],
                           .n_head = (int64_t)v[3], .n_embd = (int64_t)v[4], .dropout = (float)v[5],
                           .bias = v[6] != 0};
}

/* One transformer block's parameters: ln_1 and ln_2 (C each), c_attn
 * C x 3C, attn.c_proj C x C, c_fc C x 4C, mlp.c_proj 4C x C, and with bias
 * the biases 2C (LayerNorms) + 3C + C + 4C + C. */
static int64_t gpt_block_params(const zg_gpt_config *g) {
    const int64_t c = g->n_embd;
    return 12 * c * c + 2 * c + (g->bias ? 11 * c : 0);
}

/* A GPT takes T token ids per sample (T <= block_size) and gives [T,
 * vocab_size] logits. Its parameters are the state_dict's tensors, the
 * tied lm_head counted once; its FLOPs are those of the matmuls (2 per
 * multiply-add): per token and block 2 * 12 C^2 for the Linear layers and
 * 2 * 2 T C for the attention scores and their weighted sum (all T x T
 * scores, as the causal kernel computes them), and 2 C V for lm_head. */
static int walk_gpt(const char *fn, int i, layer *l, const int64_t *in, int nd) {
    const zg_gpt_config g = gpt_config(l);
    char got[96];
    shape_str(got, sizeof got, in, nd);
    if (g.vocab_size < 1 || g.vocab_size > INT32_MAX || g.block_size < 1 || g.block_size > 65536 || g.n_layer < 1 ||
        g.n_layer > 1000 || g.n_head < 1 || g.n_embd < 1 || g.n_embd > 65536)
        return zg__fail(ZG_ERR_ARG, "%s: layer %d (GPT): vocab_size must be positive, block_size and n_embd in [1, "
                        "65536], n_layer in [1, 1000], n_head >= 1", fn, i);
    if (g.n_embd % g.n_head)
        return zg__fail(ZG_ERR_ARG, "%s: layer %d (GPT): n_embd %lld is not a multiple of n_head %lld", fn, i,
                        (long long)g.n_embd, (long long)g.n_head);
    if (!(g.dropout >= 0 && g.dropout < 1))
        return zg__fail(ZG_ERR_ARG, "%s: layer %d (GPT): dropout must lie in [0, 1)", fn, i);
    if (nd != 1 || in[0] > g.block_size)
        return zg__fail(ZG_ERR_ARG, "%s: layer %d (GPT): expects [T] token ids per sample with T <= block_size "
                        "%lld, gets %s", fn, i, (long long)g.block_size, got);
    const int64_t c = g.n_embd, t = in[0];
    l->out[0] = t;
    l->out[1] = g.vocab_size;
    l->out_nd = 2;
    l->params = (g.vocab_size + g.block_size) * c + g.n_layer * gpt_block_params(&g) + c + (g.bias ? c : 0);
    l->flops = t * (g.n_layer * (24 * c * c + 4 * t * c) + 2 * c * g.vocab_size);
    return ZG_OK;
}

/* l's output shape for input in[0..nd), its parameters and its forward
 * FLOPs per sample (multiply and add counted apart; an elementwise op
 * counts one per element). */
static int walk_layer(const char *fn, int i, layer *l, const int64_t *in, int nd) {
    const double *v = l->v;
    const char *type = kinds[l->k].type;
    char got[96];
    shape_str(got, sizeof got, in, nd);
    memcpy(l->out, in, (size_t)nd * sizeof *in);
    l->out_nd = nd;
    l->params = l->flops = 0;
    const int64_t n = numel(in, nd);
    switch (l->k) {
    case K_LINEAR: {
        const int64_t fi = (int64_t)v[0], fo = (int64_t)v[1];
        if (fi < 1 || fo < 1) return zg__fail(ZG_ERR_ARG, "%s: layer %d (Linear): sizes must be positive", fn, i);
        if (nd < 1 || in[nd - 1] != fi)
            return zg__fail(ZG_ERR_ARG, "%s: layer %d (Linear): in_features is %lld but its input is %s per sample "
                            "(a Flatten before it?)", fn, i, (long long)fi, got);
        l->out[nd - 1] = fo;
        l->params = fi * fo + (v[2] ? fo : 0);
        l->flops = 2 * (n / fi) * fi * fo;
        return ZG_OK;
    }
    case K_CONV2D: {
        const int64_t ci = (int64_t)v[0], co = (int64_t)v[1], k = (int64_t)v[2], s = (int64_t)v[3], p = (int64_t)v[4];
        const int64_t dil = (int64_t)v[5], g = (int64_t)v[6];
        if (ci < 1 || co < 1 || k < 1 || s < 1 || p < 0 || dil < 1 || g < 1 || ci % g || co % g || k > 1024 ||
            s > 1024 || p > 1024 || dil > 1024)
            return zg__fail(ZG_ERR_ARG, "%s: layer %d (Conv2d): channels, kernel_size, stride, dilation and groups "
                            "must be positive (channels multiples of groups), padding >= 0", fn, i);
        if (nd != 3 || in[0] != ci)
            return zg__fail(ZG_ERR_ARG, "%s: layer %d (Conv2d): expects [%lld, H, W] per sample, gets %s", fn, i,
                            (long long)ci, got);
        const int64_t ho = window_out(in[1], k, s, p, dil, false), wo = window_out(in[2], k, s, p, dil, false);
        if (ho < 1 || wo < 1)
            return zg__fail(ZG_ERR_ARG, "%s: layer %d (Conv2d): the kernel does not fit in the input %s", fn, i, got);
        l->out[0] = co;
        l->out[1] = ho;
        l->out[2] = wo;
        l->params = co * (ci / g) * k * k + (v[7] ? co : 0);
        l->flops = 2 * co * ho * wo * (ci / g) * k * k;
        return ZG_OK;
    }
    case K_MAXPOOL2D:
    case K_AVGPOOL2D: {
        const int64_t k = (int64_t)v[0], s = v[1] < 0 ? k : (int64_t)v[1], p = (int64_t)v[2];
        const bool max = l->k == K_MAXPOOL2D, ceil_mode = max ? v[5] != 0 : v[3] != 0;
        if (k < 1 || k > 1024 || s < 1 || s > 1024 || p < 0 || 2 * p > k)
            return zg__fail(ZG_ERR_ARG, "%s: layer %d (%s): kernel_size and stride must be positive, padding at most "
                            "half the kernel", fn, i, type);
        if (max && (v[3] != 1 || v[4] != 0))
            return zg__fail(ZG_ERR_ARG, "%s: layer %d (MaxPool2d): only dilation=1 and return_indices=false", fn, i);
        if (!max && (v[5] == 0 || v[5] < -1 || v[5] > 1e9))
            return zg__fail(ZG_ERR_ARG, "%s: layer %d (AvgPool2d): divisor_override must be positive or null", fn, i);
        if (nd != 3)
            return zg__fail(ZG_ERR_ARG, "%s: layer %d (%s): expects [C, H, W] per sample, gets %s", fn, i, type, got);
        const int64_t ho = window_out(in[1], k, s, p, 1, ceil_mode), wo = window_out(in[2], k, s, p, 1, ceil_mode);
        if (ho < 1 || wo < 1)
            return zg__fail(ZG_ERR_ARG, "%s: layer %d (%s): the window does not fit in the input %s", fn, i, type, got);
        l->out[1] = ho;
        l->out[2] = wo;
        l->flops = in[0] * ho * wo * k * k;
        return ZG_OK;
    }
    case K_BATCHNORM1D:
    case K_BATCHNORM2D: {
        const int64_t f = (int64_t)v[0];
        const bool two = l->k == K_BATCHNORM2D;
        if (f < 1 || !(v[1] > 0) || !(isnan(v[2]) || (v[2] >= 0 && v[2] <= 1)))
            return zg__fail(ZG_ERR_ARG, "%s: layer %d (%s): num_features > 0, eps > 0, momentum in [0, 1] or null", fn,
                            i, type);
        if ((two && nd != 3) || (!two && nd != 1 && nd != 2) || in[0] != f)
            return zg__fail(ZG_ERR_ARG, "%s: layer %d (%s): expects [%lld%s] per sample, gets %s", fn, i, type,
                            (long long)f, two ? ", H, W" : "] or [num_features, L", got);
        l->params = 2 * f;
        l->flops = 2 * n;
        return ZG_OK;
    }
    case K_DROPOUT:
        if (!(v[0] >= 0 && v[0] < 1))
            return zg__fail(ZG_ERR_ARG, "%s: layer %d (Dropout): p must lie in [0, 1)", fn, i);
        return ZG_OK; /* nothing at evaluation */
    case K_ADAPTIVEAVGPOOL2D: {
        const int64_t o = (int64_t)v[0];
        if (o < 1 || o > (INT64_C(1) << 24))
            return zg__fail(ZG_ERR_ARG, "%s: layer %d (AdaptiveAvgPool2d): output_size must be positive", fn, i);
        if (nd != 3)
            return zg__fail(ZG_ERR_ARG, "%s: layer %d (AdaptiveAvgPool2d): expects [C, H, W] per sample, gets %s", fn,
                            i, got);
        l->out[1] = l->out[2] = o;
        l->flops = n;
        return ZG_OK;
    }
    case K_GPT: return walk_gpt(fn, i, l, in, nd);
    case K_FLATTEN:
        if (v[0] != 1 || v[1] != -1)
            return zg__fail(ZG_ERR_ARG, "%s: layer %d (Flatten): only start_dim=1, end_dim=-1 (everything but the "
                            "batch)", fn, i);
        l->out[0] = n;
        l->out_nd = 1;
        return ZG_OK;
    default: /* activations */
        l->flops = n;
        return ZG_OK;
    }
}

/* ---- the canonical text ---------------------------------------------------------- */

static int canonical_json(zg_model_spec *s) {
    zg__strbuf b = {0};
    zg__sb_printf(&b, "{\"input\": [");
    for (int i = 0; i < s->input_nd; i++) zg__sb_printf(&b, "%s%lld", i ? ", " : "", (long long)s->input[i]);
    zg__sb_printf(&b, "], \"layers\": [");
    for (int i = 0; i < s->n; i++) {
        const kind_def *d = &kinds[s->layers[i].k];
        zg__sb_printf(&b, "%s{\"type\": \"%s\"", i ? ", " : "", d->type);
        for (int p = 0; p < d->n_args; p++) {
            const double v = s->layers[i].v[p];
            if (d->args[p].type == A_BOOL) zg__sb_printf(&b, ", \"%s\": %s", d->args[p].name, v ? "true" : "false");
            else if (d->args[p].type == A_GELU) zg__sb_printf(&b, ", \"%s\": \"%s\"", d->args[p].name, v ? "tanh" : "none");
            else if ((d->args[p].type == A_OPT_INT && v < 0) || (d->args[p].type == A_OPT_NUM && isnan(v)))
                zg__sb_printf(&b, ", \"%s\": null", d->args[p].name);
            else if (d->args[p].type == A_INT || d->args[p].type == A_OPT_INT)
                zg__sb_printf(&b, ", \"%s\": %lld", d->args[p].name, (long long)v);
            else zg__sb_printf(&b, ", \"%s\": %.17g", d->args[p].name, v);
        }
        zg__sb_printf(&b, "}");
    }
    zg__sb_printf(&b, "]}");
    if (b.failed) {
        zg__sb_free(&b);
        return zg__fail(ZG_ERR_NOMEM, "zg_model_spec: out of memory");
    }
    s->json = b.s;
    return ZG_OK;
}

/* ---- the public calls ------------------------------------------------------------ */

static int parse_input(const char *fn, const zg__json *j, zg_model_spec *s) {
    if (!j || j->type != ZG_JSON_ARRAY || j->n < 1 || j->n > 3)
        return zg__fail(ZG_ERR_FORMAT, "%s: \"input\" must be the shape of one sample, 1 to 3 positive integers "
                        "(e.g. [1, 28, 28])", fn);
    for (int i = 0; i < j->n; i++) {
        const zg__json *d = &j->items[i];
        if (d->type != ZG_JSON_NUMBER || !d->fits_int64 || d->integer < 1 || d->integer > (INT64_C(1) << 24))
            return zg__fail(ZG_ERR_FORMAT, "%s: \"input\" dimension %d must be an integer in [1, 2^24]", fn, i);
        s->input[i] = d->integer;
    }
    s->input_nd = j->n;
    return ZG_OK;
}

/* A GPT is a model of its own (its parameters named as nanoGPT's, not
 * "0.transformer..."): the only layer, its input [T] token ids, by
 * default [block_size]. */
static int parse_gpt_input(const char *fn, const zg__json *input, zg_model_spec *s) {
    for (int i = 0; i < s->n; i++)
        if (s->layers[i].k == K_GPT && s->n > 1)
            return zg__fail(ZG_ERR_FORMAT, "%s: layer %d (GPT): a GPT must be the only layer (it is a whole model, "
                            "its parameters named as nanoGPT's)", fn, i);
    if (s->layers[0].k != K_GPT || input) return parse_input(fn, input, s);
    s->input[0] = (int64_t)s->layers[0].v[0];
    s->input_nd = 1;
    return ZG_OK;
}

static int parse_spec(const char *fn, const zg__json *root, zg_model_spec *s) {
    if (root->type != ZG_JSON_OBJECT)
        return zg__fail(ZG_ERR_FORMAT, "%s: expected an object with \"input\" and \"layers\"", fn);
    const zg__json *input = NULL, *layers = NULL;
    for (int k = 0; k < root->n; k++) {
        if (!strcmp(root->keys[k], "input")) input = &root->items[k];
        else if (!strcmp(root->keys[k], "layers")) layers = &root->items[k];
        else return zg__fail(ZG_ERR_FORMAT, "%s: unknown key '%s' (expected \"input\" and \"layers\")", fn, root->keys[k]);
    }
    if (!layers || layers->type != ZG_JSON_ARRAY || layers->n < 1 || layers->n > MAX_LAYERS)
        return zg__fail(ZG_ERR_FORMAT, "%s: \"layers\" must be an array of 1 to %d layers", fn, MAX_LAYERS);
    if (!(s->layers = zg__calloc((size_t)layers->n, sizeof *s->layers)))
        return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    s->n = layers->n;
    int rc;
    for (int i = 0; i < s->n; i++)
        if ((rc = parse_layer(fn, i, &layers->items[i], &s->layers[i]))) return rc;
    if ((rc = parse_gpt_input(fn, input, s))) return rc;
    const int64_t *in = s->input;
    int nd = s->input_nd;
    for (int i = 0; i < s->n; i++) {
        if ((rc = walk_layer(fn, i, &s->layers[i], in, nd))) return rc;
        in = s->layers[i].out;
        nd = s->layers[i].out_nd;
    }
    return canonical_json(s);
}

zg_model_spec *zg_model_spec_parse(const char *json, size_t len, const char *name) {
    char fn[320];
    snprintf(fn, sizeof fn, "zg_model_spec: '%s'", name ? name : "(text)");
    if (!json) return zg__fail_null("%s: NULL text", fn);
    char err[256];
    zg__json *root = NULL;
    if (zg__json_parse(json, len, 100000, &root, err, sizeof err))
        return zg__fail_null("%s: not valid JSON: %s", fn, err);
    /* A key given twice (at the top or in a layer) is an error, as it
     * would be ambiguous which one counts. */
    const char *dup = NULL;
    int where = -1, drc = zg__json_duplicate_key(root, &dup);
    for (int i = 0; !drc && !dup && root->type == ZG_JSON_OBJECT && i < root->n; i++)
        for (int k = 0; !drc && !dup && !strcmp(root->keys[i], "layers") && root->items[i].type == ZG_JSON_ARRAY &&
                        k < root->items[i].n;
             k++)
            if (!(drc = zg__json_duplicate_key(&root->items[i].items[k], &dup)) && dup) where = k;
    if (drc || dup) {
        if (drc) zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
        else if (where < 0) zg__fail(ZG_ERR_FORMAT, "%s: the key '%s' appears twice", fn, dup);
        else zg__fail(ZG_ERR_FORMAT, "%s: layer %d: the key '%s' appears twice", fn, where, dup);
        zg__json_free(root);
        return NULL;
    }
    zg_model_spec *s = zg__calloc(1, sizeof *s);
    int rc = s ? parse_spec(fn, root, s) : zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    zg__json_free(root);
    if (rc) {
        zg_model_spec_free(s);
        return NULL;
    }
    return s;
}

zg_model_spec *zg_model_spec_load(const char *path) {
    if (!path) return zg__fail_null("zg_model_spec_load: path is NULL");
    FILE *f = fopen(path, "rb");
    if (!f) return zg__fail_null("zg_model_spec_load: cannot open '%s'", path);
    char *buf = zg__malloc(MAX_FILE + 1);
    size_t n = buf ? fread(buf, 1, MAX_FILE + 1, f) : 0;
    const bool err = ferror(f);
    fclose(f);
    if (!buf) return zg__fail_null("zg_model_spec_load: out of memory");
    zg_model_spec *s = NULL;
    if (err) zg__fail(ZG_ERR_IO, "zg_model_spec_load: error reading '%s'", path);
    else if (n > MAX_FILE) zg__fail(ZG_ERR_FORMAT, "zg_model_spec_load: '%s' is larger than %d bytes", path, MAX_FILE);
    else s = zg_model_spec_parse(buf, n, path);
    free(buf);
    return s;
}

const char *zg_model_spec_json(const zg_model_spec *s) { return s ? s->json : NULL; }

bool zg_model_spec_gpt(const zg_model_spec *s, zg_gpt_config *config) {
    if (!s || s->layers[0].k != K_GPT) return false;
    if (config) *config = gpt_config(&s->layers[0]);
    return true;
}

int zg_model_spec_shape(const zg_model_spec *s, bool output, int64_t *shape, int max) {
    if (!s || (!shape && max > 0)) return zg__fail(ZG_ERR_ARG, "zg_model_spec_shape: NULL argument");
    const int64_t *d = output ? s->layers[s->n - 1].out : s->input;
    const int nd = output ? s->layers[s->n - 1].out_nd : s->input_nd;
    for (int i = 0; i < nd && i < max; i++) shape[i] = d[i];
    return nd;
}

/* The layer's module (PyTorch's default init, from the default generator). */
static zg_module *build_layer(const layer *l) {
    const double *v = l->v;
    switch (l->k) {
    case K_LINEAR: return zg_nn_linear((int64_t)v[0], (int64_t)v[1], v[2] != 0);
    case K_CONV2D:
        return zg_nn_conv2d((int64_t)v[0], (int64_t)v[1], (int)v[2], (int)v[3], (int)v[4], (int)v[5], (int)v[6],
                            v[7] != 0);
    case K_MAXPOOL2D: {
        const zg_pool_opts o = {.ceil_mode = v[5] != 0};
        return zg_nn_max_pool2d_ex((int)v[0], v[1] < 0 ? (int)v[0] : (int)v[1], (int)v[2], &o);
    }
    case K_AVGPOOL2D: {
        const zg_pool_opts o = {.ceil_mode = v[3] != 0, .exclude_pad = v[4] == 0,
                                .divisor_override = v[5] < 0 ? 0 : (int)v[5]};
        return zg_nn_avg_pool2d_ex((int)v[0], v[1] < 0 ? (int)v[0] : (int)v[1], (int)v[2], &o);
    }
    case K_BATCHNORM1D:
        return zg_nn_batch_norm1d((int64_t)v[0], (float)v[1], isnan(v[2]) ? ZG_BN_MOMENTUM_NONE : (float)v[2]);
    case K_BATCHNORM2D:
        return zg_nn_batch_norm2d((int64_t)v[0], (float)v[1], isnan(v[2]) ? ZG_BN_MOMENTUM_NONE : (float)v[2]);
    case K_ADAPTIVEAVGPOOL2D: return zg_nn_adaptive_avg_pool2d((int64_t)v[0], (int64_t)v[0]);
    case K_RELU: return zg_nn_relu();
    case K_LEAKYRELU: return zg_nn_leaky_relu((float)v[0]);
    case K_GELU: return zg_nn_gelu(v[0] != 0);
    case K_TANH: return zg_nn_tanh();
    case K_SIGMOID: return zg_nn_sigmoid();
    case K_DROPOUT: return zg_nn_dropout((float)v[0]);
    case K_FLATTEN: return zg_nn_flatten();
    case K_GPT: {
        const zg_gpt_config g = gpt_config(l);
        return zg_nn_gpt(&g);
    }
    default: return zg__fail_null("zg_model_spec_build: unknown layer kind %d", (int)l->k);
    }
}

zg_module *zg_model_spec_build(const zg_model_spec *s) {
    if (!s) return zg__fail_null("zg_model_spec_build: spec is NULL");
    if (s->layers[0].k == K_GPT) return build_layer(&s->layers[0]); /* the only layer */
    zg_module **mods = zg__calloc((size_t)s->n, sizeof *mods);
    if (!mods) return zg__fail_null("zg_model_spec_build: out of memory");
    int ok = 1;
    for (int i = 0; i < s->n && ok; i++) ok = (mods[i] = build_layer(&s->layers[i])) != NULL;
    zg_module *m = NULL;
    if (ok) {
        m = zg_nn_sequential(mods, s->n); /* owns them, also on failure */
    } else {
        for (int i = 0; i < s->n; i++) zg_module_free(mods[i]);
    }
    free(mods);
    return m;
}

/* A GPT's rows as nanoGPT's modules: the embeddings, each block, ln_f and
 * the tied lm_head (no parameters of its own); then nanoGPT's
 * get_num_params(), which leaves out the position embeddings. */
static void gpt_summary(zg__strbuf *b, const zg_model_spec *s) {
    const layer *l = &s->layers[0];
    const zg_gpt_config g = gpt_config(l);
    const int64_t t = s->input[0], c = g.n_embd, v = g.vocab_size;
    char ti[32], tc[64], tv[64], name[64];
    shape_str(ti, sizeof ti, s->input, 1);
    shape_str(tc, sizeof tc, (const int64_t[]){t, c}, 2);
    shape_str(tv, sizeof tv, l->out, 2);
    zg__sb_printf(b, "%-34s %-16s %12s %16s\n", "Layer (type)", "Output shape", "Param #", "FLOPs");
    zg__sb_printf(b, "%-34s %-16s %12s %16s\n", "input (token ids)", ti, "", "");
    zg__sb_printf(b, "%-34s %-16s %12lld %16d\n", "transformer.wte (Embedding)", tc, (long long)(v * c), 0);
    zg__sb_printf(b, "%-34s %-16s %12lld %16d\n", "transformer.wpe (Embedding)", tc, (long long)(g.block_size * c), 0);
    zg__sb_printf(b, "%-34s %-16s %12d %16d\n", "transformer.drop (Dropout)", tc, 0, 0);
    for (int64_t i = 0; i < g.n_layer; i++) {
        snprintf(name, sizeof name, "transformer.h.%lld (Block)", (long long)i);
        zg__sb_printf(b, "%-34s %-16s %12lld %16lld\n", name, tc, (long long)gpt_block_params(&g),
                      (long long)(t * (24 * c * c + 4 * t * c)));
    }
    zg__sb_printf(b, "%-34s %-16s %12lld %16d\n", "transformer.ln_f (LayerNorm)", tc, (long long)(g.bias ? 2 * c : c), 0);
    zg__sb_printf(b, "%-34s %-16s %12d %16lld\n", "lm_head (Linear, tied to wte)", tv, 0, (long long)(2 * t * c * v));
    zg__sb_printf(b, "Total params: %lld (%.2f MB as float32)\n", (long long)l->params, (double)l->params * 4 / 1e6);
    zg__sb_printf(b, "nanoGPT's get_num_params(): %lld (position embeddings left out)\n",
                  (long long)(l->params - g.block_size * c));
    zg__sb_printf(b, "Forward FLOPs per sample of %lld tokens: %lld (%.2f MFLOP; %lld per token; matmuls only, a "
                  "multiply-add is 2)\n", (long long)t, (long long)l->flops, (double)l->flops / 1e6,
                  (long long)(l->flops / t));
}

/* The table of a Sequential: one row per layer, then the totals. */
static void layers_summary(zg__strbuf *b, const zg_model_spec *s) {
    char shape[96];
    int64_t params = 0, flops = 0;
    shape_str(shape, sizeof shape, s->input, s->input_nd);
    zg__sb_printf(b, "%-22s %-20s %12s %16s\n", "Layer (type)", "Output shape", "Param #", "FLOPs");
    zg__sb_printf(b, "%-22s %-20s %12s %16s\n", "input", shape, "", "");
    for (int i = 0; i < s->n; i++) {
        const layer *l = &s->layers[i];
        char name[40];
        snprintf(name, sizeof name, "%d %s", i, kinds[l->k].type);
        shape_str(shape, sizeof shape, l->out, l->out_nd);
        zg__sb_printf(b, "%-22s %-20s %12lld %16lld\n", name, shape, (long long)l->params, (long long)l->flops);
        params += l->params;
        flops += l->flops;
    }
    zg__sb_printf(b, "Total params: %lld (%.2f MB as float32)\n", (long long)params, (double)params * 4 / 1e6);
    zg__sb_printf(b, "Forward FLOPs per sample: %lld (%.2f MFLOP; a multiply-add is 2)\n", (long long)flops,
                  (double)flops / 1e6);
}

char *zg_model_spec_summary(const zg_model_spec *s) {
    if (!s) return zg__fail_null("zg_model_spec_summary: spec is NULL");
    zg__strbuf b = {0};
    if (s->layers[0].k == K_GPT) gpt_summary(&b, s);
    else layers_summary(&b, s);
    if (b.failed) {
        zg__sb_free(&b);
        return zg__fail_null("zg_model_spec_summary: out of memory");
    }
    return b.s;
}
