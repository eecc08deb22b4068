"""zfcore.paper.fig7_occlusion: the pointing game (Fig. 7's claim, measured) on hand-worked
cases, its result's round trip, the fast preset's game, the cached split study, and what
notebook 07 records and prints beside the verdicts."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from zfcore import models
from zfcore.occlusion import OcclusionError, occlude
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
    assert control_numbers(pg, pg0) == {
        "pointing_game_chance_level": pytest.approx(0.2),
        "pointing_game_hit_rate_untrained": 0.25,
    }
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
