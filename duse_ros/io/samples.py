"""The sample image bundled with the package (duse_ros/data/), for the demo, tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SAMPLE_FACE = Path(__file__).resolve().parents[1] / "data" / "astronaut.jpg"


def load_sample_face() -> np.ndarray:
    """The bundled public-domain portrait (duse_ros/data/astronaut.jpg) as RGB uint8, 512x512."""
    bgr = cv2.imread(str(SAMPLE_FACE), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"bundled sample image {SAMPLE_FACE} is missing or unreadable")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
