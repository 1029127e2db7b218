"""Reusable pieces every page draws with: the error guard, pickers, image cards, pin control.

Nothing here computes a number that is shown; numbers come from core, pictures from
dashboard.visual, and these functions lay them out.
"""

from __future__ import annotations

import base64
import io
import json
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

import core.reports.export
import core.training.jobs
from core.diagnostics.choice import choose_epoch
from core.runs.folder import Run, RunError
from core.scoring.options import DEFAULT_METHOD_TEXT
from dashboard import data_notes, state, visual

STATE_ICONS = {"running": ":green[:material/play_circle:]", "starting": ":orange[:material/hourglass_top:]",
               "finished": ":gray[:material/check_circle:]", "stopped": ":orange[:material/pause_circle:]",
               "failed": ":red[:material/error:]", "empty": ":gray[:material/radio_button_unchecked:]"}
PLOT_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"]}
SELECT_PLOT_CONFIG = {"displaylogo": False}
MARK_LEGEND = ("★ pinned · ☆ chosen (by the rule named: suggested, lowest validation loss among healthy "
               "epochs, ...) · ✓ lowest validation loss, where it is not the chosen epoch · ⚠ health flag · "
               "✗ damaged file · ⇄ a checkpoint copied in from another run")


# --------------------------------------------------------------------------- errors


def _data_error_types() -> tuple[type[BaseException], ...]:
    from core.data.layouts import DatasetLayoutError

    return (DatasetLayoutError,)  # DataFolderMissing (core.scoring.data) is one of them


@contextmanager
def guard(what: str = "this view") -> Iterator[None]:
    """Turns what core raises into a message in the page; the rest of the page keeps working.

    NotReady -> info; RunError (bad run, epoch or checkpoint) -> error naming the file;
    dataset problems -> error pointing at the sidebar's data folder; anything else -> a short
    error plus the details in a collapsed expander (never a bare traceback).
    Streamlit's own control flow (st.rerun, st.stop) derives from BaseException and passes.
    """
    try:
        yield
    except state.NotReady as err:
        st.info(str(err), icon=":material/info:")
    except RunError as err:
        st.error(f"**{what}**: {err}", icon=":material/error:")
    except _data_error_types() as err:
        st.error(f"**{what}**: {err}", icon=":material/folder_off:")
        if not isinstance(err, state.DataFolderMissing):
            st.caption("Set the folder that holds the images under **Data folder** in the sidebar.")
    except MemoryError:
        st.error(f"**{what}**: out of memory; pick fewer images, points or categories.", icon=":material/error:")
    except Exception as err:  # the last line of defence: a message, with details on demand
        st.error(f"**{what}** could not be drawn: {type(err).__name__}: {_short(err)}", icon=":material/warning:")
        with st.expander("Details (for a bug report)"):
            st.code(traceback.format_exc(), language=None)


def _short(err: BaseException | str, limit: int = 300) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit] + "…"


# --------------------------------------------------------------------------- labels


def run_name(run: Run, root: Path | None = None) -> str:
    """The run's folder below its runs folder (per-category runs sit one level deeper)."""
    if root is not None:
        try:
            return run.path.relative_to(root).as_posix()
        except ValueError:
            return str(run.path)
    return run.name


def run_state_line(run: Run) -> str:
    """"🟢 training: epoch 3 saved" / "⚪ finished" / "🔴 failed: ..." for under the run picker."""
    status = run.status()
    job_state = str(status.get("state", "empty"))
    icon = STATE_ICONS.get(job_state, STATE_ICONS["empty"])
    words = {"running": "training", "starting": "starting"}.get(job_state, job_state)
    message = status.get("message") if job_state in ("running", "starting", "failed") else None
    return f"{icon} {words}" + (f": {_short(str(message), 80)}" if message and message != words else "")


def epoch_label(epoch: int, marks: dict[int, list[str]]) -> str:
    extra = marks.get(epoch) or []
    return " ".join([str(epoch), *extra])


def caption_for(name: str, score: float | None = None) -> str:
    """A sample name ("carpet/test/hole/003") shortened for a card caption."""
    parts = name.split("/")
    short = "/".join([parts[0], *parts[2:]]) if len(parts) >= 4 else name
    return short if score is None or not np.isfinite(score) else f"{short} · {score:.4g}"


def test_caption(test, index: int, score: float | None = None) -> str:
    """caption_for a test image, saying when its category was routed and how sure it was."""
    text = caption_for(test.samples[index].name, score)
    routed = getattr(test, "routed", None)
    if routed is not None and len(routed) > index and routed[index]:
        text += f" · routed ({float(test.routing_confidence[index]):.2f} sure)"
    return text


# --------------------------------------------------------------------------- images


def to_png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(visual.as_rgb_uint8(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def png_data_uri(image: np.ndarray) -> str:
    """For st.column_config.ImageColumn thumbnails inside a table."""
    return "data:image/png;base64," + base64.b64encode(to_png_bytes(image)).decode()


def image_cards(images: Sequence[np.ndarray], captions: Sequence[str], columns: int = 4,
                min_side: int = 96) -> None:
    """Pictures in a grid of st.columns, each with its caption; small images are upscaled
    (nearest) so their pixels stay sharp."""
    if not images:
        st.caption("Nothing to show.")
        return
    for start in range(0, len(images), columns):
        cols = st.columns(columns)
        for col, image, caption in zip(cols, images[start:start + columns],
                                       captions[start:start + columns], strict=False):
            col.image(visual.upscale(image, min_side), caption=caption, width="stretch")


# --------------------------------------------------------------------------- pickers


def pin_control(run: Run, epoch: int, key: str = "pin") -> None:
    """"Pin this epoch as best" with an optional reason; writes pinned.json in the run folder."""
    pinned = run.pinned() or {}
    if pinned.get("epoch") == epoch:
        st.caption(f"★ Epoch {epoch} is pinned" + (f": {pinned['reason']}" if pinned.get("reason") else ""))
    with st.popover(f"★ Pin epoch {epoch} as best", width="stretch"):
        reason = st.text_input("Why this epoch? (saved with the pin)", key=f"{key}_reason",
                               placeholder="sharp reconstructions, highest real AUROC…")
        if st.button("Pin", key=f"{key}_button", type="primary"):
            with guard("Pin"):
                record = run.pin(epoch, reason)
                st.toast(f"Pinned epoch {record['epoch']} of {run.name}", icon=":material/star:")
                st.rerun()


DEFAULT_CHOICE = f"default ({DEFAULT_METHOD_TEXT})"


def export_control(run: Run, epoch: int, data_folder: str, key: str = "export") -> None:
    """Export the epoch through core.reports.export (model.pt, config, card, submission.csv) and offer
    the files as downloads."""
    with st.popover(f"⇩ Export epoch {epoch}", width="stretch"):
        target = core.reports.export.unused_export_folder(run.path / "exports" / f"epoch_{epoch:03d}")
        st.caption(f"Writes to `{target}` (a new folder: earlier exports are kept)")
        known = state.known_diagnosis(run)
        chosen = choose_epoch(run, known)
        provisional = known is None and not run.is_training()
        if provisional:  # the rule's fallback until the diagnosis is known in this session
            st.caption("The chosen epoch and its score come from the run's diagnosis, not yet "
                       "computed in this session (the Overview computes it): Export diagnoses the "
                       "run first, as `python -m core export` does.")
        elif chosen.epoch == epoch:
            st.caption(f"This is the chosen {chosen.label}: {chosen.reason}")
        else:
            st.caption(f"Not the chosen epoch: that is {chosen.label}, {chosen.reason}")
        if chosen.caveat and chosen.epoch == epoch:
            st.warning(chosen.caveat, icon=":material/info:")
        default = DEFAULT_CHOICE if chosen.epoch != epoch or not chosen.method else chosen.method
        options = list(dict.fromkeys([default, DEFAULT_CHOICE] + _methods()))
        picked = st.selectbox("Score the submission with", options,  # a new choice shows its method
                              key=f"{key}_method_{chosen.rule}_{chosen.epoch}_{chosen.method}",
                              help="The chosen epoch comes with the method its suggestion picked.")
        method = None if picked == DEFAULT_CHOICE else picked  # None: core's default
        test_dir = st.text_input("Images for submission.csv (empty: no CSV)", value=data_folder, key=f"{key}_test",
                                 help="A folder of test images, or a dataset whose test split is scored.")
        reason = st.text_input("Why this epoch?", key=f"{key}_reason")
        if st.button("Export", key=f"{key}_button", type="primary"):
            if provisional:  # the choice `python -m core export` makes (export_epoch takes its method)
                with guard("Health check"), st.spinner("Diagnosing the run first, as `export` does…"):
                    chosen = choose_epoch(run, state.diagnosis(run, state.selection().data_root_if_any()))
                if state.picked_epoch(run) not in run.epochs() and chosen.epoch is not None:
                    epoch = chosen.epoch  # the picker follows the chosen epoch: export that one
                    target = core.reports.export.unused_export_folder(
                        run.path / "exports" / f"epoch_{epoch:03d}")
            exported = False
            with guard("Export"), st.spinner("Exporting…"):
                written = core.reports.export.export_epoch(run, epoch, target, test_dir=test_dir.strip() or None,
                                                   method=method, reason=reason, choice=chosen)
                st.session_state[f"{key}_written"] = (str(run.path), epoch, {k: str(v) for k, v in written.items()})
                exported = True
            if provisional and exported:  # the sidebar's marks now know the choice
                st.toast(f"Exported {chosen.label if chosen.epoch == epoch else f'epoch {epoch}'} "
                         f"to {target}", icon=":material/download:")
                st.rerun()
        where, done_epoch, written = st.session_state.get(f"{key}_written") or ("", None, {})
        if where != str(run.path) or done_epoch != epoch:
            return
        _health_warnings(written.get("card"))
        for kind, path in written.items():
            file = Path(path)
            if file.is_file():
                st.download_button(file.name, data=file.read_bytes, file_name=file.name, key=f"{key}_dl_{kind}",
                                   icon=":material/download:", width="stretch", on_click="ignore")


def _health_warnings(card_path: str | None) -> None:
    """The exported epoch's health flags, from its card (core.reports.export.epoch_flags)."""
    if not card_path:
        return
    try:
        health = json.loads(Path(card_path).read_text()).get("health") or {}
    except (OSError, ValueError):
        return
    for flag in health.get("flags", []):
        st.warning(f"This epoch is flagged **{flag['name']}**: {flag['sentence']}")
    if health.get("warning"):
        st.error(health["warning"])


def _methods() -> list[str]:
    try:
        return state.scoring_methods()
    except state.NotReady:
        return ["pixel"]


def method_picker(label: str, methods: Sequence[str], key: str, default: str | None = None,
                  help: str | None = None) -> str:
    options = list(methods)
    if not options:
        raise state.NotReady("No scoring methods are available.")
    index = options.index(default) if default in options else 0
    return st.selectbox(label, options, index=index, key=key, help=help)


KEY_TITLE = "rs_title_drawn"  # the page title app.py drew in this rerun, before the sidebar


def early_title(title: str) -> None:
    """The page's h1, drawn by app.py before the sidebar (whose run picker, epoch marks and
    storage plan take seconds while a run trains), so no page waits blank for them; the page's
    own page_title then draws nothing."""
    st.title(title)
    st.session_state[KEY_TITLE] = title


def page_title(title: str) -> None:
    """The page's h1, unless app.py already drew it in this rerun (early_title)."""
    if st.session_state.pop(KEY_TITLE, None) != title:
        st.title(title)


def page_header(title: str, sel: state.Selection, what: str = "") -> None:
    run = sel.run
    page_title(title)
    if run is None:
        return
    bits = [f"run **{run.name}**"]
    if sel.epoch is not None:
        bits.append(f"epoch **{sel.epoch}**")
        marks = sel.marks.get(sel.epoch) or []
        if marks:
            bits.append(" ".join(marks))
    status = run.status()
    if status.get("state") in ("running", "starting"):
        bits.append(f"{STATE_ICONS['running']} training ({status.get('message', '')})")
    st.caption(" · ".join(bits) + (f" — {what}" if what else ""))
    data_notes.reserve_slot()


# --------------------------------------------------------------------------- job panel
# A polling fragment (st.fragment(run_every=...)) reads core.training.jobs.job_progress every few seconds
# while the job runs; when a new epoch is saved it reruns the whole app, so the sidebar's epoch
# picker and every page see it. The job is a separate process (core.training.jobs): a page reload or a
# dashboard restart never stops it.

POLL_SECONDS = 2.0


def _eta(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or seconds != seconds:
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds < 3600 else f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _number(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and value == value else "–"


def progress_body(run: Run, known_epochs: tuple[int, ...], show_log: bool) -> dict[str, Any]:
    jobs = core.training.jobs
    progress = jobs.job_progress(run)
    job_state = str(progress.get("state", "empty"))
    epochs_done = list(progress.get("finished_epochs") or [])
    total = progress.get("epochs") or "?"
    icon = STATE_ICONS.get(job_state, STATE_ICONS["empty"])
    st.markdown(f"{icon} **{job_state}** · run `{run.name}` · pid {progress.get('pid') or '–'} · "
                f"device {progress.get('device') or '–'}")
    fraction = float(progress.get("fraction") or 0.0)
    batch, batches = progress.get("batch"), progress.get("batches")
    within = f", batch {batch}/{batches}" if batch and batches and job_state in ("running", "starting") else ""
    st.progress(min(1.0, max(0.0, fraction)), text=f"epoch {len(epochs_done)}/{total}{within}")
    last = progress.get("last_metrics") or {}
    c = st.columns(4)
    c[0].metric("last epoch", last.get("epoch", "–"))
    c[1].metric("train loss", _number(last.get("train_loss")))
    c[2].metric("validation loss", _number(last.get("val_loss")))
    c[3].metric("ETA", _eta(progress.get("eta_s")) if job_state in ("running", "starting") else "–")
    message = progress.get("message")
    if job_state == "failed":
        st.error(f"The job failed: {message or 'see the log below'}. Fix the cause (the log's last lines say "
                 "what happened) and resume, or start a new run.", icon=":material/error:")
    elif message and message != job_state:
        st.caption(str(message))
    if show_log:
        tail = jobs.log_tail(run, lines=40)
        empty = "(the log is empty so far)" if job_state in ("running", "starting") else "(no train.log in this run)"
        st.code(tail or empty, language=None, height=260)
    if tuple(epochs_done) != tuple(known_epochs) and epochs_done:
        st.rerun(scope="app")  # a new epoch: let the sidebar and the pages see it
    return progress


def live_panel(run: Run, show_log: bool = True) -> dict[str, Any]:
    """Progress, metrics, ETA and the log tail; polls while the job is active."""
    polling = run.is_training()
    known = tuple(run.epochs())

    def body() -> None:
        with guard("Job progress"):
            st.session_state["rs_last_progress"] = progress_body(run, known, show_log)
            if polling and not run.is_training():
                st.rerun(scope="app")  # the job ended: redraw the buttons

    st.fragment(body, run_every=POLL_SECONDS if polling else None)()
    return st.session_state.get("rs_last_progress") or {}


def wait_until_started(run: Run, timeout: float = 30.0) -> None:
    """Waits (with a spinner) until the new job has written the run's config.json: only then is
    the folder listed as a run, so the sidebar can select it on the next rerun."""
    deadline = time.time() + timeout
    with st.spinner("Starting the training process…"):
        while time.time() < deadline:
            if (run.path / "config.json").is_file() or run.status().get("state") in ("failed", "finished", "stopped"):
                return
            time.sleep(0.2)


# --------------------------------------------------------------------------- chart axes
# Plotly's own ticks on an epoch axis of a few epochs fall on halves (0.5, 1.5 ...), and on a
# log axis it labels minor ticks with bare digits ("6 5 4 3 2 0.1"); these set readable ones.

MAX_EPOCH_TICKS = 30
LOG_STEPS = ((1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0), (1.0,))


def epoch_axis(fig, epochs, **selector) -> None:
    """Whole-epoch ticks on x: every epoch up to 30 of them, else integer steps."""
    epochs = sorted({int(e) for e in epochs})
    if 0 < len(epochs) <= MAX_EPOCH_TICKS:
        fig.update_xaxes(tickmode="array", tickvals=epochs, ticktext=[str(e) for e in epochs], **selector)
    else:
        fig.update_xaxes(tickformat="d", **selector)


def log_ticks(values) -> tuple[list[float], list[str]]:
    """Tick values and full-number labels (0.02, 0.05, 0.1 ...) for a log axis over `values`:
    1-2-5 steps per decade, finer when the values span under half a decade, powers of ten only
    over more than four decades. Empty when no value is positive and finite."""
    values = np.asarray(values, np.float64).ravel()
    values = values[np.isfinite(values) & (values > 0)]
    if not values.size:
        return [], []
    low, high = float(values.min()), float(values.max())
    span = np.log10(high / low)
    steps = LOG_STEPS[1] if span < 0.5 else LOG_STEPS[2] if span > 4 else LOG_STEPS[0]
    decades = range(int(np.floor(np.log10(low))) - 1, int(np.ceil(np.log10(high))) + 1)
    candidates = sorted(float(f"{m * 10.0 ** k:.6g}") for k in decades for m in steps)
    inside = [t for t in candidates if low <= t <= high]
    below = [t for t in candidates if t < low][-1:]
    above = [t for t in candidates if t > high][:1]
    ticks = below + inside + above if len(inside) < 2 else inside
    return ticks, [f"{t:g}" for t in ticks]


def log_axis(fig, values, **selector) -> None:
    """A log y axis over `values` with log_ticks' labels."""
    ticks, text = log_ticks(values)
    if ticks:
        fig.update_yaxes(type="log", tickmode="array", tickvals=ticks, ticktext=text, **selector)
    else:
        fig.update_yaxes(type="log", **selector)


# --------------------------------------------------------------------------- wide tables
# A table wider than the page scrolls sideways inside its frame, which looks cut off on the
# right. These keep the row's name in view while scrolling, and numbers and labels narrow so
# that most tables fit at 1280 px.


def column_label(name: str) -> str:
    """A short header: "synthetic_auroc_pixel" -> "synth. pixel", "real_auroc_knn" -> "real knn",
    "val_loss" -> "val loss"."""
    text = str(name).replace("synthetic_auroc_", "synth. ").replace("real_auroc_", "real ")
    return text.replace("_auroc_", " ").replace("auroc_", "").replace("_", " ")


def compact_columns(table, pinned: Sequence[str] | None = None, digits: int = 3,
                    relabel: bool = True) -> dict[str, Any]:
    """`column_config` for st.dataframe: the `pinned` columns (None: the first one) stay in view
    while the table scrolls sideways (Streamlit pins a shown index itself); numbers show `digits`
    decimals in a narrow column; headers are short (column_label; relabel=False keeps names
    such as run names as they are), the full name their tooltip."""
    config: dict[str, Any] = {}
    if pinned is None:
        pinned = [str(table.columns[0])] if len(table.columns) else []
    for column in table.columns:
        name, kind = str(column), getattr(table[column], "dtype", None)
        label = column_label(name) if relabel else name
        options = {"help": name if label != name else None, "pinned": True if name in pinned else None}
        if kind is not None and kind.kind in "fiu":
            number = f"%.{digits}f" if kind.kind == "f" else "%d"
            longest = max([len(number % v) for v in table[column].dropna()] or [4])
            config[name] = st.column_config.NumberColumn(label, format=number, width=_text_px(max(longest, len(label))),
                                                         **options)
        else:
            config[name] = st.column_config.Column(label, **options)
    return config


def _text_px(chars: int) -> int:
    """Pixels a column of `chars` characters needs in st.dataframe's 14 px font, with padding."""
    return int(min(160, max(48, 16 + 7 * chars)))


def wide_table(table, key: str | None = None, digits: int = 3, relabel: bool = True, **kwargs) -> Any:
    """st.dataframe over the page's width with compact_columns (a caller's column_config wins);
    the first column is pinned when the index is hidden, else the index is."""
    pinned = None if kwargs.get("hide_index") else []
    config = compact_columns(table, pinned, digits, relabel) | (kwargs.pop("column_config", None) or {})
    return st.dataframe(table, key=key, width="stretch", column_config=config, **kwargs)
