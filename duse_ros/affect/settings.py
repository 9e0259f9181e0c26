"""Every parameter of affect_node: name, default, meaning, allowed values, and whether a change
applies live. ROS-free; config/duse_video.yaml holds the same defaults (test/test_config.py).

Adding a parameter is one line in PARAMETERS. `live=True` ones are applied at once when set on a
running node (nodes/affect_node.py says how); the others take effect at the next configure
(lifecycle cleanup -> set -> configure) and are refused while the node is configured.
"""

from __future__ import annotations

from duse_ros.affect.host_memory import MALLOC_KEEP_MB_MAX
from duse_ros.io.audio import AUDIO_CHUNK, AUDIO_TYPES, SUPPORTED_SAMPLE_FORMATS
from duse_ros.params import ParameterSpec, defaults

P = ParameterSpec

PARAMETERS: tuple[ParameterSpec, ...] = (
    P(
        "model",
        "fer2013-minixception",
        "registered configuration name, or a checkpoint's .json path "
        "(default: the trained FER2013 face-expression CNN; DuSE: duse-vitb16-normal or a DuSE checkpoint)",
    ),
    P("clip_weights", "", "open_clip checkpoint file for the frozen CLIP encoders; empty: random init (untrained)"),
    P(
        "visual_weights",
        "",
        "BHGap: file of the frozen visual ViT (e.g. MAE-Face ViT-B/16, .safetensors or a "
        "state dict); empty: the model config's (none: random, untrained)",
    ),
    P(
        "audio_weights",
        "",
        "BHGap: file of the frozen audio ViT (e.g. AudioMAE ViT-B/16); empty: the model "
        "config's (none: random, untrained)",
    ),
    P(
        "runtime",
        "torch",
        "torch: PyTorch eager; onnxruntime: ONNX Runtime on a duse-export .onnx file (or `model` "
        "exported at configure), CPU provider, or TensorRT/CUDA with device cuda (needs onnxruntime)",
        choices=("torch", "onnxruntime"),
    ),
    P("device", "cpu", "cpu, cuda, cuda:N or auto"),
    P(
        "precision",
        "fp32",
        "inference precision: fp32, or fp16 / bf16 autocast (bf16: CPU and Ampere or newer GPUs, "
        "Jetson Orin included; fp16 on a CPU runs fp32, bf16 on an older GPU runs fp16, each with a warning)",
        choices=("fp32", "fp16", "bf16"),
    ),
    P(
        "torch_threads",
        1,
        "intra-op threads for inference (torch, or ONNX Runtime with runtime onnxruntime); 0: the library's "
        "default (one per core), which collapses when other processes share the cores (benchmarks/bench_threads.py)",
        0,
        1024,
    ),
    P(
        "malloc_keep_mb",
        256,
        "freed host memory (MB per heap) the C allocator keeps for the next forward instead of unmapping "
        "it, so a forward does not page-fault its activations in again (glibc; affect/host_memory.py); 0: "
        "blocks from 256 KB up go back to the system when freed (smallest heaps, slower CPU forwards)",
        0,
        MALLOC_KEEP_MB_MAX,
    ),
    P("autostart", True, "configure and activate on start", read_only=True),
    P("image_compressed", False, "subscribe to image_raw/compressed (sensor_msgs/CompressedImage)"),
    P(
        "qos.reliability",
        "best_effort",
        "QoS reliability of the camera and microphone subscriptions",
        choices=("best_effort", "reliable"),
    ),
    P("qos.depth", 5, "QoS history depth of the camera and microphone subscriptions", 1, 1000),
    P("audio.type", AUDIO_CHUNK, "audio message type", choices=AUDIO_TYPES),
    P("audio.channels", 1, "AudioDataStamped only: interleaved channels (its format lives in AudioInfo)", 1, 64),
    P("audio.sample_rate", 16000, "AudioDataStamped only: sample rate in Hz", 1000, 384000),
    P(
        "audio.sample_format",
        "S16LE",
        "AudioDataStamped only: sample format",
        choices=SUPPORTED_SAMPLE_FORMATS,
    ),
    P(
        "audio.min_sample_rate",
        1000,
        "audio chunks with a lower sample rate are refused (counted)",
        1,
        384000,
        live=True,
    ),
    P(
        "audio.max_sample_rate",
        384000,
        "audio chunks with a higher sample rate are refused (counted)",
        1000,
        768000,
        live=True,
    ),
    P(
        "audio.max_chunk_s",
        2.0,
        "audio chunks longer than this many seconds are refused (counted)",
        0.01,
        60.0,
        live=True,
    ),
    P(
        "max_image_pixels",
        3840 * 2160,
        "frames with more pixels (width x height) are refused (counted)",
        64 * 64,
        8192 * 8192,
        live=True,
    ),
    P("span_s", 2.0, "a window's frames are spread evenly over the last span_s seconds", 0.1, 60.0),
    P("stride_s", 0.5, "one window (one EmotionState) per stride of stream time", 0.01, 60.0),
    P("max_gap_s", 0.5, "a longer gap between frames resets the buffers", 0.01, 60.0),
    P(
        "face_mode",
        "detect",
        "detect: crop the faces (max_faces of them); full_frame: no detection",
        choices=("detect", "full_frame"),
    ),
    P(
        "max_faces",
        1,
        "faces read per window, each with a face id and a reading of its own (one batch); 1: the most salient face only",
        1,
        8,
    ),
    P(
        "face_lifetime_s",
        1.0,
        "a face missed this long (stream time) ends; seen again later it gets a new id",
        0.1,
        60.0,
    ),
    P(
        "face_source",
        "own",
        "own: detect faces in image_raw; ros4hri: take face ids and aligned crops from "
        "/humans/faces/* (hri_face_detect; needs hri_msgs)",
        choices=("own", "ros4hri"),
    ),
    P(
        "ros4hri_output",
        True,
        "publish /humans/faces/<id>/expression and /humans/faces/tracked (when hri_msgs is installed)",
    ),
    P(
        "face_detector",
        "mtcnn",
        "mtcnn: trained CNN with scores and eye landmarks (weights from duse-fetch-weights); "
        "haar: OpenCV's frontal Haar cascade",
        choices=("mtcnn", "haar"),
    ),
    P("face_detect_threshold", 0.9, "mtcnn: score a detection must reach", 0.0, 1.0),
    P(
        "face_min_size",
        32,
        "faces narrower than this many pixels are skipped (counted); mtcnn searches no smaller",
        12,
        4096,
    ),
    P("face_align", True, "turn each face crop upright by its eye landmarks (mtcnn) before the model"),
    P("face_margin", 0.25, "margin around a detected face, as a fraction of its size", 0.0, 2.0),
    P("face_detect_hz", 5.0, "face detections per second of stream (off the executor)", 0.1, 120.0, live=True),
    P(
        "face_detect_sync",
        False,
        "wait for each keyframe's face detection before taking the next frame: offline replay "
        "(duse-eval-bag) then finds the same faces at any pace; a live camera wants false",
    ),
    P("face_detect_width", 320, "haar: detection runs on the frame scaled to this width", 32, 4096),
    P("min_face_fraction", 0.5, "share of a window's frames that must show a face", 0.0, 1.0, live=True),
    P(
        "no_face_policy",
        "publish",
        "video model without a face: publish a no_face state, or skip the window",
        choices=("publish", "skip"),
        live=True,
    ),
    P("smoothing_window", 5, "soft voting over the last K readings; 0: off", 0, 1000, live=True),
    P("queue_depth", 2, "pending windows; the oldest is dropped when inference lags", 1, 64),
    P("max_batch", 4, "clips one forward may take (a window of N faces is N clips, never split)", 1, 64),
    P(
        "max_window_age_s",
        5.0,
        "windows older than this when inference would start are skipped (counted); 0: never",
        0.0,
        3600.0,
        live=True,
    ),
    P("diagnostics_period_s", 1.0, "period of the /diagnostics status", 0.05, 3600.0, live=True),
    P("stall_timeout_s", 2.0, "no frame for this long (wall time): diagnostics say stalled", 0.1, 3600.0, live=True),
)

DEFAULTS = defaults(PARAMETERS)
BY_NAME = {p.name: p for p in PARAMETERS}
LIVE = frozenset(p.name for p in PARAMETERS if p.live)  # applied at once on a running node
