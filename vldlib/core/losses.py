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
- :func:`cap_loss`      L_cap      (Eq. 8 as the official code computes it; Table 5)
- :func:`fd_loss`       FD         (CLIP-KD, Yang et al., CVPR 2024: feature distillation)
- :func:`icl_loss`      ICL        (CLIP-KD: interactive contrastive learning, vision-only form)
- :func:`crd_loss`      CRD        (CLIP-KD's contrastive relational / affinity distillation, vision-only form)
- :func:`rkd_loss`      RKD        (Park et al., CVPR 2019: distance + angle)
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
    "EXTRA_LOSS_NAMES",
    "IM_CST_MODES",
    "NonFiniteInput",
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
PAPER_LOSS_NAMES: tuple[str, ...] = ("cls", "mse", "im_cst", "vlprox")
#: Losses beyond the paper's main four: L_cap (Eq. 8, Table 5) and the field's feature/relation
#: losses (CLIP-KD's FD, ICL, CRD; Park et al.'s RKD). Part of a run's hash only when switched on.
EXTRA_LOSS_NAMES: tuple[str, ...] = ("cap", "fd", "icl", "crd", "rkd")
#: Every loss :func:`combined_loss` knows, the one list the config and the run store read.
LOSS_NAMES: tuple[str, ...] = PAPER_LOSS_NAMES + EXTRA_LOSS_NAMES
#: Park et al.'s weights of the distance and angle terms inside :func:`rkd_loss` (their KD setting).
RKD_WEIGHTS: tuple[float, float] = (25.0, 50.0)
IM_CST_MODES: tuple[str, ...] = ("bidirectional", "single")
_IM_CST_MODES = IM_CST_MODES


# --------------------------------------------------------------------------- validation helpers
class NonFiniteInput(ValueError):
    """An input feature tensor holding NaN or inf; ``name`` says which (``"student"``, ``"teacher"``,
    ``"text"``, ``"captions"``), so that a trainer can tell a diverging student from bad features."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


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
        hint = ("the student's outputs diverged: lower the learning rate or raise tau" if name == "student"
                else "check where these features come from (the teacher, its feature cache)")
        raise NonFiniteInput(f"{name} contains NaN or inf values; {hint}", name)
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


#: The official code's mask value for L_cap's same-class off-diagonal entries.
_MASK = -1e7


def _same_class_offdiag(labels: Tensor) -> Tensor:
    """``M[i, j] = (i != j) and labels[i] == labels[j]``: the entries L_cap / ICL mask out."""
    same = labels[:, None] == labels[None, :]
    return same & ~torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)


def _cap_core(s: Tensor, c: Tensor, labels: Tensor) -> Tensor:
    logits = (s @ c.T).masked_fill(_same_class_offdiag(labels), _MASK)
    return F.cross_entropy(logits, torch.arange(s.shape[0], device=s.device))


def _fd_core(s: Tensor, t: Tensor) -> Tensor:
    return (s - t).pow(2).mean()


def _icl_core(s: Tensor, e: Tensor, labels: Tensor, tau: float) -> Tensor:
    logits = (s @ e[labels].T / tau).masked_fill(_same_class_offdiag(labels), _MASK)
    target = torch.arange(s.shape[0], device=s.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def _crd_core(s: Tensor, t: Tensor, tau: float) -> Tensor:
    b = s.shape[0]
    if b < 2:
        return (s * 0.0).sum() + (t * 0.0).sum()  # no pair: exact 0, gradient path kept
    off = ~torch.eye(b, dtype=torch.bool, device=s.device)  # the diagonal (self-affinity) is no pair
    log_pt = F.log_softmax((t @ t.T / tau)[off].reshape(b, b - 1), dim=1)
    log_ps = F.log_softmax((s @ s.T / tau)[off].reshape(b, b - 1), dim=1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(dim=1).mean()


def _pdist(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Pairwise Euclidean distances with a zero diagonal (Park et al.'s ``pdist``)."""
    sq = x.pow(2).sum(dim=1)
    prod = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(eps).sqrt()
    return prod.masked_fill(torch.eye(x.shape[0], dtype=torch.bool, device=x.device), 0.0)


def _rkd_distance(s: Tensor, t: Tensor) -> Tensor:
    off = ~torch.eye(s.shape[0], dtype=torch.bool, device=s.device)
    ds, dt = _pdist(s), _pdist(t)
    ds = ds / ds[off].mean()
    dt = dt / dt[off].mean()
    return F.smooth_l1_loss(ds, dt)


def _rkd_angles(x: Tensor) -> Tensor:
    """ψ_A for every triplet of the unit-norm rows of ``x``, ``a[j, i, k] = <unit(x_i - x_j),
    unit(x_k - x_j)>``, 0 where a difference is (numerically) the zero vector. From the Gram
    matrix G = x xᵀ in O(B² D + B³): <x_i - x_j, x_k - x_j> = G_ik - G_ij - G_jk + G_jj and
    ||x_i - x_j||² = G_ii + G_jj - 2 G_ij, instead of normalising the B² difference vectors and
    multiplying them (O(B³ D); at B = 128, D = 384 about 9x slower on one CPU thread, with the same
    float32 error against a float64 reference). Differences with ||x_i - x_j||² < 8 eps (eps of
    the dtype; |G| <= 1 for unit rows) count as zero vectors: the Gram matrix cannot resolve them."""
    g = x @ x.T
    diag = g.diagonal()
    sq = (diag[:, None] + diag[None, :] - 2 * g).clamp_min(0)  # sq[j, i] = ||x_i - x_j||²
    tol = 8 * torch.finfo(x.dtype).eps
    inv = torch.where(sq < tol, torch.zeros_like(sq), sq.clamp_min(tol).rsqrt())
    num = g[None, :, :] - g[:, :, None] - g[:, None, :] + diag[:, None, None]  # num[j, i, k]
    return (num * inv[:, :, None] * inv[:, None, :]).reshape(-1)


def _rkd_angle(s: Tensor, t: Tensor) -> Tensor:
    return F.smooth_l1_loss(_rkd_angles(s), _rkd_angles(t))


def _rkd_core(s: Tensor, t: Tensor, w_dist: float, w_angle: float) -> Tensor:
    if s.shape[0] < 2:
        return (s * 0.0).sum() + (t * 0.0).sum()  # no pair: exact 0, gradient path kept
    out = (s * 0.0).sum()
    if w_dist:
        out = out + w_dist * _rkd_distance(s, t)
    if s.shape[0] >= 3 and w_angle:
        out = out + w_angle * _rkd_angle(s, t)
    return out


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


def cap_loss(student: Tensor, captions: Tensor, labels: Tensor) -> Tensor:
    r"""L_cap (paper Eq. 8, *as the official code computes it*): in-batch student-to-caption contrast.

    ``captions`` ``[B, D]`` holds the teacher text feature of each image's own caption (row i
    describes image i), ``labels`` ``[B]`` the class of each image. With
    :math:`C_{ij} = \cos(s_i, c_j)` (**no temperature**: the paper's Eq. 8 divides by τ, the
    official code does not) and the other captions of the same class masked out
    (:math:`C_{ij} = -10^7` for :math:`j \ne i,\ y_j = y_i`):

    .. math:: L_{cap} = \frac{1}{B}\sum_i -\log\frac{e^{C_{ii}}}{\sum_j e^{C_{ij}}}

    so the denominator holds the image's own caption and the captions of different-class images
    (developer reference paper.md §2.5). Labels may be any integers (only equality is used).
    """
    _check_features(student, "student")
    _check_features(captions, "captions")
    _check_same_batch(student, captions, "student", "captions")
    _check_same_dim(student, captions, "student", "captions")
    labels = _check_labels(labels, student.shape[0], _label_bound(labels), student.device)
    return _cap_core(_normalize(student), _normalize(captions), labels)


def fd_loss(student: Tensor, teacher: Tensor) -> Tensor:
    r"""FD, CLIP-KD's feature distillation (Yang et al., CVPR 2024, Eq. "L_FD"), image side only.

    .. math:: L_{FD} = \frac{1}{B\,D}\sum_i \lVert \hat s_i - \hat t_i \rVert_2^2 = L_{mse} / D

    CLIP-KD computes ``F.mse_loss`` of the normalised student and teacher embeddings (mean over
    elements, not summed over dimensions as L_mse is), and adds the same term for the text
    tower, which a vision-only student does not have. So FD is L_mse scaled by 1/D: the two
    losses differ only in weight (CLIP-KD uses a weight of 2000; here that is the config
    weight's job). Returns a scalar in [0, 4/D].
    """
    _check_features(student, "student")
    _check_features(teacher, "teacher")
    _check_same_batch(student, teacher, "student", "teacher")
    _check_same_dim(student, teacher, "student", "teacher")
    return _fd_core(_normalize(student), _normalize(teacher))


def icl_loss(student: Tensor, text: Tensor, labels: Tensor, tau: float = 0.07) -> Tensor:
    r"""ICL, CLIP-KD's interactive contrastive learning, in a form for a vision-only student.

    CLIP-KD contrasts the student's image embedding against the *teacher's* text embeddings of
    the batch (and the student's text against the teacher's images). Our student has no text
    tower and our images no captions of their own, so we define (our choice, stated here): the
    teacher text paired with image j is its class text :math:`e_{y_j}`;
    :math:`Z_{ij} = \cos(s_i, e_{y_j})/\tau`, with the other same-class entries masked out as in
    L_cap (:math:`Z_{ij} = -10^7` for :math:`j \ne i,\ y_j = y_i`), and both directions of the
    batch matrix are used (rows: student image → teacher texts; columns: teacher text → student
    images, the role CLIP-KD's student-text → teacher-image direction plays):

    .. math:: L_{ICL} = \tfrac12\Big[\frac1B\sum_i -\log\frac{e^{Z_{ii}}}{\sum_j e^{Z_{ij}}}
              + \frac1B\sum_j -\log\frac{e^{Z_{jj}}}{\sum_i e^{Z_{ij}}}\Big]

    The row half is L_cls over the classes present in the batch, each other class counted as
    often as it occurs there (exactly L_cls when each class occurs once); the column half is what
    is new: each class text must pick its image out of the batch's other-class student images.
    """
    _check_features(student, "student")
    _check_features(text, "text")
    _check_same_dim(student, text, "student", "text")
    labels = _check_labels(labels, student.shape[0], text.shape[0], student.device)
    return _icl_core(_normalize(student), _normalize(text), labels, _check_tau(tau))


def crd_loss(student: Tensor, teacher: Tensor, tau: float = 0.07) -> Tensor:
    r"""CRD-style affinity distillation (CLIP-KD's "CRD" term), in a form for a vision-only student.

    CLIP-KD matches the student's in-batch image-text affinity distribution to the teacher's with
    a KL divergence. With no student text tower we match the in-batch *image-image* affinities
    (our choice, stated here): for each image i, over the other images j ≠ i of the batch,

    .. math:: P_T(j|i) = \mathrm{softmax}_{j\ne i}(\cos(t_i, t_j)/\tau),\quad
              P_S(j|i) = \mathrm{softmax}_{j\ne i}(\cos(s_i, s_j)/\tau)

    .. math:: L_{CRD} = \frac1B\sum_i \mathrm{KL}(P_T(\cdot|i) \,\|\, P_S(\cdot|i))

    A batch of one image has no pair: the result is an exact 0 with a gradient path.
    """
    _check_features(student, "student")
    _check_features(teacher, "teacher")
    _check_same_batch(student, teacher, "student", "teacher")
    _check_same_dim(student, teacher, "student", "teacher")
    return _crd_core(_normalize(student), _normalize(teacher), _check_tau(tau))


def rkd_loss(student: Tensor, teacher: Tensor, w_dist: float = RKD_WEIGHTS[0],
             w_angle: float = RKD_WEIGHTS[1]) -> Tensor:
    r"""RKD, relational knowledge distillation (Park et al., CVPR 2019): distance + angle terms.

    On the normalised features, with :math:`\mu_x` the mean pairwise distance over pairs i ≠ j,
    :math:`\psi_D(x_i, x_j) = \lVert x_i - x_j\rVert / \mu_x` and
    :math:`\psi_A(x_i, x_j, x_k) = \langle \frac{x_i - x_j}{\lVert x_i - x_j\rVert},
    \frac{x_k - x_j}{\lVert x_k - x_j\rVert}\rangle`:

    .. math:: L_{RKD} = w_D\,\frac{1}{B^2}\sum_{i,j} \ell_\delta(\psi_D(s_i,s_j), \psi_D(t_i,t_j))
              + w_A\,\frac{1}{B^3}\sum_{i,j,k} \ell_\delta(\psi_A(s_i,s_j,s_k), \psi_A(t_i,t_j,t_k))

    with :math:`\ell_\delta` the Huber (smooth-L1, δ = 1) loss and, as in the authors' code, the
    means over all B² pairs (zero diagonal) and all B³ triplets (degenerate ones give 0 on both
    sides). ``w_D = 25``, ``w_A = 50`` by default (the authors' setting, :data:`RKD_WEIGHTS`).
    Fewer than 2 images give an exact 0; the angle term needs at least 3.
    """
    _check_features(student, "student")
    _check_features(teacher, "teacher")
    _check_same_batch(student, teacher, "student", "teacher")
    _check_same_dim(student, teacher, "student", "teacher")
    for name, w in (("w_dist", w_dist), ("w_angle", w_angle)):
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"{name} must be a finite number >= 0 (Park et al. use 25 / 50), got {w!r}")
    return _rkd_core(_normalize(student), _normalize(teacher), float(w_dist), float(w_angle))


def _label_bound(labels: object) -> int:
    """An upper bound for labels that only need to be integers (L_cap compares them, no text rows)."""
    if isinstance(labels, Tensor) and labels.numel() and not labels.is_floating_point() \
            and labels.dtype != torch.bool and not labels.is_complex():
        return int(labels.max()) + 1
    return 1


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
    r"""Weighted sum of named loss terms: :math:`L = \sum_n w_n L_n`, n in :data:`LOSS_NAMES`.

    ``weights`` maps names (``"cls"``, ``"mse"``, ``"im_cst"``, ``"vlprox"``, and the extra
    terms ``"cap"``, ``"fd"``, ``"icl"``, ``"crd"``, ``"rkd"``) to non-negative
    finite weights; the official code uses 1.0 for every term that is on. Terms with weight 0 are
    neither computed nor returned. Returns ``(total, {name: unweighted term})``.

    ``im_cst_filter=True`` restricts L_im-cst to the teacher-correct samples (the same I(x) as
    L_vlprox; Table 9, "with filtering in L_im-cst"). ``teacher``, ``text`` and ``labels`` are
    needed only by the terms that use them (cls: text, labels; mse / im_cst: teacher;
    vlprox: all three; im_cst_filter: all three; cap: captions ``[B, D]`` (each image's own
    caption feature) and labels; fd / crd / rkd: teacher; icl: text, labels).
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

    need_teacher = bool({"mse", "im_cst", "vlprox", "fd", "crd", "rkd"} & set(active))
    need_text = bool({"cls", "vlprox", "icl"} & set(active)) or ("im_cst" in active and im_cst_filter)
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
    c = None
    if "cap" in active:
        if captions is None or labels is None:
            raise ValueError("the term 'cap' needs captions=[B, D] (each image's caption feature) and labels=[B]")
        _check_features(captions, "captions")
        _check_same_batch(student, captions, "student", "captions")
        _check_same_dim(student, captions, "student", "captions")
        c = _normalize(captions)
        if y is None:
            y = _check_labels(labels, student.shape[0], _label_bound(labels), student.device)

    terms: dict[str, Tensor] = {}
    for name in active:
        if name == "cls":
            terms[name] = _cls_core(s, e, y, tau)
        elif name == "mse":
            terms[name] = _mse_core(s, t)
        elif name == "im_cst":
            keep = _teacher_correct_core(t, e, y) if im_cst_filter else None
            terms[name] = _im_cst_core(s, t, tau, im_cst_mode, keep)
        elif name == "vlprox":
            terms[name] = _vlprox_core(s, t, e, y, k, tau, bool(filter))
        elif name == "cap":
            terms[name] = _cap_core(s, c, y)
        elif name == "fd":
            terms[name] = _fd_core(s, t)
        elif name == "icl":
            terms[name] = _icl_core(s, e, y, tau)
        elif name == "crd":
            terms[name] = _crd_core(s, t, tau)
        else:
            terms[name] = _rkd_core(s, t, *RKD_WEIGHTS)
    total = sum((active[n] * terms[n] for n in terms), start=s.new_zeros(()))
    return total, terms
