"""Datasets as specs: what the rest of vldlib may ask of a dataset, declared once per dataset.

A :class:`DatasetSpec` names a dataset's loader and its properties (a data folder or not, how its
class split is chosen, which descriptions ship with it). Code outside ``vldlib.data`` asks the spec
(:func:`dataset_spec`) and never compares a dataset's name. Adding a dataset is one loader module
and one :func:`register_dataset` call at the end of this file.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .fashion_mnist import CLASS_NAMES as FASHION_MNIST_CLASSES
from .fashion_mnist import load_fashion_mnist
from .folder import DESCRIPTIONS_FILE, load_folder
from .identity import fashion_mnist_data_identity, folder_data_identity, official_data_identity
from .official import load_official
from .splits import DatasetSplits

__all__ = ["DatasetSpec", "DATASET_SPECS", "DEFAULT_DATASET", "register_dataset", "dataset_spec", "data_identity"]

#: Images of each Fashion-MNIST class in the pooled train + t10k files.
FASHION_MNIST_PER_CLASS = 7000


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: its loader and what the trainer, the CLI and the chapters may ask of it.

    ``rooted``: ``dataset_options`` must name a data folder (``root``). ``split_seed_required``:
    every run draws its class split from an integer ``split_seed`` and the grid's split seeds apply
    by default (otherwise the dataset's own default split holds: the official lists, a folder's
    ``split_seed`` option). ``builtin_classes``: the class names, when known without data.
    ``shipped_descriptions``: hand-written description sets packaged with vldlib (under its name).
    ``official_descriptions``: the data folder ships main-prompt descriptions, read with
    ``descriptions="official"`` (``chatgpt.txt``; for ``own_descriptions_file``, when that file
    exists in the root). ``images_per_class``: images of each unseen class, from the options alone.
    ``identity``: ``options -> {"sha256", "source"}``, the content of the data a run reads (in the
    run hash where it differs from the default book's, :mod:`vldlib.train.inputs`).
    """

    name: str
    loader: Callable[..., DatasetSplits]
    summary: str
    aliases: tuple[str, ...] = ()
    rooted: bool = False
    root_hint: str = ""
    split_seed_required: bool = False
    builtin_classes: tuple[str, ...] | None = None
    shipped_descriptions: bool = False
    official_descriptions: bool = False
    own_descriptions_file: str | None = None
    images_per_class: Callable[[Mapping[str, Any]], int | None] = lambda options: None
    identity: Callable[[Mapping[str, Any]], dict[str, str]] | None = None

    def options(self) -> list[str]:
        """The loader's option names (everything but ``root``)."""
        return [p for p in inspect.signature(self.loader).parameters if p != "root"]

    def option_default(self, option: str) -> Any:
        """The loader's default for ``option`` (a ``KeyError`` names an option it lacks)."""
        return inspect.signature(self.loader).parameters[option].default

    def load(self, root: str | Path | None = None, **options: Any) -> DatasetSplits:
        """The dataset as :class:`DatasetSplits`; an unknown option is a one-line error."""
        unknown = sorted(set(options) - set(self.options()))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for dataset {self.name!r}; known: {self.options()}")
        return self.loader(root, **options)

    def description_key(self, options: Mapping[str, Any]) -> str:
        """The name description caches are filed under: the dataset's own for a dataset without
        a data folder, else its ``name`` option or its folder's name (never the layout's name)."""
        if not self.rooted:
            return self.name
        name = options.get("name") or Path(str(options.get("root", ""))).name
        if not name:
            raise ValueError(f"dataset {self.name!r} needs dataset_options={{'root': <data folder>}} (or 'name') "
                             "to find its description cache")
        return str(name)

    def ships_descriptions(self, options: Mapping[str, Any]) -> bool:
        """Whether a run on this dataset with ``options`` reads its main-prompt descriptions from
        the data folder (``descriptions="official"``) rather than a description cache."""
        if self.own_descriptions_file is None:
            return self.official_descriptions
        root = options.get("root")
        return bool(root) and (Path(str(root)) / self.own_descriptions_file).is_file()

    def data_identity(self, options: Mapping[str, Any]) -> dict[str, str]:
        """``{"sha256": identity, "source": where the data was found}`` of the data ``options`` name."""
        if self.identity is None:
            raise ValueError(f"dataset {self.name!r} declares no data identity (DatasetSpec.identity)")
        return self.identity(options)


#: Every dataset by name.
DATASET_SPECS: dict[str, DatasetSpec] = {}
_ALIASES: dict[str, str] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to :data:`DATASET_SPECS` (its name and aliases must be new)."""
    for key in (spec.name, *spec.aliases):
        if key in DATASET_SPECS or key in _ALIASES:
            raise ValueError(f"dataset name {key!r} is registered already")
    DATASET_SPECS[spec.name] = spec
    _ALIASES.update({alias: spec.name for alias in spec.aliases})
    return spec


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name`` (or an alias; case and ``_``/``-`` ignored)."""
    key = str(name).lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key in DATASET_SPECS:
        return DATASET_SPECS[key]
    rooted = [s.name for s in DATASET_SPECS.values() if s.rooted]
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_SPECS)} "
                     f"(use {' or '.join(repr(r) for r in rooted)} with root=<folder>: 'official' for CUB, "
                     "Flowers, Cars, Food-101, SUN397, tiered-ImageNet; 'folder' for your own root/<class>/<images>)")


def data_identity(name: str, options: Mapping[str, Any]) -> dict[str, str]:
    """``{"sha256": identity, "source": where the data was found}`` of ``load_dataset(name, **options)``
    (the spec's ``identity``). A named location without the files, or a data folder that is missing
    or malformed, raises the loader's ``FileNotFoundError`` / ``ValueError``."""
    return dataset_spec(name).data_identity(options)


def _fashion_mnist_per_class(options: Mapping[str, Any]) -> int | None:
    default = inspect.signature(load_fashion_mnist).parameters["per_class"].default
    cap = options.get("per_class", default)
    return FASHION_MNIST_PER_CLASS if cap is None else min(int(cap), FASHION_MNIST_PER_CLASS)


register_dataset(DatasetSpec(
    name="fashion-mnist", loader=load_fashion_mnist, aliases=("fashionmnist", "fmnist"),
    summary="Fashion-MNIST, the offline default (10 classes, seeded 5/5 class splits)",
    split_seed_required=True, builtin_classes=tuple(FASHION_MNIST_CLASSES), shipped_descriptions=True,
    images_per_class=_fashion_mnist_per_class, identity=fashion_mnist_data_identity))
register_dataset(DatasetSpec(
    name="official", loader=load_official, rooted=True,
    summary="one of the paper's six datasets in the official format (label2text.txt and split lists)",
    root_hint="a folder with train/, val/, val_on_train/ and label2text.txt",
    official_descriptions=True, identity=official_data_identity))
register_dataset(DatasetSpec(
    name="folder", loader=load_folder, rooted=True,
    summary="your own image folder root/<class>/<images> (seeded class splits)",
    root_hint="an image folder root/<class>/<images>", own_descriptions_file=DESCRIPTIONS_FILE,
    identity=folder_data_identity))

#: The dataset a config names when it names none.
DEFAULT_DATASET = "fashion-mnist"
