"""Reconstruction losses written as weighted mixes: "0.5*ssim+0.5*l1".

Every loss returns one value per image, because scoring, validation and diagnostics all need
per-image numbers; training takes the mean. SSIM comes from kornia, which also gives the
per-pixel SSIM map the `ssim` scoring method uses.
"""

from __future__ import annotations

import re

import torch
from kornia.losses import binary_focal_loss_with_logits
from kornia.metrics import ssim as kornia_ssim
from torch import nn

from core.model.losses_free import FREE_LOSS_NAMES, free_loss

LOSS_NAMES = ("l1", "l2", "ssim") + FREE_LOSS_NAMES  # pretrained-free terms: core.model.losses_free
_TERM = re.compile(r"^\s*(?:(\d*\.?\d+(?:e-?\d+)?)\s*\*\s*)?([a-z0-9_]+)\s*$")


def parse_loss_spec(spec: str) -> list[tuple[float, str]]:
    """'0.5*ssim+0.5*l1' -> [(0.5, 'ssim'), (0.5, 'l1')]; a bare name has weight 1."""
    terms = []
    for part in str(spec).lower().split("+"):
        match = _TERM.match(part)
        if not match or match.group(2) not in LOSS_NAMES:
            raise ValueError(
                f"loss '{spec}': cannot read term '{part.strip()}'; write terms like 0.5*ssim+0.5*l1 "
                f"using {', '.join(LOSS_NAMES)}"
            )
        weight = float(match.group(1)) if match.group(1) else 1.0
        terms.append((weight, match.group(2)))
    if not terms or sum(w for w, _ in terms) <= 0:
        raise ValueError(f"loss '{spec}': weights must add up to more than 0")
    return terms


def ssim_window(height: int, width: int, preferred: int = 11) -> int:
    """The largest odd window up to `preferred` that fits the image."""
    window = min(preferred, height, width)
    return window if window % 2 == 1 else window - 1


def ssim_error_map(x: torch.Tensor, y: torch.Tensor, window: int = 11) -> torch.Tensor:
    """(B, C, H, W) pair -> (B, H, W) of 1 - SSIM, averaged over channels."""
    win = ssim_window(x.shape[-2], x.shape[-1], window)
    return 1.0 - kornia_ssim(x, y, win, max_val=1.0).mean(dim=1)


def per_image_loss(name: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) loss of one kind between input x and reconstruction y."""
    if name == "l1":
        return (x - y).abs().flatten(1).mean(1)
    if name == "l2":
        return (x - y).pow(2).flatten(1).mean(1)
    if name == "ssim":
        return ssim_error_map(x, y).flatten(1).mean(1)
    if name in FREE_LOSS_NAMES:
        return free_loss(name, x, y)
    raise ValueError(f"unknown loss '{name}'")


class ReconstructionLoss(nn.Module):
    """Weighted mix; `forward` returns (B,) per-image values, `components` each term's."""

    def __init__(self, spec: str = "0.5*ssim+0.5*l1"):
        super().__init__()
        self.spec = spec
        self.terms = parse_loss_spec(spec)

    def components(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: per_image_loss(name, x, y) for _, name in self.terms}

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        parts = self.components(x, y)
        return sum(weight * parts[name] for weight, name in self.terms)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """(B,) per-image binary focal loss (Lin et al. 2017) of mask logits against a 0/1 mask.

    logits, target: (B, 1, H, W). Focal rather than plain cross-entropy because anomalous
    pixels are a few percent of every image (DRAEM's choice, gamma 2). From kornia.
    """
    per_pixel = binary_focal_loss_with_logits(
        logits, target.float(), alpha=None, gamma=gamma, reduction="none"
    )
    return per_pixel.flatten(1).mean(1)
