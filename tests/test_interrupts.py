"""Real Ctrl-C (issue 10): SIGINT sent to the process group of a child process running the CLI
train or the book driver, as a terminal does. Each must print one line, exit 130, leave nothing
partial (no ``.running.ipynb``, no ``*.tmp``, no record of an unfinished run) and keep every
finished result; a rerun resumes to the numbers of an uninterrupted run.

The runs use the tiny official-format data root and the tiny open_clip teacher of
``tests/data_fixtures.py`` / ``tests/model_fixtures.py`` (seconds, no downloads), in temp dirs.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from data_fixtures import write_tiny_official_root  # noqa: E402
from model_fixtures import make_tiny_openclip_checkpoint, tiny_openclip_model  # noqa: E402

from vldlib.train import train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups and SIGINT are POSIX")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("interrupts")
    root = write_tiny_official_root(base / "data", n_seen=3, n_unseen=3, per_class=10, size=32)
    ckpt = make_tiny_openclip_checkpoint(base / "tiny_clip.pt")
    return {"root": root, "ckpt": ckpt, "cache": base / "cache", "base": base}


def cli_args(world: dict, out: Path, epochs: int) -> list[str]:
    teacher = json.dumps({"model": tiny_openclip_model(world["ckpt"]), "pretrained": str(world["ckpt"]),
                          "device": "cpu"})
    return ["--profile", "smoke", "--dataset", "official", "--data-root", str(world["root"]),
            "--teacher", "openclip", "--set", f"teacher_options={teacher}",
            "--set", "dataset_options.load_size=32", "--set", "dataset_options.crop_size=28",
            "--set", 'student_options={"width": 4}', "--set", "template=a photo of {name}",
            "--set", "eval_epochs=last_n", "--set", "last_n=1", "--epochs", str(epochs), "--batch-size", "8",
            "--no-fewshot", "--out", str(out), "--cache-dir", str(world["cache"]), "--quiet"]


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def start(args: list[str]) -> subprocess.Popen:
    """A child in its own process group (so the SIGINT reaches it and its children, as Ctrl-C does)."""
    return subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_default_sigint)


def _default_sigint() -> None:
    """In the child before exec: SIGINT as a terminal's foreground job has it (pytest started as a
    background job of a script inherits SIGINT ignored, and so would the child)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(predicate, timeout: float = 240.0) -> None:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out waiting for the child to get going")
        time.sleep(0.05)


def ctrl_c(proc: subprocess.Popen) -> tuple[int, str, str]:
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def partial_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.endswith((".tmp", ".running.ipynb", ".failed.ipynb")))


@pytest.mark.slow
def test_ctrl_c_during_cli_train_is_one_line_130_and_resumes_to_the_same_numbers(world):
    out = world["base"] / "cli"
    # warm the teacher-feature cache so that the interrupt lands in training
    warm = subprocess.run([sys.executable, "-m", "vldlib", "train", *cli_args(world, world["base"] / "warm", 1)],
                          cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert warm.returncode == 0, warm.stderr
    proc = start(["vldlib", "train", *cli_args(world, out, 400)])
    wait_for(lambda: any(out.glob("*/checkpoint.pt")))
    code, stdout, stderr = ctrl_c(proc)
    assert code == 130, stderr
    assert stderr.strip().splitlines()[-1] == "vldlib train: interrupted; run again to resume"
    assert "Traceback" not in stderr
    run_dir = next(out.glob("*/checkpoint.pt")).parent
    assert not (run_dir / "record.json").exists()
    assert partial_files(out) == []
    again = subprocess.run([sys.executable, "-m", "vldlib", "train", *cli_args(world, out, 400)], cwd=REPO,
                           env=env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    rec = json.loads((run_dir / "record.json").read_text())
    assert rec["resumed_from"] is not None and rec["resumed_from"]["epoch"] >= 1
    ref = train(rec["config"], cache_dir=world["cache"], progress=False)
    assert rec["final"] == ref["final"]
    assert [h["loss"] for h in rec["history"]] == [h["loss"] for h in ref["history"]]


NOTEBOOK = '''# %% [markdown]
# # {title}

# %% tags=["parameters"]
profile = "offline"
results_dir = "results"
config_file = ""

# %%
import json, time
from vldlib.runs import RunStore
print("started", flush=True)
if config_file:
    for cfg in json.load(open(config_file)):
        RunStore(results_dir).run(cfg, progress=False)
        print("trained", flush=True)
time.sleep({sleep})
'''


def write_book(folder: Path, sleep: dict[str, int]) -> Path:
    from vldlib import book

    folder.mkdir(parents=True, exist_ok=True)
    for name in (*book.BOOK_ORDER, book.SUMMARY):
        (folder / f"{name}.py").write_text(NOTEBOOK.format(title=name, sleep=sleep.get(name, 0)))
    return folder


@pytest.mark.slow
def test_ctrl_c_during_the_book_is_one_line_130_keeps_runs_and_notebooks(world, tmp_path):
    """Ctrl-C while the second notebook trains: exit 130, one line, no partial notebook, the first
    notebook and the finished run kept; the rerun finishes the interrupted run from its checkpoint."""
    nbs = write_book(tmp_path / "nbs", {"feature_errors": 0})
    executed, results = tmp_path / "executed", tmp_path / "results"
    configs = []
    for epochs in (1, 300):  # the first run finishes, the second is interrupted
        proc = subprocess.run([sys.executable, "-m", "vldlib", "train", *cli_args(world, tmp_path / "x", epochs),
                               "--print-config"], cwd=REPO, env=env(), capture_output=True, text=True, timeout=120)
        configs.append(json.loads(proc.stdout)["config"])
    (tmp_path / "configs.json").write_text(json.dumps(configs))
    args = ["vldlib.book", "--profile", "smoke", "--notebooks-dir", str(nbs), "--summary", str(nbs / "summary.py"),
            "--no-build", "--executed-dir", str(executed), "--results-dir", str(results)]
    first = subprocess.run([sys.executable, "-m", *args, "--only", "teacher_zero_shot"], cwd=REPO, env=env(),
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    before = (executed / "teacher_zero_shot.ipynb").read_bytes()
    proc = start([*args, "-p", "config_file", str(tmp_path / "configs.json"), "--only", "feature_errors"])
    wait_for(lambda: len(list(results.glob("*/record.json"))) == 1 and len(list(results.glob("*/checkpoint.pt"))) == 2)
    done = next(results.glob("*/record.json"))
    finished = done.read_bytes()
    code, stdout, stderr = ctrl_c(proc)
    assert code == 130, stdout + stderr
    assert stderr.strip().splitlines() == [
        "vldlib.book: interrupted; finished notebooks and runs are kept, run again to go on"]
    assert partial_files(executed) == [] and partial_files(results) == []
    assert (executed / "teacher_zero_shot.ipynb").read_bytes() == before
    assert not (executed / "feature_errors.ipynb").exists()
    assert done.read_bytes() == finished
    again = subprocess.run([sys.executable, "-m", *args, "-p", "config_file", str(tmp_path / "configs.json"),
                            "--only", "feature_errors"], cwd=REPO, env=env(), capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert done.read_bytes() == finished  # reused, not retrained
    recs = [json.loads(p.read_text()) for p in results.glob("*/record.json")]
    resumed = next(r for r in recs if r["config"]["epochs"] == 300)
    assert resumed["resumed_from"] is not None
    ref = train(resumed["config"], cache_dir=world["cache"], progress=False)
    assert resumed["final"] == ref["final"]


def test_quiet_after_interrupt_drops_only_what_is_logged_after_ctrl_c(caplog):
    """The book driver's Ctrl-C is one line: what nbclient and asyncio log while papermill unwinds
    (a race: CI once printed "Kernel died ..." and a task traceback around it) is dropped; what is
    logged before the interrupt, or in a run that is not interrupted, is kept."""
    import logging

    from vldlib.book import quiet_after_interrupt

    name = f"vldtest.quiet.{os.getpid()}.{time.monotonic_ns()}"
    log = logging.getLogger(name)
    handler_before = signal.getsignal(signal.SIGINT)
    with caplog.at_level(logging.INFO, logger=name):
        with quiet_after_interrupt([name]):
            log.error("kept: no interrupt")
        log.error("kept: after a quiet block")
        with pytest.raises(KeyboardInterrupt):
            with quiet_after_interrupt([name], seconds=3.0) as interrupted:
                log.error("kept: before the interrupt")
                try:
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(5)
                finally:
                    assert interrupted.is_set()
                    log.error("dropped: Kernel died while waiting for execute reply.")
        log.error("dropped: Task exception was never retrieved")  # the task is collected later
        time.sleep(3.2)
        log.error("kept: after the quiet window")  # a long-lived caller's logs come back
    assert [r.getMessage() for r in caplog.records if r.name == name] == [
        "kept: no interrupt", "kept: after a quiet block", "kept: before the interrupt",
        "kept: after the quiet window"]
    assert signal.getsignal(signal.SIGINT) is handler_before
