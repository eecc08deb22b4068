"""zfcore.occlusion (section 4.2, Fig. 7): exact occlusion against a naive per-position loop and
Captum's convention; the approximations (Krypton's cone truncation, adaptive and error-driven
drill-down) against exact occlusion, a hand-built network whose true change is known and a
hand-worked drill-down; the ``fast`` preset (each layer's change in bfloat16, the positions whose
p(class) it may have moved by more than 0.01 recomputed in float32) by hand, against exact
occlusion and for its fallbacks; the explorer's occlusion panel (fast first, exact on request or
once the controls rest)."""

import math
import time

import pytest
import torch
from torch import nn

from zfcore import models, occlusion
from zfcore.incremental import chain_geometry, cone_macs
from zfcore.occlusion import (
    LOW_PRECISION_LOGIT_ERROR,
    LOW_PRECISION_MAX_DP,
    OcclusionError,
    OcclusionResult,
    drill_down,
    drill_steps,
    fill_values,
    low_precision_suspects,
    occlude,
    pixel_attribution,
    window_positions,
)
from zfcore.profiles import get_profile


def sharpened(model: nn.Module) -> nn.Module:
    """A random network whose output reacts visibly to occlusion (He initialisation)."""
    return models.he_init_(model).eval()


@pytest.fixture(scope="module")
def tiny_zf():
    torch.manual_seed(0)
    return sharpened(models.zfnet(width=0.125, image_size=64, fc_units=128, num_classes=10))


def naive_maps(model, image, target, window, stride, fill, layer="layer5", feature=None):
    """One full forward pass per square position, one at a time: the definition of Fig. 7."""
    H, W = image.shape[-2:]
    rows = list(range(0, H - window + 1, stride))
    cols = list(range(0, W - window + 1, stride))
    if rows[-1] != H - window:
        rows.append(H - window)
    if cols[-1] != W - window:
        cols.append(W - window)
    probe = models.get_layer(model, layer)
    seen = {}
    h = probe.register_forward_hook(lambda m, i, o: seen.__setitem__("a", o))
    with torch.no_grad():
        model(image[None])
        clean = seen["a"][0]
        if feature is None:
            feature = int(clean.flatten(1).amax(1).argmax())
        logp = torch.zeros(len(rows), len(cols))
        top = torch.zeros(len(rows), len(cols), dtype=torch.long)
        total = torch.zeros(len(rows), len(cols))
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                x = image.clone()
                for ch in range(3):
                    x[ch, r : r + window, c : c + window] = fill[ch]
                out = torch.log_softmax(model(x[None]), 1)[0]
                logp[i, j] = out[target]
                top[i, j] = out.argmax()
                total[i, j] = seen["a"][0, feature].sum()
    h.remove()
    return logp, top, total, feature


@pytest.mark.parametrize("incremental", [True, False])
def test_occlude_matches_naive_loop(tiny_zf, incremental):
    torch.manual_seed(1)
    image = torch.randn(3, 64, 64)
    res = occlude(
        tiny_zf,
        image,
        target=4,
        window=12,
        stride=5,
        fill=0.3,
        incremental=incremental,
        batch_size=16,
    )
    logp, top, total, feature = naive_maps(tiny_zf, image, 4, 12, 5, [0.3] * 3)
    assert res.feature == feature
    assert res.rows.tolist() == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 52]
    assert torch.allclose(res.log_prob_target, logp, atol=1e-4)
    assert torch.allclose(res.prob_target, logp.exp(), atol=1e-4)
    assert torch.allclose(res.feature_total, total, atol=1e-4, rtol=1e-5)
    # the argmax label map: equal wherever the top two classes are not tied to float noise
    assert (res.top_class == top).float().mean() > 0.99
    assert res.log_prob_target.std() > 0.05, "the test network should react to occlusion"


def test_clean_values_and_defaults(tiny_zf):
    image = torch.randn(1, 3, 64, 64)
    res = occlude(tiny_zf, image, window=16, stride=8)
    with torch.no_grad():
        p = torch.softmax(tiny_zf(image), 1)[0]
    assert res.target == res.clean_top_class == int(p.argmax())
    assert res.prob_target_clean == pytest.approx(float(p.max()), abs=1e-6)
    assert res.fill == [0.0, 0.0, 0.0]  # "mean": the data set's mean colour
    assert res.prob_target.shape == res.top_class.shape == (7, 7)
    back = OcclusionResult.from_dict(res.to_dict())
    assert torch.equal(back.prob_target, res.prob_target) and back.image_size == (64, 64)


def test_fills():
    img = torch.arange(3 * 4 * 4, dtype=torch.float32).view(3, 4, 4)
    assert fill_values(img, "mean").tolist() == [0, 0, 0]
    assert fill_values(img, "image_mean").tolist() == [7.5, 23.5, 39.5]
    assert fill_values(img, 2).tolist() == [2, 2, 2]
    assert fill_values(img, [1, 2, 3]).tolist() == [1, 2, 3]
    for bad in ("grey-ish", [1, 2], float("nan"), None, True):
        with pytest.raises(OcclusionError, match="fill"):
            fill_values(img, bad)


def test_window_positions_cover_the_image():
    assert window_positions(10, 4, 3).tolist() == [0, 3, 6]
    assert window_positions(11, 4, 3).tolist() == [0, 3, 6, 7]  # last one flush with the border
    assert window_positions(4, 4, 1).tolist() == [0]
    with pytest.raises(OcclusionError, match="larger"):
        window_positions(3, 4, 1)


def test_bad_arguments_are_named(tiny_zf):
    img = torch.randn(3, 64, 64)
    with pytest.raises(OcclusionError, match="window"):
        occlude(tiny_zf, img, window=100)
    with pytest.raises(OcclusionError, match="stride"):
        occlude(tiny_zf, img, stride=0)
    with pytest.raises(OcclusionError, match="target"):
        occlude(tiny_zf, img, target=10)
    with pytest.raises(OcclusionError, match="one image"):
        occlude(tiny_zf, torch.randn(2, 3, 64, 64))
    with pytest.raises(OcclusionError, match="torch.Tensor"):
        occlude(tiny_zf, img.numpy())
    with pytest.raises(models.LayerError, match="unknown layer"):
        occlude(tiny_zf, img, layer="layer9")
    # one eval-mode policy: a model in training mode is occluded in eval mode and handed back
    # in training mode, with the maps of the eval-mode model
    expected = occlude(tiny_zf, img, window=16, stride=16)
    tiny_zf.train()
    try:
        got = occlude(tiny_zf, img, window=16, stride=16)
        assert tiny_zf.training and all(m.training for m in tiny_zf.modules())
        assert torch.equal(got.prob_target, expected.prob_target)
    finally:
        tiny_zf.eval()


def test_pixel_attribution_is_captums_occlusion(tiny_zf):
    captum = pytest.importorskip("captum.attr")
    torch.manual_seed(2)
    image = torch.randn(3, 64, 64)
    res = occlude(tiny_zf, image, target=2, window=16, stride=8, fill=0.0)
    occ = captum.Occlusion(lambda x: torch.softmax(tiny_zf(x), 1))
    attr = occ.attribute(
        image[None],
        sliding_window_shapes=(3, 16, 16),
        strides=(3, 8, 8),
        baselines=0.0,
        target=2,
        perturbations_per_eval=16,
    )
    ours = pixel_attribution(res)
    assert attr.abs().max() > 1e-3
    for ch in range(3):
        assert torch.allclose(attr[0, ch], ours, atol=1e-5)


def test_pixel_attribution_by_hand():
    # a 4x4 image, window 2, stride 2: four squares, each pixel covered once
    res = OcclusionResult(
        window=2,
        stride=2,
        fill=[0.0] * 3,
        image_size=(4, 4),
        rows=torch.tensor([0, 2]),
        cols=torch.tensor([0, 2]),
        target=0,
        layer="layer5",
        feature=0,
        feature_total=torch.zeros(2, 2),
        feature_total_clean=0.0,
        prob_target=torch.tensor([[0.9, 0.5], [0.2, 1.0]]),
        log_prob_target=torch.zeros(2, 2),
        prob_target_clean=1.0,
        top_class=torch.zeros(2, 2, dtype=torch.long),
        top_prob=torch.ones(2, 2),
        clean_top_class=0,
    )
    want = torch.tensor(
        [[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.5], [0.8, 0.8, 0.0, 0.0], [0.8, 0.8, 0.0, 0.0]]
    )
    assert torch.allclose(pixel_attribution(res), want, atol=1e-6)


class _Spot(nn.Module):
    """A 'classifier' whose class-0 evidence is the brightness of a 6x6 spot at a known place:
    occluding the spot, and only the spot, lowers p(class 0)."""

    def __init__(self, y, x):
        super().__init__()
        self.y, self.x = y, x
        self.features = nn.Sequential(nn.Identity(), nn.ReLU())
        self.layer_names = {"layer5": "features.1"}

    def forward(self, img):
        a = self.features(img)
        spot = a[:, :, self.y : self.y + 6, self.x : self.x + 6].mean((1, 2, 3))
        return torch.stack([spot * 5, torch.zeros_like(spot)], 1)


@pytest.mark.slow
def test_benchmark_quick_runs():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.occlusion", "--quick"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT occlusion speedup_vs_captum=")
    keys = [kv.split("=")[0] for kv in last.split()[2:]]
    assert keys[:5] == [
        "speedup_vs_captum",
        "speedup_vs_captum_default",
        "max_abs_diff",
        "speedup_alexnet",
        "flop_bound_alexnet",
    ]
    assert {"speedup_approx_vs_captum", "max_abs_err_approx"} <= set(keys)  # the approximate arms
    diff = float(last.split("max_abs_diff=")[1].split()[0])
    assert diff <= 1e-4


# --- approximate occlusion: cone truncation and drill-down ------------------------------------


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


def test_fast_result_roundtrip(tiny_zf, monkeypatch):
    monkeypatch.setattr("zfcore.occlusion.low_precision_is_fast", lambda device: True)
    img = torch.randn(2, 3, 64, 64)
    r = occlude(tiny_zf, img[0], window=16, stride=4, mode="fast")
    assert r.mode == "fast" and r.precision == "bf16" and not r.exact
    back = OcclusionResult.from_dict(r.to_dict())
    assert back.mode == "fast" and torch.equal(back.computed, r.computed)
    assert back.precision == "bf16" and torch.equal(back.rechecked, r.rechecked)


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


# --- the fast preset: bfloat16 changes, rechecked in float32 ----------------------------------


@pytest.fixture
def bf16_is_fast(monkeypatch):
    monkeypatch.setattr("zfcore.occlusion.low_precision_is_fast", lambda device: True)


def test_suspects_by_hand():
    clean = torch.zeros(4, 2)
    logits = torch.tensor([[1.0, 0.0], [0.5, 0.0], [30.0, 0.0], [0.0, 0.0]])
    # p0 = e/(e+1) = 0.7311, change 1: 2 * 0.7311 * 0.2689 / 32 = 0.01229 > 0.01
    # p0 = 0.6225, change 0.5: 2 * 0.6225 * 0.3775 * 0.5 / 32 = 0.00734
    # p0 = 1 - 9e-14: flat however large the change; no change: nothing to fear
    assert LOW_PRECISION_LOGIT_ERROR == 1 / 32 and LOW_PRECISION_MAX_DP == 0.01
    assert low_precision_suspects(logits, clean, 0).tolist() == [True, False, False, False]
    p = 1 / (1 + math.exp(-1.0))
    assert 2 * p * (1 - p) / 32 == pytest.approx(0.01229, abs=1e-5)


def test_first_order_bound_on_p_holds():
    """|dp_t| <= 2 p_t (1 - p_t) max|dz| (to first order), the bound the guard uses, sampled."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2000, 7, generator=g, dtype=torch.float64) * 3
    E = 1e-4
    dz = (torch.rand(2000, 7, generator=g, dtype=torch.float64) * 2 - 1) * E
    p, q = torch.softmax(z, 1)[:, 0], torch.softmax(z + dz, 1)[:, 0]
    bound = 2 * p * (1 - p) * dz.abs().amax(1)
    assert ((q - p).abs() <= bound * (1 + 1e-3) + 1e-15).all()
    assert float(((q - p).abs() / bound).max()) > 0.5  # and it is not loose by much


def test_fast_is_close_to_exact_and_rechecks_exactly(tiny_zf, bf16_is_fast, monkeypatch):
    torch.manual_seed(1)
    image = torch.randn(3, 64, 64)
    exact = occlude(tiny_zf, image, 3, window=12, stride=4)
    fast = occlude(tiny_zf, image, 3, window=12, stride=4, mode="fast")
    assert fast.mode == "fast" and fast.precision == "bf16" and not fast.exact
    assert fast.rechecked.shape == exact.prob_target.shape
    assert float((fast.prob_target - exact.prob_target).abs().max()) <= 0.01
    assert float((fast.feature_total - exact.feature_total).abs().max()) <= 1e-2 * float(
        exact.feature_total.abs().max()
    )
    # an estimate that fears every change recomputes every changed position: exact again
    monkeypatch.setattr(occlusion, "LOW_PRECISION_LOGIT_ERROR", 1e9)
    every = occlude(tiny_zf, image, 3, window=12, stride=4, mode="fast")
    assert bool(every.rechecked.all())
    assert torch.allclose(every.prob_target, exact.prob_target, atol=1e-6, rtol=0)
    # one that fears nothing rechecks nothing, and bfloat16 shows
    monkeypatch.setattr(occlusion, "LOW_PRECISION_LOGIT_ERROR", 0.0)
    none = occlude(tiny_zf, image, 3, window=12, stride=4, mode="fast")
    assert not none.rechecked.any()
    assert float((none.prob_target - exact.prob_target).abs().max()) > 1e-6


def test_fast_falls_back_to_float32(tiny_zf, monkeypatch):
    torch.manual_seed(2)
    image = torch.randn(3, 64, 64)
    exact = occlude(tiny_zf, image, 1, window=16, stride=8)
    monkeypatch.setattr("zfcore.occlusion.low_precision_is_fast", lambda device: False)
    slow_hw = occlude(tiny_zf, image, 1, window=16, stride=8, mode="fast")
    full = occlude(tiny_zf, image, 1, window=16, stride=8, mode="fast", incremental=False)
    for r in (slow_hw, full):
        assert r.precision == "fp32" and r.exact and r.rechecked is None
        assert torch.allclose(r.prob_target, exact.prob_target, atol=1e-5, rtol=0)
    # asked for by name, bfloat16 is used even where it is slow
    forced = occlude(tiny_zf, image, 1, window=16, stride=8, precision="bf16")
    assert forced.precision == "bf16" and forced.mode == "custom"


def test_bad_precision(tiny_zf):
    image = torch.randn(3, 64, 64)
    with pytest.raises(OcclusionError, match="precision"):
        occlude(tiny_zf, image, precision="fp16")
    with pytest.raises(OcclusionError, match="incremental=True"):
        occlude(tiny_zf, image, precision="bf16", incremental=False)


# --- the explorer's occlusion panel -------------------------------------------------------------


@pytest.fixture(scope="module")
def explorer_profile(tmp_path_factory):
    return get_profile("tiny", cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def explorer_model(explorer_profile):
    torch.manual_seed(0)
    return models.he_init_(models.zfnet(**explorer_profile.model_kwargs())).eval()


@pytest.fixture
def session(explorer_model, explorer_profile, monkeypatch):
    from zfcore.widgets import ExplorerSession

    # the fast preset runs in bfloat16 where that is native (it is on the machines CI uses)
    monkeypatch.setattr("zfcore.occlusion.low_precision_is_fast", lambda device: True)
    s = ExplorerSession(explorer_model, explorer_profile, page_size=16, cols=8, cell=12, panel=64)
    s.select_dataset_image(3)
    s.select_layer("layer5")
    s.select_unit(1)
    s.select_occlusion_size(16)
    return s


@pytest.mark.slow
def test_session_shows_fast_then_exact(session, explorer_model):
    assert session.occlusion_mode() == "fast"
    panel, caption = session.occlusion_panel()
    assert caption.startswith("approximate (each layer's change in bf16, ")
    assert "rechecked in float32; exact follows" in caption
    fast = session.occlusion(mode="fast")
    want = occlude(
        explorer_model,
        session.model_input(),
        session.image()[1],
        window=16,
        stride=session.occlusion_stride(16),
        layer="layer5",
        feature=1,
        mode="fast",
    )
    assert torch.equal(fast.prob_target, want.prob_target) and not fast.exact
    exact = session.refine_occlusion()
    assert exact.exact and session.occlusion_mode() == "exact"
    _, caption = session.occlusion_panel()
    assert caption.startswith("exact") and "layer5 map 1 activity" in caption
    session.select_unit(2)  # a new view starts fast again
    assert session.occlusion_mode() == "fast"


def test_fast_that_came_out_exact_is_the_exact_map(session, monkeypatch):
    monkeypatch.setattr("zfcore.occlusion.low_precision_is_fast", lambda device: False)
    assert session.occlusion_mode() == "fast"
    _, caption = session.occlusion_panel()
    assert caption.startswith("exact") and session.occlusion_mode() == "exact"
    assert session.refine_occlusion() is session.occlusion(mode="fast")


@pytest.mark.slow
def test_button_refines_on_request(session):
    from zfcore.widgets import Explorer

    app = Explorer(session, profiles=("tiny",), refine_delay=None)
    app.occ_btn.click()
    assert "approximate" in app.captions["occlusion"].value
    assert app.occ_btn.description == "exact occlusion map"
    app.occ_btn.click()  # on request
    assert "exact. left" in app.captions["occlusion"].value
    assert app.occ_btn.description == "occlusion map"


def test_refines_when_the_controls_rest(session):
    from zfcore.widgets import Explorer

    app = Explorer(session, profiles=("tiny",), refine_delay=0.05)
    app.occ_btn.click()
    deadline = time.monotonic() + 120
    while "approximate" in app.captions["occlusion"].value and time.monotonic() < deadline:
        time.sleep(0.05)
    with app._lock:
        assert "exact. left" in app.captions["occlusion"].value
        assert "exact occlusion map" in [k for k, _ in app.timings.records]
