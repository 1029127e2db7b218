"""Refuse, before epoch 1, a configuration that cannot train on the data it was given.

Torch reports such a run deep inside the first batch ("Expected more than 1 value per channel
when training"); the user needs to hear which settings collide and what to change instead.
"""

from __future__ import annotations

import torch

from core.config import TrainConfig
from core.model.unet import UNetAutoencoder

# Feature maps this small are where norms run out of values; larger ones skip the dry run, which
# would otherwise cost seconds at large image sizes.
DRY_RUN_MAX_SIDE = 2


class UntrainableConfigError(ValueError):
    """The settings cannot train on this data; the message names them and what to change."""


def smallest_batch(n_train: int, batch_size: int) -> int:
    """The fewest images a training batch can hold (the loop merges a last batch of one)."""
    return 1 if n_train <= 1 or batch_size <= 1 else 2


def bottleneck_side(config: TrainConfig) -> int:
    """Side in px of the deepest feature map: image_size / 2**depth."""
    return config.image_size // 2 ** config.model.depth


def untrainable_reason(config: TrainConfig, n_train: int) -> str | None:
    """Why this config cannot train on n_train images, or None. Known collisions are named
    exactly; anything else at a bottleneck of 2 px or less is found by one forward and backward
    pass of an untrained copy."""
    side, batch, model = bottleneck_side(config), smallest_batch(n_train, config.batch_size), config.model
    fixes = (f"use --depth {model.depth - 1} or less, --image-size {config.image_size * 2} or more, "
             "or --set model.norm=group")
    if side == 1 and model.norm == "instance":
        return (f"with norm=instance, depth {model.depth} and image size {config.image_size} the "
                "bottleneck is 1x1 px, and instance norm needs more than one pixel to normalise; "
                + fixes)
    if side == 1 and model.norm == "batch" and batch == 1:
        why = f"{n_train} training image" if n_train <= 1 else f"--batch-size {config.batch_size}"
        return (f"with norm=batch, depth {model.depth} and image size {config.image_size} the "
                f"bottleneck is 1x1 px, and a batch of one image ({why}) leaves one value per "
                f"channel, which batch norm cannot normalise; add training images, raise "
                f"--batch-size, or {fixes}")
    return _dry_run(config, batch) if side <= DRY_RUN_MAX_SIDE else None


def _dry_run(config: TrainConfig, batch: int) -> str | None:
    """One pass of a throwaway model; torch's random state is restored, so the real model's
    initialisation (and a seeded run's results) stay exactly as without this check."""
    try:
        with torch.random.fork_rng(devices=[]):
            net = UNetAutoencoder(config.model).train()
            x = torch.zeros(batch, config.model.in_channels, config.image_size, config.image_size)
            net(x).mean().backward()
    except (RuntimeError, ValueError) as err:
        return (f"a batch of {batch} image(s) at {config.image_size} px fails in the model "
                f"(torch: {str(err).splitlines()[0]}); change --depth, --image-size, "
                "--batch-size or model.norm")
    return None


def check_trainable(config: TrainConfig, n_train: int) -> None:
    """Raises UntrainableConfigError naming the run's settings when they cannot train."""
    reason = untrainable_reason(config, n_train)
    if reason:
        raise UntrainableConfigError(f"{config.run}: this configuration cannot train: {reason}")


def check_launch(config: TrainConfig) -> int:
    """Refuses, before a job is launched (so nothing is created), a configuration whose data
    folder holds no training images or whose settings cannot train on them; returns the number
    of training images found (before the validation share is held out).

    Raises core.data.layouts.DatasetLayoutError (folder missing, no dataset in it, unknown
    category) or UntrainableConfigError, each naming the folder or the settings to change.
    The training loop checks the same again once the images are decoded."""
    from core.data.layouts import DatasetLayoutError, discover_samples

    samples = discover_samples(config.data, config.layout, config.categories or None,
                               config.category_file or None)
    n_train = sum(s.split == "train" for s in samples)
    if not n_train:
        raise DatasetLayoutError(f"{config.data}: no training images found (train/good/ per category, "
                                 "or train/ of a flat set); point the data folder at the dataset")
    kept = max(1, round(n_train * (1.0 - config.val_fraction)))  # the validation share is held out
    check_trainable(config, kept)
    return n_train
