"""Training steps per second on 1 device, 2 devices and 2 processes of this machine's CPU.

    .venv/bin/python bench/devices.py [--recipes tutorial,cnn] [--epochs 3] [--rounds 2]
        [--settings "1 device,2 devices,2 processes"]

Each setting trains every recipe in a fresh process, as `digitnet train` would (with its
training_speedups), for --epochs epochs of the recipe's own batch size:
- 1 device: `--devices 1`, today's program (the MLP recipes pinned to one core);
- 2 devices: `--devices 2` on two host devices that XLA is told to make
  (--xla_force_host_platform_device_count=2), each batch split in halves;
- 2 processes: two processes of one device each on 127.0.0.1, joined by JAX's distributed
  runtime, the gradients summed through gloo over TCP.

Steps per second = steps of an epoch / the median epoch time after the first (which
compiles); an epoch's time includes nothing but training, the validation of the previous
epoch running beside it. The settings take turns, round after round (--rounds), so that a
change in what else the machine runs falls on all of them; each is reported as the median
of its rounds, with their range. Beside the wall time, the CPU time an epoch took (every
thread of the training processes; the validation beside it included): on a machine that
other work shares, a setting with more threads can get a larger share of the cores and
look faster by the clock while doing no less work, which its CPU time shows. On 2 cores, shared by both devices, expect no gain: a step of the
CNN already keeps both cores busy, and splitting a batch makes every product smaller.
On a machine with several GPUs, `--devices all` is what this measures.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys

# One training, in a process of its own: argv is recipe, epochs, devices, [port, process id]
WORKER = """
import json, sys, time
recipe_name, epochs, devices = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if len(sys.argv) > 4:
    from digitnet.training.distributed import start_processes
    start_processes(f"127.0.0.1:{sys.argv[4]}", 2, int(sys.argv[5]), timeout=60)
from digitnet import load_mnist, recipe
from digitnet.training import train, training_speedups, validation_size
from digitnet.training.devices import data_parallel, describe_devices

cfg = recipe(recipe_name).replace(epochs=epochs, early_stopping=0)
with training_speedups(cfg, devices):
    where = describe_devices(data_parallel(cfg, devices))
    data = load_mnist(download=False)
    cpu = []  # this process's CPU time (every thread) at each epoch's record
    result = train(cfg, data, devices=devices, on_epoch=lambda r: cpu.append(time.process_time()))
n_train = len(data.train_images) - validation_size(cfg, len(data.train_images))
print(json.dumps({"seconds": [r.seconds for r in result.history], "where": where,
                  "cpu": [b - a for a, b in zip(cpu, cpu[1:])],
                  "steps": -(-n_train // cfg.batch_size)}))
"""


def _run(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=1800)
    if process.returncode != 0:
        sys.exit(f"a training failed:\n{err[-3000:]}")
    return json.loads(out.splitlines()[-1])


def measure(recipe: str, epochs: int, setting: str) -> dict:
    devices = 2 if setting == "2 devices" else 1
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    if setting != "2 processes":
        return _result(_run([recipe, str(epochs), str(devices)], env))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    processes = [_run([recipe, str(epochs), "1", port, str(i)], env) for i in (0, 1)]
    results = [_result(p) for p in processes]
    return {**results[0], "cpu": [a + b for a, b in zip(results[0]["cpu"], results[1]["cpu"])]}


SETTINGS = ("1 device", "2 devices", "2 processes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default="tutorial,cnn", help="comma separated")
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs per training (the first compiles and is not counted)")
    parser.add_argument("--rounds", type=int, default=2, help="turns of every setting")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help=f"comma separated, from: {', '.join(SETTINGS)}")
    args = parser.parse_args()
    settings = args.settings.split(",")
    if args.epochs < 2 or args.rounds < 1 or "1 device" not in settings or not set(
            settings) <= set(SETTINGS):
        sys.exit("need --epochs 2 or more (the first compiles), a round, and '1 device' "
                 f"among the --settings ({', '.join(SETTINGS)})")
    load = os.getloadavg()[0]
    epochs: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    steps = {}
    for recipe in args.recipes.split(","):
        for turn in range(1, args.rounds + 1):
            for setting in settings:
                found = measure(recipe, args.epochs, setting)
                epoch = statistics.median(found["seconds"][1:])
                epochs.setdefault((recipe, setting), []).append(epoch)
                cpu.setdefault((recipe, setting), []).append(statistics.median(found["cpu"]))
                steps[recipe] = found["steps"]
                print(f"round {turn}: {recipe:10} {setting:12} {epoch:7.2f} s/epoch "
                      f"{found['steps'] / epoch:8.0f} steps/s {cpu[recipe, setting][-1]:7.2f} "
                      f"CPU s/epoch   ({found['where']})", flush=True)
    print(f"\n{os.cpu_count()} cores; load average {load:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")
    print(f"{'recipe':10} {'setting':12} {'s/epoch':>8} {'range':>13} {'steps/s':>8} "
          f"{'against 1 device':>17} {'CPU s/epoch':>12} {'against 1 device':>17}")
    for (recipe, setting), seconds in epochs.items():
        median, spent = statistics.median(seconds), statistics.median(cpu[recipe, setting])
        base = statistics.median(epochs[recipe, "1 device"])
        base_cpu = statistics.median(cpu[recipe, "1 device"])
        print(f"{recipe:10} {setting:12} {median:8.2f} {min(seconds):6.2f}-{max(seconds):<6.2f} "
              f"{steps[recipe] / median:8.0f} {base / median:16.2f}x {spent:12.2f} "
              f"{base_cpu / spent:16.2f}x")


if __name__ == "__main__":
    main()
