"""Controls and per-image measures behind the verdicts of notebooks 05, 06 and 08 (aliasing,
invariance, correspondence), each against a naive loop, a hand-worked example or a case whose
answer is known."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from zfcore import firstlayer as FL
from zfcore import models
from zfcore.paper.fig5_invariance import (
    InvarianceCurves,
    layer_growth,
    mean_true_probability,
    per_image_growth,
    per_image_true_probability,
)
from zfcore.paper.fig8_table1_correspondence import (
    PARTS,
    RANDOM,
    CorrespondenceError,
    background_swap,
    consistency_score,
    hamming_matrix,
    keypoint_sides,
    pair_bootstrap,
    pairwise_correspondence,
    sign_differences,
    squares_at,
)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


# ---------------------------------------------------------------- aliasing (section 4.1, Fig. 6)
def test_power_above_of_gratings_and_white_noise():
    k = 16
    y = torch.arange(k, dtype=torch.float64)

    def grating(f):
        return torch.cos(2 * math.pi * f * y)[None, None, :, None].expand(1, 3, k, k)

    w = torch.cat([grating(3 / 16), grating(1 / 16)])  # 0.1875 and 0.0625 cycles per pixel
    assert FL.power_above(w, 1 / 8, pad=k).tolist() == pytest.approx([1.0, 0.0], abs=1e-9)
    assert FL.power_above(w, 1 / 4, pad=k).tolist() == pytest.approx([0.0, 0.0], abs=1e-9)
    # white noise: the share of frequency bins with |fx| or |fy| above c (DC removed by the mean)
    noise = FL.noise_filters(torch.zeros(400, 3, 11, 11), seed=1)
    for c in (1 / 8, 1 / 4):
        f = np.abs(np.fft.fftfreq(64))
        inside = (f <= c + 1e-12).sum()
        want = 1 - (inside**2 - 1) / (64**2 - 1)
        assert float(FL.power_above(noise, c).mean()) == pytest.approx(want, abs=0.02)
    with pytest.raises(FL.FirstLayerError, match="cutoff"):
        FL.power_above(w, 0.7)


def test_aliasing_controls_compare_like_with_like():
    torch.manual_seed(0)
    zf = models.zfnet(width=0.125, image_size=64, fc_units=64, num_classes=5).eval()
    kr = models.krizhevsky(width=0.125, image_size=64, fc_units=64, num_classes=5).eval()
    out = FL.aliasing_controls(zf, zf)
    assert out["stride"] == 2 and np.array_equal(out["trained"]["own"], out["untrained"]["own"])
    assert np.allclose(out["trained"]["own"], out["trained"]["above_1_4"])  # stride 2: Nyquist 1/4
    conv = [m for m in kr.modules() if isinstance(m, nn.Conv2d)][0]
    out_k = FL.aliasing_controls(kr, kr)
    assert out_k["stride"] == 4 and np.allclose(
        out_k["trained"]["own"], FL.aliased_energy(conv).numpy()
    )
    assert np.allclose(out_k["trained"]["own"], out_k["trained"]["above_1_8"])
    with pytest.raises(FL.FirstLayerError, match="differ"):
        FL.aliasing_controls(zf, kr)


# ---------------------------------------------------------------- invariance (Fig. 5)
def _curves():
    d1 = torch.tensor([[0.0, 2.0, 4.0, 4.0], [0.0, 1.0, 1.0, 2.0], [0.0, 5.0, 5.0, 5.0]])
    in_view = torch.tensor(
        [[True, True, True, False], [True, True, True, True], [True, False, False, False]]
    )
    prob = torch.tensor([[0.9, 0.8, 0.6, 0.1], [0.5, 0.4, 0.3, 0.2], [1.0, 0.2, 0.2, 0.2]])
    return InvarianceCurves(
        kind="translate_y",
        amounts=torch.tensor([0.0, 2.0, 4.0, 6.0]),
        labels=torch.tensor([0, 1, 2]),
        distances={"layer1": d1},
        prob_true=prob,
        top_class=torch.zeros(3, 4, dtype=torch.long),
        in_view=in_view,
    )


def test_per_image_growth_and_probability_by_hand():
    c = _curves()
    g = per_image_growth(c, "layer1")
    # image 0: in-view steps 2, 4 of peak 4 -> (0.5 + 1) / 2; image 1: (1 + 1 + 2) / 2 / 3;
    # image 2: none
    assert g[:2].tolist() == pytest.approx([0.75, 2 / 3]) and math.isnan(g[2])
    p = per_image_true_probability(c)
    assert p[:2].tolist() == pytest.approx([0.7, 0.3]) and math.isnan(p[2])
    # a single image's value is the split-level measure of that image alone
    for i in range(2):
        assert g[i] == pytest.approx(layer_growth(c, "layer1", torch.arange(3) == i))
        assert p[i] == pytest.approx(mean_true_probability(c, torch.arange(3) == i))


# ---------------------------------------------------------------- correspondence (Table 1)
def test_keypoint_sides_and_squares_by_hand():
    kp = {
        "left_eye": torch.tensor([[10.0, 10.0]]),
        "right_eye": torch.tensor([[30.0, 10.0]]),
        "nose": torch.tensor([[20.0, 20.0]]),
    }
    side = keypoint_sides(kp, fraction=0.9)  # closest pair: eye to nose, offset (10, 10)
    assert side.tolist() == pytest.approx([9.0])
    sq = squares_at(kp, side, (64, 64))
    assert sq["nose"].tolist() == [[16, 16, 25, 25]]  # 9 px around (20, 20)
    a, b = sq["left_eye"][0].tolist(), sq["nose"][0].tolist()
    assert a[2] <= b[0] or a[3] <= b[1]  # the squares of two parts do not overlap
    with pytest.raises(CorrespondenceError, match="lack"):
        keypoint_sides({**kp, "nose": torch.tensor([[float("nan"), 1.0]])})


def test_background_swap_keeps_the_face_and_changes_the_rest():
    base = torch.zeros(3, 16, 16)
    bg = torch.rand(4, 3, 16, 16) + 1
    out = background_swap(base, [4, 2, 10, 8], bg)
    assert out[:, :, 2:8, 4:10].eq(0).all()
    mask = torch.ones(16, 16, dtype=torch.bool)
    mask[2:8, 4:10] = False
    assert torch.equal(out[:, :, mask], bg[:, :, mask])


def test_pair_bootstrap_effect_is_the_mean_over_distinct_pairs():
    g = torch.Generator().manual_seed(0)
    r = torch.rand(6, 6, generator=g, dtype=torch.float64)
    p = torch.rand(6, 6, generator=g, dtype=torch.float64)
    r, p = (r + r.T) / 2, (p + p.T) / 2
    v = pair_bootstrap("demo", r, p, n_boot=200)
    loop = np.mean([float(r[i, j] - p[i, j]) for i in range(6) for j in range(6) if i != j])
    assert v.effect == pytest.approx(loop)
    assert pair_bootstrap("demo", r + 1, r, n_boot=50).verdict == "held"


class Pixels(nn.Module):
    """'layer5' is the image itself and 'layer7' its channel means: the answer is known."""

    def __init__(self):
        super().__init__()
        self.l5, self.l7 = nn.Identity(), nn.Identity()
        self.layer_names = {"layer5": "l5", "layer7": "l7"}

    def forward(self, x):
        return self.l7(self.l5(x).mean((2, 3)))


def test_pairwise_correspondence_agrees_with_the_paper_score_and_detects_a_positive_control():
    N, g = 8, torch.Generator().manual_seed(0)
    base = 1 + torch.rand(3, 32, 32, generator=g)
    images = background_swap(base, [4, 4, 28, 28], 1 + torch.rand(N, 3, 32, 32, generator=g))
    kp = {
        "left_eye": torch.tensor([[10.0, 12.0]]).repeat(N, 1),
        "right_eye": torch.tensor([[22.0, 12.0]]).repeat(N, 1),
        "nose": torch.tensor([[16.0, 20.0]]).repeat(N, 1),
    }
    boxes = torch.tensor([[4.0, 4.0, 28.0, 28.0]]).repeat(N, 1)
    res = pairwise_correspondence(Pixels().eval(), images, kp, boxes, n_random=3)
    # the same face at the same place: every part's sign changes agree exactly (score 0)
    for p in PARTS:
        assert res.mean(p, "layer5") == 0
    assert res.mean(RANDOM, "layer5") > 0.01
    assert res.verdict("positive_control", "parts", "layer5", n_boot=200).verdict == "held"
    # mean over pairs = the paper's normalised score of the whole pool, for one occlusion
    sq = squares_at(kp, res.sides, (32, 32))
    from zfcore.paper.fig8_table1_correspondence import apply_squares

    s = sign_differences(Pixels().eval(), images, apply_squares(images, sq["nose"] + 0, 0.0))
    assert res.mean("nose", "layer7") == pytest.approx(
        consistency_score(s["layer7"], normalize=True)
    )
    assert torch.allclose(
        res.distances["nose/layer7"], hamming_matrix(s["layer7"]) / s["layer7"].shape[1]
    )
