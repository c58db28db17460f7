"""Faults caught by config validation (``vldlib.train.config``): the thread count is part of a
run's identity; few-shot shots beyond the data fail before anything trains."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vldlib.runs import config_hash
from vldlib.train.config import TrainConfig

sys.path.insert(0, str(Path(__file__).parent))
from fault_fixtures import smoke  # noqa: E402


def test_thread_count_is_part_of_a_runs_identity():
    cfg = smoke()
    assert TrainConfig.from_dict(cfg).threads == 1
    assert config_hash({**cfg, "threads": 1}) == config_hash(cfg)  # the default: older hashes stand
    assert config_hash({**cfg, "threads": 2}) != config_hash(cfg)
    legacy = {k: v for k, v in cfg.items() if k != "threads"}
    assert config_hash({**legacy, "num_threads": 2}) == config_hash({**cfg, "threads": 2})  # the old key
    assert config_hash({**legacy, "num_threads": None}) == config_hash(cfg)
    with pytest.raises(ValueError, match=r"threads must be an integer >= 1.*got 0"):
        TrainConfig.from_dict({**cfg, "threads": 0}).validate()


def test_fewshot_shots_beyond_the_data_fail_at_validation():
    with pytest.raises(ValueError, match=r"fewshot.shots=24 needs more than 24 images.*holds 24 per class"):
        TrainConfig.from_dict(smoke(**{"fewshot": {"shots": 24}})).validate()
    from vldlib.study.grid import make_grid

    with pytest.raises(ValueError, match=r"fewshot.shots=30"):
        make_grid("smoke", overrides={"fewshot.shots": 30})
    TrainConfig.from_dict(smoke(**{"fewshot": {"shots": 23}})).validate()
