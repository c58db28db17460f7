"""Fault injection (issue 10, "nothing silent, nothing lost"): each failure a user can meet is a
clear error naming the file and the fix, or survived correctly (verified, discarded, recomputed,
said so). Everything happens in temp dirs; the trainer behind the run store is a fake where the
case is about the store."""
from __future__ import annotations

import json

import pytest

import vldlib.runs
from vldlib.runs import RECORD, RunStore, config_hash
from vldlib.train.profiles import profile_config
from vldlib.train.config import TrainConfig


def _fake_record(cfg: TrainConfig, acc: float) -> dict:
    return {"config": cfg.to_dict(), "final": {"acc_id": acc, "acc_ood_zeroshot": acc / 2},
            "timings": {"total_s": 1.0}, "device": "cpu", "teacher_forward_passes": 0}


class Trainer:
    """A fake ``train_validated``: writes weights and a checkpoint into ``run_dir`` and returns a
    record with ``acc_id = self.acc``; ``fail`` (an exception) is raised after the weights are
    written, as an interrupt in the middle of a run would."""

    def __init__(self, acc: float = 50.0, fail: BaseException | None = None) -> None:
        self.acc, self.fail, self.run_dirs = acc, fail, []

    def __call__(self, config, run_hash=None, *, run_dir=None, cache_dir=None, progress=True):
        cfg = TrainConfig.from_dict(config)
        self.run_dirs.append(run_dir)
        (run_dir / "checkpoint.pt").write_bytes(b"ckpt %r" % self.acc)
        (run_dir / "student.pt").write_bytes(b"weights %r" % self.acc)
        if self.fail is not None:
            raise self.fail
        return _fake_record(cfg, self.acc)


def smoke(**kw) -> dict:
    return profile_config("smoke", **kw)


# ---------------------------------------------------------------------- 1. --force keeps the result
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


# ---------------------------------------------------------------------- 2. records are verified
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
