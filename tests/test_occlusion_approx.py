"""Approximate occlusion (Krypton's cone truncation and adaptive drill-down) against exact
occlusion, a hand-built network whose true change is known, and a hand-worked drill-down."""
import pytest
import torch
from torch import nn

from zfcore import models
from zfcore.incremental import IncrementalError, IncrementalForward, cone_macs, chain_geometry
from zfcore.occlusion import (PRESETS, OcclusionError, OcclusionResult, drill_down, occlude,
                              pointing_game)


@pytest.fixture(scope="module")
def tiny_zf():
    torch.manual_seed(0)
    return models.he_init_(models.zfnet(width=0.125, image_size=64, fc_units=128,
                                        num_classes=10)).eval()


def test_truncation_off_equals_exact(tiny_zf):
    torch.manual_seed(1)
    image = torch.randn(3, 64, 64)
    exact = occlude(tiny_zf, image, 3, window=12, stride=4)
    approx = occlude(tiny_zf, image, 3, window=12, stride=4, mode="fast", truncate=1.0, coarse=1)
    assert approx.mode == "custom" and approx.exact and exact.mode == "exact" and exact.exact
    for k in ("prob_target", "log_prob_target", "feature_total", "top_prob"):
        assert torch.allclose(getattr(approx, k), getattr(exact, k), atol=1e-6, rtol=0), k
    assert torch.equal(approx.top_class, exact.top_class)
    # drill-down that refines everything that changed, on a net where everything changes: exact
    full = occlude(tiny_zf, image, 3, window=12, stride=4, truncate=1.0, coarse=2, refine=1.0)
    assert bool(full.computed.all())
    assert torch.allclose(full.prob_target, exact.prob_target, atol=1e-6, rtol=0)


def _delta_net():
    """Convolutions with centred delta kernels: an occluder changes exactly the positions under
    it at every layer, though the theoretical cone widens by 8 pixels per layer. Truncating the
    cone to its core must then lose nothing (hand-checked: the true change is the 6 px square;
    the second layer's cone, 22 px in the interior, is cut to ceil(0.6 * 32) = 20 around it)."""
    torch.manual_seed(2)
    conv1 = nn.Conv2d(3, 4, 9, padding=4)
    conv2 = nn.Conv2d(4, 4, 9, padding=4)
    with torch.no_grad():
        for conv in (conv1, conv2):
            conv.weight.zero_()
            k = conv.kernel_size[0] // 2
            conv.weight[:, :, k, k] = torch.randn(conv.out_channels, conv.in_channels)
            conv.bias.zero_()
    net = nn.Sequential(conv1, nn.ReLU(), conv2, nn.ReLU(), nn.Flatten(1), nn.Linear(4 * 32 * 32, 3))
    with torch.no_grad():
        net[5].weight.mul_(20)
    net.layer_names = {"layer5": "3", "logits": "5"}
    return net.eval()


def test_truncation_within_the_preset_bound_by_hand():
    net = _delta_net()
    image = torch.rand(3, 32, 32)
    tr = 0.6
    exact = occlude(net, image, 0, window=6, stride=2)
    approx = occlude(net, image, 0, window=6, stride=2, truncate=tr, coarse=1)
    assert exact.prob_target.std() > 0.01, "the test network should react to occlusion"
    # the truncation does cut the cone (the test is not vacuous) ...
    geo = chain_geometry(net, 32)
    rows = exact.rows.repeat_interleave(len(exact.cols))
    cols = exact.cols.repeat(len(exact.rows))
    assert float(cone_macs(geo, rows, cols, 6, tr).sum()) < float(cone_macs(geo, rows, cols, 6).sum())
    # ... yet keeps the whole true change: the error is float noise, far within 0.01
    assert float((approx.prob_target - exact.prob_target).abs().max()) <= 1e-5
    assert torch.allclose(approx.feature_total, exact.feature_total, rtol=1e-5, atol=1e-4)
    # with a real receptive field (9x9 box kernels) the truncation loses part of the change
    with torch.no_grad():
        net[2].weight[:] = net[2].weight.sum((2, 3), keepdim=True) / 81
    exact = occlude(net, image, 0, window=6, stride=2)
    cut = occlude(net, image, 0, window=6, stride=2, truncate=0.2, coarse=1)
    assert float((cut.prob_target - exact.prob_target).abs().max()) > 1e-4


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
    occluded[:, :, r:r + 4, c:c + 4] = 0
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


def test_drill_down_by_hand():
    # coarse grid indices 0, 2, 4, 6 and 7 on a 8 x 8 fine grid; change only at coarse (2, 1),
    # i.e. fine position (4, 2). Interpolation uses it for fine rows 3, 4, 5 (between coarse
    # rows 2 and 4, on 4, between 4 and 6) and columns 1, 2, 3: those positions are refined
    ci = torch.tensor([0, 2, 4, 6, 7])
    change = torch.zeros(5, 5, dtype=torch.float64)
    change[2, 1] = 0.7
    mask = drill_down(change, ci, ci, (8, 8), refine=1.0)
    want = torch.zeros(8, 8, dtype=torch.bool)
    want[3:6, 1:4] = True
    on = torch.zeros(8, 8, dtype=torch.bool)
    on[ci[:, None], ci[None, :]] = True
    assert torch.equal(mask, want & ~on)
    assert int(mask.sum()) == 8
    # a smaller share refines the most changed positions first, never an unchanged one
    change[0, 0] = 0.1                     # fine (0, 0): used by rows 0, 1 and columns 0, 1
    assert not drill_down(change, ci, ci, (8, 8), refine=0.0).any()
    n_off = int((~on).sum())
    mask = drill_down(change, ci, ci, (8, 8), refine=8 / n_off)
    assert torch.equal(mask, want & ~on)                                # the 0.7 ones first
    mask = drill_down(change, ci, ci, (8, 8), refine=1.0)
    want[0:2, 0:2] = True
    assert torch.equal(mask, want & ~on)
    # a coarse map shifted everywhere does not change between positions (nothing to refine)
    # but differs from the unoccluded value everywhere: with ``clean`` all is refined
    flat = torch.full((5, 5), 0.4, dtype=torch.float64)
    assert not drill_down(flat, ci, ci, (8, 8), refine=1.0).any()
    assert torch.equal(drill_down(flat, ci, ci, (8, 8), 1.0, clean=torch.tensor([0.9])), ~on)


class _Spot(nn.Module):
    """p(class 0) rises with the brightness of a 6x6 spot; nothing else matters."""

    def __init__(self, y, x):
        super().__init__()
        self.y, self.x = y, x
        self.features = nn.Sequential(nn.Identity(), nn.ReLU())
        self.layer_names = {"layer5": "features.1"}

    def forward(self, img):
        a = self.features(img)
        spot = a[:, :, self.y:self.y + 6, self.x:self.x + 6].mean((1, 2, 3))
        return torch.stack([spot * 5, torch.zeros_like(spot)], 1)


def test_drill_down_refines_exactly_where_the_coarse_map_changes():
    image = torch.zeros(3, 32, 32)
    image[:, 10:16, 18:24] = 1.0
    net = _Spot(10, 18).eval()
    exact = occlude(net, image, 0, window=4, stride=2, incremental=False)
    res = occlude(net, image, 0, window=4, stride=2, incremental=False, coarse=2, refine=1.0)
    n = len(exact.rows)
    ci = list(range(0, n, 2)) + ([n - 1] if (n - 1) % 2 else [])
    maps = ((exact.prob_target, torch.tensor(exact.prob_target_clean).float().item()),
            (exact.feature_total, exact.feature_total_clean))
    def used(i):        # the coarse indices the interpolation of fine index i uses
        if i in ci:
            return [i]
        lo = max(k for k in ci if k < i)
        return [lo, min(k for k in ci if k > i)]
    want = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(n):
            corners = [(y, x) for y in used(i) for x in used(j)]
            want[i, j] = (i in ci and j in ci) or any(
                len({float(m[y, x]) for y, x in corners}) > 1 or
                any(float(m[y, x]) != clean for y, x in corners) for m, clean in maps)
    assert 0 < int(want.sum()) < n * n
    assert torch.equal(res.computed, want)
    # computed positions are exact; the others lie between equal, unchanged coarse values
    assert torch.allclose(res.prob_target, exact.prob_target, atol=1e-6)
    assert res.most_damaging() == exact.most_damaging()
    # the fast preset's share covers every changed position here: within its 0.01 claim
    fast = occlude(net, image, 0, window=4, stride=2, incremental=False,
                   truncate=1.0, coarse=PRESETS["fast"]["coarse"], refine=PRESETS["fast"]["refine"])
    assert float((fast.prob_target - exact.prob_target).abs().max()) <= 0.01
    assert fast.most_damaging() == exact.most_damaging() and not fast.computed.all()


def test_bad_approximation_arguments(tiny_zf):
    img = torch.randn(3, 64, 64)
    with pytest.raises(OcclusionError, match="mode"):
        occlude(tiny_zf, img, mode="quick")
    with pytest.raises(OcclusionError, match="truncate"):
        occlude(tiny_zf, img, truncate=1.5)
    with pytest.raises(OcclusionError, match="refine"):
        occlude(tiny_zf, img, coarse=2, refine=-0.1)
    with pytest.raises(OcclusionError, match="coarse"):
        occlude(tiny_zf, img, coarse=0)
    with pytest.raises(OcclusionError, match="incremental"):
        occlude(tiny_zf, img, truncate=0.5, incremental=False)


def test_fast_result_roundtrip_and_pointing_game(tiny_zf):
    img = torch.randn(2, 3, 64, 64)
    r = occlude(tiny_zf, img[0], window=16, stride=4, mode="fast")
    assert r.mode == "fast" and not r.exact
    back = OcclusionResult.from_dict(r.to_dict())
    assert back.mode == "fast" and torch.equal(back.computed, r.computed)
    pg = pointing_game(tiny_zf, img, [0, 1], [[0, 0, 32, 32]] * 2, window=16, stride=4,
                       mode="fast", progress=False)
    one = occlude(tiny_zf, img[1], 1, window=16, stride=4, mode="fast")
    assert pg.points[1].tolist() == list(one.most_damaging())
