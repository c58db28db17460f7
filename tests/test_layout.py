"""The layout of vldlib (issue 8): no import cycle, one atomic writer, thin notebooks, chapters
declared in the library, and the two bugs found on the way."""
from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from vldlib import book
from vldlib.runs import record_row
from vldlib.study import chapters
from vldlib.study.chapters import prompt_detail, teacher_zero_shot
from vldlib.study.reference import table_names
from vldlib.text.descriptions import description_key

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "vldlib"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> vldlib modules it imports at module level (function-level imports excluded)."""
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        deps: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in tree.body:
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_vldlib():
    graph = import_graph()
    assert "vldlib.train.trainer" in graph and "vldlib.runs" in graph["vldlib.study.grid"]
    assert find_cycle(graph) is None


def test_data_flows_one_way():
    """Lower layers never import higher ones: core < models/data/text < features < train < runs < study < book."""
    graph = import_graph()
    order = ["vldlib.core", "vldlib.models", "vldlib.features", "vldlib.train", "vldlib.runs",
             "vldlib.study", "vldlib.cli", "vldlib.book"]
    rank = lambda m: next((i for i, p in enumerate(order) if m == p or m.startswith(p + ".")), None)  # noqa: E731
    bad = [(m, d) for m, deps in graph.items() for d in deps
           if rank(m) is not None and rank(d) is not None and rank(d) > rank(m)]
    assert bad == []


def test_no_function_level_import_of_vldlib():
    """Imports of vldlib inside functions existed only to dodge cycles; none is left."""
    offenders = []
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and (inner.level or (inner.module or "").startswith("vldlib")):
                        offenders.append(f"{path.relative_to(REPO)}:{inner.lineno}")
    assert offenders == []


def test_only_io_replaces_files():
    users = [p.relative_to(REPO).as_posix() for p in [*PKG.rglob("*.py"), *(REPO / "benchmarks").glob("*.py")]
             if re.search(r"\bos\.replace\(", p.read_text(encoding="utf-8"))]
    assert users == ["vldlib/io.py"]


def _code_lines(path: Path) -> int:
    import jupytext

    nb = jupytext.read(path)
    return sum(len([l for l in c.source.splitlines() if l.strip()]) for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("name", book.BOOK_ORDER)
def test_notebooks_are_thin_and_declared(name):
    assert _code_lines(REPO / "notebooks" / f"{name}.py") <= 30
    if name not in chapters.CHAPTERS:  # a page without a grid (the recipe search's page)
        assert name == "offline_recipe"
        return
    declared = chapters.chapter(name)
    assert declared.name == name and set(declared.paper_tables) <= set(table_names())
    with contextlib.redirect_stdout(io.StringIO()):
        ch = chapters.open_chapter(name, profile="smoke", results_dir="/tmp/unused")
    rows = set(ch.variants) | set(declared.labels) | set(ch.order)  # trained variants, or rows derived from them
    for c in ch.comparisons:
        assert {c.treatment, c.baseline} <= rows, c


def test_open_chapter_takes_only_its_parameters():
    with pytest.raises(ValueError, match="unknown chapter 'nope'; chapters: continual, description_controls"):
        chapters.open_chapter("nope")
    ch = chapters.open_chapter("main_results", {"profile": "smoke", "In": [], "methods": ["cls"], "_": 1},
                               results_dir="/tmp/unused")
    assert [labels["method"] for labels, _ in ch.grid.configs] == ["cls"]
    assert "In" not in ch.params and "_" not in ch.params
    with pytest.raises(ValueError, match="unknown Table 1 method"):
        chapters.open_chapter("main_results", profile="smoke", methods=["clss"])


def test_summary_reads_the_time_column_records_have():
    """Bug: book/summary.py looked for ``time.total``; records give ``time.total_s``."""
    tree = ast.parse((REPO / "book" / "summary.py").read_text(encoding="utf-8"))
    consts = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
    row = record_row({"hash": "h", "config": {}, "final": {}, "timings": {"total_s": 3.0}})
    assert consts["TOTAL_TIME"] in row and row[consts["TOTAL_TIME"]] == 3.0


def test_description_key_names_the_dataset_not_the_layout():
    assert description_key("fashion-mnist", {}) == "fashion-mnist"
    assert description_key("official", {"root": "/data/official/Flower102"}) == "Flower102"
    assert description_key("official", {"root": "/x/y", "name": "CUB"}) == "CUB"
    with pytest.raises(ValueError, match="dataset_options"):
        description_key("official", {})


@pytest.mark.parametrize("module", [prompt_detail, teacher_zero_shot])
def test_chapters_look_up_official_descriptions_under_the_folder_name(module, monkeypatch):
    """Bug: prompt_detail looked up an official dataset's succinct/detailed/distinct sets under
    "official" instead of the dataset's folder name."""
    asked = []
    monkeypatch.setattr(module, "load_descriptions", lambda key, variant, **kw: asked.append((key, variant)) or {})
    run = module.Run.__new__(module.Run)
    run.params = {}
    run.grid = SimpleNamespace(dataset="official", base={"dataset": "official",
                                                         "dataset_options": {"root": "/data/Flower102"}})
    args = ("succinct", SimpleNamespace(descriptions={})) if module is prompt_detail else \
        (SimpleNamespace(descriptions={}), "succinct")
    run.descriptions_for(*args)
    assert asked == [("Flower102", "succinct")]


def test_no_library_module_is_over_450_lines():
    """Issue 20: modules split by job; none holds several (vldlib/**/*.py at most 450 lines)."""
    long = {str(p.relative_to(REPO)): n for p in PKG.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450}
    assert long == {}, long
