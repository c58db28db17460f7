"""Plumbing for :mod:`vldlib.train`: the lazy teacher, RNG state, atomic checkpoints, versions.

- :class:`LazyTeacher` wraps ``vldlib.teachers.load_teacher(name, **options)`` so that the
  teacher is constructed only when something must be encoded. Its identity (``identifier``,
  ``preprocess_id``, ``embed_dim``) is remembered in a small JSON file in the cache directory
  the first time the teacher is built, so a run whose image and text features are all cached
  never loads the teacher's weights. It counts the forward passes it makes.
- :class:`CachedTextTeacher` routes ``encode_text`` through the on-disk text-feature cache.
- :func:`rng_state` / :func:`set_rng_state`: every random stream a run uses (python, numpy,
  torch CPU and CUDA, plus named ``torch.Generator`` objects), for exact resumption.
- :func:`isolated_rng`: run a block with seeded global RNGs and restore the caller's afterwards.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import random
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

import vldlib


def _stamp(value: Any) -> Any:
    """Option values that name existing files also carry the file's size and mtime."""
    if isinstance(value, str) and len(value) < 4096 and os.path.isfile(value):
        st = os.stat(value)
        return {"path": os.path.abspath(value), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return value


class LazyTeacher:
    """A teacher that loads itself on first use (see the module docstring)."""

    def __init__(self, name: str, options: Mapping[str, Any], meta_dir: str | os.PathLike) -> None:
        self.name = name
        self.options = dict(options)
        key_src = json.dumps({"name": name, "options": {k: _stamp(v) for k, v in sorted(self.options.items())},
                              "vldlib": vldlib.__version__}, sort_keys=True, default=str)
        self._meta_path = Path(meta_dir) / f"{hashlib.sha256(key_src.encode()).hexdigest()[:24]}.json"
        self._teacher: Any = None
        self.image_calls = 0
        self.images_encoded = 0
        self.text_calls = 0
        self.texts_encoded = 0
        meta = _read_json(self._meta_path)
        if meta is not None and {"identifier", "preprocess_id", "embed_dim", "device"} <= set(meta):
            self.identifier: str = meta["identifier"]
            self.preprocess_id: str = meta["preprocess_id"]
            self.embed_dim: int = int(meta["embed_dim"])
            self.device = torch.device(meta["device"])
        else:
            self._load()

    @property
    def loaded(self) -> bool:
        return self._teacher is not None

    def _load(self) -> Any:
        if self._teacher is None:
            from vldlib.teachers import load_teacher  # noqa: PLC0415

            teacher = load_teacher(self.name, **self.options)
            remembered = getattr(self, "identifier", None), getattr(self, "preprocess_id", None)
            self._teacher = teacher
            self.identifier = teacher.identifier
            self.preprocess_id = teacher.preprocess_id
            self.embed_dim = int(teacher.embed_dim)
            self.device = torch.device(teacher.device)
            meta = {"name": self.name, "identifier": self.identifier, "preprocess_id": self.preprocess_id,
                    "embed_dim": self.embed_dim, "device": str(self.device)}
            _write_json_atomic(self._meta_path, meta)
            if remembered[0] is not None and remembered != (self.identifier, self.preprocess_id):
                raise RuntimeError(
                    f"teacher {self.name!r} now identifies as {self.identifier!r} / {self.preprocess_id!r} "
                    f"but the cache remembered {remembered[0]!r} / {remembered[1]!r}; the record of its "
                    "identity is updated now, run again")
        return self._teacher

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        teacher = self._load()
        self.image_calls += 1
        self.images_encoded += int(images.shape[0])
        return teacher.encode_image(images)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        teacher = self._load()
        self.text_calls += 1
        self.texts_encoded += len(texts)
        return teacher.encode_text(texts)

    def forward_passes(self) -> dict[str, int]:
        return {"image_batches": self.image_calls, "images": self.images_encoded,
                "text_batches": self.text_calls, "texts": self.texts_encoded}

    def __repr__(self) -> str:
        return f"LazyTeacher({self.identifier!r}, loaded={self.loaded})"


class CachedTextTeacher:
    """Same identity as ``teacher``; ``encode_text`` goes through ``features.text_features``."""

    def __init__(self, teacher: LazyTeacher, cache_dir: str | os.PathLike | None) -> None:
        self._teacher = teacher
        self._cache_dir = cache_dir
        self.identifier = teacher.identifier
        self.preprocess_id = teacher.preprocess_id
        self.embed_dim = teacher.embed_dim
        self.device = teacher.device

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        from vldlib.features import text_features  # noqa: PLC0415

        return text_features(self._teacher, list(texts), cache_dir=self._cache_dir)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self._teacher.encode_image(images)


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


# ---------------------------------------------------------------------- files
def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temp file in the same folder, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _read_json(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            out = json.load(fh)
        return out if isinstance(out, dict) else None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def _write_json_atomic(path: Path, obj: Any) -> None:
    from vldlib.runs import write_json_atomic  # noqa: PLC0415

    try:
        write_json_atomic(path, obj)
    except OSError:  # a read-only cache only costs the laziness next time
        pass


# ---------------------------------------------------------------------- provenance
def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"vldlib": vldlib.__version__}
    for dist, key in (("torch", "torch"), ("torchvision", "torchvision"),
                      ("open_clip_torch", "open_clip"), ("numpy", "numpy")):
        try:
            out[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[key] = None
    import platform  # noqa: PLC0415

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
