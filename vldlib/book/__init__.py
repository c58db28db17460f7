"""Execute the study notebooks with papermill and build the Jupyter Book.

``python -m vldlib.book [--profile offline|paper|smoke] [-p NAME VALUE ...] [--only NAME ...]
[--no-execute] [--results-dir DIR] [--build-dir DIR] [--executed-dir DIR] [--notebooks-dir DIR]``

1. Every notebook ``notebooks/<name>.py`` (jupytext percent format) of :data:`~vldlib.book.contents.BOOK_ORDER`, then the
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
   ``hide-input``, so the HTML shows prose, tables and figures with the code folded behind a toggle,
   and no warning reaches a page (:mod:`vldlib.book.pages`).
   Each chapter's progress is printed with its elapsed seconds, then a table of times.
3. The front page's findings (``<executed>/findings.md``, :mod:`vldlib.findings`, included by
   ``book/intro.md``): one line per claim the chapters declare, each number a ``{glue:text}``
   reference to the executed chapter. The chapters write their tables as CSV into
   ``<executed>/_extra/downloads/<chapter>/`` (``$VLD_DOWNLOADS``), which lands in the HTML; a
   notebook writes them into ``<executed>/.downloads.new/`` first, and they replace its old ones
   only when it succeeded. The fingerprints are written after every notebook (atomically), so an
   interrupt keeps the finished notebooks, their tables and their fingerprints.
4. The page "How this book was built" (``<executed>/build_info.md``, :func:`~vldlib.book.build.write_build_page`) is
   generated from the machine, the library versions, the git commit, the chapter times measured
   here (kept in each executed notebook's metadata, ``metadata.vldbook``), the run store and the cache.
5. ``_toc.yml`` and the front page's list of chapters are generated from :data:`~vldlib.book.contents.PARTS`;
   ``jupyter-book build <root> -W --keep-going`` renders the HTML (notebooks are never re-executed
   by Jupyter Book: ``execute_notebooks: "off"`` in ``_config.yml``).

A failing notebook stops the build with a :class:`NotebookFailed` naming the notebook and the
failing cell; the partly executed notebook is kept as ``book/executed/<name>.failed.ipynb``.
Every other clear error (a run of the up-front training that failed, a config the library
rejects, a folder that cannot be written or is full, folders that overlap) is one line on stderr
and exit 2, checked before anything runs where it can be (:mod:`vldlib.book_faults`). Ctrl-C is
130, SIGTERM 143: either stops the up-front training's workers at once and keeps what finished.

The package's modules, one job each: :mod:`~vldlib.book.contents` (the book's parts and pages,
declared once), :mod:`~vldlib.book.planning` (sources and parameters), :mod:`~vldlib.book.execute`
(papermill, the up-front training, the tables), :mod:`~vldlib.book.fingerprints` (the cache of
what each notebook was made from), :mod:`~vldlib.book.pages` (what an executed notebook shows),
:mod:`~vldlib.book.build` (generated pages, Jupyter Book) and :mod:`~vldlib.book.cli`. Their
names are re-exported here. Nothing in the library imports this package.
"""
from __future__ import annotations

import sys
import types
from typing import Any

from vldlib.book import build, cli, contents, errors, execute, fingerprints, pages, planning
from vldlib.book.build import (build_html, stage_book, times_table, write_build_page, write_generated_pages,
                               write_toc)
from vldlib.book.cli import check_inputs, dataset_root_parameters, executor_parameters, main
from vldlib.book.contents import (BOOK_ORDER, BOOK_SOURCES, BUILD_INFO, CHAPTER_ORDER, DOWNLOADS, EXTRA, FRONT_LIST, PARTS, ROOT,
                                  SUMMARY, Page, Part, render_front_list, render_toc, toc_notebooks)
from vldlib.book.errors import BookError, NotebookFailed
from vldlib.book.execute import (IOPUB_TIMEOUT, KERNEL, KERNEL_ARGS, PRETRAIN, STAGED_DOWNLOADS, TIMES_KEY,
                                 cell_disk_full, execute_all, execute_notebook, kernel_environment, open_chapter,
                                 pretrain, publish_downloads, replace_file, restore_downloads, run_grid, utc_stamp)
from vldlib.book.fingerprints import (FINGERPRINTS, fingerprint, library_digest, save_fingerprint, store_digest,
                                      unchanged)
from vldlib.book.pages import HIDE_TAG, KERNEL_WARNINGS, hide_code_cells, hide_injected, strip_warnings
from vldlib.book.planning import (RESERVED, NotebookSource, known_profiles, notebook_sources, papermill_value,
                                  parse_value, plan, read_parameters)
from vldlib.book_faults import check_folders, quiet_after_interrupt

#: The package's modules, where :class:`_Book` looks up who uses a name.
_MODULES: tuple[types.ModuleType, ...] = (contents, errors, planning, fingerprints, pages, execute, build, cli)


class _Book(types.ModuleType):
    """``vldlib.book`` as a module whose names, when set (a test's ``monkeypatch.setattr(book,
    "execute_notebook", fake)``), are set in every module of the package that uses them, so the
    driver calls what was set as it did when it was one module."""

    def __setattr__(self, name: str, value: Any) -> None:
        for module in _MODULES:
            if name in vars(module) and not isinstance(vars(module)[name], types.ModuleType):
                setattr(module, name, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Book
