"""A corpus of input faults a new user meets, one group per KIND of fault.

Each case is shaped like data from public bug reports of anomaly-detection tools and asserts
what the user relies on: the right numbers, or one clear sentence naming the file and the fix.
Everything is tiny (16-32 px, a few images, one epoch), so the module runs in well under a
minute on 2 cores.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from PIL import Image

from core.__main__ import main as cli
from core.config import ModelConfig, TrainConfig
from core.data.dataset import load_training_data, split_validation
from core.data.images import MaskWarning, load_image_set, read_image, read_mask
from core.data.layouts import DatasetLayoutError, discover_samples
from core.data.samples import ANOMALOUS, NORMAL, ImageSet, Sample
from core.evaluation.metrics import aupro, image_auroc, pixel_metrics
from core.evaluation.notes import category_note
from core.runs.checkpoint import load_checkpoint, open_checkpoint, read_payload
from core.runs.finite import NonFiniteError, require_finite
from core.runs.folder import Run, RunError, save_checkpoint
from core.scoring import score_image_set
from core.training.trainability import UntrainableConfigError, untrainable_reason
from tests.data_support import load_test_data

REPO = Path(__file__).resolve().parents[2]
SIZE = 16  # every image's side in px


# --------------------------------------------------------------------------- builders


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(path)
    return path


def _texture(seed: int, level: float = 0.5) -> np.ndarray:
    """(SIZE, SIZE) float in [0, 1]: a normal image is smooth noise around `level`."""
    rng = np.random.default_rng(seed)
    return np.clip(level + 0.03 * rng.standard_normal((SIZE, SIZE)), 0, 1)


def _defect_mask() -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[4:10, 5:11] = 1
    return mask


def _with_defect(image: np.ndarray) -> np.ndarray:
    """A bright square where _defect_mask is set: a brightness defect."""
    out = image.copy()
    out[_defect_mask() > 0] = np.clip(out[_defect_mask() > 0] + 0.25, 0, 1)
    return out


def _rgb8(gray: np.ndarray) -> np.ndarray:
    return np.repeat((gray * 255).round().astype(np.uint8)[..., None], 3, axis=2)


def _mvtec(root: Path, category: str = "widget", n_train: int = 6, n_good: int = 3,
           n_defect: int = 3, normal_name: str = "good", ext: str = ".png",
           mask_name: str = "{stem}_mask.png") -> Path:
    """<root>/<category>/{train/<normal>, test/<normal>, test/crack, ground_truth/crack}."""
    folder = root / category
    for i in range(n_train):
        _save(folder / "train" / normal_name / f"{i:03d}{ext}", _rgb8(_texture(i)))
    for i in range(n_good):
        _save(folder / "test" / normal_name / f"{i:03d}{ext}", _rgb8(_texture(100 + i)))
    for i in range(n_defect):
        _save(folder / "test" / "crack" / f"{i:03d}{ext}", _rgb8(_with_defect(_texture(200 + i))))
        name = mask_name.format(stem=f"{i:03d}", num=i)
        _save(folder / "ground_truth" / "crack" / name, _defect_mask() * 255)
    return root


def _tiny(data: Path, run: Path, **overrides) -> TrainConfig:
    config = TrainConfig(data=str(data), run=str(run), image_size=SIZE, epochs=1, batch_size=4,
                         model=ModelConfig(base_width=4, depth=2), seed=0, synthetic_val=False)
    return config.with_overrides(overrides) if overrides else config


def _train(config: TrainConfig) -> Run:
    from core.training.loop import train_one

    return train_one(config, progress=False, log=lambda _: None)


def _cli(capsys, *args) -> tuple[int, str, str]:
    code = cli([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def nan_run(tmp_path_factory):
    """Epoch 1 trained normally, epoch 2 with every weight NaN (a diverged run)."""
    root = _mvtec(tmp_path_factory.mktemp("nan_data"))
    run = _train(_tiny(root, tmp_path_factory.mktemp("runs") / "nan"))
    payload = read_payload(run, 1)
    payload["model"] = {k: v * float("nan") if v.is_floating_point() else v
                        for k, v in payload["model"].items()}
    payload["epoch"] = 2
    save_checkpoint(run.checkpoint_path(2), payload)
    return run, root


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """Trained on 3 images: too few to hold out a validation image."""
    root = _mvtec(tmp_path_factory.mktemp("small_data"), n_train=3)
    return _train(_tiny(root, tmp_path_factory.mktemp("runs") / "small")), root


# --------------------------------------------------------------------------- 1. bit depth


def test_16bit_images_keep_their_brightness_relative_to_each_other(tmp_path):
    dark = _save(tmp_path / "dark.png", np.full((SIZE, SIZE), 16384, np.uint16))
    bright = _save(tmp_path / "bright.png", np.full((SIZE, SIZE), 49152, np.uint16))
    assert read_image(dark, SIZE).mean() == pytest.approx(64, abs=1)  # 16384/65535*255
    assert read_image(bright, SIZE).mean() == pytest.approx(191, abs=1)


def test_16bit_defect_is_as_visible_as_in_its_8bit_copy(tmp_path):
    """rawknn AUROC of a brightness defect: the same on 16-bit files as on 8-bit ones."""
    aurocs = {}
    for depth in (8, 16):
        root = tmp_path / f"d{depth}"
        paths, labels = [], []
        for i in range(12):
            gray = _texture(i) if i < 8 else _with_defect(_texture(i))
            array = (gray * 65535).astype(np.uint16) if depth == 16 else (gray * 255).astype(np.uint8)
            paths.append(_save(root / f"{i:02d}.png", array))
            labels.append(NORMAL if i < 8 else ANOMALOUS)
        train = load_image_set([Sample(p, "a", NORMAL, "good", "train") for p in paths[:4]], SIZE)
        test = load_image_set([Sample(p, "a", y, "x", "test") for p, y in zip(paths[4:], labels[4:], strict=True)],
                              SIZE)
        scores = score_image_set(None, test, "rawknn", train=train, thumb_size=SIZE).scores
        aurocs[depth] = image_auroc(test.labels, scores)
    assert aurocs[8] == 1.0 and aurocs[16] == 1.0


def _png16(path: Path, array: np.ndarray) -> Path:
    """A 16-bit PNG written by hand (Pillow writes 16 bits for grayscale only)."""
    import struct
    import zlib

    h, w, channels = array.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_gray_rgb_and_alpha_pngs_scale_by_bit_depth(tmp_path, channels):
    array = np.full((SIZE, SIZE, channels), 16384, np.uint16)
    if channels in (2, 4):
        array[..., -1] = 65535  # opaque
    image = read_image(_png16(tmp_path / "x.png", array), SIZE)
    assert image.mean() == pytest.approx(64, abs=1)


@pytest.mark.parametrize("mode, values, expected", [
    ("F", np.full((SIZE, SIZE), 0.5, np.float32), 128),  # float image in [0, 1]
    ("F", np.full((SIZE, SIZE), 100.0, np.float32), 100),  # float image in [0, 255]
    ("I", np.full((SIZE, SIZE), 30000, np.int32), 117),  # 16-bit values stored 32-bit
])
def test_float_and_wide_integer_images_scale_by_their_range_not_per_image(tmp_path, mode, values, expected):
    path = tmp_path / "x.tif"
    Image.fromarray(values, mode=mode).save(path)
    assert read_image(path, SIZE).mean() == pytest.approx(expected, abs=1)


# --------------------------------------------------------------------------- 2. folders


@pytest.mark.parametrize("junk", [".ipynb_checkpoints", "__MACOSX", ".git", "_backup"])
def test_hidden_and_tool_folders_in_test_are_no_defect_type(tmp_path, junk):
    root = _mvtec(tmp_path)
    _save(root / "widget" / "test" / junk / "000.png", _rgb8(_texture(100)))
    _save(root / junk / "train" / "good" / "000.png", _rgb8(_texture(0)))  # not a category either
    samples = discover_samples(root)
    assert {s.defect for s in samples if s.split == "test"} == {"good", "crack"}
    assert {s.category for s in samples} == {"widget"}


@pytest.mark.parametrize("normal_name", ["ok", "OK", "normal", "Normal", "GOOD"])
def test_normal_folder_synonyms_are_read_as_good(tmp_path, normal_name):
    root = _mvtec(tmp_path, normal_name=normal_name)
    samples = discover_samples(root)
    train = [s for s in samples if s.split == "train"]
    good = [s for s in samples if s.split == "test" and s.label == NORMAL]
    assert len(train) == 6 and len(good) == 3 and {s.defect for s in good} == {"good"}


def test_folders_without_images_add_no_samples(tmp_path):
    root = _mvtec(tmp_path)
    notes = root / "widget" / "test" / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("not an image")
    (root / "widget" / "test" / "crack" / ".DS_Store").write_bytes(b"\0\1")
    assert len([s for s in discover_samples(root) if s.split == "test"]) == 6


# --------------------------------------------------------------------------- 3. non-finite


def test_a_nan_loss_names_the_epoch_and_what_to_do(tmp_path, monkeypatch):
    import core.training.loop as train_module

    class NanLoss(train_module.ReconstructionLoss):
        def forward(self, x, y):
            return super().forward(x, y) * float("nan")

    monkeypatch.setattr(train_module, "ReconstructionLoss", NanLoss)
    root = _mvtec(tmp_path)
    with pytest.raises(NonFiniteError, match=r"at epoch 1;.*lower --lr \(now 0\.002\)"):
        _train(_tiny(root, tmp_path / "run"))
    assert issubclass(NonFiniteError, ValueError)  # so the CLI prints it as one line, exit 2


def test_diagnose_flags_a_nan_epoch_instead_of_crashing(nan_run, capsys, tmp_path):
    run, _ = nan_run
    code, out, err = _cli(capsys, "diagnose", "--run", run.path, "--epoch", "2", "--json", tmp_path / "d.json")
    assert code == 0 and "Traceback" not in err
    report = json.loads((tmp_path / "d.json").read_text())
    text = json.dumps(report)
    assert "nan" in {f["name"] for f in report["health"]["flags"]}, text[:500]
    assert "NaN/inf" in out


def test_evaluate_refuses_nan_scores_naming_the_epoch(nan_run, capsys):
    run, root = nan_run
    code, out, err = _cli(capsys, "evaluate", "--run", run.path, "--epoch", "2", "--method", "pixel",
                          "--data", root)
    assert code == 2 and out == ""
    assert "of epoch 2 are NaN or inf" in err and "pick an earlier epoch" in err


def test_evaluate_all_keeps_the_healthy_epochs(nan_run, capsys):
    run, root = nan_run
    code, out, err = _cli(capsys, "evaluate", "--run", run.path, "--epoch", "all", "--method", "pixel",
                          "--data", root, "--fast")
    assert code == 0 and "epoch 2 left out" in err
    rows = [line for line in out.splitlines() if line[:1].isdigit() or line.startswith(("pixel", "rawknn"))]
    assert rows and not any("nan" in row.lower() for row in rows)


def test_export_writes_no_submission_of_nan_scores(nan_run, capsys, tmp_path):
    run, root = nan_run
    code, _, err = _cli(capsys, "export", "--run", run.path, "--epoch", "2", "--out", tmp_path / "x",
                        "--test", root)
    assert code == 2 and "epoch 2" in err
    assert not (tmp_path / "x" / "submission.csv").exists()


def test_metrics_of_nan_maps_are_undefined_never_a_number():
    masks = np.zeros((2, 8, 8), np.uint8)
    masks[1, 2:4, 2:4] = 1
    maps = np.full((2, 8, 8), np.nan)
    assert np.isnan(aupro(masks, maps)) and np.isnan(image_auroc([0, 1], [np.nan, 1.0]))
    with pytest.raises(NonFiniteError, match="3 knn image scores of epoch 7"):
        require_finite(np.array([np.nan, np.inf, -np.inf, 1.0]), "knn image scores", 7, "runs/x")


# --------------------------------------------------------------------------- 4. mask encodings


def _encodings(mask: np.ndarray) -> dict[str, Image.Image]:
    palette = Image.fromarray(mask, mode="L").convert("P")
    palette.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    rgb = np.zeros((*mask.shape, 3), np.uint8)
    rgb[mask > 0] = (255, 0, 0)
    rgba = np.dstack([rgb, np.where(mask > 0, 255, 0).astype(np.uint8)])
    return {
        "0-1": Image.fromarray(mask),
        "0-255": Image.fromarray(mask * 255),
        "palette": palette,
        "rgb-red": Image.fromarray(rgb),
        "rgba": Image.fromarray(rgba),
        "16-bit": Image.fromarray(mask.astype(np.uint16) * 65535),
        "1-bit": Image.fromarray(mask * 255).convert("1"),
    }


def test_a_mask_drawn_in_transparency_reads_its_opaque_pixels(tmp_path):
    rgba = np.zeros((SIZE, SIZE, 4), np.uint8)  # black strokes on a transparent background
    rgba[..., 3] = _defect_mask() * 255
    path = _save(tmp_path / "m.png", rgba)
    assert np.array_equal(read_mask(path, (SIZE, SIZE), SIZE), _defect_mask())


@pytest.mark.parametrize("encoding", list(_encodings(_defect_mask())))
def test_any_non_zero_mask_pixel_is_defect_whatever_the_encoding(tmp_path, encoding):
    path = tmp_path / "m.png"
    _encodings(_defect_mask())[encoding].save(path)
    assert np.array_equal(read_mask(path, (SIZE, SIZE), SIZE), _defect_mask())


def test_one_0_1_mask_among_0_255_ones_counts_like_the_others(tmp_path):
    root = _mvtec(tmp_path)
    _save(root / "widget" / "ground_truth" / "crack" / "001_mask.png", _defect_mask())  # 0/1
    test = load_test_data(root, SIZE)
    defect = test.labels == ANOMALOUS
    assert test.has_mask[defect].all()
    assert all(np.array_equal(m, _defect_mask()) for m in test.masks[defect])


def test_an_empty_mask_of_a_defect_image_is_named_and_its_image_kept(tmp_path):
    root = _mvtec(tmp_path)
    _save(root / "widget" / "ground_truth" / "crack" / "002_mask.png", np.zeros((SIZE, SIZE), np.uint8))
    with pytest.warns(MaskWarning, match=r"002_mask\.png: mask of defect image 002\.png is empty"):
        test = load_test_data(root, SIZE)
    assert len(test) == 6 and int(test.has_mask.sum()) == 2


def test_a_jpeg_mask_is_not_widened_by_compression_noise(tmp_path):
    path = tmp_path / "m.jpg"
    Image.fromarray(_defect_mask() * 255).save(path, quality=60)
    assert np.abs(read_mask(path, (SIZE, SIZE), SIZE).astype(int) - _defect_mask()).sum() <= 4


def test_a_defect_smaller_than_a_pixel_survives_resizing(tmp_path):
    mask = np.zeros((64, 64), np.uint8)
    mask[33, 17] = 255
    path = _save(tmp_path / "tiny.png", mask)
    assert read_mask(path, (64, 64), SIZE).sum() == 1


# --------------------------------------------------------------------------- 5. matching masks


@pytest.mark.parametrize("ext, mask_name", [
    (".JPG", "{stem}_mask.PNG"),
    (".png", "{stem}.png"),
    (".jpg", "{stem}_gt.bmp"),
    (".bmp", "{stem}_label.PNG"),
    (".png", "{stem}_MASK.tif"),
    (".PNG", "mask_{stem}.png"),
    (".png", "{stem}.png_mask.png"),
    (".png", "{num}_mask.png"),  # 000.png <-> 0_mask.png
])
def test_masks_match_their_images_across_formats_case_and_naming(tmp_path, ext, mask_name):
    root = _mvtec(tmp_path, ext=ext, mask_name=mask_name)
    test = load_test_data(root, SIZE)
    assert int(test.has_mask.sum()) == 3 and len(test) == 6


def test_mask_folders_are_found_whatever_their_case(tmp_path):
    root = _mvtec(tmp_path)
    folder = root / "widget"
    (folder / "ground_truth" / "crack").rename(folder / "ground_truth" / "Crack")
    (folder / "ground_truth").rename(folder / "GroundTruth")
    assert int(load_test_data(root, SIZE).has_mask.sum()) == 3


def test_masks_stored_beside_their_images_are_masks_not_test_images(tmp_path):
    root = _mvtec(tmp_path)
    gt = root / "widget" / "ground_truth"
    for mask in (gt / "crack").iterdir():
        mask.rename(root / "widget" / "test" / "crack" / mask.name)
    gt.joinpath("crack").rmdir()
    test = load_test_data(root, SIZE)
    assert len(test) == 6 and int(test.has_mask.sum()) == 3


def test_images_without_a_matching_mask_are_counted_in_a_warning(tmp_path):
    root = _mvtec(tmp_path)
    (root / "widget" / "ground_truth" / "crack" / "001_mask.png").rename(
        root / "widget" / "ground_truth" / "crack" / "one_mask.png")
    with pytest.warns(MaskWarning, match=r"no mask matches 1 of the 3 images .*001\.png"):
        discover_samples(root)


def test_a_folder_of_mask_parts_is_their_union(tmp_path):
    """MVTec LOCO: ground_truth/<defect>/<stem>/000.png, 001.png ..."""
    root = _mvtec(tmp_path)
    gt = root / "widget" / "ground_truth" / "crack"
    (gt / "000_mask.png").unlink()
    left, right = np.zeros((SIZE, SIZE), np.uint8), np.zeros((SIZE, SIZE), np.uint8)
    left[2:4, 2:4], right[10:12, 10:12] = 255, 255
    _save(gt / "000" / "000.png", left)
    _save(gt / "000" / "001.png", right)
    test = load_test_data(root, SIZE)
    first = next(i for i, s in enumerate(test.samples) if s.defect == "crack" and s.path.stem == "000")
    assert test.has_mask[first] and test.masks[first].sum() == 8


# --------------------------------------------------------------------------- 6. a bad mask


@pytest.mark.parametrize("bad", ["wrong_size", "garbage"])
def test_a_bad_mask_costs_only_the_mask_not_its_image(tmp_path, bad):
    root = _mvtec(tmp_path)
    path = root / "widget" / "ground_truth" / "crack" / "001_mask.png"
    if bad == "wrong_size":
        _save(path, np.zeros((10, 10), np.uint8))
    else:
        path.write_bytes(b"not a png")
    with pytest.warns(MaskWarning, match=r"001_mask\.png: .*its image 001\.png is kept"):
        test = load_test_data(root, SIZE)
    assert len(test) == 6 and int((test.labels == ANOMALOUS).sum()) == 3
    assert int(test.has_mask.sum()) == 2 and len(test.mask_problems) == 1


def test_pixel_metrics_use_only_trusted_masks(tmp_path):
    masks = np.zeros((3, 8, 8), np.uint8)
    masks[1, 2:5, 2:5] = 1
    maps = masks.astype(float)
    maps[2] = 1.0  # an unmasked defect image lit everywhere: must not count as false positives
    result = pixel_metrics(masks, maps, has_mask=[False, True, False], labels=[NORMAL, ANOMALOUS, ANOMALOUS])
    assert result["pixel_auroc"] == 1.0 and result["aupro"] == pytest.approx(1.0)


# --------------------------------------------------------------------------- 7. tiny sets


@pytest.mark.parametrize("n, fraction, n_train", [(3, 0.1, 3), (1, 0.5, 1), (2, 1.0, 1), (4, 0.0, 4), (10, 0.2, 8)])
def test_validation_never_takes_every_training_image(tmp_path, n, fraction, n_train):
    samples = [Sample(tmp_path / f"{i}.png", "a", NORMAL, "good", "train") for i in range(n)]
    train, val = split_validation(samples, fraction, seed=0)
    assert len(train) == n_train and len(val) == n - n_train


def test_evaluate_works_without_validation_normals_and_says_why(small_run, capsys):
    run, root = small_run
    code, out, err = _cli(capsys, "evaluate", "--run", run.path, "--epoch", "last", "--method", "pixel",
                          "--data", root)
    assert code == 0, err
    assert "percentile threshold undefined: the run held out no validation normals" in out


# --------------------------------------------------------------------------- 8. untrainable


def test_one_image_at_depth_5_and_32px_is_refused_before_training(tmp_path):
    root = _mvtec(tmp_path, n_train=1)
    config = _tiny(root, tmp_path / "run", image_size=32, **{"model.depth": 5, "model.norm": "batch"})
    with pytest.raises(UntrainableConfigError, match=r"bottleneck is 1x1 px.*1 training image.*--depth 4"):
        _train(config)
    assert Run(tmp_path / "run").epochs() == []


@pytest.mark.parametrize("norm, batch, n_train, refused", [
    ("batch", 1, 10, True), ("batch", 4, 10, False), ("group", 4, 1, False),
])
def test_which_configs_can_train_at_a_1x1_bottleneck(tmp_path, norm, batch, n_train, refused):
    config = _tiny(tmp_path, tmp_path / "r", image_size=32, batch_size=batch,
                   **{"model.depth": 5, "model.norm": norm})
    assert (untrainable_reason(config, n_train) is not None) == refused


def test_instance_norm_at_a_1x1_bottleneck_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"model.norm instance needs a bottleneck of at least 2x2 px: "
                                         r"image_size >= 64 at depth 5"):
        _tiny(tmp_path, tmp_path / "r", image_size=32, **{"model.depth": 5, "model.norm": "instance"})


# --------------------------------------------------------------------------- 9. undefined metrics


def test_a_test_set_without_normals_says_why_auroc_is_undefined(small_run, capsys, tmp_path):
    run, root = small_run
    import shutil

    data = tmp_path / "no_normals"
    shutil.copytree(root, data)
    shutil.rmtree(data / "widget" / "test" / "good")
    code, out, err = _cli(capsys, "evaluate", "--run", run.path, "--epoch", "last", "--method", "pixel",
                          "--data", data, "--fast")
    assert code == 0, err
    assert "widget: image AUROC and F1-max undefined: the test set has 3 defect images but no normal" in out
    assert "1.000" not in out  # no trivial F1 of 1.000 beside the undefined AUROC


@pytest.mark.parametrize("counts, phrase", [
    ({"normal": 0, "anomalous": 0, "unlabeled": 5}, "carry no labels"),
    ({"normal": 4, "anomalous": 0, "unlabeled": 0}, "no defect ones"),
    ({"normal": 4, "anomalous": 2, "unlabeled": 0}, None),
])
def test_category_notes(counts, phrase):
    note = category_note("c", counts)
    assert (note is None) if phrase is None else (phrase in note)


def test_no_masks_at_all_says_where_masks_were_expected(small_run, capsys, tmp_path):
    run, root = small_run
    import shutil

    data = tmp_path / "no_masks"
    shutil.copytree(root, data)
    shutil.rmtree(data / "widget" / "ground_truth")
    code, out, err = _cli(capsys, "evaluate", "--run", run.path, "--epoch", "last", "--method", "pixel",
                          "--data", data)
    assert code == 0, err
    assert "pixel AUROC and AUPRO undefined: no ground-truth mask was read" in out


# --------------------------------------------------------------------------- 10. discovery


def test_a_category_four_levels_deep_is_named_with_the_search_depth(tmp_path):
    _mvtec(tmp_path / "a" / "b" / "c")  # category at a/b/c/widget: 4 levels below tmp_path
    with pytest.raises(DatasetLayoutError, match=r"within 3 folder levels.*4 levels down.*--data .*a"):
        discover_samples(tmp_path)
    assert {s.category for s in discover_samples(tmp_path / "a")} == {"widget"}


# --------------------------------------------------------------------------- held elsewhere


def test_disk_full_while_saving_keeps_every_earlier_epoch(tmp_path, monkeypatch):
    import core.runs.folder as runs

    root = _mvtec(tmp_path)
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fdopen(fd, mode="r", *args, **kwargs):
        handle = real_fdopen(fd, mode, *args, **kwargs)
        return FullDisk(handle) if "epoch_002" in os.readlink(f"/proc/self/fd/{fd}") else handle

    monkeypatch.setattr(runs.os, "fdopen", fdopen)
    with pytest.raises(RunError, match=r"epoch 2 could not be saved \(No space left on device\); epochs 1\.\.1"):
        _train(_tiny(root, tmp_path / "run", epochs=3))
    monkeypatch.undo()
    run = Run(tmp_path / "run")
    assert run.epochs() == [1] and open_checkpoint(run, 1).model() is not None
    assert not [p for p in run.path.iterdir() if p.name.endswith(".tmp")]
    assert "could not be saved" in run.status()["message"]


def test_two_processes_on_one_run_exactly_one_trains(tmp_path):
    """Both processes reach flock at the same moment (after a shared start signal); the winner
    holds the lock until the test has read the loser's answer, so timing cannot decide."""
    code = ("import sys, time, pathlib; from core.training.locking import run_lock, RunLockedError\n"
            "go, done = pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])\n"
            "print('READY', flush=True)\n"
            "while not go.exists(): time.sleep(0.005)\n"
            "try:\n    with run_lock(sys.argv[1]):\n        print('TRAINS', flush=True)\n"
            "        while not done.exists(): time.sleep(0.01)\n"
            "except RunLockedError as err:\n    print('REFUSED', err, flush=True)\n")
    go, done = tmp_path / "go", tmp_path / "done"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run"), str(go), str(done)],
                              stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    try:
        assert [p.stdout.readline().strip() for p in procs] == ["READY", "READY"]
        go.touch()
        answers = sorted(p.stdout.readline() for p in procs)
    finally:
        done.touch()
        for p in procs:
            p.communicate(timeout=60)
    assert [a.split()[0] for a in answers] == ["REFUSED", "TRAINS"]
    assert "another training process (pid" in answers[0]


def test_a_held_lock_refuses_training_without_touching_the_run(tmp_path):
    from core.training.locking import RunLockedError, run_lock

    root = _mvtec(tmp_path)
    with run_lock(tmp_path / "run"), pytest.raises(RunLockedError, match="already training this run"):
        _train(_tiny(root, tmp_path / "run"))
    assert not (tmp_path / "run" / "status.json").exists()


def test_a_torn_last_metrics_line_still_loads(tmp_path):
    run = Run(tmp_path)
    run.append_metrics({"epoch": 1, "train_loss": 0.5})
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write('{"epoch": 2, "train_lo')
    assert run.metrics() == [{"epoch": 1, "train_loss": 0.5}]


class _Payload:
    def __reduce__(self):
        return (os.makedirs, (os.environ["PAYLOAD_MARKER"],))


def test_a_pickle_checkpoint_with_a_payload_is_refused_unrun(tmp_path, monkeypatch):
    marker = tmp_path / "payload_ran"
    monkeypatch.setenv("PAYLOAD_MARKER", str(marker))
    path = tmp_path / "epoch_001.pt"
    torch.save({"model": {}, "config": {}, "extra": _Payload()}, path)
    with pytest.raises(RunError, match=r"refused unrun: .*Python object .*weights_only=True"):
        load_checkpoint(path)
    assert not marker.exists()


def test_the_dashboard_listens_on_localhost_only():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert "127.0.0.1" in (REPO / "README.md").read_text()


def test_every_mask_problem_travels_with_the_subset(tmp_path):
    samples = [Sample(Path(f"{i}.png"), "a", NORMAL, "good", "test") for i in range(2)]
    image_set = ImageSet(samples, np.zeros((2, 4, 4, 3), np.uint8), np.zeros((2, 4, 4), np.uint8),
                         np.zeros(2, bool), [], [(Path("m.png"), "why")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert image_set.subset([1]).mask_problems == [(Path("m.png"), "why")]


def test_training_data_of_ok_folders_loads(tmp_path):
    data = load_training_data(_mvtec(tmp_path, normal_name="ok", n_train=5), SIZE, val_fraction=0.2)
    assert (len(data.train), len(data.val)) == (4, 1)


def test_the_dashboard_shows_a_nan_epoch_as_one_sentence(nan_run, tmp_path, monkeypatch):
    pytest.importorskip("streamlit")
    from tests.dashboard_support import copy_run, messages, open_app

    run, _ = nan_run
    root = copy_run(run.path, tmp_path / "runs")
    at = open_app(root, monkeypatch, "scores")
    [s for s in at.sidebar.select_slider if s.label == "Epoch"][0].set_value(2).run()
    for page in ("scores", "features", "reconstructions", "overview"):
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, f"{page}: {messages(at)}"
    for page in ("scores", "reconstructions"):
        at.switch_page(f"views/{page}.py").run()
        assert any("epoch 2" in e.value and "NaN" in e.value for e in at.error), f"{page}: {messages(at)}"


def test_the_trainability_check_leaves_torch_random_state_alone(tmp_path):
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    config = _tiny(tmp_path, tmp_path / "r", **{"model.depth": 3, "model.norm": "group"})  # 2 px: dry run
    assert untrainable_reason(config, 10) is None
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("inside", ["widget/train", "widget/train/good", "widget/test/crack"])
def test_data_pointing_inside_a_category_names_the_category(tmp_path, inside):
    root = _mvtec(tmp_path)
    with pytest.raises(DatasetLayoutError, match=f"inside the dataset category .*--data {root / 'widget'}"):
        discover_samples(root / inside)


def test_an_image_with_nan_pixels_is_skipped_by_name(tmp_path):
    path = tmp_path / "nan.tif"
    Image.fromarray(np.full((SIZE, SIZE), np.nan, np.float32), mode="F").save(path)
    with pytest.warns(UserWarning, match=r"nan\.tif: cannot decode image \(pixel values are NaN"):
        loaded = load_image_set([Sample(path, "a", NORMAL, "good", "train")], SIZE)
    assert len(loaded) == 0 and loaded.skipped[0][0] == path


@pytest.mark.parametrize("verb", ["diagnose", "export", "score"])
def test_other_verbs_work_on_a_run_without_validation_normals(small_run, capsys, tmp_path, verb):
    run, root = small_run
    extra = {"diagnose": ["--epoch", "last"], "export": ["--out", tmp_path / "x", "--test", root],
             "score": ["--data", root]}[verb]
    code, out, err = _cli(capsys, verb, "--run", run.path, *extra)
    assert code == 0, err
    assert "Traceback" not in err and "nan" not in out.lower().replace("nan/inf", "")


def test_the_dashboard_refuses_to_start_a_job_on_a_locked_run(tmp_path):
    from core.training.jobs import start_training
    from core.training.locking import is_locked, run_lock

    config = _tiny(_mvtec(tmp_path), tmp_path / "run")
    with run_lock(tmp_path / "run"):
        assert is_locked(tmp_path / "run")
        with pytest.raises(RunError, match="another process is training this run"):
            start_training(config)
    assert not is_locked(tmp_path / "run") and not (tmp_path / "run" / "status.json").exists()
