"""Teacher text features through the feature store, keyed by the teacher's ``identifier`` and the
exact texts (``<cache>/text-features/``, :mod:`vldlib.features.store`): each distinct text is
encoded once per teacher.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from vldlib.features.store import FeatureStore, encoding_progress, short_hash, teacher_dim
from vldlib.paths import default_cache_dir

__all__ = ["text_features", "text_feature_folder"]


def text_feature_folder(teacher: Any, cache_dir: str | Path | None = None) -> Path:
    """The folder of ``teacher``'s cached text features (:func:`text_features`)."""
    return _text_store(teacher, cache_dir).dir


def _text_store(teacher: Any, cache_dir: str | Path | None) -> FeatureStore:
    meta = {"kind": "text", "teacher": teacher.identifier}
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return FeatureStore(root / "text-features" / short_hash(meta), meta, teacher_dim(teacher))


def text_features(teacher: Any, texts: Sequence[str], cache_dir: str | Path | None = None, *,
                  batch_size: int = 256, progress: bool = False, refresh: bool = False) -> torch.Tensor:
    """Teacher text features ``[M, D]`` (float32, CPU) of ``texts``, cached by
    ``teacher.identifier`` and the exact texts (each distinct text is encoded once)."""
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a sequence of strings")
    if not isinstance(getattr(teacher, "identifier", None), str):
        raise ValueError("teacher has no string attribute 'identifier'; pass a vldlib Teacher")
    store = _text_store(teacher, cache_dir)

    def encode(positions: list[int]) -> Iterator[tuple[list[int], torch.Tensor]]:
        bar = encoding_progress(len(positions), "teacher text features", progress)
        try:
            for k in range(0, len(positions), batch_size):
                batch = positions[k:k + batch_size]
                with torch.inference_mode():
                    out = teacher.encode_text([texts[p] for p in batch])
                bar.update(len(batch))
                yield batch, out
        finally:
            bar.close()

    if not texts:
        return torch.empty(0, teacher_dim(teacher) or 0)
    return store.get(texts, "texts", encode, refresh=refresh)
