#!/usr/bin/python3
"""PyTorch reference runs for tests/test_parity.c.

Usage: /usr/bin/python3 tests/parity/torch_reference.py OUTDIR

For every scenario this builds a small MLP in float32 (torch.manual_seed),
makes its data, trains it for a few steps with a given loop and writes
OUTDIR/<scenario>.safetensors holding

  init.<param>          the initial weights, by parameter name ("0.weight")
  data.x.<s>, data.y.<s> (data.t.<s>)   the inputs and targets of step s
  loss                  [steps] the loss of each step (loss2: the second loss)
  grad.<s>.<param>      .grad after the last backward of step s, present
                        only where .grad is not None
  final.<param>         the parameters after the last step
  snap.<param>          (frozen runs) the parameters after step 0
  loss.weight, loss.pos_weight   loss options that are tensors

and in the metadata: the model ("arch"), the loss ("loss"), each
optimizer's kind and full hyperparameters per group ("optim.<k>"), and the
loop ("loop"), which the C test compares with the loop it runs.

Written against Debian's torch 1.13, whose defaults differ from 2.x in
places: every zero_grad passes set_to_none explicitly, and the optimizers
get foreach=False (the single-tensor arithmetic).
"""
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

STEPS = 20
BATCH = 16
N_IN, N_OUT = 20, 5
MLP = "linear 20 32;relu;linear 32 16;relu;linear 16 5"


# ---------------------------------------------------------------- file format

def bf16_sums_in_fp32():
    """Whether this torch sums the products of its CPU bf16 autocast matmul
    and conv2d (forward and backward) in float32 and rounds once, as
    oneDNN does and zgrad does. torch 1.13 sends bf16 products to oneDNN
    only on CPUs with AVX-512 (BW, VL, DQ); elsewhere its fallback GEMMs
    add each product into a bf16 result, several bf16 steps away. Measured
    here, not assumed: every result of a few products must be within one
    bf16 step of the float32 sum of the bf16-rounded operands."""
    gen = torch.Generator().manual_seed(5)

    def close(got, ref):
        got, ref = got.float(), ref.float()
        step = 2.0 ** -7 * torch.maximum(got.abs(), ref.abs()) + 1e-6
        return bool(((got - ref).abs() <= step).all())

    def r(t):
        return t.bfloat16().float()

    ok = True
    a = torch.randn(64, 300, generator=gen, requires_grad=True)
    b = torch.randn(300, 40, generator=gen, requires_grad=True)
    gy = torch.randn(64, 40, generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = a @ b
    y.backward(gy)
    g = r(gy)
    ok &= close(y, r(a) @ r(b))
    ok &= close(a.grad, g @ r(b).t()) and close(b.grad, r(a).t() @ g)
    x = torch.randn(2, 3, 10, 10, generator=gen, requires_grad=True)
    w = torch.randn(8, 3, 3, 3, generator=gen, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        yc = F.conv2d(x, w)
    gc = torch.randn(yc.shape, generator=gen)
    yc.backward(gc)
    xd = r(x.detach()).double().requires_grad_()
    wd = r(w.detach()).double().requires_grad_()
    yd = F.conv2d(xd, wd)
    yd.backward(r(gc).double())
    ok &= close(yc, yd) and close(x.grad, xd.grad) and close(w.grad, wd.grad)
    return ok


def write_safetensors(path, tensors, metadata):
    """safetensors: u64 little-endian header size, JSON header padded with
    spaces to a multiple of 8, then the tensors' bytes back to back."""
    header = {}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        if t.dtype == torch.float32:
            dtype, arr = "F32", t.detach().contiguous().numpy().astype("<f4")
        elif t.dtype == torch.int64:
            dtype, arr = "I64", t.detach().contiguous().numpy().astype("<i8")
        else:
            raise ValueError("%s: unsupported dtype %s" % (name, t.dtype))
        data = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = "%s.%d.tmp" % (path, os.getpid())  # atomic even with two runs at once
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    """Reads back a file written above (a self-check of the writer)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    out, end = {}, 0
    for name, h in header.items():
        b, e = h["data_offsets"]
        assert b == end, "tensors must cover the data in order"
        dt = {"F32": "<f4", "I64": "<i8"}[h["dtype"]]
        out[name] = np.frombuffer(data[b:e], dtype=dt).reshape(h["shape"])
        end = e
    assert end == len(data), "tensors must cover the data exactly"
    return out, meta


# ---------------------------------------------------------------- the pieces

def build_model(arch):
    """arch: ';'-separated layers, "linear IN OUT", "relu", "gelu",
    "gelu_tanh", "tanh", "sigmoid", "leaky_relu SLOPE"."""
    layers = []
    for spec in arch.split(";"):
        w = spec.split()
        if w[0] == "linear":
            layers.append(torch.nn.Linear(int(w[1]), int(w[2])))
        elif w[0] == "relu":
            layers.append(torch.nn.ReLU())
        elif w[0] == "gelu":
            layers.append(torch.nn.GELU())
        elif w[0] == "gelu_tanh":
            layers.append(torch.nn.GELU(approximate="tanh"))
        elif w[0] == "tanh":
            layers.append(torch.nn.Tanh())
        elif w[0] == "sigmoid":
            layers.append(torch.nn.Sigmoid())
        elif w[0] == "leaky_relu":
            layers.append(torch.nn.LeakyReLU(float(w[1])))
        else:
            raise ValueError(spec)
    return torch.nn.Sequential(*layers)


# Hyperparameters a group carries, per optimizer, in zgrad's names.
HPARAMS = {
    "sgd": ["lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize"],
    "adam": ["lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad", "maximize"],
    "adamw": ["lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad", "maximize"],
    "rmsprop": ["lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize"],
    "adagrad": ["lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps", "maximize"],
}
OPTIMS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
          "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad}


def build_optim(model, spec):
    """spec: (kind, defaults, groups); groups is None (one group: every
    parameter) or a list of (parameter names, overrides). Returns the
    optimizer and its description for the C side: "KIND | params=a,b k=v
    ... | ...", every hyperparameter of every group spelled out."""
    kind, defaults, groups = spec
    named = dict(model.named_parameters())
    if groups is None:
        groups = [(list(named), {})]
    torch_groups = [dict(params=[named[n] for n in names], **over) for names, over in groups]
    opt = OPTIMS[kind](torch_groups, foreach=False, **defaults)
    desc = [kind]
    for (names, _), g in zip(groups, opt.param_groups):
        items = ["params=" + ",".join(names)]
        for key in HPARAMS[kind]:
            if key in ("beta1", "beta2"):
                v = g["betas"][0 if key == "beta1" else 1]
            else:
                v = g[key]
            v = int(v) if isinstance(v, bool) else v
            items.append("%s=%r" % (key, v))
        desc.append(" ".join(items))
    return opt, " | ".join(desc)


def make_data(loss_spec, n):
    """Inputs and targets of one batch of n samples, from the global
    generator."""
    x = torch.randn(n, N_IN)
    kind = loss_spec.split()[0]
    if kind == "cross_entropy":
        y = torch.randint(0, N_OUT, (n,))
        if "ignore_index=-1" in loss_spec:
            y[torch.randperm(n)[:3]] = -1
    elif kind == "mse":
        y = torch.randn(n, N_OUT)
    elif kind == "bce_with_logits":
        y = (torch.rand(n, N_OUT) < 0.4).float()
    else:
        raise ValueError(loss_spec)
    return x, y


def make_loss(loss_spec, extra):
    """The loss function for a spec such as "cross_entropy label_smoothing=0.1
    ignore_index=-1 weight=1"; tensor options are drawn here and stored in
    `extra` (loss.weight, loss.pos_weight)."""
    w = loss_spec.split()
    opts = dict(kv.split("=") for kv in w[1:])
    if w[0] == "cross_entropy":
        kw = {}
        if "label_smoothing" in opts:
            kw["label_smoothing"] = float(opts["label_smoothing"])
        if "ignore_index" in opts:
            kw["ignore_index"] = int(opts["ignore_index"])
        if opts.get("weight") == "1":
            extra["loss.weight"] = kw["weight"] = torch.rand(N_OUT) + 0.5
        return lambda out, y: F.cross_entropy(out, y, **kw)
    if w[0] == "mse":
        return lambda out, y: F.mse_loss(out, y)
    if w[0] == "bce_with_logits":
        pw = None
        if opts.get("pos_weight") == "1":
            extra["loss.pos_weight"] = pw = torch.rand(N_OUT) + 0.5
        return lambda out, y: F.binary_cross_entropy_with_logits(out, y, pos_weight=pw)
    raise ValueError(loss_spec)


# ---------------------------------------------------------------- the loop

def loop_desc(pattern="B", set_to_none=True, freeze="-", micro=1, retain_twice=False, hooks=False,
              aux_mse=0.0, schedule="plain"):
    """The loop's options as one canonical string (test_parity.c formats
    its own the same way and compares)."""
    return ("pattern=%s set_to_none=%d freeze=%s micro=%d retain_twice=%d hooks=%d aux_mse=%g schedule=%s" %
            (pattern, set_to_none, freeze, micro, retain_twice, hooks, aux_mse, schedule))


# Every scenario run() wrote, in order; main() lists them in
# OUTDIR/parity_scenarios.txt, the one list of scenarios (test_parity.c
# replays each one it names).
SCENARIOS = []


def run(outdir, name, description, optims, arch=MLP, loss="cross_entropy", seed=0, steps=STEPS, batch=BATCH,
        **loop):
    """Trains and records one scenario.

    loop options (see loop_desc):
      pattern       "B": zero_grad at the top of the step; "A": after the
                    forward, right before backward
      set_to_none   passed to every zero_grad
      freeze        parameter whose requires_grad is turned off after step 0
      micro         micro-batches per step, backward(loss / micro) each
      retain_twice  backward(retain_graph=True), then backward again
      hooks         hook on "2.weight" (grad * 0.5) and on the first
                    activation's output (grad * 2)
      aux_mse       second loss aux_mse * mse(logits, t), its own backward
      schedule      "plain": every optimizer zero_grads and steps each step;
                    "split": two optimizers, see below
    """
    o = dict(pattern="B", set_to_none=True, freeze="-", micro=1, retain_twice=False, hooks=False, aux_mse=0.0,
             schedule="plain")
    o.update(loop)
    torch.manual_seed(seed)
    model = build_model(arch)
    model.train()
    tensors = {}
    for n, p in model.named_parameters():
        tensors["init." + n] = p.detach().clone()
    extra = {}
    loss_fn = make_loss(loss, extra)
    tensors.update(extra)
    opts, descs = zip(*(build_optim(model, spec) for spec in optims))
    named = dict(model.named_parameters())
    if o["hooks"]:
        named["2.weight"].register_hook(lambda g: g * 0.5)

    losses, losses2 = [], []
    for s in range(steps):
        x, y = make_data(loss, batch * o["micro"])
        tensors["data.x.%d" % s] = x
        tensors["data.y.%d" % s] = y
        if o["aux_mse"]:
            t = torch.randn(batch, N_OUT)
            tensors["data.t.%d" % s] = t

        def zero_grad():
            if o["schedule"] == "plain":
                for opt in opts:
                    opt.zero_grad(set_to_none=o["set_to_none"])
            # "split": opts[0] has the first layer, opts[1] the rest. Step
            # s%3==0: model.zero_grad; 1: both optimizers' zero_grad (and
            # only opts[1] steps); 2: only opts[1].zero_grad, so the first
            # layer accumulates the grads of steps 1 and 2 before opts[0]
            # steps on them.
            elif s % 3 == 0:
                model.zero_grad(set_to_none=o["set_to_none"])
            elif s % 3 == 1:
                opts[0].zero_grad(set_to_none=o["set_to_none"])
                opts[1].zero_grad(set_to_none=o["set_to_none"])
            else:
                opts[1].zero_grad(set_to_none=o["set_to_none"])

        if o["pattern"] == "B":
            zero_grad()
        total = torch.zeros(())
        for k in range(o["micro"]):
            xb, yb = x[k * batch:(k + 1) * batch], y[k * batch:(k + 1) * batch]
            h = xb
            for i, m in enumerate(model):
                h = m(h)
                if o["hooks"] and i == 1:
                    h.register_hook(lambda g: g * 2.0)
            l = loss_fn(h, yb)
            if o["micro"] > 1:
                l = l / o["micro"]
            total += l.detach()
            if o["pattern"] == "A":
                zero_grad()
            if o["aux_mse"]:
                l2 = o["aux_mse"] * F.mse_loss(h, t)
                losses2.append(l2.detach())
                l.backward(retain_graph=True)
                l2.backward()
            elif o["retain_twice"]:
                l.backward(retain_graph=True)
                l.backward()
            else:
                l.backward()
        losses.append(total)
        for n, p in model.named_parameters():
            if p.grad is not None:
                tensors["grad.%d.%s" % (s, n)] = p.grad.detach().clone()
        if o["schedule"] == "split":
            opts[1].step()
            if s % 3 != 1:
                opts[0].step()
        else:
            for opt in opts:
                opt.step()
        if o["freeze"] != "-" and s == 0:
            named[o["freeze"]].requires_grad_(False)
            for n, p in model.named_parameters():
                tensors["snap." + n] = p.detach().clone()

    tensors["loss"] = torch.stack(losses).float()
    if losses2:
        tensors["loss2"] = torch.stack(losses2).float()
    for n, p in model.named_parameters():
        tensors["final." + n] = p.detach().clone()
    meta = {"scenario": name, "description": description, "torch": torch.__version__, "arch": arch,
            "loss": loss, "steps": steps, "batch": batch, "loop": loop_desc(**loop), "optimizers": len(optims)}
    for k, d in enumerate(descs):
        meta["optim.%d" % k] = d
    path = os.path.join(outdir, name + ".safetensors")
    write_safetensors(path, tensors, meta)
    SCENARIOS.append(name)
    back, back_meta = read_safetensors(path)
    assert back_meta["loop"] == meta["loop"] and set(back) == set(tensors)
    for k, t in tensors.items():
        assert np.array_equal(back[k], t.numpy()), k
    return tensors


# ---------------------------------------------------------------- scenarios

def sgd(lr=0.1, **kw):
    return ("sgd", dict(lr=lr, **kw), None)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: torch_reference.py OUTDIR")
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    torch.set_default_dtype(torch.float32)

    # (a) zero_grad after the forward or at the top of the step: same run.
    a = run(outdir, "pattern_a", "zero_grad after forward, before backward", [sgd(momentum=0.9)], pattern="A")
    b = run(outdir, "pattern_b", "zero_grad at the top of the step", [sgd(momentum=0.9)], pattern="B")
    for k in a:
        assert torch.equal(a[k], b[k]), "patterns A and B differ in torch: " + k

    # (b) every optimizer and option.
    optim_cases = [
        ("optim_sgd", "SGD", sgd(0.1)),
        ("optim_sgd_momentum", "SGD momentum, dampening, weight decay",
         sgd(0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
        ("optim_sgd_nesterov", "SGD nesterov", sgd(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
        ("optim_sgd_maximize", "SGD maximize with momentum", sgd(0.01, momentum=0.5, maximize=True)),
        ("optim_adam", "Adam", ("adam", dict(lr=1e-2), None)),
        ("optim_adam_amsgrad_wd", "Adam amsgrad, weight decay, betas",
         ("adam", dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.01, amsgrad=True), None)),
        ("optim_adamw", "AdamW", ("adamw", dict(lr=1e-2, weight_decay=0.05), None)),
        ("optim_adamw_amsgrad_maximize", "AdamW amsgrad, maximize",
         ("adamw", dict(lr=1e-3, amsgrad=True, maximize=True, eps=1e-6), None)),
        ("optim_rmsprop", "RMSprop", ("rmsprop", dict(lr=1e-2), None)),
        ("optim_rmsprop_centered", "RMSprop centered, momentum, weight decay",
         ("rmsprop", dict(lr=1e-3, alpha=0.9, centered=True, momentum=0.9, weight_decay=0.01), None)),
        ("optim_adagrad", "Adagrad lr_decay, initial_accumulator_value, weight decay",
         ("adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1, weight_decay=0.01), None)),
    ]
    for name, desc, spec in optim_cases:
        run(outdir, name, desc, [spec])

    # (c) a layer frozen after step 0: a zero grad keeps moving it through
    # momentum and weight decay, a None grad leaves it alone.
    frozen = sgd(0.05, momentum=0.9, weight_decay=0.05)
    z = run(outdir, "frozen_zero", "0.weight frozen after step 0, zero_grad(set_to_none=False)", [frozen],
            set_to_none=False, freeze="0.weight")
    n = run(outdir, "frozen_none", "0.weight frozen after step 0, zero_grad(set_to_none=True)", [frozen],
            set_to_none=True, freeze="0.weight")
    assert torch.equal(n["final.0.weight"], n["snap.0.weight"])
    assert not torch.allclose(z["final.0.weight"], z["snap.0.weight"])

    # (d) two parameter groups.
    run(outdir, "param_groups", "two groups: first layer lr 0.1 no decay, rest lr 0.02 decay 0.01",
        [("sgd", dict(lr=0.05, momentum=0.9),
          [(["0.weight", "0.bias"], dict(lr=0.1, weight_decay=0.0)),
           (["2.weight", "2.bias", "4.weight", "4.bias"], dict(lr=0.02, weight_decay=0.01))])])

    # (e) two losses, two backwards into the same grads.
    run(outdir, "two_losses", "cross_entropy + 0.1 * mse(logits, t), backwarded one after the other",
        [sgd(0.05, momentum=0.9)], aux_mse=0.1)

    # (f) gradient accumulation equals one large batch.
    m = run(outdir, "accum_micro", "4 micro-batches of 16, backward(loss / 4) each", [sgd(0.1, momentum=0.9)],
            micro=4)
    f = run(outdir, "accum_full", "one batch of 64", [sgd(0.1, momentum=0.9)], batch=64)
    for k in m:
        if k.startswith(("final.", "grad.", "loss")):
            err = ((m[k] - f[k]).norm() / f[k].norm()).item()
            assert err < 1e-5, "accumulation differs from the full batch: %s %g" % (k, err)

    # (g) two backwards through a retained graph: doubled grads.
    run(outdir, "retain_twice", "backward(retain_graph=True) then backward again", [sgd(0.05)],
        retain_twice=True)

    # (h) gradient hooks on a parameter and on an activation.
    run(outdir, "hooks", "hook grad*0.5 on 2.weight, grad*2 on the first ReLU's output", [sgd(0.1)], hooks=True)

    # (i) two optimizers on two halves of one model.
    run(outdir, "two_optimizers", "SGD on the first layer, Adam on the rest; model vs optimizer zero_grad",
        [("sgd", dict(lr=0.1, momentum=0.9), [(["0.weight", "0.bias"], {})]),
         ("adam", dict(lr=1e-2), [(["2.weight", "2.bias", "4.weight", "4.bias"], {})])], schedule="split")

    # (j) the other losses.
    run(outdir, "loss_mse", "regression, mse_loss", [sgd(0.05)], loss="mse")
    run(outdir, "loss_bce", "multi-label, bce_with_logits with pos_weight", [sgd(0.1)],
        loss="bce_with_logits pos_weight=1")
    run(outdir, "loss_ce_options", "cross_entropy label_smoothing 0.1, class weights, ignore_index -1",
        [sgd(0.1)], loss="cross_entropy label_smoothing=0.1 ignore_index=-1 weight=1")

    # (k) the other activations (dropout has its own random stream: not here).
    run(outdir, "activations", "gelu, tanh, leaky_relu, gelu(tanh), sigmoid",
        [("adam", dict(lr=1e-2), None)],
        arch="linear 20 32;gelu;linear 32 32;tanh;linear 32 16;leaky_relu 0.1;linear 16 16;gelu_tanh;"
             "linear 16 16;sigmoid;linear 16 5")

    # Written last: its date tells the C test that every file above is new.
    with open(os.path.join(outdir, "parity_scenarios.txt"), "w") as f:
        f.write("".join(n + "\n" for n in SCENARIOS))


if __name__ == "__main__":
    main()
