"""Building the HTML: the generated pages (the table of contents ``_toc.yml`` and the front page's
list, from :data:`vldlib.book.contents.PARTS`; the findings; "How this book was built"), the book
staged elsewhere when the executed notebooks are not in ``book/executed``, then ``jupyter-book
build -W --keep-going`` (notebooks are never re-executed by Jupyter Book: ``execute_notebooks:
"off"`` in ``_config.yml``)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from vldlib import build_info, findings
from vldlib.book.contents import (BOOK_SOURCES, DOWNLOADS, EXTRA, FRONT_LIST, ROOT, render_front_list, render_toc,
                                  toc_notebooks)
from vldlib.book.execute import PRETRAIN, TIMES_KEY
from vldlib.io import try_read_json, write_text_atomic
from vldlib.paths import default_cache_dir


def write_toc(book_root: Path) -> bool:
    """Make ``book_root/_toc.yml`` the table of contents of :data:`~vldlib.book.contents.PARTS`
    (written atomically, only when it differs); True when it was written."""
    path, text = book_root / "_toc.yml", render_toc()
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass  # missing or unreadable: written from the declaration
    write_text_atomic(path, text)
    return True


def write_generated_pages(executed_dir: Path, results_dir: str, executed_now: Sequence[str],
                          profile: str | None, started: float | None) -> list[Path]:
    """Write the pages generated from the build (into ``executed_dir``): "How this book was built",
    the front page's findings and its list of what is reproduced; returns their paths."""
    downloads = executed_dir / EXTRA / DOWNLOADS
    page = write_build_page(executed_dir, results_dir, executed_now, profile, started)
    downloads.mkdir(parents=True, exist_ok=True)  # html_extra_path must exist
    front = findings.write(executed_dir, toc_notebooks(), downloads)
    listing = executed_dir / FRONT_LIST
    write_text_atomic(listing, render_front_list())
    return [page, front, listing]


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
    write_toc(dest)
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
                            times=build_info.read_times(executed_dir, toc_notebooks(), TIMES_KEY),
                            order=toc_notebooks(), executed_now=list(executed_now),
                            profile=profile, started=started, pretrain=try_read_json(executed_dir / PRETRAIN))
