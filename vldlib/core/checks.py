"""Input checks shared by the losses and the metrics: feature matrices, class indices, numbers.

Each check raises a one-line :class:`ValueError` naming the input, what was wrong and the fix, and
returns nothing or the checked value. Non-finite features raise :class:`NonFiniteInput` (a
``ValueError``) that carries the input's name, so that a trainer can tell a diverging student from
damaged teacher features. Pure: torch only, no data, no models, no I/O.
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

__all__ = [
    "NonFiniteInput",
    "check_matrix",
    "check_features",
    "check_finite",
    "check_finite_norms",
    "check_same_device",
    "check_same_dim",
    "check_same_rows",
    "check_indices",
    "check_labels",
    "label_bound",
    "check_positive",
    "check_nonnegative",
    "check_count",
]


class NonFiniteInput(ValueError):
    """An input feature tensor holding NaN or inf; ``name`` says which (``"student"``, ``"teacher"``,
    ``"text"``, ``"captions"``), so that a trainer can tell a diverging student from bad features."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name

    def __reduce__(self):  # pickled by a worker process: rebuilt from both arguments, not str(self) alone
        return type(self), (str(self), self.name)


def check_matrix(x: object, name: str, *, rows: str = "B", row_is: str = "sample") -> Tensor:
    """``x`` as a non-empty floating ``[rows, D]`` tensor (one feature row per ``row_is``)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [{rows}, D], got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D [{rows}, D] (one feature row per {row_is}), got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); pass at least one non-empty feature row")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}; convert with .float()")
    return x


def check_finite(x: Tensor, name: str) -> None:
    """:class:`NonFiniteInput` when ``x`` holds NaN or inf, with the likely cause for ``name``."""
    if not bool(torch.isfinite(x).all()):
        hint = ("the student's outputs diverged: lower the learning rate or raise tau" if name == "student"
                else "check where these features come from (the teacher, its feature cache)")
        raise NonFiniteInput(f"{name} contains NaN or inf values; {hint}", name)


def check_features(x: object, name: str) -> Tensor:
    """``x`` as a non-empty floating ``[B, D]`` tensor of finite values (:func:`check_matrix`, :func:`check_finite`)."""
    check_finite(check_matrix(x, name), name)
    return x  # type: ignore[return-value]


def check_finite_norms(norms: Tensor, name: str) -> None:
    """:class:`NonFiniteInput` when a row norm of ``name`` is NaN or inf (a NaN/inf value, or an overflow)."""
    if not bool(torch.isfinite(norms).all()):
        raise NonFiniteInput(f"{name} contains NaN or inf values (or values so large their norm overflows); "
                             "check the features", name)


def check_same_device(a: Tensor, b: Tensor, na: str, nb: str) -> None:
    if a.device != b.device:
        raise ValueError(f"{na} is on {a.device} but {nb} is on {b.device}; move both to the same device")


def check_same_dim(a: Tensor, b: Tensor, na: str, nb: str) -> None:
    """Same device and feature dimension D (a student must map to the teacher's dimension)."""
    check_same_device(a, b, na, nb)
    if a.shape[1] != b.shape[1]:
        hint = ("; the student's last layer must map to the teacher's embedding dimension"
                if "student" in (na, nb) else "")
        raise ValueError(f"feature dimensions differ: {na} has D={a.shape[1]}, {nb} has D={b.shape[1]}{hint}")


def check_same_rows(a: Tensor, b: Tensor, na: str, nb: str) -> None:
    """Same number of rows: row i of both describes the same image."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"row counts differ: {na} has {a.shape[0]} rows, {nb} has {b.shape[0]}; "
                         "row i of both must describe the same image")


def check_indices(x: object, name: str) -> Tensor:
    """``x`` as a 1-D integer tensor (class indices; not float, complex or bool)."""
    if not isinstance(x, Tensor) or x.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor of class indices")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class indices, got dtype {x.dtype}")
    return x


def check_labels(labels: object, batch: int, num_classes: int, device: torch.device) -> Tensor:
    """``labels`` as a long ``[batch]`` tensor on ``device`` with values in ``0..num_classes-1``."""
    if not isinstance(labels, Tensor):
        raise ValueError(f"labels must be a 1-D integer torch.Tensor, got {type(labels).__name__}")
    if labels.device != device:
        raise ValueError(f"labels are on {labels.device} but the features are on {device}; move them together")
    if labels.dim() != 1 or labels.shape[0] != batch:
        raise ValueError(f"labels must have shape [{batch}] (one class index per row), got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor (class indices), got dtype {labels.dtype}")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"labels must lie in [0, {num_classes - 1}] (rows of text), got values in [{lo}, {hi}]; "
            "labels index the rows of the text-feature matrix"
        )
    return labels.long()


def label_bound(labels: object) -> int:
    """An upper bound for labels that only need to be integers (compared, not used as text rows)."""
    if isinstance(labels, Tensor) and labels.numel() and not labels.is_floating_point() \
            and labels.dtype != torch.bool and not labels.is_complex():
        return int(labels.max()) + 1
    return 1


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_positive(value: object, name: str, hint: str = "") -> float:
    """``value`` as a float when it is a finite number > 0 (``hint``: e.g. " (the paper's code uses 0.07)")."""
    if not _is_real(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number{hint}, got {value!r}")
    return float(value)


def check_nonnegative(value: object, name: str, hint: str = "") -> float:
    """``value`` as a float when it is a finite number >= 0."""
    if not _is_real(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0{hint}, got {value!r}")
    return float(value)


def check_count(value: object, name: str, hint: str = "") -> int:
    """``value`` as an int when it is an integer >= 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1{hint}, got {value!r}")
    return int(value)
