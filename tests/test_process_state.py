"""The library leaves the process as it found it unless asked (training_speedups)."""

import json
import os
import subprocess
import sys
import types

from digitnet.training import limit_xla_to_one_core

# Trains twice in a fresh process on random images: once plainly, once inside
# training_speedups, noting the process-wide settings before, during and after each.
SCRIPT = """
import json, os
import jax
import numpy as np
from threadpoolctl import threadpool_info
import digitnet

def settings():
    return {"compilation_cache_dir": jax.config.jax_compilation_cache_dir,
            "blas_threads": sorted(p["num_threads"] for p in threadpool_info()
                                   if p["user_api"] == "blas"),
            "affinity": sorted(os.sched_getaffinity(0))}

rng = np.random.default_rng(0)
data = digitnet.MnistData(rng.integers(0, 256, (200, 28, 28), np.uint8),
                          rng.integers(0, 10, 200).astype(np.uint8),
                          rng.integers(0, 256, (50, 28, 28), np.uint8),
                          rng.integers(0, 10, 50).astype(np.uint8), source="random")
cfg = digitnet.TrainConfig(hidden=(16,), epochs=2)
seen = {"before": settings()}
during = []
digitnet.train(cfg, data, on_epoch=lambda record: during.append(settings()))
seen["during"], seen["after"] = during[0], settings()
with digitnet.training_speedups(cfg):
    digitnet.train(cfg, data, on_epoch=lambda record: during.append(settings()))
seen["during speedups"], seen["after speedups"] = during[-1], settings()
print(json.dumps(seen))
"""


def test_train_changes_nothing_process_wide_and_speedups_only_when_asked(tmp_path):
    env = {**os.environ, "DIGITNET_CACHE_DIR": str(tmp_path), "OPENBLAS_NUM_THREADS": "2",
           "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    before = seen["before"]
    assert before["blas_threads"] and max(before["blas_threads"]) > 1
    assert seen["during"] == before and seen["after"] == before
    speedy = seen["during speedups"]
    assert speedy["compilation_cache_dir"] == str(tmp_path / "xla")
    assert set(speedy["blas_threads"]) == {1}
    assert speedy["affinity"] == before["affinity"]  # XLA's threads are pinned, not ours
    assert seen["after speedups"]["blas_threads"] == before["blas_threads"]


def test_the_one_core_limit_degrades_to_doing_nothing_without_jaxs_private_api(monkeypatch):
    # JAX offers no public way to ask whether its backend has started; without the private
    # one (a JAX that renamed it), the limit must change nothing rather than fail.
    monkeypatch.setitem(sys.modules, "jax._src.xla_bridge", types.ModuleType("renamed"))
    affinity = os.sched_getaffinity(0)
    assert limit_xla_to_one_core() is False
    assert os.sched_getaffinity(0) == affinity
