"""Fig. 8 and Table 1 (zfcore.paper.fig8_table1_correspondence): the consistency score on a
hand-worked example; part squares; a model whose answer is known in advance; the cached split;
photos' keypoints; the recorded numbers and the printed conclusion."""

import pytest
import torch
from torch import nn

from zfcore import models
from zfcore.paper.fig8_table1_correspondence import (
    PARTS,
    RANDOM,
    CorrespondenceError,
    CorrespondenceResult,
    apply_squares,
    consistency_score,
    correspondence_scores,
    correspondence_sentence,
    correspondence_split,
    face_scenes,
    hamming_matrix,
    keypoint_boxes,
    pairwise_correspondence,
    part_squares,
    photo_keypoints,
    random_squares,
    sign_differences,
)
from zfcore.paper.verdicts import from_interval
from zfcore.profiles import get_profile


def test_hamming_and_score_by_hand():
    s = torch.tensor([[1, 0, -1, 1], [1, 1, -1, -1], [0, 0, -1, 1]])
    # pairs: (1,2) differ at features 1 and 3 -> 2; (1,3) at 0 -> 1; (2,3) at 0, 1, 3 -> 3
    assert hamming_matrix(s).tolist() == [[0, 2, 1], [2, 0, 3], [1, 3, 0]]
    assert consistency_score(s) == 12  # the paper's sum over i != j: 2 * (2 + 1 + 3)
    assert consistency_score(s, normalize=True) == pytest.approx(12 / (3 * 2 * 4))
    assert consistency_score(torch.ones(4, 7)) == 0
    with pytest.raises(CorrespondenceError, match="at least 2"):
        consistency_score(s[:1])


def test_hamming_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    s = torch.randint(-1, 2, (6, 50), generator=g)
    loop = torch.tensor([[float((a != b).sum()) for b in s] for a in s], dtype=torch.float64)
    assert torch.equal(hamming_matrix(s), loop)


def test_part_squares_by_hand():
    kp = {
        "left_eye": torch.tensor([[20.0, 30.0], [2.0, 62.0]]),
        "right_eye": torch.tensor([[40.0, 30.0], [10.0, 10.0]]),
        "nose": torch.tensor([[30.0, 40.0], [30.0, 30.0]]),
    }
    boxes = torch.tensor([[10.0, 10.0, 50.0, 50.0], [0.0, 0.0, 20.0, 80.0]])  # sides 40, 40
    sq = part_squares(kp, boxes, (64, 64), square=0.3)
    assert sq["left_eye"][0].tolist() == [14, 24, 26, 36]  # 12 px square on the keypoint
    assert sq["left_eye"][1].tolist() == [0, 52, 12, 64]  # shifted inside the image
    assert sq["nose"][0].tolist() == [24, 34, 36, 46]
    with pytest.raises(CorrespondenceError, match="missing"):
        part_squares({"nose": kp["nose"]}, boxes, (64, 64))
    kp["nose"][1] = float("nan")
    with pytest.raises(CorrespondenceError, match="face images"):
        part_squares(kp, boxes, (64, 64))


def test_random_squares_lie_in_the_object_and_image():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 40.0]]).repeat(200, 1)
    sq = random_squares(boxes, (64, 64), 0.3, torch.Generator().manual_seed(0))
    side = round(0.3 * (40 * 20) ** 0.5)
    assert ((sq[:, 2] - sq[:, 0]) == side).all() and ((sq[:, 3] - sq[:, 1]) == side).all()
    cx, cy = (sq[:, 0] + sq[:, 2]) / 2, (sq[:, 1] + sq[:, 3]) / 2
    assert (cx >= 10 - 1).all() and (cx <= 50 + 1).all() and (cy >= 19).all() and (cy <= 41).all()
    assert cx.std() > 5  # spread over the box
    assert (sq >= 0).all() and (sq <= 64).all()


def test_apply_squares():
    imgs = torch.ones(2, 3, 8, 8)
    out = apply_squares(imgs, torch.tensor([[1, 2, 3, 5], [0, 0, 8, 1]]), fill=0.5)
    assert out[0, :, 2:5, 1:3].eq(0.5).all() and out[0].eq(0.5).sum() == 3 * 6
    assert out[1, :, 0, :].eq(0.5).all() and out[1].eq(0.5).sum() == 3 * 8
    assert imgs.eq(1).all()  # the input is left alone


class PixelFeatures(nn.Module):
    """'layer5' is the image itself, 'layer7' its per-channel means: the answer is known."""

    def __init__(self):
        super().__init__()
        self.l5 = nn.Identity()
        self.l7 = nn.Identity()
        self.layer_names = {"layer5": "l5", "layer7": "l7"}

    def forward(self, x):
        a = self.l5(x)
        return self.l7(a.mean((2, 3)))


def test_sign_differences_direct():
    m = PixelFeatures().train()
    x = torch.randn(3, 3, 16, 16)
    y = x.clone()
    y[:, :, :4, :4] = 0
    s = sign_differences(m, x, y)
    assert torch.equal(s["layer5"], torch.sign(x - y).flatten(1).to(torch.int8))
    assert torch.equal(s["layer7"], torch.sign(x.mean((2, 3)) - y.mean((2, 3))).to(torch.int8))
    assert m.training  # measured in eval mode, the caller's mode given back


def test_aligned_parts_are_perfectly_consistent():
    # Every face has its parts in the same place; the features are the pixels (all positive),
    # so occluding a part flips the same features in every image: score 0. Random squares land
    # in different places: a positive score.
    N = 12
    g = torch.Generator().manual_seed(0)
    imgs = 1 + torch.rand(N, 3, 32, 32, generator=g)
    kp = {
        "left_eye": torch.tensor([[10.0, 12.0]]).repeat(N, 1),
        "right_eye": torch.tensor([[22.0, 12.0]]).repeat(N, 1),
        "nose": torch.tensor([[16.0, 20.0]]).repeat(N, 1),
    }
    boxes = torch.tensor([[4.0, 4.0, 28.0, 28.0]]).repeat(N, 1)
    res = correspondence_scores(
        PixelFeatures().eval(), imgs, kp, boxes, n_images=4, seeds=6, square=0.25
    )
    for p in PARTS:
        assert res.mean(p, "layer5") == 0 and res.std(p, "layer5") == 0
    assert res.mean(RANDOM, "layer5") > 0.005
    assert res.gap_in_sd("nose", "layer5") > 0
    rows = res.rows()
    assert [r["occlusion"] for r in rows] == list(PARTS) + [RANDOM]
    assert set(rows[0]) == {"occlusion", "layer5_mean", "layer5_std", "layer7_mean", "layer7_std"}
    back = CorrespondenceResult.from_dict(res.to_dict())
    assert back.mean(RANDOM, "layer7") == res.mean(RANDOM, "layer7")
    assert res.settings_numbers() == {
        "n_images_per_set": 4,
        "draws": 6,
        "face_pool": N,
        "square_fraction": 0.25,
    }
    pairs = pairwise_correspondence(PixelFeatures().eval(), imgs, kp, boxes, n_random=2)
    control = pairs.control_verdicts(("layer5",))
    assert list(control) == ["layer5"] and control["layer5"].claim == "positive_control_layer5"
    assert control["layer5"].verdict == "held"  # the aligned parts agree, random squares do not
    assert pairs.control_numbers(("layer5",), name="c") == {
        "c_layer5_parts_distance": pairs.parts_mean("layer5"),
        "c_layer5_random_distance": pairs.mean(RANDOM, "layer5"),
    }


def test_bad_arguments():
    m = PixelFeatures().eval()
    imgs = torch.rand(3, 3, 16, 16)
    kp = {p: torch.full((3, 2), 8.0) for p in PARTS}
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0]]).repeat(3, 1)
    with pytest.raises(CorrespondenceError, match="n_images"):
        correspondence_scores(m, imgs, kp, boxes, n_images=5)
    with pytest.raises(CorrespondenceError, match="seeds"):
        correspondence_scores(m, imgs, kp, boxes, n_images=2, seeds=1)
    with pytest.raises(CorrespondenceError, match="square"):
        correspondence_scores(m, imgs, kp, boxes, n_images=2, square=2)


def test_face_scenes_and_cached_split(tmp_path):
    P = get_profile("tiny", cache_dir=tmp_path)
    faces = face_scenes(P, "test")
    assert len(faces) >= 5 and (faces.labels == 0).all()
    assert all(not v.isnan().any() for v in faces.keypoints.values())
    torch.manual_seed(0)
    model = models.zfnet(**P.model_kwargs()).eval()
    a = correspondence_split(model, P, "test", n_pool=8, n_images=3, seeds=3, progress=False)
    b = correspondence_split(model, P, "test", n_pool=8, n_images=3, seeds=3, progress=False)
    assert a.n_pool == 8 and a.scores.keys() == b.scores.keys()
    assert all(torch.equal(a.scores[k], b.scores[k]) for k in a.scores)


def test_photo_keypoints_follow_the_centre_crop():
    # a 400 x 200 photo: the centre square is x in [100, 300); 200 px -> 100 px input
    kp = photo_keypoints({"nose": (150, 50), "left_eye": (100, 0)}, (400, 200), 100)
    assert kp["nose"].tolist() == [25.0, 25.0] and kp["left_eye"].tolist() == [0.0, 0.0]
    boxes = keypoint_boxes(
        {"a": torch.tensor([[10.0, 10.0]]), "b": torch.tensor([[20.0, 14.0]])}, margin=0.5
    )
    assert boxes.tolist() == [[5.0, 5.0, 25.0, 19.0]]


def test_correspondence_sentence():
    def v(verdict):
        return (
            from_interval("c", 1.0, 0.5, 1.5)
            if verdict == "held"
            else from_interval("c", 0.0, -1.0, 1.0)
        )

    found = {
        (l, p): v("held" if l == "layer5" else "noise") for l in ("layer5", "layer7") for p in PARTS
    }
    text = correspondence_sentence({"layer5": v("held"), "layer7": v("held")}, found)
    assert text == (
        "The measure does detect correspondence where it must (positive control). Parts more "
        "consistent than random occlusion: layer5: left_eye held, right_eye held, nose held; "
        "layer7: left_eye within noise, right_eye within noise, nose within noise."
    )
    assert "does NOT detect" in correspondence_sentence({"layer5": v("noise")}, found)
