/* zgrad command-line tool: `zgrad train` (the training driver of
 * src/train on Fashion-MNIST) and `zgrad eval`.
 *
 * Exit status: 0 success, 1 an error from the library (one line
 * "zgrad: <message>"), 2 a usage error (one line naming the option, then the
 * short usage), 130 / 143 stopped by SIGINT / SIGTERM after writing a
 * checkpoint. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zgrad.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: zgrad [--version] [--help] <command> [options]\n"
            "\n"
            "zgrad trains neural networks in C with PyTorch's training semantics.\n"
            "\n"
            "commands:\n"
            "  train       train a model on Fashion-MNIST (zgrad train --help)\n"
            "  eval        evaluate a saved run on the test set (zgrad eval --help)\n"
            "\n"
            "options:\n"
            "  --version   print the version and exit\n"
            "  --help      print this help and exit\n");
}

static void train_usage(FILE *f) {
    fprintf(f,
            "usage: zgrad train [options]\n"
            "\n"
            "Trains a model on Fashion-MNIST with the canonical loop (zero_grad, forward,\n"
            "loss, backward, step), evaluates it after every epoch and writes into the run\n"
            "directory: metrics.jsonl, curves.svg, model.safetensors and a checkpoint.\n"
            "With no options: the default CNN, Adam lr 1e-3, batch 64, 3 epochs, seed 0.\n"
            "\n"
            "options:\n"
            "  --model cnn|mlp        cnn: Conv32-Pool-Conv64-Pool-Linear128-Linear10 (default);\n"
            "                         mlp: 784-256-128-10 with ReLU\n"
            "  --epochs N             total epochs, also when resuming (default 3)\n"
            "  --batch-size N         (default 64)\n"
            "  --optimizer NAME       sgd, adam, adamw, rmsprop or adagrad (default adam)\n"
            "  --lr X                 learning rate (default: the optimizer's; adam 1e-3)\n"
            "  --momentum X           sgd and rmsprop only (default 0)\n"
            "  --weight-decay X       (default: the optimizer's; adamw 1e-2, others 0)\n"
            "  --seed N               weight initialisation and data order (default 0)\n"
            "  --threads N            OpenMP and OpenBLAS threads (default: all cores)\n"
            "  --data DIR             MNIST-format data set (default\n"
            "                         /usr/share/datasets/fashion-mnist; scripts/setup installs it)\n"
            "  --out DIR              run directory (default runs/<timestamp>)\n"
            "  --resume DIR           continue the run in DIR from its last checkpoint, exactly\n"
            "                         as if it had not stopped; its options are kept (a\n"
            "                         different value is refused, --epochs may grow)\n"
            "  --progress MODE        auto (a bar on a terminal, else a line every few\n"
            "                         seconds), bar, lines or off (default auto)\n"
            "  --accum N              accumulate N batches per optimizer step (default 1): each\n"
            "                         loss is divided by N; an epoch's short last window steps\n"
            "                         with what it has (its losses were divided by N too)\n"
            "  --clip-norm X          clip the total L2 norm of the grads to X before each step\n"
            "  --schedule SPEC        learning-rate schedule over the run's optimizer steps:\n"
            "                         step:SIZE[,gamma=G], cosine[:T_MAX][,eta_min=E],\n"
            "                         linear[:ITERS][,start_factor=S,end_factor=E],\n"
            "                         onecycle:MAX_LR[,...], warmup-cosine:W[,start_factor=S,eta_min=E]\n"
            "  --amp bf16|fp16|off    mixed precision: autocast around the forward; fp16 also\n"
            "                         scales the loss with a GradScaler (default off)\n"
            "  --max-bad-steps K      stop after K skipped batches in a row (a batch that fails\n"
            "                         to load or gives a NaN/inf loss is skipped; default 5)\n"
            "\n"
            "SIGINT / SIGTERM finish the current step, write a checkpoint and exit with\n"
            "130 / 143; --resume continues exactly.\n"
            "  --help                 print this help and exit\n"
            "\n"
            "testing and long runs:\n"
            "  --limit-train N        train on the first N samples only\n"
            "  --limit-test N         evaluate on the first N test samples only\n"
            "  --checkpoint-every-steps N\n"
            "                         also write a checkpoint every N optimizer steps (kept\n"
            "                         by --resume)\n"
            "  --inject-bad-batch N   (testing) batch N of the run (1-based, over all epochs)\n"
            "                         fails to load\n"
            "  --inject-bad-backward N\n"
            "                         (testing) batch N fails after its backward wrote grads\n"
            "  --inject-nan-loss N[:COUNT]\n"
            "                         (testing) batches N .. N+COUNT-1 give a NaN loss\n");
}

static void eval_usage(FILE *f) {
    fprintf(f,
            "usage: zgrad eval --checkpoint PATH [options]\n"
            "\n"
            "Prints the test loss, the accuracy and the confusion matrix of a saved model.\n"
            "PATH: a run directory, a checkpoint directory inside one, or a\n"
            "model.safetensors written by zgrad train.\n"
            "\n"
            "options:\n"
            "  --checkpoint PATH      the model to evaluate (required)\n"
            "  --data DIR             MNIST-format data set (default /usr/share/datasets/fashion-mnist)\n"
            "  --limit-test N         the first N test samples only\n"
            "  --threads N            OpenMP and OpenBLAS threads\n"
            "  --help                 print this help and exit\n");
}

/* ---- argument parsing ------------------------------------------------------ */

static const char *cmd_name;

/* A usage error: one line naming the problem, then the short usage. */
static int bad_usage(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static int bad_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "zgrad %s: ", cmd_name);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: zgrad %s [options]  (zgrad %s --help lists them)\n", cmd_name, cmd_name);
    return 2;
}

static int parse_i64(const char *opt, const char *s, int64_t lo, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno || v < lo) {
        char what[64];
        snprintf(what, sizeof what, "an integer >= %lld", (long long)lo);
        fprintf(stderr, "zgrad %s: %s: expected %s, got '%s'\n", cmd_name, opt, what, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_f64(const char *opt, const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v < 0) {
        fprintf(stderr, "zgrad %s: %s: expected a number >= 0, got '%s'\n", cmd_name, opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_u64(const char *opt, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end || errno || s[0] == '-' || s[0] == '+' || s[0] == ' ') {
        fprintf(stderr, "zgrad %s: %s: expected an integer in [0, 2^64), got '%s'\n", cmd_name, opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Parse errors print their one line, then this. */
static int usage_tail(void) {
    fprintf(stderr, "usage: zgrad %s [options]  (zgrad %s --help lists them)\n", cmd_name, cmd_name);
    return 2;
}

/* "--name value" or "--name=value": the value, advancing *i; NULL (and
 * *missing) when the option takes none or it is absent. */
static const char *option_value(int argc, char **argv, int *i, const char *name, bool *matched, bool *missing) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    *matched = false;
    *missing = false;
    if (strncmp(a, name, n) != 0) return NULL;
    if (a[n] == '=') {
        *matched = true;
        return a + n + 1;
    }
    if (a[n] != '\0') return NULL;
    *matched = true;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

enum {
    SET_MODEL = 1 << 0,
    SET_EPOCHS = 1 << 1,
    SET_BATCH = 1 << 2,
    SET_OPTIM = 1 << 3,
    SET_LR = 1 << 4,
    SET_MOMENTUM = 1 << 5,
    SET_WD = 1 << 6,
    SET_SEED = 1 << 7,
    SET_LIMIT_TRAIN = 1 << 8,
    SET_LIMIT_TEST = 1 << 9,
    SET_CKPT_EVERY = 1 << 10,
    SET_ACCUM = 1 << 11,
    SET_CLIP = 1 << 12,
    SET_SCHEDULE = 1 << 13,
    SET_AMP = 1 << 14,
};

/* ---- train ------------------------------------------------------------------- */

static int cmd_train(int argc, char **argv) {
    cmd_name = "train";
    zg_train_config o = zg_train_config_defaults();
    unsigned set = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            train_usage(stdout);
            return 0;
        }
        static const char *const names[] = {"--model",      "--epochs",      "--batch-size",  "--optimizer",
                                            "--lr",         "--momentum",    "--weight-decay", "--seed",
                                            "--threads",    "--data",        "--out",         "--resume",
                                            "--limit-train", "--limit-test", "--checkpoint-every-steps",
                                            "--progress",   "--accum",       "--clip-norm",   "--schedule",
                                            "--amp",        "--max-bad-steps", "--inject-bad-batch",
                                            "--inject-bad-backward", "--inject-nan-loss"};
        int which = -1;
        const char *v = NULL;
        for (int k = 0; k < (int)(sizeof names / sizeof names[0]) && which < 0; k++) {
            bool matched, missing;
            v = option_value(argc, argv, &i, names[k], &matched, &missing);
            if (!matched) continue;
            if (missing) return bad_usage("%s needs a value", names[k]);
            which = k;
        }
        if (which < 0) {
            if (a[0] == '-') return bad_usage("unknown option '%s'", a);
            return bad_usage("unexpected argument '%s'", a);
        }
        const char *opt = names[which];
        int64_t iv;
        switch (which) {
        case 0:
            if (zg_train_model_kind(v) < 0) return bad_usage("--model: expected cnn or mlp, got '%s'", v);
            o.model = (zg_model_kind)zg_train_model_kind(v);
            set |= SET_MODEL;
            break;
        case 1:
            if (parse_i64(opt, v, 1, &iv)) return usage_tail();
            if (iv > 1000000) return bad_usage("%s: at most 1000000 (got %s)", opt, v);
            o.epochs = (int)iv;
            set |= SET_EPOCHS;
            break;
        case 2:
            if (parse_i64(opt, v, 1, &o.batch_size)) return usage_tail();
            set |= SET_BATCH;
            break;
        case 3:
            if (zg_train_optim_kind(v) < 0)
                return bad_usage("--optimizer: expected sgd, adam, adamw, rmsprop or adagrad, got '%s'", v);
            o.optimizer = (zg_optim_kind)zg_train_optim_kind(v);
            set |= SET_OPTIM;
            break;
        case 4:
            if (parse_f64(opt, v, &o.lr)) return usage_tail();
            set |= SET_LR;
            break;
        case 5:
            if (parse_f64(opt, v, &o.momentum)) return usage_tail();
            set |= SET_MOMENTUM;
            break;
        case 6:
            if (parse_f64(opt, v, &o.weight_decay)) return usage_tail();
            set |= SET_WD;
            break;
        case 7:
            if (parse_u64(opt, v, &o.seed)) return usage_tail();
            set |= SET_SEED;
            break;
        case 8:
            if (parse_i64(opt, v, 1, &iv)) return usage_tail();
            if (iv > 1024) return bad_usage("%s: at most 1024 (got %s)", opt, v);
            o.threads = (int)iv;
            break;
        case 9:
            o.data_dir = v;
            break;
        case 10:
            o.out_dir = v;
            break;
        case 11:
            o.resume_dir = v;
            break;
        case 12:
            if (parse_i64(opt, v, 1, &o.limit_train)) return usage_tail();
            set |= SET_LIMIT_TRAIN;
            break;
        case 13:
            if (parse_i64(opt, v, 1, &o.limit_test)) return usage_tail();
            set |= SET_LIMIT_TEST;
            break;
        case 14:
            if (parse_i64(opt, v, 1, &o.checkpoint_every_steps)) return usage_tail();
            set |= SET_CKPT_EVERY;
            break;
        case 15:
            if (!strcmp(v, "auto")) o.progress = ZG_PROGRESS_AUTO;
            else if (!strcmp(v, "bar")) o.progress = ZG_PROGRESS_BAR;
            else if (!strcmp(v, "lines")) o.progress = ZG_PROGRESS_LINES;
            else if (!strcmp(v, "off")) o.progress = ZG_PROGRESS_OFF;
            else return bad_usage("--progress: expected auto, bar, lines or off, got '%s'", v);
            break;
        case 16:
            if (parse_i64(opt, v, 1, &iv)) return usage_tail();
            if (iv > 1000000) return bad_usage("%s: at most 1000000 (got %s)", opt, v);
            o.accum = (int)iv;
            set |= SET_ACCUM;
            break;
        case 17:
            if (parse_f64(opt, v, &o.clip_norm)) return usage_tail();
            if (!(o.clip_norm > 0)) return bad_usage("%s: expected a number > 0, got '%s'", opt, v);
            set |= SET_CLIP;
            break;
        case 18:
            if (!*v) return bad_usage("%s: empty schedule", opt);
            if (strlen(v) >= sizeof o.schedule)
                return bad_usage("%s: at most %d characters", opt, (int)sizeof o.schedule - 1);
            memcpy(o.schedule, v, strlen(v) + 1);
            set |= SET_SCHEDULE;
            break;
        case 19:
            if (!strcmp(v, "bf16")) o.amp = ZG_AUTOCAST_BF16;
            else if (!strcmp(v, "fp16")) o.amp = ZG_AUTOCAST_FP16;
            else if (!strcmp(v, "off")) o.amp = ZG_AUTOCAST_OFF;
            else return bad_usage("--amp: expected bf16, fp16 or off, got '%s'", v);
            set |= SET_AMP;
            break;
        case 20:
            if (parse_i64(opt, v, 1, &iv)) return usage_tail();
            if (iv > 1000000) return bad_usage("%s: at most 1000000 (got %s)", opt, v);
            o.max_bad_steps = (int)iv;
            break;
        case 21:
            if (parse_i64(opt, v, 1, &o.inject_bad_batch)) return usage_tail();
            break;
        case 22:
            if (parse_i64(opt, v, 1, &o.inject_bad_backward)) return usage_tail();
            break;
        case 23: {
            char head[32];
            const char *colon = strchr(v, ':');
            size_t len = colon ? (size_t)(colon - v) : strlen(v);
            if (len >= sizeof head) return bad_usage("%s: expected N[:COUNT], got '%s'", opt, v);
            memcpy(head, v, len);
            head[len] = '\0';
            if (parse_i64(opt, head, 1, &o.inject_nan_loss)) return usage_tail();
            if (colon && parse_i64(opt, colon + 1, 1, &o.inject_nan_count)) return usage_tail();
            break;
        }
        }
        if ((which == 9 || which == 10 || which == 11) && !*v) return bad_usage("%s: empty path", opt);
    }

    /* With --resume the checkpoint's options are the base; options given
     * here override them (and the driver refuses any that conflict). */
    zg_train_config c = zg_train_config_defaults();
    if (o.resume_dir && zg_train_checkpoint_config(o.resume_dir, &c)) {
        fprintf(stderr, "zgrad: %s\n", zg_last_error());
        return 1;
    }
    if (set & SET_MODEL) c.model = o.model;
    if (set & SET_OPTIM) {
        /* Another optimizer does not inherit the checkpoint's settings. */
        if (c.optimizer != o.optimizer) c.lr = c.momentum = c.weight_decay = -1;
        c.optimizer = o.optimizer;
    }
    if (set & SET_EPOCHS) c.epochs = o.epochs;
    if (set & SET_BATCH) c.batch_size = o.batch_size;
    if (set & SET_LR) c.lr = o.lr;
    if (set & SET_MOMENTUM) c.momentum = o.momentum;
    if (set & SET_WD) c.weight_decay = o.weight_decay;
    if (set & SET_SEED) c.seed = o.seed;
    if (set & SET_LIMIT_TRAIN) c.limit_train = o.limit_train;
    if (set & SET_LIMIT_TEST) c.limit_test = o.limit_test;
    c.threads = o.threads;
    c.data_dir = o.data_dir;
    c.out_dir = o.out_dir;
    c.resume_dir = o.resume_dir;
    if (set & SET_CKPT_EVERY) c.checkpoint_every_steps = o.checkpoint_every_steps;
    c.progress = o.progress;
    if (set & SET_ACCUM) c.accum = o.accum;
    if (set & SET_CLIP) c.clip_norm = o.clip_norm;
    if (set & SET_SCHEDULE) memcpy(c.schedule, o.schedule, sizeof c.schedule);
    if (set & SET_AMP) c.amp = o.amp;
    c.max_bad_steps = o.max_bad_steps;
    c.handle_signals = true;
    c.inject_bad_batch = o.inject_bad_batch;
    c.inject_bad_backward = o.inject_bad_backward;
    c.inject_nan_loss = o.inject_nan_loss;
    c.inject_nan_count = o.inject_nan_count;
    if ((set & SET_MOMENTUM) && c.optimizer != ZG_SGD && c.optimizer != ZG_RMSPROP)
        return bad_usage("--momentum applies to sgd and rmsprop, not %s", zg_train_optim_name(c.optimizer));
    if (zg_train_config_validate(&c)) {
        const char *e = zg_last_error(), *prefix = "zg_train_config: ";
        return bad_usage("%s", strncmp(e, prefix, strlen(prefix)) ? e : e + strlen(prefix));
    }

    zg_train_result r;
    if (zg_train_run(&c, &r)) {
        fprintf(stderr, "zgrad: %s\n", zg_last_error());
        /* Stopped by a signal (checkpoint written): the shell's 128 + N. */
        return r.signal ? 128 + r.signal : 1;
    }
    printf("final: test accuracy %.2f%%, test loss %.4f after %d epochs; %.1fs\n", 100 * r.test_acc, r.test_loss,
           r.epochs_done, r.seconds);
    return 0;
}

/* ---- eval -------------------------------------------------------------------- */

static const char *const fashion_classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

static int cmd_eval(int argc, char **argv) {
    cmd_name = "eval";
    const char *ckpt = NULL, *data = NULL;
    int64_t limit = 0, threads = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            eval_usage(stdout);
            return 0;
        }
        static const char *const names[] = {"--checkpoint", "--data", "--limit-test", "--threads"};
        int which = -1;
        const char *v = NULL;
        for (int k = 0; k < 4 && which < 0; k++) {
            bool matched, missing;
            v = option_value(argc, argv, &i, names[k], &matched, &missing);
            if (!matched) continue;
            if (missing) return bad_usage("%s needs a value", names[k]);
            which = k;
        }
        if (which < 0) {
            if (a[0] == '-') return bad_usage("unknown option '%s'", a);
            return bad_usage("unexpected argument '%s'", a);
        }
        if (which == 0) ckpt = v;
        if (which == 1) data = v;
        if (which == 2 && parse_i64(names[2], v, 1, &limit)) return usage_tail();
        if (which == 3 && parse_i64(names[3], v, 1, &threads)) return usage_tail();
        if (which == 3 && threads > 1024) return bad_usage("%s: at most 1024 (got %s)", names[3], v);
        if ((which == 0 || which == 1) && !*v) return bad_usage("%s: empty path", names[which]);
    }
    if (!ckpt) return bad_usage("--checkpoint PATH is required");
    if (threads > 0) zg_set_num_threads((int)threads);
    zg_eval_result r;
    if (zg_eval_checkpoint(ckpt, data, limit, &r)) {
        fprintf(stderr, "zgrad: %s\n", zg_last_error());
        return 1;
    }
    int k = r.num_classes;
    printf("test loss %.4f, accuracy %.2f%% (%lld samples)\n", r.loss, 100 * r.accuracy, (long long)r.n);
    printf("confusion matrix (rows: true class, columns: predicted class)\n");
    int w = 6;
    printf("%*s", 6, "");
    for (int j = 0; j < k; j++) printf("%*d", w, j);
    printf("\n");
    for (int i = 0; i < k; i++) {
        printf("%5d ", i);
        for (int j = 0; j < k; j++) printf("%*lld", w, (long long)r.confusion[i * k + j]);
        printf("\n");
    }
    const char *dir = data ? data : "/usr/share/datasets/fashion-mnist";
    if (k == 10 && strstr(dir, "fashion")) {
        printf("classes:");
        for (int i = 0; i < 10; i++) printf(" %d %s%s", i, fashion_classes[i], i < 9 ? "," : "\n");
    }
    zg_eval_result_free(&r);
    return 0;
}

int main(int argc, char **argv) {
    /* The gradient-lifecycle sanitizer warns by default in the CLI;
     * ZG_SANITIZE=off|warn|error overrides it. */
    const char *san = getenv("ZG_SANITIZE");
    if (!san || !*san) zg_sanitize_set_mode(ZG_SANITIZE_WARN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("zgrad %s\n", ZG_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "train")) return cmd_train(argc, argv);
    if (!strcmp(argv[1], "eval")) return cmd_eval(argc, argv);
    fprintf(stderr, "zgrad: unknown command or option '%s' (see zgrad --help)\n", argv[1]);
    return 2;
}
