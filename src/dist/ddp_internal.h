/* The state of a zg_ddp, shared by ddp.c (construction, forward, hooks,
 * the end of backward), bucket.c (bucket assignment) and join.c (uneven
 * inputs). Only with MPI. */
#ifndef ZG_DDP_INTERNAL_H
#define ZG_DDP_INTERNAL_H

#include "dist_internal.h"

/* The live zg_ddp that wraps parameter p, or NULL (always NULL without
 * MPI). */
zg_ddp *zg__ddp_of_param(const zg_tensor *p);

#ifdef ZG_HAVE_MPI
/* A bucket: consecutive gradients, in bucket order, reduced by one
 * MPI_Iallreduce. */
typedef struct {
    int n;          /* parameters in it */
    int *idx;       /* their indices (zg_module_param order) */
    int64_t *off;   /* each one's first element in data */
    int64_t numel;
    float *data;
    zg__storage storage; /* data as a storage: gradient_as_bucket_view's .grad views share it */
    int pending;    /* parameters not yet ready in this iteration */
    bool launched;  /* its all-reduce started in this iteration */
    MPI_Request req;
} zg__bucket;

typedef struct {
    struct zg_ddp *d;
    int i;
} zg__ddp_hook_ctx;

struct zg_ddp {
    zg_module *m;
    zg_ddp_options o;
    int rank, world;
    int n_params, n_buffers;
    zg_tensor **params, **buffers;
    zg__ddp_hook_ctx *ctx; /* one per parameter: the hook's user pointer */
    int n_buckets;
    zg__bucket *buckets;
    int *bucket_of; /* parameter -> its bucket */
    int *slot_of;   /* parameter -> its place in that bucket */

    /* The iteration: armed by zg_ddp_before_forward for one backward. */
    bool armed;
    bool end_queued;   /* the end-of-backward callback is queued */
    bool *ready;       /* parameter marked ready (its gradient is in its bucket) */
    int *used;         /* parameter got a gradient on this rank (then all-reduced: on any) */
    int n_ready;       /* parameters marked ready so far */
    int next_bucket;   /* buckets launch in order: the next one to launch */
    double first_launch; /* MPI_Wtime when this iteration's first all-reduce started */
    bool unfinished;   /* the last backward left parameters without gradient */
    bool require_sync;
    bool forward_param_sync; /* broadcast buffers at the next forward (PyTorch's require_forward_param_sync) */

    /* Bucket rebuild: the order gradients became ready in the first
     * reducing backward. */
    int *ready_order;
    int n_order;
    bool rebuild_pending, rebuilt;

    /* gradient_as_bucket_view: each .grad is a view of its bucket (view.c). */
    bool views_attached;

    /* Join (uneven inputs): see join.c. */
    bool join_enabled;
    int shadow_rounds; /* iterations of others this rank shadowed in zg_ddp_join_end */

    zg_ddp_stats st;
};

/* Assigns the parameters, taken in `order`, to buckets (the first holding
 * up to first_bucket_cap_mb, the rest bucket_cap_mb: a bucket closes once
 * it reaches its cap) and allocates their data; replaces d's buckets. */
int zg__ddp_build_buckets(zg_ddp *d, const int *order);
void zg__ddp_free_buckets(zg_ddp *d);
/* gradient_as_bucket_view (view.c): makes every parameter's .grad a view
 * of its slot in the buckets bk (bucket_of, slot_of), carrying the values
 * over; all or nothing. */
int zg__ddp_attach_views(zg_ddp *d, zg__bucket *bk, const int *bucket_of, const int *slot_of);
/* Gives each parameter a .grad of its own again (for zg_ddp_free). */
void zg__ddp_detach_views(zg_ddp *d);
/* Whether p's .grad is its slot of the buckets. */
bool zg__ddp_grad_is_view(const zg_ddp *d, int i);
/* Starts the all-reduce of every bucket that is complete, in bucket order
 * (every rank must start them in the same order). One started while some
 * gradient is still to come counts as overlapped. */
int zg__ddp_launch_ready(zg_ddp *d);
/* Waits for every launched bucket's all-reduce (timing the wait). */
int zg__ddp_wait_all(zg_ddp *d);
/* In join mode, an active rank's half of the agreement at the start of
 * each iteration (join.c): tells the joined ranks what to shadow, and
 * gives the rank whose buffers every rank takes. */
int zg__ddp_join_notify(zg_ddp *d, bool sync, bool sync_buffers, int *buffer_root);
/* Marks every parameter ready (zeros where it has no gradient) and so
 * starts every bucket's all-reduce (ddp.c). */
int zg__ddp_mark_all(zg_ddp *d, bool zeros);
/* Clears the iteration's marks and arms the buckets (ddp.c). */
void zg__ddp_arm(zg_ddp *d);
/* The find_unused_parameters agreement on which parameters were used. */
int zg__ddp_agree_on_used(zg_ddp *d);
/* What every rank does at the start of an iteration, before the forward:
 * the bucket rebuild, the buffer broadcast from `buffer_root`. */
int zg__ddp_iteration_start(zg_ddp *d, bool sync_buffers, int buffer_root);
/* rank 0's (root's) parameters and buffers to every rank. */
int zg__ddp_broadcast_state(zg_ddp *d, int root, bool params, bool buffers);
#endif

#endif
