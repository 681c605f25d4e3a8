#!/usr/bin/env python3
"""PyTorch 2.x reference for what 2.x does differently from 1.13, or what
only 2.x defines, in hooks, optimizers and schedulers
(tests/test_hooks_torch2.c, tests/test_optim.c, tests/test_clip_sched.c).

Usage: PYTHON tests/parity/optim_reference_torch2.py OUTDIR, PYTHON being
PyTorch 2.x's (scripts/setup-torch2 prints it; tests/reference.c runs
every *_torch2.py script with it).

Writes OUTDIR/optim_torch2.safetensors (metadata "torch": the version):

  hooks.x                       the leaf x, and y = 3 x, loss = sum(y * y)
  hooks.retain_then_hook.ygrad  y.retain_grad(), then y.register_hook(2 g):
  hooks.retain_then_hook.xgrad    y.grad and x.grad after loss.backward()
  hooks.hook_then_retain.ygrad  the same, hook first
  hooks.between.ygrad           hook 2 g, retain_grad(), hook g + 1
  hooks.grad_nonleaf            autograd.grad(loss, y), y hooked with 2 g
  hooks.grad_leaf               autograd.grad(sum(x * x), x), x hooked with 2 g

  dup.<case>.a.<s>, .b.<s>      a group listing [a, b, a] (a warning in 2.x,
                                an error in zgrad before), after step s of 3;
                                before step s, a.grad = ga * (s + 1), b.grad
                                = gb; cases (metadata "dup_cases"):
                                sgd, sgd_momentum, sgd_nesterov, adam,
                                adam_amsgrad, adamw, rmsprop, adagrad
  dup.<case>.step               a's state step count after the 3 steps
                                (-1: the kind keeps none)
  dup.a0, dup.b0, dup.ga, dup.gb

  frozen.x, frozen.t, frozen.init.<j>   Linear(4, 3), tanh, Linear(3, 2),
                                mse_loss; parameters j = w1, b1, w2, b2
  frozen.<s>.<j>                Adam(lr 0.05) over all four with the first
                                layer frozen (requires_grad False) for steps
                                0-2, unfrozen for steps 3-5: the parameters
                                after step s
  frozen.steps                  Adam's step count per parameter at the end

and in its metadata "seq_mult" the lr (exact doubles, Python's repr)
after construction and each of 8 steps of SGD lr 0.1,
SequentialLR([ConstantLR(0.5, 3), MultiplicativeLR(0.9 if e % 2 else 0.8)],
milestones=[3]): at the milestone 2.x calls _update_lr(0), which
multiplies by lambda(0) (1.13's step(0) did not).
"""
import os
import sys
import warnings

import torch
from torch.optim import lr_scheduler as S

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import read_safetensors, write_safetensors  # noqa: E402

warnings.filterwarnings("ignore")


def hooks(out):
    x0 = torch.tensor([1.0, 2.0, -0.5])
    out["hooks.x"] = x0

    def leaf():
        return x0.clone().requires_grad_(True)

    for name, order in (("retain_then_hook", "rh"), ("hook_then_retain", "hr")):
        x = leaf()
        y = x * 3
        for step in order:
            if step == "r":
                y.retain_grad()
            else:
                y.register_hook(lambda g: g * 2)
        (y * y).sum().backward()
        out["hooks.%s.ygrad" % name] = y.grad.clone()
        out["hooks.%s.xgrad" % name] = x.grad.clone()

    x = leaf()
    y = x * 3
    y.register_hook(lambda g: g * 2)
    y.retain_grad()
    y.register_hook(lambda g: g + 1)
    (y * y).sum().backward()
    out["hooks.between.ygrad"] = y.grad.clone()

    x = leaf()
    y = x * 3
    y.register_hook(lambda g: g * 2)
    (gy,) = torch.autograd.grad((y * y).sum(), [y])
    out["hooks.grad_nonleaf"] = gy

    x = leaf()
    x.register_hook(lambda g: g * 2)
    (gx,) = torch.autograd.grad((x * x).sum(), [x])
    out["hooks.grad_leaf"] = gx


DUP_CASES = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1),
    "sgd_momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.1),
    "sgd_nesterov": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    "adam": lambda p: torch.optim.Adam(p, lr=0.1, weight_decay=0.1),
    "adam_amsgrad": lambda p: torch.optim.Adam(p, lr=0.1, amsgrad=True),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.1),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1),
}


def dup(out):
    a0, b0 = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.3, 0.7, -1.1])
    ga, gb = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([1.0, 0.25, -0.5])
    out.update({"dup.a0": a0, "dup.b0": b0, "dup.ga": ga, "dup.gb": gb})
    for case, make in DUP_CASES.items():
        a, b = torch.nn.Parameter(a0.clone()), torch.nn.Parameter(b0.clone())
        opt = make([a, b, a])
        for s in range(3):
            a.grad = ga * (s + 1)
            b.grad = gb.clone()
            opt.step()
            out["dup.%s.a.%d" % (case, s)] = a.detach().clone()
            out["dup.%s.b.%d" % (case, s)] = b.detach().clone()
        step = opt.state[a].get("step")
        out["dup.%s.step" % case] = torch.tensor(-1 if step is None else int(step), dtype=torch.int64)


def frozen(out):
    torch.manual_seed(7)
    l1, l2 = torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)
    params = [l1.weight, l1.bias, l2.weight, l2.bias]
    x, t = torch.randn(5, 4), torch.randn(5, 2)
    out["frozen.x"], out["frozen.t"] = x, t
    for j, p in enumerate(params):
        out["frozen.init.%d" % j] = p.detach().clone()
    l1.weight.requires_grad_(False)
    l1.bias.requires_grad_(False)
    opt = torch.optim.Adam(params, lr=0.05)
    for s in range(6):
        if s == 3:
            l1.weight.requires_grad_(True)
            l1.bias.requires_grad_(True)
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(l2(torch.tanh(l1(x))), t)
        loss.backward()
        opt.step()
        for j, p in enumerate(params):
            out["frozen.%d.%d" % (s, j)] = p.detach().clone()
    out["frozen.steps"] = torch.tensor([int(opt.state[p]["step"]) for p in params], dtype=torch.int64)


def seq_mult(out):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    q = S.SequentialLR(opt, [S.ConstantLR(opt, 0.5, 3), S.MultiplicativeLR(opt, lambda e: 0.9 if e % 2 else 0.8)],
                       [3])
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(8):
        opt.step()
        q.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: optim_reference_torch2.py OUTDIR")
    if int(torch.__version__.split(".")[0]) < 2:
        sys.exit("optim_reference_torch2.py needs PyTorch 2.x (scripts/setup-torch2), not %s" % torch.__version__)
    torch.set_num_threads(1)
    out = {}
    hooks(out)
    dup(out)
    frozen(out)
    lrs = seq_mult(out)
    meta = {"torch": torch.__version__, "dup_cases": ",".join(DUP_CASES),
            "seq_mult": " ".join(repr(v) for v in lrs)}
    path = os.path.join(sys.argv[1], "optim_torch2.safetensors")
    os.makedirs(sys.argv[1], exist_ok=True)
    write_safetensors(path, out, meta)
    read_safetensors(path)


if __name__ == "__main__":
    main()
