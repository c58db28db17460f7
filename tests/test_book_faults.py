"""Faults of the book driver (``python -m vldlib.book``): bad parameters and folders are one line,
exit 2, before anything executes; a failed or interrupted build keeps finished notebooks, their
fingerprints and the old tables; an interrupted table swap is put back."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize("argv, says", [
    (["-p", "epochs", "abc"], "-p epochs 'abc': expected an integer >= 1 or None; for example -p epochs 10"),
    (["-p", "methods", "cls"], "-p methods 'cls': expected a list of strings"),
    (["-p", "overrides", "[1,2]"], "-p overrides [1, 2]: expected a dict; for example -p overrides"),
    (["-p", "seeds", "['a']"], "-p seeds ['a']: expected a list of integers >= 0 or None"),
    (["-p", "seeds", "[0, 0, 0, 1, 1, 1]"], "-p seeds [0, 0, 0, 1, 1, 1]: expected a list of integers >= 0 or "
                                            'None, each once (0, 1 repeated: each is one experimental unit'),
    (["-p", "split_seeds", "[2, 2]"], "-p split_seeds [2, 2]: expected a list of integers >= 0 or None, each once"),
    (["-p", "methods", "['cls', 'nope']"], "(each of 'cls'"),
    (["-p", "dataset_root", "/no/such/folder"], "-p dataset_root '/no/such/folder': expected an existing folder"),
    (["-p", "overrides", "{'nope': 1}"], "give no valid config: unknown config key 'nope'"),
    (["-p", "overrides", "{'fewshot.shots': 99}"], "fewshot.shots=99 needs more than 99 images"),
    (["-p", "epoch", "3"], "-p epoch: no notebook has a parameter 'epoch'"),
    (["--results-dir", "FILE"], "--results-dir FILE: expected a folder path (FILE is a file)"),
])
def test_book_rejects_every_bad_parameter_before_executing(tmp_path, capsys, argv, says):
    from vldlib import book

    (tmp_path / "FILE").write_text("x")
    argv = [str(tmp_path / "FILE") if a == "FILE" else a for a in argv]
    executed = tmp_path / "executed"
    code = book.main(["--profile", "smoke", "--no-build", "--executed-dir", str(executed),
                      "--results-dir", str(tmp_path / "res"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert says.replace("FILE", str(tmp_path / "FILE")) in err, err
    assert not executed.exists()  # nothing executed


def test_book_default_cache_that_is_a_file_is_one_line(tmp_path, capsys, monkeypatch):
    from vldlib import book

    (tmp_path / "cache").write_text("x")
    monkeypatch.setenv("VLD_CACHE", str(tmp_path / "cache"))
    code = book.main(["--profile", "smoke", "--no-build", "--executed-dir", str(tmp_path / "ex"),
                      "--results-dir", str(tmp_path / "res")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "$VLD_CACHE" in err and "is a file" in err, err
    assert not (tmp_path / "ex").exists()


def _tiny_book(folder):
    from vldlib import book

    folder.mkdir(parents=True, exist_ok=True)
    for name in (*book.BOOK_ORDER, book.SUMMARY):
        (folder / f"{name}.py").write_text('# %% tags=["parameters"]\nprofile = "offline"\n'
                                           'results_dir = "results"\n\n# %%\nprint(profile)\n')
    return ["--notebooks-dir", str(folder), "--summary", str(folder / "summary.py")]


def test_book_failed_pretrain_run_is_one_line_exit_2(tmp_path, capsys):
    """A run of the up-front pool that fails (here: an official root without its files) is one
    line naming the run and the fix, exit 2, no traceback, no notebook executed."""
    from vldlib import book

    (tmp_path / "empty").mkdir()
    overrides = repr({"dataset": "official", "dataset_options": {"root": str(tmp_path / "empty")}})
    code = book.main(["--profile", "smoke", "--only", "main_results", "-p", "overrides", overrides, "--no-build",
                      "--executed-dir", str(tmp_path / "ex"), "--results-dir", str(tmp_path / "res")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("vldlib.book")]
    assert code == 2 and len(err) == 1, err
    assert "run(s) failed before any notebook executed, the first main_results" in err[0]
    assert "has no label2text.txt" in err[0] and "run the book again" in err[0]
    assert not (tmp_path / "ex" / "main_results.ipynb").exists()


def test_book_config_error_and_grid_error_from_pretrain_are_one_line(tmp_path, capsys, monkeypatch):
    from vldlib import book
    from vldlib.study.executors import GridRunError, RunFailure

    argv = ["--profile", "smoke", "--only", "main_results", "--no-build", "--executed-dir", str(tmp_path / "ex"),
            "--results-dir", str(tmp_path / "res")]

    def bad_config(*a, **k):
        raise ValueError("fewshot.shots=30 needs more than 30 images\nof each unseen class")

    monkeypatch.setattr(book, "open_chapter", bad_config)
    assert book.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fewshot.shots=30" in err[0] and "fix the setting" in err[0], err

    def failing_grid(*a, **k):
        raise GridRunError([RunFailure("main_results cls 0", "abc123", "ValueError: bad\nsecond line")], 3)

    monkeypatch.undo()
    monkeypatch.setattr(book, "run_grid", failing_grid)
    assert book.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "main_results cls 0 (run abc123): ValueError: bad; second line" in err[0], err


@pytest.mark.parametrize("where", ["executed_is_a_file", "executed_under_a_file", "results_under_a_file"])
def test_book_folder_errors_are_one_line_exit_2(tmp_path, capsys, where):
    from vldlib import book

    (tmp_path / "file").write_text("x")
    executed, results = tmp_path / "ex", tmp_path / "res"
    if where == "executed_is_a_file":
        executed = tmp_path / "file"
    elif where == "executed_under_a_file":
        executed = tmp_path / "file" / "sub"
    else:
        results = tmp_path / "file" / "sub"
    code = book.main(["--profile", "smoke", "--only", "main_results", "--no-build", *_tiny_book(tmp_path / "nbs"),
                      "--executed-dir", str(executed), "--results-dir", str(results)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(tmp_path / "file") in err[0], err
    assert "folder" in err[0]


class _FakeExecute:
    """Stands in for ``book.execute_notebook``: writes the notebook's CSV table (where the driver
    points ``$VLD_DOWNLOADS``) and its executed notebook; raises ``fail`` for ``fail_on``."""

    def __init__(self, tag: str, fail_on: str | None = None, fail: BaseException | None = None) -> None:
        self.tag, self.fail_on, self.fail, self.executed = tag, fail_on, fail, []

    def __call__(self, src, params, executed_dir, **kw):
        import os
        from pathlib import Path

        self.executed.append(src.name)
        table = Path(os.environ["VLD_DOWNLOADS"]) / src.name / "table.csv"
        table.parent.mkdir(parents=True, exist_ok=True)
        table.write_text(f"{self.tag}\n")
        if src.name == self.fail_on:
            raise self.fail
        executed_dir.mkdir(parents=True, exist_ok=True)
        (executed_dir / f"{src.name}.ipynb").write_text(self.tag)
        return executed_dir / f"{src.name}.ipynb"


@pytest.mark.parametrize("fault", [KeyboardInterrupt(), "failed"])
def test_book_interrupt_keeps_old_tables_and_finished_notebooks(tmp_path, capsys, monkeypatch, fault):
    from vldlib import book

    executed = tmp_path / "ex"
    downloads = executed / book.EXTRA / book.DOWNLOADS
    argv = ["--profile", "smoke", "--only", "main_results", "feature_errors", "--no-build",
            *_tiny_book(tmp_path / "nbs"), "--executed-dir", str(executed), "--results-dir", str(tmp_path / "res")]
    monkeypatch.setattr(book, "execute_notebook", _FakeExecute("old"))
    assert book.main(argv) == 0
    assert (downloads / "feature_errors" / "table.csv").read_text() == "old\n"
    fail = KeyboardInterrupt() if isinstance(fault, KeyboardInterrupt) else book.BookError("cell 2 failed")
    fake = _FakeExecute("new", fail_on="main_results", fail=fail)  # after feature_errors (book order)
    monkeypatch.setattr(book, "execute_notebook", fake)
    assert book.main([*argv, "--rerun"]) == (130 if isinstance(fault, KeyboardInterrupt) else 2)
    assert fake.executed == ["feature_errors", "main_results"]
    # the finished notebook's new table is in place; the failed one's old table is kept, not deleted
    assert (downloads / "feature_errors" / "table.csv").read_text() == "new\n"
    assert (downloads / "main_results" / "table.csv").read_text() == "old\n"
    assert sorted(p.name for p in downloads.iterdir()) == ["feature_errors", "main_results"]
    assert not (executed / book.STAGED_DOWNLOADS).exists()


def test_book_fingerprints_are_written_after_each_notebook(tmp_path, capsys, monkeypatch):
    """Notebooks finished before an interrupt are kept by the next build, not executed again."""
    import json

    from vldlib import book

    executed = tmp_path / "ex"
    argv = ["--profile", "smoke", "--only", "main_results", "feature_errors", "--no-build",
            *_tiny_book(tmp_path / "nbs"), "--executed-dir", str(executed), "--results-dir", str(tmp_path / "res")]
    monkeypatch.setattr(book, "execute_notebook", _FakeExecute("a", fail_on="main_results", fail=KeyboardInterrupt()))
    assert book.main(argv) == 130
    assert list(json.loads((executed / book.FINGERPRINTS).read_text())) == ["feature_errors"]
    fake = _FakeExecute("b")
    monkeypatch.setattr(book, "execute_notebook", fake)
    assert book.main(argv) == 0
    assert fake.executed == ["main_results"]
    assert "feature_errors: unchanged since its last execution" in capsys.readouterr().out


def test_tables_of_an_interrupted_download_swap_are_put_back(tmp_path, monkeypatch):
    """publish_downloads renames a chapter's tables to .<name>.old, then moves the new ones in: an
    interrupt between the two leaves no tables; the next build puts the old ones back."""
    from vldlib import book

    downloads = tmp_path / "downloads"
    (downloads / "main_results").mkdir(parents=True)
    (downloads / "main_results" / "table.csv").write_text("old\n")
    staged = tmp_path / "staged" / "main_results"
    staged.mkdir(parents=True)
    (staged / "table.csv").write_text("new\n")
    real = book.replace_file

    def interrupted(src, dst):
        if Path(src) == staged:
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(book, "replace_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        book.publish_downloads(staged, downloads / "main_results")
    monkeypatch.undo()
    assert not (downloads / "main_results").exists() and (downloads / ".main_results.old").exists()
    assert book.restore_downloads(downloads) == ["main_results"]
    assert (downloads / "main_results" / "table.csv").read_text() == "old\n"
    assert sorted(p.name for p in downloads.iterdir()) == ["main_results"]
    book.publish_downloads(staged, downloads / "main_results")  # a later swap completes
    assert (downloads / "main_results" / "table.csv").read_text() == "new\n"
