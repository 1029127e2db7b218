"""The Train page's sweep controls: launch a grid of runs from the form's settings, and watch,
stop or resume a sweep. The sweep runs as `python -m core sweep` in its own process
(core.training.sweep.start_sweep), so page reloads and dashboard restarts do not stop it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

import core.training.sweep
from core.config import TrainConfig
from core.runs.folder import RunError
from core.training.trainability import check_launch
from dashboard import state, widgets

KEY_WATCH = "train_sweep_watch"
DEFAULT_GRID = "loss=l1,l2\nmodel.skips=all|none"
GRID_HELP = ("One line per setting: KEY=V1,V2 with any training option (loss, model.skips, model.depth, lr, "
             "epochs, augment.dropout_p, …). When a value holds a comma, separate the values with '|' "
             "instead: model.skips=all|none|1,2.")


def sweep_core():
    return core.training.sweep


def sweep_form(raw: dict[str, Any], root: Path) -> None:
    """Name and grid of a sweep whose members share the form's settings above."""
    with st.container(border=True):
        st.markdown("**Sweep**: one run per combination of the values below, with every other setting "
                    "from this form (one job per GPU at a time, one after another on the CPU).")
        c1, c2 = st.columns([1, 2])
        name = c1.text_input("Sweep name", value=time.strftime("sweep-%Y%m%d-%H%M"), key="train_sweep_name",
                             help=f"Members go to {root}/<name>/<member>/.")
        grid_text = c2.text_area("Grid", value=DEFAULT_GRID, key="train_sweep_grid", help=GRID_HELP, height=100)
        if st.button("Start sweep", key="train_sweep_start", icon=":material/grid_view:"):
            launch_sweep(raw, root / name.strip(), grid_text)


def launch_sweep(raw: dict[str, Any], folder: Path, grid_text: str) -> None:
    """Validates every member's settings and data before anything is written (a refusal shows
    under the button), then starts the runner and shows the sweep's progress."""
    sweep = sweep_core()
    if not folder.name:
        st.error("Cannot start the sweep: give it a name.", icon=":material/error:")
        return
    try:
        grid = sweep.parse_grid([line.strip() for line in grid_text.splitlines() if line.strip()])
        base = TrainConfig.from_dict(raw)
        if not sweep.is_sweep(folder):  # a new plan: refuse bad data or settings before saving it
            fresh = sweep.plan_sweep(folder, base, grid)
            for member in fresh.members:
                check_launch(fresh.config(member))
        plan = sweep.open_or_plan(folder, base, grid)
        sweep.start_sweep(plan)
    except (ValueError, RunError) as err:
        st.error(f"Cannot start the sweep: {err}", icon=":material/error:")
        return
    st.session_state[KEY_WATCH] = str(plan.folder)
    state.announce(f"Sweep {plan.name} started: {len(plan.members)} runs; its progress is shown here")
    st.rerun()


def sweep_watch(root: Path) -> None:
    """The chosen sweep's members and runner; polls while it runs."""
    sweeps = sorted(str(p.parent) for p in root.glob("*/sweep.json")) if root.is_dir() else []
    if not sweeps:
        return
    st.subheader("Sweeps")
    current = st.session_state.get(KEY_WATCH)
    index = sweeps.index(current) if current in sweeps else len(sweeps) - 1
    folder = st.selectbox("Sweep", sweeps, index=index, format_func=lambda p: Path(p).name, key="train_sweep_pick")
    running = sweep_core().sweep_status(folder).get("state") == "running"

    def body() -> None:
        with widgets.guard("Sweep progress"):
            sweep_body(Path(folder))
            if running and sweep_core().sweep_status(folder).get("state") != "running":
                st.rerun(scope="app")  # it ended: redraw the buttons and the run list

    st.fragment(body, run_every=widgets.POLL_SECONDS if running else None)()
    sweep_buttons(Path(folder), running)


def sweep_body(folder: Path) -> None:
    sweep = sweep_core()
    plan = sweep.load_plan(folder)
    status = sweep.sweep_status(folder)
    rows = sweep.progress_table(plan)
    done = sum(r["state"] == "done" for r in rows)
    icon = widgets.STATE_ICONS.get("running" if status.get("state") == "running" else "finished", "")
    st.markdown(f"{icon} runner **{status.get('state')}** · {done}/{len(rows)} runs finished · "
                f"grid {'; '.join(k + ' = ' + ', '.join(map(str, v)) for k, v in plan.grid.items())}")
    st.progress(done / len(rows) if rows else 0.0)
    widgets.wide_table(pd.DataFrame(rows), hide_index=True, key="train_sweep_table")
    tail = sweep.sweep_log_tail(folder)
    if tail:
        st.code(tail, language=None, height=160)


def compare_sweep(folder: str) -> None:
    st.session_state["cmp_mode"] = "A sweep"
    st.session_state["cmp_sweep"] = folder
    st.session_state["cmp_requested"] = True  # Compare keeps this choice over its defaults


def sweep_buttons(folder: Path, running: bool) -> None:
    sweep = sweep_core()
    c1, c2 = st.columns(2)
    if running:
        if c1.button("Stop sweep", key="train_sweep_stop", icon=":material/stop:"):
            with st.spinner("Stopping (finished epochs are kept)…"):
                sweep.stop_sweep(folder)
            st.rerun()
    else:
        plan = sweep.load_plan(folder)
        left = [m for m in plan.members if sweep.member_state(plan, m) != "done"]
        if left and c1.button(f"Resume sweep ({len(left)} runs left)", key="train_sweep_resume",
                              icon=":material/play_circle:"):
            with widgets.guard("Resume sweep"):
                sweep.start_sweep(plan)
                st.rerun()
    if c2.button("Compare this sweep", key="train_sweep_compare", icon=":material/compare_arrows:",
                 on_click=compare_sweep, args=(str(folder),)):
        st.switch_page("views/compare.py")
