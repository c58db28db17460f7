"""Scale-out (issue 13): the run_grid executors (local, Ray), torchrun / DDP training of one run,
the uint8 image store and GPU-side augmentation, and the GPU benchmark's CPU skip."""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from vldlib import book
from vldlib.data import load_dataset, student_train_transform
from vldlib.data.imagestore import ImageStoreError, build_image_store, open_image_store, store_key
from vldlib.runs import RunStore, config_hash
from vldlib.study import chapters, executors
from vldlib.study.grid import GridRunError, run_grid
from vldlib.train import Interrupted, TrainConfig, distributed, train
from vldlib.train.loop import Images, train_index_batches

sys.path.insert(0, str(Path(__file__).parent))
from data_fixtures import write_tiny_official_root  # noqa: E402
from model_fixtures import make_tiny_openclip_checkpoint, tiny_openclip_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("scale")
    root = write_tiny_official_root(base / "data", n_seen=3, n_unseen=3, per_class=10, size=40)
    ckpt = make_tiny_openclip_checkpoint(base / "tiny_clip.pt")
    return {"root": root, "ckpt": ckpt, "cache": base / "cache", "base": base}


def tiny_config(world: dict, **overrides) -> dict:
    cfg = TrainConfig(
        dataset="official", dataset_options={"root": str(world["root"]), "load_size": 32, "crop_size": 28},
        teacher="openclip",
        teacher_options={"model": tiny_openclip_model(world["ckpt"]), "pretrained": str(world["ckpt"]),
                         "device": "cpu"},
        student="small", student_options={"width": 4}, epochs=3, last_n=2, batch_size=8,
        eval_batch_size=16, device="cpu", fewshot=None,
    ).to_dict()
    cfg.update(overrides)
    return cfg


def finals(store: RunStore) -> dict:
    return {r["hash"]: r["final"] for r in store.records()}


# ---------------------------------------------------------------------- executors (fast)
def test_executor_names_and_missing_ray(monkeypatch):
    with pytest.raises(ValueError, match="unknown executor 'dask'; valid: local, ray"):
        executors.check_executor("dask")

    def no_ray(name):
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(executors.importlib, "import_module", no_ray)
    with pytest.raises(ImportError, match=r"pip install 'vldbook\[ray\]'"):
        executors.import_ray()
    assert executors.run_threads({"threads": 4}) == 4 and executors.run_threads({}) == 1


def test_book_driver_passes_the_executor():
    sources = book.notebook_sources(None, None, ["main_results", "k_ablation"])
    extra = book.executor_parameters("ray", "auto")
    planned = book.plan(sources, "smoke", "results", extra)
    assert all(p["executor"] == "ray" and p["ray_address"] == "auto" for _, p in planned)
    with pytest.raises(book.BookError, match="--ray-address needs --executor ray"):
        book.executor_parameters(None, "auto")
    assert book.executor_parameters(None, None) == []


def _training_chapters() -> list[str]:
    """The chapters whose grid has runs to train (teacher_zero_shot has none: it only encodes)."""
    out = []
    for name in chapters.CHAPTERS:
        with contextlib.redirect_stdout(io.StringIO()):
            ch = chapters.open_chapter(name, profile="smoke", results_dir="/tmp/unused")
        if ch.grid.configs:
            out.append(name)
    return out


def test_every_training_chapter_takes_the_executor(monkeypatch):
    """Issue 13: every chapter notebook that trains runs declares ``executor`` and ``ray_address``;
    the book driver's ``--executor ray --ray-address ADDR`` reaches each of them, and each chapter's
    ``train()`` (also those that override it) hands both to run_grid."""
    training = _training_chapters()
    assert set(training) == set(chapters.CHAPTERS) - {"teacher_zero_shot"}
    sources = book.notebook_sources(None, None, list(chapters.CHAPTERS))
    for src in sources:
        if src.name in training:
            assert src.parameters.get("executor") == "local" and "ray_address" in src.parameters, src.name
            assert src.parameters["ray_address"] is None, src.name
    planned = dict((src.name, p) for src, p in book.plan(sources, "smoke", "results",
                                                         book.executor_parameters("ray", "auto")))
    for name in training:
        assert planned[name]["executor"] == "ray" and planned[name]["ray_address"] == "auto", name

    class Called(Exception):
        pass

    def fake_run_grid(store, grid, **kw):
        raise Called(kw)

    monkeypatch.setattr(chapters.run, "run_grid", fake_run_grid)
    for name in training:
        with contextlib.redirect_stdout(io.StringIO()):
            ch = chapters.open_chapter(name, {"profile": "smoke", "executor": "ray", "ray_address": "auto"},
                                       results_dir="/tmp/unused")
        with pytest.raises(Called) as got:
            ch.train()
        assert got.value.args[0] == {"executor": "ray", "ray_address": "auto"}, name


def test_a_failed_run_is_named_and_the_others_finish(world, tmp_path):
    good = tiny_config(world, epochs=1, last_n=1)
    bad = tiny_config(world, dataset_options={"root": str(tmp_path / "nowhere")})
    store = RunStore(tmp_path / "results", cache_dir=world["cache"])
    with pytest.raises(GridRunError) as err:
        run_grid(store, [({"variant": "good"}, good), ({"variant": "bad"}, bad)], workers=1, log=False)
    message = str(err.value)
    assert "1 run(s) failed (1 finished" in message and "bad" in message and config_hash(bad) in message
    assert "FileNotFoundError" in message or "ValueError" in message
    assert store.get(good) is not None and store.get(bad) is None


# ---------------------------------------------------------------------- world_size and DDP pieces
def test_world_size_is_hashed_only_when_not_one(world):
    cfg = tiny_config(world)
    assert "world_size" not in TrainConfig.from_dict(cfg).canonical()
    assert config_hash({**cfg, "world_size": 1}) == config_hash({k: v for k, v in cfg.items() if k != "world_size"})
    assert config_hash({**cfg, "world_size": 2}) != config_hash(cfg)
    with pytest.raises(ValueError, match="world_size must be an integer >= 1"):
        TrainConfig.from_dict({**cfg, "world_size": 0}).validate()
    with pytest.raises(ValueError, match="torchrun --nproc-per-node 2"):
        train({**cfg, "world_size": 2}, progress=False)


def test_shards_split_one_pass_across_ranks(monkeypatch):
    perm = torch.randperm(21, generator=torch.Generator().manual_seed(0))
    # one process: exactly the batches of before (a last batch of one image dropped)
    assert [b.tolist() for b in train_index_batches(21, 10, torch.Generator().manual_seed(0))] == \
        [perm[:10].tolist(), perm[10:20].tolist()]
    shards = []
    for r in range(2):
        monkeypatch.setattr(distributed, "world_size", lambda: 2)
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        shards.append(distributed.shard(perm, 8))  # 11 per rank (padded), batches of 4
    assert [len(b) for b in shards[0]] == [len(b) for b in shards[1]] == [4, 4, 3]
    seen = torch.cat([torch.cat(s) for s in shards])
    assert set(seen.tolist()) == set(perm.tolist()) and len(seen) == 22  # padded by one repeat


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, size: int, port: int, cfg: dict, base: str, cache: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    distributed.init_from_env("cpu")
    try:
        ref = train(cfg, run_dir=Path(base) / "ref", cache_dir=cache, progress=False)

        def stop(info):
            if info["stage"] == "main" and info["epoch"] == 1:
                raise Interrupted("stop")

        try:
            train(cfg, run_dir=Path(base) / "resumed", cache_dir=cache, progress=False, on_epoch_end=stop)
        except Interrupted:
            pass
        res = train(cfg, run_dir=Path(base) / "resumed", cache_dir=cache, progress=False)
        keep = lambda r: {"final": r["final"], "history": [{k: v for k, v in e.items() if k != "train_s"}  # noqa: E731
                                                           for e in r["history"]]}
        out = {"ref": keep(ref), "res": keep(res), "resumed_from": res["resumed_from"],
               "world_size": res["world_size"]}
        (Path(base) / f"rank{rank}.json").write_text(json.dumps(out))
    finally:
        distributed.shutdown()


@pytest.mark.slow
def test_ddp_two_ranks_resume_to_the_uninterrupted_numbers(world, tmp_path):
    """Two gloo ranks train one run; interrupted after epoch 1 and resumed, the run ends with
    the numbers of an uninterrupted 2-rank run (per-rank random state is in the checkpoint);
    only rank 0 writes files."""
    cfg = tiny_config(world, world_size=2)
    executors.warm_teacher_features(cfg, world["cache"])
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), cfg, str(tmp_path), str(world["cache"])),
                                nprocs=2)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world_size"] == 2 and r0["resumed_from"] == {"stage": "main", "epoch": 1}
    assert r0["res"] == r0["ref"] and r1["res"] == r0["ref"]  # every rank reports the same numbers
    assert (tmp_path / "ref" / "checkpoint.pt").is_file()


@pytest.mark.slow
def test_torchrun_cli_writes_one_record(fashion_mnist_root, tmp_path, smoke_cache):
    """`torchrun --standalone --nproc-per-node 2 -m vldlib train --profile smoke --no-fewshot`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "vldlib", "train", "--profile", "smoke", "--no-fewshot", "--quiet",
           "--out", str(tmp_path / "results"), "--cache-dir", str(smoke_cache)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = RunStore(tmp_path / "results").records()
    assert len(records) == 1 and proc.stdout.count("record:") == 1  # rank 0 alone reports
    rec = records[0]
    assert rec["world_size"] == 2 and rec["config"]["world_size"] == 2
    assert rec["final"]["acc_id"] is not None and rec["resumed_from"] is None
    assert rec["hash"] != config_hash({**rec["config"], "world_size": 1})


# ---------------------------------------------------------------------- uint8 image store
def test_image_store_equals_the_decoded_images(world):
    ds = load_dataset("official", root=str(world["root"]), load_size=32, crop_size=28)
    split = ds.train
    cache = world["base"] / "store-cache"
    assert open_image_store(split, cache) is None
    store = build_image_store(split, cache)
    want = split.get_batch(range(len(split)))[0]
    assert store.batch(range(len(split))).dtype == torch.uint8
    assert torch.equal(store.batch(range(len(split))).float() / 255, want)  # bit-identical floats
    assert open_image_store(split, cache) is not None and store_key(split) != store_key(ds.id)
    # damaged bytes are detected and the store is rebuilt
    data = bytearray(store.path.read_bytes())
    data[5] ^= 0xFF
    store.path.write_bytes(bytes(data))
    with pytest.raises(ImageStoreError, match="sha256"):
        open_image_store(split, cache)
    with pytest.warns(RuntimeWarning, match="image store rebuilt"):
        again = build_image_store(split, cache)
    assert torch.equal(again.batch([0, 3]).float() / 255, want[[0, 3]])


def test_store_path_feeds_the_same_batches_and_crops(world, monkeypatch):
    """The uint8 store path gives the DataLoader path's batches; the batched augmentation on
    them (what runs on the GPU) draws the same crops from the same generator."""
    ds = load_dataset("official", root=str(world["root"]), load_size=32, crop_size=28)
    cache = world["base"] / "store-cache2"
    cpu = torch.device("cpu")
    stored = Images.of_split(ds.train, 0, cpu, str(cache))
    files = Images.of_split(ds.train, 0, cpu)
    assert stored.store is not None and files.store is None and files.split is not None
    index = train_index_batches(stored.n, 8, torch.Generator().manual_seed(3))
    tf = student_train_transform(ds, per_image=True)
    for a, b in zip(stored.batches(index), files.batches(index)):
        assert torch.equal(a, b)
        assert torch.equal(tf(a, generator=torch.Generator().manual_seed(7)),
                           tf(b, generator=torch.Generator().manual_seed(7)))
    sub = stored.subset([4, 1])
    assert torch.equal(sub.take([0, 1]), files.take([4, 1]))
    # a store that would not fit on disk: the DataLoader path
    monkeypatch.setattr("vldlib.train.loop.fits_on_disk", lambda split, cache_dir: False)
    assert Images.of_split(ds.id, 0, cpu, str(cache)).store is None


def test_benchmark_gpu_skips_without_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the benchmark would run")
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--json", str(out)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert "skipped" in proc.stdout and json.loads(out.read_text())["skipped"] is True


# ---------------------------------------------------------------------- Ray (local)
@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_agent_register_timeout_ms", "120000")  # slow, busy CI machines
    sigterm = signal.getsignal(signal.SIGTERM)  # ray.init installs its own, even when it fails
    try:
        executors._start_local_ray(ray, num_cpus=2)  # retried: Ray's node start-up deadline is 30 s
        yield ray
        ray.shutdown()
    finally:
        signal.signal(signal.SIGTERM, sigterm)  # the later tests of the session see pytest's handler


@pytest.mark.slow
def test_ray_grid_equals_local_and_reports_failures(world, tmp_path, local_ray):
    configs = [({"variant": "a", "seed": s}, tiny_config(world, seed=s)) for s in (0, 1)]
    local = RunStore(tmp_path / "local", cache_dir=world["cache"])
    remote = RunStore(tmp_path / "ray", cache_dir=world["cache"])
    a = run_grid(local, configs, workers=1, log=False)
    b = run_grid(remote, configs, executor="ray", log=False)
    assert a["hash"].tolist() == b["hash"].tolist() and finals(local) == finals(remote)
    assert b["loss"].tolist() == a["loss"].tolist()
    bad = tiny_config(world, dataset_options={"root": str(tmp_path / "nowhere")})
    with pytest.raises(GridRunError, match="bad"):
        run_grid(remote, [*configs, ({"variant": "bad"}, bad)], executor="ray", log=False)
    assert len(remote.records()) == 2


@pytest.mark.slow
def test_book_main_results_on_ray_equals_local(tmp_path, fashion_mnist_root, local_ray, smoke_cache):
    """`python -m vldlib.book --profile smoke --only main_results --no-build --executor ray`
    (two Table 1 rows to keep it short) gives the local executor's records: the runs the chapter
    plans locally (same hashes), trained here by the local executor to the same finals. The notebook
    kernel connects to the Ray this test started (address "auto")."""
    methods = ["cls", "cls+imcst"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "VLD_CACHE": str(smoke_cache),
           "VLD_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "vldlib.book", "--profile", "smoke", "--only", "main_results",
           "--no-build", "--results-dir", str(tmp_path / "results-ray"), "--executed-dir", str(tmp_path / "nb-ray"),
           "-p", "methods", json.dumps(methods), "--executor", "ray", "--ray-address", "auto"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    with contextlib.redirect_stdout(io.StringIO()):
        chapter = chapters.open_chapter("main_results", profile="smoke", methods=methods,
                                        results_dir=str(tmp_path / "unused"))
    local = RunStore(tmp_path / "results-local", cache_dir=smoke_cache)
    run_grid(local, chapter.grid.configs, workers=1, log=False)
    remote = finals(RunStore(tmp_path / "results-ray"))
    assert finals(local) == remote and len(remote) == 2


# ---------------------------------------------------------------------- the CLI's --executor ray
def test_cli_executor_flags_are_checked_before_anything_trains(tmp_path, capsys):
    """``python -m vldlib train``: ``--ray-address`` without ``--executor ray`` and ``--executor ray``
    with ``--force`` are one line and exit 2, before Ray starts or anything trains."""
    from vldlib.__main__ import main as vldlib_main

    base = ["train", "--profile", "smoke", "--no-fewshot", "--quiet", "--out", str(tmp_path / "results")]
    assert vldlib_main([*base, "--ray-address", "auto"]) == 2
    assert capsys.readouterr().err.strip() == "vldlib train: --ray-address needs --executor ray"
    assert vldlib_main([*base, "--executor", "ray", "--force"]) == 2
    assert "--executor ray trains one process per run without --force" in capsys.readouterr().err
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("record.json"))


@pytest.mark.slow
def test_cli_train_on_ray_writes_the_local_record(tmp_path, fashion_mnist_root, local_ray, capsys, monkeypatch,
                                                  smoke_cache):
    """`python -m vldlib train --profile smoke --no-fewshot --executor ray`: the one run is a Ray task
    (run_grid with executor "ray"; the Ray this module started is reused) and writes the record the
    local executor writes: same hash, same final metrics, same loss history. A second call reads it back."""
    from vldlib.__main__ import main as vldlib_main

    on_ray = []
    real = executors._execute_ray
    monkeypatch.setattr(executors, "_execute_ray",
                        lambda store, jobs, *a: on_ray.append(len(jobs)) or real(store, jobs, *a))
    base = ["train", "--profile", "smoke", "--no-fewshot", "--quiet", "--threads", "1", "--cache-dir", str(smoke_cache)]
    stores = {}
    for name, extra in (("local", []), ("ray", ["--executor", "ray"])):
        stores[name] = RunStore(tmp_path / name)
        assert vldlib_main([*base, "--out", str(tmp_path / name), *extra]) == 0
        out = capsys.readouterr().out
        assert out.count("record: ") == 1 and str(tmp_path / name) in out
    assert on_ray == [1]  # the local call trained in this process; the ray call sent its one run to Ray
    local, remote = stores["local"].records(), stores["ray"].records()
    assert len(local) == len(remote) == 1
    assert local[0]["hash"] == remote[0]["hash"] and local[0]["final"] == remote[0]["final"]
    assert [h["loss"] for h in local[0]["history"]] == [h["loss"] for h in remote[0]["history"]]
    mtime = next((tmp_path / "ray").glob("*/record.json")).stat().st_mtime_ns
    assert vldlib_main([*base, "--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0  # finished: read back
    assert next((tmp_path / "ray").glob("*/record.json")).stat().st_mtime_ns == mtime and on_ray == [1]


# ---------------------------------------------------------------------- Ray never hangs, never leaks (issue 19)
def _ray_cli_args(world: dict, out: Path, epochs: int, *extra: str) -> list[str]:
    teacher = json.dumps({"model": tiny_openclip_model(world["ckpt"]), "pretrained": str(world["ckpt"]),
                          "device": "cpu"})
    return ["train", "--profile", "smoke", "--dataset", "official", "--data-root", str(world["root"]),
            "--teacher", "openclip", "--set", f"teacher_options={teacher}",
            "--set", "dataset_options.load_size=32", "--set", "dataset_options.crop_size=28",
            "--set", 'student_options={"width": 4}', "--set", "template=a photo of {name}",
            "--set", "eval_epochs=last_n", "--set", "last_n=1", "--epochs", str(epochs), "--batch-size", "8",
            "--no-fewshot", "--out", str(out), "--cache-dir", str(world["cache"]), "--quiet", *extra]


def test_ray_address_forms_and_connect_timeout(monkeypatch):
    assert executors.ray_endpoint("127.0.0.1:6379") == ("127.0.0.1", 6379)
    assert executors.ray_endpoint("ray://head.example:10001") == ("head.example", 10001)
    assert executors.ray_endpoint("[::1]:6379") == ("::1", 6379)
    with pytest.raises(ValueError, match="'nohostport' is not HOST:PORT"):
        executors.ray_endpoint("nohostport")
    monkeypatch.setenv("VLD_RAY_CONNECT_TIMEOUT", "2.5")
    assert executors.connect_timeout_s() == 2.5
    monkeypatch.setenv("VLD_RAY_CONNECT_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="VLD_RAY_CONNECT_TIMEOUT='soon' is not a number"):
        executors.connect_timeout_s()
    monkeypatch.delenv("VLD_RAY_CONNECT_TIMEOUT")
    assert executors.connect_timeout_s() == executors.CONNECT_TIMEOUT_S == 30


def test_ray_address_where_nothing_listens_is_one_line(tmp_path):
    """`--executor ray --ray-address 127.0.0.1:<free port>`: one line naming the address and the fix,
    exit 2, well within the connect deadline (Ray itself retries for many minutes, printing warnings)."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "VLD_RAY_CONNECT_TIMEOUT": "10"}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "vldlib", "train", "--profile", "smoke", "--no-fewshot", "--quiet",
           "--out", str(tmp_path / "results"), "--executor", "ray", "--ray-address", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=180)  # imports on a loaded machine; then 10 s at most
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        raise AssertionError("the CLI still waits for a Ray cluster where nothing listens")
    lines = err.strip().splitlines()
    assert proc.returncode == 2, err[-2000:]
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "ray start --head" in lines[0], lines


def test_a_task_no_ray_node_can_hold_is_refused():
    nodes = [{"Alive": True, "Resources": {"CPU": 2.0}}, {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}},
             {"Alive": True, "Resources": {"CPU": 1.0, "GPU": 1.0}}]
    executors.check_ray_resources(nodes, {"num_cpus": 2, "num_gpus": 0}, "auto")
    executors.check_ray_resources(nodes, {"num_cpus": 1, "num_gpus": 1}, "auto")
    with pytest.raises(ValueError, match=r"needs 4 CPU\(s\) but the largest node of the Ray cluster \(auto\) "
                                         r"has 2; train with --threads 2"):
        executors.check_ray_resources(nodes, {"num_cpus": 4, "num_gpus": 0}, "auto")
    with pytest.raises(ValueError, match=r"needs 2 GPU\(s\).*has 1"):
        executors.check_ray_resources(nodes, {"num_cpus": 1, "num_gpus": 2}, "auto")


def test_ray_init_keeps_the_callers_sigterm_handler(monkeypatch):
    """``ray.init`` installs its own SIGTERM handler (sys.exit); a caller's (the CLI's: one line, exit
    143) is put back."""
    class FakeRay:
        initialised = False

        def is_initialized(self):
            return self.initialised

        def init(self, **kwargs):
            signal.signal(signal.SIGTERM, lambda *a: None)  # what ray.init does
            self.initialised = True

    monkeypatch.setattr(executors, "import_ray", FakeRay)
    monkeypatch.setattr(executors.socket, "create_connection", lambda *a, **k: socket.socket())

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        executors.ray_init("127.0.0.1:1")
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.slow
def test_more_threads_than_any_ray_node_has_is_one_line(world, tmp_path, local_ray, capsys):
    """`--threads 4` on a Ray whose node has 2 CPUs: the task could never be scheduled (it waited for
    ever); now one line naming the resource and the fix, exit 2, nothing submitted."""
    import threading

    from vldlib.__main__ import main as vldlib_main

    got: dict[str, int] = {}
    call = threading.Thread(target=lambda: got.update(code=vldlib_main(
        _ray_cli_args(world, tmp_path / "results", 1, "--threads", "4", "--executor", "ray"))), daemon=True)
    call.start()
    call.join(120)
    assert not call.is_alive(), "the run waits for a Ray node with 4 CPUs"
    err = capsys.readouterr().err.strip().splitlines()
    assert got["code"] == 2 and len(err) == 1, err
    assert "needs 4 CPU(s)" in err[0] and "has 2" in err[0] and "--threads 2" in err[0], err


def _session_processes(sid: int) -> list[tuple[int, str]]:
    """Live (not zombie) processes of session ``sid``: pid and command line."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append((int(entry), cmd[:120]))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_sigkilled_cli_leaves_no_process_of_its_local_ray(world, tmp_path):
    """`python -m vldlib train --executor ray` SIGKILLed mid-run: every process of the local Ray it
    started (gcs_server, raylet, agents, workers) is gone shortly after (they were left running)."""
    pytest.importorskip("ray")
    out = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "RAY_agent_register_timeout_ms": "120000"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, "-m", "vldlib", *_ray_cli_args(world, out, 400, "--executor", "ray")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        t0 = time.monotonic()
        while not any(out.glob("*/checkpoint.pt")):  # the Ray task trains
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() - t0 < 420, "no checkpoint"
            time.sleep(0.2)
        ray_procs = [p for p in _session_processes(proc.pid) if p[0] != proc.pid]
        assert any("raylet" in cmd for _, cmd in ray_procs), ray_procs
        proc.kill()
        proc.wait(30)
        deadline = time.monotonic() + 60
        while (left := _session_processes(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert left == [], left
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid, _ in _session_processes(proc.pid):  # what a failed run of this test left: ours
            try:
                os.kill(pid, 9)
            except OSError:
                pass
