/* The transformer ops and modules: embedding and layer_norm. Values written out by
 * hand, errors, finite-difference checks, the same bits for 1 and 2
 * threads, and live parity with PyTorch
 * (tests/parity/transformer_reference.py). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ops/ops_internal.h"

#define SHAPE(...) ((int64_t[]){__VA_ARGS__}), (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t))

static zg_tensor *indices(const int64_t *vals, const int64_t *shape, int ndim) {
    return zg_tensor_from_data(ZG_INT64, vals, shape, ndim);
}

/* ---- embedding ------------------------------------------------------------ */

TEST(embedding_gathers_rows_and_sums_their_gradients) {
    /* weight [4,3] = 0..11; indices [2,2] = {2, 0; 2, 3}: row 2 used twice. */
    float wv[12];
    for (int i = 0; i < 12; i++) wv[i] = (float)i;
    zg_tensor *w = zgt_param_from(wv, SHAPE(4, 3));
    zg_tensor *idx = indices((int64_t[]){2, 0, 2, 3}, SHAPE(2, 2));
    zg_tensor *y = zg_embedding(w, idx, ZG_NO_PADDING_IDX);
    CHECK_PTR(y);
    CHECK(zg_tensor_ndim(y) == 3 && zg_tensor_size(y, 0) == 2 && zg_tensor_size(y, 1) == 2 &&
          zg_tensor_size(y, 2) == 3);
    CHECK_VALUES(y, ((float[]){6, 7, 8, 0, 1, 2, 6, 7, 8, 9, 10, 11}), 12, 0);
    CHECK(!strcmp(zg_tensor_grad_fn_name(y), "embedding"));
    /* dy = position p's row filled with p + 1: row 2 gets 1 + 3. */
    float gv[12];
    for (int i = 0; i < 12; i++) gv[i] = (float)(i / 3 + 1);
    zg_tensor *gy = zgt_from(gv, SHAPE(2, 2, 3));
    CHECK_OK(zg_backward(y, &(zg_backward_opts){.grad = gy}));
    CHECK_VALUES(zg_tensor_grad(w), ((float[]){2, 2, 2, 0, 0, 0, 4, 4, 4, 4, 4, 4}), 12, 0);
    zg_tensor_free(w);
    zg_tensor_free(idx);
    zg_tensor_free(gy);
    zg_arena_reset();
}

TEST(embedding_padding_row_gets_no_gradient) {
    zg_tensor *w = zgt_param(zg_randn(SHAPE(5, 2)));
    zg_tensor *idx = indices((int64_t[]){4, 1, 4, 0}, SHAPE(4));
    const int64_t pads[2] = {4, -1}; /* -1 is the last row, 4 */
    for (int k = 0; k < 2; k++) {
        zg_tensor_zero_grad(w, true);
        zg_tensor *y = zg_embedding(w, idx, pads[k]);
        CHECK_PTR(y);
        /* the padding row is still looked up */
        CHECK(zg_tensor_get(y, 0) == zg_tensor_get(w, 8));
        CHECK_OK(zg_backward(zg_sum(y), NULL));
        CHECK_VALUES(zg_tensor_grad(w), ((float[]){1, 1, 1, 1, 0, 0, 0, 0, 0, 0}), 10, 0);
    }
    zg_tensor_free(w);
    zg_tensor_free(idx);
    zg_arena_reset();
}

TEST(embedding_errors_name_the_index) {
    zg_tensor *w = zgt_param(zg_randn(SHAPE(5, 2)));
    zg_tensor *bad = indices((int64_t[]){1, 5}, SHAPE(2));
    zg_tensor *neg = indices((int64_t[]){-1}, SHAPE(1));
    zg_tensor *ok = indices((int64_t[]){0}, SHAPE(1));
    zg_tensor *fl = zg_zeros(SHAPE(2));
    zg_tensor *w1 = zg_zeros(SHAPE(5));
    CHECK_NULL_ERR(zg_embedding(w, bad, ZG_NO_PADDING_IDX), "index 5 at position 1 is out of range");
    CHECK_NULL_ERR(zg_embedding(w, neg, ZG_NO_PADDING_IDX), "index -1 at position 0");
    CHECK_NULL_ERR(zg_embedding(w, fl, ZG_NO_PADDING_IDX), "indices must be int64");
    CHECK_NULL_ERR(zg_embedding(w1, ok, ZG_NO_PADDING_IDX), "must be 2-D");
    CHECK_NULL_ERR(zg_embedding(w, ok, 5), "padding_idx 5 must lie in [-5, 5)");
    CHECK_NULL_ERR(zg_embedding(w, ok, -6), "padding_idx -6");
    zg_tensor *tfs[] = {w, bad, neg, ok, fl, w1};
    for (int i = 0; i < 6; i++) zg_tensor_free(tfs[i]);
    zg_arena_reset();
}

static zg_tensor *op_embedding(zg_tensor *const *in, void *ctx) {
    return zg_embedding(in[0], ctx, ZG_NO_PADDING_IDX); /* a padding row is a constant: no finite difference */
}

TEST(embedding_gradcheck) {
    zg_tensor *w = zgt_param(zg_randn(SHAPE(6, 4)));
    zg_tensor *idx = indices((int64_t[]){3, 1, 3, 5, 0, 1, 1}, SHAPE(7));
    GRADCHECK("embedding", op_embedding, &w, 1, idx, NULL);
    zg_tensor_free(w);
    zg_tensor_free(idx);
    zg_arena_reset();
}

/* ---- layer_norm ------------------------------------------------------------ */

TEST(layer_norm_normalises_each_row) {
    /* rows {1,2,3,4} and {10,10,10,14}: mean 2.5 / 11, biased var 1.25 / 3. */
    zg_tensor *x = zgt_param_from((float[]){1, 2, 3, 4, 10, 10, 10, 14}, SHAPE(2, 4));
    zg_tensor *y = zg_layer_norm(x, (int64_t[]){4}, 1, NULL, NULL, 0.0f);
    CHECK_PTR(y);
    const double a = 1 / sqrt(1.25), b = 1 / sqrt(3.0);
    CHECK_VALUES(y, ((float[]){(float)(-1.5 * a), (float)(-0.5 * a), (float)(0.5 * a), (float)(1.5 * a), (float)-b,
                               (float)-b, (float)-b, (float)(3 * b)}),
                 8, 1e-6);
    CHECK(!strcmp(zg_tensor_grad_fn_name(y), "layer_norm"));
    /* affine: y = xhat * w + b */
    zg_tensor *w = zgt_param_from((float[]){2, 2, 2, 2}, SHAPE(4));
    zg_tensor *bias = zgt_param_from((float[]){1, 1, 1, 1}, SHAPE(4));
    zg_tensor *ya = zg_layer_norm(x, (int64_t[]){4}, 1, w, bias, 0.0f);
    CHECK_NEAR(zg_tensor_get(ya, 0), 1 - 3 * a, 1e-6);
    /* the sum of the normalised outputs does not move with x: dx = 0 */
    CHECK_OK(zg_backward(zg_sum(y), NULL));
    for (int i = 0; i < 8; i++) CHECK_NEAR(zg_tensor_get(zg_tensor_grad(x), i), 0, 1e-6);
    zg_tensor_free(x);
    zg_tensor_free(w);
    zg_tensor_free(bias);
    zg_arena_reset();
}

TEST(layer_norm_errors) {
    zg_tensor *x = zg_randn(SHAPE(2, 3, 4));
    zg_tensor *w3 = zg_ones(SHAPE(3));
    CHECK_NULL_ERR(zg_layer_norm(x, (int64_t[]){3}, 1, NULL, NULL, 1e-5f), "normalized_shape dim 0 is 3; x [2,3,4] has 4");
    CHECK_NULL_ERR(zg_layer_norm(x, (int64_t[]){4}, 0, NULL, NULL, 1e-5f), "normalized_shape must name 1 to 3");
    CHECK_NULL_ERR(zg_layer_norm(x, (int64_t[]){4}, 1, w3, NULL, 1e-5f), "weight of shape [3]");
    CHECK_NULL_ERR(zg_layer_norm(x, (int64_t[]){4}, 1, NULL, NULL, -1.0f), "eps");
    zg_tensor_free(x);
    zg_tensor_free(w3);
    zg_arena_reset();
}

typedef struct {
    int64_t ns[2];
    int k;
    bool affine, bias;
} ln_case;

static zg_tensor *op_layer_norm(zg_tensor *const *in, void *ctx) {
    const ln_case *c = ctx; /* in: x, then weight and bias where the case has them */
    return zg_layer_norm(in[0], c->ns, c->k, c->affine ? in[1] : NULL, c->bias ? in[1 + c->affine] : NULL, 1e-5f);
}

TEST(layer_norm_gradcheck) {
    const ln_case cases[] = {
        {{5, 0}, 1, true, true}, {{5, 0}, 1, true, false}, {{5, 0}, 1, false, false}, {{3, 5}, 2, true, true}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const ln_case *c = &cases[i];
        zg_tensor *in[3] = {zgt_param(zg_randn(SHAPE(2, 3, 5)))};
        int n = 1;
        if (c->affine) in[n++] = zgt_param(zg_uniform(c->ns, c->k, 0.5f, 1.5f));
        if (c->bias) in[n++] = zgt_param(zg_randn(c->ns, c->k));
        char name[64];
        snprintf(name, sizeof name, "layer_norm k=%d affine=%d bias=%d", c->k, c->affine, c->bias);
        GRADCHECK(name, op_layer_norm, in, n, (void *)c, NULL);
        for (int j = 0; j < n; j++) zg_tensor_free(in[j]);
        zg_arena_reset();
    }
}

/* ---- modules ------------------------------------------------------------- */

TEST(embedding_and_layer_norm_modules) {
    zg_manual_seed(3);
    zg_module *e = zg_nn_embedding(7, 4, 2);
    CHECK_PTR(e);
    CHECK(zg_module_num_params(e) == 1 && !strcmp(zg_module_param_name(e, 0), "weight"));
    zg_tensor *w = zg_module_param(e, 0);
    for (int j = 0; j < 4; j++) CHECK(zg_tensor_get(w, 2 * 4 + j) == 0.0f); /* the padding row starts at zero */
    CHECK(zg_tensor_get(w, 0) != 0.0f);
    zg_tensor *idx = indices((int64_t[]){2, 5}, SHAPE(2));
    zg_tensor *y = zg_module_forward(e, idx);
    CHECK_PTR(y);
    CHECK_OK(zg_backward(zg_sum(y), NULL));
    CHECK(zg_tensor_get(zg_tensor_grad(w), 2 * 4) == 0.0f && zg_tensor_get(zg_tensor_grad(w), 5 * 4) == 1.0f);
    CHECK_NULL_ERR(zg_nn_embedding(7, 4, 7), "padding_idx 7");
    CHECK_NULL_ERR(zg_nn_embedding(0, 4, ZG_NO_PADDING_IDX), "sizes must be positive");

    zg_module *ln = zg_nn_layer_norm(4, 1e-5f, true, true), *nb = zg_nn_layer_norm(4, 1e-5f, true, false);
    zg_module *na = zg_nn_layer_norm(4, 1e-5f, false, true);
    CHECK_PTR(ln);
    CHECK(zg_module_num_params(ln) == 2 && !strcmp(zg_module_param_name(ln, 1), "bias"));
    CHECK(zg_module_num_params(nb) == 1 && !strcmp(zg_module_param_name(nb, 0), "weight"));
    CHECK(zg_module_num_params(na) == 0);
    zg_tensor *x = zg_randn(SHAPE(3, 4));
    zg_tensor *ref = zg_layer_norm(x, (int64_t[]){4}, 1, NULL, NULL, 1e-5f);
    zg_module *mods[3] = {ln, nb, na};
    for (int i = 0; i < 3; i++) CHECK_TENSOR_NEAR(zg_module_forward(mods[i], x), ref, 0, 0); /* ones and zeros */
    CHECK_NULL_ERR(zg_nn_layer_norm(0, 1e-5f, true, true), "normalized_dim 0");
    for (int i = 0; i < 3; i++) zg_module_free(mods[i]);
    zg_module_free(e);
    zg_tensor_free(idx);
    zg_tensor_free(x);
    zg_arena_reset();
}

/* ---- the same bits for any thread count -------------------------------- */

static bool same_bits(const zg_tensor *a, const zg_tensor *b) {
    return a && b && zg_tensor_numel(a) == zg_tensor_numel(b) &&
           !memcmp(zg_tensor_data((zg_tensor *)a), zg_tensor_data((zg_tensor *)b),
                   (size_t)zg_tensor_numel(a) * sizeof(float));
}

TEST(embedding_and_layer_norm_same_bits_for_1_and_2_threads) {
    /* Sizes above the ops' thresholds for splitting work. */
    zg_manual_seed(5);
    zg_tensor *w = zgt_param(zg_randn(SHAPE(65, 256)));
    zg_tensor *x = zgt_param(zg_randn(SHAPE(8, 64, 256)));
    zg_tensor *lw = zgt_param(zg_rand(SHAPE(256)));
    zg_tensor *lb = zgt_param(zg_randn(SHAPE(256)));
    int64_t iv[512];
    for (int i = 0; i < 512; i++) iv[i] = (i * 37) % 65;
    zg_tensor *idx = indices(iv, SHAPE(8, 64));
    zg_tensor *gy = zg_randn(SHAPE(8, 64, 256));
    zg_tensor *res[2][5] = {{0}};
    for (int t = 0; t < 2; t++) {
        zg_set_num_threads(t + 1);
        zg_tensor *leaves[4] = {w, x, lw, lb};
        for (int i = 0; i < 4; i++) zg_tensor_zero_grad(leaves[i], true);
        zg_tensor *y = zg_layer_norm(zg_add(x, zg_embedding(w, idx, ZG_NO_PADDING_IDX)), (int64_t[]){256}, 1, lw, lb,
                                     1e-5f);
        CHECK_PTR(y);
        if (!y) break;
        CHECK_OK(zg_backward(y, &(zg_backward_opts){.grad = gy}));
        res[t][0] = zg_tensor_clone(y);
        for (int i = 0; i < 4; i++) res[t][i + 1] = zg_tensor_clone(zg_tensor_grad(leaves[i]));
        zg_arena_reset();
    }
    zg_set_num_threads(2);
    const char *what[5] = {"y", "grad w", "grad x", "grad ln weight", "grad ln bias"};
    for (int i = 0; i < 5; i++) {
        if (!same_bits(res[0][i], res[1][i])) zgt_fail(__FILE__, __LINE__, "%s differs between 1 and 2 threads", what[i]);
        zg_tensor_free(res[0][i]);
        zg_tensor_free(res[1][i]);
    }
    zg_tensor *tfs[] = {w, x, lw, lb, idx, gy};
    for (int i = 0; i < 6; i++) zg_tensor_free(tfs[i]);
}

/* ---- PyTorch parity ------------------------------------------------------- */

#define TOL 1e-5

static const char *const ref_files[] = {"transformer_ops"};
static const char *const ref_sources[] = {"tests/parity/transformer_reference.py", "tests/parity/torch_reference.py"};
static zgt_refset refs = {ref_sources, 2, ref_files, 1, NULL, 0};
static double worst_err;

static void compare(const char *c, const char *what, const zg_tensor *ours, const zg_tensor *ref) {
    char name[96];
    snprintf(name, sizeof name, "%s %s", c, what);
    CHECK_REF(name, ours, ref, TOL, &worst_err);
}

static zg_tensor *leaf(const zg_tensor *ref) {
    zg_tensor *t = ref ? zg_tensor_clone(ref) : NULL;
    if (t) zg_tensor_set_requires_grad(t, true);
    return t;
}

static void run_case(const zg_safetensors *st, const char *c) {
    const char *spec = zg_safetensors_metadata(st, c);
    char op[32] = "", pad[16] = "";
    int k = 0, affine = 0, has_bias = 0;
    float eps = 0;
    zg_tensor *x = leaf(zgt_ref_find(st, "%s.x", c)), *w = leaf(zgt_ref_find(st, "%s.w", c));
    zg_tensor *b = leaf(zgt_ref_find(st, "%s.b", c)), *y = NULL;
    zg_tensor *qkv[3] = {leaf(zgt_ref_find(st, "%s.q", c)), leaf(zgt_ref_find(st, "%s.k", c)),
                         leaf(zgt_ref_find(st, "%s.v", c))};
    int causal = 0, has_mask = 0;
    float scale = 0;
    int64_t nargs[3];
    if (spec && !strcmp(spec, "matmul")) {
        y = zg_matmul(x, w);
    } else if (spec && sscanf(spec, "narrow %" SCNd64 " %" SCNd64 " %" SCNd64, &nargs[0], &nargs[1], &nargs[2]) == 3) {
        y = zg_narrow(x, (int)nargs[0], nargs[1], nargs[2]);
    } else if (spec && sscanf(spec, "tril %" SCNd64, &nargs[0]) == 1) {
        y = zg_tril(x, nargs[0]);
    } else if (spec && sscanf(spec, "triu %" SCNd64, &nargs[0]) == 1) {
        y = zg_triu(x, nargs[0]);
    } else if (spec && sscanf(spec, "masked_fill %f", &scale) == 1) {
        y = zg_masked_fill(x, zgt_ref_get(st, "%s.mask", c), scale);
    } else if (spec && sscanf(spec, "sdpa %d %d %f", &causal, &has_mask, &scale) == 3) {
        const zg_tensor *mask = zgt_ref_find(st, "%s.mask", c);
        CHECK(has_mask == (mask != NULL));
        y = zg_scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], mask, causal, scale);
    } else if (spec && sscanf(spec, "embedding %15s", pad) == 1) {
        int64_t p = strcmp(pad, "none") ? (int64_t)atoll(pad) : ZG_NO_PADDING_IDX;
        y = zg_embedding(w, zgt_ref_find(st, "%s.idx", c), p);
    } else if (spec && sscanf(spec, "%31s %d %f %d %d", op, &k, &eps, &affine, &has_bias) == 5 &&
               !strcmp(op, "layer_norm") && x) {
        CHECK(affine == (w != NULL) && has_bias == (b != NULL));
        y = zg_layer_norm(x, zg_tensor_shape(x) + zg_tensor_ndim(x) - k, k, w, b, eps);
    } else {
        zgt_fail(__FILE__, __LINE__, "%s: cannot parse spec \"%s\"", c, spec ? spec : "(none)");
    }
    compare(c, "y", y, zgt_ref_find(st, "%s.y", c));
    if (y) {
        CHECK_OK(zg_backward(y, &(zg_backward_opts){.grad = zgt_ref_find(st, "%s.gy", c)}));
        if (x) compare(c, "gx", zg_tensor_grad(x), zgt_ref_find(st, "%s.gx", c));
        if (w) compare(c, "gw", zg_tensor_grad(w), zgt_ref_find(st, "%s.gw", c));
        if (b) compare(c, "gb", zg_tensor_grad(b), zgt_ref_find(st, "%s.gb", c));
        const char *qn[3] = {"gq", "gk", "gv"};
        for (int i = 0; i < 3; i++)
            if (qkv[i]) compare(c, qn[i], zg_tensor_grad(qkv[i]), zgt_ref_find(st, "%s.%s", c, qn[i]));
    }
    for (int i = 0; i < 3; i++) zg_tensor_free(qkv[i]);
    zg_tensor_free(x);
    zg_tensor_free(w);
    zg_tensor_free(b);
    zg_arena_reset();
}

TEST(parity_embedding_layer_norm_attention) {
    zg_safetensors *st = zgt_refs_open(&refs, "transformer_ops");
    if (!st) return;
    worst_err = 0;
    int n = zgt_ref_cases(st, run_case);
    CHECK(n >= 19);
    printf("parity transformer ops: %d cases, worst relative error %.3g\n", n, worst_err);
    zg_safetensors_free(st);
}

/* ---- scaled dot-product attention ------------------------------------ */

/* The plain path: softmax(scale q k^T + mask) v with the ops one by one
 * (the scores kept), to check the fused op against. causal: a -inf mask
 * above the diagonal. */
static zg_tensor *attention_plain(zg_tensor *q, zg_tensor *k, zg_tensor *v, const zg_tensor *mask, bool causal,
                                  float scale) {
    const int d = zg_tensor_ndim(q);
    const int64_t T = zg_tensor_size(q, d - 2), E = zg_tensor_size(q, d - 1), S = zg_tensor_size(k, d - 2),
                  Ev = zg_tensor_size(v, d - 1), N = zg_tensor_numel(q) / (T * E);
    zg_tensor *q3 = zg_reshape(q, SHAPE(N, T, E)), *k3 = zg_reshape(k, SHAPE(N, S, E));
    zg_tensor *v3 = zg_reshape(v, SHAPE(N, S, Ev));
    zg_tensor *s = zg_mul_scalar(zg_matmul(q3, zg_transpose(k3, 1, 2)), scale != 0 ? scale : 1.0f / sqrtf((float)E));
    zg_tensor *m = NULL;
    if (causal) {
        m = zg_zeros(SHAPE(T, S));
        for (int64_t i = 0; i < T; i++)
            for (int64_t j = i + 1; j < S; j++) zg_tensor_data(m)[i * S + j] = -INFINITY;
        mask = m;
    }
    if (mask) s = zg_add(s, zg_reshape((zg_tensor *)mask, SHAPE(zg_tensor_ndim(mask) == 2 ? 1 : N, T, S)));
    zg_tensor *o = zg_matmul(zg_softmax(s, -1), v3);
    int64_t shape[ZG_MAX_DIMS];
    memcpy(shape, zg_tensor_shape(q), (size_t)d * sizeof(int64_t));
    shape[d - 1] = Ev;
    zg_tensor_free(m);
    return zg_reshape(o, shape, d);
}

typedef struct {
    const zg_tensor *mask;
    bool causal;
    float scale;
} attn_case;

static zg_tensor *op_attention(zg_tensor *const *in, void *ctx) {
    const attn_case *c = ctx;
    return zg_scaled_dot_product_attention(in[0], in[1], in[2], c->mask, c->causal, c->scale);
}

TEST(attention_gradcheck) {
    zg_manual_seed(21);
    zg_tensor *pmask = zg_uniform(SHAPE(4, 6), 0.0f, 2.0f);
    zg_tensor_data(pmask)[5] = -INFINITY; /* a key dropped from one query */
    const attn_case cases[] = {{NULL, false, 0}, {NULL, true, 0}, {pmask, false, 0.7f}};
    const char *names[] = {"attention", "attention causal", "attention float mask"};
    for (int i = 0; i < 3; i++) {
        zg_tensor *in[3] = {zgt_param(zg_randn(SHAPE(2, 4, 3))), zgt_param(zg_randn(SHAPE(2, 6, 3))),
                            zgt_param(zg_randn(SHAPE(2, 6, 5)))};
        GRADCHECK(names[i], op_attention, in, 3, (void *)&cases[i], NULL);
        for (int j = 0; j < 3; j++) zg_tensor_free(in[j]);
        zg_arena_reset();
    }
    zg_tensor_free(pmask);
    zg_arena_reset();
}

/* Fused against plain: values and gradients, over several query and key
 * blocks (T, S > 64 and not multiples of it), causal or not, with a mask
 * per head, T != S. */
TEST(attention_fused_matches_the_plain_path) {
    zg_manual_seed(22);
    struct {
        int64_t B, H, T, S, E, Ev;
        int mask; /* 0 none, 1 causal, 2 [T,S] float, 3 per head */
    } cases[] = {{2, 3, 130, 130, 16, 16, 1}, {1, 2, 70, 150, 8, 12, 0}, {2, 2, 65, 129, 8, 8, 2},
                 {1, 3, 40, 33, 4, 4, 3},     {2, 4, 64, 64, 32, 32, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t B = cases[i].B, H = cases[i].H, T = cases[i].T, S = cases[i].S;
        zg_tensor *q = zgt_param(zg_randn(SHAPE(B, H, T, cases[i].E)));
        zg_tensor *k = zgt_param(zg_randn(SHAPE(B, H, S, cases[i].E)));
        zg_tensor *v = zgt_param(zg_randn(SHAPE(B, H, S, cases[i].Ev)));
        zg_tensor *mask = cases[i].mask == 2 ? zg_randn(SHAPE(T, S)) : cases[i].mask == 3 ? zg_randn(SHAPE(B, H, T, S)) : NULL;
        bool causal = cases[i].mask == 1;
        zg_tensor *gy = zg_randn(SHAPE(B, H, T, cases[i].Ev));
        zg_tensor *out[2], *g[2][3];
        for (int path = 0; path < 2; path++) {
            zg_tensor *leaves[3] = {q, k, v};
            for (int j = 0; j < 3; j++) zg_tensor_zero_grad(leaves[j], true);
            zg_tensor *y = path == 0 ? zg_scaled_dot_product_attention(q, k, v, mask, causal, 0)
                                     : attention_plain(q, k, v, mask, causal, 0);
            CHECK_PTR(y);
            CHECK_OK(zg_backward(y, &(zg_backward_opts){.grad = gy}));
            out[path] = zg_tensor_clone(y);
            for (int j = 0; j < 3; j++) g[path][j] = zg_tensor_clone(zg_tensor_grad(leaves[j]));
            zg_arena_reset();
        }
        char what[64];
        const char *gname[3] = {"dq", "dk", "dv"};
        snprintf(what, sizeof what, "case %zu output", i);
        CHECK_REF(what, out[0], out[1], 1e-6, NULL);
        for (int j = 0; j < 3; j++) {
            snprintf(what, sizeof what, "case %zu %s", i, gname[j]);
            CHECK_REF(what, g[0][j], g[1][j], 1e-6, NULL);
        }
        zg_tensor *tfs[] = {q, k, v, mask, gy, out[0], out[1], g[0][0], g[0][1], g[0][2], g[1][0], g[1][1], g[1][2]};
        for (size_t j = 0; j < sizeof tfs / sizeof tfs[0]; j++) zg_tensor_free(tfs[j]);
    }
}

/* The mask is the caller's: changed or freed after the forward, the
 * backward still uses the values the forward saw. */
TEST(attention_backward_keeps_its_own_mask) {
    zg_manual_seed(25);
    zg_tensor *q = zgt_param(zg_randn(SHAPE(2, 5, 4))), *k = zgt_param(zg_randn(SHAPE(2, 6, 4)));
    zg_tensor *v = zgt_param(zg_randn(SHAPE(2, 6, 3))), *gy = zg_randn(SHAPE(2, 5, 3));
    zg_tensor *mask0 = zg_randn(SHAPE(5, 6)), *g[2] = {0};
    for (int pass = 0; pass < 2; pass++) {
        zg_tensor *mask = zg_tensor_clone(mask0);
        zg_tensor_zero_grad(q, true);
        zg_tensor *y = zg_scaled_dot_product_attention(q, k, v, mask, false, 0);
        CHECK_PTR(y);
        if (pass == 1) { /* the caller reuses its mask, then frees it */
            for (int i = 0; i < 30; i++) zg_tensor_data(mask)[i] = 100.0f * (float)i;
            zg_tensor_free(mask);
            mask = NULL;
        }
        CHECK_OK(zg_backward(y, &(zg_backward_opts){.grad = gy}));
        g[pass] = zg_tensor_clone(zg_tensor_grad(q));
        zg_tensor_free(mask);
        zg_arena_reset();
    }
    CHECK(same_bits(g[0], g[1]));
    zg_tensor *tfs[] = {q, k, v, gy, mask0, g[0], g[1]};
    for (int i = 0; i < 7; i++) zg_tensor_free(tfs[i]);
}

TEST(attention_errors) {
    zg_tensor *q = zg_randn(SHAPE(2, 4, 3)), *k = zg_randn(SHAPE(2, 5, 3)), *v = zg_randn(SHAPE(2, 5, 2));
    zg_tensor *k4 = zg_randn(SHAPE(2, 5, 4)), *m = zg_zeros(SHAPE(4, 4)), *ok = zg_zeros(SHAPE(4, 5));
    CHECK_NULL_ERR(zg_scaled_dot_product_attention(q, k4, v, NULL, false, 0), "expected [*, T, E], [*, S, E]");
    CHECK_NULL_ERR(zg_scaled_dot_product_attention(q, k, v, m, false, 0), "attn_mask [4,4] must be [T, S] = [4, 5]");
    CHECK_NULL_ERR(zg_scaled_dot_product_attention(q, k, v, ok, true, 0), "not both");
    CHECK_NULL_ERR(zg_scaled_dot_product_attention(q, k, v, NULL, false, INFINITY), "scale");
    zg_tensor *tfs[] = {q, k, v, k4, m, ok};
    for (int i = 0; i < 6; i++) zg_tensor_free(tfs[i]);
    zg_arena_reset();
}

TEST(attention_same_bits_for_1_and_2_threads) {
    zg_manual_seed(23);
    zg_tensor *q = zgt_param(zg_randn(SHAPE(2, 4, 96, 16))), *k = zgt_param(zg_randn(SHAPE(2, 4, 96, 16)));
    zg_tensor *v = zgt_param(zg_randn(SHAPE(2, 4, 96, 16))), *gy = zg_randn(SHAPE(2, 4, 96, 16));
    zg_tensor *leaves[3] = {q, k, v}, *res[2][4] = {{0}};
    for (int t = 0; t < 2; t++) {
        zg_set_num_threads(t + 1);
        for (int i = 0; i < 3; i++) zg_tensor_zero_grad(leaves[i], true);
        zg_tensor *y = zg_scaled_dot_product_attention(q, k, v, NULL, true, 0);
        CHECK_PTR(y);
        if (!y) break;
        CHECK_OK(zg_backward(y, &(zg_backward_opts){.grad = gy}));
        res[t][0] = zg_tensor_clone(y);
        for (int i = 0; i < 3; i++) res[t][i + 1] = zg_tensor_clone(zg_tensor_grad(leaves[i]));
        zg_arena_reset();
    }
    zg_set_num_threads(2);
    for (int i = 0; i < 4; i++) {
        if (!same_bits(res[0][i], res[1][i])) zgt_fail(__FILE__, __LINE__, "result %d differs between 1 and 2 threads", i);
        zg_tensor_free(res[0][i]);
        zg_tensor_free(res[1][i]);
    }
    for (int i = 0; i < 3; i++) zg_tensor_free(leaves[i]);
    zg_tensor_free(gy);
}

/* ---- narrow, split, tril / triu, masked_fill, arange ------------------- */

TEST(narrow_and_split_take_ranges) {
    float v[24];
    for (int i = 0; i < 24; i++) v[i] = (float)i;
    zg_tensor *a = zgt_param_from(v, SHAPE(2, 3, 4));
    zg_tensor *n = zg_narrow(a, -1, 1, 2); /* [2,3,2]: columns 1 and 2 */
    CHECK_VALUES(n, ((float[]){1, 2, 5, 6, 9, 10, 13, 14, 17, 18, 21, 22}), 12, 0);
    CHECK_VALUES(zg_narrow(a, 1, -1, 1), ((float[]){8, 9, 10, 11, 20, 21, 22, 23}), 8, 0);
    zg_tensor *p[4];
    CHECK(zg_split(a, 3, 2, p, 4) == 2); /* the last dim in pieces of 3 and 1 */
    CHECK(zg_tensor_size(p[0], 2) == 3 && zg_tensor_size(p[1], 2) == 1);
    CHECK_VALUES(p[1], ((float[]){3, 7, 11, 15, 19, 23}), 6, 0);
    /* pieces' gradients add up in a: 1 from p[0], 10 from p[1], 100 from n */
    zg_tensor *l = zg_add(zg_add(zg_sum(p[0]), zg_mul_scalar(zg_sum(p[1]), 10)), zg_mul_scalar(zg_sum(n), 100));
    CHECK_OK(zg_backward(l, NULL));
    CHECK_VALUES(zg_tensor_grad(a), ((float[]){1, 101, 101, 10, 1, 101, 101, 10, 1, 101, 101, 10, 1, 101, 101, 10, 1,
                                               101, 101, 10, 1, 101, 101, 10}),
                 24, 0);
    /* torch.chunk(a, 3, dim=1) of a size-3 dim: three pieces of 1; chunk(a, 3, -1) of 4: 2 + 2 */
    CHECK(zg_chunk(a, 3, 1, p, 4) == 3 && zg_tensor_size(p[2], 1) == 1);
    CHECK(zg_chunk(a, 3, -1, p, 4) == 2 && zg_tensor_size(p[0], 2) == 2 && zg_tensor_size(p[1], 2) == 2);
    CHECK_VALUES(p[1], ((float[]){2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23}), 12, 0);
    CHECK_ERR(zg_chunk(a, 0, 1, p, 4), "chunks 0 must be positive");
    CHECK_NULL_ERR(zg_narrow(a, 2, 3, 2), "start 3, length 2 out of range for dim 2 of size 4");
    CHECK_ERR(zg_split(a, 1, 2, p, 3), "4 pieces of dim 2");
    zg_tensor_free(a);
    zg_arena_reset();
}

TEST(tril_triu_masked_fill_arange) {
    float v[12];
    for (int i = 0; i < 12; i++) v[i] = (float)(i + 1);
    zg_tensor *a = zgt_param_from(v, SHAPE(3, 4));
    CHECK_VALUES(zg_tril(a, 0), ((float[]){1, 0, 0, 0, 5, 6, 0, 0, 9, 10, 11, 0}), 12, 0);
    CHECK_VALUES(zg_triu(a, 1), ((float[]){0, 2, 3, 4, 0, 0, 7, 8, 0, 0, 0, 12}), 12, 0);
    CHECK_VALUES(zg_tril(a, -1), ((float[]){0, 0, 0, 0, 5, 0, 0, 0, 9, 10, 0, 0}), 12, 0);
    zg_tensor *mask = zg_tensor_from_data(ZG_INT64, (int64_t[]){0, 1, 0, 1}, SHAPE(4));
    zg_tensor *f = zg_masked_fill(a, mask, -INFINITY); /* the mask repeats over the rows */
    CHECK(zg_tensor_get(f, 1) == -INFINITY && zg_tensor_get(f, 7) == -INFINITY && zg_tensor_get(f, 8) == 9);
    CHECK_OK(zg_backward(zg_add(zg_sum(zg_tril(a, 0)), zg_sum(zg_masked_fill(a, mask, 5.0f))), NULL));
    CHECK_VALUES(zg_tensor_grad(a), ((float[]){2, 0, 1, 0, 2, 1, 1, 0, 2, 1, 2, 0}), 12, 0);
    zg_tensor *bad = zg_zeros(SHAPE(3));
    CHECK_NULL_ERR(zg_masked_fill(a, bad, 0), "mask [3] must match the last dims of input [3,4]");
    zg_tensor *r = zg_arange(5);
    CHECK(zg_tensor_dtype(r) == ZG_INT64 && zg_tensor_numel(r) == 5 && zg_tensor_get(r, 4) == 4);
    zg_tensor *tfs[] = {a, mask, bad, r};
    for (int i = 0; i < 4; i++) zg_tensor_free(tfs[i]);
    zg_arena_reset();
}

static zg_tensor *op_narrow(zg_tensor *const *in, void *ctx) {
    (void)ctx;
    return zg_narrow(in[0], 1, 1, 2);
}
static zg_tensor *op_tril(zg_tensor *const *in, void *ctx) {
    (void)ctx;
    return zg_add(zg_tril(in[0], 0), zg_triu(in[0], 2));
}
static zg_tensor *op_masked_fill(zg_tensor *const *in, void *ctx) { return zg_masked_fill(in[0], ctx, 3.0f); }

TEST(narrow_tril_masked_fill_gradcheck) {
    zg_tensor *x = zgt_param(zg_randn(SHAPE(2, 4, 3)));
    zg_tensor *mask = zg_tensor_from_data(ZG_INT64, (int64_t[]){1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1}, SHAPE(4, 3));
    GRADCHECK("narrow", op_narrow, &x, 1, NULL, NULL);
    GRADCHECK("tril + triu", op_tril, &x, 1, NULL, NULL);
    GRADCHECK("masked_fill", op_masked_fill, &x, 1, mask, NULL);
    zg_tensor_free(x);
    zg_tensor_free(mask);
    zg_arena_reset();
}

/* ---- matmul with broadcast batch dims -------------------------------- */

/* a [..] @ b [..] against the matrices multiplied one by one (2-D matmul)
 * at the broadcast batch positions. */
static void check_matmul_broadcast(const int64_t *sa, int na, const int64_t *sb, int nb, const int64_t *so, int no) {
    zg_tensor *a = zg_randn(sa, na), *b = zg_randn(sb, nb);
    zg_tensor *y = zg_matmul(a, b);
    CHECK_PTR(y);
    if (!y) return;
    CHECK(zg_tensor_ndim(y) == no);
    for (int d = 0; d < no; d++) CHECK(zg_tensor_size(y, d) == so[d]);
    const int64_t n = sa[na - 2], k = sa[na - 1], m = sb[nb - 1], batch = zg_tensor_numel(y) / (n * m);
    for (int64_t i = 0; i < batch; i++) {
        /* the batch index in each operand: broadcast dims (size 1 or missing) read 0 */
        int64_t ia = 0, ib = 0, sta = 1, stb = 1, rem = i;
        for (int d = no - 3; d >= 0; d--) {
            const int64_t x = rem % so[d];
            rem /= so[d];
            const int da = d - (no - na), db = d - (no - nb);
            if (da >= 0) {
                ia += (sa[da] == 1 ? 0 : x) * sta;
                sta *= sa[da];
            }
            if (db >= 0) {
                ib += (sb[db] == 1 ? 0 : x) * stb;
                stb *= sb[db];
            }
        }
        zg_tensor *am = zg_reshape(zg_narrow(zg_reshape(a, (int64_t[]){-1, n, k}, 3), 0, ia, 1), (int64_t[]){n, k}, 2);
        zg_tensor *bm = zg_reshape(zg_narrow(zg_reshape(b, (int64_t[]){-1, k, m}, 3), 0, ib, 1), (int64_t[]){k, m}, 2);
        zg_tensor *ym = zg_reshape(zg_narrow(zg_reshape(y, (int64_t[]){-1, n, m}, 3), 0, i, 1), (int64_t[]){n, m}, 2);
        CHECK_TENSOR_NEAR(ym, zg_matmul(am, bm), 1e-6, 1e-6);
    }
    zg_tensor_free(a);
    zg_tensor_free(b);
    zg_arena_reset();
}

TEST(matmul_broadcasts_batch_dims) {
    zg_manual_seed(31);
    check_matmul_broadcast(SHAPE(2, 3, 4, 5), SHAPE(5, 6), SHAPE(2, 3, 4, 6));    /* 4-D by 2-D: folded */
    check_matmul_broadcast(SHAPE(4, 5), SHAPE(3, 5, 2), SHAPE(3, 4, 2));          /* 2-D by 3-D */
    check_matmul_broadcast(SHAPE(2, 1, 4, 5), SHAPE(3, 5, 2), SHAPE(2, 3, 4, 2)); /* both broadcast */
    check_matmul_broadcast(SHAPE(2, 3, 4, 5), SHAPE(2, 3, 5, 2), SHAPE(2, 3, 4, 2));
    zg_tensor *a = zg_randn(SHAPE(2, 4, 5)), *b = zg_randn(SHAPE(3, 5, 2)), *v = zg_randn(SHAPE(5));
    CHECK_NULL_ERR(zg_matmul(a, b), "shapes [2,4,5] and [3,5,2] do not match");
    CHECK_NULL_ERR(zg_matmul(a, v), "both need at least 2 dims");
    zg_tensor_free(a);
    zg_tensor_free(b);
    zg_tensor_free(v);
}

static zg_tensor *op_matmul(zg_tensor *const *in, void *ctx) {
    (void)ctx;
    return zg_matmul(in[0], in[1]);
}

TEST(matmul_broadcast_gradcheck) {
    const int64_t shapes[][2][4] = {{{2, 3, 4}, {4, 2}}, {{3, 4}, {2, 4, 2}}, {{2, 1, 3, 4}, {3, 4, 2}}};
    const int nd[][2] = {{3, 2}, {2, 3}, {4, 3}};
    for (int i = 0; i < 3; i++) {
        zg_tensor *in[2] = {zgt_param(zg_randn(shapes[i][0], nd[i][0])), zgt_param(zg_randn(shapes[i][1], nd[i][1]))};
        GRADCHECK("matmul broadcast", op_matmul, in, 2, NULL, NULL);
        zg_tensor_free(in[0]);
        zg_tensor_free(in[1]);
        zg_arena_reset();
    }
}

/* The GPT's packed attention reads the heads from qkv [B, T, 3C] in place:
 * the same bits as split, transposes, the fused op and the transpose back,
 * in the output and in d(qkv). */
TEST(attention_packed_same_bits_as_split_heads) {
    zg_manual_seed(24);
    const int64_t B = 2, T = 70, C = 24, nh = 3, hs = C / nh;
    zg_tensor *qkv = zgt_param(zg_randn(SHAPE(B, T, 3 * C))), *gy = zg_randn(SHAPE(B, T, C));
    zg_tensor *y[2], *g[2];
    for (int path = 0; path < 2; path++) {
        zg_tensor_zero_grad(qkv, true);
        zg_tensor *out;
        if (path == 0) {
            out = zg__attention_packed(qkv, nh);
        } else {
            zg_tensor *part[3];
            CHECK(zg_split(qkv, C, 2, part, 3) == 3);
            for (int i = 0; i < 3; i++) part[i] = zg_transpose(zg_reshape(part[i], SHAPE(B, T, nh, hs)), 1, 2);
            out = zg_reshape(zg_transpose(zg_scaled_dot_product_attention(part[0], part[1], part[2], NULL, true, 0), 1, 2),
                             SHAPE(B, T, C));
        }
        CHECK_PTR(out);
        CHECK_OK(zg_backward(out, &(zg_backward_opts){.grad = gy}));
        y[path] = zg_tensor_clone(out);
        g[path] = zg_tensor_clone(zg_tensor_grad(qkv));
        zg_arena_reset();
    }
    CHECK(same_bits(y[0], y[1]));
    CHECK(same_bits(g[0], g[1]));
    CHECK_NULL_ERR(zg__attention_packed(gy, 5), "must be [B, T, 3 C] with C a multiple of the 5 heads");
    zg_tensor *tfs[] = {qkv, gy, y[0], y[1], g[0], g[1]};
    for (int i = 0; i < 6; i++) zg_tensor_free(tfs[i]);
    zg_arena_reset();
}
