"""A configurable U-Net autoencoder whose encoder features are first-class outputs.

Levels are numbered from the top: level 0 is the full-resolution stem, level `depth` the
bottleneck. Skip level k (1..depth) joins encoder level k-1 to the decoder at that resolution,
so `skips="1"` keeps only the full-resolution shortcut, the one that copies anomalies through
most readily, and `skips="none"` is a plain autoencoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from core.config import ModelConfig


def parse_levels(spec: str | int | Sequence[int], depth: int, *, lowest: int = 0,
                 words: Sequence[str] = ("all", "bottleneck"), default: Sequence[int] = (),
                 what: str = "levels") -> tuple[int, ...]:
    """Encoder levels named by `spec`, sorted and unique: the one parser of level choices
    (skips, scoring features, diagnostics features).

    Levels follow this module: 0 is the full-resolution stem, `depth` the bottleneck; valid
    ones run from `lowest` to `depth`. spec: levels (an int, a list, or text like "1,2") or
    one of `words`: "all" (lowest..depth), "none" or "" (no level), "bottleneck" ((depth,)),
    "auto" (`default` without the levels this model lacks, else the bottleneck).
    Raises ValueError naming `what` and what to write instead.
    """
    if isinstance(spec, (list, tuple)):
        chosen = tuple(int(v) for v in spec)
    elif isinstance(spec, int):
        chosen = (spec,)
    else:
        text = str(spec).strip().lower()
        named = {"all": tuple(range(lowest, depth + 1)), "none": (), "bottleneck": (depth,),
                 "auto": tuple(v for v in default if v <= depth) or (depth,)}
        text = "none" if text == "" and "none" in words else text
        if text in words:
            chosen = named[text]
        else:
            try:
                chosen = tuple(int(part) for part in text.split(","))
            except ValueError as err:
                raise ValueError(f"{what} '{spec}': use {', '.join(words)} or levels like 1,2") from err
    bad = [v for v in chosen if not lowest <= v <= depth]
    if bad or (not chosen and "none" not in words):
        raise ValueError(f"{what} {', '.join(map(str, bad)) or '(none)'} out of range: this model has "
                         f"levels {lowest}..{depth}")
    return tuple(sorted(set(chosen)))


def parse_skips(skips: str | list[int] | tuple[int, ...], depth: int) -> tuple[int, ...]:
    """"all" -> (1..depth), "none" -> (), "1,2" -> (1, 2); levels outside 1..depth are an error."""
    return parse_levels(skips, depth, lowest=1, words=("all", "none"), what="skips")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        # Instance normalisation (OmniAL: batches mix categories) computed as a GroupNorm with
        # one channel per group: the same function and the same state-dict keys (weight, bias)
        # as nn.InstanceNorm2d(affine=True), and 6x faster forward on a CPU (torch 2.13).
        return nn.GroupNorm(channels, channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


def _activation(kind: str) -> nn.Module:
    # in place where autograd allows it (ReLU and LeakyReLU take their gradient from their
    # output): a new (B, C, H, W) buffer per activation made ReLU cost 15x more on a CPU
    return {"relu": lambda: nn.ReLU(inplace=True),
            "leaky_relu": lambda: nn.LeakyReLU(0.2, inplace=True), "gelu": nn.GELU,
            "silu": nn.SiLU}[kind]()


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by norm and activation."""

    def __init__(self, in_ch: int, out_ch: int, norm: str, activation: str):
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=bias), _norm(norm, out_ch), _activation(activation),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=bias), _norm(norm, out_ch), _activation(activation),
        )


class UpBlock(nn.Module):
    """Transposed-conv upsampling, optional concatenation with a skip, then a ConvBlock."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, norm: str, activation: str):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, kernel_size=2, stride=2)
        self.block = ConvBlock(out_ch + skip_ch, out_ch, norm, activation)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(x)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.block(x)


class UNetAutoencoder(nn.Module):
    """Input (B, C, H, W) in [0, 1] -> reconstruction of the same shape in [0, 1].

    H and W must be divisible by 2**depth.
    """

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config or ModelConfig()
        cfg = self.config
        self.skip_levels = parse_skips(cfg.skips, cfg.depth)
        widths = [cfg.base_width * 2 ** i for i in range(cfg.depth + 1)]
        self.widths = widths
        self.stem = ConvBlock(cfg.in_channels, widths[0], cfg.norm, cfg.activation)
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), ConvBlock(widths[i], widths[i + 1], cfg.norm, cfg.activation))
            for i in range(cfg.depth)
        )
        deepest = widths[-1]
        if cfg.bottleneck_channels:
            self.squeeze = nn.Conv2d(deepest, cfg.bottleneck_channels, 1)
            self.unsqueeze = nn.Conv2d(cfg.bottleneck_channels, deepest, 1)
        else:
            self.squeeze = self.unsqueeze = nn.Identity()
        self.up = nn.ModuleList()
        for level in range(cfg.depth, 0, -1):  # decoder goes from the bottleneck upwards
            skip_ch = widths[level - 1] if level in self.skip_levels else 0
            self.up.append(UpBlock(widths[level], skip_ch, widths[level - 1], cfg.norm, cfg.activation))
        self.head = nn.Conv2d(widths[0], cfg.in_channels, 1)

    def encode(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        """Features of every level, [level 0 (B, w0, H, W), ..., bottleneck (B, wD, H/2^D, W/2^D)].

        upto: stop after that level (levels 0..upto returned, the deeper ones never computed),
        for callers that read shallow levels only; None = through the bottleneck.
        """
        last = self.config.depth if upto is None else min(int(upto), self.config.depth)
        features = [self.stem(x)]
        for down in self.down[:last]:
            features.append(down(features[-1]))
        if last == self.config.depth:
            features[-1] = self.squeeze(features[-1])
        return features

    def decode(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.unsqueeze(features[-1])
        for i, up in enumerate(self.up):
            level = self.config.depth - i
            x = up(x, features[level - 1] if level in self.skip_levels else None)
        return torch.sigmoid(self.head(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def architecture_mismatch(weights: dict[str, torch.Tensor], model: torch.nn.Module) -> str | None:
    """One line naming how a state dict differs from a model, or None when it fits.

    torch's own message lists every tensor (hundreds of lines); a user needs the count and
    one example to see that the checkpoint belongs to another network.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    reshaped = [
        k for k in expected if k in weights and tuple(weights[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or reshaped):
        return None
    parts = [
        f"{len(v)} {name}"
        for name, v in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("differently shaped", reshaped),
        )
        if v
    ]
    example = (
        (
            f"{reshaped[0]} is {tuple(weights[reshaped[0]].shape)} in the file but "
            f"{tuple(expected[reshaped[0]].shape)} in the model"
        )
        if reshaped
        else (missing + unexpected)[0]
    )
    return f"{', '.join(parts)} tensors (e.g. {example})"


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def resolve_device(name: str = "auto") -> torch.device:
    """auto = CUDA when torch sees one, else CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA GPU; use --device cpu or auto")
    return torch.device(name)
