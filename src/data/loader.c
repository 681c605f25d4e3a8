/* The data loader: batches of a data set in a seeded order, normalised
 * into float32, optionally prepared one batch ahead on a background
 * thread.
 *
 * Order. Epoch e visits the samples in a permutation drawn by
 * Fisher-Yates from a private xoshiro256** generator seeded from
 * (seed, e) alone: the library's global generator is neither read nor
 * advanced, so resuming at (epoch, batch) sees exactly the order an
 * uninterrupted run sees, and each epoch has its own order.
 *
 * Buffers. Two slots, each with persistent x / y tensors for a full batch
 * and, when the last batch is short, a second pair of its size: the
 * steady state allocates nothing. Batch k is prepared in slot k % 2.
 * Without prefetch the caller's thread fills the slot in zg_loader_next;
 * with prefetch a worker fills the slot the caller is not using. A slot
 * moves FREE -> FILLING (worker) -> READY -> IN_USE (handed to the caller)
 * -> FREE (at the caller's next call); every change happens under the
 * mutex, and the data a slot holds is written only while it is FILLING,
 * by one thread, so the caller never reads a half-written batch. */
#include "data_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>

enum { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_IN_USE };

typedef struct {
    zg_tensor *x, *y;   /* a full batch */
    zg_tensor *xs, *ys; /* the short last batch (NULL when there is none) */
    zg_tensor *cx, *cy; /* the pair holding the current batch */
    int64_t batch;
    int state;
    int status;         /* of the fill: 0, or -1 with err */
    char err[600];
    uint8_t *pixels;    /* image files: one decoded sample */
    uint8_t *file;      /* and the file's bytes (file_cap, grown) */
    size_t file_cap;
} ld_slot;

struct zg_loader {
    const zg_dataset *ds;
    zg_loader_opts o;
    int64_t n, nb, short_b; /* samples, batches per epoch, size of a short last batch (0: none) */
    float lut[256];         /* byte -> normalised value */
    float *clut;            /* per channel: [C][256], for image files and normalised bytes (else NULL) */
    int64_t *order;         /* this epoch's sample order */
    int64_t epoch, pos;     /* pos: the next batch handed to the caller */
    ld_slot slot[2];
    int in_use; /* slot handed out by the last zg_loader_next, -1: none */
    double wait; /* seconds zg_loader_next has blocked for batches */

    /* Prefetch: everything below and the slot states are guarded by mu. */
    bool threaded;
    pthread_t worker;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t fill_next; /* the next batch the worker prepares */
    bool filling;      /* the worker is writing a slot (and reading order) */
    bool stop;
};

/* ---- the order ------------------------------------------------------------ */

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform in [0, n) without modulo bias: reject the lowest 2^64 mod n
 * values, so that every residue is hit equally often. */
static uint64_t below(uint64_t s[4], uint64_t n) {
    uint64_t threshold = (0 - n) % n;
    for (;;) {
        uint64_t r = xoshiro(s);
        if (r >= threshold) return r % n;
    }
}

void zg__permutation(int64_t *order, int64_t n, uint64_t seed, uint64_t key) {
    for (int64_t i = 0; i < n; i++) order[i] = i;
    /* The seed and the key pass through splitmix separately before they
     * meet, so nearby (seed, key) pairs give unrelated streams. */
    uint64_t a = seed, b = key ^ 0xD1B54A32D192ED03ull;
    uint64_t x = splitmix(&a) ^ rotl(splitmix(&b), 32);
    uint64_t s[4];
    for (int i = 0; i < 4; i++) s[i] = splitmix(&x);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)below(s, (uint64_t)i + 1);
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

static void make_order(zg_loader *ld, int64_t epoch) {
    if (ld->o.shuffle) zg__permutation(ld->order, ld->n, ld->o.seed, (uint64_t)epoch);
    else
        for (int64_t i = 0; i < ld->n; i++) ld->order[i] = i;
}

/* ---- filling a batch -------------------------------------------------------- */

/* Sample idx into xi as the model sees it: bytes through the lookup
 * table, image files decoded then looked up per channel, floats copied
 * (then normalised per feature when the data set says so). */
static int fill_sample(zg_loader *ld, ld_slot *sl, int64_t idx, float *xi) {
    const zg_dataset *ds = ld->ds;
    const int64_t m = ds->sample_numel, block = m / ds->shape[0];
    if (!ds->buf->samples) {
        if (zg__image_load(ds, idx, sl->pixels, &sl->file, &sl->file_cap, sl->err, sizeof sl->err)) return -1;
        for (int64_t j = 0; j < m; j++) xi[j] = ld->clut[(j / block) * 256 + sl->pixels[j]];
    } else if (ds->u8) {
        const uint8_t *src = (const uint8_t *)ds->buf->samples + idx * m;
        if (ld->clut)
            for (int64_t j = 0; j < m; j++) xi[j] = ld->clut[(j / block) * 256 + src[j]];
        else
            for (int64_t j = 0; j < m; j++) xi[j] = ld->lut[src[j]];
    } else {
        memcpy(xi, (const float *)ds->buf->samples + idx * m, (size_t)m * sizeof *xi);
        if (ds->norm_mean)
            for (int64_t j = 0; j < m; j++) xi[j] = (xi[j] - ds->norm_mean[j / block]) / ds->norm_std[j / block];
    }
    return 0;
}

/* Batch k into the slot: 0, or -1 with sl->err naming the sample that
 * failed (the slot then holds no batch). */
static int fill(zg_loader *ld, ld_slot *sl, int64_t k) {
    const zg_dataset *ds = ld->ds;
    int64_t start = k * ld->o.batch_size, b = ld->n - start;
    if (b > ld->o.batch_size) b = ld->o.batch_size;
    sl->cx = b == ld->o.batch_size ? sl->x : sl->xs;
    sl->cy = b == ld->o.batch_size ? sl->y : sl->ys;
    sl->batch = k;
    float *x = zg__f32(sl->cx);
    const int64_t m = ds->sample_numel;
    for (int64_t i = 0; i < b; i++) {
        int64_t idx = ld->order[start + i];
        if (fill_sample(ld, sl, idx, x + i * m)) return -1;
        if (ds->buf->targets) zg__f32(sl->cy)[i] = ds->buf->targets[idx];
        else zg__i64(sl->cy)[i] = ds->buf->labels ? ds->buf->labels[idx] : 0;
    }
    /* New contents: a graph that saved the old batch must notice. */
    zg__bump_version(sl->cx);
    zg__bump_version(sl->cy);
    return 0;
}

static void *worker_main(void *arg) {
    zg_loader *ld = arg;
    pthread_mutex_lock(&ld->mu);
    while (!ld->stop) {
        int64_t k = ld->fill_next;
        ld_slot *sl = &ld->slot[k % 2];
        if (k < ld->nb && sl->state == SLOT_FREE) {
            sl->state = SLOT_FILLING;
            ld->filling = true;
            pthread_mutex_unlock(&ld->mu);
            sl->status = fill(ld, sl, k);
            pthread_mutex_lock(&ld->mu);
            sl->state = SLOT_READY;
            ld->fill_next = k + 1;
            ld->filling = false;
            pthread_cond_broadcast(&ld->cv);
            continue;
        }
        pthread_cond_wait(&ld->cv, &ld->mu);
    }
    pthread_mutex_unlock(&ld->mu);
    return NULL;
}

/* ---- public API --------------------------------------------------------------- */

static void free_slots(zg_loader *ld) {
    for (int i = 0; i < 2; i++) {
        ld_slot *sl = &ld->slot[i];
        zg_tensor_free(sl->x);
        zg_tensor_free(sl->y);
        zg_tensor_free(sl->xs);
        zg_tensor_free(sl->ys);
        free(sl->pixels);
        free(sl->file);
    }
    free(ld->clut);
}

/* The slots' tensors (y: int64 [B], or float32 [B, 1] for regression) and,
 * for image files, a sample's pixels. A full-batch pair only when some
 * batch is full, a short pair only when the last batch is short: a
 * batch_size above the data set size costs nothing. */
static bool alloc_slots(zg_loader *ld) {
    const zg_dataset *ds = ld->ds;
    const zg_dtype yt = ds->buf->targets ? ZG_FLOAT32 : ZG_INT64;
    const int yd = ds->buf->targets ? 2 : 1;
    int64_t shape[ZG_MAX_DIMS], ys[2] = {0, 1};
    for (int i = 0; i < ds->ndim; i++) shape[i + 1] = ds->shape[i];
    bool ok = true;
    for (int i = 0; i < 2 && ok; i++) {
        ld_slot *sl = &ld->slot[i];
        sl->batch = -1;
        if (ld->n >= ld->o.batch_size) {
            shape[0] = ys[0] = ld->o.batch_size;
            sl->x = zg_tensor_new(ZG_FLOAT32, shape, ds->ndim + 1);
            sl->y = zg_tensor_new(yt, ys, yd);
            ok = sl->x && sl->y;
        }
        if (ok && ld->short_b) {
            shape[0] = ys[0] = ld->short_b;
            sl->xs = zg_tensor_new(ZG_FLOAT32, shape, ds->ndim + 1);
            sl->ys = zg_tensor_new(yt, ys, yd);
            ok = sl->xs && sl->ys;
        }
        if (ok && !ds->buf->samples) ok = (sl->pixels = zg__malloc((size_t)ds->sample_numel)) != NULL;
    }
    return ok;
}

/* Exactly torchvision's ToTensor then Normalize in float32: the loader's
 * mean and std for bytes, or the data set's per channel (image files and
 * normalised bytes; image files without one: plain v / 255). */
static bool make_luts(zg_loader *ld) {
    const zg_dataset *ds = ld->ds;
    for (int v = 0; v < 256; v++) ld->lut[v] = ((float)v / 255.0f - ld->o.mean) / ld->o.std;
    if (ds->buf->samples && !(ds->u8 && ds->norm_mean)) return true;
    const int64_t C = ds->shape[0];
    if (!(ld->clut = zg__malloc((size_t)C * 256 * sizeof *ld->clut))) return false;
    for (int64_t c = 0; c < C; c++) {
        const float m = ds->norm_mean ? ds->norm_mean[c] : 0.0f, sd = ds->norm_std ? ds->norm_std[c] : 1.0f;
        for (int v = 0; v < 256; v++) ld->clut[c * 256 + v] = ((float)v / 255.0f - m) / sd;
    }
    return true;
}

zg_loader *zg_loader_new(const zg_dataset *ds, const zg_loader_opts *opts) {
    const char *fn = "zg_loader_new";
    if (!ds) return zg__fail_null("%s: data set is NULL", fn);
    if (!opts) return zg__fail_null("%s: opts is NULL", fn);
    if (opts->batch_size < 1)
        return zg__fail_null("%s: batch_size %lld must be >= 1", fn, (long long)opts->batch_size);
    if (ds->u8 && !ds->norm_mean && (!(opts->std > 0) || !isfinite(opts->std) || !isfinite(opts->mean)))
        return zg__fail_null("%s: mean %g, std %g: uint8 samples become (v/255 - mean)/std, which needs a finite "
                             "mean and std > 0 (mean 0, std 1 for plain v/255)",
                             fn, opts->mean, opts->std);
    zg_loader *ld = zg__calloc(1, sizeof *ld);
    if (!ld) return zg__fail_null("%s: out of memory", fn);
    ld->ds = ds;
    ld->o = *opts;
    ld->n = ds->n;
    int64_t B = opts->batch_size;
    /* ceil(n / B) without n + B - 1, which overflows for a huge B. */
    ld->nb = ld->n / B + (!opts->drop_last && ld->n % B != 0);
    ld->short_b = opts->drop_last ? 0 : ld->n % B;
    ld->in_use = -1;
    ld->order = zg__malloc((size_t)ld->n * sizeof *ld->order);
    const bool tables = ld->order && make_luts(ld);
    if (!tables || !alloc_slots(ld)) {
        char why[256];
        snprintf(why, sizeof why, "%s", tables ? zg_last_error() : "out of memory");
        free_slots(ld);
        free(ld->order);
        free(ld);
        return zg__fail_null("%s: cannot allocate the batches of %lld samples (%s)", fn, (long long)B, why);
    }
    make_order(ld, 0);
    if (opts->prefetch) {
        if (pthread_mutex_init(&ld->mu, NULL) != 0) goto no_thread;
        if (pthread_cond_init(&ld->cv, NULL) != 0) {
            pthread_mutex_destroy(&ld->mu);
            goto no_thread;
        }
        if (pthread_create(&ld->worker, NULL, worker_main, ld) != 0) {
            pthread_cond_destroy(&ld->cv);
            pthread_mutex_destroy(&ld->mu);
            goto no_thread;
        }
        ld->threaded = true;
    }
    return ld;
no_thread:
    free_slots(ld);
    free(ld->order);
    free(ld);
    return zg__fail_null("%s: cannot start the prefetch thread", fn);
}

int zg_loader_start_epoch(zg_loader *ld, int64_t epoch, int64_t start_batch) {
    const char *fn = "zg_loader_start_epoch";
    if (!ld) return zg__fail(ZG_ERR_ARG, "%s: loader is NULL", fn);
    if (epoch < 0) return zg__fail(ZG_ERR_ARG, "%s: epoch %lld < 0", fn, (long long)epoch);
    if (start_batch < 0 || start_batch > ld->nb)
        return zg__fail(ZG_ERR_ARG, "%s: start_batch %lld out of range 0..%lld", fn, (long long)start_batch,
                        (long long)ld->nb);
    if (ld->threaded) {
        /* Let a batch in preparation finish (it reads the order), then
         * drop whatever was prepared for the old position. */
        pthread_mutex_lock(&ld->mu);
        while (ld->filling) pthread_cond_wait(&ld->cv, &ld->mu);
    }
    if (epoch != ld->epoch) make_order(ld, epoch);
    ld->epoch = epoch;
    ld->pos = start_batch;
    ld->in_use = -1;
    for (int i = 0; i < 2; i++) ld->slot[i].state = SLOT_FREE;
    if (ld->threaded) {
        ld->fill_next = start_batch;
        pthread_cond_broadcast(&ld->cv);
        pthread_mutex_unlock(&ld->mu);
    }
    return ZG_OK;
}

int64_t zg_loader_num_batches(const zg_loader *ld) {
    return ld ? ld->nb : zg__fail(ZG_ERR_ARG, "zg_loader_num_batches: loader is NULL");
}

double zg_loader_wait_seconds(const zg_loader *ld) {
    return ld ? ld->wait : zg__fail(ZG_ERR_ARG, "zg_loader_wait_seconds: loader is NULL");
}

int64_t zg_loader_position(const zg_loader *ld) {
    return ld ? ld->pos : zg__fail(ZG_ERR_ARG, "zg_loader_position: loader is NULL");
}

/* The worker has prepared the caller's next batch in sl (under mu). */
static bool batch_ready(const zg_loader *ld, const ld_slot *sl) { return sl->state == SLOT_READY && sl->batch == ld->pos; }

int zg_loader_next(zg_loader *ld, zg_tensor **x, zg_tensor **y) {
    if (!ld) return zg__fail(ZG_ERR_ARG, "zg_loader_next: loader is NULL");
    if (!x || !y) return zg__fail(ZG_ERR_ARG, "zg_loader_next: %s is NULL", x ? "y" : "x");
    if (ld->threaded) pthread_mutex_lock(&ld->mu);
    if (ld->in_use >= 0) ld->slot[ld->in_use].state = SLOT_FREE; /* the previous batch expires */
    ld->in_use = -1;
    if (ld->pos >= ld->nb) {
        if (ld->threaded) pthread_mutex_unlock(&ld->mu);
        *x = *y = NULL;
        return 0;
    }
    int i = (int)(ld->pos % 2);
    ld_slot *sl = &ld->slot[i];
    /* The caller waits for a batch not prepared yet (without prefetch:
     * always, for the whole preparation). */
    if (ld->threaded) {
        pthread_cond_broadcast(&ld->cv); /* the freed slot may be refilled */
        if (!batch_ready(ld, sl)) {
            const double t0 = zg__now();
            while (!batch_ready(ld, sl)) pthread_cond_wait(&ld->cv, &ld->mu);
            ld->wait += zg__now() - t0;
        }
    } else {
        const double t0 = zg__now();
        sl->status = fill(ld, sl, ld->pos);
        ld->wait += zg__now() - t0;
    }
    sl->state = SLOT_IN_USE;
    ld->in_use = i;
    ld->pos++;
    const int status = sl->status;
    *x = status ? NULL : sl->cx;
    *y = status ? NULL : sl->cy;
    if (ld->threaded) pthread_mutex_unlock(&ld->mu);
    /* The error is set on the caller's thread (messages are per thread). */
    if (status) return zg__fail(ZG_ERR_FORMAT, "zg_loader_next: batch %lld: %s", (long long)ld->pos - 1, sl->err);
    return 1;
}

void zg_loader_free(zg_loader *ld) {
    if (!ld) return;
    if (ld->threaded) {
        pthread_mutex_lock(&ld->mu);
        ld->stop = true;
        pthread_cond_broadcast(&ld->cv);
        pthread_mutex_unlock(&ld->mu);
        pthread_join(ld->worker, NULL);
        pthread_cond_destroy(&ld->cv);
        pthread_mutex_destroy(&ld->mu);
    }
    free_slots(ld);
    free(ld->order);
    free(ld);
}
