/* The distributed sampler (src/data/dist_sampler.c) against PyTorch 2.x's
 * own torch.utils.data.DistributedSampler, live
 * (tests/parity/dist_sampler_reference_torch2.py): the same shard sizes,
 * padding and positions for each (n, world, drop_last, rank). PyTorch's
 * shuffled order comes from torch.randperm, which zgrad does not
 * reproduce: the reference cuts the identity order, and a shard of a
 * permutation p is p taken at the identity shard's positions (checked here
 * for zgrad's own permutations). */
#include "harness.h"

#include <stdlib.h>

static FILE *reference(void) {
    FILE *c = popen("scripts/setup-torch2 --check 2>/dev/null", "r");
    char py[1024] = "";
    if (c && !fgets(py, sizeof py, c)) py[0] = 0;
    if (c && pclose(c) != 0) py[0] = 0;
    py[strcspn(py, "\n")] = 0;
    if (!py[0] || strchr(py, '\'')) {
        zgt_fail(__FILE__, __LINE__, "PyTorch 2.x is missing: run scripts/setup-torch2 (scripts/setup runs it)");
        return NULL;
    }
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "'%s' tests/parity/dist_sampler_reference_torch2.py", py);
    return popen(cmd, "r");
}

TEST(dist_sampler_shards_as_pytorch) {
    FILE *p = reference();
    if (!p) return;
    char line[4096];
    int cases = 0;
    while (fgets(line, sizeof line, p)) {
        long long n;
        int world, drop, rank, used = 0;
        if (sscanf(line, "%lld %d %d %d:%n", &n, &world, &drop, &rank, &used) != 4) {
            zgt_fail(__FILE__, __LINE__, "reference: %s", line);
            break;
        }
        int64_t want[64], got[64], k = 0;
        for (char *s = line + used, *e; k < 64; s = e, k++) {
            want[k] = strtoll(s, &e, 10);
            if (e == s) break;
        }
        CHECK(zg_dist_sampler_num_samples(n, world, drop) == k);
        CHECK_OK(zg_dist_sampler_indices(n, rank, world, 5, 0, false, drop, got)); /* no shuffle: 0..n-1 */
        for (int64_t j = 0; j < k; j++)
            if (got[j] != want[j]) {
                zgt_fail(__FILE__, __LINE__, "n %lld world %d drop_last %d rank %d: [%lld] = %lld, PyTorch %lld", n,
                         world, drop, rank, (long long)j, (long long)got[j], (long long)want[j]);
                break;
            }
        cases++;
    }
    CHECK(pclose(p) == 0);
    CHECK(cases == 47);
}

/* A shuffled epoch: every rank's shard is the permutation from seed +
 * epoch taken at the identity shard's positions; the shards cover 0..n-1
 * (n divisible by world: exactly once); another epoch reshuffles. */
TEST(dist_sampler_shuffles_from_seed_plus_epoch) {
    enum { N = 24, W = 3, PER = N / W };
    int64_t seen[N] = {0}, a[PER], b[PER], ident[N], shard[PER], perm[N];
    for (int i = 0; i < N; i++) ident[i] = i;
    int differ = 0;
    for (int r = 0; r < W; r++) {
        CHECK_OK(zg_dist_sampler_indices(N, r, W, 7, 2, true, false, a));
        CHECK_OK(zg_dist_sampler_indices(N, r, W, 8, 1, true, false, b)); /* seed + epoch equal */
        CHECK(memcmp(a, b, sizeof a) == 0);
        CHECK_OK(zg_dist_sampler_indices(N, r, W, 7, 3, true, false, b));
        differ += memcmp(a, b, sizeof a) != 0;
        for (int j = 0; j < PER; j++) seen[a[j]]++;
        /* The cut of the permutation: rank 0's shard of all ranks' union. */
        CHECK_OK(zg_dist_sampler_shard(ident, N, r, W, false, shard));
        for (int j = 0; j < PER; j++) perm[shard[j]] = a[j];
    }
    for (int i = 0; i < N; i++) CHECK(seen[i] == 1);
    CHECK(differ > 0);
    /* perm is the whole permutation: shard() of it gives the shards back. */
    CHECK_OK(zg_dist_sampler_shard(perm, N, 1, W, false, shard));
    CHECK_OK(zg_dist_sampler_indices(N, 1, W, 7, 2, true, false, a));
    CHECK(memcmp(shard, a, sizeof a) == 0);
    CHECK(zg_dist_sampler_num_samples(10, 0, false) < 0);
    CHECK_ERR(zg_dist_sampler_shard(ident, N, 3, W, false, shard), "0 <= rank < world");
}
