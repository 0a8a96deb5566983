"""Can Qt's X11 platform plugin load here? Checked before Qt starts, because when it cannot, Qt only says that
"xcb-cursor0 or libxcb-cursor0 is needed", whatever is really missing.

The plugin (`libqxcb.so`) and the Qt libraries it needs ship with PySide6 (or inside the frozen bundle); the X11
libraries they need must come from the system. This module reads the ELF files' DT_NEEDED entries, tries to load
each system library the way the dynamic loader would, and names the Debian packages of the missing ones.

Standard library only and no Qt import, so `make run` can run it as a script before anything else:

    python edpn_gui/display_check.py            # exit 1 with the message when libraries are missing
    python edpn_gui/display_check.py --install  # install them with apt-get when root or sudo allows it
    python edpn_gui/display_check.py --install --xvfb  # also Xvfb, the X server tests/test_x_connection.py kills
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Callable, Mapping, Sequence

XCB_PLUGIN = Path("Qt", "plugins", "platforms", "libqxcb.so")
SHT_DYNAMIC = 6
DT_NEEDED = 1
# Libraries whose Debian package does not follow the naming rule in `debian_package`.
DEBIAN_PACKAGES = {"libgdk-3.so.0": "libgtk-3-0", "libglib-2.0.so.0": "libglib2.0-0",
                   "libgthread-2.0.so.0": "libglib2.0-0", "libz.so.1": "zlib1g"}
LIBC_PARTS = {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "ld-linux-x86-64.so.2"}


def elf_needed(path: Path) -> list[str]:
    """DT_NEEDED names of a 64-bit little-endian ELF file; [] for anything else."""
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


def pyside_dir() -> Path | None:
    """PySide6's folder (inside the frozen bundle too), found without importing it."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen is not None:
        return Path(frozen, "PySide6")
    spec = importlib.util.find_spec("PySide6")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


def can_load(soname: str) -> bool:
    """Whether the dynamic loader finds `soname` and everything it needs (it stays loaded, as Qt would load it)."""
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_libraries(plugin: Path, loadable: Callable[[str], bool] = can_load) -> list[str]:
    """System libraries `plugin` needs, directly or through the Qt libraries shipped beside it, that cannot load.
    Libraries shipped with Qt (or in the frozen bundle) are followed rather than loaded."""
    shipped_dirs = [plugin.parent, plugin.parents[2] / "lib"]
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen is not None:
        shipped_dirs.append(Path(frozen))
    queue, seen, missing = [plugin], {plugin.name}, []
    while queue:
        for name in elf_needed(queue.pop()):
            if name in seen:
                continue
            seen.add(name)
            shipped = next((d / name for d in shipped_dirs if (d / name).is_file()), None)
            if shipped is not None:
                queue.append(shipped)
            elif not loadable(name):
                missing.append(name)
    return sorted(missing)


def debian_package(soname: str) -> str:
    """Debian's rule for library packages: libfoo.so.6 -> libfoo6, libfoo-x11.so.0 -> libfoo-x11-0."""
    if soname in DEBIAN_PACKAGES:
        return DEBIAN_PACKAGES[soname]
    if soname in LIBC_PARTS:
        return "libc6"
    match = re.match(r"(.+)\.so\.(\d+)", soname)
    if match is None:
        return soname.removesuffix(".so").lower()
    name, version = match.groups()
    return (f"{name}-{version}" if name[-1].isdigit() else f"{name}{version}").lower().replace("_", "-")


def uses_xcb(environ: Mapping[str, str]) -> bool:
    """Whether Qt will pick its X11 plugin: on Linux, unless another platform is asked for or a Wayland session
    is running (Qt then prefers its Wayland plugin)."""
    if not sys.platform.startswith("linux"):
        return False
    requested = environ.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if requested:
        return requested == "xcb"
    return not (environ.get("WAYLAND_DISPLAY") and environ.get("XDG_SESSION_TYPE") == "wayland")


def install_command(packages: Sequence[str]) -> str:
    return "sudo apt-get install " + " ".join(packages)


def describe_missing(missing: Sequence[str]) -> str:
    """The one message a user gets instead of Qt's: what is missing and the command that installs it."""
    packages = sorted({debian_package(name) for name in missing})
    return (f"EDPN Restore cannot open its window: Qt's X11 (xcb) platform plugin needs libraries this system "
            f"lacks: {', '.join(missing)}.\nInstall them (Debian, Ubuntu) with:\n\n    {install_command(packages)}\n\n"
            f"On other systems install the packages that provide those files.")


def display_problem(environ: Mapping[str, str] = os.environ,
                    loadable: Callable[[str], bool] = can_load) -> list[str]:
    """The missing libraries when Qt is about to use its X11 plugin, else []."""
    if not uses_xcb(environ):
        return []
    folder = pyside_dir()
    plugin = folder / XCB_PLUGIN if folder is not None else None
    if plugin is None or not plugin.is_file():
        return []  # no plugin to check: Qt reports that itself
    return missing_libraries(plugin, loadable)


def apt_install_prefix() -> list[str] | None:
    """How this process may run apt-get without a password prompt: as root, or through sudo -n; else None."""
    if shutil.which("apt-get") is None:
        return None
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    return None


def install(packages: Sequence[str], purpose: str = "Qt's X11 plugin") -> bool:
    prefix = apt_install_prefix()
    if prefix is None:
        return False
    print(f"Installing what {purpose} needs: {' '.join(packages)}", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(prefix + ["apt-get", "update", "-qq"], env=env)
    command = prefix + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    return subprocess.run(command, env=env).returncode == 0


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when the window can open (after installing what is missing, with --install), else 1 and the
    message on stderr."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--xvfb" in args and "--install" in args and shutil.which("Xvfb") is None:
        install(["xvfb"], "the X server test")  # without it that test is skipped, so a failure stops nothing
    missing = display_problem()
    if missing and "--install" in args:
        packages = sorted({debian_package(name) for name in missing})
        if install(packages):
            missing = [name for name in missing if not can_load(name)]
    if missing:
        print(describe_missing(missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
