"""Tests of stats.py: `python test_stats.py` runs them (no third-party packages); pytest finds them too."""

from __future__ import annotations

import sys
import traceback

from stats import mean, median


def test_mean() -> None:
    """The mean of three numbers."""
    assert mean([1, 2, 6]) == 3


def test_median_of_sorted_values() -> None:
    """Sorted input, odd and even counts."""
    assert median([1, 2, 3]) == 2
    assert median([1, 2, 3, 4]) == 2.5


def test_median_of_unsorted_values() -> None:
    """Unsorted input, odd and even counts."""
    assert median([3, 1, 2]) == 2, f"median([3, 1, 2]) is {median([3, 1, 2])}"
    assert median([4, 1, 3, 2]) == 2.5


if __name__ == "__main__":
    failed = 0
    for test in (test_mean, test_median_of_sorted_values, test_median_of_unsorted_values):
        try:
            test()
        except AssertionError:
            failed += 1
            print(f"FAIL {test.__name__}\n{traceback.format_exc(limit=1)}")
        else:
            print(f"ok   {test.__name__}")
    print(f"{3 - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
