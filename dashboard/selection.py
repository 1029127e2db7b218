"""What the user picked, shared by every page: the runs folders, the run, the epoch and the
data folder, kept in `st.session_state`.

app.py draws the sidebar pickers once per rerun and stores a `Selection`; pages call
`selection()` and ask it for what they need (`need_run`, `need_epoch`, `data_root`), which
raises `NotReady` with a sentence to show when something is missing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from core.runs.folder import Run, list_runs
from core.scoring.data import DataFolderMissing, run_data_root
from dashboard import data_notes

ENV_CHECKPOINTS = "RECONSCOPE_CHECKPOINTS"
ENV_DATA = "RECONSCOPE_DATA"
KEY_SELECTION = "rs_selection"
KEY_EPOCHS = "rs_epoch_choice"
KEY_NONCE = "rs_epoch_nonce"
KEY_SWITCH = "rs_run_switch"  # the run path that the next rerun's run picker moves to
KEY_RUN_WIDGET = "rs_run"
KEY_TOASTS = "rs_toasts"


class NotReady(Exception):
    """Something the page needs is not there yet (no run, no epoch); shown as st.info."""


def default_checkpoints_root() -> Path:
    return Path(os.environ.get(ENV_CHECKPOINTS) or "checkpoints").expanduser()


def default_data_root() -> Path:
    """Where the demo data is written and where the train form points by default."""
    return Path(os.environ.get(ENV_DATA) or "data/demo").expanduser()


def discover_runs(roots: Sequence[Path]) -> list[Run]:
    """Runs under each root (the default one and any folder the user added), de-duplicated."""
    seen: dict[Path, Run] = {}
    for root in roots:
        for run in list_runs(root):
            seen.setdefault(run.path.resolve(), run)
    return list(seen.values())


@dataclass(frozen=True)
class Selection:
    roots: tuple[Path, ...] = ()
    runs: tuple[Run, ...] = ()
    run: Run | None = None
    epochs: tuple[int, ...] = ()
    epoch: int | None = None
    data_override: str = ""
    marks: dict[int, list[str]] = field(default_factory=dict)

    def need_run(self) -> Run:
        if self.run is None:
            where = ", ".join(str(r) for r in self.roots) or "checkpoints/"
            raise NotReady(f"No runs found under {where}. Start the demo on **Get started**, "
                           "train one on **Train**, or add a runs folder in the sidebar.")
        return self.run

    def need_epoch(self) -> int:
        run = self.need_run()
        if self.epoch is None:
            raise NotReady(f"Run **{run.name}** has no finished epoch yet. Epochs appear here as "
                           "they are saved; the **Train** page shows the job's progress.")
        return self.epoch

    def data_root(self) -> Path:
        """The sidebar's data folder, else the run's (core's one rule); raises when absent."""
        run = self.need_run()
        try:
            root = run_data_root(run.config(), self.data_override, "the sidebar")
        except DataFolderMissing as err:
            raise DataFolderMissing(f"{err}. Set it under **Data folder** in the sidebar.") from err
        data_notes.use(root)  # the page shows the warnings about this folder's files
        return root

    def data_root_if_any(self) -> Path | None:
        """data_root, or None when the folder is absent (health checks run without images)."""
        try:
            return self.data_root()
        except DataFolderMissing:
            return None


def selection() -> Selection:
    return st.session_state.get(KEY_SELECTION) or Selection(roots=(default_checkpoints_root(),))


def set_selection(value: Selection) -> None:
    st.session_state[KEY_SELECTION] = value


def picked_epoch(run: Run) -> int | None:
    """The epoch the user picked for this run in this session (by the picker or a button; the
    product's chosen epoch is core.diagnostics.choice);
    None until they choose, so the picker follows the best epoch of a run that is training."""
    return st.session_state.get(KEY_EPOCHS, {}).get(str(run.path))


def remember_epoch(run: Run, epoch: int) -> None:
    st.session_state.setdefault(KEY_EPOCHS, {})[str(run.path)] = int(epoch)


def epoch_widget_key(run: Run, following: int | None = None) -> str:
    """The picker's widget key. It changes when a button moves the picker and, until the user
    picks an epoch, when the epoch it follows changes, so the widget is redrawn at that epoch:
    Streamlit keeps a widget's value by its key and ignores a new default."""
    nonce = st.session_state.get(KEY_NONCE, {}).get(str(run.path), 0)
    return f"rs_epoch::{run.path}::{nonce}::{'chosen' if following is None else f'follow{following}'}"


def go_to_epoch(run: Run, epoch: int) -> None:
    """Callback for buttons on pages ("show epoch 7"): moves the sidebar's picker."""
    remember_epoch(run, epoch)
    nonces = st.session_state.setdefault(KEY_NONCE, {})
    nonces[str(run.path)] = nonces.get(str(run.path), 0) + 1


def switch_to_run(run: Run, message: str) -> None:
    """After a launch: the next rerun's sidebar selects `run` and shows `message` as a toast.
    The picker cannot be moved in the rerun that drew it, and Streamlit keeps a keyed
    widget's value over a new default, so the move waits for the picker's next draw."""
    st.session_state[KEY_SWITCH] = str(run.path)
    announce(message)


def announce(message: str) -> None:
    """A toast for the next rerun (one shown just before st.rerun can be lost)."""
    st.session_state.setdefault(KEY_TOASTS, []).append(message)


def show_announcements() -> None:
    for message in st.session_state.pop(KEY_TOASTS, []):
        st.toast(message, icon=":material/rocket_launch:")


def take_switch(options: Sequence[str]) -> str | None:
    """The run a launch asked to switch to, once the picker lists it (until then it is kept);
    sets the picker's value, which the picker's draw right after this reads."""
    pending = st.session_state.get(KEY_SWITCH)
    if pending not in options:
        return None
    del st.session_state[KEY_SWITCH]
    st.session_state[KEY_RUN_WIDGET] = pending
    return pending
