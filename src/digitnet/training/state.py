"""The training state (network and optimizer) as named NumPy arrays, for checkpoints.

The state is that of the (network, optimizer) pair the loop trains. Names are the paths in
its tree, such as `network/layers/1/kernel` or `optimizer/opt_state/mu/layers/1/kernel`
(Adam's first moment of that kernel): stable for a given config, and checked one by one when
a checkpoint is restored.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from ..errors import ModelFileError


PAIR = ("network", "optimizer")


def _name(path) -> str:
    parts = []
    for key in path:
        for attribute in ("key", "idx", "name"):
            if hasattr(key, attribute):
                parts.append(str(getattr(key, attribute)))
                break
    if parts and parts[-1] == "value":  # the Variable's payload, the same for every leaf
        parts.pop()
    return "/".join([PAIR[int(parts[0])], *parts[1:]])


def state_arrays(state: nnx.State) -> dict[str, np.ndarray]:
    """Every leaf of `state`, copied to the host, by name."""
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return {_name(path): np.array(leaf) for path, leaf in leaves}


def restore_state(state: nnx.State, arrays: dict[str, np.ndarray], source: str) -> nnx.State:
    """`state` (a freshly built one, for its structure) with every leaf taken from `arrays`.
    Raises ModelFileError naming `source` unless names, shapes and dtypes all match."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    names = [_name(path) for path, _ in leaves]
    if set(names) != set(arrays):
        missing, extra = sorted(set(names) - set(arrays)), sorted(set(arrays) - set(names))
        raise ModelFileError(f"{source} does not hold this network's training state: missing "
                             f"{missing[:3] or 'none'}, unexpected {extra[:3] or 'none'}")
    restored = []
    for name, (_, leaf) in zip(names, leaves):
        array = arrays[name]
        if array.shape != leaf.shape or array.dtype != leaf.dtype:
            raise ModelFileError(f"{source}: {name} is {array.dtype} {array.shape}, the network "
                                 f"has {leaf.dtype} {leaf.shape}")
        restored.append(jax.device_put(array))
    return jax.tree_util.tree_unflatten(treedef, restored)
