"""A finished run's result record (``record.json``, schema :data:`SCHEMA`): the reported
means over the last ``last_n`` epochs, histories, the teacher's own accuracy on the same texts,
provenance, timings and the sha256 of the weight files."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

import torch

from vldlib.io import sha256_file
import vldlib.train.distributed as dist
from vldlib.train.checkpoints import WEIGHTS
from vldlib.train.loop import accuracy, class_accuracies, mean_accuracy
from vldlib.train.state import git_commit, library_versions

__all__ = ["SCHEMA", "RunRecord"]

SCHEMA = "vldbook.run/1"


class RunRecord:
    """The record of a run (a part of ``vldlib.train.trainer._Run``)."""

    def _record(self, fewshot_info: dict[str, Any] | None, resumed: dict[str, Any] | None) -> dict[str, Any]:
        cfg = self.cfg
        final = {"acc_id": _last_mean(self.history, "acc_id", cfg.last_n),
                 "acc_ood_zeroshot": _last_mean(self.history, "acc_ood_zeroshot", cfg.last_n),
                 "loss": self.history[-1]["loss"] if self.history else None}
        if fewshot_info is not None:
            n = min(cfg.last_n, self.resolved["fewshot"]["epochs"])
            for key, *_ in self.fs_oods:
                final[key] = _last_mean(self.fs_history, key, n)
            final["acc_id_5shot"] = _last_mean(self.fs_history, "acc_id", n)
            final.update(self.before_fs or {})
        ds = self.ds
        # the teacher's own zero-shot accuracy on the same images with the same class texts (the
        # ceiling a student's transfer is measured against), and per unseen class
        teacher_ood = class_accuracies(self.tfeat["ood"], self.text_unseen, self.evals["ood"].labels)
        final["teacher_acc_id"] = accuracy(self.tfeat["id"], self.text_seen, self.evals["id"].labels)
        final["teacher_acc_ood_zeroshot"] = mean_accuracy(teacher_ood)
        per_class = {"classes": list(ds.unseen_classes), "teacher_acc_ood_zeroshot": teacher_ood,
                     "acc_ood_zeroshot": _last_mean_lists(self.history, "per_class_acc_ood_zeroshot", cfg.last_n)}
        if fewshot_info is not None:
            per_class["acc_ood_5shot"] = _last_mean_lists(self.fs_history, "per_class_acc_ood_5shot", n)
        return {
            "schema": SCHEMA,
            "hash": self.hash,
            "config": cfg.to_dict(),
            "inputs": self.inputs,
            "resolved": self.resolved,
            "final": final,
            "history": self.history,
            "fewshot": fewshot_info,
            "analysis": self.analysis,
            "per_class": per_class,
            "dataset": {"name": ds.name, **ds.summary(), "seen_classes": list(ds.seen_classes),
                        "unseen_classes": list(ds.unseen_classes)},
            "teacher": {"identifier": self.teacher.identifier, "embed_dim": self.teacher.embed_dim,
                        "loaded": self.teacher.loaded},
            "student": {"name": cfg.student, "parameters": sum(p.numel() for p in self.student.parameters())},
            "captions": getattr(self, "caption_info", None),
            "prompt_learning": None if self.prompt is None else {
                **cfg.prompt_learning.identity(),
                "example": self.prompts["seen"][0][0], "ctx_norm": float(self.prompt.ctx.detach().norm())},
            "teacher_forward_passes": self.teacher.image_calls + self.teacher.text_calls + self.teacher.prompt_calls,
            "teacher_forward_detail": self.teacher.forward_passes(),
            "timings": dict(self.timings),
            "throughput_img_s": _throughput(self.history, len(ds.train) * self.resolved["repeat_epochs"]),
            "versions": library_versions(),
            "device": str(self.device),
            "precision": self.precision,
            "torch_threads": torch.get_num_threads(),
            "world_size": dist.world_size(),
            "git_commit": git_commit(),
            "resumed_from": resumed,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "run_dir": str(self.run_dir) if self.run_dir else None,
            "weights_sha256": self._weights_sha256(),
        }

    def _weights_sha256(self) -> dict[str, str] | None:
        """The sha256 of each weight file this run wrote (checked when the weights are read back)."""
        if self.run_dir is None or not self.writer:
            return None
        return {name: sha256_file(self.run_dir / name) for name in WEIGHTS if (self.run_dir / name).is_file()}


def _last_mean(history: Sequence[Mapping[str, Any]], key: str, n: int) -> float | None:
    vals = [h[key] for h in history[-n:] if h.get(key) is not None]
    return sum(vals) / len(vals) if vals else None


def _last_mean_lists(history: Sequence[Mapping[str, Any]], key: str, n: int) -> list[float] | None:
    """Element-wise mean of the per-class lists of the last ``n`` epochs that have them."""
    rows = [h[key] for h in history[-n:] if h.get(key) is not None]
    return [sum(col) / len(col) for col in zip(*rows)] if rows else None


def _throughput(history: Sequence[Mapping[str, Any]], images_per_epoch: int) -> float | None:
    t = sum(h.get("train_s", 0.0) for h in history)
    return images_per_epoch * len(history) / t if t > 0 else None
