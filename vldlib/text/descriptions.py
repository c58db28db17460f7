"""LLM class descriptions (the paper's language enrichment, §5-6): where each set comes from.

What this module holds:

- :data:`PROMPTS` (from :mod:`vldlib.text.prompts`): the paper's main prompt and its three variants.
- :func:`read_official`: the official ``chatgpt.txt`` aligned with ``label2text.txt``.
- :func:`load_descriptions`: the shipped hand-written Fashion-MNIST sets, or a filled cache.
- :func:`descriptions_source`, :func:`description_digest`: where a run's set comes from and the
  sha256 of its content (part of a run's identity, :mod:`vldlib.train.inputs`).
- :func:`generate_descriptions` (from :mod:`vldlib.text.llm`): fill a cache with the
  ``openai`` client (command line: :mod:`vldlib.cli.describe`).
- The class-text classifier (:func:`class_text_features`) lives in :mod:`vldlib.text.classifier`
  and is re-exported here.

The paper's construction (official code, ``--chatgpt-raw-text-file``) is one string per class,
``l(y) = "a photo of {name} . {sentence}"``, encoded by T_txt and used as ê_y in Eq. 1 and
Eq. 6 (and for every evaluation). Averaging several descriptions and per-descriptor scoring are
extensions offered here for study; they are not the released method.
"""
from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from vldlib.data.fashion_mnist import CLASS_NAMES as FASHION_MNIST_CLASSES
from vldlib.data.official import read_chatgpt, read_label2text, unique_names
from vldlib.data.specs import DATASET_SPECS
from vldlib.io import json_sha256
from vldlib.text.cache import (DescriptionCache, cache_path, descriptions_dir, parse_cache,
                               read_cache, resolve_prompt, slug)
from vldlib.text.classifier import TEXT_MODES, class_text_features, class_texts, descriptor_scores
from vldlib.text.llm import DescriptionsUnavailable, LLMResponseError, generate_descriptions
from vldlib.text.prompts import PROMPTS, VARIANT_TITLES

__all__ = [
    "PROMPTS", "VARIANT_TITLES", "FASHION_MNIST_CLASSES", "TEXT_MODES", "read_official",
    "official_class_names", "description_key", "load_descriptions", "shipped_descriptions",
    "description_cache_file", "descriptions_source", "description_digest",
    "generate_descriptions", "class_texts", "class_text_features", "descriptor_scores",
    "DescriptionsUnavailable", "LLMResponseError", "DescriptionCache",
]


# ----------------------------------------------------------------------------- official files
def official_class_names(folder: str | os.PathLike) -> list[str]:
    """Natural class names of an official dataset folder, in label order.

    From ``<folder>/label2text.txt`` (``<folder_name> <id> <natural_name_with_underscores>``,
    underscores -> spaces; parsed by :func:`vldlib.data.official.read_label2text`). A natural
    name used by several classes (tiered-ImageNet's two "crane" and two "maillot") gets its
    folder name appended, ``"crane (n02012849)"``, so that every class has its own key (the same
    rule as :func:`vldlib.data.official.unique_names`).
    """
    return unique_names(read_label2text(Path(folder) / "label2text.txt"))


def read_official(folder: str | os.PathLike) -> dict[str, list[str]]:
    """``{class name: [sentence]}`` in label order from ``chatgpt.txt`` + ``label2text.txt``.

    Line i of ``chatgpt.txt`` describes the class on line i of ``label2text.txt`` (the official
    code asserts equal line counts; so does this). Names as :func:`official_class_names`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"official data folder {folder} does not exist; pass a folder of the official "
            "repository's data/ directory, e.g. .../data/Flower102")
    path = folder / "chatgpt.txt"
    if not path.is_file():
        raise FileNotFoundError(
            f"no chatgpt.txt in {folder}; it ships with the official repository's "
            "data/<dataset>/ folders (or generate descriptions: python -m vldlib describe)")
    names = official_class_names(folder)
    sentences = read_chatgpt(path)
    if len(sentences) != len(names):
        raise ValueError(
            f"{path} has {len(sentences)} lines but {folder / 'label2text.txt'} has "
            f"{len(names)} classes; the files must be aligned line by line (one sentence per "
            "class) - use the two files from the same official data/<dataset>/ folder")
    empty = [names[i] for i, s in enumerate(sentences) if not s]
    if empty:
        raise ValueError(f"{path}: empty description line for class(es) {empty[:5]}")
    return {name: [s] for name, s in zip(names, sentences)}


# ---------------------------------------------------------------------------- loading sets
def shipped_descriptions(variant: str = "main") -> DescriptionCache:
    """The hand-written Fashion-MNIST description set of ``variant`` (package data)."""
    if variant not in PROMPTS:
        raise ValueError(f"no shipped Fashion-MNIST set for {variant!r}; "
                         f"shipped variants: {', '.join(PROMPTS)}")
    res = resources.files("vldlib").joinpath("resources", "descriptions",
                                              f"fashion-mnist_{variant}.json")
    data = json.loads(res.read_text(encoding="utf-8"))
    return parse_cache(data, where=f"vldlib/resources/descriptions/fashion-mnist_{variant}.json")


def description_key(dataset: str, dataset_options: Mapping[str, Any]) -> str:
    """The dataset name description caches are filed under: ``"fashion-mnist"``, or for an
    official dataset or an image folder its ``name`` option, else its data folder's name (e.g.
    ``"CaltechBirds"``; never ``"official"`` or ``"folder"``, which name the layout, not the dataset)."""
    if dataset not in DATASET_SPECS:
        return dataset
    return DATASET_SPECS[dataset].description_key(dataset_options)


def load_descriptions(dataset: str, variant: str = "main",
                      cache_dir: str | os.PathLike | None = None,
                      model: str | None = None) -> dict[str, list[str]]:
    """``{class: [sentence, ...]}`` in label order for ``dataset`` and prompt ``variant``.

    ``"fashion-mnist"`` without ``model`` -> the shipped hand-written sets (not LLM output).
    Otherwise the cache file ``<cache_dir>/descriptions/<dataset>_<variant>_<model>.json``
    (cache root: ``$VLD_CACHE`` or the user cache dir); with ``model=None`` the only cache file
    of that dataset and variant. The cache must be complete. For the official datasets' shipped
    ``chatgpt.txt`` use :func:`read_official`.
    """
    variant_key, _ = resolve_prompt(variant)
    if model is None and dataset in DATASET_SPECS and DATASET_SPECS[dataset].shipped_descriptions:
        return shipped_descriptions(variant_key).ordered()
    path = description_cache_file(dataset, variant_key, cache_dir, model)
    if not path.is_file():
        raise FileNotFoundError(
            f"no {variant_key!r} descriptions for {dataset!r} at {path}; generate them with "
            f"`python -m vldlib describe --dataset {dataset} --prompt {variant} --model M "
            "[--classes-from FOLDER]` (needs OPENAI_API_KEY or --base-url), or for the "
            "official main-prompt sentences use vldlib.descriptions.read_official(folder)")
    cache = read_cache(path)
    missing = cache.missing()
    if missing:
        raise DescriptionsUnavailable(
            f"{path} is incomplete: {len(missing)} class(es) have no description "
            f"({', '.join(repr(c) for c in missing[:10])}); resume with `python -m vldlib "
            f"describe --dataset {dataset} --prompt {variant} --model {cache.model or 'M'}`")
    return cache.ordered()


def description_cache_file(dataset: str, variant: str, cache_dir: str | os.PathLike | None = None,
                           model: str | None = None) -> Path:
    """The cache file :func:`load_descriptions` reads for ``dataset`` and ``variant``: the one of
    ``model``, else the only one of that dataset and variant (it may not exist yet)."""
    variant_key, _ = resolve_prompt(variant)
    if model is not None:
        return cache_path(dataset, variant_key, model, cache_dir)
    folder = descriptions_dir(cache_dir)
    found = sorted(folder.glob(f"{slug(dataset)}_{slug(variant_key)}_*.json"))
    if len(found) > 1:
        raise ValueError(
            f"several description caches for {dataset!r}/{variant_key!r} in {folder}: "
            f"{', '.join(p.name for p in found)}; pass model=... to choose one")
    return found[0] if found else cache_path(dataset, variant_key, "MODEL", cache_dir)


# ----------------------------------------------------------------------------- identity
def descriptions_source(dataset: str, dataset_options: Mapping[str, Any],
                        which: str) -> tuple[dict[str, list[str]], str]:
    """``(set, where it came from)`` of the description set ``which`` a run on ``dataset`` uses:
    ``"official"`` -> the data folder's ``chatgpt.txt`` (:func:`read_official` of the ``splits``
    folder, else the root), a prompt variant -> :func:`load_descriptions` of
    :func:`description_key` (the shipped Fashion-MNIST sets, else the description cache).
    Raises what those raise when the set is missing or incomplete."""
    if which == "official":
        if dataset not in DATASET_SPECS or not DATASET_SPECS[dataset].official_descriptions:
            raise ValueError("descriptions='official' needs an official dataset with chatgpt.txt; for "
                             f"{dataset} use one of {', '.join(PROMPTS)} or None")
        folder = Path(str(dataset_options.get("splits") or dataset_options.get("root") or ""))
        return read_official(folder), str((folder / "chatgpt.txt").resolve())
    key = description_key(dataset, dataset_options)
    variant, _ = resolve_prompt(which)
    found = load_descriptions(key, which)
    shipped = key in DATASET_SPECS and DATASET_SPECS[key].shipped_descriptions
    where = (f"vldlib/resources/descriptions/{key}_{variant}.json" if shipped
             else str(description_cache_file(key, variant).resolve()))
    return found, where


def description_digest(descriptions: Mapping[str, Any]) -> str:
    """The sha256 of a description set's content (canonical JSON of ``{class: [sentence, ...]}``;
    neither the file's format, provenance nor key order counts)."""
    content = {str(k): [str(s) for s in v] for k, v in descriptions.items()}
    return json_sha256(content)
