/* A character-level GPT trained with the library's API: the text corpus
 * (zg_text), the model (zg_nn_gpt), nanoGPT's optimizer groups, the
 * canonical loop with clipping, an estimate of the validation loss,
 * sampling, and a checkpoint that resumes bit for bit.
 *
 *     gpt [FILE]     a text file (UTF-8); without one, a small built-in text
 *
 * The loop is PyTorch's:
 *
 *     zero_grad -> forward -> cross_entropy -> backward -> clip -> step
 *
 * Batches are random windows drawn from (seed, step) alone, so the run
 * saved at step RESUME_AT and continued in a fresh model and optimizer
 * must end with the very weights of the run that never stopped. The
 * program exits non-zero if the validation loss does not fall well below
 * that of a uniform guess, or if the resumed weights differ. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zgrad.h"

#define STEPS 150
#define RESUME_AT 100
#define BATCH 8
#define BLOCK 32
#define SEED 7

/* A small language: a few sentences that repeat with variations. */
static char *builtin_text(int64_t *n) {
    static const char *subj[] = {"the cat", "a dog", "the bird", "my friend"};
    static const char *verb[] = {"sat on", "ran to", "looked at", "slept near"};
    static const char *obj[] = {"the mat.", "the park.", "a tree.", "the door."};
    char *s = malloc(64 * 400);
    if (!s) return NULL;
    int64_t len = 0;
    for (int i = 0; i < 400; i++)
        len += sprintf(s + len, "%s %s %s\n", subj[i % 4], verb[(i / 4) % 4], obj[(i * 7 / 3) % 4]);
    *n = len;
    return s;
}

typedef struct {
    zg_module *model;
    zg_optim *opt;
} run;

static int make_run(run *r, int64_t vocab) {
    zg_gpt_config c = zg_gpt_config_default();
    c.vocab_size = vocab;
    c.block_size = BLOCK;
    c.n_layer = 2;
    c.n_head = 2;
    c.n_embd = 32;
    zg_manual_seed(SEED);
    r->model = zg_nn_gpt(&c);
    zg_optim_config oc = zg_optim_defaults(ZG_ADAMW);
    oc.lr = 3e-3;
    oc.beta2 = 0.99;
    /* nanoGPT's groups: weight decay 0.1 on tensors of dim >= 2 only */
    r->opt = r->model ? zg_optim_new_decay_split(ZG_ADAMW, r->model, 0.1, &oc) : NULL;
    return r->opt ? 0 : -1;
}

static void free_run(run *r) {
    zg_optim_free(r->opt);
    zg_module_free(r->model);
}

/* logits [B, T, V] against targets [B, T]. */
static zg_tensor *lm_loss(zg_module *m, zg_tensor *x, zg_tensor *y, int64_t vocab) {
    zg_tensor *logits = zg_module_forward(m, x);
    return logits ? zg_cross_entropy(zg_reshape(logits, (int64_t[]){-1, vocab}, 2),
                                     zg_reshape(y, (int64_t[]){-1}, 1), NULL)
                  : NULL;
}

/* Training steps [from, to): the canonical loop. */
static int train(run *r, const zg_text *t, int from, int to) {
    const int64_t vocab = zg_text_vocab_size(t);
    for (int s = from; s < to; s++) {
        zg_tensor *x, *y;
        if (zg_text_batch(t, false, BATCH, BLOCK, SEED, s, &x, &y)) return -1;
        zg_optim_zero_grad(r->opt, true);
        zg_tensor *loss = lm_loss(r->model, x, y, vocab);
        int rc = loss ? zg_backward(loss, NULL) : -1;
        if (!rc) rc = zg_module_clip_grad_norm(r->model, 1.0, 2.0, false, NULL);
        if (!rc) rc = zg_optim_step(r->opt);
        if (!rc && (s + 1) % 50 == 0) printf("step %3d  train loss %.4f\n", s + 1, zg_tensor_item(loss));
        zg_arena_reset();
        zg_tensor_free(x);
        zg_tensor_free(y);
        if (rc) return rc;
    }
    return 0;
}

/* The mean loss over 20 fixed windows of a split (eval mode, no_grad). */
static double estimate(zg_module *m, const zg_text *t, bool val) {
    double sum = 0;
    zg_module_train(m, false);
    zg_no_grad_enter();
    for (int k = 0; k < 20; k++) {
        zg_tensor *x, *y;
        if (zg_text_batch(t, val, BATCH, BLOCK, SEED + 1, k, &x, &y)) return NAN;
        zg_tensor *loss = lm_loss(m, x, y, zg_text_vocab_size(t));
        sum += loss ? zg_tensor_item(loss) : NAN;
        zg_arena_reset();
        zg_tensor_free(x);
        zg_tensor_free(y);
    }
    zg_no_grad_exit();
    zg_module_train(m, true);
    return sum / 20;
}

static bool same_weights(zg_module *a, zg_module *b) {
    for (int i = 0; i < zg_module_num_params(a); i++) {
        zg_tensor *p = zg_module_param(a, i), *q = zg_module_param(b, i);
        if (memcmp(zg_tensor_data(p), zg_tensor_data(q), (size_t)zg_tensor_numel(p) * sizeof(float))) return false;
    }
    return true;
}

static int fail(const char *what) {
    fprintf(stderr, "gpt: %s: %s\n", what, zg_last_error());
    return 1;
}

int main(int argc, char **argv) {
    int64_t n = 0;
    char *builtin = argc > 1 ? NULL : builtin_text(&n);
    zg_text *t = argc > 1 ? zg_text_load(argv[1], ZG_TEXT_CHAR, 0.1) : zg_text_from_memory(builtin, n, ZG_TEXT_CHAR, 0.1);
    free(builtin);
    if (!t) return fail("the text");
    const int64_t vocab = zg_text_vocab_size(t);
    printf("%lld characters, vocabulary %lld\n", (long long)(zg_text_num_tokens(t, false) + zg_text_num_tokens(t, true)),
           (long long)vocab);

    run a = {0}, b = {0};
    char dir[] = "/tmp/zgrad-gpt-XXXXXX", wpath[64], opath[64];
    if (make_run(&a, vocab) || make_run(&b, vocab)) return fail("the model");
    if (!mkdtemp(dir)) return fail("a temporary directory");
    snprintf(wpath, sizeof wpath, "%s/model.safetensors", dir);
    snprintf(opath, sizeof opath, "%s/optim.safetensors", dir);

    const double before = estimate(a.model, t, true);
    /* run a: to RESUME_AT, a checkpoint, on to the end */
    if (train(&a, t, 0, RESUME_AT)) return fail("training");
    if (zg_module_save(a.model, wpath) || zg_optim_save(a.opt, opath)) return fail("the checkpoint");
    if (train(&a, t, RESUME_AT, STEPS)) return fail("training");
    /* run b: a fresh model and optimizer, the checkpoint, the rest */
    if (zg_module_load(b.model, wpath) || zg_optim_load(b.opt, opath)) return fail("loading the checkpoint");
    if (train(&b, t, RESUME_AT, STEPS)) return fail("the resumed training");
    unlink(wpath);
    unlink(opath);
    rmdir(dir);

    const double after = estimate(a.model, t, true);
    printf("validation loss: %.4f before training (uniform guess %.4f), %.4f after %d steps\n", before, log((double)vocab),
           after, STEPS);
    const bool resumed_same = same_weights(a.model, b.model);
    printf("resumed at step %d: weights %s\n", RESUME_AT, resumed_same ? "identical bit for bit" : "DIFFERENT");

    int64_t prompt[1], out[121];
    char text[512];
    if (zg_text_encode(t, "t", prompt, 1) != 1 || zg_gpt_generate(a.model, prompt, 1, 120, 0.8f, 0, 1, out))
        return fail("sampling");
    zg_text_decode(t, out, 121, text, sizeof text);
    printf("sample:\n%s\n", text);

    const bool learned = after < 0.6 * log((double)vocab);
    free_run(&a);
    free_run(&b);
    zg_text_free(t);
    if (!learned) fprintf(stderr, "gpt: the validation loss did not fall below 0.6 x ln(vocab)\n");
    return learned && resumed_same ? 0 : 1;
}
