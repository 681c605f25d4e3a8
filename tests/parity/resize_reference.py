#!/usr/bin/python3
"""PyTorch reference for image resizing in tests/test_data_sources.c.

Usage: /usr/bin/python3 tests/parity/resize_reference.py OUTDIR

Each case is a test pattern image (tests/image_writer.h's zgt_pattern:
pixel (31 y + 17 x + 89 c + 7 seed) mod 256 of an [h, w, k] image) as a
uint8 tensor [C, h, w], resized to SIZE as torchvision's
Resize(SIZE, antialias=False) resizes a uint8 tensor: F.interpolate in
float, bilinear, align_corners=False, then rounded (half to even) and
clamped to [0, 255]. Writes OUTDIR/resize.safetensors with, per case i
(the metadata "cases" lists "h,w,k,seed" for each, "size" is "H,W"):
    raw.<i>     [C, H, W] float32: the interpolation before rounding
    out.<i>     [C, H, W] float32: the rounded bytes
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import write_safetensors  # noqa: E402

SIZE = (6, 7)
# Larger, smaller, the same size, grey, and each side alone scaled.
CASES = [(9, 13, 3, 1), (4, 3, 3, 2), (6, 7, 3, 3), (11, 5, 1, 4), (6, 20, 3, 5), (17, 7, 3, 6)]


def pattern(h, w, k, seed):
    y = torch.arange(h).view(h, 1, 1)
    x = torch.arange(w).view(1, w, 1)
    c = torch.arange(k).view(1, 1, k)
    return ((31 * y + 17 * x + 89 * c + 7 * seed) % 256).to(torch.uint8)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: resize_reference.py OUTDIR")
    os.makedirs(sys.argv[1], exist_ok=True)
    out = {}
    for i, (h, w, k, seed) in enumerate(CASES):
        img = pattern(h, w, k, seed).permute(2, 0, 1)  # [k, h, w]
        if k == 1:  # the folder holds colour images: grey is repeated
            img = img.repeat(3, 1, 1)
        raw = F.interpolate(img.float()[None], size=SIZE, mode="bilinear", align_corners=False)[0]
        out["raw.%d" % i] = raw.contiguous()
        out["out.%d" % i] = raw.round().clamp(0, 255).contiguous()
    meta = {"cases": ";".join("%d,%d,%d,%d" % c for c in CASES), "size": "%d,%d" % SIZE}
    write_safetensors(os.path.join(sys.argv[1], "resize.safetensors"), out, meta)


if __name__ == "__main__":
    main()
