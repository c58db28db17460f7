"""vldlib.features: the teacher-feature cache (counting fake teacher, no model weights)."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

from data_fixtures import write_tiny_official_root
from vldlib import features as feats
from vldlib.data import TensorImageSplit, load_dataset
from vldlib.features import default_cache_dir, teacher_image_features, text_features


class CountingTeacher:
    """A deterministic fake teacher that counts the images and texts it encodes."""

    def __init__(self, identifier: str = "fake:v1", preprocess_id: str = "id", embed_dim: int = 6):
        self.identifier, self.preprocess_id, self.embed_dim = identifier, preprocess_id, embed_dim
        self.device = torch.device("cpu")
        self.images = 0
        self.texts = 0
        self.shapes: list[tuple[int, ...]] = []
        self.grad_enabled: list[bool] = []

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        self.images += x.shape[0]
        self.shapes.append(tuple(x.shape))
        self.grad_enabled.append(torch.is_grad_enabled() or not torch.is_inference_mode_enabled())
        pooled = x.mean(dim=(2, 3))                                 # [B, C]
        base = torch.arange(1, self.embed_dim + 1, dtype=torch.float32)
        return pooled.sum(1, keepdim=True) * base + x.flatten(1)[:, :1]

    def encode_text(self, texts):
        self.texts += len(texts)
        return torch.stack([torch.full((self.embed_dim,), float(len(t))) for t in texts])


def _split(n: int = 20, name: str = "train", source: str = "toy:8", offset: int = 0) -> TensorImageSplit:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (100, 8, 8), generator=g, dtype=torch.uint8)[offset:offset + n]
    keys = [f"img/{offset + i}" for i in range(n)]
    return TensorImageSplit(images, keys, [i % 3 for i in range(n)], name=name, source=source,
                            load_size=8)


def test_second_run_does_no_teacher_forward(tmp_path):
    t = CountingTeacher()
    split = _split(20)
    a = teacher_image_features(t, split, dataset_id="toy", cache_dir=tmp_path, batch_size=7,
                               progress=False)
    assert t.images == 20 and a.shape == (20, 6) and a.dtype == torch.float32
    assert t.shapes == [(7, 1, 8, 8), (7, 1, 8, 8), (6, 1, 8, 8)]     # loaded, un-augmented batches
    assert not any(t.grad_enabled)                                      # under inference_mode
    expected = t.encode_image(split.get_batch(range(20))[0])
    assert torch.allclose(a, expected)
    t.images = 0
    b = teacher_image_features(t, split, dataset_id="toy", cache_dir=tmp_path, progress=False)
    assert t.images == 0 and torch.equal(a, b)
    assert b.requires_grad is False and not b.is_inference()
    # another teacher (or preprocessing) never reuses these features
    t2 = CountingTeacher(preprocess_id="other")
    teacher_image_features(t2, split, dataset_id="toy", cache_dir=tmp_path, progress=False)
    assert t2.images == 20


def test_images_are_shared_across_subsets_and_class_splits(tmp_path):
    t = CountingTeacher()
    full = _split(40)
    teacher_image_features(t, full, dataset_id="toy/s0", cache_dir=tmp_path, progress=False)
    assert t.images == 40
    sub = full.subset([5, 3, 30])
    out = teacher_image_features(t, sub, dataset_id="toy/s1", cache_dir=tmp_path, progress=False)
    assert t.images == 40  # every image already encoded under this teacher + source
    ref = teacher_image_features(t, full, dataset_id="toy/s0", cache_dir=tmp_path, progress=False)
    assert torch.equal(out, ref[[5, 3, 30]])
    # a partly new image list encodes only the new images
    wider = _split(50)
    teacher_image_features(t, wider, dataset_id="toy/s2", cache_dir=tmp_path, progress=False)
    assert t.images == 50


def test_fashion_mnist_class_splits_share_the_pool(tmp_path, fashion_mnist_root):
    t = CountingTeacher(embed_dim=4)
    encoded = []
    for split_seed in (0, 1, 2):
        ds = load_dataset("fashion-mnist", fashion_mnist_root, split_seed=split_seed, per_class=40)
        before = t.images
        for split in ds.splits.values():
            teacher_image_features(t, split, dataset_id=ds.name, cache_dir=tmp_path, progress=False)
        encoded.append(t.images - before)
    # X_train + X_id + X_ood of one class split cover the capped pool of 10 x 40 images; other class
    # splits partition the same pool differently and need no teacher forward at all
    assert encoded == [400, 0, 0]


def test_file_splits_and_num_workers(tmp_path):
    ds = load_dataset("official", write_tiny_official_root(tmp_path / "tiny", per_class=4),
                      load_size=16, crop_size=12)
    t = CountingTeacher()
    a = teacher_image_features(t, ds.ood, dataset_id=ds.name, cache_dir=tmp_path / "c", batch_size=5,
                               progress=False)
    assert t.shapes[0] == (5, 3, 16, 16) and t.images == len(ds.ood)
    b = teacher_image_features(CountingTeacher(), ds.ood, dataset_id=ds.name, cache_dir=tmp_path / "d",
                               batch_size=5, num_workers=1, progress=False)
    assert torch.allclose(a, b)


def _store_dir(cache: Path) -> Path:
    (d,) = list((cache / "teacher-features").iterdir())
    return d


def test_corrupt_index_is_detected_and_recomputed(tmp_path):
    t = CountingTeacher()
    split = _split(12)
    ref = teacher_image_features(t, split, dataset_id="toy", cache_dir=tmp_path, progress=False)
    (index,) = _store_dir(tmp_path).glob("split-*.pt")
    index.write_bytes(b"not a torch file")
    with pytest.warns(RuntimeWarning, match="corrupt or mismatched"):
        got = teacher_image_features(t, split, dataset_id="toy", cache_dir=tmp_path, progress=False)
    assert torch.equal(got, ref) and t.images == 12  # the chunks were still good: no new forward
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        teacher_image_features(t, split, dataset_id="toy", cache_dir=tmp_path, progress=False)
    # an index whose recorded image list differs from the requested one
    (index,) = _store_dir(tmp_path).glob("split-*.pt")
    obj = torch.load(index, weights_only=True)
    obj["keys_hash"] = "0" * 20
    torch.save(obj, index)
    with pytest.warns(RuntimeWarning, match="keys hash"):
        got = teacher_image_features(t, split, dataset_id="toy", cache_dir=tmp_path, progress=False)
    assert torch.equal(got, ref) and t.images == 12


def test_corrupt_or_mismatched_chunk_is_recomputed(tmp_path):
    t = CountingTeacher()
    split = _split(12)
    ref = teacher_image_features(t, split, dataset_id="toy", cache_dir=tmp_path, progress=False)
    (chunk,) = _store_dir(tmp_path).glob("chunk-*.pt")
    raw = chunk.read_bytes()
    chunk.write_bytes(raw[: len(raw) // 2])  # truncated
    with pytest.warns(RuntimeWarning, match="corrupt or mismatched"):
        got = teacher_image_features(t, split, dataset_id="toy", cache_dir=tmp_path, progress=False)
    assert torch.equal(got, ref) and t.images == 24
    # wrong shape: a chunk whose features have another dimension
    (chunk,) = _store_dir(tmp_path).glob("chunk-*.pt")
    obj = torch.load(chunk, weights_only=True)
    obj["features"] = obj["features"][:, :3].contiguous()
    torch.save(obj, chunk)
    with pytest.warns(RuntimeWarning, match="dimension 3, expected 6"):
        got = teacher_image_features(t, split, dataset_id="toy", cache_dir=tmp_path, progress=False)
    assert torch.equal(got, ref) and t.images == 36
    # another teacher's metadata
    (chunk,) = _store_dir(tmp_path).glob("chunk-*.pt")
    obj = torch.load(chunk, weights_only=True)
    obj["meta"] = {**obj["meta"], "teacher": "someone-else"}
    torch.save(obj, chunk)
    with pytest.warns(RuntimeWarning, match="metadata"):
        teacher_image_features(t, split, dataset_id="toy", cache_dir=tmp_path, progress=False)
    assert t.images == 48


def test_writes_are_atomic(tmp_path, monkeypatch):
    t = CountingTeacher()
    split = _split(10)
    ref = teacher_image_features(t, split, dataset_id="toy", cache_dir=tmp_path, progress=False)
    store = _store_dir(tmp_path)
    before = {p.name: p.read_bytes() for p in store.iterdir()}
    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(feats.torch, "save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        teacher_image_features(t, split, dataset_id="toy", cache_dir=tmp_path, progress=False,
                               refresh=True)
    monkeypatch.undo()
    after = {p.name: p.read_bytes() for p in store.iterdir()}
    assert after == before  # no temp files left, no file half-replaced
    t.images = 0
    assert torch.equal(teacher_image_features(t, split, dataset_id="toy", cache_dir=tmp_path,
                                              progress=False), ref)
    assert t.images == 0


def test_interrupted_run_keeps_finished_chunks(tmp_path):
    class Failing(CountingTeacher):
        def encode_image(self, x):
            if self.images >= 8:
                raise RuntimeError("out of memory")
            return super().encode_image(x)

    split = _split(20)
    with pytest.raises(RuntimeError):
        teacher_image_features(Failing(), split, dataset_id="toy", cache_dir=tmp_path, batch_size=4,
                               chunk_rows=4, progress=False)
    t = CountingTeacher()
    teacher_image_features(t, split, dataset_id="toy", cache_dir=tmp_path, batch_size=4,
                           chunk_rows=4, progress=False)
    assert t.images == 12  # the first 8 were kept in two chunks


def test_bad_teacher_output_is_a_clear_error(tmp_path):
    class Bad(CountingTeacher):
        def encode_image(self, x):
            return torch.zeros(x.shape[0], 5)

    with pytest.raises(ValueError, match="dimension 5 but declares embed_dim=6"):
        teacher_image_features(Bad(), _split(4), dataset_id="toy", cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="dataset_id"):
        teacher_image_features(CountingTeacher(), _split(4), dataset_id="", cache_dir=tmp_path)
    assert not list(tmp_path.rglob("chunk-*.pt"))


def test_text_features_cached_by_teacher_and_texts(tmp_path):
    t = CountingTeacher()
    texts = ["a photo of a bag", "a photo of a dress", "a photo of a bag", "coat"]
    a = text_features(t, texts, cache_dir=tmp_path)
    assert a.shape == (4, 6) and t.texts == 3          # duplicates encoded once
    assert torch.equal(a[0], a[2]) and float(a[3, 0]) == 4.0
    b = text_features(t, texts, cache_dir=tmp_path)
    assert t.texts == 3 and torch.equal(a, b)
    c = text_features(t, ["coat", "a new text"], cache_dir=tmp_path)
    assert t.texts == 4 and torch.equal(c[0], a[3])
    other = CountingTeacher(identifier="fake:v2")
    text_features(other, texts, cache_dir=tmp_path)
    assert other.texts == 3
    assert text_features(t, [], cache_dir=tmp_path).shape == (0, 6)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("VLD_CACHE", str(tmp_path / "vc"))
    assert default_cache_dir() == tmp_path / "vc"
    monkeypatch.delenv("VLD_CACHE")
    d = default_cache_dir()
    assert d.name == "vldbook" and os.path.isabs(d)
    monkeypatch.setenv("VLD_CACHE", str(tmp_path / "vc2"))
    teacher_image_features(CountingTeacher(), _split(3), dataset_id="toy", progress=False)
    assert list((tmp_path / "vc2" / "teacher-features").iterdir())


# ---------------------------------------------------------------------- whose folder, full disk
class _Enc:
    """An encoder for FeatureStore.get: features [n, 4] from the positions, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, positions):
        self.calls += 1
        yield positions, torch.arange(len(positions) * 4, dtype=torch.float32).reshape(-1, 4) + 1.0


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_store_never_touches_another_keys_folder(tmp_path):
    """Pointed at a folder holding another teacher's features, a store neither deletes its chunks
    nor rewrites its meta.json: one line naming the folder, what it holds and the fix."""
    folder = tmp_path / "fs"
    keys = [f"k{i}" for i in range(6)]
    mine = feats.FeatureStore(folder, {"kind": "image", "teacher": "vit-l-14"}, dim=4)
    ref = mine.get(keys, "split", _Enc())
    before = _snapshot(folder)
    other = feats.FeatureStore(folder, {"kind": "image", "teacher": "conse"}, dim=4)
    for refresh in (False, True):
        with pytest.raises(feats.ForeignCacheError) as caught:
            other.get(keys, "split", _Enc(), refresh=refresh)
        msg = str(caught.value)
        assert str(folder) in msg and "teacher=vit-l-14" in msg and "teacher=conse" in msg
        assert "remove that folder yourself" in msg and "\n" not in msg
        assert _snapshot(folder) == before
    # a cache older than meta.json: its chunks prove whose it is
    (folder / feats.META).unlink()
    with pytest.raises(feats.ForeignCacheError, match="teacher=vit-l-14"):
        other.get(keys, "split", _Enc())
    enc = _Enc()
    assert torch.equal(mine.get(keys, "split", enc), ref) and enc.calls == 0  # still its own, read as it is
    assert torch.equal(mine.get(keys[:2] + ["new"], "other", enc)[:2], ref[:2]) and enc.calls == 1
    assert (folder / feats.META).is_file()  # the old cache gets its meta.json back
    # a folder of something else entirely
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"jpeg")
    with pytest.raises(feats.ForeignCacheError, match="not a feature cache of this key .holiday.jpg"):
        feats.FeatureStore(tmp_path / "photos", {"kind": "image", "teacher": "x"}).get(keys, "s", _Enc())
    assert os.listdir(tmp_path / "photos") == ["holiday.jpg"]


def test_two_teachers_share_a_cache_root_and_old_caches_are_found(tmp_path):
    """Each key has its own subfolder of the cache root (the layout the default book's caches
    have): a second teacher never touches the first one's features."""
    a, b, split = CountingTeacher(), CountingTeacher(identifier="fake:v2"), _split(8)
    fa = teacher_image_features(a, split, dataset_id="toy", cache_dir=tmp_path, progress=False)
    store = _store_dir(tmp_path)
    before = _snapshot(store)
    teacher_image_features(b, split, dataset_id="toy", cache_dir=tmp_path, progress=False)
    assert _snapshot(store) == before and len(list((tmp_path / "teacher-features").iterdir())) == 2
    a.images = 0
    assert torch.equal(teacher_image_features(a, split, dataset_id="toy", cache_dir=tmp_path, progress=False), fa)
    assert a.images == 0


def _disk_full_save(kind: str):
    import errno

    def save(obj, f, *args, **kwargs):
        err = OSError(errno.ENOSPC, "No space left on device")
        if kind == "oserror":
            raise err
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed "
                           "writing file data/0: file write failed") from err
    return save


@pytest.mark.parametrize("kind", ["oserror", "runtimeerror"])
def test_full_disk_is_one_line_and_keeps_the_cache(tmp_path, monkeypatch, kind):
    from vldlib.diskspace import DiskFullError

    t = CountingTeacher()
    first = _split(8)
    teacher_image_features(t, first, dataset_id="toy", cache_dir=tmp_path, progress=False)
    store = _store_dir(tmp_path)
    before = _snapshot(store)
    monkeypatch.setattr(feats.torch, "save", _disk_full_save(kind))
    with pytest.raises(DiskFullError) as caught:
        teacher_image_features(t, _split(12), dataset_id="toy2", cache_dir=tmp_path, progress=False)
    msg = str(caught.value)
    assert msg.startswith(f"no space left on the disk of {store} while writing 4 features to chunk-")
    assert "(96 B needed, " in msg and " free)" in msg and "point the cache elsewhere" in msg
    assert "\n" not in msg and caught.value.__suppress_context__
    assert _snapshot(store) == before  # no temp file, nothing half-written
    monkeypatch.undo()
    t.images = 0
    teacher_image_features(t, _split(12), dataset_id="toy2", cache_dir=tmp_path, progress=False)
    assert t.images == 4


def test_other_save_errors_are_not_called_a_full_disk(tmp_path, monkeypatch):
    def broken(obj, f, *args, **kwargs):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(feats.torch, "save", broken)
    with pytest.raises(RuntimeError, match="file write failed"):
        teacher_image_features(CountingTeacher(), _split(4), dataset_id="toy", cache_dir=tmp_path, progress=False)


def test_cache_keys_are_pinned():
    """The store's file names are a pure function of the teacher's identity and the images (the
    values computed before the features module was split): users' caches stay valid."""
    class Conse:
        identifier, embed_dim = "conse-proxy:lite0:T10:a photo of a {c}", 384
        preprocess_id = "conse:invert-auto:grey2rgb:resize224-bilinear-aa:norm(255x-127)/128"

    class Split:
        source, keys, name = "fashion-mnist:32", ["train/0", "train/1"], "train"

    assert feats.image_feature_file(Conse(), Split(), dataset_id="fashion-mnist/split0", cache_dir="/c") == \
        Path("/c/teacher-features/3082b49f5c33d4b8d3a2/split-58e476c95c37398e91ae.pt")
    assert feats.text_feature_folder(Conse(), "/c") == Path("/c/text-features/a56e1bb421f874ad3a0c")
