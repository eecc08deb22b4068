"""A small ZF network, a learnable synthetic pool and miniature Caltech-101, Caltech-256 and
PASCAL VOC 2012 trees in each data set's real layout, for the tests of section 5's engine and
studies (zfcore.transfer, zfcore.paper.tables4_6_transfer, zfcore.paper.table7_features)."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from zfcore.models import alexnet, zfnet
from zfcore.profiles import get_profile


def small_zfnet(seed=0, classes=5):
    """A narrow ZF network on 64 x 64 inputs, seeded, in eval mode."""
    torch.manual_seed(seed)
    return zfnet(width=0.125, image_size=64, num_classes=classes, fc_units=512).eval()


def square_pool(per_class=12, classes=4, seed=0):
    """A learnable synthetic pool: each class is a bright square at its own place and channel."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(per_class * classes) % classes
    x = 0.3 * torch.randn(len(y), 3, 64, 64, generator=g)
    for c in range(classes):
        x[y == c, c % 3, 10 * c : 10 * c + 20, 10 * c : 10 * c + 20] += 2.0
    return x, y


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


def real_layout_tree(root: Path) -> Path:
    """Miniature Caltech-101, Caltech-256 (3 classes of 9 images each, plus the background
    class) and PASCAL VOC 2012 (9 train and 6 val images of cats, dogs and people) under
    ``root``, as :mod:`zfcore.data.registry` reads them."""
    _caltech101(root)
    _caltech256(root)
    _voc(root)
    return root


def imagenet_profile(root: Path):
    """The imagenet profile reading ``root``, at 64 x 64 pixels on the CPU."""
    return get_profile("imagenet", data_root=root, image_size=64, device="cpu")


def untrained_alexnet():
    """An untrained AlexNet (pretrained weights are not available offline), seeded, in eval
    mode: the real-data tests check the plumbing, not the accuracy."""
    torch.manual_seed(0)
    return alexnet(pretrained=False).eval()
