"""Checkpoints and caches from untrusted or damaged files.

* A checkpoint crafted to run code when unpickled (it creates a marker file) is refused by every
  loader of zfcore, in every container format torch knows, even with a matching checksum; a
  separate process shows the same file *does* create the marker when unpickled unsafely.
* A checkpoint of another architecture, width, input size or Table 3 variant names the
  mismatch.
* A truncated, bit-flipped, extended, swapped or checksum-less corrupt cache entry is detected
  and rebuilt by zfcore.cache.cached, never used.
"""

import io
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from zfcore import cache, models, pretrained
from zfcore.profiles import get_profile

ROOT = Path(__file__).resolve().parent.parent


class Payload:
    """Unpickling this runs ``exec`` and writes the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def _evil_files(folder: Path, marker: Path) -> dict[str, Path]:
    """The same attack in every container torch.load understands."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {"features.conv1.weight": torch.zeros(2), "evil": Payload(marker)}
    out = {}
    out["zip"] = folder / "zip.pt"
    torch.save(state, out["zip"])
    out["legacy"] = folder / "legacy.pt"
    torch.save(state, out["legacy"], _use_new_zipfile_serialization=False)
    for proto in (0, 2, 5):
        out[f"pickle{proto}"] = folder / f"pickle{proto}.pt"
        out[f"pickle{proto}"].write_bytes(pickle.dumps(state, protocol=proto))
    # a valid torch zip whose data.pkl was swapped for the attack, names kept
    good = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, good)
    swapped = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(good.getvalue())) as zin,
        zipfile.ZipFile(swapped, "w", zipfile.ZIP_STORED) as zout,
    ):
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                data = pickle.dumps({"w": Payload(marker)}, protocol=2)
            zout.writestr(item, data)
    out["swapped_pkl"] = folder / "swapped.pt"
    out["swapped_pkl"].write_bytes(swapped.getvalue())
    # the attacker also ships a matching checksum side file
    out["with_checksum"] = folder / "with_checksum.pt"
    out["with_checksum"].write_bytes(out["zip"].read_bytes())
    (folder / "with_checksum.pt.sha256").write_text(cache.sha256_file(out["with_checksum"]) + "\n")
    return out


@pytest.mark.slow
def test_crafted_files_really_run_code_when_unpickled_unsafely(tmp_path):
    """The control: without weights_only the files do create the marker (in another process)."""
    marker = tmp_path / "marker"
    files = _evil_files(tmp_path / "f", marker)
    code = "\n".join(
        [
            "import os, sys, torch",
            f"files = {{k: str(v) for k, v in "
            f"{dict((k, str(v)) for k, v in files.items())!r}.items()}}",
            "for kind, path in files.items():",
            "    try:",
            "        torch.load(path, weights_only=False)",
            "    except Exception:",
            "        pass",
            f"    if os.path.exists({str(marker)!r}):",
            "        print('RAN', kind)",
            f"        os.unlink({str(marker)!r})",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    ).stdout
    ran = {line.split()[1] for line in out.splitlines() if line.startswith("RAN")}
    assert {"zip", "legacy", "pickle0", "pickle2", "pickle5", "swapped_pkl"} <= ran, out


def test_load_tensors_refuses_every_malicious_file(tmp_path):
    marker = tmp_path / "marker"
    for kind, path in _evil_files(tmp_path / "f", marker).items():
        with pytest.raises(cache.CacheError) as e:
            cache.load_tensors(path)
        msg = str(e.value)
        assert str(path) in msg, kind
        assert "refused" in msg or "corrupt" in msg, (kind, msg)
        assert not marker.exists(), f"code ran while loading the {kind} file"
        assert e.value.__cause__ is None


def test_cached_rebuilds_a_poisoned_entry_without_running_it(tmp_path):
    marker = tmp_path / "marker"
    cfg = {"what": "poisoned"}
    d = cache.entry_dir(tmp_path / "cache", "thing", cfg)
    d.mkdir(parents=True)
    torch.save({"x": Payload(marker)}, d / "result.pt")
    calls = []
    out = cache.cached(
        tmp_path / "cache", "thing", cfg, lambda: calls.append(1) or {"x": torch.ones(2)}
    )
    assert calls == [1] and torch.equal(out["x"], torch.ones(2))
    assert not marker.exists()
    assert torch.equal(cache.load_tensors(d / "result.pt")["x"], torch.ones(2))


@pytest.mark.slow
def test_pretrained_weights_file_that_runs_code_is_refused(tmp_path, monkeypatch):
    from torchvision.models import AlexNet_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    marker = tmp_path / "marker"
    path = pretrained.torchvision_weights_path(AlexNet_Weights.IMAGENET1K_V1)
    path.parent.mkdir(parents=True)
    torch.save({"features.0.weight": Payload(marker)}, path)
    with pytest.raises(cache.CacheError, match="refused") as e:
        models.alexnet(pretrained=True, download=False)
    assert str(path) in str(e.value) and "fetch" in str(e.value)
    assert not marker.exists()
    path.write_bytes(path.read_bytes()[:100])  # a half-finished download
    with pytest.raises(cache.CacheError, match="corrupt") as e:
        models.alexnet(pretrained=True, download=False)
    assert AlexNet_Weights.IMAGENET1K_V1.url in str(e.value)


def test_training_checkpoints_are_loaded_safely(tmp_path):
    train = pytest.importorskip("zfcore.train")
    marker = tmp_path / "marker"
    store = train.CheckpointStore(tmp_path / "run")
    store.dir.mkdir()
    torch.save({"model": Payload(marker)}, store.weights_path(1))
    with pytest.raises(cache.CacheError, match="refused"):
        store.load_weights(1)
    torch.save({"model": Payload(marker)}, store.dir / "resume_e3.pt")
    store.save_resume(2, {"epoch": 2})  # an older, good one
    assert store.latest_resume() == {"epoch": 2}  # the poisoned newer one is skipped, not run
    assert not marker.exists()


# --- another architecture or shape --------------------------------------------------------------


def _tiny(**kw):
    P = get_profile("tiny")
    return models.zfnet(**{**P.model_kwargs(), **kw})


@pytest.mark.parametrize(
    "other,expected",
    [
        (
            lambda: models.krizhevsky(**get_profile("tiny").model_kwargs()),
            r"features\.conv1\.weight: checkpoint \(12, 3, 11, 11\) vs model \(12, 3, 7, 7\)",
        ),
        (
            lambda: models.zfnet(**get_profile("mini").model_kwargs()),
            r"features\.conv1\.weight: checkpoint \(48, 3, 7, 7\) vs model \(12, 3, 7, 7\)",
        ),
        (
            lambda: _tiny(num_classes=5),
            r"classifier\.fc8\.weight: checkpoint \(5, 128\) vs model \(10, 128\)",
        ),
        (
            lambda: _tiny(image_size=96),
            r"classifier\.fc6\.weight: checkpoint \(128, 128\) vs model \(128, 32\)",
        ),
        (
            lambda: _tiny(variant="no_layers3_4"),
            r"missing from ckpt\.pt: \['features\.conv3\.weight'",
        ),
        (
            lambda: __import__("torchvision").models.squeezenet1_1(),
            r"not in the model: \['features\.0\.weight'",
        ),
    ],
)
def test_checkpoint_of_another_model_names_the_mismatch(tmp_path, other, expected):
    model = _tiny()
    path = tmp_path / "ckpt.pt"
    cache.save_tensors(path, other().state_dict())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=expected) as e:
        models.load_model_state(model, cache.load_tensors(path), "ckpt.pt")
    assert "another architecture or profile" in str(e.value)
    for k, v in model.state_dict().items():  # nothing half-loaded
        assert torch.equal(v, before[k]), k


def test_not_a_state_dict(tmp_path):
    model = _tiny()
    with pytest.raises(TypeError, match="holds a list, not a state_dict"):
        models.load_model_state(model, [1, 2], "ckpt.pt")
    with pytest.raises(
        ValueError, match=r"entries \['model'\] are not tensors.*pass its 'model' entry"
    ):
        models.load_model_state(
            model, {"model": model.state_dict(), "epoch": torch.tensor(3)}, "ckpt.pt"
        )
    state = model.state_dict()
    state["features.conv1.weight"] = "hello"
    with pytest.raises(ValueError, match="features.conv1.weight"):
        models.load_model_state(model, state, "ckpt.pt")


# --- corrupt cache entries ---------------------------------------------------------------------


def _damage(path: Path, how: str, other: Path) -> None:
    data = path.read_bytes()
    side = path.with_name(path.name + ".sha256")
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "one_byte_flipped":
        b = bytearray(data)
        b[len(b) // 3] ^= 0x01
        path.write_bytes(bytes(b))
    elif how == "garbage_appended":
        path.write_bytes(data + b"\x00garbage")
    elif how == "another_entry":  # a valid file, but not this entry's
        path.write_bytes(other.read_bytes())
    elif how == "truncated_no_checksum":
        side.unlink()
        path.write_bytes(data[: len(data) // 2])
    elif how == "checksum_garbage":
        side.write_bytes(b"\xff\xfe not a checksum")
    elif how == "random_bytes":
        path.write_bytes(os.urandom(len(data)))
    else:
        raise AssertionError(how)


DAMAGE = [
    "empty",
    "truncated",
    "one_byte_flipped",
    "garbage_appended",
    "another_entry",
    "truncated_no_checksum",
    "checksum_garbage",
    "random_bytes",
]


@pytest.mark.parametrize("how", DAMAGE)
def test_corrupt_cache_entry_is_detected_and_rebuilt(tmp_path, how):
    calls = []

    def build():
        calls.append(1)
        return {"w": torch.arange(1000.0) * len(calls), "n": len(calls)}

    cfg = {"entry": "a"}
    first = cache.cached(tmp_path, "kind", cfg, build)
    other_cfg = {"entry": "b"}
    cache.cached(tmp_path, "kind", other_cfg, lambda: {"w": torch.zeros(1000), "n": 99})
    path = cache.entry_dir(tmp_path, "kind", cfg) / "result.pt"
    _damage(path, how, cache.entry_dir(tmp_path, "kind", other_cfg) / "result.pt")
    with pytest.raises(cache.CacheError) as e:
        cache.load_tensors(path)
    assert str(path) in str(e.value)
    again = cache.cached(tmp_path, "kind", cfg, build)
    assert len(calls) == 2, f"{how}: the damaged entry was used"
    assert again["n"] == 2 and torch.equal(again["w"], torch.arange(1000.0) * 2)
    assert first["n"] == 1
    # the rebuilt entry verifies and is used from now on
    assert cache.load_tensors(path)["n"] == 2
    assert cache.cached(tmp_path, "kind", cfg, build)["n"] == 2 and len(calls) == 2


def test_cache_never_half_writes_on_a_failing_build(tmp_path):
    def build():
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        cache.cached(tmp_path, "kind", {"a": 1}, build)
    d = cache.entry_dir(tmp_path, "kind", {"a": 1})
    assert not (d / "result.pt").exists()
    assert cache.cached(tmp_path, "kind", {"a": 1}, lambda: {"ok": torch.ones(1)})["ok"].item() == 1
