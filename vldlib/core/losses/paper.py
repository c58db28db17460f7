"""The paper's four terms (Li et al., ICCV 2023, §3; Table 1): L_cls, L_mse, L_im-cst, L_vlprox.

Per loss: a pure core on normalised tensors, the registered term (a function of
:class:`~vldlib.core.losses.registry.LossInputs`), and the validating public function on raw
features. Notation: ŝ_i student feature, t̂_i the teacher image feature of the same image, ê_y
the teacher text feature of class y.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vldlib.core.checks import check_features, check_labels, check_same_dim
from vldlib.core.losses.registry import IM_CST_MODES, LossInputs, loss_inputs, register_loss

__all__ = ["cls_loss", "mse_loss", "im_cst_loss", "teacher_correct", "vlprox_loss"]


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


# --------------------------------------------------------------------------- registered terms
@register_loss("cls", needs=("text", "labels"), label="L_cls", main=True)
def cls_term(x: LossInputs) -> Tensor:
    """L_cls (Eq. 1) of the batch: see :func:`cls_loss`."""
    return _cls_core(x.student, x.text, x.labels, x.tau)


@register_loss("mse", needs=("teacher",), label="L_mse", main=True)
def mse_term(x: LossInputs) -> Tensor:
    """L_mse (Eq. 2) of the batch: see :func:`mse_loss`."""
    return _mse_core(x.student, x.teacher)


@register_loss("im_cst", needs=("teacher",), needs_if={"im_cst_filter": ("text", "labels")}, label="L_im-cst",
               main=True)
def im_cst_term(x: LossInputs) -> Tensor:
    """L_im-cst (Eq. 3) of the batch in ``x.im_cst_mode``, on the teacher-correct rows when
    ``x.im_cst_filter`` (Table 9): see :func:`im_cst_loss`."""
    keep = _teacher_correct_core(x.teacher, x.text, x.labels) if x.im_cst_filter else None
    return _im_cst_core(x.student, x.teacher, x.tau, x.im_cst_mode, keep)


@register_loss("vlprox", needs=("teacher", "text", "labels"), label="L_vlprox", main=True)
def vlprox_term(x: LossInputs) -> Tensor:
    """L_vlprox (Eq. 6) of the batch with ``x.k`` and ``x.filter``: see :func:`vlprox_loss`."""
    return _vlprox_core(x.student, x.teacher, x.text, x.labels, x.k, x.tau, x.filter)


# --------------------------------------------------------------------------- public losses on raw features
def cls_loss(student: Tensor, text: Tensor, labels: Tensor, tau: float = 0.07) -> Tensor:
    r"""L_cls (paper Eq. 1): cross-entropy of cosine logits against the class texts.

    .. math:: L_{cls} = \frac{1}{B}\sum_i -\log
        \frac{\exp(\cos(s_i, e_{y_i})/\tau)}{\sum_{y \in Y} \exp(\cos(s_i, e_y)/\tau)}

    ``student`` ``[B, D]``, ``text`` ``[C, D]`` (all training classes), ``labels`` ``[B]`` in
    ``0..C-1``. Returns a scalar.
    """
    return cls_term(loss_inputs(("text", "labels"), student=student, text=text, labels=labels, tau=tau))


def mse_loss(student: Tensor, teacher: Tensor) -> Tensor:
    r"""L_mse (paper Eq. 2): mean over the batch of the squared distance of normalised features.

    .. math:: L_{mse} = \frac{1}{B}\sum_i \lVert \hat s_i - \hat t_i \rVert_2^2
              = \frac{1}{B}\sum_i (2 - 2\cos(s_i, t_i))

    Summed over dimensions, averaged over the batch (the official code's quantity, and Table 2's
    "MSE"). Returns a scalar in [0, 4].
    """
    return mse_term(loss_inputs(("teacher",), student=student, teacher=teacher))


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
    if mode not in IM_CST_MODES:
        raise ValueError(f"mode must be one of {IM_CST_MODES}, got {mode!r}")
    x = loss_inputs(("teacher",), student=student, teacher=teacher, tau=tau, im_cst_mode=mode)
    if keep is not None:
        if not isinstance(keep, Tensor) or keep.dtype != torch.bool or tuple(keep.shape) != (student.shape[0],):
            raise ValueError(f"keep must be a boolean tensor of shape [{student.shape[0]}] or None")
    return _im_cst_core(x.student, x.teacher, x.tau, mode, keep)


def teacher_correct(teacher: Tensor, text: Tensor, labels: Tensor) -> Tensor:
    r"""The filter I(x) of Eq. 6: ``1[argmax_y cos(t, e_y) = label]`` as a boolean ``[B]`` tensor.

    Ties between classes resolve to the smaller class index.
    """
    check_features(teacher, "teacher")
    check_features(text, "text")
    check_same_dim(teacher, text, "teacher", "text")
    labels = check_labels(labels, teacher.shape[0], text.shape[0], teacher.device)
    return _teacher_correct_core(F.normalize(teacher, dim=-1), F.normalize(text, dim=-1), labels)


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
    return vlprox_term(loss_inputs(("teacher", "text", "labels"), student=student, teacher=teacher, text=text,
                                   labels=labels, k=k, tau=tau, filter=filter))
