"""Get started: a one-click demo (generate the demo data, train a small CPU run) that shows each
epoch's reconstructions as soon as it is saved."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.runs.folder import Run, RunError
from core.training.demo_job import DEMO_EPOCHS, DEMO_SPEC, free_run_path, launch_demo
from dashboard import state, visual, widgets

PAGE_DIR = Path(__file__).parent


def start_demo(root: Path, data: Path) -> Run:
    """core.training.demo_job.launch_demo on a new demo run under `root`; waits until it is listed."""
    with st.spinner(f"Starting the demo (drawing the demo images into {data} the first time)…"):
        launch = launch_demo(data, free_run_path(root))
    widgets.wait_until_started(launch.run)
    state.switch_to_run(launch.run, f"Started the demo run {launch.run.name}")
    return launch.run


def latest_reconstructions(run: Run, data_root: Path) -> None:
    """Two test images per category (a normal and a defect) as input | reconstruction."""
    epochs = run.epochs()
    if not epochs:
        st.caption("Reconstructions appear here when the first epoch is saved.")
        return
    epoch = epochs[-1]
    test = state.test_set(run, data_root)
    picks = []
    for category in sorted({s.category for s in test.samples}):
        members = [i for i, s in enumerate(test.samples) if s.category == category]
        normal = [i for i in members if test.samples[i].label == 0][:1]
        defect = [i for i in members if test.samples[i].label > 0][:1]
        picks += normal + defect
    recon = state.reconstructions(run, epoch, data_root, picks)
    tiles = [visual.image_row([test.images[i], recon[k]], gap=2) for k, i in enumerate(picks)]
    captions = [widgets.test_caption(test, i) for i in picks]
    st.markdown(f"**Epoch {epoch}**: input · reconstruction (the newest epoch; it updates as training goes on)")
    widgets.image_cards(tiles, captions, columns=4, min_side=96)


def intro(root: Path, data: Path, busy: bool) -> bool:
    target = free_run_path(root)  # the folder the demo run will get (demo, else demo-2, ...)
    st.markdown(
        "ReconScope trains **one U-Net autoencoder** on normal images of every category, saves every "
        "epoch, and lets you **see** which epoch reconstructs well, which collapsed, and which "
        "separates defects best.\n\n"
        f"The demo draws a small procedural dataset (6 categories, {DEMO_SPEC.size} px, exact defect masks) into "
        f"`{data}` and trains {DEMO_EPOCHS} epochs (on the GPU when there is one, else the CPU) into `{target}`. "
        "Epochs appear as they finish; "
        "on 2 CPU cores the first recognisable reconstructions take a minute or two.")
    clicked = st.button("Start the demo", type="primary", key="start_demo", icon=":material/rocket_launch:",
                        disabled=busy, help="A demo run is training already." if busy else None)
    with st.expander("The same from a terminal"):
        st.code("python -m core demo          # demo data + the same training job\n"
                "streamlit run dashboard/app.py", language="bash")
    return clicked


def follow(run: Run) -> None:
    st.subheader(f"Demo run `{run.name}`")
    widgets.live_panel(run, show_log=False)
    with widgets.guard("Reconstructions"):
        latest_reconstructions(run, Path(run.config().data))
    if run.epochs():
        c = st.columns(3)
        c[0].page_link(str(PAGE_DIR / "overview.py"), label="Curves and best epoch", icon=":material/monitoring:")
        c[1].page_link(str(PAGE_DIR / "reconstructions.py"), label="All reconstructions", icon=":material/compare:")
        c[2].page_link(str(PAGE_DIR / "train.py"), label="Train your own data", icon=":material/model_training:")


def main() -> None:
    sel = state.selection()
    widgets.page_title("Get started")
    root = sel.roots[0] if sel.roots else state.default_checkpoints_root()
    data = state.default_data_root()
    with widgets.guard("Demo"):
        demo_runs = [r for r in sel.runs if r.name.startswith("demo")]
        if intro(root, data, busy=any(r.is_training() for r in demo_runs)):
            try:
                start_demo(root, data)
            except FileExistsError as err:
                st.error(f"{err}. Set RECONSCOPE_DATA to an empty folder for the demo data.", icon=":material/folder_off:")
                return
            except RunError as err:
                st.error(str(err), icon=":material/error:")
                return
            st.rerun()
        if sel.run is not None and sel.run.name.startswith("demo"):
            follow(sel.run)
        elif demo_runs:
            follow(max(demo_runs, key=lambda r: r.path.stat().st_mtime))


main()
