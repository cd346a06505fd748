import os
from pathlib import Path

import numpy as np
import pytest

from digitnet.config import recipe
from digitnet.errors import DataError
from digitnet.external import load_semeion, prepare_pages, render_page, write_pages
from digitnet.predict import Predictor
from digitnet.training import train


def semeion_line(digit_pixels: np.ndarray, label: int) -> str:
    one_hot = [1 if d == label else 0 for d in range(10)]
    return " ".join(f"{v:.4f}" for v in digit_pixels.ravel()) + " " + " ".join(map(str, one_hot))


def test_load_semeion_reads_pixels_and_labels(tmp_path):
    digits = (np.random.default_rng(0).random((3, 16, 16)) > 0.7).astype(np.float32)
    (tmp_path / "s.data").write_text(
        "\n".join(semeion_line(d, label) for d, label in zip(digits, [3, 0, 9])) + "\n")
    images, labels = load_semeion(tmp_path / "s.data")
    np.testing.assert_array_equal(images, digits)
    assert labels.tolist() == [3, 0, 9]


@pytest.mark.parametrize("content, message", [
    ("1 2 3\n", "expected 266 numbers per line"),
    (" ".join(["0"] * 256 + ["1", "1"] + ["0"] * 8) + "\n", "must be one-hot"),
    ("not numbers at all\n", "cannot read"),
])
def test_bad_semeion_files_are_refused(tmp_path, content, message):
    (tmp_path / "s.data").write_text(content)
    with pytest.raises(DataError, match=message):
        load_semeion(tmp_path / "s.data")


def test_rendered_page_is_dark_ink_on_light_paper_and_recoverable(tmp_path):
    digit = np.zeros((16, 16), np.float32)
    digit[2:14, 7:9] = 1  # a "1"
    page = np.asarray(render_page(digit, np.random.default_rng(0)))
    assert min(page.shape) > 16 * 6 * 1.5
    assert np.median(page) > 150 and page.min() < 80
    paths = write_pages(digit[None], np.array([1]), tmp_path)
    naive, prepared = prepare_pages(paths)
    assert naive.shape == prepared.shape == (1, 28, 28)
    rows, cols = np.nonzero(prepared[0] > 100)
    assert np.ptp(rows) > 3 * np.ptp(cols)  # still a tall thin stroke, centred
    assert 10 <= cols.mean() <= 18


@pytest.fixture(scope="module")
def semeion_path() -> Path:
    folder = os.environ.get("DIGITNET_EXTERNAL_DIR")
    if folder and (Path(folder) / "semeion.data").is_file():
        return Path(folder) / "semeion.data"
    message = "Semeion needed: set DIGITNET_EXTERNAL_DIR (CI points it at ../shared/external)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def semeion_pages(semeion_path, tmp_path_factory):
    """Semeion's digits rendered as user pictures: (naive 28x28s, prepared 28x28s, labels)."""
    digits, labels = load_semeion(semeion_path)
    folder = tmp_path_factory.mktemp("semeion-pages")
    naive, prepared = prepare_pages(write_pages(digits, labels, folder, seed=0))
    return naive, prepared, labels


@pytest.mark.slow
def test_preprocessing_and_augmentation_help_on_other_peoples_digits(semeion_pages, real_mnist,
                                                                      tutorial_run):
    """End to end on 1,593 Semeion digits rendered as user pictures (bench/handwriting.py reports
    the same with several seeds). Seed 0 here measured 12.8%, 76.5% and 85.9%."""
    naive, prepared, labels = semeion_pages

    def accuracy(predictor, images):
        return float((predictor.probabilities(images).argmax(1) == labels).mean())

    tutorial = Predictor.load(tutorial_run / "model.safetensors")
    augmented_cfg = recipe("tutorial").replace(augment=True)
    augmented = Predictor(augmented_cfg, train(augmented_cfg, real_mnist).weights)
    naive_acc, prepared_acc = accuracy(tutorial, naive), accuracy(tutorial, prepared)
    augmented_acc = accuracy(augmented, prepared)
    assert naive_acc < 0.3
    assert prepared_acc >= 0.74
    assert augmented_acc >= 0.85


@pytest.mark.slow
def test_robust_recipe_reads_most_of_other_peoples_digits(semeion_pages, real_mnist):
    """The wider, longer-trained --augment network (about a minute here). Seed 0 measured
    90.5% on Semeion and 99.06% on MNIST's test set."""
    _, prepared, labels = semeion_pages
    cfg = recipe("robust")
    predictor = Predictor(cfg, train(cfg, real_mnist).weights)
    assert float((predictor.probabilities(prepared).argmax(1) == labels).mean()) >= 0.895
    mnist_acc = (predictor.probabilities(real_mnist.test_images).argmax(1)
                 == real_mnist.test_labels).mean()
    assert mnist_acc >= 0.985
