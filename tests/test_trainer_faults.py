"""Faults of the trainer (``vldlib.train.trainer``): a damaged checkpoint restarts the run with a
message naming it; the caller's thread setting never changes the numbers; few-shot shots beyond
the official lists fail before any teacher feature is computed."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fault_fixtures import _flip_tensor_byte, smoke  # noqa: E402


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not_a_checkpoint"])
def test_truncated_checkpoint_restarts_with_a_message(tmp_path, damage):
    from types import SimpleNamespace

    import torch

    from vldlib.io import save_torch_atomic
    from vldlib.train.trainer import CHECKPOINT, _Run

    path = tmp_path / CHECKPOINT
    save_torch_atomic({"hash": "h", "stage": "main", "epoch": 1, "student": {"w": torch.ones(100)}}, path)
    run = SimpleNamespace(run_dir=tmp_path, device=torch.device("cpu"), hash="h")
    assert _Run._load_checkpoint(run)["epoch"] == 1  # intact: resumed
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * len(data))
    else:
        save_torch_atomic([1, 2, 3], path)
    with pytest.warns(RuntimeWarning, match="restarts from scratch") as caught:
        assert _Run._load_checkpoint(run) is None
    assert str(path) in str(caught[0].message)


def test_checkpoint_bit_flip_is_found_and_the_run_restarts(tmp_path):
    from types import SimpleNamespace

    import torch

    from vldlib.io import save_torch_checked
    from vldlib.train.trainer import CHECKPOINT, _Run

    path = tmp_path / CHECKPOINT
    state = {"hash": "h", "stage": "main", "epoch": 1, "student": {"w": torch.linspace(0, 1, 20000)}}
    save_torch_checked(state, path)
    assert (tmp_path / f"{CHECKPOINT}.sha256").is_file()
    run = SimpleNamespace(run_dir=tmp_path, device=torch.device("cpu"), hash="h")
    assert _Run._load_checkpoint(run)["epoch"] == 1
    _flip_tensor_byte(path)
    flipped = torch.load(path, weights_only=False)  # torch itself does not notice
    assert not torch.equal(flipped["student"]["w"], state["student"]["w"])
    with pytest.warns(RuntimeWarning, match=r"fails its content check.*restarts from scratch") as caught:
        assert _Run._load_checkpoint(run) is None
    assert str(path) in str(caught[0].message)


@pytest.mark.slow
def test_same_config_same_numbers_whatever_the_callers_threads(smoke_cache):
    """The trainer applies ``threads`` itself, so the caller's torch setting (a 1-thread pool
    worker, a 2-thread notebook, a Ray task) never changes the numbers; another ``threads`` does."""
    import torch

    from vldlib.train import train

    cfg = smoke(fewshot=None, epochs=2, last_n=1, threads=2)
    before = torch.get_num_threads()
    finals = []
    try:
        for caller in (1, 2):
            torch.set_num_threads(caller)
            rec = train(cfg, cache_dir=smoke_cache, progress=False)
            assert rec["torch_threads"] == 2 and torch.get_num_threads() == caller
            finals.append([(h["loss"], h["acc_id"], h["acc_ood_zeroshot"]) for h in rec["history"]])
        other = train({**cfg, "threads": 1}, cache_dir=smoke_cache, progress=False)
    finally:
        torch.set_num_threads(before)
    assert finals[0] == finals[1]
    assert [h["loss"] for h in other["history"]] != [f[0] for f in finals[0]]


def test_fewshot_shots_beyond_official_lists_fail_before_training(tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    import vldlib.train.trainer as trainer_mod

    sys.path.insert(0, str(Path(__file__).parent))
    from data_fixtures import write_tiny_official_root

    root = write_tiny_official_root(tmp_path / "data", n_seen=2, n_unseen=2, per_class=4, size=16)

    def no_features(*a, **k):
        raise AssertionError("teacher features were asked for: the check came too late")

    monkeypatch.setattr(trainer_mod, "teacher_image_features", no_features)
    cfg = {**smoke(), "dataset": "official", "dataset_options": {"root": str(root), "load_size": 16,
                                                                 "crop_size": 14},
           "fewshot": {"shots": 4}}
    with pytest.raises(ValueError, match=r"fewshot.shots=4 needs more than 4 X_ood images.*too few"):
        trainer_mod.train(cfg, cache_dir=tmp_path / "cache", progress=False)
