"""Downloads of a chapter: every results table as a CSV file next to the page, linked from it.

A chapter writes ``<downloads>/<chapter>/<name>.csv`` (atomically, :func:`vldlib.io.write_text_atomic`)
where ``<downloads>`` is :func:`vldlib.paths.default_downloads_dir` (the book driver points it at a
folder that Sphinx copies to ``_build/html/downloads/``). The returned :class:`Download` displays as
one line with the link, relative to a chapter page (``book/executed/<chapter>.html``), so a
figure's caption can say which runs it shows and where their table is.
"""
from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vldlib.io import write_text_atomic
from vldlib.paths import default_downloads_dir

__all__ = ["Download", "HREF_FROM_CHAPTER", "save_csv", "runs_caption"]

#: The downloads folder seen from a chapter page ``book/executed/<chapter>.html`` of the built HTML.
HREF_FROM_CHAPTER = "../../downloads"


@dataclass(frozen=True)
class Download:
    """A CSV written for the book: where it is, its link from the chapter page, a sentence about it."""

    path: Path
    href: str
    rows: int
    text: str = ""

    @property
    def name(self) -> str:
        return self.path.name

    def _repr_html_(self) -> str:
        text = html.escape(self.text) + " " if self.text else ""
        return (f'<p class="vld-download">{text}<a class="vld-csv" href="{html.escape(self.href)}" download>'
                f"{html.escape(self.name)}</a> (CSV, {self.rows} rows)</p>")

    def __repr__(self) -> str:
        return f"{self.text + ' ' if self.text else ''}{self.path} (CSV, {self.rows} rows)"


def save_csv(frame: pd.DataFrame, chapter: str, name: str, results_dir: str | os.PathLike = "results", *,
             text: str = "", index: bool = True) -> Download:
    """Write ``frame`` as ``<downloads>/<chapter>/<name>.csv`` (atomic) and return its :class:`Download`."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"save_csv: bad table name {name!r}; use a plain file stem such as 'table1'")
    path = default_downloads_dir(results_dir) / chapter / f"{name}.csv"
    write_text_atomic(path, frame.to_csv(index=index))
    return Download(path, f"{HREF_FROM_CHAPTER}/{chapter}/{name}.csv", len(frame), text)


def runs_caption(runs: pd.DataFrame, chapter: str, results_dir: str | os.PathLike = "results", *,
                 column: str | None = None, name: str = "runs", what: str = "runs") -> Download:
    """The caption of a chapter's figures: how many runs (or other replicates) they show, and the CSV
    of exactly those rows (with each run's config ``hash`` where there is one)."""
    groups = f" of {runs[column].nunique()} settings" if column and column in runs.columns else ""
    hashes = ", each with its config hash," if "hash" in runs.columns else ""
    text = f"The figures above show these {len(runs)} {what}{groups}; all are listed{hashes} in"
    return save_csv(runs, chapter, name, results_dir, text=text, index=False)
