"""``python -m vldlib caption``: caption every training image of an official-format dataset
through an OpenAI-compatible vision chat endpoint (L_cap's captions, paper Eq. 8, Table 5).

Writes ``<data root>/captions.json`` (or ``--out``), which ``captions="file"`` runs read. Only
images without a caption are requested; the file is saved as it fills, so a rerun resumes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from vldlib.data import load_dataset
from vldlib.text.captions import CAPTION_FILE
from vldlib.text.llm_captions import CAPTION_INSTRUCTION, LLMResponseError, generate_captions

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vldlib caption",
        description="Caption the training images of an official-format dataset with a vision chat "
                    "model (OpenAI-compatible server). The API key is read from $OPENAI_API_KEY.")
    p.add_argument("--data-root", required=True, help="official-format data root (train/, label2text.txt, ...)")
    p.add_argument("--model", required=True, help="vision chat model name")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--out", default=None, help=f"caption file (default: <data root>/{CAPTION_FILE})")
    p.add_argument("--instruction", default=CAPTION_INSTRUCTION, help="the text sent with every image")
    p.add_argument("--load-size", type=int, default=256, help="images are sent at this size (default 256)")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--max-retries", type=int, default=5)
    p.add_argument("--api-key-env", default="OPENAI_API_KEY")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        root = Path(args.data_root)
        if not root.is_dir():
            raise FileNotFoundError(f"--data-root {str(root)!r} is not a folder")
        ds = load_dataset("official", root=str(root), load_size=args.load_size,
                          crop_size=min(224, args.load_size), descriptions=False)
        train = ds.train
        out = Path(args.out) if args.out else root / CAPTION_FILE
        got = generate_captions(train.keys, lambda pos: train.get_batch(pos)[0], model=args.model, out=out,
                                base_url=args.base_url, api_key_env=args.api_key_env,
                                instruction=args.instruction, concurrency=args.concurrency,
                                max_retries=args.max_retries, progress=not args.quiet)
    except (ValueError, FileNotFoundError, LLMResponseError) as err:
        print(f"vldlib caption: {err}", file=sys.stderr)
        return 2
    print(f"{len(got)} captions in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
