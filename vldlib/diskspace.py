"""A full disk said in one line: :class:`DiskFullError` and the helpers that recognise and word it.

A write that runs out of space fails as an ``OSError`` (``ENOSPC``, or ``EDQUOT`` for a quota), or,
from inside ``torch.save``, as a ``RuntimeError`` whose cause or context is that ``OSError`` (or
whose text says so). :func:`disk_full` turns such an error into one line naming the folder, the
bytes needed (when the writer knows them), the space free there (``shutil.disk_usage``) and the
fix. The writers themselves are atomic (:mod:`vldlib.io`), so nothing half-written stays behind.
"""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

__all__ = ["DiskFullError", "is_disk_full", "disk_full", "free_bytes", "tensor_bytes", "human_bytes"]

_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
_FULL_TEXTS = ("no space left on device", "disk quota exceeded")


class DiskFullError(OSError):
    """A write that found no space left; ``str()`` is the one-line message (folder, sizes, fix)."""

    def __init__(self, message: str, folder: str | os.PathLike) -> None:
        super().__init__(errno.ENOSPC, message)
        self.message = message
        self.folder = Path(folder)

    def __reduce__(self):  # rebuilt from its arguments when it crosses a process boundary
        return type(self), (self.message, self.folder)

    def __str__(self) -> str:
        return self.message


def is_disk_full(err: BaseException | str) -> bool:
    """Whether ``err`` (or an error in its cause/context chain) says the disk or quota is full;
    ``err`` may also be an error's text (a notebook cell's ``evalue``)."""
    if isinstance(err, str):
        return any(text in err.lower() for text in _FULL_TEXTS)
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in _FULL_ERRNOS:
            return True
        if any(text in str(cur).lower() for text in _FULL_TEXTS):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def human_bytes(n: float) -> str:
    """``n`` bytes as a short human-readable size (``"12.3 MiB"``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop always returns


def free_bytes(folder: str | os.PathLike) -> int | None:
    """Bytes free on the disk of ``folder`` (its nearest existing parent), None when unknown."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors held in ``obj`` (nested dicts, lists, tuples): what a ``torch.save``
    of it needs at least."""
    if hasattr(obj, "element_size") and hasattr(obj, "numel"):
        return int(obj.element_size()) * int(obj.numel())
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def disk_full(folder: str | os.PathLike, what: str, fix: str, needed: int | None = None) -> DiskFullError:
    """The one-line error for a full disk while writing ``what`` into ``folder``; ``fix`` says what
    the user can do (e.g. "free space there or point the cache elsewhere")."""
    free = free_bytes(folder)
    sizes = [f"{human_bytes(needed)} needed" if needed else None,
             f"{human_bytes(free)} free" if free is not None else None]
    said = ", ".join(s for s in sizes if s)
    return DiskFullError(f"no space left on the disk of {folder} while writing {what}"
                         f"{f' ({said})' if said else ''}: {fix}", folder)
