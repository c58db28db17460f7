"""The distillation trainer end to end on CPU: a tiny official-format data root, the tiny
open_clip checkpoint as teacher, a tiny ``small`` student; cache reuse, determinism, resume,
the 5-shot protocol, config validation and the command line."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vldlib.train.fewshot import fewshot_batches, fewshot_labels, select_support
from vldlib.runs import RunStore, config_hash
import vldlib.core.checks
import vldlib.train.trainer
from vldlib.cli.train import main
from vldlib.train import Interrupted, TrainConfig, train
from vldlib.train.config import record_hash

sys.path.insert(0, str(Path(__file__).parent))
from model_fixtures import tiny_official_world, tiny_openclip_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PER_CLASS = 10  # seen classes: 7 X_train + 3 X_id each; unseen: 10 X_ood each


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread avoids parallel overhead (and thrashing on a shared machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    return tiny_official_world(tmp_path_factory.mktemp("train"), per_class=PER_CLASS)


def tiny_config(world: dict, **overrides) -> dict:
    cfg = TrainConfig(
        dataset="official",
        dataset_options={"root": str(world["root"]), "load_size": 32, "crop_size": 28},
        teacher="openclip",
        teacher_options={"model": tiny_openclip_model(world["ckpt"]), "pretrained": str(world["ckpt"]),
                         "device": "cpu"},
        student="small", student_options={"width": 4},
        weights={"cls": 1.0, "mse": 1.0, "im_cst": 1.0, "vlprox": 1.0},
        epochs=4, last_n=2, batch_size=8, eval_batch_size=16, device="cpu",
        fewshot={"shots": 5, "epochs": 2}, analysis=True,
    ).to_dict()
    cfg.update(overrides)
    return cfg


def numbers(record: dict) -> dict:
    """Everything in a record that must be reproducible (no timings, paths or dates)."""
    strip = lambda h: [{k: v for k, v in e.items() if k != "train_s"} for e in h]  # noqa: E731
    return {"final": record["final"], "history": strip(record["history"]),
            "fewshot": strip(record["fewshot"]["history"]) if record["fewshot"] else None,
            "analysis": record["analysis"]}


@pytest.fixture(scope="module")
def reference(world) -> dict:
    """One uninterrupted run with a cold cache (the teacher is built and encodes everything)."""
    run_dir = world["base"] / "ref"
    rec = train(tiny_config(world), run_dir=run_dir, cache_dir=world["cache"], progress=False)
    return {"record": rec, "run_dir": run_dir}


def test_end_to_end_record(reference, world):
    rec = reference["record"]
    json.loads(json.dumps(rec, allow_nan=False))  # strictly JSON-serialisable
    assert rec["hash"] == config_hash(tiny_config(world))
    assert rec["config"] == tiny_config(world)
    # the record names what the run read by content: here the data (no descriptions, no captions)
    assert set(rec["inputs"]) == {"data"} and len(rec["inputs"]["data"]["sha256"]) == 64
    assert rec["inputs"]["data"]["source"] == str(Path(world["root"]).resolve())
    assert record_hash(rec) == rec["hash"]
    assert rec["dataset"]["X_train"] == 21 and rec["dataset"]["X_id"] == 9 and rec["dataset"]["X_ood"] == 30
    assert rec["teacher_forward_passes"] > 0 and rec["teacher"]["loaded"]
    assert rec["teacher"]["embed_dim"] == 32
    hist = rec["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    for h in hist:
        assert {"loss", "loss_cls", "loss_mse", "loss_im_cst", "loss_vlprox", "acc_id", "acc_ood_zeroshot"} <= set(h)
        assert 0.0 <= h["acc_id"] <= 100.0 and 0.0 <= h["acc_ood_zeroshot"] <= 100.0
    assert hist[-1]["loss"] < hist[0]["loss"], [h["loss"] for h in hist]
    # SGD schedule: x0.1 at round(E/3) = 1 and round(2E/3) = 3 outer epochs
    assert [h["lr"] for h in hist] == pytest.approx([0.05, 0.005, 0.005, 0.0005])
    fin = rec["final"]
    assert fin["acc_id"] == pytest.approx((hist[-1]["acc_id"] + hist[-2]["acc_id"]) / 2)
    assert fin["acc_ood_zeroshot"] == pytest.approx((hist[-1]["acc_ood_zeroshot"] + hist[-2]["acc_ood_zeroshot"]) / 2)
    assert 0.0 <= fin["acc_ood_5shot"] <= 100.0 and 0.0 <= fin["acc_id_5shot"] <= 100.0
    # per unseen class: the mean of the per-class accuracies is the reported accuracy, per epoch and
    # over the last epochs; the teacher's own accuracy on the same images and texts is recorded
    pc = rec["per_class"]
    assert pc["classes"] == rec["dataset"]["unseen_classes"] and len(pc["acc_ood_zeroshot"]) == 3
    for h in hist:
        assert sum(h["per_class_acc_ood_zeroshot"]) / 3 == pytest.approx(h["acc_ood_zeroshot"])
    assert pc["acc_ood_zeroshot"] == pytest.approx(
        [(a + b) / 2 for a, b in zip(hist[-1]["per_class_acc_ood_zeroshot"], hist[-2]["per_class_acc_ood_zeroshot"])])
    assert sum(pc["acc_ood_5shot"]) / 3 == pytest.approx(fin["acc_ood_5shot"])
    assert sum(pc["teacher_acc_ood_zeroshot"]) / 3 == pytest.approx(fin["teacher_acc_ood_zeroshot"])
    assert 0.0 <= fin["teacher_acc_id"] <= 100.0
    assert set(rec["timings"]) >= {"teacher_features_s", "train_s", "eval_s", "total_s"}
    assert set(rec["versions"]) >= {"torch", "torchvision", "open_clip", "vldlib"}
    assert rec["device"] == "cpu"
    for split in ("X_train", "X_id", "X_ood"):
        a = rec["analysis"][split]
        assert 0 <= a["mse"] <= 4 and 0 <= a["angle"] <= 180 and 0 <= a["m_rel"] <= 1
        # k must be below the split size (X_id has 9 images) and at most the number of classes (3)
        assert set(a["m_neigh"]) == ({"3", "5"} if split == "X_id" else {"3", "5", "10"})
        assert set(a["m_vlalign"]) == {"2", "3"}
        assert math.isclose(a["angle"], math.degrees(math.acos(1 - a["mse"] / 2)), rel_tol=1e-6)
    for name in ("checkpoint.pt", "student.pt", "student_fewshot.pt"):
        assert (reference["run_dir"] / name).is_file()


def test_fewshot_support_in_training(reference, world):
    """Support = first 5 files per unseen class in sorted order, removed from the evaluation set."""
    fs = reference["record"]["fewshot"]
    val = world["root"] / "val"
    expected = []
    for folder in sorted(p.name for p in val.iterdir()):
        expected += sorted(f"val/{folder}/{f.name}" for f in (val / folder).iterdir())[:5]
    assert sorted(fs["support_keys"]) == sorted(expected)
    assert fs["support_size"] == 15 and fs["eval_size"] == 30 - 15
    lrs = [h["lr"] for h in fs["history"]]
    assert max(lrs) <= 0.003 + 1e-12 and len(lrs) == 2  # fresh OneCycle, peak 0.003


def test_cache_reuse_and_determinism(reference, world):
    """Second run of the same config: zero teacher forward passes, teacher never built, and
    identical numbers (same config -> same numbers on CPU)."""
    rec = train(tiny_config(world), cache_dir=world["cache"], progress=False)
    assert rec["teacher_forward_passes"] == 0
    assert rec["teacher"]["loaded"] is False
    assert numbers(rec) == numbers(reference["record"])


def test_other_seed_differs(reference, world):
    rec = train(tiny_config(world, seed=1, fewshot=None, analysis=False, epochs=2, threads=2),
                cache_dir=world["cache"], progress=False)
    assert rec["torch_threads"] == 2 and torch.get_num_threads() == 1  # set for the run, restored
    ref = reference["record"]["history"][0]
    assert rec["history"][0]["loss"] != ref["loss"]
    assert rec["fewshot"] is None and "acc_ood_5shot" not in rec["final"]


def test_resume_equals_uninterrupted(reference, world):
    """Interrupt in the main stage (epoch 2 of 4) and again in the few-shot stage (epoch 1 of
    2); each resume continues from the checkpoint; the final numbers and weights are identical."""
    run_dir = world["base"] / "resumed"
    cfg = tiny_config(world)

    def stop_at(stage, epoch):
        def hook(info):
            if info["stage"] == stage and info["epoch"] == epoch:
                raise Interrupted(f"stop after {stage} epoch {epoch}")
        return hook

    with pytest.raises(Interrupted):
        train(cfg, run_dir=run_dir, cache_dir=world["cache"], progress=False, on_epoch_end=stop_at("main", 2))
    state = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert (state["stage"], state["epoch"]) == ("main", 2)
    with pytest.raises(Interrupted):
        train(cfg, run_dir=run_dir, cache_dir=world["cache"], progress=False, on_epoch_end=stop_at("fewshot", 1))
    rec = train(cfg, run_dir=run_dir, cache_dir=world["cache"], progress=False)
    assert rec["resumed_from"] == {"stage": "fewshot", "epoch": 1}
    assert numbers(rec) == numbers(reference["record"])
    for name in ("student.pt", "student_fewshot.pt"):
        a = torch.load(run_dir / name, weights_only=True)
        b = torch.load(reference["run_dir"] / name, weights_only=True)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_of_another_config_is_refused(reference, world):
    with pytest.raises(ValueError, match="another config"):
        train(tiny_config(world, seed=5), run_dir=reference["run_dir"], cache_dir=world["cache"], progress=False)


def test_run_store_integration(world, reference):
    """The store trains into root/<hash>/, resumes an interrupted run there and reuses the record."""
    store = RunStore(world["base"] / "results", cache_dir=world["cache"])
    cfg = tiny_config(world, epochs=2, last_n=1, fewshot={"shots": 5, "epochs": 1})
    rec = store.run(cfg, progress=False)
    run_dir = store.run_dir(cfg)
    assert (run_dir / "record.json").is_file() and (run_dir / "checkpoint.pt").is_file()
    assert rec["run_dir"] == str(run_dir) and rec["hash"] == run_dir.name
    assert store.run(cfg) == json.loads((run_dir / "record.json").read_text())
    df = store.to_frame()
    assert len(df) == 1 and df.loc[0, "acc_ood_5shot"] == pytest.approx(rec["final"]["acc_ood_5shot"])
    assert df.loc[0, "analysis.X_ood.m_neigh.5"] == pytest.approx(rec["analysis"]["X_ood"]["m_neigh"]["5"])


def test_paper_profile_on_tiny_stand_ins(world, reference):  # reference: warm feature cache
    """The paper profile as a user runs it (ResNet18, SGD 0.05, repeat_epochs='auto' -> 5 on a
    small dataset, the official once-per-batch augmentation, 5-shot at peak 0.003), shrunk only
    in image size, epochs and batch: the teacher is the tiny open_clip checkpoint."""
    from vldlib.train.profiles import profile_config

    cfg = profile_config(
        "paper", dataset_options={"root": str(world["root"]), "load_size": 32, "crop_size": 28},
        teacher_options={"model": tiny_openclip_model(world["ckpt"]), "pretrained": str(world["ckpt"]),
                         "device": "cpu"},
        epochs=2, last_n=1, batch_size=16, eval_batch_size=16, num_workers=0,
        **{"fewshot.epochs": 1})
    assert cfg["student"] == "resnet18" and cfg["per_image_aug"] is False
    rec = train(cfg, cache_dir=world["cache"], progress=False)
    assert rec["resolved"]["repeat_epochs"] == 5 and rec["resolved"]["fewshot"]["lr"] == 0.003
    assert rec["device"] == "cpu" and rec["teacher_forward_passes"] == 0
    assert rec["student"]["parameters"] > 10_000_000  # a real ResNet18
    assert rec["final"]["acc_ood_5shot"] is not None and rec["fewshot"]["support_size"] == 15


# ---------------------------------------------------------------------- few-shot protocol (pure)
def test_select_support_first_sorted_and_removed():
    keys = ["val/b/3.jpg", "val/a/9.jpg", "val/b/1.jpg", "val/a/2.jpg", "val/a/10.jpg",
            "val/b/2.jpg", "val/a/1.jpg"]
    labels = [1, 0, 1, 0, 0, 1, 0]
    support, evaluation = select_support(keys, labels, num_classes=2, shots=2)
    assert [keys[i] for i in support] == ["val/a/1.jpg", "val/a/10.jpg", "val/b/1.jpg", "val/b/2.jpg"]
    assert sorted(support + evaluation) == list(range(len(keys)))
    assert not set(support) & set(evaluation)
    assert evaluation == [0, 1, 3]  # original order kept
    with pytest.raises(ValueError, match="fewer than shots"):
        select_support(keys, labels, num_classes=2, shots=4)


@pytest.mark.parametrize("n_train,n_support,batch", [(100, 40, 16), (100, 5, 16), (37, 8, 16), (7, 25, 32)])
def test_fewshot_batch_composition(n_train, n_support, batch):
    g = torch.Generator().manual_seed(0)
    batches = list(fewshot_batches(n_train, n_support, batch, g))
    seen_train = torch.cat([tr for tr, _ in batches])
    assert sorted(seen_train.tolist()) == list(range(n_train))  # one pass over X_train
    half = batch // 2
    for tr, sup in batches:
        assert len(tr) + len(sup) <= batch
        assert len(sup) <= len(tr)  # at most half of the batch from the support set
        assert len(set(sup.tolist())) == len(sup)  # drawn without replacement
        assert all(0 <= i < n_support for i in sup.tolist())
        if len(tr) == batch - min(n_support, half):  # full batches
            assert len(sup) == (half if n_support > half else n_support)
            assert len(tr) + len(sup) == batch
    if n_support <= half and n_train >= batch:
        assert sorted(batches[0][1].tolist()) == list(range(n_support))  # all support in a batch
    y = fewshot_labels(torch.tensor([0, 2]), torch.tensor([0, 1]), num_seen=3)
    assert y.tolist() == [0, 2, 3, 4]


# ---------------------------------------------------------------------- validation and CLI
def test_bf16_precision_trains_and_is_in_the_hash(reference, world):
    """precision='bf16' autocasts the student on the CPU: it trains (finite, decreasing loss),
    its numbers differ from fp32, and the field is part of the hash; None is left out of it."""
    base = tiny_config(world, fewshot=None, analysis=False, epochs=3, last_n=1)
    rec = train({**base, "precision": "bf16"}, cache_dir=world["cache"], progress=False)
    fp32 = train({**base, "precision": "fp32"}, cache_dir=world["cache"], progress=False)
    losses = [h["loss"] for h in rec["history"]]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert rec["precision"] == "bf16" and fp32["precision"] == "fp32"
    assert losses != [h["loss"] for h in fp32["history"]]
    hashes = {config_hash({**base, "precision": p}) for p in (None, "fp32", "bf16")}
    assert len(hashes) == 3 and config_hash({**base, "precision": None}) == config_hash(base)
    assert "precision" not in TrainConfig.from_dict(base).canonical()
    # unset, the old amp rule holds: fp32 on the CPU, so the reference run's numbers are unchanged
    assert reference["record"]["precision"] == "fp32"


@pytest.mark.parametrize("override,match", [
    ({"weights": {"clss": 1.0}}, "unknown loss name"),
    ({"weights": {"cls": 0.0}}, "all loss weights are 0"),
    ({"weights": {"cls": -1.0}}, ">= 0"),
    ({"teacher": "clip"}, "unknown teacher"),
    ({"student": "resnet19"}, "unknown student"),
    ({"dataset": "mnist"}, "unknown dataset"),
    ({"k": 0}, "k must be"),
    ({"last_n": 9}, "last_n"),
    ({"descriptions": "long"}, "unknown descriptions"),
    ({"optimizer": "adam"}, "unknown optimizer"),
    ({"fewshot": {"shots": 5, "epoch": 3}}, "unknown fewshot option"),
    ({"batch_size": 1}, "batch_size"),
    ({"device": "gpu"}, "device"),
    ({"dataset_options": {}}, "needs dataset_options"),
    ({"typo_key": 1}, "unknown config key"),
    ({"precision": "fp16"}, "unknown precision"),
])
def test_bad_config_fails_before_loading_data(world, monkeypatch, override, match):
    import vldlib.data

    def boom(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("data was loaded before the config was validated")

    monkeypatch.setattr(vldlib.train.trainer, "load_dataset", boom)
    with pytest.raises(ValueError, match=match):
        train(tiny_config(world, **override), cache_dir=world["cache"], progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_requested_without_cuda(world, monkeypatch):
    import vldlib.data

    monkeypatch.setattr(vldlib.train.trainer, "load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    with pytest.raises(ValueError, match="CUDA is not available"):
        train(tiny_config(world, device="cuda"), cache_dir=world["cache"], progress=False)


def test_missing_data_root_is_file_not_found(world):
    cfg = tiny_config(world, dataset_options={"root": str(world["base"] / "nope")})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(cfg, cache_dir=world["cache"], progress=False)


def test_cli_trains_into_the_store(world, reference, capsys):
    out = world["base"] / "cli-results"
    teacher = json.dumps({"model": tiny_openclip_model(world["ckpt"]), "pretrained": str(world["ckpt"]),
                          "device": "cpu"})
    argv = ["--profile", "smoke", "--dataset", "official", "--data-root", str(world["root"]),
            "--teacher", "openclip", "--set", f"teacher_options={teacher}",
            "--set", "dataset_options.load_size=32", "--set", "dataset_options.crop_size=28", "--set", "student_options={\"width\": 4}",
            "--weights", "cls=1,im_cst=1", "--epochs", "2", "--batch-size", "8", "--set", "last_n=1",
            "--set", "template=a photo of {name}", "--no-fewshot", "--out", str(out), "--cache-dir", str(world["cache"]), "--quiet",
            "--threads", "1"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "X_id acc" in text and "X_ood zero-shot" in text
    records = list(out.glob("*/record.json"))
    assert len(records) == 1
    rec = json.loads(records[0].read_text())
    assert rec["config"]["weights"] == {"cls": 1.0, "im_cst": 1.0}
    assert rec["teacher_forward_passes"] == 0  # features cached by the earlier tests
    assert main(argv) == 0  # second call reuses the record
    assert "run " + rec["hash"] in capsys.readouterr().out


def test_cli_errors_and_dispatcher(capsys):
    assert main(["--weights", "cls=1,foo=2", "--print-config"]) == 2
    assert "unknown loss name" in capsys.readouterr().err
    assert main(["--profile", "laptop"]) == 2
    assert "valid profiles" in capsys.readouterr().err
    res = subprocess.run([sys.executable, "-m", "vldlib", "train", "--profile", "smoke", "--seed", "3",
                          "--print-config"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["config"]["seed"] == 3 and out["hash"] == config_hash(out["config"])


def test_truncated_checkpoint_restarts_to_the_same_numbers(reference, world):
    """Issue 10: a truncated checkpoint.pt is named in a warning; the run restarts from scratch
    and reaches the numbers of an uninterrupted run (no traceback)."""
    run_dir = world["base"] / "truncated"
    cfg = tiny_config(world)

    def stop(info):
        if info["stage"] == "main" and info["epoch"] == 2:
            raise Interrupted("stop")

    with pytest.raises(Interrupted):
        train(cfg, run_dir=run_dir, cache_dir=world["cache"], progress=False, on_epoch_end=stop)
    ckpt = run_dir / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match="restarts from scratch"):
        rec = train(cfg, run_dir=run_dir, cache_dir=world["cache"], progress=False)
    assert rec.get("resumed_from") is None
    assert numbers(rec) == numbers(reference["record"])


# ---------------------------------------------------------------------- divergence, bad features, full disk
def _quick(world, **overrides) -> dict:
    return tiny_config(world, **{"epochs": 2, "last_n": 1, "fewshot": None, "analysis": False, **overrides})


@pytest.mark.parametrize("override, said", [
    ({"lr": 1e6}, r"the student's (weights|outputs) became non-finite.*lower lr \(now 1e6\) or raise tau \(now 0.07\)"),
    ({"tau": 1e-39}, r"\(loss (nan|inf), first non-finite terms? [a-z_, ]*im_cst.*lower lr \(now 0.05\) or raise tau \(now 1e-39\)"),
])
def test_diverging_run_is_said_to_diverge_not_blamed_on_the_cache(world, override, said):
    """Bug: lr=1e6 or a tiny tau ended in "check the model outputs / cached features", sending the
    user to delete a good cache. Finite features + non-finite loss or weights: one line, the
    epoch, the terms, the settings to change."""
    cfg = _quick(world, **override)
    with pytest.raises(vldlib.train.trainer.Diverged) as caught:
        train(cfg, cache_dir=world["cache"], progress=False)
    msg = str(caught.value)
    assert msg.startswith(f"run {config_hash(cfg)} diverged at epoch 1 (") and "\n" not in msg
    assert re.search(said, msg), msg
    assert "cached features" not in msg and "the teacher features are finite" in msg


def test_outputs_too_large_to_normalise_are_a_divergence_not_bad_features():
    """Bug: a student whose evaluation features were finite but overflowed their row norm (tiny data,
    batch-norm statistics of a 2-image batch) failed inside the metrics with "image_feats contains NaN
    ... check the features"; its outputs are the student's, so the run is said to diverge."""
    from vldlib.train.health import check_outputs, check_run

    huge = torch.full((2, 4), 3e19)
    with pytest.raises(vldlib.core.checks.NonFiniteInput) as caught:
        check_outputs(huge, "X_id")
    assert caught.value.name == "student" and "X_id" in str(caught.value)
    assert check_outputs(torch.full((2, 4), 1e18), "X_id") is not None  # large, normalisable: fine
    with pytest.raises(vldlib.train.trainer.Diverged, match="diverged at epoch 1"):
        check_run("abc", "main", 1, {"loss": 1.0}, [torch.nn.Linear(2, 2)], lr=("lr", 0.05), tau=0.07,
                  inputs={"teacher image features": (torch.ones(2, 2), lambda: "cache")}, cause=caught.value)


def test_non_finite_features_are_blamed_on_their_cache_file(world, monkeypatch):
    real = vldlib.train.trainer.teacher_image_features

    def damaged(teacher, split, **kw):
        out = real(teacher, split, **kw)
        if split.name == "train":
            out[3, 0] = float("nan")
        return out

    monkeypatch.setattr(vldlib.train.trainer, "teacher_image_features", damaged)
    with pytest.raises(vldlib.train.trainer.NonFiniteFeatures) as caught:
        train(_quick(world), cache_dir=world["cache"], progress=False)
    msg = str(caught.value)
    (index,) = re.findall(r"\((/[^)]*split-[0-9a-f]+\.pt)\)", msg)
    assert Path(index).is_file() and str(world["cache"]) in index
    assert "teacher image features" in msg and "/train" in msg and "diverged" not in msg


def test_cli_diverging_run_is_one_line_exit_2(world, capsys):
    teacher = json.dumps({"model": tiny_openclip_model(world["ckpt"]), "pretrained": str(world["ckpt"]),
                          "device": "cpu"})
    argv = ["--profile", "smoke", "--dataset", "official", "--data-root", str(world["root"]),
            "--teacher", "openclip", "--set", f"teacher_options={teacher}", "--set", "dataset_options.load_size=32",
            "--set", "dataset_options.crop_size=28", "--set", "student_options={\"width\": 4}", "--epochs", "2",
            "--batch-size", "8", "--set", "last_n=1", "--no-fewshot", "--set", "lr=1e6",
            "--out", str(world["base"] / "cli-diverged"), "--cache-dir", str(world["cache"]), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.match(r"vldlib train: run [0-9a-f]{16} diverged at epoch 1 .*lower lr \(now 1e6\)", err)


def _enospc():
    import errno

    return OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["torch.save", "file write"])
def test_full_disk_at_a_checkpoint_is_one_line_and_resumable(world, monkeypatch, where):
    """A full disk while saving a checkpoint: one line naming the run folder, the bytes needed,
    the space free and the fix; the last checkpoint stays and the run resumes from it."""
    import vldlib.io
    from vldlib.diskspace import DiskFullError

    run_dir = world["base"] / f"full-disk-{where.replace(' ', '-')}"
    cfg = _quick(world, epochs=3)

    def fill_the_disk(info):
        if info["epoch"] == 1:
            if where == "torch.save":
                def save(*a, **k):
                    raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed") from _enospc()
                monkeypatch.setattr(torch, "save", save)
            else:
                monkeypatch.setattr(vldlib.io, "write_bytes_atomic", lambda *a, **k: (_ for _ in ()).throw(_enospc()))

    with pytest.raises(DiskFullError) as caught:
        train(cfg, run_dir=run_dir, cache_dir=world["cache"], progress=False, on_epoch_end=fill_the_disk)
    msg = str(caught.value)
    assert msg.startswith(f"no space left on the disk of {run_dir} while writing the checkpoint of main epoch 2 (")
    assert re.search(r"\(\d+\.\d [KMG]iB needed, [\d.]+ [KMGT]?i?B free\)", msg) and "resumes from its last checkpoint" in msg
    assert "\n" not in msg and caught.value.__suppress_context__
    monkeypatch.undo()
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    rec = train(cfg, run_dir=run_dir, cache_dir=world["cache"], progress=False)
    assert rec["resumed_from"] == {"stage": "main", "epoch": 1} and len(rec["history"]) == 3


def test_cli_full_disk_under_the_feature_cache_is_one_line(world, capsys, monkeypatch):
    teacher = json.dumps({"model": tiny_openclip_model(world["ckpt"]), "pretrained": str(world["ckpt"]),
                          "device": "cpu"})
    cache = world["base"] / "full-cache"

    def save(*a, **k):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed") from _enospc()

    monkeypatch.setattr(torch, "save", save)
    argv = ["--profile", "smoke", "--dataset", "official", "--data-root", str(world["root"]),
            "--teacher", "openclip", "--set", f"teacher_options={teacher}", "--set", "dataset_options.load_size=32",
            "--set", "dataset_options.crop_size=28", "--no-fewshot", "--out", str(world["base"] / "cli-full"),
            "--cache-dir", str(cache), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"vldlib train: no space left on the disk of {cache / 'teacher-features'}/")
    assert " needed, " in err and " free)" in err and "point the cache elsewhere" in err
    assert not list(cache.rglob("*.tmp")) and not list(cache.rglob("*.pt"))


def test_full_disk_while_writing_the_image_store_is_one_line(world, monkeypatch):
    import vldlib.io
    from vldlib.data import load_dataset
    from vldlib.data.imagestore import build_image_store, store_nbytes
    from vldlib.diskspace import DiskFullError, human_bytes

    split = load_dataset("official", root=str(world["root"]), load_size=32, crop_size=28).train
    cache = world["base"] / "full-image-store"

    def fsync(fd):
        raise _enospc()

    monkeypatch.setattr(vldlib.io.os, "fsync", fsync)
    with pytest.raises(DiskFullError) as caught:
        build_image_store(split, cache)
    msg = str(caught.value)
    assert msg.startswith(f"no space left on the disk of {cache / 'images'} while writing the decoded images of split")
    assert f"({human_bytes(store_nbytes(split))} needed, " in msg and "\n" not in msg
    assert list((cache / "images").iterdir()) == []  # nothing half-written


# ---------------------------------------------------------------------- class texts of a config
class _Encoder:
    """A stand-in teacher text encoder: each text's feature is a fixed function of its characters."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode_text(self, texts):
        self.seen.extend(texts)
        return torch.stack([torch.tensor([float(len(t)), float(sum(map(ord, t)) % 97), 1.0 + t.count(" ")])
                            for t in texts])


def _ds(descriptions=None):
    from types import SimpleNamespace

    return SimpleNamespace(name="tiny", seen_classes=["cat", "dog"], unseen_classes=["cow", "eel", "fox"],
                           descriptions=descriptions)


def test_config_text_features_is_the_trainers_rule():
    """One function: a config's descriptions, control, text mode and templates -> (seen, unseen)."""
    from vldlib.text.classifier import class_text_features
    from vldlib.text.controls import control_descriptions
    from vldlib.train.texts import config_descriptions, config_text_features, plain_config

    desc = {n: [f"a {n} thing.", f"the {n} other."] for n in ("cat", "dog", "cow", "eel", "fox")}
    base = {"dataset": "official", "dataset_options": {"root": "/nowhere"}, "template": "a photo of a {name}",
            "enriched_template": "a photo of a {name} . {description}"}
    enc = _Encoder()
    seen, unseen = config_text_features(enc, base, _ds(desc))  # no descriptions: plain names
    assert seen.shape == (2, 3) and unseen.shape == (3, 3) and enc.seen == [
        "a photo of a cat", "a photo of a dog", "a photo of a cow", "a photo of a eel", "a photo of a fox"]
    cfg = {**base, "descriptions": "official", "text_mode": "average", "description_control": "shuffled"}
    assert config_descriptions(cfg, _ds(desc)) == desc
    seen, unseen = config_text_features(_Encoder(), cfg, _ds(desc))
    # the control moves descriptions over the seen and unseen classes together
    moved, enriched = control_descriptions("shuffled", ["cat", "dog", "cow", "eel", "fox"], desc,
                                           cfg["enriched_template"])
    kw = dict(mode="average", template=base["template"], enriched_template=enriched)
    assert torch.equal(seen, class_text_features(_Encoder(), ["cat", "dog"], moved, **kw))
    assert torch.equal(unseen, class_text_features(_Encoder(), ["cow", "eel", "fox"], moved, **kw))
    plain = plain_config(TrainConfig.from_dict(cfg))
    assert (plain.descriptions, plain.description_control, plain.text_mode) == (None, None, "first")
    with pytest.raises(ValueError, match="descriptions='official' but dataset 'tiny' has no chatgpt.txt"):
        config_text_features(_Encoder(), cfg, _ds(None))
    # a prompt variant reads the shipped / cached set of the dataset's description key
    fm = {"dataset": "fashion-mnist", "descriptions": "main"}
    from vldlib.text.descriptions import shipped_descriptions
    assert config_descriptions(fm, _ds()) == dict(shipped_descriptions("main").ordered())
