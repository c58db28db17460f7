"""Teachers: frozen image/text encoders whose features the students imitate (paper §5.1).

The registry's front door: :func:`load_teacher` builds a teacher by name from its spec
(:mod:`vldlib.models.specs`), and this module re-exports what the families offer, so
``from vldlib.models.teachers import X`` works for each of them. Each family is one module:

* :mod:`vldlib.models.openclip` — :class:`OpenCLIPTeacher`, any open_clip model (the paper's is
  ``ViT-L-14`` with the ``openai`` weights); weights checks in :mod:`vldlib.models.weights`.
* :mod:`vldlib.models.conse` — :class:`ConSEProxyTeacher`, the offline default, a *proxy teacher*
  (not CLIP): ConSE over an EfficientNet-Lite ImageNet classifier (:mod:`vldlib.models.efficientnet`:
  BatchNorm folding, the OpenVINO backend) and MiniLM sentence embeddings (:mod:`vldlib.models.minilm`).

What every teacher offers, and the capabilities a spec declares: :mod:`vldlib.models.base`.
Adding a teacher is one module (a class with ``spec``, ``identifier``, ``preprocess_id``,
``embed_dim``, ``device``, ``encode_image``, ``encode_text``) and one
:func:`vldlib.models.specs.register_teacher` line (CONTRIBUTING.md, "Adding a teacher").

This module knows nothing about training, runs or the book.
"""
from __future__ import annotations

import inspect
from typing import Any

from vldlib.device import resolve_device
from vldlib.models.base import ImageNetTeacher, PromptTeacher, Teacher, imagenet_class_names
from vldlib.models.conse import (CONSE_BACKENDS, CONSE_COMBINE, CONSE_ENSEMBLE, ConSEProxyTeacher, conse_combine,
                                 conse_identifier, conse_name_embeddings, conse_text_space)
from vldlib.models.efficientnet import _resize_matrix
from vldlib.models.minilm import MiniLMTextEncoder
from vldlib.models.openclip import OpenCLIPTeacher
from vldlib.models.specs import TEACHER_SPECS, teacher_spec
from vldlib.models.weights import (PYTHON_CHECKPOINT_FIX, MissingWeightsError, ensure_openclip_weights,
                                   openclip_needs_weights)

__all__ = [
    "Teacher",
    "PromptTeacher",
    "ImageNetTeacher",
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
    "PYTHON_CHECKPOINT_FIX",
    "ensure_openclip_weights",
    "openclip_needs_weights",
    "imagenet_class_names",
    "resolve_device",
    "_resize_matrix",
]

#: Every teacher class by name (the specs' factories, :mod:`vldlib.models.specs`), as registered at import.
TEACHERS: dict[str, type] = {name: spec.cls() for name, spec in TEACHER_SPECS.items()}


def load_teacher(name: str, **options: Any) -> Teacher:
    """Build a teacher by name (any registered spec): ``"conse"`` (offline proxy teacher) or ``"openclip"``.

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
            params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
            raise ValueError(f"bad option for teacher {name!r}: {e}. Valid options: {params}") from e
        raise
