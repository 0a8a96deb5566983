"""The desktop app driven through its real widgets, with tiny weights so every run takes well under a second."""
from __future__ import annotations

import gc
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import ExifTags, Image, PngImagePlugin

pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QObject, QPoint, QPointF, Qt, QUrl, Slot  # noqa: E402
from PySide6.QtGui import QDropEvent, QGuiApplication, QImage, QPalette, QWheelEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QGroupBox, QLabel  # noqa: E402

from edpn_core import resources  # noqa: E402
from edpn_core.cli import main as cli_main  # noqa: E402
from edpn_core.inference.engine import MIN_TILE  # noqa: E402
from edpn_core.inference.imageio.writing import code_values  # noqa: E402
from edpn_core.inference.strength import network_base  # noqa: E402
from edpn_core.model_io import build_model, save_weights  # noqa: E402
from edpn_gui import app as gui_app  # noqa: E402
from edpn_gui import main_window as main_window_module  # noqa: E402
from edpn_gui.color_scheme import follow_color_scheme  # noqa: E402
from edpn_gui.compare_view import CompareView  # noqa: E402
from edpn_gui.main_thread_gc import CHECK_INTERVAL_MS, MainThreadCollector  # noqa: E402
from edpn_gui.main_window import PREVIEW_MAX_SIDE, MainWindow, about_text, app_version  # noqa: E402
from edpn_gui.settings import AppSettings  # noqa: E402
from edpn_gui.workers import PixelProgress, RestoreJob, RestoreResult, format_seconds, start_in_thread  # noqa: E402

TAKEN = "2021:05:06 07:08:09"
WAIT_MS = 30_000


def write_photo(path: Path, width: int = 40, height: int = 32, quality: int | None = None) -> Path:
    """A smooth picture with a little noise and EXIF DateTimeOriginal (PNG, or JPEG when quality is given)."""
    rng = np.random.default_rng(width * height)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, (x + y) / (width + height)], axis=2) * 200 + 20
    pixels = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "EDPN test camera"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = TAKEN
    options: dict[str, Any] = {"quality": quality} if quality is not None else {}
    Image.fromarray(pixels).save(path, exif=exif, **options)
    return path


def date_taken(path: Path) -> str | None:
    with Image.open(path) as im:
        im.load()
        return im.getexif().get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.DateTimeOriginal)


@pytest.fixture(autouse=True)
def main_thread_gc(qapp):
    """As in the app (run_app): garbage collected on the GUI thread only, never in a worker."""
    collector = MainThreadCollector()
    yield collector
    collector.stop()


@pytest.fixture
def weights_dir(tmp_path, monkeypatch, tiny_overrides) -> Path:
    """Tiny 'shipped' weights for both tasks, found through EDPN_WEIGHTS_DIR as the app would find real ones."""
    folder = tmp_path / "weights"
    for task in ("sr", "deblock"):
        save_weights(build_model("lite", task, **tiny_overrides), folder / f"{task}-lite.safetensors", "lite")
    monkeypatch.setenv("EDPN_WEIGHTS_DIR", str(folder))
    return folder


@pytest.fixture
def settings_path(tmp_path) -> Path:
    return tmp_path / "config" / "edpn-restore.ini"


class RecordingWindow(MainWindow):
    """The main window with its dialogs answered rather than shown (they would block): errors and questions are
    recorded, and every question is answered yes."""

    def __init__(self, settings: AppSettings) -> None:
        self.errors: list[tuple[str, str]] = []
        self.questions: list[str] = []
        super().__init__(settings)

    def show_error(self, title: str, text: str) -> None:
        self.errors.append((title, text))

    def confirm(self, title: str, text: str) -> bool:
        self.questions.append(title)
        return True


def make_window(qtbot, settings_path: Path) -> RecordingWindow:
    window = RecordingWindow(AppSettings(settings_path))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


@pytest.fixture
def window(qtbot, weights_dir, settings_path) -> Iterator[RecordingWindow]:
    window = make_window(qtbot, settings_path)
    yield window
    window.close()
    window.wait_for_workers()


class MainThreadCall(QObject):
    """Receives a worker's signal in the GUI thread (a plain function connected to it would run in the worker's)."""

    def __init__(self, function) -> None:
        super().__init__()
        self.function = function

    @Slot(float, str)
    def call(self, *args) -> None:
        self.function(*args)


def on_main_thread(signal, function) -> MainThreadCall:
    receiver = MainThreadCall(function)
    signal.connect(receiver.call)
    return receiver  # keep it referenced while connected


def open_photo(qtbot, window: MainWindow, path: Path) -> None:
    with qtbot.waitSignal(window.image_opened, timeout=WAIT_MS):
        assert window.open_path(path)


def test_open_shows_info_and_suggests_deblocking_for_heavy_jpeg(qtbot, window, tmp_path):
    assert [window.controls.ensemble_combo.itemText(i) for i in range(3)] == ["Off", "x4 (4x time)", "x8 (8x time)"]
    assert window.controls.device_combo.itemData(0) == "auto" and window.controls.device_combo.findData("cpu") >= 0
    assert window.device_label.text().startswith("Device: ")  # "CPU, 2 threads" or the GPU's name
    assert window.device_label.toolTip().startswith("Arithmetic: ")  # bf16 or fp32 on a CPU, by its hardware
    assert window.controls.weights_combo.currentText() == "lite (shipped)"
    open_photo(qtbot, window, write_photo(tmp_path / "heavy.jpg", 64, 48, quality=30))
    info = window.info_label.text()
    assert "heavy.jpg" in info and "64 × 48" in info and "JPEG" in info and "quality" in info
    assert (window.view.before.width(), window.view.before.height()) == (64, 48)
    assert window.view.scale == 4  # super-resolution: the before is shown at the output's geometry
    assert not window.suggestion_label.isHidden() and "Deblocking" in window.suggestion_label.text()
    window.suggestion_label.linkActivated.emit("deblock")
    assert window.task == "deblock" and window.view.scale == 1
    assert "dpi" not in info  # the file states no resolution
    Image.open(write_photo(tmp_path / "photo.png")).save(tmp_path / "clean.png", dpi=(300, 300))
    open_photo(qtbot, window, tmp_path / "clean.png")
    assert "300 dpi" in window.info_label.text()
    assert "switch to Super-resolution" in window.suggestion_label.text()  # the last mode may not suit it
    window.suggestion_label.linkActivated.emit("sr")
    assert window.suggestion_label.isHidden()
    assert window.settings.recent_files[:2] == [(tmp_path / "clean.png").resolve(), (tmp_path / "heavy.jpg").resolve()]


def test_bad_file_is_an_error_dialog_not_a_crash(qtbot, window, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    assert window.open_path(broken)
    qtbot.waitUntil(lambda: bool(window.errors), timeout=WAIT_MS)
    assert window.errors[0][0] == "Cannot open the image" and "broken.png" in window.errors[0][1]
    open_photo(qtbot, window, write_photo(tmp_path / "good.png"))  # still usable afterwards


def test_region_preview_restores_only_the_region(qtbot, window, tmp_path):
    open_photo(qtbot, window, write_photo(tmp_path / "photo.png", 40, 32))
    window.view.set_region((4, 6, 12, 10))
    with qtbot.waitSignal(window.preview_shown, timeout=WAIT_MS) as blocker:
        window.preview()
    result = blocker.args[0]
    assert (result.after.width(), result.after.height()) == (48, 40)  # region x4
    assert result.restored is None and window.current_result() is None  # a preview is not a result to save
    assert window.view.after is result.after
    assert result.device_name in window.device_label.text()

    window.view.set_region(None)
    window.controls.mode_combo.setCurrentIndex(window.controls.mode_combo.findData("deblock"))
    assert window.view.after is None  # the sr preview does not belong to the new settings
    with qtbot.waitSignal(window.preview_shown, timeout=WAIT_MS) as blocker:
        window.preview()  # no region: the visible area, here the whole (fitted) photo
    assert (blocker.args[0].after.width(), blocker.args[0].after.height()) == (40, 32)


def test_preview_of_the_visible_area_is_capped(qtbot, window):
    window.view.set_images(QImage(1000, 900, QImage.Format.Format_RGB888), scale=4)
    box = window.preview_region()
    assert box[2:] == (PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE)
    assert box[0] == (1000 - PREVIEW_MAX_SIDE) // 2 and box[1] == (900 - PREVIEW_MAX_SIDE) // 2


@pytest.fixture
def view(qtbot) -> CompareView:
    view = CompareView()
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.show()
    qtbot.waitExposed(view)
    before, after = QImage(20, 10, QImage.Format.Format_RGB888), QImage(80, 40, QImage.Format.Format_RGB888)
    before.fill(Qt.GlobalColor.red)
    after.fill(Qt.GlobalColor.green)
    view.set_images(before, after, scale=4)
    return view


def test_split_follows_mouse_drag_and_arrow_keys(qtbot, view):
    assert view.split == 0.5
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(200, 150))
    qtbot.mouseMove(view, QPoint(300, 150))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(300, 150))
    assert view.split == pytest.approx(0.75)
    qtbot.keyClick(view, Qt.Key.Key_Left)
    assert view.split == pytest.approx(0.70)
    qtbot.keyClick(view, Qt.Key.Key_Right)
    qtbot.keyClick(view, Qt.Key.Key_Right)
    assert view.split == pytest.approx(0.80)
    view.zoom_to(10.0)  # larger than the view: it can pan
    center = view.center
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(100, 150))  # away from the divider: pans
    qtbot.mouseMove(view, QPoint(80, 140))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(80, 140))
    assert view.split == pytest.approx(0.80) and view.center != center
    view.grab()  # paints without error


def test_zoom_is_shared_and_side_by_side_pans_both(qtbot, view):
    view.zoom_fit()
    assert view.zoom == pytest.approx(min(400 / 80, 300 / 40))
    view.zoom_to(1.0)
    assert view.zoom == 1.0
    view.zoom_to(2.0)
    assert view.zoom == 2.0
    wheel = QWheelEvent(QPointF(200, 150), QPointF(view.mapToGlobal(QPoint(200, 150))), QPoint(0, 0), QPoint(0, 120),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view, wheel)
    assert view.zoom == pytest.approx(2.0 * CompareView.ZOOM_STEP)
    view.side_by_side = True
    view.zoom_to(4.0)
    center = view.center
    view.pan_by(-20, 0)
    assert view.center.x() == pytest.approx(center.x() + 5) and view.zoom == 4.0
    view.grab()


def test_shift_drag_selects_a_region_in_input_pixels(qtbot, view):
    view.zoom_to(5.0)  # output pixels are 5 screen pixels; input pixels 20
    view.split = 0.0
    with qtbot.waitSignal(view.region_selected) as blocker:
        qtbot.mousePress(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, QPoint(120, 90))
        qtbot.mouseMove(view, QPoint(200, 170))
        qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, QPoint(200, 170))
    x, y, w, h = blocker.args[0]
    assert (w, h) == (4, 4) or (w, h) == (5, 5)  # 80 screen px = 4 input px, plus a partly covered one
    assert view.region == (x, y, w, h)


def test_full_restore_is_cached_and_saved_with_exif(qtbot, window, tmp_path):
    photo = write_photo(tmp_path / "photo.png", 40, 32)
    open_photo(qtbot, window, photo)
    with qtbot.waitSignal(window.restore_shown, timeout=WAIT_MS) as blocker:
        window.restore()
    result = blocker.args[0]
    assert result.restored.rgb.shape == (128, 160, 3)
    assert window.view.after is result.after
    assert window.progress_bar.value() == 1000
    with qtbot.waitSignal(window.restore_shown, timeout=1000) as blocker:
        window.restore()  # same settings: from the cache, no second run
    assert blocker.args[0] is result and window.cancel_action.isEnabled() is False

    with qtbot.waitSignal(window.image_saved, timeout=WAIT_MS) as blocker:
        window.save()
    saved = blocker.args[0]
    assert saved == tmp_path / "photo_restored.png"
    assert Image.open(saved).size == (160, 128) and date_taken(saved) == TAKEN

    window.ask_save_path = lambda suggested: photo  # the user picks the input itself: refused
    window.save()  # the default name exists now, so Save asks for a name
    qtbot.waitUntil(lambda: bool(window.errors), timeout=WAIT_MS)
    assert "input" in window.errors[0][1]
    assert Image.open(photo).size == (40, 32)

    window.save_options.format_combo.setCurrentIndex(window.save_options.format_combo.findData("jpg"))
    window.ask_save_path = lambda suggested: suggested
    with qtbot.waitSignal(window.image_saved, timeout=WAIT_MS) as blocker:
        window.save_as()
    assert blocker.args[0] == tmp_path / "photo_restored.jpg" and date_taken(blocker.args[0]) == TAKEN


def test_cancel_stops_a_full_restore_mid_way(qtbot, window, tmp_path):
    open_photo(qtbot, window, write_photo(tmp_path / "big.png", 128, 128))
    window.controls.tile_spin.setValue(32)  # 7 x 7 overlapping tiles
    steps = []

    def cancel_on_first_tile(fraction: float, text: str) -> None:
        steps.append((fraction, text))
        if text.startswith("Tile"):
            window.cancel()

    receiver = on_main_thread(window.worker.progress, cancel_on_first_tile)
    with qtbot.waitSignal(window.restore_cancelled, timeout=WAIT_MS):
        window.restore()
    assert steps and steps[-1][0] < 1.0
    assert steps[0][1].startswith("Restoring on ")  # the network is loaded: no more "Loading the network…"
    assert steps[1][1].startswith("Tile 1/49") and "left" in steps[1][1]  # the ETA
    assert window.current_result() is None and window.view.after is None and receiver.function
    assert window.progress_label.text() == "Cancelled." and window.restore_action.isEnabled()


def test_the_batch_count_leaves_out_an_output_folder_typed_inside_the_inputs(qtbot, window, tmp_path):
    inputs = tmp_path / "holiday"
    (inputs / "restored").mkdir(parents=True)
    for path in (inputs / "a.png", inputs / "restored" / "a.png"):
        write_photo(path, 24, 20)
    dialog = window.open_batch()
    dialog.recursive_check.setChecked(True)
    dialog.add_inputs([inputs])
    assert dialog.found_label.text() == "2 photo(s) found."  # the default output is beside the folder
    dialog.output_edit.setText(str(inputs / "restored"))
    dialog.output_edit.editingFinished.emit()  # as leaving the field does (Return would press Start)
    assert dialog.found_label.text() == "1 photo(s) found."


def test_batch_restores_the_good_files_and_reports_the_broken_one(qtbot, window, tmp_path, monkeypatch):
    inputs = tmp_path / "holiday"
    (inputs / "day2").mkdir(parents=True)
    for path in (inputs / "a.png", inputs / "b.jpg", inputs / "day2" / "c.png"):
        write_photo(path, 24, 20, quality=90 if path.suffix == ".jpg" else None)
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    dialog = window.open_batch()
    errors = []
    dialog.show_error = lambda title, text: errors.append(text)
    dialog.add_inputs([inputs])
    assert dialog.output_folder == tmp_path / "restored"  # beside the input folder, not inside it
    assert dialog.found_label.text() == "3 photo(s) found."  # said before Start
    dialog.recursive_check.setChecked(True)
    assert dialog.found_label.text() == "4 photo(s) found."
    dialog.mode_combo.setCurrentIndex(dialog.mode_combo.findData("deblock"))
    with qtbot.waitSignal(dialog.batch_finished, timeout=WAIT_MS) as blocker:
        dialog.start()
    report = blocker.args[0]
    out = tmp_path / "restored"
    assert sorted(p.relative_to(out).as_posix() for p in report.restored) == ["a.png", "b.png", "day2/c.png"]
    assert all(p.is_file() for p in report.restored) and date_taken(out / "a.png") == TAKEN
    assert [p.name for p, _ in report.failed] == ["broken.png"]
    log = dialog.log.toPlainText()
    assert "broken.png" in log and log.count("FAILED") == 1  # logged as it failed, not again at the end
    assert "Restored 3" in dialog.summary_label.text() and "failed 1" in dialog.summary_label.text()
    assert not errors and dialog.open_output_button.isEnabled()
    opened = []
    monkeypatch.setattr("edpn_gui.batch_dialog.QDesktopServices.openUrl", lambda url: opened.append(url) or True)
    dialog.open_output_button.click()
    assert opened == [QUrl.fromLocalFile(str(out))] and not errors
    monkeypatch.setattr("edpn_gui.batch_dialog.QDesktopServices.openUrl", lambda url: False)  # no file manager
    dialog.open_output_button.click()
    assert errors.pop() == f"No file manager could open it. The restored photos are in {out}"

    with qtbot.waitSignal(dialog.batch_finished, timeout=WAIT_MS) as blocker:  # a re-run skips what exists
        dialog.existing_combo.setCurrentIndex(dialog.existing_combo.findData("skip"))
        dialog.start()
    assert len(blocker.args[0].skipped) == 3 and not blocker.args[0].restored
    with qtbot.waitSignal(dialog.batch_finished, timeout=WAIT_MS) as blocker:  # or replaces it, when asked to
        dialog.existing_combo.setCurrentIndex(dialog.existing_combo.findData("overwrite"))
        dialog.start()
    assert len(blocker.args[0].restored) == 3 and not errors

    dialog.output_edit.setText(str(tmp_path / "second"))
    dialog.worker.progress.connect(lambda *_: dialog.cancel())
    with qtbot.waitSignal(dialog.batch_finished, timeout=WAIT_MS) as blocker:
        dialog.start()
    report = blocker.args[0]
    handled = len(report.restored) + len(report.skipped) + len(report.failed)
    assert report.cancelled and len(report.restored) < 3
    assert dialog.summary_label.text().startswith(f"Cancelled after {handled} of 4 photo(s): {4 - handled} not")
    assert dialog.overall_bar.value() < 1000 * (len(report.restored) + len(report.failed) + 1) / 4
    written = sorted(p for p in (tmp_path / "second").rglob("*") if p.is_file())
    assert written == sorted(report.restored)  # the file in progress was discarded, no temporary left behind


def test_status_bar_says_when_the_engine_fell_back_to_the_cpu(qtbot, window, tmp_path):
    open_photo(qtbot, window, write_photo(tmp_path / "photo.png"))
    job = RestoreJob(window._image, window.current_settings(), region=(0, 0, 8, 8))
    reason = "out of GPU memory even with 32px tiles; using the CPU"
    window.worker.finished.emit(RestoreResult(job, QImage(32, 32, QImage.Format.Format_RGB888), None,
                                              "CPU, 2 threads", reason, 1.0))
    assert "fell back to the CPU" in window.device_label.text() and window.device_label.toolTip() == reason
    assert reason in window.statusBar().currentMessage()


def test_settings_survive_a_restart(qtbot, weights_dir, settings_path, tmp_path):
    first = make_window(qtbot, settings_path)
    photo = write_photo(tmp_path / "photo.png")
    open_photo(qtbot, first, photo)
    first.controls.mode_combo.setCurrentIndex(first.controls.mode_combo.findData("deblock"))
    first.controls.ensemble_combo.setCurrentIndex(first.controls.ensemble_combo.findData("x4"))
    first.controls.device_combo.setCurrentIndex(first.controls.device_combo.findData("cpu"))
    first.controls.tile_spin.setValue(128)
    first.save_options.format_combo.setCurrentIndex(first.save_options.format_combo.findData("webp"))
    first.save_options.quality_spin.setValue(80)
    first.resize(720, 540)
    first.close()

    second = make_window(qtbot, settings_path)
    assert second.task == "deblock" and second.controls.ensemble_combo.currentData() == "x4"
    assert second.controls.device_combo.currentData() == "cpu" and second.controls.tile == 128
    assert second.save_options.format_combo.currentData() == "webp" and second.save_options.quality_spin.value() == 80
    assert second.settings.recent_files == [photo.resolve()] and second.settings.open_folder == tmp_path
    assert (second.width(), second.height()) == (720, 540)
    second.recent_menu.aboutToShow.emit()
    with qtbot.waitSignal(second.image_opened, timeout=WAIT_MS):
        second.recent_menu.actions()[0].trigger()
    assert second.view.before is not None


def test_paste_and_drop_open_images(qtbot, window, tmp_path):
    image = QImage(30, 20, QImage.Format.Format_RGB888)
    image.fill(Qt.GlobalColor.darkCyan)
    QGuiApplication.clipboard().setImage(image)
    with qtbot.waitSignal(window.image_opened, timeout=WAIT_MS) as blocker:
        window.paste()
    assert (blocker.args[0].width, blocker.args[0].height) == (30, 20)
    assert window.default_save_path().name == "pasted_restored.png"
    assert window.settings.recent_files == []  # temporary files are not recent files

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(write_photo(tmp_path / "dropped.png")))])
    drop = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.image_opened, timeout=WAIT_MS):
        window.dropEvent(drop)
    assert window.default_save_path() == tmp_path / "dropped_restored.png"


def test_loaded_weights_switch_the_mode_to_their_task(qtbot, window, tmp_path, tiny_overrides):
    custom = save_weights(build_model("lite", "deblock", **tiny_overrides), tmp_path / "mine.safetensors", "lite")
    window.load_weights(custom)
    assert window.task == "deblock" and window.current_settings().model.weights == custom
    window.load_weights(tmp_path / "missing.safetensors")
    assert window.errors and window.errors[0][0] == "Cannot use these weights"


def test_without_shipped_weights_the_app_opens_and_explains(qtbot, settings_path, tmp_path, monkeypatch):
    monkeypatch.setenv("EDPN_WEIGHTS_DIR", str(tmp_path / "empty"))
    window = make_window(qtbot, settings_path)
    assert "No weights" in window.statusBar().currentMessage()
    open_photo(qtbot, window, write_photo(tmp_path / "photo.png"))
    window.restore()
    assert window.errors and window.errors[0][0] == "No weights"


def test_self_test_passes_with_weights_and_fails_clearly_without(weights_dir, tmp_path, monkeypatch, capsys):
    sample = write_photo(tmp_path / "sample.png", 80, 72)
    monkeypatch.setattr(resources, "sample_image", lambda: sample)
    assert gui_app.main(["--self-test"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("self-test sr: OK") and "64x64 -> 256x256" in lines[0]
    assert lines[1].startswith("self-test deblock: OK")

    monkeypatch.setenv("EDPN_WEIGHTS_DIR", str(tmp_path / "nothing-here"))
    assert gui_app.main(["--self-test"]) == 1
    out = capsys.readouterr().out
    assert "self-test sr: FAILED" in out and "no shipped weights" in out


def pixels(image: QImage) -> np.ndarray:
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    rows = np.frombuffer(rgb.constBits(), np.uint8).reshape(rgb.height(), rgb.bytesPerLine())
    return rows[:, :rgb.width() * 3].reshape(rgb.height(), rgb.width(), 3).astype(np.int16)


def restore_now(qtbot, window: MainWindow) -> RestoreResult:
    with qtbot.waitSignal(window.restore_shown, timeout=WAIT_MS) as blocker:
        window.restore()
    return blocker.args[0]


def test_a_photo_changed_on_disk_is_restored_afresh_not_shown_from_the_cache(qtbot, window, tmp_path):
    photo = write_photo(tmp_path / "photo.png", 40, 32)
    open_photo(qtbot, window, photo)
    old = restore_now(qtbot, window)
    Image.fromarray(np.full((32, 40, 3), 200, np.uint8)).save(photo)  # edited elsewhere, same name and size
    open_photo(qtbot, window, photo)
    assert window.current_result() is None and window.view.after is None
    assert not window.save_action.isEnabled() and window.progress_label.text() == ""
    new = restore_now(qtbot, window)
    assert new is not old and new.after != old.after
    with qtbot.waitSignal(window.image_saved, timeout=WAIT_MS) as blocker:
        window.save()
    saved = np.asarray(Image.open(blocker.args[0]), np.int16)
    assert np.abs(saved - pixels(new.after)).max() <= 1 and np.abs(saved - pixels(old.after)).max() > 1


def test_changing_the_tile_size_keeps_the_result(qtbot, window, tmp_path):
    open_photo(qtbot, window, write_photo(tmp_path / "photo.png", 40, 32))
    result = restore_now(qtbot, window)
    window.controls.tile_spin.setValue(64)
    assert window.current_result() is result and window.view.after is result.after
    assert window.save_action.isEnabled() and window.progress_label.text().startswith("Restored in")
    window.controls.tile_spin.setValue(0)
    assert window.current_result() is result


def test_status_texts_never_speak_of_an_earlier_photo_or_job(qtbot, window, tmp_path):
    first = write_photo(tmp_path / "first.png", 128, 128)
    open_photo(qtbot, window, first)
    restore_now(qtbot, window)
    assert window.progress_label.text().startswith("Restored in")
    open_photo(qtbot, window, write_photo(tmp_path / "second.png"))
    assert window.progress_label.text() == "" and window.progress_bar.value() == 0

    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    window.open_path(empty)
    qtbot.waitUntil(lambda: bool(window.errors), timeout=WAIT_MS)
    assert not window.statusBar().currentMessage().startswith("Opening")
    assert "empty.png" in window.statusBar().currentMessage()

    open_photo(qtbot, window, first)  # unchanged on disk: its result comes back from the cache
    assert window.current_result() is not None and window.progress_label.text().startswith("Restored in")
    window.ask_save_path = lambda suggested: first  # the input itself: refused
    window.errors.clear()
    window.save_as()
    qtbot.waitUntil(lambda: bool(window.errors), timeout=WAIT_MS)
    assert not window.statusBar().currentMessage().startswith("Saving")

    window.controls.tile_spin.setValue(32)
    window.controls.ensemble_combo.setCurrentIndex(window.controls.ensemble_combo.findData("x4"))
    receiver = on_main_thread(window.worker.progress, lambda *_: window.cancel())
    with qtbot.waitSignal(window.restore_cancelled, timeout=WAIT_MS):
        window.restore()
    del receiver
    assert window.progress_label.text() == "Cancelled."
    # back to the cached result
    window.controls.ensemble_combo.setCurrentIndex(window.controls.ensemble_combo.findData("off"))
    assert window.progress_label.text().startswith("Restored in") and window.view.after is not None


def test_a_region_preview_is_shown_where_the_user_looks(qtbot, window, tmp_path):
    open_photo(qtbot, window, write_photo(tmp_path / "photo.png", 200, 160))
    box = (10, 60, 40, 40)  # on the left, the "Before" side of the centred split
    window.view.set_region(box)
    assert "40 × 40 px" in window.statusBar().currentMessage() and window.clear_region_action.isEnabled()
    with qtbot.waitSignal(window.preview_shown, timeout=WAIT_MS):
        window.preview()
    (shown,) = window.view.on_screen(box)
    divider = window.view.split * window.view.width()
    assert shown.left() < divider < shown.right()  # the split runs through the box: before and after together
    assert window.view.viewports()[0].contains(shown)

    window.side_by_side_action.setChecked(True)
    window.view.zoom_to(4.0)
    window.view.pan_by(-3000, -3000)  # far from the next box
    corner = (150, 120, 30, 30)
    window.view.set_region(corner)
    with qtbot.waitSignal(window.preview_shown, timeout=WAIT_MS):
        window.preview()
    for view, shown in zip(window.view.viewports(), window.view.on_screen(corner)):
        assert view.contains(shown)  # brought into view, on both sides
    window.clear_region_action.trigger()
    assert window.view.region is None and not window.clear_region_action.isEnabled()


def test_garbage_is_collected_on_the_gui_thread_while_a_worker_restores(qtbot, window, tmp_path):
    open_photo(qtbot, window, write_photo(tmp_path / "photo.png", 64, 48))
    collected_in = []

    def note_thread(phase: str, info: dict) -> None:
        if phase == "start":
            collected_in.append(threading.current_thread() is threading.main_thread())

    gc.callbacks.append(note_thread)
    try:
        with qtbot.waitSignal(window.restore_shown, timeout=WAIT_MS):
            window.restore()  # the worker allocates thousands of objects, crossing the first threshold
            for _ in range(2000):  # and the GUI thread makes cyclic garbage meanwhile
                cycle: list = []
                cycle.append(cycle)
        qtbot.wait(3 * CHECK_INTERVAL_MS)
    finally:
        gc.callbacks.remove(note_thread)
    assert collected_in and all(collected_in)


def test_batch_progress_and_time_left_count_pixels_not_files(qtbot, window, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_photo(folder / "a_small.png", 8, 8)
    write_photo(folder / "b_big.png", 120, 96)
    dialog = window.open_batch()
    dialog.show_error = lambda title, text: pytest.fail(text)
    dialog.add_inputs([folder])
    seen = []
    dialog.worker.file_started.connect(lambda index, count, name: seen.append(("file", name)))
    dialog.worker.progress.connect(lambda overall, current, text: seen.append(("progress", overall)))
    with qtbot.waitSignal(dialog.batch_finished, timeout=WAIT_MS):
        dialog.start()
    big = seen.index(("file", "b_big.png"))
    overall_at_big = next(value for kind, value in seen[big:] if kind == "progress")
    assert overall_at_big < 0.01  # one small file of two is not half of the work: 64 of 11,584 pixels

    pixels = PixelProgress([64, 11_520])
    assert pixels.fraction(1, 0.5) == pytest.approx((64 + 5_760) / 11_584)
    assert pixels.seconds_left(1, 0.0, elapsed=1.0) == pytest.approx(11_520 / 64)  # the small one took 1 s
    assert pixels.seconds_left(0, 0.0, elapsed=0.0) is None


def test_batch_warns_when_jpeg_would_drop_transparency_or_text(qtbot, window, tmp_path):
    folder = tmp_path / "logos"
    folder.mkdir()
    Image.new("RGBA", (16, 12), (200, 30, 30, 100)).save(folder / "logo.png")
    settings = PngImagePlugin.PngInfo()
    settings.add_text("parameters", "a logo")
    Image.new("RGB", (16, 12)).save(folder / "generated.png", pnginfo=settings)
    dialog = window.open_batch()
    dialog.show_error = lambda title, text: pytest.fail(text)
    dialog.add_inputs([folder])
    dialog.format_combo.setCurrentIndex(dialog.format_combo.findData("jpg"))
    with qtbot.waitSignal(dialog.batch_finished, timeout=WAIT_MS):
        dialog.start()
    assert "1 photo(s) have transparency" in dialog.log.toPlainText() and "PNG" in dialog.log.toPlainText()
    assert "1 photo(s) carry text that JPEG cannot hold" in dialog.log.toPlainText()


def test_an_ensemble_reports_progress_inside_each_tile(qtbot, window, tmp_path):
    open_photo(qtbot, window, write_photo(tmp_path / "photo.png", 40, 32))
    window.controls.ensemble_combo.setCurrentIndex(window.controls.ensemble_combo.findData("x4"))
    texts = []
    window.worker.progress.connect(lambda fraction, text: texts.append((fraction, text)))
    restore_now(qtbot, window)
    passes = [(f, t) for f, t in texts if ", pass " in t]
    assert [t.split(",")[1] for _, t in passes] == [" pass 1/4", " pass 2/4", " pass 3/4"]
    assert [round(f, 2) for f, _ in passes] == [0.25, 0.5, 0.75] and texts[-1] == (1.0, texts[-1][1])
    assert window.progress_label.text().endswith("(self-ensemble x4: 4 times the time).")  # said with the time


def test_tile_size_below_the_minimum_is_raised_to_it(qtbot, window):
    window.controls.tile_spin.lineEdit().selectAll()
    qtbot.keyClicks(window.controls.tile_spin, "10")
    qtbot.keyClick(window.controls.tile_spin, Qt.Key.Key_Return)
    assert window.controls.tile_spin.value() == MIN_TILE and window.controls.tile == MIN_TILE
    window.controls.tile_spin.lineEdit().selectAll()
    qtbot.keyClicks(window.controls.tile_spin, "128")
    qtbot.keyClick(window.controls.tile_spin, Qt.Key.Key_Return)
    assert window.controls.tile == 128


def test_a_dropped_folder_opens_the_batch_dialog_with_it(qtbot, window, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    write_photo(folder / "one.png")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder))])
    window.dropEvent(QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier))
    assert not window.errors and window.batch_dialog is not None and window.batch_dialog.isVisible()
    assert window.batch_dialog.inputs == [folder] and window.batch_dialog.found_label.text() == "1 photo(s) found."
    window.batch_dialog.recursive_check.setChecked(True)
    assert AppSettings(window.settings._store.fileName()).batch_recursive  # remembered

    other = tmp_path / "more"
    other.mkdir()
    assert window.open_path(other)  # a folder given on the command line is a batch too, not an error
    assert window.batch_dialog.inputs == [folder, other] and not window.errors


def test_a_small_window_scrolls_the_panel_instead_of_squashing_it(qtbot, window):
    window.resize(640, 400)
    qtbot.waitUntil(lambda: window.height() <= 420)
    boxes = window._panel.widget().findChildren(QGroupBox)
    assert len(boxes) == 3
    assert all(box.height() >= box.minimumSizeHint().height() for box in boxes)
    assert window._panel.verticalScrollBar().maximum() > 0  # the rest is a scroll away
    assert window.view.width() >= window.view.minimumWidth()


def test_quitting_asks_about_an_unsaved_result_and_never_waits_for_a_restore(qtbot, window, tmp_path):
    open_photo(qtbot, window, write_photo(tmp_path / "photo.png", 40, 32))
    restore_now(qtbot, window)
    window.confirm = lambda title, text: window.questions.append(title) and False  # "No"
    window.close()
    assert window.questions == ["Quit without saving?"] and window.isVisible()
    with qtbot.waitSignal(window.image_saved, timeout=WAIT_MS):
        window.save()
    window.questions.clear()

    open_photo(qtbot, window, write_photo(tmp_path / "big.png", 128, 128))
    window.controls.tile_spin.setValue(32)
    window.controls.ensemble_combo.setCurrentIndex(window.controls.ensemble_combo.findData("x8"))
    with qtbot.waitSignal(window.worker.progress, timeout=WAIT_MS):
        window.restore()
    window.close()  # a running job is work too: "No" keeps it running
    assert window.questions == ["Stop the restoration?"] and window.isVisible() and not window._job.cancel.cancelled
    window.confirm = lambda title, text: window.questions.append(title) is None  # "Yes"
    window.close()  # the window goes at once, the job is cancelled behind it
    assert not window.isVisible() and window._job.cancel.cancelled
    window.wait_for_workers()
    assert window.current_result() is None


def test_another_photo_or_other_settings_never_drop_a_result_silently(qtbot, window, tmp_path):
    first = write_photo(tmp_path / "first.png", 40, 32)
    open_photo(qtbot, window, first)
    result = restore_now(qtbot, window)
    window.confirm = lambda title, text: window.questions.append(title) and False  # "No"
    assert not window.open_path(write_photo(tmp_path / "second.png"))
    assert window.questions == ["Open another photo?"] and window.view.after is result.after

    window.controls.ensemble_combo.setCurrentIndex(window.controls.ensemble_combo.findData("x4"))
    assert window.view.after is None and "previous settings is kept" in window.statusBar().currentMessage()
    window.controls.ensemble_combo.setCurrentIndex(window.controls.ensemble_combo.findData("off"))
    assert window.view.after is result.after
    window.confirm = lambda title, text: True  # the fixture's close may drop it


def test_transparency_is_shown_and_never_dropped_silently(qtbot, window, tmp_path):
    logo = tmp_path / "logo.png"
    Image.new("RGBA", (24, 20), (200, 30, 30, 0)).save(logo)
    window.save_options.format_combo.setCurrentIndex(window.save_options.format_combo.findData("jpg"))
    open_photo(qtbot, window, logo)
    assert window.view.before.hasAlphaChannel()  # drawn over a checkerboard
    note = window.save_options.alpha_note
    assert not note.isHidden() and "JPEG cannot store" in note.text()
    assert window.default_save_path() == tmp_path / "logo_restored.png"
    result = restore_now(qtbot, window)
    assert result.after.hasAlphaChannel()
    with qtbot.waitSignal(window.image_saved, timeout=WAIT_MS) as blocker:
        window.save()
    assert blocker.args[0].suffix == ".png" and Image.open(blocker.args[0]).mode == "RGBA"
    assert "JPEG cannot store" in window.statusBar().currentMessage()

    window.ask_save_path = lambda suggested: tmp_path / "flat.jpg"  # the user insists on JPEG
    window.confirm = lambda title, text: window.questions.append(title) and False
    window.save_as()
    assert window.questions == ["Drop the transparency?"] and not (tmp_path / "flat.jpg").exists()


def test_saving_a_generated_png_as_jpeg_says_its_text_was_left_out(qtbot, window, tmp_path):
    settings = PngImagePlugin.PngInfo()
    settings.add_text("parameters", "a cat on a mat, Steps: 20")
    Image.open(write_photo(tmp_path / "photo.png")).save(tmp_path / "generated.png", pnginfo=settings)
    open_photo(qtbot, window, tmp_path / "generated.png")
    restore_now(qtbot, window)
    window.ask_save_path = lambda suggested: tmp_path / "generated.jpg"
    with qtbot.waitSignal(window.image_saved, timeout=WAIT_MS):
        window.save_as()
    assert "(JPEG cannot hold its text parameters)" in window.statusBar().currentMessage()
    window.ask_save_path = lambda suggested: tmp_path / "restored.png"
    with qtbot.waitSignal(window.image_saved, timeout=WAIT_MS) as blocker:
        window.save_as()
    assert Image.open(blocker.args[0]).text == {"parameters": "a cat on a mat, Steps: 20"}
    assert "cannot hold" not in window.statusBar().currentMessage()


def test_zoom_label_mode_hint_and_defaults_say_what_they_mean(qtbot, window, tmp_path):
    open_photo(qtbot, window, write_photo(tmp_path / "photo.png", 40, 32))
    window.view.zoom_to(0.55)  # the x4 result at 55 %: the photo itself is shown at 220 %
    assert window.zoom_label.text() == "Zoom 220 %"
    window.controls.mode_combo.setCurrentIndex(window.controls.mode_combo.findData("deblock"))
    assert window.zoom_label.text() == "Zoom 220 %"  # the same picture on screen, the same number
    assert not window.suggestion_label.isHidden() and "Super-resolution" in window.suggestion_label.text()
    window.suggestion_label.linkActivated.emit("sr")
    assert window.task == "sr" and window.suggestion_label.isHidden()
    assert window.view.smooth_before  # "Before" is not shown with square pixels unless asked
    labels = {label.text() for label in window.findChildren(QLabel)}
    assert {"Mode", "Self-ensemble", "Tile size"} <= labels and "Quality" not in labels
    assert f"EDPN Restore {app_version()}" in about_text() and "Batch" in about_text()


def test_a_finished_worker_is_deleted_in_the_gui_thread(qtbot):
    """Deleted in its own thread, a Python-made worker deadlocked the app when a window was built meanwhile."""

    class Worker(QObject):
        pass

    worker = Worker()
    deleted_in = []
    worker.destroyed.connect(lambda: deleted_in.append(threading.get_ident()), Qt.ConnectionType.DirectConnection)
    thread = start_in_thread(worker, "edpn-test")
    thread.quit()
    assert thread.wait(5000)
    qtbot.waitUntil(lambda: bool(deleted_in), timeout=5000)
    assert deleted_in == [threading.main_thread().ident]


def test_a_batch_runs_with_the_window_settings_of_when_it_starts(qtbot, window, tmp_path):
    """Changing the tile or device in the main window while the batch dialog is open is not ignored."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_photo(inputs / "a.png", 24, 20)
    dialog = window.open_batch()
    dialog.add_inputs([inputs])
    window.controls.tile_spin.setValue(96)
    window.controls.device_combo.setCurrentIndex(window.controls.device_combo.findData("cpu"))
    with qtbot.waitSignal(dialog._run_requested, timeout=WAIT_MS) as started:
        dialog.start()
    request = started.args[0]
    assert (request.batch.run.tile, request.model.device) == (96, "cpu")
    qtbot.waitUntil(lambda: not dialog.running, timeout=WAIT_MS)


@pytest.fixture
def weight_loads(monkeypatch) -> list[Path]:
    """Every weights file the engine loads from now on."""
    from edpn_core.inference import engine

    loads: list[Path] = []
    real_load = engine.load_model

    def counted_load(path: Path) -> object:
        loads.append(path)
        return real_load(path)

    monkeypatch.setattr(engine, "load_model", counted_load)
    return loads


def test_changing_tile_or_ensemble_does_not_load_the_weights_again(qtbot, window, tmp_path, weight_loads):
    loads = weight_loads
    open_photo(qtbot, window, write_photo(tmp_path / "photo.png", 40, 32))
    window.view.set_region((4, 6, 12, 10))
    for tile, ensemble in ((0, "off"), (64, "x4")):
        window.controls.tile_spin.setValue(tile)
        window.controls.ensemble_combo.setCurrentIndex(window.controls.ensemble_combo.findData(ensemble))
        with qtbot.waitSignal(window.preview_shown, timeout=WAIT_MS) as blocker:
            window.preview()
        assert blocker.args[0].job.settings.run.ensemble == ensemble
    assert len(loads) == 1
    window.controls.mode_combo.setCurrentIndex(window.controls.mode_combo.findData("deblock"))
    with qtbot.waitSignal(window.preview_shown, timeout=WAIT_MS):
        window.preview()
    assert len(loads) == 2  # other weights: loaded once more


def test_a_batch_uses_the_weights_the_window_already_loaded(qtbot, window, tmp_path, weight_loads):
    """One cache of loaded weights serves single restores and batches: same weights, no second load."""
    open_photo(qtbot, window, write_photo(tmp_path / "photo.png", 40, 32))
    window.view.set_region((4, 6, 12, 10))
    with qtbot.waitSignal(window.preview_shown, timeout=WAIT_MS):
        window.preview()
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_photo(inputs / "a.png", 24, 20)
    dialog = window.open_batch()
    dialog.add_inputs([inputs])
    with qtbot.waitSignal(dialog.batch_finished, timeout=WAIT_MS) as finished:
        dialog.start()
    assert len(finished.args[0].restored) == 1
    assert len(weight_loads) == 1


def test_the_tile_setting_reads_auto_for_anything_but_a_size(settings_path):
    """Settings files before 2026-12 stored Auto as 0, which the engine read as 'whole image'."""
    settings_path.parent.mkdir(parents=True, exist_ok=True)
    settings_path.write_text("[restore]\ntile=0\n")
    assert AppSettings(settings_path).tile == "auto"
    settings = AppSettings(settings_path)
    settings.tile = 128
    settings.sync()
    assert AppSettings(settings_path).tile == 128
    settings.tile = "auto"
    settings.sync()
    assert AppSettings(settings_path).tile == "auto" and "tile=auto" in settings_path.read_text()


def test_a_huge_job_is_announced_with_its_size_and_time_before_it_starts(qtbot, window, tmp_path, monkeypatch):
    assert format_seconds(253 * 60) == "4 h 13 min" and format_seconds(125) == "2 min 05 s"
    open_photo(qtbot, window, write_photo(tmp_path / "photo.png", 40, 32))
    monkeypatch.setattr(main_window_module, "LARGE_OUTPUT_MEGAPIXELS", 0.01)  # this photo's 160 x 128 is "huge"
    window.confirm = lambda title, text: window.questions.append(text) and False  # "No"
    window.restore()
    assert window._busy is None and window.current_result() is None  # nothing started
    assert "160 × 128 px" in window.questions[0] and "Preview first" in window.questions[0]

    window.view.set_region((0, 0, 16, 16))
    with qtbot.waitSignal(window.preview_shown, timeout=WAIT_MS):
        window.preview()  # measures the speed
    monkeypatch.setattr(main_window_module, "LARGE_OUTPUT_MEGAPIXELS", 1000)
    monkeypatch.setattr(main_window_module, "LONG_JOB_SECONDS", 0)
    window.controls.ensemble_combo.setCurrentIndex(window.controls.ensemble_combo.findData("x4"))
    window.restore()
    assert "take about" in window.questions[1] and "4 times" in window.questions[1] and window._busy is None
    window.confirm = lambda title, text: True
    restore_now(qtbot, window)


def test_zooming_out_with_the_wheel_centres_the_photo(qtbot, view):
    view.zoom_to(10.0)  # 800 x 400 on screen, larger than the 400 x 300 view
    view.pan_by(3000, 3000)  # to the photo's top-left corner
    corner = QPointF(view.mapToGlobal(QPoint(0, 0)))
    for _ in range(12):  # out, about the top-left corner, until it is smaller than the view
        QApplication.sendEvent(view, QWheelEvent(QPointF(0, 0), corner, QPoint(0, 0), QPoint(0, -120),
                                                 Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                                                 Qt.ScrollPhase.NoScrollPhase, False))
    assert view.zoom * 80 < 400
    assert (view.center.x(), view.center.y()) == (40, 20)  # the middle of the 80 x 40 result, not a corner


def test_save_as_starts_where_the_last_save_went_and_never_offers_the_input(qtbot, window, tmp_path):
    photo = write_photo(tmp_path / "photo.png", 40, 32)
    open_photo(qtbot, window, photo)
    restore_now(qtbot, window)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    suggested = []
    window.ask_save_path = lambda path: suggested.append(path) or elsewhere / "typed.jpg"  # Format says PNG
    with qtbot.waitSignal(window.image_saved, timeout=WAIT_MS):
        window.save_as()
    assert Image.open(elsewhere / "typed.jpg").format == "JPEG"
    assert window.save_options.chosen_format == "jpg"  # the box says what was written
    window.save_as()
    assert suggested[1].parent == elsewhere and window.settings.save_folder == elsewhere

    dialog = window.save_dialog(tmp_path / "photo_restored.png")
    refusals = []
    dialog.refuse = refusals.append
    dialog.selectFile(str(photo))
    dialog.accept()  # refused in the dialog, before Qt would ask to replace it
    assert dialog.result() != dialog.DialogCode.Accepted and "photo.png is the photo being restored" in refusals[0]
    dialog.selectFile(str(tmp_path / "named"))
    dialog.accept()
    assert dialog.result() == dialog.DialogCode.Accepted and dialog.chosen_path() == tmp_path / "named.jpg"


def test_the_settings_panel_does_not_move_between_photos_and_modes(qtbot, window, tmp_path):
    def layout() -> tuple[int, int]:
        QApplication.processEvents()
        return window.controls.y(), window.save_options.y()

    empty = layout()
    open_photo(qtbot, window, write_photo(tmp_path / "heavy.jpg", 40, 32, quality=30))
    assert not window.suggestion_label.isHidden() and layout() == empty
    open_photo(qtbot, window, write_photo(tmp_path / ("a long file name " * 4 + ".png"), 40, 32))
    assert window.suggestion_label.isHidden() and layout() == empty
    window.controls.mode_combo.setCurrentIndex(window.controls.mode_combo.findData("deblock"))
    assert not window.suggestion_label.isHidden() and layout() == empty
    restore_now(qtbot, window)
    assert window.progress_label.text() and layout() == empty


def test_speed_settings_say_they_change_speed_only_and_stale_notes_go(qtbot, window, tmp_path, tiny_overrides):
    open_photo(qtbot, window, write_photo(tmp_path / "photo.png", 40, 32))
    result = restore_now(qtbot, window)
    window.controls.tile_spin.setValue(64)
    window.confirm = lambda title, text: window.questions.append(text) and False  # "No": the known result
    assert restore_now(qtbot, window) is result and "never the result" in window.questions[0]
    window.confirm = lambda title, text: True  # "Yes": timed again with the new tile
    again = restore_now(qtbot, window)
    assert again is not result and again.job.settings.run.tile == 64

    window.load_weights(save_weights(build_model("lite", "deblock", **tiny_overrides), tmp_path / "d.safetensors",
                                     "lite"))
    assert window.task == "deblock" and "mode switched" in window.statusBar().currentMessage()
    window.controls.mode_combo.setCurrentIndex(window.controls.mode_combo.findData("sr"))
    assert "mode switched" not in window.statusBar().currentMessage()


def test_desktop_habits_clipboard_output_folder_notification_and_shortcuts(qtbot, window, tmp_path, monkeypatch):
    open_photo(qtbot, window, write_photo(tmp_path / "photo.png", 40, 32))
    assert not window.copy_action.isEnabled() and not window.open_folder_action.isEnabled()
    notes = []
    window.notify = notes.append
    monkeypatch.setattr(main_window_module, "NOTIFY_AFTER_SECONDS", 0)  # every job is "long"
    monkeypatch.setattr(QApplication, "activeWindow", staticmethod(lambda: None))  # the user is elsewhere
    result = restore_now(qtbot, window)
    assert notes == ["Restoration of photo.png done."]

    window.copy_action.trigger()
    assert QGuiApplication.clipboard().image().size() == result.after.size()
    with qtbot.waitSignal(window.image_saved, timeout=WAIT_MS):
        window.save()
    opened = []
    monkeypatch.setattr(main_window_module.QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    window.open_folder_action.trigger()
    assert opened == [QUrl.fromLocalFile(str(tmp_path))]

    shortcuts = window.shortcuts_text()
    for name, keys in (("Restore", "Ctrl+R"), ("Preview", "Ctrl+P"), ("Copy Result", "Ctrl+Shift+C"),
                       ("Batch", "Ctrl+B"), ("Select Region", "R"), ("Move the divider", "Left / Right")):
        assert f"<td>{name}</td><td>&nbsp;&nbsp;<b>{keys}" in shortcuts


def test_the_window_follows_the_desktops_dark_or_light_scheme(qtbot, window):
    app = QApplication.instance()
    light = app.palette()
    try:
        follow_color_scheme(app)
        app.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)  # as the desktop reports a switch
        assert app.palette().color(QPalette.ColorRole.Window).lightness() < 128
        QApplication.processEvents()  # the widgets hear of it
        assert window.palette().color(QPalette.ColorRole.Window).lightness() < 128
        assert window.controls.palette().color(QPalette.ColorRole.WindowText).lightness() > 128
        app.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Light)
        QApplication.processEvents()
        assert window.palette().color(QPalette.ColorRole.Window) == light.color(QPalette.ColorRole.Window)
    finally:
        app.styleHints().colorSchemeChanged.disconnect()
        app.setPalette(light)


def test_strength_blends_at_once_and_the_same_in_the_view_a_save_a_batch_and_the_cli(qtbot, window, tmp_path,
                                                                                   settings_path, weights_dir):
    (tmp_path / "in").mkdir()
    photo = write_photo(tmp_path / "in" / "photo.png", 40, 32)
    open_photo(qtbot, window, photo)
    result = restore_now(qtbot, window)
    base = code_values(network_base(window._image.rgb, 4), 8).astype(np.int16)  # the network's bicubic base
    window.strength_slider.setValue(0)
    assert window._busy is None and window._job is None  # shown at once: no network ran
    assert np.abs(pixels(window.view.after) - base).max() == 0
    window.strength_slider.setValue(100)
    assert window.view.after is result.after

    window.strength_slider.setValue(40)
    assert AppSettings(settings_path).strength == 40  # remembered
    shown = pixels(window.view.after)
    assert np.abs(shown - base).max() > 0 and np.abs(shown - pixels(result.after)).max() > 0
    with qtbot.waitSignal(window.image_saved, timeout=WAIT_MS) as blocker:
        window.save()
    saved = np.asarray(Image.open(blocker.args[0]), np.int16)
    assert np.abs(saved - shown).max() <= 1  # the view blends the 8-bit After, the file the float output

    dialog = window.open_batch()
    dialog.add_inputs([photo.parent])
    with qtbot.waitSignal(dialog.batch_finished, timeout=WAIT_MS) as blocker:
        dialog.start()
    batched = next(path for path in blocker.args[0].restored if path.name == "photo.png")
    assert "Strength 40 %" in dialog.log.toPlainText()  # a batch says it is not at full strength
    cli_out = tmp_path / "cli"
    assert cli_main(["restore", str(photo), "-o", str(cli_out), "--task", "sr", "--strength", "40", "--weights",
                     str(weights_dir / "sr-lite.safetensors")]) == 0
    from_cli = np.asarray(Image.open(cli_out / "photo.png"), np.int16)
    np.testing.assert_array_equal(np.asarray(Image.open(batched), np.int16), from_cli)
    np.testing.assert_array_equal(saved, from_cli)


def test_dragging_the_strength_slider_blends_when_it_is_let_go(qtbot, window, tmp_path):
    """A large result takes a while to blend: while the slider is dragged only its label follows."""
    open_photo(qtbot, window, write_photo(tmp_path / "photo.png", 40, 32))
    result = restore_now(qtbot, window)
    window.strength_slider.setSliderDown(True)
    window.strength_slider.setSliderPosition(30)
    assert window.strength_label.text() == "30 %" and window.view.after is result.after
    window.strength_slider.setSliderDown(False)
    assert window.view.after is not result.after and window.settings.strength == 30
