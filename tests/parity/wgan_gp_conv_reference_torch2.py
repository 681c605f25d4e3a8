"""PyTorch 2.x reference for the convolutional WGAN-GP parity test
(tests/test_wgan_gp.c): the loop of wgan_gp_reference.py (same steps,
zero_grad placements, Adam and tensor names, written to
OUTDIR/wgan_gp_conv.safetensors) with a DCGAN-style critic on 8x8
single-channel images:

  critic:    Conv2d(1, 8, 4, stride 2, padding 1) LeakyReLU(0.2)
             Conv2d(8, 16, 4, stride 2, padding 1) LeakyReLU(0.2)
             Flatten Linear(64, 1)
  generator: Linear(NOISE, HID) ReLU Linear(HID, 64) Tanh Unflatten(1, (1, 8, 8))

(no normalisation in the critic, as the penalty is per sample). The
penalty's norm runs over each sample's 64 input-gradient values.

Usage: <torch 2.x python> tests/parity/wgan_gp_conv_reference_torch2.py OUTDIR
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wgan_gp_reference as ref  # noqa: E402

NOISE, HID, SIDE = 8, 32, 8


def nets():
    torch.manual_seed(0)
    critic = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 4, stride=2, padding=1), torch.nn.LeakyReLU(0.2),
        torch.nn.Conv2d(8, 16, 4, stride=2, padding=1), torch.nn.LeakyReLU(0.2), torch.nn.Flatten(),
        torch.nn.Linear(16 * (SIDE // 4) ** 2, 1))
    gen = torch.nn.Sequential(torch.nn.Linear(NOISE, HID), torch.nn.ReLU(), torch.nn.Linear(HID, SIDE * SIDE),
                              torch.nn.Tanh(), torch.nn.Unflatten(1, (1, SIDE, SIDE)))
    return critic, gen


def real_batch(gen):
    """Blurred squares at random places, in [-1, 1] (any fixed data)."""
    x = torch.full((ref.BATCH, 1, SIDE, SIDE), -1.0)
    corner = torch.randint(0, SIDE - 3, (ref.BATCH, 2), generator=gen)
    for b in range(ref.BATCH):
        i, j = corner[b].tolist()
        x[b, 0, i:i + 4, j:j + 4] = 1.0
    return x + 0.1 * torch.randn(x.shape, generator=gen)


def main():
    critic, g = nets()
    ref.run(sys.argv[1], "wgan_gp_conv", critic, g, real_batch, {"side": SIDE, "noise": NOISE, "hidden": HID})


if __name__ == "__main__":
    main()
