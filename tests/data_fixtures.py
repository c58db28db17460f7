"""Tiny datasets in the official format, written by tests (import from other tests).

- :func:`write_tiny_official_root` - the split layout ``R/{train,val_on_train,val}/<class>/<img>.jpg``
  plus ``label2text.txt`` and ``chatgpt.txt`` (what the official ``split_dataset.py`` produces);
- :func:`write_tiny_original_root` - an original dataset folder (CUB-like ``<class>/<img>``, flat
  Flowers-like ``jpg/<img>``, or SUN397-like nested class paths) plus the official
  ``*_data.txt`` split lists, ``label2text.txt`` and ``chatgpt.txt``.

Classes have distinct colours (and a class-dependent stripe pattern), so a student can learn them.
Seen and unseen classes alternate in label2text order, so label remapping is exercised.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASS_WORDS = ["Red_Apple", "Green_Leaf", "Blue_Sky", "Yellow_Sun", "Purple_Grape", "Orange_Fruit",
               "Black_Cat", "White_Snow", "Pink_Rose", "Brown_Bear", "Gray_Stone", "Teal_Sea"]
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 60, 230), (240, 230, 40), (140, 40, 170), (250, 140, 20),
           (15, 15, 15), (245, 245, 245), (250, 150, 190), (120, 70, 30), (128, 128, 128), (0, 128, 128)]


@dataclass
class TinyClass:
    folder: str          # class folder name
    name: str            # natural name (spaces)
    seen: bool
    label: int           # label within the seen or unseen set
    files: dict          # split -> list of file names


def _class_plan(n_seen: int, n_unseen: int, per_class: int, folder_fmt: str) -> list[TinyClass]:
    if n_seen + n_unseen > len(CLASS_WORDS):
        raise ValueError(f"at most {len(CLASS_WORDS)} tiny classes")
    if per_class < 2:
        raise ValueError("per_class must be >= 2 (one X_train and one X_id image per seen class)")
    plan, s, u = [], 0, 0
    for i in range(n_seen + n_unseen):
        seen = (i % 2 == 0 and s < n_seen) or u >= n_unseen
        word = CLASS_WORDS[i]
        folder = folder_fmt.format(i=i + 1, word=word)
        files = [f"{word}_{j:04d}.jpg" for j in range(per_class)]
        if seen:
            n_id = max(1, round(0.3 * per_class))
            split_files = {"train": files[n_id:], "val_on_train": files[:n_id], "val": []}
            plan.append(TinyClass(folder, word.replace("_", " "), True, s, split_files))
            s += 1
        else:
            plan.append(TinyClass(folder, word.replace("_", " "), False, u,
                                  {"train": [], "val_on_train": [], "val": files}))
            u += 1
    return plan


def _image(class_index: int, j: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(1000 * class_index + j)
    img = np.empty((size, size, 3), dtype=np.float64)
    img[:] = COLOURS[class_index]
    period = 2 + class_index % 5
    stripes = (np.arange(size) // period) % 2 == 0
    img[:, stripes] *= 0.6
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _save(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=95)


def _write_text_files(root: Path, plan: list[TinyClass], descriptions: bool) -> None:
    root.mkdir(parents=True, exist_ok=True)
    lines = [f"{c.folder} {i + 1} {c.name.replace(' ', '_')}" for i, c in enumerate(plan)]
    (root / "label2text.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if descriptions:
        sents = [f"A {c.name.lower()} is a tiny test class with stripes of period {2 + i % 5}."
                 for i, c in enumerate(plan)]
        (root / "chatgpt.txt").write_text("\n".join(sents) + "\n", encoding="utf-8")


def _write_lists(root: Path, plan: list[TinyClass]) -> None:
    for split in ("train", "val_on_train", "val"):
        rel = [f"{split}/{c.folder}/{f}" for c in plan for f in c.files[split]]
        (root / f"{split}_data.txt").write_text("\n".join(rel), encoding="utf-8")


def write_tiny_official_root(path: str | Path, n_seen: int = 3, n_unseen: int = 3, per_class: int = 6,
                             size: int = 32, *, descriptions: bool = True,
                             write_lists: bool = False) -> Path:
    """Write ``path/{train,val_on_train,val}/<class>/<img>.jpg``, ``label2text.txt``, ``chatgpt.txt``.

    Seen classes: ``round(0.3 * per_class)`` images in ``val_on_train`` (X_id), the rest in ``train``;
    unseen classes: all ``per_class`` images in ``val`` (X_ood). Returns ``path``.
    """
    root = Path(path)
    plan = _class_plan(n_seen, n_unseen, per_class, "{i:03d}.{word}")
    for ci, c in enumerate(plan):
        for split, files in c.files.items():
            for f in files:
                _save(_image(ci, int(f[-8:-4]), size), root / split / c.folder / f)
    _write_text_files(root, plan, descriptions)
    if write_lists:
        _write_lists(root, plan)
    return root


def write_tiny_original_root(path: str | Path, n_seen: int = 3, n_unseen: int = 3, per_class: int = 6,
                             size: int = 32, *, layout: str = "cub", descriptions: bool = True) -> Path:
    """Write an original-layout dataset folder plus the official split lists; returns ``path``.

    ``layout``: ``"cub"`` -> ``path/CUB_200_2011/images/<class>/<img>``; ``"plain"`` ->
    ``path/<class>/<img>``; ``"flat"`` -> ``path/jpg/<img>`` (Flowers-102); ``"sun"`` ->
    ``path/<letter>/<word>/<variant>/<img>`` with class folder ``<word>_<variant>`` and
    ``path/ClassName.txt``. ``label2text.txt``, ``chatgpt.txt`` and ``*_data.txt`` lie in ``path``.
    """
    root = Path(path)
    layouts = ("cub", "plain", "flat", "sun")
    if layout not in layouts:
        raise ValueError(f"layout must be one of {layouts}")
    fmt = "{word}_outdoor" if layout == "sun" else "{i:03d}.{word}"
    plan = _class_plan(n_seen, n_unseen, per_class, fmt)
    class_names = []
    for ci, c in enumerate(plan):
        word = c.folder[: -len("_outdoor")] if layout == "sun" else None
        if layout == "sun":
            nested = f"{word[0].lower()}/{word.lower()}/outdoor"
            class_names.append("/" + nested)
        for split, files in c.files.items():
            for f in files:
                if layout == "cub":
                    dest = root / "CUB_200_2011" / "images" / c.folder / f
                elif layout == "plain":
                    dest = root / c.folder / f
                elif layout == "flat":
                    dest = root / "jpg" / f
                else:
                    dest = root / nested / f
                _save(_image(ci, int(f[-8:-4]), size), dest)
    if layout == "sun":
        # the folder name is the nested path joined with '_' (SUN397 PR #2 mapping)
        for c in plan:
            c.folder = c.folder.lower()
        (root / "ClassName.txt").write_text("\n".join(class_names) + "\n", encoding="utf-8")
    _write_text_files(root, plan, descriptions)
    _write_lists(root, plan)
    return root


def tiny_plan(n_seen: int = 3, n_unseen: int = 3, per_class: int = 6) -> list[TinyClass]:
    """The class plan the writers use (folder, name, seen, label, files per split), for assertions."""
    return _class_plan(n_seen, n_unseen, per_class, "{i:03d}.{word}")


def write_image_folder(path: str | Path, n_classes: int = 10, per_class: int = 8, size: int = 16,
                       classes_file: bool = False, descriptions: bool = False) -> Path:
    """An image folder ``R/<class_folder>/<img>.png`` (the ``folder`` dataset): ``n_classes``
    classes of ``per_class`` small generated PNGs; optionally ``classes.txt`` (tab-separated
    folder and name) and ``descriptions.json``. Returns R."""
    root = Path(path)
    folders = [f"{i:02d}_{CLASS_WORDS[i].lower()}" for i in range(n_classes)]
    for i, folder in enumerate(folders):
        for j in range(per_class):
            _save(_image(i, j, size), root / folder / f"img_{j:03d}.png")
    names = [CLASS_WORDS[i].replace("_", " ") for i in range(n_classes)]
    if classes_file:
        (root / "classes.txt").write_text("".join(f"{f}\t{n}\n" for f, n in zip(folders, names)), encoding="utf-8")
    if descriptions:
        import json

        table = {(n if classes_file else f.replace("_", " ")): [f"A tiny striped test class number {i}."]
                 for i, (f, n) in enumerate(zip(folders, names))}
        (root / "descriptions.json").write_text(json.dumps({"descriptions": table}), encoding="utf-8")
    return root
