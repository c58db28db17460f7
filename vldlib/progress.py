"""Progress as plain lines: what a long stage is doing, readable in a terminal, a log file or a
book build's training pool.

Each line is one event, prefixed with a tag (a run's short hash, or ``teacher`` for the shared
feature warm-up), e.g. ``[3f9a01c2] epoch 4/90: loss 2.113 ...`` or
``[3f9a01c2] teacher features cub/train: 1024/5994 img (212.4 img/s, ETA 23 s)``. Lines of one
task are rate-limited (:data:`MIN_INTERVAL_S`), the first and the last always shown, and each is
flushed at once, so the lines of pool workers reach the terminal as they happen.

Where lines go (:func:`progress_stream`): ``$VLD_PROGRESS=0`` switches them off;
``$VLD_PROGRESS=terminal`` (set by the book driver) sends them to the process's own stderr
(``sys.__stderr__``: a notebook kernel and its spawned pool workers share it with the terminal that
started the build); otherwise ``sys.stderr``.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, TextIO

__all__ = ["ENV", "MIN_INTERVAL_S", "progress_stream", "progress_default", "Progress", "Task",
           "format_duration"]

#: The environment variable that routes progress lines (see the module docstring).
ENV = "VLD_PROGRESS"
#: At most one line per task per this many seconds (the first and the last always).
MIN_INTERVAL_S = 5.0


def progress_stream(enabled: bool = True) -> TextIO | None:
    """The stream progress lines go to, or None when they are off (see the module docstring)."""
    mode = os.environ.get(ENV, "")
    if not enabled or mode == "0":
        return None
    if mode == "terminal":
        return sys.__stderr__
    return sys.stderr


def progress_default(progress: bool) -> bool:
    """``progress``, or True when ``$VLD_PROGRESS=terminal`` asks every run for its lines (the
    book driver's training pool, whose callers pass ``progress=False``)."""
    return bool(progress) or os.environ.get(ENV) == "terminal"


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 04 min``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


class Progress:
    """The progress lines of one run (or one command): ``[tag] text``; a no-op without a stream.

    ``interval``: the rate limit of :meth:`task` lines and of :meth:`event` lines sharing a key;
    ``clock``: the time source (tests pass a fake one)."""

    def __init__(self, tag: str = "", stream: TextIO | None = None, *, interval: float = MIN_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.tag, self.stream, self.interval, self.clock = tag, stream, float(interval), clock
        self._last: dict[str, float] = {}

    @classmethod
    def of(cls, progress: "bool | Progress", tag: str = "") -> "Progress":
        """``progress`` as a :class:`Progress`: itself, or one on :func:`progress_stream` (True) or off."""
        if isinstance(progress, Progress):
            return progress
        return cls(tag, progress_stream(bool(progress)))

    @property
    def enabled(self) -> bool:
        return self.stream is not None

    def line(self, text: str) -> None:
        """Write one line now (not rate-limited)."""
        if self.stream is None:
            return
        try:
            self.stream.write((f"[{self.tag}] " if self.tag else "") + text + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream never stops a run
            pass

    def event(self, key: str, text: str, *, force: bool = False) -> bool:
        """Write ``text`` unless a line with the same ``key`` was written less than ``interval``
        ago (``force``: always). Returns whether it was written."""
        now = self.clock()
        last = self._last.get(key)
        if not force and last is not None and now - last < self.interval:
            return False
        self._last[key] = now
        self.line(text)
        return True

    def task(self, what: str, total: int, unit: str = "img") -> "Task":
        """A counted task (``update(n)`` / ``close()``, like a tqdm bar) that writes rate-limited lines."""
        return Task(self, what, int(total), unit)


class Task:
    """``what: done/total unit (rate unit/s, ETA ...)`` lines of one counted task."""

    def __init__(self, progress: Progress, what: str, total: int, unit: str) -> None:
        self.progress, self.what, self.total, self.unit = progress, what, total, unit
        self.done = 0
        self.start = progress.clock()
        self._closed = False
        self._shown = -1

    def rate(self) -> float:
        elapsed = self.progress.clock() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def text(self) -> str:
        rate = self.rate()
        if self.done >= self.total:
            tail = f"done in {format_duration(self.progress.clock() - self.start)}"
        else:
            tail = f"ETA {format_duration((self.total - self.done) / rate)}" if rate > 0 else "ETA ?"
        return f"{self.what}: {self.done}/{self.total} {self.unit} ({rate:.1f} {self.unit}/s, {tail})"

    def update(self, n: int = 1) -> None:
        self.done += int(n)
        first = self._shown < 0
        if self.progress.event(f"task:{self.what}", self.text(), force=first or self.done >= self.total):
            self._shown = self.done

    def close(self) -> None:
        """The last line (unless the last update showed it already)."""
        if self._closed:
            return
        self._closed = True
        if self.total and self._shown != self.done:
            self.progress.event(f"task:{self.what}", self.text(), force=True)

    def __enter__(self) -> "Task":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
