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
                             (ReduceLROnPlateau: step(metric) with the i-th
                             of the metrics the desc lists; the scenarios
                             of initial_lr: one line per construction and
                             per step, in the order the desc tells)
  end

  clip NAME norm_type T max_norm M params P
  total X                    the returned total norm (float32 in torch)
  param SHAPE... | none      per parameter: its grad's shape, or no grad
  g V ...                    the grad before clipping (float32 values)
  c V ...                    the grad after clip_grad_norm_
  end

Written against Debian's torch 1.13 (torch.optim.lr_scheduler there).
Every sequence here is the same under PyTorch 2.x (checked by running
this script with both); the few where 2.x differs are in
optim_reference_torch2.py.
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


def lrs_row(opt):
    return " ".join(repr(float(g["lr"])) for g in opt.param_groups)


def emit(out, name, desc, groups, rows):
    out.append("scenario %s groups %d steps %d mom none" % (name, groups, len(rows) - 1))
    out.append("desc " + desc)
    out.extend(rows)
    out.append("end")


def run(out, name, desc, opt, make, steps, mom="none", metrics=None):
    """make(opt) -> the scheduler(s) to step after each optimizer step; the
    recorded lr is the optimizer's (what the last scheduler wrote).
    metrics: ReduceLROnPlateau's, one per step."""
    scheds = make(opt)
    if not isinstance(scheds, list):
        scheds = [scheds]
    key = {"momentum": lambda g: g["momentum"], "beta1": lambda g: g["betas"][0]}.get(mom)

    def row():
        vals = [g["lr"] for g in opt.param_groups]
        # the scheduler's own record must agree with the groups (1.13's
        # ReduceLROnPlateau has none before its first step)
        if hasattr(scheds[-1], "_last_lr"):
            assert vals == list(scheds[-1]._last_lr), (name, vals, scheds[-1]._last_lr)
        if key:
            vals += [key(g) for g in opt.param_groups]
        return " ".join(repr(float(v)) for v in vals)

    out.append("scenario %s groups %d steps %d mom %s" % (name, len(opt.param_groups), steps, mom))
    out.append("desc " + desc)
    out.append(row())
    for i in range(steps):
        opt.step()
        for s in scheds:
            if metrics is None:
                s.step()
            else:
                s.step(metrics[i])
        out.append(row())
    out.append("end")


def steps_rows(opt, sched, n):
    rows = []
    for _ in range(n):
        opt.step()
        sched.step()
        rows.append(lrs_row(opt))
    return rows


def step_lr_first(opt):
    """StepLR(2, 0.5) for 4 steps, then freed: the rows."""
    s = S.StepLR(opt, 2, 0.5)
    return [lrs_row(opt)] + steps_rows(opt, s, 4)


def initial_lr_scenarios(out):
    """A scheduler made after another was freed starts from the groups'
    initial_lr, which the first scheduler set and the optimizer's
    state_dict keeps."""
    opt = optim("sgd", [0.1])
    rows = step_lr_first(opt)
    c = S.CosineAnnealingLR(opt, 6, 0.001)
    rows += [lrs_row(opt)] + steps_rows(opt, c, 8)
    emit(out, "after_free", "SGD lr 0.1; StepLR(2, 0.5) 4 steps, freed; CosineAnnealingLR(T_max=6, eta_min=0.001) "
         "8 steps", 1, rows)

    opt = optim("sgd", [0.1, 0.05])
    rows = step_lr_first(opt)
    q = S.SequentialLR(opt, [S.LinearLR(opt, 0.5, 1.0, 3), S.CosineAnnealingLR(opt, 8)], [3])
    rows += [lrs_row(opt)] + steps_rows(opt, q, 12)
    emit(out, "seq_after_free", "SGD lrs 0.1 0.05; StepLR(2, 0.5) 4 steps, freed; SequentialLR([LinearLR(0.5, 1, 3), "
         "CosineAnnealingLR(T_max=8)], milestones=[3]) 12 steps", 2, rows)

    opt = optim("sgd", [0.1, 0.05])
    rows = step_lr_first(opt)
    state = opt.state_dict()
    opt2 = optim("sgd", [0.1, 0.05])
    opt2.load_state_dict(state)
    c = S.CosineAnnealingLR(opt2, 6, 0.001)
    rows += [lrs_row(opt2)] + steps_rows(opt2, c, 8)
    emit(out, "resume_opt_state", "SGD lrs 0.1 0.05; StepLR(2, 0.5) 4 steps; a new SGD loads the optimizer's "
         "state_dict; CosineAnnealingLR(T_max=6, eta_min=0.001) 8 steps", 2, rows)

    opt = optim("sgd", [0.1], momentum=0.9)
    s = S.OneCycleLR(opt, 0.5, total_steps=10)
    rows = [lrs_row(opt)] + steps_rows(opt, s, 5)
    del s
    c = S.CosineAnnealingLR(opt, 6)
    rows += [lrs_row(opt)] + steps_rows(opt, c, 8)
    emit(out, "onecycle_then_cosine", "SGD lr 0.1 momentum 0.9; OneCycleLR(max_lr=0.5, total_steps=10) 5 steps, "
         "freed; CosineAnnealingLR(T_max=6) 8 steps", 1, rows)


PLATEAU_MIN = [1.0, 0.9, 0.95, 0.95, 0.899, 0.9, 0.9, 0.9, 0.7, 0.71, 0.72, 0.73, 0.74, 0.75, 0.69, 0.7, 0.7, 0.7,
               0.7, 0.7, float("nan"), 0.7, 0.7, 0.7]
PLATEAU_MAX = [0.1, 0.2, 0.22, 0.3, 0.3, 0.3, 0.36, 0.4, 0.41, 0.41, 0.41, 0.41, 0.41, 0.41, 0.41, 0.41]


def metrics_text(m):
    return " ".join(repr(v) for v in m)


def new_scenarios(out):
    """The schedulers added in zgrad after StepLR ... SequentialLR."""
    run(out, "exponential", "SGD lrs 0.1 0.05; ExponentialLR(gamma=0.9)",
        optim("sgd", [0.1, 0.05]), lambda o: S.ExponentialLR(o, 0.9), 20)
    run(out, "multistep", "SGD lr 0.1; MultiStepLR(milestones=[7, 3, 12, 7], gamma=0.5)",
        optim("sgd", [0.1]), lambda o: S.MultiStepLR(o, [7, 3, 12, 7], 0.5), 16)
    run(out, "multistep_zero", "SGD lr 0.1; MultiStepLR(milestones=[0, 4], gamma=0.1)",
        optim("sgd", [0.1]), lambda o: S.MultiStepLR(o, [0, 4], 0.1), 6)
    run(out, "constant", "SGD lrs 0.1 0.02; ConstantLR(factor=0.25, total_iters=4)",
        optim("sgd", [0.1, 0.02]), lambda o: S.ConstantLR(o, 0.25, 4), 8)
    run(out, "polynomial", "SGD lr 0.1; PolynomialLR(total_iters=8, power=2)",
        optim("sgd", [0.1]), lambda o: S.PolynomialLR(o, 8, 2.0), 12)
    run(out, "polynomial_09", "Adam lr 0.01; PolynomialLR(total_iters=10, power=0.9)",
        optim("adam", [0.01]), lambda o: S.PolynomialLR(o, 10, 0.9), 12)
    run(out, "lambda", "SGD lrs 0.1 0.05; LambdaLR([0.95 ** e, 1 / (1 + e)])",
        optim("sgd", [0.1, 0.05]), lambda o: S.LambdaLR(o, [lambda e: 0.95 ** e, lambda e: 1.0 / (1.0 + e)]), 15)
    run(out, "multiplicative", "SGD lr 0.1; MultiplicativeLR(0.9 if e % 3 == 0 else 0.99)",
        optim("sgd", [0.1]), lambda o: S.MultiplicativeLR(o, lambda e: 0.9 if e % 3 == 0 else 0.99), 12)
    run(out, "warm_restarts", "SGD lr 0.1; CosineAnnealingWarmRestarts(T_0=3, T_mult=2, eta_min=0.001)",
        optim("sgd", [0.1]), lambda o: S.CosineAnnealingWarmRestarts(o, 3, 2, 0.001), 25)
    run(out, "warm_restarts_one", "SGD lrs 0.1 0.05; CosineAnnealingWarmRestarts(T_0=4)",
        optim("sgd", [0.1, 0.05]), lambda o: S.CosineAnnealingWarmRestarts(o, 4), 14)
    run(out, "chained_new", "SGD lr 1.0; ChainedScheduler([ConstantLR(factor=0.1, total_iters=2), "
        "ExponentialLR(gamma=0.9)])", optim("sgd", [1.0]),
        lambda o: S.ChainedScheduler([S.ConstantLR(o, 0.1, 2), S.ExponentialLR(o, 0.9)]), 10)
    run(out, "chained_three", "SGD lr 0.1 momentum 0.9; ChainedScheduler([LinearLR(0.5, 1, 4), "
        "CosineAnnealingWarmRestarts(T_0=5), MultiStepLR([6], 0.5), OneCycleLR(max_lr=0.3, total_steps=14)])",
        optim("sgd", [0.1], momentum=0.9),
        lambda o: S.ChainedScheduler([S.LinearLR(o, 0.5, 1.0, 4), S.CosineAnnealingWarmRestarts(o, 5),
                                      S.MultiStepLR(o, [6], 0.5), S.OneCycleLR(o, 0.3, total_steps=14)]),
        14, "momentum")
    run(out, "seq_new", "SGD lr 0.1; SequentialLR([ConstantLR(0.1, 3), ExponentialLR(0.9)], milestones=[3])",
        optim("sgd", [0.1]),
        lambda o: S.SequentialLR(o, [S.ConstantLR(o, 0.1, 3), S.ExponentialLR(o, 0.9)], [3]), 12)
    run(out, "seq_poly_restarts", "SGD lr 0.1; SequentialLR([PolynomialLR(4, 1), CosineAnnealingWarmRestarts(T_0=3, "
        "T_mult=2)], milestones=[4])", optim("sgd", [0.1]),
        lambda o: S.SequentialLR(o, [S.PolynomialLR(o, 4, 1.0), S.CosineAnnealingWarmRestarts(o, 3, 2)], [4]), 16)
    run(out, "plateau_min", "SGD lrs 0.1 0.05; ReduceLROnPlateau(mode=min, factor=0.5, patience=2, threshold=0.01, "
        "threshold_mode=rel, cooldown=1, min_lr=[0.01, 0.02]) fed " + metrics_text(PLATEAU_MIN),
        optim("sgd", [0.1, 0.05]),
        lambda o: S.ReduceLROnPlateau(o, "min", 0.5, 2, 0.01, "rel", 1, [0.01, 0.02]), len(PLATEAU_MIN),
        metrics=PLATEAU_MIN)
    run(out, "plateau_max_abs", "SGD lr 0.1; ReduceLROnPlateau(mode=max, factor=0.3, patience=1, threshold=0.05, "
        "threshold_mode=abs, min_lr=0.001, eps=0.001) fed " + metrics_text(PLATEAU_MAX),
        optim("sgd", [0.1]),
        lambda o: S.ReduceLROnPlateau(o, "max", 0.3, 1, 0.05, "abs", 0, 0.001, 1e-3), len(PLATEAU_MAX),
        metrics=PLATEAU_MAX)
    run(out, "plateau_defaults", "SGD lr 0.1; ReduceLROnPlateau() fed 1.0 25 times",
        optim("sgd", [0.1]), lambda o: S.ReduceLROnPlateau(o), 25, metrics=[1.0] * 25)


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
    initial_lr_scenarios(out)
    new_scenarios(out)
    clips(out)
    path = os.path.join(outdir, "sched_reference.txt")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(out) + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
