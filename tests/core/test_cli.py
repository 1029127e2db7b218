"""The commands a new user types, run as a new user would."""

import json
import subprocess
import sys

from core.runs.folder import Run


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True, cwd=cwd)


def test_demo_data_then_train_leaves_checkpoints_and_metrics(tmp_path):
    data, run = tmp_path / "data" / "demo", tmp_path / "checkpoints" / "try"
    made = _cli("demo-data", "--out", str(data), "--size", "64", "--n-train", "4")
    assert made.returncode == 0, made.stderr
    trained = _cli("train", "--data", str(data), "--run", str(run), "--epochs", "2", "--image-size", "32",
                   "--depth", "3", "--base-width", "4", "--categories", "grid,screw", "--quiet")
    assert trained.returncode == 0, trained.stderr
    assert (run / "epoch_001.pt").is_file() and (run / "epoch_002.pt").is_file()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    config = json.loads((run / "config.json").read_text())
    assert config["categories"] == ["grid", "screw"] and config["model"]["depth"] == 3


def test_config_file_and_set_overrides(tmp_path, demo_root):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"epochs": 1, "image_size": 32, "model": {"base_width": 4, "depth": 2},
                               "categories": ["pill"]}))
    result = _cli("train", "--config", str(cfg), "--data", str(demo_root), "--run", str(tmp_path / "r"),
                  "--set", "augment.hflip_p=0", "--set", "loss=l1", "--objective", "denoise", "--quiet")
    assert result.returncode == 0, result.stderr
    config = Run(tmp_path / "r").config()
    assert config.augment.hflip_p == 0 and config.loss == "l1" and config.model.depth == 2
    assert config.objective == "denoise" and Run(tmp_path / "r").metrics()[0]["objective"] == "denoise"


def test_user_errors_are_one_clear_line(tmp_path, demo_root):
    missing = _cli("train", "--data", str(tmp_path / "nowhere"), "--run", str(tmp_path / "r"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    bad_loss = _cli("train", "--data", str(demo_root), "--run", str(tmp_path / "r2"), "--loss", "0.5*foo")
    assert bad_loss.returncode == 2 and "foo" in bad_loss.stderr and "Traceback" not in bad_loss.stderr
    bad_objective = _cli("train", "--data", str(demo_root), "--run", str(tmp_path / "r4"),
                         "--objective", "draem")
    assert bad_objective.returncode == 2 and "objective must be one of" in bad_objective.stderr
    bad_set = _cli("train", "--data", str(demo_root), "--run", str(tmp_path / "r3"), "--set", "model.widht=3")
    assert bad_set.returncode == 2 and "model.widht" in bad_set.stderr
