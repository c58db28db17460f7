"""Table 8, 10, 11 and the description controls below the chapters: the small ViT student, the
student cost helper, the Tip-Adapter retrieval classifier, continual 5-shot fine-tuning, the
description controls and the hashes of configs that do not use them."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from vldlib.models.students import load_student, student_cost
from vldlib.runs import RunStore
from vldlib.text.controls import (CLIP_ENSEMBLE_TEMPLATES, control_descriptions, shuffled_descriptions,
                                  waffle_descriptions)
from vldlib.train import retrieval_accuracy, train
from vldlib.train.config import TrainConfig, config_hash
from vldlib.train.fewshot import retrieval_logits
from vldlib.train.profiles import profile_config

sys.path.insert(0, str(Path(__file__).parent))
from test_train import tiny_config, world  # noqa: E402,F401  (the tiny official world and its config)


# ---------------------------------------------------------------------- students
def test_vit_tiny_shape_grey_input_and_recipe():
    torch.manual_seed(0)
    model = load_student("vit_tiny", 24, in_chans=1).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 24)
    assert model.conv_proj.in_channels == 1 and model.heads.head.in_features == 64
    with pytest.raises(ValueError, match="divisible by patch_size"):
        load_student("vit_tiny", 24, image_size=30)
    with pytest.raises(ValueError, match="bad option"):
        load_student("vit_tiny", 24, nonsense=1)
    from vldlib.train.config import resolve_optim
    r = resolve_optim(TrainConfig(student="vit_tiny"), 1000)
    assert (r["optimizer"], r["schedule"], r["lr"], r["weight_decay"]) == ("adamw", "onecycle", 2e-4, 0.01)


def test_student_cost_counts_a_linear_layer_by_hand():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    cost = student_cost(model, (3, 2, 2), repeats=3)
    assert cost["params"] == 12 * 5 + 5
    assert cost["flops"] == 2 * 12 * 5  # one multiply-add per weight, counted as 2
    assert cost["latency_ms"] > 0
    small = student_cost(load_student("small", 16, 1, width=8), (1, 28, 28), repeats=2)
    wide = student_cost(load_student("small", 16, 1, width=16), (1, 28, 28), repeats=2)
    assert wide["flops"] > 3 * small["flops"]  # conv FLOPs grow with width squared
    with pytest.raises(ValueError, match="input_shape"):
        student_cost(model, (3, 2))


# ---------------------------------------------------------------------- retrieval (Table 10)
def _slow_retrieval(query, keys, labels, text, alpha, beta):
    n, c = query.shape[0], text.shape[0]
    out = torch.zeros(n, c, dtype=torch.float64)
    for i in range(n):
        q = query[i].double() / query[i].double().norm()
        for y in range(c):
            t = text[y].double() / text[y].double().norm()
            out[i, y] = q @ t
            for m in range(keys.shape[0]):
                if int(labels[m]) == y:
                    k = keys[m].double() / keys[m].double().norm()
                    out[i, y] += alpha * torch.exp(-beta * (1 - q @ k))
    return out


def test_retrieval_logits_match_the_formula_and_alpha_zero_is_zero_shot():
    g = torch.Generator().manual_seed(0)
    q, k, t = torch.randn(6, 8, generator=g), torch.randn(9, 8, generator=g), torch.randn(3, 8, generator=g)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    got = retrieval_logits(q, k, labels, t, alpha=0.7, beta=3.0)
    assert torch.allclose(got.double(), _slow_retrieval(q, k, labels, t, 0.7, 3.0), atol=1e-5)
    zero = retrieval_logits(q, k, labels, t, alpha=0.0)
    cos = nn.functional.normalize(q, dim=-1) @ nn.functional.normalize(t, dim=-1).T
    assert torch.allclose(zero, cos, atol=1e-6)
    # a query equal to a key of class 2 is pulled to class 2 by the cache
    pulled = retrieval_logits(k[7:8] * 3, k, labels, torch.zeros(3, 8) + 1e-3 * t, alpha=1.0, beta=5.5)
    assert int(pulled.argmax()) == 2


@pytest.mark.parametrize("bad,match", [
    (dict(key_labels=torch.tensor([0, 5])), "key_labels must lie in"),
    (dict(key_labels=torch.tensor([0])), r"key_labels must be \[M\]"),
    (dict(keys=torch.randn(2, 7)), "feature dims differ"),
    (dict(alpha=-1.0), "alpha and beta must be >= 0"),
])
def test_retrieval_logits_bad_input(bad, match):
    args = dict(query=torch.randn(3, 8), keys=torch.randn(2, 8), key_labels=torch.tensor([0, 1]),
                text=torch.randn(2, 8))
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        retrieval_logits(**args)


# ---------------------------------------------------------------------- description controls
def test_controls():
    desc = {"a": ["x a1", "x a2"], "b": ["x b1"], "c": ["x c1", "x c2", "x c3"]}
    shuffled = shuffled_descriptions(desc, seed=3)
    assert shuffled == shuffled_descriptions(desc, seed=3) and set(shuffled) == set(desc)
    assert all(shuffled[n] != desc[n] for n in desc)  # a derangement: nobody keeps its own
    assert sorted(map(tuple, shuffled.values())) == sorted(map(tuple, desc.values()))
    waffle = waffle_descriptions(["a", "b"], 4, seed=1, descriptions=desc)
    assert waffle["a"] == waffle["b"] and len(waffle["a"]) == 4  # the same descriptors for every class
    assert all(s.startswith("which has ") for s in waffle["a"])
    words = {w for s in waffle["a"][:2] for w in s.split()[2:]}
    assert words <= {"a1", "a2", "b1", "c1", "c2", "c3"} or all(len(w) >= 3 for w in words)
    texts, template = control_descriptions("templates", ["cat"], None, "a {name} . {description}")
    assert template == "{description}" and texts["cat"][0] == CLIP_ENSEMBLE_TEMPLATES[0].format(name="cat")
    assert len(texts["cat"]) == 7
    with pytest.raises(ValueError, match="unknown description control"):
        control_descriptions("poetry", ["a"], desc, "{name} {description}")
    with pytest.raises(ValueError, match="needs real descriptions"):
        control_descriptions("shuffled", ["a"], None, "{name} {description}")


# ---------------------------------------------------------------------- hashes and validation
def test_new_fields_leave_existing_hashes_alone():
    cfg = profile_config("offline")
    canon = TrainConfig.from_dict(cfg).canonical()
    assert "description_control" not in canon and "continual" not in canon["fewshot"]
    assert config_hash(cfg) == config_hash({**cfg, "description_control": None})
    assert config_hash(cfg) == config_hash({**cfg, "fewshot": {**cfg["fewshot"], "continual": False}})
    assert config_hash(cfg) != config_hash({**cfg, "fewshot": {**cfg["fewshot"], "continual": True}})
    assert config_hash(cfg) != config_hash({**cfg, "description_control": "waffle"})
    with pytest.raises(ValueError, match="unknown description_control 'poetry'"):
        TrainConfig.from_dict({**cfg, "description_control": "poetry"}).validate()
    with pytest.raises(ValueError, match="set descriptions too"):
        TrainConfig.from_dict({**cfg, "description_control": "shuffled"}).validate()
    with pytest.raises(ValueError, match="fewshot.continual must be True or False"):
        TrainConfig.from_dict({**cfg, "fewshot": {"continual": "yes"}}).validate()


# ---------------------------------------------------------------------- trainer (tiny official world)
@pytest.mark.slow
def test_continual_retrieval_and_controls_train(world, tmp_path):  # noqa: F811
    """Continual 5-shot fine-tuning touches only Y_ood1; the retrieval cache runs on the stored
    student with the run's support and evaluation images; each control trains."""
    torch.set_num_threads(1)
    store = RunStore(tmp_path / "results", cache_dir=world["cache"])
    cfg = tiny_config(world, epochs=2, last_n=1, analysis=False,
                      fewshot={"shots": 5, "epochs": 1, "continual": True})
    rec = store.run(cfg, progress=False)
    final = rec["final"]
    assert {"acc_ood1_zeroshot", "acc_ood2_zeroshot", "acc_ood1_5shot", "acc_ood2_5shot"} <= set(final)
    assert "acc_ood_5shot" not in final
    # 3 unseen classes: Y_ood1 = the first one; its 5 support images all come from it
    assert rec["fewshot"]["support_size"] == 5
    from vldlib.data import load_dataset
    opts = dict(cfg["dataset_options"])
    ood = load_dataset("official", root=opts.pop("root"), **opts).ood
    label_of = dict(zip(ood.keys, ood.labels))
    assert {label_of[k] for k in rec["fewshot"]["support_keys"]} == {0}
    # retrieval on an ordinary 5-shot run: alpha 0 is the zero-shot rule on the same images
    plain = tiny_config(world, epochs=2, last_n=1, analysis=False, fewshot={"shots": 5, "epochs": 1})
    prec = store.run(plain, progress=False)
    out = retrieval_accuracy(plain, store.run_dir(plain), cache_dir=world["cache"])
    assert set(out) == {"acc_ood_zeroshot_fs_eval", "acc_ood_retrieval_teacher_keys", "acc_ood_retrieval_student_keys"}
    off = retrieval_accuracy(plain, store.run_dir(plain), cache_dir=world["cache"], alpha=0.0)
    assert off["acc_ood_retrieval_student_keys"] == pytest.approx(off["acc_ood_zeroshot_fs_eval"])
    assert 0 <= out["acc_ood_retrieval_student_keys"] <= 100 and prec["final"]["acc_ood_5shot"] is not None
    with pytest.raises(FileNotFoundError, match="train the run first"):
        retrieval_accuracy(plain, tmp_path / "nowhere", cache_dir=world["cache"])
    for control, desc in (("shuffled", "official"), ("waffle", "official"), ("templates", None)):
        r = train(tiny_config(world, epochs=1, last_n=1, analysis=False, fewshot=None, text_mode="average",
                              descriptions=desc, description_control=control), cache_dir=world["cache"], progress=False)
        assert r["final"]["acc_ood_zeroshot"] is not None
