"""Losses beyond the paper's four: L_cap (Eq. 8, Table 5) and the field's feature / relation losses
(CLIP-KD's FD, ICL and CRD, Yang et al., CVPR 2024; RKD, Park et al., CVPR 2019).

Per loss: a pure core on normalised tensors, the registered term (a function of
:class:`~vldlib.core.losses.registry.LossInputs`), and the validating public function on raw
features. ICL and CRD are vision-only forms (our student has no text tower): each docstring
states the choice.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vldlib.core.checks import check_nonnegative
from vldlib.core.losses.registry import LossInputs, loss_inputs, register_loss

__all__ = ["cap_loss", "fd_loss", "icl_loss", "crd_loss", "rkd_loss", "RKD_WEIGHTS"]

#: Park et al.'s weights of the distance and angle terms inside :func:`rkd_loss` (their KD setting).
RKD_WEIGHTS: tuple[float, float] = (25.0, 50.0)
#: The official code's mask value for L_cap's same-class off-diagonal entries.
_MASK = -1e7


# --------------------------------------------------------------------------- cores on normalised input
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


# --------------------------------------------------------------------------- registered terms
@register_loss("cap", needs=("captions", "labels"), label="L_cap")
def cap_term(x: LossInputs) -> Tensor:
    """L_cap (Eq. 8, as the official code computes it) of the batch: see :func:`cap_loss`."""
    return _cap_core(x.student, x.captions, x.labels)


@register_loss("fd", needs=("teacher",), label="FD (CLIP-KD)")
def fd_term(x: LossInputs) -> Tensor:
    """CLIP-KD's FD of the batch: see :func:`fd_loss`."""
    return _fd_core(x.student, x.teacher)


@register_loss("icl", needs=("text", "labels"), label="ICL (CLIP-KD)")
def icl_term(x: LossInputs) -> Tensor:
    """CLIP-KD's ICL (vision-only form) of the batch: see :func:`icl_loss`."""
    return _icl_core(x.student, x.text, x.labels, x.tau)


@register_loss("crd", needs=("teacher",), label="CRD affinity (CLIP-KD)")
def crd_term(x: LossInputs) -> Tensor:
    """CLIP-KD's CRD-style affinity distillation of the batch: see :func:`crd_loss`."""
    return _crd_core(x.student, x.teacher, x.tau)


@register_loss("rkd", needs=("teacher",), label="RKD (Park et al.)", cost=1.8)
def rkd_term(x: LossInputs) -> Tensor:
    """RKD with Park et al.'s weights :data:`RKD_WEIGHTS` of the batch: see :func:`rkd_loss`.
    Its B³ angles make a CPU run about 1.8x slower (``cost``)."""
    return _rkd_core(x.student, x.teacher, *RKD_WEIGHTS)


# --------------------------------------------------------------------------- public losses on raw features
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
    return cap_term(loss_inputs(("captions", "labels"), student=student, captions=captions, labels=labels))


def fd_loss(student: Tensor, teacher: Tensor) -> Tensor:
    r"""FD, CLIP-KD's feature distillation (Yang et al., CVPR 2024, Eq. "L_FD"), image side only.

    .. math:: L_{FD} = \frac{1}{B\,D}\sum_i \lVert \hat s_i - \hat t_i \rVert_2^2 = L_{mse} / D

    CLIP-KD computes ``F.mse_loss`` of the normalised student and teacher embeddings (mean over
    elements, not summed over dimensions as L_mse is), and adds the same term for the text
    tower, which a vision-only student does not have. So FD is L_mse scaled by 1/D: the two
    losses differ only in weight (CLIP-KD uses a weight of 2000; here that is the config
    weight's job). Returns a scalar in [0, 4/D].
    """
    return fd_term(loss_inputs(("teacher",), student=student, teacher=teacher))


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
    return icl_term(loss_inputs(("text", "labels"), student=student, text=text, labels=labels, tau=tau))


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
    return crd_term(loss_inputs(("teacher",), student=student, teacher=teacher, tau=tau))


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
    x = loss_inputs(("teacher",), student=student, teacher=teacher)
    hint = " (Park et al. use 25 / 50)"
    w_dist, w_angle = check_nonnegative(w_dist, "w_dist", hint), check_nonnegative(w_angle, "w_angle", hint)
    return _rkd_core(x.student, x.teacher, w_dist, w_angle)
