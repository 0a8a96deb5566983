"""`edpn-gui [IMAGE]` opens the app; `edpn-gui --self-test` checks an installation without opening a window."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch  # noqa: F401 - before PySide6: Qt's DLLs loaded first break torch's on Windows

from edpn_core.heap import keep_freed_memory

from .display_check import describe_missing, display_problem

SELF_TEST_SIDE = 64  # a centre crop keeps the check to seconds on any CPU


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edpn-gui", description="EDPN Restore: restore blurry photos.")
    parser.add_argument("image", nargs="?", type=Path, help="photo to open")
    parser.add_argument("--self-test", action="store_true",
                        help="restore the bundled sample with the shipped weights on the CPU, print one line per "
                             "task and exit (0 when all pass); no window is opened")
    return parser


def centre_crop(rgb: np.ndarray, side: int) -> np.ndarray:
    height, width = rgb.shape[:2]
    y, x = max(0, (height - side) // 2), max(0, (width - side) // 2)
    return rgb[y:y + side, x:x + side]


def check_output(source: np.ndarray, output: np.ndarray, scale: int) -> str | None:
    """What is wrong with a restoration of `source`, or None when it looks like one."""
    expected = (source.shape[0] * scale, source.shape[1] * scale, 3)
    if output.shape != expected:
        return f"output is {output.shape}, expected {expected}"
    if not np.isfinite(output).all():
        return "output has NaN or infinite values"
    unchanged = np.repeat(np.repeat(source, scale, axis=0), scale, axis=1)
    if np.abs(output - unchanged).max() < 1e-6:
        return "output is identical to the input: the network did nothing"
    return None


def self_test() -> int:
    """Shipped weights for both tasks restore (a crop of) the bundled sample on the CPU."""
    from edpn_core import resources
    from edpn_core.config import TASKS
    from edpn_core.inference.engine import Restorer, RunSettings
    from edpn_core.inference.imageio import load_image

    try:
        crop = centre_crop(load_image(resources.sample_image()).rgb, SELF_TEST_SIDE)
    except Exception as exc:  # noqa: BLE001 - any failure is reported as a failed self-test
        print(f"self-test: FAILED: cannot read the bundled sample photo ({exc})")
        return 1
    failures = 0
    for task in TASKS:
        try:
            weights = resources.default_weights(task, "cpu")
            restorer = Restorer(weights, device="cpu")
            started = time.monotonic()
            output = restorer.restore_array(crop, RunSettings("whole"))
            seconds = time.monotonic() - started
            problem = None if restorer.task == task else f"{weights.name} is for {restorer.task!r}"
            problem = problem or check_output(crop, output, restorer.scale)
        except Exception as exc:  # noqa: BLE001
            problem = " ".join(f"{type(exc).__name__}: {exc}".split())
        if problem is None:
            height, width = crop.shape[:2]
            print(f"self-test {task}: OK ({weights.name}, {width}x{height} -> {output.shape[1]}x{output.shape[0]} "
                  f"in {seconds:.1f} s on {restorer.device_name})")
        else:
            failures += 1
            print(f"self-test {task}: FAILED: {problem}")
    return 1 if failures else 0


def run_app(image: Path | None) -> int:
    """Open the window; exit 1 with the missing system libraries named when Qt's X11 plugin cannot load."""
    missing = display_problem()
    if missing:
        print(describe_missing(missing), file=sys.stderr)
        return 1
    from PySide6.QtWidgets import QApplication

    from .color_scheme import follow_color_scheme
    from .main_thread_gc import MainThreadCollector
    from .main_window import MainWindow, app_icon
    from .settings import APPLICATION, ORGANIZATION

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("EDPN Restore")
    app.setWindowIcon(app_icon())
    follow_color_scheme(app)
    collector = MainThreadCollector(app)
    window = MainWindow()
    window.show()
    if image is not None:
        window.open_path(image)
    code = app.exec()
    window.stop_workers()  # the loop also ends without a close: a broken X connection never closes the window
    window.wait_for_workers()  # the window is gone: a cancelled job may finish its pass without anyone waiting
    collector.stop()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # before Qt starts threads; RestoreWorker gives it back after each job
    if args.self_test:
        return self_test()
    return run_app(args.image)


if __name__ == "__main__":
    sys.exit(main())
