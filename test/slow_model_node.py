"""affect_node with extra registered test models: `test-slow-video` takes 0.3 s per forward (a
fixed delay standing in for a large backbone on a small CPU, for the bounded queue test);
`test-busy-video` does real torch work for a while (the shutdown tests); `test-big-video` carries
64 MB of extra weights (the lifecycle leak test); `test-slow-build-video` takes a second to build
and `test-failing-build-video` then fails as a damaged weights file does (signals during configure)."""

import os
import sys
import time

import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from duse_ros.models import register_arch, register_config  # noqa: E402
from duse_ros.models.tiny import TinyAffectClassifier  # noqa: E402
from duse_ros.nodes.affect_node import main  # noqa: E402
from duse_ros.weights import WeightsError  # noqa: E402


class SlowClassifier(TinyAffectClassifier):
    def forward(self, video=None, audio=None):
        time.sleep(0.3)
        return super().forward(video, audio)


register_arch("test-slow")(SlowClassifier)
register_config("test-slow-video", {"arch": "test-slow", "class_set": "dfew"})


class BusyClassifier(TinyAffectClassifier):
    """Spends about `busy_rounds` x 4 small matmuls of real torch work (its intra-op threads busy,
    as a large backbone's are) in submodule calls before the tiny forward. When the environment
    names a file descriptor in DUSE_TEST_FORWARD_FD, each forward writes b"f" to it first, so a
    test can act while a forward is running."""

    def __init__(self, config: dict):
        super().__init__(config)
        self.busy = torch.nn.ModuleList(torch.nn.Linear(256, 256) for _ in range(4))
        self.rounds = int(config.get("busy_rounds", 100))

    def forward(self, video=None, audio=None):
        fd = os.environ.get("DUSE_TEST_FORWARD_FD")
        if fd:
            os.write(int(fd), b"f")
        x = torch.ones(64, 256)
        for _ in range(self.rounds):
            for layer in self.busy:
                x = torch.tanh(layer(x))
        return super().forward(video, audio)


class BigClassifier(TinyAffectClassifier):
    """The tiny classifier carrying `extra_mb` MB of extra weights: big enough that a model kept
    alive after cleanup shows in RSS, cheap enough to build 20 times in a test."""

    def __init__(self, config: dict):
        super().__init__(config)
        side = int((config.get("extra_mb", 64) * 2**20 / 4) ** 0.5)
        self.ballast = torch.nn.Parameter(torch.ones(side, side), requires_grad=False)


class SlowBuildClassifier(TinyAffectClassifier):
    """Writes b"c" to DUSE_TEST_FORWARD_FD (when set) as its build starts, then takes `build_s`
    as a large checkpoint being read would; with `fail` it then fails as a damaged weights file."""

    def __init__(self, config: dict):
        fd = os.environ.get("DUSE_TEST_FORWARD_FD")
        if fd:
            os.write(int(fd), b"c")
        time.sleep(float(config.get("build_s", 1.0)))
        if config.get("fail"):
            raise WeightsError("test-failing-build-video: the weights file is damaged (a stand-in)")
        super().__init__(config)


register_arch("test-busy")(BusyClassifier)
register_config("test-busy-video", {"arch": "test-busy", "class_set": "dfew"})
register_arch("test-slow-build")(SlowBuildClassifier)
register_config("test-slow-build-video", {"arch": "test-slow-build", "class_set": "dfew"})
register_config("test-failing-build-video", {"arch": "test-slow-build", "class_set": "dfew", "fail": True})
register_arch("test-big")(BigClassifier)
register_config("test-big-video", {"arch": "test-big", "class_set": "dfew", "extra_mb": 64})


if __name__ == "__main__":
    main()
