"""zfcore.paper.explorer: notebook 12's numbers, verdicts and sentences (the tour's timings, the
object focus of the trained and the untrained network, paired image by image) by hand, and the
pairing of explorer sessions against object_focus alone."""

import numpy as np
import pytest
import torch

from zfcore import models
from zfcore.focus import object_focus
from zfcore.paper import controls as C
from zfcore.paper.explorer import (
    focus_numbers,
    focus_sentence,
    paired_focus_checks,
    paired_focus_numbers,
    paired_focus_sentence,
    paired_object_focus,
    tour_numbers,
    tour_sentence,
)
from zfcore.widgets import ExplorerSession, Timings


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from zfcore.profiles import get_profile

    return get_profile("tiny", cache_dir=tmp_path_factory.mktemp("cache"))


def test_tour_numbers_and_sentence_by_hand():
    tour = Timings()
    for kind, s in [("layer", 0.1), ("cell", 0.3), ("rule", 0.2), ("image", 0.4)]:
        tour.add(kind, s)
    n = tour_numbers(2.5, tour)
    assert n == {
        "explorer_first_draw_s": 2.5,
        "explorer_redraw_p95_s": pytest.approx(np.percentile([0.1, 0.3, 0.2, 0.4], 95)),
        "explorer_redraw_median_s": pytest.approx(0.25),
        "explorer_tour_actions": 4,
    }
    assert tour_sentence(n) == (
        f"first draw 2.50 s; over 4 actions: median 0.250 s, 95th percentile "
        f"{n['explorer_redraw_p95_s']:.3f} s (target: under 0.5 s)"
    )


def _focus(energy, area, units=None):
    units = list(range(len(energy))) if units is None else units
    return {
        "energy_share": np.array(energy),
        "area_share": np.array(area),
        "units": np.array(units),
    }


def test_focus_numbers_and_sentence_by_hand():
    trained = _focus([0.8, 0.3, 0.6], [0.25, 0.5, 0.25])
    untrained = _focus([0.4, 0.5], [0.25, 0.25])
    n = focus_numbers(trained, untrained)
    assert n["object_focus_images"] == 3
    assert n["object_focus_energy_share_mean"] == pytest.approx(17 / 30)
    assert n["object_focus_area_share_mean"] == pytest.approx(1 / 3)
    assert n["object_focus_images_above_area"] == pytest.approx(2 / 3)
    assert n["object_focus_untrained_energy_share_mean"] == pytest.approx(0.45)
    assert focus_sentence(n, "val") == (
        "On 3 val images the strongest layer-5 map's projection put 57% of its energy on the "
        "object, which covers 33% of the image; the untrained network put 45% there (verdicts "
        "below)."
    )


def test_paired_focus_numbers_checks_and_sentence_by_hand():
    paired = {
        "trained": _focus([0.8, 0.7, 0.9, 0.75], [0.2, 0.3, 0.25, 0.2]),
        "untrained": _focus([0.5, 0.4, 0.45, 0.5], [0.2, 0.3, 0.25, 0.2]),
    }
    n = paired_focus_numbers(paired, "layer5")
    assert n == {
        "object_focus_paired_images": 4,
        "box_energy_share_layer5": pytest.approx(0.7875),
        "box_energy_share_untrained_layer5": pytest.approx(0.4625),
        "box_area_share_layer5": pytest.approx(0.2375),
    }
    checks = paired_focus_checks(paired)
    assert [c.claim for c in checks] == ["object_focus_above_area", "object_focus_above_untrained"]
    assert checks[0].effect == pytest.approx(0.7875 - 0.2375)
    assert checks[1].effect == pytest.approx(0.7875 - 0.4625)
    assert paired_focus_sentence(paired, checks) == (
        f"Over 4 images, the trained layer-5 focus on the object {checks[0].verdict} against the "
        f"box area and {checks[1].verdict} against the untrained network."
    )
    one = {k: _focus(v["energy_share"][:1], v["area_share"][:1]) for k, v in paired.items()}
    assert paired_focus_checks(one) == []
    assert paired_focus_sentence(one, []) == (
        "fewer than 2 images measurable by both networks: no verdict"
    )
    empty = {k: _focus([], []) for k in paired}
    assert np.isnan(paired_focus_numbers(empty)["box_energy_share_layer5"])


def test_paired_object_focus_aligns_images(tiny):
    torch.manual_seed(0)
    model = models.zfnet(**tiny.model_kwargs()).eval()
    a = ExplorerSession(model, tiny, page_size=16, cols=8, cell=12, panel=64)
    b = ExplorerSession(C.untrained_model(tiny), tiny, page_size=16, cols=8, cell=12, panel=64)
    same = paired_object_focus({"a": a, "again": a}, [0, 1, 2], "layer5")
    one = object_focus(a, [0, 1, 2], "layer5")
    for key in ("energy_share", "area_share", "units"):
        assert np.allclose(same["a"][key], one[key]) and np.allclose(same["again"][key], one[key])
    got = paired_object_focus({"a": a, "b": b}, [0, 1, 2], "layer5")
    assert (
        len(got["a"]["energy_share"]) == len(got["b"]["energy_share"]) <= len(one["energy_share"])
    )
    assert set(got["a"]["units"].tolist()) <= set(one["units"].tolist())
