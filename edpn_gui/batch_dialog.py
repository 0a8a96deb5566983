"""Restore a folder (optionally with its sub-folders) or a list of files with the engine's batch functions,
in a worker thread, with overall and per-file progress, a failure log and a summary."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QCloseEvent, QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from edpn_core.config import Task
from edpn_core.inference.batch import BatchReport, BatchSettings, collect_inputs
from edpn_core.inference.engine import Ensemble
from edpn_core.inference.imageio import IMAGE_EXTENSIONS

from .choices import ENSEMBLE_LABELS, FORMAT_LABELS, QUALITY_FORMATS, TASK_LABELS
from .controls import ENSEMBLE_TIP, MODE_TIP, ask_yes_no, choice_combo
from .restorer_cache import RestorerCache
from .settings import AppSettings
from .workers import BatchRequest, BatchWorker, RestoreSettings, start_in_thread

OUTPUT_FOLDER_NAME = "restored"
EXISTING_LABELS = {"refuse": "Stop before starting", "skip": "Skip (keep the existing file)",
                   "overwrite": "Replace"}


def default_output_folder(inputs: list[Path]) -> Path | None:
    """A "restored" folder beside the first input (beside a folder, not inside it), so outputs never land
    among the inputs; "restored 2"... when that name is itself one of the inputs."""
    if not inputs:
        return None
    first = inputs[0]
    parent = first.parent
    taken = {p.resolve() for p in inputs}
    candidate, number = parent / OUTPUT_FOLDER_NAME, 1
    while candidate.resolve() in taken:
        number += 1
        candidate = parent / f"{OUTPUT_FOLDER_NAME} {number}"
    return candidate


class BatchDialog(QDialog):
    """Non-modal: the main window stays usable while a batch runs."""

    batch_finished = Signal(object)  # BatchReport
    _run_requested = Signal(object)

    def __init__(self, settings: AppSettings, settings_for: Callable[[Task, Ensemble], RestoreSettings],
                 restorers: RestorerCache, parent: QWidget | None = None,
                 *, task: Task = "sr", ensemble: Ensemble = "off") -> None:
        super().__init__(parent)
        self.setWindowTitle("Batch restore – EDPN Restore")
        self.settings = settings
        self._settings_for = settings_for  # the main window's device, tile and weights, read at each start
        self._request: BatchRequest | None = None
        self._report: BatchReport | None = None
        self._output_edited = False
        self._planned = 0

        self.inputs_list = QListWidget()
        self.inputs_list.setToolTip("Folders and files to restore")
        add_folder = QPushButton("Add Folder…")
        add_folder.clicked.connect(self._add_folder_dialog)
        add_files = QPushButton("Add Files…")
        add_files.clicked.connect(self._add_files_dialog)
        remove = QPushButton("Remove")
        remove.clicked.connect(self._remove_selected)
        self.recursive_check = QCheckBox("Include sub-folders")
        input_buttons = QHBoxLayout()
        for widget in (add_folder, add_files, remove):
            input_buttons.addWidget(widget)
        input_buttons.addStretch(1)
        input_buttons.addWidget(self.recursive_check)
        inputs_box = QGroupBox("Inputs")
        inputs_layout = QVBoxLayout(inputs_box)
        inputs_layout.addWidget(self.inputs_list)
        inputs_layout.addLayout(input_buttons)
        self.found_label = QLabel("Add a folder or photos.")
        inputs_layout.addWidget(self.found_label)
        self.recursive_check.setChecked(settings.batch_recursive)
        self.recursive_check.toggled.connect(self._count_inputs)
        self.recursive_check.toggled.connect(lambda on: setattr(self.settings, "batch_recursive", on))

        self.output_edit = QLineEdit()
        self.output_edit.setPlaceholderText("A new 'restored' folder beside the inputs")
        self.output_edit.textEdited.connect(lambda _: setattr(self, "_output_edited", True))
        self.output_edit.editingFinished.connect(self._count_inputs)  # an output inside an input folder is left out
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_output)
        output_row = QHBoxLayout()
        output_row.addWidget(self.output_edit, 1)
        output_row.addWidget(browse)
        self.mode_combo = choice_combo(TASK_LABELS, task, MODE_TIP)
        self.ensemble_combo = choice_combo(ENSEMBLE_LABELS, ensemble, ENSEMBLE_TIP)
        self.format_combo = choice_combo(FORMAT_LABELS, settings.save_format)
        self.quality_spin = QSpinBox()
        self.quality_spin.setRange(1, 100)
        self.quality_spin.setValue(settings.save_quality)
        self.format_combo.currentIndexChanged.connect(self._on_format_changed)
        self._on_format_changed()
        self.existing_combo = choice_combo(EXISTING_LABELS, tip="What to do when a restored file of the same name "
                                                                "is already in the output folder")
        options_box = QGroupBox("Output")
        form = QFormLayout(options_box)
        form.addRow("Folder", output_row)
        form.addRow("Mode", self.mode_combo)
        form.addRow("Self-ensemble", self.ensemble_combo)
        form.addRow("Format", self.format_combo)
        form.addRow("JPEG/WebP quality", self.quality_spin)
        form.addRow("Existing files", self.existing_combo)

        self.overall_bar = QProgressBar()
        self.overall_bar.setRange(0, 1000)
        self.file_bar = QProgressBar()
        self.file_bar.setRange(0, 1000)
        self.file_label = QLabel("Not started.")
        self.eta_label = QLabel()
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setPlaceholderText("Files that could not be restored are listed here, with the reason.")
        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        progress_box = QGroupBox("Progress")
        progress = QFormLayout(progress_box)
        progress.addRow("Overall", self.overall_bar)
        progress.addRow("Current file", self.file_bar)
        progress.addRow(self.file_label)
        progress.addRow(self.eta_label)
        progress.addRow(self.log)
        progress.addRow(self.summary_label)

        self.start_button = QPushButton("Start")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after discarding the file in progress; finished files are kept")
        self.cancel_button.clicked.connect(self.cancel)
        self.open_output_button = QPushButton("Open Output Folder")
        self.open_output_button.clicked.connect(self.open_output_folder)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_output_button)
        buttons.addStretch(1)
        for widget in (self.start_button, self.cancel_button, close):
            buttons.addWidget(widget)

        layout = QVBoxLayout(self)
        layout.addWidget(inputs_box)
        layout.addWidget(options_box)
        layout.addWidget(progress_box, 1)
        layout.addLayout(buttons)
        self.resize(640, 720)

        self.worker = BatchWorker(restorers)
        self._thread = start_in_thread(self.worker, "edpn-batch")
        self._run_requested.connect(self.worker.run)
        self.worker.planned.connect(self._on_planned)
        self.worker.warning.connect(self._on_warning)
        self.worker.file_started.connect(self._on_file_started)
        self.worker.file_failed.connect(self._on_file_failed)
        self.worker.progress.connect(self._on_progress)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self._set_running(False)

    def _on_format_changed(self) -> None:
        self.quality_spin.setEnabled(self.format_combo.currentData() in QUALITY_FORMATS)

    # ------------------------------------------------------------------------------------------ inputs

    @property
    def inputs(self) -> list[Path]:
        return [Path(self.inputs_list.item(i).text()) for i in range(self.inputs_list.count())]

    def add_inputs(self, paths: Iterable[str | Path]) -> None:
        known = set(self.inputs)
        for path in map(Path, paths):
            if path not in known:
                self.inputs_list.addItem(str(path))
                known.add(path)
        self._inputs_changed()

    def _inputs_changed(self) -> None:
        if not self._output_edited:
            folder = default_output_folder(self.inputs)
            self.output_edit.setText(str(folder) if folder else "")
        self._count_inputs()

    def _count_inputs(self) -> None:
        """How many photos Start would restore, said before it is pressed (a folder listing; nothing is read)."""
        if not self.inputs:
            self.found_label.setText("Add a folder or photos.")
            return
        count = len(collect_inputs(self.inputs, self.recursive_check.isChecked(), self.output_folder))
        self.found_label.setText(f"{count} photo(s) found." if count else
                                 "No photos found" + ("." if self.recursive_check.isChecked()
                                                      else " (tick 'Include sub-folders' to look deeper)."))

    def _add_folder_dialog(self) -> None:
        start = self._start_folder()
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of photos", str(start))
        if folder:
            self.settings.batch_folder = Path(folder).parent
            self.add_inputs([folder])

    def _add_files_dialog(self) -> None:
        patterns = " ".join(f"*{ext}" for ext in sorted(IMAGE_EXTENSIONS))
        start = self._start_folder()
        files, _ = QFileDialog.getOpenFileNames(self, "Add photos", str(start), f"Images ({patterns})")
        if files:
            self.settings.batch_folder = Path(files[0]).parent
            self.add_inputs(files)

    def _start_folder(self) -> Path:
        """Where the last batch came from, else where the last photo was opened, before the home folder."""
        return self.settings.batch_folder or self.settings.open_folder or Path.home()

    def _remove_selected(self) -> None:
        for item in self.inputs_list.selectedItems():
            self.inputs_list.takeItem(self.inputs_list.row(item))
        self._inputs_changed()

    def _browse_output(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder", self.output_edit.text() or str(Path.home()))
        if folder:
            self.output_edit.setText(folder)
            self._output_edited = True
            self._count_inputs()

    @property
    def output_folder(self) -> Path | None:
        text = self.output_edit.text().strip()
        return Path(text) if text else None

    # ------------------------------------------------------------------------------------------ running

    def start(self) -> None:
        inputs, output = self.inputs, self.output_folder
        if not inputs or output is None:
            self.show_error("Nothing to do", "Add a folder or files to restore, and an output folder.")
            return
        input_folders = {(p if p.is_dir() else p.parent).resolve() for p in inputs}
        if output.resolve() in input_folders and not self.confirm(
                "Write into an input folder?",
                f"{output} holds input photos. Restored files will be written next to them (never over them). "
                "Continue?"):
            return
        try:
            settings = self._settings_for(self.mode_combo.currentData(), self.ensemble_combo.currentData())
        except FileNotFoundError as exc:
            self.show_error("No weights", str(exc))
            return
        batch = BatchSettings(self.format_combo.currentData(), self.quality_spin.value(),
                              self.existing_combo.currentData(), self.recursive_check.isChecked(), settings.run,
                              strength=self.settings.strength / 100)
        self._request = BatchRequest(inputs, output, settings.model, batch)
        self._report = None
        self.log.clear()
        if self._request.batch.strength < 1:
            self._on_warning(f"Strength {self.settings.strength} % (set in the main window): each photo is blended "
                             "with its input.")
        self.summary_label.clear()
        self.overall_bar.setValue(0)
        self.file_bar.setValue(0)
        self.file_label.setText("Finding photos…")
        self.eta_label.clear()
        self._set_running(True)
        self._run_requested.emit(self._request)

    def cancel(self) -> None:
        if self._request is not None:
            self._request.cancel.cancel()
            self.file_label.setText("Cancelling: the file in progress is discarded, finished ones are kept…")

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.open_output_button.setEnabled(not running and self.output_folder is not None
                                           and self.output_folder.is_dir())

    @property
    def running(self) -> bool:
        return self._request is not None

    def _on_planned(self, count: int, output: str) -> None:
        self._planned = count
        self.file_label.setText(f"{count} photo(s) to restore into {output}")

    def _on_file_started(self, index: int, count: int, name: str) -> None:
        self.overall_bar.setValue(round(index / count * 1000))
        self.file_bar.setValue(0)
        self.file_label.setText(f"File {index + 1} of {count}: {name}")

    def _on_warning(self, text: str) -> None:
        self.log.appendPlainText(f"NOTE {text}")

    def _on_file_failed(self, name: str, reason: str) -> None:
        self.log.appendPlainText(f"FAILED {name}: {reason}")

    def _on_progress(self, overall: float, current: float, text: str) -> None:
        self.overall_bar.setValue(round(overall * 1000))
        self.file_bar.setValue(round(current * 1000))
        self.eta_label.setText(text)

    def _on_finished(self, report: BatchReport) -> None:
        self._request, self._report = None, report
        if not report.cancelled:
            self.overall_bar.setValue(1000)
        self.file_bar.setValue(0 if report.cancelled else 1000)
        self.file_label.setText("Cancelled." if report.cancelled else "Finished.")
        self.eta_label.clear()
        summary = (f"Restored {len(report.restored)}, skipped {len(report.skipped)}, failed {len(report.failed)} "
                   f"in {report.seconds:.0f} s.")
        if report.cancelled:  # "Restored 2" alone reads as if the batch were done
            handled = len(report.restored) + len(report.skipped) + len(report.failed)
            summary = (f"Cancelled after {handled} of {self._planned} photo(s): {self._planned - handled} not "
                       "restored (the one in progress discarded). " + summary)
        self.summary_label.setText(summary)
        self._set_running(False)
        self.batch_finished.emit(report)

    def _on_failed(self, message: str) -> None:
        self._request = None
        self.file_label.setText("Not started.")
        self.log.appendPlainText(message)
        self._set_running(False)
        self.show_error("Batch not started", message)

    @property
    def report(self) -> BatchReport | None:
        return self._report

    def open_output_folder(self) -> None:
        folder = self.output_folder
        if folder is not None and not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            self.show_error("Cannot open the folder", f"No file manager could open it. The restored photos are in "
                                                      f"{folder}")

    def show_error(self, title: str, text: str) -> None:
        """All errors pass here (tests replace it to keep dialogs from blocking)."""
        QMessageBox.critical(self, title, text)

    def confirm(self, title: str, text: str) -> bool:
        """Every yes/no question goes through here (tests replace it)."""
        return ask_yes_no(self, title, text)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        if self.running and not self.confirm("Stop the batch?", "Closing stops the batch: the file in progress "
                                             "is discarded, finished files are kept."):
            event.ignore()
            return
        self.cancel()
        super().closeEvent(event)

    def stop(self) -> None:
        """Cancel any batch and tell the worker thread to stop, without waiting (the owner is quitting)."""
        self.cancel()
        self._thread.quit()

    def wait_for_worker(self) -> None:
        self._thread.wait()
