"""Where the images of the official split lists lie on disk (Li et al.'s ``data/`` format).

A listed ``<split>/<class_folder>/<file>`` is looked up under the data root ``R`` in the *split
layout* (``R/<split>/<class_folder>/<file>``) or in an original dataset folder (reference §4.4):
``R/<class>/<file>`` (e.g. ``CUB_200_2011/images``), ``R/CUB_200_2011/images/<class>/<file>``,
``R/images/<class>/<file>`` (Food-101), ``R/tiered_imagenet/{train,val}/<class>/<file>``, flat
``R/jpg/<file>`` (Flowers-102) and ``R/cars_train/<file>`` (Stanford Cars), and SUN397's
``R/<letter>/<nested class path>/<file>`` (via ``R/ClassName.txt`` when present, else by matching
folder names). A listed ``x.jpg`` is also found as ``x.png``, ``x.JPEG``, ...
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Sequence

__all__ = ["IMAGE_EXTENSIONS", "EXPECTED_LAYOUT", "resolve_images"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".JPEG", ".JPG", ".png", ".PNG")

EXPECTED_LAYOUT = """\
Expected one of these layouts (R = the data root you passed):
  (a) the official split layout (scripts/split_dataset.py output):
      R/train/<class_folder>/<file>, R/val_on_train/<class_folder>/<file>, R/val/<class_folder>/<file>
      plus R/label2text.txt (and optionally R/chatgpt.txt, R/*_data.txt);
  (b) an original dataset folder plus the official *_data.txt lists (pass splits=<folder with
      label2text.txt and the lists> if they are not in R): R/<class_folder>/<file>,
      R/CUB_200_2011/images/<class_folder>/<file>, R/images/<class_folder>/<file> (Food-101),
      R/tiered_imagenet/{train,val}/<class_folder>/<file>, R/jpg/<file> (Flowers-102, flat),
      R/cars_train/<file> (Stanford Cars, flat), R/<letter>/<nested/class/path>/<file> (SUN397,
      with R/ClassName.txt).
Image files may end in .jpg, .jpeg, .JPEG or .png."""



class _Listing:
    """Cached directory listings: exact file names and stems of image files."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[set[str], dict[str, str]] | None] = {}

    def get(self, d: Path) -> tuple[set[str], dict[str, str]] | None:
        if d not in self._cache:
            try:
                names = set(os.listdir(d))
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                self._cache[d] = None
            else:
                stems: dict[str, str] = {}
                for n in sorted(names):
                    stem, ext = os.path.splitext(n)
                    if ext in IMAGE_EXTENSIONS:
                        stems.setdefault(stem, n)
                self._cache[d] = (names, stems)
        return self._cache[d]

    def find(self, d: Path, filename: str) -> str | None:
        """The actual file name in ``d`` for ``filename`` (same name, or same stem with an image extension)."""
        listing = self.get(d)
        if listing is None:
            return None
        names, stems = listing
        if filename in names:
            return filename
        return stems.get(os.path.splitext(filename)[0])


def _sun_class_dirs(root: Path) -> dict[str, Path]:
    """SUN397 class folder name -> nested directory, from ``ClassName.txt`` or by walking ``root``.

    ``/a/apartment_building/outdoor`` is the class folder ``apartment_building_outdoor``
    (reference §4.4, the PR #2 mapping).
    """
    out: dict[str, Path] = {}
    for base in (root, root / "SUN397"):
        class_file = base / "ClassName.txt"
        if class_file.is_file():
            for line in class_file.read_text(encoding="utf-8").splitlines():
                parts = [p for p in line.strip().split("/") if p]
                if len(parts) >= 2:
                    out.setdefault("_".join(parts[1:]), base.joinpath(*parts))
    if out:
        return out
    for base in (root, root / "SUN397"):
        if not base.is_dir():
            continue
        for letter in sorted(os.listdir(base)):
            if len(letter) != 1 or not (base / letter).is_dir():
                continue
            for dirpath, dirnames, _ in os.walk(base / letter):
                rel = Path(dirpath).relative_to(base / letter).parts
                if rel:
                    out.setdefault("_".join(rel), Path(dirpath))
                if len(rel) >= 3:
                    dirnames[:] = []
    return out


def _candidates(root: Path, split: str, cls: str) -> list[tuple[str, Path]]:
    """(layout kind, directory) candidates for the images of class folder ``cls`` in ``split``."""
    out = [("split layout", root / split / cls), ("<class>/<img>", root / cls),
           ("CUB", root / "CUB_200_2011" / "images" / cls), ("images/<class>", root / "images" / cls)]
    out += [(f"tiered_imagenet/{s}", root / "tiered_imagenet" / s / cls) for s in ("train", "val", "test")]
    out += [(f"{s}/<class>", root / s / cls) for s in ("train", "val", "test") if s != split]
    out += [("flat jpg/", root / "jpg"), ("flat cars_train/", root / "cars_train"),
            ("flat cars_train/cars_train/", root / "cars_train" / "cars_train"), ("flat", root)]
    return out


def resolve_images(root: str | Path, relpaths: Sequence[str], *, what: str = "images") -> list[Path]:
    """Absolute paths of the listed ``<split>/<class>/<file>`` images under ``root``.

    Each (split, class) group is looked up in the candidate layouts of the module docstring; the
    first candidate directory holding all its files wins (else the one holding most). Missing
    files raise ONE FileNotFoundError that counts them (in total and per split), shows the first
    few where they were expected (in the layout most groups were found in) and the expected layouts.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data root not found: {root}\n{EXPECTED_LAYOUT}")
    listing = _Listing()
    groups: dict[tuple[str, str], list[int]] = {}
    for k, rel in enumerate(relpaths):
        parts = rel.split("/")
        groups.setdefault((parts[0], "/".join(parts[1:-1])), []).append(k)
    sun_dirs: dict[str, Path] | None = None
    out: list[Path | None] = [None] * len(relpaths)
    kinds: Counter[str] = Counter()
    unresolved: list[tuple[str, str, list[int], list[str | None] | None, Path | None]] = []
    for (split, cls), members in groups.items():
        files = [relpaths[k].split("/")[-1] for k in members]
        candidates = _candidates(root, split, cls)
        best: tuple[int, str, Path, list[str | None]] | None = None
        for attempt in range(2):
            for kind, d in candidates:
                if listing.get(d) is None:
                    continue
                found = [listing.find(d, f) for f in files]
                hits = sum(f is not None for f in found)
                if hits and (best is None or hits > best[0]):
                    best = (hits, kind, d, found)
                if hits == len(files):
                    break
            if (best is not None and best[0] == len(files)) or attempt == 1:
                break
            if sun_dirs is None:
                sun_dirs = _sun_class_dirs(root)
            candidates = [("SUN397", sun_dirs[cls])] if cls in sun_dirs else []
        if best is not None:
            kinds[best[1]] += len(members)
            for i, k in enumerate(members):
                if best[3][i] is not None:
                    out[k] = best[2] / best[3][i]
        if best is None or best[0] < len(files):
            unresolved.append((split, cls, members, best[3] if best else None, best[2] if best else None))
    if unresolved:
        common = kinds.most_common(1)[0][0] if kinds else "split layout"
        missing: list[tuple[int, str, Path]] = []
        for split, cls, members, found, d in unresolved:
            if d is None:
                d = dict(_candidates(root, split, cls)).get(common, root / split / cls)
            for i, k in enumerate(members):
                if found is None or found[i] is None:
                    missing.append((k, relpaths[k], d / relpaths[k].split("/")[-1]))
        missing.sort()
        per_split = Counter(rel.split("/")[0] for _, rel, _ in missing)
        totals = Counter(rel.split("/")[0] for rel in relpaths)
        counts = ", ".join(f"{s}: {per_split[s]} of {totals[s]}" for s in totals if per_split[s])
        shown = "\n".join(f"  {path}" for _, _, path in missing[:5])
        raise FileNotFoundError(
            f"{len(missing)} of {len(relpaths)} {what} were not found under {root} ({counts}); "
            f"the others were found in the layout '{common}'. First missing (expected at):\n"
            f"{shown}\n{EXPECTED_LAYOUT}")
    return [p for p in out if p is not None]
