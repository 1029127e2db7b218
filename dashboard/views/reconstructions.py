"""Reconstructions: input | reconstruction | error heatmap for the chosen epoch, a before/after
wipe for one image, one image across every epoch, and two epochs side by side."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from core.runs.folder import Run, RunError
from dashboard import state, visual, widgets

SORTS = ("mixed: every category and defect", "dataset order", "most anomalous first", "least anomalous first")
VIEWS = ("Grid", "Before / after", "Across epochs", "Two epochs")
MAX_STRIP = 12


@dataclass(frozen=True)
class Options:
    method: str
    opacity: float
    outline: bool
    shared_scale: bool
    columns: int


@dataclass
class Shown:
    """What the grid shows: test-set indices with their reconstructions, maps and scores."""

    indices: list[int]
    recon: np.ndarray
    maps: np.ndarray
    scores: np.ndarray


# --------------------------------------------------------------------------- picking


def filter_indices(test, categories: list[str], kinds: list[str]) -> list[int]:
    return [i for i, s in enumerate(test.samples)
            if (not categories or s.category in categories) and (not kinds or (s.defect or "unlabeled") in kinds)]


def filters(test) -> tuple[list[int], str, int, int]:
    """Category and normal/defect filters, sort order and paging -> candidate indices."""
    cats = sorted({s.category for s in test.samples})
    c1, c2, c3, c4 = st.columns([2, 2, 1.4, 1])
    chosen_cats = c1.multiselect("Categories", cats, key="rec_categories", placeholder="all categories",
                                 persist_state="session")
    kinds = sorted({s.defect or "unlabeled" for s in test.samples if not chosen_cats or s.category in chosen_cats},
                   key=lambda k: (k != "good", k))
    chosen_kinds = c2.multiselect("Normal / defect type", kinds, key="rec_kinds", placeholder="normal and every defect",
                                  format_func=lambda k: "normal (good)" if k == "good" else k, persist_state="session")
    sort = c3.selectbox("Order", SORTS, key="rec_sort", persist_state="session",
                        help="Sorting by score scores the whole test set once (cached on disk).")
    per_page = c4.selectbox("Images", (8, 16, 32), index=1, key="rec_per_page", persist_state="session")
    return filter_indices(test, chosen_cats, [k for k in chosen_kinds if k in kinds]), sort, per_page, len(test)


def view_options(methods: list[str]) -> Options:
    c1, c2, c3, c4, c5 = st.columns([1.2, 1.6, 1.4, 1.6, 1.2])
    with c1:
        method = widgets.method_picker("Heatmap / score", methods, key="rec_method",
                                       help="The scoring method whose per-pixel map is drawn and whose score is shown.")
    opacity = c2.slider("Heatmap opacity", 0.0, 1.0, 0.55, 0.05, key="rec_opacity", persist_state="session")
    outline = c3.toggle("Defect outline", value=True, key="rec_outline", persist_state="session",
                        help="Ground-truth mask drawn in green on the input.")
    shared = c4.toggle("Shared colour scale", value=True, key="rec_shared", persist_state="session",
                       help="One colour range for every image shown (compare images by eye); off: per image.")
    columns = c5.select_slider("Cards per row", (1, 2, 3, 4), value=3, key="rec_columns", persist_state="session")
    return Options(method, opacity, outline, shared, columns)


def order_and_page(run: Run, epoch: int, data_root, candidates: list[int], sort: str, per_page: int,
                   method: str) -> tuple[list[int], np.ndarray | None]:
    """Candidates in the chosen order, cut to one page; full-set scores when sorting by them."""
    full = None
    if sort == SORTS[0]:
        candidates = interleaved(state.test_set(run, data_root), candidates)
    elif sort != SORTS[1] and candidates:
        with st.spinner("Scoring the whole test set for sorting (once per epoch and method)…"):
            result = state.scores(run, epoch, data_root, method)
            full = state.align(result, state.test_set(run, data_root))
        values = full[candidates]
        order = np.argsort(-values if sort == SORTS[2] else values, kind="stable")  # NaN (unscored) last
        candidates = [candidates[i] for i in order]
    pages = max(1, -(-len(candidates) // per_page))
    page = 1
    if pages > 1:
        page = st.columns([1, 5])[0].selectbox(f"Page (of {pages})", range(1, pages + 1), key="rec_page")
    start = (int(page) - 1) * per_page
    return candidates[start:start + per_page], full


def interleaved(test, candidates: list[int]) -> list[int]:
    """Round robin over (category, defect) groups, so the first page shows every kind of image."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i in candidates:
        sample = test.samples[i]
        groups.setdefault((sample.category, sample.defect), []).append(i)
    queues = [groups[k] for k in sorted(groups)]
    out = []
    for depth in range(max((len(q) for q in queues), default=0)):
        out += [q[depth] for q in queues if depth < len(q)]
    return out


def health_notes(run: Run, epoch: int) -> None:
    """This epoch's health flags, when the run's diagnosis is known (Overview computes it)."""
    entry = state.health_by_epoch(state.known_diagnosis(run)).get(epoch)
    if not entry:
        return
    for name, severity, sentence in state.flag_sentences(entry):
        # st.warning for both severities: st.error is kept for what failed to load or draw
        label = "health problem" if severity == "error" else "health warning"
        st.warning(f"**{name.replace('_', ' ')}** ({label}) — {sentence}", icon=":material/stethoscope:")


def shown_for(run: Run, epoch: int, data_root, indices: list[int], method: str) -> Shown:
    recon = state.reconstructions(run, epoch, data_root, indices)
    scores, maps = state.subset_maps(run, epoch, data_root, indices, method)
    return Shown(list(indices), recon, maps, scores)


# --------------------------------------------------------------------------- drawing


def colour_range(maps: np.ndarray, opts: Options) -> tuple[float | None, float | None]:
    if not opts.shared_scale or len(maps) == 0:
        return None, None
    return visual.display_range(maps)


def triplet(test, index: int, recon: np.ndarray, error_map: np.ndarray, opts: Options,
            low: float | None, high: float | None) -> np.ndarray:
    image = test.images[index]
    shown_input = visual.draw_outline(image, test.masks[index]) if opts.outline and test.has_mask[index] else image
    heat = visual.overlay_heatmap(image, error_map, opts.opacity, low, high)
    return visual.image_row([shown_input, recon, heat], gap=max(1, image.shape[0] // 32))


def draw_grid(test, shown: Shown, opts: Options) -> None:
    low, high = colour_range(shown.maps, opts)
    tiles = [triplet(test, idx, shown.recon[k], shown.maps[k], opts, low, high)
             for k, idx in enumerate(shown.indices)]
    captions = [widgets.test_caption(test, idx, float(shown.scores[k]))
                for k, idx in enumerate(shown.indices)]
    st.caption("Each card: input · reconstruction · error heatmap (bright = large error). "
               "Caption: category/defect/file · image score.")
    widgets.image_cards(tiles, captions, columns=opts.columns, min_side=128)


def pick_one(test, shown: Shown, key: str) -> int:
    names = {idx: widgets.test_caption(test, idx) for idx in shown.indices}
    return st.selectbox("Image", list(names), format_func=names.get, key=key)


def draw_before_after(test, shown: Shown, opts: Options) -> None:
    if not shown.indices:
        return
    left, right = st.columns([1, 2])
    with left:
        index = pick_one(test, shown, "rec_ba_image")
        pair = st.radio("Compare", ("input ↔ reconstruction", "input ↔ heatmap", "reconstruction ↔ heatmap"),
                        key="rec_ba_pair")
        position = st.slider("Wipe position (left part shows the first)", 0, 100, 50, key="rec_ba_pos")
    k = shown.indices.index(index)
    image = test.images[index]
    low, high = colour_range(shown.maps, opts)
    heat = visual.overlay_heatmap(image, shown.maps[k], opts.opacity, low, high)
    pictures = {"input": image, "reconstruction": shown.recon[k], "heatmap": heat}
    first, second = (p.strip() for p in pair.split("↔"))
    wiped = visual.wipe(visual.upscale(pictures[first], 384), visual.upscale(pictures[second], 384), position / 100)
    right.image(wiped, caption=f"{first} | {second} — {widgets.test_caption(test, index)}",
                width="stretch")


def strip_epochs(epochs: list[int], current: int) -> list[int]:
    """At most MAX_STRIP epochs spread over the run, always with the chosen one."""
    if len(epochs) <= MAX_STRIP:
        return list(epochs)
    picks = {epochs[int(round(i))] for i in np.linspace(0, len(epochs) - 1, MAX_STRIP - 1)}
    return sorted(picks | {current})


def draw_strip(run: Run, epochs: list[int], current: int, data_root, test, shown: Shown, opts: Options) -> None:
    if not shown.indices:
        return
    index = pick_one(test, shown, "rec_strip_image")
    chosen = strip_epochs(epochs, current)
    recons, maps, scores, done, failed = [], [], [], [], []
    bar = st.progress(0.0, text="Reconstructing with every epoch…")
    for i, epoch in enumerate(chosen):
        try:
            recons.append(state.reconstructions(run, epoch, data_root, [index])[0])
            epoch_scores, epoch_maps = state.subset_maps(run, epoch, data_root, [index], opts.method)
            maps.append(epoch_maps[0])
            scores.append(float(epoch_scores[0]))
            done.append(epoch)
        except RunError as err:
            failed.append(f"epoch {epoch}: {err}")
        bar.progress((i + 1) / len(chosen))
    bar.empty()
    for message in failed:
        st.error(message, icon=":material/error:")
    if not done:
        return
    low, high = visual.display_range(maps) if opts.shared_scale else (None, None)
    st.image(visual.upscale(test.images[index], 160), caption="input", width=160)
    tiles = [visual.image_row([r, visual.overlay_heatmap(test.images[index], m, opts.opacity, low, high)], gap=1)
             for r, m in zip(recons, maps, strict=True)]
    captions = [f"epoch {e} · {score:.4g}" + (" (shown)" if e == current else "") for e, score in zip(done, scores, strict=True)]
    st.caption("Reconstruction · heatmap per epoch, one colour scale for all (when shared).")
    widgets.image_cards(tiles, captions, columns=min(6, len(tiles)), min_side=96)


def draw_two_epochs(run: Run, epochs: list[int], current: int, data_root, test, shown: Shown, opts: Options,
                    marks: dict[int, list[str]]) -> None:
    others = [e for e in epochs if e != current]
    if not others or not shown.indices:
        st.info("The run needs a second epoch to compare with.")
        return
    pinned = (run.pinned() or {}).get("epoch")
    default = pinned if pinned in others else others[-1]
    other = st.selectbox(f"Compare epoch {current} with", others, index=others.index(default),
                         format_func=lambda e: widgets.epoch_label(e, marks), key="rec_other_epoch")
    count = min(len(shown.indices), 8)
    b = shown_for(run, other, data_root, shown.indices[:count], opts.method)
    both = np.concatenate([shown.maps[:count], b.maps])
    low, high = visual.display_range(both) if opts.shared_scale else (None, None)
    st.caption(f"Per image: input · reconstruction {current} · reconstruction {other} · "
               f"heatmap {current} · heatmap {other} (one colour scale).")
    for k, idx in enumerate(shown.indices[:count]):
        image = test.images[idx]
        row = [image, shown.recon[k], b.recon[k],
               visual.overlay_heatmap(image, shown.maps[k], opts.opacity, low, high),
               visual.overlay_heatmap(image, b.maps[k], opts.opacity, low, high)]
        caption = (f"{widgets.test_caption(test, idx)} — score {current}: {shown.scores[k]:.4g}, "
                   f"{other}: {b.scores[k]:.4g}")
        st.image(visual.upscale(visual.image_row(row, gap=2), 128), caption=caption, width="stretch")


# --------------------------------------------------------------------------- page


def main() -> None:
    sel = state.selection()
    widgets.page_header("Reconstructions", sel, "what the autoencoder makes of each test image")
    with widgets.guard("Reconstructions"):
        run = sel.need_run()
        epoch = sel.need_epoch()
        data_root = sel.data_root()
        test = state.test_set(run, data_root)
        health_notes(run, epoch)
        candidates, sort, per_page, total = filters(test)
        opts = view_options(state.map_methods())
        view = st.segmented_control("View", VIEWS, default=VIEWS[0], required=True, key="rec_view",
                                    persist_state="session")
        if not candidates:
            st.info("No test image matches these filters.")
            return
        indices, _ = order_and_page(run, epoch, data_root, candidates, sort, per_page, opts.method)
        shown = shown_for(run, epoch, data_root, indices, opts.method)
        st.caption(f"{test.summary()}. {len(candidates)} of {total} match the filters; "
                   f"showing {len(indices)}.")
        if view == VIEWS[0]:
            draw_grid(test, shown, opts)
        elif view == VIEWS[1]:
            draw_before_after(test, shown, opts)
        elif view == VIEWS[2]:
            draw_strip(run, list(sel.epochs), epoch, data_root, test, shown, opts)
        else:
            draw_two_epochs(run, list(sel.epochs), epoch, data_root, test, shown, opts, sel.marks)


main()
