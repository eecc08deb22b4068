"""One place that returns data sets by name.

:func:`get_dataset` dispatches on ``profile.dataset``:

* ``"scenes"`` (profiles ``tiny``, ``mini``): the procedural scenes, :class:`SceneDataset`;
  ``group="transfer"`` gives their held-out classes.
* ``"imagenette"``: Imagenette (10 ImageNet classes; torchvision's ``Imagenette``);
  ``group="transfer"`` gives Caltech-101 (the paper's Tables 4, 6 and 7).
* ``"imagenet"``: the user's ImageNet, either an ``ImageFolder`` tree (``train/<wnid>/*.JPEG``,
  ``val/<wnid>/*.JPEG``) or torchvision's ``ImageNet`` archives; ``group="transfer"`` gives
  Caltech-101.

:func:`caltech101`, :func:`caltech256`, :func:`voc2012` and :func:`imagenette` can also be called
directly (Tables 4-6 of the paper use Caltech-101, Caltech-256 and PASCAL VOC 2012).

Real images get the paper's preprocessing (section 3.1): the short side resized to
``256/224 * image_size``, the centre square cropped; training views are one of the five
``image_size`` sub-crops (corners and centre), mirrored at random; evaluation takes the centre
crop. Images are normalised with torchvision's ImageNet statistics (what its pretrained weights
expect); :class:`PixelMean` gives the paper's per-pixel mean subtraction instead.

Nothing is downloaded unless the caller passes ``download=True`` (or sets ``ZFCORE_DOWNLOAD=1``).
A missing data set raises :class:`DataNotFoundError`, which names what to fetch and where to put
it. The data live under ``profile.data_root`` (``$ZFCORE_DATA``, default ``~/zfcore-data``).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ZFCoreError
from ..locations import download_allowed
from ..profiles import get_profile
from .scenes import GROUPS, SceneDataset
from .transforms import CROP_FRACTION, IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "DataError",
    "DataTypeError",
    "UnreadableImageError",
    "get_dataset",
    "make_loader",
    "class_names",
    "DataNotFoundError",
    "imagenette",
    "imagenet",
    "caltech101",
    "caltech256",
    "voc2012",
    "VOC_CLASSES",
    "paper_transform",
    "PixelMean",
    "RealDataset",
    "REAL_SPLITS",
]

REAL_SPLITS = ("train", "val", "test")

#: The 20 PASCAL VOC classes, in the order of the multi-label target vector.
VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


class DataError(ZFCoreError, ValueError):
    """A bad data set argument (split, group, normalisation, batch size)."""


class DataTypeError(DataError, TypeError):
    """A data set argument of the wrong type."""


class UnreadableImageError(ZFCoreError, OSError):
    """An image file of a data set on disk that cannot be decoded."""


class DataNotFoundError(ZFCoreError, FileNotFoundError):
    """A real data set is not on disk (and may not, or could not, be downloaded)."""


def _check_split(split: str) -> None:
    if split not in REAL_SPLITS:
        raise DataError(f"split must be one of {REAL_SPLITS}, not {split!r}")


# --------------------------------------------------------------------------------------------
# Preprocessing (section 3.1)
# --------------------------------------------------------------------------------------------
class PixelMean(torch.nn.Module):
    """The paper's per-pixel mean subtraction: ``x - mean_image`` (``mean_image`` (3, S, S),
    e.g. the average of the training images after resizing and cropping)."""

    def __init__(self, mean_image: torch.Tensor):
        super().__init__()
        if not isinstance(mean_image, torch.Tensor) or mean_image.dim() != 3:
            raise DataTypeError("mean_image must be a (3, S, S) tensor")
        self.register_buffer("mean_image", mean_image)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != self.mean_image.shape[-2:]:
            raise DataError(
                f"image size {tuple(x.shape[-2:])} differs from the mean image's "
                f"{tuple(self.mean_image.shape[-2:])}"
            )
        return x - self.mean_image


class _RandomPaperCrop(torch.nn.Module):
    """One of the paper's 10 training views: a corner or centre crop, mirrored half the time."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        H, W = img.shape[-2:]
        c = self.size
        pos = int(torch.randint(5, ()))
        y0, x0 = [((H - c) // 2, (W - c) // 2), (0, 0), (0, W - c), (H - c, 0), (H - c, W - c)][pos]
        out = img[..., y0 : y0 + c, x0 : x0 + c]
        return out.flip(-1) if bool(torch.rand(()) < 0.5) else out


def paper_transform(
    image_size: int = 224,
    train: bool = False,
    normalize: str = "imagenet",
    mean_image: torch.Tensor | None = None,
):
    """The paper's preprocessing of a PIL image (section 3.1): short side to
    ``round(image_size / CROP_FRACTION)`` (256 for 224), centre square crop, then a random corner
    or centre ``image_size`` crop with a random mirror (``train=True``) or the centre crop.
    ``normalize``: ``"imagenet"`` (torchvision's statistics), ``"pixel_mean"`` (subtract
    ``mean_image``) or ``"none"`` (images in [0, 1])."""
    from torchvision.transforms import v2

    big = int(round(image_size / CROP_FRACTION))
    steps = [
        v2.ToImage(),
        v2.RGB(),
        v2.Resize(big, antialias=True),
        v2.CenterCrop(big),
        v2.ToDtype(torch.float32, scale=True),
    ]
    steps.append(_RandomPaperCrop(image_size) if train else v2.CenterCrop(image_size))
    if normalize == "imagenet":
        steps.append(v2.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    elif normalize == "pixel_mean":
        if mean_image is None:
            raise DataError("normalize='pixel_mean' needs mean_image (3, S, S)")
        steps.append(PixelMean(mean_image))
    elif normalize != "none":
        raise DataError(f"normalize must be 'imagenet', 'pixel_mean' or 'none', not {normalize!r}")
    return v2.Compose(steps)


class RealDataset(Dataset):
    """A list of ``(path, target)`` samples read with PIL and preprocessed by ``transform``.

    ``classes`` names the targets (for multi-label sets, the positions of the target vector)."""

    def __init__(self, samples, classes, transform=None, name: str = "dataset"):
        self.samples = list(samples)
        self.classes = tuple(classes)
        self.transform = transform
        self.name = name

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        from PIL import Image

        path, target = self.samples[i]
        try:
            with Image.open(path) as im:
                im.load()
                img = im.convert("RGB")
        except Exception as e:  # PIL.UnidentifiedImageError, OSError, ...
            raise UnreadableImageError(
                f"{self.name}: cannot read image {path} ({type(e).__name__}: {e})"
            ) from None
        if self.transform is not None:
            img = self.transform(img)
        return img, target

    @property
    def targets(self):
        return [t for _, t in self.samples]

    def __repr__(self) -> str:
        return f"RealDataset({self.name!r}, n={len(self)}, classes={len(self.classes)})"


def _split_per_class(labels, seed: int, val_per_class: int, test_per_class: int):
    """Deterministic per-class split of a data set with no official one (the Caltech sets):
    after a seeded shuffle of each class, the last ``test_per_class`` images are the test set,
    the ``val_per_class`` before them validation, the rest training."""
    labels = np.asarray(labels)
    out = {"train": [], "val": [], "test": []}
    rng = np.random.default_rng([int(seed), 101])
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = min(test_per_class, max(1, len(idx) // 3))
        n_val = min(val_per_class, max(0, (len(idx) - n_test) // 4))
        out["test"].extend(idx[len(idx) - n_test :])
        out["val"].extend(idx[len(idx) - n_test - n_val : len(idx) - n_test])
        out["train"].extend(idx[: len(idx) - n_test - n_val])
    return {k: sorted(int(i) for i in v) for k, v in out.items()}


def _image_files(folder: Path, exts=(".jpg", ".jpeg", ".png")) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts)


# --------------------------------------------------------------------------------------------
# The data sets
# --------------------------------------------------------------------------------------------
_IMAGENETTE_DIRS = ("imagenette2-320", "imagenette2", "imagenette2-160")


def imagenette(
    root,
    split: str = "train",
    image_size: int = 224,
    augment: bool = False,
    download: bool | None = None,
    normalize: str = "imagenet",
):
    """Imagenette (10 easy ImageNet classes) from ``root`` (torchvision's layout:
    ``root/imagenette2-320/{train,val}/<wnid>/*.JPEG``; the full-size and 160 px versions are
    accepted too). Imagenette has no test split: ``"test"`` is its validation set."""
    _check_split(split)
    root = Path(root)
    found = next((root / d for d in _IMAGENETTE_DIRS if (root / d / "train").is_dir()), None)
    if found is None:
        if download_allowed(download):
            from torchvision.datasets import Imagenette

            try:
                Imagenette(str(root), split="train", size="320px", download=True)
            except Exception as e:
                raise DataNotFoundError(
                    f"Imagenette download failed ({type(e).__name__}: {e}). Fetch "
                    f"https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz and "
                    f"extract it into {root} (giving {root}/imagenette2-320/train)"
                ) from None
            found = root / "imagenette2-320"
        else:
            raise DataNotFoundError(
                f"Imagenette not found under {root}. Fetch "
                f"https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz and extract it "
                f"there (giving {root}/imagenette2-320/train/n01440764/...), or call with "
                f"download=True (or set ZFCORE_DOWNLOAD=1) to let torchvision download it"
            )
    from torchvision.datasets import Imagenette

    folder = found / ("train" if split == "train" else "val")
    wnids = sorted(p.name for p in folder.iterdir() if p.is_dir())
    names = [Imagenette._WNID_TO_CLASS.get(w, (w,))[0] for w in wnids]
    samples = [(str(f), c) for c, w in enumerate(wnids) for f in _image_files(folder / w)]
    if not samples:
        raise DataNotFoundError(f"Imagenette folder {folder} holds no images")
    ds = RealDataset(
        samples, names, paper_transform(image_size, augment, normalize), name="imagenette"
    )
    ds.wnids = tuple(wnids)
    return ds


def imagenet(
    root,
    split: str = "train",
    image_size: int = 224,
    augment: bool = False,
    normalize: str = "imagenet",
):
    """ImageNet 2012 from ``root``: an ``ImageFolder`` tree (``root/train/<wnid>/*.JPEG``,
    ``root/val/<wnid>/*.JPEG``) or torchvision's ``ImageNet`` archives
    (``ILSVRC2012_devkit_t12.tar.gz``, ``ILSVRC2012_img_train.tar``, ``ILSVRC2012_img_val.tar``).
    ImageNet's test labels are not public: ``"test"`` is the validation set, as in the paper's
    Table 2. Never downloaded (ImageNet requires registration at image-net.org)."""
    _check_split(split)
    root = Path(root)
    sub = "train" if split == "train" else "val"
    tf = paper_transform(image_size, augment, normalize)
    if (root / sub).is_dir() and any(p.is_dir() for p in (root / sub).iterdir()):
        from torchvision.datasets import ImageFolder

        base = ImageFolder(str(root / sub))
        ds = RealDataset(base.samples, base.classes, tf, name="imagenet")
        return ds
    archives = [
        "ILSVRC2012_devkit_t12.tar.gz",
        "ILSVRC2012_img_train.tar" if sub == "train" else "ILSVRC2012_img_val.tar",
    ]
    if all((root / a).is_file() for a in archives) or (root / "meta.bin").is_file():
        from torchvision.datasets import ImageNet

        base = ImageNet(str(root), split=sub)
        names = [c[0] for c in base.classes]
        return RealDataset(base.samples, names, tf, name="imagenet")
    raise DataNotFoundError(
        f"ImageNet {sub} split not found under {root}. Either put an ImageFolder tree there "
        f"({root}/{sub}/<wnid>/*.JPEG) or place {', '.join(archives)} (from "
        f"https://image-net.org/download.php, registration required) in {root}; "
        f"set ZFCORE_DATA or profile.data_root to point elsewhere"
    )


def caltech101(
    root,
    split: str = "train",
    image_size: int = 224,
    augment: bool = False,
    download: bool | None = None,
    seed: int = 0,
    test_per_class: int = 50,
    val_per_class: int = 5,
    normalize: str = "imagenet",
):
    """Caltech-101 (Tables 4, 6, 7) from torchvision's layout
    ``root/caltech101/101_ObjectCategories/<class>/image_0001.jpg`` (``BACKGROUND_Google`` is
    not a class). No official split: a seeded per-class split holds out ``test_per_class``
    images per class for testing (fewer for small classes)."""
    return _caltech(
        root,
        "caltech101",
        "101_ObjectCategories",
        ("BACKGROUND_Google",),
        split,
        image_size,
        augment,
        download,
        seed,
        test_per_class,
        val_per_class,
        normalize,
    )


def caltech256(
    root,
    split: str = "train",
    image_size: int = 224,
    augment: bool = False,
    download: bool | None = None,
    seed: int = 0,
    test_per_class: int = 25,
    val_per_class: int = 5,
    normalize: str = "imagenet",
):
    """Caltech-256 (Table 5) from torchvision's layout
    ``root/caltech256/256_ObjectCategories/001.ak47/001_0001.jpg``; the ``257.clutter`` folder
    is not a class. Seeded per-class split as in :func:`caltech101`."""
    return _caltech(
        root,
        "caltech256",
        "256_ObjectCategories",
        ("257.clutter",),
        split,
        image_size,
        augment,
        download,
        seed,
        test_per_class,
        val_per_class,
        normalize,
    )


def _caltech(
    root,
    name,
    categories_dir,
    excluded,
    split,
    image_size,
    augment,
    download,
    seed,
    test_per_class,
    val_per_class,
    normalize,
):
    _check_split(split)
    root = Path(root)
    folder = root / name / categories_dir
    if not folder.is_dir():
        if download_allowed(download):
            import torchvision.datasets as tvd

            try:
                getattr(tvd, "Caltech101" if name == "caltech101" else "Caltech256")(
                    str(root), download=True
                )
            except Exception as e:
                raise DataNotFoundError(
                    f"{name} download failed ({type(e).__name__}: {e}); fetch it from "
                    f"https://data.caltech.edu and extract it so that {folder} exists"
                ) from None
        else:
            raise DataNotFoundError(
                f"{name} not found: expected {folder}/<class>/*.jpg. Fetch it from "
                f"https://data.caltech.edu (the {name} archive) and extract it there, or call "
                f"with download=True (or set ZFCORE_DOWNLOAD=1) to let torchvision fetch it"
            )
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in excluded)
    files, labels = [], []
    for c, cls in enumerate(classes):
        for f in _image_files(folder / cls):
            files.append(str(f))
            labels.append(c)
    if not files:
        raise DataNotFoundError(f"{folder} holds no images")
    parts = _split_per_class(labels, seed, val_per_class, test_per_class)[split]
    names = [c.split(".", 1)[1] if name == "caltech256" and "." in c else c for c in classes]
    return RealDataset(
        [(files[i], labels[i]) for i in parts],
        names,
        paper_transform(image_size, augment, normalize),
        name=name,
    )


def voc2012(
    root,
    split: str = "train",
    image_size: int = 224,
    augment: bool = False,
    download: bool | None = None,
    include_difficult: bool = False,
    normalize: str = "imagenet",
):
    """PASCAL VOC 2012 as multi-label classification (Table 6): the target of an image is a
    (20,) float vector with 1 for every class that has an object in its annotation (objects
    marked ``difficult`` are ignored unless ``include_difficult``). Layout:
    ``root/VOCdevkit/VOC2012/{JPEGImages,Annotations,ImageSets/Main}``. The test annotations
    are not public: ``"val"`` and ``"test"`` are both the official ``val`` set."""
    _check_split(split)
    root = Path(root)
    base = root / "VOCdevkit" / "VOC2012"
    image_set = "train" if split == "train" else "val"
    list_file = base / "ImageSets" / "Main" / f"{image_set}.txt"
    if not list_file.is_file():
        if download_allowed(download):
            from torchvision.datasets import VOCDetection

            try:
                VOCDetection(str(root), year="2012", image_set=image_set, download=True)
            except Exception as e:
                raise DataNotFoundError(
                    f"VOC 2012 download failed ({type(e).__name__}: {e}); fetch "
                    f"VOCtrainval_11-May-2012.tar from http://host.robots.ox.ac.uk/pascal/VOC/"
                    f" and extract it into {root}"
                ) from None
        else:
            raise DataNotFoundError(
                f"PASCAL VOC 2012 not found: expected {list_file}. Fetch "
                f"VOCtrainval_11-May-2012.tar from http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ "
                f"and extract it into {root} (giving {base}), or call with download=True"
            )
    ids = [ln.strip().split()[0] for ln in list_file.read_text().splitlines() if ln.strip()]
    samples = []
    for i in ids:
        target = torch.zeros(len(VOC_CLASSES))
        ann = base / "Annotations" / f"{i}.xml"
        try:
            tree = ET.parse(ann)
        except (OSError, ET.ParseError) as e:
            raise DataNotFoundError(f"VOC annotation {ann} missing or unreadable ({e})") from None
        for obj in tree.getroot().iter("object"):
            cls = (obj.findtext("name") or "").strip()
            difficult = (obj.findtext("difficult") or "0").strip() == "1"
            if cls in VOC_CLASSES and (include_difficult or not difficult):
                target[VOC_CLASSES.index(cls)] = 1.0
        samples.append((str(base / "JPEGImages" / f"{i}.jpg"), target))
    return RealDataset(
        samples, VOC_CLASSES, paper_transform(image_size, augment, normalize), name="voc2012"
    )


# --------------------------------------------------------------------------------------------
# The profile-level API
# --------------------------------------------------------------------------------------------
def get_dataset(
    profile,
    split: str,
    group: str = "main",
    *,
    augment: bool = False,
    epoch: int = 0,
    download: bool | None = None,
):
    """The ``split`` (``"train"``, ``"val"``, ``"test"``) of ``group`` for ``profile``, as a
    ``Dataset`` of ``(normalised image, label)``.

    ``group="main"`` is the classes the model is trained on (ImageNet's role); ``"transfer"`` is
    the held-out classes (the Caltech analogue of Tables 4-7). ``augment=True`` gives the paper's
    training views (random corner/centre crops and mirrors, section 3.1). Real data sets are read
    from ``profile.data_root`` and downloaded only if ``download=True`` (or
    ``ZFCORE_DOWNLOAD=1``)."""
    p = get_profile(profile)
    if group not in GROUPS:
        raise DataError(
            f"group must be 'main' (pretraining classes) or 'transfer' (held-out "
            f"classes), not {group!r}"
        )
    _check_split(split)
    if p.dataset == "scenes":
        return SceneDataset(p, split, group, augment=augment, epoch=epoch)
    root = Path(p.data_root)
    if group == "transfer":
        return caltech101(root, split, p.image_size, augment, download, seed=p.data_seed)
    if p.dataset == "imagenette":
        return imagenette(root, split, p.image_size, augment, download)
    if p.dataset == "imagenet":
        return imagenet(root / "imagenet", split, p.image_size, augment)
    raise DataError(
        f"profile {p.name!r} names an unknown data set {p.dataset!r}: use "
        f"'scenes', 'imagenette' or 'imagenet'"
    )


def class_names(profile, group: str = "main") -> tuple[str, ...]:
    """The class names of ``group`` for ``profile`` (label ``i`` is ``class_names(...)[i]``)."""
    p = get_profile(profile)
    if group not in GROUPS:
        raise DataError(f"group must be 'main' or 'transfer', not {group!r}")
    if p.dataset == "scenes":
        return tuple(GROUPS[group][: p.num_classes]) if group == "main" else tuple(GROUPS[group])
    return tuple(get_dataset(p, "val", group).classes)


def make_loader(
    profile,
    split: str,
    group: str = "main",
    shuffle: bool = False,
    augment: bool = False,
    batch_size: int | None = None,
    epoch: int = 0,
    drop_last: bool = False,
    download: bool | None = None,
) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` over :func:`get_dataset` with ``profile.batch_size`` (or
    ``batch_size``). ``augment=True`` applies the paper's crops and flips (section 3.1). On the
    procedural profiles the shuffle order and the augmentation are pure functions of
    ``(profile.seed, epoch)``, so epoch ``e`` is the same on every run; each batch is rendered
    at once (the data set's ``__getitems__``)."""
    p = get_profile(profile)
    ds = get_dataset(p, split, group, augment=augment, epoch=epoch, download=download)
    bs = p.batch_size if batch_size is None else batch_size
    if not isinstance(bs, int) or isinstance(bs, bool) or bs < 1:
        raise DataError(f"batch_size must be a positive int, not {batch_size!r}")
    gen = torch.Generator().manual_seed(int(p.seed) * 1_000_003 + int(epoch))
    workers = min(int(p.num_workers), os.cpu_count() or 1)  # never more workers than cores
    return torch.utils.data.DataLoader(
        ds,
        batch_size=bs,
        shuffle=bool(shuffle),
        generator=gen,
        num_workers=workers,
        drop_last=drop_last,
    )
