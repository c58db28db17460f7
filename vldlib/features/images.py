"""Per-image teacher quantities through the feature store: the teacher's image features, the
proxy captioner's top ImageNet classes and the ImageNet logits, each cached per source
(``<cache>/teacher-features/``, :mod:`vldlib.features.store`).

The ImageNet quantities need a teacher whose spec declares ``imagenet_classifier``
(:func:`vldlib.models.specs.declares`); any other is a one-line ``ValueError``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from vldlib.features.lazy import built_teacher
from vldlib.features.store import DEFAULT_CHUNK_ROWS, FeatureStore, encoding_progress, short_hash, teacher_dim
from vldlib.models.specs import declares
from vldlib.paths import default_cache_dir
from vldlib.progress import Progress

__all__ = ["teacher_image_features", "proxy_caption_classes", "imagenet_logits", "image_feature_file"]


def teacher_image_features(teacher: Any, split: Any, *, dataset_id: str,
                           cache_dir: str | Path | None = None, batch_size: int = 128,
                           num_workers: int = 0, progress: bool | Progress = True, refresh: bool = False,
                           chunk_rows: int = DEFAULT_CHUNK_ROWS) -> torch.Tensor:
    """Teacher image features ``[N, D]`` (float32, CPU) of ``split``, row i for ``split.keys[i]``.

    Keyed by ``teacher.identifier``, ``teacher.preprocess_id``, the image source
    (``split.source``, else ``dataset_id``), ``dataset_id`` and the exact key list. Only images not
    yet in the per-source store are encoded: batches of ``batch_size`` un-augmented loaded images
    ``[B, C, S, S]`` in [0, 1] go to ``teacher.encode_image`` under ``torch.inference_mode``.
    ``num_workers > 0`` decodes images in DataLoader workers.
    """
    return _per_image(teacher, split, "image", getattr(teacher, "encode_image", None),
                      teacher_dim(teacher), dataset_id=dataset_id, cache_dir=cache_dir,
                      batch_size=batch_size, num_workers=num_workers, progress=progress,
                      refresh=refresh, chunk_rows=chunk_rows)


def proxy_caption_classes(teacher: Any, split: Any, *, dataset_id: str, top: int,
                          cache_dir: str | Path | None = None, batch_size: int = 128,
                          num_workers: int = 0, progress: bool | Progress = True) -> torch.Tensor:
    """The proxy captioner's input: the ``top`` ImageNet class indices ``[N, top]`` (long, ranked)
    of the ConSE proxy teacher's classifier for each image of ``split``, cached like the teacher
    image features (kind ``proxy-caption-top{top}``). Only a teacher whose spec declares
    ``imagenet_classifier`` (the ConSE proxy) has one; any other raises ``ValueError``."""
    if not declares(teacher, "imagenet_classifier"):
        raise ValueError(f"captions='proxy' needs the ConSE proxy teacher (an ImageNet classifier); "
                         f"{getattr(teacher, 'identifier', teacher)!r} has none: use captions='file'")
    base = built_teacher(teacher)

    def encode(images: torch.Tensor) -> torch.Tensor:
        return base.imagenet_probs(images).topk(top, dim=-1).indices.float()

    out = _per_image(teacher, split, f"proxy-caption-top{top}", encode, top, dataset_id=dataset_id,
                     cache_dir=cache_dir, batch_size=batch_size, num_workers=num_workers, progress=progress)
    return out.round().long()


def imagenet_logits(teacher: Any, split: Any, *, dataset_id: str, cache_dir: str | Path | None = None,
                    batch_size: int = 128, progress: bool = True) -> torch.Tensor:
    """The ConSE proxy teacher's ImageNet logits ``[N, 1000]`` on ``split``, cached like the image
    features (kind ``imagenet-logits``): every ConSE combination (top-T, temperature, centring) can be
    recomputed from them without another forward pass. A teacher whose spec does not declare
    ``imagenet_classifier`` raises ``ValueError``."""
    if not declares(teacher, "imagenet_classifier"):
        raise ValueError(f"imagenet_logits needs the ConSE proxy teacher; {getattr(teacher, 'identifier', teacher)!r} "
                         "has no ImageNet classifier")

    def logits(images: torch.Tensor) -> torch.Tensor:  # a LazyTeacher loads only for uncached images
        return built_teacher(teacher).logits(images)

    return _per_image(teacher, split, "imagenet-logits", logits, 1000, dataset_id=dataset_id,
                      cache_dir=cache_dir, batch_size=batch_size, num_workers=0, progress=progress)


def _check_finite(images: Any, positions: list[int], split: Any, where: str) -> None:
    """Raise a one-line ``ValueError`` naming the split and an image key when ``images`` holds NaN/inf."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        return  # the teacher's own checks name a wrong type or dtype
    finite = torch.isfinite(images.reshape(len(images), -1)).all(1) if images.ndim else torch.isfinite(images)
    if bool(finite.all()):
        return
    bad = [positions[i] for i in (~finite).nonzero().flatten().tolist()]
    keys = getattr(split, "keys", None)
    first = keys[bad[0]] if keys is not None and bad[0] < len(keys) else f"position {bad[0]}"
    raise ValueError(f"{len(bad)} image(s) in a batch of {len(images)} of split {where} hold non-finite "
                     f"values (NaN or inf), the first {first!r}: fix or regenerate those images (or the transform) before extracting "
                     "teacher features")


def _image_store(teacher: Any, split: Any, kind: str, dim: int | None, dataset_id: str,
                 cache_dir: str | Path | None, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> FeatureStore:
    """The per-source store of one per-image quantity of ``teacher`` (see the module docstring)."""
    source = getattr(split, "source", None) or dataset_id
    meta = {"kind": kind, "teacher": teacher.identifier, "preprocess": teacher.preprocess_id,
            "source": source}
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return FeatureStore(root / "teacher-features" / short_hash(meta), meta, dim, chunk_rows=chunk_rows)


def image_feature_file(teacher: Any, split: Any, *, dataset_id: str, cache_dir: str | Path | None = None) -> Path:
    """The split index file through which :func:`teacher_image_features` serves ``split`` (named
    in messages about those features)."""
    store = _image_store(teacher, split, "image", teacher_dim(teacher), dataset_id, cache_dir)
    return store.index_path(split.keys, dataset_id)


def _per_image(teacher: Any, split: Any, kind: str, fn: Callable[[torch.Tensor], torch.Tensor] | None,
               dim: int | None, *, dataset_id: str, cache_dir: str | Path | None, batch_size: int,
               num_workers: int, progress: bool | Progress, refresh: bool = False,
               chunk_rows: int = DEFAULT_CHUNK_ROWS) -> torch.Tensor:
    """One cached per-image quantity ``fn(images)`` of a teacher on ``split`` (see the module docstring)."""
    if not dataset_id:
        raise ValueError("dataset_id must be a non-empty string (e.g. DatasetSplits.name)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for attr in ("identifier", "preprocess_id"):
        if not isinstance(getattr(teacher, attr, None), str):
            raise ValueError(f"teacher has no string attribute {attr!r}; pass a vldlib Teacher")
    store = _image_store(teacher, split, kind, dim, dataset_id, cache_dir, chunk_rows)
    device = getattr(teacher, "device", torch.device("cpu"))
    name = getattr(split, "name", "split")

    def encode(positions: list[int]) -> Iterator[tuple[list[int], torch.Tensor]]:
        what = "features" if kind == "image" else kind
        bar = encoding_progress(len(positions), f"teacher {what} {dataset_id}/{name}", progress)
        batches = [positions[k:k + batch_size] for k in range(0, len(positions), batch_size)]
        if num_workers > 0 or not hasattr(split, "get_batch"):
            subset = torch.utils.data.Subset(split, positions)
            loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=False,
                                                 num_workers=num_workers,
                                                 pin_memory=torch.device(device).type == "cuda")
            source_iter = ((b, imgs) for b, (imgs, _) in zip(batches, loader))
        else:
            source_iter = ((b, split.get_batch(b)[0]) for b in batches)
        try:
            for batch, images in source_iter:
                _check_finite(images, batch, split, f"{dataset_id}/{name}")
                with torch.inference_mode():
                    out = fn(images.to(device, non_blocking=True))
                bar.update(len(batch))
                yield batch, out
        finally:
            bar.close()

    return store.get(split.keys, dataset_id, encode, refresh=refresh)
