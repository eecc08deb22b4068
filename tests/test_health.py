"""zfcore.health (dead and nearly dead maps, the layer-1 filters' low-frequency share) against
independent computations."""

import pytest
import torch

from zfcore import health
from zfcore.models import zfnet


def _tiny_net():
    torch.manual_seed(0)
    return zfnet(width=0.125, image_size=64, num_classes=10, fc_units=512).eval()


def test_dead_maps_match_a_naive_loop():
    model = _tiny_net()
    with torch.no_grad():  # kill three layer-2 maps and one layer-6 unit by hand
        model.features.conv2.bias[:3] = -1e4
        model.classifier.fc6.bias[5] = -1e4
    x = torch.randn(20, 3, 64, 64)
    res = health.dead_maps(model, x, batch_size=7)
    # naive: run each image alone, read each layer through the Sequential, count per map
    counts = {}
    for i in range(len(x)):
        h = x[i : i + 1]
        outs = {}
        for name, m in model.features.named_children():
            h = m(h)
            if name.startswith("relu"):
                outs[f"layer{name[4:]}"] = h
        h = torch.flatten(h, 1)
        for name, m in model.classifier.named_children():
            h = m(h)
            if name.startswith("relu"):
                outs[f"layer{name[4:]}"] = h
        for k, o in outs.items():
            fired = (o.flatten(2).amax(2) if o.dim() == 4 else o)[0] > 0
            counts[k] = counts.get(k, 0) + fired.long()
    assert res.n_images == 20
    for k, c in counts.items():
        assert torch.equal(res.fire_counts[k], c), k
        assert res.dead_share(k) == pytest.approx(float((c == 0).float().mean()))
    assert res.dead_share("layer2") >= 3 / 16 and 5 not in res.alive("layer6").tolist()
    rec = res.as_record()
    assert rec["dead_map_share_layer2"] == res.dead_share("layer2")
    assert rec["rare_map_share_layer2"] >= rec["dead_map_share_layer2"]


def test_dead_maps_accepts_a_loader_and_restores_training_mode():
    model = _tiny_net().train()
    x = torch.randn(10, 3, 64, 64)
    loader = [(x[:6], torch.zeros(6)), (x[6:], torch.zeros(4))]
    a = health.dead_maps(model, loader)
    b = health.dead_maps(model, x)
    assert model.training
    assert all(torch.equal(a.fire_counts[k], b.fire_counts[k]) for k in a.fire_counts)
    with pytest.raises(health.HealthError):
        health.dead_maps(model, torch.randn(0, 3, 64, 64))
    with pytest.raises(health.HealthError):
        health.FireCounter(model, ["layer9"])


def test_low_frequency_share_of_smooth_and_noise_filters():
    model = _tiny_net()
    conv = model.features.conv1
    yy, xx = torch.meshgrid(torch.arange(7.0), torch.arange(7.0), indexing="ij")
    with torch.no_grad():
        conv.weight.copy_(torch.exp(-((xx - 3) ** 2 + (yy - 3) ** 2) / 8.0).expand_as(conv.weight))
        smooth = health.low_frequency_share(model)
        conv.weight.copy_(
            torch.randn(conv.weight.shape, generator=torch.Generator().manual_seed(0))
        )
        noise = health.low_frequency_share(model)
    assert smooth > 0.8 and 0.1 < noise < 0.3 and smooth > 3 * noise
