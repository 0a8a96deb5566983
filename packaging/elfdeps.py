"""Shared-library dependencies of a frozen bundle, read from the ELF files themselves (Linux, stdlib only).

Used by build.spec (which CUDA libraries torch cannot load without) and by packaging/dist.sh:

    python packaging/elfdeps.py check BUNDLE_DIR PRUNED_TSV   # fail if a bundled library needs a pruned one
    python packaging/elfdeps.py depends BUNDLE_DIR            # the .deb's Depends:/Recommends: lines
"""
from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from pathlib import Path

SHT_DYNAMIC = 6
DT_NEEDED = 1


def elf_needed(path: str | os.PathLike) -> list[str]:
    """DT_NEEDED names of a 64-bit little-endian ELF file; [] for anything else (scripts, data, other formats)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return []
            (shoff,) = struct.unpack_from("<Q", head, 0x28)
            shentsize, shnum = struct.unpack_from("<HH", head, 0x3A)
            f.seek(shoff)
            table = f.read(shentsize * shnum)
            sections = [struct.unpack_from("<IIQQQQIIQQ", table, i * shentsize) for i in range(shnum)]
            for _name, sh_type, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
                if sh_type != SHT_DYNAMIC:
                    continue
                f.seek(sections[link][4])
                strtab = f.read(sections[link][5])
                f.seek(offset)
                dynamic = f.read(size)
                names = []
                for i in range(0, len(dynamic) - 15, entsize or 16):
                    tag, value = struct.unpack_from("<qQ", dynamic, i)
                    if tag == 0:
                        break
                    if tag == DT_NEEDED:
                        names.append(strtab[value:strtab.index(b"\0", value)].decode())
                return names
    except (OSError, struct.error, IndexError, ValueError):
        return []
    return []


def bundle_elves(bundle: Path) -> dict[Path, list[str]]:
    """Every ELF file under the bundle that needs other libraries (symlinks skipped) -> its DT_NEEDED names."""
    found = {}
    for path in sorted(bundle.rglob("*")):
        if path.is_file() and not path.is_symlink():
            needed = elf_needed(path)
            if needed:
                found[path] = needed
    return found


def external_needs(bundle: Path) -> dict[str, list[Path]]:
    """Library names that bundled files need but the bundle does not contain -> who needs them."""
    elves = bundle_elves(bundle)
    inside = {p.name for p in bundle.rglob("*")}
    outside: dict[str, list[Path]] = {}
    for path, needed in elves.items():
        for name in needed:
            if name not in inside:
                outside.setdefault(name, []).append(path)
    return outside


def check(bundle: Path, pruned_tsv: Path) -> int:
    pruned = {Path(line.split("\t", 1)[1].strip()).name
              for line in pruned_tsv.read_text(encoding="utf-8").splitlines() if "\t" in line}
    broken = {name: users for name, users in external_needs(bundle).items() if name in pruned}
    for name, users in sorted(broken.items()):
        print(f"elfdeps: {name} was pruned but is needed by {', '.join(str(u.relative_to(bundle)) for u in users[:3])}")
    if broken:
        return 1
    print(f"elfdeps: no bundled library needs one of the {len(pruned)} pruned files")
    return 0


def _ldconfig_paths() -> dict[str, str]:
    out = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    paths: dict[str, str] = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if m and "x86-64" in m.group(2):
            paths.setdefault(m.group(1), m.group(3))
    return paths


# Libraries whose Debian package is not named after them (only needed when they are not installed here).
KNOWN_PACKAGES = {"libgdk-3.so.0": "libgtk-3-0", "libGL.so.1": "libgl1", "libEGL.so.1": "libegl1"}
# Files needing a library only through these plugins make it a Recommends (the app runs without them).
OPTIONAL_PLUGINS = ("/plugins/platformthemes/", "/plugins/wayland-graphics-integration-client/")


def debian_package_by_name(soname: str) -> str:
    """Debian's naming rule for library packages: libfoo.so.6 -> libfoo6, libfoo-3.so.0 -> libfoo-3-0."""
    if soname in KNOWN_PACKAGES:
        return KNOWN_PACKAGES[soname]
    m = re.match(r"(.+)\.so\.([0-9.]+)$", soname)
    if not m:
        return soname.removesuffix(".so")
    name, version = m.group(1), m.group(2).split(".")[0]
    return (f"{name}-{version}" if name[-1].isdigit() else f"{name}{version}").lower().replace("_", "-")


def owner_package(name: str, paths: dict[str, str]) -> str | None:
    path = paths.get(name)
    if path is None:
        return None
    real = os.path.realpath(path)
    for candidate in (path, real, real.replace("/usr/lib/", "/lib/", 1), real.replace("/lib/", "/usr/lib/", 1)):
        res = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True)
        if res.returncode == 0:
            return res.stdout.split(":", 1)[0].split(",")[0].strip()
    return None


def depends(bundle: Path) -> int:
    """The control file's Depends: and Recommends: lines for the system libraries the bundle needs."""
    paths = _ldconfig_paths()
    required: set[str] = set()
    optional: set[str] = set()
    for name, users in sorted(external_needs(bundle).items()):
        package = owner_package(name, paths)
        if package is None:
            package = debian_package_by_name(name)
            print(f"elfdeps: {name} is not installed here; assuming Debian package {package}", file=sys.stderr)
        if all(any(part in str(u) for part in OPTIONAL_PLUGINS) for u in users):
            optional.add(package)
        else:
            required.add(package)
    required.discard("libc6")
    optional -= required | {"libc6"}
    print("Depends: " + ", ".join(["libc6 (>= 2.28)"] + sorted(required)))
    if optional:
        print("Recommends: " + ", ".join(sorted(optional)))
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "check":
        return check(Path(argv[1]), Path(argv[2]))
    if len(argv) == 2 and argv[0] == "depends":
        return depends(Path(argv[1]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
