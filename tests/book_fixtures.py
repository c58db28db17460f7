"""Shared fixtures of the book tests (a pytest plugin: ``pytest_plugins = ["book_fixtures"]``).

``smoke_book``: one ``python -m vldlib.book --profile smoke`` per test session, into a temporary
results / executed / build folder (the repository's own ``book/executed`` and ``_build`` are not
touched). Used by ``test_book.py`` and ``test_browser.py``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]
SMOKE_TIMEOUT_S = 1500


@dataclass(frozen=True)
class SmokeBook:
    returncode: int
    output: str
    seconds: float
    results: Path
    executed: Path
    html: Path
    repo_before: dict[str, int]
    repo_after: dict[str, int]

    def require_success(self) -> None:
        if self.returncode != 0:
            pytest.fail(f"`python -m vldlib.book --profile smoke` exited {self.returncode}:\n"
                        f"{self.output[-6000:]}", pytrace=False)


def repo_outputs() -> dict[str, int]:
    """mtime of every file under the repository's own book/executed and _build (to see writes)."""
    out: dict[str, int] = {}
    for folder in (REPO / "book" / "executed", REPO / "_build"):
        if folder.exists():
            out[str(folder)] = folder.stat().st_mtime_ns
            for path in folder.rglob("*"):
                out[str(path)] = path.stat().st_mtime_ns
    return out


def book_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def _run_book(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m vldlib.book ARGS`` from the repo root, stdout and stderr merged (``env``: extra
    environment variables)."""
    return subprocess.run([sys.executable, "-m", "vldlib.book", *args], cwd=REPO, env={**book_env(), **(env or {})},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def run_book():
    """``run_book(*args, timeout=...)``: ``python -m vldlib.book ARGS`` in a subprocess (output merged)."""
    return _run_book


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory: pytest.TempPathFactory, smoke_cache: Path) -> SmokeBook:
    """The smoke-profile book, executed and built once per session (not asserted here), its
    teacher features in the session's shared smoke cache (``$VLD_CACHE``). Under pytest-xdist the
    workers share one build: the first to need it builds it under a file lock, the others wait and
    read what it recorded (``smoke_book.json`` beside the build)."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the session's folder, above each worker's own
    root = shared / "smoke_book"
    record = shared / "smoke_book.json"
    with FileLock(str(shared / "smoke_book.lock")):
        if record.is_file():
            saved = json.loads(record.read_text())
            return SmokeBook(**{**saved, **{k: Path(saved[k]) for k in ("results", "executed", "html")}})
        root.mkdir()
        results, executed, build = root / "results", root / "executed", root / "build"
        before = repo_outputs()
        start = time.perf_counter()
        proc = _run_book("--profile", "smoke", "--results-dir", str(results), "--executed-dir", str(executed),
                         "--build-dir", str(build), timeout=SMOKE_TIMEOUT_S,
                         env={"VLD_CACHE": str(smoke_cache)})
        book = SmokeBook(proc.returncode, proc.stdout, time.perf_counter() - start, results, executed,
                         build / "_build" / "html", before, repo_outputs())
        record.write_text(json.dumps({**asdict(book), **{k: str(getattr(book, k)) for k in ("results", "executed", "html")}}))
        return book
