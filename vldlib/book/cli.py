"""The command line ``python -m vldlib.book``: options parsed and checked, then plan, execute,
build (:func:`main`); every clear error is one line on stderr and exit 2 (:func:`report`)."""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vldlib import build_info
from vldlib.book.build import build_html, stage_book, times_table, write_generated_pages, write_toc
from vldlib.book.contents import ROOT, toc_notebooks
from vldlib.book.errors import BookError, one_line
from vldlib.book.execute import execute_all
from vldlib.book.planning import NotebookSource, notebook_sources, plan
from vldlib.book_faults import (INTERRUPTED_EXIT, TERMINATED_EXIT, Terminated, check_folders,
                                unwind_on_signals, write_failure)
from vldlib.study import parameters
from vldlib.study.datasets import dataset_kind
from vldlib.study.executors import EXECUTORS, GridRunError


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (``vldlib.book: error: ...``, exit 2)."""

    def error(self, message: str):  # type: ignore[override]
        print(f"vldlib.book: error: {one_line(message)} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m vldlib.book",
                                description="Execute the study notebooks with papermill and build the Jupyter Book.")
    p.add_argument("--profile", default="offline", help="offline (default) | paper | smoke")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a notebook parameter; VALUE is read as a Python literal where it parses, else a string")
    p.add_argument("--only", nargs="+", metavar="NAME", help="execute only these notebooks (build uses the others' "
                   "earlier outputs)")
    p.add_argument("--no-execute", action="store_true", help="build from the notebooks executed earlier")
    p.add_argument("--rerun", action="store_true", help="execute every notebook even when its source, parameters, "
                   "the library and the run store are unchanged since it was last executed")
    p.add_argument("--no-build", action="store_true", help="execute the notebooks, skip jupyter-book")
    p.add_argument("--results-dir", default="results", help="run store folder (relative to the repo root)")
    p.add_argument("--build-dir", default=None, type=Path,
                   help="folder that receives _build/html (default: the repo root)")
    p.add_argument("--executed-dir", default=None, type=Path,
                   help="where executed notebooks go (default book/executed; elsewhere, the book is built "
                   "from a staged copy in BUILD_DIR/_build/_source)")
    p.add_argument("--notebooks-dir", default=None, type=Path, help="notebook sources (default notebooks/)")
    p.add_argument("--summary", default=None, type=Path, help="summary page source (default book/summary.py)")
    p.add_argument("--timeout", default=None, type=float, help="per-cell timeout in seconds (default none)")
    p.add_argument("--verbose", action="store_true", help="show Sphinx's status lines during the build")
    p.add_argument("--no-pretrain", action="store_true", help="let each notebook train its own missing runs "
                   "instead of training every chapter's missing runs in one pool first")
    p.add_argument("--dataset-root", action="append", default=[], metavar="DIR",
                   help="a data folder (official, or an image folder DIR/<class>/<images>); repeat it for one "
                   "book over several datasets (Table 1: a column per dataset and their Average)")
    p.add_argument("--executor", choices=EXECUTORS, default=None,
                   help="where missing runs train: local (default) or ray (one Ray task per run; needs "
                   "pip install 'vldbook[ray]')")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --executor ray: the cluster to connect to (e.g. auto, ray://head:10001); "
                   "default: a local Ray on this machine")
    return p


def executor_parameters(executor: str | None, ray_address: str | None) -> list[tuple[str, str]]:
    """``--executor`` / ``--ray-address`` as notebook parameters (``-p executor ray`` ...)."""
    if ray_address is not None and executor != "ray":
        raise BookError("--ray-address needs --executor ray")
    out = [("executor", executor)] if executor is not None else []
    return out + ([("ray_address", ray_address)] if ray_address is not None else [])


def dataset_root_parameters(roots: Sequence[str], given: Sequence[Sequence[str]]) -> list[tuple[str, Any]]:
    """``--dataset-root`` as notebook parameters: one root is ``-p dataset_root`` (plus ``-p dataset
    folder`` for an image folder, unless ``-p dataset`` is given); several are ``-p dataset_roots``
    (Table 1 over every dataset) with the first as every other chapter's ``dataset_root``."""
    if not roots:
        return []
    if any(name in ("dataset_root", "dataset_roots") for name, _ in given):
        raise BookError("--dataset-root and -p dataset_root / dataset_roots: give the data folders one way")
    paths = [str(Path(r).expanduser().resolve()) for r in roots]
    missing = [r for r, p in zip(roots, paths) if not Path(p).is_dir()]
    if missing:
        raise BookError(f"--dataset-root {missing[0]}: no such folder; give an official data folder or an "
                        "image folder DIR/<class>/<images>")
    out: list[tuple[str, Any]] = [("dataset_root", paths[0])]
    if not any(name == "dataset" for name, _ in given):
        out.append(("dataset", dataset_kind(paths[0])))
    return out + ([("dataset_roots", paths)] if len(paths) > 1 else [])


def _results_path(results_dir: str) -> Path:
    """The run store folder as the notebooks see it (relative to the repository root)."""
    path = Path(results_dir)
    return (path if path.is_absolute() else ROOT / path).resolve()


def check_inputs(args: argparse.Namespace, executed_dir: Path, build_dir: Path) -> None:
    """The checks of the folders and options that need no notebook, before anything runs
    (:class:`BookError` naming the value and the fix)."""
    if args.timeout is not None and not (args.timeout > 0 and args.timeout != float("inf")):
        raise BookError(f"--timeout {args.timeout}: expected a number of seconds > 0 (leave it out for no limit)")
    notebooks = Path(args.notebooks_dir) if args.notebooks_dir is not None else ROOT / "notebooks"
    problem = check_folders(executed_dir, build_dir, notebooks, _results_path(args.results_dir))
    if problem:
        raise BookError(problem)
    folders = [("--executed-dir", executed_dir)] + ([] if args.no_build else [("--build-dir", build_dir)])
    for flag, folder in folders:
        if folder.exists() and not folder.is_dir():
            raise BookError(f"{flag} {folder} is a file, not a folder; choose another folder or remove it")
        try:
            parameters.check_value("results_dir", str(folder), base=ROOT)  # a writable folder, or creatable
        except parameters.ParameterError as exc:
            raise BookError(f"{flag} {folder}: expected {exc.expected}; choose a writable folder") from None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vldlib.book``: the exit status (0, 2 for a clear error, 130 / 143 when stopped)."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.profile != "paper":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folders = _Folders(args)
    try:
        with unwind_on_signals():  # SIGTERM (and Ctrl-C) stop the workers and unwind as Ctrl-C does
            return _run(args, folders)
    except (BookError, GridRunError, ValueError, ImportError, OSError, KeyboardInterrupt) as exc:
        return report(exc, args, folders)


class _Folders:
    """The folders of one build: where executed notebooks go (the default, and this build's), the
    build folder, and the folder the current phase writes (blamed for a failed write)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.default_executed = (ROOT / "book" / "executed").resolve()
        self.executed = (args.executed_dir or self.default_executed).resolve()
        self.build = (args.build_dir or ROOT).resolve()
        self.writing: tuple[str, Path] = ("--executed-dir", self.executed)


def report(exc: BaseException, args: argparse.Namespace, folders: _Folders) -> int:
    """Print the one line for an error that ended the build; its exit status."""
    if isinstance(exc, Terminated):
        print("vldlib.book: terminated (SIGTERM); finished notebooks and runs are kept, run again to go on",
              file=sys.stderr, flush=True)
        return TERMINATED_EXIT
    if isinstance(exc, KeyboardInterrupt):
        print("vldlib.book: interrupted; finished notebooks and runs are kept, run again to go on",
              file=sys.stderr, flush=True)
        return INTERRUPTED_EXIT
    if isinstance(exc, BookError):
        message = str(exc)
    elif isinstance(exc, GridRunError):  # the up-front training of the chapters' runs
        first = exc.failures[0]
        message = (f"{len(exc.failures)} run(s) failed before any notebook executed, the first {first.name} "
                   f"(run {first.hash}): {one_line(first.error).rstrip('.')}; fix the setting (-p, --profile) or "
                   "the data and run the book again (finished runs are kept)")
    elif isinstance(exc, ValueError):  # a config the library rejects (e.g. while building a chapter's grid)
        message = f"{one_line(str(exc))}; fix the setting (-p, --profile) and run again"
    elif isinstance(exc, OSError):  # a write that failed (a full disk), a file where a folder should be, ...
        message = one_line(_write_error(exc, args, folders))
    else:  # an optional dependency (e.g. Ray for --executor ray)
        message = one_line(str(exc))
    print(f"vldlib.book: error: {message}", file=sys.stderr)
    return 2


def _write_error(exc: OSError, args: argparse.Namespace, folders: _Folders) -> str:
    """The one line for an ``OSError`` of the driver: the folder it wrote into (by the file it
    names, else the phase's) with its free space on a full disk."""
    if isinstance(exc, (FileExistsError, NotADirectoryError)) and exc.filename:
        return (f"{exc.filename}: a file is where a folder should be (on its path); choose writable "
                "--executed-dir / --results-dir / --build-dir folders")
    flag, folder = folders.writing
    if exc.filename:
        path = Path(str(exc.filename)).resolve()
        for other_flag, other in (("--results-dir", _results_path(args.results_dir)), ("--build-dir", folders.build),
                                  ("--executed-dir", folders.executed)):
            if path == other or other in path.parents:
                flag, folder = other_flag, other
                break
    return write_failure(exc, Path(folder), str(flag))


def _planned(args: argparse.Namespace) -> list[tuple[NotebookSource, dict[str, Any]]]:
    """The notebooks to execute with their checked parameters (none with ``--no-execute``)."""
    if args.no_execute:
        if args.parameter or args.only:
            raise BookError("--no-execute cannot take -p or --only (nothing is executed)")
        return []
    sources = notebook_sources(args.notebooks_dir, args.summary, args.only)
    extra = (executor_parameters(args.executor, args.ray_address)
             + dataset_root_parameters(args.dataset_root, args.parameter))
    return plan(sources, args.profile, args.results_dir, [tuple(kv) for kv in args.parameter] + extra)


def _run(args: argparse.Namespace, folders: _Folders) -> int:
    """:func:`main` after parsing: check, execute, build; errors are raised for main to report."""
    check_inputs(args, folders.executed, folders.build)
    plan_ = _planned(args)
    t_all, started = time.perf_counter(), build_info.now()
    times, pretrain_s = execute_all(plan_, args, folders.executed)
    if plan_:
        print(f"executed {len(times)} notebook(s), kept {len(plan_) - len(times)} unchanged, in "
              f"{time.perf_counter() - t_all:.1f} s -> {folders.executed}", flush=True)
        print(times_table(([("(runs of all chapters)", pretrain_s)] if pretrain_s is not None else []) + times),
              flush=True)
    if args.no_build:
        return 0
    code = _build(args, folders, [n for n, _ in times], args.profile if plan_ else None, started if plan_ else None)
    if code == 0 and plan_:
        print(f"total: {time.perf_counter() - t_all:.1f} s", flush=True)
    return code


def _build(args: argparse.Namespace, folders: _Folders, executed_now: list[str], profile: str | None,
           started: float | None) -> int:
    """Write the generated pages and build the HTML from the executed notebooks; the build's exit code."""
    needed = [n for n in toc_notebooks() if not (folders.executed / f"{n}.ipynb").is_file()]
    if needed:
        raise BookError(f"cannot build: not executed yet: {', '.join(needed)} (in {folders.executed}); run "
                        "`python -m vldlib.book` without --only / --no-execute first")
    written = write_generated_pages(folders.executed, args.results_dir, executed_now, profile, started)
    print(f"wrote {' and '.join(str(p) for p in written)}", flush=True)
    folders.writing = ("--build-dir", folders.build)
    if folders.executed == folders.default_executed:
        book_root = ROOT
        write_toc(book_root)
    else:
        book_root = stage_book(folders.executed, folders.build / "_build" / "_source")
    t0 = time.perf_counter()
    print(f"building the book: jupyter-book build {book_root} -W --keep-going", flush=True)
    code = build_html(book_root, folders.build, quiet=not args.verbose)
    if code != 0:
        print(f"jupyter-book build failed (exit {code}) after {time.perf_counter() - t0:.1f} s; see the "
              "warnings above", file=sys.stderr)
        return code
    print(f"built the book in {time.perf_counter() - t0:.1f} s: {folders.build / '_build' / 'html' / 'index.html'}",
          flush=True)
    return 0
