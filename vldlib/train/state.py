"""A run's random state and provenance (for :mod:`vldlib.train.trainer`).

- :func:`rng_state` / :func:`set_rng_state`: every random stream a run uses (python, numpy,
  torch CPU and CUDA, plus named ``torch.Generator`` objects), for exact resumption.
- :func:`isolated_rng`: run a block with seeded global RNGs and restore the caller's afterwards.
- :func:`library_versions`, :func:`git_commit`: what produced a record.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import platform
import random
import subprocess
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch

import vldlib


# ---------------------------------------------------------------------- random state
def rng_state(generators: Mapping[str, torch.Generator]) -> dict[str, Any]:
    """All random streams: python, numpy, torch CPU (+ CUDA when present) and ``generators``."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "generators": {name: g.get_state() for name, g in generators.items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any], generators: Mapping[str, torch.Generator]) -> None:
    random.setstate(_as_python_state(state["python"]))
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    for name, g in generators.items():
        g.set_state(state["generators"][name])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_python_state(s: Any) -> tuple:
    # torch.load may hand the tuple back with lists inside; random.setstate needs tuples
    return (s[0], tuple(s[1]), s[2])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def isolated_rng(deterministic: bool) -> Iterator[None]:
    """Restore python/numpy/torch RNG states and the deterministic-algorithms flag on exit."""
    py, npy = random.getstate(), np.random.get_state()
    det = torch.are_deterministic_algorithms_enabled()
    det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            if deterministic:
                torch.use_deterministic_algorithms(True, warn_only=True)
            yield
        finally:
            torch.use_deterministic_algorithms(det, warn_only=det_warn)
            random.setstate(py)
            np.random.set_state(npy)


# ---------------------------------------------------------------------- provenance
def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"vldlib": vldlib.__version__}
    for dist, key in (("torch", "torch"), ("torchvision", "torchvision"),
                      ("open_clip_torch", "open_clip"), ("numpy", "numpy")):
        try:
            out[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[key] = None
    out["python"] = platform.python_version()
    return out


def git_commit() -> str | None:
    """The commit of the checkout vldlib is imported from, or None (not a git checkout / no git)."""
    here = Path(vldlib.__file__).resolve().parent
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    out = res.stdout.strip()
    return out if res.returncode == 0 and len(out) == 40 else None
