"""The discriminative half of DRAEM (Zavrtanik et al., ICCV 2021): a small U-Net that looks at
an input and its reconstruction side by side and predicts where they disagree for a reason.

Why: a reconstruction error map also lights up wherever the autoencoder is merely imprecise
(edges, fine texture); a network trained on (input, reconstruction) pairs with synthetic
anomalies learns which differences are defects. Its sigmoid output is the anomaly map of
the `seg` scoring method.

The network is stored in the checkpoint under SEG_KEY beside the autoencoder ("model"), and
rebuilt from the checkpoint's own config. After loading it rides along on the autoencoder as
an unregistered attribute (see `attach_segmenter`), so every function that receives "the
model" can score with `seg` while the autoencoder's state dict, parameters and diagnostics
stay exactly those of the autoencoder.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.config import ModelConfig
from core.model.unet import ConvBlock, UpBlock

SEG_KEY = "seg_model"
SEG_DEPTH = 3  # three poolings: 8x8 receptive cells at 64 px, enough context to tell a defect
_ATTRIBUTE = "_segmenter"


class SegmentationNet(nn.Module):
    """(B, 2C, H, W) input and reconstruction concatenated -> (B, 1, H, W) mask logits.

    A U-Net with every skip (it must place the mask precisely; copying is harmless here
    because its target is the mask, not the image). Width, norm and activation follow the
    autoencoder's ModelConfig; depth is min(SEG_DEPTH, model depth) so any image size the
    autoencoder accepts works here too.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        depth = max(1, min(SEG_DEPTH, config.depth))
        widths = [config.base_width * 2**i for i in range(depth + 1)]
        self.stem = ConvBlock(2 * config.in_channels, widths[0], config.norm, config.activation)
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), ConvBlock(widths[i], widths[i + 1], config.norm,
                                                     config.activation))
            for i in range(depth)
        )
        self.up = nn.ModuleList(
            UpBlock(widths[level], widths[level - 1], widths[level - 1], config.norm,
                    config.activation)
            for level in range(depth, 0, -1)
        )
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        features = [self.stem(torch.cat([x, reconstruction], dim=1))]
        for down in self.down:
            features.append(down(features[-1]))
        y = features[-1]
        for i, up in enumerate(self.up):
            y = up(y, features[-2 - i])
        return self.head(y)


def attach_segmenter(model: nn.Module, segmenter: SegmentationNet | None) -> nn.Module:
    """Lets `model` carry its segmentation network without registering it as a submodule
    (so model.state_dict() and model.parameters() stay the autoencoder's). Returns model."""
    object.__setattr__(model, _ATTRIBUTE, segmenter)
    return model


def segmenter_of(model: nn.Module | None) -> SegmentationNet | None:
    """The segmentation network attached to `model`, or None."""
    return None if model is None else model.__dict__.get(_ATTRIBUTE)


def segmenter_from_checkpoint(payload: dict[str, Any], model_config: ModelConfig,
                              path: str = "checkpoint") -> SegmentationNet | None:
    """Rebuilds the checkpoint's segmentation network (eval mode), or None when it has none."""
    weights = payload.get(SEG_KEY)
    if weights is None:
        return None
    segmenter = SegmentationNet(model_config)
    try:
        segmenter.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(f"{path}: its '{SEG_KEY}' weights do not fit the segmentation network of "
                         f"its config ({str(err).splitlines()[0]}); choose another epoch or retrain") from err
    return segmenter.eval()


@torch.no_grad()
def segmentation_maps(
    model: nn.Module, x: torch.Tensor, reconstruction: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, C, H, W) inputs in [0, 1] -> (B, H, W) anomaly probabilities in [0, 1].

    reconstruction: model(x) when the caller already has it (one forward pass per batch).

    Raises ValueError when the model carries no segmentation network.
    """
    segmenter = segmenter_of(model)
    if segmenter is None:
        raise ValueError("method 'seg' needs a checkpoint trained with --objective discriminative "
                         "(it holds the segmentation network); use another method for this run")
    segmenter.to(x.device).eval()
    y = model(x) if reconstruction is None else reconstruction
    return torch.sigmoid(segmenter(x, y)).squeeze(1)
