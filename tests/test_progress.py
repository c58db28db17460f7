"""What a researcher sees while the paper profile runs: progress lines (teacher encoding, image
store, epochs), ``metrics.jsonl`` per epoch (rewritten on resume), ``report_to``, the up-front
checks (open_clip weights said once with the fix, the same config messages in the CLI and the
book), the paper profile's GPU defaults and bf16 parity."""
from __future__ import annotations

import io
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

import vldlib.data.imagestore as imagestore
from vldlib.cli.train import main as cli_main
from vldlib.data import load_dataset
from vldlib.progress import Progress, progress_default
from vldlib.runs import config_hash
from vldlib.study.parameters import check_parameters
from vldlib.train import Interrupted, TrainConfig, train
from vldlib.train.config import resolve_workers
from vldlib.train.loop import images_of_splits
from vldlib.train.preflight import CHECKPOINT_FIXES, check_teacher_weights
from vldlib.train.profiles import profile_config
from vldlib.train.reporting import METRICS_FILE, check_report_to

sys.path.insert(0, str(Path(__file__).parent))
from model_fixtures import tiny_official_world, tiny_openclip_model  # noqa: E402


@pytest.fixture(autouse=True)
def plain_progress(monkeypatch):
    monkeypatch.delenv("VLD_PROGRESS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    return tiny_official_world(tmp_path_factory.mktemp("progress"), per_class=10)


def teacher_options(world: dict) -> dict:
    return {"model": tiny_openclip_model(world["ckpt"]), "pretrained": str(world["ckpt"]), "device": "cpu"}


def tiny_config(world: dict, **overrides) -> dict:
    cfg = TrainConfig(
        dataset="official", dataset_options={"root": str(world["root"]), "load_size": 32, "crop_size": 28},
        teacher="openclip", teacher_options=teacher_options(world),
        student="small", student_options={"width": 4}, epochs=4, last_n=2, batch_size=8,
        eval_batch_size=16, device="cpu", fewshot={"shots": 5, "epochs": 2}).to_dict()
    cfg.update(overrides)
    return cfg


# ---------------------------------------------------------------------- progress lines
def test_progress_task_is_rate_limited_first_and_last_always():
    now = [0.0]
    out = io.StringIO()
    log = Progress("abcd1234", out, interval=5.0, clock=lambda: now[0])
    with log.task("teacher features x/train", 100) as task:
        for _ in range(10):
            now[0] += 1.0
            task.update(10)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[abcd1234] teacher features x/train: 10/100 img (10.0 img/s, ETA 9 s)")
    assert lines[-1].endswith("100/100 img (10.0 img/s, done in 10 s)")
    assert len(lines) == 3  # t=1 (first), t=6 (5 s later), t=10 (last)


def test_progress_default_follows_the_book_driver(monkeypatch):
    assert progress_default(False) is False
    monkeypatch.setenv("VLD_PROGRESS", "terminal")
    assert progress_default(False) is True
    monkeypatch.setenv("VLD_PROGRESS", "0")
    assert Progress.of(True).enabled is False


def test_cli_run_shows_teacher_encoding_and_epochs(world, capsys):
    """A captured CLI run (fresh cache: the teacher encodes every split) prints one line per
    event prefixed with the run's short hash; metrics.jsonl has one line per epoch."""
    out, cache = world["base"] / "cli-results", world["base"] / "cli-cache"
    teacher = json.dumps(teacher_options(world))
    argv = ["--profile", "smoke", "--dataset", "official", "--data-root", str(world["root"]),
            "--teacher", "openclip", "--set", f"teacher_options={teacher}", "--set", "dataset_options.load_size=32",
            "--set", "dataset_options.crop_size=28", "--set", "student_options={\"width\": 4}",
            "--weights", "cls=1,im_cst=1", "--epochs", "2", "--batch-size", "8", "--no-fewshot",
            "--set", "template=a photo of {name}", "--out", str(out), "--cache-dir", str(cache)]
    assert cli_main(argv) == 0
    err = capsys.readouterr().err
    run = next(out.glob("*/record.json")).parent
    tag = f"[{run.name[:8]}]"
    assert re.search(re.escape(tag) + r" teacher features official/.*/train: 21/21 img \([\d.]+ img/s, done in", err), err
    assert re.search(re.escape(tag) + r" image store official:.*/train: 21/21 img", err), err
    assert re.search(re.escape(tag) + r" main epoch 1/2: loss [\d.]+, acc_id [\d.]+%, acc_ood_zeroshot [\d.]+%, "
                     r"[\d.]+ img/s, ETA", err), err
    assert f"{tag} main epoch 2/2: loss" in err
    lines = [json.loads(x) for x in (run / METRICS_FILE).read_text().splitlines()]
    assert [(x["stage"], x["epoch"]) for x in lines] == [("main", 1), ("main", 2)]
    assert "acc_id" in lines[0] and "loss" in lines[0]


def test_metrics_jsonl_is_cut_back_to_the_checkpoint_on_resume(world):
    """A line written after the last checkpoint (a crash between the two) is dropped on resume:
    the file matches the record's histories, epoch for epoch."""
    run_dir = world["base"] / "resume"
    cache = world["base"] / "cache"
    cfg = tiny_config(world)

    def stop(info):
        if info["stage"] == "main" and info["epoch"] == 2:
            raise Interrupted("stop")

    with pytest.raises(Interrupted):
        train(cfg, run_dir=run_dir, cache_dir=cache, progress=False, on_epoch_end=stop)
    path = run_dir / METRICS_FILE
    assert len(path.read_text().splitlines()) == 2
    with open(path, "a", encoding="utf-8") as fh:  # epoch 3 reported, then the crash before its checkpoint
        fh.write(json.dumps({"stage": "main", "epoch": 3, "loss": 99.0}) + "\n" + '{"stage": "ma')
    rec = train(cfg, run_dir=run_dir, cache_dir=cache, progress=False)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    expected = [{"stage": "main", **h} for h in rec["history"]] + \
        [{"stage": "fewshot", **h} for h in rec["fewshot"]["history"]]
    assert json.loads(json.dumps(expected)) == lines
    assert [x["epoch"] for x in lines] == [1, 2, 3, 4, 1, 2] and lines[2]["loss"] != 99.0


def test_report_to_is_runtime_only_and_checked(world, tmp_path):
    cfg = tiny_config(world)
    assert config_hash({**cfg, "report_to": "tensorboard"}) == config_hash(cfg)
    assert config_hash({**cfg, "num_workers": "auto"}) == config_hash(cfg)
    with pytest.raises(ValueError, match="unknown report_to 'mlflow'"):
        TrainConfig.from_dict({**cfg, "report_to": "mlflow"}).validate()
    try:
        import wandb  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"report_to='wandb' needs the wandb package.*pip install wandb"):
            check_report_to("wandb")
    pytest.importorskip("tensorboard")
    rec = train({**cfg, "report_to": "tensorboard", "epochs": 2, "last_n": 1, "fewshot": None},
                run_dir=tmp_path / "run", cache_dir=world["base"] / "cache", progress=False)
    assert rec["history"] and list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_image_store_that_does_not_fit_is_said_once_with_sizes(world, tmp_path, monkeypatch):
    ds = load_dataset("official", root=str(world["root"]), load_size=32, crop_size=28)
    monkeypatch.setattr(imagestore, "free_bytes", lambda _: 1000)
    import vldlib.train.loop as loop
    monkeypatch.setattr(loop, "free_bytes", lambda _: 1000)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: type("U", (), {"free": 1000})())
    with pytest.warns(RuntimeWarning) as caught:
        images = images_of_splits(ds.splits, 0, torch.device("cpu"), tmp_path)
    msgs = [str(w.message) for w in caught if "image store" in str(w.message)]
    assert len(msgs) == 1
    assert "train, id, ood need" in msgs[0] and "1.0 kB" not in msgs[0] and "free" in msgs[0]
    assert "decoded from their JPEG files every epoch" in msgs[0]
    assert all(im.store is None and im.split is not None for im in images.values())


# ---------------------------------------------------------------------- fail fast, once
def test_missing_open_clip_weights_said_once_before_training(world, tmp_path, monkeypatch, capsys):
    """HF_HUB_OFFLINE=1 and no ViT-L-14 weights: the CLI stops before anything trains (no run
    folder), with one line that names the cache and ends with the --set fix."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    import huggingface_hub.constants as hc
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    out = tmp_path / "results"
    argv = ["--profile", "smoke", "--dataset", "official", "--data-root", str(world["root"]), "--teacher", "openclip",
            "--set", "teacher_options={\"model\": \"ViT-L-14\", \"pretrained\": \"openai\", \"device\": \"cpu\"}",
            "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    assert cli_main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("cannot load open_clip weights") == 1 and "\n" not in err
    assert err.endswith("or use a local checkpoint file: --set teacher_options.pretrained=/path/to/checkpoint.pt")
    assert "huggingface-cli download timm/vit_large_patch14_clip_224.openai" in err
    assert str(tmp_path / "hf") in err and "epoch" not in captured.out + err
    assert not out.exists() or not any(out.iterdir())


def test_book_syntax_of_the_weights_fix(world, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = tiny_config(world, teacher_options={"model": "ViT-L-14", "pretrained": "openai",
                                              "cache_dir": str(tmp_path / "oc")})
    with pytest.raises(ValueError) as err:
        check_teacher_weights([cfg, cfg], cache_dir=tmp_path / "cache", syntax="book")
    msg = str(err.value)
    assert msg.endswith(CHECKPOINT_FIXES["book"]) and "\n" not in msg
    assert json.loads(CHECKPOINT_FIXES["book"].split("'")[1]) == {"teacher_options": {"pretrained": "/path/to/checkpoint.pt"}}
    check_teacher_weights([cfg], cache_dir=tmp_path / "cache", syntax="book", finished=lambda c: True)  # stored: no check
    check_teacher_weights([tiny_config(world)], syntax="book")  # a local checkpoint needs nothing


def test_cli_and_book_give_the_same_config_message(capsys):
    """--epochs 1 works in the CLI as -p epochs 1 does in the book (last_n lowered); a last_n the
    user sets too high gets the same message, ending with its fix, from both."""
    assert cli_main(["--profile", "smoke", "--epochs", "1", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["last_n"] == 1
    assert cli_main(["--profile", "smoke", "--set", "last_n=9", "--print-config"]) == 2
    cli = capsys.readouterr().err.strip()
    with pytest.raises(ValueError) as book:
        check_parameters({"profile": "smoke", "overrides": {"last_n": 9}})
    fix = "last_n=9 exceeds epochs=3 (the reported number averages the last last_n epochs): set last_n to at most 3, " \
          "or epochs to at least 9"
    assert cli.endswith(fix) and str(book.value).endswith(fix)


# ---------------------------------------------------------------------- GPU defaults
def test_paper_profile_gpu_defaults_and_offline_hashes_unchanged():
    paper = profile_config("paper", **{"dataset_options.root": "/data/x"})
    assert paper["amp"] is True and paper["num_workers"] == "auto"
    assert resolve_workers("auto", cores=2) == 1 and resolve_workers("auto", cores=64) == 8
    assert resolve_workers("auto", cores=1) == 0 and resolve_workers(3) == 3
    # the default book's run hashes (users' run stores) stay as they are: the offline one since its
    # teacher became the teacher search's winner; with the teacher before it, as before
    # (on a CPU with native bf16, where the pins were written: precision "auto" resolves to bf16 there)
    from book_hashes import bf16_machine

    with bf16_machine():
        offline = profile_config("offline")
    assert config_hash(offline) == "057ca155cdbfe35b"
    before = dict(offline, teacher_options={"backbone": "lite0", "backend": "openvino"})
    assert config_hash(before) == "bfc42658687d897a"
    assert config_hash(profile_config("smoke")) == "dabab9581c08e334"


def test_bf16_autocast_matches_fp32_accuracy(world):
    """The paper profile's amp (bf16 autocast, here forced on the CPU with precision='bf16'): the
    same training as fp32 within a tolerance, and the same trained student scores alike."""
    cache = world["base"] / "cache"
    base = tiny_config(world, fewshot=None, epochs=3, last_n=1)
    fp32 = train({**base, "precision": "fp32"}, cache_dir=cache, progress=False)
    bf16 = train({**base, "precision": "bf16"}, cache_dir=cache, progress=False)
    for key in ("acc_id", "acc_ood_zeroshot"):
        assert abs(fp32["final"][key] - bf16["final"][key]) <= 20.0, (key, fp32["final"], bf16["final"])
    assert abs(fp32["history"][-1]["loss"] - bf16["history"][-1]["loss"]) < 0.1 * fp32["history"][-1]["loss"]


# ---------------------------------------------------------------------- the dry run benchmark
@pytest.mark.slow
def test_paper_dryrun_benchmark_writes_every_figure(tmp_path):
    """benchmarks/paper_dryrun.py at a tiny size (2 classes x 7 small JPEGs, 64 px loads): it runs
    the paper profile end to end from a fresh folder and writes every figure."""
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "dryrun.json"
    env = {**__import__("os").environ, "PYTHONPATH": str(repo), "HF_HUB_OFFLINE": "1", "VLD_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, str(repo / "benchmarks" / "paper_dryrun.py"), "--classes", "2",
                           "--per-class", "7", "--width", "80", "--height", "60", "--load-size", "64",
                           "--workers", "0", "--device", "cpu", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads(out.read_text())
    sys.path.insert(0, str(repo / "benchmarks"))
    from paper_dryrun import KEYS

    assert set(KEYS) <= set(figures)
    assert figures["images"] == 14 and figures["arch"] == "ViT-B-32" and figures["device"] == "cpu"
    for key in ("decode_img_s", "store_img_s", "teacher_img_s", "train_img_s", "eval_img_s", "peak_rss_mb"):
        assert figures[key] > 0, key
    assert figures["disk_store_kb_per_image"] == pytest.approx(3 * 64 * 64 / 1024, rel=0.01)


@pytest.mark.slow
def test_book_paper_profile_without_weights_stops_once_before_any_run(world, tmp_path, monkeypatch, capsys):
    """``python -m vldlib.book --profile paper --only main_results`` offline without ViT-L-14 weights:
    exit 2 before any run trains, the message said once, with the -p overrides syntax."""
    from vldlib import book

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hc
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("VLD_CACHE", str(tmp_path / "cache"))
    rc = book.main(["--profile", "paper", "--only", "main_results", "-p", "dataset_root", str(world["root"]),
                    "--results-dir", str(tmp_path / "res"), "--executed-dir", str(tmp_path / "exec"),
                    "--build-dir", str(tmp_path / "build"), "--no-build"])
    assert rc == 2
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert text.count("cannot load open_clip weights") == 1
    assert CHECKPOINT_FIXES["book"] in text and "training the missing runs" not in text
    assert not list((tmp_path / "res").glob("*/config.json"))


def test_grid_runs_report_to_the_book_terminal(world, tmp_path, monkeypatch):
    """Under the book driver (VLD_PROGRESS=terminal) a grid's runs write their lines to the
    process's own stderr even though run_grid asks for no progress: the shared teacher warm-up
    as [teacher], each run's epochs as [<hash>]."""
    from vldlib.runs import RunStore
    from vldlib.study.grid import run_grid

    terminal = io.StringIO()
    monkeypatch.setattr(sys, "__stderr__", terminal)
    monkeypatch.setenv("VLD_PROGRESS", "terminal")
    cfg = tiny_config(world, epochs=2, last_n=1, fewshot=None)
    store = RunStore(tmp_path / "res", cache_dir=tmp_path / "cache")
    run_grid(store, [({}, cfg)], workers=1, log=False)
    text = terminal.getvalue()
    assert re.search(r"^\[teacher\] teacher features official/.*/train: 21/21 img", text, re.M), text
    tag = f"[{config_hash(cfg)[:8]}]"
    assert f"{tag} main epoch 1/2: loss" in text and f"{tag} main epoch 2/2: loss" in text, text
