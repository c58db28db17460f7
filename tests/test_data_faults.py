"""Faults of the Fashion-MNIST loader (``vldlib.data.fashion_mnist``): an explicit data root never
falls back to another copy; a truncated or corrupt IDX file is named."""
from __future__ import annotations

import pytest


def _fmnist_files(root, n_per_class: int = 3):
    import gzip

    import numpy as np

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for part in ("train", "t10k"):
        labels = np.repeat(np.arange(10), n_per_class).astype(np.uint8)
        images = rng.integers(0, 256, size=(len(labels), 28, 28)).astype(np.uint8)
        for stem, arr in ((f"{part}-images-idx3-ubyte", images), (f"{part}-labels-idx1-ubyte", labels)):
            header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
            with gzip.open(root / f"{stem}.gz", "wb") as fh:
                fh.write(header + arr.tobytes())
    return root


def test_explicit_data_root_never_falls_back(tmp_path, monkeypatch):
    from vldlib.data import fashion_mnist as fm

    system = _fmnist_files(tmp_path / "system")  # a complete copy that must NOT be used
    monkeypatch.setattr(fm, "SYSTEM_ROOT", system)
    monkeypatch.delenv("VLD_DATA", raising=False)
    assert fm.find_fashion_mnist(None, download=False) == system  # no explicit root: system copy
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as err:
        fm.find_fashion_mnist(missing, download=False)
    msg = str(err.value)
    assert str(missing) in msg and "does not exist" in msg and "\n" not in msg
    partial = _fmnist_files(tmp_path / "partial")
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks t10k-labels-idx1-ubyte\[\.gz\]") as err:
        fm.find_fashion_mnist(partial, download=False)
    assert str(partial) in str(err.value)
    monkeypatch.setenv("VLD_DATA", str(missing))
    with pytest.raises(FileNotFoundError, match=r"\$VLD_DATA .*unset VLD_DATA"):
        fm.find_fashion_mnist(None, download=False)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        fm.find_fashion_mnist(a_file, download=False)


@pytest.mark.parametrize("damage", ["truncate_gz", "garbage_gz", "truncate_raw"])
def test_corrupt_idx_file_is_named(tmp_path, damage):
    import gzip

    from vldlib.data import fashion_mnist as fm

    root = _fmnist_files(tmp_path / "d")
    target = root / "train-images-idx3-ubyte.gz"
    data = target.read_bytes()
    if damage == "truncate_gz":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "garbage_gz":
        target.write_bytes(data[:10] + bytes(len(data) - 10))
    else:
        raw = gzip.decompress(data)
        target.unlink()
        target = root / "train-images-idx3-ubyte"
        target.write_bytes(raw[:-7])
    with pytest.raises(ValueError, match="truncated or corrupt") as err:
        fm.load_fashion_mnist(root, per_class=2, download=False)
    assert str(target) in str(err.value)
