"""Every knob of every scoring method in one typed, validated record.

Why one record: the same options travel from the CLI and the dashboard into the scorer and
into the on-disk cache key, so a typo must fail loudly and two spellings of the same request
must hit the same cache entry. Defaults are the ones measured best on the demo data (see the
module docstrings of `core.scoring.maps` and `core.scoring.knn`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

METHODS = ("pixel", "ssim", "feature", "knn", "rawknn", "seg", "patchz", "ssimz", "globalknn",
           "finepatch", "ensemble", "adaptive")
MAP_METHODS = ("pixel", "ssim", "feature", "seg")  # maps from the model alone (knn patches and rawknn
# also give maps, but need the training images)
REDUCTIONS = ("mean", "max")
ERRORS = ("l2", "l1")
DISTANCES = ("cosine", "l2")
BANK_SCOPES = ("auto", "category", "global", "routed")
UNKNOWN_CATEGORY_POLICIES = ("error", "route")
ROUTERS = ("auto", "features", "thumbnail")
# pixels per forward pass when batch_size is auto, by device type: on a CPU, 32 images of 64 px
# ran 25% faster per image than 128 (a (128, 16, 64, 64) activation outgrows malloc's reusable
# heap, so every layer pays fresh page faults); GPUs want large batches
BATCH_PIXELS = {"cpu": 2**17, "cuda": 2**19}

# What each method reads from the options; the cache key holds only these, so changing `k`
# never invalidates cached pixel scores.
METHOD_FIELDS: dict[str, tuple[str, ...]] = {
    "pixel": ("reduce", "sigma", "error"),
    "ssim": ("reduce", "sigma"),
    "feature": ("reduce", "sigma", "levels", "distance"),
    "knn": ("reduce", "sigma", "levels", "k", "patch", "neighbours", "bank_scope", "max_bank"),
    "rawknn": ("sigma", "k", "thumb_size", "bank_scope", "max_bank"),  # scores ignore reduce
    "seg": ("reduce", "sigma"),
    "patchz": ("sigma", "bank_scope"),  # scores are the worst patch
    "ssimz": ("sigma", "bank_scope"),  # worst cell; normals: core.scoring.residual
    "globalknn": ("k", "bank_scope", "max_bank"),  # pooled levels fixed (core.scoring.globalknn)
    "finepatch": ("bank_scope",),  # 3 x 3 px at 128 px, fixed (core.scoring.finepatch)
    "ensemble": ("members",),  # plus each member's own fields (core.scoring.ensemble)
    "adaptive": (),  # knn or finepatch per category, each with its own fields (core.scoring.adaptive)
}
# knn's neighbours "auto" (0): a category's bank images are all searched up to
# EXHAUSTIVE_IMAGES, its AUTO_NEIGHBOURS nearest beyond (core.scoring.patchbank.searched_images)
EXHAUSTIVE_IMAGES = 200
AUTO_NEIGHBOURS = 5
ROUTED_METHODS = ("knn", "rawknn", "patchz", "ssimz", "globalknn", "finepatch")  # methods that need a category per test image
# What `score`, `export` and the dashboard's rankings use unless told otherwise, chosen on
# the six real sets of ../shared, one model per seed, two seeds, 64 px (docs/detection.md):
# adaptive (per category knn, or finepatch where the test images separate clearly better with
# it), mean image AUROC .931 against .860 for knn alone and .790 for rawknn; it differs from knn
# only on DeepPCB (.959 against .533), where defects of a few pixels vanish at 64 px.
# FALLBACK_METHOD is used when the run's normals are too few to calibrate the default's members
# (core.scoring.checkpoint.resolve_method).
DEFAULT_METHOD = "adaptive"
FALLBACK_METHOD = "knn"
FLOOR_METHODS = ("rawknn", "patchz")  # no learning: the floors every table shows
# scores that never read the model (the floors and finepatch): the same at every epoch, so they
# are computed once per run and cached for all its epochs (core.runs.cache, epoch None)
MODEL_FREE_METHODS = FLOOR_METHODS + ("finepatch",)
SEGMENTER_METHODS = ("seg",)  # need a checkpoint trained with objective "discriminative"
# combine other methods' scores calibrated against a run's normal images, so they exist for
# checkpoints (score_checkpoint), not for bare image sets (score_image_set)
CHECKPOINT_METHODS = ("ensemble", "adaptive")
# the default in one phrase, for help texts
DEFAULT_METHOD_TEXT = (
    f"{DEFAULT_METHOD}; {FALLBACK_METHOD} when the run holds too few normals to calibrate it"
    if DEFAULT_METHOD in CHECKPOINT_METHODS and FALLBACK_METHOD != DEFAULT_METHOD
    else DEFAULT_METHOD
)


@dataclass(frozen=True)
class ScoreOptions:
    """Options of `score_image_set`; each field says which methods read it.

    reduce: image score from the map, "max" (default: a small defect must not be averaged
        away) or "mean". Image-level knn/rawknn scores ignore it.
    sigma: Gaussian smoothing of maps in px at input resolution; negative = auto
        (image_size / 64: 1 px at 64 px, 4 px at 256 px as in anomalib; wider smoothing
        lowered image AUROC on the demo data); 0 = off.
    error: pixel method, squared ("l2") or absolute ("l1") error, averaged over channels.
    levels: encoder levels for feature/knn: "auto", "all", "bottleneck" or "1,2" (level 0 =
        full-resolution stem, level depth = bottleneck; see core.model.unet).
    distance: feature method, "cosine" (scale-free, default) or "l2" between features of
        the input and of its reconstruction.
    k: knn/rawknn, score = mean distance to the k nearest bank entries.
    patch: knn, per-location features (gives maps) instead of one pooled vector per image.
    neighbours: knn with patches, how many nearest normal images (by pooled features) each
        image's patches are searched among (SPADE; core.scoring.patchbank). 0 (default) =
        auto: every image of a category of at most 200 normals, else the 5 nearest. 5 measured
        best on ../shared/realdata's large categories (.947 mean image AUROC against .916
        exhaustive); on flat sets of 27-180 normals per category the exhaustive search won
        (docs/homework.md).
    bank_scope: knn/rawknn, "auto" (the image's category when the bank knows it, else the
        routed one), "category" (known categories only), "global" (one bank), "routed".
    max_bank: entries kept per category bank, bounding memory: images for rawknn and pooled
        knn (seeded subsample), patches for knn with patches (whole images are kept: a seeded
        sample of max_bank // patches-per-image images).
    thumb_size: rawknn, side of the raw-pixel thumbnails.
    unknown_categories: "error" (default) refuses test categories the run never trained
        on; "route" assigns them to the nearest trained category instead.
    routing: how images without a trained category find one (see core.scoring.routing): "auto"
        (encoder features when a model is given, else thumbnails), "features", "thumbnail".
    members: ensemble, the methods whose calibrated scores (per-category z-scores against the
        held-out normals) are averaged, e.g. "knn,patchz".
    seed: bank subsampling. batch_size: images per forward pass; 0 (default) = as many as
        hold BATCH_PIXELS pixels of the device (CPU: 32 at 64 px, 8 at 128 px; CUDA: 128 at
        64 px, 8 at 256 px); scores do not depend on it.
    """

    reduce: str = "max"
    sigma: float = -1.0
    error: str = "l2"
    levels: str = "auto"
    distance: str = "cosine"
    k: int = 1
    patch: bool = True
    neighbours: int = 0
    members: str = "knn,patchz"
    bank_scope: str = "auto"
    max_bank: int = 262144
    thumb_size: int = 32
    unknown_categories: str = "error"
    routing: str = "auto"
    seed: int = 0
    batch_size: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.reduce in REDUCTIONS, f"reduce must be one of {REDUCTIONS}"),
            (self.error in ERRORS, f"error must be one of {ERRORS}"),
            (self.distance in DISTANCES, f"distance must be one of {DISTANCES}"),
            (self.bank_scope in BANK_SCOPES, f"bank_scope must be one of {BANK_SCOPES}"),
            (
                self.unknown_categories in UNKNOWN_CATEGORY_POLICIES,
                f"unknown_categories must be one of {UNKNOWN_CATEGORY_POLICIES}",
            ),
            (self.routing in ROUTERS, f"routing must be one of {ROUTERS}"),
            (int(self.k) >= 1, "k must be at least 1"),
            (int(self.max_bank) >= 1, "max_bank must be at least 1"),
            (int(self.neighbours) >= 0, "neighbours must be 0 (auto) or more"),
            (int(self.thumb_size) >= 4, "thumb_size must be at least 4"),
            (int(self.batch_size) >= 0, "batch_size must be 0 (auto) or more"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"scoring option: {message}")
        ensemble_members(self.members)

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> ScoreOptions:
        """Builds options from keyword arguments, naming any unknown key."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"unknown scoring option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**options)

    def batch_for(self, image_size: int, device: Any = "cpu") -> int:
        """Images per forward pass at this image size on this device (see batch_size)."""
        if self.batch_size:
            return int(self.batch_size)
        kind = str(device).split(":")[0]  # a torch.device or "cpu", "cuda:1" ...
        pixels = BATCH_PIXELS.get(kind, BATCH_PIXELS["cuda"])
        return max(1, pixels // max(1, int(image_size) ** 2))

    def sigma_for(self, image_size: int) -> float:
        return float(image_size) / 64.0 if self.sigma < 0 else float(self.sigma)

    def cache_params(self, method: str) -> dict[str, Any]:
        """The options `method` depends on, for cache keys (batch size never changes a score)."""
        params = {name: getattr(self, name) for name in METHOD_FIELDS[method]}
        if method == "knn" and int(self.neighbours) == 0:  # the rule "auto" stands for
            params["neighbours"] = f"auto:{EXHAUSTIVE_IMAGES}:{AUTO_NEIGHBOURS}"
        if method in ROUTED_METHODS:
            params.update(
                unknown_categories=self.unknown_categories, routing=self.routing, seed=self.seed
            )
        return params


def ensemble_members(text: str) -> tuple[str, ...]:
    """'knn,patchz' -> ('knn', 'patchz'): at least two distinct methods, none an ensemble."""
    names = tuple(dict.fromkeys(p.strip() for p in str(text).split(",") if p.strip()))
    bad = [n for n in names if n not in METHODS or n in CHECKPOINT_METHODS]
    if bad or len(names) < 2:
        raise ValueError(
            f"scoring option: members '{text}': name two or more of "
            f"{', '.join(m for m in METHODS if m not in CHECKPOINT_METHODS)}, e.g. knn,patchz"
        )
    return names


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown scoring method '{method}'; use one of {', '.join(METHODS)}")
    return method


def parse_methods(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """'all' -> METHODS; 'pixel,knn' -> ('pixel', 'knn'); each name validated."""
    if isinstance(text, (list, tuple)):
        names = [str(t) for t in text]
    else:
        names = [part.strip() for part in str(text).split(",") if part.strip()]
    if names == ["all"] or not names:
        return METHODS
    return tuple(check_method(n) for n in names)
