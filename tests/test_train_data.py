"""The trainer on the procedural scenes (``zfcore.data``): the in-memory rendered scenes equal
the data set's own augmented images, ``trained_model`` trains once and then loads from the
cache, and ``torchrun`` with 2 gloo processes reaches the weights of 1 process with the same
global batch (section 3's recipe: SGD, momentum 0.9, weight decay, the paper's initialisation)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zfcore import train as T
from zfcore.data import get_dataset, normalization
from zfcore.models import LayerError

ROOT = Path(__file__).resolve().parent.parent


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
    monkeypatch.setattr(T, "train", lambda *a, **k: pytest.fail("trained twice"))
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
