"""The local-Ray watchdog kills what its driver's Ray started, also processes whose environment no
longer shows the mark (Ray's agents overwrite it when they rename themselves), and nothing else."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from vldlib.study import raywatch

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="/proc")

# A marked parent that starts a child whose environment lacks the mark (as an agent's does once
# it has renamed itself), prints the child's pid and sleeps.
PARENT = """
import os, subprocess, sys, time
env = {k: v for k, v in os.environ.items() if k != sys.argv[1]}
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=env)
print(child.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    return raywatch._stat(pid) is not None


def _wait_gone(pids, seconds=20.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_watchdog_kills_marked_processes_and_their_unmarked_descendants_only():
    mark = raywatch.new_mark()
    write_end = raywatch.start(mark, every=0.2)
    assert write_end is not None
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    parent = subprocess.Popen([sys.executable, "-c", PARENT, raywatch.MARK], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, raywatch.MARK: mark})
    try:
        child = int(parent.stdout.readline())
        assert raywatch.marked_pids(mark) == [parent.pid]  # the child carries no mark
        assert set(raywatch.marked_tree(mark)) == {parent.pid, child}
        time.sleep(1.0)  # the watchdog has seen the tree
        os.close(write_end)  # as when the driver dies
        assert _wait_gone([parent.pid, child]) == []
        assert _alive(bystander.pid)
    finally:
        for proc in (bystander, parent):
            proc.kill()
            proc.wait()


def test_a_known_pid_reused_by_another_process_is_not_killed():
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        start = raywatch._stat(other.pid)[1]
        assert raywatch.marked_tree("nobody:0", {other.pid: start}) == {other.pid: start}
        assert raywatch.marked_tree("nobody:0", {other.pid: start + "0"}) == {}
    finally:
        other.kill()
        other.wait()
