"""The loss registry: one batch object of the available inputs, one decorated function per loss.

A loss is a function of a :class:`LossInputs` (the checked, L2-normalised features of one batch
and the loss options) that returns a scalar tensor, registered under its config name with
:func:`register_loss`, which also records the inputs it needs and how the book labels it.
:func:`combined_loss` checks the weights, checks each input that an active loss needs once
(:func:`loss_inputs`), then loops over the active losses in registration order.

Registration happens when :mod:`vldlib.core.losses` is imported (its modules decorate their
functions); the registry is read-only afterwards (:data:`LOSSES`).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType

import torch.nn.functional as F
from torch import Tensor

from vldlib.core.checks import (check_count, check_features, check_labels, check_nonnegative, check_positive,
                                check_same_dim, check_same_rows, label_bound)

__all__ = ["INPUTS", "IM_CST_MODES", "LossInputs", "LossEntry", "LOSSES", "register_loss", "loss_inputs",
           "active_weights", "inputs_needed", "combined_loss"]

#: The inputs a loss may need besides the student's features (the ``needs`` of :func:`register_loss`).
INPUTS: tuple[str, ...] = ("teacher", "text", "labels", "captions")
#: L_im-cst's two forms (Eq. 3): both directions of the batch matrix, or student -> teacher only.
IM_CST_MODES: tuple[str, ...] = ("bidirectional", "single")

#: How to pass each input when a loss that needs it is switched on.
_MISSING = {
    "teacher": "teacher features are required by the terms {terms}; pass teacher=[B, D]",
    "text": "text features and labels are required by the terms {terms}; pass text=[C, D] and labels=[B]",
    "labels": "labels are required by the terms {terms}; pass labels=[B] (one class index per row)",
    "captions": "the terms {terms}: each needs captions=[B, D] (each image's caption feature) and labels=[B]",
}


@dataclass(frozen=True, eq=False)
class LossInputs:
    """One batch as the losses see it: L2-normalised ``[B, D]`` features, ``[C, D]`` class texts,
    long ``[B]`` labels, and the loss options. An input no active loss needs is None.

    ``student`` ŝ, ``teacher`` t̂ (the cached teacher image feature of the same image), ``text`` ê
    (one teacher text feature per class; ``labels`` index its rows), ``captions`` ĉ (each image's
    own caption feature); ``tau`` the temperature (0.07), ``k`` L_vlprox's top-k, ``filter`` its
    teacher-correct filter, ``im_cst_mode`` (:data:`IM_CST_MODES`), ``im_cst_filter`` the filter
    in L_im-cst (Table 9).
    """

    student: Tensor
    teacher: Tensor | None = None
    text: Tensor | None = None
    labels: Tensor | None = None
    captions: Tensor | None = None
    tau: float = 0.07
    k: int = 256
    filter: bool = True
    im_cst_mode: str = "bidirectional"
    im_cst_filter: bool = False


_OPTIONS = tuple(f.name for f in fields(LossInputs) if f.name != "student" and f.name not in INPUTS)


@dataclass(frozen=True)
class LossEntry:
    """A registered loss: ``name`` (the config's weight key), ``fn`` (LossInputs -> scalar),
    ``needs`` (inputs from :data:`INPUTS`), ``needs_if`` (option -> more inputs when the option is
    on), ``label`` (how tables and pages name the term), ``main`` (one of the paper's four terms
    of Table 1: always part of a run's canonical weights, so never True for a new loss),
    ``cost`` (run time relative to a plain run, for ordering a grid's runs)."""

    name: str
    fn: Callable[[LossInputs], Tensor]
    needs: tuple[str, ...]
    needs_if: Mapping[str, tuple[str, ...]]
    label: str
    main: bool = False
    cost: float = 1.0

    def inputs(self, options: Mapping[str, object]) -> tuple[str, ...]:
        """The inputs this loss needs under ``options`` (``needs`` plus those switched on by an option)."""
        extra = [n for opt, more in self.needs_if.items() if options.get(opt) for n in more]
        return tuple(n for n in INPUTS if n in self.needs or n in extra)


_REGISTRY: dict[str, LossEntry] = {}
#: Every registered loss by name: the main four, then the others, each in registration order (the
#: order of ``LOSS_NAMES``, in which :func:`combined_loss` computes and sums the terms).
LOSSES: Mapping[str, LossEntry] = MappingProxyType(_REGISTRY)


def register_loss(name: str, *, needs: tuple[str, ...] = (), needs_if: Mapping[str, tuple[str, ...]] | None = None,
                  label: str | None = None, main: bool = False,
                  cost: float = 1.0) -> Callable[[Callable[[LossInputs], Tensor]], Callable[[LossInputs], Tensor]]:
    """Register the decorated ``fn(inputs: LossInputs) -> Tensor`` as the loss ``name`` (see :class:`LossEntry`)."""
    if not name.isidentifier() or name in _REGISTRY:
        raise ValueError(f"loss name {name!r} must be a new identifier; registered: {list(_REGISTRY)}")
    needs_if = dict(needs_if or {})
    bad = sorted({*needs, *(n for more in needs_if.values() for n in more)} - set(INPUTS))
    if bad or not set(needs_if) <= set(_OPTIONS):
        raise ValueError(f"loss {name!r}: needs must name inputs from {INPUTS} and needs_if options from "
                         f"{_OPTIONS}, got needs={needs}, needs_if={needs_if}")

    def add(fn: Callable[[LossInputs], Tensor]) -> Callable[[LossInputs], Tensor]:
        _REGISTRY[name] = LossEntry(name, fn, tuple(needs), MappingProxyType(needs_if), label or name, main, cost)
        ordered = sorted(_REGISTRY.values(), key=lambda e: not e.main)  # stable: the main four first
        _REGISTRY.clear()
        _REGISTRY.update((e.name, e) for e in ordered)
        return fn

    return add


def loss_inputs(needs: tuple[str, ...] | set[str], *, student: Tensor, teacher: Tensor | None = None,
                text: Tensor | None = None, labels: Tensor | None = None, captions: Tensor | None = None,
                tau: float = 0.07, k: int = 256, filter: bool = True,  # noqa: A002 - the config's name
                im_cst_mode: str = "bidirectional", im_cst_filter: bool = False,
                terms: Mapping[str, tuple[str, ...]] | None = None) -> LossInputs:
    """Check the options and the inputs in ``needs`` (plus the student) once; return them normalised.

    Inputs not in ``needs`` are left out (None). ``terms``: input -> the loss names needing it,
    only for the message when an input is missing. Raises a one-line ``ValueError`` (or
    :class:`~vldlib.core.checks.NonFiniteInput`) naming the input and the fix.
    """
    if im_cst_mode not in IM_CST_MODES:
        raise ValueError(f"im_cst_mode must be one of {IM_CST_MODES}, got {im_cst_mode!r}")
    tau = check_positive(tau, "tau", " (the paper's code uses 0.07)")
    k = check_count(k, "k", " (the paper uses 256)")
    given = {"teacher": teacher, "text": text, "labels": labels, "captions": captions}
    for what in INPUTS:
        if what in needs and given[what] is None:
            key = "text" if what == "labels" and "text" in needs else what
            raise ValueError(_MISSING[key].format(terms=sorted((terms or {}).get(what, ()))))
    s = check_features(student, "student")
    out: dict[str, Tensor | None] = dict.fromkeys(INPUTS)
    if "teacher" in needs:
        t = check_features(teacher, "teacher")
        check_same_rows(s, t, "student", "teacher")
        check_same_dim(s, t, "student", "teacher")
        out["teacher"] = F.normalize(t, dim=-1)
    if "text" in needs:
        e = check_features(text, "text")
        check_same_dim(s, e, "student", "text")
        out["text"] = F.normalize(e, dim=-1)
    if "labels" in needs:
        bound = text.shape[0] if "text" in needs else label_bound(labels)  # type: ignore[union-attr]
        out["labels"] = check_labels(labels, s.shape[0], bound, s.device)
    if "captions" in needs:
        c = check_features(captions, "captions")
        check_same_rows(s, c, "student", "captions")
        check_same_dim(s, c, "student", "captions")
        out["captions"] = F.normalize(c, dim=-1)
    return LossInputs(F.normalize(s, dim=-1), tau=tau, k=k, filter=bool(filter), im_cst_mode=im_cst_mode,
                      im_cst_filter=bool(im_cst_filter), **out)


def active_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """The positive weights of ``weights`` as floats, in registration order; a one-line
    ``ValueError`` for a non-mapping, an unknown name, a negative or non-finite weight, or no positive one."""
    if not isinstance(weights, Mapping):
        raise ValueError(f"weights must be a mapping name -> weight, e.g. {{'cls': 1, 'im_cst': 1}}, got {weights!r}")
    unknown = sorted(set(weights) - set(_REGISTRY))
    if unknown:
        raise ValueError(f"unknown loss name(s) {unknown}; valid names are {list(_REGISTRY)}")
    active = {n: check_nonnegative(weights[n], f"weight of {n!r}") for n in _REGISTRY if n in weights}
    active = {n: w for n, w in active.items() if w > 0}
    if not active:
        raise ValueError(f"no loss term has a positive weight (got {dict(weights)}); "
                         f"switch on at least one of {list(_REGISTRY)}")
    return active


def inputs_needed(names: tuple[str, ...] | list[str], options: Mapping[str, object]) -> dict[str, tuple[str, ...]]:
    """input -> the losses among ``names`` that need it under ``options`` (only inputs some loss needs)."""
    need: dict[str, list[str]] = {}
    for n in names:
        for what in _REGISTRY[n].inputs(options):
            need.setdefault(what, []).append(n)
    return {what: tuple(ns) for what, ns in need.items()}


def combined_loss(
    weights: Mapping[str, float],
    *,
    student: Tensor,
    teacher: Tensor | None = None,
    text: Tensor | None = None,
    labels: Tensor | None = None,
    tau: float = 0.07,
    k: int = 256,
    filter: bool = True,  # noqa: A002 - name fixed by the contract
    im_cst_mode: str = "bidirectional",
    im_cst_filter: bool = False,
    captions: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Weighted sum of named loss terms: :math:`L = \sum_n w_n L_n`, n in ``LOSS_NAMES``.

    ``weights`` maps registered names (``"cls"``, ``"mse"``, ``"im_cst"``, ``"vlprox"``, and the
    extra terms ``"cap"``, ``"fd"``, ``"icl"``, ``"crd"``, ``"rkd"``) to non-negative finite
    weights; the official code uses 1.0 for every term that is on. Terms with weight 0 are
    neither computed nor returned. Returns ``(total, {name: unweighted term})``, the terms in
    registration order.

    Only the inputs an active term needs are required and checked (each once; see each loss's
    ``needs``: cls / icl: text, labels; mse / im_cst / fd / crd / rkd: teacher; vlprox: all three;
    cap: captions ``[B, D]`` and labels). ``im_cst_filter=True`` restricts L_im-cst to the
    teacher-correct samples (the same I(x) as L_vlprox; Table 9) and so needs text and labels too.
    """
    active = active_weights(weights)
    options = dict(tau=tau, k=k, filter=filter, im_cst_mode=im_cst_mode, im_cst_filter=im_cst_filter)
    needed = inputs_needed(list(active), options)
    x = loss_inputs(set(needed), student=student, teacher=teacher, text=text, labels=labels, captions=captions,
                    terms=needed, **options)
    terms = {name: _REGISTRY[name].fn(x) for name in active}
    total = sum((active[n] * terms[n] for n in terms), start=x.student.new_zeros(()))
    return total, terms

