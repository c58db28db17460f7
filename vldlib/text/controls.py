"""Controls for the question "do the descriptions help because of what they say?": class
texts that keep the form of the enriched texts but not their content.

- ``"shuffled"``: the same description sets, moved to other classes (a derangement over the
  sorted class names, drawn with ``seed``): every class gets another class's sentences.
- ``"waffle"``: WaffleCLIP's random descriptors (Roth et al., ICCV 2023): the *same* ``n``
  descriptors for every class, half "which has" + two random words, half "which has" + two
  random character strings of the same lengths. WaffleCLIP draws its words from an English word
  list; here they are drawn from the pooled vocabulary of the dataset's own descriptions (no
  download, same register), so a descriptor may contain a word from any class.
- ``"templates"``: name-only prompt ensembling: the class name in CLIP's seven ensemble
  templates (Radford et al. 2021, the repository's ImageNet notebook), no description at all.

:func:`control_descriptions` returns ``(descriptions, enriched_template)`` to pass on to
:func:`vldlib.text.classifier.class_text_features` (use ``mode="average"``: one mean feature per
class over its strings). This module knows nothing of teachers or training.
"""
from __future__ import annotations

import random
import re
import string
from collections.abc import Mapping, Sequence

__all__ = ["DESCRIPTION_CONTROLS", "CLIP_ENSEMBLE_TEMPLATES", "shuffled_descriptions", "waffle_descriptions",
           "control_descriptions"]

DESCRIPTION_CONTROLS: tuple[str, ...] = ("shuffled", "waffle", "templates")
#: CLIP's seven prompt-ensemble templates (openai/CLIP, notebooks/Prompt_Engineering_for_ImageNet).
CLIP_ENSEMBLE_TEMPLATES: tuple[str, ...] = (
    "itap of a {name}.", "a bad photo of the {name}.", "a origami {name}.", "a photo of the large {name}.",
    "a {name} in a video game.", "art of the {name}.", "a photo of the small {name}.",
)


def shuffled_descriptions(descriptions: Mapping[str, Sequence[str]], seed: int = 0) -> dict[str, list[str]]:
    """Every class's descriptions moved to another class: with ``p`` a random order of the sorted
    class names (``random.Random(seed)``), class ``p[i]`` gets the sentences of ``p[i + 1]`` (cyclic),
    so no class keeps its own (needs at least two classes)."""
    names = sorted(descriptions)
    if len(names) < 2:
        raise ValueError(f"shuffling needs descriptions of at least 2 classes, got {len(names)}")
    order = names[:]
    random.Random(seed).shuffle(order)
    return {order[i]: list(descriptions[order[(i + 1) % len(order)]]) for i in range(len(order))}


def _vocabulary(descriptions: Mapping[str, Sequence[str]] | None) -> list[str]:
    words = set()
    for sentences in (descriptions or {}).values():
        for s in sentences:
            words.update(w.lower() for w in re.findall(r"[A-Za-z]{3,}", s))
    return sorted(words)


def waffle_descriptions(names: Sequence[str], n: int = 8, *, seed: int = 0,
                        descriptions: Mapping[str, Sequence[str]] | None = None) -> dict[str, list[str]]:
    """WaffleCLIP-style random descriptors, the same ``n`` for every class in ``names``: ``n // 2``
    of "which has <word> <word>" (words from the pooled vocabulary of ``descriptions``; random
    characters when there is none) and the rest "which has <chars> <chars>" of matching lengths."""
    if n < 1:
        raise ValueError(f"n must be >= 1 descriptors, got {n}")
    rng = random.Random(seed)
    vocab = _vocabulary(descriptions)

    def chars(k: int) -> str:
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(k))

    out = []
    for i in range(n):
        words = [rng.choice(vocab) for _ in range(2)] if vocab else [chars(rng.randint(3, 9)) for _ in range(2)]
        if i >= n // 2:
            words = [chars(len(w)) for w in words]
        out.append("which has " + " ".join(words))
    return {name: list(out) for name in names}


def control_descriptions(kind: str, names: Sequence[str], descriptions: Mapping[str, Sequence[str]] | None,
                         enriched_template: str, *, seed: int = 0) -> tuple[dict[str, list[str]], str]:
    """``(descriptions, enriched_template)`` of control ``kind`` for the classes ``names``.

    ``descriptions`` are the real sets (all classes of the dataset, so that shuffling crosses
    the seen/unseen boundary); "shuffled" needs them, "waffle" takes its vocabulary and its
    number of descriptors (the median count per class, 8 without) from them."""
    if kind not in DESCRIPTION_CONTROLS:
        raise ValueError(f"unknown description control {kind!r}; valid: {', '.join(DESCRIPTION_CONTROLS)}")
    if kind == "templates":
        return {n: [t.format(name=n) for t in CLIP_ENSEMBLE_TEMPLATES] for n in names}, "{description}"
    if kind == "shuffled":
        if not descriptions:
            raise ValueError("the 'shuffled' control needs real descriptions to shuffle (set descriptions)")
        return shuffled_descriptions(descriptions, seed), enriched_template
    counts = sorted(len(v) for v in (descriptions or {}).values())
    n = counts[len(counts) // 2] if counts else 8
    return waffle_descriptions(names, n, seed=seed, descriptions=descriptions), enriched_template
