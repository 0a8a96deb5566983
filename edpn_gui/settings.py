"""Typed access to the app's persistent settings, so every key and default lives in one place."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from edpn_core.config import TASKS, Task
from edpn_core.inference.engine import ENSEMBLES, Ensemble, TileSize, parse_tile
from edpn_core.inference.imageio import SAVE_FORMATS

ORGANIZATION = "EDPN Restore"
APPLICATION = "edpn-restore"
MAX_RECENT_FILES = 10


class AppSettings:
    """QSettings in INI format: the user's config folder by default, or `path` (tests, portable installs)."""

    def __init__(self, path: str | Path | None = None) -> None:
        if path is None:
            self._store = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)
        else:
            self._store = QSettings(str(path), QSettings.Format.IniFormat)

    def sync(self) -> None:
        self._store.sync()

    def _text(self, key: str, default: str) -> str:
        value = self._store.value(key, default)
        return value if isinstance(value, str) else default

    def _int(self, key: str, default: int) -> int:
        value = self._store.value(key, default)
        try:
            return int(value) if isinstance(value, (int, float, str)) else default
        except ValueError:
            return default

    def _folder(self, key: str) -> Path | None:
        text = self._text(key, "")
        return Path(text) if text and Path(text).is_dir() else None

    # Folders the file dialogs start in; a folder that has since disappeared reads as None.
    @property
    def open_folder(self) -> Path | None:
        return self._folder("folders/open")

    @open_folder.setter
    def open_folder(self, folder: Path) -> None:
        self._store.setValue("folders/open", str(folder))

    @property
    def save_folder(self) -> Path | None:
        return self._folder("folders/save")

    @save_folder.setter
    def save_folder(self, folder: Path) -> None:
        self._store.setValue("folders/save", str(folder))

    @property
    def batch_folder(self) -> Path | None:
        return self._folder("folders/batch")

    @batch_folder.setter
    def batch_folder(self, folder: Path) -> None:
        self._store.setValue("folders/batch", str(folder))

    @property
    def batch_recursive(self) -> bool:
        """Whether Batch includes sub-folders."""
        return self._int("batch/recursive", 0) == 1

    @batch_recursive.setter
    def batch_recursive(self, value: bool) -> None:
        self._store.setValue("batch/recursive", int(value))

    # Restoration controls.
    @property
    def task(self) -> Task:
        value = self._text("restore/task", "sr")
        return value if value in TASKS else "sr"

    @task.setter
    def task(self, value: Task) -> None:
        self._store.setValue("restore/task", value)

    @property
    def ensemble(self) -> Ensemble:
        value = self._text("restore/ensemble", "off")
        return value if value in ENSEMBLES else "off"

    @ensemble.setter
    def ensemble(self, value: Ensemble) -> None:
        self._store.setValue("restore/ensemble", value)

    @property
    def device(self) -> str:
        return self._text("restore/device", "auto")

    @device.setter
    def device(self, value: str) -> None:
        self._store.setValue("restore/device", value)

    @property
    def tile(self) -> TileSize:
        """Written as `edpn restore --tile` takes it; anything else (files before 2026-12 wrote 0 for Auto) reads
        as "auto"."""
        try:
            return parse_tile(self._text("restore/tile", "auto"))
        except ValueError:
            return "auto"

    @tile.setter
    def tile(self, value: TileSize) -> None:
        self._store.setValue("restore/tile", str(value))

    @property
    def strength(self) -> int:
        """Percent of the restoration over the input (100: the network's output as it is)."""
        return min(100, max(0, self._int("restore/strength", 100)))

    @strength.setter
    def strength(self, value: int) -> None:
        self._store.setValue("restore/strength", int(value))

    # Saving.
    @property
    def save_format(self) -> str:
        value = self._text("save/format", "png")
        return value if value in SAVE_FORMATS else "png"

    @save_format.setter
    def save_format(self, value: str) -> None:
        self._store.setValue("save/format", value)

    @property
    def save_quality(self) -> int:
        return min(100, max(1, self._int("save/quality", 95)))

    @save_quality.setter
    def save_quality(self, value: int) -> None:
        self._store.setValue("save/quality", int(value))

    # Window.
    @property
    def geometry(self) -> QByteArray | None:
        value = self._store.value("window/geometry")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    @geometry.setter
    def geometry(self, value: QByteArray) -> None:
        self._store.setValue("window/geometry", value)

    @property
    def recent_files(self) -> list[Path]:
        value = self._store.value("recent/files", [])
        items = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else []
        return [Path(item) for item in items if isinstance(item, str) and item][:MAX_RECENT_FILES]

    @recent_files.setter
    def recent_files(self, paths: list[Path]) -> None:
        self._store.setValue("recent/files", [str(p) for p in paths[:MAX_RECENT_FILES]])

    def add_recent_file(self, path: Path) -> None:
        """Most recent first, each file once."""
        path = Path(path).resolve()
        self.recent_files = [path] + [p for p in self.recent_files if p != path]
