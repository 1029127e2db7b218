"""TrainConfig: the one source of defaults for a run.

The same object is written to `config.json`, stored inside every checkpoint (so a checkpoint
rebuilds its own model) and filled from a JSON file and then from CLI flags, in that order.
Defaults are sized for a 2-core CPU: a demo run must show something within minutes.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OBJECTIVES = ("reconstruct", "denoise", "discriminative")  # see core.training.objectives


@dataclass
class ModelConfig:
    """Architecture of the U-Net autoencoder; `skips` is "all", "none" or levels like "1,2"
    (level 1 = the highest-resolution skip). Skips let the net copy anomalies through, so
    users compare `all` against `none` or only the top level."""

    in_channels: int = 3
    base_width: int = 16
    depth: int = 4
    skips: str = "all"
    # instance: one model sees batches that mix categories, whose statistics BatchNorm would
    # blend (OmniAL's ablation: 94.1 -> 95.8); measured with denoise in docs/recipes.md
    norm: str = "instance"  # batch | instance | group | none
    activation: str = "relu"  # relu | leaky_relu | gelu | silu
    bottleneck_channels: int = 0  # 0 = same as the deepest level's width


@dataclass
class AugmentConfig:
    """Each augmentation can be switched off; probabilities of 0 disable a transform."""

    enabled: bool = True
    hflip_p: float = 0.5
    vflip_p: float = 0.0
    rotate90_p: float = 0.0
    rotate_limit: float = 0.0  # degrees; 0 = off
    resized_crop_p: float = 0.0
    resized_crop_scale: tuple[float, float] = (0.8, 1.0)
    dropout_p: float = 0.0
    dropout_holes: tuple[int, int] = (1, 4)
    dropout_size: tuple[float, float] = (0.05, 0.15)  # hole side as a fraction of the image
    color_jitter_p: float = 0.0


@dataclass
class TrainConfig:
    data: str = "data/demo"
    run: str = "checkpoints/demo"
    layout: str = "auto"  # auto | mvtec | visa | flat
    categories: list[str] = field(default_factory=list)  # empty = every category found
    # A flat train folder without a category CSV: with pseudo_categories=K (or -1 = auto, the
    # default: K by silhouette, one category unless groups are clearly apart) training clusters
    # it into K groups (see core.data.pseudo) and writes them to category_file (file,category
    # CSV in the run folder) that every reader uses; 0 = always one category.
    pseudo_categories: int = -1
    category_file: str = ""
    per_category: bool = False  # one model per category instead of one for all
    image_size: int = 64
    epochs: int = 10
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.0
    loss: str = "0.5*ssim+0.5*l1"
    # denoise beat reconstruct on every learned score on ../shared/realdata (docs/recipes.md):
    # with skip connections a plain autoencoder copies defects through
    objective: str = "denoise"  # reconstruct | denoise | discriminative (core.training.objectives)
    # every category fills an equal share of each epoch (a subset of a large category, all of
    # a small one, repeated; core.training.loop.epoch_order): a 28-image category beside a 770-image one
    # is otherwise seen 28 times an epoch. On ../shared/realdata (10 epochs, 64 px) the default
    # ensemble went .921 -> .935 mean image AUROC, knn .925 -> .936 (docs/recipes.md)
    balance_categories: bool = True
    val_fraction: float = 0.1  # held-out normal training images for validation loss
    synthetic_val: bool = True  # AUROC on synthetic anomalies made from the held-out normals
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0
    num_threads: int = 0  # torch CPU threads; 0 = the thread budget (core.training.threads)
    workers: int = 0  # augmentation worker processes (torch DataLoader); 0 = one prefetch thread
    precision: str = "auto"  # auto | bf16 | fp32; auto = bf16 autocast on CUDA, fp32 elsewhere
    channels_last: str = "auto"  # auto | on | off; auto = on for CUDA only
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """Builds a config, naming any unknown key: a typo must never be silently ignored.

        A saved config (it has "loss" and "model") without "objective" was written before
        objectives existed, when every run trained with "reconstruct": it keeps meaning that,
        so an old run is neither mislabelled nor resumed with another objective.
        """
        if isinstance(raw, dict) and "objective" not in raw and {"loss", "model"} <= set(raw):
            raw = {**raw, "objective": "reconstruct"}
        return _build(cls, raw, prefix="")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, strict: bool = False) -> TrainConfig:
        """A saved config.json; fields this version does not know are handled as in
        `from_saved` (strict=True refuses them: training must not silently drop a setting)."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err}); fix or delete the file") from err
        return cls.from_saved(raw, path, strict=strict)

    @classmethod
    def from_saved(cls, raw: dict[str, Any], source: str | Path, version: str | None = None,
                   strict: bool = False) -> TrainConfig:
        """A config read from a file another ReconScope version may have written (a run's
        config.json, a checkpoint's "config"; version: the writer's, when the file says).

        Unknown fields (a newer version's settings, such as ema_decay) are dropped with a
        ConfigVersionWarning naming the file, the versions and the fields: scoring and
        analysis need only the fields this version knows, and a model whose architecture
        depends on an unknown field is then refused by its weights' shapes. strict=True
        raises a ValueError with the same sentence instead (for training and resuming)."""
        if "pseudo_categories" not in raw:  # written before the field: never clustered
            raw = {**raw, "pseudo_categories": 0}
        unknown = unknown_fields(raw)
        if not unknown:
            return cls.from_dict(raw)
        from core import __version__

        writer = f"ReconScope {version}" if version else "another (probably newer) ReconScope"
        head = (f"{source}: written by {writer}; this is ReconScope {__version__}, which does not "
                f"know its config field(s) {', '.join(unknown)}")
        if strict:
            raise ValueError(f"{head}; upgrade ReconScope (pip install -U) or remove those "
                             "fields to train with it")
        warnings.warn(f"{head}; they are ignored here -- upgrade ReconScope to use them",
                      ConfigVersionWarning, stacklevel=2)
        return cls.from_dict(_without(raw, unknown))

    def with_overrides(self, overrides: dict[str, Any]) -> TrainConfig:
        """Applies dotted keys ("model.depth") over this config and validates the result."""
        raw = self.to_dict()
        for key, value in overrides.items():
            target = raw
            *parents, leaf = key.split(".")
            for part in parents:
                if not isinstance(target.get(part), dict):
                    raise ValueError(f"unknown config field '{key}'")
                target = target[part]
            target[leaf] = value
        return TrainConfig.from_dict(raw)


def parse_set_items(items: list[str]) -> dict[str, Any]:
    """`--set key=value` items -> {dotted key: value}; a value is JSON when it parses as JSON
    (15, true, [0.8, 1.0]), else the plain string (0.5*ssim+0.5*l1)."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    return overrides


class ConfigVersionWarning(UserWarning):
    """A saved config has fields this version does not know; the message names the file."""


_SECTIONS = {"model": ModelConfig, "augment": AugmentConfig}


def unknown_fields(raw: Any) -> list[str]:
    """Dotted names of raw's keys that TrainConfig (and its model/augment parts) lacks."""
    if not isinstance(raw, dict):
        return []
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    names = sorted(k for k in raw if k not in known)
    for section, sub in _SECTIONS.items():
        if isinstance(raw.get(section), dict):
            inner = {f.name for f in dataclasses.fields(sub)}
            names += sorted(f"{section}.{k}" for k in raw[section] if k not in inner)
    return names


def _without(raw: dict[str, Any], names: list[str]) -> dict[str, Any]:
    out = {k: (dict(v) if k in _SECTIONS and isinstance(v, dict) else v) for k, v in raw.items()}
    for name in names:
        *parents, leaf = name.split(".")
        (out[parents[0]] if parents else out).pop(leaf, None)
    return out


def _build(cls, raw: dict[str, Any], prefix: str):
    if not isinstance(raw, dict):
        raise ValueError(f"config field '{prefix.rstrip('.') or 'root'}' must be an object")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        names = ", ".join(prefix + u for u in unknown)
        raise ValueError(f"unknown config field(s): {names}; known: {', '.join(sorted(fields))}")
    values = {}
    for name, value in raw.items():
        sub = {"model": ModelConfig, "augment": AugmentConfig}.get(name) if cls is TrainConfig else None
        if sub is not None:
            values[name] = _build(sub, value, prefix=f"{prefix}{name}.")
        elif isinstance(value, list) and name != "categories":
            values[name] = tuple(value)
        else:
            values[name] = value
    config = cls(**values)
    _validate(config, prefix)
    return config


def _validate(config, prefix: str) -> None:
    checks: list[tuple[bool, str]] = []
    if isinstance(config, TrainConfig):
        checks = [
            (config.image_size >= 16, "image_size must be at least 16"),
            (config.epochs >= 1, "epochs must be at least 1"),
            (config.batch_size >= 1, "batch_size must be at least 1"),
            (config.lr > 0, "lr must be positive"),
            (0 <= config.val_fraction < 1, "val_fraction must be in [0, 1)"),
            (config.device in ("auto", "cpu", "cuda"), "device must be auto, cpu or cuda"),
            (isinstance(config.workers, int) and config.workers >= 0, "workers must be 0 or more"),
            (config.num_threads >= 0, "num_threads must be 0 (the thread budget) or more"),
            (config.precision in ("auto", "bf16", "fp32"), "precision must be auto, bf16 or fp32"),
            (config.channels_last in ("auto", "on", "off"), "channels_last must be auto, on or off"),
            (config.layout in ("auto", "mvtec", "visa", "flat"),
             "layout must be auto, mvtec, visa or flat"),
            (config.pseudo_categories in (-1, 0) or 2 <= config.pseudo_categories <= 32,
             "pseudo_categories must be 0 (off), -1 (auto) or 2..32"),
            (config.objective in OBJECTIVES, f"objective must be one of {', '.join(OBJECTIVES)}"),
            (config.image_size % (2 ** config.model.depth) == 0,
             f"image_size {config.image_size} must be divisible by 2**depth = {2 ** config.model.depth}"),
            (config.model.norm != "instance" or config.image_size >= 2 ** (config.model.depth + 1),
             f"model.norm instance needs a bottleneck of at least 2x2 px: image_size >= "
             f"{2 ** (config.model.depth + 1)} at depth {config.model.depth}, or a smaller depth"),
        ]
    elif isinstance(config, ModelConfig):
        checks = [
            (1 <= config.depth <= 6, "model.depth must be 1..6"),
            (config.base_width >= 1, "model.base_width must be positive"),
            (config.norm in ("batch", "instance", "group", "none"), "model.norm must be batch, instance, group or none"),
            (config.activation in ("relu", "leaky_relu", "gelu", "silu"),
             "model.activation must be relu, leaky_relu, gelu or silu"),
        ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"invalid config: {message}")


def pseudo_k(text: str) -> int:
    """--pseudo-categories: a number of groups, or auto (-1)."""
    return -1 if str(text).strip().lower() == "auto" else int(text)


# `python -m core train` flags: flag -> (dotted config key, type); the CLI defines them from this
# table (every flag defaults to None, so only what the user typed overrides the config) and
# core.training.sweep writes train commands with them
TRAIN_FLAGS = {
    "data": ("data", str), "run": ("run", str), "layout": ("layout", str),
    "epochs": ("epochs", int), "image_size": ("image_size", int), "batch_size": ("batch_size", int),
    "lr": ("lr", float), "loss": ("loss", str), "objective": ("objective", str), "device": ("device", str), "seed": ("seed", int),
    "val_fraction": ("val_fraction", float), "threads": ("num_threads", int),
    "workers": ("workers", int), "precision": ("precision", str), "channels_last": ("channels_last", str),
    "depth": ("model.depth", int), "base_width": ("model.base_width", int), "skips": ("model.skips", str),
    "norm": ("model.norm", str), "activation": ("model.activation", str),
    "pseudo_categories": ("pseudo_categories", pseudo_k),
}
