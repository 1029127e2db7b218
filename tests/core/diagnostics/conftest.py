"""Runs the diagnostics tests share: a network wired to copy its input (identity_copy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.model.unet import UNetAutoencoder
from core.runs.folder import Run
from tests.conftest import tiny_config, write_run

COPY_KNOTS = np.array([0, .004, .01, .02, .04, .07, .1, .15, .2, .3, .4, .5, .6, .7, .8, .85, .9, .93, .96,
                       .98, .99, .996])


def copy_state(model: UNetAutoencoder) -> dict:
    """Weights that make a depth-1, skips="1", norm="none" U-Net output its input.

    Input -> stem (identity on 3 channels) -> skip -> one ReLU channel per colour and knot,
    relu(x - t_k) -> head: a least-squares piecewise-linear fit of logit(x), so that the final
    sigmoid returns x (max error ~0.002). The bottleneck path is zero: everything goes through
    the skip, exactly the failure identity_copy must catch.
    """
    k = len(COPY_KNOTS)
    width = 3 * k
    x = np.linspace(0, 1, 2001)
    clipped = np.clip(x, 1e-3, 1 - 1e-3)
    basis = np.c_[np.maximum(x[:, None] - COPY_KNOTS[None], 0), np.ones_like(x)]
    coef = np.linalg.lstsq(basis, np.log(clipped / (1 - clipped)), rcond=None)[0]
    state = {name: torch.zeros_like(t) for name, t in model.state_dict().items()}
    for c in range(3):
        state["stem.0.weight"][c, c, 1, 1] = 1
        state["stem.3.weight"][c, c, 1, 1] = 1
        for j, knot in enumerate(COPY_KNOTS):
            channel = c * k + j
            state["up.0.block.0.weight"][channel, width + c, 1, 1] = 1  # from the skip half
            state["up.0.block.0.bias"][channel] = -knot
            state["up.0.block.3.weight"][channel, channel, 1, 1] = 1
        state["head.weight"][c, c * k:(c + 1) * k, 0, 0] = torch.tensor(coef[:-1], dtype=torch.float32)
        state["head.bias"][c] = float(coef[-1])
    return state


@pytest.fixture(scope="session")
def copying_run(tmp_path_factory, demo_root) -> Run:
    """A depth-1 U-Net whose output is its input through the full-resolution skip."""
    config = tiny_config(demo_root, "unused", **{"model.depth": 1, "model.skips": "1", "model.norm": "none",
                                                 "model.base_width": 3 * len(COPY_KNOTS)})
    return write_run(tmp_path_factory.mktemp("copying"), config, {1: copy_state(UNetAutoencoder(config.model))})
