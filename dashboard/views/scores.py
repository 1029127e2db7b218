"""Scores: ranked anomaly scores with thumbnails, normal-vs-defective histograms with a
threshold and the confusion counts it gives, and the per-category AUROC table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.diagnostics.choice import choose_epoch
from core.evaluation import metrics, thresholds
from core.runs.folder import Run
from core.scoring.adaptive import describe_choices
from core.scoring.checkpoint import checkpoint_reference, resolve_method
from core.scoring.results import MethodScores
from dashboard import state, visual, widgets

RULES = tuple(thresholds.RULE_NAMES)  # core.evaluation.thresholds: F1-max, percentile, jump
KIND_COLORS = {"normal": "#2563eb", "defective": "#dc2626", "unlabeled": "#94a3b8"}


# --------------------------------------------------------------------------- data


def selected(result: MethodScores, category: str) -> np.ndarray:
    cats = np.asarray(result.categories, dtype=object)
    return np.ones(len(cats), bool) if category == "all" else cats == category


def kind_of(label: int) -> str:
    return "normal" if label == 0 else ("defective" if label > 0 else "unlabeled")


# --------------------------------------------------------------------------- threshold


def draw_threshold(labels: np.ndarray, threshold: float | None, note: str, scores: np.ndarray) -> None:
    if threshold is None:
        st.info(f"No threshold: {note}")
        return
    st.caption(f"Threshold **{threshold:.5g}** — {note}. Score ≥ threshold is called defective.")
    if not (np.asarray(labels) >= 0).any():  # unlabeled: how many are called defective, no confusion
        flagged = int((np.asarray(scores) >= threshold).sum())
        st.metric("called defective", f"{flagged} of {len(scores)}")
        return
    counts = metrics.confusion_at(labels, scores, threshold)
    c = st.columns(7)
    c[0].metric("true positives", counts["tp"])
    c[1].metric("false positives", counts["fp"])
    c[2].metric("true negatives", counts["tn"])
    c[3].metric("false negatives", counts["fn"])
    for col, name in zip(c[4:], ("precision", "recall", "fpr"), strict=True):
        value = counts[name]
        col.metric(name if name != "fpr" else "false-positive rate", "–" if not np.isfinite(value) else f"{value:.3f}")


def histogram(scores: np.ndarray, labels: np.ndarray, threshold: float | None, method: str) -> go.Figure:
    fig = go.Figure()
    edges = np.histogram_bin_edges(scores[np.isfinite(scores)], bins=min(60, max(10, len(scores) // 4)))
    for kind in ("normal", "defective", "unlabeled"):
        mask = np.array([kind_of(int(v)) == kind for v in labels], bool)
        if mask.any():
            fig.add_trace(go.Histogram(x=scores[mask], name=f"{kind} ({int(mask.sum())})", opacity=0.6,
                                       marker_color=KIND_COLORS[kind],
                                       xbins={"start": edges[0], "end": edges[-1], "size": edges[1] - edges[0]}))
    if threshold is not None:
        fig.add_vline(x=threshold, line={"color": "#111827", "width": 2, "dash": "dash"},
                      annotation_text=f"threshold {threshold:.4g}", annotation_position="top left")
    fig.update_layout(barmode="overlay", height=340, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      xaxis_title=f"{method} score", yaxis_title="images",
                      legend={"orientation": "h", "y": 1.14, "x": 1, "xanchor": "right"})
    return fig


# --------------------------------------------------------------------------- ranking


def ranked_table(result: MethodScores, sel: np.ndarray, test, top: int) -> pd.DataFrame:
    index_of = {s.name: i for i, s in enumerate(test.samples)}
    idx = np.flatnonzero(sel)
    scores = np.asarray(result.image_scores, np.float64)[idx]
    order = idx[np.argsort(-scores, kind="stable")][:top]
    n = len(result.names)
    routed = np.zeros(n, bool) if result.routed is None else np.asarray(result.routed, bool)
    confidence = (np.ones(n) if result.routing_confidence is None
                  else np.asarray(result.routing_confidence))
    rows = []
    for rank, i in enumerate(order, start=1):
        name = result.names[i]
        image = test.images[index_of[name]] if name in index_of else np.zeros((8, 8, 3), np.uint8)
        rows.append({"rank": rank, "image": widgets.png_data_uri(visual.upscale(image, 64)),
                     "score": float(result.image_scores[i]), "category": result.categories[i],
                     "category from": f"routed ({confidence[i]:.2f} sure)" if routed[i] else "dataset",
                     "defect": result.defects[i] or "–", "label": kind_of(int(result.labels[i])),
                     "file": Path(result.paths[i]).name})
    return pd.DataFrame(rows)


def draw_ranking(result: MethodScores, sel: np.ndarray, test) -> None:
    left, right = st.columns([3, 1])
    top = right.selectbox("Show", (25, 50, 100, 500), index=1, key="scores_top", persist_state="session",
                          format_func=lambda n: f"top {n}")
    labelled = bool((np.asarray(result.labels) > 0).any())
    left.caption("Most anomalous first." + (" A good score puts the defective images (red) on top."
                                            if labelled else " The test set has no labels."))
    table = ranked_table(result, sel, test, top)
    defective = "color: #dc2626; font-weight: 600"  # the red the caption promises
    styled = (table.style.map(lambda v: defective if v == "defective" else "", subset=["label"])
              if "label" in table.columns else table)  # an empty selection has no columns
    st.dataframe(styled, hide_index=True, width="stretch", height=min(600, 40 + 70 * len(table)), row_height=66,
                 column_config={
                     "rank": st.column_config.NumberColumn("#", width="small"),
                     "image": st.column_config.ImageColumn("image", width="small"),
                     "score": st.column_config.NumberColumn("score", format="%.5g"),
                     "label": st.column_config.TextColumn("label"),
                 })


# --------------------------------------------------------------------------- AUROC table


def draw_auroc_table(run: Run, epoch: int, data_root, methods: list[str], method: str) -> None:
    """The method picked above (first row), beside the other methods the user adds."""
    others = [m for m in methods if m != method]
    key = "scores_auroc_methods"
    if key in st.session_state:  # keep the user's picks, without the method shown above
        st.session_state[key] = [m for m in st.session_state[key] if m in others]
    else:
        st.session_state[key] = [m for m in ("pixel", "ssim") if m in others]
    added = st.multiselect(f"Beside {method}, also", others, key=key,
                           help="knn and rawknn build a memory bank first: slower the first time.")
    chosen = [method, *added]
    with st.spinner("Scoring the test set with each method (cached on disk)…"):
        result = state.image_aurocs(run, epoch, data_root, chosen)
    if not state.test_set(run, data_root).has_labels:
        st.info("AUROC needs labels, and this test set has none (no normal/defect folders and no "
                "label CSV). The ranking above still works: put a CSV with file and label columns "
                "beside test/ to see AUROC here.")
        return
    table = pd.DataFrame(result.image_auroc).T.apply(pd.to_numeric, errors="coerce")  # None: empty
    table.index.name = "method"
    widgets.wide_table(table)
    st.caption("Image AUROC per category; mean = mean over categories, overall = all images pooled "
               "(raw scores), overall_calibrated = pooled after per-category calibration against "
               "held-out normals. Empty: undefined there (a category with one class, or a method without "
               "enough reference normals to calibrate; the notes below say which).")
    for note in result.notes:  # why a metric is undefined, as core words it
        st.info(note, icon=":material/info:")


# --------------------------------------------------------------------------- page


def main() -> None:
    sel = state.selection()
    widgets.page_header("Scores", sel, "which images each method calls anomalous")
    with widgets.guard("Scores"):
        run = sel.need_run()
        epoch = sel.need_epoch()
        data_root = sel.data_root()
        methods = state.scoring_methods()
        c1, c2, c3, c4 = st.columns([1, 1, 2, 1])
        with c1:
            chosen = choose_epoch(run, state.known_diagnosis(run))
            default = (chosen.method if chosen.epoch == epoch and chosen.method  # what export writes
                       else resolve_method(None, run, epoch, data_root)[0])  # adaptive, else knn
            method = widgets.method_picker("Method", methods, key="scores_method", default=default)
        calibrated = st.toggle(
            "Calibrated scores", value=True, key="scores_calibrated",
            help="Each score as a z-score against its category's normal scores (leave-one-out "
                 "training normals and held-out ones for knn, rawknn, patchz), so one "
                 "ranking over mixed categories is fair (what a pooled AUROC judges). Off: raw scores.")
        calibration = "normals" if calibrated else "none"
        with st.spinner(f"Scoring the test set with {method} (once per epoch; cached on disk)…"):
            result = state.scores(run, epoch, data_root, method, calibration=calibration)
        chose = describe_choices(result.info)
        st.caption(state.test_set(run, data_root).summary() + ". Scores: "
                   + (result.calibration or "raw") + "." + (f" {chose}." if chose else ""))
        categories = ["all"] + sorted(set(result.categories))
        category = c2.selectbox("Category", categories, key="scores_category", persist_state="session")
        labelled = state.test_set(run, data_root).has_labels
        rule = c3.selectbox("Threshold rule", RULES, index=0 if labelled else 1, key="scores_rule",
                            persist_state="session", format_func=thresholds.RULE_NAMES.get)
        q = c4.number_input("Percentile", 50.0, 100.0, thresholds.PERCENTILE, 0.5, key="scores_q",
                            disabled=rule != thresholds.PERCENTILE_RULE)
        mask = selected(result, category)
        scores = np.asarray(result.image_scores, np.float64)[mask]
        labels = np.asarray(result.labels)[mask]
        val_normals = None
        if rule == thresholds.PERCENTILE_RULE:  # the normals on the same scale as the test scores
            val = state.scores(run, epoch, data_root, method, split="val")
            reference = (checkpoint_reference(run, epoch, data_root, method)
                         if result.calibrated else None)  # what the test scores were fitted on
            val_normals = thresholds.normal_scores(val, result.calibrated,
                                                   None if category == "all" else category,
                                                   reference)
        chosen = thresholds.choose_threshold(rule, labels, scores, val_normals, q)
        threshold, note = chosen.value, chosen.note
        axis = f"{method}, calibrated" if result.calibrated and calibrated else method
        st.plotly_chart(histogram(scores, labels, threshold, axis), config=widgets.PLOT_CONFIG,
                        key="scores_hist")
        draw_threshold(labels, threshold, note, scores)
        st.subheader("Ranked images")
        draw_ranking(result, mask, state.test_set(run, data_root))
        st.subheader("Image AUROC per category")
        with widgets.guard("AUROC table"):
            draw_auroc_table(run, epoch, data_root, methods, method)


main()
