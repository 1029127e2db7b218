"""Diagnostics of a run, per checkpoint: is this model healthy, and which epoch should I use?

weights        per-layer weight statistics and histograms from checkpoints alone
gradients      the per-layer gradient norms training logged; vanishing detection
probe          the fixed probe set (normals + masked defects) every epoch is judged on
reconstruction pure numbers: output vs input spread, intensity, saturation, detail, defect error
health         flags (nan, collapsed, identity_copy, dead_layers, blurry) with evidence
features       pooled encoder features per image; cached clusters and 2-D maps
clustering     K-Means purity / ARI / confused pairs; UMAP and PCA maps (pure)
timeline       one epoch's diagnosis, a run's timeline, the suggested epoch
compare        two runs side by side

Everything that reads a checkpoint is cached on disk per checkpoint (core.cache).
"""

from core.diagnostics.clustering import ClusterResult, cluster_features, embed_2d
from core.diagnostics.compare import compare_runs, loss_curves
from core.diagnostics.features import (
    FeatureResult,
    encoder_features,
    feature_clusters,
    feature_embedding,
)
from core.diagnostics.gradients import gradient_table, vanishing_gradients
from core.diagnostics.health import (
    HealthFlag,
    HealthReport,
    reconstruction_health,
    reconstruction_numbers_of,
    weight_health,
)
from core.diagnostics.probe import DataMissingError, probe_set
from core.diagnostics.timeline import diagnose_epoch, diagnose_run, epoch_health, suggest_epoch
from core.diagnostics.weights import weight_histogram, weight_stats, weight_std_table

__all__ = [
    "ClusterResult",
    "DataMissingError",
    "FeatureResult",
    "HealthFlag",
    "HealthReport",
    "cluster_features",
    "compare_runs",
    "diagnose_epoch",
    "diagnose_run",
    "embed_2d",
    "encoder_features",
    "epoch_health",
    "feature_clusters",
    "feature_embedding",
    "gradient_table",
    "loss_curves",
    "probe_set",
    "reconstruction_health",
    "reconstruction_numbers_of",
    "suggest_epoch",
    "vanishing_gradients",
    "weight_health",
    "weight_histogram",
    "weight_stats",
    "weight_std_table",
]
