/* Checkpoints of a training run.
 *
 * Layout of a run directory:
 *   checkpoint               one line: the name of the current checkpoint
 *   ckpt-e0002-s0000001876/  model.safetensors   weights and buffers
 *                            optim.safetensors   optimizer state_dict
 *                            trainer.safetensors options, position, RNG,
 *                                                metrics so far, CRCs
 * Saving writes a whole new directory (every file fsync'ed), then replaces
 * the pointer file atomically (temp + fsync + rename + fsync of the run
 * directory), and only then removes the previous directory. A kill at any
 * moment leaves the pointer naming a complete checkpoint: the old one until
 * the rename, the new one after. trainer.safetensors, written last, holds
 * the size and CRC-32 of the two other files, so a damaged file is refused
 * rather than loaded. A directory is made and removed only as rundir.c
 * allows (the run's list of them, a marker inside, no symlink followed). */
#include "train_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#define TRAINER_FORMAT "zgrad.train.v1"
#define NAME_MAX_LEN ZG_CKPT_NAME_MAX

void zg__ckpt_state_free(zg__ckpt_state *s) {
    free(s->metrics);
    s->metrics = NULL;
    s->n_metrics = 0;
    free(s->sched_json);
    s->sched_json = NULL;
    free(s->vocab_hex);
    s->vocab_hex = NULL;
    free(s->model_spec);
    s->model_spec = NULL;
    free(s->data_json);
    s->data_json = NULL;
}

static bool valid_name(const char *s, size_t n) {
    if (n < 6 || n > NAME_MAX_LEN || strncmp(s, "ckpt-", 5) != 0) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-')) return false;
    return true;
}

/* Bounded, never through a symlink, never blocking on a FIFO: the pointer
 * is one name and a newline. */
int zg__ckpt_read_pointer(const char *fn, const char *run_dir, char *name) {
    char path[4200], text[256];
    size_t len;
    zg__path_join(path, sizeof path, run_dir, ZG_CKPT_POINTER);
    int rc = zg__read_small(fn, AT_FDCWD, path, path, text, sizeof text, &len);
    if (rc <= 0) return rc;
    if (len > 0 && text[len - 1] == '\n') len--;
    if (!valid_name(text, len) || memchr(text, '\0', len))
        return zg__fail(ZG_ERR_FORMAT, "%s: '%s' is damaged (it should name a checkpoint directory)", fn, path);
    memcpy(name, text, len);
    name[len] = '\0';
    return 1;
}

int zg__ckpt_locate(const char *fn, const char *path, char *ckpt_dir, size_t ckpt_len, char *run_dir,
                    size_t run_len) {
    if (!zg__is_dir(path))
        return zg__fail(ZG_ERR_IO, "%s: '%s' is not a directory (expected a run or checkpoint directory)", fn, path);
    char name[NAME_MAX_LEN + 1], p[4200];
    int rc = zg__ckpt_read_pointer(fn, path, name);
    if (rc < 0) return rc;
    if (rc == 1) {
        zg__path_join(ckpt_dir, ckpt_len, path, name);
        if (!zg__is_dir(ckpt_dir))
            return zg__fail(ZG_ERR_FORMAT, "%s: '%s/%s' names '%s', which does not exist", fn, path, ZG_CKPT_POINTER,
                            name);
        snprintf(run_dir, run_len, "%s", path);
        return ZG_OK;
    }
    zg__path_join(p, sizeof p, path, ZG_CKPT_TRAINER);
    if (zg__path_exists(p)) {
        snprintf(ckpt_dir, ckpt_len, "%s", path);
        if (run_len) run_dir[0] = '\0';
        return ZG_OK;
    }
    return zg__fail(ZG_ERR_IO, "%s: '%s' holds no checkpoint (no '%s' file)", fn, path, ZG_CKPT_POINTER);
}

/* ---- saving ---------------------------------------------------------------- */

typedef struct {
    char *keys[96], *vals[96];
    int n;
    bool failed;
} meta;

static void meta_add(meta *m, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void meta_add(meta *m, const char *key, const char *fmt, ...) {
    if (m->n >= 96) {
        m->failed = true;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *v = k >= 0 ? zg__malloc((size_t)k + 1) : NULL;
    if (v) {
        va_start(ap, fmt);
        vsnprintf(v, (size_t)k + 1, fmt, ap);
        va_end(ap);
    }
    char *kd = zg__strdup(key);
    if (!v || !kd) m->failed = true;
    m->keys[m->n] = kd;
    m->vals[m->n] = v;
    m->n++;
}

static void meta_free(meta *m) {
    for (int i = 0; i < m->n; i++) {
        free(m->keys[i]);
        free(m->vals[i]);
    }
    m->n = 0;
}

static void add_gpt_meta(meta *m, const zg__ckpt_state *s) {
    const zg_gpt_config *g = &s->gpt;
    meta_add(m, "gpt_vocab_size", "%lld", (long long)g->vocab_size);
    meta_add(m, "gpt_block_size", "%lld", (long long)g->block_size);
    meta_add(m, "gpt_n_layer", "%lld", (long long)g->n_layer);
    meta_add(m, "gpt_n_head", "%lld", (long long)g->n_head);
    meta_add(m, "gpt_n_embd", "%lld", (long long)g->n_embd);
    meta_add(m, "gpt_dropout", "%.9g", (double)g->dropout);
    meta_add(m, "gpt_bias", "%d", g->bias ? 1 : 0);
    meta_add(m, "iters", "%lld", (long long)s->iters);
    meta_add(m, "eval_interval", "%lld", (long long)s->eval_interval);
    meta_add(m, "eval_iters", "%lld", (long long)s->eval_iters);
    meta_add(m, "lm_batches", "%lld", (long long)s->lm_batches);
    meta_add(m, "text_path", "%s", s->text_path);
    meta_add(m, "corpus", "%s", s->corpus);
    meta_add(m, "text_vocab", "%s", s->text_vocab == ZG_TEXT_BYTE ? "byte" : "char");
    meta_add(m, "val_fraction", "%.17g", s->val_fraction);
    meta_add(m, "text_bytes", "%lld", (long long)s->text_bytes);
    meta_add(m, "text_crc32", "%08" PRIx32, s->text_crc);
    meta_add(m, "text_vocab_utf8_hex", "%s", s->vocab_hex ? s->vocab_hex : "");
}

static int write_trainer(const char *fn, const char *dir, const zg__ckpt_state *s, uint32_t model_crc,
                         int64_t model_size, uint32_t optim_crc, int64_t optim_size) {
    meta m = {.n = 0};
    zg__strbuf hist = {0};
    zg__sb_printf(&hist, "[");
    for (int i = 0; i < s->n_metrics; i++) {
        if (i) zg__sb_printf(&hist, ", ");
        zg__metrics_json(&hist, &s->metrics[i]);
    }
    zg__sb_printf(&hist, "]");

    meta_add(&m, "format", TRAINER_FORMAT);
    meta_add(&m, "model", "%s", zg_train_model_name(s->model));
    meta_add(&m, "optimizer", "%s", zg_train_optim_name(s->optimizer));
    meta_add(&m, "lr", "%.17g", s->lr);
    meta_add(&m, "momentum", "%.17g", s->momentum);
    meta_add(&m, "weight_decay", "%.17g", s->weight_decay);
    meta_add(&m, "batch_size", "%lld", (long long)s->batch_size);
    meta_add(&m, "seed", "%" PRIu64, s->seed);
    meta_add(&m, "limit_train", "%lld", (long long)s->limit_train);
    meta_add(&m, "limit_test", "%lld", (long long)s->limit_test);
    meta_add(&m, "eval_batch_size", "%lld", (long long)s->eval_batch_size);
    meta_add(&m, "mean", "%.9g", (double)s->mean);
    meta_add(&m, "std", "%.9g", (double)s->std);
    meta_add(&m, "epochs", "%d", s->epochs);
    meta_add(&m, "checkpoint_every_steps", "%lld", (long long)s->checkpoint_every_steps);
    meta_add(&m, "epoch", "%lld", (long long)s->epoch);
    meta_add(&m, "next_batch", "%lld", (long long)s->next_batch);
    meta_add(&m, "global_step", "%lld", (long long)s->global_step);
    meta_add(&m, "epoch_loss_sum", "%.17g", s->epoch_loss_sum);
    meta_add(&m, "epoch_seconds", "%.17g", s->epoch_seconds);
    meta_add(&m, "epoch_samples", "%lld", (long long)s->epoch_samples);
    meta_add(&m, "epoch_steps", "%lld", (long long)s->epoch_steps);
    meta_add(&m, "model_crc32", "%08" PRIx32, model_crc);
    meta_add(&m, "model_bytes", "%lld", (long long)model_size);
    meta_add(&m, "optim_crc32", "%08" PRIx32, optim_crc);
    meta_add(&m, "optim_bytes", "%lld", (long long)optim_size);
    meta_add(&m, "metrics", "%s", hist.s ? hist.s : "[]");
    meta_add(&m, "accum", "%d", s->accum);
    meta_add(&m, "amp", "%d", s->amp);
    meta_add(&m, "clip_norm", "%.17g", s->clip_norm);
    meta_add(&m, "schedule", "%s", s->schedule);
    meta_add(&m, "bad_batches", "%lld", (long long)s->bad_batches);
    meta_add(&m, "bad_losses", "%lld", (long long)s->bad_losses);
    meta_add(&m, "bad_in_row", "%lld", (long long)s->bad_in_row);
    if (s->world_size > 1) meta_add(&m, "world_size", "%d", s->world_size);
    if (s->sched_json) meta_add(&m, "scheduler", "%s", s->sched_json);
    meta_add(&m, "beta1", "%.17g", s->beta1);
    meta_add(&m, "beta2", "%.17g", s->beta2);
    if (s->model == ZG_MODEL_GPT) add_gpt_meta(&m, s);
    if (s->model == ZG_MODEL_FILE) meta_add(&m, "model_spec", "%s", s->model_spec ? s->model_spec : "");
    if (s->data_json) meta_add(&m, "data", "%s", s->data_json);
    if (s->has_scaler) {
        meta_add(&m, "scaler_scale", "%.9g", (double)s->scaler.scale);
        meta_add(&m, "scaler_growth_factor", "%.17g", s->scaler.growth_factor);
        meta_add(&m, "scaler_backoff_factor", "%.17g", s->scaler.backoff_factor);
        meta_add(&m, "scaler_growth_interval", "%lld", (long long)s->scaler.growth_interval);
        meta_add(&m, "scaler_growth_tracker", "%lld", (long long)s->scaler.growth_tracker);
    }
    const bool failed = m.failed || hist.failed; /* read before the free clears it */
    zg__sb_free(&hist);
    if (failed) {
        meta_free(&m);
        return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    }

    /* The generator's 256-bit state, bit for bit, as int64. */
    int64_t shape[1] = {4};
    int64_t rng[4];
    memcpy(rng, s->rng, sizeof rng);
    zg_tensor *t = zg_tensor_from_data(ZG_INT64, rng, shape, 1);
    const char *name = "rng_state";
    char path[4200];
    zg__path_join(path, sizeof path, dir, ZG_CKPT_TRAINER);
    int rc = t ? zg_safetensors_write(path, &t, &name, 1, (const char *const *)m.keys, (const char *const *)m.vals, m.n)
               : ZG_ERR_NOMEM;
    zg_tensor_free(t);
    meta_free(&m);
    return rc;
}

static int save_files(const char *fn, const char *dir, zg_module *model, zg_optim *opt, const zg__ckpt_state *s) {
    char mp[4200], op[4200];
    zg__path_join(mp, sizeof mp, dir, ZG_CKPT_MODEL);
    zg__path_join(op, sizeof op, dir, ZG_CKPT_OPTIM);
    int rc = zg_module_save(model, mp);
    if (!rc) rc = zg_optim_save(opt, op);
    uint32_t mc = 0, oc = 0;
    int64_t ms = 0, os = 0;
    if (!rc) rc = zg__file_crc(fn, mp, &mc, &ms);
    if (!rc) rc = zg__file_crc(fn, op, &oc, &os);
    if (!rc) rc = write_trainer(fn, dir, s, mc, ms, oc, os);
    return rc;
}

int zg__ckpt_save(const char *run_dir, zg_module *model, zg_optim *opt, const zg__ckpt_state *s, char *name_out) {
    const char *fn = "zg_train_run: saving a checkpoint";
    char old[NAME_MAX_LEN + 1] = "", name[NAME_MAX_LEN + 1], dir[4200], ptr[4200];
    int have_old = zg__ckpt_read_pointer(fn, run_dir, old);
    if (have_old < 0 && have_old != ZG_ERR_FORMAT) return have_old; /* unreadable now (memory, I/O) */
    if (have_old < 0) {
        /* A damaged pointer is replaced below; the directory it named (if
         * any) is left to the cleanup. */
        have_old = 0;
        old[0] = '\0';
    }
    zg__ckpt_name(name, s->epoch, s->global_step);
    if (have_old && !strcmp(old, name)) {
        /* The same position is already saved (nothing ran since). */
        snprintf(name_out, NAME_MAX_LEN + 1, "%s", name);
        return ZG_OK;
    }
    zg__path_join(dir, sizeof dir, run_dir, name);
    int rc = zg__ckpt_begin(fn, run_dir, have_old ? old : NULL, name);
    if (rc) return rc;
    rc = save_files(fn, dir, model, opt, s);
    if (!rc) rc = zg__fsync_dir(fn, dir);
    if (!rc) rc = zg__fsync_dir(fn, run_dir);
    char line[NAME_MAX_LEN + 2];
    int len = snprintf(line, sizeof line, "%s\n", name);
    zg__path_join(ptr, sizeof ptr, run_dir, ZG_CKPT_POINTER);
    if (!rc) rc = zg__write_atomic(fn, ptr, line, (size_t)len);
    if (rc) {
        /* The pointer still names the previous checkpoint. */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", zg_last_error());
        zg__ckpt_remove(fn, run_dir, name, true);
        return zg__fail(rc, "%s", msg);
    }
    if (have_old) zg__ckpt_remove(fn, run_dir, old, false);
    snprintf(name_out, NAME_MAX_LEN + 1, "%s", name);
    return ZG_OK;
}

/* ---- reading ---------------------------------------------------------------- */

static const char *get_meta(const zg_safetensors *st, const char *key, const char *path, int *rc) {
    const char *v = zg_safetensors_metadata(st, key);
    if (!v && *rc == ZG_OK)
        *rc = zg__fail(ZG_ERR_FORMAT, "zg_train: checkpoint file '%s' lacks '%s'", path, key);
    return v;
}

static void get_i64(const zg_safetensors *st, const char *key, const char *path, int64_t lo, int64_t hi,
                    int64_t *out, int *rc) {
    const char *v = get_meta(st, key, path, rc);
    if (!v) return;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (*rc == ZG_OK && (end == v || *end || errno || x < lo || x > hi))
        *rc = zg__fail(ZG_ERR_FORMAT, "zg_train: checkpoint file '%s': '%s' is invalid ('%s')", path, key, v);
    *out = x;
}

static void get_f64(const zg_safetensors *st, const char *key, const char *path, double *out, int *rc) {
    const char *v = get_meta(st, key, path, rc);
    if (!v) return;
    char *end;
    double x = strtod(v, &end);
    if (*rc == ZG_OK && (end == v || *end || !isfinite(x)))
        *rc = zg__fail(ZG_ERR_FORMAT, "zg_train: checkpoint file '%s': '%s' is invalid ('%s')", path, key, v);
    *out = x;
}

/* A string key into a fixed buffer: present and short enough. */
static void get_str(const zg_safetensors *st, const char *key, const char *path, char *out, size_t cap, int *rc) {
    const char *v = get_meta(st, key, path, rc);
    if (!v || *rc) return;
    if (strlen(v) >= cap) *rc = zg__fail(ZG_ERR_FORMAT, "zg_train: checkpoint file '%s': '%s' is too long", path, key);
    else memcpy(out, v, strlen(v) + 1);
}

static int read_gpt_meta(const char *fn, const zg_safetensors *st, const char *path, zg__ckpt_state *s) {
    int rc = ZG_OK;
    zg_gpt_config *g = &s->gpt;
    int64_t bias = 0;
    double dropout = 0;
    get_i64(st, "gpt_vocab_size", path, 1, INT32_MAX, &g->vocab_size, &rc);
    get_i64(st, "gpt_block_size", path, 1, 65536, &g->block_size, &rc);
    get_i64(st, "gpt_n_layer", path, 1, 1000, &g->n_layer, &rc);
    get_i64(st, "gpt_n_head", path, 1, 65536, &g->n_head, &rc);
    get_i64(st, "gpt_n_embd", path, 1, 65536, &g->n_embd, &rc);
    get_f64(st, "gpt_dropout", path, &dropout, &rc);
    get_i64(st, "gpt_bias", path, 0, 1, &bias, &rc);
    g->dropout = (float)dropout;
    g->bias = bias != 0;
    get_i64(st, "iters", path, 1, ZG__MAX_COUNT, &s->iters, &rc);
    get_i64(st, "eval_interval", path, 1, ZG__MAX_COUNT, &s->eval_interval, &rc);
    get_i64(st, "eval_iters", path, 1, 1000000, &s->eval_iters, &rc);
    get_i64(st, "lm_batches", path, 0, ZG__MAX_COUNT, &s->lm_batches, &rc);
    get_str(st, "text_path", path, s->text_path, sizeof s->text_path, &rc);
    get_str(st, "corpus", path, s->corpus, sizeof s->corpus, &rc);
    char vocab[8] = "";
    get_str(st, "text_vocab", path, vocab, sizeof vocab, &rc);
    get_f64(st, "val_fraction", path, &s->val_fraction, &rc);
    get_i64(st, "text_bytes", path, 0, INT64_MAX, &s->text_bytes, &rc);
    char crc[16] = "";
    get_str(st, "text_crc32", path, crc, sizeof crc, &rc);
    const char *hex = get_meta(st, "text_vocab_utf8_hex", path, &rc);
    if (rc) return rc;
    s->text_vocab = !strcmp(vocab, "byte") ? ZG_TEXT_BYTE : ZG_TEXT_CHAR;
    char *end;
    s->text_crc = (uint32_t)strtoul(crc, &end, 16);
    size_t n = strlen(hex);
    bool hex_ok = n % 2 == 0 && strspn(hex, "0123456789abcdef") == n;
    if ((strcmp(vocab, "byte") && strcmp(vocab, "char")) || strlen(crc) != 8 || *end || !hex_ok ||
        (s->text_vocab == ZG_TEXT_CHAR && n == 0) || !(s->val_fraction > 0 && s->val_fraction < 1) ||
        g->n_embd % g->n_head)
        return zg__fail(ZG_ERR_FORMAT, "%s: '%s': the GPT's settings are invalid (text_vocab, text_crc32, "
                        "text_vocab_utf8_hex, val_fraction or n_embd / n_head)", fn, path);
    if (!(s->vocab_hex = zg__strdup(hex))) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    return ZG_OK;
}

static int check_file(const char *fn, const char *dir, const char *file, const char *crc_hex, int64_t bytes) {
    char path[4200];
    zg__path_join(path, sizeof path, dir, file);
    uint32_t crc;
    int64_t size;
    int rc = zg__file_crc(fn, path, &crc, &size);
    if (rc) return rc;
    char hex[16];
    snprintf(hex, sizeof hex, "%08" PRIx32, crc);
    if (size != bytes || strcmp(hex, crc_hex) != 0)
        return zg__fail(ZG_ERR_FORMAT, "%s: '%s' is damaged (%lld bytes, CRC-32 %s; the checkpoint recorded %lld bytes, %s)",
                        fn, path, (long long)size, hex, (long long)bytes, crc_hex);
    return ZG_OK;
}

int zg__ckpt_read_state(const char *fn, const char *ckpt_dir, zg__ckpt_state *s) {
    memset(s, 0, sizeof *s);
    char path[4200];
    zg__path_join(path, sizeof path, ckpt_dir, ZG_CKPT_TRAINER);
    zg_safetensors *st;
    int read_rc = zg__safetensors_open(path, &st);
    if (read_rc) {
        char inner[1024];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        return zg__fail(read_rc == ZG_ERR_NOMEM ? read_rc : ZG_ERR_FORMAT, "%s: checkpoint '%s' is damaged: %s", fn,
                        ckpt_dir, inner);
    }
    int rc = ZG_OK;
    const char *format = zg_safetensors_metadata(st, "format");
    if (!format || strcmp(format, TRAINER_FORMAT) != 0)
        rc = zg__fail(ZG_ERR_FORMAT, "%s: '%s' is not a zgrad training checkpoint (format %s, expected %s)", fn, path,
                      format ? format : "missing", TRAINER_FORMAT);
    const char *model = rc ? NULL : get_meta(st, "model", path, &rc);
    const char *optim = rc ? NULL : get_meta(st, "optimizer", path, &rc);
    if (!rc && zg_train_model_kind(model) < 0)
        rc = zg__fail(ZG_ERR_FORMAT, "%s: '%s': unknown model '%s'", fn, path, model);
    if (!rc && zg_train_optim_kind(optim) < 0)
        rc = zg__fail(ZG_ERR_FORMAT, "%s: '%s': unknown optimizer '%s'", fn, path, optim);
    if (!rc) {
        s->model = (zg_model_kind)zg_train_model_kind(model);
        s->optimizer = (zg_optim_kind)zg_train_optim_kind(optim);
    }
    int64_t epochs = 0;
    double mean = 0, std = 0;
    get_f64(st, "lr", path, &s->lr, &rc);
    get_f64(st, "momentum", path, &s->momentum, &rc);
    get_f64(st, "weight_decay", path, &s->weight_decay, &rc);
    get_i64(st, "batch_size", path, 1, ZG_TRAIN_MAX_BATCH, &s->batch_size, &rc);
    const char *seed = get_meta(st, "seed", path, &rc);
    if (seed && !rc) {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(seed, &end, 10);
        if (end == seed || *end || errno || seed[0] == '-')
            rc = zg__fail(ZG_ERR_FORMAT, "zg_train: checkpoint file '%s': 'seed' is invalid ('%s')", path, seed);
        s->seed = x;
    }
    get_i64(st, "limit_train", path, 0, INT64_MAX, &s->limit_train, &rc);
    get_i64(st, "limit_test", path, 0, INT64_MAX, &s->limit_test, &rc);
    get_i64(st, "eval_batch_size", path, 1, ZG_TRAIN_MAX_BATCH, &s->eval_batch_size, &rc);
    get_f64(st, "mean", path, &mean, &rc);
    get_f64(st, "std", path, &std, &rc);
    s->mean = (float)mean;
    s->std = (float)std;
    get_i64(st, "epochs", path, 1, ZG_TRAIN_MAX_EPOCHS, &epochs, &rc);
    get_i64(st, "checkpoint_every_steps", path, 0, INT64_MAX, &s->checkpoint_every_steps, &rc);
    s->epochs = (int)epochs;
    /* Counters are bounded so that counting on from them cannot overflow. */
    get_i64(st, "epoch", path, 0, ZG_TRAIN_MAX_EPOCHS, &s->epoch, &rc);
    get_i64(st, "next_batch", path, 0, ZG__MAX_COUNT, &s->next_batch, &rc);
    get_i64(st, "global_step", path, 0, ZG__MAX_COUNT, &s->global_step, &rc);
    get_f64(st, "epoch_loss_sum", path, &s->epoch_loss_sum, &rc);
    get_f64(st, "epoch_seconds", path, &s->epoch_seconds, &rc);
    get_i64(st, "epoch_samples", path, 0, ZG__MAX_COUNT, &s->epoch_samples, &rc);
    get_i64(st, "epoch_steps", path, 0, ZG__MAX_COUNT, &s->epoch_steps, &rc);
    int64_t model_bytes = 0, optim_bytes = 0;
    const char *model_crc = get_meta(st, "model_crc32", path, &rc);
    const char *optim_crc = get_meta(st, "optim_crc32", path, &rc);
    get_i64(st, "model_bytes", path, 0, INT64_MAX, &model_bytes, &rc);
    get_i64(st, "optim_bytes", path, 0, INT64_MAX, &optim_bytes, &rc);
    const char *hist = get_meta(st, "metrics", path, &rc);
    /* The recipe keys came with format v1's later revision: a checkpoint
     * without them was written by the plain loop (accum 1, no clipping,
     * schedule or amp). */
    s->accum = 1;
    s->clip_norm = -1;
    s->world_size = 1;
    if (zg_safetensors_metadata(st, "accum")) {
        int64_t accum = 1, amp = 0;
        get_i64(st, "accum", path, 1, 1000000, &accum, &rc);
        get_i64(st, "amp", path, 0, 2, &amp, &rc);
        s->accum = (int)accum;
        s->amp = (int)amp;
        const char *clip = get_meta(st, "clip_norm", path, &rc);
        if (clip && !rc) {
            char *end;
            s->clip_norm = strtod(clip, &end);
            if (end == clip || *end || isnan(s->clip_norm))
                rc = zg__fail(ZG_ERR_FORMAT, "zg_train: checkpoint file '%s': 'clip_norm' is invalid ('%s')", path, clip);
        }
        const char *sched = get_meta(st, "schedule", path, &rc);
        if (sched && !rc) {
            if (strlen(sched) >= sizeof s->schedule)
                rc = zg__fail(ZG_ERR_FORMAT, "zg_train: checkpoint file '%s': 'schedule' is too long", path);
            else
                memcpy(s->schedule, sched, strlen(sched) + 1);
        }
        get_i64(st, "bad_batches", path, 0, ZG__MAX_COUNT, &s->bad_batches, &rc);
        get_i64(st, "bad_losses", path, 0, ZG__MAX_COUNT, &s->bad_losses, &rc);
        get_i64(st, "bad_in_row", path, 0, ZG__MAX_COUNT, &s->bad_in_row, &rc);
        /* Absent: a single-process run. */
        int64_t world = 1;
        if (zg_safetensors_metadata(st, "world_size")) get_i64(st, "world_size", path, 2, 1 << 20, &world, &rc);
        s->world_size = (int)world;
        const char *sj = zg_safetensors_metadata(st, "scheduler");
        if (!rc && s->schedule[0] && !sj)
            rc = zg__fail(ZG_ERR_FORMAT, "zg_train: checkpoint file '%s' has a schedule but no scheduler state", path);
        if (!rc && sj && !(s->sched_json = zg__strdup(sj))) rc = zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
        if (!rc && zg_safetensors_metadata(st, "scaler_scale")) {
            double scale = 0;
            s->has_scaler = true;
            get_f64(st, "scaler_scale", path, &scale, &rc);
            s->scaler.scale = (float)scale;
            get_f64(st, "scaler_growth_factor", path, &s->scaler.growth_factor, &rc);
            get_f64(st, "scaler_backoff_factor", path, &s->scaler.backoff_factor, &rc);
            get_i64(st, "scaler_growth_interval", path, 1, INT64_MAX, &s->scaler.growth_interval, &rc);
            get_i64(st, "scaler_growth_tracker", path, 0, INT64_MAX, &s->scaler.growth_tracker, &rc);
        }
        if (!rc && s->amp == ZG_AUTOCAST_FP16 && !s->has_scaler)
            rc = zg__fail(ZG_ERR_FORMAT, "zg_train: checkpoint file '%s' uses fp16 but holds no GradScaler state", path);
    }
    s->beta1 = 0.9; /* before betas were options: Adam's defaults */
    s->beta2 = 0.999;
    if (zg_safetensors_metadata(st, "beta1")) {
        get_f64(st, "beta1", path, &s->beta1, &rc);
        get_f64(st, "beta2", path, &s->beta2, &rc);
    }
    if (!rc && s->model == ZG_MODEL_GPT) rc = read_gpt_meta(fn, st, path, s);
    if (!rc && s->model == ZG_MODEL_FILE) {
        const char *spec = get_meta(st, "model_spec", path, &rc);
        if (!rc && !(s->model_spec = zg__strdup(spec))) rc = zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    }
    const char *data = rc ? NULL : zg_safetensors_metadata(st, "data"); /* --csv / --images runs only */
    if (data && !(s->data_json = zg__strdup(data))) rc = zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    if (!rc) {
        const zg_tensor *t = zg_safetensors_get(st, "rng_state");
        if (!t || zg_tensor_dtype(t) != ZG_INT64 || zg_tensor_ndim(t) != 1 || zg_tensor_size(t, 0) != 4)
            rc = zg__fail(ZG_ERR_FORMAT, "%s: '%s': 'rng_state' is missing or not int64 [4]", fn, path);
        else
            memcpy(s->rng, zg__i64(t), sizeof s->rng);
    }
    if (!rc) rc = zg__metrics_parse(fn, hist, (int)s->epoch, &s->metrics, &s->n_metrics);
    if (!rc && s->n_metrics != s->epoch)
        rc = zg__fail(ZG_ERR_FORMAT, "%s: '%s': %d epochs of metrics for a position in epoch %lld", fn, path,
                      s->n_metrics, (long long)s->epoch + 1);
    if (!rc) rc = check_file(fn, ckpt_dir, ZG_CKPT_MODEL, model_crc, model_bytes);
    if (!rc) rc = check_file(fn, ckpt_dir, ZG_CKPT_OPTIM, optim_crc, optim_bytes);
    zg_safetensors_free(st);
    if (rc) zg__ckpt_state_free(s);
    return rc;
}

int zg__ckpt_load(const char *fn, const char *ckpt_dir, zg_module *model, zg_optim *opt) {
    char path[4200];
    zg__path_join(path, sizeof path, ckpt_dir, ZG_CKPT_MODEL);
    if (zg_module_load(model, path)) {
        char inner[1024];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        return zg__fail(ZG_ERR_FORMAT, "%s: %s", fn, inner);
    }
    if (!opt) return ZG_OK;
    zg__path_join(path, sizeof path, ckpt_dir, ZG_CKPT_OPTIM);
    if (zg_optim_load(opt, path)) {
        char inner[1024];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        return zg__fail(ZG_ERR_FORMAT, "%s: %s", fn, inner);
    }
    return ZG_OK;
}
