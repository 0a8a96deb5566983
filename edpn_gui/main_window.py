"""The main window: open a photo, preview a region, restore it, compare, save. The engine does the work in a
worker thread; this module only dispatches jobs and shows what comes back.

Its settings widgets live in controls.py, its Qt-free state in result_cache.py and weights_catalogue.py. What
stays here (about 800 lines) are the handlers of the window's actions: each is short, and all of them share the
window's state (the open photo, the running job, the cached results), which splitting them apart would only
pass around."""
from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PySide6.QtCore import QMimeData, Qt, QTemporaryDir, QUrl, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QIcon,
    QImage,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QScrollArea,
    QSlider,
    QStyle,
    QSystemTrayIcon,
    QVBoxLayout,
    QWidget,
)

from edpn_core import resources
from edpn_core.config import TASK_SCALES, Task
from edpn_core.inference.device import describe_device, select_device
from edpn_core.inference.engine import ENSEMBLES, Ensemble
from edpn_core.inference.imageio import (
    IMAGE_EXTENSIONS,
    SAVE_FORMATS,
    LoadedImage,
    metadata_left_out,
    save_format_named,
)
from edpn_core.inference.precision import describe_precision
from edpn_core.inference.strength import blend
from edpn_core.model_io import WeightsError

from .batch_dialog import BatchDialog
from .choices import ALPHA_FORMATS, FORMAT_LABELS, TASK_LABELS
from .compare_view import Box, CompareView, describe_box
from .controls import RestorationControls, SaveOptions, action_buttons, ask_yes_no, select_data
from .restorer_cache import RestorerCache
from .result_cache import ResultCache
from .settings import AppSettings
from .workers import (
    OpenedImage,
    RestoreJob,
    RestoreResult,
    RestoreSettings,
    RestoreWorker,
    SaveJob,
    SourceId,
    format_seconds,
    start_in_thread,
    to_qimage,
)

HEAVY_JPEG_QUALITY = 60  # at or below this, blocking artefacts dominate: suggest Deblocking
PREVIEW_MAX_SIDE = 256  # input pixels: a preview must come back within seconds, even on a CPU
PANEL_WIDTH = 300  # the settings panel, in pixels
RESULT_CACHE_BYTES = 2 << 30  # full results kept for instant re-display (the newest is always kept)
LARGE_OUTPUT_MEGAPIXELS = 150  # Restore asks before a bigger output (a 12 MP photo x4 is 192 MP, 9000 x 7000 1008)
LONG_JOB_SECONDS = 15 * 60  # and before a job estimated to take longer
NOTIFY_AFTER_SECONDS = 60  # a job this long ends with a desktop notification when the window is not active
ICON_PATH = resources.bundle_root() / "resources" / "icons" / "edpn.svg"


def app_icon() -> QIcon:
    return QIcon(str(ICON_PATH))


def app_version() -> str:
    try:
        return metadata.version("edpn-restore")
    except metadata.PackageNotFoundError:  # a frozen build without the package metadata
        return "unknown version"


def about_text() -> str:
    return (f"<h3>EDPN Restore {app_version()}</h3>"
            "<p>Restores blurry photos with the Enhanced Deep Pyramid Network. Everything runs on this computer.</p>"
            "<ul><li><b>Super-resolution x4</b>: a blurry, small photo to 4 times its size.</li>"
            "<li><b>Deblocking</b>: a blurry, heavily compressed JPEG to a clean photo of the same size.</li></ul>"
            "<p><b>How to</b>: open, drop or paste a photo; drag a region (R, or Shift+drag) and Preview it "
            "(Ctrl+P) to try the settings in seconds; Restore (Ctrl+R) the whole photo; drag the divider to "
            "compare; Save (Ctrl+S) writes &lt;name&gt;_restored beside it, with its metadata. Drop a folder, or "
            "File &gt; Batch (Ctrl+B), to restore many photos. Help &gt; Keyboard Shortcuts lists every key.</p>"
            "<p><b>Self-ensemble</b> averages the network over rotations: slightly better, 4 or 8 times slower. "
            "<b>Tile size</b> only changes speed and memory. <b>Strength</b> below 100 % blends the restoration "
            "with the photo, to take back a result too strong for it, without running the network again.</p>"
            f"<p>Torch {torch.__version__}. Code: Apache-2.0.</p>")


def keeps_alpha(path: Path) -> bool:
    """Whether the format `path`'s extension names can store transparency."""
    return save_format_named(path.suffix) in ALPHA_FORMATS


def qimage_pixels(image: QImage) -> np.ndarray:
    """An RGB888 or RGBA8888 QImage's pixels, H x W x 3 or 4 uint8, copied (rows are padded in a QImage)."""
    depth = 4 if image.hasAlphaChannel() else 3
    converted = image.convertToFormat(QImage.Format.Format_RGBA8888 if depth == 4 else QImage.Format.Format_RGB888)
    rows = np.frombuffer(converted.constBits(), np.uint8).reshape(converted.height(), converted.bytesPerLine())
    return rows[:, :converted.width() * depth].reshape(converted.height(), converted.width(), depth).copy()


def ensemble_note(ensemble: Ensemble) -> str:
    """Said wherever a time is shown: a remembered x8 otherwise makes every restore silently 8 times slower."""
    return "" if ensemble == "off" else f" (self-ensemble {ensemble}: {ENSEMBLES[ensemble]} times the time)"


class SaveDialog(QFileDialog):
    """Save As, refusing the photo being restored in the dialog itself, before Qt asks to replace it."""

    def __init__(self, parent: QWidget, suggested: Path, file_format: str, protected: Path | None) -> None:
        self._filters = {fmt: f"{label} (*{SAVE_FORMATS[fmt].extension})" for fmt, label in FORMAT_LABELS.items()}
        super().__init__(parent, "Save restored photo", str(suggested), ";;".join(self._filters.values()))
        self.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        self.selectNameFilter(self._filters[file_format])
        self.selectFile(str(suggested))
        self._protected = protected

    def chosen_path(self) -> Path | None:
        """The file named, with the chosen format's extension when the name has none of ours."""
        files = self.selectedFiles()
        if not files or not files[0]:
            return None
        path = Path(files[0])
        if save_format_named(path.suffix) is None:
            fmt = next((f for f, text in self._filters.items() if text == self.selectedNameFilter()), "png")
            path = path.with_name(path.name + SAVE_FORMATS[fmt].extension)
        return path

    def accept(self) -> None:
        path = self.chosen_path()
        if path is not None and self._protected is not None and path.exists() and path.samefile(self._protected):
            self.refuse(f"{path.name} is the photo being restored: it is never written over. Choose another name.")
            return
        super().accept()

    def refuse(self, text: str) -> None:
        QMessageBox.warning(self, "Choose another name", text)


def default_save_name(source: Path, file_format: str) -> str:
    return f"{source.stem}_restored{SAVE_FORMATS[file_format].extension}"


def speed_key(settings: RestoreSettings) -> tuple:
    return str(settings.model.weights), settings.model.device


def seconds_per_pixel_pass(result: RestoreResult) -> float:
    """The measured speed of a run, to estimate the next ones (loading the weights included: an upper bound)."""
    job = result.job
    width, height = job.region[2:] if job.region is not None else (job.image.width, job.image.height)
    return result.seconds / (width * height * ENSEMBLES[job.settings.run.ensemble])


def big_job_question(width: int, height: int, scale: int, passes: int,
                     seconds_per_pixel_pass: float | None) -> str | None:
    """What to ask before restoring a `width` x `height` photo whose output or estimated time is far beyond
    the usual, or None. The time is estimated from the last run on the same weights and device."""
    out_width, out_height = width * scale, height * scale
    megapixels = out_width * out_height / 1e6
    seconds = None if seconds_per_pixel_pass is None else seconds_per_pixel_pass * width * height * passes
    if megapixels <= LARGE_OUTPUT_MEGAPIXELS and (seconds is None or seconds <= LONG_JOB_SECONDS):
        return None
    estimate = (f"about {format_seconds(seconds)} here" if seconds is not None
                else "a while (a Preview first measures this computer's speed)")
    return (f"The result will be {out_width} × {out_height} px ({megapixels:,.0f} MP) and take {estimate}"
            + (f", with self-ensemble running the network {passes} times" if passes > 1 else "")
            + ". Restore anyway?")


class MainWindow(QMainWindow):
    """One photo at a time; results are cached per settings so comparing, zooming and re-running are instant."""

    image_opened = Signal(object)  # LoadedImage
    preview_shown = Signal(object)  # RestoreResult
    restore_shown = Signal(object)  # RestoreResult
    restore_cancelled = Signal()
    image_saved = Signal(object)  # Path

    # To the worker thread (queued connections).
    _open_requested = Signal(object)
    _restore_requested = Signal(object)
    _save_requested = Signal(object)

    def __init__(self, settings: AppSettings | None = None) -> None:
        super().__init__()
        self.settings = settings if settings is not None else AppSettings()
        self._image: LoadedImage | None = None
        self._source: SourceId = ()  # the file version `_image` was read from: results are cached per version
        self._before: QImage | None = None
        self._pasted = False
        self._opening: Path | None = None
        self._results: ResultCache[RestoreResult] = ResultCache(RESULT_CACHE_BYTES)
        self._preview: RestoreResult | None = None
        self._job: RestoreJob | None = None
        self._busy: str | None = None  # "open", "preview", "restore" or "save"
        self._clipboard_dir = QTemporaryDir()
        self._pastes = 0
        self._saved_keys: set[tuple] = set()  # results written to a file: quitting does not ask about them
        self._saving_key: tuple | None = None
        self._controls_message: tuple[str, Task | None] = ("", None)  # see _show_controls_message
        self._last_saved: Path | None = None
        self._blended: tuple[QImage | None, float, QImage] = (None, 1.0, QImage())  # (After, strength, blended)
        self._tray: QSystemTrayIcon | None = None
        self._speeds: dict[tuple, float] = {}  # (weights, device) -> seconds per input pixel and network pass
        self.batch_dialog: BatchDialog | None = None

        self.setWindowTitle("EDPN Restore")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.view = CompareView()
        self._build_actions()
        self.controls = RestorationControls()
        self.save_options = SaveOptions((self.save_action, self.save_as_action))
        self._build_controls()
        self._build_menus_and_toolbar()
        self._build_status_bar()
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.addWidget(self._panel)
        layout.addWidget(self.view, 1)
        self.setCentralWidget(central)

        self.restorers = RestorerCache()  # the loaded weights, shared with the batch dialog
        self.worker = RestoreWorker(self.restorers)
        self._thread = start_in_thread(self.worker, "edpn-restore")
        self._open_requested.connect(self.worker.open_image)
        self._restore_requested.connect(self.worker.restore)
        self._save_requested.connect(self.worker.save)
        self.worker.loaded.connect(self._on_loaded)
        self.worker.load_failed.connect(self._on_load_failed)
        self.worker.progress.connect(self._on_progress)
        self.worker.finished.connect(self._on_restored)
        self.worker.failed.connect(self._on_restore_failed)
        self.worker.cancelled.connect(self._on_cancelled)
        self.worker.saved.connect(self._on_saved)
        self.worker.save_failed.connect(self._on_save_failed)
        self.view.region_selected.connect(self._on_region_selected)
        self.view.zoom_changed.connect(self._update_zoom_label)

        self.controls.changed.connect(self._on_settings_changed)
        self.controls.device_changed.connect(self._update_device_label)
        self.controls.message.connect(self._show_controls_message)
        self.controls.load_requested.connect(self.load_weights_dialog)
        self.save_options.changed.connect(self._on_save_options_changed)
        self._load_settings()
        self._update_device_label()
        self._show_current()

    # ------------------------------------------------------------------------------------------ building

    def _action(self, text: str, slot: Callable,
                shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None, tip: str = "",
                icon: QStyle.StandardPixmap | None = None, checkable: bool = False) -> QAction:
        action = QAction(text, self)
        if icon is not None:
            action.setIcon(self.style().standardIcon(icon))
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip)
        action.setToolTip(tip or text)
        action.setCheckable(checkable)
        (action.toggled if checkable else action.triggered).connect(slot)
        return action

    def _build_actions(self) -> None:
        sp = QStyle.StandardPixmap
        self.open_action = self._action("&Open…", self.open_dialog, QKeySequence.StandardKey.Open,
                                        "Open a photo", sp.SP_DialogOpenButton)
        self.paste_action = self._action("&Paste", self.paste, QKeySequence.StandardKey.Paste,
                                         "Open the image or image file on the clipboard")
        self.save_action = self._action("&Save", self.save, QKeySequence.StandardKey.Save,
                                        "Save the result beside the photo as <name>_restored", sp.SP_DialogSaveButton)
        self.save_as_action = self._action("Save &As…", self.save_as, QKeySequence.StandardKey.SaveAs,
                                           "Choose where and in which format to save the result")
        self.copy_action = self._action("&Copy Result", self.copy_result, "Ctrl+Shift+C",
                                        "Copy the restored photo to the clipboard, to paste it into another program")
        self.open_folder_action = self._action("Open Output &Folder", self.open_output_folder, None,
                                               "Show the folder of the last saved photo in the file manager")
        self.batch_action = self._action("&Batch…", self.open_batch, "Ctrl+B", "Restore a folder or a list of files")
        self.quit_action = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit)
        self.select_action = self._action("Select &Region", self._set_select_mode, "R",
                                          "Drag a rectangle on the photo to preview (Shift+drag works too)",
                                          checkable=True)
        self.clear_region_action = self._action("C&lear Region", lambda: self.view.set_region(None), "Shift+R",
                                                "Forget the selected region (Esc in the photo does the same)")
        self.preview_action = self._action("&Preview", self.preview, "Ctrl+P",
                                           "Restore only the selected region (or the centre of the view) now")
        self.restore_action = self._action("&Restore", self.restore, "Ctrl+R", "Restore the whole photo",
                                           sp.SP_MediaPlay)
        self.cancel_action = self._action("&Cancel", self.cancel, "Esc", "Stop the running restoration",
                                          sp.SP_MediaStop)
        self.fit_action = self._action("&Fit", self.view.zoom_fit, "Ctrl+0", "Fit the photo in the window")
        self.zoom100_action = self._action("1:1", lambda: self.view.zoom_to(1.0), "Ctrl+1",
                                           "One pixel of the result per screen pixel")
        self.zoom200_action = self._action("2:1", lambda: self.view.zoom_to(2.0), "Ctrl+2",
                                           "Each pixel of the result as 2 x 2 screen pixels")
        self.zoom_in_action = self._action("Zoom &In", self.view.zoom_in, QKeySequence.StandardKey.ZoomIn)
        self.zoom_out_action = self._action("Zoom &Out", self.view.zoom_out, QKeySequence.StandardKey.ZoomOut)
        self.side_by_side_action = self._action("Side by Side", self._set_side_by_side, "Ctrl+D",
                                                "Before and after next to each other instead of split",
                                                checkable=True)
        self.smooth_action = self._action("Smooth Upscaling", self._set_smooth, None,
                                          "Show the before image upscaled smoothly (as a plain resize would) "
                                          "instead of with square pixels", checkable=True)
        self.smooth_action.setChecked(True)  # square pixels make any restoration look good by comparison

    def _build_menus_and_toolbar(self) -> None:
        menu = self.menuBar().addMenu("&File")
        menu.addAction(self.open_action)
        self.recent_menu = menu.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        menu.addAction(self.paste_action)
        menu.addSeparator()
        menu.addActions([self.save_action, self.save_as_action, self.copy_action, self.open_folder_action])
        menu.addSeparator()
        menu.addAction(self.batch_action)
        menu.addSeparator()
        menu.addAction(self.quit_action)
        menu = self.menuBar().addMenu("&Restore")
        menu.addActions([self.select_action, self.clear_region_action, self.preview_action, self.restore_action,
                         self.cancel_action])
        menu = self.menuBar().addMenu("&View")
        menu.addActions([self.fit_action, self.zoom100_action, self.zoom200_action, self.zoom_in_action,
                         self.zoom_out_action])
        menu.addSeparator()
        menu.addActions([self.side_by_side_action, self.smooth_action])
        menu = self.menuBar().addMenu("&Help")
        menu.addAction(self._action("&Keyboard Shortcuts", self._show_shortcuts, QKeySequence.StandardKey.HelpContents))
        menu.addAction(self._action("&About", self._about))

        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("main-toolbar")
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        toolbar.addActions([self.open_action, self.paste_action, self.save_action])
        toolbar.addSeparator()
        toolbar.addActions([self.select_action, self.preview_action, self.restore_action, self.cancel_action])
        toolbar.addSeparator()
        toolbar.addActions([self.fit_action, self.zoom100_action, self.zoom200_action, self.side_by_side_action])

    def _build_controls(self) -> None:
        self.info_label = QLabel("No photo open.")
        self.info_label.setWordWrap(True)
        self.info_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.suggestion_label = QLabel()
        self.suggestion_label.setWordWrap(True)
        self.suggestion_label.linkActivated.connect(self.controls.select_task)
        self.suggestion_label.hide()
        keep_place = self.suggestion_label.sizePolicy()
        keep_place.setRetainSizeWhenHidden(True)  # the controls below never jump when the hint comes and goes
        self.suggestion_label.setSizePolicy(keep_place)
        photo_box = QGroupBox("Photo")
        photo_layout = QVBoxLayout(photo_box)
        photo_layout.addWidget(self.info_label)
        photo_layout.addWidget(self.suggestion_label)

        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setTextVisible(False)
        self.progress_label = QLabel()
        self.progress_label.setWordWrap(True)
        line = self.fontMetrics().lineSpacing()
        for label, lines in ((self.info_label, 4), (self.suggestion_label, 3), (self.progress_label, 2)):
            label.setMinimumHeight(lines * line)  # the most each says (a file name is elided to one line)

        self.strength_slider = QSlider(Qt.Orientation.Horizontal)
        self.strength_slider.setRange(0, 100)
        self.strength_slider.setValue(self.settings.strength)
        self.strength_slider.setToolTip("How much of the restoration to keep: below 100 % it is blended with the "
                                        "photo (enlarged as the network's base for Super-resolution), to take "
                                        "back a result too strong for it. Shown at once, saved and used by Batch.")
        self.strength_label = QLabel(f"{self.settings.strength} %")
        # Dragging only moves the label; the After view is blended when the slider is let go (a large result
        # takes a while to blend), keys and clicks blend at once.
        self.strength_slider.setTracking(False)
        self.strength_slider.sliderMoved.connect(lambda percent: self.strength_label.setText(f"{percent} %"))
        self.strength_slider.valueChanged.connect(self._on_strength_changed)
        strength_row = QHBoxLayout()
        strength_row.addWidget(QLabel("Strength"))
        strength_row.addWidget(self.strength_slider, 1)
        strength_row.addWidget(self.strength_label)

        content = QWidget()
        panel = QVBoxLayout(content)
        panel.setContentsMargins(0, 0, 0, 0)
        panel.addWidget(photo_box)
        panel.addWidget(self.controls)
        panel.addLayout(strength_row)
        panel.addLayout(action_buttons((self.preview_action, self.restore_action, self.cancel_action)))
        panel.addWidget(self.progress_bar)
        panel.addWidget(self.progress_label)
        panel.addWidget(self.save_options)
        panel.addStretch(1)
        self._panel = QScrollArea()  # a small window scrolls the panel rather than squashing its boxes
        self._panel.setWidget(content)
        self._panel.setWidgetResizable(True)
        self._panel.setFrameShape(QFrame.Shape.NoFrame)
        self._panel.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._panel.setFixedWidth(PANEL_WIDTH + self._panel.verticalScrollBar().sizeHint().width())
        content.setFixedWidth(PANEL_WIDTH)

    def _build_status_bar(self) -> None:
        self.device_label = QLabel()
        self.zoom_label = QLabel()
        self.statusBar().addPermanentWidget(self.zoom_label)
        self.statusBar().addPermanentWidget(self.device_label)

    # ------------------------------------------------------------------------------------------ settings

    def _load_settings(self) -> None:
        self.controls.restore_from(self.settings)
        self.save_options.restore_from(self.settings)
        if self.settings.geometry is not None:
            self.restoreGeometry(self.settings.geometry)
        else:
            self.resize(1200, 800)

    def _save_settings(self) -> None:
        self.controls.store_into(self.settings)
        self.settings.geometry = self.saveGeometry()
        self.settings.sync()

    @property
    def task(self) -> Task:
        return self.controls.task

    def current_settings(self) -> RestoreSettings | None:
        """None when there are no weights for the mode (the status bar says so)."""
        return self.controls.current_settings()

    def _current_key(self) -> tuple | None:
        settings = self.current_settings()
        if settings is None or self._image is None:
            return None
        return settings.cache_key(self._source)

    def _show_controls_message(self, text: str) -> None:
        """Shown until the mode changes after it: "mode switched" must not outlive a switch back."""
        self._controls_message = (text, None)  # its mode is the one the change in progress settles on
        self.statusBar().showMessage(text)

    def _on_settings_changed(self) -> None:
        text, task = self._controls_message
        if not text or not self.statusBar().currentMessage().startswith(text):
            text = ""
        elif task is None:
            self._controls_message = (text, self.task)
        elif task != self.task:
            self.statusBar().clearMessage()
            text = ""
        self._save_settings()
        self._update_suggestion()
        was_shown = self.view.after is not None
        self._show_current()
        if was_shown and self.view.after is None and self._job is None:
            self.statusBar().showMessage(f"{text} The result of the previous settings is kept: switch back to see "
                                         "it, or Restore (Ctrl+R) with these.".lstrip())

    def _on_save_options_changed(self) -> None:
        self.save_options.store_into(self.settings)
        self.save_options.show_alpha_note(self._has_alpha())

    def load_weights_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load weights", str(resources.weights_dir()),
                                              "EDPN weights (*.safetensors *.pth);;All files (*)")
        if path:
            self.load_weights(Path(path))

    def load_weights(self, path: Path) -> None:
        """Add a weights file to the list for its own task (switching the mode to it if needed)."""
        try:
            self.controls.add_weights(path)
        except WeightsError as exc:
            self.show_error("Cannot use these weights", str(exc))

    # ------------------------------------------------------------------------------------------ opening

    def open_dialog(self) -> None:
        path = self.ask_open_path()
        if path is not None:
            self.open_path(path)

    def ask_open_path(self) -> Path | None:
        patterns = " ".join(f"*{ext}" for ext in sorted(IMAGE_EXTENSIONS))
        start = self.settings.open_folder or Path.home()
        path, _ = QFileDialog.getOpenFileName(self, "Open photo", str(start),
                                              f"Images ({patterns});;All files (*)")
        return Path(path) if path else None

    def open_path(self, path: str | Path, pasted: bool = False) -> bool:
        """Load `path` in the worker; False (and a status message) while another job runs."""
        path = Path(path).expanduser().absolute()
        if path.is_dir():
            self.open_batch().add_inputs([path])  # a folder is a batch, dropped or given on the command line
            return True
        if self._busy is not None:
            self.statusBar().showMessage("Busy: wait for the current job or cancel it first.")
            return False
        if self.has_unsaved_result() and not self.confirm(
                "Open another photo?", "The restored photo has not been saved. Open another photo anyway? (Opening "
                                       "this one again shows it while the app stays open.)"):
            return False
        self._opening, self._pasted = path, pasted
        self._set_busy("open")
        self.statusBar().showMessage(f"Opening {path.name}…")
        self._open_requested.emit(path)
        return True

    def paste(self) -> None:
        self.open_mime_data(QGuiApplication.clipboard().mimeData())

    def open_mime_data(self, mime: QMimeData | None) -> bool:
        """A local file dropped or copied opens as itself; image data is written to a temporary PNG first."""
        local = [Path(url.toLocalFile()) for url in (mime.urls() if mime is not None else []) if url.isLocalFile()]
        if local and local[0].is_dir():
            self.open_batch().add_inputs(local)  # folders and files dropped together: all of them a batch
            return True
        if local:
            return self.open_path(local[0])
        if mime is not None and mime.hasImage():
            image = QImage(mime.imageData())
            if not image.isNull():
                self._pastes += 1
                path = Path(self._clipboard_dir.path()) / f"pasted-{self._pastes}.png"
                if image.save(str(path)):  # PNG, from the suffix
                    return self.open_path(path, pasted=True)
        self.statusBar().showMessage("The clipboard holds no image or image file.")
        return False

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt's name
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        if self.open_mime_data(event.mimeData()):
            event.acceptProposedAction()

    def _on_loaded(self, opened: OpenedImage) -> None:
        self._set_busy(None)
        self._image, self._before, self._source, self._preview = opened.image, opened.before, opened.source, None
        path = opened.image.path
        if not self._pasted and path is not None:
            self.settings.add_recent_file(path)
            self.settings.open_folder = path.parent
        name = "pasted image" if self._pasted or path is None else path.name
        self.setWindowTitle(f"{name} – EDPN Restore")
        self._update_info()
        self._update_suggestion()
        self.save_options.show_alpha_note(self._has_alpha())
        self._show_current()
        self.statusBar().showMessage(f"Opened {name}.", 5000)
        self.image_opened.emit(opened.image)

    def _on_load_failed(self, message: str) -> None:
        self._set_busy(None)
        name = self._opening.name if self._opening is not None else "the image"
        self.statusBar().showMessage(f"Could not open {name}.", 8000)
        if self._opening is not None and not self._opening.exists():
            self.settings.recent_files = [p for p in self.settings.recent_files if p != self._opening.resolve()]
        self.show_error("Cannot open the image", message)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.recent_files
        for number, path in enumerate(recent, 1):
            action = self.recent_menu.addAction(f"&{number % 10} {path.name}")
            action.setStatusTip(str(path))
            action.triggered.connect(lambda _=False, p=path: self.open_path(p))
        if recent:
            self.recent_menu.addSeparator()
        clear = self.recent_menu.addAction("Clear Recent Files")
        clear.setEnabled(bool(recent))
        clear.triggered.connect(lambda: setattr(self.settings, "recent_files", []))

    def _update_info(self) -> None:
        image = self._image
        if image is None:
            self.info_label.setText("No photo open.")
            return
        details = [f"{image.format}, {image.bit_depth}-bit" + (", grey" if image.grey else "")
                   + (", transparency" if image.alpha is not None else "")]
        if image.dpi_label:
            details.append(image.dpi_label)
        if image.jpeg_quality is not None:
            details.append(f"estimated JPEG quality {image.jpeg_quality}")
        name = "Pasted image" if self._pasted or image.path is None else image.path.name
        name = self.info_label.fontMetrics().elidedText(name, Qt.TextElideMode.ElideMiddle, PANEL_WIDTH - 40)
        self.info_label.setText(f"<b>{name}</b><br>{image.width} × {image.height} px "
                                f"({image.megapixels:.1f} MP)<br>{'<br>'.join(details)}")
        self.info_label.setToolTip("" if self._pasted else str(image.path))

    def _update_suggestion(self) -> None:
        """Point to the mode that fits the photo, both ways: the last mode used is not always this photo's."""
        quality = self._image.jpeg_quality if self._image is not None else None
        if quality is None or quality > HEAVY_JPEG_QUALITY:
            if self._image is None or self.task != "deblock":
                self.suggestion_label.hide()
                return
            kind = "Not a JPEG" if quality is None else f"Lightly compressed JPEG (quality {quality})"
            text = f"{kind}: Deblocking will change little; <a href='sr'>switch to Super-resolution x4</a>."
        elif self.task == "deblock":
            text = f"Heavily compressed JPEG (quality {quality}): Deblocking is the right mode."
        else:
            text = (f"Heavily compressed JPEG (quality {quality}): "
                    f"<a href='deblock'>switch to Deblocking</a> to remove the blocks.")
        self.suggestion_label.setText(text)
        self.suggestion_label.show()

    # ------------------------------------------------------------------------------------------ restoring

    def _show_current(self) -> None:
        """Show what is known for the current photo and settings: the full result, a preview, or the photo."""
        if self._before is None:
            self.view.set_images(None)
            self._update_actions()
            return
        scale = TASK_SCALES[self.task]
        result = self.current_result()
        preview = self._preview
        if result is not None or preview is None or preview.job.cache_key != self._current_key():
            preview = None
        if result is not None:
            self.view.set_images(self._before, self._at_strength(result), scale=scale)
        elif preview is not None:
            self.view.set_images(self._before, self._at_strength(preview), scale=scale, after_box=preview.job.region)
        else:
            self.view.set_images(self._before, None, scale=scale)
        if self._job is None:
            self._describe_shown(result or preview)
        self._update_actions()

    @property
    def strength(self) -> float:
        return self.strength_slider.value() / 100

    def _on_strength_changed(self, percent: int) -> None:
        self.settings.strength = percent
        self.strength_label.setText(f"{percent} %")
        self._show_current()

    def _at_strength(self, shown: RestoreResult) -> QImage:
        """The After image blended at the slider's strength, from the pixels on screen: no network runs."""
        if self.strength == 1.0:
            return shown.after
        source, strength, blended = self._blended
        if source is not shown.after or strength != self.strength:
            job = shown.job
            x, y, w, h = job.region if job.region is not None else (0, 0, job.image.width, job.image.height)
            pixels = qimage_pixels(shown.after)  # 8-bit, blended in place: no full-size float copy
            blend(pixels[..., :3], job.image.rgb[y:y + h, x:x + w], TASK_SCALES[job.settings.model.task],
                  self.strength, out=pixels[..., :3])
            blended = to_qimage(pixels[..., :3], pixels[..., 3] if pixels.shape[2] == 4 else None)
            self._blended = (shown.after, self.strength, blended)
        return blended

    def _describe_shown(self, shown: RestoreResult | None) -> None:
        """The progress area speaks of what is on screen, never of an earlier photo's or settings' run."""
        if shown is None:
            self.progress_bar.setValue(0)
            self.progress_label.clear()
            return
        what = "Preview done" if shown.job.region is not None else "Restored"
        self.progress_bar.setValue(1000)
        self.progress_label.setText(f"{what} in {format_seconds(shown.seconds)} on {shown.device_name}"
                                    f"{ensemble_note(shown.job.settings.run.ensemble)}.")

    def current_result(self) -> RestoreResult | None:
        """The full restoration for the current photo and settings, if it has been run."""
        key = self._current_key()
        return self._results.get(key)

    def _settings_or_explain(self) -> RestoreSettings | None:
        settings = self.current_settings()
        if settings is None:
            self.show_error("No weights", f"No weights for {TASK_LABELS[self.task]} are shipped with this copy "
                                          f"(looked in {resources.weights_dir()}). Load a weights file with "
                                          "'Load…' next to Weights.")
        return settings

    def preview_region(self) -> Box | None:
        """The selected region, else the visible area, trimmed about its centre to PREVIEW_MAX_SIDE."""
        box = self.view.region or self.view.visible_region()
        if box is None:
            return None
        x, y, w, h = box
        width, height = min(w, PREVIEW_MAX_SIDE), min(h, PREVIEW_MAX_SIDE)
        return x + (w - width) // 2, y + (h - height) // 2, width, height

    def preview(self) -> None:
        if self._image is None or self._busy is not None:
            return
        settings = self._settings_or_explain()
        region = self.preview_region()
        if settings is None or region is None:
            return
        self._start(RestoreJob(self._image, settings, region, self._source), "preview")
        x, y, w, h = region
        self.statusBar().showMessage(f"Previewing {w} × {h} px at ({x}, {y})…")

    def restore(self) -> None:
        if self._image is None or self._busy is not None:
            return
        settings = self._settings_or_explain()
        if settings is None:
            return
        cached = self.current_result()
        if cached is not None and not self._rerun_for_speed(cached.job.settings, settings):
            self._show_current()
            self.statusBar().showMessage("Already restored with these settings (shown from the cache).", 5000)
            self.restore_shown.emit(cached)
            return
        question = big_job_question(self._image.width, self._image.height, TASK_SCALES[settings.model.task],
                                    ENSEMBLES[settings.run.ensemble], self._speeds.get(speed_key(settings)))
        if question is not None and not self.confirm("Restore a very large job?", question):
            return
        self._start(RestoreJob(self._image, settings, source=self._source), "restore")
        self.statusBar().showMessage(f"Restoring{ensemble_note(settings.run.ensemble)}…")

    def _rerun_for_speed(self, before: RestoreSettings, now: RestoreSettings) -> bool:
        """Whether to restore again though the result is known: tile and device change speed, not the result."""
        if (before.run.tile, before.model.device) == (now.run.tile, now.model.device):
            return False
        return self.confirm("Restore again?", "This photo is already restored with these settings: the tile size "
                                              "and the device change only the speed and the memory used, never "
                                              "the result. Restore again anyway, to compare the speed?")

    def cancel(self) -> None:
        if self._job is not None:
            self._job.cancel.cancel()
            self.progress_label.setText("Cancelling…")

    def _start(self, job: RestoreJob, kind: str) -> None:
        self._job = job
        self._set_busy(kind)
        self.progress_bar.setValue(0)
        self.progress_label.setText("Loading the network…")
        self._restore_requested.emit(job)

    def _on_progress(self, fraction: float, text: str) -> None:
        self.progress_bar.setValue(round(fraction * 1000))
        if self._job is not None and not self._job.cancel.cancelled:
            self.progress_label.setText(text + ensemble_note(self._job.settings.run.ensemble))

    def _finish_job(self, text: str) -> None:
        self._job = None
        self._set_busy(None)
        self.progress_label.setText(text)

    def _on_restored(self, result: RestoreResult) -> None:
        self._finish_job(f"Done in {format_seconds(result.seconds)}.")
        self.progress_bar.setValue(1000)
        self._update_device_label(result)
        self._speeds[speed_key(result.job.settings)] = seconds_per_pixel_pass(result)
        if result.job.image is not self._image:
            return
        if result.job.region is not None:
            self._preview = result
        else:
            self._results.add(result.job.cache_key, result)
        self._show_current()
        if result.job.region is not None:
            self.view.reveal(result.job.region)
        what = "Preview" if result.job.region is not None else "Restoration"
        fallback = f" This run fell back to the CPU ({result.fallback_reason})." if result.fallback_reason else ""
        self.statusBar().showMessage(f"{what} done in {format_seconds(result.seconds)} on {result.device_name}."
                                     + fallback)
        self._notify_if_away(result.seconds, f"{what} of {self.windowTitle().split(' – ')[0]} done.")
        (self.preview_shown if result.job.region is not None else self.restore_shown).emit(result)

    def _on_restore_failed(self, message: str) -> None:
        self._finish_job("Failed.")
        self.progress_bar.setValue(0)
        self.statusBar().showMessage("Restoration failed; nothing was changed.", 8000)
        self.show_error("Restoration failed", message)

    def _on_cancelled(self) -> None:
        self._finish_job("Cancelled.")
        self.progress_bar.setValue(0)
        self.statusBar().showMessage("Cancelled; nothing was changed.", 5000)
        self.restore_cancelled.emit()

    def _update_device_label(self, result: RestoreResult | None = None) -> None:
        if result is None:
            try:
                device = select_device(self.controls.device)
                name, arithmetic = describe_device(device), f"Arithmetic: {describe_precision(device)}"
            except ValueError as exc:
                name, arithmetic = str(exc), ""
            self.device_label.setText(f"Device: {name}")
            self.device_label.setStyleSheet("")
            self.device_label.setToolTip(arithmetic)
            return
        if result.fallback_reason:
            self.device_label.setText(f"Device: {result.device_name} (fell back to the CPU)")
            self.device_label.setStyleSheet("color: #c05000; font-weight: bold")
            self.device_label.setToolTip(result.fallback_reason)
        else:
            self.device_label.setText(f"Device: {result.device_name}")
            self.device_label.setStyleSheet("")
            self.device_label.setToolTip("")

    # ------------------------------------------------------------------------------------------ saving

    def save_format(self) -> str:
        """The chosen format, or PNG for a photo with transparency that the chosen format cannot store."""
        return self.save_options.format_for(self._has_alpha())

    def _has_alpha(self) -> bool:
        return self._image is not None and self._image.alpha is not None

    def default_save_path(self) -> Path:
        fmt = self.save_format()
        if self._pasted or self._image is None or self._image.path is None:
            return (self.settings.save_folder or Path.home()) / f"pasted_restored{SAVE_FORMATS[fmt].extension}"
        return self._image.path.parent / default_save_name(self._image.path, fmt)

    def save(self) -> None:
        """Beside the photo as <stem>_restored.<format>; asks for a name when that exists or was pasted."""
        destination = self.default_save_path()
        if self._pasted or destination.exists():
            self.save_as()
        else:
            self._save_to(destination, overwrite=False)

    def save_as(self) -> None:
        if self._result_or_explain() is None:
            return
        default = self.default_save_path()
        destination = self.ask_save_path((self.settings.save_folder or default.parent) / default.name)
        if destination is None:
            return
        chosen = save_format_named(destination.suffix)
        if chosen is not None and chosen != self.save_options.chosen_format:  # the name says: the box follows
            select_data(self.save_options.format_combo, chosen)
        if (self._has_alpha() and not keeps_alpha(destination)
                and not self.confirm("Drop the transparency?",
                                     f"{destination.suffix.lstrip('.').upper()} cannot store this photo's "
                                     "transparency: transparent parts would turn opaque. Save anyway?")):
            return
        self._save_to(destination, overwrite=True)  # the file dialog has asked about replacing it

    def ask_save_path(self, suggested: Path) -> Path | None:
        dialog = self.save_dialog(suggested)
        return dialog.chosen_path() if dialog.exec() == QFileDialog.DialogCode.Accepted else None

    def save_dialog(self, suggested: Path) -> SaveDialog:
        protected = self._image.path if self._image is not None and not self._pasted else None
        return SaveDialog(self, suggested, self.save_format(), protected)

    def _result_or_explain(self) -> RestoreResult | None:
        result = self.current_result()
        if result is None:
            self.show_error("Nothing to save", "Restore the whole photo first; a region preview is not saved.")
        return result

    def _save_to(self, destination: Path, overwrite: bool) -> None:
        result = self._result_or_explain()
        if result is None or result.restored is None or self._busy is not None:
            return
        source = result.job.image.path
        protect = () if source is None else (source,)
        self._set_busy("save")
        self._saving_key = (result.job.cache_key, self.strength)
        self.statusBar().showMessage(f"Saving {destination.name}…")
        self._save_requested.emit(SaveJob(result.restored, destination, self.save_options.quality, overwrite,
                                          protect, result.job.image, self.strength))

    def _on_saved(self, path: Path) -> None:
        self._set_busy(None)
        self.settings.save_folder = Path(path).parent
        if self._saving_key is not None:
            self._saved_keys.add(self._saving_key)
        note = ""
        if self._has_alpha() and keeps_alpha(Path(path)) and self.save_format() != self.save_options.chosen_format:
            note = f" ({FORMAT_LABELS[self.save_options.chosen_format]} cannot store this photo's transparency)"
        saved_as = save_format_named(Path(path).suffix)
        image = self._image
        left_out = (metadata_left_out(SAVE_FORMATS[saved_as].pillow, exif=image.exif, xmp=image.xmp, iptc=image.iptc,
                                      text=image.text) if saved_as and image else [])
        if saved_as and left_out:
            note += f" ({FORMAT_LABELS[saved_as]} cannot hold its {'; '.join(left_out)})"
        self.statusBar().showMessage(f"Saved {path}{note}.")
        self._last_saved = Path(path)
        self._update_actions()
        self.image_saved.emit(Path(path))

    def _on_save_failed(self, message: str) -> None:
        self._set_busy(None)
        self.statusBar().showMessage("Not saved.", 8000)
        self.show_error("Cannot save", message)

    # ------------------------------------------------------------------------------------------ the rest

    def open_batch(self) -> BatchDialog:
        if self.batch_dialog is None:
            self.batch_dialog = BatchDialog(self.settings, self.controls.settings_for, self.restorers, self,
                                            task=self.task, ensemble=self.controls.ensemble)
            self.batch_dialog.batch_finished.connect(
                lambda report: self._notify_if_away(report.seconds, f"Batch finished: {len(report.restored)} "
                                                                    "photo(s) restored."))
        self.batch_dialog.show()
        self.batch_dialog.raise_()
        return self.batch_dialog

    def _set_busy(self, kind: str | None) -> None:
        self._busy = kind
        self._update_actions()

    def _update_actions(self) -> None:
        idle = self._busy is None
        restoring = self._busy in ("preview", "restore")
        has_image = self._image is not None
        has_result = self.current_result() is not None
        for action in (self.open_action, self.paste_action):
            action.setEnabled(idle)
        self.preview_action.setEnabled(idle and has_image and not has_result)
        self.clear_region_action.setEnabled(self.view.region is not None)
        self.restore_action.setEnabled(idle and has_image)
        self.cancel_action.setEnabled(restoring)
        self.save_action.setEnabled(idle and has_result)
        self.save_as_action.setEnabled(idle and has_result)
        self.copy_action.setEnabled(has_result)
        self.open_folder_action.setEnabled(self._last_saved is not None)
        self.controls.setEnabled(not restoring)

    def _on_region_selected(self, box: Box | None) -> None:
        self._update_actions()
        if box is not None:
            self.statusBar().showMessage(f"Region {describe_box(box)} selected: Preview (Ctrl+P) restores only it; "
                                         "Shift+R or Esc clears it.")
        else:
            self.statusBar().clearMessage()

    def _update_zoom_label(self, zoom: float) -> None:
        """The photo's size on screen, as opened: it does not change meaning when the mode changes the scale."""
        self.zoom_label.setText(f"Zoom {zoom * self.view.scale * 100:.0f} %")
        self.zoom_label.setToolTip("Size of the photo as opened: 100 % is one of its pixels per screen pixel")

    def _set_select_mode(self, on: bool) -> None:
        self.view.select_mode = on

    def _set_side_by_side(self, on: bool) -> None:
        self.view.side_by_side = on

    def _set_smooth(self, on: bool) -> None:
        self.view.smooth_before = on

    def copy_result(self) -> None:
        result = self.current_result()
        if result is not None:
            QGuiApplication.clipboard().setImage(self._at_strength(result))  # what is shown, at its strength
            self.statusBar().showMessage(f"Copied the restored photo ({result.after.width()} × "
                                         f"{result.after.height()} px) to the clipboard.", 5000)

    def open_output_folder(self) -> None:
        if self._last_saved is not None and not QDesktopServices.openUrl(
                QUrl.fromLocalFile(str(self._last_saved.parent))):
            self.show_error("Cannot open the folder", f"No file manager could open it. The photo is {self._last_saved}")

    def shortcuts_text(self) -> str:
        """Every action's shortcut, from the actions themselves, and the photo's own keys."""
        rows = [(action.text().replace("&", "").rstrip("…"), action.shortcut().toString(
                    QKeySequence.SequenceFormat.NativeText)) for action in self.findChildren(QAction)
                if not action.shortcut().isEmpty()]
        rows += [("Move the divider", "Left / Right (Shift: finer)"), ("Zoom about the cursor", "Mouse wheel"),
                 ("Select a region", "Shift+drag"), ("Forget the region", "Esc in the photo")]
        return "<table>" + "".join(f"<tr><td>{name}</td><td>&nbsp;&nbsp;<b>{keys}</b></td></tr>"
                                   for name, keys in rows) + "</table>"

    def _show_shortcuts(self) -> None:
        QMessageBox.information(self, "Keyboard shortcuts", self.shortcuts_text())

    def _notify_if_away(self, seconds: float, text: str) -> None:
        """A long job's end is announced on the desktop when the user has turned to another window."""
        if seconds >= NOTIFY_AFTER_SECONDS and QApplication.activeWindow() is None:
            self.notify(text)

    def notify(self, text: str) -> None:
        """A desktop notification where the desktop has a tray, else the taskbar entry asks for attention (tests
        replace it)."""
        QApplication.alert(self)
        if QSystemTrayIcon.isSystemTrayAvailable():
            if self._tray is None:
                self._tray = QSystemTrayIcon(self.windowIcon(), self)
            self._tray.show()
            self._tray.showMessage("EDPN Restore", text)

    def _about(self) -> None:
        QMessageBox.about(self, "About EDPN Restore", about_text())

    def show_error(self, title: str, text: str) -> None:
        """Every error reaches the user through here (tests replace it to keep dialogs from blocking)."""
        QMessageBox.critical(self, title, text)

    def confirm(self, title: str, text: str) -> bool:
        """Every yes/no question goes through here (tests replace it)."""
        return ask_yes_no(self, title, text)

    def has_unsaved_result(self) -> bool:
        result = self.current_result()
        return result is not None and (result.job.cache_key, self.strength) not in self._saved_keys

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        """Asks before stopping a running job or batch or dropping an unsaved restoration, then closes at once:
        running jobs are cancelled and their threads told to stop, and `wait_for_workers` waits for them once no
        window shows."""
        if self._job is not None and not self.confirm(
                "Stop the restoration?", "A restoration is running: quitting stops it and discards it. Quit anyway?"):
            event.ignore()
            return
        if self.has_unsaved_result() and not self.confirm(
                "Quit without saving?", "The restored photo has not been saved. Quit anyway?"):
            event.ignore()
            return
        batch_running = self.batch_dialog is not None and self.batch_dialog.running
        if batch_running and not self.confirm("Stop the batch?", "Quitting stops the batch: the file in progress "
                                              "is discarded, finished files are kept."):
            event.ignore()
            return
        self._save_settings()
        self.stop_workers()
        super().closeEvent(event)

    def stop_workers(self) -> None:
        """Cancel the running jobs, tell the worker threads to stop and remove the pasted photos, without waiting.
        Also called when the event loop ends without a close (the X connection broke), so nothing is left waiting."""
        if self._job is not None:
            self._job.cancel.cancel()
        if self.batch_dialog is not None:
            self.batch_dialog.stop()
        self._thread.quit()
        self._clipboard_dir.remove()

    def wait_for_workers(self) -> None:
        """Block until the worker threads have stopped (a cancelled job ends within one network pass); called
        after the window has closed, so nothing on screen ever waits."""
        self._thread.wait()
        if self.batch_dialog is not None:
            self.batch_dialog.wait_for_worker()

