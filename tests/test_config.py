import json
import re

import pytest

from digitnet.config import TrainConfig, recipe
from digitnet.errors import ConfigError


def test_default_is_the_tutorial_recipe():
    cfg = TrainConfig()
    assert cfg == recipe("tutorial")
    assert (cfg.model, cfg.hidden) == ("mlp", (128, 64))
    assert (cfg.lr, cfg.batch_size, cfg.lr_schedule) == (1e-3, 32, "constant")


def test_json_round_trip_is_exact():
    cfg = TrainConfig(hidden=(256, 32, 16), epochs=3, lr=3e-3, seed=7, validate_on="test")
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    assert json.loads(cfg.to_json())["hidden"] == [256, 32, 16]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"epochs": -3}, "epochs must be at least 1"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"lr": 0.0}, "lr must be more than 0"),
        ({"lr": float("nan")}, "lr must be more than 0"),
        ({"hidden": ()}, "hidden widths must be positive"),
        ({"hidden": (128, 0)}, "hidden widths must be positive"),
        ({"val_fraction": 1.0}, "val_fraction must be in (0, 1)"),
        ({"label_smoothing": 1.0}, "label_smoothing must be in [0, 1)"),
        ({"weight_decay": -0.1}, "weight_decay must be in [0, 1]"),
        ({"weight_decay": float("inf")}, "weight_decay must be in [0, 1]"),
        ({"validate_on": "train"}, "validate_on must be one of"),
        ({"lr_schedule": "steps"}, "lr_schedule must be one of"),
        ({"adam_form": "amsgrad"}, "adam_form must be one of keras, paper"),
        ({"model": "resnet"}, "model must be one of"),
        ({"augment": True, "augment_strength": 0.0}, "augment_strength must be in (0, 2]"),
        ({"augment": True, "augment_strength": 2.5}, "augment_strength must be in (0, 2]"),
        ({"writing_variants": True}, "writing_variants are drawn by the augmentation"),
        ({"printed_digits": -1}, "printed_digits must be in [0, 100]"),
        ({"pen_digits": -1}, "pen_digits must be in [0, 5,000]"),
        ({"pen_digits": 6000}, "pen_digits must be in [0, 5,000]"),
        ({"conv": [8]}, "conv has the wrong type"),
        ({"epochs": 2.5}, "epochs has the wrong type"),
        ({"epochs": True}, "epochs has the wrong type"),
        ({"hidden": (128.0,)}, "hidden has the wrong type"),
        ({"lr": "fast"}, "lr has the wrong type"),
    ],
)
def test_bad_values_are_refused(changes, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        TrainConfig().replace(**changes)


def test_unknown_keys_and_bad_json_are_refused():
    with pytest.raises(ConfigError, match="unknown config key"):
        TrainConfig.from_dict({**TrainConfig().to_dict(), "dropout": 0.5})
    with pytest.raises(ConfigError, match="not valid JSON"):
        TrainConfig.from_json("{epochs: 3")
    with pytest.raises(ConfigError, match="must be a JSON object"):
        TrainConfig.from_json("[1, 2]")


def test_the_handwriting_recipe_is_the_cnn_recipe_with_the_ways_of_writing_and_non_digits():
    # without the weight decay and the longer training the `cnn` recipe took after
    # `handwriting` had been chosen
    assert recipe("handwriting") == recipe("cnn").replace(
        writing_variants=True, printed_digits=20, pen_digits=500, weight_decay=0.0, epochs=15,
        not_digits=12000)


def test_unknown_recipe():
    with pytest.raises(ConfigError, match="unknown recipe"):
        recipe("turbo")


def test_every_bounded_field_refuses_a_value_past_each_end():
    """The checks come from each field's metadata: one past either end of its bounds fails."""
    import dataclasses
    import math

    start = TrainConfig(augment=True)  # augment_strength applies with augment
    for f in dataclasses.fields(TrainConfig):
        if "bounds" not in f.metadata:
            continue
        low, high, open_bounds = f.metadata["bounds"]
        step = 1 if str(f.type) == "int" else 1e-9
        outside = [low if open_bounds in ("low", "both") else low - step]
        if not math.isinf(high):
            outside.append(high if open_bounds in ("high", "both") else high + step)
        for value in outside:
            with pytest.raises(ConfigError, match=f"^{f.name} must be"):
                start.replace(**{f.name: value})


def test_flags_given_on_a_recipe_change_it_field_by_field():
    from digitnet.config import recipe

    cnn = recipe("cnn")
    layers = cnn.changed({"layers": "conv8k5s-relu,maxpool2,flatten,dense10"})
    assert (layers.model, layers.lr, layers.conv) == ("layers", cnn.lr, TrainConfig().conv)
    assert cnn.changed({"model": "mlp"}).hidden == (128, 64)  # the cnn's fields are dropped
    with pytest.raises(ConfigError, match="hidden does not apply to model 'cnn'"):
        cnn.changed({"hidden": (128, 64)})  # even at its default
    with pytest.raises(ConfigError, match="augment_strength applies only with augment"):
        cnn.changed({"augment": False, "augment_strength": 0.5})
