"""Trained networks shipped with the package (``zfcore.train.shipped``): exported from a cached
run, loaded by training configuration with the fingerprint checked, never used for another
configuration, and the shipped ``mini`` network is the one the committed figures were computed
from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import zfcore.train as ztrain
from zfcore.models import model_fingerprint
from zfcore.profiles import get_profile
from zfcore.train import cli, runs, shipped
from zfcore.zoo import model_for_profile

ROOT = Path(__file__).resolve().parent.parent


def _forbid_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("trained although the network should come from the shipped weights")

    monkeypatch.setattr(runs, "train", refuse)  # what training_run and trained_model call
    monkeypatch.setattr(cli, "train", refuse)  # what the command line calls under torchrun


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    """tiny trained once (the repository's cache) and exported into a temporary weights folder."""
    run = ztrain.training_run("tiny", progress=False)
    folder = tmp_path_factory.mktemp("weights")
    return run, shipped.export(run, folder)


def test_export_records_what_the_weights_are(tiny_export):
    run, exported = tiny_export
    meta = exported.metadata
    assert exported.path.name == "tiny.safetensors"
    assert exported.fingerprint == model_fingerprint(run.model())
    assert meta["profile"] == "tiny" and meta["arch"] == "zfnet" and meta["variant"] == "zf"
    assert int(meta["epochs"]) == run.spec.profile.epochs
    from zfcore.cache import config_hash

    assert exported.config_hash == config_hash(run.spec.key_config())
    assert json.loads(meta["key_config"])["trainer_version"] == ztrain.TRAINER_VERSION
    assert meta["torch"] and meta["zfcore"]


def test_empty_cache_takes_the_shipped_file_without_training(tiny_export, tmp_path, monkeypatch):
    run, exported = tiny_export
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", exported.path.parent)
    _forbid_training(monkeypatch)
    P = get_profile("tiny", cache_dir=tmp_path / "empty")
    assert ztrain.weights_source(P)[0] == "shipped"
    model = model_for_profile(P)
    assert model_fingerprint(model) == exported.fingerprint
    assert not model.training and model.weights_source.startswith("shipped weights")
    assert ztrain.cached_model(P) is not None
    from zfcore.runner import network_source

    assert network_source(P) == f"tiny: the trained network: shipped weights {exported.describe()}"


def test_another_configuration_or_length_is_not_served(tiny_export, tmp_path, monkeypatch):
    run, exported = tiny_export
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", exported.path.parent)
    P = get_profile("tiny", cache_dir=tmp_path / "empty")
    other = ztrain.make_spec(P, lr=1e-3)
    assert shipped.find(other) is None
    assert shipped.differences(exported, other) == ["profile.lr"]
    shorter = ztrain.make_spec(P, epochs=2)
    assert shipped.find(shorter) is None and shipped.differences(exported, shorter) == ["epochs"]
    kind, why = ztrain.weights_source(P, lr=1e-3)
    assert kind == "train" and "profile.lr" in why
    assert ztrain.cached_model(P, lr=1e-3) is None


def test_retrain_switch_ignores_the_shipped_file(tiny_export, tmp_path, monkeypatch):
    run, exported = tiny_export
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", exported.path.parent)
    monkeypatch.setenv(shipped.RETRAIN_ENV, "1")
    P = get_profile("tiny", cache_dir=tmp_path / "empty")
    kind, why = ztrain.weights_source(P)
    assert kind == "train" and shipped.RETRAIN_ENV in why
    assert ztrain.cached_model(P) is None


def test_a_file_whose_network_is_not_the_recorded_one_is_refused(tiny_export, tmp_path):
    from safetensors.torch import load_file, save_file

    run, exported = tiny_export
    state = load_file(str(exported.path))
    first = next(iter(state))
    state[first] = state[first] + 1.0
    bad = tmp_path / "tiny.safetensors"
    save_file(state, str(bad), metadata=exported.metadata)
    found = shipped.find(run.spec, tmp_path)
    with pytest.raises(shipped.ShippedError, match="fingerprint") as e:
        shipped.load(found, run.spec)
    assert shipped.RETRAIN_ENV in str(e.value)
    (tmp_path / "tiny.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(shipped.ShippedError, match="unreadable"):
        shipped.find(run.spec, tmp_path)


def test_export_outside_a_checkout_needs_a_folder(tiny_export, monkeypatch):
    from zfcore.locations import LocationError

    monkeypatch.setattr(shipped, "checkout_root", lambda: None)
    with pytest.raises(LocationError, match="--export DIR"):
        shipped.export(tiny_export[0])


def test_train_cli_compares_with_the_shipped_fingerprint_and_exports(
    tiny_export, monkeypatch, capsys, tmp_path
):
    run, exported = tiny_export
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", exported.path.parent)
    assert ztrain.main(["--profile", "tiny", "--no-progress", "--export", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (
        f"fingerprint {exported.fingerprint}: reproduces the shipped weights tiny.safetensors"
        in out
    )
    again = shipped.read(tmp_path / "tiny.safetensors")
    assert again.fingerprint == exported.fingerprint and again.config_hash == exported.config_hash


def test_mini_ships_the_network_of_the_committed_figures(tmp_path, monkeypatch):
    """With an empty cache the mini network comes from zfcore/weights/mini.safetensors, without
    training, and it is the network the committed figures record in their provenance."""
    if not (shipped.WEIGHTS_DIR / "mini.safetensors").is_file():
        pytest.fail(
            "zfcore/weights/mini.safetensors is missing: export the trained mini run with "
            "python -m zfcore.train --profile mini --export"
        )
    _forbid_training(monkeypatch)
    monkeypatch.setenv("ZFCORE_CACHE", str(tmp_path))
    model = model_for_profile(get_profile("mini", cache_dir=tmp_path))
    recorded = json.loads((ROOT / "figures" / "mini" / "03_feature_visualization.json").read_text())
    want = recorded["provenance"]["models"]["model"]
    assert model_fingerprint(model) == want, (
        f"the shipped mini network is {model_fingerprint(model)}, the committed figures were "
        f"computed from {want}: regenerate the figures (make figures) or ship the network they used"
    )
