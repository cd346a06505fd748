"""Training in several processes, on one machine or several: JAX's own distributed runtime.

Every process runs the same `train` and trains its share of every batch on its own devices;
the mesh spans all of them (devices.py). Process 0 runs the coordinator, a small service
the others connect to at start; after that the gradients travel between the processes
through XLA's collectives: NCCL between GPUs, gloo over TCP between CPUs.

`start_processes` is process-wide and can be done once only, before anything else uses JAX;
`train` never calls it: the CLI does, when asked (`digitnet train --coordinator ...`).

What a failure looks like, measured on this machine (docs/training.md):
- a coordinator that cannot be reached: the other processes give up after `timeout`
  seconds; process 0, waiting for peers that do not come, is ended by JAX's runtime after
  `timeout` seconds (DEADLINE_EXCEEDED, SIGABRT);
- a peer that dies: the survivors' next collective fails at once (gloo's connection is
  closed), which `lost_peer` recognises; where the coordinator itself died, JAX's runtime
  ends the survivors at once with its own message (SIGABRT);
- a peer that stops answering without dying: the coordinator declares it dead after
  `timeout` seconds without a heartbeat and JAX's runtime ends every process.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time

import jax
import numpy as np

from ..config import TrainConfig
from ..errors import ConfigError, DigitnetError
from .devices import local_device_count

def start_processes(coordinator: str | None = None, num_processes: int | None = None,
                    process_id: int | None = None, *, timeout: int) -> None:
    """Join this process to a training of several (process-wide, once, before anything else
    uses JAX). Arguments left None are read by JAX from the cluster it runs in (Slurm, Open
    MPI; JAX_COORDINATOR_ADDRESS for the coordinator). `timeout` is in seconds: how long to
    wait for the coordinator, and for a silent peer. Raises DigitnetError, in one line,
    when the coordinator cannot be reached within `timeout` seconds or the processes do not
    agree on how many they are."""
    if num_processes is not None and num_processes < 1:
        raise ConfigError(f"the number of processes must be at least 1, got {num_processes}")
    if process_id is not None and num_processes is not None and not (
            0 <= process_id < num_processes):
        raise ConfigError(f"the process id must be in 0..{num_processes - 1}, got {process_id}")
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if coordinator and process_id:
        _wait_for_coordinator(coordinator, timeout)
    # CPUs exchange gradients over TCP through gloo (GPUs use NCCL whatever this says)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id,
                                   initialization_timeout=timeout,
                                   heartbeat_timeout_seconds=timeout)
    except (RuntimeError, ValueError) as exc:  # JaxRuntimeError is a RuntimeError
        where = coordinator or "the coordinator"
        raise DigitnetError(f"cannot start the distributed training with {where} (waited "
                            f"up to {timeout} s): {_first_line(exc)}") from None
    if num_processes is not None and jax.process_count() != num_processes:
        raise DigitnetError(f"this process was told of {num_processes} processes, the "
                            f"coordinator of {jax.process_count()}: give every process the "
                            "same --num-processes")


def _wait_for_coordinator(address: str, timeout: float) -> None:
    """Return once the coordinator at HOST:PORT accepts connections; DigitnetError after
    `timeout` seconds. (JAX's own client, given an address nobody answers at, ends the
    process with SIGABRT instead of raising.)"""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"the coordinator address must be HOST:PORT, got {address!r}")
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
            return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise DigitnetError(f"no coordinator answered at {address} within {timeout} s "
                                    f"({exc.strerror or exc}): start process 0 first, and "
                                    "check the address and that the port is open") from None
            time.sleep(0.25)


def agree_across_processes(cfg: TrainConfig, devices: int | str | None, epoch: int) -> None:
    """ConfigError in every process unless all of them train the same config, on the same
    device count each (as resolved on each machine: 'all' may mean 2 on one and 4 on
    another), from the same epoch: a difference would make them train different programs
    and wait for each other forever. A process short of the devices asked for takes part in
    the comparison before it raises, so that its peers stop too. Nothing to do in a run of
    one process."""
    if jax.process_count() == 1:
        return
    from jax.experimental.multihost_utils import process_allgather

    try:
        count, problem = local_device_count(devices), None
    except ConfigError as exc:
        count, problem = 0, exc  # 0 differs from any count a peer resolves
    what = f"{cfg.to_json()}\n{count}\n{epoch}".encode()
    digest = np.frombuffer(hashlib.sha256(what).digest(), np.uint8)
    digests = np.asarray(process_allgather(digest))
    if problem is not None:
        raise problem
    differ = [i for i in range(len(digests)) if not np.array_equal(digests[i], digests[0])]
    if differ:
        raise ConfigError(f"process {differ[0]} was started with another config, device "
                          "count or checkpoint than process 0: start every process with the "
                          "same flags and the same run folder")


def this_process() -> str:
    """'process I of N', in words."""
    return f"process {jax.process_index()} of {jax.process_count()}"


def is_writer() -> bool:
    """Whether this process writes the run (process 0; the only one in a run of one)."""
    return jax.process_index() == 0


def lost_peer(exc: BaseException) -> str | None:
    """One line saying that another process of the training failed, when `exc` is how a
    collective reports that (in a run of several processes); None otherwise."""
    if jax.process_count() == 1 or not isinstance(exc, (RuntimeError, ValueError)):
        return None
    text = str(exc)
    if not any(mark in text for mark in ("Gloo", "NCCL", "UNAVAILABLE", "DEADLINE_EXCEEDED",
                                         "heartbeat")):
        return None
    return (f"another process of this training stopped, so this one ({this_process()}) "
            f"stops too: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
