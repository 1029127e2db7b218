"""Diagnostics of a run, per checkpoint: is this model healthy, and which epoch should I use?

weights        per-layer weight statistics and histograms from checkpoints alone
gradients      the per-layer gradient norms training logged; vanishing detection
probe          the fixed probe set (normals + masked defects) every epoch is judged on
reconstruction pure numbers: output vs input spread, intensity, saturation, detail, defect error
evidence       does the model copy defects? localisation AUC and pasted-defect share, bootstrap intervals
health         flags (nan, collapsed, identity_copy, defects_missed, dead_layers, blurry) with evidence
               and the scoring methods each makes unusable
ranking        label-free epoch criteria, their Spearman agreement with real AUROC, the suggestion
features       pooled encoder features per image; cached clusters and 2-D maps
clustering     K-Means purity / ARI / confused pairs; UMAP and PCA maps (pure)
timeline       one epoch's diagnosis, a run's timeline, the suggested epoch
results        the typed results: EpochDiagnosis, RunDiagnosis (to_dict is the JSON form)
choice         the one chosen-epoch rule
compare        two runs side by side

Everything that reads a checkpoint is cached on disk per checkpoint (core.runs.cache).
"""

# Attributes load on first use (PEP 562): importing one submodule never runs this
# package's other modules, so no import circle passes through this file.
from __future__ import annotations

from core import lazy_exports

_EXPORTS = {
    "ClusterResult": "core.diagnostics.clustering",
    "CopyEvidence": "core.diagnostics.evidence",
    "EpochDiagnosis": "core.diagnostics.results",
    "EpochRanking": "core.diagnostics.ranking",
    "RunDiagnosis": "core.diagnostics.results",
    "Suggestion": "core.diagnostics.ranking",
    "copy_evidence_of": "core.diagnostics.evidence",
    "rank_run": "core.diagnostics.ranking",
    "DataFolderMissing": "core.scoring.data",
    "FeatureResult": "core.diagnostics.features",
    "HealthFlag": "core.diagnostics.health",
    "HealthReport": "core.diagnostics.health",
    "cluster_features": "core.diagnostics.clustering",
    "compare_runs": "core.diagnostics.compare",
    "diagnose_epoch": "core.diagnostics.timeline",
    "diagnose_run": "core.diagnostics.timeline",
    "embed_2d": "core.diagnostics.clustering",
    "encoder_features": "core.diagnostics.features",
    "epoch_health": "core.diagnostics.timeline",
    "feature_clusters": "core.diagnostics.features",
    "feature_embedding": "core.diagnostics.features",
    "gradient_table": "core.diagnostics.gradients",
    "loss_curves": "core.diagnostics.compare",
    "probe_set": "core.diagnostics.probe",
    "reconstruction_health": "core.diagnostics.health",
    "reconstruction_numbers_of": "core.diagnostics.health",
    "suggest_epoch": "core.diagnostics.timeline",
    "vanishing_gradients": "core.diagnostics.gradients",
    "weight_health": "core.diagnostics.health",
    "weight_histogram": "core.diagnostics.weights",
    "weight_stats": "core.diagnostics.weights",
    "weight_std_table": "core.diagnostics.weights",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
