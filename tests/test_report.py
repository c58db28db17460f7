"""vldlib.study (stats, readings, tables, reference): interval/aggregation helpers against hand-computed values."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from vldlib.study import reference, report  # noqa: E402

# t quantiles from printed tables: t_{0.975, 2} = 4.302653, t_{0.975, 3} = 3.182446
T975_2 = 4.302653
T975_3 = 3.182446


def test_t_interval_hand_computed():
    iv = report.t_interval([1.0, 2.0, 3.0, 4.0])
    # mean 2.5; sd = sqrt(5/3) = 1.290994; half = 3.182446 * 1.290994 / 2 = 2.054260
    assert iv.n == 4
    assert iv.mean == pytest.approx(2.5)
    assert iv.sd == pytest.approx(math.sqrt(5 / 3))
    assert iv.low == pytest.approx(2.5 - 2.054260, abs=1e-5)
    assert iv.high == pytest.approx(2.5 + 2.054260, abs=1e-5)
    assert iv.half_width == pytest.approx(T975_3 * math.sqrt(5 / 3) / 2, abs=1e-5)
    assert iv.excludes(0.0) and not iv.excludes(2.0)


def test_t_interval_confidence_and_degenerate_cases():
    # 90%: t_{0.95, 3} = 2.353363
    iv90 = report.t_interval([1, 2, 3, 4], confidence=0.90)
    assert iv90.half_width == pytest.approx(2.353363 * math.sqrt(5 / 3) / 2, abs=1e-5)
    one = report.t_interval([7.0])
    assert one.mean == 7.0 and math.isnan(one.low) and math.isnan(one.high) and not one.excludes(0)
    same = report.t_interval([3.0, 3.0, 3.0])
    assert same.low == same.high == 3.0
    with pytest.raises(ValueError, match="at least one value"):
        report.t_interval([])
    with pytest.raises(ValueError, match="NaN"):
        report.t_interval([1.0, float("nan")])
    with pytest.raises(ValueError, match="confidence"):
        report.t_interval([1.0, 2.0], confidence=95)


def _runs() -> pd.DataFrame:
    # two methods, four runs (seed, split): two seeds on split 0, one on splits 1 and 2;
    # B = A + (2, 1, 2, 3)
    rows = []
    for (seed, split), a, b in zip([(0, 0), (1, 0), (0, 1), (0, 2)], [1.0, 2.0, 2.0, 4.0], [3.0, 3.0, 4.0, 7.0]):
        rows.append({"method": "A", "seed": seed, "split_seed": split, "acc": a, "other": 10 * a})
        rows.append({"method": "B", "seed": seed, "split_seed": split, "acc": b, "other": None})
    return pd.DataFrame(rows)


def test_summarize_hand_computed():
    """The class split is the unit: split 0's two seeds are averaged before the interval."""
    s = report.summarize(_runs(), "method", ["acc", "other"])
    a = s[(s.method == "A") & (s.metric == "acc")].iloc[0]
    # A per split: 1.5, 2, 4 -> mean 2.5, sd = sqrt(3.5/2) = 1.322876, half = 4.302653 * sd / sqrt(3)
    assert a["n"] == 3 and a["runs"] == 4 and a["unit"] == "class split"
    assert a["mean"] == pytest.approx(2.5)
    assert a["sd"] == pytest.approx(math.sqrt(1.75))
    half = T975_2 * math.sqrt(1.75) / math.sqrt(3)
    assert a["ci_low"] == pytest.approx(2.5 - half, abs=1e-5)
    assert a["ci_high"] == pytest.approx(2.5 + half, abs=1e-5)
    other = s[s.metric == "other"]
    assert list(other.method) == ["A"]  # B's metric is missing entirely: no row, not a NaN row
    assert other["mean"].iloc[0] == pytest.approx(25.0)
    with pytest.raises(ValueError, match="not in the frame"):
        report.summarize(_runs(), "method", "nope")


def test_summarize_one_split_falls_back_to_runs():
    runs = _runs().assign(split_seed=None, seed=[0, 0, 1, 1, 2, 2, 3, 3])
    a = report.summarize(runs, "method", "acc").iloc[0]
    assert a["n"] == 4 and a["unit"] == "run" and a["mean"] == pytest.approx(2.25)


def test_paired_effect_hand_computed():
    eff = report.paired_effect(_runs(), "acc", column="method", treatment="B", baseline="A")
    # differences 2, 1 (split 0) -> 1.5; 2 (split 1); 3 (split 2): mean 6.5/3, sd sqrt(0.58333)
    sd = math.sqrt(((1.5 - 6.5 / 3) ** 2 + (2 - 6.5 / 3) ** 2 + (3 - 6.5 / 3) ** 2) / 2)
    assert eff.n == 3
    assert eff.mean == pytest.approx(6.5 / 3)
    assert eff.sd == pytest.approx(sd)
    assert eff.half_width == pytest.approx(T975_2 * sd / math.sqrt(3), abs=1e-5)
    diffs, unit = report.paired_differences(_runs(), "acc", column="method", treatment="B", baseline="A")
    assert unit == "class split" and list(diffs.index) == [0, 1, 2] and list(diffs) == [1.5, 2.0, 3.0]
    table = report.paired_effects(_runs(), ["acc"], column="method", baseline="A")
    assert table.loc[0, "method"] == "B" and bool(table.loc[0, "excludes_0"])
    with pytest.raises(ValueError, match="no runs with method == 'C'"):
        report.paired_effect(_runs(), "acc", column="method", treatment="C", baseline="A")


def test_paired_effect_with_a_fixed_class_split():
    """Official datasets have one class split (split_seed None): pairs are matched on the seed."""
    runs = _runs().assign(split_seed=None, seed=[0, 0, 1, 1, 2, 2, 3, 3])
    eff = report.paired_effect(runs, "acc", column="method", treatment="B", baseline="A")
    assert eff.n == 4 and eff.mean == pytest.approx(2.0)


def test_paired_effect_matches_units_only():
    runs = _runs()
    extra = pd.DataFrame([{"method": "B", "seed": 9, "split_seed": 9, "acc": 100.0}])
    eff = report.paired_effect(pd.concat([runs, extra]), "acc", column="method",
                               treatment="B", baseline="A")
    assert eff.n == 3 and eff.mean == pytest.approx(6.5 / 3)  # the unmatched run is ignored
    disjoint = runs.assign(seed=[0, 5, 1, 6, 2, 7, 3, 8])
    with pytest.raises(ValueError, match="share no"):
        report.paired_effect(disjoint, "acc", column="method", treatment="B", baseline="A")


def test_compare_counts_splits_in_the_papers_direction():
    comp = [report.Comparison("B", "A", "acc")]
    paper = pd.DataFrame({"method": ["A", "B"], "acc": [10.0, 8.0]})  # the paper: B lowers acc
    out = report.compare(_runs(), comp, column="method", paper=paper)
    row = out.iloc[0]
    assert row["n"] == 3 and row["unit"] == "class split" and row["agree"] == 0
    assert row["verdict"] == "reversed" and "holds on 0 of 3 class splits" in row["reading"]
    assert row["half_width"] == pytest.approx((row["ci_high"] - row["ci_low"]) / 2)
    assert list(out.attrs["differences"][0]) == [1.5, 2.0, 3.0]
    same = report.compare(_runs(), comp, column="method").iloc[0]
    assert same["agree"] == 3 and "This direction holds on 3 of 3 class splits" in same["reading"]


def test_effect_sentences():
    up = report.Interval(4.1, 2.0, 6.2, 6, 2.0)
    text = report.effect_sentence(up, metric="zero-shot X_ood accuracy", treatment="L_im-cst",
                                  baseline="L_cls", paper=5.0)
    assert text.startswith("L_im-cst raises zero-shot X_ood accuracy by 4.1 points (95% CI 2.0 to 6.2")
    assert "agrees in direction" in text and "inside our interval" in text
    far = report.effect_sentence(up, metric="m", treatment="t", baseline="b", paper=9.0)
    assert "outside our interval" in far
    down = report.Interval(-3.0, -5.0, -1.0, 6, 2.0)
    assert "lowers m by 3.0 points" in report.effect_sentence(down, metric="m", treatment="t", baseline="b")
    assert "reverse" in report.effect_sentence(down, metric="m", treatment="t", baseline="b", paper=2.0)
    null = report.Interval(0.4, -1.2, 2.0, 6, 2.0)
    text = report.effect_sentence(null, metric="m", treatment="t", baseline="b", paper=3.5)
    assert "includes 0" in text and "the paper's difference (+3.5 points, single runs) does not appear here" in text
    tiny = report.effect_sentence(null, metric="m", treatment="t", baseline="b", paper=-0.04)
    assert "no difference at this precision" in tiny
    assert report.verdict(null, -0.04) == "no detectable effect" and report.verdict(null, 3.5) == "not seen here"
    assert report.verdict(up, 5.0) == "as in the paper" and report.verdict(down, 2.0) == "reversed"
    single = report.Interval(1.0, math.nan, math.nan, 1, math.nan)
    assert "no conclusion" in report.effect_sentence(single, metric="m", treatment="t", baseline="b")


def test_format_and_tables():
    assert report.format_interval(45.24, 43.11, 47.36) == "45.2 [43.1, 47.4]"
    assert report.format_interval(45.24) == "45.2"
    assert report.format_interval(float("nan")) == "–"
    s = report.summarize(_runs(), "method", "acc")
    wide = report.interval_table(s, "method", labels={"acc": "Accuracy"}, order=["B", "A"])
    assert list(wide.index) == ["B", "A"] and list(wide.columns) == ["Accuracy"]
    assert wide.loc["B", "Accuracy"].startswith("4.7 [")  # split means 3, 4, 7
    paper = pd.DataFrame({"method": ["A", "B"], "acc": [1.5, None], "source": "paper: x"})
    both = report.beside_paper(s, paper, key="method", metrics={"acc": "acc"},
                               labels={"A": "method A"})
    assert both.loc["method A", ("acc", "paper")] == "1.5"
    assert both.loc["B", ("acc", "paper")] == "–"
    assert both.loc["B", ("acc", "ours")] == wide.loc["B", "Accuracy"]
    assert report.paper_difference(paper.assign(acc=[1.5, 4.0]), "acc", column="method",
                                   treatment="B", baseline="A") == pytest.approx(2.5)
    assert report.paper_difference(paper, "acc", column="method", treatment="B", baseline="A") is None


def test_plots_draw_runs_and_intervals():
    ax = report.plot_intervals(_runs(), x="method", y="acc", paper={"A": 1.5, "B": None})
    assert len(ax.collections) >= 2  # strip points + the paper markers
    assert ax.get_ylabel() == "acc"
    curve = pd.DataFrame({"k": [1, 2, 1, 2], "v": [1.0, 2.0, 1.2, 2.2], "seed": [0, 0, 1, 1]})
    ax2 = report.plot_lines(curve, x="k", y="v")
    assert list(ax2.lines[0].get_ydata()) == pytest.approx([1.1, 2.1])


def test_reference_tables_are_labelled_paper_values():
    t1 = reference.paper_table("table1", dataset="Average")
    assert set(t1["source"]) == {"paper: arXiv 2307.03135v3, Table 1"}
    row = t1.set_index("method_key").loc["cls"]
    assert (row["id_acc"], row["ood_zero_shot_acc"], row["ood_5shot_acc"]) == (65.4, 12.8, 30.3)
    assert "caption" in t1.attrs and t1.attrs["table"] == "table1"
    long = reference.paper_table("table9", dataset="Flower102", long=True)
    assert set(long["metric"]) == {"id_acc", "ood_zero_shot_acc", "ood_5shot_acc"}
    assert len(long) == 5 * 3
    m = reference.paper_table("table16_vlalign", dataset="Flower102", k=3)
    assert len(m) == 3 and 1.30 in set(m["x_ood"])
    with pytest.raises(ValueError, match="unknown paper table"):
        reference.paper_table("table99")
    with pytest.raises(ValueError, match="available values"):
        reference.paper_table("table1", dataset="Mars")


def test_reference_matches_shared_transcription():
    import json

    from conftest import PAPER_TABLES

    if not PAPER_TABLES.exists():
        pytest.skip("shared paper_tables.json absent")
    shared = json.loads(PAPER_TABLES.read_text())
    assert set(reference.table_names()) == set(shared)
    for name, entry in shared.items():
        ours = reference.paper_table(name).drop(columns="source")
        assert len(ours) == len(entry["records"]), name


def test_method_keys_for_weights():
    assert reference.method_key_for_weights({"cls": 1, "im_cst": 1, "mse": 0}) == "cls+imcst"
    assert reference.method_key_for_weights({"cls": 1, "im_cst": 1, "vlprox": 1}) == "cls+imcst+vlprox(+mse)"
    assert reference.method_key_for_weights({"cls": 1, "vlprox": 1}) is None
    assert set(reference.TABLE1_METHODS) <= set(reference.paper_table("table1")["method_key"])


# ---------------------------------------------------------------- vldlib.study.grid (notebook grids)
def test_make_grid_validates_before_training():
    from vldlib.study.grid import make_grid

    g = make_grid("offline")
    assert g.profile == "offline" and len(g.seeds) >= 1 and len(g.split_seeds) >= 8  # the split is the unit
    assert g.paper_dataset == "Average"
    cfgs = g.expand({"a": {"weights": {"cls": 1.0}}, "b": {"weights": {"cls": 1.0, "im_cst": 1.0}}})
    assert len(cfgs) == 2 * len(g.seeds) * len(g.split_seeds)
    labels, cfg = cfgs[-1]
    assert labels == {"variant": "b", "seed": g.seeds[-1], "split_seed": g.split_seeds[-1]}
    assert cfg["dataset_options"]["split_seed"] == g.split_seeds[-1] and cfg["seed"] == g.seeds[-1]
    assert make_grid("offline", smoke=True).profile == "smoke"
    for kwargs, message in [({"profile": "nope"}, "unknown profile 'nope'"),
                            ({"dataset": "mnist"}, "unknown dataset 'mnist'"),
                            ({"seeds": [0, -1]}, "integers >= 0"),
                            ({"paper_dataset": "Mars"}, "unknown paper_dataset"),
                            ({"profile": "paper"}, "needs dataset_options")]:
        with pytest.raises(ValueError, match=message):
            make_grid(**kwargs)
    with pytest.raises(ValueError, match="variant 'x': unknown loss name"):
        g.expand({"x": {"weights": {"bogus": 1.0}}})
    paper = make_grid("paper", dataset_root="/data/Flower102", split_seeds=None)
    assert paper.paper_dataset == "Flower102" and paper.split_seeds == [None]
    # seeded class splits of an official dataset (intervals over splits); None mixed in is an error
    resplit = make_grid("paper", dataset_root="/data/Flower102", split_seeds=[0, 1])
    assert resplit.split_seeds == [0, 1]
    assert [c["dataset_options"]["split_seed"] for _, c in resplit.expand({"a": {}})] == [0, 1]
    with pytest.raises(ValueError, match="not both"):
        make_grid("paper", dataset_root="/data/Flower102", split_seeds=[0, None])


@pytest.mark.slow
def test_run_grid_parallel_equals_sequential(tmp_path, fashion_mnist_root):
    """Workers train with one thread each, so a run's numbers do not depend on the worker count."""
    from vldlib.study.grid import make_grid, run_grid
    from vldlib.runs import RunStore

    frames = []
    for workers in (1, 2):
        g = make_grid("smoke", seeds=[0, 1], cache_dir=str(tmp_path / "cache"),
                      overrides={"fewshot": None, "epochs": 2, "last_n": 1})
        g.expand({"cls": {"weights": {"cls": 1.0}}})
        store = RunStore(tmp_path / f"results{workers}", cache_dir=tmp_path / "cache")
        frames.append(run_grid(store, g, workers=workers, log=False))
        again = run_grid(store, g, workers=workers, log=False)  # reused, identical
        assert again["acc_id"].tolist() == frames[-1]["acc_id"].tolist()
    assert frames[0]["loss"].tolist() == frames[1]["loss"].tolist()
    assert frames[0]["hash"].tolist() == frames[1]["hash"].tolist()


class _FakeStore:
    """A run store whose runs 'train' instantly (for run_grid's bookkeeping)."""

    def __init__(self, root):
        self.root, self.cache_dir, self.done = root, None, {}

    def get(self, cfg):
        from vldlib.runs import config_hash

        return self.done.get(config_hash(cfg))

    def run(self, cfg, progress=False):
        from vldlib.runs import config_hash

        rec = {"hash": config_hash(cfg), "config": cfg, "final": {"acc_id": 1.0}}
        self.done[rec["hash"]] = rec
        return rec


@pytest.mark.parametrize("env, shown", [(None, True), ("0", False)])
def test_run_grid_shows_a_progress_bar_over_runs(tmp_path, monkeypatch, capsys, env, shown):
    from vldlib.study.grid import make_grid, run_grid

    if env is None:
        monkeypatch.delenv("VLD_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("VLD_PROGRESS", env)
    g = make_grid("smoke", seeds=[0, 1], overrides={"device": "cuda"})  # not cpu: no feature warm-up
    g.expand({"cls": {"weights": {"cls": 1.0}}})
    frame = run_grid(_FakeStore(tmp_path), g)
    err = capsys.readouterr().err
    assert len(frame) == 2
    assert ("runs:" in err and "/2 [" in err and "cls 0 0" in err) == shown  # done/total, ETA, run named


def test_with_transfer_is_the_share_of_the_teachers_accuracy():
    runs = pd.DataFrame({"acc_ood_zeroshot": [20.0, 30.0], "teacher_acc_ood_zeroshot": [40.0, 60.0]})
    out = report.with_transfer(runs)
    assert list(out["transfer_acc_ood_zeroshot"]) == [50.0, 50.0]
    assert "transfer_acc_ood_zeroshot" not in runs.columns  # the input is not modified
    assert "transfer_acc_ood_zeroshot" not in report.with_transfer(runs.drop(columns="teacher_acc_ood_zeroshot"))


def _per_class_runs() -> pd.DataFrame:
    # class "Bag" unseen on splits 0, 1, 2; "Coat" only on split 0 (NaN elsewhere)
    rows = []
    for split, (a_bag, b_bag) in enumerate([(10.0, 30.0), (20.0, 25.0), (50.0, 40.0)]):
        coat = {"A": 5.0, "B": 9.0} if split == 0 else {"A": None, "B": None}
        for method, bag in (("A", a_bag), ("B", b_bag)):
            rows.append({"method": method, "seed": 0, "split_seed": split,
                         "per_class.acc_ood_zeroshot.Bag": bag, "per_class.acc_ood_zeroshot.Coat": coat[method]})
    return pd.DataFrame(rows)


def test_per_class_effects_hand_computed():
    gains = report.per_class_effects(_per_class_runs(), column="method", treatment="B", baseline="A")
    bag = gains.set_index("class").loc["Bag"]
    assert bag["n"] == 3 and bag["differences"] == [20.0, 5.0, -10.0]
    assert bag["effect"] == pytest.approx(5.0)
    sd = math.sqrt((15 ** 2 + 0 + 15 ** 2) / 2)
    assert bag["ci_high"] - bag["effect"] == pytest.approx(T975_2 * sd / math.sqrt(3), abs=1e-5)
    coat = gains.set_index("class").loc["Coat"]  # one split: a run unit, no interval
    assert coat["n"] == 1 and coat["effect"] == pytest.approx(4.0) and math.isnan(coat["ci_low"])
    fig = report.plot_per_class(gains, title="t")
    assert len(fig.axes[0].get_yticklabels()) == 2
    assert report.per_class_effects(_runs(), column="method", treatment="B", baseline="A").empty


def test_plot_effects_shows_each_split():
    comp = [report.Comparison("B", "A", "acc")]
    out = report.compare(_runs(), comp, column="method")
    fig = report.plot_effects(out)
    grey = [ln for ln in fig.axes[0].lines if ln.get_marker() == "."]
    assert len(grey) == 1 and list(grey[0].get_xdata()) == [1.5, 2.0, 3.0]


def test_run_grid_bar_goes_to_the_terminal_under_the_book_driver(tmp_path, monkeypatch, capfd):
    """``VLD_PROGRESS=terminal`` (the book driver's setting): the bar goes to the process's own
    stderr, which a notebook kernel shares with the terminal of the build, and stays there."""
    from vldlib.study.grid import make_grid, run_grid

    monkeypatch.setenv("VLD_PROGRESS", "terminal")
    g = make_grid("smoke", seeds=[0, 1, 2], overrides={"device": "cuda"})
    g.expand({"cls": {"weights": {"cls": 1.0}}})
    run_grid(_FakeStore(tmp_path), g)
    err = capfd.readouterr().err
    assert "runs: 100%" in err and "3/3 [" in err


def test_every_table1_method_has_a_row_label():
    from vldlib.study.chapters import TABLE1_LABELS
    from vldlib.study.reference import TABLE1_METHODS

    assert set(TABLE1_LABELS) == set(TABLE1_METHODS)
    assert len(set(TABLE1_LABELS.values())) == len(TABLE1_LABELS)
