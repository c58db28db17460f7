"""5-shot fine-tuning protocol (paper §3.6 and App. C; official ``FSCLIPImageDataset`` +
``FewShotSampler``), as small pure functions used by :mod:`vldlib.train`.

- :func:`select_support`: the support set is the first ``shots`` images of every unseen class in
  sorted key order (for the official layout the key is ``val/<class>/<file>``, so this is the
  sorted file-name order of the official code); it is deterministic, not random. The remaining
  X_ood images form the evaluation set.
- :func:`fewshot_batches`: one fine-tuning epoch is one pass over X_train in "half-batches".
  With batch size B and S support images: if S > B/2, each batch holds B/2 support images drawn
  at random without replacement plus B - B/2 training images; otherwise each batch holds all S
  support images topped up with B - S training images. In every batch the support part is at
  most the training part (the paper's "at most half of samples come from few-shot data"): the
  last, shorter training chunk of an epoch gets at most as many support images as it has
  training images.
- Labels span Y_id ∪ Y_ood: a support image of unseen class c gets label |Y_id| + c, and
  L_cls / L_vlprox use the text features of all |Y_id| + |Y_ood| classes (see
  :func:`fewshot_labels`).
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch


def select_support(keys: Sequence[str], labels: Sequence[int], num_classes: int,
                   shots: int = 5) -> tuple[list[int], list[int]]:
    """Split X_ood indices into (support, evaluation).

    ``support`` holds, class by class (label order), the indices of the first ``shots`` images
    of the class when its images are sorted by key; ``evaluation`` is every other index in the
    original order. A class with fewer than ``shots`` images is a ValueError.
    """
    if len(keys) != len(labels):
        raise ValueError(f"{len(keys)} keys but {len(labels)} labels")
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    by_class: dict[int, list[int]] = {c: [] for c in range(num_classes)}
    for i, c in enumerate(labels):
        if not 0 <= int(c) < num_classes:
            raise ValueError(f"label {c} of image {keys[i]!r} is outside 0..{num_classes - 1}")
        by_class[int(c)].append(i)
    support: list[int] = []
    for c in range(num_classes):
        members = sorted(by_class[c], key=lambda i: keys[i])
        if len(members) < shots:
            raise ValueError(f"unseen class {c} has only {len(members)} image(s), fewer than "
                             f"shots={shots}; lower fewshot.shots or use more images per class")
        support.extend(members[:shots])
    chosen = set(support)
    evaluation = [i for i in range(len(keys)) if i not in chosen]
    return support, evaluation


def check_support(labels: Sequence[int], class_names: Sequence[str], shots: int, dataset: str) -> None:
    """Raise a ValueError (naming the classes, the counts and the fix) unless every unseen class
    has more than ``shots`` X_ood images: ``shots`` for the support set and at least one to
    evaluate. Called at the start of a run, before the main stage trains."""
    counts = [0] * len(class_names)
    for c in labels:
        counts[int(c)] += 1
    short = [f"{class_names[c]!r} ({n})" for c, n in enumerate(counts) if n <= shots]
    if short:
        raise ValueError(f"fewshot.shots={shots} needs more than {shots} X_ood images of every unseen class of "
                         f"{dataset} ({shots} to fine-tune on, the rest to evaluate); too few: "
                         f"{', '.join(short[:10])}{' ...' if len(short) > 10 else ''}; lower fewshot.shots "
                         "or use more images per class")


def fewshot_batches(n_train: int, n_support: int, batch_size: int,
                    generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One fine-tuning epoch: yields ``(train_idx, support_idx)`` index tensors per batch.

    ``train_idx`` walks a fresh random permutation of ``range(n_train)`` in chunks of
    ``B - min(S, B // 2)``; ``support_idx`` is ``B // 2`` indices drawn without replacement from
    ``range(S)`` when ``S > B // 2``, else all ``S`` (capped at ``len(train_idx)``, so support
    never exceeds half of a batch). Draws use ``generator`` only.
    """
    if n_train < 1 or n_support < 1:
        raise ValueError(f"few-shot batches need training and support images, got {n_train} and {n_support}")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 for few-shot batches, got {batch_size}")
    half = batch_size // 2
    quota = half if n_support > half else n_support
    train_per_batch = batch_size - quota
    perm = torch.randperm(n_train, generator=generator)
    for step in range(math.ceil(n_train / train_per_batch)):
        train_idx = perm[step * train_per_batch:(step + 1) * train_per_batch]
        take = min(quota, len(train_idx))
        if n_support > half or take < n_support:
            support_idx = torch.randperm(n_support, generator=generator)[:take]
        else:
            support_idx = torch.arange(n_support)
        yield train_idx, support_idx


def fewshot_labels(train_labels: torch.Tensor, support_labels: torch.Tensor,
                   num_seen: int) -> torch.Tensor:
    """Labels over Y_id ∪ Y_ood for a batch ``[train; support]``: unseen labels offset by |Y_id|."""
    return torch.cat([train_labels, support_labels + num_seen])


#: Tip-Adapter's defaults (Zhang et al., ECCV 2022), also the official code's ``--few-shot-method retrieval``.
RETRIEVAL_ALPHA = 1.0
RETRIEVAL_BETA = 5.5


def retrieval_logits(query: torch.Tensor, keys: torch.Tensor, key_labels: torch.Tensor, text: torch.Tensor,
                     alpha: float = RETRIEVAL_ALPHA, beta: float = RETRIEVAL_BETA) -> torch.Tensor:
    """Tip-Adapter-style cache classifier (paper §3.7 / App. E, Table 10; Zhang et al. 2022).

    ``logits[i, y] = cos(q_i, t_y) + alpha * sum_{m: label_m = y} exp(-beta * (1 - cos(q_i, k_m)))``

    with ``query`` ``[N, D]`` (the student's features of the evaluation images), ``keys`` ``[M, D]``
    (the cached support features: the teacher's in the official code, the student's in the
    paper's text), ``key_labels`` ``[M]`` in ``0..C-1`` and ``text`` ``[C, D]``; every feature is
    L2-normalised here. The text term has no temperature, as in the official code. ``alpha = 0``
    is the zero-shot rule. Returns ``[N, C]``.
    """
    if query.ndim != 2 or keys.ndim != 2 or text.ndim != 2:
        raise ValueError(f"query, keys and text must be 2-D [n, D], got {tuple(query.shape)}, "
                         f"{tuple(keys.shape)}, {tuple(text.shape)}")
    if not query.shape[1] == keys.shape[1] == text.shape[1]:
        raise ValueError(f"feature dims differ: query {query.shape[1]}, keys {keys.shape[1]}, text {text.shape[1]}")
    key_labels = torch.as_tensor(key_labels, dtype=torch.long, device=keys.device)
    if key_labels.shape != (keys.shape[0],):
        raise ValueError(f"key_labels must be [M] = [{keys.shape[0]}], got {tuple(key_labels.shape)}")
    if len(key_labels) and (key_labels.min() < 0 or key_labels.max() >= text.shape[0]):
        raise ValueError(f"key_labels must lie in 0..{text.shape[0] - 1} (one text feature per class)")
    if not (alpha >= 0 and beta >= 0):
        raise ValueError(f"alpha and beta must be >= 0, got alpha={alpha!r}, beta={beta!r}")
    q = torch.nn.functional.normalize(query.float(), dim=-1)
    k = torch.nn.functional.normalize(keys.float(), dim=-1)
    t = torch.nn.functional.normalize(text.float(), dim=-1)
    affinity = torch.exp(-beta * (1.0 - q @ k.T))                      # [N, M]
    one_hot = torch.nn.functional.one_hot(key_labels, t.shape[0]).to(q.dtype)  # [M, C]
    return q @ t.T + alpha * affinity @ one_hot
