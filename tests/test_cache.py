"""Configuration hashes, atomic writes, checksummed safe loading (zfcore.cache)."""

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from zfcore import cache
from zfcore.profiles import get_profile


def test_config_hash_stable_and_sensitive():
    a = {"lr": 1e-2, "layers": (1, 2), "name": "zf"}
    b = {"name": "zf", "layers": [1, 2], "lr": 0.01}  # same content, other order/containers
    assert cache.config_hash(a) == cache.config_hash(b)
    assert cache.config_hash(a) != cache.config_hash({**a, "lr": 1e-3})
    assert cache.config_hash(get_profile("tiny")) != cache.config_hash(get_profile("mini"))
    assert len(cache.config_hash(a)) == 16


def test_config_hash_of_dataclass():
    @dataclass
    class C:
        x: int = 1
        p: Path = Path("/a")

    assert cache.config_hash(C()) == cache.config_hash({"x": 1, "p": "/a"})


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "sub" / "f.json"
    cache.atomic_write_json(p, {"a": 1})
    cache.atomic_write_json(p, {"a": 2})
    assert json.loads(p.read_text()) == {"a": 2}
    assert [q.name for q in p.parent.iterdir()] == ["f.json"]


def test_atomic_write_failure_keeps_previous(tmp_path, monkeypatch):
    p = tmp_path / "f.txt"
    cache.atomic_write_text(p, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        cache.atomic_write_text(p, "new")
    assert p.read_text() == "old"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["f.txt"]


def test_save_load_roundtrip_and_checksum(tmp_path):
    p = tmp_path / "m.pt"
    obj = {"w": torch.arange(6.0).view(2, 3), "epoch": 3, "names": ["a", "b"]}
    cache.save_tensors(p, obj)
    back = cache.load_tensors(p)
    torch.testing.assert_close(back["w"], obj["w"])
    assert back["epoch"] == 3 and back["names"] == ["a", "b"]
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(cache.CacheError, match="checksum mismatch"):
        cache.load_tensors(p)


def test_truncated_file_without_checksum_is_reported(tmp_path):
    p = tmp_path / "t.pt"
    torch.save({"w": torch.ones(100)}, p)
    p.write_bytes(p.read_bytes()[:50])
    with pytest.raises(cache.CacheError, match="corrupt"):
        cache.load_tensors(p)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch EVIL_MARKER",))


def test_malicious_pickle_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:
        pickle.dump({"state": _Evil()}, f)
    with pytest.raises(cache.CacheError, match="refused"):
        cache.load_tensors(p)
    assert not (tmp_path / "EVIL_MARKER").exists()


def test_cached_builds_once_and_rebuilds_corrupt(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return {"x": torch.tensor([len(calls)])}

    cfg = {"k": 1}
    assert int(cache.cached(tmp_path, "thing", cfg, build)["x"]) == 1
    assert int(cache.cached(tmp_path, "thing", cfg, build)["x"]) == 1
    assert len(calls) == 1
    f = cache.entry_dir(tmp_path, "thing", cfg) / "result.pt"
    f.write_bytes(f.read_bytes()[:10])
    assert int(cache.cached(tmp_path, "thing", cfg, build)["x"]) == 2
    assert len(calls) == 2
    assert json.loads((f.parent / "config.json").read_text()) == {"k": 1}


def test_a_killed_writers_temp_file_is_removed_by_the_next_lock_holder(tmp_path):
    cfg = {"k": 2}
    d = cache.entry_dir(tmp_path, "thing", cfg)
    d.mkdir(parents=True)
    stale = d / ".result.pt.abc123.tmp"  # what atomic_write_bytes leaves when killed
    stale.write_bytes(b"half a checkpoint")
    keep = d / "notes.tmp"  # not one of ours: no leading dot
    keep.write_text("x")
    cache.cached(tmp_path, "thing", cfg, lambda: {"x": torch.tensor([1])})
    assert not stale.exists() and keep.exists()
    assert sorted(p.name for p in d.iterdir()) == [
        ".lock",
        "config.json",
        "notes.tmp",
        "result.pt",
        "result.pt.sha256",
    ]


def test_atomic_savefig(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    p = cache.atomic_savefig(fig, tmp_path / "a.png")
    plt.close(fig)
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
