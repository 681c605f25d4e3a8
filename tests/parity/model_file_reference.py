#!/usr/bin/python3
"""PyTorch reference for the model files of tests/test_model_file.c.

Usage: /usr/bin/python3 tests/parity/model_file_reference.py OUTDIR

Each case is a model file (models/cnn.json, models/mlp.json, and one that
uses every other layer type, some arguments positional) built as PyTorch
builds it: nn.Sequential(*[getattr(nn, type)(*args, **kwargs)]); and a GPT
layer built as nanoGPT's GPT(GPTConfig(**arguments)) (gpt_reference.Gpt,
nanoGPT's structure and names). Writes
OUTDIR/model_file.safetensors with, per case <c> (listed in the metadata
key "cases"; the metadata key "spec.<c>" holds the file's text):
    <c>.sd.<name>   the state_dict (parameters and buffers, BatchNorm's
                    running statistics set to random values)
    <c>.x, <c>.y    an input batch of 3 and the eval-mode output
and for the GPT the metadata "params.gpt" (the parameters, the tied head
once: sum of numel over model.parameters()) and "num_params.gpt" (nanoGPT's
get_num_params(): less the position embeddings); its state_dict's
lm_head.weight is left out, asserted to be transformer.wte.weight.
"""
import json
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import read_safetensors, write_safetensors  # noqa: E402
from gpt_reference import Gpt  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")

EVERY_LAYER = {
    "input": [3, 8, 8],
    "layers": [
        {"type": "Conv2d", "args": [3, 4, [3, 3]], "padding": 1, "bias": False},
        {"type": "BatchNorm2d", "num_features": 4, "momentum": None},
        {"type": "LeakyReLU", "args": [0.2]},
        {"type": "AvgPool2d", "kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
         "count_include_pad": False},
        {"type": "Conv2d", "in_channels": 4, "out_channels": 6, "kernel_size": 3, "stride": 2, "groups": 2},
        {"type": "MaxPool2d", "kernel_size": 2, "stride": 1, "padding": 1, "ceil_mode": True},
        {"type": "AdaptiveAvgPool2d", "output_size": 2},
        {"type": "AvgPool2d", "args": [2, 1], "divisor_override": 3},
        {"type": "Flatten"},
        {"type": "Linear", "args": [6, 16]},
        {"type": "BatchNorm1d", "args": [16]},
        {"type": "GELU", "approximate": "tanh"},
        {"type": "Dropout", "p": 0.3},
        {"type": "Linear", "in_features": 16, "out_features": 8, "bias": True},
        {"type": "GELU"},
        {"type": "Tanh"},
        {"type": "Linear", "args": [8, 5]},
        {"type": "Sigmoid"},
        {"type": "ReLU", "inplace": True},
    ],
}

GPT = {"input": [12], "layers": [{"type": "GPT", "vocab_size": 11, "block_size": 16, "n_layer": 2, "n_head": 2,
                                  "n_embd": 8, "dropout": 0.0, "bias": True}]}


def build(spec):
    if spec["layers"][0]["type"] == "GPT":
        return Gpt({k: v for k, v in spec["layers"][0].items() if k != "type"})
    layers = []
    for layer in spec["layers"]:
        kwargs = {k: v for k, v in layer.items() if k not in ("type", "args")}
        args = [tuple(a) if isinstance(a, list) else a for a in layer.get("args", [])]
        layers.append(getattr(nn, layer["type"])(*args, **kwargs))
    return nn.Sequential(*layers)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: model_file_reference.py OUTDIR")
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    cases = []
    for name in ("cnn", "mlp"):
        with open(os.path.join(ROOT, "models", name + ".json")) as f:
            cases.append((name, f.read()))
    cases.append(("every", json.dumps(EVERY_LAYER)))
    cases.append(("gpt", json.dumps(GPT)))
    out, meta = {}, {}
    torch.manual_seed(0)
    for name, text in cases:
        spec = json.loads(text)
        model = build(spec)
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.5, 0.5)
        model.eval()
        gpt = spec["layers"][0]["type"] == "GPT"
        if gpt:
            x = torch.randint(0, spec["layers"][0]["vocab_size"], [3] + spec["input"])
        else:
            x = torch.randn([3] + spec["input"])
        with torch.no_grad():
            y = model(x)
        sd = model.state_dict()
        if gpt:
            assert sd["lm_head.weight"].data_ptr() == sd["transformer.wte.weight"].data_ptr()
            del sd["lm_head.weight"]
            params = sum(p.numel() for p in model.parameters())
            meta["params." + name] = str(params)
            meta["num_params." + name] = str(params - model.transformer.wpe.weight.numel())
        for k, v in sd.items():
            out["%s.sd.%s" % (name, k)] = v.detach().clone()
        out[name + ".x"] = x
        out[name + ".y"] = y
        meta["spec." + name] = text
    meta["cases"] = ",".join(c[0] for c in cases)
    path = os.path.join(outdir, "model_file.safetensors")
    write_safetensors(path, out, meta)
    read_safetensors(path)


if __name__ == "__main__":
    main()
