"""Faults of the teachers (``vldlib.models.teachers``): non-finite images are one error at every
entry point."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("teacher_cls", ["OpenCLIPTeacher", "ConSEProxyTeacher"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_images_are_one_line_in_every_teacher(teacher_cls, bad):
    """``max() > 1.5`` is False for NaN: the teachers check finiteness first (all entry points)."""
    import torch

    import vldlib.models.teachers as teachers

    cls = getattr(teachers, teacher_cls)
    teacher = object.__new__(cls)  # the check runs before any model is touched
    teacher._ov = object()  # the ConSE OpenVINO entry point, which checks the images itself
    teacher.invert, teacher.channels_last = "auto", False
    images = torch.rand(4, 1, 8, 8)
    images[1, 0, 2, 2] = bad
    images[3, 0, 0, 0] = bad
    entries = [teacher.encode_image, teacher.preprocess] + ([teacher.logits] if hasattr(cls, "logits") else [])
    for entry in entries:
        with pytest.raises(ValueError, match=rf"{teacher_cls}.encode_image got 2 non-finite value"):
            entry(images)
