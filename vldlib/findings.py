"""The front page's findings: one line per claim of the paper, our numbers glued from the chapters.

Each chapter declares the paper's headline claims it tests (``CHAPTER.claims``,
:class:`vldlib.study.chapters.Claim`) and its executed notebook glues our paired effect, the
paper's difference (read from ``vldlib/resources/paper_tables.json`` by the chapter) and the
verdict under the names of :func:`vldlib.study.chapters.glue_key`. :func:`render` writes a MyST
table whose cells are cross-document ``{glue:text}`` references to those values, so no number is
typed: a claim whose chapter is not in the book, or whose executed notebook does not carry the
glued value (not executed with this code, or the comparison was not run), reads "not run"; a
paper result no chapter declares a claim for reads "no chapter yet". ``book/intro.md`` includes
the page (``<executed>/findings.md``), which the book driver writes before every build.
Only the book driver (:mod:`vldlib.book`) uses this module.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from vldlib.io import write_text_atomic
from vldlib.models.specs import teacher_spec
from vldlib.study.chapters import CHAPTERS, DATASETS_GLUE, PAPER_RESULTS, Claim, chapter, glue_key
from vldlib.train.profiles import PROFILES

FILE = "findings.md"
#: Where the executed notebooks are, seen from the book's source root (cross-document glue paths).
EXECUTED_DOC = "/book/executed"
#: The summary notebook glues the run store's size under this name and writes the store's CSV here.
RUNS_GLUE = "runs.total"
RUNS_CSV = "summary/runs.csv"
#: The downloads folder (``<executed>/_extra/downloads``, copied to the HTML root) seen from book/intro.html.
RUNS_HREF = "../downloads/" + RUNS_CSV
NOT_RUN = "not run"


def glued_names(notebook: Path) -> set[str]:
    """The names glued (MyST-NB ``glue``) in an executed notebook; empty if it is missing or unreadable."""
    try:
        nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    names = set()
    for cell in nb.get("cells", []) if isinstance(nb, dict) else []:
        for out in cell.get("outputs", []) if isinstance(cell, dict) else []:
            meta = out.get("metadata", {}) if isinstance(out, dict) else {}
            scrap = meta.get("scrapbook") if isinstance(meta, dict) else None
            if isinstance(scrap, dict) and isinstance(scrap.get("name"), str):
                names.add(scrap["name"])
    return names


def world_sentence(profile: str | None) -> str:
    """One sentence on what the numbers can and cannot say under ``profile`` (from its definition)."""
    if profile not in PROFILES:
        return ("The chapters were executed under different or unknown profiles; see each chapter's "
                "parameters.")
    cfg = PROFILES[profile]
    if teacher_spec(cfg["teacher"]).proxy:
        return (f"Under the **{profile}** profile every number comes from {cfg['dataset']} (five seen and five "
                f"unseen classes, {cfg['dataset_options'].get('crop_size', '?')} px), a ConSE *proxy* teacher "
                f"(EfficientNet-{cfg['teacher_options'].get('backbone', '?').capitalize()} + MiniLM, not CLIP) and a "
                f"`{cfg['student']}` student on a CPU, so read the direction of each effect beside the paper's, "
                "not its size.")
    return (f"Under the **{profile}** profile the teacher is open_clip `{cfg['teacher_options'].get('model')}` "
            f"on the paper's official split lists (or the data folders given) with a `{cfg['student']}` student; "
            "the paper's numbers are "
            "single runs, ours are means over replicates with 95% intervals.")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _glue(name: str, key: str) -> str:
    # the trailing ":s" is the format spec; without it the role would split "doc::key" at its last colon
    return f"{{glue:text}}`{EXECUTED_DOC}/{name}.ipynb::{key}:s`"


def claim_rows(executed_dir: Path, in_book: Iterable[str]) -> list[dict[str, str]]:
    """One row per declared claim, in the paper's order, then one per paper result without a claim."""
    in_book = set(in_book)
    declared: dict[str, list[tuple[str, Claim]]] = {source: [] for source in PAPER_RESULTS}
    for name in CHAPTERS:
        for claim in chapter(name).claims:
            declared[claim.source].append((name, claim))
    rows = []
    for source in PAPER_RESULTS:
        if not declared[source]:
            rows.append({"source": source, "claim": "the paper's claims of this result", "ours": "–",
                         "paper": "–", "verdict": "no chapter yet", "chapter": "–"})
            continue
        for name, claim in declared[source]:
            glued = glued_names(Path(executed_dir) / f"{name}.ipynb") if name in in_book else set()
            title = chapter(name).title
            link = f"{{doc}}`{title} <{EXECUTED_DOC}/{name}>`" if name in in_book else _cell(title)
            row = {"source": source, "claim": _cell(claim.statement), "chapter": link}
            for field in ("ours", "paper", "verdict"):
                key = glue_key(claim.key, field)
                row[field] = _glue(name, key) if key in glued else NOT_RUN
            rows.append(row)
    return rows


def pooled_lines(executed_dir: Path, in_book: Iterable[str]) -> list[str]:
    """One line per chapter whose claims pool several datasets (``--dataset-root`` given more than
    once): which datasets, glued from the chapter; none for a one-dataset book."""
    lines = []
    for name in CHAPTERS:
        if name in in_book and chapter(name).claims and DATASETS_GLUE in glued_names(Path(executed_dir) / f"{name}.ipynb"):
            lines += [f"The claims of *{_cell(chapter(name).title)}* read across the datasets "
                      f"{_glue(name, DATASETS_GLUE)}: each effect pairs runs within one dataset, and its interval "
                      "is over the (dataset, class split) units.", ""]
    return lines


def render(executed_dir: Path, in_book: Iterable[str], profile: str | None, *, runs_csv: bool = False) -> str:
    """The findings page (MyST): the world sentence, the claims table, the run store line."""
    in_book = list(in_book)
    lines = ["## Findings at a glance", "",
             "Each line is one claim of the paper, tested by the chapter it links to. *Ours* is the paired "
             "effect (treatment minus baseline on the same seed and class split) with its 95% t-interval; "
             "*paper* is the paper's own difference for the same comparison, read from its tables; the "
             "verdict says whether the paper's direction appears here with an interval that excludes 0. "
             "Every number is glued from the executed chapter.", "",
             world_sentence(profile), "",
             "| paper | the paper's claim | ours: effect [95% CI] | paper: difference | verdict | chapter |",
             "|---|---|---|---|---|---|"]
    for r in claim_rows(executed_dir, in_book):
        lines.append(f"| {r['source']} | {r['claim']} | {r['ours']} | {r['paper']} | {r['verdict']} | {r['chapter']} |")
    lines.append("")
    lines += pooled_lines(executed_dir, in_book)
    if "summary" in in_book and RUNS_GLUE in glued_names(Path(executed_dir) / "summary.ipynb"):
        store = f"The run store behind these lines holds {_glue('summary', RUNS_GLUE)} finished runs"
        if runs_csv:
            store += f', all of them in one table: <a class="vld-csv" href="{RUNS_HREF}" download>runs.csv</a>'
        lines += [store + "; every chapter links its tables as CSV too.", ""]
    return "\n".join(lines)


def profile_of(executed_dir: Path, names: Iterable[str], key: str = "vldbook") -> str | None:
    """The profile the chapters were executed under (from their metadata), or None if they differ."""
    seen = set()
    for name in names:
        try:
            meta: Mapping[str, Any] = json.loads((Path(executed_dir) / f"{name}.ipynb").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        entry = meta.get("metadata", {}).get(key) if isinstance(meta, dict) else None
        if isinstance(entry, dict) and entry.get("profile"):
            seen.add(entry["profile"])
    return seen.pop() if len(seen) == 1 else None


def write(executed_dir: Path, in_book: Iterable[str], downloads: Path | None = None) -> Path:
    """Write ``<executed_dir>/findings.md`` (atomic); returns its path."""
    in_book = list(in_book)
    runs_csv = downloads is not None and (Path(downloads) / RUNS_CSV).is_file()
    text = render(executed_dir, in_book, profile_of(executed_dir, in_book), runs_csv=runs_csv)
    path = Path(executed_dir) / FILE
    write_text_atomic(path, text)
    return path
