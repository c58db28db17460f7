"""Faults of the checked torch files (``vldlib.io``): a save interrupted between the sha256 sidecar
and the file, two interrupted saves in a row, and a file without a sidecar all stay readable."""
from __future__ import annotations

import pytest


def test_checkpoint_save_interrupted_between_sidecar_and_file_stays_readable(tmp_path, monkeypatch):
    import torch

    import vldlib.io
    from vldlib.io import load_torch_checked, save_torch_checked

    path = tmp_path / "checkpoint.pt"
    save_torch_checked({"epoch": 1}, path)

    real = vldlib.io.write_bytes_atomic

    def interrupted(target, data):  # the sidecar is written, then Ctrl-C before the file is
        if target == path:
            raise KeyboardInterrupt
        return real(target, data)

    monkeypatch.setattr(vldlib.io, "write_bytes_atomic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_torch_checked({"epoch": 2}, path)
    monkeypatch.undo()
    assert len((tmp_path / "checkpoint.pt.sha256").read_text().split()) == 2  # new and old listed
    assert load_torch_checked(path, weights_only=False) == {"epoch": 1}  # the old one, accepted
    save_torch_checked({"epoch": 2}, path)
    assert load_torch_checked(path, weights_only=False) == {"epoch": 2}
    (tmp_path / "checkpoint.pt.sha256").unlink()  # written before content checks: read as it is
    assert load_torch_checked(path, weights_only=False) == {"epoch": 2}
    assert torch.load(path, weights_only=False) == {"epoch": 2}  # still a plain torch file


def test_checkpoint_without_sidecar_or_after_two_interrupts_stays_readable(tmp_path, monkeypatch):
    """The sidecar lists the digest of the file actually in place (not the old sidecar's first line):
    an old checkpoint without a sidecar, and a checkpoint after two interrupted saves in a row, are
    both still accepted."""
    import torch

    import vldlib.io
    from vldlib.io import load_torch_checked, save_torch_checked

    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 1}, path)  # written before content checks: no sidecar
    real = vldlib.io.write_bytes_atomic

    def interrupted(target, data):
        if target == path:
            raise KeyboardInterrupt
        return real(target, data)

    monkeypatch.setattr(vldlib.io, "write_bytes_atomic", interrupted)
    for epoch in (2, 3):  # two saves interrupted between the sidecar and the file
        with pytest.raises(KeyboardInterrupt):
            save_torch_checked({"epoch": epoch}, path)
        assert load_torch_checked(path, weights_only=False) == {"epoch": 1}
    monkeypatch.undo()
