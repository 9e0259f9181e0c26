"""`make train-smoke`: prove the training loop learns time, on CPU, without any licensed data.

Writes the motion-only synthetic set (training/synthetic.py: seven classes that differ only in
the order of the frames, in DFEW's layout) unless it is there, trains the tiny DuSE recipe
(training/configs/smoke_motion.yaml) on fold 1, scores the held-out test fold with the
checkpoint selected on validation, and prints a last line with UAR and WAR. Chance is 1/7.

    python -m training.smoke [--out-dir runs/smoke] [--baseline] [train.py options ...]

`--baseline` also trains the frame-averaging baseline (smoke_motion_frame_average.yaml: a conv
net per frame, features averaged over time) the same way, for comparison; it cannot see the
order, so it should stay near chance.

`--av` instead trains BHGap (bhgap-tiny) on the synthetic audio-visual set, where each clip
carries its class in exactly one modality, three times: with both inputs, video only and audio
only (smoke_bhgap_av.yaml). Either modality alone can be right on about half of the clips.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training import train  # noqa: E402
from training.synthetic import make_av_dataset, make_motion_dataset  # noqa: E402

CONFIGS = Path(__file__).with_name("configs")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", default="runs/smoke")
    p.add_argument("--baseline", action="store_true", help="also train the frame-averaging baseline")
    p.add_argument("--av", action="store_true", help="BHGap on the audio-visual set: both, video only, audio only")
    args, rest = p.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = Path(args.out_dir)
    if args.av:
        return audio_visual(out, rest)
    data = out / "motion_set"
    if not (data / "EmoLabel_DataSplit").is_dir():
        make_motion_dataset(data)
    runs = [("duse-tiny", "smoke_motion.yaml")]
    if args.baseline:
        runs.append(("frame-average", "smoke_motion_frame_average.yaml"))
    results = {}
    for name, config in runs:
        summary = train.train(
            train.parse_args(
                ["--config", str(CONFIGS / config), "--data", str(data), "--out-dir", str(out / name), *rest]
            )
        )
        results[name] = summary["test"]
    for name, test in results.items():
        print(
            f"{name}: held-out fold 1, {sum(test['support'].values())} clips, chance 14.29%: "
            f"UAR {100 * test['uar']:.2f}%  WAR {100 * test['war']:.2f}%"
        )
    print(
        f"train-smoke (duse-tiny, motion-only set): UAR {100 * results['duse-tiny']['uar']:.2f}%  "
        f"WAR {100 * results['duse-tiny']['war']:.2f}%"
    )
    return results


def audio_visual(out: Path, rest: list[str]) -> dict:
    data = out / "av_set"
    if not (data / "set_1").is_dir():
        make_av_dataset(data, clips_per_class=30)
    results = {}
    for inputs in ("all", "video", "audio"):
        summary = train.train(
            train.parse_args(
                [
                    "--config",
                    str(CONFIGS / "smoke_bhgap_av.yaml"),
                    "--data",
                    str(data),
                    "--out-dir",
                    str(out / f"bhgap_{inputs}"),
                    "--inputs",
                    inputs,
                    *rest,
                ]
            )
        )
        results[inputs] = summary["test"]
    for inputs, test in results.items():
        print(
            f"bhgap-tiny, inputs {inputs}: held-out fold 1, {sum(test['support'].values())} clips: "
            f"UAR {100 * test['uar']:.2f}%  WAR {100 * test['war']:.2f}%"
        )
    return results


if __name__ == "__main__":
    main()
