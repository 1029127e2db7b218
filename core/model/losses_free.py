"""Reconstruction loss terms that need no pretrained weights (issue #22).

Each returns one value per image, (B,), for an input x and its reconstruction y, both
(B, C, H, W) in [0, 1], like every term of core.model.losses (which registers them in the `--loss`
mix: "0.5*ssim+0.5*l1+0.2*randperc"). Why each is here:

  grad      L1 between the Sobel gradients of x and y (kornia.filters.spatial_gradient). An
            autoencoder's typical failure is the blurry average image; a gradient term charges
            for every edge the reconstruction smooths away, at the cost of one convolution.
            (Gradient-difference loss: Mathieu et al., "Deep multi-scale video prediction
            beyond mean square error", ICLR 2016.)
  ffl       focal frequency loss (Jiang et al., "Focal Frequency Loss for Image Reconstruction
            and Synthesis", ICCV 2021): squared distance of the 2-D spectra, each frequency
            weighted by its own (detached, per-image max-normalised) distance, so the
            hard-to-synthesise high frequencies a blurry reconstruction lacks are not drowned by
            the easy low ones. alpha = 1 as in the paper.
  randperc  perceptual distance on the features of a FIXED, seeded, randomly initialised conv
            net: LPIPS-style unit-normalised channel differences averaged over three scales.
            Zhang et al. ("The Unreasonable Effectiveness of Deep Features as a Perceptual
            Metric", CVPR 2018) report that even untrained random-weight networks agree with
            human judgements well above chance; Ulyanov et al. ("Deep Image Prior", CVPR 2018)
            show that conv structure alone carries an image prior. No weights are downloaded:
            the net is rebuilt from the seed on every device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.filters import spatial_gradient
from torch import nn

FREE_LOSS_NAMES = ("grad", "ffl", "randperc")
RANDOM_NET_SEED = 0
RANDOM_NET_WIDTHS = (3, 32, 64, 128)


def gradient_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) mean absolute difference of the Sobel x/y gradients of every channel."""
    return (spatial_gradient(x) - spatial_gradient(y)).abs().flatten(1).mean(1)


def focal_frequency_loss(x: torch.Tensor, y: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """(B,) focal frequency loss (Jiang et al. 2021), orthonormal 2-D FFT per channel."""
    fx = torch.fft.fft2(x.float(), norm="ortho")
    fy = torch.fft.fft2(y.float(), norm="ortho")
    distance = (fx - fy).abs().pow(2)  # (B, C, H, W) squared spectral distance
    with torch.no_grad():
        weight = distance.sqrt().pow(alpha)
        weight = weight / weight.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return (weight * distance).flatten(1).mean(1)


def _random_net(in_channels: int) -> nn.Module:
    """Three conv stages (3x3 conv + ReLU, then 2x2 average pool between stages), Kaiming
    initialised from RANDOM_NET_SEED without touching the global RNG; frozen."""
    generator = torch.Generator().manual_seed(RANDOM_NET_SEED)
    widths = (in_channels,) + RANDOM_NET_WIDTHS[1:]
    stages = []
    for cin, cout in zip(widths[:-1], widths[1:], strict=True):
        conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        with torch.no_grad():
            conv.weight.normal_(0.0, (2.0 / (cin * 9)) ** 0.5, generator=generator)
        stages.append(nn.Sequential(conv, nn.ReLU()))
    net = nn.ModuleList(stages)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


_NETS: dict[tuple[int, str, torch.dtype], nn.Module] = {}


def random_net(in_channels: int, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """The fixed random network for this channel count, cached per device and dtype."""
    key = (int(in_channels), str(device), dtype)
    if key not in _NETS:
        _NETS[key] = _random_net(in_channels).to(device=device, dtype=dtype)
    return _NETS[key]


def random_perceptual_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) LPIPS-style distance on random-weight conv features: at each of three stages the
    channel vectors are unit-normalised, their squared difference summed over channels and
    averaged over positions; the stages' values are averaged."""
    net = random_net(x.shape[1], x.device, x.dtype)
    a, b = x, y
    total = x.new_zeros(x.shape[0])
    for i, stage in enumerate(net):
        if i:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        a, b = stage(a), stage(b)
        na = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-6)
        nb = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-6)
        total = total + (na - nb).pow(2).sum(1).flatten(1).mean(1)
    return total / len(net)


def free_loss(name: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) the pretrained-free term `name` (one of FREE_LOSS_NAMES)."""
    if name == "grad":
        return gradient_loss(x, y)
    if name == "ffl":
        return focal_frequency_loss(x, y)
    if name == "randperc":
        return random_perceptual_loss(x, y)
    raise ValueError(f"unknown loss '{name}'; pretrained-free terms: {', '.join(FREE_LOSS_NAMES)}")
