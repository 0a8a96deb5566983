"""How the programs (`edpn`, `edpn-gui`) ask glibc to keep freed memory; the library alone never changes it.

glibc returns every freed block over 32 MB to the kernel at once, and a tile's large tensors (the DCN's sampled
taps: 150 MB at lite's automatic tile) are freed and allocated again at every tile, so each one comes back as
fresh pages the kernel must fault in and zero. Kept in the process instead, a lite deblock of a 1024 x 768 photo
took about 17% less time on the 2-core AVX2 machine, with no higher peak (docs/BENCHMARKS.md). The long-running
app gives the memory back after each job. Elsewhere than glibc (macOS, Windows, musl) both calls do nothing.
"""
from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_KEEP_BELOW = 1 << 30


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    process = ctypes.CDLL(None)
    return process if hasattr(process, "gnu_get_libc_version") else None


def keep_freed_memory() -> bool:
    """Keep freed blocks under 1 GiB for reuse, in one arena shared by all threads (the app restores in a worker
    thread, whose own arena could not hold a 150 MB tensor). Call before starting threads; True if applied."""
    libc = _glibc()
    if libc is None:
        return False
    return all(libc.mallopt(option, value) == 1 for option, value in
               ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, _KEEP_BELOW), (_M_TRIM_THRESHOLD, _KEEP_BELOW)))


def release_freed_memory() -> None:
    """Give the kept memory back to the system, once a job is over."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
