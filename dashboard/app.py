"""ReconScope dashboard: `streamlit run dashboard/app.py`.

This file draws the navigation and the sidebar (runs folder, run, epoch, data folder, pin)
and stores the selection in session state; every page reads it from there. Pages are thin:
they pick, call core, and draw.
"""

from __future__ import annotations

from core.training import threads

threads.prefer_passive_wait()  # before torch loads (below): idle OpenMP threads sleep, not spin

from pathlib import Path  # noqa: E402

import streamlit as st  # noqa: E402

from core.data.snapshot import data_snapshot  # noqa: E402
from core.diagnostics.choice import choose_epoch  # noqa: E402
from core.runs.folder import Run, RunError  # noqa: E402
from dashboard import data_notes, state, storage_panel, widgets  # noqa: E402

PAGE_DIR = Path(__file__).parent / "views"  # not "pages/": that name turns on Streamlit's old MPA mode


def pick_run(runs: list[Run], roots: list[Path]) -> Run:
    """The run picker; labels stay fixed (Streamlit keeps a selection by its label), the live
    job state is a caption below."""
    by_path = {str(r.path): r for r in runs}
    options = list(by_path)
    current = state.take_switch(options) or st.session_state.get("rs_run_choice")
    if current not in by_path:
        training = [p for p, r in by_path.items() if r.is_training()]
        current = training[0] if training else options[-1]
    chosen = st.selectbox("Run", options, index=options.index(current), key="rs_run",
                          format_func=lambda p: widgets.run_name(by_path[p], _root_of(by_path[p], roots)),
                          help="Every folder with a config.json under the runs folder(s).")
    st.session_state["rs_run_choice"] = chosen
    return by_path[chosen]


KEY_SHOWN = "rs_shown_epochs"  # run path -> the epochs the pages show while it trains


def shown_epochs(run: Run) -> list[int]:
    """The epochs the pages show. While the run trains: those of the last refresh, so a page
    keeps what it shows (and the work it is doing) when an epoch lands; the new ones are
    offered under the run picker. Before the first epoch, and once the job ends: all."""
    epochs = run.epochs()
    store = st.session_state.setdefault(KEY_SHOWN, {})
    key = str(run.path)
    if not store.get(key) or not run.is_training():
        store[key] = epochs
    store[key] = [e for e in store[key] if e in epochs]
    return store[key]


def _show_new_epochs(run: Run) -> None:
    st.session_state.setdefault(KEY_SHOWN, {}).pop(str(run.path), None)


def watch_run(run: Run, shown: list[int]) -> None:
    """The run's job state under the picker. While it trains, a polling fragment refreshes the
    line and offers newly saved epochs with a button, so nothing is forced on the page. A run
    without epochs yet, and the job's end, redraw the app at once (nothing to keep)."""
    known = (tuple(shown), run.is_training())

    def line() -> None:
        st.caption(widgets.run_state_line(run))
        epochs, training = tuple(run.epochs()), run.is_training()
        if (epochs, training) == known:
            return
        if not known[0] or (training != known[1] and epochs == known[0]):
            st.rerun(scope="app")
        new = [e for e in epochs if e not in known[0]]
        label = f"Show new epoch {new[-1]}" if new else "Refresh"
        if st.button(label, key="rs_new_epoch", icon=":material/refresh:", width="stretch",
                     help="Saved since this page was drawn; the pages keep what they show until you click."):
            _show_new_epochs(run)
            st.rerun(scope="app")

    st.fragment(line, run_every=widgets.POLL_SECONDS if known[1] else None)()


def _root_of(run: Run, roots: list[Path]) -> Path | None:
    for root in roots:
        try:
            run.path.relative_to(root)
            return root
        except ValueError:
            continue
    return None


def pick_epoch(run: Run, epochs: list[int], marks: dict[int, list[str]]) -> int | None:
    if not epochs:
        st.caption("No finished epoch yet; they appear here as they are saved.")
        return None
    current = state.picked_epoch(run)
    following = current not in epochs
    if following:  # the chosen epoch (core's one rule), on the diagnosis computed so far
        current = choose_epoch(run, state.known_diagnosis(run)).epoch or epochs[-1]
        if current not in epochs:  # chosen among epochs saved since the last refresh
            current = epochs[-1]
    if len(epochs) == 1:
        st.markdown(f"**Epoch** {widgets.epoch_label(epochs[0], marks)}")
        return epochs[0]
    chosen = st.select_slider("Epoch", options=epochs, value=current,
                              key=state.epoch_widget_key(run, current if following else None),
                              format_func=lambda e: widgets.epoch_label(e, marks),
                              help="Marks: " + widgets.MARK_LEGEND)
    if not following:
        state.remember_epoch(run, chosen)
    elif chosen != current:  # the user's first choice: redraw the picker as a chosen one
        state.remember_epoch(run, chosen)
        st.rerun()
    return chosen


def marks_summary(marks: dict[int, list[str]]) -> str:
    """One caption line listing which epochs carry a mark, e.g. "★ 7 · ✓ best val 5"."""
    by_mark: dict[str, list[int]] = {}
    for epoch, items in marks.items():
        for item in items:
            by_mark.setdefault(item, []).append(epoch)
    return " · ".join(f"{mark} {', '.join(map(str, eps[:6]))}{'…' if len(eps) > 6 else ''}"
                      for mark, eps in by_mark.items())


def sidebar(runs: list[Run], roots: list[Path]) -> state.Selection:
    if not runs:
        st.info("No runs yet. **Get started** trains a small demo run in a few minutes.")
        return state.Selection(roots=tuple(roots))
    run = pick_run(runs, roots)
    epochs = shown_epochs(run)
    watch_run(run, epochs)
    marks = state.epoch_marks(run, epochs, state.known_diagnosis(run))
    epoch = pick_epoch(run, epochs, marks)
    summary = marks_summary(marks)
    if summary:
        st.caption(summary)
    data_override = st.text_input(
        "Data folder", key="rs_data_root", placeholder=_config_data(run),
        help="Where the test images are. Empty: the folder in the run's config.json.")
    if epoch is not None:
        widgets.pin_control(run, epoch, key="sidebar_pin")
        widgets.export_control(run, epoch, data_override.strip() or _config_data(run), key="sidebar_export")
        storage_panel.storage_control(run, epoch, key="sidebar_storage")
    return state.Selection(roots=tuple(roots), runs=tuple(runs), run=run, epochs=tuple(epochs),
                           epoch=epoch, data_override=data_override, marks=marks)


def _config_data(run: Run) -> str:
    try:
        return run.config().data
    except (RunError, ValueError):
        return "config.json unreadable"


def runs_roots() -> list[Path]:
    roots = [state.default_checkpoints_root()]
    extra = st.session_state.get("rs_extra_root", "").strip()
    if extra:
        roots.append(Path(extra).expanduser())
    return roots


def navigation(has_runs: bool):
    def page(name: str, title: str, icon: str, default: bool = False):
        return st.Page(str(PAGE_DIR / f"{name}.py"), title=title, icon=icon, default=default)

    return st.navigation({
        "Inspect": [
            page("overview", "Overview", ":material/monitoring:", default=has_runs),
            page("reconstructions", "Reconstructions", ":material/compare:"),
            page("weights", "Weights", ":material/grid_on:"),
            page("features", "Features", ":material/scatter_plot:"),
            page("scores", "Scores", ":material/leaderboard:"),
            page("compare", "Compare", ":material/compare_arrows:"),
        ],
        "Run": [
            page("train", "Train", ":material/model_training:"),
            page("start", "Get started", ":material/rocket_launch:", default=not has_runs),
        ],
    })


def main() -> None:
    st.set_page_config(page_title="ReconScope", page_icon="🔬", layout="wide")
    data_notes.install()
    data_notes.begin_rerun()
    roots = runs_roots()
    runs = state.discover_runs(roots)
    threads.apply(threads.dashboard_share(runs))  # its scoring takes the cores jobs leave
    current = navigation(bool(runs))
    widgets.early_title(current.title)  # before the sidebar: no page is blank while it draws
    with st.sidebar:
        with widgets.guard("Run picker"):
            state.set_selection(sidebar(runs, roots))
        state.show_announcements()
        with st.expander("Runs folders"):
            st.caption(f"Default: `{roots[0]}` (env {state.ENV_CHECKPOINTS})")
            st.text_input("Add a runs folder", key="rs_extra_root", placeholder="/path/to/checkpoints",
                          persist_state="session")
    with data_snapshot():  # one look at the data files per rerun (core.data.snapshot)
        current.run()
        data_notes.show_used()  # warnings about the data the page read, under its header


main()
