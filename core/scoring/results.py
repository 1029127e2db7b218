"""`MethodScores`: one scoring method's result for one split of a checkpoint, typed.

Every consumer (CLI verbs, export, evaluation, the follower, every dashboard page) reads these
fields by name; the on-disk cache stores the same fields (arrays to .npz, the rest to JSON).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Maps are stored at half precision (scores are computed before, at full precision): a
# 1000-image test set at 128 px is 33 MB per method and epoch instead of 66 MB.
MAP_STORAGE_DTYPE = np.float16
_ARRAYS = ("image_scores", "anomaly_maps", "labels", "has_mask", "routed", "routing_confidence",
           "raw_scores")


@dataclass
class MethodScores:
    """Image scores and anomaly maps of N images by one method.

    image_scores: (N,) float64, higher = more anomalous; per-category calibrated z-scores when
        `calibration` says so (then raw_scores (N,) keeps the raw ones), else raw.
    anomaly_maps: (N, S, S) float32 at the images' resolution (float16 precision), or None for
        methods without a map.
    names (Sample.name), paths, categories, defects: (N,) per image; labels: (N,) int, 0 normal,
        > 0 anomalous, -1 unlabeled; has_mask: (N,) bool.
    bank_categories: (N,) the bank each image was compared with (knn/rawknn/patchz) or None;
        routed: (N,) bool, category decided by routing; routing_confidence: (N,) 1 - d1/d2;
        category_source: (N,) "dataset", "csv", "routed", "single" (test sets only).
    info: method details (levels, bank sizes, routing); skipped: [[path, why]] unreadable
        files; seconds: compute time (0 when read from the cache is not distinguished).
    calibration: how image_scores were calibrated, or why they stayed raw; None = not asked.
    """

    method: str
    epoch: int
    split: str
    image_scores: np.ndarray
    anomaly_maps: np.ndarray | None
    names: list[str]
    paths: list[str]
    labels: np.ndarray
    categories: list[str]
    defects: list[str]
    has_mask: np.ndarray
    bank_categories: list[str | None] | None = None
    routed: np.ndarray | None = None
    routing_confidence: np.ndarray | None = None
    category_source: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    skipped: list[list[str]] = field(default_factory=list)
    seconds: float | None = None
    raw_scores: np.ndarray | None = None
    calibration: str | None = None

    def __len__(self) -> int:
        return len(self.image_scores)

    @property
    def calibrated(self) -> bool:
        """Whether image_scores are calibrated (raw_scores then holds the raw ones)."""
        return self.raw_scores is not None

    def to_record(self) -> dict[str, Any]:
        """A dict core.runs.cache can store: arrays to .npz, the rest to JSON; None fields left out."""
        record = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "anomaly_maps":
                value = np.asarray(value, MAP_STORAGE_DTYPE)
            record[f.name] = value
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> MethodScores:
        """Inverse of to_record (maps come back as float32)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in record.items() if k in names}
        for name in _ARRAYS:
            if values.get(name) is not None:
                values[name] = np.asarray(values[name])
        values.setdefault("anomaly_maps", None)  # methods without maps, or read without them
        values["image_scores"] = np.asarray(values["image_scores"], np.float64)
        if values.get("anomaly_maps") is not None:
            values["anomaly_maps"] = np.asarray(values["anomaly_maps"], np.float32)
        values["has_mask"] = np.asarray(values["has_mask"], bool)
        return cls(**values)
