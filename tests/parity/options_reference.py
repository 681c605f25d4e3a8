#!/usr/bin/python3
"""PyTorch reference for the options of pooling, batch norm and the class
losses (tests/test_ops_pool.c, tests/test_nn_conv.c, tests/test_ops_loss.c).

Usage: /usr/bin/python3 tests/parity/options_reference.py OUTDIR

Each file lists its cases (comma separated) in the metadata key "cases";
the metadata key <c> gives case <c>'s op and arguments.

OUTDIR/options_pool.safetensors, specs
    max_pool2d KH KW SH SW PH PW CEIL(0/1)
    avg_pool2d KH KW SH SW PH PW CEIL COUNT_INCLUDE_PAD(0/1) DIVISOR(0: None)
    adaptive_avg_pool2d OH OW
    adaptive_avg_pool1d OL
with tensors <c>.x (input), <c>.gy (the gradient fed to backward), <c>.y
(output), <c>.gx (gradient of x).

OUTDIR/options_bn.safetensors: nn.BatchNorm1d/2d with momentum=None (or a
number), specs
    bn VARIANT(1/2) MOMENTUM(None or a number) EPS STEPS NBT0
where NBT0 is num_batches_tracked before the first step (as after loading
a state dict; the running statistics then start from <c>.rm0, <c>.rv0).
The module (weight <c>.w, bias <c>.b) trains STEPS forwards:
    <c>.x.<s>, <c>.gy.<s>     input and output gradient of step s
    <c>.y.<s>, <c>.gx.<s>     output and input gradient
    <c>.gw.<s>, <c>.gb.<s>    gradients of weight and bias (fresh each step)
    <c>.rm.<s>, <c>.rv.<s>, <c>.nbt.<s>   the buffers after step s
then runs one eval forward of <c>.xe, output <c>.ye.

OUTDIR/options_loss.safetensors, specs
    cross_entropy REDUCTION IGNORE_INDEX LABEL_SMOOTHING WEIGHTED(0/1)
    nll_loss REDUCTION IGNORE_INDEX WEIGHTED(0/1)
with <c>.x (logits, or log-probabilities for nll_loss) [N, C, d1, ...],
<c>.t (targets [N, d1, ...], some equal to IGNORE_INDEX), <c>.w (class
weights), <c>.gy, <c>.y, <c>.gx.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import read_safetensors, write_safetensors  # noqa: E402


def seed(name):
    torch.manual_seed(sum(ord(ch) * (i + 1) for i, ch in enumerate(name)))


def pool_cases():
    """(name, spec, input shape)"""
    return [
        # ceil_mode: odd sizes give a last window past the input (the 2x2
        # and tiled kernels must not take them).
        ("max_k2_ceil_odd", "max_pool2d 2 2 2 2 0 0 1", [2, 3, 7, 9]),
        ("max_k2_ceil_even", "max_pool2d 2 2 2 2 0 0 1", [2, 2, 6, 8]),
        ("max_k3_s3_ceil", "max_pool2d 3 3 3 3 0 0 1", [1, 2, 10, 8]),
        ("max_k3_s2_p1_ceil", "max_pool2d 3 3 2 2 1 1 1", [2, 2, 8, 6]),
        # W: ceil gives 4 windows, the last starting past input + left
        # padding: dropped (3 outputs); H the same with 4 -> 2.
        ("max_k2_s3_p1_ceil_drop", "max_pool2d 2 2 3 3 1 1 1", [1, 2, 4, 7]),
        ("max_k3x2_s2x3_ceil", "max_pool2d 3 2 2 3 1 0 1", [2, 2, 9, 10]),
        ("max_k2_ceil_big", "max_pool2d 2 2 2 2 0 0 1", [4, 8, 33, 31]),
        ("avg_k3_s2_p1_ceil", "avg_pool2d 3 3 2 2 1 1 1 1 0", [2, 2, 8, 6]),
        ("avg_k3_s2_p1_nopad", "avg_pool2d 3 3 2 2 1 1 0 0 0", [2, 3, 9, 7]),
        ("avg_k3_s2_p1_ceil_nopad", "avg_pool2d 3 3 2 2 1 1 1 0 0", [2, 2, 8, 6]),
        ("avg_k2_ceil_odd", "avg_pool2d 2 2 2 2 0 0 1 1 0", [2, 3, 7, 9]),
        ("avg_k2_s3_p1_ceil_drop", "avg_pool2d 2 2 3 3 1 1 1 1 0", [1, 2, 4, 7]),
        ("avg_k2_s3_p1_ceil_drop_nopad", "avg_pool2d 2 2 3 3 1 1 1 0 0", [1, 2, 4, 7]),
        ("avg_divisor5", "avg_pool2d 3 3 2 2 1 1 0 1 5", [2, 2, 7, 6]),
        ("avg_divisor3_ceil_nopad", "avg_pool2d 3 2 2 2 1 1 1 0 3", [2, 2, 8, 7]),
        ("avg_k3x2_s1x2_p1x0_nopad", "avg_pool2d 3 2 1 2 1 0 0 0 0", [2, 1, 6, 7]),
        ("avg_k3_s2_p1_ceil_nopad_big", "avg_pool2d 3 3 2 2 1 1 1 0 0", [4, 8, 32, 30]),
        ("adaptive2d_3x4", "adaptive_avg_pool2d 3 4", [2, 3, 7, 9]),
        ("adaptive2d_1x1", "adaptive_avg_pool2d 1 1", [2, 4, 5, 6]),
        ("adaptive2d_same", "adaptive_avg_pool2d 5 6", [1, 2, 5, 6]),
        ("adaptive2d_up", "adaptive_avg_pool2d 10 4", [2, 2, 7, 3]),
        ("adaptive2d_unbatched", "adaptive_avg_pool2d 4 4", [3, 5, 6]),
        ("adaptive2d_big", "adaptive_avg_pool2d 7 5", [4, 16, 30, 29]),
        ("adaptive1d_4", "adaptive_avg_pool1d 4", [2, 3, 10]),
        ("adaptive1d_unbatched_3", "adaptive_avg_pool1d 3", [3, 7]),
        ("adaptive1d_1", "adaptive_avg_pool1d 1", [2, 2, 9]),
    ]


def run_pool(name, spec, shape, out):
    seed(name)
    w = spec.split()
    op, a = w[0], [int(v) for v in w[1:]]
    x = torch.randn(*shape, requires_grad=True)
    if op == "max_pool2d":
        y = F.max_pool2d(x, a[0:2], a[2:4], a[4:6], ceil_mode=a[6] == 1)
    elif op == "avg_pool2d":
        y = F.avg_pool2d(x, a[0:2], a[2:4], a[4:6], ceil_mode=a[6] == 1, count_include_pad=a[7] == 1,
                         divisor_override=a[8] or None)
    elif op == "adaptive_avg_pool2d":
        y = F.adaptive_avg_pool2d(x, (a[0], a[1]))
    elif op == "adaptive_avg_pool1d":
        y = F.adaptive_avg_pool1d(x, a[0])
    else:
        raise ValueError(spec)
    gy = torch.randn_like(y)
    y.backward(gy)
    out[name + ".x"] = x.detach()
    out[name + ".gy"] = gy
    out[name + ".y"] = y.detach()
    out[name + ".gx"] = x.grad


def bn_cases():
    """(name, spec, input shape)"""
    return [
        ("bn2d_none", "bn 2 None 1e-5 4 0", [4, 3, 5, 5]),
        ("bn2d_none_resumed", "bn 2 None 1e-5 3 5", [3, 2, 4, 4]),
        ("bn1d_none", "bn 1 None 1e-3 5 0", [8, 4]),
        ("bn1d_3d_none", "bn 1 None 1e-5 3 0", [5, 3, 6]),
        ("bn2d_momentum_counts", "bn 2 0.3 1e-5 3 2", [3, 2, 3, 3]),
    ]


def run_bn(name, spec, shape, out):
    seed(name)
    w = spec.split()
    variant, eps, steps, nbt0 = int(w[1]), float(w[3]), int(w[4]), int(w[5])
    momentum = None if w[2] == "None" else float(w[2])
    c = shape[1]
    cls = torch.nn.BatchNorm2d if variant == 2 else torch.nn.BatchNorm1d
    m = cls(c, eps=eps, momentum=momentum)
    with torch.no_grad():
        m.weight.copy_(torch.rand(c) + 0.5)
        m.bias.copy_(torch.randn(c))
        if nbt0:
            m.running_mean.copy_(torch.randn(c) * 0.5)
            m.running_var.copy_(torch.rand(c) + 0.5)
            m.num_batches_tracked.fill_(nbt0)
    out[name + ".w"] = m.weight.detach().clone()
    out[name + ".b"] = m.bias.detach().clone()
    out[name + ".rm0"] = m.running_mean.clone()
    out[name + ".rv0"] = m.running_var.clone()
    m.train()
    for s in range(steps):
        # Each batch with its own mean and spread, so that the average of
        # the batches' statistics differs from any one of them.
        x = (torch.randn(*shape) * (1.0 + 0.5 * s) + 0.3 * s).requires_grad_()
        m.zero_grad(set_to_none=True)
        y = m(x)
        gy = torch.randn_like(y)
        y.backward(gy)
        for k, v in (("x", x.detach()), ("gy", gy), ("y", y.detach()), ("gx", x.grad), ("gw", m.weight.grad),
                     ("gb", m.bias.grad), ("rm", m.running_mean), ("rv", m.running_var),
                     ("nbt", m.num_batches_tracked)):
            out["%s.%s.%d" % (name, k, s)] = v.clone()
    m.eval()
    xe = torch.randn(*shape)
    with torch.no_grad():
        out[name + ".xe"] = xe
        out[name + ".ye"] = m(xe)


def loss_cases():
    """(name, spec, input shape)"""
    return [
        ("ce_3d_mean", "cross_entropy mean -100 0 0", [3, 4, 5]),
        ("ce_4d_mean", "cross_entropy mean -100 0 0", [2, 5, 3, 4]),
        ("ce_4d_sum_ignore", "cross_entropy sum -100 0 0", [2, 5, 3, 4]),
        ("ce_4d_none_ignore", "cross_entropy none 255 0 0", [2, 4, 3, 3]),
        ("ce_4d_mean_weight_ignore", "cross_entropy mean 1 0 1", [2, 5, 3, 4]),
        ("ce_4d_mean_smooth", "cross_entropy mean -100 0.1 0", [2, 5, 3, 4]),
        ("ce_4d_mean_all", "cross_entropy mean -100 0.2 1", [2, 5, 3, 4]),
        ("ce_4d_sum_all", "cross_entropy sum -100 0.2 1", [2, 5, 3, 4]),
        ("ce_4d_none_all", "cross_entropy none -100 0.15 1", [2, 3, 4, 2]),
        ("ce_5d_mean_all", "cross_entropy mean -100 0.1 1", [2, 3, 2, 3, 2]),
        ("ce_4d_big", "cross_entropy mean -100 0.05 1", [4, 6, 16, 16]),
        ("nll_3d_mean", "nll_loss mean -100 0", [3, 4, 5]),
        ("nll_4d_mean_weight_ignore", "nll_loss mean -100 1", [2, 5, 3, 4]),
        ("nll_4d_sum", "nll_loss sum 2 0", [2, 5, 3, 4]),
        ("nll_4d_none_weight", "nll_loss none -100 1", [2, 3, 4, 2]),
    ]


def run_loss(name, spec, shape, out):
    seed(name)
    w = spec.split()
    op, red, ignore = w[0], w[1], int(w[2])
    smooth = float(w[3]) if op == "cross_entropy" else 0.0
    weighted = w[-1] == "1"
    n, c, rest = shape[0], shape[1], shape[2:]
    x = (torch.randn(*shape) * 2).requires_grad_()
    t = torch.randint(0, c, [n] + rest)
    # About a fifth of the targets ignored.
    t[torch.rand([n] + rest) < 0.2] = ignore
    wt = torch.rand(c) + 0.5 if weighted else None
    if op == "cross_entropy":
        y = F.cross_entropy(x, t, weight=wt, ignore_index=ignore, reduction=red, label_smoothing=smooth)
    else:
        x = F.log_softmax(x.detach(), 1).requires_grad_()
        y = F.nll_loss(x, t, weight=wt, ignore_index=ignore, reduction=red)
    gy = torch.randn_like(y)
    y.backward(gy)
    out[name + ".x"] = x.detach()
    out[name + ".t"] = t
    if wt is not None:
        out[name + ".w"] = wt
    out[name + ".gy"] = gy
    out[name + ".y"] = y.detach()
    out[name + ".gx"] = x.grad


def write(outdir, fname, cases, run):
    out, meta = {}, {}
    for name, spec, shape in cases:
        run(name, spec, shape, out)
        meta[name] = spec
    meta["cases"] = ",".join(c[0] for c in cases)
    meta["torch"] = torch.__version__
    path = os.path.join(outdir, fname + ".safetensors")
    write_safetensors(path, out, meta)
    read_safetensors(path)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: options_reference.py OUTDIR")
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    torch.set_default_dtype(torch.float32)
    write(outdir, "options_pool", pool_cases(), run_pool)
    write(outdir, "options_bn", bn_cases(), run_bn)
    write(outdir, "options_loss", loss_cases(), run_loss)


if __name__ == "__main__":
    main()
