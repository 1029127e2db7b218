"""The pretrained-free loss terms (core.model.losses_free) in the --loss mix syntax."""

import pytest
import torch
import torch.nn.functional as F

from core.model.losses import ReconstructionLoss, parse_loss_spec
from core.model.losses_free import FREE_LOSS_NAMES, random_perceptual_loss


def _blur(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), 5, stride=1)


@pytest.mark.parametrize("name", FREE_LOSS_NAMES)
def test_each_term_is_zero_on_a_copy_positive_otherwise_and_trainable(name):
    x = torch.rand(2, 3, 32, 32)
    assert parse_loss_spec(f"0.5*ssim+0.5*{name}") == [(0.5, "ssim"), (0.5, name)]
    loss = ReconstructionLoss(f"1*{name}")
    assert torch.allclose(loss(x, x), torch.zeros(2), atol=1e-6)
    y = _blur(x).requires_grad_(True)
    values = loss(x, y)
    assert values.shape == (2,) and (values > 0).all()
    values.sum().backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["grad", "randperc"])
def test_blur_costs_more_than_a_brightness_shift_of_the_same_l1(name):
    # the failure these terms exist for: a blurry average image. L1 cannot tell it from a
    # uniform shift of equal size; each term must charge the blur more. (ffl is left out on
    # purpose: a uniform shift is all DC error, which its focal weight charges in full.)
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 0.8 + 0.1
    blurred = _blur(x)
    shift = (blurred - x).abs().mean().item()
    shifted = (x + shift).clamp(0, 1)
    l1 = ReconstructionLoss("l1")
    assert l1(x, shifted).mean() == pytest.approx(l1(x, blurred).mean(), rel=0.05)
    term = ReconstructionLoss(name)
    assert term(x, blurred).mean() > 2 * term(x, shifted).mean()


def test_random_network_is_fixed_by_its_seed_and_leaves_the_global_rng_alone():
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    torch.manual_seed(123)
    first = random_perceptual_loss(x, y)
    after = torch.rand(1)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), after)
    from core.model import losses_free

    losses_free._NETS.clear()  # rebuilt from the seed: the same network
    assert torch.equal(random_perceptual_loss(x, y), first)


def test_unknown_term_names_the_known_ones():
    with pytest.raises(ValueError, match="randperc"):
        parse_loss_spec("0.5*vgg+0.5*l1")
