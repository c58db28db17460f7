"""Your own images: an image folder ``root/<class>/<images>`` in the paper's protocol.

Layout (R = the data root)::

    R/<class_folder>/<image>.{jpg,jpeg,png,...}   one folder per class (at least two classes)
    R/classes.txt          optional: class names, one line per class "<class_folder><TAB><class name>"
    R/descriptions.json    optional: class descriptions in the description-file format
                           ({"descriptions": {"<class name>": ["sentence", ...], ...}}, see
                           vldlib/text/cache.py); every class needs at least one sentence

Class names are the folder names with underscores read as spaces, unless ``classes.txt`` names
them (folders it does not list keep their folder name). Hidden files and folders (``.name``) and
files at the top level are not classes; inside a class folder only files with an image extension
count (subfolders are ignored). Image keys are ``<class_folder>/<file>``.

Seen and unseen classes and X_train / X_id / X_ood come from the seeded protocol of
:mod:`.protocol` (``split_seed``, ``seen``, ``id_fraction``, ``seed``). Images are loaded RGB,
resized to ``load_size`` (256 as the paper) and normalised with the ImageNet mean / std; the
student crops ``crop_size`` (224). ``descriptions`` (default True) makes ``descriptions.json``
the dataset's own descriptions (``TrainConfig.descriptions="official"``).
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from vldlib.io import json_sha256, read_json

from .official import IMAGE_EXTENSIONS, IMAGENET_MEAN, IMAGENET_STD
from .protocol import seeded_dataset
from .splits import DatasetSplits

__all__ = ["CLASSES_FILE", "DESCRIPTIONS_FILE", "FOLDER_LAYOUT", "folder_identity", "load_folder", "read_folder_classes"]

CLASSES_FILE = "classes.txt"
DESCRIPTIONS_FILE = "descriptions.json"
FOLDER_LAYOUT = ("expected R/<class_folder>/<image> with at least two class folders of images "
                 "(.jpg, .jpeg, .png), optional R/classes.txt ('<class_folder><TAB><class name>' per line) "
                 "and R/descriptions.json")


def _image_files(folder: Path) -> list[str]:
    """Image file names in ``folder`` (sorted; hidden files and other extensions left out)."""
    return sorted(n for n in os.listdir(folder)
                  if not n.startswith(".") and n.endswith(IMAGE_EXTENSIONS) and (folder / n).is_file())


def _read_classes_file(path: Path, folders: list[str]) -> dict[str, str]:
    """``{class_folder: class name}`` from ``classes.txt`` (tab-separated, one class per line)."""
    names: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        folder, tab, name = line.partition("\t")
        if not tab or not folder.strip() or not name.strip():
            raise ValueError(f"{path}:{lineno}: expected '<class_folder><TAB><class name>', got {line!r}; "
                             "separate the folder and the name by one tab")
        folder = folder.strip()
        if folder not in folders:
            raise ValueError(f"{path}:{lineno}: {folder!r} is not a class folder of {path.parent}; "
                             f"the class folders are {folders[:8]}{' ...' if len(folders) > 8 else ''}")
        if folder in names:
            raise ValueError(f"{path}:{lineno}: class folder {folder!r} is named twice; keep one line per folder")
        names[folder] = name.strip()
    return names


def read_folder_classes(root: str | Path) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """(class folders sorted, class names, ``{class folder: image file names}``) of an image folder;
    a missing root, fewer than two classes or an empty class folder -> one-line error with the fix."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}; {FOLDER_LAYOUT}")
    folders = sorted(n for n in os.listdir(root) if not n.startswith(".") and (root / n).is_dir())
    if len(folders) < 2:
        raise ValueError(f"image folder {root} holds {len(folders)} class folder(s) ({folders}); a class split "
                         f"needs at least two classes: add one folder of images per class ({FOLDER_LAYOUT})")
    files = {f: _image_files(root / f) for f in folders}
    empty = [f for f in folders if not files[f]]
    if empty:
        raise ValueError(f"class folder {root / empty[0]} holds no images (.jpg, .jpeg, .png)"
                         + (f" (nor do {len(empty) - 1} more)" if len(empty) > 1 else "")
                         + "; add images to it or remove the folder")
    given = _read_classes_file(root / CLASSES_FILE, folders) if (root / CLASSES_FILE).is_file() else {}
    names = [given.get(f, f.replace("_", " ")) for f in folders]
    dup = [n for n, k in Counter(names).items() if k > 1]
    if dup:
        raise ValueError(f"image folder {root}: class name {dup[0]!r} is given to several folders; give each "
                         f"class its own name (in {CLASSES_FILE}: '<class_folder><TAB><class name>')")
    return folders, names, files


def folder_identity(root: str | Path) -> str:
    """The content identity of an image folder: sha256 of its class folders and names
    (``classes.txt`` applied) and every image's key ``<class_folder>/<file>`` with its size in
    bytes. Copies of one folder share it wherever they lie; adding, removing, renaming or resizing
    an image changes it (image bytes are not read; ``descriptions.json`` is not part of it)."""
    root = Path(root).expanduser().resolve()
    folders, names, files = read_folder_classes(root)
    sizes = {f"{f}/{n}": (root / f / n).stat().st_size for f in folders for n in files[f]}
    return json_sha256({"classes": [[f, n] for f, n in zip(folders, names)], "images": sizes})


def _check_images(paths: list[Path]) -> None:
    """Open every image's header (PIL reads it lazily: cheap); the first unreadable one -> ValueError."""
    from PIL import Image, UnidentifiedImageError

    for path in paths:
        try:
            with Image.open(path) as im:
                im.size  # noqa: B018 - the header is parsed on open; size proves it was
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise ValueError(f"unreadable image {path} ({type(exc).__name__}); replace it with a valid "
                             "JPEG/PNG file or delete it") from None


def _read_descriptions(path: Path, names: list[str]) -> dict[str, list[str]]:
    """``{class name: [sentence, ...]}`` from ``descriptions.json`` (every class, no other key)."""
    data = read_json(path)
    table = data.get("descriptions") if isinstance(data, dict) else None
    if not isinstance(table, dict):
        raise ValueError(f"{path}: expected a JSON object with 'descriptions': {{class name: [sentence, ...]}}")
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise ValueError(f"{path}: {unknown[0]!r} is not a class name of this folder; the keys must be the "
                         f"class names, e.g. {names[:3]}")
    out: dict[str, list[str]] = {}
    for name in names:
        sentences = table.get(name)
        if isinstance(sentences, str):
            sentences = [sentences]
        if not isinstance(sentences, list) or not sentences or not all(isinstance(s, str) and s.strip()
                                                                      for s in sentences):
            raise ValueError(f"{path}: class {name!r} needs a non-empty list of sentences; add it or "
                             "remove descriptions.json")
        out[name] = [s.strip() for s in sentences]
    return out


def load_folder(root: str | Path, *, split_seed: int = 0, seen: int | float = 0.5, id_fraction: float = 0.3,
                seed: int = 0, load_size: int = 256, crop_size: int = 224, name: str | None = None,
                descriptions: bool = True) -> DatasetSplits:
    """An image folder (module docstring) as :class:`DatasetSplits` under the seeded protocol."""
    if root is None:
        raise ValueError(f"dataset 'folder' needs root=<image folder>; {FOLDER_LAYOUT}")
    if load_size < 1 or crop_size < 1:
        raise ValueError(f"load_size and crop_size must be positive, got {load_size}, {crop_size}")
    root = Path(root).expanduser().resolve()
    folders, names, files = read_folder_classes(root)
    items = [(root / f / n, f"{f}/{n}", c) for c, f in enumerate(folders) for n in files[f]]
    _check_images([p for p, _, _ in items])
    desc = (_read_descriptions(root / DESCRIPTIONS_FILE, names)
            if descriptions and (root / DESCRIPTIONS_FILE).is_file() else None)
    return seeded_dataset(items, folders, names, label=f"folder/{name or root.name}", split_seed=split_seed,
                          seen=seen, id_fraction=id_fraction, seed=seed,
                          source=f"folder:{folder_identity(root)[:16]}:{load_size}",
                          load_size=load_size, crop_size=crop_size, descriptions=desc, mean=IMAGENET_MEAN,
                          std=IMAGENET_STD)
