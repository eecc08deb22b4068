"""zfcore.paper.fig7_occlusion: the pointing game (Fig. 7's claim, measured) on hand-worked
cases, its result's round trip, the fast preset's game, the cached split study, and what
notebook 07 records and prints beside the verdicts."""

from types import SimpleNamespace
from types import SimpleNamespace as NS

import pytest
import torch
from torch import nn

from zfcore import models
from zfcore.models import zfnet
from zfcore.occlusion import OcclusionError, occlude
from zfcore.paper import fig7_occlusion as occ
from zfcore.paper.fig7_occlusion import (
    PointingGameError,
    PointingGameResult,
    claim_text,
    control_numbers,
    photo_numbers,
    photo_text,
    pointing_game,
    pointing_game_split,
    pointing_verdicts,
)
from zfcore.profiles import get_profile


@pytest.fixture(scope="module")
def tiny_zf():
    torch.manual_seed(0)
    return models.he_init_(
        models.zfnet(width=0.125, image_size=64, fc_units=128, num_classes=10)
    ).eval()


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
    # chance: box area / image area, and the share of square centres inside the box (half-open,
    # zfcore.boxes: the centre at 8 lies on the box's far edge, outside)
    assert float(res.chance_box[0]) == pytest.approx(64 / 1024)
    centres = torch.arange(0, 25, 2).double() + 4
    inside = ((centres >= 0) & (centres < 8)).double().mean()
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


def test_fast_pointing_game_points_where_fast_occlusion_does(tiny_zf, monkeypatch):
    monkeypatch.setattr("zfcore.occlusion.low_precision_is_fast", lambda device: True)
    img = torch.randn(2, 3, 64, 64)
    pg = pointing_game(
        tiny_zf, img, [0, 1], [[0, 0, 32, 32]] * 2, window=16, stride=4, mode="fast", progress=False
    )
    one = occlude(tiny_zf, img[1], 1, window=16, stride=4, mode="fast")
    assert pg.points[1].tolist() == list(one.most_damaging())


def _game(hits, grid, window=16, stride=4):
    n = len(hits)
    return PointingGameResult(
        points=torch.zeros(n, 2),
        boxes=torch.zeros(n, 4),
        hits=torch.tensor(hits),
        chance_box=torch.full((n,), 0.25),
        chance_grid=torch.tensor(grid, dtype=torch.float64),
        correct=torch.ones(n, dtype=torch.bool),
        prob_drop=torch.zeros(n),
        window=window,
        stride=stride,
    )


def test_control_numbers_and_claim_text_by_hand():
    pg = _game([True, True, False, True], [0.2, 0.3, 0.1, 0.2])
    pg0 = _game([False, True, False, False], [0.2, 0.3, 0.1, 0.2])
    assert control_numbers(pg, pg0) == {"pointing_game_hit_rate_untrained": 0.25}
    assert pg.numbers()["pointing_game_chance_level"] == pytest.approx(0.2)
    checks = pointing_verdicts(pg, pg0)
    text = claim_text(pg, pg0, checks)
    assert text.startswith("The most damaging square hits the object in 75 % of 4 images")
    assert "against 20 % by chance and 25 % for the untrained network" in text
    assert (
        f"{checks[0].verdict} against chance and {checks[1].verdict} against the untrained" in text
    )
    with pytest.raises(PointingGameError, match="same 4 images"):
        pointing_verdicts(pg, _game([True], [0.1]))


def test_photo_numbers_and_text_by_hand():
    rs = [
        SimpleNamespace(prob_target_clean=0.9, prob_target=torch.tensor([[0.2, 0.9]])),
        SimpleNamespace(prob_target_clean=0.5, prob_target=torch.tensor([[0.5, 0.5]])),
    ]
    assert photo_numbers(rs)["example_prob_correct_drop"] == pytest.approx([0.7, 0.0])
    assert photo_text("imagenet", rs) == (
        "No object boxes on the imagenet profile, so no pointing game; on these photos the square "
        "lowers p(predicted class) by 0.00 to 0.70 at its worst position."
    )


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    return zfnet(**get_profile("tiny").model_kwargs()).eval()


def _occ_result(p_clean, p_min, feature, total_clean, total_min):
    return NS(
        prob_target_clean=p_clean,
        prob_target=torch.tensor([[p_min, p_clean]]),
        feature=feature,
        feature_total_clean=total_clean,
        feature_total=torch.tensor([total_min, total_clean]),
    )


def test_example_numbers_text_and_drops_by_hand():
    rs = [_occ_result(0.9, 0.2, 3, 10.0, 4.0), _occ_result(0.5, 0.5, 1, 0.0, 0.0)]
    n = occ.example_numbers(rs)
    assert n["example_prob_correct_unoccluded"] == [0.9, 0.5] and n["example_layer5_feature"] == [
        3,
        1,
    ]
    assert n["example_prob_correct_min"] == pytest.approx([0.2, 0.5])
    assert n["example_layer5_total_drop_fraction"] == pytest.approx([0.6, 1.0])
    assert occ.prob_drops(rs) == pytest.approx([0.7, 0.0])
    assert (
        occ.examples_text(["cat", "dog"], rs)
        .splitlines()[0]
        .startswith("cat: p(correct) 0.900 unoccluded, 0.200")
    )


def _pointing(hits, grid, correct=None):
    n = len(hits)
    return occ.PointingGameResult(
        points=torch.zeros(n, 2),
        boxes=torch.zeros(n, 4),
        hits=torch.tensor(hits),
        chance_box=torch.full((n,), 0.25),
        chance_grid=torch.tensor(grid, dtype=torch.float64),
        correct=torch.tensor(correct or [True] * n),
        prob_drop=torch.zeros(n),
        window=16,
        stride=4,
    )


def test_pointing_numbers_and_verdicts_by_hand():
    pg = _pointing([True, True, False, True], [0.2, 0.3, 0.1, 0.2], [True, False, True, True])
    n = pg.numbers()
    assert n["pointing_game_hit_rate"] == 0.75 and n["pointing_game_chance_level"] == pytest.approx(
        0.2
    )
    assert n["pointing_game_hit_rate_correctly_classified"] == pytest.approx(2 / 3)
    assert (n["pointing_game_images"], n["pointing_game_window_px"], n["pointing_game_target"]) == (
        4,
        16,
        0.8,
    )
    assert "in 75 % of them (67 % of the correctly classified)" in pg.summary()
    pg0 = _pointing([False, True, False, False], [0.2, 0.3, 0.1, 0.2])
    above_chance, above_untrained = occ.pointing_verdicts(pg, pg0)
    assert above_chance.effect == pytest.approx(
        100 * (0.75 - 0.2)
    ) and above_untrained.effect == pytest.approx(50.0)
    with pytest.raises(ValueError, match="same 4 images"):
        occ.pointing_verdicts(pg, _pointing([True, False], [0.1, 0.1]))


def test_strongest_map_projections_project_the_argmax_of_the_followed_map():
    from zfcore.deconv import layer_activations, project
    from zfcore.receptive import receptive_field

    model = _tiny_model()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    rs = [NS(feature=1), NS(feature=4)]
    pix, boxes = occ.strongest_map_projections(model, x, rs)
    acts = layer_activations(model, x, ["layer5"])["layer5"]
    req = []
    for i, r in enumerate(rs):
        fm = acts[i, r.feature]
        pos = (fm == fm.max()).nonzero()[0].tolist()  # the first maximum in row-major order
        req.append((i, r.feature, pos[0], pos[1]))
        assert boxes[i] == receptive_field(model, "layer5").box(pos[0], pos[1], 64)
    assert torch.equal(pix, project(model, x, "layer5", req).pixels)
