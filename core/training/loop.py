"""The training loop, readable in one sitting.

One model for every selected category (or one per category), a checkpoint after every epoch,
and per epoch the numbers a user needs later to pick an epoch: train and validation loss,
AUROC on synthetic anomalies made from held-out normals, per-layer gradient norms, speed.
Every epoch is seeded from (seed, epoch), so a resumed run continues exactly as an
uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from core import __version__
from core.config import TrainConfig
from core.data.augment import build_augmentation
from core.data.batches import AugmentedBatches
from core.data.dataset import TrainingData, load_training_data
from core.data.samples import ImageSet
from core.data.synthetic import make_synthetic_set
from core.evaluation.metrics import image_auroc
from core.model.accel import Acceleration, device_memory
from core.model.losses import ReconstructionLoss
from core.model.segmentation import segmenter_of
from core.model.tensors import to_tensor
from core.model.unet import UNetAutoencoder, count_parameters, resolve_device
from core.runs.finite import training_diverged
from core.runs.folder import Run, RunError, save_checkpoint
from core.runs.storage import after_epoch_saved, resume_payload
from core.scoring import score_image_set_methods
from core.scoring.knn import bank_rows
from core.training import distributed, threads
from core.training.locking import refuse_busy_run, run_lock
from core.training.objectives import Objective, build_objective
from core.training.trainability import check_trainable

Log = Callable[[str], None]


class StopRequested(BaseException):
    """SIGTERM/SIGINT arrived; finished epochs are kept and the run can be resumed. A
    BaseException, like KeyboardInterrupt, so no `except Exception` (e.g. a checkpoint load's)
    turns a stop into an error."""


# Held-out normals scored each epoch per category: the probe's memory and time stay bounded on
# a 100,000-image set (10 % held out), and 250 normals plus 250 synthetic anomalies pin a
# synthetic AUROC to about +-0.02. Smaller validation sets are used whole.
PROBE_MAX_NORMALS = 250


@dataclass
class ValidationProbe:
    """Held-out normals and a fixed set of synthetic anomalies made from them."""

    normals: np.ndarray
    anomalies: np.ndarray

    @classmethod
    def build(cls, data: TrainingData, config: TrainConfig) -> ValidationProbe:
        """At most PROBE_MAX_NORMALS held-out normals per category (a seeded sample, as banks
        choose theirs), read into memory; each gets one synthetic anomaly."""
        rows = np.sort(bank_rows(data.val.categories, PROBE_MAX_NORMALS, config.seed))
        normals = data.val.images if len(rows) == len(data.val) else data.val.images[rows]
        if not config.synthetic_val or len(normals) == 0:
            return cls(normals, normals[:0])
        anomalies, _, _ = make_synthetic_set(normals, seed=config.seed)
        return cls(normals, anomalies)


def conv_weights(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The layers diagnostics follow: every convolution's weight, by parameter name."""
    return {name: p for name, p in model.named_parameters() if p.ndim == 4}


def prepare_run(config: TrainConfig, resume: bool) -> tuple[Run, dict[str, Any] | None]:
    """Creates or reopens the run folder; refuses to overwrite or to double-train a run."""
    run = Run(Path(config.run).expanduser())
    refuse_busy_run(run, resume, own_pid=distributed.job_pid())  # this job holds the lock
    payload = resume_payload(run) if (resume and run.epochs()) else None  # refuses a pruned latest
    run.path.mkdir(parents=True, exist_ok=True)
    config.save(run.path / "config.json")
    return run, payload


def train(config: TrainConfig, resume: bool = False, progress: bool = True, log: Log = print,
          share: threads.ThreadShare | None = None) -> list[Run]:
    """Trains one model, or one per category when config.per_category; returns the runs.
    share: this process's share of the cores (core.training.threads); None = the budget of a job
    without a background evaluator (config.num_threads overrides it)."""
    if not config.per_category:
        return [train_one(config, resume, progress, log, share)]
    from core.data.layouts import discover_samples

    categories = config.categories or sorted({s.category for s in discover_samples(config.data, config.layout)})
    runs = []
    for category in categories:
        sub = config.with_overrides({"categories": [category], "per_category": False,
                                     "run": str(Path(config.run) / category.replace("/", "_"))})
        runs.append(train_one(sub, resume, progress, log, share))
    return runs


def train_one(config: TrainConfig, resume: bool = False, progress: bool = True, log: Log = print,
              share: threads.ThreadShare | None = None) -> Run:
    """Trains one run while holding its OS-level lock: of two jobs started at once, one trains
    and the other is refused with a RunLockedError. share: as for `train`."""
    # under torchrun rank 0 holds the lock for the job; the other ranks write nothing
    rank = int(os.environ.get("RANK", "0")) if distributed.launched_by_torchrun() else 0
    folder = Path(config.run).expanduser()
    new = not folder.exists()
    try:
        with run_lock(config.run) if rank == 0 else contextlib.nullcontext():
            return _train_locked(config, resume, progress, log, share)
    except BaseException:
        if new and rank == 0:
            _remove_unborn_run(folder)
        raise


def epoch_order(rng: np.random.Generator, categories, balance: bool) -> np.ndarray:
    """The indices of one epoch's training images, shuffled.

    Without `balance` every image once. With it, the epoch keeps its length but each category
    fills an equal share of it: a large category contributes a random subset of its images
    (each at most once), a small one all of its images, repeated in fresh orders until its
    share is full. Equal-sized categories thus still see every image exactly once."""
    n = len(categories)
    cats = np.asarray(list(categories), dtype=object)
    names = sorted(set(cats.tolist()))
    if not balance or len(names) < 2:
        return rng.permutation(n)
    shares = [n // len(names) + (i < n % len(names)) for i in range(len(names))]
    parts = []
    for name, share in zip(names, shares, strict=True):
        own = np.flatnonzero(cats == name)
        rounds = -(-share // len(own))  # ceil
        parts.append(np.concatenate([rng.permutation(own) for _ in range(rounds)])[:share])
    return rng.permutation(np.concatenate(parts))


UNBORN_FILES = {"config.json", "status.json", "train.lock"}  # what a run holds before epoch 1


def _remove_unborn_run(folder: Path) -> None:
    """A run folder this call created and that failed before its first epoch (bad data, bad
    config) is removed, so the runs list shows no empty run; anything else in it (a job's
    train.log, an epoch) keeps it."""
    try:
        names = {p.name for p in folder.iterdir()}
    except OSError:
        return
    if names <= UNBORN_FILES:
        shutil.rmtree(folder, ignore_errors=True)


def _train_locked(config: TrainConfig, resume: bool, progress: bool, log: Log,
                  share: threads.ThreadShare | None = None) -> Run:
    config = TrainConfig.from_dict(config.to_dict())  # filled in below; the caller's stays as given
    ctx = distributed.init(resolve_device(config.device))  # one process unless under torchrun
    device = ctx.device
    run, payload = distributed.on_main(ctx, prepare_run, config, resume)
    run = distributed.run_view(run, ctx)  # ranks other than 0 never write the run folder
    log, progress = (log, progress) if ctx.is_main else (_silent, False)
    workload = threads.training_workload(evaluator=False)
    share = threads.apply(share or threads.thread_share("training", workload, config.num_threads))
    start_epoch = int(payload["epoch"]) if payload else 0
    run.write_status(state="running", pid=distributed.job_pid(), epoch=start_epoch, epochs=config.epochs,
                     device=str(device), message="loading data", started=time.time(),
                     threads=share.threads * workload.ranks)  # what the dashboard leaves it
    previous = _install_stop_handler()
    try:
        torch.manual_seed(config.seed)
        data = load_training_data(config.data, config.image_size, config.layout, config.categories,
                                  config.val_fraction, config.seed, config.category_file or None,
                                  progress)
        if config.pseudo_categories and not config.category_file:
            data = _with_pseudo_categories(config, data, run, log)
        for _path, reason in data.train.skipped + data.val.skipped:
            log(f"warning: {reason}")
        # Recorded so scoring and the dashboard work from any folder and know what was trained on
        config.data = str(Path(config.data).expanduser().resolve())
        config.categories = config.categories or data.train.category_names
        if ctx.is_main:
            config.save(run.path / "config.json")
        check_trainable(config, len(data.train))
        model = Acceleration.for_run(config, device).prepare(UNetAutoencoder(config.model).to(device))
        loss_fn = ReconstructionLoss(config.loss)
        objective = build_objective(config, loss_fn, data.train.images, data.train.categories, device)
        objective.attach(model)
        optimizer = torch.optim.Adam(list(model.parameters()) + objective.parameters(), lr=config.lr,
                                     weight_decay=config.weight_decay)
        if payload:
            model.load_state_dict(payload["model"])
            objective.load_state(payload)
            optimizer.load_state_dict(payload["optimizer"])
            _restore_missing_metrics(run, payload)
        net = distributed.wrap(model, ctx)  # DDP under torchrun; the model itself otherwise
        log(f"run {run.path}: {len(data.train)} train / {len(data.val)} val images, "
            f"{len(data.train.category_names)} categories, {count_parameters(model) / 1e6:.2f}M parameters, "
            f"device {device}, epochs {start_epoch + 1}..{config.epochs}")
        probe = ValidationProbe.build(data, config)
        for epoch in range(start_epoch + 1, config.epochs + 1):
            record = run_epoch(net, optimizer, loss_fn, data, probe, config, epoch, device, run, progress,
                               objective)
            if ctx.is_main:
                save_epoch(run, epoch, {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                    "config": config.to_dict(), "metrics": record, "version": __version__,
                    **objective.state()})
            run.append_metrics(record)
            log(_summary(record, config.epochs))
            eta = record["seconds"] * (config.epochs - epoch)
            run.write_status(state="running", pid=distributed.job_pid(), epoch=epoch, eta_s=eta,
                             message=f"epoch {epoch} saved")
            if not math.isfinite(record["train_loss"]):
                raise training_diverged(epoch, record["train_loss"], config.lr, run.path)
            if ctx.is_main:  # the epoch before drops its optimizer state (core.runs.storage)
                after_epoch_saved(run, epoch)
        run.write_status(state="finished", epoch=config.epochs, eta_s=0, message="finished")
    except (StopRequested, KeyboardInterrupt):  # SIGTERM from the dashboard, Ctrl-C in a terminal
        run.write_status(state="stopped", message="stopped by request; finished epochs are kept, --resume continues")
        log("stopped; finished epochs are kept")
    except BaseException as err:
        with contextlib.suppress(OSError):  # a full disk may refuse the status file too
            run.write_status(state="failed", message=f"{type(err).__name__}: {err}")
        raise
    finally:
        _restore_stop_handler(previous)
    return run


def _with_pseudo_categories(config: TrainConfig, data: TrainingData, run: Run, log: Log) -> TrainingData:
    """A flat train folder that is one category is split into K-Means groups (core.data.pseudo:
    by default only where they are clearly apart); the groups go to the run's category file,
    which every later reader of the data uses."""
    from core.data.layouts import FLAT_CATEGORY
    from core.data.pseudo import FILE_NAME, find_pseudo_categories, write_category_file

    if data.train.category_names != [FLAT_CATEGORY]:
        if config.pseudo_categories > 0:  # asked for explicitly: say why it does nothing
            log("pseudo-categories: skipped, the training images already have categories")
        return data
    found = find_pseudo_categories(data.train.images, data.val.images,
                                   k=config.pseudo_categories, seed=config.seed)
    log(f"pseudo-categories: {found.reason}")
    if found.k == 1:
        return data
    path = write_category_file(data.train.samples + data.val.samples, found.names(),
                               run.path / FILE_NAME)
    config.category_file = str(path.resolve())
    return load_training_data(config.data, config.image_size, config.layout, None,
                              config.val_fraction, config.seed, config.category_file)
def save_epoch(run: Run, epoch: int, payload: dict[str, Any]) -> None:
    """save_checkpoint, with a failed write (disk full, no permission) said in one sentence;
    the write is atomic, so every earlier epoch stays loadable."""
    try:
        save_checkpoint(run.checkpoint_path(epoch), payload)
    except OSError as err:
        kept = f"epochs {run.epochs()[0]}..{run.epochs()[-1]} are kept" if run.epochs() else "no epoch was saved"
        why = os.strerror(err.errno) if err.errno else str(err)
        raise RunError(f"{run.checkpoint_path(epoch)}: epoch {epoch} could not be saved ({why}); "
                       f"{kept} and loadable -- free space or fix the folder, then --resume") from err


def run_epoch(model, optimizer, loss_fn, data: TrainingData, probe: ValidationProbe, config: TrainConfig,
              epoch: int, device: torch.device, run: Run, progress: bool,
              objective: Objective | None = None) -> dict[str, Any]:
    objective = objective or Objective("reconstruct", loss_fn, config.model, data.train.images,
                                       data.train.categories, config.seed)
    started = time.perf_counter()
    ctx, accel = distributed.current(), Acceleration.for_run(config, device)
    model.train()
    rng = np.random.default_rng([config.seed, epoch])
    augment_seed = ctx.augment_seed(config.seed * 100_003 + epoch)  # rank 0: the single-process seed
    torch.manual_seed(augment_seed)
    pipeline = build_augmentation(config.augment, config.image_size, seed=augment_seed)
    order = epoch_order(rng, data.train.categories, config.balance_categories)
    batches = [order[i:i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    smallest = (2 if config.model.norm == "batch" else 1) * ctx.world_size  # BatchNorm needs 2+
    if len(batches) > 1 and len(batches[-1]) < smallest:  # images a batch, each rank 1+
        last = batches.pop()
        batches[-1] = np.concatenate([batches[-1], last])
    shards = [ctx.shard(b) for b in batches]  # this rank's slice of each global batch
    layers = conv_weights(distributed.unwrap(model))
    grad_sums = torch.zeros(len(layers), device=device)
    loss_sum, seen, last_status, term_sums = 0.0, 0, time.time(), {}
    bar = tqdm(total=sum(map(len, shards)), desc=f"epoch {epoch}/{config.epochs}", unit="img",
               disable=not progress, file=sys.stderr, leave=False)
    seg_params = objective.parameters()  # outside DDP: averaged over ranks by hand below
    with AugmentedBatches(data.train.images, shards, pipeline, config.workers, augment_seed) as stream:
        for step, (batch_idx, images) in enumerate(zip(shards, stream, strict=True)):
            batch = objective.batch_from(images, batch_idx, epoch, step)
            per_image, terms = objective.per_image_loss(lambda x: accel.forward(model, x), batch, device)
            for name, value in terms.items():
                term_sums[name] = term_sums.get(name, 0.0) + value * len(batch_idx)
            loss = per_image.mean()
            optimizer.zero_grad(set_to_none=True)
            ctx.gradient_loss(per_image, len(batches[step])).backward()
            ctx.average_gradients(seg_params)
            grad_sums += torch.stack([p.grad.detach().norm() if p.grad is not None else
                                      torch.zeros((), device=device) for p in layers.values()])
            optimizer.step()
            loss_sum += loss.item() * len(batch_idx)
            seen += len(batch_idx)
            bar.update(len(batch_idx))
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if time.time() - last_status > 2:
                run.write_status(epoch=epoch - 1, batch=step + 1, batches=len(batches),
                                 message=f"epoch {epoch}: batch {step + 1}/{len(batches)}")
                last_status = time.time()
    bar.close()
    loss_sum, seen = ctx.sum([loss_sum, seen])
    train_seconds = time.perf_counter() - started
    grad_norms = (grad_sums / max(1, len(batches))).cpu().tolist()
    record = {"epoch": epoch, "train_loss": loss_sum / max(1, seen),
              "lr": optimizer.param_groups[0]["lr"], "images_per_s": seen / max(train_seconds, 1e-9),
              "device": str(device), "grad_norm": dict(zip(layers, grad_norms, strict=True)),
              "grad_ratio_deep_shallow": _deep_shallow_ratio(list(layers), grad_norms, config.model.depth),
              "objective": objective.name, "loss_terms": {k: v / max(1, seen) for k, v in term_sums.items()}}
    record.update(device_memory(device))
    if ctx.active:
        record["world_size"] = ctx.world_size
    if ctx.is_main:  # the other ranks go on to the next epoch's first all-reduce and wait there
        record.update(validate(distributed.unwrap(model), loss_fn, probe, device, config.batch_size))
    record["seconds"] = time.perf_counter() - started
    return record


# Scored per epoch on the synthetic probe: the methods that need no feature bank.
SYNTHETIC_METHODS = ("pixel", "ssim", "feature")


@torch.no_grad()
def validate(model, loss_fn, probe: ValidationProbe, device: torch.device, batch_size: int) -> dict[str, Any]:
    """Validation loss on held-out normals; synthetic AUROC scored exactly as core.scoring scores
    real test images (same maps, smoothing and reduction), so the two columns compare."""
    model.eval()
    if len(probe.normals) == 0:
        return {"val_loss": None}
    losses = [loss_fn(x, model(x)).cpu() for x in
              (to_tensor(probe.normals[i:i + batch_size], device) for i in range(0, len(probe.normals), batch_size))]
    result: dict[str, Any] = {"val_loss": float(torch.cat(losses).mean())}
    if len(probe.anomalies):
        images = np.concatenate([probe.normals, probe.anomalies])
        probe_set = ImageSet([], images, np.zeros(images.shape[:3], np.uint8), np.zeros(len(images), bool))
        labels = np.r_[np.zeros(len(probe.normals)), np.ones(len(probe.anomalies))]
        methods = SYNTHETIC_METHODS + (("seg",) if segmenter_of(model) is not None else ())
        scored = score_image_set_methods(model, probe_set, methods, device=device,
                                         batch_size=batch_size)  # one model pass for all
        result["synthetic_auroc"] = {m: image_auroc(labels, r.scores) for m, r in scored.items()}
    model.train()
    return result


def _deep_shallow_ratio(names: list[str], norms: list[float], depth: int) -> float | None:
    """Mean gradient norm of the bottleneck block over that of the stem: vanishing deep layers -> 0."""
    deep = [n for name, n in zip(names, norms, strict=True) if name.startswith(f"down.{depth - 1}.")]
    shallow = [n for name, n in zip(names, norms, strict=True) if name.startswith("stem.")]
    if not deep or not shallow or sum(shallow) == 0:
        return None
    return float(np.mean(deep) / np.mean(shallow))


def _restore_missing_metrics(run: Run, payload: dict[str, Any]) -> None:
    """A crash between the checkpoint rename and the metrics append must not lose the record."""
    record = payload.get("metrics")
    if record and record.get("epoch") not in {m.get("epoch") for m in run.metrics()}:
        run.append_metrics(record)


def _summary(record: dict[str, Any], epochs: int) -> str:
    synth = record.get("synthetic_auroc") or {}
    synth_text = " ".join(f"synth_{k}={v:.3f}" for k, v in synth.items() if v == v)
    val = record.get("val_loss")
    val_text = f"val_loss={val:.4f} " if val is not None else ""
    return (f"epoch {record['epoch']}/{epochs} train_loss={record['train_loss']:.4f} {val_text}{synth_text} "
            f"{record['images_per_s']:.1f} img/s {record['seconds']:.1f}s")


def _silent(_message: str) -> None:
    return None


def _raise_stop(signum, frame):
    raise StopRequested()


def _install_stop_handler():
    try:
        return signal.signal(signal.SIGTERM, _raise_stop)
    except ValueError:  # not the main thread (e.g. inside a test runner thread)
        return None


def _restore_stop_handler(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
