"""The offline design: disjoint development and test class splits, powered chapters, the recipe search."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from vldlib.data.fashion_mnist import class_split, distinct_split_seeds
from vldlib.study import design, grid
from vldlib.study.chapters import open_chapter
from vldlib.train.profiles import profile_config


def _seen(seeds):
    return [tuple(class_split(s)[0]) for s in seeds]


def test_dev_and_test_splits_are_distinct_and_disjoint():
    test, dev = _seen(grid.TEST_SPLITS), _seen(grid.DEV_SPLITS)
    assert len(set(test)) == len(test) >= 16 and len(set(dev)) == len(dev) >= 3
    assert not set(test) & set(dev)
    assert grid.REPLICATES["offline"]["split_seeds"] == grid.TEST_SPLITS[:grid.OFFLINE_SPLITS]
    assert grid.OFFLINE_SPLITS >= 8 and grid.REPLICATES["offline"]["seeds"] == [0]
    # a repeated class set is skipped: the seeds are not simply 0..n-1 when two draw the same classes
    seeds = distinct_split_seeds(60)
    assert len(set(_seen(seeds))) == 60
    with pytest.raises(ValueError, match="252"):
        distinct_split_seeds(253)


def test_powered_variants_run_on_more_splits(tmp_path):
    ch = open_chapter("main_results", results_dir=str(tmp_path))
    splits = {}
    for labels, _ in ch.grid.configs:
        splits.setdefault(labels["method"], []).append(labels["split_seed"])
    main = ch.chapter.powered
    assert set(main) <= set(splits)
    for method, seen in splits.items():
        want = grid.TEST_SPLITS[:ch.chapter.offline_splits] if method in main else \
            grid.TEST_SPLITS[:grid.OFFLINE_SPLITS]
        assert seen == want, method
    # explicit split_seeds win over the chapter's default
    ch2 = open_chapter("main_results", results_dir=str(tmp_path), split_seeds=[3, 4])
    assert {lab["split_seed"] for lab, _ in ch2.grid.configs} == {3, 4}
    # the smoke profile keeps its one split
    smoke = open_chapter("main_results", results_dir=str(tmp_path), profile="smoke")
    assert {lab["split_seed"] for lab, _ in smoke.grid.configs} == {0}


def _search_runs() -> pd.DataFrame:
    rows = []
    for recipe, shares, cpu in (("cheap", [0.5, 0.6, 0.7], 5.0), ("good", [0.8, 0.7, 0.9], 20.0),
                                ("costly", [0.95, 0.9, 0.99], 500.0)):
        for split, share in zip((1004, 1005, 1006), shares):
            rows.append({"recipe": recipe, "split_seed": split, "transfer": share, "cpu_s": cpu,
                         "acc_ood_zeroshot": 40 * share, "teacher_acc_ood_zeroshot": 40.0, "acc_id": 80.0})
    return pd.DataFrame(rows)


def test_choose_ranks_by_the_criterion_among_eligible_recipes():
    winner, table = design.choose(_search_runs(), max_cpu_s=40.0)
    assert winner == "good"  # "costly" transfers more but is over the budget
    assert list(table["recipe"]) == ["good", "cheap", "costly"]
    assert list(table["eligible"]) == [True, True, False]
    good = table.iloc[0]
    assert good["transfer"] == pytest.approx(0.8) and good["splits"] == 3
    assert good["transfer_high"] - good["transfer"] == pytest.approx(4.302653 * 0.1 / math.sqrt(3), abs=1e-5)
    with pytest.raises(ValueError, match="no candidate recipe"):
        design.choose(_search_runs(), max_cpu_s=1.0)


def test_missing_search_result_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m vldlib.study.design"):
        design.load_result(tmp_path / "none.json")


def test_offline_profile_is_the_recorded_winner():
    """The offline profile's recipe is what the recorded search chose (not typed independently)."""
    result = design.load_result()
    assert set(result["dev_splits"]) == {str(s) for s in grid.DEV_SPLITS}
    winner = result["candidates"][result["winner"]]
    assert winner == design.CANDIDATES[result["winner"]]
    cfg = profile_config("offline")
    for key, value in winner.items():
        head, _, sub = key.partition(".")
        assert (cfg[head][sub] if sub else cfg[head]) == value, key
    table = design.search_table(result)
    assert (table["chosen"] == "winner").sum() == 1
    # the recorded result was ranked under the module's current budget
    assert result["max_cpu_s_per_run"] == design.MAX_CPU_S_PER_RUN
    rows = {r["recipe"]: r for r in result["table"]}
    assert rows[result["winner"]]["cpu_s"] <= design.MAX_CPU_S_PER_RUN


def test_offline_fewshot_stage_is_the_recorded_fewshot_winner():
    """The offline profile's 5-shot stage is what the recorded 5-shot search chose, on the main
    search's winner, with the module's declared candidates."""
    result = design.load_result()
    fs = result["fewshot"]
    assert fs["recipe"] == result["winner"] and fs["criterion"] == design.FEWSHOT_CRITERION
    assert fs["candidates"] == {k: dict(v) for k, v in design.FEWSHOT_CANDIDATES.items()}
    cfg = profile_config("offline")
    for key, value in fs["candidates"][fs["winner"]].items():
        head, _, sub = key.partition(".")
        assert cfg[head][sub] == value, key
    table = pd.DataFrame(fs["table"])
    assert table.iloc[0]["fewshot"] == fs["winner"]
    assert table["acc_ood_5shot"].is_monotonic_decreasing
    # the winner is inside the searched range (the edge-extension rule stopped)
    lrs = sorted(v["fewshot.lr"] for v in fs["candidates"].values())
    assert lrs[0] < fs["candidates"][fs["winner"]]["fewshot.lr"] < lrs[-1]


def test_choose_fewshot_ranks_by_5shot_accuracy_over_splits():
    rows = [{"fewshot": name, "split_seed": s, "seed": 0, "acc_ood_5shot": acc + d, "acc_ood_zeroshot": 20.0,
             "acc_id": 70.0} for name, acc in (("low", 30.0), ("high", 40.0)) for s, d in ((1, -1.0), (2, 0.0), (3, 1.0))]
    winner, table = design.choose_fewshot(pd.DataFrame(rows))
    assert winner == "high" and list(table["fewshot"]) == ["high", "low"]
    assert table.iloc[0]["acc_ood_5shot"] == pytest.approx(40.0) and table.iloc[0]["splits"] == 3


def test_rechoose_reranks_the_recorded_runs_under_a_new_budget(tmp_path):
    runs = _search_runs()
    winner, table = design.choose(runs, max_cpu_s=40.0)
    path = tmp_path / "search.json"
    from vldlib.io import write_json_atomic
    write_json_atomic(path, {"max_cpu_s_per_run": 40.0, "winner": winner, "table": table.to_dict(orient="records"),
                             "runs": runs.to_dict(orient="records")})
    assert design.rechoose(path, max_cpu_s=10.0) == 0
    out = design.load_result(path)
    assert out["winner"] == "cheap" and out["max_cpu_s_per_run"] == 10.0
    assert out["history"] == [{"max_cpu_s_per_run": 40.0, "winner": "good"}]
    assert [r["recipe"] for r in out["table"]] == ["cheap", "costly", "good"]  # ineligible ones by the criterion
    assert len(out["runs"]) == len(runs)  # nothing retrained, nothing dropped


def test_rechoose_keeps_the_fewshot_search_and_marks_it_stale_when_the_winner_changes(tmp_path, capsys):
    runs = _search_runs()
    winner, table = design.choose(runs, max_cpu_s=40.0)
    path = tmp_path / "search.json"
    from vldlib.io import write_json_atomic
    write_json_atomic(path, {"max_cpu_s_per_run": 40.0, "winner": winner, "table": table.to_dict(orient="records"),
                             "runs": runs.to_dict(orient="records"),
                             "fewshot": {"recipe": winner, "winner": "lr0.3"}})
    assert design.rechoose(path, max_cpu_s=40.0) == 0
    assert "stale" not in design.load_result(path)["fewshot"]  # same winner: still current
    assert design.rechoose(path, max_cpu_s=10.0) == 0
    fs = design.load_result(path)["fewshot"]
    assert fs["winner"] == "lr0.3" and "--fewshot" in fs["stale"]


def test_fewshot_search_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert design.main(["--fewshot", "--json", str(tmp_path / "none.json")]) == 2
    (tmp_path / "bad.json").write_text("{not json")
    assert design.main(["--fewshot", "--json", str(tmp_path / "bad.json")]) == 2
    (tmp_path / "old.json").write_text('{"winner": "no-such-recipe"}')
    assert design.main(["--fewshot", "--json", str(tmp_path / "old.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 3 and "Traceback" not in err and "no-such-recipe" in err


def test_rechoose_without_a_recorded_search_is_one_line_and_exit_2(tmp_path, capsys):
    missing = tmp_path / "none.json"
    assert design.main(["--rechoose", "--json", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0] and "python -m vldlib.study.design" in err[0]
