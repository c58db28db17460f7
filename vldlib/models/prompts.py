"""CoOp prompt learning (Zhou et al., IJCV 2022) as the paper's Table 5 uses it (developer
reference paper.md §2.6).

``n_ctx`` learnable context vectors, shared by all classes, replace "a photo of": the prompt of
class y is ``"X X ... X {name}."`` (or ``"X ... X {name} . {description}."``) whose n_ctx
placeholder token embeddings are swapped for the context before the frozen teacher text encoder
runs. Initialised from N(0, 0.02²) in the token-embedding width (768 for ViT-L/14's text
transformer, 384 for the proxy teacher's MiniLM). The text features are recomputed from the
current context at every step, so gradients reach the context vectors; the teacher stays frozen.

A teacher supports prompt learning when its spec declares ``prompt_learning``
(:func:`vldlib.models.specs.declares`): it is then a :class:`vldlib.models.base.PromptTeacher`,
with ``token_width`` and ``encode_text_with_context(ctx, texts)``
(:class:`vldlib.models.openclip.OpenCLIPTeacher`, :class:`vldlib.models.conse.ConSEProxyTeacher`).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vldlib.models.specs import declares

__all__ = ["PROMPT_LEARNING_DEFAULTS", "PromptLearner", "coop_texts", "prompt_learning_options"]

#: The paper's CoOp settings (``--prompt-learner-nctx 8``, N(0, 0.02²) initialisation).
PROMPT_LEARNING_DEFAULTS: dict[str, Any] = {"n_ctx": 8, "init_std": 0.02}


def prompt_learning_options(options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The prompt-learning options with defaults filled (None when off); bad input -> ValueError."""
    if options is None:
        return None
    if not isinstance(options, Mapping):
        raise ValueError(f"prompt_learning must be None or a dict like {PROMPT_LEARNING_DEFAULTS}, got {options!r}")
    bad = sorted(set(options) - set(PROMPT_LEARNING_DEFAULTS))
    if bad:
        raise ValueError(f"unknown prompt_learning option(s) {bad}; valid: {sorted(PROMPT_LEARNING_DEFAULTS)}")
    out = {**PROMPT_LEARNING_DEFAULTS, **options}
    n = out["n_ctx"]
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 32:
        raise ValueError(f"prompt_learning.n_ctx must be an integer in 1..32 (the paper uses 8), got {n!r}")
    std = out["init_std"]
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not 0 < std < 10:
        raise ValueError(f"prompt_learning.init_std must be a number in (0, 10) (the paper uses 0.02), got {std!r}")
    out["init_std"] = float(std)
    return out


def coop_texts(class_strings: Sequence[Sequence[str]], n_ctx: int) -> list[list[str]]:
    """Prefix every class string with ``n_ctx`` placeholder words ``"X"`` (CoOp's prompt form)."""
    prefix = " ".join(["X"] * int(n_ctx))
    return [[f"{prefix} {s}" for s in strings] for strings in class_strings]


class PromptLearner(nn.Module):
    """The learnable context ``ctx`` ``[n_ctx, width]`` and the class features it gives.

    ``forward(teacher, prompts, mode)``: ``prompts`` are :func:`coop_texts` (one list per class);
    ``mode="first"`` encodes each class's first prompt (``[C, D]``, as the teacher returns it),
    ``"average"`` the normalised mean of its normalised prompt features.
    """

    def __init__(self, n_ctx: int, width: int, init_std: float = 0.02,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.ctx = nn.Parameter(torch.randn(int(n_ctx), int(width), generator=generator) * float(init_std))

    def forward(self, teacher: Any, prompts: Sequence[Sequence[str]], mode: str = "first") -> Tensor:
        if not declares(teacher, "prompt_learning"):
            raise ValueError(f"prompt learning needs a teacher with encode_text_with_context (open_clip or "
                             f"the ConSE proxy); {getattr(teacher, 'identifier', teacher)!r} has none")
        if mode == "first":
            return teacher.encode_text_with_context(self.ctx, [p[0] for p in prompts])
        counts = [len(p) for p in prompts]
        flat = [s for p in prompts for s in p]
        feats = F.normalize(teacher.encode_text_with_context(self.ctx, flat), dim=-1)
        return F.normalize(torch.stack([f.mean(0) for f in torch.split(feats, counts)]), dim=-1)
