"""How the node's process asks glibc malloc to hold host memory: the one owner of mallopt/malloc_trim.

Two costs pull against each other:

- A CPU forward allocates its activations anew each time, tens of MB in blocks of 0.5 to 15 MB.
  If freed blocks go back to the kernel, every forward maps, page-faults and zeroes all of its
  memory again, on the thread that waits for the result. In affect_node with four faces at 30 fps
  (benchmarks/bench_soak.py) the inference thread then spent over half its time in the kernel and a
  forward of the default model took 475 ms against 136 ms with the memory kept.
- Camera frames and crops (~1 MB each) are freed on other threads than those that made them. If
  they come from glibc's per-thread heaps, a long run may fragment those heaps.

`set_heap_policy(keep_mb)` picks one at configure (the node's `malloc_keep_mb`):
- `keep_mb > 0` (the default, 256): blocks up to glibc's ceiling (32 MB) come from the heaps, and up
  to `keep_mb` MB of free memory per heap stays mapped for reuse. Resident memory stays at the
  working set's high-water mark.
- `0`: a fixed 256 KB mmap threshold. Every frame-sized block is mapped on its own and handed back
  the moment it is freed, so the heaps stay small, and every forward faults its memory in again.
`release_free_memory()` hands free heap pages back after a model is dropped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_CEILING = 32 << 20  # glibc refuses more on 64-bit (half its 64 MB heap size)
RETURN_AT_ONCE_THRESHOLD = 256 << 10  # keep_mb 0: blocks from a quarter of a frame up are mapped
GLIBC_TRIM_THRESHOLD = 128 << 10  # glibc's default, restored by keep_mb 0 after another value
MALLOC_KEEP_MB_MAX = (2**31 - 1) >> 20  # mallopt takes a C int of bytes: 2047 MB at most


def _load_glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]  # a too-large value fails, never wraps
        _ = libc.malloc_trim
        return libc
    except (OSError, AttributeError):
        return None


_GLIBC = _load_glibc()


def set_heap_policy(keep_mb: int) -> str:
    """Keep up to `keep_mb` MB of freed memory per heap for the next forward, or with 0 hand
    frame-sized blocks back as soon as they are freed. Returns what was done, for the log; where
    the C library is not glibc (musl, macOS) nothing changes and the text says so."""
    if not 0 <= keep_mb <= MALLOC_KEEP_MB_MAX:
        raise ValueError(f"malloc_keep_mb must be in 0..{MALLOC_KEEP_MB_MAX}; got {keep_mb}")
    if _GLIBC is None:
        return f"malloc_keep_mb {keep_mb}: not glibc ({platform.libc_ver()[0] or platform.system()}), left as it is"
    if keep_mb == 0:
        ok = _GLIBC.mallopt(M_MMAP_THRESHOLD, RETURN_AT_ONCE_THRESHOLD) and _GLIBC.mallopt(
            M_TRIM_THRESHOLD, GLIBC_TRIM_THRESHOLD
        )
        done = "blocks from 256 KB up go back to the system when freed (forwards fault their memory in anew)"
    else:
        keep = keep_mb << 20
        ok = _GLIBC.mallopt(M_MMAP_THRESHOLD, min(MMAP_THRESHOLD_CEILING, keep)) and _GLIBC.mallopt(
            M_TRIM_THRESHOLD, keep
        )
        done = f"glibc keeps up to {keep_mb} MB freed per heap for reuse"
    if not ok:
        return f"malloc_keep_mb {keep_mb}: glibc refused the thresholds, left as it is"
    return f"malloc_keep_mb {keep_mb}: {done}"


def release_free_memory() -> None:
    """Ask glibc to return free heap pages (after a model is dropped its GBs would stay otherwise)."""
    if _GLIBC is not None:
        _GLIBC.malloc_trim(0)
