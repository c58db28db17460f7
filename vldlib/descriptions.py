"""LLM class descriptions (the paper's language enrichment, §5-6) and class text features.

What this module holds:

- :data:`PROMPTS`: the paper's main prompt and its three variants (Table 7), exact wordings.
- :func:`read_official`: the official ``chatgpt.txt`` aligned with ``label2text.txt``.
- :func:`load_descriptions`: the shipped hand-written Fashion-MNIST sets, or a filled cache.
- :func:`generate_descriptions` (from :mod:`vldlib.describe_llm`): fill a cache with the
  ``openai`` client; :func:`main` is ``python -m vldlib describe``.
- :func:`class_texts`, :func:`class_text_features`, :func:`descriptor_scores`: from class names
  and descriptions to the teacher's text features.

The paper's construction (official code, ``--chatgpt-raw-text-file``) is one string per class,
``l(y) = "a photo of {name} . {sentence}"``, encoded by T_txt and used as ê_y in Eq. 1 and
Eq. 6 (and for every evaluation). Averaging several descriptions and per-descriptor scoring are
extensions offered here for study; they are not the released method.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from .describe_cache import (
    FASHION_MNIST_CLASSES,
    PROMPTS,
    VARIANT_TITLES,
    DescriptionCache,
    cache_path,
    descriptions_dir,
    parse_cache,
    read_cache,
    resolve_prompt,
    slug,
)
from .describe_llm import (
    DescriptionsUnavailable,
    LLMResponseError,
    generate_descriptions,
)

__all__ = [
    "PROMPTS", "VARIANT_TITLES", "FASHION_MNIST_CLASSES", "read_official",
    "official_class_names", "load_descriptions", "shipped_descriptions",
    "generate_descriptions", "class_texts", "class_text_features", "descriptor_scores",
    "DescriptionsUnavailable", "LLMResponseError", "main",
]

TEXT_MODES = ("average", "first", "per_descriptor")


# ----------------------------------------------------------------------------- official files
def official_class_names(folder: str | os.PathLike) -> list[str]:
    """Natural class names of an official dataset folder, in label order.

    From ``<folder>/label2text.txt`` (``<folder_name> <id> <natural_name_with_underscores>``,
    underscores -> spaces; parsed by :func:`vldlib.data.official.read_label2text`). A natural
    name used by several classes (tiered-ImageNet's two "crane" and two "maillot") gets its
    folder name appended, ``"crane (n02012849)"``, so that every class has its own key (the same
    rule as :func:`vldlib.data.official.unique_names`).
    """
    from .data.official import read_label2text, unique_names

    return unique_names(read_label2text(Path(folder) / "label2text.txt"))


def read_official(folder: str | os.PathLike) -> dict[str, list[str]]:
    """``{class name: [sentence]}`` in label order from ``chatgpt.txt`` + ``label2text.txt``.

    Line i of ``chatgpt.txt`` describes the class on line i of ``label2text.txt`` (the official
    code asserts equal line counts; so does this). Names as :func:`official_class_names`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"official data folder {folder} does not exist; pass a folder of the official "
            "repository's data/ directory, e.g. .../data/Flower102")
    path = folder / "chatgpt.txt"
    if not path.is_file():
        raise FileNotFoundError(
            f"no chatgpt.txt in {folder}; it ships with the official repository's "
            "data/<dataset>/ folders (or generate descriptions: python -m vldlib describe)")
    from .data.official import read_chatgpt

    names = official_class_names(folder)
    sentences = read_chatgpt(path)
    if len(sentences) != len(names):
        raise ValueError(
            f"{path} has {len(sentences)} lines but {folder / 'label2text.txt'} has "
            f"{len(names)} classes; the files must be aligned line by line (one sentence per "
            "class) - use the two files from the same official data/<dataset>/ folder")
    empty = [names[i] for i, s in enumerate(sentences) if not s]
    if empty:
        raise ValueError(f"{path}: empty description line for class(es) {empty[:5]}")
    return {name: [s] for name, s in zip(names, sentences)}


# ---------------------------------------------------------------------------- loading sets
def shipped_descriptions(variant: str = "main") -> DescriptionCache:
    """The hand-written Fashion-MNIST description set of ``variant`` (package data)."""
    if variant not in PROMPTS:
        raise ValueError(f"no shipped Fashion-MNIST set for {variant!r}; "
                         f"shipped variants: {', '.join(PROMPTS)}")
    res = resources.files("vldlib").joinpath("resources", "descriptions",
                                              f"fashion-mnist_{variant}.json")
    data = json.loads(res.read_text(encoding="utf-8"))
    return parse_cache(data, where=f"vldlib/resources/descriptions/fashion-mnist_{variant}.json")


def load_descriptions(dataset: str, variant: str = "main",
                      cache_dir: str | os.PathLike | None = None,
                      model: str | None = None) -> dict[str, list[str]]:
    """``{class: [sentence, ...]}`` in label order for ``dataset`` and prompt ``variant``.

    ``"fashion-mnist"`` without ``model`` -> the shipped hand-written sets (not LLM output).
    Otherwise the cache file ``<cache_dir>/descriptions/<dataset>_<variant>_<model>.json``
    (cache root: ``$VLD_CACHE`` or the user cache dir); with ``model=None`` the only cache file
    of that dataset and variant. The cache must be complete. For the official datasets' shipped
    ``chatgpt.txt`` use :func:`read_official`.
    """
    variant_key, _ = resolve_prompt(variant)
    if dataset == "fashion-mnist" and model is None:
        return shipped_descriptions(variant_key).ordered()
    if model is not None:
        path = cache_path(dataset, variant_key, model, cache_dir)
    else:
        folder = descriptions_dir(cache_dir)
        found = sorted(folder.glob(f"{slug(dataset)}_{slug(variant_key)}_*.json"))
        if len(found) > 1:
            raise ValueError(
                f"several description caches for {dataset!r}/{variant_key!r} in {folder}: "
                f"{', '.join(p.name for p in found)}; pass model=... to choose one")
        path = found[0] if found else cache_path(dataset, variant_key, "MODEL", cache_dir)
    if not path.is_file():
        raise FileNotFoundError(
            f"no {variant_key!r} descriptions for {dataset!r} at {path}; generate them with "
            f"`python -m vldlib describe --dataset {dataset} --prompt {variant} --model M "
            "[--classes-from FOLDER]` (needs OPENAI_API_KEY or --base-url), or for the "
            "official main-prompt sentences use vldlib.descriptions.read_official(folder)")
    cache = read_cache(path)
    missing = cache.missing()
    if missing:
        raise DescriptionsUnavailable(
            f"{path} is incomplete: {len(missing)} class(es) have no description "
            f"({', '.join(repr(c) for c in missing[:10])}); resume with `python -m vldlib "
            f"describe --dataset {dataset} --prompt {variant} --model {cache.model or 'M'}`")
    return cache.ordered()


# ---------------------------------------------------------------------------- text features
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


# ---------------------------------------------------------------------------- command line
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
    if dataset == "fashion-mnist":
        return dataset, list(FASHION_MNIST_CLASSES)
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
    p.add_argument("--timeout", type=float, default=60.0, help="request timeout in seconds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vldlib describe ...``: fill a cache and print where it is. 0 on success."""
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
    except (ValueError, FileNotFoundError, LLMResponseError) as err:
        print(f"vldlib describe: error: {err}", file=sys.stderr)
        return 1
    total = sum(len(v) for v in result.values())
    print(f"{len(result)} classes, {total} descriptions of {dataset!r} ({variant}, "
          f"{args.model}) in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
