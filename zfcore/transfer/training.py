"""The networks of a transfer study and their training (section 5, Tables 4-5).

* :class:`TransferNet`: the frozen (or fine-tuned) layers 1-7 of a trained network and a new
  linear layer; :meth:`TransferNet.from_probe` turns a probe fitted on precomputed features
  (:func:`zfcore.probes.fit_probe`, the fast path) into that network.
* :func:`fit_images`: trains a network from images (fine-tuning; a frozen :class:`TransferNet`
  trains only its head), with the paper's flips (section 3) and random shifts.
* :func:`scratch_like` and :func:`fit_to_plateau`: the non-pretrained baseline of Table 4 (the
  same architecture with fresh weights), trained until its training accuracy stops rising.
* :func:`train_head`: a new softmax trained on fixed features with the scratch network's optimiser,
  scored on test features after every step (the pretrained arm of section 5's "faster training").
* :func:`predict_scores`: class scores of a network for some images of a pool.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..features import layer_outputs
from ..models import eval_mode, get_layer, layer_names
from ..probes import LinearProbe, load_batch, mean_class_accuracy, one_thread, standardise
from .config import TransferError

__all__ = [
    "TransferNet",
    "scratch_like",
    "batch_schedule",
    "PRELOAD_BYTES",
    "preloaded",
    "random_shift",
    "trainer",
    "fit_images",
    "PlateauFit",
    "plateau_reached",
    "fit_to_plateau",
    "checks_made",
    "HeadRun",
    "train_head",
    "predict_scores",
]


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

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        layer: str = "layer7",
        fine_tune: bool = False,
        head: nn.Linear | None = None,
    ):
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
        device = next((p.device for p in self.backbone.parameters()), torch.device("cpu"))
        with torch.no_grad(), eval_mode(self.backbone):
            f = layer_outputs(
                self.backbone, torch.zeros(1, 3, size, size, device=device), [self.layer]
            )[self.layer]
        return int(f.flatten(1).shape[1])

    @classmethod
    def from_probe(
        cls, backbone: nn.Module, probe: LinearProbe, layer: str = "layer7", fine_tune: bool = False
    ) -> "TransferNet":
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
        raise TransferError(
            f"the logits layer {names['logits']} is a {type(old).__name__}, not nn.Linear"
        )
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


# ---------------------------------------------------------------------------------------------
# Training from images: minibatches, augmentation, fine-tuning, the scratch network to a plateau
# ---------------------------------------------------------------------------------------------


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
        out.append(perm[pos : pos + bs])
        pos += bs
    return out


class _Preloaded(Dataset):
    """Some items of a pool held in memory under their pool indices (the images of one draw, so
    the from-scratch and fine-tuning runs do not decode or render them again at every step)."""

    def __init__(self, dataset: Dataset, indices: torch.Tensor):
        self.rows = {int(i): k for k, i in enumerate(torch.as_tensor(indices).tolist())}
        self.x, self.y = load_batch(dataset, torch.as_tensor(list(self.rows)))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        k = self.rows[int(i)]
        return self.x[k], self.y[k]

    def __getitems__(self, indices):
        k = [self.rows[int(i)] for i in indices]
        return self.x[k], self.y[k]


#: Draws whose images fit in this many bytes are held in memory while training.
PRELOAD_BYTES = 512 * 2**20


def preloaded(dataset: Dataset, indices: torch.Tensor) -> Dataset:
    """The items ``indices`` of ``dataset`` held in memory under their own indices (the images
    of one draw, so the from-scratch and fine-tuning runs do not decode or render them again at
    every step); ``dataset`` itself where they would take more than :data:`PRELOAD_BYTES`."""
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
    return torch.stack(
        [
            padded[i, :, int(off[i, 0]) : int(off[i, 0]) + h, int(off[i, 1]) : int(off[i, 1]) + w]
            for i in range(n)
        ]
    )


def _augment(x: torch.Tensor, flip: bool, shift: int, g: torch.Generator) -> torch.Tensor:
    if flip:
        mirror = torch.rand(x.shape[0], generator=g) < 0.5
        x = torch.where(mirror.view(-1, 1, 1, 1), x.flip(-1), x)
    return random_shift(x, shift, g)


def trainer(
    net: nn.Module,
    dataset: Dataset,
    indices,
    labels,
    *,
    lr: float,
    flip: bool,
    shift: int,
    seed: int,
    device,
):
    """A function ``step(batch)`` that takes one Adam step of ``net`` (the parameters that
    require gradients, rate ``lr``) on the images ``dataset[indices[batch]]`` with targets
    ``labels[batch]`` (``batch``: positions in ``indices``), with random flips (``flip``) and
    shifts of up to ``shift`` pixels drawn from a generator seeded by ``seed``, and returns the
    loss. The network trains in training mode; :func:`fit_images` and :func:`fit_to_plateau`
    put it back in eval mode when they are done."""
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
        x, _ = load_batch(dataset, indices[batch])
        x = _augment(x, flip, shift, g)
        loss = F.cross_entropy(net(x.to(device)), labels[batch].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def fit_images(
    net: nn.Module,
    dataset: Dataset,
    indices: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int,
    lr: float,
    batch_size: int = 32,
    seed: int = 0,
    flip: bool = True,
    shift: int = 0,
    device: "str | torch.device" = "cpu",
    progress: bool = True,
    desc: str = "training",
) -> list[float]:
    """Train ``net`` on the images ``dataset[indices]`` with targets ``labels`` (one per index).

    Adam over the parameters that require gradients, ``steps`` minibatches from
    :func:`batch_schedule`, random horizontal flips (the paper's augmentation, section 3) when
    ``flip`` and random shifts of up to ``shift`` pixels. Used for fine-tuning; a frozen
    :class:`TransferNet` trains only its head. Returns the loss of every step.
    """
    from tqdm.auto import tqdm

    step = trainer(
        net, dataset, indices, labels, lr=lr, flip=flip, shift=shift, seed=seed, device=device
    )
    losses = [
        step(b)
        for b in tqdm(
            batch_schedule(len(indices), steps, batch_size, seed),
            desc=desc,
            disable=not progress,
            leave=False,
        )
    ]
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


def fit_to_plateau(
    net: nn.Module,
    dataset: Dataset,
    indices: torch.Tensor,
    labels: torch.Tensor,
    *,
    lr: float,
    min_steps: int,
    max_steps: int,
    check_every: int = 25,
    patience: int = 3,
    min_gain: float = 0.01,
    fit_accuracy: float = 1.0,
    batch_size: int = 32,
    seed: int = 0,
    flip: bool = True,
    shift: int = 0,
    device: "str | torch.device" = "cpu",
) -> PlateauFit:
    """Train ``net`` on ``dataset[indices]`` until its training accuracy stops rising: the
    from-scratch baseline of Tables 4-5 trained to convergence rather than for a number of passes
    that shrinks with ``n``.

    Adam with flips and shifts (:func:`fit_images`' minibatches and augmentation); every
    ``check_every`` steps the training accuracy is measured in eval mode without augmentation
    (:func:`mean_class_accuracy` on the training images). After ``min_steps`` it stops when that
    accuracy reaches ``fit_accuracy`` or :func:`plateau_reached`; it never exceeds ``max_steps``.
    """
    if not (1 <= min_steps <= max_steps) or check_every < 1 or patience < 1:
        raise TransferError(
            f"need 1 <= min_steps ({min_steps}) <= max_steps ({max_steps}), "
            f"check_every >= 1 ({check_every}) and patience >= 1 ({patience})"
        )
    labels = torch.as_tensor(labels).long()
    step = trainer(
        net, dataset, indices, labels, lr=lr, flip=flip, shift=shift, seed=seed, device=device
    )
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


def checks_made(steps: int, check_every: int, max_steps: int) -> int:
    """How many training-accuracy checks :func:`fit_to_plateau` made in a run of ``steps`` steps:
    one every ``check_every`` steps and one at ``max_steps``."""
    if not (0 <= steps <= max_steps) or check_every < 1:
        raise TransferError(
            f"need 0 <= steps ({steps}) <= max_steps ({max_steps}) and check_every >= 1 "
            f"({check_every})"
        )
    return steps // check_every + int(steps == max_steps and steps % check_every != 0)


# ---------------------------------------------------------------------------------------------
# A new softmax on fixed features, trained step by step like the scratch network
# ---------------------------------------------------------------------------------------------


@dataclass
class HeadRun:
    """What :func:`train_head` did: the test accuracy (mean of per-class accuracies, in [0, 1])
    after each step ``1..len(accuracy)`` and the training seconds spent up to and including each
    step (the standardisation and the Adam steps; the test evaluations are not counted)."""

    accuracy: list[float]
    seconds: list[float]

    @property
    def steps(self) -> int:
        return len(self.accuracy)


def train_head(
    X: torch.Tensor,
    y: torch.Tensor,
    X_test: torch.Tensor,
    y_test: torch.Tensor,
    num_classes: int,
    *,
    max_steps: int,
    lr: float,
    batch_size: int = 32,
    seed: int = 0,
) -> HeadRun:
    """Train a new linear layer on fixed features ``X`` ``(N, D)`` step by step, the way the
    from-scratch network of Tables 4-5 is trained: Adam at ``lr``, no weight decay, cross-entropy
    on :func:`batch_schedule`'s minibatches of ``batch_size`` (the same positions, in the same
    order, as :func:`fit_to_plateau` with the same ``seed``). The layer starts from PyTorch's
    default initialisation, seeded; features are standardised with the training rows' mean and
    standard deviation first (as :func:`zfcore.probes.fit_probe`).

    After every one of the ``max_steps`` steps the test accuracy on ``X_test`` is measured. Runs
    on the CPU, one thread (the matrices are small).
    """
    X, X_test = torch.as_tensor(X).float(), torch.as_tensor(X_test).float()
    y, y_test = torch.as_tensor(y).long(), torch.as_tensor(y_test).long()
    if X.dim() != 2 or X_test.dim() != 2 or X.shape[1] != X_test.shape[1]:
        raise TransferError(
            f"features must be (N, D) with the same D for training and test, got "
            f"{tuple(X.shape)} and {tuple(X_test.shape)}"
        )
    if y.shape[0] != X.shape[0] or y_test.shape[0] != X_test.shape[0]:
        raise TransferError(
            f"{X.shape[0]} and {X_test.shape[0]} feature rows but {y.shape[0]} and "
            f"{y_test.shape[0]} labels"
        )
    if max_steps < 1:
        raise TransferError(f"max_steps must be >= 1, not {max_steps}")
    accuracy: list[float] = []
    seconds: list[float] = []
    with one_thread():
        t0 = time.perf_counter()
        mean, std = standardise(X)
        Z = (X - mean) / std
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            head = nn.Linear(X.shape[1], num_classes)
        opt = torch.optim.Adam(head.parameters(), lr=lr)
        spent = time.perf_counter() - t0
        Z_test = (X_test - mean) / std
        for batch in batch_schedule(len(y), max_steps, batch_size, seed):
            t0 = time.perf_counter()
            loss = F.cross_entropy(head(Z[batch]), y[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            spent += time.perf_counter() - t0
            with torch.no_grad():
                accuracy.append(mean_class_accuracy(head(Z_test).argmax(1), y_test))
            seconds.append(spent)
    return HeadRun(accuracy, seconds)


@torch.no_grad()
def predict_scores(
    net: nn.Module,
    dataset: Dataset,
    indices: torch.Tensor,
    batch_size: int = 64,
    device: "str | torch.device" = "cpu",
) -> torch.Tensor:
    """Class scores of ``net`` (in eval mode, its own mode given back afterwards) for
    ``dataset[indices]``, ``(len(indices), K)``; ``net`` is moved to ``device``."""
    net.to(device)
    indices = torch.as_tensor(indices).long()
    with eval_mode(net):
        out = [
            net(load_batch(dataset, indices[i : i + batch_size])[0].to(device)).float().cpu()
            for i in range(0, len(indices), batch_size)
        ]
    return torch.cat(out)
