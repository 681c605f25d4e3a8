"""PyTorch side of the GPT quality check: nanoGPT's CPU recipe on the
shakespeare corpus, the validation loss at the end, to set beside
`zgrad train --model gpt`'s.

    gpt_quality.py [--iters N] [--seed S] [--threads T] [--corpus FILE]

The recipe (nanoGPT's README, shakespeare_char on a CPU): 4 layers, 4
heads, 128 embd, block 64, batch 12, dropout 0, no bias; AdamW lr 1e-3,
betas (0.9, 0.99), weight decay 0.1 on tensors of dim >= 2; 100 warm-up
iterations then cosine decay to 1e-4 at the last; clip_grad_norm 1.0;
character vocabulary, the first 90% trains. The losses are the mean over
EVAL_ITERS random batches of each split. Prints one JSON line.
"""
import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "parity"))
import gpt_reference  # noqa: E402

CORPUS = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "zgrad/corpus/shakespeare.txt")
EVAL_ITERS = 200
BATCH, BLOCK = 12, 64
LR, MIN_LR, WARMUP = 1e-3, 1e-4, 100


def lr_at(it, iters):
    if it < WARMUP:
        return LR * (it + 1) / (WARMUP + 1)
    ratio = (it - WARMUP) / max(1, iters - WARMUP)
    return MIN_LR + 0.5 * (1.0 + math.cos(math.pi * min(ratio, 1.0))) * (LR - MIN_LR)


def batch(data, gen):
    ix = torch.randint(len(data) - BLOCK, (BATCH,), generator=gen)
    return torch.stack([data[i:i + BLOCK] for i in ix]), torch.stack([data[i + 1:i + 1 + BLOCK] for i in ix])


@torch.no_grad()
def estimate(model, data, vocab, gen):
    model.eval()
    losses = [F.cross_entropy(model(x).view(-1, vocab), y.view(-1)).item()
              for x, y in (batch(data, gen) for _ in range(EVAL_ITERS))]
    model.train()
    return sum(losses) / len(losses)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--corpus", default=CORPUS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with open(args.corpus, encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text], dtype=torch.long)
    n = int(len(data) * 0.9)
    train, val = data[:n], data[n:]
    torch.manual_seed(args.seed)
    gpt_reference.SelfAttention.use_sdpa = hasattr(F, "scaled_dot_product_attention")
    cfg = dict(vocab_size=len(chars), block_size=BLOCK, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False)
    model = gpt_reference.Gpt(cfg)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=LR,
                            betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    for it in range(args.iters):
        for g in opt.param_groups:
            g["lr"] = lr_at(it, args.iters)
        x, y = batch(train, gen)
        loss = F.cross_entropy(model(x).view(-1, len(chars)), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    seconds = time.perf_counter() - t0
    eval_gen = torch.Generator().manual_seed(0)
    out = {"torch": torch.__version__, "iters": args.iters, "seed": args.seed, "train_seconds": seconds,
           "train_loss": estimate(model, train, len(chars), eval_gen), "val_loss": estimate(model, val, len(chars), eval_gen)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
