"""DuSE against the paper, one test per fix (each fails on the behaviour it replaced):
LSEA's plain dot-product similarity, per-tower prompt depth, an MLP whose prompts are not zeroed
at init, a frame encoding at token scale that passes ln_pre, and the ablations on ViT-L/14."""

import logging

import pytest
import torch

from duse_ros.models import build_model, get_config
from duse_ros.models.duse import resolve_config
from duse_ros.models.lsea import LSEA, PAPER_FORM

logging.getLogger().setLevel(logging.ERROR)


def test_lsea_similarity_is_the_plain_dot_product_of_eq_12():
    torch.manual_seed(0)
    lsea = LSEA(dim=16, n_heads=2, beta=0.7)
    with torch.no_grad():
        for p in lsea.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    frames, text = torch.randn(3, 5, 16), torch.randn(7, 16)
    with torch.no_grad():
        v = lsea.video_heads(lsea.pool(frames)).view(3, 2, 16)  # V_h (B, N, D)
        f = lsea.text_heads(text).view(7, 2, 16).transpose(0, 1)  # F_h (N, C, D)
        weights = torch.einsum("bnd,ncd->bnc", v, f).softmax(dim=-1)  # softmax(V_h . F_h), no 1/sqrt(D)
        t_o = torch.einsum("bnc,ncd->bnd", weights, f)
        expected = (0.7 * v + 0.3 * t_o).mean(dim=1)
        assert torch.allclose(lsea(frames, text), expected, atol=1e-5)


def test_prompt_depth_is_derived_per_tower():
    with torch.device("meta"):
        model = build_model("duse-vitl14-normal")  # 12 text layers, 24 image layers
    assert model.prompts.depth == 4  # a third of the text tower
    assert model.prompts.vision_depth == 8  # and a third of the image tower, not 4 of 24
    assert len(model.prompts.visual_prompts()) == 8


def test_visual_prompts_are_not_zeroed_at_initialisation():
    model = build_model("duse-tiny")  # untouched initial weights
    with torch.no_grad():
        visual = torch.cat(
            [p.reshape(-1) for p in model.prompts.visual_prompts()[1:]]
            + [model.prompts.mlp(model.prompts.text).reshape(-1)]
        )
    assert (visual == 0).float().mean() == 0, "a final ReLU zeroes about half of the visual prompts"


def test_frame_encoding_is_at_token_scale_and_passes_ln_pre():
    model = build_model("duse-tiny")
    visual = model.clip.visual
    token_norm = visual.positional_embedding.detach().norm(dim=-1).mean()
    encoding_norm = model.prompts.frame_encoding.norm(dim=-1).mean()
    assert torch.isclose(encoding_norm, token_norm, rtol=1e-4), (encoding_norm, token_norm)
    first_layer_inputs = []
    hook = visual.transformer.resblocks[0].register_forward_pre_hook(
        lambda m, args: first_layer_inputs.append(args[0].detach())
    )
    with torch.no_grad():
        model(torch.randn(1, 16, 3, 32, 32))
        expected = visual.ln_pre(model.prompts.visual_prompts()[0])  # (T, n, width)
    hook.remove()
    prompts = first_layer_inputs[0][:, -4:]  # (T, n, width) for the one clip
    assert torch.allclose(prompts, expected, atol=1e-5)


def test_ablations_are_registered_on_vit_l14_like_the_paper():
    for name, prompt, aggregator in (
        ("duse-vitl14-coop", "coop", "lsea"),
        ("duse-vitl14-avgpool", "htpc", "avgpool"),
        ("duse-vitl14-coop-avgpool", "coop", "avgpool"),
    ):
        config = get_config(name)
        assert (config["backbone"], config["prompt"], config["aggregator"]) == ("ViT-L-14", prompt, aggregator)
        with torch.device("meta"):
            model = build_model(name)
        assert (model.prompts.mlp is None) == (prompt == "coop")
        assert (model.lsea is None) == (aggregator == "avgpool")


def _perturbed(lsea: LSEA) -> LSEA:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in lsea.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return lsea


def test_lsea_cosine_similarity_is_the_softmax_of_cosines():
    lsea = _perturbed(LSEA(dim=16, n_heads=2, beta=0.6, similarity="cosine"))
    frames, text = torch.randn(3, 5, 16), torch.randn(7, 16) * 10  # scale must not matter to a cosine
    with torch.no_grad():
        v = lsea.video_heads(lsea.pool(frames)).view(3, 2, 16)
        f = lsea.text_heads(text).view(7, 2, 16).transpose(0, 1)
        cos = torch.nn.functional.cosine_similarity(v[:, :, None], f[None], dim=-1)  # (B, N, C)
        expected = (0.6 * v + 0.4 * torch.einsum("bnc,ncd->bnd", cos.softmax(dim=-1), f)).mean(dim=1)
        assert torch.allclose(lsea(frames, text), expected, atol=1e-5)
        dot = LSEA(dim=16, n_heads=2, beta=0.6, similarity="dot")
        dot.load_state_dict(lsea.state_dict())
        assert not torch.allclose(lsea(frames, text), dot(frames, text), atol=1e-3)


def test_lsea_paper_form_has_no_norm_and_no_residual():
    lsea = _perturbed(LSEA(dim=16, n_heads=2, **PAPER_FORM))
    assert lsea.norm is None and not any("norm" in n for n, _ in lsea.named_parameters())
    frames = torch.randn(3, 5, 16)
    with torch.no_grad():
        x = lsea.linear(lsea.temporal_attn(frames, frames, frames, need_weights=False)[0])  # attention alone
        expected = (lsea.score(x).softmax(dim=1) * x).sum(dim=1)
        assert torch.allclose(lsea.pool(frames), expected, atol=1e-5)
    ours = LSEA(dim=16, n_heads=2)
    assert ours.norm is not None and ours.residual
    with torch.no_grad():  # ours: LayerNorm first, the frames added back
        h = ours.norm(frames)
        x = ours.linear(frames + ours.temporal_attn(h, h, h, need_weights=False)[0])
        assert torch.allclose(ours.pool(frames), (ours.score(x).softmax(dim=1) * x).sum(dim=1), atol=1e-5)
    with pytest.raises(ValueError, match="similarity 'euclid'"):
        LSEA(dim=16, similarity="euclid")


def test_lsea_switches_are_config_keys_and_old_configs_keep_their_form():
    paper = build_model("duse-tiny-lsea-paper")
    assert (paper.lsea.similarity, paper.lsea.norm, paper.lsea.residual) == ("dot", None, False)
    assert build_model("duse-tiny-lsea-cosine").lsea.similarity == "cosine"
    config = build_model("duse-tiny").config()
    assert (config["lsea_similarity"], config["lsea_norm"], config["lsea_residual"]) == ("dot", True, True)
    old = {k: v for k, v in config.items() if not k.startswith("lsea_")}  # a checkpoint from before the switches
    assert resolve_config(old) == resolve_config(config)
    with pytest.raises(ValueError, match="lsea_norm='yes', expected true or false"):
        build_model("duse-tiny", lsea_norm="yes")


def test_table_v_sweeps_and_the_token_count_are_named_configs():
    normal = get_config("duse-vitl14-normal")
    expected = {
        "heads2": {"n_heads": 2},
        "heads6": {"n_heads": 6},
        "beta0.3": {"beta": 0.3},
        "beta0.5": {"beta": 0.5},
        "beta0.9": {"beta": 0.9},
        "tokens2": {"n_prompts": 2},
        "tokens8": {"n_prompts": 8},
        "tokens16": {"n_prompts": 16},
        "lsea-paper": {"lsea_norm": False, "lsea_residual": False},  # and Eq. 12's dot product, the default
        "lsea-cosine": {"lsea_similarity": "cosine"},
    }
    for suffix, change in expected.items():
        config = get_config(f"duse-vitl14-{suffix}")
        differs = {k: v for k, v in config.items() if k != "name" and normal.get(k) != v}
        assert differs == change, suffix  # one change from the Normal model, nothing else
        assert get_config(f"duse-vitb16-{suffix}")["backbone"] == "ViT-B-16"
    assert get_config("duse-vitl14-lsea-paper")["lsea_similarity"] == "dot"
    with torch.device("meta"):
        assert build_model("duse-vitl14-heads6").lsea.n_heads == 6
        assert build_model("duse-vitl14-tokens16").prompts.text.shape[1] == 16
