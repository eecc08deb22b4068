"""Analyses of the training notebooks against independent computations: per-layer convergence
(Fig. 4, ``zfcore.evolution``) and the first-layer measurements of section 4.1 / Fig. 6
(``zfcore.firstlayer``)."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from zfcore import evolution as E
from zfcore import firstlayer as FL
from zfcore import train as T
from zfcore.deconv import layer_activations
from zfcore.models import zfnet
from zfcore.profiles import get_profile


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    return zfnet(**get_profile("tiny").model_kwargs()).eval()


def test_weight_progress_is_the_interpolation_fraction():
    model = _tiny_model()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    final = {k: v + torch.randn_like(v) for k, v in init.items()}
    for t in (0.0, 0.3, 1.0):
        state = {k: init[k] + t * (final[k] - init[k]) for k in init}
        got = E.weight_progress(model, init, state, final)
        assert set(got) == {
            "layer1",
            "layer2",
            "layer3",
            "layer4",
            "layer5",
            "layer6",
            "layer7",
            "logits",
        }
        for v in got.values():
            assert v == pytest.approx(t, abs=1e-6)


def test_topk_overlap_against_python_sets():
    g = torch.Generator().manual_seed(0)
    # rows of distinct images, as mining returns them; -1 marks unfilled slots
    a = torch.stack([torch.randperm(30, generator=g)[:9] for _ in range(20)])
    b = torch.stack([torch.randperm(30, generator=g)[:9] for _ in range(20)])
    a[3, 4:] = -1
    b[3, 6:] = -1
    naive = np.mean(
        [len({x for x in a[c].tolist() if x >= 0} & set(b[c].tolist())) / 9 for c in range(20)]
    )
    assert E.topk_overlap(a, b) == pytest.approx(naive)
    assert E.topk_overlap(b[:3], b[:3]) == 1.0
    with pytest.raises(E.EvolutionError):
        E.topk_overlap(a, b[:, :5])


def test_convergence_epoch_by_hand():
    ep = [0.5, 1, 2, 4]
    assert E.convergence_epoch(ep, [0.2, 0.6, 0.4, 1.0], 0.5) == 4  # dips back below
    assert E.convergence_epoch(ep, [0.2, 0.6, 0.7, 1.0], 0.5) == 1
    assert E.convergence_epoch(ep, [0.9, 0.6, 0.7, 1.0], 0.5) == 0.5
    assert math.isnan(E.convergence_epoch(ep, [0.9, 0.6, 0.7, 0.1], 0.5))


def test_spearman_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y = rng.integers(0, 4, 7).astype(float), rng.normal(size=7)
        assert E.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert math.isnan(E.spearman([1, 2, 3], [5, 5, 5]))


def test_strongest_projection_is_the_maximum_over_the_data():
    model = _tiny_model()
    x = torch.randn(12, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    maps = {"layer1": [0, 3], "layer3": [5]}
    res = E.strongest_projections(model, x, maps)
    acts = layer_activations(model, x, ["layer1", "layer3"])
    for layer, chans in maps.items():
        for i, c in enumerate(chans):
            per_image = acts[layer][:, c].flatten(1).max(1).values
            assert res["activations"][layer][i] == pytest.approx(float(per_image.max()), rel=1e-5)
            assert int(res["image_index"][layer][i]) == int(per_image.argmax())
        assert res["projections"][layer].shape == res["patches"][layer].shape


def test_layer_convergence_on_a_real_run(tmp_path):
    run = T.training_run(
        "tiny", n_train=128, n_val=64, epochs=2, cache_dir=tmp_path, progress=False
    )
    conv = E.layer_convergence(run, n_images=64, progress=False)
    assert conv.epochs == run.checkpoint_epochs
    for sims in list(conv.topk_similarity.values()) + list(conv.weight_similarity.values()):
        assert sims[-1] == pytest.approx(1.0)
    assert set(conv.topk_converged) == {"layer1", "layer2", "layer3", "layer4", "layer5"}
    again = E.layer_convergence(run, n_images=64, progress=False)  # from the cache
    assert again.topk_similarity == conv.topk_similarity
    fig4 = E.fig4_projections(run, maps_per_layer=2, n_images=64, progress=False)
    assert fig4.projections["layer2"].shape[:2] == (2, len(run.checkpoint_epochs))


# ---------------------------------------------------------------------------------------------
# Section 4.1 / Fig. 6
# ---------------------------------------------------------------------------------------------


def _conv_with(filters: torch.Tensor, stride: int) -> nn.Conv2d:
    c = nn.Conv2d(filters.shape[1], filters.shape[0], filters.shape[-1], stride=stride)
    with torch.no_grad():
        c.weight.copy_(filters)
    return c


def test_aliased_energy_of_pure_gratings():
    k = 16
    xs = torch.arange(k, dtype=torch.float64)

    def grating(f):
        g = torch.cos(2 * math.pi * f * xs)[None, :].expand(k, k)
        return g.expand(3, k, k).float()

    # Whole periods in the kernel and an FFT of the kernel's size: each grating is one frequency.
    filt = torch.stack([grating(1 / 16), grating(3 / 16), grating(6 / 16)])
    a2 = FL.aliased_energy(_conv_with(filt, stride=2), pad=k)  # Nyquist 0.25 cycles/pixel
    assert a2.tolist() == pytest.approx([0, 0, 1], abs=1e-9)
    a4 = FL.aliased_energy(_conv_with(filt, stride=4), pad=k)  # Nyquist 0.125
    assert a4.tolist() == pytest.approx([0, 1, 1], abs=1e-9)
    bands = FL.frequency_profile(_conv_with(filt, stride=2))
    assert sum(bands.values()) == pytest.approx(1.0)


def test_norm_share_by_hand():
    w = torch.zeros(4, 1, 2, 2)
    w[0] = 1.5  # norm 3
    w[1:] = 0.5  # norm 1 each
    conv = _conv_with(w, 1)
    assert FL.norm_share(conv, top=1) == pytest.approx(0.5)
    assert FL.norm_share(conv, top=4) == pytest.approx(1.0)


def test_dead_filters_finds_a_silenced_map():
    model = _tiny_model()
    with torch.no_grad():
        model.features.conv1.weight[2].zero_()
        model.features.conv1.bias[2] = -1.0
    x = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    dead = FL.dead_filters(model, x)
    assert dead[2] and dead.sum() == 1
    rep = FL.first_layer_report(model, x, "test")
    assert rep.kernel == 7 and rep.stride == 2 and rep.dead_fraction == pytest.approx(1 / 12)
    with pytest.raises(FL.FirstLayerError):
        FL.first_layer_report(model, x[0], "bad")
