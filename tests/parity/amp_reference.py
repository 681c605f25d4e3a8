#!/usr/bin/python3
"""PyTorch reference runs for the bf16 autocast parity tests in tests/test_amp.c.

Usage: /usr/bin/python3 tests/parity/amp_reference.py OUTDIR

Each scenario trains a small model with SGD for a few steps, the forward
pass and the loss inside torch.autocast("cpu", dtype=torch.bfloat16) (the
cross-entropy runs in float32 there, as in zgrad), and writes
OUTDIR/<scenario>.safetensors holding

  init.<param>            the initial weights
  data.x.<s>, data.y.<s>  the inputs and targets of step s
  loss                    [steps] the loss of each step (autocast run)
  grad.<s>.<param>        .grad after the backward of step s
  final.<param>           the parameters after the last step
  fp32.loss, fp32.final.<param>   the same loop without autocast

and in the metadata the model ("arch"), the optimizer ("lr", "momentum"),
"steps" and "batch". The float32 run tells the C test how far bf16 moves the
results, so that it can check that zgrad follows the bf16 run, not the
float32 one.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import bf16_sums_in_fp32, write_safetensors  # noqa: E402


def make_params(arch, gen):
    """arch "mlp a b c ...": Linear layers (weight [out,in], bias) with ReLU
    between; "mm a b c": bias-free weight matrices [in,out] used as x @ W."""
    kind, *sizes = arch.split()
    sizes = [int(s) for s in sizes]
    params = {}
    for i in range(len(sizes) - 1):
        fan_in, fan_out = sizes[i], sizes[i + 1]
        bound = 1.0 / fan_in ** 0.5
        if kind == "mlp":
            params["%d.weight" % i] = (torch.rand(fan_out, fan_in, generator=gen) * 2 - 1) * bound
            params["%d.bias" % i] = (torch.rand(fan_out, generator=gen) * 2 - 1) * bound
        else:
            params["%d.weight" % i] = (torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * bound
    return params


def forward(arch, params, x):
    kind, *sizes = arch.split()
    n = len(sizes) - 1
    h = x
    for i in range(n):
        if kind == "mlp":
            h = F.linear(h, params["%d.weight" % i], params["%d.bias" % i])
        else:
            h = torch.matmul(h, params["%d.weight" % i])
        if i < n - 1:
            h = torch.relu(h)
    return h


def train(arch, init, data, lr, momentum, autocast):
    params = {k: v.clone().requires_grad_(True) for k, v in init.items()}
    opt = torch.optim.SGD(list(params.values()), lr=lr, momentum=momentum, foreach=False)
    losses, grads = [], []
    for x, y in data:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = forward(arch, params, x)
            loss = F.cross_entropy(logits, y)
        assert loss.dtype == torch.float32
        assert logits.dtype == (torch.bfloat16 if autocast else torch.float32)
        loss.backward()
        losses.append(loss.detach().clone())
        grads.append({k: p.grad.detach().clone() for k, p in params.items()})
        opt.step()
    return torch.stack(losses), grads, {k: p.detach().clone() for k, p in params.items()}


def run(outdir, name, arch, batch, steps, lr, momentum, seed):
    gen = torch.Generator().manual_seed(seed)
    init = make_params(arch, gen)
    n_in, n_out = int(arch.split()[1]), int(arch.split()[-1])
    data = [(torch.randn(batch, n_in, generator=gen), torch.randint(0, n_out, (batch,), generator=gen))
            for _ in range(steps)]
    loss, grads, final = train(arch, init, data, lr, momentum, True)
    loss32, _, final32 = train(arch, init, data, lr, momentum, False)
    # Every autocast gradient is the float32 image of a bf16 value.
    for g in grads:
        for k, v in g.items():
            assert torch.equal(v, v.bfloat16().float()), k
    tensors = {}
    for k, v in init.items():
        tensors["init." + k] = v
    for s, (x, y) in enumerate(data):
        tensors["data.x.%d" % s] = x
        tensors["data.y.%d" % s] = y
    tensors["loss"] = loss
    for s, g in enumerate(grads):
        for k, v in g.items():
            tensors["grad.%d.%s" % (s, k)] = v
    for k, v in final.items():
        tensors["final." + k] = v
    tensors["fp32.loss"] = loss32
    for k, v in final32.items():
        tensors["fp32.final." + k] = v
    meta = {"arch": arch, "batch": batch, "steps": steps, "lr": lr, "momentum": momentum,
            "torch": torch.__version__, "bf16_sums_in_fp32": int(bf16_sums_in_fp32())}
    write_safetensors(os.path.join(outdir, name + ".safetensors"), tensors, meta)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: amp_reference.py OUTDIR")
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    run(outdir, "amp_mlp_bf16", "mlp 64 48 32 10", batch=32, steps=8, lr=0.1, momentum=0.9, seed=1)
    # torch 1.13 accumulates bf16 GEMMs of at most 16^3 multiply-adds in
    # bf16 (its fallback for what it does not send to oneDNN): every GEMM
    # here is larger, so torch accumulates in float32 as zgrad (and torch
    # 2.x) does.
    run(outdir, "amp_matmul_bf16", "mm 40 32 16", batch=16, steps=8, lr=0.1, momentum=0.0, seed=2)
    # The benchmark's shape: K = 784 spans many 32-wide blocks of the kernels.
    run(outdir, "amp_mlp784_bf16", "mlp 784 256 128 10", batch=64, steps=4, lr=0.05, momentum=0.9, seed=3)


if __name__ == "__main__":
    main()
