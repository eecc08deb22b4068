"""Every engine function runs where the model is: no value read back from the device inside a
loop over batches, no host tensor slipped into device work.

Without a GPU this is checked by :class:`tests.helpers.device_audit.DeviceAudit`, which follows
which tensors would live on the model's device (the parameters, what is moved there, what is
computed from them) and records reads back to the host and host-device mixes. Each engine call
runs twice, on the same work cut into few and into many batches: the reads back must not grow
with the batches (a fixed number per call: the target class, the final maps), and nothing may
mix. ``python -m benchmarks.gpu`` checks the same paths on a real GPU against the CPU.
"""

import copy
import tempfile

import pytest
import torch

from tests.helpers.device_audit import DeviceAudit
from zfcore.attribution import attribute
from zfcore.deconv import project, requests
from zfcore.features import extract_features
from zfcore.mining import mine_topk
from zfcore.models import he_init_, model_device, zfnet
from zfcore.occlusion import occlude
from zfcore.profiles import get_profile


@pytest.fixture(scope="module")
def model():
    return he_init_(zfnet(**get_profile("tiny").model_kwargs())).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(6, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def audited(fn) -> DeviceAudit:
    with DeviceAudit() as audit:
        fn()
    return audit


def test_the_audit_sees_a_read_back_in_a_loop_and_a_host_tensor_mixed_in():
    """The detector itself: code in a zfcore file that reads a device value per iteration and
    adds a tensor made on the host to a device tensor is caught, per iteration."""
    net = torch.nn.Linear(3, 2)
    source = (
        "def loop(net, n):\n"
        "    for _ in range(n):\n"
        "        y = net(torch.ones(1, 3).to(torch.device('cpu')))\n"
        "        float(y.detach().sum())\n"
        "        y + torch.ones(2)\n"
    )
    scope = {"torch": torch}
    exec(compile(source, "selftest/zfcore/loop.py", "exec"), scope)
    a2, a5 = audited(lambda: scope["loop"](net, 2)), audited(lambda: scope["loop"](net, 5))
    assert (len(a2.syncs), len(a5.syncs)) == (2, 5)
    assert (len(a2.mixes), len(a5.mixes)) == (2, 5)
    assert "__float__" in a5.summary() and "add" in a5.summary()


def test_model_device_is_where_the_parameters_are(model):
    assert model_device(model) == torch.device("cpu")
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")  # no parameters: the CPU
    assert model_device(copy.deepcopy(model).to("meta")) == torch.device("meta")


CALLS = {
    "deconvnet, one activation": lambda m, x, bs: project(
        m, x, "layer3", requests(torch.arange(6), torch.arange(6), 1, 2), batch_size=bs
    ),
    "guided, whole maps": lambda m, x, bs: project(
        m, x, "layer3", requests(torch.arange(6), torch.arange(6)), rule="guided", batch_size=bs
    ),
    "gradient, autograd": lambda m, x, bs: project(
        m,
        x,
        "layer5",
        requests(torch.arange(6), torch.arange(6)),
        rule="gradient",
        method="autograd",
        batch_size=bs,
    ),
    "attribute": lambda m, x, bs: attribute(m, x, method="deconvnet", batch_size=bs),
    "occlusion, exact": lambda m, x, bs: occlude(m, x[0], window=16, stride=4, batch_size=8 * bs),
    "occlusion, bfloat16": lambda m, x, bs: occlude(
        m, x[0], window=16, stride=4, batch_size=8 * bs, precision="bf16"
    ),
    "mining": lambda m, x, bs: mine_topk(m, x, k=3, batch_size=bs, progress=False),
    "features": lambda m, x, bs: extract_features(
        m, (x, torch.arange(6)), batch_size=bs, progress=False
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CALLS))
def test_engine_reads_back_a_fixed_number_of_times_and_never_mixes(name, model, images):
    few = audited(lambda: CALLS[name](model, images, 6))
    many = audited(lambda: CALLS[name](model, images, 1))
    assert not many.mixes, many.summary()
    assert len(many.syncs) == len(few.syncs), (
        f"reads back per batch:\nmany batches:\n{many.summary()}\nfew batches:\n{few.summary()}"
    )


@pytest.mark.slow
def test_training_steps_read_nothing_back(monkeypatch):
    """Eight and sixteen steps of the trainer read back the same (per epoch: the metrics, the
    checkpoints), and nothing mixes: a step never waits for the device."""
    from zfcore import train as T

    def run(steps):
        with tempfile.TemporaryDirectory() as d:
            spec = T.make_spec("tiny", epochs=1, n_train=64 * steps, n_val=64, cache_dir=d)
            return audited(lambda: T.train(spec, progress=False))

    eight, sixteen = run(8), run(16)
    assert not sixteen.mixes, sixteen.summary()
    assert len(sixteen.syncs) == len(eight.syncs), f"{eight.summary()}\n---\n{sixteen.summary()}"
