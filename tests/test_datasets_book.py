"""One report over several datasets: Table 1 with a column per dataset and their Average, the
runs of each data root labelled by dataset in one run store, and ``--dataset-root`` of the book."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from data_fixtures import write_image_folder, write_tiny_official_root
from vldlib import book
from vldlib.runs import config_hash
from vldlib.study.chapters import ACCURACY, ACCURACY_NAMES, open_chapter
from vldlib.study.datasets import AVERAGE, by_dataset_table, dataset_kind, dataset_labels
from vldlib.study.parameters import ParameterError, check_value
from vldlib.study.reference import paper_table

pytest_plugins = ["book_fixtures"]


def _runs() -> pd.DataFrame:
    """Records of two methods on two datasets, two class splits each (known means)."""
    rows = []
    for ds, base in (("CaltechBirds", 40.0), ("mine", 60.0)):
        for split in (0, 1):
            for method, gain in (("cls", 0.0), ("cls+imcst", 10.0)):
                value = base + gain + split  # split 0 and 1: mean base + gain + 0.5
                rows.append({"method": method, "dataset": ds, "seed": 0, "split_seed": f"{ds}:{split}",
                             "acc_id": value, "acc_ood_zeroshot": value - 20, "acc_ood_5shot": value - 10})
    return pd.DataFrame(rows)


def test_by_dataset_table_has_a_column_per_dataset_and_the_average_beside_the_paper():
    paper = paper_table("table1")
    table = by_dataset_table(_runs(), paper, column="method", metrics=dict(ACCURACY), names=ACCURACY_NAMES,
                             datasets=["CaltechBirds", "mine"], order=["cls", "cls+imcst"])
    zs = ACCURACY_NAMES["acc_ood_zeroshot"]
    assert [c for c in table.columns if c[0] == zs] == [
        (zs, "CaltechBirds", "ours"), (zs, "CaltechBirds", "paper"), (zs, "mine", "ours"), (zs, "mine", "paper"),
        (zs, AVERAGE, "ours"), (zs, AVERAGE, "paper")]
    # ours: the mean over each dataset's splits with its interval; the Average: the mean of the dataset means
    assert table.loc["cls+imcst", (zs, "CaltechBirds", "ours")].startswith("30.5 [")
    assert table.loc["cls+imcst", (zs, AVERAGE, "ours")] == "40.5"  # (30.5 + 50.5) / 2
    # the paper's own column for a dataset it has, "–" for one it does not, its six-dataset Average
    p = paper.set_index(["dataset", "method_key"])["ood_zero_shot_acc"]
    assert table.loc["cls", (zs, "CaltechBirds", "paper")] == f"{p[('CaltechBirds', 'cls')]:.1f}"
    assert table.loc["cls", (zs, "mine", "paper")] == "–"
    assert table.loc["cls", (zs, AVERAGE, "paper")] == f"{p[('Average', 'cls')]:.1f}"


@pytest.fixture()
def two_roots(tmp_path: Path) -> tuple[Path, Path]:
    return (write_tiny_official_root(tmp_path / "CaltechBirds"),
            write_image_folder(tmp_path / "mine", n_classes=10, per_class=8))


def test_a_chapter_over_two_roots_labels_each_run_by_dataset(tmp_path, two_roots, capsys):
    a, b = two_roots
    assert (dataset_kind(a), dataset_kind(b)) == ("official", "folder")
    ch = open_chapter("main_results", profile="smoke", results_dir=str(tmp_path / "res"),
                      dataset_roots=[str(a), str(b)], methods=["cls", "cls+imcst"])
    assert "2 datasets (CaltechBirds, mine)" in capsys.readouterr().out
    labels = [lab for lab, _ in ch.grid.configs]
    assert [lab["dataset"] for lab in labels] == ["CaltechBirds"] * 2 + ["mine"] * 2
    assert {lab["split_seed"] for lab in labels} == {"CaltechBirds", "mine"}  # units never shared across datasets
    configs = [cfg for _, cfg in ch.grid.configs]
    assert [c["dataset"] for c in configs] == ["official"] * 2 + ["folder"] * 2
    assert {c["dataset_options"]["root"] for c in configs} == {str(a), str(b)}  # the root is in the run's identity
    assert len({config_hash(c) for c in configs}) == 4
    assert ch.grid.paper_dataset == AVERAGE and ch.datasets["CaltechBirds"].paper_dataset == "CaltechBirds"
    # one root: the chapter's grid as with dataset_root (no dataset label)
    one = open_chapter("main_results", profile="smoke", results_dir=str(tmp_path / "res"),
                       dataset_roots=[str(b)], methods=["cls"])
    assert not one.datasets and "dataset" not in one.grid.configs[0][0]
    assert one.grid.configs[0][1]["dataset"] == "folder"


def test_dataset_labels_unique_and_roots_checked(tmp_path):
    (tmp_path / "x" / "data").mkdir(parents=True)
    (tmp_path / "y" / "data").mkdir(parents=True)
    assert dataset_labels([tmp_path / "x" / "data", tmp_path / "y" / "data"]) == ["x/data", "y/data"]
    with pytest.raises(ValueError, match="more than once"):
        dataset_labels([tmp_path / "x" / "data", tmp_path / "x" / "data"])
    with pytest.raises(ParameterError, match="does not exist"):
        check_value("dataset_roots", [str(tmp_path / "x"), str(tmp_path / "absent")], cli=True)


def test_book_dataset_root_flag_becomes_parameters(tmp_path, two_roots):
    a, b = two_roots
    assert book.dataset_root_parameters([], []) == []
    assert book.dataset_root_parameters([str(b)], []) == [("dataset_root", str(b)), ("dataset", "folder")]
    assert book.dataset_root_parameters([str(b)], [("dataset", "official")]) == [("dataset_root", str(b))]
    assert book.dataset_root_parameters([str(a), str(b)], []) == [
        ("dataset_root", str(a)), ("dataset", "official"), ("dataset_roots", [str(a), str(b)])]
    with pytest.raises(book.BookError, match="no such folder"):
        book.dataset_root_parameters([str(tmp_path / "absent")], [])
    with pytest.raises(book.BookError, match="one way"):
        book.dataset_root_parameters([str(a)], [("dataset_root", str(a))])


@pytest.mark.slow
def test_smoke_book_over_two_roots_shows_both_datasets_and_the_average(tmp_path, two_roots, run_book):
    a, b = two_roots
    executed = tmp_path / "executed"
    proc = run_book("--profile", "smoke", "--only", "main_results", "--no-build", "--results-dir",
                    str(tmp_path / "results"), "--executed-dir", str(executed), "--dataset-root", str(a),
                    "--dataset-root", str(b), "-p", "methods", "['cls', 'cls+imcst']",
                    "-p", "overrides", "{'dataset_options': {'load_size': 32, 'crop_size': 28}}", timeout=1500)
    assert proc.returncode == 0, proc.stdout[-5000:]
    nb = json.loads((executed / "main_results.ipynb").read_text())
    html = "".join(str(o.get("data", {}).get("text/html", "")) for c in nb["cells"] for o in c.get("outputs", []))
    for name in ("CaltechBirds", "mine", AVERAGE, "paper"):
        assert name in html
    records = [json.loads(p.read_text()) for p in (tmp_path / "results").glob("*/record.json")]
    assert sorted(r["config"]["dataset"] for r in records) == ["folder", "folder", "official", "official"]
    # a second build reuses every run of both datasets from the one store
    again = run_book("--profile", "smoke", "--only", "main_results", "--no-build", "--rerun", "--results-dir",
                     str(tmp_path / "results"), "--executed-dir", str(executed), "--dataset-root", str(a),
                     "--dataset-root", str(b), "-p", "methods", "['cls', 'cls+imcst']",
                     "-p", "overrides", "{'dataset_options': {'load_size': 32, 'crop_size': 28}}", timeout=900)
    assert again.returncode == 0 and "4 reused" in again.stdout, again.stdout[-3000:]


def test_own_descriptions_official_or_an_image_folder_with_descriptions_json(tmp_path, two_roots):
    from vldlib.study.datasets import own_descriptions

    a, b = two_roots
    assert own_descriptions({"dataset": "official", "dataset_options": {"root": str(a)}})
    assert not own_descriptions({"dataset": "folder", "dataset_options": {"root": str(b)}})
    assert not own_descriptions({"dataset": "fashion-mnist", "dataset_options": {}})
    described = write_image_folder(tmp_path / "described", n_classes=3, per_class=3, descriptions=True)
    assert own_descriptions({"dataset": "folder", "dataset_options": {"root": str(described)}})


def test_book_plans_an_image_folder_with_dataset_folder(tmp_path, two_roots):
    """``-p dataset folder -p dataset_root DIR``: checked and planned before anything runs; a folder
    that does not exist is the one-line parameter error."""
    _, b = two_roots
    sources = book.notebook_sources(only=["main_results"])
    planned = book.plan(sources, "smoke", str(tmp_path / "res"), [("dataset", "folder"), ("dataset_root", str(b))])
    params = dict(planned[0][1])
    assert params["dataset"] == "folder" and params["dataset_root"] == str(b)
    ch = open_chapter("main_results", {**planned[0][0].parameters, **params})
    assert {c["dataset"] for _, c in ch.grid.configs} == {"folder"}
    with pytest.raises(book.BookError, match="dataset_root"):
        book.plan(sources, "smoke", str(tmp_path / "res"), [("dataset", "folder"), ("dataset_root", str(tmp_path / "x"))])
