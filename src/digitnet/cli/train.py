"""`digitnet train`: a new run, a resumed one, or one process of a training of several."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from ..config import TrainConfig, recipe
from ..errors import ConfigError, DigitnetError
from ..geometry import NUM_CLASSES
from ..network import to_text
from . import common
from .common import UsageError, percent


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration flags given on the command line."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return {k: v for k, v in vars(args).items() if k in fields}


def _train_config(args: argparse.Namespace) -> TrainConfig:
    try:
        return recipe(args.recipe or "tutorial").changed(_config_overrides(args))
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _join_processes(args: argparse.Namespace) -> bool:
    """Join a training of several processes when the flags ask for one (before anything
    uses JAX); whether they did."""
    if not (args.distributed or args.coordinator or args.num_processes is not None
            or args.process_id is not None):
        return False
    if args.peer_timeout < 1:
        raise UsageError(f"--peer-timeout must be at least 1 second, got {args.peer_timeout}")
    from ..training.distributed import start_processes

    try:
        start_processes(args.coordinator, args.num_processes, args.process_id,
                        timeout=args.peer_timeout)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    return True


def cmd_train(args: argparse.Namespace) -> int:
    from ..run_folder import check_new_run_folder, locked_run_folder
    from ..runs import resume_point

    joined = _join_processes(args)
    if args.resume is not None:
        given = [_flag(f) for f in _config_overrides(args)]
        given += [flag for flag, value in (("--recipe", args.recipe), ("--out", args.out),
                                           ("--overwrite", args.overwrite or None))
                  if value is not None]
        if given:
            raise UsageError(f"--resume goes on with the run's own config and folder: drop "
                             f"{', '.join(given)}")
    if joined:
        from ..training.distributed import is_writer

        if not is_writer():
            return _train_beside_writer(args)
    if args.resume is not None:
        out = args.resume
    else:
        cfg = _train_config(args)
        out = args.out or Path("runs") / time.strftime("run-%Y%m%d-%H%M%S")
    # Before MNIST is loaded: a folder another process writes into, or one that holds
    # something else, is refused at once. The lock is held until the run is written.
    with locked_run_folder(out, create=args.resume is None):
        checkpoint = None
        if args.resume is not None:
            cfg, checkpoint = resume_point(out)
        else:
            check_new_run_folder(out, args.overwrite)
        return _train(args, cfg, out, checkpoint)


def _train_beside_writer(args: argparse.Namespace) -> int:
    """A process other than 0 of a training of several: it trains its share of every batch
    and writes nothing (it reads the run folder to resume: the folder must be shared)."""
    from ..runs import resume_point
    from ..training import train, training_speedups
    from ..training.distributed import this_process

    checkpoint = None
    if args.resume is not None:
        cfg, checkpoint = resume_point(args.resume)
    else:
        cfg = _train_config(args)
    with training_speedups(cfg, args.devices):
        _, where = _devices_in_words(cfg, args.devices)
        data = common.load_data(args)
        print(f"{this_process()}: training on {where}; process 0 writes the run folder",
              file=sys.stderr)
        with _peers_watched():
            train(cfg, data, resume=checkpoint, devices=args.devices)
    print(f"{this_process()}: done", file=sys.stderr)
    return 0


def _devices_in_words(cfg: TrainConfig, devices: int | str | None) -> tuple[int, str]:
    """How many devices `train` will use, and which, in words; UsageError when they are not
    there."""
    from ..training.devices import data_parallel, describe_devices

    try:
        parallel = data_parallel(cfg, devices)
    except ConfigError as exc:  # too few devices, or a batch they do not split evenly
        raise UsageError(f"--devices: {exc}" if devices is not None else str(exc)) from None
    return (parallel.count if parallel else 1), describe_devices(parallel)


@contextlib.contextmanager
def _peers_watched():
    """Turn a collective that failed because another process of the training stopped into
    one line (a DigitnetError)."""
    from ..training.distributed import lost_peer

    try:
        yield
    except Exception as exc:
        line = lost_peer(exc)
        if line is None:
            raise
        raise DigitnetError(line) from None


def _train(args: argparse.Namespace, cfg: TrainConfig, out: Path, checkpoint) -> int:
    from ..progress import ProgressBar
    from ..runs import resume_run, train_run
    from ..training import training_speedups, validation_size
    from ..training.printed import PER_COPY as PRINTED_PER_COPY

    done = checkpoint.epoch if checkpoint else 0
    # before MNIST is loaded, and before JAX starts: it may pin XLA to one core
    with training_speedups(cfg, args.devices):
        count, where = _devices_in_words(cfg, args.devices)
        data = common.load_data(args)
        n_val = validation_size(cfg, len(data.train_images))
        validation = (f"{n_val:,} held out for validation" if n_val
                      else "validating on the test set")
        network = to_text(cfg.network)
        start = f"resuming after epoch {done} of {cfg.epochs}" if args.resume else "training"
        added = "".join(f" and {count:,} {kind}" for count, kind in
                        ((cfg.printed_digits * PRINTED_PER_COPY, "printed digits"),
                         (cfg.pen_digits * NUM_CLASSES, "pen digits"),
                         (cfg.not_digits, "non-digits")) if count)
        print(f"{start} {cfg.model} {network} on {len(data.train_images) - n_val:,} images"
              f"{added} ({validation}), {cfg.epochs} epochs of batch {cfg.batch_size}; "
              f"run folder {out}", file=sys.stderr)
        print(f"on {where}", file=sys.stderr)
        if checkpoint is not None and checkpoint.devices != count:
            print(f"note: the run trained on {checkpoint.devices} device"
                  f"{'s' if checkpoint.devices > 1 else ''} and goes on on {where}; it ends "
                  "within float rounding of the uninterrupted run, not bit for bit",
                  file=sys.stderr)
        bar = ProgressBar(cfg, done=done, file=sys.stderr)
        try:
            with _peers_watched():
                if args.resume is not None:
                    run = resume_run(out, data, on_epoch=bar, plots=not args.no_plots,
                                     devices=args.devices)
                else:
                    run = train_run(cfg, out, data, on_epoch=bar, plots=not args.no_plots,
                                    overwrite=args.overwrite, devices=args.devices)
        except KeyboardInterrupt:
            bar.close()
            print(f"digitnet: interrupted; `digitnet train --resume {out}` goes on from the "
                  "last finished epoch", file=sys.stderr)
            return 130
        finally:
            bar.close()
    m = run.metrics
    if cfg.chooses_epoch:
        print(f"{m['stop_reason']}; kept the weights of epoch {m['kept_epoch']}")
    print(f"test accuracy {percent(m['test_accuracy'])}, test loss {m['test_loss']:.4f}, "
          f"expected calibration error {percent(m['ece'])} ({m['count']:,} images)")
    plots = "" if args.no_plots else f"; plots in {run.folder / 'plots'}"
    print(f"saved {run.folder / 'model.safetensors'}{plots}")
    return 0
