"""A small statistics module with a bug for the code-fix example: `median` forgets to sort."""

from __future__ import annotations

from collections.abc import Iterable


def mean(values: Iterable[float]) -> float:
    """The arithmetic mean of `values`."""
    items = list(values)
    return sum(items) / len(items)


def median(values: Iterable[float]) -> float:
    """The middle value of `values` (the mean of the two middle values for an even count)."""
    ordered = list(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2
