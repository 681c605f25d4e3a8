#!/usr/bin/python3
"""PyTorch reference for the GPT parity test in tests/test_gpt.c.

Usage: /usr/bin/python3 tests/parity/gpt_reference.py OUTDIR

A GPT in nanoGPT's layout (written here from its description: token and
position embeddings, pre-norm blocks of causal self-attention and a GELU
MLP, a final LayerNorm, the head tied to the token embedding; init N(0,
0.02), residual projections N(0, 0.02/sqrt(2 n_layer))) trained for STEPS
steps of AdamW with nanoGPT's two groups (weight decay on tensors of dim
>= 2 only), clip_grad_norm_ 1.0, on random token windows. Writes
OUTDIR/gpt.safetensors with

    init.<param>          the initial weights (nanoGPT's state_dict names)
    data.x.<s>, data.y.<s>   int64 [B, T] inputs and targets of step s
    loss                  [STEPS] the loss of each step
    grad.<s>.<param>      .grad after the backward of step s
    final.<param>         the parameters after the last step
    grad64.<s>.<param>, final64.<param>   the same run in float64 (stored
                          as float32): its distance from the float32 run
                          bounds what a correct float32 run may differ by
                          (semantics.md section 10)

and the configuration, the optimizer and the loop in the metadata.
"""
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import write_safetensors  # noqa: E402

CFG = dict(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0, bias=True)
STEPS, BATCH = 10, 4
LR, BETAS, EPS, WD, CLIP = 1e-3, (0.9, 0.99), 1e-8, 0.1, 1.0
LOOP = "zero_grad(set_to_none) forward cross_entropy backward clip_grad_norm(1.0) step"


class SelfAttention(nn.Module):
    # The parity run writes attention out (torch 1.13 has no SDPA); the
    # benchmark (bench/torch_bench.py) sets this where torch has SDPA, the
    # path nanoGPT takes there.
    use_sdpa = False

    def __init__(self, c):
        super().__init__()
        self.n_head, self.n_embd = c["n_head"], c["n_embd"]
        self.c_attn = nn.Linear(self.n_embd, 3 * self.n_embd, bias=c["bias"])
        self.c_proj = nn.Linear(self.n_embd, self.n_embd, bias=c["bias"])

    def forward(self, x):
        b, t, ch = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (z.view(b, t, self.n_head, ch // self.n_head).transpose(1, 2) for z in (q, k, v))
        if self.use_sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, ch))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.shape[-1])
        att = att.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        y = torch.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, ch))


class Mlp(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_fc = nn.Linear(c["n_embd"], 4 * c["n_embd"], bias=c["bias"])
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * c["n_embd"], c["n_embd"], bias=c["bias"])

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


def layer_norm(c):
    ln = nn.LayerNorm(c["n_embd"])
    if not c["bias"]:
        ln.bias = None  # torch 1.13 has no bias=False
    return ln


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln_1, self.attn, self.ln_2, self.mlp = layer_norm(c), SelfAttention(c), layer_norm(c), Mlp(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Gpt(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(c["vocab_size"], c["n_embd"]), wpe=nn.Embedding(c["block_size"], c["n_embd"]),
            h=nn.ModuleList([Block(c) for _ in range(c["n_layer"])]), ln_f=layer_norm(c)))
        self.lm_head = nn.Linear(c["n_embd"], c["vocab_size"], bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        for name, p in self.named_parameters():
            if name.endswith(".bias"):
                nn.init.zeros_(p)
            elif ".ln_" not in name:
                std = 0.02 / math.sqrt(2 * c["n_layer"]) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(t))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def train(model, batches, out, prefix):
    """STEPS AdamW steps on the batches; records grad<prefix>.<s>.<param>
    and final<prefix>.<param> (as float32), returns the losses."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=EPS, foreach=False)
    losses = []
    v = CFG["vocab_size"]
    for s, (x, y) in enumerate(batches):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x).view(-1, v), y.view(-1))
        loss.backward()
        for n, p in model.named_parameters():
            out["grad%s.%d.%s" % (prefix, s, n)] = p.grad.detach().float().clone()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        losses.append(loss.item())
    for n, p in model.named_parameters():
        out["final%s.%s" % (prefix, n)] = p.detach().float().clone()
    return losses


def main():
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    torch.manual_seed(0)
    model = Gpt(CFG)
    out = {"init." + n: p.detach().clone() for n, p in model.named_parameters()}
    t, v = CFG["block_size"], CFG["vocab_size"]
    batches = [(torch.randint(0, v, (BATCH, t)), torch.randint(0, v, (BATCH, t))) for _ in range(STEPS)]
    for s, (x, y) in enumerate(batches):
        out["data.x.%d" % s], out["data.y.%d" % s] = x, y
    model64 = Gpt(CFG).double()
    model64.load_state_dict({n: p.double() for n, p in model.state_dict().items()})
    out["loss"] = torch.tensor(train(model, batches, out, ""), dtype=torch.float32)
    train(model64, batches, out, "64")
    meta = {k: str(val) for k, val in CFG.items()}
    meta.update(steps=STEPS, batch=BATCH, loop=LOOP,
                optim="adamw lr=%g betas=%g,%g eps=%g weight_decay=%g on dim>=2, 0 else" % (LR, *BETAS, EPS, WD))
    write_safetensors(os.path.join(outdir, "gpt.safetensors"), out, meta)


if __name__ == "__main__":
    main()
