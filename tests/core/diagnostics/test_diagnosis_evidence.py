"""Copy evidence (core.diagnostics.evidence): the measurements, their intervals and the flags."""

from __future__ import annotations

import numpy as np

from core.diagnostics.evidence import (
    COPY_KEPT_SHARE,
    MISSED_LOCALISATION_AUC,
    RECONSTRUCTION_METHODS,
    CopyEvidence,
    Interval,
    bootstrap_mean,
    copy_evidence,
    copy_evidence_of,
    kept_shares,
    localisation_aucs,
)
from core.diagnostics.health import defects_missed_flag, identity_copy_flag, reconstruction_health
from core.runs.folder import Run


def test_bootstrap_interval_holds_the_mean_narrows_with_images_and_repeats():
    rng = np.random.default_rng(0)
    few, many = rng.normal(0.5, 0.1, 8), rng.normal(0.5, 0.1, 200)
    a, b = bootstrap_mean(few), bootstrap_mean(many)
    assert a.low < a.estimate < a.high and b.low < b.estimate < b.high
    assert (b.high - b.low) < (a.high - a.low) / 2
    assert bootstrap_mean(few) == a  # deterministic for a seed
    assert bootstrap_mean([np.nan, 1.0, 1.0]).n == 2
    assert not bootstrap_mean([]).defined
    assert "90% interval" in str(a)


def test_localisation_and_kept_share_read_copying_and_removal():
    rng = np.random.default_rng(1)
    clean = rng.uniform(0.2, 0.8, (5, 3, 16, 16))
    masks = np.zeros((5, 16, 16))
    masks[:, 4:9, 4:9] = 1
    pasted = clean.copy()
    pasted[:, :, 4:9, 4:9] = 1.0
    removed_error = np.abs(pasted - clean).mean(axis=1)
    assert np.allclose(localisation_aucs(removed_error, masks), 1.0)  # error only on the defect
    assert np.allclose(localisation_aucs(np.ones((5, 16, 16)), masks), 0.5)  # no localisation at all
    assert np.isnan(localisation_aucs(removed_error, np.zeros_like(masks))).all()  # nothing to localise
    assert np.allclose(kept_shares(clean, pasted, clean, pasted, masks), 1.0)  # output = input: copied
    assert np.allclose(kept_shares(clean, pasted, clean, clean, masks), 0.0)  # defect removed
    copying = copy_evidence(None, (clean, pasted, clean, pasted, masks))
    removing = copy_evidence((pasted, clean, masks), (clean, pasted, clean, clean, masks))
    assert copying.copies and not removing.copies and not removing.misses_real_defects
    assert CopyEvidence.from_dict(copying.to_dict()) == copying


def _evidence(real: float, high: float, kept: float, low: float) -> CopyEvidence:
    return CopyEvidence(Interval(real, real - 0.05, high, 20), Interval(0.6, 0.55, 0.65, 20),
                        Interval(kept, low, kept + 0.05, 20))


def test_flags_bite_where_the_whole_interval_crosses_the_line():
    copying = identity_copy_flag(_evidence(0.45, 0.5, 0.8, COPY_KEPT_SHARE + 0.01), "all")
    assert copying is not None and copying.severity == "error"
    assert copying.unusable == RECONSTRUCTION_METHODS and "knn" not in copying.unusable
    assert "90% interval" in copying.sentence and "skips=all" in copying.sentence
    # an interval that reaches the line is not sure enough to flag
    assert identity_copy_flag(_evidence(0.45, 0.5, 0.8, COPY_KEPT_SHARE - 0.01), "all") is None
    missed = defects_missed_flag(_evidence(0.5, MISSED_LOCALISATION_AUC - 0.01, 0.1, 0.05))
    assert missed is not None and missed.unusable == RECONSTRUCTION_METHODS
    assert defects_missed_flag(_evidence(0.5, MISSED_LOCALISATION_AUC + 0.01, 0.1, 0.05)) is None
    # a model that copies is named by identity_copy alone
    assert defects_missed_flag(_evidence(0.45, 0.5, 0.8, 0.7)) is None
    assert identity_copy_flag(None) is None


def test_a_model_that_copies_keeps_pasted_defects_and_is_flagged(copying_run):
    evidence = copy_evidence_of(copying_run, 1)
    assert evidence.kept_share.low > 0.95 and evidence.copies
    report = reconstruction_health(copying_run, 1)
    assert report.copy == evidence
    assert report.flag("identity_copy") is not None and report.unusable == list(RECONSTRUCTION_METHODS)
    assert report.to_dict()["copy"]["copies"] is True


def test_a_trained_model_without_skips_does_not_copy(tiny_run):
    tiny = Run(tiny_run.path)
    for epoch in tiny.epochs():
        evidence = copy_evidence_of(tiny, epoch)
        assert evidence.kept_share.defined and not evidence.copies, evidence
        assert reconstruction_health(tiny, epoch).flag("identity_copy") is None
