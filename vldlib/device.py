"""Device choice and mixed precision, one helper each (used by teachers and the trainer)."""
from __future__ import annotations

import contextlib

import torch

__all__ = ["resolve_device", "autocast", "resolve_precision", "cpu_bf16_native", "fast_precision"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``.

    An unknown name, or CUDA asked for where there is none, raises ``ValueError`` with the fix.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here: "
                         "use device='cpu' or 'auto'")
    return dev


def resolve_precision(device: torch.device, amp: bool, precision: str | None = None) -> str:
    """The student's compute precision, ``"bf16"`` or ``"fp32"``.

    ``precision`` wins when given (``"bf16"`` on any device, CPU included); ``None`` keeps the
    ``amp`` rule: bf16 on CUDA when ``amp``, fp32 otherwise (so old configs run as before).
    """
    if precision is not None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"unknown precision {precision!r}: use 'fp32', 'bf16' or None")
        return precision
    return "bf16" if amp and device.type == "cuda" else "fp32"


def cpu_bf16_native() -> bool:
    """Whether this CPU computes bf16 natively in oneDNN (AVX-512 BF16 or AMX); elsewhere bf16
    autocast still works (same numbers) but is emulated and slower than fp32."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - builds without mkldnn
        return False


def fast_precision(device: str | torch.device) -> str:
    """The faster student precision on ``device``: ``"bf16"`` on CUDA and on a CPU that computes bf16
    natively (:func:`cpu_bf16_native`), else ``"fp32"``. Emulated bf16 is the slow choice there: on an
    AVX2-only CPU the offline student ran at ~90 img/s in bf16 against ~960 in fp32 (one thread).
    A CUDA device need not be present (configs are built, and hashed, before they train)."""
    kind = device.type if isinstance(device, torch.device) else str(device).split(":")[0]
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        return "bf16"
    return "bf16" if cpu_bf16_native() else "fp32"


def autocast(device: torch.device, amp: bool | str) -> contextlib.AbstractContextManager:
    """bf16 autocast or none. ``amp`` is a precision from :func:`resolve_precision`
    (``"bf16"``: autocast on ``device``, CPU or CUDA; ``"fp32"``: none) or, as before, a bool
    (True: bf16 autocast on CUDA only)."""
    if isinstance(amp, str):
        if amp == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return torch.autocast(device.type if device.type in ("cpu", "cuda") else "cpu", enabled=False)
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)
