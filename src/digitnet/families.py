"""Network families: each is a function of a few TrainConfig fields that returns a layer
sequence (digitnet.network). `TrainConfig.model` chooses one; 'layers' takes the sequence
as written in `TrainConfig.layers`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from . import network
from .errors import ConfigError
from .geometry import NUM_CLASSES, SIDE
from .network import Activation, Conv, Dense, Flatten, Network, Pool

if TYPE_CHECKING:
    from .config import TrainConfig

MAX_CNN_BLOCKS = 4  # each block halves the side: 28 -> 14 -> 7 -> 3 -> 1


def _check_widths(field: str, widths: tuple[int, ...], *, allow_empty: bool = False) -> None:
    if (not widths and not allow_empty) or any(w < 1 for w in widths):
        raise ConfigError(f"{field} must be positive integers, got {widths!r}")


def _dense_stack(widths: tuple[int, ...], activation: str) -> list:
    """Dense layers of `widths`, each followed by `activation`, then the 10 logits."""
    layers: list = []
    for width in widths:
        layers += [Dense(width), Activation(activation)]
    return [*layers, Dense(NUM_CLASSES)]


def mlp(cfg: TrainConfig) -> Network:
    """784 inputs, hidden dense layers, 10 outputs (the tutorial's, with ReLU)."""
    _check_widths("hidden widths", cfg.hidden)
    return (Flatten(), *_dense_stack(cfg.hidden, cfg.activation))


def cnn(cfg: TrainConfig) -> Network:
    """Blocks of 3x3 'same' convolutions with the activation, each block ending in 2x2
    pooling, then dense layers with the same activation and 10 outputs."""
    _check_widths("conv channels", cfg.conv)
    _check_widths("dense widths", cfg.dense, allow_empty=True)
    if cfg.convs_per_block < 1:
        raise ConfigError(f"convs_per_block must be at least 1, got {cfg.convs_per_block}")
    if len(cfg.conv) > MAX_CNN_BLOCKS:
        raise ConfigError(f"at most {MAX_CNN_BLOCKS} conv blocks fit a {SIDE}x{SIDE} image, "
                          f"got {len(cfg.conv)}")
    layers: list = []
    for channels in cfg.conv:
        for _ in range(cfg.convs_per_block):
            layers += [Conv(channels), Activation(cfg.activation)]
        layers.append(Pool(cfg.pool))
    return (*layers, Flatten(), *_dense_stack(cfg.dense, cfg.activation))


def layers(cfg: TrainConfig) -> Network:
    """The sequence written in `cfg.layers` (the text form of digitnet.network)."""
    if not cfg.layers:
        raise ConfigError("model 'layers' needs the network written out in layers (--layers "
                          "conv32k3s-relu,maxpool2,flatten,dense10, say)")
    return network.parse(cfg.layers)


# family name -> (the function, the config fields only it reads)
FAMILIES: dict[str, tuple[Callable[[TrainConfig], Network], tuple[str, ...]]] = {
    "mlp": (mlp, ("hidden", "activation")),
    "cnn": (cnn, ("conv", "convs_per_block", "pool", "dense", "activation")),
    "layers": (layers, ("layers",)),
}


def family_fields(name: str | None = None) -> set[str]:
    """The config fields of family `name`, or (no name) of one family or another."""
    if name is not None:
        return set(FAMILIES[name][1])
    return {field for _, own in FAMILIES.values() for field in own}


def build_network(cfg: TrainConfig) -> Network:
    """The checked layer sequence `cfg` describes."""
    build, _ = FAMILIES[cfg.model]
    layers = build(cfg)
    network.check(layers)
    return layers
