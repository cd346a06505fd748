"""Process-wide settings that make training faster: the on-disk cache of compiled programs
(which `train` turns on) and XLA on one core (which the CLI asks for where it helps)."""

from __future__ import annotations

import os
from importlib.metadata import entry_points

import jax

from ..config import TrainConfig
from ..data import default_cache_dir

# Up to this batch size an MLP step is a chain of small operations that XLA would split over
# the cores; the synchronisation and cache traffic cost more than the split saves (measured:
# see the README's Speed section), so the CLI runs such training on one core.
ONE_CORE_MAX_BATCH = 64


def runs_best_on_one_core(cfg: TrainConfig) -> bool:
    """Whether training `cfg` is faster with XLA on one core (see limit_xla_to_one_core).
    A CNN's convolutions are large enough matrix products to use every core."""
    return cfg.model == "mlp" and cfg.batch_size <= ONE_CORE_MAX_BATCH


def enable_compilation_cache() -> None:
    """Keep compiled programs on disk so a repeat run skips XLA compilation."""
    jax.config.update("jax_compilation_cache_dir", str(default_cache_dir() / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def limit_xla_to_one_core() -> bool:
    """Start JAX's CPU backend with one worker thread, pinned to one core.

    Must run before anything else in the process uses JAX: the thread pool is sized, and
    its threads take the calling thread's CPU affinity, when the backend starts. The
    calling thread gets all its cores back, so host work can go on beside the training.
    Returns False, changing nothing, where the backend has started already, the process
    may use only one core anyway, the platform cannot set affinity, or an accelerator plugin
    (a GPU) is installed: then the training is not the CPU's."""
    try:  # JAX has no public way to ask this; without it, change nothing
        from jax._src.xla_bridge import backends_are_initialized
    except ImportError:
        return False
    if (not hasattr(os, "sched_setaffinity") or backends_are_initialized()
            or entry_points(group="jax_plugins")):
        return False
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        return False
    os.sched_setaffinity(0, {max(allowed)})
    try:
        jax.devices("cpu")
    finally:
        os.sched_setaffinity(0, allowed)
    return True
