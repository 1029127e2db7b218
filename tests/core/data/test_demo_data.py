"""The built-in demo dataset: layout, determinism, exact masks, and categories worth telling apart."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from core.data import demo
from core.data.demo import DemoSpec, generate_demo_dataset

SPEC = DemoSpec(size=48, seed=3, n_train=3, n_test_good=2, n_test_per_defect=2)


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _read_mask(path: Path) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert mask is not None, path
    return mask


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    return out, generate_demo_dataset(out, SPEC)


def test_at_least_six_categories_each_with_two_defects():
    assert len(demo.DEMO_CATEGORIES) >= 6
    assert {"carpet", "grid", "wood", "bottle", "screw", "pill"} <= set(demo.DEMO_CATEGORIES)
    for category in demo.DEMO_CATEGORIES:
        assert len(demo.defect_names(category)) >= 2
        assert "good" not in demo.defect_names(category)


def test_layout_and_counts(generated):
    out, summary = generated
    assert list(summary) == list(SPEC.categories)
    for category, counts in summary.items():
        defects = demo.defect_names(category)
        assert counts == {
            "train": SPEC.n_train,
            "test_good": SPEC.n_test_good,
            "defects": {d: SPEC.n_test_per_defect for d in defects},
        }
        root = out / category
        assert sorted(p.name for p in (root / "train" / "good").iterdir()) == [
            f"{i:03d}.png" for i in range(SPEC.n_train)
        ]
        assert sorted(p.name for p in (root / "test").iterdir()) == sorted(["good", *defects])
        assert len(list((root / "test" / "good").glob("*.png"))) == SPEC.n_test_good
        assert sorted(p.name for p in (root / "ground_truth").iterdir()) == sorted(defects)
        for defect in defects:
            for i in range(SPEC.n_test_per_defect):
                image = _read_rgb(root / "test" / defect / f"{i:03d}.png")
                mask = _read_mask(root / "ground_truth" / defect / f"{i:03d}_mask.png")
                assert image.shape == (SPEC.size, SPEC.size, 3) and image.dtype == np.uint8
                assert mask.shape == (SPEC.size, SPEC.size) and mask.dtype == np.uint8
                assert set(np.unique(mask)) <= {0, 255}
    readme = (out / "README.txt").read_text(encoding="utf-8")
    assert "synthetic" in readme and f"seed={SPEC.seed}" in readme and f"size={SPEC.size}" in readme


def test_same_seed_same_bytes_and_images_independent_of_order(generated, tmp_path):
    out, _ = generated
    again = tmp_path / "again"
    generate_demo_dataset(again, SPEC)
    assert _files(again) == _files(out)

    # One category alone, with other counts, still draws the same images for the same names.
    alone = tmp_path / "alone"
    generate_demo_dataset(alone, DemoSpec(size=48, seed=3, n_train=1, categories=("pill",)))
    for name in ["train/good/000.png", "test/good/001.png", "ground_truth/crack/001_mask.png"]:
        assert (alone / "pill" / name).read_bytes() == (out / "pill" / name).read_bytes()


def test_other_seed_other_images(generated, tmp_path):
    out, _ = generated
    other = tmp_path / "other"
    generate_demo_dataset(
        other, DemoSpec(size=48, seed=4, n_train=1, n_test_good=0, n_test_per_defect=0)
    )
    for category in SPEC.categories:
        name = f"{category}/train/good/000.png"
        assert not np.array_equal(_read_rgb(other / name), _read_rgb(out / name))


def test_masks_on_disk_cover_exactly_the_changed_pixels(generated):
    out, _ = generated
    for category in SPEC.categories:
        for defect in demo.defect_names(category):
            for i in range(SPEC.n_test_per_defect):
                clean_rng, _ = demo.sample_rngs(SPEC.seed, category, f"test/{defect}", i)
                clean = demo.render_clean(category, clean_rng, SPEC.size)
                image = _read_rgb(out / category / "test" / defect / f"{i:03d}.png")
                mask = _read_mask(out / category / "ground_truth" / defect / f"{i:03d}_mask.png")
                changed = (image != clean).any(axis=2)
                assert changed.any(), (category, defect, i)
                np.testing.assert_array_equal(mask > 0, changed, err_msg=f"{category}/{defect}/{i}")


@pytest.mark.parametrize("size", [32, 64, 128])
def test_every_defect_is_exactly_masked_and_sized_like_a_defect(size):
    for category in demo.DEMO_CATEGORIES:
        for defect in demo.defect_names(category):
            for i in range(4):
                clean, image, mask = demo.demo_sample(category, f"test/{defect}", i, size, 11)
                assert mask is not None and mask.dtype == np.uint8
                np.testing.assert_array_equal(mask > 0, (image != clean).any(axis=2))
                area = (mask > 0).mean()
                label = f"{category}/{defect}/{i}@{size}: {area:.4f}"
                assert demo.MIN_DEFECT_AREA <= area <= demo.MAX_DEFECT_AREA, label
                assert 0.005 <= area <= 0.08, label


def test_defects_are_visible_not_just_a_nudge():
    """A mask over pixels that moved by one grey level would be exact but useless."""
    for category in demo.DEMO_CATEGORIES:
        for defect in demo.defect_names(category):
            clean, image, mask = demo.demo_sample(category, f"test/{defect}", 0, 64, 5)
            diff = np.abs(image.astype(int) - clean.astype(int)).max(axis=2)[mask > 0]
            assert np.median(diff) >= 20, (category, defect, np.median(diff))


def test_good_images_vary_but_stay_rgb():
    for category in demo.DEMO_CATEGORIES:
        images = [demo.demo_sample(category, "train/good", i, 48, 0)[1] for i in range(3)]
        for image in images:
            assert image.shape == (48, 48, 3) and image.dtype == np.uint8
            assert image.std() > 3
        assert not np.array_equal(images[0], images[1])
        assert not np.array_equal(images[1], images[2])


def _thumbnails(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    feats, labels = [], []
    for label, category in enumerate(demo.DEMO_CATEGORIES):
        for i in range(n):
            rng, _ = demo.sample_rngs(seed, category, "train/good", i)
            image = demo.render_clean(category, rng, 64)
            thumb = cv2.resize(image, (16, 16), interpolation=cv2.INTER_AREA)
            feats.append(thumb.astype(np.float32).ravel() / 255.0)
            labels.append(label)
    return np.stack(feats), np.array(labels)


def test_categories_are_told_apart_by_a_nearest_centroid_on_thumbnails():
    train_x, train_y = _thumbnails(seed=0, n=8)
    test_x, test_y = _thumbnails(seed=1, n=8)
    centroids = np.stack([train_x[train_y == k].mean(0) for k in range(len(demo.DEMO_CATEGORIES))])
    dist = ((test_x[:, None, :] - centroids[None]) ** 2).sum(-1)
    accuracy = (dist.argmin(1) == test_y).mean()
    assert accuracy >= 0.9, accuracy


def test_rerun_replaces_its_own_output_but_refuses_foreign_folders(tmp_path):
    spec = DemoSpec(size=32, n_train=3, n_test_good=1, n_test_per_defect=1, categories=("wood",))
    generate_demo_dataset(tmp_path / "ours", spec)
    smaller = DemoSpec(size=32, n_train=1, n_test_good=1, n_test_per_defect=1, categories=("wood",))
    generate_demo_dataset(tmp_path / "ours", smaller)
    assert len(list((tmp_path / "ours" / "wood" / "train" / "good").iterdir())) == 1

    foreign = tmp_path / "foreign"
    (foreign / "wood").mkdir(parents=True)
    (foreign / "wood" / "keep.txt").write_text("not ours", encoding="utf-8")
    with pytest.raises(FileExistsError):
        generate_demo_dataset(foreign, spec)
    assert (foreign / "wood" / "keep.txt").exists()


def test_bad_specs_and_names_are_rejected():
    with pytest.raises(ValueError):
        DemoSpec(size=8)
    with pytest.raises(ValueError):
        DemoSpec(categories=("carpet", "nope"))
    with pytest.raises(ValueError):
        DemoSpec(n_train=-1)
    scene = demo.render_scene("pill", np.random.default_rng(0), 32)
    with pytest.raises(KeyError):
        demo.apply_defect("pill", "hole", scene, np.random.default_rng(0))
    with pytest.raises(KeyError):
        demo.render_clean("tile", np.random.default_rng(0), 32)
