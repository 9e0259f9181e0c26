"""DuSE: Dual-stream Semantic Enhancement for video emotion recognition, on a frozen open_clip CLIP.

    class texts  "[P_0 x n] happiness: a face with raised cheeks, ..."  (one per class)
        -> CLIP text tower, P_j in the slots before layer j < M_T         -> F_T (C, D)
    video (B, T, 3, S, S)
        -> CLIP image tower per frame, V_j = MLP(P_j) (+ PE(t) at j = 0)
           appended before layer j < M_V, dropped after it                -> frames (B, T, D)
        -> LSEA(frames, F_T)                                              -> V_g (B, D)
    logits = logit_scale * cos(V_g, F_T(i))                               -> (B, C)

Trainable: the prompts P (M, n, text_width), the shared MLP, LSEA. CLIP, its logit scale
included, stays frozen and is not part of a checkpoint: `clip_weights` names its file.

Text features and visual prompts do not depend on the video. In eval mode with no gradient
recorded (the inference engine's `torch.inference_mode()`), they are computed once and reused
until a weight they depend on changes (detected by tensor version counters), the model is
moved or cast, autocast is switched, or the model goes back to train mode.

Ablations: `prompt="coop"` replaces HTPC with CoOp's text-only prompts (no visual prompts, no
MLP); `aggregator="avgpool"` replaces LSEA with the mean over frames.
"""

from __future__ import annotations

import contextlib
import logging

import torch
import torch.nn.functional as F

from ..classes import CLASS_SETS, get_class_set
from .base import AffectModel, InputSpec, as_number
from .clip_backbone import create_frozen_clip, encode_image_prompted, encode_text_prompted, tokenizer
from .htpc import HTPC, STRATEGIES, prompt_depth
from .lsea import LSEA, PAPER_FORM, SIMILARITIES
from .registry import register_arch, register_config, with_defaults

log = logging.getLogger(__name__)

# The fixed words of each class's text; the n learnable tokens come before them.
TEMPLATE = "{name}: a face with {description}."

DEFAULTS: dict = {
    "backbone": "ViT-B-16",  # open_clip model name
    "clip_weights": "",  # path of an open_clip checkpoint file; "" = random CLIP (untrained)
    "quick_gelu": True,  # True for OpenAI's CLIP weights (the paper's), False for LAION's
    "prompt": "htpc",  # "htpc" | "coop" (ablation: text-only prompts)
    "strategy": "normal",  # prompted layers: "shallow" (input only) | "normal" (1/3) | "deep" (2/3)
    "n_prompts": 4,  # n, learnable tokens per prompted layer
    "aggregator": "lsea",  # "lsea" | "avgpool" (ablation)
    "n_heads": 4,  # N, LSEA's text-attention heads
    "beta": 0.7,  # LSEA's mix of V_o and the attended text features
    "lsea_similarity": "dot",  # "dot" (the paper's Eq. 12) | "cosine" (the paper's prose)
    "lsea_norm": True,  # LayerNorm before LSEA's temporal attention (ours; the paper has none)
    "lsea_residual": True,  # frames + temporal attention (ours; the paper: the attention alone)
    "class_set": "dfew",  # see duse_ros.classes
    "image_size": None,  # None = the backbone's own
    "num_frames": 16,
    "span_s": 2.0,  # seconds the num_frames frames span (training sampled them so; the node should too)
    "seed": 0,  # random init of the trainable weights (and of CLIP without weights)
}
PROMPTS = ("htpc", "coop")
AGGREGATORS = ("lsea", "avgpool")


def resolve_config(config: dict) -> dict:
    """Defaults filled in and every value checked; errors name the config and the key."""
    name, arch, config = with_defaults(config, DEFAULTS, "DuSE")

    def check(ok: bool, key: str, expected: str) -> None:
        if not ok:
            raise ValueError(f"DuSE config {name!r}: {key}={config[key]!r}, expected {expected}")

    check(config["prompt"] in PROMPTS, "prompt", f"one of {PROMPTS}")
    check(config["aggregator"] in AGGREGATORS, "aggregator", f"one of {AGGREGATORS}")
    for key in ("n_prompts", "n_heads", "num_frames"):
        check(isinstance(config[key], int) and config[key] >= 1, key, "a positive integer")
    check(0.0 <= as_number(config["beta"]) <= 1.0, "beta", "a number in [0, 1]")
    check(config["lsea_similarity"] in SIMILARITIES, "lsea_similarity", f"one of {SIMILARITIES}")
    for key in ("lsea_norm", "lsea_residual"):
        check(isinstance(config[key], bool), key, "true or false")
    check(
        config["image_size"] is None or (isinstance(config["image_size"], int) and config["image_size"] > 0),
        "image_size",
        "a positive integer or null",
    )
    check(config["strategy"] in STRATEGIES, "strategy", f"one of {sorted(STRATEGIES)}")
    check(
        config["span_s"] is None or (isinstance(config["span_s"], (int, float)) and config["span_s"] > 0),
        "span_s",
        "a positive number of seconds or null",
    )
    check(config["class_set"] in CLASS_SETS, "class_set", f"one of {sorted(CLASS_SETS)}")
    return {"arch": arch, "name": name, **config}


def class_token_ids(backbone: str, class_names: list[str], descriptions: list[str], n_prompts: int) -> torch.Tensor:
    """(C, context_length) token ids: start token, n zero placeholder slots, the class text, end token."""
    tokenize = tokenizer(backbone)
    texts = [TEMPLATE.format(name=c, description=d) for c, d in zip(class_names, descriptions)]
    ids = tokenize(texts)  # (C, L): SOT, words, EOT, zero padding
    length = ids.shape[1]
    used = ids.argmax(dim=1) + 1  # up to the end token (the largest id)
    for text, n in zip(texts, used.tolist()):
        if n + n_prompts > length:  # (a truncated text also lands here: its end token is at L - 1)
            raise ValueError(
                f"class text {text!r} takes {n} tokens; with {n_prompts} prompts it does not fit "
                f"the text encoder's {length}: shorten its description in duse_ros/classes.py"
            )
    slots = torch.zeros(len(texts), n_prompts, dtype=ids.dtype)
    return torch.cat([ids[:, :1], slots, ids[:, 1 : length - n_prompts]], dim=1)


def _token_scale(positional_embedding: torch.Tensor) -> float:
    """Mean norm of the image tower's positional embedding rows: the scale of the frame encoding."""
    if positional_embedding.is_meta:
        return 1.0
    return float(positional_embedding.detach().float().norm(dim=-1).mean())


def _version(t: torch.Tensor) -> tuple[int, int]:
    return t.data_ptr(), (-1 if t.is_inference() else t._version)


class DuSE(AffectModel):
    def __init__(self, config: dict):
        super().__init__()
        config = resolve_config(config)
        self.random_backbone = not config["clip_weights"]
        self._untrained = True
        # The same random weights in every process; the caller's RNG state is restored after.
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(config["seed"])
            self.clip = create_frozen_clip(
                config["backbone"],
                config["clip_weights"],
                quick_gelu=config["quick_gelu"],
                image_size=config["image_size"],
            )
            text_width = self.clip.transformer.width
            vision_width = self.clip.visual.transformer.width
            embed_dim = self.clip.visual.output_dim
            # Each tower is prompted to the same relative depth (ViT-L/14 normal: 4 of 12 text
            # layers, 8 of 24 image layers).
            text_depth = prompt_depth(config["strategy"], self.clip.transformer.layers)
            vision_depth = prompt_depth(config["strategy"], self.clip.visual.transformer.layers)
            self.prompts = HTPC(
                text_depth,
                config["n_prompts"],
                text_width,
                vision_width if config["prompt"] == "htpc" else None,
                config["num_frames"],
                vision_depth=vision_depth,
                frame_encoding_scale=_token_scale(self.clip.visual.positional_embedding),
            )
            self.lsea = (
                LSEA(
                    embed_dim,
                    config["n_heads"],
                    config["beta"],
                    similarity=config["lsea_similarity"],
                    pre_norm=config["lsea_norm"],
                    residual=config["lsea_residual"],
                )
                if config["aggregator"] == "lsea"
                else None
            )
        config["image_size"] = int(self.clip.visual.image_size[0])
        self._config = config

        class_set = get_class_set(config["class_set"])
        self.class_names = list(class_set.classes)
        self.model_id = config["name"] + ("+random-clip" if self.random_backbone else "")
        self.input_spec = InputSpec(
            num_frames=config["num_frames"], image_size=config["image_size"], uses_video=True, uses_audio=False
        )
        with torch.device("cpu"):
            token_ids = class_token_ids(
                config["backbone"], self.class_names, class_set.descriptions(), config["n_prompts"]
            )
        self.register_buffer("token_ids", token_ids, persistent=False)
        self._frozen = None  # prompt state fixed by frozen_for_export
        self.invalidate_cache()
        if self.random_backbone:
            log.warning(
                "%s: no clip_weights given, CLIP is randomly initialised: the model is untrained", self.model_id
            )

    # `untrained` stays True while CLIP is random, whatever checkpoint the trainable weights came from.
    @property
    def untrained(self) -> bool:
        return self._untrained or self.random_backbone

    @untrained.setter
    def untrained(self, value: bool) -> None:
        self._untrained = bool(value)

    def random_backbones(self) -> list[str]:
        return ["clip_weights"] if self.random_backbone else []

    def config(self) -> dict:
        return dict(self._config)

    # ---- the parts that do not depend on the video -------------------------------------------
    def compute_prompt_state(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Text features F_T (C, D) and the visual prompts of each prompted layer, computed now."""
        text_features = encode_text_prompted(self.clip, self.token_ids, self.prompts.text_prompts())
        return text_features, self.prompts.visual_prompts()

    def prompt_state(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """`compute_prompt_state()`, cached while in eval mode with no gradient recorded."""
        if self._frozen is not None:
            return self._frozen
        if self.training or torch.is_grad_enabled():
            return self.compute_prompt_state()
        key = self._cache_key()
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self.compute_prompt_state())
        return self._cache[1]

    @contextlib.contextmanager
    def frozen_for_export(self):
        """The text features and visual prompts computed once, then used as constants: an ONNX
        export holds them and not the text tower."""
        with torch.no_grad():
            text_features, visual_prompts = self.compute_prompt_state()
        self._frozen = text_features.detach(), [p.detach() for p in visual_prompts]
        try:
            yield
        finally:
            self._frozen = None

    def invalidate_cache(self) -> None:
        """Drop the cached text features and visual prompts. Needed only after replacing a
        parameter tensor by hand: in-place updates, `load_state_dict`, `.to()` and `train()`
        are detected."""
        self._cache = None
        self._cache_inputs = None

    def _cache_key(self) -> tuple:
        if self._cache_inputs is None:  # everything the cached state is computed from (~30 us to check)
            self._cache_inputs = [
                *self.prompts.parameters(),
                *(p for name, p in self.clip.named_parameters() if not name.startswith("visual.")),
            ]
        device_type = self.token_ids.device.type
        autocast = torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type)
        return autocast, tuple(_version(t) for t in self._cache_inputs)

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()  # frozen: it stays in inference behaviour while the prompts train
        self.invalidate_cache()
        return self

    def _apply(self, fn, *args, **kwargs):
        self.invalidate_cache()  # .to(), .half(), .cuda() ... make new tensors
        return super()._apply(fn, *args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        self.invalidate_cache()  # assign=True replaces parameter objects
        return super().load_state_dict(*args, **kwargs)

    # ---- forward -----------------------------------------------------------------------------
    def encode_frames(self, video: torch.Tensor, visual_prompts: list[torch.Tensor] = ()) -> torch.Tensor:
        """video (B, T, 3, S, S) -> per-frame image features (B, T, D); no prompts = plain CLIP.

        The first layer's prompts pass through ln_pre like the patch tokens they join (as MaPLe
        appends its first visual prompts before ln_pre); deeper prompts replace hidden states."""
        b, t = video.shape[:2]
        prompts = list(visual_prompts)
        if prompts:  # layer 0: one prompt set per frame, the same for every clip of the batch
            first = self.clip.visual.ln_pre(prompts[0])
            prompts[0] = first.unsqueeze(0).expand(b, *first.shape).reshape(b * t, *first.shape[1:])
        return encode_image_prompted(self.clip.visual, video.flatten(0, 1), prompts).view(b, t, -1)

    def aggregate(self, frames: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """Per-frame features (B, T, D) -> one video feature (B, D)."""
        return self.lsea(frames, text_features) if self.lsea is not None else frames.mean(dim=1)

    def similarity_logits(self, video_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """logit_scale * cos(V_g, F_T(i)), in float32 whatever the autocast dtype: (B, C)."""
        with torch.autocast(video_features.device.type, enabled=False):
            scale = self.clip.logit_scale.float().exp().clamp(max=100.0)
            v = F.normalize(video_features.float(), dim=-1)
            t = F.normalize(text_features.float(), dim=-1)
            return scale * v @ t.T

    def forward(self, video: torch.Tensor | None = None, audio: torch.Tensor | None = None) -> torch.Tensor:
        if audio is not None:
            raise ValueError(f"{self.model_id} is a video-only model and takes no audio")
        if video is None:
            raise ValueError(f"{self.model_id} needs video, got none")
        size = self.input_spec.image_size
        expected = (self.input_spec.num_frames, 3, size, size)
        if video.dim() != 5 or tuple(video.shape[1:]) != expected:
            raise ValueError(
                f"{self.model_id} expects video shaped (B, {', '.join(map(str, expected))}), got {tuple(video.shape)}"
            )
        text_features, visual_prompts = self.prompt_state()
        frames = self.encode_frames(video, visual_prompts)
        return self.similarity_logits(self.aggregate(frames, text_features), text_features)


@register_arch("duse")
def _build_duse(config: dict) -> DuSE:
    return DuSE(config)


def _register(name: str, **config) -> None:
    register_config(name, {"arch": "duse", **DEFAULTS, **config})


for _key, _backbone in (("vitb32", "ViT-B-32"), ("vitb16", "ViT-B-16"), ("vitl14", "ViT-L-14")):
    for _strategy in ("shallow", "normal", "deep"):
        _register(f"duse-{_key}-{_strategy}", backbone=_backbone, strategy=_strategy, image_size=224)
# The paper's ablations (Tables III-V) are on ViT-L/14: CoOp prompts for HTPC, average pooling for
# LSEA, both. The ViT-B/16 versions are the same ablations at a third of the cost.
for _key, _backbone in (("vitl14", "ViT-L-14"), ("vitb16", "ViT-B-16")):
    _register(f"duse-{_key}-coop", backbone=_backbone, prompt="coop", strategy="shallow", image_size=224)
    _register(f"duse-{_key}-avgpool", backbone=_backbone, aggregator="avgpool", image_size=224)
    _register(
        f"duse-{_key}-coop-avgpool",
        backbone=_backbone,
        prompt="coop",
        strategy="shallow",
        aggregator="avgpool",
        image_size=224,
    )
# Table V's sweeps around the Normal default (N = 4 heads, beta = 0.7), the learnable-token count
# (n = 4), and LSEA's form: the paper's (dot product, no LayerNorm, no residual) and the prose's
# cosine similarity. Each is the ViT-L/14 Normal model (and its ViT-B/16 twin) with one change.
LSEA_PAPER = {
    "lsea_similarity": PAPER_FORM["similarity"],
    "lsea_norm": PAPER_FORM["pre_norm"],
    "lsea_residual": PAPER_FORM["residual"],
}
ABLATIONS: dict[str, dict] = {
    "heads2": {"n_heads": 2},
    "heads6": {"n_heads": 6},
    "beta0.3": {"beta": 0.3},
    "beta0.5": {"beta": 0.5},
    "beta0.9": {"beta": 0.9},
    "tokens2": {"n_prompts": 2},
    "tokens8": {"n_prompts": 8},
    "tokens16": {"n_prompts": 16},
    "lsea-paper": LSEA_PAPER,
    "lsea-cosine": {"lsea_similarity": "cosine"},
}
for _key, _backbone in (("vitl14", "ViT-L-14"), ("vitb16", "ViT-B-16")):
    for _suffix, _change in ABLATIONS.items():
        _register(f"duse-{_key}-{_suffix}", backbone=_backbone, image_size=224, **_change)
# Tiny random CLIP (open_clip_configs/DuSE-Tiny.json) for tests: each path of the model.
_TINY = {"backbone": "DuSE-Tiny", "quick_gelu": False, "image_size": 32}
_register("duse-tiny", **_TINY)
_register("duse-tiny-shallow", **_TINY, strategy="shallow")
_register("duse-tiny-deep", **_TINY, strategy="deep")
_register("duse-tiny-coop", **_TINY, prompt="coop", strategy="shallow")
_register("duse-tiny-avgpool", **_TINY, aggregator="avgpool")
_register("duse-tiny-lsea-paper", **_TINY, **LSEA_PAPER)
_register("duse-tiny-lsea-cosine", **_TINY, lsea_similarity="cosine")
