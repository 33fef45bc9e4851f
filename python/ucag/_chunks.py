"""Chunked execution: work on a batch in slices that halve when a device runs out of memory."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TypeVar

import torch

#: What torch raises when a device runs out of memory (torch.OutOfMemoryError from 2.5 on).
OutOfMemoryError = torch.cuda.OutOfMemoryError

T = TypeVar("T")


def run_in_chunks(rows: int, size: int, run: Callable[[slice], T], what: str = "rows") -> tuple[list[T], int]:
    """``run`` on consecutive slices of at most ``size`` of ``rows`` rows, in order.

    When a slice runs out of device memory it is halved and retried (down to one row);
    what was computed before is kept, and the smaller size holds for the rest. Returns the
    results and the size that ran last, for the caller to remember. A warning reports
    each back-off."""
    results: list[T] = []
    start = 0
    while start < rows:
        stop = min(start + size, rows)
        try:
            results.append(run(slice(start, stop)))
        except OutOfMemoryError:
            if stop - start == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            size = (stop - start) // 2
            warnings.warn(
                f"out of memory with {stop - start} {what} per chunk; continuing with {size}",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        start = stop
    return results, size
