"""Streaming top-k mining against a naive computation over all activations; merging shards."""

import pytest
import torch

from zfcore import models
from zfcore.deconv import layer_activations, project
from zfcore.mining import (
    LayerTopK,
    MiningError,
    TopK,
    TopKMiner,
    gather_merge,
    mine_dataset,
    mine_topk,
    top_requests,
)
from zfcore.models import model_fingerprint

LAYERS = ["layer1", "layer2", "layer3", "layer4", "layer5"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = models.zfnet(width=0.0625, image_size=64, fc_units=32, num_classes=4).eval()
    with torch.no_grad():  # a dead map: ties everywhere
        m.features.conv3.weight[1].zero_()
        m.features.conv3.bias[1] = -1.0
    return m


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(37, 3, 64, 64, generator=g)
    y = torch.randint(0, 4, (37,), generator=g)
    return x, y


def naive_topk(model, x, labels, k):
    """Every activation computed at once, then Python sorting per map."""
    acts = layer_activations(model, x, LAYERS)
    out = {}
    for layer, a in acts.items():
        n, c, h, w = a.shape
        rows = []
        for ch in range(c):
            entries = []
            for i in range(n):
                m = a[i, ch]
                v = float(m.max())
                pos = int(torch.nonzero(m == m.max())[0][0] * w + torch.nonzero(m == m.max())[0][1])
                entries.append((-v, i, pos // w, pos % w, int(labels[i])))
            entries.sort()
            rows.append(entries[:k])
        out[layer] = rows
    return out


def as_rows(lt: LayerTopK):
    return [
        [
            (
                -float(lt.values[c, j]),
                int(lt.images[c, j]),
                int(lt.ys[c, j]),
                int(lt.xs[c, j]),
                int(lt.labels[c, j]),
            )
            for j in range(lt.k)
        ]
        for c in range(lt.maps)
    ]


@pytest.mark.parametrize("batch_size", [5, 16, 37])
def test_streaming_equals_naive(model, data, batch_size):
    x, y = data
    want = naive_topk(model, x, y, 9)
    got = mine_topk(model, list(zip(x.split(batch_size), y.split(batch_size))), k=9, progress=False)
    assert got.n_images == 37 and list(got.layers) == LAYERS
    for layer in LAYERS:
        g, w = as_rows(got[layer]), want[layer]
        for c in range(len(w)):
            assert [e[1:] for e in g[c]] == [e[1:] for e in w[c]], (layer, c)
            assert [e[0] for e in g[c]] == pytest.approx([e[0] for e in w[c]], rel=1e-6)
    dead = got["layer3"]
    assert dead.values[1].eq(0).all() and dead.images[1].tolist() == list(range(9))


def test_merge_of_shards_equals_whole(model, data):
    x, y = data
    whole = mine_topk(model, x, k=9, progress=False, batch_size=8)
    # two shards: a contiguous split, and an interleaved three-way split with explicit indices
    a = mine_topk(model, x[:20], k=9, progress=False, batch_size=7)
    b = mine_topk(model, x[20:], k=9, progress=False, start_index=20)
    b2 = mine_topk(model, [x[20:]], k=9, progress=False, start_index=20)
    assert b.equal(b2)
    assert a.merge(b).equal(whole) and b.merge(a).equal(whole)
    shards = []
    for r in range(3):
        idx = torch.arange(r, 37, 3)
        shards.append(
            mine_topk(model, [(x[idx], torch.full((len(idx),), -1), idx)], k=9, progress=False)
        )
    merged = shards[2].merge(shards[0]).merge(shards[1])
    assert merged.equal(whole) and merged.n_images == 37


def test_fewer_images_than_k_and_values_are_real_activations(model, data):
    x, y = data
    small = mine_topk(model, x[:4], k=6, progress=False)
    lt = small["layer2"]
    assert (lt.images[:, 4:] == -1).all() and torch.isinf(lt.values[:, 4:]).all()
    full = mine_topk(model, [(x, y)], k=3, progress=False)
    acts = layer_activations(model, x, ["layer4"])["layer4"]
    lt = full["layer4"]
    c = torch.arange(lt.maps)[:, None].expand(-1, 3)
    assert torch.equal(acts[lt.images, c, lt.ys, lt.xs], lt.values)
    assert torch.equal(lt.labels, y[lt.images])


def test_memory_does_not_grow_with_data(model):
    miner = TopKMiner(model, k=4, layers=["layer1", "layer5"])
    for i in range(5):
        miner.update(torch.randn(6, 3, 64, 64))
        assert {l: tuple(t.values.shape) for l, t in miner.state.items()} == {
            "layer1": (model.features.conv1.out_channels, 4),
            "layer5": (model.features.conv5.out_channels, 4),
        }
    assert miner.result().n_images == 30
    assert int(miner.result()["layer1"].images.max()) < 30


def test_projections_of_mined_entries_reproduce_their_values(model, data):
    x, _ = data
    res = mine_topk(model, x, k=3, progress=False)
    idx, req = top_requests(res, "layer5", channels=[0, 2, 5], ranks=[0, 2])
    assert len(req) == 6 and torch.equal(idx, torch.unique(idx))
    proj = project(model, x[idx], "layer5", req)
    lt = res["layer5"]
    want = lt.values[[0, 0, 2, 2, 5, 5], [0, 2, 0, 2, 0, 2]]
    assert torch.allclose(proj.activation, want)
    assert torch.equal(idx[req.image], lt.images[[0, 0, 2, 2, 5, 5], [0, 2, 0, 2, 0, 2]])


def test_errors_and_helpers(model, data):
    x, y = data
    with pytest.raises(MiningError, match="k must be"):
        mine_topk(model, x, k=0, progress=False)
    with pytest.raises(models.LayerError, match="layer9"):
        mine_topk(model, x, layers=["layer9"], progress=False)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=8, shuffle=True
    )
    with pytest.raises(MiningError, match="shuffle"):
        mine_topk(model, loader, progress=False)
    a = mine_topk(model, x[:5], k=2, progress=False)
    b = mine_topk(model, x[5:9], k=3, progress=False, start_index=5)
    with pytest.raises(MiningError, match="same k"):
        a.merge(b)
    assert gather_merge(a) is a
    assert TopK.from_dict(a.to_dict()).equal(a)
    with pytest.raises(models.LayerError, match="not mined"):
        a["layer7"]
    ordered = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    assert mine_topk(model, ordered, k=9, progress=False).equal(
        mine_topk(model, [(x, y)], k=9, progress=False)
    )


def test_mine_dataset_is_cached_by_weights(tmp_path, monkeypatch):
    from zfcore import mining
    from zfcore.profiles import get_profile

    p = get_profile("tiny", cache_dir=tmp_path)
    torch.manual_seed(0)
    m = models.zfnet(**p.model_kwargs()).eval()
    first = mine_dataset(m, p, n_images=24, k=3, progress=False)
    assert first.n_images == 24 and len(list(tmp_path.glob("topk/*/result.pt"))) == 1
    assert int(first["layer1"].labels.min()) >= 0  # labels come with the scenes
    calls = []
    monkeypatch.setattr(mining, "mine_topk", lambda *a, **k: calls.append(1))
    again = mine_dataset(m, p, n_images=24, k=3, progress=False)
    assert again.equal(first) and not calls
    monkeypatch.undo()
    fp = model_fingerprint(m)
    with torch.no_grad():
        m.features.conv1.bias += 1
    assert model_fingerprint(m) != fp
    other = mine_dataset(m, p, n_images=24, k=3, progress=False)
    assert len(list(tmp_path.glob("topk/*/result.pt"))) == 2 and not other.equal(first)
    with pytest.raises(MiningError, match="n_images"):
        mine_dataset(m, p, n_images=10**6, progress=False)


def test_pick_maps_and_project_top(model, data):
    from zfcore.mining import pick_maps, project_top

    x, y = data
    res = mine_topk(model, [(x, y)], k=4, progress=False)
    lt = res["layer3"]
    picked = pick_maps(res, "layer3", 3)
    assert len(picked) == 3 and 1 not in picked
    assert picked[0] == int(lt.values[:, 0].argmax())
    tp = project_top(model, res, "layer3", lambda idx: x[idx], channels=picked, ranks=[0, 3])
    assert tp.pixels.shape == (6, 3, 64, 64)
    assert torch.allclose(tp.activation, lt.values[tp.channels, tp.ranks])
    assert torch.equal(tp.labels, y[tp.images])


def _rank_worker(rank, world, port, x, out_path):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        torch.manual_seed(0)
        m = models.zfnet(width=0.0625, image_size=64, fc_units=32, num_classes=4).eval()
        idx = torch.arange(rank, len(x), world)  # this rank's shard
        part = mine_topk(
            m, [(x[idx], torch.zeros(len(idx), dtype=torch.long), idx)], k=5, progress=False
        )
        merged = gather_merge(part)
        if rank == 0:
            torch.save(merged.to_dict(), out_path)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_gather_merge_across_processes(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    x = torch.randn(13, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    out = tmp_path / "merged.pt"
    mp.spawn(_rank_worker, args=(2, port, x, str(out)), nprocs=2, join=True)
    torch.manual_seed(0)
    m = models.zfnet(width=0.0625, image_size=64, fc_units=32, num_classes=4).eval()
    whole = mine_topk(m, [(x, torch.zeros(13, dtype=torch.long))], k=5, progress=False)
    assert TopK.from_dict(torch.load(out, weights_only=True)).equal(whole)


def test_top_panels_equal_a_loop_of_projections_and_crops(model, data):
    """top_panels against each mined entry projected alone and cut with crop_patch by hand."""
    from zfcore.mining import TopImages, top_panels
    from zfcore.receptive import crop_patch, receptive_field

    x, y = data
    res = mine_topk(model, [(x, y)], k=3, progress=False)
    ids = list(range(len(x)))
    images = TopImages(ids, x, x.sigmoid())  # any "display" version of the images
    tp = top_panels(model, res, "layer3", [4, 0], images)
    lt, rf = res["layer3"], receptive_field(model, "layer3")
    assert tp.field.size == rf.size
    row = 0
    for c in (4, 0):  # channel-major, strongest first
        for r in range(3):
            i, yy, xx = int(lt.images[c, r]), int(lt.ys[c, r]), int(lt.xs[c, r])
            px = project(model, x[i : i + 1], "layer3", [(0, c, yy, xx)]).pixels[0]
            assert torch.allclose(tp.projections[row], crop_patch(px, rf, yy, xx, 0.0), atol=1e-5)
            assert torch.equal(tp.patches[row], crop_patch(x[i].sigmoid(), rf, yy, xx, 0.5))
            row += 1
    assert row == len(tp.projections)
    whole = top_panels(model, res, "layer3", [4], images, crop=False)
    assert whole.field is None and whole.projections.shape[-1] == 64
    assert torch.equal(whole.patches, x.sigmoid()[lt.images[4]])


def test_panels_labels_and_top_images_by_hand(model, data):
    from zfcore.mining import TopImages, TopPanels, TopProjections

    t = torch.tensor
    entries = TopProjections(
        "layer1",
        "deconvnet",
        t([2, 2, 2, 5]),
        t([0, 1, 2, 0]),
        t([7, 3, 9, 3]),
        t([0, 0, 0, 0]),
        t([0, 0, 0, 0]),
        t([1, 0, 1, 2]),
        torch.zeros(4, 3, 5, 5),
        torch.ones(4),
    )
    panels = TopPanels(entries, None, torch.arange(4.0).view(4, 1, 1, 1), torch.zeros(4, 1, 1, 1))
    got = panels.panels([2, 5], ["cat", "dog", "owl"])
    assert [p["label"] for p in got] == ["map 2: dog x2, cat x1", "map 5: owl x1"]
    assert got[0]["projections"].flatten().tolist() == [0, 1, 2]
    assert [p["label"] for p in panels.panels([5])] == ["map 5"]
    imgs = TopImages(
        [3, 7, 9],
        torch.arange(3.0).view(3, 1),
        torch.arange(3.0).view(3, 1) + 10,
        torch.arange(12.0).view(3, 4),
    )
    assert imgs.load([9, 3]).flatten().tolist() == [2, 0]
    assert imgs.display([7]).flatten().tolist() == [11]
    assert imgs.boxes_of([9]).tolist() == [[8, 9, 10, 11]]
    with pytest.raises(MiningError, match="not loaded"):
        imgs.load([4])
    with pytest.raises(MiningError, match="no object boxes"):
        TopImages([0], torch.zeros(1, 1), torch.zeros(1, 1)).boxes_of([0])


def test_load_top_images_scenes_and_photos(tmp_path):
    from zfcore.data import denormalize, get_dataset, normalize
    from zfcore.mining import load_top_images
    from zfcore.profiles import get_profile

    p = get_profile("tiny", cache_dir=tmp_path)
    torch.manual_seed(0)
    m = models.zfnet(**p.model_kwargs()).eval()
    res = mine_dataset(m, p, n_images=20, k=3, layers=["layer2", "layer4"], progress=False)
    ds = get_dataset(p, "val")
    imgs = load_top_images(ds, p, res, {"layer2": [0, 1]}, {"layer4": [3], "layer2": [1]})
    want = sorted(
        {
            int(i)
            for l, cs in (("layer2", [0, 1]), ("layer4", [3]))
            for c in cs
            for i in res[l].images[c].tolist()
        }
    )
    assert imgs.indices == want
    sb = ds.scenes(want)
    assert torch.equal(imgs.images01, sb.images) and torch.equal(imgs.boxes, sb.boxes)
    assert torch.equal(imgs.inputs, normalize(sb.images, p))
    photos = [
        (normalize(sb.images[i], p), 0) for i in range(len(want))
    ]  # a Dataset of (image, label)
    res_p = TopK(1, {"layer2": LayerTopK(*(torch.tensor([[v]]) for v in (1.0, 2, 0, 0, 0)))}, 3)
    got = load_top_images(photos, p, res_p, {"layer2": [0]})
    assert got.indices == [2] and got.boxes is None
    assert torch.allclose(got.images01, denormalize(photos[2][0][None], p))


def test_strongest_activation_by_a_loop(model, data):
    from zfcore.mining import strongest_activation

    x, _ = data
    for i in range(3):
        a = layer_activations(model, x[i : i + 1], ["layer5"])["layer5"][0]
        best = max(
            (
                (float(a[c, yy, xx]), -c, -yy, -xx)
                for c in range(a.shape[0])
                for yy in range(a.shape[1])
                for xx in range(a.shape[2])
            )
        )
        assert strongest_activation(model, x[i : i + 1], "layer5") == (-best[1], -best[2], -best[3])
