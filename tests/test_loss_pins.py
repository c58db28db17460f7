"""Every loss and ``combined_loss`` on fixed seeded inputs, pinned bit for bit (values and gradients).

The pinned tensors live in ``tests/data/loss_pins.pt``; they were computed by :func:`compute_pins` on
the losses as they were before the registry (one module of functions and one if-chain in
``combined_loss``), so this test shows that restructuring the losses changes no number a run sees.
Regenerate (only when a loss is *meant* to change) with ``python tests/test_loss_pins.py``.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from vldlib.core import losses as L

PINS = Path(__file__).parent / "data" / "loss_pins.pt"


def _inputs(dtype: torch.dtype, b: int = 12, c: int = 7, d: int = 16, seed: int = 2023) -> dict[str, torch.Tensor]:
    """A batch with repeated labels (L_cap / ICL masks), some teacher-wrong rows (the filter of Eq. 6)."""
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(c, d, generator=g, dtype=dtype)
    y = torch.randint(0, c, (b,), generator=g)
    t = e[y] * 0.8 + torch.randn(b, d, generator=g, dtype=dtype) * 1.5
    s = t + torch.randn(b, d, generator=g, dtype=dtype) * 2
    cap = t.roll(1, 0) + torch.randn(b, d, generator=g, dtype=dtype)
    return {"student": s, "teacher": t, "text": e, "labels": y, "captions": cap}


def _cases(x: dict[str, torch.Tensor]) -> dict[str, Callable[[torch.Tensor, torch.Tensor], object]]:
    """name -> f(student, teacher) on the batch ``x`` (text, labels, captions fixed)."""
    e, y, c = x["text"], x["labels"], x["captions"]
    every = {n: 1.0 for n in L.LOSS_NAMES}
    mixed = {"cls": 1.0, "mse": 0.5, "im_cst": 2.0, "vlprox": 1.0, "cap": 0.3, "fd": 20.0, "icl": 0.7,
             "crd": 1.5, "rkd": 0.25}

    def comb(weights: dict[str, float], **kw: object) -> Callable[[torch.Tensor, torch.Tensor], object]:
        return lambda s, t: L.combined_loss(weights, student=s, teacher=t, text=e, labels=y, captions=c, **kw)

    return {
        "cls": lambda s, t: L.cls_loss(s, e, y),
        "cls_tau": lambda s, t: L.cls_loss(s, e, y, tau=0.13),
        "mse": lambda s, t: L.mse_loss(s, t),
        "im_cst": lambda s, t: L.im_cst_loss(s, t),
        "im_cst_single": lambda s, t: L.im_cst_loss(s, t, 0.1, "single"),
        "im_cst_keep": lambda s, t: L.im_cst_loss(s, t, keep=L.teacher_correct(t, e, y)),
        "im_cst_keep_none": lambda s, t: L.im_cst_loss(s, t, keep=torch.zeros(s.shape[0], dtype=torch.bool)),
        "teacher_correct": lambda s, t: L.teacher_correct(t, e, y),
        "vlprox": lambda s, t: L.vlprox_loss(s, t, e, y),
        "vlprox_k3": lambda s, t: L.vlprox_loss(s, t, e, y, k=3, tau=0.2),
        "vlprox_nofilter": lambda s, t: L.vlprox_loss(s, t, e, y, k=3, filter=False),
        "vlprox_k1": lambda s, t: L.vlprox_loss(s, t, e, y, k=1),
        "cap": lambda s, t: L.cap_loss(s, c, y),
        "fd": lambda s, t: L.fd_loss(s, t),
        "icl": lambda s, t: L.icl_loss(s, e, y),
        "icl_tau": lambda s, t: L.icl_loss(s, e, y, tau=0.3),
        "crd": lambda s, t: L.crd_loss(s, t),
        "crd_one": lambda s, t: L.crd_loss(s[:1], t[:1]),
        "rkd": lambda s, t: L.rkd_loss(s, t),
        "rkd_angle": lambda s, t: L.rkd_loss(s, t, 0.0, 1.0),
        "rkd_two": lambda s, t: L.rkd_loss(s[:2], t[:2]),
        "combined_every": comb(every),
        "combined_mixed": comb(mixed, tau=0.1, k=3, filter=False, im_cst_mode="single"),
        "combined_filter": comb({"cls": 1.0, "im_cst": 1.0, "vlprox": 1.0}, im_cst_filter=True),
        "combined_paper": comb({"cls": 1.0, "mse": 1.0, "im_cst": 1.0, "vlprox": 1.0}, k=256),
        "combined_zero": comb({"cls": 1.0, "mse": 0.0, "rkd": 2.0}),
    }


def _flatten(out: object) -> dict[str, torch.Tensor]:
    if isinstance(out, tuple):
        total, terms = out
        return {"total": total, **{f"term_{n}": v for n, v in terms.items()}}
    return {"value": out}


def compute_pins() -> dict[str, torch.Tensor]:
    """``{dtype/case/part: tensor}``: each case's outputs and the gradients of its (total) value."""
    pins: dict[str, torch.Tensor] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for dtype in (torch.float32, torch.float64):
            x = _inputs(dtype)
            for name, fn in _cases(x).items():
                s = x["student"].clone().requires_grad_()
                t = x["teacher"].clone().requires_grad_()
                parts = _flatten(fn(s, t))
                key = f"{str(dtype).removeprefix('torch.')}/{name}"
                for part, v in parts.items():
                    pins[f"{key}/{part}"] = v.detach().clone()
                main = parts.get("total", parts.get("value"))
                if main.is_floating_point():
                    gs, gt = torch.autograd.grad(main, (s, t), allow_unused=True)
                    pins[f"{key}/grad_student"] = gs.clone()
                    if gt is not None:
                        pins[f"{key}/grad_teacher"] = gt.clone()
    finally:
        torch.set_num_threads(threads)
    return pins


def test_every_loss_and_combined_loss_is_bit_identical_to_the_pinned_values():
    want = torch.load(PINS)
    got = compute_pins()
    assert sorted(got) == sorted(want)
    differ = [k for k in want if got[k].dtype != want[k].dtype or not torch.equal(got[k], want[k])]
    assert not differ, f"values changed: {differ}"


def test_pins_cover_every_loss_name():
    want = torch.load(PINS)
    for name in L.LOSS_NAMES:
        assert f"float32/combined_every/term_{name}" in want
    assert sum(1 for k in want if k.endswith("/grad_student")) > 40


if __name__ == "__main__":
    PINS.parent.mkdir(exist_ok=True)
    torch.save(compute_pins(), PINS)
    print(f"wrote {PINS}")
