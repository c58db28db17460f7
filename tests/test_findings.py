"""The book as a publication (issue 12): declared claims, their glued values, the front page's
findings table, and the chapters' CSV downloads. Fast: synthetic frames and notebooks only."""
from __future__ import annotations

import json
import math
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from vldlib import findings
from vldlib.study import report
from vldlib.study.chapters import (CHAPTERS, CLAIM_FIELDS, DATASETS_GLUE, PAPER_RESULTS, Chapter, ChapterRun,
                                   Claim, chapter, glue_key, glue_values)
from vldlib.study.chapters import run as chapter_run
from vldlib.study.downloads import HREF_FROM_CHAPTER, save_csv
from vldlib.study.readings import Comparison as C


def _effects(rows):
    frame = pd.DataFrame({"seed": [0, 0, 0, 1, 1, 1, 2, 2, 2], "split_seed": [0] * 9,
                          "method": ["a", "b", "c"] * 3, "acc": [50, 40, 41, 52, 41, 40, 51, 40, 42.0]})
    paper = pd.DataFrame({"method": ["a", "b", "c"], "acc": [30.0, 20.0, 25.0]})
    return report.compare(frame, [C(t, b, "acc") for t, b in rows], column="method", paper=paper)


def _run(claims) -> ChapterRun:
    run = ChapterRun.__new__(ChapterRun)  # no grid needed to read claims off an effects frame
    run.chapter = Chapter(name="x", title="X", question="?", paper_tables=(), claims=tuple(claims))
    run.params = {}
    return run


def test_compare_keeps_the_comparison_keys():
    eff = _effects([("a", "b")])
    assert list(eff[["treatment", "baseline", "metric_key"]].iloc[0]) == ["a", "b", "acc"]


def test_claim_table_reads_each_claim_off_the_effects_by_its_keys():
    run = _run([Claim("a_over_b", "Table 1", "a beats b", C("a", "b", "acc")),
                Claim("c_over_b", "Table 9", "c beats b", C("c", "b", "acc"), direction=-1, direction_text="lower"),
                Claim("missing", "Table 2", "d beats b", C("d", "b", "acc"))])
    table = run.claim_table(_effects([("c", "b"), ("a", "b")]))
    assert list(table.index) == ["a_over_b", "c_over_b", "missing"]
    iv = report.paired_effect(_effects([]).pipe(lambda _: pd.DataFrame({
        "seed": [0, 0, 1, 1, 2, 2], "split_seed": [0] * 6, "method": ["a", "b"] * 3,
        "acc": [50, 40, 52, 41, 51, 40.0]})), "acc", column="method", treatment="a", baseline="b")
    a = table.loc["a_over_b"]
    assert a["ours"] == f"+{iv.mean:.1f} [{iv.low:.1f}, {iv.high:.1f}]" and a["n"] == 3
    assert a["paper"] == "+10.0" and a["verdict"] == "as in the paper"
    c = table.loc["c_over_b"]  # c - b = 0.33 [-2.5, 3.2]: includes 0, paper's sign only
    assert c["paper"] == "lower" and c["verdict"] == "not seen here" and c["ours"].startswith("+")
    assert table.loc["missing", "ours"] == "not run" and table.loc["missing", "verdict"] == "not run"
    glued = glue_values(table)
    assert set(glued) == {glue_key(k, f) for k in table.index for f in CLAIM_FIELDS}
    assert glued["claim.a_over_b.ours"] == a["ours"] and glued["claim.missing.n"] == "0"


def test_claim_declarations_are_checked():
    with pytest.raises(ValueError, match="source 'Table 99' is not one of"):
        Claim("k", "Table 99", "s", C("a", "b", "m"))
    with pytest.raises(ValueError, match="must be an identifier"):
        Claim("not a key", "Table 1", "s", C("a", "b", "m"))
    with pytest.raises(ValueError, match="direction must be"):
        Claim("k", "Table 1", "s", C("a", "b", "m"), direction=2)
    with pytest.raises(ValueError, match="unknown claim field"):
        glue_key("k", "size")


def test_every_chapter_declares_a_claim_and_keys_are_unique():
    keys = [c.key for name in CHAPTERS for c in chapter(name).claims]
    assert len(keys) == len(set(keys)), "two chapters glue the same claim name"
    for name in CHAPTERS:
        assert chapter(name).claims, f"chapter {name} declares no claim for the front page"


def _executed(folder: Path, name: str, glued: dict[str, str], profile: str = "smoke") -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["vldbook"] = {"seconds": 1.0, "profile": profile}
    cell = nbformat.v4.new_code_cell("glue(...)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"application/papermill.record/text/plain": repr(v)},
                                           metadata={"scrapbook": {"name": k, "mime_prefix": "application/papermill.record/"}})
                    for k, v in glued.items()]
    nb.cells = [cell]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.ipynb").write_text(json.dumps(nb), encoding="utf-8")


def test_findings_page_glues_what_the_chapters_glued_and_says_not_run_otherwise(tmp_path):
    main = chapter("main_results").claims
    _executed(tmp_path, "main_results", {glue_key(main[0].key, f): "x" for f in CLAIM_FIELDS})
    _executed(tmp_path, "summary", {findings.RUNS_GLUE: "12"})
    (tmp_path / "dl" / "summary").mkdir(parents=True)
    (tmp_path / "dl" / "summary" / "runs.csv").write_text("hash\n", encoding="utf-8")
    page = findings.write(tmp_path, ["main_results", "summary", "feature_errors"], tmp_path / "dl").read_text()
    row = next(line for line in page.splitlines() if main[0].statement in line)
    for f in ("ours", "paper", "verdict"):
        assert f"{{glue:text}}`/book/executed/main_results.ipynb::{glue_key(main[0].key, f)}:s`" in row
    assert "{doc}`Main results </book/executed/main_results>`" in row
    other = next(line for line in page.splitlines() if main[1].statement in line)
    assert other.count("not run") == 3  # executed, but without this glued value
    fe = next(line for line in page.splitlines() if chapter("feature_errors").claims[0].statement in line)
    assert "not run" in fe and "{doc}" in fe  # in the book, not executed here
    kab = next(line for line in page.splitlines() if chapter("k_ablation").claims[0].statement in line)
    assert "not run" in kab and "{doc}" not in kab  # not in the book: no link that would break -W
    table_rows = [line for line in page.splitlines() if line.startswith("| ") and not line.startswith("| paper")]
    sources = [line.split("|")[1].strip() for line in table_rows]
    assert sources == sorted(sources, key=PAPER_RESULTS.index) and set(sources) == set(PAPER_RESULTS)
    declared = {c.source for n in CHAPTERS for c in chapter(n).claims}
    for source in set(PAPER_RESULTS) - declared:
        assert f"| {source} | the paper's claims of this result | – | – | no chapter yet | – |" in page
    assert "smoke" in page and "proxy" in page and "not CLIP" in page
    assert f"/book/executed/summary.ipynb::{findings.RUNS_GLUE}:s" in page and findings.RUNS_HREF in page


def test_findings_page_without_executed_chapters_has_no_glue(tmp_path):
    page = findings.render(tmp_path, [], None)
    assert "{glue" not in page and "{doc}" not in page and "not run" in page


def test_save_csv_writes_under_vld_downloads_and_links_from_the_chapter_page(tmp_path, monkeypatch):
    monkeypatch.setenv("VLD_DOWNLOADS", str(tmp_path / "dl"))
    table = pd.DataFrame({"ours": ["1.0 [0.5, 1.5]"], "paper": [2.0]}, index=["L_cls"])
    d = save_csv(table, "main_results", "table1", "unused", text="Download:")
    assert d.path == tmp_path / "dl" / "main_results" / "table1.csv"
    assert pd.read_csv(d.path, index_col=0).loc["L_cls", "paper"] == 2.0
    assert f'href="{HREF_FROM_CHAPTER}/main_results/table1.csv"' in d._repr_html_() and "1 rows" in d._repr_html_()
    assert not list((tmp_path / "dl" / "main_results").glob(".*")), "a temporary file was left behind"
    monkeypatch.delenv("VLD_DOWNLOADS")
    d = save_csv(table, "x", "t", tmp_path / "results")
    assert d.path == tmp_path / "results" / "downloads" / "x" / "t.csv"
    with pytest.raises(ValueError, match="bad table name '../t'"):
        save_csv(table, "x", "../t", tmp_path)


def test_runs_caption_counts_runs_and_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("VLD_DOWNLOADS", str(tmp_path))
    runs = pd.DataFrame({"hash": ["a", "b", "c"], "method": ["x", "x", "y"], "acc": [1.0, 2.0, math.nan]})
    d = _run([]).__class__.runs_csv(type("R", (), {"chapter": Chapter("ch", "C", "?", (), column="method"),
                                                   "params": {}})(), runs)
    assert "these 3 runs of 2 settings" in d.text and "each with its config hash" in d.text
    assert list(pd.read_csv(d.path)["hash"]) == ["a", "b", "c"]


def test_publish_claims_glues_every_claim_value(monkeypatch, tmp_path):
    """The one call a notebook makes: every claim field glued (not displayed), the table and its CSV returned."""
    glued = {}
    monkeypatch.setattr(chapter_run, "glue", lambda name, value: glued.setdefault(name, value))
    monkeypatch.setenv("VLD_DOWNLOADS", str(tmp_path / "downloads"))
    run = _run([Claim("a_over_b", "Table 1", "a beats b", C("a", "b", "acc"))])
    table, link = run.publish_claims(_effects([("a", "b")]))
    assert set(glued) == set(glue_values(table)) == {glue_key("a_over_b", f) for f in CLAIM_FIELDS}
    assert glued["claim.a_over_b.ours"] == table.loc["a_over_b", "ours"]
    assert (tmp_path / "downloads" / "x" / "claims.csv").is_file()


def test_findings_page_says_which_datasets_a_chapters_claims_pool(tmp_path, monkeypatch):
    """Several --dataset-root: the chapter glues the datasets its claims pool and the front page names
    them (glued, not typed); a one-dataset book has no such line."""
    main = chapter("main_results").claims
    _executed(tmp_path, "main_results", {glue_key(main[0].key, f): "x" for f in CLAIM_FIELDS})
    assert "read across the datasets" not in findings.render(tmp_path, ["main_results"], "paper")
    _executed(tmp_path, "main_results", {**{glue_key(main[0].key, f): "x" for f in CLAIM_FIELDS},
                                         DATASETS_GLUE: "CaltechBirds, mine"})
    page = findings.render(tmp_path, ["main_results"], "paper")
    line = next(x for x in page.splitlines() if "read across the datasets" in x)
    assert f"/book/executed/main_results.ipynb::{DATASETS_GLUE}:s" in line and "*Main results*" in line
    glued = {}
    monkeypatch.setattr(chapter_run, "glue", lambda name, value: glued.setdefault(name, value))
    monkeypatch.setenv("VLD_DOWNLOADS", str(tmp_path / "downloads"))
    run = _run([Claim("a_over_b", "Table 1", "a beats b", C("a", "b", "acc"))])
    run.publish_claims(_effects([("a", "b")]))
    assert DATASETS_GLUE not in glued
    run.datasets = {"CaltechBirds": None, "mine": None}
    run.publish_claims(_effects([("a", "b")]))
    assert glued[DATASETS_GLUE] == "CaltechBirds, mine"


def test_glue_writes_what_myst_nb_glue_writes_without_displaying_it():
    """Our ``glue`` (no myst_nb import in the kernel) gives the output ``myst_nb.glue(..., display=False)``
    gives, so ``{glue:text}`` reads it; checked on a number, a string and a DataFrame."""
    from IPython.core.interactiveshell import InteractiveShell
    from myst_nb import glue as myst_glue

    shell = InteractiveShell.instance()
    seen = []
    publish = shell.display_pub.publish
    shell.display_pub.publish = lambda data, metadata=None, **kw: seen.append((data, metadata))
    try:
        for value in (12, "CaltechBirds, mine", pd.DataFrame({"a": [1.5]})):
            seen.clear()
            myst_glue("k", value, display=False)
            chapter_run.glue("k", value)
            assert len(seen) == 2 and seen[0] == seen[1], seen
            assert all(key.startswith("application/papermill.record/") for key in seen[1][0])
    finally:
        shell.display_pub.publish = publish
