/* zgrad command-line tool: `zgrad train` (the training driver of
 * src/train: Fashion-MNIST, your CSV file or image folder, or a GPT on a
 * text), `zgrad eval`, `zgrad predict`, `zgrad sample`, `zgrad summary`
 * and `zgrad export`.
 *
 * Exit status: 0 success, 1 an error from the library (one line
 * "zgrad: <message>"), 2 a usage error (one line naming the option, then the
 * short usage), 3 the model diverged (a NaN or infinite test loss or
 * weights; one line), 129 / 130 / 141 / 143 stopped by SIGHUP / SIGINT /
 * SIGPIPE / SIGTERM after writing a checkpoint. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
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
            "  train       train a model on Fashion-MNIST, a CSV file or an image\n"
            "              folder, or a GPT on a text (zgrad train --help)\n"
            "  eval        evaluate a saved run on the test set (zgrad eval --help)\n"
            "  predict     run a trained model on new data (zgrad predict --help)\n"
            "  sample      generate text with a trained GPT (zgrad sample --help)\n"
            "  summary     a model's layers, shapes, parameters and FLOPs\n"
            "              (zgrad summary --help)\n"
            "  export      write a run's model as an ONNX file (zgrad export --help)\n"
            "\n"
            "options:\n"
            "  --version   print the version and exit\n"
            "  --help      print this help and exit\n"
            "\n"
            "exit status: 0 done, 1 error, 2 usage error, 3 the model diverged (NaN or\n"
            "infinite test loss or weights), 129 / 130 / 141 / 143 stopped by SIGHUP /\n"
            "SIGINT / SIGPIPE (output closed) / SIGTERM after writing a checkpoint\n");
}

/* The exit status of a failed library call (see the top of this file). */
static int failure_status(int rc) { return rc == ZG_ERR_NONFINITE ? 3 : 1; }

/* ---- usage errors and number parsing ----------------------------------------- */

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

static int parse_i64(const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno || v < lo)
        return bad_usage("%s: expected an integer >= %lld, got '%s'", opt, (long long)lo, s);
    if (v > hi) return bad_usage("%s: at most %lld (got %s)", opt, (long long)hi, s);
    *out = v;
    return 0;
}

static int parse_f64(const char *opt, const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v < 0)
        return bad_usage("%s: expected a number >= 0, got '%s'", opt, s);
    *out = v;
    return 0;
}

/* ---- options as a table --------------------------------------------------------- */

/* Every command's settings start with this: the options given, by their
 * rows' `given` bits (a resume keeps the checkpoint's value of an option
 * that is not given). */
typedef struct {
    unsigned given;
} opts_head;

typedef struct option option;
/* Parses v into the settings `dst` (at o->off) as row o says: 0, or 2
 * after printing the usage error. */
typedef int (*setter_fn)(const option *o, const char *v, void *dst);

/* One row: an option of a command, or (name NULL) a line of its help. An
 * option is added by adding its row. */
struct option {
    const char *name; /* "--epochs" */
    const char *arg;  /* its value in the help ("N"), NULL for none */
    const char *help; /* lines separated by '\n' */
    setter_fn set;
    size_t off;       /* the field of the settings it sets */
    int64_t lo, hi;   /* the range of an integer */
    unsigned given;
};

#define FIELD(type, dst, o) ((type *)((char *)(dst) + (o)->off))

static int set_i64(const option *o, const char *v, void *dst) {
    return parse_i64(o->name, v, o->lo, o->hi, FIELD(int64_t, dst, o));
}
static int set_int(const option *o, const char *v, void *dst) {
    int64_t x = 0;
    if (parse_i64(o->name, v, o->lo, o->hi, &x)) return 2;
    *FIELD(int, dst, o) = (int)x;
    return 0;
}
static int set_f64(const option *o, const char *v, void *dst) { return parse_f64(o->name, v, FIELD(double, dst, o)); }
static int set_f64_positive(const option *o, const char *v, void *dst) {
    if (parse_f64(o->name, v, FIELD(double, dst, o))) return 2;
    if (!(*FIELD(double, dst, o) > 0)) return bad_usage("%s: expected a number > 0, got '%s'", o->name, v);
    return 0;
}
static int set_u64(const option *o, const char *v, void *dst) {
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (end == v || *end || errno || v[0] == '-' || v[0] == '+' || v[0] == ' ')
        return bad_usage("%s: expected an integer in [0, 2^64), got '%s'", o->name, v);
    *FIELD(uint64_t, dst, o) = x;
    return 0;
}
static int set_flag(const option *o, const char *v, void *dst) {
    (void)v;
    *FIELD(bool, dst, o) = true;
    return 0;
}
static int set_path(const option *o, const char *v, void *dst) {
    if (!*v) return bad_usage("%s: empty path", o->name);
    *FIELD(const char *, dst, o) = v;
    return 0;
}
static int set_model(const option *o, const char *v, void *dst) {
    int k = zg_train_model_kind(v);
    if (k < 0) return bad_usage("%s: expected cnn, mlp or gpt, got '%s'", o->name, v);
    *FIELD(zg_model_kind, dst, o) = (zg_model_kind)k;
    return 0;
}
static int set_optimizer(const option *o, const char *v, void *dst) {
    int k = zg_train_optim_kind(v);
    if (k < 0) return bad_usage("%s: expected sgd, adam, adamw, rmsprop or adagrad, got '%s'", o->name, v);
    *FIELD(zg_optim_kind, dst, o) = (zg_optim_kind)k;
    return 0;
}
static int set_progress(const option *o, const char *v, void *dst) {
    static const char *const names[] = {"auto", "bar", "lines", "off"};
    static const zg_progress_mode modes[] = {ZG_PROGRESS_AUTO, ZG_PROGRESS_BAR, ZG_PROGRESS_LINES, ZG_PROGRESS_OFF};
    for (int i = 0; i < 4; i++)
        if (!strcmp(v, names[i])) {
            *FIELD(zg_progress_mode, dst, o) = modes[i];
            return 0;
        }
    return bad_usage("%s: expected auto, bar, lines or off, got '%s'", o->name, v);
}
static int set_amp(const option *o, const char *v, void *dst) {
    static const char *const names[] = {"bf16", "fp16", "off"};
    static const zg_autocast_type types[] = {ZG_AUTOCAST_BF16, ZG_AUTOCAST_FP16, ZG_AUTOCAST_OFF};
    for (int i = 0; i < 3; i++)
        if (!strcmp(v, names[i])) {
            *FIELD(zg_autocast_type, dst, o) = types[i];
            return 0;
        }
    return bad_usage("%s: expected bf16, fp16 or off, got '%s'", o->name, v);
}
static int set_schedule(const option *o, const char *v, void *dst) {
    char *s = FIELD(char, dst, o);
    const size_t cap = sizeof ((zg_train_config *)0)->schedule;
    if (!*v) return bad_usage("%s: empty schedule", o->name);
    if (!strcmp(v, "constant")) v = ""; /* turns off a recipe's schedule */
    if (strlen(v) >= cap) return bad_usage("%s: at most %d characters", o->name, (int)cap - 1);
    memcpy(s, v, strlen(v) + 1);
    return 0;
}
/* A string into the char array at o->off, of o->hi bytes. */
static int set_chars(const option *o, const char *v, void *dst) {
    if (!*v) return bad_usage("%s: empty value", o->name);
    if (strlen(v) >= (size_t)o->hi) return bad_usage("%s: at most %d characters", o->name, (int)o->hi - 1);
    memcpy(FIELD(char, dst, o), v, strlen(v) + 1);
    return 0;
}
static int set_vocab(const option *o, const char *v, void *dst) {
    if (strcmp(v, "char") && strcmp(v, "byte")) return bad_usage("%s: expected char or byte, got '%s'", o->name, v);
    *FIELD(zg_text_vocab, dst, o) = strcmp(v, "byte") ? ZG_TEXT_CHAR : ZG_TEXT_BYTE;
    return 0;
}
/* A probability in [0, 1) into a float. */
static int set_dropout(const option *o, const char *v, void *dst) {
    double x = 0;
    if (parse_f64(o->name, v, &x)) return 2;
    if (x >= 1) return bad_usage("%s: expected a number in [0, 1), got '%s'", o->name, v);
    *FIELD(float, dst, o) = (float)x;
    return 0;
}
/* B1,B2 into beta1 and the beta2 after it. */
static int set_betas(const option *o, const char *v, void *dst) {
    char head[64];
    const char *comma = strchr(v, ',');
    size_t len = comma ? (size_t)(comma - v) : 0;
    if (!comma || len >= sizeof head) return bad_usage("%s: expected B1,B2, got '%s'", o->name, v);
    memcpy(head, v, len);
    head[len] = '\0';
    double *b = FIELD(double, dst, o);
    if (parse_f64(o->name, head, &b[0]) || parse_f64(o->name, comma + 1, &b[1])) return 2;
    if (b[0] >= 1 || b[1] >= 1) return bad_usage("%s: betas must be in [0, 1), got '%s'", o->name, v);
    return 0;
}
/* N[:COUNT] into inject_nan_loss and the inject_nan_count after it. */
/* --inject-rank R: the config counts ranks from 1 (0: every rank). */
static int set_rank(const option *o, const char *v, void *dst) {
    int rc = set_int(o, v, dst);
    if (!rc) *FIELD(int, dst, o) += 1;
    return rc;
}

static int set_nan_spec(const option *o, const char *v, void *dst) {
    char head[32];
    const char *colon = strchr(v, ':');
    size_t len = colon ? (size_t)(colon - v) : strlen(v);
    if (len >= sizeof head) return bad_usage("%s: expected N[:COUNT], got '%s'", o->name, v);
    memcpy(head, v, len);
    head[len] = '\0';
    int64_t *n = FIELD(int64_t, dst, o);
    if (parse_i64(o->name, head, o->lo, o->hi, &n[0])) return 2;
    if (colon && parse_i64(o->name, colon + 1, o->lo, o->hi, &n[1])) return 2;
    return 0;
}

static int set_task(const option *o, const char *v, void *dst) {
    static const char *const names[] = {"auto", "classify", "regress"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(v, names[i])) {
            *FIELD(zg_task, dst, o) = (zg_task)i;
            return 0;
        }
    return bad_usage("%s: expected classify, regress or auto, got '%s'", o->name, v);
}
/* H,W into image_size[0..1]. */
static int set_image_size(const option *o, const char *v, void *dst) {
    char head[32];
    const char *comma = strchr(v, ',');
    size_t len = comma ? (size_t)(comma - v) : 0;
    if (!comma || len >= sizeof head) return bad_usage("%s: expected H,W (height, width in pixels), got '%s'", o->name, v);
    memcpy(head, v, len);
    head[len] = '\0';
    int64_t *hw = FIELD(int64_t, dst, o);
    return parse_i64(o->name, head, 1, 65535, &hw[0]) || parse_i64(o->name, comma + 1, 1, 65535, &hw[1]) ? 2 : 0;
}
static int set_val_split(const option *o, const char *v, void *dst) {
    if (parse_f64(o->name, v, FIELD(double, dst, o))) return 2;
    double f = *FIELD(double, dst, o);
    if (!(f > 0 && f < 1)) return bad_usage("%s: expected a fraction in (0, 1), got '%s'", o->name, v);
    return 0;
}

/* The rows' help: the option and its value in 22 columns (or a line of
 * their own when longer), each line of help from column 25. */
static void print_options(FILE *f, const option *tab, int n) {
    for (int i = 0; i < n; i++) {
        const option *o = &tab[i];
        if (!o->name) {
            fprintf(f, "%s\n", o->help);
            continue;
        }
        char head[64];
        snprintf(head, sizeof head, "%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        const char *line = o->help;
        if (strlen(head) > 22) fprintf(f, "  %s\n", head);
        else fprintf(f, "  %-22s ", head);
        for (bool first = true; line; first = false) {
            const char *nl = strchr(line, '\n');
            int len = nl ? (int)(nl - line) : (int)strlen(line);
            fprintf(f, "%*s%.*s\n", first && strlen(head) <= 22 ? 0 : 25, "", len, line);
            line = nl ? nl + 1 : NULL;
        }
    }
}

/* "--name value" or "--name=value": the row of argv[*i] (advancing *i past
 * a separate value) and its value in *v; NULL when no row matches. *missing
 * when the value is absent. A row without `arg` is a flag: "--name" alone. */
static const option *match(const option *tab, int n, int argc, char **argv, int *i, const char **v, bool *missing) {
    const char *a = argv[*i];
    *missing = false;
    for (int k = 0; k < n; k++) {
        const option *o = &tab[k];
        if (!o->name || !o->set) continue;
        size_t len = strlen(o->name);
        if (strncmp(a, o->name, len) != 0) continue;
        if (!o->arg) { /* a flag: no value */
            if (a[len] != '\0') continue;
            *v = NULL;
            return o;
        }
        if (a[len] == '=') {
            *v = a + len + 1;
            return o;
        }
        if (a[len] != '\0') continue;
        if (*i + 1 >= argc) *missing = true;
        else *v = argv[++*i];
        return o;
    }
    return NULL;
}

enum { PARSED = 0, HELP = -1 };

/* Parses argv[2..] with the table into dst: PARSED, HELP (--help seen), or
 * the exit status of a usage error (printed). */
static int parse_options(const option *tab, int n, int argc, char **argv, void *dst) {
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return HELP;
        bool missing;
        const option *o = match(tab, n, argc, argv, &i, &v, &missing);
        if (!o && a[0] == '-') return bad_usage("unknown option '%s'", a);
        if (!o) return bad_usage("unexpected argument '%s'", a);
        if (missing) return bad_usage("%s needs a value", o->name);
        int rc = o->set(o, v, dst);
        if (rc) return rc;
        ((opts_head *)dst)->given |= o->given;
    }
    return PARSED;
}

/* ---- train ------------------------------------------------------------------- */

/* The options of `zgrad train` as given (a resume merges them with the
 * checkpoint's: train_config). */
typedef struct {
    opts_head head;
    zg_train_config c;
    const char *val_option; /* --val-csv or --val-images, as given */
} train_opts;

/* --val-csv / --val-images: the validation file or folder, which must
 * be of the training data's kind (train_config checks). */
static int set_val_path(const option *o, const char *v, void *dst) {
    if (set_chars(o, v, dst)) return 2;
    ((train_opts *)dst)->val_option = o->name;
    return 0;
}

enum {
    G_MODEL = 1 << 0,
    G_EPOCHS = 1 << 1,
    G_BATCH = 1 << 2,
    G_OPTIM = 1 << 3,
    G_LR = 1 << 4,
    G_MOMENTUM = 1 << 5,
    G_WD = 1 << 6,
    G_SEED = 1 << 7,
    G_LIMIT_TRAIN = 1 << 8,
    G_LIMIT_TEST = 1 << 9,
    G_CKPT_EVERY = 1 << 10,
    G_ACCUM = 1 << 11,
    G_CLIP = 1 << 12,
    G_SCHEDULE = 1 << 13,
    G_AMP = 1 << 14,
    G_BETAS = 1 << 15,
    G_TEXT = 1 << 16,
    G_CORPUS = 1 << 17,
    G_VOCAB = 1 << 18,
    G_N_LAYER = 1 << 19,
    G_N_HEAD = 1 << 20,
    G_N_EMBD = 1 << 21,
    G_BLOCK = 1 << 22,
    G_DROPOUT = 1 << 23,
    G_BIAS = 1 << 24,
    G_ITERS = 1 << 25,
    G_EVAL_INTERVAL = 1 << 26,
    G_EVAL_ITERS = 1 << 27,
    G_DATA = 1 << 28,
    G_MODEL_FILE = 1 << 29,
    G_YOUR_DATA = 1u << 30, /* any of --csv, --images and their options */
};
/* The options of one kind of model: given with another, they are refused. */
#define G_GPT_ONLY (G_TEXT | G_CORPUS | G_VOCAB | G_N_LAYER | G_N_HEAD | G_N_EMBD | G_BLOCK | G_DROPOUT | G_BIAS | \
                    G_ITERS | G_EVAL_INTERVAL | G_EVAL_ITERS)
#define G_IMAGE_ONLY (G_EPOCHS | G_DATA | G_LIMIT_TRAIN | G_LIMIT_TEST | G_YOUR_DATA)

#define T_OPT(name, arg, help, set, field, lo, hi, given) \
    {name, arg, help, set, offsetof(train_opts, c.field), lo, hi, given}
/* The ranges are the library's (zg_train_config_validate): a run keeps
 * every epoch's metrics in its checkpoint (at most 100000 epochs), a batch
 * holds at most a million samples, and step and batch numbers are counters
 * below 2^53, so that no sum or product of them overflows. Sample limits
 * above the data set's size take all of it. */
#define MILLION 1000000
#define MAX_EPOCHS 100000
#define MAX_STEPS ((int64_t)1 << 53)

static const option train_options[] = {
    T_OPT("--model", "cnn|mlp|gpt",
          "cnn: Conv32-Pool-Conv64-Pool-Linear128-Linear10 (default);\nmlp: 784-256-128-10 with ReLU; gpt: a "
          "character-level\nGPT on a text (its options below)",
          set_model, model, 0, 0, G_MODEL),
    T_OPT("--model-file", "FILE",
          "a model as JSON layers in the manner of nn.Sequential\n(models/cnn.json and models/mlp.json are the built-in "
          "ones;\na lone {\"type\": \"GPT\", ...} layer trains as --model gpt,\nmodels/gpt.json;\nzgrad summary "
          "--model-file FILE checks and shows it)",
          set_chars, model_file, 0, 4096, G_MODEL_FILE),
    T_OPT("--epochs", "N", "total epochs, also when resuming (default 3)", set_int, epochs, 1, MAX_EPOCHS, G_EPOCHS),
    T_OPT("--batch-size", "N", "(default 64)", set_i64, batch_size, 1, MILLION, G_BATCH),
    T_OPT("--optimizer", "NAME", "sgd, adam, adamw, rmsprop or adagrad (default adam)", set_optimizer, optimizer, 0,
          0, G_OPTIM),
    T_OPT("--lr", "X", "learning rate (default: the optimizer's; adam 1e-3)", set_f64, lr, 0, 0, G_LR),
    T_OPT("--momentum", "X", "sgd and rmsprop only (default 0)", set_f64, momentum, 0, 0, G_MOMENTUM),
    T_OPT("--weight-decay", "X", "(default: the optimizer's; adamw 1e-2, others 0)", set_f64, weight_decay, 0, 0,
          G_WD),
    T_OPT("--seed", "N", "weight initialisation and data order (default 0)", set_u64, seed, 0, 0, G_SEED),
    T_OPT("--threads", "N", "OpenMP and OpenBLAS threads (default: all cores)", set_int, threads, 1, 1024, 0),
    T_OPT("--data", "DIR",
          "MNIST-format data set (default\n/usr/share/datasets/fashion-mnist; scripts/setup installs it)", set_path,
          data_dir, 0, 0, G_DATA),
    T_OPT("--out", "DIR", "run directory (default runs/<timestamp>); a new run needs\nit new or empty",
          set_path, out_dir, 0, 0, 0),
    T_OPT("--ddp", NULL, "data parallel over MPI: run as mpirun -np N zgrad train\n--ddp; --batch-size is per rank (global batch N times\nit), and the run trains as one process with that batch",
          set_flag, ddp, 0, 0, 0),
    T_OPT("--ddp-timeout", "S", "with --ddp: a rank that waits S seconds for the others\n(one hung or was stopped) ends "
          "every rank (default 600;\n0: wait for ever)", set_f64, ddp_timeout, 0, 0, 0),
    T_OPT("--force", NULL, "write a new run into an --out that holds other files\n(files of the same names are "
          "replaced; a run never is)", set_flag, force, 0, 0, 0),
    T_OPT("--resume", "DIR",
          "continue the run in DIR from its last checkpoint, exactly\nas if it had not stopped; its options are kept "
          "(a\ndifferent value is refused, --epochs may grow)",
          set_path, resume_dir, 0, 0, 0),
    T_OPT("--progress", "MODE", "auto (a bar on a terminal, else a line every few\nseconds), bar, lines or off (default auto)",
          set_progress, progress, 0, 0, 0),
    T_OPT("--accum", "N",
          "accumulate N batches per optimizer step (default 1): each\nloss is divided by N; an epoch's short last "
          "window steps\nwith what it has (its losses were divided by N too)",
          set_int, accum, 1, MILLION, G_ACCUM),
    T_OPT("--clip-norm", "X", "clip the total L2 norm of the grads to X before each step", set_f64_positive,
          clip_norm, 0, 0, G_CLIP),
    T_OPT("--schedule", "SPEC",
          "learning-rate schedule over the run's optimizer steps:\nconstant, step:SIZE[,gamma=G], cosine[:T_MAX][,eta_min=E],\n"
          "linear[:ITERS][,start_factor=S,end_factor=E],\nonecycle:MAX_LR[,...], "
          "warmup-cosine:W[,start_factor=S,eta_min=E],\nexponential:GAMMA, multistep:M1,M2,...[,gamma=G],\n"
          "constant:ITERS[,factor=F], polynomial[:ITERS][,power=P],\ncosine-restarts:T_0[,t_mult=M,eta_min=E], "
          "chained:SPEC|SPEC,\nplateau[:PATIENCE][,mode=min|max,factor=F,threshold=T,...]\n"
          "(ReduceLROnPlateau on each epoch's test loss)",
          set_schedule, schedule, 0, 0, G_SCHEDULE),
    T_OPT("--betas", "B1,B2", "adam and adamw (default 0.9,0.999; gpt 0.9,0.99)", set_betas, beta1, 0, 0, G_BETAS),
    T_OPT("--amp", "bf16|fp16|off",
          "mixed precision: autocast around the forward; fp16 also\nscales the loss with a GradScaler (default off)",
          set_amp, amp, 0, 0, G_AMP),
    T_OPT("--max-bad-steps", "K",
          "stop after K skipped batches in a row (a batch that fails\nto load or gives a NaN/inf loss is skipped; "
          "default 5)",
          set_int, max_bad_steps, 1, MILLION, 0),
    {NULL, NULL, "\nSIGINT / SIGTERM / SIGHUP finish the current step, write a checkpoint and\nexit with 130 / 143 / "
                 "129; so does a closed output pipe (SIGPIPE, e.g.\nzgrad train | head -1): 141. --resume continues "
                 "exactly. A NaN or\ninfinite test loss stops the run with exit 3 (that epoch is not saved).",
     NULL, 0, 0, 0, 0},
    {"--help", NULL, "print this help and exit", NULL, 0, 0, 0, 0},
    {NULL, NULL,
     "\n--model gpt (nanoGPT's CPU recipe by default: AdamW lr 1e-3 betas 0.9,0.99,\nweight decay 0.1 on weights "
     "and embeddings, batch 12, clip norm 1, 100\nwarm-up steps (a tenth of --iters up to 100) then cosine to 1e-4; "
     "each\n\"epoch\" is one evaluation interval):",
     NULL, 0, 0, 0, 0},
    T_OPT("--text", "FILE", "train on this UTF-8 text (the last 10% validates)", set_chars, text_path, 0, 4096,
          G_TEXT),
    T_OPT("--corpus", "NAME", "or on an installed corpus (default shakespeare;\nscripts/setup-corpus installs it)",
          set_chars, corpus, 0, 64, G_CORPUS),
    T_OPT("--vocab", "char|byte", "characters of the text (default) or the 256 bytes", set_vocab, text_vocab, 0, 0,
          G_VOCAB),
    T_OPT("--n-layer", "N", "transformer blocks (default 4)", set_i64, gpt.n_layer, 1, 1000, G_N_LAYER),
    T_OPT("--n-head", "N", "attention heads (default 4)", set_i64, gpt.n_head, 1, 65536, G_N_HEAD),
    T_OPT("--n-embd", "N", "embedding width, a multiple of --n-head (default 128)", set_i64, gpt.n_embd, 1, 65536,
          G_N_EMBD),
    T_OPT("--block-size", "N", "context length in tokens (default 64)", set_i64, gpt.block_size, 1, 65536, G_BLOCK),
    T_OPT("--dropout", "P", "dropout probability (default 0)", set_dropout, gpt.dropout, 0, 0, G_DROPOUT),
    T_OPT("--bias", NULL, "biases in the Linear and LayerNorm layers (default none)", set_flag, gpt.bias, 0, 0,
          G_BIAS),
    T_OPT("--iters", "N", "optimizer steps, also when resuming (default 2000)", set_i64, iters, 1, MAX_STEPS, G_ITERS),
    T_OPT("--eval-interval", "N", "steps between validation losses and checkpoints\n(default 250)", set_i64,
          eval_interval, 1, MAX_STEPS, G_EVAL_INTERVAL),
    T_OPT("--eval-iters", "N", "validation batches per evaluation (default 20)", set_i64, eval_iters, 1, MILLION,
          G_EVAL_ITERS),
    {NULL, NULL,
     "\nyour data (instead of --data; the validation set is a file or folder of its\nown, or the last --val-split "
     "of the rows or images in an order drawn from\n--seed, default 0.2; the features are standardised and the "
     "images\nnormalised per channel with the training part's mean and std, which the run\nkeeps; without "
     "--model-file the model is an MLP: inputs -> 64 -> 64 ->\nclasses, or -> 1 value trained with MSE; metrics "
     "then hold the validation\nloss and accuracy, or its MSE and R^2 as \"test_r2\"):",
     NULL, 0, 0, 0, 0},
    T_OPT("--csv", "FILE", "a CSV file with a header row and numeric features", set_chars, csv_path, 0, 4096,
          G_YOUR_DATA),
    T_OPT("--target", "COLUMN", "its target column: a name of the header, or a 0-based\nindex", set_chars, target, 0,
          256, G_YOUR_DATA),
    T_OPT("--task", "classify|regress", "integer class labels (cross-entropy) or a value (MSE);\ndefault: classify "
          "when every target is an integer", set_task, task, 0, 0, G_YOUR_DATA),
    T_OPT("--val-csv", "FILE", "the validation rows (the same columns, by name)", set_val_path, val_path, 0, 4096,
          G_YOUR_DATA),
    T_OPT("--images", "DIR", "an image folder as torchvision's ImageFolder reads it:\nDIR/<class>/<image>, PNG or "
          "JPEG, classes sorted by\nname; (N, C, H, W) batches of v/255, then normalised", set_chars, images_dir, 0,
          4096, G_YOUR_DATA),
    T_OPT("--val-images", "DIR", "the validation images (the same class folders)", set_val_path, val_path, 0, 4096,
          G_YOUR_DATA),
    T_OPT("--image-size", "H,W", "resize every image of another size to H x W (bilinear,\nas torchvision's "
          "Resize with antialias=False; default:\nthe first image's size, which every image must have)",
          set_image_size, image_size, 0, 0, G_YOUR_DATA),
    T_OPT("--image-channels", "1|3", "grey or colour (default: 3 when any image has colour)", set_int,
          image_channels, 1, 3, G_YOUR_DATA),
    T_OPT("--val-split", "F", "validate on this fraction of the data (default 0.2)", set_val_split, val_split, 0, 0,
          G_YOUR_DATA),
    {NULL, NULL, "\ntesting and long runs:", NULL, 0, 0, 0, 0},
    T_OPT("--limit-train", "N", "train on the first N samples only", set_i64, limit_train, 1, INT64_MAX, G_LIMIT_TRAIN),
    T_OPT("--limit-test", "N", "evaluate on the first N test samples only", set_i64, limit_test, 1, INT64_MAX,
          G_LIMIT_TEST),
    T_OPT("--checkpoint-every-steps", "N", "also write a checkpoint every N optimizer steps (kept\nby --resume)",
          set_i64, checkpoint_every_steps, 1, MAX_STEPS, G_CKPT_EVERY),
    T_OPT("--inject-bad-batch", "N", "(testing) batch N of the run (1-based, over all epochs)\nfails to load",
          set_i64, inject_bad_batch, 1, MAX_STEPS, 0),
    T_OPT("--inject-bad-backward", "N", "(testing) batch N fails after its backward wrote grads", set_i64,
          inject_bad_backward, 1, MAX_STEPS, 0),
    T_OPT("--inject-nan-loss", "N[:COUNT]", "(testing) batches N .. N+COUNT-1 give a NaN loss", set_nan_spec,
          inject_nan_loss, 1, MAX_STEPS, 0),
    T_OPT("--inject-rank", "R", "(testing, --ddp) --inject-bad-batch and --inject-nan-loss\nact on rank R only", set_rank, inject_rank, 0,
          1 << 20, 0),
};
#define N_TRAIN_OPTIONS ((int)(sizeof train_options / sizeof train_options[0]))

static void train_usage(FILE *f) {
    fprintf(f, "usage: zgrad train [options]\n"
               "\n"
               "Trains a model on Fashion-MNIST (or a GPT on a text) with the canonical loop\n"
               "(zero_grad, forward, loss, backward, step), evaluates it after every epoch\n"
               "and writes into the run directory: metrics.jsonl, curves.svg,\n"
               "model.safetensors and a checkpoint.\n"
               "With no options: the default CNN, Adam lr 1e-3, batch 64, 3 epochs, seed 0.\n"
               "zgrad train --model gpt: nanoGPT's shakespeare_char CPU recipe, 2000 steps.\n"
               "\n"
               "options:\n");
    print_options(f, train_options, N_TRAIN_OPTIONS);
}

/* --csv / --images and their options, when given: they replace the
 * checkpoint's together; a new run without --model or --model-file gets
 * the default MLP (model file, no file). 0, or an exit status. */
static int your_data(const train_opts *o, zg_train_config *c) {
    const unsigned g = o->head.given;
    if (!(g & G_YOUR_DATA)) return 0;
    const zg_train_config *n = &o->c;
    if (!n->csv_path[0] && !n->images_dir[0])
        return bad_usage("--target, --task, --val-*, --image-* go with --csv FILE or --images DIR");
    if (n->csv_path[0] && n->images_dir[0]) return bad_usage("--csv and --images: one data set at a time");
    if (g & G_DATA) return bad_usage("--data (MNIST-format files) and --csv / --images: one data set at a time");
    if (o->val_option && strcmp(o->val_option, n->csv_path[0] ? "--val-csv" : "--val-images"))
        return bad_usage("%s goes with %s", o->val_option, n->csv_path[0] ? "--csv (--val-csv)" : "--images (--val-images)");
    memcpy(c->csv_path, n->csv_path, sizeof c->csv_path);
    memcpy(c->target, n->target, sizeof c->target);
    memcpy(c->images_dir, n->images_dir, sizeof c->images_dir);
    memcpy(c->val_path, n->val_path, sizeof c->val_path);
    c->task = n->task;
    c->image_size[0] = n->image_size[0];
    c->image_size[1] = n->image_size[1];
    c->image_channels = n->image_channels;
    c->val_split = n->val_split;
    if (!(g & (G_MODEL | G_MODEL_FILE)) && !n->resume_dir) {
        c->model = ZG_MODEL_FILE;
        c->model_file[0] = '\0';
    }
    return 0;
}

/* The run's configuration: with --resume the checkpoint's options are the
 * base and the options given here override them (the driver refuses any
 * that conflict); without, the defaults. 0, or an exit status. */
/* Whether --model-file names a GPT (then *gpt its sizes): such a run is
 * a --model gpt run, its recipe and text options included. 0, or an exit
 * status. */
static int gpt_model_file(const train_opts *o, bool *is_gpt, zg_gpt_config *gpt) {
    *is_gpt = false;
    if (!(o->head.given & G_MODEL_FILE)) return 0;
    zg_model_spec *s = zg_model_spec_load(o->c.model_file);
    if (!s) {
        fprintf(stderr, "zgrad: %s\n", zg_last_error());
        return 1;
    }
    *is_gpt = zg_model_spec_gpt(s, gpt);
    zg_model_spec_free(s);
    if (*is_gpt && (o->head.given & (G_N_LAYER | G_N_HEAD | G_N_EMBD | G_BLOCK | G_DROPOUT | G_BIAS)))
        return bad_usage("--n-layer, --n-head, --n-embd, --block-size, --dropout and --bias: '%s' sets the GPT's "
                         "sizes", o->c.model_file);
    return 0;
}

static int train_config(const train_opts *o, zg_train_config *c) {
    const unsigned g = o->head.given;
    bool file_gpt;
    zg_gpt_config gpt;
    int rc = gpt_model_file(o, &file_gpt, &gpt);
    if (rc) return rc;
    /* A new run starts from its model's recipe. */
    *c = zg_train_config_for_model(file_gpt ? ZG_MODEL_GPT : (g & G_MODEL) ? o->c.model : ZG_MODEL_CNN);
    if (o->c.resume_dir && zg_train_checkpoint_config(o->c.resume_dir, c)) {
        fprintf(stderr, "zgrad: %s\n", zg_last_error());
        return 1;
    }
    /* Another optimizer does not inherit the recipe's or the checkpoint's
     * settings. */
    if ((g & G_OPTIM) && c->optimizer != o->c.optimizer)
        c->lr = c->momentum = c->weight_decay = c->beta1 = c->beta2 = -1;
    if (g & G_MODEL) c->model = o->c.model;
    if (g & G_MODEL_FILE) {
        if ((g & G_MODEL) && o->c.model != ZG_MODEL_FILE)
            return bad_usage("--model-file and --model %s: one model at a time", zg_train_model_name(o->c.model));
        c->model = file_gpt ? ZG_MODEL_GPT : ZG_MODEL_FILE;
        if (file_gpt) c->gpt = gpt;
        else memcpy(c->model_file, o->c.model_file, sizeof c->model_file);
    }
    if (g & G_OPTIM) c->optimizer = o->c.optimizer;
    if (g & G_EPOCHS) c->epochs = o->c.epochs;
    if (g & G_BATCH) c->batch_size = o->c.batch_size;
    if (g & G_LR) c->lr = o->c.lr;
    if (g & G_MOMENTUM) c->momentum = o->c.momentum;
    if (g & G_WD) c->weight_decay = o->c.weight_decay;
    if (g & G_SEED) c->seed = o->c.seed;
    if (g & G_LIMIT_TRAIN) c->limit_train = o->c.limit_train;
    if (g & G_LIMIT_TEST) c->limit_test = o->c.limit_test;
    if (g & G_CKPT_EVERY) c->checkpoint_every_steps = o->c.checkpoint_every_steps;
    if (g & G_ACCUM) c->accum = o->c.accum;
    if (g & G_CLIP) c->clip_norm = o->c.clip_norm;
    if (g & G_SCHEDULE) memcpy(c->schedule, o->c.schedule, sizeof c->schedule);
    if (g & G_AMP) c->amp = o->c.amp;
    if (g & G_BETAS) {
        c->beta1 = o->c.beta1;
        c->beta2 = o->c.beta2;
    }
    if (g & G_TEXT) memcpy(c->text_path, o->c.text_path, sizeof c->text_path);
    if (g & G_CORPUS) {
        memcpy(c->corpus, o->c.corpus, sizeof c->corpus);
        c->text_path[0] = '\0';
    }
    if (g & G_VOCAB) c->text_vocab = o->c.text_vocab;
    if (g & G_N_LAYER) c->gpt.n_layer = o->c.gpt.n_layer;
    if (g & G_N_HEAD) c->gpt.n_head = o->c.gpt.n_head;
    if (g & G_N_EMBD) c->gpt.n_embd = o->c.gpt.n_embd;
    if (g & G_BLOCK) c->gpt.block_size = o->c.gpt.block_size;
    if (g & G_DROPOUT) c->gpt.dropout = o->c.gpt.dropout;
    if (g & G_BIAS) c->gpt.bias = o->c.gpt.bias;
    if (g & G_ITERS) c->iters = o->c.iters;
    if (g & G_EVAL_INTERVAL) c->eval_interval = o->c.eval_interval;
    if (g & G_EVAL_ITERS) c->eval_iters = o->c.eval_iters;
    if ((rc = your_data(o, c))) return rc;
    /* The recipe's 100 warm-up steps need a run longer than that: a
     * shorter one warms up for a tenth of its steps (none below 2). */
    if (c->model == ZG_MODEL_GPT && !o->c.resume_dir && !(g & G_SCHEDULE) && c->iters <= 100) {
        if (c->iters < 2) c->schedule[0] = '\0';
        else snprintf(c->schedule, sizeof c->schedule, "warmup-cosine:%lld,start_factor=%.17g,eta_min=1e-4",
                      (long long)(c->iters / 10 > 0 ? c->iters / 10 : 1), 1.0 / (double)(c->iters / 10 + 1));
    }
    if (c->model == ZG_MODEL_GPT && (g & G_IMAGE_ONLY))
        return bad_usage("--epochs, --data, --csv, --images, --limit-train and --limit-test apply to cnn and mlp "
                         "and model files (gpt: --iters, --text)");
    if (c->model != ZG_MODEL_GPT && (g & G_GPT_ONLY))
        return bad_usage("--text, --corpus, --vocab, --n-layer, --n-head, --n-embd, --block-size, --dropout, --bias, "
                         "--iters and --eval-* apply to --model gpt (or a GPT model file)");
    /* These belong to this invocation, never to the checkpoint. */
    c->threads = o->c.threads;
    c->data_dir = o->c.data_dir;
    c->out_dir = o->c.out_dir;
    c->force = o->c.force;
    c->ddp = o->c.ddp;
    c->ddp_timeout = o->c.ddp_timeout;
    c->resume_dir = o->c.resume_dir;
    c->progress = o->c.progress;
    c->max_bad_steps = o->c.max_bad_steps;
    c->handle_signals = true;
    c->inject_bad_batch = o->c.inject_bad_batch;
    c->inject_bad_backward = o->c.inject_bad_backward;
    c->inject_nan_loss = o->c.inject_nan_loss;
    c->inject_nan_count = o->c.inject_nan_count;
    c->inject_rank = o->c.inject_rank;
    if ((g & G_MOMENTUM) && c->optimizer != ZG_SGD && c->optimizer != ZG_RMSPROP)
        return bad_usage("--momentum applies to sgd and rmsprop, not %s", zg_train_optim_name(c->optimizer));
    if (zg_train_config_validate(c)) {
        const char *e = zg_last_error(), *prefix = "zg_train_config: ";
        return bad_usage("%s", strncmp(e, prefix, strlen(prefix)) ? e : e + strlen(prefix));
    }
    return 0;
}

/* --ddp: MPI up (a world of one without mpirun); 0, or an exit status. */
static int ddp_start(void) {
    if (!zg_dist_available()) {
        fprintf(stderr, "zgrad: --ddp needs zgrad built with MPI, and this one has none (install libopenmpi-dev and "
                        "rebuild without ZG_MPI=0)\n");
        return 2;
    }
    if (zg_dist_init(NULL, NULL)) {
        fprintf(stderr, "zgrad: %s\n", zg_last_error());
        return 1;
    }
    return 0;
}

static int cmd_train(int argc, char **argv) {
    cmd_name = "train";
    train_opts o = {.c = zg_train_config_defaults()};
    int rc = parse_options(train_options, N_TRAIN_OPTIONS, argc, argv, &o);
    if (rc == HELP) {
        train_usage(stdout);
        return 0;
    }
    zg_train_config c;
    if (rc || (rc = train_config(&o, &c))) return rc;
    zg_train_result r;
    const bool custom = c.csv_path[0] || c.images_dir[0];
    if (c.ddp && (rc = ddp_start())) return rc;
    const int rank = zg_dist_rank();
    if ((rc = zg_train_run(&c, &r))) {
        /* --ddp: a failure on one rank ends every rank (they could wait
         * for it forever); a signal stops all ranks together, so they
         * finish normally. */
        if (c.ddp && zg_dist_world_size() > 1 && !r.signal) zg_dist_abort(failure_status(rc), zg_last_error());
        if (rank == 0) fprintf(stderr, "zgrad: %s\n", zg_last_error());
        if (c.ddp) zg_dist_finalize();
        /* Stopped by a signal (checkpoint written): the shell's 128 + N. */
        return r.signal ? 128 + r.signal : failure_status(rc);
    }
    if (c.ddp) zg_dist_finalize();
    if (rank != 0) return 0;
    if (c.model == ZG_MODEL_GPT)
        printf("final: val loss %.4f, next-token accuracy %.2f%% after %lld steps; %.1fs\n", r.test_loss,
               100 * r.test_acc, (long long)c.iters, r.seconds);
    else if (r.r2)
        printf("final: validation MSE %.4f, R^2 %.4f after %d epochs; %.1fs\n", r.test_loss, r.test_acc,
               r.epochs_done, r.seconds);
    else
        printf("final: %s accuracy %.2f%%, %s loss %.4f after %d epochs; %.1fs\n", custom ? "validation" : "test",
               100 * r.test_acc, custom ? "validation" : "test", r.test_loss, r.epochs_done, r.seconds);
    return 0;
}

/* ---- eval -------------------------------------------------------------------- */

typedef struct {
    opts_head head;
    const char *checkpoint, *data;
    int64_t limit_test;
    int threads;
} eval_opts;

#define E_OPT(name, arg, help, set, field, lo, hi) {name, arg, help, set, offsetof(eval_opts, field), lo, hi, 0}

static const option eval_options[] = {
    E_OPT("--checkpoint", "PATH", "the model to evaluate (required)", set_path, checkpoint, 0, 0),
    E_OPT("--data", "DIR", "MNIST-format data set (default /usr/share/datasets/fashion-mnist)", set_path, data, 0, 0),
    E_OPT("--limit-test", "N", "the first N test samples only", set_i64, limit_test, 1, INT64_MAX),
    E_OPT("--threads", "N", "OpenMP and OpenBLAS threads", set_int, threads, 1, 1024),
    {"--help", NULL, "print this help and exit", NULL, 0, 0, 0, 0},
};
#define N_EVAL_OPTIONS ((int)(sizeof eval_options / sizeof eval_options[0]))

static void eval_usage(FILE *f) {
    fprintf(f, "usage: zgrad eval --checkpoint PATH [options]\n"
               "\n"
               "Prints the test loss, the accuracy and the confusion matrix of a saved model.\n"
               "PATH: a run directory, a checkpoint directory inside one, or a\n"
               "model.safetensors written by zgrad train. A --csv or --images run is\n"
               "evaluated on its own validation data, standardised as in training (a\n"
               "regression: its MSE and R^2).\n"
               "\n"
               "options:\n");
    print_options(f, eval_options, N_EVAL_OPTIONS);
}

static const char *const fashion_classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/* custom: a --csv / --images run, evaluated on its validation data. */
static void print_eval(const zg_eval_result *r, const char *data, bool custom) {
    int k = r->num_classes;
    if (k == 0) {
        printf("validation MSE %.4f, R^2 %.4f (%lld samples)\n", r->loss, r->accuracy, (long long)r->n);
        return;
    }
    printf("%s loss %.4f, accuracy %.2f%% (%lld samples)\n", custom ? "validation" : "test", r->loss,
           100 * r->accuracy, (long long)r->n);
    printf("confusion matrix (rows: true class, columns: predicted class)\n");
    int w = 6;
    printf("%*s", 6, "");
    for (int j = 0; j < k; j++) printf("%*d", w, j);
    printf("\n");
    for (int i = 0; i < k; i++) {
        printf("%5d ", i);
        for (int j = 0; j < k; j++) printf("%*lld", w, (long long)r->confusion[i * k + j]);
        printf("\n");
    }
    const char *dir = data ? data : "/usr/share/datasets/fashion-mnist";
    if (k == 10 && !custom && strstr(dir, "fashion")) {
        printf("classes:");
        for (int i = 0; i < 10; i++) printf(" %d %s%s", i, fashion_classes[i], i < 9 ? "," : "\n");
    }
}

static int cmd_eval(int argc, char **argv) {
    cmd_name = "eval";
    eval_opts o = {0};
    int rc = parse_options(eval_options, N_EVAL_OPTIONS, argc, argv, &o);
    if (rc == HELP) {
        eval_usage(stdout);
        return 0;
    }
    if (rc) return rc;
    if (!o.checkpoint) return bad_usage("--checkpoint PATH is required");
    if (o.threads > 0) zg_set_num_threads(o.threads);
    zg_eval_result r;
    if ((rc = zg_eval_checkpoint(o.checkpoint, o.data, o.limit_test, &r))) {
        fprintf(stderr, "zgrad: %s\n", zg_last_error());
        return failure_status(rc);
    }
    zg_train_config run = zg_train_config_defaults();
    const bool custom = !zg_train_checkpoint_config(o.checkpoint, &run) && (run.csv_path[0] || run.images_dir[0]);
    print_eval(&r, o.data, custom);
    zg_eval_result_free(&r);
    return 0;
}

/* ---- summary ----------------------------------------------------------------- */

typedef struct {
    opts_head head;
    const char *model_file;
    zg_model_kind model;
    bool model_given;
} summary_opts;

static int set_summary_model(const option *o, const char *v, void *dst) {
    if (set_model(o, v, dst)) return 2;
    ((summary_opts *)dst)->model_given = true;
    return 0;
}

#define M_OPT(name, arg, help, set, field) {name, arg, help, set, offsetof(summary_opts, field), 0, 0, 0}

static const option summary_options[] = {
    M_OPT("--model-file", "FILE", "the model file to check and show", set_path, model_file),
    M_OPT("--model", "cnn|mlp|gpt", "a built-in model (gpt: nanoGPT's Shakespeare recipe)", set_summary_model, model),
    {"--help", NULL, "print this help and exit", NULL, 0, 0, 0, 0},
};
#define N_SUMMARY_OPTIONS ((int)(sizeof summary_options / sizeof summary_options[0]))

static void summary_usage(FILE *f) {
    fprintf(f, "usage: zgrad summary (--model-file FILE | --model cnn|mlp|gpt | RUN)\n"
               "\n"
               "Checks a model's shapes from its input through every layer and prints, per\n"
               "layer, the output shape, the parameters and the forward FLOPs per sample\n"
               "(a multiply-add counts 2), then the totals. RUN: a run of zgrad train.\n"
               "\n"
               "options:\n");
    print_options(f, summary_options, N_SUMMARY_OPTIONS);
}

static int cmd_summary(int argc, char **argv) {
    cmd_name = "summary";
    /* One positional argument: the run. */
    const char *run = NULL;
    if (argc >= 3 && argv[argc - 1][0] != '-' && (argc == 3 || argv[argc - 2][0] != '-' || !strcmp(argv[argc - 2], "--help"))) {
        run = argv[argc - 1];
        argc--;
    }
    summary_opts o = {0};
    int rc = parse_options(summary_options, N_SUMMARY_OPTIONS, argc, argv, &o);
    if (rc == HELP) {
        summary_usage(stdout);
        return 0;
    }
    if (rc) return rc;
    if ((run != NULL) + (o.model_file != NULL) + o.model_given != 1)
        return bad_usage("give one of --model-file FILE, --model cnn|mlp|gpt or a run directory");
    zg_model_spec *s = o.model_file ? zg_model_spec_load(o.model_file)
                       : run        ? zg_train_model_spec(run)
                                    : zg_train_builtin_spec(o.model);
    char *text = s ? zg_model_spec_summary(s) : NULL;
    zg_model_spec_free(s);
    if (!text) {
        fprintf(stderr, "zgrad: %s\n", zg_last_error());
        return 1;
    }
    fputs(text, stdout);
    free(text);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* ---- predict ----------------------------------------------------------------- */

typedef struct {
    opts_head head;
    const char *checkpoint, *input, *output;
    int threads;
} predict_opts;

#define P_OPT(name, arg, help, set, field, lo, hi) {name, arg, help, set, offsetof(predict_opts, field), lo, hi, 0}

static const option predict_options[] = {
    P_OPT("--checkpoint", "RUN", "a run (or checkpoint) directory of zgrad train (required)", set_path, checkpoint, 0,
          0),
    P_OPT("--input", "FILE|DIR",
          "the data (required): a CSV file for a --csv run (its\nfeature columns by name; other columns are not "
          "read), an\nimage file or a folder of them for an --images run (every\nPNG and JPEG under it), an IDX "
          "images file for a run on\nMNIST-format data",
          set_path, input, 0, 0),
    P_OPT("--output", "FILE", "write the CSV there (default: stdout)", set_path, output, 0, 0),
    P_OPT("--threads", "N", "OpenMP and OpenBLAS threads", set_int, threads, 1, 1024),
    {"--help", NULL, "print this help and exit", NULL, 0, 0, 0, 0},
};
#define N_PREDICT_OPTIONS ((int)(sizeof predict_options / sizeof predict_options[0]))

static void predict_usage(FILE *f) {
    fprintf(f, "usage: zgrad predict --checkpoint RUN --input FILE|DIR [--output FILE]\n"
               "\n"
               "Runs the model of a run on new data, preprocessed as its training data was\n"
               "(the features standardised, the images normalised, with the training\n"
               "statistics the run keeps), and writes CSV with a header: per sample its\n"
               "row (0-based), file or index, the predicted class (an image run's class\n"
               "name) and the probability of each class (prob_<class>), or the predicted\n"
               "value of a regression.\n"
               "\n"
               "options:\n");
    print_options(f, predict_options, N_PREDICT_OPTIONS);
}

static int cmd_predict(int argc, char **argv) {
    cmd_name = "predict";
    predict_opts o = {0};
    int rc = parse_options(predict_options, N_PREDICT_OPTIONS, argc, argv, &o);
    if (rc == HELP) {
        predict_usage(stdout);
        return 0;
    }
    if (rc) return rc;
    if (!o.checkpoint || !o.input) return bad_usage("--checkpoint RUN and --input FILE|DIR are required");
    if (o.threads > 0) zg_set_num_threads(o.threads);
    if ((rc = zg_predict(o.checkpoint, o.input, o.output))) {
        fprintf(stderr, "zgrad: %s\n", zg_last_error());
        return failure_status(rc);
    }
    return 0;
}

/* ---- sample ------------------------------------------------------------------ */

typedef struct {
    opts_head head;
    const char *checkpoint, *prompt;
    int64_t tokens, top_k;
    double temperature;
    uint64_t seed;
    int threads;
} sample_opts;

#define S_OPT(name, arg, help, set, field, lo, hi) {name, arg, help, set, offsetof(sample_opts, field), lo, hi, 0}

static const option sample_options[] = {
    S_OPT("--checkpoint", "RUN", "a --model gpt run or checkpoint directory (required)", set_path, checkpoint, 0, 0),
    S_OPT("--prompt", "TEXT", "the text to continue (default: a newline)", set_path, prompt, 0, 0),
    S_OPT("--tokens", "N", "new tokens to generate (default 500)", set_i64, tokens, 0, 10000000),
    S_OPT("--temperature", "T", "softmax temperature; 0 takes the most likely token\n(default 0.8)", set_f64,
          temperature, 0, 0),
    S_OPT("--top-k", "K", "draw from the K most likely tokens only; 0: all\n(default 200)", set_i64, top_k, 0,
          INT64_MAX),
    S_OPT("--seed", "N", "the draws depend on it alone (default 1337)", set_u64, seed, 0, 0),
    S_OPT("--threads", "N", "OpenMP and OpenBLAS threads", set_int, threads, 1, 1024),
    {"--help", NULL, "print this help and exit", NULL, 0, 0, 0, 0},
};
#define N_SAMPLE_OPTIONS ((int)(sizeof sample_options / sizeof sample_options[0]))

static void sample_usage(FILE *f) {
    fprintf(f, "usage: zgrad sample --checkpoint RUN [options]\n"
               "\n"
               "Prints the prompt continued by the GPT of a `zgrad train --model gpt` run\n"
               "(eval mode, no_grad). No KV cache: each new token runs the model over the\n"
               "last block_size tokens again, as nanoGPT's generate.\n"
               "\n"
               "options:\n");
    print_options(f, sample_options, N_SAMPLE_OPTIONS);
}

static int cmd_sample(int argc, char **argv) {
    cmd_name = "sample";
    sample_opts o = {.prompt = "", .tokens = 500, .top_k = 200, .temperature = 0.8, .seed = 1337};
    int rc = parse_options(sample_options, N_SAMPLE_OPTIONS, argc, argv, &o);
    if (rc == HELP) {
        sample_usage(stdout);
        return 0;
    }
    if (rc) return rc;
    if (!o.checkpoint) return bad_usage("--checkpoint RUN is required");
    if (o.threads > 0) zg_set_num_threads(o.threads);
    char *text = NULL;
    if ((rc = zg_train_sample(o.checkpoint, o.prompt, o.tokens, (float)o.temperature, o.top_k, o.seed, &text))) {
        fprintf(stderr, "zgrad: %s\n", zg_last_error());
        return failure_status(rc);
    }
    fputs(text, stdout);
    fputc('\n', stdout);
    free(text);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* ---- export ------------------------------------------------------------------ */

typedef struct {
    opts_head head;
    const char *onnx, *run;
} export_opts;

static const option export_options[] = {
    {"--onnx", "FILE", "the ONNX file to write (required)", set_path, offsetof(export_opts, onnx), 0, 0, 0},
    {"--help", NULL, "print this help and exit", NULL, 0, 0, 0, 0},
};
#define N_EXPORT_OPTIONS ((int)(sizeof export_options / sizeof export_options[0]))

static void export_usage(FILE *f) {
    fprintf(f, "usage: zgrad export --onnx FILE RUN\n"
               "\n"
               "Writes the model of a zgrad train run (RUN: its directory or a checkpoint\n"
               "directory) as an ONNX model (opset 17) as it computes in eval mode: cnn and\n"
               "mlp take \"input\" [N, 1, 28, 28], the pixels / 255 (the run's normalisation\n"
               "is part of the graph), and give \"output\" [N, 10], the logits; a GPT takes\n"
               "\"idx\" [N, T] token indices and gives \"logits\" [N, T, vocab].\n"
               "\n"
               "options:\n");
    print_options(f, export_options, N_EXPORT_OPTIONS);
}

static int cmd_export(int argc, char **argv) {
    cmd_name = "export";
    export_opts o = {0};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        bool missing;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            export_usage(stdout);
            return 0;
        }
        const option *opt = match(export_options, N_EXPORT_OPTIONS, argc, argv, &i, &v, &missing);
        if (!opt && a[0] == '-') return bad_usage("unknown option '%s'", a);
        if (!opt && o.run) return bad_usage("one RUN only (got '%s' and '%s')", o.run, a);
        if (!opt) o.run = a;
        else if (missing) return bad_usage("%s needs a value", opt->name);
        else if (opt->set(opt, v, &o)) return 2;
    }
    if (!o.onnx) return bad_usage("--onnx FILE is required");
    if (!o.run) return bad_usage("RUN (a run directory) is required");
    int rc = zg_train_export_onnx(o.run, o.onnx);
    if (rc) {
        fprintf(stderr, "zgrad: %s\n", zg_last_error());
        return failure_status(rc);
    }
    printf("zgrad export: wrote %s\n", o.onnx);
    return 0;
}

int main(int argc, char **argv) {
    /* A write to a closed pipe fails with EPIPE instead of killing us
     * silently; zgrad train stops on it with a checkpoint (exit 141). */
    signal(SIGPIPE, SIG_IGN);
    /* The gradient-lifecycle sanitizer warns by default in the CLI;
     * ZG_SANITIZE=off|warn|error|trace overrides it. */
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
    if (!strcmp(argv[1], "sample")) return cmd_sample(argc, argv);
    if (!strcmp(argv[1], "predict")) return cmd_predict(argc, argv);
    if (!strcmp(argv[1], "summary")) return cmd_summary(argc, argv);
    if (!strcmp(argv[1], "export")) return cmd_export(argc, argv);
    fprintf(stderr, "zgrad: unknown command or option '%s' (see zgrad --help)\n", argv[1]);
    return 2;
}
