"""The diagnosis chapter's teacher measurements on features with known answers."""
from __future__ import annotations

import pytest
import torch

from vldlib.study.diagnosis import feature_geometry


def _world(spread: float, n: int = 40, d: int = 16, classes: int = 4, seed: int = 0):
    """Features of ``classes`` classes around orthogonal class directions (text = the directions),
    plus a common offset: ``spread`` scales the class part, so a small spread is a narrow cone."""
    g = torch.Generator().manual_seed(seed)
    text = torch.eye(d)[:classes]
    labels = torch.arange(n) % classes
    common = torch.zeros(d)
    common[-1] = 1.0
    feats = common + spread * text[labels] + 0.01 * torch.randn(n, d, generator=g)
    return feats, labels, text


def test_a_narrow_cone_is_measured_as_one_and_a_wide_world_as_separable():
    rows = {}
    for spread in (0.2, 5.0):
        feats, labels, text = _world(spread)
        parts = {"train": feats, "id": feats, "ood": feats}
        rows[spread] = feature_geometry(parts, {p: labels for p in parts}, text, text, ks=(1, 3))
    narrow, wide = rows[0.2], rows[5.0]
    assert narrow["mean_cos"] > 0.9 and narrow["mean_norm"] > 0.95  # all features near one direction
    assert wide["mean_cos"] < narrow["mean_cos"] and wide["mean_norm"] < narrow["mean_norm"]
    assert wide["between_share"] > 0.99  # the variance is the classes'
    assert wide["acc_id"] == pytest.approx(100.0) and wide["acc_ood_zeroshot"] == pytest.approx(100.0)
    assert wide["acc_ood_top3"] == pytest.approx(100.0)  # 4 classes: 3 directions around the mean suffice
    assert wide["acc_ood_top1"] < 100.0  # one direction cannot tell 4 classes apart
