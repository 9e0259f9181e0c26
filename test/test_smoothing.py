"""SoftVoter: sliding-window soft voting over the last K probability vectors."""

import numpy as np
import pytest

from duse_ros.affect.smoothing import SoftVoter


def test_exact_means_and_sliding():
    v = SoftVoter(3)
    p = [
        np.array([1.0, 0.0, 0.0]),
        np.array([0.0, 1.0, 0.0]),
        np.array([0.0, 0.0, 1.0]),
        np.array([0.5, 0.5, 0.0]),
        np.array([0.2, 0.2, 0.6]),
    ]
    np.testing.assert_array_equal(v.add(p[0]), [1.0, 0.0, 0.0])
    assert v.count == 1
    np.testing.assert_array_equal(v.add(p[1]), [0.5, 0.5, 0.0])
    assert v.count == 2
    np.testing.assert_allclose(v.add(p[2]), [1 / 3, 1 / 3, 1 / 3], rtol=0, atol=1e-15)
    assert v.count == 3
    # The window slides: p[0] falls out.
    np.testing.assert_allclose(v.add(p[3]), (p[1] + p[2] + p[3]) / 3, rtol=0, atol=1e-15)
    np.testing.assert_allclose(v.add(p[4]), (p[2] + p[3] + p[4]) / 3, rtol=0, atol=1e-15)
    assert v.count == 3


def test_float32_input_and_sums_to_one():
    rng = np.random.default_rng(0)
    v = SoftVoter(5)
    for _ in range(50):
        x = rng.random(7).astype(np.float32)
        m = v.add(x / x.sum())
    assert m.shape == (7,) and abs(m.sum() - 1) < 1e-6


def test_k1_is_identity_and_k0_is_off():
    v = SoftVoter(1)
    np.testing.assert_array_equal(v.add(np.array([0.3, 0.7])), [0.3, 0.7])
    np.testing.assert_array_equal(v.add(np.array([0.9, 0.1])), [0.9, 0.1])
    assert v.count == 1
    off = SoftVoter(0)
    assert not off.enabled
    assert off.add(np.array([0.3, 0.7])) is None and off.count == 0
    with pytest.raises(ValueError):
        SoftVoter(-1)


def test_reset_and_class_set_change():
    v = SoftVoter(4)
    v.add(np.array([1.0, 0.0]))
    v.add(np.array([0.0, 1.0]))
    v.reset()
    assert v.count == 0
    np.testing.assert_array_equal(v.add(np.array([0.2, 0.8])), [0.2, 0.8])
    # A vector of another length (the class set changed): the vote starts over by itself.
    np.testing.assert_array_equal(v.add(np.array([0.1, 0.2, 0.7])), [0.1, 0.2, 0.7])
    assert v.count == 1 and v.shape_resets == 1


def test_rejects_bad_vectors():
    v = SoftVoter(2)
    with pytest.raises(ValueError):
        v.add(np.array([np.nan, 1.0]))
    with pytest.raises(ValueError):
        v.add(np.array([]))
    assert v.count == 0
