"""A watchdog that makes a local Ray started by a driver die with that driver.

Ray's own fate sharing (``PR_SET_PDEATHSIG`` on the processes ``ray.init`` spawns) does not reach
the processes those spawn in turn (workers, agents): when the driver is killed (SIGKILL, OOM
killer) they are left running. Every process of a local Ray that vldlib starts carries the
environment variable :data:`MARK` (``<driver pid>:<nonce>``; the Ray processes inherit it from
the driver, their children from them). :func:`start` runs this file as a small process of its own
(stdlib only, its own session, SIGINT ignored) that blocks on a pipe the driver holds open; when
the driver dies, for any reason, the pipe reaches end-of-file and the watchdog SIGKILLs every
process that carries the mark, then exits.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

__all__ = ["MARK", "new_mark", "marked_pids", "kill_marked", "start"]

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


def kill_marked(mark: str, rounds: int = 20) -> None:
    """SIGKILL every process marked ``mark``, again until none is left (a worker may be starting)."""
    for _ in range(rounds):
        pids = marked_pids(mark)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.2)


def start(mark: str) -> int | None:
    """Start the watchdog of ``mark``; returns the write end of its pipe, a raw descriptor that
    stays open (nothing closes it) until this process dies, or until the caller closes it to let
    the watchdog clean up now. None where the system has no ``/proc`` (no watchdog)."""
    if not os.path.isdir("/proc/self"):
        return None
    read_end, write_end = os.pipe()  # not inherited by other children (PEP 446)
    env = {k: v for k, v in os.environ.items() if k != MARK}
    try:
        subprocess.Popen([sys.executable, "-S", os.path.abspath(__file__), mark], stdin=read_end,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    except OSError:
        os.close(write_end)
        return None
    finally:
        os.close(read_end)
    return write_end


def _main(mark: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while sys.stdin.buffer.read(65536):  # only the driver's death (or its close) ends this
        pass
    kill_marked(mark)


if __name__ == "__main__":
    _main(sys.argv[1])
