"""The trainer (``zfcore.train``, section 3 of the paper): determinism, bit-for-bit resume,
feature-scale clipping, per-layer learning rates checked against a hand-computed step, checkpoint
atomicity under a killed write, the recipe knobs (initialisation, warm-up, late dropout, bfloat16
steps) and what each epoch's history records.

The first tests train on small random tensors (``TensorDataset``), so they do not depend on the
procedural data; the later ones run the trainer on ``zfcore.data``, through the cache and
``torchrun`` (DDP equivalence with 2 gloo processes).
"""

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from zfcore import cache as zcache
from zfcore import train as T
from zfcore.data import get_dataset, normalization
from zfcore.models import LayerError, conv_layers, filter_rms
from zfcore.probes import per_image_correct
from zfcore.profiles import get_profile
from zfcore.train import loop, runs
from zfcore.train.batches import train_batches
from zfcore.train.network import make_optimizer, set_learning_rates

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


@pytest.mark.slow
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


@pytest.mark.slow
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
    monkeypatch.setattr(runs, "train", lambda *a, **k: pytest.fail("trained again"))
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
    one = list(train_batches(tr, spec, 1, 0, 1, 3))
    two = [list(train_batches(tr, spec, 1, r, 2, 3)) for r in range(2)]
    for s in range(3):
        assert torch.equal(one[s][0], torch.cat([two[0][s][0], two[1][s][0]]))
        assert torch.equal(one[s][1], torch.cat([two[0][s][1], two[1][s][1]]))
    seen = torch.cat([y for _, y in one])
    assert len(seen) == 96 and not torch.equal(
        one[0][1], list(train_batches(tr, spec, 2, 0, 1, 3))[0][1]
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


@pytest.mark.slow
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


# ---------------------------------------------------------------------------------------------
# The trainer on the procedural scenes, through the cache and torchrun
# ---------------------------------------------------------------------------------------------


def test_rendered_scenes_equal_the_datasets_augmented_images():
    spec = T.make_spec("tiny")
    memo = T.RenderedScenes(get_dataset(spec.profile, "train"))
    idx = [5, 0, 17, 63, 5]
    std = min(normalization(spec.profile)[1])
    for epoch in (0, 3):
        want_x, want_y = get_dataset(spec.profile, "train", augment=True, epoch=epoch).images(idx)
        got_x, got_y = memo.batch(idx, epoch, augment=True)
        assert torch.equal(got_y, want_y)
        # Stored at 8 bits: off by at most half a grey level (crops interpolate linearly).
        assert (got_x - want_x).abs().max() <= 0.5 / 255 / std + 1e-5
    assert memo.ready.sum() == 4  # each scene rendered once
    plain_x, _ = memo.batch(idx, 0, augment=False)
    want_plain, _ = get_dataset(spec.profile, "train").images(idx)
    assert (plain_x - want_plain).abs().max() <= 0.5 / 255 / std + 1e-5


def test_trained_model_trains_once_then_loads(monkeypatch, tmp_path):
    over = dict(n_train=128, n_val=64, epochs=1, cache_dir=tmp_path)
    model = T.trained_model("tiny", progress=False, **over)
    assert not model.training and next(model.parameters()).device.type == "cpu"
    monkeypatch.setattr(runs, "train", lambda *a, **k: pytest.fail("trained twice"))
    again = T.trained_model("tiny", progress=False, **over)
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    run = T.training_run("tiny", progress=False, **over)
    assert run.checkpoint_epochs[-1] == 1.0 and 0.5 in run.checkpoint_epochs
    x = get_dataset(run.spec.profile, "val").images([0, 1])[0]
    assert again(x).shape == (2, 10)


PAPER_RECIPE = [
    "n_train=256",
    "n_val=64",
    "epochs=2",
    "dropout=0",
    'optimizer="sgd"',
    "lr=0.01",
    "momentum=0.9",
    "weight_decay=0.0005",
    'init="paper"',
]


@pytest.mark.slow
def test_torchrun_two_gloo_processes_match_one_process(tmp_path):
    """DDP averages the gradients of the two halves of every global batch; one process
    computes the gradient of the whole batch: the weights agree to float precision. (Adam
    would turn float-level differences in near-zero gradients into full-size steps, so the
    comparison uses the paper's SGD, the recipe DDP runs on the imagenet profile.)"""
    env = dict(
        os.environ,
        ZFCORE_CACHE=str(tmp_path / "two"),
        OMP_NUM_THREADS="1",
        GLOO_SOCKET_IFNAME=os.environ.get("GLOO_SOCKET_IFNAME", "lo"),
    )
    args = [a for kv in PAPER_RECIPE + ["threads=1"] for a in ("--set", kv)]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "zfcore.train",
        "--profile",
        "tiny",
        "--no-progress",
        *args,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    over = dict(kv.split("=", 1) for kv in PAPER_RECIPE)
    over = {k: eval(v) for k, v in over.items()}
    one = T.training_run("tiny", progress=False, cache_dir=tmp_path / "one", **over)
    spec2 = T.make_spec("tiny", cache_dir=tmp_path / "two", **over)
    two = T.TrainRun(spec2, spec2.entry(), [])
    a, b = one.model().state_dict(), two.model().state_dict()
    moved = max((a[k] - T.build_model(one.spec).state_dict()[k]).abs().max() for k in a)
    assert moved > 1e-3  # training did change the weights
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-7, msg=k)
    ddp_history = T.CheckpointStore(two.directory).latest_resume()["history"]
    for h1, h2 in zip(one.history, ddp_history):
        assert abs(h1.val_loss - h2["val_loss"]) < 1e-5
        assert abs(h1.train_loss - h2["train_loss"]) < 1e-5


def test_command_line_rejects_bad_overrides(capsys):
    with pytest.raises(T.TrainError, match="unknown training override"):
        T.main(["--profile", "tiny", "--set", "learning_rate=1"])
    with pytest.raises(SystemExit):
        T.main(["--profile", "tiny", "--set", "epochs"])


def test_compare_throughput_measures_each_configuration():
    ips = T.compare_throughput(
        "tiny", {"global": [], "frozen": ["layer1", "layer2"]}, steps=1, rounds=1, batch_size=16
    )
    assert set(ips) == {"global", "frozen"} and all(v > 0 for v in ips.values())
    with pytest.raises(LayerError, match="unknown layer"):
        T.compare_throughput("tiny", {"bad": ["layer9"]}, steps=1, rounds=1)


# ---------------------------------------------------------------------------------------------
# The recipe knobs and what the history records
# ---------------------------------------------------------------------------------------------


def test_recipe_knobs_shape_the_initial_network_and_the_rate():
    spec = T.make_spec("tiny", bias_init=1.0, init="he", warmup_epochs=1.0)
    model = T.build_model(spec)
    assert torch.all(model.features.conv2.bias == 1.0) and torch.all(
        model.classifier.fc7.bias == 1.0
    )
    assert torch.all(model.classifier.fc8.bias == 0.0)  # logits are not a hidden layer
    w = model.features.conv3.weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / w[0].numel()), rel=0.1)
    opt = make_optimizer(spec, model)
    set_learning_rates(opt, spec, 1.0, step=4, steps=10)  # half-way through a 1-epoch warm-up
    assert opt.param_groups[0]["lr"] == pytest.approx(spec.profile.lr * 0.5)
    set_learning_rates(opt, spec, 0.1, step=50, steps=10)
    assert opt.param_groups[0]["lr"] == pytest.approx(spec.profile.lr * 0.1)
    assert isinstance(
        make_optimizer(T.make_spec("tiny", optimizer="adamw"), model), torch.optim.AdamW
    )


def test_logits_init_std_and_late_dropout():
    small = T.build_model(T.make_spec("tiny", init="he"))
    he = T.build_model(T.make_spec("tiny", init="he", logits_init_std=None))
    assert small.classifier.fc8.weight.std().item() == pytest.approx(1e-2, rel=0.1)
    w = he.classifier.fc8.weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / w.shape[1]), rel=0.1)
    assert all(
        torch.equal(a, b)
        for (k, a), (_, b) in zip(small.state_dict().items(), he.state_dict().items())
        if not k.startswith("classifier.fc8.weight")
    )
    p = get_profile("tiny", dropout_after=1.0)
    drops = [m for m in small.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(drops) == 2
    for progress, rate in ((0.0, 0.0), (0.99, 0.0), (1.0, 0.5), (2.5, 0.5)):
        loop.set_dropout(small, p, progress)
        assert all(m.p == rate for m in drops)


@pytest.mark.slow
def test_bf16_training_changes_the_arithmetic_not_the_keys_of_fp32_runs(tmp_path):
    fp32 = T.make_spec("tiny")
    assert "precision" not in fp32.key_config()["profile"]  # artefacts of fp32 runs keep their keys
    bf16 = T.make_spec("tiny", precision="bf16")
    assert bf16.entry() != fp32.entry()
    kw = dict(progress=False, epochs=1, n_train=128, n_val=64, batch_size=64)
    a = T.training_run("tiny", cache_dir=tmp_path, **kw).model().state_dict()
    b = T.training_run("tiny", precision="bf16", cache_dir=tmp_path, **kw).model().state_dict()
    c = (
        T.training_run("tiny", precision="bf16", cache_dir=tmp_path / "again", **kw)
        .model()
        .state_dict()
    )
    assert all(v.dtype == torch.float32 for v in b.values())  # weights stay fp32
    w = "features.conv2.weight"
    assert not torch.equal(a[w], b[w])  # the steps really ran in bfloat16
    assert torch.equal(b[w], c[w])  # ... deterministically
    w0 = T.build_model(T.make_spec("tiny", n_train=128, n_val=64, batch_size=64)).state_dict()[w]
    step_fp32, gap = (a[w] - w0).norm(), (a[w] - b[w]).norm()
    assert gap < 0.5 * step_fp32  # ... and close to what fp32 learned


def test_history_records_health_and_eval_mode_training_error(tmp_path):
    run = T.training_run(
        "tiny", progress=False, epochs=1, n_train=128, n_val=64, batch_size=64, cache_dir=tmp_path
    )
    h = run.final
    assert set(h.dead_share) == {f"layer{i}" for i in range(1, 8)}
    assert 0 <= h.train_eval_top1_error <= 100 and h.max_filter_rms > 0
    # the eval-mode training error equals an independent evaluation of the same images
    ds = get_dataset(run.spec.profile, "train")
    correct = per_image_correct(run.model(), ds, list(range(64)))
    assert 100 * (1 - correct.float().mean().item()) == pytest.approx(
        h.train_eval_top1_error, abs=1e-6
    )
