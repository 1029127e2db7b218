"""Train: every training option in one form, a launch that survives page reloads (a separate
process, its PID and state in the run folder), live progress, the log's tail, stop and resume;
and a sweep (one run per grid combination) launched and watched from the same form."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import streamlit as st

import core.training.jobs
from core.config import OBJECTIVES, AugmentConfig, ModelConfig, TrainConfig
from core.runs.folder import Run, RunError
from core.training.locking import refuse_busy_run
from core.training.trainability import check_launch
from dashboard import data_notes, state, sweep_panel, widgets

SIZES = (32, 48, 64, 96, 128, 160, 192, 224, 256)
NORMS = ("batch", "instance", "group", "none")
ACTIVATIONS = ("relu", "leaky_relu", "gelu", "silu")
PRECISIONS = ("auto", "bf16", "fp32")


@st.cache_data(ttl=30, show_spinner=False)
def _categories(root: str, layout: str) -> list[str]:
    from core.data.layouts import discover_samples

    return sorted({s.category for s in discover_samples(root, layout)})


def devices() -> list[str]:
    import torch

    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# --------------------------------------------------------------------------- form sections


def _suggested_data() -> Path:
    """The data of the run in view (a new run usually trains on the same images), else the
    demo data."""
    try:
        return state.selection().data_root()
    except (state.NotReady, state.DataFolderMissing):
        return state.default_data_root()


def data_section(defaults: TrainConfig) -> dict[str, Any]:
    c1, c2 = st.columns([3, 1])
    data = c1.text_input("Data folder", value=str(_suggested_data()), key="train_data",
                         help="MVTec-style <category>/train/good, or a flat folder with train/ and test/.")
    layout = c2.selectbox("Layout", ("auto", "mvtec", "visa", "flat"), key="train_layout")
    try:
        found = _categories(str(Path(data).expanduser()), layout)
    except ValueError as err:  # DatasetLayoutError: say so and let the user fix the folder
        st.warning(f"{err}", icon=":material/folder_off:")
        found = []
    data_notes.show(data, data_notes.notes_for(data))  # e.g. masks that match no image
    c1, c2 = st.columns([3, 1])
    categories = c1.multiselect("Categories (empty = every category found)", found, key="train_categories")
    per_category = c2.checkbox("One model per category", value=defaults.per_category, key="train_per_category",
                               help="Default: ONE model for all categories.")
    return {"data": data, "layout": layout, "categories": categories, "per_category": per_category}


def schedule_section(defaults: TrainConfig) -> dict[str, Any]:
    c = st.columns(4)
    out = {
        "image_size": c[0].selectbox("Image size (px)", SIZES, index=SIZES.index(defaults.image_size), key="train_size"),
        "epochs": int(c[1].number_input("Epochs", 1, 10_000, defaults.epochs, key="train_epochs")),
        "batch_size": int(c[2].number_input("Batch size", 1, 1024, defaults.batch_size, key="train_batch")),
        "lr": float(c[3].number_input("Learning rate", 1e-6, 1.0, defaults.lr, format="%.5f", key="train_lr")),
    }
    c = st.columns(4)
    out["weight_decay"] = float(c[0].number_input("Weight decay", 0.0, 1.0, defaults.weight_decay, format="%.5f",
                                                  key="train_wd"))
    out["val_fraction"] = float(c[1].number_input("Validation share", 0.0, 0.9, defaults.val_fraction, 0.05,
                                                  key="train_val", help="Normal training images held out per category."))
    out["seed"] = int(c[2].number_input("Seed", 0, 2**31 - 1, defaults.seed, key="train_seed"))
    out["device"] = c[3].selectbox("Device", devices(), key="train_device",
                                   help="auto = the GPU when torch sees one, else the CPU.")
    c = st.columns(4)
    out["num_threads"] = int(c[0].number_input(
        "CPU threads (0 = budget)", 0, 256, defaults.num_threads, key="train_threads",
        help="0 = the thread budget: the cores left after the background evaluator's one, so "
             "training, evaluator and dashboard do not fight over cores (docs/gpus.md, 'Sharing the cores')."))
    out["synthetic_val"] = c[1].checkbox("Synthetic-anomaly AUROC per epoch", value=defaults.synthetic_val,
                                         key="train_synth")
    out["workers"] = int(c[2].number_input("Augmentation workers", 0, 64, defaults.workers, key="train_workers",
                                           help="0 = one prefetch thread; more = worker processes, for a "
                                                "fast GPU that one thread cannot feed (bench_train.py)."))
    out["precision"] = c[3].selectbox("Precision", PRECISIONS, key="train_precision",
                                      help="auto = bf16 autocast on CUDA (with channels_last), fp32 on the CPU.")
    processes = core.training.jobs.processes_for(TrainConfig(device=out["device"]))
    if processes > 1:
        st.caption(f"{processes} GPUs visible: the job runs on all of them (torchrun, one process per GPU); "
                   "the batch size is the global batch, split across them.")
    return out


def model_section(defaults: ModelConfig) -> dict[str, Any]:
    c = st.columns(4)
    depth = int(c[0].number_input("Depth (levels)", 1, 6, defaults.depth, key="train_depth"))
    width = int(c[1].number_input("Base width", 1, 512, defaults.base_width, key="train_width"))
    norm = c[2].selectbox("Normalisation", NORMS, index=NORMS.index(defaults.norm), key="train_norm")
    activation = c[3].selectbox("Activation", ACTIVATIONS, index=ACTIVATIONS.index(defaults.activation),
                                key="train_act")
    c = st.columns([3, 1])
    levels = list(range(1, depth + 1))
    skips = c[0].multiselect("Skip connections (level 1 = highest resolution)", levels, default=levels,
                             key=f"train_skips_{depth}",
                             help="Skips let the net copy anomalies through; try none or only the deep levels.")
    bottleneck = int(c[1].number_input("Bottleneck channels (0 = same)", 0, 4096, defaults.bottleneck_channels,
                                       key="train_bottleneck"))
    skip_text = "all" if skips == levels else ("none" if not skips else ",".join(map(str, sorted(skips))))
    return {"base_width": width, "depth": depth, "skips": skip_text, "norm": norm, "activation": activation,
            "bottleneck_channels": bottleneck}


OBJECTIVE_HELP = ("reconstruct: input = target. denoise: synthetic anomalies (made from your own "
                  "training images) in the input, the clean image as target, so skips cannot copy "
                  "defects. discriminative: denoise plus a segmentation network whose mask is the "
                  "`seg` score.")


def objective_section(default: str) -> str:
    return st.selectbox("Training objective", OBJECTIVES, index=OBJECTIVES.index(default),
                        key="train_objective", help=OBJECTIVE_HELP)


def loss_section() -> str:
    c = st.columns(4)
    ssim = c[0].number_input("SSIM weight", 0.0, 10.0, 0.5, 0.1, key="train_loss_ssim")
    l1 = c[1].number_input("L1 weight", 0.0, 10.0, 0.5, 0.1, key="train_loss_l1")
    l2 = c[2].number_input("L2 weight", 0.0, 10.0, 0.0, 0.1, key="train_loss_l2")
    terms = [f"{w:g}*{name}" for w, name in ((ssim, "ssim"), (l1, "l1"), (l2, "l2")) if w > 0]
    spec = "+".join(terms) or "l1"
    c[3].markdown(f"Loss  \n`{spec}`")
    return spec


def augment_section(d: AugmentConfig) -> dict[str, Any]:
    enabled = st.toggle("Augment training images", value=d.enabled, key="train_aug")
    c = st.columns(4)
    p = {"disabled": not enabled}
    out: dict[str, Any] = {"enabled": enabled}
    out["hflip_p"] = c[0].slider("Horizontal flip p", 0.0, 1.0, d.hflip_p, key="train_hflip", **p)
    out["vflip_p"] = c[1].slider("Vertical flip p", 0.0, 1.0, d.vflip_p, key="train_vflip", **p)
    out["rotate90_p"] = c[2].slider("Rotate 90° p", 0.0, 1.0, d.rotate90_p, key="train_rot90", **p)
    out["rotate_limit"] = c[3].slider("Rotation limit (°)", 0.0, 180.0, d.rotate_limit, key="train_rot", **p)
    c = st.columns(4)
    out["resized_crop_p"] = c[0].slider("Resized crop p", 0.0, 1.0, d.resized_crop_p, key="train_crop", **p)
    out["resized_crop_scale"] = c[1].slider("Crop scale", 0.1, 1.0, d.resized_crop_scale, key="train_crop_scale", **p)
    out["color_jitter_p"] = c[2].slider("Colour jitter p", 0.0, 1.0, d.color_jitter_p, key="train_jitter", **p)
    out["dropout_p"] = c[3].slider("Coarse dropout p", 0.0, 1.0, d.dropout_p, key="train_drop", **p)
    c = st.columns(4)
    out["dropout_holes"] = c[0].slider("Dropout holes", 1, 16, d.dropout_holes, key="train_drop_holes", **p)
    out["dropout_size"] = c[1].slider("Dropout hole size (share of side)", 0.01, 0.5, d.dropout_size,
                                      key="train_drop_size", **p)
    return out


def new_run_form(root: Path) -> None:
    defaults = TrainConfig()
    st.subheader("New run")
    name = st.text_input("Run name", value=time.strftime("unet-%Y%m%d-%H%M"), key="train_name",
                         help=f"Saved as {root}/<name>; one checkpoint per epoch.")
    raw: dict[str, Any] = {"run": str(root / name.strip())}
    with st.container(border=True):
        st.markdown("**Data**")
        raw.update(data_section(defaults))
    with st.container(border=True):
        st.markdown("**Schedule**")
        raw.update(schedule_section(defaults))
    with st.container(border=True):
        st.markdown("**Model and loss**")
        raw["objective"] = objective_section(defaults.objective)
        raw["model"] = model_section(defaults.model)
        raw["loss"] = loss_section()
    with st.expander("Augmentation", expanded=False):
        raw["augment"] = augment_section(defaults.augment)
    if st.button("Start training", type="primary", key="train_start", icon=":material/play_arrow:"):
        launch(raw)
    sweep_panel.sweep_form(raw, root)


def checked_config(raw: dict[str, Any]) -> TrainConfig:
    """The form's settings as a TrainConfig, refused (RunError or ValueError, one sentence each)
    before anything is created: no run name, an invalid setting, a run that is busy or has
    epochs, a data folder without training images, settings that cannot train on them."""
    if not Path(raw["run"]).name:
        raise RunError("give the run a name")
    config = TrainConfig.from_dict(raw)
    refuse_busy_run(Run(Path(config.run).expanduser()), resume=False, probe_lock=True)
    check_launch(config)
    return config


def launch(raw: dict[str, Any]) -> None:
    """Validates the whole form, then starts the job and switches the app to the new run; a
    refusal is shown under the button and creates nothing."""
    try:
        config = checked_config(raw)
    except (RunError, ValueError) as err:
        st.error(f"Cannot start: {err}", icon=":material/error:")
        return
    with widgets.guard("Start training"):
        pid = core.training.jobs.start_training(config)
        run = Run(Path(config.run).expanduser())
        widgets.wait_until_started(run)
        state.switch_to_run(run, f"Started {run.name} (pid {pid}); its progress is shown here")
        st.rerun()


# --------------------------------------------------------------------------- the selected run's job


def job_controls(run: Run, progress: dict[str, Any]) -> None:
    jobs = core.training.jobs
    job_state = progress.get("state")
    if run.is_training():
        if st.button("Stop after this batch", key="train_stop", icon=":material/stop:"):
            with st.spinner("Stopping (finished epochs are kept)…"):
                stopped = jobs.stop_training(run)
            st.toast("Stopped" if stopped else "The job was not running", icon=":material/stop_circle:")
            st.rerun()
        return
    config = run.config()
    done = len(run.epochs())
    c1, c2 = st.columns([1, 2])
    until = int(c1.number_input("Train until epoch", 1, 10_000, max(config.epochs, done + 1), key="train_until"))
    label = "Resume" if job_state in ("stopped", "failed") or done < config.epochs else "Train more epochs"
    c2.write("")
    if c2.button(label, key="train_resume", icon=":material/play_circle:", disabled=until <= done):
        with widgets.guard("Resume"):
            jobs.start_training(config.with_overrides({"epochs": until}), resume=True)
            widgets.wait_until_started(run)
            st.rerun()


def main() -> None:
    sel = state.selection()
    widgets.page_header("Train", sel, "launch, watch, stop and resume training jobs")
    root = sel.roots[0] if sel.roots else state.default_checkpoints_root()
    with widgets.guard("Job"):
        run = sel.need_run()
        st.subheader(f"Job of {run.name}")
        progress = widgets.live_panel(run)
        job_controls(run, progress)
    st.divider()
    with widgets.guard("Sweeps"):
        sweep_panel.sweep_watch(root)
    with widgets.guard("New run"):
        new_run_form(root)


main()
