"""Faults of the run store (``vldlib.runs``): ``--force`` keeps the old result until the new one is
in place and its swap is atomic; records are verified (hash, config, thread count, weights digests)
and a rejected one is retrained from scratch; a reader during another process's swap finds the run.
The trainer behind the store is a fake where the case is about the store; two tests train the
smoke profile for real."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import vldlib.runs
from vldlib.runs import RECORD, RunStore, config_hash

sys.path.insert(0, str(Path(__file__).parent))
from fault_fixtures import Trainer, _flip_tensor_byte, _RunDirTrainer, smoke  # noqa: E402


@pytest.mark.parametrize("fault", [KeyboardInterrupt(), RuntimeError("boom")])
def test_force_interrupted_keeps_old_result(tmp_path, monkeypatch, fault):
    store = RunStore(tmp_path / "res")
    cfg = smoke()
    monkeypatch.setattr(vldlib.runs, "train_validated", Trainer(acc=61.0))
    store.run(cfg)
    run_dir = store.run_dir(cfg)
    old_weights = (run_dir / "student.pt").read_bytes()
    monkeypatch.setattr(vldlib.runs, "train_validated", Trainer(acc=99.0, fail=fault))
    with pytest.raises(type(fault)):
        store.run(cfg, force=True)
    # the old record and weights are intact and served
    assert store.get(cfg)["final"]["acc_id"] == 61.0
    assert (run_dir / "student.pt").read_bytes() == old_weights
    assert store.run(cfg)["final"]["acc_id"] == 61.0
    assert len(store.to_frame()) == 1  # the half-done forced run is not a record


def test_force_trains_in_a_side_folder_then_swaps(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "res")
    cfg = smoke()
    monkeypatch.setattr(vldlib.runs, "train_validated", Trainer(acc=61.0))
    store.run(cfg)
    run_dir = store.run_dir(cfg)
    (run_dir / "stale.pt").write_bytes(b"old only")
    # an earlier forced run that was interrupted leaves a side folder: it is started afresh
    side = tmp_path / "res" / f".{config_hash(cfg)}.new"
    side.mkdir()
    (side / "config.json").write_text(json.dumps({"hash": config_hash(cfg), "config": cfg}))  # as the store writes it
    (side / "checkpoint.pt").write_bytes(b"half")
    seen = {}

    class Checking(Trainer):
        def __call__(self, config, run_hash=None, *, run_dir=None, cache_dir=None, progress=True):
            seen["old_record_during_training"] = store.get(cfg)["final"]["acc_id"]
            seen["side_was_fresh"] = not (run_dir / "checkpoint.pt").exists()
            return super().__call__(config, run_hash, run_dir=run_dir, cache_dir=cache_dir)

    trainer = Checking(acc=77.0)
    monkeypatch.setattr(vldlib.runs, "train_validated", trainer)
    rec = store.run(cfg, force=True)
    assert trainer.run_dirs == [side]
    assert seen == {"old_record_during_training": 61.0, "side_was_fresh": True}
    assert rec["final"]["acc_id"] == 77.0 and store.get(cfg)["final"]["acc_id"] == 77.0
    assert (run_dir / "student.pt").read_bytes() == b"weights 77.0"
    assert not (run_dir / "stale.pt").exists() and not side.exists()
    assert json.loads((run_dir / "config.json").read_text())["hash"] == config_hash(cfg)


def test_record_of_another_config_is_not_served(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "res")
    a, b = smoke(seed=0), smoke(seed=1)
    monkeypatch.setattr(vldlib.runs, "train_validated", Trainer(acc=61.0))
    store.run(a)
    # copy a's record into b's folder (e.g. a folder renamed or copied by hand)
    src = store.run_dir(a) / RECORD
    dst = store.run_dir(b) / RECORD
    dst.parent.mkdir(parents=True)
    dst.write_bytes(src.read_bytes())
    with pytest.warns(RuntimeWarning, match="hash"):
        assert store.get(b) is None
    # same hash field, but the config inside was edited: also rejected
    rec = json.loads(src.read_text())
    rec["hash"] = config_hash(b)
    dst.write_text(json.dumps(rec))
    with pytest.warns(RuntimeWarning, match="config hashes to"):
        assert store.get(b) is None
    trainer = Trainer(acc=70.0)
    monkeypatch.setattr(vldlib.runs, "train_validated", trainer)
    assert store.run(b)["final"]["acc_id"] == 70.0  # retrained, not served a's numbers
    assert len(trainer.run_dirs) == 1


def test_malformed_record_is_skipped_by_to_frame_and_retrained(tmp_path, monkeypatch, recwarn):
    store = RunStore(tmp_path / "res")
    a, b = smoke(seed=0), smoke(seed=1)
    monkeypatch.setattr(vldlib.runs, "train_validated", Trainer(acc=61.0))
    store.run(a)
    store.run(b)
    bad = store.run_dir(b) / RECORD
    for content in ('{"final": ', '["not", "a", "record"]', '{"hash": "x", "final": 3}', "\xff\xfe"):
        bad.write_text(content, encoding="latin-1")
        frame = store.to_frame()  # does not fail for the whole store
        assert frame["hash"].tolist() == [config_hash(a)]
    messages = [str(w.message) for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert messages and all(str(bad) in m for m in messages)
    trainer = Trainer(acc=70.0)
    monkeypatch.setattr(vldlib.runs, "train_validated", trainer)
    assert store.run(b)["final"]["acc_id"] == 70.0 and len(trainer.run_dirs) == 1


def test_unusable_record_is_reported_once(tmp_path, monkeypatch):
    import warnings

    store = RunStore(tmp_path / "res")
    cfg = smoke(seed=5)
    bad = store.run_dir(cfg) / RECORD
    bad.parent.mkdir(parents=True)
    bad.write_text("{oops")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert store.get(cfg) is None
    assert len([w for w in caught if str(bad) in str(w.message)]) == 1


def test_record_trained_under_another_thread_count_is_not_served(tmp_path, monkeypatch, recwarn):
    """A record written before ``threads`` existed (same hash, trained with 2 threads) is not
    reused for a config that asks for 1: it is said on stderr and retrained."""
    store = RunStore(tmp_path / "res")
    cfg = smoke()
    monkeypatch.setattr(vldlib.runs, "train_validated", Trainer(acc=61.0))
    store.run(cfg)
    path = store.run_dir(cfg) / RECORD
    rec = json.loads(path.read_text())
    path.write_text(json.dumps({**rec, "torch_threads": 2}))
    path.with_name(f"{RECORD}.sha256").unlink()  # written before records had a sha256 sidecar, too
    assert store.get(cfg) is None
    assert any("trained with 2 torch threads" in str(w.message) for w in recwarn.list)
    assert store.to_frame().empty
    monkeypatch.setattr(vldlib.runs, "train_validated", Trainer(acc=70.0))
    assert store.run(cfg)["final"]["acc_id"] == 70.0


def test_rejected_record_is_retrained_from_scratch_not_resumed(tmp_path, smoke_cache):
    """A present record the store rejects (here: trained under another thread count) is retrained
    in a fresh folder: the finished run's last checkpoint is not resumed (which would write the
    old numbers back after a fraction of a second of training)."""
    store = RunStore(tmp_path / "res", cache_dir=smoke_cache)
    cfg = smoke()
    first = store.run(cfg, progress=False)
    run_dir = store.run_dir(cfg)
    assert first["resumed_from"] is None and (run_dir / "checkpoint.pt").exists()
    path = run_dir / RECORD
    path.write_text(json.dumps({**first, "torch_threads": 2}))  # as trained before `threads` existed
    path.with_name(f"{RECORD}.sha256").unlink()  # (and before records had a sha256 sidecar)
    with pytest.warns(RuntimeWarning, match=r"not resuming .*checkpoint\.pt"):
        again = store.run(cfg, progress=False)
    assert again["resumed_from"] is None
    assert again["torch_threads"] == 1 and again["run_dir"] == str(run_dir)
    assert [h["epoch"] for h in again["history"]] == [h["epoch"] for h in first["history"]]
    assert again["final"] == first["final"]  # trained again from scratch: same config, same numbers
    assert store.get(cfg)["created_utc"] == again["created_utc"]
    assert not list((tmp_path / "res").glob(".*.new")) and not list((tmp_path / "res").glob(".*.old"))


@pytest.mark.parametrize("step", ["rename_old_away", "rename_new_in", "delete_old"])
def test_force_swap_interrupted_at_any_step_serves_a_consistent_run(tmp_path, monkeypatch, step):
    import shutil
    from types import SimpleNamespace

    store = RunStore(tmp_path / "res")
    cfg = smoke()
    monkeypatch.setattr(vldlib.runs, "train_validated", _RunDirTrainer(acc=61.0))
    store.run(cfg)
    run_dir, h = store.run_dir(cfg), config_hash(cfg)
    monkeypatch.setattr(vldlib.runs, "train_validated", _RunDirTrainer(acc=77.0))
    real_replace = vldlib.runs.replace_file
    calls = []

    def replace(src, dst):
        calls.append(src)
        if (step, len(calls)) in (("rename_old_away", 1), ("rename_new_in", 2)):
            raise KeyboardInterrupt
        real_replace(src, dst)

    def rmtree(path, *a, **k):
        if str(path).endswith(".old"):
            raise KeyboardInterrupt
        shutil.rmtree(path, *a, **k)

    monkeypatch.setattr(vldlib.runs, "replace_file", replace)
    if step == "delete_old":
        monkeypatch.setattr(vldlib.runs, "shutil", SimpleNamespace(rmtree=rmtree))
    with pytest.raises(KeyboardInterrupt):
        store.run(cfg, force=True)
    monkeypatch.setattr(vldlib.runs, "replace_file", real_replace)
    monkeypatch.setattr(vldlib.runs, "shutil", shutil)
    expected = 61.0 if step == "rename_old_away" else 77.0
    listed = RunStore(tmp_path / "res").records()  # the next process may list the store first
    assert [r["final"]["acc_id"] for r in listed] == [expected] and not (tmp_path / "res" / f".{h}.old").exists()
    rec = RunStore(tmp_path / "res").get(cfg)  # a fresh store, as the next process
    acc = rec["final"]["acc_id"]
    assert acc == expected
    assert (run_dir / "student.pt").read_bytes() == b"weights %r" % acc  # weights match the record
    assert rec["run_dir"] == str(run_dir)  # never the side folder
    assert not (tmp_path / "res" / f".{h}.old").exists()
    assert store.run(cfg)["final"]["acc_id"] == acc and len(store.to_frame()) == 1
    store.run(cfg, force=True)  # and a later --force completes normally
    assert store.get(cfg)["final"]["acc_id"] == 77.0
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == [f".{h}.lock", h]


def test_damaged_student_weights_are_found_and_retrained(tmp_path, smoke_cache):
    """The record holds the sha256 of the weights it points to; a flipped byte in student.pt is
    a clear error for a direct reader and a retrain for a reader through the store."""
    from vldlib.train.trainer import retrieval_accuracy

    store = RunStore(tmp_path / "res", cache_dir=smoke_cache)
    cfg = smoke()
    first = store.run(cfg, progress=False)
    run_dir = store.run_dir(cfg)
    assert set(first["weights_sha256"]) == {"student.pt", "student_fewshot.pt"}
    assert config_hash(first["config"]) == first["hash"]  # the digests are no part of the identity
    assert store.verified_run_dir(cfg) == run_dir  # intact: nothing retrained
    assert store.get(cfg)["created_utc"] == first["created_utc"]
    _flip_tensor_byte(run_dir / "student.pt")
    with pytest.raises(ValueError, match=r"student\.pt does not match the sha256 .*retrain the run"):
        retrieval_accuracy(cfg, run_dir, cache_dir=smoke_cache)
    with pytest.warns(RuntimeWarning, match=r"student\.pt does not match the sha256 .*retraining"):
        assert store.verified_run_dir(cfg, progress=False) == run_dir
    again = store.get(cfg)
    assert again["final"] == first["final"] and again["weights_sha256"] == first["weights_sha256"]
    # a record written before the digests is accepted as it is
    path = run_dir / RECORD
    path.write_text(json.dumps({k: v for k, v in again.items() if k != "weights_sha256"}))
    path.with_name(f"{RECORD}.sha256").unlink()  # nor a sha256 sidecar of the record
    _flip_tensor_byte(run_dir / "student.pt")
    assert store.verified_run_dir(cfg) == run_dir and "weights_sha256" not in store.get(cfg)


def test_a_reader_during_another_processs_swap_still_finds_the_run(tmp_path, monkeypatch):
    """Between the swap's two renames the run folder is absent; get() and records() of another
    store then finish the swap (under the run's lock) instead of missing the run."""
    store = RunStore(tmp_path / "res")
    cfg = smoke()
    monkeypatch.setattr(vldlib.runs, "train_validated", _RunDirTrainer(acc=61.0))
    store.run(cfg)
    run_dir, h = store.run_dir(cfg), config_hash(cfg)
    new, old = run_dir.parent / f".{h}.new", run_dir.parent / f".{h}.old"
    reader = RunStore(tmp_path / "res")
    real_read = vldlib.runs._read_record
    swaps = []

    def mid_swap(path, **kw):  # the other process's first rename lands just before this read
        if len(swaps) < 1:
            import shutil
            shutil.copytree(run_dir, new)
            run_dir.rename(old)
            swaps.append(path)
        return real_read(path, **kw)

    monkeypatch.setattr(vldlib.runs, "_read_record", mid_swap)
    assert reader.get(cfg)["final"]["acc_id"] == 61.0
    assert run_dir.exists() and not old.exists() and not new.exists()  # the swap was finished
    swaps.clear()
    assert [r["hash"] for r in reader.records()] == [h]  # the same while listing
    assert run_dir.exists() and not old.exists()
    monkeypatch.undo()
    assert len(reader.to_frame()) == 1
