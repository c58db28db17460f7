"""The ``"auto"`` settings of a config resolved for a run: the optimiser, schedule and epoch
rules of paper §5.3-5.4 (:func:`resolve_optim`, recorded in the run's record) and the number of
DataLoader workers (:func:`resolve_workers`, runtime only)."""
from __future__ import annotations

import os
from typing import Any

__all__ = ["SMALL_DATASET_MAX_TRAIN", "MAX_AUTO_WORKERS", "resolve_optim", "resolve_workers"]

#: |X_train| below which a dataset counts as "small" for the paper's epoch rules (§5.3-5.4):
#: CUB, Cars, Flowers have 2.9k-4.1k training images; Food, SUN, tiered 35.7k-314k.
SMALL_DATASET_MAX_TRAIN = 20_000
#: ``num_workers="auto"``: this many DataLoader workers at most (see :func:`resolve_workers`).
MAX_AUTO_WORKERS = 8


def resolve_optim(config: Any, n_train: int) -> dict[str, Any]:
    """Resolve the ``"auto"`` optimisation fields of ``config`` (a
    :class:`vldlib.train.config.TrainConfig`; paper §5.3-5.4) for a dataset of ``n_train``
    training images. Returns a dict recorded in the result record."""
    is_vit = config.student.startswith("vit")
    opt = config.optimizer if config.optimizer != "auto" else ("adamw" if is_vit else "sgd")
    sched = config.schedule if config.schedule != "auto" else ("onecycle" if opt == "adamw" else "step")
    lr = config.lr if config.lr != "auto" else (2e-4 if opt == "adamw" else 0.05)
    wd = config.weight_decay if config.weight_decay != "auto" else (0.01 if opt == "adamw" else 1e-4)
    small = n_train < SMALL_DATASET_MAX_TRAIN
    rep = config.repeat_epochs if config.repeat_epochs != "auto" else (5 if small else 1)
    out: dict[str, Any] = {"optimizer": opt, "schedule": sched, "lr": float(lr),
                           "weight_decay": float(wd), "repeat_epochs": int(rep)}
    fs = config.fewshot_options()
    if fs is not None:
        fopt = fs["optimizer"] if fs["optimizer"] != "auto" else opt
        out["fewshot"] = {
            "shots": int(fs["shots"]),
            "epochs": int(fs["epochs"]) if fs["epochs"] != "auto" else (100 if small else 20),
            "lr": float(fs["lr"]) if fs["lr"] != "auto" else (1e-4 if fopt == "adamw" else 0.003),
            "optimizer": fopt,
            "weight_decay": float(fs["weight_decay"]) if fs["weight_decay"] != "auto"
            else (0.01 if fopt == "adamw" else 1e-4),
            "batch_size": int(fs["batch_size"] or config.batch_size),
        }
        if fs["continual"]:
            out["fewshot"]["continual"] = True
    return out


def resolve_workers(num_workers: int | str, cores: int | None = None) -> int:
    """DataLoader workers: ``num_workers`` itself, or for ``"auto"`` min(8, cores - 1) (one core
    left to the training process; 0 on a one-core machine)."""
    if num_workers != "auto":
        return int(num_workers)
    cores = cores if cores is not None else (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                             else os.cpu_count() or 1)
    return max(0, min(MAX_AUTO_WORKERS, cores - 1))
