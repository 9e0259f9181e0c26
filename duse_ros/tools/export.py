"""duse-export: a registered model or a checkpoint to one ONNX file for ONNX Runtime or TensorRT.

    duse-export fer2013-minixception -o fer.onnx
    duse-export duse-vitb16-normal --clip-weights /models/ViT-B-16.pt -o duse_b16.onnx --int8
    duse-export /models/duse_dfew.json -o duse_dfew.onnx        a checkpoint (its .json)
    duse-export --check fer.onnx                                  verify a file, print its metadata

After writing, the file is read back, verified, and run by ONNX Runtime (CPU) on random windows
against PyTorch; the largest difference is printed (and is an error above --tolerance, unless
--int8, whose agreement is measured by benchmarks/bench_onnx.py). The format, its metadata and
its digest: duse_ros/onnx_export.py. Run it with runtime:=onnxruntime model:=<file>.onnx.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from duse_ros.affect.onnx_model import OnnxModel, import_onnxruntime
from duse_ros.checkpoint import CheckpointError
from duse_ros.loading import load_model
from duse_ros.onnx_export import OPSET, OnnxExportError, example_inputs, export_onnx


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="duse-export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("model", help="registered model name, a checkpoint's .json, or with --check an .onnx file")
    p.add_argument("-o", "--output", type=Path, help="the .onnx file to write (default: <model id>.onnx here)")
    p.add_argument("--int8", action="store_true", help="dynamic int8 quantisation of MatMul/Gemm weights")
    p.add_argument("--clip-weights", default="", help="DuSE: open_clip checkpoint of the frozen CLIP")
    p.add_argument("--visual-weights", default="", help="BHGap: file of the frozen visual ViT")
    p.add_argument("--audio-weights", default="", help="BHGap: file of the frozen audio ViT")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest ORT - PyTorch logit difference allowed")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--check", action="store_true", help="verify the .onnx file MODEL and print its metadata")
    return p.parse_args(argv)


def check(path: Path) -> int:
    model = OnnxModel(path.read_bytes(), str(path))
    print(json.dumps({"file": str(path), "provider": model.provider, **model.config()}, indent=2))
    return 0


def export(args: argparse.Namespace) -> int:
    overrides = {
        key: value
        for key, value in (
            ("clip_weights", args.clip_weights),
            ("visual_weights", args.visual_weights),
            ("audio_weights", args.audio_weights),
        )
        if value
    }
    model = load_model(args.model, **overrides).eval()
    output = args.output or Path(f"{model.model_id.replace('/', '_')}{'-int8' if args.int8 else ''}.onnx")
    if output.exists() and not args.force:
        raise FileExistsError(f"{output} exists: pass --force to overwrite it")
    print(f"exporting {model.model_id} ({'untrained' if model.untrained else 'trained'}) ...", file=sys.stderr)
    t0 = time.perf_counter()
    data = export_onnx(model, quantize=args.int8, opset=args.opset)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    partial.write_bytes(data)
    partial.replace(output)
    print(f"wrote {output} ({len(data) / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    exported = OnnxModel(output.read_bytes(), str(output))
    inputs = example_inputs(model, batch=2, seed=1)
    with torch.inference_mode():
        diff = (model(**inputs) - exported(**inputs)).abs().max().item()
    print(f"ONNX Runtime ({exported.provider}) vs PyTorch on 2 random windows: max |logit difference| {diff:.2e}")
    if not args.int8 and not diff <= args.tolerance:
        print(f"duse-export: error: difference {diff:.2e} is above --tolerance {args.tolerance:g}", file=sys.stderr)
        return 1
    print(output)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import_onnxruntime()
        return check(Path(args.model)) if args.check else export(args)
    except (
        ImportError,
        OnnxExportError,
        CheckpointError,
        FileExistsError,
        FileNotFoundError,
        KeyError,
        ValueError,
    ) as e:
        print(f"duse-export: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
