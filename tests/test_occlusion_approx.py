"""Approximate occlusion (Krypton's cone truncation and adaptive drill-down) against exact
occlusion, a hand-built network whose true change is known, and a hand-worked drill-down."""

import pytest
import torch
from torch import nn

from zfcore import models
from zfcore.incremental import IncrementalError, IncrementalForward, chain_geometry, cone_macs
from zfcore.occlusion import (
    OcclusionError,
    OcclusionResult,
    drill_down,
    drill_steps,
    occlude,
    pointing_game,
)


@pytest.fixture(scope="module")
def tiny_zf():
    torch.manual_seed(0)
    return models.he_init_(
        models.zfnet(width=0.125, image_size=64, fc_units=128, num_classes=10)
    ).eval()


def test_truncation_off_equals_exact(tiny_zf):
    torch.manual_seed(1)
    image = torch.randn(3, 64, 64)
    exact = occlude(tiny_zf, image, 3, window=12, stride=4)
    approx = occlude(tiny_zf, image, 3, window=12, stride=4, mode="fast", precision="fp32")
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
    net = nn.Sequential(
        conv1, nn.ReLU(), conv2, nn.ReLU(), nn.Flatten(1), nn.Linear(4 * 32 * 32, 3)
    )
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
    assert float(cone_macs(geo, rows, cols, 6, tr).sum()) < float(
        cone_macs(geo, rows, cols, 6).sum()
    )
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
    change[0, 0] = 0.1  # fine (0, 0): used by rows 0, 1 and columns 0, 1
    assert not drill_down(change, ci, ci, (8, 8), refine=0.0).any()
    n_off = int((~on).sum())
    mask = drill_down(change, ci, ci, (8, 8), refine=8 / n_off)
    assert torch.equal(mask, want & ~on)  # the 0.7 ones first
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
        spot = a[:, :, self.y : self.y + 6, self.x : self.x + 6].mean((1, 2, 3))
        return torch.stack([spot * 5, torch.zeros_like(spot)], 1)


def test_drill_down_refines_exactly_where_the_coarse_map_changes():
    image = torch.zeros(3, 32, 32)
    image[:, 10:16, 18:24] = 1.0
    net = _Spot(10, 18).eval()
    exact = occlude(net, image, 0, window=4, stride=2, incremental=False)
    res = occlude(net, image, 0, window=4, stride=2, incremental=False, coarse=2, refine=1.0)
    n = len(exact.rows)
    ci = list(range(0, n, 2)) + ([n - 1] if (n - 1) % 2 else [])
    maps = (
        (exact.prob_target, torch.tensor(exact.prob_target_clean).float().item()),
        (exact.feature_total, exact.feature_total_clean),
    )

    def used(i):  # the coarse indices the interpolation of fine index i uses
        if i in ci:
            return [i]
        lo = max(k for k in ci if k < i)
        return [lo, min(k for k in ci if k > i)]

    want = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(n):
            corners = [(y, x) for y in used(i) for x in used(j)]
            want[i, j] = (i in ci and j in ci) or any(
                len({float(m[y, x]) for y, x in corners}) > 1
                or any(float(m[y, x]) != clean for y, x in corners)
                for m, clean in maps
            )
    assert 0 < int(want.sum()) < n * n
    assert torch.equal(res.computed, want)
    # computed positions are exact; the others lie between equal, unchanged coarse values
    assert torch.allclose(res.prob_target, exact.prob_target, atol=1e-6)
    assert res.most_damaging() == exact.most_damaging()
    # half of the other positions, the most changed first, cover every changed position here
    fast = occlude(net, image, 0, window=4, stride=2, incremental=False, coarse=2, refine=0.5)
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
    for bad in (-0.1, float("nan"), "0.01", True):
        with pytest.raises(OcclusionError, match="tol"):
            occlude(tiny_zf, img, coarse=4, tol=bad)


def test_fast_result_roundtrip_and_pointing_game(tiny_zf, monkeypatch):
    monkeypatch.setattr("zfcore.occlusion.low_precision_is_fast", lambda device: True)
    img = torch.randn(2, 3, 64, 64)
    r = occlude(tiny_zf, img[0], window=16, stride=4, mode="fast")
    assert r.mode == "fast" and r.precision == "bf16" and not r.exact
    back = OcclusionResult.from_dict(r.to_dict())
    assert back.mode == "fast" and torch.equal(back.computed, r.computed)
    assert back.precision == "bf16" and torch.equal(back.rechecked, r.rechecked)
    pg = pointing_game(
        tiny_zf, img, [0, 1], [[0, 0, 32, 32]] * 2, window=16, stride=4, mode="fast", progress=False
    )
    one = occlude(tiny_zf, img[1], 1, window=16, stride=4, mode="fast")
    assert pg.points[1].tolist() == list(one.most_damaging())


def test_error_driven_tol_zero_equals_exact(tiny_zf):
    torch.manual_seed(4)
    image = torch.randn(3, 64, 64)
    exact = occlude(tiny_zf, image, 2, window=12, stride=4)
    res = occlude(tiny_zf, image, 2, window=12, stride=4, coarse=4, tol=0.0)
    assert res.mode == "custom" and res.tol == 0.0 and res.exact and bool(res.computed.all())
    for k in ("prob_target", "feature_total", "top_prob"):
        assert torch.allclose(getattr(res, k), getattr(exact, k), atol=1e-6, rtol=0), k
    # a tolerance above any spread p can have (1) still follows the layer-5 map and the minimum
    loose = occlude(tiny_zf, image, 2, window=12, stride=4, coarse=4, tol=1.0)
    assert not loose.computed.all() and loose.computed.any()


def test_drill_steps():
    assert drill_steps(8) == [8, 4, 2, 1] and drill_steps(6) == [6, 3, 1]
    assert drill_steps(5) == [5, 1] and drill_steps(1) == [1]


def test_error_driven_drill_down_by_hand():
    # coarse grid 0, 2, 4, 6, 7 of an 8 x 8 grid; p is 0.5 except 0.53125 at coarse (1, 3),
    # i.e. fine (2, 6): the spread is 1/32 exactly where the interpolation uses it, fine rows
    # 1..3 and columns 5..6 (column 7 is on the coarse grid), less (2, 6) on it
    ci = torch.tensor([0, 2, 4, 6, 7])
    p = torch.full((5, 5), 0.5, dtype=torch.float64)
    p[1, 3] = 0.53125
    on = torch.zeros(8, 8, dtype=torch.bool)
    on[ci[:, None], ci[None, :]] = True
    want = torch.zeros(8, 8, dtype=torch.bool)
    want[1:4, 5:7] = True
    want &= ~on
    assert int(want.sum()) == 5  # (1, 5) (1, 6) (2, 5) (3, 5) (3, 6)
    assert torch.equal(drill_down(p, ci, ci, (8, 8), 0.0, tol=0.02), want)
    assert torch.equal(drill_down(p, ci, ci, (8, 8), 0.0, tol=0.029), want)
    assert not drill_down(p, ci, ci, (8, 8), 1.0, tol=0.03125).any()  # not above tol: interpolated
    # a second map in other units, scaled: spread 2 of 100 -> 0.02 > 0.01 at coarse (4, 0)
    f = torch.zeros(5, 5, dtype=torch.float64)
    f[4, 0] = 2.0  # fine (7, 0): used by row 7 (on the coarse grid) and columns 0, 1
    both = drill_down(
        torch.stack([p, f]), ci, ci, (8, 8), 0.0, tol=0.01, scale=torch.tensor([1.0, 100.0])
    )
    extra = torch.zeros(8, 8, dtype=torch.bool)
    extra[7, 1] = True
    assert torch.equal(both, want | extra)
    assert torch.equal(
        drill_down(
            torch.stack([p, f]), ci, ci, (8, 8), 0.0, tol=0.04, scale=torch.tensor([1.0, 100.0])
        ),
        torch.zeros(8, 8, dtype=torch.bool),
    )


def _levels_by_loop(p_exact, f_exact, coarse, tol):
    """The error-driven drill-down written as plain loops over positions, the exact maps as the
    oracle for computed positions: (computed mask, p map)."""
    n = p_exact.shape[0]

    def grid(step):
        g = list(range(0, n, step))
        return g + ([n - 1] if g[-1] != n - 1 else [])

    p, f, known, computed = {}, {}, set(), set()
    old = grid(coarse)
    for i in old:
        for j in old:
            p[i, j], f[i, j] = float(p_exact[i, j]), float(f_exact[i, j])
            known.add((i, j)), computed.add((i, j))
    for step in drill_steps(coarse)[1:]:
        lowest = min(((i, j) for i in old for j in old), key=lambda ij: (p[ij], ij))
        fmax = max(abs(f[i, j]) for i in old for j in old) or 1.0

        def bracket(i):
            if i in old:
                return [(i, 0.0)]
            lo = max(k for k in old if k < i)
            hi = min(k for k in old if k > i)
            return [(lo, 1 - (i - lo) / (hi - lo)), (hi, (i - lo) / (hi - lo))]

        new = grid(step)
        todo = {}
        for i in new:
            for j in new:
                if (i, j) in known:
                    continue
                br, bc = bracket(i), bracket(j)
                corners = [(y, x) for y, _ in br for x, _ in bc]
                ps, fs = [p[c] for c in corners], [f[c] for c in corners]
                if max(ps) - min(ps) > tol or (max(fs) - min(fs)) / fmax > tol or lowest in corners:
                    todo[i, j] = (float(p_exact[i, j]), float(f_exact[i, j]))
                    computed.add((i, j))
                else:
                    w = [
                        (wy if len(br) > 1 else 1.0) * (wx if len(bc) > 1 else 1.0)
                        for _, wy in br
                        for _, wx in bc
                    ]
                    todo[i, j] = (
                        sum(a * b for a, b in zip(w, ps)),
                        sum(a * b for a, b in zip(w, fs)),
                    )
        for ij, (a, b) in todo.items():
            p[ij], f[ij] = a, b
            known.add(ij)
        old = new
    mask = torch.zeros(n, n, dtype=torch.bool)
    for ij in computed:
        mask[ij] = True
    return mask, torch.tensor([[p[i, j] for j in range(n)] for i in range(n)], dtype=torch.float64)


def test_error_driven_levels_match_a_loop_and_stay_within_tol():
    image = torch.zeros(3, 48, 48)
    image[:, 10:16, 26:32] = 1.0
    net = _Spot(10, 26).eval()
    exact = occlude(net, image, 0, window=4, stride=2, incremental=False)  # 23 x 23 grid
    for coarse, tol in ((4, 0.01), (8, 0.002), (3, 0.05)):
        res = occlude(net, image, 0, window=4, stride=2, incremental=False, coarse=coarse, tol=tol)
        mask, p = _levels_by_loop(
            exact.prob_target.double(), exact.feature_total.double(), coarse, tol
        )
        assert torch.equal(res.computed, mask), (coarse, tol)
        assert torch.allclose(res.prob_target.double(), p, atol=1e-6), (coarse, tol)
        assert 0 < int(mask.sum()) < mask.numel()
        err = float((res.prob_target - exact.prob_target).abs().max())
        if coarse * 2 < 4 + 6:
            # hand-checked bound: the coarse step (2 px per grid step) is shorter than the span of
            # positions where the square touches the spot (4 + 6 px), so the coarse grid sees the
            # change and, p being smooth in the overlap, interpolated values stay within tol
            assert err <= tol and res.most_damaging() == exact.most_damaging(), (coarse, tol)
        else:
            # the limit of any drill-down: a 16 px step can miss the whole change (tol is then
            # no bound)
            assert err > tol
