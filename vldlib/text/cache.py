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
                                     "base_url": ..., "cut": [0]}, ...},
      "alternates": {"T-shirt/top": [{"descriptions": [...], "provenance": {...}}]}
    }

Only ``descriptions`` is required when a file is written by hand; everything else is filled in
(``classes`` defaults to the keys of ``descriptions``). ``provenance[c]["cut"]`` lists the
descriptions cut to :data:`~vldlib.text.clean.MAX_CHARS`. Reading refuses a description longer
than that, one with control characters, and more than :data:`~vldlib.text.clean.MAX_PER_CLASS`
per class.

Several runs may fill one file at once: :func:`update_cache` re-reads the file under a lock
(``<file>.lock``, ``fcntl.flock``) and merges before it writes, so no run drops another's
classes. When two runs described the same class, the first complete set stays in
``descriptions`` (what training reads, so results already made from it stay valid) and the
later set is kept with its provenance under ``alternates`` (only written when not empty).
Files are written atomically.
"""
from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from vldlib.io import read_json, write_json_atomic
from vldlib.paths import default_cache_dir
from vldlib.text.clean import MAX_PER_CLASS, text_problem
from vldlib.text.prompts import PROMPTS, VARIANT_TITLES, fill_prompt, resolve_prompt

#: Re-exported from :mod:`vldlib.text.prompts` for callers of the cache API.
__all__ = ["FORMAT", "PROMPTS", "VARIANT_TITLES", "DescriptionCache", "resolve_prompt", "fill_prompt",
           "slug", "default_cache_root", "descriptions_dir", "cache_path", "parse_cache", "read_cache",
           "write_cache", "CacheBusy", "cache_lock", "update_cache"]

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
    alternates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def missing(self, classes: Sequence[str] | None = None, n: int = 1) -> list[str]:
        """Classes (default: all of ``self.classes``) with fewer than ``n`` descriptions."""
        wanted = self.classes if classes is None else classes
        return [c for c in wanted if len(self.descriptions.get(c, [])) < n]

    def ordered(self, classes: Sequence[str] | None = None) -> dict[str, list[str]]:
        """``{class: [sentence, ...]}`` in label order (classes without descriptions left out)."""
        wanted = self.classes if classes is None else classes
        return {c: list(self.descriptions[c]) for c in wanted if c in self.descriptions}

    def to_json(self) -> dict[str, Any]:
        out = {
            "format": FORMAT,
            "dataset": self.dataset,
            "variant": self.variant,
            "prompt": self.prompt,
            "model": self.model,
            "classes": list(self.classes),
            "descriptions": {c: list(v) for c, v in self.descriptions.items()},
            "provenance": {c: dict(v) for c, v in self.provenance.items()},
        }
        if self.alternates:
            out["alternates"] = {c: [dict(a) for a in v] for c, v in self.alternates.items()}
        return out


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:80] + "..."


def _check_sentences(name: str, value: Any, where: str) -> list[str]:
    """The stripped sentences of one class; a one-line error naming the file and class otherwise."""
    if not isinstance(value, list) or not value or not all(
            isinstance(s, str) and s.strip() for s in value):
        raise ValueError(
            f"{where}: descriptions of class {name!r} must be a non-empty list of non-empty "
            f"strings, got {_short(value)}; fix the file (format: "
            '{"descriptions": {"class name": ["one sentence.", ...], ...}})')
    if len(value) > MAX_PER_CLASS:
        raise ValueError(f"{where}: class {name!r} has {len(value)} descriptions (at most "
                         f"{MAX_PER_CLASS}); keep fewer")
    for i, sentence in enumerate(value):
        problem = text_problem(sentence)
        if problem is not None:
            raise ValueError(f"{where}: description {i + 1} of class {name!r} {problem}")
    return [s.strip() for s in value]


def _check_alternates(data: Any, where: str) -> dict[str, list[dict[str, Any]]]:
    if not isinstance(data, Mapping) or not all(
            isinstance(v, list) and all(isinstance(a, Mapping) for a in v) for v in data.values()):
        raise ValueError(f"{where}: 'alternates' must map class names to lists of "
                         '{"descriptions": [...], "provenance": {...}} objects')
    out: dict[str, list[dict[str, Any]]] = {}
    for name, sets in data.items():
        out[str(name)] = [{"descriptions": _check_sentences(str(name), a.get("descriptions"), where),
                           "provenance": dict(a.get("provenance") or {})} for a in sets]
    return out


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
    if not isinstance(provenance, Mapping) or not all(isinstance(v, Mapping) for v in provenance.values()):
        raise ValueError(f"{where}: 'provenance' must be an object keyed by class name, each value an object")
    return DescriptionCache(
        dataset=str(data.get("dataset", "")),
        variant=str(data.get("variant", "")),
        prompt=str(data.get("prompt", "")),
        model=str(data.get("model", "")),
        classes=list(classes),
        descriptions=descriptions,
        provenance={str(k): dict(v) for k, v in provenance.items()},
        alternates=_check_alternates(data.get("alternates", {}), where),
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


class CacheBusy(RuntimeError):
    """Another run held a description file's lock for longer than the wait allowed."""


@contextlib.contextmanager
def cache_lock(path: str | os.PathLike, timeout: float = 30.0) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<path>.lock`` (waiting at most ``timeout`` s for it).

    The lock file is left in place (removing it would let a waiting run lock a file no one
    else sees); the lock itself ends with its process.
    """
    import fcntl  # noqa: PLC0415 - POSIX only; imported here so the module imports anywhere

    path = Path(path)
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise CacheBusy(
                        f"another run has held the lock {lock} for over {timeout:g} s while "
                        f"writing {path}; let it finish and run again") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _merge(disk: DescriptionCache, ours: DescriptionCache, path: Path) -> DescriptionCache:
    """``disk`` with what only ``ours`` holds added (classes, descriptions, alternates)."""
    if disk.prompt and ours.prompt and disk.prompt != ours.prompt:
        raise ValueError(
            f"{path} holds descriptions made with a different prompt ({disk.prompt!r}); "
            "use another --out file or delete it")
    for key in ("dataset", "variant", "prompt", "model"):
        setattr(disk, key, getattr(disk, key) or getattr(ours, key))
    disk.classes = list(dict.fromkeys(list(disk.classes) + list(ours.classes)))
    for name, sentences in ours.descriptions.items():
        if name not in disk.descriptions:
            disk.descriptions[name] = list(sentences)
            if name in ours.provenance:
                disk.provenance[name] = dict(ours.provenance[name])
    for name, sets in ours.alternates.items():
        have = disk.alternates.setdefault(name, [])
        have += [a for a in sets if a not in have]
    return disk


def update_cache(path: str | os.PathLike, ours: DescriptionCache, name: str, sentences: Sequence[str],
                 provenance: Mapping[str, Any], n: int, *, cut: Sequence[int] = (),
                 lock_timeout: float = 30.0) -> tuple[DescriptionCache, list[str]]:
    """Add the new ``sentences`` of class ``name`` to the file at ``path``, under its lock.

    The file is read again, merged with ``ours`` and written atomically. The class gets as many
    of ``sentences`` as it lacks to have ``n``; the rest (another run described the class
    meanwhile) go to ``alternates`` with ``provenance``. ``cut``: indices of ``sentences`` that
    were cut to length. Returns the merged cache (now on disk) and the sentences set aside.
    """
    path = Path(path)
    with cache_lock(path, lock_timeout):
        merged = _merge(read_cache(path), ours, path) if path.exists() else _merge(
            DescriptionCache(dataset="", variant="", prompt="", model=""), ours, path)
        have = merged.descriptions.get(name, [])
        take = max(0, n - len(have))
        if take:
            prior = merged.provenance.get(name, {}).get("cut")
            old_cut = [i for i in prior if isinstance(i, int) and i < len(have)] if isinstance(prior, list) else []
            new_cut = old_cut + [len(have) + i for i in cut if i < take]
            merged.descriptions[name] = list(have) + list(sentences[:take])
            merged.provenance[name] = {**provenance, **({"cut": new_cut} if new_cut else {})}
        rest = list(sentences[take:])
        if rest:
            rest_cut = [i - take for i in cut if i >= take]
            merged.alternates.setdefault(name, []).append(
                {"descriptions": rest, "provenance": {**provenance, **({"cut": rest_cut} if rest_cut else {})}})
        write_cache(merged, path)
    return merged, rest
