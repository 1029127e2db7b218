"""One checkpoint of a run: the only module that reads a checkpoint file or builds a model from
one.

    checkpoint = open_checkpoint(run, "best")   # resolved epoch, path, stamp, config, contents
    model = checkpoint.model(device)             # the U-Net (and its segmentation network), eval mode

`open_checkpoint` reads a file once per version (its stamp: path, size, mtime_ns) and returns
the same frozen `Checkpoint` until the file changes; the config inside the checkpoint is the one
authoritative config of everything computed from it (config.json is for listing runs only).
"""

from __future__ import annotations

import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.config import TrainConfig
from core.model.segmentation import SEG_KEY, attach_segmenter, segmenter_from_checkpoint
from core.model.unet import UNetAutoencoder, architecture_mismatch
from core.runs.cache import checkpoint_stamp
from core.runs.folder import ForeignCheckpointWarning, Run, RunError, _span

OPTIMIZER_KEY = "optimizer"
MEMO_SIZE = 256  # checkpoints remembered by stamp (a few KB each: no weights are kept)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu",
                    mmap: bool = False) -> dict[str, Any]:
    """The checkpoint file's payload ({"model", "config", ...}); weights_only=True: a checkpoint
    can never run code on load. mmap: memory-mapped (the weights stay on disk until read).
    Raises RunError naming the file and what to do when it is missing, damaged or foreign."""
    if not path.is_file():
        raise RunError(f"{path}: checkpoint does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        if found is None:
            raise RunError(f"{path}: checkpoint is damaged or not a ReconScope checkpoint; pick "
                           "another epoch or delete this file") from err
        raise RunError(f"{path}: refused unrun: the file carries a Python object ({found.group(1)}) "
                       "that could run code when loaded, so only weights are accepted "
                       "(weights_only=True); use a checkpoint written by ReconScope or retrain") from err
    except Exception as err:  # torch raises many types for damaged files
        raise RunError(f"{path}: checkpoint is damaged or not a ReconScope checkpoint ({err}); "
                       "pick another epoch or delete this file") from err
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise RunError(f"{path}: not a ReconScope checkpoint (no model weights and config inside)")
    return payload


def model_from_checkpoint(payload: dict[str, Any], path: Path | str = "checkpoint",
                          config: TrainConfig | None = None) -> UNetAutoencoder:
    """The model a checkpoint payload holds, in eval mode on the CPU: built from the config
    inside it (`config` when the caller read it already), with its segmentation network
    attached when it holds one. Raises RunError when the weights do not fit that config."""
    if config is None:
        config = TrainConfig.from_saved(payload["config"], path, payload.get("version"))
    model = UNetAutoencoder(config.model)
    mismatch = architecture_mismatch(payload["model"], model)
    if mismatch:
        raise RunError(f"{path}: its weights do not fit the architecture in its config ({mismatch}); "
                       "it was written by another model: choose another epoch or retrain")
    model.load_state_dict(payload["model"])
    try:  # the discriminative objective's segmentation network, when the checkpoint holds one
        attach_segmenter(model, segmenter_from_checkpoint(payload, config.model, str(path)))
    except ValueError as err:
        raise RunError(str(err)) from err
    return model.eval()


def read_payload(run: Run, epoch: int, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The whole payload of the run's epoch (weights included); a file copied in from another
    run is named in a ForeignCheckpointWarning (core.runs.origin) and still returned."""
    from core.runs.origin import foreign_sentence

    if epoch not in run.epochs():
        raise RunError(f"{run.path}: epoch {epoch} does not exist; available: {_span(run.epochs())}")
    payload = load_checkpoint(run.checkpoint_path(epoch), map_location)
    note = foreign_sentence(run, epoch, payload)
    if note:
        warnings.warn(note, ForeignCheckpointWarning, stacklevel=2)
    return payload


@dataclass(frozen=True)
class Checkpoint:
    """One version of one epoch's checkpoint file of a run.

    epoch: the resolved epoch number; path: the file; stamp: (path, size, mtime_ns), which
    version of the file this is (core.runs.cache.checkpoint_stamp); config: the TrainConfig stored
    inside the checkpoint, the one authoritative config of anything computed from it;
    holds_segmenter: it holds the discriminative objective's segmentation network;
    holds_optimizer: it holds the optimizer state (resume needs it; core.runs.storage drops it)."""

    run: Run
    epoch: int
    path: Path
    stamp: tuple[str, int, int]
    config: TrainConfig
    holds_segmenter: bool
    holds_optimizer: bool

    def payload(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        """The file's whole payload (weights, config, metrics record, optimizer state)."""
        return read_payload(self.run, self.epoch, map_location)

    def model(self, device: torch.device | str = "cpu") -> UNetAutoencoder:
        """The model this checkpoint holds, in eval mode on `device` (a fresh copy per call)."""
        return model_from_checkpoint(self.payload(), self.path, self.config).to(device).eval()


_OPENED: dict[tuple[str, int, int], Checkpoint] = {}


def open_checkpoint(run: Run, epoch: int | str) -> Checkpoint:
    """The run's checkpoint of `epoch` (a number, "last" or "best": Run.resolve_epoch), read
    once per version of the file. Raises RunError naming the file, the epochs available and
    what to do when it is missing, damaged or holds an unreadable config."""
    resolved = run.resolve_epoch(epoch)
    path = run.checkpoint_path(resolved)
    stamp = checkpoint_stamp(path.resolve())
    if stamp not in _OPENED:
        if len(_OPENED) >= MEMO_SIZE:
            _OPENED.clear()
        _OPENED[stamp] = _read(run, resolved, path, stamp)
    opened = _OPENED[stamp]
    if opened.run != run:  # the same file reached through another Run path: same contents
        return Checkpoint(run, *(getattr(opened, f) for f in _FIELDS[1:]))
    return opened


_FIELDS = ("run", "epoch", "path", "stamp", "config", "holds_segmenter", "holds_optimizer")


def _read(run: Run, epoch: int, path: Path, stamp: tuple[str, int, int]) -> Checkpoint:
    try:
        payload = read_payload(run, epoch)
        config = TrainConfig.from_saved(payload["config"], path, payload.get("version"))
    except (RunError, ValueError) as err:
        what = str(err) if isinstance(err, RunError) else f"{path}: unreadable config ({err})"
        raise RunError(
            f"{what} -- choose another epoch (available: {run.epochs()}) or retrain with "
            "python -m core train"
        ) from err
    return Checkpoint(run, epoch, path, stamp, config, SEG_KEY in payload,
                      bool(payload.get(OPTIMIZER_KEY)))
