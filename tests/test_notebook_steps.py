"""The steps notebooks 07 and 08 call (occlusion, correspondence): the numbers they record and the
verdicts they decide, against hand examples, naive recomputations and the lower-level functions
called directly. (Notebooks 04, 06 and 09: tests/paper/test_fig4_evolution.py,
test_fig6_first_layer.py and test_tables2_3_ablations.py.)"""

import json
from types import SimpleNamespace as NS

import numpy as np
import pytest
import torch

from zfcore.models import zfnet
from zfcore.paper import fig7_occlusion as occ
from zfcore.paper import fig8_table1_correspondence as corr
from zfcore.profiles import get_profile


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    return zfnet(**get_profile("tiny").model_kwargs()).eval()


# ---------------------------------------------------------------------------------------------
# occlusion (notebook 07)
# ---------------------------------------------------------------------------------------------


def _occ_result(p_clean, p_min, feature, total_clean, total_min):
    return NS(
        prob_target_clean=p_clean,
        prob_target=torch.tensor([[p_min, p_clean]]),
        feature=feature,
        feature_total_clean=total_clean,
        feature_total=torch.tensor([total_min, total_clean]),
    )


def test_example_numbers_text_and_drops_by_hand():
    rs = [_occ_result(0.9, 0.2, 3, 10.0, 4.0), _occ_result(0.5, 0.5, 1, 0.0, 0.0)]
    n = occ.example_numbers(rs)
    assert n["example_prob_correct_unoccluded"] == [0.9, 0.5] and n["example_layer5_feature"] == [
        3,
        1,
    ]
    assert n["example_prob_correct_min"] == pytest.approx([0.2, 0.5])
    assert n["example_layer5_total_drop_fraction"] == pytest.approx([0.6, 1.0])
    assert occ.prob_drops(rs) == pytest.approx([0.7, 0.0])
    assert (
        occ.examples_text(["cat", "dog"], rs)
        .splitlines()[0]
        .startswith("cat: p(correct) 0.900 unoccluded, 0.200")
    )


def _pointing(hits, grid, correct=None):
    n = len(hits)
    return occ.PointingGameResult(
        points=torch.zeros(n, 2),
        boxes=torch.zeros(n, 4),
        hits=torch.tensor(hits),
        chance_box=torch.full((n,), 0.25),
        chance_grid=torch.tensor(grid, dtype=torch.float64),
        correct=torch.tensor(correct or [True] * n),
        prob_drop=torch.zeros(n),
        window=16,
        stride=4,
    )


def test_pointing_numbers_and_verdicts_by_hand():
    pg = _pointing([True, True, False, True], [0.2, 0.3, 0.1, 0.2], [True, False, True, True])
    n = pg.numbers()
    assert n["pointing_game_hit_rate"] == 0.75 and n[
        "pointing_game_chance_square_grid"
    ] == pytest.approx(0.2)
    assert n["pointing_game_hit_rate_correctly_classified"] == pytest.approx(2 / 3)
    assert (n["pointing_game_images"], n["pointing_game_window_px"], n["pointing_game_target"]) == (
        4,
        16,
        0.8,
    )
    assert "in 75 % of them (67 % of the correctly classified)" in pg.summary()
    pg0 = _pointing([False, True, False, False], [0.2, 0.3, 0.1, 0.2])
    above_chance, above_untrained = occ.pointing_verdicts(pg, pg0)
    assert above_chance.effect == pytest.approx(
        100 * (0.75 - 0.2)
    ) and above_untrained.effect == pytest.approx(50.0)
    with pytest.raises(ValueError, match="same 4 images"):
        occ.pointing_verdicts(pg, _pointing([True, False], [0.1, 0.1]))


def test_strongest_map_projections_project_the_argmax_of_the_followed_map():
    from zfcore.deconv import layer_activations, project
    from zfcore.receptive import receptive_field

    model = _tiny_model()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    rs = [NS(feature=1), NS(feature=4)]
    pix, boxes = occ.strongest_map_projections(model, x, rs)
    acts = layer_activations(model, x, ["layer5"])["layer5"]
    req = []
    for i, r in enumerate(rs):
        fm = acts[i, r.feature]
        pos = (fm == fm.max()).nonzero()[0].tolist()  # the first maximum in row-major order
        req.append((i, r.feature, pos[0], pos[1]))
        assert boxes[i] == receptive_field(model, "layer5").box(pos[0], pos[1], 64)
    assert torch.equal(pix, project(model, x, "layer5", req).pixels)


# ---------------------------------------------------------------------------------------------
# correspondence (notebook 08)
# ---------------------------------------------------------------------------------------------


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
