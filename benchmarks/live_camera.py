"""The synthetic camera of the soak and leak benchmarks: a random bgr8 picture that shifts by one
column per frame (so no two frames are alike), stamped with the wall clock as it is sent, like a
live driver's; with `faces`, that many copies of the bundled portrait (faces of about 60 px) sit
on it, still, in a row. Its arguments (--fps, --width, --height, --model, --faces) are shared too."""

from __future__ import annotations

import argparse
import time

import numpy as np
from sensor_msgs.msg import Image

from duse_ros.timebase import NS


def add_stream_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--model", default="", help="model parameter of the node (default: the node's default)")
    ap.add_argument("--faces", type=int, default=0, help="portrait faces in the picture (0: none, noise only)")


class LiveCamera:
    def __init__(self, width: int, height: int, frame_id: str = "camera", faces: int = 0):
        self.width, self.height, self.frame_id = width, height, frame_id
        self._base = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
        self._faces = None
        if faces:
            import cv2

            from duse_ros.io.samples import load_sample_face

            side = min(width // faces, height // 2)
            tile = cv2.cvtColor(cv2.resize(load_sample_face()[20:260, 103:343], (side, side)), cv2.COLOR_RGB2BGR)
            self._faces = np.zeros((height, width, 3), np.uint8)
            self._mask = np.zeros((height, width), bool)
            top = (height - tile.shape[0]) // 2
            for k in range(faces):
                self._faces[top : top + tile.shape[0], k * side : k * side + side] = tile
                self._mask[top : top + tile.shape[0], k * side : k * side + side] = True

    def frame(self, index: int) -> Image:
        """Frame `index`, stamped now."""
        msg = Image(
            height=self.height,
            width=self.width,
            encoding="bgr8",
            step=self.width * 3,
            data=self._pixels(index).tobytes(),
        )
        wall = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = wall // NS, wall % NS
        msg.header.frame_id = self.frame_id
        return msg

    def _pixels(self, index: int) -> np.ndarray:
        pixels = np.roll(self._base, index % self.width, axis=1)
        if self._faces is not None:
            pixels[self._mask] = self._faces[self._mask]
        return pixels
