"""The run store touches only what it made, verifies every record it serves, and leaves no temp
file behind; a grid's replicates are distinct.

The trainer is replaced by a fake (as in tests/test_runs.py)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import vldlib.runs
import vldlib.io
from vldlib.io import save_torch_checked, write_json_atomic, write_text_atomic
from vldlib.runs import RECORD, RunStore, config_hash
from vldlib.study.grid import Grid, make_grid
from vldlib.study.parameters import ParameterError, check_parameters, check_value

sys.path.insert(0, str(Path(__file__).parent))
from test_runs import FakeTrainer, smoke  # noqa: E402


@pytest.fixture
def fake(monkeypatch) -> FakeTrainer:
    trainer = FakeTrainer()
    monkeypatch.setattr(vldlib.runs, "train_validated", trainer)
    return trainer


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every entry under ``folder`` (links not followed): a file's bytes, a link's target."""
    out: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            out[key] = f"-> {os.readlink(path)}"
        elif path.is_file():
            out[key] = path.read_bytes()
        else:
            out[key] = "dir"
    return out


# ---------------------------------------------------------------------- 1. only its own side folders
def test_listing_a_folder_that_is_not_a_run_store_touches_nothing(tmp_path, fake):
    """A user's ``.photos.old/`` beside ``photos/`` and ``.thesis.old`` without ``thesis`` are not
    interrupted run swaps (the names are no run hashes); nor is a hash-named folder that holds no
    record or config of that hash. Listing leaves each as it is and creates no lock file."""
    root = tmp_path / "home"
    for name in ("photos", ".photos.old", ".thesis.old", ".0123456789abcdef.old", ".0123456789abcdef.new"):
        (root / name).mkdir(parents=True)
        (root / name / "keep.txt").write_text(f"mine: {name}")
    (root / ".0123456789abcdef.new" / RECORD).write_text(json.dumps({"hash": "0123456789abcdef", "final": {}}))
    (root / ".notes.old").write_text("a file")
    (root / ".cafebabecafebabe.old").write_text("a file with a run hash's name")
    (root / ".0123456789abcdef.old" / "config.json").write_text(json.dumps({"hash": "fedcba9876543210"}))
    before = snapshot(root)
    store = RunStore(root)
    assert store.records() == [] and store.to_frame().empty
    assert store.get(smoke()) is None
    assert snapshot(root) == before


def test_an_interrupted_swap_of_the_store_is_still_repaired(tmp_path, fake):
    store = RunStore(tmp_path / "res")
    cfg = smoke()
    rec = store.run(cfg, progress=False)
    h = config_hash(cfg)
    (tmp_path / "res" / h).rename(tmp_path / "res" / f".{h}.old")  # stopped between the swap's renames
    assert RunStore(tmp_path / "res").records() == [rec]
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == [f".{h}.lock", h]


@pytest.mark.parametrize("side", ["old", "new"])
def test_a_foreign_side_folder_in_the_way_of_force_is_one_line_and_kept(tmp_path, fake, side):
    store = RunStore(tmp_path / "res")
    cfg = smoke()
    store.run(cfg, progress=False)
    h = config_hash(cfg)
    foreign = tmp_path / "res" / f".{h}.{side}"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("not a run")
    with pytest.raises(FileExistsError, match=rf"{foreign}.* is in the way of run {h}.*move it out") as caught:
        store.run(cfg, force=True, progress=False)
    assert "\n" not in str(caught.value)
    assert (foreign / "thesis.tex").read_text() == "not a run"
    assert store.get(cfg)["hash"] == h  # the finished run is still served


# ---------------------------------------------------------------------- 2. no temp file left behind
@pytest.mark.parametrize("write", ["json", "text", "torch_checked"])
def test_ctrl_c_while_the_temp_file_is_created_leaves_no_temp_file(tmp_path, monkeypatch, write):
    """A KeyboardInterrupt that lands just after the temp file exists, before the writer knows its
    name (where ``mkstemp`` returns), still removes it."""
    real_open = os.open

    def interrupted(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        if str(path).endswith(".tmp"):
            os.close(fd)
            raise KeyboardInterrupt
        return fd

    target = tmp_path / "checkpoint.pt"
    monkeypatch.setattr(os, "open", interrupted)
    with pytest.raises(KeyboardInterrupt):
        if write == "json":
            write_json_atomic(target, {"a": 1})
        elif write == "text":
            write_text_atomic(target, "x")
        else:
            save_torch_checked({"epoch": 1}, target)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_mid_write_leaves_no_temp_file(tmp_path):
    def write(fh):
        fh.write(b"half")
        raise KeyboardInterrupt

    from vldlib.io import atomic_write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "record.json", write)
    assert list(tmp_path.iterdir()) == []


def test_run_store_clears_stale_temp_files_of_its_own_run_only(tmp_path, monkeypatch):
    """Temp files a killed process left in a run's folder are removed when the run is next taken up
    (under its lock); other files, and temp files outside the store's run folders, are kept."""
    class Killed(FakeTrainer):
        def __call__(self, config, run_hash=None, *, run_dir=None, **kw):
            (run_dir / "checkpoint.pt").write_bytes(b"epoch 1")
            (run_dir / ".checkpoint.pt.sha256.k2x_9abc.tmp").write_text("half")  # as SIGKILL leaves it
            raise KeyboardInterrupt

    store = RunStore(tmp_path / "res")
    cfg = smoke()
    monkeypatch.setattr(vldlib.runs, "train_validated", Killed())
    with pytest.raises(KeyboardInterrupt):
        store.run(cfg, progress=False)
    run_dir = store.run_dir(cfg)
    (run_dir / "notes.tmp").write_text("the user's")
    (run_dir / ".hidden.tmp").write_text("the user's")  # not the temp-file pattern
    (tmp_path / "res" / ".x.json.abcdefgh.tmp").write_text("not in a run folder")
    temps = [p.name for p in run_dir.iterdir() if vldlib.io.TEMP_FILE.fullmatch(p.name)]
    assert temps == [".checkpoint.pt.sha256.k2x_9abc.tmp"]
    seen = {}

    class Resumed(FakeTrainer):
        def __call__(self, config, run_hash=None, *, run_dir=None, **kw):
            seen["temps"] = sorted(p.name for p in run_dir.iterdir() if p.name.endswith(".tmp"))
            return super().__call__(config, run_hash, run_dir=run_dir, **kw)

    monkeypatch.setattr(vldlib.runs, "train_validated", Resumed())
    store.run(cfg, progress=False)
    assert seen["temps"] == [".hidden.tmp", "notes.tmp"]
    assert (tmp_path / "res" / ".x.json.abcdefgh.tmp").exists()


# ---------------------------------------------------------------------- 3. records verified on read
def test_hand_edited_record_is_said_and_retrained(tmp_path, monkeypatch, fake):
    store = RunStore(tmp_path / "res")
    cfg = smoke()
    rec = store.run(cfg, progress=False)
    path = store.run_dir(cfg) / RECORD
    assert path.with_name(f"{RECORD}.sha256").is_file()
    edited = {**rec, "final": {**rec["final"], "acc_id": 99.9}}  # X_id changed by hand
    path.write_text(json.dumps(edited))
    with pytest.warns(RuntimeWarning, match=r"skipping run record .*record\.json: it does not match the sha256"):
        assert store.get(cfg) is None
    assert store.to_frame().empty
    again = store.run(cfg, progress=False)
    assert len(fake.calls) == 2 and again["final"]["acc_id"] == rec["final"]["acc_id"]
    assert store.get(cfg) == again


def test_record_without_a_sidecar_is_read_as_it_is(tmp_path, fake):
    """A record written before records had sidecars is served as it is (nothing to check it against)."""
    store = RunStore(tmp_path / "res")
    cfg = smoke()
    rec = store.run(cfg, progress=False)
    path = store.run_dir(cfg) / RECORD
    path.with_name(f"{RECORD}.sha256").unlink()
    path.write_text(json.dumps({**rec, "final": {**rec["final"], "acc_id": 12.5}}))
    assert store.get(cfg)["final"]["acc_id"] == 12.5 and len(fake.calls) == 1


# ---------------------------------------------------------------------- 5. a run folder that is a link
def test_force_on_a_linked_run_folder_never_deletes_the_target(tmp_path, fake):
    store = RunStore(tmp_path / "res")
    cfg = smoke()
    store.run(cfg, progress=False)
    run_dir = store.run_dir(cfg)
    elsewhere = tmp_path / "other_disk" / run_dir.name
    elsewhere.parent.mkdir()
    run_dir.rename(elsewhere)
    run_dir.symlink_to(elsewhere, target_is_directory=True)
    kept = snapshot(elsewhere)
    assert store.get(cfg)["hash"] == run_dir.name  # read through the link
    with pytest.warns(RuntimeWarning, match=rf"run folder {run_dir} is a link .*target is left as it is"):
        store.run(cfg, force=True, progress=False)
    store.run(cfg, force=True, progress=False)  # the second --force failed: rmtree on a link
    assert snapshot(elsewhere) == kept
    assert not run_dir.is_symlink() and store.get(cfg)["hash"] == run_dir.name
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == [f".{run_dir.name}.lock", run_dir.name]


def test_a_leftover_old_link_is_unlinked_not_followed(tmp_path, fake):
    """A ``.<hash>.old`` link (a swap of a linked run folder, stopped before its end) is removed
    without touching its target."""
    store = RunStore(tmp_path / "res")
    cfg = smoke()
    store.run(cfg, progress=False)
    h = config_hash(cfg)
    target = tmp_path / "other_disk" / h
    target.parent.mkdir()
    store.run_dir(cfg).rename(target)
    store.run(cfg, progress=False)
    (tmp_path / "res" / f".{h}.old").symlink_to(target, target_is_directory=True)
    kept = snapshot(target)
    store.run(cfg, force=True, progress=False)
    assert snapshot(target) == kept and not os.path.lexists(tmp_path / "res" / f".{h}.old")


def test_a_run_folder_linked_to_nowhere_is_one_line(tmp_path, fake):
    store = RunStore(tmp_path / "res")
    cfg = smoke()
    run_dir = store.run_dir(cfg)
    run_dir.parent.mkdir(parents=True)
    run_dir.symlink_to(tmp_path / "gone", target_is_directory=True)
    with pytest.raises(FileNotFoundError, match=rf"run folder {run_dir} is a link to .*gone, which does not "
                                                r"exist; restore its target or remove the link"):
        store.run(cfg, progress=False)


# ---------------------------------------------------------------------- 4. replicates are distinct
@pytest.mark.parametrize("kw, says", [
    ({"seeds": [0, 0, 0, 1, 1, 1]}, r"seeds=\[0, 0, 0, 1, 1, 1\] repeats 0, 1: .*list each once, e\.g\. seeds=\[0, 1\]"),
    ({"split_seeds": [3, 5, 3]}, r"split_seeds=\[3, 5, 3\] repeats 3: each class split .*split_seeds=\[3, 5\]"),
])
def test_duplicate_replicates_are_one_line(kw, says):
    with pytest.raises(ValueError, match=says) as caught:
        make_grid("smoke", **kw)
    assert "\n" not in str(caught.value)


def test_grid_and_its_expansion_refuse_duplicates():
    grid = make_grid("smoke")
    with pytest.raises(ValueError, match=r"split_seeds=\[1, 1\] repeats 1"):
        grid.expand({"a": {}}, split_seeds=[1, 1])
    with pytest.raises(ValueError, match=r"seeds=\[2, 2\] repeats 2"):
        Grid("smoke", grid.base, [2, 2], [0])
    assert len(grid.expand({"a": {}, "b": {"weights": {"cls": 1.0}}})) == 2


def test_duplicate_replicates_in_notebook_parameters_are_one_line():
    with pytest.raises(ParameterError, match=r'-p seeds \[0, 0, 1\]: expected a list of integers >= 0 or None, each once.*'
                                             r'0 repeated.*for example -p seeds "\[0, 1\]"'):
        check_value("seeds", [0, 0, 1], cli=True)
    with pytest.raises(ParameterError, match=r"split_seeds = \[4, 4\].*4 repeated"):
        check_parameters({"profile": "smoke", "split_seeds": [4, 4]})
    assert check_value("seeds", [0, 1, 2]) == [0, 1, 2]
