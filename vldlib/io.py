"""The one place for atomic writes and safe reads.

Every file the library writes (run records, checkpoints, feature caches, description caches,
executed notebooks, benchmark records) goes through :func:`atomic_write`: the bytes go to a
temp file in the destination's folder, are flushed and ``fsync``-ed, get ordinary permissions
(``0o666 & ~umask``; ``mkstemp`` would leave ``0600``), and replace the destination with
``os.replace`` (atomic on POSIX). On any error, KeyboardInterrupt included, the temp file is
removed and the destination is untouched. Readers see either the old file or the new one,
never a partial one.

Content checks: :func:`save_torch_checked` writes a ``<name>.sha256`` sidecar with the file's
sha256 and :func:`load_torch_checked` verifies it, so a flipped bit that ``torch.load`` would
accept is found (files without a sidecar, written before, are read as they are).

Readers: :func:`read_json` raises a one-line ``ValueError`` naming the file for malformed JSON;
:func:`try_read_json` returns None for a missing or unreadable file.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO, Mapping

__all__ = ["atomic_write", "write_bytes_atomic", "write_text_atomic", "write_json_atomic",
           "save_torch_atomic", "read_json", "try_read_json", "finite_json", "canonical_json",
           "replace_file", "sha256_file", "save_torch_checked", "load_torch_checked", "SHA256_SUFFIX",
           "append_json_line"]

#: The sidecar of a file written by :func:`save_torch_checked`: ``<name>.sha256``.
SHA256_SUFFIX = ".sha256"


def _umask() -> int:
    try:  # Linux: read it without touching it
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _prepare_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a folder; remove it or choose another location")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except PermissionError as err:
        raise PermissionError(f"cannot create folder {folder} (permission denied); "
                              "choose a writable location") from err


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fh)`` on a binary temp file next to ``path``, then atomically replace ``path``.

    Returns ``path``. Raises ``PermissionError`` / ``NotADirectoryError`` with the folder named
    when the destination folder cannot be written.
    """
    path = Path(path)
    _prepare_folder(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except PermissionError as err:
        raise PermissionError(f"cannot write in {path.parent} (permission denied); "
                              "choose a writable location") from err
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def replace_file(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Atomically move ``src`` over ``dst`` (same filesystem): a file, or a folder onto a path
    that is free (or an empty folder), e.g. a finished run's folder."""
    os.replace(src, dst)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def append_json_line(path: str | os.PathLike, obj: Any) -> None:
    """Append ``obj`` as one strict JSON line (non-finite floats -> null) to ``path`` and flush
    it to disk (a log that grows as a run goes; a line cut by a crash is rewritten on resume)."""
    line = json.dumps(finite_json(obj), allow_nan=False, ensure_ascii=True) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def finite_json(obj: Any) -> Any:
    """``obj`` with non-finite floats (NaN, inf) replaced by None, so the JSON is strict."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def canonical_json(obj: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace, ASCII only, NaN rejected."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int = 1,
                      ensure_ascii: bool = True) -> Path:
    """Write ``obj`` as strict JSON (non-finite floats -> null) atomically."""
    text = json.dumps(finite_json(obj), indent=indent, allow_nan=False, ensure_ascii=ensure_ascii) + "\n"
    return write_text_atomic(path, text)


def save_torch_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` atomically."""
    import torch  # heavy; only the tensor writers need it

    return atomic_write(path, lambda fh: torch.save(obj, fh))


def read_json(path: str | os.PathLike, *, what: str = "JSON file") -> Any:
    """Parse a JSON file; a malformed one raises ``ValueError`` naming the file and the fix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"no {what} at {path}") from None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{what} {path} is not valid JSON ({err}); fix or delete it") from None


def try_read_json(path: str | os.PathLike) -> Any | None:
    """Parsed JSON, or None when the file is missing, unreadable or malformed."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sidecar(path: str | os.PathLike) -> Path:
    """The sha256 sidecar of ``path``: ``<path>.sha256``."""
    return Path(str(path) + SHA256_SUFFIX)


def _sidecar_digests(path: Path) -> list[str] | None:
    """The digests listed in ``path``'s sidecar (one per line), None when there is no sidecar."""
    try:
        text = _sidecar(path).read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return []  # unreadable: nothing matches
    return [line.strip() for line in text.splitlines() if line.strip()]


def save_torch_checked(obj: Any, path: str | os.PathLike) -> str:
    """``torch.save(obj)`` atomically, with the sha256 of the bytes in the sidecar ``<path>.sha256``;
    returns the digest.

    The sidecar first lists the new digest and the one of the file in place, then the file is
    replaced, then the sidecar is reduced to the new digest: an interrupt at any point leaves a
    file (old or new) that its sidecar accepts."""
    import torch  # heavy; only the tensor writers need it

    path = Path(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    previous = []
    if path.exists():  # the file in place, as long as its sidecar (if any) accepts it
        listed, current = _sidecar_digests(path), sha256_file(path)
        previous = [current] if not listed or current in listed else []
    sidecar = _sidecar(path)
    write_text_atomic(sidecar, "\n".join([digest, *previous]) + "\n")
    write_bytes_atomic(path, data)
    write_text_atomic(sidecar, digest + "\n")
    return digest


def load_torch_checked(path: str | os.PathLike, **load_kwargs: Any) -> Any:
    """``torch.load(path, **load_kwargs)`` after checking the file against its sidecar
    (:func:`save_torch_checked`); a mismatch is a one-line ``ValueError`` naming the file. A file
    without a sidecar (written before content checks) is loaded as it is."""
    import torch  # heavy; only the tensor readers need it

    path = Path(path)
    expected = _sidecar_digests(path)
    if expected is None:
        return torch.load(path, **load_kwargs)
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual not in expected:
        raise ValueError(f"{path} fails its content check (sha256 {actual[:12]}..., its sidecar "
                         f"{path.name}{SHA256_SUFFIX} says {', '.join(d[:12] + '...' for d in expected) or 'nothing'}): "
                         "the file is damaged; delete it (and its sidecar) to recompute it")
    return torch.load(io.BytesIO(data), **load_kwargs)
