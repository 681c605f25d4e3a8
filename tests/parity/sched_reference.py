#!/usr/bin/python3
"""PyTorch reference sequences for tests/test_clip_sched.c.

Usage: /usr/bin/python3 tests/parity/sched_reference.py OUTDIR

Writes OUTDIR/sched_reference.txt (written to a temporary name, then
renamed), a line-based text file of exact doubles (Python's repr, which
reads back bit for bit):

  scenario NAME groups G steps N mom none|momentum|beta1
  desc TEXT                  the setup, which the C test compares with its own
  V ... (N + 1 lines)        per line: the lr of each group (get_last_lr()),
                             then, unless mom is none, each group's momentum
                             or beta1; line 0 after construction, line i
                             after the i-th optimizer.step(); scheduler.step()
  end

  clip NAME norm_type T max_norm M params P
  total X                    the returned total norm (float32 in torch)
  param SHAPE... | none      per parameter: its grad's shape, or no grad
  g V ...                    the grad before clipping (float32 values)
  c V ...                    the grad after clip_grad_norm_
  end

Written against Debian's torch 1.13 (torch.optim.lr_scheduler there).
"""
import math
import os
import sys
import warnings

import numpy as np
import torch
from torch.optim import lr_scheduler as S

warnings.filterwarnings("ignore")


def optim(kind, lrs, **kw):
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in lrs]
    groups = [{"params": [p], "lr": lr} for p, lr in zip(params, lrs)]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lrs[0], **kw)
    if kind == "adam":
        return torch.optim.Adam(groups, lr=lrs[0], **kw)
    if kind == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lrs[0], **kw)
    if kind == "adagrad":
        return torch.optim.Adagrad(groups, lr=lrs[0], **kw)
    raise ValueError(kind)


def run(out, name, desc, opt, make, steps, mom="none", drivers=None):
    """make(opt) -> the scheduler(s) to step after each optimizer step; the
    recorded lr is the optimizer's (what the last scheduler wrote)."""
    scheds = make(opt)
    if not isinstance(scheds, list):
        scheds = [scheds]
    key = {"momentum": lambda g: g["momentum"], "beta1": lambda g: g["betas"][0]}.get(mom)

    def row():
        vals = [g["lr"] for g in opt.param_groups]
        # the scheduler's own record must agree with the groups
        assert vals == list(scheds[-1].get_last_lr()), (name, vals, scheds[-1].get_last_lr())
        if key:
            vals += [key(g) for g in opt.param_groups]
        return " ".join(repr(float(v)) for v in vals)

    out.append("scenario %s groups %d steps %d mom %s" % (name, len(opt.param_groups), steps, mom))
    out.append("desc " + desc)
    out.append(row())
    for _ in range(steps):
        opt.step()
        for s in scheds:
            s.step()
        out.append(row())
    out.append("end")


def scenarios(out):
    run(out, "step", "SGD lr 0.1; StepLR(step_size=7, gamma=0.5)",
        optim("sgd", [0.1]), lambda o: S.StepLR(o, 7, 0.5), 30)
    run(out, "step_groups", "SGD lrs 0.1 0.03; StepLR(step_size=3, gamma=0.1)",
        optim("sgd", [0.1, 0.03]), lambda o: S.StepLR(o, 3, 0.1), 12)
    run(out, "cosine", "SGD lr 0.1; CosineAnnealingLR(T_max=4, eta_min=0.01)",
        optim("sgd", [0.1]), lambda o: S.CosineAnnealingLR(o, 4, 0.01), 30)
    run(out, "cosine_groups", "SGD lrs 0.1 0.03; CosineAnnealingLR(T_max=10, eta_min=0)",
        optim("sgd", [0.1, 0.03]), lambda o: S.CosineAnnealingLR(o, 10, 0.0), 30)
    run(out, "linear", "SGD lrs 0.1 0.02; LinearLR(start_factor=0.25, end_factor=1, total_iters=8)",
        optim("sgd", [0.1, 0.02]), lambda o: S.LinearLR(o, 0.25, 1.0, 8), 20)
    run(out, "linear_decay", "Adam lr 0.001; LinearLR(start_factor=1, end_factor=0.1, total_iters=10)",
        optim("adam", [0.001]), lambda o: S.LinearLR(o, 1.0, 0.1, 10), 15)
    run(out, "onecycle_sgd", "SGD lr 0.1 momentum 0.9; OneCycleLR(max_lr=0.5, total_steps=30)",
        optim("sgd", [0.1], momentum=0.9), lambda o: S.OneCycleLR(o, 0.5, total_steps=30), 30, "momentum")
    run(out, "onecycle_adam_three",
        "Adam lrs 0.001 0.002; OneCycleLR(max_lr=[0.01, 0.02], total_steps=40, pct_start=0.25, "
        "anneal_strategy=linear, div_factor=10, final_div_factor=100, three_phase=True, base_momentum=0.8, "
        "max_momentum=0.9)",
        optim("adam", [0.001, 0.002]),
        lambda o: S.OneCycleLR(o, [0.01, 0.02], total_steps=40, pct_start=0.25, anneal_strategy="linear",
                               div_factor=10.0, final_div_factor=100.0, three_phase=True, base_momentum=0.8,
                               max_momentum=0.9), 40, "beta1")
    run(out, "onecycle_rmsprop", "RMSprop lr 0.01 momentum 0.5; OneCycleLR(max_lr=0.05, total_steps=25, "
        "three_phase=True)",
        optim("rmsprop", [0.01], momentum=0.5),
        lambda o: S.OneCycleLR(o, 0.05, total_steps=25, three_phase=True), 25, "momentum")
    run(out, "onecycle_adagrad", "Adagrad lr 0.01; OneCycleLR(max_lr=0.1, total_steps=20, cycle_momentum=False)",
        optim("adagrad", [0.01]), lambda o: S.OneCycleLR(o, 0.1, total_steps=20, cycle_momentum=False), 20)

    def warm_cos(o):
        w = S.LinearLR(o, 0.1, 1.0, 5)
        c = S.CosineAnnealingLR(o, 25, 0.001)
        return S.SequentialLR(o, [w, c], [5])
    run(out, "seq_warmup_cosine", "SGD lrs 0.1 0.05; SequentialLR([LinearLR(0.1, 1, 5), "
        "CosineAnnealingLR(T_max=25, eta_min=0.001)], milestones=[5])",
        optim("sgd", [0.1, 0.05]), warm_cos, 30)

    def warm_cos_spec(o):
        w = S.LinearLR(o, 1.0 / 3, 1.0, 6)
        c = S.CosineAnnealingLR(o, 34, 0.0)
        return S.SequentialLR(o, [w, c], [6])
    run(out, "seq_spec", "SGD lr 0.1; SequentialLR([LinearLR(1/3, 1, 6), CosineAnnealingLR(T_max=34)], "
        "milestones=[6])", optim("sgd", [0.1]), warm_cos_spec, 40)

    def three(o):
        a = S.LinearLR(o, 0.5, 1.0, 3)
        b = S.StepLR(o, 4, 0.5)
        c = S.CosineAnnealingLR(o, 10, 0.0)
        return S.SequentialLR(o, [a, b, c], [3, 12])
    run(out, "seq_three", "SGD lr 0.2; SequentialLR([LinearLR(0.5, 1, 3), StepLR(4, 0.5), "
        "CosineAnnealingLR(T_max=10)], milestones=[3, 12])", optim("sgd", [0.2]), three, 30)

    def warm_onecycle(o):
        a = S.LinearLR(o, 0.5, 1.0, 4)
        b = S.OneCycleLR(o, 0.2, total_steps=20)
        return S.SequentialLR(o, [a, b], [4])
    run(out, "seq_onecycle", "SGD lr 0.1 momentum 0.9; SequentialLR([LinearLR(0.5, 1, 4), "
        "OneCycleLR(max_lr=0.2, total_steps=20)], milestones=[4])",
        optim("sgd", [0.1], momentum=0.9), warm_onecycle, 24, "momentum")

    def chained(o):
        return [S.LinearLR(o, 0.2, 1.0, 5), S.CosineAnnealingLR(o, 20, 0.0)]
    run(out, "chained", "SGD lr 0.1; LinearLR(0.2, 1, 5) and CosineAnnealingLR(T_max=20) both stepped",
        optim("sgd", [0.1]), chained, 25)


def clips(out):
    rng = np.random.default_rng(1234)
    shapes = [(3, 4), None, (5,), (2, 2, 2)]
    cases = [("two", 2.0, 1.0), ("one", 1.0, 2.0), ("inf", math.inf, 0.5), ("three", 3.0, 1.5),
             ("under", 2.0, 100.0)]
    for name, norm_type, max_norm in cases:
        params = []
        for sh in shapes:
            p = torch.nn.Parameter(torch.zeros(sh if sh else (2,)))
            if sh:
                p.grad = torch.from_numpy(rng.standard_normal(sh).astype(np.float32))
            params.append(p)
        before = [p.grad.clone() if p.grad is not None else None for p in params]
        total = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type)
        out.append("clip %s norm_type %r max_norm %r params %d" % (name, norm_type, max_norm, len(params)))
        out.append("total %r" % float(total))
        for p, b in zip(params, before):
            if b is None:
                out.append("param none")
                continue
            out.append("param " + " ".join(str(d) for d in b.shape))
            out.append("g " + " ".join(repr(float(v)) for v in b.flatten().tolist()))
            out.append("c " + " ".join(repr(float(v)) for v in p.grad.flatten().tolist()))
        out.append("end")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: sched_reference.py OUTDIR")
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    out = ["# PyTorch %s reference for tests/test_clip_sched.c" % torch.__version__]
    scenarios(out)
    clips(out)
    path = os.path.join(outdir, "sched_reference.txt")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(out) + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
