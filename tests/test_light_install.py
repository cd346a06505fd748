"""`pip install digitnet` without extras, into a fresh virtual environment: predicting and
evaluating work, and each command that needs an extra says which one."""

import json
import subprocess
import venv
from pathlib import Path

import numpy as np
import pytest

from digitnet.config import TrainConfig
from digitnet.modelfile import save_model, weight_shapes
from digitnet.predict import Predictor
from digitnet.preprocess import open_image, prepare_image

from conftest import draw_digit

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def light(tmp_path_factory):
    """(bin folder, work folder) of a virtual environment with `pip install digitnet`."""
    folder = tmp_path_factory.mktemp("light")
    venv.create(folder / "venv", with_pip=True)
    bin_dir = folder / "venv" / "bin"
    done = subprocess.run([bin_dir / "python", "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", str(REPO)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return bin_dir, folder


def test_a_light_install_predicts_and_names_the_extra_each_other_command_needs(
        light, real_mnist_dir):
    bin_dir, folder = light
    for module in ("jax", "flax", "optax", "matplotlib", "fastapi", "scipy"):
        found = subprocess.run([bin_dir / "python", "-c", f"import {module}"],
                               capture_output=True)
        assert found.returncode != 0, f"{module} was installed without an extra"

    cfg = TrainConfig(hidden=(16,))
    rng = np.random.default_rng(0)
    weights = {n: rng.normal(0, 0.3, s).astype(np.float32)
               for n, s in weight_shapes(cfg).items()}
    save_model(folder / "model.safetensors", weights, cfg)
    draw_digit(4, size=90, ink=0, paper=255).save(folder / "four.png")

    def digitnet(*args):
        return subprocess.run([bin_dir / "digitnet", *map(str, args)], capture_output=True,
                              text=True, timeout=300, cwd=folder,
                              env={"PATH": str(bin_dir), "DIGITNET_DATA_DIR": str(real_mnist_dir),
                                   "DIGITNET_CACHE_DIR": str(folder / "cache")})

    predicted = digitnet("predict", "model.safetensors", "four.png", "--json")
    assert predicted.returncode == 0, predicted.stderr
    [item] = json.loads(predicted.stdout)
    expected = Predictor(cfg, weights).probabilities(
        prepare_image(open_image(folder / "four.png")).pixels[None])[0]
    assert np.allclose(item["probabilities"], expected, atol=1e-6)

    evaluated = digitnet("evaluate", "model.safetensors", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["count"] == 10_000

    for args, extra in ((["train", "--epochs", "1"], "train"),
                        (["serve", "model.safetensors"], "web"),
                        (["predict", "model.safetensors", "four.png", "--show", "views"],
                         "plots"),
                        (["export", "model.safetensors", "--format", "onnx", "--out", "m.onnx"],
                         "onnx")):
        refused = digitnet(*args)
        assert refused.returncode == 1, (args, refused.stderr)
        assert f"pip install 'digitnet[{extra}]'" in refused.stderr.strip().splitlines()[-1]
