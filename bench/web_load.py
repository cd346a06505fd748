"""Load on `digitnet serve`: concurrent clients on 127.0.0.1, latency percentiles, throughput.

    .venv/bin/python bench/web_load.py [--clients 50] [--requests 2000] [--workers 1 2]
                                  [--model RUN_DIR_OR_MODEL_FILE]

Trains a `--recipe fast` model (or serves --model), then for each worker count (`--workers 1
2`) starts `digitnet serve --workers N` in its own process, and N clients (one asyncio task
each, sharing an HTTP connection pool) post a 320x320 PNG drawing to /api/predict as fast as
they can. The same load on /healthz, measured against the same server, is the reference: what
the server and this client do with no model work at all. Note that on a 2-core machine the load
generator shares the CPU with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def drawing_png() -> bytes:
    from PIL import Image, ImageDraw

    canvas = Image.new("RGB", (320, 320), "white")
    ImageDraw.Draw(canvas).line([(85, 70), (235, 70), (140, 275)], fill="black", width=22)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


async def load(url: str, clients: int, total: int, send) -> dict:
    import httpx

    latencies: list[float] = []
    errors: collections.Counter = collections.Counter()  # status code or exception name
    remaining = total

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:
                response = await send(http, url)
                if response.status_code != 200:
                    errors[str(response.status_code)] += 1
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
            latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"requests": len(latencies), "errors": sum(errors.values()), "kinds": dict(errors),
            "per_s": len(latencies) / elapsed,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))]}


@contextlib.contextmanager
def served(run: Path, workers: int = 1):
    """`digitnet serve --workers N` on a free loopback port: yields (its process, base URL)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "digitnet", "serve", str(run),
                               "--port", str(port), "--workers", str(workers)],
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base)
        yield server, base
    finally:
        server.terminate()
        server.wait(timeout=20)


@contextlib.contextmanager
def model_to_serve(model: Path | None, data_dir: Path | None):
    """`model` itself, or a `--recipe fast` model trained into a temporary folder."""
    if model:
        yield model
        return
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        data = ["--data-dir", str(data_dir)] if data_dir else []
        subprocess.run([sys.executable, "-m", "digitnet", "train", "--recipe", "fast",
                        "--no-plots", "--out", str(run), *data], check=True, capture_output=True)
        yield run


def serve_and_load(run: Path, workers: int, clients: int, requests: int) -> dict:
    """Start `digitnet serve --workers N` on a free port; load /healthz, then /api/predict."""
    with served(run, workers) as (_, base):
        png = drawing_png()

        async def predict(http, url):
            return await http.post(url, files={"file": ("d.png", png, "image/png")})

        async def health(http, url):
            return await http.get(url)

        asyncio.run(load(base + "/api/predict", clients, 100 * workers, predict))  # warm-up
        return {"health": asyncio.run(load(base + "/healthz", clients, requests, health)),
                "predict": asyncio.run(load(base + "/api/predict", clients, requests, predict))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker counts to measure, one server each")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("DIGITNET_DATA_DIR"))
    parser.add_argument("--model", type=Path,
                        help="run folder or model file to serve instead of training one")
    args = parser.parse_args()

    with model_to_serve(args.model, args.data_dir) as run:
        results = {n: serve_and_load(run, n, args.clients, args.requests) for n in args.workers}

    print(f"\n{args.clients} concurrent clients, {args.requests} requests each row, "
          f"127.0.0.1, {os.cpu_count()} cores shared by server and clients")
    print(f"{'workers':>8}  {'endpoint':34}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for workers, measured in results.items():
        for name, r in (("GET /healthz (reference)", measured["health"]),
                        ("POST /api/predict (320x320 PNG)", measured["predict"])):
            print(f"{workers:>8}  {name:34}{r['per_s']:>9.0f}{r['p50_ms']:>9.1f}"
                  f"{r['p99_ms']:>9.1f}{r['errors']:>8}  {r['kinds'] or ''}")
    first = results[args.workers[0]]["predict"]["per_s"]
    for workers in args.workers[1:]:
        print(f"predict throughput with {workers} workers = "
              f"{results[workers]['predict']['per_s'] / first:.2f}x that with "
              f"{args.workers[0]}")
    if any(r[k]["errors"] for r in results.values() for k in r):
        sys.exit("errors under load")


def wait_until_up(base: str, seconds: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    sys.exit("digitnet serve did not start")


if __name__ == "__main__":
    main()
