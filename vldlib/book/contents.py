"""What the book is made of: its parts and pages in order, declared once (:data:`PARTS`).

Everything that lists the book's pages derives from :data:`PARTS`: the notebooks the driver
executes (:data:`BOOK_ORDER` and :data:`SUMMARY`), the table of contents Jupyter Book reads
(``_toc.yml``, :func:`render_toc`, written by the driver when it differs), the front page's list
of what is reproduced (``<executed>/contents.md``, :func:`render_front_list`, included by
``book/intro.md``) and the tests. A chapter page's line on the front page is its declared
question (:class:`vldlib.study.chapters.Chapter`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vldlib.study.chapters import CHAPTERS, chapter

#: The repository root: notebook sources, the book's sources and the default run store live here.
ROOT = Path(__file__).resolve().parents[2]
#: Where the executed pages are, seen from the book root (``_toc.yml`` entries, cross-document links).
EXECUTED_DOC = "book/executed"
#: Files and folders that make up the book's sources (copied when the book is staged elsewhere).
BOOK_SOURCES: tuple[str, ...] = ("_config.yml", "_toc.yml", "book")
#: Copied into the HTML root by Sphinx (``html_extra_path`` in _config.yml): ``<executed>/_extra``;
#: the chapters' CSV tables go to its ``downloads/<chapter>/`` (``$VLD_DOWNLOADS`` for the kernels).
EXTRA = "_extra"
DOWNLOADS = "downloads"
#: The generated front-page list (``<executed>/contents.md``), included by ``book/intro.md``.
FRONT_LIST = "contents.md"
#: The kinds of page: a chapter notebook (``notebooks/<name>.py``), the summary notebook
#: (``book/<name>.py``), both executed by the driver; a written page (``book/<name>.md``); a page
#: the driver generates (``<executed>/<name>.md``).
KINDS = ("notebook", "summary", "page", "generated")


@dataclass(frozen=True)
class Page:
    """One page of the book: its name, its kind (:data:`KINDS`) and, for a page listed on the front
    page that is not a chapter, its line there (``blurb``)."""

    name: str
    kind: str
    blurb: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"page {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")

    @property
    def executed(self) -> bool:
        """True for a notebook the driver executes into ``<executed>/<name>.ipynb``."""
        return self.kind in ("notebook", "summary")

    @property
    def doc(self) -> str:
        """The page's document path from the book root (as ``_toc.yml`` names it)."""
        return f"{EXECUTED_DOC}/{self.name}" if self.kind != "page" else f"book/{self.name}"


@dataclass(frozen=True)
class Part:
    """A captioned part of the book; ``listed``: its executed pages are on the front page's list."""

    caption: str
    pages: tuple[Page, ...]
    listed: bool = False


#: The book, in reading order. The first part's first page is preceded by the front page (``book/intro``).
PARTS: tuple[Part, ...] = (
    Part("Background", (Page("method", "page"), Page("offline", "page"), Page("offline_recipe", "notebook"))),
    Part("Experiments", tuple(Page(name, "notebook") for name in (
        "teacher_zero_shot", "feature_errors", "main_results", "prompt_detail", "k_ablation",
        "language_enrichment", "field_losses", "vit_student", "fewshot_retrieval", "continual",
        "description_controls", "diagnosis", "teacher_view")), listed=True),
    Part("Results", (Page("summary", "summary", "All our results beside the paper's reference values, computed "
                                                "from the run store, with the cost of every run."),
                     Page("paper_profile", "page")), listed=True),
    Part("About this book", (Page("references", "page"), Page("build_info", "generated"))),
)
#: The front page (the TOC's root).
INTRO = "book/intro"


def pages(kind: str | None = None) -> list[Page]:
    """Every page of :data:`PARTS` in order (only those of ``kind`` when given)."""
    return [p for part in PARTS for p in part.pages if kind is None or p.kind == kind]


#: The chapter notebooks the driver executes, in book order (``notebooks/<name>.py``).
BOOK_ORDER: tuple[str, ...] = tuple(p.name for p in pages("notebook"))
#: The chapters (:data:`vldlib.study.chapters.CHAPTERS`) in book order: the notebooks that are not
#: chapters (the offline recipe) left out.
CHAPTER_ORDER: tuple[str, ...] = tuple(name for name in BOOK_ORDER if name in CHAPTERS)
#: The summary page's notebook (``book/summary.py``), executed after the chapters.
SUMMARY: str = pages("summary")[0].name
#: The generated page "How this book was built" (``<executed>/build_info.md``), not a notebook.
BUILD_INFO: str = pages("generated")[0].name


def render_toc() -> str:
    """The text of ``_toc.yml`` (Jupyter Book 1, sphinx-external-toc) for :data:`PARTS`."""
    lines = ["# Table of contents of the vldbook study book (Jupyter Book 1, sphinx-external-toc).",
             "# Generated from vldlib/book/contents.py (PARTS) by `python -m vldlib.book`: edit it there.",
             f"# Notebook pages are the papermill outputs in {EXECUTED_DOC}/.",
             "format: jb-book", f"root: {INTRO}", "parts:"]
    for part in PARTS:
        lines += [f"  - caption: {part.caption}", "    chapters:"]
        lines += [f"      - file: {page.doc}" for page in part.pages]
    return "\n".join(lines) + "\n"


def toc_notebooks() -> list[str]:
    """The executed pages the build needs, in book order (the chapters, then the summary)."""
    return [p.name for p in pages() if p.executed]


def render_front_list() -> str:
    """The front page's list of what is reproduced (MyST): one line per executed page of a listed
    part, a link to it (titled by the page) and its question (a chapter's declared question)."""
    lines = []
    for part in PARTS:
        for page in part.pages if part.listed else ():
            if page.executed:
                what = chapter(page.name).question if page.name in CHAPTERS else page.blurb
                lines.append(f"- {{doc}}`/{page.doc}`: {what}")
    return "\n".join(lines) + "\n"
