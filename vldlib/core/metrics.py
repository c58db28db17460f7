"""The paper's evaluation and analysis metrics (Li et al., ICCV 2023; developer reference paper.md §3).

Pure functions on tensors: no data, no models, no I/O. All feature inputs are raw; every metric
is defined on **L2-normalised** features (x̂ = x / max(‖x‖₂, 1e-12)). For unit vectors
‖â − b̂‖² = 2 − 2 â·b̂, so "nearest by L2 distance" is "largest dot product"; the code ranks by dot
products. Scaling a *query* row does not change the ranking over candidates, so only the
candidate side is normalised explicitly; the result is the same as on normalised features.

Scale: the paper evaluates up to 314k images of dimension 768, so no N x N matrix is ever built.
Similarities are computed in row chunks ``[c, N]``; ``chunk_size=None`` picks c so that one chunk
and its temporaries stay within :data:`DEFAULT_CHUNK_BYTES` (256 MiB). CPU and CUDA tensors work
alike (computation happens on the inputs' device, in float32, or float64 if an input is float64).

Input checks (shapes, dtypes, finite values, class indices) are :mod:`vldlib.core.checks`, shared
with the losses. Ties are deterministic: whenever several candidates are equally near, **the smaller index wins**
(nearest neighbours, top-k label lists, zero-shot argmax).

- :func:`feature_error`            Table 2: (mse, angle in degrees)
- :func:`m_rel`                    Eq. 4
- :func:`m_neigh`                  Eq. 5
- :func:`m_vlalign`                Eq. 7
- :func:`mean_per_class_accuracy`  all result tables (fraction, not %)
- :func:`zero_shot_predict`        argmax cosine against class texts
- :func:`text_spectrum`            Fig. 4
- :func:`mean_pairwise_cosine`     Table 6
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from vldlib.core.checks import (check_count, check_finite_norms, check_indices, check_matrix, check_same_dim,
                                check_same_rows)

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "feature_error",
    "m_rel",
    "m_neigh",
    "m_vlalign",
    "mean_per_class_accuracy",
    "per_class_accuracy",
    "zero_shot_predict",
    "text_spectrum",
    "mean_pairwise_cosine",
]

DEFAULT_CHUNK_BYTES: int = 256 * 2**20
_EPS = 1e-12


# --------------------------------------------------------------------------- helpers
def _work_dtype(*xs: Tensor) -> torch.dtype:
    return torch.float64 if any(x.dtype == torch.float64 for x in xs) else torch.float32


def _features(x: object, name: str, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """Validate ``[N, D]`` features; return (x in the working dtype, row norms clamped to eps)."""
    x = check_matrix(x, name, rows="N", row_is="item").detach()
    x = x.to(dtype or _work_dtype(x))
    norms = torch.linalg.vector_norm(x, dim=1)
    check_finite_norms(norms, name)
    return x, norms.clamp_min(_EPS)


def _pair(a: object, b: object, na: str, nb: str, same_rows: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    dtype = _work_dtype(*(t for t in (a, b) if isinstance(t, Tensor)))
    a, an = _features(a, na, dtype)
    b, bn = _features(b, nb, dtype)
    check_same_dim(a, b, na, nb)
    if same_rows:
        check_same_rows(a, b, na, nb)
    return a, an, b, bn


def _ks(k: object, upper: int, what: str) -> tuple[list[int], bool]:
    """Normalise k (int or sequence) to a list; return (ks, scalar?)."""
    scalar = isinstance(k, numbers.Integral) and not isinstance(k, bool)
    ks = [k] if scalar else (list(k) if isinstance(k, Sequence) and not isinstance(k, str) else None)
    if not ks:
        raise ValueError(f"k must be an int >= 1 or a non-empty sequence of ints, got {k!r}")
    ks = [check_count(v, "k", " (or a sequence of them)") for v in ks]
    for v in ks:
        if v > upper:
            raise ValueError(f"k={v} is too large: at most {upper} {what}")
    return list(dict.fromkeys(ks)), scalar  # duplicates dropped, order kept


def _chunk_rows(n_cols: int, elem_bytes: int, chunk_size: int | None, factor: int = 3) -> int:
    """Rows per chunk: explicit ``chunk_size``, else a [c, n_cols] block (x factor temporaries) within the budget."""
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
        return chunk_size
    return max(1, DEFAULT_CHUNK_BYTES // (max(1, n_cols) * elem_bytes * factor))


def _topk_smallest_index_first(sim: Tensor, k: int) -> Tensor:
    """Indices ``[c, k]`` of each row's k largest entries, in decreasing value; ties -> smaller index first.

    ``torch.topk`` does not specify which of several equal entries it returns, nor their order. It
    is asked for k + 1 entries (sorted); a row whose returned values contain two equal neighbours
    has a tie inside the top k or at its boundary, and only such rows are redone with a stable
    full sort, which puts equal values in increasing index order.
    """
    kk = min(k + 1, sim.shape[1])
    vals, idx = sim.topk(kk, dim=1)
    idx = idx[:, :k]
    if kk > 1:
        tied = (vals[:, 1:] == vals[:, :-1]).any(dim=1)
        if bool(tied.any()):
            rows = tied.nonzero().squeeze(1)
            idx[rows] = sim[rows].sort(dim=1, descending=True, stable=True).indices[:, :k]
    return idx


def _top_small_k_inplace(sim: Tensor, k: int) -> Tensor:
    """Like :func:`_topk_smallest_index_first` for a small k, by k rounds of argmax; overwrites ``sim``.

    ``argmax`` returns the first maximal index, and each round masks the winner with -inf, so
    equal values come out in increasing index order. Faster than ``topk`` for k <= ~8 on CPU.
    """
    idx = torch.empty((sim.shape[0], k), dtype=torch.long, device=sim.device)
    for j in range(k):
        best = sim.argmax(dim=1, keepdim=True)
        idx[:, j : j + 1] = best
        sim.scatter_(1, best, -math.inf)
    return idx


def _chunked_products(a: Tensor, b_T: Tensor, step: int) -> Iterator[tuple[int, int, Tensor]]:
    """Yield ``(r0, r1, a[r0:r1] @ b_T)`` in row chunks; the product lives in one reused buffer."""
    n = a.shape[0]
    buf = torch.empty((min(step, n), b_T.shape[1]), dtype=a.dtype, device=a.device)
    for r0 in range(0, n, step):
        r1 = min(r0 + step, n)
        out = buf[: r1 - r0]
        torch.mm(a[r0:r1], b_T, out=out)
        yield r0, r1, out


# --------------------------------------------------------------------------- Table 2
def feature_error(student: Tensor, teacher: Tensor, chunk_size: int | None = None) -> tuple[float, float]:
    r"""Table 2: mean squared distance of normalised features and its angle equivalent.

    .. math:: \mathrm{mse} = \frac1N\sum_i \lVert \hat s_i - \hat t_i\rVert_2^2 \;(= L_{mse},\ Eq.\ 2),\qquad
              \mathrm{angle} = \frac{180}{\pi}\arccos(1 - \mathrm{mse}/2)

    (the published pairs decode this way, e.g. 0.24 -> 28.4°). Returns ``(mse, angle_deg)``,
    mse in [0, 4], angle in [0, 180]. The sum is accumulated in float64 over row chunks.
    """
    s, sn, t, tn = _pair(student, teacher, "student", "teacher", same_rows=True)
    total = torch.zeros((), dtype=torch.float64, device=s.device)
    step = _chunk_rows(s.shape[1], s.element_size(), chunk_size, factor=4)
    for r0 in range(0, s.shape[0], step):
        r1 = min(r0 + step, s.shape[0])
        d = s[r0:r1] / sn[r0:r1, None] - t[r0:r1] / tn[r0:r1, None]
        total += d.pow(2).sum(dtype=torch.float64)
    mse = float(total) / s.shape[0]
    angle = math.degrees(math.acos(min(1.0, max(-1.0, 1.0 - mse / 2.0))))
    return mse, angle


# --------------------------------------------------------------------------- Eq. 4
def m_rel(student: Tensor, teacher: Tensor, chunk_size: int | None = None) -> float:
    r"""M_rel (paper Eq. 4): fraction of images whose nearest teacher feature is their own.

    .. math:: M_{rel}(X) = \frac{1}{|X|}\sum_i 1\big[i = \arg\min_j \lVert \hat t_j - \hat s_i\rVert_2^2\big]

    j ranges over the whole set X (not a batch); ties -> the smaller j. Value in [0, 1], higher is
    better. Row-chunked (``chunk_size`` rows of student at a time).
    """
    s, _, t, tn = _pair(student, teacher, "student", "teacher", same_rows=True)
    n = s.shape[0]
    t_hat_T = (t / tn[:, None]).T
    step = _chunk_rows(n, s.element_size(), chunk_size, factor=1)
    hits = torch.zeros((), dtype=torch.long, device=s.device)
    for r0, r1, sim in _chunked_products(s, t_hat_T, step):
        nearest = sim.argmax(dim=1)  # argmax returns the first maximal index
        hits += (nearest == torch.arange(r0, r1, device=s.device)).sum()
    return int(hits) / n


# --------------------------------------------------------------------------- Eq. 5
def _knn_indices(x: Tensor, xn: Tensor, k: int, chunk_size: int | None) -> Tensor:
    """``[N, k]`` ids of each row's k nearest other rows (self excluded), nearest first, ties -> smaller id."""
    n = x.shape[0]
    x_hat_T = (x / xn[:, None]).T
    step = _chunk_rows(n, x.element_size(), chunk_size, factor=2)
    out = torch.empty((n, k), dtype=torch.long, device=x.device)
    for r0, r1, sim in _chunked_products(x, x_hat_T, step):
        sim.diagonal(offset=r0).fill_(-math.inf)  # exclude i itself
        out[r0:r1] = _topk_smallest_index_first(sim, k)
    return out


def m_neigh(
    student: Tensor, teacher: Tensor, k: int | Sequence[int], chunk_size: int | None = None
) -> float | dict[int, float]:
    r"""M_neigh (paper Eq. 5): overlap of the k-NN sets in student and teacher space.

    .. math:: M_{neigh}(X, k) = \frac{1}{k|X|}\sum_i \big|\mathrm{KNN}(S, x_i, k) \cap \mathrm{KNN}(T, x_i, k)\big|

    KNN(S, x_i, k): the k images j != i whose normalised student features are nearest (L2) to
    ŝ_i; the same in teacher space; ties -> smaller j. ``k`` an int gives a float, a sequence
    (e.g. ``(3, 5, 10)``) gives ``{k: value}`` from a single top-k pass. Values in [0, 1], higher is
    better. Needs ``k <= N - 1``.
    """
    s, sn, t, tn = _pair(student, teacher, "student", "teacher", same_rows=True)
    n = s.shape[0]
    ks, scalar = _ks(k, n - 1, "(N - 1 other images)")
    kmax = max(ks)
    nn_s = _knn_indices(s, sn, kmax, chunk_size)
    nn_t = _knn_indices(t, tn, kmax, chunk_size)
    result: dict[int, float] = {}
    for kk in ks:
        a, b = nn_s[:, :kk], nn_t[:, :kk]
        # neighbour ids within a row are distinct, so counting equal pairs counts the intersection
        inter = sum(int((a == b[:, j : j + 1]).sum()) for j in range(kk))
        result[kk] = inter / (kk * n)
    return result[ks[0]] if scalar else result


# --------------------------------------------------------------------------- Eq. 7
def m_vlalign(
    student: Tensor, teacher: Tensor, text: Tensor, k: int | Sequence[int], chunk_size: int | None = None
) -> float | dict[int, float]:
    r"""M_vlalign (paper Eq. 7): mean number of reverse pairs of student distances (lower is better).

    I(i, k): the k labels whose normalised text features ê_y are nearest to the teacher image
    feature t̂_i, by increasing distance (ties -> smaller label index).
    :math:`arrS(i,k)_p = \lVert \hat s_i - \hat e_{I(i,k)_p}\rVert_2`.

    .. math:: M_{vlalign}(X, k) = \frac{1}{|X|}\sum_i \#\{(p, q): p < q,\ arrS(i,k)_p > arrS(i,k)_q\}

    ``text`` ``[C, D]`` is the label set of the split. Values in [0, k(k-1)/2]; ``k`` an int gives a
    float, a sequence gives ``{k: value}`` from one pass. Needs ``k <= C``.
    """
    dtype = _work_dtype(*(x for x in (student, teacher, text) if isinstance(x, Tensor)))
    s, _, t, _ = _pair(student, teacher, "student", "teacher", same_rows=True)
    e, en = _features(text, "text", dtype)
    check_same_dim(s, e, "student", "text")
    n, c = s.shape[0], e.shape[0]
    ks, scalar = _ks(k, c, "(number of label texts)")
    kmax = max(ks)
    e_hat_T = (e / en[:, None]).T
    step = _chunk_rows(c, s.element_size(), chunk_size, factor=4)
    totals = {kk: torch.zeros((), dtype=torch.long, device=s.device) for kk in ks}
    for (r0, r1, sim_t), (_, _, sim_s) in zip(
        _chunked_products(t, e_hat_T, step), _chunked_products(s, e_hat_T, step)
    ):
        # nearest label first; the buffer sim_t is not needed afterwards, so it may be overwritten
        order = _top_small_k_inplace(sim_t, kmax) if kmax <= 8 else _topk_smallest_index_first(sim_t, kmax)
        # larger dot <=> smaller distance, so a_p > a_q  <=>  dot_p < dot_q
        dots = sim_s.gather(1, order)
        # rev[:, q] = #{p < q : dot_p < dot_q}; the count for k is the sum of rev[:, :k]
        rev = torch.zeros_like(order)
        for q in range(1, kmax):
            rev[:, q] = (dots[:, :q] < dots[:, q : q + 1]).sum(dim=1)
        csum = rev.sum(dim=0).cumsum(0)
        for kk in ks:
            totals[kk] += csum[kk - 1]
    result = {kk: int(v) / n for kk, v in totals.items()}
    return result[ks[0]] if scalar else result


# --------------------------------------------------------------------------- accuracy
def per_class_accuracy(pred: Tensor, labels: Tensor, num_classes: int | None = None) -> Tensor:
    r"""Top-1 accuracy of each class, as fractions in [0, 1] (``float64 [num_classes]``).

    .. math:: \mathrm{acc}_y = \frac{|\{i: \mathrm{label}_i = y,\ \mathrm{pred}_i = y\}|}{|\{i: \mathrm{label}_i = y\}|}

    Classes with no sample in ``labels`` are NaN. ``num_classes`` defaults to ``max(labels) + 1``
    and must cover every label.
    """
    check_indices(pred, "pred")
    check_indices(labels, "labels")
    if pred.shape != labels.shape:
        raise ValueError(f"pred has {pred.shape[0]} entries but labels has {labels.shape[0]}; they must match")
    if labels.numel() == 0:
        raise ValueError("labels is empty; accuracy needs at least one sample")
    if int(labels.min()) < 0:
        raise ValueError("labels must be non-negative class indices")
    labels = labels.long()
    pred = pred.to(labels.device).long()
    n_cls = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if n_cls < int(labels.max()) + 1:
        raise ValueError(f"num_classes={num_classes} is smaller than the largest label + 1 ({int(labels.max()) + 1})")
    count = torch.bincount(labels, minlength=n_cls).double()
    correct = torch.bincount(labels[pred == labels], minlength=n_cls).double()
    return torch.where(count > 0, correct / count.clamp(min=1), torch.full_like(count, float("nan")))


def mean_per_class_accuracy(pred: Tensor, labels: Tensor) -> float:
    r"""Mean per-class top-1 accuracy (balanced accuracy), as a fraction in [0, 1].

    .. math:: \mathrm{acc} = \frac{1}{|Y'|}\sum_{y \in Y'} \frac{|\{i: \mathrm{label}_i = y,\ \mathrm{pred}_i = y\}|}{|\{i: \mathrm{label}_i = y\}|}

    Y' is the set of classes present in ``labels`` (the mean of :func:`per_class_accuracy` over the
    classes that have samples). Multiply by 100 for the paper's tables.
    """
    acc = per_class_accuracy(pred, labels)
    return float(acc[~torch.isnan(acc)].mean())


def zero_shot_predict(image_feats: Tensor, text_feats: Tensor, chunk_size: int | None = None) -> Tensor:
    r"""Zero-shot class prediction: :math:`\hat y_i = \arg\max_y \cos(x_i, e_y)` (ties -> smaller y).

    Returns a LongTensor ``[N]`` on the features' device.
    """
    x, _, e, en = _pair(image_feats, text_feats, "image_feats", "text_feats", same_rows=False)
    e_hat_T = (e / en[:, None]).T
    step = _chunk_rows(e.shape[0], x.element_size(), chunk_size, factor=1)
    return torch.cat([(x[r0 : r0 + step] @ e_hat_T).argmax(dim=1) for r0 in range(0, x.shape[0], step)])


# --------------------------------------------------------------------------- language space (§5.2)
def text_spectrum(text_feats: Tensor, normalize: bool = True) -> Tensor:
    r"""Fig. 4: singular values of the mean-centred text features, in decreasing order.

    With :math:`X` the ``[C, D]`` features (each row L2-normalised first if ``normalize``), returns
    the singular values of :math:`X - \mathbf 1 \bar x^\top` (``min(C, D)`` values, float).
    """
    x, n = _features(text_feats, "text_feats")
    if normalize:
        x = x / n[:, None]
    return torch.linalg.svdvals(x - x.mean(dim=0, keepdim=True))


def mean_pairwise_cosine(text_feats: Tensor) -> float:
    r"""Table 6: mean cosine similarity over all ordered pairs of distinct text features.

    .. math:: \frac{1}{C(C-1)}\sum_{i \ne j}\hat e_i\cdot\hat e_j
              = \frac{\lVert\sum_i \hat e_i\rVert^2 - \sum_i\lVert\hat e_i\rVert^2}{C(C-1)}

    computed in O(CD) via the right-hand side (float64). Needs C >= 2; value in [-1/(C-1), 1].
    """
    x, n = _features(text_feats, "text_feats", torch.float64)
    c = x.shape[0]
    if c < 2:
        raise ValueError(f"mean_pairwise_cosine needs at least 2 text features, got {c}")
    e = x / n[:, None]
    total = e.sum(dim=0).pow(2).sum() - e.pow(2).sum()
    return float(total) / (c * (c - 1))
