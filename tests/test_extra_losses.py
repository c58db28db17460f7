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
from model_fixtures import tiny_official_world, tiny_openclip_model  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    return tiny_official_world(tmp_path_factory.mktemp("extra"), per_class=8)


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


# --------------------------------------------------------------------------- LLM captioner
def _caption_reply(body):
    from llm_server import completion

    content = [m["content"] for m in body["messages"] if m.get("role") == "user"][-1]
    url = next(p["image_url"]["url"] for p in content if p.get("type") == "image_url")
    assert url.startswith("data:image/png;base64,")
    return completion(body, [f'"a picture of {len(url) % 97} dots"'])


def test_llm_captioner_fills_the_caption_file_resumes_and_retries(world, tmp_path):
    from llm_server import ChatServer, error

    from vldlib.cli.caption import main as caption_main
    from vldlib.text.captions import read_caption_cache, read_caption_file
    from vldlib.text.llm_captions import CaptionsUnavailable, LLMResponseError, generate_captions

    out = tmp_path / "caps.json"
    imgs = torch.rand(4, 3, 8, 8)
    keys = [f"k{i}" for i in range(4)]
    with pytest.raises(CaptionsUnavailable, match="no caption"):
        generate_captions(keys, lambda pos: imgs[pos], model="m", out=out, api_key_env="VLD_NO_SUCH_KEY")
    # a 503 is retried; a 400 stops with the image named; what was captioned is kept
    with ChatServer(plan=[error(503), None, error(400, "bad image")], respond=_caption_reply) as srv:
        with pytest.raises(LLMResponseError, match="image 'k"):
            generate_captions(keys, lambda pos: imgs[pos], model="m", out=out, base_url=srv.base_url,
                              concurrency=1, base_delay=0, progress=False, api_key_env="VLD_NO_SUCH_KEY")
    first = read_caption_cache(out)
    assert len(first["captions"]) == 1 and first["model"] == "m"
    with ChatServer(respond=_caption_reply) as srv:
        got = generate_captions(keys, lambda pos: imgs[pos], model="m", out=out, base_url=srv.base_url,
                                progress=False, api_key_env="VLD_NO_SUCH_KEY")
        assert len(srv.requests) == 3  # only the missing images
    assert set(got) == set(keys) and all(v.startswith("a picture of") for v in got.values())  # quotes stripped
    cache = read_caption_cache(out)
    assert set(cache["provenance"]) == set(keys) and cache["provenance"]["k0"]["base_url"].startswith("http")
    assert read_caption_file(out) == got
    # the command line captions an official root into <root>/captions.json, which captions="file" reads
    root = Path(world["root"])
    (root / "captions.json").unlink(missing_ok=True)
    with ChatServer(respond=_caption_reply) as srv:
        assert caption_main(["--data-root", str(root), "--model", "m", "--base-url", srv.base_url,
                             "--load-size", "32", "--quiet"]) == 0
    rec = train(tiny(world, epochs=1, last_n=1), cache_dir=world["cache"], progress=False)
    assert rec["captions"]["source"] == "file" and rec["captions"]["examples"][0].startswith("a picture of")
    (root / "captions.json").unlink()
    assert caption_main(["--data-root", str(tmp_path / "none"), "--model", "m"]) == 2
