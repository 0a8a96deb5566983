"""Stand-ins for the CUDA libraries that torch's CUDA build names in DT_NEEDED but never calls on the CPU.

torch's PyPI wheel for Linux is a CUDA build: libtorch_cuda.so (always loaded by libtorch.so) needs cuBLAS,
cuFFT, cuSPARSE, cuRAND, NCCL, NVRTC, ... (1.9 GB) just to load. With every GPU hidden (packaging/pyi_rth_edpn.py)
none of their functions is ever called, so `EDPN_DIST_CUDA=stub` replaces each with a small library of the same
SONAME that exports the same (versioned) symbols; a function of it, if ever called, prints which one and aborts.
Needs readelf (binutils) and a C compiler (cc). Linux only. See docs/PACKAGING.md for what was measured.

    python packaging/cuda_stubs.py LIB OUT   # write a stub of LIB to OUT
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# readelf --dyn-syms -W:  Num: Value Size Type Bind Vis Ndx Name[@[@]VERSION]
_SYMBOL = re.compile(r"\s*\d+:\s+[0-9a-fA-F]+\s+(\d+|0x[0-9a-fA-F]+)\s+(\w+)\s+(\w+)\s+\w+\s+(\S+)\s+(\S+)")


def _readelf(*args: str) -> str:
    return subprocess.run(["readelf", "-W", *args], capture_output=True, text=True, check=True).stdout


def exported_symbols(lib: Path) -> list[tuple[str, str | None, str, int]]:
    """(name, default version or None, FUNC/OBJECT/TLS, size) of every symbol the library defines for others."""
    symbols = []
    for line in _readelf("--dyn-syms", str(lib)).splitlines():
        m = _SYMBOL.match(line)
        if not m:
            continue
        size, kind, bind, ndx, name = m.groups()
        if ndx in ("UND", "ABS") or bind not in ("GLOBAL", "WEAK", "UNIQUE"):
            continue
        if kind not in ("FUNC", "IFUNC", "OBJECT", "TLS"):
            continue
        if "@@" in name:
            name, version = name.split("@@", 1)
        elif "@" in name:
            continue  # an older, non-default version: nothing links against it any more
        else:
            version = None
        symbols.append((name, version, "FUNC" if kind in ("FUNC", "IFUNC") else kind, int(size, 0)))
    return symbols


def soname(lib: Path) -> str:
    m = re.search(r"\(SONAME\).*\[(.+)\]", _readelf("-d", str(lib)))
    return m.group(1) if m else lib.name


def stub_sources(lib: Path) -> tuple[str, str, str, int]:
    """(soname, C source, linker version script, number of symbols) of a stand-in for `lib`."""
    name = soname(lib)
    symbols = exported_symbols(lib)
    if not symbols:
        raise ValueError(f"{lib}: exports no symbols")
    c = [
        "#include <stdio.h>",
        "#include <stdlib.h>",
        "static void edpn_stub_called(const char *symbol) {",
        f'    fprintf(stderr, "EDPN Restore: %s (from {name}) was called, but this CPU-only build ships a '
        'stand-in for that CUDA library\\n", symbol);',
        "    abort();",
        "}",
    ]
    by_version: dict[str | None, list[str]] = {}
    for i, (symbol, version, kind, size) in enumerate(symbols):
        label = f'__asm__("{symbol}")'  # C++ and dotted names are fine as assembler labels
        if kind == "FUNC":
            c.append(f'int f{i}(void) {label}; int f{i}(void) {{ edpn_stub_called("{symbol}"); return 0; }}')
        elif kind == "TLS":
            c.append(f"__thread char v{i}[{max(size, 1)}] {label};")
        else:
            c.append(f"char v{i}[{max(size, 1)}] {label};")
        by_version.setdefault(version, []).append(symbol)
    named = [v for v in by_version if v is not None]
    if not named:
        script = "{ global: " + " ".join(f"{s};" for s in by_version[None]) + " local: *; };"
    else:
        # unversioned symbols join the first version node: an unversioned reference binds to any default version
        nodes = []
        for j, version in enumerate(named):
            members = by_version[version] + (by_version.get(None, []) if j == 0 else [])
            local = " local: *;" if j == len(named) - 1 else ""
            nodes.append(f"{version} {{ global: " + " ".join(f"{s};" for s in members) + f"{local} }};")
        script = "\n".join(nodes)
    return name, "\n".join(c) + "\n", script + "\n", len(symbols)


def make_stub(lib: Path, out: Path) -> int:
    """Compile the stand-in of `lib` to `out`; returns how many symbols it exports."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        raise RuntimeError("EDPN_DIST_CUDA=stub needs a C compiler (cc/gcc)")
    name, source, script, count = stub_sources(lib)
    with tempfile.TemporaryDirectory() as tmp:
        src, vs = Path(tmp) / "stub.c", Path(tmp) / "stub.map"
        src.write_text(source, encoding="utf-8")
        vs.write_text(script, encoding="utf-8")
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-w", "-o", str(out), f"-Wl,-soname,{name}",
                        f"-Wl,--version-script={vs}", str(src)], check=True)
    return count


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    count = make_stub(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"{sys.argv[2]}: stand-in for {soname(Path(sys.argv[1]))}, {count} symbols")
