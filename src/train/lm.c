/* The language-model side of the training driver (--model gpt): which
 * text, its identity and vocabulary in the checkpoint, the loss, the
 * validation estimate, and sampling from a saved run.
 *
 * Shapes: x, y int64 [B, T] (T = block_size); logits [B, T, V]; the loss is
 * cross-entropy over the B*T positions, logits viewed as [B*T, V]. */
#include "train_internal.h"
#include "../data/data_internal.h"

#include <math.h>
#include <stdlib.h>

/* rc with "fn: what: " before the failed call's own message. */
static int fail_inner(int rc, const char *fn, const char *what) {
    char inner[1024];
    snprintf(inner, sizeof inner, "%s", zg_last_error());
    return zg__fail(rc, "%s: %s: %s", fn, what, inner);
}

int zg__lm_text_path(const zg_train_config *c, char *out, size_t n) {
    const char *fn = "zg_train_run";
    if (c->text_path[0]) {
        snprintf(out, n, "%s", c->text_path);
        return ZG_OK;
    }
    /* The rule of scripts/setup-corpus, which installs the corpora. */
    const char *dir = getenv("ZGRAD_CORPUS_DIR"), *cache = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (dir && *dir) snprintf(out, n, "%s/%s.txt", dir, c->corpus);
    else if (cache && *cache) snprintf(out, n, "%s/zgrad/corpus/%s.txt", cache, c->corpus);
    else snprintf(out, n, "%s/.cache/zgrad/corpus/%s.txt", home && *home ? home : ".", c->corpus);
    if (!zg__path_exists(out))
        return zg__fail(ZG_ERR_IO, "%s: corpus '%s' is not installed ('%s' does not exist; scripts/setup-corpus "
                        "installs shakespeare, or give a text file with --text)", fn, c->corpus, out);
    return ZG_OK;
}

/* The vocabulary as hex of its characters' UTF-8, in id order: the
 * characters are distinct and sorted, so the text of these bytes has the
 * very same vocabulary (lm_vocab_text). Hex keeps any character, NUL
 * included, intact in the checkpoint's JSON header. */
static char *vocab_hex(const zg_text *t) {
    const int64_t v = zg_text_vocab_size(t);
    int64_t *ids = zg__malloc((size_t)v * sizeof *ids);
    char *utf8 = zg__malloc((size_t)v * 4 + 1), *hex = zg__malloc((size_t)v * 8 + 1);
    int64_t len = -1;
    if (ids && utf8 && hex) {
        for (int64_t i = 0; i < v; i++) ids[i] = i;
        len = zg_text_decode(t, ids, v, utf8, v * 4 + 1);
    }
    if (len >= 0)
        for (int64_t i = 0; i < len; i++) snprintf(hex + 2 * i, 3, "%02x", (unsigned char)utf8[i]);
    free(ids);
    free(utf8);
    if (len < 0) {
        free(hex);
        return NULL;
    }
    hex[2 * len] = '\0';
    return hex;
}

int zg__lm_load_text(const zg_train_config *c, zg__text_id *id, zg_text **out) {
    const char *fn = "zg_train_run";
    char path[4200];
    int rc = zg__lm_text_path(c, path, sizeof path);
    if (rc) return rc;
    /* Size and CRC name the text: a resume on other text is refused. */
    rc = zg__file_crc(fn, path, &id->crc, &id->bytes);
    if (rc) return rc;
    *out = zg_text_load(path, c->text_vocab, c->val_fraction);
    if (!*out) return fail_inner(ZG_ERR_FORMAT, fn, "the text");
    const zg_gpt_config *g = &c->gpt;
    if (g->vocab_size && g->vocab_size != zg_text_vocab_size(*out))
        return zg__fail(ZG_ERR_ARG, "%s: the GPT's vocab_size is %lld but the text '%s' has %lld distinct tokens "
                        "(set vocab_size to %lld in the model file)", fn, (long long)g->vocab_size, path,
                        (long long)zg_text_vocab_size(*out), (long long)zg_text_vocab_size(*out));
    if (zg_text_num_tokens(*out, true) < g->block_size + 1 || zg_text_num_tokens(*out, false) < g->block_size + 1)
        return zg__fail(ZG_ERR_ARG, "%s: '%s' is too short: its training and validation splits (%lld and %lld tokens) "
                        "each need block_size + 1 = %lld", fn, path, (long long)zg_text_num_tokens(*out, false),
                        (long long)zg_text_num_tokens(*out, true), (long long)g->block_size + 1);
    free(id->vocab_hex);
    if (!(id->vocab_hex = vocab_hex(*out))) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    return ZG_OK;
}

/* A text whose vocabulary is the checkpoint's (for encoding and decoding
 * only: it has no tokens worth training on). */
static zg_text *lm_vocab_text(const char *fn, const zg__ckpt_state *s) {
    if (s->text_vocab == ZG_TEXT_BYTE) return zg_text_from_memory("", 0, ZG_TEXT_BYTE, 0.0);
    const char *hex = s->vocab_hex ? s->vocab_hex : "";
    const size_t n = strlen(hex) / 2;
    char *bytes = zg__malloc(n + 1);
    if (!bytes) return zg__fail_null("%s: out of memory", fn);
    for (size_t i = 0; i < n; i++) {
        unsigned x;
        if (sscanf(hex + 2 * i, "%2x", &x) != 1) x = 0;
        bytes[i] = (char)x;
    }
    zg_text *t = zg_text_from_memory(bytes, (int64_t)n, ZG_TEXT_CHAR, 0.0);
    free(bytes);
    return t;
}

zg_module *zg__lm_build(const zg_train_config *c, int64_t vocab) {
    zg_gpt_config g = c->gpt;
    g.vocab_size = vocab;
    return zg_nn_gpt(&g);
}

zg_tensor *zg__lm_loss(zg_module *m, zg_tensor *x, zg_tensor *y, zg_tensor **logits_out) {
    zg_tensor *logits = zg_module_forward(m, x);
    if (logits_out) *logits_out = logits;
    if (!logits) return NULL;
    const int64_t v = zg_tensor_size(logits, zg_tensor_ndim(logits) - 1);
    return zg_cross_entropy(zg_reshape(logits, (int64_t[]){-1, v}, 2), zg_reshape(y, (int64_t[]){-1}, 1), NULL);
}

/* Positions whose largest logit (the first, on ties) is the target. */
static int64_t lm_hits(const zg_tensor *logits, const zg_tensor *y) {
    const int64_t v = zg_tensor_size(logits, zg_tensor_ndim(logits) - 1), n = zg_tensor_numel(y);
    const float *l = zg__f32(logits);
    const int64_t *t = zg__i64(y);
    int64_t hits = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *row = l + i * v;
        int64_t best = 0;
        for (int64_t k = 1; k < v; k++)
            if (row[k] > row[best]) best = k;
        hits += best == t[i];
    }
    return hits;
}

/* The same eval_iters validation windows at every evaluation (keyed by the
 * run's seed), so the curve compares like with like. */
int zg__lm_evaluate(zg_module *m, const zg_text *text, const zg_train_config *c, zg_tensor *x, zg_tensor *y,
                    double *loss, double *acc) {
    const bool was_training = zg_module_is_training(m);
    zg_module_train(m, false);
    zg_no_grad_enter();
    double sum = 0;
    int64_t hits = 0;
    int rc = ZG_OK;
    for (int64_t k = 0; k < c->eval_iters && !rc; k++) {
        rc = zg__text_fill_batch(text, true, c->seed, k, x, y);
        zg_tensor *logits = NULL, *l = rc ? NULL : zg__lm_loss(m, x, y, &logits);
        if (!rc && !l) rc = ZG_ERR_STATE;
        if (!rc) {
            sum += zg_tensor_item(l);
            hits += lm_hits(logits, y);
        }
        zg_arena_reset();
    }
    zg_no_grad_exit();
    zg_module_train(m, was_training);
    if (rc) return rc;
    *loss = sum / (double)c->eval_iters;
    *acc = (double)hits / ((double)c->eval_iters * (double)zg_tensor_numel(y));
    return ZG_OK;
}

/* ---- sampling ------------------------------------------------------------------ */

/* The checkpoint's GPT with its weights (the caller's generator state is
 * kept: building draws initial weights) and a text of its vocabulary. */
static int load_gpt(const char *fn, const char *path, zg_module **model, zg_text **text) {
    char ckpt[4200], run[4200];
    zg__ckpt_state s;
    int rc = zg__ckpt_locate(fn, path, ckpt, sizeof ckpt, run, sizeof run);
    if (!rc) rc = zg__ckpt_read_state(fn, ckpt, &s);
    if (rc) return rc;
    if (s.model != ZG_MODEL_GPT)
        rc = zg__fail(ZG_ERR_ARG, "%s: '%s' is a %s run; sampling needs a --model gpt run", fn, path,
                      zg_train_model_name(s.model));
    if (!rc && !(*text = lm_vocab_text(fn, &s))) rc = ZG_ERR_FORMAT;
    if (!rc && zg_text_vocab_size(*text) != s.gpt.vocab_size)
        rc = zg__fail(ZG_ERR_FORMAT, "%s: '%s': the vocabulary holds %lld tokens, the model %lld", fn, ckpt,
                      (long long)zg_text_vocab_size(*text), (long long)s.gpt.vocab_size);
    if (!rc) {
        uint64_t rng[4];
        zg_rng_get_state(rng);
        *model = zg_nn_gpt(&s.gpt);
        zg_rng_set_state(rng);
        if (!*model) rc = fail_inner(ZG_ERR_FORMAT, fn, "the checkpoint's GPT");
    }
    if (!rc) rc = zg__ckpt_load(fn, ckpt, *model, NULL);
    zg__ckpt_state_free(&s);
    return rc;
}

int zg_train_sample(const char *path, const char *prompt, int64_t n_tokens, float temperature, int64_t top_k,
                    uint64_t seed, char **out) {
    const char *fn = "zg_train_sample";
    if (!path || !prompt || !out) return zg__fail(ZG_ERR_ARG, "%s: NULL argument", fn);
    *out = NULL;
    if (n_tokens < 0 || n_tokens > 10000000)
        return zg__fail(ZG_ERR_ARG, "%s: n_tokens must be in [0, 10^7] (got %lld)", fn, (long long)n_tokens);
    if (!(temperature >= 0.0f) || !isfinite(temperature) || top_k < 0)
        return zg__fail(ZG_ERR_ARG, "%s: temperature must be finite and >= 0, top_k >= 0", fn);
    zg_module *model = NULL;
    zg_text *text = NULL;
    int64_t *ids = NULL;
    int rc = load_gpt(fn, path, &model, &text);
    /* No prompt: a newline, or token 0 when the text has none. */
    const char *start = prompt[0] || (!rc && zg_text_encode(text, "\n", NULL, 0) < 0) ? prompt : "\n";
    int64_t n_prompt = rc ? 0 : start[0] ? zg_text_encode(text, start, NULL, 0) : 1;
    if (!rc && n_prompt < 0) rc = fail_inner(ZG_ERR_ARG, fn, "the prompt");
    if (!rc && !(ids = zg__calloc((size_t)(n_prompt + n_tokens), sizeof *ids)))
        rc = zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    if (!rc && start[0]) zg_text_encode(text, start, ids, n_prompt);
    if (!rc && zg_gpt_generate(model, ids, n_prompt, n_tokens, temperature, top_k, seed, ids))
        rc = fail_inner(ZG_ERR_STATE, fn, "generating");
    int64_t len = rc ? 0 : zg_text_decode(text, ids, n_prompt + n_tokens, NULL, 0);
    if (!rc && len < 0) rc = fail_inner(ZG_ERR_FORMAT, fn, "decoding");
    if (!rc && !(*out = zg__malloc((size_t)len + 1))) rc = zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    if (!rc) zg_text_decode(text, ids, n_prompt + n_tokens, *out, len + 1);
    free(ids);
    zg_text_free(text);
    zg_module_free(model);
    zg_arena_reset();
    return rc;
}
