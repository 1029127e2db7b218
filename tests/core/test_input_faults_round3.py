"""Input faults, round 3: data as current public datasets and spreadsheets hand it over.

One group per KIND of fault (EXIF orientation, huge images, data leaving the evaluation,
spreadsheet CSVs, checkpoints of another version, read-only runs, inverted masks, the VisA and
MVTec AD 2 layouts). Each asserts the right numbers, or one sentence naming the file and what to
do. Everything is tiny (16-32 px, a few images, at most one 1-epoch training per module).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data import images as images_module
from core.data.images import BadImageError, MaskWarning, load_image_set, read_image, read_mask
from core.data.samples import ANOMALOUS, NORMAL, Sample
from core.metrics import aupro, pixel_auroc

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
