"""Teachers as specs: what the rest of vldlib may ask of a teacher, declared once per teacher.

A :class:`TeacherSpec` names a teacher family and its capabilities: whether it is a *proxy* (not
CLIP), what the book calls it, where L_cap's captions come from by default, whether prompt
learning can run on it. Code outside ``vldlib.models`` asks the spec (:func:`teacher_spec`) and
never compares a teacher's name. This module imports no model code (cheap for the CLI and the
book); the classes are found by their import path when a teacher is built.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

__all__ = ["TeacherSpec", "TEACHER_SPECS", "DEFAULT_TEACHER", "register_teacher", "teacher_spec"]


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher family.

    ``factory``: ``"module:Class"`` built with the teacher options. ``proxy``: a stand-in for CLIP
    (the book says so wherever its numbers appear). ``label``: its name on the book's pages.
    ``caption_source``: where L_cap's captions come from when a config names none (``"proxy"``:
    the teacher's own top ImageNet classes; ``"file"``: the dataset's ``captions.json``).
    ``prompt_learning``: the teacher offers ``encode_text_with_context`` and ``token_width``
    (learnable prompt context, CoOp-style). ``downloads_weights``: its weights come from the
    internet (checked once before a batch of runs, :mod:`vldlib.train.preflight`). ``note``: one sentence for a page that shows its numbers.
    """

    name: str
    factory: str
    label: str
    proxy: bool = False
    caption_source: str = "file"
    prompt_learning: bool = False
    downloads_weights: bool = False
    note: str = ""

    def cls(self) -> type:
        """The teacher class (imported on first use)."""
        module, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module), attr)


#: Every teacher family by name.
TEACHER_SPECS: dict[str, TeacherSpec] = {}


def register_teacher(spec: TeacherSpec) -> TeacherSpec:
    """Add ``spec`` to :data:`TEACHER_SPECS` (its name must be new)."""
    if spec.name in TEACHER_SPECS:
        raise ValueError(f"teacher name {spec.name!r} is registered already")
    TEACHER_SPECS[spec.name] = spec
    return spec


def teacher_spec(name: str) -> TeacherSpec:
    """The spec of teacher ``name`` (case ignored); an unknown name is a one-line error."""
    key = str(name).lower()
    if key not in TEACHER_SPECS:
        raise ValueError(f"unknown teacher {name!r}: known teachers are {sorted(TEACHER_SPECS)}")
    return TEACHER_SPECS[key]


register_teacher(TeacherSpec(
    name="conse", factory="vldlib.models.teachers:ConSEProxyTeacher", label="ConSE proxy", proxy=True,
    caption_source="proxy",
    note=("The teacher here is the **ConSE proxy teacher** (EfficientNet-Lite ImageNet classifier + MiniLM "
          "sentence embeddings), not CLIP: the text space is the same idea, its quality is far lower.")))
register_teacher(TeacherSpec(
    name="openclip", factory="vldlib.models.teachers:OpenCLIPTeacher", label="open_clip CLIP",
    prompt_learning=True, downloads_weights=True))

#: The teacher a config names when it names none (the offline proxy).
DEFAULT_TEACHER = "conse"
