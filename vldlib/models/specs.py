"""Teachers as specs: what the rest of vldlib may ask of a teacher, declared once per teacher.

A :class:`TeacherSpec` names a teacher family and its capabilities: whether it is a *proxy* (not
CLIP), what the book calls it, where L_cap's captions come from by default, whether prompt
learning can run on it, whether it has the ImageNet classifier the proxy captioner reads. Code
outside ``vldlib.models`` asks the spec (:func:`teacher_spec`, or :func:`declares` for a built
teacher) and never compares a teacher's name. This module imports no model code (cheap for the CLI and the
book); the classes are found by their import path when a teacher is built.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = ["TeacherSpec", "TEACHER_SPECS", "DEFAULT_TEACHER", "CAPABILITIES", "declares", "register_teacher",
           "teacher_spec", "unregister_teacher"]


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher family.

    ``factory``: ``"module:Class"`` built with the teacher options. ``proxy``: a stand-in for CLIP
    (the book says so wherever its numbers appear). ``label``: its name on the book's pages.
    ``caption_source``: where L_cap's captions come from when a config names none (``"proxy"``:
    the teacher's own top ImageNet classes; ``"file"``: the dataset's ``captions.json``).
    ``prompt_learning``: the teacher offers ``encode_text_with_context`` and ``token_width``
    (learnable prompt context, CoOp-style; :class:`vldlib.models.base.PromptTeacher`).
    ``imagenet_classifier``: the teacher offers ``imagenet_probs`` and ``logits`` over the 1000
    ImageNet classes (what the proxy captioner reads; :class:`vldlib.models.base.ImageNetTeacher`).
    ``downloads_weights``: its weights come from the internet (checked once before a batch of runs,
    :mod:`vldlib.train.preflight`). ``note``: one sentence for a page that shows its numbers.
    A teacher class carries its spec as the class attribute ``spec``.
    """

    name: str
    factory: str
    label: str
    proxy: bool = False
    caption_source: str = "file"
    prompt_learning: bool = False
    imagenet_classifier: bool = False
    downloads_weights: bool = False
    note: str = ""

    def cls(self) -> type:
        """The teacher class (imported on first use)."""
        module, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module), attr)


#: The capabilities a spec declares (the boolean fields a caller may ask :func:`declares` about).
CAPABILITIES: tuple[str, ...] = ("prompt_learning", "imagenet_classifier")


def declares(teacher: Any, capability: str) -> bool:
    """Whether ``teacher`` (a built teacher or a wrapper that forwards ``spec``) declares ``capability``
    (one of :data:`CAPABILITIES`) in its spec; an object with no spec declares nothing."""
    if capability not in CAPABILITIES:
        raise ValueError(f"unknown teacher capability {capability!r}: use one of {list(CAPABILITIES)}")
    spec = getattr(teacher, "spec", None)
    return isinstance(spec, TeacherSpec) and bool(getattr(spec, capability))


#: Every teacher family by name.
TEACHER_SPECS: dict[str, TeacherSpec] = {}


def register_teacher(spec: TeacherSpec) -> TeacherSpec:
    """Add ``spec`` to :data:`TEACHER_SPECS` (its name must be new); :func:`unregister_teacher` removes it."""
    if spec.name in TEACHER_SPECS:
        raise ValueError(f"teacher name {spec.name!r} is registered already")
    TEACHER_SPECS[spec.name] = spec
    return spec


def unregister_teacher(name: str) -> None:
    """Remove teacher ``name`` from :data:`TEACHER_SPECS` (tests that register a teacher of their own)."""
    TEACHER_SPECS.pop(str(name).lower(), None)


def teacher_spec(name: str) -> TeacherSpec:
    """The spec of teacher ``name`` (case ignored); an unknown name is a one-line error."""
    key = str(name).lower()
    if key not in TEACHER_SPECS:
        raise ValueError(f"unknown teacher {name!r}: known teachers are {sorted(TEACHER_SPECS)}")
    return TEACHER_SPECS[key]


register_teacher(TeacherSpec(
    name="conse", factory="vldlib.models.conse:ConSEProxyTeacher", label="ConSE proxy", proxy=True,
    caption_source="proxy", prompt_learning=True, imagenet_classifier=True,
    note=("The teacher here is the **ConSE proxy teacher** (EfficientNet-Lite ImageNet classifier + MiniLM "
          "sentence embeddings), not CLIP: the text space is the same idea, its quality is far lower.")))
register_teacher(TeacherSpec(
    name="openclip", factory="vldlib.models.openclip:OpenCLIPTeacher", label="open_clip CLIP",
    prompt_learning=True, downloads_weights=True))

#: The teacher a config names when it names none (the offline proxy).
DEFAULT_TEACHER = "conse"
