"""The distillation losses (Li et al., ICCV 2023, §3; developer reference paper.md §2), as a registry.

Pure functions on tensors: no data, no models, no I/O. Every input is a *raw* feature tensor
(``[B, D]``); each loss L2-normalises internally (``x̂ = x / max(‖x‖₂, 1e-12)``), so the losses
are invariant to rescaling the features. They work in whatever dtype and on whatever device the
inputs are. ``tau`` defaults to 0.07, the official code's ``--temperature``.

- :mod:`.registry`  :class:`LossInputs` (one batch), :func:`register_loss`, :data:`LOSSES`,
  :func:`combined_loss` (the weighted terms; the official total uses weight 1 for each term on)
- :mod:`.paper`     L_cls (Eq. 1), L_mse (Eq. 2), L_im-cst (Eq. 3), L_vlprox (Eq. 6), ``teacher_correct``
- :mod:`.field`     L_cap (Eq. 8; Table 5), CLIP-KD's FD / ICL / CRD, Park et al.'s RKD

A new loss is one function decorated with :func:`register_loss` in one of these modules (or a new
one imported below); the name lists here, the config's checks and the run store read the registry.
Bad input (wrong dims, mismatched shapes, empty batches, NaN/inf, labels out of range, k < 1,
τ <= 0) raises :class:`ValueError` with a message that says what to fix
(:mod:`vldlib.core.checks`, shared with the metrics).
"""
from __future__ import annotations

from collections.abc import Mapping

from vldlib.core.checks import NonFiniteInput
from vldlib.core.losses.paper import cls_loss, im_cst_loss, mse_loss, teacher_correct, vlprox_loss  # noqa: I001
from vldlib.core.losses.field import RKD_WEIGHTS, cap_loss, crd_loss, fd_loss, icl_loss, rkd_loss
from vldlib.core.losses.registry import (IM_CST_MODES, INPUTS, LOSSES, LossEntry, LossInputs, combined_loss,
                                         loss_inputs, register_loss)

__all__ = [
    "LOSS_NAMES",
    "PAPER_LOSS_NAMES",
    "EXTRA_LOSS_NAMES",
    "LOSS_LABELS",
    "IM_CST_MODES",
    "INPUTS",
    "LOSSES",
    "LossEntry",
    "LossInputs",
    "NonFiniteInput",
    "register_loss",
    "loss_inputs",
    "losses_needing",
    "method_label",
    "cls_loss",
    "mse_loss",
    "im_cst_loss",
    "vlprox_loss",
    "teacher_correct",
    "cap_loss",
    "fd_loss",
    "icl_loss",
    "crd_loss",
    "rkd_loss",
    "RKD_WEIGHTS",
    "combined_loss",
]

#: The paper's four terms (Eqs. 1, 2, 3, 6): always part of a run's canonical weights.
PAPER_LOSS_NAMES: tuple[str, ...] = tuple(n for n, e in LOSSES.items() if e.main)
#: Losses beyond the paper's main four: L_cap (Eq. 8, Table 5) and the field's feature/relation
#: losses (CLIP-KD's FD, ICL, CRD; Park et al.'s RKD). Part of a run's hash only when switched on.
EXTRA_LOSS_NAMES: tuple[str, ...] = tuple(n for n, e in LOSSES.items() if not e.main)
#: Every loss :func:`combined_loss` knows, the one list the config and the run store read.
LOSS_NAMES: tuple[str, ...] = PAPER_LOSS_NAMES + EXTRA_LOSS_NAMES
#: How tables and pages name each term (``"im_cst"`` -> ``"L_im-cst"``).
LOSS_LABELS: dict[str, str] = {n: e.label for n, e in LOSSES.items()}


def losses_needing(what: str) -> tuple[str, ...]:
    """The losses that always need the input ``what`` (one of :data:`INPUTS`), e.g. ``"captions"`` -> ``("cap",)``."""
    if what not in INPUTS:
        raise ValueError(f"unknown loss input {what!r}; inputs: {INPUTS}")
    return tuple(n for n, e in LOSSES.items() if what in e.needs)


def method_label(weights: Mapping[str, float]) -> str:
    """The terms switched on in ``weights`` as a display label, in registry order, a weight other
    than 1 written before its term: ``{"cls": 1, "im_cst": 1, "mse": 1}`` -> ``"L_cls + L_mse + L_im-cst"``,
    ``{"cls": 1, "fd": 2000}`` -> ``"L_cls + 2000·FD (CLIP-KD)"``."""
    unknown = sorted(set(weights) - set(LOSSES))
    if unknown:
        raise ValueError(f"unknown loss name(s) {unknown}; valid names are {list(LOSSES)}")
    on = [(n, float(weights[n])) for n in LOSSES if n in weights and float(weights[n]) > 0]
    return " + ".join(LOSSES[n].label if w == 1 else f"{w:g}·{LOSSES[n].label}" for n, w in on)
