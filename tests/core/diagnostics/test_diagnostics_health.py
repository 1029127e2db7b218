"""Health flags on planted failures, the timeline and the diagnose CLI.

One module-scoped run is trained briefly for real (a tiny U-Net, 2 x 30 Adam steps at 32 px),
then failures are planted into copies of its last checkpoint: zeroed bottleneck (epoch 3),
constant output (epoch 4), a NaN weight (epoch 5). A second run holds a network wired so that
its output equals its input through the full-resolution skip (copying_run, conftest.py).
"""

from __future__ import annotations

import copy
import json
import math
import shutil

import numpy as np
import pytest
import torch

from core.__main__ import main as cli
from core.config import TrainConfig
from core.data.dataset import load_training_data, split_validation
from core.data.layouts import discover_samples
from core.diagnostics import (
    DataFolderMissing,
    diagnose_epoch,
    diagnose_run,
    probe_set,
    reconstruction_health,
    suggest_epoch,
    weight_stats,
)
from core.diagnostics import health as health_module
from core.diagnostics.evidence import RECONSTRUCTION_METHODS
from core.diagnostics.health import (
    BLURRY_HF_RATIO,
    COLLAPSE_SPREAD_RATIO,
    blurry_flag,
    collapsed_flag,
)
from core.diagnostics.reconstruction import reconstruction_numbers
from core.diagnostics.timeline import collapse_start
from core.model.tensors import to_tensor
from core.model.unet import UNetAutoencoder
from core.runs.folder import Run
from core.training.loop import conv_weights
from tests.conftest import tiny_config, write_run

DEEP = ("down.1.1.0.weight", "down.1.1.3.weight")  # the bottleneck block of a depth-2 model
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """2 shared cores: one torch thread is many times faster than two fighting for them."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def train_steps(model, optimizer, images: torch.Tensor, steps: int, generator) -> tuple[float, dict]:
    """L1 training like core.training.loop, returning the mean loss and mean grad norm per conv."""
    model.train()
    layers = conv_weights(model)
    sums, loss_sum = dict.fromkeys(layers, 0.0), 0.0
    for _ in range(steps):
        x = images[torch.randint(0, len(images), (16,), generator=generator)]
        loss = (model(x) - x).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        for name, p in layers.items():
            sums[name] += float(p.grad.norm())
        optimizer.step()
        loss_sum += loss.item()
    return loss_sum / steps, {name: s / steps for name, s in sums.items()}


@pytest.fixture(scope="module")
def planted(tmp_path_factory, demo_root) -> Run:
    config = tiny_config(demo_root, "unused", **{"model.depth": 2, "model.skips": "none", "loss": "l1"})
    data = load_training_data(demo_root, config.image_size, val_fraction=config.val_fraction, seed=config.seed)
    train, val = to_tensor(data.train.images), to_tensor(data.val.images)
    torch.manual_seed(config.seed)
    model = UNetAutoencoder(config.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    generator = torch.Generator().manual_seed(0)
    states, metrics = {}, []
    for epoch in (1, 2):
        loss, grads = train_steps(model, optimizer, train, 30, generator)
        model.eval()
        with torch.no_grad():
            val_loss = float((model(val) - val).abs().mean())
        states[epoch] = copy.deepcopy(model.state_dict())
        metrics.append({"epoch": epoch, "train_loss": loss, "val_loss": val_loss, "grad_norm": grads})
    dead = copy.deepcopy(states[2])
    for name in DEEP:
        dead[name].zero_()
    metrics.append({"epoch": 3, "train_loss": loss, "val_loss": val_loss,
                    "grad_norm": {k: v * (1e-5 if k in DEEP else 1.0) for k, v in grads.items()}})
    constant = copy.deepcopy(states[2])
    constant["head.weight"].zero_()
    constant["head.bias"].zero_()  # sigmoid(0): every pixel of every output is 0.5 grey
    broken = copy.deepcopy(states[2])
    broken["stem.0.weight"][0, 0, 0, 0] = float("nan")
    states.update({3: dead, 4: constant, 5: broken})
    return write_run(tmp_path_factory.mktemp("planted"), config, states, metrics)


# --------------------------------------------------------------------------- planted failures


def test_briefly_trained_model_is_healthy(planted):
    report = reconstruction_health(planted, 2)
    assert report.flag("collapsed") is None, report.flags
    assert report.flag("identity_copy") is None
    assert report.flag("dead_layers") is None and report.flag("nan") is None
    assert report.healthy
    assert report.numbers["image_spread_ratio"] > COLLAPSE_SPREAD_RATIO


def test_constant_output_is_collapsed_grey(planted):
    report = reconstruction_health(planted, 4)
    flag = report.flag("collapsed")
    assert flag is not None and flag.severity == "error" and not report.healthy
    assert flag.evidence["image_spread_ratio"] < 1e-3
    assert "uniform grey image" in flag.sentence and "mean intensity 0.50" in flag.sentence
    assert report.flag("identity_copy") is None  # uniform error must not read as copying


def test_output_equal_to_input_through_the_skip_is_identity_copy(copying_run):
    report = reconstruction_health(copying_run, 1)
    flag = report.flag("identity_copy")
    assert flag is not None and flag.severity == "error", report.flags
    assert flag.evidence["kept_share"] > 0.95 and flag.evidence["n_pasted_images"] > 0
    assert flag.unusable == RECONSTRUCTION_METHODS and "knn" not in report.unusable
    assert "skips=1" in flag.sentence
    assert report.flag("collapsed") is None and report.flag("blurry") is None


def test_zeroed_bottleneck_is_dead_layers_by_weights_and_gradients(planted):
    report = reconstruction_health(planted, 3)
    flag = report.flag("dead_layers")
    assert flag is not None and flag.severity == "error"  # the bottleneck is the U-Net's only route
    logged = {m["epoch"]: m["grad_norm"] for m in planted.metrics()}
    for name in DEEP:
        assert flag.evidence[f"weight_std_ratio:{name}"] == 0.0
        assert flag.evidence[f"gradient_ratio:{name}"] == pytest.approx(logged[3][name] / logged[1][name])
    assert flag.evidence["dead_layers"] == len(DEEP)
    assert reconstruction_health(planted, 2).flag("dead_layers") is None


def test_nan_weight_is_flagged_and_silences_output_rules(planted):
    report = reconstruction_health(planted, 5)
    assert [f.name for f in report.flags if f.name != "dead_layers"] == ["nan"]
    assert report.flag("nan").evidence["nonfinite_weights"] == 1
    assert report.flag("nan").evidence["nonfinite_outputs"] > 0


# --------------------------------------------------------------------------- rules at their thresholds


def _numbers(**values) -> dict[str, float]:
    base = {"image_spread_ratio": 0.8, "output_image_spread": 0.16, "input_image_spread": 0.2,
            "pixel_spread_ratio": 0.9, "output_pixel_spread": 0.18, "output_mean": 0.4,
            "output_saturated_share": 0.0, "hf_ratio": 0.6, "output_hf_energy": 0.012, "input_hf_energy": 0.02,
            "defect_error_inside": 0.2, "defect_error_outside": 0.05, "defect_error_ratio": 4.0,
            "input_pixel_spread": 0.2, "n_defect_images": 4.0}
    return {**base, **values}


def test_thresholds_bite_exactly_where_documented():
    below, above = COLLAPSE_SPREAD_RATIO * 0.99, COLLAPSE_SPREAD_RATIO * 1.01
    assert collapsed_flag(_numbers(image_spread_ratio=below)) is not None
    assert collapsed_flag(_numbers(image_spread_ratio=above)) is None
    assert blurry_flag(_numbers(hf_ratio=BLURRY_HF_RATIO * 0.99)).severity == "warning"
    assert blurry_flag(_numbers(hf_ratio=BLURRY_HF_RATIO * 1.01)) is None
    assert collapsed_flag(_numbers(image_spread_ratio=float("nan"))) is None


def test_black_collapse_and_defect_removal_from_arrays():
    rng = np.random.default_rng(0)
    inputs = rng.uniform(0.2, 0.8, size=(6, 3, 16, 16))
    masks = np.zeros((6, 16, 16))
    masks[3:, 4:8, 4:8] = 1
    labels = np.array([0, 0, 0, 1, 1, 1])
    black = reconstruction_numbers(inputs, np.zeros_like(inputs), masks, labels)
    flag = collapsed_flag(black)
    assert "uniform black image" in flag.sentence and black["output_saturated_share"] == 1.0
    clean = inputs.copy()
    anomalous = inputs.copy()
    anomalous[3:, :, 4:8, 4:8] = 1.0  # a planted bright defect the model removes
    removed = reconstruction_numbers(anomalous, clean, masks, labels)
    assert removed["defect_error_ratio"] > 100
    copied = reconstruction_numbers(anomalous, anomalous, masks, labels)
    assert copied["defect_error_ratio"] == pytest.approx(1.0)


# --------------------------------------------------------------------------- probe, cache, missing data


def test_probe_has_unseen_normals_and_masked_defects_per_category(planted):
    probe = probe_set(planted)
    assert set(probe.categories) == {"carpet", "bottle", "pill"}
    assert probe.images.shape[1:] == (32, 32, 3)
    anomalous = probe.labels == 1
    assert anomalous.any() and probe.has_mask[anomalous].all()
    assert all(probe.masks[i].any() for i in np.flatnonzero(anomalous))
    config = planted.config()
    samples = discover_samples(config.data)
    _, val = split_validation([s for s in samples if s.split == "train"], config.val_fraction, config.seed)
    unseen = {s.name for s in val} | {s.name for s in samples if s.split == "test" and s.label == 0}
    normals = {s.name for s, a in zip(probe.samples, anomalous, strict=True) if not a}
    assert normals and normals <= unseen  # never an image the model trained on
    again = probe_set(planted)
    assert [s.name for s in again.samples] == [s.name for s in probe.samples]
    assert np.array_equal(again.images, probe.images)


def test_health_is_cached_per_checkpoint(planted, monkeypatch):
    first = reconstruction_health(planted, 2)

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(health_module, "_reconstruction_result", fail)
    again = reconstruction_health(planted, 2)
    assert again.numbers == first.numbers and [f.name for f in again.flags] == [f.name for f in first.flags]


def test_missing_dataset_names_the_folder_and_falls_back(planted, tmp_path, demo_root):
    moved = tmp_path / "moved"
    shutil.copytree(planted.path, moved, ignore=shutil.ignore_patterns("cache"))
    config = TrainConfig.load(moved / "config.json").with_overrides({"data": str(tmp_path / "gone")})
    config.save(moved / "config.json")
    run = Run(moved)
    with pytest.raises(DataFolderMissing, match=r"gone.*--data"):
        reconstruction_health(run, 3)
    result = diagnose_epoch(run, 3)
    assert "gone" in result.health.notes[0]
    assert [f.name for f in result.health.flags] == ["dead_layers"]
    assert "skipped" in result.clustering
    assert reconstruction_health(run, 2, data_root=demo_root).healthy


# --------------------------------------------------------------------------- timeline and suggestion


def test_timeline_finds_collapse_and_never_suggests_an_unhealthy_epoch(planted):
    diagnosis = diagnose_run(planted, cluster=False)
    ranked = diagnosis.suggestion  # label-free ranking: epoch and method
    unusable = {r.epoch: r.unusable for r in diagnosis.reports}
    assert ranked.method is not None and ranked.method not in unusable[ranked.epoch]
    assert ranked.epoch != 5  # NaN weights rule out every method
    result = diagnose_run(planted, cluster=False, rank=False)  # the health-only suggestion
    healthy = {row["epoch"]: row["healthy"] for row in result.timeline}
    assert healthy == {1: True, 2: True, 3: False, 4: False, 5: False}
    assert [r.healthy for r in result.reports] == list(healthy.values())
    assert result.collapse_starts == 3  # the zeroed bottleneck already makes the output constant
    suggestion = result.suggestion
    assert suggestion.epoch in (1, 2) and suggestion.method is None and result.ranking is None
    assert any("val loss" in reason for reason in suggestion.reasons)
    best_val = min((1, 2), key=lambda e: result.row(e)["val_loss"])
    assert suggestion.epoch == best_val
    record = json.loads(json.dumps(result.to_dict(), allow_nan=False))  # what --json writes
    assert record["suggestion"]["epoch"] == best_val and "ranking" not in record
    assert "ranking" in diagnosis.to_dict()


def test_damaged_checkpoint_is_left_out_of_the_timeline(planted, tmp_path, capsys):
    damaged = tmp_path / "damaged"
    shutil.copytree(planted.path, damaged, ignore=shutil.ignore_patterns("cache"))
    (damaged / "epoch_001.pt").write_bytes(b"not a checkpoint")
    result = diagnose_run(Run(damaged), cluster=False)
    assert [row["epoch"] for row in result.timeline] == [2, 3, 4, 5] == result.epochs
    assert any("epoch 1 left out" in note and "damaged" in note for note in result.notes)
    assert cli(["diagnose", "--run", str(damaged), "--epoch", "2", "--no-cluster"]) == 0
    assert "down.1.1.3.weight" in capsys.readouterr().out


def test_collapse_start_ignores_warm_up_and_suggestion_without_healthy_epochs():
    rows = [{"epoch": e, "flags": flags} for e, flags in
            [(1, ["collapsed"]), (2, ["collapsed"]), (3, []), (4, ["collapsed"]), (5, ["collapsed"])]]
    assert collapse_start(rows) == 4
    assert collapse_start(rows[:2]) == 1  # never left the collapsed state
    assert collapse_start(rows[:3]) is None  # warm-up only
    sick = [{"epoch": 1, "healthy": False, "errors": ["collapsed"], "warnings": []}]
    assert suggest_epoch(sick).epoch is None
    rows = [{"epoch": 1, "healthy": True, "errors": [], "warnings": [], "synthetic_auroc_ssim": 0.9,
             "val_loss": 0.2},
            {"epoch": 2, "healthy": True, "errors": [], "warnings": [], "synthetic_auroc_ssim": 0.7,
             "val_loss": 0.1},
            {"epoch": 3, "healthy": False, "errors": ["identity_copy"], "warnings": [],
             "synthetic_auroc_ssim": 1.0, "val_loss": 0.01}]
    assert suggest_epoch(rows).epoch == 1  # synthetic AUROC outweighs val loss; 3 is excluded


def test_diagnose_epoch_is_json_with_weights_and_clustering(planted):
    result = diagnose_epoch(planted, 2)
    json.dumps(result.to_dict(), allow_nan=False)
    assert result.health.healthy is True
    assert len(result.weights["layers"]) == len(weight_stats(planted, 2))
    clustering = result.clustering
    assert 0 < clustering["purity"] <= 1 and clustering["k"] == 3
    assert math.isfinite(clustering["ari"])


# --------------------------------------------------------------------------- CLI


def test_cli_diagnose_all_writes_json_and_prints_timeline(planted, tmp_path, capsys):
    target = tmp_path / "diag.json"
    assert cli(["diagnose", "--run", str(planted.path), "--epoch", "all", "--no-cluster",
                "--json", str(target)]) == 0
    out = capsys.readouterr().out
    assert "collapse starts: epoch 3" in out and "suggested epoch:" in out
    assert "uniform grey image" in out and "down.1.1.3.weight" in out
    written = json.loads(target.read_text())
    assert written["collapse_starts"] == 3 and "down.1.1.0.weight" in written["weight_std"]


def test_cli_diagnose_one_epoch_and_errors(planted, capsys):
    assert cli(["diagnose", "--run", str(planted.path), "--epoch", "4", "--no-cluster"]) == 0
    out = capsys.readouterr().out
    assert "UNHEALTHY" in out and "[error] collapsed" in out
    assert cli(["diagnose", "--run", str(planted.path), "--epoch", "9"]) == 2
    assert "epoch 9 does not exist" in capsys.readouterr().err



# --------------------------------------------------------------------------- collapse from evidence


def _demo_inputs(per_category: int = 6, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Real-looking probe images: demo carpet, bottle and pill scenes, (N, 3, H, W) in [0, 1]."""
    from core.data.demo import REGISTRY

    images, categories = [], []
    for category in ("carpet", "bottle", "pill"):
        render = REGISTRY[category][0]
        for i in range(per_category):
            scene = render(np.random.default_rng(100 + i), size)
            images.append(np.asarray(scene.image, np.float64).reshape(size, size, -1)[..., :3])
            categories.append(category)
    x = np.stack(images).transpose(0, 3, 1, 2)
    return (x / 255.0 if x.max() > 1.5 else x), np.array(categories)


def _box_blur(x: np.ndarray, k: int = 5) -> np.ndarray:
    pad = k // 2
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="edge")
    out = np.zeros_like(x)
    for dy in range(k):
        for dx in range(k):
            out += padded[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]
    return out / k ** 2


def test_one_blob_per_category_is_collapsed_although_outputs_still_vary_overall():
    """The homework failure: every image of a category comes back as that category's blob (plus
    a little noise that does not follow the input). The spread across all images stays above
    the old 0.1 line (the categories differ), yet nothing of each image comes back."""
    inputs, categories = _demo_inputs()
    rng = np.random.default_rng(1)
    outputs = np.empty_like(inputs)
    for category in set(categories):
        m = categories == category
        blob = _box_blur(inputs[m].mean(axis=0, keepdims=True), 9)
        outputs[m] = blob + rng.normal(0, 0.01, size=inputs[m].shape)
    numbers = reconstruction_numbers(inputs, outputs, np.zeros(inputs.shape[:1] + inputs.shape[2:]),
                                     np.zeros(len(inputs)), categories)
    assert numbers["image_spread_ratio"] > COLLAPSE_SPREAD_RATIO  # the old rule called this healthy
    flag = collapsed_flag(numbers)
    assert flag is not None and flag.severity == "error"
    assert numbers["input_dependence_high"] < 0.1
    assert flag.sentence.startswith("Every input is reconstructed as") and "of the differences between its images" in flag.sentence
    assert set(flag.unusable) == set(RECONSTRUCTION_METHODS)


def test_one_collapsed_category_is_named_while_the_others_work():
    inputs, categories = _demo_inputs()
    outputs = _box_blur(inputs, 3)
    pill = categories == "pill"
    outputs[pill] = inputs[pill].mean(axis=0, keepdims=True)
    numbers = reconstruction_numbers(inputs, outputs, np.zeros(inputs.shape[:1] + inputs.shape[2:]),
                                     np.zeros(len(inputs)), categories)
    flag = collapsed_flag(numbers)
    assert flag is not None and flag.sentence.startswith("Within pill, every image")
    assert "carpet" not in flag.sentence and "bottle" not in flag.sentence


def test_blurry_but_working_reconstructions_are_not_collapsed():
    """Even a 7x7 box blur at 32 px, on textures whose images differ mostly in fine detail, keeps
    a clear share of the differences between images: blur is a warning, never a collapse."""
    inputs, categories = _demo_inputs()
    dependence = []
    for k in (3, 5, 7):
        outputs = _box_blur(inputs, k)
        numbers = reconstruction_numbers(inputs, outputs, np.zeros(inputs.shape[:1] + inputs.shape[2:]),
                                         np.zeros(len(inputs)), categories)
        assert collapsed_flag(numbers) is None, k
        assert numbers["input_dependence_low"] > health_module.COLLAPSE_DEPENDENCE, k
        dependence.append(numbers["input_dependence"])
    assert dependence[0] > dependence[1] > dependence[2]  # the more blur, the less comes back


def test_alike_inputs_rebuilt_as_one_good_image_are_not_collapsed_but_a_blob_is():
    """Every bottle photographed alike: rebuilding each as the same good bottle is what an
    anomaly-detection autoencoder should do (a no-skip model on MVTec bottle does exactly this);
    a grey blob for the same inputs is still a collapse."""
    inputs, categories = _demo_inputs()
    rng = np.random.default_rng(2)
    alike = np.repeat(inputs[categories == "bottle"][:1], 6, axis=0) + rng.normal(0, 0.01, (6,) + inputs.shape[1:])
    labels, masks = np.zeros(6), np.zeros((6,) + inputs.shape[2:])
    good = reconstruction_numbers(alike, np.repeat(alike.mean(axis=0, keepdims=True), 6, axis=0), masks, labels,
                                  ["bottle"] * 6)
    assert good["input_dependence_high:bottle"] < 0.1 and good["between_share:bottle"] < 0.05
    assert collapsed_flag(good) is None
    blob = reconstruction_numbers(alike, np.full_like(alike, 0.5), masks, labels, ["bottle"] * 6)
    flag = collapsed_flag(blob)
    assert flag is not None and "inputs are alike" in flag.sentence
