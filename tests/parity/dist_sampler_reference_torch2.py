"""The shards of torch.utils.data.DistributedSampler (PyTorch 2.x), printed
for tests/test_dist_sampler.c: one line per (n, world, drop_last, rank),
"n world drop_last rank: i i i ...", over the identity order (shuffle
False); the C side applies the same cut to a permutation of its own."""
import sys

from torch.utils.data.distributed import DistributedSampler

CASES = [(10, 3, False), (10, 3, True), (12, 4, False), (12, 4, True), (2, 3, False), (2, 3, True),
         (1, 4, False), (7, 7, True), (5, 2, False), (0, 2, False), (0, 2, True), (13, 5, False), (13, 5, True)]

for n, world, drop_last in CASES:
    for rank in range(world):
        s = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False, drop_last=drop_last)
        idx = list(iter(s))
        assert len(idx) == len(s)
        print(f"{n} {world} {int(drop_last)} {rank}:", " ".join(str(i) for i in idx))
sys.stdout.flush()
