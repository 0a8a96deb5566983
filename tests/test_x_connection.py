"""The app on a real X server that goes away (a logout, a dropped ssh forwarding) while a restore runs."""
from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edpn_core.model_io import build_model, save_weights
from edpn_gui.display_check import display_problem

REPO = Path(__file__).resolve().parents[1]
DISPLAY_NUMBER_FIRST = 90

# Starts the real program on a photo, then a long restore (small tiles, ensemble x8) as soon as it is open.
BUSY_APP = """
import sys
from edpn_gui import app, main_window

class BusyWindow(main_window.MainWindow):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.controls.tile_spin.setValue(32)
        self.controls.ensemble_combo.setCurrentIndex(self.controls.ensemble_combo.findData("x8"))
        self.image_opened.connect(lambda image: (self.restore(), print("restoring", flush=True)))

main_window.MainWindow = BusyWindow
sys.exit(app.main(sys.argv[1:]))
"""


def start_xvfb(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """A private X server on the first free display number; its socket appearing means it accepts clients."""
    for number in range(DISPLAY_NUMBER_FIRST, DISPLAY_NUMBER_FIRST + 50):
        if Path(f"/tmp/.X11-unix/X{number}").exists() or Path(f"/tmp/.X{number}-lock").exists():
            continue
        server = subprocess.Popen(["Xvfb", f":{number}", "-nolisten", "tcp", "-screen", "0", "1280x800x24"],
                                  stdout=subprocess.DEVNULL, stderr=(tmp_path / "xvfb.log").open("w"))
        for _ in range(100):
            if Path(f"/tmp/.X11-unix/X{number}").exists() or server.poll() is not None:
                break
            time.sleep(0.1)
        if server.poll() is None:
            return server, f":{number}"
    pytest.skip("no free X display number for a private Xvfb")


def wait_for_line(process: subprocess.Popen, text: str, seconds: float) -> bool:
    assert process.stdout is not None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 1.0)
        if ready:
            line = process.stdout.readline()
            if not line:
                return False
            if text in line:
                return True
    return False


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb; "
                                                             "`make test` installs it where it may)")
@pytest.mark.skipif(bool(display_problem({"QT_QPA_PLATFORM": "xcb"})),
                    reason="Qt's X11 plugin lacks system libraries (edpn_gui/display_check.py --install)")
def test_the_app_ends_and_cleans_up_when_its_x_server_goes_away(tmp_path, tiny_overrides):
    weights = tmp_path / "weights"
    for task in ("sr", "deblock"):
        save_weights(build_model("lite", task, **tiny_overrides), weights / f"{task}-lite.safetensors", "lite")
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((512, 512, 3)) * 255).astype(np.uint8)).save(photo)
    temp = tmp_path / "temp"
    temp.mkdir()
    server, display = start_xvfb(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "DISPLAY": display, "QT_QPA_PLATFORM": "xcb",
           "TMPDIR": str(temp), "XDG_CONFIG_HOME": str(tmp_path / "config"), "EDPN_WEIGHTS_DIR": str(weights)}
    app = subprocess.Popen([sys.executable, "-c", BUSY_APP, str(photo)], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for_line(app, "restoring", 120), app.stderr.read() if app.poll() is not None else "no progress"
        assert any(p.name.startswith("edpn-restore") for p in temp.iterdir())  # the pasted photos' folder
        server.kill()
        server.wait()
        app.wait(timeout=60)  # it hung for ever, waiting for the worker that nobody had told to stop
    finally:
        server.kill()
        app.kill()
        app.wait()
    assert "X11 connection broke" in app.stderr.read()
    assert list(temp.iterdir()) == []
