"""Everything that trains: the only part of digitnet that imports JAX, Flax and Optax.

    networks.py  the Flax network of each family, and its training-only tricks
    batches.py   the validation hold-out, each epoch's order and gather
    loop.py      the compiled epoch and `train`
    state.py     the training state as named arrays, for checkpoints
    stopping.py  early stopping and the best epoch
    optim.py     Adam in Keras' or the paper's form
    augment.py   random distortions inside the compiled step, and the writing variants
    printed.py   printed digits (matplotlib's typefaces) for the training split
    pen.py       synthetic digits painted as pen strokes, for the training split
    not_digits.py  generated non-digits with a uniform target, for the training split
    runtime.py   process-wide speed settings, applied only when asked for
    devices.py   data parallelism: every batch split over a mesh of devices
    distributed.py  several processes or machines training together (JAX's runtime)
"""

from ..extras import require

require("train", "training")  # before the first JAX import, so a light install hears why

from .batches import split_for_training, validation_size  # noqa: E402
from .loop import TrainResult, checkpoint_weights, train  # noqa: E402
from .runtime import (enable_compilation_cache, limit_xla_to_one_core,  # noqa: E402
                      runs_best_on_one_core, training_speedups)

__all__ = ["TrainResult", "checkpoint_weights", "enable_compilation_cache",
           "limit_xla_to_one_core", "runs_best_on_one_core", "split_for_training", "train",
           "training_speedups", "validation_size"]
