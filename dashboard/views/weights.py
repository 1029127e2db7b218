"""Weights: per-layer weight statistics of the chosen epoch, one layer's histogram, the layer x
epoch std heatmap where vanishing layers stand out, the gradient-norm timeline, and a second
run side by side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import core.diagnostics
import core.diagnostics.gradients
import core.diagnostics.weights
from core.runs.folder import Run
from dashboard import state, visual, widgets

STATS = {"std": "weight std", "abs_mean": "mean |w|", "mean": "mean w", "l2": "L2 norm",
         "near_zero_share": "share of |w| < 1e-3"}
LOG_STATS = ("std", "abs_mean", "l2")
MD_COLORS = {"encoder": "blue", "bottleneck": "violet", "decoder": "green", "head": "orange", "other": "gray"}
PART_COLORS = {"encoder": "#2563eb", "bottleneck": "#9333ea", "decoder": "#059669", "head": "#c2410c",
               "other": "#64748b"}


def diagnostics():
    return core.diagnostics.weights


def gradients():
    return core.diagnostics.gradients


@st.cache_data(max_entries=32, show_spinner=False)
def _stats(fingerprint: tuple, _run: Run, _epoch: int) -> pd.DataFrame:
    return diagnostics().weight_stats(_run, _epoch)


@st.cache_data(max_entries=8, show_spinner=False)
def _std_table(fingerprint: tuple, _run: Run, epochs: tuple[int, ...] | None) -> pd.DataFrame:
    return diagnostics().weight_std_table(_run, None if epochs is None else list(epochs))


def stats_of(run: Run, epoch: int) -> pd.DataFrame:
    try:
        return _stats(state.checkpoint_fingerprint(run, epoch), run, epoch)
    except Exception:
        state.note_damaged(run, epoch)
        raise


# --------------------------------------------------------------------------- figures


def stats_figure(frames: dict[str, pd.DataFrame], stat: str) -> go.Figure:
    """Bars per layer (encoder -> decoder); one bar group per run when comparing."""
    fig = go.Figure()
    single = len(frames) == 1
    for name, frame in frames.items():
        colors = [PART_COLORS.get(p, "#64748b") for p in frame["part"]] if single else None
        fig.add_trace(go.Bar(x=frame["layer"], y=frame[stat], name=name, marker_color=colors,
                             customdata=np.stack([frame["part"], frame["level"]], axis=1),
                             hovertemplate="%{x}<br>%{customdata[0]} level %{customdata[1]}<br>"
                                           f"{STATS[stat]} " + "%{y:.4g}<extra>" + name + "</extra>"))
    fig.update_layout(barmode="group", height=360, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      yaxis_title=STATS[stat], xaxis_tickangle=-45, showlegend=not single,
                      legend={"orientation": "h", "y": 1.1})
    if stat in LOG_STATS:
        widgets.log_axis(fig, np.concatenate([f[stat].to_numpy(np.float64) for f in frames.values()]))
    return fig


def histogram_figure(counts: np.ndarray, edges: np.ndarray, layer: str) -> go.Figure:
    centers = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(go.Bar(x=centers, y=counts, width=np.diff(edges), marker_color="#2563eb",
                           hovertemplate="w ≈ %{x:.3g}: %{y} weights<extra></extra>"))
    fig.update_layout(height=300, margin={"l": 10, "r": 10, "t": 30, "b": 10}, xaxis_title=f"weights of {layer}",
                      yaxis_title="count", bargap=0)
    return fig


FACTORS = (100.0, 10.0, 3.0, 1.5)


def colour_span(colour: np.ndarray) -> float:
    """Symmetric log10 range of the colour scale: the largest change seen, at least x/÷1.5,
    at most x/÷100, so small drifts stay pale and a vanishing layer saturates."""
    finite = np.abs(colour[np.isfinite(colour)])
    return float(np.clip(finite.max() if finite.size else 0.0, np.log10(1.5), 2.0))


def std_heatmap(table: pd.DataFrame, epoch: int) -> go.Figure:
    colour = visual.relative_log10(table.to_numpy())
    span = colour_span(colour)
    ticks = [f for f in FACTORS if np.log10(f) <= span + 1e-9]
    tickvals = [-np.log10(f) for f in ticks] + [0.0] + [np.log10(f) for f in reversed(ticks)]
    ticktext = [f"÷{f:g}" for f in ticks] + ["same"] + [f"×{f:g}" for f in reversed(ticks)]
    fig = go.Figure(go.Heatmap(
        z=colour, x=[int(c) for c in table.columns], y=list(table.index), customdata=table.to_numpy(),
        colorscale="RdBu", zmid=0, zmin=-span, zmax=span, xgap=1, ygap=1,
        colorbar={"title": {"text": "std vs<br>first epoch"}, "tickvals": tickvals, "ticktext": ticktext},
        hovertemplate="%{y}<br>epoch %{x}<br>std %{customdata:.4g}<extra></extra>"))
    if epoch in table.columns:
        fig.add_vline(x=epoch, line={"color": "#111827", "width": 2, "dash": "dot"})
    fig.update_layout(height=max(320, 22 * len(table) + 80), margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      xaxis_title="epoch", yaxis={"autorange": "reversed"})
    widgets.epoch_axis(fig, table.columns)
    return fig


def gradient_figure(table: pd.DataFrame, stats: pd.DataFrame | None) -> go.Figure:
    parts = stats.set_index("layer")["part"] if stats is not None else pd.Series(dtype=object)
    fig = go.Figure()
    for layer, row in table.iterrows():
        part = parts.get(layer, "other")
        fig.add_trace(go.Scatter(x=list(table.columns), y=row.to_numpy(), mode="lines+markers", name=layer,
                                 legendgroup=part, line={"color": PART_COLORS.get(part, "#64748b"), "width": 1.5},
                                 marker={"size": 4},
                                 hovertemplate=f"{layer}<br>" + "epoch %{x}: %{y:.3g}<extra></extra>"))
    fig.update_layout(height=380, margin={"l": 10, "r": 10, "t": 30, "b": 10}, xaxis_title="epoch",
                      yaxis_title="mean gradient L2 norm", showlegend=False)
    widgets.log_axis(fig, table.to_numpy(np.float64))
    widgets.epoch_axis(fig, table.columns)
    return fig


# --------------------------------------------------------------------------- sections


def comparison_section(run: Run, epoch: int, other: Run, other_epoch: int) -> None:
    """core.diagnostics.compare_runs: std per layer side by side, per part, and both loss curves."""
    result = core.diagnostics.compare_runs(run, epoch, other, other_epoch)
    a, b = f"{run.name} @ {epoch}", f"{other.name} @ {other_epoch}"
    weights = result["weights"]
    fig = go.Figure()
    for column, name, color in (("std_a", a, "#2563eb"), ("std_b", b, "#c2410c")):
        fig.add_trace(go.Bar(x=weights["layer"], y=weights[column], name=name, marker_color=color,
                             customdata=weights["ratio"],
                             hovertemplate="%{x}<br>std %{y:.4g} (b/a %{customdata:.2f})<extra>" + name + "</extra>"))
    fig.update_layout(barmode="group", height=340, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      xaxis_tickangle=-45, yaxis_title="weight std", legend={"orientation": "h", "y": 1.12})
    widgets.log_axis(fig, weights[["std_a", "std_b"]].to_numpy(np.float64))
    st.plotly_chart(fig, config=widgets.PLOT_CONFIG, key="weights_compare_bars")
    left, right = st.columns([2, 3])
    left.dataframe(result["by_part"], hide_index=True, width="stretch",
                   column_config={c: st.column_config.NumberColumn(c, format="%.4g") for c in ("std_a", "std_b", "ratio")})
    losses = result["losses"]
    curves = go.Figure()
    for column, dash in (("train_loss", "dot"), ("val_loss", "solid")):
        for suffix, name, color in (("_a", a, "#2563eb"), ("_b", b, "#c2410c")):
            curves.add_trace(go.Scatter(x=losses["epoch"], y=losses[column + suffix], mode="lines",
                                        name=f"{column.replace('_', ' ')} {name}", line={"color": color, "dash": dash}))
    curves.update_layout(height=260, margin={"l": 10, "r": 10, "t": 10, "b": 10}, legend={"font": {"size": 10}})
    widgets.log_axis(curves, losses.drop(columns="epoch").to_numpy(np.float64))
    widgets.epoch_axis(curves, losses["epoch"])
    right.plotly_chart(curves, config=widgets.PLOT_CONFIG, key="weights_compare_losses")


def stats_section(run: Run, epoch: int) -> pd.DataFrame:
    stats = stats_of(run, epoch)
    c1, c2 = st.columns([1, 3])
    stat = c1.selectbox("Statistic", list(STATS), format_func=STATS.get, key="weights_stat", persist_state="session")
    frames = {f"{run.name} @ {epoch}": stats}
    c2.caption("Colours: " + " · ".join(f":{MD_COLORS[p]}[■] {p}" for p in PART_COLORS if p in set(stats["part"])))
    st.plotly_chart(stats_figure(frames, stat), config=widgets.PLOT_CONFIG, key="weights_stats")
    with st.expander("Table"):
        st.dataframe(stats, hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(c, format="%.4g") for c in STATS})
    return stats


def histogram_section(run: Run, epoch: int, stats: pd.DataFrame) -> None:
    layers = list(stats["layer"])
    layer = st.selectbox("Layer", layers, key="weights_layer", persist_state="session",
                         format_func=lambda n: f"{n}  ({stats.set_index('layer').loc[n, 'part']})")
    counts, edges = diagnostics().weight_histogram(run, epoch, layer)
    st.plotly_chart(histogram_figure(np.asarray(counts), np.asarray(edges), layer), config=widgets.PLOT_CONFIG,
                    key="weights_hist")


def std_table(run: Run) -> pd.DataFrame:
    """core's layer x epoch std table; damaged checkpoints are named and left out."""
    try:
        return _std_table(state.run_fingerprint(run), run, None)
    except Exception:
        good, bad = [], []
        for e in run.epochs():
            try:
                stats_of(run, e)
                good.append(e)
            except Exception as err:  # noqa: BLE001 - each damaged epoch is reported below
                bad.append(f"epoch {e}: {err}")
        for message in bad:
            st.error(message, icon=":material/error:")
        return _std_table(state.run_fingerprint(run), run, tuple(good))


def heatmap_section(run: Run, epoch: int) -> None:
    table = std_table(run)
    if table.empty:
        st.info("No epochs yet.")
        return
    st.caption("Colour: each layer's std against its own first epoch (red = shrinking, blue = growing). A row "
               "turning deep red is a layer whose weights are vanishing. Hover for the std itself.")
    st.plotly_chart(std_heatmap(table, epoch), config=widgets.PLOT_CONFIG, key="weights_heatmap")


def gradient_section(run: Run, epoch: int, stats: pd.DataFrame | None) -> None:
    table = gradients().gradient_table(run)
    if table.empty:
        st.info("This run logged no gradient norms.")
        return
    st.caption("Mean gradient norm per layer and epoch, as logged by training (colour = part of the U-Net).")
    st.plotly_chart(gradient_figure(table, stats), config=widgets.PLOT_CONFIG, key="weights_grads")
    vanishing = gradients().vanishing_gradients(table, epoch)
    if len(vanishing):
        st.warning(f"{len(vanishing)} layer(s) with vanishing gradients at epoch {epoch} "
                   "(below 1/1000 of their early norm):", icon=":material/warning:")
        st.dataframe(vanishing, hide_index=True, width="stretch")


def compare_picker(sel: state.Selection, run: Run) -> tuple[Run, int] | None:
    others = [r for r in sel.runs if r.path != run.path]
    if not others:
        st.caption("Only one run so far: train another (e.g. without skips) to compare.")
        return None
    c1, c2 = st.columns([2, 1])
    names = {str(r.path): r for r in others}
    choice = c1.selectbox("Second run", ["(none)", *names], key="weights_compare",
                          format_func=lambda p: p if p == "(none)" else names[p].name)
    if choice == "(none)":
        return None
    other = names[choice]
    epochs = other.epochs()
    if not epochs:
        c2.caption(f"{other.name} has no epochs yet.")
        return None
    epoch = c2.selectbox("its epoch", epochs, index=len(epochs) - 1, key=f"weights_compare_epoch::{choice}")
    return other, epoch


def main() -> None:
    sel = state.selection()
    widgets.page_header("Weights", sel, "which layers learn, which vanish")
    with widgets.guard("Weights"):
        run = sel.need_run()
        epoch = sel.need_epoch()
        st.subheader(f"Per-layer statistics at epoch {epoch}")
        stats = None
        with widgets.guard("Weight statistics"):
            stats = stats_section(run, epoch)
            st.subheader("Histogram of one layer")
            histogram_section(run, epoch, stats)
        st.subheader("Weight std, layer × epoch")
        with widgets.guard("Std heatmap"):
            heatmap_section(run, epoch)
        st.subheader("Gradient norms over training")
        with widgets.guard("Gradient timeline"):
            gradient_section(run, epoch, stats)
        st.subheader("Compare with another run")
        with widgets.guard("Run comparison"):
            compare = compare_picker(sel, run)
            if compare is not None:
                comparison_section(run, epoch, *compare)


main()
