"""MTCNN face detection (Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded
Convolutional Networks", 2016): three small CNNs in a cascade, each face with a score and five
landmarks. Pure PyTorch + numpy; the trained weights are the ones the `facenet-pytorch` wheel
ships (MIT), converted to safetensors at set-up by duse_ros/weights.py.

    image ─> pyramid (scales 12/min_face * 0.709^k) ─> P-net on each scale (12x12 cells, stride 2)
          ─> NMS per scale (IoU 0.5), across scales (0.7) ─> box regression, squared
          ─> R-net on 24x24 crops ─> score >= t1, NMS 0.7, regression, squared
          ─> O-net on 48x48 crops ─> score >= t2, landmarks, regression, NMS 0.7 (over the smaller box)

Inputs are RGB, scaled as (pixel - 127.5) / 128. Module and parameter names follow the weights'
state dicts (conv1, prelu1, ..., conv4_1 = face score, conv4_2 = box regression, dense6_3 =
landmarks); the dense layers read their input flattened in (W, H, C) order, as those weights
were trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

LANDMARKS = 5  # right eye, left eye, nose, right and left mouth corner (the person's right/left)


class PNet(nn.Module):
    """Proposal net, fully convolutional: (N, 3, H, W) -> regression (N, 4, h, w), face prob (N, h, w)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)[:, 1]


def _flatten_whc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class RNet(nn.Module):
    """Refinement net: (N, 3, 24, 24) -> regression (N, 4), face prob (N,)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)  # -> (N, 64, 3, 3)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.dense4(_flatten_whc(self.prelu3(self.conv3(x)))))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)[:, 1]


class ONet(nn.Module):
    """Output net: (N, 3, 48, 48) -> regression (N, 4), landmarks (N, 10: 5 x then 5 y, as
    fractions of the box), face prob (N,)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)  # -> (N, 128, 3, 3)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 2 * LANDMARKS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_flatten_whc(self.prelu4(self.conv4(x)))))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)[:, 1]


# ------------------------------------------------------------------------------------- cascade
def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, over_min: bool = False) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, best score first. boxes: (N, 4) x1 y1 x2 y2
    (inclusive pixel corners, as MTCNN counts them); a box goes when its overlap with a kept one
    exceeds `threshold` (intersection over union, or over the smaller area with over_min)."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = iw * ih
        overlap = inter / (np.minimum(area[i], area[rest]) if over_min else area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.asarray(keep, np.int64)


def _regress(boxes: np.ndarray, reg: np.ndarray, plus_one: bool) -> np.ndarray:
    w = boxes[:, 2] - boxes[:, 0] + plus_one
    h = boxes[:, 3] - boxes[:, 1] + plus_one
    out = boxes.copy()
    out[:, 0] += reg[:, 0] * w
    out[:, 1] += reg[:, 1] * h
    out[:, 2] += reg[:, 2] * w
    out[:, 3] += reg[:, 3] * h
    return out


def _squared(boxes: np.ndarray) -> np.ndarray:
    """Each box made square on its longer side, about the same centre."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out = boxes.copy()
    out[:, 0] = boxes[:, 0] + w / 2 - side / 2
    out[:, 1] = boxes[:, 1] + h / 2 - side / 2
    out[:, 2:4] = out[:, 0:2] + side[:, None]
    return out


def _patches(image: np.ndarray, boxes: np.ndarray, size: int) -> torch.Tensor:
    """(N, 3, size, size) normalised crops of `image` (H, W, 3 uint8) at the integer boxes; the
    part of a box outside the image is black (0), as in MTCNN's training crops."""
    import cv2

    H, W = image.shape[:2]
    out = np.empty((len(boxes), size, size, 3), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(np.round(boxes).astype(np.int64)):
        bw, bh = max(1, x2 - x1 + 1), max(1, y2 - y1 + 1)
        patch = np.zeros((bh, bw, 3), np.uint8)
        sx0, sy0, sx1, sy1 = max(x1, 0), max(y1, 0), min(x2 + 1, W), min(y2 + 1, H)
        if sx1 > sx0 and sy1 > sy0:
            patch[sy0 - y1 : sy1 - y1, sx0 - x1 : sx1 - x1] = image[sy0:sy1, sx0:sx1]
        interp = cv2.INTER_AREA if bw > size else cv2.INTER_LINEAR
        out[k] = cv2.resize(patch, (size, size), interpolation=interp)
    return (torch.from_numpy(out).permute(0, 3, 1, 2).float() - 127.5) / 128.0


@dataclass
class Faces:
    """Detections in source pixels: boxes (N, 4) x1 y1 x2 y2, scores (N,), landmarks (N, 5, 2) x y."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def empty(cls) -> Faces:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, LANDMARKS, 2), np.float32))


class MTCNN(nn.Module):
    """The three nets and the cascade (module docstring). `thresholds`: the P-, R- and O-net face
    probabilities a candidate must reach; the last one is the detector's score threshold."""

    def __init__(self, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), factor: float = 0.709):
        super().__init__()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self.untrained = True
        self.eval()

    def scales(self, height: int, width: int, min_face: float) -> list[float]:
        """The pyramid: a face of min_face pixels maps to P-net's 12-pixel cell at the first scale."""
        scale, shorter, out = 12.0 / max(float(min_face), 12.0), min(height, width), []
        while shorter * scale >= 12:
            out.append(scale)
            scale *= self.factor
        return out

    @torch.inference_mode()
    def detect(self, image: np.ndarray, min_face: float = 20.0, threshold: float | None = None) -> Faces:
        """Faces in an RGB uint8 image (H, W, 3). `min_face`: the smallest face side searched, in
        pixels; `threshold`: the final score threshold (default: the O-net threshold)."""
        import cv2

        image = np.ascontiguousarray(image)
        H, W = image.shape[:2]
        t_p, t_r, t_o = self.thresholds
        if threshold is not None:
            t_o = float(threshold)
        found = []
        level = image
        for scale in self.scales(H, W, min_face):
            h, w = int(math.ceil(H * scale)), int(math.ceil(W * scale))
            level = cv2.resize(level, (w, h), interpolation=cv2.INTER_AREA)  # from the level above: cheaper
            x = (torch.from_numpy(level).permute(2, 0, 1)[None].float() - 127.5) / 128.0
            reg, prob = self.pnet(x)
            prob, reg = prob[0].numpy(), reg[0].numpy()
            ys, xs = np.nonzero(prob >= t_p)
            if ys.size == 0:
                continue
            # Each output cell sees a 12x12 window at stride 2 of this level.
            cells = np.stack([xs, ys], 1).astype(np.float32)
            boxes = np.concatenate([np.floor((2 * cells + 1) / scale), np.floor((2 * cells + 12) / scale)], 1)
            candidates = np.concatenate([boxes, prob[ys, xs, None], reg[:, ys, xs].T], 1)
            found.append(candidates[nms(candidates[:, :4], candidates[:, 4], 0.5)])
        if not found:
            return Faces.empty()
        c = np.concatenate(found)
        c = c[nms(c[:, :4], c[:, 4], 0.7)]
        boxes = _squared(_regress(c[:, :4], c[:, 5:9], plus_one=False))

        reg, prob = self.rnet(_patches(image, boxes, 24))
        keep = prob.numpy() > t_r
        boxes, scores, reg = np.round(boxes[keep]), prob.numpy()[keep], reg.numpy()[keep]
        if not len(boxes):
            return Faces.empty()
        pick = nms(boxes, scores, 0.7)
        boxes = _squared(_regress(boxes[pick], reg[pick], plus_one=True))

        boxes = np.round(boxes)
        reg, marks, prob = self.onet(_patches(image, boxes, 48))
        keep = prob.numpy() >= t_o
        boxes, scores, reg, marks = boxes[keep], prob.numpy()[keep], reg.numpy()[keep], marks.numpy()[keep]
        if not len(boxes):
            return Faces.empty()
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points = np.stack(
            [boxes[:, 0:1] + w * marks[:, :LANDMARKS] - 1, boxes[:, 1:2] + h * marks[:, LANDMARKS:] - 1], 2
        )
        boxes = _regress(boxes, reg, plus_one=True)
        pick = nms(boxes, scores, 0.7, over_min=True)
        return Faces(boxes[pick].astype(np.float32), scores[pick].astype(np.float32), points[pick].astype(np.float32))
