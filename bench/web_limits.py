"""`digitnet serve` under the heaviest requests it accepts: the server's memory and /healthz.

    .venv/bin/python bench/web_limits.py [--model RUN_DIR_OR_MODEL_FILE] [--seconds 10]

Starts `digitnet serve` (one worker) on 127.0.0.1, a fresh one for each measurement, and
reads the server process's peak resident memory above idle from Linux (VmHWM, reset through
/proc/PID/clear_refs after one small request has warmed the server up). First each request
below is posted alone: the attacks of issue #36 (a 97 KB PNG that
declares 5000x5000 RGBA, a JSON body of 2.6 M zeros) and, for each kind of image, the largest
one the server accepts (sized from its own limits). Then 4 clients post the heaviest of those
in a loop for --seconds while another asks for /healthz every 50 ms: /healthz's latency and
the peak memory. Targets (issue #36): peak <= 150 MB above idle, /healthz p99 <= 100 ms.
The model is trained as bench/web_load.py does, or --model is served.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import os
import statistics
import sys
import time
from pathlib import Path

from web_load import drawing_png, model_to_serve, served

TARGET_MB, TARGET_P99_MS = 150, 100


def _rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


class PeakMemory:
    """The peak resident memory of process `pid` above its resident memory at `reset()`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def reset(self) -> None:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        self.idle_kb = _rss_kb(self.pid, "VmRSS")

    def above_idle_mb(self) -> float:
        return (_rss_kb(self.pid, "VmHWM") - self.idle_kb) / 1024


def digit(side: int, mode: str):
    """A 7 drawn across a `side` x `side` image: dark ink on transparent (RGBA) or white."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (side, side), (0, 0, 0, 0) if mode == "RGBA" else "white")
    ImageDraw.Draw(image).line([(side // 4, side // 4), (3 * side // 4, side // 4),
                                (side // 2, 3 * side // 4)], fill="black", width=side // 15)
    return image if mode == "RGBA" else image.convert(mode)


def encode(image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def payloads() -> dict[str, tuple[str, bytes]]:
    """name -> (content type, body): the attacks, then the largest image of each kind the
    server under test accepts (its limits are read from the code it runs)."""
    from digitnet import preprocess
    from digitnet.web.app import MAX_UPLOAD_PIXELS

    side = math.isqrt(MAX_UPLOAD_PIXELS)
    webp = math.isqrt(MAX_UPLOAD_PIXELS // getattr(preprocess, "_DECODED_COPIES", {}).get(
        "WEBP", 1))
    zeros = b'{"pixels": [' + b",".join([b"0"] * 2_600_000) + b"]}"
    return {
        "PNG 5000x5000 RGBA, a 7 (issue #36)": ("png", encode(digit(5000, "RGBA"), "PNG")),
        "JSON, 2.6 M zeros (issue #36)": ("json", zeros),
        f"PNG {side}x{side} RGBA": ("png", encode(digit(side, "RGBA"), "PNG")),
        f"PNG {side}x{side} palette": ("png", encode(digit(side, "P"), "PNG")),
        f"JPEG {side}x{side} RGB": ("png", encode(digit(side, "RGB"), "JPEG", quality=90)),
        f"JPEG {side}x{side} CMYK progressive 4:4:4": ("png", encode(
            digit(side, "CMYK"), "JPEG", quality=90, progressive=True, subsampling=0)),
        f"WebP {webp}x{webp} RGBA lossless": ("png", encode(
            digit(webp, "RGBA"), "WEBP", lossless=True, method=0)),
    }


async def post(http, base: str, kind: str, body: bytes):
    if kind == "json":
        return await http.post(base + "/api/predict", content=body,
                               headers={"content-type": "application/json"})
    return await http.post(base + "/api/predict", files={"file": ("d", body, "image/png")})


async def warmed_up(base: str, memory: PeakMemory) -> None:
    """One small prediction (so that what it imports counts as idle), then the reset."""
    import httpx

    async with httpx.AsyncClient(timeout=60) as http:
        assert (await post(http, base, "png", drawing_png())).status_code == 200
    memory.reset()


async def alone(base: str, memory: PeakMemory, kind: str, body: bytes) -> tuple:
    """(body size, status, seconds, peak MB above idle) of one request."""
    import httpx

    await warmed_up(base, memory)
    async with httpx.AsyncClient(timeout=120) as http:
        started = time.perf_counter()
        response = await post(http, base, kind, body)
        return (len(body), response.status_code, time.perf_counter() - started,
                memory.above_idle_mb())


async def under_load(base: str, memory: PeakMemory, kind: str, body: bytes,
                     seconds: float, clients: int = 4) -> dict:
    """`clients` post `body` in a loop for `seconds`; /healthz is asked every 50 ms."""
    import httpx

    deadline = time.monotonic() + seconds
    posted, health = [], []

    async def poster() -> None:
        async with httpx.AsyncClient(timeout=120) as http:
            while time.monotonic() < deadline:
                posted.append((await post(http, base, kind, body)).status_code)

    async def prober() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                response = await http.get(base + "/healthz")
                health.append((time.perf_counter() - started, response.status_code))
                await asyncio.sleep(0.05)

    await warmed_up(base, memory)
    await asyncio.gather(prober(), *(poster() for _ in range(clients)))
    latencies = sorted(t for t, _ in health)
    return {"posted": len(posted), "statuses": sorted(set(posted)), "health": len(health),
            "health_errors": sum(code != 200 for _, code in health),
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
            "max_ms": 1000 * latencies[-1], "peak_mb": memory.above_idle_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path,
                        help="run folder or model file to serve instead of training one")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("DIGITNET_DATA_DIR"))
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the load")
    args = parser.parse_args()

    cases = payloads()
    with model_to_serve(args.model, args.data_dir) as run:
        single = {}
        for name, (kind, body) in cases.items():
            with served(run) as (server, base):
                single[name] = asyncio.run(alone(base, PeakMemory(server.pid), kind, body))
        accepted = {n: r for n, r in single.items() if r[1] == 200}
        heaviest = max(accepted, key=lambda n: accepted[n][3])
        with served(run) as (server, base):
            loaded = asyncio.run(under_load(base, PeakMemory(server.pid), *cases[heaviest],
                                            args.seconds))

    print(f"\none request at a time; the server's peak memory above idle (target <= "
          f"{TARGET_MB} MB)")
    print(f"{'request':44}{'bytes':>11}{'status':>8}{'seconds':>9}{'peak MB':>9}")
    for name, (size, status, seconds, peak) in single.items():
        print(f"{name:44}{size:>11,}{status:>8}{seconds:>9.2f}{peak:>9.0f}")
    print(f"\n4 clients post '{heaviest}' for {args.seconds:.0f} s ({loaded['posted']} posts, "
          f"answers {loaded['statuses']}); GET /healthz every 50 ms ({loaded['health']}, "
          f"{loaded['health_errors']} failed)")
    print(f"/healthz p50 {loaded['p50_ms']:.1f} ms, p99 {loaded['p99_ms']:.1f} ms (target <= "
          f"{TARGET_P99_MS}), max {loaded['max_ms']:.1f} ms; server peak "
          f"{loaded['peak_mb']:.0f} MB above idle (target <= {TARGET_MB})")
    worst = max(loaded["peak_mb"], *(r[3] for r in single.values()))
    if worst > TARGET_MB or loaded["p99_ms"] > TARGET_P99_MS:
        sys.exit("a target is missed")


if __name__ == "__main__":
    main()
