"""The book's chapters, each declared once as data (:class:`Chapter`): its notebook, question,
variants, metrics, the paper's keys and the comparisons its readings are made of.

A notebook is a thin view of its chapter::

    ch = open_chapter("main_results", globals(), page=True)  # parameters checked, theme set
    data = ch.show_runs()             # train() -> runs (only the missing ones train), derive(runs)
    ch.show_table(data)               # table(data) beside the paper, its CSV, figure(data)
    effects = ch.show_effects(data)   # effects(data): the declared comparisons, paired
    ch.show_reading(data, effects)    # reading(data, effects): computed sentences
    ch.show_claims(effects)           # claims(effects): glued for the front page

Every chapter has the same API (:class:`ChapterRun`); a chapter module declares ``CHAPTER`` and
subclasses ``ChapterRun`` as ``Run`` only for what is special to it. :data:`CHAPTERS` is found
from the modules of this package that declare a ``CHAPTER``.

Each chapter declares the paper's headline claim(s) it tests (:class:`Claim`, ``Chapter.claims``);
its notebook glues our number for each (MyST-NB ``glue``, names from :func:`glue_key`) and the
book's front page (``vldlib/findings.py``) lists every declared claim with ``{glue:text}``
references. ``book/summary.py`` reads the same declarations and grids instead of regrouping the
run store itself.
"""
from __future__ import annotations

import ast
import contextlib
import importlib
import io
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vldlib.study.chapters.declaration import (ACCURACY, ACCURACY_NAMES, CLAIM_FIELDS, DATASETS_GLUE,
                                               EXECUTOR_PARAMETERS, GRID_PARAMETERS, PAPER_RESULTS, TABLE1_LABELS,
                                               Chapter, Claim, glue_key, glue_values)
from vldlib.study.chapters.page import glue, set_theme
from vldlib.study.chapters.run import ChapterRun
from vldlib.study.parameters import SHARED, check_parameters, declared

__all__ = ["Chapter", "ChapterRun", "Claim", "ACCURACY", "ACCURACY_NAMES", "TABLE1_LABELS", "CHAPTERS",
           "GRID_PARAMETERS", "EXECUTOR_PARAMETERS", "PAPER_RESULTS", "CLAIM_FIELDS", "DATASETS_GLUE", "open_chapter",
           "chapter", "glue", "glue_key", "glue_values", "StoreFindings", "from_store", "declared", "parameter_names",
           "check_chapter_parameters"]


def _declares_chapter(path: Path) -> bool:
    """Whether a module's source assigns ``CHAPTER`` at its top level (read, not imported)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(node, (ast.Assign, ast.AnnAssign))
               and any(isinstance(t, ast.Name) and t.id == "CHAPTER"
                       for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))
               for node in tree.body)


def _discover() -> dict[str, str]:
    """Chapter name -> module, for every module of this package that declares a ``CHAPTER``
    (the module's name is the chapter's name; a test checks that they agree)."""
    here = Path(__file__).parent
    return {m.name: f"{__name__}.{m.name}" for m in sorted(pkgutil.iter_modules([str(here)]), key=lambda m: m.name)
            if not m.ispkg and _declares_chapter(here / f"{m.name}.py")}


#: Chapter name -> the module that declares it (``CHAPTER``) and holds its tables and figures,
#: found from this package's modules (alphabetical; the book's order is the book's).
CHAPTERS: dict[str, str] = _discover()


def _module(name: str):
    if name not in CHAPTERS:
        raise ValueError(f"unknown chapter {name!r}; chapters: {', '.join(CHAPTERS)}")
    return importlib.import_module(CHAPTERS[name])  # the registry maps names to modules


def chapter(name: str) -> Chapter:
    """The declaration of chapter ``name``."""
    return _module(name).CHAPTER


def parameter_names(name: str) -> list[str]:
    """The parameters chapter ``name`` takes: the shared ones (its parameters cell's, and ``dataset_roots``:
    several datasets, for any chapter), then its own."""
    shared = [*SHARED, *[n for n in (*GRID_PARAMETERS, *EXECUTOR_PARAMETERS, "dataset_roots") if n not in SHARED]]
    return [*shared, *[n for n in chapter(name).parameters if n not in shared]]


def check_chapter_parameters(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Chapter ``name``'s parameters among ``values`` checked against their declared types (and the
    base config built, :func:`check_parameters`): normalised values, or a one-line ``ValueError``."""
    names = parameter_names(name)
    return check_parameters({k: v for k, v in values.items() if k in names}, names)


def open_chapter(name: str, namespace: Mapping[str, Any] | None = None, *, page: bool = False, **params: Any):
    """Chapter ``name`` with a notebook's parameters: its ``ChapterRun`` (subclass), grid built.

    ``namespace``: a notebook's ``globals()``; the chapter takes the names of its parameters
    cell from it (:func:`parameter_names`) and nothing else. Keyword arguments win over the
    namespace; parameters not given take their declared default. ``page``: a notebook page:
    every parameter is checked against its declared type first (:func:`check_chapter_parameters`)
    and the plotting theme is set."""
    module = _module(name)
    names = set(parameter_names(name))
    taken = {k: v for k, v in {**(namespace or {}), **params}.items() if k in names or k in params}
    if page:
        taken.update(check_chapter_parameters(name, taken))
        set_theme()
    return getattr(module, "Run", ChapterRun)(module.CHAPTER, taken)  # a chapter subclasses only what is special


@dataclass(frozen=True)
class StoreFindings:
    """What the run store holds for every chapter (:func:`from_store`): ``coverage`` (one row per
    chapter: runs its grid needs, runs found), ``claims`` (the declared claims of the complete
    chapters, :meth:`ChapterRun.claim_table` + ``chapter``), ``effects`` (their ``effects`` frames +
    ``chapter``) and ``runs`` (the stored runs they use, one row per run and chapter)."""

    coverage: pd.DataFrame
    claims: pd.DataFrame
    effects: pd.DataFrame
    runs: pd.DataFrame


def from_store(namespace: Mapping[str, Any] | None = None, **params: Any) -> StoreFindings:
    """Every chapter of :data:`CHAPTERS` opened with the same parameters (as :func:`open_chapter`),
    its grid looked up in the run store without training (:meth:`ChapterRun.stored`); the claims
    and effects of each chapter whose runs are all there, through the chapter's own ``effects``.
    Chapters that train no student runs (no grid) are listed with 0 runs."""
    coverage, claims, effects, used = [], [], [], []
    for name in CHAPTERS:
        with contextlib.redirect_stdout(io.StringIO()):  # the chapters' own "profile ...: N runs" lines
            ch = open_chapter(name, namespace, **params)
        needed = len(ch.grid.configs)
        runs, missing = ch.stored() if needed else (pd.DataFrame(), 0)
        coverage.append({"chapter": ch.chapter.title, "runs needed": needed, "in the store": needed - missing,
                         "summarised": bool(needed and not missing)})
        if not coverage[-1]["summarised"]:
            continue
        used.append(runs.assign(chapter=ch.chapter.title))
        derived = ch.derive(runs)
        eff = ch.effects(derived)
        effects.append(eff.assign(chapter=ch.chapter.title))
        table = ch.claim_table(eff)
        # claims on the runs' own metrics; the others (e.g. text features) only the chapter computes
        table = table[[c.comparison.metric in derived.columns for c in ch.chapter.claims]]
        if not table.empty:
            claims.append(table.assign(chapter=ch.chapter.title))
    claim_cols = ["chapter", "source", "claim", "ours", "paper", "verdict", "n"]
    return StoreFindings(
        coverage=pd.DataFrame(coverage).set_index("chapter"),
        claims=pd.concat(claims)[claim_cols] if claims else pd.DataFrame(columns=claim_cols),
        effects=pd.concat(effects, ignore_index=True) if effects else pd.DataFrame(),
        runs=pd.concat(used, ignore_index=True) if used else pd.DataFrame())
