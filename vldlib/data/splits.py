"""The dataset types every loader returns: :class:`DatasetSplits` and :class:`ImageSplit`.

A dataset yields the paper's three splits (paper §3, reference §1.1):

- ``train`` = X_train, training images of the seen classes Y_id (official ``train``);
- ``id``    = X_id, held-out images of Y_id (official ``val_on_train``);
- ``ood``   = X_ood, all images of the unseen classes Y_ood (official ``val``).

Labels of ``train``/``id`` index ``seen_classes``; labels of ``ood`` index ``unseen_classes``.

An :class:`ImageSplit` returns *loaded, un-augmented* images ``[C, S, S]`` in [0, 1], S = load_size
(paper §4.5: every image is resized to 256x256 inside the Dataset; all augmentation is a batch
tensor operation, see :mod:`vldlib.data.transforms`). Two kinds exist:

- :class:`TensorImageSplit`: images held in memory as a uint8 tensor (Fashion-MNIST);
- :class:`FileImageSplit`: image files decoded with PIL, converted to RGB and resized.

``keys`` are stable per-image ids, unique within ``source``; ``source`` identifies the pixel
content (dataset source + load size). The teacher-feature cache (:mod:`vldlib.features`) indexes
its per-source store by ``(source, key)``, so the same image is never encoded twice by one teacher.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

SPLIT_NAMES: tuple[str, ...] = ("train", "id", "ood")


class ImageSplit(torch.utils.data.Dataset):
    """One split: ``__getitem__(i) -> (image [C, S, S] float32 in [0, 1], label int)``.

    Attributes: ``keys`` (stable image ids), ``labels``, ``name`` ("train" | "id" | "ood"),
    ``source`` (identity of the image source, used as cache key), ``channels``, ``load_size``.
    Subclasses implement :meth:`_load` (one image) and may override :meth:`get_batch`.
    """

    def __init__(self, keys: Sequence[str], labels: Sequence[int], *, name: str, source: str,
                 channels: int, load_size: int) -> None:
        if len(keys) != len(labels):
            raise ValueError(f"ImageSplit {name!r}: {len(keys)} keys but {len(labels)} labels; "
                             "pass one label per image")
        self.keys: list[str] = list(keys)
        self.labels: list[int] = [int(v) for v in labels]
        self.name = name
        self.source = source
        self.channels = int(channels)
        self.load_size = int(load_size)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for split {self.name!r} of {len(self)} images")
        i = int(i) % len(self)
        return self._load(i), self.labels[i]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, n={len(self)}, "
                f"classes={len(set(self.labels))}, source={self.source!r})")

    def _load(self, i: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``[B, C, S, S]`` and labels ``[B]`` for ``indices`` (a fast path for in-memory data)."""
        idx = [int(i) for i in indices]
        images = torch.stack([self._load(i) for i in idx]) if idx else torch.empty(
            0, self.channels, self.load_size, self.load_size)
        return images, torch.tensor([self.labels[i] for i in idx], dtype=torch.long)

    def subset(self, indices: Sequence[int]) -> "ImageSplit":
        """A new split of the same kind holding only ``indices`` (in the given order)."""
        idx = [int(i) for i in indices]
        bad = [i for i in idx if not 0 <= i < len(self)]
        if bad:
            raise ValueError(f"subset of split {self.name!r}: indices {bad[:5]} out of range "
                             f"0..{len(self) - 1}")
        return self._subset(idx)

    def _subset(self, idx: list[int]) -> "ImageSplit":  # pragma: no cover - abstract
        raise NotImplementedError


class TensorImageSplit(ImageSplit):
    """Images held in memory as a uint8 tensor ``[N, H, W]`` or ``[N, C, H, W]``.

    Loading = ``x / 255``, resized to ``load_size x load_size`` with bilinear interpolation
    (``antialias=True``, ``align_corners=False``) when ``H, W != load_size``.
    """

    def __init__(self, images: torch.Tensor, keys: Sequence[str], labels: Sequence[int], *,
                 name: str, source: str, load_size: int) -> None:
        if images.dtype != torch.uint8:
            raise ValueError(f"TensorImageSplit expects uint8 images, got {images.dtype}")
        if images.dim() == 3:
            images = images.unsqueeze(1)
        if images.dim() != 4 or images.shape[0] != len(keys):
            raise ValueError(f"TensorImageSplit: images of shape {tuple(images.shape)} do not match "
                             f"{len(keys)} keys; expected [N, H, W] or [N, C, H, W]")
        super().__init__(keys, labels, name=name, source=source, channels=images.shape[1],
                         load_size=load_size)
        self.images = images

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255.0)
        if x.shape[-2:] != (self.load_size, self.load_size):
            x = F.interpolate(x, size=(self.load_size, self.load_size), mode="bilinear",
                              align_corners=False, antialias=True).clamp_(0.0, 1.0)
        return x

    def _load(self, i: int) -> torch.Tensor:
        return self._resize(self.images[i: i + 1])[0]

    def get_batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor([int(i) for i in indices], dtype=torch.long)
        labels = torch.as_tensor(self.labels, dtype=torch.long)[idx]
        return self._resize(self.images[idx]), labels

    def _subset(self, idx: list[int]) -> "TensorImageSplit":
        t = torch.as_tensor(idx, dtype=torch.long)
        return TensorImageSplit(self.images[t], [self.keys[i] for i in idx],
                                [self.labels[i] for i in idx], name=self.name, source=self.source,
                                load_size=self.load_size)


class FileImageSplit(ImageSplit):
    """Image files: opened with PIL, converted to RGB, resized to ``load_size x load_size``
    ignoring the aspect ratio (bilinear, as ``torchvision.transforms.Resize((S, S))`` on a PIL
    image in the official ``CLIPImageDataset``), returned as ``[3, S, S]`` float in [0, 1]."""

    def __init__(self, paths: Sequence[str | Path], keys: Sequence[str], labels: Sequence[int], *,
                 name: str, source: str, load_size: int) -> None:
        if len(paths) != len(keys):
            raise ValueError(f"FileImageSplit {name!r}: {len(paths)} paths but {len(keys)} keys")
        super().__init__(keys, labels, name=name, source=source, channels=3, load_size=load_size)
        self.paths: list[str] = [str(p) for p in paths]

    def _load(self, i: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            im = im.convert("RGB").resize((self.load_size, self.load_size), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8).copy()
        return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)

    def _subset(self, idx: list[int]) -> "FileImageSplit":
        return FileImageSplit([self.paths[i] for i in idx], [self.keys[i] for i in idx],
                              [self.labels[i] for i in idx], name=self.name, source=self.source,
                              load_size=self.load_size)


@dataclass
class DatasetSplits:
    """A dataset in the paper's protocol (paper §3): X_train, X_id (seen classes), X_ood (unseen).

    ``seen_classes`` / ``unseen_classes`` are natural class names in label order;
    ``descriptions`` maps class name -> description sentences (e.g. the official chatgpt.txt);
    images come out at ``load_size``; the student crops ``crop_size`` and normalises by
    ``mean`` / ``std`` (one value per channel).
    """

    name: str
    seen_classes: list[str]
    unseen_classes: list[str]
    train: ImageSplit
    id: ImageSplit
    ood: ImageSplit
    descriptions: dict[str, list[str]] | None
    channels: int
    load_size: int
    crop_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.crop_size > self.load_size:
            raise ValueError(f"crop_size={self.crop_size} exceeds load_size={self.load_size}; "
                             "choose crop_size <= load_size (the paper uses 224 of 256)")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"mean/std need {self.channels} values (one per channel), got "
                             f"{len(self.mean)} and {len(self.std)}")
        overlap = set(self.seen_classes) & set(self.unseen_classes)
        if overlap:
            raise ValueError(f"seen and unseen classes overlap: {sorted(overlap)[:5]}; "
                             "Y_id and Y_ood must be disjoint (paper §3)")

    @property
    def splits(self) -> dict[str, ImageSplit]:
        """``{"train": X_train, "id": X_id, "ood": X_ood}``."""
        return {"train": self.train, "id": self.id, "ood": self.ood}

    def summary(self) -> dict[str, int]:
        """Sizes as in paper Table 13: X_train, X_id, X_ood, Y_id, Y_ood."""
        return {"X_train": len(self.train), "X_id": len(self.id), "X_ood": len(self.ood),
                "Y_id": len(self.seen_classes), "Y_ood": len(self.unseen_classes)}
