"""The paper's class-description prompts (Li et al., ICCV 2023, §5, §6 Table 7) and how a
prompt is named: a variant key for the paper's four wordings, ``custom-<sha1[:8]>`` for a user's
own text. ``{cls}`` marks where the class name goes."""
from __future__ import annotations

import hashlib

__all__ = ["PROMPTS", "VARIANT_TITLES", "resolve_prompt", "fill_prompt"]

#: The paper's prompts, exact wordings (paper §5 / App. D main prompt; §6 Table 7 variants).
PROMPTS: dict[str, str] = {
    "main": (
        "Use a single sentence to describe the appearance and shape of {cls}. "
        "Only describe the shape and appearance."
    ),
    "succinct": (
        "Use a single sentence to broadly describe the appearance and shape of {cls}. "
        "Don't give too much details. Only describe the shape and appearance."
    ),
    "detailed": (
        "Use a single sentence and short, simple, descriptive phrases to describe the "
        "detailed appearance and detailed shape of {cls}."
    ),
    "distinct": (
        "Use a single sentence to describe the unique, distinctive appearance and shape of "
        "{cls}. Only describe the unique, distinctive shape and appearance."
    ),
}

#: Display names of the variants (as in the paper's Table 7).
VARIANT_TITLES: dict[str, str] = {
    "main": "Main prompt",
    "succinct": "More Succinct",
    "detailed": "More Detailed",
    "distinct": "More Distinct",
}

def resolve_prompt(prompt: str) -> tuple[str, str]:
    """Return ``(variant_key, template)`` for a variant name or a user's own prompt.

    A user's prompt is any string containing ``{cls}``; its variant key is
    ``"custom-" + sha1(prompt)[:8]`` so that different prompts never share a cache file.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt must be a variant name "
                         f"({', '.join(PROMPTS)}) or a string containing '{{cls}}'")
    if prompt in PROMPTS:
        return prompt, PROMPTS[prompt]
    if "{cls}" in prompt:
        digest = hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:8]
        return f"custom-{digest}", prompt
    raise ValueError(
        f"unknown prompt {prompt!r}: use one of the paper's variants ({', '.join(PROMPTS)}) "
        "or your own prompt text with '{cls}' where the class name goes, e.g. "
        "'Describe the shape of {cls} in one sentence.'"
    )


def fill_prompt(template: str, name: str) -> str:
    """The prompt for one class: ``template`` with every ``{cls}`` replaced by ``name``."""
    return template.replace("{cls}", name)
