"""Execute the study notebooks with papermill and build the Jupyter Book.

``python -m vldlib.book [--profile offline|paper|smoke] [-p NAME VALUE ...] [--only NAME ...]
[--no-execute] [--results-dir DIR] [--build-dir DIR] [--executed-dir DIR] [--notebooks-dir DIR]``

1. Every notebook ``notebooks/<name>.py`` (jupytext percent format) of :data:`BOOK_ORDER`, then the
   summary page ``book/summary.py``, is read with :func:`jupytext.read`, its ``parameters`` cell
   parsed (literal assignments only) and the requested parameters validated against it, **all
   before anything executes**.
2. A notebook whose source, parameters, library sources (``vldlib/``) and run store (as it is when the
   notebook's turn comes) are all as they were when it was last executed (fingerprints in
   ``<executed>/.fingerprints.json``, each of the run store as it was *before* the notebook ran, so
   that runs arriving meanwhile execute it again next time) is kept as it is (``--rerun`` executes
   it anyway); every other one is executed by :func:`papermill.execute_notebook` (kernel ``python3``, cwd = the
   repository root) into ``book/executed/<name>.ipynb`` (written atomically); papermill's
   ``injected-parameters`` cell, the ``parameters`` cell and every other code cell are tagged
   ``hide-input``, so the HTML shows prose, tables and figures with the code folded behind a toggle.
   Each chapter's progress is printed with its elapsed seconds, then a table of times.
3. The front page's findings (``<executed>/findings.md``, :mod:`vldlib.findings`, included by
   ``book/intro.md``): one line per claim the chapters declare, each number a ``{glue:text}``
   reference to the executed chapter. The chapters write their tables as CSV into
   ``<executed>/_extra/downloads/<chapter>/`` (``$VLD_DOWNLOADS``), which lands in the HTML; a
   notebook writes them into ``<executed>/.downloads.new/`` first, and they replace its old ones
   only when it succeeded. The fingerprints are written after every notebook (atomically), so an
   interrupt keeps the finished notebooks, their tables and their fingerprints.
4. The page "How this book was built" (``<executed>/build_info.md``, :func:`write_build_info`) is
   generated from the machine, the library versions, the git commit, the chapter times measured
   here (kept in each executed notebook's metadata, ``metadata.vldbook``), the run store and the cache.
5. ``jupyter-book build <root> -W --keep-going`` renders the HTML (notebooks are never re-executed
   by Jupyter Book: ``execute_notebooks: "off"`` in ``_config.yml``).

A failing notebook stops the build with a :class:`NotebookFailed` naming the notebook and the
failing cell; the partly executed notebook is kept as ``book/executed/<name>.failed.ipynb``.
Every other clear error (a run of the up-front training that failed, a config the library
rejects, a folder that cannot be written or is full, folders that overlap) is one line on stderr
and exit 2, checked before anything runs where it can be (:mod:`vldlib.book_faults`). Ctrl-C is
130, SIGTERM 143: either stops the up-front training's workers at once and keeps what finished.
Nothing in the library imports this module.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import errno
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vldlib import build_info, findings
from vldlib.book_faults import (INTERRUPTED_EXIT, TERMINATED_EXIT, Terminated, check_folders,
                                 quiet_after_interrupt, unwind_on_signals, write_failure)
from vldlib.diskspace import is_disk_full
from vldlib.io import replace_file, try_read_json, write_json_atomic, write_text_atomic
from vldlib.paths import default_cache_dir
from vldlib.study import parameters
from vldlib.study.chapters import CHAPTERS, open_chapter
from vldlib.study.datasets import dataset_kind
from vldlib.study.executors import EXECUTORS, GridRunError
from vldlib.study.grid import run_grid
from vldlib.train.preflight import preflight
from vldlib.train.profiles import PROFILES

ROOT = Path(__file__).resolve().parents[1]
BOOK_ORDER: tuple[str, ...] = (
    "offline_recipe",
    "teacher_zero_shot",
    "feature_errors",
    "main_results",
    "prompt_detail",
    "k_ablation",
    "language_enrichment",
    "field_losses",
    "vit_student",
    "fewshot_retrieval",
    "continual",
    "description_controls",
)
SUMMARY = "summary"
BUILD_INFO = "build_info"  # generated page (book/executed/build_info.md), not a notebook
#: Copied into the HTML root by Sphinx (``html_extra_path`` in _config.yml): ``<executed>/_extra``;
#: the chapters' CSV tables go to its ``downloads/<chapter>/`` (``$VLD_DOWNLOADS`` for the kernels).
EXTRA = "_extra"
DOWNLOADS = "downloads"
TIMES_KEY = "vldbook"  # notebook metadata key of the driver's measurements (seconds, profile, finished)
RESERVED = ("profile", "results_dir")
KERNEL = "python3"
HIDE_TAG = "hide-input"
# Kernel log level: keep the kernel's own log lines (e.g. "running over TCP without encryption",
# or a traceback about closed sockets when Ctrl-C stops the driver) out of the progress output;
# notebook errors still arrive as cell outputs.
KERNEL_ARGS: tuple[str, ...] = ("--IPKernelApp.log_level=CRITICAL",)
#: Seconds nbclient waits for a cell's last outputs (a figure, a table) after the cell finished; its
#: default (4 s) fails a notebook on a loaded machine ("Timeout waiting for IOPub output").
IOPUB_TIMEOUT = 60
# Files and folders that make up the book's sources (copied when the book is staged elsewhere).
BOOK_SOURCES: tuple[str, ...] = ("_config.yml", "_toc.yml", "book")


class BookError(RuntimeError):
    """A problem the user can fix (bad parameter, missing notebook, failed build)."""


class NotebookFailed(BookError):
    """A notebook raised during execution; the message names the notebook and the cell."""

    def __init__(self, name: str, cell_index: int | None, source: str, error: str, kept: Path | None,
                 exec_count: int | None = None):
        self.name, self.cell_index, self.source, self.error, self.kept = name, cell_index, source, error, kept
        head = "\n".join("    " + line for line in source.strip().splitlines()[:6])
        where = f"cell {cell_index} (0-based, in the source)" if cell_index is not None else "an unknown cell"
        if exec_count is not None:
            where += f", In [{exec_count}]"
        msg = f"notebook {name!r} failed in {where}:\n{head}\n  {error}"
        if kept is not None:
            msg += f"\n  the partly executed notebook is kept at {kept}"
        super().__init__(msg)


@dataclass(frozen=True)
class NotebookSource:
    """One notebook of the book: its name, source path and the defaults of its parameters cell."""

    name: str
    path: Path
    parameters: dict[str, Any] = field(hash=False)


def utc_stamp() -> str:
    """Now, as the driver's measurements record it (``2026-01-01 00:00:00 UTC``)."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def known_profiles() -> tuple[str, ...]:
    """Profile names from :data:`vldlib.train.profiles.PROFILES`."""
    return tuple(PROFILES)


def parse_value(text: str) -> Any:
    """A ``-p`` value: a Python literal where it parses (``3``, ``0.5``, ``(0, 1)``, ``True``), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _parameters_cell(nb: Any) -> Any | None:
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return cell
    return None


def read_parameters(nb: Any, name: str) -> dict[str, Any]:
    """Defaults of the notebook's ``parameters`` cell: ``{name: literal}``.

    The cell must hold only assignments of literals to plain names (comments allowed); anything
    else raises :class:`BookError`, since papermill overrides values by re-assignment only.
    """
    cell = _parameters_cell(nb)
    if cell is None:
        raise BookError(
            f"notebook {name!r} has no cell tagged 'parameters'; tag its first code cell with "
            "`# %% tags=[\"parameters\"]`"
        )
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as exc:
        raise BookError(f"notebook {name!r}: its parameters cell is not valid Python: {exc}") from exc
    params: dict[str, Any] = {}
    for stmt in tree.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else None
        value = getattr(stmt, "value", None)
        if not targets or value is None or not all(isinstance(t, ast.Name) for t in targets):
            raise BookError(
                f"notebook {name!r}: its parameters cell may hold only `name = literal` lines; "
                f"line {stmt.lineno} is `{ast.get_source_segment(cell.source, stmt)}`"
            )
        try:
            literal = ast.literal_eval(value)
        except ValueError as exc:
            raise BookError(
                f"notebook {name!r}: parameter on line {stmt.lineno} is not a literal "
                f"(`{ast.get_source_segment(cell.source, stmt)}`); use a literal value"
            ) from exc
        for target in targets:
            params[target.id] = literal
    return params


def notebook_sources(notebooks_dir: Path | None = None, summary: Path | None = None,
                     only: Sequence[str] | None = None) -> list[NotebookSource]:
    """The book's notebooks in order, with their parameter defaults (missing file -> :class:`BookError`)."""
    import jupytext

    notebooks_dir = Path(notebooks_dir) if notebooks_dir is not None else ROOT / "notebooks"
    summary = Path(summary) if summary is not None else ROOT / "book" / f"{SUMMARY}.py"
    paths = {name: notebooks_dir / f"{name}.py" for name in BOOK_ORDER}
    paths[SUMMARY] = summary
    if only:
        unknown = [n for n in only if n not in paths]
        if unknown:
            raise BookError(f"--only: unknown notebook(s) {', '.join(unknown)}; the book's notebooks are "
                            f"{', '.join(paths)}")
        paths = {name: path for name, path in paths.items() if name in only}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise BookError(f"notebook source(s) not found: {', '.join(missing)} (run from a full checkout, or "
                        "pass --notebooks-dir)")
    out = []
    for name, path in paths.items():
        try:
            nb = jupytext.read(path)
        except Exception as exc:  # noqa: BLE001 - unreadable, not UTF-8, not a notebook: jupytext's many errors
            raise BookError(f"cannot read notebook {name!r} ({path}): {_one_line(f'{type(exc).__name__}: {exc}')}; "
                            "restore it (it must be a jupytext percent-format .py file)") from None
        out.append(NotebookSource(name, path, read_parameters(nb, name)))
    return out


def _coerce(value: Any, default: Any, raw: str | None) -> tuple[bool, Any]:
    """(ok, value) after checking ``value`` against the type of the notebook's default."""
    if default is None or type(value) is type(default):
        return True, value
    if isinstance(default, str):
        return True, raw if raw is not None else str(value)
    if isinstance(default, bool) or isinstance(value, bool):
        return False, value
    if isinstance(default, (int, float)) and isinstance(value, (int, float)):
        return (True, float(value)) if isinstance(default, float) else (float(value).is_integer(), value)
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return True, value
    return False, value


def papermill_value(value: Any) -> Any:
    """``value`` with tuples (and sets) turned into lists, recursively: papermill writes a tuple
    into the injected cell as a *string* (``"(0, 1)"``), a list as a list."""
    if isinstance(value, (tuple, list)):
        return [papermill_value(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(papermill_value(v) for v in value)
    if isinstance(value, dict):
        return {k: papermill_value(v) for k, v in value.items()}
    return value


def plan(sources: Sequence[NotebookSource], profile: str, results_dir: str,
         overrides: Mapping[str, str] | Sequence[tuple[str, str]] = ()) -> list[tuple[NotebookSource, dict[str, Any]]]:
    """Validate everything and return ``[(notebook, parameters)]``; raises :class:`BookError` first.

    - ``profile`` must be one of :func:`known_profiles`;
    - each override ``NAME`` must be a parameter of at least one notebook (it is passed to those
      that define it);
    - every parameter of every notebook (its default, or the ``-p`` value) is checked against its
      declared type (:data:`vldlib.study.parameters.PARAMETERS`; a name not declared there
      against the type of the notebook's default), and a chapter's parameters must give a valid
      base config (:func:`vldlib.study.parameters.check_parameters`), all before anything runs.
    """
    profiles = known_profiles()
    if profile not in profiles:
        raise BookError(f"unknown profile {profile!r}; choose one of: {', '.join(profiles)}")
    pairs = list(overrides.items()) if isinstance(overrides, Mapping) else list(overrides)
    for key, _ in pairs:
        if key in RESERVED:
            raise BookError(f"-p {key}: set it with --{key.replace('_', '-')} instead")
        if not key.isidentifier():
            raise BookError(f"-p {key!r}: a parameter name must be a Python identifier")
        if not any(key in src.parameters for src in sources):
            listing = "; ".join(f"{src.name}: {', '.join(src.parameters)}" for src in sources)
            raise BookError(f"-p {key}: no notebook has a parameter {key!r}; the parameters are {listing}")
    for flag, name, value in (("--results-dir", "results_dir", results_dir),
                              ("$VLD_CACHE / the default cache", "cache_dir", str(default_cache_dir()))):
        try:
            parameters.check_value(name, value, base=ROOT)
        except parameters.ParameterError as exc:
            raise BookError(f"{flag} {value}: expected {exc.expected}") from None
    out = []
    for src in sources:
        for key in RESERVED:
            if key not in src.parameters:
                raise BookError(f"notebook {src.name!r}: its parameters cell must define {key!r} "
                                f"(it defines {', '.join(src.parameters) or 'nothing'})")
        params: dict[str, Any] = {"profile": profile, "results_dir": results_dir}
        given = {key: raw for key, raw in pairs if key in src.parameters}
        try:
            values = _checked(src, {**src.parameters, **params}, given)
        except ValueError as exc:
            raise BookError(f"{exc} (notebook {src.name!r})") from None
        params.update({key: papermill_value(values[key]) for key in given})
        out.append((src, params))
    return out


def _checked(src: NotebookSource, defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """The notebook's parameter values (defaults overlaid with the ``-p`` values), each checked."""
    values: dict[str, Any] = {}
    for key, default in defaults.items():
        if key not in given:
            values[key] = (parameters.check_value(key, default, base=ROOT) if key in parameters.PARAMETERS
                           else default)
            continue
        raw = given[key]
        value = parse_value(raw) if isinstance(raw, str) else raw
        if key in parameters.PARAMETERS:
            if parameters.PARAMETERS[key].kind in ("str", "dir", "writable_dir") and isinstance(raw, str) \
                    and not isinstance(value, str) and value is not None:
                value = raw  # a folder or name that looks like a number is still a string
            values[key] = parameters.check_value(key, value, cli=True, base=ROOT)
            continue
        ok, value = _coerce(value, default, raw if isinstance(raw, str) else None)
        if not ok:
            raise BookError(f"-p {key} {raw!r}: notebook {src.name!r} expects type {type(default).__name__} "
                            f"(its default is {default!r})")
        values[key] = value
    parameters.check_parameters(values, grid=True, cli=True, base=ROOT)
    return values


def hide_injected(nb: Any) -> int:
    """Tag papermill's ``injected-parameters`` cells ``hide-input`` (collapsed in HTML and JupyterLab)."""
    count = 0
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags:
            if HIDE_TAG not in tags:
                cell.metadata["tags"] = [*tags, HIDE_TAG]
            cell.metadata.setdefault("jupyter", {})["source_hidden"] = True
            count += 1
    return count


def hide_code_cells(nb: Any) -> int:
    """Tag every code cell ``hide-input`` (folded behind a toggle in the HTML, collapsed in
    JupyterLab), the ``parameters`` and ``injected-parameters`` cells included; returns the number
    of code cells. Idempotent."""
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = list(cell.get("metadata", {}).get("tags", []))
        if HIDE_TAG not in tags:
            cell.setdefault("metadata", {})["tags"] = [*tags, HIDE_TAG]
        cell.metadata.setdefault("jupyter", {})["source_hidden"] = True
        count += 1
    return count


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
        with quiet_after_interrupt():
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


def toc_notebooks(root: Path = ROOT) -> list[str]:
    """The ``book/executed/<name>`` entries of ``_toc.yml`` (what the build needs executed)."""
    import yaml

    path = root / "_toc.yml"
    try:
        toc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BookError(f"cannot read the book's table of contents {path}: {_one_line(exc)}; restore it "
                        "(git checkout _toc.yml)") from None
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                value = node.get(key)
                if (isinstance(value, str) and value.startswith("book/executed/")
                        and Path(value).stem != BUILD_INFO):
                    found.append(Path(value).stem)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return found


def stage_book(executed_dir: Path, dest: Path, root: Path = ROOT) -> Path:
    """Copy the book's sources to ``dest`` with ``executed_dir`` as ``dest/book/executed``; returns ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("executed", "__pycache__", ".ipynb_checkpoints", "*.failed.ipynb")
    for name in BOOK_SOURCES:
        path = root / name
        if path.is_dir():
            shutil.copytree(path, dest / name, ignore=ignore)
        else:
            shutil.copy2(path, dest / name)
    shutil.copytree(executed_dir, dest / "book" / "executed",
                    ignore=shutil.ignore_patterns(".*", "*.failed.ipynb"))
    return dest


def build_html(book_root: Path, build_dir: Path, *, strict: bool = True, quiet: bool = True) -> int:
    """Run ``jupyter-book build <book_root> [-W --keep-going] [-q] --path-output <build_dir>``; its exit code."""
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(book_root),
           "--path-output", str(build_dir)]
    if strict:
        cmd += ["-W", "--keep-going"]
    if quiet:
        cmd.append("-q")  # no Sphinx status lines; warnings are still printed
    return subprocess.run(cmd, cwd=book_root, check=False).returncode


def times_table(times: Sequence[tuple[str, float]]) -> str:
    """The driver's closing table of chapter execution times (seconds), with a total line."""
    width = max([len("chapter"), len("total"), *(len(n) for n, _ in times)])
    rows = [f"{'chapter':<{width}}  {'seconds':>8}"]
    rows += [f"{name:<{width}}  {sec:>8.1f}" for name, sec in times]
    rows.append(f"{'total':<{width}}  {sum(s for _, s in times):>8.1f}")
    return "\n".join(rows)


def write_build_page(executed_dir: Path, results_dir: str, executed_now: Sequence[str],
                     profile: str | None, started: float | None, root: Path = ROOT) -> Path:
    """Write the generated page "How this book was built" (``executed_dir/build_info.md``)."""

    results = Path(results_dir)
    results = results if results.is_absolute() else root / results
    return build_info.write(executed_dir, root=root, results_dir=results, cache_dir=default_cache_dir(),
                            times=build_info.read_times(executed_dir, [*BOOK_ORDER, SUMMARY], TIMES_KEY),
                            order=[*BOOK_ORDER, SUMMARY], executed_now=list(executed_now),
                            profile=profile, started=started, pretrain=try_read_json(executed_dir / PRETRAIN))


FINGERPRINTS = ".fingerprints.json"  # executed_dir: what each executed notebook was made from
STAGED_DOWNLOADS = ".downloads.new"  # executed_dir: the tables of the notebook executing now
PRETRAIN = ".pretrain.json"  # executed_dir: the time of the last up-front training of the chapters' runs


def library_digest(root: Path = ROOT) -> str:
    """sha256 of the library's sources and resources (anything that can change a notebook's output)."""
    h = hashlib.sha256()
    pkg = root / "vldlib"
    for path in sorted(p for p in pkg.rglob("*") if p.is_file() and p.suffix in (".py", ".json")
                       and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(pkg)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def store_digest(results_dir: str | Path) -> str:
    """sha256 of the run store's state: every finished record's folder, size and modification time."""
    h = hashlib.sha256()
    root = Path(results_dir) if Path(results_dir).is_absolute() else ROOT / results_dir
    for record in sorted(root.glob("*/record.json")) if root.is_dir() else []:
        st = record.stat()
        h.update(f"{record.parent.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def fingerprint(src: NotebookSource, params: Mapping[str, Any], library: str, store: str) -> str:
    """What an executed notebook depends on: its source, its parameters, the library, the run store."""
    text = src.path.read_text(encoding="utf-8")
    blob = json.dumps({"source": text, "params": dict(params), "library": library, "store": store},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def unchanged(src: NotebookSource, params: Mapping[str, Any], executed_dir: Path, known: Mapping[str, str],
              library: str, store: str) -> bool:
    """True when ``executed_dir/<name>.ipynb`` was made from exactly these inputs (nothing to re-execute)."""
    return ((executed_dir / f"{src.name}.ipynb").is_file()
            and known.get(src.name) == fingerprint(src, params, library, store))


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


def _one_line(text: str) -> str:
    """``text`` on one line (a multi-line message's lines joined with "; ")."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


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


def save_fingerprint(executed_dir: Path, known: Mapping[str, str], src: NotebookSource,
                     params: Mapping[str, Any], library: str, store: str) -> dict[str, str]:
    """Record (atomically) what notebook ``src`` was just executed from: ``store`` is the run store's
    digest taken *before* it executed (runs that arrived while it ran, from another process's
    training or its own, may be missing from its pages: the next build executes it again).
    Called after every notebook, so that an interrupt keeps the finished ones."""
    known = {**known, src.name: fingerprint(src, params, library, store)}
    write_json_atomic(executed_dir / FINGERPRINTS, known)
    return known


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


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (``vldlib.book: error: ...``, exit 2)."""

    def error(self, message: str):  # type: ignore[override]
        print(f"vldlib.book: error: {_one_line(message)} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.profile != "paper":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    default_executed = ROOT / "book" / "executed"
    executed_dir = (args.executed_dir or default_executed).resolve()
    build_dir = (args.build_dir or ROOT).resolve()
    writing = ["--executed-dir", executed_dir]  # the folder this phase writes (blamed for a failed write)
    try:
        with unwind_on_signals():  # SIGTERM (and Ctrl-C) stop the workers and unwind as Ctrl-C does
            return _run(args, executed_dir, build_dir, default_executed, writing)
    except BookError as exc:
        print(f"vldlib.book: error: {exc}", file=sys.stderr)
        return 2
    except GridRunError as exc:  # the up-front training of the chapters' runs
        first = exc.failures[0]
        print(f"vldlib.book: error: {len(exc.failures)} run(s) failed before any notebook executed, the first "
              f"{first.name} (run {first.hash}): {_one_line(first.error).rstrip('.')}; fix the setting (-p, --profile) or "
              "the data and run the book again (finished runs are kept)", file=sys.stderr)
        return 2
    except ValueError as exc:  # a config the library rejects (e.g. while building a chapter's grid)
        print(f"vldlib.book: error: {_one_line(str(exc))}; fix the setting (-p, --profile) and run again",
              file=sys.stderr)
        return 2
    except ImportError as exc:  # an optional dependency (e.g. Ray for --executor ray)
        print(f"vldlib.book: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # a write that failed (a full disk), a file where a folder should be, ...
        print(f"vldlib.book: error: {_one_line(_write_error(exc, writing, executed_dir, build_dir, args))}",
              file=sys.stderr)
        return 2
    except Terminated:
        print("vldlib.book: terminated (SIGTERM); finished notebooks and runs are kept, run again to go on",
              file=sys.stderr, flush=True)
        return TERMINATED_EXIT
    except KeyboardInterrupt:
        print("vldlib.book: interrupted; finished notebooks and runs are kept, run again to go on",
              file=sys.stderr, flush=True)
        return INTERRUPTED_EXIT


def _write_error(exc: OSError, writing: Sequence[Any], executed_dir: Path, build_dir: Path,
                 args: argparse.Namespace) -> str:
    """The one line for an ``OSError`` of the driver: the folder it wrote into (by the file it
    names, else the phase's) with its free space on a full disk."""
    if isinstance(exc, (FileExistsError, NotADirectoryError)) and exc.filename:
        return (f"{exc.filename}: a file is where a folder should be (on its path); choose writable "
                "--executed-dir / --results-dir / --build-dir folders")
    flag, folder = writing
    if exc.filename:
        path = Path(str(exc.filename)).resolve()
        for other_flag, other in (("--results-dir", _results_path(args.results_dir)), ("--build-dir", build_dir),
                                  ("--executed-dir", executed_dir)):
            if path == other or other in path.parents:
                flag, folder = other_flag, other
                break
    return write_failure(exc, Path(folder), str(flag))


def _run(args: argparse.Namespace, executed_dir: Path, build_dir: Path, default_executed: Path,
         writing: list[Any]) -> int:
    """:func:`main` after parsing: check, execute, build; errors are raised for main to report."""
    plan_ = []
    check_inputs(args, executed_dir, build_dir)
    if not args.no_execute:
        sources = notebook_sources(args.notebooks_dir, args.summary, args.only)
        extra = (executor_parameters(args.executor, args.ray_address)
                 + dataset_root_parameters(args.dataset_root, args.parameter))
        plan_ = plan(sources, args.profile, args.results_dir, [tuple(kv) for kv in args.parameter] + extra)
    elif args.parameter or args.only:
        raise BookError("--no-execute cannot take -p or --only (nothing is executed)")
    toc = toc_notebooks() if not args.no_build else []  # read before anything runs: a broken one stops here

    t_all, started = time.perf_counter(), build_info.now()
    times, pretrain_s = execute_all(plan_, args, executed_dir)
    if plan_:
        print(f"executed {len(times)} notebook(s), kept {len(plan_) - len(times)} unchanged, in "
              f"{time.perf_counter() - t_all:.1f} s -> {executed_dir}", flush=True)
        print(times_table(([("(runs of all chapters)", pretrain_s)] if pretrain_s is not None else []) + times),
              flush=True)
    if args.no_build:
        return 0
    needed = [n for n in toc if not (executed_dir / f"{n}.ipynb").is_file()]
    if needed:
        raise BookError(f"cannot build: not executed yet: {', '.join(needed)} (in {executed_dir}); run "
                        "`python -m vldlib.book` without --only / --no-execute first")
    downloads = executed_dir / EXTRA / DOWNLOADS
    page = write_build_page(executed_dir, args.results_dir, [n for n, _ in times],
                            args.profile if plan_ else None, started if plan_ else None)
    downloads.mkdir(parents=True, exist_ok=True)  # html_extra_path must exist
    front = findings.write(executed_dir, toc, downloads)
    print(f"wrote {page} and {front}", flush=True)
    writing[:] = ["--build-dir", build_dir]
    in_place = executed_dir == default_executed.resolve()
    book_root = ROOT if in_place else stage_book(executed_dir, build_dir / "_build" / "_source")
    t0 = time.perf_counter()
    print(f"building the book: jupyter-book build {book_root} -W --keep-going", flush=True)
    code = build_html(book_root, build_dir, quiet=not args.verbose)
    html = build_dir / "_build" / "html" / "index.html"
    if code != 0:
        print(f"jupyter-book build failed (exit {code}) after {time.perf_counter() - t0:.1f} s; see the "
              "warnings above", file=sys.stderr)
        return code
    print(f"built the book in {time.perf_counter() - t0:.1f} s: {html}", flush=True)
    if plan_:
        print(f"total: {time.perf_counter() - t_all:.1f} s", flush=True)
    return 0


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


if __name__ == "__main__":
    sys.exit(main())
