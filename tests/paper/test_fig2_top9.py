"""zfcore.paper.fig2_top9: Fig. 2's readings measured (class-specificity by layer, projection
energy on the object) against hand-worked examples and loops, and the control against the untrained
network against its parts."""

import numpy as np
import pytest
import torch

from zfcore import models
from zfcore.mining import LayerTopK, TopK, mine_dataset, mine_topk, pick_maps
from zfcore.paper import controls as C
from zfcore.paper.fig2_top9 import (
    Fig2Error,
    chance_majority_share,
    class_specificity,
    class_specificity_checks,
    firing_map_shares,
    layer_measures,
    majority_share,
    object_control_sentence,
    projection_on_object_control,
)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = models.zfnet(width=0.0625, image_size=64, fc_units=32, num_classes=4).eval()
    with torch.no_grad():  # a dead map: it never fires
        m.features.conv3.weight[1].zero_()
        m.features.conv3.bias[1] = -1.0
    return m


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(37, 3, 64, 64, generator=g)
    y = torch.randint(0, 4, (37,), generator=g)
    return x, y


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from zfcore.profiles import get_profile

    return get_profile("tiny", cache_dir=tmp_path_factory.mktemp("cache"))


# ---------------------------------------------------------------- class-specificity
def test_majority_share_by_hand_and_chance():
    s = majority_share(torch.tensor([[1, 1, 2, -1], [0, 1, 2, 3], [5, 5, 5, 5]]))
    assert s.tolist() == pytest.approx([2 / 3, 0.25, 1.0])
    # 2 balanced classes, k = 3: the majority holds 2 of 3 w.p. 3/4, all 3 w.p. 1/4 -> 0.75
    assert chance_majority_share(torch.arange(100) % 2, 3, trials=40000) == pytest.approx(
        0.75, abs=0.01
    )


def test_class_specificity_by_a_loop_over_firing_maps(model, data):
    x, y = data
    res = mine_topk(model, [(x, y)], k=4, progress=False)
    share, alive = class_specificity(res, "layer3")
    lt = res["layer3"]
    fires = lt.values[:, 0] > 0
    assert alive == int(fires.sum()) and not fires[1]  # the dead map is left out
    want = [
        max(lt.labels[c].tolist().count(v) for v in set(lt.labels[c].tolist())) / 4
        for c in range(lt.maps)
        if fires[c]
    ]
    assert share == pytest.approx(sum(want) / len(want))
    assert firing_map_shares(res, "layer3").tolist() == pytest.approx(want)
    with pytest.raises(Fig2Error, match="no labels"):
        class_specificity(mine_topk(model, x, k=2, progress=False), "layer2")
    with pytest.raises(Fig2Error, match="C, k"):
        majority_share(torch.zeros(4, dtype=torch.long))


def test_class_specificity_checks_effects_by_hand():
    lab = torch.tensor([[0, 0, 0], [0, 1, 2], [1, 1, 0], [2, 2, 2]])
    val = torch.tensor([[3.0, 2, 1], [2.0, 1, 1], [0.0, 0, 0], [1.0, 1, 1]])
    z = torch.zeros(4, 3, dtype=torch.long)
    first = LayerTopK(val, z, z, z, torch.tensor([[0, 1, 2], [0, 1, 2], [0, 0, 0], [0, 1, 1]]))
    last = LayerTopK(val, z, z, z, lab)
    res = TopK(3, {"layer1": first, "layer5": last}, 10)
    rises, above = class_specificity_checks(res, ["layer1", "layer5"], chance=0.4)
    # firing maps 0, 1, 3: deepest shares 1, 1/3, 1 ; first layer 1/3, 1/3, 2/3
    assert rises.effect == pytest.approx((1 + 1 / 3 + 1) / 3 - (1 / 3 + 1 / 3 + 2 / 3) / 3)
    assert above.effect == pytest.approx((1 + 1 / 3 + 1) / 3 - 0.4)
    assert rises.claim == "class_specificity_rises_with_depth"


# ---------------------------------------------------------------- energy on the object
def test_layer_measures_and_box_energy_against_controls(tmp_path):
    """The notebook's measures against the per-projection control numbers and class_specificity."""
    from zfcore.data import get_dataset
    from zfcore.mining import load_top_images
    from zfcore.profiles import get_profile

    p = get_profile("tiny", cache_dir=tmp_path)
    torch.manual_seed(0)
    m = models.zfnet(**p.model_kwargs()).eval()
    res = mine_dataset(m, p, n_images=16, k=3, layers=["layer1", "layer3"], progress=False)
    ds = get_dataset(p, "val")
    maps = {"layer1": [0, 2], "layer3": [1, 5]}
    imgs = load_top_images(ds, p, res, maps)
    meas = layer_measures(m, res, ["layer1", "layer3"], ds.labels(), maps, imgs)
    for l in ("layer1", "layer3"):
        assert (meas.specificity[l], meas.firing[l]) == class_specificity(res, l)
        shares = C.box_energy_shares(m, p, res, l, maps[l])
        assert meas.energy[l] == pytest.approx(float(np.nanmean(shares["energy"])), abs=1e-5)
        assert meas.area[l] == pytest.approx(float(np.mean(shares["area"])), abs=1e-6)
        lt = res[l]
        assert firing_map_shares(res, l).tolist() == pytest.approx(
            majority_share(lt.labels[lt.values[:, 0] > 0]).tolist()
        )
    assert meas.chance == chance_majority_share(ds.labels()[:16], 3)
    rec = meas.as_record()
    assert list(rec)[:2] == ["n_images_mined", "chance_majority_share"]
    assert (
        rec["layer3_projection_energy_in_box"] == meas.energy["layer3"]
        and rec["n_images_mined"] == 16
    )
    assert "energy in box" in meas.table() and len(meas.table().splitlines()) == 4
    on = sum(meas.energy[l] > meas.area[l] for l in ("layer1", "layer3"))
    assert meas.energy_sentence().startswith(f"Projections concentrate on the object in {on} of 2")
    checks = class_specificity_checks(res, ["layer1", "layer3"], meas.chance)
    assert checks[0].verdict in meas.specificity_sentence(checks)


# ---------------------------------------------------------------- against the untrained network
def test_projection_on_object_control_against_its_parts(tiny):
    """Per layer: the numbers are box_energy_shares of the untrained network, the effects the
    per-image excess means (trained against 0, trained minus untrained)."""
    torch.manual_seed(0)
    model = models.zfnet(**tiny.model_kwargs()).eval()
    untrained = C.untrained_model(tiny)
    top = mine_dataset(model, tiny, "val", k=9, n_images=12, progress=False)
    measured = {"layer2": pick_maps(top, "layer2", 2)}
    got = projection_on_object_control(
        model, tiny, top, measured, 2, n_images=12, untrained=untrained
    )
    top0 = mine_dataset(untrained, tiny, "val", k=9, n_images=12, progress=False)
    t = C.box_energy_shares(model, tiny, top, "layer2", measured["layer2"])
    u = C.box_energy_shares(untrained, tiny, top0, "layer2", pick_maps(top0, "layer2", 2))
    c = got["layer2"]
    assert c.numbers == {
        "box_energy_share_untrained_layer2": float(np.nanmean(u["energy"])),
        "box_area_share_untrained_layer2": float(np.mean(u["area"])),
    }
    ex_t = C.per_image_mean(t["energy"] - t["area"], t["image"])
    ex_u = C.per_image_mean(u["energy"] - u["area"], u["image"])
    assert [v.claim for v in c.checks] == [
        "projection_on_object_layer2",
        "projection_on_object_vs_untrained_layer2",
    ]
    assert c.checks[0].effect == pytest.approx(ex_t.mean())
    assert c.checks[1].effect == pytest.approx(ex_t.mean() - ex_u.mean())
    assert object_control_sentence(got) == (
        "Projections on the object, layer by layer (energy share beyond the box's area; against "
        f"the area alone / against the untrained network): layer2 {c.checks[0].verdict} / "
        f"{c.checks[1].verdict}."
    )


def test_the_control_reuses_the_projections_layer_measures_made(tiny):
    """``trained=LayerMeasures.items``: the same numbers and verdicts as projecting again."""
    from zfcore.data import get_dataset
    from zfcore.mining import load_top_images
    from zfcore.paper.notebook import labels_of

    torch.manual_seed(0)
    model = models.zfnet(**tiny.model_kwargs()).eval()
    untrained = C.untrained_model(tiny)
    top = mine_dataset(model, tiny, "val", k=9, n_images=12, progress=False)
    measured = {"layer2": pick_maps(top, "layer2", 2)}
    val = get_dataset(tiny, "val")
    images = load_top_images(val, tiny, top, measured, measured)
    m = layer_measures(model, top, ["layer2"], labels_of(val), measured, images)
    again = projection_on_object_control(
        model, tiny, top, measured, 2, n_images=12, untrained=untrained
    )
    reused = projection_on_object_control(
        model, tiny, top, measured, 2, n_images=12, untrained=untrained, trained=m.items
    )
    assert reused["layer2"].numbers == again["layer2"].numbers
    assert [(v.effect, v.low, v.high) for v in reused["layer2"].checks] == [
        (v.effect, v.low, v.high) for v in again["layer2"].checks
    ]
