"""From class names (and descriptions) to the teacher's class text features: the zero-shot
classifier the trainer and the chapters use (paper §3: ŷ = argmax_y cos(S(x), T_txt(l(y)))).

The paper's construction (official code, ``--chatgpt-raw-text-file``) is one string per class,
``l(y) = "a photo of {name} . {sentence}"``, encoded by T_txt and used as ê_y in Eq. 1 and
Eq. 6 (and for every evaluation): ``mode="first"``. Averaging several descriptions
(``"average"``) and per-descriptor scoring (``"per_descriptor"``, :func:`descriptor_scores`)
are extensions offered here for study; they are not the released method.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

__all__ = ["TEXT_MODES", "class_texts", "class_text_features", "descriptor_scores"]

#: How several strings per class become class features (see :func:`class_text_features`).
TEXT_MODES = ("average", "first", "per_descriptor")


def class_texts(names: Sequence[str], descriptions: Mapping[str, Sequence[str]] | None = None,
                template: str = "a photo of {name}",
                enriched_template: str = "a photo of {name} . {description}",
                ) -> list[list[str]]:
    """The strings l(y) of each class: ``[[text, ...] per class]``.

    Without descriptions: ``[template.format(name=y)]``. With descriptions: one string
    ``enriched_template.format(name=y, description=d)`` per description d of y, in order (the
    paper's code uses the first/only one: ``"a photo of {name} . {sentence}"``, ref. §6.3).
    """
    if "{name}" not in template:
        raise ValueError(f"template must contain '{{name}}', got {template!r}")
    if descriptions is not None and "{description}" not in enriched_template:
        raise ValueError("enriched_template must contain '{name}' and '{description}', "
                         f"got {enriched_template!r}")
    names = list(names)
    if not names:
        raise ValueError("names is empty: pass the class names in label order")
    try:
        if descriptions is None:
            return [[template.format(name=n)] for n in names]
        missing = [n for n in names if not descriptions.get(n)]
        if missing:
            raise ValueError(
                f"no descriptions for class(es) {missing[:10]}; the descriptions' keys must be "
                "the class names (pass descriptions=None for plain names)")
        return [[enriched_template.format(name=n, description=d) for d in descriptions[n]]
                for n in names]
    except (KeyError, IndexError) as err:
        raise ValueError(f"templates may only use the fields {{name}} and {{description}}; "
                         f"{template!r} / {enriched_template!r} use {err}") from None


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


def class_text_features(teacher: Any, names: Sequence[str],
                        descriptions: Mapping[str, Sequence[str]] | None = None, *,
                        mode: str = "average", template: str = "a photo of {name}",
                        enriched_template: str = "a photo of {name} . {description}",
                        batch_size: int = 256) -> torch.Tensor:
    """Class text features through ``teacher.encode_text`` (texts from :func:`class_texts`).

    - ``"first"``: ê_y = T_txt(l_1(y)), the class's first string, unnormalised ([C, D]); the
      paper's construction (one string per class, ref. §6.3).
    - ``"average"``: ê_y = normalize(1/M_y Σ_m normalize(T_txt(l_m(y)))) ([C, D], unit norm).
      With a single string per class it equals normalize(``"first"``).
    - ``"per_descriptor"``: normalize(T_txt(l_m(y))) as [C, M, D]; every class needs the same
      number M of descriptions. Score images with :func:`descriptor_scores`.
    """
    if mode not in TEXT_MODES:
        raise ValueError(f"mode must be one of {TEXT_MODES}, got {mode!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    texts = class_texts(names, descriptions, template, enriched_template)
    if mode == "first":
        texts = [t[:1] for t in texts]
    counts = [len(t) for t in texts]
    if mode == "per_descriptor" and len(set(counts)) != 1:
        raise ValueError(
            f"per_descriptor needs the same number of descriptions for every class, got "
            f"{min(counts)}..{max(counts)}; give every class as many, or use mode='average'")
    flat = [s for t in texts for s in t]
    with torch.no_grad():
        chunks = [torch.as_tensor(teacher.encode_text(flat[i:i + batch_size])).float()
                  for i in range(0, len(flat), batch_size)]
    feats = torch.cat(chunks).cpu()
    if feats.ndim != 2 or feats.shape[0] != len(flat):
        raise ValueError(f"teacher.encode_text returned shape {tuple(feats.shape)} for "
                         f"{len(flat)} texts; expected [{len(flat)}, D]")
    if mode == "first":
        return feats
    if mode == "per_descriptor":
        return _normalize(feats).reshape(len(texts), counts[0], feats.shape[1])
    per_class = torch.split(_normalize(feats), counts)
    return _normalize(torch.stack([f.mean(0) for f in per_class]))


def descriptor_scores(image_feats: torch.Tensor, per_desc_feats: torch.Tensor) -> torch.Tensor:
    """s(x, y) = 1/M Σ_m cos(x, e_{y,m}): mean cosine to a class's descriptors, [N, C].

    ``image_feats`` is [N, D]; ``per_desc_feats`` is [C, M, D] (normalised here). The predicted
    class is the argmax over y.
    """
    if image_feats.ndim != 2 or per_desc_feats.ndim != 3:
        raise ValueError(f"expected image_feats [N, D] and per_desc_feats [C, M, D], got "
                         f"{tuple(image_feats.shape)} and {tuple(per_desc_feats.shape)}")
    if image_feats.shape[1] != per_desc_feats.shape[2]:
        raise ValueError(f"feature dimensions differ: {image_feats.shape[1]} (images) vs "
                         f"{per_desc_feats.shape[2]} (descriptors)")
    c, m, d = per_desc_feats.shape
    sims = _normalize(image_feats) @ _normalize(per_desc_feats).reshape(c * m, d).T
    return sims.reshape(-1, c, m).mean(-1)


