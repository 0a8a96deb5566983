"""The programs keep freed tensor memory for the next tile and give it back when a job ends (glibc only)."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import resource, sys
from edpn_core.heap import keep_freed_memory, release_freed_memory

def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20

if sys.argv[1] == "keep":
    assert keep_freed_memory()
for _ in range(2):  # allocated, written and freed at every tile, as the DCN's sampled taps are
    bytearray(50_000_000)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
bytearray(50_000_000)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
held = resident_mb()
release_freed_memory()
print(faults, held, resident_mb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_memory_is_reused_within_a_job_then_given_back():
    def probe(mode: str) -> tuple[int, float, float]:
        done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, cwd=REPO,
                              timeout=120, check=True)
        faults, held, released = done.stdout.split()
        return int(faults), float(held), float(released)

    pages = 50_000_000 // 4096
    faults, _, _ = probe("default")
    assert faults > pages // 2  # glibc's default: the block went back to the kernel and comes back as new pages
    faults, held, released = probe("keep")
    assert faults < pages // 20  # the same pages, reused
    assert held - released > 40  # MB given back once the job is over
