"""The official data format of Li et al. (github.com/xuanlinli17/large_vlm_distillation_ood, ``data/``).

Files (reference §4.2):

- ``label2text.txt``: one class per line, ``<folder_name> <1-based id> <natural_name_with_underscores>``;
- ``chatgpt.txt`` (optional): one description sentence per line, aligned with ``label2text.txt``;
- ``train_data.txt`` (X_train), ``val_on_train_data.txt`` (X_id), ``val_data.txt`` (X_ood): one image
  per line, ``<split>/<class_folder>/<file>``.

Two ways to lay out the images are read:

1. the *split layout* written by the official ``scripts/split_dataset.py``:
   ``R/{train,val,val_on_train}/<class_folder>/<img>`` (with or without the ``*_data.txt`` lists);
2. an *original dataset folder* plus the split lists (CUB, Food-101, tiered-ImageNet, Flowers-102,
   Stanford Cars, SUN397 as downloaded; reference §4.4).

Finding the listed images on disk in either layout is :mod:`.official_images`.
Seen classes (Y_id) are the classes that occur in ``train``/``val_on_train``, unseen classes (Y_ood)
those in ``val``; labels follow the label2text order restricted to each set. Image files may end in
.jpg/.jpeg/.JPEG/.png (a listed ``x.jpg`` is also found as ``x.png``, ``x.JPEG``, ...).
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence

from .official_images import EXPECTED_LAYOUT, IMAGE_EXTENSIONS, resolve_images
from .protocol import seeded_dataset
from .splits import DatasetSplits, FileImageSplit

__all__ = ["OFFICIAL_SPLITS", "SPLIT_TO_PAPER", "IMAGE_EXTENSIONS", "IMAGENET_MEAN", "IMAGENET_STD",
           "EXPECTED_LAYOUT", "ClassEntry", "read_label2text", "read_chatgpt", "unique_names",
           "read_descriptions", "OfficialSplits", "read_official_splits", "resolve_images", "load_official"]

OFFICIAL_SPLITS: tuple[str, ...] = ("train", "val_on_train", "val")
"""Official split names: X_train, X_id, X_ood."""
SPLIT_TO_PAPER: dict[str, str] = {"train": "train", "val_on_train": "id", "val": "ood"}
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

class ClassEntry(NamedTuple):
    """One line of ``label2text.txt``: class folder, 1-based id, natural name (spaces)."""

    folder: str
    index: int
    name: str


def read_label2text(path: str | Path) -> list[ClassEntry]:
    """Parse ``label2text.txt`` (``<folder> <1-based id> <natural_name_with_underscores>`` per line).

    Natural names have underscores replaced by spaces. Blank lines are skipped. A line without
    exactly three space-separated tokens, a non-integer id or a repeated folder raises ValueError.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label2text.txt not found: {path}; copy it from the official "
                                "repository's data/<dataset>/ folder")
    entries: list[ClassEntry] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        tokens = line.split()
        if len(tokens) != 3:
            raise ValueError(f"{path}:{lineno}: expected 3 space-separated tokens "
                             f"'<folder> <id> <natural_name>', got {len(tokens)}: {line!r}")
        try:
            index = int(tokens[1])
        except ValueError:
            raise ValueError(f"{path}:{lineno}: the class id {tokens[1]!r} is not an integer") from None
        entries.append(ClassEntry(tokens[0], index, tokens[2].replace("_", " ")))
    if not entries:
        raise ValueError(f"{path} holds no classes")
    dup = [f for f, n in Counter(e.folder for e in entries).items() if n > 1]
    if dup:
        raise ValueError(f"{path}: class folders listed more than once: {dup[:5]}")
    return entries


def read_chatgpt(path: str | Path, n_classes: int | None = None) -> list[str]:
    """Parse ``chatgpt.txt``: one description sentence per line, aligned with label2text.

    Lines are stripped (CRLF tolerated); trailing blank lines are dropped. If ``n_classes`` is
    given, a different line count raises ValueError (the official code asserts the same).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"chatgpt.txt not found: {path}")
    lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if n_classes is not None and len(lines) != n_classes:
        raise ValueError(f"{path} has {len(lines)} lines but label2text.txt has {n_classes} classes; "
                         "chatgpt.txt must hold exactly one description per class, line by line "
                         "in label2text order")
    return lines


def unique_names(entries: Sequence[ClassEntry]) -> list[str]:
    """Natural names, with duplicates (tiered-ImageNet's two 'crane' and two 'maillot') made unique
    as ``'name (folder)'`` over the whole label2text (the rule of ``vldlib.text.descriptions``)."""
    counts = Counter(e.name for e in entries)
    return [f"{e.name} ({e.folder})" if counts[e.name] > 1 else e.name for e in entries]


def read_descriptions(folder: str | Path) -> dict[str, list[str]]:
    """``{natural name: [sentence]}`` from ``folder/chatgpt.txt`` aligned with ``folder/label2text.txt``."""
    folder = Path(folder)
    entries = read_label2text(folder / "label2text.txt")
    sentences = read_chatgpt(folder / "chatgpt.txt", len(entries))
    return {name: [s] for name, s in zip(unique_names(entries), sentences)}


@dataclass
class OfficialSplits:
    """The class names and split lists of one official dataset folder.

    ``classes``: every label2text entry; ``seen`` / ``unseen``: indices into ``classes`` in label
    order; ``train`` / ``val_on_train`` / ``val``: ``[(relpath, label)]`` with labels indexing
    ``seen_classes`` (train, val_on_train) or ``unseen_classes`` (val); ``descriptions``: the
    chatgpt.txt sentence per used class name, or None when absent.
    """

    folder: Path
    layout: str                                  # "lists" or "folders"
    classes: list[ClassEntry]
    seen: list[int]
    unseen: list[int]
    train: list[tuple[str, int]]
    val_on_train: list[tuple[str, int]]
    val: list[tuple[str, int]]
    descriptions: dict[str, list[str]] | None = None
    names: list[str] = field(default_factory=list)   # display name per entry of ``classes``

    @property
    def seen_classes(self) -> list[str]:
        return [self.names[i] for i in self.seen]

    @property
    def unseen_classes(self) -> list[str]:
        return [self.names[i] for i in self.unseen]

    @property
    def splits(self) -> dict[str, list[tuple[str, int]]]:
        return {"train": self.train, "val_on_train": self.val_on_train, "val": self.val}

    def sizes(self) -> dict[str, int]:
        """Split sizes in the form of paper Table 13."""
        return {"X_train": len(self.train), "X_id": len(self.val_on_train), "X_ood": len(self.val),
                "Y_id": len(self.seen), "Y_ood": len(self.unseen)}


def _read_list(path: Path, split: str) -> list[tuple[str, str]]:
    """``[(relpath, class_folder)]`` from one ``*_data.txt`` list."""
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        rel = line.strip().replace("\\", "/")
        if not rel:
            continue
        parts = rel.split("/")
        if len(parts) < 3 or parts[0] != split:
            raise ValueError(f"{path}:{lineno}: expected '{split}/<class_folder>/<file>', got {rel!r}")
        out.append((rel, parts[1]))
    return out


def _scan_folder(folder: Path, split: str) -> list[tuple[str, str]]:
    """``[(relpath, class_folder)]`` of the image files under ``folder/split/<class>/`` (sorted)."""
    out = []
    for cls in sorted(os.listdir(folder / split)):
        cdir = folder / split / cls
        if not cdir.is_dir():
            continue
        for name in sorted(os.listdir(cdir)):
            if name.endswith(IMAGE_EXTENSIONS) and (cdir / name).is_file():
                out.append((f"{split}/{cls}/{name}", cls))
    return out


def read_official_splits(folder: str | Path) -> OfficialSplits:
    """Class names and per-split image lists of an official dataset folder.

    ``folder`` holds ``label2text.txt`` and either the three lists ``train_data.txt``,
    ``val_on_train_data.txt``, ``val_data.txt`` or the split folders ``train/``, ``val_on_train/``,
    ``val/`` (then files are listed in sorted path order, as the official loader does).
    Optional ``chatgpt.txt`` gives ``descriptions`` (line-count mismatch -> ValueError).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"official data folder not found: {folder}\n{EXPECTED_LAYOUT}")
    if not (folder / "label2text.txt").is_file():
        raise FileNotFoundError(f"{folder} has no label2text.txt; point at the folder that holds "
                                f"label2text.txt (the official data/<dataset>/ folder).\n{EXPECTED_LAYOUT}")
    entries = read_label2text(folder / "label2text.txt")
    lists = {s: folder / f"{s}_data.txt" for s in OFFICIAL_SPLITS}
    present = [s for s, p in lists.items() if p.is_file()]
    if len(present) == len(OFFICIAL_SPLITS):
        layout = "lists"
        raw = {s: _read_list(lists[s], s) for s in OFFICIAL_SPLITS}
    elif not present and all((folder / s).is_dir() for s in OFFICIAL_SPLITS):
        layout = "folders"
        raw = {s: _scan_folder(folder, s) for s in OFFICIAL_SPLITS}
    else:
        missing = [p.name for s, p in lists.items() if s not in present]
        raise FileNotFoundError(
            f"{folder}: found neither all three split lists (missing: {', '.join(missing)}) nor the "
            f"split folders train/, val_on_train/, val/.\n{EXPECTED_LAYOUT}")
    index = {e.folder: i for i, e in enumerate(entries)}
    unknown = sorted({c for s in raw.values() for _, c in s if c not in index})
    if unknown:
        raise ValueError(f"{folder}: {len(unknown)} class folders in the splits are not in "
                         f"label2text.txt, e.g. {unknown[:5]}; use the label2text.txt of the same dataset")
    seen_set = {index[c] for s in ("train", "val_on_train") for _, c in raw[s]}
    unseen_set = {index[c] for _, c in raw["val"]}
    both = sorted(seen_set & unseen_set)
    if both:
        raise ValueError(f"{folder}: classes occur both in train/val_on_train and in val: "
                         f"{[entries[i].folder for i in both[:5]]}; seen and unseen classes must be disjoint")
    for s, items in raw.items():
        if not items:
            raise ValueError(f"{folder}: split {s!r} holds no images")
    seen, unseen = sorted(seen_set), sorted(unseen_set)
    pos = {**{c: k for k, c in enumerate(seen)}, **{c: k for k, c in enumerate(unseen)}}
    names = unique_names(entries)
    splits = {s: [(rel, pos[index[c]]) for rel, c in raw[s]] for s in OFFICIAL_SPLITS}
    descriptions = None
    if (folder / "chatgpt.txt").is_file():
        sentences = read_chatgpt(folder / "chatgpt.txt", len(entries))
        descriptions = {names[i]: [sentences[i]] for i in seen + unseen}
    return OfficialSplits(folder=folder, layout=layout, classes=entries, seen=seen, unseen=unseen,
                          train=splits["train"], val_on_train=splits["val_on_train"],
                          val=splits["val"], descriptions=descriptions, names=names)


def load_official(root: str | Path, *, splits: str | Path | None = None, load_size: int = 256,
                  crop_size: int = 224, name: str | None = None, descriptions: bool = True,
                  split_seed: int | None = None, seen: int | float | None = None,
                  id_fraction: float = 0.3, seed: int = 0) -> DatasetSplits:
    """A dataset in the official format as :class:`DatasetSplits` (see the module docstring).

    ``root``: the images (split layout or original dataset folder); ``splits``: the folder with
    ``label2text.txt`` (+ ``*_data.txt``, ``chatgpt.txt``), default ``root``. Images are loaded RGB and
    resized to ``load_size`` (256 in the paper); students crop ``crop_size`` (224) and normalise with
    the ImageNet mean/std.

    ``split_seed`` (default None: the fixed split of the official lists) draws another class split
    of the same images with the seeded protocol of :mod:`.protocol` (every listed image pooled;
    ``seen`` classes, default the lists' own count; ``id_fraction``, ``seed``), so that intervals
    can be taken over class splits; the teacher features are shared with the fixed split.
    """
    if root is None:
        raise ValueError("load_dataset('official') needs root=<data folder>; see the layouts below.\n"
                         + EXPECTED_LAYOUT)
    root = Path(root).expanduser().resolve()
    folder = Path(splits).expanduser().resolve() if splits is not None else root
    if load_size < 1 or crop_size < 1:
        raise ValueError(f"load_size and crop_size must be positive, got {load_size}, {crop_size}")
    info = read_official_splits(folder)
    source = f"official:{root}:{load_size}"
    rels = [r for s in OFFICIAL_SPLITS for r, _ in info.splits[s]]
    if info.layout == "folders" and folder == root:
        paths: list[Path] = [root / r for r in rels]
    else:
        paths = resolve_images(root, rels, what="images listed in the split lists")
    label = name or folder.name
    if split_seed is not None:
        return _resplit(info, paths, rels, label, split_seed=split_seed, seen=seen, id_fraction=id_fraction,
                        seed=seed, source=source, load_size=load_size, crop_size=crop_size,
                        descriptions=descriptions)
    if seen is not None:
        raise ValueError(f"seen={seen!r} needs split_seed (the official lists fix the seen classes); "
                         "set split_seed=<int> to draw a seeded class split, or leave seen unset")
    made, start = {}, 0
    for s in OFFICIAL_SPLITS:
        items = info.splits[s]
        made[SPLIT_TO_PAPER[s]] = FileImageSplit(
            paths[start:start + len(items)], [r for r, _ in items], [lab for _, lab in items],
            name=SPLIT_TO_PAPER[s], source=source, load_size=load_size)
        start += len(items)
    return DatasetSplits(
        name=f"official/{label}", seen_classes=info.seen_classes, unseen_classes=info.unseen_classes,
        train=made["train"], id=made["id"], ood=made["ood"],
        descriptions=info.descriptions if descriptions else None, channels=3,
        load_size=load_size, crop_size=crop_size, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def _resplit(info: OfficialSplits, paths: list[Path], rels: list[str], label: str, *, split_seed: int,
             seen: int | float | None, id_fraction: float, seed: int, source: str, load_size: int,
             crop_size: int, descriptions: bool) -> DatasetSplits:
    """The official images under a seeded class split (:mod:`.protocol`) instead of the lists' own."""
    used = sorted(info.seen + info.unseen)  # label2text entries, in label order
    where = {c: k for k, c in enumerate(used)}
    of_rel = {rel: info.seen[lab] if s != "val" else info.unseen[lab]
              for s in OFFICIAL_SPLITS for rel, lab in info.splits[s]}
    return seeded_dataset(
        [(path, rel, where[of_rel[rel]]) for path, rel in zip(paths, rels)], [info.classes[c].folder for c in used],
        [info.names[c] for c in used], label=f"official/{label}", split_seed=split_seed,
        seen=len(info.seen) if seen is None else seen, id_fraction=id_fraction, seed=seed, source=source,
        load_size=load_size, crop_size=crop_size, descriptions=info.descriptions if descriptions else None,
        mean=IMAGENET_MEAN, std=IMAGENET_STD)
