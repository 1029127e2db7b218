"""Overview: per-epoch curves, the epoch x metric table and which epoch to pick, and why."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

import core.evaluation.evaluate
from core.diagnostics.choice import PINNED, SUGGESTED, choose_epoch
from core.runs.folder import Run, RunError
from core.training.follow import OVERVIEW_METHODS
from dashboard import state, widgets

CURVES_KEY = "overview_curves"
KEY_HEALTH_NOW = "overview_health_now_runs"  # runs whose health the user asked for while training
DEFAULT_METHODS = OVERVIEW_METHODS  # what training's follower scores as each epoch lands
COLORS = {"train_loss": "#64748b", "val_loss": "#c2410c", "pixel": "#2563eb", "ssim": "#059669",
          "feature": "#9333ea", "knn": "#d97706", "rawknn": "#78716c", "seg": "#db2777",
          "patchz": "#a8a29e", "ssimz": "#0d9488",
          "finepatch": "#7c3aed", "adaptive": "#b45309"}


# --------------------------------------------------------------------------- data


def real_evaluations(run: Run, epochs: list[int], data_root, methods: tuple[str, ...],
                     cached_only: bool = False
                     ) -> tuple[list[core.evaluation.evaluate.EpochEvaluation], dict[int, str], list[int]]:
    """evaluate_epoch for every epoch (cached on disk and in memory): (evaluations, failed
    epochs with why, epochs left to compute). cached_only: what the cache holds, at once;
    else every epoch is computed, with a progress bar. A damaged epoch is reported and
    skipped, the others still count."""
    evaluations, failed, missing = [], {}, []
    bar = None
    if not cached_only and len(epochs) > 1:
        bar = st.progress(0.0, text="Scoring the test set for every epoch…")
    for i, epoch in enumerate(epochs):
        try:
            found = state.image_aurocs(run, epoch, data_root, methods, cached_only=cached_only)
        except RunError as err:
            failed[epoch] = str(err)
            continue
        if found is None:
            missing.append(epoch)
        else:
            evaluations.append(found)
        if bar is not None:
            bar.progress((i + 1) / len(epochs), text=f"Scored epoch {epoch} ({i + 1}/{len(epochs)})")
    if bar is not None:
        bar.empty()
    return evaluations, failed, missing


def fill_in(run: Run, missing: list[int], data_root, methods: tuple[str, ...], slot) -> None:
    """Scores the epochs the cache lacked, one by one under a progress bar in `slot` (the page
    above it is already drawn from the cache), then redraws the page with them."""
    bar = slot.progress(0.0, text=f"Scoring {len(missing)} epoch(s) not evaluated yet…")
    for i, epoch in enumerate(missing):
        try:
            state.image_aurocs(run, epoch, data_root, methods)
        except RunError:
            pass  # reported by the next draw
        bar.progress((i + 1) / len(missing),
                     text=f"Scored epoch {epoch} ({i + 1}/{len(missing)}); the table updates next")
    st.rerun()


def epoch_table(run: Run, epochs: list[int], evaluations: list[core.evaluation.evaluate.EpochEvaluation]
                ) -> pd.DataFrame:
    """core.evaluation.evaluate.run_table; epochs without a real evaluation keep their logged numbers."""
    evaluate = core.evaluation.evaluate
    if not evaluations and not epochs:
        return pd.DataFrame()
    table = evaluate.run_table(run, evaluations, epochs)
    return table.sort_values("epoch")


# --------------------------------------------------------------------------- drawing


def _on_curve_click(run: Run) -> None:
    points = ((st.session_state.get(CURVES_KEY) or {}).get("selection") or {}).get("points") or []
    epochs = run.epochs()
    for point in points:
        epoch = int(round(float(point.get("x", -1))))
        if epoch in epochs:
            state.go_to_epoch(run, epoch)
            return


def _wrap(text: str, width: int = 70) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) > width:
            lines.append(line)
            line = ""
        line = f"{line} {word}".strip()
    return "<br>".join([*lines, line])


def curves_figure(table: pd.DataFrame, health: dict[int, dict[str, Any]], epoch: int | None,
                  pinned: int | None) -> go.Figure:
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=("Loss (log scale)", "AUROC: synthetic (dashed) and real test (solid)"))
    x = table["epoch"]
    for column, name in (("train_loss", "train loss"), ("val_loss", "validation loss")):
        if column in table and table[column].notna().any():
            fig.add_trace(go.Scatter(x=x, y=table[column], name=name, mode="lines+markers",
                                     line={"color": COLORS[column]}), row=1, col=1)
    for column in (c for c in table.columns if c.startswith("loss_") and table[c].notna().any()):
        fig.add_trace(go.Scatter(x=x, y=table[column], name=f"term {column.removeprefix('loss_')}",
                                 mode="lines", line={"dash": "dot", "width": 1}), row=1, col=1)
    for column in table.columns:
        for prefix, dash in (("synthetic_auroc_", "dash"), ("real_auroc_", "solid")):
            if column.startswith(prefix) and table[column].notna().any():
                method = column.removeprefix(prefix)
                kind = "synthetic" if dash == "dash" else "real"
                fig.add_trace(go.Scatter(x=x, y=table[column], name=f"{kind} {method}", mode="lines+markers",
                                         line={"color": COLORS.get(method, "#334155"), "dash": dash}),
                              row=2, col=1)
    _add_health_markers(fig, table, health)
    fig.add_hline(y=0.5, line={"color": "#94a3b8", "dash": "dot", "width": 1}, row=2, col=1)
    if epoch is not None:
        fig.add_vline(x=epoch, line={"color": "#c2410c", "width": 2, "dash": "dot"})
    if pinned is not None and pinned in set(x):
        fig.add_vline(x=pinned, line={"color": "#eab308", "width": 2})
        fig.add_annotation(x=pinned, y=1.0, yref="paper", text="★ pinned", showarrow=False,
                           font={"color": "#a16207"}, yanchor="bottom")
    losses = [c for c in table.columns if c in ("train_loss", "val_loss") or c.startswith("loss_")]
    widgets.log_axis(fig, table[losses].to_numpy(float), row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], row=2, col=1)
    fig.update_xaxes(title_text="epoch", row=2, col=1)
    widgets.epoch_axis(fig, x)
    # "closest": one small box at the point under the mouse ("x unified" covered the chart)
    fig.update_layout(height=520, margin={"l": 10, "r": 10, "t": 40, "b": 10}, hovermode="closest",
                      legend={"orientation": "h", "y": -0.12}, clickmode="event+select")
    return fig


def _add_health_markers(fig: go.Figure, table: pd.DataFrame, health: dict[int, dict[str, Any]]) -> None:
    """Red crosses at epochs with an error flag, amber triangles at epochs with only warnings,
    on the train-loss curve; hovering names the flags."""
    loss = table.set_index("epoch")["train_loss"] if "train_loss" in table else pd.Series(dtype=float)
    kinds = (("errors", "health error", "x", "#dc2626"), ("warnings", "health warning", "triangle-up", "#d97706"))
    for field, name, symbol, color in kinds:
        epochs = [e for e, entry in sorted(health.items()) if entry.get(field)
                  and (field == "errors" or not entry.get("errors"))]
        if not epochs:
            continue
        text = ["<br>".join(f"{n}: {_wrap(sentence)}" for n, _, sentence in state.flag_sentences(health[e]))
                or ", ".join(health[e].get(field)) for e in epochs]
        fig.add_trace(go.Scatter(x=epochs, y=[loss.get(e) for e in epochs], mode="markers", name=name,
                                 marker={"symbol": symbol, "size": 12, "color": color, "line": {"width": 1}},
                                 text=text, hovertemplate="%{text}<extra></extra>"), row=1, col=1)


def draw_suggestions(run: Run, choices: dict[str, Any], diag, epoch: int | None) -> None:
    """The chosen epoch (core.diagnostics.choice: the rule every page, the CLI and export use)
    with its rule and reasons, and what every other criterion would pick."""
    left, right = st.container(), st.container()  # one above the other: the table is wide
    choice = choose_epoch(run, diag)
    with left.container(border=True):
        if choice.epoch is not None:
            method = f" with **{choice.method}**" if choice.method else ""
            st.markdown(f"**Chosen: epoch {choice.epoch}**{method} · {choice.rule}")
            st.caption("The same epoch the sidebar marks ☆, Compare uses and `export --epoch chosen` writes. "
                       "The suggestion reads no test labels and never uses a method a health flag rules "
                       "out at that epoch.")
            reasons = diag.suggestion.reasons if choice.rule == SUGGESTED and diag else [choice.reason]
            for reason in reasons or [choice.reason]:
                st.markdown(f"- {reason}")
            if choice.caveat:
                st.warning(choice.caveat, icon=":material/info:")
            if choice.differs_from_best:
                st.caption(choice.differs_from_best)
            own = per_method_choices(run, diag, choice)
            if own:
                st.caption("Scoring with one other method? Its own epoch in the same ranking "
                           "(`evaluate` / `score --epoch chosen --method M`): " + " · ".join(own))
            epoch_buttons(run, choice.epoch, epoch, "suggested", f"{choice.label}: {choice.reason}")
        else:
            st.markdown("**No epoch yet**")
            st.caption(choice.reason)
    with right:
        rows = [{"criterion": name, "epoch": int(pick["epoch"]),
                 **{k.removeprefix("auroc_"): v for k, v in pick.items() if k != "epoch"}}
                for name, pick in choices.items()]
        if not rows:
            st.caption("No criterion can pick an epoch yet (no validation loss logged).")
            return
        st.markdown("**What each other criterion alone would pick**, and each method's real AUROC "
                    "there (oracle = uses test labels; select a row)")
        table = pd.DataFrame(rows)
        event = widgets.wide_table(table, hide_index=True, on_select="rerun", selection_mode="single-row",
                                   key="overview_choices")
        chosen = (event.selection.rows or [0])[0] if event is not None else 0
        row = rows[min(chosen, len(rows) - 1)]
        st.caption(f"Row: {row['criterion']}")
        epoch_buttons(run, row["epoch"], epoch, "criterion", f"{row['criterion']}")


def per_method_choices(run: Run, diag, choice) -> list[str]:
    """'ssimz: epoch 39' for each ranked method whose own choice (core.diagnostics.choice, the
    rule `--epoch chosen --method M` follows) is another epoch than the run's."""
    if diag is None or diag.ranking is None or choice.rule == PINNED:
        return []
    out = []
    for method in diag.ranking.methods:
        own = choose_epoch(run, diag, method)
        if own.epoch is not None and own.epoch != choice.epoch:
            out.append(f"{method}: epoch {own.epoch}")
    return out


def draw_agreement(ranking) -> None:
    """Each label-free criterion's Spearman rank correlation with real AUROC across epochs."""
    if ranking is None:
        return
    st.markdown("**Label-free criteria against real AUROC** (Spearman rank correlation across epochs; "
                "1 = picks epochs exactly as real AUROC would)")
    if not ranking.labelled:
        st.caption("The test set has no labels: agreement cannot be measured on this run; the suggestion "
                   "uses the order measured on labelled benchmark runs (docs/diagnosis.md).")
        return
    table = pd.DataFrame(ranking.agreement_table()).T.rename_axis("criterion").reset_index()
    for method in ranking.methods:  # "–" where a criterion says nothing about a method
        table[method] = [f"{v:+.2f}" if isinstance(v, (int, float)) and pd.notna(v) else "–"
                         for v in table[method]]
    widgets.wide_table(table, hide_index=True)
    st.caption("–: not measurable for that method (no synthetic AUROC is logged for knn, "
               "restoration concerns reconstruction methods), or fewer epochs than it needs.")
    for gap in ranking.gaps[:5]:
        st.caption(f"synthetic gap at epoch {gap.epoch}: {gap.sentence}")


def epoch_buttons(run: Run, pick: int, epoch: int | None, key: str, reason: str) -> None:
    left, right = st.columns(2)
    left.button(f"Show epoch {pick}", key=f"show_{key}", on_click=state.go_to_epoch, args=(run, pick),
                disabled=pick == epoch, width="stretch")
    if right.button(f"★ Pin epoch {pick}", key=f"pin_{key}", width="stretch"):
        run.pin(pick, reason)
        st.toast(f"Pinned epoch {pick}", icon=":material/star:")
        st.rerun()


def draw_table(table: pd.DataFrame, marks: dict[int, list[str]], health: dict[int, dict[str, Any]]) -> None:
    shown = table.copy()
    shown.insert(1, "marks", [" ".join(marks.get(int(e), [])) for e in shown["epoch"]])
    if health:
        shown["health"] = [_flag_names(health.get(int(e), {})) for e in shown["epoch"]]
    config = {"epoch": st.column_config.NumberColumn("epoch", format="%d", pinned=True),
              "marks": st.column_config.TextColumn("marks", width="medium"),
              "health": st.column_config.TextColumn("health flags", width="medium")}
    for column in shown.columns:
        if "loss" in column:
            config[column] = st.column_config.NumberColumn(column.replace("_", " "), format="%.4f")
        elif "auroc" in column:
            config[column] = st.column_config.ProgressColumn(
                column.replace("_auroc_", " AUROC ").replace("_", " "), format="%.3f", min_value=0.0, max_value=1.0)
    st.dataframe(shown, hide_index=True, column_config=config, width="stretch")


def _flag_names(entry: dict[str, Any]) -> str:
    return ", ".join(str(n) for n in entry.get("flags") or []) or "ok"


# --------------------------------------------------------------------------- page


def diagnosis_for(run: Run, sel: state.Selection):
    """Health of every epoch from core.diagnostics (cached); None when it cannot be computed."""
    known = state.known_diagnosis(run)
    if known is not None:
        return known
    asked = st.session_state.setdefault(KEY_HEALTH_NOW, set())
    if run.is_training() and str(run.path) not in asked:
        # the page draws at once from what is cached; the health of every epoch (minutes on a
        # CPU shared with training) runs when training ends, or now if the user asks
        earlier = state.known_diagnosis(run, stale_ok=True)
        left, right = st.columns([3, 1])
        left.caption("While the run trains, the health checks and the suggested epoch "
                     + ("are those of an earlier epoch; they are " if earlier else "are ")
                     + "computed when training ends (the background evaluator caches each epoch's).")
        right.button("Check health now", key="overview_health_now", icon=":material/health_and_safety:",
                     on_click=asked.add, args=(str(run.path),))
        return earlier
    failed = st.session_state.setdefault("rs_diagnosis_failed", {})
    stamp = state.run_fingerprint(run)
    if failed.get(str(run.path)) == stamp:
        return None  # failed for this very state of the run: do not retry on every rerun
    done = False
    with widgets.guard("Health check"), st.spinner("Checking the health of every epoch…"):
        result = state.diagnosis(run, sel.data_root_if_any())
        done = True
    if done and not run.is_training():
        st.rerun()  # the sidebar's epoch marks now know the health of each epoch
    if done:  # while it trains a rerun could find a newer epoch and diagnose again, forever
        return result
    failed[str(run.path)] = stamp
    return None


def real_auroc_controls(methods: list[str]) -> tuple[bool, tuple[str, ...]]:
    left, right = st.columns([1, 3])
    on = left.toggle("Real test AUROC", value=True, key="overview_real",
                     help="Scores the test set with every epoch (once; results are cached on disk).")
    defaults = [m for m in DEFAULT_METHODS if m in methods]
    chosen = right.multiselect("Methods", methods, default=defaults, key="overview_methods",
                               disabled=not on, label_visibility="collapsed",
                               help="knn and rawknn build a memory bank per epoch: slower.")
    return on, tuple(chosen)


def main() -> None:
    sel = state.selection()
    widgets.page_header("Overview", sel, "how every epoch did, and which one to pick")
    with widgets.guard("Overview"):
        run = sel.need_run()
        epochs = list(sel.epochs)
        if not epochs:
            sel.need_epoch()
        diag = diagnosis_for(run, sel)
        health = state.health_by_epoch(diag)
        on, methods = real_auroc_controls(state.scoring_methods())
        evaluations, failed, missing = [], {}, []
        progress_slot = st.empty()  # where epochs not cached yet are scored, after the draw
        if on and methods:
            with widgets.guard("Real AUROC"):
                test = state.test_set(run, sel.data_root())
                if test.has_labels:
                    evaluations, failed, missing = real_evaluations(
                        run, epochs, sel.data_root(), methods, cached_only=True)
                else:
                    st.info(f"Real AUROC needs labels: {test.summary()}. Validation loss, "
                            "synthetic AUROC and the health checks below need none; a CSV with "
                            "file and label columns beside test/ adds real AUROC.")
        for epoch, message in failed.items():
            st.error(f"Epoch {epoch} left out: {message}", icon=":material/error:")
        table = epoch_table(run, epochs, evaluations)
        pinned = (run.pinned() or {}).get("epoch")
        st.plotly_chart(curves_figure(table, health, sel.epoch, pinned), key=CURVES_KEY,
                        on_select=lambda: _on_curve_click(run), selection_mode=("points",),
                        config=widgets.PLOT_CONFIG)
        st.caption("Click a point to open that epoch in every page.")
        st.subheader("Which epoch?")
        choices = core.evaluation.evaluate.criterion_picks(table) if len(table) else {}
        draw_suggestions(run, choices, diag, sel.epoch)
        draw_agreement(state.ranking_of(diag))
        st.subheader("Epoch × metric")
        draw_table(table, sel.marks, health)
        if missing:
            fill_in(run, missing, sel.data_root(), methods, progress_slot)


main()
