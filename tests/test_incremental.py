"""zfcore.incremental: incremental inference (Krypton-style cone recomputation) equals full
recomputation to 1e-4, its bfloat16 change formulation is more accurate than bfloat16
activations, cone truncation keeps the cone's centred core, batches partition every position,
the multiply-add bound by hand, and unsupported models say what to do."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from zfcore import incremental, models
from zfcore.incremental import (
    IncrementalError,
    IncrementalForward,
    chain_geometry,
    cone_macs,
    incremental_flop_bound,
    linearize,
    low_precision_is_fast,
    plan_batches,
)
from zfcore.occlusion import occlude


def full_recompute(model, image, patches, rows, cols, probe):
    x = image.repeat(len(rows), 1, 1, 1)
    h, w = patches.shape[-2:]
    for b, (r, c) in enumerate(zip(rows.tolist(), cols.tolist())):
        x[b, :, r : r + h, c : c + w] = patches[b]
    seen = {}
    hook = probe.register_forward_hook(lambda m, i, o: seen.__setitem__("a", o))
    with torch.no_grad():
        out = model(x)
    hook.remove()
    return out, seen["a"].flatten(2).sum(2)


class Odd(nn.Module):
    """Every awkward case at once: non-square kernels and strides, padded and ceil-mode max
    pools, an average pool, batch norm, LRN, a resizing adaptive pool (not local: the engine must
    fall back to full computation there)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, (5, 3), stride=(2, 1), padding=(2, 0)),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, padding=1),
            nn.BatchNorm2d(6),
            nn.LocalResponseNorm(3),
            nn.Conv2d(6, 8, 3, stride=3, padding=1),
            nn.LeakyReLU(0.1),
            nn.MaxPool2d(2, 2, ceil_mode=True),
            nn.AvgPool2d(2, 1),
            nn.Conv2d(8, 8, 1),
            nn.ReLU(),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(nn.Linear(32, 5))
        self.layer_names = {"layer5": "features.10", "logits": "classifier.0"}

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _odd():
    torch.manual_seed(3)
    m = Odd()
    with torch.no_grad():
        m.features[3].running_mean.normal_()
        m.features[3].running_var.uniform_(0.5, 2)
    return m.eval()


MODELS = {
    "zf_tiny": lambda: models.zfnet(width=0.125, image_size=64, fc_units=128, num_classes=10),
    "krizhevsky_tiny": lambda: models.krizhevsky(
        width=0.125, image_size=64, fc_units=64, num_classes=10
    ),
    "no_layers3_4": lambda: models.build(
        "no_layers3_4", width=0.125, image_size=64, fc_units=64, num_classes=10
    ),
    "odd": _odd,
}


@pytest.mark.parametrize("precision", ["fp32", "change_fp32"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_incremental_equals_full_recomputation(name, precision, monkeypatch):
    """Exact cones, and (``change_fp32``) the change formulation of ``precision="bf16"``,
    conv(x0 + d) = conv(x0) + conv(d) and W(x0 + d) = W x0 + W d, with the change kept in float32:
    that algebra alone must give the full recomputation (a grouped conv, padding, strides and a
    resizing pool included)."""
    monkeypatch.setitem(incremental.PRECISIONS, "change_fp32", torch.float32)
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    image = torch.randn(1, 3, 64, 64)
    probe = models.get_layer(model, "layer5")
    engine = IncrementalForward(model, image, [probe])
    g = torch.Generator().manual_seed(1)
    for h, w in [(16, 16), (7, 11), (1, 1), (64, 64)]:
        rows = torch.randint(0, 64 - h + 1, (9,), generator=g)
        cols = torch.randint(0, 64 - w + 1, (9,), generator=g)
        rows[0], cols[0] = 0, 0
        rows[1], cols[1] = 64 - h, 64 - w
        rows[2], cols[2] = 64 - h, 0
        patches = torch.randn(9, 3, h, w, generator=g)
        out = engine.run(patches, rows, cols, precision=precision)
        ref, totals = full_recompute(model, image, patches, rows, cols, probe)
        assert torch.allclose(out.logits, ref, atol=1e-4, rtol=1e-4), (name, h, w)
        assert torch.allclose(out.probe_totals[probe], totals, atol=1e-4, rtol=1e-4), (name, h, w)


@pytest.mark.slow
def test_bfloat16_change_is_more_accurate_than_bfloat16_activations():
    """The point of computing the change in bfloat16: its error scales with the change. On
    AlexNet's layout the logits' error must be well under that of running the whole occluded
    pass in bfloat16 autocast, and under 2 % of the logits' change."""
    torch.manual_seed(0)
    model = models.he_init_(models.alexnet(pretrained=False)).eval()
    image = torch.randn(1, 3, 224, 224)
    engine = IncrementalForward(model, image)
    rows, cols = torch.tensor([0, 100, 150]), torch.tensor([60, 100, 208])
    patches = torch.zeros(3, 3, 16, 16)
    ref, _ = full_recompute(model, image, patches, rows, cols, model.features[0])
    low = engine.run(patches, rows, cols, precision="bf16").logits
    x = image.repeat(3, 1, 1, 1)
    for b, (r, c) in enumerate(zip(rows.tolist(), cols.tolist())):
        x[b, :, r : r + 16, c : c + 16] = 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = model(x).float()
    err, err_autocast = (low - ref).abs().amax(1), (autocast - ref).abs().amax(1)
    change = (ref - engine.logits).abs().amax(1)
    assert (err < err_autocast / 3).all(), (err, err_autocast)
    assert (err < 0.02 * change).all(), (err, change)
    with pytest.raises(IncrementalError, match="precision"):
        engine.run(patches, rows, cols, precision="fp16")


@pytest.mark.slow
@settings(max_examples=12, deadline=None)
@given(
    size=st.integers(40, 56),
    window=st.integers(1, 20),
    stride=st.integers(1, 9),
    fill=st.floats(-2, 2),
)
def test_occlude_incremental_equals_full_any_geometry(size, window, stride, fill):
    window = min(window, size)
    model = _odd()
    torch.manual_seed(size)
    image = torch.randn(3, size, size)
    a = occlude(model, image, 1, window=window, stride=stride, fill=fill, batch_size=7)
    b = occlude(model, image, 1, window=window, stride=stride, fill=fill, incremental=False)
    assert torch.allclose(a.log_prob_target, b.log_prob_target, atol=1e-4)
    assert torch.allclose(a.feature_total, b.feature_total, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_alexnet_layout_incremental():
    # torchvision's AlexNet: floor-mode pools, 11x11/4 first layer, an identity adaptive pool.
    torch.manual_seed(0)
    model = models.alexnet(pretrained=False).eval()
    image = torch.randn(3, 224, 224)
    a = occlude(model, image, 7, window=32, stride=48)
    b = occlude(model, image, 7, window=32, stride=48, incremental=False)
    assert torch.allclose(a.log_prob_target, b.log_prob_target, atol=1e-4)
    assert torch.allclose(a.feature_total, b.feature_total, atol=1e-4, rtol=1e-4)


def test_plan_batches_partition_every_position():
    geo = chain_geometry(MODELS["zf_tiny"]().eval(), 64)
    coords = torch.arange(0, 49, 4)
    for bs, groups in [(7, 1), (32, 4), (1000, 3)]:
        batches = plan_batches(geo, coords, coords, 16, bs, groups)
        flat = torch.cat(batches).sort().values
        assert torch.equal(flat, torch.arange(len(coords) ** 2))
        assert max(len(b) for b in batches) <= bs


def test_flop_bound_by_hand():
    # One 3x3 conv (stride 1, padding 1, 2 -> 4 channels) on 8x8, then a linear layer.
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 3))
    per_output = 4 * 2 * 9
    fc = incremental_flop_bound(model, 8, torch.tensor([0, 3]), torch.tensor([0, 3]), 2)
    assert fc.full == per_output * 64 + 256 * 3
    # a 2x2 square at (0,0) changes outputs 0..2 per axis (9); at (3,3) outputs 2..5 (16)
    geo = chain_geometry(model, 8)
    assert cone_macs(geo, [0, 3], [0, 3], 2).tolist() == [
        per_output * 9 + 768,
        per_output * 16 + 768,
    ]
    assert fc.exact_cone == pytest.approx(per_output * 12.5 + 768)
    assert fc.bound == pytest.approx(fc.full / fc.exact_cone)


def test_unsupported_models_say_what_to_do():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 3, 3, padding=1)
            self.layer_names = {"layer5": "a"}

        def forward(self, x):
            return (self.a(x) + x).mean((2, 3))

    with pytest.raises(IncrementalError, match="incremental=False"):
        linearize(Branchy())

    class Skip(nn.Sequential):
        def forward(self, x):  # not the chain of its layers
            return super().forward(x) + 1

    m = Skip(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 14 * 14, 2)).eval()
    m.layer_names = {"layer5": "0"}
    with pytest.raises(IncrementalError, match="incremental=False"):
        occlude(m, torch.randn(3, 16, 16), window=4, stride=4)
    res = occlude(m, torch.randn(3, 16, 16), window=4, stride=4, incremental=False)
    assert res.prob_target.shape == (4, 4)


def test_truncated_engine_matches_a_masked_recomputation():
    """One layer, by hand: truncation keeps the cone's centred core and the unoccluded values
    elsewhere, so the result is the clean output with the core replaced by the occluded one."""
    torch.manual_seed(3)
    conv = nn.Conv2d(2, 3, 5, padding=2)
    net = nn.Sequential(conv, nn.ReLU(), nn.Flatten(1), nn.Linear(3 * 20 * 20, 4)).eval()
    image = torch.randn(1, 2, 20, 20)
    patch = torch.zeros(1, 2, 4, 4)
    r, c = 7, 3
    eng = IncrementalForward(net, image)
    out = eng.run(patch, torch.tensor([r]), torch.tensor([c]), truncate=0.25)
    occluded = image.clone()
    occluded[:, :, r : r + 4, c : c + 4] = 0
    with torch.no_grad():
        a_clean = torch.relu(conv(image))
        a_occ = torch.relu(conv(occluded))
        # cone rows 5..12 (8 long) and cols 1..8 (8 long), cut to ceil(0.25 * 20) = 5 centred
        mixed = a_clean.clone()
        mixed[:, :, 6:11, 2:7] = a_occ[:, :, 6:11, 2:7]
        want = net[3](mixed.flatten(1))
    assert torch.allclose(out.logits, want, atol=1e-5)
    with pytest.raises(IncrementalError, match="truncate"):
        eng.run(patch, torch.tensor([r]), torch.tensor([c]), truncate=0)


def test_low_precision_is_fast_answers():
    assert isinstance(low_precision_is_fast("cpu"), bool)
    assert low_precision_is_fast("meta") is False


def test_the_engine_runs_the_model_in_eval_mode_and_hands_it_back():
    """Dropout and BatchNorm in training mode would make every position's output random: the
    engine builds, runs and measures the chain in eval mode and leaves each module's mode as the
    caller set it."""
    torch.manual_seed(0)
    model = _odd()  # BatchNorm; its running statistics must not move
    model.classifier.append(nn.Dropout(0.5))
    image = torch.randn(1, 3, 64, 64)
    probe = models.get_layer(model, "layer5")
    rows, cols = torch.tensor([0, 20]), torch.tensor([10, 48])
    patches = torch.zeros(2, 3, 16, 16)
    ref, totals = full_recompute(model.eval(), image, patches, rows, cols, probe)
    stats = model.features[3].running_mean.clone()
    model.train()
    engine = IncrementalForward(model, image, [probe])
    out = engine.run(patches, rows, cols)
    chain_geometry(model, 64)
    assert all(m.training for m in model.modules())
    assert torch.equal(model.features[3].running_mean, stats)
    assert torch.allclose(out.logits, ref, atol=1e-4, rtol=1e-4)
    assert torch.allclose(out.probe_totals[probe], totals, atol=1e-4, rtol=1e-4)
