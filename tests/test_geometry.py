"""The diagnosis metrics of vldlib.core.geometry on synthetic features with known answers."""
from __future__ import annotations

import math

import pytest
import torch

from vldlib.core.geometry import (explained_variance, linear_map, mean_norm, mean_pairwise_cosine,
                                  principal_zero_shot, variance_split)


def _cone(n: int, d: int, cos: float, seed: int = 0) -> torch.Tensor:
    """n unit vectors a*u + b*e_i with e_i orthonormal and orthogonal to u: pairwise cosine exactly a²."""
    assert n + 1 <= d
    q, _ = torch.linalg.qr(torch.randn(d, n + 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    a = math.sqrt(cos)
    return (a * q[:, 0][None, :] + math.sqrt(1 - cos) * q[:, 1:].T) * 3.0  # scale: metrics normalise


def test_cone_metrics_known_answers():
    x = _cone(20, 32, 0.7)
    assert mean_pairwise_cosine(x) == pytest.approx(0.7, abs=1e-12)
    # ||mean||^2 = (1 + (N-1) c) / N
    assert mean_norm(x) == pytest.approx(math.sqrt((1 + 19 * 0.7) / 20), abs=1e-12)
    same = torch.ones(5, 4)
    assert mean_norm(same) == pytest.approx(1.0)
    opposite = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert mean_norm(opposite) == pytest.approx(0.0)


def test_variance_split_known_answer():
    # two classes at e1 and e2, no within-class spread: all variance is between classes
    x = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 2.0]] * 3)
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    out = variance_split(x, y)
    # mean (0.5, 0.5); each row at distance^2 0.5
    assert out["total"] == pytest.approx(0.5)
    assert out["between"] == pytest.approx(0.5)
    assert out["within"] == pytest.approx(0.0)
    assert out["between_share"] == pytest.approx(1.0)
    # one class label for all: all variance is within
    out = variance_split(x, torch.zeros(6, dtype=torch.long))
    assert out["between"] == pytest.approx(0.0) and out["within"] == pytest.approx(0.5)
    g = torch.Generator().manual_seed(1)
    z, lab = torch.randn(50, 8, generator=g), torch.randint(0, 4, (50,), generator=g)
    out = variance_split(z, lab)
    assert out["between"] + out["within"] == pytest.approx(out["total"], rel=1e-12)


def test_explained_variance_direct():
    t = _cone(20, 32, 0.7)
    assert explained_variance(t * 2.0, t) == pytest.approx(1.0)
    # a student at the teacher's mean direction: 1 - 2(1-|m|)/(1-|m|^2) < 0
    m = mean_norm(t)
    mean_only = t.mean(0, keepdim=True).expand_as(t)
    assert explained_variance(mean_only, t) == pytest.approx(1 - 2 * (1 - m) / (1 - m * m), abs=1e-9)
    assert explained_variance(mean_only, t) < 0
    with pytest.raises(ValueError, match="same space"):
        explained_variance(torch.randn(20, 5), t)


def test_explained_variance_after_linear_map():
    g = torch.Generator().manual_seed(0)
    teacher = torch.nn.functional.normalize(torch.randn(400, 6, generator=g, dtype=torch.float64), dim=-1)
    rot = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))[0]
    student = teacher @ rot  # an exact rotation of the teacher (unit rows): a linear map recovers it
    fit = (student[:300], teacher[:300])
    assert explained_variance(student[300:], teacher[300:], fit=fit) == pytest.approx(1.0, abs=1e-4)
    assert explained_variance(student[300:], teacher[300:]) < 0.5  # not in the same space directly
    noise = torch.randn(400, 3, generator=g, dtype=torch.float64)  # unrelated student: R^2 about 0 or below
    assert explained_variance(noise[300:], teacher[300:], fit=(noise[:300], teacher[:300])) < 0.1
    w, b = linear_map(student, teacher)
    assert w.shape == (6, 6) and b.shape == (6,)


def test_principal_zero_shot():
    # class c features = mean direction + a class direction; text = class directions
    g = torch.Generator().manual_seed(0)
    d, c = 16, 4
    basis = torch.linalg.qr(torch.randn(d, c + 1, generator=g))[0].T
    labels = torch.arange(c).repeat_interleave(25)
    feats = 3 * basis[0] + basis[1:][labels] + 0.01 * torch.randn(len(labels), d, generator=g)
    text = basis[1:]
    assert principal_zero_shot(feats, text, labels, k=0) == pytest.approx(1 / c)  # the mean only: one class
    assert principal_zero_shot(feats, text, labels, k=c - 1) == pytest.approx(1.0)  # class directions kept
    assert principal_zero_shot(feats, text, labels, k=d) == pytest.approx(1.0)
    assert principal_zero_shot(feats, text, labels, k=1) < 1.0  # one direction cannot tell 4 classes apart
    with pytest.raises(ValueError, match="k must be"):
        principal_zero_shot(feats, text, labels, k=-1)
