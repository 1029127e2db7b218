"""Which epoch: the one rule for "the chosen epoch" that every surface uses (the CLI's
`--epoch chosen`, the dashboard's sidebar, Overview and Compare, export and its card).

The rule, in order:

  pinned                  the user pinned an epoch (pinned.json): their word wins.
  suggested               the diagnosis' suggestion (core.diagnostics.ranking: an epoch *and* a
                          score method, label-free; never an epoch where a health flag rules that
                          method out), or, without a scorable test set, the health-only suggestion
                          (core.diagnostics.timeline.suggest_epoch: no error flag).
  ranked for a method    asked for one score method other than the suggestion's (evaluate or
                          score with --method ssimz): that method's own pick in the same ranking
                          (its best usable epoch by the criterion that agrees best with it;
                          core.diagnostics.ranking.method_picks). A method the ranking does not
                          score that a flag rules out at the suggested epoch: the lowest
                          validation loss among the epochs where it is usable instead. The
                          product never hands a score an epoch it calls useless for it.
  lowest validation loss  no diagnosis available: the epoch with the lowest validation loss
                          among the epochs without an error flag (all epochs when health is
                          unknown).
  last                    nothing logged: the last epoch.

Measured against the alternatives (lowest validation loss, last epoch, best synthetic AUROC) by
their regret in real AUROC over labelled runs: benchmarks/bench_epoch_choice.py, docs/diagnosis.md.

`--epoch best` keeps its documented meaning, the lowest validation loss; every surface that shows
both says why they differ (EpochChoice.differs_from_best).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.diagnostics.evidence import RECONSTRUCTION_METHODS
from core.runs.folder import Run, RunError

if TYPE_CHECKING:
    from core.diagnostics.health import HealthReport
    from core.diagnostics.results import RunDiagnosis

PINNED, SUGGESTED, RANKED, LOWEST_VAL_LOSS, LAST = (
    "pinned", "suggested", "ranked", "lowest validation loss", "last")


@dataclass(frozen=True)
class EpochChoice:
    """The chosen epoch of a run, the score method to use with it, and why.

    epoch: None when the run has no epochs. method: the suggestion's method, or the one asked
    for (None: the product's default score). rule: PINNED | SUGGESTED | RANKED |
    LOWEST_VAL_LOSS | LAST. reason: one sentence.
    caveat: one sentence when the epoch carries a health flag that does not rule the method
    out (e.g. knn at an epoch whose decoder collapsed), else "". best_val_epoch: the epoch with
    the lowest validation loss (what `--epoch best` means), for saying why the two differ.
    """

    epoch: int | None
    method: str | None
    rule: str
    reason: str
    caveat: str = ""
    best_val_epoch: int | None = None

    @property
    def label(self) -> str:
        """'epoch 5 (suggested for knn)' -- how every surface names the choice."""
        if self.epoch is None:
            return "no epoch"
        what = self.rule + (f" for {self.method}"
                            if self.method and self.rule in (SUGGESTED, RANKED, LOWEST_VAL_LOSS) else "")
        return f"epoch {self.epoch} ({what})"

    @property
    def differs_from_best(self) -> str:
        """'' when the chosen epoch is also the lowest-validation-loss one, else one sentence."""
        if self.best_val_epoch is None or self.epoch is None or self.best_val_epoch == self.epoch:
            return ""
        return (f"Epoch {self.best_val_epoch} has the lowest validation loss (what --epoch best means); "
                f"the chosen epoch is {self.epoch} because it is {self.rule}: a low validation loss "
                "only says normal images are rebuilt well, which a collapsed or copying model can also do.")

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "method": self.method, "rule": self.rule, "reason": self.reason,
                "caveat": self.caveat, "best_val_epoch": self.best_val_epoch, "label": self.label}


def caveat_for(epoch: int, method: str | None, report: HealthReport | None) -> str:
    """One sentence for a newcomer when `epoch` is flagged but the flags leave `method` usable."""
    if report is None:
        return ""
    errors = [f for f in report.flags if f.severity == "error"]
    if not errors:
        return ""
    names = ", ".join(f.name.replace("_", " ") for f in errors)
    unusable = [m for m in report.unusable if m != method]
    if method and method not in RECONSTRUCTION_METHODS:
        return (f"Epoch {epoch} is flagged {names}, which makes {', '.join(unusable) or 'other scores'} "
                f"useless there; {method} is still fine: it compares the image with normal training "
                "images (their encoder features or their pixels) and never looks at the reconstruction.")
    return (f"Epoch {epoch} is flagged {names}: look at its reconstructions before trusting any score "
            "that compares an image with its reconstruction.")


def choose_epoch(run: Run, diagnosis: RunDiagnosis | None = None, method: str | None = None) -> EpochChoice:
    """The chosen epoch (module docstring) of a run. diagnosis: a diagnose_run result (its
    suggestion and per-epoch reports), or None where it is not available (then the health of
    the epochs is unknown and the rule falls back to the lowest validation loss). method: the
    one score method the caller will use (None: the suggestion's), which moves a suggested
    epoch whose flags rule that method out (see `usable_for`)."""
    epochs = run.epochs()
    best_val = run.best_by_val_loss()
    if not epochs:
        return EpochChoice(None, None, LAST, "the run has no saved epoch yet", best_val_epoch=best_val)
    reports = {r.epoch: r for r in diagnosis.reports} if diagnosis is not None else {}
    pinned = run.pinned() or {}
    if pinned.get("epoch") in epochs:
        epoch = int(pinned["epoch"])
        pinned_method = pinned.get("method") or None  # the pin wins over the asked method
        why = pinned.get("reason") or "no reason given"
        return EpochChoice(epoch, pinned_method, PINNED, f"pinned in the run: {why}",
                           caveat_for(epoch, pinned_method, reports.get(epoch)), best_val)
    suggestion = diagnosis.suggestion if diagnosis is not None else None
    if suggestion is not None and suggestion.epoch in epochs:
        epoch, suggested = int(suggestion.epoch), suggestion.method or None
        ranking = diagnosis.ranking
        pick = ranking.picks.get(method) if method and ranking is not None else None
        if pick is not None and method != suggested:
            return ranked_for(pick, suggestion, reports, best_val)
        if method and epoch in reports and method in reports[epoch].unusable:
            return usable_for(run, method, epoch, suggested, reports, best_val)
        reason = str(suggestion.reasons[0]) if suggestion.reasons else "the diagnosis' suggestion"
        return EpochChoice(epoch, suggested, SUGGESTED, reason,
                           caveat_for(epoch, suggested, reports.get(epoch)), best_val)
    if diagnosis is not None and reports:
        healthy = [e for e in epochs if e not in reports or reports[e].healthy]
        pick = run.best_by_val_loss(healthy)
        if pick is not None:
            return EpochChoice(pick, None, LOWEST_VAL_LOSS,
                               "lowest validation loss among the epochs without an error flag "
                               "(the label-free ranking was not available)", best_val_epoch=best_val)
        if not healthy:
            return EpochChoice(epochs[-1], None, LAST, "every epoch has an error flag: the last one is "
                               "shown; look at the flags before using any", best_val_epoch=best_val)
    if best_val is not None:
        return EpochChoice(best_val, None, LOWEST_VAL_LOSS,
                           "lowest validation loss (the epochs' health has not been checked)",
                           best_val_epoch=best_val)
    return EpochChoice(epochs[-1], None, LAST, "no validation loss was logged: the last epoch",
                       best_val_epoch=best_val)


def ranked_for(pick, suggestion, reports: dict, best_val: int | None) -> EpochChoice:
    """The choice for a method the ranking scored that is not the suggestion's: its own pick
    (core.diagnostics.ranking.MethodPick), with the sentence why."""
    from core.diagnostics.ranking import agreement_strength

    how = (f"agreed best with its real AUROC on this run's labels, "
           f"{agreement_strength(pick.agreement)} (Spearman {pick.agreement:+.2f})"
           if pick.here and pick.agreement is not None else
           "agreed best on labelled benchmark runs (docs/diagnosis.md)" if pick.agreement is not None
           else "the only one defined for it")
    best = ("the lowest validation loss" if pick.criterion == "val_loss"
            else f"the highest {pick.criterion.replace('_', ' ')}")
    reason = (f"the label-free ranking's epoch for {pick.method}: {best} among the epochs where no flag rules "
              f"{pick.method} out (the criterion that {how}); the run's suggestion is epoch "
              f"{suggestion.epoch} for {suggestion.method or 'the default score'}")
    return EpochChoice(pick.epoch, pick.method, RANKED, reason,
                       caveat_for(pick.epoch, pick.method, reports.get(pick.epoch)), best_val)


def usable_for(run: Run, method: str, suggested_epoch: int, suggested_method: str | None,
               reports: dict, best_val: int | None) -> EpochChoice:
    """The choice for `method` when the suggested epoch's flags rule it out: the lowest
    validation loss among the epochs where no flag names `method` unusable (the last such epoch
    without a logged loss), else the suggestion itself with its caveat."""
    usable = [e for e in run.epochs() if e not in reports or method not in reports[e].unusable]
    names = ", ".join(f.name.replace("_", " ") for f in reports[suggested_epoch].flags
                      if method in f.unusable)
    moved = (f"the suggestion (epoch {suggested_epoch}, for {suggested_method or 'the default score'}) "
             f"is flagged {names}, which makes {method} useless there")
    pick = (run.best_by_val_loss(usable) or usable[-1]) if usable else None
    if pick is None:
        return EpochChoice(suggested_epoch, method, SUGGESTED, f"{moved}, and so is every other epoch",
                           caveat_for(suggested_epoch, method, reports.get(suggested_epoch)), best_val)
    return EpochChoice(pick, method, LOWEST_VAL_LOSS,
                       f"{moved}: lowest validation loss among the {len(usable)} epochs where {method} "
                       "is usable", best_val_epoch=best_val)


def diagnosis_of(run: Run, data_root=None) -> RunDiagnosis | None:
    """diagnose_run without clustering (health flags, the label-free ranking; cached per
    checkpoint, so the follower's and the Overview's work is reused); None when the run's data
    cannot be read (the choice then says the health was not checked)."""
    from core.diagnostics.timeline import diagnose_run
    from core.scoring.data import run_data_root

    try:
        root = run_data_root(run.config(), data_root)
    except (ValueError, OSError):
        return None
    return diagnose_run(run, data_root=root, cluster=False)


def resolve_epoch(run: Run, which: str | int, data_root=None,
                  method: str | None = None) -> tuple[int, EpochChoice | None]:
    """--epoch as the CLI takes it: a number, "chosen" (choose_epoch on diagnosis_of, for
    `method` when the command scores with one method), "best" (lowest validation loss) or
    "last". Returns (epoch, the EpochChoice when "chosen"); raises RunError with a sentence for
    anything else."""
    if str(which).strip().lower() != "chosen":
        return run.resolve_epoch(which), None
    if not run.epochs():
        raise RunError(f"{run.path}: no finished epochs yet")
    choice = choose_epoch(run, diagnosis_of(run, data_root), method)
    return int(choice.epoch), choice


def choice_lines(choice: EpochChoice) -> list[str]:
    """The sentences a command prints about a chosen epoch: label and reason, caveat, and why it
    is not the lowest-validation-loss epoch."""
    lines = [f"{choice.label}: {choice.reason}"]
    return lines + [text for text in (choice.caveat, choice.differs_from_best) if text]
