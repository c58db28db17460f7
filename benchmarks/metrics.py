"""Benchmark of the chunked analysis metrics against their matrix-product floor (issue 2).

Run: ``.venv/bin/python benchmarks/metrics.py [--n 20000] [--d 768] [--classes 100] [--repeat 1]``

For N images of dimension D (CPU, float32) it times, in one process and one run:

- ``m_rel``             vs its floor: the products S·T̂ᵀ ([N, N] in row chunks, results discarded)
- ``m_neigh`` (k=3,5,10) vs its floor: S·Ŝᵀ and T·T̂ᵀ (two [N, N] products in row chunks)
- ``m_vlalign`` (k=2,3,5, C classes) vs its floor: T·Êᵀ and S·Êᵀ ([N, C] each)

The floor uses the same row-chunk size as the metric's default (the chunk products are written
into one preallocated buffer), on already-normalised inputs; it is the arithmetic every metric
must do. Floor and metric runs are interleaved ``--repeat`` times (x5 for the cheap m_vlalign)
and the best time of each is kept. Ratios (metric / floor) are what
matters on a shared machine; both sides are measured in the same run.

Peak extra memory: torch's CPU allocations are invisible to tracemalloc, so a background thread
samples the process RSS (psutil, every 2 ms) while the metric runs; "extra" is the peak minus the
RSS just before the call (inputs already allocated). Targets: ratio <= 1.5, extra peak < 1 GiB.
"""
from __future__ import annotations

import argparse
import gc
import threading
import time
from collections.abc import Callable

import psutil
import torch

from vldlib import metrics

GIB = 2**30


class PeakRSS:
    """Context manager sampling this process's RSS in a thread; ``.extra`` = peak - baseline bytes."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.proc = psutil.Process()
        self.extra = 0

    def __enter__(self) -> "PeakRSS":
        gc.collect()
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.extra = self.peak - self.base


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, int, object]:
    """(best seconds, max extra peak RSS bytes, last result) over ``repeat`` runs."""
    best, extra, out = float("inf"), 0, None
    for _ in range(repeat):
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t0
        best, extra = min(best, dt), max(extra, mem.extra)
    return best, extra, out


def chunked_products(a: torch.Tensor, b_T: torch.Tensor, step: int) -> None:
    """a @ b_T in row chunks of ``step`` into one reused buffer (the floor of the N x N metrics)."""
    buf = torch.empty((min(step, a.shape[0]), b_T.shape[1]), dtype=a.dtype)
    for r0 in range(0, a.shape[0], step):
        r1 = min(r0 + step, a.shape[0])
        torch.mm(a[r0:r1], b_T, out=buf[: r1 - r0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--d", type=int, default=768)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--repeat", type=int, default=2, help="interleaved runs per metric (best time kept)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n, d, c = args.n, args.d, args.classes

    g = torch.Generator().manual_seed(0)
    t = torch.randn(n, d, generator=g)
    s = t + 0.8 * torch.randn(n, d, generator=g)  # a student correlated with the teacher
    e = torch.randn(c, d, generator=g)
    s_hat = torch.nn.functional.normalize(s, dim=1)
    t_hat = torch.nn.functional.normalize(t, dim=1)
    e_hat = torch.nn.functional.normalize(e, dim=1)

    step_rel = metrics._chunk_rows(n, 4, None, factor=1)
    step_neigh = metrics._chunk_rows(n, 4, None, factor=2)
    step_vl = metrics._chunk_rows(c, 4, None, factor=4)
    print(f"N={n} D={d} C={c} float32 CPU, torch threads={torch.get_num_threads()}, "
          f"chunk rows: m_rel {step_rel}, m_neigh {step_neigh}, m_vlalign {step_vl}")

    def floor_rel() -> None:
        chunked_products(s_hat, t_hat.T, step_rel)

    def floor_neigh() -> None:
        chunked_products(s_hat, s_hat.T, step_neigh)
        chunked_products(t_hat, t_hat.T, step_neigh)

    def floor_vl() -> None:
        chunked_products(t_hat, e_hat.T, step_vl)
        chunked_products(s_hat, e_hat.T, step_vl)

    cases = [
        ("m_rel", floor_rel, lambda: metrics.m_rel(s, t), args.repeat),
        ("m_neigh k=3,5,10", floor_neigh, lambda: metrics.m_neigh(s, t, (3, 5, 10)), args.repeat),
        ("m_vlalign k=2,3,5", floor_vl, lambda: metrics.m_vlalign(s, t, e, (2, 3, 5)), 5 * args.repeat),
    ]
    rows = []
    for name, floor_fn, metric_fn, repeat in cases:
        # interleave floor and metric runs so that load changes on a shared machine hit both alike
        floor, best, mem, val = float("inf"), float("inf"), 0, None
        for _ in range(repeat):
            floor = min(floor, timed(floor_fn, 1)[0])
            dt, extra, val = timed(metric_fn, 1)
            best, mem = min(best, dt), max(mem, extra)
        rows.append((name, best, floor, mem, val))

    print(f"{'metric':<20}{'time s':>10}{'floor s':>10}{'ratio':>8}{'extra peak MiB':>16}  value")
    ok = True
    for name, dt, floor, mem, val in rows:
        ratio = dt / floor
        ok &= ratio <= 1.5 and mem < GIB
        if isinstance(val, dict):
            val = {k: round(v, 4) for k, v in val.items()}
        print(f"{name:<20}{dt:>10.3f}{floor:>10.3f}{ratio:>8.2f}{mem / 2**20:>16.1f}  {val}")
    print(f"targets (ratio <= 1.5, extra peak < 1024 MiB): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
