"""The stored teacher views of a run (``TrainConfig.teacher_views`` = K > 0; MobileCLIP's dataset
reinforcement): K augmented views of each X_train image drawn once from the student's own training
augmentation (:mod:`vldlib.data.views`), the teacher's embedding of each cached
(:mod:`vldlib.features.views`). At every step each image of the batch gets one of its K views,
drawn from the run's augmentation generator (part of every checkpoint, so a resumed run draws the
same views); the student sees that view at its crop size and imitates the teacher's embedding of
the same view in every loss that reads the teacher's image features (L_mse, L_im-cst, L_vlprox).

With K = 0 nothing here is used: the teacher's features of the whole image are the target and the
student sees a fresh augmentation (the paper's setting). The 5-shot stage keeps that setting. Views
are drawn per image whatever ``per_image_aug`` says (one view shared by a batch would not be stored views).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vldlib.data.transforms import StudentTrainTransform
from vldlib.data.views import ViewSpec, view_params
from vldlib.features.views import teacher_view_features, view_feature_store
from vldlib.progress import Progress

__all__ = ["TrainViews", "view_spec"]


def view_spec(count: int, load_size: int, transform: StudentTrainTransform) -> ViewSpec:
    """The views of a run: ``count`` per image of ``load_size`` pixels, from the student's own
    training augmentation family (its RandomResizedCrop scale and ratio, its flip)."""
    return ViewSpec(count=int(count), size=int(load_size), scale=transform.scale, ratio=transform.ratio,
                    flip=transform.flip)


class TrainViews:
    """The K views of every X_train image: boxes ``[N, K, 4]`` and flips ``[N, K]`` (CPU), the
    teacher's embeddings ``[N, K, D]`` (on the run's device) and the student's transform."""

    def __init__(self, boxes: torch.Tensor, flips: torch.Tensor, features: torch.Tensor,
                 transform: StudentTrainTransform, cache_file: Path | None = None) -> None:
        if boxes.shape[:2] != flips.shape or features.shape[:2] != flips.shape:
            raise ValueError(f"views: boxes {tuple(boxes.shape)}, flips {tuple(flips.shape)} and features "
                             f"{tuple(features.shape)} disagree on [N, K]")
        self.boxes, self.flips, self.features, self.transform = boxes, flips, features, transform
        self.count = int(flips.shape[1])
        self.cache_file = cache_file  # named when the features hold non-finite values

    @classmethod
    def of_split(cls, teacher: Any, split: Any, count: int, transform: StudentTrainTransform, *,
                 dataset_id: str, cache_dir: str | Path, device: torch.device,
                 progress: bool | Progress = False) -> "TrainViews":
        """The views of ``split`` (X_train): drawn, and embedded by ``teacher`` where not cached."""
        spec = view_spec(count, split.load_size, transform)
        feats = teacher_view_features(teacher, split, spec, dataset_id=dataset_id, cache_dir=cache_dir,
                                      progress=progress)
        boxes, flips = view_params(split.keys, spec)
        store = view_feature_store(teacher, split, spec, dataset_id=dataset_id, cache_dir=cache_dir)
        return cls(boxes, flips, feats.float().to(device), transform,
                   store.index_path(spec.view_keys(split.keys), dataset_id))

    def batch(self, idx: torch.Tensor, images: torch.Tensor,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One view per image of a batch (``idx``: the images' rows in X_train; ``images``: their
        loaded pixels ``[B, C, S, S]``), drawn from ``generator``: the student's normalised crops
        ``[B, C, crop, crop]`` and the teacher's embeddings of the same views ``[B, D]``."""
        rows = idx.cpu()
        view = torch.randint(self.count, (len(rows),), generator=generator)
        x = self.transform.replay(images, self.boxes[rows, view], self.flips[rows, view])
        dev = self.features.device
        return x, self.features[rows.to(dev), view.to(dev)]
