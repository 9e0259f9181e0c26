"""Import open_clip on a CPU-only torch whose matching torchvision wheel is a CUDA build.

`import torchvision` registers fake kernels for `torchvision::nms`/`qnms`, which fails when the
compiled ops library did not load (CPU torch + CUDA torchvision). Declaring the two op schemas
first lets torchvision's transforms and models import; its compiled ops (nms, roi_align,
decode_jpeg) stay unavailable, and duse_ros does not use them.
"""

from __future__ import annotations

import importlib
import sys

_fragment = None  # keep the library object alive: dropping it unregisters the schemas


def import_open_clip():
    """Return the `open_clip` module, applying the schema shim only if the plain import fails."""
    global _fragment
    try:
        return importlib.import_module("open_clip")
    except (RuntimeError, ImportError) as first_error:
        if "torchvision" not in str(first_error) and "nms" not in str(first_error):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith(("torchvision.", "open_clip"))]:
            del sys.modules[name]
        import torch

        _fragment = torch.library.Library("torchvision", "FRAGMENT")
        _fragment.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _fragment.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        return importlib.import_module("open_clip")
