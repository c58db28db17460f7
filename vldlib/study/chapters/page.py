"""A chapter's page: the sections every chapter notebook shows, one call each (:class:`Page`, mixed
into :class:`vldlib.study.chapters.run.ChapterRun`), and the page's look (:func:`set_theme`).

A notebook is its parameters cell, ``ch = open_chapter(name, globals(), page=True)`` and these
sections; what a section shows comes from the chapter's ``table``, ``figure``, ``effects``,
``reading`` and ``claims``."""
from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import pandas as pd
from IPython.core.formatters import format_display_data
from IPython.display import Markdown, display

from vldlib.study import report

__all__ = ["Page", "glue", "set_theme"]

#: MyST-NB's glue protocol (papermill's record prefix): a display output whose MIME keys carry this
#: prefix, with ``metadata["scrapbook"]``, is stored for ``{glue:text}`` and not shown on the page.
GLUE_PREFIX = "application/papermill.record/"


def glue(name: str, value: object) -> None:
    """Glue ``value`` under ``name`` for the book (``{glue:text}`` on another page), not displayed.

    The output is the one ``myst_nb.glue(name, value, display=False)`` writes, made here because
    importing ``myst_nb.glue`` in a kernel loads nbformat's JSON-schema validators (about 5 s per
    notebook, for one display call); ``tests/test_findings.py`` checks the two stay identical."""
    bundle, metadata = format_display_data(value)
    metadata["scrapbook"] = {"name": name, "mime_prefix": GLUE_PREFIX}
    display({GLUE_PREFIX + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)


def set_theme() -> None:
    """The book's plotting theme and table width; tqdm's "IProgress not found" warning silenced
    (the book renders progress as text)."""
    import seaborn as sns  # plotting style only where a page is drawn

    warnings.filterwarnings("ignore", message="IProgress not found")
    sns.set_theme(style="whitegrid", context="notebook")
    pd.set_option("display.max_colwidth", 200)


class Page:
    """The sections of a chapter's page (each displays its part and returns what later ones read)."""

    def show_runs(self) -> pd.DataFrame:
        """Train the missing runs, show the chapter's notes; returns the data its tables read."""
        data = self.derive(self.train())
        notes = self.notes()
        if notes.strip():
            display(Markdown(notes))
        return data

    def show_table(self, data: pd.DataFrame, what: str = "runs") -> None:
        """The chapter's table with its CSV, its figure, and the runs the figure shows (returns
        nothing: a notebook's last line would show the table a second time)."""
        table = self.table(data)
        display(table, self.csv(table, self.chapter.csv))
        above = self.above_chance_table(data)
        if not above.empty:
            display(Markdown("The same accuracies as the share of the teacher's ability above chance, "
                             "(student - chance) / (teacher - chance), on the same images with the same class "
                             "texts, beside the paper's share (CLIP ViT-L/14, each dataset at its own chance):"),
                    above, self.csv(above, "above_chance"))
        if self.figure(data) is not None:
            plt.show()
        display(self.runs_csv(data, what=what))

    def show_effects(self, data: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
        """The paired effects with their CSV and, when the chapter titles one, their figure."""
        effects = self.effects(data)
        display(report.effects_table(effects, digits=digits), self.csv(effects, "effects"))
        if self.chapter.effects_title and not effects.empty:
            report.plot_effects(effects, title=self.chapter.effects_title.format(paper_dataset=self.grid.paper_dataset))
            plt.show()
        return effects

    def show_reading(self, data: pd.DataFrame, effects: pd.DataFrame) -> None:
        """The computed reading."""
        extra = self.above_chance_reading(data)
        display(Markdown(self.reading(data, effects) + (f"\n\n{extra}" if extra else "")))

    def show_claims(self, effects: pd.DataFrame) -> None:
        """The paper's claims tested here, glued for the front page."""
        display(*self.publish_claims(effects))
