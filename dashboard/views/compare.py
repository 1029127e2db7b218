"""Compare: any number of runs, or a whole sweep, side by side.

Every number comes from core.reports.compare.compare_many, the function `python -m core compare`
prints: validation loss per epoch, synthetic and real AUROC (real only where an evaluation is
cached), health flags, the deepest layers' weight std, K-Means purity and the most confused
category pairs; the users' reconstruction table (core.reports.reconstruction: recipe, bottleneck
weight std and every reconstruction score's AUROC beside the floors); then one test image reconstructed by every run, and the best run by a
criterion with a button that selects it in the sidebar.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import core.reports.compare
import core.reports.reconstruction
from core.runs.folder import Run, RunError
from dashboard import state, widgets

KEY_MODE = "cmp_mode"
KEY_SWEEP = "cmp_sweep"
KEY_RUNS = "cmp_runs"
KEY_DEFAULT_FOR = "cmp_defaults_for"  # the sidebar run the defaults were set for
KEY_REQUESTED = "cmp_requested"  # set by "Compare this sweep": keep its choice
KEY_RECON_EPOCHS = "cmp_recon_epochs"
KEY_RECON_SCORED = "cmp_recon_scored"  # bumped after scoring, so the cached table is read again
RECON_EPOCHS = {"chosen": "chosen epoch", "last": "last epoch", "all": "every epoch"}
SWEEP_MODE, RUNS_MODE = "A sweep", "Runs"


def sweeps_under(roots) -> list[Path]:
    """Sweep folders (with a sweep.json) directly under each runs folder."""
    found = []
    for root in roots:
        if Path(root).is_dir():
            found += sorted(p.parent for p in Path(root).glob("*/sweep.json"))
    return found


# --------------------------------------------------------------------------- cached core calls


def _fingerprints(runs: list[Run]) -> tuple:
    stamps = []
    for run in runs:
        try:
            stamps.append(state.run_fingerprint(run))
        except RunError:
            stamps.append((str(run.path), "changing"))
        pinned = run.path / "pinned.json"
        stamps.append(pinned.stat().st_mtime_ns if pinned.is_file() else 0)
    return tuple(stamps)


@st.cache_data(max_entries=16, show_spinner=False)
def _comparison(key: tuple, paths: tuple[str, ...], data_root: str | None, health: bool, cluster: bool):
    return core.reports.compare.compare_many([Run(Path(p)) for p in paths], data_root=data_root, health=health,
                                       cluster=cluster)


def comparison_of(runs: list[Run], data_root: str | None, health: bool, cluster: bool):
    with st.spinner(f"Comparing {len(runs)} runs (health, features; cached per checkpoint)…"):
        return _comparison(_fingerprints(runs), tuple(str(r.path) for r in runs), data_root, health, cluster)


@st.cache_data(max_entries=32, show_spinner=False)
def _tiles(key: tuple, _comparison, data_root: str, name: str):
    return core.reports.compare.reconstruct_across(_comparison, data_root, name)


# --------------------------------------------------------------------------- picking


def set_defaults(sel: state.Selection, sweeps: list[Path]) -> None:
    """What Compare opens on, set when first opened and whenever the sidebar's run changes: the
    sweep the run belongs to (all its members), else every run trained on the run's data and
    categories. A choice made elsewhere ("Compare this sweep") is kept."""
    current = str(sel.run.path) if sel.run is not None else ""
    requested = st.session_state.pop(KEY_REQUESTED, False)
    if requested or st.session_state.get(KEY_DEFAULT_FOR) == current:
        st.session_state[KEY_DEFAULT_FOR] = current
        return
    st.session_state[KEY_DEFAULT_FOR] = current
    own = None
    if sel.run is not None:
        own = next((s for s in sweeps if sel.run.path.resolve().is_relative_to(s.resolve())), None)
        group = next(g for g in core.reports.compare.data_groups(sel.runs) if sel.run.path in {r.path for r in g})
        st.session_state[KEY_RUNS] = [str(r.path) for r in group]
    if own is not None or (sel.run is None and sweeps):
        st.session_state[KEY_MODE] = SWEEP_MODE
        st.session_state[KEY_SWEEP] = str(own or sweeps[0])
    else:
        st.session_state[KEY_MODE] = RUNS_MODE


def pick_runs(sel: state.Selection) -> list[Run]:
    sweeps = sweeps_under(sel.roots)
    set_defaults(sel, sweeps)
    modes = [SWEEP_MODE, RUNS_MODE] if sweeps else [RUNS_MODE]
    if st.session_state.get(KEY_MODE) not in modes:
        st.session_state[KEY_MODE] = modes[0]
    mode = st.radio("Compare", modes, horizontal=True, key=KEY_MODE)
    if mode == SWEEP_MODE:
        folder = st.selectbox("Sweep", [str(s) for s in sweeps], key=KEY_SWEEP,
                              format_func=lambda p: Path(p).name, help="Folders with a sweep.json (python -m core sweep).")
        members = core.reports.compare.expand_runs([folder])
        st.caption(f"{len(members)} runs: " + ", ".join(r.name for r in members))
        return members
    by_path = {str(r.path): r for r in sel.runs}
    st.session_state[KEY_RUNS] = [p for p in st.session_state.get(KEY_RUNS, []) if p in by_path]
    chosen = st.multiselect("Runs", list(by_path), key=KEY_RUNS,
                            format_func=lambda p: widgets.run_name(by_path[p], _root(by_path[p], sel.roots)))
    return [by_path[p] for p in chosen]


def shared_data_runs(runs: list[Run], sel: state.Selection) -> list[Run]:
    """The picked runs that share one training set. When they were trained on different data or
    categories, says so in place and lets the user pick which group is compared: validation
    losses, AUROCs, clusters and reconstructions are measured on each run's own data."""
    groups = core.reports.compare.data_groups(runs)
    if len(groups) == 1:
        return runs
    labels = [_group_label(g) for g in groups]
    own = next((i for i, g in enumerate(groups) if sel.run is not None and sel.run.path in {r.path for r in g}), 0)
    st.warning(f"These {len(runs)} runs were trained on {len(groups)} different data folders or category "
               "sets, so their losses, AUROCs, clusters and reconstructions cannot be ranked side by side. "
               "Runs are compared only with those trained on the same data:", icon=":material/rule:")
    choice = st.radio("Compare the runs trained on", labels, index=own, key=f"cmp_group::{'|'.join(labels)}")
    return groups[labels.index(choice)]


def _group_label(group: list[Run]) -> str:
    try:
        data, categories = core.reports.compare.training_data(group[0])
    except RunError:
        return f"an unreadable config.json ({group[0].name})"
    shown = ", ".join(categories[:4]) + (f" +{len(categories) - 4}" if len(categories) > 4 else "")
    names = ", ".join(r.name for r in group[:4]) + (f" +{len(group) - 4}" if len(group) > 4 else "")
    return f"{data} · {shown or 'every category'} — {names}"


def _root(run: Run, roots) -> Path | None:
    return next((r for r in roots if run.path.is_relative_to(r)), None)


# --------------------------------------------------------------------------- drawing


def curves_figure(comparison, column: str) -> go.Figure:
    table = comparison.metric_table(column)
    fig = go.Figure()
    for label in table.columns:
        values = table[label].dropna()
        fig.add_trace(go.Scatter(x=values.index, y=values.values, mode="lines+markers", name=label,
                                 hovertemplate=f"{label}<br>epoch %{{x}}: %{{y:.4g}}<extra></extra>"))
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 30, "b": 10}, xaxis_title="epoch",
                      yaxis_title=column.replace("_", " "), legend={"orientation": "h", "y": 1.12})
    widgets.epoch_axis(fig, table.index)
    return fig


def deep_std_figure(comparison) -> go.Figure:
    fig = go.Figure()
    for summary in comparison.runs:
        layers = list(summary.deep_std)
        fig.add_trace(go.Bar(x=layers, y=[summary.deep_std[k] for k in layers], name=summary.label))
    fig.update_layout(barmode="group", height=300, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      yaxis_title="weight std (bottleneck convolutions)", legend={"orientation": "h", "y": 1.15})
    return fig


def tables(comparison) -> None:
    st.subheader("Runs at their chosen epoch")
    st.caption("Chosen epoch (the rule every page and `export --epoch chosen` use): pinned, else the "
               "label-free suggestion, else the lowest validation loss among healthy epochs. "
               "Real AUROC only where the run was evaluated (Overview, Scores, `python -m core evaluate`).")
    widgets.wide_table(comparison.summary(), hide_index=True, key="cmp_summary")
    st.subheader("Validation loss, epoch × run")
    widgets.wide_table(comparison.val_loss_table(), key="cmp_val_loss", digits=4, relabel=False)
    st.markdown("**Health flags, epoch × run**")
    widgets.wide_table(comparison.flags_table(), key="cmp_flags", relabel=False)
    metrics = [c for c in comparison.epochs.columns if c not in ("run", "epoch", "flags")]
    column = st.selectbox("Curve", metrics, key="cmp_curve") if metrics else None
    if column:
        st.plotly_chart(curves_figure(comparison, column), key="cmp_curves")
    with st.expander("Every epoch of every run", expanded=False):
        widgets.wide_table(comparison.epochs, hide_index=True, key="cmp_epochs", digits=4)


def features_section(comparison) -> None:
    st.subheader("Deepest layers and clusters")
    c1, c2 = st.columns(2)
    with c1:
        st.plotly_chart(deep_std_figure(comparison), key="cmp_deep_std")
    rows = [{"run": r.label, "purity": r.purity,
             "most confused pairs": core.reports.compare.confused_text(r.confused_pairs) or "–"} for r in comparison.runs]
    with c2:
        widgets.wide_table(pd.DataFrame(rows), hide_index=True, key="cmp_purity")
    c2.caption("K-Means on bottleneck features, k = number of categories; share = how often two categories "
               "land in each other's clusters (0.5: indistinguishable).")


def reconstruction_section(comparison, runs: list[Run], data_root: str | None) -> None:
    st.subheader("One test image, every run")
    root = data_root or next((r.config().data for r in runs if Path(r.config().data).is_dir()), None)
    if root is None:
        st.info("No run's data folder exists here; set **Data folder** in the sidebar.")
        return
    names = core.reports.compare.list_test_images(root)
    if not names:
        st.info(f"`{root}` has no test images.")
        return
    name = st.selectbox("Test image", names, key="cmp_image", format_func=widgets.caption_for)
    key = (_fingerprints(runs), tuple((t.path, t.epoch) for t in comparison.runs))
    tiles = _tiles(key, comparison, str(root), name)
    shown = [t for t in tiles if t.reconstruction is not None]
    images = ([shown[0].image] if shown else []) + [t.reconstruction for t in shown]
    captions = (["input"] if shown else []) + [f"{t.label} · epoch {t.epoch}" for t in shown]
    widgets.image_cards(images, captions, columns=min(5, max(1, len(images))))
    for tile in tiles:
        if tile.note:
            st.caption(f"{tile.label}: {tile.note}")


def _cache_stamps(runs: list[Run]) -> tuple:
    """When each run's cache folders (per epoch, and the run-wide one of the model-free
    scores) last changed: scores stored by another page or the training follower show here on
    the next rerun."""
    return tuple(folder.stat().st_mtime_ns for run in runs
                 for folder in sorted(run.cache_dir.glob("*")) if folder.is_dir())


@st.cache_data(max_entries=16, show_spinner=False)
def _recon_rows(key: tuple, paths: tuple[str, ...], labels: tuple[str, ...], chosen: tuple,
                data_root: str | None, epochs: str, chosen_for: tuple = ()):
    return core.reports.reconstruction.reconstruction_rows(
        [Run(Path(p)) for p in paths], data_root, epochs, chosen=dict(chosen), labels=labels,
        cached_only=True, chosen_for=dict(chosen_for))


def score_missing(comparison, runs: list[Run], data_root: str | None, epochs: str, slot) -> None:
    """Button callback's work: computes the AUROCs the cache lacks under a progress bar."""
    bar = slot.progress(0.0, text="Scoring the reconstruction methods and floors…")

    def progress(done: int, total: int, text: str) -> None:
        bar.progress(done / max(total, 1), text=f"Scored {text} ({done}/{total})")

    core.reports.reconstruction.reconstruction_rows(
        runs, data_root, epochs, chosen={r.path: r.epoch for r in comparison.runs},
        labels=[r.label for r in comparison.runs], progress=progress,
        chosen_for={r.path: r.reconstruction_epoch for r in comparison.runs})
    bar.empty()
    st.session_state[KEY_RECON_SCORED] = st.session_state.get(KEY_RECON_SCORED, 0) + 1


def reconstruction_scores_section(comparison, runs: list[Run], data_root: str | None) -> None:
    """The users' table (core.reports.reconstruction): per run its recipe, validation loss,
    bottleneck weight std and the image AUROC of every reconstruction method beside the floors."""
    st.subheader("Reconstruction scores beside the floors")
    st.caption("Mean image AUROC over categories of every score that compares an image with its "
               "reconstruction (pixel, ssim, feature, ssimz; seg for discriminative runs), beside the "
               "no-learning floors rawknn and patchz; the bottleneck's weight std is the collapse "
               "signal of a deep U-Net without skips. Validation loss is each run's own loss mix: "
               "compare it within a run. Read from each run's cache (evaluate, Scores, Overview, "
               "training's follower); None: not scored yet (the button below scores it) or undefined.")
    epochs = st.radio("Rows", list(RECON_EPOCHS), format_func=RECON_EPOCHS.get, horizontal=True,
                      key=KEY_RECON_EPOCHS)
    key = (_fingerprints(runs), _cache_stamps(runs), st.session_state.get(KEY_RECON_SCORED, 0))
    chosen = tuple((r.path, r.epoch) for r in comparison.runs)
    chosen_for = tuple((r.path, r.reconstruction_epoch) for r in comparison.runs)
    rows = _recon_rows(key, tuple(str(r.path) for r in runs), tuple(r.label for r in comparison.runs),
                       chosen, data_root, epochs, chosen_for)
    frame = core.reports.reconstruction.rows_frame(rows)
    if not frame["note"].astype(bool).any():
        frame = frame.drop(columns="note")
    digits4 = {c: st.column_config.NumberColumn(c.replace("_", " "), format="%.4f")
               for c in ("val_loss", "bottleneck_std")}
    widgets.wide_table(frame, hide_index=True, key="cmp_recon", column_config=digits4)
    missing = sum(len(r.missing) for r in rows)
    slot = st.empty()
    if missing:
        cells = sum(1 for r in rows if r.missing)
        if st.button(f"Score the {missing} missing AUROCs ({cells} checkpoint(s), one model pass each)",
                     key="cmp_recon_score", icon=":material/calculate:"):
            score_missing(comparison, runs, data_root, epochs, slot)
            st.rerun()


def open_run(path: str, epoch: int | None) -> None:
    """Button callback (runs before the sidebar is drawn): select the run and its epoch."""
    st.session_state["rs_run_choice"] = path
    st.session_state["rs_run"] = path
    st.session_state[KEY_DEFAULT_FOR] = path  # the picked runs stay as they are
    if epoch is not None:
        state.go_to_epoch(Run(Path(path)), epoch)


def best_section(comparison) -> None:
    st.subheader("Best run")
    criteria = list(core.reports.compare.CRITERIA)
    criterion = st.selectbox("Criterion", criteria, key="cmp_criterion",
                             help="Among runs whose chosen epoch has no health flag, when there are any.")
    best = core.reports.compare.best_run(comparison, criterion)
    if best is None:
        st.info(f"No run has a value for {criterion}.")
        return
    st.markdown(f"**{best.label}**: {core.reports.compare.best_run_sentence(comparison, criterion).split(': ', 1)[1]}")
    st.button("Open this run", key="cmp_open", icon=":material/open_in_new:", on_click=open_run,
              args=(best.path, best.epoch), help="Selects it in the sidebar; the other pages then show it.")


def main() -> None:
    sel = state.selection()
    widgets.page_header("Compare", sel, "runs or a sweep side by side")
    with widgets.guard("Compare"):
        if not sel.runs:
            raise state.NotReady("No runs yet: train a few on **Train** (or a sweep), then compare them here.")
        runs = pick_runs(sel)
        if not runs:
            st.info("Pick at least one run.")
            return
        runs = shared_data_runs(runs, sel)
        c1, c2 = st.columns(2)
        health = c1.checkbox("Health flags", value=True, key="cmp_health")
        cluster = c2.checkbox("Purity and confused pairs (K-Means)", value=True, key="cmp_cluster")
        data_root = sel.data_override.strip() or None
        comparison = comparison_of(runs, data_root, health, cluster)
        tables(comparison)
        best_section(comparison)
        features_section(comparison)
        with widgets.guard("Reconstruction scores"):
            reconstruction_scores_section(comparison, runs, data_root)
        with widgets.guard("Reconstructions"):
            reconstruction_section(comparison, runs, data_root)
        notes = [f"{r.label}: {n}" for r in comparison.runs for n in r.notes]
        if notes:
            with st.expander("Notes"):
                st.markdown("\n".join(f"- {n}" for n in notes))


main()
