"""The imagenet profile's transfer path (Tables 4-6 with AlexNet on Caltech-101, Caltech-256 and
PASCAL VOC 2012), run on miniature on-disk trees in each data set's real layout. Pretrained
weights are not available offline, so an untrained AlexNet (zfcore.models.alexnet(False)) is
injected: these tests check the plumbing, not the accuracy."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zfcore import transfer
from zfcore.models import alexnet
from zfcore.pretrained import MissingWeightsError
from zfcore.profiles import get_profile

_COLOURS = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 200, 30)]


def _jpeg(path: Path, cls: int, i: int, size=(48, 40)):
    rng = np.random.default_rng([cls, i])
    a = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
    a[8:30, 8 + 4 * cls : 24 + 4 * cls] = _COLOURS[cls % len(_COLOURS)]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, "JPEG")


def _caltech101(root, classes=("accordion", "airplanes", "anchor"), per_class=9):
    base = root / "caltech101" / "101_ObjectCategories"
    for c, name in enumerate(classes + ("BACKGROUND_Google",)):
        for i in range(per_class):
            _jpeg(base / name / f"image_{i + 1:04d}.jpg", c, i)


def _caltech256(root, classes=("001.ak47", "002.american-flag", "003.backpack"), per_class=9):
    base = root / "caltech256" / "256_ObjectCategories"
    for c, name in enumerate(classes + ("257.clutter",)):
        for i in range(per_class):
            _jpeg(base / name / f"{name[:3]}_{i + 1:04d}.jpg", c, i)


_XML = (
    "<annotation><filename>{id}.jpg</filename><size><width>48</width><height>40</height>"
    "<depth>3</depth></size>{objects}</annotation>"
)
_OBJ = (
    "<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>1</ymin>"
    "<xmax>20</xmax><ymax>20</ymax></bndbox></object>"
)


def _voc(root, names=("cat", "dog", "person"), n_train=9, n_val=6):
    base = root / "VOCdevkit" / "VOC2012"
    ids = {"train": [], "val": []}
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            img_id = f"2012_{split}{i:03d}"
            objs = [names[i % len(names)]] + ([names[(i + 1) % len(names)]] if i % 3 == 0 else [])
            _jpeg(base / "JPEGImages" / f"{img_id}.jpg", i % len(names), i)
            (base / "Annotations").mkdir(parents=True, exist_ok=True)
            (base / "Annotations" / f"{img_id}.xml").write_text(
                _XML.format(id=img_id, objects="".join(_OBJ.format(name=o) for o in objs))
            )
            ids[split].append(img_id)
    main = base / "ImageSets" / "Main"
    main.mkdir(parents=True, exist_ok=True)
    for split, v in ids.items():
        (main / f"{split}.txt").write_text("\n".join(v) + "\n")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("zfcore-data")
    _caltech101(root)
    _caltech256(root)
    _voc(root)
    return root


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return alexnet(pretrained=False).eval()


def _profile(root):
    return get_profile("imagenet", data_root=root, image_size=64, device="cpu")


def test_real_transfer_data_pools_every_image_of_caltech(tree):
    P = _profile(tree)
    d = transfer.real_transfer_data(P, "caltech101")
    assert d.name == "Caltech-101" and d.classes == ["accordion", "airplanes", "anchor"]
    assert len(d.dataset) == 3 * 9  # train + val + test of the registry, background excluded
    x, y = d.dataset[0]
    assert x.shape == (3, 64, 64)
    labels = torch.tensor([int(d.dataset[i][1]) for i in range(len(d.dataset))])
    assert torch.bincount(labels).tolist() == [9, 9, 9]
    assert d.key == transfer.real_transfer_data(P, "caltech101").key  # a stable cache key
    d256 = transfer.real_transfer_data(P, "caltech256")
    assert d256.classes == ["ak47", "american-flag", "backpack"] and len(d256.dataset) == 27


def test_studies_follow_section_5_protocols(tree, tmp_path):
    P = _profile(tree)
    studies = transfer.transfer_studies(P)
    assert [d.name for d, _ in studies] == ["Caltech-101", "Caltech-256"]
    assert (
        studies[0][1].ns == (15, 30)
        and studies[0][1].draws == 5
        and studies[0][1].test_per_class == 50
    )
    assert studies[1][1].ns == (15, 30, 45, 60) and studies[1][1].test_per_class == 25
    empty = _profile(tmp_path)
    with pytest.raises(transfer.TransferError, match="caltech101 not found"):
        transfer.transfer_studies(empty)
    assert transfer.multilabel_study(empty) is None


def test_tables_4_5_and_7_on_miniature_caltech(tree, net, tmp_path):
    P = _profile(tree)
    studies = transfer.transfer_studies(
        P,
        ns=(2, 4),
        draws=2,
        test_per_class=3,
        scratch_min_steps=1,
        scratch_max_steps=1,
        min_steps=1,
        train_batch=4,
        max_iter=20,
        network_draws=1,
    )
    for i, (data, cfg) in enumerate(studies):
        if i:  # the from-scratch AlexNet is exercised once (Caltech-101): it is the slow part
            cfg = dataclasses.replace(cfg, scratch=False)
        r = transfer.run_transfer(net, data, cfg, cache_dir=tmp_path, progress=False)
        assert r.pretrained.shape == (2, 2) and r.scratch.shape == ((0, 2) if i else (1, 2))
        assert r.feature_dim == 4096 and r.test_images == 9 and r.classes == data.classes
        assert bool(((r.pretrained >= 0) & (r.pretrained <= 1)).all())
    lp = transfer.probe_layers(
        net, studies[0][0], studies[0][1], n=4, cache_dir=tmp_path, progress=False
    )
    assert lp.dims[-1] == 4096 and lp.accuracy["svm"].shape == (2, 7)
    assert lp.dims[0] == 64 * 6 * 6  # AlexNet's layer 1 (64 maps of 15x15) pooled to 6x6
    rows = transfer.summary_rows([r], transfer.PAPER_TABLES)
    assert {row["source"] for row in rows} == {"ours", "paper"}


def test_table_6_on_miniature_voc(tree, net, tmp_path):
    P = _profile(tree)
    data, cfg = transfer.multilabel_study(P, max_iter=30)
    assert data.name == "PASCAL VOC 2012" and len(data.classes) == 20
    ml = transfer.run_multilabel(net, data, cfg, cache_dir=tmp_path, progress=False)
    assert ml.ap.shape == (20,) and ml.train_images == 9 and ml.test_images == 6
    present = [data.classes.index(c) for c in ("cat", "dog", "person")]
    absent = [k for k in range(20) if k not in present]
    assert not torch.isnan(ml.ap[present]).any() and torch.isnan(ml.ap[absent]).all()
    assert 0 <= ml.mean_ap <= 1
    # the AP of each class is the VOC devkit AP of the probe's scores (recomputed independently)
    feats_tr = transfer._features(net, data, cfg, [cfg.layer], tmp_path, "cpu", False)
    feats_te = transfer._features(net, data, cfg, [cfg.layer], tmp_path, "cpu", False, test=True)
    probe = transfer.fit_probe(
        feats_tr[cfg.layer], feats_tr.labels, "sigmoid", reg=cfg.reg, max_iter=30
    )
    scores = probe.scores(feats_te[cfg.layer])
    for k in present:
        assert float(ml.ap[k]) == pytest.approx(
            transfer.average_precision(scores[:, k], feats_te.labels[:, k], "voc"), abs=1e-6
        )


def test_pretrained_alexnet_missing_offline_names_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub: the weights are not on disk
    with pytest.raises(MissingWeightsError, match="alexnet"):
        transfer.pretrained_model("imagenet")
