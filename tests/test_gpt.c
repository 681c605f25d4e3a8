/* The GPT module (src/nn/gpt.c): its parameters as nanoGPT names them, its
 * init, errors, a finite-difference check through the whole model, and
 * live parity with PyTorch over 10 AdamW steps
 * (tests/parity/gpt_reference.py). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static zg_gpt_config tiny(void) {
    zg_gpt_config c = zg_gpt_config_default();
    c.vocab_size = 11;
    c.block_size = 8;
    c.n_layer = 2;
    c.n_head = 2;
    c.n_embd = 8;
    c.bias = true;
    return c;
}

TEST(gpt_parameters_are_named_as_nanogpt) {
    zg_gpt_config c = tiny();
    zg_module *m = zg_nn_gpt(&c);
    CHECK_PTR(m);
    if (!m) return;
    /* wte, wpe; 12 per block; ln_f weight and bias */
    CHECK(zg_module_num_params(m) == 2 + 12 * 2 + 2);
    const char *expect[] = {"transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.ln_1.weight",
                            "transformer.h.0.ln_1.bias", "transformer.h.0.attn.c_attn.weight",
                            "transformer.h.0.attn.c_attn.bias", "transformer.h.0.attn.c_proj.weight",
                            "transformer.h.0.attn.c_proj.bias", "transformer.h.0.ln_2.weight",
                            "transformer.h.0.ln_2.bias", "transformer.h.0.mlp.c_fc.weight",
                            "transformer.h.0.mlp.c_fc.bias", "transformer.h.0.mlp.c_proj.weight",
                            "transformer.h.0.mlp.c_proj.bias", "transformer.h.1.ln_1.weight"};
    for (int i = 0; i < (int)(sizeof expect / sizeof expect[0]); i++)
        if (strcmp(zg_module_param_name(m, i), expect[i]))
            zgt_fail(__FILE__, __LINE__, "parameter %d is %s, expected %s", i, zg_module_param_name(m, i), expect[i]);
    CHECK(!strcmp(zg_module_param_name(m, 27), "transformer.ln_f.bias"));
    /* V C + block C + per layer (4 C^2 + 4 C) * 2 + 4 C... as nanoGPT counts them:
     * 11*8 + 8*8 + 2 * (2*2*8 + 8*24 + 24 + 8*8 + 8 + 8*32 + 32 + 32*8 + 8) + 2*8 */
    CHECK(zg_module_num_elements(m) == 88 + 64 + 2 * (32 + 192 + 24 + 64 + 8 + 256 + 32 + 256 + 8) + 16);
    zg_gpt_config nb = tiny();
    nb.bias = false;
    zg_module *m2 = zg_nn_gpt(&nb);
    CHECK(m2 && zg_module_num_params(m2) == 2 + 6 * 2 + 1);
    zg_module_free(m);
    zg_module_free(m2);
}

/* Embeddings and Linear weights N(0, 0.02), the residual projections
 * N(0, 0.02 / sqrt(2 n_layer)), biases zero, LayerNorm ones and zeros. */
TEST(gpt_init_as_nanogpt) {
    zg_gpt_config c = zg_gpt_config_default();
    c.bias = true;
    zg_manual_seed(1);
    zg_module *m = zg_nn_gpt(&c);
    CHECK_PTR(m);
    if (!m) return;
    struct {
        const char *name;
        double std;
    } w[] = {{"transformer.wte.weight", 0.02},
             {"transformer.h.0.attn.c_attn.weight", 0.02},
             {"transformer.h.3.mlp.c_fc.weight", 0.02},
             {"transformer.h.1.attn.c_proj.weight", 0.02 / sqrt(8.0)},
             {"transformer.h.2.mlp.c_proj.weight", 0.02 / sqrt(8.0)}};
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        zg_tensor *p = zg_module_param_by_name(m, w[i].name);
        CHECK_PTR(p);
        if (!p) continue;
        double sq = 0;
        int64_t n = zg_tensor_numel(p);
        for (int64_t j = 0; j < n; j++) sq += (double)zg_tensor_get(p, j) * zg_tensor_get(p, j);
        /* the sample std of n >= 8192 normals is within 3% of its value */
        CHECK_NEAR(sqrt(sq / (double)n), w[i].std, 0.03 * w[i].std);
    }
    CHECK(zg_tensor_get(zg_module_param_by_name(m, "transformer.h.0.attn.c_attn.bias"), 5) == 0.0f);
    CHECK(zg_tensor_get(zg_module_param_by_name(m, "transformer.ln_f.weight"), 3) == 1.0f);
    zg_module_free(m);
}

TEST(gpt_errors) {
    zg_gpt_config c = tiny();
    c.n_head = 3;
    CHECK_NULL_ERR(zg_nn_gpt(&c), "n_embd 8 is not a multiple of n_head 3");
    c = tiny();
    c.n_layer = 0;
    CHECK_NULL_ERR(zg_nn_gpt(&c), "must be positive");
    CHECK_NULL_ERR(zg_nn_gpt(NULL), "config is NULL");
    c = tiny();
    zg_module *m = zg_nn_gpt(&c);
    CHECK_PTR(m);
    int64_t long_seq[9] = {0};
    zg_tensor *idx = zg_tensor_from_data(ZG_INT64, long_seq, (int64_t[]){1, 9}, 2);
    CHECK_NULL_ERR(zg_module_forward(m, idx), "a sequence of 9 tokens: the block size is 8");
    zg_tensor *f = zg_zeros((int64_t[]){1, 4}, 2);
    CHECK_NULL_ERR(zg_module_forward(m, f), "expected int64 token indices [B, T]");
    int64_t bad[2] = {3, 11};
    zg_tensor *oov = zg_tensor_from_data(ZG_INT64, bad, (int64_t[]){1, 2}, 2);
    CHECK_NULL_ERR(zg_module_forward(m, oov), "index 11 at position 1 is out of range");
    zg_tensor_free(idx);
    zg_tensor_free(f);
    zg_tensor_free(oov);
    zg_module_free(m);
    zg_arena_reset();
}

/* ---- finite differences through the whole model ------------------------ */

typedef struct {
    zg_module *m;
    zg_tensor *idx;
} gpt_ctx;

/* The inputs are the model's parameters, which the forward reads. */
static zg_tensor *op_gpt(zg_tensor *const *in, void *ctx) {
    (void)in;
    const gpt_ctx *g = ctx;
    return zg_module_forward(g->m, g->idx);
}

TEST(gpt_gradcheck) {
    zg_gpt_config c = tiny();
    c.n_layer = 1;
    c.vocab_size = 5;
    c.block_size = 4;
    c.n_embd = 4;
    zg_manual_seed(2);
    zg_module *m = zg_nn_gpt(&c);
    CHECK_PTR(m);
    if (!m) return;
    /* Larger weights than the init, so every path carries signal. */
    zg_tensor *p[16];
    int n = zg_module_params(m, p, 16);
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; j < zg_tensor_numel(p[i]); j++) zg_tensor_data(p[i])[j] += 0.3f * sinf((float)(7 * j + i));
    int64_t tok[8] = {1, 4, 4, 0, 2, 3, 1, 1};
    gpt_ctx g = {m, zg_tensor_from_data(ZG_INT64, tok, (int64_t[]){2, 4}, 2)};
    GRADCHECK("gpt", op_gpt, p, n, &g, NULL);
    zg_tensor_free(g.idx);
    zg_module_free(m);
    zg_arena_reset();
}

/* ---- the parts on their own ---------------------------------------------- */

typedef struct {
    zg_module *m;
} part_ctx;

static zg_tensor *op_part(zg_tensor *const *in, void *ctx) { return zg_module_forward(((part_ctx *)ctx)->m, in[0]); }

/* A Block is x + attn(ln_1(x)), then x + mlp(ln_2(x)), with its children
 * (the same bits), and a finite-difference check through it with respect
 * to its input; the attention's and the MLP's names are the GPT's. */
TEST(gpt_parts_block_attention_mlp) {
    zg_manual_seed(4);
    zg_module *b = zg_nn_transformer_block(8, 2, 0.0f, true);
    CHECK_PTR(b);
    if (!b) return;
    CHECK(zg_module_num_params(b) == 12);
    CHECK(!strcmp(zg_module_param_name(b, 2), "attn.c_attn.weight"));
    CHECK(!strcmp(zg_module_param_name(b, 11), "mlp.c_proj.bias"));
    zg_tensor *x = zg_randn((int64_t[]){2, 5, 8}, 3);
    zg_tensor_set_requires_grad(x, true);
    zg_tensor *y = zg_module_forward(b, x);
    zg_module *attn = zg_nn_causal_self_attention(8, 2, 0.0f, true), *mlp = zg_nn_transformer_mlp(8, 0.0f, true);
    zg_module *ln1 = zg_nn_layer_norm(8, 1e-5f, true, true), *ln2 = zg_nn_layer_norm(8, 1e-5f, true, true);
    CHECK(attn && mlp && ln1 && ln2);
    /* the same weights, through the parts */
    zg_module *parts[4] = {ln1, attn, ln2, mlp};
    int k = 0;
    for (int i = 0; i < 4; i++)
        for (int j = 0; parts[i] && j < zg_module_num_params(parts[i]); j++, k++)
            memcpy(zg_tensor_data(zg_module_param(parts[i], j)), zg_tensor_data(zg_module_param(b, k)),
                   (size_t)zg_tensor_numel(zg_module_param(b, k)) * sizeof(float));
    zg_tensor *h = zg_add(x, zg_module_forward(attn, zg_module_forward(ln1, x)));
    zg_tensor *want = zg_add(h, zg_module_forward(mlp, zg_module_forward(ln2, h)));
    CHECK(y && want && memcmp(zg_tensor_data(y), zg_tensor_data(want), 80 * sizeof(float)) == 0);
    part_ctx c = {b};
    zg_tensor *in[1] = {x};
    GRADCHECK("transformer block", op_part, in, 1, &c, NULL);
    CHECK_NULL_ERR(zg_nn_causal_self_attention(10, 4, 0.0f, false), "multiple of n_head");
    CHECK_NULL_ERR(zg_nn_transformer_mlp(8, 1.0f, false), "dropout");
    zg_tensor *flat = zg_randn((int64_t[]){2, 8}, 2);
    CHECK_NULL_ERR(zg_module_forward(attn, flat), "expected x [B, T, C]");
    zg_tensor_free(flat);
    for (int i = 0; i < 4; i++) zg_module_free(parts[i]);
    zg_module_free(b);
    zg_tensor_free(x);
    zg_arena_reset();
}

/* ---- PyTorch parity ------------------------------------------------------ */

static const char *const ref_files[] = {"gpt"};
static const char *const ref_sources[] = {"tests/parity/gpt_reference.py", "tests/parity/torch_reference.py"};
static zgt_refset refs = {ref_sources, 2, ref_files, 1, NULL, 0};

/* The bound for a tensor the runs reach after rounding noise has gone
 * through Adam: max(1e-5, 5 x the reference's own float32-vs-float64
 * distance). Where a true gradient is zero (the key part of c_attn's
 * bias: softmax ignores a constant added to a query's scores), both
 * PyTorch and zgrad hold rounding noise there, which Adam's normalisation
 * turns into moves of ~1e-6 (semantics.md section 10). */
static double noise_bound(const zg_tensor *ref32, const zg_tensor *ref64) {
    const double gap = ref32 && ref64 ? zgt_rel_err(ref32, ref64) : 0.0;
    return gap * 5 > 1e-5 ? gap * 5 : 1e-5;
}

static int64_t meta_int(const zg_safetensors *st, const char *key) {
    const char *v = zg_safetensors_metadata(st, key);
    return v ? atoll(v) : -1;
}

TEST(parity_gpt_adamw_training) {
    zg_safetensors *st = zgt_refs_open(&refs, "gpt");
    if (!st) return;
    const char *loop = zg_safetensors_metadata(st, "loop");
    CHECK(loop && !strcmp(loop, "zero_grad(set_to_none) forward cross_entropy backward clip_grad_norm(1.0) step"));
    zg_gpt_config c = {.vocab_size = meta_int(st, "vocab_size"), .block_size = meta_int(st, "block_size"),
                       .n_layer = meta_int(st, "n_layer"), .n_head = meta_int(st, "n_head"),
                       .n_embd = meta_int(st, "n_embd"), .dropout = 0.0f,
                       .bias = !strcmp(zg_safetensors_metadata(st, "bias"), "True")};
    const int steps = (int)meta_int(st, "steps");
    zg_module *m = zg_nn_gpt(&c);
    CHECK_PTR(m);
    if (!m) {
        zg_safetensors_free(st);
        return;
    }
    const int np = zg_module_num_params(m);
    for (int i = 0; i < np; i++) {
        zg_tensor *p = zg_module_param(m, i);
        const zg_tensor *init = zgt_ref_get(st, "init.%s", zg_module_param_name(m, i));
        if (init) memcpy(zg_tensor_data(p), zg_tensor_data((zg_tensor *)init), (size_t)zg_tensor_numel(p) * sizeof(float));
    }
    zg_optim_config oc = zg_optim_defaults(ZG_ADAMW);
    oc.lr = 1e-3;
    oc.beta2 = 0.99;
    oc.eps = 1e-8;
    zg_optim *opt = zg_optim_new_decay_split(ZG_ADAMW, m, 0.1, &oc);
    CHECK_PTR(opt);
    const zg_tensor *ref_loss = zgt_ref_get(st, "loss");
    double worst = 0;
    char what[160];
    for (int s = 0; s < steps && opt && ref_loss; s++) {
        zg_optim_zero_grad(opt, true);
        zg_tensor *logits = zg_module_forward(m, zgt_ref_get(st, "data.x.%d", s));
        const zg_tensor *y = zgt_ref_get(st, "data.y.%d", s);
        zg_tensor *loss = zg_cross_entropy(zg_reshape(logits, (int64_t[]){-1, c.vocab_size}, 2),
                                           zg_reshape((zg_tensor *)y, (int64_t[]){-1}, 1), NULL);
        CHECK_PTR(loss);
        if (!loss) break;
        CHECK_OK(zg_backward(loss, NULL));
        const double ref = zg_tensor_get(ref_loss, s), got = zg_tensor_item(loss);
        if (fabs(got - ref) > 1e-5 * fabs(ref))
            zgt_fail(__FILE__, __LINE__, "step %d: loss %.9g, PyTorch %.9g", s, got, ref);
        for (int i = 0; i < np; i++) {
            const char *name = zg_module_param_name(m, i);
            const zg_tensor *ref = zgt_ref_get(st, "grad.%d.%s", s, name);
            /* the first step's grads keep 1e-5; later ones start from moved weights */
            const double tol = s == 0 ? 1e-5 : noise_bound(ref, zgt_ref_get(st, "grad64.%d.%s", s, name));
            snprintf(what, sizeof what, "step %d grad %s (bound %.3g)", s, name, tol);
            CHECK_REF(what, zg_tensor_grad(zg_module_param(m, i)), ref, tol, &worst);
        }
        CHECK_OK(zg_module_clip_grad_norm(m, 1.0, 2.0, false, NULL));
        CHECK_OK(zg_optim_step(opt));
        zg_arena_reset();
    }
    double worst_final = 0, worst_bound = 0;
    for (int i = 0; i < np; i++) {
        const char *name = zg_module_param_name(m, i);
        const zg_tensor *ref = zgt_ref_get(st, "final.%s", name);
        const double tol = noise_bound(ref, zgt_ref_get(st, "final64.%s", name));
        snprintf(what, sizeof what, "final %s (bound %.3g)", name, tol);
        CHECK_REF(what, zg_module_param(m, i), ref, tol, &worst_final);
        if (tol > worst_bound) worst_bound = tol;
    }
    printf("parity GPT: %d AdamW steps, worst relative error: grads %.3g, final parameters %.3g (largest bound %.3g)\n",
           steps, worst, worst_final, worst_bound);
    zg_optim_free(opt);
    zg_module_free(m);
    zg_safetensors_free(st);
}

/* ---- generation ----------------------------------------------------------- */

TEST(gpt_generate_greedy_seeded_and_top_k) {
    zg_gpt_config c = tiny();
    zg_manual_seed(4);
    zg_module *m = zg_nn_gpt(&c);
    CHECK_PTR(m);
    if (!m) return;
    zg_tensor *zeros = zg_zeros((int64_t[]){3}, 1);
    zg_tensor *keep = zg_add_scalar(zeros, 2.0f); /* an arena tensor of the caller */
    const int64_t prompt[2] = {3, 7};
    int64_t greedy[14], top1[14], a[14], b[14], other[14];
    CHECK_OK(zg_gpt_generate(m, prompt, 2, 12, 0.0f, 0, 1, greedy));
    /* greedy by hand: argmax of the last position, the window cropped to block_size 8 */
    int64_t seq[14] = {3, 7};
    for (int n = 2; n < 14; n++) {
        const int64_t T = n < 8 ? n : 8;
        zg_tensor *idx = zg_tensor_from_data(ZG_INT64, seq + n - T, (int64_t[]){1, T}, 2);
        zg_no_grad_enter();
        zg_tensor *logits = zg_module_forward(m, idx);
        zg_no_grad_exit();
        int64_t best = 0;
        for (int64_t j = 1; j < 11; j++)
            if (zg_tensor_get(logits, (T - 1) * 11 + j) > zg_tensor_get(logits, (T - 1) * 11 + best)) best = j;
        seq[n] = best;
        zg_tensor_free(idx);
    }
    CHECK(!memcmp(seq, greedy, sizeof seq));
    CHECK_OK(zg_gpt_generate(m, prompt, 2, 12, 1.0f, 1, 99, top1)); /* top_k 1 is greedy at any temperature */
    CHECK(!memcmp(top1, greedy, sizeof seq));
    CHECK_OK(zg_gpt_generate(m, prompt, 2, 12, 1.5f, 0, 5, a));
    CHECK_OK(zg_gpt_generate(m, prompt, 2, 12, 1.5f, 0, 5, b));
    CHECK_OK(zg_gpt_generate(m, prompt, 2, 12, 1.5f, 0, 6, other));
    CHECK(!memcmp(a, b, sizeof a));      /* the seed alone decides */
    CHECK(memcmp(a, other, sizeof a) != 0); /* 12 draws from near-uniform 11-way choices */
    for (int i = 0; i < 14; i++) CHECK(a[i] >= 0 && a[i] < 11);
    CHECK(zg_module_is_training(m));
    CHECK(zg_tensor_get(keep, 2) == 2.0f);
    const int64_t bad[1] = {11};
    CHECK_ERR(zg_gpt_generate(m, bad, 1, 3, 1.0f, 0, 1, a), "prompt token 11 at 0 is outside the vocabulary of 11");
    zg_module *lin = zg_nn_linear(2, 2, true);
    CHECK_ERR(zg_gpt_generate(lin, prompt, 2, 3, 1.0f, 0, 1, a), "not a GPT");
    zg_module_free(lin);
    zg_module_free(m);
    zg_tensor_free(zeros);
    zg_arena_reset();
}

/* nanoGPT's configure_optimizers: decay on the matrices only. */
TEST(optim_decay_split_groups_as_nanogpt) {
    zg_gpt_config c = tiny();
    zg_module *m = zg_nn_gpt(&c);
    CHECK_PTR(m);
    if (!m) return;
    zg_optim *o = zg_optim_new_decay_split(ZG_ADAMW, m, 0.1, NULL);
    CHECK_PTR(o);
    if (!o) return;
    CHECK(zg_optim_num_groups(o) == 2);
    CHECK(zg_optim_get_hparam(o, 0, ZG_HP_WEIGHT_DECAY) == 0.1 && zg_optim_get_hparam(o, 1, ZG_HP_WEIGHT_DECAY) == 0.0);
    /* wte, wpe, and per layer c_attn, c_proj, c_fc, c_proj weights: 2 + 4 * 2 */
    CHECK(zg_optim_group_size(o, 0) == 10 && zg_optim_group_size(o, 1) == zg_module_num_params(m) - 10);
    CHECK(zg_optim_group_param(o, 0, 0) == zg_module_param_by_name(m, "transformer.wte.weight"));
    CHECK(zg_optim_group_param(o, 1, 0) == zg_module_param_by_name(m, "transformer.h.0.ln_1.weight"));
    for (int i = 0; i < zg_optim_group_size(o, 1); i++) CHECK(zg_tensor_ndim(zg_optim_group_param(o, 1, i)) == 1);
    zg_optim_free(o);
    zg_module *ln = zg_nn_layer_norm(4, 1e-5f, true, true); /* no matrix: one group, no decay */
    o = zg_optim_new_decay_split(ZG_ADAMW, ln, 0.1, NULL);
    CHECK(o && zg_optim_num_groups(o) == 1 && zg_optim_get_hparam(o, 0, ZG_HP_WEIGHT_DECAY) == 0.0);
    zg_optim_free(o);
    CHECK_NULL_ERR(zg_optim_new_decay_split(ZG_ADAMW, NULL, 0.1, NULL), "module is NULL");
    zg_module_free(ln);
    zg_module_free(m);
}
