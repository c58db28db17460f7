"""The one place for atomic writes and safe reads.

Every file the library writes (run records, checkpoints, feature caches, description caches,
executed notebooks, benchmark records) goes through :func:`atomic_write`: the bytes go to a
temp file in the destination's folder, are flushed and ``fsync``-ed, get ordinary permissions
(``0o666 & ~umask``; ``mkstemp`` would leave ``0600``), and replace the destination with
``os.replace`` (atomic on POSIX). On any error, KeyboardInterrupt included, the temp file is
removed and the destination is untouched. Readers see either the old file or the new one,
never a partial one. Temp files are named ``.<name>.<8 chars>.tmp`` (:data:`TEMP_FILE`), so that
an owner of a folder (the run store) can recognise one a killed process left.

Content checks: :func:`write_bytes_checked` writes a ``<name>.sha256`` sidecar with the file's
sha256 and :func:`read_bytes_checked` verifies it, so a flipped bit or a hand edit is found
(files without a sidecar, written before, are read as they are). Checkpoints
(:func:`save_torch_checked` / :func:`load_torch_checked`) and run records
(:func:`write_json_checked`) use them.

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
import re
import secrets
from pathlib import Path
from typing import Any, Callable, IO, Mapping

__all__ = ["atomic_write", "write_bytes_atomic", "write_text_atomic", "write_json_atomic",
           "save_torch_atomic", "read_json", "try_read_json", "finite_json", "canonical_json",
           "replace_file", "sha256_file", "save_torch_checked", "load_torch_checked", "SHA256_SUFFIX",
           "write_bytes_checked", "read_bytes_checked", "write_json_checked", "json_text", "temp_path",
           "temp_target", "TEMP_FILE", "append_json_line", "json_sha256"]

#: The sidecar of a file written by :func:`write_bytes_checked`: ``<name>.sha256``.
SHA256_SUFFIX = ".sha256"
#: The name of an atomic write's temp file (:func:`temp_path`); group 1 is the destination's name.
TEMP_FILE = re.compile(r"\.(.+)\.[a-z0-9_]{8}\.tmp")
_TEMP_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"


def _prepare_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a folder; remove it or choose another location")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except PermissionError as err:
        raise PermissionError(f"cannot create folder {folder} (permission denied); "
                              "choose a writable location") from err


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh temp file name for a write of ``path``, next to it: ``.<name>.<8 random chars>.tmp``
    (the pattern :data:`TEMP_FILE` matches, as ``mkstemp`` named them before)."""
    path = Path(path)
    return path.parent / f".{path.name}.{''.join(secrets.choice(_TEMP_CHARS) for _ in range(8))}.tmp"


def temp_target(name: str) -> str | None:
    """The file name a temp file called ``name`` was writing (:func:`temp_path`), else None."""
    found = TEMP_FILE.fullmatch(name)
    return found.group(1) if found else None


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fh)`` on a binary temp file next to ``path``, then atomically replace ``path``.

    The temp file's name is chosen before it is created, so an interrupt at any point (even while
    it is being created) removes it. Returns ``path``. Raises ``PermissionError`` /
    ``NotADirectoryError`` with the folder named when the destination folder cannot be written.
    """
    path = Path(path)
    _prepare_folder(path.parent)
    tmp: Path | None = None
    try:
        for _ in range(100):
            tmp = temp_path(path)
            try:  # mode 0o666: the kernel applies the umask (ordinary permissions, not mkstemp's 0600)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
                break
            except FileExistsError:  # another writer's temp file: never ours to remove
                tmp = None
            except PermissionError as err:
                tmp = None
                raise PermissionError(f"cannot write in {path.parent} (permission denied); "
                                      "choose a writable location") from err
        else:
            raise FileExistsError(f"cannot create a temp file next to {path}; remove the .*.tmp files there")
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
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


def json_sha256(obj: Any) -> str:
    """``sha256(canonical_json(obj))`` in hex: the content digest of a JSON-able value."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def json_text(obj: Any, *, indent: int = 1, ensure_ascii: bool = True) -> str:
    """``obj`` as strict JSON text (non-finite floats -> null), as :func:`write_json_atomic` writes it."""
    return json.dumps(finite_json(obj), indent=indent, allow_nan=False, ensure_ascii=ensure_ascii) + "\n"


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int = 1,
                      ensure_ascii: bool = True) -> Path:
    """Write ``obj`` as strict JSON (non-finite floats -> null) atomically."""
    return write_text_atomic(path, json_text(obj, indent=indent, ensure_ascii=ensure_ascii))


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


def _parse_digests(raw: bytes) -> list[str]:
    """The digests a sidecar's bytes list, one per line (an unreadable sidecar lists nothing)."""
    try:
        return [line.strip() for line in raw.decode("ascii").splitlines() if line.strip()]
    except UnicodeDecodeError:
        return []


def _sidecar_digests(path: Path) -> list[str] | None:
    """The digests listed in ``path``'s sidecar (one per line), None when there is no sidecar."""
    try:
        return _parse_digests(_sidecar(path).read_bytes())
    except FileNotFoundError:
        return None
    except OSError:
        return []  # unreadable: nothing matches


def write_bytes_checked(path: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` atomically with its sha256 in the sidecar ``<path>.sha256``; returns the digest.

    The sidecar first lists the new digest and the one of the file in place, then the file is
    replaced, then the sidecar is reduced to the new digest: an interrupt at any point leaves a
    file (old or new) that its sidecar accepts, and a reader that finds the file finds its sidecar."""
    path = Path(path)
    digest = hashlib.sha256(data).hexdigest()
    previous = []
    if path.exists():  # the file in place, as long as its sidecar (if any) accepts it
        listed, current = _sidecar_digests(path), sha256_file(path)
        previous = [current] if not listed or current in listed else []
    sidecar = _sidecar(path)
    write_text_atomic(sidecar, "\n".join([digest, *previous]) + "\n")
    write_bytes_atomic(path, data)
    if previous:
        write_text_atomic(sidecar, digest + "\n")
    return digest


def _read_at(name: str, folder_fd: int | None, folder: Path) -> bytes:
    if folder_fd is None:
        return (folder / name).read_bytes()
    fd = os.open(name, os.O_RDONLY, dir_fd=folder_fd)
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def read_bytes_checked(path: str | os.PathLike) -> bytes:
    """The bytes of ``path`` after checking them against its sidecar (:func:`write_bytes_checked`);
    a mismatch is a one-line ``ValueError`` naming the file. A file without a sidecar (written
    before content checks) is returned as it is.

    The file, then its sidecar, are read through one handle on their folder, so a folder renamed
    in between (a run store's folder swap) cannot pair a file with another folder's sidecar."""
    path = Path(path)
    folder_fd = None
    if os.open in os.supports_dir_fd and hasattr(os, "O_DIRECTORY"):
        folder_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        data = _read_at(path.name, folder_fd, path.parent)
        try:
            expected: list[str] | None = _parse_digests(_read_at(path.name + SHA256_SUFFIX, folder_fd, path.parent))
        except FileNotFoundError:
            expected = None
        except OSError:
            expected = []
    finally:
        if folder_fd is not None:
            os.close(folder_fd)
    actual = hashlib.sha256(data).hexdigest()
    if expected is not None and actual not in expected:
        listed = ", ".join(d[:12] + "..." for d in expected) or "nothing"
        raise ValueError(f"{path} fails its content check (sha256 {actual[:12]}..., its sidecar "
                         f"{path.name}{SHA256_SUFFIX} says {listed}): "
                         "the file is damaged; delete it (and its sidecar) to recompute it")
    return data


def write_json_checked(path: str | os.PathLike, obj: Any) -> str:
    """:func:`write_json_atomic` with a sha256 sidecar (:func:`write_bytes_checked`); returns the digest."""
    return write_bytes_checked(path, json_text(obj).encode("utf-8"))


def save_torch_checked(obj: Any, path: str | os.PathLike) -> str:
    """``torch.save(obj)`` atomically, with the sha256 of the bytes in the sidecar ``<path>.sha256``
    (:func:`write_bytes_checked`); returns the digest."""
    import torch  # heavy; only the tensor writers need it

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_bytes_checked(path, buffer.getvalue())


def load_torch_checked(path: str | os.PathLike, **load_kwargs: Any) -> Any:
    """``torch.load(path, **load_kwargs)`` after checking the file against its sidecar
    (:func:`read_bytes_checked`); a mismatch is a one-line ``ValueError`` naming the file. A file
    without a sidecar (written before content checks) is loaded as it is."""
    import torch  # heavy; only the tensor readers need it

    return torch.load(io.BytesIO(read_bytes_checked(path)), **load_kwargs)
