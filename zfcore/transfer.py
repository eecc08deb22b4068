"""Transfer to new data sets and the per-layer probes of section 5 (Tables 4-7, Fig. 9).

Zeiler & Fergus (2014), section 5: keep layers 1-7 of the ImageNet-trained network fixed and train
a new softmax on top, with n training images per class (Caltech-101: 15 or 30, Caltech-256: 15,
30, 45, 60; five random draws of the training images, mean and standard deviation; the average of
per-class accuracies); compare with the same architecture trained from scratch on those images
only (Tables 4-5, Fig. 9); PASCAL VOC 2012 is scored by per-class average precision (Table 6);
Table 7 trains a linear SVM or a softmax on the features of each of layers 1-7.

The pieces, each usable alone:

* :func:`make_splits`: reproducible draws of ``n`` training images per class (nested over ``n``)
  and a disjoint test set per draw.
* :func:`fit_probe` (from :mod:`zfcore.probes`): a linear classifier on fixed features (softmax,
  one-vs-rest logistic or linear SVM) whose :class:`LinearProbe` drops into a network as its last
  layer.
* :class:`TransferNet`: a plain ``nn.Module``: the frozen (or fine-tuned) layers 1-7 of a
  trained network and a new linear layer. :meth:`TransferNet.from_probe` turns a probe trained
  on precomputed features (the fast path) into that network; :func:`fit_images` trains it from
  images (fine-tuning) and also trains the from-scratch baseline (:func:`scratch_like`).
* :func:`average_precision` / :func:`per_class_ap` (from :mod:`zfcore.probes`): scikit-learn's
  definition, or the VOC devkit's (precision made monotone) with ``mode="voc"``.
* :func:`run_transfer` (Tables 4-5, Fig. 9), :func:`run_multilabel` (Table 6) and
  :func:`probe_layers` (Table 7) run whole studies and return plain dataclasses
  (:class:`TransferResult`, :class:`MultiLabelResult`, :class:`LayerProbeResult`), cached by a
  hash of the model's weights, the data and the configuration.
* :func:`transfer_studies` / :func:`multilabel_study` pick a profile's targets: the held-out
  scene classes (``tiny``, ``mini``) or Caltech-101, Caltech-256 and PASCAL VOC 2012 on disk
  (real-data profiles), each with its :class:`TransferConfig` (:func:`transfer_config`).
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from .cache import cached
from .features import LAYERS, Features, cached_features, layer_outputs, model_fingerprint
from .models import get_layer, layer_names
from .probes import (PROBE_METHODS, LinearProbe, TransferError, average_precision, fit_probe,
                     load_batch, mean_class_accuracy, per_class_ap)
from .verdicts import Verdict, from_interval
from .profiles import Profile, get_profile

__all__ = [
    "TransferError", "TransferConfig", "transfer_config", "Split", "make_splits",
    "LinearProbe", "fit_probe", "PROBE_METHODS", "mean_class_accuracy", "average_precision",
    "per_class_ap", "TransferNet", "scratch_like", "fit_images", "batch_schedule", "predict_scores",
    "TransferData", "PooledSplits", "transfer_data", "transfer_studies", "real_transfer_data",
    "multilabel_study", "REAL_DATASETS", "pretrained_model", "TransferResult", "run_transfer", "LayerProbeResult", "probe_layers",
    "MultiLabelResult", "run_multilabel", "TRANSFER_VERSION", "PAPER_TABLES", "APPROACHES",
    "summary_rows", "random_shift", "PlateauFit", "plateau_reached", "fit_to_plateau", "draws_bootstrap",
]

#: Bump when a study's computation changes (part of every cache key).
TRANSFER_VERSION = 4  # 4: scratch trained to a plateau; per-image correctness kept


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TransferConfig:
    """Settings of one transfer study (section 5). Defaults per profile: :func:`transfer_config`.

    ``ns`` are the training images per class (Fig. 9's x axis); ``draws`` the random draws of
    those images (the paper: 5); ``test_per_class`` caps the test images per class (the paper's
    Caltech-101 protocol: up to 50). The softmax is an L2-regularised logistic regression
    (``reg`` times half the squared weights added to the mean loss).

    The from-scratch baseline is trained to convergence (:func:`fit_to_plateau`): Adam
    (``scratch_lr``) with random flips and shifts of up to ``scratch_shift`` pixels, at least
    ``scratch_min_steps`` and at most ``scratch_max_steps`` minibatches whatever ``n`` is, its
    training accuracy (eval mode, no augmentation) checked every ``scratch_check_every`` steps;
    it stops once that accuracy reaches ``scratch_fit_accuracy`` or has not risen by more than
    ``scratch_min_gain`` over ``scratch_patience`` checks. Fine-tuning runs ``fine_tune_epochs``
    passes over the ``n`` images per class (at least ``min_steps`` minibatches). Both run on the
    first ``network_draws`` draws (``None``: all of them, as the pretrained softmax).
    """

    ns: tuple[int, ...] = (5, 10, 15, 30)
    draws: int = 5
    test_per_class: int | None = 50
    seed: int = 0
    layer: str = "layer7"
    pooled_side: int | None = 6
    pool: str = "avg"
    reg: float = 1e-3
    svm_C: float = 0.01
    max_iter: int = 200
    batch_size: int = 64
    scratch: bool = True
    scratch_lr: float = 5e-4
    scratch_min_steps: int = 150
    scratch_max_steps: int = 400
    scratch_check_every: int = 25
    scratch_patience: int = 3
    scratch_min_gain: float = 0.01
    scratch_fit_accuracy: float = 1.0
    scratch_shift: int = 0
    fine_tune: bool = False
    fine_tune_epochs: float = 4.0
    fine_tune_lr: float = 1e-5
    train_batch: int = 32
    min_steps: int = 10
    network_draws: int | None = None

    def steps(self, epochs: float, n_images: int) -> int:
        """Minibatches for ``epochs`` passes over ``n_images`` (at least ``min_steps``)."""
        return max(self.min_steps, math.ceil(epochs * n_images / self.train_batch))

    @property
    def trained_draws(self) -> int:
        """How many draws the network-trained approaches (scratch, fine-tuning) run on."""
        return self.draws if self.network_draws is None else min(self.draws, self.network_draws)

    def __post_init__(self):
        if not self.ns or any((not isinstance(n, int)) or n < 1 for n in self.ns):
            raise TransferError(f"ns must be positive ints (training images per class), not {self.ns!r}")
        if list(self.ns) != sorted(set(self.ns)):
            raise TransferError(f"ns must be increasing without repeats, e.g. (5, 10, 15, 30), not {self.ns!r}")
        if not isinstance(self.draws, int) or self.draws < 1:
            raise TransferError(f"draws must be a positive int, not {self.draws!r}")
        if self.test_per_class is not None and self.test_per_class < 1:
            raise TransferError(f"test_per_class must be >= 1 or None (all remaining), not {self.test_per_class!r}")
        if self.network_draws is not None and (not isinstance(self.network_draws, int) or self.network_draws < 1):
            raise TransferError(f"network_draws must be a positive int or None (all draws), not {self.network_draws!r}")
        if self.layer not in LAYERS:
            raise TransferError(f"layer must be one of {LAYERS}, not {self.layer!r}")
        for name in ("scratch_min_steps", "scratch_max_steps", "scratch_check_every", "scratch_patience"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise TransferError(f"{name} must be a positive int, not {v!r}")
        if self.scratch_max_steps < self.scratch_min_steps:
            raise TransferError(f"scratch_max_steps ({self.scratch_max_steps}) must be >= scratch_min_steps "
                                f"({self.scratch_min_steps})")
        if not isinstance(self.scratch_shift, int) or self.scratch_shift < 0:
            raise TransferError(f"scratch_shift must be an int >= 0 (pixels), not {self.scratch_shift!r}")


# Per profile: tiny runs in seconds; mini keeps the paper's 5 draws and n = 5, 10, 15, 30;
# imagenet follows section 5 (Caltech-101: 15/30 per class, 5 draws, up to 50 test images).
_PROFILE_DEFAULTS: dict[str, dict] = {
    "tiny": dict(ns=(2, 5), draws=2, test_per_class=10, fine_tune_epochs=1, min_steps=4, max_iter=60,
                 train_batch=16, scratch_lr=2e-3, scratch_min_steps=100, scratch_max_steps=200,
                 scratch_check_every=20, scratch_shift=4),
    # mini: 5 draws x 4 ns = 20 trainings of 100-200 steps of 32 images. Measured here: 0.4
    # CPU-seconds a step on one heavily shared core (0.02 on tiny), so about 0.15 s a step on 2
    # quiet cores, and 1.4 CPU-seconds per training-accuracy check of 240 images: about 7
    # minutes for the scratch arm when the small n fit early, 11 at most (every run at the cap).
    "mini": dict(ns=(5, 10, 15, 30), draws=5, test_per_class=50, scratch_lr=1e-3, scratch_min_steps=100,
                 scratch_max_steps=200, scratch_shift=8),
    "imagenette": dict(ns=(5, 10, 15, 30), draws=5, test_per_class=50, scratch_min_steps=300,
                       scratch_max_steps=3000, scratch_check_every=50, scratch_shift=16),
    "imagenet": dict(ns=(15, 30), draws=5, test_per_class=50, scratch_min_steps=500,
                     scratch_max_steps=5000, scratch_check_every=100, scratch_shift=16,
                     fine_tune_epochs=10, train_batch=64, batch_size=128),
}
# Section 5's protocols for the real data sets (imagenet profile).
DATASET_DEFAULTS: dict[str, dict] = {
    "caltech101": dict(ns=(15, 30), draws=5, test_per_class=50),
    "caltech256": dict(ns=(15, 30, 45, 60), draws=5, test_per_class=25),
}


def transfer_config(profile: "str | Profile", dataset: str | None = None, **overrides) -> TransferConfig:
    """The :class:`TransferConfig` for a profile (and a real data set's protocol), with overrides."""
    P = get_profile(profile)
    base = dict(_PROFILE_DEFAULTS.get(P.name, {}))
    if dataset is not None:
        base.update(DATASET_DEFAULTS.get(dataset, {}))
    known = {f.name for f in fields(TransferConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TransferError(f"unknown transfer setting(s) {unknown}; known: {sorted(known)}")
    base.update(overrides)
    if "ns" in base:
        base["ns"] = tuple(int(n) for n in base["ns"])
    return TransferConfig(**base)


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
        raise TransferError(f"labels must be 1-d class indices (got shape {tuple(labels.shape)}); "
                            f"multi-label data (PASCAL VOC) uses run_multilabel")
    return labels.long()


def make_splits(labels: "torch.Tensor | Sequence[int]", ns: Sequence[int], draws: int,
                test_per_class: int | None = 50, seed: int = 0) -> list[Split]:
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
            f"test image: (class, images) {short[:5]}; lower ns or add images")
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
        out.append(Split(d, {n: torch.from_numpy(np.sort(np.concatenate(v))) for n, v in train.items()},
                         torch.from_numpy(np.sort(np.concatenate(test)))))
    return out


# ---------------------------------------------------------------------------------------------
# Networks: frozen layers 1-7 + a new softmax; the same architecture from scratch
# ---------------------------------------------------------------------------------------------

class TransferNet(nn.Module):
    """Layers 1-``layer`` of a trained network topped by a new linear layer (section 5).

    With ``fine_tune=False`` the backbone's parameters are frozen (``requires_grad=False``), so
    only ``head`` learns. With ``fine_tune=True`` every layer learns. Either way the backbone
    stays in eval mode when the net is put in training mode: its dropout is off, so its outputs
    are exactly the precomputed features the head was fitted on (dropout on a few images per
    class would rescale layers 6-7 under a head fitted without it). The backbone is a deep copy:
    the source model is never changed.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, layer: str = "layer7",
                 fine_tune: bool = False, head: nn.Linear | None = None):
        super().__init__()
        layer_names(backbone)  # a clear error for a model without layer addressing
        self.backbone = copy.deepcopy(backbone)
        self.layer = layer
        self.fine_tune = fine_tune
        self.layer_names = dict(getattr(backbone, "layer_names", {}))
        get_layer(self.backbone, layer)
        for p in self.backbone.parameters():
            p.requires_grad_(fine_tune)
        if head is None:
            dim = self._feature_dim()
            head = nn.Linear(dim, num_classes)
        elif head.out_features != num_classes:
            raise TransferError(f"head has {head.out_features} outputs, expected {num_classes}")
        self.head = head
        self.train(False)

    def _feature_dim(self) -> int:
        size = getattr(self.backbone, "input_size", 224)
        was = self.backbone.training
        self.backbone.eval()
        device = next((p.device for p in self.backbone.parameters()), torch.device("cpu"))
        with torch.no_grad():
            f = layer_outputs(self.backbone, torch.zeros(1, 3, size, size, device=device), [self.layer])[self.layer]
        self.backbone.train(was)
        return int(f.flatten(1).shape[1])

    @classmethod
    def from_probe(cls, backbone: nn.Module, probe: LinearProbe, layer: str = "layer7",
                   fine_tune: bool = False) -> "TransferNet":
        """The network whose last layer is ``probe`` (trained on precomputed ``layer`` features)."""
        return cls(backbone, probe.weight.shape[0], layer, fine_tune, head=probe.as_linear())

    def train(self, mode: bool = True) -> "TransferNet":
        super().train(mode)
        self.backbone.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return layer_outputs(self.backbone, x, [self.layer])[self.layer].flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def scratch_like(model: nn.Module, num_classes: int, seed: int = 0) -> nn.Module:
    """The same architecture as ``model`` with fresh weights (PyTorch's default initialisation,
    seeded) and a ``num_classes``-way last layer: the paper's non-pretrained baseline (Table 4)."""
    names = layer_names(model)
    if "logits" not in names:
        raise TransferError(f"{type(model).__name__}.layer_names has no 'logits' entry to replace")
    net = copy.deepcopy(model)
    old = net.get_submodule(names["logits"])
    if not isinstance(old, nn.Linear):
        raise TransferError(f"the logits layer {names['logits']} is a {type(old).__name__}, not nn.Linear")
    parent_name, _, child = names["logits"].rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(seed)
        setattr(parent, child, nn.Linear(old.in_features, num_classes))
        for m in net.modules():
            if m is not net and hasattr(m, "reset_parameters"):
                m.reset_parameters()
    for p in net.parameters():
        p.requires_grad_(True)
    net.layer_names = dict(names)
    if hasattr(model, "input_size"):
        net.input_size = model.input_size
    return net


def batch_schedule(n_items: int, steps: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    """The minibatches of :func:`fit_images`: ``steps`` batches of positions ``0..n_items-1``,
    epoch after epoch of seeded permutations (every item once per epoch)."""
    if n_items < 1 or steps < 0 or batch_size < 1:
        raise TransferError(f"bad schedule: {n_items} items, {steps} steps, batch {batch_size}")
    g = torch.Generator().manual_seed(int(seed))
    out: list[torch.Tensor] = []
    perm = torch.randperm(n_items, generator=g)
    pos = 0
    bs = min(batch_size, n_items)
    while len(out) < steps:
        if pos + bs > n_items:
            perm = torch.randperm(n_items, generator=g)
            pos = 0
        out.append(perm[pos:pos + bs])
        pos += bs
    return out


_load = load_batch  # images and labels at indices, one batched call where the set allows


class _Preloaded(Dataset):
    """Some items of a pool held in memory under their pool indices (the images of one draw, so
    the from-scratch and fine-tuning runs do not decode or render them again at every step)."""

    def __init__(self, dataset: Dataset, indices: torch.Tensor):
        self.rows = {int(i): k for k, i in enumerate(torch.as_tensor(indices).tolist())}
        self.x, self.y = _load(dataset, torch.as_tensor(list(self.rows)))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        k = self.rows[int(i)]
        return self.x[k], self.y[k]

    def __getitems__(self, indices):
        k = [self.rows[int(i)] for i in indices]
        return self.x[k], self.y[k]


#: Draws whose images fit in this many bytes are held in memory while training.
PRELOAD_BYTES = 512 * 2 ** 20


def _preloaded(dataset: Dataset, indices: torch.Tensor) -> Dataset:
    x0 = dataset[int(indices[0])][0]
    fits = x0.numel() * x0.element_size() * len(indices) <= PRELOAD_BYTES
    return _Preloaded(dataset, indices) if fits else dataset


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image of ``x`` ``(N, C, H, W)`` by its own random offset of up to
    ``max_shift`` pixels in each direction, filling the uncovered border by reflection (the
    translations of the paper's random crops, section 3, without changing the input size)."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    if max_shift >= min(h, w):
        raise TransferError(f"a shift of {max_shift} pixels does not fit {h}x{w} images")
    padded = F.pad(x, (max_shift,) * 4, mode="reflect")
    off = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)
    return torch.stack([padded[i, :, int(off[i, 0]):int(off[i, 0]) + h, int(off[i, 1]):int(off[i, 1]) + w]
                        for i in range(n)])


def _augment(x: torch.Tensor, flip: bool, shift: int, g: torch.Generator) -> torch.Tensor:
    if flip:
        mirror = torch.rand(x.shape[0], generator=g) < 0.5
        x = torch.where(mirror.view(-1, 1, 1, 1), x.flip(-1), x)
    return random_shift(x, shift, g)


def _trainer(net: nn.Module, dataset: Dataset, indices, labels, *, lr: float, flip: bool, shift: int,
             seed: int, device):
    """One Adam step per call on the given positions of ``indices``; returns the loss."""
    indices = torch.as_tensor(indices).long()
    labels = torch.as_tensor(labels).long()
    if indices.shape[0] != labels.shape[0]:
        raise TransferError(f"{indices.shape[0]} indices but {labels.shape[0]} labels")
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        raise TransferError("the network has no trainable parameters")
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(int(seed) + 1)
    net.to(device)

    def step(batch: torch.Tensor) -> float:
        net.train()
        x, _ = _load(dataset, indices[batch])
        x = _augment(x, flip, shift, g)
        loss = F.cross_entropy(net(x.to(device)), labels[batch].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())
    return step


def fit_images(net: nn.Module, dataset: Dataset, indices: torch.Tensor, labels: torch.Tensor, *,
               steps: int, lr: float, batch_size: int = 32, seed: int = 0, flip: bool = True,
               shift: int = 0, device: "str | torch.device" = "cpu", progress: bool = True,
               desc: str = "training") -> list[float]:
    """Train ``net`` on the images ``dataset[indices]`` with targets ``labels`` (one per index).

    Adam over the parameters that require gradients, ``steps`` minibatches from
    :func:`batch_schedule`, random horizontal flips (the paper's augmentation, section 3) when
    ``flip`` and random shifts of up to ``shift`` pixels. Used for fine-tuning; a frozen
    :class:`TransferNet` trains only its head. Returns the loss of every step.
    """
    from tqdm.auto import tqdm

    step = _trainer(net, dataset, indices, labels, lr=lr, flip=flip, shift=shift, seed=seed, device=device)
    losses = [step(b) for b in tqdm(batch_schedule(len(indices), steps, batch_size, seed), desc=desc,
                                    disable=not progress, leave=False)]
    net.eval()
    return losses


@dataclass
class PlateauFit:
    """What :func:`fit_to_plateau` did: ``steps`` taken, the training accuracy (eval mode, no
    augmentation; the mean of per-class accuracies, in [0, 1]) at each check ``(step, accuracy)``,
    the final one, and why it stopped (``"fit"``, ``"plateau"`` or ``"max_steps"``)."""

    steps: int
    checks: list[tuple[int, float]]
    stopped: str
    losses: list[float]

    @property
    def train_accuracy(self) -> float:
        return self.checks[-1][1]


def plateau_reached(accuracies: Sequence[float], patience: int, min_gain: float) -> bool:
    """True when the best of the last ``patience`` checks is not more than ``min_gain`` above the
    best before them (training accuracy has stopped rising)."""
    a = list(accuracies)
    if len(a) <= patience:
        return False
    return max(a[-patience:]) <= max(a[:-patience]) + min_gain


def fit_to_plateau(net: nn.Module, dataset: Dataset, indices: torch.Tensor, labels: torch.Tensor, *,
                   lr: float, min_steps: int, max_steps: int, check_every: int = 25, patience: int = 3,
                   min_gain: float = 0.01, fit_accuracy: float = 1.0, batch_size: int = 32,
                   seed: int = 0, flip: bool = True, shift: int = 0,
                   device: "str | torch.device" = "cpu") -> PlateauFit:
    """Train ``net`` on ``dataset[indices]`` until its training accuracy stops rising: the
    from-scratch baseline of Tables 4-5 trained to convergence rather than for a number of passes
    that shrinks with ``n``.

    Adam with flips and shifts (:func:`fit_images`' minibatches and augmentation); every
    ``check_every`` steps the training accuracy is measured in eval mode without augmentation
    (:func:`mean_class_accuracy` on the training images). After ``min_steps`` it stops when that
    accuracy reaches ``fit_accuracy`` or :func:`plateau_reached`; it never exceeds ``max_steps``.
    """
    if not (1 <= min_steps <= max_steps) or check_every < 1 or patience < 1:
        raise TransferError(f"need 1 <= min_steps ({min_steps}) <= max_steps ({max_steps}), "
                            f"check_every >= 1 ({check_every}) and patience >= 1 ({patience})")
    labels = torch.as_tensor(labels).long()
    step = _trainer(net, dataset, indices, labels, lr=lr, flip=flip, shift=shift, seed=seed, device=device)
    checks: list[tuple[int, float]] = []
    losses: list[float] = []
    stopped = "max_steps"
    for i, batch in enumerate(batch_schedule(len(indices), max_steps, batch_size, seed), start=1):
        losses.append(step(batch))
        if i % check_every and i != max_steps:
            continue
        pred = predict_scores(net, dataset, indices, device=device).argmax(1)
        checks.append((i, mean_class_accuracy(pred, labels)))
        if i >= min_steps and checks[-1][1] >= fit_accuracy:
            stopped = "fit"
            break
        if i >= min_steps and plateau_reached([a for _, a in checks], patience, min_gain):
            stopped = "plateau"
            break
    net.eval()
    return PlateauFit(len(losses), checks, stopped, losses)


@torch.no_grad()
def predict_scores(net: nn.Module, dataset: Dataset, indices: torch.Tensor, batch_size: int = 64,
                   device: "str | torch.device" = "cpu") -> torch.Tensor:
    """Class scores of ``net`` (eval mode) for ``dataset[indices]``, ``(len(indices), K)``."""
    net.to(device).eval()
    indices = torch.as_tensor(indices).long()
    out = [net(_load(dataset, indices[i:i + batch_size])[0].to(device)).float().cpu()
           for i in range(0, len(indices), batch_size)]
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------
# The paper's published numbers (its Tables 4-5; shown beside ours, labelled as the paper's)
# ---------------------------------------------------------------------------------------------

#: Tables 4 and 5 of the paper: accuracy (%) as (mean, std or None) per training images per class.
PAPER_TABLES: dict[str, dict] = {
    "caltech101": {"table": "Table 4", "title": "Caltech-101", "ns": (15, 30),
                   "scratch": ((22.8, 1.5), (46.5, 1.7)),
                   "pretrained": ((83.8, 0.5), (86.5, 0.5))},
    "caltech256": {"table": "Table 5", "title": "Caltech-256", "ns": (15, 30, 45, 60),
                   "scratch": ((9.0, None), (22.5, None), (31.2, None), (38.8, None)),
                   "pretrained": ((65.7, None), (70.6, None), (72.7, None), (74.2, None))},
}

APPROACHES = {"scratch": "non-pretrained (from scratch)",
              "pretrained": "pretrained, layers 1-7 frozen + new softmax",
              "fine_tuned": "pretrained, fine-tuned"}


def summary_rows(results: Sequence["TransferResult"], paper: dict | None = None) -> list[dict]:
    """Tables 4-5 as long rows ``{source, dataset, approach, n, accuracy_pct, std_pct}``: ours
    (mean and standard deviation over draws, in %) and, when ``paper`` is given (e.g.
    :data:`PAPER_TABLES`), the paper's rows labelled ``source="paper"``."""
    rows = []
    for r in results:
        for a in ("scratch", "pretrained", "fine_tuned"):
            if not r.has(a):
                continue
            draws = getattr(r, a).shape[0]
            for n, m, sd in zip(r.ns, r.mean(a).tolist(), r.std(a).tolist()):
                rows.append({"source": "ours", "dataset": r.dataset, "n": n,
                             "approach": f"{APPROACHES[a]}, {draws} draw{'s' if draws > 1 else ''}",
                             "accuracy_pct": 100 * m, "std_pct": 100 * sd if draws > 1 else None})
    for name, t in (paper or {}).items():
        for a in ("scratch", "pretrained"):
            for n, (m, sd) in zip(t["ns"], t[a]):
                rows.append({"source": "paper", "dataset": f"{t['title']} ({t['table']})",
                             "approach": APPROACHES[a].replace("pretrained,", "ImageNet-pretrained,"),
                             "n": n, "accuracy_pct": m, "std_pct": sd})
    return rows


# ---------------------------------------------------------------------------------------------
# Data for a study
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
            raise IndexError(f"index {i} out of range for a pool of {len(self)} images")
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
            items = ds.__getitems__(local) if hasattr(ds, "__getitems__") else [ds[j] for j in local]
            for k, item in zip(pos, items):
                out[k] = item
        return out


def transfer_data(profile: "str | Profile") -> TransferData:
    """The held-out classes of a procedural profile (the Caltech analogue): every image of the
    ``transfer`` group's train, val and test splits as one pool, which :func:`make_splits` divides
    into ``n`` training images and test images per class, as section 5 does with Caltech."""
    from . import data as zdata

    P = get_profile(profile)
    if P.dataset != "scenes":
        raise TransferError(f"profile {P.name!r} uses real data ({P.dataset}): use "
                            f"real_transfer_data(profile, 'caltech101' | 'caltech256' | 'voc2012')")
    splits = ("train", "val", "test")
    parts = [zdata.get_dataset(P, s, group="transfer") for s in splits]
    key = {"profile": P.identity(), "group": "transfer", "splits": list(splits),
           "generator": getattr(zdata, "GENERATOR_VERSION", None)}
    return TransferData(f"{P.name} held-out classes", PooledSplits(parts),
                        list(zdata.class_names(P, "transfer")), key)


#: The real data sets of section 5 (read by :mod:`zfcore.data.registry`).
REAL_DATASETS = {"caltech101": "Caltech-101", "caltech256": "Caltech-256", "voc2012": "PASCAL VOC 2012"}


def _samples_key(ds: Dataset, root) -> Any:
    """Identity of a file-backed data set: its files (relative to ``root``) and targets."""
    from .cache import config_hash
    samples = getattr(ds, "samples", None)
    if samples is None:
        return {"repr": repr(ds), "n": len(ds)}
    rel = [(str(p).replace(str(root), "", 1), t.tolist() if hasattr(t, "tolist") else t) for p, t in samples]
    return {"n": len(rel), "files": config_hash(rel), "transform": repr(getattr(ds, "transform", None))}


def real_transfer_data(profile: "str | Profile", name: str, download: bool | None = None) -> TransferData:
    """Caltech-101, Caltech-256 (one pool of every image, split per draw by :func:`make_splits`,
    as section 5 does) or PASCAL VOC 2012 (``train`` to train, the official ``val`` to test; its
    test labels are not public) from ``profile.data_root``, with the paper's preprocessing
    (:mod:`zfcore.data.registry`). A missing data set raises ``DataNotFoundError`` naming what to
    fetch and where to put it."""
    from .data import registry

    P = get_profile(profile)
    if name not in REAL_DATASETS:
        raise TransferError(f"unknown transfer data set {name!r}: choose one of {sorted(REAL_DATASETS)}")
    root = Path(P.data_root)
    if name == "voc2012":
        train = registry.voc2012(root, "train", P.image_size, download=download)
        test = registry.voc2012(root, "val", P.image_size, download=download)
        return TransferData(REAL_DATASETS[name], train, list(train.classes),
                            {"name": name, "split": "train", **_samples_key(train, root)}, test,
                            {"name": name, "split": "val", **_samples_key(test, root)})
    load = getattr(registry, name)
    parts = [load(root, s, P.image_size, download=download, seed=P.data_seed) for s in ("train", "val", "test")]
    key = {"name": name, "splits": [_samples_key(p, root) for p in parts]}
    return TransferData(REAL_DATASETS[name], PooledSplits(parts), list(parts[0].classes), key)


def multilabel_study(profile: "str | Profile", **overrides) -> tuple[TransferData, TransferConfig] | None:
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


def transfer_studies(profile: "str | Profile", **overrides) -> list[tuple[TransferData, TransferConfig]]:
    """The single-label transfer targets of a profile, each with its :class:`TransferConfig`:
    the held-out scene classes on procedural profiles; Caltech-101 and Caltech-256 (those found on
    disk, with section 5's protocols) on real-data profiles."""
    P = get_profile(profile)
    if P.dataset == "scenes":
        return [(transfer_data(P), transfer_config(P, **overrides))]
    found, missing = [], []
    for name in ("caltech101", "caltech256"):
        try:
            found.append((real_transfer_data(P, name), transfer_config(P, dataset=name, **overrides)))
        except FileNotFoundError as e:
            missing.append(f"{name}: {e}")
    if not found:
        raise TransferError(f"no transfer data set for profile {P.name!r} is on disk:\n" + "\n".join(missing))
    return found


def pretrained_model(profile: "str | Profile") -> nn.Module:
    """The network whose layers 1-7 are transferred: the profile's trained ZF model
    (:func:`zfcore.train.trained_model`) or, on ``imagenet``, torchvision's pretrained AlexNet
    (whose ImageNet weights must be on disk, see :func:`zfcore.models.alexnet`)."""
    P = get_profile(profile)
    if P.name == "imagenet":
        from .models import alexnet
        return alexnet(pretrained=True).eval()
    from .train import trained_model
    return trained_model(P).eval()


# ---------------------------------------------------------------------------------------------
# Tables 4-5 and Fig. 9: pretrained vs from scratch, n images per class, several draws
# ---------------------------------------------------------------------------------------------

def _std(t: torch.Tensor) -> torch.Tensor:
    t = t.double()
    return t.std(0) if t.shape[0] > 1 else torch.zeros(t.shape[1], dtype=torch.float64)


def _class_means(values: np.ndarray, labels: np.ndarray, rng: np.random.Generator | None,
                 n_boot: int) -> np.ndarray:
    """Mean of per-class means of ``values`` (one draw's test images): ``(n_boot,)`` resampled
    within each class when ``rng`` is given, else the plain value ``(1,)``."""
    out = []
    for c in np.unique(labels):
        v = values[labels == c]
        out.append(v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(1) if rng is not None
                   else np.array([v.mean()]))
    return np.mean(out, axis=0)


def draws_bootstrap(claim: str, model: "torch.Tensor | np.ndarray", control: "torch.Tensor | np.ndarray",
                    labels: "torch.Tensor | np.ndarray", *, n_boot: int = 2000, seed: int = 0,
                    scale: float = 100.0, margin: float = 0.0, unit: str = "points") -> Verdict:
    """A verdict on ``mean over draws of (model - control)`` mean class accuracy (section 5's
    score), with a 95 % interval from a two-level bootstrap: the draws (random training images
    and training seeds) resampled with replacement, and within each draw its test images
    resampled within their class (both arms on the same images, so what they share cancels).

    ``model``/``control`` are ``(draws, test images)`` per-image values (1.0 correct, or the
    mean over several layers' correctness), ``labels`` the test images' classes per draw.
    """
    a, b = np.asarray(model, dtype=float), np.asarray(control, dtype=float)
    y = np.asarray(labels)
    if a.shape != b.shape or a.ndim != 2 or y.shape != a.shape or a.shape[1] < 2:
        raise TransferError(f"'{claim}': model, control and labels need the same (draws, images) shape "
                            f"with >= 2 images, got {a.shape}, {b.shape}, {y.shape}")
    rng = np.random.default_rng(seed)
    D = a.shape[0]
    point = np.mean([_class_means(a[d] - b[d], y[d], None, 1)[0] for d in range(D)])
    per_draw = np.stack([_class_means(a[d] - b[d], y[d], rng, n_boot) for d in range(D)])  # (D, B)
    pick = rng.integers(0, D, size=(n_boot, D))
    diffs = scale * per_draw[pick, np.arange(n_boot)[:, None]].mean(1)
    low, high = np.quantile(diffs, [0.025, 0.975])
    return from_interval(claim, scale * point, float(low), float(high), margin=margin, unit=unit,
                         source=f"bootstrap over {D} draw{'s' if D > 1 else ''} (training images and seeds) "
                                f"and, within each, its {a.shape[1]} test images by class ({n_boot} resamples)")


@dataclass
class TransferResult:
    """Accuracy (the average of per-class accuracies, in [0, 1]) of each approach, one row per
    draw and one column per ``ns`` entry; ``ap`` holds the pretrained softmax's per-class
    average precision, ``(draws, len(ns), K)``. Empty tensors for approaches not run."""

    dataset: str
    classes: list[str]
    ns: list[int]
    pretrained: torch.Tensor
    scratch: torch.Tensor
    fine_tuned: torch.Tensor
    ap: torch.Tensor
    test_images: int
    feature_dim: int
    softmax_seconds: float
    config: dict = field(default_factory=dict)
    #: per test image: ``correct[approach]`` is a bool ``(draws, len(ns), test images)``
    correct: dict = field(default_factory=dict)
    #: the test images' classes per draw, ``(draws, test images)``
    test_labels: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.long))
    #: the from-scratch network's final training accuracy (eval mode, no augmentation), ``(draws, len(ns))``
    scratch_train: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    #: the from-scratch network's Adam steps and why it stopped, per draw and ``n``
    scratch_steps: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    scratch_stopped: list = field(default_factory=list)

    @property
    def draws(self) -> int:
        return int(self.pretrained.shape[0])

    def has(self, approach: str) -> bool:
        return getattr(self, approach).numel() > 0

    def mean(self, approach: str = "pretrained") -> torch.Tensor:
        """Mean over draws, one value per ``n`` (in double precision)."""
        return getattr(self, approach).double().mean(0)

    def std(self, approach: str = "pretrained") -> torch.Tensor:
        """Standard deviation over draws (sample, ``n - 1``; 0 with a single draw)."""
        return _std(getattr(self, approach))

    def advantage(self, approach: str = "scratch") -> torch.Tensor:
        """Pretrained minus ``approach`` mean accuracy, one value per ``n``."""
        return self.mean("pretrained") - self.mean(approach)

    def numbers(self, prefix: str = "") -> dict:
        """Flat, self-describing numbers (accuracy in %) for a notebook's JSON record."""
        out = {}
        for a in ("pretrained", "scratch", "fine_tuned"):
            if self.has(a):
                for n, m, s in zip(self.ns, self.mean(a).tolist(), self.std(a).tolist()):
                    out[f"{prefix}{a}_accuracy_pct_n{n}"] = 100 * m
                    out[f"{prefix}{a}_accuracy_std_pct_n{n}"] = 100 * s
        if self.has("scratch"):
            out[f"{prefix}pretrained_advantage_pct_smallest_n"] = 100 * float(self.advantage("scratch")[0])
            if self.scratch_train.numel():
                for j, n in enumerate(self.ns):
                    out[f"{prefix}scratch_train_accuracy_pct_n{n}"] = 100 * float(self.scratch_train[:, j].double().mean())
                    out[f"{prefix}scratch_steps_mean_n{n}"] = float(self.scratch_steps[:, j].double().mean())
                    out[f"{prefix}scratch_stops_n{n}"] = ",".join(sorted({row[j] for row in self.scratch_stopped}))
        out[f"{prefix}mean_ap_pct_n{self.ns[-1]}"] = 100 * float(torch.nanmean(self.ap[:, -1]))
        out[f"{prefix}draws"] = self.draws
        out[f"{prefix}test_images_per_draw"] = self.test_images
        out[f"{prefix}softmax_fit_seconds"] = self.softmax_seconds
        return out

    def verdicts(self, approach: str = "scratch", *, n_boot: int = 2000, seed: int = 0) -> list[Verdict]:
        """Tables 4-5's claim at every ``n``: the pretrained network beats ``approach`` (positive
        effect = pretrained better, in points of mean class accuracy), decided by
        :func:`draws_bootstrap` over the draws both arms ran on. Claims are named
        ``pretrained_beats_<approach>_n<n>``."""
        if not self.has(approach) or approach not in self.correct:
            raise TransferError(f"no per-image results for {approach!r}: run it (e.g. scratch=True)")
        other = self.correct[approach]
        D = other.shape[0]
        return [draws_bootstrap(f"pretrained_beats_{approach}_n{n}", self.correct["pretrained"][:D, j].float(),
                                other[:, j].float(), self.test_labels[:D], n_boot=n_boot, seed=seed)
                for j, n in enumerate(self.ns)]

    def to_state(self) -> dict:
        return {k: getattr(self, k) for k in ("dataset", "classes", "ns", "pretrained", "scratch",
                                              "fine_tuned", "ap", "test_images", "feature_dim",
                                              "softmax_seconds", "config", "correct", "test_labels",
                                              "scratch_train", "scratch_steps", "scratch_stopped")}

    @classmethod
    def from_state(cls, s: dict) -> "TransferResult":
        return cls(**s)


def _remap(labels: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    present = torch.unique(labels)
    lut = torch.full((int(present.max()) + 1,), -1, dtype=torch.long)
    lut[present] = torch.arange(len(present))
    return lut[labels], present.tolist()


def _class_names(data: TransferData, present: list[int]) -> list[str]:
    return [data.classes[c] if c < len(data.classes) else str(c) for c in present]


def _config_key(model: nn.Module, data_key: Any, config: TransferConfig, kind: str, **extra) -> dict:
    return {"version": TRANSFER_VERSION, "kind": kind, "model": model_fingerprint(model),
            "data": data_key, "config": asdict(config), **extra}


def _features(model, data: TransferData, config: TransferConfig, layers, cache_dir, device, progress,
              test: bool = False) -> Features:
    return cached_features(model, data.test_dataset if test else data.dataset,
                           data_key=data.test_key if test else data.key, cache_dir=cache_dir,
                           layers=layers, pooled_side=config.pooled_side, pool=config.pool,
                           batch_size=config.batch_size, device=device, progress=progress,
                           desc=f"{data.name} features")


def run_transfer(model: nn.Module, data: TransferData, config: TransferConfig, *, cache_dir,
                 device: "str | torch.device" = "cpu", progress: bool = True) -> TransferResult:
    """Tables 4-5 and Fig. 9 on ``data``: for every draw and ``n`` in ``config.ns``, a new softmax
    on the frozen ``config.layer`` features of ``model`` (trained on the precomputed features),
    optionally fine-tuned end to end, and the same architecture trained from scratch on the same
    ``n`` images per class; all scored on the draw's test images. Cached by configuration hash.
    """
    from tqdm.auto import tqdm

    def build() -> dict:
        import time
        feats = _features(model, data, config, [config.layer], cache_dir, device, progress)
        y, present = _remap(feats.labels.long())
        K = len(present)
        X = feats[config.layer]
        splits = make_splits(y, config.ns, config.draws, config.test_per_class, config.seed)
        shape = (config.draws, len(config.ns))
        pre = torch.zeros(shape)
        net_shape = (config.trained_draws, len(config.ns))
        scr = torch.zeros(net_shape) if config.scratch else torch.zeros(0, len(config.ns))
        fin = torch.zeros(net_shape) if config.fine_tune else torch.zeros(0, len(config.ns))
        ap = torch.zeros(*shape, K)
        T = len(splits[0].test)
        correct = {"pretrained": torch.zeros(*shape, T, dtype=torch.bool)}
        if config.scratch:
            correct["scratch"] = torch.zeros(*net_shape, T, dtype=torch.bool)
        if config.fine_tune:
            correct["fine_tuned"] = torch.zeros(*net_shape, T, dtype=torch.bool)
        test_labels = torch.stack([y[s.test] for s in splits])
        scr_train = torch.zeros(net_shape) if config.scratch else torch.zeros(0)
        scr_steps = torch.zeros(net_shape, dtype=torch.long) if config.scratch else torch.zeros(0)
        scr_stopped = [["" for _ in config.ns] for _ in range(config.trained_draws)] if config.scratch else []
        fit_time = 0.0
        jobs = [(s, j, n) for s in splits for j, n in enumerate(config.ns)]
        for s, j, n in tqdm(jobs, desc=f"transfer to {data.name}", disable=not progress):
            tr, te = s.train[n], s.test
            t0 = time.perf_counter()
            probe = fit_probe(X[tr], y[tr], "softmax", num_classes=K, reg=config.reg,
                              max_iter=config.max_iter, seed=config.seed)
            fit_time += time.perf_counter() - t0
            scores = probe.scores(X[te])
            pre[s.draw, j] = mean_class_accuracy(scores.argmax(1), y[te])
            correct["pretrained"][s.draw, j] = scores.argmax(1) == y[te]
            ap[s.draw, j] = per_class_ap(scores.softmax(1), y[te])
            if s.draw >= config.trained_draws or not (config.scratch or config.fine_tune):
                continue
            if j == 0:  # this draw's images, held in memory for every n (nested) and the test
                images = _preloaded(data.dataset, torch.cat([s.train[max(config.ns)], te]))
            run_seed = config.seed * 1000 + s.draw * 100 + j

            def score(net: nn.Module, arm: str) -> float:
                pred = predict_scores(net, images, te, config.batch_size, device).argmax(1)
                correct[arm][s.draw, j] = pred == y[te]
                return mean_class_accuracy(pred, y[te])

            if config.fine_tune:
                net = TransferNet.from_probe(model, probe, config.layer, fine_tune=True)
                fit_images(net, images, tr, y[tr], steps=config.steps(config.fine_tune_epochs, len(tr)),
                           lr=config.fine_tune_lr, batch_size=config.train_batch, seed=run_seed,
                           device=device, progress=False)
                fin[s.draw, j] = score(net, "fine_tuned")
            if config.scratch:
                net = scratch_like(model, K, seed=run_seed)
                fit = fit_to_plateau(net, images, tr, y[tr], lr=config.scratch_lr,
                                     min_steps=config.scratch_min_steps, max_steps=config.scratch_max_steps,
                                     check_every=config.scratch_check_every, patience=config.scratch_patience,
                                     min_gain=config.scratch_min_gain, fit_accuracy=config.scratch_fit_accuracy,
                                     batch_size=config.train_batch, seed=run_seed, shift=config.scratch_shift,
                                     device=device)
                scr[s.draw, j] = score(net, "scratch")
                scr_train[s.draw, j] = fit.train_accuracy
                scr_steps[s.draw, j] = fit.steps
                scr_stopped[s.draw][j] = fit.stopped
        return TransferResult(data.name, _class_names(data, present), list(config.ns), pre, scr, fin,
                              ap, int(len(splits[0].test)), int(X.shape[1]), fit_time / len(jobs),
                              asdict(config), correct, test_labels, scr_train, scr_steps,
                              scr_stopped).to_state()

    key = _config_key(model, data.key, config, "transfer")
    return TransferResult.from_state(cached(cache_dir, "transfer", key, build))


# ---------------------------------------------------------------------------------------------
# Table 7: a linear SVM and a softmax on each layer's features
# ---------------------------------------------------------------------------------------------

@dataclass
class LayerProbeResult:
    """Accuracy per layer (Table 7): ``accuracy[method]`` is ``(draws, len(layers))``, the average
    of per-class accuracies of that classifier on that layer's features."""

    dataset: str
    layers: list[str]
    n: int
    accuracy: dict[str, torch.Tensor]
    dims: list[int]
    test_images: int
    classes: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    #: per test image: ``correct[method]`` is a bool ``(draws, len(layers), test images)``
    correct: dict = field(default_factory=dict)
    #: the test images' classes per draw, ``(draws, test images)``
    test_labels: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.long))

    @property
    def methods(self) -> list[str]:
        return list(self.accuracy)

    def mean(self, method: str) -> torch.Tensor:
        """Mean over draws, one value per layer (in double precision)."""
        return self.accuracy[method].double().mean(0)

    def std(self, method: str) -> torch.Tensor:
        """Standard deviation over draws (sample, ``n - 1``; 0 with a single draw)."""
        return _std(self.accuracy[method])

    def monotone(self, method: str) -> bool:
        """Does the mean accuracy never fall from one layer to the next?"""
        m = self.mean(method)
        return bool((m[1:] >= m[:-1]).all())

    def drops(self, method: str) -> list[tuple[str, str, float]]:
        """``(layer, next layer, fall in mean accuracy)`` wherever it falls with depth."""
        m = self.mean(method)
        return [(self.layers[i], self.layers[i + 1], float(m[i] - m[i + 1]))
                for i in range(len(m) - 1) if m[i + 1] < m[i]]

    def verdict(self, method: str, deep: Sequence[str] = ("layer5", "layer6", "layer7"),
                shallow: Sequence[str] = ("layer1", "layer2", "layer3"), *, n_boot: int = 2000,
                seed: int = 0) -> Verdict:
        """Table 7's claim ("higher layers generally produce more discriminative features"):
        the mean accuracy of the ``deep`` layers minus that of the ``shallow`` ones (points),
        decided by :func:`draws_bootstrap` over the draws and the test images (the same images
        for every layer). Claim ``deeper_layers_better_<method>``."""
        missing = [l for l in (*deep, *shallow) if l not in self.layers]
        if missing or not deep or not shallow:
            raise TransferError(f"layers {missing} were not probed (probed: {self.layers}); "
                                f"pass deep=/shallow= from those")
        if method not in self.correct:
            raise TransferError(f"no per-image results for {method!r}; methods: {list(self.correct)}")
        c = self.correct[method].float()
        pick = lambda ls: c[:, [self.layers.index(l) for l in ls]].mean(1)  # noqa: E731
        return draws_bootstrap(f"deeper_layers_better_{method}", pick(deep), pick(shallow), self.test_labels,
                               n_boot=n_boot, seed=seed)

    def to_state(self) -> dict:
        return {k: getattr(self, k) for k in ("dataset", "layers", "n", "accuracy", "dims",
                                              "test_images", "classes", "config", "correct", "test_labels")}

    @classmethod
    def from_state(cls, s: dict) -> "LayerProbeResult":
        return cls(**s)


def probe_layers(model: nn.Module, data: TransferData, config: TransferConfig, *, n: int | None = None,
                 layers: Sequence[str] = LAYERS, methods: Sequence[str] = ("svm", "softmax"),
                 cache_dir, device: "str | torch.device" = "cpu", progress: bool = True) -> LayerProbeResult:
    """Table 7: train each of ``methods`` on each layer's features with ``n`` images per class
    (default ``max(config.ns)``) and score them on the test images, for every draw.

    The draws are :func:`make_splits` with ``config.ns`` and ``config.seed``: exactly the
    training and test images that :func:`run_transfer` uses for the same ``n``. All layers come
    from one streaming pass (:func:`zfcore.features.extract_features`).
    """
    from tqdm.auto import tqdm

    n = max(config.ns) if n is None else int(n)
    if n not in config.ns:
        raise TransferError(f"n = {n} is not one of config.ns = {config.ns}: the splits are shared "
                            f"with run_transfer, so pick one of those")
    bad = [m for m in methods if m not in ("svm", "softmax")]
    if bad:
        raise TransferError(f"Table 7 methods are 'svm' and 'softmax', not {bad}")
    layers = list(layers)

    def build() -> dict:
        feats = _features(model, data, config, layers, cache_dir, device, progress)
        y, present = _remap(feats.labels.long())
        splits = make_splits(y, config.ns, config.draws, config.test_per_class, config.seed)
        acc = {m: torch.zeros(config.draws, len(layers)) for m in methods}
        T = len(splits[0].test)
        correct = {m: torch.zeros(config.draws, len(layers), T, dtype=torch.bool) for m in methods}
        jobs = [(s, i, l, m) for s in splits for i, l in enumerate(layers) for m in methods]
        for s, i, l, m in tqdm(jobs, desc="probing layers", disable=not progress):
            X = feats[l]
            tr, te = s.train[n], s.test
            probe = fit_probe(X[tr], y[tr], m, num_classes=len(present), reg=config.reg,
                              C=config.svm_C, max_iter=config.max_iter, seed=config.seed)
            pred = probe.predict(X[te])
            acc[m][s.draw, i] = mean_class_accuracy(pred, y[te])
            correct[m][s.draw, i] = pred == y[te]
        return LayerProbeResult(data.name, layers, n, acc, [int(feats[l].shape[1]) for l in layers],
                                T, _class_names(data, present), asdict(config), correct,
                                torch.stack([y[s.test] for s in splits])).to_state()

    key = _config_key(model, data.key, config, "layers", layers=layers, n=n, methods=list(methods))
    return LayerProbeResult.from_state(cached(cache_dir, "transfer", key, build))


# ---------------------------------------------------------------------------------------------
# Table 6: multi-label classification scored by per-class average precision (PASCAL VOC)
# ---------------------------------------------------------------------------------------------

@dataclass
class MultiLabelResult:
    """Per-class average precision (VOC devkit definition) of one-vs-rest classifiers on the
    frozen ``layer`` features (Table 6's layout: one column per class, and the mean)."""

    dataset: str
    classes: list[str]
    ap: torch.Tensor
    train_images: int
    test_images: int
    config: dict = field(default_factory=dict)

    @property
    def mean_ap(self) -> float:
        return float(torch.nanmean(self.ap))

    def to_state(self) -> dict:
        return {k: getattr(self, k) for k in ("dataset", "classes", "ap", "train_images",
                                              "test_images", "config")}

    @classmethod
    def from_state(cls, s: dict) -> "MultiLabelResult":
        return cls(**s)


def run_multilabel(model: nn.Module, data: TransferData, config: TransferConfig, *, cache_dir,
                   method: str = "sigmoid", device: "str | torch.device" = "cpu",
                   progress: bool = True) -> MultiLabelResult:
    """Table 6: one-vs-rest classifiers (``"sigmoid"`` logistic or ``"svm"``) on the frozen
    ``config.layer`` features of every image of ``data.dataset`` (multi-hot labels), scored by
    per-class AP on ``data.test_dataset``."""
    if data.test_dataset is None:
        raise TransferError(f"{data.name} has no test split: multi-label data needs test_dataset")
    if method not in ("sigmoid", "svm"):
        raise TransferError(f"method must be 'sigmoid' or 'svm', not {method!r}")

    def build() -> dict:
        tr = _features(model, data, config, [config.layer], cache_dir, device, progress)
        te = _features(model, data, config, [config.layer], cache_dir, device, progress, test=True)
        if tr.labels.dim() != 2:
            raise TransferError(f"{data.name}: multi-label data needs multi-hot (N, K) labels, got "
                                f"shape {tuple(tr.labels.shape)}")
        probe = fit_probe(tr[config.layer], tr.labels, method, reg=config.reg, C=config.svm_C,
                          max_iter=config.max_iter, seed=config.seed)
        ap = per_class_ap(probe.scores(te[config.layer]), te.labels, mode="voc")
        return MultiLabelResult(data.name, list(data.classes), ap, len(tr), len(te), asdict(config)).to_state()

    key = _config_key(model, [data.key, data.test_key], config, "multilabel", method=method)
    return MultiLabelResult.from_state(cached(cache_dir, "transfer", key, build))
