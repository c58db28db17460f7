"""A run's inputs: the files its numbers depend on beside its config, resolved to content digests.

A run's identity (:func:`vldlib.train.config.config_hash`) is its canonical config plus these:

- ``"data"``: the dataset's content identity (:func:`vldlib.data.specs.data_identity`: the
  Fashion-MNIST idx files' bytes; an official folder's class list and split lists), never the
  path it was found under;
- ``"descriptions"`` (when ``descriptions`` is set): the description set the run uses, whatever its
  source (the shipped Fashion-MNIST sets, a description cache, the official ``chatgpt.txt``):
  :func:`vldlib.text.descriptions.description_digest`;
- ``"captions"`` (when L_cap reads a caption file): :func:`vldlib.text.captions.caption_digest`.

The hash holds an input only where its digest differs from :data:`BASELINES`, the inputs of the
default offline book (the standard Fashion-MNIST files, the shipped description sets): so every
config whose inputs are those hashes exactly as before inputs were hashed. The data's location
options (:data:`LOCATION_OPTIONS`: ``root``, ``splits``, ``cache_dir``, ``download``) leave the
hash; the data's identity stands in for them. Resolving reads data lists, description sets and
caption files; it never builds a teacher. An input that cannot be resolved (a missing file) is
:data:`UNRESOLVED` in the hash; training such a config fails with the loader's own error.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from vldlib.data.identity import FASHION_MNIST_SHA256
from vldlib.data.specs import data_identity
from vldlib.text.captions import CAPTION_FILE, caption_digest
from vldlib.text.descriptions import description_digest, description_key, descriptions_source

__all__ = ["INPUT_NAMES", "LOCATION_OPTIONS", "UNRESOLVED", "BASELINES", "resolve_inputs", "hashed_inputs"]

#: The inputs a run may have, in the order they are resolved.
INPUT_NAMES: tuple[str, ...] = ("data", "descriptions", "captions")
#: ``dataset_options`` that say where the data lies, not what it is: left out of the hash.
LOCATION_OPTIONS: tuple[str, ...] = ("root", "splits", "cache_dir", "download")
#: The digest of an input that could not be resolved (its file is missing or malformed).
UNRESOLVED = "unresolved"
#: The inputs of the default offline book (``tests/test_identity.py`` recomputes each): a digest
#: equal to its baseline is left out of the hash. Keys: ``data/<dataset>``,
#: ``descriptions/<description key>/<variant>``.
BASELINES: dict[str, str] = {
    "data/fashion-mnist": FASHION_MNIST_SHA256,
    "descriptions/fashion-mnist/main": "ac570d682c74e4f7d3d581f06bff2b509a3fe3d37d51c234d326ae17c1eff7b5",
    "descriptions/fashion-mnist/succinct": "adce672896ba1e62e6ca241d19f1997064a5a519decc6f38b498b61d48121b77",
    "descriptions/fashion-mnist/detailed": "e9d0b8535ef84c75c31cb5fd2511bde5e55e1f45c5357bdaa3a9ba96d46b7245",
    "descriptions/fashion-mnist/distinct": "580b58a2b72800f28d10da7f682f4c77a7c18f62a036cc858f814cf57680d1a6",
}


def resolve_inputs(dataset: str, dataset_options: Mapping[str, Any], descriptions: str | None,
                   caption_source: str | None, *, strict: bool = False) -> dict[str, dict[str, str]]:
    """``{input name: {"sha256": digest, "source": where it was read}}`` of a run's inputs.

    ``caption_source`` is :meth:`TrainConfig.caption_source` (a caption file is an input only for
    ``"file"``). ``strict``: raise the loader's error for an input that cannot be resolved;
    otherwise it is ``{"sha256": UNRESOLVED, "error": ...}``."""
    steps: dict[str, Callable[[], dict[str, str]]] = {"data": lambda: data_identity(dataset, dataset_options)}
    if descriptions is not None:
        steps["descriptions"] = lambda: _descriptions(dataset, dataset_options, descriptions)
    if caption_source == "file":
        steps["captions"] = lambda: _captions(dataset_options)
    out: dict[str, dict[str, str]] = {}
    for name, resolve in steps.items():
        try:
            out[name] = resolve()
        except (OSError, ValueError) as err:
            if strict:
                raise
            out[name] = {"sha256": UNRESOLVED, "error": f"{type(err).__name__}: {str(err).splitlines()[0]}"}
    return out


def hashed_inputs(dataset: str, dataset_options: Mapping[str, Any], descriptions: str | None,
                  inputs: Mapping[str, Any]) -> dict[str, str]:
    """The inputs that enter the hash: ``{name: digest}`` for each digest that is not its baseline.
    ``inputs`` maps each name to a digest or to a :func:`resolve_inputs` entry."""
    out = {}
    for name in sorted(inputs):
        entry = inputs[name]
        digest = str(entry.get("sha256") if isinstance(entry, Mapping) else entry)
        if BASELINES.get(_baseline_key(name, dataset, dataset_options, descriptions)) != digest:
            out[str(name)] = digest
    return out


def _baseline_key(name: str, dataset: str, dataset_options: Mapping[str, Any], descriptions: str | None) -> str:
    if name == "data":
        return f"data/{dataset}"
    if name == "descriptions" and descriptions not in (None, "official"):
        try:
            return f"descriptions/{description_key(dataset, dataset_options)}/{descriptions}"
        except ValueError:
            return name
    return name


def _descriptions(dataset: str, dataset_options: Mapping[str, Any], which: str) -> dict[str, str]:
    found, where = descriptions_source(dataset, dataset_options, which)
    return {"sha256": description_digest(found), "source": where}


def _captions(dataset_options: Mapping[str, Any]) -> dict[str, str]:
    root = dataset_options.get("root")
    if not root:
        raise ValueError("captions='file' reads captions.json from the dataset root; this dataset "
                         "has none (use captions='proxy' with the ConSE proxy teacher)")
    path = Path(str(root)) / CAPTION_FILE
    return {"sha256": caption_digest(path), "source": str(path.resolve())}
