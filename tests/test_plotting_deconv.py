"""The deconv/top-9/sanity figures draw from result objects (smoke tests; the notebooks check them
on real results)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from zfcore import models
from zfcore.deconv import deconv_steps
from zfcore.plotting.deconv import (
    PlotError,
    mosaic,
    plot_deconv_steps,
    plot_filters,
    plot_layer_measures,
    plot_projection_on_image,
    plot_sanity_curves,
    plot_sanity_maps,
    plot_top9,
    plot_top9_measures,
    to_display,
    to_hwc,
)
from zfcore.sanity import cascading_randomization


def test_to_display_keeps_zero_grey_and_sign():
    p = torch.zeros(2, 3, 4, 4)
    p[0, 0, 0, 0], p[0, 1, 1, 1] = 2.0, -1.0
    d = to_display(p, percentile=100)
    assert d.shape == (2, 4, 4, 3)
    assert d[0, 0, 0, 0] == 1.0 and d[0, 1, 1, 1] == pytest.approx(0.25) and d[1].max() == 0.5
    q = float(torch.quantile(p[0].abs().flatten(), 0.995))
    d = to_display(p)  # robust scale: the extreme pixel clips
    assert d[0, 0, 0, 0] == 1.0 and d[0, 1, 1, 1] == pytest.approx(0.5 - 1 / (2 * q), abs=1e-6)
    m = mosaic(np.ones((5, 2, 2, 3)), ncols=3, pad=1)
    assert m.shape == (5, 8, 3)


def test_to_hwc_moves_channels_last_and_clamps():
    x = torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).view(2, 3, 2, 4) / 30 - 0.2
    got = to_hwc(x)
    assert got.shape == (2, 2, 4, 3)
    assert np.array_equal(got, x.clamp(0, 1).permute(0, 2, 3, 1).numpy())
    assert to_hwc(x[0]).shape == (2, 4, 3)


@pytest.mark.slow
def test_figures_draw():
    torch.manual_seed(0)
    model = models.zfnet(width=0.125, image_size=64, fc_units=256, num_classes=4).eval()
    x = torch.randn(3, 3, 64, 64)
    steps = deconv_steps(model, x[0], "layer5", 2, 1, 1)
    figs = [
        plot_deconv_steps(steps, torch.rand(3, 64, 64), title="t"),
        plot_filters(model.features.conv1.weight),
        plot_top9(
            "layer2",
            [
                {
                    "projections": torch.randn(9, 3, 27, 27),
                    "patches": torch.rand(9, 3, 27, 27),
                    "label": "map 0",
                }
            ]
            * 3,
        ),
        plot_layer_measures(["layer1", "layer2"], [0.3, 0.5], 0.29, [0.4, 0.6], [0.2, 0.2]),
    ]
    res = cascading_randomization(model, x, show=1, progress=False)
    figs += [plot_sanity_maps(res, torch.rand(3, 3, 64, 64)), plot_sanity_curves(res)]
    for f in figs:
        assert isinstance(f, matplotlib.figure.Figure)
        plt.close(f)
    with pytest.raises(PlotError, match="panel"):
        plot_top9("layer1", [])


def test_projection_on_image_and_measures_draw_what_they_are_given():
    from zfcore.paper.fig2_top9 import LayerMeasures

    p = torch.zeros(3, 8, 8)
    p[0, 1, 1], p[1, 2, 2] = 4.0, -2.0
    fig = plot_projection_on_image(
        torch.rand(3, 8, 8), torch.tensor([1, 2, 5, 6]), p, "image", "proj"
    )
    shown = fig.axes[1].images[0].get_array()
    assert shown[1, 1, 0] == 1.0 and shown[2, 2, 1] == pytest.approx(0.25) and shown[0, 0, 2] == 0.5
    rect = fig.axes[0].patches[0]
    assert (rect.get_x(), rect.get_y(), rect.get_width(), rect.get_height()) == (1, 2, 4, 4)
    assert [a.get_title() for a in fig.axes] == ["image", "proj"]
    plt.close(fig)
    m = LayerMeasures(
        ["layer1", "layer2"],
        10,
        0.3,
        {"layer1": 0.4, "layer2": 0.6},
        {"layer1": 3, "layer2": 4},
        {"layer1": 0.5, "layer2": 0.7},
        {"layer1": 0.2, "layer2": 0.2},
    )
    fig = plot_top9_measures(m, title="t")
    assert len(fig.axes) == 2 and [b.get_height() for b in fig.axes[0].patches] == [0.4, 0.6]
    plt.close(fig)
    fig = plot_top9_measures(
        LayerMeasures(["layer1"], 10, 0.3, {"layer1": 0.4}, {"layer1": 3}, {}, {})
    )
    assert len(fig.axes) == 1
    plt.close(fig)
