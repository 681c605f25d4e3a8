/* zgrad train --ddp's pieces: every rank draws the same global batch and
 * trains on its share; the shares' losses, flags and the checkpoint's
 * outcome are agreed over the world so that all ranks take the same
 * branch (docs/distributed.md, "The CLI"). */
#include "train_internal.h"

#include <math.h>
#include <stdlib.h>

int zg__train_any_rank(bool ddp, bool flag) {
    if (!ddp) return flag;
    double v = flag;
    int rc = zg_dist_allreduce_sum_f64(&v, 1);
    return rc ? rc : v > 0;
}

bool zg__train_root_flag(bool ddp, bool flag) {
    int v = flag;
    if (ddp && zg_dist_broadcast(&v, sizeof v, 0)) return true;
    return v != 0;
}

/* Rows [m r / W, m (r + 1) / W) of a global batch of m rows. A share's
 * loss is the mean over its rows and DDP averages the W shares'
 * gradients, so a share of n rows weighs n W / m to give the global
 * batch's mean. A rank with no rows (m < W) runs row 0 with weight 0. */
int zg__train_shard(int rank, int world, zg_tensor **x, zg_tensor **y, float *weight) {
    const int64_t m = zg_tensor_size(*x, 0);
    int64_t lo = m * rank / world, hi = m * (rank + 1) / world;
    *weight = (float)((double)(hi - lo) * world / (double)m);
    if (hi == lo) {
        lo = 0;
        hi = 1;
    }
    *x = zg_slice(*x, lo, hi);
    *y = zg_slice(*y, lo, hi);
    return *x && *y ? ZG_OK : ZG_ERR_NOMEM;
}

/* One all-reduce (sum) of {non-finite flag, loss x units, units}. */
int zg__train_agree_loss(double *loss, int64_t *units) {
    const bool finite = isfinite(*loss);
    double v[3] = {finite ? 0 : 1, finite ? *loss * (double)*units : 0, (double)*units};
    int rc = zg_dist_allreduce_sum_f64(v, 3);
    if (rc) return rc;
    if (v[0] > 0) {
        if (finite) *loss = NAN;
    } else {
        *loss = v[1] / v[2];
        *units = (int64_t)v[2];
    }
    return ZG_OK;
}

/* Each bucket is one all-reduce per step: its size is what
 * docs/distributed.md's projection needs. */
void zg__train_log_ddp(FILE *log, const zg_ddp *d, const zg_module *m, int world, int64_t batch) {
    fprintf(log, "zgrad train: ddp on %d ranks, batch %lld per rank (global batch %lld); gradient buckets (KiB):",
            world, (long long)batch, (long long)batch * world);
    zg_ddp_stats st;
    const int np = zg_module_num_params(m);
    int *idx = malloc((size_t)(np > 0 ? np : 1) * sizeof *idx);
    const int nb = !idx || zg_ddp_get_stats(d, &st) ? 0 : st.num_buckets;
    for (int b = 0; b < nb; b++) {
        int64_t numel = 0;
        const int n = zg_ddp_bucket_params(d, b, idx, np);
        for (int k = 0; k < n && k < np; k++) numel += zg_tensor_numel(zg_module_param(m, idx[k]));
        fprintf(log, " %.1f", (double)numel * sizeof(float) / 1024);
    }
    fprintf(log, nb ? "\n" : " unknown\n");
    free(idx);
}

int zg__train_ddp_world(double timeout, int *rank, int *world) {
    if (!zg_dist_available())
        return zg__fail(ZG_ERR_UNAVAILABLE, "zg_train_run: ddp needs zgrad built with MPI, and this build has none "
                        "(install libopenmpi-dev and rebuild without ZG_MPI=0)");
    if (!zg_dist_is_initialized())
        return zg__fail(ZG_ERR_STATE, "zg_train_run: ddp needs MPI initialised: call zg_dist_init first");
    int rc = zg_dist_set_timeout(timeout);
    if (rc) return rc;
    *rank = zg_dist_rank();
    *world = zg_dist_world_size();
    return ZG_OK;
}
