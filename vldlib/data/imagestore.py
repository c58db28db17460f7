"""Decoded images on disk: one uint8 memory-mapped array per split (the GPU data path).

Decoding a JPEG with PIL costs more than a ResNet18 step on a GPU, and the paper's schedules pass
over X_train hundreds of times (90 x 5 epochs for CUB). So each image of a file-backed split is
decoded and resized **once** (exactly as :class:`~vldlib.data.splits.FileImageSplit` does) into
``<cache>/images/<key>.u8``, a C-order ``[N, C, S, S]`` uint8 array, with ``<key>.json`` beside it
(shape, source, sha256 of the bytes). The key hashes what determines the pixels, like the teacher
cache's keys: the split's ``source`` (dataset + load size), channels, load size and its ordered
image keys. Both files are written atomically (:mod:`vldlib.io`); on open the shape, size and
sha256 are verified, and a damaged store is rebuilt with a warning. Training reads batches by
index from the memory map and turns them into floats on the device (``x / 255``: the same
numbers as the PIL path, so a run's numbers do not depend on which path fed it).

A split whose store would not fit on the cache's disk (:func:`fits_on_disk`) keeps the DataLoader
path over the files; a disk that fills up while a store is written is a one-line
:class:`vldlib.diskspace.DiskFullError` (nothing half-written is left).
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import IO, Sequence

import numpy as np
import torch

from vldlib.diskspace import disk_full, free_bytes, is_disk_full
from vldlib.io import atomic_write, try_read_json, write_json_atomic
from vldlib.progress import Progress

from .splits import ImageSplit

__all__ = ["FORMAT", "HEADROOM", "ImageStore", "ImageStoreError", "store_key", "store_nbytes", "free_bytes",
           "fits_on_disk",
           "open_image_store", "build_image_store", "to_unit_float"]

FORMAT = 1
_CHUNK = 16 * 2**20


class ImageStoreError(ValueError):
    """A store on disk that cannot be used (missing data, wrong shape or size, altered bytes)."""


def store_key(split: ImageSplit) -> str:
    """24 hex digits of sha256 over what fixes a split's pixels: format, ``source``, channels,
    load size and the ordered image keys."""
    keys = hashlib.sha256(json.dumps(list(split.keys), ensure_ascii=False).encode("utf-8")).hexdigest()
    parts = [FORMAT, split.source, split.channels, split.load_size, keys]
    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()[:24]


def store_nbytes(split: ImageSplit) -> int:
    """Bytes of a split's store: ``N * C * S * S``."""
    return len(split) * split.channels * split.load_size ** 2


#: A store is built only when this many times its size is free (room for the temp file and the rest).
HEADROOM = 2.0


def fits_on_disk(split: ImageSplit, cache_dir: str | os.PathLike, headroom: float = HEADROOM) -> bool:
    """Whether the split's store exists already or ``headroom`` times its size is free on the
    disk of ``cache_dir``."""
    folder = Path(cache_dir) / "images"
    if (folder / f"{store_key(split)}.u8").exists():
        return True
    free = free_bytes(cache_dir)  # None (unknown): build it; a full disk then is one line
    return free is None or free > headroom * store_nbytes(split)


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1] (``x / 255``, on ``x``'s device)."""
    return x.float().div_(255.0)


class ImageStore:
    """A split's decoded images, ``[N, C, S, S]`` uint8, memory-mapped read-only."""

    def __init__(self, path: Path, shape: Sequence[int]) -> None:
        self.path = Path(path)
        self.shape = tuple(int(v) for v in shape)
        self.array = np.memmap(self.path, dtype=np.uint8, mode="r", shape=self.shape) if self.shape[0] else \
            np.zeros(self.shape, dtype=np.uint8)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"ImageStore({str(self.path)!r}, shape={self.shape})"

    def batch(self, rows: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """uint8 images ``[B, C, S, S]`` (CPU) of ``rows``."""
        idx = np.asarray(torch.as_tensor(rows, dtype=torch.long).cpu().numpy())
        return torch.from_numpy(np.ascontiguousarray(self.array[idx]))


def _paths(split: ImageSplit, cache_dir: str | os.PathLike) -> tuple[Path, Path]:
    folder = Path(cache_dir) / "images"
    key = store_key(split)
    return folder / f"{key}.u8", folder / f"{key}.json"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def open_image_store(split: ImageSplit, cache_dir: str | os.PathLike, *, verify: bool = True) -> ImageStore | None:
    """The split's store if it has been built (None if not); :class:`ImageStoreError` when the
    files are there but inconsistent (``verify``: the sha256 of the bytes is checked too)."""
    data, meta_path = _paths(split, cache_dir)
    meta = try_read_json(meta_path)
    if meta is None:
        return None
    shape = [len(split), split.channels, split.load_size, split.load_size]
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("shape") != shape:
        raise ImageStoreError(f"{meta_path}: not a store of this split (expected shape {shape})")
    if not data.is_file() or data.stat().st_size != int(np.prod(shape)):
        raise ImageStoreError(f"{data}: missing or of the wrong size (expected {int(np.prod(shape))} bytes)")
    if verify and _file_sha256(data) != meta.get("sha256"):
        raise ImageStoreError(f"{data}: sha256 does not match the one written with it (altered or damaged)")
    return ImageStore(data, shape)


def build_image_store(split: ImageSplit, cache_dir: str | os.PathLike, *, batch_size: int = 64,
                      num_workers: int = 0, refresh: bool = False,
                      progress: bool | Progress = False) -> ImageStore:
    """Open the split's store, building it first when missing, damaged (warned) or ``refresh``:
    every image decoded once (``num_workers`` DataLoader workers), stored as uint8; ``progress``:
    rate-limited lines of the build (:mod:`vldlib.progress`)."""
    if not refresh:
        try:
            found = open_image_store(split, cache_dir)
        except ImageStoreError as err:
            warnings.warn(f"image store rebuilt: {err}", RuntimeWarning, stacklevel=2)
            found = None
        if found is not None:
            return found
    data, meta_path = _paths(split, cache_dir)
    digest = hashlib.sha256()
    loader = torch.utils.data.DataLoader(split, batch_size=batch_size, num_workers=num_workers, shuffle=False)

    def write(fh: IO[bytes]) -> None:
        with Progress.of(progress).task(f"image store {split.source}/{split.name}", len(split)) as task:
            for images, _ in loader:
                block = images.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).contiguous().numpy()
                digest.update(block.data)
                fh.write(block.data)
                task.update(len(images))

    shape = [len(split), split.channels, split.load_size, split.load_size]
    try:
        atomic_write(data, write)
        write_json_atomic(meta_path, {"format": FORMAT, "shape": shape, "dtype": "uint8", "source": split.source,
                                      "split": split.name, "sha256": digest.hexdigest()})
    except (OSError, RuntimeError) as err:
        if not is_disk_full(err):
            raise
        raise disk_full(data.parent, f"the decoded images of split {split.name} to {data.name}",
                        "free space there or point the cache elsewhere (cache_dir, --cache-dir or $VLD_CACHE)",
                        store_nbytes(split)) from None
    return ImageStore(data, shape)
