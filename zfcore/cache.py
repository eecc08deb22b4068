"""Artefact cache: configuration hashes, atomic writes, checksummed safe loading.

Trained models, checkpoints and mined results live under ``<cache_dir>/<kind>/<key>/`` where
``key`` is a hash of the configuration that produced them, so a notebook run twice does not train
twice and every notebook also runs alone on an empty cache.

Every write goes to a temporary file in the same folder, is flushed and fsynced, and then
``os.replace``-d over the target: a run killed at any moment leaves the previous file intact.
Each tensor file carries a SHA-256 side file; a truncated or corrupt entry is detected and
rebuilt rather than used. Tensors are loaded with ``torch.load(weights_only=True)``, so a file
cannot run code when it is read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import ZFCoreError
from .locations import writable_dir

__all__ = [
    "CacheTypeError",
    "canonical",
    "config_hash",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "save_tensors",
    "load_tensors",
    "cached",
    "CacheError",
    "entry_dir",
    "atomic_savefig",
    "sha256_file",
    "entry_lock",
]


class CacheError(ZFCoreError, RuntimeError):
    """A cache entry or checkpoint that is corrupt, unsafe or of the wrong shape."""


class CacheTypeError(ZFCoreError, TypeError):
    """A value that cannot be stored as JSON (``json.dumps``'s hook expects a ``TypeError``)."""


def canonical(obj: Any) -> Any:
    """JSON-able canonical form of a configuration (dataclasses, paths, tuples, floats): what a
    cache key hashes (:func:`config_hash`) and what ``config.json`` beside an entry shows."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float):
        return repr(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return repr(obj)


def config_hash(config: Any, length: int = 16) -> str:
    """Stable hex hash of a configuration (dicts, dataclasses, lists, numbers, strings)."""
    text = json.dumps(canonical(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: "str | Path", data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: "str | Path", text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: "str | Path", obj: Any) -> Path:
    return atomic_write_text(
        path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"
    )


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise CacheTypeError(f"cannot store {type(o).__name__} as JSON")


def atomic_savefig(fig, path: "str | Path", **kwargs) -> Path:
    """Save a matplotlib figure atomically (``fig.savefig`` into memory, then rename)."""
    path = Path(path)
    buf = io.BytesIO()
    kwargs.setdefault("dpi", 110)
    kwargs.setdefault("bbox_inches", "tight")
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png", **kwargs)
    return atomic_write_bytes(path, buf.getvalue())


def sha256_file(path: "str | Path") -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_tensors(path: "str | Path", obj: Any) -> Path:
    """``torch.save`` ``obj`` atomically with a ``.sha256`` side file.

    ``obj`` must be made of tensors, numbers, strings, lists, tuples and dicts so that
    :func:`load_tensors` can read it back with ``weights_only=True``.
    """
    path = Path(path)
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    new = hashlib.sha256(data).hexdigest()
    side = _side_file(path)
    # Three atomic steps, so that a kill at any moment leaves a file that passes its checksum
    # (tests/test_reliability_atomic.py kills a writer at every step): the side file first
    # accepts both the current and the new checksum, then the data is replaced, then the side
    # file accepts only the new one. (Writing one checksum before the data would leave the
    # previous, intact file failing its checksum after a kill between the two writes.)
    old = _accepted_hashes(side)
    if path.is_file() and len(old) != 1:  # unknown or ambiguous: hash what is there now
        old = [sha256_file(path)]
    atomic_write_text(side, "\n".join(dict.fromkeys([new, *old])) + "\n")
    atomic_write_bytes(path, data)
    atomic_write_text(side, new + "\n")
    return path


def _side_file(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _accepted_hashes(side: Path) -> list[str]:
    """The checksums a ``.sha256`` side file accepts (one per line), or [] when it is missing."""
    try:
        return [line.strip() for line in side.read_text().splitlines() if line.strip()]
    except (FileNotFoundError, UnicodeDecodeError):
        return []


def load_tensors(path: "str | Path", map_location: Any = "cpu", verify: bool = True) -> Any:
    """Load a file written by :func:`save_tensors` (or any checkpoint) safely.

    Raises :class:`CacheError` naming the file when it is missing, fails its checksum, is
    truncated or corrupt, or holds pickled code (``weights_only=True`` refuses it).
    """
    path = Path(path)
    if not path.is_file():
        raise CacheError(f"{path}: no such file")
    side = _side_file(path)
    if verify and side.is_file():
        want = _accepted_hashes(side)
        got = sha256_file(path)
        if got not in want:
            raise CacheError(
                f"{path}: checksum mismatch (file truncated or corrupt); delete it "
                f"and it will be rebuilt"
            )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle.UnpicklingError, RuntimeError (zip), EOFError, ...
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e) or "GLOBAL" in str(e):
            raise CacheError(
                f"{path}: refused to load: the file holds Python objects that "
                f"could run code when unpickled (only tensors and plain data are "
                f"accepted). Re-save it as a state_dict. ({msg})"
            ) from None
        raise CacheError(
            f"{path}: unreadable or corrupt checkpoint ({type(e).__name__}: {msg})"
        ) from None


def entry_dir(cache_dir: "str | Path", kind: str, config: Any) -> Path:
    """``<cache_dir>/<kind>/<config_hash(config)>/``, with the configuration stored beside it."""
    d = Path(cache_dir) / kind / config_hash(config)
    return d


@contextlib.contextmanager
def entry_lock(d: Path):
    """An exclusive lock on a cache entry, so two processes (pytest workers, notebooks) that
    need the same artefact build it once: the second waits and then reads the first's result.

    Only the lock's holder writes into the entry, so temporary files found there on entry were
    left by a writer that was killed mid-write (:func:`atomic_write_bytes`): they are removed.
    """
    import fcntl

    writable_dir(d, "ZFCORE_CACHE")  # a read-only cache names the variable that moves it
    with open(d / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        for stale in d.glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached(
    cache_dir: "str | Path",
    kind: str,
    config: Any,
    build: Callable[[], Any],
    filename: str = "result.pt",
) -> Any:
    """Return the cached result for ``config`` or ``build()`` it, store it and return it.

    A corrupt entry (checksum mismatch, truncation, unsafe content) is rebuilt, not used.
    Concurrent callers with the same ``config`` build it once (a file lock on the entry).
    """
    d = entry_dir(cache_dir, kind, config)
    path = d / filename
    with entry_lock(d):
        if path.is_file():
            try:
                return load_tensors(path)
            except CacheError:
                pass  # fall through: rebuild
        result = build()
        atomic_write_json(d / "config.json", canonical(config))
        save_tensors(path, result)
        return result
