"""Faults of the teacher-feature cache (``vldlib.features``): altered cached features are detected
and recomputed, old entries without a checksum are accepted, non-finite features or images are one
error naming the split and image, and nothing bad is cached."""
from __future__ import annotations

import pytest


class _Encoder:
    def __init__(self, value: float = 1.0) -> None:
        self.calls, self.value = 0, value

    def __call__(self, positions):
        import torch

        self.calls += 1
        feats = torch.arange(len(positions) * 4, dtype=torch.float32).reshape(len(positions), 4) + self.value
        yield positions, feats


def _store(tmp_path):
    from vldlib.features import FeatureStore

    return FeatureStore(tmp_path / "fs", {"kind": "image", "teacher": "fake"}, dim=4)


def test_altered_cached_features_are_detected_and_recomputed(tmp_path):
    import torch

    keys = [f"k{i}" for i in range(5)]
    enc = _Encoder()
    first = _store(tmp_path).get(keys, "split", enc)
    assert enc.calls == 1 and torch.equal(_store(tmp_path).get(keys, "split", enc), first)
    assert enc.calls == 1  # served from the cache
    (chunk,) = (tmp_path / "fs").glob("chunk-*.pt")
    obj = torch.load(chunk, weights_only=True)
    assert "sha256" in obj
    obj["features"][2, 1] += 0.5  # a plausible, finite, silently wrong value
    torch.save(obj, chunk)
    with pytest.warns(RuntimeWarning, match="checksum .*recomputing") as caught:
        again = _store(tmp_path).get(keys, "split", enc)
    assert str(chunk) in " ".join(str(w.message) for w in caught)
    assert enc.calls == 2 and torch.equal(again, first)


def test_cache_entry_without_checksum_is_accepted(tmp_path):
    """Old caches (written before checksums) stay readable: accepted without a recompute."""
    import torch

    keys = [f"k{i}" for i in range(3)]
    enc = _Encoder()
    first = _store(tmp_path).get(keys, "split", enc)
    for path in (tmp_path / "fs").glob("*.pt"):
        obj = torch.load(path, weights_only=True)
        obj.pop("sha256")
        torch.save(obj, path)
    assert torch.equal(_store(tmp_path).get(keys, "split", enc), first) and enc.calls == 1


def test_nan_teacher_features_raise(tmp_path):
    keys = ["a", "b"]
    with pytest.raises(ValueError, match="non-finite features"):
        _store(tmp_path).get(keys, "split", _Encoder(value=float("nan")))
    assert not list((tmp_path / "fs").glob("chunk-*.pt"))  # nothing bad was cached


def test_non_finite_images_name_the_split_in_feature_extraction(tmp_path):
    """The feature path names the dataset, split and the first bad image, whatever the teacher."""
    import torch

    from vldlib.features import teacher_image_features

    class Split:
        name, source = "X_ood", None
        keys = [f"img{i}" for i in range(6)]

        def __len__(self):
            return 6

        def get_batch(self, idx):
            x = torch.rand(len(idx), 1, 8, 8)
            for j, i in enumerate(idx):
                if i in (3, 5):
                    x[j, 0, 0, 0] = float("nan")
            return x, torch.zeros(len(idx), dtype=torch.long)

    class Teacher:  # no checks of its own: the extraction path must catch it
        identifier, preprocess_id, embed_dim = "fake", "fake", 4

        def encode_image(self, images):
            return torch.zeros(len(images), 4)

    with pytest.raises(ValueError, match=r"2 image\(s\) in a batch of 6 of split toy/X_ood hold non-finite .*'img3'"):
        teacher_image_features(Teacher(), Split(), dataset_id="toy", cache_dir=tmp_path, batch_size=8,
                               progress=False)
    assert not list(tmp_path.rglob("chunk-*.pt"))
