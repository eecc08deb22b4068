"""zfcore.boxes: one half-open box convention, checked by hand."""

import pytest
import torch

from zfcore.boxes import (
    BoxError,
    as_boxes,
    box_area_share,
    box_masks,
    energy_in_boxes,
    inside_interval,
    points_in_boxes,
)


def test_energy_in_boxes_by_hand():
    p = torch.zeros(2, 3, 4, 4)
    p[0, 0, 1, 1] = 3.0  # energy 9 inside
    p[0, 2, 3, 3] = 1.0  # energy 1 outside
    p[1, 1] = 1.0  # uniform
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 4.0]])
    assert energy_in_boxes(p, boxes).tolist() == pytest.approx([0.9, 0.5])
    assert box_area_share(boxes, 4).tolist() == pytest.approx([0.25, 0.5])
    assert torch.isnan(energy_in_boxes(torch.zeros(1, 3, 4, 4), boxes[:1]))[0]


def test_half_open_like_a_slice():
    # a point on the left/top edge is inside, on the right/bottom edge outside
    box = [[2.0, 2.0, 6.0, 6.0]] * 4
    pts = [[2.0, 2.0], [6.0, 3.0], [3.0, 6.0], [5.999, 5.999]]
    assert points_in_boxes(pts, box).tolist() == [True, False, False, True]
    assert inside_interval(torch.tensor([1.0, 2.0, 3.0]), 1.0, 3.0).tolist() == [True, True, False]
    # the whole image is every pixel once; two boxes sharing an edge share no pixel
    m = box_masks([[0, 0, 5, 4], [0, 0, 2, 4], [2, 0, 5, 4]], 4, 5)
    assert m[0].all() and not (m[1] & m[2]).any() and (m[1] | m[2]).all()
    # a pixel is inside when its centre is: x in [0.6, 1.4) holds no centre (0.5, 1.5, 2.5);
    # x in [0.4, 1.6) holds the centres of columns 0 and 1
    assert not box_masks([[0.6, 0.0, 1.4, 1.0]], 1, 3).any()
    assert box_masks([[0.4, 0.0, 1.6, 1.0]], 1, 3)[0].tolist() == [[True, True, False]]


def test_bad_boxes_name_the_shape():
    with pytest.raises(BoxError, match=r"\(N, 4\)"):
        as_boxes([1.0, 2.0, 3.0])
    with pytest.raises(BoxError, match="one box per point"):
        points_in_boxes([[0.0, 0.0]], [[0, 0, 1, 1], [0, 0, 1, 1]])
    with pytest.raises(BoxError, match="one box each"):
        energy_in_boxes(torch.ones(2, 3, 4, 4), [[0, 0, 1, 1]])
    assert as_boxes([0, 0, 1, 1]).shape == (1, 4)
