"""Export: weights round-trip to identical scores, the card, the submission CSV's format."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from core.__main__ import main as cli
from core.data.layouts import DatasetLayoutError
from core.reports.export import export_epoch, load_exported_model, submission_csv, submission_ids
from core.runs.checkpoint import load_checkpoint, open_checkpoint
from core.runs.folder import RunError
from core.scoring import score_checkpoint, score_image_set
from core.scoring.data import load_samples, samples_to_score
from core.scoring.options import CHECKPOINT_METHODS, DEFAULT_METHOD, FALLBACK_METHOD


@pytest.fixture(scope="module")
def kaggle_folder(demo_root, tmp_path_factory):
    """A flat folder of uniquely named test images, as the Kaggle homework ships them."""
    folder = tmp_path_factory.mktemp("kaggle") / "test"
    folder.mkdir()
    for i, path in enumerate(sorted(demo_root.glob("*/test/*/*.png"))):
        shutil.copy(path, folder / f"img_{i:03d}.png")
    return folder


def _rows(path):
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def test_export_round_trip_gives_identical_scores(tiny_run, demo_root, tmp_path):
    written = export_epoch(tiny_run, 2, tmp_path / "out")
    assert set(written) == {"model", "config", "card"} and all(
        p.is_file() for p in written.values()
    )
    exported = load_exported_model(tmp_path / "out")
    original = open_checkpoint(tiny_run, 2).model()
    for name, tensor in original.state_dict().items():
        assert torch.equal(tensor, exported.state_dict()[name]), name
    config = tiny_run.config()
    test = load_samples(samples_to_score(demo_root), config.image_size)
    for method in ("pixel", "feature"):
        a = score_image_set(original, test, method)
        b = score_image_set(exported, test, method)
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.maps, b.maps)
    saved = torch.load(written["model"], weights_only=True)
    assert set(saved) == {"model", "config", "epoch"} and saved["epoch"] == 2  # no optimizer state


def test_card_says_what_and_why(tiny_run, tmp_path):
    written = export_epoch(
        tiny_run, "last", tmp_path / "out", reason="best knn AUROC on the holdout"
    )
    card = json.loads(written["card"].read_text())
    logged = {m["epoch"]: m for m in tiny_run.metrics()}
    assert card["epoch"] == 2 and card["why"] == "best knn AUROC on the holdout"
    assert card["metrics"]["val_loss"] == pytest.approx(logged[2]["val_loss"])
    # the default scores without a note: knn, or an ensemble calibrating its members against
    # tiny_run's reference normals (one held out per category plus 9 leave-one-out scores)
    assert card["scoring"]["method"] == DEFAULT_METHOD and "note" not in card["scoring"]
    assert json.loads(written["config"].read_text())["image_size"] == 32
    default = export_epoch(tiny_run, tiny_run.best_by_val_loss(), tmp_path / "out2")
    assert json.loads(default["card"].read_text())["why"] == "lowest validation loss of the run"


def test_submission_csv_format(tiny_run, kaggle_folder, tmp_path):
    written = export_epoch(tiny_run, 2, tmp_path / "out", test_dir=kaggle_folder, method="rawknn")
    rows = _rows(written["submission"])
    images = sorted(kaggle_folder.glob("*.png"))
    assert rows[0] == ["id", "anomaly_score"]
    assert [r[0] for r in rows[1:]] == [p.stem for p in images]  # one row per image, ids = stems
    # calibrated by default, against leave-one-out scores of the training normals and the one
    # held-out normal per category: 10 per category
    scores = score_checkpoint(tiny_run, 2, kaggle_folder, "rawknn", calibration="normals").image_scores
    np.testing.assert_array_equal([float(r[1]) for r in rows[1:]], scores)  # full precision
    raw = score_checkpoint(tiny_run, 2, kaggle_folder, "rawknn").image_scores
    assert not np.allclose(scores, raw)
    assert "leave-one-out scores of the training normals" in card_calibration(written)
    # pixel has only the held-out normals, too few: the scores stay raw and the card says why
    pixel = export_epoch(tiny_run, 2, tmp_path / "pixel", test_dir=kaggle_folder, method="pixel")
    np.testing.assert_array_equal(
        [float(r[1]) for r in _rows(pixel["submission"])[1:]],
        score_checkpoint(tiny_run, 2, kaggle_folder, "pixel").image_scores)
    assert card_calibration(pixel).startswith("none (raw scores): calibration needs at least 10")
    assert all(len(r) == 2 for r in rows)
    card = json.loads(written["card"].read_text())
    assert card["submission"]["rows"] == len(images) and "image_auroc" not in card["submission"]


def test_submission_columns_are_configurable(tiny_run, kaggle_folder, tmp_path):
    written = export_epoch(
        tiny_run,
        2,
        tmp_path / "out",
        test_dir=kaggle_folder,
        id_column="image_id",
        score_column="score",
    )
    assert _rows(written["submission"])[0] == ["image_id", "score"]
    with pytest.raises(ValueError, match="must differ"):
        submission_csv(["a"], [0.5], "x", "x")


def test_duplicate_stems_fall_back_to_relative_paths(tiny_run, demo_root, tmp_path):
    """MVTec names files 000.png in every folder: stems would collide, so ids become paths."""
    written = export_epoch(tiny_run, 2, tmp_path / "out", test_dir=demo_root)
    ids = [r[0] for r in _rows(written["submission"])[1:]]
    assert len(ids) == len(set(ids)) and "carpet/test/good/000" in ids
    card = json.loads(written["card"].read_text())
    assert (
        "not unique" in card["submission"]["ids"]
        and 0.0 <= card["submission"]["image_auroc"] <= 1.0
    )
    assert submission_ids(["/x/a.png", "/y/b.png"], "/")[0] == ["a", "b"]


def test_export_bad_input(tiny_run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetLayoutError, match="empty: folder is empty"):
        export_epoch(tiny_run, 2, tmp_path / "out", test_dir=empty)
    assert not (tmp_path / "out").exists()  # nothing half-written
    with pytest.raises(RunError, match="epoch 5 does not exist"):
        export_epoch(tiny_run, 5, tmp_path / "out")


def test_cli_export(tiny_run, kaggle_folder, tmp_path, capsys):
    out = tmp_path / "cli_out"
    code = cli(
        [
            "export",
            "--run",
            str(tiny_run.path),
            "--epoch",
            "2",
            "--out",
            str(out),
            "--test",
            str(kaggle_folder),
            "--method",
            "pixel",
            "--score-column",
            "anomaly",
        ]
    )
    assert code == 0
    assert _rows(out / "submission.csv")[0] == ["id", "anomaly"]
    assert "submission" in capsys.readouterr().out
    raw = ["export", "--run", str(tiny_run.path), "--out", str(tmp_path / "raw"), "--test", str(kaggle_folder),
           "--method", "pixel", "--calibration", "none"]
    assert cli(raw) == 0
    printed = capsys.readouterr().out
    assert "scores     pixel, raw (not calibrated)" in printed and "None" not in printed
    args = ["export", "--run", str(tiny_run.path), "--out", str(out), "--test", str(tmp_path / "nope")]
    assert cli(args) == 2 and "already holds an export" in capsys.readouterr().err
    code = cli(args + ["--overwrite"])
    assert code == 2 and "nope: folder does not exist" in capsys.readouterr().err
    assert _rows(out / "submission.csv")[0] == ["id", "anomaly"]  # a failed export keeps the last


def card_calibration(written) -> str:
    return json.loads(written["card"].read_text())["scoring"]["calibration"]


def test_exporting_a_flagged_epoch_says_so_on_the_card_and_the_command_line(
        tiny_run, tmp_path, capsys):
    """A collapsed epoch (every output the same grey) can still be exported, never silently."""
    from core.runs.folder import Run, save_checkpoint

    shutil.copytree(tiny_run.path, tmp_path / "run", ignore=shutil.ignore_patterns("cache"))
    run = Run(tmp_path / "run")
    path = run.checkpoint_path(2)
    payload = load_checkpoint(path)
    payload["model"]["head.weight"].zero_()
    payload["model"]["head.bias"].zero_()  # sigmoid(0): every pixel 0.5 grey
    save_checkpoint(path, payload)
    written = export_epoch(run, 2, tmp_path / "out")
    health = json.loads(written["card"].read_text())["health"]
    assert "collapsed" in [f["name"] for f in health["flags"]]
    assert cli(["export", "--run", str(run.path), "--epoch", "2", "--out", str(tmp_path / "o2")]) == 0
    assert "warning    epoch 2 is flagged collapsed" in capsys.readouterr().err
    healthy = json.loads(export_epoch(run, 1, tmp_path / "o3")["card"].read_text())
    assert "collapsed" not in [f["name"] for f in (healthy.get("health") or {}).get("flags", [])]


def test_too_few_normals_keep_raw_knn_scores_and_say_why(demo_root, tmp_path):
    """6 normals per category: too few to calibrate even with leave-one-out scores, so the
    submission keeps knn's raw scores and the card says why (a default ensemble falls back to
    knn and says so too)."""
    from core.data.flatten import write_flat_dataset
    from core.training.loop import train_one
    from tests.conftest import tiny_config

    root = tmp_path / "few"
    write_flat_dataset(demo_root, root, train_per_category=6, test_per_category=4)
    run = train_one(tiny_config(root, tmp_path / "run", epochs=1), progress=False,
                    log=lambda _: None)
    written = export_epoch(run, 1, tmp_path / "out", test_dir=root / "test")
    card = json.loads(written["card"].read_text())
    assert card["scoring"]["method"] == FALLBACK_METHOD
    if DEFAULT_METHOD in CHECKPOINT_METHODS:
        assert "at least 10 normals per category" in card["scoring"]["note"]
    else:
        assert FALLBACK_METHOD == DEFAULT_METHOD and "note" not in card["scoring"]
    assert card["scoring"]["calibration"].startswith("none (raw scores): calibration needs at "
                                                     "least 10 reference normal images")
    raw = score_checkpoint(run, 1, root / "test", FALLBACK_METHOD).image_scores
    np.testing.assert_array_equal([float(r[1]) for r in _rows(written["submission"])[1:]], raw)
