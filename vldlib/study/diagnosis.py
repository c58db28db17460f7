"""How much of the teacher can a student learn here? The diagnosis chapter's measurements.

Per class split, of the teacher alone (:func:`teacher_geometry`): its zero-shot accuracies, the
cone its X_train features sit in (mean pairwise cosine, norm of the mean normalised feature), the
share of their variance between classes, and the zero-shot X_ood accuracy of its features kept
to their mean and top-k principal directions of X_train (:mod:`vldlib.core.geometry`).
Per trained run (:func:`student_geometry`): the share of the teacher's centred feature variance
the student's features explain on held-out images (R², :func:`vldlib.core.geometry.explained_variance`):
in the same space (what L_mse compares) on X_id and X_ood, and after a least-squares map fitted
on X_id and scored on X_ood (how much of the teacher is linearly recoverable on unseen classes).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from vldlib.core.geometry import (explained_variance, mean_norm, mean_pairwise_cosine, principal_zero_shot,
                                  variance_split)
from vldlib.core.metrics import mean_per_class_accuracy, zero_shot_predict
from vldlib.data import load_dataset
from vldlib.features import CachedTextTeacher, LazyTeacher, teacher_image_features
from vldlib.paths import default_cache_dir
from vldlib.train.texts import config_text_features
from vldlib.train.trainer import held_out_features

__all__ = ["KS", "GEOMETRY_LABELS", "GEOMETRY_VERSION", "feature_geometry", "teacher_geometry", "student_geometry"]

#: The principal directions kept (besides all of them: the plain zero-shot accuracy).
KS: tuple[int, ...] = (1, 2, 4, 8, 16)

#: The page names of a teacher's measurements (:func:`feature_geometry`'s fields).
GEOMETRY_LABELS: dict[str, str] = {
    "acc_id": "X_id (%)", "acc_ood_zeroshot": "X_ood zero-shot (%)", "mean_cos": "mean cosine",
    "mean_norm": "norm of the mean", "between_share": "between-class share",
    **{f"acc_ood_top{k}": f"X_ood, top-{k} directions (%)" for k in KS}}


def _accuracy(feats: torch.Tensor, text: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * mean_per_class_accuracy(zero_shot_predict(feats, text), labels)


def feature_geometry(feats: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor],
                     text_seen: torch.Tensor, text_unseen: torch.Tensor,
                     ks: Sequence[int] = KS) -> dict[str, float]:
    """One split's teacher measurements from its features ``feats[part]`` and ``labels[part]``
    (parts ``train``, ``id``, ``ood``) and class texts: ``acc_id``, ``acc_ood_zeroshot`` (%),
    ``mean_cos`` and ``mean_norm`` of X_train, ``between_share`` of its variance,
    ``acc_ood_top{k}`` (%) on X_ood with the top-k directions of X_train kept."""
    split = variance_split(feats["train"], labels["train"])
    row = {"acc_id": _accuracy(feats["id"], text_seen, labels["id"]),
           "acc_ood_zeroshot": _accuracy(feats["ood"], text_unseen, labels["ood"]),
           "mean_cos": mean_pairwise_cosine(feats["train"]), "mean_norm": mean_norm(feats["train"]),
           "between_share": split["between_share"]}
    for k in ks:
        row[f"acc_ood_top{k}"] = 100.0 * principal_zero_shot(feats["ood"], text_unseen, labels["ood"], k,
                                                             basis=feats["train"])
    return row


#: The version of :func:`student_geometry`'s numbers in the runs' memos (bump it when they change).
GEOMETRY_VERSION = 1


def teacher_geometry(config: Mapping[str, Any], *, cache_dir: str | os.PathLike | None = None,
                     ks: Sequence[int] = KS) -> dict[str, float]:
    """:func:`feature_geometry` of the teacher of a run config on its class split (features from
    the cache, encoded on first use; class texts as the trainer builds them)."""
    cache = Path(cache_dir) if cache_dir is not None else Path(config.get("cache_dir") or default_cache_dir())
    options = dict(config["dataset_options"])
    ds = load_dataset(config["dataset"], root=options.pop("root", None), **options)
    teacher = LazyTeacher.in_cache(config["teacher"], config["teacher_options"], cache)
    feats = {part: teacher_image_features(teacher, getattr(ds, part), dataset_id=ds.name, cache_dir=cache,
                                          progress=False) for part in ("train", "id", "ood")}
    labels = {part: torch.as_tensor(getattr(ds, part).labels) for part in feats}
    seen, unseen = config_text_features(CachedTextTeacher(teacher, cache), config, ds)  # as the runs cached them
    return feature_geometry(feats, labels, seen, unseen, ks)


def student_geometry(config: Mapping[str, Any], run_dir: str | os.PathLike, *,
                     cache_dir: str | os.PathLike | None = None) -> dict[str, float]:
    """R² of a finished run's student against its teacher on held-out images: ``r2_id``,
    ``r2_ood`` (same space) and ``r2_ood_mapped`` (a least-squares map fitted on X_id)."""
    feats = held_out_features(config, run_dir, cache_dir=cache_dir)
    (s_id, t_id), (s_ood, t_ood) = feats["id"], feats["ood"]
    out = {}
    if s_id.shape[1] == t_id.shape[1]:
        out["r2_id"] = explained_variance(s_id, t_id)
        out["r2_ood"] = explained_variance(s_ood, t_ood)
    out["r2_ood_mapped"] = explained_variance(s_ood, t_ood, fit=(s_id, t_id))
    return out
