"""The L_mse budget diagnostic (vldlib.study.mse_budget) on the smoke profile."""
from __future__ import annotations

import json

import pytest

from vldlib.study.mse_budget import main, mse_budget, summary


def test_mse_budget_reads_each_run_as_its_share_of_the_teacher_above_chance(tmp_path, smoke_cache):
    rows = mse_budget(tmp_path / "results", [1, 2], splits=[0], profile="smoke", cache_dir=str(smoke_cache))
    assert list(rows["epochs"]) == [1, 2] and set(rows["split_seed"]) == {0}
    records = [json.loads(p.read_text()) for p in (tmp_path / "results").glob("*/record.json")]
    assert len(records) == 2 and all(r["config"]["weights"] == {"mse": 1.0} and r["config"]["fewshot"] is None
                                     for r in records)
    for row in rows.itertuples():
        rec = next(r for r in records if r["config"]["epochs"] == row.epochs)
        chance = 100 / len(rec["dataset"]["seen_classes"])
        assert row.share == pytest.approx((rec["final"]["acc_id"] - chance) / (rec["final"]["teacher_acc_id"] - chance))
    again = mse_budget(tmp_path / "results", [1, 2], splits=[0], profile="smoke", cache_dir=str(smoke_cache))
    assert again.equals(rows)  # read back from the run store, not trained again
    assert len(list((tmp_path / "results").glob("*/record.json"))) == 2
    table = summary(rows)
    assert list(table["epochs"]) == [1, 2] and list(table["splits"]) == [1, 1]


def test_mse_budget_cli_refuses_a_budget_below_one(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["--epochs", "0", "--results", str(tmp_path)])
    assert exit_.value.code == 2 and "--epochs must be >= 1, got [0]" in capsys.readouterr().err
