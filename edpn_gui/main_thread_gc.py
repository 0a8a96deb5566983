"""Python's cyclic garbage collection, run on the GUI thread only.

A collection runs in whichever thread allocates when a threshold is crossed, often a worker in the middle of
a restore. When it frees a widget's Python wrapper there, PySide defers the C++ deletion to the GUI thread,
where it crashed: a segfault in Shiboken::BindingManager::runDeletionInMainThread, met in the test suite
about once in five runs. While a MainThreadCollector runs, automatic collection is off and a timer on the GUI
thread collects each generation once its threshold is crossed, as the interpreter would have.
"""
from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer, Slot

CHECK_INTERVAL_MS = 500


class MainThreadCollector(QObject):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.collect_due)
        self._timer.start(CHECK_INTERVAL_MS)

    @Slot()
    def collect_due(self) -> None:
        """The oldest generation whose threshold was crossed (a collection includes the younger ones)."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        due = [generation for generation in range(3) if thresholds[generation] and counts[generation] >
               thresholds[generation]]
        if due:
            gc.collect(due[-1])

    def stop(self) -> None:
        """Back to automatic collection, once no worker thread runs."""
        self._timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()
