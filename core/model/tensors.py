"""Conversions between the uint8 image arrays we keep in memory and model tensors."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [0, 1] on device."""
    array = np.ascontiguousarray(images)
    if not array.flags.writeable:  # torch warns on read-only buffers (e.g. arrays from a cache)
        array = array.copy()
    batch = torch.from_numpy(array).to(device, non_blocking=True)
    return batch.permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(batch: np.ndarray) -> np.ndarray:
    """(B, 3, H, W) float in [0, 1], as `reconstruct` returns it -> (B, H, W, 3) uint8 for display."""
    return np.clip(np.rint(np.asarray(batch).transpose(0, 2, 3, 1) * 255.0), 0, 255).astype(np.uint8)


@torch.no_grad()
def reconstruct(model: torch.nn.Module, images: np.ndarray, device: torch.device | str = "cpu",
                batch_size: int = 32) -> np.ndarray:
    """Reconstructions of uint8 images, as float32 (N, 3, H, W) in [0, 1] on the CPU."""
    model.eval()
    outputs = [model(to_tensor(images[i:i + batch_size], device)).float().cpu()
               for i in range(0, len(images), batch_size)]
    if not outputs:
        return np.zeros((0, 3) + images.shape[1:3], np.float32)
    return torch.cat(outputs).numpy()
