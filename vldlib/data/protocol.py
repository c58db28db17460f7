"""The paper's protocol drawn from a seed: which classes are seen, which images are X_id.

The official lists are a fixed draw (paper §4.3, reference §4.3): a random, roughly 50/50 split
of the classes; within each seen class about 70% of its images go to X_train and 30% to X_id;
every image of an unseen class goes to X_ood. The same rule with a seed gives more class splits
(image folders, :mod:`.folder`; official datasets with ``split_seed``, :mod:`.official`):

- classes: ``perm = randperm(C, Generator().manual_seed(split_seed))``; seen = sorted(perm[:k]),
  unseen = sorted(perm[k:]) (class indices in sorted-folder order), k from ``seen`` (a count, or
  a share of C rounded, at least 1 and at most C - 1);
- images of a seen class (sorted by key): a permutation seeded by ``seed`` and the class
  *folder name* (never by ``split_seed``) puts ``round(id_fraction * n)`` images (at least 1, at
  most n - 1) into X_id and the rest into X_train, so a class's cut is the same in every class
  split it is seen in;
- X_ood: every image of the unseen classes, in key order (the 5-shot support is then the first
  ``shots`` images per class in key order, as ``ImageFolder(val)`` in the official code).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import torch

from .splits import DatasetSplits, FileImageSplit

__all__ = ["seen_count", "seeded_class_split", "seeded_image_splits", "seeded_dataset"]


def _seed_of(tag: str, *values: object) -> int:
    """A 62-bit seed from a tag and values (stable across runs and platforms)."""
    digest = hashlib.sha256(":".join([tag, *map(str, values)]).encode()).hexdigest()
    return int(digest[:15], 16)


def seen_count(n_classes: int, seen: int | float) -> int:
    """How many of ``n_classes`` are seen: ``seen`` as a count (int) or a share in (0, 1) (float)."""
    if isinstance(seen, bool) or not isinstance(seen, (int, float)):
        raise ValueError(f"seen must be a count (int) or a share of the classes in (0, 1) (float), "
                         f"got {seen!r}; e.g. seen=0.5")
    if isinstance(seen, float):
        if not 0.0 < seen < 1.0:
            raise ValueError(f"seen={seen!r}: a share of the classes must lie in (0, 1), e.g. 0.5; "
                             "pass an int for a count")
        k = round(seen * n_classes)
    else:
        k = seen
    if not 1 <= k <= n_classes - 1:
        raise ValueError(f"seen={seen!r} gives {k} seen of {n_classes} classes; at least one class must "
                         f"be seen and one unseen (choose 1..{n_classes - 1}, or a share such as 0.5)")
    return int(k)


def seeded_class_split(n_classes: int, split_seed: int, seen: int | float) -> tuple[list[int], list[int]]:
    """(seen, unseen) class indices, each ascending, for ``split_seed`` (module docstring rule)."""
    if isinstance(split_seed, bool) or not isinstance(split_seed, int) or split_seed < 0:
        raise ValueError(f"split_seed must be an integer >= 0, got {split_seed!r}")
    k = seen_count(n_classes, seen)
    perm = torch.randperm(n_classes, generator=torch.Generator().manual_seed(split_seed)).tolist()
    return sorted(perm[:k]), sorted(perm[k:])


def seeded_image_splits(items: Sequence[tuple[Path, str, int]], class_folders: Sequence[str], *,
                        split_seed: int, seen: int | float, id_fraction: float, seed: int,
                        source: str, load_size: int) -> tuple[list[int], list[int], dict[str, FileImageSplit]]:
    """X_train, X_id, X_ood of ``items`` (``(path, key, class index)``, class indices into
    ``class_folders``) under the seeded protocol: ``(seen, unseen, {"train", "id", "ood"})``."""
    if not 0.0 < float(id_fraction) < 1.0:
        raise ValueError(f"id_fraction must lie in (0, 1), got {id_fraction!r} (the paper uses 0.3)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    seen_idx, unseen_idx = seeded_class_split(len(class_folders), split_seed, seen)
    by_class: dict[int, list[tuple[Path, str]]] = {c: [] for c in range(len(class_folders))}
    for path, key, c in items:
        by_class[c].append((path, key))
    parts: dict[str, list[tuple[Path, str, int]]] = {"train": [], "id": [], "ood": []}
    for label, c in enumerate(seen_idx):
        members = sorted(by_class[c], key=lambda m: m[1])
        if len(members) < 2:
            raise ValueError(f"class {class_folders[c]!r} is seen in class split {split_seed} but holds "
                             f"{len(members)} image(s); a seen class needs at least 2 (X_train and X_id): "
                             "add images to it")
        g = torch.Generator().manual_seed(_seed_of("id-cut", seed, class_folders[c]))
        perm = torch.randperm(len(members), generator=g).tolist()
        n_id = max(1, min(len(members) - 1, round(float(id_fraction) * len(members))))
        chosen = set(perm[:n_id])
        for j, (path, key) in enumerate(members):
            parts["id" if j in chosen else "train"].append((path, key, label))
    for label, c in enumerate(unseen_idx):
        parts["ood"].extend((path, key, label) for path, key in sorted(by_class[c], key=lambda m: m[1]))
    splits = {name: FileImageSplit([p for p, _, _ in rows], [k for _, k, _ in rows], [lab for _, _, lab in rows],
                                   name=name, source=source, load_size=load_size)
              for name, rows in parts.items()}
    return seen_idx, unseen_idx, splits


def seeded_dataset(items: Sequence[tuple[Path, str, int]], class_folders: Sequence[str], class_names: Sequence[str],
                   *, label: str, split_seed: int, seen: int | float, id_fraction: float, seed: int, source: str,
                   load_size: int, crop_size: int, descriptions: dict[str, list[str]] | None,
                   mean: tuple[float, ...], std: tuple[float, ...]) -> DatasetSplits:
    """:class:`DatasetSplits` of ``items`` under the seeded protocol, named
    ``<label>/s<split_seed>/k<seen count>[/seed<seed>]`` (RGB images, ``mean`` / ``std`` per channel)."""
    seen_idx, unseen_idx, made = seeded_image_splits(
        items, class_folders, split_seed=split_seed, seen=seen, id_fraction=id_fraction, seed=seed,
        source=source, load_size=load_size)
    return DatasetSplits(
        name=f"{label}/s{split_seed}/k{len(seen_idx)}" + (f"/seed{seed}" if seed else ""),
        seen_classes=[class_names[c] for c in seen_idx], unseen_classes=[class_names[c] for c in unseen_idx],
        train=made["train"], id=made["id"], ood=made["ood"], descriptions=descriptions, channels=3,
        load_size=load_size, crop_size=crop_size, mean=mean, std=std)
