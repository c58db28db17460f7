"""Fault injection (issue 10, "nothing silent, nothing lost"): each failure a user can meet is a
clear error naming the file and the fix, or survived correctly (verified, discarded, recomputed,
said so). Everything happens in temp dirs; the trainer behind the run store is a fake where the
case is about the store."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import vldlib.runs
from vldlib.runs import RECORD, RunStore, config_hash
from vldlib.train.profiles import profile_config
from vldlib.train.config import TrainConfig


def _fake_record(cfg: TrainConfig, acc: float) -> dict:
    return {"config": cfg.to_dict(), "final": {"acc_id": acc, "acc_ood_zeroshot": acc / 2},
            "timings": {"total_s": 1.0}, "device": "cpu", "teacher_forward_passes": 0,
            "torch_threads": cfg.threads}


class Trainer:
    """A fake ``train_validated``: writes weights and a checkpoint into ``run_dir`` and returns a
    record with ``acc_id = self.acc``; ``fail`` (an exception) is raised after the weights are
    written, as an interrupt in the middle of a run would."""

    def __init__(self, acc: float = 50.0, fail: BaseException | None = None) -> None:
        self.acc, self.fail, self.run_dirs = acc, fail, []

    def __call__(self, config, run_hash=None, *, run_dir=None, cache_dir=None, progress=True):
        cfg = TrainConfig.from_dict(config)
        self.run_dirs.append(run_dir)
        (run_dir / "checkpoint.pt").write_bytes(b"ckpt %r" % self.acc)
        (run_dir / "student.pt").write_bytes(b"weights %r" % self.acc)
        if self.fail is not None:
            raise self.fail
        return _fake_record(cfg, self.acc)


def smoke(**kw) -> dict:
    return profile_config("smoke", **kw)


# ---------------------------------------------------------------------- 1. --force keeps the result
@pytest.mark.parametrize("fault", [KeyboardInterrupt(), RuntimeError("boom")])
def test_force_interrupted_keeps_old_result(tmp_path, monkeypatch, fault):
    store = RunStore(tmp_path / "res")
    cfg = smoke()
    monkeypatch.setattr(vldlib.runs, "train_validated", Trainer(acc=61.0))
    store.run(cfg)
    run_dir = store.run_dir(cfg)
    old_weights = (run_dir / "student.pt").read_bytes()
    monkeypatch.setattr(vldlib.runs, "train_validated", Trainer(acc=99.0, fail=fault))
    with pytest.raises(type(fault)):
        store.run(cfg, force=True)
    # the old record and weights are intact and served
    assert store.get(cfg)["final"]["acc_id"] == 61.0
    assert (run_dir / "student.pt").read_bytes() == old_weights
    assert store.run(cfg)["final"]["acc_id"] == 61.0
    assert len(store.to_frame()) == 1  # the half-done forced run is not a record


def test_force_trains_in_a_side_folder_then_swaps(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "res")
    cfg = smoke()
    monkeypatch.setattr(vldlib.runs, "train_validated", Trainer(acc=61.0))
    store.run(cfg)
    run_dir = store.run_dir(cfg)
    (run_dir / "stale.pt").write_bytes(b"old only")
    # an earlier forced run that was interrupted leaves a side folder: it is started afresh
    side = tmp_path / "res" / f".{config_hash(cfg)}.new"
    side.mkdir()
    (side / "config.json").write_text(json.dumps({"hash": config_hash(cfg), "config": cfg}))  # as the store writes it
    (side / "checkpoint.pt").write_bytes(b"half")
    seen = {}

    class Checking(Trainer):
        def __call__(self, config, run_hash=None, *, run_dir=None, cache_dir=None, progress=True):
            seen["old_record_during_training"] = store.get(cfg)["final"]["acc_id"]
            seen["side_was_fresh"] = not (run_dir / "checkpoint.pt").exists()
            return super().__call__(config, run_hash, run_dir=run_dir, cache_dir=cache_dir)

    trainer = Checking(acc=77.0)
    monkeypatch.setattr(vldlib.runs, "train_validated", trainer)
    rec = store.run(cfg, force=True)
    assert trainer.run_dirs == [side]
    assert seen == {"old_record_during_training": 61.0, "side_was_fresh": True}
    assert rec["final"]["acc_id"] == 77.0 and store.get(cfg)["final"]["acc_id"] == 77.0
    assert (run_dir / "student.pt").read_bytes() == b"weights 77.0"
    assert not (run_dir / "stale.pt").exists() and not side.exists()
    assert json.loads((run_dir / "config.json").read_text())["hash"] == config_hash(cfg)


# ---------------------------------------------------------------------- 2. records are verified
def test_record_of_another_config_is_not_served(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "res")
    a, b = smoke(seed=0), smoke(seed=1)
    monkeypatch.setattr(vldlib.runs, "train_validated", Trainer(acc=61.0))
    store.run(a)
    # copy a's record into b's folder (e.g. a folder renamed or copied by hand)
    src = store.run_dir(a) / RECORD
    dst = store.run_dir(b) / RECORD
    dst.parent.mkdir(parents=True)
    dst.write_bytes(src.read_bytes())
    with pytest.warns(RuntimeWarning, match="hash"):
        assert store.get(b) is None
    # same hash field, but the config inside was edited: also rejected
    rec = json.loads(src.read_text())
    rec["hash"] = config_hash(b)
    dst.write_text(json.dumps(rec))
    with pytest.warns(RuntimeWarning, match="config hashes to"):
        assert store.get(b) is None
    trainer = Trainer(acc=70.0)
    monkeypatch.setattr(vldlib.runs, "train_validated", trainer)
    assert store.run(b)["final"]["acc_id"] == 70.0  # retrained, not served a's numbers
    assert len(trainer.run_dirs) == 1


def test_malformed_record_is_skipped_by_to_frame_and_retrained(tmp_path, monkeypatch, recwarn):
    store = RunStore(tmp_path / "res")
    a, b = smoke(seed=0), smoke(seed=1)
    monkeypatch.setattr(vldlib.runs, "train_validated", Trainer(acc=61.0))
    store.run(a)
    store.run(b)
    bad = store.run_dir(b) / RECORD
    for content in ('{"final": ', '["not", "a", "record"]', '{"hash": "x", "final": 3}', "\xff\xfe"):
        bad.write_text(content, encoding="latin-1")
        frame = store.to_frame()  # does not fail for the whole store
        assert frame["hash"].tolist() == [config_hash(a)]
    messages = [str(w.message) for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert messages and all(str(bad) in m for m in messages)
    trainer = Trainer(acc=70.0)
    monkeypatch.setattr(vldlib.runs, "train_validated", trainer)
    assert store.run(b)["final"]["acc_id"] == 70.0 and len(trainer.run_dirs) == 1


def test_unusable_record_is_reported_once(tmp_path, monkeypatch):
    import warnings

    store = RunStore(tmp_path / "res")
    cfg = smoke(seed=5)
    bad = store.run_dir(cfg) / RECORD
    bad.parent.mkdir(parents=True)
    bad.write_text("{oops")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert store.get(cfg) is None
    assert len([w for w in caught if str(bad) in str(w.message)]) == 1


# ---------------------------------------------------------------------- 3. explicit data roots
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


def test_cli_data_root_missing_is_exit_2(tmp_path, capsys):
    from vldlib.cli.train import main

    rc = main(["--profile", "smoke", "--data-root", str(tmp_path / "nope"), "--out", str(tmp_path / "res"),
               "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and str(tmp_path / "nope") in err and "Traceback" not in err
    assert not list((tmp_path / "res").glob("*/record.json"))


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


# ---------------------------------------------------------------------- 6. truncated checkpoint
@pytest.mark.parametrize("damage", ["truncate", "garbage", "not_a_checkpoint"])
def test_truncated_checkpoint_restarts_with_a_message(tmp_path, damage):
    from types import SimpleNamespace

    import torch

    from vldlib.io import save_torch_atomic
    from vldlib.train.trainer import CHECKPOINT, _Run

    path = tmp_path / CHECKPOINT
    save_torch_atomic({"hash": "h", "stage": "main", "epoch": 1, "student": {"w": torch.ones(100)}}, path)
    run = SimpleNamespace(run_dir=tmp_path, device=torch.device("cpu"), hash="h")
    assert _Run._load_checkpoint(run)["epoch"] == 1  # intact: resumed
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * len(data))
    else:
        save_torch_atomic([1, 2, 3], path)
    with pytest.warns(RuntimeWarning, match="restarts from scratch") as caught:
        assert _Run._load_checkpoint(run) is None
    assert str(path) in str(caught[0].message)


# ---------------------------------------------------------------------- 4. teacher-feature cache
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


# ---------------------------------------------------------------------- 7. the CLI
def _cli(tmp_path, *extra):
    from vldlib.cli.train import main

    return main(["--profile", "smoke", "--quiet", "--cache-dir", str(tmp_path / "cache"), *extra])


def test_cli_results_dir_is_a_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(vldlib.runs, "train_validated", Trainer())
    out = tmp_path / "results"
    out.write_text("not a folder")
    rc = _cli(tmp_path, "--out", str(out))
    err = capsys.readouterr().err
    assert rc == 2 and str(out) in err and "a file stands where a folder is needed" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_unwritable_dir_is_one_line(tmp_path, capsys, monkeypatch):
    """A read-only results or cache folder (simulated: the tests may run as root, which ignores
    permission bits) gives one line naming the path, exit 2."""
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "cache" / "teacher-features"))

    monkeypatch.setattr(vldlib.runs, "train_validated", denied)
    rc = _cli(tmp_path, "--out", str(tmp_path / "res"))
    err = capsys.readouterr().err
    assert rc == 2 and "Permission denied" in err and str(tmp_path / "cache") in err
    assert len(err.strip().splitlines()) == 1


def test_cli_ctrl_c_is_one_line_and_130(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(vldlib.runs, "train_validated", Trainer(fail=KeyboardInterrupt()))
    rc = _cli(tmp_path, "--out", str(tmp_path / "res"))
    err = capsys.readouterr().err
    assert rc == 130 and err.strip() == "vldlib train: interrupted; run again to resume"


# ---------------------------------------------------------------------- thread count in the identity
def test_thread_count_is_part_of_a_runs_identity():
    cfg = smoke()
    assert TrainConfig.from_dict(cfg).threads == 1
    assert config_hash({**cfg, "threads": 1}) == config_hash(cfg)  # the default: older hashes stand
    assert config_hash({**cfg, "threads": 2}) != config_hash(cfg)
    legacy = {k: v for k, v in cfg.items() if k != "threads"}
    assert config_hash({**legacy, "num_threads": 2}) == config_hash({**cfg, "threads": 2})  # the old key
    assert config_hash({**legacy, "num_threads": None}) == config_hash(cfg)
    with pytest.raises(ValueError, match=r"threads must be an integer >= 1.*got 0"):
        TrainConfig.from_dict({**cfg, "threads": 0}).validate()


def test_record_trained_under_another_thread_count_is_not_served(tmp_path, monkeypatch, recwarn):
    """A record written before ``threads`` existed (same hash, trained with 2 threads) is not
    reused for a config that asks for 1: it is said on stderr and retrained."""
    store = RunStore(tmp_path / "res")
    cfg = smoke()
    monkeypatch.setattr(vldlib.runs, "train_validated", Trainer(acc=61.0))
    store.run(cfg)
    path = store.run_dir(cfg) / RECORD
    rec = json.loads(path.read_text())
    path.write_text(json.dumps({**rec, "torch_threads": 2}))
    path.with_name(f"{RECORD}.sha256").unlink()  # written before records had a sha256 sidecar, too
    assert store.get(cfg) is None
    assert any("trained with 2 torch threads" in str(w.message) for w in recwarn.list)
    assert store.to_frame().empty
    monkeypatch.setattr(vldlib.runs, "train_validated", Trainer(acc=70.0))
    assert store.run(cfg)["final"]["acc_id"] == 70.0


def test_run_grid_sizes_its_pool_by_threads(tmp_path, monkeypatch):
    """Default workers = cores // threads; the runs are trained with the config's threads."""
    import vldlib.study.executors as grid_mod  # the local executor owns the pool
    from vldlib.study.grid import make_grid, run_grid

    seen = {}

    class Pool:
        def __init__(self, n, **kw):
            seen["workers"] = n

        def __enter__(self):
            raise RuntimeError("stop here")

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(grid_mod, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(grid_mod, "warm_teacher_features", lambda *a, **k: None)
    monkeypatch.setattr(grid_mod.os, "cpu_count", lambda: 8)
    g = make_grid("smoke", seeds=[0, 1, 2, 3], overrides={"threads": 2})
    g.expand({"cls": {"weights": {"cls": 1.0}}})
    with pytest.raises(RuntimeError, match="stop here"):
        run_grid(RunStore(tmp_path / "res"), g, log=False)
    assert seen["workers"] == 4


@pytest.mark.slow
def test_same_config_same_numbers_whatever_the_callers_threads(tmp_path):
    """The trainer applies ``threads`` itself, so the caller's torch setting (a 1-thread pool
    worker, a 2-thread notebook, a Ray task) never changes the numbers; another ``threads`` does."""
    import torch

    from vldlib.train import train

    cfg = smoke(fewshot=None, epochs=2, last_n=1, threads=2)
    before = torch.get_num_threads()
    finals = []
    try:
        for caller in (1, 2):
            torch.set_num_threads(caller)
            rec = train(cfg, progress=False)
            assert rec["torch_threads"] == 2 and torch.get_num_threads() == caller
            finals.append([(h["loss"], h["acc_id"], h["acc_ood_zeroshot"]) for h in rec["history"]])
        other = train({**cfg, "threads": 1}, progress=False)
    finally:
        torch.set_num_threads(before)
    assert finals[0] == finals[1]
    assert [h["loss"] for h in other["history"]] != [f[0] for f in finals[0]]


# ---------------------------------------------------------------------- few-shot shots vs the data
def test_fewshot_shots_beyond_the_data_fail_at_validation():
    with pytest.raises(ValueError, match=r"fewshot.shots=24 needs more than 24 images.*holds 24 per class"):
        TrainConfig.from_dict(smoke(**{"fewshot": {"shots": 24}})).validate()
    from vldlib.study.grid import make_grid

    with pytest.raises(ValueError, match=r"fewshot.shots=30"):
        make_grid("smoke", overrides={"fewshot.shots": 30})
    TrainConfig.from_dict(smoke(**{"fewshot": {"shots": 23}})).validate()


def test_fewshot_shots_beyond_official_lists_fail_before_training(tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    import vldlib.train.trainer as trainer_mod

    sys.path.insert(0, str(Path(__file__).parent))
    from data_fixtures import write_tiny_official_root

    root = write_tiny_official_root(tmp_path / "data", n_seen=2, n_unseen=2, per_class=4, size=16)

    def no_features(*a, **k):
        raise AssertionError("teacher features were asked for: the check came too late")

    monkeypatch.setattr(trainer_mod, "teacher_image_features", no_features)
    cfg = {**smoke(), "dataset": "official", "dataset_options": {"root": str(root), "load_size": 16,
                                                                 "crop_size": 14},
           "fewshot": {"shots": 4}}
    with pytest.raises(ValueError, match=r"fewshot.shots=4 needs more than 4 X_ood images.*too few"):
        trainer_mod.train(cfg, cache_dir=tmp_path / "cache", progress=False)


# ---------------------------------------------------------------------- LLM server that never answers
def test_describe_server_that_never_answers_says_each_retry_and_stops(tmp_path, monkeypatch):
    import sys
    import time
    from pathlib import Path

    from vldlib.text.llm import LLMResponseError, generate_descriptions

    sys.path.insert(0, str(Path(__file__).parent))
    from llm_server import ChatServer, completion

    monkeypatch.setenv("OPENAI_API_KEY", "k")
    lines: list[str] = []
    with ChatServer(respond=lambda body: (time.sleep(1), completion(body, ["late."]))[1]) as srv:
        t0 = time.perf_counter()
        with pytest.raises(LLMResponseError, match=r"never answered for class 'Bag': 3 attempts of 0.3 s"):
            generate_descriptions(["Bag"], dataset="toy", model="m", base_url=srv.base_url,
                                  out=tmp_path / "c.json", timeout=0.3, max_retries=2, base_delay=0.0,
                                  progress=False, log=lines.append)
        assert time.perf_counter() - t0 < 10
    assert [line.split(" after")[0] for line in lines] == [
        "describe: class 'Bag': retrying (1/2)", "describe: class 'Bag': retrying (2/2)"]
    assert all("no answer within 0.3 s" in line for line in lines)


def test_describe_cli_never_answering_server_is_exit_2_with_retry_lines(tmp_path, monkeypatch, capsys):
    import sys
    import time
    from pathlib import Path

    from vldlib.cli.describe import main

    sys.path.insert(0, str(Path(__file__).parent))
    from llm_server import ChatServer, completion

    monkeypatch.setenv("OPENAI_API_KEY", "k")
    with ChatServer(respond=lambda body: (time.sleep(1), completion(body, ["late."]))[1]) as srv:
        code = main(["--dataset", "toy", "--classes", "Bag", "--model", "m", "--base-url", srv.base_url,
                     "--out", str(tmp_path / "c.json"), "--timeout", "0.3", "--max-retries", "1",
                     "--base-delay", "0", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 2 and "retrying (1/1)" in err[0]
    assert err[1].startswith("vldlib describe: error:") and "never answered" in err[1]


# ---------------------------------------------------------------------- declared notebook parameters
def test_every_notebook_parameter_is_declared_and_its_default_fits():
    from vldlib import book
    from vldlib.study.parameters import PARAMETERS, check_value

    for src in book.notebook_sources():
        for name, default in src.parameters.items():
            assert name in PARAMETERS, f"{src.name}: parameter {name!r} has no declared type"
            check_value(name, default, base=book.ROOT)
        text = src.path.read_text()
        first_code = text.split('tags=["parameters"]', 1)[1].split("\n# %%", 1)[1]
        assert "globals().update(check_parameters(globals()))" in first_code.split("\n# %%", 1)[0], src.name


@pytest.mark.parametrize("argv, says", [
    (["-p", "epochs", "abc"], "-p epochs 'abc': expected an integer >= 1 or None; for example -p epochs 10"),
    (["-p", "methods", "cls"], "-p methods 'cls': expected a list of strings"),
    (["-p", "overrides", "[1,2]"], "-p overrides [1, 2]: expected a dict; for example -p overrides"),
    (["-p", "seeds", "['a']"], "-p seeds ['a']: expected a list of integers >= 0 or None"),
    (["-p", "seeds", "[0, 0, 0, 1, 1, 1]"], "-p seeds [0, 0, 0, 1, 1, 1]: expected a list of integers >= 0 or "
                                            'None, each once (0, 1 repeated: each is one experimental unit'),
    (["-p", "split_seeds", "[2, 2]"], "-p split_seeds [2, 2]: expected a list of integers >= 0 or None, each once"),
    (["-p", "methods", "['cls', 'nope']"], "(each of 'cls'"),
    (["-p", "dataset_root", "/no/such/folder"], "-p dataset_root '/no/such/folder': expected an existing folder"),
    (["-p", "overrides", "{'nope': 1}"], "give no valid config: unknown config key 'nope'"),
    (["-p", "overrides", "{'fewshot.shots': 99}"], "fewshot.shots=99 needs more than 99 images"),
    (["-p", "epoch", "3"], "-p epoch: no notebook has a parameter 'epoch'"),
    (["--results-dir", "FILE"], "--results-dir FILE: expected a folder path (FILE is a file)"),
])
def test_book_rejects_every_bad_parameter_before_executing(tmp_path, capsys, argv, says):
    from vldlib import book

    (tmp_path / "FILE").write_text("x")
    argv = [str(tmp_path / "FILE") if a == "FILE" else a for a in argv]
    executed = tmp_path / "executed"
    code = book.main(["--profile", "smoke", "--no-build", "--executed-dir", str(executed),
                      "--results-dir", str(tmp_path / "res"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert says.replace("FILE", str(tmp_path / "FILE")) in err, err
    assert not executed.exists()  # nothing executed


def test_book_default_cache_that_is_a_file_is_one_line(tmp_path, capsys, monkeypatch):
    from vldlib import book

    (tmp_path / "cache").write_text("x")
    monkeypatch.setenv("VLD_CACHE", str(tmp_path / "cache"))
    code = book.main(["--profile", "smoke", "--no-build", "--executed-dir", str(tmp_path / "ex"),
                      "--results-dir", str(tmp_path / "res")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "$VLD_CACHE" in err and "is a file" in err, err
    assert not (tmp_path / "ex").exists()


def test_notebook_parameters_checked_in_the_notebook_too():
    from vldlib.study.parameters import ParameterError, check_parameters

    with pytest.raises(ParameterError, match=r"^parameter epochs = 'abc': expected an integer >= 1 or None; "
                                             r"for example epochs = 10$"):
        check_parameters({"profile": "smoke", "epochs": "abc", "overrides": {}})
    with pytest.raises(ValueError, match=r"give no valid config: unknown config key"):
        check_parameters({"profile": "smoke", "overrides": {"nope": 1}})
    assert check_parameters({"profile": "smoke", "seeds": (0, 1), "weights": {"cls": 1}, "overrides": {}}) == {
        "profile": "smoke", "seeds": [0, 1], "weights": {"cls": 1.0}, "overrides": {}}


def test_describe_cli_unwritable_cache_is_one_line(tmp_path, monkeypatch, capsys):
    import sys
    from pathlib import Path

    from vldlib.cli.describe import main

    sys.path.insert(0, str(Path(__file__).parent))
    from llm_server import ChatServer

    monkeypatch.setenv("OPENAI_API_KEY", "k")
    (tmp_path / "file").write_text("x")
    with ChatServer() as srv:
        code = main(["--dataset", "toy", "--classes", "Bag", "--model", "m", "--base-url", srv.base_url,
                     "--out", str(tmp_path / "file" / "c.json"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot write" in err[0] and "file" in err[0], err


def test_interrupt_in_a_grid_keeps_the_finished_runs(tmp_path, monkeypatch):
    """Ctrl-C while the second run of a grid trains: the first run's record stays and is reused;
    the rerun trains only the interrupted one."""
    import vldlib.study.executors as grid_mod  # the local executor owns the pool
    from vldlib.study.grid import make_grid, run_grid

    monkeypatch.setattr(grid_mod, "warm_teacher_features", lambda *a, **k: None)
    calls = []

    def trainer(config, run_hash=None, *, run_dir=None, cache_dir=None, progress=True):
        calls.append(TrainConfig.from_dict(config).seed)
        if len(calls) == 2:
            (run_dir / "checkpoint.pt").write_bytes(b"half")
            raise KeyboardInterrupt
        return _fake_record(TrainConfig.from_dict(config), 50.0 + len(calls))

    monkeypatch.setattr(vldlib.runs, "train_validated", trainer)
    store = RunStore(tmp_path / "res")
    g = make_grid("smoke", seeds=[0, 1], overrides={"device": "cpu"})
    g.expand({"cls": {"weights": {"cls": 1.0}}})
    with pytest.raises(KeyboardInterrupt):
        run_grid(store, g, workers=1, log=False)
    kept = store.get(g.configs[0][1])
    assert kept is not None and store.get(g.configs[1][1]) is None
    frame = run_grid(store, g, workers=1, log=False)
    assert calls == [0, 1, 1] and len(frame) == 2
    assert store.get(g.configs[0][1]) == kept


# ---------------------------------------------------------------------- NaN / inf images
@pytest.mark.parametrize("teacher_cls", ["OpenCLIPTeacher", "ConSEProxyTeacher"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_images_are_one_line_in_every_teacher(teacher_cls, bad):
    """``max() > 1.5`` is False for NaN: the teachers check finiteness first (all entry points)."""
    import torch

    import vldlib.models.teachers as teachers

    cls = getattr(teachers, teacher_cls)
    teacher = object.__new__(cls)  # the check runs before any model is touched
    teacher._ov = object()  # the ConSE OpenVINO entry point, which checks the images itself
    teacher.invert, teacher.channels_last = "auto", False
    images = torch.rand(4, 1, 8, 8)
    images[1, 0, 2, 2] = bad
    images[3, 0, 0, 0] = bad
    entries = [teacher.encode_image, teacher.preprocess] + ([teacher.logits] if hasattr(cls, "logits") else [])
    for entry in entries:
        with pytest.raises(ValueError, match=rf"{teacher_cls}.encode_image got 2 non-finite value"):
            entry(images)


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


# ---------------------------------------------------------------------- a rejected record is retrained afresh
@pytest.fixture(scope="module")
def smoke_cache(tmp_path_factory):
    """One teacher-feature cache for the tests that train the smoke profile for real."""
    return tmp_path_factory.mktemp("cache")


def test_rejected_record_is_retrained_from_scratch_not_resumed(tmp_path, smoke_cache):
    """A present record the store rejects (here: trained under another thread count) is retrained
    in a fresh folder: the finished run's last checkpoint is not resumed (which would write the
    old numbers back after a fraction of a second of training)."""
    store = RunStore(tmp_path / "res", cache_dir=smoke_cache)
    cfg = smoke()
    first = store.run(cfg, progress=False)
    run_dir = store.run_dir(cfg)
    assert first["resumed_from"] is None and (run_dir / "checkpoint.pt").exists()
    path = run_dir / RECORD
    path.write_text(json.dumps({**first, "torch_threads": 2}))  # as trained before `threads` existed
    path.with_name(f"{RECORD}.sha256").unlink()  # (and before records had a sha256 sidecar)
    with pytest.warns(RuntimeWarning, match=r"not resuming .*checkpoint\.pt"):
        again = store.run(cfg, progress=False)
    assert again["resumed_from"] is None
    assert again["torch_threads"] == 1 and again["run_dir"] == str(run_dir)
    assert [h["epoch"] for h in again["history"]] == [h["epoch"] for h in first["history"]]
    assert again["final"] == first["final"]  # trained again from scratch: same config, same numbers
    assert store.get(cfg)["created_utc"] == again["created_utc"]
    assert not list((tmp_path / "res").glob(".*.new")) and not list((tmp_path / "res").glob(".*.old"))


# ---------------------------------------------------------------------- the --force swap is atomic
class _RunDirTrainer(Trainer):
    """:class:`Trainer` whose record names its ``run_dir``, as the real trainer's does."""

    def __call__(self, config, run_hash=None, *, run_dir=None, cache_dir=None, progress=True):
        return {**super().__call__(config, run_hash, run_dir=run_dir), "run_dir": str(run_dir)}


@pytest.mark.parametrize("step", ["rename_old_away", "rename_new_in", "delete_old"])
def test_force_swap_interrupted_at_any_step_serves_a_consistent_run(tmp_path, monkeypatch, step):
    import shutil
    from types import SimpleNamespace

    store = RunStore(tmp_path / "res")
    cfg = smoke()
    monkeypatch.setattr(vldlib.runs, "train_validated", _RunDirTrainer(acc=61.0))
    store.run(cfg)
    run_dir, h = store.run_dir(cfg), config_hash(cfg)
    monkeypatch.setattr(vldlib.runs, "train_validated", _RunDirTrainer(acc=77.0))
    real_replace = vldlib.runs.replace_file
    calls = []

    def replace(src, dst):
        calls.append(src)
        if (step, len(calls)) in (("rename_old_away", 1), ("rename_new_in", 2)):
            raise KeyboardInterrupt
        real_replace(src, dst)

    def rmtree(path, *a, **k):
        if str(path).endswith(".old"):
            raise KeyboardInterrupt
        shutil.rmtree(path, *a, **k)

    monkeypatch.setattr(vldlib.runs, "replace_file", replace)
    if step == "delete_old":
        monkeypatch.setattr(vldlib.runs, "shutil", SimpleNamespace(rmtree=rmtree))
    with pytest.raises(KeyboardInterrupt):
        store.run(cfg, force=True)
    monkeypatch.setattr(vldlib.runs, "replace_file", real_replace)
    monkeypatch.setattr(vldlib.runs, "shutil", shutil)
    expected = 61.0 if step == "rename_old_away" else 77.0
    listed = RunStore(tmp_path / "res").records()  # the next process may list the store first
    assert [r["final"]["acc_id"] for r in listed] == [expected] and not (tmp_path / "res" / f".{h}.old").exists()
    rec = RunStore(tmp_path / "res").get(cfg)  # a fresh store, as the next process
    acc = rec["final"]["acc_id"]
    assert acc == expected
    assert (run_dir / "student.pt").read_bytes() == b"weights %r" % acc  # weights match the record
    assert rec["run_dir"] == str(run_dir)  # never the side folder
    assert not (tmp_path / "res" / f".{h}.old").exists()
    assert store.run(cfg)["final"]["acc_id"] == acc and len(store.to_frame()) == 1
    store.run(cfg, force=True)  # and a later --force completes normally
    assert store.get(cfg)["final"]["acc_id"] == 77.0
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == [f".{h}.lock", h]


# ---------------------------------------------------------------------- the book driver: no tracebacks
def _tiny_book(folder):
    from vldlib import book

    folder.mkdir(parents=True, exist_ok=True)
    for name in (*book.BOOK_ORDER, book.SUMMARY):
        (folder / f"{name}.py").write_text('# %% tags=["parameters"]\nprofile = "offline"\n'
                                           'results_dir = "results"\n\n# %%\nprint(profile)\n')
    return ["--notebooks-dir", str(folder), "--summary", str(folder / "summary.py")]


def test_book_failed_pretrain_run_is_one_line_exit_2(tmp_path, capsys):
    """A run of the up-front pool that fails (here: an official root without its files) is one
    line naming the run and the fix, exit 2, no traceback, no notebook executed."""
    from vldlib import book

    (tmp_path / "empty").mkdir()
    overrides = repr({"dataset": "official", "dataset_options": {"root": str(tmp_path / "empty")}})
    code = book.main(["--profile", "smoke", "--only", "main_results", "-p", "overrides", overrides, "--no-build",
                      "--executed-dir", str(tmp_path / "ex"), "--results-dir", str(tmp_path / "res")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("vldlib.book")]
    assert code == 2 and len(err) == 1, err
    assert "run(s) failed before any notebook executed, the first main_results" in err[0]
    assert "has no label2text.txt" in err[0] and "run the book again" in err[0]
    assert not (tmp_path / "ex" / "main_results.ipynb").exists()


def test_book_config_error_and_grid_error_from_pretrain_are_one_line(tmp_path, capsys, monkeypatch):
    from vldlib import book
    from vldlib.study.executors import GridRunError, RunFailure

    argv = ["--profile", "smoke", "--only", "main_results", "--no-build", "--executed-dir", str(tmp_path / "ex"),
            "--results-dir", str(tmp_path / "res")]

    def bad_config(*a, **k):
        raise ValueError("fewshot.shots=30 needs more than 30 images\nof each unseen class")

    monkeypatch.setattr(book, "open_chapter", bad_config)
    assert book.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fewshot.shots=30" in err[0] and "fix the setting" in err[0], err

    def failing_grid(*a, **k):
        raise GridRunError([RunFailure("main_results cls 0", "abc123", "ValueError: bad\nsecond line")], 3)

    monkeypatch.undo()
    monkeypatch.setattr(book, "run_grid", failing_grid)
    assert book.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "main_results cls 0 (run abc123): ValueError: bad; second line" in err[0], err


@pytest.mark.parametrize("where", ["executed_is_a_file", "executed_under_a_file", "results_under_a_file"])
def test_book_folder_errors_are_one_line_exit_2(tmp_path, capsys, where):
    from vldlib import book

    (tmp_path / "file").write_text("x")
    executed, results = tmp_path / "ex", tmp_path / "res"
    if where == "executed_is_a_file":
        executed = tmp_path / "file"
    elif where == "executed_under_a_file":
        executed = tmp_path / "file" / "sub"
    else:
        results = tmp_path / "file" / "sub"
    code = book.main(["--profile", "smoke", "--only", "main_results", "--no-build", *_tiny_book(tmp_path / "nbs"),
                      "--executed-dir", str(executed), "--results-dir", str(results)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(tmp_path / "file") in err[0], err
    assert "folder" in err[0]


# ---------------------------------------------------------------------- the book driver: interrupts lose nothing
class _FakeExecute:
    """Stands in for ``book.execute_notebook``: writes the notebook's CSV table (where the driver
    points ``$VLD_DOWNLOADS``) and its executed notebook; raises ``fail`` for ``fail_on``."""

    def __init__(self, tag: str, fail_on: str | None = None, fail: BaseException | None = None) -> None:
        self.tag, self.fail_on, self.fail, self.executed = tag, fail_on, fail, []

    def __call__(self, src, params, executed_dir, **kw):
        import os
        from pathlib import Path

        self.executed.append(src.name)
        table = Path(os.environ["VLD_DOWNLOADS"]) / src.name / "table.csv"
        table.parent.mkdir(parents=True, exist_ok=True)
        table.write_text(f"{self.tag}\n")
        if src.name == self.fail_on:
            raise self.fail
        executed_dir.mkdir(parents=True, exist_ok=True)
        (executed_dir / f"{src.name}.ipynb").write_text(self.tag)
        return executed_dir / f"{src.name}.ipynb"


@pytest.mark.parametrize("fault", [KeyboardInterrupt(), "failed"])
def test_book_interrupt_keeps_old_tables_and_finished_notebooks(tmp_path, capsys, monkeypatch, fault):
    from vldlib import book

    executed = tmp_path / "ex"
    downloads = executed / book.EXTRA / book.DOWNLOADS
    argv = ["--profile", "smoke", "--only", "main_results", "feature_errors", "--no-build",
            *_tiny_book(tmp_path / "nbs"), "--executed-dir", str(executed), "--results-dir", str(tmp_path / "res")]
    monkeypatch.setattr(book, "execute_notebook", _FakeExecute("old"))
    assert book.main(argv) == 0
    assert (downloads / "feature_errors" / "table.csv").read_text() == "old\n"
    fail = KeyboardInterrupt() if isinstance(fault, KeyboardInterrupt) else book.BookError("cell 2 failed")
    fake = _FakeExecute("new", fail_on="main_results", fail=fail)  # after feature_errors (book order)
    monkeypatch.setattr(book, "execute_notebook", fake)
    assert book.main([*argv, "--rerun"]) == (130 if isinstance(fault, KeyboardInterrupt) else 2)
    assert fake.executed == ["feature_errors", "main_results"]
    # the finished notebook's new table is in place; the failed one's old table is kept, not deleted
    assert (downloads / "feature_errors" / "table.csv").read_text() == "new\n"
    assert (downloads / "main_results" / "table.csv").read_text() == "old\n"
    assert sorted(p.name for p in downloads.iterdir()) == ["feature_errors", "main_results"]
    assert not (executed / book.STAGED_DOWNLOADS).exists()


def test_book_fingerprints_are_written_after_each_notebook(tmp_path, capsys, monkeypatch):
    """Notebooks finished before an interrupt are kept by the next build, not executed again."""
    import json

    from vldlib import book

    executed = tmp_path / "ex"
    argv = ["--profile", "smoke", "--only", "main_results", "feature_errors", "--no-build",
            *_tiny_book(tmp_path / "nbs"), "--executed-dir", str(executed), "--results-dir", str(tmp_path / "res")]
    monkeypatch.setattr(book, "execute_notebook", _FakeExecute("a", fail_on="main_results", fail=KeyboardInterrupt()))
    assert book.main(argv) == 130
    assert list(json.loads((executed / book.FINGERPRINTS).read_text())) == ["feature_errors"]
    fake = _FakeExecute("b")
    monkeypatch.setattr(book, "execute_notebook", fake)
    assert book.main(argv) == 0
    assert fake.executed == ["main_results"]
    assert "feature_errors: unchanged since its last execution" in capsys.readouterr().out


# ---------------------------------------------------------------------- checkpoints and weights: content checks
def _flip_tensor_byte(path) -> None:
    """Flip one bit inside the largest run of tensor bytes (what torch.load accepts silently)."""
    data = bytearray(path.read_bytes())
    data[int(len(data) * 0.45)] ^= 0x10
    path.write_bytes(bytes(data))


def test_checkpoint_bit_flip_is_found_and_the_run_restarts(tmp_path):
    from types import SimpleNamespace

    import torch

    from vldlib.io import save_torch_checked
    from vldlib.train.trainer import CHECKPOINT, _Run

    path = tmp_path / CHECKPOINT
    state = {"hash": "h", "stage": "main", "epoch": 1, "student": {"w": torch.linspace(0, 1, 20000)}}
    save_torch_checked(state, path)
    assert (tmp_path / f"{CHECKPOINT}.sha256").is_file()
    run = SimpleNamespace(run_dir=tmp_path, device=torch.device("cpu"), hash="h")
    assert _Run._load_checkpoint(run)["epoch"] == 1
    _flip_tensor_byte(path)
    flipped = torch.load(path, weights_only=False)  # torch itself does not notice
    assert not torch.equal(flipped["student"]["w"], state["student"]["w"])
    with pytest.warns(RuntimeWarning, match=r"fails its content check.*restarts from scratch") as caught:
        assert _Run._load_checkpoint(run) is None
    assert str(path) in str(caught[0].message)


def test_checkpoint_save_interrupted_between_sidecar_and_file_stays_readable(tmp_path, monkeypatch):
    import torch

    import vldlib.io
    from vldlib.io import load_torch_checked, save_torch_checked

    path = tmp_path / "checkpoint.pt"
    save_torch_checked({"epoch": 1}, path)

    real = vldlib.io.write_bytes_atomic

    def interrupted(target, data):  # the sidecar is written, then Ctrl-C before the file is
        if target == path:
            raise KeyboardInterrupt
        return real(target, data)

    monkeypatch.setattr(vldlib.io, "write_bytes_atomic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_torch_checked({"epoch": 2}, path)
    monkeypatch.undo()
    assert len((tmp_path / "checkpoint.pt.sha256").read_text().split()) == 2  # new and old listed
    assert load_torch_checked(path, weights_only=False) == {"epoch": 1}  # the old one, accepted
    save_torch_checked({"epoch": 2}, path)
    assert load_torch_checked(path, weights_only=False) == {"epoch": 2}
    (tmp_path / "checkpoint.pt.sha256").unlink()  # written before content checks: read as it is
    assert load_torch_checked(path, weights_only=False) == {"epoch": 2}
    assert torch.load(path, weights_only=False) == {"epoch": 2}  # still a plain torch file


def test_damaged_student_weights_are_found_and_retrained(tmp_path, smoke_cache):
    """The record holds the sha256 of the weights it points to; a flipped byte in student.pt is
    a clear error for a direct reader and a retrain for a reader through the store."""
    from vldlib.train.trainer import retrieval_accuracy

    store = RunStore(tmp_path / "res", cache_dir=smoke_cache)
    cfg = smoke()
    first = store.run(cfg, progress=False)
    run_dir = store.run_dir(cfg)
    assert set(first["weights_sha256"]) == {"student.pt", "student_fewshot.pt"}
    assert config_hash(first["config"]) == first["hash"]  # the digests are no part of the identity
    assert store.verified_run_dir(cfg) == run_dir  # intact: nothing retrained
    assert store.get(cfg)["created_utc"] == first["created_utc"]
    _flip_tensor_byte(run_dir / "student.pt")
    with pytest.raises(ValueError, match=r"student\.pt does not match the sha256 .*retrain the run"):
        retrieval_accuracy(cfg, run_dir, cache_dir=smoke_cache)
    with pytest.warns(RuntimeWarning, match=r"student\.pt does not match the sha256 .*retraining"):
        assert store.verified_run_dir(cfg, progress=False) == run_dir
    again = store.get(cfg)
    assert again["final"] == first["final"] and again["weights_sha256"] == first["weights_sha256"]
    # a record written before the digests is accepted as it is
    path = run_dir / RECORD
    path.write_text(json.dumps({k: v for k, v in again.items() if k != "weights_sha256"}))
    path.with_name(f"{RECORD}.sha256").unlink()  # nor a sha256 sidecar of the record
    _flip_tensor_byte(run_dir / "student.pt")
    assert store.verified_run_dir(cfg) == run_dir and "weights_sha256" not in store.get(cfg)


def test_checkpoint_without_sidecar_or_after_two_interrupts_stays_readable(tmp_path, monkeypatch):
    """The sidecar lists the digest of the file actually in place (not the old sidecar's first line):
    an old checkpoint without a sidecar, and a checkpoint after two interrupted saves in a row, are
    both still accepted."""
    import torch

    import vldlib.io
    from vldlib.io import load_torch_checked, save_torch_checked

    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 1}, path)  # written before content checks: no sidecar
    real = vldlib.io.write_bytes_atomic

    def interrupted(target, data):
        if target == path:
            raise KeyboardInterrupt
        return real(target, data)

    monkeypatch.setattr(vldlib.io, "write_bytes_atomic", interrupted)
    for epoch in (2, 3):  # two saves interrupted between the sidecar and the file
        with pytest.raises(KeyboardInterrupt):
            save_torch_checked({"epoch": epoch}, path)
        assert load_torch_checked(path, weights_only=False) == {"epoch": 1}
    monkeypatch.undo()


def test_a_reader_during_another_processs_swap_still_finds_the_run(tmp_path, monkeypatch):
    """Between the swap's two renames the run folder is absent; get() and records() of another
    store then finish the swap (under the run's lock) instead of missing the run."""
    store = RunStore(tmp_path / "res")
    cfg = smoke()
    monkeypatch.setattr(vldlib.runs, "train_validated", _RunDirTrainer(acc=61.0))
    store.run(cfg)
    run_dir, h = store.run_dir(cfg), config_hash(cfg)
    new, old = run_dir.parent / f".{h}.new", run_dir.parent / f".{h}.old"
    reader = RunStore(tmp_path / "res")
    real_read = vldlib.runs._read_record
    swaps = []

    def mid_swap(path, **kw):  # the other process's first rename lands just before this read
        if len(swaps) < 1:
            import shutil
            shutil.copytree(run_dir, new)
            run_dir.rename(old)
            swaps.append(path)
        return real_read(path, **kw)

    monkeypatch.setattr(vldlib.runs, "_read_record", mid_swap)
    assert reader.get(cfg)["final"]["acc_id"] == 61.0
    assert run_dir.exists() and not old.exists() and not new.exists()  # the swap was finished
    swaps.clear()
    assert [r["hash"] for r in reader.records()] == [h]  # the same while listing
    assert run_dir.exists() and not old.exists()
    monkeypatch.undo()
    assert len(reader.to_frame()) == 1


def test_tables_of_an_interrupted_download_swap_are_put_back(tmp_path, monkeypatch):
    """publish_downloads renames a chapter's tables to .<name>.old, then moves the new ones in: an
    interrupt between the two leaves no tables; the next build puts the old ones back."""
    from vldlib import book

    downloads = tmp_path / "downloads"
    (downloads / "main_results").mkdir(parents=True)
    (downloads / "main_results" / "table.csv").write_text("old\n")
    staged = tmp_path / "staged" / "main_results"
    staged.mkdir(parents=True)
    (staged / "table.csv").write_text("new\n")
    real = book.replace_file

    def interrupted(src, dst):
        if Path(src) == staged:
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(book, "replace_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        book.publish_downloads(staged, downloads / "main_results")
    monkeypatch.undo()
    assert not (downloads / "main_results").exists() and (downloads / ".main_results.old").exists()
    assert book.restore_downloads(downloads) == ["main_results"]
    assert (downloads / "main_results" / "table.csv").read_text() == "old\n"
    assert sorted(p.name for p in downloads.iterdir()) == ["main_results"]
    book.publish_downloads(staged, downloads / "main_results")  # a later swap completes
    assert (downloads / "main_results" / "table.csv").read_text() == "new\n"
