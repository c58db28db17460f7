"""The paper's distillation losses (Li et al., ICCV 2023, §3; developer reference paper.md §2).

Pure functions on tensors: no data, no models, no I/O. Every input is a *raw* feature tensor
(``[B, D]``); each function L2-normalises internally (``x̂ = x / max(‖x‖₂, 1e-12)``), so the losses
are invariant to rescaling the features. They work in whatever dtype and on whatever device the
inputs are. ``tau`` defaults to 0.07, the official code's ``--temperature``.

Notation: ŝ_i student feature, t̂_i the cached teacher image feature of the same image, ê_y the
teacher text feature of class y (``text`` is ``[C, D]``, ``labels`` index its rows).

- :func:`cls_loss`      L_cls      (Eq. 1)
- :func:`mse_loss`      L_mse      (Eq. 2)
- :func:`im_cst_loss`   L_im-cst   (Eq. 3, the official code's cos/τ form)
- :func:`vlprox_loss`   L_vlprox   (Eq. 6)
- :func:`combined_loss` weighted sum of named terms (the official total uses weight 1 for each
  term that is switched on).

Bad input (wrong dims, mismatched shapes, empty batches, NaN/inf, labels out of range, k < 1,
τ <= 0) raises :class:`ValueError` with a message that says what to fix.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LOSS_NAMES",
    "PAPER_LOSS_NAMES",
    "IM_CST_MODES",
    "cls_loss",
    "mse_loss",
    "im_cst_loss",
    "vlprox_loss",
    "teacher_correct",
    "combined_loss",
]

#: The paper's four terms (Eqs. 1, 2, 3, 6): always part of a run's canonical weights.
PAPER_LOSS_NAMES: tuple[str, ...] = ("cls", "mse", "im_cst", "vlprox")
#: Every loss :func:`combined_loss` knows, the one list the config and the run store read.
LOSS_NAMES: tuple[str, ...] = PAPER_LOSS_NAMES
IM_CST_MODES: tuple[str, ...] = ("bidirectional", "single")
_IM_CST_MODES = IM_CST_MODES


# --------------------------------------------------------------------------- validation helpers
def _check_features(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [B, D], got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D [B, D] (one feature row per sample), got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); pass at least one non-empty feature row")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}; convert with .float()")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf values; check the model outputs / cached features")
    return x


def _check_same_dim(a: Tensor, b: Tensor, na: str, nb: str) -> None:
    if a.device != b.device:
        raise ValueError(f"{na} is on {a.device} but {nb} is on {b.device}; move both to the same device")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"feature dimensions differ: {na} has D={a.shape[1]}, {nb} has D={b.shape[1]}; "
            "the student's last layer must map to the teacher's embedding dimension"
        )


def _check_same_batch(a: Tensor, b: Tensor, na: str, nb: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"batch sizes differ: {na} has {a.shape[0]} rows, {nb} has {b.shape[0]}; "
            "row i of both must describe the same image"
        )


def _check_labels(labels: object, batch: int, num_classes: int, device: torch.device) -> Tensor:
    if not isinstance(labels, Tensor):
        raise ValueError(f"labels must be a 1-D integer torch.Tensor, got {type(labels).__name__}")
    if labels.device != device:
        raise ValueError(f"labels are on {labels.device} but the features are on {device}; move them together")
    if labels.dim() != 1 or labels.shape[0] != batch:
        raise ValueError(f"labels must have shape [{batch}] (one class index per row), got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor (class indices), got dtype {labels.dtype}")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"labels must lie in [0, {num_classes - 1}] (rows of text), got values in [{lo}, {hi}]; "
            "labels index the rows of the text-feature matrix"
        )
    return labels.long()


def _check_tau(tau: float) -> float:
    if not isinstance(tau, (int, float)) or isinstance(tau, bool) or not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"tau must be a positive finite number (the paper's code uses 0.07), got {tau!r}")
    return float(tau)


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be an integer >= 1 (the paper uses 256), got {k!r}")
    return int(k)


def _normalize(x: Tensor) -> Tensor:
    return F.normalize(x, dim=-1)


# --------------------------------------------------------------------------- cores on normalised input
def _cls_core(s: Tensor, e: Tensor, labels: Tensor, tau: float) -> Tensor:
    return F.cross_entropy(s @ e.T / tau, labels)


def _mse_core(s: Tensor, t: Tensor) -> Tensor:
    return (s - t).pow(2).sum(dim=1).mean()


def _im_cst_core(s: Tensor, t: Tensor, tau: float, mode: str, keep: Tensor | None) -> Tensor:
    if keep is not None:
        if not bool(keep.any()):
            return (s * 0.0).sum() + (t * 0.0).sum()  # exact 0, gradient path kept
        s, t = s[keep], t[keep]
    logits = s @ t.T / tau
    target = torch.arange(logits.shape[0], device=logits.device)
    loss = F.cross_entropy(logits, target)
    if mode == "bidirectional":
        loss = 0.5 * (loss + F.cross_entropy(logits.T, target))
    return loss


def _teacher_correct_core(t: Tensor, e: Tensor, labels: Tensor) -> Tensor:
    # argmax returns the first maximal index: ties resolve to the smaller class index.
    return (t @ e.T).argmax(dim=1) == labels


def _vlprox_core(s: Tensor, t: Tensor, e: Tensor, labels: Tensor, k: int, tau: float, filt: bool) -> Tensor:
    logit_t = t @ e.T / tau
    logit_s = s @ e.T / tau
    num_classes = e.shape[0]
    if k < num_classes:
        # stable sort: among equal teacher logits the smaller class index is taken first.
        idx = torch.sort(logit_t, dim=1, descending=True, stable=True).indices[:, :k]
        logit_t = logit_t.gather(1, idx)
        logit_s = logit_s.gather(1, idx)
    log_pt = F.log_softmax(logit_t, dim=1)
    log_ps = F.log_softmax(logit_s, dim=1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(dim=1)  # KL(P_T,topk || P_S,topk) per sample
    if not filt:
        return kl.mean()
    keep = _teacher_correct_core(t, e, labels).to(kl.dtype)
    # mean over kept samples; an empty filter gives 0 * finite / 1 = exact 0 with a gradient path
    return (kl * keep).sum() / keep.sum().clamp_min(1.0)


# --------------------------------------------------------------------------- public losses
def cls_loss(student: Tensor, text: Tensor, labels: Tensor, tau: float = 0.07) -> Tensor:
    r"""L_cls (paper Eq. 1): cross-entropy of cosine logits against the class texts.

    .. math:: L_{cls} = \frac{1}{B}\sum_i -\log
        \frac{\exp(\cos(s_i, e_{y_i})/\tau)}{\sum_{y \in Y} \exp(\cos(s_i, e_y)/\tau)}

    ``student`` ``[B, D]``, ``text`` ``[C, D]`` (all training classes), ``labels`` ``[B]`` in
    ``0..C-1``. Returns a scalar.
    """
    _check_features(student, "student")
    _check_features(text, "text")
    _check_same_dim(student, text, "student", "text")
    labels = _check_labels(labels, student.shape[0], text.shape[0], student.device)
    return _cls_core(_normalize(student), _normalize(text), labels, _check_tau(tau))


def mse_loss(student: Tensor, teacher: Tensor) -> Tensor:
    r"""L_mse (paper Eq. 2): mean over the batch of the squared distance of normalised features.

    .. math:: L_{mse} = \frac{1}{B}\sum_i \lVert \hat s_i - \hat t_i \rVert_2^2
              = \frac{1}{B}\sum_i (2 - 2\cos(s_i, t_i))

    Summed over dimensions, averaged over the batch (the official code's quantity, and Table 2's
    "MSE"). Returns a scalar in [0, 4].
    """
    _check_features(student, "student")
    _check_features(teacher, "teacher")
    _check_same_batch(student, teacher, "student", "teacher")
    _check_same_dim(student, teacher, "student", "teacher")
    return _mse_core(_normalize(student), _normalize(teacher))


def im_cst_loss(
    student: Tensor,
    teacher: Tensor,
    tau: float = 0.07,
    mode: str = "bidirectional",
    *,
    keep: Tensor | None = None,
) -> Tensor:
    r"""L_im-cst (paper Eq. 3): in-batch image-to-image contrastive loss, positive = own teacher feature.

    With :math:`M_{ij} = \cos(s_i, t_j)/\tau` (the official code's form; for unit vectors
    :math:`\exp(-\lVert \hat s - \hat t\rVert^2/\tau_p) \propto \exp(2\cos/\tau_p)`, so this is Eq. 3
    with :math:`\tau_p = 2\tau`):

    .. math:: L_{s\to t} = \frac{1}{B}\sum_i -\log\frac{e^{M_{ii}}}{\sum_j e^{M_{ij}}},\qquad
              L_{t\to s} = \frac{1}{B}\sum_j -\log\frac{e^{M_{jj}}}{\sum_i e^{M_{ij}}}

    ``mode="bidirectional"`` (default) returns :math:`\tfrac12(L_{s\to t} + L_{t\to s})`,
    ``mode="single"`` returns :math:`L_{s\to t}`. Negatives are all other images of the batch.

    ``keep`` (optional boolean ``[B]``) restricts the loss to those rows *and* columns (Table 9's
    "with filtering in L_im-cst"); if it keeps nothing the result is an exact 0 that still has a
    gradient path to the inputs.
    """
    if mode not in _IM_CST_MODES:
        raise ValueError(f"mode must be one of {_IM_CST_MODES}, got {mode!r}")
    _check_features(student, "student")
    _check_features(teacher, "teacher")
    _check_same_batch(student, teacher, "student", "teacher")
    _check_same_dim(student, teacher, "student", "teacher")
    if keep is not None:
        if not isinstance(keep, Tensor) or keep.dtype != torch.bool or tuple(keep.shape) != (student.shape[0],):
            raise ValueError(f"keep must be a boolean tensor of shape [{student.shape[0]}] or None")
    return _im_cst_core(_normalize(student), _normalize(teacher), _check_tau(tau), mode, keep)


def teacher_correct(teacher: Tensor, text: Tensor, labels: Tensor) -> Tensor:
    r"""The filter I(x) of Eq. 6: ``1[argmax_y cos(t, e_y) = label]`` as a boolean ``[B]`` tensor.

    Ties between classes resolve to the smaller class index.
    """
    _check_features(teacher, "teacher")
    _check_features(text, "text")
    _check_same_dim(teacher, text, "teacher", "text")
    labels = _check_labels(labels, teacher.shape[0], text.shape[0], teacher.device)
    return _teacher_correct_core(_normalize(teacher), _normalize(text), labels)


def vlprox_loss(
    student: Tensor,
    teacher: Tensor,
    text: Tensor,
    labels: Tensor,
    k: int = 256,
    tau: float = 0.07,
    filter: bool = True,  # noqa: A002 - name fixed by the contract
) -> Tensor:
    r"""L_vlprox (paper Eq. 6): KL between teacher and student label distributions on the teacher's top-k.

    .. math::
        P_T(y|x) = \mathrm{softmax}_y(\cos(t, e_y)/\tau),\quad
        P_S(y|x) = \mathrm{softmax}_y(\cos(s, e_y)/\tau)

    :math:`Y_{topk}` = the k labels with the highest :math:`P_T` (``k >= C`` means all labels,
    i.e. the full KL; ties resolve to the smaller class index); :math:`P_{\cdot,topk}` is the
    softmax over the k selected logits.

    .. math:: L_{vlprox} = \frac{1}{|K|}\sum_{i \in K} \mathrm{KL}(P_{T,topk}(x_i) \,\|\, P_{S,topk}(x_i)),
              \quad K = \{i : I(x_i) = 1\}

    with :math:`I(x) = 1[\arg\max_y P_T(y|x) = \mathrm{label}(x)]` when ``filter=True`` (else K is
    the whole batch). The mean is over the kept samples only; a batch where the filter keeps
    nothing gives an exact 0 with a gradient path (the official code returns NaN there).
    ``k = 1`` always gives 0 (a softmax over one entry is 1).
    """
    _check_features(student, "student")
    _check_features(teacher, "teacher")
    _check_features(text, "text")
    _check_same_batch(student, teacher, "student", "teacher")
    _check_same_dim(student, teacher, "student", "teacher")
    _check_same_dim(student, text, "student", "text")
    labels = _check_labels(labels, student.shape[0], text.shape[0], student.device)
    k = _check_k(k)
    return _vlprox_core(
        _normalize(student), _normalize(teacher), _normalize(text), labels, k, _check_tau(tau), bool(filter)
    )


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
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Weighted sum of named loss terms: :math:`L = \sum_n w_n L_n`, n in :data:`LOSS_NAMES`.

    ``weights`` maps names (``"cls"``, ``"mse"``, ``"im_cst"``, ``"vlprox"``) to non-negative
    finite weights; the official code uses 1.0 for every term that is on. Terms with weight 0 are
    neither computed nor returned. Returns ``(total, {name: unweighted term})``.

    ``im_cst_filter=True`` restricts L_im-cst to the teacher-correct samples (the same I(x) as
    L_vlprox; Table 9, "with filtering in L_im-cst"). ``teacher``, ``text`` and ``labels`` are
    needed only by the terms that use them (cls: text, labels; mse / im_cst: teacher;
    vlprox: all three; im_cst_filter: all three).
    """
    if not isinstance(weights, Mapping):
        raise ValueError(f"weights must be a mapping name -> weight, e.g. {{'cls': 1, 'im_cst': 1}}, got {weights!r}")
    unknown = sorted(set(weights) - set(LOSS_NAMES))
    if unknown:
        raise ValueError(f"unknown loss name(s) {unknown}; valid names are {list(LOSS_NAMES)}")
    active: dict[str, float] = {}
    for name in LOSS_NAMES:
        if name not in weights:
            continue
        w = weights[name]
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"weight of {name!r} must be a finite number >= 0, got {w!r}")
        if w > 0:
            active[name] = float(w)
    if not active:
        raise ValueError(f"no loss term has a positive weight (got {dict(weights)}); switch on at least one of {list(LOSS_NAMES)}")
    if im_cst_mode not in _IM_CST_MODES:
        raise ValueError(f"im_cst_mode must be one of {_IM_CST_MODES}, got {im_cst_mode!r}")
    tau = _check_tau(tau)
    k = _check_k(k)

    need_teacher = bool({"mse", "im_cst", "vlprox"} & set(active))
    need_text = bool({"cls", "vlprox"} & set(active)) or ("im_cst" in active and im_cst_filter)
    _check_features(student, "student")
    s = _normalize(student)
    t = e = y = None
    if need_teacher:
        if teacher is None:
            raise ValueError(f"teacher features are required by the terms {sorted(active)}; pass teacher=[B, D]")
        _check_features(teacher, "teacher")
        _check_same_batch(student, teacher, "student", "teacher")
        _check_same_dim(student, teacher, "student", "teacher")
        t = _normalize(teacher)
    if need_text:
        if text is None or labels is None:
            raise ValueError(f"text features and labels are required by the terms {sorted(active)}; pass text=[C, D] and labels=[B]")
        _check_features(text, "text")
        _check_same_dim(student, text, "student", "text")
        y = _check_labels(labels, student.shape[0], text.shape[0], student.device)
        e = _normalize(text)
    if "im_cst" in active and im_cst_filter and t is None:
        raise ValueError("im_cst_filter=True needs teacher features")

    terms: dict[str, Tensor] = {}
    for name in active:
        if name == "cls":
            terms[name] = _cls_core(s, e, y, tau)
        elif name == "mse":
            terms[name] = _mse_core(s, t)
        elif name == "im_cst":
            keep = _teacher_correct_core(t, e, y) if im_cst_filter else None
            terms[name] = _im_cst_core(s, t, tau, im_cst_mode, keep)
        else:
            terms[name] = _vlprox_core(s, t, e, y, k, tau, bool(filter))
    total = sum((active[n] * terms[n] for n in terms), start=s.new_zeros(()))
    return total, terms
