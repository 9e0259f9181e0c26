"""The synthetic camera of the soak and leak benchmarks: a random bgr8 picture that shifts by one
column per frame (so no two frames are alike), stamped with the wall clock as it is sent, like a
live driver's. Its arguments (--fps, --width, --height, --model) are shared too."""

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


class LiveCamera:
    def __init__(self, width: int, height: int, frame_id: str = "camera"):
        self.width, self.height, self.frame_id = width, height, frame_id
        self._base = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)

    def frame(self, index: int) -> Image:
        """Frame `index`, stamped now."""
        msg = Image(
            height=self.height,
            width=self.width,
            encoding="bgr8",
            step=self.width * 3,
            data=np.roll(self._base, index % self.width, axis=1).tobytes(),
        )
        wall = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = wall // NS, wall % NS
        msg.header.frame_id = self.frame_id
        return msg
