"""zfcore.paper.controls: the untrained network, per-image means, the two-sample bootstrap and
the box-energy shares of any network, against hand-worked examples and loops."""

import math

import numpy as np
import pytest
import torch

from zfcore import models
from zfcore.paper import controls as C
from zfcore.paper.verdicts import VerdictError


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from zfcore.profiles import get_profile

    return get_profile("tiny", cache_dir=tmp_path_factory.mktemp("cache"))


def test_two_sample_bootstrap_effect_and_verdicts():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.1, 50), rng.normal(0.0, 0.1, 80)
    v = C.two_sample_bootstrap("demo", a, b)
    assert v.effect == pytest.approx(a.mean() - b.mean())
    assert v.verdict == "held" and v.low < v.effect < v.high
    assert "80" in v.source and "seed variance not included" in v.source
    assert C.two_sample_bootstrap("demo", b, a).verdict == "did not hold"
    same = rng.normal(0, 1, 40)
    assert C.two_sample_bootstrap("demo", same, same).verdict == "within noise"
    # the interval's width matches the normal approximation of two independent means
    se = math.sqrt(a.var(ddof=1) / 50 + b.var(ddof=1) / 80)
    assert (v.high - v.low) == pytest.approx(2 * 1.96 * se, rel=0.15)
    with pytest.raises(VerdictError):
        C.two_sample_bootstrap("demo", [1.0], b)


def test_per_image_mean_matches_a_loop_and_skips_nan():
    values = [1.0, 3.0, float("nan"), 5.0, float("nan"), 2.0]
    images = [7, 7, 7, 2, 9, 2]
    assert C.per_image_mean(values, images).tolist() == [
        (5 + 2) / 2,
        (1 + 3) / 2,
    ]  # images 2, 7; 9 dropped
    a, b = C.finite_pairs([1, float("nan"), 3], [4, 5, float("inf")])
    assert a.tolist() == [1.0] and b.tolist() == [4.0]
    with pytest.raises(C.ControlError):
        C.per_image_mean([1.0], [1, 2])


def test_untrained_model_is_the_training_start():
    from zfcore.train import build_model, make_spec

    a = C.untrained_model("tiny")
    b = build_model(make_spec("tiny", "zfnet"))
    assert not a.training
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_box_energy_shares_match_a_loop_over_projections(tiny):
    from zfcore.data import get_dataset, normalize
    from zfcore.deconv import project
    from zfcore.mining import mine_dataset

    torch.manual_seed(0)
    model = models.zfnet(**tiny.model_kwargs()).eval()
    top = mine_dataset(model, tiny, "val", k=3, layers=["layer3"], n_images=12, progress=False)
    got = C.box_energy_shares(model, tiny, top, "layer3", [0, 2])
    ds, lt = get_dataset(tiny, "val"), top["layer3"]
    want_e, want_a, want_i = [], [], []
    for c in (0, 2):
        for r in range(3):
            i = int(lt.images[c, r])
            if i < 0:
                continue
            sb = ds.scenes([i])
            px = project(
                model,
                normalize(sb.images, tiny),
                "layer3",
                [(0, c, int(lt.ys[c, r]), int(lt.xs[c, r]))],
            ).pixels[0]
            e = px.pow(2).sum(0)
            x0, y0, x1, y1 = sb.boxes[0].tolist()
            ys, xs = torch.meshgrid(
                torch.arange(e.shape[0]) + 0.5, torch.arange(e.shape[1]) + 0.5, indexing="ij"
            )
            inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
            want_e.append(float(e[inside].sum() / e.sum()) if e.sum() > 0 else float("nan"))
            want_a.append(float(inside.float().mean()))
            want_i.append(i)
    assert got["image"].tolist() == want_i
    assert np.allclose(got["energy"], want_e, atol=2e-3, equal_nan=True)
    assert np.allclose(got["area"], want_a, atol=2e-3)
