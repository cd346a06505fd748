import math

import numpy as np
import pytest

from digitnet.metrics import compute_metrics, loss_and_accuracy


def test_metrics_against_a_hand_worked_example():
    # Four images: true 0,0,1,2 predicted 0,1,1,1.
    probs = np.full((4, 10), 0.01)
    for row, digit in enumerate([0, 1, 1, 1]):
        probs[row, digit] = 0.91
    labels = np.array([0, 0, 1, 2])
    m = compute_metrics(probs, labels)
    assert m.accuracy == 0.5 and m.count == 4
    assert m.loss == -(math.log(0.91) + math.log(0.01) + math.log(0.91) + math.log(0.01)) / 4
    assert m.confusion[0][:3] == [1, 1, 0] and m.confusion[2][:3] == [0, 1, 0]
    assert sum(map(sum, m.confusion)) == 4
    zero, one, two = m.per_class[:3]
    assert (zero.precision, zero.recall, zero.support) == (1.0, 0.5, 2)
    assert one.precision == 1 / 3 and one.recall == 1.0
    assert one.f1 == 2 * (1 / 3) / (1 / 3 + 1)
    assert (two.precision, two.recall, two.f1) == (0.0, 0.0, 0.0)
    assert sorted(m.most_confused) == [(0, 1, 1), (2, 1, 1)]
    as_json = m.to_dict()
    assert as_json["confusion_matrix"] == m.confusion
    assert {"accuracy", "loss", "per_class", "most_confused"} <= set(as_json)


def test_loss_and_accuracy_match_optax_even_for_extreme_logits():
    import jax.numpy as jnp
    import optax

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 5, (50, 10)).astype(np.float32)
    logits[0] = [200.0] + [-200.0] * 9  # confidently wrong: softmax underflows to 0
    labels = rng.integers(0, 10, 50)
    labels[0] = 3
    loss, accuracy = loss_and_accuracy(logits, labels)
    expected = optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(logits),
                                                               jnp.asarray(labels)).mean()
    assert math.isfinite(loss) and loss == pytest.approx(float(expected), rel=1e-5)
    assert accuracy == np.mean(logits.argmax(1) == labels)


def test_the_package_level_names_are_the_functions_even_after_their_modules_load():
    # a submodule named like a function would replace it on the package once imported
    import digitnet
    import digitnet.metrics  # noqa: F401
    import digitnet.runs  # noqa: F401

    for name in digitnet.__all__:
        if name != "__version__":
            assert not isinstance(getattr(digitnet, name), type(digitnet)), name
