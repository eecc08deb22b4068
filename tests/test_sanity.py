"""zfcore.sanity: cascading randomisation (Adebayo et al. 2018) and its similarity measures against
independent computations (scipy, scikit-image, autograd), and the per-image baseline."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from zfcore import models
from zfcore.sanity import (
    SanityError,
    cascading_randomization,
    pixel_maps,
    randomization_stages,
    randomize_top_down,
    spearman_rows,
    ssim_rows,
)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _model():
    torch.manual_seed(0)
    return models.zfnet(width=0.125, image_size=64, fc_units=512, num_classes=5).eval()


def test_spearman_rows_equals_scipy_with_ties():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (4, 30), generator=g).float()  # many ties
    b = torch.randn(4, 30, generator=g)
    b[1] = a[1] * 2 + 1  # perfectly monotone
    got = spearman_rows(a, b)
    want = [spearmanr(x.numpy(), y.numpy()).statistic for x, y in zip(a, b)]
    assert got.numpy() == pytest.approx(np.array(want), abs=1e-6)
    assert float(got[1]) == pytest.approx(1.0)
    assert float(spearman_rows(torch.ones(1, 5), torch.arange(5.0)[None])[0]) == 0.0


def test_ssim_rows_equals_skimage_on_scaled_maps():
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, 20, 20, generator=g), -torch.rand(3, 20, 20, generator=g) * 4
    got = ssim_rows(a, b)
    for i in range(3):
        x = (a[i] / a[i].max()).double().numpy()
        y = (b[i].abs() / b[i].abs().max()).double().numpy()
        assert float(got[i]) == pytest.approx(structural_similarity(x, y, data_range=1.0), abs=1e-6)
    assert ssim_rows(a, a * 3).numpy() == pytest.approx(1.0)


def test_randomize_top_down_changes_only_the_layers_above():
    m = _model()
    assert randomization_stages(m) == [
        "logits",
        "layer7",
        "layer6",
        "layer5",
        "layer4",
        "layer3",
        "layer2",
        "layer1",
    ]
    r = randomize_top_down(m, "layer5", seed=3)
    changed = {n for n, p in m.state_dict().items() if not torch.equal(p, r.state_dict()[n])}
    assert {n.split(".")[1] for n in changed} == {"fc8", "fc7", "fc6", "conv5"}
    again = randomize_top_down(m, "layer5", seed=3)
    assert all(torch.equal(p, again.state_dict()[n]) for n, p in r.state_dict().items())
    with pytest.raises(SanityError, match="layer9"):
        randomize_top_down(m, "layer9")


def test_cascading_randomization_shapes_and_trained_stage():
    m = _model()
    x = torch.randn(4, 3, 64, 64)
    res = cascading_randomization(m, x, rules=["deconvnet", "gradient"], show=2, progress=False)
    assert res.stages[0] == "trained" and len(res.stages) == 9
    assert res.spearman_abs.shape == (2, 9, 4) and res.maps.shape == (2, 9, 2, 64, 64)
    assert torch.allclose(res.spearman_abs[:, 0], torch.ones(2, 4))
    assert torch.allclose(res.ssim[:, 0], torch.ones(2, 4), atol=1e-6)
    with torch.no_grad():
        assert torch.equal(res.targets, m(x).argmax(1))
    # stage "logits" of the gradient rule by hand: the gradient of the same logit of the net
    # whose fc8 is re-initialised
    net = randomize_top_down(m, "logits")
    xr = x.clone().requires_grad_(True)
    out = net(xr)
    (g,) = torch.autograd.grad(out[torch.arange(4), res.targets].sum(), xr)
    ref = x.clone().requires_grad_(True)
    out0 = m(ref)
    (g0,) = torch.autograd.grad(out0[torch.arange(4), res.targets].sum(), ref)
    want = spearman_rows(pixel_maps(g0), pixel_maps(g))
    assert torch.allclose(res.spearman_abs[1, 1], want, atol=1e-5)
    with pytest.raises(SanityError, match="N >= 2"):
        cascading_randomization(m, x[:1])


def test_sanity_per_image_baseline_matches_its_mean():
    torch.manual_seed(0)
    m = models.zfnet(width=0.125, image_size=64, fc_units=64, num_classes=5).eval()
    res = cascading_randomization(
        m, torch.randn(3, 3, 64, 64), rules=["gradient"], show=1, progress=False
    )
    assert torch.allclose(res.baseline_rows["spearman_abs"].mean(1), res.baseline_spearman_abs)
    assert torch.allclose(res.baseline_rows["ssim"].mean(1), res.baseline_ssim)
    mid, sim = res.change_toward_unrelated("gradient", "trained")
    assert np.allclose(sim, 1.0, atol=1e-5)  # the trained stage is itself
    assert np.allclose(mid, (1 + res.baseline_rows["spearman_abs"][0].numpy()) / 2)
    with pytest.raises(SanityError, match="unknown"):
        res.change_toward_unrelated("deconvnet")
