"""Image captions for L_cap from an OpenAI-compatible vision chat endpoint (the paper used OFA;
paper.md §2.5): one short caption per training image, cached in ``captions.json`` with provenance
(resumable, written atomically), through the description generator's requester and fan-out
(:mod:`vldlib.text.llm`)."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from vldlib.io import write_json_atomic
from vldlib.text.captions import CAPTION_FORMAT, read_caption_cache
from vldlib.text.deadline import deadline_http_client
from vldlib.text.llm import LLMResponseError, _fan_out, _now, _Requester, generator_string

__all__ = ["CAPTION_INSTRUCTION", "CaptionsUnavailable", "image_data_url", "generate_captions", "LLMResponseError"]

#: The instruction sent with every image (OFA's is " what does the image describe?", paper.md §2.5).
CAPTION_INSTRUCTION = "What does the image describe? Answer with one short caption."


class CaptionsUnavailable(ValueError):
    """Captions are missing and cannot be generated (no API key and no server)."""


def image_data_url(image: Any) -> str:
    """A ``[C, H, W]`` float tensor in [0, 1] (C = 1 or 3) as a ``data:image/png;base64,...`` URL."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    arr = (image.detach().float().clamp(0, 1) * 255).round().to(dtype=torch.uint8).cpu().numpy()
    if arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise ValueError(f"an image must be [C, H, W] with C = 1 or 3, got shape {tuple(arr.shape)}")
    pil = Image.fromarray(arr[0] if arr.shape[0] == 1 else np.transpose(arr, (1, 2, 0)))
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def generate_captions(
    keys: Sequence[str],
    load: Callable[[list[int]], Any],
    *,
    model: str,
    out: str | os.PathLike,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    instruction: str = CAPTION_INSTRUCTION,
    temperature: float = 0.0,
    concurrency: int = 4,
    max_retries: int = 5,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    timeout: float = 60.0,
    save_every: int = 16,
    progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Fill the caption file ``out`` for the images ``keys`` and return ``{key: caption}``.

    ``load(positions)`` returns the images ``[B, C, H, W]`` (float in [0, 1]) at those positions
    of ``keys``. Only keys without a caption are requested, one chat-completions request each
    (``instruction`` + the image as a PNG data URL), ``concurrency`` at a time, with the retries
    of the description generator; the file (``{"format", "model", "instruction", "captions",
    "provenance"}``) is saved atomically every ``save_every`` captions and at the end or on error.
    Captions are cleaned and cut to length like descriptions (``provenance[key]["cut"]``).
    """
    keys = list(keys)
    if not keys or not all(isinstance(k, str) and k for k in keys):
        raise ValueError("keys must be a non-empty list of image keys")
    if concurrency < 1 or save_every < 1:
        raise ValueError("concurrency and save_every must be >= 1")
    path = Path(out)
    cache = read_caption_cache(path) if path.exists() else {
        "format": CAPTION_FORMAT, "model": model, "instruction": instruction, "captions": {}, "provenance": {}}
    if cache.get("instruction") not in (None, instruction) or cache.get("model") not in (None, model):
        raise ValueError(f"{path} holds captions made with another model or instruction "
                         f"({cache.get('model')!r}, {cache.get('instruction')!r}); use another --out file")
    cache["model"] = cache.get("model") or model
    cache["instruction"] = cache.get("instruction") or instruction
    captions: dict[str, str] = cache["captions"]
    missing = [i for i, k in enumerate(keys) if k not in captions]
    if not missing:
        return {k: captions[k] for k in keys}
    api_key = os.environ.get(api_key_env)
    if not api_key:
        if base_url is None:
            raise CaptionsUnavailable(
                f"{len(missing)} of {len(keys)} images have no caption in {path}; set {api_key_env} "
                "and run again, point at any OpenAI-compatible vision server with --base-url, or "
                "write the file by hand as a JSON object {image key: caption}")
        api_key = "not-needed"

    import openai

    client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout,
                           http_client=deadline_http_client(timeout, base_url))
    where = base_url or "the OpenAI API"
    requester = _Requester(client, model=model, template=instruction, temperature=temperature,
                           max_retries=max_retries, base_delay=base_delay, max_delay=max_delay,
                           where=where, sleep=sleep, timeout=timeout, subject="image")
    generator = generator_string()

    def job(pos: int) -> tuple[str, bool]:
        url = image_data_url(load([pos])[0])
        content = [{"type": "text", "text": instruction}, {"type": "image_url", "image_url": {"url": url}}]
        return requester._call(content, 1, keys[pos])[0]

    done_since = [0]

    def keep(pos: int, answer: tuple[str, bool]) -> None:
        text, cut = answer
        captions[keys[pos]] = text
        cache["provenance"][keys[pos]] = {"model": model, "temperature": temperature, "time": _now(),
                                          "generator": generator, "base_url": base_url,
                                          **({"cut": True} if cut else {})}
        done_since[0] += 1
        if done_since[0] >= save_every:
            write_json_atomic(path, cache)
            done_since[0] = 0

    try:
        _fan_out(missing, job, keep, concurrency=concurrency, desc="caption", unit="img", progress=progress)
    finally:
        client.close()
        write_json_atomic(path, cache)
    return {k: captions[k] for k in keys}
