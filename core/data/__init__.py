"""Datasets: layouts on disk -> samples -> decoded in-memory image sets."""
