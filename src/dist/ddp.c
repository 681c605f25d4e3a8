/* DistributedDataParallel (see zgrad.h and docs/distributed.md): the
 * construction (shape check, state from rank 0, buckets, hooks), the
 * gradient hook that fills the buckets and starts their all-reduces, the
 * end-of-backward callback that waits and writes the averages back into
 * .grad, and the start of each iteration (zg_ddp_before_forward). */
#include "ddp_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

zg_ddp_options zg_ddp_default_options(void) {
    return (zg_ddp_options){.bucket_cap_mb = 25, .first_bucket_cap_mb = 1, .broadcast_buffers = true};
}

#ifdef ZG_HAVE_MPI

/* Every live zg_ddp, so that zg__ddp_of_param can find the one a
 * parameter belongs to (zg_accum drives no_sync by itself). MPI is
 * FUNNELED: one thread makes these calls. */
static zg_ddp *live[16];
static int n_live;

zg_ddp *zg__ddp_of_param(const zg_tensor *p) {
    for (int k = 0; k < n_live; k++)
        if (zg_ddp_has_param(live[k], p)) return live[k];
    return NULL;
}

/* ---- construction --------------------------------------------------------- */

static int check_options(const zg_ddp_options *o) {
    const char *fn = "zg_ddp_new";
    if (!(o->bucket_cap_mb > 0) || !isfinite(o->bucket_cap_mb) || !(o->first_bucket_cap_mb > 0) ||
        !isfinite(o->first_bucket_cap_mb))
        return zg__fail(ZG_ERR_ARG, "%s: bucket_cap_mb and first_bucket_cap_mb must be finite and > 0 (got %g, %g)",
                        fn, o->bucket_cap_mb, o->first_bucket_cap_mb);
    return ZG_OK;
}

/* One rank's shapes as int64s: n_params, n_buffers, then per tensor
 * (parameters, then buffers) its dtype, ndim and sizes. */
static int64_t *shape_signature(const zg_ddp *d, int *len) {
    int n = 2;
    for (int i = 0; i < d->n_params + d->n_buffers; i++) {
        const zg_tensor *t = i < d->n_params ? d->params[i] : d->buffers[i - d->n_params];
        n += 2 + zg_tensor_ndim(t);
    }
    int64_t *s = zg__malloc((size_t)n * sizeof *s);
    if (!s) return NULL;
    int k = 0;
    s[k++] = d->n_params;
    s[k++] = d->n_buffers;
    for (int i = 0; i < d->n_params + d->n_buffers; i++) {
        const zg_tensor *t = i < d->n_params ? d->params[i] : d->buffers[i - d->n_params];
        s[k++] = zg_tensor_dtype(t);
        s[k++] = zg_tensor_ndim(t);
        for (int j = 0; j < zg_tensor_ndim(t); j++) s[k++] = zg_tensor_shape(t)[j];
    }
    *len = n;
    return s;
}

/* "[2,3]" of a signature entry at s (dtype, ndim, sizes). */
static void sig_shape(const int64_t *s, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "%s[", s[0] == ZG_INT64 ? "int64" : "");
    for (int64_t j = 0; j < s[1] && k < n; j++) k += (size_t)snprintf(buf + k, n - k, j ? ",%lld" : "%lld", (long long)s[2 + j]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* The first difference between rank r's signature and rank 0's, as an
 * error (every rank finds the same one). */
static int report_mismatch(const zg_ddp *d, const int64_t *s0, const int64_t *sr, int r, int len0, int lenr) {
    const char *fn = "zg_ddp_new";
    if (s0[0] != sr[0] || s0[1] != sr[1])
        return zg__fail(ZG_ERR_SHAPE,
                        "%s: rank 0 has %lld parameters and %lld buffers, rank %d has %lld and %lld: every rank must "
                        "build the same model before wrapping it",
                        fn, (long long)s0[0], (long long)s0[1], r, (long long)sr[0], (long long)sr[1]);
    int a = 2, b = 2;
    for (int i = 0; a < len0 && b < lenr; i++) {
        if (s0[a] != sr[b] || s0[a + 1] != sr[b + 1] || memcmp(s0 + a + 2, sr + b + 2, (size_t)s0[a + 1] * 8) != 0) {
            char x[160], y[160];
            sig_shape(s0 + a, x, sizeof x);
            sig_shape(sr + b, y, sizeof y);
            const bool is_param = i < d->n_params;
            const int k = is_param ? i : i - d->n_params;
            return zg__fail(ZG_ERR_SHAPE,
                            "%s: %s %d ('%s') has shape %s on rank 0 but %s on rank %d: every rank must build the "
                            "same model (same sizes, same order) before wrapping it",
                            fn, is_param ? "parameter" : "buffer", k,
                            is_param ? zg_module_param_name(d->m, k) : zg_module_buffer_name(d->m, k), x, y, r);
        }
        a += 2 + (int)s0[a + 1];
        b += 2 + (int)sr[b + 1];
    }
    return ZG_OK;
}

/* Collective: every rank's shapes, compared with rank 0's. */
static int check_shapes(const zg_ddp *d) {
    const char *fn = "zg_ddp_new";
    int len = 0;
    int64_t *mine = shape_signature(d, &len);
    int *lens = zg__malloc((size_t)d->world * sizeof *lens);
    int *displ = zg__malloc((size_t)d->world * sizeof *displ);
    int ok = mine && lens && displ;
    int rc = zg__dist_allreduce_int(fn, &ok, 1, MPI_MIN);
    int64_t *all = NULL;
    if (!rc && !ok) rc = zg__fail(ZG_ERR_NOMEM, "%s: out of memory (on this rank or another)", fn);
    if (!rc) rc = MPI_Allgather(&len, 1, MPI_INT, lens, 1, MPI_INT, MPI_COMM_WORLD) == MPI_SUCCESS ? ZG_OK
                      : zg__fail(ZG_ERR_STATE, "%s: MPI_Allgather failed", fn);
    int total = 0;
    for (int r = 0; !rc && r < d->world; r++) {
        displ[r] = total;
        total += lens[r];
    }
    if (!rc && !(all = zg__malloc((size_t)total * sizeof *all))) rc = zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    /* Each rank may fail the malloc alone: agree before the next collective. */
    ok = rc == ZG_OK;
    if (zg__dist_allreduce_int(fn, &ok, 1, MPI_MIN) == ZG_OK && ok && !rc) {
        rc = MPI_Allgatherv(mine, len, MPI_INT64_T, all, lens, displ, MPI_INT64_T, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) rc = zg__dist_mpi_fail(fn, "MPI_Allgatherv", rc);
        for (int r = 1; !rc && r < d->world; r++)
            rc = report_mismatch(d, all, all + displ[r], r, lens[0], lens[r]);
    } else if (!rc) {
        rc = zg__fail(ZG_ERR_NOMEM, "%s: out of memory on another rank", fn);
    }
    free(mine);
    free(lens);
    free(displ);
    free(all);
    return rc;
}

int zg__ddp_broadcast_state(zg_ddp *d, int root, bool params, bool buffers) {
    for (int i = 0; params && i < d->n_params; i++) {
        int rc = zg_dist_broadcast(zg_tensor_data(d->params[i]), (size_t)zg_tensor_numel(d->params[i]) * 4, root);
        if (rc) return rc;
    }
    for (int i = 0; buffers && i < d->n_buffers; i++) {
        zg_tensor *t = d->buffers[i];
        int rc = zg_dist_broadcast(t->storage->data, (size_t)t->numel * zg__dtype_size(t->dtype), root);
        if (rc) return rc;
    }
    return ZG_OK;
}

static void free_arrays(zg_ddp *d) {
    zg__ddp_free_buckets(d);
    free(d->params);
    free(d->buffers);
    free(d->ctx);
    free(d->bucket_of);
    free(d->slot_of);
    free(d->ready);
    free(d->used);
    free(d->ready_order);
    free(d);
}

/* The module's tensors and every per-parameter array. */
static zg_ddp *alloc_ddp(zg_module *m, const zg_ddp_options *o) {
    const int np = zg_module_num_params(m), nb = zg_module_num_buffers(m);
    zg_ddp *d = zg__calloc(1, sizeof *d);
    if (!d) return NULL;
    d->m = m;
    d->o = *o;
    d->n_params = np;
    d->n_buffers = nb;
    d->params = zg__calloc((size_t)np, sizeof *d->params);
    d->buffers = zg__calloc((size_t)(nb ? nb : 1), sizeof *d->buffers);
    d->ctx = zg__calloc((size_t)np, sizeof *d->ctx);
    d->ready = zg__calloc((size_t)np, sizeof *d->ready);
    d->used = zg__calloc((size_t)np, sizeof *d->used);
    d->ready_order = zg__calloc((size_t)np, sizeof *d->ready_order);
    if (!d->params || !d->buffers || !d->ctx || !d->ready || !d->used || !d->ready_order) {
        free_arrays(d);
        return NULL;
    }
    for (int i = 0; i < np; i++) d->params[i] = zg_module_param(m, i);
    for (int i = 0; i < nb; i++) d->buffers[i] = zg_module_buffer(m, i);
    d->rank = zg_dist_rank();
    d->world = zg_dist_world_size();
    d->require_sync = true;
    d->forward_param_sync = true;
    return d;
}

static int on_grad_ready(zg_tensor *leaf, void *user);

static int register_hooks(zg_ddp *d) {
    for (int i = 0; i < d->n_params; i++) {
        d->ctx[i] = (zg__ddp_hook_ctx){d, i};
        int rc = zg_tensor_register_post_accumulate_hook(d->params[i], on_grad_ready, &d->ctx[i]);
        if (rc) {
            while (i-- > 0) zg_tensor_remove_post_accumulate_hook(d->params[i], on_grad_ready, &d->ctx[i]);
            return rc;
        }
    }
    return ZG_OK;
}

/* Local checks of the module: parameters to reduce, all float32 leaves. */
static int check_module(zg_module *m) {
    const char *fn = "zg_ddp_new";
    const int np = zg_module_num_params(m);
    if (np == 0)
        return zg__fail(ZG_ERR_ARG, "%s: the module has no parameters: data parallel training needs parameters "
                                    "that require grad", fn);
    for (int i = 0; i < np; i++) {
        const zg_tensor *p = zg_module_param(m, i);
        if (!zg_tensor_requires_grad(p) || zg_tensor_dtype(p) != ZG_FLOAT32)
            return zg__fail(ZG_ERR_ARG, "%s: parameter '%s' is not a float32 tensor that requires grad", fn,
                            zg_module_param_name(m, i));
    }
    return ZG_OK;
}

zg_ddp *zg_ddp_new(zg_module *m, const zg_ddp_options *opts) {
    const char *fn = "zg_ddp_new";
    zg_clear_error();
    if (!m) return zg__fail_null("%s: module is NULL", fn);
    const zg_ddp_options o = opts ? *opts : zg_ddp_default_options();
    if (check_options(&o) || zg__dist_require(fn) || check_module(m)) return NULL;
    zg_ddp *d = alloc_ddp(m, &o);
    int rc = d ? ZG_OK : zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    /* Buckets in the reverse order of registration: the order in which
     * backward usually finishes the gradients. */
    int *order = d ? zg__malloc((size_t)d->n_params * sizeof *order) : NULL;
    if (!rc && !order) rc = zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    for (int k = 0; !rc && k < d->n_params; k++) order[k] = d->n_params - 1 - k;
    if (!rc) rc = zg__ddp_build_buckets(d, order);
    free(order);
    if (d && !rc) rc = check_shapes(d); /* collective; every rank gets the same verdict */
    if (!rc) rc = zg__ddp_broadcast_state(d, 0, true, true);
    if (!rc && n_live == (int)(sizeof live / sizeof *live))
        rc = zg__fail(ZG_ERR_STATE, "%s: %d zg_ddp objects are alive already; free one first", fn, n_live);
    if (!rc) rc = register_hooks(d);
    if (!rc && o.gradient_as_bucket_view && (rc = zg__ddp_attach_views(d, d->buckets, d->bucket_of, d->slot_of)))
        for (int i = 0; i < d->n_params; i++)
            zg_tensor_remove_post_accumulate_hook(d->params[i], on_grad_ready, &d->ctx[i]);
    if (rc) {
        if (d) free_arrays(d);
        return NULL;
    }
    live[n_live++] = d;
    return d;
}

void zg_ddp_free(zg_ddp *d) {
    if (!d) return;
    /* Every rank started the same all-reduces: waiting ends them. */
    if (zg_dist_is_initialized()) zg__ddp_wait_all(d);
    zg__ddp_detach_views(d);
    for (int i = 0; i < d->n_params; i++) zg_tensor_remove_post_accumulate_hook(d->params[i], on_grad_ready, &d->ctx[i]);
    for (int k = 0; k < n_live; k++)
        if (live[k] == d) live[k] = live[--n_live];
    free_arrays(d);
}

/* ---- backward: hooks and the end ----------------------------------------- */

/* Parameter i's gradient into its bucket, averaged in DDP's two forms
 * (zeros when it has none: unused on this rank). Copied: times
 * 1/world_size, the double rounded to float, as PyTorch's mul_out with a
 * wrapped scalar. As a view (gradient_as_bucket_view), already in place:
 * divided by world_size, as PyTorch's div_. */
static void fill_slot(zg_ddp *d, int i, bool zeros) {
    zg__bucket *b = &d->buckets[d->bucket_of[i]];
    float *dst = b->data + b->off[d->slot_of[i]];
    const zg_tensor *p = d->params[i];
    if (zeros || !p->grad_defined) {
        memset(dst, 0, (size_t)p->numel * sizeof(float));
        return;
    }
    const float *g = zg__f32(p->grad);
    if (d->o.gradient_as_bucket_view) {
        const float w = (float)d->world;
        if (g != dst) memcpy(dst, g, (size_t)p->numel * sizeof(float)); /* .grad replaced since */
        for (int64_t k = 0; k < p->numel; k++) dst[k] = dst[k] / w;
        return;
    }
    const float s = (float)(1.0 / d->world);
    for (int64_t k = 0; k < p->numel; k++) dst[k] = g[k] * s;
}

static int mark_ready(zg_ddp *d, int i, bool got_grad) {
    fill_slot(d, i, !got_grad);
    d->ready[i] = true;
    d->n_ready++;
    d->buckets[d->bucket_of[i]].pending--;
    return zg__ddp_launch_ready(d);
}

/* Gives MPI a chance to progress the all-reduces in flight (Open MPI
 * moves a non-blocking collective only inside MPI calls). */
static void poll(zg_ddp *d) {
    for (int b = 0; b < d->next_bucket; b++) {
        if (!d->buckets[b].launched || d->buckets[b].req == MPI_REQUEST_NULL) continue;
        int done = 0;
        MPI_Test(&d->buckets[b].req, &done, MPI_STATUS_IGNORE);
    }
}

static int end_of_backward(void *user);

static int on_grad_ready(zg_tensor *leaf, void *user) {
    (void)leaf;
    zg__ddp_hook_ctx *c = user;
    zg_ddp *d = c->d;
    if (!d->armed) return ZG_OK; /* no_sync, or no zg_ddp_before_forward */
    if (d->ready[c->i])
        return zg__fail(ZG_ERR_STATE,
                        "zg_backward (DDP): parameter '%s' got a second gradient in one iteration: its reduction "
                        "already started. Call zg_ddp_before_forward before each forward, and do one backward per "
                        "forward (or turn sync off with zg_ddp_set_require_sync for the earlier backwards)",
                        zg_module_param_name(d->m, c->i));
    if (!d->end_queued) {
        int rc = zg_autograd_queue_callback(end_of_backward, d);
        if (rc) return rc;
        d->end_queued = true;
    }
    if (!d->rebuilt && d->n_order < d->n_params) d->ready_order[d->n_order++] = c->i;
    d->used[c->i] = 1;
    int rc = mark_ready(d, c->i, true);
    poll(d);
    return rc;
}

/* find_unused_parameters: which parameters some rank used. */
int zg__ddp_agree_on_used(zg_ddp *d) {
    return zg__dist_allreduce_int("zg_backward (DDP)", d->used, d->n_params, MPI_MAX);
}

/* The averages back into .grad; with skip_unused, a parameter unused on
 * every rank keeps its .grad as it was. */
static int write_back(zg_ddp *d, bool skip_unused) {
    for (int i = 0; i < d->n_params; i++) {
        if (skip_unused && !d->used[i]) continue;
        zg_tensor *p = d->params[i];
        const bool view = zg__ddp_grad_is_view(d, i); /* the average is in .grad already */
        if (!view && (!p->grad || !zg__same_shape(p->grad, p))) {
            zg_tensor *g = zg_tensor_new(ZG_FLOAT32, p->shape, p->ndim);
            if (!g) return zg__fail(ZG_ERR_NOMEM, "zg_backward (DDP): out of memory");
            zg_tensor_free(p->grad);
            p->grad = g;
        }
        const zg__bucket *b = &d->buckets[d->bucket_of[i]];
        if (!view) memcpy(zg__f32(p->grad), b->data + b->off[d->slot_of[i]], (size_t)p->numel * sizeof(float));
        if (!p->grad_defined) {
            p->grad_defined = true;
            zg__emit_accumulate(p); /* event: the leaf gets fresh grads (from the other ranks) */
        }
        zg__bump_version(p->grad);
    }
    return ZG_OK;
}

static int end_of_backward(void *user) {
    zg_ddp *d = user;
    d->end_queued = false;
    d->armed = false;
    int rc = ZG_OK;
    for (int i = 0; d->o.find_unused_parameters && !rc && i < d->n_params; i++)
        if (!d->ready[i]) rc = mark_ready(d, i, false);
    if (rc) return rc;
    if (d->next_bucket < d->n_buckets) {
        /* Without find_unused_parameters some parameter got no gradient:
         * its bucket never completes. The next forward reports it, as
         * PyTorch does. */
        d->unfinished = true;
        return ZG_OK;
    }
    if (d->o.find_unused_parameters && (rc = zg__ddp_agree_on_used(d))) return rc;
    if ((rc = zg__ddp_wait_all(d)) || (rc = write_back(d, d->o.find_unused_parameters))) return rc;
    d->st.reductions++;
    if (!d->rebuilt && !d->o.find_unused_parameters && d->n_order == d->n_params) d->rebuild_pending = true;
    return ZG_OK;
}

/* ---- the start of an iteration ------------------------------------------- */

static int unfinished_error(const zg_ddp *d) {
    char names[512] = "";
    size_t k = 0;
    int n = 0;
    for (int i = 0; i < d->n_params; i++) {
        if (d->ready[i]) continue;
        if (n++ < 6 && k < sizeof names)
            k += (size_t)snprintf(names + k, sizeof names - k, "%s'%s'", n > 1 ? ", " : "", zg_module_param_name(d->m, i));
    }
    return zg__fail(ZG_ERR_STATE,
                    "zg_ddp_before_forward: expected to have finished reduction in the prior iteration before "
                    "starting a new one: %d parameter(s) received no gradient in the last backward (%s%s). The "
                    "module has parameters that were not used in producing the loss: pass find_unused_parameters = "
                    "true to zg_ddp_new, or make every parameter take part in the loss on every rank",
                    n, names, n > 6 ? ", ..." : "");
}

/* Rank 0's ready order for every rank, then buckets in that order. */
static int rebuild(zg_ddp *d) {
    int rc = zg_dist_broadcast(d->ready_order, (size_t)d->n_params * sizeof(int), 0);
    if (!rc) rc = zg__ddp_build_buckets(d, d->ready_order);
    d->rebuild_pending = false;
    d->rebuilt = true;
    return rc;
}

int zg__ddp_iteration_start(zg_ddp *d, bool sync_buffers, int buffer_root) {
    int rc = ZG_OK;
    if (d->rebuild_pending && (rc = rebuild(d))) return rc;
    if (sync_buffers && d->o.broadcast_buffers && d->n_buffers) rc = zg__ddp_broadcast_state(d, buffer_root, false, true);
    return rc;
}

/* Clears the iteration's marks and arms the hooks for one backward. */
void zg__ddp_arm(zg_ddp *d) {
    memset(d->ready, 0, (size_t)d->n_params * sizeof *d->ready);
    memset(d->used, 0, (size_t)d->n_params * sizeof *d->used);
    for (int b = 0; b < d->n_buckets; b++) d->buckets[b].pending = d->buckets[b].n;
    d->next_bucket = 0;
    d->n_ready = 0;
    d->armed = true;
}

int zg_ddp_before_forward(zg_ddp *d) {
    const char *fn = "zg_ddp_before_forward";
    if (!d) return zg__fail(ZG_ERR_ARG, "%s: NULL zg_ddp", fn);
    if (d->unfinished) return unfinished_error(d);
    if (d->end_queued)
        return zg__fail(ZG_ERR_STATE, "%s: the previous backward failed after its gradient reductions started; "
                                      "the ranks are out of step: end the run (zg_dist_abort)", fn);
    const bool sync = zg_grad_enabled() && d->require_sync;
    bool sync_buffers = d->forward_param_sync;
    int root = 0, rc = d->join_enabled ? zg__ddp_join_notify(d, sync, d->forward_param_sync, &root) : ZG_OK;
    if (d->join_enabled) sync_buffers = root >= 0;
    if (!rc) rc = zg__ddp_iteration_start(d, sync_buffers, root < 0 ? 0 : root);
    if (rc) return rc;
    d->forward_param_sync = sync;
    d->armed = false;
    if (sync) zg__ddp_arm(d);
    return ZG_OK;
}

zg_tensor *zg_ddp_forward(zg_ddp *d, zg_tensor *x) {
    if (zg_ddp_before_forward(d)) return NULL;
    return zg_module_forward(d->m, x);
}

int zg__ddp_mark_all(zg_ddp *d, bool zeros) {
    int rc = ZG_OK;
    for (int i = 0; i < d->n_params && !rc; i++) {
        d->used[i] = !zeros && d->params[i]->grad_defined;
        rc = mark_ready(d, i, d->used[i]);
    }
    return rc;
}

int zg_ddp_sync_gradients(zg_ddp *d) {
    const char *fn = "zg_ddp_sync_gradients";
    if (!d) return zg__fail(ZG_ERR_ARG, "%s: NULL zg_ddp", fn);
    if (d->unfinished || d->end_queued || (d->armed && d->n_ready > 0))
        return zg__fail(ZG_ERR_STATE, "%s: a reduction of a backward is unfinished; call it between iterations", fn);
    zg__ddp_arm(d);
    d->armed = false; /* no hook may join in */
    int rc = zg__ddp_mark_all(d, false);
    if (!rc) rc = zg__ddp_agree_on_used(d);
    if (!rc) rc = zg__ddp_wait_all(d);
    if (!rc) rc = write_back(d, true);
    if (!rc) d->st.reductions++;
    return rc;
}

/* ---- settings and counters ------------------------------------------------ */

int zg_ddp_set_require_sync(zg_ddp *d, bool require_sync) {
    if (!d) return zg__fail(ZG_ERR_ARG, "zg_ddp_set_require_sync: NULL zg_ddp");
    d->require_sync = require_sync;
    return ZG_OK;
}

bool zg_ddp_require_sync(const zg_ddp *d) { return d ? d->require_sync : true; }
zg_module *zg_ddp_module(const zg_ddp *d) { return d ? d->m : NULL; }

bool zg_ddp_has_param(const zg_ddp *d, const zg_tensor *p) {
    for (int i = 0; d && p && i < d->n_params; i++)
        if (d->params[i] == p) return true;
    return false;
}

int zg_ddp_get_stats(const zg_ddp *d, zg_ddp_stats *out) {
    if (!d || !out) return zg__fail(ZG_ERR_ARG, "zg_ddp_get_stats: NULL argument");
    *out = d->st;
    return ZG_OK;
}

void zg_ddp_reset_stats(zg_ddp *d) {
    if (!d) return;
    d->st = (zg_ddp_stats){.num_buckets = d->n_buckets};
}

int zg_ddp_bucket_params(const zg_ddp *d, int b, int *idx, int max) {
    if (!d || b < 0 || b >= d->n_buckets || (max > 0 && !idx))
        return zg__fail(ZG_ERR_ARG, "zg_ddp_bucket_params: no bucket %d (%d buckets)", b, d ? d->n_buckets : 0);
    const zg__bucket *bk = &d->buckets[b];
    for (int k = 0; k < bk->n && k < max; k++) idx[k] = bk->idx[k];
    return bk->n;
}
#endif
