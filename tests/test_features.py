"""Streaming multi-layer feature extraction (zfcore.features), checked against plain forward
passes through the model's own submodules and hand-written pooling loops."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from zfcore.features import (
    LAYERS,
    FeatureError,
    Features,
    FeatureTypeError,
    cached_features,
    extract_features,
    layer_outputs,
    pool_map,
)
from zfcore.models import LayerError, model_fingerprint, zfnet


def _model(seed=0, size=64):
    torch.manual_seed(seed)
    return zfnet(width=0.125, image_size=size, num_classes=5, fc_units=512).eval()


def _data(n=10, size=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.arange(n) % 5


def _manual_layers(model, x):
    """Every layer by slicing the model's Sequentials by hand (no hooks)."""
    f, c = model.features, model.classifier
    names = list(f._modules)
    out = {}
    for i in range(1, 6):
        out[f"layer{i}"] = f[: names.index(f"relu{i}") + 1](x)
    flat = torch.flatten(f(x), 1)
    cn = list(c._modules)
    out["layer6"] = c[: cn.index("relu6") + 1](flat)
    out["layer7"] = c[: cn.index("relu7") + 1](flat)
    return out


def _naive_pool(t, side, mode):
    """Adaptive pooling by explicit loops over output cells (PyTorch's bin rule)."""
    N, C, H, W = t.shape
    out = torch.empty(N, C, side, side)
    for i in range(side):
        h0, h1 = (i * H) // side, -(-((i + 1) * H) // side)
        for j in range(side):
            w0, w1 = (j * W) // side, -(-((j + 1) * W) // side)
            cell = t[:, :, h0:h1, w0:w1]
            out[:, :, i, j] = cell.mean((2, 3)) if mode == "avg" else cell.amax((2, 3))
    return out.flatten(1)


def test_layer_outputs_match_manual_slices():
    model, (x, _) = _model(), _data(4)
    with torch.no_grad():
        got = layer_outputs(model, x, LAYERS)
        want = _manual_layers(model, x)
    for l in LAYERS:
        torch.testing.assert_close(got[l], want[l], rtol=0, atol=0)


def test_pass_stops_after_deepest_requested_layer():
    model, (x, _) = _model(), _data(2)
    called = []
    model.classifier.fc6.register_forward_hook(lambda *a: called.append("fc6"))
    model.features.conv3.register_forward_hook(lambda *a: called.append("conv3"))
    with torch.no_grad():
        layer_outputs(model, x, ["layer2", "layer1"])
    assert called == [], "layers after layer2 ran although only layers 1-2 were asked for"
    with torch.no_grad():
        layer_outputs(model, x, ["layer7"])
    assert called == ["conv3", "fc6"]
    # and no hook is left behind on the model
    assert all(
        not m._forward_hooks for n, m in model.named_modules() if n.endswith(("relu1", "relu7"))
    )


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_pool_map_matches_naive_loops(mode):
    g = torch.Generator().manual_seed(0)
    t = torch.randn(2, 3, 13, 11, generator=g)
    torch.testing.assert_close(pool_map(t, 4, mode), _naive_pool(t, 4, mode))  # non-square
    t = torch.randn(2, 3, 13, 13, generator=g)
    torch.testing.assert_close(pool_map(t, 6, mode), _naive_pool(t, 6, mode))
    # hand-worked 4x4 -> 2x2
    h = torch.arange(16.0).view(1, 1, 4, 4)
    want = (
        torch.tensor([[2.5, 4.5, 10.5, 12.5]])
        if mode == "avg"
        else torch.tensor([[5.0, 7.0, 13.0, 15.0]])
    )
    torch.testing.assert_close(pool_map(h, 2, mode), want)
    # maps no larger than the grid and fully connected outputs are only flattened
    small = torch.randn(2, 3, 3, 3, generator=g)
    assert torch.equal(pool_map(small, 6, mode), small.flatten(1))
    fc = torch.randn(2, 7, generator=g)
    assert torch.equal(pool_map(fc, 6, mode), fc)


def test_extract_all_layers_in_one_pass_equals_each_layer_alone_and_manual():
    model, (x, y) = _model(), _data(10)
    allf = extract_features(model, (x, y), LAYERS, pooled_side=4, batch_size=3, progress=False)
    with torch.no_grad():
        manual = _manual_layers(model, x)
    for l in LAYERS:
        alone = extract_features(
            model, TensorDataset(x, y), [l], pooled_side=4, batch_size=4, progress=False
        )
        assert torch.equal(alone[l], allf[l]) or torch.allclose(alone[l], allf[l], atol=1e-6)
        m = manual[l]
        want = _naive_pool(m, 4, "avg") if m.dim() == 4 and m.shape[-1] > 4 else m.flatten(1)
        torch.testing.assert_close(allf[l], want, rtol=1e-5, atol=1e-6)
        assert allf[l].shape[1] == int(torch.tensor(allf.shapes[l]).prod())
    assert torch.equal(allf.labels, y)
    assert len(allf) == 10


def test_extract_restores_training_mode_and_uses_eval():
    model, (x, y) = _model(), _data(6)
    model.train()  # dropout on: extraction must still be deterministic (eval mode inside)
    a = extract_features(model, (x, y), ["layer7"], progress=False)
    b = extract_features(model, (x, y), ["layer7"], progress=False)
    assert model.training
    assert torch.equal(a["layer7"], b["layer7"])


def test_dataloader_input_and_multihot_labels():
    model, (x, _) = _model(), _data(7)
    multi = (torch.rand(7, 4) > 0.5).long()
    loader = DataLoader(TensorDataset(x, multi), batch_size=3)
    f = extract_features(model, loader, ["layer5", "layer6"], progress=False)
    assert f.labels.shape == (7, 4) and torch.equal(f.labels, multi)
    g = extract_features(model, TensorDataset(x, multi), ["layer5", "layer6"], progress=False)
    torch.testing.assert_close(f["layer5"], g["layer5"])


def test_features_subset_and_state_round_trip():
    model, (x, y) = _model(), _data(8)
    f = extract_features(model, (x, y), ["layer1", "layer7"], progress=False)
    s = f.subset([5, 1])
    assert torch.equal(s["layer7"], f["layer7"][[5, 1]]) and torch.equal(s.labels, y[[5, 1]])
    back = Features.from_dict(f.to_dict())
    assert back.shapes == f.shapes and torch.equal(back["layer1"], f["layer1"])
    with pytest.raises(FeatureError, match="no features for 'layer3'"):
        f["layer3"]


def test_cached_features_reuses_and_keys_on_weights(tmp_path, monkeypatch):
    import zfcore.features as features

    model, (x, y) = _model(), _data(6)
    calls = []
    real = features.extract_features
    monkeypatch.setattr(
        features, "extract_features", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    ds = TensorDataset(x, y)
    a = cached_features(
        model, ds, data_key={"t": 1}, cache_dir=tmp_path, layers=["layer7"], progress=False
    )
    b = cached_features(
        model, ds, data_key={"t": 1}, cache_dir=tmp_path, layers=["layer7"], progress=False
    )
    assert len(calls) == 1 and torch.equal(a["layer7"], b["layer7"])
    other = _model(seed=5)
    assert model_fingerprint(other) != model_fingerprint(model)
    cached_features(
        other, ds, data_key={"t": 1}, cache_dir=tmp_path, layers=["layer7"], progress=False
    )
    assert len(calls) == 2
    with pytest.raises(FeatureError, match="data_key is required"):
        cached_features(model, ds, data_key=None, cache_dir=tmp_path)


def test_bad_arguments_have_clear_errors():
    model, (x, y) = _model(), _data(2)
    with pytest.raises(LayerError, match="unknown layer"):
        extract_features(model, (x, y), ["layer9"], progress=False)
    with pytest.raises(FeatureError, match="pool must be one of"):
        extract_features(model, (x, y), pool="median", progress=False)
    with pytest.raises(FeatureError, match="pooled_side"):
        extract_features(model, (x, y), pooled_side=0, progress=False)
    with pytest.raises(FeatureTypeError, match="torch Dataset"):
        extract_features(model, [1, 2, 3], progress=False)
    with pytest.raises(FeatureError, match="empty"):
        extract_features(model, TensorDataset(x[:0], y[:0]), progress=False)


def test_fingerprint_memo_follows_in_place_changes():
    model = _model()
    a = model_fingerprint(model)
    assert model_fingerprint(model) == a
    with torch.no_grad():
        model.features.conv1.weight[0, 0, 0, 0] += 1.0
    b = model_fingerprint(model)
    assert b != a
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["classifier.fc8.bias"][0] += 1.0
    model.load_state_dict(state)
    assert model_fingerprint(model) not in (a, b)
    fresh = _model()  # equal weights in another object: equal fingerprint
    assert model_fingerprint(fresh) == a


@pytest.mark.slow
def test_benchmark_quick_run_ends_with_result_line(capsys):
    from benchmarks import features as bench

    assert bench.main(["--quick", "--images", "8", "--batch-size", "4"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("RESULT features overhead_vs_deepest=")
    keys = dict(kv.split("=") for kv in last.split()[2:])
    assert {"images_per_s", "peak_mb", "speedup_vs_each_layer"} <= set(keys)
    assert float(keys["images_per_s"]) > 0
