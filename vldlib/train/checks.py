"""The one-line checks of config values (shared by :mod:`vldlib.train.config` and its typed
sub-configs, :mod:`vldlib.train.options`): each raises a ``ValueError`` naming the field, the value
and what is valid."""
from __future__ import annotations

import math
from typing import Any

__all__ = ["is_number", "check_choice", "check_int", "check_auto_positive", "check_auto_nonneg"]


def is_number(x: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_choice(name: str, value: Any, valid: tuple[str, ...], extra: str = "") -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(map(repr, valid))}"
                         + (f" {extra}" if extra else ""))


def check_int(name: str, value: Any, minimum: int, extra: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{extra}, got {value!r}")


def check_auto_positive(name: str, value: Any) -> None:
    if value != "auto" and (not is_number(value) or not value > 0 or not math.isfinite(value)):
        raise ValueError(f"{name} must be a number > 0 or 'auto', got {value!r}")


def check_auto_nonneg(name: str, value: Any) -> None:
    if value != "auto" and (not is_number(value) or value < 0 or not math.isfinite(value)):
        raise ValueError(f"{name} must be a number >= 0 or 'auto', got {value!r}")
