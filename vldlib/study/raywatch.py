"""A watchdog that makes a local Ray started by a driver die with that driver.

Ray's own fate sharing (``PR_SET_PDEATHSIG`` on the processes ``ray.init`` spawns) does not reach
the processes those spawn in turn (workers, agents): when the driver is killed (SIGKILL, OOM
killer) they are left running. Every process of a local Ray that vldlib starts carries the
environment variable :data:`MARK` (``<driver pid>:<nonce>``; the Ray processes inherit it from
the driver, their children from them). :func:`start` runs this file as a small process of its own
(stdlib only, its own session, SIGINT ignored) that blocks on a pipe the driver holds open; when
the driver dies, for any reason, the pipe reaches end-of-file and the watchdog SIGKILLs every
process that carries the mark, then exits.

The mark alone is not enough: Ray's agents rename themselves (``setproctitle``), which overwrites
the memory ``/proc/<pid>/environ`` reads, so an agent loses its mark a few seconds after it
starts. While the driver lives, the watchdog therefore keeps a list of the marked processes and
of every descendant of one (pid and start time, so a reused pid is never taken for ours) and
kills those too.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
import uuid

__all__ = ["MARK", "new_mark", "marked_pids", "marked_tree", "kill_marked", "start"]

#: The environment variable that marks the processes of a local Ray started by vldlib.
MARK = "VLD_RAY_OWNER"


def new_mark() -> str:
    """A mark unique to this driver and this Ray: ``<pid>:<random hex>``."""
    return f"{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _environ_has(pid: int, entry: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return entry in fh.read().split(b"\0")
    except OSError:  # gone, or not ours to read
        return False


def marked_pids(mark: str) -> list[int]:
    """The processes (other than this one) whose environment holds ``MARK=mark``."""
    entry = f"{MARK}={mark}".encode()
    own = os.getpid()
    return [int(d) for d in os.listdir("/proc") if d.isdigit() and int(d) != own and _environ_has(int(d), entry)]


def _stat(pid: int) -> tuple[int, str] | None:
    """``(parent pid, start time)`` of a live process, None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == b"Z":
        return None
    return int(fields[1]), fields[19].decode()


def marked_tree(mark: str, known: dict[int, str] | None = None) -> dict[int, str]:
    """The processes marked ``mark``, those in ``known`` (pid -> start time) that still run with
    the same start time, and every descendant of either: pid -> start time. Not this process."""
    own = os.getpid()
    live = {int(d): st for d in os.listdir("/proc") if d.isdigit() and int(d) != own
            and (st := _stat(int(d))) is not None}
    entry = f"{MARK}={mark}".encode()
    tree = {pid: start for pid, (_, start) in live.items() if _environ_has(pid, entry)}
    tree.update({pid: start for pid, start in (known or {}).items() if pid in live and live[pid][1] == start})
    grown = True
    while grown:
        grown = False
        for pid, (parent, start) in live.items():
            if pid not in tree and parent in tree:
                tree[pid] = start
                grown = True
    return tree


def kill_marked(mark: str, rounds: int = 20, known: dict[int, str] | None = None) -> None:
    """SIGKILL every process of :func:`marked_tree`, again until none is left (a worker may be
    starting)."""
    for _ in range(rounds):
        pids = marked_tree(mark, known)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.2)


def start(mark: str, every: float = 1.0) -> int | None:
    """Start the watchdog of ``mark``; returns the write end of its pipe, a raw descriptor that
    stays open (nothing closes it) until this process dies, or until the caller closes it to let
    the watchdog clean up now. None where the system has no ``/proc`` (no watchdog). ``every``:
    seconds between two looks at the process tree."""
    if not os.path.isdir("/proc/self"):
        return None
    read_end, write_end = os.pipe()  # not inherited by other children (PEP 446)
    env = {k: v for k, v in os.environ.items() if k != MARK}
    try:
        subprocess.Popen([sys.executable, "-S", os.path.abspath(__file__), mark, str(every)], stdin=read_end,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    except OSError:
        os.close(write_end)
        return None
    finally:
        os.close(read_end)
    return write_end


def _main(mark: str, every: float = 1.0) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    known: dict[int, str] = {}
    fd = sys.stdin.fileno()
    while True:  # only the driver's death (or its close) ends this
        if select.select([fd], [], [], every)[0]:
            if not os.read(fd, 65536):
                break
        else:
            known = marked_tree(mark, known)
    kill_marked(mark, known=known)


if __name__ == "__main__":
    _main(sys.argv[1], *(float(a) for a in sys.argv[2:3]))
