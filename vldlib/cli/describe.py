"""``python -m vldlib describe``: fill an LLM class-description cache (openai client)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from vldlib.data.specs import DATASET_SPECS
from vldlib.text.cache import CacheBusy, cache_path
from vldlib.text.descriptions import official_class_names
from vldlib.text.llm import LLMResponseError, generate_descriptions
from vldlib.text.prompts import PROMPTS, resolve_prompt

__all__ = ["build_parser", "main"]


def _class_names(dataset: str, classes_from: str | None, classes: str | None) -> tuple[str, list[str]]:
    if classes_from and classes:
        raise ValueError("give either --classes-from FOLDER or --classes a,b,c, not both")
    if classes:
        names = [c.strip() for c in classes.split(",") if c.strip()]
        if not names:
            raise ValueError(f"--classes {classes!r} holds no class name")
        return dataset, names
    if classes_from:
        return dataset, official_class_names(classes_from)
    spec = DATASET_SPECS.get(dataset)
    if spec is not None and spec.builtin_classes:
        return dataset, list(spec.builtin_classes)
    if Path(dataset, "label2text.txt").is_file():
        return Path(dataset).resolve().name, official_class_names(dataset)
    raise ValueError(
        f"unknown class list for dataset {dataset!r}: 'fashion-mnist' is built in; for other "
        "datasets pass --classes-from FOLDER (a folder with label2text.txt, e.g. the official "
        "data/CaltechBirds) or --classes a,b,c")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vldlib describe",
        description="Fill an LLM class-description cache with an OpenAI-compatible server. "
                    "Only classes missing from the cache are requested; the cache is saved "
                    "after every class. The API key is read from $OPENAI_API_KEY "
                    "(see --api-key-env).")
    p.add_argument("--dataset", required=True,
                   help="'fashion-mnist', any name with --classes/--classes-from, or a folder "
                        "holding label2text.txt")
    p.add_argument("--prompt", default="main",
                   help=f"one of {', '.join(PROMPTS)} (paper §6.1) or your own text with {{cls}}")
    p.add_argument("--model", required=True, help="chat model name, e.g. gpt-4o-mini")
    p.add_argument("--base-url", default=None,
                   help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--out", default=None, help="cache file (default: under the cache dir)")
    p.add_argument("--cache-dir", default=None,
                   help="cache root (default $VLD_CACHE or the user cache dir /vldbook)")
    p.add_argument("--n", type=int, default=1, help="descriptions per class (default 1)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--classes-from", default=None, help="folder with label2text.txt")
    p.add_argument("--classes", default=None, help="comma-separated class names")
    p.add_argument("--concurrency", type=int, default=4, help="parallel requests (default 4)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key")
    p.add_argument("--max-retries", type=int, default=5)
    p.add_argument("--base-delay", type=float, default=1.0,
                   help="first backoff delay in seconds (doubles per retry)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds one request may take in all before it is retried (default 30)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vldlib describe ...``: fill a cache and print where it is. 0 on success, 2 on a
    clear error (one line on stderr: no classes, no API key, a server that never answers or asks
    to wait too long, an unwritable or long-locked cache), 130 on Ctrl-C."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        dataset, names = _class_names(args.dataset, args.classes_from, args.classes)
        variant, _ = resolve_prompt(args.prompt)
        out = Path(args.out) if args.out else cache_path(dataset, variant, args.model,
                                                         args.cache_dir)
        result = generate_descriptions(
            names, dataset=dataset, model=args.model, prompt=args.prompt, n=args.n,
            temperature=args.temperature, base_url=args.base_url, api_key_env=args.api_key_env,
            out=out, concurrency=args.concurrency, max_retries=args.max_retries,
            base_delay=args.base_delay, timeout=args.timeout, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, LLMResponseError, CacheBusy) as err:
        print(f"vldlib describe: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vldlib describe: interrupted; finished classes are cached, run again to go on",
              file=sys.stderr)
        return 130
    except OSError as err:  # read-only folder, a file where a folder should be, disk full, ...
        where = err.filename or args.out or args.cache_dir
        print(f"vldlib describe: error: cannot write {where}: {err.strerror or err}; choose a writable "
              "--out (cache file) or --cache-dir", file=sys.stderr)
        return 2
    total = sum(len(v) for v in result.values())
    print(f"{len(result)} classes, {total} descriptions of {dataset!r} ({variant}, "
          f"{args.model}) in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
