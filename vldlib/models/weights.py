"""open_clip weights on this machine: whether a teacher needs registered weights, and a check that
they are present (or downloadable) before anything is built, failing with one line that says
how to fetch them or use a local checkpoint (:class:`MissingWeightsError`).

Used by :class:`vldlib.models.openclip.OpenCLIPTeacher` and checked once before a batch of runs
(:mod:`vldlib.train.preflight`).
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PYTHON_CHECKPOINT_FIX", "MissingWeightsError", "ensure_openclip_weights", "openclip_needs_weights",
           "hf_cache"]


def _offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids downloads."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


#: How a Python caller points the teacher at a local checkpoint (the CLI and the book say it in their own syntax).
PYTHON_CHECKPOINT_FIX = "load_teacher('openclip', model={model!r}, pretrained='/path/to/checkpoint.pt')"


class MissingWeightsError(RuntimeError):
    """The weights of an open_clip (model, pretrained tag) are not on this machine and cannot be
    downloaded. One line; :meth:`with_fix` words the local-checkpoint fix in the caller's syntax
    (a Python call, ``--set``, ``-p overrides``)."""

    def __init__(self, model: str, tag: str, problem: str, cache: str, repo: str = "") -> None:
        self.model, self.tag, self.problem, self.cache, self.repo = model, tag, problem, cache, repo
        super().__init__(self.with_fix(PYTHON_CHECKPOINT_FIX.format(model=model)))

    def __reduce__(self):  # rebuilt from its arguments when it crosses a process boundary
        return type(self), (self.model, self.tag, self.problem, self.cache, self.repo)

    def with_fix(self, checkpoint_fix: str) -> str:
        """The whole message, ending with the fixes; ``checkpoint_fix`` says how to use a local file."""
        fetch = f"huggingface-cli download {self.repo}" if self.repo else "huggingface-cli download <the tag's repo>"
        return (f"cannot load open_clip weights for model {self.model!r}, pretrained tag {self.tag!r}: {self.problem}. "
                f"To fix: pre-download them once on a machine with internet (python -c \"import open_clip; "
                f"open_clip.create_model('{self.model}', pretrained='{self.tag}')\" or {fetch}) and copy the "
                f"cache folder {self.cache} to the same place here (HF_HUB_OFFLINE=1 then finds them), "
                f"or use a local checkpoint file: {checkpoint_fix}")


def hf_cache(cache_dir: str | None) -> str:
    """The Hugging Face hub cache folder (``cache_dir`` when given): where the fix tells users to copy weights."""
    if cache_dir:
        return str(cache_dir)
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover - hint only
        return os.path.expanduser("~/.cache/huggingface/hub")


def openclip_needs_weights(model: str, pretrained: str | os.PathLike | None) -> bool:
    """Whether ``OpenCLIPTeacher(model, pretrained)`` fetches registered weights by tag (not a
    local file, not a model-config JSON or ``hf-hub:`` name, not random init)."""
    if pretrained is None or not str(pretrained):
        return False
    model, tag = str(model), str(pretrained)
    if model.endswith(".json") or ":" in model or Path(tag).expanduser().is_file():
        return False
    return not (os.sep in tag or tag.endswith((".pt", ".pth", ".bin", ".safetensors")))


def ensure_openclip_weights(model: str, tag: str, cache_dir: str | None = None) -> None:
    """Make sure the weights of (model, tag) are on disk (downloading them when online), or raise
    :class:`MissingWeightsError` (one line, with the fixes); an unknown tag is a ValueError."""
    import open_clip
    from open_clip import pretrained as oc_pretrained

    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise ValueError(
            f"open_clip model {model!r} has no pretrained tag {tag!r} and {tag!r} is not an existing file. "
            f"Known tags for {model}: {tags or 'none'} (see open_clip.list_pretrained()); "
            f"or pass pretrained='/path/to/checkpoint.pt'."
        )
    hf_hub = cfg.get("hf_hub", "")
    url = cfg.get("url", "")
    repo = hf_hub.rstrip("/").split("/")
    repo_id = "/".join(repo[:2]) if hf_hub else ""
    cache = hf_cache(cache_dir) if hf_hub else str(Path(cache_dir or os.path.expanduser("~/.cache/clip")))
    if _offline():
        if hf_hub and oc_pretrained.has_hf_hub():
            from huggingface_hub import try_to_load_from_cache

            repo_name, filename = os.path.split(hf_hub)
            names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
            for name in list(names):
                names.extend(oc_pretrained._get_safe_alternatives(name))
            found = [try_to_load_from_cache(repo_name, n, cache_dir=cache_dir) for n in names]
            if any(isinstance(f, str) and os.path.isfile(f) for f in found):
                return
            where = f"Hugging Face repo {repo_name!r}, files {sorted(set(names))}"
        elif url:
            target = Path(cache) / os.path.basename(url)
            if target.is_file():
                return
            where = f"{url}, expected at {target}"
        else:  # pragma: no cover - every registered tag has a source
            where = "an unknown source"
        raise MissingWeightsError(model, tag, f"HF_HUB_OFFLINE=1 and they are not in the local cache "
                                  f"{cache} ({where})", cache, repo_id)
    try:
        oc_pretrained.download_pretrained(cfg, cache_dir=cache_dir)
    except Exception as e:  # network errors come in many types
        first = str(e).strip().splitlines()
        raise MissingWeightsError(model, tag, f"the download failed ({type(e).__name__}: "
                                  f"{first[0] if first else ''})", cache, repo_id) from e
