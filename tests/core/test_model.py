import pytest
import torch

from core.config import ModelConfig
from core.model.unet import UNetAutoencoder, parse_skips


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("skips", ["all", "none", "1"])
def test_shapes_for_every_depth_and_skip_mode(depth, skips):
    model = UNetAutoencoder(ModelConfig(base_width=4, depth=depth, skips=skips)).eval()
    x = torch.rand(2, 3, 128, 128)  # a 2x2 bottleneck even at depth 6 (InstanceNorm needs it)
    with torch.no_grad():
        y = model(x)
        features = model.encode(x)
    assert y.shape == x.shape
    assert 0 <= y.min() and y.max() <= 1
    assert len(features) == depth + 1
    for level, feature in enumerate(features):
        assert feature.shape == (2, 4 * 2 ** level, 128 // 2 ** level, 128 // 2 ** level)


def test_skip_levels_change_the_decoder():
    full = UNetAutoencoder(ModelConfig(base_width=4, depth=3, skips="all"))
    top_only = UNetAutoencoder(ModelConfig(base_width=4, depth=3, skips="1"))
    none = UNetAutoencoder(ModelConfig(base_width=4, depth=3, skips="none"))
    counts = [sum(p.numel() for p in m.parameters()) for m in (none, top_only, full)]
    assert counts[0] < counts[1] < counts[2]
    assert top_only.skip_levels == (1,)


def test_skip_parsing_and_errors():
    assert parse_skips("all", 3) == (1, 2, 3)
    assert parse_skips("none", 3) == ()
    assert parse_skips("2,1", 3) == (1, 2)
    with pytest.raises(ValueError, match="out of range"):
        parse_skips("4", 3)
    with pytest.raises(ValueError, match="levels like"):
        parse_skips("top", 3)


@pytest.mark.parametrize("norm", ["batch", "instance", "group", "none"])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "gelu", "silu"])
def test_norm_and_activation_choices(norm, activation):
    model = UNetAutoencoder(ModelConfig(base_width=4, depth=2, norm=norm, activation=activation))
    y = model(torch.rand(2, 3, 32, 32))
    y.mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_bottleneck_squeeze():
    model = UNetAutoencoder(ModelConfig(base_width=4, depth=2, bottleneck_channels=3))
    assert model.encode(torch.rand(1, 3, 32, 32))[-1].shape[1] == 3


def test_encode_upto_stops_early_with_the_same_features():
    """Scoring reads shallow levels only (knn: 1-2); stopping there must not change them."""
    model = UNetAutoencoder(ModelConfig(base_width=4, depth=3, bottleneck_channels=2)).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        full = model.encode(x)
        for upto in range(4):
            part = model.encode(x, upto=upto)
            assert len(part) == upto + 1
            for a, b in zip(part, full, strict=False):
                assert torch.equal(a, b)
    assert full[-1].shape[1] == 2  # the squeeze applies at the bottleneck only
