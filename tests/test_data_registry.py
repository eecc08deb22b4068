"""The real-data registry (zfcore.data.registry) on miniature on-disk trees in each data set's
own format, made here. Nothing is downloaded: where a loader has a torchvision counterpart,
torchvision reads the same tree and must agree (an independent reading of the format)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from zfcore.data import DataNotFoundError, class_names, get_dataset, make_loader
from zfcore.data import registry as reg
from zfcore.profiles import get_profile

torch.set_num_threads(1)


def _jpeg(path, size=(40, 30), mode="RGB", seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).convert(mode).save(path, quality=90)
    return path


@pytest.fixture(autouse=True)
def _no_download(monkeypatch):
    monkeypatch.delenv("ZFCORE_DOWNLOAD", raising=False)


# --- Imagenette / ImageNet ------------------------------------------------------------------
def _imagenette_tree(root, wnids=("n01440764", "n02102040"), per_class=3):
    for split in ("train", "val"):
        for c, w in enumerate(wnids):
            for i in range(per_class):
                _jpeg(root / "imagenette2-320" / split / w / f"{w}_{i}.JPEG", seed=c * 10 + i)
    return root


def test_imagenette_reads_torchvision_layout_and_agrees_with_torchvision(tmp_path):
    from torchvision.datasets import Imagenette

    _imagenette_tree(tmp_path)
    ds = reg.imagenette(tmp_path, "train", image_size=32)
    tv = Imagenette(str(tmp_path), split="train", size="320px")
    assert len(ds) == len(tv) == 6
    assert list(ds.classes) == [c[0] for c in tv.classes] == ["tench", "English springer"]
    assert [t for _, t in ds.samples] == [t for _, t in tv._samples]
    x, y = ds[4]
    assert x.shape == (3, 32, 32) and y == 1
    assert len(reg.imagenette(tmp_path, "test", image_size=32)) == 6  # test = val


def test_profile_level_api_on_real_data(tmp_path):
    _imagenette_tree(tmp_path)
    p = get_profile("imagenette", data_root=tmp_path, image_size=32, batch_size=4, num_workers=0)
    ds = get_dataset(p, "val")
    assert class_names(p) == ("tench", "English springer")
    xb, yb = next(iter(make_loader(p, "train", shuffle=True, augment=True)))
    assert xb.shape == (4, 3, 32, 32) and yb.shape == (4,)
    assert len(ds) == 6


def test_imagenet_folder_and_missing_archives(tmp_path):
    from torchvision.datasets import ImageFolder

    for split in ("train", "val"):
        for w in ("n01440764", "n01443537", "n01484850"):
            _jpeg(tmp_path / split / w / f"{w}_1.JPEG")
    ds = reg.imagenet(tmp_path, "val", image_size=32)
    assert list(ds.classes) == ImageFolder(str(tmp_path / "val")).classes
    assert ds[2][0].shape == (3, 32, 32)
    with pytest.raises(DataNotFoundError, match="ILSVRC2012_img_train.tar"):
        reg.imagenet(tmp_path / "nothing", "train")


# --- Caltech ------------------------------------------------------------------------------------
def _caltech101_tree(root, classes=("accordion", "airplanes", "anchor"), per_class=12):
    base = root / "caltech101" / "101_ObjectCategories"
    for c, name in enumerate(classes + ("BACKGROUND_Google",)):
        for i in range(1, per_class + 1):
            # Caltech-101 holds some grayscale pictures: the loader must give RGB
            _jpeg(base / name / f"image_{i:04d}.jpg", mode="L" if i == 1 else "RGB", seed=i)
    return root


def test_caltech101_classes_match_torchvision_and_split_is_disjoint(tmp_path):
    from torchvision.datasets import Caltech101

    _caltech101_tree(tmp_path)
    tv = Caltech101(str(tmp_path))
    parts = {
        s: reg.caltech101(tmp_path, s, image_size=32, test_per_class=3, val_per_class=1)
        for s in ("train", "val", "test")
    }
    assert list(parts["train"].classes) == tv.categories  # BACKGROUND_Google excluded
    paths = {s: {p for p, _ in d.samples} for s, d in parts.items()}
    assert not (paths["train"] & paths["test"]) and not (paths["val"] & paths["test"])
    assert sum(len(v) for v in paths.values()) == len(tv) == 36
    assert np.bincount(parts["test"].targets).tolist() == [3, 3, 3]
    again = reg.caltech101(tmp_path, "test", image_size=32, test_per_class=3, val_per_class=1)
    assert again.samples == parts["test"].samples  # seeded: same split every time
    x, y = parts["train"][0]
    assert x.shape == (3, 32, 32)


def test_transfer_group_of_real_profiles_is_caltech101(tmp_path):
    _caltech101_tree(tmp_path)
    p = get_profile("imagenette", data_root=tmp_path, image_size=32)
    ds = get_dataset(p, "test", "transfer")
    assert ds.name == "caltech101" and len(ds.classes) == 3


def test_caltech256_layout_drops_clutter(tmp_path):
    base = tmp_path / "caltech256" / "256_ObjectCategories"
    for name in ("001.ak47", "002.american-flag", "257.clutter"):
        for i in range(1, 7):
            _jpeg(base / name / f"{name[:3]}_{i:04d}.jpg", seed=i)
    ds = reg.caltech256(tmp_path, "train", image_size=32, test_per_class=2, val_per_class=0)
    assert ds.classes == ("ak47", "american-flag")
    assert len(ds) == 8 and ds[0][0].shape == (3, 32, 32)


# --- PASCAL VOC 2012 -------------------------------------------------------------------------
_XML = """<annotation><filename>{id}.jpg</filename>{objects}</annotation>"""
_OBJ = "<object><name>{name}</name><difficult>{d}</difficult></object>"


def _voc_tree(root):
    base = root / "VOCdevkit" / "VOC2012"
    images = {
        "2012_000001": [("dog", 0), ("person", 0), ("dog", 0)],
        "2012_000002": [("cat", 0), ("bottle", 1)],
        "2012_000003": [("aeroplane", 0)],
    }
    for i, objs in images.items():
        _jpeg(base / "JPEGImages" / f"{i}.jpg")
        (base / "Annotations").mkdir(parents=True, exist_ok=True)
        (base / "Annotations" / f"{i}.xml").write_text(
            _XML.format(id=i, objects="".join(_OBJ.format(name=n, d=d) for n, d in objs))
        )
    main = base / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("2012_000001\n2012_000002\n")
    (main / "val.txt").write_text("2012_000003\n")
    return images


def test_voc2012_multilabel_targets_agree_with_torchvision_parse(tmp_path):
    from torchvision.datasets import VOCDetection

    _voc_tree(tmp_path)
    ds = reg.voc2012(tmp_path, "train", image_size=32)
    tv = VOCDetection(str(tmp_path), year="2012", image_set="train")
    for (_, target), (_, ann) in zip(ds.samples, tv):
        names = {o["name"] for o in ann["annotation"]["object"] if o["difficult"] == "0"}
        assert {reg.VOC_CLASSES[i] for i in torch.nonzero(target).view(-1).tolist()} == names
    assert ds.samples[1][1][reg.VOC_CLASSES.index("bottle")] == 0  # difficult only
    with_difficult = reg.voc2012(tmp_path, "train", image_size=32, include_difficult=True)
    assert with_difficult.samples[1][1][reg.VOC_CLASSES.index("bottle")] == 1
    x, t = reg.voc2012(tmp_path, "val", image_size=32)[0]
    assert x.shape == (3, 32, 32) and t.shape == (20,) and int(t.sum()) == 1


# --- Preprocessing and errors ------------------------------------------------------------------
def test_paper_transform_centre_crop_by_hand():
    """Short side to 256/224 * S, centre square, centre S crop: checked on an image whose pixel
    values encode their own column, against the arithmetic done by hand."""
    W, H = 120, 60
    cols = np.tile(np.arange(W, dtype=np.uint8), (H, 1))
    img = Image.fromarray(np.stack([cols] * 3, -1))
    x = reg.paper_transform(28, train=False, normalize="none")(img)  # big side = 32
    assert x.shape == (3, 28, 28)
    # resize 120x60 -> 64x32; centre 32 crop keeps columns 16..47; centre 28 crop: 18..45
    # (of the 64-wide image), i.e. original columns ~ (18.5 .. 45.5) * 120/64
    centre_cols = x[0, 14] * 255
    expect = (np.arange(18, 46) + 0.5) * W / 64 - 0.5
    np.testing.assert_allclose(centre_cols.numpy(), expect, atol=2.5)


def test_missing_data_names_what_to_fetch_and_where(tmp_path):
    with pytest.raises(DataNotFoundError, match="imagenette2-320.tgz") as e:
        reg.imagenette(tmp_path, "train")
    assert str(tmp_path) in str(e.value)
    with pytest.raises(DataNotFoundError, match="101_ObjectCategories"):
        reg.caltech101(tmp_path, "train")
    with pytest.raises(DataNotFoundError, match="VOCtrainval_11-May-2012.tar"):
        reg.voc2012(tmp_path, "train")
    with pytest.raises(DataNotFoundError, match="256_ObjectCategories"):
        reg.caltech256(tmp_path, "train")
    with pytest.raises(ValueError, match="split must be"):
        reg.caltech101(tmp_path, "validation")


def test_unreadable_image_names_the_file(tmp_path):
    _caltech101_tree(tmp_path, classes=("accordion",), per_class=4)
    bad = tmp_path / "caltech101" / "101_ObjectCategories" / "accordion" / "image_0002.jpg"
    bad.write_bytes(b"not a jpeg")
    ds = reg.caltech101(tmp_path, "train", image_size=32, test_per_class=1, val_per_class=0)
    i = [p for p, _ in ds.samples].index(str(bad))
    with pytest.raises(OSError, match="image_0002.jpg"):
        ds[i]
