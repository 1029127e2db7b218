import pytest

from core.config import TrainConfig


def test_round_trip_through_json(tmp_path):
    config = TrainConfig(epochs=3).with_overrides({"model.depth": 3, "augment.hflip_p": 0.0})
    config.save(tmp_path / "c.json")
    loaded = TrainConfig.load(tmp_path / "c.json")
    assert loaded == config
    assert loaded.model.depth == 3 and loaded.augment.hflip_p == 0.0


def test_unknown_field_is_named():
    with pytest.raises(ValueError, match="model.widht"):
        TrainConfig.from_dict({"model": {"widht": 3}})
    with pytest.raises(ValueError, match="unknown config field 'nope.x'"):
        TrainConfig().with_overrides({"nope.x": 1})


@pytest.mark.parametrize("override, message", [
    ({"image_size": 50}, "divisible"),
    ({"model.depth": 7}, "depth"),
    ({"device": "tpu"}, "device"),
    ({"epochs": 0}, "epochs"),
    ({"image_size": 16, "model.depth": 4}, "bottleneck of at least 2x2"),
    ({"objective": "denoize"}, "objective must be one of reconstruct, denoise, discriminative"),
])
def test_invalid_values_are_explained(override, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig().with_overrides(override)


def test_broken_json_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        TrainConfig.load(path)


def test_configs_saved_before_objectives_keep_reconstruct():
    saved = TrainConfig().to_dict()
    del saved["objective"]
    assert TrainConfig.from_dict(saved).objective == "reconstruct"
    assert TrainConfig().objective == "denoise"
    assert TrainConfig.from_dict({"epochs": 3}).objective == "denoise"
