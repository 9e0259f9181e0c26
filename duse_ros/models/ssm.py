"""A selective state-space (Mamba) block whose scan runs on CUDA or in plain PyTorch.

    h_t = exp(delta_t A) h_{t-1} + delta_t B_t x_t        (per channel d, state size N)
    y_t = C_t . h_t + D x_t,  then y_t * silu(z_t)

`SelectiveSSM` has mamba_ssm's `Mamba` parameters under the same names and shapes (in_proj,
conv1d, x_proj, dt_proj, A_log, D, out_proj), so one checkpoint serves both scans:
- CUDA tensors, with mamba-ssm installed (scripts/build_mamba_ssm.sh): mamba_ssm's fused scan;
- otherwise: mambapy's parallel (Blelloch) scan in PyTorch, fp32. On a GPU without mamba-ssm
  this is logged once (correct, but several times slower);
- inside `torch.onnx.export`: "doubling", a scan of plain out-of-place operators (log2(L)
  steps of shift, multiply, add) that exports as ordinary ONNX nodes; mambapy's in-place
  autograd function does not.
`selective_scan` picks per call; `scan_backend(x)` says which it would use.

Precision: the CUDA kernel (selective_scan_cuda.fwd) takes u, delta and z in one input dtype
(fp32, fp16 or bf16), B and C (per step, so "variable") in that same dtype, and A, D and
delta_bias in fp32. Under autocast the block's tensors come out mixed (the causal conv's
multiply-adds by fp32 weights give fp32, the matmuls give the autocast dtype), so the call site
casts them to `scan_input_dtype`: the autocast dtype when autocast is on, else x's own. The
PyTorch scan runs in fp32 whatever it is given and returns x's dtype.
"""

from __future__ import annotations

import functools
import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _load_cuda_scan():
    """(mamba_ssm's selective_scan_fn, None), or (None, why it cannot be imported).

    mamba_ssm's Python package imports transformers, triton and more at import time; where only
    its compiled kernel (`selective_scan_cuda`) imports, that kernel serves inference."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as exc:  # noqa: BLE001 - ImportError, or a CUDA extension that fails to load
        package_error = f"{type(exc).__name__}: {exc}"
    else:
        return selective_scan_fn, None
    try:
        import selective_scan_cuda
    except Exception as exc:  # noqa: BLE001
        return None, f"{package_error}; selective_scan_cuda: {type(exc).__name__}: {exc}"
    return functools.partial(_kernel_scan, selective_scan_cuda.fwd), None


def _kernel_scan(fwd, u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """selective_scan_fn's forward on the bare kernel (no autograd): B, C (Bt, N, L) get their
    group axis; the output is y * silu(z). With gradients wanted it runs the PyTorch scan."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C, D, z, delta_bias)):
        y = selective_scan(
            u.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2), D,
            z.transpose(1, 2), delta_bias, backend="mambapy",
        )  # fmt: skip
        return y.to(z.dtype).transpose(1, 2)
    out, _, *rest = fwd(u, delta, A, B.unsqueeze(1), C.unsqueeze(1), D, z, delta_bias, delta_softplus)
    return rest[0] if z is not None else out


def _cuda_scan():
    """mamba_ssm's selective_scan_fn, or None when it cannot be imported (no CUDA build)."""
    return _load_cuda_scan()[0]


@functools.lru_cache(maxsize=1)
def _warn_pytorch_scan_on_cuda() -> None:
    """Once per process: a GPU forward runs the PyTorch scan because mamba_ssm is missing."""
    log.warning(
        "mamba_ssm is not importable (%s): the selective scan on CUDA runs in PyTorch (mambapy), "
        "correct but several times slower; scripts/build_mamba_ssm.sh builds it for this GPU",
        _load_cuda_scan()[1],
    )


def scan_backend(x: torch.Tensor) -> str:
    if torch.onnx.is_in_onnx_export():
        return "doubling"
    if not x.is_cuda:
        return "mambapy"
    if _cuda_scan() is not None:
        return "mamba_ssm"
    _warn_pytorch_scan_on_cuda()
    return "mambapy"


def scan_input_dtype(x: torch.Tensor) -> torch.dtype:
    """The one dtype the CUDA scan gets u, delta, z, B and C in: autocast's when it is on for
    x's device (what a matmul there returns), else x's own."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def doubling_scan(decay: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    """h_t = decay_t * h_{t-1} + drive_t over dim 1 (h_{-1} = 0), by recursive doubling: after the
    step of offset k every h_t holds the sum over its last 2k inputs. Out-of-place, log2(L) steps."""
    length = decay.shape[1]
    h, a = drive, decay
    offset = 1
    while offset < length:
        # shift by `offset` along time, h_{t-offset} = 0 and a_{t-offset} = 1 before the start
        h_prev = F.pad(h[:, : length - offset], (0, 0, 0, 0, offset, 0))
        a_prev = F.pad(a[:, : length - offset], (0, 0, 0, 0, offset, 0), value=1.0)
        h = h + a * h_prev
        a = a * a_prev
        offset *= 2
    return h


def selective_scan(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor,
    delta_bias: torch.Tensor,
    backend: str | None = None,
) -> torch.Tensor:
    """x, delta (pre-softplus, without bias), z: (Bt, L, d); A: (d, N); B, C: (Bt, L, N); D, delta_bias: (d,).
    Returns y * silu(z): (Bt, L, d)."""
    backend = backend or scan_backend(x)
    if backend == "mamba_ssm":
        fn = _cuda_scan()
        if fn is None:
            raise RuntimeError(
                "mamba_ssm's selective scan is not importable here (install the 'cuda' extra on a CUDA machine)"
            )
        dtype = scan_input_dtype(x)

        def channels_first(t: torch.Tensor) -> torch.Tensor:  # (Bt, L, k) -> (Bt, k, L), the kernel's layout
            return t.to(dtype).transpose(1, 2).contiguous()

        y = fn(
            channels_first(x),
            channels_first(delta),
            A.float().contiguous(),
            channels_first(B),
            channels_first(C),
            D.float().contiguous(),
            z=channels_first(z),
            delta_bias=delta_bias.float().contiguous(),
            delta_softplus=True,
        )
        return y.transpose(1, 2)
    if backend not in ("mambapy", "doubling"):
        raise ValueError(f"unknown scan backend {backend!r}; expected 'mamba_ssm', 'mambapy' or 'doubling'")
    from mambapy.pscan import pscan

    dtype = x.dtype
    with torch.autocast(x.device.type, enabled=False):
        x, z, B, C = x.float(), z.float(), B.float(), C.float()
        delta = F.softplus(delta.float() + delta_bias.float())  # (Bt, L, d)
        decay = torch.exp(delta.unsqueeze(-1) * A.float())  # (Bt, L, d, N)
        drive = (delta * x).unsqueeze(-1) * B.unsqueeze(2)  # (Bt, L, d, N)
        h = (pscan if backend == "mambapy" else doubling_scan)(decay, drive)  # (Bt, L, d, N)
        y = (h @ C.unsqueeze(-1)).squeeze(-1) + D.float() * x  # (Bt, L, d)
        return (y * F.silu(z)).to(dtype)


class SelectiveSSM(nn.Module):
    """Mamba block (no norm, no residual): (Bt, L, d_model) -> (Bt, L, d_model)."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
    ):
        super().__init__()
        d_inner = expand * d_model
        self.d_inner, self.d_state = d_inner, d_state
        self.dt_rank = math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner)
        # Mamba's init: delta = softplus(bias) log-uniform in [dt_min, dt_max]; A = -(1..N) (S4D-real).
        nn.init.uniform_(self.dt_proj.weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def _causal_conv(self, x: torch.Tensor) -> torch.Tensor:
        """`conv1d` (depthwise, causal) as d_conv shifted multiply-adds on (Bt, L, d): the same
        weights, without the channels-first copies, and far faster than a depthwise conv kernel
        on CPU for short sequences."""
        k = self.conv1d.kernel_size[0]
        weight = self.conv1d.weight[:, 0].T  # (k, d_inner)
        padded = F.pad(x, (0, 0, k - 1, 0))  # (Bt, L + k - 1, d)
        length = x.shape[1]
        out = self.conv1d.bias + padded[:, :length] * weight[0]
        for j in range(1, k):
            out = out + padded[:, j : j + length] * weight[j]
        return out

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(u).chunk(2, dim=-1)  # (Bt, L, d_inner) each
        x = F.silu(self._causal_conv(x))
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = dt @ self.dt_proj.weight.T  # (Bt, L, d_inner), bias in the scan
        y = selective_scan(x, delta, -torch.exp(self.A_log.float()), B, C, self.D, z, self.dt_proj.bias)
        return self.out_proj(y)
