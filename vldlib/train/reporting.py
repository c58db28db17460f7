"""What a run reports while it trains: one progress line per epoch, ``metrics.jsonl`` in its run
folder, and the same scalars to TensorBoard or W&B (``report_to``).

- ``metrics.jsonl``: one JSON line per finished outer epoch, ``{"stage": "main"|"fewshot", **the
  history entry}`` (epoch, lr, loss terms, accuracies, train_s), appended and flushed to disk as
  the epoch ends. When a run starts or resumes the file is rewritten from the history it resumes
  with (the checkpoint's), so lines of epochs after the checkpoint are dropped and the file always
  matches ``record["history"]`` (then ``record["fewshot"]["history"]``).
- ``report_to`` (:data:`REPORT_TO`; a runtime-only config field, not part of the run's hash):
  ``"tensorboard"`` writes event files under ``<run folder>/tensorboard`` (``pip install
  tensorboard``), ``"wandb"`` logs to Weights & Biases (run id = the config hash, so a resumed run
  continues the same W&B run; ``pip install wandb``); the scalars are ``<stage>/<key>`` at step =
  the outer epoch (few-shot epochs continue after the main stage's). A missing package is a
  one-line ``ImportError`` before any data is loaded (:func:`check_report_to`).
"""
from __future__ import annotations

import importlib
import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from vldlib.io import append_json_line, finite_json, write_text_atomic
from vldlib.progress import Progress, format_duration
from vldlib.train.config import REPORT_TO

__all__ = ["METRICS_FILE", "REPORT_TO", "check_report_to", "RunReporter", "epoch_line"]

METRICS_FILE = "metrics.jsonl"
_PACKAGES = {"tensorboard": ("torch.utils.tensorboard", "tensorboard"), "wandb": ("wandb", "wandb")}


def check_report_to(report_to: str | None) -> None:
    """Raise a one-line ``ImportError`` when ``report_to`` needs a package that is not installed
    (``ValueError`` for an unknown name)."""
    if report_to is None:
        return
    if report_to not in REPORT_TO:
        raise ValueError(f"unknown report_to {report_to!r}; valid: {', '.join(map(repr, REPORT_TO))} or None")
    module, package = _PACKAGES[report_to]
    try:
        importlib.import_module(module)
    except ImportError:
        raise ImportError(f"report_to={report_to!r} needs the {package} package, which is not installed here: "
                          f"pip install {package} (or set report_to=None)") from None


def _scalars(entry: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in entry.items()
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def epoch_line(stage: str, entry: Mapping[str, Any], epochs: int, images: int, eta_s: float | None) -> str:
    """``main epoch 3/90: loss 2.1130, acc_id 41.20%, acc_ood_zeroshot 30.05%, 812.3 img/s, 12 s/epoch, ETA 17 min 24 s``."""
    parts = [f"loss {entry['loss']:.4f}"]
    for key in ("acc_id", "acc_ood_zeroshot", "acc_ood_5shot", "acc_ood1_5shot", "acc_ood2_5shot"):
        if entry.get(key) is not None:
            parts.append(f"{key} {entry[key]:.2f}%")
    train_s = float(entry.get("train_s") or 0.0)
    if train_s > 0:
        parts.append(f"{images / train_s:.1f} img/s")
    if eta_s is not None:
        parts.append(f"ETA {format_duration(eta_s)}")
    return f"{stage} epoch {entry['epoch']}/{epochs}: " + ", ".join(parts)


class RunReporter:
    """One run's epoch reports (see the module docstring). ``run_dir`` None (nothing saved) or
    ``write`` False (a torchrun rank other than 0) writes no file; the progress lines still go to
    ``progress``."""

    def __init__(self, progress: Progress, run_dir: Path | None, *, report_to: str | None = None,
                 run_hash: str = "", config: Mapping[str, Any] | None = None, write: bool = True,
                 main_epochs: int = 0) -> None:
        self.progress = progress
        self.path = Path(run_dir) / METRICS_FILE if run_dir is not None and write else None
        self.main_epochs = int(main_epochs)
        self.report_to = report_to if write else None
        self.run_hash, self.config = run_hash, dict(config or {})
        self.sink: Any = None
        self._walls: dict[str, list[float]] = {}
        self._started = time.perf_counter()

    def start(self, history: Sequence[Mapping[str, Any]], fewshot_history: Sequence[Mapping[str, Any]]) -> None:
        """Rewrite ``metrics.jsonl`` from the histories the run starts (or resumes) with and open
        the ``report_to`` sink."""
        if self.path is not None:
            rows = [{"stage": "main", **h} for h in history] + [{"stage": "fewshot", **h} for h in fewshot_history]
            write_text_atomic(self.path, "".join(_json_line(r) for r in rows))
        if self.report_to == "tensorboard" and self.path is not None:
            writer = importlib.import_module("torch.utils.tensorboard").SummaryWriter
            self.sink = writer(log_dir=str(self.path.parent / "tensorboard"))
        elif self.report_to == "wandb":
            wandb = importlib.import_module("wandb")
            self.sink = wandb.init(project="vldbook", id=self.run_hash or None, name=self.run_hash or None,
                                   resume="allow", config=self.config,
                                   dir=str(self.path.parent) if self.path is not None else None)

    def epoch(self, stage: str, entry: Mapping[str, Any], epochs: int, *, images: int, wall_s: float,
              first: bool = False) -> None:
        """An outer epoch finished: its ``metrics.jsonl`` line, its scalars, its progress line
        (rate-limited; ``first`` and the stage's last epoch always)."""
        if self.path is not None:
            append_json_line(self.path, {"stage": stage, **entry})
        step = int(entry["epoch"]) + (self.main_epochs if stage == "fewshot" else 0)
        scalars = {f"{stage}/{k}": v for k, v in _scalars(entry).items()}
        if self.sink is not None and self.report_to == "tensorboard":
            for tag, value in scalars.items():
                self.sink.add_scalar(tag, value, step)
            self.sink.flush()
        elif self.sink is not None and self.report_to == "wandb":
            self.sink.log(scalars, step=step)
        walls = self._walls.setdefault(stage, [])
        walls.append(float(wall_s))
        eta = (epochs - int(entry["epoch"])) * sum(walls) / len(walls)
        last = int(entry["epoch"]) >= epochs
        self.progress.event(f"epoch:{stage}", epoch_line(stage, entry, epochs, images, None if last else eta),
                            force=first or last)

    def close(self) -> None:
        if self.sink is None:
            return
        try:
            if self.report_to == "tensorboard":
                self.sink.close()
            else:
                self.sink.finish()
        finally:
            self.sink = None


def _json_line(obj: Mapping[str, Any]) -> str:
    return json.dumps(finite_json(obj), allow_nan=False, ensure_ascii=True) + "\n"
