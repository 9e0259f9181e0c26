"""BHGap on its tiny configs: the audio front end, the scan, the alignment pieces, the three
modality paths, the zero-gate identity, encoder weight files and checkpoints. Random weights:
the tests check arithmetic and plumbing, never accuracy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from quiet import random_weight_warnings_off

from duse_ros.checkpoint import load_checkpoint, save_checkpoint
from duse_ros.models import build_model, get_config, list_configs
from duse_ros.models.alignment import MMDRefiner, mmd2, mmd2_grad, reverse_gradient
from duse_ros.models.audio_frontend import FbankConfig, LogMelFrontend, frontend_for, log_mel_fbank, num_frames
from duse_ros.models.bhgap import resolve_config
from duse_ros.models.ssm import SelectiveSSM, scan_backend, selective_scan

RATE = 16000


@pytest.fixture(scope="module")
def model():
    with random_weight_warnings_off():
        return build_model("bhgap-tiny").eval()


def _window(model, batch: int = 2, seconds: float = 1.875, seed: int = 0):
    """A window as the pipeline cuts it: 16 preprocessed frames and 15/16 of the span of audio."""
    gen = torch.Generator().manual_seed(seed)
    size = model.input_spec.image_size
    video = torch.randn(batch, model.input_spec.num_frames, 3, size, size, generator=gen)
    audio = 0.1 * torch.randn(batch, int(seconds * RATE), generator=gen)
    return video, audio


# ------------------------------------------------------------------------ audio front end
def _hand_log_mel(frame: np.ndarray, mels: int = 128) -> np.ndarray:
    """One Kaldi fbank frame written out from its definition: float64, an explicit DFT sum and
    per-bin triangle weights (no FFT, no shared code with the front end)."""
    x = frame.astype(np.float64)
    x = x - x.mean()
    x = x - 0.97 * np.concatenate([x[:1], x[:-1]])
    n = np.arange(400)
    x = x * (0.5 - 0.5 * np.cos(2 * np.pi * n / 399))
    k = np.arange(256)[:, None]
    power = np.abs((x[None, :] * np.exp(-2j * np.pi * k * n[None, :] / 512)).sum(axis=1)) ** 2

    def mel(f):
        return 1127.0 * math.log(1.0 + f / 700.0)

    low, high = mel(20.0), mel(8000.0)
    step = (high - low) / (mels + 1)
    out = np.empty(mels)
    for m in range(mels):
        left, centre, right = low + m * step, low + (m + 1) * step, low + (m + 2) * step
        energy = 0.0
        for j in range(256):
            f = mel(j * RATE / 512)
            energy += max(0.0, min((f - left) / (centre - left), (right - f) / (right - centre))) * power[j]
        out[m] = math.log(max(energy, np.finfo(np.float32).eps))
    return out


def test_log_mel_matches_a_hand_computation_on_a_tone():
    t = np.arange(int(0.2 * RATE)) / RATE
    tone = (0.5 * np.sin(2 * np.pi * 1000.0 * t) + 0.01).astype(np.float32)  # a DC offset Kaldi removes
    fbank = log_mel_fbank(torch.from_numpy(tone))[0].numpy()  # (n, 128)
    assert fbank.shape == (1 + (len(tone) - 400) // 160, 128)
    for index in (0, 7):
        expected = _hand_log_mel(tone[index * 160 : index * 160 + 400])
        np.testing.assert_allclose(fbank[index], expected, atol=2e-3, rtol=1e-4)
    # The tone's energy lands in the filter centred nearest 1 kHz.
    edges = np.linspace(1127 * np.log1p(20 / 700), 1127 * np.log1p(8000 / 700), 130)
    centres_hz = 700 * np.expm1(edges[1:-1] / 1127)
    assert int(np.argmax(fbank[3])) == int(np.argmin(np.abs(centres_hz - 1000.0)))


def test_front_end_gives_the_fixed_frame_count_of_the_span_and_normalises():
    config = FbankConfig(span_s=2.0)
    assert num_frames(config) == 208  # 198 frames in 2 s, rounded up to the 16-row patch height
    front = LogMelFrontend(config)
    for seconds in (0.5, 1.875, 2.0, 3.0):
        wave = 0.1 * torch.randn(3, int(seconds * RATE))
        out = front(wave)
        assert out.shape == (3, 208, 128)
        raw = log_mel_fbank(wave)
        n = min(raw.shape[1], 208)
        torch.testing.assert_close(out[:, :n], (raw[:, :n] - config.mean) / config.std)
        if raw.shape[1] < 208:  # padded with log-mel 0, normalised like the rest
            assert torch.all(out[:, n:] == (0.0 - config.mean) / config.std)
    assert num_frames(FbankConfig(span_s=3.0)) == 304
    # The model's own front end is the one `frontend_for` builds from its config.
    model_front = frontend_for(get_config("bhgap-tiny"))
    assert model_front.num_frames == 208 and model_front.config == config
    with pytest.raises(ValueError, match="shorter than one frame"):
        front(torch.zeros(1, 399))


# ------------------------------------------------------------------------ selective scan
def _naive_scan(x, delta, A, B, C, D, z, bias):
    """h_t = exp(d_t A) h_{t-1} + d_t B_t x_t; y_t = C_t h_t + D x_t; y * silu(z), one step at a time."""
    delta = torch.nn.functional.softplus(delta + bias)
    h = torch.zeros(x.shape[0], x.shape[2], A.shape[1], dtype=torch.float64)
    ys = []
    for t in range(x.shape[1]):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * x[:, t])[:, :, None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1) + D * x[:, t])
    y = torch.stack(ys, dim=1)
    return y * torch.nn.functional.silu(z)


@pytest.mark.parametrize("length", [37, 64])
def test_cpu_scan_matches_a_step_by_step_recurrence(length):
    gen = torch.Generator().manual_seed(length)
    bt, d, n = 2, 12, 5
    x, delta, z = (torch.randn(bt, length, d, generator=gen) for _ in range(3))
    B, C = (torch.randn(bt, length, n, generator=gen) for _ in range(2))
    A = -torch.rand(d, n, generator=gen) * 3 - 0.1
    D, bias = torch.randn(d, generator=gen), torch.randn(d, generator=gen) * 0.5
    assert scan_backend(x) == "mambapy"
    got = selective_scan(x, delta, A, B, C, D, z, bias)
    want = _naive_scan(*(t.double() for t in (x, delta, A, B, C, D, z, bias)))
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)


def test_ssm_block_has_mamba_ssm_parameter_names_and_shapes():
    ssm = SelectiveSSM(d_model=32, d_state=16, d_conv=4, expand=2)
    shapes = {k: tuple(v.shape) for k, v in ssm.state_dict().items()}
    # mamba_ssm.Mamba(d_model=32, d_state=16, d_conv=4, expand=2), no bias: the same keys and shapes.
    assert shapes == {
        "in_proj.weight": (128, 32),
        "conv1d.weight": (64, 1, 4),
        "conv1d.bias": (64,),
        "x_proj.weight": (2 + 32, 64),
        "dt_proj.weight": (64, 2),
        "dt_proj.bias": (64,),
        "A_log": (64, 16),
        "D": (64,),
        "out_proj.weight": (32, 64),
    }
    u = torch.randn(2, 9, 32)
    # The shifted multiply-add conv is the module's conv1d (causal: output t sees inputs <= t).
    x = torch.randn(2, 9, 64)
    reference = ssm.conv1d(x.transpose(1, 2))[..., :9].transpose(1, 2)
    torch.testing.assert_close(ssm._causal_conv(x), reference, atol=1e-6, rtol=1e-5)
    out = ssm(u)
    u2 = u.clone()
    u2[:, 5:] += 1.0
    torch.testing.assert_close(ssm(u2)[:, :5], out[:, :5])  # a causal scan: the future changes nothing before it


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")
def test_cuda_scan_matches_the_cpu_scan():
    pytest.importorskip("mamba_ssm", reason="the 'cuda' extra (mamba-ssm) is not installed")
    gen = torch.Generator().manual_seed(0)
    x, delta, z = (torch.randn(2, 50, 16, generator=gen) for _ in range(3))
    B, C = (torch.randn(2, 50, 8, generator=gen) for _ in range(2))
    A, D, bias = -torch.rand(16, 8, generator=gen), torch.ones(16), torch.zeros(16)
    cpu = selective_scan(x, delta, A, B, C, D, z, bias, backend="mambapy")
    cuda = selective_scan(*(t.cuda() for t in (x, delta, A, B, C, D, z, bias)), backend="mamba_ssm")
    torch.testing.assert_close(cuda.cpu(), cpu, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------ alignment pieces
def test_gradient_reversal_flips_the_numeric_gradient():
    x0 = torch.randn(6, dtype=torch.float64)
    w = torch.randn(6, dtype=torch.float64)

    def f(x):
        return (w * x.square() + torch.sin(x)).sum()

    # Central differences of f (no reversal layer involved).
    eps = 1e-6
    numeric = torch.stack([(f(x0 + eps * e) - f(x0 - eps * e)) / (2 * eps) for e in torch.eye(6, dtype=torch.float64)])
    x = x0.clone().requires_grad_(True)
    f(reverse_gradient(x, 0.5)).backward()
    torch.testing.assert_close(x.grad, -0.5 * numeric, atol=1e-6, rtol=1e-6)
    y = x0.clone().requires_grad_(True)
    assert torch.equal(reverse_gradient(y), y)  # identity forward


def test_mmd_is_zero_for_identical_sets_and_grows_with_a_mean_shift():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 16, 8, generator=gen, dtype=torch.float64)
    assert mmd2(x, x.clone()).abs().max() < 1e-12
    y = torch.randn(3, 16, 8, generator=gen, dtype=torch.float64)
    values = [mmd2(x, y + shift).mean().item() for shift in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert all(b > a for a, b in zip(values, values[1:])), values
    assert values[0] < 0.1 < values[-1]


def test_mmd_gradient_in_closed_form_equals_autograd_and_the_refiner_reduces_mmd():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 10, 6, generator=gen, dtype=torch.float64).requires_grad_(True)
    y = torch.randn(2, 12, 6, generator=gen, dtype=torch.float64) + 1.5
    bandwidths = (0.5, 1.0, 2.0)
    scale = torch.cdist(torch.cat([x, y], 1), torch.cat([x, y], 1)).square().mean((1, 2), keepdim=True).detach()
    (auto,) = torch.autograd.grad(mmd2(x, y, bandwidths, scale).sum(), x)
    torch.testing.assert_close(mmd2_grad(x.detach(), y, bandwidths, scale), auto)
    before = mmd2(x.detach(), y, bandwidths)
    moved, after = MMDRefiner(steps=3, step_size=0.5, bandwidths=bandwidths)(x.detach(), y)
    assert torch.all(after < before) and moved.shape == x.shape


# ------------------------------------------------------------------------ the model
def test_three_modality_paths_give_logits_and_neither_is_an_error(model):
    video, audio = _window(model)
    with torch.inference_mode():
        both, audio_only, video_only = model(video, audio), model(None, audio), model(video, None)
    for logits in (both, audio_only, video_only):
        assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    assert not torch.allclose(both, audio_only) and not torch.allclose(both, video_only)
    with pytest.raises(ValueError, match="needs video or audio"):
        model(None, None)
    with pytest.raises(ValueError, match="expects video shaped"):
        model(video[:, :8], audio)
    with pytest.raises(ValueError, match="expects audio shaped"):
        model(video, audio[:, :100])
    assert model.input_spec.uses_audio and model.input_spec.uses_video
    assert model.untrained and model.model_id == "bhgap-tiny+random-encoders"


def test_class_count_follows_the_class_set():
    with random_weight_warnings_off():
        mafw = build_model("bhgap-tiny-mafw").eval()
    video, audio = _window(mafw, batch=1)
    with torch.inference_mode():
        assert mafw(video, audio).shape == (1, 11) and len(mafw.class_names) == 11


def test_zero_gates_give_the_frozen_encoders_own_features(model):
    video, audio = _window(model)
    fbank = model.frontend(audio)
    with torch.inference_mode():
        visual, audio_tokens = model.encode(video, fbank)
        frozen_visual = model.visual.forward_features(video.flatten(0, 1)).view_as(visual)
        frozen_audio = model.audio.forward_features(fbank.unsqueeze(1))
    assert torch.equal(visual, frozen_visual) and torch.equal(audio_tokens, frozen_audio)
    # Open one gate: the prompts now reach the encoders (so the check above could fail).
    with torch.no_grad():
        model.audio_gates[0] = 0.5
    try:
        with torch.inference_mode():
            _, prompted = model.encode(video, fbank)
        assert not torch.allclose(prompted, frozen_audio)
    finally:
        with torch.no_grad():
            model.audio_gates.zero_()


@pytest.mark.parametrize("name", ["bhgap-tiny", "bhgap-tiny-tokens"])
def test_modality_dropout_trains_exactly_the_single_modality_paths(name):
    with random_weight_warnings_off():
        m = build_model(name, modality_dropout=1.0, dropout=0.0)
    with torch.no_grad():  # open the gates, so generated prompts matter and must be cut
        m.visual_gates.fill_(0.5)
        m.audio_gates.fill_(0.5)
    video, audio = _window(m, batch=6, seed=3)
    torch.manual_seed(0)
    m.train()
    with torch.no_grad():
        out = m.forward_with_aux(video, audio)
        m.eval()
        video_only, audio_only = m(video, None), m(None, audio)
    kinds = []
    for i in range(6):
        if torch.allclose(out.logits[i], video_only[i], atol=1e-5):
            kinds.append("video")
        elif torch.allclose(out.logits[i], audio_only[i], atol=1e-5):
            kinds.append("audio")
        else:
            raise AssertionError(f"clip {i}: training logits match neither single-modality path")
    assert set(kinds) == {"video", "audio"}, kinds
    # No clip kept both modalities: the alignment losses have nothing to align.
    assert all(float(v) == 0.0 for v in out.extras["aux_losses"].values())


def test_training_step_returns_weighted_aux_losses_and_leaves_encoders_frozen(model):
    with random_weight_warnings_off():
        m = build_model("bhgap-tiny", modality_dropout=0.0)
    video, audio = _window(m, batch=2)
    m.train()
    assert not m.visual.training and not m.audio.training
    out = m.forward_with_aux(video, audio)
    aux = out.extras["aux_losses"]
    assert set(aux) == {"adversarial", "mmd"} and all(v.dim() == 0 and torch.isfinite(v) for v in aux.values())
    assert aux["mmd"].item() > 0
    (torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 3])) + sum(aux.values())).backward()
    assert all(p.grad is None for p in [*m.visual.parameters(), *m.audio.parameters()])
    assert m.visual_gates.grad.abs().sum() > 0 and m.macro.critic[0].weight.grad.abs().sum() > 0
    # The ablation without alignment has no auxiliary losses.
    noalign = build_model("bhgap-tiny-noalign").eval()
    assert noalign.forward_with_aux(video, audio).extras["aux_losses"] == {}


def test_no_prompt_ablation_runs_the_frozen_encoders_alone():
    with random_weight_warnings_off():
        m = build_model("bhgap-tiny-noprompt").eval()
    assert m.generators is None
    assert not any(k.startswith(("generators", "visual_prompts", "visual_gates")) for k in m.trainable_state_dict())
    video, audio = _window(m, batch=1)
    with torch.inference_mode():
        assert m(video, audio).shape == (1, 7)


def test_registered_configs_and_config_errors():
    names = set(list_configs())
    assert {
        "bhgap-vitb16",
        "bhgap-vitb16-mafw",
        "bhgap-tiny",
        "bhgap-vitb16-noprompt",
        "bhgap-vitb16-noadv",
        "bhgap-vitb16-nommd",
        "bhgap-vitb16-noalign",
    } <= names
    base = resolve_config(get_config("bhgap-vitb16"))
    assert base["span_s"] == 2.0 and base["visual_encoder"] == "vit-b16" and base["class_set"] == "dfew"
    with pytest.raises(KeyError, match="'bhgap-tiny': unknown keys \\['colour'\\]"):
        build_model("bhgap-tiny", colour="red")
    with pytest.raises(ValueError, match="prompting='shallow'"):
        build_model("bhgap-tiny", prompting="shallow")
    with pytest.raises(ValueError, match="same depth"):
        build_model(
            "bhgap-tiny",
            audio_encoder={"patch_size": 16, "embed_dim": 32, "depth": 1, "num_heads": 2, "mlp_ratio": 2.0},
        )


# ------------------------------------------------------------------------ weights and checkpoints
def test_encoder_weight_files_load_and_are_checked(tmp_path):
    from safetensors.torch import save_file

    from duse_ros.models.vit_encoders import build_encoder

    with random_weight_warnings_off():
        torch.manual_seed(123)
        visual = build_encoder("vit-tiny", (112, 112), 3)
        # A MAE pre-training checkpoint also carries its decoder: ignored.
        state = {**visual.state_dict(), "decoder_embed.weight": torch.zeros(4, 4), "mask_token": torch.zeros(1, 1, 192)}
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "visual.safetensors"))
        audio = build_encoder("vit-tiny", (1024, 128), 1)  # AudioMAE's 10 s grid: 64 x 8 patches
        torch.save({"model": audio.state_dict()}, tmp_path / "audio.pth")

        m = build_model("bhgap-tiny", visual_weights=str(tmp_path / "visual.safetensors")).eval()
        assert m.model_id == "bhgap-tiny+random-audio" and m.untrained
        x = torch.randn(2, 3, 112, 112)
        torch.testing.assert_close(m.visual.forward_features(x), visual.forward_features(x))
        both = build_model(
            "bhgap-tiny", visual_weights=str(tmp_path / "visual.safetensors"), audio_weights=str(tmp_path / "audio.pth")
        )
        assert both.model_id == "bhgap-tiny" and both.random_visual is False and both.random_audio is False
        assert both.audio.pos_embed.shape == (1, 1 + 13 * 8, 192)  # resampled to the 2 s grid
        torch.testing.assert_close(both.audio.blocks[1].mlp.fc1.weight, audio.blocks[1].mlp.fc1.weight)

        with pytest.raises(FileNotFoundError, match="audio_weights"):
            build_model("bhgap-tiny", audio_weights=str(tmp_path / "nothing.pth"))
        with pytest.raises(ValueError, match="visual.safetensors.*patch_embed.proj.weight"):
            build_model("bhgap-tiny", audio_weights=str(tmp_path / "visual.safetensors"))  # 3-channel patches


def test_checkpoint_round_trip(model, tmp_path):
    with random_weight_warnings_off():
        trained = build_model("bhgap-tiny", seed=5).eval()
        with torch.no_grad():
            trained.visual_gates.fill_(0.3)
            trained.audio_gates.fill_(-0.2)
        path = save_checkpoint(trained, tmp_path / "bhgap.json")
        restored = load_checkpoint(path).eval()
    keys = set(trained.trainable_state_dict())
    assert keys and not any(k.startswith(("visual.", "audio.")) for k in keys), "frozen encoders stay out"
    video, audio = _window(trained, batch=1)
    with torch.inference_mode():
        torch.testing.assert_close(restored(video, audio), trained(video, audio))
    assert restored.checkpoint == str(path) and restored.untrained  # encoders are still random


# ------------------------------------------------------------------------ prompt modes, generator width, audio span
@pytest.fixture(scope="module")
def tokens_model():
    with random_weight_warnings_off():
        return build_model("bhgap-tiny-tokens").eval()


def test_token_prompts_are_appended_before_each_block_and_dropped_after(tokens_model):
    m = tokens_model
    n, depth = 2, len(m.visual.blocks)
    assert m.visual_prompts.shape == (depth, n, m.visual.embed_dim) and m.audio_prompts.shape[:2] == (depth, n)
    seen = {"visual": [], "audio": []}
    hooks = [
        block.register_forward_pre_hook(lambda mod, args, kind=kind: seen[kind].append(args[0].shape[1]))
        for kind in ("visual", "audio")
        for block in getattr(m, kind).blocks
    ]
    video, audio = _window(m)
    fbank = m.frontend(audio)
    try:
        with torch.inference_mode():
            visual, audio_tokens = m.encode(video, fbank)
    finally:
        for hook in hooks:
            hook.remove()
    plain_visual = 1 + m.visual.patch_embed.num_patches
    plain_audio = 1 + m.audio.patch_embed.num_patches
    assert seen == {"visual": [plain_visual + n] * depth, "audio": [plain_audio + n] * depth}
    assert visual.shape[2] == plain_visual and audio_tokens.shape[1] == plain_audio  # prompts dropped
    with torch.inference_mode():  # appended tokens take part in attention: not the frozen encoder, even at zero gates
        frozen_audio = m.audio.forward_features(fbank.unsqueeze(1))
    assert not torch.allclose(audio_tokens, frozen_audio, atol=1e-4)


def test_token_mode_zero_gates_keep_the_other_modality_out(tokens_model):
    m = tokens_model
    video, audio = _window(m)
    other_audio = _window(m, seed=9)[1]
    with torch.inference_mode():
        visual, _ = m.encode(video, m.frontend(audio))
        visual_other, _ = m.encode(video, m.frontend(other_audio))
    assert torch.equal(visual, visual_other), "a zero gate: the visual tokens do not depend on the audio"
    with torch.no_grad():
        m.visual_gates[1] = 0.5
    try:
        with torch.inference_mode():
            opened, _ = m.encode(video, m.frontend(audio))
            opened_other, _ = m.encode(video, m.frontend(other_audio))
        assert not torch.allclose(opened, opened_other), "an open gate lets the generated prompts in"
    finally:
        with torch.no_grad():
            m.visual_gates.zero_()


def test_prompt_mode_and_generator_width_are_config_with_ablations():
    tokens, wide = get_config("bhgap-vitb16-tokens"), get_config("bhgap-vitb16-gen768")
    base = get_config("bhgap-vitb16")
    assert {k for k in tokens if tokens[k] != base[k]} == {"name", "prompt_mode"} and tokens["prompt_mode"] == "tokens"
    assert {k for k in wide if wide[k] != base[k]} == {"name", "generator_dim"} and wide["generator_dim"] == 768
    assert base["prompt_mode"] == "additive" and base["generator_dim"] == 256
    with torch.device("meta"):
        m = build_model("bhgap-vitb16-gen768")
        assert m.generators[0].ssm.in_proj.in_features == 768 and m.generators[0].visual_in[1].out_features == 768
    with pytest.raises(ValueError, match="prompt_mode='prefix'"):
        build_model("bhgap-tiny", prompt_mode="prefix")
    old = {k: v for k, v in get_config("bhgap-tiny").items() if k not in ("prompt_mode", "prompt_tokens", "audio_s")}
    assert resolve_config(old) == resolve_config(get_config("bhgap-tiny"))  # checkpoints from before keep their form


def test_audio_s_sets_the_audio_length_apart_from_the_frame_span():
    with random_weight_warnings_off():
        ref = build_model("bhgap-tiny", audio_s=5.12, span_s=3.0)
        plain = build_model("bhgap-tiny", span_s=3.0)
    assert ref.frontend.num_frames == num_frames(FbankConfig(span_s=5.12, frame_multiple=16)) == 512
    assert plain.frontend.num_frames == num_frames(FbankConfig(span_s=3.0, frame_multiple=16))
    assert ref.audio.patch_embed.num_patches == 512 // 16 * 8
    assert get_config("bhgap-vitb16-ref")["audio_s"] == 5.12
    # The spec tells the windower how much audio to cut: what the front end was sized for (audio_s,
    # else the model's span_s), so a node running another span_s still hands it the right length.
    assert ref.input_spec.audio_s == 5.12 and plain.input_spec.audio_s == 3.0
