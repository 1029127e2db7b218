"""Speed settings: bf16 autocast and channels_last layout for the training step, and the
layout models are scored in (`for_inference`).

Both are config fields with "auto" as default, which switches them on for CUDA only: on a GPU
with bf16 tensor cores (Ampere and later) convolutions run in bf16 and NHWC layout avoids
layout conversions around cuDNN's kernels; on the CPU both usually cost more than they save,
so a CPU run trains exactly as plain fp32 NCHW unless the user asks otherwise. The loss is
always computed in float32 from the (upcast) reconstruction; checkpoints hold float32 weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.config import TrainConfig


def _switch(value: str, device: torch.device) -> bool:
    return device.type == "cuda" if value == "auto" else value in ("on", "bf16")


@dataclass(frozen=True)
class Acceleration:
    bf16: bool = False
    channels_last: bool = False

    @classmethod
    def for_run(cls, config: TrainConfig, device: torch.device) -> Acceleration:
        """config.precision auto|bf16|fp32 and config.channels_last auto|on|off, for `device`."""
        return cls(bf16=_switch(config.precision, device), channels_last=_switch(config.channels_last, device))

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """The same model, its 4-D weights in channels_last layout when that is on (in place)."""
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def forward(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """model(x) for training: (B, 3, H, W) float in, float32 (B, 3, H, W) out."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if not self.bf16:
            return model(x)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):
            y = model(x)
        return y.float()


def device_memory(device: torch.device) -> dict[str, float]:
    """{"gpu_peak_mib": peak allocated since the last call} on CUDA (then resets it); {} on CPU."""
    if device.type != "cuda":
        return {}
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    torch.cuda.reset_peak_memory_stats(device)
    return {"gpu_peak_mib": round(peak, 1)}


def for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """The same model (in place) with its 4-D weights in channels_last layout, for scoring.

    Unlike training, inference gains from NHWC on the CPU too: forward passes of the default
    U-Net at 64 px ran 10-45% faster per image on a 2-core CPU, depending on the batch, and on
    CUDA it is the layout cuDNN prefers. Inputs may stay NCHW (convolutions follow the weights);
    outputs equal the NCHW ones up to float rounding (~1e-5)."""
    return model.to(memory_format=torch.channels_last)
