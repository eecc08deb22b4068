"""Fig. 5's transforms move pixels, boxes and keypoints together; the curves match a direct
computation; the summaries on hand-made curves."""

import math

import pytest
import torch

from zfcore import models
from zfcore.invariance import (
    IDENTITY,
    InvarianceCurves,
    InvarianceError,
    choose_examples,
    default_amounts,
    invariance_curves,
    layer_growth,
    mean_true_probability,
    transform_matrix,
    transform_points,
    transform_scenes,
)

S = 64


def blob(x, y, size=S, sigma=1.2):
    """A (1, 3, S, S) image with a small Gaussian spot centred at continuous (x, y)."""
    c = torch.arange(size, dtype=torch.float64) + 0.5
    g = torch.exp(-((c[None, :] - x) ** 2 + (c[:, None] - y) ** 2) / (2 * sigma**2))
    return g.float().expand(1, 3, size, size).clone()


def centroid(img):
    a = img[0, 0].double()
    a = (a - 0.05 * a.max()).clamp(min=0)  # ignore the flat fill of exposed pixels
    c = torch.arange(a.shape[0], dtype=torch.float64) + 0.5
    return float((a.sum(0) * c).sum() / a.sum()), float((a.sum(1) * c).sum() / a.sum())


CASES = [
    ("translate_y", 9.0),
    ("translate_y", -13.0),
    ("scale", 1.4),
    ("scale", 0.75),
    ("rotate", 30.0),
    ("rotate", 90.0),
    ("rotate", -135.0),
]


@pytest.mark.parametrize("kind,amount", CASES)
def test_keypoints_follow_the_pixels(kind, amount):
    box = torch.tensor([[20.0, 18.0, 44.0, 40.0]])  # centre (32, 29)
    for q in [(26.0, 22.0), (38.5, 35.0)]:
        img = blob(*q)
        t = transform_scenes(img, box, {"nose": torch.tensor([q])}, kind=kind, amount=amount)
        got = centroid(t.images)
        want = t.keypoints["nose"][0].tolist()
        assert math.dist(got, want) < 0.35, (kind, amount, q, got, want)


def test_directions_by_hand():
    c = torch.tensor([[10.0, 10.0]])
    p = torch.tensor([[12.0, 10.0]])  # 2 px right of the centre
    up = transform_points(transform_matrix("rotate", 90, c), p)
    assert torch.allclose(up, torch.tensor([[10.0, 8.0]]), atol=1e-6)  # CCW on screen: up
    assert torch.allclose(
        transform_points(transform_matrix("scale", 2, c), p), torch.tensor([[14.0, 10.0]])
    )
    assert torch.allclose(
        transform_points(transform_matrix("translate_y", 5, c), p), torch.tensor([[12.0, 15.0]])
    )
    nan = torch.tensor([[float("nan"), float("nan")]])
    assert transform_points(transform_matrix("rotate", 30, c), nan).isnan().all()


@pytest.mark.parametrize("kind,amount", CASES)
def test_boxes_follow_the_object(kind, amount):
    img = torch.zeros(1, 3, S, S)
    box = torch.tensor([[22.0, 20.0, 40.0, 34.0]])
    img[..., 20:34, 22:40] = 1.0
    t = transform_scenes(img, box, kind=kind, amount=amount)
    on = t.images[0, 0] > 0.5 * t.images[0, 0].max()
    ys, xs = on.nonzero(as_tuple=True)
    got = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float64)
    assert (got - t.boxes[0].double()).abs().max() <= 1.5, (kind, amount, got, t.boxes)
    assert bool(t.in_view[0])


def test_box_leaving_the_view_is_flagged_and_clipped():
    box = torch.tensor([[10.0, 4.0, 30.0, 20.0]])
    t = transform_scenes(torch.rand(1, 3, S, S), box, kind="translate_y", amount=-8)
    assert not bool(t.in_view[0])
    assert t.boxes[0].tolist() == [10.0, 0.0, 30.0, 12.0]
    t = transform_scenes(torch.rand(1, 3, S, S), box, kind="translate_y", amount=8)
    assert bool(t.in_view[0])


def test_rotation_keeps_a_wide_object_in_view_until_its_ellipse_leaves():
    box = torch.tensor([[0.0, 24.0, 64.0, 40.0]])  # 64 x 16, centred at (32, 32)
    img = torch.rand(1, 3, S, S)
    t = transform_scenes(img, box, kind="rotate", amount=10)
    assert bool(t.in_view[0])  # the box's corners leave, the ellipse does not
    assert t.boxes[0, 0] == 0 and t.boxes[0, 2] == S  # the moved box is clipped to the image
    assert bool(transform_scenes(img, box, kind="rotate", amount=90).in_view[0])
    corner = torch.tensor([[0.0, 0.0, 40.0, 16.0]])  # near the top edge
    assert bool(transform_scenes(img, corner, kind="rotate", amount=0).in_view[0])
    assert not bool(transform_scenes(img, corner, kind="rotate", amount=90).in_view[0])


def test_identity_and_exposed_fill():
    img = torch.rand(2, 3, S, S)
    box = torch.tensor([[10.0, 10.0, 30.0, 30.0], [0.0, 0.0, 64.0, 64.0]])
    for kind in ("translate_y", "scale", "rotate"):
        t = transform_scenes(img, box, kind=kind, amount=IDENTITY[kind])
        assert torch.allclose(t.images, img, atol=1e-5)
        assert torch.allclose(t.boxes, box)
    t = transform_scenes(img, box, kind="translate_y", amount=20)
    mean = img.mean((2, 3))
    assert torch.allclose(t.images[:, :, :19].mean((2, 3)), mean, atol=1e-5)  # exposed rows
    assert torch.allclose(t.images[:, :, 21:], img[:, :, 1:-20], atol=1e-5)  # shifted rows


def test_keypoints_of_a_real_face_scene():
    data = pytest.importorskip("zfcore.data")
    ds = data.get_dataset("tiny", "test")
    faces = [i for i in range(40) if int(ds.labels()[i]) == ds.classes.index("face")][:2]
    sb = ds.scenes(faces)
    for kind, amount in [("rotate", 40.0), ("scale", 1.3), ("translate_y", 5.0)]:
        t = transform_scenes(sb.images, sb.boxes, sb.keypoints, kind=kind, amount=amount)
        A = transform_matrix(
            kind,
            amount,
            torch.stack(
                [(sb.boxes[:, 0] + sb.boxes[:, 2]) / 2, (sb.boxes[:, 1] + sb.boxes[:, 3]) / 2], 1
            ),
        )
        for name, kp in sb.keypoints.items():
            assert torch.allclose(
                t.keypoints[name].double(), transform_points(A, kp).double(), atol=1e-4
            )
            # the eye/nose pixel colour moves with the keypoint
            for n in range(len(faces)):
                x0, y0 = kp[n].tolist()
                x1, y1 = t.keypoints[name][n].tolist()
                before = sb.images[n, :, int(y0), int(x0)]
                after = t.images[n, :, int(y1), int(x1)]
                assert (before - after).abs().max() < 0.2, (kind, name)


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


def test_bad_arguments():
    img = torch.rand(1, 3, S, S)
    box = torch.tensor([[1.0, 1.0, 5.0, 5.0]])
    with pytest.raises(InvarianceError, match="unknown transform"):
        transform_scenes(img, box, kind="shear", amount=1)
    with pytest.raises(InvarianceError, match="positive"):
        transform_scenes(img, box, kind="scale", amount=0)
    with pytest.raises(InvarianceError, match="one box per image"):
        transform_scenes(img, box.repeat(2, 1), kind="rotate", amount=3)
    with pytest.raises(InvarianceError, match=r"\(N, C, H, W\)"):
        transform_scenes(img[0], box, kind="rotate", amount=3)


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
    from zfcore.invariance import invariance_split
    from zfcore.profiles import get_profile

    P = get_profile("tiny", cache_dir=tmp_path)
    torch.manual_seed(0)
    model = models.zfnet(**P.model_kwargs()).eval()
    a = invariance_split(model, P, "test", n=4, kinds=("rotate",), progress=False)
    b = invariance_split(model, P, "test", n=4, kinds=("rotate",), progress=False)
    assert set(a) == {"rotate"} and a["rotate"].prob_true.shape == (4, 25)
    assert torch.equal(a["rotate"].distances["layer7"], b["rotate"].distances["layer7"])
    assert a["rotate"].labels.tolist() == [0, 1, 2, 3]


# ---------------------------------------------------------------- the measured readings and verdicts
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
    from zfcore.invariance import TRANSFORMS, class_mask, summarize

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


def test_invariance_checks_effects_by_hand():
    import numpy as np

    from zfcore.invariance import (
        TRANSFORMS,
        class_mask,
        invariance_checks,
        per_image_growth,
        per_image_true_probability,
    )

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
    from zfcore.invariance import summarize

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
