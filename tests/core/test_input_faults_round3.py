"""Input faults, round 3: data as current public datasets and spreadsheets hand it over.

One group per KIND of fault (EXIF orientation, huge images, data leaving the evaluation,
spreadsheet CSVs, checkpoints of another version, read-only runs, inverted masks, the VisA and
MVTec AD 2 layouts). Each asserts the right numbers, or one sentence naming the file and what to
do. Everything is tiny (16-32 px, a few images, at most one 1-epoch training per module).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import ConfigVersionWarning, TrainConfig
from core.data import images as images_module
from core.data.dataset import split_validation
from core.data.images import (
    BadImageError,
    LeftOutWarning,
    MaskWarning,
    load_image_set,
    read_image,
    read_mask,
)
from core.data.layouts import DatasetLayoutError, discover_samples
from core.data.samples import ANOMALOUS, NORMAL, UNKNOWN, Sample
from core.evaluation.metrics import aupro, pixel_auroc
from core.runs.cache import CacheWarning
from core.runs.checkpoint import load_checkpoint, read_payload
from core.runs.folder import ForeignCheckpointWarning, Run, save_checkpoint
from tests.core.test_input_faults import REPO, _cli, _mvtec, _tiny, _train

SIZE = 16


def _save(path: Path, array: np.ndarray, **params) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **params)
    return path


def _texture(seed: int, shape=(SIZE, SIZE)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(0.4 + 0.03 * rng.standard_normal(shape), 0, 1)


def _rgb8(gray: np.ndarray) -> np.ndarray:
    return np.repeat((gray * 255).round().astype(np.uint8)[..., None], 3, axis=2)


def _box(shape, rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[rows, cols] = 1
    return mask


# --------------------------------------------------------------------------- 1. EXIF orientation

def _exif_pair(folder: Path, stem: str, seed: int) -> tuple[Path, Path, np.ndarray]:
    """A portrait view (H 24, W 16) with a bright defect, stored as a landscape JPEG whose EXIF
    tag (6: rotate 90 deg clockwise) turns it upright; its mask is drawn on the upright view."""
    shape = (24, 16)
    mask = _box(shape, slice(3, 9), slice(2, 7))  # top-left of the upright view
    view = _texture(seed, shape)
    view[mask > 0] += 0.4
    stored = np.rot90(_rgb8(np.clip(view, 0, 1)), 1)  # what the sensor wrote: 16 x 24
    exif = Image.Exif()
    exif[0x0112] = 6
    image = _save(folder / "test" / "crack" / f"{stem}.jpg", np.ascontiguousarray(stored),
                  exif=exif, quality=95)
    mask_path = _save(folder / "ground_truth" / "crack" / f"{stem}_mask.png", mask * 255)
    return image, mask_path, mask


def test_exif_rotated_jpegs_and_their_masks_line_up_as_a_viewer_shows_them(tmp_path):
    samples, truth = [], []
    for i in range(3):
        image, mask_path, mask = _exif_pair(tmp_path, f"{i:03d}", i)
        samples.append(Sample(image, "c", ANOMALOUS, "crack", "test", mask_path))
        truth.append(mask)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the masks fit: no "48x64 but its image is 64x48"
        loaded = load_image_set(samples, 24)
    assert loaded.has_mask.all()
    brightness = loaded.images.mean(axis=-1).astype(np.float32)  # the defect is the bright box
    assert pixel_auroc(loaded.masks, brightness) > 0.99
    assert aupro(loaded.masks, brightness) > 0.95


def test_a_mask_drawn_on_the_sensor_view_is_named_with_the_exif_rotation(tmp_path):
    image, mask_path, mask = _exif_pair(tmp_path, "000", 0)
    _save(mask_path, np.ascontiguousarray(np.rot90(mask, 1)) * 255)  # 24 wide, 16 high
    with pytest.raises(BadImageError, match=r"000_mask\.png: .*rotated by an EXIF tag"):
        read_mask(mask_path, (24, 16), 16)


# --------------------------------------------------------------------------- 2. huge images

def test_an_image_above_pils_bomb_limit_is_decoded_at_the_size_needed(tmp_path, monkeypatch):
    """PIL refuses files above its decompression-bomb limit (179 Mpx) with an exception; here
    its limit is lowered so a small file stands in for a 14000x13000 scan."""
    path = _save(tmp_path / "scan.png", _rgb8(_texture(0, (260, 300))))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    out = read_image(path, SIZE)
    assert out.shape == (SIZE, SIZE, 3) and abs(float(out.mean()) - 0.4 * 255) < 3
    assert Image.MAX_IMAGE_PIXELS == 1000  # PIL's own limit is left as it was


def test_an_image_too_large_to_decode_is_skipped_by_name_with_its_size(tmp_path, monkeypatch):
    good = _save(tmp_path / "ok.png", _rgb8(_texture(0)))
    huge = _save(tmp_path / "scan.png", _rgb8(_texture(1, (130, 140))))
    monkeypatch.setattr(images_module, "MAX_DECODE_PIXELS", 10_000)
    samples = [Sample(good, "c", NORMAL, "good", "test"), Sample(huge, "c", NORMAL, "good", "test")]
    with pytest.warns(images_module.BadImageWarning,
                      match=r"scan\.png: image is 140x130 \(0 Mpx\), more than .*downscale it"):
        loaded = load_image_set(samples, SIZE)
    assert [s.path.name for s in loaded.samples] == ["ok.png"]


# --------------------------------------------------------------------------- 7. inverted masks

def test_an_inverted_mask_is_named_and_kept_out_of_pixel_metrics(tmp_path):
    image = _save(tmp_path / "000.png", _rgb8(_texture(0)))
    inverted = 1 - _box((SIZE, SIZE), slice(4, 10), slice(5, 11))  # defect black on white
    mask = _save(tmp_path / "000_mask.png", inverted * 255)
    with pytest.warns(MaskWarning, match=r"000_mask\.png: .* marks 86% .*inverted.*invert the mask"):
        loaded = load_image_set([Sample(image, "c", ANOMALOUS, "crack", "test", mask)], SIZE)
    assert len(loaded) == 1 and not loaded.has_mask.any()


def test_a_large_but_minority_defect_mask_is_used(tmp_path):
    image = _save(tmp_path / "000.png", _rgb8(_texture(0)))
    big = _box((SIZE, SIZE), slice(0, 7), slice(0, SIZE))  # 44% of the image
    mask = _save(tmp_path / "000_mask.png", big * 255)
    loaded = load_image_set([Sample(image, "c", ANOMALOUS, "crack", "test", mask)], SIZE)
    assert loaded.has_mask.all() and np.array_equal(loaded.masks[0], big)


# --------------------------------------------------------------------------- 3 and 4. CSVs, data left out

def _flat(root: Path, train: dict[str, str], test: dict[str, int]) -> Path:
    """root/train/<name>.png (name -> category) and root/test/<name>.png (name -> label)."""
    for i, name in enumerate(train):
        _save(root / "train" / f"{name}.png", _rgb8(_texture(i)))
    for i, name in enumerate(test):
        _save(root / "test" / f"{name}.png", _rgb8(_texture(50 + i)))
    return root


TRAIN = {"a1": "screw", "a2": "screw", "b1": "nut", "café": "nut"}
TEST = {"t1": 0, "t2": 1, "t3": 1}


def _write_csv(path: Path, rows: list[list[str]], encoding: str, newline: str, sep: str) -> None:
    path.write_bytes("".join(sep.join(r) + newline for r in rows).encode(encoding))


# (encoding, line ending, separator) as spreadsheets save them: Excel "CSV UTF-8", Excel
# "Unicode text" (UTF-16 with tabs), a German Excel (cp1252 with ';'), old Mac line endings.
DIALECTS = [("utf-8-sig", "\r\n", ","), ("utf-16", "\r\n", "\t"), ("cp1252", "\r\n", ";"),
            ("utf-8", "\r", ",")]


@pytest.mark.parametrize(("encoding", "newline", "sep"), DIALECTS)
def test_category_and_label_csvs_are_read_whatever_program_saved_them(tmp_path, encoding,
                                                                     newline, sep):
    root = _flat(tmp_path, TRAIN, TEST)
    _write_csv(root / "train_categories.csv", [["File", "Category"]]
               + [[f"{n}.png", c] for n, c in TRAIN.items()], encoding, newline, sep)
    _write_csv(root / "test_labels.csv", [["image_id", "label"]]
               + [[n, str(v)] for n, v in TEST.items()], encoding, newline, sep)
    samples = discover_samples(root)
    assert {s.path.stem: s.category for s in samples if s.split == "train"} == TRAIN
    assert {s.path.stem: s.label for s in samples if s.split == "test"} == TEST


def test_a_csv_whose_columns_cannot_be_mapped_is_named(tmp_path):
    root = _flat(tmp_path, TRAIN, TEST)
    (root / "labels.csv").write_text("picture,verdict\nt1.png,0\n")
    with pytest.warns(LeftOutWarning, match=r"labels\.csv: not used: its columns \(picture, "
                      r"verdict\) have no a file column .*rename the columns"):
        samples = discover_samples(root)
    assert all(s.label == UNKNOWN for s in samples if s.split == "test")


def test_label_rows_without_images_and_images_without_rows_are_named(tmp_path):
    root = _flat(tmp_path, TRAIN, TEST)
    (root / "test_labels.csv").write_text("file,label\nt1.png,0\nt2.png,1\ngone.png,1\n")
    with pytest.warns(LeftOutWarning) as caught:
        samples = discover_samples(root)
    messages = [str(w.message) for w in caught]
    assert any(re.search(r"test_labels\.csv: 1 row\(s\) name files that are not in .* row 4: "
                         r"'gone\.png'", m) for m in messages), messages
    assert any(re.search(r"test: 1 of 3 test images have no row in a label CSV \(e\.g\. "
                         r"t3\.png\)", m) for m in messages), messages
    assert sorted(s.label for s in samples if s.split == "test") == [UNKNOWN, NORMAL, ANOMALOUS]


def test_a_category_with_an_empty_training_folder_is_named_with_its_test_images(tmp_path):
    for category, n_train in (("screw", 3), ("nut", 0)):
        (tmp_path / category / "train" / "good").mkdir(parents=True)
        for i in range(n_train):
            _save(tmp_path / category / "train" / "good" / f"{i}.png", _rgb8(_texture(i)))
        for i in range(2):
            _save(tmp_path / category / "test" / "good" / f"{i}.png", _rgb8(_texture(9 + i)))
    with pytest.warns(LeftOutWarning, match=r"nut/train/good: holds no images, so category 'nut' "
                      r"is left out of training and its 2 test images out of the evaluation"):
        discover_samples(tmp_path)


# --------------------------------------------------------------------------- runs: one tiny training


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = _mvtec(tmp_path_factory.mktemp("data"))
    return _train(_tiny(root, tmp_path_factory.mktemp("runs") / "tiny")), root


def _copy_run(run: Run, target: Path) -> Run:
    shutil.copytree(run.path, target, ignore=shutil.ignore_patterns("cache", "*.lock"))
    return Run(target)


# --------------------------------------------------------------------------- 5. another version

def test_a_checkpoint_of_a_newer_version_is_named_and_scored(tiny_run, tmp_path, capsys):
    run, root = tiny_run
    newer = _copy_run(run, tmp_path / "newer")
    payload = load_checkpoint(newer.checkpoint_path(1))
    payload["config"]["ema_decay"] = 0.999  # a setting this version does not know
    payload["version"] = "9.1.0"
    save_checkpoint(newer.checkpoint_path(1), payload)
    with pytest.warns(ConfigVersionWarning, match=r"epoch_001\.pt: written by ReconScope 9\.1\.0; "
                      r"this is ReconScope .* does not know its config field\(s\) ema_decay; "
                      r"they are ignored here"):
        code, out, err = _cli(capsys, "evaluate", "--run", newer.path, "--epoch", "1",
                              "--method", "pixel", "--data", root, "--fast")
    assert code == 0 and "Traceback" not in err and "pixel" in out


def test_a_run_config_of_a_newer_version_refuses_resuming_by_name(tiny_run, tmp_path):
    run, _ = tiny_run
    newer = _copy_run(run, tmp_path / "newer")
    raw = json.loads((newer.path / "config.json").read_text())
    raw["model"]["attention"] = True
    (newer.path / "config.json").write_text(json.dumps(raw))
    with pytest.warns(ConfigVersionWarning, match=r"config\.json: .* model\.attention"):
        assert newer.config().model.depth == 2  # analysis reads what it knows
    with pytest.raises(ValueError, match=r"config\.json: written by another \(probably newer\) "
                       r"ReconScope; .*model\.attention; upgrade ReconScope"):
        TrainConfig.load(newer.path / "config.json", strict=True)


# --------------------------------------------------------------------------- 6. read-only runs

@pytest.fixture
def read_only_cache(monkeypatch):
    """Every write below a run's cache/ fails as on a read-only share (root ignores chmod)."""
    import core.runs.cache
    import core.runs.folder

    real = core.runs.folder.atomic_write_bytes

    def refuse(path: Path, data: bytes) -> None:
        if "cache" in Path(path).parts:
            raise PermissionError(13, "Permission denied", str(path))
        real(path, data)

    monkeypatch.setattr(core.runs.cache, "atomic_write_bytes", refuse)


@pytest.mark.parametrize("verb", ["evaluate", "diagnose", "export"])
def test_commands_that_only_read_work_on_a_run_they_cannot_write(tiny_run, tmp_path, capsys,
                                                                  read_only_cache, verb):
    run, root = tiny_run
    shared = _copy_run(run, tmp_path / "shared")
    args = {"evaluate": ["--method", "pixel", "--data", root, "--fast"],
            "diagnose": ["--data", root, "--json", tmp_path / "d.json"],
            "export": ["--out", tmp_path / "export", "--test", root / "widget" / "test" / "crack"]}
    with pytest.warns(CacheWarning, match=r"shared/cache: results cannot be cached there "
                      r"\(Permission denied\); they are computed anew") as caught:
        code, out, err = _cli(capsys, verb, "--run", shared.path, "--epoch", "1", *args[verb])
    assert code == 0 and "Traceback" not in err, err
    assert sum(isinstance(w.message, CacheWarning) for w in caught) == 1
    assert not (shared.path / "cache").exists()


# --------------------------------------------------------------------------- 8. VisA and MVTec AD 2

def _visa(root: Path, categories=("candle", "pcb1")) -> Path:
    """VisA as distributed: <cat>/Data/Images/{Normal,Anomaly}/*.JPG, <cat>/Data/Masks/Anomaly/
    *.png and split_csv/1cls.csv (object,split,label,image,mask) with paths below root."""
    rows = ["object,split,label,image,mask"]
    for c, category in enumerate(categories):
        data = root / category / "Data"
        for i in range(6):
            name = f"{i:03d}.JPG"
            _save(data / "Images" / "Normal" / name, _rgb8(_texture(10 * c + i)), quality=95)
            split = "train" if i < 4 else "test"
            rows.append(f"{category},{split},normal,{category}/Data/Images/Normal/{name},")
        for i in range(2):
            view = _texture(50 + i)
            view[4:10, 5:11] += 0.4
            _save(data / "Images" / "Anomaly" / f"{i:03d}.JPG", _rgb8(np.clip(view, 0, 1)),
                  quality=95)
            _save(data / "Masks" / "Anomaly" / f"{i:03d}.png",
                  _box((SIZE, SIZE), slice(4, 10), slice(5, 11)) * 255)
            rows.append(f"{category},test,anomaly,{category}/Data/Images/Anomaly/{i:03d}.JPG,"
                        f"{category}/Data/Masks/Anomaly/{i:03d}.png")
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")
    return root


def test_visa_as_distributed_is_read_through_its_split_csv(tmp_path):
    samples = discover_samples(_visa(tmp_path))
    for category in ("candle", "pcb1"):
        own = [s for s in samples if s.category == category]
        assert sum(s.split == "train" for s in own) == 4
        test = [s for s in own if s.split == "test"]
        assert sorted(s.label for s in test) == [NORMAL, NORMAL, ANOMALOUS, ANOMALOUS]
        assert all(s.mask_path is not None and s.mask_path.is_file()
                   for s in test if s.label == ANOMALOUS)
    loaded = load_image_set([s for s in samples if s.label == ANOMALOUS], SIZE)
    assert loaded.has_mask.all()
    assert pixel_auroc(loaded.masks, loaded.images.mean(axis=-1).astype(np.float32)) > 0.99


def test_one_visa_category_and_a_missing_split_file_are_handled(tmp_path):
    root = _visa(tmp_path)
    assert {s.category for s in discover_samples(root / "candle")} == {"candle"}
    (root / "split_csv" / "1cls.csv").unlink()
    with pytest.raises(DatasetLayoutError, match=r"VisA layout .* without its split file .*"
                       r"1cls\.csv"):
        discover_samples(root)


def _mvtec_ad2(root: Path, category: str = "can") -> Path:
    """MVTec AD 2: train/good, validation/good, test_public/{good,bad},
    test_public/ground_truth/bad/<stem>_mask.png, and unlabelled test_private/."""
    folder = root / category
    for split, n in (("train", 5), ("validation", 2)):
        for i in range(n):
            _save(folder / split / "good" / f"{i:03d}_regular.png", _rgb8(_texture(i)))
    for i in range(2):
        _save(folder / "test_public" / "good" / f"{i:03d}_regular.png", _rgb8(_texture(30 + i)))
        view = _texture(40 + i)
        view[4:10, 5:11] += 0.4
        _save(folder / "test_public" / "bad" / f"{i:03d}_regular.png", _rgb8(np.clip(view, 0, 1)))
        _save(folder / "test_public" / "ground_truth" / "bad" / f"{i:03d}_regular_mask.png",
              _box((SIZE, SIZE), slice(4, 10), slice(5, 11)) * 255)
    _save(folder / "test_private" / "000_regular.png", _rgb8(_texture(60)))
    return root


def test_mvtec_ad_2_reads_test_public_its_masks_and_validation_normals(tmp_path):
    with pytest.warns(LeftOutWarning, match=r"1 MVTec AD 2 test_private\* folder\(s\) are not "
                      r"read \(e\.g\. .*can/test_private\): their labels are not published") as caught:
        samples = discover_samples(_mvtec_ad2(tmp_path))
    assert sum("test_private" in str(w.message) for w in caught) == 1
    by_split = {split: [s for s in samples if s.split == split] for split in ("train", "val", "test")}
    assert (len(by_split["train"]), len(by_split["val"]), len(by_split["test"])) == (5, 2, 4)
    assert {s.defect for s in by_split["test"]} == {"good", "bad"}  # ground_truth is no defect
    assert all(s.mask_path is not None for s in by_split["test"] if s.label == ANOMALOUS)
    train, val = split_validation([s for s in samples if s.split != "test"], 0.1, 0)
    assert {s.path.parent.parent.name for s in val} == {"validation"} and len(train) == 5


# --------------------------------------------------------------------------- also

def test_diagnose_on_a_nan_epoch_does_not_call_a_labelled_test_set_unlabelled(tiny_run, capsys,
                                                                            tmp_path):
    run = _copy_run(tiny_run[0], tmp_path / "nan")
    payload = read_payload(run, 1)
    payload["model"] = {k: v * float("nan") if v.is_floating_point() else v
                        for k, v in payload["model"].items()}
    payload["epoch"] = 2
    save_checkpoint(run.checkpoint_path(2), payload)
    code, out, err = _cli(capsys, "diagnose", "--run", run.path, "--epoch", "all", "--no-cluster")
    assert code == 0 and "Traceback" not in err
    assert "has no labels" not in out and "real AUROC 1.000" in out


def test_no_agreement_because_no_epoch_scored_is_not_called_missing_labels():
    from core.cli.diagnose import format_ranking

    ranking = {"methods": ["pixel"], "agreements": [], "real": {"pixel": {}}, "values": {},
               "notes": ["epoch 2, pixel: not scored (scores are NaN or inf)"]}
    assert "no epoch has a real AUROC (see the notes)" in format_ranking(ranking)[0]
    unlabelled = {**ranking, "notes": []}
    assert "the test set has no labels here" in format_ranking(unlabelled)[0]


# --------------------------------------------------------------------------- 3. left out, round 2

def _with_category(root: Path, target: Path, category: str, n_train: int) -> Path:
    """A copy of the dataset `root` plus one more MVTec category with n_train training images
    (its train/good folder is empty for 0) and 2 normal + 2 defect test images."""
    shutil.copytree(root, target)
    folder = target / category
    (folder / "train" / "good").mkdir(parents=True)
    for i in range(n_train):
        _save(folder / "train" / "good" / f"{i:03d}.png", _rgb8(_texture(70 + i)))
    for i in range(2):
        _save(folder / "test" / "good" / f"{i:03d}.png", _rgb8(_texture(80 + i)))
        _save(folder / "test" / "crack" / f"{i:03d}.png", _rgb8(_texture(90 + i)))
    return target


def _messages(caught, category=Warning) -> list[str]:
    return [str(w.message) for w in caught if isinstance(w.message, category)]


@pytest.mark.parametrize("verb", ["evaluate", "score", "export"])
def test_test_images_of_a_category_the_run_did_not_train_are_named_once(tiny_run, tmp_path,
                                                                        capsys, verb):
    run, root = tiny_run
    assert run.config().categories == ["widget"]
    data = _with_category(root, tmp_path / "data", "nut", n_train=3)
    args = {"evaluate": ["--method", "pixel", "--data", data, "--epoch", "all", "--fast"],
            "score": ["--method", "pixel", "--data", data],
            "export": ["--method", "pixel", "--out", tmp_path / "export", "--test", data]}
    with pytest.warns(LeftOutWarning) as caught:
        code, out, err = _cli(capsys, verb, "--run", run.path, *args[verb])
    assert code == 0 and "Traceback" not in err, err
    left_out = [m for m in _messages(caught, LeftOutWarning) if "left out of the scores" in m]
    assert len(left_out) == 1, left_out
    assert re.search(r"data: 4 test images of category nut are left out of the scores: this run "
                     r"was trained on widget only -- .*pass --route", left_out[0]), left_out[0]
    if verb == "evaluate":
        assert "test set: 6 test images in 1 categories; 4 test images of category nut left out" in out
    if verb == "score":
        assert out.count("\nwidget/") == 6 and "nut/" not in out
    if verb == "export":
        card = json.loads((tmp_path / "export" / "card.json").read_text())
        assert card["submission"]["rows"] == 6
        assert card["submission"]["left_out"].startswith("4 test images of category nut left out")


def test_route_scores_the_untrained_category_and_leaves_nothing_out(tiny_run, tmp_path, capsys):
    run, root = tiny_run
    data = _with_category(root, tmp_path / "data", "nut", n_train=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left out, so nothing is named
        code, out, err = _cli(capsys, "score", "--run", run.path, "--method", "pixel",
                              "--data", data, "--route")
    assert code == 0 and out.count("\nwidget/") == 10  # nut's 4 images scored as widget


def test_a_category_without_training_images_is_named_once_not_twice(tiny_run, tmp_path, capsys):
    run, root = tiny_run
    data = _with_category(root, tmp_path / "data", "nut", n_train=0)
    with pytest.warns(LeftOutWarning) as caught:
        code, out, err = _cli(capsys, "evaluate", "--run", run.path, "--method", "pixel",
                              "--data", data, "--fast")
    assert code == 0 and "Traceback" not in err
    (message,) = _messages(caught, LeftOutWarning)
    assert re.search(r"nut/train/good: holds no images, so category 'nut' is left out of "
                     r"training and its 4 test images out of the evaluation", message)
    assert "; 4 test images of category nut left out" in out


def test_csv_categories_without_training_images_are_named(tmp_path):
    root = _flat(tmp_path, TRAIN, TEST)
    (root / "train_categories.csv").write_text(
        "file,category\n" + "".join(f"{n}.png,{c}\n" for n, c in TRAIN.items()))
    (root / "test_labels.csv").write_text("file,category,label\nt1.png,screw,0\nt2.png,bolt,1\n"
                                          "t3.png,bolt,1\n")
    with pytest.warns(LeftOutWarning, match=r"category 'bolt' has 2 test images but no training "
                      r"image, so it is left out of training and its test images out of the "
                      r"evaluation -- add its normal training images"):
        samples = discover_samples(root)
    assert sorted(s.category for s in samples if s.split == "test") == ["bolt", "bolt", "screw"]


def test_visa_masks_missing_on_disk_and_categories_without_train_rows_are_named(tmp_path):
    root = _visa(tmp_path)
    (root / "candle" / "Data" / "Masks" / "Anomaly" / "001.png").unlink()
    csv_path = root / "split_csv" / "1cls.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join(line for line in lines
                                  if not line.startswith("pcb1,train")) + "\n")
    with pytest.warns(Warning) as caught:
        samples = discover_samples(root)
    (mask_note,) = _messages(caught, MaskWarning)
    assert re.search(r"1cls\.csv: 1 row\(s\) name masks that do not exist \(e\.g\. row \d+: "
                     r"'candle/Data/Masks/Anomaly/001\.png'\); those images count at image level "
                     r"only -- restore the masks", mask_note), mask_note
    (left,) = _messages(caught, LeftOutWarning)
    assert "category 'pcb1' has 4 test images but no training image" in left
    anomalies = {s.path.name: s.mask_path for s in samples
                 if s.category == "candle" and s.label == ANOMALOUS}
    assert anomalies["000.JPG"] is not None and anomalies["001.JPG"] is None


# --------------------------------------------------------------------------- a checkpoint of another run

def _foreign(payload: dict, run_folder: str = "/elsewhere/other_run") -> dict:
    """The same checkpoint as if another training had written it: its own run folder and its
    own training record."""
    payload = dict(payload)
    payload["config"] = {**payload["config"], "run": run_folder}
    payload["metrics"] = {**payload["metrics"], "train_loss": payload["metrics"]["train_loss"] + 0.1,
                          "seconds": payload["metrics"]["seconds"] + 1.0}
    return payload


@pytest.mark.parametrize("verb", ["evaluate", "diagnose", "export"])
def test_a_checkpoint_copied_in_from_another_run_is_named(tiny_run, tmp_path, capsys, verb):
    run, root = tiny_run
    copy = _copy_run(run, tmp_path / "copy")
    save_checkpoint(copy.checkpoint_path(1), _foreign(load_checkpoint(run.checkpoint_path(1))))
    args = {"evaluate": ["--method", "pixel", "--fast", "--data", root],
            "diagnose": ["--no-cluster", "--data", root],
            "export": ["--out", tmp_path / "export"]}
    with pytest.warns(ForeignCheckpointWarning) as caught:
        code, out, err = _cli(capsys, verb, "--run", copy.path, "--epoch", "1", *args[verb])
    assert code == 0 and "Traceback" not in err, err
    (message,) = _messages(caught, ForeignCheckpointWarning)
    assert re.search(r"copy/epoch_001\.pt: not this run's epoch 1: its training record \(train_loss "
                     r"[\d.]+\) is not the one this run logged for epoch 1 .* written by another "
                     r"training \(/elsewhere/other_run\); .* move the file to its own run folder",
                     message), message
    assert copy.foreign_epochs() == {1: message}


def test_a_checkpoint_dropped_in_as_a_new_epoch_is_named_and_own_epochs_are_not(tiny_run,
                                                                               tmp_path):
    run, _ = tiny_run
    copy = _copy_run(run, tmp_path / "copy")
    assert copy.foreign_epochs() == {}  # a run copied as a whole is its own
    save_checkpoint(copy.checkpoint_path(2), _foreign(load_checkpoint(run.checkpoint_path(1))))
    with pytest.warns(ForeignCheckpointWarning, match=r"epoch_002\.pt: not this run's epoch 2: it "
                      r"holds epoch 1 of its run and it was written by the run /elsewhere/other_run"):
        read_payload(copy, 2)
    assert list(copy.foreign_epochs()) == [2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_payload(copy, 1)  # the run's own epoch: no word


def test_a_run_copied_and_renamed_keeps_its_epochs(tiny_run, tmp_path):
    """Copy a run and resume it under a new name: config.json then names the new folder, the
    old epochs the old one, and their records still match: they are the run's own."""
    run, _ = tiny_run
    copy = _copy_run(run, tmp_path / "renamed")
    raw = json.loads((copy.path / "config.json").read_text())
    raw["run"] = str(copy.path)
    (copy.path / "config.json").write_text(json.dumps(raw))
    assert copy.foreign_epochs() == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_payload(copy, 1)


# --------------------------------------------------------------------------- each warning once

def test_export_shows_each_bad_file_warning_once(tiny_run, tmp_path):
    """A real process (the user's terminal), the default method (test set, normals and
    calibration each read the data): a broken image, an inverted mask, an image without a mask
    and an untrained category are each named on exactly one stderr line."""
    run, root = tiny_run
    data = _with_category(root, tmp_path / "data", "nut", n_train=3)
    crack = data / "widget" / "test" / "crack"
    (crack / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    _save(data / "widget" / "ground_truth" / "crack" / "000_mask.png",
          (1 - _box((SIZE, SIZE), slice(4, 10), slice(5, 11))) * 255)  # inverted
    env = {**os.environ, "PYTHONPATH": str(REPO), "RECONSCOPE_CACHE": str(tmp_path / "decoded")}
    done = subprocess.run(
        [sys.executable, "-m", "core", "export", "--run", str(run.path), "--epoch", "1",
         "--out", str(tmp_path / "export"), "--test", str(data)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert len(lines) == len(set(lines)), done.stderr
    assert sum(line.startswith("warning: skipped ") and "broken.png" in line
               for line in lines) == 1, done.stderr
    assert sum("000_mask.png" in line and "inverted" in line for line in lines) == 1, done.stderr
    assert sum("category nut are left out" in line for line in lines) == 1, done.stderr
