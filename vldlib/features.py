"""Teacher-feature cache: teacher image and text features computed once and kept on disk.

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

import gc
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from vldlib import __version__
from vldlib.diskspace import disk_full, is_disk_full, tensor_bytes
from vldlib.io import save_torch_atomic, try_read_json, write_json_atomic, write_text_atomic
from vldlib.models.teachers import load_teacher
from vldlib.paths import default_cache_dir
from vldlib.progress import Progress, Task

FORMAT = 1
DEFAULT_CHUNK_ROWS = 8192
META = "meta.json"
_DISK_FIX = ("free space there or point the cache elsewhere (cache_dir, --cache-dir or $VLD_CACHE); "
             "the features stored before are kept")


def _hash(*parts: Any) -> str:
    """First 20 hex digits of sha256 over the JSON of ``parts``."""
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()[:20]


def keys_hash(keys: Sequence[str]) -> str:
    """Hash of an exact, ordered key list."""
    return _hash(list(keys))


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
        return self.dir / f"split-{_hash(index_id, keys_hash(list(keys)))}.pt"

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


def _teacher_dim(teacher: Any) -> int | None:
    dim = getattr(teacher, "embed_dim", None)
    return int(dim) if dim is not None else None


def _progress(total: int, desc: str, enabled: bool | Progress) -> Task:
    """Rate-limited progress lines of an encoding pass (:mod:`vldlib.progress`)."""
    return Progress.of(enabled).task(desc, total, unit="img")


def teacher_image_features(teacher: Any, split: Any, *, dataset_id: str,
                           cache_dir: str | Path | None = None, batch_size: int = 128,
                           num_workers: int = 0, progress: bool | Progress = True, refresh: bool = False,
                           chunk_rows: int = DEFAULT_CHUNK_ROWS) -> torch.Tensor:
    """Teacher image features ``[N, D]`` (float32, CPU) of ``split``, row i for ``split.keys[i]``.

    Keyed by ``teacher.identifier``, ``teacher.preprocess_id``, the image source
    (``split.source``, else ``dataset_id``), ``dataset_id`` and the exact key list. Only images not
    yet in the per-source store are encoded: batches of ``batch_size`` un-augmented loaded images
    ``[B, C, S, S]`` in [0, 1] go to ``teacher.encode_image`` under ``torch.inference_mode``.
    ``num_workers > 0`` decodes images in DataLoader workers.
    """
    return _per_image(teacher, split, "image", getattr(teacher, "encode_image", None),
                      _teacher_dim(teacher), dataset_id=dataset_id, cache_dir=cache_dir,
                      batch_size=batch_size, num_workers=num_workers, progress=progress,
                      refresh=refresh, chunk_rows=chunk_rows)


def proxy_caption_classes(teacher: Any, split: Any, *, dataset_id: str, top: int,
                          cache_dir: str | Path | None = None, batch_size: int = 128,
                          num_workers: int = 0, progress: bool | Progress = True) -> torch.Tensor:
    """The proxy captioner's input: the ``top`` ImageNet class indices ``[N, top]`` (long, ranked)
    of the ConSE proxy teacher's classifier for each image of ``split``, cached like the teacher
    image features (kind ``proxy-caption-top{top}``). Only the ConSE proxy teacher has an
    ImageNet classifier; any other teacher raises ``ValueError``."""
    base = teacher._load() if isinstance(teacher, LazyTeacher) else teacher
    if not hasattr(base, "imagenet_probs"):
        raise ValueError(f"captions='proxy' needs the ConSE proxy teacher (an ImageNet classifier); "
                         f"{getattr(teacher, 'identifier', teacher)!r} has none: use captions='file'")

    def encode(images: torch.Tensor) -> torch.Tensor:
        return base.imagenet_probs(images).topk(top, dim=-1).indices.float()

    out = _per_image(teacher, split, f"proxy-caption-top{top}", encode, top, dataset_id=dataset_id,
                     cache_dir=cache_dir, batch_size=batch_size, num_workers=num_workers, progress=progress)
    return out.round().long()


def imagenet_logits(teacher: Any, split: Any, *, dataset_id: str, cache_dir: str | Path | None = None,
                    batch_size: int = 128, progress: bool = True) -> torch.Tensor:
    """The ConSE proxy teacher's ImageNet logits ``[N, 1000]`` on ``split``, cached like the image
    features (kind ``imagenet-logits``): every ConSE combination (top-T, temperature, centring) can be
    recomputed from them without another forward pass. Other teachers raise ``ValueError``."""
    if not str(getattr(teacher, "identifier", "")).startswith("conse-proxy:"):
        raise ValueError(f"imagenet_logits needs the ConSE proxy teacher; {getattr(teacher, 'identifier', teacher)!r} "
                         "has no ImageNet classifier")

    def logits(images: torch.Tensor) -> torch.Tensor:  # a LazyTeacher loads only for uncached images
        return (teacher._load() if isinstance(teacher, LazyTeacher) else teacher).logits(images)

    return _per_image(teacher, split, "imagenet-logits", logits, 1000, dataset_id=dataset_id,
                      cache_dir=cache_dir, batch_size=batch_size, num_workers=0, progress=progress)


def _check_finite(images: Any, positions: list[int], split: Any, where: str) -> None:
    """Raise a one-line ``ValueError`` naming the split and an image key when ``images`` holds NaN/inf."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        return  # the teacher's own checks name a wrong type or dtype
    finite = torch.isfinite(images.reshape(len(images), -1)).all(1) if images.ndim else torch.isfinite(images)
    if bool(finite.all()):
        return
    bad = [positions[i] for i in (~finite).nonzero().flatten().tolist()]
    keys = getattr(split, "keys", None)
    first = keys[bad[0]] if keys is not None and bad[0] < len(keys) else f"position {bad[0]}"
    raise ValueError(f"{len(bad)} image(s) in a batch of {len(images)} of split {where} hold non-finite "
                     f"values (NaN or inf), the first {first!r}: fix or regenerate those images (or the transform) before extracting "
                     "teacher features")


def _image_store(teacher: Any, split: Any, kind: str, dim: int | None, dataset_id: str,
                 cache_dir: str | Path | None, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> FeatureStore:
    """The per-source store of one per-image quantity of ``teacher`` (see the module docstring)."""
    source = getattr(split, "source", None) or dataset_id
    meta = {"kind": kind, "teacher": teacher.identifier, "preprocess": teacher.preprocess_id,
            "source": source}
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return FeatureStore(root / "teacher-features" / _hash(meta), meta, dim, chunk_rows=chunk_rows)


def image_feature_file(teacher: Any, split: Any, *, dataset_id: str, cache_dir: str | Path | None = None) -> Path:
    """The split index file through which :func:`teacher_image_features` serves ``split`` (named
    in messages about those features)."""
    store = _image_store(teacher, split, "image", _teacher_dim(teacher), dataset_id, cache_dir)
    return store.index_path(split.keys, dataset_id)


def text_feature_folder(teacher: Any, cache_dir: str | Path | None = None) -> Path:
    """The folder of ``teacher``'s cached text features (:func:`text_features`)."""
    return _text_store(teacher, cache_dir).dir


def _text_store(teacher: Any, cache_dir: str | Path | None) -> FeatureStore:
    meta = {"kind": "text", "teacher": teacher.identifier}
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return FeatureStore(root / "text-features" / _hash(meta), meta, _teacher_dim(teacher))


def _per_image(teacher: Any, split: Any, kind: str, fn: Callable[[torch.Tensor], torch.Tensor] | None,
               dim: int | None, *, dataset_id: str, cache_dir: str | Path | None, batch_size: int,
               num_workers: int, progress: bool | Progress, refresh: bool = False,
               chunk_rows: int = DEFAULT_CHUNK_ROWS) -> torch.Tensor:
    """One cached per-image quantity ``fn(images)`` of a teacher on ``split`` (see the module docstring)."""
    if not dataset_id:
        raise ValueError("dataset_id must be a non-empty string (e.g. DatasetSplits.name)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for attr in ("identifier", "preprocess_id"):
        if not isinstance(getattr(teacher, attr, None), str):
            raise ValueError(f"teacher has no string attribute {attr!r}; pass a vldlib Teacher")
    store = _image_store(teacher, split, kind, dim, dataset_id, cache_dir, chunk_rows)
    device = getattr(teacher, "device", torch.device("cpu"))
    name = getattr(split, "name", "split")

    def encode(positions: list[int]) -> Iterator[tuple[list[int], torch.Tensor]]:
        what = "features" if kind == "image" else kind
        bar = _progress(len(positions), f"teacher {what} {dataset_id}/{name}", progress)
        batches = [positions[k:k + batch_size] for k in range(0, len(positions), batch_size)]
        if num_workers > 0 or not hasattr(split, "get_batch"):
            subset = torch.utils.data.Subset(split, positions)
            loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=False,
                                                 num_workers=num_workers,
                                                 pin_memory=torch.device(device).type == "cuda")
            source_iter = ((b, imgs) for b, (imgs, _) in zip(batches, loader))
        else:
            source_iter = ((b, split.get_batch(b)[0]) for b in batches)
        try:
            for batch, images in source_iter:
                _check_finite(images, batch, split, f"{dataset_id}/{name}")
                with torch.inference_mode():
                    out = fn(images.to(device, non_blocking=True))
                bar.update(len(batch))
                yield batch, out
        finally:
            bar.close()

    return store.get(split.keys, dataset_id, encode, refresh=refresh)


def text_features(teacher: Any, texts: Sequence[str], cache_dir: str | Path | None = None, *,
                  batch_size: int = 256, progress: bool = False, refresh: bool = False) -> torch.Tensor:
    """Teacher text features ``[M, D]`` (float32, CPU) of ``texts``, cached by
    ``teacher.identifier`` and the exact texts (each distinct text is encoded once)."""
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a sequence of strings")
    if not isinstance(getattr(teacher, "identifier", None), str):
        raise ValueError("teacher has no string attribute 'identifier'; pass a vldlib Teacher")
    store = _text_store(teacher, cache_dir)

    def encode(positions: list[int]) -> Iterator[tuple[list[int], torch.Tensor]]:
        bar = _progress(len(positions), "teacher text features", progress)
        try:
            for k in range(0, len(positions), batch_size):
                batch = positions[k:k + batch_size]
                with torch.inference_mode():
                    out = teacher.encode_text([texts[p] for p in batch])
                bar.update(len(batch))
                yield batch, out
        finally:
            bar.close()

    if not texts:
        return torch.empty(0, _teacher_dim(teacher) or 0)
    return store.get(texts, "texts", encode, refresh=refresh)


# ---------------------------------------------------------------------- teacher access
def _stamp(value: Any) -> Any:
    """Option values that name existing files also carry the file's size and mtime."""
    if isinstance(value, str) and len(value) < 4096 and os.path.isfile(value):
        st = os.stat(value)
        return {"path": os.path.abspath(value), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return value


def teacher_meta_path(name: str, options: Mapping[str, Any], meta_dir: str | os.PathLike) -> Path:
    """Where :class:`LazyTeacher` remembers a teacher's identity (absent: never loaded with this cache)."""
    key_src = json.dumps({"name": name, "options": {k: _stamp(v) for k, v in sorted(dict(options).items())},
                          "vldlib": __version__}, sort_keys=True, default=str)
    return Path(meta_dir) / f"{hashlib.sha256(key_src.encode()).hexdigest()[:24]}.json"


class LazyTeacher:
    """A teacher that loads itself on first use (see the module docstring)."""

    def __init__(self, name: str, options: Mapping[str, Any], meta_dir: str | os.PathLike) -> None:
        self.name = name
        self.options = dict(options)
        self._meta_path = teacher_meta_path(name, self.options, meta_dir)
        self._teacher: Any = None
        self._was_loaded = False
        self.image_calls = 0
        self.images_encoded = 0
        self.text_calls = 0
        self.prompt_calls = 0
        self.texts_encoded = 0
        meta = try_read_json(self._meta_path)
        meta = meta if isinstance(meta, dict) else None
        if meta is not None and {"identifier", "preprocess_id", "embed_dim", "device"} <= set(meta):
            self.identifier: str = meta["identifier"]
            self.preprocess_id: str = meta["preprocess_id"]
            self.embed_dim: int = int(meta["embed_dim"])
            self.device = torch.device(meta["device"])
        else:
            self._load()

    @property
    def loaded(self) -> bool:
        """Whether the teacher was built (in this process, since this object was made)."""
        return self._teacher is not None or self._was_loaded

    def release(self) -> None:
        """Drop the built teacher (its weights: 1.7 GB for ViT-L-14) once its features are cached;
        a later use builds it again."""
        if self._teacher is not None:
            self._was_loaded = True
            self._teacher = None
            gc.collect()

    def _load(self) -> Any:
        if self._teacher is None:
            # a first use may come inside torch.inference_mode (feature encoding): build the
            # weights as normal tensors so that prompt learning can backpropagate through them
            with torch.inference_mode(False):
                teacher = load_teacher(self.name, **self.options)
            remembered = getattr(self, "identifier", None), getattr(self, "preprocess_id", None)
            self._teacher = teacher
            self.identifier = teacher.identifier
            self.preprocess_id = teacher.preprocess_id
            self.embed_dim = int(teacher.embed_dim)
            self.device = torch.device(teacher.device)
            meta = {"name": self.name, "identifier": self.identifier, "preprocess_id": self.preprocess_id,
                    "embed_dim": self.embed_dim, "device": str(self.device)}
            try:
                write_json_atomic(self._meta_path, meta)
            except OSError:  # a read-only cache only costs the laziness next time
                pass
            if remembered[0] is not None and remembered != (self.identifier, self.preprocess_id):
                raise RuntimeError(
                    f"teacher {self.name!r} now identifies as {self.identifier!r} / {self.preprocess_id!r} "
                    f"but the cache remembered {remembered[0]!r} / {remembered[1]!r}; the record of its "
                    "identity is updated now, run again")
        return self._teacher

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        teacher = self._load()
        self.image_calls += 1
        self.images_encoded += int(images.shape[0])
        return teacher.encode_image(images)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        teacher = self._load()
        self.text_calls += 1
        self.texts_encoded += len(texts)
        return teacher.encode_text(texts)

    @property
    def token_width(self) -> int:
        """The teacher's token-embedding width (prompt learning; loads the teacher)."""
        teacher = self._load()
        if not hasattr(teacher, "token_width"):
            raise ValueError(f"teacher {self.identifier!r} does not support prompt learning")
        return int(teacher.token_width)

    def encode_text_with_context(self, ctx: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """CoOp text features through the frozen teacher (:mod:`vldlib.models.prompts`); differentiable in ctx."""
        teacher = self._load()
        if not hasattr(teacher, "encode_text_with_context"):
            raise ValueError(f"teacher {self.identifier!r} does not support prompt learning")
        self.prompt_calls += 1
        return teacher.encode_text_with_context(ctx, texts)

    def forward_passes(self) -> dict[str, int]:
        return {"image_batches": self.image_calls, "images": self.images_encoded,
                "text_batches": self.text_calls, "texts": self.texts_encoded,
                "prompt_text_batches": self.prompt_calls}

    def __repr__(self) -> str:
        return f"LazyTeacher({self.identifier!r}, loaded={self.loaded})"


class CachedTextTeacher:
    """Same identity as ``teacher``; ``encode_text`` goes through ``features.text_features``."""

    def __init__(self, teacher: LazyTeacher, cache_dir: str | os.PathLike | None) -> None:
        self._teacher = teacher
        self._cache_dir = cache_dir
        self.identifier = teacher.identifier
        self.preprocess_id = teacher.preprocess_id
        self.embed_dim = teacher.embed_dim
        self.device = teacher.device

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        return text_features(self._teacher, list(texts), cache_dir=self._cache_dir)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self._teacher.encode_image(images)
