#!/usr/bin/python3
"""PyTorch references for the autocast conv2d tests in tests/test_amp.c.

Usage: /usr/bin/python3 tests/parity/amp_conv_reference.py OUTDIR

Writes OUTDIR/amp_conv_bf16.safetensors holding, for each case i of CASES
(F.conv2d inside torch.autocast("cpu", dtype=torch.bfloat16), backward of
sum(y * gy)):

  case.<i>.cfg                 [10] N, C, H, W, Cout, k, stride, padding,
                               groups, bias (0/1)
  case.<i>.x, .w, .b, .gy      the float32 inputs (b absent without bias)
  case.<i>.y                   the output (bfloat16, stored as float32)
  case.<i>.dx, .dw, .db        the gradients of the float32 leaves

and for the default CNN (zg_model_default_cnn's layers, batch 64), one
forward + backward with the layers in the autocast region and the
cross-entropy after it:

  cnn.init.<j>                 the 8 parameters, in module order
  cnn.x, cnn.y                 the batch
  cnn.logits, cnn.loss         the outputs (loss float32)
  cnn.grad.<j>                 the parameters' gradients
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import bf16_sums_in_fp32, write_safetensors  # noqa: E402

# N, C, H, W, Cout, k, stride, padding, groups, bias
CASES = [
    (3, 4, 9, 9, 6, 3, 1, 1, 1, 1),
    (4, 4, 10, 10, 6, 3, 2, 1, 2, 1),
    (2, 3, 8, 8, 5, 2, 1, 0, 1, 0),
    (6, 6, 7, 7, 6, 3, 1, 2, 3, 1),
    # The default CNN's second layer: the batch splits across threads.
    (8, 32, 14, 14, 64, 3, 1, 1, 1, 1),
]


def conv_case(tensors, i, cfg, gen):
    n, c, h, w, cout, k, s, p, g, bias = cfg
    x = torch.randn(n, c, h, w, generator=gen).requires_grad_()
    wt = (torch.randn(cout, c // g, k, k, generator=gen) / (c // g * k * k) ** 0.5).requires_grad_()
    b = torch.randn(cout, generator=gen).requires_grad_() if bias else None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = F.conv2d(x, wt, b, stride=s, padding=p, groups=g)
    assert y.dtype == torch.bfloat16
    gy = torch.randn(y.shape, generator=gen)
    (y.float() * gy).sum().backward()
    pre = "case.%d." % i
    tensors[pre + "cfg"] = torch.tensor(cfg, dtype=torch.float32)
    tensors[pre + "x"] = x.detach()
    tensors[pre + "w"] = wt.detach()
    tensors[pre + "gy"] = gy
    tensors[pre + "y"] = y.float().detach()
    tensors[pre + "dx"] = x.grad
    tensors[pre + "dw"] = wt.grad
    if bias:
        tensors[pre + "b"] = b.detach()
        tensors[pre + "db"] = b.grad


def cnn(tensors, gen):
    torch.manual_seed(7)
    layers = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(3136, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    params = list(layers.parameters())
    for j, q in enumerate(params):
        tensors["cnn.init.%d" % j] = q.detach().clone()
    x = torch.randn(64, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (64,), generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layers(x)
    loss = F.cross_entropy(logits.float(), y)
    loss.backward()
    tensors["cnn.x"] = x
    tensors["cnn.y"] = y
    tensors["cnn.logits"] = logits.float().detach()
    tensors["cnn.loss"] = loss.detach().reshape(1)
    for j, q in enumerate(params):
        tensors["cnn.grad.%d" % j] = q.grad


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: amp_conv_reference.py OUTDIR")
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(11)
    tensors = {}
    for i, cfg in enumerate(CASES):
        conv_case(tensors, i, cfg, gen)
    cnn(tensors, gen)
    meta = {"cases": len(CASES), "torch": torch.__version__, "bf16_sums_in_fp32": int(bf16_sums_in_fp32())}
    write_safetensors(os.path.join(outdir, "amp_conv_bf16.safetensors"), tensors, meta)


if __name__ == "__main__":
    main()
