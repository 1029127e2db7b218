"""The one import pages use for what the user picked and what they read; each job lives in
its own module and is re-exported here by name:

- dashboard.selection: the `Selection` in session state (runs folders, run, epoch, data
  folder), `NotReady` / `DataFolderMissing`, the epoch picker's memory.
- dashboard.fingerprints: checkpoint and run fingerprints (core.runs.cache.checkpoint_stamp's
  rule) and the epochs that failed to load in this session.
- dashboard.loaders: cached models, test set, reconstructions, scores, image-AUROC evaluations.
- dashboard.health: diagnose_run for every epoch, the sidebar's marks, flag sentences.
"""

from __future__ import annotations

from dashboard.fingerprints import (
    KEY_DAMAGED,
    checkpoint_fingerprint,
    damaged_epochs,
    note_damaged,
    run_fingerprint,
)
from dashboard.health import (
    diagnosis,
    epoch_marks,
    flag_sentences,
    health_by_epoch,
    known_diagnosis,
    ranking_of,
)
from dashboard.loaders import (
    align,
    image_aurocs,
    map_methods,
    model,
    reconstructions,
    scores,
    scoring_methods,
    subset_maps,
    test_set,
)
from dashboard.selection import (
    ENV_CHECKPOINTS,
    ENV_DATA,
    KEY_EPOCHS,
    KEY_NONCE,
    KEY_SELECTION,
    DataFolderMissing,
    NotReady,
    Selection,
    announce,
    default_checkpoints_root,
    default_data_root,
    discover_runs,
    epoch_widget_key,
    go_to_epoch,
    picked_epoch,
    remember_epoch,
    selection,
    set_selection,
    show_announcements,
    switch_to_run,
    take_switch,
)

__all__ = [
    "ENV_CHECKPOINTS", "ENV_DATA", "KEY_DAMAGED", "KEY_EPOCHS", "KEY_NONCE", "KEY_SELECTION",
    "DataFolderMissing", "NotReady", "Selection", "align", "checkpoint_fingerprint",
    "picked_epoch", "damaged_epochs", "default_checkpoints_root", "default_data_root",
    "diagnosis", "discover_runs", "epoch_marks", "epoch_widget_key", "flag_sentences",
    "go_to_epoch", "health_by_epoch", "image_aurocs", "known_diagnosis", "map_methods", "model", "ranking_of",
    "note_damaged", "reconstructions", "remember_epoch", "run_fingerprint", "scores",
    "scoring_methods", "selection", "set_selection", "subset_maps", "switch_to_run", "take_switch",
    "announce", "show_announcements",
    "test_set",
]
