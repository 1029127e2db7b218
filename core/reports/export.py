"""Export one epoch as the chosen model, and optionally a Kaggle-style submission.

out_dir/
  model.pt        {"model", "config", "epoch"}: the weights and the config that rebuilds them
                  (no optimizer state), loadable with `load_exported_model`
  config.json     the checkpoint's TrainConfig
  card.json       run, epoch, scoring method, calibration and options, training metrics, why
  submission.csv  one row per test image: <id_column>,<score_column>; ids are file stems
                  (the Kaggle homework's convention) unless two files share a stem

Why a card: weeks later, "which epoch did we submit and why" must be answerable from the
folder alone. An export never replaces another silently: a folder that already holds one is
refused (naming it) unless overwrite=True; `unused_export_folder` picks a fresh one instead.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.data.samples import UNKNOWN
from core.diagnostics.choice import EpochChoice, resolve_epoch
from core.evaluation.metrics import image_auroc
from core.model.segmentation import SEG_KEY
from core.model.unet import UNetAutoencoder, count_parameters
from core.runs.checkpoint import load_checkpoint, model_from_checkpoint, open_checkpoint
from core.runs.folder import (
    Run,
    atomic_write_bytes,
    atomic_write_json,
    jsonable,
    save_checkpoint,
)
from core.scoring import score_checkpoint
from core.scoring.adaptive import describe_choices
from core.scoring.calibration import CALIBRATIONS
from core.scoring.checkpoint import resolve_method
from core.scoring.data import run_data_root
from core.scoring.options import FALLBACK_METHOD, ScoreOptions, check_method
from core.scoring.results import MethodScores
from core.scoring.testset import build_test_set

EXPORT_FILES = ("model.pt", "config.json", "card.json", "submission.csv")


class ExportExistsError(ValueError):
    """The output folder already holds an export; the message names it and the way out."""


def _method_for(method, run: Run, epoch: int, config, test_dir) -> tuple[str, str | None]:
    """resolve_method against the data the scores will come from; the fallback method when
    that data cannot be read (the scoring itself then says why)."""
    try:
        data = test_dir if test_dir is not None else run_data_root(config, None)
        return resolve_method(method, run, epoch, data)
    except (ValueError, OSError):
        return method or FALLBACK_METHOD, None


def _scoring_card(method: str, opts, calibration: str, scored, fallback: str | None) -> dict:
    """The card's scoring entry: method, options, calibration, the fallback's sentence and, for
    adaptive, which member each category used."""
    entry: dict[str, Any] = {
        "method": method,
        "options": opts.cache_params(method),
        "calibration": calibration if scored is None else scored.calibration,
    }
    if fallback:
        entry["note"] = fallback
    chose = describe_choices(scored.info) if scored is not None else ""
    if chose:
        entry["chosen"] = chose
    return entry


def why_chosen(run: Run, epoch: int, reason: str = "") -> str:
    """The user's reason, else what makes this epoch special (pinned, lowest val loss, last)."""
    if reason:
        return reason
    pinned = run.pinned()
    if pinned and pinned.get("epoch") == epoch:
        return f"pinned in the run: {pinned.get('reason') or 'no reason given'}"
    if run.best_by_val_loss() == epoch:
        return "lowest validation loss of the run"
    if run.epochs() and run.epochs()[-1] == epoch:
        return "last epoch of the run"
    return "chosen by the user (no reason given)"


def submission_ids(paths: list[str], root: str | Path) -> tuple[list[str], str]:
    """File stems, or paths below root without suffix when stems collide; and which was used."""
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems, "file stem"
    base = Path(root).expanduser().resolve()
    ids = []
    for p in paths:
        path = Path(p).resolve()
        relative = path.relative_to(base) if path.is_relative_to(base) else path
        ids.append(relative.with_suffix("").as_posix())
    return ids, "path below the test folder without suffix (file stems were not unique)"


def submission_csv(
    ids: list[str], scores, id_column: str = "id", score_column: str = "anomaly_score"
) -> str:
    """CSV text: a header, then one `id,score` row per image; scores at full float precision."""
    if id_column == score_column:
        raise ValueError(f"id and score columns must differ, both are '{id_column}'")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([id_column, score_column])
    for image_id, score in zip(ids, scores, strict=True):
        writer.writerow([image_id, repr(float(score))])
    return buffer.getvalue()


def export_epoch(
    run: Run,
    epoch: int | str,
    out_dir: str | Path,
    test_dir: str | Path | None = None,
    method: str | None = None,
    calibration: str = "normals",
    reason: str = "",
    id_column: str = "id",
    score_column: str = "anomaly_score",
    device: torch.device | str = "cpu",
    overwrite: bool = False,
    choice: EpochChoice | None = None,
    **options,
) -> dict[str, Path]:
    """Writes model.pt, config.json, card.json and (given test_dir) submission.csv.

    epoch: a number, "chosen" (core.diagnostics.choice: the product's rule; the card keeps which
    rule chose it and why, and its method becomes the default method), "best" (lowest validation
    loss) or "last". test_dir: a folder of images, or a dataset whose test
    split is scored. method/options: how the submission is scored (see core.scoring); None =
    the default (core.scoring.checkpoint.resolve_method: ensemble, or knn where a category has
    too few normals to calibrate with, which the card then says).
    calibration: "normals" (default) writes per-category calibrated scores, so the pooled
    ranking a judge computes over mixed categories is fair; "none" writes raw scores.
    overwrite: replace an export already in out_dir (its files not written again are removed,
    so the folder never mixes two exports); otherwise ExportExistsError.
    choice: the EpochChoice already made for this run (the dashboard's), recorded on the card
    when it chose this very epoch, so the card names the rule without diagnosing again.
    Returns {file kind: path written}.
    """
    if method is not None:
        check_method(method)
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration '{calibration}': use one of {', '.join(CALIBRATIONS)}")
    check_export_target(out_dir, overwrite)
    opts = ScoreOptions.from_kwargs(options)
    resolved, made = resolve_epoch(run, epoch)
    choice = made or (choice if choice is not None and choice.epoch == resolved else None)
    checkpoint = open_checkpoint(run, resolved)
    model, config = checkpoint.model(), checkpoint.config  # validates the architecture
    if method is None and choice is not None and choice.method:
        method = choice.method
    method, fallback = _method_for(method, run, resolved, config, test_dir)
    scored = None
    if test_dir is not None:  # score first: a bad test folder must not leave a half export
        scored = score_checkpoint(
            run, resolved, test_dir, method, device=device, calibration=calibration, **options
        )
    payload = checkpoint.payload()
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    written = {"model": out / "model.pt", "config": out / "config.json", "card": out / "card.json"}
    save_checkpoint(
        written["model"],
        {"model": payload["model"], "config": payload["config"], "epoch": resolved,
         **{k: payload[k] for k in (SEG_KEY,) if k in payload}},
    )
    config.save(written["config"])
    record = next((m for m in run.metrics() if m.get("epoch") == resolved), {})
    card: dict[str, Any] = {
        "run": str(run.path),
        "checkpoint": str(run.checkpoint_path(resolved)),
        "epoch": resolved,
        "why": reason or (choice.reason if choice is not None else why_chosen(run, resolved)),
        "exported_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "image_size": config.image_size,
        "parameters": count_parameters(model),
        "metrics": _training_metrics(record),
        "scoring": _scoring_card(method, opts, calibration, scored, fallback),
    }
    if choice is not None:
        card["choice"] = {**choice.to_dict(), "differs_from_best": choice.differs_from_best}
    health = epoch_flags(run, resolved)
    if health:
        card["health"] = health
        if method in health["unusable"]:
            card["health"]["warning"] = (
                f"a health flag rules {method} out at epoch {resolved}: its scores are not to be "
                "trusted; export another epoch (the Overview suggests one) or another method")
    if scored is not None:
        written["submission"] = out / "submission.csv"
        card["submission"] = write_submission(
            scored, test_dir, written["submission"], id_column, score_column
        )
        left_out = build_test_set(config, test_dir, opts.unknown_categories).left_out
        if left_out:  # the rows a judge will miss, said where the submission is described
            card["submission"]["left_out"] = left_out
    atomic_write_json(written["card"], jsonable(card))
    for stale in set(existing_export(out)) - set(written.values()):  # only with overwrite=True
        stale.unlink()
    return written


def epoch_flags(run: Run, epoch: int) -> dict[str, Any] | None:
    """The epoch's health flags (core.diagnostics, on the run's own data) for the card:
    {"flags": [{"name", "severity", "sentence"}], "unusable": [methods ruled out]}; None when
    the epoch is healthy. Exporting a collapsed or copying epoch stays possible, never silent."""
    from core.diagnostics.timeline import epoch_health

    report = epoch_health(run, epoch)
    if not report.flags:
        return None
    return {"flags": [{"name": f.name, "severity": f.severity, "sentence": f.sentence}
                      for f in report.flags],
            "unusable": list(report.unusable)}


def existing_export(out_dir: str | Path) -> list[Path]:
    """The export files (model.pt, config.json, card.json, submission.csv) already in out_dir."""
    out = Path(out_dir).expanduser()
    return [out / name for name in EXPORT_FILES if (out / name).exists()]


def describe_export(out_dir: str | Path) -> str:
    """'epoch 7 of checkpoints/try, method knn, exported 2026-11-29 17:00:00' from its card."""
    try:
        card = json.loads((Path(out_dir).expanduser() / "card.json").read_text())
        scoring = card["scoring"]
        return (f"epoch {card['epoch']} of {card['run']}, method {scoring['method']}, "
                f"exported {card['exported_at']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "files " + ", ".join(p.name for p in existing_export(out_dir))


def check_export_target(out_dir: str | Path, overwrite: bool = False) -> None:
    """Refuses (ExportExistsError) a folder that holds an export, unless overwrite."""
    if existing_export(out_dir) and not overwrite:
        raise ExportExistsError(
            f"{Path(out_dir).expanduser()} already holds an export ({describe_export(out_dir)}); "
            "choose another --out folder, or pass --overwrite to replace it")


def unused_export_folder(base: str | Path) -> Path:
    """base if it does not exist yet, else the first free base-2, base-3, ... beside it."""
    base = Path(base).expanduser()
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def write_submission(
    scored: MethodScores, test_dir: str | Path, path: Path, id_column: str, score_column: str
) -> dict[str, Any]:
    """Writes the CSV of a score_checkpoint result; returns its summary for the card."""
    ids, id_kind = submission_ids(list(scored.paths), test_dir)
    atomic_write_bytes(
        path, submission_csv(ids, scored.image_scores, id_column, score_column).encode()
    )
    summary = {
        "file": path.name,
        "rows": len(ids),
        "source": str(test_dir),
        "ids": id_kind,
        "columns": [id_column, score_column],
    }
    labels = np.asarray(scored.labels)
    if (labels != UNKNOWN).any():
        summary["image_auroc"] = image_auroc(labels, scored.image_scores)  # nan with one class
    return summary


def _training_metrics(record: dict[str, Any]) -> dict[str, Any]:
    keep = ("train_loss", "val_loss", "synthetic_auroc", "seconds")
    return {k: record[k] for k in keep if k in record}


def load_exported_model(
    folder_or_file: str | Path, device: torch.device | str = "cpu"
) -> UNetAutoencoder:
    """The model an export wrote (model.pt in a folder, or the file itself), in eval mode."""
    path = Path(folder_or_file).expanduser()
    if path.is_dir():
        path = path / "model.pt"
    payload = load_checkpoint(path)
    return model_from_checkpoint(payload, path).to(device).eval()
