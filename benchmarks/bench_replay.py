"""Is bag replay the bottleneck? Replay throughput through the real nodes against the model's own.

For each model, side by side in one run:
  - replay: `duse-eval-bag` (as fast as the model keeps up) on the demo stream (12 s, 15 fps JPEG
    CompressedImage + 16 kHz AudioChunk): frames per second from the first message sent to the
    last window answered, through DDS, affect_node and llm_bridge_node in their own processes;
  - model alone: the same bag's frames decoded, cut into the same windows (the node's Windower),
    full-frame preprocessed, and only the forward passes timed (batch 1, in this process),
    expressed as frames per second of stream the model gets through.
The model alone is timed before and after the replay and averaged. The ratio replay / model-alone near 1 means the model sets the pace; well below 1, the replay path.

Usage: python benchmarks/bench_replay.py [--models tiny-random-av,fer2013-minixception] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", "63")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from duse_ros.affect.preprocess import FramePreprocessor  # noqa: E402
from duse_ros.affect.windowing import Windower  # noqa: E402
from duse_ros.io.audio import audio_chunk_to_mono  # noqa: E402
from duse_ros.io.demo_stream import DemoScript, write_demo_bag  # noqa: E402
from duse_ros.io.images import IMAGE_MESSAGES  # noqa: E402
from duse_ros.io.rosbag import BagFile, select_streams  # noqa: E402
from duse_ros.loading import load_model  # noqa: E402
from duse_ros.timebase import stamp_to_ns  # noqa: E402
from duse_ros.tools import eval_bag  # noqa: E402


def model_alone(bag_path: Path, name: str) -> tuple[float, int, int]:
    """(seconds of forward passes, windows, frames) for the bag's windows, batch 1."""
    model = load_model(name).eval()
    spec = model.input_spec
    prep = FramePreprocessor(spec)
    windower = Windower(
        num_frames=spec.num_frames, use_audio=spec.uses_audio, audio_rate=spec.audio_rate, audio_s=spec.audio_s
    )
    with BagFile(bag_path) as bag:
        streams = select_streams(bag)
        camera = IMAGE_MESSAGES[streams.image.msgtype]
        topics = [streams.image.name] + ([streams.audio.name] if streams.audio else [])
        jobs, frames = [], 0
        for topic, msgtype, _, raw in bag.messages(topics):
            msg = bag.deserialize(raw, msgtype)
            stamp = stamp_to_ns(msg.header.stamp)
            if topic == streams.image.name:
                windower.add_frame(stamp, camera.to_rgb(msg))
                frames += 1
            elif spec.uses_audio:
                windower.add_audio(stamp, audio_chunk_to_mono(msg, spec.audio_rate))
            while (w := windower.poll()) is not None:
                video = prep(w.frames).unsqueeze(0)
                audio = None if w.audio is None else torch.from_numpy(w.audio).unsqueeze(0)
                jobs.append((video, audio))
    with torch.inference_mode():
        model(*jobs[0])  # warm-up
        start = time.perf_counter()
        for video, audio in jobs:
            model(video, audio)
        return time.perf_counter() - start, len(jobs), frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=f"tiny-random-av,{eval_bag.default_model()}")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        bag = write_demo_bag(Path(tmp) / "stream", DemoScript())
        print(
            f"{'model':<24} {'windows':>7} {'replay fps':>11} {'model-alone fps':>16} {'ratio':>6}  "
            f"{'e2e p50/p95 ms':>15}  dropped"
        )
        for i, name in enumerate(args.models.split(",")):
            before_s, windows, frames = model_alone(bag, name)
            report = eval_bag.run(
                eval_bag.parse_args(
                    [
                        str(bag),
                        "--model",
                        name,
                        "--face-mode",
                        "full_frame",
                        "--out",
                        str(Path(tmp) / f"eval{i}"),
                        "-q",
                        "--param",
                        f"torch_threads={args.threads}",
                    ]
                )
            )
            after_s, _, _ = model_alone(bag, name)  # before and after the replay: load drifts on a shared machine
            replay_fps = report["replay_frames_per_s"]
            alone_fps = frames / ((before_s + after_s) / 2)
            print(
                f"{name:<24} {report['windows']:>7} {replay_fps:>11.1f} {alone_fps:>16.1f} "
                f"{replay_fps / alone_fps:>6.2f}  {report['latency_ms_p50']:>6.1f} / {report['latency_ms_p95']:<6.1f}  "
                f"{report['dropped']}  (windows model-alone: {windows})"
            )


if __name__ == "__main__":
    main()
