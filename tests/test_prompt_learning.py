"""CoOp prompt learning (paper.md §2.6, Table 5): the context-swapping text encoders of both
teachers, the learner, and training with ``prompt_learning={"n_ctx": ...}``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from vldlib.cli.train import main
from vldlib.models.prompts import PromptLearner, coop_texts, prompt_learning_options
from vldlib.models.teachers import MiniLMTextEncoder, load_teacher
from vldlib.train import train
from vldlib.train.config import TrainConfig, config_hash

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_fixtures import write_tiny_official_root  # noqa: E402
from model_fixtures import make_tiny_openclip_checkpoint, tiny_openclip_model  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("coop")
    root = write_tiny_official_root(base / "data", n_seen=3, n_unseen=3, per_class=8, size=32)
    ckpt = make_tiny_openclip_checkpoint(base / "tiny_clip.pt")
    return {"root": root, "ckpt": ckpt, "cache": base / "cache", "base": base}


@pytest.fixture(scope="module")
def tiny_clip(world):
    return load_teacher("openclip", model=tiny_openclip_model(world["ckpt"]), pretrained=str(world["ckpt"]),
                        device="cpu")


def test_openclip_context_equal_to_the_template_embeddings_gives_the_template_features(tiny_clip):
    """Swapping 'X X X' for the token embeddings of 'a photo of' must reproduce encode_text exactly."""
    tokens = tiny_clip.tokenizer(["a photo of"])
    ctx = tiny_clip.model.token_embedding(tokens)[0, 1:4].detach()
    names = ["Trouser.", "Ankle boot .  a boot."]
    got = tiny_clip.encode_text_with_context(ctx, [f"X X X {n}" for n in names])
    want = tiny_clip.encode_text([f"a photo of {n}" for n in names])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_minilm_context_equal_to_the_template_embeddings_gives_the_template_features():
    enc = MiniLMTextEncoder(torch.device("cpu"))
    ids = torch.tensor(enc.tokenizer.encode("a photo of").ids)
    ctx = enc.model.embeddings.word_embeddings(ids[1:4]).detach()
    got = enc.encode_with_context(ctx, ["X X X Trouser.", "X X X Sandal ."])
    want = enc(["a photo of Trouser.", "a photo of Sandal ."])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="placeholder words 'X'"):
        enc.encode_with_context(ctx, ["a photo of Trouser."])


def test_gradients_reach_the_context_only(tiny_clip):
    learner = PromptLearner(4, tiny_clip.token_width, generator=torch.Generator().manual_seed(0))
    assert tuple(learner.ctx.shape) == (4, tiny_clip.token_width)
    assert float(learner.ctx.detach().std()) == pytest.approx(0.02, rel=0.3)  # N(0, 0.02^2)
    prompts = coop_texts([["cat."], ["dog."], ["a b.", "c d."]], 4)
    assert prompts[0] == ["X X X X cat."]
    feats = learner(tiny_clip, prompts, "first")
    assert feats.shape == (3, tiny_clip.embed_dim)
    feats.pow(2).sum().backward()
    assert learner.ctx.grad is not None and float(learner.ctx.grad.abs().sum()) > 0
    assert all(p.grad is None for p in tiny_clip.model.parameters())
    avg = learner(tiny_clip, prompts, "average")
    assert torch.allclose(avg.norm(dim=1), torch.ones(3, dtype=avg.dtype), atol=1e-5)


def test_options_and_hash():
    assert prompt_learning_options(None) is None
    assert prompt_learning_options({"n_ctx": 4}) == {"n_ctx": 4, "init_std": 0.02}
    for bad, match in (({"n_ctx": 0}, "n_ctx"), ({"n_ctx": 8.5}, "n_ctx"), ({"width": 3}, "unknown"),
                       ({"init_std": -1}, "init_std"), ("8", "dict")):
        with pytest.raises(ValueError, match=match):
            TrainConfig(prompt_learning=bad).validate()
    assert "prompt_learning" not in TrainConfig().canonical()
    assert config_hash({"prompt_learning": {"n_ctx": 8}}) == config_hash({"prompt_learning": {}})
    assert config_hash({"prompt_learning": {"n_ctx": 8}}) != config_hash({})


def test_training_with_prompt_learning_on_the_tiny_openclip_stand_in(world):
    cfg = TrainConfig(
        dataset="official", dataset_options={"root": str(world["root"]), "load_size": 32, "crop_size": 28},
        teacher="openclip",
        teacher_options={"model": tiny_openclip_model(world["ckpt"]), "pretrained": str(world["ckpt"]),
                         "device": "cpu"},
        student="small", student_options={"width": 4}, epochs=2, last_n=1, batch_size=8,
        eval_batch_size=16, device="cpu", prompt_learning={"n_ctx": 4}, fewshot={"shots": 5, "epochs": 1},
    ).to_dict()
    torch.set_num_threads(1)
    rec = train(cfg, cache_dir=world["cache"], progress=False, run_dir=world["base"] / "run")
    pl = rec["prompt_learning"]
    assert pl["n_ctx"] == 4 and pl["example"].startswith("X X X X ")
    init = PromptLearner(4, 64, generator=torch.Generator().manual_seed(3)).ctx.detach().norm()  # seed*2+3
    assert pl["ctx_norm"] != pytest.approx(float(init), rel=1e-6)  # the context was trained
    assert rec["teacher_forward_detail"]["prompt_text_batches"] > 0
    assert rec["final"]["acc_ood_5shot"] is not None
    again = train(cfg, cache_dir=world["cache"], progress=False)
    assert again["final"] == rec["final"]  # same config, same numbers


@pytest.mark.slow
def test_cli_prompt_learning_on_the_smoke_profile(tmp_path, fashion_mnist_root):
    argv = ["--profile", "smoke", "--set", 'prompt_learning={"n_ctx": 8}', "--no-fewshot",
            "--out", str(tmp_path), "--quiet", "--threads", "1"]
    assert main(argv) == 0
    rec = json.loads(next(tmp_path.glob("*/record.json")).read_text())
    assert rec["config"]["prompt_learning"] == {"n_ctx": 8, "init_std": 0.02}  # typed: every option, explicit
    assert rec["prompt_learning"]["example"].startswith("X X X X X X X X ")
    assert all(h["acc_id"] is not None for h in rec["history"])


def test_a_teacher_first_loaded_in_inference_mode_still_backpropagates(world, tmp_path):
    """LazyTeacher loads on first use, which may be inside torch.inference_mode (feature encoding)."""
    from vldlib.features import LazyTeacher

    opts = {"model": tiny_openclip_model(world["ckpt"]), "pretrained": str(world["ckpt"]), "device": "cpu"}
    LazyTeacher("openclip", opts, tmp_path)  # writes the identity record: the next one is lazy
    lazy = LazyTeacher("openclip", opts, tmp_path)
    assert not lazy.loaded
    with torch.inference_mode():
        lazy.encode_image(torch.rand(1, 3, 32, 32))
    learner = PromptLearner(2, lazy.token_width)
    learner(lazy, [["X X cat."]]).sum().backward()
    assert learner.ctx.grad is not None
