"""A dataset's content identity: a digest of what its loader reads that decides the numbers.

Two copies of a dataset with the same content have the same identity wherever they lie (a
relative or absolute path, another machine); two folders with different content never share one.

- ``"fashion-mnist"``: the sha256 of the four idx files' *decoded* bytes (a ``.gz`` file and its
  raw copy are the same content), as a digest of ``{file stem: sha256}``.
  :data:`FASHION_MNIST_SHA256` is the identity of the standard files (the system package,
  torchvision's checksummed download).
- ``"official"``: the class list (``label2text.txt``: folder, id, natural name) and the three split
  lists (``<split>/<class>/<file>`` and label) as parsed by
  :func:`vldlib.data.official.read_official_splits`, in either layout. The image bytes are not read
  (a dataset's images are identified by their listed paths); ``chatgpt.txt`` is not part of it
  either: a run that uses those descriptions has them in its description digest.
- ``"folder"``: the class folders and names (``classes.txt`` applied) and every image's key
  (``<class_folder>/<file>``) with its size in bytes; ``descriptions.json`` is in a run's
  description digest when it uses it.

Digests are memoised by each file's path, size and modification time: per process, and for the
idx files (decompressing them takes about a second) across processes in
``<cache root>/content-digests.json`` (:data:`DIGEST_MEMO`; a memo, rebuilt when missing or
stale, entries of vanished files dropped), so asking again costs a few ``stat`` calls.
This module knows nothing of training or runs.
"""
from __future__ import annotations

import gzip
import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from vldlib.io import json_sha256, try_read_json, write_json_atomic
from vldlib.paths import default_cache_dir

from .fashion_mnist import FILES, _idx_path, find_fashion_mnist
from .folder import folder_identity
from .official import OFFICIAL_SPLITS, read_official_splits

__all__ = ["FASHION_MNIST_SHA256", "DIGEST_MEMO", "data_identity", "content_sha256", "folder_identity"]

#: The file (under the cache root) that remembers content digests across processes.
DIGEST_MEMO = "content-digests.json"

#: The identity of the standard Fashion-MNIST files (Xiao et al. 2017; what the system package and
#: torchvision's checksummed download hold): :func:`data_identity` of such a folder.
FASHION_MNIST_SHA256 = "b3e2fb23754d1c976d3945243674c5aff19f49673e3258ba92e2fcdf7c0a81f9"


def content_sha256(path: str | os.PathLike, memo_dir: str | os.PathLike | None = None) -> str:
    """The sha256 of a file's content, a ``.gz`` file's decompressed, memoised by path, size and
    mtime in this process and in ``<memo_dir>/content-digests.json`` (default: the cache root)."""
    st = os.stat(path)
    memo = Path(memo_dir) if memo_dir is not None else default_cache_dir()
    return _content_sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns, str(memo / DIGEST_MEMO))


@lru_cache(maxsize=64)
def _content_sha256(path: str, size: int, mtime_ns: int, memo: str) -> str:
    stamp = {"size": size, "mtime_ns": mtime_ns}
    known = try_read_json(memo)
    entry = known.get(path) if isinstance(known, dict) else None
    if isinstance(entry, dict) and {k: entry.get(k) for k in stamp} == stamp and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    digest = _read_sha256(path)
    known = try_read_json(memo)  # another process may have added entries meanwhile
    kept = {p: e for p, e in (known.items() if isinstance(known, dict) else ()) if os.path.exists(p)}
    try:
        write_json_atomic(memo, {**kept, path: {**stamp, "sha256": digest}})
    except OSError:  # a read-only cache root: the digest is only remembered in this process
        pass
    return digest


def _read_sha256(path: str) -> str:
    h = hashlib.sha256()
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path} cannot be read ({type(err).__name__}: {err}); the file is truncated "
                         "or corrupt, re-download it") from None
    return h.hexdigest()


def _digest(obj: Any) -> str:
    return json_sha256(obj)


def fashion_mnist_identity(folder: str | os.PathLike) -> str:
    """The identity of the four idx files in ``folder`` (see the module docstring)."""
    folder = Path(folder)
    files = {}
    for stem in (s for pair in FILES.values() for s in pair):
        path = _idx_path(folder, stem)
        if path is None:
            raise FileNotFoundError(f"Fashion-MNIST folder {folder} lacks {stem}[.gz]")
        files[stem] = content_sha256(path)
    return _digest(files)


def official_identity(folder: str | os.PathLike) -> str:
    """The identity of an official dataset folder's class list and split lists (see the module docstring)."""
    folder = Path(folder).expanduser().resolve()
    return _official_identity(str(folder), _official_stamp(folder))


def _official_stamp(folder: Path) -> tuple:
    """Size and mtime of every file (or, for the split-folder layout, class folder) that
    :func:`read_official_splits` reads: the memo's key."""
    out: list[tuple[str, int, int]] = []
    paths = [folder / "label2text.txt", *(folder / f"{s}_data.txt" for s in OFFICIAL_SPLITS)]
    if not all(p.is_file() for p in paths[1:]):
        for s in OFFICIAL_SPLITS:
            if (folder / s).is_dir():
                paths.append(folder / s)
                paths.extend(sorted(p for p in (folder / s).iterdir() if p.is_dir()))
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            continue
        out.append((str(p), st.st_size, st.st_mtime_ns))
    return tuple(out)


@lru_cache(maxsize=16)
def _official_identity(folder: str, stamp: tuple) -> str:
    info = read_official_splits(folder)
    return _digest({"classes": [[e.folder, e.index, name] for e, name in zip(info.classes, info.names)],
                    **{s: info.splits[s] for s in OFFICIAL_SPLITS}})


def fashion_mnist_data_identity(options: Mapping[str, Any]) -> dict[str, str]:
    """Fashion-MNIST is looked for as its loader does (``root``, ``$VLD_DATA``, the system copy, an
    earlier download), never downloading: where none is found and no location was named, the
    loader will download the standard files, so the identity is :data:`FASHION_MNIST_SHA256`."""
    root = options.get("root")
    try:
        folder = find_fashion_mnist(root, download=False, cache_dir=options.get("cache_dir"))
    except FileNotFoundError:
        if root is not None or os.environ.get("VLD_DATA"):
            raise
        return {"sha256": FASHION_MNIST_SHA256, "source": "torchvision download (the standard files)"}
    return {"sha256": fashion_mnist_identity(folder), "source": str(Path(folder).resolve())}


def official_data_identity(options: Mapping[str, Any]) -> dict[str, str]:
    """An official folder (``splits``, else ``root``) by the content of its lists and descriptions."""
    root = options.get("root")
    if not root:
        raise ValueError("dataset 'official' needs dataset_options={'root': <data root>}")
    folder = Path(str(options.get("splits") or root)).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset root {str(folder)!r} does not exist; set "
                                "dataset_options={'root': <folder with train/, val/, val_on_train/>}")
    return {"sha256": official_identity(folder), "source": str(folder.resolve())}


def folder_data_identity(options: Mapping[str, Any]) -> dict[str, str]:
    """An image folder by its classes and every image's key and size (:func:`folder_identity`)."""
    root = options.get("root")
    if not root:
        raise ValueError("dataset 'folder' needs dataset_options={'root': <image folder>}")
    return {"sha256": folder_identity(root), "source": str(Path(str(root)).expanduser().resolve())}
