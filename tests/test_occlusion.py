"""Occlusion sensitivity (Fig. 7) against a naive per-position loop, Captum's convention, and
hand-worked pointing-game cases."""

import pytest
import torch
from torch import nn

from zfcore import models
from zfcore.occlusion import (
    OcclusionError,
    OcclusionResult,
    PointingGameResult,
    fill_values,
    occlude,
    pixel_attribution,
    pointing_game,
    pointing_game_split,
    window_positions,
)


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


def test_pointing_game_by_hand():
    images = torch.zeros(3, 3, 32, 32)
    spots = [(4, 20), (20, 2), (12, 12)]
    for i, (y, x) in enumerate(spots):
        images[i, :, y : y + 6, x : x + 6] = 1.0
    boxes = torch.tensor([[18, 2, 30, 12], [0, 18, 10, 28], [0, 0, 8, 8]], dtype=torch.float64)
    hits = []
    for i, (y, x) in enumerate(spots):
        res = pointing_game(
            _Spot(y, x).eval(),
            images[i : i + 1],
            [0],
            boxes[i : i + 1],
            window=8,
            stride=2,
            incremental=False,
            progress=False,
        )
        hits.append(bool(res.hits[0]))
        px, py = res.points[0].tolist()
        assert abs(px - (x + 3)) <= 2 and abs(py - (y + 3)) <= 2  # the square sits on the spot
    assert hits == [True, True, False]  # the third box misses the spot
    # chance: box area / image area, and the share of square centres inside the box
    assert float(res.chance_box[0]) == pytest.approx(64 / 1024)
    centres = torch.arange(0, 25, 2).double() + 4
    inside = ((centres >= 0) & (centres <= 8)).double().mean()
    assert float(res.chance_grid[0]) == pytest.approx(float(inside**2))


def test_pointing_game_result_roundtrip(tiny_zf):
    imgs = torch.randn(2, 3, 64, 64)
    boxes = torch.tensor([[0, 0, 32, 32], [16, 16, 64, 64]])
    res = pointing_game(tiny_zf, imgs, [1, 2], boxes, window=16, stride=16, progress=False)
    assert res.hits.shape == (2,) and 0.0 <= res.hit_rate <= 1.0
    assert res.chance_rate == pytest.approx((0.25 + 0.5625) / 2)
    back = PointingGameResult.from_dict(res.to_dict())
    assert torch.equal(back.hits, res.hits)
    with pytest.raises(OcclusionError, match="one label and one box"):
        pointing_game(tiny_zf, imgs, [1], boxes, progress=False)


def test_pointing_game_split_is_cached(tmp_path, tiny_zf):
    from zfcore.profiles import get_profile

    P = get_profile("tiny", cache_dir=tmp_path)
    a = pointing_game_split(tiny_zf, P, "test", n=5, window=16, stride=16, progress=False)
    assert a.hits.shape == (5,) and a.boxes.shape == (5, 4)
    assert len(list((tmp_path / "pointing_game").glob("*/result.pt"))) == 1
    b = pointing_game_split(tiny_zf, P, "test", n=5, window=16, stride=16, progress=False)
    assert torch.equal(a.points, b.points) and torch.equal(a.hits, b.hits)
    with pytest.raises(OcclusionError, match="between 1 and"):
        pointing_game_split(tiny_zf, P, "test", n=10**6, progress=False)


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
