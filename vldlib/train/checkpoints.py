"""A run folder's files and the trainer's checkpoints: every outer epoch's state (student,
optimiser, schedule, histories, every random state) written atomically with its sha256 sidecar, read
back to resume exactly; an unreadable checkpoint restarts the run; a full disk is one line."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from vldlib.diskspace import disk_full, is_disk_full, tensor_bytes
from vldlib.io import load_torch_checked, save_torch_checked
import vldlib.train.distributed as dist
from vldlib.train.state import rng_state, set_rng_state

__all__ = ["CHECKPOINT", "STUDENT", "STUDENT_FEWSHOT", "WEIGHTS", "RECORD_FILE", "RunCheckpoints"]

CHECKPOINT = "checkpoint.pt"
STUDENT = "student.pt"
STUDENT_FEWSHOT = "student_fewshot.pt"
WEIGHTS = (STUDENT, STUDENT_FEWSHOT)
RECORD_FILE = "record.json"  # a run's record, next to its weights (vldlib.runs.RECORD names it so too)


class RunCheckpoints:
    """Checkpoints of a run (a part of ``vldlib.train.trainer._Run``): save after each outer epoch,
    load and restore to resume, the epoch-end callback."""

    run_dir: Path | None
    hash: str
    device: torch.device

    def _save(self, stage: str, epoch: int) -> None:
        if self.run_dir is None:
            return
        rngs = dist.all_gather_object(rng_state(self.gens))  # every rank's, for an exact resume
        if not self.writer:
            return
        state = {
            "hash": self.hash, "stage": stage, "epoch": epoch,
            "student": self.student.state_dict(), "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(), "history": self.history,
            "fewshot_history": self.fs_history, "analysis": self.analysis, "before_fewshot": self.before_fs,
            "rng": rngs[0], "timings": self.timings,
        }
        if self.prompt is not None:
            state["prompt"] = self.prompt.state_dict()
        if len(rngs) > 1:
            state["rng_ranks"] = rngs
        self._write(lambda: save_torch_checked(state, self.run_dir / CHECKPOINT),  # with its sha256 sidecar
                    f"the checkpoint of {stage} epoch {epoch}", tensor_bytes(state))

    def _write(self, write: Callable[[], Any], what: str, needed: int | None = None) -> None:
        """Run one atomic write into the run folder; a full disk is a one-line ``DiskFullError``
        (the file in place, e.g. the last checkpoint, stays: the run resumes from it)."""
        try:
            write()
        except (OSError, RuntimeError) as err:
            if not is_disk_full(err):
                raise
            raise disk_full(self.run_dir, what, f"free space there and run again: run {self.hash} resumes "
                            "from its last checkpoint", needed) from None

    def _load_checkpoint(self) -> dict[str, Any] | None:
        if self.run_dir is None or not (self.run_dir / CHECKPOINT).exists():
            return None
        path = self.run_dir / CHECKPOINT
        try:
            state = load_torch_checked(path, map_location=self.device, weights_only=False)
            if not isinstance(state, dict) or not {"stage", "epoch", "student"} <= state.keys():
                raise ValueError("not a trainer checkpoint")
        except Exception as err:  # noqa: BLE001 - truncated / corrupt file: any unpickling error
            warnings.warn(f"checkpoint {path} is unreadable ({type(err).__name__}: {str(err)[:120]}); "
                          "the run restarts from scratch (the file is overwritten at the next epoch)",
                          RuntimeWarning, stacklevel=2)
            return None
        if state.get("hash") != self.hash:
            raise ValueError(f"{self.run_dir / CHECKPOINT} belongs to another config (hash "
                             f"{state.get('hash')}, this run {self.hash}); use a fresh run_dir or delete it")
        return state

    def _restore(self, state: Mapping[str, Any]) -> None:
        self.student.load_state_dict(state["student"])
        if self.prompt is not None:
            self.prompt.load_state_dict(state["prompt"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.history = list(state["history"])
        self.fs_history = list(state["fewshot_history"])
        self.analysis = state["analysis"]
        self.before_fs = state.get("before_fewshot")
        ranks = state.get("rng_ranks") or [state["rng"]]
        if len(ranks) != dist.world_size():
            raise ValueError(f"{self.run_dir / CHECKPOINT} was written by {len(ranks)} process(es), "
                             f"this run has {dist.world_size()}; delete it to restart the run")
        set_rng_state(ranks[dist.rank()], self.gens)
        for k, v in state["timings"].items():
            if k not in ("data_s", "teacher_features_s"):  # this session's setup times stay
                self.timings[k] = v

    def _epoch_done(self, stage: str, epoch: int) -> None:
        self._save(stage, epoch)
        if self.on_epoch_end is not None:
            self.on_epoch_end({"stage": stage, "epoch": epoch,
                               "history": self.history if stage == "main" else self.fs_history})
