"""Fig. 3's layer sizes and parameter count, Krizhevsky's first layer, Table 3 variants,
layer addressing, the paper's initialisation and feature-scale clipping (section 3)."""

import math

import pytest
import torch
from torch import nn

from zfcore import models, pretrained
from zfcore.models import (
    TABLE3_VARIANTS,
    build,
    clip_filters_,
    filter_rms,
    get_layer,
    krizhevsky,
    paper_init_,
    zfnet,
)


def _hand_count(chs, fcs, k1, side, classes=1000):
    """Parameters of a ZF-style net, counted by hand from the layer table."""
    n, prev = 0, 3
    kernels = [k1, 5, 3, 3, 3]
    for c, k in zip(chs, kernels):
        n += prev * c * k * k + c
        prev = c
    prev = prev * side * side
    for u in fcs:
        n += prev * u + u
        prev = u
    return n + prev * classes + classes


def _sizes(model, size=224):
    x = torch.zeros(1, 3, size, size)
    out = {}
    for name, m in model.features.named_children():
        x = m(x)
        out[name] = x.shape[-1]
    return out


def test_zfnet_spatial_sizes_match_fig3():
    s = _sizes(zfnet())
    assert [
        s["conv1"],
        s["pool1"],
        s["conv2"],
        s["pool2"],
        s["conv3"],
        s["conv4"],
        s["conv5"],
        s["pool5"],
    ] == [110, 55, 26, 13, 13, 13, 13, 6]


def test_zfnet_parameter_count():
    m = zfnet()
    got = sum(p.numel() for p in m.parameters())
    assert got == _hand_count((96, 256, 384, 384, 256), (4096, 4096), 7, 6)
    assert got == 62_357_608


@pytest.mark.slow
def test_krizhevsky_first_layer_and_sizes():
    m = krizhevsky()
    assert m.features.conv1.kernel_size == (11, 11) and m.features.conv1.stride == (4, 4)
    assert m.features.conv1.out_channels == 96
    s = _sizes(m)
    assert [s["conv1"], s["pool1"], s["pool2"], s["pool5"]] == [55, 27, 13, 6]
    assert m(torch.zeros(2, 3, 224, 224)).shape == (2, 1000)


@pytest.mark.parametrize("variant", sorted(TABLE3_VARIANTS))
@pytest.mark.parametrize("first", ["zf", "krizhevsky"])
def test_table3_variants_build_and_run(variant, first):
    m = build(variant, first_layer=first, width=0.25, image_size=112, num_classes=7, fc_units=512)
    assert m(torch.randn(2, 3, 112, 112)).shape == (2, 7)
    removed = TABLE3_VARIANTS[variant].get("removed", ())
    for i in range(1, 8):
        assert (f"layer{i}" in m.layer_names) == (i not in removed)
    for name in m.layer_names:
        get_layer(m, name)  # every advertised layer resolves


@pytest.mark.slow
def test_table3_widths():
    m = build("conv3_4_5_wide")
    assert [
        m.features.conv3.out_channels,
        m.features.conv4.out_channels,
        m.features.conv5.out_channels,
    ] == [512, 1024, 512]
    assert build("fc6_7_8192").classifier.fc6.out_features == 8192
    assert build("fc6_7_2048", fc_units=1024).classifier.fc6.out_features == 512


def test_width_and_size_scaling_keep_structure():
    m = zfnet(width=0.5, image_size=112, num_classes=10, fc_units=2048)
    assert m.features.conv1.out_channels == 48 and m.classifier.fc6.out_features == 1024
    assert m(torch.zeros(1, 3, 112, 112)).shape == (1, 10)
    assert list(m.layer_names) == [f"layer{i}" for i in range(1, 8)] + ["logits"]


def test_get_layer_hooks_the_rectified_map():
    m = zfnet(width=0.125, image_size=64, num_classes=3).eval()
    seen = {}
    h = get_layer(m, "layer5").register_forward_hook(lambda mod, i, o: seen.update(a=o))
    m(torch.randn(1, 3, 64, 64))
    h.remove()
    assert isinstance(get_layer(m, 5), nn.ReLU)
    assert seen["a"].min() >= 0 and seen["a"].shape[1] == m.features.conv5.out_channels
    with pytest.raises(models.LayerError, match="unknown layer 'layer9'"):
        get_layer(m, "layer9")


def test_bad_builder_arguments():
    with pytest.raises(ValueError, match="unknown variant"):
        build("nope")
    with pytest.raises(ValueError, match="first_layer"):
        build("zf", first_layer="resnet")
    with pytest.raises(ValueError, match="too small"):
        zfnet(image_size=16)


def test_paper_init_statistics():
    torch.manual_seed(0)
    m = paper_init_(zfnet(width=0.25, image_size=64, num_classes=5))
    w = torch.cat([p.flatten() for n, p in m.named_parameters() if n.endswith("weight")])
    b = torch.cat([p.flatten() for n, p in m.named_parameters() if n.endswith("bias")])
    assert abs(w.std().item() - 1e-2) < 1e-3 and abs(w.mean().item()) < 1e-3
    assert torch.count_nonzero(b) == 0


def test_feature_scale_clipping_against_loop():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 6, 3)
    with torch.no_grad():
        conv.weight.mul_(torch.tensor([0.1, 1, 10, 0.5, 2, 0.01]).view(-1, 1, 1, 1))
    before = conv.weight.detach().clone()
    net = nn.Sequential(conv)
    n = clip_filters_(net, 0.1)
    # independent: per-filter loop
    want, count = before.clone(), 0
    for i in range(6):
        rms = math.sqrt(float((before[i] ** 2).mean()))
        if rms > 0.1:
            want[i] = before[i] * (0.1 / rms)
            count += 1
    assert n == count
    torch.testing.assert_close(conv.weight.detach(), want)
    assert float(filter_rms(conv).max()) <= 0.1 + 1e-6


def test_pretrained_offline_fails_at_once_naming_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("ZFCORE_DOWNLOAD", "0")
    with pytest.raises(pretrained.MissingWeightsError) as e:
        models.alexnet(pretrained=True)
    msg = str(e.value)
    assert "alexnet-owt-7be5be79.pth" in msg and str(tmp_path) in msg and "https://" in msg


@pytest.mark.slow
def test_pretrained_download_failure_names_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(pretrained.MissingWeightsError, match="download failed"):
        models.vgg16(pretrained=True, download=True)


@pytest.mark.slow
def test_pretrained_from_disk_and_layer_names(tmp_path, monkeypatch):
    from torchvision.models import AlexNet_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ref = models.alexnet(pretrained=False)
    path = pretrained.torchvision_weights_path(AlexNet_Weights.IMAGENET1K_V1)
    path.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), path)
    m = models.alexnet(pretrained=True).eval()
    torch.testing.assert_close(m.features[0].weight, ref.features[0].weight)
    assert get_layer(m, "layer1") is m.features[1] and get_layer(m, "layer7") is m.classifier[5]
    assert all(not mod.inplace for mod in m.modules() if isinstance(mod, nn.ReLU))


def test_load_model_state_names_mismatch():
    a = zfnet(width=0.125, image_size=64, num_classes=10)
    b = zfnet(width=0.25, image_size=64, num_classes=10)
    with pytest.raises(ValueError, match="shape mismatch: features.conv1.weight"):
        models.load_model_state(a, b.state_dict())
    c = build("no_layer7", width=0.125, image_size=64, num_classes=10)
    with pytest.raises(ValueError, match="missing from checkpoint"):
        models.load_model_state(a, c.state_dict())


def _by_hand(model, x):
    """Every named layer's output by running the Sequential blocks one module at a time."""
    names = {v: k for k, v in model.layer_names.items()}
    out, h = {}, x
    for block_name, block in (("features", model.features), ("classifier", model.classifier)):
        if block_name == "classifier":
            h = torch.flatten(h, 1)
        for name, m in block.named_children():
            h = m(h)
            if f"{block_name}.{name}" in names:
                out[names[f"{block_name}.{name}"]] = h
    return out, h


def test_forward_layers_matches_running_the_modules_one_by_one():
    from zfcore.models import capture_layers, forward_layers

    torch.manual_seed(0)
    model = zfnet(width=0.125, image_size=64, num_classes=10, fc_units=256).eval()
    x = torch.randn(3, 3, 64, 64)
    want, logits = _by_hand(model, x)
    got = forward_layers(model, x, ["layer3", 1, "layer7", "layer3"])
    assert list(got) == ["layer3", 1, "layer7"]  # keyed as given, once each
    for key, name in (("layer3", "layer3"), (1, "layer1"), ("layer7", "layer7")):
        torch.testing.assert_close(got[key], want[name], rtol=0, atol=0)
    with capture_layers(model, ["layer5"], transform=lambda _, o: o.sum()) as seen:
        out = model(x)  # runs to the end
    torch.testing.assert_close(out, logits, rtol=0, atol=0)
    torch.testing.assert_close(seen["layer5"], want["layer5"].sum())


def test_forward_layers_stops_after_the_deepest_and_leaves_no_hooks():
    from zfcore.models import forward_layers

    model = zfnet(width=0.125, image_size=64, num_classes=10, fc_units=256).eval()
    ran = []
    spy = get_layer(model, "layer6").register_forward_hook(lambda *a: ran.append(1))
    forward_layers(model, torch.randn(1, 3, 64, 64), ["layer2", "layer5"])
    assert ran == []  # layers 6-7 never ran
    spy.remove()
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(models.LayerError, match="layer9"):
        forward_layers(model, torch.randn(1, 3, 64, 64), ["layer9"])
    assert all(not m._forward_hooks for m in model.modules())


def test_leaf_modules_walk_in_forward_order_and_stop_at_a_layer():
    m = models.zfnet(width=0.125, image_size=64, num_classes=5)
    names = [n for n, _ in models.leaf_modules(m)]
    assert names == [n for n, mod in m.named_modules() if n and not list(mod.children())]
    upto = models.leaf_modules(m, "layer2")
    assert upto[-1][0] == models.layer_names(m)["layer2"]
    assert [n for n, _ in upto] == names[: len(upto)]
    assert models.leaf_modules(m, 2) == upto
    with pytest.raises(models.LayerError):
        models.leaf_modules(m, "layer9")
