"""bf16 autocast and channels_last: on for CUDA under "auto", off on the CPU; when asked for on
the CPU they train and still write float32 checkpoints that load anywhere."""

import torch

from core.config import TrainConfig
from core.model.accel import Acceleration, device_memory
from core.model.unet import UNetAutoencoder
from core.runs.checkpoint import model_from_checkpoint, read_payload
from core.training.loop import train_one
from tests.conftest import tiny_config


def test_auto_means_cuda_only():
    config = TrainConfig()
    assert Acceleration.for_run(config, torch.device("cpu")) == Acceleration(False, False)
    assert Acceleration.for_run(config, torch.device("cuda")) == Acceleration(True, True)
    forced = config.with_overrides({"precision": "fp32", "channels_last": "off"})
    assert Acceleration.for_run(forced, torch.device("cuda")) == Acceleration(False, False)
    assert device_memory(torch.device("cpu")) == {}


def test_bf16_channels_last_forward_is_close_to_fp32():
    model = UNetAutoencoder(TrainConfig().model).eval()
    x = torch.rand(2, 3, 32, 32)
    reference = model(x)
    fast = Acceleration(bf16=True, channels_last=True)
    fast.prepare(model)
    assert model.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    y = fast.forward(model, x)
    assert y.dtype == torch.float32 and y.shape == reference.shape
    assert (y - reference).abs().max() < 0.05  # bf16 keeps about 3 significant digits


def test_training_in_bf16_channels_last_on_cpu_writes_float32_checkpoints(demo_root, tmp_path):
    config = tiny_config(demo_root, tmp_path / "bf16", epochs=1, categories=["pill"], precision="bf16",
                         channels_last="on")
    run = train_one(config, progress=False, log=lambda _: None)
    record = run.metrics()[-1]
    assert record["train_loss"] == record["train_loss"] and record["train_loss"] > 0
    payload = read_payload(run, 1)
    assert all(t.dtype == torch.float32 for t in payload["model"].values() if t.is_floating_point())
    model = model_from_checkpoint(payload)
    assert torch.isfinite(model(torch.rand(1, 3, 32, 32))).all()


def test_bad_speed_settings_are_named():
    import pytest

    for key, value, words in (("precision", "fp16", "precision must be auto, bf16 or fp32"),
                              ("channels_last", True, "channels_last must be auto, on or off"),
                              ("workers", -1, "workers must be 0 or more")):
        with pytest.raises(ValueError, match=words):
            TrainConfig().with_overrides({key: value})
