"""Metrics of scores against labels: AUROC, AUPRO, F1-max, thresholds, the epoch evaluation."""
