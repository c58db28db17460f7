"""The losses beyond the paper's four in training: L_cap with captions (proxy captioner, caption
file), the field's fd / icl / crd / rkd from the command line, and their effect on run hashes."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from vldlib.cli.train import main
from vldlib.train import train
from vldlib.train.config import TrainConfig, config_hash

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_fixtures import write_tiny_official_root  # noqa: E402
from model_fixtures import make_tiny_openclip_checkpoint, tiny_openclip_model  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("extra")
    root = write_tiny_official_root(base / "data", n_seen=3, n_unseen=3, per_class=8, size=32)
    ckpt = make_tiny_openclip_checkpoint(base / "tiny_clip.pt")
    return {"root": root, "ckpt": ckpt, "cache": base / "cache", "base": base}


def tiny(world: dict, **overrides) -> dict:
    cfg = TrainConfig(
        dataset="official", dataset_options={"root": str(world["root"]), "load_size": 32, "crop_size": 28},
        teacher="openclip",
        teacher_options={"model": tiny_openclip_model(world["ckpt"]), "pretrained": str(world["ckpt"]),
                         "device": "cpu"},
        student="small", student_options={"width": 4}, weights={"cls": 1.0, "cap": 1.0},
        epochs=2, last_n=1, batch_size=8, eval_batch_size=16, device="cpu",
    ).to_dict()
    cfg.update(overrides)
    return cfg


def test_hash_unchanged_for_configs_without_the_new_losses():
    base = TrainConfig().canonical()
    assert "captions" not in base and set(base["weights"]) == {"cls", "mse", "im_cst", "vlprox"}
    cap = {"weights": {"cls": 1.0, "cap": 1.0}}
    # captions=None with L_cap on means the proxy captioner for the ConSE teacher: same run, same hash
    assert config_hash(cap) == config_hash({**cap, "captions": "proxy"}) != config_hash({**cap, "captions": "file"})
    assert config_hash({"weights": {"cls": 1, "rkd": 0}}) == config_hash({"weights": {"cls": 1}})
    with pytest.raises(ValueError, match="only used by L_cap"):
        TrainConfig(captions="proxy").validate()
    with pytest.raises(ValueError, match="unknown captions"):
        TrainConfig(weights={"cls": 1, "cap": 1}, captions="ofa").validate()


def test_cap_trains_from_a_caption_file_and_errors_name_the_file(world):
    from vldlib.data import load_dataset

    ds = load_dataset("official", root=str(world["root"]), load_size=32, crop_size=28)
    path = Path(world["root"]) / "captions.json"
    with pytest.raises(FileNotFoundError, match="captions.json"):
        train(tiny(world), cache_dir=world["cache"], progress=False)
    path.write_text(json.dumps({k: f"a small picture number {i}" for i, k in enumerate(ds.train.keys[1:])}))
    with pytest.raises(ValueError, match="have no caption"):
        train(tiny(world), cache_dir=world["cache"], progress=False)
    path.write_text(json.dumps({k: f"a small picture number {i}" for i, k in enumerate(ds.train.keys)}))
    rec = train(tiny(world), cache_dir=world["cache"], progress=False)
    assert rec["captions"]["source"] == "file"
    assert all(h["loss_cap"] > 0 for h in rec["history"])
    assert rec["config"]["weights"] == {"cls": 1.0, "cap": 1.0}
    path.unlink()
    with pytest.raises(ValueError, match="needs the ConSE proxy teacher"):
        train(tiny(world, captions="proxy"), cache_dir=world["cache"], progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["cap", "fd", "icl", "crd", "rkd"])
def test_cli_trains_each_new_loss_on_the_smoke_profile(loss, tmp_path, capsys, fashion_mnist_root):
    argv = ["--profile", "smoke", "--weights", f"cls=1,{loss}=1", "--no-fewshot", "--out", str(tmp_path),
            "--quiet", "--threads", "1"]
    assert main(argv) == 0
    rec = json.loads(next(tmp_path.glob("*/record.json")).read_text())
    assert rec["config"]["weights"] == {"cls": 1.0, loss: 1.0}
    for h in rec["history"]:
        assert h[f"loss_{loss}"] >= 0 and h["loss"] == pytest.approx(h["loss_cls"] + h[f"loss_{loss}"], rel=1e-5)
    if loss == "cap":
        assert rec["captions"]["source"] == "proxy" and "not a real captioner" in rec["captions"]["note"]
        assert all(c.startswith("a photo of a ") for c in rec["captions"]["examples"])
