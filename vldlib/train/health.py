"""Whether a run's numbers stayed finite, and what to blame when they did not.

A run whose learning rate is far too high (``lr=1e6``) or whose temperature is far too small
(``tau=1e-30``) drives its loss or its weights to NaN/inf. That is the run diverging, not the
teacher-feature cache: :func:`check_run` blames the cache (:class:`NonFiniteFeatures`, naming the
cache file) only when the features themselves hold NaN/inf, and otherwise says in one line
(:class:`Diverged`) at which epoch the run diverged, which loss terms went non-finite and which
settings to change. Checks cost one device sync per epoch; nothing here changes a run's numbers.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping

import torch
from torch import nn

from vldlib.core.losses import NonFiniteInput

__all__ = ["Diverged", "NonFiniteFeatures", "all_finite", "check_outputs", "check_run", "short_number"]


class Diverged(ValueError):
    """A run whose loss, weights or outputs became non-finite while its input features were finite."""


class NonFiniteFeatures(ValueError):
    """Input features (teacher image or text features) that hold NaN or inf: a damaged cache entry."""


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every floating tensor of ``tensors`` holds only finite values (one device sync)."""
    flags = [torch.isfinite(t).all() for t in tensors if t.is_floating_point()]
    return bool(torch.stack([f.to(flags[0].device) for f in flags]).all()) if flags else True


def short_number(value: float) -> str:
    """A setting as a user would type it: ``1e6``, ``1e-30``, ``0.05``."""
    text = f"{float(value):g}"
    mantissa, e, exp = text.partition("e")
    return f"{mantissa}e{int(exp)}" if e else text


def check_outputs(features: torch.Tensor, what: str) -> torch.Tensor:
    """``features`` (the student's outputs on ``what``), or :class:`NonFiniteInput` when they hold NaN/inf
    or values so large that their row norm overflows (the metrics normalise each row; such a student
    has diverged as surely as one with NaN outputs)."""
    if not all_finite([features.float().norm(dim=-1)]):  # a NaN/inf value makes its row norm non-finite too
        raise NonFiniteInput(f"the student's outputs on {what} contain NaN or inf values (or values so "
                             "large their norm overflows)", "student")
    return features


def _module_tensors(modules: Iterable[nn.Module | None]) -> Iterable[torch.Tensor]:
    for m in modules:
        if m is not None:
            yield from m.parameters()
            yield from m.buffers()  # e.g. batch-norm running statistics


def check_run(run_hash: str, stage: str, epoch: int, means: Mapping[str, float],
              modules: Iterable[nn.Module | None], *, lr: tuple[str, float], tau: float,
              inputs: Mapping[str, tuple[torch.Tensor | None, Callable[[], object]]],
              cause: BaseException | None = None) -> None:
    """Check a run after an epoch (``cause`` None) or after a step or evaluation raised ``cause``.

    ``means``: the epoch's mean loss terms so far (``loss`` and ``loss_<name>``); ``modules``: what
    trains (student, learned prompt); ``lr``: the stage's learning-rate setting ``(name, value)``;
    ``inputs``: ``{description: (features, where)}``, ``where()`` naming their cache file.
    Returns when all is finite (a ``cause`` is then the caller's to re-raise); raises
    :class:`NonFiniteFeatures` when an input holds NaN/inf, else :class:`Diverged`."""
    loss = means.get("loss")
    bad_terms = [k.removeprefix("loss_") for k, v in means.items() if k != "loss" and not math.isfinite(v)]
    loss_bad = loss is not None and not math.isfinite(loss)
    outputs_bad = isinstance(cause, NonFiniteInput) and cause.name == "student"
    if cause is None and not (bad_terms or loss_bad) and all_finite(_module_tensors(modules)):
        return
    for what, (features, where) in inputs.items():
        if features is not None and not all_finite([features]):
            raise NonFiniteFeatures(f"{what} ({where()}) hold NaN or inf values: that cache entry is damaged; "
                                    "delete it to have it recomputed")
    weights_bad = not all_finite(_module_tensors(modules))
    if not (bad_terms or loss_bad or outputs_bad or weights_bad):
        return
    when = f"epoch {epoch}" + (" of 5-shot fine-tuning" if stage == "fewshot" else "")
    loss_text = "n/a" if loss is None else f"{loss:.4g}"
    if bad_terms:
        what = f"loss {loss_text}, first non-finite term{'s' if len(bad_terms) > 1 else ''} {', '.join(bad_terms)}"
    else:
        part = "outputs" if outputs_bad and not weights_bad else "weights"
        terms = {k.removeprefix("loss_"): v for k, v in means.items() if k != "loss"}
        top = max(terms, key=terms.__getitem__) if terms else None
        what = (f"the student's {part} became non-finite; mean loss until then {loss_text}"
                + (f", largest term {top} {terms[top]:.4g}" if top else ""))
    raise Diverged(f"run {run_hash} diverged at {when} ({what}); the teacher features are finite: "
                   f"lower {lr[0]} (now {short_number(lr[1])}) or raise tau (now {short_number(tau)})")
