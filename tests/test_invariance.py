"""The transforms of Fig. 5 (zfcore.invariance) move pixels, boxes and keypoints together:
directions by hand, boxes and view flags, the exposed fill, a real face scene's keypoints."""

import math

import pytest
import torch

from zfcore.invariance import (
    IDENTITY,
    InvarianceError,
    check_transform,
    transform_boxes,
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
    with pytest.raises(InvarianceError, match="finite number"):
        transform_matrix("rotate", float("nan"), torch.zeros(1, 2))
    check_transform("scale")
    with pytest.raises(InvarianceError, match="choose one of"):
        check_transform("shear")


def test_transform_boxes_by_hand():
    box = torch.tensor([[10.0, 20.0, 30.0, 30.0]])  # 20 wide, 10 tall, centre (20, 25)
    down = transform_matrix("translate_y", 5.0, torch.zeros(1, 2))
    assert transform_boxes(down, box, (64, 64)).tolist() == [[10.0, 25.0, 30.0, 35.0]]
    turn = transform_matrix("rotate", 90.0, torch.tensor([[20.0, 25.0]]))
    # a quarter turn about the centre swaps the extents: 10 wide, 20 tall
    torch.testing.assert_close(
        transform_boxes(turn, box, (64, 64)), torch.tensor([[15.0, 15.0, 25.0, 35.0]])
    )
    big = transform_matrix("scale", 4.0, torch.tensor([[20.0, 25.0]]))
    assert transform_boxes(big, box, (64, 48)).tolist() == [[0.0, 5.0, 48.0, 45.0]]  # clipped
