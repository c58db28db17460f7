"""How the book driver (:mod:`vldlib.book`) ends when something outside a notebook goes wrong.

- Signals: while the driver runs, SIGTERM (Slurm preemption, ``timeout``, ``kill``) is handled as
  Ctrl-C is: the driver's worker processes (the local pool of the up-front training) are stopped
  at once, then :class:`Terminated` (a ``KeyboardInterrupt``) unwinds the driver, so that nothing
  partial stays and the next build resumes; exit 143 (Ctrl-C: 130). :func:`quiet_after_interrupt`
  drops what papermill and asyncio log while a notebook's kernel is shut down after either signal.
- Folders: :func:`check_folders` refuses an executed-notebooks folder and a build folder that
  would copy into each other, or that lie inside the notebook sources or the run store.
- Writes: :func:`write_failure` turns an ``OSError`` of a write (a full disk above all) into one
  line naming the folder, its free space and the fix.
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from vldlib.diskspace import free_bytes, human_bytes, is_disk_full

#: Exit codes of an interrupted build: Ctrl-C (SIGINT) and SIGTERM, as a shell reports them.
INTERRUPTED_EXIT = 130
TERMINATED_EXIT = 143
#: Seconds the workers get to exit after SIGTERM before they are killed.
WORKER_STOP_S = 10.0


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwound as Ctrl-C is (every ``except KeyboardInterrupt`` cleans up), exit 143."""


def stop_workers(timeout: float = WORKER_STOP_S) -> int:
    """Stop this process's ``multiprocessing`` children (the process pool of the up-front training;
    the notebooks' kernels are not among them) now: SIGTERM, then SIGKILL to any still alive after
    ``timeout`` s. A pool whose workers died is broken, so its shutdown returns at once instead
    of training every queued run first. Returns the number of children stopped."""
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    deadline = time.monotonic() + timeout
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()
            child.join(1.0)
    return len(children)


def _raise_on_signal(signum: int, frame) -> None:
    """The driver's SIGINT / SIGTERM handler: the workers first, then unwind the main thread."""
    stop_workers()
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _takes_over(signum: int, handler) -> bool:
    """Whether the driver may handle ``signum`` now: in the main thread, and only over its default
    disposition (Python's own SIGINT handler, SIGTERM's SIG_DFL): an ignored signal stays ignored
    and a caller's handler is kept."""
    default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
    return threading.current_thread() is threading.main_thread() and handler is default


#: ``-W`` option for the processes ``multiprocessing`` starts from here (its resource tracker, the
#: pool's workers): a worker stopped by :func:`stop_workers` cannot unlink the semaphores it made
#: (tqdm's lock); the tracker does, and its warning about them would follow the driver's one line.
TRACKER_WARNING = "ignore:resource_tracker:UserWarning"


@contextlib.contextmanager
def unwind_on_signals() -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM stop the worker processes and raise
    ``KeyboardInterrupt`` / :class:`Terminated` in the main thread (see :func:`_takes_over` for
    where); the previous handlers are restored afterwards."""
    added = TRACKER_WARNING not in sys.warnoptions
    if added:
        sys.warnoptions.append(TRACKER_WARNING)
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if _takes_over(signum, handler):
            previous[signum] = signal.signal(signum, _raise_on_signal)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if added and TRACKER_WARNING in sys.warnoptions:
            sys.warnoptions.remove(TRACKER_WARNING)


#: Loggers that speak while papermill unwinds after Ctrl-C: nbclient (through papermill's logger) says
#: "Kernel died while waiting for execute reply" and asyncio prints the cell task's DeadKernelError
#: ("Task exception was never retrieved") once the task is collected.
_UNWIND_LOGGERS = ("papermill", "asyncio", "traitlets")


@contextlib.contextmanager
def quiet_after_interrupt(loggers: Sequence[str] = _UNWIND_LOGGERS, seconds: float = 60.0):
    """Drop the log records of ``loggers`` for ``seconds`` from the moment Ctrl-C (or the driver's
    SIGTERM) arrives (the driver says it in one line; what the kernel shutdown logs on the way out,
    and the unretrieved task when it is collected as the process ends, is noise). Before an
    interrupt nothing is dropped, so a kernel that really dies is still reported, and after the
    window the loggers speak again (a long-lived caller, e.g. a Jupyter session, keeps its logs).
    A signal is caught only in the main thread and where Python's own SIGINT handler or the
    driver's handler (:func:`unwind_on_signals`) is in place, which then runs as before (an ignored
    signal stays ignored, a caller's handler is kept; then a KeyboardInterrupt seen here starts
    the window)."""
    interrupted = threading.Event()
    since: list[float] = []

    def _mark() -> None:
        if not interrupted.is_set():
            since.append(time.monotonic())
            interrupted.set()

    class _AfterInterrupt(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not (interrupted.is_set() and time.monotonic() - since[0] < seconds)

    previous: dict[int, object] = {}

    def _on_signal(signum, frame):  # the window starts, then the handler in place before runs
        _mark()
        handler = previous[signum]
        handler(signum, frame)  # type: ignore[operator]  # raises KeyboardInterrupt (or Terminated)
        raise KeyboardInterrupt

    drop = _AfterInterrupt()
    for name in loggers:
        logging.getLogger(name).addFilter(drop)
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(signum)
            if handler is _raise_on_signal or (signum == signal.SIGINT and handler is signal.default_int_handler):
                previous[signum] = signal.signal(signum, _on_signal)
    try:
        yield interrupted
    except KeyboardInterrupt:
        _mark()
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if not interrupted.is_set():  # after an interrupt the filter stays (inert after the window):
            for name in loggers:      # the cell task is collected later
                logging.getLogger(name).removeFilter(drop)


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (both resolved)."""
    return path == folder or folder in path.parents


def check_folders(executed: Path, build: Path, notebooks: Path, results: Path) -> str | None:
    """What is wrong with this choice of folders (one line naming both paths and the fix), or None.

    The book is staged by copying the executed notebooks into ``<build>/_build/_source``: an
    executed folder that holds the build folder, or lies in its ``_build``, would copy into
    itself. Neither may lie inside the notebook sources or the run store (their files would be
    taken for notebooks or runs), nor hold them (the staged copy would take them along). The
    executed folder may lie elsewhere in the build folder (the default: ``book/executed`` in the
    repository root)."""
    executed, build, notebooks, results = (Path(p).resolve() for p in (executed, build, notebooks, results))
    staged = build / "_build"
    fix = "give them separate folders, e.g. --executed-dir book/executed --build-dir ."
    if _inside(build, executed) or _inside(executed, staged):
        return (f"--executed-dir {executed} and --build-dir {build} overlap (the build copies the executed "
                f"notebooks into {staged}); {fix}")
    for flag, folder in (("--executed-dir", executed), ("--build-dir", build)):
        for other_flag, other in (("--notebooks-dir", notebooks), ("--results-dir", results)):
            if _inside(folder, other) or (flag == "--executed-dir" and _inside(other, folder)):
                return (f"{flag} {folder} and {other_flag} {other} overlap (one lies inside the other); "
                        f"choose a {flag} outside {other}")
            if flag == "--build-dir" and _inside(other, staged):
                return (f"{other_flag} {other} lies inside {staged}, which the build replaces; choose a "
                        f"--build-dir whose _build folder does not hold it")
    return None


def free_space(path: Path) -> str:
    """The free space on the filesystem of ``path`` (e.g. ``"12.0 MiB free"``), or "unknown free space"."""
    free = free_bytes(path)
    return "unknown free space" if free is None else f"{human_bytes(free)} free"


def _first_error(exc: OSError) -> tuple[OSError | None, str | None]:
    """The OSError and the path behind ``exc`` (``shutil.Error`` from a copy lists its failures as
    ``(src, dst, why)``)."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        src, dst, why = exc.args[0][0]
        return None, f"{dst}: {why}"
    return exc, exc.filename


def write_failure(exc: OSError, folder: Path, flag: str) -> str:
    """One line for an ``OSError`` of a write under ``folder`` (the driver's ``flag`` names it)."""
    err, where = _first_error(exc)
    where = where or str(folder)
    if is_disk_full(exc):
        return (f"no space left on the device of {flag} {folder} ({free_space(folder)}) while writing "
                f"{where}; free space there or choose another {flag}, then run again (finished notebooks "
                "and runs are kept)")
    what = err.strerror if err is not None and err.strerror else " ".join(str(exc).split())
    return f"cannot write {where}: {what}; choose a writable {flag} and run again"
