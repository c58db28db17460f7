"""Executing the book's notebooks: the chapters' missing runs trained up front in one pool
(:func:`pretrain`), then each notebook whose inputs changed executed by papermill
(:func:`execute_notebook`, kernel ``python3``, cwd = the repository root) into
``<executed>/<name>.ipynb`` (written atomically), its CSV tables swapped in only when it succeeded
(:func:`publish_downloads`)."""
from __future__ import annotations

import argparse
import contextlib
import errno
import io
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from vldlib.book.contents import DOWNLOADS, EXTRA, ROOT
from vldlib.book.errors import NotebookFailed
from vldlib.book.fingerprints import FINGERPRINTS, library_digest, save_fingerprint, store_digest, unchanged
from vldlib.book.pages import hide_code_cells, hide_injected, kernel_warnings, strip_warnings
from vldlib.book.planning import NotebookSource
from vldlib.book_faults import quiet_after_interrupt
from vldlib.diskspace import is_disk_full
from vldlib.io import replace_file, try_read_json, write_json_atomic, write_text_atomic
from vldlib.study.chapters import CHAPTERS, open_chapter
from vldlib.study.grid import run_grid
from vldlib.train.preflight import preflight

TIMES_KEY = "vldbook"  # notebook metadata key of the driver's measurements (seconds, profile, finished)
KERNEL = "python3"
# Kernel log level: keep the kernel's own log lines (e.g. "running over TCP without encryption",
# or a traceback about closed sockets when Ctrl-C stops the driver) out of the progress output;
# notebook errors still arrive as cell outputs.
KERNEL_ARGS: tuple[str, ...] = ("--IPKernelApp.log_level=CRITICAL",)
#: Seconds nbclient waits for a cell's last outputs (a figure, a table) after the cell finished; its
#: default (4 s) fails a notebook on a loaded machine ("Timeout waiting for IOPub output").
IOPUB_TIMEOUT = 60
STAGED_DOWNLOADS = ".downloads.new"  # executed_dir: the tables of the notebook executing now
PRETRAIN = ".pretrain.json"  # executed_dir: the time of the last up-front training of the chapters' runs


def utc_stamp() -> str:
    """Now, as the driver's measurements record it (``2026-01-01 00:00:00 UTC``)."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def _write_atomic(nb: Any, path: Path) -> None:
    import nbformat  # notebook tooling: only the book driver needs it

    text = nbformat.writes(nb)
    write_text_atomic(path, text if text.endswith("\n") else text + "\n")


def _keep_failed(partial: Path, kept: Path) -> Path | None:
    """Move papermill's partly executed notebook to ``kept`` (for inspection); None if there is none."""
    if not partial.exists():
        return None
    replace_file(partial, kept)
    return kept


@contextlib.contextmanager
def kernel_environment() -> Iterator[None]:
    """``$PYTHONWARNINGS`` with :data:`~vldlib.book.pages.KERNEL_WARNINGS` while a kernel starts
    (it inherits the driver's environment); the driver's own is restored after."""
    before = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = kernel_warnings(before)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = before


def execute_notebook(src: NotebookSource, params: Mapping[str, Any], executed_dir: Path,
                     cwd: Path = ROOT, timeout: float | None = None, progress_bar: bool = False) -> Path:
    """Execute one notebook with papermill into ``executed_dir/<name>.ipynb`` (atomic); returns the path."""
    import jupytext
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    executed_dir.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(src.path)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    tmp = executed_dir / f".{src.name}.running.ipynb"
    target = executed_dir / f"{src.name}.ipynb"
    t0 = time.perf_counter()
    try:
        with quiet_after_interrupt(), kernel_environment():
            papermill.execute_notebook(
                nb, str(tmp), parameters=dict(params), kernel_name=KERNEL, language="python",
                cwd=str(cwd), progress_bar=progress_bar, log_output=False, execution_timeout=timeout,
                extra_arguments=list(KERNEL_ARGS), iopub_timeout=IOPUB_TIMEOUT,
            )
    except KeyboardInterrupt:  # Ctrl-C: nothing partial stays; the last finished notebook is untouched
        tmp.unlink(missing_ok=True)
        raise
    except OSError as exc:  # papermill could not write the notebook (a full disk): not the notebook's fault
        tmp.unlink(missing_ok=True)  # a truncated notebook is not kept as if it were its output
        raise OSError(exc.errno, exc.strerror or str(exc), exc.filename or str(target)) from exc
    except PapermillExecutionError as exc:
        if exc.ename in ("OSError", "IOError") and is_disk_full(exc.evalue):  # a cell's write, not its code
            tmp.unlink(missing_ok=True)
            raise cell_disk_full(exc.evalue) from None
        kept = _keep_failed(tmp, executed_dir / f"{src.name}.failed.ipynb")
        index = next((i for i, cell in enumerate(nb.cells) if cell.source == exc.source), exc.cell_index)
        raise NotebookFailed(src.name, index, exc.source, f"{exc.ename}: {exc.evalue}", kept,
                             exc.exec_count) from None
    except Exception as exc:  # kernel died, timeout, ...
        kept = _keep_failed(tmp, executed_dir / f"{src.name}.failed.ipynb")
        raise NotebookFailed(src.name, None, "", f"{type(exc).__name__}: {exc}", kept) from exc
    seconds = time.perf_counter() - t0
    try:
        out = nbformat.read(tmp, as_version=4)
        out.metadata[TIMES_KEY] = {"seconds": round(seconds, 1), "profile": params.get("profile"),
                                   "finished": utc_stamp()}
        hide_injected(out)
        hide_code_cells(out)
        for line in dict.fromkeys(strip_warnings(out)):  # off the page, into the terminal
            print(f"{src.name}: {line}", file=sys.stderr, flush=True)
        _write_atomic(out, target)
    finally:  # also on Ctrl-C here: the target is either the old or the new notebook, never partial
        tmp.unlink(missing_ok=True)
    (executed_dir / f"{src.name}.failed.ipynb").unlink(missing_ok=True)
    return target


def cell_disk_full(evalue: str) -> OSError:
    """The ``OSError(ENOSPC)`` a cell's "No space left on device" error stands for, with the path
    its message names (if any)."""
    found = re.search(r"No space left on device: '([^']+)'", evalue)
    return OSError(errno.ENOSPC, "No space left on device", found.group(1) if found else None)


def pretrain(items: Sequence[tuple[NotebookSource, Mapping[str, Any]]], results_dir: str) -> int:
    """Train the missing runs of every chapter in ``items`` in one pool before any notebook executes.

    Each chapter's grid is the one its notebook will build (:func:`vldlib.study.chapters.open_chapter`
    with the notebook's defaults and the planned parameters); their union, identical configs once,
    is trained by :func:`vldlib.study.grid.run_grid` longest run first, so the cores stay busy
    across chapter boundaries instead of idling at the tail of each chapter's pool. The notebooks
    then find their runs in the store (and train anything they add themselves). Notebooks that are
    not chapters (the recipe page, the summary) and notebooks outside ``notebooks/``
    (``--notebooks-dir``) are left to train their own runs. Returns the number of runs asked for."""
    union: list[tuple[dict, dict]] = []
    executor, address = "local", None
    own = (ROOT / "notebooks").resolve()
    for src, params in items:
        if src.name not in CHAPTERS or src.path.resolve().parent != own:
            continue  # not a chapter, or a notebook of another folder that only shares a chapter's name
        values = {**src.parameters, **params}
        root = Path(values.get("results_dir") or results_dir)
        values["results_dir"] = str(root if root.is_absolute() else ROOT / root)
        executor, address = values.get("executor") or executor, values.get("ray_address") or address
        with contextlib.redirect_stdout(io.StringIO()):  # the chapters' own "profile ...: N runs" lines
            ch = open_chapter(src.name, values)
        union.extend(({"chapter": src.name, **labels}, cfg) for labels, cfg in ch.grid.configs)
        store = ch.store
    if not union:
        return 0
    # once, before any run starts: open_clip weights that every run would fail on
    preflight([cfg for _, cfg in union], cache_dir=store.cache_dir, syntax="book", finished=store.get)
    print(f"training the missing runs of {len({lab['chapter'] for lab, _ in union})} chapter(s) before "
          f"executing them ({len(union)} grid entries)", flush=True)
    run_grid(store, union, executor=executor, ray_address=address)
    return len(union)


def publish_downloads(staged: Path, target: Path) -> None:
    """Put a notebook's freshly written CSV tables (``staged``) in place of its old ones (``target``).

    Called only after the notebook succeeded, so a failure or an interrupt before keeps the old
    tables. A folder swap: ``target`` is renamed to ``.<name>.old`` beside it, ``staged`` moved in,
    the old one deleted; a notebook that wrote no tables leaves none (no stale tables)."""
    old = target.parent / f".{target.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        replace_file(target, old)
    if staged.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        replace_file(staged, target)
    shutil.rmtree(old, ignore_errors=True)


def restore_downloads(folder: Path) -> list[str]:
    """Finish what an interrupted :func:`publish_downloads` left in ``folder``: a chapter's tables
    renamed to ``.<name>.old`` with nothing moved in yet are put back (a swap that got further only
    leaves ``.old`` to delete). Called once, when a build starts (an interrupt ends a build, so no
    swap is left half done within one). Returns the chapters restored."""
    restored = []
    for old in sorted(folder.glob(".*.old")) if folder.is_dir() else []:
        target = folder / old.name[1:-len(".old")]
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            replace_file(old, target)
            restored.append(target.name)
    return restored


def execute_all(plan_: Sequence[tuple[NotebookSource, Mapping[str, Any]]], args: argparse.Namespace,
                executed_dir: Path) -> tuple[list[tuple[str, float]], float | None]:
    """Train the missing runs up front, then execute every notebook of ``plan_`` whose inputs
    changed (in order); returns the chapter times and the up-front training's seconds.

    A notebook is kept when its source, parameters, the library and the run store *as it is when
    its turn comes* are those it was last executed from; its fingerprint is taken before it
    executes, so runs that arrive while it runs (another process's training) execute it again
    next time, and a kept notebook is never re-fingerprinted against runs it did not see."""
    t_all = time.perf_counter()
    times: list[tuple[str, float]] = []
    downloads = executed_dir / EXTRA / DOWNLOADS
    restore_downloads(downloads)  # tables of a chapter whose swap an interrupt stopped
    os.environ["VLD_DOWNLOADS"] = str(downloads)  # the kernels inherit it: CSVs land in the HTML
    os.environ.setdefault("VLD_PROGRESS", "terminal")  # run_grid's bar over runs: in this terminal
    bar = sys.stderr.isatty()  # papermill's per-cell bar, only where someone watches a terminal
    library = library_digest()
    known = try_read_json(executed_dir / FINGERPRINTS) or {}
    store_before, pretrain_s = store_digest(args.results_dir), None
    todo = [(src, params) for src, params in plan_
            if args.rerun or not unchanged(src, params, executed_dir, known, library, store_before)]
    executing = {src.name for src, _ in todo}
    if todo and not args.no_pretrain:
        t0 = time.perf_counter()
        if pretrain(todo, args.results_dir):
            pretrain_s = time.perf_counter() - t0
            write_json_atomic(executed_dir / PRETRAIN, {"seconds": round(pretrain_s, 1), "profile": args.profile,
                                                        "finished": utc_stamp()})
            print(f"trained the chapters' missing runs in {pretrain_s:.1f} s", flush=True)
    for i, (src, params) in enumerate(plan_, 1):
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        elapsed = time.perf_counter() - t_all
        store = store_digest(args.results_dir)  # the run store this notebook sees
        if src.name not in executing and unchanged(src, params, executed_dir, known, library, store):
            print(f"[{i}/{len(plan_)}] {src.name}: unchanged since its last execution (source, parameters, "
                  f"library, run store), kept; --rerun executes it anyway", flush=True)
            continue
        print(f"[{i}/{len(plan_)}] {src.name}: executing ({shown}) [{elapsed:.0f} s elapsed]", flush=True)
        t0 = time.perf_counter()
        staged = executed_dir / STAGED_DOWNLOADS
        shutil.rmtree(staged / src.name, ignore_errors=True)  # leftovers of an interrupted execution
        os.environ["VLD_DOWNLOADS"] = str(staged)  # this notebook's tables: swapped in if it succeeds
        try:
            execute_notebook(src, params, executed_dir, timeout=args.timeout, progress_bar=bar)
            publish_downloads(staged / src.name, downloads / src.name)
        finally:
            os.environ["VLD_DOWNLOADS"] = str(downloads)
            shutil.rmtree(staged, ignore_errors=True)
        seconds = time.perf_counter() - t0
        times.append((src.name, seconds))
        known = save_fingerprint(executed_dir, known, src, params, library, store)
        print(f"[{i}/{len(plan_)}] {src.name}: done in {seconds:.1f} s", flush=True)
    return times, pretrain_s
