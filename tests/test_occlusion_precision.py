"""The ``fast`` preset: each layer's change in bfloat16, with the positions whose p(class) it may
have moved by more than 0.01 recomputed in float32; checked by hand, against exact occlusion,
and for its fallbacks."""

import math

import pytest
import torch

from zfcore import models, occlusion
from zfcore.incremental import low_precision_is_fast
from zfcore.occlusion import (
    LOW_PRECISION_LOGIT_ERROR,
    LOW_PRECISION_MAX_DP,
    OcclusionError,
    low_precision_suspects,
    occlude,
)


@pytest.fixture(scope="module")
def tiny_zf():
    torch.manual_seed(0)
    return models.he_init_(
        models.zfnet(width=0.125, image_size=64, fc_units=128, num_classes=10)
    ).eval()


@pytest.fixture
def bf16_is_fast(monkeypatch):
    monkeypatch.setattr("zfcore.occlusion.low_precision_is_fast", lambda device: True)


def test_suspects_by_hand():
    clean = torch.zeros(4, 2)
    logits = torch.tensor([[1.0, 0.0], [0.5, 0.0], [30.0, 0.0], [0.0, 0.0]])
    # p0 = e/(e+1) = 0.7311, change 1: 2 * 0.7311 * 0.2689 / 32 = 0.01229 > 0.01
    # p0 = 0.6225, change 0.5: 2 * 0.6225 * 0.3775 * 0.5 / 32 = 0.00734
    # p0 = 1 - 9e-14: flat however large the change; no change: nothing to fear
    assert LOW_PRECISION_LOGIT_ERROR == 1 / 32 and LOW_PRECISION_MAX_DP == 0.01
    assert low_precision_suspects(logits, clean, 0).tolist() == [True, False, False, False]
    p = 1 / (1 + math.exp(-1.0))
    assert 2 * p * (1 - p) / 32 == pytest.approx(0.01229, abs=1e-5)


def test_first_order_bound_on_p_holds():
    """|dp_t| <= 2 p_t (1 - p_t) max|dz| (to first order), the bound the guard uses, sampled."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2000, 7, generator=g, dtype=torch.float64) * 3
    E = 1e-4
    dz = (torch.rand(2000, 7, generator=g, dtype=torch.float64) * 2 - 1) * E
    p, q = torch.softmax(z, 1)[:, 0], torch.softmax(z + dz, 1)[:, 0]
    bound = 2 * p * (1 - p) * dz.abs().amax(1)
    assert ((q - p).abs() <= bound * (1 + 1e-3) + 1e-15).all()
    assert float(((q - p).abs() / bound).max()) > 0.5  # and it is not loose by much


def test_fast_is_close_to_exact_and_rechecks_exactly(tiny_zf, bf16_is_fast, monkeypatch):
    torch.manual_seed(1)
    image = torch.randn(3, 64, 64)
    exact = occlude(tiny_zf, image, 3, window=12, stride=4)
    fast = occlude(tiny_zf, image, 3, window=12, stride=4, mode="fast")
    assert fast.mode == "fast" and fast.precision == "bf16" and not fast.exact
    assert fast.rechecked.shape == exact.prob_target.shape
    assert float((fast.prob_target - exact.prob_target).abs().max()) <= 0.01
    assert float((fast.feature_total - exact.feature_total).abs().max()) <= 1e-2 * float(
        exact.feature_total.abs().max()
    )
    # an estimate that fears every change recomputes every changed position: exact again
    monkeypatch.setattr(occlusion, "LOW_PRECISION_LOGIT_ERROR", 1e9)
    every = occlude(tiny_zf, image, 3, window=12, stride=4, mode="fast")
    assert bool(every.rechecked.all())
    assert torch.allclose(every.prob_target, exact.prob_target, atol=1e-6, rtol=0)
    # one that fears nothing rechecks nothing, and bfloat16 shows
    monkeypatch.setattr(occlusion, "LOW_PRECISION_LOGIT_ERROR", 0.0)
    none = occlude(tiny_zf, image, 3, window=12, stride=4, mode="fast")
    assert not none.rechecked.any()
    assert float((none.prob_target - exact.prob_target).abs().max()) > 1e-6


def test_fast_falls_back_to_float32(tiny_zf, monkeypatch):
    torch.manual_seed(2)
    image = torch.randn(3, 64, 64)
    exact = occlude(tiny_zf, image, 1, window=16, stride=8)
    monkeypatch.setattr("zfcore.occlusion.low_precision_is_fast", lambda device: False)
    slow_hw = occlude(tiny_zf, image, 1, window=16, stride=8, mode="fast")
    full = occlude(tiny_zf, image, 1, window=16, stride=8, mode="fast", incremental=False)
    for r in (slow_hw, full):
        assert r.precision == "fp32" and r.exact and r.rechecked is None
        assert torch.allclose(r.prob_target, exact.prob_target, atol=1e-5, rtol=0)
    # asked for by name, bfloat16 is used even where it is slow
    forced = occlude(tiny_zf, image, 1, window=16, stride=8, precision="bf16")
    assert forced.precision == "bf16" and forced.mode == "custom"


def test_bad_precision(tiny_zf):
    image = torch.randn(3, 64, 64)
    with pytest.raises(OcclusionError, match="precision"):
        occlude(tiny_zf, image, precision="fp16")
    with pytest.raises(OcclusionError, match="incremental=True"):
        occlude(tiny_zf, image, precision="bf16", incremental=False)


def test_low_precision_is_fast_answers():
    assert isinstance(low_precision_is_fast("cpu"), bool)
    assert low_precision_is_fast("meta") is False
