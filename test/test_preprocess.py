"""Frames -> (T, 3, S, S) normalised tensors and audio -> (S,) tensors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from duse_ros.affect.preprocess import FramePreprocessor, audio_tensor, frames_to_tensor, resize_center_crop
from duse_ros.io.conversions import ConversionError
from duse_ros.models.base import CLIP_MEAN, CLIP_STD, InputSpec

SPEC = InputSpec()


def test_shape_dtype_and_layout_for_mixed_sizes():
    rng = np.random.default_rng(0)
    sizes = [(480, 640), (120, 100), (224, 224), (50, 300), (300, 50), (1, 1)]
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    out = frames_to_tensor(frames, SPEC)
    assert out.shape == (len(sizes), 3, 224, 224)
    assert out.dtype == torch.float32 and out.is_contiguous()


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (200, 100, 50)])
def test_normalisation_per_channel(colour):
    frame = np.empty((37, 53, 3), np.uint8)
    frame[:] = colour
    out = FramePreprocessor(SPEC)([frame, frame])
    expected = (np.array(colour) / 255.0 - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    for c in range(3):
        np.testing.assert_allclose(out[:, c].numpy(), expected[c], rtol=0, atol=1e-5)


def test_custom_spec_size_and_statistics():
    spec = InputSpec(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    frame = np.full((64, 80, 3), 255, np.uint8)
    out = frames_to_tensor([frame], spec)
    assert out.shape == (1, 3, 32, 32)
    np.testing.assert_allclose(out.numpy(), 1.0, atol=1e-6)


def test_channel_order_is_kept():
    frame = np.zeros((224, 224, 3), np.uint8)
    frame[..., 0] = 255  # pure red in RGB
    out = frames_to_tensor([frame], SPEC)[0]
    assert out[0].mean() > 1 and out[1].mean() < 0 and out[2].mean() < 0


def test_crop_geometry_matches_torchvision():
    # No resize needed for a 224-high frame: the crop is columns round((300 - 224) / 2) = 38 on.
    frame = np.random.default_rng(1).integers(0, 256, (224, 300, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_center_crop(frame, 224), frame[:, 38:262])
    portrait = np.ascontiguousarray(frame.transpose(1, 0, 2))
    np.testing.assert_array_equal(resize_center_crop(portrait, 224), portrait[38:262])


def test_centre_is_kept_when_shrinking_and_enlarging():
    for h, w in [(480, 640), (90, 70)]:
        frame = np.zeros((h, w, 3), np.uint8)
        cy, cx = h // 2, w // 2
        frame[cy - h // 10 : cy + h // 10, cx - h // 10 : cx + h // 10] = 255  # centred square
        out = resize_center_crop(frame, 224)[..., 0].astype(float)
        ys, xs = np.nonzero(out > 127)
        assert abs(ys.mean() - 111.5) < 2 and abs(xs.mean() - 111.5) < 2


def test_close_to_open_clip_transform():
    """Same pixels as CLIP's own preprocessing (PIL bicubic) within a fraction of a level."""
    from duse_ros.models.torchvision_shim import import_open_clip

    open_clip = import_open_clip()
    from PIL import Image

    rng = np.random.default_rng(1)
    noise = sum(
        cv2.resize(
            rng.standard_normal((480 // s, 640 // s, 3)).astype(np.float32), (640, 480), interpolation=cv2.INTER_CUBIC
        )
        * s
        for s in (1, 4, 16)
    )
    frame = cv2.normalize(noise, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    reference = open_clip.image_transform(224, is_train=False)
    for image in (frame, np.ascontiguousarray(frame[100:220, 300:400])):  # shrunk and enlarged
        expected = reference(Image.fromarray(image))
        got = frames_to_tensor([image], SPEC)[0]
        levels = (got - expected).abs() * torch.tensor(CLIP_STD).view(3, 1, 1) * 255
        assert levels.mean() < 1.5, levels.mean()


@pytest.mark.parametrize(
    "frames,words",
    [
        ([], ["no frames"]),
        ([np.zeros((10, 10, 3), np.float32)], ["uint8", "float32"]),
        ([np.zeros((10, 10), np.uint8)], ["(H, W, 3)", "(10, 10)"]),
        ([np.zeros((10, 10, 4), np.uint8)], ["(H, W, 3)"]),
        ([np.zeros((0, 10, 3), np.uint8)], ["zero size"]),
        (["not an image"], ["(H, W, 3)", "str"]),
    ],
)
def test_bad_frames(frames, words):
    with pytest.raises(ConversionError) as caught:
        frames_to_tensor(frames, SPEC)
    for word in words:
        assert word in str(caught.value), str(caught.value)


def test_audio_tensor():
    wave = np.linspace(-1, 1, 100, dtype=np.float32)
    out = audio_tensor(wave)
    assert out.shape == (100,) and out.dtype == torch.float32
    np.testing.assert_array_equal(out.numpy(), wave)
    np.testing.assert_array_equal(audio_tensor(wave, length=10).numpy(), wave[-10:])
    padded = audio_tensor(wave, length=150).numpy()
    assert padded.shape == (150,) and (padded[:50] == 0).all()
    np.testing.assert_array_equal(padded[50:], wave)
    assert audio_tensor(np.zeros(3, np.float64)).dtype == torch.float32


@pytest.mark.parametrize(
    "samples,length,words",
    [
        (np.zeros((2, 10), np.float32), None, ["1-D"]),
        (np.array([0.0, np.nan], np.float32), None, ["NaN"]),
        (np.zeros(10, np.float32), 0, ["length"]),
    ],
)
def test_audio_tensor_rejects(samples, length, words):
    with pytest.raises(ConversionError) as caught:
        audio_tensor(samples, length=length)
    for word in words:
        assert word in str(caught.value)
