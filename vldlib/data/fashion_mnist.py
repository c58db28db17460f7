"""Fashion-MNIST in the paper's protocol: the offline default dataset.

The 60k ``train`` and 10k ``t10k`` images are pooled (70k, 7000 per class); image keys are
``"train/<i>"`` and ``"t10k/<i>"`` (index in the original file). Protocol (paper §3, reference §4.3):

- classes: ``perm = randperm(10, Generator().manual_seed(split_seed))``; seen = sorted(perm[:5]),
  unseen = sorted(perm[5:]) (original label ids, ascending) - the rule fixed in CONTRIBUTING.md;
- per-class cap: ``per_class`` images of each class, chosen by a seeded permutation that depends only
  on the class and ``cap_seed`` (never on ``split_seed``), so every class split draws from the same
  image pool and teacher features are shared between splits;
- seen classes: ``round(id_fraction * n)`` images of each class go to X_id, the rest to X_train
  (seeded by ``seed`` and the class); X_ood = all capped images of the unseen classes.

Images are 1-channel, resized from 28x28 to ``load_size`` (default 32); students crop ``crop_size``
(default 28) and normalise with the pooled 70k mean/std (0.2862, 0.3529).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import socket
import zlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from vldlib.paths import default_cache_dir

from .splits import DatasetSplits, TensorImageSplit

CLASS_NAMES: tuple[str, ...] = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                                "Shirt", "Sneaker", "Bag", "Ankle boot")
FMNIST_MEAN: tuple[float] = (0.2862,)
FMNIST_STD: tuple[float] = (0.3529,)
SYSTEM_ROOT = Path("/usr/share/datasets/fashion-mnist")
FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
HOW_TO_FIX = ("Install it with `apt-get install dataset-fashion-mnist` (files in "
              "/usr/share/datasets/fashion-mnist), or put the four idx files (gz or raw: "
              "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
              "t10k-labels-idx1-ubyte) in a folder and set VLD_DATA=<folder> or pass root=<folder>.")


def class_split(split_seed: int) -> tuple[list[int], list[int]]:
    """(seen, unseen) original label ids for ``split_seed`` (the CONTRIBUTING.md rule)."""
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(int(split_seed)))
    return sorted(perm[:5].tolist()), sorted(perm[5:].tolist())


def distinct_split_seeds(count: int, *, start: int = 0, exclude: Sequence[int] = ()) -> list[int]:
    """The first ``count`` split seeds from ``start`` on whose seen-class sets (:func:`class_split`)
    differ from each other and from those of ``exclude`` (several seeds can draw the same 5 classes)."""
    if count > 252:
        raise ValueError(f"Fashion-MNIST has 252 distinct 5-of-10 class splits; asked for {count}")
    taken = {tuple(class_split(s)[0]) for s in exclude}
    out: list[int] = []
    seed = start
    while len(out) < count:
        classes = tuple(class_split(seed)[0])
        if classes not in taken:
            taken.add(classes)
            out.append(seed)
        seed += 1
    return out


def _derived_seed(tag: str, *values: int) -> int:
    """A 62-bit seed from a tag and integers (stable across runs and platforms)."""
    digest = hashlib.sha256(":".join([tag, *map(str, values)]).encode()).hexdigest()
    return int(digest[:15], 16)


def _idx_path(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _candidate_folders(folder: Path) -> list[Path]:
    return [folder, folder / "fashion-mnist", folder / "FashionMNIST" / "raw"]


def _find_in(folder: Path) -> Path | None:
    for cand in _candidate_folders(folder):
        if all(_idx_path(cand, stem) is not None for pair in FILES.values() for stem in pair):
            return cand
    return None


def read_idx(path: str | Path) -> np.ndarray:
    """Decode an idx file (gz or raw): big-endian magic ``0x0000 08 <ndim>``, dims, uint8 data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path} cannot be read ({type(err).__name__}: {err}); the file is "
                         "truncated or corrupt, re-download it") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not a uint8 idx file (bad magic {data[:4]!r}); re-download it")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise ValueError(f"{path}: header says {dims} ({expected} bytes) but holds "
                         f"{len(data) - offset}; the file is truncated or corrupt, re-download it")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _download(cache_dir: Path, timeout: float = 20.0) -> Path:
    """torchvision's FashionMNIST download into ``cache_dir``: a 5 s reachability check of the
    mirror first (so that no network fails fast), then a bounded socket timeout."""
    from urllib.parse import urlparse

    from torchvision.datasets import FashionMNIST

    mirror = urlparse(FashionMNIST.mirrors[0])
    port = mirror.port or (443 if mirror.scheme == "https" else 80)
    with socket.create_connection((mirror.hostname, port), timeout=5.0):
        pass
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        FashionMNIST(root=str(cache_dir), train=True, download=True)
        FashionMNIST(root=str(cache_dir), train=False, download=True)
    finally:
        socket.setdefaulttimeout(previous)
    return cache_dir / "FashionMNIST" / "raw"


def _missing_in(folder: Path) -> list[str]:
    """The idx files (by stem) that ``folder`` lacks (its best candidate sub-folder)."""
    best: list[str] | None = None
    for cand in _candidate_folders(folder):
        missing = [stem for pair in FILES.values() for stem in pair if _idx_path(cand, stem) is None]
        if best is None or len(missing) < len(best):
            best = missing
    return best or []


def find_fashion_mnist(root: str | Path | None = None, *, download: bool = True,
                       cache_dir: str | Path | None = None) -> Path:
    """The folder holding the four idx files.

    An explicit location (``root``, else ``$VLD_DATA``) is the only place looked at: if it is
    missing or incomplete, a one-line FileNotFoundError names it and what it lacks (never a
    silent fall-back to another copy). Without one: /usr/share/datasets/fashion-mnist, an earlier
    download, else a torchvision download into ``cache_dir`` (default
    ``default_cache_dir()/datasets``); failing all, ONE FileNotFoundError listing what was tried."""
    explicit: tuple[str, Path] | None = None
    if root is not None:
        explicit = ("root", Path(root).expanduser())
    elif os.environ.get("VLD_DATA"):
        explicit = ("$VLD_DATA", Path(os.environ["VLD_DATA"]).expanduser())
    if explicit is not None:
        label, place = explicit
        found = _find_in(place)
        if found is not None:
            return found
        if not place.is_dir():
            what = "does not exist" if not place.exists() else "is not a folder"
        else:
            what = "lacks " + ", ".join(f"{stem}[.gz]" for stem in _missing_in(place))
        fix = ("pass another root" if label == "root" else "fix or unset VLD_DATA")
        raise FileNotFoundError(f"Fashion-MNIST {label} {place} {what}; put the four idx files "
                                f"there or {fix} (without it the system copy or a download is used)")
    tried: list[str] = []
    places: list[tuple[str, Path]] = [("system package", SYSTEM_ROOT)]
    if cache_dir is None:
        cache_dir = default_cache_dir() / "datasets"
    cache_dir = Path(cache_dir)
    places.append(("earlier download", cache_dir))
    for label, place in places:
        found = _find_in(place)
        if found is not None:
            return found
        tried.append(f"{label}: {place} (no complete set of idx files)")
    if download:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            got = _download(cache_dir)
            found = _find_in(got)
            if found is not None:
                return found
            tried.append(f"torchvision download into {cache_dir}: finished without the idx files")
        except Exception as err:  # noqa: BLE001 - any failure is reported with the others
            tried.append(f"torchvision download into {cache_dir}: {type(err).__name__}: {err}")
    else:
        tried.append("torchvision download: skipped (download=False)")
    raise FileNotFoundError("Fashion-MNIST not found. Tried:\n  " + "\n  ".join(tried) + "\n"
                            + HOW_TO_FIX)


@lru_cache(maxsize=2)
def _pool(folder: str, stamp: tuple) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Pooled (images uint8 [70000, 28, 28], labels int64 [70000], keys) - decoded once per process.

    Callers index into the tensors (advanced indexing copies), so the memo is never mutated.
    """
    images, labels, keys = [], [], []
    for part, (img_stem, lab_stem) in FILES.items():
        x = read_idx(_idx_path(Path(folder), img_stem))
        y = read_idx(_idx_path(Path(folder), lab_stem))
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"Fashion-MNIST {part} files in {folder} disagree: images {x.shape}, "
                             f"labels {y.shape}")
        images.append(x)
        labels.append(y)
        keys.extend(f"{part}/{i}" for i in range(len(y)))
    img = torch.from_numpy(np.concatenate(images))
    lab = torch.from_numpy(np.concatenate(labels).astype(np.int64))
    if int(lab.max()) > 9:
        raise ValueError(f"Fashion-MNIST labels in {folder} exceed 9; the files are not Fashion-MNIST")
    return img, lab, tuple(keys)


def load_pool(folder: Path) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """The pooled train + t10k arrays of the idx files in ``folder`` (memoised per file stamps)."""
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                  for pair in FILES.values() for p in (_idx_path(folder, s) for s in pair))
    return _pool(str(folder), stamp)


def load_fashion_mnist(root: str | Path | None = None, *, split_seed: int = 0,
                       per_class: int | None = 600, load_size: int = 32, crop_size: int = 28,
                       id_fraction: float = 0.3, seed: int = 0, cap_seed: int = 0,
                       download: bool = True, cache_dir: str | Path | None = None) -> DatasetSplits:
    """Fashion-MNIST as :class:`DatasetSplits` (5 seen / 5 unseen classes; see the module docstring)."""
    if per_class is not None and (not isinstance(per_class, int) or per_class < 2):
        raise ValueError(f"per_class must be an integer >= 2 or None (all 7000), got {per_class!r}")
    if not 0.0 < float(id_fraction) < 1.0:
        raise ValueError(f"id_fraction must lie in (0, 1), got {id_fraction!r} (the paper uses 0.3)")
    if not isinstance(split_seed, int) or not isinstance(seed, int):
        raise ValueError(f"split_seed and seed must be integers, got {split_seed!r}, {seed!r}")
    if load_size < 1 or crop_size < 1:
        raise ValueError(f"load_size and crop_size must be positive, got {load_size}, {crop_size}")
    folder = find_fashion_mnist(root, download=download, cache_dir=cache_dir)
    images, labels, keys = load_pool(folder)
    seen, unseen = class_split(split_seed)
    chosen: dict[int, torch.Tensor] = {}
    for c in range(10):
        idx = torch.nonzero(labels == c).flatten()
        if per_class is not None and per_class < len(idx):
            g = torch.Generator().manual_seed(_derived_seed("fmnist-cap", cap_seed, c))
            idx = idx[torch.randperm(len(idx), generator=g)[:per_class]].sort().values
        chosen[c] = idx
    parts: dict[str, list[tuple[torch.Tensor, int]]] = {"train": [], "id": [], "ood": []}
    for label, c in enumerate(seen):
        idx = chosen[c]
        g = torch.Generator().manual_seed(_derived_seed("fmnist-id", seed, c))
        perm = torch.randperm(len(idx), generator=g)
        n_id = max(1, min(len(idx) - 1, round(float(id_fraction) * len(idx))))
        parts["id"].append((idx[perm[:n_id]].sort().values, label))
        parts["train"].append((idx[perm[n_id:]].sort().values, label))
    for label, c in enumerate(unseen):
        parts["ood"].append((chosen[c], label))
    source = f"fashion-mnist:{load_size}"
    splits = {}
    for name, groups in parts.items():
        idx = torch.cat([g for g, _ in groups])
        labs = [lab for g, lab in groups for _ in range(len(g))]
        splits[name] = TensorImageSplit(images[idx], [keys[i] for i in idx.tolist()], labs,
                                        name=name, source=source, load_size=load_size)
    tag = "all" if per_class is None else str(per_class)
    name = f"fashion-mnist/s{split_seed}/n{tag}" + (f"/seed{seed}" if seed else "")
    return DatasetSplits(
        name=name, seen_classes=[CLASS_NAMES[c] for c in seen],
        unseen_classes=[CLASS_NAMES[c] for c in unseen], train=splits["train"], id=splits["id"],
        ood=splits["ood"], descriptions=None, channels=1, load_size=load_size, crop_size=crop_size,
        mean=FMNIST_MEAN, std=FMNIST_STD)
