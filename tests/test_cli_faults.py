"""Bad input at the command lines (issue 19): ``python -m vldlib train``, ``python -m vldlib`` and
``python -m vldlib.study.design`` answer each with one line naming the value and the fix, exit 2,
no traceback, before anything trains. Called in-process (``main(argv)``); nothing here trains:
the training entry points are replaced by a sentinel that fails the test if reached."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import vldlib.runs
from vldlib.__main__ import main as vldlib_main
from vldlib.cli import train as cli_train
from vldlib.study import design

sys.path.insert(0, str(Path(__file__).parent))
from data_fixtures import write_tiny_official_root  # noqa: E402
from fault_fixtures import Trainer  # noqa: E402
from model_fixtures import make_tiny_openclip_checkpoint, tiny_openclip_model  # noqa: E402


class WouldTrain(Exception):
    """A command got past its checks to training."""


def _would_train(*args, **kwargs):
    raise WouldTrain(args)


@pytest.fixture
def no_training(monkeypatch):
    monkeypatch.setattr(cli_train.RunStore, "run", _would_train)
    monkeypatch.setattr(cli_train, "run_grid", _would_train)
    monkeypatch.setattr(design, "search", _would_train)
    monkeypatch.setattr(design, "search_fewshot", _would_train)


def one_line_exit_2(call, capsys) -> str:
    """Run ``call``; it must end with exit status 2 and exactly one line on stderr, which is returned."""
    try:
        code = call()
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "empty.json").write_text("{}")
    (tmp_path / "partial.json").write_text(json.dumps({"runs": []}))
    return {name.replace(".", "_"): str(tmp_path / name)
            for name in ("afile", "bad.json", "list.json", "empty.json", "partial.json")} | \
        {"out": str(tmp_path / "results"), "tmp": str(tmp_path)}


#: ``python -m vldlib train`` arguments after a base of ``--profile smoke --no-fewshot --quiet``,
#: and words the one line must hold (the value and the fix).
TRAIN_CASES: dict[str, tuple[list[str], list[str]]] = {
    "seed not an int": (["--seed", "x"], ["--seed", "'x'", "--help"]),
    "epochs not an int": (["--epochs", "1.5"], ["--epochs", "'1.5'"]),
    "unknown flag": (["--bogus"], ["--bogus", "--help"]),
    "unknown executor": (["--executor", "dask"], ["'dask'", "local", "ray"]),
    "--set without =": (["--set", "epochs"], ["'epochs'", "KEY=VALUE"]),
    "--set unknown key": (["--set", "nonsense=1"], ["'nonsense'", "valid keys"]),
    "--set epochs=abc": (["--set", "epochs=abc"], ["epochs", "'abc'"]),
    "--set template=5": (["--set", "template=5"], ["wrong type", "--set"]),
    "--set dataset_options.root=5": (["--set", "dataset_options.root=5"], ["dataset_options.root", "5", "--data-root"]),
    "--set device=tpu": (["--set", "device=tpu"], ["'tpu'", "cpu"]),
    "--weights cls=x": (["--weights", "cls=x"], ["'cls=x'", "NAME=NUMBER"]),
    "--weights foo=1": (["--weights", "foo=1"], ["'foo'", "valid names"]),
    "unknown dataset": (["--dataset", "imagenet"], ["'imagenet'", "fashion-mnist"]),
    "unknown teacher": (["--teacher", "gpt"], ["'gpt'", "openclip"]),
    "unknown student": (["--student", "huge"], ["'huge'", "small"]),
    "unknown profile": (["--profile", "xyz"], ["'xyz'", "offline"]),
    "--threads 0": (["--threads", "0"], ["threads", "got 0"]),
    "--batch-size 0": (["--batch-size", "0"], ["batch_size", "got 0"]),
    "--ray-address without ray": (["--ray-address", "auto"], ["--ray-address needs --executor ray"]),
    "--executor ray --force": (["--executor", "ray", "--force"], ["--force"]),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_train_bad_input_is_one_line_exit_2(case, files, no_training, capsys):
    extra, words = TRAIN_CASES[case]
    base = ["train", "--profile", "smoke", "--no-fewshot", "--quiet", "--out", files["out"]]
    line = one_line_exit_2(lambda: vldlib_main([*base, *extra]), capsys)
    assert line.startswith("vldlib train: "), line
    for word in words:
        assert word in line, (word, line)


def test_train_bad_paths_are_one_line_exit_2(files, capsys, fashion_mnist_root):
    """Paths that only fail once the run starts: a data root that is missing or a file, a results
    folder or cache folder where a file stands (the run stops before any training)."""
    base = ["train", "--profile", "smoke", "--no-fewshot", "--quiet", "--epochs", "1", "--set", "last_n=1",
            "--set", "dataset_options.per_class=20"]
    cases = [
        (["--out", files["out"], "--data-root", str(Path(files["tmp"]) / "nowhere")], ["nowhere", "does not exist"]),
        (["--out", files["out"], "--data-root", files["afile"]], [files["afile"], "not a folder"]),
        (["--out", files["afile"], "--cache-dir", str(Path(files["tmp"]) / "cache")], [files["afile"], "--out"]),
        (["--out", "/sys/vldtest-results"], ["/sys", "--out"]),
    ]
    for extra, words in cases:
        line = one_line_exit_2(lambda: vldlib_main([*base, *extra]), capsys)
        for word in words:
            assert word in line, (word, line)


def test_vldlib_dispatch_is_one_line(capsys):
    assert one_line_exit_2(lambda: vldlib_main(["trian"]), capsys).startswith("vldlib: unknown command 'trian'")


DESIGN_CASES: dict[str, tuple[list[str], list[str]]] = {
    "unknown flag": (["--bogus"], ["--bogus", "--help"]),
    "--rechoose, --json not JSON": (["--rechoose", "--json", "{bad_json}"], ["{bad_json}", "not valid JSON"]),
    "--rechoose, --json a list": (["--rechoose", "--json", "{list_json}"], ["{list_json}", "not a recipe search"]),
    "--rechoose, --json {}": (["--rechoose", "--json", "{empty_json}"], ["{empty_json}", "not a recipe search"]),
    "--rechoose, --json no recipes": (["--rechoose", "--json", "{partial_json}"], ["{partial_json}", "rerun"]),
    "--fewshot, --json a list": (["--fewshot", "--json", "{list_json}"], ["{list_json}", "not a recipe search"]),
    "--fewshot, --results-dir a file": (["--fewshot", "--results-dir", "{afile}"], ["{afile}", "--results-dir"]),
    "search, --json not JSON": (["--results-dir", "{tmp}/r", "--json", "{bad_json}"], ["{bad_json}", "fix or delete"]),
    "search, --json a list": (["--results-dir", "{tmp}/r", "--json", "{list_json}"], ["{list_json}", "not a recipe"]),
    "search, --results-dir a file": (["--results-dir", "{afile}", "--json", "{tmp}/new.json"], ["{afile}", "folder"]),
    "search, --cache-dir a file": (["--results-dir", "{tmp}/r", "--cache-dir", "{afile}", "--json", "{tmp}/new.json"],
                                   ["{afile}", "--cache-dir"]),
    "--intervals, nothing there": (["--intervals", "{tmp}/none"], ["{tmp}/none", "make book"]),
}


@pytest.mark.parametrize("case", list(DESIGN_CASES))
def test_design_bad_input_is_one_line_exit_2(case, files, no_training, capsys):
    argv, words = (([a.format(**files) for a in part]) for part in DESIGN_CASES[case])
    line = one_line_exit_2(lambda: design.main(argv), capsys)
    for word in words:
        assert word in line, (word, line)
    assert json.loads(Path(files["list_json"]).read_text()) == [1, 2]  # a file it does not own: untouched


@pytest.mark.skipif(os.name != "posix", reason="SIGTERM")
def test_sigterm_during_cli_train_is_one_line_143(files, monkeypatch, capsys):
    """SIGTERM while the run trains: as Ctrl-C (the trainer stops between checkpoints), one line,
    exit 143; the caller's SIGTERM handler is back afterwards."""
    class CallerHandlerRan(Exception):
        pass

    def caller_handler(signum, frame):
        raise CallerHandlerRan()

    def train_until_sigterm(self, config, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs at the next bytecode
            pass
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr(cli_train.RunStore, "run", train_until_sigterm)
    previous = signal.signal(signal.SIGTERM, caller_handler)
    try:
        code = vldlib_main(["train", "--profile", "smoke", "--no-fewshot", "--quiet", "--out", files["out"]])
        assert signal.getsignal(signal.SIGTERM) is caller_handler
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 143
    assert capsys.readouterr().err.strip().splitlines() == ["vldlib train: terminated (SIGTERM); run again to resume"]


@pytest.mark.skipif(os.name != "posix", reason="SIGTERM")
def test_sigterm_while_ray_waits_is_143_too(files, monkeypatch, capsys):
    """``ray.wait`` turns the exception of a signal handler into a plain KeyboardInterrupt; a SIGTERM
    there still reads as SIGTERM (exit 143), a Ctrl-C as Ctrl-C (130)."""
    def ray_grid(signum):
        def run_grid(*args, **kwargs):
            try:
                os.kill(os.getpid(), signum)
                for _ in range(1000):
                    pass
            except KeyboardInterrupt:
                raise KeyboardInterrupt from None  # what Ray raises instead
            raise AssertionError("the signal did not stop the run")
        return run_grid

    base = ["train", "--profile", "smoke", "--no-fewshot", "--quiet", "--out", files["out"], "--executor", "ray"]
    for signum, code, line in ((signal.SIGTERM, 143, "terminated (SIGTERM)"), (signal.SIGINT, 130, "interrupted")):
        monkeypatch.setattr(cli_train, "run_grid", ray_grid(signum))
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            assert vldlib_main(base) == code
        finally:
            signal.signal(signal.SIGINT, previous)
        assert capsys.readouterr().err.strip().splitlines() == [f"vldlib train: {line}; run again to resume"]


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="SIGTERM")
def test_sigterm_to_the_cli_process_resumes_from_its_checkpoint(tmp_path):
    """A real SIGTERM (as `kill`, a scheduler or a container stop sends) to `python -m vldlib train`
    mid-run: one line, exit 143, no record, the checkpoint kept; the rerun resumes from it."""
    root = write_tiny_official_root(tmp_path / "data", n_seen=3, n_unseen=3, per_class=10, size=32)
    ckpt = make_tiny_openclip_checkpoint(tmp_path / "tiny_clip.pt")
    teacher = json.dumps({"model": tiny_openclip_model(ckpt), "pretrained": str(ckpt), "device": "cpu"})
    out = tmp_path / "results"
    args = [sys.executable, "-m", "vldlib", "train", "--profile", "smoke", "--dataset", "official",
            "--data-root", str(root), "--teacher", "openclip", "--set", f"teacher_options={teacher}",
            "--set", "dataset_options.load_size=32", "--set", "dataset_options.crop_size=28",
            "--set", 'student_options={"width": 4}', "--set", "template=a photo of {name}",
            "--set", "eval_epochs=last_n", "--set", "last_n=1", "--batch-size", "8", "--no-fewshot",
            "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*args, "--epochs", "100"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    t0 = time.monotonic()
    while not any(out.glob("*/checkpoint.pt")):
        assert proc.poll() is None and time.monotonic() - t0 < 300, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert err.strip().splitlines() == ["vldlib train: terminated (SIGTERM); run again to resume"]
    run_dir = next(out.glob("*/checkpoint.pt")).parent
    assert not (run_dir / "record.json").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    again = subprocess.run([*args, "--epochs", "100"], env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    record = json.loads((run_dir / "record.json").read_text())
    assert record["resumed_from"] is not None and record["resumed_from"]["epoch"] >= 1


# ---------------------------------------------------------------------- train: missing root, results folder, Ctrl-C
def test_cli_data_root_missing_is_exit_2(tmp_path, capsys):
    from vldlib.cli.train import main

    rc = main(["--profile", "smoke", "--data-root", str(tmp_path / "nope"), "--out", str(tmp_path / "res"),
               "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and str(tmp_path / "nope") in err and "Traceback" not in err
    assert not list((tmp_path / "res").glob("*/record.json"))


def _cli(tmp_path, *extra):
    from vldlib.cli.train import main

    return main(["--profile", "smoke", "--quiet", "--cache-dir", str(tmp_path / "cache"), *extra])


def test_cli_results_dir_is_a_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(vldlib.runs, "train_validated", Trainer())
    out = tmp_path / "results"
    out.write_text("not a folder")
    rc = _cli(tmp_path, "--out", str(out))
    err = capsys.readouterr().err
    assert rc == 2 and str(out) in err and "a file stands where a folder is needed" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_unwritable_dir_is_one_line(tmp_path, capsys, monkeypatch):
    """A read-only results or cache folder (simulated: the tests may run as root, which ignores
    permission bits) gives one line naming the path, exit 2."""
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "cache" / "teacher-features"))

    monkeypatch.setattr(vldlib.runs, "train_validated", denied)
    rc = _cli(tmp_path, "--out", str(tmp_path / "res"))
    err = capsys.readouterr().err
    assert rc == 2 and "Permission denied" in err and str(tmp_path / "cache") in err
    assert len(err.strip().splitlines()) == 1


def test_cli_ctrl_c_is_one_line_and_130(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(vldlib.runs, "train_validated", Trainer(fail=KeyboardInterrupt()))
    rc = _cli(tmp_path, "--out", str(tmp_path / "res"))
    err = capsys.readouterr().err
    assert rc == 130 and err.strip() == "vldlib train: interrupted; run again to resume"
