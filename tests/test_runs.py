"""The run store: config hashing, reuse / force, aggregation, atomic records, concurrency.

The trainer is replaced by a fake that counts its calls (the real trainer behind the store is
exercised in tests/test_train.py::test_run_store_integration)."""
from __future__ import annotations

import json
import threading
import time

import pandas as pd
import pytest

import vldlib.runs
from vldlib.train.profiles import profile_config
from vldlib.runs import RunStore, config_hash, default_root, finite_json, write_json_atomic
from vldlib.train.config import TrainConfig


class FakeTrainer:
    """Stands in for the trainer the run store calls (``train_validated``): returns a record
    derived from the config."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[dict] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, config, run_hash=None, *, run_dir=None, cache_dir=None, progress=True):
        cfg = TrainConfig.from_dict(config)
        with self.lock:
            self.calls.append({"config": cfg.to_dict(), "run_dir": run_dir, "cache_dir": cache_dir})
        time.sleep(self.delay)
        (run_dir / "checkpoint.pt").write_bytes(b"fake")
        acc = 50.0 + cfg.seed + 10 * cfg.weights.get("im_cst", 0.0)
        return {"config": cfg.to_dict(), "final": {"acc_id": acc, "acc_ood_zeroshot": acc / 2, "loss": float("nan")},
                "analysis": {"X_ood": {"mse": 0.5, "m_neigh": {"3": 0.1}}},
                "timings": {"total_s": 1.5}, "device": "cpu", "teacher_forward_passes": 0,
                "torch_threads": cfg.threads}


@pytest.fixture
def fake(monkeypatch) -> FakeTrainer:
    trainer = FakeTrainer()
    monkeypatch.setattr(vldlib.runs, "train_validated", trainer)
    return trainer


def smoke(**kw) -> dict:
    return profile_config("smoke", **kw)


def test_config_hash_is_canonical():
    a = smoke()
    h = config_hash(a)
    assert len(h) == 16 and int(h, 16) >= 0
    assert config_hash(dict(reversed(list(a.items())))) == h  # key order
    assert config_hash(TrainConfig.from_dict(a)) == h
    # 1 vs 1.0 and missing zero weights are the same run
    b = {**a, "weights": {"vlprox": 1, "cls": 1, "mse": 1.0, "im_cst": 1}}
    assert config_hash(b) == h
    c1 = {**a, "weights": {"cls": 1.0}}
    c2 = {**a, "weights": {"cls": 1.0, "mse": 0.0, "im_cst": 0, "vlprox": 0.0}}
    assert config_hash(c1) == config_hash(c2) != h
    # runtime-only fields do not change the identity; anything else does
    assert config_hash({**a, "cache_dir": "/elsewhere", "num_workers": 4, "threads": 1}) == h
    assert config_hash({**a, "num_threads": None}) == h  # the legacy runtime key
    assert config_hash({**a, "threads": 2}) != h  # the thread count changes the numbers
    assert config_hash({**a, "seed": 1}) != h
    assert config_hash({**a, "dataset_options": {**a["dataset_options"], "split_seed": 1}}) != h
    assert config_hash({**a, "k": 3}) != h
    # defaults filled in: an empty dict is the dataclass defaults
    assert config_hash({}) == config_hash(TrainConfig().to_dict())
    # few-shot defaults filled in
    assert config_hash({**a, "fewshot": {"shots": 5, "epochs": 2}}) == \
        config_hash({**a, "fewshot": {"shots": 5, "epochs": 2, "lr": "auto", "optimizer": "auto",
                                      "weight_decay": "auto", "batch_size": None}})


def test_config_hash_is_stable_across_processes():
    """The hash is sha256 of canonical JSON: pinned here so that a change is noticed (it would
    orphan every stored result)."""
    import hashlib

    from vldlib.runs import canonical_json

    cfg = TrainConfig.from_dict(smoke())
    expected = hashlib.sha256(canonical_json(cfg.canonical()).encode()).hexdigest()[:16]
    assert config_hash(smoke()) == expected
    assert canonical_json({"b": 1, "a": [1.5, None]}) == '{"a":[1.5,null],"b":1}'


def test_run_reuses_and_force_retrains(tmp_path, fake):
    store = RunStore(tmp_path / "res", cache_dir=tmp_path / "cache")
    cfg = smoke()
    assert store.get(cfg) is None
    rec = store.run(cfg, progress=False)
    run_dir = tmp_path / "res" / config_hash(cfg)
    assert rec["hash"] == run_dir.name and fake.calls[0]["run_dir"] == run_dir
    assert fake.calls[0]["cache_dir"] == tmp_path / "cache"
    assert json.loads((run_dir / "record.json").read_text()) == rec
    assert rec["final"]["loss"] is None  # NaN written as null: strict JSON
    assert json.loads((run_dir / "config.json").read_text())["config"] == cfg
    assert store.get(cfg) == rec
    assert store.run(cfg) == rec and len(fake.calls) == 1  # reused
    assert store.run(cfg, force=True)["hash"] == rec["hash"] and len(fake.calls) == 2
    assert not any(p.name.endswith(".tmp") for p in run_dir.iterdir())


def test_unfinished_or_corrupt_record_is_trained(tmp_path, fake):
    store = RunStore(tmp_path)
    cfg = smoke(seed=4)
    d = store.run_dir(cfg)
    d.mkdir(parents=True)
    (d / "record.json").write_text("{ truncated")
    assert store.get(cfg) is None
    store.run(cfg, progress=False)
    assert len(fake.calls) == 1 and store.get(cfg)["final"]["acc_id"] == 64.0  # 50 + seed 4 + 10 (im_cst on)


def test_bad_config_fails_before_training(tmp_path, fake):
    store = RunStore(tmp_path)
    with pytest.raises(ValueError, match="unknown loss name"):
        store.run(smoke(weights={"cls": 1.0, "vl_prox": 1.0}))
    with pytest.raises(ValueError, match="unknown config key"):
        store.run({**smoke(), "epoch": 3})
    assert fake.calls == [] and not list(tmp_path.iterdir())


def test_to_frame_and_csv(tmp_path, fake):
    store = RunStore(tmp_path / "res")
    assert store.records() == [] and store.to_frame().empty
    configs = [smoke(seed=s, weights=w) for s in (0, 1) for w in ({"cls": 1.0}, {"cls": 1.0, "im_cst": 1.0})]
    for cfg in configs:
        store.run(cfg, progress=False)
    (tmp_path / "res" / "junk").mkdir()
    (tmp_path / "res" / "junk" / "record.json").write_text("[1, 2]")  # not a record: ignored
    df = store.to_frame()
    assert len(df) == 4 and set(df["hash"]) == {config_hash(c) for c in configs}
    for col in ("dataset", "seed", "weights.cls", "weights.im_cst", "dataset_options.per_class",
                "fewshot.shots", "acc_id", "acc_ood_zeroshot", "analysis.X_ood.m_neigh.3", "time.total_s"):
        assert col in df.columns, col
    row = df[(df["seed"] == 1) & (df["weights.im_cst"] == 1.0)].iloc[0]
    assert row["acc_id"] == 61.0 and row["acc_ood_zeroshot"] == 30.5
    assert set(df["weights.mse"]) == {0.0}
    path = store.to_csv(tmp_path / "out" / "runs.csv")
    back = pd.read_csv(path)
    assert len(back) == 4 and list(back.columns) == list(df.columns)


def test_two_writers_of_one_run_train_it_once(tmp_path, monkeypatch):
    """Two concurrent callers (threads here; processes behave alike with flock) of the same
    config: one trains, the other waits for the lock and reads the finished record."""
    slow = FakeTrainer(delay=0.5)
    monkeypatch.setattr(vldlib.runs, "train_validated", slow)
    store_a, store_b = RunStore(tmp_path), RunStore(tmp_path)
    cfg = smoke(seed=7)
    results = []
    threads = [threading.Thread(target=lambda s=s: results.append(s.run(cfg, progress=False)))
               for s in (store_a, store_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(slow.calls) == 1 and len(results) == 2 and results[0] == results[1]


def test_different_runs_in_parallel(tmp_path, monkeypatch):
    """Three runs of different configs train at the same time: each trainer waits at a barrier for
    the other two (no clock: a loaded machine cannot fail it), so if one run waited for another's
    lock the barrier breaks and that run leaves no record."""
    slow = FakeTrainer(delay=0.0)
    barrier = threading.Barrier(3, timeout=20)

    def together(*args, **kwargs):
        barrier.wait()
        return slow(*args, **kwargs)

    monkeypatch.setattr(vldlib.runs, "train_validated", together)
    store = RunStore(tmp_path)
    cfgs = [smoke(seed=s) for s in range(3)]
    threads = [threading.Thread(target=store.run, args=(c,), kwargs={"progress": False}) for c in cfgs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not barrier.broken  # the three were inside the trainer at once
    assert len(slow.calls) == 3 and len(store.records()) == 3


def test_default_root_and_atomic_json(tmp_path, monkeypatch):
    monkeypatch.setenv("VLD_RESULTS", str(tmp_path / "r"))
    assert default_root() == tmp_path / "r" and RunStore().root == tmp_path / "r"
    monkeypatch.delenv("VLD_RESULTS")
    assert str(default_root()) == "results"
    assert finite_json({"a": [float("inf"), 1.0], "b": float("nan")}) == {"a": [None, 1.0], "b": None}
    target = tmp_path / "x.json"
    write_json_atomic(target, {"v": 1})
    write_json_atomic(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


# ---------------------------------------------------------------------- one hashing rule
def test_canonical_config_drops_every_default_and_carries_the_schema():
    """The canonical config is the schema version plus the fields off their declared defaults; the
    hash is over its expansion (schema 1: the baseline fields filled), so it equals the old identity."""
    from vldlib.train.config import BASELINE_FIELDS, canonical_config, hash_identity

    assert canonical_config({}) == canonical_config(TrainConfig().to_dict()) == {"schema": 1}
    cfg = smoke(threads=2, description_control="waffle", descriptions="main")
    canon = canonical_config(cfg)
    assert canon["schema"] == 1 and canon["threads"] == 2 and canon["description_control"] == "waffle"
    assert "weights" not in canon and "k" not in canon and "world_size" not in canon  # at their defaults
    assert canon["fewshot"] == {"epochs": 2, "lr": 0.03}  # shots=5 is the default, continual too
    ident = hash_identity(canon)
    assert ident == TrainConfig.from_dict(cfg).canonical()
    assert set(BASELINE_FIELDS) <= set(ident) and "precision" not in ident and "continual" not in ident["fewshot"]
    assert ident["fewshot"] == {"shots": 5, "epochs": 2, "lr": 0.03, "optimizer": "auto", "weight_decay": "auto",
                                "batch_size": None}
    with pytest.raises(ValueError, match="schema 2"):
        hash_identity({"schema": 2})


def test_a_field_added_later_enters_the_hash_only_off_its_default():
    """The rule on its own: baseline fields are always in the identity, later ones only when set."""
    from vldlib.train.schema import Schema

    old = Schema(defaults={"a": 1, "sub": None}, baseline=("a", "sub"),
                 nested={"sub": Schema(defaults={"x": 0, "y": "auto"}, baseline=("x", "y"))})
    new = Schema(defaults={"a": 1, "sub": None, "later": None}, baseline=("a", "sub"),
                 nested={"sub": Schema(defaults={"x": 0, "y": "auto", "z": False}, baseline=("x", "y"))})
    assert new.expand(new.compact({"a": 1, "sub": None, "later": None})) == old.expand(old.compact({"a": 1, "sub": None}))
    assert new.expand(new.compact({"a": 2, "sub": {"x": 0, "y": "auto", "z": False}, "later": None})) == \
        {"a": 2, "sub": {"x": 0, "y": "auto"}}
    assert new.expand(new.compact({"a": 1, "sub": {"x": 1, "y": "auto", "z": True}, "later": 3})) == \
        {"a": 1, "sub": {"x": 1, "y": "auto", "z": True}, "later": 3}
    assert new.compact({"a": 1.0}) == {"a": 1.0}  # equal as JSON only: 1.0 is not the default 1


def test_fewshot_and_prompt_learning_are_typed_sub_configs():
    from vldlib.train.config import FewshotOptions, PromptLearningOptions

    cfg = TrainConfig.from_dict(smoke(prompt_learning={"n_ctx": 4}, weights={"cls": 1.0, "cap": 1.0}))
    assert isinstance(cfg.fewshot, FewshotOptions) and cfg.fewshot.epochs == 2 and cfg.fewshot.continual is False
    assert isinstance(cfg.prompt_learning, PromptLearningOptions) and cfg.prompt_learning.n_ctx == 4
    assert cfg.to_dict()["prompt_learning"] == {"n_ctx": 4, "init_std": 0.02}
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg and config_hash(cfg.to_dict()) == config_hash(cfg)
    with pytest.raises(ValueError, match=r"unknown fewshot option\(s\) \['epoch'\]; valid: "):
        TrainConfig(fewshot={"epoch": 3})
    with pytest.raises(ValueError, match=r"unknown prompt_learning option\(s\) \['ctx'\]"):
        TrainConfig.from_dict({"prompt_learning": {"ctx": 3}})
    with pytest.raises(ValueError, match="fewshot must be None or a dict"):
        TrainConfig(fewshot="yes").validate()
    with pytest.raises(ValueError, match="prompt_learning.n_ctx must be an integer in 1..32"):
        TrainConfig(prompt_learning={"n_ctx": 0}).validate()
