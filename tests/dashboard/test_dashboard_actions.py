"""AppTest of what the dashboard writes: pins, exports, training jobs (launch, refusal, finish),
and the first-start demo."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from core.runs.folder import Run  # noqa: E402
from core.training.jobs import wait_for  # noqa: E402
from tests.dashboard_support import copy_run, messages, open_app  # noqa: E402

JOB_TIMEOUT = 120


@pytest.fixture
def runs_root(tiny_run, tmp_path) -> Path:
    root = tmp_path / "runs"
    return copy_run(tiny_run.path, root)


def test_pin_writes_the_run_folder(runs_root, monkeypatch):
    at = open_app(runs_root, monkeypatch, "weights")
    [s for s in at.sidebar.select_slider if s.label == "Epoch"][0].set_value(1).run()
    at.sidebar.text_input(key="sidebar_pin_reason").input("sharpest reconstructions").run()
    at.sidebar.button(key="sidebar_pin_button").click().run()
    assert not at.exception, messages(at)
    pinned = Run(runs_root / "tiny").pinned()
    assert pinned and pinned["epoch"] == 1 and pinned["reason"] == "sharpest reconstructions"
    at.run()
    slider = [s for s in at.sidebar.select_slider if s.label == "Epoch"][0]
    labels = dict(zip(Run(runs_root / "tiny").epochs(), slider.options, strict=True))
    assert "★ pinned" in labels[1] and "★ pinned" not in labels[2]  # by epoch, not by position


def test_pin_from_the_overview_suggestion(runs_root, monkeypatch):
    at = open_app(runs_root, monkeypatch)
    pins = [b for b in at.button if b.label.startswith("★ Pin epoch")]
    assert pins, "Overview offers to pin an epoch"
    pins[0].click().run()
    assert not at.exception, messages(at)
    assert Run(runs_root / "tiny").pinned() is not None


def test_export_writes_weights_and_submission(runs_root, demo_root, monkeypatch):
    at = open_app(runs_root, monkeypatch, "scores")
    at.sidebar.text_input(key="sidebar_export_test").input(str(demo_root)).run()
    at.sidebar.button(key="sidebar_export_button").click().run()
    assert not at.exception and not at.error, messages(at)
    folder = runs_root / "tiny" / "exports"
    written = sorted(p.name for p in folder.glob("epoch_*/*"))
    assert {"model.pt", "submission.csv", "card.json", "config.json"} <= set(written)
    assert any(b.label == "submission.csv" for b in at.get("download_button")), "downloads are offered"


def test_export_before_any_diagnosis_makes_the_clis_choice(runs_root, demo_root, monkeypatch):
    # a fresh dashboard process on a page that never diagnoses: the sidebar only knows the
    # fallback (lowest validation loss); Export must still write what `python -m core export`
    # writes, the suggested epoch with the suggestion's score
    import json

    import dashboard.health
    from core.diagnostics import diagnose_run
    from core.diagnostics.choice import SUGGESTED, choose_epoch

    run = Run(runs_root / "tiny")
    cli = choose_epoch(run, diagnose_run(run, data_root=demo_root, cluster=False))
    assert cli.rule == SUGGESTED and cli.method
    at = open_app(runs_root, monkeypatch, "weights")
    dashboard.health._DIAGNOSES.clear()
    at.run()
    assert any("not yet computed in this session" in c.value for c in at.sidebar.caption), messages(at)
    at.sidebar.text_input(key="sidebar_export_test").input("").run()
    at.sidebar.button(key="sidebar_export_button").click().run()
    assert not at.exception and not at.error, messages(at)
    [card] = (runs_root / "tiny" / "exports").glob("epoch_*/card.json")
    card = json.loads(card.read_text())
    assert card["epoch"] == cli.epoch and card["choice"]["rule"] == SUGGESTED
    assert card["scoring"]["method"] == cli.method


def fill_train_form(at: AppTest, data: Path, name: str) -> None:
    at.text_input(key="train_name").input(name)
    at.text_input(key="train_data").input(str(data))
    at.selectbox(key="train_size").set_value(32)
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_batch").set_value(8)
    at.number_input(key="train_depth").set_value(2)
    at.number_input(key="train_width").set_value(4)
    at.selectbox(key="train_device").set_value("cpu")
    at.run()


def test_train_form_launches_a_job_that_finishes(demo_root, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    at = open_app(root, monkeypatch, "train")
    fill_train_form(at, demo_root, "from-form")
    assert not at.exception, messages(at)
    at.button(key="train_start").click().run()
    assert not at.exception and not at.error, messages(at)
    run = Run(root / "from-form")
    assert run.status().get("pid"), "the job's pid is kept in the run folder"
    # a second launch on the same run is refused with a message (training: "already training";
    # done already: "already has epochs"), and the first job carries on
    training_before = run.is_training()
    at.button(key="train_start").click().run()
    assert not at.exception, messages(at)
    assert any("already" in e.value for e in at.error), messages(at)
    if training_before:
        assert any("already training" in e.value for e in at.error), messages(at)
    status = wait_for(run, timeout=JOB_TIMEOUT)
    assert status["state"] == "finished", status
    assert run.epochs() == [1] and run.config().model.base_width == 4 and run.config().image_size == 32
    at.run()  # the page shows the finished job, the sidebar its epoch
    assert not at.exception, messages(at)
    assert [s for s in at.sidebar.select_slider if s.label == "Epoch"] or any(
        "**Epoch**" in m.value for m in at.sidebar.markdown)


def test_demo_button_generates_data_and_starts_training(tmp_path, monkeypatch):
    from core.training.jobs import stop_training

    root, data = tmp_path / "runs", tmp_path / "demo-data"
    monkeypatch.setenv("RECONSCOPE_DATA", str(data))
    at = open_app(root, monkeypatch)
    at.button(key="start_demo").click().run()
    assert not at.exception, messages(at)
    run = Run(root / "demo")
    try:
        assert (data / "README.txt").is_file() and run.config().image_size == 64
        assert run.status().get("state") in ("starting", "running", "finished")
    finally:
        stop_training(run)
    wait_for(run, timeout=60)


def test_start_training_refuses_a_missing_data_folder_and_creates_nothing(runs_root, tmp_path, monkeypatch):
    at = open_app(runs_root, monkeypatch, "train")
    fill_train_form(at, tmp_path / "no-such-folder", "never-made")
    at.button(key="train_start").click().run()
    assert not at.exception, messages(at)
    assert any("no-such-folder" in e.value and "does not exist" in e.value for e in at.error), messages(at)
    assert not (runs_root / "never-made").exists(), "a refused launch leaves no run folder"
    assert at.sidebar.selectbox(key="rs_run").value == str(runs_root / "tiny")


def test_start_training_switches_to_the_new_run_and_shows_its_live_panel(runs_root, demo_root, monkeypatch):
    at = open_app(runs_root, monkeypatch, "train")
    assert at.sidebar.selectbox(key="rs_run").value == str(runs_root / "tiny")
    fill_train_form(at, demo_root, "launched")
    at.button(key="train_start").click().run()
    run = Run(runs_root / "launched")
    try:
        assert not at.exception and not at.error, messages(at)
        assert at.sidebar.selectbox(key="rs_run").value == str(run.path), "the sidebar moves to the new run"
        assert any(h.value == "Job of launched" for h in at.subheader), "the new run's live panel is shown"
        assert any("launched" in t.value for t in at.toast), "a toast says the job started"
    finally:
        wait_for(run, timeout=JOB_TIMEOUT)


def test_start_sweep_refuses_a_missing_data_folder_and_creates_nothing(runs_root, tmp_path, monkeypatch):
    at = open_app(runs_root, monkeypatch, "train")
    fill_train_form(at, tmp_path / "no-such-folder", "unused")
    at.text_input(key="train_sweep_name").input("refused-sweep").run()
    at.button(key="train_sweep_start").click().run()
    assert not at.exception, messages(at)
    assert any("Cannot start the sweep" in e.value and "no-such-folder" in e.value for e in at.error), messages(at)
    assert not (runs_root / "refused-sweep").exists(), "a refused sweep leaves no folder"
