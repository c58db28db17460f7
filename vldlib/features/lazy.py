"""Teacher access for training: :class:`LazyTeacher` builds a teacher only when an uncached feature
needs it (its identity is remembered per cache, so a fully cached run never loads the weights),
and :class:`CachedTextTeacher` sends ``encode_text`` through the text-feature cache. Both forward
the teacher's ``spec`` (:class:`vldlib.models.specs.TeacherSpec`), so what a teacher can do is
known without building it.
"""
from __future__ import annotations

import gc
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from vldlib import __version__
from vldlib.features.text import text_features
from vldlib.io import try_read_json, write_json_atomic
from vldlib.models.specs import TeacherSpec, declares, teacher_spec
from vldlib.models.teachers import load_teacher

__all__ = ["LazyTeacher", "CachedTextTeacher", "TEACHER_META", "teacher_meta_path", "built_teacher"]

#: The folder of a feature cache where :class:`LazyTeacher` remembers teacher identities.
TEACHER_META = "teacher-meta"


def _stamp(value: Any) -> Any:
    """Option values that name existing files also carry the file's size and mtime."""
    if isinstance(value, str) and len(value) < 4096 and os.path.isfile(value):
        st = os.stat(value)
        return {"path": os.path.abspath(value), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return value


def teacher_meta_path(name: str, options: Mapping[str, Any], meta_dir: str | os.PathLike) -> Path:
    """Where :class:`LazyTeacher` remembers a teacher's identity (absent: never loaded with this cache)."""
    key_src = json.dumps({"name": name, "options": {k: _stamp(v) for k, v in sorted(dict(options).items())},
                          "vldlib": __version__}, sort_keys=True, default=str)
    return Path(meta_dir) / f"{hashlib.sha256(key_src.encode()).hexdigest()[:24]}.json"


class LazyTeacher:
    """A teacher that loads itself on first use (see the module docstring)."""

    def __init__(self, name: str, options: Mapping[str, Any], meta_dir: str | os.PathLike) -> None:
        self.name = name
        self.spec: TeacherSpec = teacher_spec(name)
        self.options = dict(options)
        self._meta_path = teacher_meta_path(name, self.options, meta_dir)
        self._teacher: Any = None
        self._was_loaded = False
        self.image_calls = 0
        self.images_encoded = 0
        self.text_calls = 0
        self.prompt_calls = 0
        self.texts_encoded = 0
        meta = try_read_json(self._meta_path)
        meta = meta if isinstance(meta, dict) else None
        if meta is not None and {"identifier", "preprocess_id", "embed_dim", "device"} <= set(meta):
            self.identifier: str = meta["identifier"]
            self.preprocess_id: str = meta["preprocess_id"]
            self.embed_dim: int = int(meta["embed_dim"])
            self.device = torch.device(meta["device"])
        else:
            self._load()

    @classmethod
    def in_cache(cls, name: str, options: Mapping[str, Any], cache_dir: str | os.PathLike) -> "LazyTeacher":
        """The teacher whose identity is remembered in the feature cache ``cache_dir`` (its
        :data:`TEACHER_META` folder), as the trainer and every reader of that cache use it."""
        return cls(name, options, Path(cache_dir) / TEACHER_META)

    @property
    def loaded(self) -> bool:
        """Whether the teacher was built (in this process, since this object was made)."""
        return self._teacher is not None or self._was_loaded

    def release(self) -> None:
        """Drop the built teacher (its weights: 1.7 GB for ViT-L-14) once its features are cached;
        a later use builds it again."""
        if self._teacher is not None:
            self._was_loaded = True
            self._teacher = None
            gc.collect()

    def _load(self) -> Any:
        if self._teacher is None:
            # a first use may come inside torch.inference_mode (feature encoding): build the
            # weights as normal tensors so that prompt learning can backpropagate through them
            with torch.inference_mode(False):
                teacher = load_teacher(self.name, **self.options)
            remembered = getattr(self, "identifier", None), getattr(self, "preprocess_id", None)
            self._teacher = teacher
            self.identifier = teacher.identifier
            self.preprocess_id = teacher.preprocess_id
            self.embed_dim = int(teacher.embed_dim)
            self.device = torch.device(teacher.device)
            meta = {"name": self.name, "identifier": self.identifier, "preprocess_id": self.preprocess_id,
                    "embed_dim": self.embed_dim, "device": str(self.device)}
            try:
                write_json_atomic(self._meta_path, meta)
            except OSError:  # a read-only cache only costs the laziness next time
                pass
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

    @property
    def token_width(self) -> int:
        """The teacher's token-embedding width (prompt learning; loads the teacher)."""
        if not declares(self, "prompt_learning"):
            raise ValueError(f"teacher {self.identifier!r} does not support prompt learning")
        return int(self._load().token_width)

    def encode_text_with_context(self, ctx: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """CoOp text features through the frozen teacher (:mod:`vldlib.models.prompts`); differentiable in ctx."""
        if not declares(self, "prompt_learning"):
            raise ValueError(f"teacher {self.identifier!r} does not support prompt learning")
        teacher = self._load()
        self.prompt_calls += 1
        return teacher.encode_text_with_context(ctx, texts)

    def forward_passes(self) -> dict[str, int]:
        return {"image_batches": self.image_calls, "images": self.images_encoded,
                "text_batches": self.text_calls, "texts": self.texts_encoded,
                "prompt_text_batches": self.prompt_calls}

    def __repr__(self) -> str:
        return f"LazyTeacher({self.identifier!r}, loaded={self.loaded})"


class CachedTextTeacher:
    """Same identity as ``teacher``; ``encode_text`` goes through ``features.text_features``."""

    def __init__(self, teacher: LazyTeacher, cache_dir: str | os.PathLike | None) -> None:
        self._teacher = teacher
        self._cache_dir = cache_dir
        self.spec: TeacherSpec = teacher.spec
        self.identifier = teacher.identifier
        self.preprocess_id = teacher.preprocess_id
        self.embed_dim = teacher.embed_dim
        self.device = teacher.device

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        return text_features(self._teacher, list(texts), cache_dir=self._cache_dir)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self._teacher.encode_image(images)


def built_teacher(teacher: Any) -> Any:
    """The teacher itself: a :class:`LazyTeacher` is built (once), any other teacher returned as it is."""
    return teacher._load() if isinstance(teacher, LazyTeacher) else teacher
