"""AppTest of every dashboard page on the tiny fixture run: each renders without an exception,
a different epoch changes what is shown, and broken inputs give messages, not tracebacks.

The run is copied first (pages write caches and pins into it; the session fixture stays
read-only). Each page is one script run of a few seconds on 2 CPU cores.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.runs.checkpoint import load_checkpoint

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.dashboard_support import copy_run, messages, open_app  # noqa: E402

PAGES = ("overview", "reconstructions", "weights", "features", "scores", "compare", "train", "start")
TITLES = {"start": "Get started"}


@pytest.fixture(scope="module")
def runs_root(tiny_run, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dash_runs")
    return copy_run(tiny_run.path, root)


def epoch_slider(at: AppTest):
    sliders = [s for s in at.sidebar.select_slider if s.label == "Epoch"]
    assert sliders, "the sidebar has no epoch picker"
    return sliders[0]


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_without_errors(runs_root, monkeypatch, page):
    at = open_app(runs_root, monkeypatch, page)
    assert not at.exception, messages(at)
    assert not at.error, messages(at)
    title = TITLES.get(page, page.capitalize())
    assert [t.value for t in at.title] == [title], "one title per page, its name"
    first = next(iter(at.main.children.values()))  # app.py draws it before the sidebar's slow parts
    assert getattr(first, "value", None) == title, "the title is the page's first element"


def test_pages_show_images_and_plots(runs_root, monkeypatch):
    at = open_app(runs_root, monkeypatch)
    assert at.get("plotly_chart"), "Overview draws the curves"
    for page, needs in (("reconstructions", "image"), ("weights", "plotly_chart"), ("features", "plotly_chart"),
                        ("scores", "plotly_chart")):
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception and not at.error, f"{page}: {messages(at)}"
        assert at.get(needs), f"{page} shows no {needs}"


def shown_images(at: AppTest) -> list[tuple[str, str]]:
    """(caption, media url) of every picture: captions carry the score, urls the pixels."""
    return [(img.caption, img.url) for element in at.get("image") for img in element.proto.imgs]


def test_choosing_another_epoch_changes_the_reconstructions(runs_root, monkeypatch):
    at = open_app(runs_root, monkeypatch, "reconstructions")
    assert len(epoch_slider(at).options) == 2
    epoch_slider(at).set_value(1).run()
    first = shown_images(at)
    assert "epoch **1**" in at.caption[0].value
    epoch_slider(at).set_value(2).run()
    assert not at.exception and not at.error, messages(at)
    second = shown_images(at)
    assert "epoch **2**" in at.caption[0].value
    assert first and len(first) == len(second)
    assert [u for _, u in first] != [u for _, u in second], "the pictures must change with the epoch"
    assert [c for c, _ in first] != [c for c, _ in second], "the scores in the captions must change too"


def test_epoch_choice_holds_across_pages(runs_root, monkeypatch):
    at = open_app(runs_root, monkeypatch, "weights")
    epoch_slider(at).set_value(1).run()
    at.switch_page("views/scores.py").run()
    assert epoch_slider(at).value == 1
    assert "epoch **1**" in at.caption[0].value


def test_no_runs_leads_to_the_demo(tmp_path, monkeypatch):
    at = open_app(tmp_path / "empty", monkeypatch)
    assert not at.exception
    for page in PAGES:
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception and not at.error, f"{page}: {messages(at)}"
    assert any(b.label == "Start the demo" for b in at.button)


def test_run_without_epochs_says_so(tiny_run, tmp_path, monkeypatch):
    run = tmp_path / "runs" / "fresh"
    run.mkdir(parents=True)
    shutil.copy(tiny_run.path / "config.json", run / "config.json")
    at = open_app(tmp_path / "runs", monkeypatch)
    for page in PAGES[:5]:
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception and not at.error, f"{page}: {messages(at)}"
        assert any("no finished epoch" in i.value for i in at.info), page


def test_damaged_checkpoint_is_named_and_other_epochs_work(tiny_run, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    shutil.copytree(tiny_run.path, root / "tiny", ignore=shutil.ignore_patterns("cache"))
    (root / "tiny" / "epoch_002.pt").write_bytes(b"not a checkpoint")
    at = open_app(root, monkeypatch, "reconstructions")
    epoch_slider(at).set_value(2).run()
    assert not at.exception, messages(at)
    assert any("epoch_002.pt" in e.value for e in at.error), messages(at)
    for page in ("weights", "scores", "overview"):
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, f"{page}: {messages(at)}"
    at.switch_page("views/reconstructions.py").run()
    epoch_slider(at).set_value(1).run()
    assert not at.exception and not at.error, messages(at)
    assert at.get("image")


def test_missing_data_folder_names_it(runs_root, monkeypatch):
    at = open_app(runs_root, monkeypatch, "reconstructions")
    at.sidebar.text_input(key="rs_data_root").input("/nonexistent/reconscope-data").run()
    assert not at.exception, messages(at)
    assert any("/nonexistent/reconscope-data" in e.value and "sidebar" in e.value for e in at.error), messages(at)
    at.switch_page("views/weights.py").run()  # weights need no images: still usable
    assert not at.exception and not at.error, messages(at)


def test_failed_job_is_explained(tiny_run, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    shutil.copytree(tiny_run.path, root / "tiny", ignore=shutil.ignore_patterns("cache"))
    status = {"state": "running", "pid": 999_999_999, "epoch": 2, "epochs": 4, "message": "epoch 3: batch 1/2"}
    (root / "tiny" / "status.json").write_text(json.dumps(status))
    at = open_app(root, monkeypatch, "train")
    assert not at.exception, messages(at)
    assert any("failed" in e.value for e in at.error), "a dead 'running' job must read as failed"
    assert any(b.label in ("Resume", "Train more epochs") for b in at.button)


def test_overview_draws_from_the_cache_then_fills_in_the_rest(tiny_run, tmp_path, monkeypatch):
    """Nothing scored yet: the page draws the logged curves at once, scores the missing
    epochs under a progress bar, then shows their real AUROC; a run evaluated by the follower
    is drawn straight from the cache."""
    from core.evaluation.evaluate import evaluate_epoch
    from core.runs.folder import Run

    root = copy_run(tiny_run.path, tmp_path)
    run = Run(root / tiny_run.path.name)
    data = run.config().data
    from core.training.follow import OVERVIEW_METHODS

    methods = OVERVIEW_METHODS  # the Overview's defaults
    assert evaluate_epoch(run, 1, data, methods, pixel=False, thresholds=False, routing=False,
                          cached_only=True) is None  # nothing is computed when only cache is asked
    at = open_app(root, monkeypatch)
    assert not at.exception and not at.error, messages(at)
    table = at.dataframe[-1].value
    assert "real_auroc_knn" in table.columns and table["real_auroc_knn"].notna().all()
    cached = evaluate_epoch(run, 1, data, methods, pixel=False, thresholds=False, routing=False,
                            cached_only=True)
    assert cached is not None and cached.mean_auroc("knn") == pytest.approx(
        table.set_index("epoch").loc[1, "real_auroc_knn"])


@pytest.mark.filterwarnings("ignore::core.runs.folder.ForeignCheckpointWarning")  # pages load it too
def test_a_checkpoint_copied_in_from_another_run_is_marked_in_the_epoch_picker(tiny_run, tmp_path,
                                                                              monkeypatch):
    from core.runs.folder import save_checkpoint

    root = tmp_path / "runs"
    shutil.copytree(tiny_run.path, root / "tiny", ignore=shutil.ignore_patterns("cache"))
    path = root / "tiny" / "epoch_001.pt"
    payload = load_checkpoint(path)
    payload["config"]["run"] = "/elsewhere/other_run"  # another training's file, dropped in
    payload["metrics"] = {**payload["metrics"], "seconds": payload["metrics"]["seconds"] + 1.0}
    save_checkpoint(path, payload)
    at = open_app(root, monkeypatch, "weights")
    assert not at.exception, messages(at)
    labels = list(epoch_slider(at).options)
    assert "⇄ other run" in labels[0] and "⇄ other run" not in labels[1], labels


def test_the_dashboard_scores_with_the_cores_a_running_job_leaves(tiny_run, tmp_path, monkeypatch):
    """What each script run really set, read in the script's own thread (torch's OpenMP
    thread count is per thread: the page scores in the thread that set it)."""
    import os

    import core.training.threads
    from core.training.threads import usable_cores

    applied, apply = [], core.training.threads.apply
    monkeypatch.setattr(core.training.threads, "apply", lambda share: applied.append(apply(share)))
    root = tmp_path / "runs"
    shutil.copytree(tiny_run.path, root / "tiny", ignore=shutil.ignore_patterns("cache"))
    status = {"state": "running", "pid": os.getpid(), "epoch": 2, "epochs": 4, "threads": 1}
    (root / "tiny" / "status.json").write_text(json.dumps(status))
    at = open_app(root, monkeypatch, "weights")
    assert not at.exception, messages(at)
    assert applied[-1].threads == max(1, usable_cores() - 1)  # the job trains on 1 thread
    (root / "tiny" / "status.json").write_text(json.dumps({**status, "state": "finished"}))
    at.run()
    assert applied[-1].threads == usable_cores()  # nothing trains: every core


def broken_copy(demo_root: Path, tmp_path: Path, how_many: int | None) -> tuple[Path, list[Path]]:
    """A copy of the demo data whose first `how_many` test images (None: all) are not images."""
    data = tmp_path / "data"
    shutil.copytree(demo_root, data)
    tests = sorted(p for p in data.glob("*/test/*/*.png"))[:how_many]
    for path in tests:
        path.write_bytes(b"this is not an image")
    return data, tests


@pytest.mark.filterwarnings("always::core.data.images.BadImageWarning")
def test_a_skipped_file_is_named_on_the_page_that_reads_it(runs_root, demo_root, tmp_path, monkeypatch):
    data, broken = broken_copy(demo_root, tmp_path, 1)
    at = open_app(runs_root, monkeypatch, "reconstructions")
    at.sidebar.text_input(key="rs_data_root").input(str(data)).run()
    assert not at.exception and not at.error, messages(at)
    assert any(str(broken[0]) in w.value and "cannot decode" in w.value for w in at.warning), \
        [w.value for w in at.warning]
    at.run()  # a rerun reads the cached images; the note stays
    assert any(str(broken[0]) in w.value for w in at.warning)
    at.switch_page("views/weights.py").run()  # a page that reads no images shows no notes
    assert not any(str(broken[0]) in w.value for w in at.warning)


@pytest.mark.filterwarnings("always::core.data.images.BadImageWarning")
def test_a_folder_of_non_images_lists_each_file_collapsed(runs_root, demo_root, tmp_path, monkeypatch):
    data, broken = broken_copy(demo_root, tmp_path, None)
    at = open_app(runs_root, monkeypatch, "reconstructions")
    at.sidebar.text_input(key="rs_data_root").input(str(data)).run()
    assert not at.exception, messages(at)
    assert any("none of the" in e.value for e in at.error), messages(at)
    assert any(f"{len(broken)} notes about the data" in w.value for w in at.warning), [w.value for w in at.warning]
    listed = "\n".join(c.value for c in at.code)
    assert all(str(path) in listed for path in broken)
    assert any(e.label == f"The {len(broken)} notes" and not e.proto.expanded for e in at.expander)


def test_scores_auroc_table_follows_the_chosen_method(runs_root, monkeypatch):
    at = open_app(runs_root, monkeypatch, "scores")
    for method in ("feature", "pixel"):
        at.selectbox(key="scores_method").set_value(method).run()
        assert not at.exception and not at.error, messages(at)
        table = at.dataframe[-1].value
        assert list(table.index)[0] == method, list(table.index)
        assert list(table.index).count(method) == 1


def test_scores_at_the_chosen_epoch_rank_what_export_writes(runs_root, monkeypatch):
    # the Overview diagnosed the run (open_app opens it first): at the chosen epoch the Scores
    # page ranks by the suggestion's method, the score `export` writes, not the default score
    from core.diagnostics.choice import choose_epoch
    from core.runs.folder import Run
    from dashboard.health import known_diagnosis

    at = open_app(runs_root, monkeypatch, "scores")
    assert not at.exception and not at.error, messages(at)
    chosen = choose_epoch(Run(runs_root / "tiny"), known_diagnosis(Run(runs_root / "tiny")))
    assert chosen.rule == "suggested" and chosen.method == "ensemble"  # not the default, adaptive
    assert at.selectbox(key="scores_method").value == chosen.method


def test_an_epoch_saved_while_training_is_offered_not_forced(tiny_run, tmp_path, monkeypatch):
    """The pages keep the epochs they show when one lands; the sidebar offers it with a button."""
    import os

    from core.runs.folder import Run

    root = tmp_path / "runs"
    shutil.copytree(tiny_run.path, root / "tiny", ignore=shutil.ignore_patterns("cache"))
    run = Run(root / "tiny")
    later = tmp_path / "epoch_002.pt"
    shutil.move(run.checkpoint_path(2), later)
    run.write_status(state="running", pid=os.getpid(), epoch=1, epochs=2, message="epoch 2/2")
    at = open_app(root, monkeypatch, "reconstructions")
    assert not at.exception and not at.error, messages(at)
    assert any(m.value.startswith("**Epoch** 1") for m in at.sidebar.markdown), [m.value for m in at.sidebar.markdown]
    shutil.move(later, run.checkpoint_path(2))  # epoch 2 lands
    at.run()  # any rerun (a widget, a page's own rerun) keeps the page on what it showed
    assert not at.exception and not at.error, messages(at)
    assert any(m.value.startswith("**Epoch** 1") for m in at.sidebar.markdown), "epoch 2 is not forced on the page"
    offer = at.sidebar.button(key="rs_new_epoch")
    assert offer.label == "Show new epoch 2"
    offer.click().run()
    assert len(epoch_slider(at).options) == 2, "the click shows it"
