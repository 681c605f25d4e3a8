#!/usr/bin/python3
"""PyTorch reference for the WGAN-GP parity test (tests/test_wgan_gp.c).

Usage: /usr/bin/python3 tests/parity/wgan_gp_reference.py OUTDIR

Writes OUTDIR/wgan_gp.safetensors: a WGAN-GP loop (Gulrajani et al. 2017)
on small MLPs, ROUNDS rounds of N_CRITIC critic steps and one generator
step, with the zero_grad placements such a loop needs (each optimizer
clears its own parameters at the top of its own step: the generator's
backward runs through the critic and leaves gradients in it).

  critic step: optD.zero_grad(); fake = G(z).detach()
               x_hat = alpha real + (1 - alpha) fake, requiring grad
               g = autograd.grad(D(x_hat), x_hat, ones, create_graph=True)
               gp = mean((|g|_2 per sample - 1)^2)
               loss = mean(D(fake)) - mean(D(real)) + LAMBDA gp
               loss.backward(); optD.step()
  generator step: optG.zero_grad(); loss = -mean(D(G(z)))
               loss.backward(); optG.step()

Adam(lr 1e-4, betas (0, 0.9)) for both, as the paper. Tensors:

  init.D.<j>, init.G.<j>        parameters in module order (weight, bias)
  critic.<s>.real, .z, .alpha   the batch of critic step s
  critic.<s>.gp, .loss          the penalty and the critic's loss
  critic.<s>.grad.<j>           D's grads after its backward
  gen.<r>.z                     the noise of generator step r
  gen.<r>.loss                  the generator's loss
  gen.<r>.grad.<j>              G's grads after its backward
  gen.<r>.dgrad.<j>             what that backward left in D's grads
  final.D.<j>, final.G.<j>      the parameters at the end
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import write_safetensors  # noqa: E402

DATA, NOISE, HID, BATCH = 4, 3, 16, 8
ROUNDS, N_CRITIC, LAMBDA = 2, 3, 10.0


def nets():
    torch.manual_seed(0)
    critic = torch.nn.Sequential(
        torch.nn.Linear(DATA, HID), torch.nn.LeakyReLU(0.2), torch.nn.Linear(HID, HID), torch.nn.LeakyReLU(0.2),
        torch.nn.Linear(HID, 1))
    gen = torch.nn.Sequential(torch.nn.Linear(NOISE, HID), torch.nn.ReLU(), torch.nn.Linear(HID, DATA))
    return critic, gen


def real_batch(gen):
    """Points near the vertices of a square, scaled (any fixed data)."""
    centres = torch.tensor([[1.0, 1.0, 0.0, 0.5], [-1.0, 1.0, 0.5, 0.0], [1.0, -1.0, -0.5, 0.0],
                            [-1.0, -1.0, 0.0, -0.5]])
    pick = torch.randint(0, 4, (BATCH,), generator=gen)
    return centres[pick] + 0.1 * torch.randn(BATCH, DATA, generator=gen)


def critic_step(t, s, critic, g, opt_d, gen, real_batch=real_batch, noise=NOISE):
    real = real_batch(gen)
    z = torch.randn(BATCH, noise, generator=gen)
    alpha = torch.rand(BATCH, 1, generator=gen)
    opt_d.zero_grad()
    fake = g(z).detach()
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    d_hat = critic(x_hat)
    grad = torch.autograd.grad(d_hat, x_hat, grad_outputs=torch.ones_like(d_hat), create_graph=True)[0]
    gp = ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
    loss = critic(fake).mean() - critic(real).mean() + LAMBDA * gp
    loss.backward()
    pre = "critic.%d." % s
    t[pre + "real"], t[pre + "z"], t[pre + "alpha"] = real, z, alpha
    t[pre + "gp"], t[pre + "loss"] = gp.detach(), loss.detach()
    for j, p in enumerate(critic.parameters()):
        t[pre + "grad.%d" % j] = p.grad.clone()
    opt_d.step()


def generator_step(t, r, critic, g, opt_g, gen, noise=NOISE):
    z = torch.randn(BATCH, noise, generator=gen)
    opt_g.zero_grad()
    loss = -critic(g(z)).mean()
    loss.backward()
    pre = "gen.%d." % r
    t[pre + "z"], t[pre + "loss"] = z, loss.detach()
    for j, p in enumerate(g.parameters()):
        t[pre + "grad.%d" % j] = p.grad.clone()
    for j, p in enumerate(critic.parameters()):
        t[pre + "dgrad.%d" % j] = p.grad.clone()
    opt_g.step()


def run(out, name, critic, g, real_batch, meta):
    """The loop above on these networks and data, written to OUTDIR/NAME.safetensors with meta."""
    os.makedirs(out, exist_ok=True)
    t = {}
    for j, p in enumerate(critic.parameters()):
        t["init.D.%d" % j] = p.detach().clone()
    for j, p in enumerate(g.parameters()):
        t["init.G.%d" % j] = p.detach().clone()
    opt_d = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=(0.0, 0.9))
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-4, betas=(0.0, 0.9))
    gen = torch.Generator().manual_seed(1)
    for r in range(ROUNDS):
        for k in range(N_CRITIC):
            critic_step(t, r * N_CRITIC + k, critic, g, opt_d, gen, real_batch, meta["noise"])
        generator_step(t, r, critic, g, opt_g, gen, meta["noise"])
    for j, p in enumerate(critic.parameters()):
        t["final.D.%d" % j] = p.detach().clone()
    for j, p in enumerate(g.parameters()):
        t["final.G.%d" % j] = p.detach().clone()
    meta = dict(meta, rounds=ROUNDS, n_critic=N_CRITIC, **{"lambda": LAMBDA}, batch=BATCH, torch=torch.__version__)
    write_safetensors(os.path.join(out, name + ".safetensors"), t, meta)


def main():
    critic, g = nets()
    run(sys.argv[1], "wgan_gp", critic, g, real_batch, {"data": DATA, "noise": NOISE, "hidden": HID})


if __name__ == "__main__":
    main()
