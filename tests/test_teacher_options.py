"""ConSE proxy teacher options (temperature, combine, centring, template ensembles, backbones): the
defaults keep today's identifier and features bit for bit; every other option changes the cache key."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from vldlib.models.teachers import (CONSE_ENSEMBLE, ConSEProxyTeacher, conse_combine, conse_identifier,
                                    load_teacher)


def test_conse_combine_formulas():
    g = torch.Generator().manual_seed(0)
    logits, emb = torch.randn(4, 1000, generator=g), F.normalize(torch.randn(1000, 8, generator=g), dim=-1)
    # the plain ConSE formula, written out
    probs = logits.softmax(-1)
    p, idx = probs.topk(10, dim=-1)
    expect = torch.einsum("bt,btd->bd", p / p.sum(-1, keepdim=True), emb[idx])
    assert torch.equal(conse_combine(logits, emb, 10), expect)
    # T = 1: the top class's embedding, whatever the temperature
    top = logits.argmax(-1)
    assert torch.allclose(conse_combine(logits, emb, 1, temperature=5.0), emb[top])
    # a very high temperature: equal weights over the top-T
    _, idx = logits.topk(3, dim=-1)
    assert torch.allclose(conse_combine(logits, emb, 3, temperature=1e6), emb[idx].mean(1), atol=1e-5)
    # a large top-T (the dense path) gives the same embedding as the gather
    probs = logits.softmax(-1)
    p, idx = probs.topk(100, dim=-1)
    assert torch.allclose(conse_combine(logits, emb, 100),
                          torch.einsum("bt,btd->bd", p / p.sum(-1, keepdim=True), emb[idx]), atol=1e-6)
    # logits: weights are the per-image centred logits
    z = logits - logits.mean(-1, keepdim=True)
    w, idx = z.topk(5, dim=-1)
    assert torch.allclose(conse_combine(logits, emb, 5, combine="logits"),
                          torch.einsum("bt,btd->bd", w, emb[idx]))


def test_identifier_default_unchanged_and_options_distinct():
    assert conse_identifier("lite0", 10, ("a photo of a {c}",)) == "conse-proxy:lite0:T10:a photo of a {c}"
    grid = [conse_identifier(b, t, tpl, temp, comb, c) for b, t, tpl, temp, comb, c in itertools.product(
        ("lite0", "lite2"), (5, 10), (("a photo of a {c}",), CONSE_ENSEMBLE), (1.0, 2.0), ("probs", "logits"),
        (False, True))]
    assert len(set(grid)) == len(grid)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(6, 1, 32, 32, generator=g)


@pytest.fixture(scope="module")
def default_teacher() -> ConSEProxyTeacher:
    return load_teacher("conse", backbone="lite0", batch_size=4)


@pytest.mark.slow
def test_default_features_bit_identical(default_teacher, images):
    t = default_teacher
    assert t.identifier == "conse-proxy:lite0:T10:a photo of a {c}"
    assert t.preprocess_id == "conse:invert-auto:grey2rgb:resize224-bilinear-aa:norm(255x-127)/128"
    out = t.encode_image(images)
    # the ConSE embedding as the teacher computed it before the options existed
    emb = t.class_text_embeddings
    some = [0, 417, 999]  # s(y) is the plain MiniLM embedding of "a photo of a <name>" (a smaller batch pads less)
    assert torch.allclose(emb[some], t.text_encoder([f"a photo of a {t.class_names[i]}" for i in some]), atol=1e-6)
    with torch.inference_mode():
        ref = []
        for chunk in images.split(4):
            probs = t.logits(chunk).softmax(-1)
            p, idx = probs.topk(10, dim=-1)
            ref.append(torch.einsum("bt,btd->bd", p / p.sum(-1, keepdim=True), emb[idx]))
    assert torch.equal(out, torch.cat(ref))
    assert torch.equal(t.encode_text(["a photo of a Dress"]), t.text_encoder(["a photo of a Dress"]))


@pytest.mark.slow
def test_centred_teacher_shares_one_space(default_teacher, images):
    c = load_teacher("conse", backbone="lite0", batch_size=4, centre=True, top_t=20, temperature=2.0)
    assert c.identifier == "conse-proxy:lite0:T20:a photo of a {c}:temp2.0:centred"
    raw = default_teacher.class_text_embeddings
    mu = raw.mean(0)
    assert torch.allclose(c.name_mean, mu)
    assert torch.allclose(c.class_text_embeddings, F.normalize(raw - mu, dim=-1))
    # class texts are centred with the same mean as the ImageNet names
    text = default_teacher.encode_text(["a photo of a Dress", "a photo of a Bag"])
    assert torch.allclose(c.encode_text(["a photo of a Dress", "a photo of a Bag"]),
                          F.normalize(text - mu, dim=-1), atol=1e-6)
    assert torch.allclose(c.encode_image(images), conse_combine(default_teacher_logits(default_teacher, images),
                                                                c.class_text_embeddings, 20, 2.0), atol=1e-6)
    # centring spreads the ImageNet names: their mean pairwise cosine drops to about -1/999
    from vldlib.core.geometry import mean_pairwise_cosine

    assert mean_pairwise_cosine(c.class_text_embeddings) < 0.05 < mean_pairwise_cosine(raw)


def default_teacher_logits(t: ConSEProxyTeacher, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([t.logits(ch) for ch in images.split(4)])


@pytest.mark.slow
def test_ensemble_templates(default_teacher):
    e = load_teacher("conse", backbone="lite0", template=list(CONSE_ENSEMBLE[:2]))
    assert e.identifier == f"conse-proxy:lite0:T10:{CONSE_ENSEMBLE[0]} | {CONSE_ENSEMBLE[1]}"
    names = default_teacher.class_names[:3]
    e.class_names = names  # three names keep the test fast; the construction is per name
    parts = [default_teacher.text_encoder([t.format(c=n) for n in names]) for t in CONSE_ENSEMBLE[:2]]
    assert torch.allclose(e.class_text_embeddings[:3], F.normalize((parts[0] + parts[1]) / 2, dim=-1), atol=1e-6)


@pytest.mark.parametrize("options, match", [
    ({"temperature": 0}, "temperature must be a positive"),
    ({"temperature": "hot"}, "temperature must be a positive"),
    ({"combine": "mean"}, "combine must be one of"),
    ({"combine": "logits", "temperature": 2.0}, "no effect with combine='logits'"),
    ({"centre": "yes"}, "centre must be True or False"),
    ({"template": []}, "non-empty list"),
    ({"template": ["a {c}", "no class"]}, "must contain"),
    ({"backbone": "lite9"}, "unknown ConSE backbone"),
])
def test_bad_options_name_the_value(options, match):
    with pytest.raises(ValueError, match=match):
        ConSEProxyTeacher(**options)


def test_imagenet_logits_needs_the_conse_teacher():
    from vldlib.features import imagenet_logits

    class Other:
        identifier, preprocess_id, embed_dim = "openclip:ViT-B-32:openai", "p", 512

    with pytest.raises(ValueError, match="ConSE proxy teacher"):
        imagenet_logits(Other(), object(), dataset_id="d")
