#!/usr/bin/env python3
"""PyTorch 2.x DistributedDataParallel on CPU (gloo, 2 processes) for
tests/test_dist.c's live parity case.

Usage: PYTHON tests/parity/ddp_reference_torch2.py OUTDIR, PYTHON being
PyTorch 2.x's (tests/reference.c runs every *_torch2.py with it).

Writes OUTDIR/ddp_torch2.safetensors:

  init.<j>        the initial parameters of Linear(12, 16), ReLU,
                  Linear(16, 5) (j = 0.weight, 0.bias, 2.weight, 2.bias)
  x, y            the data: x [20, 16, 12] float, y [20, 16] classes; at
                  step s rank r takes rows 8 r .. 8 r + 7 of x[s], y[s]
  final.<j>       rank 0's parameters after 20 steps of DDP (default
                  options) with SGD(lr 0.1, momentum 0.9) on
                  cross_entropy; rank 1's are checked to be equal
"""
import os
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import write_safetensors  # noqa: E402

STEPS, B, WORLD = 20, 8, 2


def model():
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 5))


def data():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(STEPS, WORLD * B, 12, generator=g)
    y = torch.randint(0, 5, (STEPS, WORLD * B), generator=g)
    return x, y


def worker(rank, store_path, out_path):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="file://" + store_path, rank=rank, world_size=WORLD)
    m = model()
    ddp = torch.nn.parallel.DistributedDataParallel(m)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    x, y = data()
    for s in range(STEPS):
        rows = slice(rank * B, (rank + 1) * B)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(ddp(x[s, rows]), y[s, rows]).backward()
        opt.step()
    final = {k: v.detach().clone() for k, v in m.state_dict().items()}
    gathered = [None] * WORLD
    dist.all_gather_object(gathered, final)
    if rank == 0:
        for k in final:
            assert torch.equal(gathered[0][k], gathered[1][k]), k
        init = model().state_dict()
        out = {"init." + k: v for k, v in init.items()}
        out.update({"final." + k: v for k, v in final.items()})
        out["x"], out["y"] = x, y
        write_safetensors(out_path, out, {"torch": torch.__version__})
    dist.destroy_process_group()


def main():
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(worker, args=(os.path.join(tmp, "store"), os.path.join(outdir, "ddp_torch2.safetensors")),
                 nprocs=WORLD, join=True)


if __name__ == "__main__":
    main()
