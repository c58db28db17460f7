"""Teacher-feature cache: teacher image and text features computed once and kept on disk.

One import for the four modules of the cache, each with one job:

* :mod:`vldlib.features.store` — :class:`FeatureStore`, the on-disk store of one encoder on one
  source (chunks, split indexes, checksums, foreign folders left alone, a full disk in one line);
* :mod:`vldlib.features.images` — :func:`teacher_image_features`, and the ImageNet quantities of a
  teacher that declares an ImageNet classifier (:func:`proxy_caption_classes`, :func:`imagenet_logits`);
* :mod:`vldlib.features.views` — :func:`teacher_view_features`, the teacher's embeddings of stored
  augmented views of each image (``TrainConfig.teacher_views``);
* :mod:`vldlib.features.text` — :func:`text_features`, keyed by the teacher and the exact texts;
* :mod:`vldlib.features.lazy` — :class:`LazyTeacher` (built on first need) and :class:`CachedTextTeacher`.
"""
from __future__ import annotations

import torch  # noqa: F401 - tests patch torch.save through this module

from vldlib.features.images import image_feature_file, imagenet_logits, proxy_caption_classes, teacher_image_features
from vldlib.features.lazy import TEACHER_META, CachedTextTeacher, LazyTeacher, built_teacher, teacher_meta_path
from vldlib.features.store import (DEFAULT_CHUNK_ROWS, FORMAT, META, CacheEntryError, FeatureStore, ForeignCacheError,
                                   keys_hash, tensor_sha256)
from vldlib.features.text import text_feature_folder, text_features
from vldlib.features.views import teacher_view_features, view_feature_store
from vldlib.paths import default_cache_dir

__all__ = ["FORMAT", "DEFAULT_CHUNK_ROWS", "META", "FeatureStore", "CacheEntryError", "ForeignCacheError", "keys_hash",
           "tensor_sha256", "teacher_image_features", "proxy_caption_classes", "imagenet_logits", "image_feature_file",
           "text_features", "text_feature_folder", "teacher_view_features", "view_feature_store", "LazyTeacher", "CachedTextTeacher", "TEACHER_META", "teacher_meta_path",
           "built_teacher", "default_cache_dir"]
