"""The drawing page, read as people draw: pen strokes replayed with the mouse in the real browser.

    .venv/bin/python bench/drawing.py --run tutorial=runs/tutorial --run robust=runs/robust
        [--per-style 12] [--seed 1] [--non-digits] [--json out.json]

Every digit in several common styles (a 1 with a flag, 7 with and without a bar, open and
closed 4s, a 6 with a large loop, 2 with and without a loop, ...), each drawing with its own
size (from about 60 px to nearly the whole 320 px pad), position, slant, rotation, wobble,
stroke speed (mouse events per segment) and pen (the page's thin, medium and thick). The
strokes are made here from shapes defined in a unit box and randomised by `--seed`; they are
replayed with Playwright's mouse on `digitnet serve RUN` in Debian's chromium, and the answer
read is the one the page shows as final after the pen lifts. With `--non-digits`, letters no
one writes like a digit and a few doodles (a star, a smiley, a heart, an arrow, a scribble)
are drawn the same way, and the share the page refuses (its ✗, "not read as a digit") is
reported beside the share of digits it refuses.

Seeds: drawings with `--seed 0` were used to choose the preprocessing and the model; the
numbers reported are for `--seed 1`, drawings none of those choices saw. Training never reads
this file: `--pen-digits` draws from its own skeletons (digitnet/training/pen.py), which cover
the same common ways of writing with other curves and wider random proportions.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PAD = 320
PENS = {"thin": 10, "medium": 22, "thick": 36}


def arc(cx, cy, rx, ry, start, end, n=None):
    """Points on an ellipse from angle `start` to `end` (degrees; 0 = right, 90 = down)."""
    n = n or max(4, int(abs(end - start) / 12))
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
            for a in np.linspace(start, end, n)]


# Each style: a list of strokes, each a list of (x, y) in a unit box (y down), and the box's
# width relative to its height.
STYLES: dict[int, dict[str, tuple[float, list]]] = {
    0: {"oval": (0.65, [arc(0.5, 0.5, 0.5, 0.5, -90, 270)]),
        "slanted oval": (0.7, [[(0.62 + 0.38 * math.cos(math.radians(a)) - 0.12 * math.sin(
            math.radians(a)), 0.5 + 0.5 * math.sin(math.radians(a))) for a in
            np.linspace(-100, 265, 30)]])},
    1: {"stick": (0.15, [[(0.5, 0.0), (0.5, 1.0)]]),
        "flag": (0.4, [[(0.0, 0.25), (0.7, 0.0), (0.7, 1.0)]]),
        "flag and base": (0.6, [[(0.15, 0.22), (0.55, 0.0), (0.55, 1.0)],
                                [(0.1, 1.0), (1.0, 1.0)]])},
    2: {"plain": (0.7, [arc(0.5, 0.3, 0.5, 0.3, 190, 360) + [(0.0, 1.0), (1.0, 1.0)]]),
        "loop": (0.7, [arc(0.5, 0.3, 0.5, 0.3, 190, 360) + [(0.15, 0.85)]
                       + arc(0.22, 0.88, 0.12, 0.12, 270, 630)[1:] + [(1.0, 0.95)]])},
    3: {"round": (0.65, [arc(0.45, 0.25, 0.45, 0.25, 200, 450)
                         + arc(0.45, 0.75, 0.55, 0.25, 270, 520)[1:]]),
        "flat top": (0.65, [[(0.0, 0.0), (0.9, 0.0), (0.35, 0.42)]
                            + arc(0.45, 0.71, 0.55, 0.29, 270, 510)[1:]])},
    4: {"open": (0.8, [[(0.2, 0.0), (0.0, 0.65), (1.0, 0.65)], [(0.7, 0.05), (0.7, 1.0)]]),
        "closed": (0.8, [[(0.7, 0.0), (0.0, 0.65), (1.0, 0.65)], [(0.7, 0.0), (0.7, 1.0)]])},
    5: {"one stroke": (0.65, [[(0.9, 0.0), (0.1, 0.0), (0.05, 0.42)]
                              + arc(0.45, 0.68, 0.5, 0.32, 230, 505)[1:]]),
        "bar apart": (0.65, [[(0.08, 0.0), (0.03, 0.42)] + arc(0.45, 0.68, 0.5, 0.32, 230,
                                                                505)[1:],
                             [(0.1, 0.0), (0.95, 0.0)]])},
    # down the left side from the top right, then the loop: bottom, right, top, back left
    6: {"small loop": (0.6, [arc(0.9, 0.78, 0.85, 0.78, 270, 180)
                             + arc(0.5, 0.78, 0.45, 0.22, 180, -175)[1:]]),
        "large loop": (0.7, [arc(0.9, 0.62, 0.88, 0.62, 270, 180)
                             + arc(0.5, 0.62, 0.48, 0.38, 180, -175)[1:]])},
    7: {"plain": (0.7, [[(0.0, 0.0), (1.0, 0.0), (0.35, 1.0)]]),
        "crossbar": (0.7, [[(0.0, 0.0), (1.0, 0.0), (0.35, 1.0)], [(0.3, 0.5), (0.95, 0.5)]])},
    8: {"one stroke": (0.6, [arc(0.5, 0.25, 0.4, 0.25, 0, -270)[:-1]
                             + arc(0.5, 0.74, 0.5, 0.26, 270, 630)
                             + arc(0.5, 0.25, 0.4, 0.25, 90, 0)[1:]]),
        "two loops": (0.6, [arc(0.5, 0.25, 0.4, 0.25, 90, 450),
                            arc(0.5, 0.74, 0.5, 0.26, -90, 270)])},
    9: {"straight tail": (0.6, [arc(0.5, 0.3, 0.5, 0.3, 0, 360) + [(1.0, 1.0)]]),
        "curved tail": (0.6, [arc(0.5, 0.3, 0.5, 0.3, 0, 360)
                              + arc(0.5, 0.65, 0.5, 0.35, 0, 120)[1:]])},
}


# What is not a digit, drawn as people draw it on the pad: letters no one writes like a digit
# (bench/refusal.py leaves out the same ones) and a few doodles. Its own curves: training's
# non-digits (digitnet/training/not_digits.py) are drawn from other skeletons.
NON_DIGIT_STYLES: dict[str, tuple[float, list]] = {
    "A": (0.8, [[(0.0, 1.0), (0.45, 0.0), (0.55, 0.0), (1.0, 1.0)], [(0.2, 0.62), (0.8, 0.62)]]),
    "C": (0.75, [arc(0.55, 0.5, 0.5, 0.5, -40, -320)]),
    "E": (0.6, [[(0.95, 0.0), (0.0, 0.0), (0.0, 1.0), (1.0, 1.0)], [(0.0, 0.48), (0.75, 0.48)]]),
    "F": (0.6, [[(1.0, 0.0), (0.0, 0.0), (0.0, 1.0)], [(0.0, 0.45), (0.7, 0.45)]]),
    "H": (0.75, [[(0.0, 0.0), (0.0, 1.0)], [(1.0, 0.0), (1.0, 1.0)], [(0.0, 0.5), (1.0, 0.5)]]),
    "K": (0.7, [[(0.0, 0.0), (0.0, 1.0)], [(0.95, 0.0), (0.05, 0.55)], [(0.3, 0.4), (1.0, 1.0)]]),
    "M": (0.9, [[(0.0, 1.0), (0.05, 0.0), (0.5, 0.7), (0.95, 0.0), (1.0, 1.0)]]),
    "N": (0.75, [[(0.0, 1.0), (0.0, 0.0), (1.0, 1.0), (1.0, 0.0)]]),
    "P": (0.6, [[(0.0, 1.0), (0.0, 0.0)] + arc(0.0, 0.27, 1.0, 0.27, -90, 90)]),
    "R": (0.65, [[(0.0, 1.0), (0.0, 0.0)] + arc(0.0, 0.25, 0.95, 0.25, -90, 90)
                 + [(1.0, 1.0)]]),
    "U": (0.75, [[(0.0, 0.0)] + arc(0.5, 0.5, 0.5, 0.5, 180, 0) + [(1.0, 0.0)]]),
    "V": (0.8, [[(0.0, 0.0), (0.5, 1.0), (1.0, 0.0)]]),
    "W": (1.1, [[(0.0, 0.0), (0.22, 1.0), (0.5, 0.35), (0.78, 1.0), (1.0, 0.0)]]),
    "X": (0.8, [[(0.0, 0.0), (1.0, 1.0)], [(1.0, 0.0), (0.0, 1.0)]]),
    "Y": (0.8, [[(0.0, 0.0), (0.5, 0.45)], [(1.0, 0.0), (0.5, 0.45), (0.5, 1.0)]]),
    "a": (0.8, [arc(0.45, 0.55, 0.45, 0.45, -20, -355) + [(0.9, 0.0), (0.92, 1.0)]]),
    "e": (0.8, [[(0.0, 0.5), (1.0, 0.5)] + arc(0.5, 0.5, 0.5, 0.5, 0, -310)]),
    "h": (0.6, [[(0.0, 0.0), (0.0, 1.0)], [(0.0, 0.6)] + arc(0.5, 0.6, 0.5, 0.3, 180, 360)
                                          + [(1.0, 1.0)]]),
    "m": (1.1, [[(0.0, 1.0), (0.0, 0.2)] + arc(0.25, 0.35, 0.25, 0.25, 180, 360) + [(0.5, 1.0)],
                [(0.5, 0.35)] + arc(0.75, 0.35, 0.25, 0.25, 180, 360) + [(1.0, 1.0)]]),
    "n": (0.7, [[(0.0, 1.0), (0.0, 0.1)], [(0.0, 0.45)] + arc(0.5, 0.45, 0.5, 0.4, 180, 360)
                                          + [(1.0, 1.0)]]),
    "r": (0.55, [[(0.0, 1.0), (0.0, 0.0)], [(0.0, 0.4)] + arc(0.55, 0.4, 0.55, 0.35, 180, 300)]),
    "t": (0.6, [[(0.4, 0.0), (0.4, 0.85)] + arc(0.65, 0.85, 0.25, 0.15, 180, 60),
                [(0.0, 0.3), (0.9, 0.3)]]),
    "u": (0.75, [[(0.0, 0.0)] + arc(0.45, 0.55, 0.45, 0.45, 180, 0) + [(0.9, 0.0), (1.0, 1.0)]]),
    "w": (1.0, [arc(0.25, 0.5, 0.25, 0.5, 180, 0), arc(0.75, 0.5, 0.25, 0.5, 180, 0)]),
    "star": (1.0, [[(0.5, 0.0), (0.8, 1.0), (0.0, 0.38), (1.0, 0.38), (0.2, 1.0), (0.5, 0.0)]]),
    "smiley": (1.0, [arc(0.5, 0.5, 0.5, 0.5, 0, 360), [(0.33, 0.32), (0.34, 0.36)],
                     [(0.66, 0.32), (0.67, 0.36)], arc(0.5, 0.55, 0.28, 0.22, 20, 160)]),
    "heart": (1.0, [arc(0.27, 0.3, 0.25, 0.25, 0, -180) + [(0.5, 1.0)],
                    arc(0.73, 0.3, 0.25, 0.25, 180, 360) + [(0.5, 1.0)]]),
    "arrow": (1.0, [[(0.0, 0.5), (1.0, 0.5)], [(0.65, 0.15), (1.0, 0.5), (0.65, 0.85)]]),
    "scribble": (1.0, [[(0.0, 0.3), (0.3, 0.9), (0.5, 0.1), (0.7, 0.8), (1.0, 0.2), (0.6, 0.6),
                        (0.1, 0.5), (0.9, 1.0)]]),
}
NOT_A_DIGIT = "not a digit"  # the label of those, where a digit's label is its value
REFUSED = "\u2717"  # the page's answer when it refuses: its ✗


def drawings(per_style: int, seed: int, *, non_digits: bool = False) -> list[dict]:
    """`per_style` randomised drawings of every style (with `non_digits`, of the non-digits'
    styles too), strokes in pad pixels."""
    rng = np.random.default_rng(seed)
    out = []
    styles_of = [(digit, styles) for digit, styles in STYLES.items()]
    if non_digits:
        styles_of.append((NOT_A_DIGIT, NON_DIGIT_STYLES))
    for digit, styles in styles_of:
        for style, (aspect, strokes) in styles.items():
            for _ in range(per_style):
                height = float(np.exp(rng.uniform(np.log(60), np.log(290))))
                pen = str(rng.choice(list(PENS)))
                if PENS[pen] > height / 4:  # a pen a quarter of the digit's height: a blob
                    pen = "thin" if PENS["medium"] > height / 4 else "medium"
                width = max(8.0, height * aspect * rng.uniform(0.85, 1.15))
                slant = rng.uniform(-0.25, 0.25)
                turn = math.radians(rng.uniform(-8, 8))
                margin = PENS[pen] / 2 + 4
                half_w = (width + abs(slant) * height) / 2 + margin
                half_h = height / 2 + margin
                cx = rng.uniform(min(half_w, PAD / 2), max(PAD - half_w, PAD / 2))
                cy = rng.uniform(min(half_h, PAD / 2), max(PAD - half_h, PAD / 2))
                wobble = 0.012 * height

                def place(x, y):
                    px, py = (x - 0.5) * width, (y - 0.5) * height
                    px += slant * -py
                    px, py = (px * math.cos(turn) - py * math.sin(turn),
                              px * math.sin(turn) + py * math.cos(turn))
                    return (float(np.clip(cx + px + rng.normal(0, wobble), 1, PAD - 1)),
                            float(np.clip(cy + py + rng.normal(0, wobble), 1, PAD - 1)))

                name = style if digit == NOT_A_DIGIT else f"{digit} {style}"
                out.append({"digit": digit, "style": name, "height": height,
                            "pen": pen, "steps": int(rng.choice([2, 5, 12])),
                            "strokes": [[place(x, y) for x, y in stroke] for stroke in strokes]})
    return out


def pointer_path(stroke: list, steps: int) -> np.ndarray:
    """The pointer samples the page receives for a stroke: Playwright's `mouse.move(...,
    steps=n)` moves in n equal steps from where the mouse is to the target."""
    points = [np.asarray(stroke[0])]
    for target in stroke[1:]:
        start, target = points[-1], np.asarray(target)
        points.extend(start + (target - start) * i / steps for i in range(1, steps + 1))
    return np.asarray(points)


def rasterise(item: dict, size: tuple[int, int] = (PAD, PAD)) -> np.ndarray:
    """The pad as the page paints it (black on white, round caps, a quadratic curve through
    the midpoints of the samples), drawn with OpenCV instead of the browser: uint8 (height,
    width) of the pad's `size` (width, height). For choosing quickly; the browser's reading
    is the one reported."""
    import cv2

    pad = np.full((size[1], size[0]), 255, np.uint8)
    width = PENS[item["pen"]]
    t = np.linspace(0, 1, 6)[:, None]
    for stroke in item["strokes"]:
        samples = pointer_path(stroke, item["steps"])
        curve = [samples[0]]
        mid = samples[0]
        for previous, point in zip(samples[:-1], samples[1:]):
            end = (previous + point) / 2
            curve.extend((1 - t) ** 2 * mid + 2 * (1 - t) * t * previous + t ** 2 * end)
            mid = end
        fixed = np.round(np.asarray(curve) * 16).astype(np.int32)
        cv2.polylines(pad, [fixed], False, 0, thickness=width, lineType=cv2.LINE_AA, shift=4)
        cv2.circle(pad, tuple(fixed[0]), width * 8, 0, -1, cv2.LINE_AA, shift=4)
    return pad


def read_rasterised(run_dir: str, items: list[dict]) -> list[str]:
    """What the model reads from `rasterise`d drawings, through the server's preprocessing."""
    from digitnet import load_run
    from digitnet.preprocess import prepare_image

    predictor = load_run(run_dir).predictor
    pixels = np.stack([prepare_image(rasterise(item)).pixels for item in items])
    return [REFUSED if p.digit is None else str(p.digit) for p in predictor.predict(pixels)]


def size_bucket(height: float) -> str:
    return "small (<120 px)" if height < 120 else "medium" if height < 200 else "large (>=200 px)"


def serve(run_dir: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "digitnet", "serve", run_dir, "--port",
                                str(port)], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    sys.exit(f"digitnet serve {run_dir} did not start")


def watch_pen_lifts(page) -> None:
    """Have the page note when the pen last lifted (window.penLiftedAt), for wait_for_final.
    A function, not an expression: the page's CSP forbids the eval an expression would need."""
    page.evaluate("() => document.getElementById('pad').addEventListener('pointerup', "
                  "() => { window.penLiftedAt = performance.now(); })")


def replay(page, item: dict) -> None:
    """Draw `item`'s strokes on the pad with the mouse, with its pen and speed."""
    page.select_option("#pen", str(PENS[item["pen"]]))
    box = page.locator("#pad").bounding_box()
    for stroke in item["strokes"]:
        page.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=item["steps"])
        page.mouse.up()


def wait_for_final(page, timeout_ms: int) -> str:
    """The answer the page shows as final for the drawing as it is after the last stroke."""
    page.wait_for_function("() => document.getElementById('digit').dataset.final === "
                           "'true' && Number(document.getElementById('digit').dataset"
                           ".finalAt) > window.penLiftedAt", timeout=timeout_ms)
    return page.locator("#digit").text_content()


def read_all(page, url: str, items: list[dict], screenshots: Path | None = None) -> list[str]:
    page.goto(url + "/")
    watch_pen_lifts(page)
    answers = []
    for number, item in enumerate(items):
        replay(page, item)
        answers.append(wait_for_final(page, 10_000))
        if screenshots is not None:
            screenshots.mkdir(parents=True, exist_ok=True)
            name = f"{number:03d}-{item['style'].replace(' ', '-')}-read-{answers[-1]}.png"
            page.locator("main").screenshot(path=str(screenshots / name))
        page.click("#clear")
        page.wait_for_function("() => document.getElementById('digit').textContent === '?'")
    return answers


def report(name: str, items: list[dict], answers: list[str]) -> dict:
    pairs = [(item, answer) for item, answer in zip(items, answers)
             if item["digit"] != NOT_A_DIGIT]
    groups: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for item, answer in pairs:
        right = answer == str(item["digit"])
        groups["digit"][str(item["digit"])].append(right)
        groups["style"][item["style"]].append(right)
        groups["size"][size_bucket(item["height"])].append(right)
        groups["pen"][item["pen"]].append(right)
    overall = float(np.mean([a == str(i["digit"]) for i, a in pairs]))
    refused = float(np.mean([a == REFUSED for _, a in pairs]))
    print(f"\n{name}: {overall:.1%} of {len(pairs)} drawings read right, {refused:.1%} refused")
    result = {"overall": overall, "refused": refused}
    for kind, by in groups.items():
        cells = {key: float(np.mean(v)) for key, v in sorted(by.items())}
        result[kind] = cells
        print(f"  by {kind}: " + ", ".join(f"{k} {v:.0%}" for k, v in cells.items()))
    worst = sorted(result["style"].items(), key=lambda kv: kv[1])[:3]
    print("  weakest styles: " + ", ".join(f"{k} {v:.0%}" for k, v in worst))
    confusions = defaultdict(int)
    for item, answer in pairs:
        if answer != str(item["digit"]):
            confusions[f"{item['style']} read as {answer}"] += 1
    print("  mistakes: " + ", ".join(f"{k} ({n}x)" for k, n in
                                     sorted(confusions.items(), key=lambda kv: -kv[1])[:8]))
    others = [(item, answer) for item, answer in zip(items, answers)
              if item["digit"] == NOT_A_DIGIT]
    if others:
        by_style: dict[str, list[bool]] = defaultdict(list)
        for item, answer in others:
            by_style[item["style"]].append(answer == REFUSED)
        result["non-digits refused"] = float(np.mean([a == REFUSED for _, a in others]))
        result["non-digits refused by style"] = {k: float(np.mean(v))
                                                 for k, v in sorted(by_style.items())}
        print(f"  non-digits: {result['non-digits refused']:.1%} of {len(others)} refused; "
              "by style: " + ", ".join(f"{k} {v:.0%}" for k, v in
                                       result["non-digits refused by style"].items()))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, metavar="NAME=RUN_DIR",
                        help="a model to read the drawings with (repeatable)")
    parser.add_argument("--per-style", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--non-digits", action="store_true",
                        help="also draw letters and doodles, and report how many are refused")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--screenshots", type=Path, help="save each drawing's page here")
    parser.add_argument("--rasterise", action="store_true",
                        help="paint the strokes with OpenCV instead of the browser (seconds "
                             "instead of minutes; for choosing, not for reporting)")
    args = parser.parse_args()
    items = drawings(args.per_style, args.seed, non_digits=args.non_digits)
    styles = sum(len(s) for s in STYLES.values()) + (len(NON_DIGIT_STYLES) if args.non_digits
                                                      else 0)
    print(f"{len(items)} drawings: {styles} styles x {args.per_style}, seed {args.seed}")
    if args.rasterise:
        results = {}
        for spec in args.run:
            name, _, run_dir = spec.partition("=")
            results[name] = report(name, items, read_rasterised(run_dir, items))
        write_results(args, items, results)
        return
    if not os.path.exists(CHROMIUM):
        sys.exit("needs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    results = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 700})
        for spec in args.run:
            name, _, run_dir = spec.partition("=")
            process, url = serve(run_dir)
            try:
                started = time.perf_counter()
                answers = read_all(page, url, items, args.screenshots and args.screenshots / name)
                results[name] = report(name, items, answers)
                results[name]["seconds"] = time.perf_counter() - started
            finally:
                process.terminate()
                process.wait(timeout=20)
        browser.close()
    write_results(args, items, results)


def write_results(args: argparse.Namespace, items: list[dict], results: dict) -> None:
    if args.json:
        args.json.write_text(json.dumps({"seed": args.seed, "drawings": len(items),
                                         "browser": not args.rasterise, "results": results},
                                        indent=1))


if __name__ == "__main__":
    main()
