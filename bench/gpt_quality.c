/* zgrad side of the GPT quality check (bench/gpt_quality.py is PyTorch's):
 * nanoGPT's CPU recipe on the shakespeare corpus, the losses at the end.
 *
 *     gpt_quality [SEED [ITERS [CORPUS]]]
 *
 * The recipe: 4 layers, 4 heads, 128 embd, block 64, batch 12, dropout 0,
 * no bias; AdamW lr 1e-3, betas (0.9, 0.99), weight decay 0.1 on tensors of
 * dim >= 2; 100 warm-up iterations then cosine decay to 1e-4 at the last;
 * clip_grad_norm 1.0; the first 90% of the characters train. Each loss is
 * the mean over 200 random batches of its split. Prints one JSON line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "zgrad.h"

#define BATCH 12
#define BLOCK 64
#define EVAL_ITERS 200

static double lr_at(int it, int iters) {
    if (it < 100) return 1e-3 * (it + 1) / 101.0;
    double r = (double)(it - 100) / (iters > 100 ? iters - 100 : 1);
    return 1e-4 + 0.5 * (1.0 + cos(M_PI * (r < 1 ? r : 1))) * (1e-3 - 1e-4);
}

static zg_tensor *lm_loss(zg_module *m, zg_tensor *x, zg_tensor *y, int64_t vocab) {
    zg_tensor *logits = zg_module_forward(m, x);
    return logits ? zg_cross_entropy(zg_reshape(logits, (int64_t[]){-1, vocab}, 2), zg_reshape(y, (int64_t[]){-1}, 1),
                                     NULL)
                  : NULL;
}

static double estimate(zg_module *m, const zg_text *t, bool val) {
    double sum = 0;
    zg_module_train(m, false);
    zg_no_grad_enter();
    for (int k = 0; k < EVAL_ITERS; k++) {
        zg_tensor *x, *y;
        if (zg_text_batch(t, val, BATCH, BLOCK, 999, k, &x, &y)) return NAN;
        zg_tensor *l = lm_loss(m, x, y, zg_text_vocab_size(t));
        sum += l ? zg_tensor_item(l) : NAN;
        zg_arena_reset();
        zg_tensor_free(x);
        zg_tensor_free(y);
    }
    zg_no_grad_exit();
    zg_module_train(m, true);
    return sum / EVAL_ITERS;
}

static int die(const char *what) {
    fprintf(stderr, "gpt_quality: %s: %s\n", what, zg_last_error());
    return 1;
}

int main(int argc, char **argv) {
    const int seed = argc > 1 ? atoi(argv[1]) : 1337, iters = argc > 2 ? atoi(argv[2]) : 2000;
    char corpus[1024];
    const char *home = getenv("HOME"), *cache = getenv("XDG_CACHE_HOME");
    if (argc > 3) snprintf(corpus, sizeof corpus, "%s", argv[3]);
    else if (cache) snprintf(corpus, sizeof corpus, "%s/zgrad/corpus/shakespeare.txt", cache);
    else snprintf(corpus, sizeof corpus, "%s/.cache/zgrad/corpus/shakespeare.txt", home ? home : ".");
    zg_text *t = zg_text_load(corpus, ZG_TEXT_CHAR, 0.1);
    if (!t) return die("the corpus (scripts/setup-corpus installs it)");
    zg_gpt_config c = zg_gpt_config_default();
    c.vocab_size = zg_text_vocab_size(t);
    zg_manual_seed((uint64_t)seed);
    zg_module *m = zg_nn_gpt(&c);
    if (!m) return die("the model");
    zg_optim_config oc = zg_optim_defaults(ZG_ADAMW);
    oc.lr = 1e-3;
    oc.beta2 = 0.99;
    zg_optim *o = zg_optim_new_decay_split(ZG_ADAMW, m, 0.1, &oc);
    if (!o) return die("the optimizer");
    for (int it = 0; it < iters; it++) {
        for (int k = 0; k < 2; k++) zg_optim_set_hparam(o, k, ZG_HP_LR, lr_at(it, iters));
        zg_tensor *x, *y;
        if (zg_text_batch(t, false, BATCH, BLOCK, (uint64_t)seed, it, &x, &y)) return die("a batch");
        zg_optim_zero_grad(o, true);
        zg_tensor *l = lm_loss(m, x, y, c.vocab_size);
        if (!l || zg_backward(l, NULL) || zg_module_clip_grad_norm(m, 1.0, 2.0, false, NULL) || zg_optim_step(o))
            return die("a step");
        zg_arena_reset();
        zg_tensor_free(x);
        zg_tensor_free(y);
    }
    printf("{\"seed\": %d, \"iters\": %d, \"train_loss\": %.6f, \"val_loss\": %.6f}\n", seed, iters,
           estimate(m, t, false), estimate(m, t, true));
    zg_optim_free(o);
    zg_module_free(m);
    zg_text_free(t);
    return 0;
}
