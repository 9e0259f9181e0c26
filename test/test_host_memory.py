"""set_heap_policy: a forward-like thread that frees and reallocates ~120 MB stops page-faulting
it in anew (the cause of 2.6x slower forwards in affect_node with four faces). mallopt is process-
wide, so each case runs in a fresh interpreter."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from duse_ros.affect.host_memory import MALLOC_KEEP_MB_MAX, set_heap_policy
from duse_ros.affect.settings import DEFAULTS, PARAMETERS

# A worker thread (its own malloc arena, as the engine's) allocates ten 12 MB blocks, touches them
# and frees them, over and over: the shape of a CPU forward's activations.
_WORKER = """
import json, resource, sys, threading
import numpy as np
from duse_ros.affect.host_memory import set_heap_policy
notes = [set_heap_policy(int(v)) for v in sys.argv[1:]]  # in order, as configures follow one another
note = notes[-1]
out = {}
def forward_like():
    blocks = [np.ones(12 << 20, np.uint8) for _ in range(10)]
    del blocks
def work():
    for _ in range(3):
        forward_like()
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(10):
        forward_like()
    out["faults_per_step"] = (resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before) / 10
t = threading.Thread(target=work)
t.start()
t.join()
print(json.dumps({"note": note, **out}))
"""

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="mallopt thresholds are glibc's; this C library is not glibc",
)


def _faults_per_step(*keep_mb: int) -> tuple[float, str]:
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, *map(str, keep_mb)], capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["faults_per_step"], result["note"]


@glibc_only
def test_kept_memory_is_reused_without_page_faults():
    pages_per_step = 10 * (12 << 20) // 4096  # what a step touches: 30720 pages of 4 KB
    default_faults, note = _faults_per_step(0)
    assert "go back to the system when freed" in note
    # malloc_keep_mb 0 gives each step back and faults it in again (the problem)...
    assert default_faults > 0.05 * pages_per_step, default_faults
    kept_faults, note = _faults_per_step(DEFAULTS["malloc_keep_mb"])
    assert f"keeps up to {DEFAULTS['malloc_keep_mb']} MB" in note
    # ... with the node's default the memory stays mapped and is reused.
    assert kept_faults < 0.005 * pages_per_step, (kept_faults, default_faults)


@glibc_only
def test_zero_after_another_value_hands_memory_back_again():
    # a node reconfigured from the default to malloc_keep_mb 0 must not keep the default's heaps
    faults, note = _faults_per_step(DEFAULTS["malloc_keep_mb"], 0)
    assert "go back to the system when freed" in note
    assert faults > 0.05 * 10 * (12 << 20) // 4096, faults


@pytest.mark.parametrize("keep_mb", [-1, MALLOC_KEEP_MB_MAX + 1, 4096])
def test_values_outside_a_c_int_of_bytes_are_refused(keep_mb):
    # 4096 MB is 2**32 bytes: passed on as a C int it would wrap to a trim threshold of 0
    with pytest.raises(ValueError, match=f"malloc_keep_mb must be in 0..{MALLOC_KEEP_MB_MAX}"):
        set_heap_policy(keep_mb)


def test_the_parameter_range_is_the_policys():
    spec = next(p for p in PARAMETERS if p.name == "malloc_keep_mb")
    assert (spec.low, spec.high) == (0, MALLOC_KEEP_MB_MAX) == (0, 2047)
