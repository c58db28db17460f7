"""Shared pieces of the fault tests (``test_*_faults.py``): a fake trainer behind the run store,
the smoke profile's config, and a bit flip inside a saved tensor file.

Import with ``from fault_fixtures import ...`` (tests/ is put on ``sys.path`` by the importing test)."""
from __future__ import annotations

from vldlib.train.config import TrainConfig
from vldlib.train.profiles import profile_config


def _fake_record(cfg: TrainConfig, acc: float) -> dict:
    return {"config": cfg.to_dict(), "final": {"acc_id": acc, "acc_ood_zeroshot": acc / 2},
            "timings": {"total_s": 1.0}, "device": "cpu", "teacher_forward_passes": 0,
            "torch_threads": cfg.threads}


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


class _RunDirTrainer(Trainer):
    """:class:`Trainer` whose record names its ``run_dir``, as the real trainer's does."""

    def __call__(self, config, run_hash=None, *, run_dir=None, cache_dir=None, progress=True):
        return {**super().__call__(config, run_hash, run_dir=run_dir), "run_dir": str(run_dir)}


def smoke(**kw) -> dict:
    return profile_config("smoke", **kw)


def _flip_tensor_byte(path) -> None:
    """Flip one bit inside the largest run of tensor bytes (what torch.load accepts silently)."""
    data = bytearray(path.read_bytes())
    data[int(len(data) * 0.45)] ^= 0x10
    path.write_bytes(bytes(data))
