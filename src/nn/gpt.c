/* A GPT in nanoGPT's layout: token and position embeddings, n_layer
 * pre-norm blocks, a final LayerNorm and a language-model head tied to the
 * token embedding.
 *
 * Shapes (B batch, T <= block_size tokens, C = n_embd, V vocab, nh heads,
 * hs = C / nh):
 *   idx int64 [B, T] -> x = drop(wte[idx] + wpe[0..T))          [B, T, C]
 *   each block: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))
 *     attn: q, k, v = split(c_attn(x), C) -> [B, nh, T, hs] each,
 *           y = causal attention, [B, T, C] again, resid_drop(c_proj(y))
 *           (one op reading the heads from c_attn's output in place,
 *           zg__attention_packed; with dropout in training, the ops)
 *     mlp:  dropout(c_proj(gelu(c_fc(x)))), c_fc C -> 4C
 *   logits = ln_f(x) wte^T                                       [B, T, V]
 * Parameter names follow nanoGPT's state_dict: transformer.wte.weight,
 * transformer.h.0.attn.c_attn.weight, ..., transformer.ln_f.weight; the
 * head has no parameter of its own (lm_head.weight is wte's).
 * Init as nanoGPT: Linear and Embedding weights N(0, 0.02), biases zero,
 * the residual projections (c_proj) N(0, 0.02 / sqrt(2 n_layer)). */
#include "nn_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ATTN_C_ATTN, ATTN_C_PROJ, ATTN_DROP, ATTN_RESID_DROP };
enum { MLP_C_FC, MLP_GELU, MLP_C_PROJ, MLP_DROP };
enum { BLOCK_LN_1, BLOCK_ATTN, BLOCK_LN_2, BLOCK_MLP };
enum { TF_WTE, TF_WPE, TF_DROP, TF_H, TF_LN_F };

zg_gpt_config zg_gpt_config_default(void) {
    return (zg_gpt_config){.vocab_size = 65, .block_size = 64, .n_layer = 4, .n_head = 4, .n_embd = 128,
                           .dropout = 0.0f, .bias = false};
}

/* m's forward on x, or NULL when x is NULL (an earlier failure, whose
 * error stays). */
static zg_tensor *call(zg_module *m, zg_tensor *x) { return x ? zg__module_call(m, x) : NULL; }

/* ---- attention ---------------------------------------------------------- */

/* softmax(q k^T / sqrt(hs), causal) with dropout on the probabilities, v:
 * the ops one by one, for dropout in training (the fused op has none). */
static zg_tensor *attention_with_dropout(zg_tensor *q, zg_tensor *k, zg_tensor *v, float p) {
    const int64_t B = q->shape[0], H = q->shape[1], T = q->shape[2], hs = q->shape[3];
    zg_tensor *q3 = zg_reshape(q, (int64_t[]){B * H, T, hs}, 3), *k3 = zg_reshape(k, (int64_t[]){B * H, T, hs}, 3);
    zg_tensor *v3 = zg_reshape(v, (int64_t[]){B * H, T, hs}, 3);
    zg_tensor *s = zg_mul_scalar(zg_matmul(q3, zg_transpose(k3, 1, 2)), (float)(1.0 / sqrt((double)hs)));
    zg_tensor *future = s ? zg__empty(ZG_FLOAT32, (int64_t[]){T, T}, 2) : NULL;
    if (!future) return NULL;
    for (int64_t i = 0; i < T; i++)
        for (int64_t j = 0; j < T; j++) zg__f32(future)[i * T + j] = j > i ? 1.0f : 0.0f;
    zg_tensor *att = zg_dropout(zg_softmax(zg_masked_fill(s, future, -INFINITY), -1), p, true);
    return zg_reshape(zg_matmul(att, v3), (int64_t[]){B, H, T, hs}, 4);
}

/* iv[0]: n_head; sc[0]: dropout. x [B, T, C] -> [B, T, C]. */
static zg_tensor *attn_forward(zg_module *m, zg_tensor *x) {
    if (x->ndim != 3) return zg__fail_null("expected x [B, T, C]");
    const int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2], nh = m->iv[0], hs = C / nh;
    zg_tensor *qkv = call(m->children[ATTN_C_ATTN], x), *y;
    if (!qkv) return NULL;
    if (m->training && m->sc[0] > 0.0f) {
        zg_tensor *part[3];
        if (zg_split(qkv, C, 2, part, 3) != 3) return NULL;
        for (int i = 0; i < 3; i++) part[i] = zg_transpose(zg_reshape(part[i], (int64_t[]){B, T, nh, hs}, 4), 1, 2);
        y = attention_with_dropout(part[0], part[1], part[2], m->sc[0]);
        y = zg_reshape(zg_transpose(y, 1, 2), (int64_t[]){B, T, C}, 3);
    } else {
        /* the heads read straight from c_attn's output: no split, no transposes */
        y = zg__attention_packed(qkv, nh);
    }
    if (!y) return NULL;
    return call(m->children[ATTN_RESID_DROP], call(m->children[ATTN_C_PROJ], y));
}

static zg_tensor *mlp_forward(zg_module *m, zg_tensor *x) {
    for (int i = MLP_C_FC; i <= MLP_DROP; i++) x = call(m->children[i], x);
    return x;
}

static zg_tensor *block_forward(zg_module *m, zg_tensor *x) {
    zg_tensor *a = call(m->children[BLOCK_ATTN], call(m->children[BLOCK_LN_1], x));
    x = a ? zg_add(x, a) : NULL;
    zg_tensor *f = call(m->children[BLOCK_MLP], call(m->children[BLOCK_LN_2], x));
    return f ? zg_add(x, f) : NULL;
}

static zg_tensor *container_forward(zg_module *m, zg_tensor *x) {
    (void)x;
    return zg__fail_null("%s holds modules: it has no forward of its own", m->type);
}

/* iv: vocab_size, block_size. idx int64 [B, T] -> logits [B, T, V]. */
static zg_tensor *gpt_forward(zg_module *m, zg_tensor *idx) {
    if (idx->dtype != ZG_INT64 || idx->ndim != 2) return zg__fail_null("expected int64 token indices [B, T]");
    const int64_t T = idx->shape[1];
    if (T < 1 || T > m->iv[1])
        return zg__fail_null("a sequence of %lld tokens: the block size is %lld", (long long)T, (long long)m->iv[1]);
    zg_module *tf = m->children[0];
    zg_tensor *pos = zg__empty(ZG_INT64, &T, 1);
    if (!pos) return NULL;
    for (int64_t t = 0; t < T; t++) zg__i64(pos)[t] = t;
    zg_tensor *tok = call(tf->children[TF_WTE], idx), *pe = call(tf->children[TF_WPE], pos);
    zg_tensor *x = call(tf->children[TF_DROP], tok && pe ? zg_add(tok, pe) : NULL);
    zg_module *h = tf->children[TF_H];
    for (int i = 0; i < h->n_children; i++) x = call(h->children[i], x);
    x = call(tf->children[TF_LN_F], x);
    return x ? zg_linear(x, tf->children[TF_WTE]->params[0], NULL) : NULL;
}

static void gpt_describe(const zg_module *m, char *buf, size_t n) {
    snprintf(buf, n, "GPT(vocab_size=%lld, block_size=%lld, n_layer=%lld, n_head=%lld, n_embd=%lld)",
             (long long)m->iv[0], (long long)m->iv[1], (long long)m->iv[2], (long long)m->iv[3], (long long)m->iv[4]);
}

/* ---- construction -------------------------------------------------------- */

/* Adds children (NULL: out of memory or a bad argument, error set) to m
 * in order; frees the rest and fails on the first missing one. */
static int add_children(zg_module *m, const char *const *names, zg_module **kids, int n) {
    int rc = ZG_OK;
    for (int i = 0; i < n; i++) {
        if (rc || !kids[i]) {
            if (!rc) rc = ZG_ERR_NOMEM;
            zg_module_free(kids[i]);
            continue;
        }
        rc = zg__module_add_child(m, names[i], kids[i]);
    }
    return rc;
}

/* A module of `type` with the children given, or NULL (all freed). */
static zg_module *node(const char *type, zg__module_forward_fn fwd, const char *const *names, zg_module **kids, int n) {
    zg_module *m = zg__module_new(type, fwd, NULL);
    if (!m) {
        for (int i = 0; i < n; i++) zg_module_free(kids[i]);
        return NULL;
    }
    if (add_children(m, names, kids, n)) {
        zg_module_free(m);
        return NULL;
    }
    return m;
}

/* n_embd a positive multiple of n_head, dropout in [0, 1). */
static int check_sizes(const char *fn, int64_t n_embd, int64_t n_head, float dropout) {
    if (n_embd < 1 || n_head < 1 || n_embd % n_head)
        return zg__fail(ZG_ERR_ARG, "%s: n_embd %lld must be a positive multiple of n_head %lld", fn, (long long)n_embd,
                        (long long)n_head);
    if (!(dropout >= 0.0f && dropout < 1.0f))
        return zg__fail(ZG_ERR_ARG, "%s: dropout %g must lie in [0, 1)", fn, (double)dropout);
    return ZG_OK;
}

zg_module *zg_nn_causal_self_attention(int64_t n_embd, int64_t n_head, float dropout, bool bias) {
    if (check_sizes("zg_nn_causal_self_attention", n_embd, n_head, dropout)) return NULL;
    const int64_t C = n_embd;
    zg_module *ak[4] = {zg_nn_linear(C, 3 * C, bias), zg_nn_linear(C, C, bias), zg_nn_dropout(dropout),
                        zg_nn_dropout(dropout)};
    zg_module *attn = node("CausalSelfAttention", attn_forward,
                           (const char *const[]){"c_attn", "c_proj", "attn_dropout", "resid_dropout"}, ak, 4);
    if (attn) {
        attn->iv[0] = n_head;
        attn->sc[0] = dropout;
    }
    return attn;
}

zg_module *zg_nn_transformer_mlp(int64_t n_embd, float dropout, bool bias) {
    if (check_sizes("zg_nn_transformer_mlp", n_embd, 1, dropout)) return NULL;
    const int64_t C = n_embd;
    zg_module *mk[4] = {zg_nn_linear(C, 4 * C, bias), zg_nn_gelu(false), zg_nn_linear(4 * C, C, bias),
                        zg_nn_dropout(dropout)};
    return node("MLP", mlp_forward, (const char *const[]){"c_fc", "gelu", "c_proj", "dropout"}, mk, 4);
}

zg_module *zg_nn_transformer_block(int64_t n_embd, int64_t n_head, float dropout, bool bias) {
    if (check_sizes("zg_nn_transformer_block", n_embd, n_head, dropout)) return NULL;
    const int64_t C = n_embd;
    zg_module *bk[4] = {zg_nn_layer_norm(C, 1e-5f, true, bias), zg_nn_causal_self_attention(C, n_head, dropout, bias),
                        zg_nn_layer_norm(C, 1e-5f, true, bias), zg_nn_transformer_mlp(C, dropout, bias)};
    return node("Block", block_forward, (const char *const[]){"ln_1", "attn", "ln_2", "mlp"}, bk, 4);
}

/* Overwrites t with N(0, std) draws. */
static int fill_normal(zg_tensor *t, float std) {
    zg_tensor *r = zg_normal(t->shape, t->ndim, 0.0f, std);
    if (!r) return ZG_ERR_NOMEM;
    memcpy(zg__f32(t), zg__f32(r), (size_t)t->numel * sizeof(float));
    zg_tensor_free(r);
    return ZG_OK;
}

/* nanoGPT's _init_weights, in parameter order, then the residual
 * projections' smaller std. */
static int gpt_init(zg_module *m, int64_t n_layer) {
    const float proj_std = (float)(0.02 / sqrt(2.0 * (double)n_layer));
    const int n = zg_module_num_params(m);
    for (int i = 0; i < n; i++) {
        zg_tensor *p = zg_module_param(m, i);
        const char *name = zg_module_param_name(m, i);
        const size_t len = strlen(name);
        const bool is_bias = len >= 5 && !strcmp(name + len - 5, ".bias");
        const bool is_ln = strstr(name, ".ln_") != NULL;
        if (is_ln) continue; /* LayerNorm: ones and zeros already */
        if (is_bias) {
            memset(zg__f32(p), 0, (size_t)p->numel * sizeof(float));
            continue;
        }
        const size_t pl = strlen("c_proj.weight");
        const bool proj = len >= pl && !strcmp(name + len - pl, "c_proj.weight");
        if (fill_normal(p, proj ? proj_std : 0.02f)) return zg__fail(ZG_ERR_NOMEM, "zg_nn_gpt: out of memory");
    }
    return ZG_OK;
}

static int check_config(const zg_gpt_config *c) {
    const char *fn = "zg_nn_gpt";
    if (!c) return zg__fail(ZG_ERR_ARG, "%s: config is NULL (zg_gpt_config_default() gives nanoGPT's CPU recipe)", fn);
    if (c->vocab_size < 1 || c->block_size < 1 || c->n_layer < 1 || c->n_head < 1 || c->n_embd < 1)
        return zg__fail(ZG_ERR_ARG,
                        "%s: vocab_size %lld, block_size %lld, n_layer %lld, n_head %lld, n_embd %lld must be positive",
                        fn, (long long)c->vocab_size, (long long)c->block_size, (long long)c->n_layer,
                        (long long)c->n_head, (long long)c->n_embd);
    if (c->n_embd % c->n_head)
        return zg__fail(ZG_ERR_ARG, "%s: n_embd %lld is not a multiple of n_head %lld", fn, (long long)c->n_embd,
                        (long long)c->n_head);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return zg__fail(ZG_ERR_ARG, "%s: dropout %g must lie in [0, 1)", fn, (double)c->dropout);
    return ZG_OK;
}

zg_module *zg_nn_gpt(const zg_gpt_config *c) {
    if (check_config(c)) return NULL;
    const int64_t L = c->n_layer;
    zg_module *h = zg__module_new("ModuleList", container_forward, NULL);
    for (int64_t i = 0; i < L && h; i++) {
        char name[24];
        snprintf(name, sizeof name, "%lld", (long long)i);
        zg_module *b = zg_nn_transformer_block(c->n_embd, c->n_head, c->dropout, c->bias);
        if (!b || zg__module_add_child(h, name, b)) {
            zg_module_free(h);
            h = NULL;
        }
    }
    zg_module *tk[5] = {zg_nn_embedding(c->vocab_size, c->n_embd, ZG_NO_PADDING_IDX),
                        zg_nn_embedding(c->block_size, c->n_embd, ZG_NO_PADDING_IDX), zg_nn_dropout(c->dropout), h,
                        zg_nn_layer_norm(c->n_embd, 1e-5f, true, c->bias)};
    zg_module *tf =
        node("ModuleDict", container_forward, (const char *const[]){"wte", "wpe", "drop", "h", "ln_f"}, tk, 5);
    zg_module *m = node("GPT", gpt_forward, (const char *const[]){"transformer"}, &tf, 1);
    if (!m) {
        char inner[1024];
        snprintf(inner, sizeof inner, "%s", zg_last_error()[0] ? zg_last_error() : "out of memory");
        return zg__fail_null("zg_nn_gpt: %s", inner);
    }
    m->describe = gpt_describe;
    const int64_t iv[5] = {c->vocab_size, c->block_size, c->n_layer, c->n_head, c->n_embd};
    memcpy(m->iv, iv, sizeof iv);
    if (gpt_init(m, L)) {
        zg_module_free(m);
        return NULL;
    }
    return m;
}

/* ---- generation ------------------------------------------------------------ */

/* A uniform double in [0, 1) for (seed, position): sampling is
 * reproducible from the seed alone. */
static double sample_uniform(uint64_t seed, int64_t pos) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * (uint64_t)(pos + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

/* The next token from the last position's logits row [V]: logits /
 * temperature, all but the top_k largest dropped (top_k <= 0: none
 * dropped), softmax, one draw by inverse CDF; temperature 0 is argmax. */
static int64_t next_token(const float *row, int64_t V, float temperature, int64_t top_k, double u, double *p) {
    int64_t best = 0;
    for (int64_t j = 1; j < V; j++)
        if (row[j] > row[best]) best = j;
    if (temperature <= 0.0f) return best;
    /* the k-th largest logit is the threshold: values below it drop */
    float cut = -INFINITY;
    if (top_k > 0 && top_k < V) {
        for (int64_t j = 0; j < V; j++) p[j] = row[j];
        for (int64_t k = 0; k < top_k; k++) { /* top_k selections: V is small (a vocabulary) */
            int64_t m = -1;
            for (int64_t j = 0; j < V; j++)
                if (p[j] > -INFINITY && (m < 0 || p[j] > p[m])) m = j;
            cut = (float)p[m];
            p[m] = -INFINITY;
        }
    }
    double sum = 0.0;
    for (int64_t j = 0; j < V; j++) {
        p[j] = row[j] < cut ? 0.0 : exp(((double)row[j] - row[best]) / temperature);
        sum += p[j];
    }
    double acc = 0.0, target = u * sum;
    for (int64_t j = 0; j < V; j++) {
        acc += p[j];
        if (target < acc && p[j] > 0.0) return j;
    }
    return best;
}

int zg_gpt_generate(zg_module *gpt, const int64_t *prompt, int64_t n_prompt, int64_t n_new, float temperature,
                    int64_t top_k, uint64_t seed, int64_t *out) {
    const char *fn = "zg_gpt_generate";
    if (!gpt || strcmp(gpt->type, "GPT")) return zg__fail(ZG_ERR_ARG, "%s: the module is not a GPT (zg_nn_gpt)", fn);
    if (!out || (!prompt && n_prompt) || n_prompt < 1 || n_new < 0)
        return zg__fail(ZG_ERR_ARG, "%s: need a prompt of at least one token, n_new >= 0 and out", fn);
    if (!(temperature >= 0.0f) || !isfinite(temperature))
        return zg__fail(ZG_ERR_ARG, "%s: temperature %g must be >= 0", fn, (double)temperature);
    const int64_t V = gpt->iv[0], block = gpt->iv[1];
    for (int64_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= V)
            return zg__fail(ZG_ERR_ARG, "%s: prompt token %lld at %lld is outside the vocabulary of %lld", fn,
                            (long long)prompt[i], (long long)i, (long long)V);
    double *p = zg__malloc((size_t)V * sizeof *p);
    if (!p) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    memcpy(out, prompt, (size_t)n_prompt * sizeof *out);
    const bool was_training = gpt->training;
    zg_module_train(gpt, false);
    zg_no_grad_enter();
    const size_t mark = zg_arena_mark(); /* the caller's arena tensors stay */
    int rc = ZG_OK;
    /* No KV cache: each new token runs the model on the last block_size
     * tokens again (nanoGPT's generate). */
    for (int64_t n = n_prompt; n < n_prompt + n_new && !rc; n++) {
        const int64_t T = n < block ? n : block;
        zg_tensor *idx = zg__empty(ZG_INT64, (int64_t[]){1, T}, 2), *logits = NULL;
        if (idx) {
            memcpy(zg__i64(idx), out + n - T, (size_t)T * sizeof *out);
            logits = zg_module_forward(gpt, idx);
        }
        if (!logits) {
            rc = ZG_ERR_STATE;
            break;
        }
        out[n] = next_token(zg__f32(logits) + (T - 1) * V, V, temperature, top_k, sample_uniform(seed, n), p);
        zg_arena_release(mark);
    }
    zg_no_grad_exit();
    zg_module_train(gpt, was_training);
    free(p);
    return rc ? rc : ZG_OK;
}
