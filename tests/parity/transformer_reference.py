#!/usr/bin/python3
"""PyTorch reference for the transformer ops' parity tests in
tests/test_ops_transformer.c.

Usage: /usr/bin/python3 tests/parity/transformer_reference.py OUTDIR

Writes OUTDIR/transformer_ops.safetensors: for every case <c> (listed,
comma separated, in the metadata key "cases"), the metadata key <c> gives
the op and its arguments, one of
    embedding PADDING_IDX|none
    layer_norm K EPS AFFINE(0/1) BIAS(0/1)
    sdpa CAUSAL(0/1) MASK(0/1) SCALE (0: the default 1/sqrt(E))
    narrow DIM START LENGTH | tril K | triu K | masked_fill VALUE (<c>.mask int64)
    matmul (the inputs <c>.x and <c>.w, their gradients gx and gw)
and the tensors are
    <c>.x                     layer_norm: the input
    <c>.idx                   embedding: the indices (int64)
    <c>.w, <c>.b              the weight (embedding, affine) and bias
    <c>.q, <c>.k, <c>.v       sdpa: the inputs; <c>.mask the float mask
    <c>.gy                    the gradient fed to backward
    <c>.y                     the output
    <c>.gx, <c>.gw, <c>.gb    the gradients of x, w, b (sdpa: gq, gk, gv)
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import write_safetensors  # noqa: E402


def cases():
    """(name, spec, shape): for embedding the shape is (V, D, index shape);
    for layer_norm the input's."""
    return [
        ("emb_plain", "embedding none", (11, 6, (3, 5))),
        ("emb_pad2", "embedding 2", (11, 6, (3, 5))),
        ("emb_pad_last", "embedding -1", (9, 4, (17,))),
        ("emb_gpt", "embedding none", (65, 128, (12, 64))),
        ("ln_last", "layer_norm 1 1e-5 1 1", (4, 5, 16)),
        ("ln_nobias", "layer_norm 1 1e-5 1 0", (4, 5, 16)),
        ("ln_noaffine", "layer_norm 1 1e-3 0 0", (6, 7)),
        ("ln_two_dims", "layer_norm 2 1e-5 1 1", (3, 4, 6)),
        ("ln_gpt", "layer_norm 1 1e-5 1 1", (12, 64, 128)),
        ("sdpa_causal_gpt", "sdpa 1 0 0", (12, 4, 64, 64, 32, 32)),
        ("sdpa_plain", "sdpa 0 0 0", (2, 3, 20, 30, 8, 6)),
        ("sdpa_mask_scale", "sdpa 0 1 0.3", (2, 2, 70, 90, 16, 16)),
        ("sdpa_causal_blocks", "sdpa 1 0 0", (1, 2, 150, 150, 8, 8)),
        ("narrow_last", "narrow 2 32 32", (4, 5, 96)),
        ("tril_k1", "tril 1", (2, 5, 6)),
        ("triu_k0", "triu 0", (2, 6, 5)),
        ("masked_fill", "masked_fill -2.5", (3, 4, 5)),
        ("matmul_fold", "matmul", ((4, 16, 32), (32, 48))),
        ("matmul_broadcast", "matmul", ((2, 1, 8, 16), (3, 16, 8))),
    ]


def sdpa(q, k, v, mask, causal, scale):
    """F.scaled_dot_product_attention where this torch has it (2.x; 2.1 for
    scale=), else its math definition (torch 1.13 has no SDPA)."""
    if hasattr(F, "scaled_dot_product_attention") and (not scale or torch.__version__ >= "2.1"):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                              **({"scale": scale} if scale else {}))
    s = q @ k.transpose(-2, -1) * (scale or 1.0 / math.sqrt(q.shape[-1]))
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2], s.shape[-1], dtype=torch.bool).triu(1), float("-inf"))
    if mask is not None:
        s = s + mask
    return torch.softmax(s, dim=-1) @ v


def run(name, spec, shape, out):
    w = spec.split()
    params = {}
    if w[0] == "embedding":
        v, d, ishape = shape
        idx = torch.randint(0, v, ishape)
        idx.view(-1)[:3] = idx.view(-1)[0]  # a row used several times
        pad = None if w[1] == "none" else int(w[1])
        if pad is not None:
            idx.view(-1)[3] = pad % v  # the padding row is used too
        params["w"] = torch.randn(v, d).requires_grad_()
        y = F.embedding(idx, params["w"], padding_idx=pad)
        out[name + ".idx"] = idx
        x = None
    elif w[0] == "sdpa":
        causal, has_mask, scale = w[1] == "1", w[2] == "1", float(w[3])
        b, h, t, s_, e, ev = shape
        for nm, sh in (("q", (b, h, t, e)), ("k", (b, h, s_, e)), ("v", (b, h, s_, ev))):
            params[nm] = torch.randn(*sh).requires_grad_()
        mask = None
        if has_mask:
            mask = torch.randn(t, s_)
            mask[0, 1] = float("-inf")
            out[name + ".mask"] = mask
        y = sdpa(params["q"], params["k"], params["v"], mask, causal, scale)
        x = None
    elif w[0] in ("narrow", "tril", "triu", "masked_fill"):
        x = torch.randn(*shape).requires_grad_()
        if w[0] == "narrow":
            y = x.narrow(int(w[1]), int(w[2]), int(w[3]))
        elif w[0] == "masked_fill":
            mask = torch.rand(*shape[-2:]) < 0.4
            out[name + ".mask"] = mask.long()
            y = x.masked_fill(mask, float(w[1]))
        else:
            y = getattr(torch, w[0])(x, int(w[1]))
    elif w[0] == "matmul":
        x = torch.randn(*shape[0]).requires_grad_()
        params["w"] = torch.randn(*shape[1]).requires_grad_()
        y = torch.matmul(x, params["w"])
    elif w[0] == "layer_norm":
        k, eps, affine, bias = int(w[1]), float(w[2]), w[3] == "1", w[4] == "1"
        x = (torch.randn(*shape) * 1.5 + 0.7).requires_grad_()  # rows away from mean 0, variance 1
        ns = shape[len(shape) - k:]
        if affine:
            params["w"] = (torch.rand(*ns) + 0.5).requires_grad_()
        if bias:
            params["b"] = torch.randn(*ns).requires_grad_()
        y = F.layer_norm(x, ns, params.get("w"), params.get("b"), eps)
    else:
        raise ValueError(spec)
    gy = torch.randn_like(y)
    y.backward(gy)
    if x is not None:
        out[name + ".x"] = x.detach()
        out[name + ".gx"] = x.grad
    out[name + ".gy"] = gy
    out[name + ".y"] = y.detach()
    for k, p in params.items():
        out[name + "." + k] = p.detach()
        out[name + ".g" + k] = p.grad


def main():
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    torch.manual_seed(0)
    out, meta = {}, {}
    for name, spec, shape in cases():
        run(name, spec, shape, out)
        meta[name] = spec
    meta["cases"] = ",".join(c[0] for c in cases())
    meta["sdpa"] = "F.scaled_dot_product_attention" if hasattr(F, "scaled_dot_product_attention") else "math"
    meta["torch"] = torch.__version__
    write_safetensors(os.path.join(outdir, "transformer_ops.safetensors"), out, meta)


if __name__ == "__main__":
    main()
