"""PyTorch side of `make bench`: the same workloads as bench/zgrad_bench.c.

    torch_bench.py WORKLOAD THREADS STEPS WARMUP [DATA_DIR]
    torch_bench.py epoch THREADS [DATA_DIR]      one training epoch of the CNN
    torch_bench.py gpt_run THREADS STEPS [CORPUS]  a whole GPT training run
    torch_bench.py startup THREADS [DATA_DIR]    what `zgrad train --limit-train
                                                 64 --limit-test 64` does

Prints one JSON line (same keys as zgrad_bench for the step workloads).
PyTorch's best CPU setting: OpenBLAS single-threaded (set before numpy or
torch is imported, else OpenBLAS adds its own threads that fight torch's),
then torch.set_num_threads(THREADS).
"""
import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"

import gzip  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

MEAN, STD = 0.2860, 0.3530
DATA_DIR = "/usr/share/datasets/fashion-mnist"

# name: (model, batch, optimizer, lr, bf16 autocast)
WORKLOADS = {
    "mlp32": ("mlp_small", 32, "sgd", 0.01, False),
    "mlp_adam64": ("mlp", 64, "adam", 1e-3, False),
    "mlp_sgd256": ("mlp", 256, "sgd", 0.01, False),
    "cnn64": ("cnn", 64, "adam", 1e-3, False),
    "mlp_bf16_256": ("mlp", 256, "sgd", 0.01, True),
    "cnn_bf16_64": ("cnn", 64, "adam", 1e-3, True),
    "gpt_small": ("gpt_small", 12, "adamw", 1e-3, False),
    "gpt_small_bf16": ("gpt_small", 12, "adamw", 1e-3, True),
    "gpt_large": ("gpt_large", 8, "adamw", 1e-3, False),
}
# GPT configurations as bench/zgrad_bench.c's (the vocabulary is the corpus's).
GPT = {"gpt_small": dict(block_size=64, n_layer=4, n_head=4, n_embd=128),
       "gpt_large": dict(block_size=256, n_layer=6, n_head=6, n_embd=384)}
CORPUS = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "zgrad/corpus/shakespeare.txt")


def load_idx(path):
    """uint8 array of an IDX file (images [N,28,28] or labels [N])."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(data_dir, train):
    kind = "train" if train else "t10k"
    x = torch.from_numpy(load_idx(f"{data_dir}/{kind}-images-idx3-ubyte.gz").copy())
    y = torch.from_numpy(load_idx(f"{data_dir}/{kind}-labels-idx1-ubyte.gz").astype(np.int64))
    return x, y


def normalise(xb):
    """uint8 [B,28,28] -> float32 [B,1,28,28], as zgrad's loader."""
    return ((xb.float() / 255.0 - MEAN) / STD).unsqueeze(1)


def build_model(kind):
    if kind == "mlp_small":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                             nn.Linear(128, 10))
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))


def build_optim(kind, params, lr):
    return torch.optim.SGD(params, lr=lr) if kind == "sgd" else torch.optim.Adam(params, lr=lr)


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def step_result(name, threads, batch, ms, loss):
    return {"side": "torch", "workload": name, "threads": threads, "batch": batch,
            "median_ms": float(np.median(ms)), "rss_mb": rss_mb(), "mallocs_per_step": None,
            "last_loss": loss, "steps_ms": ms}


def train_step(model, opt, xb, yb, bf16):
    opt.zero_grad(set_to_none=True)
    if bf16:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb)
    else:
        loss = F.cross_entropy(model(xb), yb)
    loss.backward()
    opt.step()
    return loss.item()


def gpt_step_workload(name, threads, steps, warmup, corpus, whole_run=False):
    """nanoGPT's loop on random windows of the corpus: AdamW (weight decay
    0.1 on tensors of dim >= 2, betas 0.9, 0.99), clip_grad_norm 1.0; SDPA
    where this torch has it. whole_run: the run's wall time from the first
    batch drawn to the last step, data included (tokens per second), as
    `zgrad train --model gpt` reports it."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "parity"))
    import gpt_reference
    kind, batch, _, lr, bf16 = WORKLOADS[name]
    with open(corpus, encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text[:len(text) * 9 // 10]], dtype=torch.long)
    cfg = dict(GPT[kind], vocab_size=len(chars), dropout=0.0, bias=False)
    gpt_reference.SelfAttention.use_sdpa = hasattr(F, "scaled_dot_product_attention")
    torch.manual_seed(0)
    model = gpt_reference.Gpt(cfg)
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=lr,
                            betas=(0.9, 0.99))
    t, v = cfg["block_size"], cfg["vocab_size"]
    ms, loss = [], 0.0
    run0 = time.perf_counter()
    for i in range(warmup + steps):
        ix = torch.randint(len(data) - t, (batch,))
        xb = torch.stack([data[j:j + t] for j in ix])
        yb = torch.stack([data[j + 1:j + 1 + t] for j in ix])
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(xb)
        lossv = F.cross_entropy(logits.float().view(-1, v), yb.view(-1))
        lossv.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss = lossv.item()
        t1 = time.perf_counter()
        if i >= warmup:
            ms.append((t1 - t0) * 1e3)
    if whole_run:
        secs = time.perf_counter() - run0
        return {"side": "torch", "workload": "gpt_run", "threads": threads, "train_seconds": secs, "steps": steps,
                "tokens_per_s": steps * batch * t / secs, "train_loss": loss, "rss_mb": rss_mb()}
    return step_result(name, threads, batch, ms, loss)


def step_workload(name, threads, steps, warmup, data_dir):
    model_kind, batch, optim_kind, lr, bf16 = WORKLOADS[name]
    if model_kind.startswith("gpt"):
        return gpt_step_workload(name, threads, steps, warmup, data_dir if data_dir != DATA_DIR else CORPUS)
    x, y = load(data_dir, True)
    n_batches = min((steps + warmup), x.shape[0] // batch)
    batches = [(normalise(x[i * batch:(i + 1) * batch]), y[i * batch:(i + 1) * batch]) for i in range(n_batches)]
    torch.manual_seed(0)
    model = build_model(model_kind)
    model.train()
    opt = build_optim(optim_kind, model.parameters(), lr)
    ms = []
    loss = 0.0
    for i in range(warmup + steps):
        xb, yb = batches[i % n_batches]
        t0 = time.perf_counter()
        loss = train_step(model, opt, xb, yb, bf16)
        t1 = time.perf_counter()
        if i >= warmup:
            ms.append((t1 - t0) * 1e3)
    return step_result(name, threads, batch, ms, loss)


def evaluate(model, x, y, batch=1000):
    model.eval()
    correct, total = 0, 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            pred = model(normalise(x[i:i + batch])).argmax(1)
            correct += int((pred == y[i:i + batch]).sum())
            total += pred.shape[0]
    model.train()
    return correct / total


def epoch_workload(threads, data_dir, limit_train=0, limit_test=0, save=False):
    """One epoch of the default CNN as `zgrad train` runs it: per-batch
    normalisation of uint8 images, a fresh shuffle, batch 64 (last batch
    short), Adam lr 1e-3; then the test evaluation, timed apart."""
    x, y = load(data_dir, True)
    xt, yt = load(data_dir, False)
    if limit_train:
        x, y = x[:limit_train], y[:limit_train]
    if limit_test:
        xt, yt = xt[:limit_test], yt[:limit_test]
    torch.manual_seed(0)
    model = build_model("cnn")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    order = torch.randperm(x.shape[0], generator=gen)
    loss_sum, steps = 0.0, 0
    for i in range(0, x.shape[0], 64):
        idx = order[i:i + 64]
        loss_sum += train_step(model, opt, normalise(x[idx]), y[idx], False) * idx.shape[0]
        steps += 1
    t1 = time.perf_counter()
    acc = evaluate(model, xt, yt)
    t2 = time.perf_counter()
    if save:
        with tempfile.TemporaryDirectory() as d:
            torch.save(model.state_dict(), os.path.join(d, "model.pt"))
    return {"side": "torch", "workload": "epoch", "threads": threads, "train_seconds": t1 - t0,
            "eval_seconds": t2 - t1, "steps": steps, "train_loss": loss_sum / x.shape[0], "test_acc": acc,
            "rss_mb": rss_mb()}


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    name, threads = argv[1], int(argv[2])
    torch.set_num_threads(threads)
    if name == "gpt_run":
        out = gpt_step_workload("gpt_small", threads, int(argv[3]), 0, argv[4] if len(argv) > 4 else CORPUS, True)
    elif name == "epoch":
        out = epoch_workload(threads, argv[3] if len(argv) > 3 else DATA_DIR)
    elif name == "startup":
        out = epoch_workload(threads, argv[3] if len(argv) > 3 else DATA_DIR, 64, 64, save=True)
        out["workload"] = "startup"
    elif name in WORKLOADS and len(argv) >= 5:
        out = step_workload(name, threads, int(argv[3]), int(argv[4]), argv[5] if len(argv) > 5 else DATA_DIR)
    else:
        sys.stderr.write(__doc__)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
