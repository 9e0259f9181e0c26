"""affect_node with one extra registered model that takes 0.3 s per forward, for the bounded
queue test. The model is the tiny random classifier plus a fixed delay standing in for a large
backbone on a small CPU."""
import sys
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from duse_ros.models import register_arch, register_config  # noqa: E402
from duse_ros.models.tiny import TinyAffectClassifier  # noqa: E402
from duse_ros.nodes.affect_node import main  # noqa: E402


class SlowClassifier(TinyAffectClassifier):
    def forward(self, video=None, audio=None):
        time.sleep(0.3)
        return super().forward(video, audio)


register_arch("test-slow")(SlowClassifier)
register_config("test-slow-video", {"arch": "test-slow", "class_set": "dfew"})

if __name__ == "__main__":
    main()
