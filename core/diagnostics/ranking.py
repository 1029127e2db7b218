"""Which epoch, and which score, without test labels; and how far each label-free criterion can
be trusted, measured on runs whose test set has labels.

Label-free criteria, each a value per (epoch, method), higher = better:

  test_separation   AUROC of the unlabeled test scores against the held-out normal scores of the
                    same category, averaged over categories (the "AUCp" idea: a test set that
                    holds anomalies scores above normals the model never trained on, and the more
                    a method separates them the better it finds those anomalies). Reads no label.
  synthetic_auroc   AUROC on synthetic defects pasted into held-out normals, as training logged it
                    (pixel, ssim, feature; a knn bank is not built during training).
  restoration       1 - the share of pasted synthetic defects that comes back in the reconstruction
                    (core.diagnostics.evidence): the same for every reconstruction method.
  val_loss          minus the validation loss on held-out normals: the same for every method.

On a run with labels, each criterion's Spearman rank correlation with the real image AUROC of
each method across epochs says how well it would have picked epochs there (agreements). The
suggestion then ranks epochs by the criterion that agreed best for each method; without labels
it uses the criterion with the best MEASURED_AGREEMENT: mean Spearman on labelled runs (docs/diagnosis.md).
Methods a health flag names unusable at an epoch are never suggested there.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.stats import spearmanr

from core.evaluation.metrics import auroc_standard_error, image_auroc

CRITERIA = ("test_separation", "synthetic_auroc", "restoration", "val_loss")
# Without labels: each criterion's mean Spearman with real AUROC per method, measured on two
# labelled runs over ../shared/realdata at 64 px (docs/diagnosis.md): every skip +
# reconstruct (10 epochs) and no skips + denoise (6 epochs). A method measured on neither takes
# the mean over the measured methods.
MEASURED_AGREEMENT = {
    "pixel": {"test_separation": 0.41, "synthetic_auroc": 0.75, "restoration": -0.17, "val_loss": 0.77},
    "ssim": {"test_separation": 0.34, "synthetic_auroc": 0.82, "restoration": -0.56, "val_loss": 0.87},
    "knn": {"test_separation": 0.23, "val_loss": 0.14},
}
MEASURED_RUNS = 2
GLOBAL_CRITERIA = ("restoration", "val_loss")  # one value per epoch, shared by the methods
MIN_EPOCHS = 3  # a rank correlation over fewer epochs says nothing
# synthetic_gap: synthetic AUROC above the real one (or, without labels, above the test
# separation) by more than 0.2 at an epoch. Both are AUROCs of the same method at the same epoch;
# with the ~20-100 images per side of these sets one AUROC's standard error is ~0.05-0.1
# (Hanley & McNeil), so 0.2 is two of them: a gap the sampling noise alone rarely makes.
SYNTHETIC_GAP = 0.2
# Ranked methods that get their own pick (`--epoch chosen --method ssimz`) but are never the
# run's suggestion: ssimz's separation is measured against the held-out normals alone (no
# leave-one-out reference), 2-6 per category on a 60-image homework set, so it is noise there;
# suggested, it took the homework export from ensemble@3 (.851 pooled) to ssimz@1 (.808) on
# realdata at 60 normals, seed 0 (benchmarks/bench_homework.py, docs/homework.md).
PICK_ONLY = ("ssimz",)
# The ensemble hedges: another method is suggested over it only when its test separation is
# higher by more than HEDGE_ERRORS standard errors of the difference (separation_error), each
# method at its own picked epoch. With a few held-out normals per category (small flat
# homework sets) the separations of knn and the knn + patchz ensemble are within noise of each
# other, and knn alone then cost the submission (.702 against .837 on realdata at 30 normals).
# Measured on 11 homework runs (docs/homework.md: realdata at 30/60/200 normals, 5 seeds at
# 60, the no-skip recipe; realdata_more at 60 normals, 3 seeds): pooled calibrated AUROC of the
# suggestion, mean (min) on realdata / mean on realdata_more: no hedge .831 (.702) / .784;
# 0.5 errors .847 (.762) / .784; 1 error .856 (.815) / .765. 0.5 is the largest that loses
# nothing on either source.
HEDGE_METHOD = "ensemble"
HEDGE_ERRORS = 0.5
DEFAULT_SOURCE = (f"mean over {MEASURED_RUNS} labelled runs on real MVTec AD, Lookout for Vision "
                  "and magnetic-tile images (docs/diagnosis.md, \"Diagnosis you can trust\")")


def agreement_strength(rho: float) -> str:
    """Words for a Spearman correlation, so +0.21 never reads as a strong endorsement."""
    if rho <= 0:
        return "yet not at all (the order is random or reversed)"
    return "weakly" if rho < 0.4 else "moderately" if rho < 0.7 else "strongly"


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _category_separations(val_scores, val_categories, test_scores, test_categories
                          ) -> list[tuple[float, int, int]]:
    """Per category with both sides: (AUROC of its test scores against its held-out normal
    scores, number of normals, number of test images)."""
    val_s, test_s = np.asarray(val_scores, np.float64), np.asarray(test_scores, np.float64)
    val_c, test_c = np.asarray(val_categories, dtype=object), np.asarray(test_categories, dtype=object)
    out = []
    for category in sorted(set(val_c.tolist()) & set(test_c.tolist())):
        a, b = val_s[val_c == category], test_s[test_c == category]
        if len(a) and len(b):
            labels = np.r_[np.zeros(len(a)), np.ones(len(b))]
            out.append((image_auroc(labels, np.r_[a, b]), len(a), len(b)))
    return out


def separation_auroc(val_scores: Sequence[float], val_categories: Sequence[str],
                    test_scores: Sequence[float], test_categories: Sequence[str]) -> float:
    """Mean over categories of AUROC(test scores vs held-out normal scores); NaN when no category
    has both. Scores (N,) with their categories (N,); no label is read."""
    return _mean_separation(_category_separations(val_scores, val_categories, test_scores,
                                                  test_categories))


def _mean_separation(per_category: list[tuple[float, int, int]]) -> float:
    return float(np.mean([auc for auc, _, _ in per_category])) if per_category else float("nan")


def separation_error(val_scores: Sequence[float], val_categories: Sequence[str],
                     test_scores: Sequence[float], test_categories: Sequence[str]) -> float:
    """Standard error of separation_auroc (same arguments): each category's AUROC error
    (auroc_standard_error, held-out normals against test images), combined as the error of
    their mean; NaN when no category has both."""
    return _mean_error(_category_separations(val_scores, val_categories, test_scores,
                                             test_categories))


def _mean_error(per_category: list[tuple[float, int, int]]) -> float:
    errors = [auroc_standard_error(auc, n_val, n_test) for auc, n_val, n_test in per_category]
    if not errors or not all(math.isfinite(e) for e in errors):
        return float("nan")
    return math.sqrt(sum(e * e for e in errors)) / len(errors)


@dataclass(frozen=True)
class Agreement:
    """Spearman rank correlation of a criterion with a method's real AUROC across n_epochs
    (None when fewer than MIN_EPOCHS or either side is constant)."""

    criterion: str
    method: str
    spearman: float | None
    n_epochs: int


def spearman_agreement(criterion: Mapping[int, float], real: Mapping[int, float]) -> tuple[float | None, int]:
    """(rho, epochs used) over the epochs where both are finite."""
    epochs = [e for e in criterion if _finite(criterion.get(e)) and _finite(real.get(e))]
    x = np.array([criterion[e] for e in epochs], np.float64)
    y = np.array([real[e] for e in epochs], np.float64)
    if len(epochs) < MIN_EPOCHS or np.ptp(x) < 1e-12 or np.ptp(y) < 1e-12:
        return None, len(epochs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = spearmanr(x, y).statistic
    return (float(rho) if math.isfinite(rho) else None), len(epochs)


@dataclass(frozen=True)
class SyntheticGap:
    """At one epoch, a method's synthetic AUROC overstates its real one (or, without labels, its
    test separation): choosing epochs by synthetic AUROC would mislead for that method."""

    epoch: int
    method: str
    synthetic: float
    reference: float
    reference_name: str  # "real AUROC" | "test separation"

    @property
    def sentence(self) -> str:
        return (f"{self.method}: synthetic AUROC {self.synthetic:.3f} vs {self.reference_name} "
                f"{self.reference:.3f} (gap {self.synthetic - self.reference:+.3f}, flagged above "
                f"{SYNTHETIC_GAP}): the synthetic defects are easier than the real ones, so synthetic AUROC "
                "does not say how this epoch finds real defects")


def synthetic_gaps(values, real) -> list[SyntheticGap]:
    """Every (epoch, method) whose synthetic AUROC exceeds its real AUROC (or test separation when
    the method has no real AUROC at that epoch) by more than SYNTHETIC_GAP."""
    out = []
    for method, by_epoch in values.get("synthetic_auroc", {}).items():
        for epoch, synthetic in sorted(by_epoch.items()):
            reference, name = real.get(method, {}).get(epoch), "real AUROC"
            if not _finite(reference):
                reference, name = values.get("test_separation", {}).get(method, {}).get(epoch), "test separation"
            if _finite(synthetic) and _finite(reference) and synthetic - reference > SYNTHETIC_GAP:
                out.append(SyntheticGap(int(epoch), method, float(synthetic), float(reference), name))
    return out


@dataclass(frozen=True)
class Suggestion:
    """The epoch and score method to use, and why: the one shape of every suggestion (the
    label-free ranking's, or the health-only one of core.diagnostics.timeline.suggest_epoch).

    epoch: None when no epoch can be suggested; method: None for the health-only suggestion.
    criterion: the label-free criterion that ranked the epochs; agreement: its Spearman with real
    AUROC for that method (None when not measured); agreement_source: "this run's test labels" or
    "benchmark runs (docs/diagnosis.md)". real_auroc / best_real_auroc: the method's real AUROC at the
    suggested epoch and at its best epoch, when the run has labels (a check, never an input).
    score: the health-only suggestion's weighted evidence in [0, 1] (None for the ranking's).
    """

    epoch: int | None
    method: str | None = None
    criterion: str | None = None
    agreement: float | None = None
    agreement_source: str = ""
    reasons: list[str] = field(default_factory=list)
    real_auroc: float | None = None
    best_real_auroc: float | None = None
    score: float | None = None


@dataclass(frozen=True)
class MethodPick:
    """One method's best usable epoch by its best-agreeing criterion (what the suggestion
    chooses among; `--epoch chosen --method M` uses M's). agreement: that criterion's Spearman
    with M's real AUROC (None: never measured); here: measured on this run's labels, over
    n_epochs epochs."""

    method: str
    epoch: int
    criterion: str
    agreement: float | None = None
    here: bool = False
    n_epochs: int = 0


@dataclass
class EpochRanking:
    """Label-free criteria per epoch and method, their agreement with real AUROC, the suggestion.

    values[criterion][method][epoch]; real[method][epoch] (empty without labels);
    unusable[epoch]: methods a health flag rules out there; errors[method][epoch]: the standard
    error of test_separation (separation_error), what the ensemble's hedge compares against.
    picks[method]: that method's own best epoch (MethodPick), for every method that has one.
    """

    epochs: list[int]
    methods: list[str]
    values: dict[str, dict[str, dict[int, float]]]
    real: dict[str, dict[int, float]]
    agreements: list[Agreement]
    unusable: dict[int, list[str]]
    suggestion: Suggestion
    notes: list[str] = field(default_factory=list)
    gaps: list[SyntheticGap] = field(default_factory=list)
    errors: dict[str, dict[int, float]] = field(default_factory=dict)
    picks: dict[str, MethodPick] = field(default_factory=dict)

    @property
    def labelled(self) -> bool:
        return any(self.real.values())

    def agreement(self, criterion: str, method: str) -> Agreement | None:
        return next((a for a in self.agreements if a.criterion == criterion and a.method == method), None)

    @classmethod
    def from_dict(cls, record: dict) -> EpochRanking:
        """The inverse of to_dict (e.g. a diagnose_run result read back from JSON or a cache)."""
        def by_epoch(d: dict) -> dict[int, float]:
            return {int(e): float(v) for e, v in d.items() if v is not None}

        return cls([int(e) for e in record["epochs"]], list(record["methods"]),
                   {c: {m: by_epoch(v) for m, v in by_m.items()} for c, by_m in record["values"].items()},
                   {m: by_epoch(v) for m, v in record["real"].items()},
                   [Agreement(**a) for a in record["agreements"]],
                   {int(e): list(m) for e, m in record["unusable"].items()},
                   Suggestion(**record["suggestion"]), list(record.get("notes", [])),
                   [SyntheticGap(**{k: v for k, v in g.items() if k != "sentence"}) for g in record.get("gaps", [])],
                   {m: by_epoch(v) for m, v in record.get("errors", {}).items()},
                   {m: MethodPick(**p) for m, p in record.get("picks", {}).items()})

    def agreement_table(self) -> dict[str, dict[str, float | None]]:
        """criterion -> method -> Spearman with real AUROC (None: not measurable)."""
        return {c: {m: (a.spearman if (a := self.agreement(c, m)) else None) for m in self.methods}
                for c in self.values}

    def to_dict(self) -> dict:
        return {"epochs": list(self.epochs), "methods": list(self.methods),
                "values": {c: {m: {str(e): v for e, v in by_e.items()} for m, by_e in by_m.items()}
                           for c, by_m in self.values.items()},
                "real": {m: {str(e): v for e, v in by_e.items()} for m, by_e in self.real.items()},
                "agreements": [asdict(a) for a in self.agreements],
                "unusable": {str(e): list(m) for e, m in self.unusable.items()},
                "suggestion": asdict(self.suggestion), "notes": list(self.notes),
                "gaps": [{**asdict(g), "sentence": g.sentence} for g in self.gaps],
                "errors": {m: {str(e): v for e, v in by_e.items()} for m, by_e in self.errors.items()},
                "picks": {m: asdict(p) for m, p in self.picks.items()}}


def agreements_of(values: Mapping[str, Mapping[str, Mapping[int, float]]],
                  real: Mapping[str, Mapping[int, float]]) -> list[Agreement]:
    """Agreement of every criterion with every method's real AUROC (empty without labels)."""
    out = []
    for criterion, by_method in values.items():
        for method, by_epoch in by_method.items():
            if real.get(method):
                rho, n = spearman_agreement(by_epoch, real[method])
                out.append(Agreement(criterion, method, rho, n))
    return out


def measured_agreement(method: str, criterion: str) -> float | None:
    """MEASURED_AGREEMENT for a method, else the mean over the measured methods."""
    if method in MEASURED_AGREEMENT:
        return MEASURED_AGREEMENT[method].get(criterion)
    known = [m[criterion] for m in MEASURED_AGREEMENT.values() if criterion in m]
    return float(np.mean(known)) if known else None


def _best_criterion(method: str, values, agreements: list[Agreement]) -> tuple[str | None, Agreement | None, bool]:
    """(criterion, its agreement, measured on this run?): the criterion that agreed best with this
    method's real AUROC on this run, else the one with the best MEASURED_AGREEMENT among those
    defined for the method here."""
    measured = [a for a in agreements if a.method == method and a.spearman is not None]
    if measured:
        best = max(measured, key=lambda a: (a.spearman, -CRITERIA.index(a.criterion)))
        return best.criterion, best, True
    defined = [c for c in CRITERIA if any(_finite(v) for v in values.get(c, {}).get(method, {}).values())]
    scored = [(measured_agreement(method, c), c) for c in defined]
    scored = [(rho, c) for rho, c in scored if rho is not None]
    if not scored:
        return (defined[0], None, False) if defined else (None, None, False)
    rho, criterion = max(scored)
    return criterion, Agreement(criterion, method, rho, 0), False


def _pick(by_epoch: Mapping[int, float], epochs: Sequence[int]) -> int | None:
    """Highest value among epochs; ties to the later epoch."""
    present = [e for e in epochs if _finite(by_epoch.get(e))]
    return max(present, key=lambda e: (round(by_epoch[e], 12), e)) if present else None


def _hedged(picks: Sequence[MethodPick], best: MethodPick, values,
            errors: Mapping[str, Mapping[int, float]]) -> tuple[MethodPick, str] | None:
    """The HEDGE_METHOD's pick and the sentence why, when `best` (another method) separates the
    test set better by no more than HEDGE_ERRORS standard errors of the difference; else None
    (also when either error is unknown)."""
    hedge = next((p for p in picks if p.method == HEDGE_METHOD), None)
    if hedge is None or best.method == HEDGE_METHOD:
        return None
    sep = values.get("test_separation", {})
    s_best, s_hedge = sep.get(best.method, {}).get(best.epoch), sep.get(HEDGE_METHOD, {}).get(hedge.epoch)
    e_best, e_hedge = errors.get(best.method, {}).get(best.epoch), errors.get(HEDGE_METHOD, {}).get(hedge.epoch)
    if not all(_finite(v) for v in (s_best, s_hedge, e_best, e_hedge)):
        return None
    error = math.hypot(e_best, e_hedge)
    if s_best - s_hedge > HEDGE_ERRORS * error:
        return None
    return hedge, (f"{HEDGE_METHOD} rather than {best.method}: {best.method} separates the test set from the "
                   f"held-out normals only {s_best - s_hedge:+.3f} better ({s_best:.3f} against "
                   f"{s_hedge:.3f}), within {HEDGE_ERRORS} of the standard error of that "
                   f"difference ({error:.3f}, from the number of held-out normals), so the "
                   f"{HEDGE_METHOD}, which hedges between its members, is suggested")


def method_picks(epochs: Sequence[int], methods: Sequence[str], values, agreements: list[Agreement],
                 unusable: Mapping[int, Sequence[str]]) -> dict[str, MethodPick]:
    """Per method, its best usable epoch by the criterion that agrees best with its real AUROC
    (on this run's labels, else MEASURED_AGREEMENT); a method usable at no epoch, or with no
    criterion value, has none."""
    picks = {}
    for method in methods:
        usable = [e for e in epochs if method not in unusable.get(e, ())]
        criterion, agreement, here = _best_criterion(method, values, agreements)
        if not usable or criterion is None:
            continue
        epoch = _pick(values[criterion][method], usable)
        if epoch is not None:
            picks[method] = MethodPick(method, int(epoch), criterion,
                                       agreement.spearman if agreement is not None else None, here,
                                       agreement.n_epochs if agreement is not None else 0)
    return picks


def suggest(epochs: Sequence[int], picks: Mapping[str, MethodPick], values, real,
            unusable: Mapping[int, Sequence[str]],
            errors: Mapping[str, Mapping[int, float]] | None = None) -> Suggestion:
    """Among the methods' own picks (method_picks: each one's best usable epoch by its
    best-agreeing criterion), the one whose test_separation is highest (synthetic AUROC when separation is
    undefined): both are label-free AUROCs, comparable between methods; PICK_ONLY methods
    are never suggested. errors: the standard
    error of each test_separation (separation_error); with them, the HEDGE_METHOD's pick wins
    unless another method's separation is higher by more than HEDGE_ERRORS errors."""
    source = "this run's test labels"
    candidates = [pick for pick in picks.values() if pick.method not in PICK_ONLY]
    if not candidates:
        return Suggestion(None, None, None, None, source,
                          ["no method is usable at any epoch with a label-free criterion: see the flags"])

    def quality(method: str, epoch: int) -> tuple[float, float]:
        sep = values.get("test_separation", {}).get(method, {}).get(epoch)
        syn = values.get("synthetic_auroc", {}).get(method, {}).get(epoch)
        return (sep if _finite(sep) else -1.0, syn if _finite(syn) else -1.0)

    best = max(candidates, key=lambda pick: quality(pick.method, pick.epoch))
    hedged = _hedged(candidates, best, values, errors or {})
    chosen = hedged[0] if hedged else best
    method, epoch, criterion, rho = chosen.method, chosen.epoch, chosen.criterion, chosen.agreement
    if chosen.here:
        how = (f"agreed best on {source}, {agreement_strength(rho)}: Spearman {rho:+.2f} with "
               f"{method}'s real AUROC over {chosen.n_epochs} epochs")
    else:
        source = DEFAULT_SOURCE
        said = f"Spearman {rho:+.2f} with real AUROC, {source}" if rho is not None else "never measured"
        how = (f"agreement not measurable on this run (no labels or under {MIN_EPOCHS} epochs); "
               f"the criterion that agreed best on labelled runs: {said}")
    reasons = [f"{method} ranked by {criterion.replace('_', ' ')}: {how}"]
    ruled_out = sorted({e for e in epochs if method in unusable.get(e, ())})
    if ruled_out:
        which = f"epoch{'s' if len(ruled_out) > 1 else ''} {', '.join(map(str, ruled_out))}"
        reasons.append(f"{which} left out: a flag makes {method} unusable there")
    sep = quality(method, epoch)[0]
    if hedged:
        reasons.append(hedged[1])
    elif sep >= 0:
        reasons.append(f"{method} separates the test set from its reference normals with AUROC {sep:.3f} at epoch "
                       f"{epoch} (label-free; highest among methods)")
    real_here = real.get(method, {}).get(epoch)
    best = max((v for v in real.get(method, {}).values() if _finite(v)), default=None)
    if _finite(real_here) and best is not None:
        reasons.append(f"check with labels: real AUROC {real_here:.3f} here, best epoch of {method} {best:.3f}")
    return Suggestion(int(epoch), method, criterion, rho, source, reasons,
                      float(real_here) if _finite(real_here) else None, best)


def rank(epochs: Sequence[int], methods: Sequence[str], values, real,
         unusable: Mapping[int, Sequence[str]], notes: Sequence[str] = (),
         errors: Mapping[str, Mapping[int, float]] | None = None) -> EpochRanking:
    """EpochRanking from criterion values (pure; see the module docstring). errors: the
    standard errors of test_separation per method and epoch (see suggest)."""
    agreements = agreements_of(values, real)
    picks = method_picks(epochs, methods, values, agreements, unusable)
    suggestion = suggest(epochs, picks, values, real, unusable, errors)
    return EpochRanking(list(epochs), list(methods), {c: {m: dict(v) for m, v in by.items()} for c, by in values.items()},
                        {m: dict(v) for m, v in real.items()}, agreements,
                        {int(e): sorted(m) for e, m in unusable.items()}, suggestion, list(notes),
                        synthetic_gaps(values, real), {m: dict(v) for m, v in (errors or {}).items()},
                        picks)


# --------------------------------------------------------------------------- per run


def _method_values(test, val, method: str, reference=None) -> tuple[float, float, float]:
    """(test_separation, its standard error, real AUROC or NaN) of one method at one epoch from
    its scores on the test set and on its normals: `reference` (core.scoring.reference's
    ReferenceScores: leave-one-out training normals and the held-out ones) when the method has
    one, else the held-out normals `val` (MethodScores)."""
    from core.evaluation.metrics import evaluation_table

    if reference is not None:
        finite = np.isfinite(reference.scores)
        normal_scores = reference.scores[finite]
        normal_categories = np.asarray(reference.categories, dtype=object)[finite]
    else:
        normal_scores, normal_categories = val.image_scores, val.categories
    per_category = _category_separations(normal_scores, normal_categories, test.image_scores,
                                         test.categories)  # once: the mean and its error
    separation, error = _mean_separation(per_category), _mean_error(per_category)
    labels = np.asarray(test.labels)
    real = float("nan")
    if (labels >= 0).any():
        known = labels >= 0
        table = evaluation_table(np.asarray(test.categories, object)[known], labels[known],
                                 {method: np.asarray(test.image_scores)[known]})
        real = float(table.loc[method, "mean"])
    return separation, error, real


def _scores_of(run, epoch: int, data_root, methods: Sequence[str], split: str):
    """{method: MethodScores} of one split, every method in one model pass (cached per
    checkpoint: the entries evaluate and the Overview read); a method that cannot be scored
    maps to the sentence why."""
    from core.runs.folder import RunError
    from core.scoring.checkpoint import score_checkpoint_methods

    try:
        return score_checkpoint_methods(run, epoch, data_root, tuple(methods), split, maps=False)
    except (ValueError, RuntimeError, RunError, OSError):
        pass  # one method at a time, so the others still count
    out = {}
    for method in methods:
        try:
            out[method] = score_checkpoint_methods(run, epoch, data_root, (method,), split,
                                                   maps=False)[method]
        except (ValueError, RuntimeError, RunError, OSError) as err:
            out[method] = str(err)
    return out


def _references_of(run, epoch: int, data_root, methods: Sequence[str]) -> dict:
    """{method: ReferenceScores} for the methods with leave-one-out normals (and the ensemble
    and adaptive, built on them): about 50 normals per category on a 60-image homework
    category instead of its 2-6 held-out ones, the noise that let a separation against six
    held-out DeepPCB normals read .74 for a score at chance. The same references calibration
    uses (cached per checkpoint); a method without one is left out (its held-out normals count)."""
    from core.runs.folder import RunError
    from core.scoring.checkpoint import calibration_reference
    from core.scoring.context import ScoringContext
    from core.scoring.options import CHECKPOINT_METHODS
    from core.scoring.reference import LEAVE_ONE_OUT_METHODS

    out = {}
    context = None  # one per epoch: the model and the training normals are read once
    for method in methods:
        if method in LEAVE_ONE_OUT_METHODS or method in CHECKPOINT_METHODS:
            try:
                context = context or ScoringContext(run, epoch, data_root)
                out[method] = calibration_reference(context, method)
            except (ValueError, RuntimeError, RunError, OSError):
                pass
    return out


def _restoration(run, epoch: int, data_root) -> float:
    from core.diagnostics.evidence import copy_evidence_of

    kept = copy_evidence_of(run, epoch, data_root).kept_share
    return 1.0 - kept.estimate if kept.defined else float("nan")


def rank_run(run, epochs: Sequence[int], data_root, methods: Sequence[str],
             unusable: Mapping[int, Sequence[str]], blind: bool = False) -> EpochRanking:
    """rank() over a run's epochs: scores each method on the test set and the held-out normals
    (core.scoring, cached per checkpoint: the same entries evaluate and the Overview use), reads
    the logged validation loss and synthetic AUROC, and the copy evidence. Real AUROC (mean of
    per-category image AUROCs, as evaluate reports it) only where the test set has labels.
    An epoch or method that cannot be scored is left out and named in the notes. blind=True
    ranks as if the test set had no labels (the suggestion a user without labels gets; the real
    AUROCs stay in `real` only as the check): what benchmarks/bench_epoch_choice.py measures.
    """
    from core.runs.folder import RunError

    logged = {int(m.get("epoch", 0)): m for m in run.metrics()}
    values: dict[str, dict[str, dict[int, float]]] = {c: {m: {} for m in methods} for c in CRITERIA}
    real: dict[str, dict[int, float]] = {m: {} for m in methods}
    errors: dict[str, dict[int, float]] = {m: {} for m in methods}
    notes: list[str] = []
    for epoch in epochs:
        record = logged.get(int(epoch), {})
        restoration = _restoration(run, epoch, data_root)
        tests = _scores_of(run, epoch, data_root, methods, "test")
        vals = _scores_of(run, epoch, data_root, methods, "val")
        references = _references_of(run, epoch, data_root, methods)
        for method in methods:
            test, val = tests[method], vals[method]
            if isinstance(test, str) or isinstance(val, str):
                notes.append(f"epoch {epoch}, {method}: not scored ({test if isinstance(test, str) else val})")
                continue
            try:
                separation, error, auroc = _method_values(test, val, method, references.get(method))
            except (ValueError, RuntimeError, RunError, OSError) as err:
                notes.append(f"epoch {epoch}, {method}: not scored ({err})")
                continue
            values["test_separation"][method][epoch] = separation
            errors[method][epoch] = error
            values["synthetic_auroc"][method][epoch] = (record.get("synthetic_auroc") or {}).get(method, float("nan"))
            values["val_loss"][method][epoch] = -record["val_loss"] if _finite(record.get("val_loss")) else float("nan")
            values["restoration"][method][epoch] = restoration if method in _reconstruction_methods() else float("nan")
            if _finite(auroc):
                real[method][epoch] = auroc
    values = {c: {m: {e: float(v) for e, v in by_e.items() if _finite(v)} for m, by_e in by_m.items()}
              for c, by_m in values.items()}
    real = {m: v for m, v in real.items() if v}
    errors = {m: {e: float(v) for e, v in by_e.items() if _finite(v)} for m, by_e in errors.items()}
    if not blind:
        return rank(epochs, methods, values, real, unusable, notes, errors)
    ranking = rank(epochs, methods, values, {}, unusable, notes, errors)
    return EpochRanking(ranking.epochs, ranking.methods, ranking.values, real, [], ranking.unusable,
                        ranking.suggestion, ranking.notes, ranking.gaps, ranking.errors, ranking.picks)


def _reconstruction_methods() -> tuple[str, ...]:
    from core.diagnostics.evidence import RECONSTRUCTION_METHODS

    return RECONSTRUCTION_METHODS
