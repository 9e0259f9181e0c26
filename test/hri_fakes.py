"""In-process stand-ins for hri_msgs 2.x (hri_msgs is not installable here): dataclasses with exactly
the upstream fields, passed where the code takes the imported `hri_msgs.msg` module, and a node that
records the publishers and subscriptions the ROS4HRI adapters make. The DDS tests use a real
build of the messages instead (test/hri_standin.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

from std_msgs.msg import Header


@dataclass
class Expression:  # std_msgs/Header header, string expression, float32 valence, arousal, confidence
    header: Header = field(default_factory=Header)
    expression: str = ""
    valence: float = 0.0
    arousal: float = 0.0
    confidence: float = 0.0


@dataclass
class IdsList:  # std_msgs/Header header, string[] ids
    header: Header = field(default_factory=Header)
    ids: list = field(default_factory=list)


@dataclass
class NormalizedRegionOfInterest2D:  # std_msgs/Header header, float32 xmin, ymin, xmax, ymax, c
    header: Header = field(default_factory=Header)
    xmin: float = 0.0
    ymin: float = 0.0
    xmax: float = 0.0
    ymax: float = 0.0
    c: float = 0.0


@dataclass
class NormalizedPointOfInterest2D:  # float32 x, y, c
    x: float = 0.0
    y: float = 0.0
    c: float = 0.0


@dataclass
class FacialLandmarks:  # std_msgs/Header header, NormalizedPointOfInterest2D[70] landmarks, uint32 height, width
    header: Header = field(default_factory=Header)
    landmarks: list = field(default_factory=lambda: [NormalizedPointOfInterest2D() for _ in range(70)])
    height: int = 0
    width: int = 0


HRI = SimpleNamespace(
    Expression=Expression,
    IdsList=IdsList,
    NormalizedRegionOfInterest2D=NormalizedRegionOfInterest2D,
    FacialLandmarks=FacialLandmarks,
    NormalizedPointOfInterest2D=NormalizedPointOfInterest2D,
)


class FakeNode:
    """The rclpy node calls the ROS4HRI adapters make, recorded."""

    def __init__(self, subscribers: int = 1):
        self.publishers, self.subscriptions, self.destroyed = {}, {}, []
        self.subscribers = subscribers

    def create_publisher(self, msg_type, topic, qos):
        pub = SimpleNamespace(msg_type=msg_type, topic=topic, sent=[])
        pub.publish = pub.sent.append
        pub.get_subscription_count = lambda: self.subscribers
        self.publishers[topic] = pub
        return pub

    def destroy_publisher(self, pub):
        self.destroyed.append(pub.topic)
        del self.publishers[pub.topic]

    def create_subscription(self, msg_type, topic, callback, qos):
        sub = SimpleNamespace(msg_type=msg_type, topic=topic, callback=callback)
        self.subscriptions[topic] = sub
        return sub

    def destroy_subscription(self, sub):
        self.destroyed.append(sub.topic)
        del self.subscriptions[sub.topic]
