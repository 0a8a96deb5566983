"""The main window's settings panel: what to restore with (mode, self-ensemble, device, tile, weights) and how to
save. Each box owns its widgets and hands the window one settings object; the window only wires signals."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QValidator
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QToolButton,
    QWidget,
)

from edpn_core import resources
from edpn_core.config import Task
from edpn_core.inference.device import available_devices, select_device
from edpn_core.inference.engine import MIN_TILE, Ensemble, RunSettings, TileSize
from edpn_core.model_io import WeightsError, WeightsInfo

from .choices import ALPHA_FORMATS, ENSEMBLE_LABELS, FORMAT_LABELS, QUALITY_FORMATS, TASK_LABELS
from .restorer_cache import ModelChoice
from .settings import AppSettings
from .weights_catalogue import WeightsCatalogue
from .workers import RestoreSettings

MODE_TIP = ("Super-resolution: blurry photo to 4x the size. Deblocking: blurry, heavily compressed JPEG to a clean "
            "image of the same size.")
ENSEMBLE_TIP = "Self-ensemble: average the network over rotations (and mirrors): slightly better, 4 or 8 times slower."


def ask_yes_no(parent: QWidget, title: str, text: str) -> bool:
    """A Yes/No question that defaults to No, so Enter never stops or drops anything."""
    buttons = QMessageBox.StandardButton
    return QMessageBox.question(parent, title, text, buttons.Yes | buttons.No, buttons.No) == buttons.Yes


def select_data(combo: QComboBox, data: object) -> None:
    """Select the item carrying `data`, if there is one."""
    index = combo.findData(data)
    if index >= 0:
        combo.setCurrentIndex(index)


def choice_combo(labels: Mapping[str, str], selected: object = None, tip: str = "") -> QComboBox:
    """A combo box of labelled choices, each item carrying its key, `selected` chosen when given."""
    combo = QComboBox()
    for key, label in labels.items():
        combo.addItem(label, key)
    if selected is not None:
        select_data(combo, selected)
    combo.setToolTip(tip)
    return combo


def action_buttons(actions: Iterable[QAction]) -> QHBoxLayout:
    """Push buttons that trigger `actions` and follow their enabled state, for the panel's button rows."""
    row = QHBoxLayout()
    for action in actions:
        button = QPushButton(action.text().replace("&", ""))
        button.setToolTip(action.toolTip())
        button.clicked.connect(action.trigger)
        action.changed.connect(lambda a=action, b=button: b.setEnabled(a.isEnabled()))
        row.addWidget(button)
    return row


class TileSpinBox(QSpinBox):
    """Tile size in input pixels, or "Auto" (the spin box's special value at its minimum, 0, which never leaves
    the widget: `tile` says "auto"). A typed size below MIN_TILE is raised to it, never taken as is."""

    def __init__(self) -> None:
        super().__init__()
        self.setRange(0, 4096)
        self.setSingleStep(64)
        self.setSpecialValueText("Auto")
        self.setSuffix(" px")

    def validate(self, text: str, pos: int) -> tuple[QValidator.State, str, int]:
        state, text, pos = super().validate(text, pos)
        if state == QValidator.State.Acceptable and 0 < self.valueFromText(text) < MIN_TILE:
            state = QValidator.State.Intermediate  # "1" on the way to "128" is fine; Enter on it is not
        return state, text, pos

    def fixup(self, text: str) -> str:
        return self.textFromValue(MIN_TILE) + self.suffix() if 0 < self.valueFromText(text) < MIN_TILE else text

    @property
    def tile(self) -> TileSize:
        value = self.value()
        return max(MIN_TILE, value) if value else "auto"

    def set_tile(self, tile: TileSize) -> None:
        """Show `tile`; the app offers Auto or a size, so 'whole' shows as Auto."""
        self.setValue(max(MIN_TILE, tile) if isinstance(tile, int) else self.minimum())


class RestorationControls(QGroupBox):
    """Mode, self-ensemble, device, tile and weights, read as one RestoreSettings.

    `changed` fires after any of them changes (the mode's weights list already refreshed); `device_changed`
    after the device does; `message` carries status-bar text; `load_requested` is the Load… button."""

    changed = Signal()
    device_changed = Signal()
    message = Signal(str)
    load_requested = Signal()

    def __init__(self) -> None:
        super().__init__("Restoration")
        self.catalogue = WeightsCatalogue()
        self.mode_combo = choice_combo(TASK_LABELS, tip=MODE_TIP)
        self.ensemble_combo = choice_combo(ENSEMBLE_LABELS, tip=ENSEMBLE_TIP)
        self.device_combo = QComboBox()
        self.device_combo.addItem("Auto", "auto")
        for name, label in available_devices():
            self.device_combo.addItem(label, name)
        self.tile_spin = TileSpinBox()
        self.tile_spin.setToolTip(f"Tile size in input pixels (at least {MIN_TILE}). Auto sizes tiles from free "
                                  "memory; smaller tiles need less memory. The result is the same for any size.")
        self.weights_combo = QComboBox()
        self.weights_combo.setToolTip("Network weights: the shipped ones for this mode, or a file you load")
        self.weights_button = QToolButton()
        self.weights_button.setText("Load…")
        self.weights_button.setToolTip("Load a weights file (.safetensors, or a training checkpoint .pth)")
        self.weights_button.clicked.connect(self.load_requested)
        weights_row = QHBoxLayout()
        weights_row.addWidget(self.weights_combo, 1)
        weights_row.addWidget(self.weights_button)
        form = QFormLayout(self)
        form.addRow("Mode", self.mode_combo)
        form.addRow("Self-ensemble", self.ensemble_combo)
        form.addRow("Device", self.device_combo)
        form.addRow("Tile size", self.tile_spin)
        form.addRow("Weights", weights_row)

        self.mode_combo.currentIndexChanged.connect(self._on_task_changed)
        self.device_combo.currentIndexChanged.connect(self._on_device_changed)
        self.ensemble_combo.currentIndexChanged.connect(self.changed)
        self.tile_spin.valueChanged.connect(self.changed)
        self.weights_combo.activated.connect(self._on_weights_chosen)

    @property
    def task(self) -> Task:
        return self.mode_combo.currentData()

    @property
    def ensemble(self) -> Ensemble:
        return self.ensemble_combo.currentData()

    @property
    def device(self) -> str:
        return self.device_combo.currentData()

    @property
    def tile(self) -> TileSize:
        return self.tile_spin.tile

    def select_task(self, task: Task) -> None:
        select_data(self.mode_combo, task)

    def restore_from(self, settings: AppSettings) -> None:
        """Show the saved choices without announcing each one; the weights list follows the mode."""
        for combo, value in ((self.mode_combo, settings.task), (self.ensemble_combo, settings.ensemble),
                             (self.device_combo, settings.device)):
            combo.blockSignals(True)
            select_data(combo, value)
            combo.blockSignals(False)
        self.tile_spin.blockSignals(True)
        self.tile_spin.set_tile(settings.tile)
        self.tile_spin.blockSignals(False)
        self.refresh_weights()

    def store_into(self, settings: AppSettings) -> None:
        settings.task, settings.ensemble, settings.device, settings.tile = (self.task, self.ensemble, self.device,
                                                                            self.tile)

    def device_type(self) -> str:
        try:
            return select_device(self.device).type
        except ValueError:
            return "cpu"

    def weights_for(self, task: Task) -> Path:
        """The weights the user chose for `task`, else the shipped default for the device. Raises
        FileNotFoundError when none are shipped (the message says where they were looked for)."""
        return self.catalogue.weights_for(task, self.device_type())

    def settings_for(self, task: Task, ensemble: Ensemble) -> RestoreSettings:
        """These device, tile and weights for `task`: what a batch reads once, when it starts, so it never runs
        on a copy taken when its dialog opened. FileNotFoundError when no weights are shipped."""
        return RestoreSettings(ModelChoice(task, self.weights_for(task), self.device), RunSettings(self.tile, ensemble))

    def current_settings(self) -> RestoreSettings | None:
        """None when there are no weights for the mode (a `message` has said so)."""
        data = self.weights_combo.currentData()
        if not data:
            return None
        return RestoreSettings(ModelChoice(self.task, Path(data), self.device), RunSettings(self.tile, self.ensemble))

    def add_weights(self, path: Path) -> WeightsInfo:
        """Offer a weights file for its own task, switching the mode to it if needed. WeightsError if unusable."""
        info = self.catalogue.load(path)
        if info.task != self.task:
            self.message.emit(f"{path.name} is for {TASK_LABELS[info.task]}: mode switched.")
            self.select_task(info.task)  # refreshes the list through _on_task_changed
        else:
            self.refresh_weights()
            self.changed.emit()
        return info

    def refresh_weights(self) -> None:
        """List the shipped weights for the mode plus any the user loaded; select the user's choice or the
        default for the device."""
        task = self.task
        self.weights_combo.blockSignals(True)
        self.weights_combo.clear()
        try:
            offered = self.catalogue.offered(task)
        except WeightsError as exc:
            offered = []
            self.message.emit(f"Unusable shipped weights: {exc}")
        for label, path in offered:
            self.weights_combo.addItem(label, str(path))
            self.weights_combo.setItemData(self.weights_combo.count() - 1, str(path), Qt.ItemDataRole.ToolTipRole)
        if self.weights_combo.count() == 0:
            self.weights_combo.addItem("None shipped: load a file", None)
            self.message.emit(f"No weights for {TASK_LABELS[task]} are shipped "
                              f"(looked in {resources.weights_dir()}); load a weights file.")
        else:
            try:
                select_data(self.weights_combo, str(self.weights_for(task)))
            except FileNotFoundError:
                pass
        self.weights_combo.blockSignals(False)

    def _on_task_changed(self) -> None:
        self.refresh_weights()
        self.changed.emit()

    def _on_device_changed(self) -> None:
        self.refresh_weights()
        self.device_changed.emit()
        self.changed.emit()

    def _on_weights_chosen(self) -> None:
        data = self.weights_combo.currentData()
        if data:
            self.catalogue.choose(self.task, Path(data))
        self.changed.emit()


class SaveOptions(QGroupBox):
    """Format and JPEG/WebP quality for saving, with a note when the photo's transparency would not fit."""

    changed = Signal()

    def __init__(self, actions: Iterable[QAction]) -> None:
        super().__init__("Save")
        self.format_combo = choice_combo(FORMAT_LABELS)
        self.quality_spin = QSpinBox()
        self.quality_spin.setRange(1, 100)
        self.quality_spin.setToolTip("JPEG/WebP quality (WebP 100 is lossless)")
        self.alpha_note = QLabel()
        self.alpha_note.setWordWrap(True)
        self.alpha_note.hide()
        form = QFormLayout(self)
        form.addRow("Format", self.format_combo)
        form.addRow("JPEG/WebP quality", self.quality_spin)
        form.addRow(self.alpha_note)
        form.addRow(action_buttons(actions))
        self.format_combo.currentIndexChanged.connect(self._on_changed)
        self.quality_spin.valueChanged.connect(self._on_changed)

    @property
    def chosen_format(self) -> str:
        return self.format_combo.currentData()

    @property
    def quality(self) -> int:
        return self.quality_spin.value()

    def format_for(self, has_alpha: bool) -> str:
        """The chosen format, or PNG for a photo with transparency that the chosen format cannot store."""
        return "png" if has_alpha and self.chosen_format not in ALPHA_FORMATS else self.chosen_format

    def restore_from(self, settings: AppSettings) -> None:
        for widget in (self.format_combo, self.quality_spin):
            widget.blockSignals(True)
        select_data(self.format_combo, settings.save_format)
        self.quality_spin.setValue(settings.save_quality)
        for widget in (self.format_combo, self.quality_spin):
            widget.blockSignals(False)
        self.quality_spin.setEnabled(self.chosen_format in QUALITY_FORMATS)

    def store_into(self, settings: AppSettings) -> None:
        settings.save_format, settings.save_quality = self.chosen_format, self.quality

    def show_alpha_note(self, has_alpha: bool) -> None:
        self.alpha_note.setVisible(has_alpha and self.chosen_format not in ALPHA_FORMATS)
        self.alpha_note.setText(f"This photo has transparency, which {FORMAT_LABELS[self.chosen_format]} cannot "
                                f"store: Save writes {FORMAT_LABELS[self.format_for(has_alpha)]}.")

    def _on_changed(self) -> None:
        self.quality_spin.setEnabled(self.chosen_format in QUALITY_FORMATS)
        self.changed.emit()
