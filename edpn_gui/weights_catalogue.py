"""Which weights the app offers for each mode and which one is in use (Qt-free)."""
from __future__ import annotations

from pathlib import Path

from edpn_core import resources
from edpn_core.config import TASKS, Task
from edpn_core.model_io import WeightsInfo, read_weights_info


class WeightsCatalogue:
    """The shipped weights of each task plus the files the user loaded this session, and the user's choice."""

    def __init__(self) -> None:
        self._loaded: dict[Task, list[Path]] = {task: [] for task in TASKS}
        self._chosen: dict[Task, Path] = {}

    def offered(self, task: Task) -> list[tuple[str, Path]]:
        """(label, file) for the menu: shipped first, then loaded. Raises WeightsError for unusable shipped
        weights."""
        shipped = [(f"{preset} (shipped)", path) for preset, path in resources.shipped_weights(task).items()]
        return shipped + [(path.name, path) for path in self._loaded[task]]

    def load(self, path: Path) -> WeightsInfo:
        """Offer a weights file for its own task and choose it there; WeightsError if it is unusable."""
        info = read_weights_info(path)
        if path not in self._loaded[info.task]:
            self._loaded[info.task].append(path)
        self._chosen[info.task] = path
        return info

    def choose(self, task: Task, path: Path) -> None:
        self._chosen[task] = path

    def weights_for(self, task: Task, device_type: str) -> Path:
        """The user's choice for `task`, else the shipped default for the device. Raises FileNotFoundError
        when none are shipped (the message says where they were looked for)."""
        chosen = self._chosen.get(task)
        return chosen if chosen is not None else resources.default_weights(task, device_type)
