#!/usr/bin/python3
"""PyTorch reference for the convolution, pooling and batch-norm parity
tests in tests/test_nn_conv.c.

Usage: /usr/bin/python3 tests/parity/conv_reference.py OUTDIR

Writes two safetensors files:

OUTDIR/conv_ops.safetensors: for every op case <c> (listed, comma
separated, in the metadata key "cases"), the metadata key <c> gives the op
and its arguments, one of
    conv2d SH SW PH PW DH DW GROUPS BIAS(0/1)
    max_pool2d KH KW SH SW PH PW
    avg_pool2d KH KW SH SW PH PW
    batch_norm TRAINING(0/1) MOMENTUM EPS AFFINE(0/1)
and the tensors are
    <c>.x, <c>.w, <c>.b       the inputs (w and b where the op has them;
                              for batch_norm the affine weight and bias)
    <c>.rm, <c>.rv            batch_norm: running statistics before the call
    <c>.gy                    the gradient fed to backward
    <c>.y                     the output
    <c>.gx, <c>.gw, <c>.gb    the gradients of x, w, b
    <c>.rm_after, <c>.rv_after  batch_norm: running statistics after the call

OUTDIR/conv_cnn.safetensors: the default CNN of `zgrad train` (metadata
"arch") trained for STEPS steps of Adam (lr 1e-3) on random data, with
    init.<param>              the initial weights ("0.weight", ...)
    data.x.<s>, data.y.<s>    the batch of step s
    loss                      [STEPS] the loss of each step
    grad.<s>.<param>          .grad after the backward of step s
    final.<param>             the parameters after the last step
The loop (metadata "loop"): zero_grad(set_to_none=True), forward,
cross_entropy (mean), backward, step.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import read_safetensors, write_safetensors  # noqa: E402

STEPS = 5
BATCH = 8
ARCH = ("conv2d 1 32 3 1 1;relu;max_pool2d 2;conv2d 32 64 3 1 1;relu;max_pool2d 2;flatten;"
        "linear 3136 128;relu;linear 128 10")
LOOP = "zero_grad(set_to_none) forward cross_entropy backward step"


def op_cases():
    """(name, spec, shapes): spec is the metadata line."""
    return [
        # conv2d: x shape, w shape; the *_big ones are large enough for
        # zgrad to split the batch across threads, *_one_sample runs one
        # big sample (OpenBLAS threads its GEMMs).
        ("conv_basic", "conv2d 1 1 0 0 1 1 1 1", ([2, 3, 7, 7], [4, 3, 3, 3])),
        ("conv_stride2_pad1", "conv2d 2 2 1 1 1 1 1 1", ([2, 3, 9, 8], [5, 3, 3, 3])),
        ("conv_dilation2", "conv2d 1 1 2 2 2 2 1 1", ([2, 2, 8, 8], [3, 2, 3, 3])),
        ("conv_groups2_nobias", "conv2d 1 1 1 1 1 1 2 0", ([2, 4, 6, 6], [6, 2, 3, 3])),
        ("conv_asym", "conv2d 2 1 1 0 1 2 1 1", ([3, 2, 7, 9], [4, 2, 3, 2])),
        ("conv_cin1", "conv2d 1 1 1 1 1 1 1 1", ([4, 1, 28, 28], [32, 1, 3, 3])),
        ("conv_big", "conv2d 1 1 1 1 1 1 1 1", ([4, 16, 14, 14], [32, 16, 3, 3])),
        ("conv_big_groups2_stride2", "conv2d 2 2 1 1 1 1 2 1", ([4, 32, 28, 28], [64, 16, 3, 3])),
        ("conv_one_sample", "conv2d 1 1 1 1 1 1 1 1", ([1, 16, 30, 30], [32, 16, 3, 3])),
        ("maxpool_k2", "max_pool2d 2 2 2 2 0 0", ([2, 3, 8, 8],)),
        ("maxpool_k2_odd", "max_pool2d 2 2 2 2 0 0", ([2, 3, 7, 9],)),
        ("maxpool_k3_s3", "max_pool2d 3 3 3 3 0 0", ([2, 2, 10, 8],)),
        ("maxpool_k3_s2_p1", "max_pool2d 3 3 2 2 1 1", ([2, 3, 9, 7],)),
        ("maxpool_k3_s1_p1", "max_pool2d 3 2 1 2 1 1", ([2, 2, 6, 7],)),
        ("avgpool_k3_s2_p1", "avg_pool2d 3 3 2 2 1 1", ([2, 3, 9, 7],)),
        ("avgpool_k2_s1", "avg_pool2d 2 2 1 1 0 0", ([2, 2, 5, 6],)),
        ("bn2d_train", "batch_norm 1 0.1 1e-5 1", ([4, 3, 5, 5],)),
        ("bn2d_eval", "batch_norm 0 0.1 1e-5 1", ([4, 3, 5, 5],)),
        ("bn1d_train", "batch_norm 1 0.2 1e-3 1", ([8, 5],)),
        ("bn1d_3d_train_noaffine", "batch_norm 1 0.1 1e-5 0", ([6, 4, 7],)),
        ("bn1d_eval_noaffine", "batch_norm 0 0.1 1e-5 0", ([8, 5],)),
    ]


def run_op(name, spec, shapes, out):
    torch.manual_seed(sum(ord(ch) for ch in name))
    w = spec.split()
    op = w[0]
    x = torch.randn(*shapes[0], requires_grad=True)
    params = {}
    if op == "conv2d":
        sh, sw, ph, pw, dh, dw, groups, has_bias = (int(v) for v in w[1:])
        params["w"] = (torch.randn(*shapes[1]) * 0.3).requires_grad_()
        if has_bias:
            params["b"] = torch.randn(shapes[1][0]).requires_grad_()
        y = F.conv2d(x, params["w"], params.get("b"), (sh, sw), (ph, pw), (dh, dw), groups)
    elif op in ("max_pool2d", "avg_pool2d"):
        kh, kw, sh, sw, ph, pw = (int(v) for v in w[1:])
        if op == "max_pool2d":
            y = F.max_pool2d(x, (kh, kw), (sh, sw), (ph, pw))
        else:
            y = F.avg_pool2d(x, (kh, kw), (sh, sw), (ph, pw), count_include_pad=True)
    elif op == "batch_norm":
        training, momentum, eps, affine = w[1] == "1", float(w[2]), float(w[3]), w[4] == "1"
        c = shapes[0][1]
        with torch.no_grad():
            x.mul_(1.5).add_(0.7)  # a mean and variance away from 0 and 1
        rm = torch.randn(c) * 0.5
        rv = torch.rand(c) + 0.5
        out[name + ".rm"] = rm.clone()
        out[name + ".rv"] = rv.clone()
        if affine:
            params["w"] = (torch.rand(c) + 0.5).requires_grad_()
            params["b"] = torch.randn(c).requires_grad_()
        y = F.batch_norm(x, rm, rv, params.get("w"), params.get("b"), training, momentum, eps)
        out[name + ".rm_after"] = rm
        out[name + ".rv_after"] = rv
    else:
        raise ValueError(spec)
    gy = torch.randn_like(y)
    y.backward(gy)
    out[name + ".x"] = x.detach()
    out[name + ".gy"] = gy
    out[name + ".y"] = y.detach()
    out[name + ".gx"] = x.grad
    for k, p in params.items():
        out[name + "." + k] = p.detach()
        out[name + ".g" + k] = p.grad


def build_model(arch):
    layers = []
    for spec in arch.split(";"):
        w = spec.split()
        if w[0] == "conv2d":
            layers.append(torch.nn.Conv2d(int(w[1]), int(w[2]), int(w[3]), stride=int(w[4]), padding=int(w[5])))
        elif w[0] == "relu":
            layers.append(torch.nn.ReLU())
        elif w[0] == "max_pool2d":
            layers.append(torch.nn.MaxPool2d(int(w[1])))
        elif w[0] == "flatten":
            layers.append(torch.nn.Flatten())
        elif w[0] == "linear":
            layers.append(torch.nn.Linear(int(w[1]), int(w[2])))
        else:
            raise ValueError(spec)
    return torch.nn.Sequential(*layers)


def run_cnn(out):
    torch.manual_seed(0)
    model = build_model(ARCH)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=False)
    for n, p in model.named_parameters():
        out["init." + n] = p.detach().clone()
    losses = []
    for s in range(STEPS):
        x = torch.randn(BATCH, 1, 28, 28)
        y = torch.randint(0, 10, (BATCH,))
        out["data.x.%d" % s] = x
        out["data.y.%d" % s] = y
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        for n, p in model.named_parameters():
            out["grad.%d.%s" % (s, n)] = p.grad.clone()
    out["loss"] = torch.tensor(losses, dtype=torch.float32)
    for n, p in model.named_parameters():
        out["final." + n] = p.detach().clone()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: conv_reference.py OUTDIR")
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    torch.set_default_dtype(torch.float32)

    out, meta = {}, {}
    cases = op_cases()
    for name, spec, shapes in cases:
        run_op(name, spec, shapes, out)
        meta[name] = spec
    meta["cases"] = ",".join(c[0] for c in cases)
    path = os.path.join(outdir, "conv_ops.safetensors")
    write_safetensors(path, out, meta)
    read_safetensors(path)

    out = {}
    run_cnn(out)
    path = os.path.join(outdir, "conv_cnn.safetensors")
    write_safetensors(path, out, {"arch": ARCH, "loop": LOOP, "optim": "adam lr=1e-3", "steps": STEPS})
    read_safetensors(path)


if __name__ == "__main__":
    main()
