"""The loaded weights the app's single restores and its batches share (Qt-free)."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from edpn_core.config import Task
from edpn_core.inference.engine import Restorer


@dataclass(frozen=True)
class ModelChoice:
    """What a restorer is loaded for: changing any of these loads weights, so the cache is keyed by it."""

    task: Task
    weights: Path
    device: str  # "auto", "cpu", "cuda:0", ...


class RestorerCache:
    """One loaded Restorer, for the last choice asked for; asking for another releases it first, so two sets of
    weights are never held for the window's sake. A batch keeps the restorer it got while it runs. The workers ask
    from their own threads: loading happens under a lock, and a restorer is never changed once made (each call
    brings its own RunSettings), so two threads can restore with it at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._choice: ModelChoice | None = None
        self._restorer: Restorer | None = None

    def restorer_for(self, choice: ModelChoice) -> Restorer:
        with self._lock:
            if self._restorer is None or self._choice != choice:
                self._restorer = None  # free the old model before loading the next one
                self._restorer = Restorer(choice.weights, device=choice.device, task=choice.task)
                self._choice = choice
            return self._restorer
