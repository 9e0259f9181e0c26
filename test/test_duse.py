"""DuSE on the tiny random CLIP (open_clip_configs/DuSE-Tiny.json: 8 image layers of width 96,
6 text layers of width 64, 32x32 images): every path, the prompting, the caching, checkpoints."""

import json
import logging
import time
import warnings

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from duse_ros.checkpoint import CheckpointError, save_checkpoint
from duse_ros.loading import load_model
from duse_ros.models import build_model, get_config
from duse_ros.models.clip_backbone import create_frozen_clip, encode_text_prompted
from duse_ros.models.duse import DuSE
from duse_ros.models.htpc import prompt_depth

logging.getLogger().setLevel(logging.ERROR)  # random-init warnings from open_clip and DuSE

TINY_PATHS = ["duse-tiny", "duse-tiny-shallow", "duse-tiny-deep", "duse-tiny-coop", "duse-tiny-avgpool"]
T, S, N_PROMPTS = 16, 32, 4


def video(batch=2, seed=0):
    return torch.randn(batch, T, 3, S, S, generator=torch.Generator().manual_seed(seed))


def perturb_trainables(model, seed=1):
    """Move the trainable weights off their initialisation, so tests see real values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return model


@pytest.mark.parametrize("name", TINY_PATHS)
def test_logits_shape_through_every_path(name):
    model = build_model(name)
    assert isinstance(model, DuSE)
    assert model.class_names == ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]
    spec = model.input_spec
    assert (spec.num_frames, spec.image_size, spec.uses_video, spec.uses_audio) == (16, 32, True, False)
    logits = model(video())  # train mode
    assert logits.shape == (2, 7) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    model.eval()
    with torch.inference_mode():
        assert model(video(batch=3)).shape == (3, 7)


def test_mafw_class_set_and_bad_inputs():
    model = build_model("duse-tiny", class_set="mafw")
    assert len(model.class_names) == 11 and model(video(1)).shape == (1, 11)
    with pytest.raises(ValueError, match=r"expects video shaped \(B, 16, 3, 32, 32\)"):
        model(torch.zeros(1, 8, 3, 32, 32))
    with pytest.raises(ValueError, match="takes no audio"):
        model(video(1), audio=torch.zeros(1, 16000))
    with pytest.raises(KeyError, match="unknown keys .'strategie'."):
        build_model("duse-tiny", strategie="deep")
    with pytest.raises(ValueError, match="strategy='deeper'"):
        build_model("duse-tiny", strategy="deeper")


def test_backbones_other_than_a_plain_vit_clip_are_refused():
    with pytest.raises(KeyError, match="no model config named 'ViT-X-99'"):
        build_model("duse-tiny", backbone="ViT-X-99")
    for backbone in ("RN50", "ViT-B-16-SigLIP"):  # ResNet image tower; timm + Hugging Face towers
        with pytest.raises(ValueError, match="not a plain ViT CLIP"):
            build_model("duse-tiny", backbone=backbone)


def test_config_rebuilds_the_same_model():
    model = build_model("duse-tiny-deep", n_prompts=3, beta=0.5)
    config = model.config()
    json.dumps(config)
    assert config["name"] == "duse-tiny-deep" and config["image_size"] == 32 and config["n_prompts"] == 3
    again = build_model(config)
    assert again.config() == config
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("strategy, depth, vision_depth", [("shallow", 1, 1), ("normal", 2, 3), ("deep", 4, 5)])
def test_strategy_prompts_the_right_layers_of_both_towers(strategy, depth, vision_depth):
    model = build_model("duse-tiny", strategy=strategy)
    assert model.prompts.text.shape == (depth, N_PROMPTS, 64)
    vision_lengths, text_inputs = [], []
    hooks = [
        b.register_forward_pre_hook(lambda m, args: vision_lengths.append(args[0].shape[1]))
        for b in model.clip.visual.transformer.resblocks
    ]
    hooks += [
        b.register_forward_pre_hook(lambda m, args: text_inputs.append(args[0].detach()))
        for b in model.clip.transformer.resblocks
    ]
    outputs = []
    hooks += [
        b.register_forward_hook(lambda m, args, out: outputs.append(out.detach()))
        for b in model.clip.transformer.resblocks
    ]
    with torch.no_grad():
        model(video(1))
    for h in hooks:
        h.remove()
    # Image tower: 1 class token + 16 patches, plus n prompt tokens at the first `vision_depth` of its
    # 8 layers only: the same fraction of its layers as of the text tower's 6.
    assert vision_lengths == [17 + N_PROMPTS] * vision_depth + [17] * (8 - vision_depth)
    # Text tower: before layer j < depth the slots hold P_j (layer 0: P_0 + positional embedding),
    # discarding what layer j - 1 wrote; later layers read the previous layer's output unchanged.
    slots = slice(1, 1 + N_PROMPTS)
    P = model.prompts.text.detach()
    assert torch.allclose(text_inputs[0][:, slots], P[0] + model.clip.positional_embedding[slots].detach())
    for j in range(1, 6):
        rest_equal = torch.equal(text_inputs[j][:, 1 + N_PROMPTS :], outputs[j - 1][:, 1 + N_PROMPTS :])
        assert rest_equal
        if j < depth:
            assert torch.equal(text_inputs[j][:, slots], P[j].expand_as(text_inputs[j][:, slots]))
        else:
            assert torch.equal(text_inputs[j], outputs[j - 1])


def test_prompt_depth_of_the_named_backbones():
    for layers, expected in ((12, (1, 4, 8)), (6, (1, 2, 4))):
        assert tuple(prompt_depth(s, layers) for s in ("shallow", "normal", "deep")) == expected
    with torch.device("meta"):
        model = build_model("duse-vitl14-deep")  # 12 text layers of width 768, 24 image layers of 1024
    assert model.prompts.text.shape == (8, 4, 768)
    assert model.prompts.mlp[-1].weight.shape == (1024, 768)


def test_one_mlp_makes_the_visual_prompts_of_every_layer():
    model = perturb_trainables(build_model("duse-tiny-deep"))  # 4 text layers prompted, 5 of 8 image layers
    mlp = model.prompts.mlp
    assert [type(m) for m in mlp] == [torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear]
    assert (mlp[0].in_features, mlp[-1].out_features) == (64, 96)
    with torch.no_grad():
        visual = model.prompts.visual_prompts()
        expected = mlp[2](F.relu(mlp[0](model.prompts.text)))  # (M_T, n, 96)
    # Image layer i takes the text prompts of the text layer at the same relative depth.
    source = [i * 4 // 5 for i in range(5)]
    assert source == [0, 0, 1, 2, 3]
    assert len(visual) == 5 and visual[0].shape == (T, N_PROMPTS, 96)
    assert torch.allclose(visual[0], expected[0] + model.prompts.frame_encoding[:, None])
    for i in range(1, 5):
        assert torch.allclose(visual[i], expected[source[i]])
    # The tokens appended at each image layer are those prompts (the first layer's after ln_pre).
    appended = []
    hooks = [
        b.register_forward_pre_hook(lambda m, args: appended.append(args[0][:, -N_PROMPTS:].detach()))
        for b in model.clip.visual.transformer.resblocks[:5]
    ]
    with torch.no_grad():
        model(video(2))
        first = model.clip.visual.ln_pre(visual[0])
    for h in hooks:
        h.remove()
    assert torch.allclose(appended[0], first.repeat(2, 1, 1), atol=1e-5)  # frame t of each clip gets prompt t
    for i in range(1, 5):
        assert torch.allclose(appended[i], visual[i].expand_as(appended[i]))


def test_frame_position_encodings_differ_per_frame():
    model = build_model("duse-tiny")
    with torch.no_grad():
        first = model.prompts.visual_prompts()[0]  # (T, n, 96)
    flat = first.flatten(1)
    distances = torch.cdist(flat, flat) + torch.eye(T)
    assert (distances > 1e-3).all(), "two frames share first-layer prompts"
    # The same encoding for all n tokens of a frame: the frame-to-frame change is the encoding's.
    pe = model.prompts.frame_encoding
    assert torch.allclose(first[3] - first[5], (pe[3] - pe[5]).expand(N_PROMPTS, -1), atol=1e-6)


def test_unprompted_frames_equal_open_clip_encode_image():
    model = build_model("duse-tiny")
    clip = model.clip
    clips = video(2)
    with torch.no_grad():
        frames = model.encode_frames(clips)  # no visual prompts, LSEA bypassed
        reference = clip.encode_image(clips.flatten(0, 1)).view(2, T, -1)
        assert torch.allclose(frames, reference, atol=1e-5)
        text = encode_text_prompted(clip, model.token_ids)  # no text prompts
        assert torch.allclose(text, clip.encode_text(model.token_ids), atol=1e-5)
    assert not torch.allclose(frames, model.encode_frames(clips, model.prompts.visual_prompts()).detach(), atol=1e-3)


@pytest.mark.parametrize(
    "name, groups",
    [
        ("duse-tiny", {"prompts.text", "prompts.mlp", "lsea"}),
        ("duse-tiny-coop", {"prompts.text", "lsea"}),
        ("duse-tiny-avgpool", {"prompts.text", "prompts.mlp"}),
    ],
)
def test_only_prompts_mlp_and_lsea_get_gradients(name, groups):
    model = build_model(name)
    loss = F.cross_entropy(model(video(2)), torch.tensor([0, 3]))
    loss.backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {".".join(n.split(".")[:2]) if n.startswith("prompts") else n.split(".")[0] for n in trainable} == groups
    assert set(model.trainable_state_dict()) == trainable
    for n, p in model.named_parameters():
        if n.startswith("clip."):
            assert not p.requires_grad and p.grad is None, n
        else:
            assert p.grad is not None, n
    assert model.prompts.text.grad.abs().sum() > 0


def test_eval_caches_text_features_and_visual_prompts(monkeypatch):
    model = perturb_trainables(build_model("duse-tiny")).eval()
    calls = []
    compute = model.compute_prompt_state
    monkeypatch.setattr(model, "compute_prompt_state", lambda: calls.append(1) or compute())
    clips = video(2)
    with torch.inference_mode():
        first = model(clips)
        second = model(clips)
    assert len(calls) == 1 and torch.equal(first, second)
    cached_text, cached_visual = model._cache[1]
    with torch.no_grad():
        fresh_text, fresh_visual = compute()
    assert torch.allclose(cached_text, fresh_text, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(cached_visual, fresh_visual))

    # Weights that change in place, by load_state_dict or by an optimiser, are seen.
    state = {k: v + 0.05 for k, v in model.trainable_state_dict().items()}
    model.load_state_dict(state, strict=False)
    with torch.inference_mode():
        after_load = model(clips)
    assert len(calls) == 2 and not torch.allclose(after_load, first)
    model.train()
    assert model._cache is None and not model.clip.training
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    F.cross_entropy(model(clips), torch.tensor([1, 2])).backward()
    optimizer.step()
    model.eval()
    with torch.inference_mode():
        after_step = model(clips)
        again = model(clips)
    with torch.no_grad():
        fresh_text, _ = compute()
    assert torch.equal(after_step, again) and torch.allclose(model._cache[1][0], fresh_text, atol=1e-6)
    n_calls = len(calls)
    with torch.no_grad():
        model.prompts.text.mul_(2.0)
        model(clips)
    assert len(calls) == n_calls + 1
    # With gradients recorded nothing is cached (the prompts must get their gradients).
    model(clips)
    assert len(calls) == n_calls + 2


def test_autocast_is_safe_and_keyed():
    model = build_model("duse-tiny").eval()
    clips = video(2)
    with torch.inference_mode():
        reference = model(clips)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(clips)
            assert model._cache[1][0].dtype == torch.bfloat16
        again = model(clips)
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert torch.allclose(low, reference, atol=0.5)
    assert model._cache[1][0].dtype == torch.float32 and torch.equal(again, reference)


def test_checkpoint_round_trips_bit_exactly(tmp_path):
    model = perturb_trainables(build_model("duse-tiny")).eval()
    path = save_checkpoint(model, tmp_path / "duse_tiny.json", extra={"uar": 0.5})
    saved = json.loads(path.read_text())
    assert saved["arch"] == "duse" and saved["clip_weights"] == "" and saved["training"] == {"uar": 0.5}
    assert set(load_file(str(tmp_path / "duse_tiny.safetensors"))) == set(model.trainable_state_dict())
    loaded = load_model(str(path)).eval()
    assert loaded.checkpoint == str(path) and loaded.untrained  # the CLIP is still random
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    with torch.inference_mode():
        assert torch.equal(model(video(2)), loaded(video(2)))


def test_wrong_checkpoints_fail_naming_the_mismatch(tmp_path):
    model = build_model("duse-tiny")
    path = save_checkpoint(model, tmp_path / "m.json")
    # The weights are edited by hand below: without the recorded hash the key and shape checks speak.
    path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "weights_sha256"}))
    weights = tmp_path / "m.safetensors"
    tensors = load_file(str(weights))

    save_file({k: v for k, v in tensors.items() if k != "lsea.score.weight"}, str(weights))
    with pytest.raises(CheckpointError, match=r"missing keys \['lsea.score.weight'\]"):
        load_model(str(path))
    save_file(tensors, str(weights))

    config = json.loads(path.read_text())
    (tmp_path / "shape.json").write_text(json.dumps({**config, "n_prompts": 2, "weights": "m.safetensors"}))
    with pytest.raises(CheckpointError, match=r"'prompts.text' has shape \(2, 4, 64\).*expects \(2, 2, 64\)"):
        load_model(str(tmp_path / "shape.json"))
    (tmp_path / "deep.json").write_text(json.dumps({**config, "strategy": "deep"}))
    with pytest.raises(CheckpointError, match=r"'prompts.text' has shape \(2, 4, 64\).*expects \(4, 4, 64\)"):
        load_model(str(tmp_path / "deep.json"))
    (tmp_path / "avg.json").write_text(json.dumps({**config, "aggregator": "avgpool"}))
    with pytest.raises(CheckpointError, match=r"unexpected keys \['lsea"):
        load_model(str(tmp_path / "avg.json"))
    (tmp_path / "arch.json").write_text(json.dumps({**get_config("tiny-random-video"), "weights": "m.safetensors"}))
    with pytest.raises(CheckpointError, match=r"does not match model 'tiny-random-video'.*missing keys \['head.bias'"):
        load_model(str(tmp_path / "arch.json"))
    (tmp_path / "noarch.json").write_text(json.dumps({**config, "arch": "dusse"}))
    with pytest.raises(KeyError, match="unknown arch 'dusse'"):
        load_model(str(tmp_path / "noarch.json"))


@pytest.mark.slow  # compiles a CLIP with TorchScript
def test_clip_weights_load_from_a_local_file(tmp_path):
    source = create_frozen_clip("DuSE-Tiny")
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.01)
    torch.save(source.state_dict(), tmp_path / "tiny.pt")
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "tiny.safetensors"))
    # OpenAI's own CLIP files are TorchScript archives whose state dict has no attn_mask.
    mask = source._buffers.pop("attn_mask")
    object.__setattr__(source, "attn_mask", mask)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script is deprecated
        torch.jit.script(source).save(str(tmp_path / "tiny_jit.pt"))
    for file in ("tiny.pt", "tiny.safetensors", "tiny_jit.pt"):
        model = build_model("duse-tiny", clip_weights=str(tmp_path / file))
        assert model.model_id == "duse-tiny" and not model.random_backbone
        for k, v in source.state_dict().items():
            assert torch.equal(model.clip.state_dict()[k], v), (file, k)
        assert model.config()["clip_weights"] == str(tmp_path / file)

    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        build_model("duse-tiny", clip_weights=str(tmp_path / "nowhere.pt"))
    partial = {k: v for k, v in torch.load(tmp_path / "tiny.pt").items() if k != "ln_final.weight"}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"(?s)partial.pt.*DuSE-Tiny.*ln_final.weight"):
        build_model("duse-tiny", clip_weights=str(tmp_path / "partial.pt"))


def test_random_clip_is_flagged_untrained():
    model = build_model("duse-tiny")
    assert model.untrained and model.random_backbone and model.model_id == "duse-tiny+random-clip"
    model.untrained = False  # what loading a checkpoint does: the CLIP is still random
    assert model.untrained


def test_runs_in_the_inference_engine():
    from duse_ros.affect.engine import InferenceEngine, Job

    model = perturb_trainables(build_model("duse-tiny"))
    clips = video(3)
    with torch.inference_mode():
        expected = model.eval()(clips).softmax(dim=-1)
    results = []
    engine = InferenceEngine(model, device="cpu", queue_depth=4, max_batch=4, on_result=results.append)
    engine.start(warmup=Job(key=-1, video=clips[0], audio=None))
    for i in range(3):
        engine.submit(Job(key=i, video=clips[i], audio=None))
    deadline = time.monotonic() + 30
    while len(results) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    engine.stop()
    assert [r.job.key for r in results] == [0, 1, 2] and all(r.error is None for r in results)
    for r in results:
        assert torch.allclose(torch.from_numpy(r.probabilities), expected[r.job.key], atol=1e-5)
