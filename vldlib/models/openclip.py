"""The open_clip teacher: any open_clip CLIP model, frozen (paper §5.1: ``ViT-L-14`` with the
``openai`` weights, 768-d), by pretrained tag, local checkpoint file or model-config JSON.

Takes the *un-augmented loaded image batch* ``[B, C, H, W]`` (float in [0, 1], C = 1 or 3) and
applies CLIP's preprocessing itself; returns fp32 features on the CPU, computed in inference mode.
``identifier`` and ``preprocess_id`` are stable strings (cache keys of :mod:`vldlib.features`).
Offers prompt learning (CoOp context through the text tower). Weights checks: :mod:`vldlib.models.weights`.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vldlib.device import resolve_device
from vldlib.models.base import check_images, check_placeholders, check_texts, freeze, sha256_file
from vldlib.models.specs import TeacherSpec, teacher_spec
from vldlib.models.weights import MissingWeightsError, ensure_openclip_weights, hf_cache

__all__ = ["OpenCLIPTeacher"]


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

    spec: ClassVar[TeacherSpec] = teacher_spec("openclip")

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
                                          hf_cache(cache_dir)) from e
            arch = model
            self.tokenizer = open_clip.get_tokenizer(model)
        if is_file:
            weights = f"file-{sha256_file(pretrained_path)[:16]}"
        else:
            weights = pretrained_str or "random"
        self.model = freeze(net).to(self.device)
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
        x = check_images(images, type(self).__name__).to(self.device, torch.float32)
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
        check_images(images, type(self).__name__)
        out = []
        with torch.inference_mode():
            for chunk in images.split(self.batch_size):
                out.append(self.model.encode_image(self.preprocess(chunk)).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)

    def encode_text(self, texts: Sequence[str]) -> Tensor:
        """T_txt(l): M strings -> [M, embed_dim] fp32 on CPU (unnormalised)."""
        texts = check_texts(texts, type(self).__name__)
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
        texts = check_texts(texts, type(self).__name__)
        m = self.model
        tokens = self.tokenizer(texts).to(self.device)
        check_placeholders(tokens, int(ctx.shape[0]), self.tokenizer(["X"])[0, 1].item(), 1, "open_clip")
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
