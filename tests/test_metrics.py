"""Tests of vldlib.metrics against slow references written directly from the paper's definitions (§3)."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vldlib.core import metrics as M


# --------------------------------------------------------------------------- references (loops)
def _unit_rows(x: torch.Tensor) -> list[list[float]]:
    out = []
    for row in x.tolist():
        n = math.sqrt(sum(v * v for v in row))
        out.append([v / n for v in row])
    return out


def _sqdist(a: list[float], b: list[float]) -> float:
    return sum((x - y) ** 2 for x, y in zip(a, b))


def ref_m_rel(s, t) -> float:
    S, T = _unit_rows(s), _unit_rows(t)
    hits = 0
    for i in range(len(S)):
        d = [_sqdist(T[j], S[i]) for j in range(len(T))]
        hits += min(range(len(d)), key=lambda j: (d[j], j)) == i
    return hits / len(S)


def _knn_order(X: list[list[float]], i: int) -> list[int]:
    """All other ids by increasing distance to X[i], ties by smaller id."""
    return sorted((j for j in range(len(X)) if j != i), key=lambda j: (_sqdist(X[i], X[j]), j))


def ref_m_neigh(s, t, ks) -> dict[int, float]:
    """Eq. 5 for each k in ks (the k-NN set is the first k of the distance order)."""
    S, T = _unit_rows(s), _unit_rows(t)
    orders = [(_knn_order(S, i), _knn_order(T, i)) for i in range(len(S))]
    return {k: sum(len(set(a[:k]) & set(b[:k])) for a, b in orders) / (k * len(S)) for k in ks}


def ref_m_vlalign(s, t, e, k) -> float:
    S, T, E = _unit_rows(s), _unit_rows(t), _unit_rows(e)
    total = 0
    for i in range(len(S)):
        order = sorted(range(len(E)), key=lambda y: (_sqdist(T[i], E[y]), y))[:k]
        arr = [math.sqrt(_sqdist(S[i], E[y])) for y in order]
        total += sum(1 for p in range(k) for q in range(p + 1, k) if arr[p] > arr[q])
    return total / len(S)


def _feats(n: int, d: int, seed: int, noise: float = 1.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(n, d, generator=g, dtype=dtype)
    s = t + noise * torch.randn(n, d, generator=g, dtype=dtype)
    return s * 2.0, t * 0.5


SHAPES = [(2, 3), (9, 4), (37, 8), (60, 5)]


# --------------------------------------------------------------------------- against the references
@pytest.mark.parametrize("n,d", SHAPES)
def test_feature_error_matches_reference(n, d):
    s, t = _feats(n, d, seed=n)
    S, T = _unit_rows(s), _unit_rows(t)
    mse_ref = sum(_sqdist(a, b) for a, b in zip(S, T)) / n
    mse, ang = M.feature_error(s, t)
    assert mse == pytest.approx(mse_ref, rel=1e-12)
    assert M.feature_error(s, t, chunk_size=7) == pytest.approx((mse, ang), rel=1e-12)
    assert ang == pytest.approx(math.degrees(math.acos(1 - mse_ref / 2)), rel=1e-10)


@pytest.mark.parametrize("chunk", [None, 1, 5, 7])
@pytest.mark.parametrize("n,d", SHAPES)
def test_m_rel_matches_reference(n, d, chunk):
    s, t = _feats(n, d, seed=2 * n, noise=0.6)
    assert M.m_rel(s, t, chunk_size=chunk) == pytest.approx(ref_m_rel(s, t), abs=1e-15)


@pytest.mark.parametrize("chunk", [None, 1, 7])
@pytest.mark.parametrize("n,d", SHAPES)
def test_m_neigh_matches_reference(n, d, chunk):
    s, t = _feats(n, d, seed=3 * n, noise=0.5)
    ks = [k for k in (1, 3, 5, 10) if k <= n - 1]
    got = M.m_neigh(s, t, ks, chunk_size=chunk)
    assert list(got) == ks
    want = ref_m_neigh(s, t, ks)
    for k in ks:
        assert got[k] == pytest.approx(want[k], abs=1e-15)
        assert M.m_neigh(s, t, k, chunk_size=chunk) == got[k]


@pytest.mark.parametrize("chunk", [None, 1, 7])
@pytest.mark.parametrize("n,d,c", [(2, 3, 2), (9, 4, 6), (37, 8, 12), (60, 5, 7)])
def test_m_vlalign_matches_reference(n, d, c, chunk):
    s, t = _feats(n, d, seed=5 * n, noise=0.7)
    e = torch.randn(c, d, generator=torch.Generator().manual_seed(c), dtype=torch.float64) * 3
    ks = [k for k in (1, 2, 3, 5, 9, c) if k <= c]  # kmax > 8 and <= 8 take different top-k paths
    got = M.m_vlalign(s, t, e, ks, chunk_size=chunk)
    for k in ks:
        assert got[k] == pytest.approx(ref_m_vlalign(s, t, e, k), abs=1e-15)
    assert M.m_vlalign(s, t, e, 2, chunk_size=chunk) == got[2]


def test_float32_inputs_agree_with_float64():
    s, t = _feats(50, 16, seed=11, noise=0.5)
    e = torch.randn(9, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert M.m_rel(s.float(), t.float(), chunk_size=7) == M.m_rel(s, t)
    assert M.m_neigh(s.float(), t.float(), [3, 5], chunk_size=7) == M.m_neigh(s, t, [3, 5])
    assert M.m_vlalign(s.float(), t.float(), e.float(), [2, 3]) == M.m_vlalign(s, t, e, [2, 3])
    assert M.feature_error(s.float(), t.float())[0] == pytest.approx(M.feature_error(s, t)[0], rel=1e-5)


def test_zero_shot_predict_and_accuracy_match_reference():
    g = torch.Generator().manual_seed(3)
    x, e = torch.randn(41, 6, generator=g), torch.randn(5, 6, generator=g)
    X, E = _unit_rows(x), _unit_rows(e)
    want = [max(range(5), key=lambda y: (sum(a * b for a, b in zip(X[i], E[y])), -y)) for i in range(41)]
    for chunk in (None, 4):
        pred = M.zero_shot_predict(x * 7.0, e, chunk_size=chunk)
        assert pred.dtype == torch.long and pred.tolist() == want
    labels = torch.randint(0, 5, (41,), generator=g)
    per_class = []
    for c in sorted(set(labels.tolist())):
        idx = [i for i in range(41) if labels[i] == c]
        per_class.append(sum(want[i] == c for i in idx) / len(idx))
    assert M.mean_per_class_accuracy(torch.tensor(want), labels) == pytest.approx(sum(per_class) / len(per_class))


def test_text_spectrum_matches_gram_eigenvalues():
    e = torch.randn(7, 12, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 5
    for normalize in (True, False):
        x = torch.nn.functional.normalize(e, dim=1) if normalize else e
        xc = x - x.mean(0, keepdim=True)
        eig = torch.linalg.eigvalsh(xc @ xc.T).clamp_min(0).sqrt().flip(0)
        got = M.text_spectrum(e, normalize=normalize)
        assert got.shape == (7,)
        torch.testing.assert_close(got, eig, rtol=1e-8, atol=1e-6)
        assert bool((got[:-1] >= got[1:]).all())


def test_mean_pairwise_cosine_matches_double_loop():
    e = torch.randn(11, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    E = _unit_rows(e)
    want = sum(sum(a * b for a, b in zip(E[i], E[j])) for i in range(11) for j in range(11) if i != j) / (11 * 10)
    assert M.mean_pairwise_cosine(e * 3) == pytest.approx(want, rel=1e-10)


# --------------------------------------------------------------------------- hand-worked cases
def test_identical_features():
    s, _ = _feats(30, 6, seed=6)
    e = torch.randn(5, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert M.feature_error(s, 3 * s) == pytest.approx((0.0, 0.0), abs=1e-6)
    assert M.m_rel(s, s, chunk_size=4) == 1.0
    assert M.m_neigh(s, s, [3, 5, 10], chunk_size=4) == {3: 1.0, 5: 1.0, 10: 1.0}
    assert M.m_vlalign(s, s, e, [2, 3, 5]) == {2: 0.0, 3: 0.0, 5: 0.0}


@pytest.mark.parametrize(
    "mse,angle",
    [(0.24, 28.4), (0.35, 34.4), (0.36, 34.9), (0.45, 39.2), (0.65, 47.6), (0.71, 49.8), (0.82, 53.8), (1.28, 68.9), (1.29, 69.2)],
)
def test_table2_pairs(mse, angle):
    # unit vectors at angle theta have squared chord 2 - 2cos(theta); build pairs with a given mse
    def pair(m: float) -> tuple[float, float]:
        theta = math.acos(1 - m / 2)
        s = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=torch.float64)
        t = torch.tensor([[math.cos(theta), math.sin(theta), 0.0], [0.0, 5 * math.cos(theta), 5 * math.sin(theta)]],
                         dtype=torch.float64)
        return M.feature_error(s, t)

    got_mse, got_angle = pair(mse)
    assert got_mse == pytest.approx(mse, rel=1e-12)
    assert abs(got_angle - angle) < 0.15
    # the published mse is rounded to 2 decimals: some mse in [mse - 0.005, mse + 0.005] gives the angle
    lo, hi = pair(mse - 0.005)[1], pair(mse + 0.005)[1]
    assert lo - 0.05 <= angle <= hi + 0.05


def test_m_rel_ties_go_to_the_smaller_index():
    t = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])  # rows 0 and 1 are the same direction
    assert M.m_rel(t, t) == pytest.approx(2 / 3)  # row 1's nearest teacher is row 0 (tie, smaller index)
    assert M.m_rel(t, t, chunk_size=1) == pytest.approx(2 / 3)


def test_m_neigh_ties_go_to_the_smaller_index():
    # point 0 at the origin direction; 1..4 at the same angle from it; the 1-NN of 0 is 1 in both spaces
    s = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 0.0, 1.0], [1.0, 0.0, -1.0]])
    t = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, -1.0]])
    for chunk in (None, 2):
        idx = M._knn_indices(s, s.norm(dim=1), 2, chunk)
        assert idx[0].tolist() == [1, 2]
        assert M.m_neigh(s, t, 1, chunk_size=chunk) == pytest.approx(ref_m_neigh(s, t, [1])[1])


def test_topk_helper_is_stable_under_many_ties():
    g = torch.Generator().manual_seed(7)
    sim = torch.randint(0, 4, (50, 23), generator=g).float()
    want = sim.sort(dim=1, descending=True, stable=True).indices
    for k in (1, 3, 10, 23):
        assert torch.equal(M._topk_smallest_index_first(sim, k), want[:, :k])
        assert torch.equal(M._top_small_k_inplace(sim.clone(), k), want[:, :k])


def test_m_vlalign_hand_case():
    e = torch.eye(3)
    t = torch.tensor([[3.0, 2.0, 1.0]])  # teacher order: label 0, 1, 2
    s_same = torch.tensor([[5.0, 1.0, 0.0]])  # student distances increase: 0 reverse pairs
    s_rev = torch.tensor([[0.0, 1.0, 5.0]])  # student distances decrease: all 3 pairs reversed
    s_mid = torch.tensor([[1.0, 5.0, 0.0]])  # order 1 < 0 < 2 by distance: 1 reverse pair
    assert M.m_vlalign(s_same, t, e, 3) == 0.0
    assert M.m_vlalign(s_rev, t, e, [2, 3]) == {2: 1.0, 3: 3.0}
    assert M.m_vlalign(s_mid, t, e, [2, 3]) == {2: 1.0, 3: 1.0}


def test_per_class_accuracy_by_hand():
    pred = torch.tensor([0, 0, 2, 0, 2, 2])
    labels = torch.tensor([0, 0, 0, 2, 2, 2])
    acc = M.per_class_accuracy(pred, labels, num_classes=4)
    assert acc[0] == pytest.approx(2 / 3) and acc[2] == pytest.approx(2 / 3)
    assert torch.isnan(acc[1]) and torch.isnan(acc[3])  # no samples: NaN, not 0
    assert M.mean_per_class_accuracy(pred, labels) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="num_classes=2 is smaller"):
        M.per_class_accuracy(pred, labels, num_classes=2)


def test_mean_per_class_accuracy_by_hand():
    labels = torch.tensor([0, 0, 0, 0, 2, 2])
    pred = torch.tensor([0, 0, 0, 1, 1, 2])
    assert M.mean_per_class_accuracy(pred, labels) == pytest.approx((3 / 4 + 1 / 2) / 2)  # class 1 absent


def test_mean_pairwise_cosine_by_hand():
    assert M.mean_pairwise_cosine(torch.tensor([[1.0, 0.0], [0.0, 3.0]])) == pytest.approx(0.0, abs=1e-12)
    assert M.mean_pairwise_cosine(torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])) == pytest.approx(1.0)
    assert M.mean_pairwise_cosine(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-1.0)


# --------------------------------------------------------------------------- bad input
def _bad_cases():
    s, t = _feats(6, 4, seed=8, dtype=torch.float32)
    e = torch.randn(3, 4)
    nan = s.clone()
    nan[2, 1] = float("nan")
    inf = t.clone()
    inf[0, 3] = -float("inf")
    return [
        ("rows differ", lambda: M.m_rel(s, t[:5]), "rows"),
        ("dims differ", lambda: M.m_neigh(s, t[:, :3], 2), "dimensions differ"),
        ("text dim", lambda: M.m_vlalign(s, t, e[:, :2], 2), "dimensions differ"),
        ("1-D", lambda: M.feature_error(s[0], t[0]), "2-D"),
        ("empty", lambda: M.m_rel(s[:0], t[:0]), "empty"),
        ("nan", lambda: M.m_rel(nan, t), "NaN"),
        ("inf", lambda: M.m_neigh(s, inf, 2), "NaN or inf"),
        ("nan text", lambda: M.m_vlalign(s, t, e * float("nan"), 2), "NaN"),
        ("k < 1", lambda: M.m_neigh(s, t, 0), "k must be"),
        ("k in list < 1", lambda: M.m_vlalign(s, t, e, [2, 0]), "k must be"),
        ("k too big neigh", lambda: M.m_neigh(s, t, 6), "too large"),
        ("k too big vl", lambda: M.m_vlalign(s, t, e, 4), "too large"),
        ("k empty", lambda: M.m_neigh(s, t, []), "non-empty"),
        ("k float", lambda: M.m_neigh(s, t, 2.0), "k must be"),
        ("chunk", lambda: M.m_rel(s, t, chunk_size=0), "chunk_size"),
        ("int feats", lambda: M.m_rel(s.long(), t.long()), "floating"),
        ("acc shapes", lambda: M.mean_per_class_accuracy(torch.tensor([0, 1]), torch.tensor([0])), "must match"),
        ("acc empty", lambda: M.mean_per_class_accuracy(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long)), "empty"),
        ("acc float", lambda: M.mean_per_class_accuracy(torch.tensor([0.0]), torch.tensor([0])), "integer"),
        ("pairwise one", lambda: M.mean_pairwise_cosine(e[:1]), "at least 2"),
        ("zero-shot dims", lambda: M.zero_shot_predict(s, e[:, :3]), "dimensions differ"),
    ]


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
def test_bad_input_raises_value_error(case):
    _, fn, match = case
    with pytest.raises(ValueError, match=match):
        fn()


# --------------------------------------------------------------------------- properties
def _all(s, t, e, chunk):
    return (
        M.m_rel(s, t, chunk_size=chunk),
        M.m_neigh(s, t, [1, 2, 3], chunk_size=chunk),
        M.m_vlalign(s, t, e, [1, 2, 3], chunk_size=chunk),
        M.feature_error(s, t),
    )


@settings(max_examples=30, deadline=None)
@given(n=st.integers(4, 25), d=st.integers(2, 6), c=st.integers(3, 6), seed=st.integers(0, 10_000),
       noise=st.floats(0.0, 3.0), chunk=st.sampled_from([None, 1, 3, 8]))
def test_property_permutation_rescaling_and_ranges(n, d, c, seed, noise, chunk):
    s, t = _feats(n, d, seed, noise=noise)
    g = torch.Generator().manual_seed(seed + 1)
    e = torch.randn(c, d, generator=g, dtype=torch.float64)
    base = _all(s, t, e, chunk)
    rel, neigh, vl, (mse, ang) = base
    assert 0.0 <= rel <= 1.0 and all(0.0 <= v <= 1.0 for v in neigh.values())
    assert all(0.0 <= v <= k * (k - 1) / 2 for k, v in vl.items()) and vl[1] == 0.0
    assert 0.0 <= mse <= 4.0 + 1e-12 and 0.0 <= ang <= 180.0
    # batch permutation (applied to both spaces)
    perm = torch.randperm(n, generator=g)
    p_rel, p_neigh, p_vl, (p_mse, _) = _all(s[perm], t[perm], e, chunk)
    assert (p_rel, p_neigh, p_vl) == (rel, neigh, vl) and p_mse == pytest.approx(mse, rel=1e-12)
    # per-row rescaling by powers of two is exact in floating point, so the ranks must not move
    scale = lambda m: 2.0 ** torch.randint(-20, 20, (m, 1), generator=g).double()  # noqa: E731
    r_rel, r_neigh, r_vl, (r_mse, _) = _all(s * scale(n), t * scale(n), e * scale(c), chunk)
    assert (r_rel, r_neigh, r_vl) == (rel, neigh, vl) and r_mse == pytest.approx(mse, rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(c=st.integers(2, 12), d=st.integers(1, 8), seed=st.integers(0, 10_000))
def test_property_text_metrics(c, d, seed):
    e = torch.randn(c, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    v = M.mean_pairwise_cosine(e)
    assert -1.0 / (c - 1) - 1e-9 <= v <= 1.0 + 1e-9
    assert M.mean_pairwise_cosine(e * 2.0 ** 7) == pytest.approx(v, abs=1e-12)
    sv = M.text_spectrum(e)
    assert sv.shape == (min(c, d),) and bool((sv >= 0).all())
    # centred unit rows: sum of squared singular values = sum ||e_i - mean||^2 <= c
    assert float(sv.pow(2).sum()) <= c + 1e-9


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), c=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_property_accuracy_range_and_perfect(n, c, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, c, (n,), generator=g)
    pred = torch.randint(0, c, (n,), generator=g)
    perm = torch.randperm(n, generator=g)
    acc = M.mean_per_class_accuracy(pred, labels)
    assert 0.0 <= acc <= 1.0
    assert M.mean_per_class_accuracy(pred[perm], labels[perm]) == pytest.approx(acc)
    assert M.mean_per_class_accuracy(labels, labels) == 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    s, t = _feats(300, 32, seed=12, noise=0.5, dtype=torch.float32)
    e = torch.randn(20, 32)
    cpu = (M.m_rel(s, t), M.m_neigh(s, t, [3, 5]), M.m_vlalign(s, t, e, [2, 3]))
    gpu = (M.m_rel(s.cuda(), t.cuda(), chunk_size=64), M.m_neigh(s.cuda(), t.cuda(), [3, 5], chunk_size=64),
           M.m_vlalign(s.cuda(), t.cuda(), e.cuda(), [2, 3], chunk_size=64))
    assert gpu == cpu
    assert M.zero_shot_predict(s.cuda(), e.cuda()).device.type == "cuda"


def test_metrics_and_losses_share_their_input_checks():
    """One module of checks (vldlib.core.checks): the same one-line errors from a metric and a loss."""
    from vldlib.core import losses as L
    from vldlib.core.checks import NonFiniteInput

    g = torch.Generator().manual_seed(5)
    s, t = torch.randn(6, 4, generator=g), torch.randn(5, 4, generator=g)
    errors = []
    for fn in (lambda: M.m_rel(s, t), lambda: L.mse_loss(s, t)):
        with pytest.raises(ValueError, match="row counts differ: student has 6 rows, teacher has 5") as err:
            fn()
        errors.append(str(err.value))
    assert errors[0] == errors[1]
    bad = t.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(NonFiniteInput, match="teacher contains NaN") as err:
        M.m_neigh(s[:5], bad, 2)
    assert err.value.name == "teacher"
    with pytest.raises(ValueError, match="pred must hold integer class indices"):
        M.per_class_accuracy(torch.tensor([0.5]), torch.tensor([0]))
