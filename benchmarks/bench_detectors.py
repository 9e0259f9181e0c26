"""Face detectors side by side: the trained MTCNN (face_detector: mtcnn) against OpenCV's Haar
cascade (face_detector: haar), on the bundled portrait and synthetic variants of it, and what eye
alignment changes for the default expression model.

1. Recall and false positives per frame. Each variant is a 640x480 frame built from the portrait
   (duse_ros/data/astronaut.jpg, the face about 98 px): as is, turned in-plane by +-15/30/45
   degrees, scaled so the face is 40/60 px, mirrored, darker (x0.35, gamma 1.3), a group (2x2 and
   3x3 tiles of the portrait: 4 faces of ~46 px, 9 of ~30 px), and the portrait with the face
   painted over (no face: false positives only). Each is shown at `--shifts` sub-frame offsets
   (a few pixels, as a steady camera jitters), so a detector that flickers shows it. A detection
   is a hit when its centre lies in a true face's box and their sides differ by less than 2x; each
   true face is hit at most once; every other detection is a false positive.
2. Cost per keyframe at 640x480, medians of `--repeats` calls, detectors interleaved round by
   round with `--threads` torch and OpenCV threads: the portrait frame and the 3x3 group frame.
3. Alignment: the trained default (fer2013-minixception) on MTCNN's face crops of the turned
   portrait, plain square crops against crops turned upright by the eye line (the node's
   face_align): the probability of `happiness` (the portrait smiles) and how often it is the label.

Usage: python benchmarks/bench_detectors.py [--threads 2] [--shifts 6] [--repeats 15]
                                            [--only accuracy|cost|alignment]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from duse_ros.affect.boxes import crop, square_crop_box  # noqa: E402
from duse_ros.affect.faces import HaarFaceDetector, MtcnnFaceDetector  # noqa: E402
from duse_ros.affect.preprocess import FramePreprocessor  # noqa: E402
from duse_ros.io.samples import load_sample_face  # noqa: E402
from duse_ros.loading import load_model  # noqa: E402

FACE = (174, 64, 98, 98)  # the portrait's face box (x, y, w, h) in its 512x512 pixels
W, H = 640, 480


def _place(portrait: np.ndarray, scale: float, centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The portrait scaled and moved so its face centre lands at `centre` of a 640x480 frame (the
    rest a flat grey: a reflected border would add mirrored faces); returns the frame and the 2x3
    affine used."""
    fx, fy = FACE[0] + FACE[2] / 2, FACE[1] + FACE[3] / 2
    m = np.array([[scale, 0, centre[0] - scale * fx], [0, scale, centre[1] - scale * fy]], np.float64)
    return cv2.warpAffine(portrait, m, (W, H), borderMode=cv2.BORDER_CONSTANT, borderValue=(110, 110, 110)), m


def _face_box(m: np.ndarray) -> tuple[float, float, float, float]:
    corners = np.array([[FACE[0], FACE[1], 1], [FACE[0] + FACE[2], FACE[1] + FACE[3], 1]], np.float64) @ m.T
    side = abs(corners[1, 0] - corners[0, 0])
    cx, cy = corners.mean(axis=0)
    return (cx - side / 2, cy - side / 2, side, side)


def variants(portrait: np.ndarray, shift: tuple[int, int]) -> dict[str, tuple[np.ndarray, list]]:
    """name -> (frame, true face boxes)."""
    dx, dy = shift
    out = {}
    base_scale = 1.0
    centre = (W / 2 + dx, 200 + dy)
    frame, m = _place(portrait, base_scale, centre)
    out["portrait"] = (frame, [_face_box(m)])
    for deg in (15, -15, 30, -30, 45, -45):
        r = cv2.getRotationMatrix2D(centre, deg, 1.0)
        out[f"turned {deg:+d}"] = (cv2.warpAffine(frame, r, (W, H), borderMode=cv2.BORDER_REPLICATE), [_face_box(m)])
    for side in (60, 40):
        small, ms = _place(portrait, side / FACE[2], (W / 2 + dx, H / 2 + dy))
        out[f"face {side} px"] = (small, [_face_box(ms)])
    mirrored = np.ascontiguousarray(frame[:, ::-1])
    x, y, s, _ = _face_box(m)
    out["mirrored"] = (mirrored, [(W - x - s, y, s, s)])
    dark = (255 * (0.35 * frame / 255.0) ** 1.3).astype(np.uint8)
    out["darker"] = (dark, [_face_box(m)])
    for n in (2, 3):
        tile_w, tile_h = W // n, H // n
        tile = cv2.resize(np.roll(portrait, (dy, dx), axis=(0, 1)), (tile_w, tile_h), interpolation=cv2.INTER_AREA)
        group = np.tile(tile, (n, n, 1))
        sx, sy = tile_w / 512, tile_h / 512
        boxes = []
        for i in range(n):
            for j in range(n):
                cx = j * tile_w + (FACE[0] + dx + FACE[2] / 2) * sx
                cy = i * tile_h + (FACE[1] + dy + FACE[3] / 2) * sy
                side = FACE[2] * (sx + sy) / 2
                boxes.append((cx - side / 2, cy - side / 2, side, side))
        out[f"group of {n * n}"] = (np.ascontiguousarray(group), boxes)
    faceless = portrait.copy()
    faceless[:260] = faceless[:260].mean(axis=(0, 1)).astype(np.uint8)
    out["no face"] = (_place(faceless, base_scale, centre)[0], [])
    return out


def score(detections, truths) -> tuple[int, int]:
    """(hits, false positives)."""
    free = list(truths)
    hits = fps = 0
    for d in detections:
        x, y, w, h = d.box if hasattr(d, "box") else d
        cx, cy = x + w / 2, y + h / 2
        match = next(
            (
                t
                for t in free
                if t[0] <= cx <= t[0] + t[2] and t[1] <= cy <= t[1] + t[3] and 0.5 < max(w, h) / t[2] < 2.0
            ),
            None,
        )
        if match is None:
            fps += 1
        else:
            free.remove(match)
            hits += 1
    return hits, fps


def accuracy_table(detectors: dict, portrait: np.ndarray, shifts: int) -> None:
    rng = np.random.default_rng(0)
    offsets = [(0, 0)] + [tuple(int(v) for v in rng.integers(-6, 7, 2)) for _ in range(shifts - 1)]
    totals = {}  # (variant, detector) -> [hits, truths, fps, frames]
    for shift in offsets:
        for name, (frame, truths) in variants(portrait, shift).items():
            for det_name, det in detectors.items():
                hits, fps = score(det.detect(frame), truths)
                t = totals.setdefault((name, det_name), [0, 0, 0, 0])
                t[0] += hits
                t[1] += len(truths)
                t[2] += fps
                t[3] += 1
    names = list(dict.fromkeys(v for v, _ in totals))
    header = "| variant | faces | " + " | ".join(f"{d} recall | {d} FP/frame" for d in detectors) + " |"
    print(header)
    print("|" + "---|" * (2 + 2 * len(detectors)))
    sums = {d: [0, 0, 0, 0] for d in detectors}
    for v in names:
        cells = []
        for d in detectors:
            hits, truths, fps, frames = totals[(v, d)]
            sums[d] = [a + b for a, b in zip(sums[d], (hits, truths, fps, frames))]
            cells.append(f"{hits / truths:.2f}" if truths else "-")
            cells.append(f"{fps / frames:.2f}")
        first = totals[(v, next(iter(detectors)))]
        print(f"| {v} | {first[1] // first[3]} | " + " | ".join(cells) + " |")
    cells = []
    for d in detectors:
        hits, truths, fps, frames = sums[d]
        cells += [f"{hits / truths:.2f}", f"{fps / frames:.2f}"]
    print("| all | | " + " | ".join(cells) + " |")


def cost_table(detectors: dict, portrait: np.ndarray, repeats: int) -> None:
    frames = {
        "portrait": variants(portrait, (0, 0))["portrait"][0],
        "group of 9": variants(portrait, (0, 0))["group of 9"][0],
    }
    times = {(f, d): [] for f in frames for d in detectors}
    for _ in range(repeats):
        for f, frame in frames.items():
            for d, det in detectors.items():
                t0 = time.perf_counter()
                det.detect(frame)
                times[(f, d)].append(time.perf_counter() - t0)
    print("| frame (640x480) | " + " | ".join(f"{d} ms" for d in detectors) + " |")
    print("|" + "---|" * (1 + len(detectors)))
    for f in frames:
        print(f"| {f} | " + " | ".join(f"{1e3 * statistics.median(times[(f, d)]):.1f}" for d in detectors) + " |")


def alignment_table(mtcnn: MtcnnFaceDetector, portrait: np.ndarray) -> None:
    model = load_model("fer2013-minixception").eval()
    spec = model.input_spec
    prep = FramePreprocessor(spec)
    happy = list(model.class_names).index("happiness")
    frame, m = _place(portrait, 1.0, (W / 2, 200))
    rows = []
    for deg in (0, 15, -15, 30, -30, 45, -45):
        turned = cv2.warpAffine(
            frame, cv2.getRotationMatrix2D((W / 2, 200), deg, 1.0), (W, H), borderMode=cv2.BORDER_REPLICATE
        )
        found = mtcnn.detect(turned)
        if not found:
            rows.append((deg, None, None, None, None))
            continue
        d = max(found, key=lambda f: f.score)
        square = square_crop_box(d.box, turned.shape, 0.25)
        out = []
        for box in (square, (*square, d.roll_deg)):
            clip = prep([crop(turned, box)] * spec.num_frames)
            with torch.inference_mode():
                probs = torch.softmax(model(clip[None]).float(), dim=-1)[0]  # logits, as the engine reads them
            out.append((float(probs[happy]), int(torch.argmax(probs)) == happy))
        rows.append((deg, *out[0], *out[1]))
    print("| turned | p(happiness) plain | label plain | p(happiness) aligned | label aligned |")
    print("|---|---|---|---|---|")
    for deg, p0, ok0, p1, ok1 in rows:
        if p0 is None:
            print(f"| {deg:+d} | no face | | | |")
        else:
            print(
                f"| {deg:+d} | {p0:.2f} | {'happiness' if ok0 else 'other'} | {p1:.2f} | {'happiness' if ok1 else 'other'} |"
            )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shifts", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--only", choices=("accuracy", "cost", "alignment"), help="run one of the three parts")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    portrait = load_sample_face()
    mtcnn = MtcnnFaceDetector(min_face_size=32, threshold=0.9)
    detectors = {
        "mtcnn": mtcnn,
        "mtcnn-24": MtcnnFaceDetector(mtcnn.model, min_face_size=24, threshold=0.9),
        "haar": HaarFaceDetector(),
    }
    if args.only in (None, "accuracy"):
        print(f"## Recall and false positives ({args.shifts} jittered frames per variant)\n")
        accuracy_table(detectors, portrait, args.shifts)
    if args.only in (None, "cost"):
        print(f"\n## Cost per keyframe ({args.threads} threads, median of {args.repeats})\n")
        cost_table(detectors, portrait, args.repeats)
    if args.only in (None, "alignment"):
        print("\n## Eye alignment and the default expression model\n")
        alignment_table(mtcnn, portrait)
    return 0


if __name__ == "__main__":
    sys.exit(main())
