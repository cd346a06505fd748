import numpy as np
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from digitnet.plots import DIGIT, WRONG, draw_digits


def test_digit_grid_draws_every_image_with_its_caption_and_frames_the_wrong_ones():
    images = np.zeros((10, 28, 28), np.uint8)
    for i, image in enumerate(images):
        image[4:24, 10 + i % 5] = 255 - i  # each digit distinguishable in the mosaic
    wrong = [i in (2, 7) for i in range(10)]
    ax = Figure().add_subplot()
    draw_digits(ax, images, [f"digit {i}" for i in range(10)], wrong, cols=4)

    mosaic = ax.images[0].get_array()
    assert sorted(np.unique(mosaic))[1:] == [255 - i for i in reversed(range(10))]
    assert mosaic.shape[1] > 4 * DIGIT and mosaic.shape[0] > 3 * DIGIT  # 3 rows of 4
    captions = {t.get_text(): t.get_color() for t in ax.texts}
    assert set(captions) == {f"digit {i}" for i in range(10)}
    assert captions["digit 2"] == WRONG and captions["digit 3"] != WRONG
    frames = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(frames) == 2 and all(to_hex(f.get_edgecolor()) == WRONG for f in frames)
