"""Per-image captions for L_cap (paper Eq. 8, Table 5; developer reference paper.md §2.5).

The paper captions every training image with OFA-base and encodes each caption with the CLIP
text encoder (raw caption, no "a photo of" prefix). Two sources here:

- ``"file"``: a per-image caption file, ``captions.json`` in the dataset root (or any path),
  a JSON object ``{image key: caption}`` whose keys are the split's image keys (official data:
  the listed relative paths), or the file ``python -m vldlib caption`` writes through any
  OpenAI-compatible vision chat endpoint (:func:`vldlib.text.llm_captions.generate_captions`;
  ``{"format": "vldbook.captions/1", "model", "instruction", "captions": {...}, "provenance":
  {...}}``). :func:`read_caption_file` validates either.
- ``"proxy"`` (the offline world): a **proxy captioner**, *not a real captioner*: the caption of
  an image is the names of the proxy teacher's top ImageNet classes for it
  (:func:`proxy_caption`), e.g. ``"a photo of a sandal, a clog or a running shoe"``. It only says
  what an ImageNet classifier sees, which is close to what the ConSE proxy teacher's image feature
  already encodes; it is labelled "proxy captions" wherever it is used.

:data:`CAPTION_SOURCES` is the list the config validates against; :func:`caption_digest` is a
caption file's content digest (part of a run's identity, :mod:`vldlib.train.inputs`).
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

from vldlib.io import json_sha256

__all__ = ["CAPTION_SOURCES", "CAPTION_FILE", "CAPTION_FORMAT", "PROXY_CAPTION_TOP", "proxy_caption",
           "read_caption_file", "read_caption_cache", "captions_for", "caption_digest"]

#: Where captions come from: the proxy captioner (offline) or a per-image caption file.
CAPTION_SOURCES: tuple[str, ...] = ("proxy", "file")
#: The caption file's name inside an official dataset root.
CAPTION_FILE = "captions.json"
#: The format tag of a caption file written by the LLM captioner (with provenance).
CAPTION_FORMAT = "vldbook.captions/1"
#: How many of the proxy teacher's top ImageNet classes a proxy caption names.
PROXY_CAPTION_TOP = 3


def proxy_caption(names: Sequence[str]) -> str:
    """A proxy caption from ranked class names: ``"a photo of a A"``, ``"... a A or a B"``,
    ``"... a A, a B or a C"``."""
    names = [str(n) for n in names]
    if not names:
        raise ValueError("a proxy caption needs at least one class name")
    parts = [f"a {n}" for n in names]
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]
    return f"a photo of {body}"


def read_caption_file(path: str | os.PathLike) -> dict[str, str]:
    """``{image key: caption}`` from a JSON caption file; a clear error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"caption file {str(path)!r} not found; write a JSON object {{image key: caption}} there "
            "(keys as listed in the split files), or use captions='proxy' in the offline world")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"caption file {str(path)!r} is not valid UTF-8 JSON ({err}); "
                         "it must be one object {image key: caption}") from None
    if isinstance(data, dict) and data.get("format") == CAPTION_FORMAT:
        data = data.get("captions")
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                             for k, v in data.items()):
        raise ValueError(f"caption file {str(path)!r} must be one JSON object mapping each image key to "
                         "a non-empty caption string")
    return {k: v.strip() for k, v in data.items()}


def captions_for(keys: Sequence[str], captions: Mapping[str, str], source: str = "caption file") -> list[str]:
    """The captions of ``keys`` in order; every key must have one (the error names the first missing)."""
    missing = [k for k in keys if k not in captions]
    if missing:
        raise ValueError(f"{len(missing)} of {len(keys)} training images have no caption in the {source} "
                         f"(first: {missing[0]!r}); caption every training image")
    return [captions[k] for k in keys]


def read_caption_cache(path: str | os.PathLike) -> dict:
    """The LLM captioner's file with its provenance (``{"format", "model", "instruction",
    "captions", "provenance"}``); a plain ``{key: caption}`` file is wrapped with empty provenance."""
    captions = read_caption_file(path)
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("format") == CAPTION_FORMAT:
        prov = data.get("provenance") if isinstance(data.get("provenance"), dict) else {}
        return {"format": CAPTION_FORMAT, "model": data.get("model"), "instruction": data.get("instruction"),
                "captions": captions, "provenance": prov}
    return {"format": CAPTION_FORMAT, "model": None, "instruction": None, "captions": captions, "provenance": {}}


def caption_digest(path: str | os.PathLike) -> str:
    """The sha256 of a caption file's captions (canonical JSON of ``{image key: caption}`` as
    :func:`read_caption_file` reads them; the format wrapper and provenance do not count).
    Memoised by path, size and modification time."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        read_caption_file(path)  # raises its one-line FileNotFoundError
        raise
    return _caption_digest(str(path.resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=8)
def _caption_digest(path: str, size: int, mtime_ns: int) -> str:
    return json_sha256(read_caption_file(path))
