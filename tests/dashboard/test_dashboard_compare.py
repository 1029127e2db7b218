"""AppTest of the Compare page on a real 2x2 sweep: it opens without an error, its tables hold
the numbers core.reports.compare (and so `python -m core compare`) gives, it reconstructs one image by
every run, and "Open this run" selects the best run in the sidebar."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("streamlit")

from core.__main__ import main as cli  # noqa: E402
from core.reports.compare import best_run, compare_many, expand_runs  # noqa: E402
from tests.dashboard_support import messages, open_app  # noqa: E402


@pytest.fixture(scope="module")
def sweep_root(tiny_sweep, tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp_dash")
    shutil.copytree(tiny_sweep, root / tiny_sweep.name, ignore=shutil.ignore_patterns("cache"))
    return root


# the page's tables in the order it draws them (the epochs table sits in an expander)
TABLES = ("cmp_summary", "cmp_val_loss", "cmp_flags", "cmp_epochs", "cmp_purity", "cmp_recon")


def frame_by_key(at, key: str) -> pd.DataFrame:
    frames = [d.value for d in at.dataframe]
    assert len(frames) == len(TABLES), f"expected {len(TABLES)} tables, got {len(frames)}"
    return frames[TABLES.index(key)]


def assert_same_numbers(shown: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(shown.columns) == list(expected.columns)
    for column in expected.columns:
        if pd.api.types.is_numeric_dtype(expected[column]):
            np.testing.assert_allclose(shown[column].astype(float), expected[column].astype(float), equal_nan=True)
        else:
            assert list(shown[column].fillna("")) == list(expected[column].fillna("")), column


def test_compare_page_shows_the_sweep_with_cores_numbers(sweep_root, monkeypatch, capsys):
    at = open_app(sweep_root, monkeypatch, "compare")
    assert not at.exception and not at.error, messages(at)
    assert at.radio(key="cmp_mode").value == "A sweep"
    comparison = compare_many(expand_runs([sweep_root / "grid2x2"]))
    summary = frame_by_key(at, "cmp_summary")
    assert_same_numbers(summary, comparison.summary())
    capsys.readouterr()
    assert cli(["compare", "--sweep", str(sweep_root / "grid2x2")]) == 0
    printed = capsys.readouterr().out
    for row in summary.itertuples():  # what the page shows is what the CLI prints
        line = next(x for x in printed.splitlines() if x.strip().startswith(row.run + " "))
        assert f"{row.val_loss:.4f}" in line and f"{row.purity:.3f}" in line and f"{row.deep_std:.4f}" in line
    assert_same_numbers(frame_by_key(at, "cmp_val_loss"), comparison.val_loss_table())
    assert_same_numbers(frame_by_key(at, "cmp_flags"), comparison.flags_table())
    assert_same_numbers(frame_by_key(at, "cmp_epochs"), comparison.epochs)
    assert at.get("plotly_chart"), "curves and weight std are drawn"
    captions = [img.caption for element in at.get("image") for img in element.proto.imgs]
    assert captions == ["input"] + [f"{r.label} · epoch {r.epoch}" for r in comparison.runs]

    at.selectbox(key="cmp_criterion").set_value("lowest validation loss").run()
    best = best_run(comparison, "lowest validation loss")
    assert best.label in " ".join(m.value for m in at.markdown)
    at.button(key="cmp_open").click().run()
    assert not at.exception and not at.error, messages(at)
    assert at.session_state["rs_run_choice"] == best.path
    assert at.sidebar.selectbox(key="rs_run").value == best.path


def test_compare_page_shows_the_reconstruction_table_of_a_sweep(skips_sweep, tmp_path, monkeypatch):
    """The users' table: both runs with their recipe and bottleneck std from the cache at once,
    then every reconstruction method's AUROC beside the floors once the missing ones are scored."""
    from core.reports.reconstruction import reconstruction_rows
    from core.runs.folder import Run

    shutil.copytree(skips_sweep, tmp_path / skips_sweep.name)
    at = open_app(tmp_path, monkeypatch, "compare")
    assert not at.exception and not at.error, messages(at)
    assert at.selectbox(key="cmp_sweep").value == str(tmp_path / "skips2")
    shown = frame_by_key(at, "cmp_recon")
    assert list(shown["run"]) == ["skips-all", "skips-none"] and list(shown["skips"]) == ["all", "none"]
    assert shown["bottleneck_std"].notna().all() and (shown["bottleneck_std"] > 0).all()
    # feature is the one column the page's own diagnosis (the ranking) never scores
    assert shown["feature"].isna().all(), "nothing scored yet: the cells are empty, not made up"

    at.button(key="cmp_recon_score").click().run()
    assert not at.exception and not at.error, messages(at)
    shown = frame_by_key(at, "cmp_recon")
    runs = [tmp_path / "skips2" / name for name in ("skips-all", "skips-none")]
    rows = reconstruction_rows([Run(p) for p in runs], epochs="chosen",
                               chosen={str(p): 1 for p in runs}, cached_only=True)
    for method in ("pixel", "ssim", "feature", "ssimz", "rawknn", "patchz"):
        np.testing.assert_allclose(shown[method], [r.auroc[method] for r in rows])
    assert shown["ssimz"].between(0, 1).all() and list(shown["epoch"]) == [1, 1]
    assert "cmp_recon_score" not in [b.key for b in at.button], "nothing left to score"


def test_compare_page_with_picked_runs(sweep_root, monkeypatch):
    at = open_app(sweep_root, monkeypatch, "compare")
    at.radio(key="cmp_mode").set_value("Runs").run()
    members = sorted(str(p) for p in (sweep_root / "grid2x2").iterdir() if p.is_dir())[:2]
    at.multiselect(key="cmp_runs").set_value(members).run()
    assert not at.exception and not at.error, messages(at)
    shown = frame_by_key(at, "cmp_summary")
    assert sorted(shown["run"]) == sorted(p.rsplit("/", 1)[-1] for p in members)


@pytest.mark.filterwarnings("ignore::core.data.images.LeftOutWarning")  # pill-only members, 3-category data
def test_sweep_launched_and_watched_from_the_train_page(demo_root, tmp_path, monkeypatch):
    from core.training.sweep import load_plan, sweep_status

    at = open_app(tmp_path, monkeypatch, "train")
    at.text_input(key="train_data").set_value(str(demo_root)).run()
    at.multiselect(key="train_categories").set_value(["pill"])
    at.selectbox(key="train_size").set_value(32)
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_batch").set_value(8)
    at.number_input(key="train_threads").set_value(1)
    at.number_input(key="train_width").set_value(4)
    at.number_input(key="train_depth").set_value(2).run()
    at.text_input(key="train_sweep_name").set_value("ui")
    at.text_area(key="train_sweep_grid").set_value("loss=l1,l2").run()
    at.button(key="train_sweep_start").click().run()
    assert not at.exception and not at.error, messages(at)
    folder = tmp_path / "ui"
    deadline = time.time() + 240
    while sweep_status(folder).get("state") == "running":
        assert time.time() < deadline, (folder / "sweep.log").read_text()
        time.sleep(0.5)
    assert sweep_status(folder)["state"] == "finished", (folder / "sweep.log").read_text()
    plan = load_plan(folder)
    assert [m.overrides for m in plan.members] == [{"loss": "l1"}, {"loss": "l2"}]
    assert plan.base.image_size == 32 and plan.base.categories == ["pill"] and plan.base.model.depth == 2
    at.run()
    table = at.dataframe[0].value
    assert list(table["state"]) == ["done", "done"] and list(table["saved"]) == [1, 1]
    at.button(key="train_sweep_compare").click().run()
    assert not at.exception and not at.error, messages(at)
    assert at.selectbox(key="cmp_sweep").value == str(folder)
    assert sorted(at.dataframe[0].value["run"]) == ["loss-l1", "loss-l2"]


@pytest.fixture(scope="module")
def mixed_root(tiny_sweep, tiny_run, flat_run, tmp_path_factory):
    """The 2x2 sweep (demo data), the tiny run (demo data) and the homework run (flat data)."""
    root = tmp_path_factory.mktemp("cmp_mixed")
    for path in (tiny_sweep, tiny_run.path, flat_run.path):
        shutil.copytree(path, root / path.name, ignore=shutil.ignore_patterns("cache"))
    return root


def pick_sidebar_run(at, path) -> None:
    at.sidebar.selectbox(key="rs_run").set_value(str(path)).run()


def test_compare_opens_on_the_whole_sweep_of_the_sidebar_run(mixed_root, monkeypatch):
    at = open_app(mixed_root, monkeypatch)
    member = sorted(p for p in (mixed_root / "grid2x2").iterdir() if p.is_dir())[0]
    pick_sidebar_run(at, member)
    at.switch_page("views/compare.py").run()
    assert not at.exception and not at.error, messages(at)
    assert at.radio(key="cmp_mode").value == "A sweep"
    assert at.selectbox(key="cmp_sweep").value == str(mixed_root / "grid2x2")
    assert len(at.dataframe[0].value) == 4, "all four members are compared"


def test_compare_opens_on_the_runs_sharing_the_runs_data(mixed_root, monkeypatch):
    at = open_app(mixed_root, monkeypatch)
    pick_sidebar_run(at, mixed_root / "homework")
    at.switch_page("views/compare.py").run()
    assert not at.exception and not at.error, messages(at)
    assert at.radio(key="cmp_mode").value == "Runs"
    assert at.multiselect(key="cmp_runs").value == [str(mixed_root / "homework")]
    pick_sidebar_run(at, mixed_root / "tiny")  # the demo-data run: itself and the sweep's four
    assert sorted(at.multiselect(key="cmp_runs").value) == sorted(
        [str(mixed_root / "tiny")] + [str(p) for p in (mixed_root / "grid2x2").iterdir() if p.is_dir()])


def test_compare_says_when_runs_were_trained_on_different_data(mixed_root, monkeypatch):
    at = open_app(mixed_root, monkeypatch)
    pick_sidebar_run(at, mixed_root / "homework")
    at.switch_page("views/compare.py").run()
    at.multiselect(key="cmp_runs").set_value([str(mixed_root / "tiny"), str(mixed_root / "homework")]).run()
    assert not at.exception and not at.error, messages(at)
    assert any("different data" in w.value for w in at.warning), [w.value for w in at.warning]
    assert list(at.dataframe[0].value["run"]) == ["homework"], "only the sidebar run's data group is ranked"
    captions = [img.caption for element in at.get("image") for img in element.proto.imgs]
    assert not any(c.startswith("tiny") for c in captions), "no demo-data model reconstructs homework images"
    group = at.radio[[r.label for r in at.radio].index("Compare the runs trained on")]
    group.set_value(next(o for o in group.options if "tiny" in o)).run()
    assert list(at.dataframe[0].value["run"]) == ["tiny"]
