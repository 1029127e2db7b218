"""Exports never replace each other silently, and the card says what produced them."""

from __future__ import annotations

import json

import pytest

from core.__main__ import main as cli
from core.reports.export import ExportExistsError, export_epoch, unused_export_folder


def test_exporting_twice_to_one_folder_refuses_and_keeps_the_first(tiny_run, tmp_path):
    out = tmp_path / "out"
    first = export_epoch(tiny_run, 1, out, reason="first")
    card_before = first["card"].read_bytes()
    model_before = first["model"].read_bytes()
    with pytest.raises(ExportExistsError, match=r"out already holds an export \(epoch 1 of .*tiny, "
                                                r"method \w+, exported .*\); .*--overwrite"):
        export_epoch(tiny_run, 2, out)
    assert first["card"].read_bytes() == card_before and first["model"].read_bytes() == model_before


def test_overwrite_replaces_the_whole_export(tiny_run, demo_root, tmp_path):
    out = tmp_path / "out"
    export_epoch(tiny_run, 1, out, test_dir=demo_root)
    assert (out / "submission.csv").is_file()
    written = export_epoch(tiny_run, 2, out, overwrite=True)  # no test folder this time
    assert json.loads(written["card"].read_text())["epoch"] == 2
    assert not (out / "submission.csv").exists()  # a stale CSV of epoch 1 would lie
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "config.json", "model.pt"]


def test_card_names_run_epoch_method_and_calibration(tiny_run, tmp_path):
    card = json.loads(export_epoch(tiny_run, 2, tmp_path / "out", method="ssim",
                                   calibration="none")["card"].read_text())
    assert card["run"] == str(tiny_run.path) and card["epoch"] == 2
    assert card["scoring"]["method"] == "ssim" and card["scoring"]["calibration"] == "none"
    with pytest.raises(ValueError, match="calibration 'per-image': use one of normals, none"):
        export_epoch(tiny_run, 2, tmp_path / "other", calibration="per-image")
    assert not (tmp_path / "other").exists()


def test_unused_export_folder_counts_up(tmp_path):
    base = tmp_path / "exports" / "epoch_002"
    assert unused_export_folder(base) == base
    base.mkdir(parents=True)
    assert unused_export_folder(base) == base.with_name("epoch_002-2")
    base.with_name("epoch_002-2").mkdir()
    assert unused_export_folder(base) == base.with_name("epoch_002-3")


def test_cli_refuses_then_overwrites(tiny_run, tmp_path, capsys):
    args = ["export", "--run", str(tiny_run.path), "--epoch", "1", "--out", str(tmp_path / "cli")]
    assert cli(args) == 0
    capsys.readouterr()
    assert cli(args[:4] + ["2"] + args[5:]) == 2
    err = capsys.readouterr().err
    assert "already holds an export (epoch 1 of" in err and "pass --overwrite to replace it" in err
    assert cli(args[:4] + ["2"] + args[5:] + ["--overwrite"]) == 0
    assert json.loads((tmp_path / "cli" / "card.json").read_text())["epoch"] == 2
