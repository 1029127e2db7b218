import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.evaluation.auroc_table import MEAN, SeedScores, auroc_table, format_auroc_table


def _seed(rng, shift):
    labels = np.array([0] * 30 + [1] * 20 + [0] * 25 + [1] * 25)
    cats = np.array(["a"] * 50 + ["b"] * 50)
    good = labels + rng.normal(0, 0.8, len(labels))  # separates both sets
    only_a = np.where(cats == "a", labels * 3.0, 0.0) + rng.normal(0, 0.8, len(labels))
    return SeedScores(labels, cats, {"good": good + shift, "only_a": only_a, "noise": rng.normal(
        size=len(labels))})


def test_estimates_are_the_mean_over_seeds_of_each_sets_auroc_with_intervals_around_them():
    rng = np.random.default_rng(1)
    seeds = [_seed(rng, 0.0), _seed(rng, 1.0)]
    rows = {r.method: r for r in auroc_table(seeds, rounds=300)}
    for name in ("a", "b"):
        sel = seeds[0].categories == name
        expected = np.mean([roc_auc_score(s.labels[sel], s.scores["good"][sel]) for s in seeds])
        got = rows["good"].aurocs[name]
        assert got.estimate == pytest.approx(expected)
        assert got.low <= got.estimate <= got.high and got.high - got.low > 0.01
    mean = rows["good"].aurocs[MEAN]
    assert mean.estimate == pytest.approx(np.mean([rows["good"].aurocs[n].estimate for n in "ab"]))


def test_a_method_that_wins_one_set_only_ranks_first_there_and_not_on_average():
    rows = {r.method: r for r in auroc_table([_seed(np.random.default_rng(2), 0.0)], rounds=50)}
    assert rows["only_a"].rank["a"] == 1 and rows["only_a"].rank["b"] > 1
    assert rows["good"].mean_rank < rows["only_a"].mean_rank < rows["noise"].mean_rank + 1e-9
    text = format_auroc_table(list(rows.values()), floors=("noise",))
    assert "noise (floor)" in text and "#1" in text


def test_seeds_scored_on_different_images_are_refused():
    rng = np.random.default_rng(3)
    one, two = _seed(rng, 0.0), _seed(rng, 0.0)
    two = SeedScores(two.labels[::-1].copy(), two.categories, two.scores)
    with pytest.raises(ValueError, match="different test images"):
        auroc_table([one, two])
