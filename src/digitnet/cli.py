"""The `digitnet` command: parse arguments, call one library function, render the result.

Exit codes: 0 ok, 1 error (one line on stderr; --debug for the traceback), 2 usage, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .cli_args import build_parser
from .config import TrainConfig, recipe
from .errors import ConfigError, DigitnetError
from .geometry import NUM_CLASSES
from .network import to_text


class UsageError(DigitnetError):
    """Bad command-line arguments: exit code 2."""


def _load_data(args: argparse.Namespace):
    from .data import load_mnist

    return load_mnist(args.data_dir, download=not args.no_download, progress=sys.stderr.isatty())


def _load_test_set(args: argparse.Namespace):
    """MNIST's test images and labels alone: all that evaluating needs, so the training
    files need not be there (nor be downloaded)."""
    from .data import load_mnist_test

    return load_mnist_test(args.data_dir, download=not args.no_download,
                           progress=sys.stderr.isatty())


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.2f}%"


def cmd_data(args: argparse.Namespace) -> int:
    from .data import resolve_data_dir

    folder, how = resolve_data_dir(args.data_dir)
    data = _load_data(args)
    print(f"MNIST folder: {folder} (chosen by {how})")
    print(f"read from:    {data.source}")
    print("verified:     SHA-256 of content, IDX headers, shapes, labels 0..9")
    for split in ("train", "test"):
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        counts = " ".join(str((labels == d).sum()) for d in range(10))
        print(f"{split + ':':13} {len(images):,} images {images.shape[1]}x{images.shape[2]}, "
              f"per digit 0-9: {counts}")
    return 0


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
    from .training.distributed import start_processes

    try:
        start_processes(args.coordinator, args.num_processes, args.process_id,
                        timeout=args.peer_timeout)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    return True


def cmd_train(args: argparse.Namespace) -> int:
    from .run_folder import check_new_run_folder, locked_run_folder
    from .runs import resume_point

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
        from .training.distributed import is_writer

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
    from .runs import resume_point
    from .training import train, training_speedups
    from .training.distributed import this_process

    checkpoint = None
    if args.resume is not None:
        cfg, checkpoint = resume_point(args.resume)
    else:
        cfg = _train_config(args)
    with training_speedups(cfg, args.devices):
        _, where = _devices_in_words(cfg, args.devices)
        data = _load_data(args)
        print(f"{this_process()}: training on {where}; process 0 writes the run folder",
              file=sys.stderr)
        with _peers_watched():
            train(cfg, data, resume=checkpoint, devices=args.devices)
    print(f"{this_process()}: done", file=sys.stderr)
    return 0


def _devices_in_words(cfg: TrainConfig, devices: int | str | None) -> tuple[int, str]:
    """How many devices `train` will use, and which, in words; UsageError when they are not
    there."""
    from .training.devices import data_parallel, describe_devices

    try:
        parallel = data_parallel(cfg, devices)
    except ConfigError as exc:  # too few devices, or a batch they do not split evenly
        raise UsageError(f"--devices: {exc}" if devices is not None else str(exc)) from None
    return (parallel.count if parallel else 1), describe_devices(parallel)


@contextlib.contextmanager
def _peers_watched():
    """Turn a collective that failed because another process of the training stopped into
    one line (a DigitnetError)."""
    from .training.distributed import lost_peer

    try:
        yield
    except Exception as exc:
        line = lost_peer(exc)
        if line is None:
            raise
        raise DigitnetError(line) from None


def _train(args: argparse.Namespace, cfg: TrainConfig, out: Path, checkpoint) -> int:
    from .progress import ProgressBar
    from .runs import resume_run, train_run
    from .training import training_speedups, validation_size
    from .training.printed import PER_COPY as PRINTED_PER_COPY

    done = checkpoint.epoch if checkpoint else 0
    # before MNIST is loaded, and before JAX starts: it may pin XLA to one core
    with training_speedups(cfg, args.devices):
        count, where = _devices_in_words(cfg, args.devices)
        data = _load_data(args)
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
    print(f"test accuracy {_percent(m['test_accuracy'])}, test loss {m['test_loss']:.4f}, "
          f"expected calibration error {_percent(m['ece'])} ({m['count']:,} images)")
    plots = "" if args.no_plots else f"; plots in {run.folder / 'plots'}"
    print(f"saved {run.folder / 'model.safetensors'}{plots}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .metrics import evaluate
    from .runs import load_run

    run = load_run(args.run_dir)
    test_images, test_labels = _load_test_set(args)
    metrics = evaluate(run.predictor, test_images, test_labels)
    if args.json:
        print(json.dumps(metrics.to_dict()))
        return 0
    print(f"test accuracy {_percent(metrics.accuracy)}  loss {metrics.loss:.4f}  "
          f"expected calibration error {_percent(metrics.ece)}  ({metrics.count:,} images)")
    calibration = run.predictor.results.get("calibration")
    print(f"calibrated: logits divided by {calibration['temperature']:.3f}, fitted on "
          f"{calibration['fitted_on']}" if calibration else "not calibrated")
    refuse_below = run.predictor.refuse_below
    print(f"refused as not digits: {_percent(metrics.refused)} (top probability under "
          f"{_percent(refuse_below)}); accuracy on the rest {_percent(metrics.accepted_accuracy)}"
          f"\n" if refuse_below is not None else "refuses nothing (no threshold in the model)\n")
    print("digit  precision  recall     f1  support")
    for c in metrics.per_class:
        print(f"{c.digit:>5}  {_percent(c.precision):>9}  {_percent(c.recall):>6}  "
              f"{c.f1:.3f}  {c.support:>7}")
    print("\nconfusion matrix (rows: true digit, columns: predicted)")
    print("     " + "".join(f"{d:>6}" for d in range(10)))
    for d, row in enumerate(metrics.confusion):
        print(f"{d:>5}" + "".join(f"{n:>6}" for n in row))
    print("\nmost confused: " + ", ".join(
        f"{t} taken for {p} ({n}x)" for t, p, n in metrics.most_confused))
    return 0


def _predict_items(args: argparse.Namespace) -> list[dict[str, Any]]:
    from .files import check_model_file, find_files
    from .predict import Predictor, model_path
    from .preprocess import IMAGE_SUFFIXES

    check_model_file(model_path(args.run_dir))
    predictor = Predictor.load(args.run_dir)
    items: list[dict[str, Any]] = []
    for number, (path, unlisted) in enumerate(find_files(args.images, IMAGE_SUFFIXES)):
        if unlisted is not None:
            items.append({"file": str(path), "error": "cannot list this folder: "
                                                      f"{unlisted.strerror or unlisted}"})
            continue
        try:
            if args.number:
                items.append({"file": str(path), "reading": _read_number(predictor, path)})
                continue
            original, prepared = _read_image(path)
        except Exception as exc:  # one bad file, whatever it is, must not stop the batch
            if args.debug:
                raise
            message = str(exc) if isinstance(exc, DigitnetError) else (
                f"cannot use this image ({type(exc).__name__}: {exc})")
            items.append({"file": str(path), "error": message})
            continue
        [prediction] = predictor.predict(prepared.pixels[None], notes=[prepared.notes],
                                         refused=[prepared.refused])
        items.append({"file": str(path), "prediction": prediction})
        if args.show:
            from .plots import save_network_view

            view = args.show / f"{number:04d}-{path.stem}.png"
            try:
                save_network_view(view, original, prepared.pixels, prediction)
            except OSError as exc:
                raise DigitnetError(f"cannot write {view}: {exc.strerror or exc}") from None
            items[-1]["view"] = str(view)
    if args.test_index:
        test_images, test_labels = _load_test_set(args)
        bad = [i for i in args.test_index if not 0 <= i < len(test_images)]
        if bad:
            raise UsageError(f"--test-index must be in 0..{len(test_images) - 1}, got {bad}")
        predictions = predictor.predict(test_images[args.test_index])
        for i, prediction in zip(args.test_index, predictions):
            items.append({"file": f"mnist-test[{i}]", "label": int(test_labels[i]),
                          "prediction": prediction})
    return items


def _read_image(path: Path):
    """The image file `path` decoded and prepared: (the image, its PreparedImage); open_image
    reads only a regular file (a FIFO would block), and at most MAX_IMAGE_BYTES of it."""
    from .preprocess import open_image, prepare_image

    original = open_image(path)
    return original, prepare_image(original)


def _read_number(predictor, path: Path):
    """The image file `path` read as a number (a NumberReading)."""
    from .numbers import read_number
    from .preprocess import open_image

    return read_number(predictor, open_image(path))


def cmd_predict(args: argparse.Namespace) -> int:
    if not args.images and not args.test_index:
        raise UsageError("give image files or folders, or --test-index N")
    if args.top < 1:
        raise UsageError("--top must be at least 1")
    if args.number and (args.test_index or args.show):
        raise UsageError("--number reads image files: drop "
                         + " and ".join(f for f, v in (("--test-index", args.test_index),
                                                       ("--show", args.show)) if v))
    items = _predict_items(args)
    if not items:
        raise DigitnetError("no image files found in the given folders")
    if args.number:
        _print_numbers(items, args)
    elif args.json:
        print(json.dumps([_item_json(item, args.top) for item in items], indent=1))
    elif args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["file", "digit", "confidence", *(f"p{d}" for d in range(10)), "note"])
        for item in items:
            p = item.get("prediction")
            if p is None:
                writer.writerow([item["file"], "", "", *[""] * 10, item["error"]])
            else:
                writer.writerow([item["file"], "" if p.digit is None else p.digit,
                                 f"{p.confidence:.4f}", *(f"{q:.4f}" for q in p.probabilities),
                                 "; ".join(filter(None, (p.refused, *p.notes)))])
    else:
        for item in items:
            p = item.get("prediction")
            if p is None:
                print(f"{item['file']}: error: {item['error']}")
                continue
            label = f" (true {item['label']})" if "label" in item else ""
            top = ", ".join(f"{d} {q:.1%}" for d, q in p.top(args.top))
            answer = "not a digit" if p.digit is None else p.digit
            print(f"{item['file']}: {answer}{label}   top: {top}"
                  + "".join(f"\n    note: {n}" for n in filter(None, (p.refused, *p.notes))))
    return 1 if any("error" in item for item in items) else 0


def _print_numbers(items: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """`digitnet predict --number`'s output: one number (or why not) per file."""
    if args.json:
        print(json.dumps([{"file": item["file"], "error": item["error"]} if "error" in item
                          else {"file": item["file"], **_number_json(item["reading"])}
                          for item in items], indent=1))
        return
    if args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["file", "number", "digits", "confidences", "note"])
    for item in items:
        reading = item.get("reading")
        if reading is None:
            if args.csv:
                writer.writerow([item["file"], "", "", "", item["error"]])
            else:
                print(f"{item['file']}: error: {item['error']}")
            continue
        digits = " ".join("?" if d.digit is None else str(d.digit) for d in reading.digits)
        sure = " ".join(f"{d.confidence:.4f}" for d in reading.digits)
        notes = [n for n in (reading.refused, *reading.notes) if n]
        if args.csv:
            writer.writerow([item["file"], reading.number or "", digits, sure, "; ".join(notes)])
            continue
        answer = reading.number if reading.number is not None else "not read as a number"
        read = ", ".join(("?" if d.digit is None else str(d.digit)) + f" {d.confidence:.1%}"
                         for d in reading.digits)
        print(f"{item['file']}: {answer}   digits: {read}"
              + "".join(f"\n    note: {n}" for n in notes))


def _number_json(reading) -> dict[str, Any]:
    """A NumberReading as JSON: the number (or null), why not, and each digit."""
    return {"number": reading.number, "refused": reading.refused,
            "digits": [{"digit": d.digit, "confidence": d.confidence, "box": list(d.box),
                        "refused": d.refused} for d in reading.digits],
            "notes": list(reading.notes)}


def _item_json(item: dict[str, Any], top: int) -> dict[str, Any]:
    p = item.get("prediction")
    if p is None:
        return {"file": item["file"], "error": item["error"]}
    out = {"file": item["file"], "digit": p.digit, "refused": p.refused,
           "confidence": p.confidence,
           "probabilities": list(p.probabilities),
           "top": [{"digit": d, "probability": q} for d, q in p.top(top)], "notes": list(p.notes)}
    for key in ("label", "view"):
        if key in item:
            out[key] = item[key]
    return out


def cmd_plot(args: argparse.Namespace) -> int:
    from .runs import plot_run

    data = _load_data(args)
    for path in plot_run(args.run_dir, data):
        print(path)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .calibration import with_temperature
    from .interop import export_model
    from .files import check_model_file
    from .predict import Predictor, model_path

    check_model_file(model_path(args.run_dir))
    predictor = Predictor.load(args.run_dir)
    # the exported file answers the calibrated probabilities: the temperature is folded in
    weights = with_temperature(predictor.network, predictor.weights, predictor.temperature)
    path = export_model(predictor.config, weights, args.format, args.out)
    print(f"wrote {path} ({args.format}, {to_text(predictor.network)})")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .errors import DataError
    from .run_folder import check_new_run_folder, locked_run_folder
    from .runs import import_run

    with locked_run_folder(args.out):  # refused before MNIST is loaded, as train does
        check_new_run_folder(args.out, args.overwrite)
        try:
            data = _load_data(args)
        except DataError as exc:  # the model is still worth importing without its metrics
            print(f"digitnet: MNIST not available, so no metrics or plots ({exc})",
                  file=sys.stderr)
            data = None
        run = import_run(args.model_file, args.out, data, input_scale=args.input_scale,
                         input_mean=args.input_mean, input_std=args.input_std,
                         overwrite=args.overwrite)
    cfg = run.config
    print(f"imported {args.model_file} as {to_text(cfg.network)} "
          f"(fed {run.predictor.results['model_input']}) into {run.folder}")
    if run.metrics:
        print(f"test accuracy {_percent(run.metrics['test_accuracy'])}, test loss "
              f"{run.metrics['test_loss']:.4f} ({run.metrics['count']:,} images)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .runs import load_run
    # says so if the 'web' extra is missing
    from .web.app import HOSTS_FOR_WORKERS, RUN_FOR_WORKERS, create_app
    from .web.server import default_allowed_hosts, uvicorn_options

    import uvicorn

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0..65535, got {args.port}")
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    hosts = args.allowed_hosts or default_allowed_hosts(args.host)
    if hosts is None:
        raise UsageError(f"--host {args.host} listens on every interface: name the host "
                         "names or addresses clients will use with --allowed-hosts")
    run = load_run(args.run_dir)  # the model is loaded here first, so a bad one fails at once
    print(f"serving {args.run_dir} on http://{args.host}:{args.port}/ with {args.workers} "
          f"worker{'s' if args.workers > 1 else ''} (Ctrl-C stops)", file=sys.stderr)
    options = {"host": args.host, "port": args.port, "log_level": "warning",
               **uvicorn_options()}
    try:
        if args.workers == 1:
            uvicorn.run(create_app(run.predictor, run, allowed_hosts=hosts), **options)
        else:  # each worker process imports the app factory and loads the run itself
            os.environ[RUN_FOR_WORKERS] = str(Path(args.run_dir).resolve())
            os.environ[HOSTS_FOR_WORKERS] = ",".join(hosts)
            uvicorn.run("digitnet.web.app:app_for_worker", factory=True, workers=args.workers,
                        **options)
    except OSError as exc:
        raise DigitnetError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    return 0


COMMANDS = {"data": cmd_data, "train": cmd_train, "evaluate": cmd_evaluate,
            "predict": cmd_predict, "plot": cmd_plot, "export": cmd_export, "import": cmd_import,
            "serve": cmd_serve}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help/--version
        return int(exc.code or 0)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("digitnet: interrupted", file=sys.stderr)
        return 130
    except UsageError as exc:
        if args.debug:
            raise
        print(f"digitnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except DigitnetError as exc:
        if args.debug:
            raise
        print(f"digitnet: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 1  # e.g. `digitnet predict ... | head`


def _in_a_training_of_several() -> bool:
    jax = sys.modules.get("jax")
    return jax is not None and jax.distributed.is_initialized()


def entry_point() -> None:
    """The `digitnet` command itself (console script, `python -m digitnet`)."""
    code = main()
    if code and _in_a_training_of_several():
        # JAX's exit handler would wait (up to its shutdown timeout) for every other process
        # to reach the end too, which a dead or failed one never does: leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    # The process ends here. Its final garbage collection would walk every object that JAX,
    # Flax and the rest left behind, 0.4 s after a training on this machine, to find cycles
    # of which none needs finalising: everything is written and closed. Skip it.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry_point()
