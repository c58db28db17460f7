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

from vldlib.__main__ import main as vldlib_main  # noqa: E402
from vldlib.train import train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: Epochs of a run that is interrupted: enough that the signal, sent once its first checkpoint is
#: written, lands well before the run ends (~30 ms an epoch on 2 idle cores), few enough that the
#: rerun and the uninterrupted reference stay short.
LONG_EPOCHS = 100
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
    # warm the teacher-feature cache (in this process: the same CLI) so that the interrupt lands in training
    assert vldlib_main(["train", *cli_args(world, world["base"] / "warm", 1)]) == 0
    proc = start(["vldlib", "train", *cli_args(world, out, LONG_EPOCHS)])
    wait_for(lambda: any(out.glob("*/checkpoint.pt")))
    code, stdout, stderr = ctrl_c(proc)
    assert code == 130, stderr
    assert stderr.strip().splitlines()[-1] == "vldlib train: interrupted; run again to resume"
    assert "Traceback" not in stderr
    run_dir = next(out.glob("*/checkpoint.pt")).parent
    assert not (run_dir / "record.json").exists()
    assert partial_files(out) == []
    again = subprocess.run([sys.executable, "-m", "vldlib", "train", *cli_args(world, out, LONG_EPOCHS)], cwd=REPO,
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
def test_ctrl_c_during_the_book_is_one_line_130_keeps_runs_and_notebooks(world, tmp_path, capsys):
    """Ctrl-C while the second notebook trains: exit 130, one line, no partial notebook, the first
    notebook and the finished run kept; the rerun finishes the interrupted run from its checkpoint."""
    nbs = write_book(tmp_path / "nbs", {"feature_errors": 0})
    executed, results = tmp_path / "executed", tmp_path / "results"
    configs = []
    capsys.readouterr()
    for epochs in (1, LONG_EPOCHS):  # the first run finishes, the second is interrupted
        assert vldlib_main(["train", *cli_args(world, tmp_path / "x", epochs), "--print-config"]) == 0
        configs.append(json.loads(capsys.readouterr().out)["config"])
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
    resumed = next(r for r in recs if r["config"]["epochs"] == LONG_EPOCHS)
    assert resumed["resumed_from"] is not None
    ref = train(resumed["config"], cache_dir=world["cache"], progress=False)
    assert resumed["final"] == ref["final"]


@pytest.fixture
def python_sigint_handler():
    """Python's own SIGINT handler in place for the test (a library an earlier test loaded in this
    process, e.g. Ray, may have left its own), the handler found restored after it."""
    found = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, found)


def test_quiet_after_interrupt_drops_only_what_is_logged_after_ctrl_c(caplog, python_sigint_handler):
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


# ---------------------------------------------------------------------- SIGTERM (issue 19)
TERMINATED = "vldlib.book: terminated (SIGTERM); finished notebooks and runs are kept, run again to go on"
INTERRUPTED = "vldlib.book: interrupted; finished notebooks and runs are kept, run again to go on"

POOL_DRIVER = '''
import faulthandler, json, multiprocessing, signal, sys, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from vldlib import book


def busy(marker):
    """A long run: says it started, then takes its time."""
    Path(marker).touch()
    time.sleep(600)


def pool_pretrain(todo, results_dir):
    """The up-front training's shape: a spawned pool of 2 workers with more runs queued than workers."""
    folder = Path(sys.argv[1]).parent
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(busy, str(folder / f"busy-{i}")) for i in range(4)]
        while len(list(folder.glob("busy-*"))) < 2:  # both workers started and training
            time.sleep(0.05)
        Path(sys.argv[1]).write_text(json.dumps([p.pid for p in multiprocessing.active_children()]))
        for future in futures:
            future.result()
    return 4


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # where it hangs, should it
    book.pretrain = pool_pretrain
    sys.exit(book.main(sys.argv[2:]))
'''


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def survivors(pids: list[int], timeout: float = 30.0) -> list[int]:
    """The processes of ``pids`` still alive after waiting up to ``timeout`` s for them to end."""
    t0 = time.monotonic()
    while any(alive(p) for p in pids) and time.monotonic() - t0 < timeout:
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def kill_all(pids: list[int]) -> None:
    """SIGKILL to those of ``pids`` (this test's workers) still alive."""
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_up_front_training_stops_its_workers_one_line(tmp_path, signum):
    """SIGTERM to the driver alone (``kill``, Slurm, ``timeout``) or Ctrl-C to its process group
    during the up-front training: the pool's workers are stopped at once (before, SIGTERM left them
    running as orphans, and after Ctrl-C the pool trained every queued run before the driver could
    exit), one line, exit 143 / 130."""
    nbs = write_book(tmp_path / "nbs", {})
    script, pids_file = tmp_path / "driver.py", tmp_path / "pids.json"
    script.write_text(POOL_DRIVER)
    args = [str(pids_file), "--profile", "smoke", "--only", "main_results", "--no-build", "--notebooks-dir", str(nbs),
            "--summary", str(nbs / "summary.py"), "--executed-dir", str(tmp_path / "ex"),
            "--results-dir", str(tmp_path / "res")]
    proc = subprocess.Popen([sys.executable, str(script), *args], cwd=REPO, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=_default_sigint)
    pids: list[int] = []
    try:
        wait_for(lambda: pids_file.exists() and pids_file.read_text(), timeout=120)
        pids = json.loads(pids_file.read_text())
        assert len(pids) == 2 and all(alive(p) for p in pids)
        if signum == signal.SIGTERM:
            os.kill(proc.pid, signal.SIGTERM)  # the driver alone: its workers get nothing
        else:
            os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the workers get it too
        try:
            _, stderr = proc.communicate(timeout=60)  # EOF once the driver and every worker ended (they share stderr)
        except subprocess.TimeoutExpired:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGUSR1)  # where the driver hangs
                time.sleep(2)
                proc.kill()
            kill_all(pids)
            pytest.fail(f"the driver (exit {proc.wait()}) or its workers did not end within 60 s of the signal:\n"
                        f"{proc.communicate(timeout=30)[1][-6000:]}")
        assert proc.returncode == (143 if signum == signal.SIGTERM else 130), stderr
        assert stderr.strip().splitlines() == [TERMINATED if signum == signal.SIGTERM else INTERRUPTED]
        assert survivors(pids) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_all(pids)  # what the old driver left behind


def test_quiet_after_interrupt_chains_to_the_drivers_sigterm_handler():
    """While a notebook executes, the driver's SIGTERM handler stays in charge (workers stopped,
    Terminated raised) and the quiet window starts too; both handlers are restored after."""
    from vldlib.book_faults import Terminated, quiet_after_interrupt, unwind_on_signals

    before = signal.getsignal(signal.SIGTERM)
    with unwind_on_signals():
        driver = signal.getsignal(signal.SIGTERM)
        assert driver is not before
        with pytest.raises(Terminated):
            with quiet_after_interrupt(["vldtest.quiet.term"]) as interrupted:
                assert signal.getsignal(signal.SIGTERM) is not driver
                try:
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(5)
                finally:
                    assert interrupted.is_set()
        assert signal.getsignal(signal.SIGTERM) is driver
    assert signal.getsignal(signal.SIGTERM) is before


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:  # ended meanwhile
        return ""


@pytest.mark.slow
def test_sigterm_during_the_smoke_books_training_leaves_no_worker_and_resumes(tmp_path, smoke_cache):
    """A real SIGTERM to a smoke-profile driver (the driver alone, as ``kill`` sends it) while its
    two pool workers train a chapter's runs: exit 143, one line, no worker left; the next build
    keeps the finished runs and resumes the interrupted ones from their checkpoints."""
    executed, results = tmp_path / "executed", tmp_path / "results"
    args = ["vldlib.book", "--profile", "smoke", "--only", "feature_errors", "-p", "epochs", "15", "--no-build",
            "--executed-dir", str(executed), "--results-dir", str(results)]
    book_env = {**env(), "VLD_CACHE": str(smoke_cache)}  # the smoke teacher's features, shared
    log = tmp_path / "stderr.txt"  # a file, not a pipe: the progress bar would fill a pipe nobody reads yet
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=book_env, stdout=subprocess.DEVNULL,
                                stderr=err, text=True, start_new_session=True, preexec_fn=_default_sigint)
    workers: list[int] = []
    try:
        def training() -> bool:
            nonlocal workers
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
            pids = [int(p) for p in children.read_text().split()] if children.exists() else []
            workers = [p for p in pids if "spawn_main" in _cmdline(p)]  # not the resource tracker
            training_now = [c.parent for c in results.glob("*/checkpoint.pt") if not (c.parent / "record.json").exists()]
            return len(workers) == 2 and any(results.glob("*/record.json")) and bool(training_now)

        wait_for(training, timeout=600)
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)
        stderr = log.read_text()
        assert proc.returncode == 143, stderr[-3000:]
        assert stderr.strip().splitlines()[-1] == TERMINATED and "Traceback" not in stderr
        assert survivors(workers, timeout=60) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_all(workers)
    finished = {p: p.read_bytes() for p in results.glob("*/record.json")}
    assert 1 <= len(finished) < 5
    assert not (executed / "feature_errors.ipynb").exists()
    again = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=book_env, capture_output=True, text=True,
                           timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert {p: p.read_bytes() for p in finished} == finished  # kept, not trained again
    records = [json.loads(p.read_text()) for p in results.glob("*/record.json")]
    assert len(records) == 5 and (executed / "feature_errors.ipynb").is_file()
    assert any(r["resumed_from"] is not None for r in records)  # an interrupted run went on from its checkpoint
