"""A run's identity covers its inputs: the data's content (never its path), the description set
and the caption file it reads; the default book's hashes stand; old stores are read."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import vldlib.runs
from vldlib.data.identity import FASHION_MNIST_SHA256, fashion_mnist_identity
from vldlib.data.specs import data_identity
from vldlib.runs import RECORD, RunStore
from vldlib.text.cache import DescriptionCache, cache_path, write_cache
from vldlib.text.captions import CAPTION_FORMAT
from vldlib.text.descriptions import description_digest, shipped_descriptions
from vldlib.text.prompts import PROMPTS
from vldlib.train.config import TrainConfig, config_hash, input_identity, record_hash
from vldlib.train.inputs import BASELINES, UNRESOLVED
from vldlib.train.profiles import profile_config

sys.path.insert(0, str(Path(__file__).parent))
from book_hashes import bf16_machine  # noqa: E402
from data_fixtures import write_tiny_official_root  # noqa: E402

FULL = {"cls": 1.0, "mse": 1.0, "im_cst": 1.0, "vlprox": 1.0}
CAP = {**FULL, "cap": 1.0}

#: Hashes of the offline book's runs with the teacher before the teacher search (EfficientNet-Lite0,
#: ConSE defaults), computed before a run's identity covered its inputs (Table 1's main rows on the
#: first two test class splits, Table 5's rows that read the shipped descriptions and the proxy
#: captions): stored results of that teacher stay valid when it is named.
BEFORE_SEARCH_TEACHER = {"backbone": "lite0", "backend": "openvino"}
DEFAULT_BOOK_HASHES = [
    ({"weights": {"cls": 1.0}}, 0, "86cbb54c2b51ce3e"),
    ({"weights": {"cls": 1.0}}, 1, "609eccc7c36ad1de"),
    ({"weights": {"cls": 1.0, "im_cst": 1.0}}, 0, "d5d2cdfe69e88a5c"),
    ({"weights": FULL}, 0, "fb0b9488c3e1f660"),
    ({"weights": FULL}, 1, "a89f04d4f3df2c5f"),
    ({"weights": FULL, "descriptions": "main"}, 0, "f14bb0d83a38efa2"),
    ({"weights": CAP}, 0, "fa7b9bfeb3037b3e"),
    ({"weights": CAP, "descriptions": "main", "prompt_learning": {"n_ctx": 8}}, 0, "b3d41e21d0b08bb4"),
]


@pytest.mark.parametrize("overrides,split,expected", DEFAULT_BOOK_HASHES)
def test_default_offline_book_hashes_are_unchanged(overrides, split, expected):
    with bf16_machine():  # the machine the pins were written on (precision "auto" -> "bf16")
        cfg = profile_config("offline", analysis=True, seed=0, **overrides, **{"dataset_options.split_seed": split})
    assert config_hash(cfg) != expected  # the default teacher is the search's winner
    cfg["teacher_options"] = dict(BEFORE_SEARCH_TEACHER)
    assert config_hash(cfg) == expected == config_hash(cfg, inputs={})  # its inputs are the baselines



def test_every_default_book_config_hashes_as_pinned():
    """Every config the book's chapters train under the offline, smoke and paper profiles has the
    hash pinned in ``tests/data/book_hashes.json`` (written by ``tests/book_hashes.py`` before the
    one-rule canonical form): no user's run store is invalidated."""
    from book_hashes import FIXTURE, book_hashes

    pinned = json.loads(FIXTURE.read_text())
    now = book_hashes()
    for profile, hashes in pinned.items():
        assert sorted(now[profile]) == sorted(hashes), profile


def test_each_pinned_identity_still_hashes_to_its_pin():
    """The pinned identities, read back as configs, hash to their pins under today's rule (no chapter
    is opened: this holds whatever the chapters' grids become)."""
    from book_hashes import FIXTURE

    pinned = json.loads(FIXTURE.read_text())
    assert sum(map(len, pinned.values())) > 300
    for profile, hashes in pinned.items():
        for expected, identity in hashes.items():
            assert config_hash(identity, inputs={}) == expected, (profile, identity)

def test_baselines_are_the_shipped_sets_and_the_standard_files(fashion_mnist_root):
    for variant in PROMPTS:
        digest = description_digest(shipped_descriptions(variant).ordered())
        assert BASELINES[f"descriptions/fashion-mnist/{variant}"] == digest
    assert BASELINES["data/fashion-mnist"] == FASHION_MNIST_SHA256 == fashion_mnist_identity(fashion_mnist_root)


# ---------------------------------------------------------------------- Fashion-MNIST content
def write_idx_folder(folder: Path, seed: int = 0, n: int = 20, gz: bool = False) -> Path:
    """Four tiny idx files (``n`` train and ``n`` t10k images) in Fashion-MNIST's file names."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for part in ("train", "t10k"):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for stem, arr in ((f"{part}-images-idx3-ubyte", images), (f"{part}-labels-idx1-ubyte", labels)):
            data = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape) + arr.tobytes()
            if gz:
                (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / stem).write_bytes(data)
    return folder


def fmnist(root: str) -> dict:
    return profile_config("smoke", **{"dataset_options.root": root})


def test_a_relative_data_root_is_named_by_its_content_not_as_typed(tmp_path, monkeypatch):
    """Two projects with a relative ``data`` root of different content get different hashes; the
    same content under another path (relative, absolute, gz or raw) gets the same one."""
    write_idx_folder(tmp_path / "a" / "data", seed=1)
    write_idx_folder(tmp_path / "b" / "data", seed=2)
    write_idx_folder(tmp_path / "c" / "copy", seed=1, gz=True)
    monkeypatch.chdir(tmp_path / "a")
    h_a = config_hash(fmnist("data"))
    monkeypatch.chdir(tmp_path / "b")
    h_b = config_hash(fmnist("data"))
    assert h_a != h_b  # before: both hashed the typed "data"
    assert config_hash(fmnist(str(tmp_path / "a" / "data"))) == h_a
    monkeypatch.chdir(tmp_path / "c")
    assert config_hash(fmnist("copy")) == h_a
    # the standard files hash as the default config, wherever they lie
    assert h_a != config_hash(profile_config("smoke"))
    ident = input_identity(fmnist(str(tmp_path / "a" / "data")))["data"]
    assert ident["source"] == str((tmp_path / "a" / "data").resolve()) and ident["sha256"] != FASHION_MNIST_SHA256


def test_standard_files_under_another_path_hash_as_the_default(tmp_path, fashion_mnist_root):
    copy = tmp_path / "fm"
    copy.mkdir()
    for name in os.listdir(fashion_mnist_root):
        (copy / name).symlink_to(Path(fashion_mnist_root) / name)
    assert config_hash(fmnist(str(copy))) == config_hash(profile_config("smoke"))


def test_a_named_data_root_without_files_is_unresolved_and_training_says_why(tmp_path):
    cfg = fmnist(str(tmp_path / "nowhere"))
    assert input_identity(cfg)["data"]["sha256"] == UNRESOLVED
    with pytest.raises(FileNotFoundError, match="nowhere"):
        input_identity(cfg, strict=True)


# ---------------------------------------------------------------------- official data, descriptions, captions
def official(root: Path | str, **over) -> dict:
    cfg = TrainConfig(dataset="official", dataset_options={"root": str(root)},
                      weights=dict(FULL)).to_dict()
    cfg.update(over)
    return cfg


def tiny_root(path: Path) -> Path:
    """A tiny official root; its folder's name is the dataset's description key."""
    return write_tiny_official_root(path, n_seen=2, n_unseen=2, per_class=4, size=8)


def test_official_data_is_named_by_its_lists_not_its_path(tmp_path, monkeypatch):
    a, b = tiny_root(tmp_path / "a" / "data"), tiny_root(tmp_path / "b" / "data")
    h = config_hash(official(a))
    assert config_hash(official(b)) == h
    monkeypatch.chdir(tmp_path / "a")
    assert config_hash(official("data")) == h
    victim = sorted((b / "train").rglob("*.jpg"))[0]
    victim.unlink()  # one training image fewer
    assert config_hash(official(b)) != h
    (a / "chatgpt.txt").write_text((a / "chatgpt.txt").read_text() + "\n")  # not read without descriptions
    assert config_hash(official(a)) == h


def write_descriptions(root: Path, cache: Path, model: str, text: str) -> None:
    from vldlib.text.descriptions import official_class_names

    names = official_class_names(root)
    for old in (cache / "descriptions").glob(f"{root.name}_main_*.json"):
        old.unlink()
    write_cache(DescriptionCache(dataset=root.name, variant="main", prompt=PROMPTS["main"], model=model, classes=names,
                                 descriptions={n: [f"{text} {n}."] for n in names},
                                 provenance={n: {"model": model} for n in names}),
                cache_path(root.name, "main", model, cache))


def test_regenerated_descriptions_change_the_hash(tmp_path, monkeypatch):
    """Another model's or another text's cache gives another hash; the same text does not."""
    monkeypatch.setenv("VLD_CACHE", str(tmp_path / "cache"))
    root = tiny_root(tmp_path / "data")
    cfg = official(root, descriptions="main")
    write_descriptions(root, tmp_path / "cache", "model-a", "a thing like")
    h = config_hash(cfg)
    write_descriptions(root, tmp_path / "cache", "model-b", "another thing like")
    assert config_hash(cfg) != h  # before: the same hash, the old record served
    write_descriptions(root, tmp_path / "cache", "model-c", "a thing like")
    assert config_hash(cfg) == h  # the same sentences from another model: the same numbers
    assert input_identity(cfg)["descriptions"]["source"].endswith("data_main_model-c.json")
    # the official chatgpt.txt is hashed when it is used
    off = official(root, descriptions="official")
    h_off = config_hash(off)
    lines = (root / "chatgpt.txt").read_text().splitlines()
    (root / "chatgpt.txt").write_text("\n".join(["a new sentence."] + lines[1:]) + "\n")
    assert config_hash(off) != h_off


def test_a_recaptioned_caption_file_changes_the_hash(tmp_path):
    root = tiny_root(tmp_path / "data")
    cfg = official(root, weights=dict(CAP), captions="file")
    keys = [str(p.relative_to(root)) for p in sorted((root / "train").rglob("*.jpg"))]
    captions = {k: f"a picture {i}" for i, k in enumerate(keys)}
    (root / "captions.json").write_text(json.dumps(captions))
    h = config_hash(cfg)
    (root / "captions.json").write_text(json.dumps({**captions, keys[0]: "another caption, longer"}))
    assert config_hash(cfg) != h  # before: the same hash
    (root / "captions.json").write_text(json.dumps({"format": CAPTION_FORMAT, "model": "m", "captions": captions,
                                                    "provenance": {"time": "now"}}))
    assert config_hash(cfg) == h  # the same captions in the captioner's format
    assert config_hash(official(root)) == config_hash(official(root, captions=None))  # L_cap off: no caption input


# ---------------------------------------------------------------------- records and old stores
def test_record_hash_reads_the_inputs_a_record_holds(tmp_path):
    root = tiny_root(tmp_path / "data")
    cfg = official(root)
    inputs = input_identity(cfg, strict=True)
    rec = {"config": cfg, "inputs": inputs}
    assert record_hash(rec) == config_hash(cfg)
    shutil.rmtree(root)  # no file is read: a store lists its records without the data
    assert record_hash(rec) == config_hash(cfg, inputs)
    legacy = TrainConfig.from_dict(cfg).canonical()  # a record from before: the typed root is hashed
    assert record_hash({"config": cfg}) != record_hash(rec) and "root" in legacy["dataset_options"]


def test_old_store_records_are_listed_and_only_unchanged_identities_served(tmp_path, monkeypatch):
    """A record written before inputs were hashed (no ``inputs``) stays listed under its folder; it
    is served where its hash is unchanged (the default book), not where the hash now covers data
    the record cannot vouch for (an official root, hashed as typed before)."""
    import hashlib

    from vldlib.io import canonical_json, write_json_atomic

    root = tiny_root(tmp_path / "data")
    store = RunStore(tmp_path / "res")

    def legacy_record(cfg: dict) -> str:
        canon = TrainConfig.from_dict(cfg).canonical()
        h = hashlib.sha256(canonical_json(canon).encode()).hexdigest()[:16]
        write_json_atomic(store.root / h / RECORD, {"hash": h, "config": cfg, "final": {"acc_id": 1.0},
                                                    "torch_threads": 1})
        return h

    default = profile_config("smoke")
    h_default, h_official = legacy_record(default), legacy_record(official(root))
    assert {r["hash"] for r in store.records()} == {h_default, h_official}
    assert store.get(default)["hash"] == h_default == config_hash(default)
    assert config_hash(official(root)) != h_official and store.get(official(root)) is None

    def fake(cfg, run_hash, *, run_dir=None, cache_dir=None, progress=True):
        return {"config": cfg.to_dict(), "inputs": input_identity(cfg, strict=True), "final": {"acc_id": 2.0},
                "torch_threads": cfg.threads}

    monkeypatch.setattr(vldlib.runs, "train_validated", fake)
    rec = store.run(official(root), progress=False)
    assert rec["hash"] == config_hash(official(root)) and store.get(official(root))["final"]["acc_id"] == 2.0
    assert len(store.records()) == 3


def test_data_identity_of_a_missing_default_copy_is_the_standard_files(tmp_path, monkeypatch):
    """Without a named location and without any copy, the loader downloads the standard files."""
    import vldlib.data.identity as ident

    def nothing(*a, **k):
        raise FileNotFoundError("Fashion-MNIST not found")

    monkeypatch.delenv("VLD_DATA", raising=False)
    monkeypatch.setattr(ident, "find_fashion_mnist", nothing)
    assert data_identity("fashion-mnist", {})["sha256"] == FASHION_MNIST_SHA256
    monkeypatch.setenv("VLD_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError):
        data_identity("fashion-mnist", {})


def test_trainer_stops_when_inputs_changed_after_the_hash(tmp_path):
    """The trainer resolves its inputs again (strictly) before any teacher work and refuses to
    train under a hash that no longer names them."""
    from vldlib.train.trainer import train_validated

    root = tiny_root(tmp_path / "data")
    cfg = TrainConfig.from_dict(official(root, device="cpu", epochs=1, last_n=1, fewshot=None)).validate()
    h = config_hash(cfg)
    sorted((root / "val").rglob("*.jpg"))[0].unlink()
    with pytest.raises(ValueError, match=f"inputs of run {h} changed after its hash"):
        train_validated(cfg, h, cache_dir=tmp_path / "cache", progress=False)


def test_content_digests_are_remembered_across_processes(tmp_path, monkeypatch):
    """The decompressed idx files' digests are kept in ``content-digests.json`` by path, size and
    mtime: another process reads them back; a changed file is digested again."""
    import vldlib.data.identity as ident

    folder = write_idx_folder(tmp_path / "fm", seed=3, gz=True)
    path = folder / "train-images-idx3-ubyte.gz"
    first = ident.content_sha256(path, memo_dir=tmp_path / "memo")
    assert json.loads((tmp_path / "memo" / ident.DIGEST_MEMO).read_text())[str(path.resolve())]["sha256"] == first
    ident._content_sha256.cache_clear()  # as a fresh process

    def never(p):
        raise AssertionError(f"{p} was read again")

    monkeypatch.setattr(ident, "_read_sha256", never)
    assert ident.content_sha256(path, memo_dir=tmp_path / "memo") == first
    monkeypatch.undo()
    write_idx_folder(tmp_path / "fm", seed=4, gz=True)
    os.utime(path, ns=(1, 2))
    assert ident.content_sha256(path, memo_dir=tmp_path / "memo") != first
