"""UAR, WAR and per-class recall against hand-computed cases."""

import numpy as np
import pytest

from duse_ros.metrics import plot_confusion, recall_table, score

NAMES = ["a", "b", "c"]


def test_scores_match_a_hand_computation():
    # a: 3 clips, 2 right; b: 1 clip, right; c: 2 clips, 0 right.
    labels = [0, 0, 0, 1, 2, 2]
    preds = [0, 0, 1, 1, 0, 1]
    s = score(labels, preds, NAMES)
    assert s.per_class_recall == pytest.approx({"a": 2 / 3, "b": 1.0, "c": 0.0})
    assert s.uar == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)
    assert s.war == pytest.approx(3 / 6)
    assert s.support == {"a": 3, "b": 1, "c": 2}
    assert s.confusion.tolist() == [[2, 1, 0], [0, 1, 0], [1, 1, 0]]


def test_absent_class_is_left_out_of_uar_and_marked_none():
    s = score([0, 0, 1], [0, 1, 1], NAMES)
    assert s.per_class_recall["c"] is None
    assert s.uar == pytest.approx((0.5 + 1.0) / 2)
    assert recall_table(s).splitlines()[2].split(" | ")[2] == "-"


def test_out_of_range_index_is_an_error():
    with pytest.raises(ValueError, match="out of range"):
        score([0, 3], [0, 0], NAMES)
    with pytest.raises(ValueError, match="shape"):
        score([0, 1], [0], NAMES)


def test_recall_table_and_png(tmp_path):
    s = score([0, 1, 2, 2], [0, 1, 2, 0], NAMES)
    table = recall_table(s)
    assert table.splitlines()[0] == "| a | b | c | UAR | WAR |"
    assert table.splitlines()[2] == "| 100.00 | 100.00 | 50.00 | 83.33 | 75.00 |"
    png = plot_confusion(s, tmp_path / "cm.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.asarray(s.confusion).sum() == 4
