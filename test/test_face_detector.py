"""The trained MTCNN face detector (our modules, the facenet-pytorch weights converted at set-up):
real faces on the bundled portrait, landmarks, rotations Haar misses, aligned crops, our NMS, and
weight files that are missing, altered or do not fit. The weights come from `make setup`
(duse-fetch-weights); a missing file fails here, it is not skipped."""

from __future__ import annotations

import io
import shutil

import cv2
import numpy as np
import pytest
import torch

from duse_ros.affect.boxes import Detection, crop, square_crop_box
from duse_ros.affect.faces import HaarFaceDetector, MtcnnFaceDetector
from duse_ros.affect.pipeline import PipelineConfig, make_detector
from duse_ros.io.samples import load_sample_face
from duse_ros.models.mtcnn import nms
from duse_ros.weights import WeightsError, convert_mtcnn, default_weights_dir, detector_path, load_detector

# The portrait's face: about x 174-272, y 64-162 (test_faces.py); eyes near y 100.
FACE_CENTRE = (223, 113)


@pytest.fixture(scope="module")
def mtcnn():
    path = detector_path()
    assert path.is_file(), f"{path} is missing: `make setup` (duse-fetch-weights) installs it"
    return MtcnnFaceDetector(min_face_size=32)


@pytest.fixture(scope="module")
def portrait():
    return load_sample_face()


def rotated(img, degrees):
    m = cv2.getRotationMatrix2D((img.shape[1] / 2, img.shape[0] / 2), degrees, 1.0)
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REPLICATE)


def test_finds_the_portrait_face_with_a_score_and_landmarks(mtcnn, portrait):
    (d,) = mtcnn.detect(portrait)
    x, y, w, h = d.box
    assert abs(x + w / 2 - FACE_CENTRE[0]) < 15 and abs(y + h / 2 - FACE_CENTRE[1]) < 20 and 70 < w < 130
    assert d.score > 0.99
    right_eye, left_eye, nose, mouth_right, mouth_left = d.landmarks
    assert right_eye[0] < nose[0] < left_eye[0]  # the person's right eye is on the image's left
    assert right_eye[1] < nose[1] < mouth_right[1] and left_eye[1] < nose[1] < mouth_left[1]
    assert all(x <= px <= x + w and y <= py <= y + h for px, py in d.landmarks)
    assert abs(d.roll_deg) < 8


def test_rotated_faces_haar_misses_are_found_and_their_roll_measured(mtcnn, portrait):
    haar = HaarFaceDetector()
    for degrees in (35, -35):
        img = rotated(portrait, degrees)
        assert haar.detect(img) == []  # the frontal cascade's limit (issue 25)
        (d,) = mtcnn.detect(img)
        assert abs(d.roll_deg - degrees) < 8, d.roll_deg


def test_no_face_on_noise_flat_and_upside_down(mtcnn, portrait):
    rng = np.random.default_rng(0)
    for img in (rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), np.zeros((240, 320, 3), np.uint8)):
        assert mtcnn.detect(img) == []
    assert mtcnn.detect(np.zeros((8, 8, 3), np.uint8)) == []  # smaller than a P-net cell
    # Grey and RGBA input work; a float image is refused.
    assert len(mtcnn.detect(cv2.cvtColor(portrait, cv2.COLOR_RGB2GRAY))) == 1
    assert len(mtcnn.detect(cv2.cvtColor(portrait, cv2.COLOR_RGB2RGBA))) == 1
    with pytest.raises(ValueError, match="uint8"):
        mtcnn.detect(portrait.astype(np.float32))


def test_threshold_and_min_face_size(mtcnn, portrait):
    small = cv2.resize(portrait, (128, 128), interpolation=cv2.INTER_AREA)  # the face ~25 px
    assert len(MtcnnFaceDetector(mtcnn.model, min_face_size=16).detect(small)) == 1
    # min_face_size sets the pyramid's first scale (a face that size fills P-net's 12 px cell).
    scales = mtcnn.model.scales(480, 640, 48)
    assert scales[0] == pytest.approx(12 / 48) and 480 * scales[-1] >= 12 > 480 * scales[-1] * 0.709
    assert MtcnnFaceDetector(mtcnn.model, threshold=1.0).detect(portrait) == []


def test_aligned_crop_turns_the_face_upright(mtcnn, portrait):
    img = rotated(portrait, 30)
    (d,) = mtcnn.detect(img)
    square = square_crop_box(d.box, img.shape, 0.25)
    upright = crop(img, (*square, d.roll_deg), 96)
    plain = crop(img, square, 96)
    assert upright.shape == plain.shape == (96, 96, 3)
    (u,) = MtcnnFaceDetector(mtcnn.model, min_face_size=20).detect(upright)
    (p,) = MtcnnFaceDetector(mtcnn.model, min_face_size=20).detect(plain)
    assert abs(u.roll_deg) < 6 and abs(p.roll_deg) > 20


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 9, 9], [1, 1, 10, 10], [50, 50, 59, 59], [0, 0, 4, 4]], np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.6], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2, 3]  # box 0 overlaps box 1 by IoU 0.68
    # Over the smaller area, the box inside box 1 goes too.
    assert nms(boxes, scores, 0.5, over_min=True).tolist() == [1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_missing_or_altered_weights_fail_with_the_fixing_command(tmp_path):
    with pytest.raises(WeightsError, match=r"not installed.*duse-fetch-weights --force"):
        load_detector(tmp_path)
    with pytest.raises(WeightsError, match=r"duse-fetch-weights --force"):
        make_detector_from(tmp_path)
    src = detector_path()
    shutil.copy(src, tmp_path / src.name)
    shutil.copy(src.with_suffix(".safetensors"), tmp_path / "mtcnn.safetensors")
    assert not load_detector(tmp_path).untrained
    data = bytearray((tmp_path / "mtcnn.safetensors").read_bytes())
    data[-5] ^= 0x01  # one bit of one weight
    (tmp_path / "mtcnn.safetensors").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"sha256 .* recorded at conversion.*duse-fetch-weights --force"):
        load_detector(tmp_path)
    (tmp_path / "mtcnn.safetensors").unlink()
    with pytest.raises(WeightsError, match=r"cannot read.*duse-fetch-weights --force"):
        load_detector(tmp_path)


def make_detector_from(weights_dir):
    import os

    old = os.environ.get("DUSE_ROS_WEIGHTS")
    os.environ["DUSE_ROS_WEIGHTS"] = str(weights_dir)
    try:
        assert default_weights_dir() == weights_dir
        return make_detector(PipelineConfig())
    finally:
        if old is None:
            del os.environ["DUSE_ROS_WEIGHTS"]
        else:
            os.environ["DUSE_ROS_WEIGHTS"] = old


def test_conversion_refuses_state_dicts_that_do_not_fit():
    model = load_detector()

    def saved(state):
        buf = io.BytesIO()
        torch.save(state, buf)
        return buf.getvalue()

    good = {net: saved(getattr(model, net).state_dict()) for net in ("pnet", "rnet", "onet")}
    converted = convert_mtcnn(good, "test")
    assert all(torch.equal(a, b) for a, b in zip(converted.state_dict().values(), model.state_dict().values()))
    wrong_shape = dict(model.onet.state_dict())
    wrong_shape["dense6_3.weight"] = torch.zeros(8, 256)
    with pytest.raises(WeightsError, match=r"onet.dense6_3.weight has shape \(8, 256\)"):
        convert_mtcnn({**good, "onet": saved(wrong_shape)}, "test")
    missing = {k: v for k, v in model.pnet.state_dict().items() if k != "conv4_2.bias"}
    with pytest.raises(WeightsError, match="pnet.pt holds"):
        convert_mtcnn({**good, "pnet": saved(missing)}, "test")
    with pytest.raises(WeightsError, match="not a plain state dict"):
        convert_mtcnn({**good, "rnet": saved({"x": Detection((0, 0, 1, 1))})}, "test")


def test_fetch_weights_repairs_an_altered_detector_from_the_kept_originals(tmp_path, capsys):
    """duse-fetch-weights re-verifies an installed detector and converts it again, offline, from the
    verified originals it keeps in sources/; a kept original that was altered is refused."""
    from duse_ros.weights import _net_sources, install_detector, source_copy_path

    for src in _net_sources().values():
        original = source_copy_path(src, default_weights_dir())
        (tmp_path / "sources").mkdir(exist_ok=True)
        shutil.copy(original, source_copy_path(src, tmp_path))
    path, done = install_detector(None, tmp_path)
    assert done.startswith("converted from") and "sources" in done
    assert install_detector(None, tmp_path)[1] == "verified"
    data = bytearray((tmp_path / "mtcnn.safetensors").read_bytes())
    data[-5] ^= 0x01
    (tmp_path / "mtcnn.safetensors").write_bytes(bytes(data))
    path, done = install_detector(None, tmp_path)
    assert done.startswith("repaired (") and "recorded at conversion" in done
    reference = load_detector()
    repaired = load_detector(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(repaired.state_dict().values(), reference.state_dict().values()))
    onet = source_copy_path(_net_sources()["onet"], tmp_path)
    onet.write_bytes(onet.read_bytes()[:-1] + b"\0")
    with pytest.raises(WeightsError, match="not the pinned"):
        install_detector(onet, tmp_path)
