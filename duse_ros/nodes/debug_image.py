"""affect_node's `~/debug_image` (sensor_msgs/Image, rgb8): each keyframe of its own face detection
drawn by duse_ros/affect/live_view.py, stamped with the keyframe's source stamp. Built only while
someone subscribes (rqt_image_view, RViz): nobody watching costs one subscription count a keyframe."""

from __future__ import annotations

from sensor_msgs.msg import Image

from duse_ros.affect.hri import Keyframe
from duse_ros.affect.live_view import LiveView
from duse_ros.nodes.hri_io import rgb_image

DEBUG_IMAGE_TOPIC = "~/debug_image"


class DebugImageOutput:
    def __init__(self, node, depth: int = 2):
        self._node = node
        self._pub = node.create_publisher(Image, DEBUG_IMAGE_TOPIC, depth)
        self.view = LiveView()
        self.published = 0

    def on_reading(self, reading) -> None:
        self.view.on_reading(reading)

    def on_keyframe(self, keyframe: Keyframe, frame_id: str) -> None:
        if self._pub is None or self._pub.get_subscription_count() == 0:
            return
        self._pub.publish(rgb_image(self.view.draw(keyframe), keyframe.stamp_ns, frame_id))
        self.published += 1

    def close(self) -> None:
        if self._pub is not None:
            self._node.destroy_publisher(self._pub)
            self._pub = None
