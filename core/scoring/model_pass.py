"""One forward pass per batch for every scoring method that needs the model.

Why: pixel, ssim, feature and seg all start from the same encoding and reconstruction of an
image, and knn from the same encoding; running the network once per method made evaluating an
epoch with every method cost five passes over the test set (41 s on six real sets where
decoding the images took 5). Here each batch is encoded once, decoded once when a map method
asks for it, and every requested map and knn vector is taken from those tensors. Results are
identical to one pass per method: the model is in eval mode, so a batch's outputs do not
depend on what else is computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from core.model.losses import ssim_error_map
from core.model.segmentation import segmentation_maps
from core.model.tensors import to_tensor
from core.scoring.features import encoder_vectors, level_vectors
from core.scoring.maps import feature_distance, gaussian_smooth, pixel_error
from core.scoring.options import MAP_METHODS


@dataclass(frozen=True)
class PassRequest:
    """What one pass computes.

    maps: the reconstruction methods whose anomaly maps are wanted; sigma: their Gaussian
    smoothing in px (<= 0: none); error: pixel error "l2"/"l1"; feature_levels, distance: the
    feature method's levels and distance; knn_levels: encoder levels of the knn vectors (empty:
    no vectors), patch: per-location vectors (N, g*g, D) rather than pooled ones (N, D).
    """

    maps: tuple[str, ...] = ()
    sigma: float = 0.0
    error: str = "l2"
    feature_levels: tuple[int, ...] = ()
    distance: str = "cosine"
    knn_levels: tuple[int, ...] = ()
    patch: bool = True

    def __post_init__(self) -> None:
        unknown = [m for m in self.maps if m not in MAP_METHODS]
        if unknown:
            raise ValueError(f"'{unknown[0]}' is not a reconstruction method")


@dataclass
class PassOutputs:
    """maps: {method: (N, S, S) float32 smoothed anomaly map}; vectors: knn vectors or None."""

    maps: dict[str, np.ndarray] = field(default_factory=dict)
    vectors: np.ndarray | None = None


@torch.no_grad()
def model_pass(
    model: torch.nn.Module,
    images: np.ndarray,
    request: PassRequest,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
) -> PassOutputs:
    """uint8 (N, S, S, 3) -> every requested map and vector, one encoding per batch.

    Peak memory is one batch of feature maps plus the outputs. Raises ValueError for seg on a
    model without a segmentation network (core.model.segmentation).
    """
    model.eval()
    size = images.shape[1]
    maps: dict[str, list[torch.Tensor]] = {m: [] for m in request.maps}
    vectors: list[torch.Tensor] = []
    decode = bool(request.maps)  # every map method compares the input with its reconstruction
    for start in range(0, len(images), batch_size):
        x = to_tensor(images[start : start + batch_size], device)
        encoded = model.encode(x)
        y = model.decode(encoded) if decode else None
        for method in request.maps:
            raw = _raw_map(method, model, x, y, encoded, request, size)
            maps[method].append(gaussian_smooth(raw.float(), request.sigma).cpu())
        if request.knn_levels:
            vectors.append(level_vectors(encoded, request.knn_levels, request.patch, size).cpu())
    out = PassOutputs()
    for method, parts in maps.items():
        out.maps[method] = (
            torch.cat(parts).numpy().astype(np.float32, copy=False)
            if parts
            else np.zeros((0, size, size), np.float32)
        )
    if request.knn_levels:
        out.vectors = (
            torch.cat(vectors).numpy()
            if vectors
            else encoder_vectors(model, images, request.knn_levels, request.patch, device)
        )  # (the empty set's shape)
    return out


def _raw_map(method, model, x, y, encoded, request: PassRequest, size: int) -> torch.Tensor:
    if method == "pixel":
        return pixel_error(x, y, request.error)
    if method == "ssim":
        return ssim_error_map(x, y)
    if method == "feature":
        deepest = max(request.feature_levels)  # the reconstruction's deeper levels are unused
        return feature_distance(encoded, model.encode(y, upto=deepest), request.feature_levels, size,
                                request.distance)
    return segmentation_maps(model, x, y)  # seg: the segmentation network's probabilities
