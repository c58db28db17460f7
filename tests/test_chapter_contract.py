"""The chapter contract (issue 20): every chapter declared once, the same API for all of them.

The guard: every chapter builds the same configs as before the contract (the set of its runs'
config hashes with their row labels, under the offline and smoke profiles, pinned in
``tests/chapter_configs.json``), so no run store is invalidated and every table reads the same runs."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from vldlib.study import chapters
from vldlib.study.readings import Comparison
from vldlib.train.config import config_hash

from book_hashes import bf16_machine

PINNED = Path(__file__).with_name("chapter_configs.json")
PROFILES = ("offline", "smoke")


def chapter_configs(name: str, profile: str) -> list[list]:
    """Every run of chapter ``name``'s grid under ``profile``: [row label, seed, split seed, hash], sorted."""
    with contextlib.redirect_stdout(io.StringIO()), bf16_machine():  # the pins' machine (book_hashes)
        ch = chapters.open_chapter(name, profile=profile, results_dir="/tmp/unused")
    column = ch.chapter.column
    return sorted([str(labels.get(column)), labels.get("seed"), labels.get("split_seed"), config_hash(cfg)]
                  for labels, cfg in ch.grid.configs)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_chapter_builds_the_pinned_configs(profile):
    pinned = json.loads(PINNED.read_text(encoding="utf-8"))
    assert set(chapters.CHAPTERS) == set(pinned)
    for name in chapters.CHAPTERS:
        assert chapter_configs(name, profile) == pinned[name][profile], name


if __name__ == "__main__":  # regenerate the pin (only when a change of configs is intended)
    PINNED.write_text(json.dumps({n: {p: chapter_configs(n, p) for p in PROFILES} for n in chapters.CHAPTERS},
                                 indent=1) + "\n", encoding="utf-8")


def _run_class(name: str) -> type:
    import importlib

    return getattr(importlib.import_module(chapters.CHAPTERS[name]), "Run", chapters.ChapterRun)


def test_chapters_are_found_from_their_declarations():
    """CHAPTERS is every module of the package that declares a CHAPTER, named as it (not a hand-written list)."""
    import pkgutil

    modules = {m.name for m in pkgutil.iter_modules(chapters.__path__)}
    assert set(chapters.CHAPTERS) == {n for n in modules if hasattr(__import__(f"vldlib.study.chapters.{n}",
                                                                               fromlist=["_"]), "CHAPTER")}
    for name, module in chapters.CHAPTERS.items():
        assert chapters.chapter(name).name == name and chapters.chapter(name).module == module


@pytest.mark.parametrize("method", ["train", "derive", "table", "figure", "effects", "reading", "claims"])
def test_every_chapter_has_one_signature_per_step(method):
    """One API: ``train()``, ``derive(runs)``, ``table(data)``, ``figure(data)``, ``effects(data)``,
    ``reading(data, effects)``, ``claims(effects)``, whatever a chapter overrides."""
    import inspect

    base = len(inspect.signature(getattr(chapters.ChapterRun, method)).parameters)
    for name in chapters.CHAPTERS:
        ours = inspect.signature(getattr(_run_class(name), method)).parameters
        assert len([p for p in ours.values() if p.default is inspect.Parameter.empty]) == base, (name, method)


def test_no_chapter_rebuilds_its_variants_or_its_training():
    """The grid's variants are the declaration's (``Chapter.variants_for``) and ``train()`` returns
    the runs in every chapter: no chapter overrides ``__init__`` or ``train``."""
    for name in chapters.CHAPTERS:
        cls = _run_class(name)
        assert cls.__init__ is chapters.ChapterRun.__init__ and cls.train is chapters.ChapterRun.train, name


@pytest.mark.parametrize("profile", PROFILES)
def test_the_runs_are_the_declared_variants_and_comparisons(profile):
    """Every run's row is a declared variant, and every declared comparison (and claim) names rows the
    chapter has: e.g. k_ablation's ``k=1`` rows and comparisons are declared, not built in ``effects``."""
    for name in chapters.CHAPTERS:
        with contextlib.redirect_stdout(io.StringIO()):
            ch = chapters.open_chapter(name, profile=profile, results_dir="/tmp/unused")
        declared = ch.chapter.variants_for(ch.grid, ch.params)
        assert ch.variants == declared, name
        assert {labels[ch.chapter.column] for labels, _ in ch.grid.configs} == set(declared), name
        assert ch.comparisons == ch.chapter.comparisons_for(list(declared)), name
        rows = set(declared) | set(ch.order) | set(ch.chapter.labels)
        for c in [*ch.comparisons, *(claim.comparison for claim in ch.chapter.claims)]:
            assert {c.treatment, c.baseline} <= rows | {"chance"}, (name, c)
    k = chapters.open_chapter("k_ablation", profile=profile, results_dir="/tmp/unused")
    assert "k=1" in k.variants and Comparison("k=1", "reference", "acc_ood_zeroshot") in k.comparisons


@pytest.mark.parametrize("profile", PROFILES)
def test_the_diagnosis_chapter_trains_only_the_longer_l_mse_budgets_beyond_the_main_results(profile):
    """Its Table 1 rows are the main-results chapter's runs (same configs); what it adds is L_mse
    alone at 2x and 4x the profile's epochs (none under the paper profile), each the L_mse row's
    config with only ``epochs`` changed."""
    from vldlib.study.chapters.diagnosis import budget_key

    main = {row[3] for row in chapter_configs("main_results", profile)}
    rows = chapter_configs("diagnosis", profile)
    with contextlib.redirect_stdout(io.StringIO()):
        ch = chapters.open_chapter("diagnosis", profile=profile, results_dir="/tmp/unused")
    epochs = int(ch.grid.base["epochs"])
    budgets = [] if profile == "paper" else [budget_key(2 * epochs), budget_key(4 * epochs)]
    assert {r[0] for r in rows} == {"cls", "mse", "imcst", "cls+imcst+vlprox(+mse)", *budgets}
    assert all(r[3] in main for r in rows if r[0] not in budgets)
    assert not any(r[3] in main for r in rows if r[0] in budgets)
    configs = {(labels["method"], labels["split_seed"]): cfg for labels, cfg in ch.grid.configs}
    for (method, split), cfg in configs.items():
        if method in budgets:
            assert {**cfg, "epochs": epochs} == configs[("mse", split)] and cfg["epochs"] != epochs


@pytest.mark.parametrize("profile", PROFILES)
def test_the_teacher_view_chapter_reuses_the_centre_crop_runs(profile):
    """Its centre-crop rows are the main-results chapter's runs (same hashes); each own-view row is the
    same config with teacher_views set, so the book trains only the own-view runs."""
    from vldlib.study.chapters.teacher_view import VIEW

    main = {row[3] for row in chapter_configs("main_results", profile)}
    rows = chapter_configs("teacher_view", profile)
    assert {r[0] for r in rows} == {"mse", "imcst", "cls+imcst+vlprox(+mse)"} | {
        m + VIEW for m in ("mse", "imcst", "cls+imcst+vlprox(+mse)")}
    assert all(r[3] in main for r in rows if not r[0].endswith(VIEW))
    assert not any(r[3] in main for r in rows if r[0].endswith(VIEW))
    with contextlib.redirect_stdout(io.StringIO()):
        ch = chapters.open_chapter("teacher_view", profile=profile, results_dir="/tmp/unused")
    configs = {(labels["method"], labels["split_seed"]): cfg for labels, cfg in ch.grid.configs}
    for (method, split), cfg in configs.items():
        if method.endswith(VIEW):
            assert cfg == {**configs[(method.removesuffix(VIEW), split)], "teacher_views": 2}


def test_vit_student_defaults_to_vit_b_32_on_photos(tmp_path):
    """The ViT chapter's student: the paper's ViT-B/32 on a photo data root, the tiny ViT on 28 px
    Fashion-MNIST, and whatever ``vit_model`` names (the paper-profile notebook test uses the tiny one)."""
    from data_fixtures import write_tiny_official_root

    root = write_tiny_official_root(tmp_path / "Flower102", per_class=8, size=8)

    def students(**params) -> set[str]:
        with contextlib.redirect_stdout(io.StringIO()):
            ch = chapters.open_chapter("vit_student", results_dir=str(tmp_path / "results"), **params)
        return {cfg["student"] for _, cfg in ch.grid.configs}

    assert students(profile="paper", dataset_root=str(root)) == {"resnet18", "vit_b_32"}
    assert students(profile="paper", dataset_root=str(root), vit_model="vit_tiny") == {"resnet18", "vit_tiny"}
    assert students(profile="offline") == {"small", "vit_tiny"}
    with pytest.raises(ValueError, match="parameter vit_model = 'vit_huge'"):
        chapters.check_chapter_parameters("vit_student", {"profile": "offline", "vit_model": "vit_huge"})
