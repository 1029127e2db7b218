"""Features: a 2-D map (UMAP or PCA) of the encoder's pooled features, coloured by category,
K-Means cluster, anomaly score or label; a box or lasso selection shows the selected images;
the cluster purity table and the category pairs the encoder confuses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import core.diagnostics
from core.diagnostics.clustering import UMAP_MAX_FIT
from core.diagnostics.features import MAX_POINTS  # the default view core.training.follow maps ahead
from core.runs.folder import Run
from dashboard import state, widgets

COLOR_BY = ("category", "K-Means cluster", "anomaly score", "label", "split")
PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#9333ea", "#0891b2", "#db2777", "#65a30d", "#78716c",
           "#1e3a8a", "#7c2d12", "#064e3b", "#581c87", "#155e75", "#831843", "#3f6212")
LABEL_NAMES = {0: "normal", 1: "defective", -1: "unlabeled"}
PLOT_KEY = "features_map"
MAX_SELECTED_SHOWN = 48
POINT_CHOICES = (500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)  # images on the map, at most


@dataclass
class FeatureView:
    names: list[str]
    categories: list[str]
    splits: list[str]
    labels: np.ndarray
    coords: np.ndarray
    clusters: np.ndarray | None
    cluster_summary: dict | None


def diagnostics():
    return core.diagnostics


@st.cache_data(max_entries=16, show_spinner=False)
def _features(fingerprint: tuple, root: str, level: str, max_points: int, method: str, k: int | None,
              _run: Run, _epoch: int) -> dict:
    """Plain dict (st.cache_data pickles it; classes defined in a page script cannot be)."""
    diag = diagnostics()
    found = diag.encoder_features(_run, _epoch, root, level=level, max_points=max_points)
    coords = diag.feature_embedding(_run, _epoch, root, level=level, method=method, max_points=max_points)
    clusters = diag.feature_clusters(_run, _epoch, root, level=level, k=k, max_points=max_points)
    summary = {"purity": clusters.purity, "ari": clusters.ari, "k": clusters.k, "table": clusters.cluster_table,
               "confused": clusters.confused_pairs}
    return {"names": found.names, "categories": found.categories, "splits": found.splits,
            "labels": np.asarray(found.labels), "coords": np.asarray(coords),
            "clusters": np.asarray(clusters.assignments), "cluster_summary": summary}


@st.cache_data(max_entries=8, show_spinner=False)
def _images_by_name(root: str, config_json: str, names: tuple[str, ...]):
    from core.config import TrainConfig
    from core.data.images import load_image_set
    from core.diagnostics.features import feature_samples

    config = TrainConfig.from_dict(json.loads(config_json))
    wanted = set(names)
    samples = [s for s in feature_samples(config, Path(root), ("train", "test")) if s.name in wanted]
    loaded = load_image_set(samples, config.image_size)
    return {s.name: loaded.images[i] for i, s in enumerate(loaded.samples)}


# --------------------------------------------------------------------------- figure


def scores_for(run: Run, epoch: int, data_root: Path, names: list[str], method: str) -> np.ndarray:
    """Test-image scores by name from core.scoring; NaN for training images (not scored)."""
    result = state.scores(run, epoch, data_root, method)
    by_name = dict(zip(result.names, np.asarray(result.image_scores, np.float64), strict=True))
    return np.array([by_name.get(n, np.nan) for n in names])


def groups_for(view: FeatureView, color_by: str) -> list[str]:
    if color_by == "category":
        return list(view.categories)
    if color_by == "K-Means cluster":
        return [f"cluster {c}" for c in view.clusters]
    if color_by == "label":
        return [LABEL_NAMES.get(int(v), "unlabeled") for v in view.labels]
    return list(view.splits)


def map_figure(view: FeatureView, color_by: str, scores: np.ndarray | None, marker_size: int) -> go.Figure:
    hover = [f"{n}<br>{c} · {s}" for n, c, s in zip(view.names, view.categories, view.splits, strict=True)]
    index = np.arange(len(view.names))
    fig = go.Figure()
    if color_by == "anomaly score" and scores is not None:
        scored = np.isfinite(scores)
        fig.add_trace(go.Scattergl(x=view.coords[~scored, 0], y=view.coords[~scored, 1], mode="markers",
                                   name="training images (not scored)", customdata=index[~scored],
                                   hovertext=[hover[i] for i in index[~scored]], hoverinfo="text",
                                   marker={"size": marker_size, "color": "#cbd5e1"}))
        fig.add_trace(go.Scattergl(x=view.coords[scored, 0], y=view.coords[scored, 1], mode="markers",
                                   name="test images", customdata=index[scored],
                                   hovertext=[f"{hover[i]}<br>score {scores[i]:.4g}" for i in index[scored]],
                                   hoverinfo="text",
                                   marker={"size": marker_size + 2, "color": scores[scored], "colorscale": "Inferno",
                                           "showscale": True, "colorbar": {"title": {"text": "score"}}}))
    else:
        groups = np.asarray(groups_for(view, color_by), dtype=object)
        for i, group in enumerate(sorted(set(groups.tolist()))):
            sel = groups == group  # vectorised: 100,000 points x 64 clusters stays instant
            fig.add_trace(go.Scattergl(x=view.coords[sel, 0], y=view.coords[sel, 1], mode="markers", name=group,
                                       customdata=index[sel], hovertext=[hover[j] for j in index[sel]],
                                       hoverinfo="text",
                                       marker={"size": marker_size, "color": PALETTE[i % len(PALETTE)],
                                               "opacity": 0.8}))
    fig.update_layout(height=620, margin={"l": 10, "r": 10, "t": 10, "b": 10}, dragmode="lasso",
                      legend={"itemsizing": "constant", "orientation": "h", "y": -0.02}, xaxis={"showticklabels": False, "title": ""},
                      yaxis={"showticklabels": False, "title": "", "scaleanchor": "x"})
    return fig


def selected_indices(event) -> list[int]:
    selection = (event or {}).get("selection") or {}
    out = []
    for point in selection.get("points") or []:
        custom = point.get("customdata")
        if isinstance(custom, (list, tuple)):
            custom = custom[0] if custom else None
        if custom is not None:
            out.append(int(custom))
    return sorted(set(out))


# --------------------------------------------------------------------------- sections


def controls(depth: int, methods: list[str]) -> tuple[str, int, str, str, str, int | None]:
    c = st.columns([1.2, 1.2, 1, 1.3, 1, 1])
    levels = ["bottleneck", "all", *map(str, range(depth + 1))]
    level = c[0].selectbox("Encoder level", levels, key="feat_level", persist_state="session",
                           format_func=lambda v: {"bottleneck": "bottleneck", "all": "all levels"}.get(v, f"level {v}"))
    max_points = c[1].select_slider("Images (max)", POINT_CHOICES, value=MAX_POINTS, key="feat_points",
                                    persist_state="session",
                                    help="Images drawn, balanced over categories with a fixed seed. "
                                         f"Above {UMAP_MAX_FIT:,} UMAP is fitted on a seeded "
                                         f"{UMAP_MAX_FIT:,}-image sample and the rest placed by "
                                         "their nearest sampled images. Computed once, cached.")
    method = c[2].selectbox("Map", ("umap", "pca"), key="feat_method", persist_state="session",
                            format_func=str.upper, help="UMAP: neighbourhoods kept; PCA: instant, linear.")
    color_by = c[3].selectbox("Colour by", COLOR_BY, key="feat_color", persist_state="session")
    score_method = c[4].selectbox("Score", methods, key="feat_score_method", disabled=color_by != "anomaly score",
                                  index=methods.index("pixel") if "pixel" in methods else 0)
    k = int(c[5].number_input("K (0 = categories)", 0, 64, 0, key="feat_k"))
    return level, max_points, method, color_by, score_method, (k or None)


def cluster_section(view: FeatureView) -> None:
    summary = view.cluster_summary or {}
    c = st.columns(3)
    c[0].metric("cluster purity", f"{summary.get('purity', float('nan')):.3f}",
                help="Share of images in their cluster's majority category (K-Means, k clusters).")
    c[1].metric("adjusted Rand index", f"{summary.get('ari', float('nan')):.3f}", help="1 = clusters are the categories, 0 = chance.")
    c[2].metric("clusters (k)", summary.get("k", "–"))
    left, right = st.columns(2)
    with left:
        st.markdown("**Clusters**")
        st.dataframe(summary.get("table"), hide_index=True, width="stretch",
                     column_config={"purity": st.column_config.ProgressColumn("purity", min_value=0.0, max_value=1.0,
                                                                              format="%.3f")})
    with right:
        st.markdown("**Confused category pairs**")
        pairs = pd.DataFrame(summary.get("confused") or [], columns=["category a", "category b", "share mixed"])
        if pairs.empty:
            st.caption("No two categories share a cluster.")
        else:
            st.dataframe(pairs, hide_index=True, width="stretch",
                         column_config={"share mixed": st.column_config.NumberColumn(format="%.3f")})


def spread_over_categories(view: FeatureView, chosen: list[int]) -> list[int]:
    """Selected points in round-robin order over their categories, so a cut shows them all."""
    by_category: dict[str, list[int]] = {}
    for i in chosen:
        by_category.setdefault(view.categories[i], []).append(i)
    queues = [by_category[c] for c in sorted(by_category)]
    return [q[k] for k in range(max(map(len, queues), default=0)) for q in queues if k < len(q)]


def selection_section(run: Run, data_root: Path, view: FeatureView, chosen: list[int]) -> None:
    if not chosen:
        st.caption("Draw a lasso or a box on the map to see those images here.")
        return
    shown = spread_over_categories(view, chosen)[:MAX_SELECTED_SHOWN]
    config = run.config()
    names = tuple(view.names[i] for i in shown)
    images = _images_by_name(str(data_root), json.dumps(config.to_dict(), sort_keys=True), names)
    counts = pd.Series([view.categories[i] for i in chosen]).value_counts()
    st.markdown(f"**{len(chosen)} images selected** — " + ", ".join(f"{c}: {n}" for c, n in counts.items())
                + (f" (showing the first {len(shown)})" if len(chosen) > len(shown) else ""))
    present = [n for n in names if n in images]
    split_of = {view.names[i]: view.splits[i] for i in shown}
    widgets.image_cards([images[n] for n in present], [f"{widgets.caption_for(n)} ({split_of[n]})" for n in present],
                        columns=8, min_side=64)


def main() -> None:
    sel = state.selection()
    widgets.page_header("Features", sel, "does the encoder tell categories and defects apart?")
    with widgets.guard("Features"):
        run = sel.need_run()
        epoch = sel.need_epoch()
        data_root = sel.data_root()
        level, max_points, method, color_by, score_method, k = controls(run.config().model.depth,
                                                                         state.scoring_methods())
        spinner = "Encoding images and drawing the map (cached on disk per epoch; UMAP's first run compiles, ~20 s)…"
        with st.spinner(spinner):
            view = FeatureView(**_features(state.checkpoint_fingerprint(run, epoch), str(data_root), level,
                                           max_points, method, k, run, epoch))
        scores = None
        if color_by == "anomaly score":
            with st.spinner("Scoring the test images…"):
                scores = scores_for(run, epoch, data_root, view.names, score_method)
        size = 4 if len(view.names) > 5000 else 6
        event = st.plotly_chart(map_figure(view, color_by, scores, size), key=PLOT_KEY, on_select="rerun",
                                selection_mode=("box", "lasso"), config=widgets.SELECT_PLOT_CONFIG)
        placed = (f" UMAP fitted on a seeded {UMAP_MAX_FIT:,}-image sample, the other "
                  f"{len(view.names) - UMAP_MAX_FIT:,} placed by their nearest sampled images."
                  if method == "umap" and len(view.names) > UMAP_MAX_FIT else "")
        st.caption(f"{len(view.names):,} images (train and test), one point each: the channel means of the "
                   f"encoder's {level} features, mapped with {method.upper()}. Hover names the image."
                   + placed)
        with widgets.guard("Selection"):
            selection_section(run, data_root, view, selected_indices(event))
        st.subheader("Clusters against categories")
        cluster_section(view)


main()
