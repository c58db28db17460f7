"""The teacher's embeddings of stored augmented views (:mod:`vldlib.data.views`), cached like its
image features (:mod:`vldlib.features.store`): one per-source store per teacher, preprocessing and
view draw (``kind`` = ``"view-image:"`` + :meth:`ViewSpec.key`), one row per (image, view) keyed
``"<image key>#view<v>"``, chunks and split indexes written atomically with their checksums and
verified on read. The view count K is in the split index's key list; a view already embedded
for another K (or another class split of the same images) is not embedded again.

The teacher sees a view as it sees a whole image for the centre-crop target: the view's box of the
loaded image, mirrored where drawn so, resampled to the loaded size (bilinear, as the student's
crops), then the teacher's own preprocessing (e.g. CLIP's resize and centre crop).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import torch

from vldlib.data.transforms import resize_crops
from vldlib.data.views import ViewSpec, view_params
from vldlib.features.store import DEFAULT_CHUNK_ROWS, FeatureStore, encoding_progress, short_hash, teacher_dim
from vldlib.paths import default_cache_dir
from vldlib.progress import Progress

__all__ = ["teacher_view_features", "view_feature_store"]


def view_feature_store(teacher: Any, split: Any, spec: ViewSpec, *, dataset_id: str,
                       cache_dir: str | Path | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> FeatureStore:
    """The per-source store of the teacher's view embeddings for ``spec`` (see the module docstring)."""
    meta = {"kind": f"view-image:{spec.key()}", "teacher": teacher.identifier, "preprocess": teacher.preprocess_id,
            "source": getattr(split, "source", None) or dataset_id}
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return FeatureStore(root / "teacher-features" / short_hash(meta), meta, teacher_dim(teacher), chunk_rows=chunk_rows)


def teacher_view_features(teacher: Any, split: Any, spec: ViewSpec, *, dataset_id: str,
                          cache_dir: str | Path | None = None, batch_size: int = 128,
                          progress: bool | Progress = True, refresh: bool = False,
                          chunk_rows: int = DEFAULT_CHUNK_ROWS) -> torch.Tensor:
    """The teacher's embedding of each of the ``spec.count`` views of every image of ``split``:
    ``[N, K, D]`` float32 on the CPU, ``[i, v]`` for view ``v`` of ``split.keys[i]`` (boxes and flips
    from :func:`vldlib.data.views.view_params`). Only views not in the store are embedded, in
    batches of ``batch_size`` views under ``torch.inference_mode``."""
    if not dataset_id:
        raise ValueError("dataset_id must be a non-empty string (e.g. DatasetSplits.name)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if getattr(split, "load_size", spec.size) != spec.size:
        raise ValueError(f"the view spec is for {spec.size}-pixel images but split {split.name!r} holds "
                         f"{split.load_size}-pixel ones; build the spec with size=split.load_size")
    store = view_feature_store(teacher, split, spec, dataset_id=dataset_id, cache_dir=cache_dir,
                               chunk_rows=chunk_rows)
    k, keys = spec.count, list(split.keys)
    device = getattr(teacher, "device", torch.device("cpu"))

    def encode(positions: list[int]) -> Iterator[tuple[list[int], torch.Tensor]]:
        bar = encoding_progress(len(positions), f"teacher views x{k} {dataset_id}/{split.name}", progress)
        try:
            for start in range(0, len(positions), batch_size):
                batch = positions[start:start + batch_size]
                images = sorted({p // k for p in batch})
                boxes, flips = view_params([keys[i] for i in images], spec)  # [n, K, 4], [n, K]
                row = {i: r for r, i in enumerate(images)}
                pixels = split.get_batch(images)[0]
                which = torch.tensor([row[p // k] for p in batch])
                views = torch.tensor([p % k for p in batch])
                x = resize_crops(pixels[which], boxes[which, views], spec.size, flips[which, views])
                with torch.inference_mode():
                    out = teacher.encode_image(x.clamp_(0.0, 1.0).to(device))
                bar.update(len(batch))
                yield batch, out
        finally:
            bar.close()

    feats = store.get(spec.view_keys(keys), dataset_id, encode, refresh=refresh)
    return feats.reshape(len(keys), k, feats.shape[-1])
