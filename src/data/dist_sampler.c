/* The shard of each rank, as torch.utils.data.DistributedSampler cuts it:
 * the indices (a permutation, or 0..n-1) are padded by repeating them from
 * the start until the total divides by the world size (or cut to a
 * multiple of it with drop_last), then rank r takes every world-th one
 * from position r. The permutation is zgrad's own (zg__permutation seeded
 * from seed + epoch), not torch.randperm's. No MPI: every rank computes
 * its own shard from the same numbers. */
#include "data_internal.h"

#include <stdlib.h>

static int check(const char *fn, int64_t n, int rank, int world) {
    if (n < 0 || world < 1 || rank < 0 || rank >= world)
        return zg__fail(ZG_ERR_ARG, "%s: need n >= 0, world >= 1 and 0 <= rank < world (got n %lld, rank %d, world %d)",
                        fn, (long long)n, rank, world);
    return ZG_OK;
}

int64_t zg_dist_sampler_num_samples(int64_t n, int world, bool drop_last) {
    if (check("zg_dist_sampler_num_samples", n, 0, world)) return -1;
    /* drop_last with a remainder: floor(n / world) samples (PyTorch's
     * ceil((n - world) / world)); otherwise ceil(n / world). */
    if (drop_last && n % world) return n / world;
    return (n + world - 1) / world;
}

int zg_dist_sampler_shard(const int64_t *perm, int64_t n, int rank, int world, bool drop_last, int64_t *out) {
    const char *fn = "zg_dist_sampler_shard";
    int rc = check(fn, n, rank, world);
    if (rc) return rc;
    const int64_t per = zg_dist_sampler_num_samples(n, world, drop_last);
    if ((n > 0 && !perm) || (per > 0 && !out)) return zg__fail(ZG_ERR_ARG, "%s: NULL perm or out", fn);
    if (n == 0 && per > 0) return zg__fail(ZG_ERR_ARG, "%s: nothing to sample from", fn);
    /* Position k of the padded list is perm[k mod n]. */
    for (int64_t j = 0; j < per; j++) out[j] = perm[(rank + j * world) % n];
    return ZG_OK;
}

int zg_dist_sampler_indices(int64_t n, int rank, int world, uint64_t seed, int64_t epoch, bool shuffle, bool drop_last,
                            int64_t *out) {
    const char *fn = "zg_dist_sampler_indices";
    int rc = check(fn, n, rank, world);
    if (rc) return rc;
    int64_t *perm = zg__malloc((size_t)(n ? n : 1) * sizeof *perm);
    if (!perm) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    if (shuffle) zg__permutation(perm, n, seed + (uint64_t)epoch, 0);
    else
        for (int64_t i = 0; i < n; i++) perm[i] = i;
    rc = zg_dist_sampler_shard(perm, n, rank, world, drop_last, out);
    free(perm);
    return rc;
}
