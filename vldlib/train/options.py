"""Typed sub-configs of :class:`vldlib.train.config.TrainConfig`: the option groups with fixed
keys, as dataclasses (a config given as JSON holds them as dicts; ``TrainConfig`` turns a dict
into its sub-config and back, :meth:`to_dict`).

- :class:`FewshotOptions`: the 5-shot stage (paper §3.6, §5.4; Table 11's ``continual``).
- :class:`PromptLearningOptions`: CoOp prompt learning (Table 5), checked by
  :func:`vldlib.models.prompts.prompt_learning_options` (the models' own rule).

Each declares its hashing :class:`~vldlib.train.schema.Schema`: the schema-1 baseline fields
(always in the identity) and the rest (in it only when not at their default).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, Mapping

from vldlib.models.prompts import PROMPT_LEARNING_DEFAULTS, prompt_learning_options
from vldlib.train.checks import check_auto_nonneg, check_auto_positive, check_choice, check_int
from vldlib.train.schema import Schema

__all__ = ["FewshotOptions", "PromptLearningOptions", "FEWSHOT_DEFAULTS", "OPTIMIZERS", "sub_config"]

OPTIMIZERS: tuple[str, ...] = ("auto", "sgd", "adamw")


@dataclass
class FewshotOptions:
    """The 5-shot fine-tuning stage: ``shots`` support images per unseen class; ``epochs``
    ("auto": 100 on small datasets, 20 on large, §5.4); ``lr`` (peak OneCycle lr, "auto": 0.003 for
    SGD students, 1e-4 for AdamW / ViT); ``optimizer`` ("auto": the main stage's family);
    ``weight_decay``; ``batch_size`` (None: the main batch size); ``continual`` (Table 11:
    fine-tune on the first half of Y_ood only)."""

    shots: int = 5
    epochs: int | str = "auto"
    lr: float | str = "auto"
    optimizer: str = "auto"
    weight_decay: float | str = "auto"
    batch_size: int | None = None
    continual: bool = False

    def validate(self) -> "FewshotOptions":
        check_int("fewshot.shots", self.shots, 1)
        if self.epochs != "auto":
            check_int("fewshot.epochs", self.epochs, 1, extra=" or 'auto'")
        check_auto_positive("fewshot.lr", self.lr)
        check_auto_nonneg("fewshot.weight_decay", self.weight_decay)
        check_choice("fewshot.optimizer", self.optimizer, OPTIMIZERS)
        if self.batch_size is not None:
            check_int("fewshot.batch_size", self.batch_size, 2)
        if not isinstance(self.continual, bool):
            raise ValueError(f"fewshot.continual must be True or False, got {self.continual!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """Every field as hashed (before the default-dropping rule)."""
        return self.to_dict()


#: The few-shot options' defaults (``FewshotOptions()`` as a dict).
FEWSHOT_DEFAULTS: dict[str, Any] = FewshotOptions().to_dict()
FEWSHOT_SCHEMA = Schema(defaults=FEWSHOT_DEFAULTS,
                        baseline=("shots", "epochs", "lr", "optimizer", "weight_decay", "batch_size"))


@dataclass
class PromptLearningOptions:
    """CoOp prompt learning: ``n_ctx`` learned context vectors (the paper: 8), initialised from
    N(0, ``init_std``²)."""

    n_ctx: int = PROMPT_LEARNING_DEFAULTS["n_ctx"]
    init_std: float = PROMPT_LEARNING_DEFAULTS["init_std"]

    def validate(self) -> "PromptLearningOptions":
        prompt_learning_options(self.to_dict())
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """Every field as hashed: the models' normalised options (``init_std`` a float)."""
        return prompt_learning_options(self.to_dict())


PROMPT_LEARNING_SCHEMA = Schema(defaults=prompt_learning_options({}), baseline=("n_ctx", "init_std"))


def sub_config(name: str, cls: type, value: Any) -> Any:
    """``value`` as the sub-config ``cls`` of field ``name``: a dict becomes ``cls`` (unknown keys:
    one ValueError listing the valid ones); None, an instance, or anything else (rejected by
    ``TrainConfig.validate``) is returned as it is."""
    if not isinstance(value, Mapping):
        return value
    valid = [f.name for f in fields(cls)]
    bad = sorted(set(value) - set(valid))
    if bad:
        raise ValueError(f"unknown {name} option(s) {bad}; valid: {sorted(valid)}")
    return cls(**dict(value))
