"""Category routing: histograms, both routers on the demo categories, accuracy, bare folders."""

from __future__ import annotations

import csv
import io
import shutil

import numpy as np
import pytest

from core.__main__ import main as cli
from core.runs.checkpoint import open_checkpoint
from core.scoring import score_checkpoint
from core.scoring.data import load_samples, reference_samples, samples_to_score
from core.scoring.routing import (
    colour_histograms,
    route_images,
    routing_accuracy,
    thumbnail_vectors,
)


@pytest.fixture(scope="module")
def demo_sets(tiny_run):
    config = tiny_run.config()
    test = load_samples(samples_to_score(config.data), config.image_size)
    train = load_samples(reference_samples(config.data, "train", config), config.image_size)
    return test, train


def test_colour_histograms_match_numpy():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    hist = colour_histograms(images, bins=8)
    assert hist.shape == (3, 24)
    for i in range(3):
        for c in range(3):
            expected, _ = np.histogram(images[i, ..., c], bins=8, range=(0, 256))
            np.testing.assert_allclose(hist[i, c * 8 : (c + 1) * 8], expected / 64)
    vectors = thumbnail_vectors(images)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("method", ["features", "thumbnail"])
def test_demo_categories_route_correctly(tiny_run, demo_sets, method):
    """carpet, bottle and pill look nothing alike: both routers must get every image right."""
    test, train = demo_sets
    model = open_checkpoint(tiny_run, 2).model() if method == "features" else None
    routing = route_images(test.images, train.images, train.categories, model, method=method)
    assert routing.method == method
    report = routing_accuracy(test.categories, routing.categories)
    assert report["accuracy"] == 1.0, report["confusion"]
    assert routing.distances.shape == (len(test),) and np.all(routing.distances >= 0)


def test_routing_accuracy_hand_made():
    report = routing_accuracy(["a", "a", "b", "b", "b"], ["a", "b", "b", "b", "a"])
    assert report["accuracy"] == pytest.approx(3 / 5)
    assert report["per_category"] == {"a": 0.5, "b": pytest.approx(2 / 3)}
    assert report["confusion"] == {"a": {"a": 1, "b": 1}, "b": {"a": 1, "b": 2}}
    assert report["n"] == 5


def test_route_images_bad_input(demo_sets):
    test, train = demo_sets
    with pytest.raises(ValueError, match="needs normal training images"):
        route_images(test.images, train.images[:0], [])
    with pytest.raises(ValueError, match="training images but"):
        route_images(test.images, train.images, train.categories[:-1])
    with pytest.raises(ValueError, match="needs a model"):
        route_images(test.images, train.images, train.categories, None, method="features")


@pytest.fixture(scope="module")
def unlabeled_folder(demo_root, tmp_path_factory):
    """A bare folder of test images (a Kaggle test folder) and each file's true category."""
    folder = tmp_path_factory.mktemp("bare") / "unlabeled"
    folder.mkdir()
    truth = {}
    for category in ("carpet", "bottle", "pill"):
        for path in sorted((demo_root / category / "test").glob("*/*.png"))[:3]:
            name = f"{category}_{path.parent.name}_{path.name}"
            shutil.copy(path, folder / name)
            truth[name] = category
    return folder, truth


def test_bare_folder_is_routed_for_knn(tiny_run, unlabeled_folder):
    """Unlabeled images are routed once, by the test set (thumbnails: the same for every epoch),
    and compared with the bank of the category they were routed to."""
    folder, truth = unlabeled_folder
    for method in ("knn", "rawknn"):
        result = score_checkpoint(tiny_run, 2, folder, method)
        assert np.all(np.asarray(result.labels) == -1)
        assert np.asarray(result.routed).all()
        assert result.info["routing"] == "thumbnail"
        expected = [truth[p.split("/")[-1]] for p in result.paths]
        assert result.categories == expected
        assert result.bank_categories == expected
        confidence = np.asarray(result.routing_confidence)
        assert ((confidence >= 0) & (confidence <= 1)).all()


def test_cli_score_shows_the_routed_category(tiny_run, unlabeled_folder, capsys):
    folder, truth = unlabeled_folder
    assert (
        cli(
            [
                "score",
                "--run",
                str(tiny_run.path),
                "--epoch",
                "2",
                "--method",
                "rawknn",
                "--data",
                str(folder),
            ]
        )
        == 0
    )
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["name", "category", "label", "score", "compared_with"]
    assert len(rows) == 1 + len(truth)
    assert all(row[4] == truth[row[0].split("/")[-1] + ".png"] for row in rows[1:])
