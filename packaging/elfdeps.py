"""Shared-library dependencies of a frozen bundle, read from the ELF files themselves (Linux, stdlib only).

Used by build.spec (which CUDA libraries torch cannot load without) and by packaging/dist.sh:

    python packaging/elfdeps.py check BUNDLE_DIR PRUNED_TSV   # fail if a bundled library needs a pruned one
    python packaging/elfdeps.py depends BUNDLE_DIR            # the .deb's Depends:/Recommends: lines
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType


def _load_display_check() -> ModuleType:
    """edpn_gui/display_check.py by its path: importing the edpn_gui package would load torch."""
    path = Path(__file__).resolve().parents[1] / "edpn_gui" / "display_check.py"
    spec = importlib.util.spec_from_file_location("edpn_display_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_display_check = _load_display_check()
elf_needed = _display_check.elf_needed  # DT_NEEDED names of a 64-bit little-endian ELF file
debian_package_by_name = _display_check.debian_package  # Debian's naming rule for library packages


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


# Files needing a library only through these plugins make it a Recommends (the app runs without them).
OPTIONAL_PLUGINS = ("/plugins/platformthemes/", "/plugins/wayland-graphics-integration-client/")


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
