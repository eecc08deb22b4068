"""The trainer (section 3 of the paper): determinism, bit-for-bit resume, feature-scale clipping,
per-layer learning rates checked against a hand-computed step, and checkpoint atomicity under a
killed write.

These tests train on small random tensors (``TensorDataset``), so they do not depend on the
procedural data; ``tests/test_train_data.py`` runs the trainer on ``zfcore.data``, through the
cache and ``torchrun`` (DDP equivalence with 2 gloo processes).
"""

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from zfcore import cache as zcache
from zfcore import train as T
from zfcore.models import LayerError, conv_layers, filter_rms
from zfcore.profiles import get_profile

ROOT = Path(__file__).resolve().parent.parent
TIMING = {"train_seconds", "val_seconds", "images_per_s", "data_seconds"}


def _data(n_train=96, n_val=32, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_val, 3, size, size, generator=g)
    # A learnable signal: the label is the quadrant of the brightest pixel of channel 0.
    y = x[:, 0].flatten(1).argmax(1) % 10
    return TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[n_train:], y[n_train:])


def _spec(tmp_path, **over):
    base = dict(n_train=96, batch_size=32, epochs=2, cache_dir=tmp_path)
    base.update(over)
    return T.make_spec("tiny", **base)


def _untimed(history):
    return [{k: v for k, v in h.__dict__.items() if k not in TIMING} for h in history]


def _weights(run, epoch=None):
    return run.model(epoch).state_dict()


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def test_deterministic_under_seed(tmp_path):
    tr, va = _data()
    a = T.train(_spec(tmp_path / "a"), tr, va, progress=False)
    b = T.train(_spec(tmp_path / "b"), tr, va, progress=False)
    _assert_same_state(_weights(a), _weights(b))
    assert _untimed(a.history) == _untimed(b.history)
    c = T.train(_spec(tmp_path / "c", seed=1), tr, va, progress=False)
    assert not torch.equal(
        _weights(a)["features.conv1.weight"], _weights(c)["features.conv1.weight"]
    )


def test_resume_is_bit_for_bit(tmp_path):
    tr, va = _data()
    straight = T.train(_spec(tmp_path / "a", epochs=3), tr, va, progress=False)
    T.train(_spec(tmp_path / "b", epochs=1), tr, va, progress=False)
    resumed = T.train(_spec(tmp_path / "b", epochs=3), tr, va, progress=False)
    assert [h.epoch for h in resumed.history] == [1, 2, 3]
    _assert_same_state(_weights(straight), _weights(resumed))
    for e in (1, 2):
        _assert_same_state(_weights(straight, e), _weights(resumed, e))
    assert _untimed(straight.history) == _untimed(resumed.history)


def test_shorter_schedule_is_served_from_longer_run(tmp_path, monkeypatch):
    tr, va = _data()
    long = T.train(_spec(tmp_path, epochs=3), tr, va, progress=False)
    monkeypatch.setattr(T, "train", lambda *a, **k: pytest.fail("trained again"))
    short = T.training_run("tiny", n_train=96, batch_size=32, epochs=2, cache_dir=tmp_path)
    _assert_same_state(short.model().state_dict(), long.model(2).state_dict())
    assert len(short.history) == 2 and short.history == long.history[:2]


def test_feature_scale_clipping_after_every_step(tmp_path):
    tr, va = _data()
    # Adam moves every weight by about lr per step: 3 steps of 0.1 push filters past RMS 0.1,
    # and clipping must pull every one back after each step.
    over = dict(optimizer="adam", lr=0.1, epochs=1)
    clipped = T.train(_spec(tmp_path / "on", clip_rms=0.1, **over), tr, va, progress=False)
    free = T.train(_spec(tmp_path / "off", clip_rms=None, **over), tr, va, progress=False)
    rms_on = torch.cat([filter_rms(c) for c in conv_layers(clipped.model())])
    rms_off = torch.cat([filter_rms(c) for c in conv_layers(free.model())])
    assert clipped.final.clipped_filters > 0 and free.final.clipped_filters == 0
    assert rms_on.max() <= 0.1 * (1 + 1e-5)
    assert rms_off.max() > 0.1


def test_per_layer_learning_rate_matches_a_hand_computed_step(tmp_path):
    tr, va = _data(n_train=32)
    over = dict(
        optimizer="sgd",
        lr=0.05,
        momentum=0.0,
        weight_decay=0.0,
        dropout=0.0,
        clip_rms=None,
        n_train=32,
        epochs=1,
        augment=False,
    )
    spec = _spec(tmp_path, layer_lr={"layer1": 0.5, "layer6": 0.0}, **over)
    run = T.train(spec, tr, va, progress=False)
    # The same step by hand: one batch (the epoch's first 32 images), w <- w - lr * m * grad.
    model = T.build_model(spec)
    idx = T.epoch_order(len(tr), spec.profile.seed, 0)[:32]
    x, y = tr.tensors[0][idx], tr.tensors[1][idx]
    model.train()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    mult = {"features.conv1": 0.5, "classifier.fc6": 0.0}
    got = run.model().state_dict()
    for name, p in model.named_parameters():
        m = mult.get(name.rsplit(".", 1)[0], 1.0)
        want = p.detach() - 0.05 * m * p.grad
        torch.testing.assert_close(got[name], want, rtol=0, atol=1e-6, msg=name)
    assert torch.equal(got["classifier.fc6.weight"], model.state_dict()["classifier.fc6.weight"])


def test_freeze_after_stops_a_layer(tmp_path):
    tr, va = _data()
    run = T.train(_spec(tmp_path, epochs=3, freeze_after={"layer1": 1}), tr, va, progress=False)
    w = {e: run.model(e).state_dict() for e in (1, 2, 3)}
    assert torch.equal(w[1]["features.conv1.weight"], w[3]["features.conv1.weight"])
    assert not torch.equal(w[1]["features.conv2.weight"], w[3]["features.conv2.weight"])
    # Mid-epoch: 3 steps per epoch, frozen from the step that starts past half an epoch.
    half = T.train(
        _spec(tmp_path / "half", epochs=1, freeze_after={"layer1": 0.5}), tr, va, progress=False
    )
    w0, wh, w1 = (
        T.build_model(half.spec).state_dict(),
        half.model(0.5).state_dict(),
        half.model(1).state_dict(),
    )
    assert not torch.equal(w0["features.conv1.weight"], wh["features.conv1.weight"])
    assert torch.equal(wh["features.conv1.weight"], w1["features.conv1.weight"])
    assert not torch.equal(wh["features.conv2.weight"], w1["features.conv2.weight"])


def test_layer1_init_std_draws_only_the_first_layer_afresh():
    plain = T.build_model(T.make_spec("tiny")).state_dict()
    small = T.build_model(T.make_spec("tiny", layer1_init_std=1e-3)).state_dict()
    w = small["features.conv1.weight"]
    assert abs(w.std().item() - 1e-3) < 1e-4 and abs(w.mean().item()) < 1e-4
    assert plain["features.conv1.weight"].std() > 10 * w.std()
    assert not small["features.conv1.bias"].any()  # biases 0, as the paper's
    assert plain["features.conv1.bias"].any()
    assert all(
        torch.equal(small[k], plain[k]) for k in plain if not k.startswith("features.conv1.")
    )
    again = T.build_model(T.make_spec("tiny", layer1_init_std=1e-3)).state_dict()
    assert torch.equal(again["features.conv1.weight"], w)  # seeded
    kriz = T.build_model(T.TrainSpec(get_profile("tiny", layer1_init_std=1e-3), arch="krizhevsky"))
    assert abs(kriz.features.conv1.weight.std().item() - 1e-3) < 1e-4


def test_layer_parameters_cover_every_weight_once():
    spec = T.make_spec("tiny")
    model = T.build_model(spec)
    groups = T.layer_parameters(model)
    assert set(groups) == {
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "layer5",
        "layer6",
        "layer7",
        "logits",
    }
    assert groups["layer1"][0] is model.features.conv1.weight
    assert groups["logits"][0] is model.classifier.fc8.weight
    ids = [id(p) for ps in groups.values() for p in ps]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    removed = T.build_model(T.TrainSpec(spec.profile, variant="no_layers3_4"))
    assert "layer3" not in T.layer_parameters(removed)


def test_batches_are_the_same_whatever_the_number_of_processes():
    tr, _ = _data()
    spec = T.make_spec("tiny", n_train=96, batch_size=32)
    one = list(T._train_batches(tr, spec, 1, 0, 1, 3))
    two = [list(T._train_batches(tr, spec, 1, r, 2, 3)) for r in range(2)]
    for s in range(3):
        assert torch.equal(one[s][0], torch.cat([two[0][s][0], two[1][s][0]]))
        assert torch.equal(one[s][1], torch.cat([two[0][s][1], two[1][s][1]]))
    seen = torch.cat([y for _, y in one])
    assert len(seen) == 96 and not torch.equal(
        one[0][1], list(T._train_batches(tr, spec, 2, 0, 1, 3))[0][1]
    )


def test_bad_arguments_are_named():
    with pytest.raises(T.TrainError, match="unknown training override"):
        T.make_spec("tiny", learning_rate=0.1)
    with pytest.raises(LayerError, match="unknown layer"):
        T.make_spec("tiny", layer_lr={"layer9": 0.1})
    with pytest.raises(T.TrainError, match="unknown arch"):
        T.make_spec("tiny", arch="resnet")
    with pytest.raises(T.TrainError, match="unknown variant"):
        T.make_spec("tiny", variant="no_layer5")
    with pytest.raises(T.TrainError, match="unknown profile"):
        T.make_spec("huge")
    with pytest.raises(T.TrainError, match="optimizer"):
        T.make_spec("tiny", optimizer="rmsprop")


# ---------------------------------------------------------------------------------------------
# Checkpoint atomicity: a write killed half-way leaves the previous checkpoint in use
# ---------------------------------------------------------------------------------------------

_KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from pathlib import Path
import test_train as tt
from zfcore import cache, train as T
calls = {{"n": 0}}
real_fsync = os.fsync
def fsync(fd):
    # Die inside the write of the epoch-2 resume file, after its bytes hit the temp file.
    name = os.readlink(f"/proc/self/fd/{{fd}}")
    if "resume_e2.pt" in name and not name.endswith(".sha256") and ".sha256." not in name:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_fsync(fd)
os.fsync = fsync
tr, va = tt._data()
T.train(tt._spec(Path({cache!r}), epochs=3), tr, va, progress=False)
"""


def test_killed_checkpoint_write_leaves_previous_checkpoint(tmp_path):
    script = _KILLED_RUN.format(
        root=str(ROOT), tests=str(ROOT / "tests"), cache=str(tmp_path / "k")
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    spec = _spec(tmp_path / "k", epochs=3)
    store = T.CheckpointStore(spec.entry())
    assert store.resume_epochs() == [1]  # the epoch-2 file never appeared
    assert store.latest_resume()["epoch"] == 1
    # A truncated newer file (a non-atomic copy, a full disk) is skipped the same way.
    state = store.latest_resume()
    zcache.save_tensors(store.dir / "resume_e2.pt", state)
    data = (store.dir / "resume_e2.pt").read_bytes()
    (store.dir / "resume_e2.pt").write_bytes(data[: len(data) // 2])
    assert store.latest_resume()["epoch"] == 1
    (store.dir / "resume_e2.pt").unlink()
    # Resuming after the kill reaches the uninterrupted run's weights exactly.
    tr, va = _data()
    resumed = T.train(spec, tr, va, progress=False)
    straight = T.train(_spec(tmp_path / "s", epochs=3), tr, va, progress=False)
    _assert_same_state(resumed.model().state_dict(), straight.model().state_dict())
