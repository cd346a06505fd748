"""`digitnet predict`: image files (or MNIST test images) read as digits, or as numbers."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import DigitnetError
from . import common
from .common import UsageError


def _predict_items(args: argparse.Namespace) -> list[dict[str, Any]]:
    from ..files import check_model_file, find_files
    from ..predict import Predictor, model_path
    from ..preprocess import IMAGE_SUFFIXES

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
            from ..plots import save_network_view

            view = args.show / f"{number:04d}-{path.stem}.png"
            try:
                save_network_view(view, original, prepared.pixels, prediction)
            except OSError as exc:
                raise DigitnetError(f"cannot write {view}: {exc.strerror or exc}") from None
            items[-1]["view"] = str(view)
    if args.test_index:
        test_images, test_labels = common.load_test_set(args)
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
    from ..preprocess import open_image, prepare_image

    original = open_image(path)
    return original, prepare_image(original)


def _read_number(predictor, path: Path):
    """The image file `path` read as a number (a NumberReading)."""
    from ..numbers import read_number
    from ..preprocess import open_image

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
