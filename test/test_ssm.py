"""The selective scan's CUDA branch, run on CPU: a stand-in for mamba_ssm's `selective_scan_fn`
checks every argument against the CUDA kernel's contract and then computes the real scan (the
PyTorch one, in fp32), so the call site's dtypes, layouts and numbers are all tested here.

The contract, from mamba-ssm's csrc/selective_scan/selective_scan.cpp (`selective_scan_fwd`) and
mamba_ssm/ops/selective_scan_interface.py (`SelectiveScanFn.forward`): u (batch, dim, L) in an
input dtype of fp32, fp16 or bf16; delta and z the same shape and dtype; A (dim, N) fp32; B and
C variable per step, (batch, N, L) or (batch, groups, N, L), in the input dtype; D and
delta_bias (dim,) fp32; each with a unit last stride. The output has z's dtype. Only the
kernel's `is_cuda` checks are left out.
"""

from __future__ import annotations

import logging
import sys
import types

import pytest
import torch
from quiet import random_weight_warnings_off

from duse_ros.models import build_model, ssm
from duse_ros.models.ssm import SelectiveSSM, scan_backend, selective_scan

INPUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class ContractError(RuntimeError):
    pass


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise ContractError(f"Expected {what}")


def contract_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False):
    """mamba_ssm's selective_scan_fn with the kernel's checks, computing the scan in fp32."""
    input_type = u.dtype
    _check(input_type in INPUT_DTYPES, f"u in fp32/fp16/bf16, got {input_type}")
    _check(A.dtype == torch.float32, f"A.scalar_type() == float, got {A.dtype}")
    _check(delta.dtype == input_type, f"delta.scalar_type() == input_type ({delta.dtype} vs {input_type})")
    batch, dim, length = u.shape
    state = A.shape[1]
    _check(
        tuple(delta.shape) == (batch, dim, length), f"delta of shape {(batch, dim, length)}, got {tuple(delta.shape)}"
    )
    _check(tuple(A.shape) == (dim, state), f"A of shape {(dim, state)}")
    for name, t in (("B", B), ("C", C)):
        _check(t.dim() in (3, 4), f"{name} variable per step (3 or 4 dims), got {t.dim()}")
        _check(t.dtype == input_type, f"{name}.scalar_type() == input_type ({t.dtype} vs {input_type})")
        grouped = t if t.dim() == 4 else t.unsqueeze(1)
        _check(
            tuple(grouped.shape) == (batch, 1, state, length),
            f"{name} of shape {(batch, state, length)}, got {tuple(t.shape)}",
        )
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        _check(t is not None, f"{name} given (our block always has one)")
        _check(t.dtype == torch.float32, f"{name}.scalar_type() == float, got {t.dtype}")
        _check(tuple(t.shape) == (dim,), f"{name} of shape ({dim},)")
    _check(z is not None and z.dtype == input_type, f"z.scalar_type() == input_type ({getattr(z, 'dtype', None)})")
    _check(tuple(z.shape) == (batch, dim, length), f"z of shape {(batch, dim, length)}")
    for name, t in (("u", u), ("delta", delta), ("B", B), ("C", C), ("z", z), ("D", D), ("delta_bias", delta_bias)):
        _check(t.stride(-1) == 1 or t.size(-1) == 1, f"{name}.stride(-1) == 1")
    _check(delta_softplus and not return_last_state, "delta_softplus=True, return_last_state=False (our only use)")
    y = selective_scan(
        *(t.transpose(1, 2) for t in (u, delta)),
        A,
        *(t.reshape(batch, state, length).transpose(1, 2) for t in (B, C)),
        D,
        z.transpose(1, 2),
        delta_bias,
        backend="mambapy",
    )
    return y.transpose(1, 2).to(z.dtype).contiguous()


@pytest.fixture
def cuda_branch(monkeypatch):
    """Route every scan through the mamba_ssm branch of `selective_scan`, into `contract_scan`.
    Yields the list of input dtypes the stand-in was called with."""
    calls: list[torch.dtype] = []

    def standin(u, *args, **kwargs):
        calls.append(u.dtype)
        return contract_scan(u, *args, **kwargs)

    monkeypatch.setattr(ssm, "_cuda_scan", lambda: standin)
    monkeypatch.setattr(ssm, "scan_backend", lambda x: "mamba_ssm")
    return calls


def _autocast(dtype: torch.dtype):
    return torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32)


def _scan_inputs(seed: int = 0, batch: int = 2, length: int = 12, dim: int = 8, state: int = 4):
    gen = torch.Generator().manual_seed(seed)
    x, delta, z = (torch.randn(batch, length, dim, generator=gen) for _ in range(3))
    A = -torch.rand(dim, state, generator=gen) - 0.5
    B, C = (torch.randn(batch, length, state, generator=gen) for _ in range(2))
    D, bias = torch.randn(dim, generator=gen), torch.randn(dim, generator=gen) - 2
    return x, delta, A, B, C, D, z, bias


def test_the_stand_in_rejects_what_the_cuda_kernel_rejects():
    x, delta, A, B, C, D, z, bias = _scan_inputs()
    good = dict(D=D, z=z.transpose(1, 2).contiguous(), delta_bias=bias, delta_softplus=True)
    u, d = x.transpose(1, 2).contiguous(), delta.transpose(1, 2).contiguous()
    b, c = B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous()
    contract_scan(u, d, A, b, c, **good)  # all fp32: accepted
    with pytest.raises(ContractError, match="delta.scalar_type"):  # the H200's crash
        contract_scan(u, d.half(), A, b, c, **good)
    with pytest.raises(ContractError, match="B.scalar_type"):
        contract_scan(u.bfloat16(), d.bfloat16(), A, b, c, **{**good, "z": good["z"].bfloat16()})
    with pytest.raises(ContractError, match="D.scalar_type"):
        contract_scan(u, d, A, b, c, **{**good, "D": D.half()})
    with pytest.raises(ContractError, match="stride"):
        contract_scan(x.transpose(1, 2), d, A, b, c, **good)


@pytest.mark.parametrize("dtype", INPUT_DTYPES, ids=str)
def test_ssm_block_on_the_cuda_branch_under_autocast_matches_fp32(cuda_branch, dtype):
    """The block's tensors under autocast come out mixed (conv: fp32, matmuls: the autocast
    dtype); the call site must hand the kernel one input dtype and still compute the scan."""
    torch.manual_seed(0)
    block = SelectiveSSM(d_model=32, d_state=16).eval()
    u = torch.randn(2, 40, 32)
    with torch.inference_mode():
        want = block(u)  # fp32, on the CUDA branch too (it gets fp32 everywhere)
        with _autocast(dtype):
            got = block(u)
    assert cuda_branch == [torch.float32, dtype]
    # fp32: the same arithmetic; fp16/bf16: inputs rounded to 11/8 significant bits, scan in fp32.
    tol = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}[dtype]
    torch.testing.assert_close(got.float(), want, atol=tol * want.abs().max().item(), rtol=0)


@pytest.mark.parametrize("backend", ["mamba_ssm", "mambapy"])
@pytest.mark.parametrize("dtype", INPUT_DTYPES, ids=str)
def test_scan_takes_mixed_autocast_inputs_on_both_backends(cuda_branch, backend, dtype):
    x, delta, A, B, C, D, z, bias = _scan_inputs(seed=1)
    want = selective_scan(x, delta, A, B, C, D, z, bias, backend="mambapy")
    # What the block hands over under autocast: x fp32, the rest of the matmul outputs low precision.
    low = [t.to(dtype) for t in (delta, B, C, z)]
    with _autocast(dtype):
        got = selective_scan(x, low[0], A, low[1], low[2], D, low[3], bias, backend=backend)
    tol = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}[dtype]
    torch.testing.assert_close(got.float(), want, atol=tol * want.abs().max().item(), rtol=0)
    assert cuda_branch == ([dtype] if backend == "mamba_ssm" else [])


def _open_gates(model, value: float = 0.5) -> None:
    """Untrained gates are 0 and hide the generated prompts from the logits; open them so the
    scan's numbers reach the output."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "gate" in name:
                p.fill_(value)


def _bhgap_logits(model, video, audio, dtype):
    with torch.inference_mode(), _autocast(dtype):
        return model(video=video, audio=audio).float()


@pytest.fixture(scope="module")
def tiny_bhgap():
    with random_weight_warnings_off():
        model = build_model("bhgap-tiny").eval()
    _open_gates(model)
    gen = torch.Generator().manual_seed(0)
    size = model.input_spec.image_size
    video = torch.randn(2, model.input_spec.num_frames, 3, size, size, generator=gen)
    audio = 0.1 * torch.randn(2, 30000, generator=gen)
    with torch.inference_mode():
        reference = model(video=video, audio=audio)  # fp32, the PyTorch scan
    return model, video, audio, reference


@pytest.mark.parametrize("dtype", INPUT_DTYPES, ids=str)
def test_bhgap_tiny_runs_the_cuda_branch_in_every_precision(tiny_bhgap, cuda_branch, dtype):
    model, video, audio, reference = tiny_bhgap
    got = _bhgap_logits(model, video, audio, dtype)
    assert cuda_branch == [dtype] * len(model.generators)  # one scan per prompted layer
    assert torch.isfinite(got).all()
    tol = {torch.float32: 1e-4, torch.float16: 0.05, torch.bfloat16: 0.15}[dtype]
    assert (got - reference).abs().max().item() <= tol * max(1.0, reference.abs().max().item())


@pytest.mark.slow  # the paper-size model (two ViT-B/16)
def test_bhgap_vitb16_runs_the_cuda_branch_under_bf16_autocast(cuda_branch):
    """The paper-size model (two ViT-B/16, generator width 256, d_state 16) on one small window:
    2 frames and 0.5 s of audio (random weights; a 16-frame window costs ~25 s more on 2 cores
    and tests nothing the shapes here do not)."""
    with random_weight_warnings_off():
        model = build_model("bhgap-vitb16", num_frames=2, span_s=0.5).eval()
    _open_gates(model)
    gen = torch.Generator().manual_seed(0)
    video = torch.randn(1, 2, 3, 224, 224, generator=gen)
    audio = 0.1 * torch.randn(1, 8000, generator=gen)
    with torch.inference_mode():
        reference = model(video=video, audio=audio)
    cuda_branch.clear()
    got = _bhgap_logits(model, video, audio, torch.bfloat16)
    assert cuda_branch and set(cuda_branch) == {torch.bfloat16}
    assert torch.isfinite(got).all()
    assert (got - reference).abs().max().item() <= 0.15 * max(1.0, reference.abs().max().item())


def test_pytorch_scan_on_a_gpu_without_mamba_ssm_is_logged_once(monkeypatch, capture_logs):
    monkeypatch.setattr(ssm, "_load_cuda_scan", lambda: (None, "ImportError: No module named 'mamba_ssm'"))
    ssm._warn_pytorch_scan_on_cuda.cache_clear()
    on_gpu = types.SimpleNamespace(is_cuda=True)  # scan_backend reads only is_cuda
    try:
        with capture_logs("duse_ros.models.ssm", logging.WARNING) as caplog:
            assert [scan_backend(on_gpu) for _ in range(3)] == ["mambapy"] * 3
            assert scan_backend(torch.zeros(1)) == "mambapy"
        records = [r for r in caplog.records if r.name == "duse_ros.models.ssm"]
        assert len(records) == 1
        assert "mamba_ssm is not importable" in records[0].getMessage()
        assert "No module named 'mamba_ssm'" in records[0].getMessage()
    finally:
        ssm._warn_pytorch_scan_on_cuda.cache_clear()


def test_the_cuda_scan_is_chosen_when_importable(monkeypatch):
    monkeypatch.setattr(ssm, "_load_cuda_scan", lambda: (contract_scan, None))
    assert scan_backend(types.SimpleNamespace(is_cuda=True)) == "mamba_ssm"
    assert scan_backend(torch.zeros(1)) == "mambapy"


def test_the_bare_kernel_serves_when_mamba_ssm_python_package_does_not_import(monkeypatch):
    """mamba_ssm's package imports transformers and triton; with only its compiled kernel
    importable, the scan calls `selective_scan_cuda.fwd` (here a stand-in with the kernel's
    checks and return tuple) in inference, and the PyTorch scan when gradients are wanted."""
    calls = []

    def fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        calls.append(u.dtype)
        assert B.dim() == 4 and C.dim() == 4  # the kernel's (batch, groups, N, L)
        out_z = contract_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        return out_z, None, out_z

    monkeypatch.setitem(sys.modules, "mamba_ssm", None)  # `import mamba_ssm...` raises ImportError
    monkeypatch.setitem(sys.modules, "selective_scan_cuda", types.SimpleNamespace(fwd=fwd))
    ssm._load_cuda_scan.cache_clear()
    try:
        assert scan_backend(types.SimpleNamespace(is_cuda=True)) == "mamba_ssm"
        monkeypatch.setattr(ssm, "scan_backend", lambda x: "mamba_ssm")
        torch.manual_seed(0)
        block = SelectiveSSM(d_model=32, d_state=16).eval()
        u = torch.randn(2, 20, 32)
        with torch.no_grad():
            want = block(u)
        with torch.inference_mode(), _autocast(torch.bfloat16):
            got = block(u)
        assert calls == [torch.float32, torch.bfloat16]
        torch.testing.assert_close(got.float(), want, atol=5e-2 * want.abs().max().item(), rtol=0)
        block(u).sum().backward()  # training: gradients flow through the PyTorch scan
        assert calls == [torch.float32, torch.bfloat16] and block.A_log.grad is not None
    finally:
        ssm._load_cuda_scan.cache_clear()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")
@pytest.mark.parametrize("dtype", INPUT_DTYPES, ids=str)
def test_bhgap_tiny_on_the_real_cuda_scan_matches_the_cpu(tiny_bhgap, dtype):
    """On a GPU with mamba_ssm: the kernel itself under autocast (it crashed on every forward
    before the call site cast its inputs)."""
    if ssm._cuda_scan() is None:
        pytest.skip(f"mamba_ssm is not importable: {ssm._load_cuda_scan()[1]}")
    source, video, audio, reference = tiny_bhgap
    model = build_model("bhgap-tiny").eval()  # a copy: the CPU fixture stays on the CPU
    model.load_state_dict(source.state_dict())
    model.cuda()
    assert scan_backend(video.cuda()) == "mamba_ssm"
    with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        got = model(video=video.cuda(), audio=audio.cuda()).float().cpu()
    tol = {torch.float32: 1e-3, torch.float16: 0.05, torch.bfloat16: 0.15}[dtype]
    assert (got - reference).abs().max().item() <= tol * max(1.0, reference.abs().max().item())
