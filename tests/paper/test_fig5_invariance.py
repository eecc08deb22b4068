"""Fig. 5 (zfcore.paper.fig5_invariance): the curves match a direct computation; the
summaries on hand-made curves; the sweeps and the examples; the split's cache; the readings and
verdicts against the summaries and by hand."""

import math

import numpy as np
import pytest
import torch

from zfcore import models
from zfcore.invariance import IDENTITY, TRANSFORMS, InvarianceError, transform_scenes
from zfcore.paper.fig5_invariance import (
    InvarianceCurves,
    InvarianceStudyError,
    choose_examples,
    class_mask,
    default_amounts,
    invariance_checks,
    invariance_curves,
    invariance_split,
    layer_growth,
    mean_true_probability,
    per_image_growth,
    per_image_true_probability,
    summarize,
)
from zfcore.profiles import get_profile

S = 64


def test_curves_match_direct_computation():
    torch.manual_seed(0)
    model = models.zfnet(width=0.125, image_size=S, fc_units=64, num_classes=10).eval()
    imgs = torch.randn(3, 3, S, S)
    boxes = torch.tensor([[16.0, 16.0, 48.0, 48.0]] * 3)
    labels = torch.tensor([0, 3, 7])
    cur = invariance_curves(
        model, imgs, labels, boxes, kind="rotate", amounts=[0, 45, 90], batch_size=2
    )
    ident = cur.identity_step.tolist()
    assert ident == [True, False, False]
    assert torch.allclose(cur.distances["layer1"][:, 0], torch.zeros(3), atol=1e-4)
    seen = {}
    h = models.get_layer(model, "layer7").register_forward_hook(
        lambda m, i, o: seen.__setitem__("a", o)
    )
    with torch.no_grad():
        ref = model(imgs)
        f0 = seen["a"].clone()
        t = transform_scenes(imgs, boxes, kind="rotate", amount=45)
        out = model(t.images)
    h.remove()
    assert torch.allclose(cur.distances["layer7"][:, 1], (seen["a"] - f0).norm(dim=1), atol=1e-4)
    p = torch.softmax(out, 1)[torch.arange(3), labels]
    assert torch.allclose(cur.prob_true[:, 1], p, atol=1e-5)
    assert torch.allclose(
        cur.prob_true[:, 0], torch.softmax(ref, 1)[torch.arange(3), labels], atol=1e-5
    )
    back = InvarianceCurves.from_dict(cur.to_dict())
    assert torch.equal(back.distances["layer1"], cur.distances["layer1"])


def test_summaries_by_hand():
    cur = InvarianceCurves(
        kind="translate_y",
        amounts=torch.tensor([-2.0, 0.0, 2.0, 4.0]),
        labels=torch.tensor([0, 1]),
        distances={
            "layer1": torch.tensor([[4.0, 0.0, 4.0, 2.0], [1.0, 0.0, 2.0, 2.0]]),
            "layer7": torch.tensor([[1.0, 0.0, 2.0, 4.0], [1.0, 0.0, 1.0, 2.0]]),
        },
        prob_true=torch.tensor([[0.5, 0.9, 0.7, 0.1], [0.2, 0.8, 0.4, 0.6]]),
        top_class=torch.zeros(2, 4, dtype=torch.long),
        in_view=torch.tensor([[True, True, True, False], [True, True, True, True]]),
    )
    # image 0: layer1 normalised by 4 over in-view steps -> [1, 1]; image 1 by 2 -> [.5, 1, 1]
    assert layer_growth(cur, "layer1") == pytest.approx((1 + 1 + 0.5 + 1 + 1) / 5)
    # layer7: image 0 [0.5, 1] (step 4 out of view); image 1 [.5, .5, 1]
    assert layer_growth(cur, "layer7") == pytest.approx((0.5 + 1 + 0.5 + 0.5 + 1) / 5)
    assert mean_true_probability(cur) == pytest.approx((0.5 + 0.7 + 0.2 + 0.4 + 0.6) / 5)
    assert mean_true_probability(cur, torch.tensor([False, True])) == pytest.approx(0.4)


def test_amounts_and_examples():
    assert default_amounts("rotate", 64)[[0, -1]].tolist() == [0, 360]
    t = default_amounts("translate_y", 112)
    assert t[0] == -28 and t[-1] == 28 and (t == 0).any()
    assert (default_amounts("scale", 64) == 1).any()
    labels = torch.tensor([0, 0, 1, 2, 1])
    boxes = torch.tensor(
        [[0, 0, 10, 60], [0, 20, 10, 40], [0, 5, 10, 50], [0, 30, 10, 34], [0, 10, 10, 30]],
        dtype=torch.float64,
    )
    assert choose_examples(labels, boxes, 64, n=3, classes=[2]).tolist() == [3, 1, 4]


def test_invariance_split_is_cached(tmp_path):
    P = get_profile("tiny", cache_dir=tmp_path)
    torch.manual_seed(0)
    model = models.zfnet(**P.model_kwargs()).eval()
    a = invariance_split(model, P, "test", n=4, kinds=("rotate",), progress=False)
    b = invariance_split(model, P, "test", n=4, kinds=("rotate",), progress=False)
    assert set(a) == {"rotate"} and a["rotate"].prob_true.shape == (4, 25)
    assert torch.equal(a["rotate"].distances["layer7"], b["rotate"].distances["layer7"])
    assert a["rotate"].labels.tolist() == [0, 1, 2, 3]


# --- the measured readings and verdicts ----------------------------------------------------------


def _two_class_curves(kind, shift=0.0):
    """Eight images (classes 0, 1 alternating), three steps (identity first), all in view."""
    g = torch.Generator().manual_seed(len(kind) + int(10 * shift))
    d1 = torch.rand(8, 3, generator=g) + 0.5
    d7 = torch.rand(8, 3, generator=g) + shift
    d1[:, 0] = d7[:, 0] = 0.0
    amounts = torch.tensor(
        [IDENTITY[kind], IDENTITY[kind] + 1.0, IDENTITY[kind] + 2.0], dtype=torch.float64
    )
    return InvarianceCurves(
        kind=kind,
        amounts=amounts,
        labels=torch.arange(8) % 2,
        distances={"layer1": d1, "layer7": d7},
        prob_true=torch.rand(8, 3, generator=g),
        top_class=torch.zeros(8, 3, dtype=torch.long),
        in_view=torch.ones(8, 3, dtype=torch.bool),
    )


def test_summary_rows_and_record_against_the_summaries():
    curves = {k: _two_class_curves(k) for k in TRANSFORMS}
    sym = class_mask(curves["rotate"].labels, [1])
    assert sym.tolist() == [False, True] * 4
    assert not class_mask(torch.tensor([0, 2]), []).any()
    s = summarize(curves, sym)
    assert s.n_images == 8 and [r["transform"] for r in s.rows] == list(TRANSFORMS)
    for r in s.rows:
        c = curves[r["transform"]]
        assert r["growth_layer1"] == layer_growth(c, "layer1")
        assert r["growth_layer7"] == layer_growth(c, "layer7")
        assert r["p_true_asymmetric"] == mean_true_probability(c, ~sym)
        assert r["p_true_symmetric"] == mean_true_probability(c, sym)
    rec = s.as_record()
    assert len(rec) == 12 and rec["scale_growth_layer7"] == s.by["scale"]["growth_layer7"]
    assert s.layer7_slower() == [
        r["transform"] for r in s.rows if r["growth_layer7"] < r["growth_layer1"]
    ]
    assert (
        s.symmetric_gap()
        == s.by["rotate"]["p_true_symmetric"] - s.by["rotate"]["p_true_asymmetric"]
    )
    none = summarize(curves, torch.zeros(8, dtype=torch.bool))
    assert all(math.isnan(r["p_true_symmetric"]) for r in none.rows)
    assert len(s.table().splitlines()) == 5
    assert s.readings() == {
        "layer7_grows_slower_for": s.layer7_slower(),
        "measured_images": 8,
        "rotation_symmetric_minus_asymmetric_p_true": s.symmetric_gap(),
    }


def test_invariance_checks_effects_by_hand():
    curves = {k: _two_class_curves(k) for k in TRANSFORMS}
    control = {k: _two_class_curves(k, shift=0.3) for k in TRANSFORMS}
    sym = class_mask(curves["rotate"].labels, [1])
    c = invariance_checks(curves, sym, control)
    for k in TRANSFORMS:
        gap = (
            per_image_growth(curves[k], "layer1") - per_image_growth(curves[k], "layer7")
        ).numpy()
        gap0 = (
            per_image_growth(control[k], "layer1") - per_image_growth(control[k], "layer7")
        ).numpy()
        assert c.growth[k][0].effect == pytest.approx(gap.mean())
        assert c.growth[k][1].effect == pytest.approx((gap - gap0).mean())
        assert c.numbers[f"{k}_growth_gap_layer1_minus_layer7_untrained"] == pytest.approx(
            gap0.mean()
        )
        assert c.numbers[f"{k}_mean_p_true_asymmetric_classes_untrained"] == mean_true_probability(
            control[k], ~sym
        )
    p = {k: per_image_true_probability(curves[k]).numpy() for k in TRANSFORMS}
    a = ~sym.numpy()
    assert c.output[0].effect == pytest.approx((p["translate_y"][a] - p["rotate"][a]).mean())
    assert c.output[1].effect == pytest.approx((p["scale"][a] - p["rotate"][a]).mean())
    assert c.output[2].effect == pytest.approx(p["rotate"][~a].mean() - p["rotate"][a].mean())
    assert len(c.all) == 3 * 2 + 3 and c.all[0] is c.growth["translate_y"][0]
    assert "beyond the untrained network" in c.sentences(summarize(curves, sym))
    alone = invariance_checks(
        curves, torch.zeros(8, dtype=torch.bool)
    )  # no control, no symmetric class
    assert (
        alone.numbers == {}
        and all(len(v) == 1 for v in alone.growth.values())
        and len(alone.output) == 2
    )
    assert np.isfinite(alone.output[0].effect)


def test_curves_bad_arguments():
    model = models.zfnet(width=0.125, image_size=S, fc_units=64, num_classes=10).eval()
    imgs, boxes = torch.rand(2, 3, S, S), torch.tensor([[16.0, 16.0, 48.0, 48.0]] * 2)
    with pytest.raises(InvarianceStudyError, match="one label and one box per image"):
        invariance_curves(model, imgs, [0], boxes, kind="rotate")
    with pytest.raises(InvarianceStudyError, match="amounts is empty"):
        invariance_curves(model, imgs, [0, 1], boxes, kind="rotate", amounts=[])
    with pytest.raises(InvarianceError, match="unknown transform"):
        invariance_curves(model, imgs, [0, 1], boxes, kind="shear")
    with pytest.raises(InvarianceError, match="unknown transform"):
        default_amounts("shear", S)
    assert issubclass(InvarianceStudyError, InvarianceError)


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
