"""The Jupyter Book: build driver (vldlib.book), parameter validation, failing notebooks, offline HTML.

Fast tests check the driver's logic on in-memory notebooks; the kernel tests use small temporary
notebooks; the ``slow`` tests build the real book from the smoke profile once per session
(fixture ``smoke_book`` in ``book_fixtures.py``) and check its HTML.
"""
from __future__ import annotations

import json
import re
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import jupytext
import nbformat
import pytest

from vldlib import book
from vldlib.study.chapters import CHAPTERS

pytest_plugins = ["book_fixtures"]
REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- helpers

PARAMS_CELL = '# %% tags=["parameters"]\nprofile = "offline"\nresults_dir = "results"\n'


def percent(title: str, params: str = "", body: str = "print(profile)\n") -> str:
    """A small jupytext percent notebook: a title, a parameters cell, one code cell."""
    return (f"# %% [markdown]\n# # {title}\n\n{PARAMS_CELL}{params}\n# %%\n{body}")


def write_notebooks(folder: Path, bodies: dict[str, str] | None = None, params: str = "") -> Path:
    """Every book notebook (and summary.py) as a tiny placeholder in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    bodies = bodies or {}
    for name in (*book.BOOK_ORDER, book.SUMMARY):
        (folder / f"{name}.py").write_text(percent(f"Placeholder {name}", params, bodies.get(name, "print(profile)\n")))
    return folder


def sources(tmp_path: Path, params: str = "") -> list[book.NotebookSource]:
    folder = write_notebooks(tmp_path / "nbs", params=params)
    return book.notebook_sources(folder, folder / "summary.py")


# ----------------------------------------------------------------------------- fast: driver logic

@pytest.mark.parametrize("text, value", [
    ("3", 3), ("0.5", 0.5), ("(0, 1)", (0, 1)), ("[1, 2]", [1, 2]), ("True", True), ("None", None),
    ("'abc'", "abc"), ("fashion-mnist", "fashion-mnist"), ("a photo of {name}", "a photo of {name}"),
    ("{'cls': 1.0}", {"cls": 1.0}),
])
def test_parse_value_reads_literals_else_strings(text, value):
    assert book.parse_value(text) == value
    assert type(book.parse_value(text)) is type(value)


def test_read_parameters_literal_only():
    nb = jupytext.reads(percent("T", "epochs = 3\nseeds = (0, 1)  # a comment\nname: str = 'x'\n"), fmt="py:percent")
    assert book.read_parameters(nb, "t") == {"profile": "offline", "results_dir": "results", "epochs": 3,
                                             "seeds": (0, 1), "name": "x"}
    bad = jupytext.reads(percent("T", "import os\n"), fmt="py:percent")
    with pytest.raises(book.BookError, match=r"notebook 't'.*only `name = literal`.*import os"):
        book.read_parameters(bad, "t")
    call = jupytext.reads(percent("T", "epochs = int('3')\n"), fmt="py:percent")
    with pytest.raises(book.BookError, match=r"not a literal.*epochs = int"):
        book.read_parameters(call, "t")
    none = jupytext.reads("# %%\nx = 1\n", fmt="py:percent")
    with pytest.raises(book.BookError, match="no cell tagged 'parameters'"):
        book.read_parameters(none, "t")


def test_plan_unknown_profile_lists_profiles(tmp_path):
    with pytest.raises(book.BookError) as err:
        book.plan(sources(tmp_path), "gpu", "results")
    msg = str(err.value)
    assert "unknown profile 'gpu'" in msg
    for name in book.known_profiles():
        assert name in msg
    assert set(book.known_profiles()) >= {"offline", "paper", "smoke"}


def test_plan_unknown_parameter_names_notebooks_and_their_parameters(tmp_path):
    srcs = sources(tmp_path, params="epochs = 2\n")
    with pytest.raises(book.BookError) as err:
        book.plan(srcs, "smoke", "results", [("epoch", "3")])
    msg = str(err.value)
    assert "-p epoch" in msg and "no notebook has a parameter 'epoch'" in msg
    for src in srcs:
        assert f"{src.name}: profile, results_dir, epochs" in msg


def test_plan_type_mismatch_and_reserved_names(tmp_path):
    srcs = sources(tmp_path, params="epochs = 2\nrate = 0.5\nflag = False\nseeds = (0, 1)\nname = 'a'\n")
    with pytest.raises(book.BookError, match=r"-p epochs 'many': expected an integer >= 1 or None; "
                                             r"for example -p epochs 10"):
        book.plan(srcs, "smoke", "results", [("epochs", "many")])
    with pytest.raises(book.BookError, match=r"-p flag '1'.*expects type bool"):
        book.plan(srcs, "smoke", "results", [("flag", "1")])
    with pytest.raises(book.BookError, match="--profile instead"):
        book.plan(srcs, "smoke", "results", [("profile", "paper")])
    planned = book.plan(srcs, "smoke", "out", [("epochs", "5"), ("rate", "1"), ("seeds", "[3]"), ("name", "7")])
    for _, params in planned:
        assert params == {"profile": "smoke", "results_dir": "out", "epochs": 5, "rate": 1.0, "seeds": [3],
                          "name": "7"}


def test_plan_passes_a_parameter_only_to_notebooks_that_define_it(tmp_path):
    folder = write_notebooks(tmp_path / "nbs")
    (folder / "main_results.py").write_text(percent("Main", "epochs = 2\n"))
    planned = book.plan(book.notebook_sources(folder, folder / "summary.py"), "offline", "results",
                        [("epochs", "4")])
    given = {src.name: params for src, params in planned}
    assert given["main_results"]["epochs"] == 4
    assert all("epochs" not in p for name, p in given.items() if name != "main_results")


def test_plan_requires_profile_and_results_dir(tmp_path):
    folder = write_notebooks(tmp_path / "nbs")
    (folder / "k_ablation.py").write_text('# %% [markdown]\n# # K\n\n# %% tags=["parameters"]\nprofile = "x"\n')
    with pytest.raises(book.BookError, match=r"'k_ablation'.*must define 'results_dir'"):
        book.plan(book.notebook_sources(folder, folder / "summary.py"), "offline", "results")


def test_notebook_sources_missing_and_only(tmp_path):
    with pytest.raises(book.BookError, match="not found"):
        book.notebook_sources(tmp_path / "nowhere", tmp_path / "nowhere" / "summary.py")
    folder = write_notebooks(tmp_path / "nbs")
    with pytest.raises(book.BookError, match=r"unknown notebook\(s\) nope"):
        book.notebook_sources(folder, folder / "summary.py", only=["nope"])
    only = book.notebook_sources(folder, folder / "summary.py", only=["summary", "k_ablation"])
    assert [s.name for s in only] == ["k_ablation", "summary"]  # book order, not argument order


def test_hide_injected_tags_only_papermill_cells():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("profile = 'offline'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("# Parameters\nprofile = 'smoke'", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("print(1)"),
    ])
    assert book.hide_injected(nb) == 1
    assert nb.cells[1].metadata["tags"] == ["injected-parameters", "hide-input"]
    assert nb.cells[1].metadata["jupyter"]["source_hidden"] is True
    assert nb.cells[0].metadata["tags"] == ["parameters"] and "tags" not in nb.cells[2].metadata
    assert book.hide_injected(nb) == 1 and nb.cells[1].metadata["tags"].count("hide-input") == 1


def test_toc_lists_every_notebook_in_book_order():
    assert book.toc_notebooks() == [*book.BOOK_ORDER, book.SUMMARY]


def test_main_rejects_bad_input_before_executing(tmp_path, capsys):
    folder = write_notebooks(tmp_path / "nbs", params="epochs = 2\n")
    executed = tmp_path / "executed"
    common = ["--notebooks-dir", str(folder), "--summary", str(folder / "summary.py"),
              "--executed-dir", str(executed), "--build-dir", str(tmp_path / "build")]
    assert book.main(["--profile", "laptop", *common]) == 2
    assert "unknown profile 'laptop'; choose one of: offline, paper, smoke" in capsys.readouterr().err
    assert book.main(["--profile", "smoke", "-p", "epoks", "3", *common]) == 2
    err = capsys.readouterr().err
    assert "no notebook has a parameter 'epoks'" in err and "main_results: profile, results_dir, epochs" in err
    assert not executed.exists()


@pytest.mark.parametrize("name", [*book.BOOK_ORDER, book.SUMMARY])
def test_book_notebooks_follow_the_conventions(name):
    """Each notebook: a `# ` title first (the page title, -W), then the literal parameters cell."""
    path = REPO / ("book" if name == book.SUMMARY else "notebooks") / f"{name}.py"
    assert path.is_file(), f"{path} is missing: the book's toc needs it"
    nb = jupytext.read(path)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "first cell must be a `# Title`"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "the first code cell must be tagged parameters"
    params = book.read_parameters(nb, name)
    assert params["profile"] == "offline" and params["results_dir"] == "results"
    levels = [len(m.group(1)) for c in nb.cells if c.cell_type == "markdown"
              for m in re.finditer(r"^(#+) ", c.source, flags=re.M)]
    assert levels.count(1) == 1, "exactly one level-1 heading (the title)"
    assert all(b - a <= 1 for a, b in zip(levels, levels[1:])), f"heading levels jump: {levels}"


# ----------------------------------------------------------------------------- fast: faults (issue 19)

class _Execute:
    """Stands in for ``book.execute_notebook`` (no kernel): writes an executed notebook and records
    what ran; ``during`` is called while ``during_name`` executes (a run arriving then)."""

    def __init__(self, during_name: str | None = None, during=None, fail: BaseException | None = None) -> None:
        self.during_name, self.during, self.fail, self.executed = during_name, during, fail, []

    def __call__(self, src, params, executed_dir, **kw):
        self.executed.append(src.name)
        if src.name == self.during_name:
            if self.during is not None:
                self.during()
            if self.fail is not None:
                raise self.fail
        executed_dir.mkdir(parents=True, exist_ok=True)
        (executed_dir / f"{src.name}.ipynb").write_text("{}")
        return executed_dir / f"{src.name}.ipynb"


def _record(results: Path, name: str) -> None:
    """A finished run in the store (what another process's training leaves)."""
    (results / name).mkdir(parents=True)
    (results / name / "record.json").write_text("{}")


def test_fingerprint_is_of_the_run_store_before_the_notebook_executed(tmp_path, monkeypatch, capsys):
    """A run that arrives while a notebook executes (another process training) was not seen by it,
    nor by the notebooks before it: the next build executes them again; a kept notebook is not
    re-fingerprinted against runs that arrived after it was kept."""
    folder = write_notebooks(tmp_path / "nbs")
    executed, results = tmp_path / "executed", tmp_path / "results"
    argv = ["--profile", "smoke", "--only", "feature_errors", "main_results", "--no-build",
            "--notebooks-dir", str(folder), "--summary", str(folder / "summary.py"),
            "--executed-dir", str(executed), "--results-dir", str(results)]

    def build(fake: _Execute) -> list[str]:
        monkeypatch.setattr(book, "execute_notebook", fake)
        assert book.main(argv) == 0, capsys.readouterr().err
        return fake.executed

    # feature_errors executes before main_results (book order); a run lands while main_results runs
    assert build(_Execute("main_results", lambda: _record(results, "r1"))) == ["feature_errors", "main_results"]
    assert build(_Execute()) == ["feature_errors", "main_results"]  # neither saw r1
    assert build(_Execute()) == []  # both saw the store as it is
    # main_results' source changes, feature_errors is kept; main_results then trains a run itself
    (folder / "main_results.py").write_text(percent("Main", body="print('changed')\n"))
    assert build(_Execute("main_results", lambda: _record(results, "r2"))) == ["main_results"]
    assert "feature_errors: unchanged since its last execution" in capsys.readouterr().out
    assert build(_Execute()) == ["feature_errors", "main_results"]  # r2 is news to both
    assert build(_Execute()) == []


def test_a_notebook_kept_before_the_up_front_training_is_executed_when_it_added_runs(tmp_path, monkeypatch):
    """The kept/execute decision is made again when a notebook's turn comes: runs trained up front
    for another chapter (or by another process) since the build started execute it (the summary
    reads every run)."""
    folder = write_notebooks(tmp_path / "nbs")
    executed, results = tmp_path / "executed", tmp_path / "results"
    argv = ["--profile", "smoke", "--only", "main_results", "summary", "--no-build",
            "--notebooks-dir", str(folder), "--summary", str(folder / "summary.py"),
            "--executed-dir", str(executed), "--results-dir", str(results)]
    monkeypatch.setattr(book, "execute_notebook", _Execute())
    assert book.main(argv) == 0
    monkeypatch.setattr(book, "pretrain", lambda todo, results_dir: _record(results, "new") or 1)
    (folder / "main_results.py").write_text(percent("Main", body="print('changed')\n"))
    fake = _Execute()
    monkeypatch.setattr(book, "execute_notebook", fake)
    assert book.main(argv) == 0
    assert fake.executed == ["main_results", "summary"]


@pytest.mark.parametrize("case", ["same", "build_in_executed", "executed_in_build_output",
                                  "executed_in_notebooks", "executed_in_results", "build_in_results",
                                  "results_in_executed"])
def test_overlapping_folders_are_one_line_before_anything_runs(tmp_path, monkeypatch, capsys, case):
    monkeypatch.setattr(book, "execute_notebook", _Execute())  # no kernels, no jupyter-book, should it go on
    monkeypatch.setattr(book, "build_html", lambda *a, **k: 0)
    nbs, res, ex, bd = tmp_path / "nbs", tmp_path / "res", tmp_path / "ex", tmp_path / "bd"
    ex, bd, res = {
        "same": (ex, ex, res), "build_in_executed": (ex, ex / "b", res),
        "executed_in_build_output": (bd / "_build" / "e", bd, res), "executed_in_notebooks": (nbs / "e", bd, res),
        "executed_in_results": (res / "e", bd, res), "build_in_results": (ex, res / "b", res),
        "results_in_executed": (ex, bd, ex / "r"),
    }[case]
    write_notebooks(nbs)
    code = book.main(["--profile", "smoke", "--notebooks-dir", str(nbs), "--summary", str(nbs / "summary.py"),
                      "--executed-dir", str(ex), "--build-dir", str(bd), "--results-dir", str(res)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "overlap" in err[0] or "lies inside" in err[0], err
    assert str(ex.resolve()) in err[0] or str(bd.resolve()) in err[0], err
    assert "choose" in err[0] or "give them" in err[0], err
    assert not ex.exists() and not (bd / "_build").exists() and not res.exists()


def test_default_and_usual_folders_do_not_overlap():
    root = book.ROOT
    assert book.check_folders(root / "book" / "executed", root, root / "notebooks", root / "results") is None
    assert book.check_folders(Path("/tmp/x/executed"), Path("/tmp/x/build"), root / "notebooks",
                              Path("/tmp/x/results")) is None


def _enospc(filename: str | None = None) -> OSError:
    import errno

    return OSError(errno.ENOSPC, "No space left on device", filename)


def test_full_disk_while_papermill_writes_is_not_blamed_on_the_notebook(tmp_path, monkeypatch):
    """papermill's first save of the executed notebook hits a full disk: an OSError naming the
    executed notebook, no truncated ``.failed.ipynb`` or ``.running.ipynb`` left behind."""
    import papermill.engines

    def full(nb, path, **kw):
        Path(path).write_text('{"cells": [')  # what a full disk leaves: a truncated notebook
        raise _enospc()

    monkeypatch.setattr(papermill.engines, "write_ipynb", full)
    src = sources(tmp_path)[0]
    executed = tmp_path / "executed"
    with pytest.raises(OSError) as err:
        book.execute_notebook(src, {"profile": "smoke", "results_dir": "results"}, executed)
    assert not isinstance(err.value, book.NotebookFailed) and err.value.errno == 28
    assert err.value.filename == str(executed / f"{src.name}.ipynb")
    assert sorted(p.name for p in executed.iterdir()) == []


def test_full_disk_in_a_cell_is_not_blamed_on_the_notebook(tmp_path, monkeypatch):
    """A cell that fails writing its table for lack of space: the OSError (with the path), not a
    failed notebook, and no partial notebook kept."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    def cell_fails(nb, path, **kw):
        Path(path).write_text('{"cells": [')
        raise PapermillExecutionError(3, 4, "df.to_csv(p)", "OSError",
                                      "[Errno 28] No space left on device: '/data/t.csv'", [])

    monkeypatch.setattr(papermill, "execute_notebook", cell_fails)
    src = sources(tmp_path)[0]
    executed = tmp_path / "executed"
    with pytest.raises(OSError) as err:
        book.execute_notebook(src, {"profile": "smoke", "results_dir": "results"}, executed)
    assert err.value.errno == 28 and err.value.filename == "/data/t.csv"
    assert list(executed.iterdir()) == []


@pytest.mark.parametrize("where", ["notebook", "table", "build"])
def test_full_disk_is_one_line_naming_the_folder_free_space_and_fix(tmp_path, monkeypatch, capsys, where):
    folder = write_notebooks(tmp_path / "nbs")
    executed, build = tmp_path / "executed", tmp_path / "build"
    argv = ["--profile", "smoke", "--only", "main_results", "--notebooks-dir", str(folder),
            "--summary", str(folder / "summary.py"), "--executed-dir", str(executed),
            "--results-dir", str(tmp_path / "results"), "--build-dir", str(build)]
    if where == "notebook":  # writing the executed notebook (no file name: a write(2) failed)
        monkeypatch.setattr(book, "execute_notebook", _Execute("main_results", fail=_enospc()))
        argv.append("--no-build")
    elif where == "table":  # moving the staged tables in place
        monkeypatch.setattr(book, "execute_notebook", _Execute())
        monkeypatch.setattr(book, "publish_downloads", lambda staged, target: (_ for _ in ()).throw(
            _enospc(str(target / "t.csv"))))
        argv.append("--no-build")
    else:  # staging the book into the build folder
        _executed_placeholders(executed)
        argv = ["--no-execute", "--executed-dir", str(executed), "--build-dir", str(build)]
        monkeypatch.setattr(book, "stage_book", lambda *a, **k: (_ for _ in ()).throw(_enospc()))
    code = book.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    flag, path = ("--build-dir", build) if where == "build" else ("--executed-dir", executed)
    assert f"no space left on the device of {flag} {path.resolve()}" in err[0], err
    assert re.search(r"\(\d+(\.\d)? (B|KiB|MiB|GiB) free\)", err[0]), err
    assert f"free space there or choose another {flag}" in err[0], err
    assert "notebook" not in err[0].split(";")[0] or where != "notebook"
    assert not list(executed.glob("*.failed.ipynb"))


@pytest.mark.parametrize("argv, says", [
    (["--timeout", "0"], "--timeout 0.0: expected a number of seconds > 0"),
    (["--timeout", "nan"], "--timeout nan: expected a number of seconds > 0"),
    (["--executed-dir", "RO/ex"], "--executed-dir RO/ex: expected a writable folder (RO is read-only)"),
    (["--build-dir", "RO"], "--build-dir RO: expected a writable folder (RO is read-only)"),
    (["--build-dir", "FILE"], "--build-dir FILE is a file, not a folder"),
    (["--notebooks-dir", "FILE"], "notebook source(s) not found"),
    (["--summary", "BINARY"], "cannot read notebook 'summary' (BINARY): UnicodeDecodeError"),
])
def test_driver_inputs_are_one_line_exit_2(tmp_path, monkeypatch, capsys, argv, says):
    """Issue 19's audit of the driver's inputs: each bad one is a line naming it, exit 2, nothing written."""
    import os

    folder = write_notebooks(tmp_path / "nbs")
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "binary.py").write_bytes(b"\xff\xfe# %%\n\x80\n")
    (tmp_path / "RO").mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: Path(p) != tmp_path / "RO" and real(p, mode, **k))
    monkeypatch.setattr(book, "execute_notebook", _Execute())  # no kernels, no jupyter-book, should it go on
    monkeypatch.setattr(book, "build_html", lambda *a, **k: 0)
    names = {"FILE": tmp_path / "FILE", "RO": tmp_path / "RO", "BINARY": tmp_path / "binary.py"}
    given = [str(names[a.split("/")[0]] / "/".join(a.split("/")[1:])) if a.split("/")[0] in names else a for a in argv]
    executed = tmp_path / "executed"
    base = ["--profile", "smoke", "--notebooks-dir", str(folder), "--summary", str(folder / "summary.py"),
            "--executed-dir", str(executed), "--results-dir", str(tmp_path / "results"),
            "--build-dir", str(tmp_path / "build")]
    code = book.main([*base, *given])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    for key, path in names.items():
        says = says.replace(key, str(path))
    assert says in err[0], err
    assert not executed.exists() and not (tmp_path / "build" / "_build").exists()


def test_usage_errors_are_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        book.main(["--timeout", "soon"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1, err
    assert err[0].startswith("vldlib.book: error: argument --timeout: invalid float value: 'soon'")


def test_toc_is_generated_from_the_declared_parts_and_rewritten_when_stale(tmp_path):
    """The chapter list is written once (``vldlib.book.contents.PARTS``): the committed _toc.yml is
    what it renders, and a build rewrites a book root's stale or missing _toc.yml from it."""
    assert (REPO / "_toc.yml").read_text(encoding="utf-8") == book.render_toc(), \
        "_toc.yml differs from vldlib/book/contents.py: run the book (it rewrites _toc.yml) and commit it"
    import yaml

    toc = yaml.safe_load(book.render_toc())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert [Path(f).stem for f in files if f.startswith("book/executed/")] == [*book.toc_notebooks(), book.BUILD_INFO]
    assert [part["caption"] for part in toc["parts"]] == [part.caption for part in book.PARTS]
    assert book.write_toc(tmp_path) is True  # missing: written
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: [unclosed\n")
    assert book.write_toc(tmp_path) is True and (tmp_path / "_toc.yml").read_text() == book.render_toc()
    assert book.write_toc(tmp_path) is False  # unchanged: left alone


def test_every_chapter_is_in_the_book_once_and_listed_on_the_front_page():
    """Bug: the front page listed 6 of the 12 chapters; every chapter module has a page, in one place."""
    names = [p.name for p in book.contents.pages()]
    assert len(names) == len(set(names))
    assert set(CHAPTERS) <= set(book.BOOK_ORDER), "a chapter module has no page in vldlib/book/contents.py"
    front = book.render_front_list()
    listed = re.findall(r"\{doc\}`/book/executed/(\w+)`", front)
    assert listed == [n for n in book.toc_notebooks() if n in CHAPTERS or n == book.SUMMARY]
    assert len(listed) == len(set(CHAPTERS)) + 1
    intro = (REPO / "book" / "intro.md").read_text(encoding="utf-8")
    assert f"```{{include}} executed/{book.FRONT_LIST}" in intro and "- **Teacher zero-shot**" not in intro


def test_kernel_warnings_are_added_once_to_the_users_filters():
    assert book.pages.kernel_warnings(None) == ",".join(book.KERNEL_WARNINGS)
    assert book.pages.kernel_warnings("error::DeprecationWarning") == ",".join(["error::DeprecationWarning",
                                                                               *book.KERNEL_WARNINGS])
    twice = book.pages.kernel_warnings(book.pages.kernel_warnings("default"))
    assert twice.count("IProgress") == 1


def test_strip_warnings_takes_library_warnings_and_their_paths_off_the_page():
    """Bug: every chapter page showed tqdm's "IProgress not found" warning with the venv's path."""
    venv = f"{sys.prefix}/lib/python3.12/site-packages/tqdm/auto.py"
    warning = (f"{venv}:21: TqdmWarning: IProgress not found. Please update jupyter and ipywidgets.\n"
               "  from .autonotebook import tqdm as notebook_tqdm\n")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import tqdm.auto", outputs=[
            nbformat.v4.new_output("stream", name="stderr", text=warning),
            nbformat.v4.new_output("stream", name="stdout", text="profile smoke: 3 runs\n")]),
        nbformat.v4.new_code_cell("x", outputs=[
            nbformat.v4.new_output("stream", name="stderr", text="a real message\n" + warning + "after\n")]),
    ])
    found = book.strip_warnings(nb)
    assert len(found) == 2 and all("IProgress not found" in line for line in found)
    assert [o["text"] for o in nb.cells[0].outputs] == ["profile smoke: 3 runs\n"]
    assert [o["text"] for o in nb.cells[1].outputs] == ["a real message\nafter\n"]
    assert sys.prefix not in nbformat.writes(nb)


# ----------------------------------------------------------------------------- kernel: small notebooks

def test_failing_notebook_stops_the_build_naming_it_and_the_cell(tmp_path, run_book):
    folder = write_notebooks(tmp_path / "nbs", bodies={
        "feature_errors": "x = 1\nraise RuntimeError('deliberate failure in the test')\n"})
    executed, build = tmp_path / "executed", tmp_path / "build"
    proc = run_book("--profile", "smoke", "--notebooks-dir", str(folder), "--summary", str(folder / "summary.py"),
                    "--results-dir", str(tmp_path / "results"), "--executed-dir", str(executed),
                    "--build-dir", str(build), timeout=300)
    out = proc.stdout
    assert proc.returncode != 0, out
    assert "notebook 'feature_errors' failed in cell 2" in out, out
    assert "raise RuntimeError('deliberate failure in the test')" in out
    assert "RuntimeError: deliberate failure in the test" in out
    i, n = book.BOOK_ORDER.index("teacher_zero_shot") + 1, len(book.BOOK_ORDER) + 1  # + the summary
    assert re.search(rf"\[{i}/{n}\] teacher_zero_shot: done in \d+\.\d s", out)
    assert "main_results: executing" not in out  # stopped: the next notebooks never ran
    assert (executed / "teacher_zero_shot.ipynb").is_file()
    assert (executed / "feature_errors.failed.ipynb").is_file()
    assert not (executed / "feature_errors.ipynb").exists()
    assert not (build / "_build").exists()


def test_parameters_reach_the_kernel_and_injected_cell_is_hidden(tmp_path, run_book):
    folder = write_notebooks(tmp_path / "nbs", params="epochs = 2\nseeds = (0, 1)\nopts = {}\n", bodies={
        "main_results": "assert (profile, epochs) == ('smoke', 7), (profile, epochs)\n"
                        "assert list(seeds) == [4, 5], repr(seeds)\n"
                        "assert opts == {'a': [1, 2]}, repr(opts)\n"})
    executed = tmp_path / "executed"
    proc = run_book("--profile", "smoke", "-p", "epochs", "7", "-p", "seeds", "(4, 5)", "-p", "opts", "{'a': (1, 2)}",
                    "--only", "main_results", "--no-build",
                    "--notebooks-dir", str(folder), "--summary", str(folder / "summary.py"),
                    "--executed-dir", str(executed), timeout=300)
    assert proc.returncode == 0, proc.stdout
    nb = nbformat.read(executed / "main_results.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "hide-input" in injected[0].metadata["tags"]
    assert 'profile = "smoke"' in injected[0].source and "epochs = 7" in injected[0].source
    assert sorted(p.name for p in executed.iterdir()) == [".fingerprints.json", "main_results.ipynb"]  # no temp files


def test_a_kernel_page_carries_no_warning_nor_local_path(tmp_path):
    """Bug: every chapter page showed tqdm's "IProgress not found" warning (``tqdm.auto`` in a
    kernel without ipywidgets) with the full path of the virtual environment."""
    folder = write_notebooks(tmp_path / "nbs", bodies={"main_results": (
        "from tqdm.auto import tqdm\nimport warnings\nwarnings.warn('a library says something')\n"
        "print('shown', sum(1 for _ in tqdm(range(3), disable=True)))\n")})
    src = next(s for s in book.notebook_sources(folder, folder / "summary.py") if s.name == "main_results")
    out = book.execute_notebook(src, {"profile": "smoke", "results_dir": str(tmp_path / "r")}, tmp_path / "executed")
    text = json.dumps([o for c in nbformat.read(out, as_version=4).cells for o in c.get("outputs", [])])
    assert "shown 3" in text
    assert "IProgress" not in text and "a library says something" not in text
    assert sys.prefix not in text and str(REPO) not in text


@pytest.mark.slow
def test_unchanged_notebook_is_kept_and_any_change_reexecutes(tmp_path, run_book):
    """Nothing changed -> not executed again; a changed run store, parameter or --rerun -> executed."""
    folder = write_notebooks(tmp_path / "nbs", params="epochs = 2\n")
    executed, results = tmp_path / "executed", tmp_path / "results"
    common = ["--profile", "smoke", "--only", "main_results", "--no-build", "--notebooks-dir", str(folder),
              "--summary", str(folder / "summary.py"), "--executed-dir", str(executed), "--results-dir", str(results)]

    def run(*extra: str) -> tuple[str, int]:
        proc = run_book(*common, *extra, timeout=300)
        assert proc.returncode == 0, proc.stdout
        return proc.stdout, (executed / "main_results.ipynb").stat().st_mtime_ns

    out, first = run()
    assert "main_results: done in" in out
    out, again = run()
    assert "main_results: unchanged since its last execution" in out and again == first
    (results / "abc").mkdir(parents=True)
    (results / "abc" / "record.json").write_text("{}")  # the run store changed
    out, third = run()
    assert "main_results: done in" in out and third != again
    out, fourth = run("-p", "epochs", "3")
    assert "main_results: done in" in out and fourth != third
    out, fifth = run("-p", "epochs", "3", "--rerun")
    assert "main_results: done in" in out and fifth != fourth


def _executed_placeholders(folder: Path, extra: dict[str, str] | None = None) -> Path:
    """Executed-looking notebooks for every toc entry, written directly (no kernel)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (*book.BOOK_ORDER, book.SUMMARY):
        cells = [nbformat.v4.new_markdown_cell(f"# Page {name}\n\nSome math: $a^2 + b^2$.")]
        if extra and name in extra:
            cells.append(nbformat.v4.new_markdown_cell(extra[name]))
        nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}),
            folder / f"{name}.ipynb")
    return folder


@pytest.mark.slow
def test_build_is_strict_and_warnings_fail_it(tmp_path, run_book):
    good = _executed_placeholders(tmp_path / "good")
    proc = run_book("--no-execute", "--executed-dir", str(good), "--build-dir", str(tmp_path / "b1"), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "b1" / "_build" / "html" / "book" / "executed" / "k_ablation.html").is_file()
    bad = _executed_placeholders(tmp_path / "bad", {"k_ablation": "### a heading that skips a level"})
    proc = run_book("--no-execute", "--executed-dir", str(bad), "--build-dir", str(tmp_path / "b2"), timeout=300)
    assert proc.returncode != 0
    assert "k_ablation.ipynb" in proc.stdout and "Non-consecutive header level increase" in proc.stdout
    assert "jupyter-book build failed" in proc.stdout


def test_build_needs_every_toc_notebook(tmp_path, run_book):
    folder = _executed_placeholders(tmp_path / "executed")
    (folder / "prompt_detail.ipynb").unlink()
    proc = run_book("--no-execute", "--executed-dir", str(folder), "--build-dir", str(tmp_path / "b"), timeout=120)
    assert proc.returncode == 2
    assert "cannot build: not executed yet: prompt_detail" in proc.stdout
    assert not (tmp_path / "b").exists()


# ----------------------------------------------------------------------------- slow: the smoke book

class _Resources(HTMLParser):
    """Collect the URLs a page loads (scripts, stylesheets, images, iframes, media) and inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self._in_script = "src" not in a
            if a.get("src"):
                self.urls.append((tag, a["src"]))
        elif tag == "link" and a.get("href") and a.get("rel", "") not in ("index", "search", "next", "prev"):
            self.urls.append((tag, a["href"]))
        elif tag in ("img", "iframe", "source", "video", "audio", "embed") and a.get("src"):
            self.urls.append((tag, a["src"]))
        elif tag == "object" and a.get("data"):
            self.urls.append((tag, a["data"]))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.inline.append(data)


def _pages(html: Path) -> list[Path]:
    return sorted(html.rglob("*.html"))


@pytest.mark.slow
def test_smoke_book_builds_with_W(smoke_book):
    smoke_book.require_success()
    out = smoke_book.output
    for i, name in enumerate([*book.BOOK_ORDER, book.SUMMARY], 1):
        assert re.search(rf"\[{i}/{len(book.BOOK_ORDER) + 1}\] {name}: done in \d+\.\d s", out), \
            f"no progress line for {name}"
    assert re.search(r"built the book in \d+\.\d s", out)
    assert re.search(r"runs: 100%\|.*\| (\d+)/\1 \[", out), "no progress bar over the runs in the build output"
    # every chapter's runs were trained up front, in one pool: the notebooks only read them
    assert re.search(r"trained the chapters' missing runs in \d+\.\d s", out)
    nb = nbformat.read(smoke_book.executed / "main_results.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert re.search(r"(\d+) runs: \1 reused from .*, 0 trained", text), text[-2000:]
    for name in ("intro", "method", "offline", "paper_profile"):
        assert (smoke_book.html / "book" / f"{name}.html").is_file()
    for name in (*book.BOOK_ORDER, book.SUMMARY):
        assert (smoke_book.html / "book" / "executed" / f"{name}.html").is_file()
        nb = nbformat.read(smoke_book.executed / f"{name}.ipynb", as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, f"{name}: error outputs {errors}"
    assert (smoke_book.html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    print(f"smoke book: {smoke_book.seconds:.0f} s in total")


@pytest.mark.slow
def test_smoke_book_html_has_no_remote_resources(smoke_book):
    smoke_book.require_success()
    pages = _pages(smoke_book.html)
    assert len(pages) >= 10
    remote = re.compile(r"^(https?:)?//", re.I)
    for page in pages:
        parser = _Resources()
        parser.feed(page.read_text(encoding="utf-8"))
        bad = [(tag, url) for tag, url in parser.urls if remote.match(url.strip())]
        assert not bad, f"{page.relative_to(smoke_book.html)} loads remote resources: {bad}"
        inline = [s for s in parser.inline if re.search(r"https?://", s)]
        assert not inline, f"{page.relative_to(smoke_book.html)}: inline script names a URL: {inline[0][:200]}"
    text = (smoke_book.html / "book" / "intro.html").read_text(encoding="utf-8")
    assert "mathjax/tex-chtml.js" in text and "googletagmanager" not in text and "fonts.googleapis" not in text


@pytest.mark.slow
def test_smoke_book_injected_parameters_are_collapsed(smoke_book):
    smoke_book.require_success()
    for name in (*book.BOOK_ORDER, book.SUMMARY):
        html = (smoke_book.html / "book" / "executed" / f"{name}.html").read_text(encoding="utf-8")
        starts = [m.start() for m in re.finditer(r'<div class="cell tag_injected-parameters[^"]*"', html)]
        assert len(starts) == 1, f"{name}: expected one injected-parameters cell, found {len(starts)}"
        head = html[starts[0]:starts[0] + 400]
        assert "tag_hide-input" in head, f"{name}: injected cell not tagged hide-input"
        following = re.compile(r'<div class="cell[ "]').search(html, starts[0] + 10)
        cell = html[starts[0]:following.start() if following else len(html)]
        details = cell.find("<details")
        assert details != -1 and "hide above-input" in cell[details:details + 200], f"{name}: not collapsed"
        assert "smoke" in cell[details:], f"{name}: injected profile not inside the collapsed block"


@pytest.mark.slow
def test_smoke_book_pages_carry_no_warning_nor_local_path(smoke_book):
    """Bug: every chapter page showed tqdm's "IProgress not found" warning with the full path of the
    virtual environment. No output of an executed page (nor a generated one) names the venv or the
    repository, or shows a Python warning."""
    smoke_book.require_success()
    pages = sorted(smoke_book.executed.glob("*.ipynb"))
    assert {p.stem for p in pages} == set(book.toc_notebooks())
    bad = []
    for page in pages:
        outputs = [o for c in nbformat.read(page, as_version=4).cells for o in c.get("outputs", [])]
        text = json.dumps(outputs)
        bad += [f"{page.name}: {what}" for what, needle in (("IProgress", "IProgress"), ("venv path", sys.prefix),
                                                              ("repository path", str(REPO)))
                if needle in text]
        bad += [f"{page.name}: a warning on stderr" for o in outputs
                if o.get("name") == "stderr" and re.search(r"\w+Warning: ", o.get("text", ""))]
    for page in sorted(smoke_book.executed.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        bad += [f"{page.name}: {needle}" for needle in (sys.prefix, str(REPO)) if needle in text]
    assert bad == []


@pytest.mark.slow
def test_smoke_book_leaves_the_repository_alone(smoke_book):
    smoke_book.require_success()
    assert smoke_book.repo_before == smoke_book.repo_after, "the smoke build wrote into book/executed or _build"
    assert smoke_book.results.is_dir() and any(smoke_book.results.iterdir()), "the runs went elsewhere"
    staged = smoke_book.html.parent / "_source"
    assert (staged / "_toc.yml").is_file() and (staged / "book" / "executed" / "summary.ipynb").is_file()


# ----------------------------------------------------------------------------- fast: publication pieces (issue 12)

BIB_KEYS = ("li2023distilling", "radford2021clip", "ilharco2021openclip", "cherti2023reproducible",
            "norouzi2014conse", "tan2019efficientnet", "liu2020efficientnetlite", "wang2020minilm",
            "reimers2019sbert", "allminilm2021", "xiao2017fashion", "zhou2022coop", "zhang2022tipadapter",
            "roth2023waffle", "yang2024clipkd", "park2019rkd", "pratt2023cupl", "menon2023visual")


def test_references_bib_parses_and_holds_the_cited_works():
    from pybtex.database import parse_file

    bib = parse_file(str(REPO / "book" / "references.bib"))
    assert set(BIB_KEYS) <= set(bib.entries), sorted(set(BIB_KEYS) - set(bib.entries))
    paper = bib.entries["li2023distilling"]
    assert [str(p) for p in paper.persons["author"]][0].startswith("Li, Xuanlin")
    assert len(paper.persons["author"]) == 6 and paper.fields["eprint"] == "2307.03135"
    assert bib.entries["zhou2022coop"].type == "article" and bib.entries["radford2021clip"].fields["year"] == "2021"
    for key, entry in bib.entries.items():
        assert {"title", "year"} <= set(entry.fields), f"{key}: needs a title and a year"
        assert "author" in entry.persons, f"{key}: no author"
    # every {cite} key in the prose pages is in the bib file, and every work is cited somewhere
    cited: set[str] = set()
    for page in ("intro", "method", "offline", "paper_profile"):
        text = (REPO / "book" / f"{page}.md").read_text(encoding="utf-8")
        for group in re.findall(r"\{cite(?::[a-z]+)?\}`([^`]+)`", text):
            cited |= {k.strip() for k in group.split(",")}
    assert cited <= set(bib.entries), sorted(cited - set(bib.entries))
    assert cited >= set(BIB_KEYS), f"never cited: {sorted(set(BIB_KEYS) - cited)}"


CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
#: A work named in a chapter's prose -> the bib key a chapter that names it must cite.
NAMED_WORKS = {r"\bCoOp\b": "zhou2022coop", r"\bRKD\b": "park2019rkd", r"\bTip-Adapter\b": "zhang2022tipadapter",
               r"\bWaffleCLIP\b": "roth2023waffle", r"\bCLIP-KD\b": "yang2024clipkd", r"\bCuPL\b": "pratt2023cupl",
               r"\bConSE\b": "norouzi2014conse", r"classification by description": "menon2023visual",
               r"\bMobileCLIP\b": "vasu2024mobileclip"}


def _notebook_markdown(name: str) -> str:
    nb = jupytext.read(REPO / "notebooks" / f"{name}.py")
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def _cited(text: str) -> set[str]:
    return {k.strip() for group in CITE.findall(text) for k in group.split(",")}


def test_chapters_cite_the_works_they_name():
    """Issue 12, "cited where used": every {cite} key of a chapter notebook is in references.bib;
    each chapter cites the paper; a chapter that names CoOp, RKD, Tip-Adapter, WaffleCLIP, CLIP-KD,
    CuPL, ConSE or classification by description cites that work; and each of these is cited by a chapter."""
    from pybtex.database import parse_file

    keys = set(parse_file(str(REPO / "book" / "references.bib")).entries)
    everywhere: set[str] = set()
    for name in book.BOOK_ORDER:
        text = _notebook_markdown(name)
        cited = _cited(text)
        assert cited <= keys, f"{name}: not in references.bib: {sorted(cited - keys)}"
        if name != "offline_recipe":  # the recipe search is ours, not the paper's
            assert "li2023distilling" in cited, f"{name}: does not cite the paper"
        for pattern, key in NAMED_WORKS.items():
            if re.search(pattern, CITE.sub("", text)):
                assert key in cited, f"{name}: names {pattern!r} without {{cite}}`{key}`"
        everywhere |= cited
    must = {"zhou2022coop", "park2019rkd", "zhang2022tipadapter", "roth2023waffle", "yang2024clipkd"}
    assert must <= everywhere, f"cited by no chapter: {sorted(must - everywhere)}"


def test_config_and_toc_carry_references_build_info_and_css():
    import yaml

    config = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))
    assert config["bibtex_bibfiles"] == ["book/references.bib"]
    sphinx = config["sphinx"]["config"]
    assert "vldbook.css" in sphinx["html_css_files"] and sphinx["html_static_path"] == ["book/_static"]
    css = (REPO / "book" / "_static" / "vldbook.css").read_text(encoding="utf-8")
    assert "pre-wrap" in css and "overflow-x: auto" in css
    toc = (REPO / "_toc.yml").read_text(encoding="utf-8")
    assert "file: book/references\n" in toc and "file: book/executed/build_info\n" in toc
    assert "{bibliography}" in (REPO / "book" / "references.md").read_text(encoding="utf-8")
    assert book.BUILD_INFO not in book.toc_notebooks()  # generated page, not a notebook to execute
    deps = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert '"sphinxcontrib-bibtex' in deps


def test_hide_code_cells_folds_every_code_cell():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell("profile = 'offline'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("# Parameters\nprofile = 'smoke'", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("print(1)"),
        nbformat.v4.new_code_cell("x = 2", metadata={"tags": ["hide-input"]}),
    ])
    assert book.hide_code_cells(nb) == 4
    for cell in nb.cells[1:]:
        assert cell.metadata["tags"].count("hide-input") == 1 and cell.metadata["jupyter"]["source_hidden"]
    assert nb.cells[1].metadata["tags"] == ["parameters", "hide-input"]
    assert "tags" not in nb.cells[0].metadata
    assert book.hide_code_cells(nb) == 4 and nb.cells[3].metadata["tags"] == ["hide-input"]  # idempotent


def test_times_table_lists_chapters_and_total():
    table = book.times_table([("teacher_zero_shot", 12.34), ("summary", 1.0)])
    lines = table.splitlines()
    assert lines[0].split() == ["chapter", "seconds"]
    assert lines[1].split() == ["teacher_zero_shot", "12.3"] and lines[2].split() == ["summary", "1.0"]
    assert lines[-1].split() == ["total", "13.3"]


def test_build_info_page_is_generated_from_measurements(tmp_path, monkeypatch):
    from vldlib import build_info

    executed = tmp_path / "executed"
    executed.mkdir()
    nbformat.write(nbformat.v4.new_notebook(metadata={"vldbook": {"seconds": 12.5, "profile": "smoke",
                                                                   "finished": "2026-01-01 00:00:00 UTC"}}),
                   executed / "main_results.ipynb")
    results = tmp_path / "results"
    for h in ("aaa", "bbb"):
        (results / h).mkdir(parents=True)
        (results / h / "config.json").write_text("{}")
        (results / h / "record.json").write_text("{}")
    (results / "ccc").mkdir()
    (results / "ccc" / "config.json").write_text("{}")  # started, not finished
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "feats.pt").write_bytes(b"x" * 2048)
    monkeypatch.setenv("VLD_CACHE", str(cache))
    (executed / book.PRETRAIN).write_text('{"seconds": 30.0, "profile": "smoke", "finished": "2026-01-01 00:00:00 UTC"}')
    page = book.write_build_page(executed, str(results), ["main_results"], "smoke", started=0.0)
    assert page == executed / "build_info.md"
    text = page.read_text(encoding="utf-8")
    assert text.startswith(f"# {build_info.TITLE}\n") and text.count("\n# ") == 0
    assert re.findall(r"^(#+) ", text, flags=re.M) == ["#", "##", "##", "##", "##"]
    import os
    import platform

    assert f"| cores | {os.cpu_count()} |" in text and f"| Python | {platform.python_version()} |" in text
    from vldlib.device import cpu_bf16_native

    assert f"| bf16 in hardware | {'yes' if cpu_bf16_native() else 'no'}: the offline student trains in " \
           f"{'bf16' if cpu_bf16_native() else 'fp32'}" in text
    for name in ("torch", "jupyter-book", "vldbook", "sphinxcontrib-bibtex"):
        assert re.search(rf"^\| {re.escape(name)} \| \S", text, flags=re.M), name
    assert "| main_results | 12.5 | smoke | this build |" in text
    assert "| (training the runs of all chapters) | 30.0 | smoke |" in text
    assert "| teacher_zero_shot | not measured |" in text and "| **total** | **42.5** |" in text
    assert "| runs in the run store | 2 |" in text and "| runs trained in this build | 2 |" in text
    assert "| started but unfinished runs | 1 |" in text
    assert "2.0 KiB in 1 files" in text
    assert re.search(r"Git commit `[0-9a-f]{40}", text)
    assert str(REPO) not in build_info.render(build_info.collect(
        root=REPO, results_dir=REPO / "results", cache_dir=REPO / ".cache", times={}, order=[], executed_now=[],
        profile=None, started=None))


def test_build_page_shows_folders_without_the_machine_layout(tmp_path):
    """Bug: "How this book was built" showed the run store and cache by their full local paths."""
    from vldlib import build_info

    assert build_info.shown_path(REPO / "results", REPO) == "results"
    assert build_info.shown_path(REPO, REPO) == "."
    assert build_info.shown_path(Path.home() / ".cache" / "vldbook", REPO) == "~/.cache/vldbook"
    assert build_info.shown_path(Path.home(), REPO) == "~"
    assert build_info.shown_path(Path("/srv/runs"), REPO) == "/srv/runs"


# ----------------------------------------------------------------------------- fast: tools/ensure_data.sh

def _fake_bin(folder: Path, uid: int, sudo_ok: bool, log: Path, installs: Path | None = None) -> Path:
    """A PATH holding only fake `id`, `sudo` and `apt-get` (the script uses shell builtins otherwise)."""
    folder.mkdir(parents=True, exist_ok=True)
    make = installs.as_posix() if installs else ""
    scripts = {
        "id": f'#!/bin/sh\necho {uid}\n',
        "sudo": f'#!/bin/sh\necho "sudo $*" >> {log}\n' + ('shift; "$@"\n' if sudo_ok else "exit 1\n"),
        "apt-get": f'#!/bin/sh\necho "apt-get $*" >> {log}\n'
                   + (f'[ "$1" = install ] && /bin/mkdir -p {make}\n' if make else "") + "exit 0\n",
        "env": '#!/bin/sh\nwhile case "$1" in *=*) true;; *) false;; esac; do export "$1"; shift; done\nexec "$@"\n',
    }
    for name, body in scripts.items():
        (folder / name).write_text(body)
        (folder / name).chmod(0o755)
    return folder


def _ensure_data(tmp_path: Path, env_extra: dict[str, str], uid: int, sudo_ok: bool = False,
                 install: bool = False):
    import subprocess

    log = tmp_path / "calls.log"
    system = tmp_path / "usr-share" / "fashion-mnist"
    fake = _fake_bin(tmp_path / "bin", uid, sudo_ok, log, system if install else None)
    env = {"PATH": str(fake), "VLD_FMNIST_SYSTEM_DIR": str(system), **env_extra}
    proc = subprocess.run(["/bin/sh", str(REPO / "tools" / "ensure_data.sh")], env=env, capture_output=True,
                          text=True, timeout=30)
    calls = log.read_text().splitlines() if log.exists() else []
    return proc, calls, system


def test_ensure_data_not_root_stops_with_the_one_command(tmp_path):
    proc, calls, _ = _ensure_data(tmp_path, {}, uid=1000, sudo_ok=False)
    assert proc.returncode == 1
    assert "Fashion-MNIST not found" in proc.stderr
    assert "sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist" in proc.stderr
    assert not any(c.startswith("apt-get") for c in calls)  # nothing installed


def test_ensure_data_root_installs_with_apt_and_goes_on(tmp_path):
    proc, calls, system = _ensure_data(tmp_path, {}, uid=0, install=True)
    assert proc.returncode == 0, proc.stderr
    assert calls == ["apt-get update", "apt-get install -y dataset-fashion-mnist"]
    assert system.is_dir() and "installed" in proc.stderr


def test_ensure_data_passwordless_sudo_installs(tmp_path):
    proc, calls, _ = _ensure_data(tmp_path, {}, uid=1000, sudo_ok=True, install=True)
    assert proc.returncode == 0, proc.stderr
    assert [c for c in calls if c.startswith("apt-get")] == ["apt-get update", "apt-get install -y dataset-fashion-mnist"]
    assert any(c.startswith("sudo -n") for c in calls)


def test_ensure_data_found_or_vld_data_needs_nothing(tmp_path):
    (tmp_path / "usr-share" / "fashion-mnist").mkdir(parents=True)
    proc, calls, _ = _ensure_data(tmp_path, {}, uid=1000)
    assert proc.returncode == 0 and calls == []
    other = tmp_path / "other"
    other.mkdir()
    (other / "own").mkdir()
    proc, calls, _ = _ensure_data(other, {"VLD_DATA": str(other / "own")}, uid=1000)
    assert proc.returncode == 0 and calls == []
    proc, _, _ = _ensure_data(other, {"VLD_DATA": str(other / "missing")}, uid=1000)
    assert proc.returncode == 1 and "is not a folder" in proc.stderr


def _ensure_browser(tmp_path: Path, uid: int, sudo_ok: bool = False):
    import subprocess

    log = tmp_path / "calls.log"
    fake = _fake_bin(tmp_path / "bin", uid, sudo_ok, log)
    env = {"PATH": str(fake), "VLD_CHROMIUM": str(tmp_path / "no-chromium")}
    proc = subprocess.run(["/bin/sh", str(REPO / "tools" / "ensure_browser.sh")], env=env, capture_output=True,
                          text=True, timeout=30)
    return proc, (log.read_text().splitlines() if log.exists() else [])


def test_ensure_browser_installs_as_root_and_only_advises_otherwise(tmp_path):
    proc, calls = _ensure_browser(tmp_path / "root", uid=0)
    assert proc.returncode == 0, proc.stderr
    assert calls == ["apt-get update", "apt-get install -y chromium chromium-driver"]
    proc, calls = _ensure_browser(tmp_path / "user", uid=1000, sudo_ok=False)
    assert proc.returncode == 0 and "browser tests will skip" in proc.stderr
    assert "sudo apt-get update && sudo apt-get install -y chromium chromium-driver" in proc.stderr
    assert not any(c.startswith("apt-get") for c in calls)


def test_makefile_book_and_test_run_the_data_step_and_lab_opens_notebooks():
    make = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^data:\n\tsh tools/ensure_data.sh$", make, flags=re.M)
    for target in ("book", "lab"):  # the data step first: a machine without it stops before pip
        assert re.search(rf"^{target}: data setup$", make, flags=re.M), target
    assert re.search(r"^test: data browser setup$", make, flags=re.M)
    assert re.search(r"^browser:\n\tsh tools/ensure_browser.sh$", make, flags=re.M)
    assert "jupyter lab" in make and "/lab/tree/notebooks" in make


@pytest.mark.slow
def test_smoke_book_folds_every_code_cell_and_renders_references_and_build_info(smoke_book):
    smoke_book.require_success()
    assert re.search(r"^chapter\s+seconds$", smoke_book.output, flags=re.M), "no closing table of times"
    for name in (*book.BOOK_ORDER, book.SUMMARY):
        html = (smoke_book.html / "book" / "executed" / f"{name}.html").read_text(encoding="utf-8")
        cells = re.findall(r'<div class="cell( [^"]*)?"', html)
        assert cells, f"{name}: no code cells"
        unfolded = [c for c in cells if "tag_hide-input" not in (c or "")]
        assert not unfolded, f"{name}: {len(unfolded)} code cell(s) not folded"
        nb = nbformat.read(smoke_book.executed / f"{name}.ipynb", as_version=4)
        assert nb.metadata["vldbook"]["seconds"] >= 0 and nb.metadata["vldbook"]["profile"] == "smoke"
    refs = (smoke_book.html / "book" / "references.html").read_text(encoding="utf-8").lower()  # plain style: sentence case
    for title in ("Distilling Large Vision-Language Model", "Learning Transferable Visual Models",
                  "Convex Combination of Semantic Embeddings", "Fashion-MNIST", "Relational Knowledge Distillation"):
        assert title.lower() in refs, title
    intro = (smoke_book.html / "book" / "intro.html").read_text(encoding="utf-8")
    assert "references.html#id" in intro or 'href="references.html' in intro, "intro cites nothing"
    for name in ("field_losses", "fewshot_retrieval", "language_enrichment", "description_controls"):
        page = (smoke_book.html / "book" / "executed" / f"{name}.html").read_text(encoding="utf-8")
        assert 'href="../references.html#id' in page, f"{name}: its citations do not link to the references page"
    info = (smoke_book.html / "book" / "executed" / "build_info.html").read_text(encoding="utf-8")
    assert "How this book was built" in info and "teacher_zero_shot" in info and "this build" in info
