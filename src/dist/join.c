/* Uneven inputs, as PyTorch's Join context manager with DDP's join hook
 * (divide_by_initial_world_size true, throw_on_early_termination false).
 * While join is on, each iteration of a rank that still has data starts
 * with one small all-reduce (MAX) of {active, sync, buffers, root}: a rank
 * out of data, waiting in zg_ddp_join_end, answers {0, 0, 0, -1} and learns
 * whether an iteration follows, whether its gradients are reduced and
 * whether buffers are broadcast, and from which rank (the highest active
 * one, whose model has had every step). It then makes the same collective
 * calls as the active ranks, in the same order, with zeros for its
 * gradients, so the average keeps its divisor, the initial world size.
 * When every rank has arrived, all take the final parameters and buffers
 * from the last rank to join. */
#include "ddp_internal.h"

#ifdef ZG_HAVE_MPI

int zg__ddp_join_notify(zg_ddp *d, bool sync, bool sync_buffers, int *buffer_root) {
    int v[4] = {1, sync, sync_buffers, sync_buffers ? d->rank : -1};
    int rc = zg__dist_allreduce_int("zg_ddp_before_forward (join)", v, 4, MPI_MAX);
    *buffer_root = v[2] ? v[3] : -1;
    return rc;
}

/* One iteration of the active ranks, shadowed: their gradient all-reduces
 * with zeros (and the used-parameter agreement). */
static int shadow_reduction(zg_ddp *d) {
    zg__ddp_arm(d);
    d->armed = false;
    int rc = zg__ddp_mark_all(d, true);
    if (!rc && d->o.find_unused_parameters) rc = zg__ddp_agree_on_used(d);
    if (!rc) rc = zg__ddp_wait_all(d);
    d->st.join_shadows += d->n_buckets;
    return rc;
}

int zg_ddp_join_begin(zg_ddp *d) {
    if (!d) return zg__fail(ZG_ERR_ARG, "zg_ddp_join_begin: NULL zg_ddp");
    if (d->join_enabled) return zg__fail(ZG_ERR_STATE, "zg_ddp_join_begin: join is on already; call zg_ddp_join_end");
    d->join_enabled = true;
    d->shadow_rounds = 0;
    return ZG_OK;
}

int zg_ddp_join_end(zg_ddp *d) {
    const char *fn = "zg_ddp_join_end";
    if (!d) return zg__fail(ZG_ERR_ARG, "%s: NULL zg_ddp", fn);
    if (!d->join_enabled) return zg__fail(ZG_ERR_STATE, "%s: join is off; call zg_ddp_join_begin before the loop", fn);
    if (d->unfinished || d->end_queued)
        return zg__fail(ZG_ERR_STATE, "%s: the last backward left its reduction unfinished", fn);
    int rc = ZG_OK;
    for (;;) {
        int v[4] = {0, 0, 0, -1};
        if ((rc = zg__dist_allreduce_int(fn, v, 4, MPI_MAX))) break;
        if (!v[0]) break; /* every rank is here */
        d->shadow_rounds++;
        rc = zg__ddp_iteration_start(d, v[2] > 0, v[3] < 0 ? 0 : v[3]);
        if (!rc && v[1]) rc = shadow_reduction(d);
        if (rc) break;
    }
    d->join_enabled = false;
    if (rc) return rc;
    /* The last rank to join (the highest of them) has had every step. */
    int root = d->shadow_rounds == 0 ? d->rank : -1;
    rc = zg__dist_allreduce_int(fn, &root, 1, MPI_MAX);
    if (!rc) rc = zg__ddp_broadcast_state(d, root, true, true);
    return rc;
}
#endif
