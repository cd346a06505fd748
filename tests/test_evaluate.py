import math

import numpy as np

from digitnet.evaluate import compute_metrics


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
