"""Child process for test_messages.py: publishes each sample message on its topic once a
subscriber is matched, then keeps re-publishing until killed (reliable QoS; the parent stops
listening after it has one of each)."""

import sys
import time

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from msg_samples import samples  # noqa: E402


def main() -> None:
    rclpy.init()
    node = rclpy.create_node("duse_sample_publisher")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    msgs = samples()
    pubs = {topic: node.create_publisher(type(msg), topic, qos) for topic, msg in msgs.items()}
    deadline = time.monotonic() + 30.0
    while rclpy.ok() and time.monotonic() < deadline:
        for topic, pub in pubs.items():
            if pub.get_subscription_count() > 0:
                pub.publish(msgs[topic])
        rclpy.spin_once(node, timeout_sec=0.1)  # paces the loop on the executor, not a sleep
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
