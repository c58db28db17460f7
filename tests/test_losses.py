"""Tests of vldlib.losses against slow references written directly from the paper's formulas (§2)."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vldlib.core import losses as L

TAU = 0.07


# --------------------------------------------------------------------------- references (loops)
def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / math.sqrt(sum(float(x) ** 2 for x in v))


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(sum(float(x) * float(y) for x, y in zip(_unit(a), _unit(b))))


def ref_cls(s, e, y, tau=TAU) -> float:
    total = 0.0
    for i in range(s.shape[0]):
        z = [_cos(s[i], e[c]) / tau for c in range(e.shape[0])]
        total += -(z[int(y[i])] - math.log(sum(math.exp(v) for v in z)))
    return total / s.shape[0]


def ref_mse(s, t) -> float:
    total = 0.0
    for i in range(s.shape[0]):
        a, b = _unit(s[i]), _unit(t[i])
        total += sum((float(a[d]) - float(b[d])) ** 2 for d in range(s.shape[1]))
    return total / s.shape[0]


def ref_im_cst(s, t, tau=TAU, mode="bidirectional") -> float:
    b = s.shape[0]
    m = [[_cos(s[i], t[j]) / tau for j in range(b)] for i in range(b)]
    s2t = sum(-(m[i][i] - math.log(sum(math.exp(m[i][j]) for j in range(b)))) for i in range(b)) / b
    if mode == "single":
        return s2t
    t2s = sum(-(m[j][j] - math.log(sum(math.exp(m[i][j]) for i in range(b)))) for j in range(b)) / b
    return 0.5 * (s2t + t2s)


def ref_vlprox(s, t, e, y, k=256, tau=TAU, filt=True) -> float:
    c = e.shape[0]
    kept = []
    for i in range(s.shape[0]):
        zt = [_cos(t[i], e[j]) / tau for j in range(c)]
        zs = [_cos(s[i], e[j]) / tau for j in range(c)]
        best = max(range(c), key=lambda j: (zt[j], -j))
        if filt and best != int(y[i]):
            continue
        top = sorted(range(c), key=lambda j: (-zt[j], j))[: min(k, c)]
        nt = sum(math.exp(zt[j]) for j in top)
        ns = sum(math.exp(zs[j]) for j in top)
        kl = 0.0
        for j in top:
            pt, ps = math.exp(zt[j]) / nt, math.exp(zs[j]) / ns
            kl += pt * (math.log(pt) - math.log(ps))
        kept.append(kl)
    return sum(kept) / len(kept) if kept else 0.0


def _data(b: int, c: int, d: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(b, d, generator=g, dtype=dtype) * 3
    s = t + torch.randn(b, d, generator=g, dtype=dtype) * 2
    e = torch.randn(c, d, generator=g, dtype=dtype)
    y = torch.randint(0, c, (b,), generator=g)
    return s, t, e, y


SHAPES = [(1, 2, 3), (5, 3, 4), (8, 7, 16), (13, 20, 5)]


# --------------------------------------------------------------------------- against the references
@pytest.mark.parametrize("b,c,d", SHAPES)
def test_cls_matches_reference(b, c, d):
    s, _, e, y = _data(b, c, d, seed=b + c)
    assert float(L.cls_loss(s, e, y)) == pytest.approx(ref_cls(s, e, y), rel=1e-9, abs=1e-12)
    assert float(L.cls_loss(s, e, y, tau=0.5)) == pytest.approx(ref_cls(s, e, y, 0.5), rel=1e-9)


@pytest.mark.parametrize("b,c,d", SHAPES)
def test_mse_matches_reference(b, c, d):
    s, t, _, _ = _data(b, c, d, seed=3 * b)
    assert float(L.mse_loss(s, t)) == pytest.approx(ref_mse(s, t), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("mode", ["bidirectional", "single"])
@pytest.mark.parametrize("b,c,d", SHAPES)
def test_im_cst_matches_reference(b, c, d, mode):
    s, t, _, _ = _data(b, c, d, seed=5 * b + 1)
    assert float(L.im_cst_loss(s, t, mode=mode)) == pytest.approx(ref_im_cst(s, t, mode=mode), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("filt", [True, False])
@pytest.mark.parametrize("k", [1, 2, 5, 256])
@pytest.mark.parametrize("b,c,d", SHAPES)
def test_vlprox_matches_reference(b, c, d, k, filt):
    s, t, e, _ = _data(b, c, d, seed=7 * b + c)
    # make about half the labels teacher-correct so the filter keeps some and drops some
    y = (t @ torch.nn.functional.normalize(e, dim=1).T).argmax(1)
    y[::2] = (y[::2] + 1) % c
    got = float(L.vlprox_loss(s, t, e, y, k=k, filter=filt))
    assert got == pytest.approx(ref_vlprox(s, t, e, y, k=k, filt=filt), rel=1e-9, abs=1e-12)


# --------------------------------------------------------------------------- hand-worked cases
def test_identical_features_give_zero_mse_and_vlprox():
    s, _, e, y = _data(6, 4, 8, seed=1)
    assert float(L.mse_loss(s, 2.5 * s)) == pytest.approx(0.0, abs=1e-12)
    assert float(L.vlprox_loss(s, s, e, y, filter=False)) == pytest.approx(0.0, abs=1e-12)


def test_mse_is_two_minus_two_cos():
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    # row 0: cos = 1/sqrt2 -> 2 - sqrt2 ; row 1: cos = -1 -> 4
    assert float(L.mse_loss(s, t)) == pytest.approx((2 - math.sqrt(2) + 4) / 2, rel=1e-6)


def test_cls_two_classes_by_hand():
    s = torch.tensor([[1.0, 0.0]])
    e = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # cosines 1 and 0
    # true class 1 (cosine 0): -log(e^0 / (e^{1/tau} + e^0)) = log(1 + e^{1/tau})
    want = math.log(1.0 + math.exp(1 / TAU))
    assert float(L.cls_loss(s, e, torch.tensor([1]))) == pytest.approx(want, rel=1e-6)


def test_im_cst_single_sample_is_zero():
    s, t, _, _ = _data(1, 2, 5, seed=2)
    assert float(L.im_cst_loss(s, t)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("filt", [True, False])
def test_k1_vlprox_is_zero(filt):
    s, t, e, y = _data(9, 6, 7, seed=4)
    y = (t @ torch.nn.functional.normalize(e, dim=1).T).argmax(1)
    out = L.vlprox_loss(s, t, e, y, k=1, filter=filt)
    assert float(out) == 0.0


def test_vlprox_k_at_least_classes_is_full_kl():
    s, t, e, y = _data(10, 5, 6, seed=8)
    full = L.vlprox_loss(s, t, e, y, k=5, filter=False)
    assert torch.equal(full, L.vlprox_loss(s, t, e, y, k=1000, filter=False))
    pt = torch.softmax(torch.nn.functional.normalize(t, dim=1) @ torch.nn.functional.normalize(e, dim=1).T / TAU, 1)
    ps = torch.softmax(torch.nn.functional.normalize(s, dim=1) @ torch.nn.functional.normalize(e, dim=1).T / TAU, 1)
    want = (pt * (pt.log() - ps.log())).sum(1).mean()
    assert float(full) == pytest.approx(float(want), rel=1e-9)


def test_vlprox_mean_is_over_kept_samples_only():
    s, t, e, _ = _data(8, 4, 6, seed=9)
    correct = (t @ torch.nn.functional.normalize(e, dim=1).T).argmax(1)
    y = correct.clone()
    y[1:] = (y[1:] + 1) % 4  # only sample 0 is teacher-correct
    one = L.vlprox_loss(s[:1], t[:1], e, y[:1], filter=False)
    assert float(L.vlprox_loss(s, t, e, y)) == pytest.approx(float(one), rel=1e-12)


def test_vlprox_teacher_tie_resolves_to_smaller_class():
    t = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    e = torch.eye(3, dtype=torch.float64)  # classes 0 and 1 tie for the teacher
    s = torch.tensor([[0.3, -0.2, 0.5]], dtype=torch.float64)
    assert bool(L.teacher_correct(t, e, torch.tensor([0]))) and not bool(L.teacher_correct(t, e, torch.tensor([1])))
    assert float(L.vlprox_loss(s, t, e, torch.tensor([1]))) == 0.0  # filtered out
    # k=2 keeps classes {0, 1}; k=1 of a tie keeps class 0 only -> 0 either way for k=1
    assert float(L.vlprox_loss(s, t, e, torch.tensor([0]), k=2)) == pytest.approx(
        ref_vlprox(s, t, e, torch.tensor([0]), k=2), rel=1e-12
    )


def test_empty_filter_gives_exact_zero_with_gradient_path():
    s, t, e, _ = _data(6, 5, 4, seed=10)
    wrong = ((t @ torch.nn.functional.normalize(e, dim=1).T).argmax(1) + 1) % 5
    s = s.clone().requires_grad_(True)
    out = L.vlprox_loss(s, t, e, wrong)
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and float(s.grad.abs().max()) == 0.0
    # the same through the combiner, and for a filtered L_im-cst
    s.grad = None
    total, terms = L.combined_loss({"vlprox": 1, "im_cst": 1}, student=s, teacher=t, text=e, labels=wrong, im_cst_filter=True)
    assert terms["vlprox"].item() == 0.0 and terms["im_cst"].item() == 0.0
    total.backward()
    assert torch.isfinite(s.grad).all()


# --------------------------------------------------------------------------- gradients
def _gc(fn, *xs):
    xs = [x.detach().clone().requires_grad_(True) for x in xs]
    assert torch.autograd.gradcheck(fn, xs, eps=1e-6, atol=1e-5, fast_mode=True)


def test_gradcheck_every_loss():
    s, t, e, _ = _data(5, 4, 6, seed=11)
    y = (t @ torch.nn.functional.normalize(e, dim=1).T).argmax(1)
    y[0] = (y[0] + 1) % 4
    _gc(lambda a, c: L.cls_loss(a, c, y), s, e)
    _gc(L.mse_loss, s, t)
    _gc(lambda a, b: L.im_cst_loss(a, b), s, t)
    _gc(lambda a, b: L.im_cst_loss(a, b, mode="single"), s, t)
    keep = torch.tensor([True, False, True, True, False])
    _gc(lambda a, b: L.im_cst_loss(a, b, keep=keep), s, t)
    for k in (2, 256):
        for filt in (True, False):
            _gc(lambda a, c: L.vlprox_loss(a, t, c, y, k=k, filter=filt), s, e)
    _gc(
        lambda a, b: L.combined_loss({"cls": 1, "mse": 0.5, "im_cst": 2, "vlprox": 1}, student=a, teacher=b, text=e, labels=y)[0],
        s,
        t,
    )


# --------------------------------------------------------------------------- combiner
def test_combined_loss_is_weighted_sum_of_terms():
    s, t, e, y = _data(7, 5, 6, seed=12)
    w = {"cls": 1.0, "mse": 0.5, "im_cst": 2.0, "vlprox": 3.0}
    total, terms = L.combined_loss(w, student=s, teacher=t, text=e, labels=y, k=3, filter=False, im_cst_mode="single")
    assert set(terms) == set(L.PAPER_LOSS_NAMES)
    assert torch.equal(terms["cls"], L.cls_loss(s, e, y))
    assert torch.equal(terms["mse"], L.mse_loss(s, t))
    assert torch.equal(terms["im_cst"], L.im_cst_loss(s, t, mode="single"))
    assert torch.equal(terms["vlprox"], L.vlprox_loss(s, t, e, y, k=3, filter=False))
    assert float(total) == pytest.approx(sum(w[n] * float(terms[n]) for n in w), rel=1e-12)


def test_combined_loss_skips_zero_weights_and_needs_only_used_inputs():
    s, t, _, _ = _data(4, 3, 5, seed=13)
    total, terms = L.combined_loss({"mse": 1, "cls": 0}, student=s, teacher=t)
    assert list(terms) == ["mse"] and torch.equal(total, terms["mse"])


def test_combined_loss_im_cst_filter_uses_teacher_correct_rows():
    s, t, e, _ = _data(9, 4, 6, seed=14)
    y = (t @ torch.nn.functional.normalize(e, dim=1).T).argmax(1)
    y[::3] = (y[::3] + 1) % 4
    _, terms = L.combined_loss({"im_cst": 1}, student=s, teacher=t, text=e, labels=y, im_cst_filter=True)
    keep = L.teacher_correct(t, e, y)
    assert 0 < int(keep.sum()) < 9
    assert float(terms["im_cst"]) == pytest.approx(ref_im_cst(s[keep], t[keep]), rel=1e-9)


@pytest.mark.parametrize(
    "weights,match",
    [
        ({"cls": 1, "foo": 1}, "unknown loss name"),
        ({"mse": -1}, ">= 0"),
        ({"mse": float("nan")}, ">= 0"),
        ({"mse": 0, "cls": 0}, "positive weight"),
        ({}, "positive weight"),
    ],
)
def test_combined_loss_bad_weights(weights, match):
    s, t, e, y = _data(4, 3, 5, seed=15)
    with pytest.raises(ValueError, match=match):
        L.combined_loss(weights, student=s, teacher=t, text=e, labels=y)


def test_combined_loss_missing_inputs():
    s, t, _, _ = _data(4, 3, 5, seed=16)
    with pytest.raises(ValueError, match="text features and labels are required"):
        L.combined_loss({"cls": 1}, student=s, teacher=t)
    with pytest.raises(ValueError, match="teacher features are required"):
        L.combined_loss({"mse": 1}, student=s)


# --------------------------------------------------------------------------- bad input
def _bad_cases():
    s, t, e, y = _data(4, 3, 5, seed=17, dtype=torch.float32)
    nan = s.clone()
    nan[1, 2] = float("nan")
    inf = t.clone()
    inf[0, 0] = float("inf")
    return [
        ("mismatched dims", lambda: L.mse_loss(s, t[:, :4]), "dimensions differ"),
        ("mismatched batch", lambda: L.im_cst_loss(s, t[:3]), "row counts differ"),
        ("1-D input", lambda: L.mse_loss(s[0], t[0]), "2-D"),
        ("empty", lambda: L.mse_loss(s[:0], t[:0]), "empty"),
        ("nan", lambda: L.mse_loss(nan, t), "NaN"),
        ("inf", lambda: L.vlprox_loss(s, inf, e, y), "NaN or inf"),
        ("label range", lambda: L.cls_loss(s, e, y + 3), r"\[0, 2\]"),
        ("negative label", lambda: L.cls_loss(s, e, y - 5), r"\[0, 2\]"),
        ("label shape", lambda: L.cls_loss(s, e, y[:2]), "shape"),
        ("float labels", lambda: L.cls_loss(s, e, y.float()), "integer"),
        ("k < 1", lambda: L.vlprox_loss(s, t, e, y, k=0), "k must be"),
        ("tau", lambda: L.cls_loss(s, e, y, tau=0.0), "tau"),
        ("mode", lambda: L.im_cst_loss(s, t, mode="double"), "mode"),
        ("text dim", lambda: L.cls_loss(s, e[:, :2], y), "dimensions differ"),
        ("int features", lambda: L.mse_loss(s.long(), t.long()), "floating"),
    ]


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
def test_bad_input_raises_value_error(case):
    _, fn, match = case
    with pytest.raises(ValueError, match=match):
        fn()


def test_losses_keep_input_dtype():
    for dtype in (torch.float32, torch.float64):
        s, t, e, y = _data(4, 3, 5, seed=18, dtype=dtype)
        total, terms = L.combined_loss({n: 1 for n in L.LOSS_NAMES}, student=s, teacher=t, text=e, labels=y,
                                       captions=t.flip(0))
        assert set(terms) == set(L.LOSS_NAMES)
        assert total.dtype == dtype and all(v.dtype == dtype for v in terms.values())


# --------------------------------------------------------------------------- properties
def _all_terms(s, t, e, y, c=None, **kw):
    c = t.roll(1, 0) if c is None else c  # any per-image caption features
    _, terms = L.combined_loss({n: 1 for n in L.LOSS_NAMES}, student=s, teacher=t, text=e, labels=y, k=3,
                               captions=c, **kw)
    return torch.stack([terms[n] for n in L.LOSS_NAMES])


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 9),
    c=st.integers(2, 6),
    d=st.integers(1, 6),
    seed=st.integers(0, 10_000),
    filt=st.booleans(),
)
def test_property_batch_permutation_invariance(b, c, d, seed, filt):
    s, t, e, y = _data(b, c, d, seed)
    perm = torch.randperm(b, generator=torch.Generator().manual_seed(seed + 1))
    a = _all_terms(s, t, e, y, filter=filt, im_cst_filter=filt)
    c = t.roll(1, 0)
    p = _all_terms(s[perm], t[perm], e, y[perm], c[perm], filter=filt, im_cst_filter=filt)
    torch.testing.assert_close(a, p, rtol=1e-9, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 9),
    c=st.integers(2, 6),
    d=st.integers(1, 6),
    seed=st.integers(0, 10_000),
    log_scale=st.floats(-6, 6),
)
def test_property_rescaling_invariance_and_ranges(b, c, d, seed, log_scale):
    s, t, e, y = _data(b, c, d, seed)
    g = torch.Generator().manual_seed(seed + 2)
    row_scale = lambda n: torch.exp(torch.rand(n, 1, generator=g, dtype=torch.float64) * 2 + log_scale)  # noqa: E731
    a = _all_terms(s, t, e, y)
    r = _all_terms(s * row_scale(b), t * row_scale(b), e * row_scale(c), y, t.roll(1, 0) * row_scale(b))
    torch.testing.assert_close(a, r, rtol=1e-7, atol=1e-9)
    v = dict(zip(L.LOSS_NAMES, a.tolist()))
    assert v["cls"] >= 0 and 0 <= v["mse"] <= 4 + 1e-12 and v["im_cst"] >= 0 and v["vlprox"] >= -1e-12
    assert v["cap"] >= 0 and 0 <= v["fd"] <= 4 / d + 1e-12 and v["icl"] >= 0 and v["crd"] >= -1e-12
    assert v["rkd"] >= 0


# --------------------------------------------------------------------------- L_cap and the field's losses
def ref_cap(s, c, y) -> float:
    """paper.md §2.5: C_ij = cos(s_i, c_j), no τ; j != i of the same class left out; CE to i."""
    b = s.shape[0]
    total = 0.0
    for i in range(b):
        keys = [j for j in range(b) if j == i or int(y[j]) != int(y[i])]
        z = {j: _cos(s[i], c[j]) for j in keys}
        total += -(z[i] - math.log(sum(math.exp(v) for v in z.values())))
    return total / b


def ref_fd(s, t) -> float:
    return ref_mse(s, t) / s.shape[1]


def ref_icl(s, e, y, tau=TAU) -> float:
    b = s.shape[0]
    z = [[_cos(s[i], e[int(y[j])]) / tau for j in range(b)] for i in range(b)]
    ok = lambda i, j: i == j or int(y[i]) != int(y[j])  # noqa: E731
    rows = sum(-(z[i][i] - math.log(sum(math.exp(z[i][j]) for j in range(b) if ok(i, j)))) for i in range(b))
    cols = sum(-(z[j][j] - math.log(sum(math.exp(z[i][j]) for i in range(b) if ok(i, j)))) for j in range(b))
    return 0.5 * (rows + cols) / b


def ref_crd(s, t, tau=TAU) -> float:
    b = s.shape[0]
    if b < 2:
        return 0.0
    total = 0.0
    for i in range(b):
        others = [j for j in range(b) if j != i]
        zt = [_cos(t[i], t[j]) / tau for j in others]
        zs = [_cos(s[i], s[j]) / tau for j in others]
        nt, ns = sum(math.exp(v) for v in zt), sum(math.exp(v) for v in zs)
        for a, c in zip(zt, zs):
            pt, ps = math.exp(a) / nt, math.exp(c) / ns
            total += pt * (math.log(pt) - math.log(ps))
    return total / b


def _huber(a: float, b: float) -> float:
    d = abs(a - b)
    return 0.5 * d * d if d < 1 else d - 0.5


def ref_rkd(s, t, w_d=25.0, w_a=50.0) -> float:
    """Park et al. (CVPR 2019), their code's means: all B^2 pairs, all B^3 triplets."""
    b = s.shape[0]
    if b < 2:
        return 0.0
    us = [_unit(s[i]).tolist() for i in range(b)]
    ut = [_unit(t[i]).tolist() for i in range(b)]

    def dist(u, i, j):
        return math.sqrt(sum((x - y) ** 2 for x, y in zip(u[i], u[j])))

    def diff_unit(u, i, j):  # unit(u_i - u_j), 0 when i == j
        d = [x - y for x, y in zip(u[i], u[j])]
        n = math.sqrt(sum(x * x for x in d))
        return [x / n for x in d] if n > 0 else [0.0] * len(d)

    pairs = [(i, j) for i in range(b) for j in range(b) if i != j]
    mu_s = sum(dist(us, i, j) for i, j in pairs) / len(pairs)
    mu_t = sum(dist(ut, i, j) for i, j in pairs) / len(pairs)
    l_d = sum(_huber(dist(us, i, j) / mu_s, dist(ut, i, j) / mu_t) for i, j in pairs) / b**2
    l_a = 0.0
    if b >= 3:
        for j in range(b):
            for i in range(b):
                for k in range(b):
                    a_s = sum(x * y for x, y in zip(diff_unit(us, i, j), diff_unit(us, k, j)))
                    a_t = sum(x * y for x, y in zip(diff_unit(ut, i, j), diff_unit(ut, k, j)))
                    l_a += _huber(a_s, a_t)
        l_a /= b**3
    return w_d * l_d + w_a * l_a


@pytest.mark.parametrize("b,c,d", SHAPES)
def test_cap_matches_reference(b, c, d):
    s, t, _, y = _data(b, c, d, seed=b + 30)
    assert float(L.cap_loss(s, t, y)) == pytest.approx(ref_cap(s, t, y), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("b,c,d", SHAPES)
def test_fd_icl_crd_match_references(b, c, d):
    s, t, e, y = _data(b, c, d, seed=b + 40)
    assert float(L.fd_loss(s, t)) == pytest.approx(ref_fd(s, t), rel=1e-9, abs=1e-12)
    assert float(L.icl_loss(s, e, y)) == pytest.approx(ref_icl(s, e, y), rel=1e-9, abs=1e-12)
    assert float(L.crd_loss(s, t)) == pytest.approx(ref_crd(s, t), rel=1e-9, abs=1e-12)
    assert float(L.crd_loss(s, t, tau=0.5)) == pytest.approx(ref_crd(s, t, 0.5), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("b,c,d", [(1, 2, 3), (2, 2, 3), (5, 3, 4), (9, 4, 6)])
def test_rkd_matches_reference(b, c, d):
    s, t, _, _ = _data(b, c, d, seed=b + 50)
    assert float(L.rkd_loss(s, t)) == pytest.approx(ref_rkd(s, t), rel=1e-8, abs=1e-12)
    assert float(L.rkd_loss(s, t, 1.0, 0.0)) == pytest.approx(ref_rkd(s, t, 1.0, 0.0), rel=1e-8, abs=1e-12)


def test_cap_masks_same_class_captions_and_has_no_temperature():
    s, t, _, _ = _data(4, 2, 5, seed=60)
    # all one class: only the own caption is left, so the loss is exactly 0
    assert float(L.cap_loss(s, t, torch.zeros(4, dtype=torch.long))) == 0.0
    # two images, different classes: CE over [cos(s0,c0), cos(s0,c1)] with no 1/τ
    y = torch.tensor([0, 1])
    z = [_cos(s[0], t[0]), _cos(s[0], t[1])]
    z1 = [_cos(s[1], t[0]), _cos(s[1], t[1])]
    want = 0.5 * (-(z[0] - math.log(math.exp(z[0]) + math.exp(z[1])))
                  - (z1[1] - math.log(math.exp(z1[0]) + math.exp(z1[1]))))
    assert float(L.cap_loss(s[:2], t[:2], y)) == pytest.approx(want, rel=1e-12)


def test_icl_row_half_is_cls_over_the_batch_classes_counted_by_multiplicity():
    s, _, e, _ = _data(6, 3, 5, seed=61)
    y = torch.tensor([0, 1, 2, 0, 1, 0])
    rows = L.icl_loss(s, e, y) * 2 - _icl_cols(s, e, y)
    counts = torch.bincount(y, minlength=3).double()
    z = torch.nn.functional.normalize(s, dim=1) @ torch.nn.functional.normalize(e, dim=1).T / TAU
    want = 0.0
    for i in range(6):
        n = counts.clone()
        n[y[i]] = 1.0  # the other images of the own class are masked out
        want += float(-(z[i, y[i]] - torch.logsumexp(z[i] + n.log(), 0)))
    assert float(rows) == pytest.approx(want / 6, rel=1e-9)
    # with one image per class it is exactly L_cls
    y1 = torch.tensor([0, 1, 2])
    assert float(L.icl_loss(s[:3], e, y1) * 2 - _icl_cols(s[:3], e, y1)) == pytest.approx(
        float(L.cls_loss(s[:3], e, y1)), rel=1e-9)


def _icl_cols(s, e, y, tau=TAU) -> torch.Tensor:
    b = s.shape[0]
    total = 0.0
    for j in range(b):
        keys = [i for i in range(b) if i == j or int(y[i]) != int(y[j])]
        z = {i: _cos(s[i], e[int(y[j])]) / tau for i in keys}
        total += -(z[j] - math.log(sum(math.exp(v) for v in z.values())))
    return torch.tensor(total / b, dtype=torch.float64)


def test_fd_is_mse_over_dim_and_identical_features_give_zero():
    s, t, _, _ = _data(7, 3, 9, seed=62)
    assert float(L.fd_loss(s, t)) == pytest.approx(float(L.mse_loss(s, t)) / 9, rel=1e-12)
    for fn in (L.fd_loss, L.crd_loss, L.rkd_loss):
        assert float(fn(t * 3.0, t)) == pytest.approx(0.0, abs=1e-12)


def test_crd_and_rkd_single_image_is_exact_zero_with_gradient_path():
    s, t, _, _ = _data(1, 2, 4, seed=63)
    for fn in (L.crd_loss, L.rkd_loss):
        x = s.clone().requires_grad_(True)
        out = fn(x, t)
        out.backward()
        assert float(out) == 0.0 and x.grad is not None and torch.equal(x.grad, torch.zeros_like(x))


def test_gradcheck_new_losses():
    s, t, e, _ = _data(6, 3, 5, seed=64)
    y = torch.tensor([0, 1, 1, 2, 0, 2])
    _gc(lambda a, c: L.cap_loss(a, c, y), s, t)
    _gc(L.fd_loss, s, t)
    _gc(lambda a, c: L.icl_loss(a, c, y), s, e)
    _gc(L.crd_loss, s, t)
    _gc(L.rkd_loss, s, t)
    _gc(lambda a, b: L.combined_loss({"cls": 1, "cap": 1, "fd": 2, "icl": 1, "crd": 1, "rkd": 0.5},
                                     student=a, teacher=b, text=e, labels=y, captions=t.flip(0))[0], s, t)


def test_combined_loss_extra_terms_equal_the_functions_and_cap_needs_captions():
    s, t, e, y = _data(7, 4, 6, seed=65)
    c = t.roll(2, 0)
    w = {"cls": 1.0, "cap": 0.5, "fd": 3.0, "icl": 1.0, "crd": 2.0, "rkd": 0.25}
    total, terms = L.combined_loss(w, student=s, teacher=t, text=e, labels=y, captions=c, tau=0.1)
    assert torch.equal(terms["cap"], L.cap_loss(s, c, y))
    assert torch.equal(terms["fd"], L.fd_loss(s, t))
    assert torch.equal(terms["icl"], L.icl_loss(s, e, y, tau=0.1))
    assert torch.equal(terms["crd"], L.crd_loss(s, t, tau=0.1))
    assert torch.equal(terms["rkd"], L.rkd_loss(s, t))
    assert float(total) == pytest.approx(sum(w[n] * float(terms[n]) for n in w), rel=1e-12)
    with pytest.raises(ValueError, match="needs captions"):
        L.combined_loss({"cap": 1}, student=s, teacher=t, text=e, labels=y)
    with pytest.raises(ValueError, match="teacher features are required"):
        L.combined_loss({"rkd": 1}, student=s)
    with pytest.raises(ValueError, match="text features and labels are required"):
        L.combined_loss({"icl": 1}, student=s, teacher=t)


def _bad_new_cases():
    s, t, e, y = _data(4, 3, 5, seed=66, dtype=torch.float32)
    return [
        ("cap batch", lambda: L.cap_loss(s, t[:3], y), "row counts differ"),
        ("cap dim", lambda: L.cap_loss(s, t[:, :2], y), "dimensions differ"),
        ("cap labels", lambda: L.cap_loss(s, t, y[:2]), "shape"),
        ("cap negative labels", lambda: L.cap_loss(s, t, y - 9), "must lie in"),
        ("cap float labels", lambda: L.cap_loss(s, t, y.float()), "integer"),
        ("fd dim", lambda: L.fd_loss(s, t[:, :4]), "dimensions differ"),
        ("icl labels", lambda: L.icl_loss(s, e, y + 3), r"\[0, 2\]"),
        ("icl tau", lambda: L.icl_loss(s, e, y, tau=-1), "tau"),
        ("crd batch", lambda: L.crd_loss(s, t[:2]), "row counts differ"),
        ("crd tau", lambda: L.crd_loss(s, t, tau=float("inf")), "tau"),
        ("rkd nan", lambda: L.rkd_loss(s * float("nan"), t), "NaN"),
        ("rkd weight", lambda: L.rkd_loss(s, t, w_dist=-1.0), "w_dist"),
    ]


@pytest.mark.parametrize("case", _bad_new_cases(), ids=lambda c: c[0])
def test_new_losses_bad_input(case):
    _, fn, match = case
    with pytest.raises(ValueError, match=match):
        fn()


def test_rkd_angle_through_the_gram_matrix_matches_the_difference_vectors_in_float32():
    """The O(B^3) Gram form of RKD's angle term against the O(B^3 D) form (Park et al.'s code)
    in float64, on a float32 batch with an exact duplicate (a zero difference vector)."""
    import torch.nn.functional as F

    def direct(x):
        d = F.normalize(x[None, :, :] - x[:, None, :], dim=2)
        return torch.bmm(d, d.transpose(1, 2)).reshape(-1)

    g = torch.Generator().manual_seed(7)
    s = torch.randn(48, 32, generator=g)
    t = torch.randn(48, 32, generator=g) + 1.0
    t[5] = t[6]
    s64 = s.double().requires_grad_()
    want = F.smooth_l1_loss(direct(F.normalize(s64, dim=1)), direct(F.normalize(t.double(), dim=1)))
    (g_want,) = torch.autograd.grad(want, s64)
    s32 = s.clone().requires_grad_()
    got = L.rkd_loss(s32, t, 0.0, 1.0)
    (g_got,) = torch.autograd.grad(got, s32)
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    assert torch.allclose(g_got.double(), g_want, rtol=1e-3, atol=1e-7)


# --------------------------------------------------------------------------- the registry
from vldlib.core.losses import registry as R  # noqa: E402


def test_loss_names_derive_from_the_registry_in_the_hashed_order():
    assert L.LOSS_NAMES == tuple(L.LOSSES) == ("cls", "mse", "im_cst", "vlprox", "cap", "fd", "icl", "crd", "rkd")
    assert L.PAPER_LOSS_NAMES == tuple(n for n, e in L.LOSSES.items() if e.main) == ("cls", "mse", "im_cst", "vlprox")
    assert L.LOSS_LABELS["im_cst"] == "L_im-cst" and L.LOSS_LABELS["rkd"] == "RKD (Park et al.)"
    assert L.losses_needing("captions") == ("cap",) and L.losses_needing("teacher") == ("mse", "im_cst", "vlprox",
                                                                                       "fd", "crd", "rkd")
    with pytest.raises(ValueError, match="unknown loss input 'caption'"):
        L.losses_needing("caption")


def test_method_label_joins_the_registry_labels_in_order():
    assert L.method_label({"im_cst": 1, "mse": 1.0, "cls": 1}) == "L_cls + L_mse + L_im-cst"
    assert L.method_label({"cls": 1, "fd": 2000.0, "vlprox": 0}) == "L_cls + 2000·FD (CLIP-KD)"
    with pytest.raises(ValueError, match="unknown loss name"):
        L.method_label({"kd": 1})


def test_a_new_loss_is_one_decorated_function(monkeypatch):
    """Registering a loss makes it a term of combined_loss, with only its declared inputs checked."""
    monkeypatch.setattr(R, "_REGISTRY", dict(R._REGISTRY))
    seen = {}

    @R.register_loss("cos_gap", needs=("teacher",), label="L_gap")
    def cos_gap(x: R.LossInputs):
        seen.update(text=x.text, labels=x.labels, captions=x.captions)
        return (1 - (x.student * x.teacher).sum(dim=1)).mean()

    s, t, e, y = _data(6, 3, 5, seed=90)
    bad_text = e[:, :2]  # would fail the dimension check, but no active term needs text
    total, terms = L.combined_loss({"cos_gap": 2.0, "mse": 1.0}, student=s, teacher=t, text=bad_text, labels=y)
    assert list(terms) == ["mse", "cos_gap"]  # the main four first, then registration order
    assert float(terms["cos_gap"]) == pytest.approx(float(L.mse_loss(s, t)) / 2, rel=1e-12)
    assert torch.equal(total, 1.0 * terms["mse"] + 2.0 * terms["cos_gap"])
    assert seen == {"text": None, "labels": None, "captions": None}  # undeclared inputs are not handed over
    with pytest.raises(ValueError, match=r"teacher features are required by the terms \['cos_gap'\]"):
        L.combined_loss({"cos_gap": 1.0}, student=s)


@pytest.mark.parametrize("kw,match", [
    (dict(name="cls"), "must be a new identifier"),
    (dict(name="my loss"), "must be a new identifier"),
    (dict(name="new", needs=("images",)), "needs must name inputs"),
    (dict(name="new", needs_if={"margin": ("text",)}), "needs_if options"),
])
def test_register_loss_rejects_bad_entries(monkeypatch, kw, match):
    monkeypatch.setattr(R, "_REGISTRY", dict(R._REGISTRY))
    with pytest.raises(ValueError, match=match):
        R.register_loss(**kw)


def test_combined_loss_names_the_terms_needing_a_missing_input():
    s, t, e, y = _data(4, 3, 5, seed=91)
    with pytest.raises(ValueError, match=r"required by the terms \['icl', 'vlprox'\]"):
        L.combined_loss({"mse": 1, "icl": 1, "vlprox": 1}, student=s, teacher=t, labels=y)
    with pytest.raises(ValueError, match=r"text features and labels are required by the terms \['im_cst'\]"):
        L.combined_loss({"im_cst": 1}, student=s, teacher=t, im_cst_filter=True)
    with pytest.raises(ValueError, match=r"labels are required by the terms \['cap'\]"):
        L.combined_loss({"cap": 1}, student=s, captions=t)


def test_loss_inputs_checks_once_and_normalises():
    s, t, e, y = _data(5, 4, 3, seed=92)
    x = L.loss_inputs(("teacher", "text", "labels"), student=s, teacher=t, text=e, labels=y.int(), tau=0.5)
    assert torch.allclose(x.student.norm(dim=1), torch.ones(5, dtype=s.dtype))
    assert x.labels.dtype == torch.long and x.captions is None and x.tau == 0.5
    with pytest.raises(AttributeError):
        x.tau = 1.0  # frozen: a loss cannot change the batch another loss sees
    with pytest.raises(L.NonFiniteInput, match="teacher contains NaN") as err:
        L.loss_inputs(("teacher",), student=s, teacher=t * float("nan"))
    assert err.value.name == "teacher"


def test_core_modules_are_at_most_450_lines():
    from pathlib import Path

    core = Path(L.__file__).resolve().parents[1]
    long = {p.relative_to(core).as_posix(): n for p in core.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450}
    assert long == {}


def test_method_label_gives_the_chapters_row_labels():
    """The labels the chapters write by hand (TABLE1_LABELS, field_losses' labels) follow from the
    registry, except the rows with a chapter-specific wording of L_cls alone."""
    from vldlib.study.chapters import TABLE1_LABELS, chapter
    from vldlib.study.reference import FIELD_LOSS_METHODS, TABLE1_METHODS

    for methods, labels in ((TABLE1_METHODS, TABLE1_LABELS), (FIELD_LOSS_METHODS, chapter("field_losses").labels)):
        for key, weights in methods.items():
            if key != "cls":
                assert L.method_label(weights) == labels[key], key
