"""The first layer measured (``zfcore.firstlayer``, section 4.1 and Fig. 6 of the paper) against
hand examples: aliased energy of pure gratings, frequency bands, the norm share of the top
filters, weak maps, the largest filter RMS, and a recorded first layer rebuilt."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from zfcore import firstlayer as FL
from zfcore import models
from zfcore.models import zfnet
from zfcore.profiles import get_profile


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    return zfnet(**get_profile("tiny").model_kwargs()).eval()


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


def test_weak_filters_finds_a_silenced_map():
    model = _tiny_model()
    with torch.no_grad():
        model.features.conv1.weight[2].zero_()
        model.features.conv1.bias[2] = -1.0
    x = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    weak = FL.weak_filters(model, x)
    assert weak[2] and weak.sum() == 1
    rep = FL.first_layer_report(model, x, "test")
    assert rep.kernel == 7 and rep.stride == 2 and rep.weak_fraction == pytest.approx(1 / 12)
    with pytest.raises(FL.FirstLayerError):
        FL.first_layer_report(model, x[0], "bad")
    # the same report from the first layer and its activity (as a record holds them)
    act = FL.layer1_mean_activation(model, x)
    again = FL.first_layer_from(FL.first_conv(model), act, "test")
    assert torch.equal(again.weak, rep.weak) and torch.equal(again.aliased, rep.aliased)
    assert again.bands == rep.bands and again.top_norm_share == rep.top_norm_share


def test_weak_maps_by_hand():
    act = torch.tensor([1.0, 2.0, 0.005, 3.0, 0.0])  # median 1: below 0.01 is weak
    assert FL.weak_maps(act).tolist() == [False, False, True, False, True]
    assert FL.weak_maps(act, rel=0.5).tolist() == [False, False, True, False, True]
    with pytest.raises(FL.FirstLayerError, match="rel"):
        FL.weak_maps(act, rel=1.5)


def test_largest_filter_rms_by_hand():
    m = nn.Sequential(nn.Conv2d(1, 2, 2), nn.Conv2d(2, 1, 1))
    with torch.no_grad():
        m[0].weight.fill_(0.5)
        m[1].weight.copy_(torch.tensor([3.0, 4.0]).view(1, 2, 1, 1))
    assert FL.largest_filter_rms(m) == pytest.approx(math.sqrt(12.5))


def test_conv_with_filters_keeps_the_layout_and_checks_the_shape():
    conv = FL.first_conv(_tiny_model())
    w = torch.randn(conv.weight.shape, generator=torch.Generator().manual_seed(3))
    copy = FL.conv_with_filters(conv, w)
    assert torch.equal(copy.weight, w) and copy.stride == conv.stride
    assert not torch.equal(conv.weight, w)  # the original is left as it was
    with pytest.raises(FL.FirstLayerError, match="do not fit"):
        FL.conv_with_filters(conv, w[:, :, :5, :5])


@pytest.mark.slow
def test_power_above_of_gratings_and_white_noise():
    k = 16
    y = torch.arange(k, dtype=torch.float64)

    def grating(f):
        return torch.cos(2 * math.pi * f * y)[None, None, :, None].expand(1, 3, k, k)

    w = torch.cat([grating(3 / 16), grating(1 / 16)])  # 0.1875 and 0.0625 cycles per pixel
    assert FL.power_above(w, 1 / 8, pad=k).tolist() == pytest.approx([1.0, 0.0], abs=1e-9)
    assert FL.power_above(w, 1 / 4, pad=k).tolist() == pytest.approx([0.0, 0.0], abs=1e-9)
    # white noise: the share of frequency bins with |fx| or |fy| above c (DC removed by the mean)
    noise = FL.noise_filters(torch.zeros(400, 3, 11, 11), seed=1)
    for c in (1 / 8, 1 / 4):
        f = np.abs(np.fft.fftfreq(64))
        inside = (f <= c + 1e-12).sum()
        want = 1 - (inside**2 - 1) / (64**2 - 1)
        assert float(FL.power_above(noise, c).mean()) == pytest.approx(want, abs=0.02)
    with pytest.raises(FL.FirstLayerError, match="cutoff"):
        FL.power_above(w, 0.7)


def test_aliasing_controls_compare_like_with_like():
    torch.manual_seed(0)
    zf = models.zfnet(width=0.125, image_size=64, fc_units=64, num_classes=5).eval()
    kr = models.krizhevsky(width=0.125, image_size=64, fc_units=64, num_classes=5).eval()
    out = FL.aliasing_controls(zf, zf)
    assert out["stride"] == 2 and np.array_equal(out["trained"]["own"], out["untrained"]["own"])
    assert np.allclose(out["trained"]["own"], out["trained"]["above_1_4"])  # stride 2: Nyquist 1/4
    conv = [m for m in kr.modules() if isinstance(m, nn.Conv2d)][0]
    out_k = FL.aliasing_controls(kr, kr)
    assert out_k["stride"] == 4 and np.allclose(
        out_k["trained"]["own"], FL.aliased_energy(conv).numpy()
    )
    assert np.allclose(out_k["trained"]["own"], out_k["trained"]["above_1_8"])
    with pytest.raises(FL.FirstLayerError, match="differ"):
        FL.aliasing_controls(zf, kr)
