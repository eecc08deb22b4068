"""The images of a transfer study (section 5): the random draws of ``n`` training images per class
(:func:`make_splits`, :func:`remap_labels`), the pools they are drawn from (:class:`TransferData`,
:class:`PooledSplits`) and their cached features (:func:`transfer_features`), and the network
whose layers are transferred (:func:`pretrained_model`).

Section 5 draws ``n`` training images per class from Caltech-101 (15 or 30) and Caltech-256
(15, 30, 45, 60) five times and tests on the rest (Tables 4-5, Fig. 9); PASCAL VOC 2012 has a
train and a test split (Table 6). The procedural profiles use the held-out scene classes as the
Caltech analogue (:func:`transfer_data`); the real-data profiles read Caltech-101, Caltech-256 and
PASCAL VOC 2012 from disk (:func:`real_transfer_data`; a missing set raises ``DataNotFoundError``
naming what to fetch and where). :func:`transfer_studies` / :func:`multilabel_study` pick a
profile's targets, each with its :class:`TransferConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from .. import data as zdata
from ..cache import config_hash
from ..data import registry
from ..errors import ZFCoreError
from ..features import Features, cached_features
from ..models import alexnet
from ..profiles import Profile, get_profile
from ..train import trained_model
from .config import TransferConfig, TransferError, transfer_config

__all__ = [
    "Split",
    "make_splits",
    "remap_labels",
    "TransferData",
    "transfer_features",
    "PooledSplits",
    "PoolIndexError",
    "transfer_data",
    "REAL_DATASETS",
    "real_transfer_data",
    "multilabel_study",
    "transfer_studies",
    "pretrained_model",
]


# ---------------------------------------------------------------------------------------------
# Splits: n training images per class, a disjoint test set, several random draws
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """One random draw: ``train[n]`` are pool indices with ``n`` images of every class (nested:
    the first ``n`` of one shuffled order, so a larger ``n`` adds images), ``test`` the disjoint
    test indices (the same for every ``n`` of this draw)."""

    draw: int
    train: dict[int, torch.Tensor]
    test: torch.Tensor


def _class_labels(labels: torch.Tensor) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.dim() != 1:
        raise TransferError(
            f"labels must be 1-d class indices (got shape {tuple(labels.shape)}); "
            f"multi-label data (PASCAL VOC) uses run_multilabel"
        )
    return labels.long()


def make_splits(
    labels: "torch.Tensor | Sequence[int]",
    ns: Sequence[int],
    draws: int,
    test_per_class: int | None = 50,
    seed: int = 0,
) -> list[Split]:
    """``draws`` reproducible draws of ``n`` training images per class for every ``n`` in ``ns``.

    For draw ``d`` each class's images are shuffled by ``numpy.random.default_rng([seed, d])``
    (the same on every machine); the first ``n`` are the training images for ``n``, and the test
    images are the next ``test_per_class`` after ``max(ns)`` (``None``: all of them), so train and
    test never overlap and the test set does not change with ``n``. Every class needs at least
    ``max(ns) + 1`` images.
    """
    labels = _class_labels(labels)
    ns = sorted(int(n) for n in ns)
    if not ns or ns[0] < 1:
        raise TransferError(f"ns must be positive training-image counts, not {ns}")
    n_max = ns[-1]
    classes, counts = torch.unique(labels, return_counts=True)
    short = [(int(c), int(k)) for c, k in zip(classes, counts) if k < n_max + 1]
    if short:
        raise TransferError(
            f"{len(short)} class(es) have too few images for n = {n_max} training images plus a "
            f"test image: (class, images) {short[:5]}; lower ns or add images"
        )
    lab = labels.numpy()
    out = []
    for d in range(draws):
        rng = np.random.default_rng([seed, d])
        train = {n: [] for n in ns}
        test = []
        for c in classes.tolist():
            idx = rng.permutation(np.flatnonzero(lab == c))
            for n in ns:
                train[n].append(idx[:n])
            rest = idx[n_max:]
            test.append(rest if test_per_class is None else rest[:test_per_class])
        out.append(
            Split(
                d,
                {n: torch.from_numpy(np.sort(np.concatenate(v))) for n, v in train.items()},
                torch.from_numpy(np.sort(np.concatenate(test))),
            )
        )
    return out


def remap_labels(labels: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """``labels`` renumbered ``0..K-1`` in the order of the classes present, and those classes:
    a pool whose labels skip some classes still gets a ``K``-way softmax."""
    labels = torch.as_tensor(labels).long()
    present = torch.unique(labels)
    lut = torch.full((int(present.max()) + 1,), -1, dtype=torch.long)
    lut[present] = torch.arange(len(present))
    return lut[labels], present.tolist()


# ---------------------------------------------------------------------------------------------
# Pools to draw from: the held-out scene classes, Caltech-101/256, PASCAL VOC 2012
# ---------------------------------------------------------------------------------------------


@dataclass
class TransferData:
    """A labelled pool of images to transfer to: a Dataset of ``(normalised image, label)``.

    ``key`` identifies the pool in cache keys; ``classes`` names the labels 0..K-1;
    ``test_dataset`` is the separate test split of multi-label sets (PASCAL VOC), else ``None``
    (single-label pools are split by :func:`make_splits`).
    """

    name: str
    dataset: Dataset
    classes: list[str]
    key: Any
    test_dataset: Dataset | None = None
    test_key: Any = None

    def names_of(self, present: Sequence[int]) -> list[str]:
        """The names of the classes ``present`` (their number where the pool names none)."""
        return [self.classes[c] if c < len(self.classes) else str(c) for c in present]


def transfer_features(
    model: nn.Module,
    data: TransferData,
    config: TransferConfig,
    layers: Sequence[str],
    *,
    cache_dir,
    device: "str | torch.device | None" = None,
    progress: bool = True,
    test: bool = False,
) -> Features:
    """The features of ``layers`` for every image of ``data``'s pool (``test``: of its separate
    test split), pooled and batched as ``config`` says, cached by
    :func:`zfcore.features.cached_features` under the pool's key: computed once for every draw,
    every ``n`` and every classifier."""
    return cached_features(
        model,
        data.test_dataset if test else data.dataset,
        data_key=data.test_key if test else data.key,
        cache_dir=cache_dir,
        layers=layers,
        pooled_side=config.pooled_side,
        pool=config.pool,
        batch_size=config.batch_size,
        device=device,
        progress=progress,
        desc=f"{data.name} features",
    )


class PoolIndexError(ZFCoreError, IndexError):
    """An index outside a :class:`PooledSplits` pool."""


class PooledSplits(Dataset):
    """Several data sets as one pool (e.g. the train, val and test splits of the held-out scene
    classes), with a batched ``__getitems__`` that asks each part for its items in one call."""

    def __init__(self, parts: Sequence[Dataset]):
        if not parts:
            raise TransferError("PooledSplits needs at least one data set")
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _locate(self, i: int) -> tuple[int, int]:
        if not 0 <= i < len(self):
            raise PoolIndexError(
                f"index {i} is outside the pool of {len(self)} images: use 0..{len(self) - 1}"
            )
        part = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return part, i - int(self.offsets[part])

    def __getitem__(self, i):
        part, j = self._locate(int(i))
        return self.parts[part][j]

    def __getitems__(self, indices):
        where = [self._locate(int(i)) for i in indices]
        out: list = [None] * len(where)
        for part in sorted({p for p, _ in where}):
            pos = [k for k, (p, _) in enumerate(where) if p == part]
            local = [where[k][1] for k in pos]
            ds = self.parts[part]
            items = (
                ds.__getitems__(local) if hasattr(ds, "__getitems__") else [ds[j] for j in local]
            )
            for k, item in zip(pos, items):
                out[k] = item
        return out


def transfer_data(profile: "str | Profile") -> TransferData:
    """The held-out classes of a procedural profile (the Caltech analogue): every image of the
    ``transfer`` group's train, val and test splits as one pool, which :func:`make_splits` divides
    into ``n`` training images and test images per class, as section 5 does with Caltech."""

    P = get_profile(profile)
    if P.dataset != "scenes":
        raise TransferError(
            f"profile {P.name!r} uses real data ({P.dataset}): use "
            f"real_transfer_data(profile, 'caltech101' | 'caltech256' | 'voc2012')"
        )
    splits = ("train", "val", "test")
    parts = [zdata.get_dataset(P, s, group="transfer") for s in splits]
    key = {
        "profile": P.identity(),
        "group": "transfer",
        "splits": list(splits),
        "generator": getattr(zdata, "GENERATOR_VERSION", None),
    }
    return TransferData(
        f"{P.name} held-out classes",
        PooledSplits(parts),
        list(zdata.class_names(P, "transfer")),
        key,
    )


#: The real data sets of section 5 (read by :mod:`zfcore.data.registry`).
REAL_DATASETS = {
    "caltech101": "Caltech-101",
    "caltech256": "Caltech-256",
    "voc2012": "PASCAL VOC 2012",
}


def _samples_key(ds: Dataset, root) -> Any:
    """Identity of a file-backed data set: its files (relative to ``root``) and targets."""

    samples = getattr(ds, "samples", None)
    if samples is None:
        return {"repr": repr(ds), "n": len(ds)}
    rel = [
        (str(p).replace(str(root), "", 1), t.tolist() if hasattr(t, "tolist") else t)
        for p, t in samples
    ]
    return {
        "n": len(rel),
        "files": config_hash(rel),
        "transform": repr(getattr(ds, "transform", None)),
    }


def real_transfer_data(
    profile: "str | Profile", name: str, download: bool | None = None
) -> TransferData:
    """Caltech-101, Caltech-256 (one pool of every image, split per draw by :func:`make_splits`,
    as section 5 does) or PASCAL VOC 2012 (``train`` to train, the official ``val`` to test; its
    test labels are not public) from ``profile.data_root``, with the paper's preprocessing
    (:mod:`zfcore.data.registry`). A missing data set raises ``DataNotFoundError`` naming what to
    fetch and where to put it."""

    P = get_profile(profile)
    if name not in REAL_DATASETS:
        raise TransferError(
            f"unknown transfer data set {name!r}: choose one of {sorted(REAL_DATASETS)}"
        )
    root = Path(P.data_root)
    if name == "voc2012":
        train = registry.voc2012(root, "train", P.image_size, download=download)
        test = registry.voc2012(root, "val", P.image_size, download=download)
        return TransferData(
            REAL_DATASETS[name],
            train,
            list(train.classes),
            {"name": name, "split": "train", **_samples_key(train, root)},
            test,
            {"name": name, "split": "val", **_samples_key(test, root)},
        )
    load = getattr(registry, name)
    parts = [
        load(root, s, P.image_size, download=download, seed=P.data_seed)
        for s in ("train", "val", "test")
    ]
    key = {"name": name, "splits": [_samples_key(p, root) for p in parts]}
    return TransferData(REAL_DATASETS[name], PooledSplits(parts), list(parts[0].classes), key)


def multilabel_study(
    profile: "str | Profile", **overrides
) -> tuple[TransferData, TransferConfig] | None:
    """PASCAL VOC 2012 (Table 6) with its config on real-data profiles when it is on disk, else
    ``None`` (the procedural profiles have no multi-label set)."""
    P = get_profile(profile)
    if P.dataset == "scenes":
        return None
    try:
        data = real_transfer_data(P, "voc2012")
    except FileNotFoundError:
        return None
    return data, transfer_config(P, dataset="voc2012", **overrides)


def transfer_studies(
    profile: "str | Profile", **overrides
) -> list[tuple[TransferData, TransferConfig]]:
    """The single-label transfer targets of a profile, each with its :class:`TransferConfig`:
    the held-out scene classes on procedural profiles; Caltech-101 and Caltech-256 (those found on
    disk, with section 5's protocols) on real-data profiles."""
    P = get_profile(profile)
    if P.dataset == "scenes":
        return [(transfer_data(P), transfer_config(P, **overrides))]
    found, missing = [], []
    for name in ("caltech101", "caltech256"):
        try:
            found.append(
                (real_transfer_data(P, name), transfer_config(P, dataset=name, **overrides))
            )
        except FileNotFoundError as e:
            missing.append(f"{name}: {e}")
    if not found:
        raise TransferError(
            f"no transfer data set for profile {P.name!r} is on disk:\n" + "\n".join(missing)
        )
    return found


def pretrained_model(profile: "str | Profile") -> nn.Module:
    """The network whose layers 1-7 are transferred: the profile's trained ZF model
    (:func:`zfcore.train.trained_model`) or, on ``imagenet``, torchvision's pretrained AlexNet
    (whose ImageNet weights must be on disk, see :func:`zfcore.models.alexnet`)."""
    P = get_profile(profile)
    if P.name == "imagenet":
        return alexnet(pretrained=True).eval()

    return trained_model(P).eval()
