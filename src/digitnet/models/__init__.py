"""Network families, without JAX: what each one's tensors are and its NumPy forward pass.

A family is chosen by `TrainConfig.model`. Each module here describes one family completely
for everything that does not train: which config fields belong to it and their checks, the
names and shapes of its weight arrays (what the model file stores), and the forward pass that
`predict`, `evaluate` and `serve` run. Its Flax module, for training, is in
`digitnet.training.networks` under the same name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError
from .base import Family
from .cnn import CNN
from .mlp import MLP

if TYPE_CHECKING:
    from ..config import TrainConfig

FAMILIES: dict[str, Family] = {f.name: f for f in (MLP(), CNN())}


def family(name_or_config: str | TrainConfig) -> Family:
    """The family called `name` (or chosen by a TrainConfig's `model`)."""
    name = name_or_config if isinstance(name_or_config, str) else name_or_config.model
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(
            f"unknown model family {name!r}: choose from {', '.join(FAMILIES)}") from None


def family_fields() -> set[str]:
    """The config fields that belong to one family or another (the rest apply to all)."""
    return {name for f in FAMILIES.values() for name in f.fields}


__all__ = ["FAMILIES", "Family", "family", "family_fields"]
