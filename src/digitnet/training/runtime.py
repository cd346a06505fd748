"""Process-wide settings that make training faster. `train` changes none of them;
`training_speedups` is what `digitnet train` asks for, and a program can ask for it too:

    with digitnet.training_speedups(cfg):
        result = digitnet.train(cfg, data)

They are, one by one:
- `enable_compilation_cache()`: compiled programs are kept on disk (in the user cache
  folder), so a repeat run skips XLA's compilation. A JAX setting; it stays on.
- `limit_xla_to_one_core()`: where `runs_best_on_one_core(cfg)`, XLA's CPU backend starts
  with one thread pinned to one core. Only possible before JAX starts; it stays so.
- BLAS on one thread while the block runs (threadpoolctl; restored after it): each epoch's
  validation, a NumPy forward pass, then runs beside the training instead of contending with
  it for the cores.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Iterator

import jax
from threadpoolctl import threadpool_limits

from ..config import TrainConfig
from ..data import default_cache_dir
from ..network import has_convolutions

# Up to this batch size a step without convolutions is a chain of small operations that XLA
# would split over the cores; the synchronisation and cache traffic cost more than the split
# saves (measured: see the README's Speed section), so the CLI runs such training on one core.
ONE_CORE_MAX_BATCH = 64


def runs_best_on_one_core(cfg: TrainConfig) -> bool:
    """Whether training `cfg` is faster with XLA on one core (see limit_xla_to_one_core).
    A CNN's convolutions are large enough matrix products to use every core."""
    return not has_convolutions(cfg.network) and cfg.batch_size <= ONE_CORE_MAX_BATCH


@contextmanager
def training_speedups(cfg: TrainConfig, devices: int | str | None = None) -> Iterator[None]:
    """Make this process train `cfg` on `devices` (as train takes them) as fast as
    `digitnet train` does (see the module's docstring for what that changes, and for how
    long). XLA keeps every core where the training is split over several devices."""
    alone = devices in (None, 1) and not jax.distributed.is_initialized()
    if alone and runs_best_on_one_core(cfg):
        limit_xla_to_one_core()
    enable_compilation_cache()
    with threadpool_limits(1, user_api="blas"):
        yield


def enable_compilation_cache() -> None:
    """Keep compiled programs on disk so a repeat run skips XLA compilation (process-wide)."""
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
