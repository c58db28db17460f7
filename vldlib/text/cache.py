"""Class-description prompts and the description cache file (schema, paths, atomic I/O).

The paper's language enrichment (Li et al., ICCV 2023, §5 and §6, Table 7) asks an LLM for one
sentence per class with one of four prompts (:data:`PROMPTS`; ``{cls}`` is the class name).
Descriptions live in one JSON file per (dataset, prompt variant, model)::

    {
      "format": "vldbook-descriptions/1",
      "dataset": "fashion-mnist",
      "variant": "main",                       # a PROMPTS key, or "custom-<sha1[:8]>"
      "prompt": "Use a single sentence ... {cls}. ...",
      "model": "gpt-4o-mini",
      "classes": ["T-shirt/top", "Trouser", ...],        # every class wanted, label order
      "descriptions": {"T-shirt/top": ["sentence", ...], ...},
      "provenance": {"T-shirt/top": {"prompt": "<prompt with the name filled in>",
                                     "model": ..., "temperature": ..., "n": ...,
                                     "time": "2026-01-01T00:00:00Z",
                                     "generator": "vldlib 0.1.0 / openai 1.2.3",
                                     "base_url": ...}, ...}
    }

Only ``descriptions`` is required when a file is written by hand; everything else is filled in
(``classes`` defaults to the keys of ``descriptions``). Files are written atomically.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from vldlib.io import read_json, write_json_atomic
from vldlib.paths import default_cache_dir
from vldlib.text.prompts import PROMPTS, VARIANT_TITLES, fill_prompt, resolve_prompt

#: Re-exported from :mod:`vldlib.text.prompts` for callers of the cache API.
__all__ = ["FORMAT", "PROMPTS", "VARIANT_TITLES", "DescriptionCache", "resolve_prompt", "fill_prompt",
           "slug", "default_cache_root", "descriptions_dir", "cache_path", "parse_cache", "read_cache",
           "write_cache"]

FORMAT = "vldbook-descriptions/1"

def slug(text: str) -> str:
    """A file-name-safe form of a dataset or model name ("org/model:v1" -> "org--model-v1")."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", text.replace("/", "--")).strip("-.")
    if not out:
        raise ValueError(f"cannot make a file name from {text!r}; use letters or digits")
    return out


def default_cache_root() -> Path:
    """``$VLD_CACHE`` if set, else the user cache dir (platformdirs) / "vldbook".

    The same root as the teacher-feature cache (:func:`vldlib.features.default_cache_dir`).
    """
    return default_cache_dir()


def descriptions_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder of the description caches: ``<cache root>/descriptions``."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    return root / "descriptions"


def cache_path(dataset: str, variant: str, model: str,
               cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache root>/descriptions/<dataset>_<variant>_<model>.json`` (names slugged)."""
    return descriptions_dir(cache_dir) / f"{slug(dataset)}_{slug(variant)}_{slug(model)}.json"


@dataclass
class DescriptionCache:
    """The content of one description file (see the module docstring for the JSON schema)."""

    dataset: str
    variant: str
    prompt: str
    model: str
    classes: list[str] = field(default_factory=list)
    descriptions: dict[str, list[str]] = field(default_factory=dict)
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)

    def missing(self, classes: Sequence[str] | None = None, n: int = 1) -> list[str]:
        """Classes (default: all of ``self.classes``) with fewer than ``n`` descriptions."""
        wanted = self.classes if classes is None else classes
        return [c for c in wanted if len(self.descriptions.get(c, [])) < n]

    def ordered(self, classes: Sequence[str] | None = None) -> dict[str, list[str]]:
        """``{class: [sentence, ...]}`` in label order (classes without descriptions left out)."""
        wanted = self.classes if classes is None else classes
        return {c: list(self.descriptions[c]) for c in wanted if c in self.descriptions}

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "dataset": self.dataset,
            "variant": self.variant,
            "prompt": self.prompt,
            "model": self.model,
            "classes": list(self.classes),
            "descriptions": {c: list(v) for c, v in self.descriptions.items()},
            "provenance": {c: dict(v) for c, v in self.provenance.items()},
        }


def _check_sentences(name: str, value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(
            isinstance(s, str) and s.strip() for s in value):
        raise ValueError(
            f"{where}: descriptions of class {name!r} must be a non-empty list of non-empty "
            f"strings, got {value!r}; fix the file (format: "
            '{"descriptions": {"class name": ["one sentence.", ...], ...}})')
    return [s.strip() for s in value]


def parse_cache(data: Mapping[str, Any], where: str = "description file") -> DescriptionCache:
    """Validate a decoded description file; missing optional fields get defaults."""
    if not isinstance(data, Mapping) or not isinstance(data.get("descriptions"), Mapping):
        raise ValueError(
            f"{where}: expected a JSON object with a 'descriptions' object mapping each class "
            'name to a list of sentences, e.g. {"descriptions": {"Trouser": ["..."]}}')
    fmt = data.get("format", FORMAT)
    if fmt != FORMAT:
        raise ValueError(f"{where}: unsupported format {fmt!r}; expected {FORMAT!r}")
    descriptions = {str(k): _check_sentences(str(k), v, where)
                    for k, v in data["descriptions"].items()}
    classes = data.get("classes", list(descriptions))
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ValueError(f"{where}: 'classes' must be a list of class names, got {classes!r}")
    provenance = data.get("provenance", {})
    if not isinstance(provenance, Mapping):
        raise ValueError(f"{where}: 'provenance' must be an object keyed by class name")
    return DescriptionCache(
        dataset=str(data.get("dataset", "")),
        variant=str(data.get("variant", "")),
        prompt=str(data.get("prompt", "")),
        model=str(data.get("model", "")),
        classes=list(classes),
        descriptions=descriptions,
        provenance={str(k): dict(v) for k, v in provenance.items()},
    )


def read_cache(path: str | os.PathLike) -> DescriptionCache:
    """Read and validate a description file (``FileNotFoundError`` if it does not exist)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no description file at {path}")
    return parse_cache(read_json(path, what="description file"), where=str(path))


def write_cache(cache: DescriptionCache, path: str | os.PathLike) -> Path:
    """Write atomically (:func:`vldlib.io.write_json_atomic`)."""
    return write_json_atomic(path, cache.to_json(), indent=2, ensure_ascii=False)
