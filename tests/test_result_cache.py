"""The app keeps finished restorations within a memory budget, dropping the one used longest ago."""
from dataclasses import dataclass

from edpn_gui.result_cache import ResultCache


@dataclass
class Result:
    nbytes: int


def test_the_result_used_longest_ago_goes_first_when_over_budget():
    cache = ResultCache(budget_bytes=250)
    first, second, third = Result(100), Result(100), Result(100)
    cache.add("first", first)
    cache.add("second", second)
    assert cache.get("first") is first  # shown again: now the most recently used
    cache.add("third", third)
    assert cache.get("second") is None
    assert cache.get("first") is first and cache.get("third") is third


def test_a_result_bigger_than_the_budget_is_still_kept_until_the_next():
    cache = ResultCache(budget_bytes=10)
    big = Result(1000)
    cache.add("big", big)
    assert cache.get("big") is big and len(cache) == 1
    cache.add("next", Result(5))
    assert cache.get("big") is None and len(cache) == 1
    assert cache.get(None) is None  # no photo or settings: nothing to show
