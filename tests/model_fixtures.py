"""Test helper: a tiny open_clip model with random weights, saved as a local checkpoint.

Usage (any test, any process)::

    from model_fixtures import make_tiny_openclip_checkpoint, tiny_openclip_model  # tests/ is on sys.path
    ckpt = make_tiny_openclip_checkpoint(tmp_path / "tiny.pt")
    teacher = load_teacher("openclip", model=tiny_openclip_model(ckpt), pretrained=str(ckpt), device="cpu")

The architecture is written next to the checkpoint as an open_clip model-config JSON
(``<checkpoint>.json``); that file path is the ``model`` name to load it with, so the
pair works in subprocesses too (no global open_clip registry change).  It is a real
open_clip ``CLIP`` (ViT image tower, transformer text tower, CLIP tokenizer), 64 px input,
embedding dim :data:`TINY_OPENCLIP_DIM`, ~3.5M parameters (most in the token embedding).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

TINY_OPENCLIP_DIM = 32
TINY_OPENCLIP_CONFIG: dict = {
    "embed_dim": TINY_OPENCLIP_DIM,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def tiny_openclip_model(checkpoint: str | os.PathLike) -> str:
    """The ``model=`` value to load a checkpoint written by :func:`make_tiny_openclip_checkpoint`."""
    return str(Path(checkpoint).with_suffix(".json"))


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_tiny_openclip_checkpoint(path: str | os.PathLike, seed: int = 0) -> Path:
    """Build the tiny open_clip CLIP with seeded random weights and save its state dict at ``path``.

    Also writes the model config to ``tiny_openclip_model(path)``.  The same seed gives the same
    file contents.  Returns the checkpoint path.
    """
    from open_clip.model import CLIP

    path = Path(path)
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = CLIP(**json.loads(json.dumps(TINY_OPENCLIP_CONFIG)))
    finally:
        torch.random.set_rng_state(gen_state)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    _atomic_write(path, lambda tmp: torch.save(state, tmp))
    config_text = json.dumps(TINY_OPENCLIP_CONFIG, indent=2, sort_keys=True)
    _atomic_write(Path(tiny_openclip_model(path)), lambda tmp: Path(tmp).write_text(config_text, "utf-8"))
    return path


def tiny_official_world(base: Path, per_class: int = 8) -> dict:
    """A tiny official-format dataset (3 seen + 3 unseen classes of 32 px images) and a random
    tiny OpenCLIP checkpoint under ``base``: ``{"root", "ckpt", "cache", "base"}``."""
    from data_fixtures import write_tiny_official_root

    root = write_tiny_official_root(base / "data", n_seen=3, n_unseen=3, per_class=per_class, size=32)
    ckpt = make_tiny_openclip_checkpoint(base / "tiny_clip.pt")
    return {"root": root, "ckpt": ckpt, "cache": base / "cache", "base": base}

