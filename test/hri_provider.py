"""A small stand-in expression provider for tests: a separate process that publishes what a
ROS4HRI recogniser (hri_msgs/Expression on /humans/faces/<id>/expression, its face on
/humans/faces/tracked) or a duse_ros-style node (EmotionState) publishes.

    python test/hri_provider.py --schedule 3.2:happy,6:sad [--images TOPIC [--every N]] ...

What it says comes from --schedule: `until_s:name` pairs, by seconds since the first stamp. With
--images it answers the frames of that topic (every N-th, stamped with the frame's stamp), else it
publishes --count readings at --rate Hz with stamps of its own. Misbehaviours on request: --no-stamp
(header stamp left 0), --lazy (a face's publisher made at its first reading), --stall-after K (falls silent after K readings), --untracked-face ID (also
publishes for a face id never listed on /humans/faces/tracked). --output duse publishes EmotionState
(one-hot over DFEW's classes, names as our classes) on --emotion-topic instead; it needs no hri_msgs.
Each published reading's stamp and name is appended to --log (one JSON line)."""

from __future__ import annotations

import argparse
import json
import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CompressedImage, Image

NS = 1_000_000_000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--schedule", required=True)
    ap.add_argument("--images", help="answer this image topic's frames")
    ap.add_argument("--compressed", action="store_true")
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--start-s", type=float, default=100.0)
    ap.add_argument("--face", default="f1")
    ap.add_argument("--roi", default="0.3,0.2,0.6,0.7", help="xmin,ymin,xmax,ymax of the face")
    ap.add_argument("--confidence", type=float, default=0.9)
    ap.add_argument("--no-stamp", action="store_true")
    ap.add_argument("--stall-after", type=int, default=-1)
    ap.add_argument("--untracked-face", default="")
    ap.add_argument("--lazy", action="store_true", help="make a face's publishers only when it is first seen")
    ap.add_argument("--output", choices=("hri", "duse"), default="hri")
    ap.add_argument("--emotion-topic", default="emotion_state")
    ap.add_argument("--namespace", default="/")
    ap.add_argument("--log", required=True)
    args, _ = ap.parse_known_args()
    schedule = [(float(u), n) for u, n in (item.split(":") for item in args.schedule.split(","))]

    rclpy.init()
    node = rclpy.create_node("standin_provider", namespace=args.namespace)
    qos = QoSProfile(depth=100)
    if args.output == "hri":
        from hri_msgs.msg import Expression, IdsList, NormalizedRegionOfInterest2D

        tracked = node.create_publisher(IdsList, "/humans/faces/tracked", qos)
        faces = [args.face] + ([args.untracked_face] if args.untracked_face else [])
        expr = {}
        if not args.lazy:  # lazy: a face's publisher is made when the face is first seen (hri_face_detect-like)
            expr = {f: node.create_publisher(Expression, f"/humans/faces/{f}/expression", qos) for f in faces}
        roi_pub = node.create_publisher(NormalizedRegionOfInterest2D, f"/humans/faces/{args.face}/roi", qos)
    else:
        from duse_ros.classes import CLASS_SETS
        from duse_ros.msg import EmotionState

        state_pub = node.create_publisher(EmotionState, args.emotion_topic, qos)
        classes = list(CLASS_SETS["dfew"].classes)
    log = open(args.log, "a")  # noqa: SIM115
    first = {"ns": None}
    sent = {"n": 0, "frames": 0}

    def name_at(stamp_ns: int) -> str:
        if first["ns"] is None:
            first["ns"] = stamp_ns
        t = (stamp_ns - first["ns"]) / NS
        return next((n for until, n in schedule if t < until), schedule[-1][1])

    def stamp_of(ns: int):
        from builtin_interfaces.msg import Time

        return Time() if args.no_stamp else Time(sec=ns // NS, nanosec=ns % NS)

    def publish(stamp_ns: int) -> None:
        if 0 <= args.stall_after <= sent["n"]:
            return
        name = name_at(stamp_ns)
        if args.output == "hri":
            ids = IdsList(ids=[args.face])
            ids.header.stamp = stamp_of(stamp_ns)
            tracked.publish(ids)
            xmin, ymin, xmax, ymax = (float(v) for v in args.roi.split(","))
            roi = NormalizedRegionOfInterest2D(xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax, c=1.0)
            roi.header.stamp = stamp_of(stamp_ns)
            roi_pub.publish(roi)
            for f in faces:
                if f not in expr:
                    expr[f] = node.create_publisher(Expression, f"/humans/faces/{f}/expression", qos)
                pub = expr[f]
                msg = Expression(expression=name, confidence=args.confidence, valence=0.5, arousal=-0.25)
                msg.header.stamp = stamp_of(stamp_ns)
                msg.header.frame_id = "camera"
                pub.publish(msg)
                log.write(json.dumps({"face": f, "stamp_ns": stamp_ns, "name": name}) + "\n")
        else:
            msg = EmotionState(modality=EmotionState.MODALITY_VIDEO, face_found=True, class_names=classes)
            msg.probabilities = [1.0 if c == name else 0.0 for c in classes]
            msg.label, msg.confidence = name, 1.0
            msg.header.stamp = msg.window_end = stamp_of(stamp_ns)
            msg.model_id = "standin"
            state_pub.publish(msg)
            log.write(json.dumps({"face": "", "stamp_ns": stamp_ns, "name": name}) + "\n")
        log.flush()
        sent["n"] += 1

    if args.images:

        def on_frame(msg) -> None:
            sent["frames"] += 1
            if sent["frames"] % args.every == 0:
                publish(int(msg.header.stamp.sec) * NS + int(msg.header.stamp.nanosec))

        node.create_subscription(CompressedImage if args.compressed else Image, args.images, on_frame, qos)
    else:
        start = int(args.start_s * NS)
        step = int(NS / args.rate)
        ticks = iter(range(args.count))

        def on_timer() -> None:
            # Scripted readings start once a reader is there (a bridge subscribes to a face's
            # expression only after seeing it on /humans/faces/tracked).
            if args.output == "hri" and not args.lazy and expr[args.face].get_subscription_count() == 0:
                tracked.publish(IdsList(ids=[args.face]))
                return
            if args.output == "duse" and state_pub.get_subscription_count() == 0:
                return
            i = next(ticks, None)
            if i is not None:
                publish(start + i * step)

        node.create_timer(1.0 / args.rate, on_timer)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        log.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
