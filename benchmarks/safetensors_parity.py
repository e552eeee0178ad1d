#!/usr/bin/env python3
"""Parity of scorekit's safetensors weights with PyTorch, both ways, on the same inputs.

  python benchmarks/safetensors_parity.py --exe build/bench/benchmarks/safetensors_parity

scorekit -> PyTorch: the C++ program draws the weights of an MLP (Sequential<Dense<2,64>, Softplus,
Dense<64,64>, Softplus, Dense<64,2>>) and of the U-Net (channels 8, 16 on 8 x 8 images, 256 Fourier
features), writes them as safetensors and its outputs on inputs drawn here; PyTorch loads the files with
load_state_dict(strict=True) into torch.nn.Sequential and torch_image.py's UNet and RefineNetLite and
evaluates the same
inputs. PyTorch -> scorekit: PyTorch trains the MLP by denoising score matching on a 2-D Gaussian and
draws a UNet and a RefineNetLite, writes them with safetensors.torch.save_file; the C++ program loads them, evaluates the
same inputs, and samples the trained MLP score with ULA. Everything is float64, so the differences are
double rounding (a wrong layout gives differences of the size of the outputs). Needs torch, numpy and
safetensors (scripts/setup-bench.sh).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_image  # noqa: E402  (the reference UNet and RefineNetLite)
import torch_train  # noqa: E402  (the reference NoiseConditionalNet)


def mlp():
    # scorekit's Softplus is log(1 + e^x) everywhere; PyTorch's default switches to x above 20 (an error
    # of e^-20 = 2e-9 there), so the reference takes the exact form up to where e^x overflows.
    return nn.Sequential(nn.Linear(2, 64), nn.Softplus(threshold=700.0), nn.Linear(64, 64),
                         nn.Softplus(threshold=700.0), nn.Linear(64, 2)).double()


def unet():
    torch_image.EMBED = 256
    return torch_image.UNet(channels=(8, 16)).double()


def ncsn():
    return torch_train.NoiseConditionalNet().double()


def ncsn_eval(model, x):
    """Row i at level i % 10, as the C++ half evaluates it."""
    with torch.no_grad():
        return model(torch.from_numpy(x), torch.arange(len(x)) % 10).numpy()


def refinenet():
    return torch_image.RefineNetLite(channels=(8, 16, 16, 16)).double()


def refinenet_eval(model, x, sigma):
    """NCSN's form: the level's index, no division by sigma."""
    ladder = np.array(torch_image.LADDER)
    y = torch.from_numpy(np.argmin(np.abs(np.log(sigma[:, None]) - np.log(ladder[None, :])), axis=1))
    with torch.no_grad():
        out = model(torch.from_numpy(x).reshape(-1, 1, 8, 8), y)
    return out.reshape(-1, 64).numpy()


def unet_eval(model, x, sigma):
    """x: (n, 64) rows of 8 x 8 x 1 NHWC images, as scorekit holds them."""
    with torch.no_grad():
        y = model(torch.from_numpy(x).reshape(-1, 1, 8, 8), torch.from_numpy(sigma))
    return y.reshape(-1, 64).numpy()


def differences(a, b):
    scale = np.max(np.abs(b))
    return np.max(np.abs(a - b)), np.max(np.abs(a - b)) / scale, scale


def report(name, a, b, tolerance):
    d, rel, scale = differences(a, b)
    ok = rel <= tolerance
    print(f"  {name:<40} max |diff| {d:.3e}  relative to max |output| {scale:.3e}: {rel:.2e}"
          f"  {'ok' if ok else 'FAIL'}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exe", required=True, help="the safetensors_parity program (build/bench/benchmarks)")
    ap.add_argument("--dir", help="where the files go (default: a temporary folder)")
    args = ap.parse_args()
    d = args.dir or tempfile.mkdtemp(prefix="scorekit_parity_")
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x2 = rng.normal(size=(256, 2)) * 2.0
    ximg = rng.normal(size=(16, 64))
    sigma = np.exp(rng.uniform(np.log(0.01), np.log(50.0), size=16))
    np.save(os.path.join(d, "mlp_x.npy"), x2)
    np.save(os.path.join(d, "unet_x.npy"), ximg)
    np.save(os.path.join(d, "unet_sigma.npy"), sigma)
    np.save(os.path.join(d, "refinenet_x.npy"), ximg)
    np.save(os.path.join(d, "refinenet_ladder.npy"), np.array(torch_image.LADDER))
    np.save(os.path.join(d, "refinenet_sigma.npy"), np.array(torch_image.LADDER)[np.arange(16) % 10])
    # Double rounding through ~10 layers: a relative 1e-12 is thousands of ulps of room and a wrong
    # layout is off by order 1.
    tol = 1e-12
    ok = True

    print(f"scorekit -> PyTorch (files in {d})")
    subprocess.run([args.exe, "export", d], check=True)
    m = mlp()
    m.load_state_dict(load_file(os.path.join(d, "mlp.safetensors")), strict=True)
    with torch.no_grad():
        y = m(torch.from_numpy(x2)).numpy()
    ok &= report("MLP scores (256 points)", y, np.load(os.path.join(d, "mlp_scorekit.npy")), tol)
    nc = ncsn()
    nc.load_state_dict(load_file(os.path.join(d, "ncsn.safetensors")), strict=True)
    ok &= report("toy NCSN scores (256 points, 10 levels)", ncsn_eval(nc, x2),
                 np.load(os.path.join(d, "ncsn_scorekit.npy")), tol)
    u = unet()
    u.load_state_dict(load_file(os.path.join(d, "unet.safetensors")), strict=True)
    ok &= report("U-Net scores (16 images, 8 x 8)", unet_eval(u, ximg, sigma),
                 np.load(os.path.join(d, "unet_scorekit.npy")), tol)
    rn = refinenet()
    rn.load_state_dict(load_file(os.path.join(d, "refinenet.safetensors")), strict=True)
    rsigma = np.load(os.path.join(d, "refinenet_sigma.npy"))
    ok &= report("RefineNet-lite scores (16 images)", refinenet_eval(rn, ximg, rsigma),
                 np.load(os.path.join(d, "refinenet_scorekit.npy")), tol)

    print("PyTorch -> scorekit")
    # DSM at sigma = 0.3 on N(mean, diag(std^2)): the learned score is that of N(mean, std^2 + 0.09).
    mean, std, s = np.array([1.0, -2.0]), np.array([0.5, 1.5]), 0.3
    m = mlp()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 3000)
    data = torch.from_numpy(rng.normal(size=(20000, 2)) * std + mean)
    for step in range(3000):
        xb = data[torch.randint(0, len(data), (512,))]
        z = torch.randn_like(xb)
        loss = ((m(xb + s * z) * s + z) ** 2).sum(dim=1).mean() / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
    save_file(m.state_dict(), os.path.join(d, "mlp_torch.safetensors"))
    nc = ncsn()
    save_file(nc.state_dict(), os.path.join(d, "ncsn_torch.safetensors"))
    u = unet()
    state = {k: v.contiguous() for k, v in u.state_dict().items()}
    save_file(state, os.path.join(d, "unet_torch.safetensors"))
    rn = refinenet()
    with torch.no_grad():  # away from CondInstanceNormPP's start (gamma = alpha = 1, beta = 0)
        for p in rn.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_file({k: v.contiguous() for k, v in rn.state_dict().items()}, os.path.join(d, "refinenet_torch.safetensors"))
    subprocess.run([args.exe, "import", d], check=True)
    with torch.no_grad():
        y = m(torch.from_numpy(x2)).numpy()
    ok &= report("MLP scores (256 points)", y, np.load(os.path.join(d, "mlp_from_torch.npy")), tol)
    ok &= report("toy NCSN scores (256 points, 10 levels)", ncsn_eval(nc, x2),
                 np.load(os.path.join(d, "ncsn_from_torch.npy")), tol)
    ok &= report("U-Net scores (16 images, 8 x 8)", unet_eval(u, ximg, sigma),
                 np.load(os.path.join(d, "unet_from_torch.npy")), tol)
    ok &= report("RefineNet-lite scores (16 images)", refinenet_eval(rn, ximg, rsigma),
                 np.load(os.path.join(d, "refinenet_from_torch.npy")), tol)
    # The same ULA run in PyTorch (its own noise): both sample the density the trained score defines, so
    # their means and standard deviations agree within their standard errors.
    samples = np.load(os.path.join(d, "mlp_samples.npy"))
    g = torch.Generator().manual_seed(5)
    xt = torch.randn(len(samples), 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        for _ in range(2000):
            xt = xt + 0.5e-2 * m(xt) + np.sqrt(1e-2) * torch.randn(xt.shape, generator=g, dtype=torch.float64)
    ref = xt.numpy()
    n = len(samples)
    se = np.sqrt(samples.var(axis=0) / n + ref.var(axis=0) / n)
    z_mean = np.abs(samples.mean(axis=0) - ref.mean(axis=0)) / se
    # The standard error of a sample standard deviation is about std / sqrt(2 n) (normal data).
    se_std = np.sqrt(samples.var(axis=0) / (2 * n) + ref.var(axis=0) / (2 * n))
    z_std = np.abs(samples.std(axis=0) - ref.std(axis=0)) / se_std
    print(f"  ULA on the PyTorch-trained score, {n} particles x 2000 steps of 1e-2, scorekit vs PyTorch:")
    print(f"    mean {np.round(samples.mean(axis=0), 3)} vs {np.round(ref.mean(axis=0), 3)} "
          f"({np.round(z_mean, 2)} standard errors apart)")
    print(f"    std  {np.round(samples.std(axis=0), 3)} vs {np.round(ref.std(axis=0), 3)} "
          f"({np.round(z_std, 2)} standard errors apart)")
    print(f"    (the data: mean {mean}, std {np.round(np.sqrt(std ** 2 + s ** 2), 3)} with the DSM noise)")
    sample_ok = bool(np.all(z_mean < 4) and np.all(z_std < 4))
    print(f"    {'ok' if sample_ok else 'FAIL'}: within 4 standard errors")
    ok &= sample_ok
    print("parity: " + ("all within double rounding" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
