"""Sparsity schedules: pure functions of the optimizer step, registered by name.

Each takes the step and the config's (initial, final, start, end, frequency) and returns the sparsity
the masks should have after that step. Sparsity changes only on update steps (start, start + frequency,
...), and is the final value from `end` on.
"""

from __future__ import annotations

from collections.abc import Callable


def _progress(step: int, start: int, end: int, frequency: int) -> float | None:
    """Fraction of the pruning window done at the last update step <= `step`; None before `start`."""
    if step < start:
        return None
    if step >= end:
        return 1.0
    last_update = start + ((step - start) // frequency) * frequency
    return (last_update - start) / (end - start)


def cubic(step: int, initial: float, final: float, start: int, end: int, frequency: int) -> float:
    """Zhu & Gupta (2017), eq. 1: s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n dt))^3."""
    progress = _progress(step, start, end, frequency)
    if progress is None:
        return 0.0
    return final + (initial - final) * (1.0 - progress) ** 3


def linear(step: int, initial: float, final: float, start: int, end: int, frequency: int) -> float:
    progress = _progress(step, start, end, frequency)
    if progress is None:
        return 0.0
    return initial + (final - initial) * progress


def constant(step: int, initial: float, final: float, start: int, end: int, frequency: int) -> float:
    """One-shot: the final sparsity from the start step on."""
    return 0.0 if step < start else final


SCHEDULES: dict[str, Callable[..., float]] = {"cubic": cubic, "linear": linear, "constant": constant}


def is_update_step(step: int, start: int, end: int, frequency: int) -> bool:
    """Steps at which masks are recomputed: start, start + frequency, ..., and end."""
    return step == end or (start <= step < end and (step - start) % frequency == 0)
