"""The paper's network with ImageNet weights (pytorchcv's zfnet / zfnetb, Fig. 3 and Table 3):
the conversion reproduces pytorchcv's logits on real photos, loads pytorchcv's weight file, says
which file is missing, and every analysis runs on the converted network. Offline: pytorchcv's
models are randomly initialised here; no weights are downloaded."""

import pytest
import torch
import torch.nn.functional as F

from zfcore import models, pretrained
from zfcore.deconv import layer_activations, project, requests

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _photo(rgb):
    """pytorchcv's evaluation transform: shorter side to 256, centre 224 crop, ImageNet
    normalised."""
    x = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    x = F.interpolate(
        x[None], scale_factor=256 / min(x.shape[1:]), mode="bilinear", antialias=True
    )[0]
    h, w = x.shape[1:]
    x = x[:, (h - 224) // 2 : (h - 224) // 2 + 224, (w - 224) // 2 : (w - 224) // 2 + 224]
    return (x - IMAGENET_MEAN) / IMAGENET_STD


@pytest.fixture(scope="module")
def photos():
    from skimage import data

    return torch.stack([_photo(f()) for f in (data.astronaut, data.chelsea, data.coffee)])


def _pytorchcv(name, seed=0):
    from pytorchcv.models import zfnet as pcv

    torch.manual_seed(seed)
    net = getattr(pcv, name)(pretrained=False).eval()
    with torch.no_grad():  # layer-1 responses of a trained net's size (~100s): LRN is nonlinear
        net.features.stage1.unit1.conv.weight.mul_(30.0)
    return net


@pytest.fixture(scope="module")
def zfnet_pair():
    net = _pytorchcv("zfnet")
    return net, models.from_pytorchcv(net)


@pytest.mark.slow
def test_converted_zfnet_gives_pytorchcv_logits_on_photos(zfnet_pair, photos):
    net, model = zfnet_pair
    assert sum(p.numel() for p in model.parameters()) == 62_357_608
    assert model.config.layout == "pytorchcv" and not model.training
    with torch.no_grad():
        want, got = net(photos), model(photos)
        # control: the same weights in Fig. 3's order (pool, then normalise) compute another
        # function
        paper = models.ZFNet(models.ZFConfig())
        paper.load_state_dict(model.state_dict())
        other = paper.eval()(photos)
    scale = float(want.abs().max())
    assert float((got - want).abs().max()) <= 1e-5 * scale
    assert float((other - want).abs().max()) > 1e-3 * scale
    assert torch.equal(got.argmax(1), want.argmax(1))


@pytest.mark.slow
def test_converted_wide_variant_is_table3s_zfnetb(photos):
    net = _pytorchcv("zfnetb", seed=1)
    model = models.from_pytorchcv(net)
    assert sum(p.numel() for p in model.parameters()) == 107_627_624
    assert model.config.conv_channels == models.TABLE3_VARIANTS["conv3_4_5_wide"]["conv_channels"]
    with torch.no_grad():
        want, got = net(photos[:1]), model(photos[:1])
    assert float((got - want).abs().max()) <= 1e-5 * float(want.abs().max())


def test_from_pytorchcv_takes_scaled_nets_and_refuses_other_layouts():
    from pytorchcv.models.alexnet import AlexNet

    kw = dict(
        kernel_sizes=[[7], [5], [3, 3, 3]],
        strides=[[2], [2], [1, 1, 1]],
        paddings=[[1], [0], [1, 1, 1]],
        use_lrn=True,
        num_classes=7,
    )
    torch.manual_seed(0)
    small = AlexNet(channels=[[8], [16], [24, 24, 16]], **kw).eval()
    model = models.from_pytorchcv(small)
    x = torch.randn(2, 3, 224, 224) * 20
    with torch.no_grad():
        assert torch.allclose(model(x), small(x), rtol=1e-5, atol=1e-6)
    kriz = AlexNet(
        channels=[[8], [16], [24, 24, 16]],
        **{
            **kw,
            "kernel_sizes": [[11], [5], [3, 3, 3]],
            "strides": [[4], [1], [1, 1, 1]],
            "paddings": [[0], [2], [1, 1, 1]],
        },
    )
    with pytest.raises(ValueError, match="11x11 stride 4.*Fig. 3 has 7x7 stride 2"):
        models.from_pytorchcv(kriz)
    with pytest.raises(ValueError, match="pytorchcv's zfnet"):
        models.from_pytorchcv(models.zfnet(width=0.1, image_size=64))


@pytest.mark.slow
def test_weight_file_is_read_from_pytorchcvs_folder(zfnet_pair, photos, tmp_path, monkeypatch):
    net, model = zfnet_pair
    monkeypatch.setenv("HOME", str(tmp_path))
    path = pretrained.weights_path("zf")
    assert path == tmp_path / ".torch" / "models" / "zfnet-1727-d010ddca.pth"
    path.parent.mkdir(parents=True)
    torch.save(
        {**net.state_dict(), "extra.step": torch.tensor(3)}, path
    )  # pytorchcv ignores extras
    loaded = models.zfnet(weights="imagenet", download=False)
    assert loaded.config.layout == "pytorchcv"
    want = model.state_dict()
    assert all(torch.equal(t, want[k]) for k, t in loaded.state_dict().items())
    assert models.model_fingerprint(loaded) == models.model_fingerprint(model)
    paper = models.ZFNet(models.ZFConfig())
    paper.load_state_dict(model.state_dict())
    assert models.model_fingerprint(paper) != models.model_fingerprint(model)  # other function


def test_missing_weights_name_the_file_folder_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = tmp_path / ".torch" / "models"
    for variant, file in (("zf", "zfnet-1727-d010ddca.pth"), ("wide", "zfnetb-1490-f6bec24e.pth")):
        with pytest.raises(pretrained.MissingWeightsError) as e:
            models.zfnet(weights="imagenet", variant=variant)  # ZFCORE_DOWNLOAD=0 in tests
        msg = str(e.value)
        assert file in msg and str(folder) in msg and "ZFCORE_DOWNLOAD=1" in msg
        assert "download=True" in msg and pretrained.weights_url(variant) in msg
    assert not folder.exists()  # nothing was fetched


def test_bad_arguments_are_refused_before_any_file_is_read():
    with pytest.raises(ValueError, match="width=0.5"):
        models.zfnet(weights="imagenet", width=0.5)
    with pytest.raises(ValueError, match="'imagenet' or None"):
        models.zfnet(weights="places")
    with pytest.raises(ValueError, match="no_layer7"):
        models.zfnet(weights="imagenet", variant="no_layer7")


def test_file_names_are_pytorchcvs():
    from pytorchcv.models.common.model_store import get_model_name_suffix_data

    for variant, (name, file, tag, sha1) in pretrained.PYTORCHCV_WEIGHTS.items():
        error, their_sha1, their_tag = get_model_name_suffix_data(name)
        assert file == f"{name}-{error}-{their_sha1[:8]}.pth"
        assert (sha1, tag) == (their_sha1, their_tag)


def test_zfnet_without_weights_is_unchanged():
    m = models.zfnet(width=0.125, image_size=64, fc_units=64, num_classes=10)
    assert m.config.layout == "paper"
    assert [n for n, _ in m.features.named_children()][:4] == ["conv1", "relu1", "pool1", "norm1"]
    assert [n for n, _ in m.classifier.named_children()][:3] == ["drop6", "fc6", "relu6"]
    wide = models.zfnet(variant="wide", width=0.125, image_size=64, fc_units=64)
    assert wide.config.conv_channels == (96, 256, 512, 1024, 512)


# --- every analysis runs on the converted network ----------------------------------------------


@pytest.mark.slow
def test_deconvnet_both_methods_agree_on_pytorchcv_layout(zfnet_pair, photos):
    _, model = zfnet_pair
    a = layer_activations(model, photos[:2], ["layer1", "layer5"])
    for layer, rule in (("layer1", "gradient"), ("layer5", "deconvnet")):
        c = a[layer][:, :, 3, 3].argmax(1)
        req = requests([0, 1], c, [3, 3], [3, 3])
        ex = project(model, photos[:2], layer, req, rule=rule, method="explicit")
        ag = project(model, photos[:2], layer, req, rule=rule, method="autograd")
        scale = ex.pixels.abs().max()
        assert scale > 0 and float((ex.pixels - ag.pixels).abs().max()) <= 1e-5 * float(scale)


@pytest.mark.slow
def test_mining_occlusion_and_features_run(zfnet_pair, photos):
    from zfcore.features import extract_features
    from zfcore.mining import mine_topk
    from zfcore.occlusion import occlude

    _, model = zfnet_pair
    top = mine_topk(model, photos, k=2, layers=["layer2", "layer5"], progress=False)
    acts = layer_activations(model, photos, ["layer5"])["layer5"]
    best = acts.flatten(2).amax(2)  # (images, maps)
    assert torch.allclose(top["layer5"].values[:, 0], best.max(0).values)
    occ = occlude(model, photos[1], window=64, stride=48)
    assert occ.prob_target.shape == (len(occ.rows), len(occ.cols)) and len(occ.rows) >= 4
    assert bool((occ.prob_target >= 0).all()) and bool((occ.prob_target <= 1).all())
    feats = extract_features(
        model, (photos, torch.tensor([0, 1, 2])), layers=["layer5", "layer7"], progress=False
    )
    assert feats["layer7"].shape == (3, 4096)
