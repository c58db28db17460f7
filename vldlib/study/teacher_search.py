"""The proxy-teacher search: which ConSE options give a stronger, better-spread offline teacher.

Run by ``python -m vldlib.study.teacher_search``; writes ``vldlib/resources/teacher_search.json``.

It is a search over the **teacher alone**, on the **development class splits**
(:data:`vldlib.study.grid.DEV_SPLITS`), with the offline profile's data (images per class, image
size) and backend. No student is trained and no Table 1 method is compared: the criterion
(:data:`CRITERION`, declared with the grid before any candidate was scored) reads the teacher's own
zero-shot accuracy and the shape of its features.

Each candidate is a set of ConSE options (:data:`GRID`: backbone x ImageNet-name template(s) x
centring x combination/temperature x top-T). The backbone runs once per backbone on the split
images (:func:`vldlib.features.imagenet_logits`, cached); every other option is recomputed from
those logits and the MiniLM name and class-text embeddings (cached text features) with the
teacher's own helpers (:func:`vldlib.models.teachers.conse_combine`, ``conse_name_embeddings``,
``conse_text_space``), so the candidates are what :class:`ConSEProxyTeacher` with those options
computes.

Per candidate and development split it records the teacher's zero-shot X_ood accuracy (unseen
classes, mean per class, %) and X_id accuracy (seen classes), and, on the X_train features (the
L_mse targets), the mean pairwise cosine, the norm of the mean normalised feature, the share of
the variance between classes and the X_ood zero-shot accuracy of the features kept to their top-k
principal directions of X_train (:mod:`vldlib.core.geometry`).
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from vldlib.core.geometry import variance_split
from vldlib.data import load_dataset
from vldlib.features import LazyTeacher, imagenet_logits, text_features
from vldlib.io import finite_json, read_json, write_json_atomic
from vldlib.models.teachers import (CONSE_ENSEMBLE, conse_combine, conse_name_embeddings, conse_text_space,
                                    imagenet_class_names)
from vldlib.paths import default_cache_dir
from vldlib.study.diagnosis import feature_geometry
from vldlib.study.grid import DEV_SPLITS, TEST_SPLITS
from vldlib.study.stats import t_interval
from vldlib.train.profiles import profile_config

__all__ = ["GRID", "CRITERION", "BASELINE", "MAX_ID_DROP", "RESULT_PATH", "candidates", "candidate_name", "base_options", "teacher_options",
           "score_splits", "choose", "load_result", "main"]

RESULT_PATH = Path(__file__).resolve().parents[1] / "resources" / "teacher_search.json"

_SINGLE = "a photo of a {c}"

#: The options searched (declared before any was scored): every combination of these values;
#: ``temperature`` applies to ``combine="probs"`` only ("logits" is one candidate per top-T).
GRID: dict[str, list[Any]] = {
    "backbone": ["lite0", "lite1", "lite2"],
    "template": [_SINGLE, list(CONSE_ENSEMBLE)],
    "centre": [False, True],
    "combine": ["probs", "logits"],
    "temperature": [1.0, 2.0, 4.0],
    "top_t": [5, 10, 50, 1000],
}

#: The offline teacher before the search (the reference the constraints compare to). The search's
#: winner is now the offline profile's teacher (a test checks that the two agree).
BASELINE: dict[str, Any] = {"backbone": "lite0", "template": _SINGLE, "centre": False, "combine": "probs",
                           "temperature": 1.0, "top_t": 10}

#: The most the mean X_id zero-shot accuracy may fall below the default's (percentage points).
MAX_ID_DROP = 2.0

CRITERION = (
    "primary: the teacher's zero-shot X_ood accuracy (unseen classes, mean per class, %), mean over the "
    "development class splits; the highest wins among eligible candidates. Eligible: mean X_id zero-shot "
    f"accuracy (seen classes) at least the default's minus {MAX_ID_DROP} points, and mean pairwise cosine of "
    "the X_train features (the L_mse targets) not above the default's. Ties (primary within 0.1 point) go to "
    "the lower mean pairwise cosine. Teacher only: no student is trained, no method is compared.")


def candidates(grid: Mapping[str, Sequence[Any]] = GRID) -> list[dict[str, Any]]:
    """Every candidate of ``grid`` as a dict of ConSE options (temperature only with ``combine="probs"``)."""
    out = []
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        opts = dict(zip(keys, values))
        if opts.get("combine") == "logits" and opts.get("temperature", 1.0) != 1.0:
            continue
        out.append(opts)
    return out


def candidate_name(opts: Mapping[str, Any]) -> str:
    """A short readable name, e.g. ``lite0-single-raw-probs-t1-T10``."""
    tpl = "single" if isinstance(opts["template"], str) else f"ens{len(opts['template'])}"
    comb = "logits" if opts["combine"] == "logits" else f"probs-t{opts['temperature']:g}"
    return f"{opts['backbone']}-{tpl}-{'centred' if opts['centre'] else 'raw'}-{comb}-T{opts['top_t']}"


def _unsearched(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` without those the search varies (what a candidate sets itself)."""
    return {k: v for k, v in options.items() if k not in GRID}


def base_options(profile: str = "offline") -> dict[str, Any]:
    """The profile's teacher options that the search does not vary (e.g. the backend)."""
    return _unsearched(profile_config(profile)["teacher_options"])


def teacher_options(opts: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """The ``teacher_options`` of a run that uses candidate ``opts`` on top of ``base`` (options at the
    teacher's own default value are left out, so a config names each teacher one way only)."""
    out = _unsearched(base)
    out["backbone"] = opts["backbone"]
    for key, default in (("template", _SINGLE), ("centre", False), ("combine", "probs"), ("temperature", 1.0),
                         ("top_t", 10)):
        if opts[key] != default:
            out[key] = list(opts[key]) if isinstance(opts[key], (list, tuple)) else opts[key]
    return out


def score_splits(splits: Sequence[int] = DEV_SPLITS, *, grid: Mapping[str, Sequence[Any]] = GRID,
                 profile: str = "offline", cache_dir: str | Path | None = None,
                 ks: Sequence[int] = (4, 16), log: bool = True) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """One row per (candidate, split) with the criterion's values and the diagnosis metrics, and the
    cost in seconds (``logits_s`` per backbone, ``text_s``, ``combine_s``)."""
    cfg = profile_config(profile)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    base = base_options(profile)
    data = {s: load_dataset(cfg["dataset"], **{**cfg["dataset_options"], "split_seed": int(s)}) for s in splits}
    cost: dict[str, float] = {}
    cands = candidates(grid)
    logits: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
    for backbone in dict.fromkeys(c["backbone"] for c in cands):
        t0 = time.perf_counter()
        teacher = LazyTeacher.in_cache(cfg["teacher"], {**base, "backbone": backbone}, cache)
        for s, ds in data.items():
            logits[backbone, s] = {part: imagenet_logits(teacher, getattr(ds, part), dataset_id=ds.name,
                                                         cache_dir=cache, progress=log)
                                   for part in ("train", "id", "ood")}
        cost[f"logits_s.{backbone}"] = time.perf_counter() - t0
        if log:
            print(f"logits {backbone}: {cost[f'logits_s.{backbone}']:.1f} s", file=sys.stderr)
    t0 = time.perf_counter()
    text_teacher = LazyTeacher.in_cache(cfg["teacher"], {**base, "backbone": "lite0"}, cache)

    def encode(texts: list[str]) -> torch.Tensor:
        return text_features(text_teacher, texts, cache_dir=cache)

    names = imagenet_class_names()
    templates = [t for t in grid["template"]]
    spaces = {}
    for tpl, centre in itertools.product(templates, grid["centre"]):
        key = (str(tpl), centre)
        spaces[key] = conse_name_embeddings(encode, names, [tpl] if isinstance(tpl, str) else list(tpl), centre)
    class_text = {s: {which: encode([cfg["template"].format(name=n) for n in cls])
                      for which, cls in (("seen", ds.seen_classes), ("unseen", ds.unseen_classes))}
                  for s, ds in data.items()}
    cost["text_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = []
    for opts in cands:
        emb, mu = spaces[str(opts["template"]), opts["centre"]]
        for s, ds in data.items():
            feats = {part: conse_combine(z, emb, opts["top_t"], opts["temperature"], opts["combine"])
                     for part, z in logits[opts["backbone"], s].items()}
            seen = conse_text_space(class_text[s]["seen"], mu, opts["centre"])
            unseen = conse_text_space(class_text[s]["unseen"], mu, opts["centre"])
            labels = {part: torch.as_tensor(getattr(ds, part).labels) for part in ("train", "id", "ood")}
            rows.append({"candidate": candidate_name(opts), "split_seed": int(s),
                         **feature_geometry(feats, labels, seen, unseen, ks),
                         "variance": variance_split(feats["train"], labels["train"])["total"]})
    cost["combine_s"] = time.perf_counter() - t0
    return rows, cost


def choose(rows: Sequence[Mapping[str, Any]], default: str = candidate_name(BASELINE), *,
           max_id_drop: float = MAX_ID_DROP) -> tuple[str, list[dict[str, Any]]]:
    """The winner by :data:`CRITERION` and the ranked table (means over splits, t-interval of the primary)."""
    by: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["candidate"], []).append(r)
    metrics = [k for k in rows[0] if k not in ("candidate", "split_seed")]
    table = []
    for name, part in by.items():
        entry: dict[str, Any] = {"candidate": name, "splits": len(part)}
        for m in metrics:
            entry[m] = sum(float(p[m]) for p in part) / len(part)
        iv = t_interval([float(p["acc_ood_zeroshot"]) for p in part])
        entry["acc_ood_low"], entry["acc_ood_high"] = iv.low, iv.high
        table.append(entry)
    ref = next((t for t in table if t["candidate"] == default), None)
    if ref is None:
        raise ValueError(f"the default candidate {default!r} is not among the scored ones; it is the constraints' reference")
    for t in table:
        t["eligible"] = bool(t["acc_id"] >= ref["acc_id"] - max_id_drop and t["mean_cos"] <= ref["mean_cos"] + 1e-12)
    table.sort(key=lambda t: (not t["eligible"], -round(t["acc_ood_zeroshot"], 1), t["mean_cos"]))
    for i, t in enumerate(table):
        t["rank"] = i + 1
    return str(table[0]["candidate"]), table


def load_result(path: str | Path = RESULT_PATH) -> dict[str, Any]:
    """The recorded teacher search (its ``default`` is :data:`BASELINE`, the teacher before the search;
    ``winner_teacher_options`` the offline profile's teacher options since)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no teacher search result at {path}; run `python -m vldlib.study.teacher_search`")
    return read_json(path)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vldlib.study.teacher_search",
                                 description="Search ConSE proxy-teacher options on the development class splits "
                                             "(teacher only) and write the ranked result.")
    ap.add_argument("--cache-dir", default=None, help="feature cache (default: $VLD_CACHE or the user cache)")
    ap.add_argument("--json", default=str(RESULT_PATH), help=f"where to write the result (default {RESULT_PATH})")
    ap.add_argument("--splits", default=None,
                    help="comma-separated split seeds to score instead (e.g. test splits, as evidence); "
                         "the result is then printed, not written")
    args = ap.parse_args(argv)
    command = "python -m vldlib.study.teacher_search " + " ".join(sys.argv[1:] if argv is None else argv)
    t0 = time.perf_counter()
    try:
        splits = [int(s) for s in args.splits.split(",")] if args.splits else list(DEV_SPLITS)
        if args.splits:  # evidence: the default and the recorded winner only
            winner = load_result(args.json)["winner_options"]
            rows: list[dict[str, Any]] = []
            cost: dict[str, float] = {}
            for opts in (BASELINE, winner):
                r, c = score_splits(splits, grid={k: [opts[k]] for k in GRID}, cache_dir=args.cache_dir)
                rows += r
                cost.update(c)
        else:
            rows, cost = score_splits(splits, grid=GRID, cache_dir=args.cache_dir)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    winner_name, table = choose(rows)
    cols = ["rank", "candidate", "acc_ood_zeroshot", "acc_ood_low", "acc_ood_high", "acc_id", "mean_cos",
            "mean_norm", "between_share", "acc_ood_top4", "acc_ood_top16", "eligible"]
    for t in table[:15] if not args.splits else table:
        print("  ".join(f"{t[c]:.3f}" if isinstance(t[c], float) else str(t[c]) for c in cols))
    if args.splits:
        for r in rows:
            print(r)
        return 0
    opts = {candidate_name(c): c for c in candidates(GRID)}
    base = base_options("offline")
    result = {
        "criterion": CRITERION, "max_id_drop": MAX_ID_DROP, "grid": GRID, "default": candidate_name(BASELINE),
        "default_options": BASELINE, "dev_splits": list(DEV_SPLITS), "test_splits_not_used": len(TEST_SPLITS),
        "winner": winner_name, "winner_options": opts[winner_name],
        "winner_teacher_options": teacher_options(opts[winner_name], base),
        "table": table, "rows": rows, "candidates": opts,
        "cost_s": {**cost, "total": time.perf_counter() - t0}, "command": command,
    }
    write_json_atomic(Path(args.json), finite_json(result))
    print(f"winner: {winner_name}  options {result['winner_teacher_options']}  (written to {args.json})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
