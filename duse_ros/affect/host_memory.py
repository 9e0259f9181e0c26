"""Keep freed host memory for reuse instead of handing it back to the kernel (glibc malloc).

A CPU forward allocates its activations anew every time: tens of MB in blocks of 0.5 to 15 MB.
By default glibc serves blocks above its mmap threshold (128 KB, raised only as such blocks come
back) with a fresh mmap() and returns them with munmap(), and gives a heap's free top back to the
kernel once it passes the trim threshold. Each forward then page-faults and zeroes all of its
memory again, in the kernel and on the thread that waits for the result. In affect_node with four
faces at 30 fps (benchmarks/bench_soak.py) the engine thread spent over half its time in the
kernel, and a forward of the default model took 2.6x as long as with the memory kept.

`retain_freed_memory(cache_mb)` fixes both thresholds (mallopt): blocks up to glibc's ceiling come
from the heaps, and up to `cache_mb` of free memory per heap stays mapped for the next forward.
The process's resident memory then sits at its working set's high-water mark instead of moving
up and down with every forward.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_CEILING = 32 << 20  # glibc refuses more on 64-bit (half its 64 MB heap size)


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return getattr(libc, "mallopt", None)


def retain_freed_memory(cache_mb: int) -> str:
    """Let glibc keep up to `cache_mb` MB of freed memory per heap and serve blocks up to 32 MB
    from its heaps. 0 leaves the allocator as it is. Returns what was done, for the log; where
    the C library is not glibc (musl, macOS) nothing changes and the text says so."""
    if cache_mb < 0:
        raise ValueError(f"malloc_keep_mb must be >= 0; got {cache_mb}")
    if cache_mb == 0:
        return "malloc_keep_mb 0: the C allocator's own thresholds"
    mallopt = _glibc()
    if mallopt is None:
        return f"malloc_keep_mb {cache_mb}: not glibc ({platform.libc_ver()[0] or platform.system()}), left as it is"
    trim = cache_mb << 20
    ok = mallopt(M_MMAP_THRESHOLD, min(MMAP_THRESHOLD_CEILING, trim)) and mallopt(M_TRIM_THRESHOLD, trim)
    if not ok:
        return f"malloc_keep_mb {cache_mb}: glibc refused the thresholds, left as it is"
    return f"malloc_keep_mb {cache_mb}: glibc keeps up to {cache_mb} MB freed per heap for reuse"
