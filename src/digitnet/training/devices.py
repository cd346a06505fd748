"""Data parallelism: each batch split over several devices, the same step on each.

The devices form a one-axis mesh (`jax.sharding.Mesh`, axis "batch"): this process's first N
local devices, and in a run of several processes (see distributed.py) the first N of every
process. The network and optimizer state are replicated on every device; each epoch's
batches, shaped (steps, batch, pixels), are split along the batch axis, so that each device
gets batch / devices images of every step. The compiled epoch is the same function as on one
device: XLA partitions it by the shardings of its arguments and sums the gradients across
the devices. The global batch is the config's, so the training is the same training, and the
random streams (augmentation, dropout) draw the same numbers however they are split (JAX's
partitionable threefry); only the order of the sums changes, so the weights agree with one
device's to float rounding, not bit for bit.

Each process gathers only its own columns of every batch and hands them over with
`jax.make_array_from_process_local_data`.

One device in one process is not a mesh of one: `data_parallel` answers None, and the loop
runs the program it always ran.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..config import TrainConfig
from ..errors import ConfigError
from .batches import epoch_order

AXIS = "batch"


def local_device_count(devices: int | str | None) -> int:
    """How many of this process's devices `devices` (a count, 'all', or None for one)
    asks for. ConfigError when there are not that many."""
    if devices is None:
        return 1
    available = jax.local_devices()
    if devices == "all":
        return len(available)
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ConfigError(f"devices must be a positive count or 'all', got {devices!r}")
    if devices > len(available):
        kind = available[0].platform
        hint = (" (CPU devices are one per process unless XLA_FLAGS="
                "--xla_force_host_platform_device_count=N or JAX_NUM_CPU_DEVICES=N says more)"
                if kind == "cpu" else "")
        raise ConfigError(f"{devices} devices asked for, but this machine has "
                          f"{len(available)} {kind} device{'s' if len(available) > 1 else ''}"
                          f"{hint}")
    return devices


@dataclass(frozen=True)
class DataParallel:
    """A one-axis mesh of devices and where the training's arrays go on it."""

    mesh: Mesh

    @property
    def count(self) -> int:
        return self.mesh.size

    def replicate(self, tree):
        """`tree` (the training state) copied onto every device of the mesh."""
        return jax.device_put(tree, NamedSharding(self.mesh, PartitionSpec()))

    def epoch_batches(self, cfg: TrainConfig, epoch: int, images: np.ndarray,
                      labels: np.ndarray) -> tuple[jax.Array, jax.Array]:
        """One epoch's images (uint8, (steps, batch, pixels)) and labels (int32, (steps,
        batch)) in the epoch's visiting order (see batches.epoch_order), each batch split
        over the mesh. This process gathers only the columns its own devices train on."""
        order = epoch_order(cfg, epoch, len(images)).reshape(-1, cfg.batch_size)
        sharding = NamedSharding(self.mesh, PartitionSpec(None, AXIS))
        columns = self._local_columns(sharding, order.shape)
        mine = order[:, columns]
        return (jax.make_array_from_process_local_data(
                    sharding, np.take(images, mine, axis=0), order.shape + images.shape[1:]),
                jax.make_array_from_process_local_data(sharding, labels[mine], order.shape))

    @staticmethod
    def _local_columns(sharding: NamedSharding, shape: tuple[int, int]) -> slice:
        """The batch columns this process's devices hold (contiguous: the mesh lists each
        process's devices together)."""
        spans = [index[1].indices(shape[1])[:2]
                 for index in sharding.addressable_devices_indices_map(shape).values()]
        return slice(min(start for start, _ in spans), max(stop for _, stop in spans))


def data_parallel(cfg: TrainConfig, devices: int | str | None) -> DataParallel | None:
    """The mesh that training `cfg` on `devices` (this process's count, or 'all'; None: one)
    in every process of the run uses; None for one device in one process. ConfigError when
    the devices are not there or the config's batch does not split evenly over them."""
    per_process = local_device_count(devices)
    if per_process == 1 and jax.process_count() == 1:
        return None
    chosen = [device for process in range(jax.process_count())
              for device in sorted((d for d in jax.devices() if d.process_index == process),
                                   key=lambda d: d.id)[:per_process]]
    if cfg.batch_size % len(chosen):
        raise ConfigError(f"a batch of {cfg.batch_size} does not split evenly over "
                          f"{len(chosen)} devices: choose a device count that divides it, "
                          f"or a batch size that is a multiple of {len(chosen)}")
    return DataParallel(Mesh(np.array(chosen), (AXIS,)))


def describe_devices(parallel: DataParallel | None) -> str:
    """Which devices training runs on, in words: '1 device: gpu:0 (NVIDIA H100 80GB HBM3)',
    '2 devices: cpu:0, cpu:1 (cpu)', '16 devices in 2 processes: 16x (NVIDIA H100 ...)'."""
    devices = list(parallel.mesh.devices.flat) if parallel else [jax.devices()[0]]
    kinds = sorted({d.device_kind for d in devices})
    names = (", ".join(f"{d.platform}:{d.id}" for d in devices) if len(devices) <= 4
             else f"{len(devices)}x")
    processes = jax.process_count()
    spread = f" in {processes} processes" if processes > 1 else ""
    return (f"{len(devices)} device{'s' if len(devices) > 1 else ''}{spread}: {names} "
            f"({', '.join(kinds)})")
