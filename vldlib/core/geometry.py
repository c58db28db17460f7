"""Diagnosis metrics of a feature space's shape: how much a teacher's features vary, and how much of
that variation a student reproduces.

Pure functions on tensors (no data, no models, no I/O). Every function works on the
**L2-normalised** rows x̂ = x / max(‖x‖₂, 1e-12) of its ``[N, D]`` inputs (the space L_mse and the
zero-shot rule use), in float64, without any N x N matrix.

- :func:`mean_pairwise_cosine` (from :mod:`vldlib.core.metrics`, closed form, O(ND)): how narrow
  the cone of features is.
- :func:`mean_norm`: ‖mean x̂‖, 1 when all features coincide, about 0 when they spread evenly.
- :func:`variance_split`: the features' total variance split into between-class and within-class.
- :func:`explained_variance`: R², the share of the teacher's centred variance a student's features
  explain, directly in the same space or after a least-squares linear map.
- :func:`principal_zero_shot`: the zero-shot accuracy of features kept to their mean plus their top-k
  principal directions (how much of the ability lives in the largest directions of variation).
"""
from __future__ import annotations

import torch
from torch import Tensor

from vldlib.core.metrics import _features, mean_pairwise_cosine, mean_per_class_accuracy, zero_shot_predict

__all__ = ["mean_pairwise_cosine", "mean_norm", "variance_split", "explained_variance", "linear_map",
           "principal_zero_shot"]


def _unit(x: object, name: str) -> Tensor:
    f, n = _features(x, name, torch.float64)
    return f / n[:, None]


def _labels(labels: object, n: int) -> Tensor:
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.is_floating_point() or labels.shape[0] != n:
        raise ValueError(f"labels must be a 1-D integer tensor with one class index per feature row ({n})")
    if n and int(labels.min()) < 0:
        raise ValueError("labels must be non-negative class indices")
    return labels.long()


def mean_norm(features: Tensor) -> float:
    r"""Norm of the mean normalised feature, :math:`\lVert\frac1N\sum_i\hat x_i\rVert` in [0, 1].

    It ties to the mean pairwise cosine c: :math:`\lVert\bar x\rVert^2 = \frac{1 + (N-1)c}{N}`, and
    :math:`1 - \lVert\bar x\rVert^2` is the total variance of the normalised features (the most any
    student can explain beyond the mean).
    """
    return float(torch.linalg.vector_norm(_unit(features, "features").mean(0)))


def variance_split(features: Tensor, labels: Tensor) -> dict[str, float]:
    r"""Total variance of the normalised features and its between-/within-class parts.

    .. math:: \underbrace{\tfrac1N\sum_i\lVert\hat x_i-\bar x\rVert^2}_{\text{total}}
              = \underbrace{\tfrac1N\sum_c n_c\lVert\bar x_c-\bar x\rVert^2}_{\text{between}}
              + \underbrace{\tfrac1N\sum_c\sum_{i\in c}\lVert\hat x_i-\bar x_c\rVert^2}_{\text{within}}

    Returns ``{"total", "between", "within", "between_share"}`` (``between_share`` = between / total,
    0 when total is 0): the share of the variation that tells classes apart.
    """
    x = _unit(features, "features")
    y = _labels(labels, x.shape[0])
    mean = x.mean(0)
    total = float((x - mean).pow(2).sum(1).mean())
    classes = torch.unique(y)
    between = within = 0.0
    for c in classes.tolist():
        xc = x[y == c]
        mc = xc.mean(0)
        between += xc.shape[0] * float((mc - mean).pow(2).sum())
        within += float((xc - mc).pow(2).sum())
    n = x.shape[0]
    between, within = between / n, within / n
    return {"total": total, "between": between, "within": within,
            "between_share": between / total if total > 0 else 0.0}


def linear_map(source: Tensor, target: Tensor, ridge: float = 1e-6) -> tuple[Tensor, Tensor]:
    r"""Least-squares affine map from normalised ``source`` to normalised ``target`` rows:
    :math:`(W, b) = \arg\min \sum_i\lVert \hat s_i W + b - \hat t_i\rVert^2 + \lambda\lVert W\rVert^2`
    (ridge λ = ``ridge`` x N for a stable solve). Returns ``(W [D_s, D_t], b [D_t])`` in float64."""
    s, t = _unit(source, "source"), _unit(target, "target")
    if s.shape[0] != t.shape[0]:
        raise ValueError(f"source has {s.shape[0]} rows but target has {t.shape[0]}; row i of both is one image")
    sm, tm = s.mean(0), t.mean(0)
    sc, tc = s - sm, t - tm
    gram = sc.T @ sc + ridge * s.shape[0] * torch.eye(s.shape[1], dtype=s.dtype, device=s.device)
    w = torch.linalg.solve(gram, sc.T @ tc)
    return w, tm - sm @ w


def explained_variance(student: Tensor, teacher: Tensor, *, fit: tuple[Tensor, Tensor] | None = None,
                       ridge: float = 1e-6) -> float:
    r"""R²: the share of the teacher's centred variance that the student's features explain.

    .. math:: R^2 = 1 - \frac{\sum_i\lVert p_i - \hat t_i\rVert^2}{\sum_i\lVert\hat t_i - \bar t\rVert^2}

    with t̂ the normalised teacher rows and t̄ their mean over the rows given. ``fit=None``: **directly
    in the same space**, p_i = ŝ_i (the student's normalised feature, what L_mse compares; the
    student must have the teacher's dimension). A student that outputs the teacher's mean direction
    scores ``1 - 2(1-‖t̄‖)/(1-‖t̄‖²) <= 0``. ``fit=(student_fit, teacher_fit)``: **after a least-squares
    affine map** fitted on those other (training) images, p_i = ŝ_i W + b (:func:`linear_map`), so any
    student dimension works. Pass held-out images as ``student`` / ``teacher``. 1 is perfect; below 0
    is worse than predicting t̄.
    """
    t = _unit(teacher, "teacher")
    s = _unit(student, "student")
    if s.shape[0] != t.shape[0]:
        raise ValueError(f"student has {s.shape[0]} rows but teacher has {t.shape[0]}; row i of both is one image")
    if fit is None:
        if s.shape[1] != t.shape[1]:
            raise ValueError(f"student has D={s.shape[1]}, teacher D={t.shape[1]}: compare in the same space "
                             "only with equal dimensions, or pass fit=(student_fit, teacher_fit) for a linear map")
        pred = s
    else:
        w, b = linear_map(fit[0], fit[1], ridge)
        if w.shape != (s.shape[1], t.shape[1]):
            raise ValueError(f"fit features have D={w.shape[0]}->{w.shape[1]}, the evaluated ones "
                             f"{s.shape[1]}->{t.shape[1]}; pass the same student and teacher spaces")
        pred = s @ w.to(s.device) + b.to(s.device)
    sst = float((t - t.mean(0)).pow(2).sum())
    if sst <= 0:
        raise ValueError("the teacher features do not vary (all rows equal after normalisation): R² is undefined")
    return 1.0 - float((pred - t).pow(2).sum()) / sst


def principal_zero_shot(features: Tensor, text: Tensor, labels: Tensor, k: int, *,
                        basis: Tensor | None = None) -> float:
    r"""Zero-shot accuracy (mean per class, fraction) of the features kept to their mean and top-k
    principal directions.

    With x̂ the normalised rows, m and V_k the mean and the top-k right singular vectors of the centred
    normalised ``basis`` rows (default: ``features`` themselves),
    :math:`x'_i = m + (\hat x_i - m)V_kV_k^\top`, then :math:`\hat y_i = \arg\max_y\cos(x'_i, e_y)`.
    k = 0 keeps only the mean (every image gets one class: 1/C for C balanced classes); k >= D
    keeps everything (the plain zero-shot accuracy).
    """
    x = _unit(features, "features")
    y = _labels(labels, x.shape[0])
    b = x if basis is None else _unit(basis, "basis")
    if b.shape[1] != x.shape[1]:
        raise ValueError(f"basis has D={b.shape[1]} but features D={x.shape[1]}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be an integer >= 0 (principal directions kept), got {k!r}")
    m = b.mean(0)
    if k == 0:
        proj = m.expand_as(x)
    else:
        v = torch.linalg.svd(b - m, full_matrices=False).Vh[:k]
        proj = m + ((x - m) @ v.T) @ v
    return mean_per_class_accuracy(zero_shot_predict(proj, text.to(proj)), y)
