"""Numbers, not single digits: 2 to 6 digits written side by side, read whole.

    .venv/bin/python bench/multidigit.py [--run RUN_DIR] [--count 600] [--browser 60]
        [--seed 1] [--json out.json] [--screenshots DIR]

Every number is made of bench/drawing.py's stroke shapes (several styles per digit), written
the way people write a number: one size, slant and pen for the whole number, with each digit
a little taller or shorter, higher or lower, more or less slanted than the next, uneven gaps,
and now and then a speck (a tap of the thin pen). In about one number in five two digits are
made to touch; whether the ink of two neighbours really touches is checked on the painted
digits, and touching numbers are reported apart. Numbers are painted on the page's number
pad (NUMBER_PAD) as the page paints strokes (drawing.rasterise) and read in-process by
`digitnet.numbers.read_number`; `--browser N` also writes the first N stroke by stroke with
the mouse on `digitnet serve RUN`'s page in Debian's chromium, in its number mode.

The model, by default, is the README's model for drawn digits: `--recipe handwriting` at
seed 0, trained once by harness.trained_run. Seeds: every rule and threshold of the
segmentation and reading (digitnet/segment.py, digitnet/numbers.py) was chosen on
`--seed 0` numbers; the numbers reported are `--seed 1`'s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from drawing import (CHROMIUM, CHROMIUM_ARGS, PENS, STYLES, rasterise, replay, serve,
                     wait_for_final, watch_pen_lifts)

NUMBER_PAD = (960, 320)  # the page's number pad, in canvas pixels (width, height)
TOUCHING_SHARE = 0.2  # numbers in which two neighbours are made to touch
SPECK_SHARE = 0.25  # numbers with a speck or two beside them
SPECK_PEN = "thin"


def _digit_strokes(rng, digit: int, cx: float, cy: float, height: float, slant: float):
    """One digit's strokes in a random style of bench/drawing.py, centred at (cx, cy), and
    its width (along the slant)."""
    styles = list(STYLES[digit].values())
    aspect, strokes = styles[rng.integers(len(styles))]
    width = max(8.0, height * aspect * rng.uniform(0.85, 1.15))
    turn = math.radians(rng.uniform(-4, 4))
    wobble = 0.012 * height

    def place(x, y):
        px, py = (x - 0.5) * width, (y - 0.5) * height
        px += slant * -py
        px, py = (px * math.cos(turn) - py * math.sin(turn),
                  px * math.sin(turn) + py * math.cos(turn))
        return (float(cx + px + rng.normal(0, wobble)), float(cy + py + rng.normal(0, wobble)))

    return [[place(x, y) for x, y in stroke] for stroke in strokes], width


def number_item(rng) -> dict:
    """One number: its digits, strokes in pad pixels, pen, specks, and the gaps asked for."""
    length = int(rng.integers(2, 7))
    digits = "".join(str(d) for d in rng.integers(0, 10, length))
    height = float(np.exp(rng.uniform(np.log(70), np.log(230))))
    pen = str(rng.choice(list(PENS)))
    if PENS[pen] > height / 4:
        pen = "thin" if PENS["medium"] > height / 4 else "medium"
    slant = rng.uniform(-0.3, 0.3)
    touch_at = int(rng.integers(length - 1)) if rng.random() < TOUCHING_SHARE else -1
    sizes = height * rng.uniform(0.8, 1.2, length)
    gaps = [PENS[pen] + height * float(np.exp(rng.uniform(np.log(0.04), np.log(0.6))))
            for _ in range(length - 1)]
    if touch_at >= 0:
        gaps[touch_at] = float(rng.uniform(-0.1 * height, 0.5 * PENS[pen]))
    # lay the digits out at x = 0 first, then fit the whole number into the pad
    parts, x = [], 0.0
    for i, d in enumerate(digits):
        shift = rng.normal(0, 0.05 * height)
        digit_slant = slant + rng.normal(0, 0.05)
        strokes, width = _digit_strokes(rng, int(d), 0.0, shift, sizes[i], digit_slant)
        if i:
            x += gaps[i - 1]
        parts.append([[(px + x + width / 2, py) for px, py in s] for s in strokes])
        x += width
    points = np.asarray([p for part in parts for s in part for p in s])
    margin = PENS[pen] / 2 + 6
    span = points.max(0) - points.min(0)
    room = np.asarray(NUMBER_PAD, float) - 2 * margin
    scale = min(1.0, *(room / np.maximum(span, 1)))
    offset = (rng.uniform(margin, NUMBER_PAD[0] - margin - span[0] * scale),
              rng.uniform(margin, NUMBER_PAD[1] - margin - span[1] * scale))
    lowest = points.min(0)
    digit_strokes = [[[((px - lowest[0]) * scale + offset[0], (py - lowest[1]) * scale + offset[1])
                       for px, py in s] for s in part] for part in parts]
    specks = []
    if rng.random() < SPECK_SHARE and height * scale >= 100:
        for _ in range(int(rng.integers(1, 3))):
            specks.append((float(rng.uniform(margin, NUMBER_PAD[0] - margin)),
                           float(rng.uniform(margin, NUMBER_PAD[1] - margin))))
    return {"number": digits, "pen": pen, "steps": int(rng.choice([2, 5, 12])),
            "height": height * scale, "slant": slant, "digit_strokes": digit_strokes,
            "strokes": [s for part in digit_strokes for s in part], "specks": specks,
            "asked_to_touch": touch_at >= 0}


def paint(item: dict) -> np.ndarray:
    """The number pad as the page paints the item: uint8 (height, width), black on white."""
    import cv2

    pad = rasterise(item, NUMBER_PAD)
    for x, y in item["specks"]:
        cv2.circle(pad, (round(x * 16), round(y * 16)), PENS[SPECK_PEN] * 8, 0, -1,
                   cv2.LINE_AA, shift=4)
    return pad


def touching(item: dict) -> bool:
    """Whether the painted ink of two neighbouring digits touches (or overlaps)."""
    masks = [rasterise({**item, "strokes": strokes}, NUMBER_PAD) < 128
             for strokes in item["digit_strokes"]]
    return any((a & b).any() for a, b in zip(masks, masks[1:]))


def numbers(count: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    items = [number_item(rng) for _ in range(count)]
    for item in items:
        item["touching"] = touching(item)
    return items


def read_painted(predictor, items: list[dict]) -> tuple[list[dict], float]:
    """Each item's reading, in-process: {"number", "digits", "refused"}, and ms per number."""
    from digitnet.numbers import read_number

    pads = [paint(item) for item in items]
    started = time.perf_counter()
    readings = [read_number(predictor, pad) for pad in pads]
    ms = (time.perf_counter() - started) * 1000 / len(items)
    return [{"number": r.number, "refused": r.refused,
             "digits": [None if d.digit is None else str(d.digit) for d in r.digits]}
            for r in readings], ms


def score(items: list[dict], answers: list[dict]) -> dict:
    """Whole-number accuracy, per-digit accuracy (a digit counts where the number was cut
    into as many digits as it has and that place reads right), refused and wrong shares."""
    whole = [a["number"] == i["number"] for i, a in zip(items, answers)]
    refused = [a["number"] is None for a in answers]
    wrong = [a["number"] is not None and a["number"] != i["number"]
             for i, a in zip(items, answers)]
    right_digits = sum(sum(d == t for d, t in zip(a["digits"], i["number"]))
                       for i, a in zip(items, answers) if len(a["digits"]) == len(i["number"]))
    total_digits = sum(len(i["number"]) for i in items)
    return {"numbers": len(items), "whole": float(np.mean(whole)) if items else math.nan,
            "per_digit": right_digits / total_digits if items else math.nan,
            "refused": float(np.mean(refused)) if items else math.nan,
            "wrong_not_refused": float(np.mean(wrong)) if items else math.nan}


def _line(name: str, s: dict) -> str:
    return (f"  {name:<28} {s['numbers']:>5}  whole {s['whole']:6.1%}  per digit "
            f"{s['per_digit']:6.1%}  refused {s['refused']:6.1%}  wrong, not refused "
            f"{s['wrong_not_refused']:5.1%}")


def report(title: str, items: list[dict], answers: list[dict], ms: float | None) -> dict:
    print(f"\n{title}" + (f": {ms:.1f} ms per number" if ms is not None else ""))
    apart = [k for k, i in enumerate(items) if not i["touching"]]
    result = {"ms_per_number": ms}
    groups: dict[str, list[int]] = {"digits apart": apart,
                                    "touching": [k for k in range(len(items)) if k not in apart]}
    by: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for k in apart:
        item = items[k]
        by["length"][f"{len(item['number'])} digits"].append(k)
        by["pen"][item["pen"]].append(k)
        by["slant"]["upright" if abs(item["slant"]) < 0.15 else "slanted"].append(k)
        by["specks"]["with specks" if item["specks"] else "no specks"].append(k)
        by["height"]["< 100 px" if item["height"] < 100 else ">= 100 px"].append(k)
    for name, keys in groups.items():
        result[name] = score([items[k] for k in keys], [answers[k] for k in keys])
        print(_line(name, result[name]))
    for kind, cells in by.items():
        print(f"  digits apart, by {kind}:")
        for name, keys in sorted(cells.items()):
            result.setdefault(kind, {})[name] = s = score([items[k] for k in keys],
                                                          [answers[k] for k in keys])
            print(_line("  " + name, s))
    misses = defaultdict(int)  # where the numbers whose digits do not touch were lost
    for k in apart:
        truth, answer = items[k]["number"], answers[k]
        if answer["number"] == truth:
            continue
        misses["read wrong" if answer["number"] is not None
               else "found as too few or too many digits" if len(answer["digits"]) != len(truth)
               else "a digit found but not read"] += 1
    result["misses"] = dict(misses)
    print("  misses (digits apart): " + ", ".join(f"{n} {why}" for why, n in misses.items()))
    mistakes = [(items[k]["number"], answers[k]["number"] or f"refused: {answers[k]['refused']}")
                for k in apart if answers[k]["number"] != items[k]["number"]]
    print("  first misses (digits apart): " + "; ".join(f"{t} -> {a}" for t, a in mistakes[:8]))
    return result


def single_digit_mode(items: list[dict], seed: int) -> dict:
    """How often single-digit reading refuses an image as several digits: the numbers here
    (digits apart), and bench/drawing.py's single digits painted on its own pad."""
    from digitnet.preprocess import prepare_image
    from drawing import drawings

    apart = [i for i in items if not i["touching"]]
    numbers_refused = float(np.mean([prepare_image(paint(i)).refused is not None
                                     for i in apart]))
    singles = drawings(6, seed)
    singles_refused = [s["style"] for s in singles
                       if prepare_image(rasterise(s)).refused is not None]
    print(f"\nsingle-digit mode: {numbers_refused:.1%} of {len(apart)} numbers (digits apart) "
          f"refused as several digits; {len(singles_refused)} of {len(singles)} single "
          f"drawings refused so" + (f" ({', '.join(singles_refused)})" if singles_refused else ""))
    result = {"numbers_refused": numbers_refused, "singles": len(singles),
              "singles_refused": len(singles_refused)}
    if os.environ.get("DIGITNET_DATA_DIR"):  # the test set chose CLEAR_HEIGHT: report others
        from digitnet.data import load_mnist

        images = load_mnist(os.environ["DIGITNET_DATA_DIR"], download=False).train_images
        refused = [i for i, image in enumerate(images[:10_000]) if prepare_image(image).refused]
        print(f"  MNIST's first 10,000 training digits refused as several: {len(refused)}"
              + (f" (indices {refused[:10]})" if refused else ""))
        result["mnist_train_refused"] = len(refused)
    return result


def read_in_browser(url: str, items: list[dict], screenshots: Path | None) -> list[dict]:
    """Each item written stroke by stroke on the page's number pad; the page's final answer."""
    from playwright.sync_api import sync_playwright

    answers = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        page.goto(url + "/")
        page.check("#mode-number")
        watch_pen_lifts(page)
        for n, item in enumerate(items):
            box = page.locator("#pad").bounding_box()
            for x, y in item["specks"]:
                page.select_option("#pen", str(PENS[SPECK_PEN]))
                page.mouse.move(box["x"] + x, box["y"] + y)
                page.mouse.down()
                page.mouse.up()
            replay(page, item)
            shown = wait_for_final(page, 15_000)
            digits = page.locator("#digits li").evaluate_all(
                "items => items.map(li => li.dataset.digit || null)")
            answers.append({"number": shown if shown.isdigit() else None,
                            "refused": page.locator("#notes").text_content(), "digits": digits})
            if screenshots is not None:
                screenshots.mkdir(parents=True, exist_ok=True)
                page.locator("main").screenshot(
                    path=str(screenshots / f"{n:03d}-{item['number']}-read-{shown}.png"))
            page.click("#clear")
            page.wait_for_function("() => document.getElementById('digit').textContent === '?'")
        browser.close()
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="run folder (default: the handwriting recipe, seed 0, "
                                      "trained once by bench/harness.py)")
    parser.add_argument("--count", type=int, default=600, help="numbers painted and read")
    parser.add_argument("--browser", type=int, default=0, metavar="N",
                        help="also write the first N numbers in the browser")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--screenshots", type=Path, help="save the page after each number")
    args = parser.parse_args()
    from digitnet.runs import load_run

    if args.run is None:
        from harness import trained_run

        args.run = str(trained_run("handwriting", 0, Path(os.environ.get(
            "DIGITNET_DATA_DIR", Path.home() / ".cache" / "digitnet" / "mnist"))))
    items = numbers(args.count, args.seed)
    print(f"{len(items)} numbers of 2-6 digits, seed {args.seed}: "
          f"{sum(i['touching'] for i in items)} with touching digits; model {args.run}")
    answers, ms = read_painted(load_run(args.run).predictor, items)
    results = {"seed": args.seed, "run": args.run,
               "painted": report("painted, read in-process", items, answers, ms),
               "single_digit_mode": single_digit_mode(items, args.seed)}
    if args.browser:
        if not os.path.exists(CHROMIUM):
            sys.exit("needs Debian's chromium (apt-get install chromium)")
        process, url = serve(args.run)
        try:
            started = time.perf_counter()
            shown = read_in_browser(url, items[: args.browser], args.screenshots)
            seconds = time.perf_counter() - started
        finally:
            process.terminate()
            process.wait(timeout=20)
        results["browser"] = report("written in the browser (digitnet serve, chromium)",
                                    items[: args.browser], shown, None)
        results["browser"]["seconds"] = seconds
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
