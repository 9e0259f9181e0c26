"""BHGap: deep iterative audio-visual prompting with multi-stage alignment, over two frozen ViTs.

    waveform (B, S) --LogMelFrontend--> fbank (B, F, 128) --patches--> audio ViT ─┐ same depth L
    video (B, T, 3, S, S) --patches per frame------------------------> visual ViT ─┘
    at every layer i < L, after block i of both encoders:
        g_v, g_a = SSMPromptGenerator_i(visual tokens, audio tokens)   (each made from the other's side)
        visual tokens += tanh(gate_v[i]) * (p_v[i] + g_v)              gates start at 0: an untrained
        audio tokens  += tanh(gate_a[i]) * (p_a[i] + g_a)              model IS its frozen encoders
    visual: per-frame mean of patch tokens -> Linear, LN -> v (B, T, H)
    audio:  patch tokens -> Linear, LN -> Gamma = U V^T carries them onto the T frames -> a (B, T, H)
            macro: critic behind gradient reversal, v vs a (training loss)
            micro: a refined towards v by a few steps on the multi-kernel MMD (loss: what is left)
    [v | a] + type and time embeddings -> fusion transformer -> masked mean -> LN, Linear -> logits

Missing modalities: `forward(video=None, audio=...)` runs the audio encoder alone (its own
prompts p_a, no generated ones) and fuses the audio tokens only; `audio=None` likewise for video.
In training, `modality_dropout` drops one modality of a clip at that rate, per clip: its
generated prompts to the other encoder are zeroed and its tokens are masked out of the fusion,
which is what the single-modality paths compute.

Trainable: prompts, gates, generators, projections, alignment, fusion, head. The encoders are
frozen, not in a checkpoint, and load from `visual_weights` / `audio_weights` (files the user
gives); without them they are random and the model says so (`untrained`, model id suffix).
Auxiliary losses (`forward_with_aux`): "adversarial" (critic loss + gradient penalty, x adv_weight)
and "mmd" (x mmd_weight), over the clips that have both modalities.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..classes import CLASS_SETS, get_class_set
from .alignment import LowRankAdversarialAlign, MMDRefiner, masked_token_mean
from .audio_frontend import AUDIOSET_FBANK_MEAN, AUDIOSET_FBANK_STD, frontend_for
from .base import AffectModel, InputSpec, ModelOutput, as_number
from .prompt_generator import SSMPromptGenerator
from .registry import register_arch, register_config, with_defaults
from .vit_encoders import ENCODERS, build_encoder, embed, load_encoder_weights

log = logging.getLogger(__name__)

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

DEFAULTS: dict = {
    "visual_encoder": "vit-b16",  # a name in vit_encoders.ENCODERS, or a dict of its keys
    "audio_encoder": "vit-b16",
    "visual_weights": "",  # file of the frozen visual ViT (e.g. MAE-Face ViT-B/16); "" = random
    "audio_weights": "",  # file of the frozen audio ViT (e.g. AudioMAE ViT-B/16); "" = random
    "image_size": 224,
    "num_frames": 16,
    "span_s": 2.0,  # clip span trained on (the frames'); fixes the fbank frame count unless audio_s is set
    "audio_s": None,  # seconds of audio the model reads (the reference: 5.12); None = span_s
    "image_mean": IMAGENET_MEAN,  # MAE's normalisation of RGB in [0, 1]
    "image_std": IMAGENET_STD,
    "fbank_mean": AUDIOSET_FBANK_MEAN,
    "fbank_std": AUDIOSET_FBANK_STD,
    "prompting": "deep",  # "deep": SSM prompts at every layer | "none" (ablation: frozen encoders only)
    # "additive": a gated shift of every token (ours: a zero gate is exactly the frozen encoder) |
    # "tokens": prompt_tokens extra tokens appended before each layer and dropped after it (the reference's)
    "prompt_mode": "additive",
    "prompt_tokens": 2,  # tokens appended per layer in "tokens" mode
    "generator_dim": 256,  # width of the prompt generator's SSM (the reference: 768)
    "d_state": 16,
    "d_conv": 4,
    "expand": 2,
    "fusion_dim": 512,
    "fusion_depth": 3,
    "fusion_heads": 8,
    "dropout": 0.1,
    "align_rank": 8,  # rank r of the coupling Gamma = U V^T
    "adversarial": True,  # macro alignment loss (ablation: False)
    "adv_weight": 0.2,
    "gp_weight": 10.0,
    "mmd": True,  # micro alignment: refinement and its loss (ablation: False)
    "mmd_weight": 0.1,
    "mmd_steps": 3,
    "mmd_step_size": 0.5,
    "mmd_bandwidths": [0.25, 0.5, 1.0, 2.0, 4.0],
    "modality_dropout": 0.1,  # training: per clip, drop one modality at this rate
    "class_set": "dfew",
    "seed": 0,
}
PROMPTING = ("deep", "none")
PROMPT_MODES = ("additive", "tokens")


def resolve_config(config: dict) -> dict:
    """Defaults filled in and every value checked; errors name the config and the key."""
    name, arch, config = with_defaults(config, DEFAULTS, "BHGap")

    def check(ok: bool, key: str, expected: str) -> None:
        if not ok:
            raise ValueError(f"BHGap config {name!r}: {key}={config[key]!r}, expected {expected}")

    for key in ("visual_encoder", "audio_encoder"):
        check(isinstance(config[key], dict) or config[key] in ENCODERS, key, f"one of {sorted(ENCODERS)} or a dict")
    for key in (
        "image_size",
        "num_frames",
        "generator_dim",
        "d_state",
        "d_conv",
        "expand",
        "fusion_dim",
        "fusion_depth",
        "fusion_heads",
        "align_rank",
        "prompt_tokens",
    ):
        check(isinstance(config[key], int) and config[key] >= 1, key, "a positive integer")
    check(isinstance(config["mmd_steps"], int) and config["mmd_steps"] >= 0, "mmd_steps", "an integer >= 0")
    for key in ("span_s", "fbank_std", "mmd_step_size"):
        check(as_number(config[key]) > 0, key, "a number > 0")
    for key in ("adv_weight", "gp_weight", "mmd_weight"):
        check(as_number(config[key]) >= 0, key, "a number >= 0")
    check(0.0 <= as_number(config["dropout"]) < 1.0, "dropout", "a number in [0, 1)")
    check(0.0 <= as_number(config["modality_dropout"]) <= 1.0, "modality_dropout", "a number in [0, 1]")
    check(config["prompting"] in PROMPTING, "prompting", f"one of {PROMPTING}")
    check(config["prompt_mode"] in PROMPT_MODES, "prompt_mode", f"one of {PROMPT_MODES}")
    check(config["audio_s"] is None or as_number(config["audio_s"]) > 0, "audio_s", "a number > 0 or null")
    check(config["fusion_dim"] % config["fusion_heads"] == 0, "fusion_heads", "a divisor of fusion_dim")
    check(
        len(config["mmd_bandwidths"]) >= 1 and all(as_number(b) > 0 for b in config["mmd_bandwidths"]),
        "mmd_bandwidths",
        "a non-empty list of numbers > 0",
    )
    for key in ("image_mean", "image_std"):
        check(len(config[key]) == 3, key, "three numbers (R, G, B)")
    check(config["class_set"] in CLASS_SETS, "class_set", f"one of {sorted(CLASS_SETS)}")
    for key in ("image_mean", "image_std", "mmd_bandwidths"):
        config[key] = [float(v) for v in config[key]]  # JSON round trips give lists
    return {"arch": arch, "name": name, **config}


class BHGap(AffectModel):
    def __init__(self, config: dict):
        super().__init__()
        config = resolve_config(config)
        self._config = config
        self._untrained = True
        self.random_visual = not config["visual_weights"]
        self.random_audio = not config["audio_weights"]
        class_set = get_class_set(config["class_set"])
        self.class_names = list(class_set.classes)
        size, frames = config["image_size"], config["num_frames"]
        # The same random weights in every process; the caller's RNG state is restored after.
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(config["seed"])
            self.frontend = frontend_for({**config, "span_s": config["audio_s"] or config["span_s"]})
            self.visual = build_encoder(config["visual_encoder"], (size, size), in_chans=3)
            self.audio = build_encoder(
                config["audio_encoder"], (self.frontend.num_frames, self.frontend.config.num_mel_bins), in_chans=1
            )
            depth = len(self.visual.blocks)
            if len(self.audio.blocks) != depth:
                raise ValueError(
                    f"BHGap config {config['name']!r}: the encoders must have the same depth, "
                    f"got visual {depth} and audio {len(self.audio.blocks)}"
                )
            dv, da, h = self.visual.embed_dim, self.audio.embed_dim, config["fusion_dim"]
            if config["prompting"] == "deep" and config["prompt_mode"] == "tokens":
                n = config["prompt_tokens"]  # p_v[i], p_a[i]: n tokens per layer, at token scale (VPT's 0.02)
                self.visual_prompts = nn.Parameter(torch.randn(depth, n, dv) * 0.02)
                self.audio_prompts = nn.Parameter(torch.randn(depth, n, da) * 0.02)
            elif config["prompting"] == "deep":
                self.visual_prompts = nn.Parameter(torch.randn(depth, dv) * dv**-0.5)  # p_v[i]
                self.audio_prompts = nn.Parameter(torch.randn(depth, da) * da**-0.5)  # p_a[i]
            if config["prompting"] == "deep":
                self.visual_gates = nn.Parameter(torch.zeros(depth))
                self.audio_gates = nn.Parameter(torch.zeros(depth))
                self.generators = nn.ModuleList(
                    SSMPromptGenerator(
                        dv, da, config["generator_dim"], config["d_state"], config["d_conv"], config["expand"]
                    )
                    for _ in range(depth)
                )
            else:
                self.generators = None
            self.visual_proj = nn.Sequential(nn.Linear(dv, h), nn.LayerNorm(h))
            self.audio_proj = nn.Sequential(nn.Linear(da, h), nn.LayerNorm(h))
            audio_tokens = self.audio.patch_embed.num_patches
            self.macro = LowRankAdversarialAlign(
                h, frames, audio_tokens, config["align_rank"], adversarial=config["adversarial"]
            )
            self.micro = (
                MMDRefiner(config["mmd_steps"], config["mmd_step_size"], config["mmd_bandwidths"])
                if config["mmd"]
                else None
            )
            self.type_embed = nn.Parameter(torch.randn(2, h) * 0.02)  # video, audio
            self.time_embed = nn.Parameter(torch.randn(frames, h) * 0.02)
            layer = nn.TransformerEncoderLayer(
                h,
                config["fusion_heads"],
                4 * h,
                config["dropout"],
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            self.fusion = nn.TransformerEncoder(layer, config["fusion_depth"], enable_nested_tensor=False)
            self.head = nn.Sequential(nn.LayerNorm(h), nn.Linear(h, len(self.class_names)))
            if config["visual_weights"]:
                load_encoder_weights(self.visual, config["visual_weights"], "visual_weights")
            if config["audio_weights"]:
                load_encoder_weights(self.audio, config["audio_weights"], "audio_weights")
        random = [kind for kind, r in (("visual", self.random_visual), ("audio", self.random_audio)) if r]
        suffix = "+random-encoders" if len(random) == 2 else "".join(f"+random-{k}" for k in random)
        self.model_id = config["name"] + suffix
        self.input_spec = InputSpec(
            num_frames=frames,
            image_size=size,
            mean=tuple(config["image_mean"]),
            std=tuple(config["image_std"]),
            uses_video=True,
            uses_audio=True,
            audio_rate=self.frontend.config.sample_rate,
            # the seconds its log-mel front end was sized for, whatever span_s the node runs with
            audio_s=float(config["audio_s"] or config["span_s"]),
        )
        if random:
            log.warning(
                "%s: no %s given, those encoders are random: the model is untrained",
                self.model_id,
                " or ".join(f"{k}_weights" for k in random),
            )

    # `untrained` stays True while an encoder is random, whatever checkpoint the rest came from.
    @property
    def untrained(self) -> bool:
        return self._untrained or self.random_visual or self.random_audio

    @untrained.setter
    def untrained(self, value: bool) -> None:
        self._untrained = bool(value)

    def random_backbones(self) -> list[str]:
        return [
            key
            for key, random in (("visual_weights", self.random_visual), ("audio_weights", self.random_audio))
            if random
        ]

    def config(self) -> dict:
        return dict(self._config)

    def train(self, mode: bool = True):
        super().train(mode)
        self.visual.eval()  # frozen: no dropout or drop-path while the rest trains
        self.audio.eval()
        return self

    # ---- inputs ------------------------------------------------------------------------------
    def _check_inputs(self, video: torch.Tensor | None, audio: torch.Tensor | None) -> int:
        if video is None and audio is None:
            raise ValueError(f"{self.model_id} needs video or audio, got neither")
        spec = self.input_spec
        if video is not None:
            expected = (spec.num_frames, 3, spec.image_size, spec.image_size)
            if video.dim() != 5 or tuple(video.shape[1:]) != expected:
                raise ValueError(
                    f"{self.model_id} expects video shaped (B, {', '.join(map(str, expected))}), "
                    f"got {tuple(video.shape)}"
                )
        if audio is not None:
            window = self.frontend.config.window_samples
            if audio.dim() != 2 or audio.shape[1] < window:
                raise ValueError(
                    f"{self.model_id} expects audio shaped (B, S) with S >= {window} samples "
                    f"at {spec.audio_rate} Hz, got {tuple(audio.shape)}"
                )
        if video is not None and audio is not None and video.shape[0] != audio.shape[0]:
            raise ValueError(f"{self.model_id}: video batch {video.shape[0]} != audio batch {audio.shape[0]}")
        return (video if video is not None else audio).shape[0]

    def _modality_masks(self, batch: int, video, audio, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(has_video, has_audio), (B,) bool: the inputs given, less modality dropout in training."""
        # ones/zeros rather than full(..., bool): the TorchScript tracer behind ONNX export has no
        # aten::full with a bool fill
        flag = {True: torch.ones, False: torch.zeros}
        has_video = flag[video is not None](batch, dtype=torch.bool, device=device)
        has_audio = flag[audio is not None](batch, dtype=torch.bool, device=device)
        p = float(self._config["modality_dropout"])
        if self.training and p > 0 and video is not None and audio is not None:
            drop = torch.rand(batch, device=device) < p
            drop_video = torch.rand(batch, device=device) < 0.5
            has_video = ~(drop & drop_video)
            has_audio = ~(drop & ~drop_video)
        return has_video, has_audio

    # ---- encoders with deep prompting ------------------------------------------------------
    def encode(
        self,
        video: torch.Tensor | None,
        fbank: torch.Tensor | None,
        has_video: torch.Tensor | None = None,
        has_audio: torch.Tensor | None = None,
    ):
        """video (B, T, 3, S, S), fbank (B, F, M) (either may be None) -> final-norm tokens of the
        visual encoder (B, T, 1 + Nv, Dv) and of the audio encoder (B, 1 + Na, Da), or None.
        has_video / has_audio (B,): a clip without one gets no prompts generated from it."""
        if self.generators is not None and self._config["prompt_mode"] == "tokens":
            return self._encode_with_prompt_tokens(video, fbank, has_video, has_audio)
        b = (video if video is not None else fbank).shape[0]
        xv = embed(self.visual, video.flatten(0, 1)) if video is not None else None  # (B*T, 1 + Nv, Dv)
        xa = embed(self.audio, fbank.unsqueeze(1)) if fbank is not None else None  # (B, 1 + Na, Da)
        for i in range(len(self.visual.blocks)):
            if xv is not None:
                xv = self.visual.blocks[i](xv)
            if xa is not None:
                xa = self.audio.blocks[i](xa)
            if self.generators is None:
                continue
            pv, pa = self.visual_prompts[i], self.audio_prompts[i]  # (Dv,), (Da,)
            if xv is not None and xa is not None:
                gv, ga = self._generated_prompts(i, xv, xa, has_video, has_audio)
                pv, pa = pv + gv, pa + ga
            if xv is not None:
                shift = (torch.tanh(self.visual_gates[i]) * pv).to(xv.dtype).expand(b, -1)  # (B, Dv)
                xv = (xv.view(b, -1, *xv.shape[1:]) + shift[:, None, None]).flatten(0, 1)
            if xa is not None:
                shift = (torch.tanh(self.audio_gates[i]) * pa).to(xa.dtype).expand(b, -1)  # (B, Da)
                xa = xa + shift[:, None]
        visual = self.visual.norm(xv).view(b, -1, *xv.shape[1:]) if xv is not None else None
        audio = self.audio.norm(xa) if xa is not None else None
        return visual, audio

    def _generated_prompts(self, i, xv, xa, has_video, has_audio):
        """Layer i's generated prompts (B, Dv), (B, Da) from both encoders' tokens, each zeroed for
        the clips that lack the modality it was generated from."""
        b = xa.shape[0]
        gv, ga = self.generators[i](xv.view(b, -1, *xv.shape[1:]), xa)  # (B, Dv), (B, Da)
        if has_audio is not None:
            gv = gv * has_audio.to(gv.dtype).unsqueeze(1)
        if has_video is not None:
            ga = ga * has_video.to(ga.dtype).unsqueeze(1)
        return gv, ga

    def _encode_with_prompt_tokens(self, video, fbank, has_video, has_audio):
        """`encode` in "tokens" mode: before block i of each encoder, n prompt tokens
        p[i] + tanh(gate[i]) g are appended (g generated from both encoders' tokens entering
        block i, zeroed for a clip without the other modality) and dropped after the block. Every
        block then attends to the prompts, so even at zero gates this is not the frozen encoder;
        what a zero gate does guarantee is that the other modality has no effect."""
        b = (video if video is not None else fbank).shape[0]
        xv = embed(self.visual, video.flatten(0, 1)) if video is not None else None  # (B*T, 1 + Nv, Dv)
        xa = embed(self.audio, fbank.unsqueeze(1)) if fbank is not None else None  # (B, 1 + Na, Da)
        n = self._config["prompt_tokens"]
        for i in range(len(self.visual.blocks)):
            pv = self.visual_prompts[i].expand(b, -1, -1)  # (B, n, Dv)
            pa = self.audio_prompts[i].expand(b, -1, -1)  # (B, n, Da)
            if xv is not None and xa is not None:
                gv, ga = self._generated_prompts(i, xv, xa, has_video, has_audio)
                pv = pv + torch.tanh(self.visual_gates[i]) * gv[:, None]
                pa = pa + torch.tanh(self.audio_gates[i]) * ga[:, None]
            if xv is not None:
                frames = xv.shape[0] // b
                prompts = pv.to(xv.dtype).repeat_interleave(frames, dim=0)  # (B*T, n, Dv): a clip's frames share them
                xv = self.visual.blocks[i](torch.cat([xv, prompts], dim=1))[:, :-n]
            if xa is not None:
                xa = self.audio.blocks[i](torch.cat([xa, pa.to(xa.dtype)], dim=1))[:, :-n]
        visual = self.visual.norm(xv).view(b, -1, *xv.shape[1:]) if xv is not None else None
        audio = self.audio.norm(xa) if xa is not None else None
        return visual, audio

    # ---- alignment, fusion, head ---------------------------------------------------------------
    def _classify(self, visual, audio, has_video, has_audio, with_aux: bool):
        cfg = self._config
        both = (has_video & has_audio).float()
        aux: dict[str, torch.Tensor] = {}
        v = self.visual_proj(visual[:, :, 1:].mean(dim=2)) if visual is not None else None  # (B, T, H)
        a = None
        if audio is not None:
            a = self.macro(self.audio_proj(audio[:, 1:]))  # (B, T, H)
            if v is not None and with_aux and cfg["adversarial"]:
                aux["adversarial"] = cfg["adv_weight"] * self.macro.loss(v, a, both, cfg["gp_weight"])
            if v is not None and self.micro is not None:
                refined, mmd = self.micro(a, v)
                a = torch.where(both[:, None, None].bool(), refined, a)
                if with_aux:
                    aux["mmd"] = cfg["mmd_weight"] * (mmd * both).sum() / both.sum().clamp(min=1.0)
        parts, keep = [], []
        if v is not None:
            parts.append(v + self.type_embed[0] + self.time_embed)
            keep.append(has_video[:, None].expand(-1, v.shape[1]))
        if a is not None:
            parts.append(a + self.type_embed[1] + self.time_embed)
            keep.append(has_audio[:, None].expand(-1, a.shape[1]))
        tokens, keep = torch.cat(parts, dim=1), torch.cat(keep, dim=1)  # (B, L, H), (B, L)
        fused = self.fusion(tokens, src_key_padding_mask=~keep)
        return self.head(masked_token_mean(fused, keep)), aux

    def _run(self, video, audio, with_aux: bool):
        batch = self._check_inputs(video, audio)
        device = (video if video is not None else audio).device
        has_video, has_audio = self._modality_masks(batch, video, audio, device)
        fbank = self.frontend(audio) if audio is not None else None  # (B, F, 128)
        visual, audio_tokens = self.encode(video, fbank, has_video, has_audio)
        return self._classify(visual, audio_tokens, has_video, has_audio, with_aux)

    def forward(self, video: torch.Tensor | None = None, audio: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(video, audio, with_aux=False)[0]

    def forward_with_aux(self, video: torch.Tensor | None = None, audio: torch.Tensor | None = None) -> ModelOutput:
        logits, aux = self._run(video, audio, with_aux=True)
        return ModelOutput(logits=logits, extras={"aux_losses": aux})


@register_arch("bhgap")
def _build_bhgap(config: dict) -> BHGap:
    return BHGap(config)


def _register(name: str, **config) -> None:
    register_config(name, {"arch": "bhgap", **DEFAULTS, **config})


# Paper size: two ViT-B/16 (MAE-Face and AudioMAE weights are what the paper uses).
_register("bhgap-vitb16")
_register("bhgap-vitb16-mafw", class_set="mafw")
# Ablations of the paper's components: no deep prompting (frozen encoders + alignment + fusion),
# no macro (adversarial) stage, no micro (MMD) stage, no alignment at all.
_register("bhgap-vitb16-noprompt", prompting="none")
_register("bhgap-vitb16-noadv", adversarial=False)
_register("bhgap-vitb16-nommd", mmd=False)
_register("bhgap-vitb16-noalign", adversarial=False, mmd=False)
# The reference's prompt form (two tokens appended per layer) and generator width (768), each
# one change from bhgap-vitb16; the -ref variant has both, and the reference's 5.12 s of audio.
_register("bhgap-vitb16-tokens", prompt_mode="tokens")
_register("bhgap-vitb16-gen768", generator_dim=768)
_register("bhgap-vitb16-ref", prompt_mode="tokens", generator_dim=768, audio_s=5.12)
# Tiny random encoders for tests and the CPU demo: every path of the model, in milliseconds.
_TINY = {
    "visual_encoder": "vit-tiny",
    "audio_encoder": "vit-tiny",
    "image_size": 112,
    "generator_dim": 32,
    "fusion_dim": 64,
    "fusion_depth": 1,
    "fusion_heads": 2,
    "align_rank": 4,
    "d_state": 8,
}
_register("bhgap-tiny", **_TINY)
_register("bhgap-tiny-mafw", **_TINY, class_set="mafw")
_register("bhgap-tiny-noprompt", **_TINY, prompting="none")
_register("bhgap-tiny-noalign", **_TINY, adversarial=False, mmd=False)
_register("bhgap-tiny-tokens", **_TINY, prompt_mode="tokens")
