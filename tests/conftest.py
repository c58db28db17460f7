"""Shared test settings: no hub downloads, few threads, paths to the shared reference data."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

#: Under pytest-xdist (``make test`` runs ``-n 2``) each worker gets a share of the cores.
XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1) // XDIST_WORKERS))

#: ``make test``'s files, longest first (as measured with ``--durations``), run with xdist's
#: ``--dist loadfile --no-loadscope-reorder``: each worker takes the next file when it runs short,
#: so the two finish close together, and the smoke book's readers (test_book, test_browser) come
#: after test_notebooks has started building it instead of waiting for it. Other files follow in
#: collection order.
LONGEST_FIRST: tuple[str, ...] = ("test_notebooks.py", "test_notebooks_paper.py", "test_interrupts.py",
                                  "test_scale.py", "test_datasets_book.py", "test_report.py", "test_book.py",
                                  "test_browser.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the collected tests by :data:`LONGEST_FIRST` (a stable sort: order within a file is kept)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


REPO = Path(__file__).resolve().parents[1]
OFFICIAL_DATA = REPO.parent / "shared" / "reference" / "official-data"
PAPER_TABLES = REPO.parent / "shared" / "reference" / "paper_tables.json"


@pytest.fixture(scope="session")
def official_data() -> Path:
    """The official split lists and class files (never copied into the project)."""
    if not OFFICIAL_DATA.is_dir():
        pytest.skip(f"official data folder absent: {OFFICIAL_DATA}")
    return OFFICIAL_DATA


@pytest.fixture(scope="session")
def fashion_mnist_root() -> Path:
    root = Path(os.environ.get("VLD_DATA", "/usr/share/datasets/fashion-mnist"))
    if not (root / "t10k-labels-idx1-ubyte.gz").exists() and not (root / "t10k-labels-idx1-ubyte").exists():
        pytest.skip(f"Fashion-MNIST not installed at {root} (apt-get install dataset-fashion-mnist)")
    return root


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One teacher-feature cache for every test that trains the smoke profile for real but does not
    test the cache itself (pass it as ``cache_dir`` / ``--cache-dir`` / ``$VLD_CACHE``). The smoke
    teacher's features of the smoke data take most of a first smoke run (~40 s on 2 cores); later
    runs read them (~1 s). The cache is keyed by teacher and data and verified on read, so sharing
    it changes no number."""
    return tmp_path_factory.mktemp("smoke-cache")
