"""zfcore.focus: projection energy on the object box (one convention, :func:`box_shares`) for one
projection, for mined top-k entries and through an explorer session, against pixel loops."""

import numpy as np
import pytest
import torch

from zfcore import models
from zfcore.focus import box_energy_items, box_shares, focus_on_box, object_focus
from zfcore.mining import TopImages, mine_topk, project_top
from zfcore.profiles import get_profile
from zfcore.widgets import ExplorerSession


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_focus_on_box_against_a_pixel_loop():
    """zfcore.focus's shares, against a loop over the pixels of whole-pixel boxes."""
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(6, 3, 20, 24, generator=g)
    boxes = [
        (0, 0, 24, 20),
        (3, 4, 10, 9),
        (23, 19, 24, 20),
        (5, 0, 6, 20),
        (2, 2, 22, 18),
        (7, 11, 19, 12),
    ]
    for r, (x0, y0, x1, y1) in enumerate(boxes):
        e = pixels[r].double().pow(2).sum(0)
        inside = sum(
            float(e[y, x]) for y in range(20) for x in range(24) if x0 <= x < x1 and y0 <= y < y1
        )
        energy, area = focus_on_box(pixels[r], (x0, y0, x1, y1))
        assert energy == pytest.approx(inside / float(e.sum()), abs=1e-5)
        assert area == pytest.approx((x1 - x0) * (y1 - y0) / (20 * 24), abs=1e-7)
    assert focus_on_box(pixels[0], boxes[0])[0] == pytest.approx(1.0)
    assert focus_on_box(torch.zeros(3, 20, 24), boxes[1]) is None  # no energy to share


def test_box_shares_is_focus_on_box_row_by_row():
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(4, 3, 16, 12, generator=g)
    pixels[2] = 0  # no energy to share
    boxes = torch.tensor([[0, 0, 12, 16], [2.5, 3, 7, 9.5], [1, 1, 5, 5], [11, 15, 12, 16]])
    energy, area = box_shares(pixels, boxes)
    assert energy.shape == area.shape == (4,) and torch.isnan(energy[2])
    for r in (0, 1, 3):
        assert focus_on_box(pixels[r], boxes[r].tolist()) == pytest.approx(
            (float(energy[r]), float(area[r]))
        )
    assert float(area[0]) == 1.0 and float(energy[0]) == pytest.approx(1.0)


def test_box_energy_items_by_a_loop_over_projections():
    """Each mined entry projected alone and measured in its image's box by hand."""
    torch.manual_seed(0)
    model = models.zfnet(width=0.0625, image_size=64, fc_units=32, num_classes=4).eval()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(12, 3, 64, 64, generator=g)
    boxes = torch.tensor([[8.0 + i, 4.0, 40.0 + i, 50.0] for i in range(12)])
    res = mine_topk(model, x, k=3, layers=["layer2"], progress=False)
    images = TopImages(list(range(12)), x, x.sigmoid(), boxes)
    got = box_energy_items(model, res, "layer2", [1, 3], images)
    tp = project_top(model, res, "layer2", images.load, channels=[1, 3])
    assert torch.equal(got["image"], tp.images) and len(tp.images) == 6
    for r, i in enumerate(tp.images.tolist()):
        e = tp.pixels[r].double().pow(2).sum(0)
        x0, y0, x1, y1 = boxes[i].tolist()
        inside = sum(
            float(e[yy, xx])
            for yy in range(64)
            for xx in range(64)
            if x0 <= xx + 0.5 < x1 and y0 <= yy + 0.5 < y1
        )
        if float(e.sum()) == 0:  # an all-zero projection has no energy to share
            assert torch.isnan(got["energy"][r])
        else:
            assert float(got["energy"][r]) == pytest.approx(inside / float(e.sum()), abs=1e-5)
        assert float(got["area"][r]) == pytest.approx((x1 - x0) * (y1 - y0) / 64**2)


def test_object_focus_restores_the_state(tmp_path):
    profile = get_profile("tiny", cache_dir=tmp_path)
    torch.manual_seed(0)
    session = ExplorerSession(
        models.zfnet(**profile.model_kwargs()).eval(),
        profile,
        page_size=16,
        cols=8,
        cell=12,
        panel=64,
    )
    session.select_layer("layer2")
    session.select_unit(4)
    before = session.state
    f = object_focus(session, [0, 1, 2], "layer5")
    assert session.state == before
    assert len(f["energy_share"]) == len(f["area_share"]) <= 3
    assert np.all((0 <= f["energy_share"]) & (f["energy_share"] <= 1))
    # image 0 by hand: the strongest layer-5 map, its projection measured in the box
    one = object_focus(session, [0], "layer5")
    session.select_dataset_image(0)
    session.select_layer("layer5")
    session.select_unit(session.strongest_unit())
    want = session.projection_on_object()
    if want is None:
        assert len(one["energy_share"]) == 0
    else:
        assert (one["energy_share"][0], one["area_share"][0]) == pytest.approx(want)
        assert one["units"][0] == session.state.unit
