"""Stored augmented views of the training images (dataset reinforcement, as in MobileCLIP): for
each image, K views drawn once from the student's own training augmentation (RandomResizedCrop +
horizontal flip, :mod:`vldlib.data.transforms`), so that the teacher can embed each view once and
the student can be taught, for the view it sees, the teacher's embedding of that same view.

A view is a crop box ``(i, j, h, w)`` in the loaded image's pixels and a flip bit. View ``v`` of
the image with key ``key`` is drawn from its own generator, seeded from ``(seed, key, v)``
(:func:`view_seed`): so the views of an image do not depend on which other images a split holds
(the class splits of one dataset share them) nor on K (the first two of four views are the two
views of K = 2). The boxes are replayed at any size: at the student's crop size for the student,
at the loaded size for the teacher (which then preprocesses the view as it does a whole image).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import torch

from .transforms import crop_params_from_uniforms

__all__ = ["VIEW_FORMAT", "ViewSpec", "view_seed", "view_params"]

#: The version of the view draw below (part of every stored view's key): change it whenever the
#: boxes drawn for a (seed, key, view) would change.
VIEW_FORMAT = 1
#: Uniform draws per view: 10 attempts x (area, aspect), the box's position (2), the flip (1).
_ATTEMPTS = 10


@dataclass(frozen=True)
class ViewSpec:
    """K views per image: their count, the seed of their draw and the augmentation family
    (RandomResizedCrop ``scale`` and ``ratio``, horizontal ``flip`` with p = 0.5) on images of
    ``size`` x ``size`` (the loaded size)."""

    count: int
    size: int
    seed: int = 0
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"a view spec needs count >= 1 views per image, got {self.count!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"a view spec needs the loaded image size (an int >= 1), got {self.size!r}")

    def key(self) -> str:
        """What determines each view's box and flip (the count aside): a feature-cache key part."""
        return (f"views{VIEW_FORMAT}:size{self.size}:seed{self.seed}:scale{self.scale[0]:.6g}-{self.scale[1]:.6g}"
                f":ratio{self.ratio[0]:.6g}-{self.ratio[1]:.6g}:flip{int(self.flip)}")

    def view_keys(self, keys: Sequence[str]) -> list[str]:
        """One key per (image, view), image-major: ``"<key>#view<v>"``."""
        return [f"{k}#view{v}" for k in keys for v in range(self.count)]


def view_seed(seed: int, key: str, view: int) -> int:
    """The seed of view ``view`` of image ``key`` (63 bits of blake2b over the three)."""
    digest = hashlib.blake2b(f"{seed}\0{key}\0{view}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def view_params(keys: Sequence[str], spec: ViewSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """The boxes ``[N, K, 4]`` (int64: top, left, height, width in the loaded image) and flips
    ``[N, K]`` (bool) of the K views of each image of ``keys`` (see the module docstring)."""
    n, k = len(keys), spec.count
    draws = torch.empty(n * k, 2 * _ATTEMPTS + 3, dtype=torch.float64)
    g = torch.Generator()
    for row, (key, v) in enumerate((key, v) for key in keys for v in range(k)):
        g.manual_seed(view_seed(spec.seed, key, v))
        draws[row] = torch.rand(2 * _ATTEMPTS + 3, generator=g, dtype=torch.float64)
    u = draws[:, :2 * _ATTEMPTS].reshape(n * k, _ATTEMPTS, 2)
    boxes = crop_params_from_uniforms(u, draws[:, 2 * _ATTEMPTS:2 * _ATTEMPTS + 2], spec.size, spec.size,
                                      scale=spec.scale, ratio=spec.ratio)
    flips = draws[:, -1] < 0.5 if spec.flip else torch.zeros(n * k, dtype=torch.bool)
    return boxes.reshape(n, k, 4), flips.reshape(n, k)
