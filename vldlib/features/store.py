"""The teacher-feature store: features of one encoder (teacher + preprocessing) on one source,
computed once and kept on disk by key, in chunks.

The paper computes T_img(x) once per split, before training, on the un-augmented image, in
batches, in fp32 (reference §4.6). The official cache file is not keyed by the teacher (a stale-cache
risk, reference §8 quirk 7); here every entry is keyed by what determines it:

- a **per-source store** ``<cache>/teacher-features/<h(teacher.identifier, teacher.preprocess_id,
  split.source)>/`` holds ``chunk-*.pt`` files ``{"keys": [...], "features": [n, D]}``; an image
  (identified by its key within its source) is encoded at most once per teacher and preprocessing,
  whichever class split or subset asks for it (the Fashion-MNIST class splits share one pool);
- a **split index** ``split-<h(dataset_id, h(keys))>.pt`` records, for an exact image list, which
  chunks and rows hold its features: a second run loads it and does no teacher forward pass.

Text features use the same machinery under ``<cache>/text-features/<h(teacher.identifier)>/``,
keyed by the exact texts. Every file is written atomically (temp file in the same folder +
``os.replace``). A store touches only a folder it can prove is its own: absent or empty, or holding
``meta.json`` (or, in a cache older than ``meta.json``, a chunk) with its own key; any other folder
is a one-line :class:`ForeignCacheError` and is left as it is. Inside its own folder, a corrupt or
mismatched file (unreadable, wrong shape or dimension, non-finite values, another teacher's
metadata, keys hash differs) is reported with ``warnings.warn``, removed and recomputed. A full disk
is a one-line :class:`vldlib.diskspace.DiskFullError`; the chunks written before it are kept.
Entries assume the images behind a key do not change; pass ``refresh=True`` (or delete the folder)
after replacing images.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from vldlib.diskspace import disk_full, is_disk_full, tensor_bytes
from vldlib.io import save_torch_atomic, try_read_json, write_text_atomic
from vldlib.progress import Progress, Task

__all__ = ["FORMAT", "DEFAULT_CHUNK_ROWS", "META", "FeatureStore", "CacheEntryError", "ForeignCacheError",
           "short_hash", "keys_hash", "tensor_sha256", "teacher_dim", "encoding_progress"]

FORMAT = 1
DEFAULT_CHUNK_ROWS = 8192
META = "meta.json"
_DISK_FIX = ("free space there or point the cache elsewhere (cache_dir, --cache-dir or $VLD_CACHE); "
             "the features stored before are kept")


def short_hash(*parts: Any) -> str:
    """First 20 hex digits of sha256 over the JSON of ``parts``."""
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()[:20]


def keys_hash(keys: Sequence[str]) -> str:
    """Hash of an exact, ordered key list."""
    return short_hash(list(keys))


def tensor_sha256(t: torch.Tensor) -> str:
    """sha256 (hex) of a tensor's dtype, shape and raw bytes (C order, on CPU)."""
    t = t.detach().to("cpu").contiguous()
    h = hashlib.sha256(f"{t.dtype}:{tuple(t.shape)}:".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _verify(obj: Mapping[str, Any], name: str, tensor: torch.Tensor) -> None:
    """Check ``tensor`` against the checksum stored with it at write time. Entries written before
    checksums existed (no ``sha256``) are accepted as they are: they passed the shape and
    finiteness checks, and recomputing every old cache would cost a teacher pass."""
    sums = obj.get("sha256")
    if sums is None:
        return
    if not isinstance(sums, Mapping) or not isinstance(sums.get(name), str):
        raise CacheEntryError("malformed checksum field")
    if tensor_sha256(tensor) != sums[name]:
        raise CacheEntryError(f"checksum of {name!r} does not match (the values were altered or damaged)")


class CacheEntryError(ValueError):
    """A cache file that cannot be used (unreadable or inconsistent)."""


class ForeignCacheError(ValueError):
    """A store folder that holds something other than this store's features (left untouched)."""


def _describe(meta: Any) -> str:
    """A cache key (``meta``) as ``k=v, ...`` for a message."""
    return ", ".join(f"{k}={v}" for k, v in meta.items()) if isinstance(meta, Mapping) else repr(meta)


class FeatureStore:
    """Features of one encoder (teacher + preprocessing) on one source, stored by key in chunks."""

    def __init__(self, directory: Path, meta: dict[str, str], dim: int | None = None,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS) -> None:
        self.dir = Path(directory)
        self.meta = dict(meta)
        self.dim = dim
        self.chunk_rows = int(chunk_rows)

    # -- whose folder -----------------------------------------------------------------------
    def _owned(self) -> bool:
        """True when the folder's ``meta.json`` holds this store's key; False when the folder is
        free to take (absent, empty) or is this store's cache from before ``meta.json`` (a chunk
        or index with this key); :class:`ForeignCacheError` for anything else."""
        if not self.dir.exists():
            return False
        if not self.dir.is_dir():
            raise ForeignCacheError(f"feature cache {self.dir} is a file, not a folder: remove it yourself "
                                    "or point the cache elsewhere (cache_dir, --cache-dir or $VLD_CACHE)")
        meta = try_read_json(self.dir / META)
        if meta == self.meta:
            return True
        files = sorted(p for p in self.dir.iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp")))
        if meta is None and not files:
            return False
        stored = meta if meta is not None else self._stored_meta(files)
        if stored == self.meta:
            return False
        held = (f"the features of {_describe(stored)}" if isinstance(stored, Mapping)
                else f"files that are not a feature cache of this key ({', '.join(p.name for p in files[:3])})")
        raise ForeignCacheError(
            f"feature cache {self.dir} holds {held}, not of {_describe(self.meta)}; it is left untouched: "
            "point the cache elsewhere (cache_dir, --cache-dir or $VLD_CACHE) or remove that folder yourself")

    def _stored_meta(self, files: Sequence[Path]) -> Any:
        """The key stored in the first readable chunk or index among ``files`` (None if none)."""
        for path in files:
            if path.suffix == ".pt" and path.name.startswith(("chunk-", "split-")):
                try:
                    obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                except Exception:  # noqa: BLE001 - unreadable: proves nothing
                    continue
                if isinstance(obj, dict) and obj.get("format") == FORMAT:
                    return obj.get("meta")
        return None

    def _write(self, write: Callable[[], Any], what: str, needed: int | None = None) -> None:
        """Run one atomic ``write``; a full disk becomes a one-line :class:`DiskFullError`."""
        try:
            write()
        except (OSError, RuntimeError) as err:
            if not is_disk_full(err):
                raise
            raise disk_full(self.dir, what, _DISK_FIX, needed) from None

    # -- reading --------------------------------------------------------------------------
    def _load(self, path: Path) -> dict:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as err:  # noqa: BLE001 - any failure means "unreadable"
            raise CacheEntryError(f"unreadable ({type(err).__name__}: {err})") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise CacheEntryError("not a vldbook cache file of format %d" % FORMAT)
        if obj.get("meta") != self.meta:
            raise CacheEntryError(f"metadata {obj.get('meta')} differs from {self.meta}")
        return obj

    def _load_chunk(self, path: Path) -> tuple[list[str], torch.Tensor]:
        obj = self._load(path)
        keys, feats = obj.get("keys"), obj.get("features")
        if not isinstance(keys, list) or not isinstance(feats, torch.Tensor) or feats.dim() != 2:
            raise CacheEntryError("malformed chunk (needs a key list and a [n, D] tensor)")
        if feats.shape[0] != len(keys):
            raise CacheEntryError(f"{feats.shape[0]} feature rows for {len(keys)} keys")
        if self.dim is not None and feats.shape[1] != self.dim:
            raise CacheEntryError(f"feature dimension {feats.shape[1]}, expected {self.dim}")
        if feats.dtype != torch.float32 or not bool(torch.isfinite(feats).all()):
            raise CacheEntryError("features are not finite float32")
        _verify(obj, "features", feats)
        return keys, feats

    def _discard(self, path: Path, reason: str) -> None:
        warnings.warn(f"feature cache: {path} is corrupt or mismatched ({reason}); "
                      "removing it and recomputing", RuntimeWarning, stacklevel=3)
        try:
            path.unlink()
        except FileNotFoundError:
            pass

    def _from_index(self, index_path: Path, keys: list[str], khash: str) -> torch.Tensor | None:
        try:
            obj = self._load(index_path)
            if obj.get("keys_hash") != khash or obj.get("n") != len(keys):
                raise CacheEntryError(f"keys hash {obj.get('keys_hash')} / n {obj.get('n')} differ "
                                      f"from the requested list ({khash}, {len(keys)})")
            chunks, rows = obj.get("chunks"), obj.get("rows")
            if not isinstance(chunks, list) or not isinstance(rows, torch.Tensor) or rows.shape != (len(keys), 2):
                raise CacheEntryError("malformed index")
            _verify(obj, "rows", rows)
            if len(keys) and (int(rows[:, 0].min()) < 0 or int(rows[:, 0].max()) >= len(chunks)):
                raise CacheEntryError("chunk index out of range")
            parts, part_keys = [], []
            for name in chunks:
                try:
                    ck, cf = self._load_chunk(self.dir / name)
                except CacheEntryError as err:
                    raise CacheEntryError(f"chunk {name}: {err}") from None
                parts.append(cf)
                part_keys.append(ck)
            out = torch.empty(len(keys), parts[0].shape[1] if parts else (self.dim or 0))
            for c, cf in enumerate(parts):
                sel = torch.nonzero(rows[:, 0] == c).flatten()
                if len(sel):
                    r = rows[sel, 1]
                    if int(r.max()) >= cf.shape[0] or int(r.min()) < 0:
                        raise CacheEntryError("row index out of range")
                    out[sel] = cf[r]
                    stored = part_keys[c]
                    if any(stored[j] != keys[i] for i, j in zip(sel.tolist(), r.tolist())):
                        raise CacheEntryError("stored keys differ from the requested images")
            return out
        except CacheEntryError as err:
            self._discard(index_path, str(err))
            return None

    def _all_chunks(self) -> tuple[list[str], dict[str, tuple[int, int]], list[torch.Tensor]]:
        names, where, feats = [], {}, []
        for path in sorted(self.dir.glob("chunk-*.pt")):
            try:
                ck, cf = self._load_chunk(path)
            except CacheEntryError as err:
                self._discard(path, str(err))
                continue
            c = len(names)
            names.append(path.name)
            feats.append(cf)
            for r, k in enumerate(ck):
                where.setdefault(k, (c, r))
        return names, where, feats

    def index_path(self, keys: Sequence[str], index_id: str) -> Path:
        """The split index file of an exact key list (see the module docstring)."""
        return self.dir / f"split-{short_hash(index_id, keys_hash(list(keys)))}.pt"

    # -- the one entry point ----------------------------------------------------------------
    def get(self, keys: Sequence[str], index_id: str,
            encode: Callable[[list[int]], Iterator[tuple[list[int], torch.Tensor]]], *,
            refresh: bool = False) -> torch.Tensor:
        """Features ``[N, D]`` for ``keys``; ``encode(positions)`` yields ``(positions, features)``
        batches for the positions (into ``keys``) of the keys not in the store."""
        keys = list(keys)
        khash = keys_hash(keys)
        index_path = self.index_path(keys, index_id)
        owned = self._owned()
        if not refresh and index_path.is_file():
            got = self._from_index(index_path, keys, khash)
            if got is not None:
                return got
        if not owned:
            self._write(lambda: write_text_atomic(self.dir / META, json.dumps(self.meta, indent=1)), META)
        names, where, feats = self._all_chunks()
        if refresh:
            where = {}
        todo, seen = [], set()
        for p, k in enumerate(keys):
            if k not in where and k not in seen:
                seen.add(k)
                todo.append(p)
        pending_keys: list[str] = []
        pending: list[torch.Tensor] = []

        def flush() -> None:
            if not pending_keys:
                return
            block = torch.cat(pending).clone()
            name = f"chunk-{keys_hash(pending_keys)}.pt"
            obj = {"format": FORMAT, "meta": self.meta, "keys": list(pending_keys), "features": block,
                   "sha256": {"features": tensor_sha256(block)}}
            self._write(lambda: save_torch_atomic(obj, self.dir / name), f"{len(pending_keys)} features to {name}",
                        tensor_bytes(block))
            c = len(names)
            names.append(name)
            feats.append(block)
            for r, k in enumerate(pending_keys):
                where[k] = (c, r)
            pending_keys.clear()
            pending.clear()

        if todo:
            for positions, out in encode(todo):
                out = out.detach().to("cpu", torch.float32).clone()
                if out.dim() != 2 or out.shape[0] != len(positions):
                    raise ValueError(f"encoder returned shape {tuple(out.shape)} for {len(positions)} "
                                     "inputs; expected [B, D]")
                if self.dim is not None and out.shape[1] != self.dim:
                    raise ValueError(f"encoder returned dimension {out.shape[1]} but declares "
                                     f"embed_dim={self.dim}")
                if not bool(torch.isfinite(out).all()):
                    raise ValueError("encoder returned non-finite features; check the model and inputs")
                pending_keys.extend(keys[p] for p in positions)
                pending.append(out)
                if len(pending_keys) >= self.chunk_rows:
                    flush()
            flush()
        used = sorted({where[k][0] for k in keys})
        remap = {c: n for n, c in enumerate(used)}
        rows = torch.tensor([[remap[where[k][0]], where[k][1]] for k in keys],
                            dtype=torch.long).reshape(len(keys), 2)
        dim = feats[used[0]].shape[1] if used else (self.dim or 0)
        result = torch.empty(len(keys), dim)
        for c in used:
            sel = torch.nonzero(rows[:, 0] == remap[c]).flatten()
            result[sel] = feats[c][rows[sel, 1]]
        index = {"format": FORMAT, "meta": self.meta, "index_id": index_id, "keys_hash": khash, "n": len(keys),
                 "chunks": [names[c] for c in used], "rows": rows, "sha256": {"rows": tensor_sha256(rows)}}
        self._write(lambda: save_torch_atomic(index, index_path), index_path.name, tensor_bytes(rows))
        return result


def teacher_dim(teacher: Any) -> int | None:
    """The dimension a teacher declares (``embed_dim``), None when it declares none."""
    dim = getattr(teacher, "embed_dim", None)
    return int(dim) if dim is not None else None


def encoding_progress(total: int, desc: str, enabled: bool | Progress) -> Task:
    """Rate-limited progress lines of an encoding pass (:mod:`vldlib.progress`)."""
    return Progress.of(enabled).task(desc, total, unit="img")
