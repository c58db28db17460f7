"""Memos of values derived from a finished run (vldlib.study.derived): computed once, read back
exactly, recomputed when the run, the parameters, the version or the memo itself changes."""
from __future__ import annotations

import math

import vldlib.runs
from fault_fixtures import Trainer, smoke
from vldlib.runs import RunStore
from vldlib.study.derived import DERIVED, memoised


class Counting:
    def __init__(self, values: dict) -> None:
        self.values, self.calls = values, 0

    def __call__(self) -> dict:
        self.calls += 1
        return dict(self.values)


def test_a_finished_runs_values_are_computed_once_and_read_back_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(vldlib.runs, "train_validated", Trainer(acc=40.0))
    store, cfg = RunStore(tmp_path / "res"), smoke(seed=3)
    compute = Counting({"r2": 0.1234567890123, "missing": math.nan})
    first = memoised(store, cfg, "geometry", 1, compute)  # not trained yet: computed, no memo
    assert compute.calls == 1 and not (store.run_dir(cfg) / DERIVED).exists()
    store.run(cfg, progress=False)
    a = memoised(store, cfg, "geometry", 1, compute)
    b = memoised(store, cfg, "geometry", 1, compute)
    assert compute.calls == 2, "the second read of a finished run comes from its memo"
    assert a["r2"] == b["r2"] == first["r2"] and math.isnan(b["missing"])
    memoised(store, cfg, "geometry", 2, compute)  # a new version of the analysis
    memoised(store, cfg, "geometry", 2, compute, params={"alpha": 1.0})  # other parameters
    assert compute.calls == 4
    memoised(store, cfg, "geometry", 2, compute, params={"alpha": 1.0})
    assert compute.calls == 4


def test_a_damaged_memo_or_a_retrained_run_is_computed_again(tmp_path, monkeypatch):
    monkeypatch.setattr(vldlib.runs, "train_validated", Trainer(acc=40.0))
    store, cfg = RunStore(tmp_path / "res"), smoke(seed=3)
    store.run(cfg, progress=False)
    compute = Counting({"r2": 0.5})
    memoised(store, cfg, "geometry", 1, compute)
    (memo,) = (store.run_dir(cfg) / DERIVED).glob("geometry-*.json")
    memo.write_text(memo.read_text().replace("0.5", "0.9"))  # edited: fails its sidecar
    assert memoised(store, cfg, "geometry", 1, compute) == {"r2": 0.5} and compute.calls == 2
    monkeypatch.setattr(vldlib.runs, "train_validated", Trainer(acc=41.0))
    store.run(cfg, force=True, progress=False)  # another record: its memos are not reused
    assert memoised(store, cfg, "geometry", 1, compute) == {"r2": 0.5} and compute.calls == 3
