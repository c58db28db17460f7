"""Stored teacher views (``TrainConfig.teacher_views``, issue 22): the view draw, the cache of the
teacher's view embeddings, the config's hash and checks, and training on them (deterministic,
resumable, different from the centre-crop target)."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch

from vldlib.data import TensorImageSplit, student_train_transform
from vldlib.data.transforms import resized_crop
from vldlib.data.views import ViewSpec, view_params
from vldlib.features import teacher_view_features, view_feature_store
from vldlib.train import Interrupted, TrainConfig, train
from vldlib.train.config import config_hash
from vldlib.train.profiles import profile_config

sys.path.insert(0, str(Path(__file__).parent))
from test_features import CountingTeacher  # noqa: E402
from model_fixtures import tiny_official_world, tiny_openclip_model  # noqa: E402


def _split(n: int = 12, size: int = 8, offset: int = 0) -> TensorImageSplit:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, size, size), generator=g, dtype=torch.uint8)[offset:offset + n]
    return TensorImageSplit(images, [f"img/{offset + i}" for i in range(n)], [i % 3 for i in range(n)],
                            name="train", source=f"toy:{size}", load_size=size)


# ---------------------------------------------------------------------- the view draw
def test_views_are_drawn_per_image_and_view_whatever_the_split_or_k():
    keys = [f"img/{i}" for i in range(30)]
    boxes, flips = view_params(keys, ViewSpec(count=4, size=32))
    assert boxes.shape == (30, 4, 4) and flips.shape == (30, 4) and boxes.dtype == torch.long
    again = view_params(keys, ViewSpec(count=4, size=32))
    assert torch.equal(again[0], boxes) and torch.equal(again[1], flips)  # drawn once: the same every time
    two = view_params(keys[5:9], ViewSpec(count=2, size=32))  # another subset, fewer views: a prefix
    assert torch.equal(two[0], boxes[5:9, :2]) and torch.equal(two[1], flips[5:9, :2])
    i, j, h, w = boxes.unbind(-1)
    assert bool(((i >= 0) & (j >= 0) & (h >= 1) & (w >= 1) & (i + h <= 32) & (j + w <= 32)).all())
    assert len({tuple(b) for b in boxes.reshape(-1, 4).tolist()}) > 100  # views differ
    assert 0.2 < flips.float().mean() < 0.8
    other = view_params(keys, ViewSpec(count=4, size=32, seed=1))
    assert not torch.equal(other[0], boxes)
    assert ViewSpec(4, 32).key() != ViewSpec(4, 32, seed=1).key() != ViewSpec(4, 32, scale=(0.5, 1.0)).key()
    with pytest.raises(ValueError, match="count >= 1"):
        ViewSpec(count=0, size=32)


# ---------------------------------------------------------------------- the cache
def test_view_embeddings_are_the_teachers_of_each_view_and_cached(tmp_path):
    t, split = CountingTeacher(), _split(12)
    spec = ViewSpec(count=2, size=8)
    out = teacher_view_features(t, split, spec, dataset_id="toy", cache_dir=tmp_path, batch_size=5, progress=False)
    assert out.shape == (12, 2, 6) and t.images == 24
    boxes, flips = view_params(split.keys, spec)
    pixels = split.get_batch(range(12))[0]
    for v in range(2):  # view v of every image, embedded by hand: the teacher's view at the loaded size
        x = resized_crop(pixels, boxes[:, v], 8, flips[:, v])
        assert torch.allclose(out[:, v], t.encode_image(x), atol=1e-6)
    t.images = 0
    again = teacher_view_features(t, split, spec, dataset_id="toy", cache_dir=tmp_path, progress=False)
    assert t.images == 0 and torch.equal(again, out)
    more = teacher_view_features(t, split, ViewSpec(count=3, size=8), dataset_id="toy", cache_dir=tmp_path,
                                 progress=False)
    assert t.images == 12 and torch.equal(more[:, :2], out)  # only the third view is new
    t.images = 0
    teacher_view_features(t, split, ViewSpec(count=2, size=8, seed=1), dataset_id="toy", cache_dir=tmp_path,
                          progress=False)
    assert t.images == 24  # another view seed: other views, embedded anew
    plain = CountingTeacher(preprocess_id="other")
    teacher_view_features(plain, split, spec, dataset_id="toy", cache_dir=tmp_path, progress=False)
    assert plain.images == 24  # another teacher preprocessing never reuses them


def test_a_damaged_view_chunk_is_found_and_recomputed(tmp_path):
    t, split = CountingTeacher(), _split(6)
    spec = ViewSpec(count=2, size=8)
    ref = teacher_view_features(t, split, spec, dataset_id="toy", cache_dir=tmp_path, progress=False)
    store = view_feature_store(t, split, spec, dataset_id="toy", cache_dir=tmp_path)
    chunk = next(store.dir.glob("chunk-*.pt"))
    obj = torch.load(chunk, weights_only=True)
    obj["features"][0, 0] += 1.0
    torch.save(obj, chunk)
    store.index_path(spec.view_keys(split.keys), "toy").unlink()
    t.images = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = teacher_view_features(t, split, spec, dataset_id="toy", cache_dir=tmp_path, progress=False)
    assert any("checksum" in str(w.message) for w in caught)
    assert t.images == 12 and torch.equal(out, ref)


def test_a_view_spec_for_another_image_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="size=split.load_size"):
        teacher_view_features(CountingTeacher(), _split(4), ViewSpec(count=2, size=32), dataset_id="toy",
                              cache_dir=tmp_path, progress=False)


def test_the_student_sees_the_view_whose_embedding_it_gets():
    """TrainViews.batch: the student's crop of view v is the replayed box at its crop size, and the
    target is the teacher's embedding of the same view."""
    from vldlib.train.views import TrainViews

    class DS:
        crop_size, mean, std = 6, (0.5,), (0.25,)

    tf = student_train_transform(DS())
    split = _split(5)
    boxes, flips = view_params(split.keys, ViewSpec(count=3, size=8))
    feats = torch.arange(5 * 3, dtype=torch.float32).reshape(5, 3, 1).expand(5, 3, 4).clone()
    views = TrainViews(boxes, flips, feats, tf)
    idx = torch.tensor([4, 0, 2])
    pixels = split.get_batch(idx.tolist())[0]
    g = torch.Generator().manual_seed(3)
    x, t = views.batch(idx, pixels, g)
    chosen = torch.randint(3, (3,), generator=torch.Generator().manual_seed(3))
    assert torch.equal(t[:, 0], (idx * 3 + chosen).float())
    assert torch.equal(x, (resized_crop(pixels, boxes[idx, chosen], 6, flips[idx, chosen]) - 0.5) / 0.25)


# ---------------------------------------------------------------------- the config
def test_teacher_views_zero_leaves_every_hash_and_k_changes_it():
    base = profile_config("offline")
    assert config_hash({**base, "teacher_views": 0}) == config_hash(base)
    assert "teacher_views" not in TrainConfig.from_dict(base).canonical()
    two = config_hash({**base, "teacher_views": 2})
    assert two != config_hash(base) and two != config_hash({**base, "teacher_views": 4})
    assert TrainConfig.from_dict({**base, "teacher_views": 2}).canonical()["teacher_views"] == 2


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2", None])
def test_a_bad_view_count_is_one_line_naming_the_value(bad):
    with pytest.raises(ValueError) as err:
        TrainConfig(teacher_views=bad).validate()
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("teacher_views must be an integer >= 0") and repr(bad) in msg


# ---------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    return tiny_official_world(tmp_path_factory.mktemp("views"), per_class=8)


def _config(world: dict, **overrides) -> dict:
    cfg = TrainConfig(
        dataset="official", dataset_options={"root": str(world["root"]), "load_size": 32, "crop_size": 28},
        teacher="openclip", teacher_options={"model": tiny_openclip_model(world["ckpt"]),
                                             "pretrained": str(world["ckpt"]), "device": "cpu"},
        student="small", student_options={"width": 4}, weights={"cls": 1.0, "mse": 1.0, "im_cst": 1.0},
        epochs=3, last_n=2, batch_size=8, eval_batch_size=16, device="cpu", teacher_views=2).to_dict()
    cfg.update(overrides)
    return cfg


def _numbers(record: dict) -> dict:
    return {"final": record["final"], "history": [{k: v for k, v in e.items() if k != "train_s"}
                                                   for e in record["history"]]}


@pytest.fixture(scope="module")
def reference(world) -> dict:
    run_dir = world["base"] / "ref"
    return {"record": train(_config(world), run_dir=run_dir, cache_dir=world["cache"], progress=False),
            "run_dir": run_dir}


def test_same_views_config_same_numbers_and_not_the_centre_crop(reference, world):
    again = train(_config(world), cache_dir=world["cache"], progress=False)
    assert again["teacher_forward_passes"] == 0  # the views' embeddings come from the cache
    assert _numbers(again) == _numbers(reference["record"])
    centre = train(_config(world, teacher_views=0), cache_dir=world["cache"], progress=False)
    assert centre["history"][0]["loss_mse"] != reference["record"]["history"][0]["loss_mse"]


def test_an_interrupted_views_run_resumes_to_the_same_numbers(reference, world):
    """The view each image gets comes from the checkpointed augmentation generator."""
    run_dir = world["base"] / "resumed"

    def stop(info):
        if info["epoch"] == 1:
            raise Interrupted("stop after epoch 1")

    with pytest.raises(Interrupted):
        train(_config(world), run_dir=run_dir, cache_dir=world["cache"], progress=False, on_epoch_end=stop)
    rec = train(_config(world), run_dir=run_dir, cache_dir=world["cache"], progress=False)
    assert rec["resumed_from"] == {"stage": "main", "epoch": 1}
    assert _numbers(rec) == _numbers(reference["record"])


@pytest.mark.slow
def test_smoke_profile_views_are_reproducible(smoke_cache, fashion_mnist_root):
    """Under the smoke profile: K = 2 twice gives the same finals; K = 2 differs from K = 0."""
    cfg = profile_config("smoke", fewshot=None, teacher_views=2)
    a = train(cfg, cache_dir=smoke_cache, progress=False)
    b = train(cfg, cache_dir=smoke_cache, progress=False)
    assert a["final"] == b["final"] and _numbers(a) == _numbers(b)
    centre = train({**cfg, "teacher_views": 0}, cache_dir=smoke_cache, progress=False)
    assert _numbers(centre) != _numbers(a)


def test_the_executors_warm_the_views_before_the_runs(world):
    """Parallel workers never embed the same views: the warm-up (once per dataset) embeds them."""
    from types import SimpleNamespace

    from vldlib.study.executors import view_counts, warm_teacher_features

    jobs = [SimpleNamespace(config=_config(world, teacher_views=k)) for k in (0, 2, 3, 2)]
    assert view_counts(jobs) == (2, 3)
    cache = world["base"] / "warmed"
    warm_teacher_features(jobs[1].config, cache, views=(2,))
    rec = train(_config(world, epochs=2, last_n=1), cache_dir=cache, progress=False)
    assert rec["teacher_forward_detail"]["images"] == 0  # features and views were all cached


def test_the_warm_up_builds_a_teacher_once_for_all_class_splits(world, monkeypatch):
    """Each class split's X_train may hold images whose views are not embedded yet: with the caller's
    ``teachers`` the teacher is built once for them all (a build is most of a small warm-up)."""
    import vldlib.features.lazy as lazy
    from vldlib.study.executors import warm_teacher_features

    built = []
    real = lazy.load_teacher
    monkeypatch.setattr(lazy, "load_teacher", lambda *a, **k: built.append(a) or real(*a, **k))
    configs = [_config(world, dataset_options={"root": str(world["root"]), "load_size": 32, "crop_size": 28,
                                               "split_seed": s}) for s in (0, 1, 2)]
    cache = world["base"] / "splits-once"
    teachers: dict = {}
    for cfg in configs:
        warm_teacher_features(cfg, cache, views=(2,), teachers=teachers)
    assert len(built) == 1 and len(teachers) == 1
    built.clear()
    for cfg in configs:  # without it every split with new views builds its own teacher
        warm_teacher_features(cfg, world["base"] / "splits-each", views=(2,))
    assert len(built) >= 2


def test_the_command_line_says_a_bad_view_count_in_one_line(capsys):
    from vldlib.cli.train import main

    assert main(["--profile", "smoke", "--set", "teacher_views=-1", "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "teacher_views must be an integer >= 0" in err and "-1" in err
    assert main(["--profile", "smoke", "--set", "teacher_views=2", "--print-config"]) == 0
    assert '"teacher_views": 2' in capsys.readouterr().out
