import pytest
import torch

from core.model.losses import ReconstructionLoss, parse_loss_spec, ssim_error_map


def test_spec_parsing():
    assert parse_loss_spec("0.5*ssim+0.5*l1") == [(0.5, "ssim"), (0.5, "l1")]
    assert parse_loss_spec("l2") == [(1.0, "l2")]
    with pytest.raises(ValueError, match="msssim"):
        parse_loss_spec("0.5*msssim+l1")


def test_per_image_values_and_mix():
    x = torch.rand(3, 3, 32, 32)
    y = x.clone()
    y[1] = 1 - y[1]
    loss = ReconstructionLoss("0.5*ssim+0.5*l1")
    values = loss(x, y)
    assert values.shape == (3,)
    assert values[0] == pytest.approx(0, abs=1e-5) and values[2] == pytest.approx(0, abs=1e-5)
    parts = loss.components(x, y)
    assert values[1] == pytest.approx(0.5 * parts["ssim"][1] + 0.5 * parts["l1"][1])
    assert ReconstructionLoss("l2")(x, y)[1] == pytest.approx(((x[1] - y[1]) ** 2).mean())


def test_ssim_map_localises_damage_and_is_differentiable():
    x = torch.rand(1, 3, 32, 32)
    y = x.clone()
    y[..., 4:10, 4:10] = 0.5
    error = ssim_error_map(x, y)
    assert error.shape == (1, 32, 32)
    assert error[0, 5:9, 5:9].mean() > 5 * error[0, 20:, 20:].mean()
    z = x.clone().requires_grad_(True)
    ReconstructionLoss("ssim")(z, y).sum().backward()
    assert torch.isfinite(z.grad).all()


def test_tiny_images_use_a_smaller_window():
    x = torch.rand(2, 3, 8, 8)
    assert ssim_error_map(x, x).abs().max() < 1e-4
