"""Evaluation: the per-epoch report agrees with scikit-learn, JSON is strict, the epoch table and
the CLI work, thresholds are wired to the right scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.__main__ import main as cli
from core.evaluation.evaluate import (
    criterion_picks,
    evaluate_epoch,
    evaluate_run,
    format_table,
    jsonable,
    threshold_reports,
    with_floor,
)
from core.scoring import score_checkpoint
from core.scoring.results import MethodScores


@pytest.fixture(scope="module")
def report(tiny_run, demo_root):
    return evaluate_epoch(tiny_run, "last", demo_root, ("pixel", "knn"))


def test_both_floors_are_always_in_the_table(report):
    assert with_floor(("pixel",)) == ("pixel", "rawknn", "patchz")
    assert with_floor(("patchz", "knn")) == ("patchz", "knn", "rawknn")
    assert report.methods == ["pixel", "knn", "rawknn", "patchz"]


def test_report_is_strict_json(report):
    text = json.dumps(report.to_dict(), allow_nan=False)
    assert json.loads(text)["epoch"] == 2
    assert jsonable({"a": float("nan"), "b": np.float32(0.5), "c": np.arange(2)}) == {
        "a": None,
        "b": 0.5,
        "c": [0, 1],
    }


def test_image_auroc_agrees_with_sklearn(report, tiny_run, demo_root):
    for method in report.methods:
        scores = score_checkpoint(tiny_run, 2, demo_root, method)
        labels, values = np.asarray(scores.labels), np.asarray(scores.image_scores)
        cats = np.asarray(scores.categories)
        row = report.image_auroc[method]
        per_category = []
        for category in ("bottle", "carpet", "pill"):
            expected = roc_auc_score(labels[cats == category], values[cats == category])
            assert row[category] == pytest.approx(expected)
            per_category.append(expected)
        assert row["mean"] == pytest.approx(np.mean(per_category))
        assert row["overall"] == pytest.approx(roc_auc_score(labels, values))
        assert set(report.defect_auroc[method]) >= {"carpet/hole", "bottle/broken_large"}


def test_pixel_metrics_only_for_methods_with_maps(tiny_run, demo_root, report):
    assert set(report.pixel) == {"pixel", "knn", "rawknn", "patchz"}
    for values in report.pixel.values():
        assert 0.0 <= values["pixel_auroc"] <= 1.0 and 0.0 <= values["aupro"] <= 1.0
        assert set(values["per_category"]) == {"bottle", "carpet", "pill"}
    pooled = evaluate_epoch(
        tiny_run, 2, demo_root, ("knn",), patch=False, thresholds=False, routing=False
    )
    assert "knn" not in pooled.pixel  # a pooled vector per image has no map


def test_routing_is_reported_when_categories_are_known(report):
    assert report.routing["thumbnail"]["accuracy"] == 1.0
    assert 0.0 <= report.routing["features"]["accuracy"] <= 1.0


def _scores(values: np.ndarray, labels: np.ndarray) -> MethodScores:
    n = len(values)
    return MethodScores("pixel", 1, "test", values, None, [str(i) for i in range(n)], [""] * n,
                        labels, ["a"] * n, [""] * n, np.zeros(n, bool))


def test_threshold_reports_on_hand_made_scores():
    """Normals at 0..0.29 in steps of 0.01, anomalies far above: jump and F1 split them exactly."""
    normal = np.round(np.arange(30) * 0.01, 2)
    anomalous = np.array([1.0, 1.1, 1.2])
    test = _scores(np.r_[normal, anomalous], np.r_[np.zeros(30), np.ones(3)].astype(int))
    val = _scores(np.linspace(0.0, 0.1, 11), np.zeros(11, int))
    reports = threshold_reports(test, val)
    a = reports["a"]
    assert a["jump"] == pytest.approx((0.29 + 1.0) / 2)
    assert a["at_jump"]["tp"] == 3 and a["at_jump"]["fp"] == 0
    assert a["f1_max"] == 1.0 and a["f1_threshold"] == 1.0
    assert a["percentile_99"] == pytest.approx(0.099)  # 99th percentile of 0, 0.01, ..., 0.1
    assert a["at_percentile"]["fp"] == 20 and a["at_percentile"]["recall"] == 1.0  # 0.10 .. 0.29
    assert reports["overall"]["n_val_normals"] == 11


def test_thresholds_use_the_held_out_validation_normals(report, tiny_run, demo_root):
    val = score_checkpoint(tiny_run, 2, demo_root, "pixel", split="val")
    cats = np.asarray(val.categories)
    for category in ("bottle", "carpet", "pill"):
        expected = np.percentile(np.asarray(val.image_scores)[cats == category], 99)
        assert report.thresholds["pixel"][category]["percentile_99"] == pytest.approx(expected)


def test_evaluate_run_table(tiny_run, demo_root):
    table = evaluate_run(tiny_run, "all", demo_root, ("pixel",))
    assert list(table["epoch"]) == [1, 2]
    assert {
        "val_loss",
        "synthetic_auroc_pixel",
        "synthetic_auroc_ssim",
        "real_auroc_pixel",
        "real_auroc_rawknn",
    } <= set(table.columns)
    logged = {m["epoch"]: m for m in tiny_run.metrics()}
    assert table["val_loss"].tolist() == pytest.approx(
        [logged[1]["val_loss"], logged[2]["val_loss"]]
    )
    choices = criterion_picks(table)
    assert choices["lowest val_loss"]["epoch"] == tiny_run.best_by_val_loss()
    text = format_table(table)
    assert "lowest val_loss" in text and "real_auroc_pixel" in text


def test_format_epoch_table(report):
    text = format_table(report)
    lines = text.splitlines()
    assert any(line.startswith("rawknn") for line in lines)
    header = next(line for line in lines if line.startswith("method"))
    assert "carpet" in header and "aupro" in header and "overall_calibrated" in header
    assert lines[0].startswith("test set: ")


def test_cli_evaluate_all_epochs_writes_json(tiny_run, demo_root, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = cli(
        [
            "evaluate",
            "--run",
            str(tiny_run.path),
            "--epoch",
            "all",
            "--method",
            "pixel",
            "--data",
            str(demo_root),
            "--json",
            str(out),
            "--fast",
        ]
    )
    assert code == 0
    payload = json.loads(out.read_text())
    assert [row["epoch"] for row in payload["table"]] == [1, 2]
    assert payload["methods"] == ["pixel", "rawknn", "patchz"] and len(payload["epochs"]) == 2
    assert "lowest val_loss" in capsys.readouterr().out


def test_cli_evaluate_bad_epoch_is_one_clear_line(tiny_run, demo_root, capsys):
    code = cli(["evaluate", "--run", str(tiny_run.path), "--epoch", "9", "--data", str(demo_root)])
    assert code == 2
    err = capsys.readouterr().err
    assert "epoch 9 does not exist; available: 1, 2" in err and "Traceback" not in err
