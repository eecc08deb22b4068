"""Fig. 8 and Table 1 (zfcore.paper.fig8_table1_correspondence): the consistency score on a
hand-worked example; part squares; a model whose answer is known in advance; the cached split;
photos' keypoints; the recorded numbers and the printed conclusion."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from zfcore import models
from zfcore.models import zfnet
from zfcore.paper import fig8_table1_correspondence as corr
from zfcore.paper.fig8_table1_correspondence import (
    PARTS,
    RANDOM,
    CorrespondenceError,
    CorrespondenceResult,
    apply_squares,
    background_swap,
    consistency_score,
    correspondence_scores,
    correspondence_sentence,
    correspondence_split,
    face_scenes,
    hamming_matrix,
    keypoint_boxes,
    keypoint_sides,
    pair_bootstrap,
    pairwise_correspondence,
    part_squares,
    photo_keypoints,
    random_squares,
    sign_differences,
    squares_at,
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


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    return zfnet(**get_profile("tiny").model_kwargs()).eval()


def _pairwise(values):
    d = {f"{p}/{l}": torch.full((3, 3), v) * (1 - torch.eye(3)) for (p, l), v in values.items()}
    return corr.PairwiseCorrespondence(
        layers=("layer5",),
        parts=corr.PARTS + (corr.RANDOM,),
        distances=d,
        sides=torch.ones(3),
        n_random=5,
    )


def test_pairwise_numbers_and_part_verdicts_by_hand():
    pw = _pairwise(
        {
            ("left_eye", "layer5"): 0.1,
            ("right_eye", "layer5"): 0.2,
            ("nose", "layer5"): 0.3,
            ("random", "layer5"): 0.4,
        }
    )
    assert pw.parts_mean("layer5") == pytest.approx(0.2)
    assert pw.numbers(["layer5"]) == pytest.approx(
        {
            "layer5_random_pair_distance": 0.4,
            "layer5_left_eye_pair_distance": 0.1,
            "layer5_right_eye_pair_distance": 0.2,
            "layer5_nose_pair_distance": 0.3,
        }
    )
    v = pw.part_verdicts(["layer5"])
    assert list(v) == [("layer5", p) for p in corr.PARTS]
    assert v["layer5", "nose"].claim == "layer5_nose_more_consistent_than_random"
    assert v["layer5", "left_eye"].effect == pytest.approx(
        pw.verdict("c", "left_eye", "layer5").effect
    )


def _table1(means5, means7):
    scores = {}
    for l, means in (("layer5", means5), ("layer7", means7)):
        for p, m in zip(corr.PARTS + (corr.RANDOM,), means):
            scores[f"{p}/{l}"] = torch.tensor([m - 0.01, m + 0.01], dtype=torch.float64)
    return corr.CorrespondenceResult(
        layers=("layer5", "layer7"),
        parts=corr.PARTS + (corr.RANDOM,),
        scores=scores,
        n_images=5,
        n_pool=10,
        square=0.3,
    )


def test_table1_trend_by_hand():
    sd = float(torch.tensor([-0.01, 0.01], dtype=torch.float64).std())
    r = _table1((0.3, 0.3, 0.3, 0.4), (0.38, 0.38, 0.38, 0.4))
    assert r.gaps("layer5") == pytest.approx({p: 0.1 / sd for p in corr.PARTS})
    assert r.trend_numbers()["layer7_nose_below_random_in_sd"] == pytest.approx(0.02 / sd)
    assert r.trend() == "holds here"
    t1 = r.table1_numbers()
    assert len(t1) == 4 * 2 * 2 and t1["table1_random_layer7_mean"] == pytest.approx(0.4)
    assert t1["table1_nose_layer5_std"] == pytest.approx(sd)
    assert r.gaps_text().startswith("Parts below random") and f"{0.1 / sd:+.1f}" in r.gaps_text()
    assert r.trend_numbers().keys() == {
        f"layer{l}_{p}_below_random_in_sd" for l in (5, 7) for p in corr.PARTS
    }
    assert _table1((0.3, 0.3, 0.3, 0.4), (0.2, 0.2, 0.2, 0.4)).trend().startswith("holds in part")
    assert _table1((0.3, 0.5, 0.3, 0.4), (0.2, 0.2, 0.2, 0.4)).trend().startswith("does not hold")


def test_face_images_on_scenes_and_on_photos(tmp_path):
    from PIL import Image

    from zfcore.data import normalize

    P = get_profile("tiny")
    faces = corr.face_images(P, pool=4)
    sb = corr.face_scenes(P, "test", 4)
    assert torch.equal(faces.images01, sb.images) and torch.equal(faces.x, normalize(sb.images, P))
    assert torch.equal(faces.boxes, sb.boxes) and faces.keypoints.keys() == sb.keypoints.keys()
    Q = get_profile("imagenet")
    with pytest.raises(ValueError, match="no procedural faces"):
        corr.check_photo_inputs(Q, None, None)
    notes = {}
    for i in range(3):
        Image.fromarray(np.full((80, 100, 3), 40 * i, np.uint8)).save(tmp_path / f"d{i}.png")
        notes[f"d{i}.png"] = {"left_eye": [40, 30], "right_eye": [60, 30], "nose": [50, 50]}
    (tmp_path / "kp.json").write_text(json.dumps({k: v for k, v in notes.items() if k != "d2.png"}))
    with pytest.raises(ValueError, match="only 2 photos"):
        corr.face_images(Q, n_images=3, photos=tmp_path, keypoints_file=tmp_path / "kp.json")
    got = corr.face_images(Q, n_images=2, photos=tmp_path, keypoints_file=tmp_path / "kp.json")
    want = corr.photo_keypoints(notes["d0.png"], (100, 80), Q.image_size)
    assert len(got.x) == 2 and torch.allclose(got.keypoints["nose"][0], want["nose"])
    assert torch.equal(got.boxes, corr.keypoint_boxes(got.keypoints))


def test_positive_control_is_the_swapped_pool_measured_pairwise():
    P = get_profile("tiny")
    faces = corr.face_images(P, pool=4)
    model = _tiny_model()
    got = corr.positive_control(model, faces.x, faces.keypoints, faces.boxes, ("layer5",))
    swapped = corr.background_swap(faces.x[0], faces.boxes[0], faces.x[1:])
    kp = {p: faces.keypoints[p][:1].repeat(3, 1) for p in corr.PARTS}
    want = corr.pairwise_correspondence(
        model,
        swapped,
        kp,
        faces.boxes[:1].repeat(3, 1),
        layers=("layer5",),
        fraction=corr.KEYPOINT_FRACTION,
    )
    for k, v in want.distances.items():
        assert torch.equal(got.distances[k], v)


def test_keypoint_sides_and_squares_by_hand():
    kp = {
        "left_eye": torch.tensor([[10.0, 10.0]]),
        "right_eye": torch.tensor([[30.0, 10.0]]),
        "nose": torch.tensor([[20.0, 20.0]]),
    }
    side = keypoint_sides(kp, fraction=0.9)  # closest pair: eye to nose, offset (10, 10)
    assert side.tolist() == pytest.approx([9.0])
    sq = squares_at(kp, side, (64, 64))
    assert sq["nose"].tolist() == [[16, 16, 25, 25]]  # 9 px around (20, 20)
    a, b = sq["left_eye"][0].tolist(), sq["nose"][0].tolist()
    assert a[2] <= b[0] or a[3] <= b[1]  # the squares of two parts do not overlap
    with pytest.raises(CorrespondenceError, match="lack"):
        keypoint_sides({**kp, "nose": torch.tensor([[float("nan"), 1.0]])})


def test_background_swap_keeps_the_face_and_changes_the_rest():
    base = torch.zeros(3, 16, 16)
    bg = torch.rand(4, 3, 16, 16) + 1
    out = background_swap(base, [4, 2, 10, 8], bg)
    assert out[:, :, 2:8, 4:10].eq(0).all()
    mask = torch.ones(16, 16, dtype=torch.bool)
    mask[2:8, 4:10] = False
    assert torch.equal(out[:, :, mask], bg[:, :, mask])


def test_pair_bootstrap_effect_is_the_mean_over_distinct_pairs():
    g = torch.Generator().manual_seed(0)
    r = torch.rand(6, 6, generator=g, dtype=torch.float64)
    p = torch.rand(6, 6, generator=g, dtype=torch.float64)
    r, p = (r + r.T) / 2, (p + p.T) / 2
    v = pair_bootstrap("demo", r, p, n_boot=200)
    loop = np.mean([float(r[i, j] - p[i, j]) for i in range(6) for j in range(6) if i != j])
    assert v.effect == pytest.approx(loop)
    assert pair_bootstrap("demo", r + 1, r, n_boot=50).verdict == "held"


def test_pairwise_correspondence_agrees_with_the_paper_score_and_detects_a_positive_control():
    N, g = 8, torch.Generator().manual_seed(0)
    base = 1 + torch.rand(3, 32, 32, generator=g)
    images = background_swap(base, [4, 4, 28, 28], 1 + torch.rand(N, 3, 32, 32, generator=g))
    kp = {
        "left_eye": torch.tensor([[10.0, 12.0]]).repeat(N, 1),
        "right_eye": torch.tensor([[22.0, 12.0]]).repeat(N, 1),
        "nose": torch.tensor([[16.0, 20.0]]).repeat(N, 1),
    }
    boxes = torch.tensor([[4.0, 4.0, 28.0, 28.0]]).repeat(N, 1)
    res = pairwise_correspondence(Pixels().eval(), images, kp, boxes, n_random=3)
    # the same face at the same place: every part's sign changes agree exactly (score 0)
    for p in PARTS:
        assert res.mean(p, "layer5") == 0
    assert res.mean(RANDOM, "layer5") > 0.01
    assert res.verdict("positive_control", "parts", "layer5", n_boot=200).verdict == "held"
    # mean over pairs = the paper's normalised score of the whole pool, for one occlusion
    sq = squares_at(kp, res.sides, (32, 32))
    from zfcore.paper.fig8_table1_correspondence import apply_squares

    s = sign_differences(Pixels().eval(), images, apply_squares(images, sq["nose"] + 0, 0.0))
    assert res.mean("nose", "layer7") == pytest.approx(
        consistency_score(s["layer7"], normalize=True)
    )
    assert torch.allclose(
        res.distances["nose/layer7"], hamming_matrix(s["layer7"]) / s["layer7"].shape[1]
    )


class Pixels(nn.Module):
    """'layer5' is the image itself and 'layer7' its channel means: the answer is known."""

    def __init__(self):
        super().__init__()
        self.l5, self.l7 = nn.Identity(), nn.Identity()
        self.layer_names = {"layer5": "l5", "layer7": "l7"}

    def forward(self, x):
        return self.l7(self.l5(x).mean((2, 3)))
