/* Gradient buckets: which parameters share an all-reduce, their launch in
 * order, and the wait for them. */
#include "ddp_internal.h"

#ifdef ZG_HAVE_MPI
#include <stdlib.h>
#include <string.h>

void zg__ddp_free_buckets(zg_ddp *d) {
    for (int b = 0; b < d->n_buckets; b++) {
        free(d->buckets[b].idx);
        free(d->buckets[b].off);
        free(d->buckets[b].data);
    }
    free(d->buckets);
    d->buckets = NULL;
    d->n_buckets = 0;
}

/* How many buckets `order` makes, and each parameter's bucket (into
 * bucket_of): PyTorch's assignment by size, the first cap for the first
 * bucket, the second for the rest; a bucket closes once its bytes reach
 * the cap, so a parameter larger than the cap has a bucket to itself. */
static int assign(const zg_ddp *d, const int *order, int *bucket_of) {
    const double first = d->o.first_bucket_cap_mb * 1048576.0, cap = d->o.bucket_cap_mb * 1048576.0;
    int nb = 0;
    bool open = false;
    double bytes = 0;
    for (int k = 0; k < d->n_params; k++) {
        bucket_of[order[k]] = nb;
        open = true;
        bytes += (double)zg_tensor_numel(d->params[order[k]]) * sizeof(float);
        if (bytes >= (nb == 0 ? first : cap)) {
            nb++;
            bytes = 0;
            open = false;
        }
    }
    return open ? nb + 1 : nb;
}

/* Fills buckets[0..nb) from order and bucket_of (already assigned). */
static int fill(zg_ddp *d, const int *order, zg__bucket *bk, int nb, const int *bucket_of, int *slot_of) {
    for (int k = 0; k < d->n_params; k++) bk[bucket_of[order[k]]].n++;
    for (int b = 0; b < nb; b++) {
        bk[b].idx = zg__malloc((size_t)(bk[b].n ? bk[b].n : 1) * sizeof *bk[b].idx);
        bk[b].off = zg__malloc((size_t)(bk[b].n ? bk[b].n : 1) * sizeof *bk[b].off);
        if (!bk[b].idx || !bk[b].off) return ZG_ERR_NOMEM;
        bk[b].n = 0;
    }
    for (int k = 0; k < d->n_params; k++) {
        const int i = order[k];
        zg__bucket *b = &bk[bucket_of[i]];
        slot_of[i] = b->n;
        b->idx[b->n] = i;
        b->off[b->n++] = b->numel;
        b->numel += zg_tensor_numel(d->params[i]);
    }
    for (int b = 0; b < nb; b++) {
        bk[b].data = zg__calloc((size_t)(bk[b].numel ? bk[b].numel : 1), sizeof(float));
        if (!bk[b].data) return ZG_ERR_NOMEM;
        bk[b].storage = (zg__storage){.data = bk[b].data, .nbytes = (size_t)bk[b].numel * sizeof(float)};
        bk[b].req = MPI_REQUEST_NULL;
    }
    return ZG_OK;
}

int zg__ddp_build_buckets(zg_ddp *d, const int *order) {
    int *bucket_of = zg__malloc((size_t)d->n_params * sizeof *bucket_of);
    int *slot_of = zg__malloc((size_t)d->n_params * sizeof *slot_of);
    zg__bucket *bk = NULL;
    int nb = 0, rc = ZG_ERR_NOMEM;
    if (bucket_of && slot_of) {
        nb = assign(d, order, bucket_of);
        bk = zg__calloc((size_t)nb, sizeof *bk);
        if (bk) rc = fill(d, order, bk, nb, bucket_of, slot_of);
    }
    /* A rebuild moves the .grad views into the new buckets. */
    if (!rc && d->views_attached) rc = zg__ddp_attach_views(d, bk, bucket_of, slot_of);
    if (rc) {
        zg_ddp old = {.n_buckets = bk ? nb : 0, .buckets = bk};
        zg__ddp_free_buckets(&old);
        free(bucket_of);
        free(slot_of);
        return zg__fail(ZG_ERR_NOMEM, "zg_ddp: out of memory building the gradient buckets");
    }
    zg__ddp_free_buckets(d);
    free(d->bucket_of);
    free(d->slot_of);
    d->buckets = bk;
    d->n_buckets = nb;
    d->bucket_of = bucket_of;
    d->slot_of = slot_of;
    d->st.num_buckets = nb;
    return ZG_OK;
}

int zg__ddp_launch_ready(zg_ddp *d) {
    while (d->next_bucket < d->n_buckets && d->buckets[d->next_bucket].pending == 0) {
        if (d->next_bucket == 0) d->first_launch = MPI_Wtime();
        zg__bucket *b = &d->buckets[d->next_bucket++];
        int rc = MPI_Iallreduce(MPI_IN_PLACE, b->data, (int)b->numel, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &b->req);
        if (rc != MPI_SUCCESS) return zg__dist_mpi_fail("zg_backward (DDP)", "MPI_Iallreduce", rc);
        b->launched = true;
        d->st.allreduces++;
        d->st.allreduce_bytes += b->numel * (int64_t)sizeof(float);
        if (d->n_ready < d->n_params) d->st.allreduces_overlapped++;
    }
    return ZG_OK;
}

/* Called when backward's compute is over: the time since the first launch
 * overlapped it; what follows is exposed. */
int zg__ddp_wait_all(zg_ddp *d) {
    const double t0 = MPI_Wtime();
    const bool any = d->n_buckets > 0 && d->buckets[0].launched;
    for (int b = 0; b < d->n_buckets; b++) {
        if (!d->buckets[b].launched) continue;
        int rc = zg__dist_wait(&d->buckets[b].req, "zg_backward (DDP)");
        if (rc != MPI_SUCCESS) return zg__dist_mpi_fail("zg_backward (DDP)", "MPI_Wait", rc);
        d->buckets[b].launched = false;
    }
    const double t1 = MPI_Wtime();
    d->st.wait_seconds += t1 - t0;
    if (any) {
        d->st.comm_seconds += t1 - d->first_launch;
        d->st.overlap_seconds += t0 - d->first_launch;
    }
    return ZG_OK;
}
#endif
