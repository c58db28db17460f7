"""Faults of ``run_grid`` (``vldlib.study.grid`` and its local executor): the pool is sized by the
runs' threads; an interrupt keeps the finished runs and the rerun trains only the rest."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

import vldlib.runs
from vldlib.runs import RunStore
from vldlib.train.config import TrainConfig

sys.path.insert(0, str(Path(__file__).parent))
from fault_fixtures import _fake_record  # noqa: E402


def test_run_grid_sizes_its_pool_by_threads(tmp_path, monkeypatch):
    """Default workers = cores // threads; the runs are trained with the config's threads."""
    import vldlib.study.executors as grid_mod  # the local executor owns the pool
    from vldlib.study.grid import make_grid, run_grid

    seen = {}

    class Pool:
        def __init__(self, n, **kw):
            seen["workers"] = n

        def __enter__(self):
            raise RuntimeError("stop here")

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(grid_mod, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(grid_mod, "warm_teacher_features", lambda *a, **k: None)
    monkeypatch.setattr(grid_mod.os, "cpu_count", lambda: 8)
    g = make_grid("smoke", seeds=[0, 1, 2, 3], overrides={"threads": 2})
    g.expand({"cls": {"weights": {"cls": 1.0}}})
    with pytest.raises(RuntimeError, match="stop here"):
        run_grid(RunStore(tmp_path / "res"), g, log=False)
    assert seen["workers"] == 4


def test_interrupt_in_a_grid_keeps_the_finished_runs(tmp_path, monkeypatch):
    """Ctrl-C while the second run of a grid trains: the first run's record stays and is reused;
    the rerun trains only the interrupted one."""
    import vldlib.study.executors as grid_mod  # the local executor owns the pool
    from vldlib.study.grid import make_grid, run_grid

    monkeypatch.setattr(grid_mod, "warm_teacher_features", lambda *a, **k: None)
    calls = []

    def trainer(config, run_hash=None, *, run_dir=None, cache_dir=None, progress=True):
        calls.append(TrainConfig.from_dict(config).seed)
        if len(calls) == 2:
            (run_dir / "checkpoint.pt").write_bytes(b"half")
            raise KeyboardInterrupt
        return _fake_record(TrainConfig.from_dict(config), 50.0 + len(calls))

    monkeypatch.setattr(vldlib.runs, "train_validated", trainer)
    store = RunStore(tmp_path / "res")
    g = make_grid("smoke", seeds=[0, 1], overrides={"device": "cpu"})
    g.expand({"cls": {"weights": {"cls": 1.0}}})
    with pytest.raises(KeyboardInterrupt):
        run_grid(store, g, workers=1, log=False)
    kept = store.get(g.configs[0][1])
    assert kept is not None and store.get(g.configs[1][1]) is None
    frame = run_grid(store, g, workers=1, log=False)
    assert calls == [0, 1, 1] and len(frame) == 2
    assert store.get(g.configs[0][1]) == kept
