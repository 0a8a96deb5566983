"""Full restorations kept for instant re-display when the user comes back to a photo and settings (Qt-free)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Hashable, Protocol, TypeVar


class Sized(Protocol):
    @property
    def nbytes(self) -> int: ...


Result = TypeVar("Result", bound=Sized)


class ResultCache(Generic[Result]):
    """Least recently used first out once the results pass `budget_bytes`; the newest one is always kept, so
    a photo bigger than the budget still re-displays until the next restore."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._results: OrderedDict[Hashable, Result] = OrderedDict()

    def get(self, key: Hashable | None) -> Result | None:
        """The result for `key`, marked as just used."""
        if key not in self._results:
            return None
        self._results.move_to_end(key)
        return self._results[key]

    def add(self, key: Hashable, result: Result) -> None:
        self._results[key] = result
        self._results.move_to_end(key)
        while len(self._results) > 1 and sum(r.nbytes for r in self._results.values()) > self.budget_bytes:
            self._results.popitem(last=False)

    def __len__(self) -> int:
        return len(self._results)
