"""Datasets in the paper's protocol: X_train, X_id (seen classes) and X_ood (unseen classes).

- :func:`load_dataset` - ``"fashion-mnist"`` (offline default, :mod:`.fashion_mnist`) or
  ``"official"`` (the paper's six datasets in the official format, :mod:`.official`) or ``"folder"``
  (your own images, ``root/<class>/<images>``, :mod:`.folder`; seeded class splits, :mod:`.protocol`);
- :func:`read_official_splits` - class names and split lists of an official data folder;
- :class:`DatasetSplits`, :class:`ImageSplit` - what loaders return (:mod:`.splits`);
- :func:`student_train_transform`, :func:`student_eval_transform` - batch transforms (:mod:`.transforms`).

This package knows nothing of teachers, training, runs or the book.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .fashion_mnist import CLASS_NAMES as FASHION_MNIST_CLASSES
from .fashion_mnist import class_split, distinct_split_seeds, find_fashion_mnist, load_fashion_mnist
from .folder import load_folder, read_folder_classes
from .official import (OfficialSplits, load_official, read_chatgpt, read_descriptions,
                       read_label2text, read_official_splits, resolve_images)
from .specs import DATASET_SPECS, DEFAULT_DATASET, DatasetSpec, dataset_spec, register_dataset
from .splits import DatasetSplits, FileImageSplit, ImageSplit, TensorImageSplit
from .transforms import (StudentEvalTransform, StudentTrainTransform, student_eval_transform,
                         student_train_transform)

#: Every dataset's name, and those whose ``dataset_options`` must name a data folder (``root``).
DATASETS: tuple[str, ...] = tuple(DATASET_SPECS)
ROOTED_DATASETS: tuple[str, ...] = tuple(n for n, s in DATASET_SPECS.items() if s.rooted)

__all__ = [
    "DATASETS", "DATASET_SPECS", "DEFAULT_DATASET", "DatasetSpec", "dataset_spec", "register_dataset",
    "ROOTED_DATASETS", "DatasetSplits", "FASHION_MNIST_CLASSES", "FileImageSplit", "ImageSplit",
    "OfficialSplits", "StudentEvalTransform", "StudentTrainTransform", "TensorImageSplit",
    "class_split", "distinct_split_seeds", "find_fashion_mnist", "load_dataset", "load_fashion_mnist", "load_folder", "load_official",
    "read_folder_classes",
    "read_chatgpt", "read_descriptions", "read_label2text", "read_official_splits",
    "resolve_images", "student_eval_transform", "student_train_transform", "images_per_class",
]

def images_per_class(name: str, options: dict[str, Any]) -> int | None:
    """Images of each (unseen) class that ``load_dataset(name, **options)`` will hold, when it
    is known from the options alone (Fashion-MNIST: ``per_class``); None when only reading the
    data tells (official lists, image folders)."""
    return dataset_spec(name).images_per_class(options)


def load_dataset(name: str, root: str | Path | None = None, **options: Any) -> DatasetSplits:
    """Load a dataset by name (:func:`dataset_spec`) as :class:`DatasetSplits`.

    ``"fashion-mnist"``: options ``split_seed=0, per_class=600, load_size=32, crop_size=28,
    id_fraction=0.3, seed=0, cap_seed=0, download=True, cache_dir=None``.
    ``"official"``: ``root`` = the image folder; options ``splits=None`` (folder with
    label2text.txt and the ``*_data.txt`` lists, default root), ``load_size=256, crop_size=224,
    name=None, descriptions=True, split_seed=None`` (None: the lists' class split; an int: a
    seeded one, with ``seen=None, id_fraction=0.3, seed=0``).
    ``"folder"``: ``root`` = an image folder ``root/<class>/<images>``; options ``split_seed=0,
    seen=0.5`` (a share or a count of the classes), ``id_fraction=0.3, seed=0, load_size=256,
    crop_size=224, name=None, descriptions=True``.
    """
    return dataset_spec(name).load(root, **options)
