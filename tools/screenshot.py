"""Take docs/screenshot.png: the real app on an X display, the sample photo restored, the split in the middle.

Run under a real X server from the repository root, e.g.
`PYTHONPATH=. xvfb-run -s "-screen 0 1400x900x24" .venv/bin/python tools/screenshot.py` (PYTHONPATH: this checkout's
edpn_gui, not the one the virtualenv installed).
The picture is grabbed from the X screen, not rendered offscreen.
"""
import sys
import tempfile
from pathlib import Path

import torch  # noqa: F401 - before PySide6, as in the app
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from edpn_core.resources import sample_image
from edpn_gui.main_window import MainWindow
from edpn_gui.settings import AppSettings


def main(out: Path) -> int:
    app = QApplication(sys.argv[:1])
    window = MainWindow(AppSettings(Path(tempfile.mkdtemp()) / "settings.ini"))
    window.resize(1360, 860)
    window.confirm = lambda title, text: True  # app.quit() closes the window: no question about the unsaved result
    window.show()

    def grab(_result) -> None:
        window.view.zoom_fit()
        QTimer.singleShot(800, lambda: (window.screen().grabWindow(window.winId()).save(str(out)), app.quit()))

    window.restore_shown.connect(grab)
    window.image_opened.connect(lambda _img: QTimer.singleShot(300, window.restore))
    window.open_path(sample_image())
    QTimer.singleShot(600_000, app.quit)
    app.exec()
    window.stop_workers()  # the loop ended without a close: the worker thread would otherwise wait for ever
    window.wait_for_workers()
    return 0 if out.exists() else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screenshot.png")))
