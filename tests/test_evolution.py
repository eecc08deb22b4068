"""Feature evolution during training (``zfcore.evolution``, Fig. 4) against independent
computations: weight progress, top-k overlap, convergence epochs, the rank correlation, the
strongest activation's projection, and per-layer convergence on a real run."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from zfcore import evolution as E
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


@pytest.mark.slow
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


def test_per_map_topk_overlap_and_spread():
    a = torch.tensor([[1, 2, 3], [4, 5, 6]])
    b = torch.tensor([[3, 2, 9], [7, 8, 9]])
    assert E.topk_overlap_per_map(a, b).tolist() == pytest.approx([2 / 3, 0.0])
    assert E.topk_overlap(a, b) == pytest.approx(1 / 3)
    conv = E.Convergence(
        epochs=[1, 2, 4, 8],
        weight_similarity={},
        topk_similarity={},
        weight_threshold=0.9,
        topk_threshold=0.5,
        weight_converged={},
        topk_converged={},
        n_images=10,
        k=9,
        map_converged={"layer1": [8.0, 1.0] * 10, "layer5": [1.0, 8.0] * 10},
    )
    assert conv.spread("layer1")[0] == pytest.approx(4.5)
