"""The experiment notebooks: papermill smoke runs, nbmake on generated .ipynb, bad parameters.

All notebooks share one temporary teacher-feature cache and run store (module fixture), so the
teacher encodes the smoke images once and runs shared between notebooks are trained once.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["book_fixtures"]

jupytext = pytest.importorskip("jupytext")
papermill = pytest.importorskip("papermill")

from vldlib.book import IOPUB_TIMEOUT  # noqa: E402
from vldlib.study.chapters import chapter  # noqa: E402
from vldlib.study.parameters import parameters_cell  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
from vldlib.book import CHAPTER_ORDER as ORDER  # noqa: E402 - the chapters in book order, declared once


@pytest.fixture(scope="module")
def work(tmp_path_factory, fashion_mnist_root) -> Path:
    """A results dir and a cache dir shared by this module's notebook runs."""
    root = tmp_path_factory.mktemp("notebooks")
    (root / "results").mkdir()
    (root / "cache").mkdir()
    return root


def smoke_parameters(work: Path) -> dict:
    return {"profile": "smoke", "results_dir": str(work / "results"), "cache_dir": str(work / "cache")}


def execute(name: str, parameters: dict, out_dir: Path):
    """Run notebooks/<name>.py with papermill (cwd = repo root); return the executed notebook."""
    nb = jupytext.read(NOTEBOOKS / f"{name}.py")
    out_dir.mkdir(parents=True, exist_ok=True)
    src = out_dir / f"{name}.src.ipynb"
    jupytext.write(nb, src)
    out = out_dir / f"{name}.ipynb"
    papermill.execute_notebook(str(src), str(out), parameters=parameters, kernel_name="python3",
                               cwd=str(REPO), progress_bar=False, log_output=False,
                               iopub_timeout=IOPUB_TIMEOUT)
    return json.loads(out.read_text())


def outputs(nb: dict) -> list[dict]:
    return [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]


def test_sources_follow_book_conventions():
    """First code cell tagged `parameters`, literal-only, with profile/results_dir/smoke; one # title."""
    import ast

    for name in ORDER:
        nb = jupytext.read(NOTEBOOKS / f"{name}.py")
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), name
        tree = ast.parse(code[0].source)
        names = {}
        for stmt in tree.body:
            assert isinstance(stmt, ast.Assign), (name, ast.dump(stmt))
            names[stmt.targets[0].id] = ast.literal_eval(stmt.value)
        assert names["profile"] == "offline" and names["results_dir"] == "results", name
        assert names["smoke"] is False and "cache_dir" in names, name
        assert code[0].source == parameters_cell(chapter(name).parameters), \
            f"{name}: its parameters cell differs from the declaration (vldlib.study.parameters.parameters_cell)"
        assert f'open_chapter("{name}", globals(), page=True)' in code[1].source, name
        titles = [c for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("# ")]
        assert len(titles) == 1 and nb.cells.index(titles[0]) == 0, name
        headings = [line for c in nb.cells if c.cell_type == "markdown"
                    for line in c.source.splitlines() if line.startswith("#")]
        levels = [len(h) - len(h.lstrip("#")) for h in headings]
        assert all(b - a <= 1 for a, b in zip(levels, levels[1:])), (name, headings)


def check_chapter_page(name: str, nb: dict, store: Path) -> tuple[str, str]:
    """What every executed chapter notebook shows: no error, no traceback, an HTML table, a figure,
    each table once, a computed reading, the smoke profile reported, runs recorded in ``store``.
    Returns the page's markdown outputs and its stdout, for the caller's own checks."""
    outs = outputs(nb)
    errors = [o for o in outs if o["output_type"] == "error"]
    assert not errors, errors[0].get("evalue")
    stderr = "".join("".join(o.get("text", "")) for o in outs if o.get("name") == "stderr")
    assert "Traceback" not in stderr and "Error" not in stderr, stderr[-2000:]
    html = [o for o in outs if "text/html" in o.get("data", {})]
    assert any("<table" in "".join(o["data"]["text/html"]) for o in html), f"{name}: no HTML table"
    assert any("image/png" in o.get("data", {}) for o in outs), f"{name}: no figure"
    shown_twice = [o for o in outs if o["output_type"] == "execute_result" and "text/html" in o.get("data", {})]
    assert not shown_twice, f"{name}: a section's table is shown again as its cell's value"
    markdown = "".join("".join(o["data"]["text/markdown"]) for o in outs if "text/markdown" in o.get("data", {}))
    assert markdown.strip(), f"{name}: no computed reading"
    # the smoke parameters reached the kernel: the notebook reports the smoke profile
    text = "".join("".join(o.get("text", "")) for o in outs if o.get("name") == "stdout")
    assert "profile smoke" in text, text[:500]
    if name != "teacher_zero_shot":
        assert any(store.glob("*/record.json")), "no run was recorded in the tmp store"
    return markdown, text


@pytest.mark.slow
@pytest.mark.parametrize("name", ORDER)
def test_every_chapter_page_of_the_smoke_book(name, smoke_book):
    """Each chapter notebook as the smoke book executed it under papermill (the runs trained up front
    by the book driver, the notebook reading them)."""
    smoke_book.require_success()
    check_chapter_page(name, json.loads((smoke_book.executed / f"{name}.ipynb").read_text()), smoke_book.results)


# main_results runs two seeds here so that the interval and paired-effect paths of a notebook are
# exercised (the smoke profile's default is a single replicate), and trains its runs in its kernel
# (the book trains them up front).
EXTRA = {"main_results": {"seeds": [0, 1], "methods": ["cls", "cls+imcst"]}}


@pytest.mark.slow
def test_a_notebook_trains_its_runs_in_its_kernel_under_papermill(work, tmp_path):
    nb = execute("main_results", {**smoke_parameters(work), **EXTRA["main_results"]}, tmp_path)
    markdown, text = check_chapter_page("main_results", nb, work / "results")
    assert "95% CI" in markdown and "2 paired runs" in markdown, markdown[:1500]
    assert re.search(r"(\d+) runs: 0 reused from .*, \1 trained", text), text[-2000:]


#: The chapter nbmake runs: the way a notebook is handed over (values written into its parameters
#: cell, run as plain .ipynb) is the same for every chapter; each chapter's own code runs in the smoke book.
#: One that trains runs, so the check below sees the injected run store used.
NBMAKE = ("k_ablation",)


@pytest.mark.slow
def test_nbmake_runs_generated_notebooks_with_smoke_parameters(work, tmp_path):
    """A user's CI: .ipynb files generated with jupytext, smoke values written into the parameters
    cell, executed by `pytest --nbmake` in a subprocess."""
    pytest.importorskip("nbmake")
    folder = tmp_path / "nbs"
    folder.mkdir()
    params = smoke_parameters(work)
    for name in NBMAKE:
        nb = jupytext.read(NOTEBOOKS / f"{name}.py")
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        lines = []
        for line in cell.source.splitlines():
            key = line.split("=", 1)[0].strip()
            lines.append(f"{key} = {params[key]!r}" if key in params else line)
        cell.source = "\n".join(lines)
        nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
        jupytext.write(nb, folder / f"{name}.ipynb")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbmake", "--nbmake-timeout=900", "-q", "-p", "no:cacheprovider",
         str(folder)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert f"{len(NBMAKE)} passed" in proc.stdout, proc.stdout[-2000:]
    # the injected values were used: no run landed anywhere but the tmp store
    assert any((work / "results").glob("*/record.json"))


BAD = [
    ("main_results", {"profile": "nonsense"}, "parameter profile = 'nonsense': expected a string (one of"),
    ("teacher_zero_shot", {"profile": "nonsense"}, "parameter profile = 'nonsense': expected a string (one of"),
    ("main_results", {"dataset": "imagenet-21k"}, "parameter dataset = 'imagenet-21k'"),
    ("main_results", {"extra_methods": {"mine": {"cls": 1.0, "klx": 1.0}}}, "unknown loss name"),
    ("main_results", {"methods": ["cls", "cls+bogus"]}, "parameter methods = ['cls', 'cls+bogus']"),
    ("k_ablation", {"split_seeds": [0, -1]}, "parameter split_seeds = [0, -1]: expected a list of integers >= 0"),
    ("prompt_detail", {"variants": ["main", "poetic"]}, "parameter variants = ['main', 'poetic']"),
    ("language_enrichment", {"enrichments": ["aux_captions", "ofa"]}, "parameter enrichments = ['aux_captions', 'ofa']"),
    ("field_losses", {"losses": ["cls", "cls+kd"]}, "parameter losses = ['cls', 'cls+kd']"),
]


def notebook_namespace(name: str, params: dict) -> dict:
    """What a chapter notebook's globals hold after its parameters cell and papermill's injected
    cell (``params``), with the kernel's own names beside them."""
    namespace = {"In": [], "Out": {}, "_": None}
    exec(next(c for c in jupytext.read(NOTEBOOKS / f"{name}.py").cells if c.cell_type == "code").source, namespace)
    return {**namespace, **params}


@pytest.mark.parametrize("name,params,message", BAD, ids=[f"{n}-{m.split()[1]}" for n, _, m in BAD])
def test_bad_parameters_fail_before_training(name, params, message, tmp_path, monkeypatch):
    """The notebook's first cell after its parameters (``open_chapter(..., page=True)``) stops a bad
    parameter in one line, before the run store or the teacher is touched (no kernel needed)."""
    from vldlib.study import chapters

    monkeypatch.setattr(chapters.ChapterRun, "train", lambda self: pytest.fail("trained"))
    results, cache = tmp_path / "results", tmp_path / "cache"
    namespace = notebook_namespace(name, {"profile": "smoke", "results_dir": str(results), "cache_dir": str(cache),
                                          **params})
    with pytest.raises(ValueError) as info:
        chapters.open_chapter(name, namespace, page=True)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not results.exists() or not any(results.iterdir())
    assert not cache.exists() or not any(cache.rglob("*.pt"))


@pytest.mark.slow
def test_a_bad_parameter_stops_the_notebook_under_papermill(tmp_path):
    """The same check inside a kernel: papermill's injected value reaches ``open_chapter`` (one case)."""
    name, params, message = BAD[0]
    results, cache = tmp_path / "results", tmp_path / "cache"
    with pytest.raises(papermill.PapermillExecutionError) as info:
        execute(name, {"profile": "smoke", "results_dir": str(results), "cache_dir": str(cache), **params},
                tmp_path / "out")
    assert message in str(info.value)
    assert not results.exists() or not any(results.iterdir())
