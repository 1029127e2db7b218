"""The sidebar's storage popover: what the run's checkpoints take, and freeing the optimizer
state older epochs no longer need (core.runs.storage decides; this only shows and asks)."""

from __future__ import annotations

import json

import streamlit as st

from core.runs import storage
from core.runs.folder import Run
from dashboard import state
from dashboard.widgets import guard


@st.cache_data(max_entries=16, show_spinner=False)
def _plan(fingerprint: tuple, rules: str, _run: Run) -> storage.PrunePlan:
    """The prune plan, recomputed when an epoch, the metrics, the pin or keep.json change."""
    return storage.plan_prune(_run)


def _rules(run: Run) -> str:
    return json.dumps([run.pinned(), storage.kept_by_request(run)], default=str)


def storage_control(run: Run, epoch: int, key: str = "storage") -> None:
    """A popover: size and optimizer state per run, a keep toggle for the selected epoch, and a
    button that drops the optimizer state prune may free (latest, pinned, best and kept stay)."""
    with guard("Storage"):
        plan = _plan(state.run_fingerprint(run), _rules(run), run)
        with st.popover(f":material/storage: Storage ({storage.megabytes(plan.total_bytes)})", width="stretch"):
            _popover(run, epoch, plan, key)


def _popover(run: Run, epoch: int, plan: storage.PrunePlan, key: str) -> None:
    st.caption(plan.summary())
    kept = epoch in storage.kept_by_request(run)
    holds = any(e.epoch == epoch and e.optimizer_bytes for e in plan.epochs)
    if holds or kept:
        wanted = st.checkbox(f"Keep epoch {epoch}'s optimizer state (to resume or branch from it)",
                             value=kept, key=f"{key}_keep_{epoch}",
                             help="Saved in keep.json; training and prune then leave it in place.")
        if wanted != kept:
            storage.set_kept(run, [epoch], keep=wanted)
            st.rerun()
    else:
        st.caption(f"Epoch {epoch} holds its weights only (its optimizer state was freed).")
    if not plan.to_free:
        return
    label = f"Free about {storage.megabytes(plan.bytes_to_free)} (epochs {', '.join(str(e.epoch) for e in plan.to_free)})"
    if st.button(label, key=f"{key}_prune", type="primary",
                 help="Rewrites those checkpoints weights-only: they still load and score; "
                      "resume continues from the latest epoch as before."):
        with st.spinner("Freeing…"):
            result = storage.prune(run)  # re-planned: training may have moved on since
        st.toast(f"Freed {storage.megabytes(result.freed_bytes)} in {run.name}", icon=":material/delete_sweep:")
        st.rerun()
