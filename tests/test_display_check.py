"""The start-up check that names the system libraries Qt's X11 plugin lacks, instead of Qt's misleading message."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edpn_gui import app as gui_app
from edpn_gui import display_check
from edpn_gui.display_check import debian_package, describe_missing, missing_libraries, uses_xcb

ROOT = Path(__file__).resolve().parent.parent
FRESH_DEBIAN_LACKS = {"libxcb-icccm.so.4", "libxcb-keysyms.so.1"}  # what a fresh Debian 12 desktop was missing

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt's X11 plugin is Linux only")


def xcb_plugin() -> Path:
    folder = display_check.pyside_dir()
    plugin = folder / display_check.XCB_PLUGIN if folder is not None else None
    if plugin is None or not plugin.is_file():
        pytest.skip("this PySide6 has no X11 plugin")
    return plugin


def test_library_names_map_to_debian_packages():
    assert debian_package("libxcb-icccm.so.4") == "libxcb-icccm4"
    assert debian_package("libxcb-keysyms.so.1") == "libxcb-keysyms1"
    assert debian_package("libxcb-cursor.so.0") == "libxcb-cursor0"
    assert debian_package("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"
    assert debian_package("libxcb-render-util.so.0") == "libxcb-render-util0"
    assert debian_package("libGL.so.1") == "libgl1" and debian_package("libglib-2.0.so.0") == "libglib2.0-0"


@linux_only
def test_missing_libraries_of_the_real_plugin_are_named_with_their_packages():
    asked = []

    def fresh_debian(name: str) -> bool:
        asked.append(name)
        return name not in FRESH_DEBIAN_LACKS

    missing = missing_libraries(xcb_plugin(), fresh_debian)
    assert missing == sorted(FRESH_DEBIAN_LACKS)
    assert "libxcb.so.1" in asked and "libQt6Core.so.6" not in asked  # Qt's own libraries ship with it
    message = describe_missing(missing)
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in message
    assert "xcb-cursor0" not in message  # Qt's misleading hint


@linux_only
@pytest.mark.skipif(shutil.which("ldd") is None, reason="no ldd")
def test_check_agrees_with_the_dynamic_loader():
    plugin = xcb_plugin()
    ldd = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True).stdout
    not_found = {line.split()[0] for line in ldd.splitlines() if "not found" in line}
    assert set(missing_libraries(plugin)) == not_found


def test_only_an_x11_start_is_checked(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    assert uses_xcb({}) and uses_xcb({"QT_QPA_PLATFORM": "xcb"}) and uses_xcb({"DISPLAY": ":0"})
    assert not uses_xcb({"QT_QPA_PLATFORM": "offscreen"}) and not uses_xcb({"QT_QPA_PLATFORM": "wayland"})
    assert not uses_xcb({"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"})
    monkeypatch.setattr(sys, "platform", "win32")
    assert not uses_xcb({})


def test_the_app_stops_with_the_message_before_starting_qt(monkeypatch, capsys):
    monkeypatch.setattr(gui_app, "display_problem", lambda: sorted(FRESH_DEBIAN_LACKS))
    assert gui_app.main([]) == 1
    err = capsys.readouterr().err
    assert "libxcb-icccm.so.4" in err and "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in err


def test_make_run_installs_what_is_missing_or_stops_with_the_command(monkeypatch, capsys):
    monkeypatch.setattr(display_check, "display_problem", lambda: sorted(FRESH_DEBIAN_LACKS))
    monkeypatch.setattr(display_check, "apt_install_prefix", lambda: None)  # not root, no password-less sudo
    assert display_check.main(["--install"]) == 1
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in capsys.readouterr().err

    installed = []
    monkeypatch.setattr(display_check, "install", lambda packages: installed.extend(packages) or True)
    monkeypatch.setattr(display_check, "can_load", lambda name: bool(installed))  # loads once installed
    assert display_check.main(["--install"]) == 0 and installed == ["libxcb-icccm4", "libxcb-keysyms1"]

    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    run = makefile[makefile.index("\nrun:"):].split("\n\n")[0]
    assert run.index("display_check.py --install") < run.index("edpn-gui")  # checked before Qt starts



@linux_only
def test_the_frozen_bundle_is_checked_in_its_own_folder(tmp_path, monkeypatch):
    """PyInstaller's layout: PySide6/Qt/plugins and PySide6/Qt/lib under sys._MEIPASS, other libraries beside."""
    real = xcb_plugin()
    bundle = tmp_path / "_internal"
    (bundle / "PySide6" / "Qt" / "plugins" / "platforms").mkdir(parents=True)
    (bundle / "PySide6" / "Qt" / "lib").mkdir()
    (bundle / "PySide6" / display_check.XCB_PLUGIN).symlink_to(real)
    for lib in real.parents[2].joinpath("lib").glob("libQt6*.so.6"):
        (bundle / "PySide6" / "Qt" / "lib" / lib.name).symlink_to(lib)
    monkeypatch.setattr(sys, "_MEIPASS", str(bundle), raising=False)
    (bundle / "libxcb-keysyms.so.1").write_bytes(b"")  # collected from the build machine: not the system's job
    assert display_check.pyside_dir() == bundle / "PySide6"
    missing = display_check.display_problem({"QT_QPA_PLATFORM": "xcb"}, lambda name: name not in FRESH_DEBIAN_LACKS)
    assert missing == ["libxcb-icccm.so.4"]
